// Differential testing against Mosquitto 2.0.11 (Debian's /usr/sbin/mosquitto). The same seeded random scripts
// (3 clients; CONNECT with clean session / session expiry / will / Receive Maximum / Topic Alias Maximum,
// SUBSCRIBE with overlapping filters, '$' topics, empty levels and the 5.0 options, UNSUBSCRIBE, PUBLISH at
// QoS 0-2 with or without RETAIN, properties and topic aliases, DISCONNECT, dropped connections, takeovers,
// clients that stop acknowledging) run against an in-process Petrel and a Mosquitto child process, one step at a
// time with a PINGREQ round trip per client after each step, and every client's CONNACK / SUBACK / UNSUBACK /
// PUBACK / PUBREC / PUBCOMP codes and delivered messages are compared per step. Each broker is also checked on
// its own against what the subscriptions it acknowledged require (violations()).
//
// Where the two may legitimately differ, or Mosquitto is wrong, the case is either normalised (canonical(),
// excuseMosquitto()) or kept out of the scripts (generate()), each with the reason and the spec section. The
// focused tests at the end hold Petrel to the spec in each of those cases.
//
// More scripts: DIFF_SCENARIOS=1000 (per protocol version); DIFF_ALL=1 lists every differing step of a script.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { after, before, describe, it } from 'node:test';
import type { Broker } from '../../src/server/broker.js';
import type { QoS } from '../../src/protocol/constants.js';
import type { ConnectPacket, Packet, Properties, PublishPacket, SubackPacket, UnsubackPacket } from '../../src/protocol/packets.js';
import { startBroker } from '../helpers/broker.js';
import { delay } from '../helpers/wait.js';
import { RawClient } from '../helpers/raw-client.js';
import { MOSQUITTO, startMosquitto, type RunningMosquitto as Mosquitto } from '../helpers/mosquitto.js';
import { canConnect, freePort } from '../client/helpers.js';
import { describeOrSkip } from '../helpers/skip.js';
import { seededRandom } from '../helpers/seeded.js';

// ---------------------------------------------------------------------------------------------------------
// Mosquitto as a child process

// Limits chosen to match Petrel's defaults (options.ts): 1000 queued messages per session, QoS 0 not queued
// for offline sessions, no persistence, no limit of its own on messages in flight to a client (Petrel's
// maxInflight is 65535; Mosquitto's default of 20 could be reached by a muted client).
// "Client <id> closed its connection." (log_type notice): how the test knows Mosquitto has handled a dropped connection.
const startDifferentialMosquitto = (bin: string): Promise<Mosquitto> =>
  startMosquitto({ bin, logTypes: ['error', 'notice'], lines: ['max_queued_messages 1000', 'max_inflight_messages 0', 'queue_qos0_messages false'] });

// ---------------------------------------------------------------------------------------------------------
// Scripts

type Version = 4 | 5;

interface SubSpec {
  filter: string;
  qos: QoS;
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
}

interface WillSpec {
  topic: string;
  qos: QoS;
  retain: boolean;
  payload: string;
  /** 5.0: send application properties (see appProperties). */
  props?: boolean;
  /** 5.0 Will Delay Interval (s). */
  delay?: number;
}

type Step =
  /** CONNECT; when the client is connected already this is a session takeover. */
  | { op: 'connect'; c: number; clean: boolean; expiry?: number; will?: WillSpec; receiveMaximum?: number; topicAliasMaximum?: number }
  /** `withWill` (5.0): reason code 0x04, Disconnect with Will Message. */
  | { op: 'disconnect'; c: number; expiry?: number; withWill?: boolean }
  /** The TCP connection is closed without DISCONNECT (the will is published). */
  | { op: 'drop'; c: number }
  /** From now until it reconnects the client stops answering: 1 = no PUBACK/PUBREC, 2 = no PUBCOMP. */
  | { op: 'mute'; c: number; mode: 1 | 2 }
  | { op: 'subscribe'; c: number; subs: SubSpec[]; id?: number }
  | { op: 'unsubscribe'; c: number; filters: string[] }
  /** `alias` (5.0): send with this Topic Alias (topic and alias when the alias does not stand for the topic yet, else alias alone). */
  | { op: 'publish'; c: number; topic: string; qos: QoS; retain: boolean; payload: string; alias?: number; props?: boolean };

/** Topic names: empty levels, leading and trailing '/', '$' topics (never $SYS). */
const TOPICS = ['a', 'b', 'a/b', 'a/c', 'a/b/c', 'a//b', '/a', '/', 'a/', '$x/a', '$x', '$x/a/b'];
/** Topic filters over the same levels. */
const FILTERS = ['#', '+', '+/+', '+/#', 'a/#', 'a/+', 'a/b', 'a', '+/b', 'a/+/c', '/#', '+/a', '/+', 'a//b', 'a/+/+', 'a/b/#', '$x/#', '$x/+', '$x', '+/+/c', 'a/', '//', '/'];

const CLIENTS = 3;

