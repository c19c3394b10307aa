// Bad input over real TCP: every malformed or forbidden packet after CONNECT closes that
// connection (5.0: DISCONNECT with the reason first) and publishes its will, while other
// clients keep working. Then random garbage from several sockets at once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { DisconnectPacket, Packet, PublishPacket } from '../../src/protocol/packets.js';
import { connectBytes, delay, eventually, packet, publishBytes, publishes, setup, str, type Harness } from '../helpers/harness.js';
import type { RawClient } from '../helpers/raw-client.js';
import { seededRandom } from '../helpers/seeded.js';

interface World {
  h: Harness;
  watcher: RawClient;
  /** A publisher and a subscriber that must keep working. */
  check(): Promise<void>;
}

async function world(t: Parameters<typeof setup>[0], options: Parameters<typeof setup>[1] = {}): Promise<World> {
  const h = await setup(t, options);
  const watcher = await h.subscriber('will/#');
  const bySub = await h.subscriber('bystander/x', 1, { clientId: 'bystander-sub', protocolVersion: 5 });
  const byPub = await h.connected({ clientId: 'bystander-pub' });
  let n = 0;
  return {
    h,
    watcher,
    async check() {
      const payload = `still-${n++}`;
      byPub.send({ type: 3, topic: 'bystander/x', payload: Buffer.from(payload), qos: 1, packetId: n, retain: false, dup: false });
      await byPub.next(4);
      const p = (await bySub.next(3)) as PublishPacket;
      assert.equal(p.payload.toString(), payload, 'other clients keep working');
      bySub.send({ type: 4, packetId: p.packetId! });
    },
  };
}

/**
 * Connects a client with a will, sends `bytes`, and checks: closed; 5.0 got DISCONNECT `code`
 * (when given) first; the will was published; the others still work.
 */
async function expectKilled(w: World, version: 4 | 5, bytes: Buffer | number[], code: number | undefined, what: string): Promise<void> {
  const id = `bad-${version}-${what}`;
  const c = await w.h.connected({ clientId: id, protocolVersion: version, will: { topic: `will/${version}`, payload: Buffer.from(id), qos: 0, retain: false } });
  c.sendBytes(bytes);
  await c.waitClosed();
  if (version === 5 && code !== undefined) {
    const d = c.packets.find((p): p is DisconnectPacket => p.type === 14);
    assert.equal(d?.reasonCode, code, `${what} (5.0): DISCONNECT 0x${code.toString(16)}, got ${JSON.stringify(c.packets)}`);
  }
  if (version === 4) assert.deepEqual(c.packets, [], `${what} (3.1.1): closed without a packet`);
  const [will] = await publishes(w.watcher, 1);
  assert.equal(will!.payload.toString(), id, `${what}: will published`);
  const info = w.h.events.clientDisconnected.find(([client]) => client?.clientId === id)?.[1];
  assert.equal(info?.willPublished, true);
  await w.check();
}

const enc5 = (p: Packet) => encodePacket(p, 5);
const enc4 = (p: Packet) => encodePacket(p, 4);

