// ClientSession: the MQTT flow state of one client session, without I/O. Packets and time come
// in (connected, receive, tick, disconnected), packets and outcomes go out through SessionOutput.
// No sockets, no timers: the facade (client.ts) owns those, and tests drive this on a fake clock.
//
// State: `outQueue` holds requests not yet sent (offline, or above the server's Receive
// Maximum); `inflight` holds sent requests waiting for their acknowledgement, by packet id.
// After a lost connection SUBSCRIBE / UNSUBSCRIBE go back to the queue. PUBLISH and PUBREL stay
// in flight: when the server kept the session they are sent again (PUBLISH with DUP, as Receive
// Maximum allows); when it did not, unfinished messages go back to the queue as new ones.
import { Buffer } from 'node:buffer';
import { PacketType, ReasonCode, encodePacket } from '../protocol/index.js';
import type { ConnackPacket, Packet, Properties, ProtocolVersion, PubAckLikePacket, PublishPacket, QoS, SubackPacket, Subscription, UnsubackPacket } from '../protocol/index.js';
import { ClientClosedError, MqttClientError, TimeoutError, ackError, formatDuration, serverDisconnectError } from './errors.js';
import { encodeFailure, packetName } from './failures.js';
import { defaultPingTimeout } from './options.js';
import { InboundFlows } from './inbound.js';
import { ServerLimits } from './server-limits.js';
import { KeepAlive, PacketIdAllocator } from './session-state.js';
import type { Deferred, Inflight, PublishRequest, Request, SubscriptionRequest } from './requests.js';
import type { Message, PublishResult, SubscribeResult } from './types.js';

export type { Deferred, Request } from './requests.js';

/** Where the session's output goes: the connection, the application, the facade. */
export interface SessionOutput {
  /** Write this packet (already encoded) to the connection. */
  send(packet: Packet, bytes: Buffer): void;
  /** An application message arrived. */
  message(message: Message): void;
  /** The connection must close with this error: the server broke the protocol, sent DISCONNECT, or keep alive found it dead. */
  fail(error: MqttClientError): void;
  /** Nothing is queued or in flight any more (end() waits for this). */
  idle(): void;
  /** A request the application did not make failed (a resubscription). */
  error(error: MqttClientError): void;
}

export interface SessionConfig {
  protocolVersion: ProtocolVersion;
  queueWhileOffline: boolean;
  offlineQueueMax: number;
  resubscribe: boolean;
  /** Keep alive asked for in CONNECT (s) and the ping interval / PINGRESP timeout (ms). */
  keepAlive: number;
  pingInterval: number;
  pingTimeout?: number;
  /** The Topic Alias Maximum this client announced in CONNECT (0: none). */
  topicAliasMaximum: number;
  /** The time now, ms. */
  clock: () => number;
}

const noop = () => {};

export class ClientSession {
  private online = false;
  private readonly ids = new PacketIdAllocator();
  private outQueue: Request[] = [];
  private offlineCount = 0;
  private readonly inflight = new Map<number, Inflight>();
  /** QoS 1/2 publishes counted against the server's Receive Maximum on this connection. */
  private inflightPublishes = 0;
  /** Packet ids of kept-session publishes still to be sent again, in their original order. */
  private resendQueue: number[] = [];
  /** PUBRECs received so far: each QoS 2 message past PUBREC keeps its place in that order. */
  private pubrecs = 0;
  private readonly subscriptions = new Map<string, { subscription: Subscription; properties?: Properties }>();
  private pingWaiters: Deferred<void>[] = [];
  private keepAlive: KeepAlive | undefined;
  private readonly limits = new ServerLimits();
  private readonly inbound: InboundFlows;

  constructor(
    private readonly config: SessionConfig,
    private readonly output: SessionOutput,
  ) {
    this.inbound = new InboundFlows(config.topicAliasMaximum);
  }

  /** Requests waiting to be sent plus requests waiting for an acknowledgement. */
  get pending(): { queued: number; inflight: number } {
    return { queued: this.outQueue.length, inflight: this.inflight.size };
  }

  get busy(): boolean {
    return this.inflight.size > 0 || this.outQueue.length > 0;
  }

