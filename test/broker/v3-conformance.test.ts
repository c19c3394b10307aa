// MQTT 3.1 (IBM) / 3.1.1 (OASIS) broker behaviour over real TCP: edge cases not covered by the other
// broker tests, and interoperability with mosquitto_pub / mosquitto_sub and Python paho-mqtt.
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { Packet, PublishPacket, SubackPacket, WillMessage } from '../../src/protocol/packets.js';
import { delay, eventually, packet, payloads, publishes, quietPublishes, setup, str } from '../helpers/harness.js';
import type { RawClient } from '../helpers/raw-client.js';

const run = promisify(execFile);
const will = (topic: string, payload = 'bye', qos: 0 | 1 | 2 = 0, retain = false): WillMessage => ({ topic, payload: Buffer.from(payload), qos, retain });

async function disconnect(c: RawClient): Promise<void> {
  c.send({ type: 14 });
  await c.waitClosed();
}

describe('MQTT 3.1 (IBM) specifics', () => {
  it('3.1 Client Identifier: 1 to 23 characters accepted, 24 refused with CONNACK 0x02 (default limits)', async (t) => {
    const h = await setup(t);
    const ok = await h.connect({ clientId: 'x'.repeat(23), protocolVersion: 3 });
    assert.equal(ok.connack.reasonCode, 0);
    const long = await h.connect({ clientId: 'y'.repeat(24), protocolVersion: 3 });
    assert.equal(long.connack.reasonCode, 0x02, '3.1: "If the Client ID contains more than 23 characters, the server responds with CONNACK return code 2"');
    await long.client.waitClosed();
  });

  it('3.1 CONNACK: the first variable header byte is reserved (0) even when a stored session is resumed', async (t) => {
    const h = await setup(t);
    const a = await h.connected({ clientId: 'v31-sp', clean: false, protocolVersion: 3 });
    await disconnect(a);
    const { client } = await h.connect({ clientId: 'v31-sp', clean: false, protocolVersion: 3 });
    assert.equal(h.events.clientConnected.at(-1)?.[1].sessionPresent, true, 'the session was resumed');
    // RawClient decodes the CONNACK; read the byte itself from a fresh raw exchange too.
    await disconnect(client);
    const raw = await h.open(3);
    const bytes: Buffer[] = [];
    raw.socket.on('data', (b: Buffer) => bytes.push(b));
    raw.send({ type: 1, protocolName: 'MQIsdp', protocolVersion: 3, clean: false, keepAlive: 0, clientId: 'v31-sp' });
    await eventually(() => Buffer.concat(bytes).length >= 4);
    assert.deepEqual([...Buffer.concat(bytes).subarray(0, 4)], [0x20, 0x02, 0x00, 0x00]);
  });

  it('3.1 DUP flag on a resent PUBREL / SUBSCRIBE / UNSUBSCRIBE is allowed (3.1 §2.1 DUP)', async (t) => {
    const h = await setup(t);
    const sub = await h.subscriber('d31/#', 2);
    const c = await h.connected({ clientId: 'dup31', protocolVersion: 3 });
    c.send({ type: 3, topic: 'd31/x', payload: Buffer.from('q2'), qos: 2, packetId: 5, retain: false, dup: false });
    await c.next(5);
    c.sendBytes([0x6a, 0x02, 0x00, 0x05]); // PUBREL, DUP=1, QoS 1
    assert.equal(((await c.next(7)) as { packetId: number }).packetId, 5);
    c.sendBytes(packet(0x8a, [0x00, 0x06, ...str('d31/y'), 0x01])); // SUBSCRIBE, DUP=1
    assert.deepEqual(((await c.next(9)) as SubackPacket).reasonCodes, [1]);
    c.sendBytes(packet(0xaa, [0x00, 0x07, ...str('d31/y')])); // UNSUBSCRIBE, DUP=1
    await c.next(11);
    assert.equal(c.closed, false);
    assert.deepEqual(payloads(await publishes(sub, 1)), ['q2']);
  });

  it('3.1 keep alive expiry publishes the retained will; live subscribers get RETAIN 0, later ones RETAIN 1', async (t) => {
    const h = await setup(t);
    const live = await h.subscriber('st31/#', 2, { protocolVersion: 3 });
    const c = await h.connected({ clientId: 'ka31', protocolVersion: 3, keepAlive: 1, will: will('st31/ka31', 'offline', 2, true) });
    const start = Date.now();
    await c.waitClosed(3000);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 1000 && elapsed < 2600, `closed after ${elapsed} ms`);
    const [p] = await publishes(live, 1);
    assert.deepEqual([p!.topic, p!.payload.toString(), p!.qos, p!.retain], ['st31/ka31', 'offline', 2, false]);
    const late = await h.subscriber('st31/#', 1);
    const [r] = await publishes(late, 1);
    assert.deepEqual([r!.payload.toString(), r!.qos, r!.retain], ['offline', 1, true]);
  });
});

