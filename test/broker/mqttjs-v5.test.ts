// MQTT 5.0 flows end to end with MQTT.js (protocolVersion 5): request/response, shared subscriptions,
// will properties, topic aliases toward the client.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { IPublishPacket, MqttClient } from 'mqtt';
import { eventually, setup } from '../helpers/harness.js';

function inbox(client: MqttClient): IPublishPacket[] {
  const got: IPublishPacket[] = [];
  client.on('message', (_topic, _payload, packet) => got.push(packet));
  return got;
}

describe('MQTT 5.0 with MQTT.js', () => {
  it('request / response: Response Information, Response Topic and Correlation Data make a round trip', async (t) => {
    const h = await setup(t, { responseInformation: 'reply/%c' });
    const service = await h.mqtt({ clientId: 'service', protocolVersion: 5 });
    await service.subscribeAsync('svc/time', { qos: 1 });
    service.on('message', (_topic, payload, packet) => {
      const p = packet.properties!;
      service.publish(p.responseTopic!, `answer to ${payload.toString()}`, { qos: 1, properties: { correlationData: p.correlationData } });
    });
    const requester = await h.mqtt({ clientId: 'req', protocolVersion: 5, properties: { requestResponseInformation: true } });
    // MQTT.js exposes the CONNACK on the 'connect' event; the broker told us where to listen.
    const info = (requester as unknown as { connackPacket?: { properties?: { responseInformation?: string } } }).connackPacket?.properties?.responseInformation;
    assert.equal(info, 'reply/req');
    const replies = inbox(requester);
    await requester.subscribeAsync(`${info}/#`, { qos: 1 });
    await requester.publishAsync('svc/time', 'q1', { qos: 1, properties: { responseTopic: `${info}/1`, correlationData: Buffer.from('c-1') } });
    await eventually(() => replies.length === 1, 2000, 'the reply');
    assert.equal(replies[0]!.topic, 'reply/req/1');
    assert.equal(replies[0]!.payload.toString(), 'answer to q1');
    assert.equal(replies[0]!.properties?.correlationData?.toString(), 'c-1');
  });

  it('shared subscription: 5.0 and 3.1.1 members share the messages, each delivered once', async (t) => {
    const h = await setup(t);
    const a = await h.mqtt({ clientId: 'a', protocolVersion: 5 });
    const b = await h.mqtt({ clientId: 'b', protocolVersion: 4 });
    const gotA = inbox(a);
    const gotB = inbox(b);
    await a.subscribeAsync('$share/workers/jobs/+', { qos: 1 });
    await b.subscribeAsync('$share/workers/jobs/+', { qos: 1 });
    const pub = await h.mqtt({ clientId: 'p', protocolVersion: 5 });
    for (let i = 0; i < 20; i++) await pub.publishAsync(`jobs/${i}`, String(i), { qos: 1 });
    await eventually(() => gotA.length + gotB.length === 20, 2000, '20 jobs');
    assert.equal(gotA.length, 10);
    assert.equal(gotB.length, 10);
    const all = [...gotA, ...gotB].map((m) => Number(m.payload.toString())).sort((x, y) => x - y);
    assert.deepEqual(all, Array.from({ length: 20 }, (_, i) => i));
  });

  it('will properties travel with the will message', async (t) => {
    const h = await setup(t);
    const watcher = await h.mqtt({ clientId: 'w', protocolVersion: 5 });
    const got = inbox(watcher);
    await watcher.subscribeAsync('wills/#', { qos: 1 });
    const dying = await h.mqtt({
      clientId: 'dying',
      protocolVersion: 5,
      reconnectPeriod: 0,
      will: {
        topic: 'wills/dying',
        payload: Buffer.from('{"state":"gone"}'),
        qos: 1,
        retain: false,
        properties: { contentType: 'application/json', payloadFormatIndicator: true, userProperties: { site: 'north' }, responseTopic: 'ops/ack', correlationData: Buffer.from('w1') },
      },
    });
    (dying as unknown as { stream: { destroy(): void } }).stream.destroy();
    await eventually(() => got.length === 1, 2000, 'the will');
    const p = got[0]!.properties!;
    assert.equal(p.contentType, 'application/json');
    assert.equal(p.payloadFormatIndicator, true);
    assert.deepEqual({ ...p.userProperties }, { site: 'north' });
    assert.equal(p.responseTopic, 'ops/ack');
    assert.equal(p.correlationData?.toString(), 'w1');
  });

  it('topic aliases toward an MQTT.js client that allows them: topics arrive intact', async (t) => {
    const h = await setup(t);
    const sub = await h.mqtt({ clientId: 's', protocolVersion: 5, properties: { topicAliasMaximum: 5 } });
    const got = inbox(sub);
    const topics: string[] = [];
    sub.on('message', (topic) => topics.push(topic));
    await sub.subscribeAsync('al/#', { qos: 0 });
    const pub = await h.mqtt({ clientId: 'p', protocolVersion: 5 });
    for (const topic of ['al/x', 'al/y', 'al/x', 'al/x']) await pub.publishAsync(topic, topic, { qos: 1 });
    await eventually(() => got.length === 4, 2000, '4 messages');
    // MQTT.js resolves the alias for the 'message' topic argument (the raw packet keeps the empty topic).
    assert.deepEqual(topics, ['al/x', 'al/y', 'al/x', 'al/x']);
    assert.deepEqual(got.map((m) => m.payload.toString()), ['al/x', 'al/y', 'al/x', 'al/x']);
    assert.equal(got[2]!.properties?.topicAlias, 1, 'the repeat came as an alias');
  });
});
