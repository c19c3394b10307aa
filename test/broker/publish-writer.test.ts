// PublishWriter (src/broker/publish-writer.ts) through its own API: topic aliases toward the client, 5.0
// per-subscriber properties, the client's Maximum Packet Size, and the encodings a fan-out shares.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import { PublishWriter } from '../../src/broker/publish-writer.js';
import type { FanOutEncodings } from '../../src/broker/session/session.js';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import type { Packet, PublishPacket } from '../../src/protocol/packets.js';

const NOW = 50_000;
/** The writer's clock: read for the remaining Message Expiry only. */
let now = NOW;
const clock = { now: () => now };
const msg = (topic: string, extra: Partial<Message> = {}): Message => ({ topic, payload: Buffer.from('payload'), qos: 1, retain: false, ...extra });

function decode(buf: Buffer, version: ProtocolVersion): PublishPacket {
  const out: Packet[] = [];
  new PacketDecoder({ protocolVersion: version, role: 'client' }).feed(buf, (p) => out.push(p));
  assert.equal(out.length, 1);
  return out[0] as PublishPacket;
}
const fresh = (): FanOutEncodings => new Array<Buffer | undefined>(12).fill(undefined);

describe('PublishWriter', () => {
  it('topic aliases toward the client up to its Topic Alias Maximum, then the full topic [MQTT-3.3.2-11]', () => {
    const w = new PublishWriter(5, clock);
    w.topicAliasMaximum = 2;
    const send = (topic: string) => decode(w.encode(msg(topic), 1, false, undefined, 1, false, undefined)!, 5);
    const a1 = send('a/1');
    assert.deepEqual([a1.topic, a1.properties?.topicAlias], ['a/1', 1]);
    const a2 = send('a/1');
    assert.deepEqual([a2.topic, a2.properties?.topicAlias], ['', 1], 'a known alias replaces the topic');
    const b = send('b');
    assert.deepEqual([b.topic, b.properties?.topicAlias], ['b', 2]);
    const c = send('c');
    assert.deepEqual([c.topic, c.properties?.topicAlias], ['c', undefined], 'no alias beyond the maximum');
    assert.equal(w.aliasCount, 2);
  });

  it('no topic alias when the client allows none, nor for 3.1.1', () => {
    const w = new PublishWriter(5, clock);
    const p = decode(w.encode(msg('t'), 0, false, undefined, undefined, false, undefined)!, 5);
    assert.equal(p.properties?.topicAlias, undefined);
    const v4 = new PublishWriter(4, clock);
    v4.topicAliasMaximum = 10;
    const q = decode(v4.encode(msg('t'), 0, false, undefined, undefined, false, undefined)!, 4);
    assert.equal(q.topic, 't');
    assert.equal(v4.aliasCount, 0);
  });

  it('an alias is remembered only if the packet that sets it fits the client\'s Maximum Packet Size', () => {
    const w = new PublishWriter(5, clock);
    w.topicAliasMaximum = 5;
    w.maxPacketSize = 40;
    const big = msg('x', { payload: Buffer.alloc(100) });
    assert.equal(w.encode(big, 1, false, undefined, 1, false, undefined), undefined);
    assert.equal(w.aliasCount, 0);
    const small = decode(w.encode(msg('x'), 1, false, undefined, 2, false, undefined)!, 5);
    assert.deepEqual([small.topic, small.properties?.topicAlias], ['x', 1], 'the client is told the topic with the alias');
  });

  it('a packet over the client\'s Maximum Packet Size is dropped [MQTT-3.1.2-24] [MQTT-3.1.2-25]', () => {
    for (const version of [4, 5] as const) {
      const w = new PublishWriter(version, clock);
      const m = msg('t', { payload: Buffer.alloc(50) });
      const size = w.encode(m, 1, false, undefined, 1, false, undefined)!.length;
      w.maxPacketSize = size;
      assert.ok(w.encode(m, 1, false, undefined, 1, false, undefined));
      w.maxPacketSize = size - 1;
      assert.equal(w.encode(m, 1, false, undefined, 1, false, undefined), undefined);
      assert.equal(w.encode(m, 1, false, undefined, 1, false, fresh()), undefined, 'shared encodings too');
    }
  });

  it('5.0: Subscription Identifiers and the remaining Message Expiry, rounded up [MQTT-3.3.4-3] [MQTT-3.3.2-6]', () => {
    const w = new PublishWriter(5, clock);
    const m = msg('t', { expiresAt: NOW + 9_001, properties: { contentType: 'text/plain' } });
    const one = decode(w.encode(m, 1, false, [7], 1, false, fresh())!, 5);
    assert.equal(one.properties?.subscriptionIdentifier, 7);
    assert.equal(one.properties?.messageExpiryInterval, 10);
    assert.equal(one.properties?.contentType, 'text/plain');
    now = NOW + 9_001;
    const two = decode(w.encode(m, 1, false, [7, 9], 1, false, undefined)!, 5);
    now = NOW;
    assert.deepEqual(two.properties?.subscriptionIdentifier, [7, 9]);
    assert.equal(two.properties?.messageExpiryInterval, 0);
    const none = decode(w.encode(msg('t'), 1, false, undefined, 1, false, undefined)!, 5);
    assert.equal(none.properties?.subscriptionIdentifier, undefined);
    assert.equal(none.properties?.messageExpiryInterval, undefined);
  });

  it('3.1.1 carries no properties, whatever the message has', () => {
    const w = new PublishWriter(4, clock);
    const p = decode(w.encode(msg('t', { expiresAt: NOW + 5_000 }), 1, true, [3], 9, false, undefined)!, 4);
    assert.deepEqual([p.topic, p.qos, p.retain, p.packetId, p.properties], ['t', 1, true, 9, undefined]);
  });

  it('a fan-out\'s encodings are shared: one per (version, QoS, retain), the packet id patched and DUP set', () => {
    const encodings = fresh();
    const w4 = new PublishWriter(4, clock);
    const w5 = new PublishWriter(5, clock);
    const m = msg('t/x');
    const a = w4.encode(m, 1, false, undefined, 10, false, encodings)!;
    assert.equal(encodings.filter((e) => e !== undefined).length, 1);
    const b = w4.encode(m, 1, false, undefined, 11, true, encodings)!;
    assert.equal(encodings.filter((e) => e !== undefined).length, 1, 'reused, not encoded again');
    const pa = decode(a, 4);
    const pb = decode(b, 4);
    assert.deepEqual([pa.packetId, pa.dup], [10, false]);
    assert.deepEqual([pb.packetId, pb.dup], [11, true]);
    assert.notEqual(a, encodings.find((e) => e !== undefined), 'a copy: the shared encoding is not patched in place');
    const zero = w4.encode(m, 0, false, undefined, undefined, false, encodings)!;
    assert.equal(zero, encodings.find((e, i) => e !== undefined && i === 0), 'QoS 0 sends the shared encoding itself');
    w5.encode(m, 1, false, undefined, 12, false, encodings);
    w4.encode(m, 1, true, undefined, 13, false, encodings);
    assert.equal(encodings.filter((e) => e !== undefined).length, 4);
    const p5 = decode(w5.encode(m, 1, false, undefined, 14, false, encodings)!, 5);
    assert.deepEqual([p5.topic, p5.packetId], ['t/x', 14]);
  });

  it('a subscriber-specific 5.0 PUBLISH does not use or fill the shared encodings', () => {
    const encodings = fresh();
    const w = new PublishWriter(5, clock);
    w.encode(msg('t'), 1, false, [4], 1, false, encodings);
    assert.equal(encodings.filter((e) => e !== undefined).length, 0);
  });
});