describe('bad input after CONNECT', () => {
  it('[MQTT-1.5.5-1] a bad remaining length (5 bytes, not minimal) is malformed: 0x81', async (t) => {
    const w = await world(t);
    for (const v of [4, 5] as const) {
      await expectKilled(w, v, [0x30, 0xff, 0xff, 0xff, 0xff, 0x01], 0x81, 'five length bytes');
      await expectKilled(w, v, [0xc0, 0x80, 0x00], 0x81, 'non-minimal length');
    }
  });

  it('[MQTT-2.2.2-2] reserved fixed-header flags, QoS 3 and DUP on QoS 0 are malformed: 0x81', async (t) => {
    const w = await world(t);
    for (const v of [4, 5] as const) {
      const sub = v === 5 ? [0, 1, 0, ...str('a'), 0] : [0, 1, ...str('a'), 0];
      await expectKilled(w, v, packet(0x80, sub), 0x81, 'SUBSCRIBE flags 0000');
      await expectKilled(w, v, [0xc1, 0x00], 0x81, 'PINGREQ flags 0001');
      await expectKilled(w, v, [0x62 & 0xf0, 2, 0, 1], 0x81, 'PUBREL flags 0000');
      await expectKilled(w, v, publishBytes({ topic: 'a', flags: 0x06, packetId: 1, v5: v === 5 }), 0x81, 'PUBLISH QoS 3');
      await expectKilled(w, v, publishBytes({ topic: 'a', flags: 0x08, v5: v === 5 }), 0x81, 'DUP with QoS 0');
      await expectKilled(w, v, [0x00, 0x00], 0x81, 'packet type 0');
    }
    await expectKilled(w, 4, [0xf0, 0x00], undefined, 'AUTH in 3.1.1');
  });

  it('[MQTT-1.5.4-1] [MQTT-1.5.4-2] invalid UTF-8 or U+0000 in a topic name is malformed: 0x81', async (t) => {
    const w = await world(t);
    for (const v of [4, 5] as const) {
      await expectKilled(w, v, publishBytes({ topic: [0x61, 0xff, 0xfe], v5: v === 5 }), 0x81, 'bytes ff fe');
      await expectKilled(w, v, publishBytes({ topic: [0x61, 0xed, 0xa0, 0x80], v5: v === 5 }), 0x81, 'UTF-8 encoded surrogate');
      await expectKilled(w, v, publishBytes({ topic: [0x61, 0xc0, 0x80], v5: v === 5 }), 0x81, 'overlong NUL');
      await expectKilled(w, v, publishBytes({ topic: [0x61, 0x00, 0x62], v5: v === 5 }), 0x81, 'U+0000');
    }
  });

  it('an oversize packet (maxPacketSize 1024): 5.0 gets DISCONNECT 0x95, the connection is closed', async (t) => {
    const w = await world(t, { maxPacketSize: 1024 });
    for (const v of [4, 5] as const) {
      await expectKilled(w, v, publishBytes({ topic: 'big', payload: 'x'.repeat(2000), v5: v === 5 }), 0x95, 'PUBLISH 2000 bytes');
      // Refused from the fixed header alone: a 100 MB announcement without its body.
      await expectKilled(w, v, [0x30, 0x80, 0x80, 0x80, 0x30], 0x95, 'announced 100 MB');
    }
    // 1024 bytes exactly is accepted.
    const c = await w.h.connected();
    const exact = publishBytes({ topic: 'big', payload: 'x'.repeat(1024 - 3 - 2 - 3) });
    assert.equal(exact.length, 1024);
    c.sendBytes(exact);
    await c.sync();
    assert.equal(c.closed, false);
  });

  it('[MQTT-3.3.2-2] a wildcard in a PUBLISH topic: 5.0 gets DISCONNECT 0x90 (Topic Name invalid)', async (t) => {
    const w = await world(t);
    for (const v of [4, 5] as const) {
      await expectKilled(w, v, publishBytes({ topic: 'a/+/b', v5: v === 5 }), 0x90, 'plus');
      await expectKilled(w, v, publishBytes({ topic: 'a/#', qos: 1, v5: v === 5 }), 0x90, 'hash');
    }
  });

  it('[MQTT-2.2.1-3] packet identifier 0 is a protocol error: 0x82', async (t) => {
    const w = await world(t);
    for (const v of [4, 5] as const) {
      await expectKilled(w, v, publishBytes({ topic: 'a', qos: 1, packetId: 0, v5: v === 5 }), 0x82, 'PUBLISH QoS 1');
      await expectKilled(w, v, publishBytes({ topic: 'a', qos: 2, packetId: 0, v5: v === 5 }), 0x82, 'PUBLISH QoS 2');
      await expectKilled(w, v, packet(0x82, v === 5 ? [0, 0, 0, ...str('a'), 0] : [0, 0, ...str('a'), 0]), 0x82, 'SUBSCRIBE');
      await expectKilled(w, v, packet(0xa2, v === 5 ? [0, 0, 0, ...str('a')] : [0, 0, ...str('a')]), 0x82, 'UNSUBSCRIBE');
      await expectKilled(w, v, [0x40, 2, 0, 0], 0x82, 'PUBACK');
    }
  });

  it('other forbidden packets: SUBSCRIBE without filters, packets only a server sends, truncated fields', async (t) => {
    const w = await world(t);
    for (const v of [4, 5] as const) {
      await expectKilled(w, v, packet(0x82, v === 5 ? [0, 1, 0] : [0, 1]), 0x82, 'SUBSCRIBE without filters [MQTT-3.8.3-3]');
      await expectKilled(w, v, packet(0xa2, v === 5 ? [0, 1, 0] : [0, 1]), 0x82, 'UNSUBSCRIBE without filters [MQTT-3.10.3-2]');
      await expectKilled(w, v, (v === 5 ? enc5 : enc4)({ type: 9, packetId: 1, reasonCodes: [0] }), 0x82, 'SUBACK from a client');
      await expectKilled(w, v, [0xd0, 0x00], 0x82, 'PINGRESP from a client');
      await expectKilled(w, v, packet(0x30, [0, 9, 0x61]), 0x81, 'topic longer than the packet');
      await expectKilled(w, v, packet(0x82, v === 5 ? [0, 1, 0, ...str('a'), 3] : [0, 1, ...str('a'), 3]), 0x81, 'subscription QoS 3');
    }
  });

  it('5.0 only: a Subscription Identifier in a client PUBLISH, an unknown property, a bad topic alias are rejected', async (t) => {
    const w = await world(t, { topicAliasMaximum: 10 });
    await expectKilled(w, 5, packet(0x30, [...str('a'), 2, 0x0b, 1, 0x78]), 0x82, 'subscription id in PUBLISH [MQTT-3.3.4-6]');
    await expectKilled(w, 5, packet(0x30, [...str('a'), 2, 0x7f, 1, 0x78]), 0x81, 'property 0x7f');
    await expectKilled(w, 5, enc5({ type: 3, topic: 'a', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 11 } }), 0x94, 'topic alias above the maximum');
    await expectKilled(w, 5, enc5({ type: 3, topic: '', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } }), 0x94, 'topic alias never set');
  });
});

