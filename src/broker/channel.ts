// One client connection's state machine, sans I/O: bytes and time in, bytes and a close out (EMQX's
// emqx_channel). This file holds the connection itself: input and packet dispatch, timers, the hooks it
// waits on, output and closing. The rules per packet live beside it: connect.ts (CONNECT, authentication,
// accept, refuse), inbound.ts (PUBLISH and acknowledgements from the client),
// subscriptions.ts (SUBSCRIBE, UNSUBSCRIBE); delivery belongs to the session (session/session.ts).
import { PacketType, ReasonCode, type ProtocolVersion, type QoS } from '../protocol/constants.js';
import { PacketDecoder } from '../protocol/decoder.js';
import { encodeAck, encodePacket } from '../protocol/encoder.js';
import { MqttProtocolError } from '../protocol/errors.js';
import type { Packet, Properties, WillMessage } from '../protocol/packets.js';
import type { AuthExchange, AuthMethod } from './enhanced-auth.js';
import { isPromise, type BrokerEvents, type BrokerHooks, type CertificateIdentity, type ClientInfo, type DisconnectInfo, type MaybePromise } from './hooks.js';
import { onAuth, onConnect, refuseConnect, type PendingConnect } from './connect.js';
import { onPublish, onPublishAck, onPubrel } from './inbound.js';
import type { Message } from './message.js';
import type { BrokerLimits } from './options.js';
import { PublishWriter } from './publish-writer.js';
import type { SessionRegistry } from './registry.js';
import type { RouteMemo } from './router.js';
import type { FanOutEncodings, Session, SessionLink } from './session/session.js';
import type { RetainedStore, SessionStore } from './store/types.js';
import { onSubscribe, onUnsubscribe } from './subscriptions.js';
import type { BrokerStats } from './sys-topics.js';
import { NOT_DUE } from './timer-wheel.js';
import type { Wills } from './wills.js';
import type { ResourceGuard } from './overload.js';

/** What a transport gives the channel to act on. */
export interface ChannelOutput {
  write(data: Buffer): void;
  /** Closes the transport after the bytes already written are flushed. */
  close(): void;
  /** Stop/restart reading while the channel waits on an async hook (keeps memory bounded). */
  pauseInput?(): void;
  resumeInput?(): void;
  /** Bytes written but not yet taken by the network (a slow reader makes this grow). */
  bufferedBytes?(): number;
}

export interface TransportInfo {
  remoteAddress: string;
  listener: string;
  secure: boolean;
  /** The verified client certificate (mutual TLS). */
  certificate?: CertificateIdentity;
  /** Identity from the client certificate that replaces the CONNECT username / Client ID. */
  identityUsername?: string;
  identityClientId?: string;
  /**
   * Set when the listener takes the username or Client ID from the certificate and this one lacks that field:
   * the CONNECT is refused (the words say why) rather than trusted with its own username / Client ID.
   */
  identityMissing?: string;
  /** Per-listener override of limits.allowAnonymous. */
  allowAnonymous?: boolean;
  /** Called for each PUBLISH received: 0 to accept, or a reason code (e.g. 0x96) to disconnect the client with. */
  publishLimit?(now: number, bytes: number): number;
}

/** A TransportInfo with every field present, in one order: all channels share one hidden class (a spread
 * of optional fields gave each connection its own, ~250 B). */
export function transportInfo(init: Omit<TransportInfo, 'remoteAddress'>, remoteAddress: string): TransportInfo {
  return {
    remoteAddress,
    listener: init.listener,
    secure: init.secure,
    certificate: init.certificate,
    identityUsername: init.identityUsername,
    identityClientId: init.identityClientId,
    identityMissing: init.identityMissing,
    allowAnonymous: init.allowAnonymous,
    publishLimit: init.publishLimit,
  };
}

