// Wills (src/broker/wills.ts) through its own API on a fake clock: no delay, a Will Delay with due(now),
// cancelled by a resume before the deadline, published when the resume comes too late or the session ends,
// publishAll at shutdown with an asynchronous authorizePublish, a refused will dropped with a warning.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BrokerHooks, ClientInfo } from '../../src/broker/hooks.js';
import type { Message } from '../../src/broker/message.js';
import { Wills } from '../../src/broker/wills.js';
import type { WillMessage } from '../../src/protocol/packets.js';

const client = (clientId: string): ClientInfo => ({ clientId, protocolVersion: 5, remoteAddress: '127.0.0.1:1', listener: 'test' });
const will = (topic: string, delay?: number, expiry?: number): WillMessage => ({
  topic,
  payload: Buffer.from('bye'),
  qos: 1,
  retain: false,
  properties: { ...(delay !== undefined ? { willDelayInterval: delay } : {}), ...(expiry !== undefined ? { messageExpiryInterval: expiry } : {}) },
});

function setup(hooks: BrokerHooks = {}) {
  const clock = { time: 10_000, now() { return this.time; } };
  const published: { topic: string; from: string; message: Message }[] = [];
  const warnings: string[] = [];
  const wills = new Wills(clock, hooks, { warning: (m) => warnings.push(m) }, (message, c) => published.push({ topic: message.topic, from: c.clientId, message }));
  return { clock, published, warnings, wills, topics: () => published.map((p) => p.topic) };
}

describe('Wills', () => {
  it('no Will Delay: published at once, even when the session lives on', () => {
    const { wills, topics } = setup();
    wills.schedule(will('w'), client('a'), true);
    assert.deepEqual(topics(), ['w']);
    assert.equal(wills.pendingCount, 0);
  });

  it('a Will Delay with a session that ends with the connection: published at once [MQTT-3.1.3-9]', () => {
    const { wills, topics } = setup();
    wills.schedule(will('w', 30), client('a'), false);
    assert.deepEqual(topics(), ['w']);
  });

  it('a Will Delay with a live session: published by due(now) at its deadline, not before', () => {
    const { wills, clock, topics, published } = setup();
    wills.schedule(will('w', 30, 60), client('a'), true);
    assert.equal(wills.pendingCount, 1);
    wills.due(clock.time + 29_999);
    assert.deepEqual(topics(), []);
    clock.time += 30_000;
    wills.due(clock.time);
    assert.deepEqual(topics(), ['w']);
    assert.equal(wills.pendingCount, 0);
    // Its Message Expiry runs from when it is published (3.1.3.2.4), not from the CONNECT.
    assert.equal(published[0]!.message.expiresAt, clock.time + 60_000);
    wills.due(clock.time + 100_000);
    assert.equal(published.length, 1, 'published once');
  });

  it('resumed() before the deadline cancels the will [MQTT-3.1.3-9]', () => {
    const { wills, clock, topics } = setup();
    wills.schedule(will('w', 30), client('a'), true);
    clock.time += 29_999;
    wills.resumed('a');
    assert.equal(wills.pendingCount, 0);
    clock.time += 100_000;
    wills.due(clock.time);
    wills.sessionEnded('a');
    assert.deepEqual(topics(), []);
  });

  it('resumed() after the deadline, before due() ran, publishes the will: it is not lost', () => {
    const { wills, clock, topics } = setup();
    wills.schedule(will('w', 30), client('a'), true);
    clock.time += 30_050;
    wills.resumed('a');
    assert.deepEqual(topics(), ['w']);
    wills.due(clock.time);
    assert.deepEqual(topics(), ['w'], 'and only once');
  });

  it('resumed() of another client leaves a pending will alone', () => {
    const { wills, topics } = setup();
    wills.schedule(will('w', 30), client('a'), true);
    wills.resumed('b');
    assert.equal(wills.pendingCount, 1);
    assert.deepEqual(topics(), []);
  });

  it('sessionEnded() publishes a pending will now', () => {
    const { wills, topics } = setup();
    wills.schedule(will('w', 3600), client('a'), true);
    wills.sessionEnded('a');
    assert.deepEqual(topics(), ['w']);
    assert.equal(wills.pendingCount, 0);
    wills.sessionEnded('a');
    assert.deepEqual(topics(), ['w']);
  });

  it('publishAll(live) publishes the live and the pending wills, and resolves after an asynchronous authorizePublish answered', async () => {
    let answer: (ok: boolean) => void = () => {};
    const asked: string[] = [];
    const { wills, topics } = setup({
      authorizePublish: (c) => {
        asked.push(c.clientId);
        return c.clientId === 'slow' ? new Promise<boolean>((resolve) => (answer = resolve)) : true;
      },
    });
    wills.schedule(will('pending', 60), client('p'), true);
    let resolved = false;
    const done = wills.publishAll([
      [will('live'), client('l')],
      [will('slow'), client('slow')],
    ]).then(() => (resolved = true));
    assert.deepEqual(asked.sort(), ['l', 'p', 'slow']);
    assert.deepEqual(topics().sort(), ['live', 'pending']);
    assert.equal(wills.pendingCount, 0);
    await new Promise((r) => setImmediate(r));
    assert.equal(resolved, false, 'still waiting for the hook');
    answer(true);
    await done;
    assert.deepEqual(topics().sort(), ['live', 'pending', 'slow']);
  });

  it('a will the hook refuses (false, a reason code, or a throw) is dropped with a warning', async () => {
    const { wills, topics, warnings } = setup({
      authorizePublish: (c) => {
        if (c.clientId === 'throws') throw new Error('boom');
        if (c.clientId === 'async') return Promise.resolve(false);
        return c.clientId === 'code' ? 0x87 : false;
      },
    });
    wills.schedule(will('a'), client('no'), false);
    wills.schedule(will('b'), client('code'), false);
    await wills.publishAll([
      [will('c'), client('throws')],
      [will('d'), client('async')],
    ]);
    assert.deepEqual(topics(), []);
    assert.equal(warnings.length, 4);
    assert.ok(warnings.every((w) => /will/.test(w)));
  });
});
