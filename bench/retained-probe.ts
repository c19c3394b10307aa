// Issue 24's memory probe as a benchmark (not a test): one client publishes `messages` retained messages of
// `kb` KB on new topics at QoS `qos` to a broker in a child process; prints the broker's RSS and retained
// store afterwards, once with the old defaults (every memory limit off) and once with today's (derived from
// the machine), or with the options given.
//
//   npm run build && node dist/bench/retained-probe.js [--messages 10000] [--kb 100] [--qos 0]
//       [--config '{"maxRetainedBytes":0,"overload":{"enabled":false}}=before' --config '{}=after']
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Buffer } from 'node:buffer';
import { encodePacket } from '../src/protocol/encoder.js';
import { RawClient } from '../test/helpers/raw-client.js';

const HERE = fileURLToPath(import.meta.url);
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const all = (name: string): string[] => process.argv.flatMap((a, i) => (a === `--${name}` ? [process.argv[i + 1]!] : []));
const MB = 1024 * 1024;

/** The child: a broker on an ephemeral port; answers "report" with its memory and retained store. */
async function child(): Promise<void> {
  const { createBroker } = await import('../src/server/broker.js');
  const broker = createBroker({ host: '127.0.0.1', port: 0, sysInterval: 0, ...JSON.parse(arg('options', '{}')) });
  await broker.listen();
  process.stdout.write(JSON.stringify({ port: broker.address().port }) + '\n');
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== 'report') continue;
    (globalThis as { gc?: () => void }).gc?.();
    const o = broker.inspect.overload();
    const m = process.memoryUsage();
    process.stdout.write(JSON.stringify({ rssMB: Math.round(m.rss / MB), buffersMB: Math.round(m.arrayBuffers / MB), retained: broker.inspect.counts().retained, retainedMB: Math.round((o.retainedBytes ?? 0) / MB), refused: o.retainedRefused, maxRetainedMB: Math.round(o.maxRetainedBytes / MB), memory: o.memory }) + '\n');
    await broker.close();
    process.exit(0);
  }
}

async function run(options: string, label: string): Promise<void> {
  const messages = Number(arg('messages', '10000'));
  const payload = Buffer.alloc(Number(arg('kb', '100')) * 1024, 0x61);
  const qos = Number(arg('qos', '0')) as 0 | 1;
  const proc = spawn(process.execPath, ['--expose-gc', HERE, '--child', '--options', options], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const { port } = JSON.parse((await lines.next()).value as string) as { port: number };
  const { client } = await RawClient.connect(port, { clientId: 'probe', protocolVersion: 5 });
  const started = Date.now();
  for (let i = 0; i < messages; i++) {
    const bytes = encodePacket({ type: 3, topic: `probe/${i}`, payload, qos, retain: true, dup: false, packetId: qos ? (i % 65535) + 1 : undefined }, 5);
    if (!client.socket.write(bytes)) await new Promise((r) => client.socket.once('drain', r));
    if (qos) client.packets.length = 0;
  }
  await client.sync();
  const seconds = (Date.now() - started) / 1000;
  client.destroy();
  proc.stdin!.write('report\n');
  const report = JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
  console.log(`${label.padEnd(8)} ${messages} x ${payload.length / 1024} KB QoS ${qos} in ${seconds.toFixed(1)} s: ${JSON.stringify(report)}`);
}

if (process.argv.includes('--child')) {
  await child();
} else {
  const configs = all('config');
  const list = configs.length > 0 ? configs : ['{"maxRetainedBytes":0,"maxQueuedBytes":0,"maxSubscriptionsPerClient":0,"overload":{"enabled":false}}=before', '{}=after'];
  for (const c of list) {
    const at = c.lastIndexOf('=');
    await run(at > 0 ? c.slice(0, at) : c, at > 0 ? c.slice(at + 1) : c);
  }
}
