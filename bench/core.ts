// Core benchmark: the broker's own cost per message, without sockets. Connections are in-memory
// outputs fed through Channel.receive(), so this measures decode, channel rules, routing, session
// bookkeeping and encoding, and nothing of the kernel or libuv. For A/B runs of a change to the core;
// ../shared/bench measures the whole broker.
// Run: npm run bench:core
import { Buffer } from 'node:buffer';
import { BrokerCore } from '../src/broker/core.js';
import type { Channel, ChannelOutput } from '../src/broker/channel.js';
import { encodePacket } from '../src/protocol/encoder.js';
import type { QoS } from '../src/protocol/constants.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 200_000);

/** An output that counts bytes; it is never full and never closes. */
function sink(): ChannelOutput & { bytes: number } {
  return {
    bytes: 0,
    write(data: Buffer) {
      this.bytes += data.length;
    },
    close() {},
    bufferedBytes: () => 0,
  };
}

function connect(core: BrokerCore, clientId: string): Channel {
  const channel = core.openChannel(sink(), { remoteAddress: '127.0.0.1:1', listener: 'bench', secure: false });
  channel.receive(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId }, 4));
  return channel;
}

function subscribe(channel: Channel, topicFilter: string, qos: QoS): void {
  channel.receive(encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter, qos }] }, 4));
}

const publish = (topic: string, qos: QoS): Buffer =>
  encodePacket({ type: 3, topic, payload: Buffer.alloc(64, 0x61), qos, retain: false, dup: false, packetId: qos ? 1 : undefined }, 4);

/** A scenario: set up once, then `step` processes `perStep` delivered messages. */
interface Scenario {
  perStep: number;
  step(): void;
}

/** 1000 publisher/subscriber pairs on 1000 topics; QoS 1 subscribers acknowledge each message in order. */
function pairs(qos: QoS): Scenario {
  const core = new BrokerCore({});
  const n = 1000;
  const pubs: Channel[] = [];
  const subs: Channel[] = [];
  for (let i = 0; i < n; i++) {
    const sub = connect(core, `s${i}`);
    subscribe(sub, `pairs/${i}`, qos);
    subs.push(sub);
    pubs.push(connect(core, `p${i}`));
  }
  const packets = pubs.map((_, i) => publish(`pairs/${i}`, qos));
  // The broker gives each subscriber packet ids 1, 2, 3, ...: the k-th round is acknowledged with id k.
  const acks = Array.from({ length: 65535 }, (_, k) => encodePacket({ type: 4, packetId: k + 1 }, 4));
  let round = 0;
  return {
    perStep: n,
    step() {
      const ack = acks[round++ % 65535]!;
      for (let i = 0; i < n; i++) {
        pubs[i]!.receive(packets[i]!);
        if (qos) subs[i]!.receive(ack);
      }
    },
  };
}

/** One publisher, 100 subscribers of its topic. */
function fanout(): Scenario {
  const core = new BrokerCore({});
  for (let i = 0; i < 100; i++) subscribe(connect(core, `s${i}`), 'fanout', 0);
  const pub = connect(core, 'p');
  const packet = publish('fanout', 0);
  return { perStep: 100, step: () => pub.receive(packet) };
}

/** ns per delivered message of one round of MESSAGES messages. */
function measure(s: Scenario): number {
  const steps = Math.ceil(MESSAGES / s.perStep);
  const start = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) s.step();
  return Number(process.hrtime.bigint() - start) / (steps * s.perStep);
}

const scenarios: [string, Scenario][] = [
  ['pairs-q0 (1000 pairs)', pairs(0)],
  ['pairs-q1 (1000 pairs, PUBACK)', pairs(1)],
  ['fanout-q0 (1 -> 100)', fanout()],
];
const results = scenarios.map(() => [] as number[]);
for (let r = 0; r <= ROUNDS; r++) {
  scenarios.forEach(([, s], i) => {
    const ns = measure(s);
    if (r > 0) results[i]!.push(ns); // round 0 warms up
  });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`broker core, in-memory connections, median of ${ROUNDS} rounds of ${MESSAGES} messages (Node.js ${process.version})`);
console.log('| scenario | ns per delivered message | range |');
console.log('|---|---|---|');
scenarios.forEach(([name], i) => {
  const xs = results[i]!;
  console.log(`| ${name} | ${median(xs).toFixed(0)} | ${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)} |`);
});