function generate(seed: number, version: Version, steps: number): Step[] {
  const rnd = seededRandom(seed * 7919 + version);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => rnd() < p;
  const qos = () => int(3) as QoS;
  const online: boolean[] = [];
  const expiryOf: number[] = [];
  const subscribed: string[][] = [];
  const script: Step[] = [];
  /** The will of each client's current connection, and whether its session outlives it. */
  const willOf: (WillSpec | undefined)[] = [];
  const persistent: boolean[] = [];
  /** 5.0 No Local / Retain As Published of each client's filters, fixed for the whole script (see below). */
  const options: Map<string, { noLocal: boolean; retainAsPublished: boolean }>[] = [];
  /** The Receive Maximum of each client's current connection. */
  const receiveMaximumOf: (number | undefined)[] = [];
  /** The client's last connection ended without DISCONNECT (its will may be waiting out a Will Delay). */
  const dropped: boolean[] = [];
  const connect = (c: number, i: number) => {
    let clean = chance(0.35);
    const expiry = version === 5 ? pick([0, 300, 300]) : undefined;
    const old = online[c] || dropped[c] ? willOf[c] : undefined;
    // Excluded: Mosquitto 2.0.11 throws away the will of a connection taken over when the new connection resumes
    // its persistent session (connect__on_authorised: will__clear unless the old session ends). Petrel publishes
    // it, as 3.1.1 [MQTT-3.1.2-8] requires (5.0: 3.1.4 point 3, "that Will Message is published as described in
    // 3.1.2.5"); a focused test below holds Petrel to it. Such a takeover starts a clean session here instead.
    if (online[c] && old && persistent[c] && !clean && !(old.delay ?? 0)) clean = true;
    // Excluded: a 5.0 will still waiting out its Will Delay when a new connection for the Client ID starts a new
    // session (Clean Start 1). Petrel publishes it then, because the old session ends ("until the Will Delay
    // Interval has passed or the Session ends, whichever happens first", 3.1.3.2.2); Mosquitto drops it
    // (will_delay__remove), which the "new Network Connection for the ClientID" exception of [MQTT-3.1.2-8] allows.
    // The next connection after a delayed will resumes the session: both then cancel the will [MQTT-3.1.3-9].
    if (old?.delay) clean = false;
    // Delayed wills only with a Session Expiry: Mosquitto 2.0.11 waits out the whole Will Delay even when the
    // session ends with the connection (expiry 0), a Mosquitto bug against 3.1.3.2.2 (focused test below).
    const will: WillSpec | undefined = chance(0.3)
      ? { topic: pick(TOPICS), qos: qos(), retain: chance(0.3), payload: `w${i}`, delay: version === 5 && expiry! > 0 ? pick([0, 100]) : undefined, props: version === 5 && chance(0.5) }
      : undefined;
    const receiveMaximum = version === 5 ? pick([undefined, undefined, 1, 2]) : undefined;
    const topicAliasMaximum = version === 5 ? pick([undefined, undefined, 2]) : undefined;
    script.push({ op: 'connect', c, clean, expiry, will, receiveMaximum, topicAliasMaximum });
    receiveMaximumOf[c] = receiveMaximum;
    online[c] = true;
    dropped[c] = false;
    expiryOf[c] = expiry ?? 0;
    willOf[c] = will;
    persistent[c] = version === 5 ? expiry! > 0 : !clean;
  };
  for (let c = 0; c < CLIENTS; c++) {
    subscribed[c] = [];
    options[c] = new Map();
    connect(c, -1 - c);
  }
  for (let i = 0; i < steps; i++) {
    const c = int(CLIENTS);
    if (!online[c]) {
      connect(c, i);
      continue;
    }
    const r = rnd();
    if (r < 0.36) {
      const retain = chance(0.35);
      const payload = retain && chance(0.25) ? '' : `m${i}`;
      const alias = version === 5 && chance(0.3) ? 1 + int(3) : undefined;
      script.push({ op: 'publish', c, topic: pick(TOPICS), qos: qos(), retain, payload, alias, props: version === 5 && payload !== '' && chance(0.3) });
    } else if (r < 0.58) {
      const subs: SubSpec[] = [];
      for (let k = 1 + (chance(0.3) ? 1 : 0); k > 0; k--) {
        const s: SubSpec = { filter: pick(FILTERS), qos: qos() };
        if (version === 5) {
          // Excluded: Mosquitto 2.0.11 keeps the No Local and Retain As Published of a subscription that a new
          // SUBSCRIBE to the same filter replaces (sub__add updates only QoS and identifier), against
          // [MQTT-3.8.4-3]; Petrel replaces them (focused test below). So a client's filter keeps its first
          // options for the whole script; QoS, Retain Handling and identifier still change.
          let o = options[c]!.get(s.filter);
          if (!o) options[c]!.set(s.filter, (o = { noLocal: chance(0.25), retainAsPublished: chance(0.35) }));
          s.noLocal = o.noLocal;
          s.retainAsPublished = o.retainAsPublished;
          s.retainHandling = int(3) as 0 | 1 | 2;
        }
        subs.push(s);
        subscribed[c]!.push(s.filter);
      }
      script.push({ op: 'subscribe', c, subs, id: version === 5 && chance(0.4) ? 1 + int(9) : undefined });
    } else if (r < 0.67) {
      const filters = [chance(0.7) && subscribed[c]!.length ? pick(subscribed[c]!) : pick(FILTERS)];
      if (chance(0.2)) filters.push(pick(FILTERS));
      script.push({ op: 'unsubscribe', c, filters });
    } else if (r < 0.79) {
      // Session Expiry in DISCONNECT may only be set when CONNECT had a non-zero one [MQTT-3.14.2-2].
      let expiry = version === 5 && expiryOf[c]! > 0 && chance(0.2) ? 0 : undefined;
      const withWill = version === 5 && willOf[c] !== undefined && chance(0.4);
      // Not with a delayed will: the session then ends at once and the will is due (3.1.3.2.2), which Mosquitto
      // 2.0.11 does not do (it waits out the Will Delay; focused test below).
      if (withWill && willOf[c]!.delay) expiry = undefined;
      script.push({ op: 'disconnect', c, expiry, withWill });
      online[c] = false;
      // 0x04 publishes the will as a drop does (after its Will Delay, if any).
      dropped[c] = withWill;
    } else if (r < 0.85) {
      script.push({ op: 'drop', c });
      online[c] = false;
      dropped[c] = true;
    } else if (r < 0.9) {
      connect(c, i); // takeover
    } else if (receiveMaximumOf[c] === undefined) {
      // Not with a Receive Maximum: a muted client's window then fills, and what gets through depends on how many
      // copies a broker sends for overlapping subscriptions (Mosquitto one per subscription, Petrel one), which
      // both may do ([MQTT-3.3.4-2]). A connection with a Receive Maximum still gets the resends of a muted earlier
      // connection, a few at a time ([MQTT-4.9.0-2]).
      script.push({ op: 'mute', c, mode: chance(0.6) ? 1 : 2 });
    }
  }
  return script;
}

/**
 * 5.0 properties of an application message that the server must forward unchanged ([MQTT-3.3.2-4] Payload Format
 * Indicator, [MQTT-3.3.2-15] Response Topic, [MQTT-3.3.2-16] Correlation Data, [MQTT-3.3.2-17] User Properties in
 * order, [MQTT-3.3.2-20] Content Type), made from the payload so each message has its own.
 */
function appProperties(payload: string): Properties {
  return {
    payloadFormatIndicator: 1,
    contentType: `text/${payload}`,
    responseTopic: `reply/${payload}`,
    correlationData: Buffer.from(`corr-${payload}`),
    userProperties: [
      ['k', payload],
      ['k', 'again'],
      ['a', '1'],
    ],
  };
}

/** The forwarded application properties of a received PUBLISH, as text ('' when none). */
function describeAppProperties(p: Properties | undefined): string {
  if (!p) return '';
  const parts: string[] = [];
  if (p.payloadFormatIndicator !== undefined) parts.push(`pfi=${p.payloadFormatIndicator}`);
  if (p.contentType !== undefined) parts.push(`ct=${p.contentType}`);
  if (p.responseTopic !== undefined) parts.push(`rt=${p.responseTopic}`);
  if (p.correlationData !== undefined) parts.push(`cd=${p.correlationData.toString()}`);
  if (p.userProperties?.length) parts.push(`up=${p.userProperties.map(([k, v]) => `${k}:${v}`).join(',')}`);
  return parts.join(' ');
}

