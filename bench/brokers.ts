// Helpers of the broker benchmark (bench/run.ts): starting and stopping the brokers under test as
// child processes on 127.0.0.1, CPU pinning, and reading a process's CPU time and RSS from /proc.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';

export type BrokerName = 'petrel' | 'aedes' | 'mosquitto';
export const ALL_BROKERS: BrokerName[] = ['petrel', 'mosquitto', 'aedes'];
export const MOSQUITTO_PATHS = ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/bin/mosquitto', '/opt/homebrew/sbin/mosquitto'];

// ------------------------------------------------------------------ child processes

const children = new Set<ChildProcess>();

/** Every child still running gets SIGKILL (synchronous: safe in an 'exit' handler). */
export function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}

/** Spawns a child that is tracked, so killAllChildren() can stop it on error or SIGINT. */
export function spawnTracked(cmd: string, args: string[], options: { cwd?: string; stdio?: ('ignore' | 'pipe' | 'inherit')[]; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const child = spawn(cmd, args, { cwd: options.cwd, stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Stops one child by its pid: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

// ------------------------------------------------------------------ CPU pinning

export interface Pinning {
  /** taskset prefix for the broker ([] = not pinned). */
  broker: string[];
  /** taskset prefix for the load generator. */
  load: string[];
  /** One line for the report. */
  note: string;
}

export function pinning(): Pinning {
  const cpus = availableParallelism();
  const taskset = spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!taskset) return { broker: [], load: [], note: 'not pinned (taskset not found): broker and generator share the CPUs' };
  if (cpus < 2) return { broker: [], load: [], note: `not pinned (${cpus} CPU): broker and generator share one CPU` };
  return { broker: ['taskset', '-c', '0'], load: ['taskset', '-c', '1'], note: `broker pinned to CPU 0, generator to CPU 1 (of ${cpus})` };
}

function withPrefix(prefix: string[], cmd: string, args: string[]): [string, string[]] {
  return prefix.length ? [prefix[0]!, [...prefix.slice(1), cmd, ...args]] : [cmd, args];
}

// ------------------------------------------------------------------ ports

/** A TCP port free on 127.0.0.1 right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

// ------------------------------------------------------------------ /proc

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clockTicks = Number(r.stdout?.trim()) || 100;
  }
  return clockTicks;
}

/** CPU seconds (user + system) used by `pid` so far, or undefined without /proc. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces: count fields after its closing parenthesis
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/** Resident set size of `pid` in bytes (VmRSS), or undefined without /proc. */
export function processRss(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------ the brokers

export interface RunningBroker {
  name: BrokerName;
  port: number;
  /** pid of the broker process itself (taskset execs it: same pid). */
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

export interface BrokerEnv {
  /** Repository root (where bin/petrel.js is). */
  root: string;
  /** dist/bench/run.js, which serves Aedes with `--role aedes`. */
  runScript: string;
  pin: Pinning;
}

export function findMosquitto(): string | undefined {
  return MOSQUITTO_PATHS.find((p) => existsSync(p));
}

/** Why a broker cannot be benchmarked here, or undefined when it can. */
export function unavailable(name: BrokerName, env: BrokerEnv): string | undefined {
  if (name === 'mosquitto' && !findMosquitto()) return `mosquitto not installed (looked in ${MOSQUITTO_PATHS.join(', ')}; Debian: apt-get install -y mosquitto)`;
  if (name === 'aedes' && !existsSync(join(env.root, 'node_modules', 'aedes', 'package.json'))) return 'aedes not installed (npm install: it is a devDependency)';
  if (name === 'petrel' && !existsSync(join(env.root, 'dist', 'src', 'cli', 'main.js'))) return 'Petrel is not built (npm run build)';
  return undefined;
}

// Like ../shared/bench/reference/mosquitto.conf: no persistence, TCP_NODELAY, a queue far above what
// the scenarios keep in flight.
const mosquittoConf = (port: number) => `listener ${port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
connection_messages false
`;

/** Starts a broker on a free port on 127.0.0.1 and waits until it accepts connections. */
export async function startBroker(name: BrokerName, env: BrokerEnv): Promise<RunningBroker> {
  const port = await freePort();
  // a scratch cwd: no petrel.config.* of the developer's is picked up
  const dir = mkdtempSync(join(tmpdir(), `petrel-bench-${name}-`));
  let cmd: string;
  let args: string[];
  switch (name) {
    case 'petrel':
      [cmd, args] = withPrefix(env.pin.broker, process.execPath, [join(env.root, 'bin', 'petrel.js'), 'broker', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn']);
      break;
    case 'aedes':
      [cmd, args] = withPrefix(env.pin.broker, process.execPath, [env.runScript, '--role', 'aedes', '--port', String(port)]);
      break;
    case 'mosquitto': {
      const conf = join(dir, 'mosquitto.conf');
      writeFileSync(conf, mosquittoConf(port));
      [cmd, args] = withPrefix(env.pin.broker, findMosquitto()!, ['-c', conf]);
      break;
    }
  }
  const child = spawnTracked(cmd, args, { cwd: dir });
  let output = '';
  const keep = (d: Buffer) => {
    if (output.length < 4000) output += d.toString();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const deadline = Date.now() + 15_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      await stopChild(child, 500);
      cleanup();
      throw new Error(`${name} did not start on 127.0.0.1:${port}${output ? `: ${output.trim().split('\n').slice(-3).join(' / ')}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name,
    port,
    pid: child.pid!,
    child,
    stop: async () => {
      await stopChild(child);
      cleanup();
    },
  };
}

/** `--role aedes`: an Aedes 1.x broker on a plain TCP server (TCP_NODELAY like the others), until SIGTERM. */
export async function serveAedes(port: number): Promise<void> {
  const { Aedes } = await import('aedes');
  const aedes = await Aedes.createBroker();
  const server = createServer({ noDelay: true }, aedes.handle as (socket: import('node:net').Socket) => void);
  server.listen(port, '127.0.0.1');
  const stop = () => {
    server.close();
    aedes.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** Spawns the load generator (`--role load`) pinned to the load CPU; resolves with its JSON result. */
export async function runLoadChild<T>(env: BrokerEnv, spec: object, signal: AbortSignal): Promise<T> {
  const [cmd, args] = withPrefix(env.pin.load, process.execPath, [env.runScript, '--role', 'load', '--spec', JSON.stringify(spec)]);
  const child = spawnTracked(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    if (err.length < 4000) err += d.toString();
  });
  const onAbort = () => void stopChild(child, 1000);
  signal.addEventListener('abort', onAbort, { once: true });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  signal.removeEventListener('abort', onAbort);
  const line = out.trim().split('\n').pop() ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`load generator failed (exit ${code}): ${(err || out).trim().split('\n').slice(-3).join(' / ')}`);
  return JSON.parse(line) as T;
}
