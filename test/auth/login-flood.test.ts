// A wrong-password flood over real sockets does not lock real users out (issue 24, defect 1). Without the
// login protection, a legitimate CONNECT waited behind every flood check and failed at hookTimeout.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setPassword } from '../../src/auth/password-file.js';
import { connectBytes, loginOnce, startFlood } from '../helpers/login-flood.js';
import { eventually } from '../helpers/broker.js';
import { startLogged } from '../transport/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-flood-'));
const passwordFile = join(dir, 'passwd');
after(() => rmSync(dir, { recursive: true, force: true }));
before(async () => {
  await setPassword(passwordFile, 'alice', 'alice-pw');
  await setPassword(passwordFile, 'bob', 'bob-pw');
});

describe('wrong-password flood', () => {
  // hookTimeout is short so that a login queued behind the flood fails within the test (as at 5 s with 400 clients).
  const options = { host: '127.0.0.1', port: 0, passwordFile, hookTimeout: 2500, allowAnonymous: false };

  it('a flood of 200 clients on one user name: a legitimate user logs in, every time, and the flooding pair is banned once in the log', async () => {
    const { broker, logged } = await startLogged(options);
    const port = broker.address().port;
    try {
      const flood = startFlood(port, { clients: 200, username: 'bob' });
      const codes: (number | null)[] = [];
      for (let i = 0; i < 4; i++) codes.push((await loginOnce(port, connectBytes(`alice-${i}`, 'alice', 'alice-pw'))).code);
      assert.deepEqual([...codes], [0, 0, 0, 0], 'during the flood, before any ban');
      // The ban refuses the flood with 0x8A Banned (3.1.1: 0x05) and no password check.
      await eventually(() => (flood.codes['0x05'] ?? 0) > 0, 20_000, 'refusals as banned');
      for (let i = 4; i < 8; i++) codes.push((await loginOnce(port, connectBytes(`alice-${i}`, 'alice', 'alice-pw'))).code);
      await flood.stop();
      assert.deepEqual(codes, [0, 0, 0, 0, 0, 0, 0, 0]);
      assert.equal(logged('too many failed logins').length, 1);
      assert.equal(logged('hook').length, 0, 'no hook is configured: no log line talks of one');
    } finally {
      await broker.close();
    }
  });

  it('a flood spraying user names from the same address: a user who logged in before still logs in (from the cache)', async () => {
    const { broker, logged } = await startLogged({ ...options, loginProtection: { maxAddressFailures: 30 } });
    const port = broker.address().port;
    try {
      assert.equal((await loginOnce(port, connectBytes('alice-0', 'alice', 'alice-pw'))).code, 0);
      const flood = startFlood(port, { clients: 150, username: (i, n) => `user-${i}-${n}` });
      await eventually(() => logged('address banned').length > 0, 20_000, 'the address ban');
      const codes: (number | null)[] = [];
      for (let i = 1; i < 6; i++) codes.push((await loginOnce(port, connectBytes(`alice-${i}`, 'alice', 'alice-pw'))).code);
      await flood.stop();
      assert.deepEqual(codes, [0, 0, 0, 0, 0]);
      assert.equal(logged('address banned').length, 1);
    } finally {
      await broker.close();
    }
  });
});
