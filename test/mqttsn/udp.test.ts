// The MQTT-SN gateway over real UDP on 127.0.0.1, against MQTT 3.1.1 / 5.0 clients on TCP of the same
// broker (MQTT.js, mosquitto_pub / mosquitto_sub): both directions, REGISTER for wildcard subscriptions,
// sleeping clients, wills, takeover, retransmission through a lossy relay, QoS -1, forwarder
// encapsulation, hostile datagrams, IPv6. MQTT-SN 1.2 sections are cited per test.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { execFile, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import type { Broker } from '../../src/server/broker.js';
import { connect as snConnect, MqttSnClient, type SnMessage } from '../../src/mqttsn/client.js';
import { decodeEncapsulated, decodeSn, encodeEncapsulated, encodeSn } from '../../src/mqttsn/codec.js';
import { SnType } from '../../src/mqttsn/packets.js';
import { delay, eventually, startBroker } from '../helpers/broker.js';
import { LossyRelay, UdpPeer } from './helpers.js';

const run = promisify(execFile);
const hasMosquitto = spawnSync('mosquitto_pub', ['--help']).error === undefined;

interface Setup {
  broker: Broker;
  tcpPort: number;
  snPort: number;
  snUrl: string;
  mqttUrl: string;
}

async function setup(mqttsn: Record<string, unknown> = {}, broker: Record<string, unknown> = {}): Promise<Setup> {
  const { broker: b } = await startBroker({
    listeners: [
      { type: 'tcp', host: '127.0.0.1', port: 0 },
      { type: 'mqttsn', host: '127.0.0.1', port: 0, predefinedTopics: { 1: 'sensors/temp', 2: 'cmd/led' }, ...mqttsn } as never,
    ],
    ...broker,
  });
  const tcpPort = b.address(0).port;
  const snPort = b.address(1).port;
  return { broker: b, tcpPort, snPort, snUrl: `mqttsn://127.0.0.1:${snPort}`, mqttUrl: `mqtt://127.0.0.1:${tcpPort}` };
}

async function mqttClient(url: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, ...options });
}

function collect(client: mqtt.MqttClient): { topic: string; payload: string; retain: boolean; qos: number }[] {
  const got: { topic: string; payload: string; retain: boolean; qos: number }[] = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain, qos: packet.qos }));
  return got;
}

async function nextMessage(client: MqttSnClient, timeoutMs = 3000): Promise<SnMessage> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no MQTT-SN message')), timeoutMs);
    client.once('message', (m) => {
      clearTimeout(t);
      resolve(m);
    });
  });
}

