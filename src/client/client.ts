// MqttClient: one logical MQTT session over successive network connections.
//
// State: `outQueue` holds requests not yet sent (offline, or above the server's Receive
// Maximum); `inflight` holds sent requests waiting for their acknowledgement, by packet id.
// After a lost connection SUBSCRIBE / UNSUBSCRIBE go back to the queue. PUBLISH and PUBREL stay
// in flight: when the server kept the session they are sent again (PUBLISH with DUP, as Receive
// Maximum allows); when it did not, unfinished messages go back to the queue as new ones.
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import {
  MqttProtocolError,
  PacketDecoder,
  PacketType,
  encodePacket,
  isValidTopicFilter,
  isValidTopicName,
  topicMatches,
} from '../protocol/index.js';
import type {
  ConnackPacket,
  ConnectPacket,
  DisconnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PubAckLikePacket,
  PublishPacket,
  QoS,
  SubackPacket,
  Subscription,
  UnsubackPacket,
} from '../protocol/index.js';
import {
  ClientClosedError,
  ConnectionError,
  DisconnectError,
  MqttClientError,
  TimeoutError,
  ackError,
  connackError,
  explainNetworkError,
  formatDuration,
  isFinalDisconnect,
  isPermanentConnackFailure,
  otherVersions,
  serverDisconnectError,
} from './errors.js';
import type { ClientOptions, ResolvedOptions } from './options.js';
import { defaultPingTimeout, protocolVersionName, resolveOptions, toBuffer } from './options.js';
import { KeepAlive, PacketIdAllocator, backoffDelay, timerDelay } from './session-state.js';
import type { OpenedTransport, TransportStage } from './transport.js';
import { flushAndClose, openTransport, writeBatched } from './transport.js';
import type { BrokerAddress } from './url.js';
import { hostPort, isSecure, isWebSocket } from './url.js';

/** What the server said in its CONNACK. */
export interface ConnackInfo {
  sessionPresent: boolean;
  /** 0 (Success / Connection accepted). */
  reasonCode: number;
  /** CONNACK properties (5.0), as the server sent them. */
  properties: Properties;
  /** The Client ID in use: the one sent, or the server-assigned one. */
  clientId: string;
  /** Keep alive in force, seconds (Server Keep Alive when the server set one). */
  keepAlive: number;
}

/** A received application message. */
export interface Message {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  /** PUBLISH properties (5.0). */
  properties?: Properties;
}

export interface PublishOptions {
  qos?: QoS;
  retain?: boolean;
  /** PUBLISH properties (5.0): messageExpiryInterval, contentType, responseTopic, correlationData, userProperties, ... */
  properties?: Properties;
}

/** Acknowledgement of a publish: reason code 0 (or 0x10 No matching subscribers) and what the server added. */
export interface PublishResult {
  reasonCode: number;
  reasonString?: string;
  properties?: Properties;
}

export interface SubscribeOptions {
  qos?: QoS;
  /** 5.0 subscription options. */
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
  /** SUBSCRIBE properties (5.0): subscriptionIdentifier, userProperties. */
  properties?: Properties;
}

export interface SubscribeResult {
  topicFilter: string;
  /** Granted QoS 0..2, or a failure code (0x80 and up). */
  reasonCode: number;
  /** The granted QoS, when the subscription succeeded. */
  qos?: QoS;
}

export interface UnsubscribeResult {
  topicFilter: string;
  /** 5.0: the reason code per filter; 3.1.x: 0. */
  reasonCode: number;
}

export interface MqttClientEvents {
  /** Connected (first time and after every reconnect). */
  connect: [info: ConnackInfo];
  /** A reconnect attempt starts. */
  reconnect: [info: { attempt: number; delay: number }];
  /** The connection was lost (the client will reconnect unless it is closed). */
  offline: [error: MqttClientError];
  /** The server sent DISCONNECT (5.0). */
  disconnect: [packet: DisconnectPacket];
  /** The client is finally closed: end(), destroy(), or a failure it does not retry. */
  close: [error?: MqttClientError];
  /** Errors while running (a failed reconnect, a protocol error). Only emitted when someone listens. */
  error: [error: MqttClientError];
  message: [message: Message];
  packetsend: [packet: Packet];
  packetreceive: [packet: Packet];
}

interface Deferred<T> {
  resolve: (value: T) => void;
  reject: (error: Error) => void;
}

type OutItem =
  | { kind: 'publish'; packet: PublishPacket; deferred: Deferred<PublishResult>; offline: boolean }
  | { kind: 'subscribe'; subscriptions: Subscription[]; properties?: Properties; deferred: Deferred<SubscribeResult[]>; internal?: boolean }
  | { kind: 'unsubscribe'; topicFilters: string[]; properties?: Properties; deferred: Deferred<UnsubscribeResult[]> };

type Inflight =
  | {
      kind: 'publish';
      packet: PublishPacket;
      stage: 'ack' | 'rec' | 'comp';
      deferred: Deferred<PublishResult>;
      result?: PublishResult;
      /** Sent on an earlier connection of the kept session, not yet again on this one (holds no Receive Maximum slot). */
      resend?: boolean;
      /** Order in which its PUBREC came: PUBRELs are resent in that order [MQTT-4.6.0-3]. */
      pubrecOrder?: number;
    }
  | (Extract<OutItem, { kind: 'subscribe' }> & { packetId: number })
  | (Extract<OutItem, { kind: 'unsubscribe' }> & { packetId: number });

interface Connection {
  stream: Duplex;
  tlsSocket?: tls.TLSSocket;
  decoder: PacketDecoder;
  keepAlive?: KeepAlive;
  keepAliveTimer?: NodeJS.Timeout;
  corked: boolean;
  lost: boolean;
  /** Set once CONNACK accepted the connection. */
  connected: boolean;
  /** Error to report when the stream closes (e.g. the server's DISCONNECT). */
  closeReason?: MqttClientError;
  onConnack?: (packet: ConnackPacket) => void;
  onLost?: (err: MqttClientError) => void;
}

const noop = () => {};

export class MqttClient extends EventEmitter<MqttClientEvents> {
  readonly options: ResolvedOptions;
  readonly protocolVersion: ProtocolVersion;
  /** The Client ID in use (the server-assigned one once known). */
  clientId: string;
  /** The last successful CONNACK. */
  connack: ConnackInfo | undefined;

  private conn: Connection | undefined;
  private state: 'new' | 'connecting' | 'connected' | 'waiting' | 'closing' | 'closed' = 'new';
  private readonly ids = new PacketIdAllocator();
  private outQueue: OutItem[] = [];
  private offlineCount = 0;
  private readonly inflight = new Map<number, Inflight>();
  /** QoS 1/2 publishes counted against the server's Receive Maximum on this connection. */
  private inflightPublishes = 0;
  /** Packet ids of kept-session publishes still to be sent again, in their original order. */
  private resendQueue: number[] = [];
  /** PUBRECs received so far: each QoS 2 message past PUBREC keeps its place in that order. */
  private pubrecs = 0;
  private readonly incomingQos2 = new Set<number>();
  private readonly subscriptions = new Map<string, { subscription: Subscription; properties?: Properties }>();
  private readonly iterators = new Set<MessageQueue>();
  /** Messages that arrived while no messages() iterator existed (bounded). */
  private unclaimed: Message[] = [];
  private pingWaiters: { sentAt: number; deferred: Deferred<number> }[] = [];
  private drainWaiters: (() => void)[] = [];
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectAttempt = 0;
  private attemptAbort: AbortController | undefined;
  private closeError: MqttClientError | undefined;
  private topicAliasesIn = new Map<number, string>();
  // server limits from CONNACK
  private receiveMaximum = 65535;
  private maximumPacketSize = Infinity;
  private maximumQoS: QoS = 2;
  private retainAvailable = true;
  private topicAliasMaximum = 0;

