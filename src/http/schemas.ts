// JSON schemas shared by the routes: fastify validates requests with them (a bad field gets a 400 naming it)
// and @fastify/swagger turns them into the OpenAPI document.

export const ERROR_SCHEMA = {
  type: 'object',
  description: 'An error: what went wrong, and the field at fault for a bad request',
  properties: { error: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } },
  required: ['error', 'message'],
} as const;

export const errorRef = { $ref: 'Error#' } as const;

/** offset/limit query parameters. */
export const PAGE_QUERY = {
  offset: { type: 'integer', minimum: 0, default: 0, description: 'Items to skip' },
  limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100, description: 'Items to return (at most 1000)' },
} as const;

/** A page of a list: `{ total, offset, limit, items }`. */
export function pageSchema(item: object, description: string): object {
  return {
    type: 'object',
    description,
    properties: { total: { type: 'integer' }, offset: { type: 'integer' }, limit: { type: 'integer' }, items: { type: 'array', items: item } },
  };
}

export function page<T>(items: T[], offset: number, limit: number): { total: number; offset: number; limit: number; items: T[] } {
  return { total: items.length, offset, limit, items: items.slice(offset, offset + limit) };
}

export const CLIENT_ID_PARAMS = {
  type: 'object',
  properties: { clientId: { type: 'string', minLength: 1, description: 'Client ID (URL-encoded)' } },
  required: ['clientId'],
} as const;

const subscription = {
  type: 'object',
  properties: {
    topicFilter: { type: 'string' },
    qos: { type: 'integer' },
    noLocal: { type: 'boolean' },
    retainAsPublished: { type: 'boolean' },
    retainHandling: { type: 'integer' },
    subscriptionIdentifier: { type: 'integer' },
    shareGroup: { type: 'string' },
  },
};

export const CONNECTION_SCHEMA = {
  type: 'object',
  properties: {
    clientId: { type: 'string' },
    username: { type: 'string' },
    protocolVersion: { type: 'integer', description: '3 (3.1), 4 (3.1.1) or 5 (5.0)' },
    remoteAddress: { type: 'string' },
    listener: { type: 'string' },
    certificateCN: { type: 'string' },
    keepAlive: { type: 'integer', description: 'Keep alive in force, seconds' },
    connectedAt: { type: 'string', format: 'date-time' },
    bufferedBytes: { type: 'integer', description: 'Bytes written and not yet taken by the network' },
    secure: { type: 'boolean' },
  },
} as const;

export const SESSION_SCHEMA = {
  type: 'object',
  properties: {
    clientId: { type: 'string' },
    connected: { type: 'boolean' },
    expiryInterval: { type: 'integer', description: 'Session Expiry Interval, seconds (4294967295: never)' },
    expiresAt: { type: 'string', format: 'date-time', nullable: true },
    subscriptions: { type: 'integer' },
    inflight: { type: 'integer' },
    queued: { type: 'integer' },
    queuedBytes: { type: 'integer' },
    dropped: { type: 'integer' },
    username: { type: 'string' },
  },
} as const;

export const CLIENT_DETAILS_SCHEMA = {
  type: 'object',
  properties: {
    clientId: { type: 'string' },
    connected: { type: 'boolean' },
    connection: { ...CONNECTION_SCHEMA, nullable: true },
    session: {
      type: 'object',
      nullable: true,
      properties: { ...SESSION_SCHEMA.properties, subscriptions: { type: 'array', items: subscription } },
    },
  },
} as const;

export const SUBSCRIPTION_SCHEMA = { ...subscription, properties: { clientId: { type: 'string' }, ...subscription.properties } } as const;

export const HISTORY_ENTRY_SCHEMA = {
  type: 'object',
  description: 'connect: a CONNECT arrived; connack: it was accepted (code 0x00) or refused (code, reason); disconnect: the connection ended (cause, reason, code, will)',
  properties: {
    time: { type: 'string', format: 'date-time' },
    event: { type: 'string', enum: ['connect', 'connack', 'disconnect'] },
    address: { type: 'string' },
    listener: { type: 'string' },
    protocolVersion: { type: 'integer' },
    username: { type: 'string' },
    clean: { type: 'boolean' },
    keepAlive: { type: 'integer' },
    accepted: { type: 'boolean' },
    code: { type: 'string' },
    codeName: { type: 'string' },
    reason: { type: 'string' },
    sessionPresent: { type: 'boolean' },
    cause: { type: 'string', description: 'client_disconnect, connection_lost, takeover, keep_alive_timeout, protocol_error, malformed_packet, slow_consumer, administrative_action, server_shutdown, connect_timeout, ...' },
    will: { type: 'boolean', description: 'The will message was published (or will be, after its delay)' },
  },
} as const;

export const RETAINED_SCHEMA = {
  type: 'object',
  properties: {
    topic: { type: 'string' },
    qos: { type: 'integer' },
    payloadBytes: { type: 'integer' },
    payload: { type: 'string', nullable: true, description: 'The payload as UTF-8 text, or null when it is not valid UTF-8' },
    payloadBase64: { type: 'string' },
    contentType: { type: 'string' },
    expiresAt: { type: 'string', format: 'date-time', nullable: true },
  },
} as const;
