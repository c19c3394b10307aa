// The wrong-password flood defences on a fake clock: the fair check queue, the fail2ban-style bans and the
// cache of recent successes (src/auth/login-*.ts).
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { LoginCache } from '../../src/auth/login-cache.js';
import { FailureTracker, type Ban } from '../../src/auth/login-failures.js';
import { LoginGuard, type PasswordSource } from '../../src/auth/login-guard.js';
import { LoginQueue, type CheckResult } from '../../src/auth/login-queue.js';
import { FakeClock } from '../helpers/fake-core.js';

/** A check the test finishes by hand. */
function manualChecks() {
  const started: { name: string; finish: (ok: boolean) => void }[] = [];
  const run = (name: string) => () => new Promise<boolean>((resolve) => started.push({ name, finish: resolve }));
  return { started, run };
}
const tick = () => new Promise((r) => setImmediate(r));

/** What the failures say, set by each test. */
function judge(suspects: string[] = [], serials: string[] = []) {
  const j = {
    suspects: new Set(suspects),
    serials: new Set(serials),
    clean: (address: string) => !j.suspects.has(address),
    serial: (username: string) => j.serials.has(username),
  };
  return j;
}

const QUEUE = { maxConcurrent: 1, maxPending: 100, maxPendingPerAddress: 100, maxPendingPerUsername: 100, maxWait: 3000 };

describe('login queue', () => {
  it('runs at most maxConcurrent checks and serves addresses round-robin, not in arrival order', async () => {
    const clock = new FakeClock();
    const q = new LoginQueue({ ...QUEUE, maxConcurrent: 2 }, judge(), clock.now);
    const { started, run } = manualChecks();
    for (let i = 0; i < 6; i++) void q.submit('10.0.0.1', 'bob', run(`flood${i}`));
    void q.submit('10.0.0.2', 'alice', run('alice'));
    assert.deepEqual(started.map((s) => s.name), ['flood0', 'flood1']);
    assert.deepEqual(q.size, { pending: 5, running: 2 });
    started[0]!.finish(false);
    await tick();
    // The other address is next, though 4 floods arrived before it.
    assert.deepEqual(started.map((s) => s.name), ['flood0', 'flood1', 'alice']);
  });

  it('within one address, serves user names round-robin', async () => {
    const clock = new FakeClock();
    const q = new LoginQueue(QUEUE, judge(), clock.now);
    const { started, run } = manualChecks();
    for (let i = 0; i < 4; i++) void q.submit('127.0.0.1', 'bob', run(`bob${i}`));
    void q.submit('127.0.0.1', 'alice', run('alice'));
    started[0]!.finish(false);
    await tick();
    assert.deepEqual(started.map((s) => s.name), ['bob0', 'alice']);
  });

  it('serves addresses with no recent failures first', async () => {
    const clock = new FakeClock();
    const q = new LoginQueue(QUEUE, judge(['10.0.0.1', '10.0.0.3']), clock.now);
    const { started, run } = manualChecks();
    void q.submit('10.0.0.1', 'x', run('suspect0'));
    void q.submit('10.0.0.1', 'x', run('suspect1'));
    void q.submit('10.0.0.3', 'y', run('suspect2'));
    void q.submit('10.0.0.2', 'alice', run('clean'));
    started[0]!.finish(false);
    await tick();
    assert.equal(started[1]!.name, 'clean');
  });

  it('answers busy beyond its bounds: per user name, per address, in total', async () => {
    const clock = new FakeClock();
    const q = new LoginQueue({ ...QUEUE, maxPending: 4, maxPendingPerAddress: 3, maxPendingPerUsername: 2 }, judge(['a', 'b', 'c']), clock.now);
    const { run } = manualChecks();
    const results: Promise<CheckResult>[] = [];
    void q.submit('a', 'first', run('running')); // runs: not pending
    results.push(q.submit('a', 'u', run('1')), q.submit('a', 'u', run('2')));
    assert.equal(await q.submit('a', 'u', run('3')), 'busy', 'per user name');
    results.push(q.submit('a', 'v', run('4')));
    assert.equal(await q.submit('a', 'w', run('5')), 'busy', 'per address');
    results.push(q.submit('b', 'w', run('6')));
    assert.equal(await q.submit('c', 'z', run('7')), 'busy', 'in total, for a suspect address');
    // A clean address takes the place of the newest check of the address with the most suspect checks waiting.
    void q.submit('d', 'alice', run('clean'));
    assert.equal(q.size.pending, 4);
    const settled = await Promise.race([Promise.any(results.map((p) => p.then((r) => (r === 'busy' ? r : Promise.reject())))), tick().then(() => 'none')]);
    assert.equal(settled, 'busy');
  });

  it('answers busy, without running it, a check that waited longer than maxWait', async () => {
    const clock = new FakeClock();
    const q = new LoginQueue(QUEUE, judge(), clock.now);
    const { started, run } = manualChecks();
    void q.submit('a', 'u', run('first'));
    const late = q.submit('b', 'v', run('late'));
    clock.time += 3001;
    started[0]!.finish(true);
    assert.equal(await late, 'busy');
    assert.equal(started.length, 1);
  });

  it('runs one check at a time for a user name under attack (serial), others meanwhile', async () => {
    const clock = new FakeClock();
    const q = new LoginQueue({ ...QUEUE, maxConcurrent: 3 }, judge([], ['alice']), clock.now);
    const { started, run } = manualChecks();
    void q.submit('a', 'alice', run('a1'));
    void q.submit('b', 'alice', run('a2'));
    void q.submit('c', 'carol', run('c1'));
    assert.deepEqual(started.map((s) => s.name), ['a1', 'c1']);
    started[0]!.finish(false);
    await tick();
    assert.deepEqual(started.map((s) => s.name), ['a1', 'c1', 'a2']);
  });

  it('priority is judged when a check is picked: checks queued before their address and user name failed lose their place', async () => {
    const clock = new FakeClock();
    const j = judge();
    const q = new LoginQueue({ ...QUEUE, maxConcurrent: 2 }, j, clock.now);
    const { started, run } = manualChecks();
    for (let i = 0; i < 4; i++) void q.submit('127.0.0.1', 'bob', run(`bob${i}`));
    assert.deepEqual(started.map((s) => s.name), ['bob0', 'bob1']);
    // bob0 fails: the address is suspect now, and bob's checks run one at a time.
    j.suspects.add('127.0.0.1');
    j.serials.add('bob');
    started[0]!.finish(false);
    await tick();
    assert.deepEqual(started.map((s) => s.name), ['bob0', 'bob1'], 'bob1 still runs: bob2 waits');
    void q.submit('127.0.0.1', 'alice', run('alice'));
    assert.deepEqual(started.map((s) => s.name), ['bob0', 'bob1', 'alice'], 'alice takes the free slot at once');
  });

  it('a check that throws counts as a failed one and frees its slot', async () => {
    const q = new LoginQueue(QUEUE, judge(), new FakeClock().now);
    assert.equal(await q.submit('a', 'u', () => Promise.reject(new Error('boom'))), false);
    assert.equal(await q.submit('a', 'u', () => Promise.resolve(true)), true);
    assert.deepEqual(q.size, { pending: 0, running: 0 });
  });
});