describe('MQTT-SN over UDP ↔ MQTT over TCP', () => {
  let s: Setup;
  before(async () => {
    s = await setup();
  });
  after(async () => {
    await s.broker.close();
  });

  it('MQTT-SN QoS 0/1/2 publishes (registered, predefined, short topics) reach an MQTT.js 5.0 subscriber (6.5, 6.8)', async () => {
    const sub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync('#', { qos: 2 });
    const sn = await snConnect(s.snUrl, { clientId: 'sn-pub', predefinedTopics: { 1: 'sensors/temp' } });
    await sn.publish('home/livingroom/temp', '20', { qos: 0 });
    await sn.publish('home/livingroom/temp', '21', { qos: 1 });
    await sn.publish('sensors/temp', '22', { qos: 2 });
    await sn.publish('ab', '23', { qos: 1, retain: true });
    await eventually(() => got.length === 4, 3000, '4 messages');
    assert.deepEqual(got.map((m) => [m.topic, m.payload, m.qos]), [
      ['home/livingroom/temp', '20', 0],
      ['home/livingroom/temp', '21', 1],
      ['sensors/temp', '22', 2],
      ['ab', '23', 1],
    ]);
    assert.equal(s.broker.inspect.retained('ab')?.payload.toString(), '23');
    await sn.end();
    await sub.endAsync();
  });

  it('MQTT.js 3.1.1 and 5.0 publishes reach an MQTT-SN wildcard subscriber; the gateway REGISTERs each topic first (6.7)', async () => {
    const peer = await UdpPeer.open(s.snPort);
    peer.send({ type: SnType.CONNECT, will: false, cleanSession: true, protocolId: 1, duration: 30, clientId: 'raw-sub' });
    assert.equal((await peer.next(SnType.CONNACK)).type, SnType.CONNACK);
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 0, name: 'room/+/light' } });
    const suback = (await peer.next(SnType.SUBACK)) as { topicId: number; returnCode: number };
    assert.equal(suback.returnCode, 0);
    assert.equal(suback.topicId, 0, 'a wildcard filter gets no topic id');
    for (const protocolVersion of [4, 5] as const) {
      const pub = await mqttClient(s.mqttUrl, { protocolVersion });
      await pub.publishAsync(`room/${protocolVersion}/light`, `on-${protocolVersion}`, { qos: 1 });
      await pub.endAsync();
      const register = (await peer.next(SnType.REGISTER)) as { topicId: number; msgId: number; topicName: string };
      assert.equal(register.topicName, `room/${protocolVersion}/light`);
      peer.send({ type: SnType.REGACK, topicId: register.topicId, msgId: register.msgId, returnCode: 0 });
      const publish = (await peer.next(SnType.PUBLISH)) as { topic: { type: number; id: number }; msgId: number; payload: Buffer; qos: number };
      assert.deepEqual(publish.topic, { type: 0, id: register.topicId });
      assert.equal(publish.payload.toString(), `on-${protocolVersion}`);
      assert.equal(publish.qos, 1);
      peer.send({ type: SnType.PUBACK, topicId: register.topicId, msgId: publish.msgId, returnCode: 0 });
    }
    peer.send({ type: SnType.DISCONNECT });
    await peer.next(SnType.DISCONNECT);
    peer.close();
  });

  it('mosquitto_pub (3.1.1) → MQTT-SN subscriber, and MQTT-SN publisher → mosquitto_sub (3.1.1 and 5.0)', { skip: hasMosquitto ? false : 'mosquitto-clients not installed' }, async () => {
    const sn = await snConnect(s.snUrl, { clientId: 'sn-mosq' });
    await sn.subscribe('mosq/#', { qos: 1 });
    const message = nextMessage(sn);
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(s.tcpPort), '-V', 'mqttv311', '-q', '1', '-t', 'mosq/in', '-m', 'from mosquitto'], { timeout: 5000 });
    const m = await message;
    assert.deepEqual([m.topic, m.payload.toString(), m.qos], ['mosq/in', 'from mosquitto', 1]);
    for (const v of ['mqttv311', 'mqttv5']) {
      const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(s.tcpPort), '-V', v, '-q', '1', '-t', `sn-out/${v}`, '-C', '1', '-W', '5', '-F', '%t %q %p'], { timeout: 8000 });
      await eventually(() => s.broker.inspect.subscribers(`sn-out/${v}`).length === 1, 3000, 'mosquitto_sub subscribed');
      await sn.publish(`sn-out/${v}`, 'from MQTT-SN', { qos: 1 });
      assert.equal((await sub).stdout.trim(), `sn-out/${v} 1 from MQTT-SN`);
    }
    await sn.end();
  });

  it('retained messages reach an MQTT-SN subscriber with the Retain flag (the same retained store); UNSUBSCRIBE by predefined id', async () => {
    const pub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
    await pub.publishAsync('cmd/led', 'blink', { qos: 1, retain: true });
    await pub.endAsync();
    const sn = await snConnect(s.snUrl, { clientId: 'sn-retained', predefinedTopics: { 2: 'cmd/led' } });
    const message = nextMessage(sn);
    const granted = await sn.subscribe('cmd/led', { qos: 1 });
    assert.equal(granted.topicId, 2, 'a predefined topic subscribed by its id');
    const m = await message;
    assert.deepEqual([m.topic, m.payload.toString(), m.retain], ['cmd/led', 'blink', true]);
    // UNSUBSCRIBE / UNSUBACK (6.9): nothing more arrives
    await sn.unsubscribe('cmd/led');
    assert.deepEqual(s.broker.inspect.session('sn-retained')?.subscriptions, []);
    await sn.end();
  });

  it('a will over MQTT-SN is published when the client stops answering (keep alive x 1.5), and updated with WILLTOPICUPD/WILLMSGUPD (6.3, 6.4)', async () => {
    const sub = await mqttClient(s.mqttUrl, { protocolVersion: 4 });
    const got = collect(sub);
    await sub.subscribeAsync('wills/#', { qos: 1 });
    const sn = await snConnect(s.snUrl, { clientId: 'sn-will', keepAlive: 1, will: { topic: 'wills/first', payload: 'first', qos: 1 } });
    await sn.updateWill({ topic: 'wills/sn-will', qos: 1, retain: false });
    await sn.updateWill({ payload: 'sensor offline' });
    sn.destroy(); // no DISCONNECT: silence
    await eventually(() => got.length === 1, 4000, 'the will');
    assert.deepEqual(got, [{ topic: 'wills/sn-will', payload: 'sensor offline', retain: false, qos: 1 }]);
    await sub.endAsync();
  });

  it('a sleeping client gets the messages buffered while it slept when it wakes with PINGREQ, then PINGRESP (6.14)', async () => {
    const sn = await snConnect(s.snUrl, { clientId: 'sn-sleepy', keepAlive: 5 });
    await sn.subscribe('sleepy/#', { qos: 1 });
    await sn.sleep(60);
    const pub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
    for (let i = 1; i <= 3; i++) await pub.publishAsync('sleepy/cmd', `m${i}`, { qos: 1 });
    await pub.publishAsync('sleepy/cmd', 'q0', { qos: 0 });
    await pub.endAsync();
    const got: string[] = [];
    sn.on('message', (m) => got.push(m.payload.toString()));
    await delay(300);
    assert.deepEqual(got, [], 'nothing reaches a sleeping client');
    await sn.wake();
    assert.deepEqual([...got].sort(), ['m1', 'm2', 'm3', 'q0'], 'every buffered message before PINGRESP');
    assert.ok(s.broker.inspect.isConnected('sn-sleepy'));
    await sn.end();
  });

  it('takeover with one Client ID: MQTT.js takes the session from MQTT-SN, then MQTT-SN takes it back', async () => {
    const sn = await snConnect(s.snUrl, { clientId: 'shared', cleanSession: false });
    await sn.subscribe('shared/topic', { qos: 1 });
    const closed = new Promise((resolve) => sn.once('close', resolve));
    const m = await mqttClient(s.mqttUrl, { protocolVersion: 5, clientId: 'shared', clean: false, properties: { sessionExpiryInterval: 60 } });
    await closed;
    assert.equal(s.broker.inspect.connection('shared')?.listener.startsWith('tcp'), true);
    assert.deepEqual(s.broker.inspect.session('shared')?.subscriptions.map((x) => x.topicFilter), ['shared/topic'], 'the session moved with its subscription');
    const mClosed = new Promise<void>((resolve) => m.once('close', () => resolve()));
    const sn2 = await snConnect(s.snUrl, { clientId: 'shared', cleanSession: false });
    await mClosed;
    assert.equal(s.broker.inspect.connection('shared')?.listener, `mqttsn:${s.snPort}`);
    m.end(true);
    await sn2.end();
  });

  it('PUBLISH QoS -1 without a connection, to a predefined id and a short name (6.8)', async () => {
    const sub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync(['sensors/temp', 't1'], { qos: 0 });
    const sensor = new MqttSnClient({ predefinedTopics: { 1: 'sensors/temp' } });
    await sensor.open(s.snUrl);
    await sensor.publish('sensors/temp', '19.5', { qos: -1 });
    await sensor.publish('t1', '42', { qos: -1 });
    await eventually(() => got.length === 2, 3000, 'QoS -1 messages');
    assert.deepEqual(got.map((m) => [m.topic, m.payload]), [['sensors/temp', '19.5'], ['t1', '42']]);
    await assert.rejects(sensor.publish('long/topic', 'x', { qos: -1 }), /QoS -1 needs a predefined topic id or a two-character topic name/);
    sensor.destroy();
    await sub.endAsync();
  });

  it('SEARCHGW → GWINFO with the gateway id (6.1)', async () => {
    const peer = await UdpPeer.open(s.snPort);
    peer.send({ type: SnType.SEARCHGW, radius: 0 });
    assert.deepEqual(await peer.next(SnType.GWINFO), { type: SnType.GWINFO, gwId: 1 });
    peer.close();
  });

  it('forwarder encapsulation: a forwarder relays CONNECT and PUBLISH for two wireless nodes; answers come back encapsulated (5.5)', async () => {
    const sub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync(['rx', 'sensors/temp']);
    const forwarder = await UdpPeer.open(s.snPort);
    const wrap = (node: number, p: Parameters<typeof encodeSn>[0]) => encodeEncapsulated({ ctrl: 0, nodeId: Buffer.from([node]), message: encodeSn(p) });
    for (const node of [0xa1, 0xa2]) forwarder.send(wrap(node, { type: SnType.CONNECT, will: false, cleanSession: true, protocolId: 1, duration: 30, clientId: `node-${node.toString(16)}` }));
    await eventually(() => forwarder.raw.length === 2, 3000, 'two answers');
    const answers = forwarder.raw.splice(0).map((d) => decodeEncapsulated(d));
    assert.deepEqual(answers.map((e) => e.nodeId[0]).sort(), [0xa1, 0xa2]);
    assert.ok(answers.every((e) => decodeSn(e.message).type === SnType.CONNACK));
    assert.ok(s.broker.inspect.isConnected('node-a1') && s.broker.inspect.isConnected('node-a2'));
    assert.equal(s.broker.inspect.connection('node-a1')?.remoteAddress, `127.0.0.1:${forwarder.port}/a1`);
    forwarder.send(wrap(0xa2, { type: SnType.PUBLISH, dup: false, qos: 0, retain: false, topic: { type: 2, name: 'rx' }, msgId: 0, payload: Buffer.from('hop') }));
    forwarder.send(wrap(0xa1, { type: SnType.PUBLISH, dup: false, qos: 1, retain: false, topic: { type: 1, id: 1 }, msgId: 9, payload: Buffer.from('22') }));
    await eventually(() => got.length === 2 && forwarder.raw.length === 1, 3000, 'the relayed publishes and the PUBACK');
    assert.deepEqual(got.map((m) => [m.topic, m.payload]), [['rx', 'hop'], ['sensors/temp', '22']]);
    const puback = decodeEncapsulated(forwarder.raw.splice(0)[0]!);
    assert.equal(puback.nodeId[0], 0xa1, 'the PUBACK goes back to the node that published');
    assert.deepEqual(decodeSn(puback.message), { type: SnType.PUBACK, topicId: 1, msgId: 9, returnCode: 0 });
    for (const node of [0xa1, 0xa2]) forwarder.send(wrap(node, { type: SnType.DISCONNECT }));
    forwarder.close();
    await sub.endAsync();
  });

  it('malformed and oversize datagrams are dropped without an answer; the gateway goes on serving', async () => {
    const peer = await UdpPeer.open(s.snPort);
    const junk = [Buffer.from([0x05, 0x16]), Buffer.from([0x02, 0x99]), Buffer.from([0xff]), Buffer.alloc(0), Buffer.alloc(60_000, 0x41), Buffer.from([0x04, 0xfe, 0x00, 0x01])];
    for (const d of junk) peer.send(d);
    await delay(200);
    assert.deepEqual(peer.raw, []);
    const sn = await snConnect(s.snUrl, { clientId: 'after-junk' });
    await sn.publish('ok', 'fine', { qos: 1 });
    await sn.end();
    peer.close();
  });
});

