// Subscriptions (list, search by filter or by a topic they match), retained messages (list by filter, get,
// delete) and publishing a message.
import { Buffer } from 'node:buffer';
import { isUtf8 } from 'node:buffer';
import type { FastifyInstance } from 'fastify';
import type { QoS } from '../../protocol/constants.js';
import type { Properties } from '../../protocol/packets.js';
import { isValidTopicFilter, isValidTopicName, parseSharedSubscription, topicMatches } from '../../protocol/topic.js';
import type { Message } from '../../broker/message.js';
import { HttpError, type HttpAppContext } from '../app.js';
import { errorRef, page, PAGE_QUERY, pageSchema, RETAINED_SCHEMA, SUBSCRIPTION_SCHEMA } from '../schemas.js';

function retainedJson(m: Message) {
  return {
    topic: m.topic,
    qos: m.qos,
    payloadBytes: m.payload.length,
    payload: isUtf8(m.payload) ? m.payload.toString('utf8') : null,
    payloadBase64: m.payload.toString('base64'),
    contentType: m.properties?.contentType,
    expiresAt: m.expiresAt === undefined ? null : new Date(m.expiresAt).toISOString(),
  };
}

/** The retained topic of a `/api/v1/retained/<topic>` URL: the rest of the path, each level URL-decoded. */
function topicParam(params: { '*': string }): string {
  const topic = params['*'];
  if (!isValidTopicName(topic)) throw new HttpError(400, `topic: ${JSON.stringify(topic)} is not a valid topic name`, 'topic');
  return topic;
}

interface PublishBody {
  topic: string;
  payload?: string;
  payloadEncoding?: 'utf8' | 'base64';
  qos?: QoS;
  retain?: boolean;
  contentType?: string;
  messageExpiryInterval?: number;
  responseTopic?: string;
  userProperties?: Record<string, string>;
}

