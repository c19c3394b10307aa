// The HTTP listener's parts on their own: the history ring's bounds, the token file, the CLI flags, the config schema.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { validateConfig, effectiveConfig } from '../../src/config/config.js';
import { applyHttpFlags } from '../../src/http/cli.js';
import { disconnectCause } from '../../src/http/causes.js';
import { redact } from '../../src/http/routes/admin.js';
import { ConnectionHistory, type HistoryEntry } from '../../src/http/history.js';
import { ApiToken } from '../../src/http/token.js';
import { createBroker } from '../../src/server/broker.js';
import { request } from '../helpers/http.js';

const entry = (at: number): HistoryEntry => ({ at, event: 'disconnect', address: 'a:1', cause: 'connection_lost', reason: 'connection lost', will: false });

function captureLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('connection history ring', () => {
  it('keeps the last historySize entries per Client ID and forgets the least recently active ID beyond historyClients', () => {
    const h = new ConnectionHistory(3, 2);
    for (let i = 0; i < 5; i++) h.record('a', entry(i));
    assert.deepEqual(h.get('a')!.map((e) => e.at), [2, 3, 4]);
    h.record('b', entry(10));
    h.record('a', entry(11)); // a is now the most recently active
    h.record('c', entry(12)); // b goes
    assert.equal(h.get('b'), undefined);
    assert.deepEqual([h.size, h.recent(10).map((r) => r.clientId)], [2, ['c', 'a']]);
    assert.equal(h.recent(10)[1]!.last.at, 11);
  });

  it('names disconnect causes with few values', () => {
    assert.equal(disconnectCause('client disconnected', 0), 'client_disconnect');
    assert.equal(disconnectCause('connection lost: read ECONNRESET', undefined), 'connection_lost');
    assert.equal(disconnectCause('keep alive timeout', 0x8d), 'keep_alive_timeout');
    assert.equal(disconnectCause('session taken over by another connection', 0x8e), 'takeover');
    assert.equal(disconnectCause('slow consumer: output buffer over 1 bytes for 2 ms', 0x97), 'slow_consumer');
    assert.equal(disconnectCause('publish rate limit exceeded', 0x96), 'message_rate_too_high');
    assert.equal(disconnectCause('no CONNECT within the connect timeout', undefined), 'connect_timeout');
    assert.equal(disconnectCause('first packet was not CONNECT', 0x82), 'protocol_error');
  });
});

describe('API token file', () => {
  it('is created with mode 0600 in the data directory when none is given; the log says where, never what', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'petrel-token-')), 'data');
    const { logger, lines } = captureLogger();
    const token = ApiToken.open({ dataDir, logger, watch: false });
    const file = join(dataDir, 'http-token');
    assert.equal(token.file, file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    const secret = readFileSync(file, 'utf8').trim();
    assert.ok(secret.length >= 40);
    assert.ok(token.check(`Bearer ${secret}`));
    assert.ok(!token.check(`Bearer ${secret.slice(0, -1)}`));
    assert.ok(!token.check(undefined));
    assert.ok(lines.some((l) => l.includes(file) && l.includes('created')));
    assert.ok(!lines.join('').includes(secret), 'the token is never logged');
    // Opened again (a restart): the same token, not a new one.
    const again = ApiToken.open({ dataDir, logger, watch: false });
    assert.ok(again.check(`Bearer ${secret}`));
  });

  it('refuses a token file that is missing, empty or too short, naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'petrel-token-'));
    const { logger } = captureLogger();
    assert.throws(() => ApiToken.open({ tokenFile: join(dir, 'none'), dataDir: dir, logger, watch: false }), /tokenFile: cannot read .*none: ENOENT/);
    writeFileSync(join(dir, 'short'), 'abc\n');
    assert.throws(() => ApiToken.open({ tokenFile: join(dir, 'short'), dataDir: dir, logger, watch: false }), /tokenFile: .*short must hold a token of at least 16 characters/);
  });

  it('a broker with an http listener and no tokenFile makes the token in dataDir, and the API takes it', async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'petrel-token-'));
    const broker = createBroker({ dataDir, listeners: [{ type: 'http', port: 0 }] });
    t.after(() => broker.close());
    await broker.listen();
    const token = readFileSync(join(dataDir, 'http-token'), 'utf8').trim();
    const r = await request(`http://127.0.0.1:${broker.address(0).port}`, 'GET', '/api/v1/stats', undefined, { authorization: `Bearer ${token}` });
    assert.equal(r.status, 200);
    assert.equal(r.json.counts.connections, 0);
    assert.equal(broker.runningListeners()[0]!.host, '127.0.0.1', 'the HTTP listener binds 127.0.0.1 by default');
  });
});