  // ---------------------------------------------------------------- connection events

  /**
   * CONNACK accepted a connection: take the server's limits, start keep alive, then send in order
   * (docs/client.md): 1. subscriptions again when the server forgot the session, 2. the unfinished
   * messages, 3. what was queued meanwhile. Returns the keep alive in force (s).
   */
  connected(packet: ConnackPacket): number {
    const props = packet.properties ?? {};
    this.limits.update(props);
    this.inbound.connected(packet.sessionPresent);
    let keepAlive = this.config.keepAlive;
    let pingInterval = this.config.pingInterval;
    if (props.serverKeepAlive !== undefined) {
      keepAlive = props.serverKeepAlive;
      pingInterval = keepAlive === 0 ? 0 : Math.min(pingInterval > 0 ? pingInterval : Infinity, keepAlive * 1000);
    }
    // the PINGRESP timeout follows the interval in force, which a Server Keep Alive may have set
    this.keepAlive = pingInterval > 0 ? new KeepAlive(pingInterval, this.config.pingTimeout ?? defaultPingTimeout(pingInterval), this.config.clock()) : undefined;
    this.online = true;
    let first: Request[] = [];
    if (packet.sessionPresent) this.resumeFlows();
    else {
      if (this.config.resubscribe) first = this.resubscriptions();
      first.push(...this.restartFlows());
    }
    this.outQueue = first.concat(this.outQueue);
    this.pump();
    return keepAlive;
  }

  /** The connection is gone: SUBSCRIBE / UNSUBSCRIBE go back to the queue as new packets; pings fail. */
  disconnected(error: MqttClientError): void {
    this.online = false;
    this.keepAlive = undefined;
    const back: Request[] = [];
    for (const [packetId, entry] of this.inflight) {
      if (entry.kind === 'publish') continue;
      this.inflight.delete(packetId);
      this.ids.release(packetId);
      if (!entry.request.cancelled) back.push(entry.request);
    }
    this.outQueue = back.concat(this.outQueue);
    for (const w of this.pingWaiters) w.reject(error);
    this.pingWaiters = [];
  }

  /** The client is closed: every request and ping rejects with `reason`. */
  close(reason: Error): void {
    this.online = false;
    this.keepAlive = undefined;
    for (const item of this.outQueue) item.deferred.reject(reason);
    this.outQueue = [];
    this.offlineCount = 0;
    for (const entry of this.inflight.values()) entry.request.deferred.reject(reason);
    this.inflight.clear();
    this.ids.clear();
    this.inflightPublishes = 0;
    this.resendQueue = [];
    for (const w of this.pingWaiters) w.reject(reason);
    this.pingWaiters = [];
  }

  /**
   * Keep alive, given the time: sends PINGREQ when the client was silent for the ping interval,
   * fails the connection when PINGRESP did not come in time. Returns when to call again.
   */
  tick(): number {
    const keepAlive = this.keepAlive;
    if (!this.online || !keepAlive) return Infinity;
    const now = this.config.clock();
    const result = keepAlive.poll(now);
    if (result.action === 'dead') {
      this.output.fail(
        new TimeoutError('KEEPALIVE_TIMEOUT', `no PINGRESP from the server within ${formatDuration(keepAlive.timeoutMs)}: connection considered dead`, {
          hint: 'the network or the server stalled; the client reconnects if reconnect is on',
        }),
      );
      return Infinity;
    }
    if (result.action === 'ping') {
      // queued like a ping() so PINGRESPs pair up with PINGREQs in order
      this.pingWaiters.push({ resolve: noop, reject: noop });
      this.send({ type: PacketType.PINGREQ });
      keepAlive.pingSent(now);
    }
    return result.nextCheckAt;
  }

  // ---------------------------------------------------------------- requests

