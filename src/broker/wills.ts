// Will messages (MQTT 3.1.2.5, 3.1.3.2.2): published when a connection ends without a normal DISCONNECT,
// at once or after the Will Delay Interval, unless the session is taken up again first.
import type { WillMessage } from '../protocol/packets.js';
import { callHook, isPromise, type BrokerEvents, type BrokerHooks, type ClientInfo } from './hooks.js';
import { createMessage, type Message } from './message.js';
import type { SessionJournal, StoredWill } from './store/types.js';

/** A will waiting for its Will Delay Interval (5.0) to pass. */
interface PendingWill {
  /** The will as the CONNECT gave it: its message is made when it is published (its expiry starts then). */
  will: WillMessage;
  client: ClientInfo;
  publishAt: number;
}

export class Wills {
  private readonly pending = new Map<string, PendingWill>();
  /** The journal of a session a store keeps, so a waiting will survives a restart (set by the core). */
  journalOf: (clientId: string) => SessionJournal | undefined = () => undefined;

  constructor(
    private readonly clock: { now(): number },
    private readonly hooks: BrokerHooks,
    private readonly events: BrokerEvents,
    private readonly publish: (message: Message, client: ClientInfo) => void,
  ) {}

  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * The will of a connection that ended without a normal DISCONNECT. With a Will Delay and a session that
   * lives on, it waits for the delay or the end of the session, whichever is first (3.1.3.2.2).
   */
  schedule(will: WillMessage, client: ClientInfo, sessionLives: boolean): void {
    const delay = will.properties?.willDelayInterval ?? 0;
    if (delay > 0 && sessionLives) {
      const pending = { will, client, publishAt: this.clock.now() + delay * 1000 };
      this.pending.set(client.clientId, pending);
      this.journalOf(client.clientId)?.will(pending);
    } else {
      this.journalOf(client.clientId)?.will(undefined);
      this.publishNow(will, client);
    }
  }

  /**
   * A will a store kept: its connection was open (or its delay running) when the broker stopped. Published
   * at `publishAt`, unless the client comes back first; at once when its session did not outlive the downtime.
   */
  restore(clientId: string, stored: StoredWill, sessionLives: boolean): void {
    const publishAt = sessionLives ? (stored.publishAt ?? this.clock.now()) : this.clock.now();
    this.pending.set(clientId, { will: stored.will, client: stored.client, publishAt });
    if (sessionLives) this.journalOf(clientId)?.will({ will: stored.will, client: stored.client, publishAt });
  }

  /**
   * A new connection took the session up: [MQTT-3.1.3-9] a will still inside its delay is not sent. One
   * whose delay has already run out (its tick has not come yet) is published: the client came too late.
   */
  resumed(clientId: string): void {
    const will = this.pending.get(clientId);
    if (will === undefined) return;
    this.pending.delete(clientId);
    this.journalOf(clientId)?.will(undefined);
    if (will.publishAt <= this.clock.now()) this.publishNow(will.will, will.client);
  }

  /** The session ended: a will still waiting for its delay is published now. */
  sessionEnded(clientId: string): void {
    const will = this.pending.get(clientId);
    if (will === undefined) return;
    this.pending.delete(clientId);
    this.publishNow(will.will, will.client);
  }

  /** Publishes the wills whose delay has passed. */
  due(now: number): void {
    if (this.pending.size === 0) return;
    for (const [clientId, will] of this.pending) {
      if (will.publishAt <= now) {
        this.pending.delete(clientId);
        this.journalOf(clientId)?.will(undefined);
        this.publishNow(will.will, will.client);
      }
    }
  }

  /**
   * Shutdown: the wills of the live connections `live` and every will waiting for its delay, now (the
   * sessions they wait on end with the broker, as in Mosquitto). Resolves once each is published or refused,
   * so the caller can keep every connection open until then: every subscriber connected at shutdown sees the
   * same wills, whatever order the connections were made in.
   */
  publishAll(live: readonly [WillMessage, ClientInfo][]): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const [will, client] of live) {
      const wait = this.publishNow(will, client);
      if (wait !== undefined) waits.push(wait);
    }
    for (const [clientId, will] of this.pending) {
      this.pending.delete(clientId);
      this.journalOf(clientId)?.will(undefined);
      const wait = this.publishNow(will.will, will.client);
      if (wait !== undefined) waits.push(wait);
    }
    return Promise.all(waits).then(() => undefined);
  }

  /**
   * Publishes a will now: its Message Expiry Interval is its lifetime from this moment (3.1.3.2.4). A hook
   * that answers synchronously is acted on at once; a promise is returned while an answer is awaited.
   */
  private publishNow(will: WillMessage, client: ClientInfo): Promise<void> | undefined {
    const message = createMessage(will, client.clientId, this.clock.now());
    const authorize = this.hooks.authorizePublish;
    if (!authorize) {
      this.publish(message, client);
      return undefined;
    }
    const decide = (ok: unknown) => {
      if (ok === true) this.publish(message, client);
      else this.events.warning?.('will message not authorized; dropped', { clientId: client.clientId, topic: message.topic });
    };
    const failed = () => this.events.warning?.('authorizePublish hook failed for a will; dropped', { clientId: client.clientId });
    const answer = callHook(() => authorize(client, message));
    if (!isPromise(answer)) {
      decide(answer);
      return undefined;
    }
    return answer.then(decide, failed);
  }
}
