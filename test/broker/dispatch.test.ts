// Dispatcher (src/broker/dispatch.ts) through its own API over a real TopicRouter, retained store and
// Sessions whose links encode with a PublishWriter (so shared fan-out encodings are really used) and decode
// what they would send: overlapping subscriptions merged, No Local, Retain As Published, the retained limit,
// and a publish nested in a fan-out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Dispatcher } from '../../src/broker/dispatch.js';
import type { Message } from '../../src/broker/message.js';
import { DEFAULT_LIMITS, type BrokerLimits } from '../../src/broker/options.js';
import { PublishWriter } from '../../src/broker/publish-writer.js';
import { MemoryRetainedStore } from '../../src/broker/retained.js';
import { TopicRouter } from '../../src/broker/router.js';
import { Session, type FanOutEncodings, type SessionLink } from '../../src/broker/session/session.js';
import { SharedGroups } from '../../src/broker/shared-groups.js';
import type { SubscriptionEntry } from '../../src/broker/store/types.js';
import { newStats } from '../../src/broker/sys-topics.js';
import type { ProtocolVersion, QoS } from '../../src/protocol/constants.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import type { Packet, PublishPacket } from '../../src/protocol/packets.js';

/** Encodes each PUBLISH as the channel would and keeps the decoded packets. */
class EncodingLink implements SessionLink {
  sendWindow = 100;
  readonly got: PublishPacket[] = [];
  readonly writer: PublishWriter;
  /** Runs once, right after the next write (a publish nested in the fan-out). */
  afterWrite: (() => void) | undefined;
  constructor(readonly version: ProtocolVersion) {
    this.writer = new PublishWriter(version, { now: () => 0 });
  }
  outputFull = () => false;
  writePublish(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, packetId: number | undefined, dup: boolean, encodings?: FanOutEncodings): boolean {
    const buf = this.writer.encode(message, qos, retain, ids, packetId, dup, encodings);
    if (buf === undefined) return false;
    const out: Packet[] = [];
    new PacketDecoder({ protocolVersion: this.version, role: 'client' }).feed(buf, (p) => out.push(p));
    this.got.push(out[0] as PublishPacket);
    const after = this.afterWrite;
    this.afterWrite = undefined;
    after?.();
    return true;
  }
  sendPubrel(): void {}
  watchOutput(): void {}
}

const msg = (topic: string, extra: Partial<Message> = {}): Message => ({ topic, payload: Buffer.from(`${topic}!`), qos: 2, retain: false, ...extra });
const sub = (clientId: string, filter: string, extra: Partial<SubscriptionEntry> = {}): SubscriptionEntry => ({
  clientId,
  filter,
  qos: 2,
  noLocal: false,
  retainAsPublished: false,
  retainHandling: 0,
  ...extra,
});

function setup(limits: Partial<BrokerLimits> = {}) {
  const all = { ...DEFAULT_LIMITS, ...limits };
  const stats = newStats();
  const context = { limits: all, clock: { now: () => 0 }, stats };
  const router = new TopicRouter<Session>();
  const retained = new MemoryRetainedStore();
  const warnings: string[] = [];
  const published: string[] = [];
  const dispatch = new Dispatcher(router, retained, new SharedGroups(router, all, Math.random), all, stats, {
    warning: (m) => warnings.push(m),
    published: (m) => published.push(m.topic),
  });
  const client = (clientId: string, version: ProtocolVersion = 5) => {
    const session = new Session(clientId, 0, context);
    const link = new EncodingLink(version);
    session.resume(link);
    return { session, link, subscribe: (e: SubscriptionEntry) => router.add(e, session) };
  };
  return { dispatch, stats, retained, warnings, published, client };
}

