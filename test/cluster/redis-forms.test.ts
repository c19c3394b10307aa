// The catch-up after a Redis outage (whenRedisBack): on a Redis Cluster the events that say a node is back
// come before the cluster serves (CLUSTERDOWN until every master is back), so a catch-up that fails is tried
// again until it works, one at a time, and reported once. Fake clock, fake connections.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it, mock } from 'node:test';
import type { Cluster, Redis } from 'ioredis';
import { CATCH_UP_RETRY_MS, whenRedisBack } from '../../src/cluster/redis-forms.js';

function fakeCluster(): Cluster & EventEmitter {
  return Object.assign(new EventEmitter(), { isCluster: true, status: 'ready' }) as unknown as Cluster & EventEmitter;
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('whenRedisBack', () => {
  it('a Redis Cluster: a catch-up that fails (CLUSTERDOWN) is tried again every CATCH_UP_RETRY_MS until it works, reported once', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const redis = fakeCluster();
      let calls = 0;
      const failures: unknown[] = [];
      whenRedisBack(
        redis,
        redis,
        async () => {
          calls++;
          if (calls < 3) throw new Error('CLUSTERDOWN The cluster is down');
        },
        () => false,
        (err) => failures.push(err),
      );
      redis.emit('+node');
      redis.emit('+node'); // close together: one call
      mock.timers.tick(200);
      await settle();
      assert.equal(calls, 1);
      mock.timers.tick(CATCH_UP_RETRY_MS);
      await settle();
      assert.equal(calls, 2);
      mock.timers.tick(CATCH_UP_RETRY_MS);
      await settle();
      assert.equal(calls, 3, 'tried until it worked');
      mock.timers.tick(10 * CATCH_UP_RETRY_MS);
      await settle();
      assert.equal(calls, 3, 'not again once it worked');
      assert.equal(failures.length, 1, 'reported once, not per retry');
    } finally {
      mock.timers.reset();
    }
  });

  it('an event during a catch-up runs one more after it; a stopped node tries no more', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const redis = fakeCluster();
      let calls = 0;
      let running = 0;
      let most = 0;
      let release!: () => void;
      let stopped = false;
      whenRedisBack(
        redis,
        redis,
        async () => {
          calls++;
          most = Math.max(most, ++running);
          await new Promise<void>((resolve) => (release = resolve));
          running--;
        },
        () => stopped,
        () => {},
      );
      redis.emit('ready');
      mock.timers.tick(200);
      await settle();
      assert.equal(calls, 1);
      redis.emit('+node');
      mock.timers.tick(200);
      await settle();
      assert.equal(calls, 1, 'one at a time');
      release();
      await settle();
      mock.timers.tick(0);
      await settle();
      assert.equal(calls, 2, 'what changed meanwhile is caught up too');
      assert.equal(most, 1);
      stopped = true;
      release();
      redis.emit('+node');
      mock.timers.tick(1000);
      await settle();
      assert.equal(calls, 2);
    } finally {
      mock.timers.reset();
    }
  });

  it('one server: each time the pub/sub connection is ready again, retried while it fails', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const redis = Object.assign(new EventEmitter(), { status: 'ready' }) as unknown as Redis & EventEmitter;
      const sub = new EventEmitter() as unknown as Redis & EventEmitter;
      let calls = 0;
      whenRedisBack(
        redis,
        sub,
        async () => {
          calls++;
          if (calls === 1) throw new Error('LOADING Redis is loading the dataset in memory');
        },
        () => false,
        () => {},
      );
      redis.emit('+node'); // not listened to on one server
      mock.timers.tick(1000);
      assert.equal(calls, 0);
      sub.emit('ready');
      await settle();
      assert.equal(calls, 1);
      mock.timers.tick(CATCH_UP_RETRY_MS);
      await settle();
      assert.equal(calls, 2);
    } finally {
      mock.timers.reset();
    }
  });
});
