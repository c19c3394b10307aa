// Tables shared by the decoder and the encoder: packet names, where each property may go
// (as bit masks), and which 5.0 reason codes each packet type may carry.
import { PROPERTY_DEFINITIONS } from './properties.js';

/** Upper-case packet names by type, for error messages. */
export const PACKET_NAMES: readonly string[] = [
  'RESERVED',
  'CONNECT',
  'CONNACK',
  'PUBLISH',
  'PUBACK',
  'PUBREC',
  'PUBREL',
  'PUBCOMP',
  'SUBSCRIBE',
  'SUBACK',
  'UNSUBSCRIBE',
  'UNSUBACK',
  'PINGREQ',
  'PINGRESP',
  'DISCONNECT',
  'AUTH',
];

/** Property "place" index of the Will Properties of CONNECT (packet types use 1..15). */
export const WILL_PLACE = 16;

/** placeName(16) = "CONNECT will", placeName(3) = "PUBLISH". */
export function placeName(place: number): string {
  return place === WILL_PLACE ? 'CONNECT will' : PACKET_NAMES[place]!;
}

/** For each property id: bit (1 << place) set for each place that allows it; 0 for unknown ids. */
export const PROPERTY_PLACE_MASK: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (const def of PROPERTY_DEFINITIONS) {
    let m = 0;
    for (const p of def.places) m |= 1 << (p === 'will' ? WILL_PLACE : p);
    t[def.id] = m;
  }
  return t;
})();

/** For each property id: a distinct bit, to find duplicates with one integer. */
export const PROPERTY_SEEN_BIT: Uint32Array = (() => {
  const t = new Uint32Array(256);
  PROPERTY_DEFINITIONS.forEach((def, i) => {
    t[def.id] = 2 ** i;
  });
  return t;
})();

function codeSet(codes: number[]): Uint8Array {
  const t = new Uint8Array(256);
  for (const c of codes) t[c] = 1;
  return t;
}

/** 5.0 reason codes each packet type may carry (spec 3.x.2.1); indexed by packet type. */
export const ALLOWED_REASON_CODES: readonly (Uint8Array | undefined)[] = (() => {
  const t: (Uint8Array | undefined)[] = new Array(16).fill(undefined);
  t[2] = codeSet([
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c,
    0x9d, 0x9f,
  ]);
  t[4] = t[5] = codeSet([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]);
  t[6] = t[7] = codeSet([0x00, 0x92]);
  t[9] = codeSet([0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2]);
  t[11] = codeSet([0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91]);
  t[14] = codeSet([
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
    0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2,
  ]);
  t[15] = codeSet([0x00, 0x18, 0x19]);
  return t;
})();

/** Number of bytes of the Variable Byte Integer encoding of `n` (0 ≤ n ≤ 268435455). */
export function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

/** Writes `n` as a Variable Byte Integer at `off`; returns the offset after it. */
export function writeVarint(buf: Buffer, off: number, n: number): number {
  while (n >= 128) {
    buf[off++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[off++] = n;
  return off;
}
