// One client connection's state machine, sans I/O: bytes and time in, bytes and a close out.
// It owns the MQTT rules of a connection (CONNECT first, keep alive, QoS flows, will) and asks
// the core for everything shared (sessions, routing, retained messages).
import { ReasonCode, v5ConnackToV3, type ProtocolVersion, type QoS } from '../protocol/constants.js';
import { PacketDecoder } from '../protocol/decoder.js';
import { encodeAck, encodePacket, encodePublish, withPacketId } from '../protocol/encoder.js';
import { MqttProtocolError } from '../protocol/errors.js';
import { Buffer, isUtf8 } from 'node:buffer';
import type { AuthExchange, AuthStepResult } from './enhanced-auth.js';
import type {
  AuthPacket,
  ConnectPacket,
  DisconnectPacket,
  Packet,
  Properties,
  PubAckLikePacket,
  PublishPacket,
  SubscribePacket,
  UnsubscribePacket,
  WillMessage,
} from '../protocol/packets.js';
import { hasMoreLevels, isValidTopicFilter, parseSharedSubscription } from '../protocol/topic.js';
import type { BrokerCore } from './core.js';
import { callHook, isPromise, type AuthenticateRequest, type CertificateIdentity, type ClientInfo, type DisconnectInfo, type MaybePromise } from './hooks.js';
import { ALLOWED_REASON_CODES } from '../protocol/codec-util.js';
import { isSysTopic } from './sys-topics.js';
import { createMessage, type Message } from './message.js';
import { newRouteMemo, type RouteMemo, type SubscriptionEntry } from './router.js';
import type { InflightMessage, Session } from './session.js';
import { NOT_DUE } from './timer-wheel.js';

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

type State = 'connecting' | 'authenticating' | 'connected' | 'closed';

interface CloseRequest {
  reason: string;
  reasonCode?: number;
  /** Publish the will (the connection ended without a normal DISCONNECT). */
  will: boolean;
  /** Refused at CONNECT: already reported as clientRefused. */
  refused?: boolean;
}

/** A CONNECT accepted so far, waiting for authentication to finish. */
interface PendingConnect {
  packet: ConnectPacket;
  clientId: string;
  assigned: boolean;
  keepAlive: number;
  serverKeepAlive: number | undefined;
}

export class Channel {
  state: State = 'connecting';
  version: ProtocolVersion = 4;
  info: ClientInfo | undefined;
  session: Session | undefined;
  readonly openedAt: number;
  private readonly decoder: PacketDecoder;
  private lastReceived: number;
  private keepAliveMs = 0;
  private will: WillMessage | undefined;
  /** 5.0 limits the client set in CONNECT. */
  private clientReceiveMaximum = 65535;
  private clientMaxPacketSize = Infinity;
  private problemInformation = true;
  private topicAliases: Map<number, string> | undefined;
  private connectExpiryWasZero = false;
  /** 5.0 Topic Alias Maximum of the client: aliases the broker may use toward it. */
  private clientTopicAliasMaximum = 0;
  /** Aliases assigned toward the client: topic → alias. */
  private outAliases: Map<string, number> | undefined;
  /** This client's last published topic and its subscribers (made on its first PUBLISH). */
  private routeMemo: RouteMemo | undefined;
  /** Enhanced authentication: the method chosen in CONNECT and the exchange in progress. */
  private authMethod: string | undefined;
  private exchange: AuthExchange | undefined;
  private pendingConnect: PendingConnect | undefined;
  /** When the output buffer went over the high-water mark (slow consumer), while it stays there. */
  private stalledSince: number | undefined;
  /** The core's timer slot for this channel's connect timeout or keep alive (TimerWheel). */
  dueSlot = NOT_DUE;
  /** Packets that arrived while an async hook was pending, in order. */
  private backlog: Packet[] | undefined;
  /**
   * In-flight messages of a resumed session not resent yet: the new connection's Receive Maximum is smaller
   * than what was in flight ([MQTT-4.9.0-2]), so the rest follow as acknowledgements free the window.
   */
  private heldResends: { order: InflightMessage[]; next: number; ids: Set<number> } | undefined;
  private backlogHead = 0;
  private waiting = false;
  /** QoS 1/2 PUBLISHes in the backlog, and whether the hook being waited on is for one: unacknowledged, they count against our Receive Maximum. */
  private heldPublishes = 0;
  private publishHookPending = false;

  constructor(
    private readonly core: BrokerCore,
    private readonly output: ChannelOutput,
    readonly transport: TransportInfo,
  ) {
    this.openedAt = this.lastReceived = core.clock.now();
    this.decoder = new PacketDecoder({ maxPacketSize: core.limits.maxPacketSize });
  }

  /** Who the client is was proven by its certificate or an enhanced authentication exchange, not a password. */
  get identityProven(): boolean {
    return this.transport.identityUsername !== undefined || this.authMethod !== undefined;
  }

  get clientId(): string | undefined {
    return this.info?.clientId;
  }

  // ---- input from the transport ----