  /** Queues a request (publishes while offline as queueWhileOffline / offlineQueueMax allow) and sends what may go. */
  request(item: Request): void {
    if (item.kind === 'publish' && !this.online) {
      if (!this.config.queueWhileOffline) {
        item.deferred.reject(new ClientClosedError('OFFLINE', 'not connected (queueWhileOffline is off)'));
        return;
      }
      if (this.offlineCount >= this.config.offlineQueueMax) {
        item.deferred.reject(new ClientClosedError('OFFLINE_QUEUE_FULL', `offline queue full (${this.config.offlineQueueMax} messages): publish dropped`));
        return;
      }
      item.offline = true;
      this.offlineCount++;
    }
    this.outQueue.push(item);
    if (this.online) this.pump();
  }

  /**
   * Gives up on a request (aborted, timed out): its promise rejects with `error`. A queued request
   * leaves the queue and never takes a packet id. A sent one keeps its packet id until the server
   * acknowledges it (or the session ends), so a late acknowledgement cannot be taken for that of a
   * new packet with a reused id [MQTT-2.2.1-3]; a sent PUBLISH may still be delivered.
   */
  cancel(item: Request, error: Error): void {
    if (item.cancelled) return;
    item.cancelled = true;
    const queued = this.outQueue.indexOf(item);
    if (queued >= 0) {
      this.outQueue.splice(queued, 1);
      if (item.kind === 'publish' && item.offline) {
        item.offline = false;
        this.offlineCount--;
      }
    }
    item.deferred.reject(error);
    this.checkIdle();
  }

  /** Sends PINGREQ; `waiter` settles on the PINGRESP. False when not connected. */
  ping(waiter: Deferred<void>): boolean {
    if (!this.online) return false;
    this.pingWaiters.push(waiter);
    this.send({ type: PacketType.PINGREQ });
    return true;
  }

  /** The server limits from the last CONNACK a PUBLISH must respect, as an error; undefined when it may go. */
  publishLimitError(packet: PublishPacket): MqttClientError | undefined {
    return this.limits.publishError(packet);
  }

  // ---------------------------------------------------------------- flows across connections

