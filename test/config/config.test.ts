import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { createBroker } from '../../src/server/broker.js';
import { ConfigError, envOverrides, formatConfig, resolveConfig, validateConfig } from '../../src/config/config.js';
import { makeCerts } from '../helpers/certs.js';
import { connect, end } from '../transport/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const cli = join(process.cwd(), 'bin', 'petrel.js');

const errorOf = (raw: unknown): string => {
  try {
    validateConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('expected a ConfigError');
};

describe('config validation', () => {
  it('names the key of every mistake in one line', () => {
    const cases: [unknown, RegExp][] = [
      [{ maxQoS: 1 }, /^maxQoS: unknown key/],
      [{ maxQos: 3 }, /^maxQos: must be one of 0, 1, 2$/],
      [{ memoryProfile: 'small' }, /^memoryProfile: must be one of "compact", "throughput"$/],
      [{ connectionLogRate: -1 }, /^connectionLogRate: must be an integer/],
      [{ listeners: [{ type: 'tcp', port: 'x' }] }, /^listeners\[0\]\.port: must be an integer/],
      [{ listeners: [{ type: 'udp' }] }, /^listeners\[0\]\.type: must be one of/],
      [{ listeners: [{ type: 'tcp', path: '/mqtt' }] }, /^listeners\[0\]\.path: unknown key/],
      [{ listeners: [{ type: 'ws', directSockets: false }] }, /^listeners\[0\]\.directSockets: unknown key/],
      [{ listeners: [{ type: 'tcp', directSockets: 'no' }] }, /^listeners\[0\]\.directSockets: must be/],
      [{ listeners: [{ type: 'tcp', acceptHandles: 0 }] }, /^listeners\[0\]\.acceptHandles: must be an integer from 1 to 64/],
      [{ listeners: [{ type: 'ws', acceptHandles: 8 }] }, /^listeners\[0\]\.acceptHandles: unknown key/],
      [{ listeners: [{}, { type: 'tls', cert: 'c.pem' }] }, /^listeners\[1\]\.key: required for a tls listener/],
      [{ listeners: [{ type: 'wss', cert: 'c', key: 'k', peerCertAsUsername: 'cn', ca: 'ca' }] }, /^listeners\[0\]\.requestCert: must be true/],
      [{ listeners: [{ type: 'tls', cert: 'c', key: 'k', requestCert: true }] }, /^listeners\[0\]\.ca: required for mutual TLS/],
      [{ listeners: [{ type: 'ws', path: 'mqtt' }] }, /^listeners\[0\]\.path: must be a URL path/],
      [{ listeners: [{ type: 'tls', cert: 'c', key: 'k', minVersion: 'TLSv1.1' }] }, /^listeners\[0\]\.minVersion: must be one of "TLSv1.2", "TLSv1.3"/],
      [{ acl: { rules: [{ permission: 'allow', action: 'publish', topic: 'a/#/b' }] } }, /^acl\.rules\[0\]\.topic: "a\/#\/b" is not a valid topic pattern/],
      [{ acl: { rules: [{ permission: 'allow', topic: 'a' }] } }, /^acl\.rules\[0\]\.action: required/],
      [{ acl: { default: 'maybe' } }, /^acl\.default: must be one of "allow", "deny"/],
      [{ bans: { addresses: ['10.0.0.0/8', 'nope'] } }, /^bans\.addresses\[1\]: "nope" is not an IP address/],
      [{ connackUserProperties: [['a']] }, /^connackUserProperties\[0\]: must be a \[name, value\] pair of strings$/],
      [{ sharedSubscriptionStrategy: 'fair' }, /^sharedSubscriptionStrategy: must be one of/],
      [{ maxOutputBuffer: 10 }, /^maxOutputBuffer: must be an integer from 1024/],
      [{ maxPublishRate: 0 }, /^maxPublishRate: must be an integer from 1/],
      [{ passwordFile: 7 }, /^passwordFile: must be a non-empty string/],
    ];
    for (const [raw, expected] of cases) {
      const message = errorOf(raw);
      assert.match(message, expected);
      assert.ok(!message.includes('\n'), 'one line');
    }
  });

  it('accepts every listener type with its options', () => {
    const c = validateConfig({
      listeners: [
        { type: 'tcp', port: 1883, proxyProtocol: true, maxConnections: 1000 },
        { type: 'tcp', port: 1884, directSockets: false },
        { type: 'tls', port: 8883, cert: 'a.pem', key: 'k.pem', ca: ['ca.pem'], requestCert: true, peerCertAsUsername: 'cn', sni: { 'x.example': { cert: 'x.pem', key: 'xk.pem' } } },
        { type: 'ws', port: 8083, path: '/mqtt' },
        { type: 'wss', port: 8084, cert: 'a.pem', key: 'k.pem', passphrase: 'pp' },
      ],
      acl: { default: 'deny', rules: [{ permission: 'allow', action: 'all', topic: 'users/%u/#' }], file: 'acl.txt' },
      bans: { clientIds: ['x'], addresses: ['::1', '10.0.0.0/8'] },
    });
    assert.equal(c.listeners?.length, 5);
    const printed = formatConfig(c);
    assert.ok(!printed.includes('pp'), 'passphrases are hidden');
    assert.match(printed, /passphrase: \(hidden\)/);
  });
});

describe('environment and flags', () => {
  it('PETREL_* variables map to keys and sections; a bad one is named', () => {
    assert.deepEqual(envOverrides({ PETREL_MAX_QOS: '1', PETREL_PASSWORD_FILE: '/etc/p', PETREL_ACL__DEFAULT: 'deny', PETREL_ACL__DISCONNECT_ON_DENIED: 'true', HOME: '/x' }), {
      maxQos: 1,
      passwordFile: '/etc/p',
      acl: { default: 'deny', disconnectOnDenied: true },
    });
    assert.throws(() => envOverrides({ PETREL_MAX_QOS: '9' }), /^ConfigError: PETREL_MAX_QOS: maxQos: must be one of 0, 1, 2$|PETREL_MAX_QOS: maxQos/);
    assert.throws(() => envOverrides({ PETREL_NOPE: '1' }), /PETREL_NOPE: no config key/);
  });

  it('file < environment < flags; sections merge', () => {
    const file = join(dir, 'petrel.yaml');
    writeFileSync(file, 'maxQos: 2\nmaxInflight: 10\nacl:\n  file: acl.txt\n  default: allow\nlisteners:\n  - type: tcp\n    port: 1999\n');
    const c = resolveConfig({ file, env: { PETREL_MAX_QOS: '1', PETREL_ACL__DEFAULT: 'deny' }, flags: { maxInflight: 5 } });
    assert.equal(c.maxQos, 1);
    assert.equal(c.maxInflight, 5);
    assert.deepEqual(c.acl, { file: 'acl.txt', default: 'deny' });
    // --port replaces the file's listeners, and says so
    const warnings: string[] = [];
    const byPort = resolveConfig({ file, env: {}, flags: { port: 1 }, warnings });
    assert.equal(byPort.listeners, undefined);
    assert.equal(byPort.port, 1);
    assert.deepEqual(warnings, [`--port/--host replace the 1 listener of ${file}: one TCP listener on 0.0.0.0:1`]);
  });

  it('petrel broker --print-config shows the effective config; a bad file stops start-up with exit 2 and one line', () => {
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ listeners: [{ type: 'ws', port: 9001 }], maxQos: 1 }));
    const r = spawnSync(process.execPath, [cli, 'broker', '-c', good, '--print-config'], { encoding: 'utf8', env: { ...process.env, PETREL_MAX_INFLIGHT: '7' } });
    assert.equal(r.status, 0, r.stderr);
    const printed = parseYaml(r.stdout);
    assert.equal(printed.maxQos, 1);
    assert.equal(printed.maxInflight, 7);
    assert.equal(printed.connectTimeout, 10000, 'defaults are filled in');
    assert.equal(printed.memoryProfile, 'compact');
    assert.equal(printed.connectionLogRate, 100);
    assert.deepEqual(printed.listeners, [{ type: 'ws', host: '0.0.0.0', port: 9001, path: '/mqtt' }]);
    const dflt = spawnSync(process.execPath, [cli, 'broker', '--print-config', 'json'], { encoding: 'utf8', cwd: dir });
    assert.deepEqual(
      JSON.parse(dflt.stdout).listeners.map((l: { type: string; port: number }) => `${l.type}:${l.port}`),
      ['tcp:1883', 'ws:8083'],
    );
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'listeners:\n  - type: tls\n    port: 8883\n    cert: x.pem\n    keyfile: y.pem\n');
    const e = spawnSync(process.execPath, [cli, 'broker', '-c', bad], { encoding: 'utf8' });
    assert.equal(e.status, 2);
    assert.equal(e.stderr.trim().split('\n').length, 1);
    assert.match(e.stderr, /listeners\[0\]\.keyfile: unknown key/);
  });

  it('petrel passwd adds (stdin / --password) and deletes users; the file holds no plain text', () => {
    const file = join(dir, 'passwd');
    const add = spawnSync(process.execPath, [cli, 'passwd', file, 'alice'], { input: 'correct horse\n', encoding: 'utf8' });
    assert.equal(add.status, 0, add.stderr);
    const add2 = spawnSync(process.execPath, [cli, 'passwd', '--password', 'battery staple', file, 'bob'], { encoding: 'utf8' });
    assert.equal(add2.status, 0, add2.stderr);
    let text = readFileSync(file, 'utf8');
    assert.match(text, /^alice:\$scrypt\$/m);
    assert.match(text, /^bob:\$scrypt\$/m);
    assert.ok(!text.includes('correct horse') && !text.includes('battery staple'));
    const del = spawnSync(process.execPath, [cli, 'passwd', '-D', file, 'bob'], { encoding: 'utf8' });
    assert.equal(del.status, 0);
    text = readFileSync(file, 'utf8');
    assert.ok(!text.includes('bob:'));
    assert.equal(spawnSync(process.execPath, [cli, 'passwd', '-D', file, 'bob']).status, 1);
  });
});