describe('MQTT-SN over UDP: retransmission through a lossy relay (6.13)', () => {
  it('with 25 % of datagrams dropped both ways (seeded), QoS 1 messages arrive both ways, each once', async () => {
    const s = await setup({ retryInterval: 0.15, maxRetries: 20 });
    const relay = await LossyRelay.start(s.snPort, 0.25, 20261207);
    try {
      const sub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
      const got = collect(sub);
      await sub.subscribeAsync('lossy/up', { qos: 1 });
      const sn = await snConnect(`mqttsn://127.0.0.1:${relay.port}`, { clientId: 'lossy', retryInterval: 150, maxRetries: 20, keepAlive: 0 });
      await sn.subscribe('lossy/down', { qos: 1 });
      const down: string[] = [];
      sn.on('message', (m) => down.push(m.payload.toString()));
      const pub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
      for (let i = 0; i < 15; i++) {
        await sn.publish('lossy/up', `u${i}`, { qos: 1 });
        await pub.publishAsync('lossy/down', `d${i}`, { qos: 1 });
      }
      await eventually(() => got.length >= 15 && new Set(down).size >= 15, 15_000, 'all messages');
      assert.deepEqual(got.map((m) => m.payload), Array.from({ length: 15 }, (_, i) => `u${i}`), 'MQTT-SN → MQTT: every message once, in order (duplicates detected by MsgId)');
      assert.deepEqual([...new Set(down)], Array.from({ length: 15 }, (_, i) => `d${i}`), 'MQTT → MQTT-SN: every message, in order');
      assert.ok(relay.dropped > 5, `the relay dropped ${relay.dropped} datagrams`);
      await pub.endAsync();
      await sub.endAsync();
      sn.destroy();
    } finally {
      relay.close();
      await s.broker.close();
    }
  });

  it('QoS 2 through the same relay: PUBREC / PUBREL / PUBCOMP retransmitted, every message delivered exactly once both ways', async () => {
    const s = await setup({ retryInterval: 0.15, maxRetries: 20 });
    const relay = await LossyRelay.start(s.snPort, 0.25, 7);
    try {
      const sub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
      const got = collect(sub);
      await sub.subscribeAsync('q2/up', { qos: 2 });
      const sn = await snConnect(`mqttsn://127.0.0.1:${relay.port}`, { clientId: 'lossy-q2', retryInterval: 150, maxRetries: 20, keepAlive: 0 });
      await sn.subscribe('q2/down', { qos: 2 });
      const down: string[] = [];
      sn.on('message', (m) => down.push(m.payload.toString()));
      const pub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
      for (let i = 0; i < 10; i++) {
        await sn.publish('q2/up', `u${i}`, { qos: 2 });
        await pub.publishAsync('q2/down', `d${i}`, { qos: 2 });
      }
      await eventually(() => got.length >= 10 && down.length >= 10, 15_000, 'all messages');
      await delay(500); // a late duplicate would show up now
      assert.deepEqual(got.map((m) => m.payload), Array.from({ length: 10 }, (_, i) => `u${i}`));
      assert.deepEqual(down, Array.from({ length: 10 }, (_, i) => `d${i}`));
      assert.ok(relay.dropped > 5, `the relay dropped ${relay.dropped} datagrams`);
      await pub.endAsync();
      await sub.endAsync();
      sn.destroy();
    } finally {
      relay.close();
      await s.broker.close();
    }
  });

  it('a client that stops answering is retried Nretry times, then lost: its will is published', async () => {
    const s = await setup({ retryInterval: 0.1, maxRetries: 2, predefinedTopics: { 5: 'ping/me' } });
    try {
      const sub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
      const got = collect(sub);
      await sub.subscribeAsync('lost/#', { qos: 1 });
      const peer = await UdpPeer.open(s.snPort);
      peer.send({ type: SnType.CONNECT, will: true, cleanSession: true, protocolId: 1, duration: 0, clientId: 'mute' });
      await peer.next(SnType.WILLTOPICREQ);
      peer.send({ type: SnType.WILLTOPIC, qos: 1, retain: false, topic: 'lost/mute' });
      await peer.next(SnType.WILLMSGREQ);
      peer.send({ type: SnType.WILLMSG, payload: Buffer.from('gone') });
      await peer.next(SnType.CONNACK);
      peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 1, id: 5 } });
      await peer.next(SnType.SUBACK);
      const pub = await mqttClient(s.mqttUrl, { protocolVersion: 5 });
      await pub.publishAsync('ping/me', 'x', { qos: 1 });
      await pub.endAsync();
      await eventually(() => got.length === 1, 3000, 'the will');
      assert.deepEqual(got.map((m) => m.payload), ['gone']);
      const copies = peer.pending().filter((p) => p.type === SnType.PUBLISH) as { dup: boolean }[];
      assert.deepEqual(copies.map((p) => p.dup), [false, true, true], 'sent once, retransmitted twice with DUP');
      peer.close();
      await sub.endAsync();
    } finally {
      await s.broker.close();
    }
  });
});