  private resubscriptions(): Request[] {
    const again: Request[] = [];
    for (const { subscription, properties } of this.subscriptions.values()) {
      again.push({
        kind: 'subscribe',
        subscriptions: [subscription],
        ...(properties ? { properties } : {}),
        internal: true,
        deferred: {
          resolve: noop,
          reject: (err) => {
            if (!(err instanceof ClientClosedError)) this.output.error(err as MqttClientError);
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
  private resumeFlows(): void {
    // the send quota starts again with each connection (4.9)
    this.inflightPublishes = 0;
    this.resendQueue = [];
    const pubrels: [packetId: number, order: number][] = [];
    for (const [packetId, entry] of this.inflight) {
      if (entry.kind !== 'publish') continue;
      if (entry.stage === 'comp') {
        // holds its Receive Maximum slot until PUBCOMP
        this.inflightPublishes++;
        pubrels.push([packetId, entry.pubrecOrder ?? 0]);
      } else {
        entry.resend = true;
        this.resendQueue.push(packetId);
      }
    }
    // PUBRELs in the order their PUBRECs came [MQTT-4.6.0-3], which may differ from the order sent
    pubrels.sort((a, b) => a[1] - b[1]);
    for (const [packetId] of pubrels) this.send({ type: PacketType.PUBREL, packetId });
  }

  /**
   * The server has no session (Session Present 0): our unfinished flows mean nothing to it and
   * must not be continued, no DUP, no PUBREL [MQTT-3.2.2-5] [MQTT-3.1.2-4] (3.1.1: [MQTT-3.1.2-6]).
   * Unacknowledged messages are returned to be sent again as new ones, in order (those given up
   * on are dropped). A QoS 2 message past PUBREC is complete: the server stored it when it sent
   * PUBREC, and sending it again could deliver it twice [MQTT-4.3.3-5].
   */
  private restartFlows(): Request[] {
    const again: Request[] = [];
    const completed: Extract<Inflight, { kind: 'publish' }>[] = [];
    for (const [packetId, entry] of this.inflight) {
      if (entry.kind !== 'publish') continue;
      this.inflight.delete(packetId);
      this.ids.release(packetId);
      if (entry.stage === 'comp') completed.push(entry);
      else if (!entry.request.cancelled) {
        const { packetId: _, ...rest } = entry.request.packet;
        void _;
        entry.request.packet = { ...rest, dup: false };
        again.push(entry.request);
      }
    }
    this.inflightPublishes = 0;
    this.resendQueue = [];
    for (const entry of completed) entry.request.deferred.resolve(entry.result ?? { reasonCode: 0 });
    return again;
  }

  // ---------------------------------------------------------------- sending

  private send(packet: Packet, encoded?: Buffer): void {
    if (!this.online) return;
    this.output.send(packet, encoded ?? encodePacket(packet, this.config.protocolVersion));
    this.keepAlive?.sent(this.config.clock());
  }

  /** Sends queued requests as far as the connection, packet ids and the server's Receive Maximum allow. */
  private pump(): void {
    if (!this.online) return;
    // publishes of the kept session first, in their original order [MQTT-4.6.0-1], within the
    // Receive Maximum of this connection [MQTT-3.3.4-7] [MQTT-4.9.0-2]
    while (this.resendQueue.length > 0 && this.inflightPublishes < this.limits.receiveMaximum && this.online) {
      this.resendPublish(this.resendQueue.shift()!);
    }
    const keep: Request[] = [];
    // once a publish has to wait for Receive Maximum, later publishes wait too (message order)
    let publishesBlocked = this.resendQueue.length > 0;
    const queue = this.outQueue;
    for (let i = 0; i < queue.length; i++) {
      const item = queue[i]!;
      if (item.kind === 'publish' && item.offline) {
        item.offline = false;
        this.offlineCount--;
      }
      if (item.kind === 'publish') {
        if (publishesBlocked || (item.packet.qos > 0 && this.inflightPublishes >= this.limits.receiveMaximum)) {
          publishesBlocked = true;
          keep.push(item);
          continue;
        }
        if (item.packet.qos === 0) {
          this.sendPublish0(item);
          continue;
        }
      }
      const packetId = this.ids.allocate();
      if (packetId === undefined) {
        keep.push(...queue.slice(i));
        break;
      }
      if (item.kind === 'publish') this.sendPublish(item, packetId);
      else this.sendSubscription(item, packetId);
    }
    this.outQueue = keep;
    // a request refused locally may have been the last one end() waits for
    this.checkIdle();
  }

  /** Encodes a PUBLISH for this connection, or the error saying why it must not carry it. */
  private encodeChecked(packet: PublishPacket): Buffer | MqttClientError {
    // checked when sent, not only in publish(): a message queued before CONNACK or while offline
    // (or resent on a new connection) meets this connection's limits
    return this.limits.encodePublish(packet, this.config.protocolVersion);
  }

  private sendPublish0(item: PublishRequest): void {
    const buf = this.encodeChecked(item.packet);
    if (buf instanceof Error) {
      item.deferred.reject(buf);
      return;
    }
    this.send(item.packet, buf);
    item.deferred.resolve({ reasonCode: 0 });
  }

  private sendPublish(item: PublishRequest, packetId: number): void {
    item.packet.packetId = packetId;
    const buf = this.encodeChecked(item.packet);
    if (buf instanceof Error) {
      this.ids.release(packetId);
      item.deferred.reject(buf);
      return;
    }
    this.inflight.set(packetId, { kind: 'publish', request: item, stage: 'ack' });
    this.inflightPublishes++;
    this.send(item.packet, buf);
  }

  /** Sends a publish of the kept session again (DUP, same id), checked against this connection's limits. */
  private resendPublish(packetId: number): void {
    const entry = this.inflight.get(packetId);
    // acknowledged meanwhile, or the id was reused since
    if (!entry || entry.kind !== 'publish' || !entry.resend) return;
    entry.resend = false;
    entry.request.packet.dup = true;
    const buf = this.encodeChecked(entry.request.packet);
    if (buf instanceof Error) {
      this.inflight.delete(packetId);
      this.ids.release(packetId);
      entry.request.deferred.reject(buf);
      return;
    }
    this.inflightPublishes++;
    this.send(entry.request.packet, buf);
  }

  /** SUBSCRIBE / UNSUBSCRIBE, refused locally when the server would not accept its size [MQTT-3.2.2-15]. */
  private sendSubscription(item: SubscriptionRequest, packetId: number): void {
    const properties = item.properties ? { properties: item.properties } : {};
    const packet: Packet =
      item.kind === 'subscribe'
        ? { type: PacketType.SUBSCRIBE, packetId, subscriptions: item.subscriptions, ...properties }
        : { type: PacketType.UNSUBSCRIBE, packetId, topicFilters: item.topicFilters, ...properties };
    const refuse = (err: MqttClientError) => {
      this.ids.release(packetId);
      item.deferred.reject(err);
    };
    let buf: Buffer;
    try {
      buf = encodePacket(packet, this.config.protocolVersion);
    } catch (err) {
      refuse(new MqttClientError('INVALID_ARGUMENT', encodeFailure(packetName(packet.type), err), { cause: err }));
      return;
    }
    const what = item.kind === 'subscribe' ? `subscribe to "${item.subscriptions[0]!.topicFilter}"` : `unsubscribe from "${item.topicFilters[0]!}"`;
    const tooLarge = this.limits.sizeError(buf, what);
    if (tooLarge) {
      refuse(tooLarge);
      return;
    }
    this.inflight.set(packetId, { kind: item.kind, request: item });
    this.send(packet, buf);
  }

  private checkIdle(): void {
    if (!this.busy) this.output.idle();
  }

  // ---------------------------------------------------------------- receiving

  /** A packet from the server after CONNACK. */
  receive(packet: Packet): void {
    if (!this.online) return;
    switch (packet.type) {
      case PacketType.CONNACK:
        return this.protocolViolation('a second CONNACK');
      case PacketType.PUBLISH:
        return this.receivePublish(packet);
      case PacketType.PUBACK:
      case PacketType.PUBREC:
      case PacketType.PUBCOMP:
        return this.receiveAck(packet);
      case PacketType.PUBREL: {
        const { packetId } = packet;
        const known = this.inbound.release(packetId);
        const unknown = known || this.config.protocolVersion !== 5 ? {} : { reasonCode: ReasonCode.PacketIdentifierNotFound };
        this.send({ type: PacketType.PUBCOMP, packetId, ...unknown });
        return;
      }
      case PacketType.SUBACK:
        return this.receiveSuback(packet);
      case PacketType.UNSUBACK:
        return this.receiveUnsuback(packet);
      case PacketType.PINGRESP:
        this.keepAlive?.pingResponse();
        this.pingWaiters.shift()?.resolve();
        return;
      case PacketType.DISCONNECT:
        this.output.fail(serverDisconnectError(packet.reasonCode ?? 0, packet.properties?.reasonString, packet.properties?.serverReference));
        return;
      default:
        this.protocolViolation(`an unexpected packet of type ${packet.type}`);
    }
  }

  /** Closes the connection for the server's error, `reasonCode` in the DISCONNECT (0x82 Protocol Error unless a more precise one applies). */
  private protocolViolation(what: string, reasonCode: number = ReasonCode.ProtocolError): void {
    if (this.config.protocolVersion === 5) this.send({ type: PacketType.DISCONNECT, reasonCode });
    this.output.fail(new MqttClientError('PROTOCOL_ERROR', `protocol error: the server sent ${what}`, { reasonCode }));
  }

  private receivePublish(packet: PublishPacket): void {
    const topic = this.inbound.topicOf(packet);
    if ('violation' in topic) {
      this.protocolViolation(topic.violation, topic.reasonCode);
      return;
    }
    const deliver = () => {
      const message: Message = { topic: topic.topic, payload: Buffer.from(packet.payload), qos: packet.qos, retain: packet.retain, dup: packet.dup };
      if (packet.properties) message.properties = packet.properties;
      this.output.message(message);
    };
    if (packet.qos === 0) deliver();
    else if (packet.qos === 1) {
      deliver();
      this.send({ type: PacketType.PUBACK, packetId: packet.packetId! });
    } else {
      const id = packet.packetId!;
      if (this.inbound.firstQos2(id)) deliver();
      this.send({ type: PacketType.PUBREC, packetId: id });
    }
  }

  private receiveAck(packet: PubAckLikePacket): void {
    const entry = this.inflight.get(packet.packetId);
    const code = packet.reasonCode ?? 0;
    const v5 = this.config.protocolVersion === 5;
    if (!entry || entry.kind !== 'publish') {
      // PUBREC for an unknown id still gets its PUBREL
      if (packet.type === PacketType.PUBREC) this.send({ type: PacketType.PUBREL, packetId: packet.packetId, ...(v5 ? { reasonCode: ReasonCode.PacketIdentifierNotFound } : {}) });
      return;
    }
    if (entry.resend) {
      // acknowledged before we sent it again (the server had it from the last connection): it is on this connection's quota now
      entry.resend = false;
      this.inflightPublishes++;
    }
    const result: PublishResult = { reasonCode: code };
    if (packet.properties?.reasonString) result.reasonString = packet.properties.reasonString;
    if (packet.properties && Object.keys(packet.properties).length > 0) result.properties = packet.properties;
    const { request } = entry;
    const what = `publish to "${request.packet.topic}"`;
    if (packet.type === PacketType.PUBREC) {
      if (entry.stage === 'comp') {
        this.send({ type: PacketType.PUBREL, packetId: packet.packetId });
        return;
      }
      if (request.packet.qos !== 2) return;
      if (code >= 0x80) {
        this.finishPublish(packet.packetId);
        request.deferred.reject(ackError(what, code, packet.properties?.reasonString));
        return;
      }
      entry.stage = 'comp';
      entry.result = result;
      entry.pubrecOrder = this.pubrecs++;
      this.send({ type: PacketType.PUBREL, packetId: packet.packetId });
      return;
    }
    if (packet.type === PacketType.PUBACK && request.packet.qos !== 1) return;
    if (packet.type === PacketType.PUBCOMP && entry.stage !== 'comp') return;
    this.finishPublish(packet.packetId);
    // PUBCOMP 0x92 after a resent PUBREL: the server had completed it already
    const completedBefore = packet.type === PacketType.PUBCOMP && code === ReasonCode.PacketIdentifierNotFound;
    if (code >= 0x80 && !completedBefore) request.deferred.reject(ackError(what, code, packet.properties?.reasonString));
    else request.deferred.resolve(packet.type === PacketType.PUBCOMP && entry.result ? entry.result : result);
  }

  /** The flow is over: its packet id may be used again [MQTT-2.2.1-3], its Receive Maximum slot is free. */
  private finishPublish(packetId: number): void {
    this.inflight.delete(packetId);
    this.ids.release(packetId);
    this.inflightPublishes--;
    this.pump();
  }

  private receiveSuback(packet: SubackPacket): void {
    const entry = this.inflight.get(packet.packetId);
    if (!entry || entry.kind !== 'subscribe' || entry.request.kind !== 'subscribe') return;
    const item = entry.request;
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
    if (failed.length > 0) {
      const first = failed[0]!;
      const err = ackError(`subscribe to "${first.topicFilter}"`, first.reasonCode, packet.properties?.reasonString);
      (err as MqttClientError & { results?: SubscribeResult[] }).results = results;
      item.deferred.reject(err);
    } else item.deferred.resolve(results);
  }

  private receiveUnsuback(packet: UnsubackPacket): void {
    const entry = this.inflight.get(packet.packetId);
    if (!entry || entry.kind !== 'unsubscribe' || entry.request.kind !== 'unsubscribe') return;
    const item = entry.request;
    this.inflight.delete(packet.packetId);
    this.ids.release(packet.packetId);
    const results = item.topicFilters.map((f, i) => ({ topicFilter: f, reasonCode: packet.reasonCodes?.[i] ?? 0 }));
    for (const f of item.topicFilters) this.subscriptions.delete(f);
    this.pump();
    const failed = results.find((r) => r.reasonCode >= 0x80);
    if (failed) item.deferred.reject(ackError(`unsubscribe from "${failed.topicFilter}"`, failed.reasonCode, packet.properties?.reasonString));
    else item.deferred.resolve(results);
  }
}
