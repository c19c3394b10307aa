// Core benchmark: the broker's own cost per message, without sockets. Connections are in-memory
// outputs fed through Channel.receive(), so this measures decode, channel rules, routing, session
// bookkeeping and encoding, and nothing of the kernel or libuv. For A/B runs of a change to the core;
// ../shared/bench measures the whole broker.
// Run: npm run bench:core
import { Buffer } from 'node:buffer';
import { AclReceiveCache } from '../src/auth/acl-cache.js';
import { Acl, type AclRule } from '../src/auth/acl.js';
import { BrokerCore, type CoreOptions } from '../src/broker/core.js';
import type { Channel, ChannelOutput } from '../src/broker/channel.js';
import { encodePacket } from '../src/protocol/encoder.js';
import type { QoS } from '../src/protocol/constants.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/**
 * BENCH_ACL=1: every core checks each delivery against an ACL of 12 rules (the authorizeReceive hook an ACL sets
 * when it filters wildcard subscriptions per message, as Mosquitto does), for an A/B of that check's cost, through
 * the per-(client, topic) cache the broker puts in front of it; BENCH_ACL=nocache: the same ACL without the cache.
 */
const ACL_HOOKS = process.env.BENCH_ACL === '1' || process.env.BENCH_ACL === 'nocache' ? aclHooks(process.env.BENCH_ACL === '1') : undefined;

function aclHooks(cached: boolean): CoreOptions['hooks'] {
  const rules: AclRule[] = [];
  for (let i = 0; i < 10; i++) rules.push({ permission: 'deny', action: 'subscribe', topic: `private/${i}/#` });
  rules.push({ permission: 'allow', action: 'all', topic: 'users/%u/#' });
  rules.push({ permission: 'allow', action: 'subscribe', topic: '#' });
  const acl = new Acl({ rules, default: 'deny' });
  if (!cached) return { authorizeReceive: (client, topic) => acl.canReceive(client, topic) };
  const cache = new AclReceiveCache(acl);
  return { authorizeReceive: (client, topic) => cache.canReceive(client, topic) };
}

/** Options of every core of this benchmark. */
const coreOptions = (): CoreOptions => ({ hooks: ACL_HOOKS });
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

function connect(core: BrokerCore, clientId: string, v: 4 | 5 = 4): Channel {
  const channel = core.openChannel(sink(), { remoteAddress: '127.0.0.1:1', listener: 'bench', secure: false });
  channel.receive(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: v, clean: true, keepAlive: 0, clientId }, v));
  return channel;
}

function subscribe(channel: Channel, topicFilter: string, qos: QoS, v: 4 | 5 = 4): void {
  channel.receive(encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter, qos }] }, v));
}

const publish = (topic: string, qos: QoS, v: 4 | 5 = 4, retain = false): Buffer =>
  encodePacket({ type: 3, topic, payload: Buffer.alloc(64, 0x61), qos, retain, dup: false, packetId: qos ? 1 : undefined }, v);

/** A scenario: set up once, then `step` processes `perStep` delivered messages. */
interface Scenario {
  perStep: number;
  step(): void;
  /** Steps per round when not MESSAGES / perStep (slow operations). */
  steps?: number;
}

/**
 * 1000 publisher/subscriber pairs on 1000 topics; QoS 1 subscribers acknowledge each message in order.
 * `churnEvery`: another client subscribes to and unsubscribes from a topic of its own every so many messages
 * (devices coming and going), which must not cost the pairs their cached routes.
 */
function pairs(qos: QoS, churnEvery = 0): Scenario {
  const core = new BrokerCore(coreOptions());
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
  const churn = connect(core, 'churn');
  const churnPackets = Array.from({ length: 100 }, (_, k) => [
    encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: `devices/${k}/cmd`, qos: 1 }] }, 4),
    encodePacket({ type: 10, packetId: 2, topicFilters: [`devices/${k}/cmd`] }, 4),
  ]);
  let round = 0;
  let churned = 0;
  return {
    perStep: n,
    step() {
      const ack = acks[round++ % 65535]!;
      for (let i = 0; i < n; i++) {
        pubs[i]!.receive(packets[i]!);
        if (qos) subs[i]!.receive(ack);
        if (churnEvery > 0 && i % churnEvery === 0) {
          const [sub, unsub] = churnPackets[churned++ % 100]!;
          churn.receive(sub!);
          churn.receive(unsub!);
        }
      }
    },
  };
}

