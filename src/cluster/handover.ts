// A persistent session moving between nodes without losing a message (EMQX's takeover 'begin' / 'end'). Node A
// held the session; its client reconnects on node B:
//  1. B claims the Client ID (claiming(): from then on B keeps what A hands on for the session) and A is
//     kicked: A closes the connection and stops recording the session (its state in Redis is B's to read), but
//     keeps it subscribed: what it is delivered from then on is handed on to B's inbox at once (Forwarder.relay,
//     in the same flush as the turn's other writes, so its publisher's PUBACK waits until Redis has it). Nothing
//     acknowledged lives only in A's memory: A may be SIGKILLed at any point of the move.
//  2. B reads the session, serves it (its routes announced), and tells A "restored".
//  3. A reads what other nodes sent it before they saw B's routes (a barrier; handed on like the rest), then
//     sends a marker saying that was all, then for GRACE_MS goes on handing on what still arrives for the
//     session, then drops it and its routes. B holds back what reaches the session directly until the marker,
//     so the handed-on messages, older, come first: those kept since the claim, then those after; then the
//     CONNACK goes out.
//  4. No marker within PENDINGS_WAIT_MS (A stopped or died): B replays for the session what A's inbox holds
//     after A's committed hand-on position for it (handover-replay.ts: messages acknowledged to publishers on other nodes
//     that A never read, or read but never handed on), then releases what it holds.
// Each handed-on message keeps its identity (origin node, epoch, number: forward-codec.ts). B remembers the
// identities it delivered itself from its inbox since the session arrived, and those handed on, so a message
// that reached B both ways (or was also replayed) is delivered once.
import type { Message } from '../broker/message.js';
import { identityKey, type MessageId } from './forward-codec.js';

/** How long the old node goes on handing on what arrives for a moved session, after the new node has it (ms). */
export const GRACE_MS = 3000;
/** How long the old node waits for the new one to say it serves the session before it drops it (ms). */
export const RESTORE_TIMEOUT_MS = 10_000;
/** How long the old node waits for the other nodes' barriers before it sends its end marker (ms). */
export const SETTLE_MAX_MS = 500;
/** How long the new node holds back a session's direct messages waiting for the old node's end marker (ms). */
export const PENDINGS_WAIT_MS = 2000;
/** Messages kept for one session while it moves; beyond, the oldest are dropped (counted). */
export const MAX_PENDINGS = 100_000;
/** Identities remembered at most while sessions arrive (a bound on memory under a flood). */
const MAX_SEEN = 1_000_000;

/** A message with its identity. */
export interface Captured {
  message: Message;
  id: MessageId;
}

/** What the handover needs of its node. */
export interface HandoverHost {
  /** The session leaves this node, its deliveries going to `divert` (registry.leave); false: no session here. */
  leave(clientId: string, divert: (message: Message) => void): boolean;
  /** The session is dropped from this node (registry.movedAway, not clean). */
  drop(clientId: string): void;
  /** Delivers `message` to the local session `clientId` only (core.publishRemote with `only`). */
  deliverTo(clientId: string, message: Message): void;
  /** The identity of a message being dispatched here (Forwarder.identityOf). */
  identityOf(message: Message): MessageId;
  /**
   * Hands `message` on to `node` for session `clientId` (Forwarder.relay: in this turn's flush, which the
   * publishers answered in this turn wait for); false when it could not.
   */
  relay(node: string, message: Message, id: MessageId, clientId: string): boolean;
  /**
   * Calls `done` once this node has read what other nodes sent it before they heard of the new node's routes
   * (ClusterPlane.barrier): that is then handed on.
   */
  settle(done: () => void): void;
  /** Tells `node`, after what was handed on, that nothing more is held for `clientId` (Forwarder.relayEnd). */
  relayEnd(node: string, clientId: string): void;
  /** Whether a session `clientId` is here (served, or leaving). */
  has(clientId: string): boolean;
  /** What the local session `clientId` is delivered goes to `divert` (undefined: its queue again); false: no session. */
  hold(clientId: string, divert: ((message: Message) => void) | undefined): boolean;
  /** Tells `node` that this node serves session `clientId` of claim `epoch` now. */
  sendRestored(node: string, epoch: number, clientId: string): void;
  /** Starts or stops being told the identity of every message delivered from the inbox or sent (Forwarder.observer). */
  observe(on: ((id: MessageId) => void) | undefined): void;
  /**
   * What `node`'s inbox holds after its committed hand-on position for session `clientId` that is for it (it may have
   * died or stopped without reading or handing it on: handover-replay.ts), in order; [] when unknown.
   */
  replay(node: string, clientId: string): Promise<Captured[]>;
  setTimer(fn: () => void, ms: number): () => void;
  now(): number;
  warn(message: string, context: Record<string, unknown>): void;
}

