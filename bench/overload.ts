// Overload benchmark (issue 24, chaos), not a test: a broker in its own process; three normal clients do
// request/response at QoS 1 through a responder, first alone (baseline), then beside one publisher pushing
// QoS 0 as fast as its socket drains (in a child process, to two subscribers that read). Prints the normal
// clients' latency percentiles and losses, and how much of the flood the broker took and delivered.
//
//   npm run bench:overload                      # Petrel, 10 s per phase
//   node dist/bench/overload.js [--seconds 10] [--payload 64] [--mosquitto] [--petrel-config '{"maxBytesRate":1000000}']
//
// --petrel-config adds a second Petrel run with that configuration (e.g. a per-client read budget).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { latencySummary, requestResponse, startQos0Flood, type RequestResult } from '../test/helpers/overload.js';
import { findMosquitto, freePort, killAllChildren, processCpuSeconds, spawnTracked, stopChild } from './brokers.js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = resolve(HERE, '..', '..', '..');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

/** The flood, in a child process: runs until stdin closes, then prints its counts as JSON. */
async function floodChild(): Promise<void> {
  const flood = await startQos0Flood(Number(arg('port', '0')), { payload: Number(arg('payload', '64')), readers: 2 });
  process.stdout.write('ready\n');
  await new Promise((r) => process.stdin.once('end', r).resume());
  process.stdout.write(JSON.stringify(await flood.stop()) + '\n');
}

function waitPort(port: number, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((res, rej) => {
    const attempt = () => {
      const s = createConnection({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        res();
      });
      s.on('error', () => (Date.now() > deadline ? rej(new Error(`port ${port} not open`)) : setTimeout(attempt, 100)));
    };
    attempt();
  });
}

const ms = (x: number) => (Number.isNaN(x) ? '-' : `${x.toFixed(1)} ms`);
function line(label: string, r: RequestResult, extra = ''): string {
  const l = latencySummary(r.latencies);
  return `| ${label} | ${r.responses}/${r.requests} | ${r.lost} | ${(r.responses / r.seconds).toFixed(0)} | ${ms(l.p50)} | ${ms(l.p90)} | ${ms(l.p99)} | ${ms(l.max)} | ${extra} |`;
}

async function measure(name: string, start: (dir: string, port: number) => ReturnType<typeof spawnTracked>, seconds: number, payload: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-overload-'));
  const port = await freePort();
  const broker = start(dir, port);
  try {
    await waitPort(port);
    console.log(line(`${name}, alone`, await requestResponse(port, { seconds })));
    const cpu0 = processCpuSeconds(broker.pid!);
    const flood = spawnTracked(process.execPath, [HERE, '--flood-child', '--port', String(port), '--payload', String(payload)], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    flood.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise<void>((r) => {
      const check = () => (out.includes('ready') ? r() : setTimeout(check, 20));
      check();
    });
    const t0 = Date.now();
    const r = await requestResponse(port, { seconds });
    flood.stdin!.end();
    await new Promise((res) => flood.once('exit', res));
    const elapsed = (Date.now() - t0) / 1000;
    const cpu1 = processCpuSeconds(broker.pid!);
    const counts = JSON.parse(out.split('\n').find((l) => l.startsWith('{')) ?? '{}') as { sent: number; deliveredBytes: number; packetBytes: number };
    const delivered = counts.deliveredBytes / counts.packetBytes / 2;
    const cpu = cpu0 !== undefined && cpu1 !== undefined ? `, broker CPU ${(((cpu1 - cpu0) / elapsed) * 100).toFixed(0)}%` : '';
    console.log(line(`${name}, beside the flood`, r, `flood written ${(counts.sent / elapsed / 1000).toFixed(0)}k msg/s, delivered ${(delivered / elapsed / 1000).toFixed(0)}k msg/s per reader (${((100 * delivered) / counts.sent).toFixed(0)}%)${cpu}`));
  } finally {
    await stopChild(broker);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--flood-child')) return floodChild();
  process.on('exit', killAllChildren);
  const seconds = Number(arg('seconds', '10'));
  const payload = Number(arg('payload', '64'));
  console.log(`overload: 3 requesters (QoS 1 request/response via a responder), ${seconds} s alone then ${seconds} s beside a QoS 0 flood of ${payload}-byte messages to 2 readers (Node.js ${process.version})`);
  console.log('| broker, phase | responses | lost | req/s | p50 | p90 | p99 | max | flood |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  const petrel = (config: string | undefined) => (dir: string, port: number) => {
    const args = [join(ROOT, 'bin', 'petrel.js'), 'broker', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'error'];
    if (config !== undefined) {
      writeFileSync(join(dir, 'petrel.config.json'), config);
      args.push('--config', join(dir, 'petrel.config.json'));
    }
    return spawnTracked(process.execPath, args, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  };
  await measure('petrel', petrel(undefined), seconds, payload);
  const config = arg('petrel-config', '');
  if (config) await measure(`petrel ${config}`, petrel(config), seconds, payload);
  if (process.argv.includes('--mosquitto')) {
    const bin = findMosquitto();
    if (!bin) console.log('mosquitto: not installed, skipped');
    else
      await measure(
        'mosquitto',
        (dir, port) => {
          const conf = join(dir, 'mosquitto.conf');
          writeFileSync(conf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\n`);
          return spawnTracked(bin, ['-c', conf], { cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] });
        },
        seconds,
        payload,
      );
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    killAllChildren();
    process.exit(1);
  },
);
