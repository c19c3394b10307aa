import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it, type TestContext } from 'node:test';
import { WebSocket } from 'ws';
import type { Broker } from '../../src/server/broker.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import type { DisconnectPacket, Packet } from '../../src/protocol/packets.js';
import { hasCommand } from '../helpers/certs.js';
import { collect, connect, end, nextMessage, startLogged, subscribe } from './helpers.js';

describe('TCP and WebSocket listeners', () => {
  let broker: Broker;
  let tcp: number;
  let ws: number;
  before(async () => {
    ({ broker } = await startLogged({
      maxPacketSize: 4096,
      listeners: [
        { type: 'tcp', host: '127.0.0.1', port: 0 },
        { type: 'ws', host: '127.0.0.1', port: 0 },
        { type: 'ws', host: '127.0.0.1', port: 0, path: '/custom' },
        { type: 'ws', host: '127.0.0.1', port: 0, path: '*' },
      ],
    }));
    tcp = broker.address(0).port;
    ws = broker.address(1).port;
  });
  after(() => broker.close());

  it('MQTT.js over TCP and over WebSocket exchange messages', async () => {
    const a = await connect(`mqtt://127.0.0.1:${tcp}`, { clientId: 'tcp-1' });
    const b = await connect(`ws://127.0.0.1:${ws}/mqtt`, { clientId: 'ws-1', protocolVersion: 5 });
    try {
      await subscribe(b, 'x/ws');
      await subscribe(a, 'x/tcp');
      const toWs = nextMessage(b, 'x/ws');
      a.publish('x/ws', 'from tcp', { qos: 1 });
      assert.equal((await toWs).payload, 'from tcp');
      const toTcp = nextMessage(a, 'x/tcp');
      b.publish('x/tcp', 'from ws', { qos: 2 });
      assert.equal((await toTcp).payload, 'from ws');
    } finally {
      await end(a, b);
    }
  });

  it('MQTT 3.1 over WebSocket with the mqttv3.1 subprotocol', async () => {
    const c = await connect(`ws://127.0.0.1:${ws}/mqtt`, { clientId: 'ws-31', protocolVersion: 3, protocolId: 'MQIsdp' });
    try {
      await subscribe(c, 'v31');
      const got = nextMessage(c, 'v31');
      c.publish('v31', 'hello');
      assert.equal((await got).payload, 'hello');
    } finally {
      await end(c);
    }
  });

  it('uses the configured path', async () => {
    const c = await connect(`ws://127.0.0.1:${broker.address(2).port}/custom`);
    await end(c);
    await assert.rejects(connect(`ws://127.0.0.1:${broker.address(2).port}/mqtt`));
    const status = await new Promise<number | undefined>((resolve) => {
      const w = new WebSocket(`ws://127.0.0.1:${broker.address(2).port}/mqtt`, 'mqtt');
      w.on('unexpected-response', (_req, res) => {
        resolve(res.statusCode);
        res.destroy();
      });
      w.on('open', () => resolve(101));
      w.on('error', () => {});
    });
    assert.equal(status, 404, 'another path is answered 404');
  });

  it('path "*" answers on any URL path, as Mosquitto does', async () => {
    const port = broker.address(3).port;
    for (const path of ['/', '/mqtt', '/ws', '/a/b?token=x']) {
      const c = await connect(`ws://127.0.0.1:${port}${path}`, { clientId: `any-path-${path.length}` });
      await end(c);
    }
  });

  /** A raw WebSocket: frames in, decoded packets out. */
  async function rawWs(protocols: string | string[] = 'mqtt', path = '/mqtt', protocolVersion: 4 | 5 = 4) {
    const sock = new WebSocket(`ws://127.0.0.1:${ws}${path}`, protocols);
    const packets: Packet[] = [];
    const decoder = new PacketDecoder({ protocolVersion, role: 'client' });
    sock.on('message', (data: Buffer) => decoder.feed(data, (p) => packets.push(p)));
    await new Promise<void>((resolve, reject) => {
      sock.once('open', () => resolve());
      sock.once('error', reject);
    });
    const waitFor = async (type: number) => {
      const deadline = Date.now() + 2000;
      for (;;) {
        const i = packets.findIndex((p) => p.type === type);
        if (i >= 0) return packets.splice(i, 1)[0]!;
        if (Date.now() > deadline) throw new Error(`no packet ${type}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    return { sock, packets, waitFor };
  }

  const connectBytes = (clientId: string) =>
    encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId }, 4);

  it('a 3.1 client offering only mqttv3.1 gets that subprotocol and is served', async () => {
    const { sock, waitFor } = await rawWs(['mqttv3.1']);
    try {
      assert.equal(sock.protocol, 'mqttv3.1');
      sock.send(encodePacket({ type: 1, protocolName: 'MQIsdp', protocolVersion: 3, clean: true, keepAlive: 0, clientId: 'v31raw' }, 3), { binary: true });
      const connack = (await waitFor(2)) as { reasonCode: number };
      assert.equal(connack.reasonCode, 0);
    } finally {
      sock.close();
    }
  });

  it('answers the mqtt subprotocol and reassembles packets split across frames', async () => {
    const { sock, waitFor } = await rawWs(['mqtt']);
    assert.equal(sock.protocol, 'mqtt');
    const bytes = connectBytes('split');
    for (const b of bytes) sock.send(Buffer.from([b]), { binary: true }); // one byte per frame
    const connack = await waitFor(2);
    assert.equal((connack as { reasonCode: number }).reasonCode, 0);
    sock.close();
  });

  it('handles several packets in one frame', async () => {
    const { sock, waitFor } = await rawWs('mqtt');
    const frame = Buffer.concat([
      connectBytes('multi'),
      encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'multi/t', qos: 0 }] }, 4),
      encodePacket({ type: 3, topic: 'multi/t', payload: Buffer.from('p'), qos: 0, retain: false, dup: false }, 4),
      encodePacket({ type: 12 }, 4),
    ]);
    sock.send(frame, { binary: true });
    await waitFor(2);
    await waitFor(9);
    const pub = (await waitFor(3)) as { topic: string };
    assert.equal(pub.topic, 'multi/t');
    await waitFor(13);
    sock.close();
  });

  it('refuses other subprotocols (400) and other paths (404)', async () => {
    await assert.rejects(rawWs('chat'), /400/);
    await assert.rejects(rawWs('mqtt', '/nope'), /404/);
  });

  it('answers ping with pong', async () => {
    const { sock } = await rawWs();
    const pong = new Promise<Buffer>((resolve) => sock.once('pong', resolve));
    sock.ping(Buffer.from('hi'));
    assert.equal((await pong).toString(), 'hi');
    sock.close();
  });

  it('closes on a text frame (1003) and on a frame more than 1 MiB above maxPacketSize (1009)', async () => {
    const a = await rawWs();
    const closedA = new Promise<number>((resolve) => a.sock.once('close', resolve));
    a.sock.send('text');
    assert.equal(await closedA, 1003);
    const b = await rawWs();
    const closedB = new Promise<number>((resolve) => b.sock.once('close', resolve));
    b.sock.send(Buffer.alloc(4096 + 1024 * 1024 + 1), { binary: true });
    assert.equal(await closedB, 1009);
  });

  it('a packet above maxPacketSize inside a frame below the frame limit is DISCONNECT 0x95 (5.0)', async () => {
    const { sock, waitFor, packets } = await rawWs('mqtt', '/mqtt', 5);
    sock.send(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'big5' }, 5));
    await waitFor(2);
    const closed = new Promise<number>((resolve) => sock.once('close', resolve));
    sock.send(encodePacket({ type: 3, topic: 'big', payload: Buffer.alloc(5000), qos: 0, retain: false, dup: false }, 5));
    await closed;
    const disconnect = packets.find((p) => p.type === 14) as DisconnectPacket | undefined;
    assert.equal(disconnect?.reasonCode, 0x95);
  });

  it('sends a normal close (1000) after a DISCONNECT', async () => {
    const { sock, waitFor } = await rawWs();
    sock.send(connectBytes('bye'));
    await waitFor(2);
    const closed = new Promise<number>((resolve) => sock.once('close', resolve));
    sock.send(encodePacket({ type: 14 }, 4));
    assert.equal(await closed, 1000);
  });

  it('batches the packets of one event-loop turn into one WebSocket frame', async () => {
    const { sock, waitFor } = await rawWs();
    let frames = 0;
    sock.on('message', () => frames++);
    sock.send(connectBytes('batch'));
    await waitFor(2);
    const pub = await connect(`mqtt://127.0.0.1:${tcp}`);
    sock.send(encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'batch/#', qos: 0 }] }, 4));
    await waitFor(9);
    frames = 0;
    broker.publish('batch/1', 'a');
    broker.publish('batch/2', 'b');
    broker.publish('batch/3', 'c');
    await waitFor(3);
    await waitFor(3);
    await waitFor(3);
    assert.equal(frames, 1);
    sock.close();
    await end(pub);
  });

  it('mosquitto_pub and mosquitto_sub over TCP', async (t: TestContext) => {
    if (!hasCommand('mosquitto_sub') || !hasCommand('mosquitto_pub')) {
      t.skip('mosquitto-clients not installed');
      return;
    }
    const watcher = await connect(`ws://127.0.0.1:${ws}/mqtt`);
    await subscribe(watcher, 'mosq/#');
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(tcp), '-t', 'mosq/in', '-C', '1', '-W', '5', '-i', 'mosq-sub']);
    let out = '';
    sub.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const subDone = new Promise<number | null>((resolve) => sub.on('close', resolve));
    // Wait until the subscription exists, then publish with mosquitto_pub.
    await new Promise<void>((resolve) => broker.on('subscribed', (c) => c.clientId === 'mosq-sub' && resolve()));
    const got = nextMessage(watcher, 'mosq/in');
    const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(tcp), '-t', 'mosq/in', '-m', 'from mosquitto_pub', '-q', '1']);
    const pubCode = await new Promise<number | null>((resolve) => pub.on('close', resolve)); // attached before the process can exit
    assert.equal(pubCode, 0);
    assert.equal((await got).payload, 'from mosquitto_pub');
    const subCode = await subDone;
    assert.equal(subCode, 0);
    assert.equal(out.trim(), 'from mosquitto_pub');
    assert.deepEqual(await collect(watcher, 20), []);
    await end(watcher);
  });
});
