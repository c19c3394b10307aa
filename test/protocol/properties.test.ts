// Every MQTT 5.0 property of table 2-4, in every packet that allows it (round trip through the
// encoder and decoder) and in every packet that does not (0x82 from decoder and encoder).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { Packet, Properties } from '../../src/protocol/packets.js';
import { PROPERTY_DEFINITIONS, type PropertyDefinition, type PropertyPlace } from '../../src/protocol/properties.js';
import { decodeOne, expectDecodeError, expectProtocolError, packet, str } from './helpers.js';

const samples: Required<Properties> = {
  payloadFormatIndicator: 1,
  messageExpiryInterval: 3600,
  contentType: 'application/json',
  responseTopic: 'resp/t',
  correlationData: Buffer.from('corr'),
  subscriptionIdentifier: 268_435_455,
  sessionExpiryInterval: 0xffffffff,
  assignedClientIdentifier: 'auto-1',
  serverKeepAlive: 120,
  authenticationMethod: 'SCRAM-SHA-1',
  authenticationData: Buffer.from([0, 1, 2, 255]),
  requestProblemInformation: 0,
  willDelayInterval: 30,
  requestResponseInformation: 1,
  responseInformation: 'resp/',
  serverReference: 'other:1883',
  reasonString: 'because ü',
  receiveMaximum: 65535,
  topicAliasMaximum: 10,
  topicAlias: 65535,
  maximumQoS: 1,
  retainAvailable: 0,
  userProperties: [
    ['k', 'v'],
    ['k', 'v2'],
    ['ü', '€'],
  ],
  maximumPacketSize: 1024,
  wildcardSubscriptionAvailable: 1,
  subscriptionIdentifierAvailable: 0,
  sharedSubscriptionAvailable: 1,
};

const ALL_PLACES: PropertyPlace[] = [1, 'will', 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15];

/** A packet (in decoded form) carrying `properties` at `place`, and the decoder role receiving it. */
function carrier(place: PropertyPlace, properties: Properties): { packet: Packet; role: 'server' | 'client' } {
  switch (place) {
    case 1:
      return {
        packet: { type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'c', properties },
        role: 'server',
      };
    case 'will':
      return {
        packet: {
          type: 1,
          protocolName: 'MQTT',
          protocolVersion: 5,
          clean: true,
          keepAlive: 0,
          clientId: 'c',
          properties: {},
          will: { topic: 'w', payload: Buffer.from('x'), qos: 0, retain: false, properties },
        },
        role: 'server',
      };
    case 2:
      return { packet: { type: 2, sessionPresent: false, reasonCode: 0, properties }, role: 'client' };
    case 3:
      return {
        packet: { type: 3, topic: 't', payload: Buffer.from('p'), qos: 0, retain: false, dup: false, properties },
        role: 'client',
      };
    case 4:
    case 5:
    case 6:
    case 7:
      return { packet: { type: place, packetId: 1, reasonCode: 0, properties }, role: 'server' };
    case 8:
      return {
        packet: {
          type: 8,
          packetId: 1,
          properties,
          subscriptions: [{ topicFilter: 'a', qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 }],
        },
        role: 'server',
      };
    case 9:
      return { packet: { type: 9, packetId: 1, properties, reasonCodes: [0] }, role: 'client' };
    case 10:
      return { packet: { type: 10, packetId: 1, properties, topicFilters: ['a'] }, role: 'server' };
    case 11:
      return { packet: { type: 11, packetId: 1, properties, reasonCodes: [0] }, role: 'client' };
    case 14:
      return { packet: { type: 14, reasonCode: 0, properties }, role: 'client' };
    case 15:
      return { packet: { type: 15, reasonCode: 0x18, properties }, role: 'server' };
    default:
      throw new Error(`no carrier for ${String(place)}`);
  }
}

/** Raw bytes (hex) of one property, written independently of the encoder. */
function propHex(def: PropertyDefinition, value: unknown): string {
  const id = def.id.toString(16).padStart(2, '0');
  switch (def.type) {
    case 'byte':
      return id + (value as number).toString(16).padStart(2, '0');
    case 'twoByteInteger':
      return id + (value as number).toString(16).padStart(4, '0');
    case 'fourByteInteger':
      return id + (value as number).toString(16).padStart(8, '0');
    case 'variableByteInteger': {
      let n = value as number;
      let out = '';
      do {
        let d = n % 128;
        n = Math.floor(n / 128);
        if (n > 0) d |= 0x80;
        out += d.toString(16).padStart(2, '0');
      } while (n > 0);
      return id + out;
    }
    case 'utf8String':
      return id + str(value as string);
    case 'utf8StringPair':
      return (value as [string, string][]).map(([k, v]) => id + str(k) + str(v)).join('');
    case 'binaryData':
      return id + str(value as Buffer);
  }
}