describe('QoS 2 exactly once across reconnects and takeovers', () => {
  it('[MQTT-4.3.3] publisher reconnects (clean 0) after PUBREC: its PUBREL alone completes the flow; delivered once', async (t) => {
    const h = await setup(t);
    const sub = await h.subscriber('x2/#', 2);
    const a = await h.connected({ clientId: 'pub2', clean: false });
    a.send({ type: 3, topic: 'x2/a', payload: Buffer.from('once'), qos: 2, packetId: 77, retain: false, dup: false });
    await a.next(5);
    a.destroy();
    await eventually(() => !h.broker.inspect.isConnected('pub2'));
    const { client: b, connack } = await h.connect({ clientId: 'pub2', clean: false });
    assert.equal(connack.sessionPresent, true);
    b.send({ type: 6, packetId: 77 });
    assert.equal(((await b.next(7)) as { packetId: number }).packetId, 77);
    // The id is free again: a new message with it is a new message.
    b.send({ type: 3, topic: 'x2/a', payload: Buffer.from('second'), qos: 2, packetId: 77, retain: false, dup: false });
    await b.next(5);
    b.send({ type: 6, packetId: 77 });
    await b.next(7);
    await sub.sync();
    assert.deepEqual(payloads(await quietPublishes(sub, 50)), ['once', 'second']);
  });

  it('[MQTT-3.1.4-2] [MQTT-4.4.0-1] a takeover (old socket still open) hands over in-flight QoS 2 both ways: DUP resend, PUBREL resend, no duplicate', async (t) => {
    const h = await setup(t);
    const pub = await h.connected({ clientId: 'src' });
    const watcher = await h.subscriber('from-tk/#', 2);
    // Subscriber side: one QoS 2 message unacknowledged, one PUBREC'd.
    const old = await h.subscriber('to/#', 2, { clientId: 'tk', clean: false });
    pub.send({ type: 3, topic: 'to/a', payload: Buffer.from('m1'), qos: 2, packetId: 1, retain: false, dup: false });
    pub.send({ type: 3, topic: 'to/a', payload: Buffer.from('m2'), qos: 2, packetId: 2, retain: false, dup: false });
    const [m1, m2] = await publishes(old, 2);
    old.send({ type: 5, packetId: m2!.packetId! });
    await old.next(6);
    // Publisher side of the same client: an incoming QoS 2 with PUBREC sent, PUBREL not yet.
    old.send({ type: 3, topic: 'from-tk/x', payload: Buffer.from('in'), qos: 2, packetId: 9, retain: false, dup: false });
    await old.next(5);
    const { client: fresh, connack } = await h.connect({ clientId: 'tk', clean: false });
    assert.equal(connack.sessionPresent, true);
    await old.waitClosed();
    const [again] = await publishes(fresh, 1);
    assert.deepEqual([again!.payload.toString(), again!.dup, again!.packetId], ['m1', true, m1!.packetId]);
    assert.equal(((await fresh.next(6)) as { packetId: number }).packetId, m2!.packetId);
    // The PUBLISH re-sent (PUBREC lost) is acknowledged, not delivered again; the PUBREL completes it.
    fresh.send({ type: 3, topic: 'from-tk/x', payload: Buffer.from('in'), qos: 2, packetId: 9, retain: false, dup: true });
    assert.equal(((await fresh.next(5)) as { packetId: number }).packetId, 9);
    fresh.send({ type: 6, packetId: 9 });
    await fresh.next(7);
    fresh.send({ type: 5, packetId: m1!.packetId! });
    await fresh.next(6);
    fresh.send({ type: 7, packetId: m1!.packetId! });
    fresh.send({ type: 7, packetId: m2!.packetId! });
    await fresh.sync();
    assert.deepEqual(await quietPublishes(fresh, 50), []);
    assert.equal(h.broker.inspect.session('tk')?.inflight, 0);
    await watcher.sync();
    assert.deepEqual(payloads(await quietPublishes(watcher, 50)), ['in'], 'delivered once');
  });

  it('[MQTT-4.3.3] [MQTT-4.4.0-1] QoS 2 chaos: publisher and subscriber dropped repeatedly with acks skipped at random; each message delivered exactly once', async (t) => {
    const h = await setup(t);
    let seed = 0x5eed;
    const rand = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
    };
    let sub = await h.subscriber('chaos/#', 2, { clientId: 'chaos-sub', clean: false });
    let pub = await h.connected({ clientId: 'chaos-pub', clean: false });
    const N = 1200;
    const outstanding = new Map<number, { payload: string; released: boolean }>(); // publisher side
    const awaitingRel = new Map<number, string>(); // subscriber side (delivers at PUBREL, "method B")
    const recd = new Set<string>();
    const delivered: string[] = [];
    const violations: string[] = [];
    const onSub = (p: Packet, lossy: boolean) => {
      if (p.type === 3) {
        const v = (p as PublishPacket).payload.toString();
        if (recd.has(v)) violations.push(`PUBLISH ${v} again after PUBREC`);
        if (!lossy || rand() < 0.8) {
          sub.send({ type: 5, packetId: (p as PublishPacket).packetId! });
          awaitingRel.set((p as PublishPacket).packetId!, v);
          recd.add(v);
        }
      } else if (p.type === 6) {
        const id = (p as { packetId: number }).packetId;
        const v = awaitingRel.get(id);
        if (v !== undefined) delivered.push(v);
        awaitingRel.delete(id);
        if (!lossy || rand() < 0.8) sub.send({ type: 7, packetId: id });
      }
    };
    const onPub = (p: Packet, lossy: boolean) => {
      const id = (p as { packetId: number }).packetId;
      const o = outstanding.get(id);
      if (!o) return;
      if (p.type === 5) {
        o.released = true;
        if (!lossy || rand() < 0.8) pub.send({ type: 6, packetId: id });
      } else if (p.type === 7 && o.released) outstanding.delete(id);
    };
    const resendAll = () => {
      for (const [id, o] of outstanding) {
        if (o.released) pub.send({ type: 6, packetId: id });
        else pub.send({ type: 3, topic: 'chaos/x', payload: Buffer.from(o.payload), qos: 2, packetId: id, retain: false, dup: true });
      }
    };
    const pump = async (ms: number, lossy: boolean) => {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        await delay(2);
        for (const p of pub.packets.splice(0)) onPub(p, lossy);
        for (const p of sub.packets.splice(0)) onSub(p, lossy);
      }
    };
    const reconnectSub = async () => {
      // The PUBRECs already written must reach the broker before the drop (a destroyed socket discards what it
      // has not sent, and the broker rightly resends a PUBLISH it never saw acknowledged): the acks skipped on
      // purpose above are the loss under test, not the kernel's.
      await sub.sync();
      sub.destroy();
      await eventually(() => !h.broker.inspect.isConnected('chaos-sub'));
      sub = (await h.connect({ clientId: 'chaos-sub', clean: false })).client;
    };
    let next = 0;
    for (let round = 0; round < 10; round++) {
      for (let k = 0; k < N / 10; k++, next++) {
        outstanding.set(next + 1, { payload: String(next), released: false });
        pub.send({ type: 3, topic: 'chaos/x', payload: Buffer.from(String(next)), qos: 2, packetId: next + 1, retain: false, dup: false });
      }
      await pump(30, true);
      if (round % 2 === 0) await reconnectSub();
      if (round % 3 === 0) {
        pub.destroy();
        await eventually(() => !h.broker.inspect.isConnected('chaos-pub'));
        pub = (await h.connect({ clientId: 'chaos-pub', clean: false })).client;
        resendAll();
      }
    }
    // Settle without loss: one more reconnect of each side so every flow is resumed, then answer everything.
    await reconnectSub();
    pub.destroy();
    await eventually(() => !h.broker.inspect.isConnected('chaos-pub'));
    pub = (await h.connect({ clientId: 'chaos-pub', clean: false })).client;
    resendAll();
    const deadline = Date.now() + 5000;
    const inflight = () => h.broker.inspect.session('chaos-sub')?.inflight;
    while ((delivered.length < N || outstanding.size > 0 || inflight() !== 0) && Date.now() < deadline) await pump(20, false);
    assert.deepEqual(violations, []);
    assert.equal(outstanding.size, 0, 'every publisher flow completed');
    assert.equal(new Set(delivered).size, delivered.length, 'no message delivered twice');
    assert.equal(delivered.length, N, 'every message delivered');
    assert.equal(inflight(), 0, 'every subscriber flow completed');
  });

  it('[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not propagated to subscribers', async (t) => {
    const h = await setup(t);
    const sub = await h.subscriber('dupx', 2);
    const pub = await h.connected();
    pub.send({ type: 3, topic: 'dupx', payload: Buffer.from('a'), qos: 1, packetId: 3, retain: false, dup: true });
    pub.send({ type: 3, topic: 'dupx', payload: Buffer.from('b'), qos: 2, packetId: 4, retain: false, dup: true });
    const got = await publishes(sub, 2);
    assert.deepEqual(got.map((p) => p.dup), [false, false]);
  });
});

