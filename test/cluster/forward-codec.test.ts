// The messages nodes hand each other (src/cluster/forward-codec.ts): any message, with its number, shared
// groups, and for a handed-on one its first node, epoch and the sessions it is for, decodes as it was sent,
// several to a batch. Property-based (fast-check).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Message } from '../../src/broker/message.js';
import { decodeBatch, encodeForward, type Relay } from '../../src/cluster/forward-codec.js';

const text = fc.string({ maxLength: 20 });
const message: fc.Arbitrary<Message> = fc.record({
  topic: fc.string({ minLength: 1, maxLength: 40 }),
  payload: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  qos: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
  retain: fc.boolean(),
  properties: fc.option(fc.record({ contentType: text, correlationData: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)) }), { nil: undefined }),
  expiresAt: fc.option(fc.integer({ min: 1000, max: 100_000 }), { nil: undefined }),
  from: fc.option(text, { nil: undefined }),
});
const entry = fc.record({
  message,
  no: fc.nat({ max: 0xffffffff }),
  plain: fc.boolean(),
  groups: fc.option(fc.array(text, { maxLength: 3 }), { nil: undefined }),
  relay: fc.option(fc.record({ id: fc.record({ origin: text, epoch: text, no: fc.nat({ max: 0xffffffff }) }), only: fc.array(text, { minLength: 1, maxLength: 3 }) }), { nil: undefined }) as fc.Arbitrary<Relay | undefined>,
});

describe('forward codec', () => {
  it('a batch of any messages decodes to the same messages, identities, groups and sessions', () => {
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 5 }), (entries) => {
        const now = 1000;
        const batch = Buffer.concat(entries.map((e) => encodeForward(e.message, e.no, e.plain, e.groups, now, e.relay)));
        const out: unknown[] = [];
        decodeBatch(batch, now, 'origin-node', 'its-epoch', (m, remote, id) => out.push({ m, remote, id: { ...id } }));
        assert.equal(out.length, entries.length);
        entries.forEach((e, i) => {
          const got = out[i] as { m: Message; remote: { plain: boolean; groups?: Set<string>; only?: Set<string> }; id: { origin: string; epoch: string; no: number } };
          const plain = (m: Message) => ({ ...m, payload: Buffer.from(m.payload), properties: m.properties === undefined ? undefined : { ...m.properties } });
          assert.deepEqual(plain(got.m), plain(e.message));
          if (e.relay === undefined) {
            assert.deepEqual(got.id, { origin: 'origin-node', epoch: 'its-epoch', no: e.no });
            assert.equal(got.remote.plain, e.plain);
            assert.deepEqual(got.remote.groups, e.groups === undefined || e.groups.length === 0 ? undefined : new Set(e.groups));
            assert.equal(got.remote.only, undefined);
          } else {
            assert.deepEqual(got.id, { ...e.relay.id }, 'a handed-on message keeps the identity it was published with');
            assert.deepEqual(got.remote.only, new Set(e.relay.only));
            assert.equal(got.remote.plain, true);
            assert.equal(got.remote.groups, undefined);
          }
        });
      }),
      { numRuns: 300 },
    );
  });
});