interface Leaving {
  /** The node the session goes to, and the claim that took it. */
  to: string;
  epoch: number;
  /** 'handing': handed on at once; 'returning': its client came back here, kept for returned(). */
  mode: 'handing' | 'returning';
  /** The new node said it serves the session: what was sent here before is being read (settling), then the end marker went (ended). */
  settling: boolean;
  ended: boolean;
  /** Handed on so far; kept here while 'returning'. */
  handed: number;
  captured: Captured[];
  cancelTimer: () => void;
}

/** Handed-on messages for a session claimed here from node `from`, kept until it is served here (pendingsFrom()). */
interface Early {
  from: string;
  kept: Captured[];
  dropped: number;
  cancel: () => void;
}

/** A session that arrived here, its direct messages held back until the old node's end marker. */
interface Waiting {
  from: string;
  relayed: Captured[];
  held: Captured[];
  /** Identities of the handed-on messages: a direct copy of one is dropped. */
  keys: Set<string>;
  /**
   * The held messages (direct, or kept here) by identity, while their handed-on copy has not come: when it
   * comes, the held one moves to where it comes among the handed-on ones (moveToRelayed()).
   */
  heldIds: Map<string, Captured>;
  /** Held messages moved among the handed-on ones: skipped where they were held. */
  moved: Set<Captured>;
  /** Released (or being released, after a replay): nothing more is held. */
  done: boolean;
  cancel: () => void;
  resolve: () => void;
}

export interface HandoverStats {
  /** Sessions that left this node and arrived here. */
  left: number;
  arrived: number;
  /** Messages handed on for moved sessions, and those that could not be (buffer full, too many kept). */
  handedOn: number;
  lost: number;
  /** Messages of an old node's inbox replayed here for a session whose old node sent no end marker. */
  replayed: number;
}

const keyOf = identityKey;

/** What a waiting session gets at its release, in order: the handed-on messages, then those held back. */
function inOrder(waiting: Waiting): Captured[] {
  if (waiting.moved.size === 0) return [...waiting.relayed, ...waiting.held];
  return [...waiting.relayed, ...waiting.held.filter((c) => !waiting.moved.has(c))];
}

export class Handover {
  private readonly leaving = new Map<string, Leaving>();
  /** Sessions that arrived here lately: the order number of their arrival, and until when it is watched. */
  private readonly arrived = new Map<string, { order: number; until: number }>();
  /** Identities delivered or sent here while sessions arrive, with the order number they came at. */
  private readonly seen = new Map<string, number>();
  private order = 0;
  private cancelPrune: (() => void) | undefined;
  private readonly early = new Map<string, Early>();
  private readonly waiting = new Map<string, Waiting>();
  /** The handed-on message being delivered now (accept() said yes), and its identity. */
  private relaying: Message | undefined;
  private relayingId: MessageId | undefined;
  /** The identities of the messages returned() gave. */
  private readonly returnedIds = new WeakMap<Message, MessageId>();
  readonly stats: HandoverStats = { left: 0, arrived: 0, handedOn: 0, lost: 0, replayed: 0 };

  constructor(private readonly host: HandoverHost) {}

  // ---- the node the session leaves ----

