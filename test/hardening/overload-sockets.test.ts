// The overload guard over real sockets (issue 24, defect 3), with the resource sampler replaced by a fake
// (`overload.sample`) and applied on demand (`broker.sampleResources()`): CONNACK 0x89 / 0x03 while memory is
// high or the event loop lags, QoS 0 shed while QoS 1 flows, retained messages beyond maxRetainedBytes
// refused with 0x97, one log line per change of state, and the defaults createBroker() derives.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { BrokerOptions } from '../../src/server/broker.js';
import { createBroker } from '../../src/server/broker.js';
import type { ResourceSample } from '../../src/broker/overload.js';
import { machineLimits } from '../../src/server/machine-limits.js';
import type { PubAckLikePacket } from '../../src/protocol/packets.js';
import { setup, payloads, publishes, quietPublishes } from '../helpers/harness.js';
import { metric, request, startHttpBroker } from '../helpers/http.js';
import { RawClient } from '../helpers/raw-client.js';
import { pub } from '../helpers/packets.js';

const GiB = 1024 ** 3;

/** A broker whose memory and lag the test sets; its log collected. */
async function guarded(t: TestContext, options: BrokerOptions = {}) {
  const now: ResourceSample = { heapUsed: 0, heapLimit: 4 * GiB, rss: 0.1 * GiB, eventLoopLagMs: 0 };
  const logs: { level: number; msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const h = await setup(t, { logger, ...options, overload: { memoryLimit: GiB, eventLoopLagMs: 200, ...options.overload, sample: () => ({ ...now }) } });
  return {
    ...h,
    logs,
    /** Memory use (fraction of 1 GiB) and lag (ms) from now on, applied at once. */
    set(use: number, lag = 0) {
      now.rss = use * GiB;
      now.eventLoopLagMs = lag;
      return h.broker.sampleResources();
    },
    lines: (re: RegExp) => logs.filter((l) => re.test(l.msg)),
  };
}

describe('overload: new connections refused while memory is high or the event loop lags', () => {
  it('5.0 CONNACK 0x89 Server busy, 3.1.1 0x03 Server unavailable, then the close; accepted again once memory is low [MQTT-3.2.2-6] [MQTT-3.2.2-7] 3.1.1 [MQTT-3.2.2-4] [MQTT-3.2.2-5]', async (t) => {
    const g = await guarded(t);
    const before = await g.connected({ clientId: 'before', protocolVersion: 5 });
    assert.equal(g.set(0.9).memory, 'high');

    const v5 = await g.connect({ clientId: 'v5', protocolVersion: 5 });
    assert.equal(v5.connack.reasonCode, 0x89);
    assert.equal(v5.connack.sessionPresent, false);
    assert.match(v5.connack.properties?.reasonString ?? '', /server busy: memory/);
    await v5.client.waitClosed();
    const v4 = await g.connect({ clientId: 'v4', protocolVersion: 4 });
    assert.equal(v4.connack.reasonCode, 0x03);
    await v4.client.waitClosed();
    assert.deepEqual(g.events.clientRefused.map(([r]) => r.reasonCode), [0x89, 0x89]);
    // A connection made before keeps working.
    await before.sync();

    g.set(0.8); // between the marks: still high
    assert.equal((await g.connect({ clientId: 'mid', protocolVersion: 5 })).connack.reasonCode, 0x89);
    assert.equal(g.set(0.5).memory, 'normal');
    assert.equal((await g.connect({ clientId: 'after', protocolVersion: 5 })).connack.reasonCode, 0);
    assert.equal((await g.connect({ clientId: 'after4', protocolVersion: 4 })).connack.reasonCode, 0);
  });

  it('event loop lagging beyond eventLoopLagMs: CONNACK 0x89; normal again below half of it', async (t) => {
    const g = await guarded(t);
    assert.equal(g.set(0.1, 250).eventLoop, 'high');
    const refused = await g.connect({ clientId: 'a', protocolVersion: 5 });
    assert.equal(refused.connack.reasonCode, 0x89);
    assert.match(refused.connack.properties?.reasonString ?? '', /event loop/);
    g.set(0.1, 150);
    assert.equal((await g.connect({ clientId: 'b', protocolVersion: 5 })).connack.reasonCode, 0x89);
    g.set(0.1, 50);
    assert.equal((await g.connect({ clientId: 'c', protocolVersion: 5 })).connack.reasonCode, 0);
  });

  it('one log line per change of state (a warning on entering, info on leaving), never per sample or per refusal', async (t) => {
    const g = await guarded(t);
    g.set(0.9);
    for (let i = 0; i < 5; i++) {
      g.set(0.8 + i * 0.03);
      assert.equal((await g.connect({ clientId: `x${i}`, protocolVersion: 5 })).connack.reasonCode, 0x89);
    }
    g.set(0.2);
    g.set(0.3);
    g.set(0.1, 300);
    g.set(0.1, 300);
    g.set(0.1, 10);
    const memory = g.lines(/^memory /);
    assert.deepEqual(memory.map((l) => [l.level, l.msg.split(' (')[0]]), [
      [40, 'memory above its high-water mark'],
      [30, 'memory back below its low-water mark'],
    ]);
    assert.equal(memory[0]!.rssMB, Math.round(0.9 * 1024));
    assert.equal(memory[0]!.memoryLimitMB, 1024);
    assert.match(memory[0]!.msg, /new connections refused with Server busy, QoS 0 messages shed, retained messages that grow the store refused/);
    const loop = g.lines(/^event loop/);
    assert.deepEqual(loop.map((l) => [l.level, l.lagMs]), [[40, 300], [30, 10]]);
  });

  it('overload.enabled false: nothing is refused, whatever the samples', async (t) => {
    const g = await guarded(t, { overload: { enabled: false } });
    g.set(2, 10_000);
    assert.equal((await g.connect({ clientId: 'a', protocolVersion: 5 })).connack.reasonCode, 0);
  });
});

describe('overload: QoS 0 shed first while memory is high', () => {
  it('QoS 0 messages are dropped and counted; QoS 1 messages are delivered', async (t) => {
    const g = await guarded(t);
    const sub = await g.subscriber('t/#', 1, { protocolVersion: 5, clientId: 'sub' });
    const p = await g.connected({ clientId: 'p', protocolVersion: 5 });
    g.set(0.9);
    for (let i = 0; i < 10; i++) p.send(pub('t/zero', `q0-${i}`));
    p.send(pub('t/one', 'q1', { qos: 1, packetId: 1 }));
    await p.next(4);
    const got = await publishes(sub, 1);
    assert.deepEqual(payloads(got), ['q1']);
    assert.deepEqual(await quietPublishes(sub, 100), [], 'no QoS 0 message behind it');
    const o = g.broker.inspect.overload();
    assert.equal(o.droppedShed, 10);
    assert.equal(o.sheddingQos0, true);
    g.set(0.1);
    p.send(pub('t/zero', 'back'));
    assert.deepEqual(payloads(await publishes(sub, 1)), ['back']);
  });
});

describe('maxRetainedBytes: the retained store stays within its bytes', () => {
  it('5.0 QoS 1/2: PUBACK / PUBREC 0x97 and not delivered; QoS 0 and 3.1.1: delivered but not kept; clearing frees room; warned once', async (t) => {
    const g = await guarded(t, { maxRetainedBytes: 1000 });
    const live = await g.subscriber('r/#', 1, { protocolVersion: 5, clientId: 'live' });
    const p5 = await g.connected({ clientId: 'p5', protocolVersion: 5 });
    const kb = (c: string, n = 400) => c.repeat(n);
    p5.send(pub('r/1', kb('a'), { retain: true, qos: 1, packetId: 1 }));
    p5.send(pub('r/2', kb('b'), { retain: true, qos: 1, packetId: 2 }));
    assert.deepEqual([(await p5.next(4)) as PubAckLikePacket, (await p5.next(4)) as PubAckLikePacket].map((a) => a.reasonCode ?? 0), [0, 0]);
    p5.send(pub('r/3', kb('c'), { retain: true, qos: 1, packetId: 3 }));
    assert.equal(((await p5.next(4)) as PubAckLikePacket).reasonCode, 0x97, 'a new topic beyond 1000 bytes');
    assert.equal(g.lines(/^retained store full \(maxRetainedBytes\)/).length, 1, 'warned at the first refusal');
    p5.send(pub('r/1', kb('a', 700), { retain: true, qos: 2, packetId: 4 }));
    assert.equal(((await p5.next(5)) as PubAckLikePacket).reasonCode, 0x97, 'a larger replacement beyond it (QoS 2: PUBREC)');
    assert.deepEqual(payloads(await publishes(live, 2)).map((s) => s.slice(0, 1)), ['a', 'b']);
    assert.deepEqual(await quietPublishes(live, 100), [], 'a refused message is not delivered');

    const p0 = await g.connected({ clientId: 'p0', protocolVersion: 5 });
    p0.send(pub('r/4', kb('d'), { retain: true }));
    const p4 = await g.connected({ clientId: 'p4', protocolVersion: 4 });
    p4.send(pub('r/5', kb('e'), { retain: true, qos: 1, packetId: 9 }));
    assert.equal(((await p4.next(4)) as PubAckLikePacket).type, 4);
    assert.deepEqual(payloads(await publishes(live, 2)).map((s) => s.slice(0, 1)).sort(), ['d', 'e'], 'QoS 0 and 3.1.1 delivered');
    const o = g.broker.inspect.overload();
    assert.equal(o.retainedBytes, 800);
    assert.equal(o.retainedRefused, 4);
    assert.deepEqual(g.broker.inspect.retainedMatching('r/#').map((m) => m.topic), ['r/1', 'r/2']);
    assert.equal(g.lines(/maxRetainedBytes/).length, 1, 'one warning, not one per message');

    p5.send(pub('r/2', '', { retain: true, qos: 1, packetId: 5 }));
    await p5.next(4);
    p5.send(pub('r/3', kb('c'), { retain: true, qos: 1, packetId: 6 }));
    assert.equal(((await p5.next(4)) as PubAckLikePacket).reasonCode ?? 0, 0, 'room again once a topic is cleared');
    assert.equal(g.broker.inspect.overload().retainedBytes, 800);
  });

  it('memory high: a retained message that grows the store gets 0x97 even under maxRetainedBytes', async (t) => {
    const g = await guarded(t);
    const p = await g.connected({ clientId: 'p', protocolVersion: 5 });
    g.set(0.95);
    p.send(pub('m/1', 'x', { retain: true, qos: 1, packetId: 1 }));
    assert.equal(((await p.next(4)) as PubAckLikePacket).reasonCode, 0x97);
    p.send(pub('m/1', '', { retain: true, qos: 1, packetId: 2 }));
    assert.notEqual(((await p.next(4)) as PubAckLikePacket).reasonCode, 0x97, 'clearing always works');
    g.set(0.1);
    p.send(pub('m/1', 'x', { retain: true, qos: 1, packetId: 3 }));
    assert.notEqual(((await p.next(4)) as PubAckLikePacket).reasonCode, 0x97);
    assert.equal(g.broker.inspect.retained('m/1')?.payload.toString(), 'x');
  });
});

describe('the process sampler (no fake): RSS, heap and event-loop lag of this process', () => {
  it('an RSS over a small memoryLimit is high; a loop blocked for 500 ms lags; both give CONNACK 0x89', async (t) => {
    // A long interval: only sampleResources() samples, so the lag window is the test's own.
    const h = await setup(t, { overload: { memoryLimit: 1_000_000, sampleIntervalMs: 3_600_000 } });
    const s = h.broker.sampleResources();
    assert.ok(s.sample!.rss > 1_000_000 && s.sample!.heapLimit > s.sample!.heapUsed && s.sample!.heapUsed > 0);
    assert.equal(s.memory, 'high', 'any process is larger than 1 MB');
    assert.equal((await h.connect({ clientId: 'm', protocolVersion: 5 })).connack.reasonCode, 0x89);

    const lag = await setup(t, { overload: { eventLoopLagMs: 50, sampleIntervalMs: 3_600_000 } });
    lag.broker.sampleResources();
    // The monitor measures from its previous tick, and a reset forgets it: let it tick once first.
    await new Promise((r) => setTimeout(r, 30));
    const until = Date.now() + 500;
    while (Date.now() < until); // the loop blocked
    await new Promise((r) => setTimeout(r, 30));
    const v = lag.broker.sampleResources();
    assert.equal(v.eventLoop, 'high', `lag ${v.eventLoopLagMs} ms`);
    assert.equal((await lag.connect({ clientId: 'l', protocolVersion: 5 })).connack.reasonCode, 0x89);
  });
});

describe('/metrics', () => {
  it('petrel_overload{resource} is 1 while shedding; shed QoS 0 messages are messages_dropped_total{reason="shed"}', async (t) => {
    const now: ResourceSample = { heapUsed: 0, heapLimit: 4 * GiB, rss: 0.1 * GiB, eventLoopLagMs: 0 };
    const h = await startHttpBroker(t, { overload: { memoryLimit: GiB, sample: () => ({ ...now }) } });
    const sub = await RawClient.connect(h.mqttPort, { clientId: 'sub', protocolVersion: 5 });
    sub.client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 0 }] });
    await sub.client.next(9);
    const p = await RawClient.connect(h.mqttPort, { clientId: 'p', protocolVersion: 5 });
    t.after(() => (sub.client.destroy(), p.client.destroy()));
    now.rss = 0.9 * GiB;
    h.broker.sampleResources();
    for (let i = 0; i < 3; i++) p.client.send(pub('t', 'x'));
    await p.client.sync();
    const text = (await request(h.base, 'GET', '/metrics')).text;
    assert.equal(metric(text, 'petrel_overload', { resource: 'memory' }), 1);
    assert.equal(metric(text, 'petrel_overload', { resource: 'event_loop' }), 0);
    assert.equal(metric(text, 'petrel_messages_dropped_total', { reason: 'shed' }), 3);
    assert.equal(metric(text, 'petrel_messages_dropped_total', { reason: 'queue_full' }), 0);
  });
});

describe('createBroker(): memory limits derived from the machine where none is set', () => {
  it('maxRetainedBytes, maxQueuedBytes and maxSubscriptionsPerClient get machineLimits(); an explicit value (0 included) wins', async (t) => {
    const m = machineLimits();
    const byDefault = createBroker({ port: 0, host: '127.0.0.1' });
    t.after(() => byDefault.close());
    assert.equal(byDefault.inspect.overload().maxRetainedBytes, m.maxRetainedBytes);
    assert.equal(byDefault.inspect.overload().options.memoryLimit, m.memoryLimit);
    const explicit = createBroker({ port: 0, host: '127.0.0.1', maxRetainedBytes: 0 });
    t.after(() => explicit.close());
    assert.equal(explicit.inspect.overload().maxRetainedBytes, 0);
    assert.throws(() => createBroker({ overload: { memoryLowWater: 0.9 } }), /createBroker: overload\.memoryLowWater: must be below memoryHighWater/);
    assert.throws(() => createBroker({ overload: { sample: 5 as unknown as () => ResourceSample } }), /overload\.sample: must be a function/);
  });

});
