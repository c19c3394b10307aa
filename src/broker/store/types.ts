// The broker's state behind interfaces (undici's Dispatcher idea: one interface, many strategies). The rules
// (channel, session, dispatch) change state only through the entry points named here, so a durable store or
// a cluster records every change in one place. The in-memory implementations (memory.ts, ../retained.ts)
// are what a single broker without storage uses; SQLite and Redis stores implement the same interfaces.
import type { QoS } from '../../protocol/constants.js';
import type { WillMessage } from '../../protocol/packets.js';
import type { ClientInfo } from '../hooks.js';
import type { Message } from '../message.js';

/** One subscription of a session, as the client made it. */
export interface SubscriptionEntry {
  clientId: string;
  /** The filter as subscribed, without a `$share/group/` prefix. */
  filter: string;
  /** Shared subscription group, or undefined for an ordinary subscription. */
  shareGroup?: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  /** The 5.0 Subscription Identifier as a one-element list (shared, never changed), so delivery needs no conversion. */
  subscriptionIds?: readonly number[];
}

/** A message waiting to be sent to a session (client offline, or its in-flight window full). */
export interface QueuedMessage {
  message: Message;
  qos: QoS;
  retain: boolean;
  subscriptionIds?: readonly number[];
  /** When it was queued, for offlineMessageExpiry. */
  queuedAt: number;
  /** Shared subscription (group/filter) it came through, so it can go to another member if this one leaves. */
  shareKey?: string;
}

/** An outgoing QoS 1/2 message the client has not finished acknowledging. */
export interface InflightMessage {
  packetId: number;
  message: Message;
  qos: QoS;
  /** 'publish': waiting for PUBACK / PUBREC. 'pubrel': PUBREC came, PUBREL sent, waiting for PUBCOMP. */
  state: 'publish' | 'pubrel';
  /** Subscription identifiers and retain flag chosen for this subscriber. */
  subscriptionIds?: readonly number[];
  retain: boolean;
  shareKey: string | undefined;
  /** Send order within the session: a resumed session resends in this order ([MQTT-4.4.0-1]). */
  readonly order: number;
}

/**
 * Every change to one persistent session, in the order it happens. A store records them and commits in
 * groups; the in-memory store has no journal at all (a session without one skips the calls), so sessions
 * that are not kept (expiry 0) and brokers without storage pay nothing.
 */
export interface SessionJournal {
  /** The session was made or resumed with this expiry (expiresAt undefined while connected), by `client`. */
  expiry(expiryInterval: number, expiresAt: number | undefined, client?: ClientInfo): void;
  /** The session ended: everything of it goes. */
  deleted(): void;
  subscribed(key: string, entry: SubscriptionEntry): void;
  unsubscribed(key: string): void;
  queued(item: QueuedMessage): void;
  /** Out of the queue: sent, dropped or expired. */
  dequeued(item: QueuedMessage): void;
  /** Put in flight, or moved a step on (PUBREL sent). */
  inflight(m: InflightMessage): void;
  /** The outgoing flow of `packetId` ended (acknowledged, refused, or handed to another member). */
  released(packetId: number): void;
  /** An incoming QoS 2 packet id was received (PUBREC sent), or released (PUBREL came). */
  incomingQos2(packetId: number, held: boolean): void;
  /** The will of the live connection (or of a connection that ended and waits out its Will Delay), or none. */
  will(will: StoredWill | undefined): void;
  /**
   * Runs `done` once the changes recorded so far are committed. A QoS 2 PUBLISH or a PUBREL goes out only
   * then, so a restart never sends again what the client was told is done ([MQTT-4.3.3-2], exactly once).
   */
  afterCommit?(done: () => void): void;
  /**
   * The session went on to another node of a cluster (its client connected there): nothing more is recorded
   * here and the store forgets it locally, while what it stored stays for that node.
   */
  movedAway?(): void;
}

/** A will as stored: the CONNECT's will, who it is from, and when it is due once its connection ended. */
export interface StoredWill {
  will: WillMessage;
  client: ClientInfo;
  /** undefined while its connection is live. */
  publishAt: number | undefined;
}

