// Streaming behaviour of the decoder (chunking, buffering, maximum packet size) and the
// fan-out helpers of the encoder.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket, encodePublish, publishPacketIdOffset, withPacketId } from '../../src/protocol/encoder.js';
import { MqttProtocolError } from '../../src/protocol/errors.js';
import type { Packet, PublishPacket } from '../../src/protocol/packets.js';
import { decodeOne, expectProtocolError, hex } from './helpers.js';

function publish(i: number, size: number): PublishPacket {
  return {
    type: 3,
    topic: `t/${i}`,
    payload: Buffer.alloc(size, i & 0xff),
    qos: 1,
    retain: false,
    dup: false,
    packetId: (i % 65535) + 1,
  };
}

describe('streaming decoder', () => {
  const packets = [0, 1, 100, 127, 128, 300, 16383, 16384, 70000].map((size, i) => publish(i, size));
  const stream = Buffer.concat(packets.map((p) => encodePacket(p, 4)));

  it('decodes a stream fed one byte at a time', () => {
    const d = new PacketDecoder({ protocolVersion: 4 });
    const out: Packet[] = [];
    for (let i = 0; i < stream.length; i++) d.feed(stream.subarray(i, i + 1), (p) => out.push(p));
    assert.deepStrictEqual(out, packets);
    assert.equal(d.bufferedBytes, 0);
  });

  it('calls a method with the object given as this (no closure per connection)', () => {
    const sink = {
      out: [] as Packet[],
      take(this: { out: Packet[] }, p: Packet) {
        this.out.push(p);
      },
    };
    const d = new PacketDecoder({ protocolVersion: 4 });
    d.feed(stream.subarray(0, 100), sink.take, sink);
    d.feed(stream.subarray(100), sink.take, sink);
    assert.deepStrictEqual(sink.out, packets);
  });

  it('decodes many packets in one chunk', () => {
    const many = Array.from({ length: 500 }, (_, i) => publish(i, i % 50));
    const d = new PacketDecoder({ protocolVersion: 4 });
    const out: Packet[] = [];
    d.feed(Buffer.concat(many.map((p) => encodePacket(p, 4))), (p) => out.push(p));
    assert.deepStrictEqual(out, many);
  });

  it('decodes every split into two chunks', () => {
    const small = Buffer.concat(packets.slice(0, 6).map((p) => encodePacket(p, 4)));
    for (let cut = 0; cut <= small.length; cut++) {
      const d = new PacketDecoder({ protocolVersion: 4 });
      const out: Packet[] = [];
      d.feed(small.subarray(0, cut), (p) => out.push(p));
      d.feed(small.subarray(cut), (p) => out.push(p));
      assert.deepStrictEqual(out, packets.slice(0, 6), `cut at ${cut}`);
    }
  });

  it('reports buffered bytes of an incomplete packet', () => {
    const d = new PacketDecoder({ protocolVersion: 4 });
    const bytes = encodePacket(publish(1, 1000), 4);
    d.feed(bytes.subarray(0, 2), () => assert.fail('no packet yet'));
    assert.equal(d.bufferedBytes, 2);
    d.feed(bytes.subarray(2, 500), () => assert.fail('no packet yet'));
    assert.equal(d.bufferedBytes, 500 - 3); // body bytes (the 3-byte fixed header is parsed)
    let n = 0;
    d.feed(bytes.subarray(500), () => n++);
    assert.equal(n, 1);
    assert.equal(d.bufferedBytes, 0);
  });

  it('maxPacketSize: a fixed header announcing a too-large packet fails before the body arrives (0x95)', () => {
    const d = new PacketDecoder({ protocolVersion: 4, maxPacketSize: 1000 });
    // PUBLISH with remaining length 2000: only the fixed header is sent.
    const err = expectProtocolError(() => d.feed(hex('30 d0 0f'), () => {}), 0x95);
    assert.equal(err.packetType, 3);
    assert.equal(d.bufferedBytes, 0);
  });

  it('maxPacketSize counts the whole packet, fixed header included', () => {
    const bytes = encodePacket(publish(1, 95), 4); // 2 + 2 + 3 + 2 + 95 = 104 bytes
    assert.equal(bytes.length, 104);
    assert.equal(decodeOne(bytes, { protocolVersion: 4, maxPacketSize: 104 }).type, 3);
    void expectProtocolError(() => decodeOne(bytes, { protocolVersion: 4, maxPacketSize: 103 }), 0x95);
  });

  it('maxPacketSize is checked when the fixed header arrives byte by byte', () => {
    const d = new PacketDecoder({ protocolVersion: 4, maxPacketSize: 100 });
    d.feed(hex('30'), () => {});
    d.feed(hex('80'), () => {});
    assert.throws(
      () => d.feed(hex('01'), () => {}),
      (e: unknown) => e instanceof MqttProtocolError && e.reasonCode === 0x95,
    );
  });

  it('a body larger than 64 KiB is buffered as it arrives: same packets in any chunking, no reservation from the header', () => {
    const big = [publish(1, 1_000_000), publish(2, 65_536), publish(3, 200_000)];
    const bytes = Buffer.concat(big.map((p) => encodePacket(p, 4)));
    for (const step of [1000, 4096, 65_536, 100_000, 333_333]) {
      const d = new PacketDecoder({ protocolVersion: 4 });
      const out: Packet[] = [];
      for (let i = 0; i < bytes.length; i += step) d.feed(bytes.subarray(i, i + step), (p) => out.push(p));
      assert.deepStrictEqual(out, big, `chunks of ${step}`);
    }
    // 20 decoders each told that a 200 MB PUBLISH follows, with 10 bytes of it sent: no 200 MB buffers.
    const before = process.memoryUsage().arrayBuffers;
    const header = Buffer.from([0x30, 0x80, 0x80, 0x80, 0x64, 0, 1, 0x74, 1, 2, 3, 4, 5, 6, 7]);
    const decoders = Array.from({ length: 20 }, () => new PacketDecoder({ protocolVersion: 4 }));
    for (const d of decoders) d.feed(header, () => assert.fail('no packet yet'));
    assert.ok(process.memoryUsage().arrayBuffers - before < 10 * 1024 * 1024, 'buffers grow with the bytes received');
    assert.equal(decoders[0]!.bufferedBytes, header.length - 5);
  });

  it('payloads of packets inside one chunk are views of the chunk (zero-copy)', () => {
    const bytes = encodePacket(publish(1, 10), 4);
    const p = decodeOne(bytes, { protocolVersion: 4 }) as PublishPacket;
    assert.equal(p.payload.buffer, bytes.buffer);
  });

  it('the version switches after CONNECT in the same chunk', () => {
    const connect = encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'c' }, 5);
    const auth = hex('f0 00');
    const d = new PacketDecoder();
    const out: Packet[] = [];
    d.feed(Buffer.concat([connect, auth]), (p) => out.push(p));
    assert.deepEqual(out[1], { type: 15, reasonCode: 0, properties: {} });
  });
});

