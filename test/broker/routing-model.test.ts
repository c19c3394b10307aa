// The broker core against a small model of MQTT delivery, on random sequences of connects, takeovers,
// disconnects, (un)subscriptions and publishes. The core remembers a lot between messages (each
// publisher's last route, each cached topic's live connections, whether its subscribers overlap, the
// decoder's last topic); the model remembers nothing, so any stale memory shows as a wrong delivery.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ConnackPacket, PubAckLikePacket, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';

type QoS = 0 | 1;
const CLIENTS = 4;
const TOPICS = ['a', 'a/b', 'a/c', 'b', 'a/b/c'];
// Overlapping filters on purpose: one client often holds several that match the same topic.
const FILTERS = ['a', 'a/b', 'a/+', 'a/#', '#', '+/b', '+', 'b', 'a/+/c'];

type Op =
  | { op: 'connect'; c: number; clean: boolean; keep: boolean }
  | { op: 'disconnect'; c: number; drop: boolean }
  | { op: 'subscribe'; c: number; filter: string; qos: QoS }
  | { op: 'unsubscribe'; c: number; filter: string }
  /**
   * alias (5.0, 0 = none): a Topic Alias the publisher sets for the topic, then sends without the topic name
   * while it stands for it; a few aliases for several topics, so they get mapped again.
   */
  | { op: 'publish'; c: number; topic: string; qos: QoS; retain: boolean; alias: number; times: number };

const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const qos = fc.constantFrom<QoS>(0, 1);
/** One step. A publish is repeated (a run from one client to one topic, so remembered routes are used). */
const stepArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ op: fc.constant('connect' as const), c: client, clean: fc.boolean(), keep: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('disconnect' as const), c: client, drop: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('subscribe' as const), c: client, filter: fc.constantFrom(...FILTERS), qos }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unsubscribe' as const), c: client, filter: fc.constantFrom(...FILTERS) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('publish' as const),
      c: client,
      topic: fc.constantFrom(...TOPICS),
      qos,
      retain: fc.boolean(),
      alias: fc.integer({ min: 0, max: 3 }),
      times: fc.integer({ min: 1, max: 3 }),
    }),
  },
);

/** Topic filter matching, written out plainly for the model (no '$' topics here). */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

interface Delivery {
  id: string;
  qos: QoS;
  retain: boolean;
}
interface ModelSession {
  subs: Map<string, QoS>;
  /** Messages queued while offline, in order (QoS 0 is not queued by default). */
  queue: Delivery[];
  /** Outlives its connection: 3.1.1 Clean Session 0, 5.0 Session Expiry Interval > 0. */
  persistent: boolean;
}
interface ModelClient {
  version: 4 | 5;
  conn?: MemoryConnection;
  /** The Topic Aliases this connection has set (5.0). */
  aliases: Map<number, string>;
  session?: ModelSession;
  nextPacketId: number;
}

const show = (d: Delivery): string => `${d.id} q${d.qos}${d.retain ? ' r' : ''}`;

/** Every PUBLISH the connection got since last asked, each QoS 1 one acknowledged (so more may follow). */
function drain(conn: MemoryConnection): Delivery[] {
  const out: Delivery[] = [];
  for (;;) {
    const got = conn.take(3) as PublishPacket[];
    if (got.length === 0) return out;
    for (const p of got) {
      out.push({ id: p.payload.toString(), qos: p.qos as QoS, retain: p.retain });
      if (p.qos === 1) {
        assert.ok(p.packetId !== undefined && p.packetId > 0, 'a QoS 1 PUBLISH has a non-zero packet id: [MQTT-2.3.1-1] (5.0: [MQTT-2.2.1-3])');
        conn.send({ type: 4, packetId: p.packetId });
      }
    }
  }
}