/** Raw bytes of a packet carrying the property bytes `props` (hex) at `place`. */
function carrierBytes(place: PropertyPlace, props: string): Buffer {
  const len = (props.length / 2).toString(16).padStart(2, '0');
  const p = len + props;
  const connect = (flags: string, rest: string) => packet(0x10, str('MQTT') + '05' + flags + '0000' + rest);
  switch (place) {
    case 1:
      return connect('02', p + str('c'));
    case 'will':
      return connect('06', '00' + str('c') + p + str('w') + str('x'));
    case 2:
      return packet(0x20, '0000' + p);
    case 3:
      return packet(0x30, str('t') + p + '70');
    case 4:
    case 5:
    case 7:
      return packet(place << 4, '0001 00' + p);
    case 6:
      return packet(0x62, '0001 00' + p);
    case 8:
      return packet(0x82, '0001' + p + str('a') + '00');
    case 9:
      return packet(0x90, '0001' + p + '00');
    case 10:
      return packet(0xa2, '0001' + p + str('a'));
    case 11:
      return packet(0xb0, '0001' + p + '00');
    case 14:
      return packet(0xe0, '00' + p);
    case 15:
      return packet(0xf0, '18' + p);
    default:
      throw new Error('no carrier');
  }
}

const role = (place: PropertyPlace) => carrier(place, {}).role;

describe('MQTT 5.0 properties (table 2-4)', () => {
  for (const def of PROPERTY_DEFINITIONS) {
    const value = samples[def.name];
    for (const place of ALL_PLACES) {
      const where = place === 'will' ? 'will properties' : `packet type ${place}`;
      if (def.places.includes(place)) {
        it(`${def.name} (0x${def.id.toString(16)}) round-trips in ${where}`, () => {
          const { packet: p, role: r } = carrier(place, { [def.name]: value });
          const encoded = encodePacket(p, 5);
          assert.deepStrictEqual(decodeOne(encoded, { protocolVersion: 5, role: r }), p);
          // And the independently written bytes decode to the same value.
          const decoded = decodeOne(carrierBytes(place, propHex(def, value)), { protocolVersion: 5, role: r });
          const props = decoded.type === 1 && place === 'will' ? decoded.will?.properties : (decoded as { properties?: Properties }).properties;
          assert.deepStrictEqual(props?.[def.name], value);
        });
      } else {
        it(`${def.name} (0x${def.id.toString(16)}) is a protocol error in ${where}`, () => {
          void expectDecodeError(carrierBytes(place, propHex(def, value)), { protocolVersion: 5, role: role(place) }, 0x82, /not allowed/);
          const { packet: p } = carrier(place, { [def.name]: value });
          void expectProtocolError(() => encodePacket(p, 5), 0x82);
        });
      }
    }
    if (def.name !== 'userProperties' && def.name !== 'subscriptionIdentifier') {
      it(`${def.name} twice is a protocol error`, () => {
        const place = def.places[0]!;
        const one = propHex(def, value);
        void expectDecodeError(carrierBytes(place, one + one), { protocolVersion: 5, role: role(place) }, 0x82, /more than once/);
      });
    }
  }

  it('subscriptionIdentifier: one decodes as a number, several as number[]', () => {
    const def = PROPERTY_DEFINITIONS.find((d) => d.name === 'subscriptionIdentifier')!;
    const one = decodeOne(carrierBytes(3, propHex(def, 7)), { protocolVersion: 5, role: 'client' }) as Extract<Packet, { type: 3 }>;
    assert.equal(one.properties?.subscriptionIdentifier, 7);
    const three = decodeOne(carrierBytes(3, propHex(def, 7) + propHex(def, 128) + propHex(def, 16384)), {
      protocolVersion: 5,
      role: 'client',
    }) as Extract<Packet, { type: 3 }>;
    assert.deepEqual(three.properties?.subscriptionIdentifier, [7, 128, 16384]);
  });

  it('properties are dropped when encoding for 3.1.1', () => {
    const p: Packet = { type: 4, packetId: 1, reasonCode: 0x80, properties: { reasonString: 'x' } };
    assert.equal(encodePacket(p, 4).toString('hex'), '40020001');
  });

  it('the encoder rejects out-of-range values with 0x82', () => {
    void expectProtocolError(() => encodePacket({ type: 14, properties: { sessionExpiryInterval: -1 } }, 5), 0x82);
    void expectProtocolError(() => encodePacket({ type: 14, properties: { sessionExpiryInterval: 2 ** 32 } }, 5), 0x82);
    void expectProtocolError(
      () => encodePacket({ type: 3, topic: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, properties: { topicAlias: 70000 } }, 5),
      0x82,
    );
    void expectProtocolError(
      () => encodePacket({ type: 8, packetId: 1, properties: { subscriptionIdentifier: [1, 2] }, subscriptions: [{ topicFilter: 'a', qos: 0 }] }, 5),
      0x82,
    );
  });
});
