// The HTTP application: fastify with the token check, JSON errors naming the field, the OpenAPI document,
// the routes and the dashboard. Started by server.ts; tests may build it without a socket.
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { Broker } from '../server/broker.js';
import { PETREL_VERSION } from '../version.js';
import type { ConnectionHistory } from './history.js';
import type { BrokerMetrics } from './metrics.js';
import type { PublicEndpoint } from './options.js';
import type { ApiToken } from './token.js';
import { registerClientRoutes } from './routes/clients.js';
import { registerMessageRoutes } from './routes/messages.js';
import { registerAdminRoutes } from './routes/admin.js';
import { registerOpsRoutes } from './routes/ops.js';
import { registerDashboard } from './dashboard.js';
import { ERROR_SCHEMA } from './schemas.js';

export interface HttpAppContext {
  broker: Broker;
  token: ApiToken;
  metrics: BrokerMetrics;
  history: ConnectionHistory;
  publicEndpoints: readonly PublicEndpoint[];
  dashboard: boolean;
}

/** An error answered as JSON with its status: `{ error, message, field? }`. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export const OPENAPI_PATH = '/api/v1/openapi.json';

export async function buildHttpApp(ctx: HttpAppContext): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    // Unknown fields are refused with their name, not silently dropped (a misspelled "retian" must not publish).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
    bodyLimit: 1024 * 1024 + 4096,
    // Client IDs may be long (up to 65535 bytes), and are path parameters.
    routerOptions: { maxParamLength: 65535 * 3 },
    return503OnClosing: true,
  });

  app.setErrorHandler((err: FastifyError & { field?: string }, request, reply) => {
    if (err.validation?.length) {
      const v = err.validation[0]!;
      const params = v.params as { missingProperty?: string; additionalProperty?: string };
      const path = (v.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
      const field = params.missingProperty ?? params.additionalProperty ?? (path || err.validationContext || 'request');
      const what = params.additionalProperty ? 'unknown field' : params.missingProperty ? 'required' : (v.message ?? 'invalid');
      return reply.code(400).send({ error: 'bad request', field, message: `${field}: ${what}` });
    }
    if (err instanceof HttpError) return reply.code(err.statusCode).send({ error: statusText(err.statusCode), message: err.message, field: err.field });
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) ctx.broker.logger.error({ url: request.url.split('?')[0], error: err.stack ?? String(err) }, 'HTTP API request failed');
    return reply.code(status).send({ error: statusText(status), message: status === 500 ? 'internal error (see the broker log)' : err.message });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: 'not found', message: `no route ${request.method} ${request.url.split('?')[0]}` }));

  // The token: every /api/* route, and the probes that are not public. Checked before the body is read.
  const open = new Set<string>(ctx.publicEndpoints.map((e) => `/${e}`));
  open.add(OPENAPI_PATH);
  app.addHook('onRequest', async (request, reply) => {
    // The route matched, not the URL as sent: "/%61pi/v1/clients" reaches the same handler as "/api/v1/clients".
    const route = request.routeOptions.url;
    if (route === undefined) return; // no route: 404
    const guarded = route.startsWith('/api/') || route === '/metrics' || route === '/health' || route === '/ready';
    if (!guarded || open.has(route)) return;
    if (!ctx.token.check(request.headers.authorization)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="petrel"')
        .send({ error: 'unauthorized', message: 'send the API token as "Authorization: Bearer <token>" (see the tokenFile of the http listener)' });
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Petrel HTTP API', version: PETREL_VERSION, description: 'Operate a Petrel MQTT broker: clients, sessions, subscriptions, retained messages, bans. See docs/http-api.md.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  app.addSchema({ $id: 'Error', ...ERROR_SCHEMA });

  registerOpsRoutes(app, ctx);
  registerClientRoutes(app, ctx);
  registerMessageRoutes(app, ctx);
  registerAdminRoutes(app, ctx);
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger());
  if (ctx.dashboard) registerDashboard(app);
  await app.ready();
  return app;
}

function statusText(status: number): string {
  return ({ 400: 'bad request', 401: 'unauthorized', 404: 'not found', 409: 'conflict', 413: 'payload too large', 415: 'unsupported media type', 503: 'unavailable' } as Record<number, string>)[status] ?? (status >= 500 ? 'internal error' : 'error');
}
