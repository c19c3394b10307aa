// Interoperability with MQTT.js (3.1, 3.1.1, 5.0) and, when installed, the Mosquitto tools.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { IClientOptions, IPublishPacket, MqttClient } from 'mqtt';
import { eventually, setup, type Harness } from '../helpers/harness.js';
import { describeOrSkip } from '../helpers/skip.js';

type Version = 3 | 4 | 5;
const versionOptions = (v: Version): IClientOptions => (v === 3 ? { protocolId: 'MQIsdp', protocolVersion: 3 } : { protocolVersion: v });

/** Collects the messages a client receives. */
function inbox(client: MqttClient): IPublishPacket[] {
  const got: IPublishPacket[] = [];
  client.on('message', (_topic, _payload, packet) => got.push(packet));
  return got;
}

const text = (ps: IPublishPacket[]) => ps.map((p) => p.payload.toString());

async function client(h: Harness, v: Version, clientId: string, extra: IClientOptions = {}): Promise<MqttClient> {
  return h.mqtt({ clientId, ...versionOptions(v), ...extra });
}

describe('MQTT.js interop', () => {
  it('QoS 0/1/2 both directions between every pair of 3.1, 3.1.1 and 5.0 clients', async (t) => {
    const h = await setup(t);
    const versions: Version[] = [3, 4, 5];
    const subs = new Map<Version, { c: MqttClient; got: IPublishPacket[] }>();
    for (const v of versions) {
      const c = await client(h, v, `sub${v}`);
      const granted = await c.subscribeAsync('x/#', { qos: 2 });
      assert.equal(granted[0]?.qos, 2);
      subs.set(v, { c, got: inbox(c) });
    }
    for (const v of versions) {
      const pub = await client(h, v, `pub${v}`);
      for (const qos of [0, 1, 2] as const) await pub.publishAsync(`x/from${v}`, `v${v}q${qos}`, { qos });
    }
    await eventually(() => [...subs.values()].every((s) => s.got.length === 9), 3000, 'all messages');
    for (const [v, s] of subs) {
      assert.deepEqual(text(s.got), ['v3q0', 'v3q1', 'v3q2', 'v4q0', 'v4q1', 'v4q2', 'v5q0', 'v5q1', 'v5q2'], `subscriber ${v}`);
      assert.deepEqual(s.got.map((p) => p.qos), [0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }
  });

  it('a persistent session resumes: 3.1.1 clean false and 5.0 Session Expiry (queued QoS 1 delivered)', async (t) => {
    const h = await setup(t);
    for (const v of [3, 4, 5] as Version[]) {
      const opts: IClientOptions = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };
      const a = await client(h, v, `persist${v}`, opts);
      await a.subscribeAsync(`p${v}/#`, { qos: 1 });
      await a.endAsync();
      const pub = await client(h, 4, `pp${v}`);
      await pub.publishAsync(`p${v}/x`, 'while-away-1', { qos: 1 });
      await pub.publishAsync(`p${v}/x`, 'while-away-2', { qos: 1 });
      const got: string[] = [];
      let present: boolean | undefined;
      const b = h.mqttConnecting({ clientId: `persist${v}`, ...versionOptions(v), ...opts });
      b.on('connect', (ack) => (present = ack.sessionPresent));
      b.on('message', (_t, payload) => got.push(payload.toString()));
      await eventually(() => got.length === 2, 2000, `queued messages for ${v}`);
      // A 3.1 CONNACK has no Session Present flag (the byte is reserved); the queued messages show the resume.
      assert.equal(present, v !== 3);
      assert.deepEqual(got, ['while-away-1', 'while-away-2']);
    }
  });

  it('will: published when the MQTT.js connection drops, not after end()', async (t) => {
    const h = await setup(t);
    const watcher = await client(h, 4, 'watcher');
    const got = inbox(watcher);
    await watcher.subscribeAsync('will/#', { qos: 1 });
    for (const v of [3, 4, 5] as Version[]) {
      const dropped = await client(h, v, `drop${v}`, { will: { topic: `will/drop${v}`, payload: Buffer.from('lost'), qos: 1, retain: false } });
      dropped.stream.destroy();
      const polite = await client(h, v, `polite${v}`, { will: { topic: `will/polite${v}`, payload: Buffer.from('never'), qos: 1, retain: false } });
      await polite.endAsync();
    }
    await eventually(() => got.length >= 3);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(got.map((p) => p.topic).sort(), ['will/drop3', 'will/drop4', 'will/drop5']);
  });

  it('retained messages: delivered to a new MQTT.js subscriber with retain set; an empty payload clears it', async (t) => {
    const h = await setup(t);
    const pub = await client(h, 5, 'rpub');
    await pub.publishAsync('r/a', 'kept', { qos: 1, retain: true });
    for (const v of [3, 4, 5] as Version[]) {
      const sub = await client(h, v, `rsub${v}`);
      const got = inbox(sub);
      await sub.subscribeAsync('r/#', { qos: 1 });
      await eventually(() => got.length === 1);
      assert.equal(got[0]!.retain, true);
      assert.equal(got[0]!.payload.toString(), 'kept');
    }
    await pub.publishAsync('r/a', '', { qos: 1, retain: true });
    assert.equal(h.broker.inspect.counts().retained, 0);
  });

  it('5.0 features through MQTT.js: user properties and friends forwarded, subscription identifier, No Local, topic alias', async (t) => {
    const h = await setup(t, { topicAliasMaximum: 10 });
    const sub = await client(h, 5, 'v5sub');
    const got = inbox(sub);
    await sub.subscribeAsync('v5/#', { qos: 1, properties: { subscriptionIdentifier: 42 } });
    await sub.subscribeAsync('v5/mine', { qos: 1, nl: true });
    const pub = await client(h, 5, 'v5pub');
    await pub.publishAsync('v5/a', 'props', {
      qos: 1,
      properties: {
        userProperties: { k: 'v' },
        contentType: 'text/plain',
        responseTopic: 'v5/reply',
        correlationData: Buffer.from('corr'),
        payloadFormatIndicator: true,
        messageExpiryInterval: 60,
      },
    });
    await pub.publishAsync('v5/b', 'aliased-set', { qos: 1, properties: { topicAlias: 3 } });
    await pub.publishAsync('', 'aliased-use', { qos: 1, properties: { topicAlias: 3 } });
    // No Local: the subscriber's own message on v5/mine comes back only through v5/# (once).
    await sub.publishAsync('v5/mine', 'own', { qos: 1 });
    await eventually(() => got.length === 4, 2000, '4 messages');
    const [a, b, c, own] = got;
    const p = a!.properties!;
    assert.deepEqual({ ...p.userProperties }, { k: 'v' });
    assert.equal(p.contentType, 'text/plain');
    assert.equal(p.responseTopic, 'v5/reply');
    assert.equal(p.correlationData?.toString(), 'corr');
    assert.equal(p.payloadFormatIndicator, true);
    assert.ok(p.messageExpiryInterval! > 0 && p.messageExpiryInterval! <= 60);
    assert.deepEqual(p.subscriptionIdentifier, 42);
    assert.deepEqual([b!.topic, c!.topic], ['v5/b', 'v5/b']);
    assert.deepEqual(text([b!, c!]), ['aliased-set', 'aliased-use']);
    assert.equal(own!.payload.toString(), 'own');
    assert.equal(own!.properties?.subscriptionIdentifier, 42, 'came through v5/# only');
  });

  it('1000 QoS 1 messages from MQTT.js arrive in order at an MQTT.js subscriber', async (t) => {
    const h = await setup(t);
    const sub = await client(h, 4, 'osub');
    const got = inbox(sub);
    await sub.subscribeAsync('ord', { qos: 1 });
    const pub = await client(h, 5, 'opub');
    await Promise.all(Array.from({ length: 1000 }, (_, i) => pub.publishAsync('ord', String(i), { qos: 1 })));
    await eventually(() => got.length === 1000, 5000, '1000 messages');
    assert.deepEqual(text(got), Array.from({ length: 1000 }, (_, i) => String(i)));
  });

  it('MQTT.js sees refusals with the right code: 3.1 ID too long (2), bad password 3.1.1 (4) and 5.0 (134)', async (t) => {
    const h = await setup(t, { maxClientIdLength: 23, authenticate: (r) => r.password?.toString() !== 'wrong' });
    const codeOf = async (opts: IClientOptions) => {
      try {
        await h.mqtt(opts);
        return 0;
      } catch (err) {
        return (err as { code?: number }).code;
      }
    };
    assert.equal(await codeOf({ clientId: 'x'.repeat(24), ...versionOptions(3) }), 2);
    // (An empty 3.1 ID is tested with a raw client: MQTT.js never sends it.)
    assert.equal(await codeOf({ clientId: 'p4', username: 'u', password: 'wrong', ...versionOptions(4) }), 4);
    assert.equal(await codeOf({ clientId: 'p5', username: 'u', password: 'wrong', ...versionOptions(5) }), 134);
    assert.equal(await codeOf({ clientId: 'ok', username: 'u', password: 'right', ...versionOptions(5) }), 0);
  });
});

const hasMosquitto = spawnSync('mosquitto_pub', ['--help']).error === undefined;

describeOrSkip('Mosquitto command line tools', hasMosquitto ? false : 'mosquitto_pub / mosquitto_sub not installed', () => {
  it('mosquitto_sub receives what mosquitto_pub sends (3.1.1 and 5)', async (t) => {
    const h = await setup(t);
    const run = promisify(execFile);
    for (const v of ['mqttv311', 'mqttv5']) {
      const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(h.port), '-V', v, '-t', `m/${v}`, '-q', '1', '-C', '1', '-W', '5']);
      await eventually(() => h.broker.inspect.subscribers(`m/${v}`).length === 1, 3000, 'mosquitto_sub subscribed');
      await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(h.port), '-V', v, '-t', `m/${v}`, '-q', '1', '-m', `hello ${v}`]);
      const { stdout } = await sub;
      assert.equal(stdout.trim(), `hello ${v}`);
    }
  });
});
