// Mosquitto as a child process, for the tests that use it as the oracle or as the broker a client talks to:
// each one in a temp dir of its own, on free ports of 127.0.0.1, killed when stopped or when the test process exits.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { canConnect, freePort } from './servers.js';
import { delay } from './wait.js';
import { killWithTest } from './children.js';

/** The mosquitto binary on PATH (or in /usr/sbin, /usr/local/sbin), if any. */
export function findMosquitto(): string | undefined {
  const candidates = ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto', ...(process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'mosquitto'))];
  return candidates.find((p) => existsSync(p));
}

/** The binary the tests run: MOSQUITTO_PATH=/path/to/mosquitto chooses another (a path that does not exist: none). */
export const MOSQUITTO: string | undefined =
  process.env.MOSQUITTO_PATH !== undefined ? (existsSync(process.env.MOSQUITTO_PATH) ? process.env.MOSQUITTO_PATH : undefined) : findMosquitto();
export const hasMosquitto = MOSQUITTO !== undefined;

/** A new temp dir that Mosquitto can read (started as root, it drops to the `mosquitto` user). */
export function tempDir(prefix = 'petrel-client-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

export interface MosquittoOptions {
  /** user → password (a mosquitto_passwd file); turns anonymous access off. */
  users?: Record<string, string>;
  /** allow_anonymous; default: true without `users`, false with them; null: leave it to the configuration (`lines`). */
  anonymous?: boolean | null;
  websockets?: boolean;
  /** TLS listener with these files. */
  tls?: { cafile: string; certfile: string; keyfile: string; requireCertificate?: boolean };
  /** Also a secure WebSocket listener with the `tls` files. */
  wss?: boolean;
  /** Reuse this port for the plain listener (restarts). */
  port?: number;
  /** More configuration lines, after the listeners. */
  lines?: string[];
  /** The whole configuration file instead (given the plain listener's port): `lines`, `users` and the listeners are ignored. */
  conf?: (port: number) => string;
  /** What Mosquitto logs (log_type); default: all. */
  logTypes?: string[];
  /** The binary; default MOSQUITTO. */
  bin?: string;
}

export interface RunningMosquitto {
  port: number;
  wsPort?: number;
  tlsPort?: number;
  wssPort?: number;
  dir: string;
  /** All Mosquitto has written (its log). */
  output(): string;
  /** The same as output(). */
  log(): string;
  /** A position in the log, to wait for what Mosquitto writes after it. */
  mark(): number;
  /** Resolves once Mosquitto has logged, after `mark`, that the connection of `clientId` closed. */
  waitClosed(clientId: string, mark: number): Promise<void>;
  /** SIGHUP, and waits until Mosquitto has logged the reload (and a little more for it to apply). */
  reload(): Promise<void>;
  stop(): Promise<void>;
}


/**
 * Starts Mosquitto with `options`; rejects with the error lines of its log when it refuses the configuration.
 * `startMosquitto(lines, conf?)`: the same as `{ lines, conf, anonymous: null }`.
 */
export function startMosquitto(options?: MosquittoOptions): Promise<RunningMosquitto>;
export function startMosquitto(lines: string[], conf?: (port: number) => string): Promise<RunningMosquitto>;
export async function startMosquitto(arg: MosquittoOptions | string[] = {}, conf?: (port: number) => string): Promise<RunningMosquitto> {
  const options: MosquittoOptions = Array.isArray(arg) ? { lines: arg, conf, anonymous: null } : arg;
  const bin = options.bin ?? MOSQUITTO;
  if (bin === undefined) throw new Error('mosquitto is not installed (/usr/sbin/mosquitto, or MOSQUITTO_PATH)');
  const dir = tempDir('petrel-mosq-');
  const port = options.port ?? (await freePort());
  const extra: number[] = [];
  let text: string;
  let wsPort: number | undefined;
  let tlsPort: number | undefined;
  let wssPort: number | undefined;
  if (options.conf) {
    text = options.conf(port);
  } else {
    const lines = [`listener ${port} 127.0.0.1`, 'persistence false', 'set_tcp_nodelay true', 'log_dest stderr', ...(options.logTypes ?? ['all']).map((t) => `log_type ${t}`)];
    if (options.websockets) {
      wsPort = await freePort();
      lines.push(`listener ${wsPort} 127.0.0.1`, 'protocol websockets');
    }
    const tls = options.tls;
    if (tls) {
      tlsPort = await freePort();
      lines.push(`listener ${tlsPort} 127.0.0.1`, `cafile ${tls.cafile}`, `certfile ${tls.certfile}`, `keyfile ${tls.keyfile}`);
      if (tls.requireCertificate) lines.push('require_certificate true');
      if (options.wss) {
        wssPort = await freePort();
        lines.push(`listener ${wssPort} 127.0.0.1`, 'protocol websockets', `cafile ${tls.cafile}`, `certfile ${tls.certfile}`, `keyfile ${tls.keyfile}`);
      }
    }
    if (options.users) {
      const pw = join(dir, 'passwd');
      writeFileSync(pw, '');
      for (const [user, password] of Object.entries(options.users)) execFileSync('mosquitto_passwd', ['-b', pw, user, password]);
      chmodSync(pw, 0o644);
      lines.push(`password_file ${pw}`);
    }
    const anonymous = options.anonymous === undefined ? options.users === undefined : options.anonymous;
    if (anonymous !== null) lines.push(`allow_anonymous ${anonymous}`);
    lines.push(...(options.lines ?? []), '');
    text = lines.join('\n');
    extra.push(...[wsPort, tlsPort, wssPort].filter((p): p is number => p !== undefined));
  }
  const file = join(dir, 'mosquitto.conf');
  writeFileSync(file, text, { mode: 0o644 });
  const child = spawn(bin, ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  killWithTest(child);
  let log = '';
  child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const cleanUp = () => rmSync(dir, { recursive: true, force: true });
  try {
    for (const p of [port, ...extra]) {
      const deadline = Date.now() + 5000;
      while (!(await canConnect(p))) {
        if (exited || Date.now() > deadline) {
          const errors = log.split('\n').filter((l) => /error/i.test(l)).join(' | ');
          throw new Error(`mosquitto did not start on ${p}: ${errors || log}`);
        }
        await delay(15);
      }
    }
  } catch (err) {
    child.kill('SIGKILL');
    cleanUp();
    throw err;
  }
  return {
    port,
    ...(wsPort ? { wsPort } : {}),
    ...(tlsPort ? { tlsPort } : {}),
    ...(wssPort ? { wssPort } : {}),
    dir,
    output: () => log,
    log: () => log,
    mark: () => log.length,
    async waitClosed(clientId, mark) {
      // "closed its connection." or, when it was writing to the socket, "disconnected: Broken pipe." and the like.
      const line = `Client ${clientId} closed its connection.`;
      const broken = `Client ${clientId} disconnected: `;
      const deadline = Date.now() + 3000;
      while (log.indexOf(line, mark) < 0 && log.indexOf(broken, mark) < 0) {
        if (exited || Date.now() > deadline) throw new Error(`mosquitto did not log "${line}"; its log since:\n${log.slice(mark).slice(-2000)}`);
        await delay(2);
      }
    },
    async reload() {
      const before = log.split('Reloading config').length;
      child.kill('SIGHUP');
      const deadline = Date.now() + 3000;
      while (log.split('Reloading config').length === before && Date.now() < deadline) await delay(10);
      await delay(150);
    },
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exit;
        clearTimeout(t);
      }
      cleanUp();
    },
  };
}
