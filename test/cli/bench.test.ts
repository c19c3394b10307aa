// petrel bench: the histogram, a programmatic pub → sub run, and the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyHistogram, runBench, formatSummary } from '../../src/bench/index.js';
import { resolveOptions } from '../../src/client/options.js';
import { createBroker } from '../../src/index.js';
import { freePort } from '../helpers/servers.js';
import { run } from './cli-process.js';

type Ctx = { after: (fn: () => unknown) => void };

async function broker(t: Ctx): Promise<number> {
  const b = createBroker({ port: 0, host: '127.0.0.1' });
  await b.listen();
  t.after(() => b.close());
  return b.address().port;
}

test('latency histogram: percentiles within 1 %, max exact', () => {
  const h = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) h.record(i / 10); // 0.1 .. 100 ms
  const s = h.summary();
  assert.equal(s.count, 1000);
  assert.equal(s.max, 100);
  assert.ok(Math.abs(s.p50 - 50) / 50 < 0.011, `p50 ${s.p50}`);
  assert.ok(Math.abs(s.p95 - 95) / 95 < 0.011, `p95 ${s.p95}`);
  assert.ok(Math.abs(s.p99 - 99) / 99 < 0.011, `p99 ${s.p99}`);
  assert.ok(Math.abs(s.mean - 50.05) < 1e-9);
  assert.equal(new LatencyHistogram().percentile(99), 0);
});

test('runBench: publishers and subscribers through the broker, QoS 1, counts and latencies add up', async (t) => {
  const port = await broker(t);
  const connection = resolveOptions(`mqtt://127.0.0.1:${port}`, { clientId: 'bt', keepAlive: 30 });
  const subRun = runBench({ mode: 'sub', connection: { ...connection, clientId: 'bt_sub' }, clients: 2, connectRate: 1000, rate: 0, qos: 1, size: 64, topic: 'bt/%i', count: 4000, inflight: 1, retain: false });
  await new Promise((r) => setTimeout(r, 150)); // subscribers first
  const progress: string[] = [];
  const pub = await runBench({
    mode: 'pub',
    connection: { ...connection, clientId: 'bt_pub' },
    clients: 2,
    connectRate: 1000,
    rate: 0,
    qos: 1,
    size: 64,
    topic: 'bt/%i',
    count: 4000,
    inflight: 50,
    retain: false,
    onProgress: (line) => progress.push(line),
  });
  const sub = await subRun;
  assert.equal(pub.clients.connected, 2);
  assert.equal(pub.sent, 4000);
  assert.equal(pub.acknowledged, 4000);
  assert.equal(pub.ackLatency.count, 4000);
  assert.ok(pub.ackLatency.p50 > 0 && pub.ackLatency.p50 <= pub.ackLatency.p99 && pub.ackLatency.p99 <= pub.ackLatency.max);
  assert.equal(sub.received, 4000);
  assert.equal(sub.latency.count, 4000, 'every payload carried a timestamp');
  assert.ok(sub.latency.max < 5000);
  assert.deepEqual(pub.errors, []);
  assert.match(formatSummary(sub), /latency {8}p50 [\d.]+ ms {2}p95 [\d.]+ ms {2}p99 [\d.]+ ms {2}max [\d.]+ ms {2}\(4000 samples\)/);
});

test('runBench: a publish rate is kept, not exceeded', async (t) => {
  const port = await broker(t);
  const connection = resolveOptions(`mqtt://127.0.0.1:${port}`, { clientId: 'rate' });
  const pub = await runBench({ mode: 'pub', connection, clients: 2, connectRate: 1000, rate: 200, qos: 0, size: 16, topic: 'rate/%i', duration: 0.5, inflight: 10, retain: false });
  // 2 clients × 200/s × ~0.5 s = ~200 (the first message of each goes at once)
  assert.ok(pub.sent >= 150 && pub.sent <= 215, `sent ${pub.sent}`);
});

test('petrel bench conn / pub from the CLI: JSON summary, progress line, exit code on failure', async (t) => {
  const port = String(await broker(t));
  const conn = await run(['bench', 'conn', '-h', '127.0.0.1', '-p', port, '-c', '30', '-R', '2000', '--json']);
  assert.equal(conn.code, 0, conn.stderr);
  const s = JSON.parse(conn.stdout) as { clients: { connected: number }; connectLatency: { count: number } };
  assert.equal(s.clients.connected, 30);
  assert.equal(s.connectLatency.count, 30);

  const pub = await run(['bench', 'pub', '-h', '127.0.0.1', '-p', port, '-c', '2', '-r', '100', '--duration', '1.3', '-q', '1', '-t', 'cli/%i']);
  assert.equal(pub.code, 0, pub.stderr);
  assert.match(pub.stderr, /1 s \| connected 2\/2 \| sent \d+ msg\/s \| received 0 msg\/s/);
  assert.match(pub.stdout, /^bench pub: mqtt:\/\/127\.0\.0\.1:\d+, MQTT 5\.0, 2 clients, QoS 1, 256 B payload/);
  assert.match(pub.stdout, /ack latency +p50/);

  const closed = String(await freePort());
  const down = await run(['bench', 'pub', '-h', '127.0.0.1', '-p', closed, '-c', '2', '--count', '10', '--quiet']);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /no client connected: connection refused: nothing listens on 127\.0\.0\.1:\d+ \(ECONNREFUSED\) \(×2\)/);

  const help = await run(['bench', 'pub', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /-c, --clients <n>/);
  assert.match(help.stdout, /Examples:/);
});

