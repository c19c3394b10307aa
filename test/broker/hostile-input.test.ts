// Hostile and malformed input over real sockets (TCP, WebSocket, TLS) and bad config files
// through the CLI. Each probe checks that only the offending connection is affected: a bystander
// connected all along still receives, and a fresh client still gets a publish/subscribe round trip.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { setPassword } from '../../src/auth/password-file.js';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnackPacket, DisconnectPacket, Packet, PublishPacket } from '../../src/protocol/packets.js';
import { makeCerts } from '../helpers/certs.js';
import { connectBytes, delay, eventually, packet, setup, str, varint, type Harness } from '../helpers/harness.js';
import { RawClient } from '../helpers/raw-client.js';
import { startLogged } from '../transport/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-audit-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const cli = join(process.cwd(), 'bin', 'petrel.js');

const enc = (p: Packet, v: ProtocolVersion = 4) => encodePacket(p, v);
const pub = (topic: string, payload: string, qos: 0 | 1 | 2 = 0, packetId = 1): PublishPacket =>
  (qos === 0 ? { type: 3, topic, payload: Buffer.from(payload), qos, retain: false, dup: false } : { type: 3, topic, payload: Buffer.from(payload), qos, packetId, retain: false, dup: false }) as PublishPacket;

/** A bystander subscriber and publisher connected all along, and a fresh-client round trip on any TCP port. */
async function witnesses(h: Harness) {
  const bySub = await h.subscriber('by/#', 1, { clientId: 'by-sub', protocolVersion: 5 });
  const byPub = await h.connected({ clientId: 'by-pub' });
  let n = 0;
  return {
    bySub,
    byPub,
    async check(what: string): Promise<void> {
      n++;
      const payload = `alive-${n}`;
      byPub.send(pub('by/x', payload, 1, (n % 65535) + 1));
      await byPub.next(4, 2000);
      const p = (await bySub.next(3, 2000)) as PublishPacket;
      assert.equal(p.payload.toString(), payload, `${what}: the bystander still receives`);
      bySub.send({ type: 4, packetId: p.packetId! });
      await freshRoundTrip(h.port, `${what}: fresh client`);
    },
  };
}

let fresh = 0;
async function freshRoundTrip(port: number, what = 'fresh client'): Promise<void> {
  const id = `fresh-${fresh++}`;
  const { client, connack } = await RawClient.connect(port, { clientId: id, protocolVersion: 5 });
  try {
    assert.equal(connack.reasonCode, 0, `${what}: CONNACK`);
    client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: `fresh/${id}`, qos: 1 }] });
    await client.next(9);
    client.send(pub(`fresh/${id}`, 'rt', 1, 2));
    await client.next(4);
    const got = (await client.next(3)) as PublishPacket;
    assert.equal(got.payload.toString(), 'rt', `${what}: round trip`);
  } finally {
    client.destroy();
  }
}

/** Waits until the socket is closed by the broker or `ms` pass. */
async function settle(c: RawClient, ms = 40): Promise<void> {
  await c.waitClosed(ms).catch(() => {});
}

/** Reason codes a 5.0 server may put in a DISCONNECT caused by bad client input. */
const ERROR_CODES = new Set([0x80, 0x81, 0x82, 0x83, 0x87, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x99, 0x9a, 0x9b]);