const LIMITS = { maxFailures: 3, maxAddressFailures: 5, window: 60_000, banTime: 300_000, maxTracked: 1000 };

describe('failure tracker', () => {
  it('bans an (address, user name) pair after maxFailures within the window, once, until banTime has passed', () => {
    const clock = new FakeClock();
    const bans: Ban[] = [];
    const t = new FailureTracker(LIMITS, clock.now, (b) => bans.push(b));
    t.failed('1.1.1.1', 'bob');
    t.failed('1.1.1.1', 'bob');
    assert.equal(t.pairBanned('1.1.1.1', 'bob'), false);
    t.failed('1.1.1.1', 'bob');
    assert.equal(t.pairBanned('1.1.1.1', 'bob'), true);
    assert.equal(t.pairBanned('1.1.1.1', 'alice'), false, 'other user names from the address still pass');
    assert.equal(t.pairBanned('2.2.2.2', 'bob'), false, 'the user name from other addresses still passes');
    assert.deepEqual(bans, [{ kind: 'address and username', address: '1.1.1.1', username: 'bob', failures: 3, banTime: 300_000 }]);
    t.failed('1.1.1.1', 'bob');
    assert.equal(bans.length, 1, 'logged once per ban');
    clock.time += 300_001;
    assert.equal(t.pairBanned('1.1.1.1', 'bob'), false);
  });

  it('forgets failures older than the window', () => {
    const clock = new FakeClock();
    const t = new FailureTracker(LIMITS, clock.now, () => {});
    t.failed('1.1.1.1', 'bob');
    t.failed('1.1.1.1', 'bob');
    assert.equal(t.addressSuspect('1.1.1.1'), true);
    clock.time += 60_001;
    assert.equal(t.addressSuspect('1.1.1.1'), false);
    t.failed('1.1.1.1', 'bob');
    assert.equal(t.pairBanned('1.1.1.1', 'bob'), false);
  });

  it('bans an address trying many user names, never a user name by itself', () => {
    const clock = new FakeClock();
    const bans: Ban[] = [];
    const t = new FailureTracker(LIMITS, clock.now, (b) => bans.push(b));
    for (let i = 0; i < 5; i++) t.failed('1.1.1.1', `user${i}`);
    assert.equal(t.addressBanned('1.1.1.1'), true);
    assert.equal(bans.at(-1)!.kind, 'address');
    for (let i = 0; i < 4; i++) t.failed(`3.3.3.${i}`, 'carol');
    assert.equal(t.usernameSuspect('carol'), true);
    assert.equal(t.pairBanned('9.9.9.9', 'carol'), false);
  });

  it('a success clears the pair (a mistyped password, then the right one)', () => {
    const t = new FailureTracker(LIMITS, new FakeClock().now, () => {});
    t.failed('1.1.1.1', 'bob');
    t.failed('1.1.1.1', 'bob');
    t.succeeded('1.1.1.1', 'bob');
    t.failed('1.1.1.1', 'bob');
    assert.equal(t.pairBanned('1.1.1.1', 'bob'), false);
  });

  it('keeps at most maxTracked entries per kind (an address-spraying flood cannot grow it without bound)', () => {
    const t = new FailureTracker({ ...LIMITS, maxTracked: 10 }, new FakeClock().now, () => {});
    for (let i = 0; i < 1000; i++) t.failed(`10.0.${i >> 8}.${i & 255}`, `u${i}`);
    assert.ok(t.tracked <= 30);
  });
});

