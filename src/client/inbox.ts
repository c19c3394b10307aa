// Inbox: received messages on their way to the application's messages() iterators, with the few
// that arrive before anyone iterates kept for the first one.
import { topicMatches } from '../protocol/index.js';
import type { Message } from './types.js';

/** Messages kept for the first messages() call while nobody iterates. */
export const UNCLAIMED_LIMIT = 1000;

export class Inbox {
  private readonly iterators = new Set<MessageQueue>();
  /** Messages that arrived while no messages() iterator existed (bounded). */
  unclaimed: Message[] = [];
  private closed = false;

  /**
   * A message for every iterator whose filter matches it. Nobody consuming yet (e.g. a message
   * right after SUBACK, before the for-await starts; `listened` false: no 'message' listener
   * either): keep the latest few for the first messages() call instead of losing them.
   */
  deliver(message: Message, listened: boolean): void {
    if (this.iterators.size === 0 && !listened) {
      this.unclaimed.push(message);
      if (this.unclaimed.length > UNCLAIMED_LIMIT) this.unclaimed.shift();
    }
    for (const it of this.iterators) it.offer(message);
  }

  /** A new iterator, optionally only for messages matching `filter`; it gets the unclaimed messages. */
  messages(filter?: string): AsyncIterableIterator<Message> {
    const queue = new MessageQueue(filter, () => this.iterators.delete(queue));
    for (const m of this.unclaimed) queue.offer(m);
    this.unclaimed = [];
    if (this.closed) queue.finish();
    else this.iterators.add(queue);
    return queue;
  }

  /** The client closed: every iteration ends. */
  close(): void {
    this.closed = true;
    for (const it of this.iterators) it.finish();
    this.iterators.clear();
  }
}

/** Buffered async iterator of messages for one messages() call. */
class MessageQueue implements AsyncIterableIterator<Message> {
  private readonly buffer: Message[] = [];
  /** next() calls waiting for a message, answered in the order they were made (the async iterator contract). */
  private readonly waiting: ((r: IteratorResult<Message>) => void)[] = [];
  private done = false;

  constructor(
    private readonly filter: string | undefined,
    private readonly onReturn: () => void,
  ) {}

  offer(message: Message): void {
    if (this.done) return;
    if (this.filter !== undefined && !topicMatches(this.filter, message.topic)) return;
    const w = this.waiting.shift();
    if (w) w({ value: message, done: false });
    else this.buffer.push(message);
  }

  finish(): void {
    this.done = true;
    for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<Message>> {
    const m = this.buffer.shift();
    if (m) return Promise.resolve({ value: m, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiting.push(resolve);
    });
  }

  return(): Promise<IteratorResult<Message>> {
    this.buffer.length = 0;
    this.finish();
    this.onReturn();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    return this;
  }
}