  constructor(urlOrOptions?: string | ClientOptions, options?: ClientOptions) {
    super();
    this.options = resolveOptions(urlOrOptions, options);
    this.protocolVersion = this.options.protocolVersion;
    this.clientId = this.options.clientId;
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  get address(): BrokerAddress {
    return this.options.address;
  }

  /** The TLS socket of the current connection (mqtts://, wss://). */
  get tlsSocket(): tls.TLSSocket | undefined {
    return this.conn?.tlsSocket;
  }

  /** Requests waiting to be sent plus requests waiting for an acknowledgement. */
  get pending(): { queued: number; inflight: number } {
    return { queued: this.outQueue.length, inflight: this.inflight.size };
  }

  /**
   * Opens the first connection. Rejects (and closes the client) when it fails: a failed first
   * connection is reported, not retried. Later losses are retried when `reconnect` is on.
   */
  async connect(): Promise<ConnackInfo> {
    if (this.state !== 'new') throw new MqttClientError('INVALID_ARGUMENT', 'connect() was already called');
    this.state = 'connecting';
    try {
      const info = await this.attempt();
      return info;
    } catch (err) {
      const error = toClientError(err, this.options.address);
      this.finalize(error);
      throw error;
    }
  }

  // ---------------------------------------------------------------- connection attempts

  private attempt(): Promise<ConnackInfo> {
    const { address, connectTimeout } = this.options;
    // a CONNECT that cannot be encoded fails now, before a socket is opened
    let connectPacket: ConnectPacket;
    let connectBytes: Buffer;
    try {
      connectPacket = this.connectPacket();
      connectBytes = this.encodeConnect(connectPacket);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const abort = new AbortController();
    this.attemptAbort = abort;
    return new Promise<ConnackInfo>((resolve, reject) => {
      let phase: TransportStage | 'connack' = 'tcp';
      let settled = false;
      let conn: Connection | undefined;
      const fail = (err: MqttClientError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.attemptAbort = undefined;
        abort.abort();
        if (conn) {
          conn.lost = true;
          this.teardown(conn);
        }
        reject(err);
      };
      abort.signal.addEventListener('abort', () => fail(new ClientClosedError('CLIENT_CLOSED', 'the client was closed while connecting')), { once: true });
      const timer = setTimeout(() => fail(connectTimeoutError(phase, connectTimeout, address)), timerDelay(connectTimeout));

      const open: Promise<OpenedTransport> = this.options.createStream
        ? this.options.createStream(address).then((s) => ('stream' in s && !('write' in s) ? s : { stream: s as Duplex }))
        : openTransport(address, {
            tls: this.options.tls,
            wsHeaders: this.options.wsHeaders,
            signal: abort.signal,
            onStage: (stage) => {
              if (phase !== 'connack') phase = stage;
            },
          });
      open.then(
        (opened) => {
          if (settled || this.state === 'closing' || this.state === 'closed') {
            opened.stream.destroy();
            if (!settled) fail(new ClientClosedError('CLIENT_CLOSED', 'the client was closed while connecting'));
            return;
          }
          try {
            phase = 'connack';
            conn = this.setupConnection(opened);
            conn.onLost = (err) => fail(err);
            conn.onConnack = (packet) => {
              if (settled) return;
              if (packet.reasonCode !== 0) {
                fail(connackError(packet.reasonCode, this.protocolVersion, packet.properties?.reasonString, packet.properties?.serverReference));
                return;
              }
              if (packet.sessionPresent && this.options.clean) {
                // Clean Start 1 leaves no session to resume: the client must close [MQTT-3.2.2-4] (3.1.1: [MQTT-3.2.2-1])
                if (this.protocolVersion === 5) this.send(conn!, { type: 14, reasonCode: 0x82 });
                const flag = this.protocolVersion === 5 ? 'Clean Start' : 'Clean Session';
                fail(
                  new MqttClientError('PROTOCOL_ERROR', `protocol error: the server answered ${flag} 1 with Session Present 1 (a new session cannot be present)`, {
                    reasonCode: 0x82,
                  }),
                );
                return;
              }
              settled = true;
              clearTimeout(timer);
              this.attemptAbort = undefined;
              const c = conn!;
              c.onLost = undefined;
              c.onConnack = undefined;
              resolve(this.onConnected(c, packet));
            };
            this.send(conn, connectPacket, connectBytes);
          } catch (err) {
            fail(toClientError(err, address));
          }
        },
        (err) => fail(toClientError(err, address, 'handshake')),
      );
    });
  }

  /** Encodes CONNECT, or throws INVALID_ARGUMENT saying which option cannot go on the wire. */
  private encodeConnect(packet: ConnectPacket): Buffer {
    const expiry = this.options.sessionExpiry;
    if (expiry !== undefined && !(Number.isInteger(expiry) && expiry >= 0 && expiry <= 0xffffffff)) {
      throw new MqttClientError('INVALID_ARGUMENT', `sessionExpiry must be a whole number of seconds from 0 to 4294967295 (got ${String(expiry)})`);
    }
    if (packet.will && !isValidTopicName(packet.will.topic)) {
      throw new MqttClientError('INVALID_ARGUMENT', `invalid will topic "${packet.will.topic}": it must be non-empty and contain no + or #`);
    }
    try {
      return encodePacket(packet, this.protocolVersion);
    } catch (err) {
      throw new MqttClientError('INVALID_ARGUMENT', encodeFailure('CONNECT', err), { cause: err });
    }
  }

  private connectPacket(): ConnectPacket {
    const o = this.options;
    const packet: ConnectPacket = {
      type: 1,
      protocolName: o.protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: o.protocolVersion,
      clean: o.clean,
      keepAlive: o.keepAlive,
      clientId: this.clientId,
    };
    if (o.username !== undefined) packet.username = o.username;
    if (o.password !== undefined) packet.password = o.password;
    if (o.will) {
      packet.will = {
        topic: o.will.topic,
        payload: toBuffer(o.will.payload),
        qos: o.will.qos ?? 0,
        retain: o.will.retain ?? false,
      };
      if (o.will.properties && o.protocolVersion === 5) packet.will.properties = o.will.properties;
    }
    if (o.protocolVersion === 5) {
      const properties: Properties = { ...o.properties };
      if (o.sessionExpiry !== undefined) properties.sessionExpiryInterval = o.sessionExpiry;
      if (Object.keys(properties).length > 0) packet.properties = properties;
    }
    return packet;
  }

  private setupConnection(opened: OpenedTransport): Connection {
    const decoder = new PacketDecoder({
      protocolVersion: this.protocolVersion,
      role: 'client',
      ...(this.options.properties?.maximumPacketSize ? { maxPacketSize: this.options.properties.maximumPacketSize } : {}),
    });
    const conn: Connection = { stream: opened.stream, decoder, corked: false, lost: false, connected: false };
    if (opened.tlsSocket) conn.tlsSocket = opened.tlsSocket;
    this.conn = conn;
    const stream = opened.stream;
    const onPacket = (packet: Packet) => this.handlePacket(conn, packet);
    let firstBytes: Buffer | undefined;
    stream.on('data', (chunk: Buffer) => {
      if (conn.lost) return;
      if (!conn.connected && firstBytes === undefined) firstBytes = Buffer.from(chunk.subarray(0, 64));
      try {
        decoder.feed(chunk, onPacket);
      } catch (err) {
        if (err instanceof MqttProtocolError) {
          if (!conn.connected) {
            // not MQTT at all (an HTTP server, a TLS port, ...): say what was expected and what came
            this.connectionLost(conn, notConnackError(firstBytes ?? chunk, err, this.options.address));
            return;
          }
          if (this.protocolVersion === 5 && !conn.lost) this.send(conn, { type: 14, reasonCode: err.reasonCode });
          this.connectionLost(conn, new MqttClientError('PROTOCOL_ERROR', `protocol error from the server: ${err.message}`, { reasonCode: err.reasonCode, cause: err }));
        } else {
          this.connectionLost(conn, toClientError(err, this.options.address));
        }
      }
    });
    stream.on('error', (err) => this.connectionLost(conn, toClientError(err, this.options.address)));
    stream.on('close', () => {
      const where = hostPort(this.options.address.host, this.options.address.port);
      let reason = conn.closeReason;
      if (!reason) {
        reason = conn.connected
          ? new DisconnectError('CONNECTION_CLOSED', `connection to ${where} closed by the server`)
          : new DisconnectError('CONNECTION_CLOSED', `connection to ${where} closed by the server before CONNACK`, { hint: this.closedBeforeConnackHint() });
      }
      this.connectionLost(conn, reason);
    });
    stream.on('end', () => {
      // the server half-closed: finish our side so 'close' follows
      stream.end();
    });
    return conn;
  }

  /** What a silent close before CONNACK may mean; never suggests the protocol version in use. */
  private closedBeforeConnackHint(): string {
    if (!isSecure(this.options.address.scheme)) {
      return `if this is a TLS port use mqtts:// (or wss://); the server may not support this protocol version (try ${otherVersions(this.protocolVersion)})`;
    }
    // over TLS the likely cause is a client certificate the server refused after the handshake (TLS 1.3 checks it then, and may send no alert)
    return this.options.tls?.cert !== undefined
      ? `the server may not accept the client certificate (signed by a CA the server trusts? expired or revoked?), or may not support MQTT ${protocolVersionName(this.protocolVersion)}`
      : `the server may require a client certificate (--cert / --key, the cert and key options), or may not support MQTT ${protocolVersionName(this.protocolVersion)}`;
  }

  private onConnected(conn: Connection, packet: ConnackPacket): ConnackInfo {
    const props = packet.properties ?? {};
    if (props.assignedClientIdentifier) this.clientId = props.assignedClientIdentifier;
    this.receiveMaximum = props.receiveMaximum ?? 65535;
    this.maximumPacketSize = props.maximumPacketSize ?? Infinity;
    this.maximumQoS = (props.maximumQoS ?? 2) as QoS;
    this.retainAvailable = props.retainAvailable !== 0;
    this.topicAliasMaximum = props.topicAliasMaximum ?? 0;
    this.topicAliasesIn.clear();
    let keepAlive = this.options.keepAlive;
    let pingInterval = this.options.pingInterval;
    if (props.serverKeepAlive !== undefined) {
      keepAlive = props.serverKeepAlive;
      pingInterval = keepAlive === 0 ? 0 : Math.min(pingInterval > 0 ? pingInterval : Infinity, keepAlive * 1000);
    }
    const info: ConnackInfo = { sessionPresent: packet.sessionPresent, reasonCode: packet.reasonCode, properties: props, clientId: this.clientId, keepAlive };
    this.connack = info;
    conn.connected = true;
    this.state = 'connected';
    this.reconnectAttempt = 0;
    if (pingInterval > 0) {
      // the PINGRESP timeout follows the interval in force, which a Server Keep Alive may have set
      const pingTimeout = this.options.pingTimeout ?? defaultPingTimeout(pingInterval);
      conn.keepAlive = new KeepAlive(pingInterval, pingTimeout, Date.now());
      this.scheduleKeepAlive(conn, Date.now() + pingInterval);
    }
    // In order (docs/client.md): 1. subscribe again when the server forgot the session, 2. the
    // unfinished messages, 3. what was queued meanwhile (which may also be subscriptions).
    let first: OutItem[] = [];
    if (packet.sessionPresent) this.resumeFlows(conn);
    else {
      this.incomingQos2.clear();
      if (this.options.resubscribe) first = this.resubscriptions();
      first.push(...this.restartFlows());
    }
    this.outQueue = first.concat(this.outQueue);
    this.pump();
    queueMicrotask(() => this.emit('connect', info));
    return info;
  }

  private resubscriptions(): OutItem[] {
    const again: OutItem[] = [];
    for (const { subscription, properties } of this.subscriptions.values()) {
      again.push({
        kind: 'subscribe',
        subscriptions: [subscription],
        ...(properties ? { properties } : {}),
        internal: true,
        deferred: {
          resolve: noop,
          reject: (err) => {
            if (!(err instanceof ClientClosedError)) this.emitError(err as MqttClientError);
          },
        },
      });
    }
    return again;
  }

  /**
   * The server kept the session [MQTT-4.4.0-1]: PUBREL again for QoS 2 flows past PUBREC, and mark
   * the other publishes to be sent again (with DUP, same ids, in order) as Receive Maximum allows.
   */
  private resumeFlows(conn: Connection): void {
    // the send quota starts again with each connection (4.9)
    this.inflightPublishes = 0;
    this.resendQueue = [];
    const pubrels: [packetId: number, order: number][] = [];
    for (const [packetId, item] of this.inflight) {
      if (item.kind !== 'publish') continue;
      if (item.stage === 'comp') {
        // holds its Receive Maximum slot until PUBCOMP
        this.inflightPublishes++;
        pubrels.push([packetId, item.pubrecOrder ?? 0]);
      } else {
        item.resend = true;
        this.resendQueue.push(packetId);
      }
    }
    // PUBRELs in the order their PUBRECs came [MQTT-4.6.0-3], which may differ from the order sent
    pubrels.sort((a, b) => a[1] - b[1]);
    for (const [packetId] of pubrels) this.send(conn, { type: 6, packetId });
  }

  /**
   * The server has no session (Session Present 0): our unfinished flows mean nothing to it and
   * must not be continued, no DUP, no PUBREL [MQTT-3.2.2-5] [MQTT-3.1.2-4] (3.1.1: [MQTT-3.1.2-6]).
   * Unacknowledged messages are returned to be sent again as new ones, in order. A QoS 2 message
   * past PUBREC is complete: the server stored it when it sent PUBREC, and sending it again could
   * deliver it twice [MQTT-4.3.3-5].
   */
  private restartFlows(): OutItem[] {
    const again: OutItem[] = [];
    const completed: Extract<Inflight, { kind: 'publish' }>[] = [];
    for (const [packetId, item] of this.inflight) {
      if (item.kind !== 'publish') continue;
      this.inflight.delete(packetId);
      this.ids.release(packetId);
      if (item.stage === 'comp') completed.push(item);
      else {
        const { packetId: _, ...rest } = item.packet;
        void _;
        again.push({ kind: 'publish', packet: { ...rest, dup: false }, deferred: item.deferred, offline: false });
      }
    }
    this.inflightPublishes = 0;
    this.resendQueue = [];
    for (const item of completed) item.deferred.resolve(item.result ?? { reasonCode: 0 });
    return again;
  }

  private scheduleKeepAlive(conn: Connection, at: number): void {
    clearTimeout(conn.keepAliveTimer);
    if (!Number.isFinite(at)) return;
    conn.keepAliveTimer = setTimeout(() => this.checkKeepAlive(conn), timerDelay(at - Date.now()));
    conn.keepAliveTimer.unref?.();
  }

  private checkKeepAlive(conn: Connection): void {
    if (conn.lost || !conn.keepAlive) return;
    const now = Date.now();
    const result = conn.keepAlive.poll(now);
    if (result.action === 'dead') {
      const timeout = formatDuration(conn.keepAlive.timeoutMs);
      this.connectionLost(
        conn,
        new TimeoutError('KEEPALIVE_TIMEOUT', `no PINGRESP from the server within ${timeout}: connection considered dead`, {
          hint: 'the network or the server stalled; the client reconnects if reconnect is on',
        }),
      );
      return;
    }
    if (result.action === 'ping') {
      // queued like a ping() so PINGRESPs pair up with PINGREQs in order
      this.pingWaiters.push({ sentAt: performance.now(), deferred: { resolve: noop, reject: noop } });
      this.send(conn, { type: 12 });
      conn.keepAlive.pingSent(now);
    }
    this.scheduleKeepAlive(conn, result.nextCheckAt);
  }

  // ---------------------------------------------------------------- losing connections

  private connectionLost(conn: Connection, err: MqttClientError): void {
    if (conn.lost) {
      return;
    }
    conn.lost = true;
    this.teardown(conn);
    if (conn.onLost) {
      // still connecting: the attempt reports it
      conn.onLost(err);
      return;
    }
    if (!conn.connected) return;
    this.afterLoss(err);
  }

  private teardown(conn: Connection): void {
    clearTimeout(conn.keepAliveTimer);
    // what was already written still goes out: a DISCONNECT with its reason code (4.13), a QoS 0
    // PUBLISH whose promise resolved
    flushAndClose(conn);
    if (this.conn === conn) this.conn = undefined;
  }

  private afterLoss(err: MqttClientError): void {
    // requests that must be sent again as new packets go back to the queue, in order
    const back: OutItem[] = [];
    for (const [packetId, item] of this.inflight) {
      if (item.kind === 'publish') continue;
      this.inflight.delete(packetId);
      this.ids.release(packetId);
      const { packetId: _, ...rest } = item;
      void _;
      back.push(rest as OutItem);
    }
    this.outQueue = back.concat(this.outQueue);
    for (const w of this.pingWaiters) w.deferred.reject(err);
    this.pingWaiters = [];
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'waiting';
    this.emit('offline', err);
    this.emitError(err);
    if (this.closed || (this.state as string) === 'closing') return;
    if (this.options.reconnect === false || isFinalDisconnect(err)) {
      this.finalize(err);
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    // an 'offline' / 'error' listener may have closed the client meanwhile
    if (this.options.reconnect === false || this.state === 'closing' || this.state === 'closed') return;
    const delay = backoffDelay(this.reconnectAttempt, this.options.reconnect);
    const attempt = ++this.reconnectAttempt;
    this.state = 'waiting';
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state !== 'waiting') return;
      this.state = 'connecting';
      this.emit('reconnect', { attempt, delay });
      this.attempt().then(noop, (e) => {
        const error = toClientError(e, this.options.address);
        if (this.state === 'closing' || this.state === 'closed') return;
        this.emitError(error);
        const permanent =
          error.code === 'INVALID_ARGUMENT' || (error.code === 'CONNACK_REFUSED' && isPermanentConnackFailure(error.reasonCode ?? 0x80, this.protocolVersion));
        if (permanent) {
          this.finalize(error);
          return;
        }
        this.scheduleReconnect();
      });
    }, timerDelay(delay));
  }