// ------------------------------------------------------------------------------------------------
describe('fuzzed and mutated packets over TCP', () => {
  /** Valid packets to mutate (after a valid CONNECT of the same version). */
  const bases = (v: 4 | 5): Buffer[] => [
    enc(pub('f/a', 'payload', 1, 7), v),
    enc({ type: 3, topic: 'f/b', payload: Buffer.from('p2'), qos: 2, packetId: 9, retain: true, dup: false, properties: v === 5 ? { userProperties: [['k', 'v']], contentType: 'x' } : undefined } as PublishPacket, v),
    enc({ type: 8, packetId: 3, subscriptions: [{ topicFilter: 'f/#', qos: 1 }], ...(v === 5 ? { properties: { subscriptionIdentifier: 5 } } : {}) } as Packet, v),
    enc({ type: 10, packetId: 4, topicFilters: ['f/#'] } as Packet, v),
    enc({ type: 6, packetId: 9 } as Packet, v),
    enc({ type: 12 }, v),
  ];
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    // Bogus remaining length: any 1..4 byte varint (often non-minimal or far larger than the body).
    fc.record({ kind: fc.constant('length' as const), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 4 }) }),
    fc.record({ kind: fc.constant('fiveByteLength' as const) }),
    fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 20 }) }),
  );
  type Mutation = { kind: string; at?: number; value?: number; bytes?: number[]; extra?: Uint8Array };
  function mutate(b: Buffer, m: Mutation): Buffer {
    const out = Buffer.from(b);
    // Where the body starts: after the type byte and the (original, minimal) length.
    let h = 1;
    while (out[h]! & 0x80) h++;
    h++;
    switch (m.kind) {
      case 'flip':
        out[m.at! % out.length] = m.value!;
        return out;
      case 'truncate':
        return out.subarray(0, m.at! % out.length);
      case 'length':
        return Buffer.concat([out.subarray(0, 1), Buffer.from(m.bytes!), out.subarray(h)]);
      case 'fiveByteLength':
        return Buffer.concat([out.subarray(0, 1), Buffer.from([0x80, 0x80, 0x80, 0x80, 0x01]), out.subarray(h)]);
      default:
        return Buffer.concat([out, Buffer.from(m.extra!)]);
    }
  }

  it('random byte streams and mutated packets (before and after CONNECT) close only that connection', async (t) => {
    const h = await setup(t, { connectTimeout: 500, maxPacketSize: 64 * 1024 });
    const w = await witnesses(h);
    const codes: number[] = [];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(4 as const, 5 as const),
        fc.boolean(),
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 400 }).map((u) => ({ raw: Buffer.from(u) })),
          fc.record({ base: fc.nat(), m: mutation }),
        ),
        async (v, connectFirst, input) => {
          const c = await h.open(v);
          if (connectFirst) {
            c.send({ type: 1, protocolName: 'MQTT', protocolVersion: v, clean: true, keepAlive: 0, clientId: '' });
            await c.next(2);
          }
          const bytes = 'raw' in input ? input.raw : mutate(bases(v)[input.base % 6]!, input.m as Mutation);
          c.sendBytes(bytes);
          await settle(c);
          for (const p of c.packets) if (p.type === 14 && v === 5) codes.push((p as DisconnectPacket).reasonCode ?? 0);
          assert.equal(c.decodeError, undefined, 'the broker only sends well-formed packets');
          c.destroy();
          await w.check('after fuzz input');
        },
      ),
      { numRuns: 60, seed: 0x5eed1 },
    );
    for (const code of codes) assert.ok(ERROR_CODES.has(code), `DISCONNECT reason 0x${code.toString(16)} is an error code`);
    await eventually(() => h.broker.inspect.counts().connected === 2, 2000, 'only the witnesses remain connected');
  });

  it('5.0 PUBLISH with random property blocks (duplicate ids, wrong lengths and types): rejected with 0x81/0x82/0x94/0x99 or accepted; others unaffected', async (t) => {
    const h = await setup(t, { topicAliasMaximum: 5 });
    const w = await witnesses(h);
    // Known ids of every data type, some never allowed in PUBLISH, plus undefined ones.
    const ids = [0x01, 0x02, 0x03, 0x08, 0x09, 0x0b, 0x11, 0x15, 0x17, 0x1f, 0x21, 0x23, 0x24, 0x26, 0x00, 0x7f, 0xff];
    const prop = fc.record({
      id: fc.constantFrom(...ids),
      value: fc.oneof(
        fc.uint8Array({ minLength: 0, maxLength: 6 }).map((u) => [...u]),
        fc.string({ maxLength: 4 }).map((s) => str(s)),
        fc.constant([0x00, 0x01, 0x78, 0x00, 0x01, 0x79]),
      ),
    });
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(prop, { minLength: 1, maxLength: 4 }), fc.constantFrom(0, 1), async (props, qos) => {
        const c = await h.connected({ protocolVersion: 5 });
        const block = props.flatMap((p) => [p.id, ...p.value]);
        const body = [...str('p/x'), ...(qos ? [0, 1] : []), ...varint(block.length), ...block, 0x61];
        c.sendBytes(packet(0x30 | (qos << 1), body));
        if (!c.closed) c.send({ type: 12 });
        await Promise.race([c.next(13, 1000).catch(() => undefined), c.waitClosed(1000).catch(() => undefined)]);
        const d = c.packets.find((p): p is DisconnectPacket => p.type === 14);
        const key = d ? `0x${d.reasonCode!.toString(16)}` : c.closed ? 'closed' : 'ok';
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
        if (c.closed) assert.ok(d && [0x81, 0x82, 0x94, 0x99].includes(d.reasonCode!), `closed with DISCONNECT 0x81/0x82/0x94/0x99, got ${key} for ${JSON.stringify(props)}`);
        c.destroy();
        await w.check('after property fuzz');
      }),
      { numRuns: 60, seed: 0xb10c },
    );
    assert.ok(outcomes.size >= 2, `both outcomes seen: ${JSON.stringify([...outcomes])}`);
  });

  it('a valid QoS 1/2 PUBLISH followed by garbage in the same segment: what was acknowledged is delivered', async (t) => {
    const h = await setup(t);
    const w = await witnesses(h);
    const sub = await h.subscriber('acked/#', 2, { clientId: 'acked-sub', protocolVersion: 5 });
    for (const v of [4, 5] as const) {
      for (const garbage of [[0x00, 0x00], [0x30, 0xff, 0xff, 0xff, 0xff, 0x01], [0x82, 0x00], [0xff, 0x00]]) {
        const c = await h.connected({ protocolVersion: v });
        c.sendBytes(Buffer.concat([enc(pub('acked/1', `q1-${v}-${garbage[0]}`, 1, 11), v), enc(pub('acked/2', `q2-${v}-${garbage[0]}`, 2, 12), v), Buffer.from(garbage)]));
        await c.waitClosed();
        const acked = c.packets.filter((p) => p.type === 4 || p.type === 5).length;
        const got = await sub.collect(150, 3);
        assert.ok(got.length >= acked, `v${v} ${garbage}: ${acked} acknowledged, ${got.length} delivered`);
        for (const p of got) if ((p as PublishPacket).qos > 0) sub.send({ type: (p as PublishPacket).qos === 1 ? 4 : 5, packetId: (p as PublishPacket).packetId! } as Packet);
      }
    }
    await w.check('after ack + garbage');
  });

  it('a persistent subscriber killed for a protocol error gets its unacknowledged QoS 1 messages again on reconnect', async (t) => {
    const h = await setup(t);
    const w = await witnesses(h);
    for (const v of [4, 5] as const) {
      const id = `persist-${v}`;
      const fields = { clientId: id, protocolVersion: v, clean: false, ...(v === 5 ? { properties: { sessionExpiryInterval: 60 } } : {}) };
      const first = await h.connected(fields);
      first.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: `keep/${v}`, qos: 1 }] });
      await first.next(9);
      for (let i = 1; i <= 3; i++) {
        w.byPub.send(pub(`keep/${v}`, `m${i}`, 1, 100 + i));
        await w.byPub.next(4);
      }
      const received = await first.collect(100, 3);
      assert.equal(received.length, 3);
      first.sendBytes([0x82, 0x00]); // SUBSCRIBE with reserved flags and no body: malformed
      await first.waitClosed();
      const { client: again, connack } = await h.connect(fields);
      assert.equal(connack.sessionPresent, true);
      const redelivered = (await again.collect(200, 3)) as PublishPacket[];
      assert.deepEqual(redelivered.map((p) => p.payload.toString()), ['m1', 'm2', 'm3'], `v${v}: redelivered`);
      assert.ok(redelivered.every((p) => p.dup));
      again.destroy();
    }
    await w.check('after persistent redelivery');
  });
});

