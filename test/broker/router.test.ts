// The subscription trie against topicMatches over every subscription, for ordinary topics and for topics
// deeper than the recursive walk follows (they are matched with a stack of their own).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { newRouteMemo, TopicRouter, type SubscriptionEntry } from '../../src/broker/router.js';
import { topicMatches } from '../../src/protocol/topic.js';

const entry = (clientId: string, filter: string): SubscriptionEntry => ({
  clientId,
  filter,
  qos: 0,
  noLocal: false,
  retainAsPublished: false,
  retainHandling: 0,
});

const level = fc.constantFrom('a', 'b', '', '$s');
const tail = fc.array(level, { minLength: 1, maxLength: 4 });
const filterTail = fc
  .array(fc.constantFrom('a', 'b', '', '$s', '+', '#'), { minLength: 1, maxLength: 4 })
  .filter((l) => !l.slice(0, -1).includes('#'));

/** `prefix` levels (the first one `first`, then 'x') before the tail: 0, or more than the recursive walk takes. */
function check(prefixLevels: number, first = 'x'): void {
  const prefix = prefixLevels === 0 ? [] : [first, ...Array<string>(prefixLevels - 1).fill('x')];
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), filterTail, fc.boolean()), { minLength: 1, maxLength: 12 }),
      fc.array(tail, { minLength: 1, maxLength: 8 }),
      (subs, topics) => {
        const router = new TopicRouter<string>();
        const all: SubscriptionEntry[] = [];
        for (const [client, f, underPrefix] of subs) {
          // Some filters start at the top ('#', '+/...'), some below the deep prefix.
          const e = entry(`c${client}`, [...(underPrefix ? prefix : []), ...f].join('/'));
          router.add(e, 'subscriber');
          const i = all.findIndex((x) => x.clientId === e.clientId && x.filter === e.filter);
          if (i >= 0) all[i] = e;
          else all.push(e);
        }
        for (const t of topics) {
          const topic = [...prefix, ...t].join('/');
          if (topic === '') continue; // not a topic name
          const got = router.match(topic).entries.map((e) => `${e.clientId} ${e.filter}`);
          const want = all.filter((e) => topicMatches(e.filter, topic)).map((e) => `${e.clientId} ${e.filter}`);
          assert.deepEqual([...got].sort(), want.sort(), `topic of ${prefixLevels} + ${t.length} levels`);
          assert.equal(new Set(got).size, got.length, 'each subscription once');
        }
      },
    ),
    { numRuns: prefixLevels === 0 ? 1000 : 150 },
  );
}

