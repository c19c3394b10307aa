// Model-based fuzzing of connections (fast-check `fc.commands`) on the in-memory core and a fake clock:
// sequences of CONNECT (with takeovers), SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PINGREQ, DISCONNECT, socket
// drops, clock steps (keep-alive) and garbage packets, checked against a small model of the spec's rules.
// Invariants: no exception escapes the core; the model and the broker agree on every packet sent to every
// client (CONNACK session present, SUBACK, PUBACK, deliveries at the right QoS, the offline queue of a
// persistent session); after a close no state leaks (a new clean session of that Client ID is empty).
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import type { ConnectPacket, Packet, PublishPacket } from '../../src/protocol/packets.js';
import { topicMatches } from '../../src/protocol/topic.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';
import { mutate, Rng } from './mutate.js';
import { allSeeds } from './seeds.js';

const IDS = ['a', 'b', 'c'] as const;
type Id = (typeof IDS)[number];
const FILTERS = ['t/1', 't/+', 't/#', 'u'];
const TOPICS = ['t/1', 't/2', 'u'];
const KEEPALIVE_SLACK_MS = 1000;

interface ModelSession {
  persistent: boolean;
  subs: Map<string, number>;
  /** Messages queued while offline (QoS ≥ 1), as "topic payload qos". */
  queue: string[];
}
interface Live {
  conn: MemoryConnection;
  version: 4 | 5;
  keepAlive: number;
  lastIn: number;
}

export class Model {
  readonly sessions = new Map<Id, ModelSession>();
  readonly live = new Map<Id, Live>();
  payloads = 0;
}

export class Real {
  readonly fake = new FakeCore({ limits: { sessionExpiry: 10_000_000 } });
  /** Packets each connection has not yet been checked for. */
  expected = new Map<MemoryConnection, string[]>();
}

const describePacket = (p: Packet): string => {
  switch (p.type) {
    case 2:
      return `CONNACK ${p.reasonCode} sp=${p.sessionPresent}`;
    case 3:
      return `PUBLISH ${p.topic} ${p.payload.toString()} q${p.qos}`;
    case 4:
      return `PUBACK ${p.packetId}`;
    case 9:
      return `SUBACK ${p.reasonCodes.join(',')}`;
    case 11:
      return `UNSUBACK`;
    case 13:
      return 'PINGRESP';
    case 14:
      return `DISCONNECT ${p.reasonCode ?? 0}`;
    default:
      return `type ${p.type}`;
  }
};

/** Runs `fn` on the core; an exception that escapes is an invariant broken. */
function guarded(what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    throw new Error(`exception escaped the core during ${what}: ${(err as Error)?.stack ?? String(err)}`);
  }
}

/** Ends a connection in the model: a non-persistent session goes with it. */
function ended(m: Model, id: Id): void {
  m.live.delete(id);
  const s = m.sessions.get(id);
  if (s && !s.persistent) m.sessions.delete(id);
}

/** Compares what each live connection received with what the model expects, then acknowledges QoS 1 deliveries. */
function settle(m: Model, r: Real, expect: Map<Id, string[]>): void {
  for (const [id, live] of m.live) {
    const got = live.conn.take();
    const want = (expect.get(id) ?? []).slice().sort();
    const have = got.map(describePacket).sort();
    if (JSON.stringify(want) !== JSON.stringify(have)) throw new Error(`client ${id}: the model expects [${want.join('; ')}], the broker sent [${have.join('; ')}]`);
    for (const p of got) {
      if (p.type === 3 && p.qos === 1) {
        guarded('PUBACK', () => live.conn.send({ type: 4, packetId: p.packetId!, ...(live.version === 5 ? { reasonCode: 0 } : {}) } as Packet));
        live.lastIn = r.fake.clock.time;
      }
    }
    if (live.conn.closed) throw new Error(`client ${id}: closed by the broker, the model expects it open`);
  }
}

type Cmd = fc.Command<Model, Real>;

/** Commands run, by kind (what a run really exercised). */
export const executed: Record<string, number> = {};
/** Set by a test to check that a wrong rule is caught: the model then expects QoS 1 deliveries at QoS 0. */
let wrongRule = false;
const count = (kind: string) => void (executed[kind] = (executed[kind] ?? 0) + 1);

