// The overload guard's rules (src/broker/overload.ts) on fake samples and a fake clock, the defaults derived
// from the machine (src/server/machine-limits.ts), and what the core does in each state (FakeCore, in memory).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ResourceGuard, type ResourceSample } from '../../src/broker/overload.js';
import { machineLimits } from '../../src/server/machine-limits.js';
import { OVERLOAD_CHECK } from '../../src/config/checks.js';
import { validateConfig } from '../../src/config/config.js';
import type { ConnackPacket, PubAckLikePacket, PublishPacket } from '../../src/protocol/packets.js';
import { FakeCore } from '../helpers/fake-core.js';
import { pub } from '../helpers/packets.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A sample whose memory use is `use` (by RSS against a 1 GiB limit) and whose lag is `lag` ms. */
const sample = (use: number, lag = 0): ResourceSample => ({ heapUsed: 10 * MiB, heapLimit: 4 * GiB, rss: use * GiB, eventLoopLagMs: lag });

describe('ResourceGuard: states and hysteresis', () => {
  it('memory: high at the high-water mark, normal again only at the low-water mark; one change each way', () => {
    const g = new ResourceGuard({ memoryLimit: GiB, memoryHighWater: 0.8, memoryLowWater: 0.6 }, 0);
    assert.deepEqual(g.update(sample(0.5), 1000), []);
    assert.equal(g.refuseConnects || g.shedQos0 || g.refuseRetainedGrowth, false);
    const up = g.update(sample(0.81), 2000);
    assert.equal(up.length, 1);
    assert.deepEqual({ resource: up[0]!.resource, state: up[0]!.state, threshold: up[0]!.threshold, lasted: up[0]!.lasted }, { resource: 'memory', state: 'high', threshold: 0.8, lasted: 2000 });
    assert.equal(g.memory, 'high');
    assert.deepEqual([g.refuseConnects, g.shedQos0, g.refuseRetainedGrowth], [true, true, true]);
    // Between the marks nothing changes, either way: no flapping around one threshold.
    for (const use of [0.79, 0.7, 0.61, 0.85, 0.65]) assert.deepEqual(g.update(sample(use), 3000), [], `use ${use}`);
    assert.equal(g.memory, 'high');
    const down = g.update(sample(0.6), 5000);
    assert.deepEqual(down.map((c) => [c.resource, c.state, c.lasted]), [['memory', 'normal', 3000]]);
    assert.deepEqual([g.refuseConnects, g.shedQos0, g.refuseRetainedGrowth], [false, false, false]);
    assert.deepEqual(g.update(sample(0.75), 6000), [], 'below the high mark after leaving: still normal');
  });

  it('memory use is the larger of RSS against memoryLimit and the V8 heap against its limit', () => {
    const g = new ResourceGuard({ memoryLimit: GiB }, 0);
    assert.equal(g.memoryUseOf({ heapUsed: 900 * MiB, heapLimit: GiB, rss: 100 * MiB, eventLoopLagMs: 0 }).toFixed(3), (900 / 1024).toFixed(3));
    assert.equal(g.memoryUseOf({ heapUsed: 10 * MiB, heapLimit: GiB, rss: 512 * MiB, eventLoopLagMs: 0 }), 0.5);
    g.update({ heapUsed: 0.9 * GiB, heapLimit: GiB, rss: 0.1 * GiB, eventLoopLagMs: 0 }, 1);
    assert.equal(g.memory, 'high', 'a heap near its limit is high however small the RSS');
  });

  it('event loop: lagging at eventLoopLagMs refuses connections only; normal again below half of it', () => {
    const g = new ResourceGuard({ memoryLimit: GiB, eventLoopLagMs: 200 }, 0);
    assert.deepEqual(g.update(sample(0.1, 199), 1), []);
    assert.deepEqual(g.update(sample(0.1, 200), 2).map((c) => [c.resource, c.state]), [['eventLoop', 'high']]);
    assert.deepEqual([g.refuseConnects, g.shedQos0, g.refuseRetainedGrowth], [true, false, false]);
    assert.match(g.refusalReason, /event loop/);
    assert.deepEqual(g.update(sample(0.1, 150), 3), [], 'between half and the threshold: still lagging');
    assert.deepEqual(g.update(sample(0.1, 99), 4).map((c) => [c.resource, c.state]), [['eventLoop', 'normal']]);
    assert.equal(g.refuseConnects, false);
  });

  it('both at once: each reported on its own; connections refused until both are normal', () => {
    const g = new ResourceGuard({ memoryLimit: GiB, eventLoopLagMs: 100 }, 0);
    assert.deepEqual(g.update(sample(0.9, 500), 1).map((c) => c.resource), ['memory', 'eventLoop']);
    assert.deepEqual(g.update(sample(0.5, 500), 2).map((c) => [c.resource, c.state]), [['memory', 'normal']]);
    assert.deepEqual([g.refuseConnects, g.shedQos0], [true, false]);
    assert.deepEqual(g.update(sample(0.5, 0), 3).map((c) => [c.resource, c.state]), [['eventLoop', 'normal']]);
    assert.equal(g.refuseConnects, false);
  });

  it('disabled: never leaves normal; eventLoopLagMs 0: lag is ignored', () => {
    const off = new ResourceGuard({ enabled: false, memoryLimit: GiB }, 0);
    assert.deepEqual(off.update(sample(2, 10_000), 1), []);
    assert.equal(off.refuseConnects, false);
    const noLag = new ResourceGuard({ memoryLimit: GiB, eventLoopLagMs: 0 }, 0);
    assert.deepEqual(noLag.update(sample(0.1, 10_000), 1), []);
  });
});

