// authorizeSubscribe, alone and combined with the ACL; retained messages never reach a client the ACL
// keeps from their topic.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { startBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';

async function suback(c: RawClient, ...filters: string[]): Promise<number[]> {
  c.send({ type: 8, packetId: 1, subscriptions: filters.map((topicFilter) => ({ topicFilter, qos: 2 as const })) });
  return ((await c.next(9)) as SubackPacket).reasonCodes;
}

describe('authorizeSubscribe and the ACL', () => {
  it('the hook grants (true), downgrades (a QoS), refuses (false → 0x80 / 0x87) and may answer asynchronously', async (t) => {
    const { broker, port } = await startBroker({
      authorizeSubscribe: async (_client, { topicFilter }) => (topicFilter.startsWith('deny/') ? false : topicFilter.startsWith('q0/') ? 0 : true),
    });
    t.after(() => broker.close());
    for (const protocolVersion of [4, 5] as const) {
      const { client } = await RawClient.connect(port, { clientId: `s${protocolVersion}`, protocolVersion });
      t.after(() => client.destroy());
      assert.deepEqual(await suback(client, 'ok/x', 'q0/x', 'deny/x'), [2, 0, protocolVersion === 5 ? 0x87 : 0x80]);
    }
    assert.equal(broker.inspect.counts().subscriptions, 4, 'only the granted subscriptions were made');
  });

  it('combined with the ACL: both must allow; the ACL is asked first', async (t) => {
    const asked: string[] = [];
    const { broker, port } = await startBroker({
      acl: { default: 'allow', rules: [{ permission: 'deny', action: 'subscribe', topic: 'acl/#' }] },
      authorizeSubscribe: (_c, { topicFilter }) => {
        asked.push(topicFilter);
        return topicFilter !== 'hook/no';
      },
    });
    t.after(() => broker.close());
    const { client } = await RawClient.connect(port, { clientId: 'both', protocolVersion: 5 });
    t.after(() => client.destroy());
    assert.deepEqual(await suback(client, 'acl/x', 'hook/no', 'fine'), [0x87, 0x87, 2]);
    assert.deepEqual(asked, ['hook/no', 'fine'], 'the hook is not asked about what the ACL already denied');
  });

  it('a retained message on a denied topic is not delivered through a wider subscription (default: the wide filter is granted, the denied topic filtered out)', async (t) => {
    const { broker, port } = await startBroker({
      acl: { default: 'allow', rules: [{ permission: 'deny', action: 'subscribe', topic: 'site/secret' }] },
    });
    t.after(() => broker.close());
    broker.publish('site/secret', 'hidden', { retain: true });
    broker.publish('site/public', 'shown', { retain: true });
    const { client } = await RawClient.connect(port, { clientId: 'wide', protocolVersion: 5 });
    t.after(() => client.destroy());
    assert.deepEqual(await suback(client, 'site/#'), [2], 'granted, as Mosquitto grants it');
    let got = (await client.collect(100, 3)) as PublishPacket[];
    assert.deepEqual(got.map((m) => m.payload.toString()), ['shown'], 'the retained message on the denied topic is not sent');
    broker.publish('site/secret', 'live secret');
    broker.publish('site/public', 'live public');
    got = (await client.collect(100, 3)) as PublishPacket[];
    assert.deepEqual(got.map((m) => m.payload.toString()), ['live public'], 'nor a live one');
  });

  it('strictSubscribe: a wider subscription that overlaps a denied topic is refused whole', async (t) => {
    const { broker, port } = await startBroker({
      acl: { default: 'allow', strictSubscribe: true, rules: [{ permission: 'deny', action: 'subscribe', topic: 'site/secret' }] },
    });
    t.after(() => broker.close());
    broker.publish('site/secret', 'hidden', { retain: true });
    broker.publish('site/public', 'shown', { retain: true });
    const { client } = await RawClient.connect(port, { clientId: 'wide', protocolVersion: 5 });
    t.after(() => client.destroy());
    assert.deepEqual(await suback(client, 'site/#'), [0x87], 'the wide filter overlaps the denied topic: refused');
    assert.deepEqual(await suback(client, 'site/public'), [2]);
    const got = (await client.collect(100, 3)) as PublishPacket[];
    assert.deepEqual(got.map((m) => m.payload.toString()), ['shown']);
  });
});