export function registerMessageRoutes(app: FastifyInstance, ctx: HttpAppContext): void {
  const { broker } = ctx;

  app.get<{ Querystring: { clientId?: string; filter?: string; topic?: string; like?: string; offset: number; limit: number } }>(
    '/api/v1/subscriptions',
    {
      schema: {
        summary: 'Subscriptions of every session, by Client ID then filter',
        tags: ['subscriptions'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            clientId: { type: 'string', description: "This client's subscriptions" },
            filter: { type: 'string', description: 'This exact topic filter (e.g. sensors/+/temp, $share/g/jobs/#)' },
            topic: { type: 'string', description: 'Subscriptions whose filter matches this topic name (who receives a message published to it)' },
            like: { type: 'string', description: 'Topic filter containing this text' },
            ...PAGE_QUERY,
          },
        },
        response: { 200: pageSchema(SUBSCRIPTION_SCHEMA, 'A page of subscriptions'), 400: errorRef },
      },
    },
    async (request) => {
      const q = request.query;
      if (q.topic !== undefined && !isValidTopicName(q.topic)) throw new HttpError(400, `topic: ${JSON.stringify(q.topic)} is not a valid topic name (no wildcards)`, 'topic');
      const items = [];
      for (const s of broker.inspect.sessions()) {
        if (q.clientId !== undefined && s.clientId !== q.clientId) continue;
        for (const sub of s.subscriptions) {
          if (q.filter !== undefined && sub.topicFilter !== q.filter) continue;
          if (q.like !== undefined && !sub.topicFilter.includes(q.like)) continue;
          if (q.topic !== undefined && !topicMatches(parseSharedSubscription(sub.topicFilter)?.filter ?? sub.topicFilter, q.topic)) continue;
          items.push({ clientId: s.clientId, ...sub });
        }
      }
      items.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : a.topicFilter < b.topicFilter ? -1 : 1));
      return page(items, q.offset, q.limit);
    },
  );

  const tags = ['retained'];
  app.get<{ Querystring: { filter: string; offset: number; limit: number } }>(
    '/api/v1/retained',
    {
      schema: {
        summary: 'Retained messages whose topic matches a filter, by topic',
        tags,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { filter: { type: 'string', default: '#', description: 'Topic filter (default #: every topic outside $SYS)' }, ...PAGE_QUERY },
        },
        response: { 200: pageSchema(RETAINED_SCHEMA, 'A page of retained messages'), 400: errorRef },
      },
    },
    async (request) => {
      const { filter, offset, limit } = request.query;
      if (!isValidTopicFilter(filter)) throw new HttpError(400, `filter: ${JSON.stringify(filter)} is not a valid topic filter`, 'filter');
      const items = broker.inspect.retainedMatching(filter).sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
      const p = page(items, offset, limit);
      return { ...p, items: p.items.map(retainedJson) };
    },
  ).get<{ Params: { '*': string } }>(
    '/api/v1/retained/*',
    {
      schema: {
        summary: 'The retained message of a topic (the rest of the path: /api/v1/retained/sensors/1/temp)',
        tags,
        response: { 200: RETAINED_SCHEMA, 400: errorRef, 404: errorRef },
      },
    },
    async (request) => {
      const topic = topicParam(request.params);
      const m = broker.inspect.retained(topic);
      if (!m) throw new HttpError(404, `no retained message on ${JSON.stringify(topic)}`, 'topic');
      return retainedJson(m);
    },
  ).delete<{ Params: { '*': string } }>(
    '/api/v1/retained/*',
    { schema: { summary: 'Delete the retained message of a topic', tags, response: { 204: { type: 'null' }, 400: errorRef, 404: errorRef } } },
    async (request, reply) => {
      const topic = topicParam(request.params);
      if (!broker.deleteRetained(topic)) throw new HttpError(404, `no retained message on ${JSON.stringify(topic)}`, 'topic');
      broker.logger.info({ topic }, 'retained message deleted through the HTTP API');
      return reply.code(204).send();
    },
  );

  app.post<{ Body: PublishBody }>(
    '/api/v1/publish',
    {
      schema: {
        summary: 'Publish a message (from no client: no ACL applies)',
        tags: ['publish'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['topic'],
          properties: {
            topic: { type: 'string', minLength: 1 },
            payload: { type: 'string', default: '' },
            payloadEncoding: { type: 'string', enum: ['utf8', 'base64'], default: 'utf8' },
            qos: { type: 'integer', enum: [0, 1, 2], default: 0 },
            retain: { type: 'boolean', default: false },
            contentType: { type: 'string' },
            messageExpiryInterval: { type: 'integer', minimum: 1, maximum: 4294967295 },
            responseTopic: { type: 'string' },
            userProperties: { type: 'object', additionalProperties: { type: 'string' } },
          },
        },
        response: { 200: { type: 'object', properties: { topic: { type: 'string' }, subscribers: { type: 'integer', description: 'Clients with a matching subscription' } } }, 400: errorRef },
      },
    },
    async (request) => {
      const b = request.body;
      if (!isValidTopicName(b.topic)) throw new HttpError(400, `topic: ${JSON.stringify(b.topic)} is not a valid topic name (no wildcards)`, 'topic');
      if (b.responseTopic !== undefined && !isValidTopicName(b.responseTopic)) throw new HttpError(400, 'responseTopic: not a valid topic name', 'responseTopic');
      let payload: Buffer;
      if (b.payloadEncoding === 'base64') {
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b.payload ?? '')) throw new HttpError(400, 'payload: not valid base64', 'payload');
        payload = Buffer.from(b.payload ?? '', 'base64');
      } else {
        payload = Buffer.from(b.payload ?? '', 'utf8');
      }
      const properties: Properties = {};
      if (b.contentType !== undefined) properties.contentType = b.contentType;
      if (b.messageExpiryInterval !== undefined) properties.messageExpiryInterval = b.messageExpiryInterval;
      if (b.responseTopic !== undefined) properties.responseTopic = b.responseTopic;
      if (b.userProperties !== undefined) properties.userProperties = Object.entries(b.userProperties);
      try {
        broker.publish(b.topic, payload, { qos: b.qos, retain: b.retain, properties: Object.keys(properties).length ? properties : undefined });
      } catch (err) {
        throw new HttpError(400, `topic: ${(err as Error).message}`, 'topic');
      }
      return { topic: b.topic, subscribers: broker.inspect.subscribers(b.topic).length };
    },
  );
}
