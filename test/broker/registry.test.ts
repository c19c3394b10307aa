// SessionRegistry (src/broker/registry.ts) through its own API, with a recording RouteTable and fake
// connections: routes on a filter's first and last subscription, takeover, clean start, detach and expiry
// on a fake clock, remove, revokeSubscriptions, assigned Client IDs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientInfo } from '../../src/broker/hooks.js';
import type { Message } from '../../src/broker/message.js';
import { DEFAULT_LIMITS } from '../../src/broker/options.js';
import { NEVER_EXPIRES, SessionRegistry, type LiveConnection } from '../../src/broker/registry.js';
import { TopicRouter } from '../../src/broker/router.js';
import type { Session } from '../../src/broker/session/session.js';
import { SharedGroups } from '../../src/broker/shared-groups.js';
import { MemorySessionStore } from '../../src/broker/store/memory.js';
import type { RouteTable, SubscriptionEntry } from '../../src/broker/store/types.js';
import { newStats } from '../../src/broker/sys-topics.js';
import { Wills } from '../../src/broker/wills.js';
import type { WillMessage } from '../../src/protocol/packets.js';

class RecordingRoutes implements RouteTable {
  readonly hasRemoteNodes = false;
  readonly calls: string[] = [];
  addRoute(filter: string): void {
    this.calls.push(`add ${filter}`);
  }
  deleteRoute(filter: string): void {
    this.calls.push(`delete ${filter}`);
  }
  remoteNodes(): readonly string[] {
    return [];
  }
}

class FakeConnection implements LiveConnection {
  info: ClientInfo | undefined;
  identityProven = false;
  takenOver = 0;
  disconnects: [number, string][] = [];
  constructor(clientId: string) {
    this.info = client(clientId);
  }
  /** What the channel does when taken over: it closes, and its close detaches it from the session. */
  onTakeOver: (() => void) | undefined;
  takeOver(): void {
    this.takenOver++;
    this.onTakeOver?.();
  }
  serverDisconnect(reasonCode: number, reason: string): void {
    this.disconnects.push([reasonCode, reason]);
  }
}

const client = (clientId: string): ClientInfo => ({ clientId, protocolVersion: 5, remoteAddress: '127.0.0.1:1', listener: 'test' });
const entry = (clientId: string, filter: string, extra: Partial<SubscriptionEntry> = {}): SubscriptionEntry => ({
  clientId,
  filter,
  qos: 1,
  noLocal: false,
  retainAsPublished: false,
  retainHandling: 0,
  ...extra,
});

function setup(random: () => number = Math.random) {
  const clock = { time: 1_000_000, now() { return this.time; } };
  const stats = newStats();
  const context = { limits: { ...DEFAULT_LIMITS }, clock, stats };
  const router = new TopicRouter<Session>();
  const routes = new RecordingRoutes();
  const published: Message[] = [];
  const wills = new Wills(clock, {}, {}, (m) => published.push(m));
  const shared = new SharedGroups(router, context.limits, random);
  const registry = new SessionRegistry<FakeConnection>(context, new MemorySessionStore(), router, routes, shared, wills, random);
  const connect = (clientId: string, clean = false, expiry = 60) => {
    const conn = new FakeConnection(clientId);
    const { session, present } = registry.attach(conn, clientId, clean, expiry, conn.info!);
    conn.onTakeOver = () => registry.detach(conn, session);
    return { conn, session, present };
  };
  return { clock, stats, router, routes, wills, published, registry, connect };
}

