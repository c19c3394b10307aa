// A persistent session moving between nodes without losing a message (EMQX's takeover 'begin' / 'end'). Node A
// held the session; its client reconnects on node B:
//  1. B claims the Client ID and A is kicked: A closes the connection and stops recording the session (its
//     state in Redis is B's to read), but keeps it subscribed: what it is delivered from then on is captured
//     (`pendings`) instead of queued, since B has not read the session yet.
//  2. B reads the session, serves it (its routes announced), and tells A "restored".
//  3. A hands the pendings on to B, then a marker saying that was all, then for GRACE_MS goes on handing on what
//     still arrives for the session (publishers that had not yet seen B's routes sent it to A only), then drops
//     it and its routes. B holds back what reaches the session directly until the marker (at most
//     PENDINGS_WAIT_MS), so the pendings, older, come first; then the CONNACK goes out.
// Each handed-on message keeps its identity (origin node, epoch, number: forward-codec.ts). B remembers the
// identities it delivered itself from its inbox since the session arrived, so a message that reached B
// directly and was also handed on by A is delivered once.
import type { Message } from '../broker/message.js';
import type { MessageId } from './forward-codec.js';

/** How long the old node goes on handing on what arrives for a moved session, after the new node has it (ms). */
export const GRACE_MS = 3000;
/** How long the old node waits for the new one to say it serves the session before it drops it (ms). */
export const RESTORE_TIMEOUT_MS = 10_000;
/** How long the old node waits for the other nodes' barriers before it hands the pendings on (ms). */
export const SETTLE_MAX_MS = 500;
/** How long the new node holds back a session's direct messages waiting for the old node's pendings (ms). */
export const PENDINGS_WAIT_MS = 2000;
/** Messages kept for one session while the new node reads it; beyond, the oldest are dropped (counted). */
export const MAX_PENDINGS = 100_000;
/** Identities remembered at most while sessions arrive (a bound on memory under a flood). */
const MAX_SEEN = 1_000_000;

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
  /** Hands `message` on to `node` for session `clientId` (Forwarder.relay); false when it could not. */
  relay(node: string, message: Message, id: MessageId, clientId: string): boolean;
  /**
   * Calls `done` once this node has read what other nodes sent it before they heard of the new node's routes
   * (ClusterPlane.barrier): that is then in the pendings.
   */
  settle(done: () => void): void;
  /** Tells `node`, after what was handed on, that nothing more is held for `clientId` (Forwarder.relayEnd). */
  relayEnd(node: string, clientId: string): void;
  /** What the local session `clientId` is delivered goes to `divert` (undefined: its queue again); false: no session. */
  hold(clientId: string, divert: ((message: Message) => void) | undefined): boolean;
  /** Tells `node` that this node serves session `clientId` of claim `epoch` now. */
  sendRestored(node: string, epoch: number, clientId: string): void;
  /** Starts or stops being told the identity of every message delivered from the inbox or sent (Forwarder.observer). */
  observe(on: ((id: MessageId) => void) | undefined): void;
  setTimer(fn: () => void, ms: number): () => void;
  now(): number;
  warn(message: string, context: Record<string, unknown>): void;
}

interface Captured {
  message: Message;
  id: MessageId;
}

interface Leaving {
  /** The node the session goes to, and the claim that took it. */
  to: string;
  epoch: number;
  /** 'holding': captured until the new node has the session; 'handing': handed on at once; 'returning': its client came back here. */
  mode: 'holding' | 'handing' | 'returning';
  captured: Captured[];
  dropped: number;
  cancelTimer: () => void;
  /** The new node said it serves the session; what was sent here meanwhile is being read. */
  settling?: boolean;
}

/** A session that arrived here, its direct messages held back until the old node's pendings are in. */
interface Waiting {
  from: string;
  relayed: Message[];
  held: Message[];
  release: () => void;
}

export interface HandoverStats {
  /** Sessions that left this node and arrived here. */
  left: number;
  arrived: number;
  /** Messages handed on for moved sessions, and those that could not be (buffer full, too many pendings). */
  handedOn: number;
  lost: number;
}

const keyOf = (id: MessageId): string => `${id.origin}\n${id.epoch}\n${id.no}`;

export class Handover {
  private readonly leaving = new Map<string, Leaving>();
  /** Sessions that arrived here lately: the order number of their arrival, and until when it is watched. */
  private readonly arrived = new Map<string, { order: number; until: number }>();
  /** Identities delivered or sent here while sessions arrive, with the order number they came at. */
  private readonly seen = new Map<string, number>();
  private order = 0;
  private cancelPrune: (() => void) | undefined;
  private readonly waiting = new Map<string, Waiting>();
  /** The handed-on message being delivered now (accept() said yes). */
  private relaying: Message | undefined;
  readonly stats: HandoverStats = { left: 0, arrived: 0, handedOn: 0, lost: 0 };

  constructor(private readonly host: HandoverHost) {}

  // ---- the node the session leaves ----

