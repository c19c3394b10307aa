// Property-based tests (fast-check): encode → decode is the identity (modulo defaults), any
// chunking decodes the same, and garbage or mutated bytes give only MqttProtocolError.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ProtocolVersion, QoS } from '../../src/protocol/constants.js';
import { PacketDecoder, type DecoderOptions } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import { MqttProtocolError } from '../../src/protocol/errors.js';
import type { Packet, Properties, Subscription, WillMessage } from '../../src/protocol/packets.js';
import { PROPERTY_DEFINITIONS, type PropertyPlace } from '../../src/protocol/properties.js';
import { ALLOWED_REASON_CODES } from '../../src/protocol/codec-util.js';
import { split } from './helpers.js';
import { isValidTopicFilter } from '../../src/protocol/topic.js';

type Role = 'server' | 'client';
interface Sample {
  packet: Packet;
  role: Role;
}

const text = (maxLength = 8) => fc.string({ unit: 'grapheme', maxLength }).filter((s) => !s.includes('\u0000'));
const topicName = text(12).filter((s) => s.length > 0 && !s.includes('+') && !s.includes('#'));
const bytes = (maxLength = 24) => fc.uint8Array({ maxLength }).map((u) => Buffer.from(u));
const packetId = fc.integer({ min: 1, max: 65535 });
const qos = fc.constantFrom<QoS>(0, 1, 2);
const vbi = fc.integer({ min: 1, max: 268_435_455 });

function codes(type: number): number[] {
  const t = ALLOWED_REASON_CODES[type]!;
  return [...t.keys()].filter((c) => t[c] === 1);
}

/** Removes keys whose value is undefined (the decoder never produces them). */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function propsArb(place: PropertyPlace, opts: { multiSubscriptionId?: boolean; noSubscriptionId?: boolean } = {}) {
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const def of PROPERTY_DEFINITIONS) {
    if (!def.places.includes(place)) continue;
    if (def.name === 'subscriptionIdentifier' && opts.noSubscriptionId) continue;
    let arb: fc.Arbitrary<unknown>;
    switch (def.type) {
      case 'byte':
        arb = fc.integer({ min: 0, max: 1 });
        break;
      case 'twoByteInteger':
        arb = fc.integer({ min: def.name === 'receiveMaximum' ? 1 : 0, max: 65535 });
        break;
      case 'fourByteInteger':
        arb = fc.integer({ min: def.name === 'maximumPacketSize' ? 1 : 0, max: 0xffffffff });
        break;
      case 'variableByteInteger':
        arb = opts.multiSubscriptionId ? fc.oneof(vbi, fc.array(vbi, { minLength: 1, maxLength: 3 })) : vbi;
        break;
      case 'utf8String':
        arb = def.name === 'responseTopic' ? topicName : text();
        break;
      case 'utf8StringPair':
        arb = fc.array(fc.tuple(text(), text()), { minLength: 1, maxLength: 3 });
        break;
      case 'binaryData':
        arb = bytes();
        break;
    }
    model[def.name] = arb;
  }
  return fc.record(model, { requiredKeys: [] }) as fc.Arbitrary<Properties>;
}

/** Properties as the decoder returns them. */
function normProps(p: Properties | undefined): Properties {
  const out = defined({ ...(p ?? {}) });
  if (Array.isArray(out.subscriptionIdentifier) && out.subscriptionIdentifier.length === 1) {
    out.subscriptionIdentifier = out.subscriptionIdentifier[0];
  }
  return out;
}

