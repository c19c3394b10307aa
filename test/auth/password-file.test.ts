import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deleteUser, hashPassword, parseHash, PasswordFile, setPassword, verifyPassword } from '../../src/auth/password-file.js';
import type { Broker } from '../../src/server/broker.js';
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

describe('password files made by mosquitto_passwd', () => {
  // Made by Debian's mosquitto_passwd 2.0.11, password "secret": the default ($7$, PBKDF2-SHA512, 101
  // iterations), -H sha512 ($6$, Mosquitto 1.x) and -H sha512-pbkdf2 -I 1000.
  const MOSQUITTO_FILE = [
    'alice:$7$101$Huw8FYW+VaUPVR4x$OvR/UNjjJQ8hw9WmtFLE3wSGyfUz41XWMORJQCJeuExn97tzxmrmx1AjkiThDGFhGoktydITe/ftgVelK8NF4Q==',
    'bob:$6$2T4PRel6bh/KQGsI$7uhEgpgRAMzUT8JqdosCETJ0ua/h0Laoo1N8WlujfLG72wfLM1hKQVsA6qF5TaWiGNNWXRPbLsE6340cauWdIQ==',
    'carol:$7$1000$3wayLGfz+6/njrYs$pOqPbOGXQ/nanZmzyp6OPyqzDPSf8dAnbYLY46cDBo39xQVhtUFOtwSfZcKj1IuStdJtUt00wzPsC/DG1S+KIQ==',
  ].join('\n');

  it('$7$ (PBKDF2-SHA512) and $6$ (SHA-512) hashes verify; a wrong password does not', async () => {
    const file = join(dir, 'mosquitto.passwd');
    writeFileSync(file, `${MOSQUITTO_FILE}\n`);
    const pf = new PasswordFile(file);
    for (const user of ['alice', 'bob', 'carol']) {
      assert.equal(await pf.verify(user, Buffer.from('secret')), true, user);
      assert.equal(await pf.verify(user, Buffer.from('Secret')), false, user);
    }
    assert.deepEqual(pf.weakUsers(), ['bob']);
  });

  it('malformed Mosquitto hashes are refused with the line and the reason', () => {
    assert.throws(() => parseHash('$7$0$Huw8FYW+VaUPVR4x$OvR/UNjj'), /iterations out of range/);
    assert.throws(() => parseHash('$7$101$Huw8FYW+VaUPVR4x$OvR/UNjj'), /64 bytes of SHA-512/);
    assert.throws(() => parseHash('$6$2T4PRel6bh/KQGsI$'), /not a \$scrypt\$ hash, nor a mosquitto_passwd/);
    const file = join(dir, 'bad-mosquitto.passwd');
    writeFileSync(file, `${MOSQUITTO_FILE}\nmallory:$7$5000000$Huw8FYW+VaUPVR4x$${'A'.repeat(86)}==\n`);
    assert.throws(() => new PasswordFile(file), /line 4 \(user "mallory"\): PBKDF2 iterations out of range/);
  });

  it('a broker reads a file just made by mosquitto_passwd, and warns (once, without passwords) about $6$ hashes', { skip: spawnSync('mosquitto_passwd', ['-h']).error ? 'mosquitto_passwd (mosquitto) not installed' : false }, async () => {
    const file = join(dir, 'fresh-mosquitto.passwd');
    writeFileSync(file, '');
    spawnSync('mosquitto_passwd', ['-b', file, 'dora', 'pw-of-dora']);
    spawnSync('mosquitto_passwd', ['-H', 'sha512', '-b', file, 'eve', 'pw-of-eve']);
    const logged = await startLogged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], passwordFile: file, allowAnonymous: false });
    try {
      const port = logged.broker.address().port;
      const code = async (username: string, password: string) => {
        const { client, connack } = await RawClient.connect(port, { protocolVersion: 5, clientId: username, username, password: Buffer.from(password) });
        client.destroy();
        return connack.reasonCode;
      };
      assert.equal(await code('dora', 'pw-of-dora'), 0);
      assert.equal(await code('eve', 'pw-of-eve'), 0);
      assert.equal(await code('dora', 'pw-of-eve'), 0x86);
      const warnings = logged.logged('Mosquitto 1.x $6$ hashes');
      assert.equal(warnings.length, 1);
      assert.deepEqual(warnings[0]!.users, ['eve']);
      assert.ok(!JSON.stringify(logged.logs).includes('pw-of-dora') && !JSON.stringify(logged.logs).includes('pw-of-eve'));
    } finally {
      await logged.broker.close();
    }
  });
});