describe('limits on PUBLISH', () => {
  it('a PUBLISH above maxQos (5.0: 0x9B) or retained with retainAvailable false (5.0: 0x9A) closes the connection', async (t) => {
    const w = await world(t, { maxQos: 1, retainAvailable: false });
    for (const v of [4, 5] as const) {
      await expectKilled(w, v, publishBytes({ topic: 'a', qos: 2, v5: v === 5 }), 0x9b, 'QoS 2 above maxQos 1');
      await expectKilled(w, v, publishBytes({ topic: 'a', flags: 0x01, v5: v === 5 }), 0x9a, 'retain not available');
    }
  });
});

describe('deep topics', () => {
  it('a topic and filters of 20,000 levels (maxTopicLevels raised) route and retain like any other, and nobody is disconnected', async (t) => {
    const w = await world(t, { maxTopicLevels: 32768 });
    const deep = Array(20_000).fill('a').join('/'); // 40 KB, below maxPacketSize
    const byPlus = await w.h.subscriber(Array(20_000).fill('+').join('/'));
    const byHash = await w.h.subscriber(`${Array(19_999).fill('a').join('/')}/#`);
    const pub = await w.h.connected({ clientId: 'deep-pub' });
    pub.send({ type: 3, topic: deep, payload: Buffer.from('deep'), qos: 1, packetId: 1, retain: true, dup: false });
    await pub.next(4);
    for (const sub of [byPlus, byHash]) {
      const [p] = await publishes(sub, 1);
      assert.equal(p!.payload.toString(), 'deep');
    }
    const late = await w.h.subscriber('#');
    const [retained] = await publishes(late, 1);
    assert.deepEqual([retained!.topic.length, retained!.retain], [deep.length, true], 'the retained message is found under #');
    assert.equal(pub.closed, false, 'the publisher is still connected');
    await w.check();
  });
});

