// The order rules of Client ID claims, without Redis: a claim's answer and the kick of a newer claim come over
// different connections, so either may arrive first; the newest claim must win either way.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { ClientOwnership, HANDOVER_TIMEOUT_MS } from '../../../src/cluster/ownership.js';

const client = (clientId: string) => ({ clientId, protocolVersion: 5 as const, remoteAddress: '127.0.0.1:1', listener: 'tcp' });

/** A Redis whose EVAL answers when the test says (the claim's epoch and the node that held the Client ID). */
function fakeRedis(): { redis: Redis; answer(epoch: number, previous?: string): void; status: string; published: [string, string][] } {
  const waiting: ((reply: [number, string]) => void)[] = [];
  const published: [string, string][] = [];
  const fake: Record<string, unknown> & { status: string; answer(epoch: number, previous?: string): void } = {
    status: 'ready',
    // Every script answers when the test says (EVALSHA through ioredis' defineCommand).
    defineCommand: (name: string) => {
      fake[name] = () => new Promise<[number, string]>((resolve) => waiting.push(resolve));
    },
    publish: (channel: string, text: string) => {
      published.push([channel, text]);
      return Promise.resolve(1);
    },
    answer: (epoch: number, previous = '') => waiting.shift()!([epoch, previous]),
  };
  return { redis: fake as unknown as Redis, answer: fake.answer, published, get status() { return fake.status; }, set status(s: string) { fake.status = s; } };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('cluster: the order of Client ID claims', () => {
  const request = { clean: true, sessionExpiry: 0 };

  it('a claim whose answer comes after the kick of a newer claim is refused with 0x89 (the newer one won)', async () => {
    const r = fakeRedis();
    const warnings: string[] = [];
    const own = new ClientOwnership({ redis: r.redis, prefix: 'p', node: 'a', warn: (m) => warnings.push(m), now: Date.now });
    const answer = own.claim(client('x'), request) as Promise<boolean | number>;
    own.onKick('8 1 b x'); // claim 8 on node b, heard before our claim's answer
    r.answer(7);
    assert.equal(await answer, 0x89);
    assert.equal(own.size, 0);
  });

  it('a claim answered before an older kick keeps its connection; a newer kick takes it away', async () => {
    const r = fakeRedis();
    const own = new ClientOwnership({ redis: r.redis, prefix: 'p', node: 'a', warn: () => {}, now: Date.now });
    const answer = own.claim(client('y'), request) as Promise<boolean | number>;
    r.answer(5);
    assert.equal(await answer, true);
    own.onKick('4 1 b y'); // an older claim's kick that came late
    assert.equal(own.size, 1);
    own.onKick('6 0 c y');
    assert.equal(own.size, 0);
    // Each kick is answered (the claimant waits for it before it reads the session), even the late one.
    assert.deepEqual(r.published, [
      ['p:released:b', '4 y'],
      ['p:released:c', '6 y'],
    ]);
  });

  it('a claim of a Client ID another node held waits until that node let the session go, then reads it', async () => {
    const r = fakeRedis();
    const own = new ClientOwnership({ redis: r.redis, prefix: 'p', node: 'a', warn: () => {}, now: Date.now });
    const resumed: string[] = [];
    own.onClaimed = (clientId, clean, previous, epoch) => void resumed.push(`${clientId} ${clean} ${previous} ${epoch}`);
    let settled = false;
    const answer = (own.claim(client('w'), { clean: false, sessionExpiry: 60 }) as Promise<boolean | number>).then((v) => ((settled = true), v));
    r.answer(3, 'b');
    await tick();
    assert.equal(settled, false, 'waits for node b');
    own.onReleased('2 w'); // an older claim's answer: not this one
    await tick();
    assert.equal(settled, false);
    own.onReleased('3 w');
    assert.equal(await answer, true);
    assert.deepEqual(resumed, ['w false b 3'], 'the session is read after node b let it go, and b is told when it is served here');
  });

  it('a node that does not answer is waited for at most HANDOVER_TIMEOUT_MS, with a warning', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const r = fakeRedis();
    const warnings: string[] = [];
    const own = new ClientOwnership({ redis: r.redis, prefix: 'p', node: 'a', warn: (m) => warnings.push(m), now: Date.now });
    let settled = false;
    const answer = (own.claim(client('v'), { clean: false, sessionExpiry: 60 }) as Promise<boolean | number>).then((v) => ((settled = true), v));
    r.answer(9, 'b');
    await tick();
    t.mock.timers.tick(HANDOVER_TIMEOUT_MS - 1);
    await tick();
    assert.equal(settled, false);
    t.mock.timers.tick(1);
    assert.equal(await answer, true);
    assert.match(warnings.join('\n'), /did not let its session go in time/);
  });

  it('a claim of a Client ID this node held itself does not wait', async () => {
    const r = fakeRedis();
    const own = new ClientOwnership({ redis: r.redis, prefix: 'p', node: 'a', warn: () => {}, now: Date.now });
    const answer = own.claim(client('u'), { clean: false, sessionExpiry: 60 }) as Promise<boolean | number>;
    r.answer(2, 'a');
    assert.equal(await answer, true);
  });

  it('Redis unreachable: the claim is decided on this node, with one warning for the whole outage', () => {
    const r = fakeRedis();
    r.status = 'reconnecting';
    const warnings: string[] = [];
    const own = new ClientOwnership({ redis: r.redis, prefix: 'p', node: 'a', warn: (m) => warnings.push(m), now: Date.now });
    assert.equal(own.claim(client('z1'), request), true);
    assert.equal(own.claim(client('z2'), request), true);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /only/);
  });
});
