// The MQTT-SN 1.2 codec: every message type both ways, strict structural validation (spec section 5),
// random messages round-tripped and random bytes that never do worse than SnDecodeError.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeEncapsulated, decodeSn, encodeEncapsulated, encodeSn, isEncapsulated, SnDecodeError } from '../../src/mqttsn/codec.js';
import { SnType, type SnPacket } from '../../src/mqttsn/packets.js';
import { anyPacket, bytes, u8 } from './arbitraries.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function rejects(datagram: Buffer, pattern: RegExp): void {
  assert.throws(() => decodeSn(datagram), (err: unknown) => err instanceof SnDecodeError && pattern.test(err.message));
}

describe('MQTT-SN codec: property tests', () => {
  it('every message decodes to what was encoded (random fields, all 27 types)', () => {
    fc.assert(
      fc.property(anyPacket, (p) => {
        const wire = encodeSn(p);
        // [MQTT-SN 5.2.1] the Length field counts the whole message: 1 octet up to 255, else 0x01 + 2 octets.
        const length = wire[0] === 0x01 ? wire.readUInt16BE(1) : wire[0];
        assert.equal(length, wire.length);
        assert.equal(wire[0] === 0x01, wire.length > 255);
        assert.deepEqual(normalize(decodeSn(wire)), normalize(p));
      }),
      { numRuns: 3000 },
    );
  });

  it('random bytes never throw anything but SnDecodeError (fuzz)', () => {
    fc.assert(
      fc.property(bytes(80), (datagram) => {
        try {
          decodeSn(datagram);
        } catch (err) {
          assert.ok(err instanceof SnDecodeError, String(err));
        }
        if (isEncapsulated(datagram)) {
          try {
            decodeEncapsulated(datagram);
          } catch (err) {
            assert.ok(err instanceof SnDecodeError, String(err));
          }
        }
      }),
      { numRuns: 20000 },
    );
  });

  it('a valid message with one octet flipped, cut or added never throws anything but SnDecodeError', () => {
    fc.assert(
      fc.property(anyPacket, fc.nat(), u8, fc.constantFrom('flip', 'cut', 'add'), (p, at, value, how) => {
        const wire = encodeSn(p);
        const i = at % wire.length;
        const bad = how === 'flip' ? Buffer.from(wire).fill(value, i, i + 1) : how === 'cut' ? wire.subarray(0, i) : Buffer.concat([wire, Buffer.from([value])]);
        try {
          decodeSn(bad);
        } catch (err) {
          assert.ok(err instanceof SnDecodeError, String(err));
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe('MQTT-SN codec: the wire format (spec 5.2-5.4)', () => {
  it('CONNECT: flags, protocol id 0x01, duration, client id (5.4.4)', () => {
    const wire = hex('0c 04 0c 01 003c 73656e736f72');
    assert.deepEqual(decodeSn(wire), { type: SnType.CONNECT, will: true, cleanSession: true, protocolId: 1, duration: 60, clientId: 'sensor' });
    assert.deepEqual(encodeSn(decodeSn(wire)), wire);
  });

  it('PUBLISH: flags DUP/QoS/Retain/TopicIdType, topic id, msg id, data (5.4.12)', () => {
    // DUP, QoS 1, retain, predefined topic id 1, msg id 7, "21.5"
    const wire = hex('0b 0c b1 0001 0007 32312e35');
    const p = decodeSn(wire);
    assert.deepEqual(p, { type: SnType.PUBLISH, dup: true, qos: 1, retain: true, topic: { type: 1, id: 1 }, msgId: 7, payload: Buffer.from('21.5') });
    // QoS -1 is 0b11 in bits 6-5 (5.3.4); short topic names travel in the TopicId field
    const minus1 = decodeSn(hex('09 0c 62 6162 0000 6869'));
    assert.deepEqual(minus1, { type: SnType.PUBLISH, dup: false, qos: -1, retain: false, topic: { type: 2, name: 'ab' }, msgId: 0, payload: Buffer.from('hi') });
  });

  it('a message longer than 255 octets uses the 3-octet Length field (5.2.1)', () => {
    const p: SnPacket = { type: SnType.PUBLISH, dup: false, qos: 0, retain: false, topic: { type: 0, id: 1 }, msgId: 0, payload: Buffer.alloc(300, 1) };
    const wire = encodeSn(p);
    assert.equal(wire[0], 0x01);
    assert.equal(wire.readUInt16BE(1), 309);
    assert.equal(wire[3], SnType.PUBLISH);
    assert.deepEqual(decodeSn(wire), p);
    assert.throws(() => encodeSn({ ...p, payload: Buffer.alloc(0xffff) }), RangeError);
  });

  it('the Length field must equal the datagram size', () => {
    rejects(hex('05 16'), /Length field says 5 octets but the datagram has 2/);
    rejects(hex('02 16 00'), /Length field says 2/);
    rejects(hex('01 0004'), /3-octet Length/);
    rejects(hex('00'), /shorter than a header/);
    rejects(hex('00 16'), /Length field says 0/);
  });

  it('unknown MsgTypes are refused (reserved values in table 3)', () => {
    for (const t of [0x03, 0x11, 0x19, 0x1e, 0x80, 0xfd, 0xff]) rejects(Buffer.from([2, t]), /unknown MsgType/);
  });

  it('fixed-size messages must have exactly their size', () => {
    rejects(hex('04 05 00 00'), /CONNACK must have 1 octet/);
    rejects(hex('06 0d 0001 0001'), /PUBACK must have 5/);
    rejects(hex('03 0e 00'), /PUBCOMP must have 2/);
    rejects(hex('05 18 00 01 02'), /DISCONNECT must have 0 or 2/);
    rejects(hex('03 17 00'), /PINGRESP must have 0/);
    rejects(hex('04 00 01 00'), /ADVERTISE must have 3/);
  });

  it('the reserved TopicIdType 0b11 and QoS -1 outside PUBLISH are refused (5.3.4)', () => {
    rejects(hex('07 0c 03 0001 0000'), /reserved TopicIdType/);
    rejects(hex('07 12 03 0001 6162'), /reserved TopicIdType/);
    rejects(hex('07 12 60 0001 6162'), /QoS -1/);
    rejects(hex('04 07 60 61'), /QoS -1/);
    // [MQTT-SN 6.8] QoS -1 cannot use a normal (registered) topic id
    rejects(hex('07 0c 60 0001 0000'), /QoS -1 must use a predefined topic id or a short topic name/);
  });

  it('QoS 1 and 2 need a MsgId other than 0', () => {
    rejects(hex('07 0c 20 0001 0000'), /MsgId 0 at QoS 1/);
    rejects(hex('07 12 00 0000 6162'), /MsgId 0/);
  });

  it('strings must be UTF-8, names not empty; predefined ids and short names are exactly 2 octets', () => {
    rejects(hex('07 04 04 01 0000 ff'), /client id is not valid UTF-8/);
    rejects(hex('06 04 04 01 0000'), /at least 5/);
    rejects(hex('06 0a 0001 0001'), /at least 5/);
    rejects(hex('07 0a 0000 0001 c3'), /topic name is not valid UTF-8/);
    rejects(hex('06 12 01 0001 00'), /predefined topic id in 1 octets instead of 2/);
    rejects(hex('08 12 02 0001 616263'), /short topic name in 3 octets/);
  });

  it('an empty WILLTOPIC (2 octets) deletes the will (5.4.7)', () => {
    assert.deepEqual(decodeSn(hex('02 07')), { type: SnType.WILLTOPIC, qos: 0, retain: false, topic: undefined });
    assert.deepEqual(encodeSn({ type: SnType.WILLTOPICUPD, qos: 0, retain: false, topic: undefined }), hex('02 1a'));
    rejects(hex('03 07 20'), /empty will topic/);
  });

  it('forwarder encapsulation: Length covers the header up to the Wireless Node Id (5.5)', () => {
    const inner = encodeSn({ type: SnType.PINGREQ });
    const wire = encodeEncapsulated({ ctrl: 1, nodeId: hex('a1b2'), message: inner });
    assert.deepEqual(wire, hex('05 fe 01 a1b2 02 16'));
    assert.ok(isEncapsulated(wire));
    const e = decodeEncapsulated(wire);
    assert.equal(e.ctrl, 1);
    assert.deepEqual(e.nodeId, hex('a1b2'));
    assert.deepEqual(decodeSn(e.message), { type: SnType.PINGREQ });
    assert.throws(() => decodeEncapsulated(hex('03 fe 00 02 16')), SnDecodeError); // no node id
    assert.throws(() => decodeEncapsulated(hex('09 fe 00 a1 02 16')), SnDecodeError); // Length past the end
    // A 3-octet Length whose high byte is 0xFE is a long message, not an encapsulation
    assert.equal(isEncapsulated(hex('01 fe00 0c')), false);
  });
});

/** Payload views compare as plain Buffers. */
function normalize(p: SnPacket): unknown {
  return JSON.parse(JSON.stringify(p));
}
