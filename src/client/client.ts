// MqttClient: the public facade. One logical MQTT session (ClientSession, sans I/O) over
// successive network connections (ConnectAttempt, Connection), with the timers (keep alive,
// reconnect, operation timeouts), the events and the messages() inbox around it.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type tls from 'node:tls';
import { Buffer } from 'node:buffer';
import { PacketType, isValidTopicFilter, isValidTopicName } from '../protocol/index.js';
import type { ConnackPacket, DisconnectPacket, Packet, Properties, ProtocolVersion, PublishPacket, Subscription } from '../protocol/index.js';
import { ConnectAttempt } from './connect-attempt.js';
import type { Connection, ConnectionObserver } from './connection.js';
import { ClientClosedError, ConnectionError, MqttClientError, TimeoutError, formatDuration, isFinalDisconnect, isPermanentConnackFailure } from './errors.js';
import { toClientError } from './failures.js';
import { Inbox } from './inbox.js';
import type { ClientOptions, ResolvedOptions } from './options.js';
import { resolveOptions, toBuffer } from './options.js';
import { ReconnectBackoff, UNSTABLE_AFTER } from './reconnect.js';
import { ClientSession } from './session.js';
import type { Deferred, Request } from './session.js';
import { timerDelay } from './session-state.js';
import type {
  ConnackInfo,
  Message,
  MqttClientEvents,
  OperationOptions,
  PublishOptions,
  PublishResult,
  SubscribeOptions,
  SubscribeResult,
  UnsubscribeOptions,
  UnsubscribeResult,
} from './types.js';
import type { BrokerAddress } from './url.js';

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
  private readonly session: ClientSession;
  private readonly inbox = new Inbox();
  private readonly backoff: ReconnectBackoff;
  private readonly observer: ConnectionObserver;
  private drainWaiters: (() => void)[] = [];
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempt: ConnectAttempt<ConnackInfo> | undefined;
  private closeError: MqttClientError | undefined;

  constructor(urlOrOptions?: string | ClientOptions, options?: ClientOptions) {
    super();
    this.options = resolveOptions(urlOrOptions, options);
    this.protocolVersion = this.options.protocolVersion;
    this.clientId = this.options.clientId;
    const o = this.options;
    this.session = new ClientSession(
      {
        protocolVersion: o.protocolVersion,
        queueWhileOffline: o.queueWhileOffline,
        offlineQueueMax: o.offlineQueueMax,
        resubscribe: o.resubscribe,
        keepAlive: o.keepAlive,
        pingInterval: o.pingInterval,
        ...(o.pingTimeout !== undefined ? { pingTimeout: o.pingTimeout } : {}),
        topicAliasMaximum: o.properties?.topicAliasMaximum ?? 0,
        clock: Date.now,
      },
      {
        send: (packet, bytes) => this.conn?.send(packet, bytes),
        message: (message) => this.deliver(message),
        fail: (error) => this.conn?.lose(error),
        idle: () => this.resolveDrain(),
        error: (error) => this.emitError(error),
      },
    );
    this.backoff = new ReconnectBackoff(o.reconnect === false ? {} : o.reconnect);
    this.observer = {
      sent: (packet) => {
        if (this.listenerCount('packetsend') > 0) this.emit('packetsend', packet);
      },
      received: (packet) => {
        if (this.listenerCount('packetreceive') > 0) this.emit('packetreceive', packet);
      },
    };
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
    return this.session.pending;
  }

  /** Messages kept for the first messages() call: they arrived while nobody consumed them (diagnostics). */
  get unclaimed(): readonly Message[] {
    return this.inbox.unclaimed;
  }

  /** The error the client closed with, if any. */
  get error(): MqttClientError | undefined {
    return this.closeError;
  }

  /**
   * Opens the first connection. Rejects (and closes the client) when it fails: a failed first
   * connection is reported, not retried. Later losses are retried when `reconnect` is on.
   */
  async connect(): Promise<ConnackInfo> {
    if (this.state !== 'new') throw new MqttClientError('INVALID_ARGUMENT', 'connect() was already called');
    this.state = 'connecting';
    try {
      return await this.startAttempt();
    } catch (err) {
      const error = toClientError(err, this.options.address);
      this.finalize(error);
      throw error;
    }
  }

  // ---------------------------------------------------------------- connections

  private startAttempt(): Promise<ConnackInfo> {
    const attempt = new ConnectAttempt<ConnackInfo>({
      options: this.options,
      clientId: this.clientId,
      observer: this.observer,
      onDisconnect: (packet) => this.emit('disconnect', packet),
      onAccepted: (conn, connack) => this.accepted(conn, connack),
    });
    this.attempt = attempt;
    const forget = () => {
      if (this.attempt === attempt) this.attempt = undefined;
    };
    attempt.done.then(forget, forget);
    return attempt.done;
  }

  private accepted(conn: Connection, packet: ConnackPacket): ConnackInfo {
    const props = packet.properties ?? {};
    if (props.assignedClientIdentifier) this.clientId = props.assignedClientIdentifier;
    conn.handlers = { packet: (p) => this.handlePacket(p), lost: (err) => this.connectionLost(conn, err) };
    this.conn = conn;
    this.state = 'connected';
    const keepAlive = this.session.connected(packet);
    const info: ConnackInfo = { sessionPresent: packet.sessionPresent, reasonCode: packet.reasonCode, properties: props, clientId: this.clientId, keepAlive };
    this.connack = info;
    this.backoff.connected(Date.now(), keepAlive);
    if (this.conn === conn) this.scheduleKeepAlive(this.session.tick());
    queueMicrotask(() => this.emit('connect', info));
    return info;
  }

  private handlePacket(packet: Packet): void {
    if (packet.type === PacketType.DISCONNECT) this.emit('disconnect', packet);
    this.session.receive(packet);
  }

  private deliver(message: Message): void {
    this.emit('message', message);
    // an application that listens to 'message' gets them there, and the inbox keeps nothing for later
    this.inbox.deliver(message, this.listenerCount('message') > 0);
  }

  private scheduleKeepAlive(at: number): void {
    clearTimeout(this.keepAliveTimer);
    if (!Number.isFinite(at)) return;
    this.keepAliveTimer = setTimeout(() => this.scheduleKeepAlive(this.session.tick()), timerDelay(at - Date.now()));
    this.keepAliveTimer.unref?.();
  }

  private connectionLost(conn: Connection, err: MqttClientError): void {
    // only the current connection's loss matters: an earlier one was handled when it went
    if (this.conn !== conn) return;
    this.conn = undefined;
    clearTimeout(this.keepAliveTimer);
    this.session.disconnected(err);
    if (this.state === 'closing' || this.state === 'closed') return;
    const shortLived = this.backoff.lost(Date.now());
    this.state = 'waiting';
    this.emit('offline', err);
    this.emitError(err);
    if (this.closed || (this.state as string) === 'closing') return;
    if (this.options.reconnect === false || isFinalDisconnect(err)) {
      this.finalize(err);
      return;
    }
    if (shortLived === UNSTABLE_AFTER) this.emit('warning', unstableConnectionError(shortLived, this.clientId, this.protocolVersion, err));
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    // an 'offline' / 'error' / 'warning' listener may have closed the client meanwhile
    if (this.options.reconnect === false || this.state === 'closing' || this.state === 'closed') return;
    const { attempt, delay } = this.backoff.next();
    this.state = 'waiting';
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state !== 'waiting') return;
      this.state = 'connecting';
      this.emit('reconnect', { attempt, delay });
      this.startAttempt().then(noop, (e) => {
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
    clearTimeout(this.keepAliveTimer);
    this.attempt?.abort();
    this.conn?.close();
    this.conn = undefined;
    const reason = new ClientClosedError('CLIENT_CLOSED', err ? `the client closed: ${err.message}` : 'the client was closed', { cause: err });
    this.session.close(reason);
    this.inbox.close();
    this.resolveDrain();
    this.emit('close', err);
  }

  private resolveDrain(): void {
    if (this.drainWaiters.length === 0) return;
    if (this.state !== 'closed' && this.session.busy) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  // ---------------------------------------------------------------- requests

  /**
   * Runs a request to its acknowledgement, or until `signal` aborts or `timeout` (default: the
   * client's operationTimeout) passes: then its promise rejects and the session gives it up.
   */
  private operation<T>(what: OperationName, options: OperationOptions, make: (deferred: Deferred<T>) => Request): Promise<T> {
    const timeout = options.timeout ?? this.options.operationTimeout;
    const { signal } = options;
    // the common case stays as cheap as a bare promise: no timer, no listener, no wrapper
    if (timeout === undefined && signal === undefined) return new Promise<T>((resolve, reject) => this.enqueue(make({ resolve, reject })));
    if (timeout !== undefined && !(typeof timeout === 'number' && timeout > 0)) {
      return Promise.reject(new MqttClientError('INVALID_ARGUMENT', `timeout must be a positive number of milliseconds (got ${String(timeout)})`));
    }
    if (signal?.aborted) return Promise.reject(abortedError(describe(what), signal));
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let item: Request | undefined = undefined;
      const onAbort = () => {
        if (item) this.session.cancel(item, abortedError(describe(what), signal!));
      };
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      item = make({
        resolve: (value) => {
          done();
          resolve(value);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
      const request = item;
      if (timeout !== undefined) {
        timer = setTimeout(() => this.session.cancel(request, operationTimeoutError(describe(what), timeout, this.connected)), timerDelay(timeout));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.enqueue(request);
    });
  }

  private enqueue(item: Request): void {
    if (this.state === 'closed' || this.state === 'closing') {
      item.deferred.reject(new ClientClosedError('CLIENT_CLOSED', 'the client is closed'));
      return;
    }
    this.session.request(item);
  }

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
    const packet: PublishPacket = { type: PacketType.PUBLISH, topic, payload: toBuffer(payload), qos, retain: options.retain ?? false, dup: false };
    if (properties) packet.properties = properties;
    // the limits of the last CONNACK now; a queued message is checked again when it is sent
    const refused = this.connack ? this.session.publishLimitError(packet) : undefined;
    if (refused) return Promise.reject(refused);
    return this.operation<PublishResult>(['publish to', topic], options, (deferred) => ({ kind: 'publish', packet, deferred, offline: false }));
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
    const properties = options.properties && this.protocolVersion === 5 ? { properties: options.properties } : {};
    return this.operation<SubscribeResult[]>(['subscribe to', list[0]!.topicFilter], options, (deferred) => ({
      kind: 'subscribe',
      subscriptions: list,
      ...properties,
      deferred,
    }));
  }

  /** Unsubscribes; the second argument is UNSUBSCRIBE's properties (5.0) or `{ properties, signal, timeout }`. */
  unsubscribe(filters: string | string[], options: UnsubscribeOptions | Properties = {}): Promise<UnsubscribeResult[]> {
    const list = Array.isArray(filters) ? filters : [filters];
    if (list.length === 0) return Promise.reject(new MqttClientError('INVALID_ARGUMENT', 'unsubscribe needs at least one topic filter'));
    const bad = list.find((f) => !isValidTopicFilter(f));
    if (bad !== undefined) return Promise.reject(new MqttClientError('INVALID_ARGUMENT', `invalid topic filter "${bad}"`));
    const o: UnsubscribeOptions = 'signal' in options || 'timeout' in options || 'properties' in options ? (options as UnsubscribeOptions) : { properties: options as Properties };
    const properties = o.properties && this.protocolVersion === 5 ? { properties: o.properties } : {};
    return this.operation<UnsubscribeResult[]>(['unsubscribe from', list[0]!], o, (deferred) => ({ kind: 'unsubscribe', topicFilters: list, ...properties, deferred }));
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
    if (this.state !== 'connected') return Promise.reject(new ClientClosedError('OFFLINE', 'not connected'));
    return new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (timeout !== undefined) {
        // the waiter stays queued, so a late PINGRESP is not taken for the answer to a later PINGREQ
        const error = new TimeoutError('PING_TIMEOUT', `no PINGRESP from the server within ${formatDuration(timeout)}`, {
          hint: 'the server or the network stalled, or the server does not answer PINGREQ',
        });
        timer = setTimeout(() => reject(error), timerDelay(timeout));
      }
      const sentAt = performance.now();
      this.session.ping({
        resolve: () => {
          clearTimeout(timer);
          resolve(performance.now() - sentAt);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
  }

  /**
   * Received messages as an async iterable, optionally only those matching `filter`. The
   * iteration ends when the client closes. Messages that arrived while nobody consumed them (no
   * iterator, no 'message' listener; the latest 1000) go to the first messages() call; after that, each iterator gets what arrives
   * from the moment it was created.
   */
  messages(filter?: string): AsyncIterableIterator<Message> {
    return this.inbox.messages(filter);
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
    if (this.state === 'connected' && this.session.busy) {
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
    this.attempt?.abort();
    const conn = this.conn;
    if (conn && !conn.lost) {
      const packet: DisconnectPacket = { type: PacketType.DISCONNECT };
      if (this.protocolVersion === 5) {
        if (options.reasonCode !== undefined) packet.reasonCode = options.reasonCode;
        if (expiry !== undefined) packet.properties = { sessionExpiryInterval: expiry };
      }
      conn.send(packet);
      clearTimeout(this.keepAliveTimer);
      await conn.closeGracefully(timerDelay(Math.min(timeout, 1000)));
    }
    this.finalize(undefined);
  }

  /** Closes the connection without DISCONNECT (the server publishes the will) and the client; bytes already written still go out. */
  destroy(error?: MqttClientError): void {
    this.finalize(error);
  }

  /** For tests and diagnostics: drop the current connection as if the network failed. */
  simulateNetworkFailure(): void {
    this.conn?.lose(new ConnectionError('ECONNRESET', 'tcp', 'connection dropped (simulated network failure)'));
  }
}

/** What an operation is about, made into words only when it fails: ['publish to', 'a/b']. */
type OperationName = [verb: string, topic: string];

function describe([verb, topic]: OperationName): string {
  return `${verb} "${topic}"`;
}

function abortedError(what: string, signal: AbortSignal): MqttClientError {
  const reason: unknown = signal.reason;
  const why = reason instanceof Error && reason.name !== 'AbortError' ? `: ${reason.message}` : '';
  return new MqttClientError('ABORTED', `${what} aborted${why}`, {
    hint: 'a message already sent may still be delivered: the server was not told to drop it',
    cause: reason,
  });
}

function operationTimeoutError(what: string, ms: number, connected: boolean): TimeoutError {
  return new TimeoutError('OPERATION_TIMEOUT', `${what} timed out after ${formatDuration(ms)}${connected ? ' without an acknowledgement' : ' (not connected)'}`, {
    hint: connected
      ? 'the server did not acknowledge it in time; a message already sent may still be delivered'
      : 'the client is offline and reconnecting: is the broker reachable?',
  });
}

/** The warning for connections the server keeps closing soon after accepting them, in words. */
function unstableConnectionError(times: number, clientId: string, version: ProtocolVersion, last: MqttClientError): MqttClientError {
  const takeover = version === 5 ? '' : ` (MQTT ${version === 4 ? '3.1.1' : '3.1'} servers close a connection without a word when another client connects with the same Client ID)`;
  return new MqttClientError(
    'UNSTABLE_CONNECTION',
    `the server closed the connection ${times} times in a row soon after accepting it (last: ${last.message}): another client using Client ID "${clientId}" may be taking the session over${takeover}, or a proxy or an overloaded server drops connections; reconnecting with growing delays`,
    { hint: 'give every client its own Client ID, and check the server log for why it closes the connection', cause: last },
  );
}

