// Session (src/broker/session/session.ts) through its own API, with a fake SessionLink that records what is
// written: delivery online and offline, the in-flight window and the queue, resume, acknowledgements,
// retained streaming and expiry. No I/O, a fake clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import { DEFAULT_LIMITS, type BrokerLimits } from '../../src/broker/options.js';
import { Session, type SessionLink } from '../../src/broker/session/session.js';
import { newStats } from '../../src/broker/sys-topics.js';
import type { QoS } from '../../src/protocol/constants.js';

interface Written {
  kind: 'publish' | 'pubrel';
  name?: string;
  qos?: QoS;
  retain?: boolean;
  packetId?: number;
  dup?: boolean;
  ids?: readonly number[];
}

/** A SessionLink that records its writes; sendWindow and outputFull() are set by the test. */
class FakeLink implements SessionLink {
  sendWindow = 10;
  full = false;
  watched = 0;
  readonly written: Written[] = [];
  outputFull(): boolean {
    return this.full;
  }
  writePublish(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, packetId: number | undefined, dup: boolean): boolean {
    this.written.push({ kind: 'publish', name: message.payload.toString(), qos, retain, packetId, dup, ids });
    return true;
  }
  sendPubrel(packetId: number): void {
    this.written.push({ kind: 'pubrel', packetId });
  }
  watchOutput(): void {
    this.watched++;
  }
  /** Removes and returns what was written. */
  take(): Written[] {
    return this.written.splice(0);
  }
  names(): string[] {
    return this.take().map((w) => (w.kind === 'pubrel' ? `pubrel:${w.packetId}` : w.name!));
  }
}

function setup(limits: Partial<BrokerLimits> = {}, guard?: { shedQos0: boolean }) {
  const clock = { time: 1_000, now() { return this.time; } };
  const stats = newStats();
  const session = new Session('c', 60, { limits: { ...DEFAULT_LIMITS, ...limits }, clock, stats, guard });
  const link = new FakeLink();
  return { clock, stats, session, link };
}
const msg = (name: string, qos: QoS = 1, extra: Partial<Message> = {}): Message => ({ topic: 't', payload: Buffer.from(name), qos, retain: false, ...extra });

