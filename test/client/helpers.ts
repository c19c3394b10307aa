// Test helpers for the client: a mosquitto broker in a temp dir, a scriptable fake MQTT server
// on a raw socket, TLS certificates made with openssl.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PacketDecoder, encodePacket } from '../../src/protocol/index.js';
import type { ConnectPacket, Packet, Properties, ProtocolVersion } from '../../src/protocol/index.js';

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const hasMosquitto = existsSync(MOSQUITTO);
export const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

export const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until true; throws after timeoutMs. */
export async function eventually(check: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
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

export function tempDir(prefix = 'petrel-client-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755); // mosquitto drops root privileges and must still read its files
  return dir;
}

async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port} in time`);
    await delay(20);
  }
}

export interface MosquittoOptions {
  /** user → password; turns anonymous access off. */
  users?: Record<string, string>;
  websockets?: boolean;
  /** TLS listener with these files. */
  tls?: { cafile: string; certfile: string; keyfile: string; requireCertificate?: boolean };
  /** Also a secure WebSocket listener with the `tls` files. */
  wss?: boolean;
  /** Reuse this port for the plain listener (restarts). */
  port?: number;
}

export interface RunningMosquitto {
  port: number;
  wsPort?: number;
  tlsPort?: number;
  wssPort?: number;
  dir: string;
  stop(): Promise<void>;
  output(): string;
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<RunningMosquitto> {
  const dir = tempDir('petrel-mosq-');
  const port = options.port ?? (await freePort());
  const lines = [`per_listener_settings false`, `listener ${port} 127.0.0.1`];
  let wsPort: number | undefined;
  let tlsPort: number | undefined;
  let wssPort: number | undefined;
  if (options.websockets) {
    wsPort = await freePort();
    lines.push(`listener ${wsPort} 127.0.0.1`, 'protocol websockets');
  }
  if (options.tls) {
    tlsPort = await freePort();
    lines.push(`listener ${tlsPort} 127.0.0.1`, `cafile ${options.tls.cafile}`, `certfile ${options.tls.certfile}`, `keyfile ${options.tls.keyfile}`);
    if (options.tls.requireCertificate) lines.push('require_certificate true');
    if (options.wss) {
      wssPort = await freePort();
      lines.push(`listener ${wssPort} 127.0.0.1`, 'protocol websockets', `cafile ${options.tls.cafile}`, `certfile ${options.tls.certfile}`, `keyfile ${options.tls.keyfile}`);
    }
  }
  if (options.users) {
    const pw = join(dir, 'passwd');
    writeFileSync(pw, '');
    for (const [user, password] of Object.entries(options.users)) execFileSync('mosquitto_passwd', ['-b', pw, user, password]);
    chmodSync(pw, 0o644);
    lines.push('allow_anonymous false', `password_file ${pw}`);
  } else {
    lines.push('allow_anonymous true');
  }
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, lines.join('\n') + '\n');
  chmodSync(conf, 0o644);
  let out = '';
  const child: ChildProcess = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    await Promise.race([
      waitForPort(port),
      exited.then(() => {
        throw new Error(`mosquitto exited: ${out}`);
      }),
    ]);
    if (wsPort) await waitForPort(wsPort);
    if (tlsPort) await waitForPort(tlsPort);
    if (wssPort) await waitForPort(wssPort);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    port,
    ...(wsPort ? { wsPort } : {}),
    ...(tlsPort ? { tlsPort } : {}),
    ...(wssPort ? { wssPort } : {}),
    dir,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

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