  /** Claim `epoch` on node `to` took session `clientId`: it leaves this node (false: none here). */
  leave(clientId: string, to: string, epoch: number): boolean {
    this.end(clientId);
    const leaving: Leaving = { to, epoch, mode: 'holding', captured: [], dropped: 0, cancelTimer: () => {} };
    if (!this.host.leave(clientId, (message) => this.capture(clientId, leaving, message))) return false;
    this.stats.left++;
    leaving.cancelTimer = this.host.setTimer(() => {
      if (this.leaving.get(clientId) !== leaving) return;
      this.host.warn('cluster: the node that took a session did not say it serves it; its messages received meanwhile are dropped', { clientId, node: to, messages: leaving.captured.length, ms: RESTORE_TIMEOUT_MS });
      this.stats.lost += leaving.captured.length;
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
      leaving.dropped++;
      this.stats.lost++;
    }
    leaving.captured.push({ message, id });
  }

  private handOn(clientId: string, leaving: Leaving, c: Captured): void {
    if (this.host.relay(leaving.to, c.message, c.id, clientId)) this.stats.handedOn++;
    else this.stats.lost++;
  }

  /** Node `from` serves session `clientId` of claim `epoch` now: what was captured goes there, then GRACE_MS more. */
  restored(clientId: string, from: string, epoch: number): void {
    const leaving = this.leaving.get(clientId);
    if (leaving === undefined || leaving.mode !== 'holding' || leaving.to !== from || leaving.epoch !== epoch) {
      this.host.relayEnd(from, clientId); // nothing held here for it: the new node need not wait
      return;
    }
    if (leaving.settling) return;
    leaving.settling = true;
    // Publishers that had not seen the new node's routes yet sent to this node: read that first, so it goes
    // with the pendings, before the end marker (the new node holds back newer messages until then).
    this.host.settle(() => {
      if (this.leaving.get(clientId) === leaving && leaving.mode === 'holding') this.handOver(clientId, from, leaving);
    });
  }

  private handOver(clientId: string, from: string, leaving: Leaving): void {
    leaving.cancelTimer();
    leaving.mode = 'handing';
    if (leaving.dropped > 0) this.host.warn('cluster: more messages arrived for a moving session than are kept; the oldest were dropped', { clientId, dropped: leaving.dropped, kept: MAX_PENDINGS });
    for (const c of leaving.captured) this.handOn(clientId, leaving, c);
    leaving.captured = [];
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
  returned(clientId: string): Message[] {
    const leaving = this.leaving.get(clientId);
    if (leaving === undefined || leaving.mode !== 'returning') return [];
    leaving.cancelTimer();
    this.leaving.delete(clientId);
    for (const c of leaving.captured) this.observed(c.id);
    return leaving.captured.map((c) => c.message);
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

  /** This node serves session `clientId` of claim `epoch` now, read after node `from` let it go. */
  arrivedHere(clientId: string, from: string, epoch: number): void {
    this.stats.arrived++;
    if (this.arrived.size === 0) this.host.observe((id) => this.observed(id));
    this.arrived.set(clientId, { order: ++this.order, until: this.host.now() + GRACE_MS + RESTORE_TIMEOUT_MS });
    this.host.sendRestored(from, epoch, clientId);
    this.cancelPrune ??= this.host.setTimer(() => this.prune(), GRACE_MS);
  }

  /**
   * Holds back what reaches session `clientId` directly until node `from` has handed on what it kept for it
   * (its end marker, relayEnd()) or PENDINGS_WAIT_MS passed; then the handed-on messages go into the session
   * first, then `kept` (returned()), then the held ones, in the order they came. Resolves then.
   */
  pendingsFrom(clientId: string, from: string, kept: Message[] = []): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.get(clientId)?.release();
      let cancel = () => {};
      const waiting: Waiting = {
        from,
        relayed: [],
        held: kept,
        release: () => {
          if (this.waiting.get(clientId) !== waiting) return;
          this.waiting.delete(clientId);
          cancel();
          this.host.hold(clientId, undefined);
          for (const m of waiting.relayed) this.host.deliverTo(clientId, m);
          for (const m of waiting.held) this.host.deliverTo(clientId, m);
          resolve();
        },
      };
      this.waiting.set(clientId, waiting);
      if (!this.host.hold(clientId, (m) => (m === this.relaying ? waiting.relayed : waiting.held).push(m))) {
        this.waiting.delete(clientId);
        for (const m of kept) this.host.deliverTo(clientId, m);
        resolve();
        return;
      }
      cancel = this.host.setTimer(() => waiting.release(), PENDINGS_WAIT_MS);
    });
  }

  /** Node `from` handed on everything it kept for sessions `only`. */
  relayEnd(from: string, only: ReadonlySet<string>): void {
    for (const clientId of only) {
      const waiting = this.waiting.get(clientId);
      if (waiting !== undefined && waiting.from === from) waiting.release();
    }
  }

  private observed(id: MessageId): void {
    if (this.arrived.size === 0) return;
    if (this.seen.size >= MAX_SEEN) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(keyOf(id), ++this.order);
  }

  /** Whether a message handed on for `only` is delivered: not when each of them had it here already. */
  accept(id: MessageId, only: ReadonlySet<string>, message?: Message): boolean {
    if (!this.isNew(id, only)) return false;
    this.relaying = message;
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
  get state(): { leaving: number; arrived: number; seen: number } {
    return { leaving: this.leaving.size, arrived: this.arrived.size, seen: this.seen.size };
  }

  close(): void {
    for (const waiting of [...this.waiting.values()]) waiting.release();
    for (const [clientId, leaving] of [...this.leaving]) this.finish(clientId, leaving);
    this.cancelPrune?.();
    this.cancelPrune = undefined;
    this.arrived.clear();
    this.seen.clear();
    this.host.observe(undefined);
  }
}
