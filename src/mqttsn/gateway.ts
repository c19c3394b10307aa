// The MQTT-SN 1.2 gateway, sans I/O: datagrams and time in, datagrams out. It finds the client a
// datagram belongs to (by UDP address, and by wireless node id behind a forwarder, spec 5.5),
// guards the door (oversize and malformed datagrams dropped and counted, CONNECT rate per address,
// a cap on half-open clients, no answer larger than its request before a connection), answers
// SEARCHGW, sends ADVERTISE, and publishes QoS -1 messages. Each connected client is a
// GatewayClient with its own virtual MQTT connection to the broker.
import { Buffer } from 'node:buffer';
import type { TransportInfo } from '../broker/channel.js';
import { transportInfo } from '../broker/channel.js';
import { formatAddress } from '../util/address.js';
import { decodeEncapsulated, decodeSn, encodeEncapsulated, encodeSn, isEncapsulated, SnDecodeError } from './codec.js';
import { GatewayClient } from './gateway-client.js';
import { SnType, type SnPacket, type SnPublishPacket } from './packets.js';
import { PredefinedTopics } from './topics.js';
import { VirtualConnection, type GatewayCore } from './virtual-connection.js';

/** Where a datagram came from: a UDP address, and the wireless node behind a forwarder. */
export interface Peer {
  address: string;
  port: number;
  /** Set when the client sits behind a forwarder (spec 5.5): replies are encapsulated for it. */
  nodeId?: Buffer;
  /** The forwarder's Ctrl octet, echoed back. */
  ctrl?: number;
}

export interface GatewayOptions {
  /** Name of the listener in logs and in ClientInfo.listener, e.g. "mqttsn:1884". */
  listenerName: string;
  /** GwId in ADVERTISE and GWINFO (0-255). Default 1. */
  gatewayId?: number;
  /** Topic ids every client may use without REGISTER: id (1-65534) → topic name. */
  predefinedTopics?: Record<string | number, string>;
  /** Tretry (s): retransmission interval of an unanswered message to a client. Default 10 (spec 7.2: 10-15 s). */
  retryInterval?: number;
  /** Nretry: retransmissions before a client is taken as lost. Default 5 (spec 7.2: 3-5). */
  maxRetries?: number;
  /** ADVERTISE every this many seconds (0: never). Default 0. */
  advertiseInterval?: number;
  /** Largest datagram accepted or sent (octets); larger ones are dropped and counted. Default 65535. */
  maxMessageSize?: number;
  /** Clients between CONNECT and CONNACK at once; further CONNECTs are dropped. Default 1000. */
  maxHalfOpen?: number;
  /** CONNECT, SEARCHGW and connection-less datagrams accepted per second from one IP address. Default 20. */
  connectRatePerAddress?: number;
  /** QoS 0 messages buffered per client (asleep, or behind a transaction). Default: the broker's maxQueuedMessages. */
  maxBufferedMessages?: number;
  /** Topic ids one client may register. Default 1000. */
  maxTopicsPerClient?: number;
  /** Session Expiry Interval (s) of a client connecting with Clean Session 0. Default: the broker's sessionExpiry. */
  sessionExpiry?: number;
  /** Client ID of the virtual connection that publishes QoS -1 messages. Default "mqttsn-gateway-<gatewayId>". */
  qosMinus1ClientId?: string;
  /** Transport fields of every virtual connection (allowAnonymous, publishLimit, ...). */
  transport?: Partial<Omit<TransportInfo, 'remoteAddress' | 'listener' | 'secure'>>;
}

export type ResolvedGatewayOptions = Required<Omit<GatewayOptions, 'predefinedTopics' | 'transport'>>;

export interface GatewayStats {
  datagramsReceived: number;
  datagramsSent: number;
  /** Datagrams that are not valid MQTT-SN (dropped). */
  malformed: number;
  /** Datagrams over maxMessageSize (dropped). */
  oversize: number;
  /** Datagrams from one address over connectRatePerAddress, and CONNECTs over maxHalfOpen (dropped). */
  rateLimited: number;
  /** Datagrams from an address with no connection that need one (answered with at most a DISCONNECT). */
  unknownPeer: number;
  qosMinus1Published: number;
  retransmissions: number;
  /** Clients that stopped answering (keep alive, sleep duration, Nretry). */
  lost: number;
  delivered: number;
  /** Messages the client could not get (too large, topic refused): acknowledged to the broker. */
  undeliverable: number;
  /** QoS 0 messages dropped from a full buffer. */
  bufferDropped: number;
}