/** 10 publishers, one subscriber of all their topics (a wildcard); each read carries 32 messages. */
function fanin(v: 4 | 5): Scenario {
  const core = new BrokerCore(coreOptions());
  subscribe(connect(core, 's', v), 'fanin/+', 0, v);
  const pubs = Array.from({ length: 10 }, (_, i) => connect(core, `p${i}`, v));
  const chunks = pubs.map((_, i) => Buffer.concat(Array.from({ length: 32 }, () => publish(`fanin/${i}`, 0, v))));
  return {
    perStep: 320,
    step() {
      for (let i = 0; i < 10; i++) pubs[i]!.receive(chunks[i]!);
    },
  };
}

/** A wildcard SUBSCRIBE (and UNSUBSCRIBE) matching one of 100,000 retained messages: ns per SUBSCRIBE. */
function retainedSubscribe(): Scenario {
  const core = new BrokerCore(coreOptions());
  const pub = connect(core, 'p');
  for (let i = 0; i < 100_000; i++) pub.receive(publish(`site/${i % 100}/device/${i}/temp`, 0, 4, true));
  const sub = connect(core, 's');
  const packets = Array.from({ length: 100 }, (_, k) => [
    encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: `site/+/device/${k * 1000 + 7}/temp`, qos: 0 }] }, 4),
    encodePacket({ type: 10, packetId: 2, topicFilters: [`site/+/device/${k * 1000 + 7}/temp`] }, 4),
  ]);
  let k = 0;
  return {
    perStep: 1,
    steps: 2000,
    step() {
      const [subscribePacket, unsubscribePacket] = packets[k++ % 100]!;
      sub.receive(subscribePacket!);
      sub.receive(unsubscribePacket!);
    },
  };
}

/** One publisher, 100 subscribers of its topic. */
function fanout(): Scenario {
  const core = new BrokerCore(coreOptions());
  for (let i = 0; i < 100; i++) subscribe(connect(core, `s${i}`), 'fanout', 0);
  const pub = connect(core, 'p');
  const packet = publish('fanout', 0);
  return { perStep: 100, step: () => pub.receive(packet) };
}

/** ns per delivered message of one round of MESSAGES messages. */
function measure(s: Scenario): number {
  const steps = s.steps ?? Math.ceil(MESSAGES / s.perStep);
  if (CPU_CLOCK) {
    const before = process.cpuUsage();
    for (let i = 0; i < steps; i++) s.step();
    const used = process.cpuUsage(before);
    return ((used.user + used.system) * 1000) / (steps * s.perStep);
  }
  const start = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) s.step();
  return Number(process.hrtime.bigint() - start) / (steps * s.perStep);
}

/**
 * BENCH_CLOCK=cpu: the process's CPU time instead of the wall clock, for A/B runs on a machine that is not
 * quiet (time spent waiting for a CPU is not counted; cache misses caused by neighbours still are).
 */
const CPU_CLOCK = process.env.BENCH_CLOCK === 'cpu';

// Each scenario is set up, measured and dropped before the next: a scenario's heap (100k retained
// messages, thousands of connections) would otherwise slow the others' garbage collections.
const scenarios: [string, () => Scenario][] = [
  ['pairs-q0 (1000 pairs)', () => pairs(0)],
  ['pairs-q1 (1000 pairs, PUBACK)', () => pairs(1)],
  ['fanout-q0 (1 -> 100)', fanout],
  ['fanin-q0 (10 -> 1, 32 per read)', () => fanin(4)],
  ['fanin-q0 over MQTT 5.0', () => fanin(5)],
  ['pairs-q0, another client (un)subscribing every 1000 messages', () => pairs(0, 1000)],
  ['wildcard SUBSCRIBE + UNSUBSCRIBE, 100k retained, 1 match (ns per SUBSCRIBE)', retainedSubscribe],
];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`broker core, in-memory connections, median of ${ROUNDS} rounds of ${MESSAGES} messages (Node.js ${process.version})`);
console.log('| scenario | ns per delivered message (or as named) | range |');
console.log('|---|---|---|');
/** BENCH_ONLY=pairs-q0: only the scenarios whose name starts with it (for a profile of one). */
const only = process.env.BENCH_ONLY;
for (const [name, make] of scenarios) {
  if (only !== undefined && !name.startsWith(only)) continue;
  const s = make();
  measure(s); // warms up
  const xs = Array.from({ length: ROUNDS }, () => measure(s));
  console.log(`| ${name} | ${median(xs).toFixed(0)} | ${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)} |`);
}