function packetArb(v: ProtocolVersion): fc.Arbitrary<Sample> {
  const v5 = v === 5;
  const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
  const props = (place: PropertyPlace, o?: Parameters<typeof propsArb>[1]) =>
    v5 ? opt(propsArb(place, o)) : fc.constant(undefined);
  const reason = (type: number) => (v5 ? opt(fc.constantFrom(...codes(type))) : fc.constant(undefined));

  const will: fc.Arbitrary<WillMessage> = fc
    .record({ topic: topicName, payload: bytes(), qos, retain: fc.boolean(), properties: props('will') })
    .map(defined);
  const connect = fc
    .record({
      clientId: text(),
      clean: fc.boolean(),
      keepAlive: fc.integer({ min: 0, max: 65535 }),
      username: opt(text()),
      password: opt(bytes()),
      will: opt(will),
      properties: props(1),
    })
    .map((r): Sample => {
      if (!v5 && r.password !== undefined && r.username === undefined) r.username = 'u';
      return { packet: defined({ type: 1, protocolName: 'MQTT', protocolVersion: 4, ...r }) as Packet, role: 'server' };
    });
  const connack = fc
    .record({
      // 3.1 has no Session Present flag (the byte is reserved).
      sessionPresent: v === 3 ? fc.constant(false) : fc.boolean(),
      reasonCode: v5 ? fc.constantFrom(...codes(2)) : fc.integer({ min: 0, max: 5 }),
      properties: props(2),
    })
    .map((r): Sample => ({ packet: defined({ type: 2 as const, ...r }), role: 'client' }));
  const publish = (role: Role) =>
    fc
      .record({
        topic: topicName,
        payload: bytes(40),
        qos,
        retain: fc.boolean(),
        dup: fc.boolean(),
        packetId,
        properties: props(3, role === 'client' ? { multiSubscriptionId: true } : { noSubscriptionId: true }),
      })
      .map((r): Sample => ({ packet: defined({ type: 3 as const, ...r }), role }));
  const ack = (type: 4 | 5 | 6 | 7, role: Role) =>
    fc
      .record({ packetId, reasonCode: reason(type), properties: props(type) })
      .map((r): Sample => ({ packet: defined({ type, ...r }), role }));
  const subscription: fc.Arbitrary<Subscription> = fc
    .record({
      // 3.1.x cannot answer an empty filter: it closes the connection [MQTT-4.7.3-1].
      topicFilter: v5 ? text() : text().filter((f) => f.length > 0),
      qos,
      noLocal: opt(fc.boolean()),
      retainAsPublished: opt(fc.boolean()),
      retainHandling: opt(fc.constantFrom<0 | 1 | 2>(0, 1, 2)),
    })
    .map(defined);
  const subscribe = fc
    .record({ packetId, subscriptions: fc.array(subscription, { minLength: 1, maxLength: 4 }), properties: props(8) })
    .map((r): Sample => ({ packet: defined({ type: 8 as const, ...r }), role: 'server' }));
  const suback = fc
    .record({
      packetId,
      reasonCodes: fc.array(v5 ? fc.constantFrom(...codes(9)) : fc.constantFrom(0, 1, 2, 0x80), { minLength: 1, maxLength: 4 }),
      properties: props(9),
    })
    .map((r): Sample => ({ packet: defined({ type: 9 as const, ...r }), role: 'client' }));
  const unsubscribe = fc
    .record({ packetId, topicFilters: fc.array(v5 ? text() : text().filter(isValidTopicFilter), { minLength: 1, maxLength: 4 }), properties: props(10) })
    .map((r): Sample => ({ packet: defined({ type: 10 as const, ...r }), role: 'server' }));
  const unsuback = fc
    .record({
      packetId,
      reasonCodes: v5 ? fc.array(fc.constantFrom(...codes(11)), { minLength: 1, maxLength: 4 }) : fc.constant(undefined),
      properties: props(11),
    })
    .map((r): Sample => ({ packet: defined({ type: 11 as const, ...r }), role: 'client' }));
  const disconnect = (role: Role) =>
    fc
      .record({ reasonCode: reason(14), properties: props(14) })
      .map((r): Sample => ({ packet: defined({ type: 14 as const, ...r }), role }));
  const auth = fc
    .record({ reasonCode: reason(15), properties: props(15) })
    .map((r): Sample => ({ packet: defined({ type: 15 as const, ...r }), role: 'server' }));

  const all: fc.Arbitrary<Sample>[] = [
    connect,
    connack,
    publish('server'),
    publish('client'),
    ack(4, 'server'),
    ack(5, 'client'),
    ack(6, 'server'),
    ack(7, 'client'),
    subscribe,
    suback,
    unsubscribe,
    unsuback,
    fc.constant<Sample>({ packet: { type: 12 }, role: 'server' }),
    fc.constant<Sample>({ packet: { type: 13 }, role: 'client' }),
    disconnect('server'),
    disconnect('client'),
  ];
  if (v5) all.push(auth);
  return fc.oneof(...all);
}

/** The packet the decoder returns for `p` encoded for `v`. */
function normalize(p: Packet, v: ProtocolVersion): Packet {
  const v5 = v === 5;
  switch (p.type) {
    case 1: {
      const out = { ...p, protocolName: v === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: v };
      if (v5) out.properties = normProps(p.properties);
      else delete out.properties;
      if (p.will) {
        out.will = { ...p.will };
        if (v5) out.will.properties = normProps(p.will.properties);
        else delete out.will.properties;
      }
      return out;
    }
    case 2:
      return v5 ? { ...p, properties: normProps(p.properties) } : defined({ ...p, properties: undefined });
    case 3: {
      const out = { ...p };
      if (p.qos === 0) {
        out.dup = false;
        delete out.packetId;
      }
      // A 5.0 PUBLISH without properties decodes with `properties: undefined` (no object per message).
      if (v5) {
        const props = normProps(p.properties);
        out.properties = Object.keys(props).length > 0 ? props : undefined;
      } else {
        delete out.properties;
      }
      return out;
    }
    case 4:
    case 5:
    case 6:
    case 7:
      return v5
        ? { type: p.type, packetId: p.packetId, reasonCode: p.reasonCode ?? 0, properties: normProps(p.properties) }
        : { type: p.type, packetId: p.packetId };
    case 8:
      return defined({
        type: 8 as const,
        packetId: p.packetId,
        properties: v5 ? normProps(p.properties) : undefined,
        subscriptions: p.subscriptions.map((s) =>
          v5
            ? {
                topicFilter: s.topicFilter,
                qos: s.qos,
                noLocal: s.noLocal ?? false,
                retainAsPublished: s.retainAsPublished ?? false,
                retainHandling: s.retainHandling ?? 0,
              }
            : { topicFilter: s.topicFilter, qos: s.qos },
        ),
      });
    case 9:
    case 10:
      return v5 ? { ...p, properties: normProps(p.properties) } : defined({ ...p, properties: undefined });
    case 11:
      return v5 ? { ...p, properties: normProps(p.properties) } : { type: 11, packetId: p.packetId };
    case 12:
    case 13:
      return p;
    case 14:
    case 15:
      return v5 ? { type: p.type, reasonCode: p.reasonCode ?? 0, properties: normProps(p.properties) } : { type: 14 };
  }
}

