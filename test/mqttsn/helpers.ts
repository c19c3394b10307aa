// Test helpers for MQTT-SN: the sans-I/O gateway on a fake broker core and clock, and a raw
// MQTT-SN peer over real UDP on 127.0.0.1.
import { Buffer } from 'node:buffer';
import { createSocket, type Socket } from 'node:dgram';
import type { CoreOptions } from '../../src/broker/core.js';
import { decodeEncapsulated, decodeSn, encodeEncapsulated, encodeSn, isEncapsulated } from '../../src/mqttsn/codec.js';
import { MqttSnGateway, type GatewayOptions } from '../../src/mqttsn/gateway.js';
import type { SnPacket } from '../../src/mqttsn/packets.js';
import { FakeCore } from '../helpers/fake-core.js';
import { seededRandom } from '../helpers/seeded.js';

export interface SentDatagram {
  datagram: Buffer;
  address: string;
  port: number;
}

/** The gateway on a FakeCore: datagrams in by hand, datagrams out collected, time moved by advance(). */
export class GatewayHarness {
  readonly fake: FakeCore;
  readonly gateway: MqttSnGateway;
  readonly sent: SentDatagram[] = [];
  readonly broadcasts: Buffer[] = [];

  constructor(options: Partial<GatewayOptions> = {}, core: Omit<CoreOptions, 'clock'> = {}) {
    this.fake = new FakeCore(core);
    this.gateway = new MqttSnGateway(this.fake.core, { listenerName: 'mqttsn:test', ...options }, {
      send: (datagram, address, port) => this.sent.push({ datagram: Buffer.from(datagram), address, port }),
      broadcast: (datagram) => this.broadcasts.push(Buffer.from(datagram)),
    });
  }

  get now(): number {
    return this.fake.clock.time;
  }

  /** A client at 10.0.0.1:`port` (optionally a wireless node behind a forwarder at that address). */
  peer(port: number, nodeId?: Buffer): FakePeer {
    return new FakePeer(this, port, nodeId);
  }

  /** Moves the clock by `ms` in `step`s, running the broker's and the gateway's timers at each. */
  advance(ms: number, step = 100): void {
    const end = this.fake.clock.time + ms;
    while (this.fake.clock.time < end) {
      this.fake.clock.time = Math.min(end, this.fake.clock.time + step);
      this.fake.core.tick();
      this.gateway.tick();
    }
  }
}

export class FakePeer {
  readonly address = '10.0.0.1';
  constructor(
    private readonly h: GatewayHarness,
    readonly port: number,
    readonly nodeId?: Buffer,
  ) {}

  /** Sends a message (or raw bytes) to the gateway; returns the datagram's size. */
  send(packet: SnPacket | Buffer): number {
    let datagram = Buffer.isBuffer(packet) ? packet : encodeSn(packet);
    if (this.nodeId) datagram = encodeEncapsulated({ ctrl: 0, nodeId: this.nodeId, message: datagram });
    this.h.gateway.receive(datagram, this.address, this.port);
    return datagram.length;
  }

  /** Removes and decodes the datagrams sent to this peer (unwrapping a forwarder's encapsulation). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests destructure the fields of the type they expect
  take<T = any>(): T[] {
    const mine = this.h.sent.filter((d) => d.port === this.port && (!this.nodeId || (isEncapsulated(d.datagram) && decodeEncapsulated(d.datagram).nodeId.equals(this.nodeId))));
    for (const d of mine) this.h.sent.splice(this.h.sent.indexOf(d), 1);
    return mine.map((d) => (this.nodeId ? decodeSn(decodeEncapsulated(d.datagram).message) : decodeSn(d.datagram)) as T);
  }

  /** Raw datagrams sent to this peer (sizes, encapsulation). */
  takeRaw(): Buffer[] {
    const mine = this.h.sent.filter((d) => d.port === this.port);
    for (const d of mine) this.h.sent.splice(this.h.sent.indexOf(d), 1);
    return mine.map((d) => d.datagram);
  }
}

/** A raw MQTT-SN client over real UDP: send messages, wait for the ones that come back. */
export class UdpPeer {
  readonly socket: Socket;
  private readonly inbox: SnPacket[] = [];
  private waiters: (() => void)[] = [];
  readonly raw: Buffer[] = [];

  private constructor(
    readonly gatewayPort: number,
    readonly host: string,
  ) {
    this.socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    this.socket.on('message', (datagram) => {
      this.raw.push(datagram);
      try {
        this.inbox.push(decodeSn(datagram));
      } catch {
        // kept in raw only
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(gatewayPort: number, host = '127.0.0.1'): Promise<UdpPeer> {
    const peer = new UdpPeer(gatewayPort, host);
    await new Promise<void>((resolve) => peer.socket.bind(0, host, resolve));
    return peer;
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(packet: SnPacket | Buffer): void {
    this.socket.send(Buffer.isBuffer(packet) ? packet : encodeSn(packet), this.gatewayPort, this.host);
  }

  /** Waits for the next message of `type` (removing it and what came before of other types stays). */
  async next(type: number, timeoutMs = 3000): Promise<SnPacket> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((p) => p.type === type);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no MQTT-SN message of type 0x${type.toString(16)} within ${timeoutMs} ms (inbox: ${this.inbox.map((p) => p.type).join(',')})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Messages received and not taken yet. */
  pending(): SnPacket[] {
    return [...this.inbox];
  }

  close(): void {
    this.socket.close();
  }
}

/**
 * A UDP relay on 127.0.0.1 between MQTT-SN clients and a gateway that drops datagrams on purpose, both
 * ways, with a seeded PRNG. Each client gets its own upstream socket, so the gateway sees one address per client.
 */
export class LossyRelay {
  readonly socket: Socket;
  dropped = 0;
  forwarded = 0;
  private readonly upstreams = new Map<string, Socket>();
  private readonly random: () => number;

  private constructor(
    private readonly targetPort: number,
    private readonly dropRate: number,
    seed: number,
  ) {
    this.random = seededRandom(seed);
    this.socket = createSocket('udp4');
    this.socket.on('message', (datagram, rinfo) => {
      const key = `${rinfo.address}:${rinfo.port}`;
      let up = this.upstreams.get(key);
      if (!up) {
        up = createSocket('udp4');
        up.bind(0, '127.0.0.1');
        up.on('message', (answer) => this.pass(() => this.socket.send(answer, rinfo.port, rinfo.address)));
        this.upstreams.set(key, up);
      }
      const upstream = up;
      this.pass(() => upstream.send(datagram, this.targetPort, '127.0.0.1'));
    });
  }

  static async start(targetPort: number, dropRate: number, seed: number): Promise<LossyRelay> {
    const relay = new LossyRelay(targetPort, dropRate, seed);
    await new Promise<void>((resolve) => relay.socket.bind(0, '127.0.0.1', resolve));
    return relay;
  }

  get port(): number {
    return this.socket.address().port;
  }

  private pass(send: () => void): void {
    if (this.random() < this.dropRate) this.dropped++;
    else {
      this.forwarded++;
      send();
    }
  }

  close(): void {
    for (const s of this.upstreams.values()) s.close();
    this.socket.close();
  }
}