/** What a channel needs of the broker around it (the core implements it). */
export interface ChannelHost {
  readonly limits: BrokerLimits;
  readonly hooks: BrokerHooks;
  readonly events: BrokerEvents;
  readonly clock: { now(): number };
  readonly stats: BrokerStats;
  readonly authMethods: ReadonlyMap<string, AuthMethod>;
  readonly store: SessionStore;
  readonly retained: RetainedStore;
  readonly registry: SessionRegistry<Channel>;
  readonly wills: Wills;
  readonly dispatch: { mayReceive(session: Session, topic: string): boolean; retainRefusal(message: Message): 'memory' | 'bytes' | undefined; retainRefused(message: Message, refusal: 'memory' | 'bytes'): void };
  /** What overload sheds now (overload.ts). */
  readonly guard: Pick<ResourceGuard, 'refuseConnects' | 'refusalReason'>;
  /** Set while the $SYS topics are published: clients may not publish under `$SYS/`. */
  readonly sysTopics: object | undefined;
  readonly closing: boolean;
  publish(message: Message, publisher: ClientInfo | undefined, payloadOwned: boolean, memo: RouteMemo<Session>): number;
  wakeAt(channel: Channel, at: number): void;
  watch(channel: Channel): void;
  removeChannel(channel: Channel): void;
  warnPlainCredentials(client: { listener: string; remoteAddress: string }): void;
}

type State = 'connecting' | 'authenticating' | 'connected' | 'closed';

export interface CloseRequest {
  reason: string;
  reasonCode?: number;
  /** Publish the will (the connection ended without a normal DISCONNECT). */
  will: boolean;
  /** Refused at CONNECT: already reported as clientRefused. */
  refused?: boolean;
}

/** A hook being waited on: what to do if it does not answer in time. */
interface PendingHook {
  deadline: number;
  failed: (err: unknown) => void;
  /** What is waited on, in the words of a timeout: "hook", "authentication". */
  what: string;
}

export class Channel implements SessionLink {
  // The fields every PUBLISH reads come first (after the constructor's host, output and transport): V8 lays
  // them out in this order, so a message touches one or two cache lines of each channel rather than five.
  state: State = 'connecting';
  version: ProtocolVersion = 4;
  private hook: PendingHook | undefined;
  readonly writer: PublishWriter;
  private readonly decoder: PacketDecoder;
  info: ClientInfo | undefined;
  session: Session | undefined;
  /** This client's last published topic and its subscribers (made on its first PUBLISH). */
  routeMemo: RouteMemo<Session> | undefined;
  /** The broker clock when the last bytes arrived (keep alive; a message's time without a clock read each). */
  lastReceived: number;
  readonly openedAt: number;
  keepAliveMs = 0;
  will: WillMessage | undefined;
  /** The will was taken at shutdown (takeWill) and published there. */
  private willTaken = false;
  /** 5.0 limits the client set in CONNECT. */
  clientReceiveMaximum = 65535;
  problemInformation = true;
  /** The CONNECT's Session Expiry Interval was 0 (DISCONNECT may not raise it: [MQTT-3.14.2-2]). */
  connectExpiryWasZero = false;
  /** Topic aliases the client set on its PUBLISHes (5.0). */
  topicAliases: Map<number, string> | undefined;
  /** Enhanced authentication: the method chosen in CONNECT and the exchange in progress. */
  authMethod: string | undefined;
  exchange: AuthExchange | undefined;
  pendingConnect: PendingConnect | undefined;
  /** QoS 1/2 PUBLISHes in the backlog, and whether the hook being waited on is for one: unacknowledged, they count against our Receive Maximum. */
  heldPublishes = 0;
  publishHookPending = false;
  /** The core's timer slot for this channel's next deadline (TimerWheel). */
  dueSlot = NOT_DUE;
  /** When the output buffer went over the high-water mark (slow consumer), while it stays there. */
  private stalledSince: number | undefined;
  /** Packets that arrived while an async hook was pending, in order. */
  private backlog: Packet[] | undefined;
  private backlogHead = 0;
  /** Bumped when a hook is settled (answered or timed out): a late answer of an earlier one is ignored. */
  private hookToken = 0;

  constructor(
    readonly host: ChannelHost,
    private readonly output: ChannelOutput,
    readonly transport: TransportInfo,
  ) {
    this.openedAt = this.lastReceived = host.clock.now();
    this.decoder = new PacketDecoder({ maxPacketSize: host.limits.maxPacketSize });
    this.writer = new PublishWriter(4, host.clock);
  }

  /** Who the client is was proven by its certificate or an enhanced authentication exchange, not a password. */
  get identityProven(): boolean {
    return this.transport.identityUsername !== undefined || this.authMethod !== undefined;
  }

  get clientId(): string | undefined {
    return this.info?.clientId;
  }

  /** Keep alive in force, in seconds (0: none). */
  get keepAlive(): number {
    return this.keepAliveMs / 1000;
  }

