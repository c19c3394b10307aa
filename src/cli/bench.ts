// `petrel bench pub|sub|conn`: the command line of the load generator (src/bench), in the
// spirit of emqtt-bench. Flags follow petrel pub / sub where they overlap (-I is the Client ID
// prefix, as in mosquitto_pub / mosquitto_sub).
import type { Command } from 'commander';
import type { ResolvedOptions } from '../client/index.js';
import { resolveOptions } from '../client/index.js';
import { formatSummary, runBench } from '../bench/index.js';
import type { BenchMode } from '../bench/index.js';
import type { ConnectionFlags } from './common-client.js';
import { EXIT, UsageError, addConnectionOptions, clientOptionsFromFlags, parseDecimalFlag, parseNonNegativeInt, parseQos, parseSecondsFlag, runAction } from './common-client.js';

interface BenchFlags extends ConnectionFlags {
  clients: string;
  connectRate: string;
  rate?: string;
  intervalOfMsg?: string;
  qos: string;
  size: string;
  topic?: string;
  count?: string;
  duration?: string;
  inflight: string;
  retain?: boolean;
  json?: boolean;
  quiet?: boolean;
  prefix?: string;
}

const EXAMPLES = `
Examples:
  petrel bench conn -c 1000 -R 200                      # connect 1000 clients, 200/s; connect latency
  petrel bench sub -c 10 -t 'bench/%i' -q 1             # 10 subscribers, each on its own topic
  petrel bench pub -c 10 -t 'bench/%i' -r 1000 -q 1 --duration 30
  petrel bench pub -c 4 -t bench/x -s 1024 --count 1000000   # as fast as possible, 1 KiB payloads

Topic patterns: %i is the client index (1..clients), %c the Client ID.
Latency: publishers put a timestamp in the first 8 payload bytes; subscribers report
end-to-end latency percentiles from it (both on this machine's clock). QoS 1/2 publishers
also report publish → acknowledgement latency.`;

/**
 * -I is the Client ID prefix in petrel pub / sub (mosquitto's meaning): the same in bench, where
 * the IDs are prefix_index. (emqtt-bench's -I, the message interval, is --interval-of-msg here.)
 */
function useIdPrefixShortFlag(cmd: Command): void {
  const option = cmd.options.find((o) => o.long === '--id-prefix');
  if (!option || option.short !== undefined) return;
  option.short = '-I';
  option.flags = `-I, ${option.flags}`;
  option.description = 'Client ID prefix (IDs are prefix_index), like --prefix';
}

export function registerBenchCommand(program: Command): void {
  const bench = program.command('bench').description('load a broker: many clients publishing, subscribing or connecting (like emqtt-bench)');
  bench.helpOption('--help', 'display help for command');
  for (const mode of ['pub', 'sub', 'conn'] as const) {
    const cmd = bench.command(mode).description(
      mode === 'pub' ? 'N clients publishing at a rate' : mode === 'sub' ? 'N clients subscribing, measuring throughput and latency' : 'N clients connecting at a rate',
    );
    addConnectionOptions(cmd, { benchMode: true });
    useIdPrefixShortFlag(cmd);
    cmd
      .option('-c, --clients <n>', 'number of clients', '1')
      .option('-R, --connect-rate <n>', 'new connections per second', '100')
      .option('--prefix <prefix>', 'Client ID prefix (IDs are prefix_index)')
      .option('--count <n>', mode === 'sub' ? 'stop after receiving this many messages in total' : 'stop after publishing this many messages in total')
      .option('--duration <seconds>', 'stop after this many seconds')
      .option('--json', 'print the summary as JSON')
      .option('--quiet', 'no progress line');
    if (mode !== 'conn') {
      cmd
        .option('-t, --topic <pattern>', 'topic (pub) or filter (sub); %i = client index, %c = Client ID', 'bench/%i')
        .option('-q, --qos <qos>', 'QoS 0, 1 or 2', '0');
    }
    if (mode === 'pub') {
      cmd
        .option('-r, --rate <n>', 'messages per second per client (0 = as fast as possible)')
        .option('--interval-of-msg <ms>', 'milliseconds between messages per client (emqtt-bench\'s -I; here -I is the Client ID prefix, as in petrel pub)')
        .option('-s, --size <bytes>', 'payload size (>= 8 to carry the timestamp)', '256')
        .option('--inflight <n>', 'QoS 1/2 messages in flight per client', '100')
        .option('--retain', 'publish retained messages');
    }
    cmd.addHelpText('after', EXAMPLES);
    cmd.action((flags: BenchFlags) => runAction(`bench ${mode}`, () => benchCommand(mode, flags)));
  }
}

async function benchCommand(mode: BenchMode, flags: BenchFlags): Promise<number> {
  const clients = parseNonNegativeInt(flags.clients, '--clients') ?? 1;
  if (clients < 1) throw new UsageError('--clients must be at least 1');
  const connectRate = parseDecimalFlag(flags.connectRate, '--connect-rate', 'connections per second', { minExclusive: true });
  let rate = 0;
  if (flags.rate !== undefined) {
    rate = parseDecimalFlag(flags.rate, '--rate', 'messages per second');
  } else if (flags.intervalOfMsg !== undefined) {
    const ms = parseDecimalFlag(flags.intervalOfMsg, '--interval-of-msg', 'milliseconds');
    rate = ms === 0 ? 0 : 1000 / ms;
  }
  const duration = flags.duration === undefined ? undefined : parseSecondsFlag(flags.duration, '--duration', { minExclusive: true });
  const clientOptions = clientOptionsFromFlags(flags);
  clientOptions.clientId = flags.prefix ?? flags.idPrefix ?? flags.id ?? `petrel_bench_${process.pid}`;
  let connection: ResolvedOptions;
  try {
    connection = resolveOptions({ ...clientOptions, reconnect: false });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const tty = process.stderr.isTTY;
  try {
    const summary = await runBench({
      mode,
      connection,
      clients,
      connectRate,
      rate,
      qos: parseQos(flags.qos ?? '0'),
      size: parseNonNegativeInt(flags.size ?? '256', '--size') ?? 256,
      topic: flags.topic ?? 'bench/%i',
      ...(flags.count !== undefined ? { count: parseNonNegativeInt(flags.count, '--count')! } : {}),
      ...(duration !== undefined ? { duration } : {}),
      inflight: Math.max(1, parseNonNegativeInt(flags.inflight ?? '100', '--inflight') ?? 100),
      retain: Boolean(flags.retain),
      signal: abort.signal,
      ...(flags.quiet ? {} : { onProgress: (line: string) => process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`) }),
    });
    if (tty && !flags.quiet) process.stderr.write('\n');
    process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : `${formatSummary(summary)}\n`);
    if (summary.clients.connected === 0) {
      const first = summary.errors[0] ?? 'no client connected';
      process.stderr.write(`petrel bench ${mode}: no client connected: ${first}\n`);
      return /refused by the server/.test(first) ? EXIT.REFUSED : EXIT.FAILED;
    }
    return EXIT.OK;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

