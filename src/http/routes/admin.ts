// Bans (list, add, remove) and the configuration in force (secrets hidden).
import type { FastifyInstance } from 'fastify';
import { checkAddressEntry } from '../../util/address.js';
import type { BanOptions } from '../../auth/bans.js';
import { effectiveConfig, type FileConfig } from '../../config/config.js';
import { HttpError, type HttpAppContext } from '../app.js';
import { errorRef } from '../schemas.js';

type BanType = 'clientId' | 'username' | 'address';
const BAN_KEYS: Record<BanType, keyof BanOptions> = { clientId: 'clientIds', username: 'usernames', address: 'addresses' };
const BAN_TYPES = Object.keys(BAN_KEYS);

const BANS_SCHEMA = {
  type: 'object',
  properties: {
    clientIds: { type: 'array', items: { type: 'string' } },
    usernames: { type: 'array', items: { type: 'string' } },
    addresses: { type: 'array', items: { type: 'string' }, description: 'IP addresses and CIDR blocks' },
  },
} as const;

const BAN_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'value'],
  properties: { type: { type: 'string', enum: BAN_TYPES }, value: { type: 'string', minLength: 1, description: 'Client ID, user name, or IP address / CIDR block' } },
} as const;

/** Option keys that are not configuration (functions, objects of the embedding application). */
const NOT_CONFIG = new Set(['logger', 'clock', 'authenticate', 'authorizePublish', 'authorizeSubscribe', 'authMethods', 'tickInterval']);
const SECRET_KEY = /passphrase|password$|secret|token$/i;

/** Secrets replaced by "(hidden)" at any depth (file names, such as passwordFile or tokenFile, stay). */
export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) && v !== undefined ? '(hidden)' : redact(v)]));
}

export function registerAdminRoutes(app: FastifyInstance, ctx: HttpAppContext): void {
  const { broker } = ctx;
  const bans = broker.security.bans;
  const tags = ['bans'];

  app.get('/api/v1/bans', { schema: { summary: 'Banned Client IDs, user names and addresses (refused at CONNECT with 0x8A)', tags, response: { 200: BANS_SCHEMA } } }, async () => bans.list());

  app.post<{ Body: { type: BanType; value: string } }>(
    '/api/v1/bans',
    {
      schema: {
        summary: 'Ban a Client ID, user name or address; matching connected clients are disconnected (5.0: 0x98). Kept until the broker restarts.',
        tags,
        body: BAN_SCHEMA,
        response: { 201: { type: 'object', properties: { type: { type: 'string' }, value: { type: 'string' }, disconnected: { type: 'array', items: { type: 'string' } } } }, 400: errorRef },
      },
    },
    async (request, reply) => {
      const { type, value } = request.body;
      if (type === 'address') {
        try {
          checkAddressEntry(value);
        } catch (err) {
          throw new HttpError(400, `value: ${(err as Error).message}`, 'value');
        }
      }
      bans.add({ [BAN_KEYS[type]]: [value] });
      const disconnected: string[] = [];
      for (const c of [...broker.inspect.connections()]) {
        if (bans.check(c) !== undefined && broker.disconnect(c.clientId, 0x98, `banned (${type}) by an operator`)) disconnected.push(c.clientId);
      }
      broker.logger.info({ [type]: value, disconnected: disconnected.length }, 'ban added through the HTTP API');
      return reply.code(201).send({ type, value, disconnected });
    },
  ).delete<{ Params: { type: BanType; value: string } }>(
    '/api/v1/bans/:type/:value',
    {
      schema: {
        summary: 'Lift a ban (the value URL-encoded: /api/v1/bans/address/10.0.0.0%2F8)',
        tags,
        params: BAN_SCHEMA,
        response: { 204: { type: 'null' }, 400: errorRef, 404: errorRef },
      },
    },
    async (request, reply) => {
      const { type, value } = request.params;
      if (!bans.list()[BAN_KEYS[type]].includes(value)) throw new HttpError(404, `no ${type} ban on ${JSON.stringify(value)}`, 'value');
      bans.remove({ [BAN_KEYS[type]]: [value] });
      broker.logger.info({ [type]: value }, 'ban lifted through the HTTP API');
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/v1/config',
    { schema: { summary: 'The configuration in force, defaults filled in, passwords and passphrases hidden', tags: ['config'], response: { 200: { type: 'object', additionalProperties: true } } } },
    async () => {
      const options = Object.fromEntries(Object.entries(broker.options).filter(([k, v]) => !NOT_CONFIG.has(k) && typeof v !== 'function'));
      return redact(effectiveConfig(options as FileConfig));
    },
  );
}