  /** Bytes written and not yet taken by the network. */
  get bufferedBytes(): number {
    return this.output.bufferedBytes?.() ?? 0;
  }

  /** True while a hook's answer is awaited: packets wait in the backlog. */
  get waiting(): boolean {
    return this.hook !== undefined;
  }

  // ---- input from the transport ----

  /** Bytes from the network. */
  receive(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastReceived = this.host.clock.now();
    this.host.stats.bytesReceived += chunk.length;
    try {
      this.decoder.feed(chunk, this.onPacket, this);
    } catch (err) {
      this.onDecodeError(err);
    }
  }

  /** The transport closed or failed under us. */
  transportClosed(error?: Error): void {
    this.close({ reason: error ? `connection lost: ${error.message}` : 'connection lost', will: true });
  }

  /**
   * Timers, when the core's timer wheel says one may be due (it may be early: see TimerWheel): connect
   * timeout, keep alive, a hook's deadline. Each run files the next deadline (wakeAt), so a packet received
   * needs no timer reset: its time is read here.
   */
  tick(now: number): void {
    // The whole handshake (CONNECT, and any enhanced authentication exchange) must end within connectTimeout;
    // that deadline comes before a hook's: a connection past it is closed whatever the hook would say.
    const handshake = this.state === 'connecting' || this.state === 'authenticating';
    const connectDeadline = this.openedAt + this.host.limits.connectTimeout;
    if (handshake && now >= connectDeadline) {
      this.close({ reason: this.state === 'connecting' ? 'no CONNECT within the connect timeout' : 'authentication not finished within the connect timeout', will: false });
      return;
    }
    const hook = this.hook;
    if (hook !== undefined && now >= hook.deadline) {
      this.settleHook(() => hook.failed(new Error(`${hook.what} did not answer within ${this.host.limits.hookTimeout} ms`)));
      if (this.state === 'closed') return;
    }
    let next = this.hook?.deadline ?? Infinity;
    if (this.state === 'connecting' || this.state === 'authenticating') {
      next = Math.min(next, connectDeadline);
    } else if (this.state === 'connected' && this.keepAliveMs > 0) {
      // [MQTT-3.1.2-24] nothing received for 1.5 x Keep Alive: close.
      const deadline = this.lastReceived + this.keepAliveMs * 1.5;
      if (now > deadline) {
        this.serverDisconnect(ReasonCode.KeepAliveTimeout, 'keep alive timeout');
        return;
      }
      next = Math.min(next, deadline + 1);
    }
    if (next !== Infinity) this.host.wakeAt(this, next);
  }

  /** At every core tick while watched (see watchOutput): false once nothing needs watching. */
  tickWatched(now: number): boolean {
    if (this.state !== 'connected') return false;
    this.checkSlowConsumer(now);
    return this.state === 'connected' && (this.stalledSince !== undefined || this.session!.hasBacklog);
  }

  /**
   * The output or the session queue holds a backlog: the core looks at this channel at every tick until it
   * is gone (slow-consumer timeout, queued messages moved out when the output drains). Called by the
   * session and by transports whose writes went asynchronous.
   */
  watchOutput(): void {
    if (this.state === 'connected') this.host.watch(this);
  }

  /** True while the client reads slower than we write: its output buffer is over the high-water mark. */
  outputFull(): boolean {
    const buffered = this.output.bufferedBytes?.();
    return buffered !== undefined && buffered > this.host.limits.maxOutputBuffer;
  }

  /** A client whose output stays over the high-water mark past slowConsumerTimeout is disconnected. */
  private checkSlowConsumer(now: number): void {
    if (!this.outputFull()) {
      this.stalledSince = undefined;
      this.session?.drain();
      return;
    }
    this.stalledSince ??= now;
    const timeout = this.host.limits.slowConsumerTimeout;
    if (timeout > 0 && now - this.stalledSince >= timeout) {
      this.serverDisconnect(ReasonCode.QuotaExceeded, `slow consumer: output buffer over ${this.host.limits.maxOutputBuffer} bytes for ${timeout} ms`);
    }
  }

  /** The transport took the buffered bytes: move waiting messages out of the session queue. */
  outputDrained(): void {
    if (this.state === 'connected') this.session?.drain();
  }

