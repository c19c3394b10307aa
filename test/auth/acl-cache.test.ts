// The per-(client, topic) cache of the ACL's read answer (src/auth/acl-cache.ts): it answers as the ACL does
// (a property test against an uncached Acl over random rules, clients, topics, reloads and identity changes),
// a reload of the ACL file forgets every answer (also end to end, over sockets), and a client's answers stay
// bounded however many topics it receives.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { Acl, type AclRule } from '../../src/auth/acl.js';
import { AclReceiveCache } from '../../src/auth/acl-cache.js';
import type { PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { pub } from '../helpers/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { startLogged } from '../transport/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-acl-cache-'));
after(() => rmSync(dir, { recursive: true, force: true }));

type Who = { clientId: string; username: string | undefined; remoteAddress: string; certificateCN: string | undefined };
const who = (username: string | undefined, clientId = 'c1', remoteAddress = '127.0.0.1:1'): Who => ({ clientId, username, remoteAddress, certificateCN: undefined });

/** A Petrel ACL file line for a rule (the file is what reload() re-reads). */
function line(r: AclRule): string {
  const cond = [r.username !== undefined ? `user:${r.username}` : '', r.clientId !== undefined ? `client:${r.clientId}` : '', r.address !== undefined ? `ip:${String(r.address)}` : ''].filter(Boolean).join(',');
  return `${r.permission} ${r.action} ${cond || 'all'} ${r.topic!}`;
}

const level = fc.constantFrom('a', 'b', 'c', '$sys');
const patternLevel = fc.oneof(level, fc.constantFrom('+', '%u', '%c', 'p%u'));
const pattern = fc
  .tuple(fc.array(patternLevel, { minLength: 1, maxLength: 3 }), fc.boolean())
  .map(([levels, hash]) => [...levels, ...(hash ? ['#'] : [])].join('/'));
const rule: fc.Arbitrary<AclRule> = fc.record(
  {
    permission: fc.constantFrom('allow' as const, 'deny' as const),
    action: fc.constantFrom('publish' as const, 'subscribe' as const, 'all' as const),
    username: fc.constantFrom('alice', 'bob'),
    clientId: fc.constantFrom('c1', 'c2'),
    address: fc.constantFrom('127.0.0.1', '10.0.0.0/8'),
    topic: pattern,
  },
  { requiredKeys: ['permission', 'action', 'topic'] },
);
const ruleSet = fc.array(rule, { maxLength: 8 });
const topic = fc.array(fc.oneof(level, fc.constantFrom('alice', 'c1', 'palice', 'x y', '')), { minLength: 1, maxLength: 4 }).map((l) => l.join('/'));
const identity = fc.record({
  clientId: fc.constantFrom('c1', 'c2', 'a+b'),
  username: fc.constantFrom(undefined, 'alice', 'bob', 'x#'),
  remoteAddress: fc.constantFrom('127.0.0.1:5', '10.1.2.3:5'),
});

/** What a test does next: ask a client about a topic, reload new rules, or change a client's identity in place. */
const step = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('ask' as const), client: fc.nat(3), topic: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reload' as const), rules: ruleSet, def: fc.constantFrom('allow' as const, 'deny' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('identity' as const), client: fc.nat(3), to: identity }) },
);

