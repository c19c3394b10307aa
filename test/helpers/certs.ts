// Test certificates made with openssl at test time in a temp dir: a CA, a server certificate for
// 127.0.0.1/localhost, client certificates from the CA, one from a foreign CA, an expired one, a revoked
// one, and the CA's certificate revocation lists (one that lists it, one that lists nothing).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCerts {
  dir: string;
  ca: string;
  server: { cert: string; key: string };
  /** CN "device-1", SAN DNS:device-1.example */
  client: { cert: string; key: string };
  /** CN "device-2" (no SAN) */
  client2: { cert: string; key: string };
  /** CN "intruder", signed by another CA */
  foreign: { cert: string; key: string };
  /** CN "old-device", from the right CA but expired */
  expired: { cert: string; key: string };
  /** Another server certificate (CN "Petrel Test Server 2") for reload tests */
  server2: { cert: string; key: string };
  /** CN "lost-device", from the right CA, listed in `crl` */
  revoked: { cert: string; key: string };
  /** The CA's CRL listing `revoked`, and one listing nothing (PEM). */
  crl: string;
  emptyCrl: string;
  /** Paths of the PEM files in `dir`. */
  paths: Record<'ca' | 'serverCert' | 'serverKey' | 'server2Cert' | 'server2Key' | 'crl' | 'emptyCrl', string>;
  cleanup(): void;
}

export function hasOpenssl(): boolean {
  return spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** Generates the set; undefined when openssl is not installed. */
export function makeCerts(): TestCerts | undefined {
  if (!hasOpenssl()) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'petrel-certs-'));
  const p = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const makeCa = (name: string, cn: string) => openssl('req', '-x509', ...EC, '-keyout', p(`${name}.key`), '-out', p(`${name}.crt`), '-days', '30', '-subj', `/CN=${cn}`);
  let serial = 1000;
  const issue = (name: string, cn: string, ca: string, ext: string, days = '30') => {
    openssl('req', ...EC, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${cn}`);
    writeFileSync(p(`${name}.ext`), ext);
    openssl('x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${ca}.crt`), '-CAkey', p(`${ca}.key`), '-set_serial', String(serial++), '-days', days, '-extfile', p(`${name}.ext`), '-out', p(`${name}.crt`));
  };
  makeCa('ca', 'Petrel Test CA');
  makeCa('foreign-ca', 'Some Other CA');
  const serverExt = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n';
  const clientExt = (san?: string) => `${san ? `subjectAltName=${san}\n` : ''}extendedKeyUsage=clientAuth\n`;
  issue('server', 'Petrel Test Server', 'ca', serverExt);
  issue('server2', 'Petrel Test Server 2', 'ca', serverExt);
  issue('client', 'device-1', 'ca', clientExt('DNS:device-1.example'));
  issue('client2', 'device-2', 'ca', clientExt());
  issue('foreign', 'intruder', 'foreign-ca', clientExt());
  issue('expired', 'old-device', 'ca', clientExt(), '-1');
  issue('revoked', 'lost-device', 'ca', clientExt());
  // `openssl ca` keeps what it revoked in a database file; a CRL is made from it.
  writeFileSync(p('ca.cnf'), '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n');
  writeFileSync(p('index.txt'), '');
  writeFileSync(p('crlnumber'), '01\n');
  const ca = ['-config', p('ca.cnf'), '-keyfile', p('ca.key'), '-cert', p('ca.crt')];
  openssl('ca', ...ca, '-gencrl', '-out', p('empty.crl'));
  openssl('ca', ...ca, '-revoke', p('revoked.crt'));
  openssl('ca', ...ca, '-gencrl', '-out', p('ca.crl'));
  const read = (name: string) => readFileSync(p(name), 'utf8');
  const pair = (name: string) => ({ cert: read(`${name}.crt`), key: read(`${name}.key`) });
  return {
    dir,
    ca: read('ca.crt'),
    server: pair('server'),
    server2: pair('server2'),
    client: pair('client'),
    client2: pair('client2'),
    foreign: pair('foreign'),
    expired: pair('expired'),
    revoked: pair('revoked'),
    crl: read('ca.crl'),
    emptyCrl: read('empty.crl'),
    paths: { ca: p('ca.crt'), serverCert: p('server.crt'), serverKey: p('server.key'), server2Cert: p('server2.crt'), server2Key: p('server2.key'), crl: p('ca.crl'), emptyCrl: p('empty.crl') },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
