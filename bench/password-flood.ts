// Wrong-password flood benchmark (issue 24, defect 1), not a test: `clients` connections loop CONNECT with one
// user name and a wrong password for `seconds` on 127.0.0.1, while a legitimate user connects every 200 ms;
// prints the legitimate user's login latency (p50 / p99 / max) and refusals, for each broker given.
//
//   npm run build && node dist/bench/password-flood.js [--clients 400] [--seconds 10]
//       [--petrel <repo dir>[=label]]... [--mosquitto] [--petrel-config '{"loginProtection":{...}}']
//
// --petrel may repeat (e.g. a build of main and this one: before / after). The flood runs in a child
// process so that its 400 loops do not delay the measuring loop.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setPassword } from '../src/auth/password-file.js';
import { connectBytes, loginOnce, startFlood } from '../test/helpers/login-flood.js';
import { findMosquitto, freePort, killAllChildren, spawnTracked, stopChild } from './brokers.js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = resolve(HERE, '..', '..', '..');

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const all = (name: string): string[] => process.argv.flatMap((a, i) => (a === `--${name}` ? [process.argv[i + 1]!] : []));

async function floodChild(): Promise<void> {
  const port = Number(arg('port'));
  const flood = startFlood(port, { clients: Number(arg('clients')), username: 'bob' });
  await new Promise((r) => setTimeout(r, Number(arg('seconds')) * 1000));
  const codes = await flood.stop();
  process.stdout.write(JSON.stringify(codes) + '\n');
}

function waitPort(port: number, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((res, rej) => {
    const attempt = () => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), res()));
      s.once('error', () => (Date.now() > deadline ? rej(new Error(`nothing listens on ${port}`)) : setTimeout(attempt, 50)));
    };
    attempt();
  });
}

interface Target {
  label: string;
  start(dir: string, port: number): Promise<ReturnType<typeof spawnTracked>>;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function run(target: Target, clients: number, seconds: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-flood-bench-'));
  const port = await freePort();
  const broker = await target.start(dir, port);
  try {
    await waitPort(port);
    const flood = spawnTracked(process.execPath, [HERE, '--flood-child', '--port', String(port), '--clients', String(clients), '--seconds', String(seconds)]);
    let floodOut = '';
    flood.stdout!.on('data', (d: Buffer) => (floodOut += d.toString()));
    const floodDone = new Promise((r) => flood.once('exit', r));
    await new Promise((r) => setTimeout(r, 1000)); // the flood is under way
    const times: number[] = [];
    const refusals: Record<string, number> = {};
    let first: number | undefined;
    const end = Date.now() + (seconds - 1.5) * 1000;
    for (let i = 0; Date.now() < end; i++) {
      const { code, ms } = await loginOnce(port, connectBytes(`alice-${i}`, 'alice', 'alice-pw'), 10_000);
      if (code === 0) {
        times.push(ms);
        first ??= ms;
      } else refusals[code === null ? 'closed/timeout' : `0x${code.toString(16)}`] = (refusals[code === null ? 'closed/timeout' : `0x${code.toString(16)}`] ?? 0) + 1;
      await new Promise((r) => setTimeout(r, 200));
    }
    await floodDone;
    const sorted = [...times].sort((a, b) => a - b);
    const f = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '-' : `${x.toFixed(0)} ms`);
    console.log(
      `${target.label.padEnd(28)} logins ok ${String(times.length).padStart(3)}, refused ${JSON.stringify(refusals)}; first ${f(first)}, p50 ${f(pct(sorted, 50))}, p99 ${f(pct(sorted, 99))}, max ${f(sorted.at(-1))}; flood answers ${floodOut.trim()}`,
    );
  } finally {
    await stopChild(broker);
    rmSync(dir, { recursive: true, force: true });
  }
}

function petrel(repo: string, label: string, config: string | undefined): Target {
  return {
    label,
    async start(dir, port) {
      const file = join(dir, 'passwd');
      await setPassword(file, 'alice', 'alice-pw');
      await setPassword(file, 'bob', 'bob-pw');
      const args = [join(repo, 'bin', 'petrel.js'), 'broker', '--host', '127.0.0.1', '--port', String(port), '--password-file', file, '--no-anonymous', '--log-level', 'error'];
      if (config) {
        writeFileSync(join(dir, 'petrel.config.json'), config);
        args.push('--config', join(dir, 'petrel.config.json'));
      }
      return spawnTracked(process.execPath, args, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
    },
  };
}

function mosquitto(bin: string): Target {
  return {
    label: 'mosquitto',
    async start(dir, port) {
      const file = join(dir, 'passwd');
      spawnSync('mosquitto_passwd', ['-b', '-c', file, 'alice', 'alice-pw']);
      spawnSync('mosquitto_passwd', ['-b', file, 'bob', 'bob-pw']);
      const conf = join(dir, 'mosquitto.conf');
      // As root, mosquitto would drop to user "mosquitto", who cannot read the password file in our 0700 scratch dir.
      writeFileSync(conf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${file}\npersistence false\nlog_dest stderr\nlog_type error\nconnection_messages false\nmax_connections -1\n`);
      return spawnTracked(bin, ['-c', conf], { cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] });
    },
  };
}

async function main(): Promise<void> {
  if (process.argv.includes('--flood-child')) return floodChild();
  process.on('exit', killAllChildren);
  const clients = Number(arg('clients', '400'));
  const seconds = Number(arg('seconds', '10'));
  const targets: Target[] = [];
  const petrels = all('petrel');
  for (const p of petrels.length ? petrels : [ROOT]) {
    const [dir, label] = p.split('=');
    targets.push(petrel(resolve(dir!), label ?? `petrel (${dir})`, arg('petrel-config')));
  }
  if (process.argv.includes('--mosquitto')) {
    const bin = findMosquitto();
    if (bin) targets.push(mosquitto(bin));
    else console.log('mosquitto: not installed, skipped');
  }
  console.log(`wrong-password flood: ${clients} clients, ${seconds} s, user "bob"; legitimate user "alice" every 200 ms (CONNECT → CONNACK)`);
  for (const t of targets) await run(t, clients, seconds);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