describe('MQTT-SN over UDP: IPv6 and ADVERTISE', () => {
  it('a listener on ::1 serves MQTT-SN over IPv6', async (t) => {
    let s: Setup;
    try {
      s = await setup({ host: '::1' });
    } catch (err) {
      t.skip(`no IPv6 loopback: ${(err as Error).message}`);
      return;
    }
    try {
      const sn = await snConnect(`mqttsn://[::1]:${s.snPort}`, { clientId: 'v6' });
      assert.equal(s.broker.inspect.connection('v6')?.remoteAddress.startsWith('[::1]:'), true);
      await sn.publish('v6/t', 'x', { qos: 1 });
      await sn.end();
    } finally {
      await s.broker.close();
    }
  });

  it('ADVERTISE goes to advertiseAddress every advertiseInterval (6.1)', async () => {
    const listener = await UdpPeer.open(1);
    const s = await setup({ advertiseInterval: 1, advertiseAddress: `127.0.0.1:${listener.port}`, gatewayId: 7 });
    try {
      const ad = await listener.next(SnType.ADVERTISE, 3000);
      assert.deepEqual(ad, { type: SnType.ADVERTISE, gwId: 7, duration: 1 });
    } finally {
      listener.close();
      await s.broker.close();
    }
  });
});

describe('MQTT-SN over UDP: the broker\'s admission rules apply', () => {
  it('maxConnections of the listener: the next CONNECT gets CONNACK "rejected: congestion"', async () => {
    const s = await setup({ maxConnections: 1 });
    try {
      const first = await snConnect(s.snUrl, { clientId: 'first' });
      await assert.rejects(snConnect(s.snUrl, { clientId: 'second' }), /connection refused by the gateway: rejected: congestion/);
      await first.end();
    } finally {
      await s.broker.close();
    }
  });

  it('allowAnonymous: false refuses MQTT-SN clients (no username in MQTT-SN 1.2) unless the listener allows them', async () => {
    const refused = await setup({}, { allowAnonymous: false });
    try {
      await assert.rejects(snConnect(refused.snUrl, { clientId: 'anon' }), /rejected: not supported/);
    } finally {
      await refused.broker.close();
    }
    const allowed = await setup({ allowAnonymous: true }, { allowAnonymous: false });
    try {
      const sn = await snConnect(allowed.snUrl, { clientId: 'anon' });
      await sn.end();
    } finally {
      await allowed.broker.close();
    }
  });
});

describe('MQTT-SN over UDP: broker shutdown', () => {
  it('closing the broker sends DISCONNECT to every MQTT-SN client', async () => {
    const s = await setup();
    const sn = await snConnect(s.snUrl, { clientId: 'to-be-closed' });
    const closed = new Promise<Error | undefined>((resolve) => sn.once('close', resolve));
    await s.broker.close();
    const err = await closed;
    assert.match(String(err?.message), /disconnected by the gateway/);
  });
});
