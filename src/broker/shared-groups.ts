// Shared subscriptions (MQTT 4.8.2, EMQX's emqx_shared_sub): each message to one member of a group, chosen by
// the configured strategy among connected members; a member that leaves hands its unacknowledged messages on.
import type { QoS } from '../protocol/constants.js';
import type { Message } from './message.js';
import type { BrokerLimits } from './options.js';
import type { TopicRouter } from './router.js';
import type { FanOutEncodings, Session } from './session/session.js';
import type { SubscriptionEntry } from './store/types.js';

export class SharedGroups {
  /** Next member index per group (round robin). */
  private readonly cursor = new Map<string, number>();
  /** Member last chosen per group (sticky strategy). */
  private readonly stickyMember = new Map<string, string>();
  /** Whether a member may receive a topic (the authorizeReceive hook, through the dispatcher). */
  mayReceive: ((session: Session, topic: string) => boolean) | undefined;

  constructor(
    private readonly router: TopicRouter<Session>,
    private readonly limits: Pick<BrokerLimits, 'sharedSubscriptionStrategy'>,
    private readonly random: () => number,
  ) {}

  /** Groups with turn state (round-robin cursor or sticky member), for leak checks. */
  get stateSize(): { cursors: number; sticky: number } {
    return { cursors: this.cursor.size, sticky: this.stickyMember.size };
  }

  /** One member of group `key` gets the message. False when the group has no member left (but `exclude`). */
  deliver(key: string, members: readonly SubscriptionEntry[], subscribers: readonly Session[], message: Message, exclude?: string, encodings?: FanOutEncodings): boolean {
    const i = this.pick(key, members, subscribers, exclude);
    if (i < 0) return false;
    const chosen = members[i]!;
    if (this.mayReceive !== undefined && !this.mayReceive(subscribers[i]!, message.topic)) return false;
    // Retain As Published holds for shared subscriptions too (3.8.3.1 makes no exception).
    subscribers[i]!.deliver(message, Math.min(message.qos, chosen.qos) as QoS, chosen.retainAsPublished && message.retain, chosen.subscriptionIds, key, encodings);
    return true;
  }

  /** The index of the member chosen, -1 for none. */
  private pick(key: string, members: readonly SubscriptionEntry[], subscribers: readonly Session[], exclude: string | undefined): number {
    const n = members.length;
    const usable = (i: number) => members[i]!.clientId !== exclude && subscribers[i]!.link !== undefined;
    const strategy = this.limits.sharedSubscriptionStrategy;
    if (strategy === 'sticky') {
      const last = this.stickyMember.get(key);
      if (last !== undefined) {
        const i = members.findIndex((m) => m.clientId === last);
        if (i >= 0 && usable(i)) return i;
      }
    }
    const start = strategy === 'random' ? Math.floor(this.random() * n) : (this.cursor.get(key) ?? 0) % n;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      if (usable(i)) {
        this.cursor.set(key, (i + 1) % n);
        if (strategy === 'sticky') this.stickyMember.set(key, members[i]!.clientId);
        return i;
      }
    }
    // Nobody connected: an offline persistent member queues it.
    return members.findIndex((m) => m.clientId !== exclude);
  }

  /** A subscription left group `group` on `filter`: a group without members forgets its turn state. */
  left(group: string, filter: string): void {
    if (this.router.groupMembers(group, filter).members.length > 0) return;
    const key = `${group}/${filter}`;
    this.cursor.delete(key);
    this.stickyMember.delete(key);
  }

  /**
   * A member left its groups (disconnected, or its session ended): the messages it got through them and has
   * not acknowledged (in flight, not yet PUBREC'd) or not yet received (queued) go to another member, so none
   * is stuck with a client that is gone. With no other member, a message stays as it was (same packet id,
   * QoS and Subscription Identifiers) and is resent when the member comes back.
   */
  redistribute(session: Session): void {
    if (session.inflightCount === 0 && session.queuedCount === 0) return;
    const others = new Map<string, { members: SubscriptionEntry[]; subscribers: Session[] } | undefined>();
    const otherMembers = (key: string) => {
      if (!others.has(key)) {
        const slash = key.indexOf('/');
        const group = this.router.groupMembers(key.slice(0, slash), key.slice(slash + 1));
        others.set(key, group.members.some((m) => m.clientId !== session.clientId) ? group : undefined);
      }
      return others.get(key);
    };
    const moved: { key: string; message: Message }[] = [];
    for (const m of session.inflightInOrder()) {
      if (m.shareKey !== undefined && m.state === 'publish' && otherMembers(m.shareKey) !== undefined) {
        moved.push({ key: m.shareKey, message: m.message });
        session.releaseInflight(m.packetId);
      }
    }
    if (session.queuedCount > 0) {
      const leaving = session.removeQueuedWhere((item) => item.shareKey !== undefined && otherMembers(item.shareKey) !== undefined);
      for (const q of leaving) moved.push({ key: q.shareKey!, message: q.message });
    }
    for (const { key, message } of moved) {
      const group = otherMembers(key)!;
      this.deliver(key, group.members, group.subscribers, message, session.clientId);
    }
  }
}