describe('SessionRegistry subscriptions and routes', () => {
  it('addRoute on a filter\'s first subscription only, deleteRoute on its last', () => {
    const { registry, routes, connect, router } = setup();
    const a = connect('a').session;
    const b = connect('b').session;
    assert.equal(registry.subscribe(a, 'x/+', entry('a', 'x/+')), false);
    assert.equal(registry.subscribe(b, 'x/+', entry('b', 'x/+')), false);
    assert.equal(registry.subscribe(a, 'x/+', entry('a', 'x/+', { qos: 2 })), true, 'a replacement [MQTT-3.8.4-3]');
    assert.deepEqual(routes.calls, ['add x/+']);
    assert.equal(a.subscriptions.get('x/+')?.qos, 2);
    assert.equal(registry.unsubscribe(a, 'x/+'), true);
    assert.equal(registry.unsubscribe(a, 'x/+'), false);
    assert.deepEqual(routes.calls, ['add x/+']);
    assert.equal(registry.unsubscribe(b, 'x/+'), true);
    assert.deepEqual(routes.calls, ['add x/+', 'delete x/+']);
    assert.equal(router.size, 0);
  });

  it('shared subscriptions count toward the filter\'s route too', () => {
    const { registry, routes, connect } = setup();
    const a = connect('a').session;
    registry.subscribe(a, '$share/g/y', entry('a', 'y', { shareGroup: 'g' }));
    registry.subscribe(a, 'y', entry('a', 'y'));
    registry.unsubscribe(a, '$share/g/y');
    registry.unsubscribe(a, 'y');
    assert.deepEqual(routes.calls, ['add y', 'delete y']);
  });

  it('revokeSubscriptions removes what `allowed` no longer grants, from offline sessions too', () => {
    const { registry, routes, connect } = setup();
    const { conn, session: a } = connect('a');
    const b = connect('b').session;
    registry.subscribe(a, 'secret/#', entry('a', 'secret/#'));
    registry.subscribe(a, 'public', entry('a', 'public'));
    registry.subscribe(b, 'secret/#', entry('b', 'secret/#'));
    registry.detach(conn, a); // 'a' is offline now
    const revoked = registry.revokeSubscriptions((_c, filter) => !filter.startsWith('secret'));
    assert.deepEqual(revoked.map((r) => [r.session.clientId, r.filters]).sort(), [['a', ['secret/#']], ['b', ['secret/#']]]);
    assert.deepEqual([...a.subscriptions.keys()], ['public']);
    assert.equal(b.subscriptionCount, 0);
    assert.deepEqual(routes.calls, ['add secret/#', 'add public', 'delete secret/#']);
  });
});

