// The QoS 1 path as the pairs benchmark drives it (bench/core.ts pairs-q1), with the rules its short cuts keep:
// the PUBACK that frees the in-flight window drains the queue, an acknowledgement of the wrong kind or of no
// message is answered as before, and a QoS 1 message owns its payload once the publisher's input is gone.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { DisconnectPacket, PubAckLikePacket, PublishPacket } from '../../src/protocol/packets.js';
import { FakeCore } from '../helpers/fake-core.js';
import { pub } from '../helpers/packets.js';

describe('QoS 1 delivery and its PUBACK', () => {
  it('[MQTT-4.9.0-2] each PUBACK frees the window of Receive Maximum 1 and the next queued message goes out, in order', () => {
    const f = new FakeCore();
    const s = f.connect({ clientId: 's', protocolVersion: 5, properties: { receiveMaximum: 1 } });
    s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] });
    s.take(9);
    const p = f.connect({ clientId: 'p' });
    for (let i = 1; i <= 3; i++) p.send(pub('t', `m${i}`, { qos: 1, packetId: i }));
    assert.equal(p.take(4).length, 3, 'the publisher has a PUBACK for each');
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      const out = s.take(3) as PublishPacket[];
      assert.equal(out.length, 1, 'one message in flight at a time');
      seen.push(out[0]!.payload.toString());
      s.send({ type: 4, packetId: out[0]!.packetId! });
    }
    assert.deepEqual(seen, ['m1', 'm2', 'm3']);
    assert.deepEqual(s.take(3), [], 'nothing more');
    assert.equal(f.inspect.session('s')?.inflight, 0, 'the window is empty');
  });

  it('a message waiting in the queue keeps its payload when the bytes it arrived in are reused', () => {
    const f = new FakeCore();
    const s = f.connect({ clientId: 's', protocolVersion: 5, properties: { receiveMaximum: 1 } });
    s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] });
    s.take(9);
    const p = f.connect({ clientId: 'p' });
    // Both PUBLISHes in one chunk, which the transport then overwrites (as a reused read buffer would be).
    const chunk = Buffer.concat([encodePacket(pub('t', 'first', { qos: 1, packetId: 1 }), 4), encodePacket(pub('t', 'second', { qos: 1, packetId: 2 }), 4)]);
    p.channel.receive(chunk);
    chunk.fill(0x7a);
    const [first] = s.take(3) as PublishPacket[];
    s.send({ type: 4, packetId: first!.packetId! });
    const [second] = s.take(3) as PublishPacket[];
    assert.equal(first!.payload.toString(), 'first');
    assert.equal(second!.payload.toString(), 'second');
  });
});

describe('acknowledgements that do not fit a flow', () => {
  it('[MQTT-4.8.0-1] a PUBACK for a QoS 2 message closes a 3.1.1 connection; 5.0 gets DISCONNECT 0x82', () => {
    for (const protocolVersion of [4, 5] as const) {
      const f = new FakeCore();
      const s = f.connect({ clientId: 's', protocolVersion });
      s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 2 }] });
      s.take(9);
      f.connect({ clientId: 'p' }).send(pub('t', 'two', { qos: 2, packetId: 1 }));
      const [m] = s.take(3) as PublishPacket[];
      s.send({ type: 4, packetId: m!.packetId! });
      assert.equal(s.closed, true, `v${protocolVersion}: closed`);
      const disconnect = s.take(14) as DisconnectPacket[];
      if (protocolVersion === 5) assert.equal(disconnect[0]?.reasonCode, 0x82);
      else assert.deepEqual(disconnect, []);
    }
  });

  it('a PUBACK for no message in flight is ignored; a 5.0 PUBREC for none gets PUBREL 0x92', () => {
    const f = new FakeCore();
    const s = f.connect({ clientId: 's', protocolVersion: 5 });
    s.take(2);
    s.send({ type: 4, packetId: 7 });
    s.send({ type: 5, packetId: 8 });
    assert.equal(s.closed, false);
    const pubrel = s.take(6) as PubAckLikePacket[];
    assert.deepEqual(pubrel.map((x) => [x.packetId, x.reasonCode]), [[8, 0x92]]);
    assert.deepEqual(s.take(), []);
  });
});
