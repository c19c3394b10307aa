// A broker as a child process (the real `petrel broker` command, so it can be killed with SIGKILL), and a
// small MQTT client that acknowledges as it goes and keeps the QoS 2 receiver state of its session across
// connections (method B of MQTT 4.3.3: a packet id held from PUBLISH to PUBREL is delivered once however
// often it is resent).
import { spawn, type ChildProcess } from 'node:child_process';
import { connect as netConnect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnackPacket, ConnectPacket, Packet, PublishPacket } from '../../src/protocol/packets.js';

const BIN = fileURLToPath(new URL('../../../bin/petrel.js', import.meta.url));

export interface ChildBroker {
  port: number;
  child: ChildProcess;
  /** Every JSON log line so far. */
  lines: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** `petrel broker` on 127.0.0.1, an ephemeral port and `dir`; resolves once it listens. */
export function startChildBroker(dir: string, extraArgs: string[] = [], env: Record<string, string> = {}): Promise<ChildBroker> {
  const child = spawn(process.execPath, [BIN, 'broker', '--host', '127.0.0.1', '--port', '0', '--data-dir', dir, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let rest = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the broker did not start within 15 s; stderr: ${stderr}`));
    }, 15_000);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the broker exited (${code ?? signal}) before listening: ${stderr.trim()}`));
    });
    child.stdout!.on('data', (d: Buffer) => {
      rest += d.toString();
      let i: number;
      while ((i = rest.indexOf('\n')) >= 0) {
        const text = rest.slice(0, i);
        rest = rest.slice(i + 1);
        try {
          const line = JSON.parse(text) as Record<string, unknown>;
          lines.push(line);
          if (line.msg === 'listening') {
            clearTimeout(timer);
            resolve({
              port: line.port as number,
              child,
              lines,
              exited,
              async kill(signal = 'SIGKILL') {
                if (child.exitCode === null && child.signalCode === null) child.kill(signal);
                await exited;
              },
            });
          }
        } catch {
          // not JSON
        }
      }
    });
  });
}

/** An MQTT connection for the tests: acknowledges what it receives, records deliveries. */
export class Peer {
  readonly socket: Socket;
  private readonly decoder: PacketDecoder;
  closed = false;
  private handler: ((p: Packet) => void) | undefined;
  /** Packets that came before a handler was set (those in the same chunk as CONNACK). */
  private backlog: Packet[] = [];
  private connackWaiter: ((p: ConnackPacket) => void) | undefined;
  private readonly closeWaiters: (() => void)[] = [];

  private constructor(
    socket: Socket,
    readonly version: ProtocolVersion,
  ) {
    this.socket = socket;
    this.decoder = new PacketDecoder({ protocolVersion: version, role: 'client' });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.feed(chunk, (p) => {
          if (p.type === 2) this.connackWaiter?.(p);
          else if (this.handler !== undefined) this.handler(p);
          else this.backlog.push(p);
        });
      } catch {
        socket.destroy();
      }
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.closeWaiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  static connect(port: number, fields: Partial<ConnectPacket> & { clientId: string }): Promise<{ peer: Peer; connack: ConnackPacket }> {
    const version = fields.protocolVersion ?? 4;
    return new Promise((resolve, reject) => {
      const socket = netConnect({ port, host: '127.0.0.1' }, () => {
        const peer = new Peer(socket, version);
        const timer = setTimeout(() => reject(new Error(`no CONNACK for ${fields.clientId}`)), 5000);
        peer.connackWaiter = (connack) => {
          clearTimeout(timer);
          resolve({ peer, connack });
        };
        peer.send({ type: 1, protocolName: 'MQTT', protocolVersion: version, clean: true, keepAlive: 0, ...fields } as ConnectPacket);
      });
      socket.once('error', reject);
    });
  }

  /** Where received packets go (those that came before it first). */
  set onPacket(handler: (p: Packet) => void) {
    this.handler = handler;
    const backlog = this.backlog;
    this.backlog = [];
    for (const p of backlog) handler(p);
  }

  send(p: Packet): void {
    if (!this.closed) this.socket.write(encodePacket(p, this.version));
  }

  waitClosed(): Promise<void> {
    return this.closed ? Promise.resolve() : new Promise((r) => this.closeWaiters.push(r));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A subscriber's view of its session: deliveries by payload, and QoS 2 packet ids held until PUBREL. */
export class Receiver {
  readonly deliveries = new Map<string, number>();
  readonly held = new Set<number>();
  lastAt = Date.now();

  /** Serves `peer`: acknowledges, counts each delivery once per QoS 2 flow. */
  attach(peer: Peer): void {
    peer.onPacket = (p) => {
      if (p.type === 3) {
        const m = p as PublishPacket;
        this.lastAt = Date.now();
        if (m.qos === 2) {
          if (!this.held.has(m.packetId!)) {
            this.held.add(m.packetId!);
            this.count(m);
          }
          peer.send({ type: 5, packetId: m.packetId! });
        } else {
          this.count(m);
          if (m.qos === 1) peer.send({ type: 4, packetId: m.packetId! });
        }
      } else if (p.type === 6) {
        this.held.delete(p.packetId);
        peer.send({ type: 7, packetId: p.packetId });
      }
    };
  }

  private count(m: PublishPacket): void {
    const key = `${m.topic} ${m.payload.toString()}`;
    this.deliveries.set(key, (this.deliveries.get(key) ?? 0) + 1);
  }

  /** Resolves once nothing has arrived for `quietMs` (at most `maxMs`). */
  async quiet(quietMs = 600, maxMs = 10_000): Promise<void> {
    const end = Date.now() + maxMs;
    this.lastAt = Math.max(this.lastAt, Date.now());
    while (Date.now() - this.lastAt < quietMs && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  }
}
