// Will messages over real TCP: when they are published (every abnormal end) and when not
// (normal DISCONNECT); retain and QoS of the will; authorization of the will.
// The keep-alive-timeout case is in connect.test.ts (the one real-clock keep alive test),
// takeover in client-id.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import type { DisconnectPacket, PublishPacket, WillMessage } from '../../src/protocol/packets.js';
import { eventually, packet, publishes, quietPublishes, setup } from '../helpers/harness.js';

const will = (topic: string, payload = 'bye', qos: 0 | 1 | 2 = 0, retain = false): WillMessage => ({ topic, payload: Buffer.from(payload), qos, retain });

describe('will messages', () => {
  it('[MQTT-3.1.2-8] published when the socket is destroyed (3.1, 3.1.1, 5.0)', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('will/#', 2);
    for (const protocolVersion of [3, 4, 5] as ProtocolVersion[]) {
      const c = await h.connected({ clientId: `d${protocolVersion}`, protocolVersion, will: will(`will/${protocolVersion}`, `v${protocolVersion}`) });
      c.destroy();
      const [p] = await publishes(watcher, 1);
      assert.equal(p!.topic, `will/${protocolVersion}`);
      assert.equal(p!.payload.toString(), `v${protocolVersion}`);
      assert.equal(p!.retain, false);
    }
  });

  it('published on a protocol violation (client sends CONNACK), 5.0 gets DISCONNECT 0x82 first', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('will/#');
    const c4 = await h.connected({ will: will('will/v4') });
    c4.sendBytes(packet(0x20, [0, 0]));
    await c4.waitClosed();
    const c5 = await h.connected({ protocolVersion: 5, will: will('will/v5') });
    c5.sendBytes(packet(0x20, [0, 0, 0]));
    assert.equal(((await c5.next(14)) as DisconnectPacket).reasonCode, 0x82);
    await c5.waitClosed();
    const got = await publishes(watcher, 2);
    assert.deepEqual(got.map((p) => p.topic), ['will/v4', 'will/v5']);
  });

  it('published when the server closes the connection (broker.close())', async (t) => {
    const h = await setup(t);
    // The will's owner connects first so the watcher is still connected when the owner is closed.
    const owner = await h.connected({ clientId: 'owner', protocolVersion: 5, will: will('will/owner', 'shutdown') });
    const watcher = await h.subscriber('will/#');
    await h.broker.close();
    const d = (await owner.next(14)) as DisconnectPacket;
    assert.equal(d.reasonCode, 0x8b, 'Server Shutting Down');
    const published = h.events.published.map(([m]) => m.topic);
    assert.deepEqual(published, ['will/owner']);
    const got = (await watcher.next(3)) as PublishPacket;
    assert.equal(got.payload.toString(), 'shutdown');
  });

  it('[MQTT-3.1.2-10] [MQTT-3.14.4-3] NOT published after a normal DISCONNECT (3.1.1, 5.0 0x00)', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('will/#');
    const c4 = await h.connected({ will: will('will/v4') });
    c4.send({ type: 14 });
    await c4.waitClosed();
    const c5 = await h.connected({ protocolVersion: 5, will: will('will/v5') });
    c5.send({ type: 14, reasonCode: 0 });
    await c5.waitClosed();
    assert.deepEqual(await quietPublishes(watcher, 150), []);
    assert.equal(h.events.published.length, 0);
    assert.ok(h.events.clientDisconnected.every(([, info]) => !info.willPublished));
  });

  it('5.0 DISCONNECT 0x04 (Disconnect with Will Message) publishes it', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('will/#');
    const c = await h.connected({ protocolVersion: 5, will: will('will/04', 'asked') });
    c.send({ type: 14, reasonCode: 0x04 });
    await c.waitClosed();
    const [p] = await publishes(watcher, 1);
    assert.equal(p!.payload.toString(), 'asked');
  });

  it('[MQTT-3.1.2-17] will retain: the will becomes the retained message of its topic', async (t) => {
    const h = await setup(t);
    const c = await h.connected({ will: will('status/dev1', 'offline', 1, true) });
    c.destroy();
    await eventually(() => h.broker.inspect.counts().retained === 1);
    const late = await h.subscriber('status/#', 1);
    const [p] = await publishes(late, 1);
    assert.equal(p!.topic, 'status/dev1');
    assert.equal(p!.payload.toString(), 'offline');
    assert.equal(p!.retain, true);
    assert.equal(p!.qos, 1);
  });

  it('the will keeps its QoS (bounded by the subscription), payload bytes and 5.0 properties', async (t) => {
    const h = await setup(t);
    const q2 = await h.subscriber('will/#', 2, { protocolVersion: 5 });
    const q0 = await h.subscriber('will/#', 0);
    const payload = Buffer.from([0, 1, 2, 255]);
    const c = await h.connected({
      protocolVersion: 5,
      will: { topic: 'will/q', payload, qos: 2, retain: false, properties: { contentType: 'bin', userProperties: [['k', 'v']] } },
    });
    c.destroy();
    const [a] = await publishes(q2, 1);
    const [b] = await publishes(q0, 1);
    assert.equal(a!.qos, 2);
    assert.deepEqual(a!.payload, payload);
    assert.equal(a!.properties?.contentType, 'bin');
    assert.deepEqual(a!.properties?.userProperties, [['k', 'v']]);
    assert.equal(b!.qos, 0);
  });

  it('the will is authorized like any publish: authorizePublish answering false drops it (sync and async)', async (t) => {
    const h = await setup(t, {
      authorizePublish: (_client, message) => {
        if (message.topic === 'will/denied') return false;
        if (message.topic === 'will/denied-async') return Promise.resolve(false);
        if (message.topic === 'will/allowed-async') return Promise.resolve(true);
        return true;
      },
    });
    const watcher = await h.subscriber('will/#');
    for (const topic of ['will/denied', 'will/denied-async', 'will/allowed-async', 'will/allowed']) {
      const c = await h.connected({ will: will(topic) });
      c.destroy();
    }
    const got = await publishes(watcher, 2);
    assert.deepEqual(got.map((p) => p.topic).sort(), ['will/allowed', 'will/allowed-async']);
    assert.deepEqual(await quietPublishes(watcher, 100), []);
  });

  it('[MQTT-3.1.3-9] 5.0 takeover with a Will Delay: resuming the session (Clean Start 0) cancels the will; Clean Start 1 ends the session and publishes it', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('will/#');
    const delayed = (topic: string): WillMessage => ({ ...will(topic), properties: { willDelayInterval: 30 } });
    const props = { sessionExpiryInterval: 60 };
    await h.connected({ clientId: 'wd', protocolVersion: 5, properties: props, will: delayed('will/resumed') });
    const { connack } = await h.connect({ clientId: 'wd', protocolVersion: 5, clean: false, properties: props });
    assert.equal(connack.sessionPresent, true);
    assert.deepEqual(await quietPublishes(watcher, 100), [], 'resumed within the delay: no will');
    assert.equal(h.broker.inspect.footprint().pendingWills, 0, 'the will is cancelled, not merely waiting out its 30 s delay');
    await h.connected({ clientId: 'wd2', protocolVersion: 5, properties: props, will: delayed('will/ended') });
    await h.connected({ clientId: 'wd2', protocolVersion: 5, clean: true, properties: props });
    const [p] = await publishes(watcher, 1);
    assert.equal(p!.topic, 'will/ended', 'the session ended, so the will went out at once');
  });
});
