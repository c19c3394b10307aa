// Overload over real sockets (for test/chaos/overload.test.ts and bench/overload.ts): one publisher pushes
// QoS 0 as fast as its socket takes it (written whenever the socket drains) to a topic that subscribers read,
// beside normal clients doing request/response at QoS 1 through a responder. Measures what the normal
// clients see: every response, and its latency.
import { Buffer } from 'node:buffer';
import { connect as netConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import { encodePacket } from '../../src/protocol/encoder.js';

export interface OverloadOptions {
  /** Normal clients, each sending a request and waiting for its response, one at a time. */
  requesters?: number;
  /** Requests per requester; the run ends when all are answered (or at `seconds`, whichever comes first). */
  requests?: number;
  /** Upper bound of the run, s. */
  seconds?: number;
  /** Run the flood (false: the same normal traffic alone, for a baseline). */
  flood?: boolean;
  /** Payload bytes of a flood message. */
  floodPayload?: number;
  /** Clients subscribed to the flood's topic (they read and discard). */
  floodReaders?: number;
  /** A request unanswered this long is counted as lost, ms. */
  requestTimeout?: number;
}

export interface OverloadResult {
  requests: number;
  responses: number;
  /** Responses that did not come within requestTimeout. */
  lost: number;
  /** Request → response, ms, one per answered request. */
  latencies: number[];
  /** Flood messages written by the publisher, and bytes that reached the flood's readers. */
  floodSent: number;
  floodDeliveredBytes: number;
  floodPacketBytes: number;
  seconds: number;
}

function connectMqtt(port: number, clientId: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0, connectTimeout: 10_000, protocolVersion: 4 });
    client.once('connect', () => {
      // Without it, Nagle's algorithm holds the response behind the PUBACK until the peer's delayed ACK (~40 ms).
      (client.stream as Partial<Socket>).setNoDelay?.(true);
      resolve(client);
    });
    client.once('error', reject);
  });
}

function rawSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
}

/** A raw MQTT connection that has completed CONNECT (and SUBSCRIBE to `filter`), then counts what it reads. */
async function rawReader(port: number, clientId: string, filter: string | undefined): Promise<{ socket: Socket; bytes: () => number }> {
  const socket = await rawSocket(port);
  socket.on('error', () => {});
  let bytes = 0;
  let ready: () => void;
  const subscribed = new Promise<void>((r) => (ready = r));
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes >= 4) ready();
  });
  socket.write(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId }, 4));
  if (filter !== undefined) socket.write(encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 0 }] }, 4));
  await subscribed;
  // CONNACK (4 bytes) and SUBACK (5) are not flood.
  const base = filter !== undefined ? 9 : 4;
  return { socket, bytes: () => Math.max(0, bytes - base) };
}

const percentile = (sorted: number[], p: number): number => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);

/** p50 / p90 / p99 / max of latencies, ms. */
export function latencySummary(latencies: number[]): { p50: number; p90: number; p99: number; max: number } {
  const s = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s.length ? s[s.length - 1]! : NaN };
}

export interface FloodRun {
  /** Stops the flood; resolves with the messages written and the bytes its readers got. */
  stop(): Promise<{ sent: number; deliveredBytes: number; packetBytes: number }>;
}

/** Starts the QoS 0 flood: one publisher writing as fast as its socket drains, `readers` subscribers reading. */
export async function startQos0Flood(port: number, options: { payload?: number; readers?: number } = {}): Promise<FloodRun> {
  const packet = Buffer.from(encodePacket({ type: 3, topic: 'overload/flood', payload: Buffer.alloc(options.payload ?? 64, 0x66), qos: 0, retain: false, dup: false }, 4));
  const batch = Buffer.concat(Array.from({ length: 64 }, () => packet));
  const readers = await Promise.all(Array.from({ length: options.readers ?? 2 }, (_, i) => rawReader(port, `overload-reader-${i}`, 'overload/flood')));
  const flooder = await rawReader(port, 'overload-flooder', undefined);
  let sent = 0;
  let flooding = true;
  const socket = flooder.socket;
  const loop = (async () => {
    while (flooding && !socket.destroyed) {
      sent += 64;
      if (!socket.write(batch)) await new Promise((r) => socket.once('drain', r));
      // Yield: in a test the broker and the requesters share this event loop.
      else await new Promise((r) => setImmediate(r));
    }
  })();
  return {
    async stop() {
      flooding = false;
      await loop;
      const deliveredBytes = readers.reduce((sum, r) => sum + r.bytes(), 0);
      for (const r of readers) r.socket.destroy();
      socket.destroy();
      return { sent, deliveredBytes, packetBytes: packet.length };
    },
  };
}

export type RequestResult = Pick<OverloadResult, 'requests' | 'responses' | 'lost' | 'latencies' | 'seconds'>;

/** Normal clients doing request/response at QoS 1 through a responder client, until `requests` each or `seconds`. */
export async function requestResponse(port: number, options: Pick<OverloadOptions, 'requesters' | 'requests' | 'seconds' | 'requestTimeout'> = {}): Promise<RequestResult> {
  const requesters = options.requesters ?? 3;
  const perRequester = options.requests ?? Infinity;
  const requestTimeout = options.requestTimeout ?? 10_000;
  const responder = await connectMqtt(port, 'overload-responder');
  await responder.subscribeAsync('overload/req/+', { qos: 1 });
  responder.on('message', (topic, payload) => void responder.publish(`overload/resp/${topic.slice('overload/req/'.length)}`, payload, { qos: 1 }));
  const clients = await Promise.all(Array.from({ length: requesters }, (_, i) => connectMqtt(port, `overload-req-${i}`)));
  await Promise.all(clients.map((c, i) => c.subscribeAsync(`overload/resp/${i}`, { qos: 1 })));
  const started = performance.now();
  const deadline = started + (options.seconds ?? 10) * 1000;
  const result: RequestResult = { requests: 0, responses: 0, lost: 0, latencies: [], seconds: 0 };
  await Promise.all(
    clients.map(async (client, i) => {
      for (let n = 0; n < perRequester && performance.now() < deadline; n++) {
        const id = `${i}:${n}`;
        const t0 = performance.now();
        result.requests++;
        const answered = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => done(false), requestTimeout);
          const onMessage = (_topic: string, payload: Buffer) => payload.toString() === id && done(true);
          const done = (ok: boolean) => {
            clearTimeout(timer);
            client.off('message', onMessage);
            resolve(ok);
          };
          client.on('message', onMessage);
          client.publish(`overload/req/${i}`, id, { qos: 1 });
        });
        if (answered) {
          result.responses++;
          result.latencies.push(performance.now() - t0);
        } else result.lost++;
      }
    }),
  );
  result.seconds = (performance.now() - started) / 1000;
  await Promise.all([responder, ...clients].map((c) => c.endAsync()));
  return result;
}

/** The flood (unless `flood: false`) beside the request/response clients, in this process. */
export async function runOverload(port: number, options: OverloadOptions = {}): Promise<OverloadResult> {
  const flood = options.flood === false ? undefined : await startQos0Flood(port, { payload: options.floodPayload, readers: options.floodReaders });
  const normal = await requestResponse(port, options);
  const f = (await flood?.stop()) ?? { sent: 0, deliveredBytes: 0, packetBytes: 0 };
  return { ...normal, floodSent: f.sent, floodDeliveredBytes: f.deliveredBytes, floodPacketBytes: f.packetBytes };
}