class Connect implements Cmd {
  constructor(
    readonly id: Id,
    readonly version: 4 | 5,
    readonly clean: boolean,
    readonly keepAlive: number,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    count('connect');
    const old = m.live.get(this.id);
    const conn = r.fake.open(this.version);
    const p = { type: 1, protocolName: 'MQTT', protocolVersion: this.version, clean: this.clean, keepAlive: this.keepAlive, clientId: this.id } as ConnectPacket;
    if (this.version === 5) p.properties = { sessionExpiryInterval: this.clean ? 0 : 10_000_000 };
    guarded('CONNECT', () => conn.send(p));
    if (old) {
      // Takeover [MQTT-3.1.4-2]: the old connection is closed (5.0: DISCONNECT 0x8E first).
      if (!old.conn.closed) throw new Error(`client ${this.id}: the old connection is still open after a takeover`);
      old.conn.take();
      ended(m, this.id);
    }
    const s = m.sessions.get(this.id);
    const present = !this.clean && s !== undefined && s.persistent;
    const queued = present ? s.queue : [];
    m.sessions.set(this.id, { persistent: !this.clean, subs: present ? s.subs : new Map(), queue: [] });
    m.live.set(this.id, { conn, version: this.version, keepAlive: this.keepAlive, lastIn: r.fake.clock.time });
    settle(m, r, new Map([[this.id, [`CONNACK 0 sp=${present}`, ...queued.map((q) => `PUBLISH ${q}`)]]]));
  }
  toString = () => `connect(${this.id}, v${this.version}, clean=${this.clean}, ka=${this.keepAlive})`;
}

class Subscribe implements Cmd {
  constructor(
    readonly id: Id,
    readonly filter: string,
    readonly qos: 0 | 1 | 2,
  ) {}
  check = (m: Readonly<Model>) => m.live.has(this.id);
  run(m: Model, r: Real): void {
    count('subscribe');
    const live = m.live.get(this.id)!;
    guarded('SUBSCRIBE', () => live.conn.send({ type: 8, packetId: 7, subscriptions: [{ topicFilter: this.filter, qos: this.qos }] }));
    live.lastIn = r.fake.clock.time;
    m.sessions.get(this.id)!.subs.set(this.filter, this.qos);
    settle(m, r, new Map([[this.id, [`SUBACK ${this.qos}`]]]));
  }
  toString = () => `subscribe(${this.id}, ${this.filter}, q${this.qos})`;
}

class Unsubscribe implements Cmd {
  constructor(
    readonly id: Id,
    readonly filter: string,
  ) {}
  check = (m: Readonly<Model>) => m.live.has(this.id);
  run(m: Model, r: Real): void {
    count('unsubscribe');
    const live = m.live.get(this.id)!;
    guarded('UNSUBSCRIBE', () => live.conn.send({ type: 10, packetId: 8, topicFilters: [this.filter] }));
    live.lastIn = r.fake.clock.time;
    m.sessions.get(this.id)!.subs.delete(this.filter);
    settle(m, r, new Map([[this.id, ['UNSUBACK']]]));
  }
  toString = () => `unsubscribe(${this.id}, ${this.filter})`;
}

class Publish implements Cmd {
  constructor(
    readonly id: Id,
    readonly topic: string,
    readonly qos: 0 | 1,
  ) {}
  check = (m: Readonly<Model>) => m.live.has(this.id);
  run(m: Model, r: Real): void {
    count('publish');
    const live = m.live.get(this.id)!;
    const payload = `m${m.payloads++}`;
    const p: PublishPacket = { type: 3, topic: this.topic, payload: Buffer.from(payload), qos: this.qos, retain: false, dup: false, ...(this.qos ? { packetId: 9 } : {}) } as PublishPacket;
    guarded('PUBLISH', () => live.conn.send(p));
    live.lastIn = r.fake.clock.time;
    const expect = new Map<Id, string[]>();
    const add = (id: Id, line: string) => expect.set(id, [...(expect.get(id) ?? []), line]);
    if (this.qos === 1) add(this.id, 'PUBACK 9');
    for (const [id, s] of m.sessions) {
      // One copy per client, at the highest QoS of its matching subscriptions [MQTT-3.3.5-1].
      let best = -1;
      for (const [filter, q] of s.subs) if (topicMatches(filter, this.topic)) best = Math.max(best, q);
      if (best < 0) continue;
      const qos = wrongRule && best > 0 && this.qos > 0 ? 0 : Math.min(best, this.qos);
      if (m.live.has(id)) add(id, `PUBLISH ${this.topic} ${payload} q${qos}`);
      else if (qos > 0) s.queue.push(`${this.topic} ${payload} q${qos}`);
    }
    settle(m, r, expect);
  }
  toString = () => `publish(${this.id}, ${this.topic}, q${this.qos})`;
}