describe('Session delivery', () => {
  it('offline: QoS 0 dropped unless queueQos0, QoS 1/2 queued', () => {
    const { session, link } = setup();
    session.deliver(msg('zero', 0), 0, false, undefined, undefined);
    session.deliver(msg('one', 1), 1, false, undefined, undefined);
    session.deliver(msg('two', 2), 2, false, undefined, undefined);
    assert.equal(session.queuedCount, 2);
    session.resume(link);
    assert.deepEqual(link.names(), ['one', 'two']);

    const q0 = setup({ queueQos0: true });
    q0.session.deliver(msg('zero', 0), 0, false, undefined, undefined);
    assert.equal(q0.session.queuedCount, 1);
    q0.session.resume(q0.link);
    assert.deepEqual(q0.link.take().map((w) => [w.name, w.qos, w.packetId]), [['zero', 0, undefined]]);
  });

  it('online QoS 0 is written; with the output full it is dropped and counted', () => {
    const { session, link, stats } = setup();
    session.resume(link);
    session.deliver(msg('a', 0), 0, false, [7], undefined);
    assert.deepEqual(link.take(), [{ kind: 'publish', name: 'a', qos: 0, retain: false, packetId: undefined, dup: false, ids: [7] }]);
    link.full = true;
    session.deliver(msg('b', 0), 0, false, undefined, undefined);
    assert.deepEqual(link.take(), []);
    assert.equal(session.queuedCount, 0, 'QoS 0 is not queued for a slow reader');
    assert.equal(stats.droppedMessages, 1);
    assert.equal(stats.droppedOutputFull, 1);
  });

  it('while the overload guard sheds QoS 0: dropped and counted as shed (as output full when the output is full too); QoS 1/2 still flow', () => {
    const guard = { shedQos0: true };
    const { session, link, stats } = setup({}, guard);
    session.resume(link);
    session.deliver(msg('a', 0), 0, false, undefined, undefined);
    session.deliver(msg('b', 1), 1, false, undefined, undefined);
    assert.deepEqual(link.names(), ['b']);
    assert.deepEqual([stats.droppedMessages, stats.droppedShed, stats.droppedOutputFull, link.watched], [1, 1, 0, 0]);
    link.full = true;
    session.deliver(msg('c', 0), 0, false, undefined, undefined);
    assert.deepEqual([stats.droppedMessages, stats.droppedShed, stats.droppedOutputFull, link.watched], [2, 1, 1, 1]);
    link.full = false;
    guard.shedQos0 = false;
    session.deliver(msg('d', 0), 0, false, undefined, undefined);
    assert.deepEqual(link.names(), ['d']);
    assert.equal(stats.droppedMessages, 2);
  });

  it('QoS 1/2 go into the window up to sendWindow, then queue, and leave in order as acknowledgements come', () => {
    const { session, link } = setup();
    link.sendWindow = 2;
    session.resume(link);
    for (const n of ['a', 'b', 'c', 'd']) session.deliver(msg(n), 1, false, undefined, undefined);
    const sent = link.take();
    assert.deepEqual(sent.map((w) => [w.name, w.packetId, w.dup]), [['a', 1, false], ['b', 2, false]]);
    assert.equal(session.inflightCount, 2);
    assert.equal(session.queuedCount, 2);
    assert.equal(session.acknowledge(4, 1, 0), 'done');
    assert.deepEqual(link.take().map((w) => [w.name, w.packetId]), [['c', 3]], 'acknowledge drains the queue');
    // Later messages queue behind the queued ones even when the window has room again.
    assert.equal(session.acknowledge(4, 2, 0), 'done');
    assert.deepEqual(link.names(), ['d']);
    assert.equal(session.queuedCount, 0);
  });

  it('QoS 1/2 with the output full are queued and sent by drain() once it empties', () => {
    const { session, link } = setup();
    session.resume(link);
    link.full = true;
    session.deliver(msg('a'), 1, false, undefined, undefined);
    session.deliver(msg('b', 2), 2, false, undefined, undefined);
    assert.deepEqual(link.take(), []);
    assert.ok(link.watched > 0, 'the link is asked to watch its output');
    link.full = false;
    session.drain();
    assert.deepEqual(link.take().map((w) => [w.name, w.qos]), [['a', 1], ['b', 2]]);
  });

  it('resume() resends in-flight messages in order with DUP, PUBREL for those past PUBREC [MQTT-4.4.0-1]', () => {
    const { session, link } = setup();
    session.resume(link);
    session.deliver(msg('a', 2), 2, false, undefined, undefined);
    session.deliver(msg('b', 1), 1, false, [5], undefined);
    session.deliver(msg('c', 2), 2, false, undefined, undefined);
    link.take();
    assert.equal(session.acknowledge(5, 1, 0), 'done'); // PUBREC for 'a': PUBREL goes out
    assert.deepEqual(link.names(), ['pubrel:1']);
    session.unlink(link);
    session.deliver(msg('d', 1), 1, false, undefined, undefined); // offline: queued after the in-flight ones
    const next = new FakeLink();
    session.resume(next);
    assert.deepEqual(next.take(), [
      { kind: 'pubrel', packetId: 1 },
      { kind: 'publish', name: 'b', qos: 1, retain: false, packetId: 2, dup: true, ids: [5] },
      { kind: 'publish', name: 'c', qos: 2, retain: false, packetId: 3, dup: true, ids: undefined },
      { kind: 'publish', name: 'd', qos: 1, retain: false, packetId: 4, dup: false, ids: undefined },
    ]);
  });

  it('resume() resends no more than the new window at once; the rest follow as acknowledgements come [MQTT-4.9.0-2]', () => {
    const { session, link } = setup();
    session.resume(link);
    for (const n of ['a', 'b', 'c', 'd']) session.deliver(msg(n), 1, false, undefined, undefined);
    session.unlink(link);
    session.deliver(msg('e'), 1, false, undefined, undefined);
    const next = new FakeLink();
    next.sendWindow = 2;
    session.resume(next);
    assert.deepEqual(next.take().map((w) => [w.name, w.dup]), [['a', true], ['b', true]]);
    assert.equal(session.acknowledge(4, 1, 0), 'done');
    assert.deepEqual(next.take().map((w) => [w.name, w.dup]), [['c', true]]);
    // 'd' reached the client on the first connection: acknowledged while held back, it is not resent.
    assert.equal(session.acknowledge(4, 4, 0), 'done');
    assert.deepEqual(next.take(), []);
    assert.equal(session.acknowledge(4, 2, 0), 'done');
    assert.deepEqual(next.take().map((w) => [w.name, w.dup]), [['e', false]]);
    assert.equal(session.acknowledge(4, 3, 0), 'done');
    assert.equal(session.inflightCount, 1);
  });
});

