// Debian's HAProxy for real, terminating mutual TLS in front of a Petrel tcp listener and passing the
// client's TLS facts on in PROXY v2 TLVs (send-proxy-v2-ssl-cn): the client certificate's CN becomes the
// username and the ACL's certCN; a client the proxy could not verify is refused by Petrel too.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ClientInfo } from '../../src/broker/hooks.js';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { canConnect, eventually, freePort } from '../client/helpers.js';
import { connect, startLogged, type LoggedBroker } from './helpers.js';

const HAPROXY = '/usr/sbin/haproxy';

/** The configuration docs/deploy.md shows, with test ports and files. */
function haproxyConfig(certs: TestCerts, requiredPort: number, optionalPort: number, petrelPort: number): string {
  return `global
    maxconn 1000
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend mqtts
    bind 127.0.0.1:${requiredPort} ssl crt ${join(certs.dir, 'haproxy.pem')} ca-file ${certs.paths.ca} verify required
    default_backend petrel

# verify optional and every verification error ignored: Petrel itself must refuse what the proxy did not verify
frontend mqtts-lenient
    bind 127.0.0.1:${optionalPort} ssl crt ${join(certs.dir, 'haproxy.pem')} ca-file ${certs.paths.ca} verify optional crt-ignore-err all ca-ignore-err all
    default_backend petrel

backend petrel
    server petrel1 127.0.0.1:${petrelPort} send-proxy-v2-ssl-cn
`;
}

describe('HAProxy terminating mutual TLS in front of Petrel (PROXY v2 TLVs)', () => {
  const skip = !existsSync(HAPROXY) ? `${HAPROXY} is not installed (apt-get install haproxy)` : undefined;
  let certs: TestCerts | undefined;
  let b: LoggedBroker;
  let haproxy: ChildProcess | undefined;
  let haproxyLog = '';
  let requiredPort = 0;
  let optionalPort = 0;

  before(async () => {
    if (skip) return;
    certs = makeCerts();
    if (!certs) return;
    b = await startLogged({
      listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0, proxyProtocol: true, trustedProxies: ['127.0.0.1'], peerCertAsUsername: 'cn' }],
      acl: { default: 'allow', rules: [{ permission: 'deny', action: 'subscribe', certCN: 'device-2', topic: 'admin/#' }] },
    });
    writeFileSync(join(certs.dir, 'haproxy.pem'), certs.server.cert + certs.server.key);
    requiredPort = await freePort();
    optionalPort = await freePort();
    const cfg = join(certs.dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(certs, requiredPort, optionalPort, b.broker.address().port));
    haproxy = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout!.on('data', (d) => (haproxyLog += d));
    haproxy.stderr!.on('data', (d) => (haproxyLog += d));
    const ready = async () => (await canConnect(requiredPort)) && (await canConnect(optionalPort));
    const deadline = Date.now() + 10_000;
    while (!(await ready())) {
      if (haproxy.exitCode !== null || Date.now() > deadline) throw new Error(`haproxy did not start: ${haproxyLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    if (haproxy && haproxy.exitCode === null) {
      const exited = new Promise((r) => haproxy!.once('exit', r));
      haproxy.kill('SIGTERM');
      await exited;
    }
    await b?.broker.close();
    certs?.cleanup();
  });

  const tls = (pair: { cert: string; key: string } | undefined) => ({ ca: certs!.ca, ...(pair ?? {}), rejectUnauthorized: true, servername: 'localhost' });

  it('the client certificate CN becomes the username and certCN; the CONNECT username is not taken', { skip }, async (t) => {
    if (!certs) return t.skip('openssl not found');
    const seen: ClientInfo[] = [];
    const onConnected = (c: ClientInfo) => seen.push(c);
    b.broker.on('clientConnected', onConnected);
    t.after(() => b.broker.off('clientConnected', onConnected));
    const client = await connect(`mqtts://127.0.0.1:${requiredPort}`, { ...tls(certs.client), clientId: 'haproxy-1', username: 'someone-else', protocolVersion: 5 });
    t.after(() => client.end(true));
    await eventually(() => seen.length === 1);
    assert.equal(seen[0]!.username, 'device-1');
    assert.equal(seen[0]!.certificateCN, 'device-1');
    assert.match(seen[0]!.remoteAddress, /^127\.0\.0\.1:\d+$/);
    const proxyPort = Number(seen[0]!.remoteAddress.split(':')[1]);
    assert.equal(proxyPort, (client.stream as unknown as { localPort: number }).localPort, "the client's own port, from the header, not HAProxy's");
    assert.equal(b.broker.inspect.connection('haproxy-1')?.secure, true);
  });

  it('a certCN ACL rule applies behind the proxy', { skip }, async (t) => {
    if (!certs) return t.skip('openssl not found');
    const client = await connect(`mqtts://127.0.0.1:${requiredPort}`, { ...tls(certs.client2), clientId: 'haproxy-2', protocolVersion: 5 });
    t.after(() => client.end(true));
    const granted = await client.subscribeAsync('admin/x', { qos: 1 }).then(
      (g) => g.map((x) => x.qos),
      (err: { packet?: { granted?: number[] } }) => err.packet?.granted,
    );
    assert.deepEqual(granted, [0x87], 'device-2 may not subscribe to admin/#');
  });

  it('HAProxy with verify required refuses a foreign certificate and a client without one', { skip }, async (t) => {
    if (!certs) return t.skip('openssl not found');
    await assert.rejects(connect(`mqtts://127.0.0.1:${requiredPort}`, { ...tls(certs.foreign), clientId: 'foreign' }));
    await assert.rejects(connect(`mqtts://127.0.0.1:${requiredPort}`, { ...tls(undefined), clientId: 'nocert' }));
  });

  it('what the proxy let through unverified (expired) or without a certificate, Petrel refuses with the reason', { skip }, async (t) => {
    if (!certs) return t.skip('openssl not found');
    await assert.rejects(connect(`mqtts://127.0.0.1:${optionalPort}`, { ...tls(certs.expired), clientId: 'expired', protocolVersion: 5 }), /Bad User Name or Password|bad user name or password/i);
    await assert.rejects(connect(`mqtts://127.0.0.1:${optionalPort}`, { ...tls(undefined), clientId: 'anon', username: 'device-1', protocolVersion: 5 }), /Bad User Name or Password|bad user name or password/i);
    const text = JSON.stringify(b.logs);
    assert.match(text, /client certificate not verified by the proxy \(verify result 10\)/, 'X509_V_ERR_CERT_HAS_EXPIRED');
    assert.match(text, /no client certificate \(reported by the proxy\)/);
  });
});
