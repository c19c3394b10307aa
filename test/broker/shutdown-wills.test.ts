// Wills at shutdown (issue 24, defect 2). A server-initiated disconnect publishes the will (MQTT 3.1.2.5:
// "the Network Connection is closed by the Server"), so broker.close() publishes the will of every live
// connection, and those waiting out a Will Delay, before it closes any connection: every subscriber that is
// connected at shutdown gets the same set, whether it connected first or last.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { startBroker } from '../helpers/broker.js';
import { eventually } from '../helpers/wait.js';
import type { BrokerOptions } from '../../src/index.js';

const WILLS = 300;

/** Wills received by `c` until its connection closes. */
async function willsUntilClosed(c: RawClient): Promise<Set<string>> {
  await eventually(() => c.closed, 10_000, 'the monitor to be disconnected');
  return new Set(c.packets.filter((p) => p.type === 3).map((p) => (p as PublishPacket).payload.toString()));
}

async function shutdownWith(options: BrokerOptions, version: 4 | 5): Promise<{ first: Set<string>; last: Set<string>; reported: number }> {
  const { broker, port } = await startBroker(options);
  const monitor = async (clientId: string) => {
    const { client: c } = await RawClient.connect(port, { clientId, protocolVersion: version });
    c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'wills/#', qos: 1 }] });
    await c.next(9);
    return c;
  };
  const first = await monitor('monitor-first');
  const clients: RawClient[] = [];
  for (let i = 0; i < WILLS; i++) {
    const will = { topic: `wills/${i}`, payload: Buffer.from(String(i)), qos: (i % 2) as 0 | 1, retain: false };
    clients.push((await RawClient.connect(port, { clientId: `dying-${i}`, protocolVersion: version, will })).client);
  }
  const last = await monitor('monitor-last');
  let reported = 0;
  broker.on('clientDisconnected', (client, info) => {
    if (client?.clientId.startsWith('dying-') && info.willPublished) reported++;
  });
  await broker.close();
  for (const c of clients) c.destroy();
  return { first: await willsUntilClosed(first), last: await willsUntilClosed(last), reported };
}

describe('wills at shutdown', () => {
  for (const version of [4, 5] as const) {
    it(`MQTT ${version === 5 ? '5.0' : '3.1.1'}: a monitor connected first and one connected last both get all ${WILLS} wills (QoS 0 and 1) before their DISCONNECT`, async () => {
      const { first, last, reported } = await shutdownWith({}, version);
      assert.equal(first.size, WILLS, 'the monitor connected before every dying client');
      assert.equal(last.size, WILLS, 'the monitor connected after them');
      assert.equal(reported, WILLS, 'each disconnect event says its will was published');
    });
  }

  it('with an asynchronous authorizePublish hook the wills are still published before any connection closes', async () => {
    const { first, last } = await shutdownWith({ authorizePublish: async () => true }, 5);
    assert.equal(first.size, WILLS);
    assert.equal(last.size, WILLS);
  });

  it('a will the hook refuses is not published at shutdown either', async () => {
    const { first } = await shutdownWith({ authorizePublish: (_c, m) => !m.topic.endsWith('/7') }, 4);
    assert.equal(first.size, WILLS - 1);
    assert.equal(first.has('7'), false);
  });
});