  /** Claim `epoch` on node `to` took session `clientId`: it leaves this node (false: none here). */
  leave(clientId: string, to: string, epoch: number): boolean {
    this.end(clientId);
    const leaving: Leaving = { to, epoch, mode: 'handing', settling: false, ended: false, handed: 0, captured: [], cancelTimer: () => {} };
    // What this node kept or held for the session while it arrived here goes on first (older).
    const before = this.takeArriving(clientId);
    if (!this.host.leave(clientId, (message) => this.capture(clientId, leaving, message))) {
      for (const c of before) this.handOn(clientId, leaving, c);
      return false;
    }
    this.stats.left++;
    for (const c of before) this.handOn(clientId, leaving, c);
    leaving.cancelTimer = this.host.setTimer(() => {
      if (this.leaving.get(clientId) !== leaving) return;
      this.host.warn('cluster: the node that took a session did not say it serves it; the session is dropped here', { clientId, node: to, handedOn: leaving.handed, ms: RESTORE_TIMEOUT_MS });
      this.finish(clientId, leaving);
    }, RESTORE_TIMEOUT_MS);
    this.leaving.set(clientId, leaving);
    return true;
  }

  /** Whether session `clientId` is leaving this node now. */
  isLeaving(clientId: string): boolean {
    return this.leaving.has(clientId);
  }

  private capture(clientId: string, leaving: Leaving, message: Message): void {
    const id = this.host.identityOf(message);
    if (leaving.mode === 'handing') {
      this.handOn(clientId, leaving, { message, id });
      return;
    }
    if (leaving.captured.length >= MAX_PENDINGS) {
      leaving.captured.shift();
      this.stats.lost++;
    }
    leaving.captured.push({ message, id: { ...id } });
  }

  private handOn(clientId: string, leaving: Leaving, c: Captured): void {
    leaving.handed++;
    if (this.host.relay(leaving.to, c.message, c.id, clientId)) this.stats.handedOn++;
    else this.stats.lost++;
  }

  /** Node `from` serves session `clientId` of claim `epoch` now: once what was sent here before is read, the end marker; then GRACE_MS more. */
  restored(clientId: string, from: string, epoch: number): void {
    const leaving = this.leaving.get(clientId);
    if (leaving === undefined || leaving.mode !== 'handing' || leaving.ended || leaving.to !== from || leaving.epoch !== epoch) {
      this.host.relayEnd(from, clientId); // nothing more to hand on for it: the new node need not wait
      return;
    }
    if (leaving.settling) return;
    leaving.settling = true;
    // Publishers that had not seen the new node's routes yet sent to this node: read (and hand on) that first,
    // before the end marker (the new node holds back newer messages until then).
    this.host.settle(() => {
      if (this.leaving.get(clientId) === leaving && leaving.mode === 'handing') this.ended(clientId, from, leaving);
    });
  }

  private ended(clientId: string, from: string, leaving: Leaving): void {
    leaving.cancelTimer();
    leaving.ended = true;
    this.host.relayEnd(from, clientId);
    leaving.cancelTimer = this.host.setTimer(() => {
      if (this.leaving.get(clientId) === leaving) this.finish(clientId, leaving);
    }, GRACE_MS);
  }

  /**
   * The client of a session leaving this node connects here again before it is gone: nothing more goes to
   * the other node; what arrives for the session is kept until returned() gives it to the session read back.
   */
  comeBack(clientId: string): boolean {
    const leaving = this.leaving.get(clientId);
    if (leaving === undefined) return false;
    leaving.cancelTimer();
    leaving.mode = 'returning';
    // Should the read fail (Redis away), the copy here does not keep collecting for ever.
    leaving.cancelTimer = this.host.setTimer(() => {
      if (this.leaving.get(clientId) !== leaving) return;
      this.stats.lost += leaving.captured.length;
      this.finish(clientId, leaving);
    }, RESTORE_TIMEOUT_MS);
    return true;
  }

