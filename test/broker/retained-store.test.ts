// The retained store's tree of topic levels against a flat list of topics filtered one by one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Message } from '../../src/broker/message.js';
import { MemoryRetainedStore as RetainedStore } from '../../src/broker/retained.js';
import { topicMatches } from '../../src/protocol/topic.js';

const message = (topic: string, payload: string, expiresAt?: number): Message => ({
  topic,
  payload: Buffer.from(payload),
  qos: 0,
  retain: true,
  expiresAt,
});

const topicsOf = (messages: Message[]): string[] => messages.map((m) => m.topic).sort();

describe('retained store', () => {
  it('matches exact topics, + and # (with its parent level), and empty levels', () => {
    const s = new RetainedStore();
    for (const t of ['a', 'a/b', 'a/c', 'a/b/c', 'a//c', '/a', 'b']) s.set(message(t, t));
    assert.deepEqual(topicsOf(s.match('a/b', 0)), ['a/b']);
    assert.deepEqual(topicsOf(s.match('a/+', 0)), ['a/b', 'a/c']);
    assert.deepEqual(topicsOf(s.match('a/+/c', 0)), ['a//c', 'a/b/c']);
    assert.deepEqual(topicsOf(s.match('a/#', 0)), ['a', 'a//c', 'a/b', 'a/b/c', 'a/c'], "[MQTT-4.7.1-2] 'a/#' matches 'a' too");
    assert.deepEqual(topicsOf(s.match('+/a', 0)), ['/a']);
    assert.deepEqual(topicsOf(s.match('#', 0)).length, 7);
    assert.deepEqual(s.match('c/#', 0), []);
  });

  it("[MQTT-4.7.2-1] a filter starting with a wildcard matches no topic starting with '$'", () => {
    const s = new RetainedStore();
    for (const t of ['$SYS/uptime', '$share', 'x/$y', 'x']) s.set(message(t, t));
    assert.deepEqual(topicsOf(s.match('#', 0)), ['x', 'x/$y']);
    assert.deepEqual(topicsOf(s.match('+/uptime', 0)), []);
    assert.deepEqual(topicsOf(s.match('+', 0)), ['x']);
    assert.deepEqual(topicsOf(s.match('$SYS/#', 0)), ['$SYS/uptime']);
    assert.deepEqual(topicsOf(s.match('x/+', 0)), ['x/$y'], "'$' only counts at the first level");
  });

  it('a parent comes before its children, siblings in the order first retained', () => {
    const s = new RetainedStore();
    for (const t of ['a/z', 'a/b/c', 'a', 'a/b']) s.set(message(t, t));
    assert.deepEqual(
      s.match('a/#', 0).map((m) => m.topic),
      ['a', 'a/z', 'a/b', 'a/b/c'],
    );
  });

  it('an empty payload deletes, and the levels it leaves empty go', () => {
    const s = new RetainedStore();
    const topics = Array.from({ length: 2000 }, (_, i) => `site/${i % 7}/device/${i}/temp`);
    for (const t of topics) s.set(message(t, '21.5'));
    s.set(message('site/0/device/0', 'parent'));
    assert.equal(s.size, 2001);
    for (const t of topics) s.set(message(t, ''));
    assert.equal(s.size, 1);
    assert.deepEqual(topicsOf(s.match('#', 0)), ['site/0/device/0'], 'a level with a message of its own stays');
    s.set(message('site/0/device/0', ''));
    assert.equal(s.size, 0);
    assert.equal(s.holdsLevels, false, 'no empty level is left behind');
  });

  it('an expired message is neither returned nor kept', () => {
    const s = new RetainedStore();
    s.set(message('a/old', 'x', 1_000));
    s.set(message('a/new', 'y', 5_000));
    s.set(message('a/forever', 'z'));
    assert.deepEqual(topicsOf(s.match('a/+', 2_000)), ['a/forever', 'a/new']);
    assert.equal(s.size, 2);
    assert.equal(s.get('a/old'), undefined);
    assert.deepEqual(topicsOf(s.match('a/new', 6_000)), []);
    assert.equal(s.size, 1);
  });

  it('a topic of 30,000 levels is stored and matched by # without running out of stack', () => {
    const s = new RetainedStore();
    const deep = Array(30_000).fill('a').join('/');
    s.set(message(deep, 'deep'));
    assert.deepEqual(topicsOf(s.match('#', 0)), [deep]);
    assert.deepEqual(topicsOf(s.match(Array(30_000).fill('+').join('/'), 0)), [deep]);
    s.set(message(deep, ''));
    assert.equal(s.holdsLevels, false);
  });

  it('sweep() deletes expired messages nobody subscribes to, earliest first; replaced and deleted ones are left alone', () => {
    const store = new RetainedStore();
    for (let i = 0; i < 1000; i++) store.set(message(`s/${i}`, 'x', 1000 + ((i * 7919) % 1000)));
    for (let i = 0; i < 100; i++) store.set(message(`s/${i}`, 'no expiry')); // replaced: never expire now
    for (let i = 100; i < 200; i++) store.set(message(`s/${i}`, '')); // deleted
    store.set(message('keep', 'k'));
    for (let now = 1000; now <= 2000; now += 50) {
      store.sweep(now);
      for (let i = 200; i < 1000; i++) {
        const expiresAt = 1000 + ((i * 7919) % 1000);
        assert.equal(store.get(`s/${i}`) !== undefined, expiresAt >= now, `s/${i} at ${now}`);
      }
    }
    assert.equal(store.size, 101, 'the 100 replaced ones and "keep"');
    assert.equal(store.get('s/5')?.payload.toString(), 'no expiry');
  });

  it('random sets, deletes and expiries match a flat list filtered with topicMatches', () => {
    const level = fc.constantFrom('a', 'b', '', '$s', 'c');
    const topic = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join('/'));
    const filter = fc
      .array(fc.constantFrom('a', 'b', '', '$s', '+', '#'), { minLength: 1, maxLength: 4 })
      .filter((l) => !l.slice(0, -1).includes('#'))
      .map((l) => l.join('/'));
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), topic, empty: fc.boolean(), ttl: fc.option(fc.integer({ min: 1, max: 50 })) }),
      fc.record({ kind: fc.constant('match' as const), filter, advance: fc.integer({ min: 0, max: 20 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const s = new RetainedStore();
        const model = new Map<string, Message>();
        let now = 0;
        for (const o of ops) {
          if (o.kind === 'set') {
            if (o.topic === '') continue; // not a valid topic name
            const m = message(o.topic, o.empty ? '' : 'p', o.ttl === null ? undefined : now + o.ttl);
            s.set(m);
            if (o.empty) model.delete(o.topic);
            else model.set(o.topic, m);
          } else {
            now += o.advance;
            for (const [t, m] of model) if (m.expiresAt !== undefined && m.expiresAt < now && topicMatches(o.filter, t)) model.delete(t);
            const want = [...model.values()].filter((m) => topicMatches(o.filter, m.topic));
            assert.deepEqual(topicsOf(s.match(o.filter, now)), topicsOf(want), `match ${JSON.stringify(o.filter)}`);
            assert.equal(s.size, model.size);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});
