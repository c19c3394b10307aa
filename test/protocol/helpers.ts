// Shared helpers of the protocol tests.
import assert from 'node:assert/strict';
import { PacketDecoder, type DecoderOptions } from '../../src/protocol/decoder.js';
import { MqttProtocolError } from '../../src/protocol/errors.js';
import type { Packet } from '../../src/protocol/packets.js';

/** Bytes from a hex string; whitespace ignored. */
export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** Decodes `bytes` fed as one chunk; fails when bytes are left over. */
export function decodeAll(bytes: Buffer, options: DecoderOptions = {}): Packet[] {
  const decoder = new PacketDecoder(options);
  const out: Packet[] = [];
  decoder.feed(bytes, (p) => out.push(p));
  assert.equal(decoder.bufferedBytes, 0, 'bytes left over after the last packet');
  return out;
}

export function decodeOne(bytes: Buffer, options: DecoderOptions = {}): Packet {
  const packets = decodeAll(bytes, options);
  assert.equal(packets.length, 1);
  return packets[0]!;
}

/** Asserts that `fn` throws an MqttProtocolError with `reasonCode`; returns it. */
export function expectProtocolError(fn: () => unknown, reasonCode: number, messagePattern?: RegExp): MqttProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof MqttProtocolError, `expected MqttProtocolError, got ${String(caught)}`);
  assert.equal(
    caught.reasonCode,
    reasonCode,
    `expected reason 0x${reasonCode.toString(16)}, got 0x${caught.reasonCode.toString(16)}: ${caught.message}`,
  );
  if (messagePattern) assert.match(caught.message, messagePattern);
  return caught;
}

/** Asserts that decoding `bytes` fails with `reasonCode`. */
export function expectDecodeError(
  bytes: Buffer,
  options: DecoderOptions,
  reasonCode: number,
  messagePattern?: RegExp,
): MqttProtocolError {
  return expectProtocolError(() => decodeAll(bytes, options), reasonCode, messagePattern);
}

/** Fixed header + body: prepends type byte and (single-byte or longer) remaining length. */
export function packet(first: number, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? hex(body) : body;
  const len: number[] = [];
  let n = b.length;
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    len.push(d);
  } while (n > 0);
  return Buffer.concat([Buffer.from([first, ...len]), b]);
}

/** UTF-8 string field (2-byte length prefix) as hex. */
export function str(s: string | Buffer): string {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]).toString('hex');
}

/** Splits `buf` at the given cut points (taken modulo its length). */
export function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % (buf.length + 1))))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}
