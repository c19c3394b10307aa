// The in-memory retained store (store/types.ts RetainedStore): the last retained message per topic, found by topic filter. Kept in a tree of topic
// levels, so a wildcard subscription visits only the branches its filter can match: with 100k retained
// messages, scanning them all cost 1-5 ms per wildcard SUBSCRIBE (however few matched), and the event loop
// waits that long.
import { addChild, childOf, eachChild, hasChildren, removeChild, type LevelBranch } from './level-tree.js';
import type { Message } from './message.js';
import { isSysTopic } from './sys-topics.js';
import type { RetainedStore } from './store/types.js';

interface RetainedNode extends LevelBranch<RetainedNode> {
  message: Message | undefined;
}

// 100k retained topics of five levels take 406 B of heap each with the single-child form (level-tree.ts),
// 558 B with a Map per level, 255 B in a flat Map of topics (which a wildcard had to scan whole).
const newNode = (): RetainedNode => ({ message: undefined, onlyName: undefined, only: undefined, children: undefined });

export class MemoryRetainedStore implements RetainedStore {
  private readonly root = newNode();
  private count = 0;
  /** Of `count`, the broker's own $SYS topics: they do not take places the limit of set() gives clients. */
  private sysCount = 0;
  /** Payload bytes of the messages that are not $SYS topics (maxRetainedBytes). */
  private bytes = 0;
  /**
   * Retained messages with a Message Expiry, earliest first (a binary heap), so that sweep() deletes them
   * when they expire even if no SUBSCRIBE ever matches them again. A message replaced or deleted meanwhile
   * stays in the heap until its time (then it is skipped), or until a rebuild when they outnumber the rest.
   */
  private expiring: Message[] = [];

  get size(): number {
    return this.count;
  }

  /** Does the topic tree hold any level? False again once every message is deleted (for tests: no level left behind). */
  get holdsLevels(): boolean {
    return hasChildren(this.root);
  }

  /** Retained messages that count against set()'s limit (all but the $SYS topics). */
  get limitedSize(): number {
    return this.count - this.sysCount;
  }

  /** Payload bytes of the retained messages counted in limitedSize. */
  get payloadBytes(): number {
    return this.bytes;
  }

  /**
   * Stores `message` (which must own its payload), or deletes the topic's message when the payload is empty.
   * False when the topic has no message yet and `limit` (0: none) topics already have one: nothing is stored.
   */
  set(message: Message, limit = 0): boolean {
    if (message.payload.length === 0) {
      this.delete(message.topic);
      return true;
    }
    const sys = isSysTopic(message.topic);
    if (limit > 0 && !sys && this.count - this.sysCount >= limit && this.get(message.topic) === undefined) return false;
    let node = this.root;
    for (const level of message.topic.split('/')) node = childOf(node, level) ?? addChild(node, level, newNode());
    if (node.message === undefined) {
      this.count++;
      if (sys) this.sysCount++;
    }
    if (!sys) this.bytes += message.payload.length - (node.message?.payload.length ?? 0);
    node.message = message;
    if (message.expiresAt !== undefined) {
      if (this.expiring.length > 2 * this.count + 1024) this.rebuildExpiring();
      heapPush(this.expiring, message);
    }
    return true;
  }

  /** Deletes the retained messages whose Message Expiry has passed (called from the core's tick). */
  sweep(now: number): void {
    const heap = this.expiring;
    while (heap.length > 0 && heap[0]!.expiresAt! < now) {
      const m = heapPop(heap);
      if (this.get(m.topic) === m) this.delete(m.topic);
    }
  }

  /** Keeps only the heap entries that are still the retained message of their topic. */
  private rebuildExpiring(): void {
    const live = this.expiring.filter((m) => this.get(m.topic) === m);
    this.expiring = [];
    for (const m of live) heapPush(this.expiring, m);
  }

  get(topic: string): Message | undefined {
    let node: RetainedNode | undefined = this.root;
    for (const level of topic.split('/')) {
      node = childOf(node, level);
      if (node === undefined) return undefined;
    }
    return node.message;
  }

  /** Retained messages matching `filter`, dropping the expired ones as it goes. */
  match(filter: string, now: number): Message[] {
    const out: Message[] = [];
    if (this.count === 0) return out;
    const levels = filter.split('/');
    // Level by level (a queue, no recursion: a topic may have tens of thousands of levels), so a parent's
    // message comes before its children's and siblings come in the order they were first retained.
    const nodes: RetainedNode[] = [this.root];
    const depths: number[] = [0];
    for (let head = 0; head < nodes.length; head++) {
      const node = nodes[head]!;
      const depth = depths[head]!;
      if (depth === levels.length) {
        if (node.message !== undefined) out.push(node.message);
        continue;
      }
      const level = levels[depth]!;
      if (level === '#') {
        // 'a/#' matches 'a' too [MQTT-4.7.1-2]; a filter starting with a wildcard matches no '$' topic [MQTT-4.7.2-1].
        if (node.message !== undefined) out.push(node.message);
        collectBelow(node, out, depth === 0);
        continue;
      }
      if (level === '+') {
        eachChild(node, depth === 0, (child) => {
          nodes.push(child);
          depths.push(depth + 1);
        });
      } else {
        const child = childOf(node, level);
        if (child !== undefined) {
          nodes.push(child);
          depths.push(depth + 1);
        }
      }
    }
    // Expired messages found on the way are removed after the walk (removing prunes the tree).
    let kept = 0;
    for (const m of out) {
      if (m.expiresAt !== undefined && m.expiresAt < now) this.delete(m.topic);
      else out[kept++] = m;
    }
    out.length = kept;
    return out;
  }

  private delete(topic: string): void {
    const levels = topic.split('/');
    const path: RetainedNode[] = [this.root];
    for (const level of levels) {
      const child = childOf(path[path.length - 1]!, level);
      if (child === undefined) return;
      path.push(child);
    }
    const node = path[path.length - 1]!;
    if (node.message === undefined) return;
    if (isSysTopic(topic)) this.sysCount--;
    else this.bytes -= node.message.payload.length;
    node.message = undefined;
    this.count--;
    // Levels left with no message and nothing below them go, so topics that come and go do not pile up.
    for (let i = levels.length; i > 0; i--) {
      const n = path[i]!;
      if (n.message !== undefined || hasChildren(n)) break;
      removeChild(path[i - 1]!, levels[i - 1]!);
    }
  }
}

/** Every message below `node` (not its own), skipping top-level '$' topics when `skipDollar`. */
function collectBelow(node: RetainedNode, out: Message[], skipDollar: boolean): void {
  const queue: RetainedNode[] = [];
  const push = (child: RetainedNode): void => {
    queue.push(child);
  };
  eachChild(node, skipDollar, push);
  for (let head = 0; head < queue.length; head++) {
    const n = queue[head]!;
    if (n.message !== undefined) out.push(n.message);
    eachChild(n, false, push);
  }
}

// A binary min-heap of messages by expiresAt (every message in it has one).
function heapPush(heap: Message[], m: Message): void {
  let i = heap.push(m) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]!.expiresAt! <= m.expiresAt!) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = m;
}

function heapPop(heap: Message[]): Message {
  const top = heap[0]!;
  const last = heap.pop()!;
  if (heap.length > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const c = l + 1 < heap.length && heap[l + 1]!.expiresAt! < heap[l]!.expiresAt! ? l + 1 : l;
      if (heap[c]!.expiresAt! >= last.expiresAt!) break;
      heap[i] = heap[c]!;
      i = c;
    }
    heap[i] = last;
  }
  return top;
}