  private emitError(err: MqttClientError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Rejects everything pending and emits 'close' (once). */
  private finalize(err?: MqttClientError): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeError = err;
    clearTimeout(this.reconnectTimer);
    this.attemptAbort?.abort();
    if (this.conn) {
      this.conn.lost = true;
      this.teardown(this.conn);
    }
    const reason = new ClientClosedError('CLIENT_CLOSED', err ? `the client closed: ${err.message}` : 'the client was closed', { cause: err });
    for (const item of this.outQueue) item.deferred.reject(reason);
    this.outQueue = [];
    this.offlineCount = 0;
    for (const item of this.inflight.values()) item.deferred.reject(reason);
    this.inflight.clear();
    this.ids.clear();
    this.inflightPublishes = 0;
    this.resendQueue = [];
    for (const w of this.pingWaiters) w.deferred.reject(reason);
    this.pingWaiters = [];
    for (const it of this.iterators) it.finish();
    this.iterators.clear();
    this.resolveDrain();
    this.emit('close', err);
  }

  // ---------------------------------------------------------------- sending

  private send(conn: Connection, packet: Packet, encoded?: Buffer): void {
    if (conn.lost) return;
    const buf = encoded ?? encodePacket(packet, this.protocolVersion);
    writeBatched(conn, buf);
    conn.keepAlive?.sent(Date.now());
    if (this.listenerCount('packetsend') > 0) this.emit('packetsend', packet);
  }