// ------------------------------------------------------------------------------------------------
describe('invalid UTF-8 and U+0000 in CONNECT fields and filters', () => {
  const cases: { what: string; bytes: (v: 4 | 5) => Buffer }[] = [
    { what: 'client id with ff fe', bytes: (v) => packet(0x10, [...str('MQTT'), v, 0x02, 0, 0, ...(v === 5 ? [0] : []), ...str([0x61, 0xff, 0xfe])]) },
    { what: 'client id with U+0000', bytes: (v) => packet(0x10, [...str('MQTT'), v, 0x02, 0, 0, ...(v === 5 ? [0] : []), ...str([0x61, 0x00])]) },
    { what: 'username with a UTF-8 surrogate', bytes: (v) => packet(0x10, [...str('MQTT'), v, 0x82, 0, 0, ...(v === 5 ? [0] : []), ...str('u1'), ...str([0xed, 0xa0, 0x80])]) },
    { what: 'username with overlong NUL', bytes: (v) => packet(0x10, [...str('MQTT'), v, 0x82, 0, 0, ...(v === 5 ? [0] : []), ...str('u2'), ...str([0xc0, 0x80])]) },
    { what: 'will topic with U+0000', bytes: (v) => packet(0x10, [...str('MQTT'), v, 0x06, 0, 0, ...(v === 5 ? [0] : []), ...str('w1'), ...(v === 5 ? [0] : []), ...str([0x61, 0x00]), ...str('x')]) },
    { what: 'will topic with ff', bytes: (v) => packet(0x10, [...str('MQTT'), v, 0x06, 0, 0, ...(v === 5 ? [0] : []), ...str('w2'), ...(v === 5 ? [0] : []), ...str([0xff]), ...str('x')]) },
    { what: 'protocol name with ff', bytes: (v) => packet(0x10, [...str([0x4d, 0xff, 0x54, 0x54]), v, 0x02, 0, 0, ...(v === 5 ? [0] : []), ...str('p')]) },
  ];
  const v5only: { what: string; bytes: Buffer }[] = [
    { what: 'CONNECT user property name with c0 80', bytes: packet(0x10, [...str('MQTT'), 5, 0x02, 0, 0, 7, 0x26, ...str([0xc0, 0x80]), ...str('v'), ...str('up1')]) },
    { what: 'CONNECT user property value with U+0000', bytes: packet(0x10, [...str('MQTT'), 5, 0x02, 0, 0, 7, 0x26, ...str('k'), ...str([0x00]), ...str('up2')]) },
    { what: 'will user property with ff', bytes: packet(0x10, [...str('MQTT'), 5, 0x06, 0, 0, 0, ...str('up3'), 7, 0x26, ...str('k'), ...str([0xff]), ...str('w/t'), ...str('x')]) },
    { what: 'authentication method with ff', bytes: packet(0x10, [...str('MQTT'), 5, 0x02, 0, 0, 4, 0x15, ...str([0xff]), ...str('am')]) },
  ];

  it('a CONNECT with ill-formed UTF-8 or U+0000 in any string is refused (no session, no will), others unaffected', async (t) => {
    const h = await setup(t);
    const w = await witnesses(h);
    const watcher = await h.subscriber('#', 0, { clientId: 'utf8-watch' });
    const all = [...cases.flatMap((c) => [4, 5].map((v) => ({ what: `${c.what} (v${v})`, v, bytes: c.bytes(v as 4 | 5) }))), ...v5only.map((c) => ({ ...c, v: 5 }))];
    for (const c of all) {
      const before = h.events.clientConnected.length;
      const r = await h.open(c.v as ProtocolVersion);
      r.sendBytes(c.bytes);
      await r.waitClosed(2000);
      const connack = r.packets.find((p): p is ConnackPacket => p.type === 2);
      if (connack) assert.ok(connack.reasonCode >= 0x80 || (c.v === 4 && connack.reasonCode > 0), `${c.what}: CONNACK is a refusal, got ${connack.reasonCode}`);
      if (connack && c.v === 5) assert.ok([0x81, 0x82, 0x84, 0x85, 0x86].includes(connack.reasonCode), `${c.what}: CONNACK 0x81-ish, got 0x${connack.reasonCode.toString(16)}`);
      assert.equal(h.events.clientConnected.length, before, `${c.what}: nobody connected`);
    }
    assert.deepEqual((await watcher.collect(100, 3)).map((p) => (p as PublishPacket).topic), [], 'no will was published');
    await w.check('after bad UTF-8 CONNECTs');
  });

  it('SUBSCRIBE / UNSUBSCRIBE with ill-formed UTF-8 or U+0000 in a filter: 5.0 DISCONNECT 0x81, 3.1.1 closed', async (t) => {
    const h = await setup(t);
    const w = await witnesses(h);
    for (const v of [4, 5] as const) {
      for (const filter of [[0x61, 0xff], [0x61, 0x00], [0xed, 0xbf, 0xbf], [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
        for (const [first, tail] of [[0x82, [1]], [0xa2, []]] as const) {
          const c = await h.connected({ protocolVersion: v });
          c.sendBytes(packet(first, [0, 1, ...(v === 5 ? [0] : []), ...str(filter), ...tail]));
          await c.waitClosed();
          if (v === 5) assert.equal((c.packets.find((p) => p.type === 14) as DisconnectPacket | undefined)?.reasonCode, 0x81, `${first.toString(16)} ${filter}`);
          else assert.deepEqual(c.packets, []);
        }
      }
    }
    await w.check('after bad filters');
  });

  it('5.0 will with Payload Format Indicator 1 and a payload that is not UTF-8 is refused at CONNECT with 0x99 (validatePayloadFormat defaults to true)', async (t) => {
    const h = await setup(t);
    const w = await witnesses(h);
    const watcher = await h.subscriber('pfi/#', 0, { clientId: 'pfi-watch', protocolVersion: 5 });
    const r = await h.open(5);
    r.sendBytes(packet(0x10, [...str('MQTT'), 5, 0x06, 0, 0, 0, ...str('pfi-1'), 2, 0x01, 0x01, ...str('pfi/w'), ...str([0xff, 0xfe])]));
    const connack = (await r.next(2, 1000).catch(() => undefined)) as ConnackPacket | undefined;
    r.destroy(); // ends without DISCONNECT: an accepted will is published now
    const wills = (await watcher.collect(200, 3)) as PublishPacket[];
    await w.check('after will PFI');
    assert.deepEqual(wills.map((p) => [p.properties?.payloadFormatIndicator, p.payload.toString('hex')]), [], 'no will marked UTF-8 with a payload that is not');
    assert.equal(connack?.reasonCode, 0x99);
  });
});

// ------------------------------------------------------------------------------------------------
describe('slow and oversize input', () => {
  it('a CONNECT trickled one byte every 100 ms is cut by the connect timeout', async (t) => {
    const h = await setup(t, { connectTimeout: 1000 });
    const w = await witnesses(h);
    const bytes = connectBytes({ level: 4, clientId: 'trickle-'.repeat(8) });
    const c = await h.open();
    const start = Date.now();
    let sent = 0;
    while (!c.closed && sent < bytes.length && Date.now() - start < 5000) {
      c.sendBytes(bytes.subarray(sent, sent + 1));
      sent++;
      await delay(100);
    }
    await c.waitClosed(1000);
    const took = Date.now() - start;
    assert.ok(sent < bytes.length, `cut before the CONNECT completed (${sent}/${bytes.length} bytes)`);
    assert.ok(took < 2000, `closed after ${took} ms (connectTimeout 1000)`);
    assert.deepEqual(c.packets, []);
    await w.check('after trickle');
  });

  it('a 256 MB remaining length then nothing (default maxPacketSize): closed at once, nothing allocated', async (t) => {
    const h = await setup(t, { connectTimeout: 2000 });
    const w = await witnesses(h);
    const base = process.memoryUsage().arrayBuffers;
    const socks: RawClient[] = [];
    for (const first of [0x10, 0x30, 0x82]) {
      const c = await h.open();
      c.sendBytes([first, 0xff, 0xff, 0xff, 0x7f, 0x00]);
      socks.push(c);
    }
    for (const c of socks) await c.waitClosed(1000);
    assert.ok(process.memoryUsage().arrayBuffers - base < 16 * 2 ** 20);
    await w.check('after 256 MB announcements');
  });

  it('a 256 MB remaining length then nothing (maxPacketSize at its maximum) does not allocate 256 MB per connection', async (t) => {
    const h = await setup(t, { connectTimeout: 1500, maxPacketSize: 268_435_460 });
    const w = await witnesses(h);
    const base = process.memoryUsage().arrayBuffers;
    const socks: RawClient[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await h.open();
      c.sendBytes([0x10, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x04, 0x4d, 0x51]);
      socks.push(c);
    }
    await delay(200);
    const grown = process.memoryUsage().arrayBuffers - base;
    for (const c of socks) c.destroy();
    await w.check('after 256 MB announcements');
    assert.ok(grown < 64 * 2 ** 20, `arrayBuffers grew by ${Math.round(grown / 2 ** 20)} MiB for 18 bytes received`);
  });
});

// ------------------------------------------------------------------------------------------------
/** A raw WebSocket: frames in, decoded packets out. */
async function rawWs(port: number, protocols?: string | string[], version: ProtocolVersion = 4) {
  const sock = protocols === undefined ? new WebSocket(`ws://127.0.0.1:${port}/mqtt`) : new WebSocket(`ws://127.0.0.1:${port}/mqtt`, protocols);
  const packets: Packet[] = [];
  const decoder = new PacketDecoder({ protocolVersion: version, role: 'client' });
  let closeCode: number | undefined;
  sock.on('message', (data: Buffer) => decoder.feed(data, (p) => packets.push(p)));
  const closed = new Promise<number>((resolve) =>
    sock.on('close', (code) => {
      closeCode = code;
      resolve(code);
    }),
  );
  sock.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    sock.once('open', () => resolve());
    sock.once('unexpected-response', (_req, res) => {
      res.destroy();
      reject(new Error(`HTTP ${res.statusCode}`));
    });
    sock.once('error', reject);
  });
  const next = async (type: number, timeoutMs = 2000): Promise<Packet> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = packets.findIndex((p) => p.type === type);
      if (i >= 0) return packets.splice(i, 1)[0]!;
      if (closeCode !== undefined) throw new Error(`closed (${closeCode}) while waiting for packet ${type}`);
      if (Date.now() > deadline) throw new Error(`no packet ${type}`);
      await delay(5);
    }
  };
  const closedWithin = (ms: number) => Promise.race([closed, delay(ms).then(() => undefined)]);
  return { sock, packets, next, closed, closedWithin, get closeCode() { return closeCode; } };
}

