// The broker's setup path as a new user meets it: config mistakes answered in one clear line (exit 2),
// a config file picked up from the working directory, connections on the wrong kind of port explained in
// the log, a CRL added to the config file applied by SIGHUP, passwd refusing what Mosquitto cannot read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { connect } from '../../src/client/index.js';
import { hasCommand, makeCerts, type TestCerts } from '../helpers/certs.js';
import { tempDir } from '../client/helpers.js';
import { run, start, startCommand, type Running } from './cli-process.js';

const certs: TestCerts | undefined = makeCerts();
test.after(() => certs?.cleanup());

const yaml = (dir: string, name: string, text: string) => {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
};

/** `petrel broker` with JSON log lines on stdout; resolves once it listens, with the listeners' ports. */
async function cliBroker(args: string[], options: { cwd?: string } = {}): Promise<{ broker: Running; ports: number[]; logs: () => Record<string, unknown>[] }> {
  const broker = start(['broker', ...args], undefined, [], options);
  // whole lines only: the last one may still be on its way
  const logs = () => broker.stdoutSoFar().split('\n').slice(0, -1).map((l) => JSON.parse(l) as Record<string, unknown>);
  const deadline = Date.now() + 10_000;
  while (!logs().some((l) => l.msg === 'listening')) {
    if (Date.now() > deadline) throw new Error(`the broker did not start: ${broker.stdoutSoFar()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // listeners open one after the other: give the others a moment (log lines go out every 200 ms when piped)
  await new Promise((r) => setTimeout(r, 400));
  return { broker, ports: logs().filter((l) => l.msg === 'listening').map((l) => Number(l.port)), logs };
}

test("passwd refuses a user name with ':' (as mosquitto_passwd: Mosquitto cannot read such a line), with the reason", async () => {
  const dir = tempDir();
  const file = join(dir, 'passwd');
  const r = await run(['passwd', file, 'bad:name', '--password', 'x']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^petrel passwd: a username cannot contain ":" \(it separates the name from the hash/);
  assert.equal(existsSync(file), false, 'nothing written');
  if (hasCommand('mosquitto_passwd')) {
    const m = await startCommand('mosquitto_passwd', ['-b', join(dir, 'mosquitto'), 'bad:name', 'x']).done;
    assert.notEqual(m.code, 0, 'mosquitto_passwd refuses it too');
  }
});

test('config mistakes: the nearest key, the YAML line, a missing password file: one line (or an excerpt) and exit 2', async () => {
  const dir = tempDir();
  const typo = await run(['broker', '-c', yaml(dir, 'typo.yaml', 'allowAnonymus: true\n')]);
  assert.equal(typo.code, 2);
  assert.equal(typo.stderr, 'petrel: config: allowAnonymus: unknown key (did you mean allowAnonymous?)\n');
  const nested = await run(['broker', '-c', yaml(dir, 'nested.yaml', 'acl:\n  defualt: deny\n')]);
  assert.equal(nested.stderr, 'petrel: config: acl.defualt: unknown key (did you mean default?)\n');
  const far = await run(['broker', '-c', yaml(dir, 'far.yaml', 'colour: blue\n')]);
  assert.equal(far.stderr, 'petrel: config: colour: unknown key (see docs/configuration.md for the keys)\n');

  const broken = yaml(dir, 'broken.yaml', 'maxQos: 1\nlisteners:\n  - port: 1884\n   host: x\n');
  const bad = await run(['broker', '-c', broken]);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, `petrel: config: ${broken} is not valid YAML: Sequence item without - indicator (line 4, column 1):\n  3 |   - port: 1884\n  4 |    host: x\n    | ^\n`);
  const json = await run(['broker', '-c', yaml(dir, 'bad.json', '{\n  "maxQos": 1,\n}\n')]);
  assert.equal(json.code, 2);
  assert.match(json.stderr, /is not valid JSON: .*\(line 3, column 1\):\n {2}2 \| {3}"maxQos": 1,\n {2}3 \| }\n/);

  for (const args of [['--password-file', join(dir, 'nope')], ['-c', yaml(dir, 'pw.yaml', `passwordFile: ${join(dir, 'nope')}\n`)]]) {
    const missing = await run(['broker', '-p', '0', ...args]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.equal(missing.stderr, `petrel: config: passwordFile: cannot read the password file ${join(dir, 'nope')} (no such file)\n`);
  }
});

test('a certificate and a key that are not a pair: the listener and both files named, exit 2', { skip: certs ? false : 'openssl not installed' }, async () => {
  const dir = tempDir();
  const file = yaml(dir, 'tls.yaml', `listeners:\n  - type: tcp\n    port: 0\n  - type: tls\n    port: 0\n    cert: ${certs!.paths.serverCert}\n    key: ${certs!.paths.server2Key}\n`);
  const r = await run(['broker', '-c', file]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(
    r.stderr,
    `petrel: config: listeners[1].key: ${certs!.paths.server2Key} is not the private key of cert ${certs!.paths.serverCert} (OpenSSL: key values mismatch); give the key made with that certificate\n`,
  );
});

test('--port with a petrel.config.yaml in the working directory: the file is named, and the flag replaces its listeners with a warning', async () => {
  const dir = tempDir();
  yaml(dir, 'petrel.config.yaml', 'maxQos: 1\nlisteners:\n  - type: tcp\n    port: 1\n    host: 127.0.0.1\n');
  const { broker, ports, logs } = await cliBroker(['--port', '0', '--host', '127.0.0.1'], { cwd: dir });
  try {
    assert.equal(ports.length, 1);
    const client = await connect(`mqtt://127.0.0.1:${ports[0]}`, { reconnect: false });
    await client.end();
    const lines = logs();
    assert.ok(lines.some((l) => l.msg === 'config file' && l.file === 'petrel.config.yaml' && l.found === 'in the working directory'));
    assert.ok(lines.some((l) => l.level === 40 && l.msg === '--port/--host replace the 1 listener of petrel.config.yaml (found in the working directory): one TCP listener on 127.0.0.1:0'));
  } finally {
    broker.kill();
    await broker.done;
  }
});