describe('ACL receive cache', () => {
  it('answers every question as the uncached ACL does, across reloads and identity changes (property)', () => {
    let run = 0;
    fc.assert(
      // Questions come from a few topics per run, so that answers are asked again after a reload or a change.
      fc.property(ruleSet, fc.array(identity, { minLength: 4, maxLength: 4 }), fc.array(topic, { minLength: 6, maxLength: 6 }), fc.array(step, { minLength: 1, maxLength: 60 }), fc.integer({ min: 2, max: 8 }), (rules, ids, topics, steps, size) => {
        const file = join(dir, `prop-${run++}.acl`);
        writeFileSync(file, rules.map(line).join('\n') + '\n');
        const acl = new Acl({ file, default: 'allow' });
        const cache = new AclReceiveCache(acl, size);
        const clients: Who[] = ids.map((i) => ({ ...i, certificateCN: undefined }));
        for (const s of steps) {
          if (s.kind === 'reload') {
            writeFileSync(file, s.rules.map(line).join('\n') + '\n');
            acl.reload();
          } else if (s.kind === 'identity') {
            Object.assign(clients[s.client]!, s.to);
          } else {
            const c = clients[s.client]!;
            // The reference: the same rules, read into an Acl of its own, with no cache.
            const t = topics[s.topic]!;
            const fresh = new Acl({ file, default: 'allow' }).canReceive({ ...c }, t);
            assert.equal(cache.canReceive(c, t), fresh, `${JSON.stringify(c)} on ${t}`);
            assert.ok(cache.sizeOf(c) <= size, 'bounded per client');
          }
        }
      }),
      { seed: 24, numRuns: 300 },
    );
  });

  it('a repeated question is a hit; a reload of the file forgets every answer', () => {
    const file = join(dir, 'reload.acl');
    writeFileSync(file, 'allow subscribe all sensors/#\n');
    const acl = new Acl({ file, default: 'deny' });
    const cache = new AclReceiveCache(acl);
    const alice = who('alice');
    assert.equal(cache.canReceive(alice, 'sensors/1'), true);
    assert.equal(cache.canReceive(alice, 'sensors/1'), true);
    assert.deepEqual([cache.hits, cache.misses], [1, 1]);
    writeFileSync(file, 'deny subscribe all sensors/1\nallow subscribe all sensors/#\n');
    acl.reload();
    assert.equal(cache.canReceive(alice, 'sensors/1'), false, 'the reloaded rules answer');
    assert.equal(cache.canReceive(alice, 'sensors/2'), true);
    assert.equal(cache.misses, 3);
  });

  it('a client whose identity changed is answered for its new identity', () => {
    const acl = new Acl({ rules: [{ permission: 'allow', action: 'subscribe', topic: 'users/%u/#' }], default: 'deny' });
    const cache = new AclReceiveCache(acl);
    const client = who('alice');
    assert.equal(cache.canReceive(client, 'users/alice/x'), true);
    client.username = 'bob';
    assert.equal(cache.canReceive(client, 'users/alice/x'), false);
    assert.equal(cache.canReceive(client, 'users/bob/x'), true);
  });

  it('holds at most its size per client, however many topics; recently used topics stay', () => {
    const acl = new Acl({ rules: [{ permission: 'deny', action: 'subscribe', topic: 'secret/#' }] });
    const cache = new AclReceiveCache(acl, 100);
    const client = who('alice');
    for (let i = 0; i < 10_000; i++) {
      assert.equal(cache.canReceive(client, `t/${i}`), true);
      assert.equal(cache.canReceive(client, 'secret/hot'), false, 'a topic asked about all along');
      assert.ok(cache.sizeOf(client) <= 100);
    }
    assert.equal(cache.misses, 10_001, 'the hot topic was computed once');
    assert.equal(cache.sizeOf(who('alice')), 0, 'another connection (another ClientInfo) has its own answers');
  });
});

describe('ACL receive cache in the broker', () => {
  it('a reload of the ACL file applies to the next message on a topic already answered (Mosquitto semantics, # subscription)', async (t) => {
    const file = join(dir, 'broker.acl');
    writeFileSync(file, 'allow all all #\n');
    const b = await startLogged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], watchFiles: false, acl: { file } });
    const port = b.broker.address().port;
    const { client: sub } = await RawClient.connect(port, { clientId: 'sub' });
    const { client: pubber } = await RawClient.connect(port, { clientId: 'pub' });
    t.after(async () => {
      sub.destroy();
      pubber.destroy();
      await b.broker.close();
    });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '#', qos: 0 }] });
    assert.deepEqual(((await sub.next(9)) as SubackPacket).reasonCodes, [0]);
    pubber.send(pub('plant/secret', 'one'));
    assert.equal(((await sub.next(3)) as PublishPacket).topic, 'plant/secret', 'allowed and now remembered');

    writeFileSync(file, 'deny subscribe all plant/secret\nallow all all #\n');
    b.broker.reload();
    pubber.send(pub('plant/secret', 'two'));
    pubber.send(pub('plant/open', 'three'));
    assert.equal(((await sub.next(3)) as PublishPacket).topic, 'plant/open');
    await pubber.sync();
    await sub.sync();
    assert.deepEqual(
      sub.packets.filter((p) => p.type === 3),
      [],
      'the denied topic is not delivered after the reload',
    );
  });
});
