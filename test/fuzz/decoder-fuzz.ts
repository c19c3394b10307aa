// The decoder fuzzer: mutated packets (test/fuzz/mutate.ts) fed to PacketDecoder, whole and in random
// chunks. Invariants: the only exception is MqttProtocolError with a known reason code; chunking changes
// nothing; every packet decoded re-encodes to bytes that decode to the same packet. With `coverage`, an input
// that runs new decoder code joins the corpus (V8 precise coverage).
import { Buffer } from 'node:buffer';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { reasonName } from '../../src/protocol/constants.js';
import { PacketDecoder, type DecoderOptions } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import { MqttProtocolError } from '../../src/protocol/errors.js';
import type { Packet } from '../../src/protocol/packets.js';
import type { Coverage } from './coverage.js';
import { mutate, Rng } from './mutate.js';
import { allSeeds, type Seed } from './seeds.js';

export interface Failure {
  invariant: string;
  detail: string;
  version: ProtocolVersion;
  role: 'server' | 'client';
  /** The input, hex. */
  input: string;
}

export interface FuzzReport {
  seed: number;
  runs: number;
  ms: number;
  corpus: number;
  /** Inputs kept because they reached new code (coverage runs only). */
  kept: number;
  /** Blocks of src/protocol run at least once / known (coverage runs only). */
  blocksCovered?: number;
  blocksKnown?: number;
  failures: Failure[];
}

interface Outcome {
  packets: string[];
  error?: string;
}

const show = (p: Packet) => JSON.stringify(p, (_k, v: unknown) => (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? `hex:${Buffer.from((v as { data: number[] }).data).toString('hex')}` : v));

function decode(chunks: Buffer[], options: DecoderOptions): Outcome & { raw: Packet[]; thrown?: unknown } {
  const decoder = new PacketDecoder(options);
  const raw: Packet[] = [];
  try {
    for (const c of chunks) decoder.feed(c, (p) => raw.push(p));
  } catch (thrown) {
    const error = thrown instanceof MqttProtocolError ? `0x${thrown.reasonCode.toString(16)}` : 'not MqttProtocolError';
    return { packets: raw.map(show), raw, error, thrown };
  }
  return { packets: raw.map(show), raw };
}

function chunk(input: Buffer, rng: Rng): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < input.length; ) {
    const n = 1 + rng.int(Math.max(1, Math.min(input.length - i, 16)));
    out.push(input.subarray(i, i + n));
    i += n;
  }
  return out;
}

/** Checks one input; returns the broken invariant, if any. */
export function checkInput(input: Buffer, seed: Pick<Seed, 'version' | 'role'>, rng: Rng): Omit<Failure, 'input' | 'version' | 'role'> | undefined {
  // A server-side decoder learns the version from CONNECT; give it none for CONNECT inputs half of the time.
  const learns = seed.role === 'server' && input[0] !== undefined && input[0] >> 4 === 1 && rng.int(2) === 0;
  const options: DecoderOptions = { protocolVersion: learns ? undefined : seed.version, role: seed.role, maxPacketSize: 64 * 1024 };
  const whole = decode([input], options);
  if (whole.thrown !== undefined) {
    if (!(whole.thrown instanceof MqttProtocolError)) return { invariant: 'only MqttProtocolError escapes', detail: String((whole.thrown as Error)?.stack ?? whole.thrown) };
    if (whole.thrown.reasonCode < 0x80 || reasonName(whole.thrown.reasonCode).includes('Unknown')) {
      return { invariant: 'the error carries a reason code', detail: whole.thrown.message };
    }
  }
  const chunked = decode(chunk(input, rng), options);
  if (chunked.error !== whole.error || chunked.packets.join('\n') !== whole.packets.join('\n')) {
    return { invariant: 'chunking changes nothing', detail: `whole: ${whole.error ?? 'ok'} ${whole.packets.length} packets; chunked: ${chunked.error ?? 'ok'} ${chunked.packets.length}` };
  }
  let version = seed.version;
  for (const p of whole.raw) {
    if (p.type === 1) version = p.protocolVersion;
    let bytes: Buffer;
    try {
      bytes = Buffer.from(encodePacket(p, version));
    } catch (err) {
      return { invariant: 'a decoded packet encodes', detail: `${show(p)}: ${String(err)}` };
    }
    const again = decode([bytes], { protocolVersion: p.type === 1 ? undefined : version, role: seed.role });
    if (again.error !== undefined || again.packets.length !== 1 || again.packets[0] !== show(p)) {
      return { invariant: 'decode → encode → decode is the identity', detail: `${show(p)} → ${bytes.toString('hex')} → ${again.error ?? again.packets.join(' ')}` };
    }
  }
  return undefined;
}

const BATCH = 32;

/**
 * Runs the fuzzer for `runs` inputs or `ms` milliseconds, whichever ends first. With a started `coverage`,
 * inputs run in batches of BATCH with one coverage reading each (a reading costs ~20 ms: it covers every script); a batch that reached
 * new code is run again input by input to keep only the inputs that did.
 */
export function fuzzDecoder(options: { seed: number; runs?: number; ms?: number; coverage?: Coverage; guide?: boolean; maxFailures?: number }): FuzzReport {
  const rng = new Rng(options.seed);
  const corpus: Seed[] = allSeeds();
  const cov = options.coverage;
  const failures: Failure[] = [];
  const seen = new Set<string>();
  const start = Date.now();
  let runs = 0;
  let kept = 0;
  const maxRuns = options.runs ?? Infinity;
  const maxMs = options.ms ?? Infinity;
  const check = (input: Buffer, base: Seed, r: Rng): boolean => {
    const failure = checkInput(input, base, r);
    if (failure && !seen.has(failure.invariant + failure.detail.slice(0, 60))) {
      seen.add(failure.invariant + failure.detail.slice(0, 60));
      failures.push({ ...failure, version: base.version, role: base.role, input: input.toString('hex') });
    }
    return failures.length < (options.maxFailures ?? 20);
  };
  // The seeds themselves first (the baseline a comparison starts from).
  for (const s of corpus) check(s.bytes, s, new Rng(runs++));
  if (cov && options.guide !== false) cov.take();
  outer: while (runs < maxRuns && Date.now() - start < maxMs) {
    const batch: { input: Buffer; base: Seed; seed: number }[] = [];
    for (let i = 0; i < BATCH && runs < maxRuns; i++, runs++) {
      const base = rng.pick(corpus);
      const input = mutate(base.bytes, rng.pick(corpus).bytes, rng);
      const seed = rng.int(2 ** 31);
      batch.push({ input, base, seed });
      if (!check(input, base, new Rng(seed))) break outer;
    }
    if (!cov || options.guide === false) continue;
    const fresh = new Set(cov.take());
    if (fresh.size === 0 || corpus.length >= 5000) continue;
    for (const b of batch) {
      check(b.input, b.base, new Rng(b.seed));
      const hit = [...cov.hits()].filter((f) => fresh.has(f));
      if (hit.length === 0) continue;
      for (const f of hit) fresh.delete(f);
      corpus.push({ name: `kept-${kept++}`, version: b.base.version, role: b.base.role, bytes: b.input });
    }
  }
  return {
    seed: options.seed,
    runs,
    ms: Date.now() - start,
    corpus: corpus.length,
    kept,
    blocksCovered: cov?.blocksSeen.size,
    blocksKnown: cov?.blocksKnown.size,
    failures,
  };
}
