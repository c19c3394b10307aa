// The order rules of Client ID claims, without Redis: a claim's answer and the kick of a newer claim come over
// different connections, so either may arrive first; the newest claim must win either way.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { ClientOwnership } from '../../../src/cluster/ownership.js';

const client = (clientId: string) => ({ clientId, protocolVersion: 5 as const, remoteAddress: '127.0.0.1:1', listener: 'tcp' });

/** A Redis whose EVAL answers when the test says. */
function fakeRedis(): { redis: Redis; answer(epoch: number): void; status: string } {
  const waiting: ((epoch: number) => void)[] = [];
  const fake: Record<string, unknown> & { status: string; answer(epoch: number): void } = {
    status: 'ready',
    // Every script answers when the test says (EVALSHA through ioredis' defineCommand).
    defineCommand: (name: string) => {
      fake[name] = () => new Promise<number>((resolve) => waiting.push(resolve));
    },
    answer: (epoch: number) => waiting.shift()!(epoch),
  };
  return { redis: fake as unknown as Redis, answer: fake.answer, get status() { return fake.status; }, set status(s: string) { fake.status = s; } };
}

describe('cluster: the order of Client ID claims', () => {
  const request = { clean: true, sessionExpiry: 0 };

  it('a claim whose answer comes after the kick of a newer claim is refused with 0x89 (the newer one won)', async () => {
    const r = fakeRedis();
    const warnings: string[] = [];
    const own = new ClientOwnership({ redis: r.redis, prefix: 'p', node: 'a', warn: (m) => warnings.push(m), now: Date.now });
    const answer = own.claim(client('x'), request) as Promise<boolean | number>;
    own.onKick('8 1 x'); // claim 8 on another node, heard before our claim's answer
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
    own.onKick('4 1 y'); // an older claim's kick that came late
    assert.equal(own.size, 1);
    own.onKick('6 0 y');
    assert.equal(own.size, 0);
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