const wsListeners = (extra: Record<string, unknown> = {}) => ({
  listeners: [
    { type: 'tcp' as const, host: '127.0.0.1', port: 0 },
    { type: 'ws' as const, host: '127.0.0.1', port: 0 },
  ],
  ...extra,
});

describe('WebSocket', () => {
  it('no subprotocol offered is served; "mqtt" among others is chosen; a wrong one alone is 400', async (t) => {
    const h = await setup(t, wsListeners());
    const port = h.broker.address(1).port;
    for (const protocols of [undefined, ['chat', 'mqtt'], ['MQTT']] as const) {
      let c;
      try {
        c = await rawWs(port, protocols as string[] | undefined);
      } catch (err) {
        assert.deepEqual(protocols, ['MQTT'], `${JSON.stringify(protocols)}: ${(err as Error).message}`);
        assert.match((err as Error).message, /400/);
        continue;
      }
      if (protocols) assert.equal(c.sock.protocol, 'mqtt');
      c.sock.send(enc({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: '' }));
      assert.equal(((await c.next(2)) as ConnackPacket).reasonCode, 0);
      c.sock.close();
    }
    await assert.rejects(rawWs(port, 'mqttv5'), /400/);
  });

  it('one packet in fragmented binary frames (with a ping between fragments) is reassembled; many packets in one fragmented message too', async (t) => {
    const h = await setup(t, wsListeners());
    const w = await witnesses(h);
    const c = await rawWs(h.broker.address(1).port, 'mqtt');
    const connect = enc({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'ws-frag' });
    c.sock.send(connect.subarray(0, 3), { binary: true, fin: false });
    c.sock.ping();
    c.sock.send(connect.subarray(3, 9), { binary: true, fin: false });
    c.sock.send(connect.subarray(9), { binary: true, fin: true });
    assert.equal(((await c.next(2)) as ConnackPacket).reasonCode, 0);
    const batch = Buffer.concat([
      enc({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'wsf/#', qos: 1 }] }),
      enc(pub('wsf/a', 'one', 1, 2)),
      enc(pub('by/x', 'from-ws', 1, 3)),
    ]);
    for (let i = 0; i < batch.length; i += 4) c.sock.send(batch.subarray(i, i + 4), { binary: true, fin: i + 4 >= batch.length });
    await c.next(9);
    assert.equal(((await c.next(3)) as PublishPacket).payload.toString(), 'one');
    const seen = (await w.bySub.next(3)) as PublishPacket;
    assert.equal(seen.payload.toString(), 'from-ws');
    w.bySub.send({ type: 4, packetId: seen.packetId! });
    c.sock.close();
    await w.check('after fragmented frames');
  });

  it('a fragmented message more than 1 MiB above maxPacketSize (small fragments) is closed with 1009 and the will is published', async (t) => {
    const h = await setup(t, wsListeners({ maxPacketSize: 4096 }));
    const w = await witnesses(h);
    const watcher = await h.subscriber('wsw/#', 0, { clientId: 'wsw-watch' });
    const c = await rawWs(h.broker.address(1).port, 'mqtt');
    c.sock.send(enc({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'ws-big', will: { topic: 'wsw/big', payload: Buffer.from('gone'), qos: 0, retain: false } }));
    await c.next(2);
    for (let i = 0; i < 20 && c.closeCode === undefined; i++) c.sock.send(Buffer.alloc(64 * 1024, 0x31), { binary: true, fin: false });
    assert.equal(await c.closedWithin(2000), 1009);
    assert.equal(((await watcher.next(3)) as PublishPacket).payload.toString(), 'gone');
    await w.check('after oversize fragmented message');
  });

  it('a text frame after CONNECT closes with 1003 and publishes the will; a garbage HTTP request on the ws port harms nobody', async (t) => {
    const h = await setup(t, wsListeners());
    const w = await witnesses(h);
    const watcher = await h.subscriber('wst/#', 0, { clientId: 'wst-watch' });
    const c = await rawWs(h.broker.address(1).port, 'mqtt');
    c.sock.send(enc({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'ws-text', will: { topic: 'wst/t', payload: Buffer.from('txt'), qos: 0, retain: false } }));
    await c.next(2);
    c.sock.send(enc(pub('by/x', 'as text', 0)).toString('latin1'));
    assert.equal(await c.closedWithin(2000), 1003);
    assert.equal(((await watcher.next(3)) as PublishPacket).payload.toString(), 'txt');
    // Not HTTP at all, then a broken upgrade.
    for (const junk of ['\x00\xff\x10garbage\r\n\r\n', 'GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: !!\r\n\r\n']) {
      const s = netConnect(h.broker.address(1).port, '127.0.0.1');
      s.on('error', () => {});
      s.write(junk);
      await new Promise<void>((resolve) => {
        s.on('close', () => resolve());
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 500);
      });
    }
    await w.check('after text frame and HTTP junk');
  });

  it('fuzzed bytes in random binary frames (before and after CONNECT) close only that WebSocket', async (t) => {
    const h = await setup(t, wsListeners({ connectTimeout: 500, maxPacketSize: 16 * 1024 }));
    const w = await witnesses(h);
    const port = h.broker.address(1).port;
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 5 }),
        async (connectFirst, frames) => {
          const c = await rawWs(port, 'mqtt', 5);
          if (connectFirst) {
            c.sock.send(enc({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: '' }, 5));
            await c.next(2);
          }
          for (const f of frames) if (c.closeCode === undefined) c.sock.send(Buffer.from(f), { binary: true });
          await c.closedWithin(40);
          for (const p of c.packets) if (p.type === 14) assert.ok(ERROR_CODES.has((p as DisconnectPacket).reasonCode ?? 0));
          c.sock.terminate();
          await w.check('after ws fuzz');
        },
      ),
      { numRuns: 30, seed: 0x3b5 },
    );
    // And the WebSocket listener itself still serves.
    const c = await rawWs(port, 'mqtt');
    c.sock.send(enc({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'ws-after' }));
    assert.equal(((await c.next(2)) as ConnackPacket).reasonCode, 0);
    c.sock.close();
  });

  it('a connection to the ws port that sends nothing, or half an HTTP request, is cut by the connect timeout like on TCP', async (t) => {
    const h = await setup(t, wsListeners({ connectTimeout: 500 }));
    const port = h.broker.address(1).port;
    const outcomes = await Promise.all(
      ([['nothing', ''], ['half a request', 'GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n']] as const).map(async ([what, bytes]) => {
        const start = Date.now();
        const ms = await new Promise<number | undefined>((resolve) => {
          const s = netConnect(port, '127.0.0.1', () => s.write(bytes));
          s.on('error', () => {});
          s.on('close', () => resolve(Date.now() - start));
          setTimeout(() => {
            s.destroy();
            resolve(undefined);
          }, 2500).unref();
        });
        return `${what}: ${ms === undefined ? 'still open after 2500 ms' : `closed after ${ms} ms`}`;
      }),
    );
    assert.ok(outcomes.every((o) => o.includes('closed')), outcomes.join('; '));
  });

  it('a CONNECT trickled over WebSocket one byte per frame every 100 ms is cut by the connect timeout', async (t) => {
    const h = await setup(t, wsListeners({ connectTimeout: 800 }));
    const c = await rawWs(h.broker.address(1).port, 'mqtt');
    const bytes = connectBytes({ clientId: 'ws-trickle-'.repeat(4) });
    const start = Date.now();
    for (let i = 0; i < bytes.length && c.closeCode === undefined && Date.now() - start < 4000; i++) {
      c.sock.send(bytes.subarray(i, i + 1), { binary: true });
      await delay(100);
    }
    await c.closedWithin(1000);
    assert.notEqual(c.closeCode, undefined, 'closed');
    assert.ok(Date.now() - start < 2000, `closed after ${Date.now() - start} ms`);
    assert.deepEqual(c.packets, []);
  });
});

