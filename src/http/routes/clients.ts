// Clients (connected), their connection history, kicking them; sessions (connected or not), deleting them.
import type { FastifyInstance } from 'fastify';
import { ipOf } from '../../util/address.js';
import type { ConnectionView, SessionView } from '../../broker/inspect.js';
import type { HistoryEntry } from '../history.js';
import { HttpError, type HttpAppContext } from '../app.js';
import { CLIENT_DETAILS_SCHEMA, CLIENT_ID_PARAMS, CONNECTION_SCHEMA, errorRef, HISTORY_ENTRY_SCHEMA, page, PAGE_QUERY, pageSchema, SESSION_SCHEMA } from '../schemas.js';

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

export function connectionJson(c: ConnectionView) {
  return {
    clientId: c.clientId,
    username: c.username,
    protocolVersion: c.protocolVersion,
    remoteAddress: c.remoteAddress,
    listener: c.listener,
    certificateCN: c.certificateCN,
    keepAlive: c.keepAlive,
    connectedAt: iso(c.openedAt),
    bufferedBytes: c.bufferedBytes,
    secure: c.secure,
  };
}

function sessionJson(s: SessionView) {
  return {
    clientId: s.clientId,
    connected: s.connected,
    expiryInterval: s.expiryInterval,
    expiresAt: iso(s.expiresAt),
    subscriptions: s.subscriptions.length,
    inflight: s.inflight,
    queued: s.queued,
    queuedBytes: s.queuedBytes,
    dropped: s.dropped,
    username: s.client?.username,
  };
}

export function historyJson(e: HistoryEntry) {
  const { at, ...rest } = e;
  return { time: new Date(at).toISOString(), ...rest };
}

const byClientId = <T extends { clientId: string }>(a: T, b: T) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0);

interface ClientQuery {
  clientId?: string;
  username?: string;
  address?: string;
  listener?: string;
  like?: string;
  offset: number;
  limit: number;
}

