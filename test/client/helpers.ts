// Test helpers for the client: a scriptable fake MQTT server on a raw socket, TLS certificates made with
// openssl; and, re-exported for the tests that import them from here, the shared ones of test/helpers/
// (waiting, ports, Mosquitto as a child process).
import { execFileSync } from 'node:child_process';
import { writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { PacketDecoder, encodePacket } from '../../src/protocol/index.js';
import type { ConnectPacket, Packet, Properties, ProtocolVersion } from '../../src/protocol/index.js';
import { hasOpenssl as opensslInstalled } from '../helpers/certs.js';
import { tempDir } from '../helpers/mosquitto.js';
import { delay, eventually } from '../helpers/wait.js';

// The shared helpers these tests import from here (test/helpers/*).
export { delay, eventually } from '../helpers/wait.js';
export { canConnect, freePort } from '../helpers/servers.js';
export { MOSQUITTO, hasMosquitto, startMosquitto, tempDir, type MosquittoOptions, type RunningMosquitto } from '../helpers/mosquitto.js';
export const hasOpenssl = opensslInstalled();

export interface Certificates {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing here: trusting it must fail verification. */
  otherCaCert: string;
}

/** CA, server certificate for 127.0.0.1 / localhost, a client certificate, and an unrelated CA. */
export function makeCertificates(): Certificates {
  const dir = tempDir('petrel-certs-');
  const f = (name: string) => join(dir, name);
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ca = (name: string, cn: string) =>
    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`), '-days', '2', '-subj', `/CN=${cn}`);
  ca('ca', 'Petrel Test CA');
  ca('other-ca', 'Unrelated CA');
  const leaf = (name: string, cn: string, ext: string) => {
    run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`);
    writeFileSync(f(`${name}.ext`), ext);
    run('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.crt`), '-days', '2', '-extfile', f(`${name}.ext`));
  };
  leaf('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  leaf('client', 'petrel-client', 'extendedKeyUsage=clientAuth\n');
  for (const name of ['ca.crt', 'ca.key', 'server.crt', 'server.key', 'client.crt', 'client.key', 'other-ca.crt']) chmodSync(f(name), 0o644);
  return {
    dir,
    caCert: f('ca.crt'),
    caKey: f('ca.key'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
    otherCaCert: f('other-ca.crt'),
  };
}

// ------------------------------------------------------------------ fake server

/** One connection to the fake server: decoded packets in, typed packets out. */
export class FakeConnection {
  readonly packets: Packet[] = [];
  closed = false;
  private waiters: (() => void)[] = [];
  private readonly decoder = new PacketDecoder({ role: 'server' });
  version: ProtocolVersion = 5;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.feed(chunk, (p) => {
        if (p.type === 1) this.version = (p as ConnectPacket).protocolVersion;
        this.packets.push(p);
      });
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Takes the next received packet (of `type`, skipping others when given). */
  async next(type?: number, timeoutMs = 3000): Promise<Packet> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.packets.findIndex((p) => type === undefined || p.type === type);
      if (i >= 0) return this.packets.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`connection closed while waiting for packet type ${type ?? 'any'}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for packet type ${type ?? 'any'}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(packet: Packet): void {
    if (!this.socket.destroyed) this.socket.write(encodePacket(packet, this.version));
  }

  /** Waits for CONNECT and answers CONNACK. */
  async accept(connack: { sessionPresent?: boolean; reasonCode?: number; properties?: Properties } = {}): Promise<ConnectPacket> {
    const connect = (await this.next(1)) as ConnectPacket;
    this.send({ type: 2, sessionPresent: connack.sessionPresent ?? false, reasonCode: connack.reasonCode ?? 0, ...(connack.properties ? { properties: connack.properties } : {}) });
    return connect;
  }

  async waitClosed(timeoutMs = 3000): Promise<void> {
    await eventually(() => this.closed, timeoutMs, 'the client to close the connection');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface FakeServer {
  port: number;
  url: string;
  connections: FakeConnection[];
  /** Resolves with the n-th connection (0-based) once it arrives. */
  connection(n: number, timeoutMs?: number): Promise<FakeConnection>;
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1 that does nothing by itself: tests drive each connection. */
export async function startFakeServer(): Promise<FakeServer> {
  const connections: FakeConnection[] = [];
  const server = net.createServer((socket) => connections.push(new FakeConnection(socket)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    connections,
    async connection(n, timeoutMs = 3000) {
      await eventually(() => connections.length > n, timeoutMs, `connection #${n + 1}`);
      return connections[n]!;
    },
    close() {
      for (const c of connections) c.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