  /**
   * The session that came back is served here again (or is gone): what was kept for it, to be delivered to it
   * (after what the other node hands back, which is older: pendingsFrom()). Remembered as delivered here after
   * its arrival, so the same messages handed back by the other node are dropped.
   */
  returned(clientId: string, stored?: ReadonlySet<string>): Message[] {
    const leaving = this.leaving.get(clientId);
    if (leaving === undefined || leaving.mode !== 'returning') return [];
    leaving.cancelTimer();
    this.leaving.delete(clientId);
    // A copy kept here of a message the session read back holds already (the other node queued it): dropped.
    const kept = stored === undefined || stored.size === 0 ? leaving.captured : leaving.captured.filter((c) => !stored.has(keyOf(c.id)));
    for (const c of kept) {
      this.observed(c.id);
      this.returnedIds.set(c.message, c.id);
    }
    return kept.map((c) => c.message);
  }

  private finish(clientId: string, leaving: Leaving): void {
    leaving.cancelTimer();
    this.leaving.delete(clientId);
    this.host.drop(clientId);
  }

  /** A session leaving here is dropped at once (it is taken again, or the node closes). */
  private end(clientId: string): void {
    const leaving = this.leaving.get(clientId);
    if (leaving !== undefined) this.finish(clientId, leaving);
  }

  // ---- the node the session arrives at ----

  /**
   * This node claimed session `clientId` from node `from` (not clean): from now on what `from` hands on for it
   * is kept until it is served here (pendingsFrom()), at most RESTORE_TIMEOUT_MS; a copy of the session leaving
   * this node (its client came back) does not get it either: it would hand it back. That copy goes on handing
   * on until the session is read (comeBack()): what it gets meanwhile may also be in what `from` commits.
   */
  claiming(clientId: string, from: string): void {
    const early = this.early.get(clientId);
    if (early !== undefined) early.from = from;
    else this.keep(clientId, from);
  }

  private keep(clientId: string, from: string): Early {
    const early: Early = { from, kept: [], dropped: 0, cancel: () => {} };
    early.cancel = this.host.setTimer(() => {
      if (this.early.get(clientId) !== early) return;
      this.early.delete(clientId);
      if (early.kept.length > 0) this.host.warn('cluster: messages handed on for a session claimed here that was never served here are dropped', { clientId, node: early.from, messages: early.kept.length });
      this.stats.lost += early.kept.length;
    }, RESTORE_TIMEOUT_MS);
    this.early.set(clientId, early);
    return early;
  }

  /** What was kept for session `clientId` since its claim and is not to be delivered here (it went elsewhere, or started clean). */
  forget(clientId: string): void {
    const early = this.early.get(clientId);
    if (early === undefined) return;
    early.cancel();
    this.early.delete(clientId);
  }

  /** This node serves session `clientId` of claim `epoch` now, read after node `from` let it go. */
  arrivedHere(clientId: string, from: string, epoch: number): void {
    this.stats.arrived++;
    if (this.arrived.size === 0) this.host.observe((id) => this.observed(id));
    this.arrived.set(clientId, { order: ++this.order, until: this.host.now() + GRACE_MS + RESTORE_TIMEOUT_MS });
    this.host.sendRestored(from, epoch, clientId);
    this.cancelPrune ??= this.host.setTimer(() => this.prune(), GRACE_MS);
  }