describe('Session.acknowledge', () => {
  /** A session with QoS 1 message at id 1 and QoS 2 message at id 2 in flight. */
  function twoInFlight() {
    const s = setup();
    s.session.resume(s.link);
    s.session.deliver(msg('q1', 1), 1, false, undefined, undefined);
    s.session.deliver(msg('q2', 2), 2, false, undefined, undefined);
    s.link.take();
    return s;
  }

  it('PUBACK ends a QoS 1 flow; a second one is unknown', () => {
    const { session } = twoInFlight();
    assert.equal(session.acknowledge(4, 1, 0), 'done');
    assert.equal(session.inflightMessage(1), undefined);
    assert.equal(session.acknowledge(4, 1, 0), 'unknown');
  });

  it('PUBREC or PUBCOMP for a QoS 1 message, PUBACK for a QoS 2 one: mismatch, the flow left as it was', () => {
    const { session, link } = twoInFlight();
    assert.equal(session.acknowledge(5, 1, 0), 'mismatch');
    assert.equal(session.acknowledge(7, 1, 0), 'mismatch');
    assert.equal(session.acknowledge(4, 2, 0), 'mismatch');
    assert.equal(session.inflightMessage(1)?.state, 'publish');
    assert.equal(session.inflightMessage(2)?.state, 'publish');
    assert.deepEqual(link.take(), []);
  });

  it('PUBCOMP before PUBREC is a mismatch; PUBREC then PUBCOMP ends the QoS 2 flow', () => {
    const { session, link } = twoInFlight();
    assert.equal(session.acknowledge(7, 2, 0), 'mismatch');
    assert.equal(session.acknowledge(5, 2, 0), 'done');
    assert.equal(session.inflightMessage(2)?.state, 'pubrel');
    assert.deepEqual(link.names(), ['pubrel:2']);
    assert.equal(session.acknowledge(7, 2, 0), 'done');
    assert.equal(session.inflightMessage(2), undefined);
    assert.equal(session.acknowledge(7, 2, 0), 'unknown');
  });

  it('a repeated PUBREC sends PUBREL again', () => {
    const { session, link } = twoInFlight();
    session.acknowledge(5, 2, 0);
    assert.equal(session.acknowledge(5, 2, 0), 'done');
    assert.deepEqual(link.names(), ['pubrel:2', 'pubrel:2']);
    assert.equal(session.inflightMessage(2)?.state, 'pubrel');
  });

  it('PUBREC with a reason code >= 0x80 ends the flow without PUBREL', () => {
    const { session, link } = twoInFlight();
    assert.equal(session.acknowledge(5, 2, 0x87), 'done');
    assert.equal(session.inflightMessage(2), undefined);
    assert.deepEqual(link.take(), []);
    assert.equal(session.acknowledge(7, 2, 0), 'unknown');
  });

  it('any acknowledgement of an id not in flight is unknown', () => {
    const { session } = twoInFlight();
    for (const type of [4, 5, 7] as const) assert.equal(session.acknowledge(type, 99, 0), 'unknown');
    const empty = setup().session;
    assert.equal(empty.acknowledge(4, 1, 0), 'unknown');
  });
});