// ------------------------------------------------------------------------------------------------
describe('TLS listener', () => {
  const certs = makeCerts();
  after(() => certs?.cleanup());

  /** MQTT over a real TLS connection: CONNECT, CONNACK. */
  async function tlsConnack(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, ca: certs!.ca, servername: 'localhost' }, () => s.write(enc({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'tls-ok' })));
      const d = new PacketDecoder({ protocolVersion: 4, role: 'client' });
      s.on('data', (chunk: Buffer) =>
        d.feed(chunk, (p) => {
          s.destroy();
          resolve((p as ConnackPacket).reasonCode);
        }),
      );
      s.on('error', reject);
    });
  }

  it('plain MQTT, a garbage ClientHello, an SSLv2 hello and random bytes: closed, one short log line each, the TLS listener and others keep working', { skip: certs ? false : 'openssl not installed' }, async (t) => {
    const logs: string[] = [];
    const { pino } = await import('pino');
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(line) });
    const h = await setup(t, {
      logger,
      connectTimeout: 800,
      listeners: [
        { type: 'tcp', host: '127.0.0.1', port: 0 },
        { type: 'tls', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey },
      ],
    });
    const w = await witnesses(h);
    const port = h.broker.address(1).port;
    const rnd = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 151 + 7) & 0xff));
    const inputs: [string, Buffer][] = [
      ['plain MQTT CONNECT', connectBytes({ clientId: 'plain-on-tls' })],
      ['plain MQTT PUBLISH', enc(pub('a/b', 'x'))],
      ['garbage ClientHello', Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03]), rnd(0x3c - 2)])],
      ['ClientHello with absurd lengths', Buffer.from([0x16, 0x03, 0x03, 0x00, 0x08, 0x01, 0xff, 0xff, 0xff, 0x03, 0x03, 0x00, 0x00])],
      ['SSLv2 hello', Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10, ...rnd(37)])],
      ['random bytes', rnd(300)],
      ['HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ];
    const before = logs.length;
    for (const [what, bytes] of inputs) {
      const start = Date.now();
      const ms = await new Promise<number | undefined>((resolve) => {
        const s = netConnect(port, '127.0.0.1', () => s.write(bytes));
        s.on('error', () => {});
        s.on('data', () => {});
        s.on('close', () => resolve(Date.now() - start));
        setTimeout(() => {
          s.destroy();
          resolve(undefined);
        }, 2500).unref();
      });
      assert.ok(ms !== undefined && ms < 2000, `${what}: closed (${ms} ms)`);
    }
    await delay(50);
    const lines = logs.slice(before);
    assert.ok(lines.length <= inputs.length * 2, `log lines for ${inputs.length} bad connections: ${lines.length}`);
    for (const line of lines) {
      assert.ok(!/"stack"|\\n\s+at /.test(line), `no stack trace in the log: ${line}`);
      assert.ok(line.length < 600, `short log line: ${line}`);
    }
    assert.equal(await tlsConnack(port), 0, 'a real TLS client is still served');
    await w.check('after TLS garbage');
  });

  it('a TCP connection to the TLS port that sends nothing or half a record is cut by the handshake timeout (connectTimeout)', { skip: certs ? false : 'openssl not installed' }, async (t) => {
    const h = await setup(t, {
      connectTimeout: 500,
      listeners: [{ type: 'tls', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey }],
    });
    const results = await Promise.all(
      [Buffer.alloc(0), Buffer.from([0x16, 0x03, 0x01, 0x3f, 0xff, 0x01])].map((bytes) => {
        const start = Date.now();
        return new Promise<number | undefined>((resolve) => {
          const s = netConnect(h.port, '127.0.0.1', () => s.write(bytes));
          s.on('error', () => {});
          s.on('close', () => resolve(Date.now() - start));
          setTimeout(() => {
            s.destroy();
            resolve(undefined);
          }, 2000).unref();
        });
      }),
    );
    for (const ms of results) assert.ok(ms !== undefined && ms < 1800, `closed after ${ms} ms (connectTimeout 500): ${JSON.stringify(results)}`);
  });
});