describe('topic router', () => {
  it('matches what topicMatches says, over random subscriptions and topics', () => check(0));
  it('matches the same for topics of more than 1000 levels (no recursion there)', () => check(1500));
  it("[MQTT-4.7.2-1] topics of more than 1000 levels starting with '$': no filter starting with a wildcard matches", () => check(1500, '$s'));
  it('a remembered route follows every change that concerns its topic, and only those empty the cache', () => {
    const router = new TopicRouter<string>();
    const memo = newRouteMemo<string>();
    const ids = () => router.matchRemembered('dev/1/cmd', memo).entries.map((e) => e.clientId);
    assert.deepEqual(ids(), [], 'no subscription at all');
    router.add(entry('a', 'dev/1/cmd'), 'subscriber'); // the first subscription
    assert.deepEqual(ids(), ['a']);
    const other = router.match('dev/2/cmd');
    router.add(entry('b', 'dev/1/cmd'), 'subscriber'); // exact, this topic
    assert.deepEqual(ids(), ['a', 'b']);
    router.add(entry('c', 'dev/3/cmd'), 'subscriber'); // exact, another topic
    assert.equal(router.match('dev/2/cmd'), other, "another topic's exact filter leaves this cached match alone");
    router.add(entry('w', 'dev/+/cmd'), 'subscriber'); // wildcard
    assert.deepEqual(ids(), ['a', 'b', 'w']);
    assert.notEqual(router.match('dev/2/cmd'), other, 'a wildcard empties the cache');
    router.add({ ...entry('a', 'dev/1/cmd'), qos: 1 }, 'subscriber'); // replaced
    assert.equal(router.matchRemembered('dev/1/cmd', memo).entries.find((e) => e.clientId === 'a')?.qos, 1);
    router.remove('b', 'dev/1/cmd');
    assert.deepEqual(ids(), ['a', 'w']);
    // The cache is emptied when full: a route remembered before must not outlive it unseen.
    for (let i = 0; i < 10_001; i++) router.match(`fill/${i}`);
    router.remove('a', 'dev/1/cmd');
    assert.deepEqual(ids(), ['w']);
    router.remove('w', 'dev/+/cmd');
    router.remove('c', 'dev/3/cmd');
    assert.deepEqual(ids(), []);
  });

  it('filters added and removed (exact, wildcard, shared, 10,000 of them) leave no level behind', () => {
    const router = new TopicRouter<string>();
    for (let i = 0; i < 10_000; i++) {
      router.add(entry(`c${i}`, `dev/c${i}/cmd`), 'subscriber');
      if (i % 500 === 0) router.add(entry(`c${i}`, 'dev/+/cmd'), 'subscriber');
      if (i % 10 === 0) router.add({ ...entry(`c${i}`, `jobs/${i}/+`), shareGroup: `g${i}` }, 'subscriber');
    }
    assert.equal(router.holdsLevels, true);
    for (let i = 0; i < 10_000; i++) {
      router.remove(`c${i}`, `dev/c${i}/cmd`);
      if (i % 500 === 0) router.remove(`c${i}`, 'dev/+/cmd');
      if (i % 10 === 0) router.remove(`c${i}`, `jobs/${i}/+`, `g${i}`);
    }
    assert.equal(router.size, 0);
    assert.equal(router.holdsLevels, false, 'every level went with the last filter under it');
  });

  it('an exact filter removed takes its cached match with it', () => {
    const router = new TopicRouter<string>();
    for (let i = 0; i < 1_000; i++) router.add(entry(`c${i}`, `dev/c${i}/cmd`), 'subscriber');
    for (let i = 0; i < 1_000; i++) assert.equal(router.match(`dev/c${i}/cmd`).entries.length, 1);
    assert.equal(router.cacheSize, 1_000);
    for (let i = 0; i < 1_000; i++) router.remove(`c${i}`, `dev/c${i}/cmd`);
    assert.equal(router.cacheSize, 0, 'each exact-topic cache entry went with its subscription');
  });

  it('the exact-topic route cache stays bounded with many distinct topics matched by nobody, and is not filled while nothing is subscribed', () => {
    const router = new TopicRouter<string>();
    const memo = newRouteMemo<string>();
    for (let i = 0; i < 20_000; i++) router.matchRemembered(`nobody/${i}`, memo);
    assert.equal(router.cacheSize, 0, 'with no subscription at all no match is cached');
    router.add(entry('watcher', 'elsewhere/+'), 'subscriber');
    for (let i = 0; i < 30_000; i++) router.matchRemembered(`nobody/${i}`, memo);
    assert.ok(router.cacheSize <= 10_000, `route cache: ${router.cacheSize}`);
    router.remove('watcher', 'elsewhere/+');
    assert.equal(router.cacheSize, 0, 'removing the wildcard emptied it');
  });

  it('matches a topic of 60,000 levels against filters as deep', () => {
    const router = new TopicRouter<string>();
    const topic = Array(60_000).fill('a').join('/');
    router.add(entry('plus', Array(60_000).fill('+').join('/')), 'subscriber');
    router.add(entry('hash', `${Array(59_999).fill('a').join('/')}/#`), 'subscriber');
    router.add(entry('all', '#'), 'subscriber');
    router.add(entry('shorter', Array(59_999).fill('+').join('/')), 'subscriber');
    assert.deepEqual(router.match(topic).entries.map((e) => e.clientId).sort(), ['all', 'hash', 'plus']);
  });
});
