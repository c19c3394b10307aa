// Dispatch (EMQX's emqx_broker): a published message to every matching local subscription, once per client,
// one member per shared group; retained messages kept. The encodings of one fan-out are shared by every
// subscriber of the same kind and handed down with the message, never kept past it.
import type { QoS } from '../protocol/constants.js';
import type { BrokerEvents, BrokerHooks, ClientInfo } from './hooks.js';
import { detach, type Message } from './message.js';
import type { BrokerLimits } from './options.js';
import type { ResourceGuard } from './overload.js';
import type { MatchResult, RouteMemo, TopicRouter } from './router.js';
import type { FanOutEncodings, Session } from './session/session.js';
import type { SharedGroups } from './shared-groups.js';
import type { RemoteDelivery, RetainedStore, RouteTable, SubscriptionEntry } from './store/types.js';
import { isSysTopic, type BrokerStats } from './sys-topics.js';

/** (version 4 or 5) x QoS x retain slots. */
const ENCODING_SLOTS = 12;

export class Dispatcher {
  /** Encodings of the message being fanned out; a fresh array per nested publish (see publish). */
  private encodings: FanOutEncodings = new Array<Buffer | undefined>(ENCODING_SLOTS).fill(undefined);
  private fanningOut = false;
  private retainedFull = false;
  private retainedBytesFull = false;
  /** A cluster's route table (one with forward()), set by the core; undefined on a single node. */
  routes: RouteTable | undefined;
  /** Shared groups whose turn went to another node, for the message being dispatched (reused). */
  private readonly sharedElsewhere = new Set<string>();

  constructor(
    private readonly router: TopicRouter<Session>,
    private readonly retained: RetainedStore,
    private readonly shared: SharedGroups,
    private readonly limits: BrokerLimits,
    private readonly stats: BrokerStats,
    private readonly events: BrokerEvents,
    private readonly hooks: BrokerHooks = {},
    private readonly guard: Pick<ResourceGuard, 'refuseRetainedGrowth'> = { refuseRetainedGrowth: false },
  ) {}

  /**
   * The authorizeReceive hook's answer for one delivery (an ACL that filters wildcard subscriptions per
   * message). A session whose client is unknown, or a hook that throws, gets nothing: failing closed.
   */
  mayReceive(session: Session, topic: string): boolean {
    const hook = this.hooks.authorizeReceive;
    if (hook === undefined) return true;
    const client = session.client;
    if (client === undefined) return false;
    try {
      return hook(client, topic) === true;
    } catch (err) {
      this.events.warning?.('authorizeReceive hook failed; message not delivered', { clientId: client.clientId, topic, error: String(err) });
      return false;
    }
  }