function run(steps: readonly Op[], versions: readonly (4 | 5)[]): void {
  const f = new FakeCore();
  const clients: ModelClient[] = versions.map((version) => ({ version, nextPacketId: 1, aliases: new Map<number, string>() }));
  const retained = new Map<string, { id: string; qos: QoS }>();
  let sequence = 0;
  const packetId = (cl: ModelClient): number => {
    const id = cl.nextPacketId;
    cl.nextPacketId = (id % 65535) + 1;
    return id;
  };
  const endConnection = (cl: ModelClient): void => {
    cl.conn = undefined;
    if (cl.session && !cl.session.persistent) cl.session = undefined;
  };
  const check = (cl: ModelClient, c: number, expected: Delivery[], what: string, ordered = true): void => {
    let got = drain(cl.conn!).map(show);
    let want = expected.map(show);
    if (!ordered) {
      got = got.sort();
      want = want.sort();
    }
    assert.deepEqual(got, want, `c${c} (MQTT ${cl.version === 5 ? '5.0' : '3.1.1'}) after ${what}`);
  };

  const connect = (op: { c: number; clean: boolean; keep: boolean }, label: string): void => {
    const cl = clients[op.c]!;
    const old = cl.conn;
    if (old) endConnection(cl); // the existing connection is closed: [MQTT-3.1.4-2] (5.0: [MQTT-3.1.4-3])
    const present = !op.clean && cl.session !== undefined;
    if (!present) cl.session = { subs: new Map(), queue: [], persistent: false };
    cl.session!.persistent = cl.version === 4 ? !op.clean : op.keep;
    cl.aliases.clear();
    cl.conn = f.connect({
      clientId: `c${op.c}`,
      protocolVersion: cl.version,
      clean: op.clean,
      properties: cl.version === 5 ? { sessionExpiryInterval: op.keep ? 3600 : 0 } : undefined,
    });
    if (old) assert.ok(old.closed, `${label}: the connection taken over is closed [MQTT-3.1.4-2]`);
    const [connack] = cl.conn.take(2) as ConnackPacket[];
    assert.equal(connack?.reasonCode, 0, label);
    assert.equal(connack.sessionPresent, present, `${label}: Session Present [MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3]`);
    // Messages queued for the offline session are sent on resumption, in the order published [MQTT-4.6.0-6]
    check(cl, op.c, cl.session!.queue, label);
    cl.session!.queue = [];
  };

  // Everyone starts connected, as a persistent session or not.
  clients.forEach((_, c) => connect({ c, clean: c % 2 === 0, keep: c % 2 === 1 }, `start c${c}`));
  for (const op of steps) {
    for (let n = 0; n < (op.op === 'publish' ? op.times : 1); n++) step(op);
  }

  function step(op: Op): void {
    const cl = clients[op.c]!;
    const label = JSON.stringify(op);
    // A client that is offline comes back (resuming its session, if it kept one) for anything but a connect.
    if (!cl.conn && op.op !== 'connect' && op.op !== 'disconnect') connect({ c: op.c, clean: false, keep: true }, `${label} (reconnect)`);
    const conn = cl.conn;
    switch (op.op) {
      case 'connect': {
        connect(op, label);
        break;
      }
      case 'disconnect': {
        if (!conn) break;
        if (op.drop) conn.drop();
        else conn.send({ type: 14 });
        endConnection(cl);
        break;
      }
      case 'subscribe': {
        const id = packetId(cl);
        conn!.send({ type: 8, packetId: id, subscriptions: [{ topicFilter: op.filter, qos: op.qos }] });
        const [suback] = conn!.take(9) as SubackPacket[];
        assert.deepEqual([suback?.packetId, suback?.reasonCodes], [id, [op.qos]], label);
        cl.session!.subs.set(op.filter, op.qos); // [MQTT-3.8.4-3] a repeated filter replaces the subscription
        // [MQTT-3.3.1-6] retained messages matching the new subscription, retain flag set, at the lower QoS
        const expected = [...retained]
          .filter(([topic]) => matches(op.filter, topic))
          .map(([, r]) => ({ id: r.id, qos: Math.min(r.qos, op.qos) as QoS, retain: true }));
        check(cl, op.c, expected, label, false);
        break;
      }
      case 'unsubscribe': {
        const id = packetId(cl);
        conn!.send({ type: 10, packetId: id, topicFilters: [op.filter] });
        assert.deepEqual(conn!.take(11).map((p) => (p as PubAckLikePacket).packetId), [id], label);
        cl.session!.subs.delete(op.filter);
        break;
      }
      case 'publish': {
        const msg = `m${++sequence}`;
        const id = op.qos === 1 ? packetId(cl) : undefined;
        // A 5.0 Topic Alias is set by a PUBLISH with the topic name, and mapped again by the next one that
        // names another topic [MQTT-3.3.2-7] (its scope is the connection).
        const alias = cl.version === 5 && op.alias > 0 ? op.alias : undefined;
        const aliasKnown = alias !== undefined && cl.aliases.get(alias) === op.topic;
        if (alias !== undefined) cl.aliases.set(alias, op.topic);
        conn!.send({
          type: 3,
          topic: aliasKnown ? '' : op.topic,
          payload: Buffer.from(msg),
          qos: op.qos,
          retain: op.retain,
          dup: false,
          packetId: id,
          properties: alias === undefined ? undefined : { topicAlias: alias },
        });
        if (op.qos === 1) {
          assert.deepEqual(conn!.take(4).map((p) => (p as PubAckLikePacket).packetId), [id], `${label}: PUBACK`);
        }
        if (op.retain) retained.set(op.topic, { id: msg, qos: op.qos });
        clients.forEach((other, c) => {
          let best: QoS | undefined;
          for (const [filter, q] of other.session?.subs ?? []) {
            if (matches(filter, op.topic) && (best === undefined || q > best)) best = q;
          }
          // Overlapping subscriptions: one copy at the highest QoS granted, [MQTT-3.3.5-1] (5.0: [MQTT-3.3.4-2],
          // which allows more copies; Petrel sends one). The QoS is the lower of the message's and the
          // subscription's (5.0: [MQTT-3.8.4-8]).
          // [MQTT-3.3.1-9] the retain flag is 0 on a message sent to an existing subscription
          const delivery: Delivery | undefined = best === undefined ? undefined : { id: msg, qos: Math.min(op.qos, best) as QoS, retain: false };
          if (other.conn) check(other, c, delivery ? [delivery] : [], `${label} #${sequence}`);
          else if (delivery && delivery.qos > 0 && other.session) other.session.queue.push(delivery);
        });
        break;
      }
    }
  }
}

describe('routing against a model', () => {
  it('random connects, takeovers, (un)subscriptions and publishes deliver what MQTT says', () => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { minLength: 1, maxLength: 80, size: 'max' }),
        fc.array(fc.constantFrom<4 | 5>(4, 5), { minLength: CLIENTS, maxLength: CLIENTS }),
        (steps, versions) => run(steps, versions),
      ),
      { numRuns: 1000 },
    );
  });
});
