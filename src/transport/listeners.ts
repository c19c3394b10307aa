// Listeners: one per configured endpoint, each turning accepted connections into channels.
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { BrokerCore } from '../broker/core.js';
import { attachSocket } from './stream.js';

export interface TcpListenerOptions {
  type: 'tcp';
  host?: string;
  port?: number;
  /** Name in logs and ClientInfo.listener; default "tcp:<port>". */
  name?: string;
}
export type ListenerOptions = TcpListenerOptions;

export interface RunningListener {
  readonly name: string;
  address(): AddressInfo;
  /** Stops accepting and destroys every connection it accepted. */
  close(): Promise<void>;
}

export async function startListener(core: BrokerCore, options: ListenerOptions): Promise<RunningListener> {
  const sockets = new Set<Socket>();
  let name = options.name ?? '';
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    attachSocket(core, socket, name, false);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 1883, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = () => server.address() as AddressInfo;
  name ||= `tcp:${address().port}`;
  return {
    name,
    address,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
