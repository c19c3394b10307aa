// The outgoing in-flight window of a session, on the in-memory core: a window that empties is dropped and
// made again, without losing the packet-id sequence or what is still unacknowledged.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { FakeCore } from '../helpers/fake-core.js';

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
      assert.equal(f.core.sessions.get('sub')!.inflightCount, 1);
      sub.send({ type: 4, packetId: p!.packetId! });
      assert.equal(f.core.sessions.get('sub')!.inflightCount, 0, 'acknowledged');
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
