// SessionQueue (src/broker/session/session-queue.ts) through its own API: the count and byte limits, the
// overflow policies, expired messages giving their places up first, and the byte count kept right.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import { SessionQueue, type QueueLimits } from '../../src/broker/session/session-queue.js';
import type { QueuedMessage } from '../../src/broker/store/types.js';

const item = (name: string, bytes = name.length, extra: Partial<Message> = {}, queuedAt = 0): QueuedMessage => ({
  message: { topic: 't', payload: Buffer.alloc(bytes, name), qos: 1, retain: false, from: name, ...extra },
  qos: 1,
  retain: false,
  queuedAt,
});
const limits = (l: Partial<QueueLimits> = {}): QueueLimits => ({ maxQueuedMessages: 3, maxQueuedBytes: 0, queueOverflow: 'drop-oldest', offlineMessageExpiry: 0, ...l });

/** A queue with a recording `dropped` callback. */
function recorder() {
  const q = new SessionQueue();
  const dropped: { name: string; expired: boolean }[] = [];
  const push = (i: QueuedMessage, l: QueueLimits, now = 0) => q.push(i, l, now, (d, expired) => dropped.push({ name: d.message.from!, expired }));
  return { q, dropped, push };
}
/** The queue's messages in order, without changing it (shift everything out and back in). */
function contents(q: SessionQueue): string[] {
  const out: QueuedMessage[] = [];
  while (q.length > 0) out.push(q.shift()!);
  for (const i of out) q.restore(i);
  return out.map((i) => i.message.from!);
}

