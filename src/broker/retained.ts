// Retained messages: the last retained message per topic, found by topic filter.
import { topicMatches } from '../protocol/topic.js';
import type { Message } from './message.js';

export class RetainedStore {
  private readonly byTopic = new Map<string, Message>();

  get size(): number {
    return this.byTopic.size;
  }

  /** Stores `message` (which must own its payload), or deletes the topic's message when the payload is empty. */
  set(message: Message): void {
    if (message.payload.length === 0) this.byTopic.delete(message.topic);
    else this.byTopic.set(message.topic, message);
  }

  get(topic: string): Message | undefined {
    return this.byTopic.get(topic);
  }

  /** Retained messages matching `filter`, dropping the expired ones as it goes. */
  match(filter: string, now: number): Message[] {
    const out: Message[] = [];
    const wildcard = filter.includes('+') || filter.includes('#');
    if (!wildcard) {
      const m = this.byTopic.get(filter);
      if (m && !this.expire(m, now)) out.push(m);
      return out;
    }
    for (const m of this.byTopic.values()) {
      if (topicMatches(filter, m.topic) && !this.expire(m, now)) out.push(m);
    }
    return out;
  }

  private expire(m: Message, now: number): boolean {
    if (m.expiresAt !== undefined && m.expiresAt <= now) {
      this.byTopic.delete(m.topic);
      return true;
    }
    return false;
  }
}