export interface GatewayIo {
  /** Sends one datagram to a UDP address. */
  send(datagram: Buffer, address: string, port: number): void;
  /** Broadcasts one datagram (ADVERTISE); absent: no broadcast. */
  broadcast?(datagram: Buffer): void;
  /** Lines for the log (optional). */
  log?(level: 'debug' | 'info' | 'warn', fields: Record<string, unknown>, message: string): void;
}

/** What a GatewayClient needs from the gateway. */
export interface GatewayHost {
  readonly core: GatewayCore;
  readonly options: ResolvedGatewayOptions;
  readonly predefined: PredefinedTopics;
  readonly stats: GatewayStats;
  readonly transport: Omit<TransportInfo, 'remoteAddress'>;
  send(peer: Peer, datagram: Buffer): void;
  remoteAddress(peer: Peer): string;
  removed(client: GatewayClient, event: string, detail: string | undefined, now: number): void;
}

export function peerKey(peer: Peer): string {
  const base = `${peer.address}|${peer.port}`;
  return peer.nodeId ? `${base}|${peer.nodeId.toString('hex')}` : base;
}

/** Datagrams accepted per IP address in a one-second window; the table is bounded, so spoofed sources cannot grow it. */
class AddressRate {
  private window = 0;
  private readonly counts = new Map<string, number>();
  private overflow = 0;
  constructor(
    private readonly perAddress: number,
    private readonly maxAddresses = 10_000,
  ) {}

  admit(address: string, now: number): boolean {
    const window = Math.floor(now / 1000);
    if (window !== this.window) {
      this.window = window;
      this.counts.clear();
      this.overflow = 0;
    }
    const count = this.counts.get(address);
    if (count === undefined) {
      // A full table: every further address shares one budget of perAddress per window.
      if (this.counts.size >= this.maxAddresses) return ++this.overflow <= this.perAddress;
      this.counts.set(address, 1);
      return true;
    }
    if (count >= this.perAddress) return false;
    this.counts.set(address, count + 1);
    return true;
  }
}

export class MqttSnGateway implements GatewayHost {
  readonly options: ResolvedGatewayOptions;
  readonly predefined: PredefinedTopics;
  readonly transport: Omit<TransportInfo, 'remoteAddress'>;
  readonly stats: GatewayStats = {
    datagramsReceived: 0,
    datagramsSent: 0,
    malformed: 0,
    oversize: 0,
    rateLimited: 0,
    unknownPeer: 0,
    qosMinus1Published: 0,
    retransmissions: 0,
    lost: 0,
    delivered: 0,
    undeliverable: 0,
    bufferDropped: 0,
  };
  private readonly clients = new Map<string, GatewayClient>();
  private readonly rate: AddressRate;
  /** Half-open clients as counted at the last tick, plus those created since (O(1) per CONNECT under a flood). */
  private halfOpen = 0;
  private nextAdvertise = 0;
  private qosMinus1: VirtualConnection | undefined;
  private qosMinus1Ready = false;
  private qosMinus1RetryAt = 0;
  private qosMinus1Backlog: SnPublishPacket[] = [];
  private closed = false;

  constructor(
    readonly core: GatewayCore,
    options: GatewayOptions,
    private readonly io: GatewayIo,
  ) {
    const gatewayId = options.gatewayId ?? 1;
    if (!Number.isInteger(gatewayId) || gatewayId < 0 || gatewayId > 255) throw new Error('gatewayId: must be an integer from 0 to 255');
    this.options = {
      listenerName: options.listenerName,
      gatewayId,
      retryInterval: options.retryInterval ?? 10,
      maxRetries: options.maxRetries ?? 5,
      advertiseInterval: options.advertiseInterval ?? 0,
      maxMessageSize: Math.min(options.maxMessageSize ?? 0xffff, 0xffff),
      maxHalfOpen: options.maxHalfOpen ?? 1000,
      connectRatePerAddress: options.connectRatePerAddress ?? 20,
      maxBufferedMessages: options.maxBufferedMessages ?? core.limits.maxQueuedMessages,
      maxTopicsPerClient: options.maxTopicsPerClient ?? 1000,
      sessionExpiry: options.sessionExpiry ?? core.limits.sessionExpiry,
      qosMinus1ClientId: options.qosMinus1ClientId ?? `mqttsn-gateway-${gatewayId}`,
    };
    this.predefined = new PredefinedTopics(options.predefinedTopics);
    this.transport = { ...options.transport, listener: options.listenerName, secure: false };
    this.rate = new AddressRate(this.options.connectRatePerAddress);
    this.nextAdvertise = core.clock.now();
  }