class Ping implements Cmd {
  constructor(readonly id: Id) {}
  check = (m: Readonly<Model>) => m.live.has(this.id);
  run(m: Model, r: Real): void {
    count('ping');
    const live = m.live.get(this.id)!;
    guarded('PINGREQ', () => live.conn.send({ type: 12 }));
    live.lastIn = r.fake.clock.time;
    settle(m, r, new Map([[this.id, ['PINGRESP']]]));
  }
  toString = () => `ping(${this.id})`;
}

class Close implements Cmd {
  constructor(
    readonly id: Id,
    readonly how: 'disconnect' | 'drop',
  ) {}
  check = (m: Readonly<Model>) => m.live.has(this.id);
  run(m: Model, r: Real): void {
    count('close');
    const live = m.live.get(this.id)!;
    if (this.how === 'disconnect') guarded('DISCONNECT', () => live.conn.send({ type: 14, ...(live.version === 5 ? { reasonCode: 0 } : {}) } as Packet));
    else guarded('transportClosed', () => live.conn.drop());
    if (!live.conn.closed) throw new Error(`client ${this.id}: still open after ${this.how}`);
    ended(m, this.id);
    settle(m, r, new Map());
  }
  toString = () => `${this.how}(${this.id})`;
}

class Advance implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  run(m: Model, r: Real): void {
    count('advance');
    guarded('tick', () => r.fake.advance(this.ms, 250));
    const now = r.fake.clock.time;
    for (const [id, live] of [...m.live]) {
      if (live.keepAlive === 0) continue;
      // The broker closes a connection silent for 1.5 × Keep Alive [MQTT-3.1.2-24]; near the limit either is right.
      const idle = now - live.lastIn;
      const limit = live.keepAlive * 1500;
      if (idle > limit + KEEPALIVE_SLACK_MS && !live.conn.closed) throw new Error(`client ${id}: silent ${idle} ms with Keep Alive ${live.keepAlive} s, still open`);
      if (idle < limit - KEEPALIVE_SLACK_MS && live.conn.closed) throw new Error(`client ${id}: closed after ${idle} ms silent with Keep Alive ${live.keepAlive} s`);
      if (live.conn.closed) {
        live.conn.take();
        ended(m, id);
      }
    }
    settle(m, r, new Map());
  }
  toString = () => `advance(${this.ms} ms)`;
}

/**
 * Memory per connection stays bounded: a packet announced larger than maxPacketSize (1 MiB by default) closes
 * the connection from its fixed header, before the body is buffered (5.0: DISCONNECT 0x95).
 */
class Oversize implements Cmd {
  constructor(readonly id: Id) {}
  check = (m: Readonly<Model>) => m.live.has(this.id);
  run(m: Model, r: Real): void {
    count('oversize');
    const live = m.live.get(this.id)!;
    // PUBLISH QoS 0 announcing 64 MiB, then the first KiB of it.
    const header = Buffer.from([0x30, 0x80, 0x80, 0x80, 0x20]);
    guarded('oversized PUBLISH', () => live.conn.channel.receive(Buffer.concat([header, Buffer.alloc(1024, 0x61)])));
    if (!live.conn.closed) throw new Error(`client ${this.id}: still open after announcing a 64 MiB packet`);
    const got = live.conn.take().map(describePacket);
    const want = live.version === 5 ? ['DISCONNECT 149'] : [];
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`client ${this.id}: after an oversized packet got [${got.join('; ')}], expected [${want.join('; ')}]`);
    ended(m, this.id);
    settle(m, r, new Map());
  }
  toString = () => `oversize(${this.id})`;
}

const SEEDS = allSeeds().filter((s) => s.role === 'server');