describe('a broker from a config file', () => {
  it('opens tcp, ws and tls listeners from YAML and serves them', async (t) => {
    const certs = makeCerts();
    if (!certs) return t.skip('openssl not installed');
    try {
      const file = join(dir, 'all.yaml');
      writeFileSync(
        file,
        [
          'listeners:',
          '  - { type: tcp, host: 127.0.0.1, port: 0 }',
          '  - { type: ws, host: 127.0.0.1, port: 0, path: /ws }',
          `  - { type: tls, host: 127.0.0.1, port: 0, cert: ${certs.paths.serverCert}, key: ${certs.paths.serverKey} }`,
          `  - { type: wss, host: 127.0.0.1, port: 0, cert: ${certs.paths.serverCert}, key: ${certs.paths.serverKey} }`,
        ].join('\n'),
      );
      const { logLevel: _l, memoryProfile: _m, ...options } = resolveConfig({ file, env: {} });
      const broker = createBroker({ ...options, tickInterval: 50 });
      await broker.listen();
      try {
        const urls = [
          `mqtt://127.0.0.1:${broker.address(0).port}`,
          `ws://127.0.0.1:${broker.address(1).port}/ws`,
          `mqtts://127.0.0.1:${broker.address(2).port}`,
          `wss://127.0.0.1:${broker.address(3).port}/mqtt`,
        ];
        for (const url of urls) await end(await connect(url, { ca: certs.ca }));
      } finally {
        await broker.close();
      }
    } finally {
      certs.cleanup();
    }
  });
});
