// Codec benchmark: Petrel vs mqtt-packet, PUBLISH decode and encode (MQTT 3.1.1).
// Run: npm run bench:codec
import * as mqttPacket from 'mqtt-packet';
import { PacketDecoder } from '../src/protocol/decoder.js';
import { encodePublish } from '../src/protocol/encoder.js';
import type { PublishPacket } from '../src/protocol/packets.js';

const CHUNK = 64 * 1024;
const STREAM_BYTES = 4 * 1024 * 1024;
const RUN_MS = Number(process.env.BENCH_MS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/** Packets/s of one round: calls `fn` (which processes `perCall` packets) repeatedly for RUN_MS. */
function round(perCall: number, fn: () => void): number {
  let packets = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  do {
    fn();
    packets += perCall;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  } while (elapsed < RUN_MS);
  return (packets / elapsed) * 1000;
}

/**
 * Best packets/s of each contender over ROUNDS rounds (after one warm-up round each). Rounds of
 * the contenders alternate, so load from other processes affects them alike.
 */
function compare(perCall: number, ...fns: (() => void)[]): number[] {
  const best = fns.map(() => 0);
  for (let r = 0; r <= ROUNDS; r++) {
    fns.forEach((fn, i) => {
      const rate = round(perCall, fn);
      if (r > 0 && rate > best[i]!) best[i] = rate;
    });
  }
  return best;
}

interface Case {
  name: string;
  qos: 0 | 1;
  payloadSize: number;
}

const cases: Case[] = [
  { name: 'QoS 0, 64 B', qos: 0, payloadSize: 64 },
  { name: 'QoS 1, 64 B', qos: 1, payloadSize: 64 },
  { name: 'QoS 0, 1 KiB', qos: 0, payloadSize: 1024 },
  { name: 'QoS 1, 1 KiB', qos: 1, payloadSize: 1024 },
];

function makeStream(c: Case): { chunks: Buffer[]; count: number } {
  const payload = Buffer.alloc(c.payloadSize, 0x61);
  const parts: Buffer[] = [];
  let size = 0;
  let count = 0;
  while (size < STREAM_BYTES) {
    const packet: PublishPacket = {
      type: 3,
      topic: `bench/fanin/${count % 100}`,
      payload,
      qos: c.qos,
      retain: false,
      dup: false,
      ...(c.qos ? { packetId: (count % 65535) + 1 } : {}),
    };
    const b = encodePublish(packet, 4);
    parts.push(b);
    size += b.length;
    count++;
  }
  const all = Buffer.concat(parts);
  const chunks: Buffer[] = [];
  for (let i = 0; i < all.length; i += CHUNK) chunks.push(all.subarray(i, Math.min(i + CHUNK, all.length)));
  return { chunks, count };
}

type Row = { op: string; kase: string; petrel: number; other: number; otherName: string };
const rows: Row[] = [];
let sink = 0;

for (const c of cases) {
  const { chunks, count } = makeStream(c);

  // Decode: one long-lived decoder fed 64 KiB chunks, as a broker socket sees them.
  const petrelDecoder = new PacketDecoder({ protocolVersion: 4 });
  const onPacket = (p: { type: number }) => {
    sink += p.type;
  };
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (p: { cmd: string }) => {
    sink += p.cmd.length;
  });
  const [petrelDecode, mqttDecode] = compare(
    count,
    () => {
      for (const chunk of chunks) petrelDecoder.feed(chunk, onPacket);
    },
    () => {
      for (const chunk of chunks) parser.parse(chunk);
    },
  ) as [number, number];
  rows.push({ op: 'decode', kase: c.name, petrel: petrelDecode, other: mqttDecode, otherName: 'parser()' });

  // Encode.
  const payload = Buffer.alloc(c.payloadSize, 0x61);
  const N = 10_000;
  const packets: PublishPacket[] = [];
  const mqttPackets: mqttPacket.IPublishPacket[] = [];
  for (let i = 0; i < N; i++) {
    const topic = `bench/fanin/${i % 100}`;
    packets.push({ type: 3, topic, payload, qos: c.qos, retain: false, dup: false, ...(c.qos ? { packetId: i + 1 } : {}) });
    mqttPackets.push({
      cmd: 'publish',
      topic,
      payload,
      qos: c.qos,
      retain: false,
      dup: false,
      ...(c.qos ? { messageId: i + 1 } : {}),
    });
  }
  const nullStream = {
    write(b: Buffer) {
      sink += b.length;
      return true;
    },
    cork() {},
    uncork() {},
  } as unknown as Parameters<typeof mqttPacket.writeToStream>[1];
  const [petrelEncode, mqttGenerate, mqttWrite] = compare(
    N,
    () => {
      for (let i = 0; i < N; i++) sink += encodePublish(packets[i]!, 4).length;
    },
    () => {
      for (let i = 0; i < N; i++) sink += mqttPacket.generate(mqttPackets[i]!, { protocolVersion: 4 }).length;
    },
    () => {
      for (let i = 0; i < N; i++) mqttPacket.writeToStream(mqttPackets[i]!, nullStream, { protocolVersion: 4 });
    },
  ) as [number, number, number];
  rows.push({ op: 'encode', kase: c.name, petrel: petrelEncode, other: mqttGenerate, otherName: 'generate()' });
  rows.push({ op: 'encode', kase: c.name, petrel: petrelEncode, other: mqttWrite, otherName: 'writeToStream()' });
}

const fmt = (n: number) => `${(n / 1e6).toFixed(2)} M/s`;
console.log(`Node ${process.version}, PUBLISH, MQTT 3.1.1, topic bench/fanin/N, decode in ${CHUNK / 1024} KiB chunks`);
console.log('');
console.log('| op     | packet        | Petrel       | mqtt-packet             | ratio  |');
console.log('|--------|---------------|--------------|-------------------------|--------|');
for (const r of rows) {
  console.log(
    `| ${r.op.padEnd(6)} | ${r.kase.padEnd(13)} | ${fmt(r.petrel).padStart(12)} | ${(fmt(r.other) + ' ' + r.otherName).padEnd(23)} | ${(r.petrel / r.other).toFixed(1).padStart(5)}x |`,
  );
}
if (sink === -1) console.log(sink);