function decodeChunks(chunks: Buffer[], options: DecoderOptions): Packet[] {
  const d = new PacketDecoder(options);
  const out: Packet[] = [];
  for (const c of chunks) d.feed(c, (p) => out.push(p));
  assert.equal(d.bufferedBytes, 0);
  return out;
}

/** Feeds `chunks`; only MqttProtocolError may escape. Returns the number of packets decoded. */
function feedTolerant(chunks: Buffer[], options: DecoderOptions): number {
  const d = new PacketDecoder({ maxPacketSize: 64 * 1024, ...options });
  let n = 0;
  try {
    for (const c of chunks) d.feed(c, () => n++);
  } catch (err) {
    if (!(err instanceof MqttProtocolError)) throw err;
    assert.equal(typeof err.reasonCode, 'number');
  }
  return n;
}

const VERSIONS: ProtocolVersion[] = [3, 4, 5];

describe('property-based', () => {
  for (const v of VERSIONS) {
    it(`encode → decode is the identity for random packets of every type (version ${v})`, () => {
      fc.assert(
        fc.property(packetArb(v), ({ packet, role }) => {
          const decoded = decodeChunks([encodePacket(packet, v)], { protocolVersion: v, role });
          assert.deepStrictEqual(decoded, [normalize(packet, v)]);
        }),
        { numRuns: 1000 },
      );
    });

    it(`any split of a valid stream into chunks decodes the same packets (version ${v})`, () => {
      const serverPackets = packetArb(v).filter((s) => s.role === 'server' && s.packet.type !== 1);
      fc.assert(
        fc.property(
          fc.array(serverPackets, { minLength: 1, maxLength: 15 }),
          fc.array(fc.nat(), { maxLength: 12 }),
          (samples, cuts) => {
            const stream = Buffer.concat(samples.map((s) => encodePacket(s.packet, v)));
            const expected = samples.map((s) => normalize(s.packet, v));
            assert.deepStrictEqual(decodeChunks(split(stream, cuts), { protocolVersion: v }), expected);
          },
        ),
        { numRuns: 150 },
      );
    });

    it(`random mutations of valid packets give packets or MqttProtocolError only (version ${v})`, () => {
      fc.assert(
        fc.property(
          fc.array(packetArb(v), { minLength: 1, maxLength: 6 }),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
          fc.array(fc.nat(), { maxLength: 6 }),
          fc.constantFrom<Role>('server', 'client'),
          (samples, mutations, cuts, role) => {
            const stream = Buffer.from(Buffer.concat(samples.map((s) => encodePacket(s.packet, v))));
            for (const [i, byte] of mutations) stream[i % stream.length] = byte;
            feedTolerant(split(stream, cuts), { protocolVersion: v, role });
            feedTolerant(split(stream, cuts), { role });
          },
        ),
        { numRuns: 600 },
      );
    });
  }

  it('random garbage gives packets or MqttProtocolError only, in any chunking', () => {
    const options: DecoderOptions[] = [
      {},
      { protocolVersion: 3 },
      { protocolVersion: 4 },
      { protocolVersion: 5 },
      { protocolVersion: 4, role: 'client' },
      { protocolVersion: 5, role: 'client' },
    ];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 8 }), (garbage, cuts) => {
        const chunks = split(Buffer.from(garbage), cuts);
        for (const o of options) feedTolerant(chunks, o);
      }),
      { numRuns: 3000 },
    );
  });

  it('garbage after a valid CONNECT prefix exercises the body decoders', () => {
    // Packet types with a plausible header and random bodies, for every version.
    fc.assert(
      fc.property(
        fc.constantFrom<ProtocolVersion>(3, 4, 5),
        fc.constantFrom<Role>('server', 'client'),
        fc.integer({ min: 1, max: 15 }),
        fc.uint8Array({ maxLength: 60 }),
        (v, role, type, body) => {
          const flags = type === 6 || type === 8 || type === 10 ? 2 : 0;
          const stream = Buffer.concat([Buffer.from([(type << 4) | flags, body.length]), Buffer.from(body)]);
          feedTolerant([stream], { protocolVersion: v, role });
        },
      ),
      { numRuns: 3000 },
    );
  });
});