describe('retained messages', () => {
  it('[MQTT-3.3.1-12] a non-retained empty PUBLISH neither deletes nor replaces the retained message; a QoS 0 retained empty one deletes it', async (t) => {
    const h = await setup(t);
    const pub = await h.connected();
    pub.send({ type: 3, topic: 'keep/x', payload: Buffer.from('v1'), qos: 2, packetId: 1, retain: true, dup: false });
    await pub.next(5);
    pub.send({ type: 6, packetId: 1 });
    await pub.next(7);
    pub.send({ type: 3, topic: 'keep/x', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false });
    pub.send({ type: 3, topic: 'keep/x', payload: Buffer.from('not-retained'), qos: 0, retain: false, dup: false });
    await pub.sync();
    const s1 = await h.subscriber('keep/+', 2);
    const [r] = await publishes(s1, 1);
    assert.deepEqual([r!.payload.toString(), r!.qos, r!.retain], ['v1', 2, true]);
    pub.send({ type: 3, topic: 'keep/x', payload: Buffer.alloc(0), qos: 0, retain: true, dup: false });
    await pub.sync();
    assert.equal(h.broker.inspect.counts().retained, 0);
    const s2 = await h.subscriber('keep/#', 2);
    assert.deepEqual(await quietPublishes(s2, 80), []);
  });

  it('[MQTT-4.7.2-1] retained $SYS topics are not sent to # or +/... subscriptions, only to $SYS/...', async (t) => {
    const h = await setup(t);
    h.broker.publish('$SYS/broker/x', 'sys', { qos: 0, retain: true });
    h.broker.publish('plain/x', 'plain', { qos: 0, retain: true });
    const all = await h.subscriber('#');
    const plus = await h.subscriber('+/broker/x');
    const sys = await h.subscriber('$SYS/#');
    await Promise.all([all.sync(), plus.sync(), sys.sync()]);
    assert.deepEqual(payloads(await quietPublishes(all, 50)), ['plain']);
    assert.deepEqual(payloads(await quietPublishes(plus, 10)), []);
    assert.deepEqual(payloads(await quietPublishes(sys, 10)), ['sys']);
  });

  it('[MQTT-3.8.4-3] re-subscribing to the same filter sends the retained messages again, with RETAIN 1', async (t) => {
    const h = await setup(t);
    h.broker.publish('rs/a', 'r', { qos: 1, retain: true });
    const c = await h.subscriber('rs/#', 1);
    assert.equal((await publishes(c, 1))[0]!.retain, true);
    c.send({ type: 8, packetId: 2, subscriptions: [{ topicFilter: 'rs/#', qos: 0 }] });
    await c.next(9);
    const [again] = await publishes(c, 1);
    assert.deepEqual([again!.payload.toString(), again!.qos, again!.retain], ['r', 0, true]);
  });
});

