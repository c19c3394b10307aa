// SCRAM-SHA-256 over a real broker: the exchange runs through the same admission checks as passwords.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScramClient, scramCredentials, scramSha256 } from '../../src/auth/scram.js';
import type { AuthPacket, ConnackPacket } from '../../src/protocol/packets.js';
import { startBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';

const users = new Map([
  ['alice', scramCredentials('wonderland', undefined, 1000)],
  ['bob', scramCredentials('builder', undefined, 1000)],
]);

async function scramConnect(port: number, user: string, password: string) {
  const scram = new ScramClient(user, password);
  const client = await RawClient.open(port, 5);
  client.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: `c-${user}`, properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: scram.first() } });
  const challenge = (await client.next(15)) as AuthPacket;
  client.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: scram.final(challenge.properties!.authenticationData!) } });
  const connack = (await client.next(2)) as ConnackPacket;
  return { client, connack, scram };
}

describe('SCRAM-SHA-256 on a broker with security settings', () => {
  it('authenticates over TCP, and a banned user name is refused with 0x8A after the exchange', async (t) => {
    const { broker, port } = await startBroker({ authMethods: [scramSha256((u) => users.get(u))], allowAnonymous: false, bans: { usernames: ['bob'] } });
    t.after(() => broker.close());
    const alice = await scramConnect(port, 'alice', 'wonderland');
    t.after(() => alice.client.destroy());
    assert.equal(alice.connack.reasonCode, 0);
    assert.ok(alice.scram.verify(alice.connack.properties?.authenticationData));
    const bob = await scramConnect(port, 'bob', 'builder');
    t.after(() => bob.client.destroy());
    assert.equal(bob.connack.reasonCode, 0x8a);
    await bob.client.waitClosed();
  });

  it('with allowAnonymous false, a SCRAM client needs no CONNECT user name, but a wrong password is refused', async (t) => {
    const { broker, port } = await startBroker({ authMethods: [scramSha256((u) => users.get(u))], allowAnonymous: false });
    t.after(() => broker.close());
    const bad = await scramConnect(port, 'alice', 'nope');
    t.after(() => bad.client.destroy());
    assert.equal(bad.connack.reasonCode, 0x86);
  });
});
