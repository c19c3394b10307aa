// What reaches a dead node's adopted sessions while its inbox is still being replayed (adoption.ts). For a
// moment a publisher's node may send a message for them both to the dead node's inbox (it has not switched yet)
// and to the adopter directly (it has the adopter's routes, or the adopter already had a route of its own that
// matches): the two copies are read by different readers, in no fixed order between them. So until every node
// has said it sends the dead node nothing more, the adopted sessions' messages are kept here, one copy per
// identity (origin node, its life, its number: forward-codec.ts), and then given to them in each origin's order:
// a node numbers its messages in the order it dispatches them, so each publisher's order is kept [MQTT-4.6.0-5]
// without a duplicate (the same message from both inboxes carries the same identity).
import type { Message } from '../broker/message.js';
import type { MessageId } from './forward-codec.js';

interface Kept {
  id: MessageId;
  message: Message;
}

/** Messages kept per session at most: beyond, the newest are not kept (counted; a flood while a node dies). */
export const MAX_HELD_PER_SESSION = 100_000;

export class AdoptionHold {
  /** clientId → identity key → the message, in the order first seen. */
  private readonly kept = new Map<string, Map<string, Kept>>();
  /** Second copies dropped, and messages not kept (over the bound). */
  duplicates = 0;
  overflow = 0;

  constructor(clientIds: Iterable<string>) {
    for (const clientId of clientIds) this.kept.set(clientId, new Map());
  }

  /** `message` (identity `id`) reached session `clientId`; false when that session is not held here. */
  add(clientId: string, id: MessageId, message: Message): boolean {
    const kept = this.kept.get(clientId);
    if (kept === undefined) return false;
    const key = `${id.origin}\n${id.epoch}\n${id.no}`;
    if (kept.has(key)) this.duplicates++;
    else if (kept.size >= MAX_HELD_PER_SESSION) this.overflow++;
    else kept.set(key, { id: { ...id }, message });
    return true;
  }

  get size(): number {
    let n = 0;
    for (const kept of this.kept.values()) n += kept.size;
    return n;
  }

  /**
   * Each held session with its messages: grouped by origin (and its life) in the order each origin was first
   * seen, and in number order within it. Empties the hold.
   */
  release(): [string, Message[]][] {
    const out: [string, Message[]][] = [];
    for (const [clientId, kept] of this.kept) {
      const byOrigin = new Map<string, Kept[]>();
      for (const k of kept.values()) {
        const o = `${k.id.origin}\n${k.id.epoch}`;
        let list = byOrigin.get(o);
        if (list === undefined) byOrigin.set(o, (list = []));
        list.push(k);
      }
      const messages: Message[] = [];
      for (const list of byOrigin.values()) {
        // uint32 numbers wrap: compare by distance, not value (a life never has 2^31 in flight here).
        list.sort((a, b) => ((a.id.no - b.id.no) | 0));
        for (const k of list) messages.push(k.message);
      }
      out.push([clientId, messages]);
    }
    this.kept.clear();
    return out;
  }
}
