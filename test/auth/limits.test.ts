import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBucket } from '../../src/auth/limits.js';
import type { ConnackPacket } from '../../src/protocol/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { connect, end, startLogged, subscribe } from '../transport/helpers.js';

const tcp = (extra: Record<string, unknown> = {}) => ({ type: 'tcp' as const, host: '127.0.0.1', port: 0, ...extra });

describe('limits and bans', () => {
  it('token bucket', () => {
    const b = new TokenBucket(10, 2, 0);
    assert.equal(b.take(0), true);
    assert.equal(b.take(0), true);
    assert.equal(b.take(0), false);
    assert.equal(b.take(100), true); // 1 token per 100 ms
    assert.equal(b.consume(100, 25), 2500);
  });

  it('maxConnections: the connection over the limit gets CONNACK 0x97 (5.0) / 3 (3.1.1)', async () => {
    const { broker, logged } = await startLogged({ listeners: [tcp({ maxConnections: 2 })] });
    try {
      const port = broker.address().port;
      const a = await RawClient.connect(port, { protocolVersion: 5, clientId: 'a' });
      const b = await RawClient.connect(port, { protocolVersion: 5, clientId: 'b' });
      const c = await RawClient.connect(port, { protocolVersion: 5, clientId: 'c' });
      const d = await RawClient.connect(port, { protocolVersion: 4, clientId: 'd' });
      assert.deepEqual([a, b, c, d].map((x) => (x.connack as ConnackPacket).reasonCode), [0, 0, 0x97, 3]);
      assert.equal(logged('maxConnections').length, 2);
      a.client.destroy();
      await a.client.waitClosed();
      await c.client.waitClosed();
      await d.client.waitClosed();
      await new Promise((r) => setTimeout(r, 20));
      const e = await RawClient.connect(port, { protocolVersion: 5, clientId: 'e' });
      assert.equal((e.connack as ConnackPacket).reasonCode, 0, 'a slot is free again');
      b.client.destroy();
      e.client.destroy();
    } finally {
      await broker.close();
    }
  });

  it('maxConnectionRate: CONNACK 0x9F above the rate', async () => {
    const { broker } = await startLogged({ listeners: [tcp({ maxConnectionRate: 2 })] });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 3; i++) {
        const { client, connack } = await RawClient.connect(broker.address().port, { protocolVersion: 5, clientId: `r${i}` });
        codes.push((connack as ConnackPacket).reasonCode);
        client.destroy();
      }
      assert.deepEqual(codes, [0, 0, 0x9f]);
    } finally {
      await broker.close();
    }
  });

  it('ban list: Client ID, username and address get 0x8A (5.0) / 5 (3.1.1); runtime bans too', async () => {
    const { broker } = await startLogged({
      listeners: [tcp()],
      bans: { clientIds: ['bad-id'], usernames: ['bad-user'], addresses: ['10.0.0.0/8'] },
    });
    try {
      const port = broker.address().port;
      const code = async (connect: { clientId: string; username?: string; protocolVersion?: 4 | 5 }) => {
        const { client, connack } = await RawClient.connect(port, { protocolVersion: 5, ...connect });
        client.destroy();
        return (connack as ConnackPacket).reasonCode;
      };
      assert.equal(await code({ clientId: 'bad-id' }), 0x8a);
      assert.equal(await code({ clientId: 'x', username: 'bad-user' }), 0x8a);
      assert.equal(await code({ clientId: 'bad-id', protocolVersion: 4 }), 5);
      assert.equal(await code({ clientId: 'fine' }), 0);
      broker.security.bans.add({ addresses: ['127.0.0.0/8'] });
      assert.equal(await code({ clientId: 'fine' }), 0x8a);
      broker.security.bans.remove({ addresses: ['127.0.0.0/8'] });
      assert.equal(await code({ clientId: 'fine' }), 0);
    } finally {
      await broker.close();
    }
  });

  it('maxPublishRate: DISCONNECT 0x96 when a client publishes too fast', async () => {
    const { broker } = await startLogged({ listeners: [tcp()], maxPublishRate: 5, publishBurst: 5 });
    try {
      const { client } = await RawClient.connect(broker.address().port, { protocolVersion: 5, clientId: 'fast' });
      for (let i = 1; i <= 5; i++) client.send({ type: 3, topic: 't', payload: Buffer.from('x'), qos: 1, packetId: i, retain: false, dup: false });
      for (let i = 1; i <= 5; i++) await client.next(4);
      client.send({ type: 3, topic: 't', payload: Buffer.from('x'), qos: 1, packetId: 6, retain: false, dup: false });
      const d = (await client.next(14)) as { reasonCode?: number };
      assert.equal(d.reasonCode, 0x96);
      await client.waitClosed();
    } finally {
      await broker.close();
    }
  });

  for (const directSockets of [true, false]) {
    it(`maxBytesRate throttles reading from a client (no disconnect), ${directSockets ? 'direct handles' : 'node:net'}`, async () => {
      const { broker } = await startLogged({ listeners: [tcp({ maxBytesRate: 4000, directSockets })] });
      try {
        const port = broker.address().port;
        const sub = await connect(`mqtt://127.0.0.1:${port}`);
        await subscribe(sub, 'bulk');
        let received = 0;
        sub.on('message', () => received++);
        const pub = await connect(`mqtt://127.0.0.1:${port}`);
        for (let i = 0; i < 20; i++) pub.publish('bulk', Buffer.alloc(1000)); // 20 kB at 4 kB/s
        await new Promise((r) => setTimeout(r, 300));
        // One second of burst (4 kB) plus 0.3 s at 4 kB/s, with slack for the first read.
        assert.ok(received >= 3 && received <= 9, `received ${received}`);
        assert.equal(pub.connected, true);
        await end(sub, pub);
      } finally {
        await broker.close();
      }
    });
  }

  it('maxInflight bounds unacknowledged QoS 1 messages sent to a client', async () => {
    const { broker } = await startLogged({ listeners: [tcp()], maxInflight: 2 });
    try {
      const { client } = await RawClient.connect(broker.address().port, { protocolVersion: 4, clientId: 'slow' });
      client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'q', qos: 1 }] });
      await client.next(9);
      for (let i = 0; i < 5; i++) broker.publish('q', String(i), { qos: 1 });
      const first = await client.collect(100, 3);
      assert.equal(first.length, 2);
      client.send({ type: 4, packetId: (first[0] as { packetId: number }).packetId });
      const more = await client.collect(100, 3);
      assert.equal(more.length, 1);
      client.destroy();
    } finally {
      await broker.close();
    }
  });

  it('per-listener allowAnonymous', async () => {
    const { broker } = await startLogged({ allowAnonymous: true, listeners: [tcp({ allowAnonymous: false }), tcp()] });
    try {
      const a = await RawClient.connect(broker.address(0).port, { protocolVersion: 5, clientId: 'anon' });
      const b = await RawClient.connect(broker.address(1).port, { protocolVersion: 5, clientId: 'anon2' });
      assert.equal((a.connack as ConnackPacket).reasonCode, 0x87);
      assert.equal((b.connack as ConnackPacket).reasonCode, 0);
      a.client.destroy();
      b.client.destroy();
    } finally {
      await broker.close();
    }
  });
});
