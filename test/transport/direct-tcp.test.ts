// The plain-TCP listener runs on libuv handles directly (src/transport/direct-tcp.ts) or on node:net
// (`directSockets: false`, PROXY protocol, a host name). Every rule that depends on the socket layer is
// checked on both: delivery, backpressure, graceful and abrupt closes, admission, listener errors.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Broker } from '../../src/server/broker.js';
import { createBroker } from '../../src/server/broker.js';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import { directTcp } from '../../src/transport/direct-tcp.js';
import { eventually } from '../helpers/wait.js';
import { RawClient } from '../helpers/raw-client.js';
import { connect, end, nextMessage, startLogged, subscribe, type LoggedBroker } from './helpers.js';

describe('socket layer of TCP listeners', () => {
  it('is direct on an IP address and node:net with directSockets: false, PROXY protocol or a host name', async () => {
    assert.ok(directTcp(), 'Node.js 20 has the tcp_wrap and stream_wrap bindings');
    const b = await startLogged({
      listeners: [
        { type: 'tcp', host: '127.0.0.1', port: 0 },
        { type: 'tcp', host: '127.0.0.1', port: 0, directSockets: false },
        { type: 'tcp', host: '127.0.0.1', port: 0, proxyProtocol: true },
        { type: 'tcp', host: 'localhost', port: 0 },
        { type: 'ws', host: '127.0.0.1', port: 0 },
      ],
    });
    try {
      assert.deepEqual(
        b.logged('listening').map((l) => l.sockets),
        ['direct', 'net', 'net', 'net', 'net'],
      );
    } finally {
      await b.broker.close();
    }
  });

  it('a port in use fails like node:net: EADDRINUSE, with the address in the message', async () => {
    const first = createBroker({ host: '127.0.0.1', port: 0 });
    await first.listen();
    const port = first.address().port;
    try {
      for (const directSockets of [true, false]) {
        const second = createBroker({ listeners: [{ type: 'tcp', host: '127.0.0.1', port, directSockets }] });
        await assert.rejects(second.listen(), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'EADDRINUSE');
          assert.match(err.message, new RegExp(`^listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}$`));
          return true;
        });
        await second.close();
      }
    } finally {
      await first.close();
    }
  });
});