// ------------------------------------------------------------------------------------------------
/** Starts `petrel broker -c file`; resolves with the TCP port from its "listening" line, and a stop() that gives all output. */
async function cliBroker(file: string): Promise<{ port: number; stop(): Promise<{ stdout: string; stderr: string; code: number | null }> }> {
  // --storage memory: no ./petrel-data in the working directory (another test's broker may hold it).
  const child = spawn(process.execPath, [cli, 'broker', '-c', file, '--storage', 'memory'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 5000;
  let port: number | undefined;
  while (port === undefined) {
    const m = /"msg":"listening"/.test(stdout) ? /"port":(\d+)[^\n]*"msg":"listening"/.exec(stdout) : null;
    if (m) port = Number(m[1]);
    else if (Date.now() > deadline || child.exitCode !== null) {
      child.kill();
      throw new Error(`broker did not start: ${stderr}${stdout}`);
    } else await delay(20);
  }
  return {
    port,
    async stop() {
      await delay(300); // the log destination flushes every 200 ms
      child.kill('SIGTERM');
      const code = await exited;
      return { stdout, stderr, code };
    },
  };
}

describe('passwords never reach the log', () => {
  it('wrong passwords (3.1.1, 5.0, unknown user, no user name, malformed CONNECT) are refused and never logged, even at trace', async () => {
    const pwFile = join(dir, 'passwd');
    await setPassword(pwFile, 'alice', 'Right-Horse-Battery-91');
    const cfg = join(dir, 'pw.json');
    writeFileSync(cfg, JSON.stringify({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], passwordFile: pwFile, allowAnonymous: false, logLevel: 'trace' }));
    const broker = await cliBroker(cfg);
    const secrets = ['Wrong-Pass-31337', 'Wrong5-Pass-77777', 'Unknown-User-Pw-5150', 'NoUser-Pw-2468', 'Malformed-Pw-1357', 'Right-Horse-Battery-91'];
    const codes: number[] = [];
    try {
      const tries: [ProtocolVersion, string | undefined, string][] = [
        [4, 'alice', secrets[0]!],
        [5, 'alice', secrets[1]!],
        [4, 'mallory', secrets[2]!],
        [5, undefined, secrets[3]!],
      ];
      for (const [v, username, password] of tries) {
        const { client, connack } = await RawClient.connect(broker.port, { protocolVersion: v, clientId: `pw-${v}`, username, password: Buffer.from(password) });
        codes.push(connack.reasonCode);
        client.destroy();
      }
      // A malformed CONNECT that carries a password (trailing junk after it).
      const bad = await RawClient.open(broker.port);
      bad.sendBytes(connectBytes({ flags: 0xc2, clientId: 'pw-bad', payload: [...str('alice'), ...str(secrets[4]!), 0x00, 0x01] }));
      await bad.waitClosed();
      // The right password works (and is not logged either).
      const { client: ok, connack } = await RawClient.connect(broker.port, { clientId: 'pw-ok', username: 'alice', password: Buffer.from(secrets[5]!) });
      assert.equal(connack.reasonCode, 0);
      ok.destroy();
    } finally {
      const { stdout, stderr } = await broker.stop();
      const out = stdout + stderr;
      assert.match(out, /bad username or password/, 'refusals are logged');
      for (const s of secrets) {
        const b = Buffer.from(s);
        for (const form of [s, b.toString('base64'), b.toString('hex'), JSON.stringify([...b]).slice(1, -1)]) {
          assert.ok(!out.includes(form), `the log contains password ${s} (as ${form})`);
        }
      }
    }
    assert.deepEqual(codes, [0x04, 0x86, 0x04, 0x87], 'CONNACK 0x04 (3.1.1) / 0x86 (5.0); 0x87 for a password without user name (anonymous refused)');
  });
});

// ------------------------------------------------------------------------------------------------
describe('bad config files through the CLI', () => {
  /** Runs `petrel broker -c <file> [args]` with `content`; returns status and output. */
  function run(name: string, content: string, args: string[] = []) {
    const file = join(dir, name);
    writeFileSync(file, content);
    const r = spawnSync(process.execPath, [cli, 'broker', '-c', file, ...args], { encoding: 'utf8', timeout: 5000 });
    return { status: r.status, stderr: r.stderr, stdout: r.stdout, file };
  }
  function expectOneLine(r: ReturnType<typeof run>, field: RegExp, what: string): void {
    assert.ok(r.status !== 0 && r.status !== null, `${what}: exits non-zero (got ${r.status}; stdout ${r.stdout.slice(0, 200)})`);
    assert.doesNotMatch(r.stderr + r.stdout, /^\s+at /m, `${what}: no stack trace: ${r.stderr}`);
    // a YAML / JSON syntax error's line is followed by an excerpt of the file ("  3 | ...", a caret line)
    assert.equal(r.stderr.trim().split('\n').filter((l) => !/^ +\d* \| /.test(l)).length, 1, `${what}: one line: ${r.stderr}`);
    assert.match(r.stderr, field, `${what}: names the field`);
  }
  const tcp0 = [{ type: 'tcp', host: '127.0.0.1', port: 0 }];

  it('unknown key, wrong type, bad port, invalid JSON / YAML, missing config / password / cert file: non-zero exit, one line, no stack', () => {
    const cases: [string, string, RegExp][] = [
      ['unknown.json', JSON.stringify({ listeners: tcp0, maxQoS: 1 }), /maxQoS: unknown key/],
      ['type.json', JSON.stringify({ listeners: tcp0, maxInflight: 'ten' }), /maxInflight: must be/],
      ['nested.yaml', 'listeners:\n  - { type: tcp, port: 0, host: 127.0.0.1 }\nacl:\n  rules:\n    - { permission: allow, action: all, topic: [a] }\n', /acl\.rules\[0\]\.topic/],
      ['port.json', JSON.stringify({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 70000 }] }), /listeners\[0\]\.port: must be an integer/],
      ['port.yaml', 'port: "1883"\n', /^petrel: config: port: must be an integer/],
      ['float.yaml', 'listeners: [{ type: tcp, host: 127.0.0.1, port: 0 }]\nmaxPacketSize: 1500.5\n', /maxPacketSize: must be an integer/],
      ['bad.json', '{"listeners": [ ', /bad\.json is not valid JSON/],
      ['bad.yaml', 'listeners: [ {type: tcp\n', /bad\.yaml is not valid YAML/],
      ['tabs.yaml', 'listeners:\n\t- type: tcp\n', /tabs\.yaml is not valid YAML/],
      ['pw.json', JSON.stringify({ listeners: tcp0, passwordFile: join(dir, 'no-such-passwd') }), /password file .*no-such-passwd/],
      ['cert.json', JSON.stringify({ listeners: [{ type: 'tls', host: '127.0.0.1', port: 0, cert: join(dir, 'no-such.crt'), key: join(dir, 'no-such.key') }] }), /no-such\.crt/],
    ];
    for (const [name, content, field] of cases) expectOneLine(run(name, content), field, name);
    const missing = spawnSync(process.execPath, [cli, 'broker', '-c', join(dir, 'absent.yaml')], { encoding: 'utf8', timeout: 5000 });
    expectOneLine({ status: missing.status, stderr: missing.stderr, stdout: missing.stdout, file: '' }, /cannot read config file .*absent\.yaml: ENOENT/, 'absent file');
  });

  it('a "__proto__" key is an unknown key (one line, exit 2)', () => {
    expectOneLine(run('proto.json', '{"__proto__": {"maxQos": 1}}', ['--print-config']), /__proto__: unknown key/, '__proto__');
  });

  it('"constructor" / "toString" keys and listener type "constructor" are refused, not silently accepted', () => {
    expectOneLine(run('ctor.json', JSON.stringify({ listeners: tcp0, constructor: 5 }), ['--print-config']), /constructor: unknown key/, 'constructor');
    expectOneLine(run('tostr.yaml', 'listeners: [{type: tcp, host: 127.0.0.1, port: 0, toString: 1}]\n', ['--print-config']), /listeners\[0\]\.toString: unknown key/, 'toString');
    expectOneLine(run('ltype.json', JSON.stringify({ listeners: [{ type: 'constructor', port: 0 }] }), ['--print-config']), /listeners\[0\]\.type: must be one of/, 'listener type');
  });

  it('a missing certificate file names the listener field (listeners[0].cert)', () => {
    const r = run('cert2.json', JSON.stringify({ listeners: [{ type: 'tls', host: '127.0.0.1', port: 0, cert: join(dir, 'gone.crt'), key: join(dir, 'gone.key') }] }));
    expectOneLine(r, /listeners\[0\]\.cert/, 'missing cert');
  });

  it('a file whose top level is not a mapping says so (not ": must be an object")', () => {
    for (const [name, content] of [['list.json', '[1, 2]'], ['scalar.yaml', 'hello\n']] as const) {
      const r = run(name, content, ['--print-config']);
      expectOneLine(r, /config: \S/, name);
      assert.doesNotMatch(r.stderr, /config: : /);
    }
  });
});
