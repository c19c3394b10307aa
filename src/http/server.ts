// The HTTP listener: metrics, health, the JSON API and the dashboard on one port (127.0.0.1:18083 by default),
// started by Broker.listen() for a `{ type: 'http' }` listener.
import type { AddressInfo } from 'node:net';
import type { Broker } from '../server/broker.js';
import type { RunningListener } from '../server/listeners.js';
import { buildHttpApp } from './app.js';
import { ConnectionHistory } from './history.js';
import { BrokerMetrics } from './metrics.js';
import { DEFAULT_DATA_DIR, DEFAULT_HISTORY_CLIENTS, DEFAULT_HISTORY_SIZE, DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT, PUBLIC_ENDPOINTS, type HttpListenerOptions } from './options.js';
import { ApiToken } from './token.js';

export async function startHttpListener(broker: Broker, options: HttpListenerOptions): Promise<RunningListener> {
  const logger = broker.logger;
  const token = ApiToken.open({ tokenFile: options.tokenFile, dataDir: broker.options.dataDir ?? DEFAULT_DATA_DIR, logger });
  const metrics = new BrokerMetrics(broker);
  const history = new ConnectionHistory(options.historySize ?? DEFAULT_HISTORY_SIZE, options.historyClients ?? DEFAULT_HISTORY_CLIENTS);
  const cleanup = () => {
    token.close();
    metrics.close();
    history.detach();
  };
  let app;
  try {
    app = await buildHttpApp({ broker, token, metrics, history, publicEndpoints: options.publicEndpoints ?? PUBLIC_ENDPOINTS, dashboard: options.dashboard ?? true });
    await app.listen({ host: options.host ?? DEFAULT_HTTP_HOST, port: options.port ?? DEFAULT_HTTP_PORT });
  } catch (err) {
    cleanup();
    await app?.close();
    throw err;
  }
  metrics.attach();
  history.attach(broker);
  const server = app.server;
  const address = () => server.address() as AddressInfo;
  const name = options.name ?? `http:${address().port}`;
  let open = 0;
  server.on('connection', (socket) => {
    open++;
    socket.once('close', () => open--);
  });
  const http = app;
  return {
    name,
    type: 'http',
    sockets: 'net',
    acceptHandles: 1,
    address,
    connections: () => open,
    reload: () => token.reload(),
    close: async () => {
      cleanup();
      // Open keep-alive connections (a dashboard's) would hold close() up: fastify ends idle ones.
      await http.close();
    },
  };
}
