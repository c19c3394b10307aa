// Grammar-aware mutation of MQTT packets: a packet is split into its fixed header (type and flags), its
// Remaining Length and its body; mutations work on those parts (flags, lengths, string length prefixes,
// property identifiers, UTF-8 hazards, splices) and usually keep the framing consistent, so that the
// mutated input gets past the fixed header and into the body's parsers.
import { Buffer } from 'node:buffer';
import { seededRandom } from '../helpers/seeded.js';

/** Seeded draws (test/helpers/seeded.ts): the same seed gives the same inputs. */
export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = seededRandom(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    return Buffer.from(Array.from({ length: n }, () => this.int(256)));
  }
}

export function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    out.push(d);
  } while (n > 0);
  return out;
}

interface Framed {
  first: number;
  body: Buffer;
}

/** Splits a packet into fixed header byte and body (the Remaining Length is recomputed on join). */
export function split(bytes: Buffer): Framed {
  let i = 1;
  while (i < bytes.length && i < 5 && bytes[i]! & 0x80) i++;
  return { first: bytes[0] ?? 0, body: bytes.subarray(Math.min(bytes.length, i + 1)) };
}

export const join = (f: Framed): Buffer => Buffer.concat([Buffer.from([f.first, ...varint(f.body.length)]), f.body]);

const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x03, 0x7f, 0x80, 0xff, 0xfe, 0x2b, 0x23, 0x2f, 0x24];
const INTERESTING_U16 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xfffe, 0xffff];
/** Every 5.0 property identifier, and a few that are not one. */
const PROPERTY_IDS = [0x01, 0x02, 0x03, 0x08, 0x09, 0x0b, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1c, 0x1f, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x00, 0x04, 0x7f, 0x80];
/** Ill-formed UTF-8 and code points the spec forbids: surrogate, overlong NUL, NUL, 0xff, U+FFFF. */
const UTF8_HAZARDS = [[0xed, 0xa0, 0x80], [0xc0, 0x80], [0x00], [0xff], [0xef, 0xbf, 0xbf], [0xe2, 0x82]];

type Mutation = (f: Framed, rng: Rng, other: Buffer) => Framed | Buffer;

const withBody = (f: Framed, body: Buffer): Framed => ({ first: f.first, body });

export const MUTATIONS: Record<string, Mutation> = {
  flags: (f, rng) => ({ first: (f.first & 0xf0) | rng.int(16), body: f.body }),
  type: (f, rng) => ({ first: (rng.int(16) << 4) | (f.first & 0x0f), body: f.body }),
  // A Remaining Length that lies (framing left inconsistent on purpose), or an overlong one.
  lengthLie: (f, rng) => {
    const lies = [f.body.length + 1 + rng.int(4), Math.max(0, f.body.length - 1 - rng.int(4)), 268_435_455, 0];
    const header = rng.int(4) === 0 ? [0x80, 0x80, 0x80, 0x80, 0x01] : varint(rng.pick(lies));
    return Buffer.concat([Buffer.from([f.first, ...header]), f.body]);
  },
  truncate: (f, rng) => withBody(f, f.body.subarray(0, rng.int(f.body.length + 1))),
  extend: (f, rng) => withBody(f, Buffer.concat([f.body, rng.bytes(1 + rng.int(8))])),
  byte: (f, rng) => {
    if (f.body.length === 0) return f;
    const body = Buffer.from(f.body);
    body[rng.int(body.length)] = rng.int(3) === 0 ? rng.int(256) : rng.pick(INTERESTING_BYTES);
    return withBody(f, body);
  },
  // A string's 2-byte length prefix (or any two bytes) set to a boundary value.
  u16: (f, rng) => {
    if (f.body.length < 2) return f;
    const body = Buffer.from(f.body);
    body.writeUInt16BE(rng.pick(INTERESTING_U16), rng.int(body.length - 1));
    return withBody(f, body);
  },
  // A property (identifier + a plausible value) inserted anywhere; the property length is not fixed up
  // half of the time.
  property: (f, rng) => {
    const id = rng.pick(PROPERTY_IDS);
    const values = [[], [rng.int(256)], [0, 0], [0, 1, 0x61], [0, 0, 0, 0], [0x80, 0x80, 0x01]];
    const at = rng.int(f.body.length + 1);
    return withBody(f, Buffer.concat([f.body.subarray(0, at), Buffer.from([id, ...rng.pick(values)]), f.body.subarray(at)]));
  },
  utf8: (f, rng) => {
    const at = rng.int(f.body.length + 1);
    return withBody(f, Buffer.concat([f.body.subarray(0, at), Buffer.from(rng.pick(UTF8_HAZARDS)), f.body.subarray(at)]));
  },
  delete: (f, rng) => {
    if (f.body.length === 0) return f;
    const at = rng.int(f.body.length);
    return withBody(f, Buffer.concat([f.body.subarray(0, at), f.body.subarray(at + 1 + rng.int(4))]));
  },
  duplicate: (f, rng) => {
    if (f.body.length === 0) return f;
    const at = rng.int(f.body.length);
    const piece = f.body.subarray(at, at + 1 + rng.int(8));
    return withBody(f, Buffer.concat([f.body.subarray(0, at), piece, piece, f.body.subarray(at)]));
  },
  // Another packet's body under this header, or this packet followed by another (a stream).
  splice: (f, rng, other) => (rng.int(2) === 0 ? withBody(f, split(other).body) : Buffer.concat([join(f), other])),
};
const NAMES = Object.keys(MUTATIONS);

/** 1 to 3 mutations of `input`; `other` is a second packet for splices. */
export function mutate(input: Buffer, other: Buffer, rng: Rng): Buffer {
  let out = input;
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) {
    const r = MUTATIONS[rng.pick(NAMES)]!(split(out), rng, other);
    out = Buffer.isBuffer(r) ? r : join(r);
  }
  return out;
}