  /** Bytes from the network. */
  receive(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastReceived = this.core.clock.now();
    this.core.stats.bytesReceived += chunk.length;
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
   * timeout, keep alive. Each run files the next deadline (wakeAt), so a packet received needs no timer
   * reset: its time is read here.
   */
  tick(now: number): void {
    if (this.state === 'connecting' || this.state === 'authenticating') {
      // The whole handshake (CONNECT, and any enhanced authentication exchange) must end within connectTimeout.
      const deadline = this.openedAt + this.core.limits.connectTimeout;
      if (now < deadline) this.core.wakeAt(this, deadline);
      else this.close({ reason: this.state === 'connecting' ? 'no CONNECT within the connect timeout' : 'authentication not finished within the connect timeout', will: false });
    } else if (this.state === 'connected' && this.keepAliveMs > 0) {
      // [MQTT-3.1.2-24] nothing received for 1.5 x Keep Alive: close.
      const deadline = this.lastReceived + this.keepAliveMs * 1.5;
      if (now <= deadline) this.core.wakeAt(this, deadline + 1);
      else this.serverDisconnect(ReasonCode.KeepAliveTimeout, 'keep alive timeout');
    }
  }

  /** At every core tick while watched (see watchOutput): false once nothing needs watching. */
  tickWatched(now: number): boolean {
    if (this.state !== 'connected') return false;
    this.checkSlowConsumer(now);
    return this.state === 'connected' && (this.stalledSince !== undefined || this.session!.queuedCount > 0);
  }

  /**
   * The output or the session queue holds a backlog: the core looks at this channel at every tick until it
   * is gone (slow-consumer timeout, queued messages moved out when the output drains). Called by the
   * channel itself and by transports whose writes went asynchronous.
   */
  watchOutput(): void {
    if (this.state === 'connected') this.core.watch(this);
  }

  /** True while the client reads slower than we write: its output buffer is over the high-water mark. */
  private outputFull(): boolean {
    const buffered = this.output.bufferedBytes?.();
    return buffered !== undefined && buffered > this.core.limits.maxOutputBuffer;
  }

  /** A client whose output stays over the high-water mark past slowConsumerTimeout is disconnected. */
  private checkSlowConsumer(now: number): void {
    if (!this.outputFull()) {
      this.stalledSince = undefined;
      this.drainQueue();
      return;
    }
    this.stalledSince ??= now;
    const timeout = this.core.limits.slowConsumerTimeout;
    if (timeout > 0 && now - this.stalledSince >= timeout) {
      this.serverDisconnect(ReasonCode.QuotaExceeded, `slow consumer: output buffer over ${this.core.limits.maxOutputBuffer} bytes for ${timeout} ms`);
    }
  }

  /** The transport took the buffered bytes: move waiting messages out of the session queue. */
  outputDrained(): void {
    if (this.state === 'connected') this.drainQueue();
  }

  /** Called by the decoder with the channel as `this` (a method, not a closure per connection). */
  private onPacket(packet: Packet): void {
    if (this.state === 'closed') return;
    this.core.stats.packetsReceived++;
    if (!this.waiting) {
      this.dispatch(packet);
      return;
    }
    if (packet.type === 3 && packet.qos !== 0) {
      // 3.3.4: more unacknowledged QoS 1/2 PUBLISHes than our Receive Maximum (only possible while a hook keeps
      // us from answering them) is 0x93.
      const unacknowledged = ++this.heldPublishes + (this.publishHookPending ? 1 : 0) + (this.session?.incomingQos2.size ?? 0);
      if (unacknowledged > this.core.limits.receiveMaximum) {
        this.serverDisconnect(ReasonCode.ReceiveMaximumExceeded, `more than ${this.core.limits.receiveMaximum} QoS 1/2 PUBLISHes unacknowledged`);
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
        this.version = level > 5 ? 5 : 4;
        this.refuse(ReasonCode.UnsupportedProtocolVersion, e.message);
        return;
      }
      this.close({ reason: `invalid CONNECT: ${e.message}`, reasonCode: e.reasonCode, will: false });
      return;
    }
    this.serverDisconnect(e.reasonCode, e.message);
  }

  // ---- dispatch ----

  private dispatch(packet: Packet): void {
    if (this.state === 'connecting') {
      if (packet.type !== 1) {
        // [MQTT-3.1.0-1] the first packet must be CONNECT.
        this.close({ reason: 'first packet was not CONNECT', reasonCode: ReasonCode.ProtocolError, will: false });
        return;
      }
      this.onConnect(packet);
      return;
    }
    if (this.state === 'authenticating') {
      // Waiting for the client's next AUTH of an enhanced authentication exchange.
      if (packet.type === 15) this.onAuth(packet);
      else if (packet.type === 14) this.close({ reason: 'client disconnected during authentication', will: false });
      else this.refuse(ReasonCode.ProtocolError, `packet type ${packet.type} before the authentication finished`);
      return;
    }
    switch (packet.type) {
      case 3:
        this.onPublish(packet);
        break;
      case 4:
      case 5:
      case 7:
        this.onPublishAck(packet);
        break;
      case 6:
        this.onPubrel(packet);
        break;
      case 8:
        this.onSubscribe(packet);
        break;
      case 10:
        this.onUnsubscribe(packet);
        break;
      case 12:
        this.send({ type: 13 });
        break;
      case 14:
        this.onDisconnect(packet);
        break;
      case 1:
        // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
        this.serverDisconnect(ReasonCode.ProtocolError, 'second CONNECT on one connection');
        break;
      case 15:
        this.onAuth(packet);
        break;
      default:
        this.serverDisconnect(ReasonCode.ProtocolError, `unexpected packet type ${packet.type} from a client`);
    }
  }

  /** Runs `then` with the hook's answer: now when it is synchronous, in order after it when it is a promise. */
  private after<T>(value: MaybePromise<T>, then: (v: T) => void, failed: (err: unknown) => void, what = 'hook'): void {
    if (!isPromise(value)) {
      then(value);
      return;
    }
    this.waiting = true;
    this.output.pauseInput?.();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${this.core.limits.hookTimeout} ms`)), this.core.limits.hookTimeout);
    });
    Promise.race([value, timeout])
      .then(
        (v) => {
          if (this.state !== 'closed') then(v);
        },
        (err) => {
          if (this.state !== 'closed') failed(err);
        },
      )
      .finally(() => {
        clearTimeout(timer);
        this.waiting = false;
        this.drainBacklog();
        if (this.state !== 'closed') this.output.resumeInput?.();
      })
      .catch((err: unknown) => {
        // A bug while handling the answer must cost this connection only, never the process.
        this.core.events.warning?.('internal error after a hook answered', { clientId: this.info?.clientId, error: String(err) });
        this.serverDisconnect(ReasonCode.ImplementationSpecificError, 'internal error');
      });
  }

  private drainBacklog(): void {
    const backlog = this.backlog;
    if (!backlog) return;
    while (!this.waiting && this.state !== 'closed' && this.backlogHead < backlog.length) {
      const packet = backlog[this.backlogHead++]!;
      if (packet.type === 3 && packet.qos !== 0) this.heldPublishes--;
      this.dispatch(packet);
    }
    if (this.backlogHead >= backlog.length) {
      this.backlog = undefined;
      this.backlogHead = 0;
    }
  }

  // ---- CONNECT ----

  private onConnect(p: ConnectPacket): void {
    this.version = p.protocolVersion;
    this.state = 'authenticating';
    const limits = this.core.limits;
    const props = p.properties;
    if (this.version === 5) {
      if (props?.receiveMaximum !== undefined) this.clientReceiveMaximum = props.receiveMaximum;
      if (props?.maximumPacketSize !== undefined) this.clientMaxPacketSize = props.maximumPacketSize;
      if (props?.requestProblemInformation === 0) this.problemInformation = false;
      if (props?.topicAliasMaximum) this.clientTopicAliasMaximum = props.topicAliasMaximum;
    }
    const methodName = this.version === 5 ? props?.authenticationMethod : undefined;
    const t = this.transport;
    if (t.identityMissing !== undefined) {
      // As Mosquitto's use_identity_as_username: a certificate without the identity is bad credentials.
      this.refuse(ReasonCode.BadUserNameOrPassword, t.identityMissing);
      return;
    }
    let clientId = t.identityClientId ?? p.clientId;
    let assigned = false;
    if (clientId === '') {
      // [MQTT-3.1.3-6..8] an empty ID gets one assigned when the session is clean (5.0: always).
      if (this.version === 5 || (this.version === 4 && p.clean)) {
        clientId = this.core.assignClientId();
        assigned = true;
      } else {
        this.refuse(ReasonCode.ClientIdentifierNotValid, 'empty Client ID needs clean session');
        return;
      }
    } else if (Buffer.byteLength(clientId) > limits.maxClientIdLength) {
      this.refuse(ReasonCode.ClientIdentifierNotValid, `Client ID longer than ${limits.maxClientIdLength} bytes`);
      return;
    } else if (this.version === 3 && clientId.length > 23 && [...clientId].length > 23 && t.identityClientId === undefined) {
      // MQTT 3.1 (CONNECT, Client Identifier): 1 to 23 characters, else return code 2.
      this.refuse(ReasonCode.ClientIdentifierNotValid, 'MQTT 3.1 Client ID longer than 23 characters');
      return;
    }
    const will = p.will;
    if (will !== undefined && will.qos > limits.maxQos) {
      // [MQTT-3.2.2-12] a will this server could not publish at its QoS refuses the connection.
      this.refuse(ReasonCode.QoSNotSupported, `Will QoS ${will.qos} is above the maximum QoS ${limits.maxQos}`);
      return;
    }
    if (will !== undefined && will.retain && !limits.retainAvailable) {
      // [MQTT-3.2.2-13] nor can a retained will be kept where retained messages are off.
      this.refuse(ReasonCode.RetainNotSupported, 'retained will, but retained messages are not supported');
      return;
    }
    if (will !== undefined && hasMoreLevels(will.topic, limits.maxTopicLevels)) {
      this.refuse(ReasonCode.TopicNameInvalid, `will topic has more than maxTopicLevels (${limits.maxTopicLevels}) levels`);
      return;
    }
    if (will?.properties?.payloadFormatIndicator === 1 && limits.validatePayloadFormat && !isUtf8(will.payload)) {
      // 3.1.3.2.3: a will that says UTF-8 and is not (as a PUBLISH would be refused, see onPublish).
      this.refuse(ReasonCode.PayloadFormatInvalid, 'will payload is not UTF-8 although its Payload Format Indicator says so');
      return;
    }
    if (this.version === 5 && methodName === undefined && props?.authenticationData !== undefined) {
      // 3.1.2.11.10: Authentication Data without an Authentication Method is a Protocol Error.
      this.refuse(ReasonCode.ProtocolError, 'Authentication Data without an Authentication Method');
      return;
    }
    let keepAlive = p.keepAlive;
    let serverKeepAlive: number | undefined;
    if (limits.maxKeepAlive < 65535 && (keepAlive === 0 || keepAlive > limits.maxKeepAlive)) {
      if (this.version === 5) {
        serverKeepAlive = keepAlive = limits.maxKeepAlive;
      } else {
        // 3.1.x has no way to tell the client another value: refuse, as Mosquitto does.
        this.refuse(ReasonCode.ClientIdentifierNotValid, `keep alive ${keepAlive} s is outside the allowed 1..${limits.maxKeepAlive} s`);
        return;
      }
    }
    // One shape for every client (certificateCN always present, maybe undefined).
    this.info = {
      clientId,
      username: t.identityUsername ?? p.username,
      protocolVersion: this.version,
      remoteAddress: t.remoteAddress,
      listener: t.listener,
      certificateCN: t.certificate?.cn,
    };
    if (p.password !== undefined && !t.secure) this.core.warnPlainCredentials(t);
    // With enhanced authentication the user name travels inside the exchange, not in CONNECT.
    if (methodName === undefined && !(t.allowAnonymous ?? limits.allowAnonymous) && this.info.username === undefined) {
      this.refuse(ReasonCode.NotAuthorized, 'anonymous connections are not allowed');
      return;
    }
    if (this.core.closing) {
      this.refuse(ReasonCode.ServerUnavailable, 'server shutting down');
      return;
    }
    if (limits.serverReference) {
      // A configured redirect: 5.0 clients are told where to go (0x9C temporary, 0x9D permanent).
      this.refuse(limits.serverMoved ? ReasonCode.ServerMoved : ReasonCode.UseAnotherServer, 'use another server', { serverReference: limits.serverReference });
      return;
    }
    const pending: PendingConnect = { packet: p, clientId, assigned, keepAlive, serverKeepAlive };
    if (methodName !== undefined) {
      const method = this.core.authMethods.get(methodName);
      if (!method) {
        this.refuse(ReasonCode.BadAuthenticationMethod, `authentication method ${JSON.stringify(methodName)} is not supported`);
        return;
      }
      this.authMethod = methodName;
      this.pendingConnect = pending;
      this.exchange = method.begin({ clientId, username: this.info.username, remoteAddress: t.remoteAddress });
      this.authStep(props?.authenticationData);
      return;
    }
    this.authenticate(pending, p.password);
  }

  /**
   * The `authenticate` hook decides on every connection (bans and limits live there too); after an
   * enhanced authentication exchange it is told the method instead of given a password.
   */
  private authenticate(pending: PendingConnect, password: Buffer | undefined, authProperties?: Properties): void {
    const hook = this.core.hooks.authenticate;
    const t = this.transport;
    const info = this.info!;
    // Every field written out, in one order: a spread of `info` plus extra fields costs ~3 µs per CONNECT.
    const request: AuthenticateRequest = {
      clientId: info.clientId,
      username: info.username,
      protocolVersion: info.protocolVersion,
      remoteAddress: info.remoteAddress,
      listener: info.listener,
      certificateCN: info.certificateCN,
      password,
      secure: t.secure,
      certificate: t.certificate,
      usernameFromCertificate: t.identityUsername !== undefined,
      authenticationMethod: authProperties?.authenticationMethod,
    };
    const verdict: MaybePromise<boolean | number> = hook ? callHook(() => hook(request)) : true;
    this.after(
      verdict,
      (ok) => {
        if (ok === true) this.accept(pending, authProperties);
        else this.refuse(ok === false ? ReasonCode.BadUserNameOrPassword : this.refusal('authenticate', ok), 'refused by authentication');
      },
      (err) => {
        // Not "hook": the password file answers here too, with no hook configured.
        this.core.events.warning?.('authentication failed', { clientId: pending.clientId, error: String(err) });
        this.refuse(ReasonCode.UnspecifiedError, 'authentication failed with an error');
      },
      'authentication',
    );
  }

  /**
   * The reason code for a hook's answer other than true: false is Not authorized, a number ≥ 0x80 is itself.
   * Anything else (0, undefined from a hook that forgot to return, ...) refuses too, with a warning: a
   * mistake in a hook must fail closed, never grant.
   */
  private refusal(hook: string, answer: unknown): number {
    if (typeof answer === 'number' && answer >= 0x80 && answer <= 0xff) return answer;
    if (answer !== false) {
      this.core.events.warning?.(`${hook} hook answered ${String(answer)}, which is neither true, false nor a reason code from 0x80; refused`, { clientId: this.info?.clientId });
    }
    return ReasonCode.NotAuthorized;
  }

  // ---- enhanced authentication (5.0, 4.12) ----

  private authStep(data: Buffer | undefined): void {
    const exchange = this.exchange!;
    this.after(
      callHook(() => exchange.step(data)),
      (r) => this.onAuthResult(r),
      (err) => {
        this.core.events.warning?.('authentication method failed', { method: this.authMethod, error: String(err) });
        this.authFailed(ReasonCode.UnspecifiedError, 'authentication failed with an error');
      },
    );
  }

  private onAuthResult(r: AuthStepResult): void {
    const authenticationMethod = this.authMethod!;
    if (r.result === 'continue') {
      this.send({ type: 15, reasonCode: ReasonCode.ContinueAuthentication, properties: { authenticationMethod, authenticationData: r.data } });
      return;
    }
    this.exchange = undefined;
    if (r.result === 'failure') {
      this.authFailed(r.reasonCode ?? ReasonCode.NotAuthorized, r.reason ?? 'authentication failed');
      return;
    }
    const properties: Properties = { authenticationMethod };
    if (r.data) properties.authenticationData = r.data;
    if (this.state === 'authenticating') {
      const pending = this.pendingConnect!;
      this.pendingConnect = undefined;
      // The identity is what the exchange proved; a user name merely claimed in CONNECT does not count.
      this.info!.username = r.username;
      this.authenticate(pending, undefined, properties);
    } else if (r.username !== undefined && r.username !== this.info!.username) {
      // A connection belongs to the user its CONNECT proved: re-authentication may renew that proof, not
      // swap the user (who would then bypass the authenticate hook, bans included).
      this.authFailed(ReasonCode.NotAuthorized, 're-authentication proved another user');
    } else {
      // Re-authentication succeeded (4.12.1): AUTH 0x00.
      this.send({ type: 15, reasonCode: 0, properties });
    }
  }

  private authFailed(reasonCode: number, reason: string): void {
    if (this.state === 'authenticating') this.refuse(reasonCode, reason);
    // A failed re-authentication ends the connection [MQTT-4.12.1-2] with a DISCONNECT code: CONNACK-only
    // codes of the method (0x86 Bad user name or password, 0x8C Bad authentication method) become 0x87.
    else this.serverDisconnect(ALLOWED_REASON_CODES[14]![reasonCode] ? reasonCode : ReasonCode.NotAuthorized, reason);
  }

  private onAuth(p: AuthPacket): void {
    const code = p.reasonCode ?? 0;
    const method = p.properties?.authenticationMethod;
    if (this.authMethod === undefined) {
      // [MQTT-4.12.0-6]/[MQTT-4.12.1-1] AUTH only where CONNECT chose a method, and with that method.
      this.authFailed(ReasonCode.ProtocolError, 'AUTH without an authentication method in CONNECT');
      return;
    }
    if (method !== this.authMethod) {
      this.authFailed(ReasonCode.ProtocolError, 'AUTH with another authentication method than CONNECT');
      return;
    }
    if (code === ReasonCode.ContinueAuthentication && this.exchange) {
      this.authStep(p.properties?.authenticationData);
    } else if (code === ReasonCode.ReAuthenticate && this.state === 'connected' && !this.exchange) {
      this.exchange = this.core.authMethods.get(method)!.begin({ clientId: this.info!.clientId, username: this.info!.username, remoteAddress: this.transport.remoteAddress });
      this.authStep(p.properties?.authenticationData);
    } else {
      this.authFailed(ReasonCode.ProtocolError, `unexpected AUTH reason code 0x${code.toString(16)}`);
    }
  }

  private accept(pending: PendingConnect, authProperties?: Properties): void {
    const { packet: p, clientId, assigned, keepAlive, serverKeepAlive } = pending;
    const limits = this.core.limits;
    let expiry: number;
    let expiryCapped = false;
    if (this.version === 5) {
      const requested = p.properties?.sessionExpiryInterval ?? 0;
      expiry = Math.min(requested, limits.maxSessionExpiry);
      expiryCapped = expiry !== requested;
      this.connectExpiryWasZero = requested === 0;
    } else {
      expiry = p.clean ? 0 : limits.sessionExpiry;
    }
    const { session, present } = this.core.attach(this, clientId, p.clean, expiry);
    this.session = session;
    if (present && this.version !== 5 && session.subscriptionCount > 0) {
      // A session made over 5.0, resumed over 3.1.x: that protocol has no Retain As Published, and "MUST set
      // the RETAIN flag to 0" on messages through an established subscription [MQTT-3.3.1-9].
      for (const entry of session.subscriptions.values()) entry.retainAsPublished = false;
    }
    this.state = 'connected';
    this.keepAliveMs = keepAlive * 1000;
    this.will = p.will;
    this.lastReceived = this.core.clock.now();
    this.tick(this.lastReceived); // the keep-alive deadline (filed at the connect timeout's slot if that comes first)

    let properties: Properties | undefined;
    if (this.version === 5) {
      properties = { ...authProperties };
      if (p.properties?.requestResponseInformation === 1 && limits.responseInformation) {
        properties.responseInformation = limits.responseInformation.replace(/%c/g, clientId);
      }
      if (!limits.wildcardSubscriptionAvailable) properties.wildcardSubscriptionAvailable = 0;
      if (!limits.subscriptionIdentifiersAvailable) properties.subscriptionIdentifierAvailable = 0;
      if (!limits.sharedSubscriptionAvailable) properties.sharedSubscriptionAvailable = 0;
      if (limits.connackUserProperties.length) properties.userProperties = limits.connackUserProperties;
      if (assigned) properties.assignedClientIdentifier = clientId;
      if (serverKeepAlive !== undefined) properties.serverKeepAlive = serverKeepAlive;
      if (expiryCapped) properties.sessionExpiryInterval = expiry;
      if (limits.receiveMaximum < 65535) properties.receiveMaximum = limits.receiveMaximum;
      if (limits.maxQos < 2) properties.maximumQoS = limits.maxQos;
      if (!limits.retainAvailable) properties.retainAvailable = 0;
      properties.maximumPacketSize = limits.maxPacketSize;
      if (limits.topicAliasMaximum > 0) properties.topicAliasMaximum = limits.topicAliasMaximum;
    }
    // [MQTT-3.2.2-2] session present only when a stored session was resumed (never with clean start).
    this.send({ type: 2, sessionPresent: present, reasonCode: 0, properties });
    this.core.events.clientConnected?.(this.info!, { sessionPresent: present, clean: p.clean, keepAlive });

    // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (with DUP) and PUBREL on resume, in order, but no more at
    // once than the client's Receive Maximum allows ([MQTT-4.9.0-2]).
    if (session.inflightCount > 0) {
      const order = session.inflightInOrder();
      const window = this.sendWindow;
      for (let i = 0; i < order.length && i < window; i++) this.resend(order[i]!);
      if (order.length > window) this.heldResends = { order, next: window, ids: new Set(order.slice(window).map((m) => m.packetId)) };
    }
    this.drainQueue();
  }

  private resend(m: InflightMessage): void {
    if (m.state === 'pubrel') this.sendAck(6, m.packetId);
    else this.writePublish(m.message, m.qos, m.retain, m.subscriptionIds, m.packetId, true);
  }

  /** Resends held-back in-flight messages while the window has room. False while some are still held. */
  private resendHeld(session: Session): boolean {
    const held = this.heldResends!;
    while (held.next < held.order.length && session.inflightCount - held.ids.size < this.sendWindow && !this.outputFull()) {
      const m = held.order[held.next++]!;
      // Acknowledged meanwhile (the client had it from the last connection): nothing to resend.
      if (!held.ids.delete(m.packetId)) continue;
      this.resend(m);
    }
    if (held.ids.size > 0) return false;
    this.heldResends = undefined;
    return true;
  }

  /** CONNACK with an error, then close (no will: the connection was never accepted). */
  private refuse(reasonCode: number, reason: string, extra?: Properties): void {
    const code = this.version === 5 ? reasonCode : v5ConnackToV3(reasonCode);
    let properties: Properties | undefined;
    if (this.version === 5) {
      properties = { ...extra };
      if (this.problemInformation) properties.reasonString = reason;
    }
    this.send({ type: 2, sessionPresent: false, reasonCode: code, properties });
    this.core.events.clientRefused?.(this.transport.remoteAddress, this.info?.clientId, reasonCode, reason);
    this.close({ reason, reasonCode, will: false, refused: true });
  }

  // ---- PUBLISH from the client ----

  private onPublish(p: PublishPacket): void {
    const limits = this.core.limits;
    this.core.stats.publishReceived++;
    const limited = this.transport.publishLimit?.(this.core.clock.now(), p.payload.length) ?? 0;
    if (limited !== 0) {
      this.serverDisconnect(limited, 'publish rate limit exceeded');
      return;
    }
    if (p.qos > limits.maxQos) {
      this.serverDisconnect(ReasonCode.QoSNotSupported, `QoS ${p.qos} is above the maximum QoS ${limits.maxQos}`);
      return;
    }
    if (p.retain && !limits.retainAvailable) {
      this.serverDisconnect(ReasonCode.RetainNotSupported, 'retained messages are not supported');
      return;
    }
    let topic = p.topic;
    const alias = p.properties?.topicAlias;
    if (alias !== undefined) {
      if (alias === 0 || alias > limits.topicAliasMaximum) {
        this.serverDisconnect(ReasonCode.TopicAliasInvalid, `topic alias ${alias} is outside 1..${limits.topicAliasMaximum}`);
        return;
      }
      const aliases = (this.topicAliases ??= new Map());
      if (topic === '') {
        const known = aliases.get(alias);
        if (known === undefined) {
          this.serverDisconnect(ReasonCode.TopicAliasInvalid, `topic alias ${alias} was never set`);
          return;
        }
        topic = known;
      } else {
        aliases.set(alias, topic);
      }
    }
    if (this.core.sysTopics !== undefined && isSysTopic(topic)) {
      // $SYS/ is the broker's own tree (sys-topics.ts): refused as an ACL denial is, so nobody fakes its figures.
      this.ackPublish(p, ReasonCode.NotAuthorized);
      return;
    }
    if (hasMoreLevels(topic, limits.maxTopicLevels)) {
      // 5.0 QoS 1/2 can be told in the acknowledgement; QoS 0 and 3.1.x (no negative PUBACK) are cut off, as
      // Mosquitto cuts off a topic beyond its hierarchy limit, so no publisher believes such a message went out.
      const reason = `topic has more than maxTopicLevels (${limits.maxTopicLevels}) levels`;
      if (p.qos === 0 || this.version !== 5) this.serverDisconnect(ReasonCode.TopicNameInvalid, reason);
      else this.ackPublish(p, ReasonCode.TopicNameInvalid);
      return;
    }
    if (p.properties?.payloadFormatIndicator === 1 && limits.validatePayloadFormat && !isUtf8(p.payload)) {
      // The publisher said UTF-8 and it is not: refuse it (QoS 0 has no acknowledgement to carry the code).
      if (p.qos === 0) this.serverDisconnect(ReasonCode.PayloadFormatInvalid, 'payload is not UTF-8 although Payload Format Indicator says so');
      else this.ackPublish(p, ReasonCode.PayloadFormatInvalid);
      return;
    }
    const session = this.session!;
    if (p.qos === 2) {
      if (session.incomingQos2.has(p.packetId!)) {
        // [MQTT-4.3.3-9] a resent QoS 2 PUBLISH is acknowledged again but not delivered twice.
        this.sendAck(5, p.packetId!);
        return;
      }
      if (session.incomingQos2.size >= limits.receiveMaximum) {
        this.serverDisconnect(ReasonCode.ReceiveMaximumExceeded, `more than ${limits.receiveMaximum} QoS 2 messages unacknowledged`);
        return;
      }
    }
    // lastReceived is the clock read when this chunk arrived: no second clock read per message. A message
    // that may outlive this input chunk (QoS 1/2, retained) gets its own payload now, so publish() need not copy it.
    const message = createMessage({ topic, payload: p.payload, qos: p.qos, retain: p.retain, properties: p.properties }, this.info!.clientId, this.lastReceived, p.qos > 0 || p.retain);
    const authorize = this.core.hooks.authorizePublish;
    if (!authorize) {
      this.route(p, message);
      return;
    }
    this.publishHookPending = p.qos !== 0;
    this.after(
      callHook(() => authorize(this.info!, message)),
      (ok) => {
        this.publishHookPending = false;
        if (ok === true) this.route(p, message);
        else this.ackPublish(p, this.refusal('authorizePublish', ok));
      },
      () => {
        this.publishHookPending = false;
        this.ackPublish(p, ReasonCode.UnspecifiedError);
      },
    );
  }

  private route(p: PublishPacket, message: Message): void {
    // The payload was copied when the message was made, if it had to be.
    const delivered = this.core.publish(message, this.info, true, (this.routeMemo ??= newRouteMemo()));
    this.ackPublish(p, delivered === 0 ? ReasonCode.NoMatchingSubscribers : ReasonCode.Success);
  }

  /** PUBACK / PUBREC for an incoming PUBLISH; 3.1.x has no reason codes, so a refusal is acknowledged and dropped. */
  private ackPublish(p: PublishPacket, reasonCode: number): void {
    if (p.qos === 0) return;
    const code = this.version === 5 ? reasonCode : undefined;
    if (p.qos === 1) {
      this.sendAck(4, p.packetId!, code);
    } else {
      if (reasonCode < 0x80) this.session!.incomingQos2.add(p.packetId!);
      this.sendAck(5, p.packetId!, code);
    }
  }

  private onPubrel(p: PubAckLikePacket): void {
    const known = this.session!.incomingQos2.delete(p.packetId);
    this.sendAck(7, p.packetId, known || this.version !== 5 ? undefined : ReasonCode.PacketIdentifierNotFound);
  }

  // ---- acknowledgements of what we sent ----

  private onPublishAck(p: PubAckLikePacket): void {
    const session = this.session!;
    const m = session.inflightMessage(p.packetId);
    if (!m) {
      if (p.type === 5 && this.version === 5) this.sendAck(6, p.packetId, ReasonCode.PacketIdentifierNotFound);
      return;
    }
    // What this acknowledgement may move: PUBACK ends a QoS 1 flow, PUBREC answers a QoS 2 PUBLISH, PUBCOMP
    // ends a QoS 2 flow once PUBREL was sent. Anything else is ignored (a PUBCOMP before PUBREC would lose the
    // message; Mosquitto ignores it too).
    if (p.type === 4 ? m.qos !== 1 : m.qos !== 2 || (p.type === 7 && m.state !== 'pubrel')) return;
    // A message held back on resume that the client acknowledges now had reached it already: not resent.
    if (this.heldResends !== undefined) this.heldResends.ids.delete(p.packetId);
    if (p.type === 5) {
      if ((p.reasonCode ?? 0) >= 0x80) {
        session.releaseInflight(p.packetId);
        this.drainQueue();
        return;
      }
      m.state = 'pubrel';
      this.sendAck(6, p.packetId);
      return;
    }
    session.releaseInflight(p.packetId);
    this.drainQueue();
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE ----

  private onSubscribe(p: SubscribePacket): void {
    const subscriptionId = p.properties?.subscriptionIdentifier;
    const id = Array.isArray(subscriptionId) ? subscriptionId[0] : subscriptionId;
    const codes: number[] = new Array(p.subscriptions.length);
    const accepted: { entry: SubscriptionEntry; key: string; index: number; existed: boolean }[] = [];
    const failCode = (code: number) => (this.version === 5 ? code : 0x80);
    const authorize = this.core.hooks.authorizeSubscribe;
    const verdicts: MaybePromise<boolean | number>[] = [];
    for (let i = 0; i < p.subscriptions.length; i++) {
      const s = p.subscriptions[i]!;
      let filter = s.topicFilter;
      let shareGroup: string | undefined;
      try {
        const shared = parseSharedSubscription(filter);
        if (shared) {
          shareGroup = shared.group;
          filter = shared.filter;
          if (s.noLocal) {
            // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
            this.serverDisconnect(ReasonCode.ProtocolError, 'No Local set on a shared subscription');
            return;
          }
        }
      } catch {
        codes[i] = failCode(ReasonCode.TopicFilterInvalid);
        continue;
      }
      if (!isValidTopicFilter(filter) || hasMoreLevels(filter, this.core.limits.maxTopicLevels)) {
        codes[i] = failCode(ReasonCode.TopicFilterInvalid);
        continue;
      }
      // A 5.0 client was told in CONNACK which features are off: using one is a Protocol Error that ends the
      // connection with the feature's code (3.2.2.3.11-13, [MQTT-4.13.1-1]). 3.1.x clients were told
      // nothing, so they get a failure return code for that filter.
      const unavailable = this.unavailableFeature(shareGroup !== undefined, filter, id !== undefined);
      if (unavailable !== undefined) {
        if (this.version === 5) {
          this.serverDisconnect(unavailable, `SUBSCRIBE uses a feature this server does not offer (${filter})`);
          return;
        }
        codes[i] = 0x80;
        continue;
      }
      const entry: SubscriptionEntry = {
        clientId: this.info!.clientId,
        filter,
        shareGroup,
        qos: Math.min(s.qos, this.core.limits.maxQos) as QoS,
        noLocal: s.noLocal ?? false,
        retainAsPublished: s.retainAsPublished ?? false,
        retainHandling: s.retainHandling ?? 0,
        subscriptionIds: id !== undefined ? [id] : undefined,
      };
      accepted.push({ entry, key: s.topicFilter, index: i, existed: false });
      if (authorize) verdicts.push(callHook(() => authorize(this.info!, { topicFilter: s.topicFilter, qos: s.qos })));
    }
    // answers: the hook's, one per accepted filter; undefined when there is no hook (all granted).
    const apply = (answers: unknown[] | undefined) => {
      const session = this.session!;
      const maxSubscriptions = this.core.limits.maxSubscriptionsPerClient;
      const granted: { entry: SubscriptionEntry; key: string; existed: boolean }[] = [];
      accepted.forEach((a, k) => {
        const answer = answers === undefined ? true : answers[k];
        const grantedQos = answer === true ? a.entry.qos : typeof answer === 'number' && answer >= 0 && answer <= 2 ? answer : undefined;
        if (grantedQos === undefined) {
          codes[a.index] = failCode(this.refusal('authorizeSubscribe', answer));
          return;
        }
        if (maxSubscriptions > 0 && session.subscriptions.size >= maxSubscriptions && !session.subscriptions.has(a.key)) {
          // A new filter beyond the quota; replacing one the client holds is always allowed.
          codes[a.index] = failCode(ReasonCode.QuotaExceeded);
          return;
        }
        a.entry.qos = Math.min(a.entry.qos, grantedQos) as QoS;
        // [MQTT-3.8.4-3] a subscription to the same filter replaces the old one.
        const existed = this.core.router.add(a.entry);
        session.subscriptions.set(a.key, a.entry);
        codes[a.index] = a.entry.qos;
        granted.push({ entry: a.entry, key: a.key, existed });
      });
      this.send({ type: 9, packetId: p.packetId, reasonCodes: codes });
      if (granted.length) {
        // Filters as the client wrote them ($share/<group>/... included), as authorizeSubscribe saw them.
        this.core.events.subscribed?.(this.info!, granted.map((g) => ({ topicFilter: g.key, qos: g.entry.qos })));
      }
      this.sendRetained(granted);
    };
    if (!authorize) {
      apply(undefined);
      return;
    }
    if (!verdicts.some(isPromise)) {
      apply(verdicts);
      return;
    }
    // A hook that fails for one filter fails that filter only.
    const settled = verdicts.map((v) => Promise.resolve(v).catch(() => ReasonCode.UnspecifiedError));
    this.after(Promise.all(settled), apply, () => apply(accepted.map(() => ReasonCode.UnspecifiedError)));
  }

  /** Retained messages for new subscriptions, after the SUBACK ([MQTT-3.3.1-9]: with RETAIN set). */
  private sendRetained(granted: { entry: SubscriptionEntry; existed: boolean }[]): void {
    if (this.core.retained.size === 0) return;
    const now = this.core.clock.now();
    for (const { entry, existed } of granted) {
      // Shared subscriptions get no retained messages; Retain Handling 1 only for a new subscription, 2 never.
      if (entry.shareGroup !== undefined || entry.retainHandling === 2 || (entry.retainHandling === 1 && existed)) continue;
      for (const m of this.core.retained.match(entry.filter, now)) {
        this.deliver(m, Math.min(m.qos, entry.qos) as QoS, true, entry.subscriptionIds);
      }
    }
  }

  /** The reason code of a feature this subscription needs that the server has turned off, if any. */
  private unavailableFeature(shared: boolean, filter: string, withId: boolean): number | undefined {
    const limits = this.core.limits;
    if (shared && !limits.sharedSubscriptionAvailable) return ReasonCode.SharedSubscriptionsNotSupported;
    if (!limits.wildcardSubscriptionAvailable && (filter.includes('+') || filter.includes('#'))) return ReasonCode.WildcardSubscriptionsNotSupported;
    if (withId && !limits.subscriptionIdentifiersAvailable) return ReasonCode.SubscriptionIdentifiersNotSupported;
    return undefined;
  }

  private onUnsubscribe(p: UnsubscribePacket): void {
    const session = this.session!;
    const removed: string[] = [];
    const codes = p.topicFilters.map((key) => {
      const entry = session.subscriptions.get(key);
      if (!entry) return ReasonCode.NoSubscriptionExisted;
      session.subscriptions.delete(key);
      this.core.removeSubscription(entry);
      removed.push(key);
      return ReasonCode.Success;
    });
    this.send({ type: 11, packetId: p.packetId, reasonCodes: this.version === 5 ? codes : undefined });
    // Only the subscriptions that existed (the others were answered 0x11).
    if (removed.length > 0) this.core.events.unsubscribed?.(this.info!, removed);
  }

  // ---- DISCONNECT ----

  private onDisconnect(p: DisconnectPacket): void {
    const expiry = p.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      if (this.connectExpiryWasZero && expiry !== 0) {
        // [MQTT-3.14.2-2] a session that was to end at disconnect cannot be given an expiry now.
        this.serverDisconnect(ReasonCode.ProtocolError, 'Session Expiry Interval set in DISCONNECT after 0 in CONNECT');
        return;
      }
      this.session!.expiryInterval = Math.min(expiry, this.core.limits.maxSessionExpiry);
    }
    const code = p.reasonCode ?? 0;
    // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; 0x04 asks for it to be published.
    this.close({ reason: 'client disconnected', reasonCode: code, will: code === ReasonCode.DisconnectWithWillMessage });
  }

  // ---- output ----

  private send(packet: Packet): void {
    let encoded = encodePacket(packet, this.version);
    if (encoded.length > this.clientMaxPacketSize) {
      // [MQTT-3.1.2-25] never exceed the client's Maximum Packet Size: Reason String and User Properties go first.
      const properties = (packet as { properties?: Properties }).properties;
      if (!properties) return;
      const { reasonString, userProperties, ...rest } = properties;
      void reasonString;
      void userProperties;
      encoded = encodePacket({ ...packet, properties: rest } as Packet, this.version);
      if (encoded.length > this.clientMaxPacketSize) return;
    }
    this.write(encoded);
  }

  /** Writes one encoded packet (counted for the $SYS topics). */
  private write(encoded: Buffer): void {
    const stats = this.core.stats;
    stats.packetsSent++;
    stats.bytesSent += encoded.length;
    this.output.write(encoded);
  }

  /** PUBACK, PUBREC, PUBREL or PUBCOMP without properties: sent for every QoS 1/2 message, so no packet object. */
  private sendAck(type: 4 | 5 | 6 | 7, packetId: number, reasonCode?: number): void {
    const encoded = encodeAck(type, packetId, reasonCode, this.version);
    // [MQTT-3.1.2-25] even a 4-byte packet must fit the client's Maximum Packet Size.
    if (encoded.length <= this.clientMaxPacketSize) this.write(encoded);
  }

  /**
   * Delivers a routed message to this client: QoS 0 right away, QoS 1/2 into the in-flight
   * window or, when it is full (or older messages wait), into the session queue.
   */
  deliver(message: Message, qos: QoS, retain: boolean, ids?: readonly number[], shareKey?: string): void {
    const session = this.session;
    if (this.state !== 'connected' || !session) return;
    if (message.expiresAt !== undefined && message.expiresAt < this.core.clock.now()) return;
    const full = this.outputFull();
    if (qos === 0) {
      // A slow reader loses QoS 0 messages rather than growing the broker's memory.
      if (full) {
        this.core.droppedMessages++;
        this.watchOutput();
      } else {
        this.writePublish(message, 0, retain, ids, undefined, false);
      }
      return;
    }
    if (full || session.queuedCount > 0 || session.inflightCount >= this.sendWindow) {
      const before = session.dropped;
      const now = this.core.clock.now();
      session.enqueue({ message, qos, retain, subscriptionIds: ids, queuedAt: now, shareKey }, this.core.limits, now);
      this.core.droppedMessages += session.dropped - before;
      this.watchOutput();
      return;
    }
    this.sendTracked(message, qos, retain, ids, shareKey);
  }

  private get sendWindow(): number {
    return Math.min(this.clientReceiveMaximum, this.core.limits.maxInflight);
  }

  private sendTracked(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, shareKey?: string): void {
    const session = this.session!;
    const packetId = session.allocatePacketId();
    if (packetId === undefined) return;
    if (this.writePublish(message, qos, retain, ids, packetId, false)) {
      session.addInflight(packetId, message, qos, retain, ids, shareKey);
    }
  }

  /** Moves queued messages into the in-flight window, dropping expired ones. */
  private drainQueue(): void {
    const session = this.session;
    if (!session || this.state !== 'connected') return;
    if (this.heldResends !== undefined && !this.resendHeld(session)) {
      this.watchOutput();
      return;
    }
    if (session.queuedCount === 0) return;
    const now = this.core.clock.now();
    while (session.queuedCount > 0 && session.inflightCount < this.sendWindow && !this.outputFull() && this.state === 'connected') {
      const item = session.takeQueued()!;
      if (this.core.isExpired(item.message, item.queuedAt, now)) continue;
      if (item.qos === 0) this.writePublish(item.message, 0, item.retain, item.subscriptionIds, undefined, false);
      else this.sendTracked(item.message, item.qos, item.retain, item.subscriptionIds, item.shareKey);
    }
    if (session.queuedCount > 0) this.watchOutput();
  }

  /** Encodes (sharing the encoding across subscribers when nothing is per-subscriber) and writes. False when dropped. */
  private writePublish(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, packetId: number | undefined, dup: boolean): boolean {
    const v5 = this.version === 5;
    let encoded: Buffer;
    if (v5 && (ids !== undefined || message.expiresAt !== undefined || this.clientTopicAliasMaximum > 0)) {
      // Something in this PUBLISH is for this subscriber alone: encode it for them.
      const properties: Properties = { ...message.properties };
      if (ids) properties.subscriptionIdentifier = ids.length === 1 ? ids[0] : [...ids];
      if (message.expiresAt !== undefined) {
        properties.messageExpiryInterval = Math.max(0, Math.ceil((message.expiresAt - this.core.clock.now()) / 1000));
      }
      let topic = message.topic;
      let newAlias: number | undefined;
      if (this.clientTopicAliasMaximum > 0) {
        const aliases = (this.outAliases ??= new Map());
        const known = aliases.get(topic);
        if (known !== undefined) {
          properties.topicAlias = known;
          topic = '';
        } else if (aliases.size < this.clientTopicAliasMaximum) {
          newAlias = properties.topicAlias = aliases.size + 1;
        }
      }
      encoded = encodePublish({ type: 3, topic, payload: message.payload, qos, retain, dup, packetId, properties }, 5);
      // The alias is known to the client only once the PUBLISH that set it is really sent.
      if (newAlias !== undefined && encoded.length <= this.clientMaxPacketSize) this.outAliases!.set(message.topic, newAlias);
    } else {
      // One encoding per (version, QoS, retain) for the whole fan-out of the message being published;
      // messages sent later (queued, retained) are encoded afresh, so no encoding outlives its fan-out.
      const cache = this.core.fanOutMessage === message ? this.core.fanOutEncodings : undefined;
      const properties = v5 ? message.properties : undefined;
      if (cache === undefined) {
        // One recipient (the fan-out sets no cache for a single subscriber): encoded with its own packet id.
        encoded = encodePublish({ type: 3, topic: message.topic, payload: message.payload, qos, retain, dup, packetId, properties }, v5 ? 5 : 4);
      } else {
        const shared = (cache[(v5 ? 6 : 0) + qos * 2 + (retain ? 1 : 0)] ??= encodePublish(
          { type: 3, topic: message.topic, payload: message.payload, qos, retain, dup: false, packetId: qos ? 1 : undefined, properties },
          v5 ? 5 : 4,
        ));
        encoded = packetId !== undefined ? withPacketId(shared, packetId, dup) : shared;
      }
    }
    if (encoded.length > this.clientMaxPacketSize) {
      // [MQTT-3.1.2-25] never send a packet larger than the client's Maximum Packet Size: drop it for this client.
      this.core.droppedMessages++;
      return false;
    }
    this.core.stats.publishSent++;
    this.write(encoded);
    return true;
  }

  // ---- closing ----

  /** Another connection took this Client ID over. */
  takeOver(): void {
    this.serverDisconnect(ReasonCode.SessionTakenOver, 'session taken over by another connection');
  }

  /** The server ends the connection: DISCONNECT with a reason code for 5.0 clients, then close; the will is published. */
  serverDisconnect(reasonCode: number, reason: string): void {
    if (this.state === 'closed') return;
    if (this.version === 5 && this.state === 'connected') {
      const properties = this.problemInformation ? { reasonString: reason } : undefined;
      this.send({ type: 14, reasonCode, properties });
    }
    this.close({ reason, reasonCode, will: true });
  }

  private close(request: CloseRequest): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.core.removeChannel(this);
    let willPublished = false;
    if (wasConnected && this.session) {
      this.core.detach(this, this.session);
      if (request.will && this.will) {
        this.core.scheduleWill(this.will, this.info!, this.session);
        willPublished = true;
      }
    }
    this.will = undefined;
    if (!request.refused) {
      const info: DisconnectInfo = { reason: request.reason, reasonCode: request.reasonCode, willPublished };
      this.core.events.clientDisconnected?.(wasConnected ? this.info : undefined, this.transport.remoteAddress, info);
    }
    this.output.close();
  }
}
