import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deleteUser, hashPassword, parseHash, PasswordFile, setPassword, verifyPassword } from '../../src/auth/password-file.js';
import type { Broker } from '../../src/broker/broker.js';
import type { ConnackPacket } from '../../src/protocol/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { startLogged, type LoggedBroker } from '../transport/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-passwd-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('password hashes', () => {
  it('are salted scrypt, never the plain text, and verify', async () => {
    const a = await hashPassword('s3cret!');
    const b = await hashPassword('s3cret!');
    assert.match(a, /^\$scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/);
    assert.notEqual(a, b, 'a fresh salt each time');
    assert.ok(!a.includes('s3cret'));
    assert.equal(await verifyPassword('s3cret!', a), true);
    assert.equal(await verifyPassword('s3cret?', a), false);
    assert.throws(() => parseHash('hunter2'), /plain-text/);
  });

  it('setPassword / deleteUser edit the file (mode 0600), keep other lines, never write the password', async () => {
    const file = join(dir, 'edit.passwd');
    writeFileSync(file, '# users\n');
    assert.equal(await setPassword(file, 'alice', 'pw-alice'), 'added');
    assert.equal(await setPassword(file, 'bob', 'pw-bob'), 'added');
    assert.equal(await setPassword(file, 'alice', 'pw-alice-2'), 'updated');
    const text = readFileSync(file, 'utf8');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(text.startsWith('# users\n'));
    assert.ok(!text.includes('pw-alice') && !text.includes('pw-bob'));
    const pf = new PasswordFile(file);
    assert.equal(pf.size, 2);
    assert.equal(await pf.verify('alice', Buffer.from('pw-alice-2')), true);
    assert.equal(await pf.verify('alice', Buffer.from('pw-alice')), false);
    assert.equal(deleteUser(file, 'bob'), true);
    assert.equal(deleteUser(file, 'bob'), false);
    assert.equal(new PasswordFile(file).has('bob'), false);
  });

  it('a malformed file is refused with the line number', () => {
    const file = join(dir, 'bad.passwd');
    writeFileSync(file, 'alice:plaintext\n');
    assert.throws(() => new PasswordFile(file), /line 1 \(user "alice"\): not a \$scrypt\$ hash/);
  });
});

describe('broker with a password file', () => {
  let b: LoggedBroker;
  let broker: Broker;
  const file = join(dir, 'broker.passwd');
  before(async () => {
    await setPassword(file, 'alice', 'wonderland');
    b = await startLogged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], passwordFile: file, allowAnonymous: false });
    broker = b.broker;
  });
  after(() => broker.close());

  const attempt = async (username: string | undefined, password: string | undefined, protocolVersion: 4 | 5 = 4) => {
    const { client, connack } = await RawClient.connect(broker.address().port, {
      protocolVersion,
      clientId: `c-${username}`,
      username,
      password: password === undefined ? undefined : Buffer.from(password),
    });
    client.destroy();
    return (connack as ConnackPacket).reasonCode;
  };

  it('accepts the right password, refuses a wrong one and an unknown user', async () => {
    assert.equal(await attempt('alice', 'wonderland'), 0);
    assert.equal(await attempt('alice', 'looking-glass'), 4); // 3.1.1: bad user name or password
    assert.equal(await attempt('alice', 'looking-glass', 5), 0x86);
    assert.equal(await attempt('mallory', 'wonderland', 5), 0x86);
    assert.equal(await attempt(undefined, undefined, 5), 0x87); // anonymous not allowed
  });

  it('never logs a password', () => {
    const all = JSON.stringify(b.logs);
    assert.ok(!all.includes('wonderland') && !all.includes('looking-glass'));
    assert.ok(b.logged('bad username or password').length >= 2);
  });

  it('reloads the file when it changes', async () => {
    assert.equal(await attempt('bob', 'builder', 5), 0x86);
    await setPassword(file, 'bob', 'builder');
    const deadline = Date.now() + 3000;
    let code = -1;
    while (Date.now() < deadline && (code = await attempt('bob', 'builder', 5)) !== 0) await new Promise((r) => setTimeout(r, 20));
    assert.equal(code, 0);
    assert.ok(b.logged('password file reloaded').length >= 1);
  });
});
