// `npm run fuzz`: the longer, bounded, seeded fuzz run (the suite runs a few seconds of the same).
//   node dist/test/fuzz/run.js [--seconds 60] [--seed 1] [--only decoder|model] [--compare [--runs N]]
// Decoder: coverage-guided mutation (V8 precise coverage of src/protocol). Model: fast-check model-based
// runs of connections on the in-memory core. --compare measures the blocks reached by the seeds alone, by
// unguided mutation and by guided mutation (for --seconds each, or --runs inputs each), each in a fresh process (block coverage needs code compiled
// after coverage starts). Exits 1 when an invariant broke, printing the input and the seed to replay.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Coverage } from './coverage.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const seconds = Number(arg('seconds', '60'));
const seed = Number(arg('seed', '1'));
const only = arg('only', 'all');

async function decoder(ms: number, guide: boolean): Promise<boolean> {
  // Coverage first, so that the decoder is compiled with block counters.
  const coverage = new Coverage((url) => url.includes('/src/protocol/'));
  coverage.start();
  const { fuzzDecoder } = await import('./decoder-fuzz.js');
  const runs = process.argv.includes('--runs') ? Number(arg('runs', '0')) : ms === 0 ? 0 : undefined;
  const r = fuzzDecoder({ seed, ms: runs === undefined ? ms : undefined, runs, coverage, guide });
  coverage.hits(); // what the last inputs ran, for the counts below
  coverage.stop();
  const { failures, ...rest } = r;
  const stats = { ...rest, blocksCovered: coverage.blocksSeen.size, blocksKnown: coverage.blocksKnown.size };
  console.log(`decoder fuzz (${ms === 0 ? 'seeds only' : guide ? 'coverage-guided' : 'unguided'}): ${JSON.stringify(stats)}`);
  for (const f of failures) console.log(`  FAILED ${f.invariant}: ${f.detail.slice(0, 400)}\n    v${f.version} ${f.role} input ${f.input}`);
  return failures.length === 0;
}

async function model(ms: number): Promise<boolean> {
  const { runModel } = await import('./connection-model.js');
  const r = runModel({ seed, ms });
  console.log(`model-based fuzz: ${JSON.stringify({ ...r, failure: undefined })}`);
  if (r.failure) console.log(`  FAILED (replay with --seed ${seed}): ${r.failure}`);
  return !r.failure;
}

async function main(): Promise<void> {
  if (process.argv.includes('--compare')) {
    const self = fileURLToPath(import.meta.url);
    for (const mode of ['seeds', 'unguided', 'guided']) {
      const runs = process.argv.includes('--runs') ? ['--runs', arg('runs', '0')] : [];
      const r = spawnSync(process.execPath, [self, '--child', mode, '--seconds', String(seconds), '--seed', String(seed), ...(mode === 'seeds' ? [] : runs)], { encoding: 'utf8' });
      process.stdout.write(r.stdout + r.stderr);
    }
    return;
  }
  const child = arg('child', '');
  if (child) {
    await decoder(child === 'seeds' ? 0 : seconds * 1000, child === 'guided');
    return;
  }
  let ok = true;
  const share = only === 'all' ? seconds / 2 : seconds;
  if (only !== 'model') ok = (await decoder(share * 1000, true)) && ok;
  if (only !== 'decoder') ok = (await model(share * 1000)) && ok;
  process.exitCode = ok ? 0 : 1;
}

await main();
