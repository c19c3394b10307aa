// One broker per test plus the clients the test opens, all closed by the test's `after`:
// clients first (so MQTT.js does not try to reconnect), then the broker. Also records the
// broker's events and builds raw packet bytes for input no encoder will produce.
import type { TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Broker, BrokerEventMap, BrokerOptions } from '../../src/server/broker.js';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import type { ConnackPacket, ConnectPacket, Packet, PublishPacket } from '../../src/protocol/packets.js';
import { startBroker } from './broker.js';
import { delay, eventually } from './wait.js';
import { RawClient } from './raw-client.js';

type Recorded = { [K in keyof BrokerEventMap]: BrokerEventMap[K][] };

export interface Harness {
  broker: Broker;
  port: number;
  url: string;
  /** Every broker event since the start, with its arguments. */
  events: Recorded;
  /** A raw TCP connection, nothing sent yet. */
  open(version?: ProtocolVersion): Promise<RawClient>;
  /** A raw connection that completed CONNECT/CONNACK (the CONNACK may be a refusal). */
  connect(fields?: Partial<ConnectPacket>): Promise<{ client: RawClient; connack: ConnackPacket }>;
  /** A raw connection that must be accepted. */
  connected(fields?: Partial<ConnectPacket>): Promise<RawClient>;
  /** A raw connection subscribed to `filters` (SUBACK received). */
  subscriber(filters: string | string[], qos?: 0 | 1 | 2, fields?: Partial<ConnectPacket>): Promise<RawClient>;
  /** An MQTT.js client (reconnect off), connected. */
  mqtt(options?: IClientOptions): Promise<MqttClient>;
  /** An MQTT.js client (reconnect off), connecting: attach handlers before CONNACK arrives. */
  mqttConnecting(options?: IClientOptions): MqttClient;
}

export async function setup(t: TestContext, options: BrokerOptions = {}): Promise<Harness> {
  const { broker, port, url } = await startBroker(options);
  const events: Recorded = { connectReceived: [], clientConnected: [], clientDisconnected: [], clientRefused: [], subscribed: [], unsubscribed: [], published: [] };
  for (const name of Object.keys(events) as (keyof BrokerEventMap)[]) {
    broker.on(name, (...args: unknown[]) => (events[name] as unknown[][]).push(args));
  }
  const raws: RawClient[] = [];
  const mqtts: MqttClient[] = [];
  t.after(async () => {
    for (const c of mqtts) c.end(true);
    for (const c of raws) c.destroy();
    await broker.close();
  });
  let ids = 0;
  const h: Harness = {
    broker,
    port,
    url,
    events,
    async open(version = 4) {
      const c = await RawClient.open(port, version);
      raws.push(c);
      return c;
    },
    async connect(fields = {}) {
      const r = await RawClient.connect(port, fields);
      raws.push(r.client);
      return r;
    },
    async connected(fields = {}) {
      const { client, connack } = await h.connect({ clientId: `c${ids++}`, ...fields });
      if (connack.reasonCode !== 0) throw new Error(`CONNECT refused with 0x${connack.reasonCode.toString(16)}`);
      return client;
    },
    async subscriber(filters, qos = 0, fields = {}) {
      const client = await h.connected(fields);
      const list = Array.isArray(filters) ? filters : [filters];
      client.send({ type: 8, packetId: 1, subscriptions: list.map((topicFilter) => ({ topicFilter, qos })) });
      await client.next(9);
      return client;
    },
    async mqtt(opts = {}) {
      const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 2000, ...opts });
      mqtts.push(c);
      return c;
    },
    mqttConnecting(opts = {}) {
      const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 2000, ...opts });
      mqtts.push(c);
      return c;
    },
  };
  return h;
}

/** Waits until `client` has received `n` PUBLISH packets and returns them (removed from its list). */
export async function publishes(client: RawClient, n: number, timeoutMs = 2000): Promise<PublishPacket[]> {
  const out: PublishPacket[] = [];
  for (let i = 0; i < n; i++) out.push((await client.next(3, timeoutMs)) as PublishPacket);
  return out;
}

/** Asserts-friendly: the PUBLISH packets `client` receives within `ms` (for "nothing arrives"). */
export async function quietPublishes(client: RawClient, ms = 100): Promise<PublishPacket[]> {
  return (await client.collect(ms, 3)) as PublishPacket[];
}

export const payloads = (ps: Packet[]): string[] => ps.map((p) => (p as PublishPacket).payload.toString());

export { delay, eventually };

// ---- raw bytes ----

export function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** A UTF-8 string field: 2-byte length then the bytes (which may be anything, e.g. invalid UTF-8). */
export function str(s: string | Buffer | number[]): number[] {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s);
  return [b.length >> 8, b.length & 0xff, ...b];
}

/** A packet from its first byte and body. */
export function packet(first: number, body: number[] | Buffer): Buffer {
  const b = Buffer.from(body);
  return Buffer.concat([Buffer.from([first, ...varint(b.length)]), b]);
}

/** CONNECT bytes with any protocol name, level and flags. `payload` follows the Client ID (will, user name, password). */
export function connectBytes(o: { name?: string; level?: number; flags?: number; keepAlive?: number; clientId?: string; payload?: number[] } = {}): Buffer {
  const level = o.level ?? 4;
  const body = [
    ...str(o.name ?? (level === 3 ? 'MQIsdp' : 'MQTT')),
    level,
    o.flags ?? 0x02,
    (o.keepAlive ?? 0) >> 8,
    (o.keepAlive ?? 0) & 0xff,
    ...(level === 5 ? [0] : []),
    ...str(o.clientId ?? 'raw'),
    ...(o.payload ?? []),
  ];
  return packet(0x10, body);
}

/** PUBLISH bytes for 3.1.1 (or 5.0 with `v5`: empty properties), topic given raw, packet id given raw (may be 0). */
export function publishBytes(o: { topic: string | number[]; qos?: number; packetId?: number; payload?: string; v5?: boolean; flags?: number }): Buffer {
  const qos = o.qos ?? 0;
  const body = [
    ...str(typeof o.topic === 'string' ? o.topic : o.topic),
    ...(qos > 0 ? [(o.packetId ?? 1) >> 8, (o.packetId ?? 1) & 0xff] : []),
    ...(o.v5 ? [0] : []),
    ...Buffer.from(o.payload ?? 'x'),
  ];
  return packet(0x30 | (o.flags ?? qos << 1), body);
}
