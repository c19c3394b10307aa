// The decoder remembers the last PUBLISH topic name and its bytes: the same bytes give the same string
// without decoding or checking them again; any other bytes (even of the same length) are decoded and
// checked in full.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { expectProtocolError, split } from './helpers.js';

const publish = (topic: string, v: ProtocolVersion = 4): Buffer =>
  encodePacket({ type: 3, topic, payload: Buffer.from('p'), qos: 0, retain: false, dup: false }, v);

/** A PUBLISH (3.1.1, QoS 0) whose topic name is exactly these bytes, however invalid. */
function rawPublish(topic: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x30, 2 + topic.length + 1, topic.length >> 8, topic.length & 0xff]), topic, Buffer.from('p')]);
}

function topics(decoder: PacketDecoder, ...chunks: Buffer[]): string[] {
  const out: string[] = [];
  for (const c of chunks) decoder.feed(c, (p) => out.push((p as PublishPacket).topic));
  return out;
}

describe('PUBLISH topic memo', () => {
  it('the same topic again, another of the same length, and the first again all decode right', () => {
    const d = new PacketDecoder({ protocolVersion: 4 });
    const long = `long/${'x'.repeat(200)}`; // longer than what is remembered
    assert.deepEqual(
      topics(d, publish('a/b'), publish('a/b'), publish('a/c'), publish('a/b'), publish('ü/€'), publish('ü/€'), publish(long), publish(long), publish('a/b')),
      ['a/b', 'a/b', 'a/c', 'a/b', 'ü/€', 'ü/€', long, long, 'a/b'],
    );
  });

  it('[MQTT-3.3.2-2] a wildcard is refused right after a valid topic of the same length', () => {
    const d = new PacketDecoder({ protocolVersion: 4 });
    assert.deepEqual(topics(d, publish('a/b')), ['a/b']);
    expectProtocolError(() => topics(d, rawPublish(Buffer.from('a/+'))), 0x90);
  });

  it('[MQTT-1.5.4-1] invalid UTF-8 is refused right after a valid topic of the same length', () => {
    const d = new PacketDecoder({ protocolVersion: 4 });
    assert.deepEqual(topics(d, publish('ab')), ['ab']);
    expectProtocolError(() => topics(d, rawPublish(Buffer.from([0x61, 0xff]))), 0x81);
  });

  it('5.0: an empty topic name with a topic alias after a remembered topic reads its properties right', () => {
    const d = new PacketDecoder({ protocolVersion: 5 });
    const aliased = encodePacket({ type: 3, topic: '', payload: Buffer.from('p'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } }, 5);
    const out: PublishPacket[] = [];
    for (const c of [publish('t/1', 5), publish('t/1', 5), aliased]) d.feed(c, (p) => out.push(p as PublishPacket));
    assert.deepEqual(out.map((p) => [p.topic, p.properties?.topicAlias]), [['t/1', undefined], ['t/1', undefined], ['', 3]]);
  });

  it('random sequences of topics from a small set (many of one length), in random chunks, decode to the topics sent', () => {
    const pool = ['s/001', 's/002', 's/010', 'x/y/z', 'ü/€', 'a', 'b', 'long/' + 'q'.repeat(150), 'long/' + 'r'.repeat(150)];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pool), { minLength: 1, maxLength: 40 }), fc.array(fc.nat(), { maxLength: 10 }), (sent, cuts) => {
        const stream = Buffer.concat(sent.map((t) => publish(t)));
        assert.deepEqual(topics(new PacketDecoder({ protocolVersion: 4 }), ...split(stream, cuts)), sent);
      }),
      { numRuns: 300 },
    );
  });
});