  /** Sends queued requests as far as the connection, packet ids and the server's Receive Maximum allow. */
  private pump(): void {
    const conn = this.conn;
    if (!conn || !conn.connected || conn.lost || this.state !== 'connected') return;
    // publishes of the kept session first, in their original order [MQTT-4.6.0-1], within the
    // Receive Maximum of this connection [MQTT-3.3.4-7]
    while (this.resendQueue.length > 0 && this.inflightPublishes < this.receiveMaximum && !conn.lost) {
      this.resendPublish(conn, this.resendQueue.shift()!);
    }
    const keep: OutItem[] = [];
    // once a publish has to wait for Receive Maximum, later publishes wait too (message order)
    let publishesBlocked = this.resendQueue.length > 0;
    for (let i = 0; i < this.outQueue.length; i++) {
      const item = this.outQueue[i]!;
      if (item.kind === 'publish' && item.offline) {
        item.offline = false;
        this.offlineCount--;
      }
      if (item.kind === 'publish') {
        if (publishesBlocked || (item.packet.qos > 0 && this.inflightPublishes >= this.receiveMaximum)) {
          publishesBlocked = true;
          keep.push(item);
          continue;
        }
        if (item.packet.qos === 0) {
          this.sendPublish0(conn, item);
          continue;
        }
      }
      const packetId = this.ids.allocate();
      if (packetId === undefined) {
        keep.push(...this.outQueue.slice(i));
        break;
      }
      if (item.kind === 'publish') this.sendPublish(conn, item, packetId);
      else this.sendSubscription(conn, item, packetId);
    }
    this.outQueue = keep;
    // a request refused locally may have been the last one end() waits for
    this.resolveDrain();
  }

