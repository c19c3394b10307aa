// Outgoing QoS 1/2 messages in flight, in slots indexed by packet id. Not a Map: with one or two messages in
// flight at a time (the common case) a Map made and dropped per message, or kept and rehashed every few
// messages, allocates per message, and V8 links a rehashed Map's old table to its successor, so one promoted
// table keeps every later one alive until a major GC. Packet ids are chosen here (allocate) so that each
// in-flight message has a slot of its own.
import type { QoS } from '../../protocol/constants.js';
import type { Message } from '../message.js';
import type { InflightMessage } from '../store/types.js';

/** Slots of a new window (a power of two: a packet id's slot is `id & (length - 1)`). */
const FIRST_WINDOW_SLOTS = 8;

export class InflightWindow {
  private slots: (InflightMessage | undefined)[] | undefined;
  private count = 0;
  /** Messages put in flight so far: the next one's `order`. */
  private sent = 0;
  private nextPacketId = 1;

  get size(): number {
    return this.count;
  }

  /**
   * A packet id not used by an in-flight message ([MQTT-2.2.1-3]) whose slot is free; undefined when all
   * 65535 are in use. The next one after the last given, so ids go on in sequence while acknowledgements
   * come in order.
   */
  allocate(): number | undefined {
    if (this.count >= 65535) return undefined;
    let slots = this.slots;
    if (slots === undefined) slots = this.slots = new Array<InflightMessage | undefined>(FIRST_WINDOW_SLOTS).fill(undefined);
    else if (this.count * 2 >= slots.length && slots.length < 65536) slots = this.grow(slots);
    const mask = slots.length - 1;
    let id = this.nextPacketId;
    // A slot is taken only by an in-flight message, so a free slot's id is not in use; at most half the
    // slots are taken (below 65536 slots), so this ends within a few steps when acknowledgements come in order.
    while (slots[id & mask] !== undefined) id = id === 65535 ? 1 : id + 1;
    this.nextPacketId = id === 65535 ? 1 : id + 1;
    return id;
  }

  /** Twice the slots: two ids in different slots before are in different slots after. */
  private grow(slots: (InflightMessage | undefined)[]): (InflightMessage | undefined)[] {
    const bigger = new Array<InflightMessage | undefined>(slots.length * 2).fill(undefined);
    const mask = bigger.length - 1;
    for (const m of slots) if (m !== undefined) bigger[m.packetId & mask] = m;
    return (this.slots = bigger);
  }

  /** Puts a message in flight under a packet id from allocate(). */
  add(packetId: number, message: Message, qos: QoS, retain: boolean, subscriptionIds: readonly number[] | undefined, shareKey: string | undefined): InflightMessage {
    const slots = this.slots!;
    const m: InflightMessage = { packetId, message, qos, state: 'publish', subscriptionIds, retain, shareKey, order: this.sent++ };
    slots[packetId & (slots.length - 1)] = m;
    this.count++;
    return m;
  }

  /** A message restored from a store, with its packet id and order. */
  restore(m: InflightMessage): void {
    if (this.slots === undefined) this.slots = new Array<InflightMessage | undefined>(FIRST_WINDOW_SLOTS).fill(undefined);
    while (this.count * 2 >= this.slots.length && this.slots.length < 65536) this.grow(this.slots);
    this.slots[m.packetId & (this.slots.length - 1)] = m;
    this.count++;
    if (m.order >= this.sent) this.sent = m.order + 1;
  }

  get(packetId: number): InflightMessage | undefined {
    const slots = this.slots;
    if (slots === undefined) return undefined;
    const m = slots[packetId & (slots.length - 1)];
    return m !== undefined && m.packetId === packetId ? m : undefined;
  }

  /** Ends the flow of `packetId`. A window that empties keeps its slots if there are few of them. */
  release(packetId: number): boolean {
    const slots = this.slots;
    if (slots === undefined) return false;
    const i = packetId & (slots.length - 1);
    const m = slots[i];
    if (m === undefined || m.packetId !== packetId) return false;
    slots[i] = undefined;
    if (--this.count === 0 && slots.length > FIRST_WINDOW_SLOTS) this.slots = undefined;
    return true;
  }

  /** The in-flight messages in the order they were sent (a copy: the caller may release them while walking it). */
  inOrder(): InflightMessage[] {
    if (this.count === 0) return [];
    const out: InflightMessage[] = [];
    for (const m of this.slots!) if (m !== undefined) out.push(m);
    return out.sort((a, b) => a.order - b.order);
  }
}