  /**
   * Holds back what reaches session `clientId` directly until node `from` has handed on everything (its end
   * marker, relayEnd()) or `waitMs` passed (0: `from` is dead; then what its inbox still holds for the session is
   * replayed); then the session gets the handed-on messages first (kept since the claim, then later ones), the
   * replayed ones, then `kept` (returned()), then the held ones, in the order they came. Resolves then.
   */
  pendingsFrom(clientId: string, from: string, kept: Message[] = [], waitMs = PENDINGS_WAIT_MS): Promise<void> {
    return new Promise((resolve) => {
      const previous = this.waiting.get(clientId);
      if (previous !== undefined) this.release(clientId, previous);
      const early = this.early.get(clientId);
      this.forget(clientId);
      const waiting: Waiting = { from, relayed: [], held: [], keys: new Set(), heldIds: new Map(), moved: new Set(), done: false, cancel: () => {}, resolve };
      for (const c of early?.kept ?? []) {
        waiting.relayed.push(c);
        waiting.keys.add(keyOf(c.id));
      }
      // A session that came back: the other node may have handed on copies of what was kept here meanwhile.
      for (const m of kept) {
        const id = this.returnedIds.get(m) ?? { ...this.host.identityOf(m) };
        if (waiting.keys.has(keyOf(id))) continue;
        waiting.keys.add(keyOf(id));
        this.holdBack(waiting, { message: m, id });
      }
      if (early !== undefined && early.dropped > 0) this.host.warn('cluster: more messages were handed on for a moving session than are kept; the oldest were dropped', { clientId, node: early.from, dropped: early.dropped, kept: MAX_PENDINGS });
      this.waiting.set(clientId, waiting);
      const held = this.host.hold(clientId, (m) => {
        if (m === this.relaying) {
          waiting.relayed.push({ message: m, id: { ...this.relayingId! } });
          return;
        }
        const id = { ...this.host.identityOf(m) };
        if (!waiting.keys.has(keyOf(id))) this.holdBack(waiting, { message: m, id });
      });
      if (!held) {
        this.waiting.delete(clientId);
        for (const c of inOrder(waiting)) this.host.deliverTo(clientId, c.message);
        resolve();
        return;
      }
      waiting.cancel = this.host.setTimer(() => void this.replayThenRelease(clientId, waiting), waitMs);
    });
  }

  /** The old node sent no end marker in time: what its inbox holds for the session goes first, then the rest. */
  private async replayThenRelease(clientId: string, waiting: Waiting): Promise<void> {
    if (this.waiting.get(clientId) !== waiting || waiting.done) return;
    let replayed: Captured[] = [];
    try {
      replayed = await this.host.replay(waiting.from, clientId);
    } catch (err) {
      this.host.warn('cluster: the inbox of the node a session left was not replayed for it', { clientId, node: waiting.from, error: String(err) });
    }
    if (this.waiting.get(clientId) !== waiting || waiting.done) return;
    const only = new Set([clientId]);
    // In the inbox's order: the replayed messages, and the held copies of those the session had directly.
    const ordered: Captured[] = [];
    let fresh = 0;
    for (const c of replayed) {
      const key = keyOf(c.id);
      if (this.moveToRelayed(waiting, key, ordered)) continue;
      if (waiting.keys.has(key) || !this.isNew(c.id, only)) continue;
      waiting.keys.add(key);
      this.observed(c.id);
      ordered.push(c);
      fresh++;
    }
    this.stats.replayed += fresh;
    if (fresh > 0) this.host.warn('cluster: the node a session left sent no end marker in time; what its inbox held for the session was replayed', { clientId, node: waiting.from, replayed: fresh, ms: PENDINGS_WAIT_MS });
    waiting.relayed.push(...ordered);
    this.release(clientId, waiting);
  }

  private release(clientId: string, waiting: Waiting): void {
    if (this.waiting.get(clientId) !== waiting) return;
    this.waiting.delete(clientId);
    waiting.done = true;
    waiting.cancel();
    this.host.hold(clientId, undefined);
    for (const c of inOrder(waiting)) this.host.deliverTo(clientId, c.message);
    waiting.resolve();
  }

  /** Holds back `c` (it reached the session directly, or was kept here) until the release. */
  private holdBack(waiting: Waiting, c: Captured): void {
    waiting.held.push(c);
    waiting.heldIds.set(keyOf(c.id), c);
  }

  /**
   * A message handed on (or replayed) whose copy reached the session first and is held: the held copy goes to
   * `to` now, where the handed-on one comes. The other node hands on in its publishers' order, and a direct copy
   * can overtake its handed-on one while the handed-on copies of older messages are still on their way (both
   * nodes have the session's routes while it moves back and forth): left where it was held, it would come after
   * them. True when it was so.
   */
  private moveToRelayed(waiting: Waiting, key: string, to: Captured[]): boolean {
    const held = waiting.heldIds.get(key);
    if (held === undefined) return false;
    waiting.heldIds.delete(key);
    waiting.moved.add(held);
    to.push(held);
    return true;
  }