describe('machineLimits(): defaults derived from the machine', () => {
  it('a sixteenth of memory for retained payloads (16 MiB..512 MiB), memory/256 per queue (16..64 MiB), heap/64 KiB subscriptions (10k..100k)', () => {
    const small = machineLimits({ totalMemory: 512 * MiB, constrainedMemory: undefined, heapLimit: 256 * MiB });
    assert.deepEqual(
      { r: small.maxRetainedBytes, q: small.maxQueuedBytes, s: small.maxSubscriptionsPerClient, m: small.memoryLimit },
      { r: 32 * MiB, q: 16 * MiB, s: 10_000, m: 512 * MiB },
    );
    const big = machineLimits({ totalMemory: 64 * GiB, constrainedMemory: undefined, heapLimit: 8 * GiB });
    assert.deepEqual({ r: big.maxRetainedBytes, q: big.maxQueuedBytes, s: big.maxSubscriptionsPerClient }, { r: 512 * MiB, q: 64 * MiB, s: 100_000 });
    const tiny = machineLimits({ totalMemory: 64 * MiB, constrainedMemory: undefined, heapLimit: 64 * MiB });
    assert.equal(tiny.maxRetainedBytes, 16 * MiB);
  });

  it('a container limit below the machine\'s memory is what counts; "no limit" answers (0, 2^64-1) are not', () => {
    assert.equal(machineLimits({ totalMemory: 16 * GiB, constrainedMemory: 2 * GiB, heapLimit: 2 * GiB }).memoryLimit, 2 * GiB);
    assert.equal(machineLimits({ totalMemory: 16 * GiB, constrainedMemory: 2 ** 64 - 1, heapLimit: 2 * GiB }).memoryLimit, 16 * GiB);
    assert.equal(machineLimits({ totalMemory: 16 * GiB, constrainedMemory: 0, heapLimit: 2 * GiB }).memoryLimit, 16 * GiB);
  });

  it('this machine: every default a real limit, and big enough for what "unlimited" used to allow in tests', () => {
    const m = machineLimits();
    assert.ok(m.maxRetainedBytes >= 16 * MiB && m.maxQueuedBytes >= 16 * MiB && m.maxSubscriptionsPerClient >= 10_000);
  });
});

