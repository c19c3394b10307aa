import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { ClientInfo } from '../../src/broker/hooks.js';
import { hasCommand, makeCerts, type TestCerts } from '../helpers/certs.js';
import { connect, end, nextMessage, startLogged, subscribe, type LoggedBroker } from './helpers.js';
import { describeOrSkip } from '../helpers/skip.js';

const certs: TestCerts | undefined = makeCerts();
const skip = certs ? false : 'openssl not installed';
after(() => certs?.cleanup());

/** The certificate CN a plain TLS handshake sees (and the socket, still open). */
function serverCN(port: number, servername = 'localhost'): Promise<{ cn: string; socket: TLSSocket }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca: certs!.ca, checkServerIdentity: () => undefined }, () => {
      const cn = socket.getPeerCertificate().subject.CN;
      resolve({ cn: String(Array.isArray(cn) ? cn[0] : cn), socket });
    });
    socket.once('error', reject);
  });
}

describeOrSkip('TLS and WSS listeners (one-way)', skip, () => {
  let b: LoggedBroker;
  let certFile: string;
  let keyFile: string;
  before(async () => {
    certFile = join(certs!.dir, 'live.crt');
    keyFile = join(certs!.dir, 'live.key');
    writeFileSync(certFile, certs!.server.cert);
    writeFileSync(keyFile, certs!.server.key);
    b = await startLogged({
      listeners: [
        { type: 'tls', host: '127.0.0.1', port: 0, cert: certFile, key: keyFile },
        { type: 'wss', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey },
        { type: 'tls', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey, minVersion: 'TLSv1.3' },
        {
          type: 'tls',
          host: '127.0.0.1',
          port: 0,
          cert: certs!.paths.serverCert,
          key: certs!.paths.serverKey,
          sni: { 'other.example': { cert: certs!.paths.server2Cert, key: certs!.paths.server2Key } },
        },
      ],
    });
  });
  after(() => b.broker.close());

  it('MQTT.js over mqtts:// and wss:// with the CA', async () => {
    const seen: ClientInfo[] = [];
    b.broker.on('clientConnected', (c) => seen.push(c));
    const a = await connect(`mqtts://127.0.0.1:${b.broker.address(0).port}`, { ca: certs!.ca, clientId: 'tls-a' });
    const w = await connect(`wss://127.0.0.1:${b.broker.address(1).port}/mqtt`, { ca: certs!.ca, clientId: 'wss-w', protocolVersion: 5 });
    try {
      await subscribe(w, 'secure/t');
      const got = nextMessage(w, 'secure/t');
      a.publish('secure/t', 'encrypted', { qos: 1 });
      assert.equal((await got).payload, 'encrypted');
      assert.deepEqual(seen.map((c) => c.listener).sort(), [`tls:${b.broker.address(0).port}`, `wss:${b.broker.address(1).port}`].sort());
    } finally {
      await end(a, w);
    }
  });

  it('a client that does not trust the server certificate fails', async () => {
    await assert.rejects(connect(`mqtts://127.0.0.1:${b.broker.address(0).port}`, { rejectUnauthorized: true }), /self-signed|unable to (get|verify)/i);
  });

  it('refuses TLS 1.1, and TLS 1.2 where minVersion is TLSv1.3', async () => {
    const attempt = (port: number, maxVersion: 'TLSv1.1' | 'TLSv1.2') =>
      new Promise<void>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ca: certs!.ca, servername: 'localhost', maxVersion, minVersion: 'TLSv1' }, () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      });
    await assert.rejects(attempt(b.broker.address(0).port, 'TLSv1.1'));
    await attempt(b.broker.address(0).port, 'TLSv1.2');
    await assert.rejects(attempt(b.broker.address(2).port, 'TLSv1.2'));
  });

  it('chooses the certificate by server name (SNI)', async () => {
    const port = b.broker.address(3).port;
    const other = await serverCN(port, 'other.example');
    const dflt = await serverCN(port, 'localhost');
    other.socket.destroy();
    dflt.socket.destroy();
    assert.equal(other.cn, 'Petrel Test Server 2');
    assert.equal(dflt.cn, 'Petrel Test Server');
  });

  it('reloads certificates when the files change; live connections stay', async () => {
    const port = b.broker.address(0).port;
    const live = await connect(`mqtts://127.0.0.1:${port}`, { ca: certs!.ca, clientId: 'stays' });
    assert.equal((await serverCN(port)).cn, 'Petrel Test Server');
    writeFileSync(certFile, certs!.server2.cert);
    writeFileSync(keyFile, certs!.server2.key);
    const deadline = Date.now() + 3000;
    let cn = '';
    while (Date.now() < deadline) {
      const r = await serverCN(port);
      r.socket.destroy();
      cn = r.cn;
      if (cn === 'Petrel Test Server 2') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(cn, 'Petrel Test Server 2');
    assert.ok(b.logged('TLS certificates reloaded').length >= 1);
    assert.equal(live.connected, true);
    await subscribe(live, 'still/here');
    await end(live);
  });

  it('mosquitto_pub over TLS with --cafile', async (t: TestContext) => {
    if (!hasCommand('mosquitto_pub')) return t.skip('mosquitto-clients not installed');
    const port = b.broker.address(1).port; // publish over TLS, receive over WSS
    const w = await connect(`wss://127.0.0.1:${port}/mqtt`, { ca: certs!.ca });
    await subscribe(w, 'mosq/tls');
    const got = nextMessage(w, 'mosq/tls');
    const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.broker.address(3).port), '--cafile', certs!.paths.ca, '-t', 'mosq/tls', '-m', 'tls ok']);
    assert.equal(await new Promise((r) => pub.on('close', r)), 0);
    assert.equal((await got).payload, 'tls ok');
    await end(w);
  });
});

