// The outgoing in-flight window of a session (session/inflight-window.ts): packet ids, slots and send order
// (including random acknowledgement orders with fast-check), and on the in-memory core a window that
// empties and fills again without losing the packet-id sequence or what is still unacknowledged.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Message } from '../../src/broker/message.js';
import { InflightWindow as Session } from '../../src/broker/session/inflight-window.js';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { FakeCore } from '../helpers/fake-core.js';

const message = (n: number): Message => ({ topic: 't', payload: Buffer.from(String(n)), qos: 1, retain: false });

/** Allocates a packet id and puts message `n` in flight under it. */
function send(session: Session, n: number): number {
  const id = session.allocate();
  assert.ok(id !== undefined, 'a packet id is free');
  session.add(id, message(n), 1, false, undefined, undefined);
  return id;
}

describe('session in-flight slots', () => {
  it('ids go on in sequence while acknowledgements come in order, and wrap from 65535 to 1 [MQTT-2.2.1-3]', () => {
    const s = new Session();
    const ids: number[] = [];
    for (let n = 0; n < 65537; n++) {
      const id = send(s, n);
      ids.push(id);
      s.release(id);
    }
    assert.deepEqual(ids.slice(0, 3), [1, 2, 3]);
    assert.deepEqual(ids.slice(65533), [65534, 65535, 1, 2]);
    assert.equal(s.size, 0);
  });

  it('an unacknowledged message keeps its id: later ids skip it, and it is still found after the window grows', () => {
    const s = new Session();
    const stuck = send(s, 0); // id 1, never acknowledged here
    const later: number[] = [];
    for (let n = 1; n <= 40; n++) {
      const id = send(s, n);
      later.push(id);
      if (n % 3 !== 0) s.release(id); // every third one stays in flight too
    }
    assert.ok(!later.includes(stuck), 'the in-flight id is not given again');
    assert.equal(s.get(stuck)?.message.payload.toString(), '0');
    for (let n = 3; n <= 40; n += 3) assert.equal(s.get(later[n - 1]!)?.message.payload.toString(), String(n));
    assert.equal(s.get(later[0]!), undefined, 'a released id is not found');
    assert.equal(s.size, 1 + 13);
    assert.deepEqual(s.inOrder().map((m) => Number(m.message.payload.toString())), [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39]);
  });

  it('65535 in flight use every id; the next allocation waits for one to be released', () => {
    const s = new Session();
    const seen = new Set<number>();
    for (let n = 0; n < 65535; n++) seen.add(send(s, n));
    assert.equal(seen.size, 65535);
    assert.equal(s.allocate(), undefined);
    s.release(40_000);
    assert.equal(s.allocate(), 40_000);
  });

  it('random sends and acknowledgements: ids unique, every in-flight message found by its id, resent in send order', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant(-1), fc.nat(1000)), { maxLength: 400 }), fc.integer({ min: 1, max: 65535 }), (steps, start) => {
        const s = new Session();
        // Start anywhere in the id space, so runs also cross the wrap from 65535 to 1.
        (s as unknown as { nextPacketId: number }).nextPacketId = start;
        const model = new Map<number, number>(); // id -> message number, in send order
        let n = 0;
        for (const step of steps) {
          if (step === -1 || model.size === 0) {
            const id = s.allocate()!;
            assert.ok(!model.has(id), `id ${id} is not in flight already`);
            s.add(id, message(n), 1, false, undefined, undefined);
            model.set(id, n++);
          } else {
            const id = [...model.keys()][step % model.size]!;
            s.release(id);
            model.delete(id);
            s.release(id); // twice: no effect
          }
          assert.equal(s.size, model.size);
        }
        for (const [id, k] of model) assert.equal(s.get(id)?.message.payload.toString(), String(k));
        assert.deepEqual(s.inOrder().map((m) => m.packetId), [...model.keys()]);
      }),
      { numRuns: 300 },
    );
  });
});

describe('in-flight window', () => {
  it('acknowledged one by one, packet ids go on from where they were [MQTT-2.2.1-3], and the window ends empty', () => {
    const f = new FakeCore();
    const sub = f.connect({ clientId: 'sub' });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 1 }] });
    const pub = f.connect({ clientId: 'pub' });
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) {
      pub.send({ type: 3, topic: 'a', payload: Buffer.from(String(i)), qos: 1, packetId: i + 1, retain: false, dup: false });
      const [p] = sub.take(3) as PublishPacket[];
      ids.push(p!.packetId!);
      assert.equal(f.inspect.session('sub')!.inflight, 1);
      sub.send({ type: 4, packetId: p!.packetId! });
      assert.equal(f.inspect.session('sub')!.inflight, 0, 'acknowledged');
    }
    assert.deepEqual(ids, [1, 2, 3]);
  });

  it('a window that was emptied and filled again is resent in order on resume [MQTT-4.4.0-1]', () => {
    const f = new FakeCore();
    const sub = f.connect({ clientId: 'sub2', clean: false });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'b', qos: 1 }] });
    const pub = f.connect({ clientId: 'pub2' });
    const publish = (i: number) => pub.send({ type: 3, topic: 'b', payload: Buffer.from(`m${i}`), qos: 1, packetId: i, retain: false, dup: false });
    publish(1);
    sub.send({ type: 4, packetId: (sub.take(3)[0] as PublishPacket).packetId! }); // empties the window
    publish(2);
    publish(3);
    sub.drop();
    const again = f.connect({ clientId: 'sub2', clean: false });
    const resent = again.take(3) as PublishPacket[];
    assert.deepEqual(resent.map((p) => p.payload.toString()), ['m2', 'm3']);
    assert.ok(resent.every((p) => p.dup), 'DUP set on the resent messages');
    assert.deepEqual(resent.map((p) => p.packetId), [2, 3]);
  });
});