  /** The server limits from CONNACK a PUBLISH must respect, as an error; undefined when it may go. */
  private publishLimitError(packet: PublishPacket): MqttClientError | undefined {
    const what = `publish to "${packet.topic}"`;
    // [MQTT-3.2.2-11]
    if (packet.qos > this.maximumQoS) return ackError(what, 0x9b, `the server supports QoS up to ${this.maximumQoS}`);
    // [MQTT-3.2.2-14]
    if (packet.retain && !this.retainAvailable) return ackError(what, 0x9a, 'the server does not support retained messages');
    // [MQTT-3.3.2-9]: 1..Topic Alias Maximum of the CONNACK (absent: 0, no aliases)
    const alias = packet.properties?.topicAlias;
    if (alias !== undefined && alias > this.topicAliasMaximum) {
      const allowed = this.topicAliasMaximum === 0 ? 'the server accepts no Topic Alias' : `the server accepts Topic Aliases 1 to ${this.topicAliasMaximum}`;
      return ackError(what, 0x94, `Topic Alias ${alias}: ${allowed}`);
    }
    return undefined;
  }

  /** Encodes a PUBLISH for this connection, or the error saying why the connection must not carry it. */
  private encodeChecked(packet: PublishPacket): Buffer | MqttClientError {
    // checked when sent, not only in publish(): a message queued before CONNACK or while offline
    // (or resent on a new connection) meets this connection's limits
    const refused = this.publishLimitError(packet);
    if (refused) return refused;
    let buf: Buffer;
    try {
      buf = encodePacket(packet, this.protocolVersion);
    } catch (err) {
      return new MqttClientError('INVALID_ARGUMENT', encodeFailure('PUBLISH', err), { cause: err });
    }
    // [MQTT-3.2.2-15]
    if (buf.length > this.maximumPacketSize) {
      return ackError(`publish to "${packet.topic}"`, 0x95, `the packet has ${buf.length} bytes, the server accepts at most ${this.maximumPacketSize}`);
    }
    return buf;
  }

  private sendPublish0(conn: Connection, item: Extract<OutItem, { kind: 'publish' }>): void {
    const buf = this.encodeChecked(item.packet);
    if (buf instanceof Error) {
      item.deferred.reject(buf);
      return;
    }
    this.send(conn, item.packet, buf);
    item.deferred.resolve({ reasonCode: 0 });
  }

  private sendPublish(conn: Connection, item: Extract<OutItem, { kind: 'publish' }>, packetId: number): void {
    item.packet.packetId = packetId;
    const buf = this.encodeChecked(item.packet);
    if (buf instanceof Error) {
      this.ids.release(packetId);
      item.deferred.reject(buf);
      return;
    }
    this.inflight.set(packetId, { kind: 'publish', packet: item.packet, stage: 'ack', deferred: item.deferred });
    this.inflightPublishes++;
    this.send(conn, item.packet, buf);
  }

  /** Sends a publish of the kept session again (DUP, same id), checked against this connection's limits. */
  private resendPublish(conn: Connection, packetId: number): void {
    const item = this.inflight.get(packetId);
    // acknowledged meanwhile, or the id was reused since
    if (!item || item.kind !== 'publish' || !item.resend) return;
    item.resend = false;
    item.packet.dup = true;
    const buf = this.encodeChecked(item.packet);
    if (buf instanceof Error) {
      this.inflight.delete(packetId);
      this.ids.release(packetId);
      item.deferred.reject(buf);
      return;
    }
    this.inflightPublishes++;
    this.send(conn, item.packet, buf);
  }

  /** SUBSCRIBE / UNSUBSCRIBE, refused locally when the server would not accept its size [MQTT-3.2.2-15]. */
  private sendSubscription(conn: Connection, item: Exclude<OutItem, { kind: 'publish' }>, packetId: number): void {
    const packet: Packet =
      item.kind === 'subscribe'
        ? { type: 8, packetId, subscriptions: item.subscriptions, ...(item.properties ? { properties: item.properties } : {}) }
        : { type: 10, packetId, topicFilters: item.topicFilters, ...(item.properties ? { properties: item.properties } : {}) };
    const refuse = (err: MqttClientError) => {
      this.ids.release(packetId);
      item.deferred.reject(err);
    };
    let buf: Buffer;
    try {
      buf = encodePacket(packet, this.protocolVersion);
    } catch (err) {
      refuse(new MqttClientError('INVALID_ARGUMENT', encodeFailure(packetName(packet.type), err), { cause: err }));
      return;
    }
    if (buf.length > this.maximumPacketSize) {
      const what = item.kind === 'subscribe' ? `subscribe to "${item.subscriptions[0]!.topicFilter}"` : `unsubscribe from "${item.topicFilters[0]!}"`;
      refuse(ackError(what, 0x95, `the packet has ${buf.length} bytes, the server accepts at most ${this.maximumPacketSize}`));
      return;
    }
    this.inflight.set(packetId, { ...item, packetId });
    this.send(conn, packet, buf);
  }

  private enqueue(item: OutItem): void {
    if (this.state === 'closed' || this.state === 'closing') {
      item.deferred.reject(new ClientClosedError('CLIENT_CLOSED', 'the client is closed'));
      return;
    }
    if (item.kind === 'publish' && this.state !== 'connected') {
      if (!this.options.queueWhileOffline) {
        item.deferred.reject(new ClientClosedError('OFFLINE', 'not connected (queueWhileOffline is off)'));
        return;
      }
      if (this.offlineCount >= this.options.offlineQueueMax) {
        item.deferred.reject(new ClientClosedError('OFFLINE_QUEUE_FULL', `offline queue full (${this.options.offlineQueueMax} messages): publish dropped`));
        return;
      }
      item.offline = true;
      this.offlineCount++;
    }
    this.outQueue.push(item);
    if (this.state === 'connected') this.pump();
  }

  // ---------------------------------------------------------------- receiving

  private handlePacket(conn: Connection, packet: Packet): void {
    if (conn.lost) return;
    if (this.listenerCount('packetreceive') > 0) this.emit('packetreceive', packet);
    if (!conn.connected && packet.type === 14 && this.protocolVersion === 5) {
      // a DISCONNECT instead of CONNACK breaks [MQTT-3.14.0-1] but says why: report its reason code and string
      const d = packet as DisconnectPacket;
      this.emit('disconnect', d);
      this.connectionLost(conn, serverDisconnectError(d.reasonCode ?? 0, d.properties?.reasonString, d.properties?.serverReference, true));
      return;
    }
    if (!conn.connected && packet.type !== 2) {
      // [MQTT-3.2.0-1] the first packet from the server is CONNACK (AUTH would be 5.0 enhanced authentication, which this client does not start)
      const what = packet.type === 15 ? 'AUTH (enhanced authentication, which this client did not ask for)' : packetName(packet.type);
      this.protocolViolation(conn, `the server did not answer CONNECT with CONNACK: it sent ${what} first`);
      return;
    }
    switch (packet.type) {
      case 2:
        if (conn.onConnack) conn.onConnack(packet as ConnackPacket);
        else this.protocolViolation(conn, 'a second CONNACK');
        return;
      case 3:
        return this.receivePublish(conn, packet as PublishPacket);
      case 4:
      case 5:
      case 7:
        return this.receiveAck(conn, packet as PubAckLikePacket);
      case 6: {
        const { packetId } = packet as PubAckLikePacket;
        const known = this.incomingQos2.delete(packetId);
        this.send(conn, { type: 7, packetId, ...(known || this.protocolVersion !== 5 ? {} : { reasonCode: 0x92 }) });
        return;
      }
      case 9:
        return this.receiveSuback(packet as SubackPacket);
      case 11:
        return this.receiveUnsuback(packet as UnsubackPacket);
      case 13: {
        conn.keepAlive?.pingResponse();
        const waiter = this.pingWaiters.shift();
        waiter?.deferred.resolve(performance.now() - waiter.sentAt);
        return;
      }
      case 14: {
        const d = packet as DisconnectPacket;
        const code = d.reasonCode ?? 0;
        conn.closeReason = serverDisconnectError(code, d.properties?.reasonString, d.properties?.serverReference);
        this.emit('disconnect', d);
        this.connectionLost(conn, conn.closeReason);
        return;
      }
      default:
        this.protocolViolation(conn, `an unexpected packet of type ${packet.type}`);
    }
  }