describe('SessionRegistry connections and expiry', () => {
  it('a second connection with the same Client ID takes over: takeOver() on the old one, the session is present', () => {
    const { registry, connect } = setup();
    const first = connect('a');
    assert.equal(first.present, false);
    const second = connect('a');
    assert.equal(first.conn.takenOver, 1);
    assert.equal(second.conn.takenOver, 0);
    assert.equal(second.present, true);
    assert.equal(second.session, first.session);
    assert.equal(registry.connected.get('a'), second.conn);
    // The old connection detached inside takeOver() (as the channel does): the new one holds the session, no countdown.
    assert.equal(registry.sessions.get('a'), first.session);
    assert.equal(second.session.expiresAt, undefined);
    assert.equal(registry.timerFootprint().expiring, 0);
  });

  it('a late detach by a connection that is no longer the current one leaves the live session alone', () => {
    const { registry, connect } = setup();
    const first = connect('a');
    first.conn.onTakeOver = undefined; // this connection does not detach inside takeOver()
    const second = connect('a');
    registry.detach(first.conn, first.session);
    assert.equal(registry.connected.get('a'), second.conn);
    assert.equal(registry.timerFootprint().expiring, 0);
    assert.equal(second.session.expiresAt, undefined);
  });

  it('clean start ends the old session: subscriptions and route gone, a new session [MQTT-3.1.2-4]', () => {
    const { registry, routes, connect } = setup();
    const first = connect('a');
    registry.subscribe(first.session, 'x', entry('a', 'x'));
    registry.detach(first.conn, first.session);
    const second = connect('a', true);
    assert.equal(second.present, false);
    assert.notEqual(second.session, first.session);
    assert.equal(second.session.subscriptionCount, 0);
    assert.deepEqual(routes.calls, ['add x', 'delete x']);
  });

  it('clean start publishes a will still waiting out its delay', () => {
    const { registry, wills, published, connect } = setup();
    const first = connect('a');
    const will: WillMessage = { topic: 'w', payload: Buffer.from('gone'), qos: 0, retain: false, properties: { willDelayInterval: 30 } };
    registry.detach(first.conn, first.session);
    wills.schedule(will, first.conn.info!, true);
    assert.equal(published.length, 0);
    connect('a', true);
    assert.deepEqual(published.map((m) => m.topic), ['w']);
  });

  it('detach with expiry 0 ends the session at once', () => {
    const { registry, routes, connect } = setup();
    const { conn, session } = connect('a', false, 0);
    registry.subscribe(session, 'x', entry('a', 'x'));
    registry.detach(conn, session);
    assert.equal(registry.sessions.has('a'), false);
    assert.equal(registry.connected.has('a'), false);
    assert.deepEqual(routes.calls, ['add x', 'delete x']);
  });

  it('detach with a finite expiry files the session; expire(now) ends it exactly at its deadline [MQTT-3.1.2-23]', () => {
    const { registry, stats, clock, connect } = setup();
    const { conn, session } = connect('a', false, 60);
    registry.detach(conn, session);
    assert.equal(session.expiresAt, clock.time + 60_000);
    assert.deepEqual(registry.timerFootprint(), { expiring: 1, filed: 1, stale: 0 });
    registry.expire(clock.time + 59_999);
    assert.equal(registry.sessions.get('a'), session, 'still there 1 ms before');
    assert.equal(stats.sessionsExpired, 0);
    registry.expire(clock.time + 60_000);
    assert.equal(registry.sessions.has('a'), false);
    assert.equal(stats.sessionsExpired, 1);
    assert.deepEqual(registry.timerFootprint(), { expiring: 0, filed: 0, stale: 0 });
  });

  it('a session resumed before its deadline does not expire; leaving again restarts the countdown', () => {
    const { registry, stats, clock, connect } = setup();
    const first = connect('a', false, 10);
    registry.detach(first.conn, first.session);
    clock.time += 5_000;
    const second = connect('a', false, 10);
    assert.equal(second.present, true);
    assert.equal(second.session.expiresAt, undefined);
    registry.expire(clock.time + 5_000);
    assert.equal(registry.sessions.get('a'), first.session);
    registry.detach(second.conn, second.session);
    registry.expire(clock.time + 9_900);
    assert.equal(registry.sessions.has('a'), true);
    registry.expire(clock.time + 10_000);
    assert.equal(registry.sessions.has('a'), false);
    assert.equal(stats.sessionsExpired, 1);
  });

  it('NEVER_EXPIRES: the session is never filed and never expires', () => {
    const { registry, stats, clock, connect } = setup();
    const { conn, session } = connect('a', false, NEVER_EXPIRES);
    registry.detach(conn, session);
    assert.equal(session.expiresAt, undefined);
    registry.expire(clock.time + 0xffffffff * 1000 + 1);
    assert.equal(registry.sessions.get('a'), session);
    assert.equal(stats.sessionsExpired, 0);
    assert.equal(registry.timerFootprint().expiring, 0);
  });

  it('remove(clientId): DISCONNECT 0x98 to the live connection and the session ends; false for an unknown one', () => {
    const { registry, routes, connect } = setup();
    const { conn, session } = connect('a', false, NEVER_EXPIRES);
    registry.subscribe(session, 'x', entry('a', 'x'));
    assert.equal(registry.remove('a'), true);
    assert.deepEqual(conn.disconnects.map(([code]) => code), [0x98]);
    assert.equal(registry.sessions.has('a'), false);
    assert.deepEqual(routes.calls, ['add x', 'delete x']);
    assert.equal(registry.remove('nobody'), false);
    // An offline session is removed too.
    const b = connect('b', false, 60);
    registry.detach(b.conn, b.session);
    assert.equal(registry.remove('b'), true);
    assert.equal(registry.sessions.has('b'), false);
    assert.equal(registry.timerFootprint().expiring, 0);
  });

  it('assignClientId: unique ids, the prefix from the injected random source', () => {
    const a = setup(() => 0.5).registry;
    const ids = new Set<string>();
    for (let i = 0; i < 1000; i++) ids.add(a.assignClientId());
    assert.equal(ids.size, 1000);
    assert.ok([...ids].every((id) => id.startsWith('petrel-80000000-')), [...ids][0]);
    const b = setup(() => 0).registry;
    assert.equal(b.assignClientId(), 'petrel-00000000-0');
    assert.equal(b.assignClientId(), 'petrel-00000000-1');
  });
});