function describeStep(s: Step): string {
  switch (s.op) {
    case 'connect': {
      const w = s.will;
      const will = w ? ` will=(${JSON.stringify(w.topic)} q${w.qos}${w.retain ? ' retain' : ''} ${JSON.stringify(w.payload)}${w.delay ? ` delay=${w.delay}` : ''}${w.props ? ' +properties' : ''})` : '';
      const limits = `${s.receiveMaximum ? ` receiveMaximum=${s.receiveMaximum}` : ''}${s.topicAliasMaximum ? ` topicAliasMaximum=${s.topicAliasMaximum}` : ''}`;
      return `c${s.c} CONNECT clean=${s.clean ? 1 : 0}${s.expiry !== undefined ? ` expiry=${s.expiry}` : ''}${limits}${will}`;
    }
    case 'drop':
      return `c${s.c} (connection dropped)`;
    case 'mute':
      return `c${s.c} (stops sending ${s.mode === 1 ? 'PUBACK/PUBREC' : 'PUBCOMP'})`;
    case 'disconnect':
      return `c${s.c} DISCONNECT${s.withWill ? ' 0x04' : ''}${s.expiry !== undefined ? ` expiry=${s.expiry}` : ''}`;
    case 'subscribe':
      return `c${s.c} SUBSCRIBE${s.id !== undefined ? ` id=${s.id}` : ''} ${s.subs
        .map((x) => `${JSON.stringify(x.filter)} q${x.qos}${x.noLocal ? ' nl' : ''}${x.retainAsPublished ? ' rap' : ''}${x.retainHandling ? ` rh${x.retainHandling}` : ''}`)
        .join(', ')}`;
    case 'unsubscribe':
      return `c${s.c} UNSUBSCRIBE ${s.filters.map((f) => JSON.stringify(f)).join(', ')}`;
    case 'publish':
      return `c${s.c} PUBLISH ${JSON.stringify(s.topic)} q${s.qos}${s.retain ? ' retain' : ''} ${JSON.stringify(s.payload)}${s.alias ? ` alias=${s.alias}` : ''}${s.props ? ' +properties' : ''}`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Running a script against one broker

/** A message as a client received it. `ids`: 5.0 Subscription Identifiers, sorted. */
interface Delivery {
  topic: string;
  payload: string;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  ids: number[];
  /** Forwarded application properties (describeAppProperties). */
  props: string;
  /** The receiving client's subscriptions matching the topic when it arrived (as tracked). */
  subs: { qos: QoS; id: number | undefined; rap: boolean }[];
}

/** What one client saw during one step. */
interface ClientStepRecord {
  /** CONNACK / SUBACK / UNSUBACK / PUBACK / PUBREC / PUBCOMP, in order, as text. */
  acks: string[];
  deliveries: Delivery[];
  /**
   * `topic\0payload` of the messages a PUBREL was received for (kept apart from the acks: Mosquitto routes a QoS 2
   * message at PUBREL, so their order differs).
   */
  released: string[];
  /** Connected at the end of the step. */
  online: boolean;
}

type Trace = ClientStepRecord[][]; // [step][client]

/** Independent of Petrel's topicMatches (which is under test): MQTT 4.7 matching, '$' rule included. */
function filterMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** What a message published in a step should look like at one client, from that client's subscriptions then. */
interface Expectation {
  /** Subscriptions of the client that match the topic (No Local ones on its own messages left out). */
  matching: number;
  /** min(publish QoS, highest matching subscription QoS) [MQTT-3.3.5-1] / [MQTT-3.3.4-2]. */
  qos: QoS;
  /** min(publish QoS, QoS of each matching subscription), its Subscription Identifier and Retain As Published. */
  each: { qos: QoS; id: number | undefined; rap: boolean }[];
  /** The RETAIN flag it was published with. */
  retain: boolean;
}

class ScriptRunner {
  private readonly conns: (RawClient | undefined)[] = [];
  /**
   * Each client's subscriptions (filter -> granted QoS and options) as this broker's own answers say they are:
   * SUBACK adds, UNSUBACK removes, CONNACK without Session Present clears. Used to know, for a delivery, how many
   * subscriptions matched and at which QoS (so overlapping-subscription rules can be checked), never to decide
   * what a broker should have kept.
   */
  private readonly subs: Map<string, { qos: QoS; noLocal: boolean; id: number | undefined; rap: boolean }>[] = Array.from({ length: CLIENTS }, () => new Map());
  private pendingSubscribe: ({ subs: SubSpec[]; id: number | undefined } | undefined)[] = [];
  /** Mute mode of each connection (see the 'mute' step). */
  private mute: number[] = [];
  /** Topic Aliases of each connection: those it set toward the broker, and those the broker set toward it. */
  private readonly aliasesOut = new WeakMap<RawClient, Map<number, string>>();
  private readonly aliasesIn = new WeakMap<RawClient, { max: number; map: Map<number, string> }>();
  /** The will of each client's current connection. */
  private readonly will: (WillSpec | undefined)[] = [];
  /** Per client, packet id -> message of the QoS 2 PUBLISH packets received (across its connections). */
  private readonly inbound: Map<number, string>[] = Array.from({ length: CLIENTS }, () => new Map());
  private pendingUnsubscribe: (string[] | undefined)[] = [];
  /** By client, then `topic\0payload` of each published message with a non-empty payload. */
  readonly expected: Map<string, Expectation>[] = Array.from({ length: CLIENTS }, () => new Map());
  /** Per client, messages left out of the comparison (excuseMosquitto). */
  readonly excluded: Set<string>[] = Array.from({ length: CLIENTS }, () => new Set());
  private nextPacketId = 1;
  private records: ClientStepRecord[] = [];

  constructor(
    private readonly port: number,
    private readonly version: Version,
    private readonly idPrefix: string,
    /** How to know the broker has seen a dropped connection close: `mark` before the drop, `waitGone` after. */
    private readonly gone: { mark(): number; waitGone(clientId: string, mark: number): Promise<void> },
  ) {}

  private clientId(c: number): string {
    return `${this.idPrefix}-c${c}`;
  }

  private packetId(): number {
    const id = this.nextPacketId;
    this.nextPacketId = id >= 60000 ? 1 : id + 1;
    return id;
  }

  async run(script: Step[]): Promise<Trace> {
    const trace: Trace = [];
    for (const step of script) {
      this.records = Array.from({ length: CLIENTS }, () => ({ acks: [], deliveries: [], released: [], online: false }));
      await this.apply(step);
      this.records.forEach((r, c) => (r.online = this.conns[c] !== undefined && !this.conns[c]!.closed));
      trace.push(this.records);
    }
    return trace;
  }

  /**
   * Notes, for every client, what its subscriptions say about a message client `from` publishes now (or whose
   * will goes now). No Local subscriptions of `from` itself do not count.
   */
  private expect(from: number, m: { topic: string; payload: string; qos: QoS; retain: boolean }): void {
    for (let r = 0; r < CLIENTS; r++) {
      const each = [...this.subs[r]!]
        .filter(([f, x]) => filterMatches(f, m.topic) && !(x.noLocal && r === from))
        .map(([, x]) => ({ qos: Math.min(x.qos, m.qos) as QoS, id: x.id, rap: x.rap }));
      this.expected[r]!.set(`${m.topic}\u0000${m.payload}`, { matching: each.length, qos: Math.max(0, ...each.map((e) => e.qos)) as QoS, each, retain: m.retain });
    }
  }

  private async apply(step: Step): Promise<void> {
    const v5 = this.version === 5;
    const c = step.c;
    switch (step.op) {
      case 'connect': {
        const fields: Partial<ConnectPacket> = { protocolVersion: this.version, clientId: this.clientId(c), clean: step.clean, keepAlive: 60 };
        if (v5) {
          fields.properties = {};
          if (step.expiry) fields.properties.sessionExpiryInterval = step.expiry;
          if (step.receiveMaximum) fields.properties.receiveMaximum = step.receiveMaximum;
          if (step.topicAliasMaximum) fields.properties.topicAliasMaximum = step.topicAliasMaximum;
        }
        const w = step.will;
        if (w) {
          fields.will = { topic: w.topic, payload: Buffer.from(w.payload), qos: w.qos, retain: w.retain };
          if (v5) fields.will.properties = { ...(w.props ? appProperties(w.payload) : {}), ...(w.delay ? { willDelayInterval: w.delay } : {}) };
        }
        const old = this.conns[c];
        if (old && this.will[c]) this.expect(c, this.will[c]);
        const { client, connack } = await RawClient.connect(this.port, fields);
        // Small packets written back to back (PUBACK then PINGREQ) would otherwise wait for delayed ACKs (Nagle).
        client.socket.setNoDelay(true);
        this.aliasesOut.set(client, new Map());
        this.aliasesIn.set(client, { max: step.topicAliasMaximum ?? 0, map: new Map() });
        if (old) {
          // Takeover: the broker closes the old connection ([MQTT-3.1.4-2]; 5.0: DISCONNECT 0x8E first).
          await old.waitClosed();
          this.drain(c, old);
        }
        this.conns[c] = client;
        this.will[c] = w;
        this.mute[c] = 0;
        this.records[c]!.acks.push(`CONNACK ${connack.reasonCode} sp=${connack.sessionPresent ? 1 : 0}`);
        if (!connack.sessionPresent) this.subs[c]!.clear();
        break;
      }
      case 'drop': {
        const conn = this.conns[c]!;
        if (this.will[c]) this.expect(c, this.will[c]);
        this.drain(c, conn);
        const mark = this.gone.mark();
        conn.destroy();
        this.conns[c] = undefined;
        await this.gone.waitGone(this.clientId(c), mark);
        break;
      }
      case 'mute':
        this.mute[c] = step.mode;
        break;
      case 'disconnect': {
        const conn = this.conns[c]!;
        if (step.withWill && this.will[c]) this.expect(c, this.will[c]);
        conn.send(v5 ? { type: 14, reasonCode: step.withWill ? 4 : 0, properties: step.expiry !== undefined ? { sessionExpiryInterval: step.expiry } : {} } : { type: 14 });
        await conn.waitClosed();
        this.drain(c, conn);
        this.conns[c] = undefined;
        break;
      }
      case 'subscribe': {
        this.pendingSubscribe[c] = { subs: step.subs, id: step.id };
        const properties: Properties | undefined = v5 ? (step.id !== undefined ? { subscriptionIdentifier: step.id } : {}) : undefined;
        this.conns[c]!.send({
          type: 8,
          packetId: this.packetId(),
          subscriptions: step.subs.map((s) => ({ topicFilter: s.filter, qos: s.qos, noLocal: s.noLocal, retainAsPublished: s.retainAsPublished, retainHandling: s.retainHandling })),
          properties,
        });
        break;
      }
      case 'unsubscribe':
        this.pendingUnsubscribe[c] = step.filters;
        this.conns[c]!.send({ type: 10, packetId: this.packetId(), topicFilters: step.filters, properties: v5 ? {} : undefined });
        break;
      case 'publish': {
        const p: PublishPacket = { type: 3, topic: step.topic, payload: Buffer.from(step.payload), qos: step.qos, retain: step.retain, dup: false };
        if (step.qos > 0) p.packetId = this.packetId();
        if (v5) p.properties = step.props ? appProperties(step.payload) : {};
        if (step.alias !== undefined) {
          const aliases = this.aliasesOut.get(this.conns[c]!)!;
          if (aliases.get(step.alias) === step.topic) p.topic = '';
          aliases.set(step.alias, step.topic);
          p.properties!.topicAlias = step.alias;
        }
        if (step.payload !== '') this.expect(c, step);
        this.conns[c]!.send(p);
        break;
      }
    }
    await this.settle(step.op === 'disconnect' || step.op === 'drop' ? [] : [c]);
  }

  /**
   * Waits until nothing more is coming: PINGREQ/PINGRESP round trips, one client at a time, the clients that
   * just sent something first (so whatever the broker routes because of it is on its way to the others before
   * they are pinged), answering every PUBLISH / PUBREC / PUBREL, until a round in which nobody had to answer.
   */
  private async settle(first: number[]): Promise<void> {
    let active = first;
    for (let round = 0; round < 20; round++) {
      const order = [...active, ...[...this.conns.keys()].filter((i) => !active.includes(i))];
      const acted: number[] = [];
      for (const i of order) {
        const conn = this.conns[i];
        if (!conn || conn.closed) continue;
        await conn.sync();
        if (this.drain(i, conn)) acted.push(i);
      }
      if (acted.length === 0) return;
      active = acted;
    }
    throw new Error('the broker never went quiet');
  }

  /** Records and answers what `conn` received; true when it had to answer something. */
  private drain(i: number, conn: RawClient): boolean {
    const rec = this.records[i]!;
    const code = (p: { reasonCode?: number }) => (this.version === 5 ? ` ${p.reasonCode ?? 0}` : '');
    const mute = conn === this.conns[i] ? (this.mute[i] ?? 0) : 0;
    let answered = false;
    for (const p of conn.packets.splice(0) as Packet[]) {
      switch (p.type) {
        case 3: {
          const ids = p.properties?.subscriptionIdentifier;
          let topic = p.topic;
          const alias = p.properties?.topicAlias;
          if (alias !== undefined) {
            // [MQTT-3.3.2-8]/[MQTT-3.3.2-10]: the server uses aliases up to our Topic Alias Maximum, per connection.
            const a = this.aliasesIn.get(conn)!;
            if (alias < 1 || alias > a.max) rec.acks.push(`PUBLISH with Topic Alias ${alias} above our maximum ${a.max}`);
            if (topic === '') topic = a.map.get(alias) ?? `(unknown Topic Alias ${alias})`;
            else a.map.set(alias, topic);
          }
          rec.deliveries.push({
            topic,
            payload: p.payload.toString(),
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            ids: ids === undefined ? [] : (Array.isArray(ids) ? [...ids] : [ids]).sort((x, y) => x - y),
            props: describeAppProperties(p.properties),
            subs: [...this.subs[i]!].filter(([f]) => filterMatches(f, topic)).map(([, x]) => ({ qos: x.qos, id: x.id, rap: x.rap })),
          });
          if (p.qos === 2) this.inbound[i]!.set(p.packetId!, `${topic}\u0000${p.payload.toString()}`);
          if (p.qos > 0 && mute !== 1) {
            conn.send({ type: p.qos === 1 ? 4 : 5, packetId: p.packetId! });
            answered = true;
          }
          break;
        }
        case 4:
          rec.acks.push(`PUBACK${code(p)}`);
          break;
        case 5:
          rec.acks.push(`PUBREC${code(p)}`);
          conn.send({ type: 6, packetId: p.packetId });
          answered = true;
          break;
        case 6:
          rec.released.push(this.inbound[i]!.get(p.packetId) ?? `unknown packet id ${p.packetId}`);
          if (mute === 0) {
            conn.send({ type: 7, packetId: p.packetId });
            answered = true;
          }
          break;
        case 7:
          rec.acks.push(`PUBCOMP${code(p)}`);
          break;
        case 9: {
          const codes = (p as SubackPacket).reasonCodes;
          rec.acks.push(`SUBACK [${codes.join(',')}]`);
          const pending = this.pendingSubscribe[i];
          pending?.subs.forEach((s, k) => {
            if (codes[k]! < 0x80) this.subs[i]!.set(s.filter, { qos: codes[k] as QoS, noLocal: s.noLocal ?? false, id: pending.id, rap: s.retainAsPublished ?? false });
          });
          this.pendingSubscribe[i] = undefined;
          break;
        }
        case 11:
          for (const f of this.pendingUnsubscribe[i] ?? []) this.subs[i]!.delete(f);
          this.pendingUnsubscribe[i] = undefined;
          rec.acks.push(`UNSUBACK${this.version === 5 ? ` [${((p as UnsubackPacket).reasonCodes ?? []).join(',')}]` : ''}`);
          break;
        case 14:
          rec.acks.push(`DISCONNECT${code(p)}`);
          break;
        default:
          rec.acks.push(`packet type ${p.type}`);
      }
    }
    if (conn.decodeError) rec.acks.push(`decode error: ${conn.decodeError.message}`);
    return answered;
  }

  /**
   * Ends every session this script made (which publishes the wills still waiting for their delay), then clears
   * the retained messages on every topic of TOPICS, so the next script starts from an empty broker.
   */
  async cleanup(): Promise<void> {
    const mark = this.gone.mark();
    const open = this.conns.flatMap((conn, c) => (conn && !conn.closed ? [c] : []));
    for (const c of open) this.conns[c]!.destroy();
    await Promise.all(open.map((c) => this.gone.waitGone(this.clientId(c), mark)));
    const v5 = this.version === 5;
    for (let c = 0; c <= CLIENTS; c++) {
      const { client } = await RawClient.connect(this.port, { protocolVersion: this.version, clientId: c < CLIENTS ? this.clientId(c) : `${this.idPrefix}-clear`, clean: true, keepAlive: 60, properties: v5 ? {} : undefined });
      client.socket.setNoDelay(true);
      if (c === CLIENTS) {
        for (const topic of TOPICS) client.send({ type: 3, topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false, properties: v5 ? {} : undefined });
      }
      client.send({ type: 14, reasonCode: 0, properties: v5 ? {} : undefined });
      await client.waitClosed();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Comparing

// Subscription Identifiers as a set: one PUBLISH for two matching subscriptions with the same identifier may
// carry it twice (3.3.2.3.8: one per matching subscription) or once; both say the same.
const fmt = (d: Delivery) => `${d.topic} ${JSON.stringify(d.payload)} q${d.qos} r${d.retain ? 1 : 0}${d.dup ? ' dup' : ''}${d.props ? ` {${d.props}}` : ''}${d.ids.length ? ` ids=${[...new Set(d.ids)].join('+')}` : ''}`;

/**
 * One step of one client as text, for the comparison. Copies of one message (overlapping subscriptions) are
 * merged into one: highest QoS, RETAIN if any copy had it, every Subscription Identifier.
 * 5.0 PUBACK / PUBREC 0x10 (No matching subscribers) counts as 0x00: the server MAY use it instead of Success
 * when it knows there are none (3.4.2.1, 3.5.2.1).
 */
function canonical(rec: ClientStepRecord): string {
  const merged = new Map<string, Delivery & { copies: number }>();
  const byTopic = new Map<string, string[]>();
  for (const d of rec.deliveries) {
    const key = `${d.topic}\u0000${d.payload}`;
    const m = merged.get(key);
    if (m) {
      m.qos = Math.max(m.qos, d.qos) as QoS;
      m.retain ||= d.retain;
      m.dup &&= d.dup;
      m.ids = [...new Set([...m.ids, ...d.ids])].sort((x, y) => x - y);
      m.copies++;
      continue;
    }
    merged.set(key, { ...d, copies: 1 });
  }
  // Grouped by topic and QoS (of the merged copy), in arrival order within a group: [MQTT-4.6.0-5] orders the
  // messages "for the same Topic and QoS".
  for (const [key, m] of merged) {
    const group = `${m.topic} q${m.qos}`;
    const list = byTopic.get(group) ?? [];
    list.push(key);
    byTopic.set(group, list);
  }
  const msgs = [...byTopic.keys()].sort().map((t) => byTopic.get(t)!.map((k) => fmt(merged.get(k)!)).join(' ; '));
  const acks = rec.acks.map((a) => a.replace(/^(PUBACK|PUBREC) 16$/, '$1 0'));
  const released = [...new Set(rec.released)].sort().map((k) => `PUBREL(${k.replace('\u0000', ' ')})`);
  return [...acks, ...released, ...msgs].join(' | ');
}

interface Difference {
  seed: number;
  step: number;
  client: number;
  petrel: string;
  mosquitto: string;
}

const keyOf = (d: { topic: string; payload: string }) => `${d.topic}\u0000${d.payload}`;

/**
 * Mosquitto 2.0.11 behaviour excused before comparing, each time only in exactly the known case. Returns how many
 * deliveries were changed. (Other known Mosquitto deviations are kept out of the scripts by generate().)
 *
 * 1. (3.1.1) With overlapping subscriptions a 3.1.1 client gets a single copy (Mosquitto de-duplicates per client,
 *    allow_duplicate_messages false) at the QoS of whichever matching subscription its tree walk met first, not
 *    at the highest. [MQTT-3.3.5-1] requires "the maximum QoS of all the matching subscriptions": a Mosquitto bug;
 *    Petrel does it right (focused test below, and violations() checks Petrel's QoS). When Mosquitto's copy has
 *    the lower QoS of one of the matching subscriptions (or, offline, is missing because that QoS was 0 and QoS 0
 *    is not queued), the message is left out of both traces for that client: its redelivery and PUBREL follow
 *    from that QoS. Messages without a unique payload (the empty ones that clear a retained message) are
 *    handled step by step from the subscriptions that matched when they arrived.
 * 2. (5.0) Mosquitto sends one copy per matching subscription ([MQTT-3.3.4-5], allowed); to an offline session it
 *    queues only the copies of QoS 1/2, so a queued message comes back without the Subscription Identifiers (and
 *    the Retain As Published RETAIN 1) of the QoS 0 subscriptions. Petrel sends one copy at the highest QoS with
 *    every identifier ([MQTT-3.3.4-4], also allowed) and RETAIN 1 if any matching subscription has Retain As
 *    Published (the spec says nothing of merging that option). Mosquitto's identifiers and RETAIN are completed
 *    when they are exactly those of the QoS 1/2 subscriptions.
 * 3. (5.0) On a session takeover the old connection gets no DISCONNECT 0x8E from Mosquitto 2.0.11 (it closes the
 *    socket at once, dropping the queued packet); 3.1.4 point 2 / [MQTT-3.1.4-3] say the Server "sends a DISCONNECT
 *    packet to the existing Client with Reason Code of 0x8E (Session taken over)", as Petrel does. The missing
 *    DISCONNECT is put back on a takeover step.
 * 4. On a takeover where the old connection's will is published, Mosquitto publishes it before it closes the old
 *    connection, so an old connection subscribed to its own will topic receives its own will. [MQTT-3.1.2-8]: the
 *    will is published "after the Network Connection is subsequently closed"; Petrel does that (nothing reaches
 *    the old connection). Those deliveries are removed (the new connection starts a clean session here, see
 *    generate(), so it cannot legitimately receive the will either).
 * 5. (5.0) Mosquitto answers UNSUBACK 0x00 (Success) to the UNSUBSCRIBE of a '$' filter (e.g. `$x/+`) that the client
 *    does not hold; for other filters it answers 0x11 (No subscription existed), as Petrel does for both. 0x11 is
 *    the code the spec gives for that case (3.11.3, "No matching Topic Filter is being used by the Client"); 0x00
 *    would say "The subscription is deleted". Mosquitto's 0 is taken as 0x11 where Petrel answered 0x11.
 */
function excuseMosquitto(version: Version, script: Step[], petrel: Trace, trace: Trace, runner: ScriptRunner): number {
  let n = 0;
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  const idsOf = (each: Expectation['each']) => [...new Set(each.flatMap((e) => (e.id === undefined ? [] : [e.id])))].sort((x, y) => x - y);
  if (version === 4) {
    for (let c = 0; c < CLIENTS; c++) {
      for (const [key, e] of runner.expected[c]!) {
        const levels = new Set(e.each.map((x) => x.qos));
        if (e.matching < 2 || levels.size < 2) continue;
        let got = -1;
        for (const step of trace) for (const d of step[c]!.deliveries) if (!d.retain && keyOf(d) === key) got = Math.max(got, d.qos);
        if (got >= e.qos || !(levels.has(got as QoS) || (got === -1 && levels.has(0)))) continue;
        n++;
        runner.excluded[c]!.add(key);
        for (const t of [petrel, trace]) {
          for (const step of t) {
            const rec = step[c]!;
            rec.deliveries = rec.deliveries.filter((d) => d.retain || keyOf(d) !== key);
            rec.released = rec.released.filter((k) => k !== key);
          }
        }
      }
    }
  }
  if (version === 4) {
    trace.forEach((step, i) =>
      step.forEach((rec, c) => {
        const prec = petrel[i]![c]!;
        const keys = new Set([...rec.deliveries, ...prec.deliveries].filter((d) => !d.retain && d.payload === '').map(keyOf));
        for (const key of keys) {
          const mine = rec.deliveries.filter((d) => !d.retain && keyOf(d) === key);
          const theirs = prec.deliveries.filter((d) => !d.retain && keyOf(d) === key);
          const levels = new Set([...mine, ...theirs][0]!.subs.map((x) => x.qos));
          const got = Math.max(-1, ...mine.map((d) => d.qos));
          const right = Math.max(-1, ...theirs.map((d) => d.qos));
          if (levels.size < 2 || got >= right || !(levels.has(got as QoS) || (got === -1 && levels.has(0)))) continue;
          n++;
          for (const r of [rec, prec]) {
            r.deliveries = r.deliveries.filter((d) => d.retain || keyOf(d) !== key);
            r.released = r.released.filter((k) => k !== key);
          }
        }
      }),
    );
  }
  trace.forEach((step, i) =>
    step.forEach((rec, c) => {
      const s = script[i]!;
      const takeover = s.op === 'connect' && s.c === c && i > 0 && trace[i - 1]![c]!.online;
      if (version === 5 && takeover && rec.acks[0]?.startsWith('CONNACK')) {
        rec.acks.unshift('DISCONNECT 142');
        n++;
      }
      if (takeover) {
        let will: WillSpec | undefined;
        for (let j = i - 1; j >= 0; j--) {
          const x = script[j]!;
          if (x.op === 'connect' && x.c === c) {
            will = x.will;
            break;
          }
        }
        const before = rec.deliveries.length;
        if (will) rec.deliveries = rec.deliveries.filter((d) => !(d.topic === will.topic && d.payload === will.payload));
        n += before - rec.deliveries.length;
      }
      if (version === 5 && s.op === 'unsubscribe' && s.c === c) {
        rec.acks = rec.acks.map((a, k) => {
          const ours = /^UNSUBACK \[(.*)\]$/.exec(a);
          const theirs = /^UNSUBACK \[(.*)\]$/.exec(petrel[i]![c]!.acks[k] ?? '');
          if (!ours || !theirs) return a;
          const p = theirs[1]!.split(',');
          const codes = ours[1]!.split(',').map((x, j) => (x === '0' && p[j] === '17' && s.filters[j]!.startsWith('$') ? (n++, '17') : x));
          return `UNSUBACK [${codes.join(',')}]`;
        });
      }
      for (const d of rec.deliveries) {
        // An empty payload is not unique: the subscriptions that matched when it arrived stand in (every empty
        // payload in these scripts clears a retained message, so it was published with RETAIN 1).
        const e = d.payload !== '' ? runner.expected[c]!.get(keyOf(d)) : { each: d.subs, retain: true };
        if (!e) continue;
        if (version === 5 && s.op === 'connect') {
          const kept = e.each.filter((x) => x.qos > 0);
          const all = idsOf(e.each);
          const queued = idsOf(kept);
          const got = [...new Set(d.ids)].sort((x, y) => x - y);
          const retainAll = e.retain && e.each.some((x) => x.rap);
          const retainQueued = e.retain && kept.some((x) => x.rap);
          if ((!same(all, queued) || retainAll !== retainQueued) && same(got, queued) && d.retain === retainQueued) {
            d.ids = all;
            d.retain = retainAll;
            n++;
          }
        }
      }
    }),
  );
  return n;
}

/**
 * A check of each broker on its own (an oracle, not a comparison): a message published while a client is
 * connected reaches it iff one of its subscriptions (as the broker acknowledged them) matches, once per matching
 * subscription at most [MQTT-3.3.5-1] (3.1.1) / [MQTT-3.3.4-2] (5.0), at the highest QoS of those ([MQTT-3.8.4-6]:
 * min(published, granted)), and with RETAIN 0 in 3.1.1 [MQTT-3.3.1-9]. And a 5.0 PUBACK / PUBREC 0x10 (No matching
 * subscribers) only when no connected client has a matching subscription (3.4.2.1: "If the Server knows that there
 * are no matching subscribers, it MAY use this Reason Code").
 */
function violations(version: Version, script: Step[], trace: Trace, runner: ScriptRunner): string[] {
  const out: string[] = [];
  script.forEach((step, i) => {
    if (step.op !== 'publish' || step.payload === '') return;
    const key = keyOf(step);
    const noMatch = trace[i]![step.c]!.acks.some((a) => a === 'PUBACK 16' || a === 'PUBREC 16');
    const matched = trace[i]!.flatMap((rec, c) => (rec.online && runner.expected[c]!.get(key)!.matching > 0 ? [`c${c}`] : []));
    if (noMatch && matched.length) out.push(`step ${i} (${describeStep(step)}): 0x10 No matching subscribers, but ${matched.join(', ')} subscribed`);
    trace[i]!.forEach((rec, c) => {
      if (!rec.online || runner.excluded[c]!.has(key)) return;
      const e = runner.expected[c]!.get(key)!;
      const copies = rec.deliveries.filter((d) => keyOf(d) === key);
      const what = `step ${i} (${describeStep(step)}), c${c} with ${e.matching} matching subscription(s)`;
      if (copies.length === 0 && e.matching > 0) out.push(`${what}: not delivered`);
      if (copies.length > Math.max(1, e.matching)) out.push(`${what}: ${copies.length} copies`);
      if (copies.length > 0 && e.matching === 0) out.push(`${what}: delivered without a matching subscription`);
      const qos = Math.max(...copies.map((d) => d.qos));
      if (copies.length > 0 && e.matching > 0 && qos !== e.qos) out.push(`${what}: QoS ${qos}, expected ${e.qos}`);
      if (version === 4 && copies.some((d) => d.retain)) out.push(`${what}: RETAIN 1 on a message to an established subscription`);
    });
  });
  return out;
}

function compare(seed: number, script: Step[], petrel: Trace, mosquitto: Trace): Difference[] {
  const out: Difference[] = [];
  for (let i = 0; i < script.length; i++) {
    for (let c = 0; c < CLIENTS; c++) {
      const p = canonical(petrel[i]![c]!);
      const m = canonical(mosquitto[i]![c]!);
      if (p !== m) out.push({ seed, step: i, client: c, petrel: p, mosquitto: m });
    }
  }
  return out;
}

function report(script: Step[], d: Difference): string {
  const lines = script.slice(0, d.step + 1).map((s, i) => `  ${String(i).padStart(2)} ${describeStep(s)}`);
  return `seed ${d.seed}, step ${d.step}, client c${d.client}\n${lines.join('\n')}\n  petrel:    ${d.petrel}\n  mosquitto: ${d.mosquitto}`;
}

// ---------------------------------------------------------------------------------------------------------

const SCENARIOS = Number(process.env.DIFF_SCENARIOS ?? 30);
const STEPS = 20;

describeOrSkip('differential: Petrel vs Mosquitto 2.0.11', MOSQUITTO ? false : 'mosquitto not installed', () => {
  let petrel: { broker: Broker; port: number };
  let mosquitto: Mosquitto;

  before(async () => {
    petrel = await startBroker();
    mosquitto = await startDifferentialMosquitto(MOSQUITTO!);
  });
  after(async () => {
    await petrel?.broker.close();
    await mosquitto?.stop();
  });

  interface Outcome {
    diffs: Difference[];
    petrelViolations: string[];
    mosquittoViolations: string[];
    excused: number;
  }

  async function runBoth(seed: number, version: Version, script: Step[]): Promise<Outcome> {
    const prefix = `d${version}-${seed}`;
    const pr = new ScriptRunner(petrel.port, version, prefix, {
      mark: () => 0,
      async waitGone(id) {
        const deadline = Date.now() + 3000;
        while (petrel.broker.inspect.isConnected(id)) {
          if (Date.now() > deadline) throw new Error(`Petrel still has ${id} connected`);
          await delay(2);
        }
      },
    });
    const mr = new ScriptRunner(mosquitto.port, version, prefix, { mark: () => mosquitto.mark(), waitGone: (id, mark) => mosquitto.waitClosed(id, mark) });
    const pt = await pr.run(script);
    await pr.cleanup();
    const mt = await mr.run(script);
    await mr.cleanup();
    // Petrel is checked before anything is left out of its trace.
    const petrelViolations = violations(version, script, pt, pr);
    const excused = excuseMosquitto(version, script, pt, mt, mr);
    return {
      diffs: compare(seed, script, pt, mt),
      petrelViolations,
      mosquittoViolations: violations(version, script, mt, mr),
      excused,
    };
  }

  for (const version of [4, 5] as const) {
    it(`MQTT ${version === 4 ? '3.1.1' : '5.0'}: ${SCENARIOS} random scripts of ${STEPS} steps deliver the same to every client`, async (t) => {
      const all: string[] = [];
      let excused = 0;
      for (let seed = 1; seed <= SCENARIOS; seed++) {
        const script = generate(seed, version, STEPS);
        const o = await runBoth(seed, version, script);
        excused += o.excused;
        if (o.diffs.length) all.push(report(script, o.diffs[0]!));
        if (o.diffs.length && process.env.DIFF_ALL) for (const d of o.diffs.slice(1)) all.push(report(script, d));
        for (const v of o.petrelViolations) all.push(`seed ${seed}: Petrel: ${v}`);
        for (const v of o.mosquittoViolations) all.push(`seed ${seed}: Mosquitto: ${v}`);
      }
      t.diagnostic(`Mosquitto deliveries excused (see excuseMosquitto): ${excused}`);
      assert.equal(all.length, 0, `${all.length} differences:\n${all.join('\n\n')}`);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Focused: each place where Mosquitto 2.0.11 and Petrel were found to differ and the spec sides with Petrel.
// The random scripts above keep clear of these cases (see generate() and excuseMosquitto()); here Petrel is held
// to the spec, and what Mosquitto does with the same packets is written to the test log (not asserted).

interface Conn {
  raw: RawClient;
  v: Version;
}

async function open(port: number, v: Version, clientId: string, extra: Partial<ConnectPacket> = {}): Promise<Conn & { sessionPresent: boolean }> {
  const { client, connack } = await RawClient.connect(port, { protocolVersion: v, clientId, clean: true, keepAlive: 60, properties: v === 5 ? {} : undefined, ...extra });
  client.socket.setNoDelay(true);
  if (connack.reasonCode !== 0) throw new Error(`CONNACK ${connack.reasonCode}`);
  return { raw: client, v, sessionPresent: connack.sessionPresent };
}

async function subscribe(c: Conn, subs: { topicFilter: string; qos: QoS; noLocal?: boolean; retainAsPublished?: boolean }[]): Promise<number[]> {
  c.raw.send({ type: 8, packetId: 1, subscriptions: subs, properties: c.v === 5 ? {} : undefined });
  return ((await c.raw.next(9)) as SubackPacket).reasonCodes;
}

/** Publishes and waits for the end of the flow (QoS 0: a round trip). */
async function publish(c: Conn, topic: string, payload: string, qos: QoS, retain = false): Promise<void> {
  c.raw.send({ type: 3, topic, payload: Buffer.from(payload), qos, retain, dup: false, packetId: qos ? 9 : undefined, properties: c.v === 5 ? {} : undefined });
  if (qos === 1) await c.raw.next(4);
  if (qos === 2) {
    await c.raw.next(5);
    c.raw.send({ type: 6, packetId: 9 });
    await c.raw.next(7);
  }
  if (qos === 0) await c.raw.sync();
}

/** The PUBLISH packets `c` has received so far (after a round trip), as `topic payload qN rN`. */
async function received(c: Conn): Promise<string[]> {
  if (!c.raw.closed) await c.raw.sync();
  return (c.raw.packets.filter((p) => p.type === 3) as PublishPacket[]).map((p) => `${p.topic} ${p.payload.toString()} q${p.qos} r${p.retain ? 1 : 0}`);
}

async function leave(...cs: Conn[]): Promise<void> {
  for (const c of cs) {
    if (c.raw.closed) continue;
    c.raw.send({ type: 14, reasonCode: 0, properties: c.v === 5 ? {} : undefined });
    await c.raw.waitClosed().catch(() => c.raw.destroy());
  }
}

describe('where Mosquitto 2.0.11 differs, Petrel keeps to the spec', () => {
  let petrel: { broker: Broker; port: number };
  let mosquitto: Mosquitto | undefined;
  let run = 0;

  before(async () => {
    petrel = await startBroker();
    if (MOSQUITTO) mosquitto = await startDifferentialMosquitto(MOSQUITTO);
  });
  after(async () => {
    await petrel?.broker.close();
    await mosquitto?.stop();
  });

  /** Runs `observe` on Petrel (the result is returned, for the test to assert) and logs Mosquitto's result. */
  async function onBoth<T>(t: { diagnostic(msg: string): void }, observe: (port: number, tag: string) => Promise<T>): Promise<T> {
    const mine = await observe(petrel.port, `p${run++}`);
    if (mosquitto) t.diagnostic(`Mosquitto 2.0.11: ${JSON.stringify(await observe(mosquitto.port, `m${run++}`))}; Petrel: ${JSON.stringify(mine)}`);
    return mine;
  }

  it('[MQTT-3.3.5-1] 3.1.1 overlapping subscriptions: the message comes at the highest QoS of the matching subscriptions', async (t) => {
    const got = await onBoth(t, async (port, tag) => {
      const s = await open(port, 4, `ov-s-${tag}`);
      // Mosquitto keeps one copy at the QoS of the subscription its tree walk meets first: 'ov/+' here.
      await subscribe(s, [{ topicFilter: `ov/+`, qos: 0 }, { topicFilter: `ov/#`, qos: 2 }, { topicFilter: `ov/a`, qos: 1 }]);
      const p = await open(port, 4, `ov-p-${tag}`);
      await publish(p, 'ov/a', tag, 2);
      const out = (await received(s)).filter((x) => x.includes(tag));
      await leave(s, p);
      return out;
    });
    assert.ok(got.length >= 1 && got.length <= 3, `one copy, or one per matching subscription: ${got}`);
    assert.ok(got.some((x) => x.endsWith(' q2 r0')), `a copy at QoS 2, the highest granted: ${got}`);
  });

  it('[MQTT-3.8.4-3] 5.0: a SUBSCRIBE to a filter the session holds replaces its options (No Local, Retain As Published)', async (t) => {
    const got = await onBoth(t, async (port, tag) => {
      const c = await open(port, 5, `ro-${tag}`);
      await subscribe(c, [{ topicFilter: `ro/${tag}`, qos: 1, noLocal: true, retainAsPublished: true }]);
      await subscribe(c, [{ topicFilter: `ro/${tag}`, qos: 1, noLocal: false, retainAsPublished: false }]);
      c.raw.packets.length = 0;
      await publish(c, `ro/${tag}`, 'own', 1, true); // to itself, with RETAIN 1
      const out = await received(c);
      await publish(c, `ro/${tag}`, '', 0, true);
      await leave(c);
      return out;
    });
    assert.deepEqual(got.map((x) => x.replace(/^\S+ /, '')), ['own q1 r0'], 'delivered to its own publisher (No Local now 0) with RETAIN 0 (Retain As Published now 0)');
  });

  for (const v of [4, 5] as const) {
    it(`[MQTT-3.1.2-8] [MQTT-3.1.4-3] ${v === 4 ? '3.1.1' : '5.0'} takeover resuming the session: the old connection's will is published after it is closed${v === 5 ? ', and it gets DISCONNECT 0x8E' : ''}`, async (t) => {
      const got = await onBoth(t, async (port, tag) => {
        const w = await open(port, v, `tw-w-${tag}`);
        await subscribe(w, [{ topicFilter: `tw/${tag}/#`, qos: 1 }]);
        const persistent: Partial<ConnectPacket> = { clean: false, properties: v === 5 ? { sessionExpiryInterval: 300 } : undefined };
        const will = { topic: `tw/${tag}/gone`, payload: Buffer.from('will'), qos: 1 as QoS, retain: false, properties: v === 5 ? {} : undefined };
        const old = await open(port, v, `tw-${tag}`, { ...persistent, will });
        await subscribe(old, [{ topicFilter: `tw/${tag}/#`, qos: 0 }]);
        const fresh = await open(port, v, `tw-${tag}`, persistent);
        await old.raw.waitClosed();
        await delay(50);
        const out = {
          sessionPresent: fresh.sessionPresent,
          watcher: await received(w),
          oldConnection: await received(old),
          oldDisconnect: old.raw.packets.filter((p) => p.type === 14).map((p) => (p as { reasonCode?: number }).reasonCode),
        };
        await leave(w, fresh);
        await open(port, v, `tw-${tag}`).then((c) => leave(c)); // ends the session
        return out;
      });
      assert.equal(got.sessionPresent, true);
      assert.deepEqual(got.watcher.map((x) => x.replace(/^\S+ /, '')), ['will q1 r0'], 'the will is published: the connection was closed without DISCONNECT');
      assert.deepEqual(got.oldConnection, [], 'published after the old connection is closed, so not to it');
      assert.deepEqual(got.oldDisconnect, v === 5 ? [0x8e] : []);
    });
  }

  it('3.1.3.2.2 5.0: a will with a Will Delay is published at once when the session ends with the connection (Session Expiry 0)', async (t) => {
    const got = await onBoth(t, async (port, tag) => {
      const w = await open(port, 5, `wd-w-${tag}`);
      await subscribe(w, [{ topicFilter: `wd/${tag}`, qos: 1 }]);
      const c = await open(port, 5, `wd-${tag}`, { will: { topic: `wd/${tag}`, payload: Buffer.from('will'), qos: 1, retain: false, properties: { willDelayInterval: 2 } } });
      c.raw.destroy();
      await delay(500); // Mosquitto sends it after the 2 s delay, although the session ended at once
      const out = await received(w);
      await leave(w);
      return out;
    });
    assert.deepEqual(got.map((x) => x.replace(/^\S+ /, '')), ['will q1 r0'], '"until the Will Delay Interval has passed or the Session ends, whichever happens first"');
  });

  it('3.1.3.2.2 5.0: a will waiting out its Will Delay is published when a new connection with Clean Start 1 ends its session', async (t) => {
    // Mosquitto drops it (the new connection for the Client ID came before the delay passed, the exception of
    // [MQTT-3.1.2-8]); [MQTT-3.1.3-9] forbids the will only for a connection "to this Session", and Clean Start 1
    // ends that session, which 3.1.3.2.2 says publishes the will. Petrel's reading, held here.
    const got = await onBoth(t, async (port, tag) => {
      const w = await open(port, 5, `wc-w-${tag}`);
      await subscribe(w, [{ topicFilter: `wc/${tag}`, qos: 1 }]);
      const c = await open(port, 5, `wc-${tag}`, { properties: { sessionExpiryInterval: 300 }, will: { topic: `wc/${tag}`, payload: Buffer.from('will'), qos: 1, retain: false, properties: { willDelayInterval: 100 } } });
      c.raw.destroy();
      await delay(50);
      const before = await received(w);
      const again = await open(port, 5, `wc-${tag}`, { clean: true });
      await delay(50);
      const out = { beforeReconnect: before, afterCleanStart: (await received(w)).slice(before.length) };
      await leave(w, again);
      return out;
    });
    assert.deepEqual(got.beforeReconnect, [], 'waiting out its Will Delay');
    assert.deepEqual(got.afterCleanStart.map((x) => x.replace(/^\S+ /, '')), ['will q1 r0']);
  });

  it('3.11.3 5.0: UNSUBACK 0x11 (No subscription existed) for a \'$\' filter the client does not hold', async (t) => {
    const got = await onBoth(t, async (port, tag) => {
      const c = await open(port, 5, `un-${tag}`);
      c.raw.send({ type: 10, packetId: 2, topicFilters: ['$x/+', '$x/#', 'a/+'], properties: {} });
      const codes = ((await c.raw.next(11)) as UnsubackPacket).reasonCodes;
      await leave(c);
      return codes;
    });
    assert.deepEqual(got, [0x11, 0x11, 0x11]);
  });

  it('3.3.1.3 5.0: a shared subscription gets no retained messages (they go to "a new Non-shared Subscription")', async (t) => {
    const got = await onBoth(t, async (port, tag) => {
      const p = await open(port, 5, `sr-p-${tag}`);
      await publish(p, `sr/${tag}`, 'kept', 1, true);
      const s = await open(port, 5, `sr-s-${tag}`);
      const codes = await subscribe(s, [{ topicFilter: `$share/g/sr/${tag}`, qos: 1 }]);
      await delay(20);
      const out = { codes, got: await received(s) };
      await publish(p, `sr/${tag}`, '', 0, true);
      await leave(p, s);
      return out;
    });
    assert.deepEqual(got, { codes: [1], got: [] });
  });

  it('[MQTT-3.8.3-4] 5.0: No Local on a shared subscription is a Protocol Error (DISCONNECT 0x82)', async (t) => {
    const got = await onBoth(t, async (port, tag) => {
      const c = await open(port, 5, `snl-${tag}`);
      c.raw.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: `$share/g/snl/${tag}`, qos: 1, noLocal: true }], properties: {} });
      await c.raw.waitClosed(1000).catch(() => undefined);
      const out = { closed: c.raw.closed, packets: c.raw.packets.map((p) => `${p.type}:${(p as { reasonCode?: number }).reasonCode ?? (p as SubackPacket).reasonCodes}`) };
      await leave(c);
      return out;
    });
    assert.deepEqual(got, { closed: true, packets: ['14:130'] });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Found while probing what the random scripts do not mix (one protocol version per script): Mosquitto 2.0.11
// behaves the same, so the comparison cannot see it.

describe('found next to the differential test (fixed)', () => {
  it(
    '[MQTT-3.3.1-9] a 3.1.1 connection resuming a session made over 5.0 gets RETAIN 0 on messages forwarded through a Retain As Published subscription',
    async () => {
      const { broker, port } = await startBroker();
      try {
        const id = 'mixed-rap';
        const five = await open(port, 5, id, { clean: false, properties: { sessionExpiryInterval: 300 } });
        await subscribe(five, [{ topicFilter: 'mixed/#', qos: 1, retainAsPublished: true }]);
        await leave(five);
        const three = await open(port, 4, id, { clean: false });
        assert.equal(three.sessionPresent, true, 'the session, with its subscription, is resumed');
        const p = await open(port, 5, 'mixed-publisher');
        await publish(p, 'mixed/a', 'live', 1, true);
        const got = await received(three);
        await leave(three, p);
        // 3.1.1 has no Retain As Published: "It MUST set the RETAIN flag to 0 when a PUBLISH Packet is sent to a
        // Client because it matches an established subscription regardless of how the flag was set in the
        // message it received" [MQTT-3.3.1-9]. What the wire protocol of the connection allows decides.
        assert.deepEqual(got, ['mixed/a live q1 r0']);
      } finally {
        await broker.close();
      }
    },
  );
});