describe('http listener configuration', () => {
  it('--http-port adds an http listener beside the MQTT listeners in force', () => {
    const types = (c: ReturnType<typeof validateConfig>) => c.listeners!.map((l) => `${l.type}:${l.port}${'host' in l && l.host ? '@' + l.host : ''}`);
    assert.deepEqual(types(applyHttpFlags({}, { httpPort: '18083' })), ['tcp:1883', 'ws:8083', 'http:18083']);
    assert.deepEqual(types(applyHttpFlags({ port: 1884 }, { httpPort: '9000', httpHost: '0.0.0.0' })), ['tcp:1884@0.0.0.0', 'http:9000@0.0.0.0']);
    const configured = validateConfig({ listeners: [{ type: 'tcp', port: 1 }, { type: 'http', port: 2, tokenFile: '/a' }] });
    const out = applyHttpFlags(configured, { httpTokenFile: '/b' });
    assert.deepEqual(out.listeners, [{ type: 'tcp', port: 1 }, { type: 'http', port: 2, tokenFile: '/b' }]);
    assert.equal(applyHttpFlags(configured, {}), configured);
    assert.throws(() => applyHttpFlags({}, { httpPort: '0x10' }), /--http-port: must be a whole number from 0 to 65535/);
  });

  it('petrel broker --http-port/--http-host/--http-token-file reach the configuration; --help names them', async () => {
    const { spawnSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const bin = fileURLToPath(new URL('../../../bin/petrel.js', import.meta.url));
    const run = (args: string[]) => spawnSync(process.execPath, [bin, 'broker', ...args], { encoding: 'utf8', cwd: tmpdir(), env: { ...process.env, NO_COLOR: '1' } });
    const r = run(['--port', '1884', '--http-port', '18099', '--http-host', '0.0.0.0', '--http-token-file', '/etc/petrel/token', '--print-config', 'json']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).listeners, [{ type: 'tcp', host: '0.0.0.0', port: 1884 }, { type: 'http', host: '0.0.0.0', port: 18099, tokenFile: '/etc/petrel/token' }]);
    const bad = run(['--http-port', 'eighty']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--http-port: must be a whole number/);
    const help = run(['--help']).stdout;
    for (const flag of ['--http-port', '--http-host', '--http-token-file']) assert.ok(help.includes(flag), flag);
    assert.match(help, /SIGHUP reloads .* and the HTTP API token/s);
  });

  it('checks the http listener keys of a config file, naming the field; print-config shows its defaults', () => {
    assert.throws(() => validateConfig({ listeners: [{ type: 'http', tokenfile: 'x' }] }), /listeners\[0\]\.tokenfile/);
    assert.throws(() => validateConfig({ listeners: [{ type: 'http', publicEndpoints: ['api'] }] }), /listeners\[0\]\.publicEndpoints\[0\]/);
    assert.throws(() => validateConfig({ listeners: [{ type: 'htp' }] }), /listeners\[0\]\.type: must be one of .*"http"/);
    const effective = effectiveConfig(validateConfig({ listeners: [{ type: 'http' }] }));
    assert.deepEqual(effective.listeners, [{ type: 'http', host: '127.0.0.1', port: 18083 }]);
  });
});

describe('GET /api/v1/config redaction', () => {
  it('hides passwords, passphrases, secrets and tokens at any depth; file names stay', () => {
    const config = { passwordFile: '/etc/p', password: 'x', listeners: [{ type: 'tls', passphrase: 'y', sni: { a: { passphrase: 'z' } } }, { type: 'http', tokenFile: '/t', token: 'w' }], clientSecret: 's' };
    assert.deepEqual(redact(config), {
      passwordFile: '/etc/p',
      password: '(hidden)',
      listeners: [{ type: 'tls', passphrase: '(hidden)', sni: { a: { passphrase: '(hidden)' } } }, { type: 'http', tokenFile: '/t', token: '(hidden)' }],
      clientSecret: '(hidden)',
    });
  });
});

describe('docs/http-api.md', () => {
  it('its broker configuration examples are valid configurations', async () => {
    const { readFileSync } = await import('node:fs');
    const { fileURLToPath } = await import('node:url');
    const { parse } = await import('yaml');
    const doc = readFileSync(fileURLToPath(new URL('../../../docs/http-api.md', import.meta.url)), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => b.includes('listeners:'));
    assert.ok(blocks.length >= 1);
    for (const b of blocks) assert.doesNotThrow(() => validateConfig(parse(b)), b);
  });
});
