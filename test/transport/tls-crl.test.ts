// Certificate revocation lists on mutual-TLS listeners (`crl`, Mosquitto's `crlfile`): a client certificate
// the CA has revoked is refused at the handshake, over TLS and WSS; the CRL file is reloaded when it changes.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { createBroker } from '../../src/server/broker.js';
import { validateConfig } from '../../src/config/config.js';
import { convertMosquittoConf } from '../../src/config/mosquitto-conf.js';
import { run } from '../cli/cli-process.js';
import { hasCommand, makeCerts, type TestCerts } from '../helpers/certs.js';
import { connect, end, startLogged, type LoggedBroker } from './helpers.js';
import { describeOrSkip } from '../helpers/skip.js';

const certs: TestCerts | undefined = makeCerts();
const skip = certs ? false : 'openssl not installed';
after(() => certs?.cleanup());

const mtls = (extra: Record<string, unknown>) => ({ host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey, ca: certs!.paths.ca, requestCert: true, ...extra });

describeOrSkip('certificate revocation lists', skip, () => {
  let b: LoggedBroker;
  let liveCrl: string;
  before(async () => {
    liveCrl = join(certs!.dir, 'live.crl');
    writeFileSync(liveCrl, certs!.emptyCrl);
    b = await startLogged({
      listeners: [
        { type: 'tls', ...mtls({ crl: certs!.paths.crl }) },
        { type: 'wss', ...mtls({ crl: [certs!.paths.crl] }) },
        { type: 'tls', ...mtls({ crl: liveCrl }) },
        { type: 'tls', ...mtls({}) }, // no crl: revocation is not checked
      ] as never,
    });
  });
  after(() => b.broker.close());

  const revoked = () => ({ ca: certs!.ca, cert: certs!.revoked.cert, key: certs!.revoked.key });
  const good = () => ({ ca: certs!.ca, cert: certs!.client.cert, key: certs!.client.key });

  it('refuses a revoked certificate over TLS and WSS, and logs that it is revoked', async () => {
    const before = b.logged('TLS client refused').length;
    await assert.rejects(connect(`mqtts://127.0.0.1:${b.broker.address(0).port}`, revoked()));
    await assert.rejects(connect(`wss://127.0.0.1:${b.broker.address(1).port}/mqtt`, revoked()));
    const refused = b.logged('TLS client refused').slice(before);
    assert.equal(refused.length, 2);
    for (const line of refused) assert.match(String(line.reason), /client certificate revoked/);
  });

  it('accepts a certificate of the same CA that the CRL does not list', async () => {
    const c = await connect(`mqtts://127.0.0.1:${b.broker.address(0).port}`, good());
    const w = await connect(`wss://127.0.0.1:${b.broker.address(1).port}/mqtt`, good());
    await end(c, w);
  });

  it('without crl the revoked certificate is accepted (it is still signed by the CA)', async () => {
    const c = await connect(`mqtts://127.0.0.1:${b.broker.address(3).port}`, revoked());
    await end(c);
  });

  it('reloads the CRL when its file changes: new connections with the revoked certificate are refused', async () => {
    const port = b.broker.address(2).port;
    const live = await connect(`mqtts://127.0.0.1:${port}`, { ...revoked(), clientId: 'before-revocation' });
    const reloads = b.logged('TLS certificates reloaded').length;
    writeFileSync(liveCrl, certs!.crl);
    const deadline = Date.now() + 3000;
    while (b.logged('TLS certificates reloaded').length === reloads && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(b.logged('TLS certificates reloaded').length > reloads, 'the CRL change was picked up');
    await assert.rejects(connect(`mqtts://127.0.0.1:${port}`, revoked()));
    const c = await connect(`mqtts://127.0.0.1:${port}`, good());
    // Like a certificate reload, a CRL reload leaves live connections alone (docs/configuration.md says so).
    assert.equal(live.connected, true);
    await end(c, live);
  });

  it('petrel conn with the revoked certificate fails at CONNACK and names the certificate as a likely cause', async () => {
    const dir = certs!.dir;
    const r = await run(['conn', `mqtts://127.0.0.1:${b.broker.address(0).port}`, '--cafile', certs!.paths.ca, '--cert', join(dir, 'revoked.crt'), '--key', join(dir, 'revoked.key')]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /\[ok\]\s+TLS/);
    assert.match(r.stdout, /\[FAIL\] CONNACK .*closed by the server before CONNACK/);
    assert.match(r.stdout, /may not accept the client certificate \(signed by a CA the server trusts\? expired or revoked\?\)/);
  });

  it('mosquitto_pub with the revoked certificate fails, with the good one it works', async (t: TestContext) => {
    if (!hasCommand('mosquitto_pub')) return t.skip('mosquitto-clients not installed');
    const run = (name: string) =>
      new Promise<number | null>((resolve) => {
        const p = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.broker.address(0).port), '--cafile', certs!.paths.ca, '--cert', join(certs!.dir, `${name}.crt`), '--key', join(certs!.dir, `${name}.key`), '-t', 'crl/test', '-m', name]);
        p.on('close', resolve);
      });
    assert.notEqual(await run('revoked'), 0);
    assert.equal(await run('client'), 0);
  });
});