describe('wills and protocol errors', () => {
  it('will published on a second CONNECT [MQTT-3.1.0-2] and on SUBSCRIBE with bad flags [MQTT-3.8.1-1], not on DISCONNECT [MQTT-3.1.2-10]', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('w/#');
    const a = await h.connected({ clientId: 'w-a', will: will('w/a') });
    a.send({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'w-a' });
    await a.waitClosed();
    const b = await h.connected({ clientId: 'w-b', will: will('w/b') });
    b.sendBytes(packet(0x80, [0, 1, ...str('x'), 0]));
    await b.waitClosed();
    const c = await h.connected({ clientId: 'w-c', will: will('w/c') });
    await disconnect(c);
    const got = await publishes(watcher, 2);
    assert.deepEqual(got.map((p) => p.topic), ['w/a', 'w/b']);
    assert.deepEqual(await quietPublishes(watcher, 100), []);
  });

  it('Keep Alive 0: no timeout (still open after 2 s of silence)', async (t) => {
    const h = await setup(t);
    const c = await h.connected({ keepAlive: 0, protocolVersion: 3 });
    await delay(2000);
    assert.equal(c.closed, false);
    await c.sync();
  });
});

const hasMosquitto = spawnSync('mosquitto_pub', ['--help']).error === undefined;