  /** Clients known to the gateway (half-open ones included). */
  get clientCount(): number {
    return this.clients.size;
  }

  /** The state of the client at `peer`, for tests and inspection. */
  clientState(peer: Peer): string | undefined {
    return this.clients.get(peerKey(peer))?.state;
  }

  remoteAddress(peer: Peer): string {
    const base = formatAddress(peer.address, peer.port);
    return peer.nodeId ? `${base}/${peer.nodeId.toString('hex')}` : base;
  }

  send(peer: Peer, datagram: Buffer): void {
    if (this.closed) return;
    const out = peer.nodeId ? encodeEncapsulated({ ctrl: peer.ctrl ?? 0, nodeId: peer.nodeId, message: datagram }) : datagram;
    this.stats.datagramsSent++;
    this.io.send(out, peer.address, peer.port);
  }

  removed(client: GatewayClient, event: string, detail: string | undefined, _now: number): void {
    if (this.clients.get(client.key) === client) this.clients.delete(client.key);
    this.io.log?.('debug', { listener: this.options.listenerName, clientId: client.clientId, address: this.remoteAddress(client.peer), event, detail }, 'MQTT-SN client ended');
  }

  /** One datagram from `address`:`port`. Never throws on bad input: it is dropped and counted. */
  receive(datagram: Buffer, address: string, port: number): void {
    if (this.closed) return;
    this.stats.datagramsReceived++;
    if (datagram.length > this.options.maxMessageSize) {
      this.stats.oversize++;
      return;
    }
    const now = this.core.clock.now();
    let peer: Peer = { address, port };
    let packet: SnPacket;
    try {
      let message = datagram;
      if (isEncapsulated(datagram)) {
        const e = decodeEncapsulated(datagram);
        peer = { address, port, nodeId: Buffer.from(e.nodeId), ctrl: e.ctrl & 0x03 };
        message = e.message;
      }
      packet = decodeSn(message);
    } catch (err) {
      if (!(err instanceof SnDecodeError)) throw err;
      this.stats.malformed++;
      this.io.log?.('debug', { listener: this.options.listenerName, address: formatAddress(address, port), error: err.message }, 'malformed MQTT-SN datagram dropped');
      return;
    }
    if (packet.type === SnType.SEARCHGW) {
      // [MQTT-SN 6.1] GWINFO answers SEARCHGW, from anyone (a connected client may be looking for another gateway);
      // unicast to the searcher, and no larger than it (3 octets each).
      if (this.rate.admit(peer.address, now)) this.send(peer, encodeSn({ type: SnType.GWINFO, gwId: this.options.gatewayId }));
      else this.stats.rateLimited++;
      return;
    }
    const key = peerKey(peer);
    const client = this.clients.get(key);
    if (client) {
      if (packet.type === SnType.CONNECT && !client.connected && !this.rate.admit(address, now)) {
        this.stats.rateLimited++;
        return;
      }
      client.receive(packet, now);
      return;
    }
    this.fromUnknown(peer, key, packet, datagram.length, now);
  }