describeOrSkip('crl configuration', skip, () => {
  it('needs requestCert: a CRL on a listener that asks for no certificate is refused, naming the field', () => {
    assert.throws(() => validateConfig({ listeners: [{ type: 'tls', cert: 'c', key: 'k', ca: 'ca', crl: 'ca.crl' }] }), /listeners\[0\]\.requestCert: must be true for a CRL to apply/);
    assert.throws(() => validateConfig({ listeners: [{ type: 'tls', cert: 'c', key: 'k', ca: 'ca', requestCert: true, crl: 5 }] }), /listeners\[0\]\.crl/);
  });

  it('a CRL file that cannot be read stops the listener from starting, naming the setting and the file', async () => {
    const broker = createBroker({ listeners: [{ type: 'tls', ...mtls({ crl: join(certs!.dir, 'missing.crl') }) }] as never });
    await assert.rejects(broker.listen(), /crl: cannot read .*missing\.crl \(ENOENT\)/);
    await broker.close();
  });

  it('a trusted CA without a CRL: its clients are refused, and the log says which setting to fix', async () => {
    // Once `crl` is set, OpenSSL wants a CRL from the issuer of every certificate in a client's chain.
    const b = await startLogged({ listeners: [{ type: 'tls', ...mtls({ crl: certs!.paths.crl, ca: [certs!.paths.ca, join(certs!.dir, 'foreign-ca.crt')] }) }] as never });
    try {
      await assert.rejects(connect(`mqtts://127.0.0.1:${b.broker.address(0).port}`, { ca: certs!.ca, cert: certs!.foreign.cert, key: certs!.foreign.key }));
      const refused = b.logged('TLS client refused');
      assert.equal(refused.length, 1);
      assert.match(String(refused[0]!.reason), /no CRL from its CA in the listener's crl/);
    } finally {
      await b.broker.close();
    }
  });

  it('a CRL past its next update refuses every client, and the log says it has expired', async () => {
    const old = join(certs!.dir, 'old.crl');
    execFileSync('openssl', ['ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-gencrl', '-crl_lastupdate', '20260101000000Z', '-crl_nextupdate', '20260102000000Z', '-out', old], { cwd: certs!.dir, stdio: 'ignore' });
    const b = await startLogged({ listeners: [{ type: 'tls', ...mtls({ crl: old }) }] as never });
    try {
      await assert.rejects(connect(`mqtts://127.0.0.1:${b.broker.address(0).port}`, { ca: certs!.ca, cert: certs!.client.cert, key: certs!.client.key }));
      const refused = b.logged('TLS client refused');
      assert.equal(refused.length, 1);
      assert.match(String(refused[0]!.reason), /the listener's CRL from its CA has expired/);
    } finally {
      await b.broker.close();
    }
  });

  it('petrel convert-config turns crlfile into crl', () => {
    const { config, notes } = convertMosquittoConf('listener 8883\ncertfile s.crt\nkeyfile s.key\ncafile ca.crt\nrequire_certificate true\ncrlfile ca.crl\n');
    const listener = (config.listeners as unknown as Record<string, unknown>[])[0]!;
    assert.equal(listener.crl, 'ca.crl');
    assert.equal(listener.requestCert, true);
    assert.ok(!notes.some((n) => /crlfile/.test(n)), notes.join('\n'));
  });
});