describeOrSkip('mosquitto_pub / mosquitto_sub interop', hasMosquitto ? false : 'mosquitto_pub / mosquitto_sub (mosquitto-clients) not installed', () => {
  for (const v of ['mqttv31', 'mqttv311'] as const) {
    it(`${v}: persistent session (-c -i) gets QoS 2 messages published while it was away, exactly once`, async (t) => {
      const h = await setup(t);
      const base = ['-h', '127.0.0.1', '-p', String(h.port), '-V', v];
      const id = `persist-${v}`;
      // Create the session and subscribe, then leave.
      await run('mosquitto_sub', [...base, '-c', '-i', id, '-q', '2', '-t', `ps/${v}/#`, '-E'], { timeout: 5000 });
      await eventually(() => !h.broker.inspect.isConnected(id) && h.broker.inspect.hasSession(id), 2000, 'session stored');
      for (const m of ['one', 'two']) await run('mosquitto_pub', [...base, '-q', '2', '-t', `ps/${v}/x`, '-m', m], { timeout: 5000 });
      await run('mosquitto_pub', [...base, '-q', '0', '-t', `ps/${v}/x`, '-m', 'qos0-lost'], { timeout: 5000 });
      const { stdout } = await run('mosquitto_sub', [...base, '-c', '-i', id, '-q', '2', '-t', `ps/${v}/#`, '-C', '2', '-W', '5', '-F', '%q %t %p'], { timeout: 8000 });
      assert.deepEqual(stdout.trim().split('\n'), [`2 ps/${v}/x one`, `2 ps/${v}/x two`]);
      // Nothing left: a third run gets nothing within 1 s.
      const third = await run('mosquitto_sub', [...base, '-c', '-i', id, '-q', '2', '-t', `ps/${v}/#`, '-W', '1'], { timeout: 5000 }).catch((e: { stdout: string }) => e);
      assert.equal(third.stdout.trim(), '');
    });
  }

  it('[MQTT-4.6.0] 500 QoS 2 messages from mosquitto_pub -V mqttv31 -l reach mosquitto_sub -V mqttv311 -q 2 once each, in order', async (t) => {
    const h = await setup(t);
    const port = String(h.port);
    const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv311', '-q', '2', '-t', 'ml/x', '-C', '500', '-W', '10'], { timeout: 15_000 });
    await eventually(() => h.broker.inspect.subscribers('ml/x').length === 1, 3000, 'mosquitto_sub subscribed');
    const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv31', '-q', '2', '-t', 'ml/x', '-l'], { stdio: ['pipe', 'ignore', 'ignore'] });
    pub.stdin.end(Array.from({ length: 500 }, (_, i) => `${i}\n`).join(''));
    const { stdout } = await sub;
    assert.deepEqual(stdout.trim().split('\n'), Array.from({ length: 500 }, (_, i) => String(i)));
    await new Promise((r) => (pub.exitCode !== null ? r(undefined) : pub.once('exit', r)));
  });

  it('mqttv31 and mqttv311: -r retained QoS 2 message reaches later subscribers with RETAIN 1 and downgraded QoS; -r -n clears it', async (t) => {
    const h = await setup(t);
    const port = String(h.port);
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv31', '-q', '2', '-r', '-t', 'mr/a', '-m', 'kept'], { timeout: 5000 });
    for (const [v, q] of [['mqttv31', '1'], ['mqttv311', '2']] as const) {
      const { stdout } = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-V', v, '-q', q, '-t', 'mr/#', '-C', '1', '-W', '5', '-F', '%r %q %t %p'], { timeout: 8000 });
      assert.equal(stdout.trim(), `1 ${q} mr/a kept`);
    }
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv311', '-r', '-n', '-t', 'mr/a'], { timeout: 5000 });
    assert.equal(h.broker.inspect.counts().retained, 0);
  });

  it('mqttv31 and mqttv311: --will-* is published (retained, QoS 1) when mosquitto_sub is killed, not when it exits normally', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('mw/#', 2);
    for (const v of ['mqttv31', 'mqttv311']) {
      const child = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(h.port), '-V', v, '-i', `w-${v}`, '-t', 'nothing', '--will-topic', `mw/${v}`, '--will-payload', `dead-${v}`, '--will-qos', '1', '--will-retain'], { stdio: 'ignore' });
      await eventually(() => h.broker.inspect.isConnected(`w-${v}`), 3000, `mosquitto_sub ${v} connected`);
      await eventually(() => h.broker.inspect.session(`w-${v}`)?.subscriptions.length === 1, 3000, 'subscribed');
      child.kill('SIGKILL');
      const [p] = await publishes(watcher, 1, 3000);
      assert.deepEqual([p!.topic, p!.payload.toString(), p!.qos, p!.retain], [`mw/${v}`, `dead-${v}`, 1, false]);
      // A normal exit (-E: DISCONNECT after SUBACK) publishes nothing.
      await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(h.port), '-V', v, '-t', 'nothing', '-E', '--will-topic', `mw/polite-${v}`, '--will-payload', 'never'], { timeout: 5000 });
    }
    assert.deepEqual(await quietPublishes(watcher, 150), []);
    assert.equal(h.broker.inspect.counts().retained, 2);
  });
});