  /** Closes the connection for the server's error, `reasonCode` in the DISCONNECT (0x82 Protocol Error unless a more precise one applies). */
  private protocolViolation(conn: Connection, what: string, reasonCode = 0x82): void {
    // DISCONNECT only on an accepted connection; before CONNACK the client just closes
    if (this.protocolVersion === 5 && conn.connected) this.send(conn, { type: 14, reasonCode });
    const message = what.startsWith('the server ') ? `protocol error: ${what}` : `protocol error: the server sent ${what}`;
    this.connectionLost(conn, new MqttClientError('PROTOCOL_ERROR', message, { reasonCode }));
  }

  private receivePublish(conn: Connection, packet: PublishPacket): void {
    let topic = packet.topic;
    const alias = packet.properties?.topicAlias;
    if (alias !== undefined) {
      // 3.3.2.3.4: an alias of 0 or above the Topic Alias Maximum we announced is 0x94 Topic Alias invalid
      const maximum = this.options.properties?.topicAliasMaximum ?? 0;
      if (alias === 0 || alias > maximum) {
        this.protocolViolation(conn, `Topic Alias ${alias} outside 1..${maximum}`, 0x94);
        return;
      }
      if (topic !== '') this.topicAliasesIn.set(alias, topic);
      else {
        const known = this.topicAliasesIn.get(alias);
        if (known === undefined) {
          this.protocolViolation(conn, `an unknown Topic Alias ${alias}`);
          return;
        }
        topic = known;
      }
    }
    const deliver = () => {
      const message: Message = {
        topic,
        payload: Buffer.from(packet.payload),
        qos: packet.qos,
        retain: packet.retain,
        dup: packet.dup,
      };
      if (packet.properties) message.properties = packet.properties;
      this.emit('message', message);
      if (this.iterators.size === 0 && this.listenerCount('message') === 0) {
        // Nobody consumes yet (e.g. a message right after SUBACK, before the for-await starts): keep
        // the latest few for the first messages() call instead of losing them. An application that
        // listens to 'message' instead gets them there, and nothing is kept.
        this.unclaimed.push(message);
        if (this.unclaimed.length > UNCLAIMED_LIMIT) this.unclaimed.shift();
      }
      for (const it of this.iterators) it.offer(message);
    };
    if (packet.qos === 0) deliver();
    else if (packet.qos === 1) {
      deliver();
      this.send(conn, { type: 4, packetId: packet.packetId! });
    } else {
      const id = packet.packetId!;
      if (!this.incomingQos2.has(id)) {
        this.incomingQos2.add(id);
        deliver();
      }
      this.send(conn, { type: 5, packetId: id });
    }
  }

  private receiveAck(conn: Connection, packet: PubAckLikePacket): void {
    const item = this.inflight.get(packet.packetId);
    const code = packet.reasonCode ?? 0;
    if (!item || item.kind !== 'publish') {
      // PUBREC for an unknown id still gets its PUBREL
      if (packet.type === 5) this.send(conn, { type: 6, packetId: packet.packetId, ...(this.protocolVersion === 5 ? { reasonCode: 0x92 } : {}) });
      return;
    }
    if (item.resend) {
      // acknowledged before we sent it again (the server had it from the last connection): it is on this connection's quota now
      item.resend = false;
      this.inflightPublishes++;
    }
    const result: PublishResult = { reasonCode: code };
    if (packet.properties?.reasonString) result.reasonString = packet.properties.reasonString;
    if (packet.properties && Object.keys(packet.properties).length > 0) result.properties = packet.properties;
    const what = `publish to "${item.packet.topic}"`;
    if (packet.type === 5) {
      if (item.stage === 'comp') {
        this.send(conn, { type: 6, packetId: packet.packetId });
        return;
      }
      if (item.packet.qos !== 2) return;
      if (code >= 0x80) {
        this.finishPublish(packet.packetId);
        item.deferred.reject(ackError(what, code, packet.properties?.reasonString));
        return;
      }
      item.stage = 'comp';
      item.result = result;
      item.pubrecOrder = this.pubrecs++;
      this.send(conn, { type: 6, packetId: packet.packetId });
      return;
    }
    if (packet.type === 4 && item.packet.qos !== 1) return;
    if (packet.type === 7 && item.stage !== 'comp') return;
    this.finishPublish(packet.packetId);
    // PUBCOMP 0x92 after a resent PUBREL: the server had completed it already
    if (code >= 0x80 && !(packet.type === 7 && code === 0x92)) item.deferred.reject(ackError(what, code, packet.properties?.reasonString));
    else item.deferred.resolve(packet.type === 7 && item.result ? item.result : result);
  }

  private finishPublish(packetId: number): void {
    this.inflight.delete(packetId);
    this.ids.release(packetId);
    this.inflightPublishes--;
    this.pump();
    this.resolveDrain();
  }

  private receiveSuback(packet: SubackPacket): void {
    const item = this.inflight.get(packet.packetId);
    if (!item || item.kind !== 'subscribe') return;
    this.inflight.delete(packet.packetId);
    this.ids.release(packet.packetId);
    const results: SubscribeResult[] = item.subscriptions.map((s, i) => {
      const code = packet.reasonCodes[i] ?? 0x80;
      const r: SubscribeResult = { topicFilter: s.topicFilter, reasonCode: code };
      if (code <= 2) {
        r.qos = code as QoS;
        this.subscriptions.set(s.topicFilter, { subscription: s, ...(item.properties ? { properties: item.properties } : {}) });
      } else if (!item.internal) this.subscriptions.delete(s.topicFilter);
      return r;
    });
    const failed = results.filter((r) => r.reasonCode >= 0x80);
    this.pump();
    this.resolveDrain();
    if (failed.length > 0) {
      const first = failed[0]!;
      const err = ackError(`subscribe to "${first.topicFilter}"`, first.reasonCode, packet.properties?.reasonString);
      (err as MqttClientError & { results?: SubscribeResult[] }).results = results;
      item.deferred.reject(err);
    } else item.deferred.resolve(results);
  }

  private receiveUnsuback(packet: UnsubackPacket): void {
    const item = this.inflight.get(packet.packetId);
    if (!item || item.kind !== 'unsubscribe') return;
    this.inflight.delete(packet.packetId);
    this.ids.release(packet.packetId);
    const results = item.topicFilters.map((f, i) => ({ topicFilter: f, reasonCode: packet.reasonCodes?.[i] ?? 0 }));
    for (const f of item.topicFilters) this.subscriptions.delete(f);
    this.pump();
    this.resolveDrain();
    const failed = results.find((r) => r.reasonCode >= 0x80);
    if (failed) item.deferred.reject(ackError(`unsubscribe from "${failed.topicFilter}"`, failed.reasonCode, packet.properties?.reasonString));
    else item.deferred.resolve(results);
  }

  // ---------------------------------------------------------------- public API