test('petrel bench: numeric flags are plain decimal numbers in range, else exit 2 with one line naming the flag', async () => {
  for (const [flags, name] of [
    [['--rate', 'abc'], '--rate'],
    [['--rate', '0x10'], '--rate'],
    [['-R', '0'], '--connect-rate'],
    [['-R', ''], '--connect-rate'],
    [['--interval-of-msg', '-5'], '--interval-of-msg'],
    [['--duration', '0'], '--duration'],
    [['--duration', '1e3'], '--duration'],
  ] as const) {
    const r = await run(['bench', 'pub', '-L', 'mqtt://127.0.0.1:1', '-t', 'b/%i', ...flags]);
    assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0]!.includes(name), r.stderr);
  }
});

// ------------------------------------------------------------------ issue 25

test('petrel bench: "1 client" (not "1 clients"); nothing connected says so, without zero percentiles, and exits non-zero', async (t) => {
  const port = await broker(t);
  const connection = resolveOptions(`mqtt://127.0.0.1:${port}`, { clientId: 'one' });
  const one = await runBench({ mode: 'conn', connection, clients: 1, connectRate: 100, rate: 0, qos: 0, size: 16, topic: 'x', inflight: 1, retain: false });
  assert.match(formatSummary(one), /^bench conn: mqtt:\/\/127\.0\.0\.1:\d+, MQTT 5\.0, 1 client, /);
  assert.match(formatSummary(one), /\(1 sample\)/);

  const closed = String(await freePort());
  const down = await run(['bench', 'sub', '-h', '127.0.0.1', '-p', closed, '-c', '1', '--count', '10', '--quiet']);
  assert.notEqual(down.code, 0);
  assert.match(down.stdout, /connected {6}0\/1: no client connected, nothing was measured/);
  assert.doesNotMatch(down.stdout, /p50|0 samples|msg\/s/, down.stdout);
  assert.match(down.stderr, /petrel bench sub: no client connected: connection refused/);
});

test('petrel bench sub: the receive rate counts from the first message, not from the start of the run', async (t) => {
  const port = await broker(t);
  const connection = resolveOptions(`mqtt://127.0.0.1:${port}`, { clientId: 'late' });
  const subRun = runBench({ mode: 'sub', connection: { ...connection, clientId: 'late_sub' }, clients: 1, connectRate: 1000, rate: 0, qos: 0, size: 16, topic: 'late/x', count: 200, inflight: 1, retain: false });
  // nothing arrives for the first ~0.8 s; then 200 messages in a burst
  await new Promise((r) => setTimeout(r, 800));
  await runBench({ mode: 'pub', connection: { ...connection, clientId: 'late_pub' }, clients: 1, connectRate: 1000, rate: 0, qos: 0, size: 16, topic: 'late/x', count: 200, inflight: 1, retain: false });
  const sub = await subRun;
  assert.equal(sub.received, 200);
  // over the whole run it would be at most 200 / 0.8 s = 250 msg/s
  assert.ok(sub.receiveRate > 400, `receive rate ${Math.round(sub.receiveRate)} msg/s over ${sub.durationSeconds.toFixed(2)} s`);
  assert.match(formatSummary(sub), /received {7}200 messages, \d+ msg\/s from the first to the last/);
});

test('petrel bench: -I is the Client ID prefix, as in petrel pub (the message interval is --interval-of-msg)', async (t) => {
  const b = createBroker({ port: 0, host: '127.0.0.1' });
  await b.listen();
  t.after(() => b.close());
  const ids: string[] = [];
  b.on('clientConnected', (c) => ids.push(c.clientId));
  const r = await run(['bench', 'conn', '-h', '127.0.0.1', '-p', String(b.address().port), '-c', '2', '-I', 'dev', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(ids.sort(), ['dev_1', 'dev_2']);
  const help = await run(['bench', 'pub', '--help']);
  assert.match(help.stdout, /-I, --id-prefix <prefix>/);
  assert.match(help.stdout, /--interval-of-msg <ms>/);
  assert.doesNotMatch(help.stdout, /-I, --interval-of-msg/);
});