export function registerClientRoutes(app: FastifyInstance, ctx: HttpAppContext): void {
  const { broker, history } = ctx;
  const tags = ['clients'];

  app.get<{ Querystring: ClientQuery }>(
    '/api/v1/clients',
    {
      schema: {
        summary: 'Connected clients, by Client ID, filtered and paginated',
        tags,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            clientId: { type: 'string', description: 'This Client ID' },
            username: { type: 'string', description: 'This user name' },
            address: { type: 'string', description: 'This remote IP address (or address:port)' },
            listener: { type: 'string', description: 'This listener name, e.g. tcp:1883' },
            like: { type: 'string', description: 'Client ID or user name containing this text' },
            ...PAGE_QUERY,
          },
        },
        response: { 200: pageSchema(CONNECTION_SCHEMA, 'A page of connected clients') },
      },
    },
    async (request) => {
      const q = request.query;
      const items: ConnectionView[] = [];
      for (const c of broker.inspect.connections()) {
        if (q.clientId !== undefined && c.clientId !== q.clientId) continue;
        if (q.username !== undefined && c.username !== q.username) continue;
        if (q.listener !== undefined && c.listener !== q.listener) continue;
        if (q.address !== undefined && c.remoteAddress !== q.address && ipOf(c.remoteAddress) !== q.address) continue;
        if (q.like !== undefined && !c.clientId.includes(q.like) && !c.username?.includes(q.like)) continue;
        items.push(c);
      }
      items.sort(byClientId);
      const p = page(items, q.offset, q.limit);
      return { ...p, items: p.items.map(connectionJson) };
    },
  ).get<{ Params: { clientId: string } }>(
    '/api/v1/clients/:clientId',
    {
      schema: {
        summary: 'A client: its connection (when connected) and its session (subscriptions, in flight, queue)',
        tags,
        params: CLIENT_ID_PARAMS,
        response: { 200: CLIENT_DETAILS_SCHEMA, 404: errorRef },
      },
    },
    async (request) => {
      const { clientId } = request.params;
      const connection = broker.inspect.connection(clientId);
      const session = broker.inspect.session(clientId);
      if (!connection && !session) throw new HttpError(404, `no client ${JSON.stringify(clientId)} connected and no session for it`, 'clientId');
      return {
        clientId,
        connected: connection !== undefined,
        connection: connection ? connectionJson(connection) : null,
        session: session ? { ...sessionJson(session), subscriptions: session.subscriptions } : null,
      };
    },
  ).get<{ Params: { clientId: string } }>(
    '/api/v1/clients/:clientId/history',
    {
      schema: {
        summary: "The Client ID's recent connection history, oldest first: CONNECT seen, CONNACK code, disconnect cause, will sent (empty when none is kept)",
        tags,
        params: CLIENT_ID_PARAMS,
        response: {
          200: {
            type: 'object',
            properties: {
              clientId: { type: 'string' },
              connected: { type: 'boolean' },
              session: { type: 'boolean', description: 'The broker holds a session for it' },
              events: { type: 'array', items: HISTORY_ENTRY_SCHEMA },
            },
          },
        },
      },
    },
    async (request) => {
      const { clientId } = request.params;
      const entries = history.get(clientId) ?? [];
      return { clientId, connected: broker.inspect.isConnected(clientId), session: broker.inspect.hasSession(clientId), events: entries.map(historyJson) };
    },
  ).delete<{ Params: { clientId: string } }>(
    '/api/v1/clients/:clientId',
    {
      schema: {
        summary: 'Kick: disconnect the client (5.0: DISCONNECT 0x98 Administrative action); its will is published, its session kept',
        tags,
        params: CLIENT_ID_PARAMS,
        response: { 204: { type: 'null' }, 404: errorRef },
      },
    },
    async (request, reply) => {
      const { clientId } = request.params;
      if (!broker.disconnect(clientId, 0x98, 'disconnected by an operator (HTTP API)')) throw new HttpError(404, `no client ${JSON.stringify(clientId)} connected`, 'clientId');
      broker.logger.info({ clientId }, 'client disconnected through the HTTP API');
      return reply.code(204).send();
    },
  ).get<{ Querystring: { limit: number } }>(
    '/api/v1/history',
    {
      schema: {
        summary: 'Client IDs with connection history, most recently active first, each with its last event',
        tags,
        querystring: { type: 'object', additionalProperties: false, properties: { limit: PAGE_QUERY.limit } },
        response: {
          200: {
            type: 'object',
            properties: { items: { type: 'array', items: { type: 'object', properties: { clientId: { type: 'string' }, last: HISTORY_ENTRY_SCHEMA } } } },
          },
        },
      },
    },
    async (request) => ({ items: history.recent(request.query.limit).map(({ clientId, last }) => ({ clientId, last: historyJson(last) })) }),
  );

  const sessionTags = ['sessions'];
  app.get<{ Querystring: { connected?: boolean; like?: string; offset: number; limit: number } }>(
    '/api/v1/sessions',
    {
      schema: {
        summary: 'Sessions, connected or not, by Client ID',
        tags: sessionTags,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { connected: { type: 'boolean', description: 'Only connected (true) or offline (false) sessions' }, like: { type: 'string', description: 'Client ID containing this text' }, ...PAGE_QUERY },
        },
        response: { 200: pageSchema(SESSION_SCHEMA, 'A page of sessions') },
      },
    },
    async (request) => {
      const q = request.query;
      const items: SessionView[] = [];
      for (const s of broker.inspect.sessions()) {
        if (q.connected !== undefined && s.connected !== q.connected) continue;
        if (q.like !== undefined && !s.clientId.includes(q.like)) continue;
        items.push(s);
      }
      items.sort(byClientId);
      const p = page(items, q.offset, q.limit);
      return { ...p, items: p.items.map(sessionJson) };
    },
  ).delete<{ Params: { clientId: string } }>(
    '/api/v1/sessions/:clientId',
    {
      schema: {
        summary: 'End the session whatever its expiry (a live connection is closed first: 5.0 DISCONNECT 0x98, will published)',
        tags: sessionTags,
        params: CLIENT_ID_PARAMS,
        response: { 204: { type: 'null' }, 404: errorRef },
      },
    },
    async (request, reply) => {
      const { clientId } = request.params;
      if (!broker.deleteSession(clientId)) throw new HttpError(404, `no session for ${JSON.stringify(clientId)}`, 'clientId');
      broker.logger.info({ clientId }, 'session deleted through the HTTP API');
      return reply.code(204).send();
    },
  );
}
