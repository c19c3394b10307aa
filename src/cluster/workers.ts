// `petrel broker --cluster URL --workers N`: N nodes of one cluster on one machine, one process each
// (node:cluster), sharing the listeners, so every core serves MQTT. The primary process only starts the
// workers, starts again one that dies, and passes signals on; each worker is a whole broker and a node of
// the cluster named `${nodeName}-w${i}`, and messages between workers go through Redis like between machines.
import cluster from 'node:cluster';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';

// Not PETREL_*: those are configuration keys.
const INDEX_ENV = 'MQTT_PETREL_WORKER';

export function isPrimary(): boolean {
  return cluster.isPrimary;
}

/** In the primary: starts `count` workers and keeps them running until SIGINT / SIGTERM. */
export function runPrimary(count: number, logger: Logger): void {
  let stopping = false;
  const byId = new Map<number, number>();
  const fork = (index: number) => {
    const worker = cluster.fork({ [INDEX_ENV]: String(index) });
    byId.set(worker.id, index);
  };
  for (let i = 1; i <= count; i++) fork(i);
  logger.info({ workers: count }, `started ${count} workers (nodes of one cluster sharing the listeners)`);
  cluster.on('exit', (worker, code, signal) => {
    const index = byId.get(worker.id)!;
    byId.delete(worker.id);
    if (stopping) {
      if (byId.size === 0) process.exit(process.exitCode ?? 0);
      return;
    }
    if (code === 2) {
      // A configuration the broker cannot start with: every worker would fail the same way.
      logger.error({ worker: index }, 'a worker cannot start with this configuration; stopping');
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      process.exitCode = 2;
      if (byId.size === 0) process.exit(2);
      return;
    }
    logger.warn({ worker: index, code, signal }, `worker ${index} exited; starting it again in 1 s`);
    setTimeout(() => !stopping && fork(index), 1000);
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down the workers');
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
    setTimeout(() => process.exit(1), 6000).unref();
    if (byId.size === 0) process.exit(0);
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  });
}

interface WorkerShaped {
  port?: number;
  host?: string;
  listeners?: ({ type: string } & Record<string, unknown>)[];
  cluster?: { nodeName?: string } & Record<string, unknown>;
  storage?: { type?: string; dir?: string } & Record<string, unknown>;
}

/**
 * A worker's options: its node name, TCP listeners on node:net (the primary shares their sockets; the
 * direct-handle listener binds its own), and a data directory of its own for SQLite.
 */
export function workerOptions<T extends object>(given: T, defaultListeners: readonly object[]): T {
  const options = given as WorkerShaped;
  const index = Number(process.env[INDEX_ENV] ?? 1);
  const base = options.cluster?.nodeName ?? hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40);
  const listeners = options.listeners ?? (options.port !== undefined || options.host !== undefined ? [{ type: 'tcp', host: options.host ?? '0.0.0.0', port: options.port ?? 1883 }] : (defaultListeners as NonNullable<WorkerShaped['listeners']>));
  const out: WorkerShaped = {
    ...options,
    port: undefined,
    host: undefined,
    listeners: listeners.map((l) => (l.type === 'tcp' ? { ...l, directSockets: false } : l)),
    cluster: { ...options.cluster, nodeName: `${base}-w${index}` },
  };
  if (options.storage !== undefined && options.storage.type !== 'memory') out.storage = { ...options.storage, dir: join(options.storage.dir ?? '.', `worker-${index}`) };
  return out as T;
}