describe('overload config: one line naming the key', () => {
  it('accepts the keys, refuses a bad value or a low-water mark not below the high one', () => {
    assert.deepEqual(validateConfig({ overload: { memoryHighWater: 0.9, memoryLowWater: 0.8, eventLoopLagMs: 300, sampleIntervalMs: 500, memoryLimit: 0, enabled: true } }).overload, {
      memoryHighWater: 0.9,
      memoryLowWater: 0.8,
      eventLoopLagMs: 300,
      sampleIntervalMs: 500,
      memoryLimit: 0,
      enabled: true,
    });
    assert.throws(() => validateConfig({ overload: { memoryHighWater: 1.5 } }), /^ConfigError: overload\.memoryHighWater: must be a number above 0 and at most 1$/);
    assert.throws(() => OVERLOAD_CHECK({ memoryHighWater: 0.6 }, 'overload'), /overload\.memoryLowWater: must be below memoryHighWater \(0\.6\)/);
    assert.throws(() => validateConfig({ overload: { lag: 5 } }), /overload\.lag: unknown key/);
    assert.throws(() => validateConfig({ maxRetainedBytes: -1 }), /maxRetainedBytes: must be an integer/);
  });
});

describe('the core under a guard (in memory)', () => {
  function highGuard(): ResourceGuard {
    const g = new ResourceGuard({ memoryLimit: GiB }, 0);
    g.update(sample(0.95), 0);
    return g;
  }

  it('memory high: CONNECT refused with 0x89 (5.0) / 0x03 (3.1.1) before authentication [MQTT-3.2.2-6] [MQTT-3.2.2-7]', () => {
    let authenticated = 0;
    const guard = highGuard();
    const f = new FakeCore({ guard, hooks: { authenticate: () => (authenticated++, true) } });
    const v5 = f.connect({ clientId: 'a', protocolVersion: 5 });
    const c5 = v5.take(2)[0] as ConnackPacket;
    assert.equal(c5.reasonCode, 0x89);
    assert.equal(c5.sessionPresent, false);
    assert.match(c5.properties?.reasonString ?? '', /memory/);
    assert.equal(v5.closed, true);
    const v4 = f.connect({ clientId: 'b', protocolVersion: 4 });
    assert.equal((v4.take(2)[0] as ConnackPacket).reasonCode, 0x03);
    assert.equal(v4.closed, true);
    assert.equal(authenticated, 0, 'no password check spent on a refused CONNECT');
    guard.update(sample(0.1), 1);
    const ok = f.connect({ clientId: 'c', protocolVersion: 5 });
    assert.equal((ok.take(2)[0] as ConnackPacket).reasonCode, 0);
  });

  it('memory high: QoS 0 deliveries shed and counted, QoS 1 still delivered', () => {
    const guard = new ResourceGuard({ memoryLimit: GiB }, 0);
    const f = new FakeCore({ guard });
    const sub = f.connect({ clientId: 'sub', protocolVersion: 5 });
    sub.take(2);
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't/#', qos: 1 }] });
    sub.take(9);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.take(2);
    guard.update(sample(0.95), 1);
    p.send(pub('t/0', 'zero'));
    p.send(pub('t/1', 'one', { qos: 1, packetId: 7 }));
    assert.deepEqual((sub.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['one']);
    assert.equal(f.inspect.overload().droppedShed, 1);
    assert.equal(f.inspect.counts().droppedMessages, 1);
    guard.update(sample(0.1), 2);
    p.send(pub('t/0', 'zero again'));
    assert.deepEqual((sub.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['zero again']);
  });

  it('memory high: a retained set that grows the store is refused (5.0 QoS 1: 0x97, not delivered); clearing and shrinking work', () => {
    const guard = new ResourceGuard({ memoryLimit: GiB }, 0);
    const f = new FakeCore({ guard });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.take(2);
    p.send(pub('r/a', 'abcdef', { retain: true, qos: 1, packetId: 1 }));
    assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode ?? 0, 0x10, 'no subscriber yet');
    guard.update(sample(0.95), 1);
    p.send(pub('r/b', 'new', { retain: true, qos: 1, packetId: 2 }));
    assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode, 0x97);
    p.send(pub('r/a', 'abcdefgh', { retain: true, qos: 1, packetId: 3 }));
    assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode, 0x97, 'a larger replacement grows the store');
    p.send(pub('r/a', 'abc', { retain: true, qos: 1, packetId: 4 }));
    assert.notEqual((p.take(4)[0] as PubAckLikePacket).reasonCode, 0x97, 'a smaller one does not');
    assert.equal(f.inspect.retained('r/a')?.payload.toString(), 'abc');
    assert.equal(f.inspect.retained('r/b'), undefined);
    assert.equal(f.inspect.overload().retainedBytes, 3);
  });
});
