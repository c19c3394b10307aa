// $SYS topics: the broker's counters under Mosquitto's names, published retained every sysInterval seconds.
// The rules on the fake clock; mosquitto_sub reads them over a real socket.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnectPacket, Packet, PubAckLikePacket, PublishPacket } from '../../src/protocol/packets.js';
import { PETREL_VERSION } from '../../src/version.js';
import { startBroker } from '../helpers/broker.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';
import { pub } from '../helpers/packets.js';

const hasMosquittoSub = spawnSync('mosquitto_sub', ['--help']).error === undefined;

function subscribe(c: MemoryConnection, topicFilter: string): void {
  c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter, qos: 0 }] });
  c.take(9);
}

const byTopic = (packets: Packet[]) => Object.fromEntries((packets as PublishPacket[]).map((p) => [p.topic, p.payload.toString()]));

describe('$SYS topics (sysInterval, default 10 s as Mosquitto)', () => {
  it('are published retained at the first tick and then every sysInterval, each value only when it changed', () => {
    const f = new FakeCore({ limits: { sysInterval: 10 } });
    const a = f.connect({ clientId: 'a' });
    a.take(2);
    f.advance(100);
    const s = f.connect({ clientId: 's' });
    s.take(2);
    subscribe(s, '$SYS/#');
    const first = s.take(3) as PublishPacket[];
    assert.ok(first.every((p) => p.retain), 'sent as retained messages on SUBSCRIBE');
    const values = byTopic(first);
    assert.equal(values['$SYS/broker/version'], `petrel version ${PETREL_VERSION}`);
    assert.equal(values['$SYS/broker/clients/connected'], '1', 'one client was connected at the first tick');
    assert.equal(values['$SYS/broker/uptime'], '0 seconds');
    for (const name of ['clients/total', 'clients/maximum', 'clients/disconnected', 'clients/expired', 'subscriptions/count', 'retained messages/count', 'messages/received', 'messages/sent', 'publish/messages/received', 'publish/messages/sent', 'publish/messages/dropped', 'bytes/received', 'bytes/sent']) {
      assert.match(values[`$SYS/broker/${name}`] ?? '', /^\d+$/, name);
    }

    f.advance(5_000);
    assert.deepEqual(s.take(3), [], 'nothing before the interval has passed');
    f.advance(5_000);
    const second = byTopic(s.take(3));
    assert.equal(second['$SYS/broker/clients/connected'], '2');
    assert.equal(second['$SYS/broker/uptime'], '10 seconds');
    assert.equal(second['$SYS/broker/subscriptions/count'], '1');
    assert.equal(second['$SYS/broker/version'], undefined, 'an unchanged value is not published again');
    assert.equal(second['$SYS/broker/clients/expired'], undefined);
  });

  it('count bytes and packets both ways, PUBLISHes, and sessions that expired', () => {
    const f = new FakeCore({ limits: { sysInterval: 1 } });
    const packets: Packet[] = [
      { type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'p', properties: { sessionExpiryInterval: 2 } } as ConnectPacket,
      pub('t', 'hello', { qos: 1, packetId: 1 }),
      pub('t', 'again'),
    ];
    const p = f.open(5);
    for (const packet of packets) p.send(packet);
    const stats = f.inspect.stats();
    assert.equal(stats.bytesReceived, packets.reduce((n, packet) => n + encodePacket(packet, 5).length, 0));
    assert.equal(stats.packetsReceived, 3);
    assert.equal(stats.publishReceived, 2);
    assert.equal(stats.packetsSent, 2, 'CONNACK and PUBACK');
    assert.equal(stats.bytesSent, p.received.reduce((n, packet) => n + encodePacket(packet, 5).length, 0));
    p.drop();
    f.advance(3_000);
    assert.equal(f.inspect.stats().sessionsExpired, 1);
    const s = f.connect({ clientId: 's' });
    subscribe(s, '$SYS/broker/clients/expired');
    assert.deepEqual(byTopic(s.take(3)), { '$SYS/broker/clients/expired': '1' });
  });

  it('[MQTT-4.7.2-1] are not matched by # or +/...; a client PUBLISH to $SYS/... is refused (5.0: 0x87) and kept nowhere', () => {
    const f = new FakeCore({ limits: { sysInterval: 10 } });
    f.advance(100);
    const all = f.connect({ clientId: 'all', protocolVersion: 5 });
    all.take(2);
    subscribe(all, '#');
    subscribe(all, '+/broker/#');
    assert.deepEqual(all.take(3), []);
    const faker = f.connect({ clientId: 'faker', protocolVersion: 5 });
    faker.take(2);
    const sys = f.connect({ clientId: 'sys', protocolVersion: 5 });
    sys.take(2);
    subscribe(sys, '$SYS/#');
    sys.take(3);
    faker.send(pub('$SYS/broker/clients/connected', '9999', { qos: 1, packetId: 1, retain: true }));
    assert.equal((faker.take(4)[0] as PubAckLikePacket).reasonCode, 0x87);
    assert.deepEqual(sys.take(3), []);
    f.advance(10_000);
    assert.equal(byTopic(sys.take(3))['$SYS/broker/clients/connected'], '3');
  });

  it('sysInterval 0: no $SYS topics, and $SYS/ is an ordinary topic tree', () => {
    const f = new FakeCore({ limits: { sysInterval: 0 } });
    const s = f.connect({ clientId: 's', protocolVersion: 5 });
    s.take(2);
    subscribe(s, '$SYS/#');
    f.advance(20_000);
    assert.deepEqual(s.take(3), []);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.take(2);
    p.send(pub('$SYS/app/status', 'up', { qos: 1, packetId: 1 }));
    assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode ?? 0, 0);
    assert.deepEqual(byTopic(s.take(3)), { '$SYS/app/status': 'up' });
  });

  it('mosquitto_sub reads them from a real broker', { skip: hasMosquittoSub ? false : 'mosquitto_sub (mosquitto-clients) not installed' }, async () => {
    const { broker, port } = await startBroker({ sysInterval: 1 });
    try {
      const { stdout } = await promisify(execFile)('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', '$SYS/broker/version', '-t', '$SYS/broker/clients/connected', '-C', '2', '-v', '-W', '5'], { timeout: 10_000 });
      const lines = stdout.trim().split('\n').sort();
      // 0 when the first tick ran before mosquitto_sub connected, 1 when after.
      assert.match(lines[0]!, /^\$SYS\/broker\/clients\/connected [01]$/);
      assert.equal(lines[1], `$SYS/broker/version petrel version ${PETREL_VERSION}`);
    } finally {
      await broker.close();
    }
  });
});