describeOrSkip('mutual TLS', skip, () => {
  let b: LoggedBroker;
  let port: number;
  let wssPort: number;
  let sanPort: number;
  before(async () => {
    b = await startLogged({
      allowAnonymous: false,
      listeners: [
        { type: 'tls', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey, ca: certs!.paths.ca, requestCert: true, peerCertAsUsername: 'cn' },
        { type: 'wss', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey, ca: certs!.paths.ca, requestCert: true, peerCertAsUsername: 'cn' },
        { type: 'tls', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey, ca: certs!.paths.ca, requestCert: true, peerCertAsClientId: 'san', peerCertAsUsername: 'cn' },
      ],
    });
    port = b.broker.address(0).port;
    wssPort = b.broker.address(1).port;
    sanPort = b.broker.address(2).port;
  });
  after(() => b.broker.close());

  it('accepts a client certificate from the CA and uses its CN as the username (no password)', async () => {
    const seen: ClientInfo[] = [];
    b.broker.on('clientConnected', (c) => seen.push(c));
    const c = await connect(`mqtts://127.0.0.1:${port}`, { ca: certs!.ca, cert: certs!.client.cert, key: certs!.client.key, clientId: 'm1' });
    const w = await connect(`wss://127.0.0.1:${wssPort}/mqtt`, { ca: certs!.ca, cert: certs!.client2.cert, key: certs!.client2.key, clientId: 'm2', username: 'ignored' });
    await end(c, w);
    assert.deepEqual(
      seen.map((s) => [s.clientId, s.username, s.certificateCN]),
      [
        ['m1', 'device-1', 'device-1'],
        ['m2', 'device-2', 'device-2'],
      ],
    );
  });

  it('can take the Client ID from the SAN', async () => {
    const seen: ClientInfo[] = [];
    b.broker.on('clientConnected', (c) => seen.push(c));
    const c = await connect(`mqtts://127.0.0.1:${sanPort}`, { ca: certs!.ca, cert: certs!.client.cert, key: certs!.client.key, clientId: 'whatever' });
    await end(c);
    assert.equal(seen[0]?.clientId, 'device-1.example');
    assert.equal(seen[0]?.username, 'device-1');
  });

  for (const [what, pair, reason] of [
    ['no certificate', undefined, 'no client certificate'],
    ['a certificate from another CA', 'foreign', 'UNABLE_TO'],
    ['an expired certificate', 'expired', 'CERT_HAS_EXPIRED'],
  ] as const) {
    it(`refuses a client with ${what} and logs why`, async () => {
      const before = b.logged('TLS client refused').length;
      const creds = pair ? { cert: certs![pair].cert, key: certs![pair].key } : {};
      await assert.rejects(connect(`mqtts://127.0.0.1:${port}`, { ca: certs!.ca, ...creds }));
      await assert.rejects(connect(`wss://127.0.0.1:${wssPort}/mqtt`, { ca: certs!.ca, ...creds }));
      const refused = b.logged('TLS client refused').slice(before);
      assert.equal(refused.length, 2);
      for (const line of refused) assert.match(String(line.reason), new RegExp(reason));
    });
  }

  it('mosquitto_pub with a client certificate', async (t: TestContext) => {
    if (!hasCommand('mosquitto_pub')) return t.skip('mosquitto-clients not installed');
    const dir = certs!.dir;
    const w = await connect(`mqtts://127.0.0.1:${port}`, { ca: certs!.ca, cert: certs!.client2.cert, key: certs!.client2.key });
    await subscribe(w, 'mtls/#');
    const got = nextMessage(w, 'mtls/mosq');
    const run = (cert: string) =>
      new Promise<number | null>((resolve) => {
        const p = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '--cafile', certs!.paths.ca, '--cert', join(dir, `${cert}.crt`), '--key', join(dir, `${cert}.key`), '-t', 'mtls/mosq', '-m', cert]);
        p.on('close', resolve);
      });
    assert.equal(await run('client'), 0);
    assert.equal((await got).payload, 'client');
    assert.notEqual(await run('foreign'), 0);
    await end(w);
  });
});