  /**
   * Routes an application message to every matching subscription, stores it when retained. Returns the
   * number of subscriptions it was delivered or queued to. `payloadOwned`: the caller made the message with
   * its own payload (createMessage's copyPayload), so it is not copied again. `memo`: the publisher's last
   * route (TopicRouter.matchRemembered). `remote`: the message comes from another node of a cluster: local
   * delivery only, as RemoteDelivery says (the node it was published on kept it if retained).
   */
  publish(message: Message, publisher: ClientInfo | undefined, payloadOwned: boolean, memo?: RouteMemo<Session>, remote?: RemoteDelivery): number {
    if (!payloadOwned && (message.qos > 0 || message.retain)) message = detach(message);
    if (message.retain && this.limits.retainAvailable && remote === undefined) this.retain(message);
    const match = memo === undefined ? this.router.match(message.topic) : this.router.matchRemembered(message.topic, memo);
    const entries = match.entries;
    const groups = match.groups;
    const routes = this.routes;
    const elsewhere = routes !== undefined && routes.hasRemoteNodes;
    if (entries.length === 1 && groups.length === 0 && remote === undefined && !elsewhere) {
      // One local subscriber and no other node (pairs, fan-in): what fanOut does for one entry, without its
      // loop and the encodings' bookkeeping, so that V8 inlines the delivery here.
      const count = this.deliverOne(match, message);
      this.events.published?.(message, publisher);
      return count;
    }
    let forwarded = 0;
    let skip: Set<string> | undefined;
    if (remote === undefined && elsewhere) {
      // A publish nested in another's fan-out (a will) must not clear the set the outer one still reads.
      skip = this.fanningOut ? new Set<string>() : this.sharedElsewhere;
      skip.clear();
      forwarded = routes.forward!(message, groups, skip);
    }
    if (remote?.only !== undefined) return this.deliverOnly(match, message, remote.only);
    // Encodings are shared only when there may be more than one recipient; a single subscriber's PUBLISH is
    // encoded with its packet id at once instead of encoded and then copied for the id. A publish inside
    // another one's fan-out (a will, when a subscriber's failed write closes it) gets encodings of its own.
    let encodings: FanOutEncodings | undefined;
    const nested = this.fanningOut;
    if (entries.length + groups.length > 1) {
      encodings = nested ? new Array<Buffer | undefined>(ENCODING_SLOTS).fill(undefined) : this.encodings;
      this.fanningOut = true;
    }
    let count = forwarded;
    try {
      if (remote !== undefined && !remote.plain) {
        // Only shared groups were asked of this node.
      } else if (match.overlapping) count += this.fanOutMerged(match, message, encodings);
      else if (entries.length > 0) count += this.fanOut(match, message, encodings);
      for (const group of groups) {
        if (skip !== undefined && skip.size > 0 && skip.has(group.key)) continue;
        if (remote !== undefined && remote.groups?.has(group.key) !== true) continue;
        if (this.shared.deliver(group.key, group.members, group.subscribers, message, undefined, encodings)) count++;
      }
    } finally {
      // Even if a delivery throws, no encoding of this message may serve the next one.
      if (encodings === this.encodings) {
        encodings.fill(undefined);
        this.fanningOut = nested;
      }
    }
    if (remote === undefined) this.events.published?.(message, publisher);
    return count;
  }

  /**
   * Why the retained store would not keep `message` for its bytes: 'memory' while the overload guard refuses
   * growth, 'bytes' beyond maxRetainedBytes; undefined when it may be kept (maxRetainedMessages is the
   * store's own check, in set()). Only a message that grows the store (a new topic, a larger payload) is
   * refused: clearing or shrinking always works.
   */
  retainRefusal(message: Message): 'memory' | 'bytes' | undefined {
    const length = message.payload.length;
    const maxBytes = this.limits.maxRetainedBytes;
    const memory = this.guard.refuseRetainedGrowth;
    if (length === 0 || (maxBytes === 0 && !memory) || isSysTopic(message.topic)) return undefined;
    const bytes = this.retained.payloadBytes;
    // Far below the cap (the usual case) the message fits whatever it replaces: no lookup of the topic, which
    // for SQLite may read a payload from the file, on every retained PUBLISH.
    if (!memory && (bytes === undefined || bytes + length <= maxBytes)) return undefined;
    const before = this.retained.get(message.topic)?.payload.length ?? -1;
    if (length <= before) return undefined;
    if (memory) return 'memory';
    if (bytes! - (before < 0 ? 0 : before) + length > maxBytes) return 'bytes';
    return undefined;
  }

  /** Counts a retained message not kept (retainRefusal's answer); warns once each time the byte cap fills up. */
  retainRefused(message: Message, refusal: 'memory' | 'bytes'): void {
    this.stats.retainedRefused++;
    if (refusal === 'memory' || this.retainedBytesFull) return; // the guard logs its state itself
    this.retainedBytesFull = true;
    const maxRetainedBytes = this.limits.maxRetainedBytes;
    this.events.warning?.('retained store full (maxRetainedBytes): new or larger retained messages are not kept (5.0 QoS 1/2 refused with 0x97, others delivered)', { maxRetainedBytes, topic: message.topic });
  }

  /** Keeps a retained message, within maxRetainedMessages and maxRetainedBytes (the message is delivered either way). */
  private retain(message: Message): void {
    const refusal = this.retainRefusal(message);
    if (refusal !== undefined) {
      this.retainRefused(message, refusal);
      return;
    }
    // Room made since the last fill-up (expiry, deletions): the next one is warned about again.
    if (this.retainedBytesFull && (this.retained.payloadBytes ?? 0) < this.limits.maxRetainedBytes * 0.9) this.retainedBytesFull = false;
    const limit = this.limits.maxRetainedMessages;
    if (this.retainedFull && this.retained.limitedSize < limit) this.retainedFull = false;
    if (this.retained.set(message, limit)) return;
    this.stats.retainedRefused++;
    if (this.retainedFull) return;
    // Once each time the store fills up, not once per message.
    this.retainedFull = true;
    this.events.warning?.('retained store full: retained messages on new topics are delivered but not kept', { maxRetainedMessages: limit, topic: message.topic });
  }

