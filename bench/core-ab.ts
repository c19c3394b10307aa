// A/B runs of bench/core.ts between builds: each build's dist/bench/core.js in its own process, alternating
// (A B C, then C B A, ...) so a machine whose load drifts disturbs each build alike; CPU clock. On a shared
// machine one round's time only ever grows with the load, so the figures that compare builds are the fastest
// round and the median of each process's fastest round (the median of medians is printed too).
// Run: node dist/bench/core-ab.js RUNS name=dir [name=dir ...]   (the first build is the reference)
// Env: AB_SCENARIOS=prefix|prefix... (default: the six of issue 19), BENCH_ROUNDS (20), BENCH_MESSAGES (50000).
import { execFileSync } from 'node:child_process';
import process from 'node:process';

const [runsArg, ...buildArgs] = process.argv.slice(2);
const runs = Number(runsArg);
const builds = buildArgs.map((arg) => {
  const at = arg.indexOf('=');
  return { name: arg.slice(0, at), dir: arg.slice(at + 1) };
});
if (!(runs > 0) || builds.length < 2 || builds.some((b) => b.name === '' || b.dir === '')) {
  console.error('usage: node dist/bench/core-ab.js RUNS name=dir name=dir [...]  (each dir holds a built dist/bench/core.js)');
  process.exit(2);
}
const scenarios = (process.env.AB_SCENARIOS ?? 'pairs-q0 (|pairs-q1|fanout|fanin-q0 (|fanin-q0 over|pairs-q0, another').split('|');

/** Per scenario and build: each process's median and fastest round (ns per delivered message). */
const results = new Map<string, { median: number; min: number }[]>();
for (let run = 0; run < runs; run++) {
  for (const scenario of scenarios) {
    const order = run % 2 === 0 ? builds : [...builds].reverse();
    for (const build of order) {
      const env = { ...process.env, BENCH_CLOCK: 'cpu', BENCH_ONLY: scenario, BENCH_ROUNDS: process.env.BENCH_ROUNDS ?? '20', BENCH_MESSAGES: process.env.BENCH_MESSAGES ?? '50000' };
      const out = execFileSync(process.execPath, ['dist/bench/core.js'], { cwd: build.dir, env, encoding: 'utf8' });
      const row = /^\| (.+?) \| (\d+) \| (\d+)–(\d+) \|$/m.exec(out);
      if (row === null) throw new Error(`no result from ${build.name} for ${scenario}:\n${out}`);
      const key = `${row[1]}\u0000${build.name}`;
      if (!results.has(key)) results.set(key, []);
      results.get(key)!.push({ median: Number(row[2]), min: Number(row[3]) });
    }
  }
  process.stderr.write(`run ${run + 1} of ${runs} done\n`);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const names = [...new Set([...results.keys()].map((k) => k.split('\u0000')[0]!))];
console.log(`ns per delivered message, CPU clock, ${runs} processes per build of ${process.env.BENCH_ROUNDS ?? 20} rounds; fastest / median of process minima / median of process medians`);
console.log(`| scenario | ${builds.map((b) => b.name).join(' | ')} | ${builds.slice(1).map((b) => `${b.name} / ${builds[0]!.name}`).join(' | ')} |`);
console.log(`|---|${builds.map(() => '---|').join('')}${builds.slice(1).map(() => '---|').join('')}`);
for (const name of names) {
  const stats = builds.map((b) => {
    const xs = results.get(`${name}\u0000${b.name}`) ?? [];
    return [Math.min(...xs.map((x) => x.min)), median(xs.map((x) => x.min)), median(xs.map((x) => x.median))];
  });
  const ref = stats[0]!;
  const ratios = stats.slice(1).map((s) => s.map((v, i) => (v / ref[i]!).toFixed(2)).join(' / '));
  console.log(`| ${name} | ${stats.map((s) => s.join(' / ')).join(' | ')} | ${ratios.join(' | ')} |`);
}