  /**
   * What this node kept or held for session `clientId` while it arrived, taken (in order) because the session
   * leaves again: it is handed on to the next node instead.
   */
  private takeArriving(clientId: string): Captured[] {
    const out: Captured[] = [];
    const early = this.early.get(clientId);
    if (early !== undefined) {
      out.push(...early.kept);
      this.forget(clientId);
    }
    const waiting = this.waiting.get(clientId);
    if (waiting !== undefined) {
      this.waiting.delete(clientId);
      waiting.done = true;
      waiting.cancel();
      this.host.hold(clientId, undefined);
      out.push(...inOrder(waiting));
      waiting.resolve();
    }
    return out;
  }

  /** Node `from` handed on everything it kept for sessions `only`. */
  relayEnd(from: string, only: ReadonlySet<string>): void {
    for (const clientId of only) {
      const waiting = this.waiting.get(clientId);
      if (waiting !== undefined && waiting.from === from && !waiting.done) this.release(clientId, waiting);
    }
  }

  private observed(id: MessageId): void {
    if (this.arrived.size === 0) return;
    if (this.seen.size >= MAX_SEEN) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(keyOf(id), ++this.order);
  }

  /**
   * A message handed on by node `from` for sessions `only`: 'kept' when it is for a session claimed here and
   * not yet served (delivered with it later); false when each of them had it here already; true: deliver now.
   */
  accept(id: MessageId, only: ReadonlySet<string>, message?: Message, from?: string): boolean | 'kept' {
    if (message !== undefined && only.size === 1) {
      const clientId = only.values().next().value!;
      // Kept for a session claimed here and not served yet, or (the claim not known yet) not here at all.
      let early = this.early.get(clientId);
      if (early === undefined && from !== undefined && !this.waiting.has(clientId) && !this.host.has(clientId)) early = this.keep(clientId, from);
      if (early !== undefined) {
        if (early.kept.length >= MAX_PENDINGS) {
          early.kept.shift();
          early.dropped++;
          this.stats.lost++;
        }
        early.kept.push({ message, id: { ...id } });
        return 'kept';
      }
      const waiting = from === undefined ? undefined : this.waiting.get(clientId);
      if (waiting !== undefined && waiting.from === from) {
        const key = keyOf(id);
        waiting.keys.add(key);
        if (this.moveToRelayed(waiting, key, waiting.relayed)) return false;
      }
    }
    if (!this.isNew(id, only)) return false;
    this.relaying = message;
    this.relayingId = { ...id };
    return true;
  }

  private isNew(id: MessageId, only: ReadonlySet<string>): boolean {
    const at = this.seen.get(keyOf(id));
    if (at === undefined) return true;
    for (const clientId of only) {
      const arrival = this.arrived.get(clientId);
      if (arrival === undefined || at < arrival.order) return true;
    }
    return false;
  }

  private prune(): void {
    this.cancelPrune = undefined;
    const now = this.host.now();
    for (const [clientId, a] of this.arrived) if (a.until <= now) this.arrived.delete(clientId);
    if (this.arrived.size === 0) {
      this.seen.clear();
      this.host.observe(undefined);
      return;
    }
    const oldest = Math.min(...[...this.arrived.values()].map((a) => a.order));
    for (const [key, at] of this.seen) {
      if (at >= oldest) break; // in order of arrival
      this.seen.delete(key);
    }
    this.cancelPrune = this.host.setTimer(() => this.prune(), GRACE_MS);
  }

  /** Sessions leaving now and sessions watched after arriving (inspection and tests). */
  get state(): { leaving: number; arrived: number; seen: number; kept: number } {
    return { leaving: this.leaving.size, arrived: this.arrived.size, seen: this.seen.size, kept: this.early.size };
  }

  close(): void {
    for (const [clientId, waiting] of [...this.waiting]) this.release(clientId, waiting);
    for (const [clientId, leaving] of [...this.leaving]) this.finish(clientId, leaving);
    for (const clientId of [...this.early.keys()]) this.forget(clientId);
    this.cancelPrune?.();
    this.cancelPrune = undefined;
    this.arrived.clear();
    this.seen.clear();
    this.host.observe(undefined);
  }
}
