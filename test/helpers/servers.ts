// Servers a test starts on 127.0.0.1 and closes after itself: Petrel's broker (port 0) and a bare TCP server
// that misbehaves as told; and the port helpers they and the Mosquitto helper use.
import net from 'node:net';
import { createBroker, type Broker, type BrokerOptions } from '../../src/server/broker.js';

/** What the helpers need of a node:test context. */
export interface AfterCtx {
  after: (fn: () => unknown) => void;
}

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Petrel listening (TCP on 127.0.0.1, port 0, unless `options` has listeners or says otherwise), closed after the test. */
export async function petrelBroker(t: AfterCtx, options: BrokerOptions = {}): Promise<Broker> {
  const b = createBroker({ port: 0, host: '127.0.0.1', ...options });
  await b.listen();
  t.after(() => b.close());
  return b;
}

/** petrelBroker, and its port as the CLI takes it (a string). */
export async function petrelWithPort(t: AfterCtx, options: BrokerOptions = {}): Promise<{ broker: Broker; port: string }> {
  const broker = await petrelBroker(t, options);
  return { broker, port: String(broker.address().port) };
}

/** petrelBroker's port as the CLI takes it (a string). */
export async function petrelPort(t: AfterCtx, options: BrokerOptions = {}): Promise<string> {
  return (await petrelWithPort(t, options)).port;
}

/** What a raw server does with each connection: as named, or whatever the function does. */
export type RawBehaviour = 'silent' | 'close' | 'http';

const behaviours: Record<RawBehaviour, (s: net.Socket) => void> = {
  /** Accepts and says nothing (a CONNACK that never comes). */
  silent: () => {},
  /** Closes every connection at once. */
  close: (s) => s.destroy(),
  /** Answers in HTTP (a client pointed at a web server). */
  http: (s) => s.write('HTTP/1.1 400 Bad Request\r\n\r\n'),
};

/**
 * A TCP server on 127.0.0.1 that does what `onSocket` does with each connection (nothing MQTT); its sockets
 * are destroyed and it is closed after the test. A named behaviour gives the port as the CLI takes it (a string).
 */
export function rawServer(t: AfterCtx, behaviour: RawBehaviour): Promise<string>;
export function rawServer(t: AfterCtx, onSocket: (s: net.Socket) => void): Promise<number>;
export async function rawServer(t: AfterCtx, what: RawBehaviour | ((s: net.Socket) => void)): Promise<number | string> {
  const onSocket = typeof what === 'string' ? behaviours[what] : what;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as net.AddressInfo).port;
  return typeof what === 'string' ? String(port) : port;
}