test('a TLS client on a plain port and a plain client on a TLS port are logged in words at info, one line per 10 s', { skip: certs ? false : 'openssl not installed' }, async () => {
  const dir = tempDir();
  const file = yaml(dir, 'ports.yaml', `listeners:\n  - type: tcp\n    host: 127.0.0.1\n    port: 0\n  - type: tls\n    host: 127.0.0.1\n    port: 0\n    cert: ${certs!.paths.serverCert}\n    key: ${certs!.paths.serverKey}\n`);
  const { broker, ports, logs } = await cliBroker(['-c', file]);
  try {
    const [plain, secure] = ports as [number, number];
    for (let i = 0; i < 2; i++) {
      await new Promise<void>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: plain, rejectUnauthorized: false });
        s.on('error', () => resolve());
        s.on('close', () => resolve());
      });
      await new Promise<void>((resolve) => {
        const s = netConnect(secure, '127.0.0.1', () => s.write(Buffer.from([0x10, 0x10, 0, 4, 77, 81, 84, 84, 4, 2, 0, 60, 0, 4, 97, 98, 99, 100])));
        s.on('error', () => resolve());
        s.on('close', () => resolve());
      });
    }
    await new Promise((r) => setTimeout(r, 300));
    const lines = logs();
    const tlsOnPlain = lines.filter((l) => /started a TLS handshake on a plain MQTT port: it must connect without TLS/.test(String(l.msg)));
    const plainOnTls = lines.filter((l) => /connected without TLS \(plain MQTT\?\) to a TLS port: it must use TLS here/.test(String(l.msg)));
    assert.equal(tlsOnPlain.length, 1, 'one line for two TLS clients on the plain port within 10 s');
    assert.equal(plainOnTls.length, 1, 'one line for two plain clients on the TLS port within 10 s');
    for (const l of [...tlsOnPlain, ...plainOnTls]) assert.equal(l.level, 30, 'info');
    assert.ok(!lines.some((l) => l.msg === 'TLS handshake failed'), 'not the bare OpenSSL code');
  } finally {
    broker.kill();
    await broker.done;
  }
});

test('SIGHUP applies a crl added to (and removed from) a listener in the config file; a change it cannot apply is named', { skip: certs ? false : 'openssl not installed' }, async () => {
  const dir = tempDir();
  const listener = (extra: string) =>
    `listeners:\n  - type: tls\n    host: 127.0.0.1\n    port: 0\n    cert: ${certs!.paths.serverCert}\n    key: ${certs!.paths.serverKey}\n    ca: ${certs!.paths.ca}\n    requestCert: true\n${extra}`;
  const file = yaml(dir, 'mtls.yaml', listener(''));
  const { broker, ports, logs } = await cliBroker(['-c', file]);
  const revoked = () => connect(`mqtts://127.0.0.1:${ports[0]}`, { tls: { ca: certs!.ca, cert: certs!.revoked.cert, key: certs!.revoked.key }, reconnect: false });
  const hup = async (count: number) => {
    broker.kill('SIGHUP');
    const deadline = Date.now() + 5000;
    while (logs().filter((l) => l.msg === 'TLS certificates reloaded').length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  };
  try {
    await (await revoked()).end(); // no crl yet: the revoked device still connects
    writeFileSync(file, listener(`    crl: ${certs!.paths.crl}\n`));
    await hup(1);
    assert.ok(logs().some((l) => l.msg === 'config file: TLS settings applied; new connections use them' && JSON.stringify(l.changed) === '["crl"]'));
    await assert.rejects(revoked(), 'refused after SIGHUP, without a restart');
    writeFileSync(file, listener(''));
    await hup(2);
    await (await revoked()).end();
    // requestCert is fixed when the listener opens: said, not silently ignored
    writeFileSync(file, listener('').replace('requestCert: true\n', 'requestCert: false\n'));
    broker.kill('SIGHUP');
    const deadline = Date.now() + 5000;
    while (!logs().some((l) => l.level === 40 && /need a restart/.test(String(l.msg))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const warn = logs().find((l) => l.level === 40 && /need a restart/.test(String(l.msg)));
    assert.deepEqual(warn?.changed, ['listeners[0].requestCert']);
  } finally {
    broker.kill();
    await broker.done;
  }
  assert.ok(readFileSync(file, 'utf8').includes('requestCert: false'));
});
