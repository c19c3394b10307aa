// The `cluster` option (createBroker, the config file, `petrel broker --cluster`): where the Redis is and
// what this node is called. Checked here, so every entry point gives the same one-line errors.
import { hostname } from 'node:os';

/** A Redis server (URL), a Sentinel group, or a Redis Cluster: the three forms ioredis connects to. */
export type ClusterRedis = string | { sentinels: { host: string; port: number }[]; name: string; password?: string } | { nodes: (string | { host: string; port: number })[] };

export interface ClusterOptions {
  redis: ClusterRedis;
  /** This node's name, unique in the cluster (default: host name and process id). */
  nodeName?: string;
  /** Prefix of every Redis key and channel (default "petrel"): several clusters can share one Redis. */
  prefix?: string;
  /** A node whose heartbeat is older than this is down (seconds, default 10). */
  heartbeatTimeout?: number;
  /** How often a node refreshes its heartbeat and looks at the others' (ms, default 1000). */
  heartbeatInterval?: number;
  /** Messages for other nodes held while Redis cannot take them; beyond it QoS 1/2 are refused (default 100,000). */
  maxBuffered?: number;
}

export const CLUSTER_DEFAULTS = { prefix: 'petrel', heartbeatTimeout: 10, heartbeatInterval: 1000, maxBuffered: 100_000 } as const;

export interface ResolvedClusterOptions {
  redis: ClusterRedis;
  nodeName: string;
  prefix: string;
  heartbeatTimeoutMs: number;
  heartbeatIntervalMs: number;
  maxBuffered: number;
}

let unnamedNodes = 0;

/** One line naming the field when `cluster` is wrong, else undefined. */
export function clusterOptionError(c: unknown, path = 'cluster'): string | undefined {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) return `${path}: must be an object like { redis: "redis://127.0.0.1:6379" }`;
  const o = c as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!['redis', 'nodeName', 'prefix', 'heartbeatTimeout', 'heartbeatInterval', 'maxBuffered'].includes(key)) return `${path}.${key}: unknown option`;
  }
  const r = o.redis;
  if (typeof r === 'string') {
    if (!/^rediss?:\/\//.test(r)) return `${path}.redis: must be a redis:// or rediss:// URL (got "${r}")`;
  } else if (typeof r === 'object' && r !== null && !Array.isArray(r)) {
    const ro = r as Record<string, unknown>;
    if ('sentinels' in ro) {
      if (!Array.isArray(ro.sentinels) || ro.sentinels.length === 0) return `${path}.redis.sentinels: must be a non-empty list of { host, port }`;
      const bad = ro.sentinels.findIndex((e) => !isHostPort(e));
      if (bad >= 0) return `${path}.redis.sentinels[${bad}]: must be { host, port } (got ${JSON.stringify(ro.sentinels[bad])})`;
      if (typeof ro.name !== 'string' || ro.name === '') return `${path}.redis.name: must name the Sentinel master group`;
      if (ro.password !== undefined && typeof ro.password !== 'string') return `${path}.redis.password: must be a string`;
      const unknown = Object.keys(ro).find((k) => !['sentinels', 'name', 'password'].includes(k));
      if (unknown !== undefined) return `${path}.redis.${unknown}: unknown option (a Sentinel group takes sentinels, name, password)`;
    } else if ('nodes' in ro) {
      if (!Array.isArray(ro.nodes) || ro.nodes.length === 0) return `${path}.redis.nodes: must be a non-empty list of Redis Cluster nodes`;
      const bad = ro.nodes.findIndex((e) => !(isHostPort(e) || (typeof e === 'string' && /^(rediss?:\/\/[^\s]+|[^\s:/]+:\d{1,5})$/.test(e))));
      if (bad >= 0) return `${path}.redis.nodes[${bad}]: must be { host, port }, "host:port" or a redis:// URL (got ${JSON.stringify(ro.nodes[bad])})`;
      const unknown = Object.keys(ro).find((k) => k !== 'nodes');
      if (unknown !== undefined) return `${path}.redis.${unknown}: unknown option (a Redis Cluster takes nodes)`;
    } else return `${path}.redis: must be a URL, { sentinels, name } or { nodes }`;
  } else return `${path}.redis: required: a URL, { sentinels, name } or { nodes }`;
  if (o.nodeName !== undefined && (typeof o.nodeName !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(o.nodeName))) {
    return `${path}.nodeName: must be 1-64 characters of letters, digits, ".", "_" or "-"`;
  }
  if (o.prefix !== undefined && (typeof o.prefix !== 'string' || o.prefix === '' || o.prefix.includes(' '))) return `${path}.prefix: must be a non-empty string without spaces`;
  if (o.heartbeatTimeout !== undefined && (typeof o.heartbeatTimeout !== 'number' || !(o.heartbeatTimeout >= 0.2) || o.heartbeatTimeout > 3600)) {
    return `${path}.heartbeatTimeout: must be a number of seconds from 0.2 to 3600`;
  }
  if (o.heartbeatInterval !== undefined && (!Number.isInteger(o.heartbeatInterval) || (o.heartbeatInterval as number) < 20 || (o.heartbeatInterval as number) > 60_000)) {
    return `${path}.heartbeatInterval: must be a whole number of ms from 20 to 60000`;
  }
  if (o.maxBuffered !== undefined && (!Number.isInteger(o.maxBuffered) || (o.maxBuffered as number) < 1)) return `${path}.maxBuffered: must be a positive whole number`;
  return undefined;
}

/** `{ host, port }` with a non-empty host and a port from 1 to 65535. */
function isHostPort(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const { host, port } = e as { host?: unknown; port?: unknown };
  return typeof host === 'string' && host !== '' && Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535;
}

export function resolveClusterOptions(c: ClusterOptions): ResolvedClusterOptions {
  const timeoutMs = (c.heartbeatTimeout ?? CLUSTER_DEFAULTS.heartbeatTimeout) * 1000;
  // At least three refreshes per timeout, so one late refresh does not look like a death.
  const intervalMs = Math.min(c.heartbeatInterval ?? CLUSTER_DEFAULTS.heartbeatInterval, Math.max(20, Math.floor(timeoutMs / 3)));
  return {
    redis: c.redis,
    nodeName: c.nodeName ?? defaultNodeName(),
    prefix: c.prefix ?? CLUSTER_DEFAULTS.prefix,
    heartbeatTimeoutMs: timeoutMs,
    heartbeatIntervalMs: intervalMs,
    maxBuffered: c.maxBuffered ?? CLUSTER_DEFAULTS.maxBuffered,
  };
}

/** host-pid, and a counter when one process runs several brokers (tests, --workers in one process). */
function defaultNodeName(): string {
  const base = `${hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40)}-${process.pid}`;
  return unnamedNodes++ === 0 ? base : `${base}-${unnamedNodes}`;
}

/** A short description of where the Redis is, for logs (no password). */
export function describeRedis(r: ClusterRedis): string {
  if (typeof r === 'string') return r.replace(/\/\/[^@/]*@/, '//');
  if ('sentinels' in r) return `sentinel ${r.name} (${r.sentinels.map((s) => `${s.host}:${s.port}`).join(', ')})`;
  return `redis cluster (${r.nodes.map((n) => (typeof n === 'string' ? n : `${n.host}:${n.port}`)).join(', ')})`;
}