/** A connection that sends garbage after its CONNECT; afterwards a clean session of its Client ID must be empty. */
class Garbage implements Cmd {
  constructor(
    readonly seed: number,
    readonly version: 4 | 5,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    count('garbage');
    const rng = new Rng(this.seed);
    const conn = r.fake.open(this.version);
    const connect = { type: 1, protocolName: 'MQTT', protocolVersion: this.version, clean: true, keepAlive: 0, clientId: 'g' } as ConnectPacket;
    guarded('CONNECT g', () => conn.send(connect));
    const base = SEEDS.filter((s) => s.version === this.version && s.bytes[0]! >> 4 !== 1);
    for (let i = 0; i < 3 && !conn.closed; i++) {
      const input = mutate(rng.pick(base).bytes, rng.pick(base).bytes, rng);
      guarded(`garbage ${input.toString('hex')}`, () => conn.channel.receive(input));
    }
    guarded('transportClosed g', () => conn.drop());
    // No state leaks: a new clean session of "g" gets session present 0 and nothing else.
    const again = r.fake.open(4);
    guarded('CONNECT g again', () => again.send({ ...connect, protocolVersion: 4, clean: false }));
    const got = again.take().map(describePacket);
    if (JSON.stringify(got) !== JSON.stringify(['CONNACK 0 sp=false'])) throw new Error(`after garbage, client g got [${got.join('; ')}]`);
    guarded('DISCONNECT g', () => again.send({ type: 14 } as Packet));
    // The garbage may have published (to topics none of the model's filters match): nothing else changes.
    settle(m, r, new Map());
  }
  toString = () => `garbage(seed ${this.seed}, v${this.version})`;
}

const id = fc.constantFrom<Id>(...IDS);
export const COMMANDS = [
  fc.tuple(id, fc.constantFrom<4 | 5>(4, 5), fc.boolean(), fc.constantFrom(0, 0, 10, 60)).map(([i, v, c, k]) => new Connect(i, v, c, k)),
  fc.tuple(id, fc.constantFrom(...FILTERS), fc.constantFrom<0 | 1 | 2>(0, 1, 2)).map(([i, f, q]) => new Subscribe(i, f, q)),
  fc.tuple(id, fc.constantFrom(...FILTERS)).map(([i, f]) => new Unsubscribe(i, f)),
  fc.tuple(id, fc.constantFrom(...TOPICS), fc.constantFrom<0 | 1>(0, 1)).map(([i, t, q]) => new Publish(i, t, q)),
  fc.tuple(id, fc.constantFrom(...TOPICS), fc.constantFrom<0 | 1>(0, 1)).map(([i, t, q]) => new Publish(i, t, q)),
  id.map((i) => new Ping(i)),
  fc.tuple(id, fc.constantFrom<'disconnect' | 'drop'>('disconnect', 'drop')).map(([i, h]) => new Close(i, h)),
  fc.integer({ min: 1, max: 60_000 }).map((ms) => new Advance(ms)),
  id.map((i) => new Oversize(i)),
  fc.tuple(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.constantFrom<4 | 5>(4, 5)).map(([s, v]) => new Garbage(s, v)),
];

export interface ModelReport {
  seed: number;
  runs: number;
  commands: number;
  ms: number;
  executed: Record<string, number>;
  /** The shrunk failing sequence and error, if any. */
  failure?: string;
}

/** Runs model-based sequences for `ms` (or `numRuns`), seeded; returns the shrunk counterexample when one fails. */
export function runModel(options: { seed: number; ms?: number; numRuns?: number; maxCommands?: number; wrongRule?: boolean }): ModelReport {
  wrongRule = options.wrongRule ?? false;
  let runs = 0;
  let commands = 0;
  const start = Date.now();
  const result = fc.check(
    fc.property(fc.commands(COMMANDS, { maxCommands: options.maxCommands ?? 60, size: 'large' }), (cmds) => {
      runs++;
      commands += [...cmds].length;
      fc.modelRun(() => ({ model: new Model(), real: new Real() }), cmds);
    }),
    { seed: options.seed, numRuns: options.numRuns ?? 1_000_000, interruptAfterTimeLimit: options.ms, markInterruptAsFailure: false },
  );
  wrongRule = false;
  return {
    seed: options.seed,
    runs,
    commands,
    executed: { ...executed },
    ms: Date.now() - start,
    failure: result.failed ? `${String(result.counterexample?.[0])}: ${(result.errorInstance as Error | undefined)?.message ?? String(result.errorInstance)}`.slice(0, 3000) : undefined,
  };
}
