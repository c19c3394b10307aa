// Deadlines of many connections and sessions without a timer each and without a sweep over all of them.
// Each item is filed under the time slot of its deadline; a tick looks only at the slots that have passed.
// An item stays filed under its earliest deadline: when a deadline moves later (a keep alive, with every
// packet the client sends; a session expiry, each time its client leaves again) nothing is filed, and the
// owner, handed the item early, files the new deadline then. So an idle client costs one look per keep-alive
// period, and a client that comes and goes leaves no trail of entries. A cancelled item, or one filed again
// for an earlier time, is taken out of its old slot at once (a search of that slot only), so a closed
// connection is not kept alive until its keep-alive deadline (up to 27 hours).

/** Something with a deadline: the wheel keeps the slot it is filed under (NOT_DUE when none). */
export interface Timed {
  dueSlot: number;
}

export const NOT_DUE = -1;

export class TimerWheel<T extends Timed> {
  private readonly slots = new Map<number, T[]>();
  /** The last slot expire() has handed out. */
  private last: number;

  constructor(
    /** Width of a slot: a deadline is seen at most this much late (plus the caller's tick interval). */
    private readonly slotMs: number,
    now: number,
  ) {
    this.last = Math.floor(now / slotMs);
  }

  /**
   * Files `item` to be handed out by the first expire() at or after `at` (and after any expire() running
   * now), unless it is filed for an earlier time already: then it is handed out then, and its owner files
   * it again.
   */
  schedule(item: T, at: number): void {
    const slot = Math.max(Math.ceil(at / this.slotMs), this.last + 1);
    if (item.dueSlot !== NOT_DUE) {
      if (item.dueSlot <= slot) return;
      this.unfile(item);
    }
    item.dueSlot = slot;
    const list = this.slots.get(slot);
    if (list === undefined) this.slots.set(slot, [item]);
    else list.push(item);
  }

  cancel(item: T): void {
    if (item.dueSlot === NOT_DUE) return;
    this.unfile(item);
    item.dueSlot = NOT_DUE;
  }

  /** Takes `item` out of the slot it is filed under (order within a slot does not matter: swap with the last). */
  private unfile(item: T): void {
    const list = this.slots.get(item.dueSlot);
    if (list === undefined) return;
    const i = list.indexOf(item);
    if (i < 0) return;
    const last = list.pop()!;
    if (i < list.length) list[i] = last;
    if (list.length === 0) this.slots.delete(item.dueSlot);
  }

  /** Hands every item whose slot has passed to `fn`, earliest slot first. `fn` may schedule items again. */
  expire(now: number, fn: (item: T) => void): void {
    const current = Math.floor(now / this.slotMs);
    const from = this.last + 1;
    if (current < from) return;
    // Set first: whatever fn schedules goes into a later slot, never one being handed out.
    this.last = current;
    if (current - from < this.slots.size) {
      for (let slot = from; slot <= current; slot++) this.run(slot, fn);
    } else {
      // The clock jumped further than there are filed slots: visit those rather than every slot between.
      const passed: number[] = [];
      for (const slot of this.slots.keys()) if (slot <= current) passed.push(slot);
      passed.sort((a, b) => a - b);
      for (const slot of passed) this.run(slot, fn);
    }
  }

  /** Filed entries (for tests and metrics). */
  get size(): number {
    let n = 0;
    for (const list of this.slots.values()) n += list.length;
    return n;
  }

  /** Every filed entry (for leak checks). */
  filed(): T[] {
    return [...this.slots.values()].flat();
  }

  private run(slot: number, fn: (item: T) => void): void {
    const list = this.slots.get(slot);
    if (list === undefined) return;
    this.slots.delete(slot);
    for (const item of list) {
      // Cancelled or filed again by an earlier item's fn: this list is already out of the map, so unfile()
      // could not take the entry out of it.
      if (item.dueSlot !== slot) continue;
      item.dueSlot = NOT_DUE;
      fn(item);
    }
  }
}
