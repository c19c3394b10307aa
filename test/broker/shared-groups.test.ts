// SharedGroups (src/broker/shared-groups.ts) through its own API over a real TopicRouter and Sessions with
// recording links: the round-robin, sticky and random strategies, offline members, redistribute() when a
// member leaves, and turn state forgotten when a group empties (MQTT 4.8.2).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import { DEFAULT_LIMITS, type BrokerLimits } from '../../src/broker/options.js';
import { TopicRouter } from '../../src/broker/router.js';
import { Session, type SessionLink } from '../../src/broker/session/session.js';
import { SharedGroups } from '../../src/broker/shared-groups.js';
import { newStats } from '../../src/broker/sys-topics.js';
import type { QoS } from '../../src/protocol/constants.js';

/** Records the payloads written to one client. */
class Link implements SessionLink {
  sendWindow = 10;
  readonly got: string[] = [];
  outputFull = () => false;
  writePublish(message: Message, _qos: QoS, _retain: boolean, _ids: unknown, packetId: number | undefined, dup: boolean): boolean {
    this.got.push(message.payload.toString() + (dup ? '(dup)' : ''));
    return packetId !== 0;
  }
  sendPubrel(): void {}
  watchOutput(): void {}
}

const msg = (name: string, qos: QoS = 1): Message => ({ topic: 't', payload: Buffer.from(name), qos, retain: false });

function setup(strategy: BrokerLimits['sharedSubscriptionStrategy'] = 'round-robin', random: () => number = Math.random, names = ['a', 'b', 'c']) {
  const limits = { ...DEFAULT_LIMITS, sharedSubscriptionStrategy: strategy };
  const context = { limits, clock: { now: () => 1_000 }, stats: newStats() };
  const router = new TopicRouter<Session>();
  const shared = new SharedGroups(router, limits, random);
  const sessions = new Map<string, Session>();
  const links = new Map<string, Link>();
  for (const name of names) {
    const s = new Session(name, 60, context);
    const link = new Link();
    s.resume(link);
    sessions.set(name, s);
    links.set(name, link);
    router.add({ clientId: name, filter: 't', shareGroup: 'g', qos: 2, noLocal: false, retainAsPublished: false, retainHandling: 0 }, s);
  }
  const send = (name: string) => {
    const g = router.groupMembers('g', 't');
    return shared.deliver('g/t', g.members, g.subscribers, msg(name));
  };
  /** Who got each message, in the order sent. */
  const who = (count: number, prefix = 'm') => {
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const name = `${prefix}${i}`;
      send(name);
      for (const [client, link] of links) if (link.got.includes(name)) out.push(client);
    }
    return out;
  };
  return { shared, router, sessions, links, send, who };
}

describe('SharedGroups strategies', () => {
  it('round-robin: each member in turn', () => {
    const { who } = setup();
    assert.deepEqual(who(6), ['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('offline members are skipped', () => {
    const { who, sessions, links } = setup();
    sessions.get('b')!.unlink(links.get('b')!);
    assert.deepEqual(who(4), ['a', 'c', 'a', 'c']);
  });

  it('an all-offline group queues on one member (the first), to be sent when it comes back', () => {
    const { send, sessions, links } = setup();
    for (const [name, s] of sessions) s.unlink(links.get(name)!);
    assert.equal(send('x'), true);
    assert.equal(send('y'), true);
    assert.deepEqual([...sessions.values()].map((s) => s.queuedCount), [2, 0, 0]);
  });

  it('sticky: the same member while it is online, then another one that sticks', () => {
    const { who, sessions, links } = setup('sticky');
    assert.deepEqual(who(3, 'p'), ['a', 'a', 'a']);
    sessions.get('a')!.unlink(links.get('a')!);
    assert.deepEqual(who(3, 'q'), ['b', 'b', 'b']);
    sessions.get('a')!.resume(links.get('a')!);
    assert.deepEqual(who(2, 'r'), ['b', 'b'], 'the first member coming back does not take it back');
  });

  it('random: the injected source picks the member, offline ones skipped onwards', () => {
    const draws = [0.9, 0.0, 0.5, 0.4];
    const { who, sessions, links } = setup('random', () => draws.shift()!);
    assert.deepEqual(who(3, 'r'), ['c', 'a', 'b']);
    sessions.get('b')!.unlink(links.get('b')!);
    assert.deepEqual(who(1, 's'), ['c'], '0.4 of 3 is b, offline: the next one');
  });

  it('deliver() is false when the group has no member but the excluded one', () => {
    const { shared, router } = setup('round-robin', Math.random, ['a']);
    const g = router.groupMembers('g', 't');
    assert.equal(shared.deliver('g/t', g.members, g.subscribers, msg('x'), 'a'), false);
  });
});

describe('SharedGroups when members leave', () => {
  it('redistribute(): in-flight (not PUBREC\'d) and queued messages of a leaving member go to another one', () => {
    const { shared, sessions, links, send } = setup('round-robin', Math.random, ['a', 'b']);
    const a = sessions.get('a')!;
    const la = links.get('a')!;
    la.sendWindow = 2;
    // a gets m0, m2, m4, m6 (round robin); the window holds two, the rest are queued.
    for (let i = 0; i < 8; i++) send(`m${i}`);
    assert.deepEqual(la.got, ['m0', 'm2']);
    assert.equal(a.inflightCount, 2);
    assert.equal(a.queuedCount, 2);
    // m0 acknowledged: m4 goes into the window; then a leaves with m2, m4 in flight and m6 queued.
    a.acknowledge(4, 1, 0);
    assert.deepEqual(la.got, ['m0', 'm2', 'm4']);
    a.unlink(la);
    const lb = links.get('b')!;
    lb.got.length = 0;
    shared.redistribute(a);
    assert.deepEqual(lb.got, ['m2', 'm4', 'm6'], 'in send order, then the queue');
    assert.equal(a.inflightCount, 0);
    assert.equal(a.queuedCount, 0);
  });

  it('redistribute(): a QoS 2 message past PUBREC stays (the receiver has it), and so does everything with no other member', () => {
    const { shared, sessions, links, router } = setup('round-robin', Math.random, ['a', 'b']);
    const a = sessions.get('a')!;
    const g = router.groupMembers('g', 't');
    shared.deliver('g/t', g.members.slice(0, 1), g.subscribers.slice(0, 1), msg('q2', 2));
    assert.equal(a.acknowledge(5, 1, 0), 'done'); // PUBREC: PUBREL sent, state 'pubrel'
    a.unlink(links.get('a')!);
    shared.redistribute(a);
    assert.equal(a.inflightCount, 1);
    assert.deepEqual(links.get('b')!.got, []);

    const lone = setup('round-robin', Math.random, ['x']);
    const x = lone.sessions.get('x')!;
    lone.send('only');
    x.unlink(lone.links.get('x')!);
    lone.send('later');
    lone.shared.redistribute(x);
    assert.equal(x.inflightCount, 1, 'kept with its packet id, resent on return');
    assert.equal(x.queuedCount, 1);
  });

  it('left(): the turn state of a group is forgotten once its last member leaves', () => {
    const { shared, router, who } = setup('sticky', Math.random, ['a', 'b']);
    who(2);
    assert.deepEqual(shared.stateSize, { cursors: 1, sticky: 1 });
    router.remove('a', 't', 'g');
    shared.left('g', 't');
    assert.deepEqual(shared.stateSize, { cursors: 1, sticky: 1 }, 'b is still a member');
    router.remove('b', 't', 'g');
    shared.left('g', 't');
    assert.deepEqual(shared.stateSize, { cursors: 0, sticky: 0 });
  });
});