/** A session as a store gives it back at start-up. */
export interface StoredSession {
  clientId: string;
  expiryInterval: number;
  expiresAt: number | undefined;
  client: ClientInfo | undefined;
  subscriptions: [key: string, entry: SubscriptionEntry][];
  queue: QueuedMessage[];
  inflight: InflightMessage[];
  incomingQos2: number[];
  will: StoredWill | undefined;
}

export interface SessionStore {
  /** True when changes are written somewhere (acknowledgements then wait for afterCommit). */
  readonly durable: boolean;
  /** Sessions kept from an earlier run (the in-memory store: none). */
  load(): Iterable<StoredSession>;
  /** Where the changes of session `clientId` are recorded; undefined when nothing needs recording. */
  journal(clientId: string): SessionJournal | undefined;
  /**
   * Runs `done` once every change recorded so far is committed (at once when not durable); `failed` instead
   * when that commit failed (disk full, I/O error): what waited on it must not be acknowledged.
   */
  afterCommit(done: () => void, failed?: (error: Error) => void): void;
  /**
   * The will of a live connection whose session is not kept (no journal), or none once the connection ended:
   * a durable store publishes it after a restart if the process died with the connection open.
   */
  liveWill?(clientId: string, will: StoredWill | undefined): void;
  close(): void;
}

/** Retained messages (MQTT 3.3.1.3): one per topic, matched by filter. */
export interface RetainedStore {
  /** Topics with a retained message. */
  readonly size: number;
  /** Of size, those that count against the limit of set() (all but the broker's own $SYS topics). */
  readonly limitedSize: number;
  /**
   * Payload bytes of the messages counted in limitedSize, when the store keeps the sum (maxRetainedBytes is
   * enforced only then).
   */
  readonly payloadBytes?: number;
  /**
   * Stores `message` (which must own its payload), or deletes the topic's message when the payload is empty.
   * False when the topic has none yet and `limit` (0: none) topics already have one: nothing is stored.
   */
  set(message: Message, limit?: number): boolean;
  get(topic: string): Message | undefined;
  /** Retained messages matching `filter`, expired ones dropped as it goes. */
  match(filter: string, now: number): Message[];
  /** Deletes the messages whose Message Expiry has passed. */
  sweep(now: number): void;
}

/**
 * Which nodes want a topic (EMQX's emqx_router), apart from which local sessions get it (the subscription
 * index, ../router.ts). The core tells it when a filter gains its first or loses its last local subscriber;
 * a cluster shares that with the other nodes. A single broker has no other node.
 */
export interface RouteTable {
  /** True when some other node may want messages: only then is remoteNodes() asked, per message. */
  readonly hasRemoteNodes: boolean;
  addRoute(filter: string): void;
  deleteRoute(filter: string): void;
  /** The other nodes with a filter matching `topic`. */
  remoteNodes(topic: string): readonly string[];
  /**
   * Optional (a cluster): a subscription was added (new, not replaced) or removed, shared ones included, so
   * the table can announce per share group what addRoute/deleteRoute tell per filter.
   */
  subscriptionChanged?(entry: SubscriptionEntry, added: boolean): void;
  /**
   * Optional (a cluster): hands a message published on this node to the other nodes that want it (asked per
   * message, only while hasRemoteNodes). `localGroups`: the matching local shared groups; the keys of those
   * whose turn went to another node are put in `skip` (empty on entry). Returns the number of nodes it went to.
   */
  forward?(message: Message, localGroups: readonly { key: string }[], skip: Set<string>): number;
  /** Optional: a read-only view of the cluster for operators (broker.inspect.cluster()). */
  describe?(): unknown;
}

/**
 * A message another node forwarded here: delivered to local subscribers only (never forwarded again), to
 * ordinary subscriptions when `plain`, and to the local members of the shared groups in `groups` (keys
 * `group/filter`), which the publishing node chose this node for.
 */
export interface RemoteDelivery {
  plain: boolean;
  groups: ReadonlySet<string> | undefined;
  /**
   * Delivered to these local sessions only (by Client ID), each as its subscriptions say, and to no shared
   * group: a message one node hands another for sessions that moved there, or replays for sessions it took over.
   */
  only?: ReadonlySet<string>;
}
