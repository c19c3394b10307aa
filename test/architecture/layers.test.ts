// The folder tree is the architecture: imports point down it, never up. This test reads every import of
// src/ and fails when one crosses a layer the wrong way, naming the file and the import.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const src = join(root, 'src');

/** Each folder of src/ and the folders (or files) of src/ it may import from, besides itself. */
const ALLOWED: Record<string, string[]> = {
  // The codec knows nothing of Petrel above it.
  protocol: [],
  // The broker core: sans I/O, it knows the codec only. Transports, storage engines and the facade plug in.
  broker: ['protocol'],
  // Utilities shared by the edges (addresses, token buckets, file watching).
  util: [],
  // Byte streams to channels: the codec, the core's seam (ChannelOutput, TransportInfo), shared utilities.
  transport: ['protocol', 'broker', 'util'],
  // Password files, ACLs, bans, limits, SCRAM: hooks the broker calls.
  auth: ['protocol', 'broker', 'util'],
  // Config files: the options of everything they configure.
  config: ['protocol', 'broker', 'transport', 'auth', 'util', 'runtime', 'server', 'mqttsn', 'http', 'cluster'],
  // The facade and listener wiring: the composition root of a broker.
  server: ['protocol', 'broker', 'transport', 'auth', 'config', 'util', 'version.ts', 'mqttsn', 'http', 'runtime', 'store', 'storage', 'cluster'],
  // The client library: the codec, nothing of the broker.
  client: ['protocol', 'util'],
  // Benchmark library: a client-side load generator.
  bench: ['protocol', 'client', 'util'],
  runtime: ['util'],
  // The MQTT-SN gateway: a transport of its own (UDP) onto the core's channel seam; cli.ts reads the config.
  mqttsn: ['protocol', 'broker', 'util', 'auth', 'server', 'config'],
  // The HTTP API: reads the broker through the facade (server) and its inspection API.
  http: ['protocol', 'broker', 'server', 'config', 'auth', 'util', 'version.ts', 'runtime', 'cluster/cluster.ts'],
  // Durable stores (SQLite): the store interfaces of the broker, implemented with I/O.
  storage: ['protocol', 'broker', 'util'],
  // The cluster on Redis: plugs into the core through its store interfaces, like storage (and shares its row codec).
  cluster: ['protocol', 'broker', 'util', 'storage/codec.ts'],
};

/** The `petrel` command may use public entry points and the composition roots, not the layers' internals. */
const CLI_ALLOWED = ['index.ts', 'client/index.ts', 'protocol/index.ts', 'server', 'config', 'runtime', 'bench', 'version.ts', 'mqttsn', 'http/cli.ts', 'auth/password-file.ts', 'cluster/workers.ts'];

function* files(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (name.endsWith('.ts')) yield path;
  }
}

/** Relative imports (value and type) of a source file, as paths below src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'/g)) {
    out.push(relative(src, resolve(dirname(file), m[1]!)).replace(/\.js$/, '.ts'));
  }
  return out;
}

const layerOf = (path: string): string => (path.includes('/') ? path.slice(0, path.indexOf('/')) : path);
const allows = (allowed: string[], target: string) => allowed.some((a) => target === a || target.startsWith(`${a}/`) || layerOf(target) === a);

describe('layers', () => {
  it('every import of src/ points down the layers (protocol <- broker <- transport/auth <- server <- cli; client apart)', () => {
    const violations: string[] = [];
    for (const file of files(src)) {
      const from = relative(src, file);
      const layer = layerOf(from);
      for (const target of importsOf(file)) {
        const to = layerOf(target);
        if (to === layer) continue;
        if (layer === 'cli') {
          if (!allows(CLI_ALLOWED, target)) violations.push(`${from} imports ${target}`);
          continue;
        }
        const allowed = ALLOWED[layer];
        if (allowed === undefined) continue; // a top-level file (index.ts, version.ts) or a folder with no rule yet
        if (!allows(allowed, target)) violations.push(`${from} imports ${target}`);
      }
    }
    assert.deepEqual(violations, []);
  });

  it('the broker core does no I/O: no node: module but buffer, no timers', () => {
    const violations: string[] = [];
    for (const file of files(join(src, 'broker'))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/from\s+'node:([a-z_/]+)'/g)) if (m[1] !== 'buffer') violations.push(`${relative(src, file)}: node:${m[1]}`);
      for (const m of text.matchAll(/\b(setTimeout|setInterval|setImmediate|process\.)\b/g)) violations.push(`${relative(src, file)}: ${m[1]}`);
    }
    assert.deepEqual(violations, []);
  });

  it('the rules see imports (a guard against a test that cannot fail)', () => {
    const channel = importsOf(join(src, 'broker/channel.ts'));
    assert.ok(channel.includes('protocol/decoder.ts'), channel.join(', '));
    assert.equal(allows(ALLOWED.broker!, 'transport/stream.ts'), false);
  });
});
