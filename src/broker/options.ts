// Broker settings: every limit and default in one place, with the values users expect from
// Mosquitto and EMQX where the spec is silent.
import type { QoS } from '../protocol/constants.js';
import type { UserProperty } from '../protocol/packets.js';

export interface BrokerLimits {
  /** A connection that sends no complete CONNECT within this many ms is closed. */
  connectTimeout: number;
  /** Largest packet accepted from a client (bytes, whole packet). Advertised in the 5.0 CONNACK. */
  maxPacketSize: number;
  /** Longest Client ID accepted, in UTF-8 bytes. */
  maxClientIdLength: number;
  /**
   * Largest Keep Alive granted (s); 65535 = no limit. A 5.0 client asking for more (or 0) gets Server Keep Alive;
   * a 3.1.x client, which cannot be told, is refused with CONNACK 0x02 (as Mosquitto does).
   */
  maxKeepAlive: number;
  /** Expiry of a 3.1.x persistent session (clean session 0) after disconnect, in s. */
  sessionExpiry: number;
  /** Cap on a 5.0 client's Session Expiry Interval, in s. */
  maxSessionExpiry: number;
  /** Messages queued per offline (or flow-controlled) session. */
  maxQueuedMessages: number;
  /**
   * Payload bytes queued per session (as Mosquitto's max_queued_bytes); a message larger than this is never
   * queued. 0 = no limit (maxQueuedMessages still applies).
   */
  maxQueuedBytes: number;
  /** Which message goes when the queue is full. */
  queueOverflow: 'drop-oldest' | 'drop-newest';
  /** Queue QoS 0 messages for offline persistent sessions. */
  queueQos0: boolean;
  /** Expire queued messages after this many s (0 = never, unless the message has a 5.0 Message Expiry). */
  offlineMessageExpiry: number;
  /** Highest QoS granted to subscriptions and accepted on PUBLISH. */
  maxQos: QoS;
  /** Unacknowledged QoS 1/2 messages the broker accepts from a client (5.0 Receive Maximum). */
  receiveMaximum: number;
  /** Unacknowledged QoS 1/2 messages sent to a client at once (also bounded by its Receive Maximum). */
  maxInflight: number;
  /**
   * Most levels in a topic name or filter (`a/b/c` has 3). Every level of a subscription is held by the
   * router, so a client could otherwise make the broker hold tens of thousands per filter. A deeper filter
   * gets SUBACK 0x8F, a deeper PUBLISH PUBACK/PUBREC 0x90 (5.0 QoS 0 and 3.1.x: the connection is closed),
   * a deeper will CONNACK 0x90. EMQX allows 128, Mosquitto 200.
   */
  maxTopicLevels: number;
  /** Subscriptions one client (session) may hold; the next new filter gets SUBACK 0x97 Quota exceeded (3.1.x 0x80). 0 = no limit. */
  maxSubscriptionsPerClient: number;
  /**
   * Topics with a retained message; beyond it a retained message on a new topic is delivered but not kept
   * (replacing or clearing an existing one always works). 0 = no limit.
   */
  maxRetainedMessages: number;
  /**
   * Payload bytes of every retained message together ($SYS topics aside); beyond it a retained message on a
   * new topic, or one larger than the message it replaces, is not kept: a 5.0 QoS 1/2 PUBLISH is refused
   * (PUBACK/PUBREC 0x97 Quota exceeded, not delivered), QoS 0 and 3.1.x are delivered but not kept, as with
   * maxRetainedMessages. 0 = no limit (createBroker() derives a default from the machine: server/machine-limits.ts).
   */
  maxRetainedBytes: number;
  /**
   * Seconds between publications of the $SYS topics (the broker's counters, under Mosquitto's names); 0 = none.
   * While they are on, a client's PUBLISH to `$SYS/...` is refused (5.0: 0x87).
   */
  sysInterval: number;
  /** Topic aliases a 5.0 client may use toward the broker. */
  topicAliasMaximum: number;
  /** Retained messages supported. */
  retainAvailable: boolean;
  /** Connections without username allowed. */
  allowAnonymous: boolean;
  /** How long an async hook (authenticate, authorize*) may take before the broker answers as if it failed (ms). */
  hookTimeout: number;
  /** 5.0 Response Information sent to clients that ask for it (Request Response Information = 1); `%c` is the Client ID; '' = never. */
  responseInformation: string;
  /** Redirect: when set, every 5.0 CONNECT is refused with this Server Reference (0x9C, or 0x9D when serverMoved). */
  serverReference: string;
  serverMoved: boolean;
  /** Subscriptions with wildcards / Subscription Identifiers / shared subscriptions allowed (announced in the 5.0 CONNACK). */
  wildcardSubscriptionAvailable: boolean;
  subscriptionIdentifiersAvailable: boolean;
  sharedSubscriptionAvailable: boolean;
  /** How a shared subscription group picks the member for each message. */
  sharedSubscriptionStrategy: 'round-robin' | 'random' | 'sticky';
  /** Check that a 5.0 payload marked as UTF-8 (Payload Format Indicator 1) is UTF-8; refuse with 0x99 when not. */
  validatePayloadFormat: boolean;
  /** User Properties added to every 5.0 CONNACK. */
  connackUserProperties: UserProperty[];
  /**
   * Output high-water mark per connection (bytes not yet taken by the network). Above it, QoS 0
   * messages to that client are dropped (and counted) and QoS 1/2 wait in its session queue.
   */
  maxOutputBuffer: number;
  /** A client whose output stays above maxOutputBuffer this long (ms) is disconnected; 0 = never. */
  slowConsumerTimeout: number;
}

export const DEFAULT_LIMITS: BrokerLimits = {
  connectTimeout: 10_000,
  maxPacketSize: 1024 * 1024,
  maxClientIdLength: 65535,
  maxKeepAlive: 65535,
  sessionExpiry: 2 * 60 * 60,
  maxSessionExpiry: 0xffffffff,
  maxQueuedMessages: 1000,
  maxQueuedBytes: 0,
  queueOverflow: 'drop-oldest',
  queueQos0: false,
  offlineMessageExpiry: 0,
  maxQos: 2,
  receiveMaximum: 65535,
  maxInflight: 65535,
  maxTopicLevels: 128,
  maxSubscriptionsPerClient: 0,
  maxRetainedMessages: 0,
  maxRetainedBytes: 0,
  sysInterval: 10,
  topicAliasMaximum: 65535,
  retainAvailable: true,
  allowAnonymous: true,
  hookTimeout: 5_000,
  responseInformation: 'response/%c',
  serverReference: '',
  serverMoved: false,
  wildcardSubscriptionAvailable: true,
  subscriptionIdentifiersAvailable: true,
  sharedSubscriptionAvailable: true,
  sharedSubscriptionStrategy: 'round-robin',
  validatePayloadFormat: true,
  connackUserProperties: [],
  maxOutputBuffer: 1024 * 1024,
  slowConsumerTimeout: 60_000,
};