  /** Called by the decoder with the channel as `this` (a method, not a closure per connection). */
  private onPacket(packet: Packet): void {
    if (this.state === 'closed') return;
    this.host.stats.packetsReceived++;
    if (this.hook === undefined) {
      this.dispatch(packet);
      return;
    }
    if (packet.type === PacketType.PUBLISH && packet.qos !== 0) {
      // 3.3.4: more unacknowledged QoS 1/2 PUBLISHes than our Receive Maximum (only possible while a hook keeps
      // us from answering them) is 0x93.
      const unacknowledged = ++this.heldPublishes + (this.publishHookPending ? 1 : 0) + (this.session?.incomingQos2Count ?? 0);
      if (unacknowledged > this.host.limits.receiveMaximum) {
        this.serverDisconnect(ReasonCode.ReceiveMaximumExceeded, `more than ${this.host.limits.receiveMaximum} QoS 1/2 PUBLISHes unacknowledged`);
        return;
      }
    }
    (this.backlog ??= []).push(packet);
  }

  private onDecodeError(err: unknown): void {
    if (this.state === 'closed') return;
    const e = err instanceof MqttProtocolError ? err : new MqttProtocolError(0x80, `internal error: ${String(err)}`);
    if (this.state === 'connecting') {
      if (e.reasonCode === ReasonCode.UnsupportedProtocolVersion) {
        // A client newer than 5.0 understands a 5.0 CONNACK; an older or unknown one the 3.1.1 form.
        const level = e.requestedProtocolLevel ?? 0;
        this.setVersion(level > 5 ? 5 : 4);
        refuseConnect(this, ReasonCode.UnsupportedProtocolVersion, e.message);
        return;
      }
      if (e.requestedProtocolLevel === 5 && (e.reasonCode === ReasonCode.MalformedPacket || e.reasonCode === ReasonCode.ProtocolError)) {
        // A 5.0 CONNECT that breaks a rule: CONNACK with the reason code, then close (4.13.1).
        this.setVersion(5);
        refuseConnect(this, e.reasonCode, `invalid CONNECT: ${e.message}`);
        return;
      }
      this.close({ reason: `invalid CONNECT: ${e.message}`, reasonCode: e.reasonCode, will: false });
      return;
    }
    this.serverDisconnect(e.reasonCode, e.message);
  }

  setVersion(version: ProtocolVersion): void {
    this.version = version;
    this.writer.version = version;
  }

  // ---- dispatch ----

  private dispatch(packet: Packet): void {
    // PUBLISH and PUBACK (a QoS 1 message's two packets) on an open connection first: small enough for V8 to
    // inline into onPacket (the handshake and the other packets are methods of their own).
    if (this.state !== 'connected') this.dispatchHandshake(packet);
    else if (packet.type === PacketType.PUBLISH) onPublish(this, packet);
    else if (packet.type === PacketType.PUBACK) onPublishAck(this, packet);
    else this.dispatchConnected(packet);
  }

  /** A packet before the connection is accepted: CONNECT, or AUTH of an enhanced authentication exchange. */
  private dispatchHandshake(packet: Packet): void {
    if (this.state === 'connecting') {
      if (packet.type !== PacketType.CONNECT) {
        // [MQTT-3.1.0-1] the first packet must be CONNECT.
        this.close({ reason: 'first packet was not CONNECT', reasonCode: ReasonCode.ProtocolError, will: false });
        return;
      }
      onConnect(this, packet);
      return;
    }
    if (this.state === 'authenticating') {
      // Waiting for the client's next AUTH of an enhanced authentication exchange.
      if (packet.type === PacketType.AUTH) onAuth(this, packet);
      else if (packet.type === PacketType.DISCONNECT) this.close({ reason: 'client disconnected during authentication', will: false });
      else refuseConnect(this, ReasonCode.ProtocolError, `packet type ${packet.type} before the authentication finished`);
      return;
    }
    this.dispatchConnected(packet);
  }

  /** Any packet of an accepted connection. */
  private dispatchConnected(packet: Packet): void {
    switch (packet.type) {
      case PacketType.PUBLISH:
        onPublish(this, packet);
        break;
      case PacketType.PUBACK:
      case PacketType.PUBREC:
      case PacketType.PUBCOMP:
        onPublishAck(this, packet);
        break;
      case PacketType.PUBREL:
        onPubrel(this, packet);
        break;
      case PacketType.SUBSCRIBE:
        onSubscribe(this, packet);
        break;
      case PacketType.UNSUBSCRIBE:
        onUnsubscribe(this, packet);
        break;
      case PacketType.PINGREQ:
        this.send({ type: PacketType.PINGRESP });
        break;
      case PacketType.DISCONNECT:
        this.onDisconnect(packet.reasonCode ?? 0, packet.properties?.sessionExpiryInterval);
        break;
      case PacketType.CONNECT:
        // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
        this.serverDisconnect(ReasonCode.ProtocolError, 'second CONNECT on one connection');
        break;
      case PacketType.AUTH:
        onAuth(this, packet);
        break;
      default:
        this.serverDisconnect(ReasonCode.ProtocolError, `unexpected packet type ${packet.type} from a client`);
    }
  }