describe('Session retained messages and expiry', () => {
  it('sendRetained() streams past a full output and a small window, with RETAIN set, at the lower QoS [MQTT-3.3.1-9]', () => {
    const { session, link } = setup();
    link.sendWindow = 1;
    session.resume(link);
    const retained = [msg('r1', 2), msg('r2', 0), msg('r3', 1), msg('r4', 1)];
    session.sendRetained(retained, 1, [3]);
    assert.deepEqual(link.take().map((w) => [w.name, w.qos, w.retain, w.ids]), [['r1', 1, true, [3]], ['r2', 0, true, [3]]]);
    // A new message waits behind the retained ones.
    session.deliver(msg('live'), 1, false, undefined, undefined);
    assert.deepEqual(link.take(), []);
    session.acknowledge(4, 1, 0);
    assert.deepEqual(link.names(), ['r3']);
    link.full = true;
    session.acknowledge(4, 2, 0);
    assert.deepEqual(link.take(), [], 'nothing while the output is full');
    link.full = false;
    session.drain();
    assert.deepEqual(link.names(), ['r4']);
    session.acknowledge(4, 3, 0);
    assert.deepEqual(link.names(), ['live']);
  });

  it('more retained messages than maxQueuedMessages all arrive', () => {
    const { session, link } = setup({ maxQueuedMessages: 2 });
    link.sendWindow = 2;
    session.resume(link);
    session.sendRetained(['a', 'b', 'c', 'd', 'e'].map((n) => msg(n)), 1, undefined);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const w = link.take();
      got.push(...w.map((x) => x.name!));
      for (const x of w) session.acknowledge(4, x.packetId!, 0);
    }
    assert.deepEqual(got, ['a', 'b', 'c', 'd', 'e']);
  });

  it('unlink() moves retained messages not sent yet into the queue (QoS 1/2; QoS 0 only with queueQos0)', () => {
    const { session, link } = setup();
    link.sendWindow = 1;
    session.resume(link);
    session.sendRetained([msg('r1'), msg('r2'), msg('r3', 0), msg('r4')], 1, undefined);
    assert.deepEqual(link.names(), ['r1']);
    session.unlink(link);
    assert.equal(session.queuedCount, 2, 'r2 and r4 queued, r3 (QoS 0) not');
    const next = new FakeLink();
    session.resume(next);
    assert.deepEqual(next.take().map((w) => [w.name, w.retain, w.dup]), [['r1', true, true], ['r2', true, false], ['r4', true, false]]);
  });

  it('unlink() by a link that is not the current one changes nothing', () => {
    const { session, link } = setup();
    session.resume(link);
    session.unlink(new FakeLink());
    assert.equal(session.link, link);
  });

  it('an expired message is not sent: online at delivery, from the queue, or retained (stats.droppedExpired) [MQTT-3.3.2-5]', () => {
    const { session, link, clock, stats } = setup();
    session.deliver(msg('queued', 1, { expiresAt: 1_500 }), 1, false, undefined, undefined);
    session.deliver(msg('fresh', 1, { expiresAt: 5_000 }), 1, false, undefined, undefined);
    clock.time = 2_000;
    session.resume(link);
    assert.deepEqual(link.names(), ['fresh']);
    assert.equal(stats.droppedExpired, 1);
    session.deliver(msg('late', 0, { expiresAt: 1_999 }), 0, false, undefined, undefined);
    session.deliver(msg('late1', 1, { expiresAt: 1_999 }), 1, false, undefined, undefined);
    assert.deepEqual(link.take(), []);
    assert.equal(stats.droppedExpired, 3);
    session.sendRetained([msg('rOld', 1, { expiresAt: 10 }), msg('rNew', 1)], 1, undefined);
    assert.deepEqual(link.names(), ['rNew']);
    assert.equal(stats.droppedExpired, 4);
    assert.equal(stats.droppedMessages, 0, 'expired messages are not counted as dropped');
  });

  it('offlineMessageExpiry: a message queued too long is not sent', () => {
    const { session, link, clock, stats } = setup({ offlineMessageExpiry: 10 });
    session.deliver(msg('old'), 1, false, undefined, undefined);
    clock.time += 5_000;
    session.deliver(msg('new'), 1, false, undefined, undefined);
    clock.time += 6_000;
    session.resume(link);
    assert.deepEqual(link.names(), ['new']);
    assert.equal(stats.droppedExpired, 1);
  });

  it('a full queue drops and counts (session.dropped, stats.droppedMessages)', () => {
    const { session, stats } = setup({ maxQueuedMessages: 1 });
    session.deliver(msg('a'), 1, false, undefined, undefined);
    session.deliver(msg('b'), 1, false, undefined, undefined);
    assert.equal(session.queuedCount, 1);
    assert.equal(session.dropped, 1);
    assert.equal(stats.droppedMessages, 1);
    assert.equal(session.peekQueued()?.message.payload.toString(), 'b');
  });
});
