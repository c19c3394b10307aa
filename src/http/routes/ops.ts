// Probes and figures: /health (liveness), /ready (every listener up), /metrics (Prometheus), /api/v1/stats.
import type { FastifyInstance } from 'fastify';
import type { HttpAppContext } from '../app.js';

const noToken = { security: [] };

export function registerOpsRoutes(app: FastifyInstance, ctx: HttpAppContext): void {
  const { broker, metrics } = ctx;
  const startedAt = Date.now();

  app.get('/health', { schema: { summary: 'Liveness: the process answers', tags: ['probes'], ...noToken } }, async () => ({ status: 'ok', uptime: Math.floor((Date.now() - startedAt) / 1000) }));

  app.get('/ready', { schema: { summary: 'Readiness: every listener is up and the store can write (503 while starting, shutting down, or with a full disk)', tags: ['probes'], ...noToken } }, async (_request, reply) => {
    const ready = broker.ready;
    return reply.code(ready ? 200 : 503).send({ ready, listeners: broker.runningListeners().map(({ name, type, host, port }) => ({ name, type, host, port })), storage: broker.storageStatus() });
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics (text format)', tags: ['probes'], ...noToken } }, async (_request, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType).send(text);
  });

  app.get(
    '/api/v1/stats',
    {
      schema: {
        summary: 'Counts, message and byte counters, memory: what the dashboard overview polls',
        tags: ['overview'],
        response: {
          200: {
            type: 'object',
            properties: {
              time: { type: 'string', format: 'date-time' },
              uptime: { type: 'integer' },
              counts: { type: 'object', additionalProperties: { type: 'integer' } },
              messages: { type: 'object', additionalProperties: { type: 'number' } },
              memory: { type: 'object', additionalProperties: { type: 'integer' } },
              listeners: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, type: { type: 'string' }, host: { type: 'string' }, port: { type: 'integer' }, connections: { type: 'integer' } } } },
            },
          },
        },
      },
    },
    async () => {
      const s = broker.inspect.stats();
      const m = process.memoryUsage();
      return {
        time: new Date().toISOString(),
        uptime: Math.floor((Date.now() - startedAt) / 1000),
        counts: { ...broker.inspect.counts(), ...broker.sessionTotals() },
        messages: {
          publishReceived: s.publishReceived,
          publishSent: s.publishSent,
          bytesReceived: s.bytesReceived,
          bytesSent: s.bytesSent,
          packetsReceived: s.packetsReceived,
          packetsSent: s.packetsSent,
        },
        memory: { heapUsed: m.heapUsed, heapTotal: m.heapTotal, rss: m.rss, external: m.external },
        listeners: broker.runningListeners(),
      };
    },
  );
}