const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import paho.mqtt.client'], { stdio: 'ignore' }).status === 0);

// paho-mqtt 1.x: a persistent QoS 2 session resumed after messages were published while away.
const PAHO_PERSIST = String.raw`
import sys, threading, time
import paho.mqtt.client as mqtt
port, cid = int(sys.argv[1]), sys.argv[2]
got, flags_seen = [], []
ready, done = threading.Event(), threading.Event()
def on_connect(c, u, flags, rc):
    flags_seen.append(flags.get("session present", 0))
    ready.set()
def on_message(c, u, m):
    got.append("%s %s %d %d" % (m.topic, m.payload.decode(), m.qos, m.retain))
    if len(got) >= 2: done.set()
def session(phase):
    c = mqtt.Client(client_id=cid, clean_session=False, protocol=mqtt.MQTTv311)
    c.on_connect, c.on_message = on_connect, on_message
    ready.clear()
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    if not ready.wait(5): print("no CONNACK"); sys.exit(1)
    return c
c = session(1)
r, mid = c.subscribe("pp/#", qos=2)
time.sleep(0.3)
c.disconnect(); c.loop_stop()
p = mqtt.Client(client_id=cid + "-pub", protocol=mqtt.MQTTv311)
p.connect("127.0.0.1", port); p.loop_start()
p.publish("pp/a", "away-1", qos=2).wait_for_publish(5)
p.publish("pp/a", "away-2", qos=1).wait_for_publish(5)
p.disconnect(); p.loop_stop()
c = session(2)
ok = done.wait(5)
time.sleep(0.3)
c.disconnect(); c.loop_stop()
print("present " + " ".join(str(f) for f in flags_seen))
print("\n".join(got))
sys.exit(0 if ok else 1)
`;
import { describeOrSkip } from '../helpers/skip.js';

describeOrSkip('paho-mqtt (Python) interop', python ? false : 'python3 with paho-mqtt not installed', () => {
  it('3.1.1 persistent session (clean_session=False): session present, QoS 2 and 1 messages from while away delivered once', async (t) => {
    const h = await setup(t);
    const { stdout } = await run(python!, ['-c', PAHO_PERSIST, String(h.port), 'paho-persist'], { timeout: 15_000 });
    const [present, ...messages] = stdout.trim().split('\n');
    assert.equal(present, 'present 0 1', 'session present 0, then 1');
    // paho hands a QoS 2 message to the application at PUBREL, so the QoS 1 one may come first.
    assert.deepEqual(messages.sort(), ['pp/a away-1 2 0', 'pp/a away-2 1 0']);
  });
});