for (const directSockets of [true, false]) {
  describe(`TCP listener on ${directSockets ? 'direct handles' : 'node:net'}`, () => {
    let logged: LoggedBroker;
    let broker: Broker;
    let port: number;
    let url: string;
    before(async () => {
      logged = await startLogged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0, directSockets, maxConnections: 4 }] });
      broker = logged.broker;
      port = broker.address().port;
      url = `mqtt://127.0.0.1:${port}`;
      assert.equal(logged.logged('listening')[0]!.sockets, directSockets ? 'direct' : 'net');
    });
    after(() => broker.close());

    it('delivers QoS 0, 1 and 2 and reports the peer address', async () => {
      const sub = await connect(url, { clientId: `sub-${directSockets}` });
      const pub = await connect(url, { clientId: `pub-${directSockets}`, protocolVersion: 5 });
      try {
        await subscribe(sub, 'd/#', 2);
        for (const qos of [0, 1, 2] as const) {
          const got = nextMessage(sub, `d/${qos}`);
          pub.publish(`d/${qos}`, `q${qos}`, { qos });
          assert.equal((await got).payload, `q${qos}`);
        }
        const line = logged.logged('client connected').find((l) => l.clientId === `sub-${directSockets}`);
        assert.match(String(line?.address), /^127\.0\.0\.1:\d+$/);
      } finally {
        await end(sub, pub);
      }
    });

    it('4 MiB to a reader that pauses arrive whole once it reads again (asynchronous writes)', async () => {
      const sub = await connect(url, { clientId: `big-${directSockets}` });
      const pub = await connect(url, { clientId: `bigpub-${directSockets}` });
      try {
        await subscribe(sub, 'big', 1);
        const socket = (sub as unknown as { stream: Socket }).stream;
        socket.pause();
        const payload = Buffer.alloc(256 * 1024, 7);
        for (let i = 0; i < 16; i++) pub.publish('big', payload, { qos: 1 });
        await new Promise((r) => setTimeout(r, 200));
        const got: number[] = [];
        sub.on('message', (_t, p: Buffer) => got.push(p.length));
        socket.resume();
        await eventually(() => got.length === 16, 5000, 'sixteen 256 KiB messages');
        assert.deepEqual(got, Array(16).fill(256 * 1024));
      } finally {
        await end(sub, pub);
      }
    });

    it('QoS 0 from several publishers, held back by maxBytesRate, reaches the subscriber byte for byte (reads are copied out of the shared read buffer)', async () => {
      // The direct layer reads every connection into one buffer. A byte budget (maxBytesRate) holds reads
      // back and hands them on later, after other connections' reads: a read not copied out at once would
      // have been overwritten by then. (A broker of its own: this suite's allows 4 connections.)
      const own = await startLogged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0, directSockets, maxBytesRate: 500 }] });
      const ownPort = own.broker.address().port;
      const { client: sub } = await RawClient.connect(ownPort, { clientId: 'mix-sub' });
      const pubs = await Promise.all([0, 1, 2, 3, 4].map((i) => RawClient.connect(ownPort, { clientId: `mix-${i}` })));
      try {
        sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'mix/+', qos: 0 }] });
        await sub.next(9);
        const perPublisher = 20;
        const sent = new Map<string, string[]>();
        for (const [i, { client }] of pubs.entries()) {
          const payloads = Array.from({ length: perPublisher }, (_, k) => `${i}:${k}:${randomBytes(8).toString('hex')}`);
          sent.set(`mix/${i}`, payloads);
          // One write per publisher: its packets arrive as one read, next to the other publishers'.
          client.sendBytes(Buffer.concat(payloads.map((payload) => encodePacket({ type: 3, topic: `mix/${i}`, payload: Buffer.from(payload), qos: 0, retain: false, dup: false }, 4))));
        }
        await eventually(() => sub.packets.filter((p) => p.type === 3).length === pubs.length * perPublisher, 5000, 'every QoS 0 message');
        const received = new Map<string, string[]>();
        for (const p of sub.packets as PublishPacket[]) received.set(p.topic, [...(received.get(p.topic) ?? []), p.payload.toString()]);
        assert.deepEqual(received, sent);
      } finally {
        sub.destroy();
        for (const { client } of pubs) client.destroy();
        await own.broker.close();
      }
    });

    it('a refused CONNECT gets its CONNACK before the close [MQTT-3.2.2-5]', async () => {
      const client = await RawClient.open(port, 4);
      client.sendBytes([0x10, 0x0d, 0, 4, 0x4d, 0x51, 0x54, 0x54, 2, 2, 0, 0, 0, 1, 0x61]);
      const connack = await client.next(2);
      assert.equal((connack as { reasonCode: number }).reasonCode, 1, 'unacceptable protocol level');
      await client.waitClosed();
    });

    for (const how of ['FIN', 'RST'] as const) {
      it(`a client gone without DISCONNECT (${how}) has its will published [MQTT-3.1.2-8]`, async () => {
        const watcher = await connect(url, { clientId: `watch-${how}-${directSockets}` });
        try {
          await subscribe(watcher, `will/${how}`);
          const { client } = await RawClient.connect(port, { clientId: `dying-${how}`, will: { topic: `will/${how}`, payload: Buffer.from('gone'), qos: 0, retain: false } });
          const will = nextMessage(watcher, `will/${how}`);
          if (how === 'FIN') client.socket.end();
          else client.socket.resetAndDestroy();
          assert.equal((await will).payload, 'gone');
        } finally {
          await end(watcher);
        }
      });
    }

    it('connections far beyond maxConnections are cut at once; the listener keeps serving', async () => {
      // maxConnections 4: up to 4 * 2 + 16 = 24 open sockets are admitted (the extra ones get CONNACK 0x97).
      const sockets: Socket[] = [];
      let closedByBroker = 0;
      for (let i = 0; i < 40; i++) {
        const s = netConnect({ host: '127.0.0.1', port });
        s.on('error', () => {});
        s.on('close', () => closedByBroker++);
        sockets.push(s);
      }
      try {
        await eventually(() => closedByBroker >= 16, 3000, '16 sockets cut');
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(closedByBroker, 16);
      } finally {
        for (const s of sockets) s.destroy();
      }
      await eventually(() => closedByBroker === 40, 3000, 'all closed');
      const c = await connect(url, { clientId: `after-${directSockets}` });
      await end(c);
    });

    it('closing the broker closes open connections', async () => {
      const b = await startLogged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0, directSockets }] });
      const { client } = await RawClient.connect(b.broker.address().port, { clientId: 'open' });
      await b.broker.close();
      await client.waitClosed();
    });
  });
}