  /** A message for some sessions only (RemoteDelivery.only): their subscriptions that match, none shared. */
  private deliverOnly(match: MatchResult<Session>, message: Message, only: ReadonlySet<string>): number {
    const entries: SubscriptionEntry[] = [];
    const subscribers: Session[] = [];
    for (let i = 0; i < match.entries.length; i++) {
      const e = match.entries[i]!;
      if (!only.has(e.clientId)) continue;
      entries.push(e);
      subscribers.push(match.subscribers[i]!);
    }
    if (entries.length === 0) return 0;
    return this.fanOutMerged({ ...match, entries, subscribers, groups: [], overlapping: true }, message, undefined);
  }

  /** A match of one entry (no group): fanOut's checks and delivery for it, no shared encodings. */
  private deliverOne(match: MatchResult<Session>, message: Message): number {
    const e = match.entries[0]!;
    const session = match.subscribers[0]!;
    if (e.noLocal && e.clientId === message.from) return 0;
    if (this.hooks.authorizeReceive !== undefined && !this.mayReceive(session, message.topic)) return 0;
    const qos = (message.qos < e.qos ? message.qos : e.qos) as QoS;
    session.deliver(message, qos, e.retainAsPublished && message.retain, e.subscriptionIds, undefined, undefined);
    return 1;
  }

  /** Every entry is another client: one delivery each, in the router's order. */
  private fanOut(match: MatchResult<Session>, message: Message, encodings: FanOutEncodings | undefined): number {
    const entries = match.entries;
    const subscribers = match.subscribers;
    const checked = this.hooks.authorizeReceive !== undefined;
    let count = 0;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.noLocal && e.clientId === message.from) continue;
      if (checked && !this.mayReceive(subscribers[i]!, message.topic)) continue;
      const qos = (message.qos < e.qos ? message.qos : e.qos) as QoS;
      subscribers[i]!.deliver(message, qos, e.retainAsPublished && message.retain, e.subscriptionIds, undefined, encodings);
      count++;
    }
    return count;
  }

  /**
   * Overlapping subscriptions of one client get one copy at the highest QoS, with every subscription
   * identifier (3.3.4), each identifier once.
   */
  private fanOutMerged(match: MatchResult<Session>, message: Message, encodings: FanOutEncodings | undefined): number {
    const merged = new Map<Session, { qos: QoS; retain: boolean; ids: readonly number[] | undefined }>();
    const { entries, subscribers } = match;
    const checked = this.hooks.authorizeReceive !== undefined;
    for (let i = 0; i < entries.length; i++) {
      const e: SubscriptionEntry = entries[i]!;
      if (e.noLocal && e.clientId === message.from) continue;
      if (checked && !this.mayReceive(subscribers[i]!, message.topic)) continue;
      const qos = Math.min(message.qos, e.qos) as QoS;
      const retain = e.retainAsPublished && message.retain;
      const session = subscribers[i]!;
      const m = merged.get(session);
      if (!m) {
        merged.set(session, { qos, retain, ids: e.subscriptionIds });
      } else {
        if (qos > m.qos) m.qos = qos;
        m.retain ||= retain;
        if (e.subscriptionIds) m.ids = m.ids ? union(m.ids, e.subscriptionIds) : e.subscriptionIds;
      }
    }
    for (const [session, m] of merged) session.deliver(message, m.qos, m.retain, m.ids, undefined, encodings);
    return merged.size;
  }
}

/** `a` and the identifiers of `b` it lacks (two subscriptions may carry the same identifier). */
function union(a: readonly number[], b: readonly number[]): readonly number[] {
  let out: number[] | undefined;
  for (const id of b) if (!a.includes(id)) (out ??= [...a]).push(id);
  return out ?? a;
}