  private onDisconnect(code: number, expiry: number | undefined): void {
    if (expiry !== undefined) {
      if (this.connectExpiryWasZero && expiry !== 0) {
        // [MQTT-3.14.2-2] a session that was to end at disconnect cannot be given an expiry now.
        this.serverDisconnect(ReasonCode.ProtocolError, 'Session Expiry Interval set in DISCONNECT after 0 in CONNECT');
        return;
      }
      this.session!.setExpiry(Math.min(expiry, this.host.limits.maxSessionExpiry), undefined);
    }
    // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; 0x04 asks for it to be published.
    this.close({ reason: 'client disconnected', reasonCode: code, will: code === ReasonCode.DisconnectWithWillMessage });
  }

  // ---- hooks: answered at once, or later with the connection's input held ----

  /**
   * Runs `then` with the hook's answer: now when it is synchronous, in order after it when it is a promise.
   * `what` names what is waited on in a timeout's words (the password file's check is no "hook").
   */
  after<T>(value: MaybePromise<T>, then: (v: T) => void, failed: (err: unknown) => void, what = 'hook'): void {
    if (!isPromise(value)) {
      then(value);
      return;
    }
    const token = ++this.hookToken;
    const deadline = this.host.clock.now() + this.host.limits.hookTimeout;
    this.hook = { deadline, failed, what };
    this.output.pauseInput?.();
    // The deadline is filed on the core's timer wheel like any other: no timer of its own.
    this.host.wakeAt(this, deadline);
    value.then(
      (v) => {
        if (token === this.hookToken) this.settleHook(() => then(v));
      },
      (err: unknown) => {
        if (token === this.hookToken) this.settleHook(() => failed(err));
      },
    );
  }

  /** The hook answered (or timed out): act on it, then go on with the packets that waited. */
  private settleHook(act: () => void): void {
    this.hookToken++;
    this.hook = undefined;
    try {
      if (this.state !== 'closed') act();
      this.drainBacklog();
      if (this.state !== 'closed') {
        this.output.resumeInput?.();
        this.tick(this.host.clock.now()); // the next deadline without the hook's
      }
    } catch (err) {
      // A bug while handling the answer must cost this connection only, never the process.
      this.host.events.warning?.('internal error after a hook answered', { clientId: this.info?.clientId, error: String(err) });
      this.serverDisconnect(ReasonCode.ImplementationSpecificError, 'internal error');
    }
  }

  private drainBacklog(): void {
    const backlog = this.backlog;
    if (!backlog) return;
    while (this.hook === undefined && this.state !== 'closed' && this.backlogHead < backlog.length) {
      const packet = backlog[this.backlogHead++]!;
      if (packet.type === PacketType.PUBLISH && packet.qos !== 0) this.heldPublishes--;
      this.dispatch(packet);
    }
    if (this.backlogHead >= backlog.length) {
      this.backlog = undefined;
      this.backlogHead = 0;
    }
  }

  /**
   * The reason code for a hook's answer other than true: false is Not authorized, a number ≥ 0x80 is itself.
   * Anything else (0, undefined from a hook that forgot to return, ...) refuses too, with a warning: a
   * mistake in a hook must fail closed, never grant.
   */
  refusal(hook: string, answer: unknown): number {
    if (typeof answer === 'number' && answer >= 0x80 && answer <= 0xff) return answer;
    if (answer !== false) {
      this.host.events.warning?.(`${hook} hook answered ${String(answer)}, which is neither true, false nor a reason code from 0x80; refused`, { clientId: this.info?.clientId });
    }
    return ReasonCode.NotAuthorized;
  }

  // ---- output ----