  /** A datagram from an address with no client: only what needs no connection is served. */
  private fromUnknown(peer: Peer, key: string, packet: SnPacket, size: number, now: number): void {
    switch (packet.type) {
      case SnType.CONNECT: {
        if (!this.rate.admit(peer.address, now) || this.halfOpen >= this.options.maxHalfOpen) {
          this.stats.rateLimited++;
          return;
        }
        this.halfOpen++;
        // In the map before its CONNECT reaches the broker: the listener's maxConnections counts it, as TCP does.
        const client = new GatewayClient(this, peer, key, packet, now);
        this.clients.set(key, client);
        client.startConnect(packet, now);
        return;
      }
      case SnType.PUBLISH:
        if (packet.qos === -1) {
          if (!this.rate.admit(peer.address, now)) {
            this.stats.rateLimited++;
            return;
          }
          this.publishQosMinus1(packet, now);
          return;
        }
        break;
      case SnType.ADVERTISE:
      case SnType.GWINFO:
        return; // another gateway's: not ours to answer
    }
    this.stats.unknownPeer++;
    // The client believes it is connected (the gateway restarted, or it was lost): a DISCONNECT tells it to
    // connect again. Two octets, never more than the request, and rate limited.
    if (size >= 2 && packet.type !== SnType.DISCONNECT && this.rate.admit(peer.address, now)) this.send(peer, encodeSn({ type: SnType.DISCONNECT }));
  }


  // ---- QoS -1 (spec 6.8) ----

  /** Publishes a connection-less message through the gateway's own virtual connection (ACLs apply to its Client ID). */
  private publishQosMinus1(p: SnPublishPacket, now: number): void {
    const topic = p.topic.type === 1 ? this.predefined.name(p.topic.id) : p.topic.type === 2 ? p.topic.name : undefined;
    if (topic === undefined) {
      this.stats.undeliverable++;
      return;
    }
    if (!this.qosMinus1Ready) {
      if (this.qosMinus1Backlog.length < 100) this.qosMinus1Backlog.push({ ...p, payload: Buffer.from(p.payload) });
      else this.stats.undeliverable++;
      this.openQosMinus1(now);
      return;
    }
    this.stats.qosMinus1Published++;
    this.qosMinus1!.send({ type: 3, topic, payload: p.payload, qos: 0, retain: p.retain, dup: false }, now);
  }

  private openQosMinus1(now: number): void {
    if (this.qosMinus1?.open || now < this.qosMinus1RetryAt) return;
    this.qosMinus1RetryAt = now + 1000;
    const link: VirtualConnection = new VirtualConnection(this.core, transportInfo(this.transport, `${this.options.listenerName} (QoS -1)`), {
      packet: (packet) => {
        if (link !== this.qosMinus1 || packet.type !== 2) return;
        if (packet.reasonCode !== 0) {
          this.io.log?.('warn', { listener: this.options.listenerName, clientId: this.options.qosMinus1ClientId, code: packet.reasonCode }, 'MQTT-SN QoS -1 connection refused by the broker; QoS -1 messages are dropped');
          this.stats.undeliverable += this.qosMinus1Backlog.length;
          this.qosMinus1Backlog = [];
          return;
        }
        this.qosMinus1Ready = true;
        const backlog = this.qosMinus1Backlog;
        this.qosMinus1Backlog = [];
        for (const p of backlog) this.publishQosMinus1(p, this.core.clock.now());
      },
      closed: () => {
        if (link === this.qosMinus1) this.qosMinus1Ready = false;
      },
    });
    this.qosMinus1 = link;
    link.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: this.options.qosMinus1ClientId }, now);
  }

  // ---- timers ----

  /** Runs the timers of every client, and ADVERTISE. Call it often (the UDP adapter does, every 100 ms). */
  tick(): void {
    if (this.closed) return;
    const now = this.core.clock.now();
    let halfOpen = 0;
    for (const client of [...this.clients.values()]) {
      client.tick(now);
      if (client.halfOpen) halfOpen++;
    }
    this.halfOpen = halfOpen;
    const interval = this.options.advertiseInterval;
    if (interval > 0 && this.io.broadcast && now >= this.nextAdvertise) {
      this.nextAdvertise = now + interval * 1000;
      this.stats.datagramsSent++;
      this.io.broadcast(encodeSn({ type: SnType.ADVERTISE, gwId: this.options.gatewayId, duration: Math.min(interval, 0xffff) }));
    }
  }

  /** Ends every client (their wills are published, as for lost connections) and stops. */
  close(): void {
    if (this.closed) return;
    const now = this.core.clock.now();
    for (const client of [...this.clients.values()]) client.shutdown(now);
    this.clients.clear();
    this.qosMinus1?.transportClosed();
    this.closed = true;
  }
}