describe('login cache', () => {
  it('remembers a success for its TTL, keyed on the stored hash; keeps no password', () => {
    const clock = new FakeClock();
    const c = new LoginCache(600_000, 100, clock.now);
    const pw = Buffer.from('s3cret');
    c.add('alice', '$hash1', pw);
    assert.equal(c.has('alice', '$hash1', pw), true);
    assert.equal(c.has('alice', '$hash1', Buffer.from('s3creT')), false);
    assert.equal(c.has('alice', '$hash2', pw), false, 'a new hash (password changed) does not match');
    assert.equal(c.has('bob', '$hash1', pw), false);
    const stored = JSON.stringify([...(c as unknown as { entries: Map<string, { digest: Buffer }> }).entries.values()].map((e) => e.digest.toString('latin1')));
    assert.ok(!stored.includes('s3cret'));
    clock.time += 600_001;
    assert.equal(c.has('alice', '$hash1', pw), false);
  });

  it('forgets users, keeps at most maxEntries, and does nothing with a TTL of 0', () => {
    const clock = new FakeClock();
    const c = new LoginCache(1000, 2, clock.now);
    for (const u of ['a', 'b', 'c']) c.add(u, 'h', Buffer.from('p'));
    assert.equal(c.size, 2);
    assert.equal(c.has('a', 'h', Buffer.from('p')), false);
    c.forget(['b']);
    assert.equal(c.has('b', 'h', Buffer.from('p')), false);
    const off = new LoginCache(0, 2, clock.now);
    off.add('a', 'h', Buffer.from('p'));
    assert.equal(off.size, 0);
  });
});

/** Passwords that verify when they equal "right-<user>", and count how often scrypt would have run. */
function fakePasswords(): PasswordSource & { verifications: number; hashes: Map<string, string> } {
  const hashes = new Map([
    ['alice', '$h-alice'],
    ['bob', '$h-bob'],
  ]);
  const src = {
    verifications: 0,
    hashes,
    hashOf: (u: string) => hashes.get(u),
    verify: async (u: string, p: Buffer | undefined) => {
      src.verifications++;
      return hashes.has(u) && p?.toString() === `right-${u}`;
    },
  };
  return src;
}