describe('garbage', () => {
  it('a flood of random and mutated packets from several sockets never crashes or stalls the broker', async (t) => {
    const w = await world(t, { connectTimeout: 300, maxPacketSize: 64 * 1024 });
    const baseline = w.h.broker.inspect.counts().connections;
    const rand = seededRandom(0xbad1);
    const int = (n: number) => Math.floor(rand() * n);
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
    const valid = (v: 4 | 5): Buffer[] => [
      encodePacket({ type: 3, topic: 'g/a', payload: bytes(int(40)), qos: int(3) as 0 | 1 | 2, packetId: 1 + int(65535), retain: rand() < 0.2, dup: false }, v),
      encodePacket({ type: 8, packetId: 1 + int(100), subscriptions: [{ topicFilter: rand() < 0.5 ? 'g/#' : '+/a', qos: int(3) as 0 | 1 | 2 }] }, v),
      encodePacket({ type: 10, packetId: 1 + int(100), topicFilters: ['g/#'] }, v),
      encodePacket({ type: 6, packetId: 1 + int(100) }, v),
      encodePacket({ type: 12 }, v),
    ];
    const mutate = (b: Buffer): Buffer => {
      const out = Buffer.from(b);
      for (let k = 0; k < 1 + int(3); k++) out[int(out.length)] = int(256);
      return rand() < 0.2 ? out.subarray(0, int(out.length)) : out;
    };
    const sockets: RawClient[] = [];
    const stalls: number[] = [];
    const rounds = 30;
    const perRound = 10;
    for (let round = 0; round < rounds; round++) {
      const batch = await Promise.all(Array.from({ length: perRound }, () => w.h.open()));
      sockets.push(...batch);
      for (const [i, s] of batch.entries()) {
        const v = (i % 2 ? 4 : 5) as 4 | 5;
        const kind = (round * perRound + i) % 4;
        const chunks: Buffer[] = [];
        if (kind === 0) chunks.push(bytes(1 + int(2000))); // pure noise
        if (kind >= 1) chunks.push(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: v, clean: rand() < 0.5, keepAlive: 0, clientId: `g${int(5)}` }, v));
        if (kind === 1) chunks.push(bytes(1 + int(500)));
        if (kind >= 2) for (let k = 0; k < 20; k++) chunks.push(kind === 2 ? mutate(valid(v)[int(5)]!) : valid(v)[int(5)]!);
        if (kind === 3) chunks.push(mutate(connectBytes({ level: v, clientId: 'x' })));
        // Written in random pieces.
        const all = Buffer.concat(chunks);
        for (let pos = 0; pos < all.length; ) {
          const n = 1 + int(300);
          s.sendBytes(all.subarray(pos, pos + n));
          pos += n;
        }
      }
      // The broker answers others promptly while the garbage arrives.
      const start = Date.now();
      await w.check();
      stalls.push(Date.now() - start);
    }
    assert.ok(Math.max(...stalls) < 1000, `round trips while flooded: ${stalls.join(',')} ms`);
    // Garbage without a complete CONNECT is closed by the broker itself (malformed or connect timeout).
    await eventually(() => sockets.filter((_, j) => j % 4 === 0).every((s) => s.closed), 2000, 'noise sockets closed');
    for (const s of sockets) s.destroy();
    await eventually(() => w.h.broker.inspect.counts().connections === baseline, 2000, 'channels back to the baseline');
    await delay(50);
    await w.check();
    assert.equal(w.h.broker.inspect.counts().connected, baseline);
  });
});
