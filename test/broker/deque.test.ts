// The ring-buffer queue behind each session's offline queue, against a plain array.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Deque } from '../../src/broker/deque.js';
import { FakeCore } from '../helpers/fake-core.js';
import type { PublishPacket } from '../../src/protocol/packets.js';

describe('Deque', () => {
  it('matches an array on random pushes, shifts and removals, across growth and wrap-around', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), n: fc.integer({ min: 1, max: 100 }) }),
      fc.record({ kind: fc.constant('shift' as const), n: fc.integer({ min: 1, max: 100 }) }),
      fc.record({ kind: fc.constant('remove' as const), mod: fc.integer({ min: 2, max: 5 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const d = new Deque<number>();
        const model: number[] = [];
        let next = 0;
        for (const o of ops) {
          if (o.kind === 'push') {
            for (let i = 0; i < o.n; i++) {
              d.push(next);
              model.push(next++);
            }
          } else if (o.kind === 'shift') {
            for (let i = 0; i < o.n; i++) assert.equal(d.shift(), model.shift());
          } else {
            const removed = d.removeWhere((x) => x % o.mod === 0);
            assert.deepEqual(removed, model.filter((x) => x % o.mod === 0));
            model.splice(0, model.length, ...model.filter((x) => x % o.mod !== 0));
          }
          assert.equal(d.length, model.length);
          assert.deepEqual([...d], model);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a full offline queue that drops its oldest keeps the newest maxQueuedMessages, in order', () => {
    const f = new FakeCore({ limits: { maxQueuedMessages: 20_000, queueOverflow: 'drop-oldest' } });
    const sub = f.connect({ clientId: 'sub', clean: false });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'q', qos: 1 }] });
    sub.drop();
    const pub = f.connect({ clientId: 'pub' });
    for (let i = 0; i < 50_000; i++) {
      pub.send({ type: 3, topic: 'q', payload: Buffer.from(String(i)), qos: 1, retain: false, dup: false, packetId: (i % 65535) + 1 });
    }
    pub.take();
    const session = f.inspect.session('sub')!;
    assert.deepEqual([session.queued, session.dropped], [20_000, 30_000]);
    const back = f.connect({ clientId: 'sub', clean: false });
    const got: number[] = [];
    for (;;) {
      const ps = back.take(3) as PublishPacket[];
      if (ps.length === 0) break;
      for (const p of ps) {
        got.push(Number(p.payload.toString()));
        back.send({ type: 4, packetId: p.packetId! });
      }
    }
    assert.equal(got.length, 20_000);
    assert.deepEqual([got[0], got[got.length - 1]], [30_000, 49_999]);
    assert.ok(got.every((v, i) => i === 0 || v === got[i - 1]! + 1), 'in the order published');
  });
});