  /**
   * Publishes a message. QoS 0 resolves once written to the socket; QoS 1 on PUBACK; QoS 2 on
   * PUBCOMP. Rejects with a ReasonCodeError when the server refuses it (reason code >= 0x80).
   * While offline the message is queued (see queueWhileOffline / offlineQueueMax).
   */
  publish(topic: string, payload: string | Buffer | Uint8Array = Buffer.alloc(0), options: PublishOptions = {}): Promise<PublishResult> {
    const qos = options.qos ?? 0;
    if (qos !== 0 && qos !== 1 && qos !== 2) return Promise.reject(new MqttClientError('INVALID_ARGUMENT', `invalid QoS ${String(qos)}: use 0, 1 or 2`));
    if (!isValidTopicName(topic)) {
      return Promise.reject(new MqttClientError('INVALID_ARGUMENT', `invalid topic name "${topic}": it must be non-empty and contain no + or #`));
    }
    const properties = this.protocolVersion === 5 ? options.properties : undefined;
    if (properties?.subscriptionIdentifier !== undefined) {
      // [MQTT-3.3.4-6]: the server adds it to the messages it delivers; a client's PUBLISH must not carry it
      return Promise.reject(
        new MqttClientError('INVALID_ARGUMENT', 'a published message cannot carry a subscriptionIdentifier: only the server sets it, on the messages it delivers'),
      );
    }
    const alias = properties?.topicAlias;
    if (alias !== undefined && !(Number.isInteger(alias) && alias >= 1 && alias <= 65535)) {
      // [MQTT-3.3.2-8]
      return Promise.reject(new MqttClientError('INVALID_ARGUMENT', `invalid topicAlias ${String(alias)}: a Topic Alias is 1 to 65535`));
    }
    const packet: PublishPacket = { type: 3, topic, payload: toBuffer(payload), qos, retain: options.retain ?? false, dup: false };
    if (properties) packet.properties = properties;
    // the limits of the last CONNACK now; a queued message is checked again when it is sent
    const refused = this.connack ? this.publishLimitError(packet) : undefined;
    if (refused) return Promise.reject(refused);
    return new Promise<PublishResult>((resolve, reject) => {
      this.enqueue({ kind: 'publish', packet, deferred: { resolve, reject }, offline: false });
    });
  }

  /** Subscribes; resolves with one result per filter. Rejects with a ReasonCodeError (with `results`) when the server refuses a filter. */
  subscribe(filters: string | string[] | Subscription[], options: SubscribeOptions = {}): Promise<SubscribeResult[]> {
    const list: Subscription[] = (Array.isArray(filters) ? filters : [filters]).map((f) => {
      if (typeof f !== 'string') return f;
      const s: Subscription = { topicFilter: f, qos: options.qos ?? 0 };
      if (options.noLocal !== undefined) s.noLocal = options.noLocal;
      if (options.retainAsPublished !== undefined) s.retainAsPublished = options.retainAsPublished;
      if (options.retainHandling !== undefined) s.retainHandling = options.retainHandling;
      return s;
    });
    if (list.length === 0) return Promise.reject(new MqttClientError('INVALID_ARGUMENT', 'subscribe needs at least one topic filter'));
    for (const s of list) {
      if (!isValidTopicFilter(s.topicFilter)) return Promise.reject(new MqttClientError('INVALID_ARGUMENT', `invalid topic filter "${s.topicFilter}"`));
    }
    return new Promise<SubscribeResult[]>((resolve, reject) => {
      this.enqueue({
        kind: 'subscribe',
        subscriptions: list,
        ...(options.properties && this.protocolVersion === 5 ? { properties: options.properties } : {}),
        deferred: { resolve, reject },
      });
    });
  }

  unsubscribe(filters: string | string[], properties?: Properties): Promise<UnsubscribeResult[]> {
    const list = Array.isArray(filters) ? filters : [filters];
    if (list.length === 0) return Promise.reject(new MqttClientError('INVALID_ARGUMENT', 'unsubscribe needs at least one topic filter'));
    const bad = list.find((f) => !isValidTopicFilter(f));
    if (bad !== undefined) return Promise.reject(new MqttClientError('INVALID_ARGUMENT', `invalid topic filter "${bad}"`));
    return new Promise<UnsubscribeResult[]>((resolve, reject) => {
      this.enqueue({
        kind: 'unsubscribe',
        topicFilters: list,
        ...(properties && this.protocolVersion === 5 ? { properties } : {}),
        deferred: { resolve, reject },
      });
    });
  }

  /**
   * Sends PINGREQ and resolves with the round-trip time in ms. With `timeout` (ms) it rejects with a
   * TimeoutError PING_TIMEOUT when no PINGRESP came by then (the connection stays open); without,
   * it waits as long as the keep alive allows.
   */
  ping(options: { timeout?: number } = {}): Promise<number> {
    if (this.state === 'closed' || this.state === 'closing') return Promise.reject(new ClientClosedError('CLIENT_CLOSED', 'the client is closed'));
    const { timeout } = options;
    if (timeout !== undefined && !(timeout > 0)) return Promise.reject(new MqttClientError('INVALID_ARGUMENT', `ping timeout must be a positive number of milliseconds (got ${String(timeout)})`));
    const conn = this.conn;
    if (!conn || !conn.connected || conn.lost) return Promise.reject(new ClientClosedError('OFFLINE', 'not connected'));
    return new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (timeout !== undefined) {
        // the waiter stays queued, so a late PINGRESP is not taken for the answer to a later PINGREQ
        const error = new TimeoutError('PING_TIMEOUT', `no PINGRESP from the server within ${formatDuration(timeout)}`, {
          hint: 'the server or the network stalled, or the server does not answer PINGREQ',
        });
        timer = setTimeout(() => reject(error), timerDelay(timeout));
      }
      const deferred: Deferred<number> = {
        resolve: (rtt) => {
          clearTimeout(timer);
          resolve(rtt);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.pingWaiters.push({ sentAt: performance.now(), deferred });
      this.send(conn, { type: 12 });
    });
  }

  /**
   * Received messages as an async iterable, optionally only those matching `filter`. The
   * iteration ends when the client closes. Messages that arrived while nobody consumed them (no
   * iterator, no 'message' listener; the latest 1000) go to the first messages() call; after that, each iterator gets what arrives
   * from the moment it was created.
   */
  messages(filter?: string): AsyncIterableIterator<Message> {
    const queue = new MessageQueue(filter, () => this.iterators.delete(queue));
    for (const m of this.unclaimed) queue.offer(m);
    this.unclaimed = [];
    if (this.state === 'closed') queue.finish();
    else this.iterators.add(queue);
    return queue;
  }