describe('Dispatcher', () => {
  it('overlapping subscriptions of one client: one copy at the highest QoS, each Subscription Identifier once [MQTT-3.3.4-2] [MQTT-3.3.4-3]', () => {
    const { dispatch, client } = setup();
    const a = client('a');
    a.subscribe(sub('a', 'x/+', { qos: 0, subscriptionIds: [2333] }));
    a.subscribe(sub('a', 'x/#', { qos: 1, subscriptionIds: [2333] }));
    a.subscribe(sub('a', 'x/y', { qos: 0, subscriptionIds: [7] }));
    a.subscribe(sub('a', '+/y', { qos: 0 }));
    assert.equal(dispatch.publish(msg('x/y'), undefined, true), 1);
    assert.equal(a.link.got.length, 1, 'one copy');
    const p = a.link.got[0]!;
    assert.equal(p.qos, 1);
    const ids = p.properties?.subscriptionIdentifier;
    assert.deepEqual(Array.isArray(ids) ? [...ids].sort((x, y) => x - y) : [ids], [7, 2333]);
  });

  it('a message for some sessions only (RemoteDelivery.only): their matching subscriptions merged, nobody else, no shared group, not kept', () => {
    const { dispatch, client, retained } = setup();
    const a = client('a');
    const b = client('b');
    const g = client('g');
    a.subscribe(sub('a', 'x/+', { qos: 0, subscriptionIds: [1] }));
    a.subscribe(sub('a', 'x/#', { qos: 1, subscriptionIds: [2] }));
    b.subscribe(sub('b', 'x/y'));
    g.subscribe(sub('g', 'x/y', { shareGroup: 'grp' }));
    const only = { plain: true, groups: new Set(['grp/x/y']), only: new Set(['a', 'nobody']) };
    assert.equal(dispatch.publish(msg('x/y', { retain: true }), undefined, true, undefined, only), 1);
    assert.equal(a.link.got.length, 1, 'one copy for a');
    assert.equal(a.link.got[0]!.qos, 1, 'at its highest matching QoS');
    assert.equal(b.link.got.length, 0, 'b is not among them');
    assert.equal(g.link.got.length, 0, 'no shared group');
    assert.equal(retained.get('x/y'), undefined, 'a forwarded message is not retained again');
    assert.equal(dispatch.publish(msg('z'), undefined, true, undefined, only), 0, 'none of theirs matches');
  });

  it('two overlapping subscriptions with the same identifier give [2333], not [2333, 2333]', () => {
    const { dispatch, client } = setup();
    const a = client('a');
    a.subscribe(sub('a', 'x/+', { subscriptionIds: [2333] }));
    a.subscribe(sub('a', 'x/#', { subscriptionIds: [2333] }));
    dispatch.publish(msg('x/y'), undefined, true);
    assert.equal(a.link.got[0]!.properties?.subscriptionIdentifier, 2333);
  });

  it('several clients: one copy each, at the lower of the message and subscription QoS', () => {
    const { dispatch, client } = setup();
    const a = client('a');
    const b = client('b', 4);
    const c = client('c');
    a.subscribe(sub('a', 't', { qos: 0 }));
    b.subscribe(sub('b', '#', { qos: 2 }));
    c.subscribe(sub('c', '+', { qos: 1 }));
    assert.equal(dispatch.publish(msg('t', { qos: 1 }), undefined, true), 3);
    assert.deepEqual([a, b, c].map((x) => x.link.got.map((p) => [p.topic, p.qos])), [[['t', 0]], [['t', 1]], [['t', 1]]]);
  });

  it('No Local: not sent back to the publisher\'s own subscription [MQTT-3.8.3-3]', () => {
    const { dispatch, client } = setup();
    const a = client('a');
    const b = client('b');
    a.subscribe(sub('a', 't', { noLocal: true }));
    b.subscribe(sub('b', 't', { noLocal: true }));
    assert.equal(dispatch.publish(msg('t', { from: 'a' }), undefined, true), 1);
    assert.equal(a.link.got.length, 0);
    assert.equal(b.link.got.length, 1);
    // Merged: a No Local subscription drops out, an overlapping one without it still delivers.
    a.subscribe(sub('a', '#', { qos: 0 }));
    dispatch.publish(msg('t', { from: 'a' }), undefined, true);
    assert.deepEqual(a.link.got.map((p) => p.qos), [0]);
  });

  it('Retain As Published: RETAIN kept only when the subscription asks, cleared otherwise [MQTT-3.3.1-12] [MQTT-3.3.1-13]', () => {
    const { dispatch, client } = setup();
    const keep = client('keep');
    const clear = client('clear');
    keep.subscribe(sub('keep', 't', { retainAsPublished: true }));
    clear.subscribe(sub('clear', 't'));
    dispatch.publish(msg('t', { retain: true }), undefined, true);
    assert.equal(keep.link.got[0]!.retain, true);
    assert.equal(clear.link.got[0]!.retain, false);
    // Merged subscriptions: kept when any of them has Retain As Published.
    clear.subscribe(sub('clear', '#', { retainAsPublished: true }));
    dispatch.publish(msg('t', { retain: true }), undefined, true);
    assert.equal(clear.link.got[1]!.retain, true);
  });

  it('retained messages kept within maxRetainedMessages: refusals counted, one warning per fill-up', () => {
    const { dispatch, retained, stats, warnings, client } = setup({ maxRetainedMessages: 2 });
    const a = client('a');
    a.subscribe(sub('a', '#'));
    for (const t of ['r/1', 'r/2', 'r/3', 'r/4']) dispatch.publish(msg(t, { retain: true }), undefined, true);
    assert.equal(a.link.got.length, 4, 'refused ones are delivered all the same');
    assert.equal(retained.size, 2);
    assert.equal(stats.retainedRefused, 2);
    assert.equal(warnings.length, 1);
    // Replacing a kept topic is not refused.
    dispatch.publish(msg('r/1', { retain: true, payload: Buffer.from('new') }), undefined, true);
    assert.equal(retained.get('r/1')?.payload.toString(), 'new');
    assert.equal(stats.retainedRefused, 2);
    // A deletion makes room; the next fill-up warns again.
    dispatch.publish(msg('r/2', { retain: true, payload: Buffer.alloc(0) }), undefined, true);
    dispatch.publish(msg('r/5', { retain: true }), undefined, true);
    assert.equal(retained.size, 2);
    dispatch.publish(msg('r/6', { retain: true }), undefined, true);
    assert.equal(stats.retainedRefused, 3);
    assert.equal(warnings.length, 2);
  });

  it('a store that made room by expiry and filled up again warns again', () => {
    const { dispatch, retained, stats, warnings } = setup({ maxRetainedMessages: 1 });
    dispatch.publish(msg('r/1', { retain: true, expiresAt: 1_000 }), undefined, true);
    dispatch.publish(msg('r/2', { retain: true }), undefined, true);
    assert.equal(warnings.length, 1);
    retained.sweep(2_000); // r/1 expired: room for one
    assert.equal(retained.size, 0);
    dispatch.publish(msg('r/3', { retain: true }), undefined, true);
    assert.equal(retained.size, 1);
    dispatch.publish(msg('r/4', { retain: true }), undefined, true);
    assert.equal(stats.retainedRefused, 2);
    assert.equal(warnings.length, 2, 'the second fill-up is warned about too');
  });

  it('retained messages are not kept when retainAvailable is false', () => {
    const { dispatch, retained } = setup({ retainAvailable: false });
    dispatch.publish(msg('t', { retain: true }), undefined, true);
    assert.equal(retained.size, 0);
  });

  it('a retained message that is not owned gets its own payload copy', () => {
    const { dispatch, retained } = setup();
    const payload = Buffer.from('abc');
    dispatch.publish(msg('t', { retain: true, payload }), undefined, false);
    payload.fill(0);
    assert.equal(retained.get('t')?.payload.toString(), 'abc');
  });

  it('a publish nested in a fan-out gets encodings of its own; the outer one goes on with its own', () => {
    const { dispatch, client, published } = setup();
    const a = client('a', 4);
    const b = client('b', 4);
    for (const x of [a, b]) {
      x.subscribe(sub(x.session.clientId, 'outer', { qos: 0 }));
      x.subscribe(sub(x.session.clientId, 'inner', { qos: 0 }));
    }
    // a's write of 'outer' triggers a publish to 'inner' (as a will does when a failed write closes a client).
    a.link.afterWrite = () => dispatch.publish(msg('inner', { qos: 0 }), undefined, true);
    dispatch.publish(msg('outer', { qos: 0 }), undefined, true);
    const seen = (x: typeof a) => x.link.got.map((p) => `${p.topic}:${p.payload.toString()}`).sort();
    assert.deepEqual(seen(a), ['inner:inner!', 'outer:outer!']);
    assert.deepEqual(seen(b), ['inner:inner!', 'outer:outer!']);
    assert.deepEqual(published, ['inner', 'outer']);
    // And the next fan-out starts from clean encodings.
    dispatch.publish(msg('outer', { qos: 0, payload: Buffer.from('again') }), undefined, true);
    assert.equal(b.link.got.at(-1)!.payload.toString(), 'again');
  });
});
