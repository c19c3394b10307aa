// Seed inputs of the decoder fuzzer: the codec's hand-checked byte vectors (test/protocol/vectors.test.ts,
// read as text so that the test file stays as it is), plus a few packets the vectors lack.
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProtocolVersion } from '../../src/protocol/constants.js';

export interface Seed {
  name: string;
  version: ProtocolVersion;
  role: 'server' | 'client';
  bytes: Buffer;
}

/** The repository root, from dist/test/fuzz or test/fuzz. */
function root(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      readFileSync(join(dir, 'package.json'));
      return dir;
    } catch {
      dir = dirname(dir);
    }
  }
  throw new Error('repository root not found');
}

const VECTOR = /name:\s*'([^']*)',\s*version:\s*(\d),\s*role:\s*'(server|client)',\s*bytes:\s*((?:'[0-9a-fA-F ]*'\s*\+?\s*)+)/g;

/** Every vector of test/protocol/vectors.test.ts (name, version, role, bytes). */
export function vectorSeeds(): Seed[] {
  const text = readFileSync(join(root(), 'test', 'protocol', 'vectors.test.ts'), 'utf8');
  const out: Seed[] = [];
  for (const m of text.matchAll(VECTOR)) {
    const hex = m[4]!.replace(/['+\s]/g, '');
    out.push({ name: m[1]!, version: Number(m[2]) as ProtocolVersion, role: m[3] as 'server' | 'client', bytes: Buffer.from(hex, 'hex') });
  }
  return out;
}

const h = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');

/** Packets with what the vectors lack: many properties, a will with properties, several filters. */
export const EXTRA_SEEDS: Seed[] = [
  // 5.0 PUBLISH QoS 1 with Response Topic, Correlation Data, User Property, Subscription Identifier-free
  { name: 'v5 publish props', version: 5, role: 'server', bytes: h('32 1c 0003 612f62 0001 12 08 0003 722f74 09 0002 6364 26 0001 6b 0001 76 01 01 78') },
  // 5.0 CONNECT with a will carrying Response Topic and Will Delay
  { name: 'v5 connect will props', version: 5, role: 'server', bytes: h('10 23 0004 4d515454 05 06 003c 00 0001 63 0b 08 0003 722f74 18 0000000a 0001 77 0001 78') },
  // 3.1.1 SUBSCRIBE with two filters, UNSUBSCRIBE with two
  { name: 'v4 subscribe 2', version: 4, role: 'server', bytes: h('82 0e 0001 0003 612f2b 01 0003 622f23 02') },
  { name: 'v4 unsubscribe 2', version: 4, role: 'server', bytes: h('a2 0c 0001 0003 612f2b 0003 622f23') },
  // 5.0 SUBSCRIBE with a Subscription Identifier and options
  { name: 'v5 subscribe subid', version: 5, role: 'server', bytes: h('82 0b 0001 02 0b 07 0003 612f62 2d') },
];

export function allSeeds(): Seed[] {
  return [...vectorSeeds(), ...EXTRA_SEEDS];
}