  /** Encodes and writes a packet; false when it cannot fit the client's Maximum Packet Size (not sent). */
  send(packet: Packet): boolean {
    let encoded = encodePacket(packet, this.version);
    if (encoded.length > this.writer.maxPacketSize) {
      // [MQTT-3.1.2-25] never exceed the client's Maximum Packet Size: Reason String and User Properties go first.
      const properties = (packet as { properties?: Properties }).properties;
      if (!properties) return false;
      const { reasonString, userProperties, ...rest } = properties;
      void reasonString;
      void userProperties;
      encoded = encodePacket({ ...packet, properties: rest } as Packet, this.version);
      if (encoded.length > this.writer.maxPacketSize) return false;
    }
    this.write(encoded);
    return true;
  }

  /** Writes one encoded packet (counted for the $SYS topics): the one place packets leave. */
  private write(encoded: Buffer): void {
    const stats = this.host.stats;
    stats.packetsSent++;
    stats.bytesSent += encoded.length;
    this.output.write(encoded);
  }

  /** PUBACK, PUBREC, PUBREL or PUBCOMP without properties: sent for every QoS 1/2 message, so no packet object. */
  sendAck(type: 4 | 5 | 6 | 7, packetId: number, reasonCode?: number): void {
    const encoded = encodeAck(type, packetId, reasonCode, this.version);
    // [MQTT-3.1.2-25] even a 4-byte packet must fit the client's Maximum Packet Size.
    if (encoded.length <= this.writer.maxPacketSize) this.write(encoded);
  }

  // ---- SessionLink: what the session delivers through ----

  get sendWindow(): number {
    return Math.min(this.clientReceiveMaximum, this.host.limits.maxInflight);
  }

  sendPubrel(packetId: number): void {
    this.sendAck(PacketType.PUBREL, packetId);
  }

  writePublish(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, packetId: number | undefined, dup: boolean, encodings?: FanOutEncodings): boolean {
    const encoded = this.writer.encode(message, qos, retain, ids, packetId, dup, encodings);
    if (encoded === undefined) {
      // [MQTT-3.1.2-25] never send a packet larger than the client's Maximum Packet Size: dropped for this client.
      this.host.stats.droppedMessages++;
      this.host.stats.droppedTooLarge++;
      return false;
    }
    this.host.stats.publishSent++;
    this.host.stats.publishSentByQos[qos]++;
    this.write(encoded);
    return true;
  }

  // ---- closing ----

  /**
   * The will of a live connection, handed over at shutdown to be published before any connection closes; the
   * close that follows reports it as published and does not publish it again.
   */
  takeWill(): [WillMessage, ClientInfo] | undefined {
    const will = this.will;
    if (this.state !== 'connected' || will === undefined) return undefined;
    this.will = undefined;
    this.willTaken = true;
    return [will, this.info!];
  }

  /** Another connection took this Client ID over. */
  takeOver(): void {
    this.serverDisconnect(ReasonCode.SessionTakenOver, 'session taken over by another connection');
  }

  /** The server ends the connection: DISCONNECT with a reason code for 5.0 clients, then close; the will is published. */
  serverDisconnect(reasonCode: number, reason: string): void {
    if (this.state === 'closed') return;
    if (this.version === 5 && this.state === 'connected') {
      const properties = this.problemInformation ? { reasonString: reason } : undefined;
      this.send({ type: PacketType.DISCONNECT, reasonCode, properties });
    }
    this.close({ reason, reasonCode, will: true });
  }

  close(request: CloseRequest): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.hook = undefined;
    this.host.removeChannel(this);
    let willPublished = this.willTaken;
    const session = this.session;
    // The will of a connection whose session is not kept was recorded apart: published or discarded now.
    if (wasConnected && session && this.will && session.journal === undefined) this.host.store.liveWill?.(session.clientId, undefined);
    if (wasConnected && session) {
      session.unlink(this);
      this.host.registry.detach(this, session);
      if (request.will && this.will) {
        const sessionLives = this.host.registry.sessions.get(session.clientId) === session;
        this.host.wills.schedule(this.will, this.info!, sessionLives);
        willPublished = true;
      } else if (this.will) {
        session.journal?.will(undefined); // a normal DISCONNECT discards it
      }
    }
    this.will = undefined;
    if (!request.refused) {
      const info: DisconnectInfo = { reason: request.reason, reasonCode: request.reasonCode, willPublished };
      this.host.events.clientDisconnected?.(wasConnected ? this.info : undefined, this.transport.remoteAddress, info);
    }
    this.output.close();
  }
}