describe('login guard', () => {
  const silent = pino({ level: 'silent' });
  const attempt = (username: string, password: string, remoteAddress = '127.0.0.1:5000') => ({ clientId: 'c', username, password: Buffer.from(password), remoteAddress });

  it('bans the flooding pair after maxFailures (0x8A, no check run) while another user from the same address logs in', async () => {
    const clock = new FakeClock();
    const pw = fakePasswords();
    const logs: { msg: string; username?: string; address?: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => void logs.push(JSON.parse(l)) });
    const guard = new LoginGuard({ maxFailures: 3, failureDelay: 0 }, logger, clock.now);
    for (let i = 0; i < 3; i++) assert.equal(await guard.check(attempt('bob', 'wrong'), pw), false);
    assert.equal(await guard.check(attempt('bob', 'wrong'), pw), 0x8a);
    assert.equal(await guard.check(attempt('bob', 'right-bob'), pw), 0x8a, 'a banned pair is refused even with the right password');
    assert.equal(pw.verifications, 3);
    assert.equal(await guard.check(attempt('alice', 'right-alice'), pw), true);
    assert.equal(await guard.check(attempt('bob', 'right-bob', '10.1.1.1:1'), pw), true, 'bob from another address');
    assert.equal(logs.length, 1);
    assert.match(logs[0]!.msg, /too many failed logins: this user name banned from this address for 300 s/);
    assert.deepEqual([logs[0]!.username, logs[0]!.address], ['bob', '127.0.0.1']);
    assert.ok(!JSON.stringify(logs).includes('wrong'), 'never the password');
    clock.time += 300_001;
    assert.equal(await guard.check(attempt('bob', 'right-bob'), pw), true, 'the ban ends');
  });

  it('a recent success is answered from the cache without a check; a password change or a reload invalidates it', async () => {
    const clock = new FakeClock();
    const pw = fakePasswords();
    const guard = new LoginGuard({ failureDelay: 0 }, silent, clock.now);
    assert.equal(await guard.check(attempt('alice', 'right-alice'), pw), true);
    assert.equal(guard.check(attempt('alice', 'right-alice'), pw), true, 'synchronous, from the cache');
    assert.equal(pw.verifications, 1);
    assert.equal(await guard.check(attempt('alice', 'wrong'), pw), false);
    pw.hashes.set('alice', '$h-alice-2');
    assert.notEqual(guard.check(attempt('alice', 'right-alice'), pw), true, 'the stored hash changed: checked again');
    await tick();
    guard.forget(['alice']);
    assert.equal(guard.cache.size, 0);
  });

  it('an address banned for spraying user names still lets a recently proven login in, and its guesses against the cache ban the pair', async () => {
    const clock = new FakeClock();
    const pw = fakePasswords();
    const guard = new LoginGuard({ maxAddressFailures: 5, maxFailures: 3, failureDelay: 0 }, silent, clock.now);
    assert.equal(await guard.check(attempt('alice', 'right-alice'), pw), true);
    for (let i = 0; i < 5; i++) await guard.check(attempt(`user${i}`, 'x'), pw);
    assert.equal(await guard.check(attempt('carol', 'x'), pw), 0x8a);
    assert.equal(guard.check(attempt('alice', 'right-alice'), pw), true);
    for (let i = 0; i < 3; i++) assert.equal(guard.check(attempt('alice', `guess${i}`), pw), 0x8a);
    assert.equal(guard.check(attempt('alice', 'right-alice'), pw), 0x8a, 'the pair is banned now');
  });

  it('answers 0x89 Server busy when the queue is full', async () => {
    const pw = fakePasswords();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: PasswordSource = { hashOf: pw.hashOf, verify: async (u, p) => (await gate, pw.verify(u, p)) };
    const guard = new LoginGuard({ maxConcurrentChecks: 1, maxPendingPerUsername: 2, failureDelay: 0 }, silent, new FakeClock().now);
    const answers = [0, 1, 2, 3].map(() => guard.check(attempt('bob', 'wrong'), slow));
    assert.equal(await answers[3], 0x89);
    release();
    assert.deepEqual(await Promise.all(answers.slice(0, 3)), [false, false, false]);
  });

  it('answers a refusal after failureDelay (a flooding connection retries at most once per delay), a success at once', async () => {
    const pw = fakePasswords();
    const guard = new LoginGuard({ maxFailures: 1, failureDelay: 20 }, silent, new FakeClock().now);
    assert.equal(await guard.check(attempt('alice', 'right-alice'), pw), true);
    assert.equal(guard.check(attempt('alice', 'right-alice'), pw), true, 'a cached success: at once');
    assert.equal(await guard.check(attempt('bob', 'wrong'), pw), false);
    const banned = guard.check(attempt('bob', 'wrong'), pw);
    assert.ok(banned instanceof Promise, 'the ban refusal waits too');
    assert.equal(await banned, 0x8a);
  });
});

describe('loginProtection option', () => {
  it('is checked like every option: a wrong value or an unknown key is refused in one line naming it', async () => {
    const { createBroker } = await import('../../src/server/broker.js');
    const { validateConfig } = await import('../../src/config/config.js');
    assert.throws(() => createBroker({ loginProtection: { maxFailures: 0 } }), /createBroker: loginProtection\.maxFailures: must be an integer from 1 to 1000000/);
    assert.throws(() => validateConfig({ loginProtection: { maxFailure: 3 } }), /loginProtection\.maxFailure: unknown key/);
    assert.deepEqual(validateConfig({ loginProtection: { banTime: 60, cacheTime: 0 } }), { loginProtection: { banTime: 60, cacheTime: 0 } });
  });
});