describe('SessionQueue limits', () => {
  it('maxQueuedMessages with drop-oldest: the oldest leaves for the newest, reported as not expired', () => {
    const { q, dropped, push } = recorder();
    for (const n of ['a', 'b', 'c', 'd']) assert.equal(push(item(n), limits()), true);
    assert.deepEqual(contents(q), ['b', 'c', 'd']);
    assert.deepEqual(dropped, [{ name: 'a', expired: false }]);
  });

  it('maxQueuedMessages with drop-newest: the new message is refused, the queue unchanged', () => {
    const { q, dropped, push } = recorder();
    for (const n of ['a', 'b', 'c']) assert.equal(push(item(n), limits({ queueOverflow: 'drop-newest' })), true);
    assert.equal(push(item('d'), limits({ queueOverflow: 'drop-newest' })), false);
    assert.deepEqual(contents(q), ['a', 'b', 'c']);
    assert.deepEqual(dropped, []);
  });

  it('maxQueuedMessages 0 queues nothing', () => {
    const { q, push } = recorder();
    assert.equal(push(item('a'), limits({ maxQueuedMessages: 0 })), false);
    assert.equal(q.length, 0);
  });

  it('maxQueuedBytes: drop-oldest drops as many as needed to make room for the bytes', () => {
    const { q, dropped, push } = recorder();
    const l = limits({ maxQueuedMessages: 100, maxQueuedBytes: 10 });
    push(item('a', 4), l);
    push(item('b', 4), l);
    assert.equal(q.byteSize, 8);
    assert.equal(push(item('c', 9), l), true);
    assert.deepEqual(contents(q), ['c']);
    assert.deepEqual(dropped.map((d) => d.name), ['a', 'b']);
    assert.equal(q.byteSize, 9);
  });

  it('maxQueuedBytes: drop-newest refuses the message that does not fit, a smaller one still fits', () => {
    const { q, push } = recorder();
    const l = limits({ maxQueuedMessages: 100, maxQueuedBytes: 10, queueOverflow: 'drop-newest' });
    push(item('a', 6), l);
    assert.equal(push(item('b', 5), l), false);
    assert.equal(push(item('c', 4), l), true);
    assert.deepEqual(contents(q), ['a', 'c']);
    assert.equal(q.byteSize, 10);
  });

  it('a message larger than maxQueuedBytes never fits, and drops nothing trying', () => {
    const { q, dropped, push } = recorder();
    const l = limits({ maxQueuedMessages: 100, maxQueuedBytes: 10 });
    push(item('a', 3), l);
    assert.equal(push(item('big', 11), l), false);
    assert.deepEqual(contents(q), ['a']);
    assert.deepEqual(dropped, []);
    assert.equal(q.byteSize, 3);
  });

  it('expired messages give their places up first, reported as expired [MQTT-3.3.2-5]', () => {
    const { q, dropped, push } = recorder();
    const l = limits({ maxQueuedMessages: 3 });
    push(item('a'), l, 0);
    push(item('old', 3, { expiresAt: 500 }), l, 0);
    push(item('c'), l, 0);
    // At 1000 'old' has expired: it leaves, not 'a' (the oldest).
    assert.equal(push(item('d'), l, 1000), true);
    assert.deepEqual(contents(q), ['a', 'c', 'd']);
    assert.deepEqual(dropped, [{ name: 'old', expired: true }]);
    // With drop-newest too, an expired message makes room instead of the new one being refused.
    const r = recorder();
    const ln = limits({ maxQueuedMessages: 2, queueOverflow: 'drop-newest' });
    r.push(item('x', 1, { expiresAt: 10 }), ln, 0);
    r.push(item('y'), ln, 0);
    assert.equal(r.push(item('z'), ln, 20), true);
    assert.deepEqual(contents(r.q), ['y', 'z']);
    assert.deepEqual(r.dropped, [{ name: 'x', expired: true }]);
  });

  it('a message expiring exactly now is not expired yet (strictly past its expiry)', () => {
    const { q, dropped, push } = recorder();
    const l = limits({ maxQueuedMessages: 1 });
    push(item('a', 1, { expiresAt: 100 }), l, 0);
    push(item('b'), l, 100);
    assert.deepEqual(dropped, [{ name: 'a', expired: false }]);
    assert.deepEqual(contents(q), ['b']);
  });

  it('offlineMessageExpiry: messages queued longer ago than it are expired, before a live one is dropped', () => {
    const { q, dropped, push } = recorder();
    const l = limits({ maxQueuedMessages: 2, offlineMessageExpiry: 10 });
    push(item('a', 1, {}, 0), l, 0);
    push(item('b', 1, {}, 5_000), l, 5_000);
    assert.equal(push(item('c', 1, {}, 10_000), l, 10_000), true);
    assert.deepEqual(contents(q), ['b', 'c']);
    assert.deepEqual(dropped, [{ name: 'a', expired: true }]);
  });

  it('the byte count stays right through shift, removeWhere, drops and restore', () => {
    const { q, push } = recorder();
    const l = limits({ maxQueuedMessages: 4, maxQueuedBytes: 100 });
    push(item('a', 10), l);
    push(item('b', 20), l);
    push(item('c', 30), l);
    push(item('d', 5, { expiresAt: 1 }), l);
    assert.equal(q.byteSize, 65);
    assert.equal(q.shift()!.message.from, 'a');
    assert.equal(q.byteSize, 55);
    const removed = q.removeWhere((i) => i.message.from === 'c');
    assert.deepEqual(removed.map((i) => i.message.from), ['c']);
    assert.equal(q.byteSize, 25);
    assert.equal(q.length, 2);
    push(item('e', 75), l, 10); // 25 + 75 = 100: fits exactly
    assert.equal(q.byteSize, 100);
    push(item('f', 1), l, 10); // no room: 'd' (expired) goes first, which is enough
    assert.deepEqual(contents(q), ['b', 'e', 'f']);
    assert.equal(q.byteSize, 96);
    q.restore(item('g', 4));
    assert.equal(q.byteSize, 100);
    while (q.length > 0) q.shift();
    assert.equal(q.byteSize, 0);
    assert.equal(q.shift(), undefined);
    assert.equal(q.peek(), undefined);
  });
});