  /**
   * Graceful close: waits (up to `timeout` ms, default 5000) for acknowledgements of what is in
   * flight, sends DISCONNECT and closes the socket. The server discards the will message.
   * 5.0: `reasonCode` 0x04 asks the server to publish the will anyway; `sessionExpiry` updates the
   * Session Expiry Interval, and rejects (INVALID_ARGUMENT, still connected) when non-zero after a
   * CONNECT without one.
   */
  async end(options: { timeout?: number; reasonCode?: number; sessionExpiry?: number } = {}): Promise<void> {
    const expiry = this.protocolVersion === 5 ? options.sessionExpiry : undefined;
    if (expiry !== undefined) {
      if (!(Number.isInteger(expiry) && expiry >= 0 && expiry <= 0xffffffff)) {
        throw new MqttClientError('INVALID_ARGUMENT', `sessionExpiry must be a whole number of seconds from 0 to 4294967295 (got ${String(expiry)})`);
      }
      // [MQTT-3.14.2-2]: a session that ends with the connection (Session Expiry 0 in CONNECT) cannot be kept by DISCONNECT
      if (expiry !== 0 && !this.options.sessionExpiry) {
        throw new MqttClientError(
          'INVALID_ARGUMENT',
          `end({ sessionExpiry: ${expiry} }) needs a Session Expiry in CONNECT: the client connected without one, and DISCONNECT cannot set it then; connect with the sessionExpiry option`,
        );
      }
    }
    if (this.state === 'closed') return;
    if (this.state === 'closing') {
      await new Promise<void>((r) => this.once('close', () => r()));
      return;
    }
    const timeout = options.timeout ?? 5000;
    if (this.state === 'connected' && (this.inflight.size > 0 || this.outQueue.length > 0)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timerDelay(timeout));
        this.drainWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    if (this.closed) return;
    this.state = 'closing';
    clearTimeout(this.reconnectTimer);
    this.attemptAbort?.abort();
    const conn = this.conn;
    if (conn && conn.connected && !conn.lost) {
      const packet: DisconnectPacket = { type: 14 };
      if (this.protocolVersion === 5) {
        if (options.reasonCode !== undefined) packet.reasonCode = options.reasonCode;
        if (expiry !== undefined) packet.properties = { sessionExpiryInterval: expiry };
      }
      this.send(conn, packet);
      clearTimeout(conn.keepAliveTimer);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timerDelay(Math.min(timeout, 1000)));
        conn.stream.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        conn.stream.end();
      });
    }
    this.finalize(undefined);
  }

  /** Closes the connection without DISCONNECT (the server publishes the will) and the client; bytes already written still go out. */
  destroy(error?: MqttClientError): void {
    this.finalize(error);
  }

  private resolveDrain(): void {
    if (this.drainWaiters.length === 0) return;
    if (this.state !== 'closed' && (this.inflight.size > 0 || this.outQueue.length > 0)) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /** The error the client closed with, if any. */
  get error(): MqttClientError | undefined {
    return this.closeError;
  }

  /** For tests and diagnostics: drop the current connection as if the network failed. */
  simulateNetworkFailure(): void {
    const conn = this.conn;
    if (conn && !conn.lost) this.connectionLost(conn, new ConnectionError('ECONNRESET', 'tcp', 'connection dropped (simulated network failure)'));
  }
}

function toClientError(err: unknown, address: BrokerAddress, phase?: 'handshake'): MqttClientError {
  if (err instanceof MqttClientError) return err;
  if (err instanceof MqttProtocolError) return new MqttClientError('PROTOCOL_ERROR', `protocol error: ${err.message}`, { reasonCode: err.reasonCode, cause: err });
  return explainNetworkError(err, { host: address.host, port: address.port, tls: isSecure(address.scheme), webSocket: isWebSocket(address.scheme), ...(phase ? { phase } : {}) });
}

/** PUBLISH, SUBACK, ... by packet type. */
function packetName(type: number): string {
  return Object.entries(PacketType).find(([, code]) => code === type)?.[0] ?? `a packet of type ${type}`;
}

/** "cannot encode CONNECT: ..." once, whether or not the codec's message already says so. */
function encodeFailure(what: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.startsWith('cannot encode') ? message : `cannot encode ${what}: ${message}`;
}

/** The error for a connection attempt that did not finish in time, saying which step stalled. */
function connectTimeoutError(phase: TransportStage | 'connack', ms: number, address: BrokerAddress): TimeoutError {
  const d = formatDuration(ms);
  const where = hostPort(address.host, address.port);
  switch (phase) {
    case 'connack':
      return new TimeoutError('CONNECT_TIMEOUT', `timed out waiting for CONNACK after ${d}`, {
        hint: 'the server accepted the connection but did not answer CONNECT: is this an MQTT port? does it speak this protocol version?',
      });
    case 'tls':
      return new TimeoutError('CONNECT_TIMEOUT', `timed out after ${d} in the TLS handshake with ${where}`, {
        hint: 'the server accepted TCP but did not complete the TLS handshake: is this a TLS port? for a plain port use mqtt:// (or ws://)',
      });
    case 'websocket':
      return new TimeoutError('CONNECT_TIMEOUT', `timed out after ${d} waiting for the WebSocket upgrade from ${where}`, {
        hint: `the server accepted the connection but did not answer the upgrade to ${address.path}: is this a WebSocket port (and path)?`,
      });
    default:
      return new TimeoutError('CONNECT_TIMEOUT', `timed out after ${d} opening the TCP connection to ${where}`, {
        hint: 'a firewall may drop the packets; check the host and port',
      });
  }
}

/** The error for bytes before CONNACK that are not MQTT: what was expected, what came, and a likely cause. */
function notConnackError(bytes: Buffer, cause: MqttProtocolError, address: BrokerAddress): MqttClientError {
  const text = bytes.toString('latin1');
  const printable = /^[\x20-\x7e\r\n\t]{4,}/.exec(text)?.[0];
  let what: string;
  let hint: string;
  if (/^HTTP\/\d/.test(text)) {
    what = `it answered in HTTP ("${text.split(/\r?\n/)[0]!.trim()}")`;
    hint = isWebSocket(address.scheme)
      ? 'this port speaks HTTP: check the WebSocket path (usually /mqtt)'
      : `this port speaks HTTP, not MQTT: check the port, or use ws://${hostPort(address.host, address.port)}/mqtt if it serves MQTT over WebSocket`;
  } else if (bytes[0] === 0x15 || bytes[0] === 0x16) {
    what = 'it answered with TLS';
    hint = 'this looks like a TLS port: use mqtts:// (or wss://)';
  } else if (printable !== undefined) {
    what = `it sent text ("${printable.split(/\r?\n/)[0]!.trim().slice(0, 60)}")`;
    hint = 'this port does not speak MQTT: check the host and port';
  } else {
    what = `the bytes it sent are not MQTT (${cause.message})`;
    hint = 'is this an MQTT port? does it speak this protocol version?';
  }
  return new MqttClientError('PROTOCOL_ERROR', `protocol error: the server did not answer CONNECT with CONNACK: ${what}`, {
    hint,
    reasonCode: cause.reasonCode,
    cause,
  });
}

/** Messages kept for the first messages() call while nobody iterates. */
const UNCLAIMED_LIMIT = 1000;

/** Buffered async iterator of messages for one messages() call. */
class MessageQueue implements AsyncIterableIterator<Message> {
  private readonly buffer: Message[] = [];
  /** next() calls waiting for a message, answered in the order they were made (the async iterator contract). */
  private readonly waiting: ((r: IteratorResult<Message>) => void)[] = [];
  private done = false;

  constructor(
    private readonly filter: string | undefined,
    private readonly onReturn: () => void,
  ) {}

  offer(message: Message): void {
    if (this.done) return;
    if (this.filter !== undefined && !topicMatches(this.filter, message.topic)) return;
    const w = this.waiting.shift();
    if (w) w({ value: message, done: false });
    else this.buffer.push(message);
  }

  finish(): void {
    this.done = true;
    for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<Message>> {
    const m = this.buffer.shift();
    if (m) return Promise.resolve({ value: m, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiting.push(resolve);
    });
  }

  return(): Promise<IteratorResult<Message>> {
    this.buffer.length = 0;
    this.finish();
    this.onReturn();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    return this;
  }
}