describe('encoder', () => {
  it('withPacketId copies an encoded PUBLISH with another packet id and DUP', () => {
    const p: PublishPacket = { type: 3, topic: 'a/b', payload: Buffer.from('xyz'), qos: 1, retain: true, dup: false, packetId: 1 };
    for (const version of [3, 4, 5] as const) {
      const enc = encodePublish(p, version);
      const off = publishPacketIdOffset(enc);
      assert.equal(enc.readUInt16BE(off), 1);
      const other = withPacketId(enc, 0xbeef, true);
      assert.equal(enc.readUInt16BE(off), 1, 'the original is unchanged');
      const dec = decodeOne(other, { protocolVersion: version, role: 'client' }) as PublishPacket;
      assert.equal(dec.packetId, 0xbeef);
      assert.equal(dec.dup, true);
      assert.equal(dec.retain, true);
      assert.equal((decodeOne(withPacketId(other, 2), { protocolVersion: version, role: 'client' }) as PublishPacket).dup, false);
    }
  });

  it('publishPacketIdOffset works with multi-byte remaining lengths', () => {
    const p: PublishPacket = { type: 3, topic: 'x'.repeat(300), payload: Buffer.alloc(20000), qos: 2, retain: false, dup: false, packetId: 77 };
    const enc = encodePublish(p, 4);
    assert.equal(enc.readUInt16BE(publishPacketIdOffset(enc)), 77);
  });

  it('encodePublish writes non-ASCII topics', () => {
    const p: PublishPacket = { type: 3, topic: 'ü/€/😀', payload: Buffer.from('x'), qos: 0, retain: false, dup: false };
    assert.deepStrictEqual(decodeOne(encodePublish(p, 4), { protocolVersion: 4 }), p);
  });

  it('QoS > 0 without packetId cannot be encoded', () => {
    void expectProtocolError(() => encodePublish({ type: 3, topic: 't', payload: Buffer.alloc(0), qos: 1, retain: false, dup: false }, 4), 0x82);
    void expectProtocolError(() => withPacketId(encodePublish({ type: 3, topic: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false }, 4), 1), 0x82);
  });

  it('AUTH cannot be encoded for 3.1.1; SUBSCRIBE needs a subscription', () => {
    void expectProtocolError(() => encodePacket({ type: 15 }, 4), 0x82);
    void expectProtocolError(() => encodePacket({ type: 8, packetId: 1, subscriptions: [] }, 4), 0x82);
    void expectProtocolError(() => encodePacket({ type: 10, packetId: 1, topicFilters: [] }, 4), 0x82);
  });

  it('a 3.1.1 password without user name cannot be encoded', () => {
    void expectProtocolError(
      () => encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'c', password: Buffer.from('p') }, 4),
      0x82,
    );
  });

  it('CONNECT takes the protocol name from the version', () => {
    const c = { type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'c' } as const;
    assert.equal((decodeOne(encodePacket(c, 3)) as { protocolName: string }).protocolName, 'MQIsdp');
    assert.equal((decodeOne(encodePacket(c, 5)) as { protocolVersion: number }).protocolVersion, 5);
  });
});

describe('encodePublish payload types', () => {
  it('a plain Uint8Array payload (not a Buffer) encodes the same bytes', () => {
    const bytes = new Uint8Array([1, 2, 3, 250]);
    const fromU8 = encodePublish({ type: 3, topic: 't', payload: bytes as Buffer, qos: 0, retain: false, dup: false }, 4);
    const fromBuffer = encodePublish({ type: 3, topic: 't', payload: Buffer.from(bytes), qos: 0, retain: false, dup: false }, 4);
    assert.deepEqual([...fromU8], [...fromBuffer]);
  });
});
