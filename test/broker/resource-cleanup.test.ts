// No leaks: state the broker keeps per client, topic, subscription, shared group or message goes when they
// do. Churn cycles on the fake clock (internals read through casts), real TCP where the transport counts
// connections, and heap growth over a long loop in a child process run with --expose-gc.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { BanList } from '../../src/auth/bans.js';
import type { BrokerCore } from '../../src/broker/core.js';
import { BrokerInspector } from '../../src/broker/inspect.js';
import type { ConnectPacket, Packet, PublishPacket, WillMessage } from '../../src/protocol/packets.js';
import { eventually, startBroker } from '../helpers/broker.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';
import { RawClient } from '../helpers/raw-client.js';

/** Every per-client / per-topic structure of the core, by size (the inspection API's footprint). */
function sizes(core: BrokerCore) {
  const f = new BrokerInspector(core).footprint();
  return {
    channels: f.channels,
    connected: f.connected,
    sessions: f.sessions,
    subscriptions: f.subscriptions,
    trieLevels: f.trieLevels,
    retained: f.retained,
    retainedLevels: f.retainedLevels,
    pendingWills: f.pendingWills,
    expiring: f.expiring,
    watched: f.watched,
    channelTimers: f.channelTimers,
    sessionTimers: f.sessionTimers,
  };
}
const footprint = (core: BrokerCore) => new BrokerInspector(core).footprint();

const EMPTY_CORE = {
  channels: 0,
  connected: 0,
  sessions: 0,
  subscriptions: 0,
  trieLevels: false,
  retained: 0,
  retainedLevels: false,
  pendingWills: 0,
  expiring: 0,
  watched: 0,
  channelTimers: 0,
  sessionTimers: 0,
};


const turn = () => new Promise<void>((r) => setImmediate(r));

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const v5 = (clientId: string, more: Partial<ConnectPacket> = {}): Partial<ConnectPacket> => ({ clientId, protocolVersion: 5, ...more });
const sub = (c: MemoryConnection, filter: string, qos: 0 | 1 | 2 = 1, packetId = 1) => c.send({ type: 8, packetId, subscriptions: [{ topicFilter: filter, qos }] });
const pub = (c: MemoryConnection, topic: string, payload: string | Buffer, more: Partial<PublishPacket> = {}) =>
  c.send({ type: 3, topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: 0, retain: false, dup: false, ...more } as Packet);

describe('the core after churn', () => {
  it('10,000 clean clients that subscribe to their own topic (some also to a wildcard), get a message and leave: every structure is empty again', () => {
    const f = new FakeCore();
    const publisher = f.connect(v5('publisher'));
    for (let i = 0; i < 10_000; i++) {
      const id = `own-${i}`;
      const c = f.connect({ clientId: id, protocolVersion: i % 2 ? 5 : 4, keepAlive: 60 });
      sub(c, `dev/${id}/cmd`);
      if (i % 500 === 0) sub(c, 'dev/+/cmd', 0, 2);
      pub(publisher, `dev/${id}/cmd`, 'x', { qos: 1, packetId: 1 });
      assert.equal(c.take(3).length, 1, `${id} got its message once (merged with any wildcard)`);
      if (i % 3 === 0) c.send({ type: 14 });
      else if (i % 3 === 1) c.drop();
      else c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: id } as Packet); // protocol error
      assert.equal(c.closed, true);
    }
    publisher.send({ type: 14 });
    assert.equal(footprint(f.core).routeCache, 0, 'each exact-topic cache entry went with its subscription');
    assert.deepEqual({ ...sizes(f.core), channelTimers: 0 }, EMPTY_CORE);
    f.advance(100_000, 1_000);
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('every kind of close (DISCONNECT, drop, protocol error, bad bytes, takeover, keep-alive timeout, connect timeout, refused CONNECT, queued backlog) leaves nothing', () => {
    const f = new FakeCore({ limits: { connectTimeout: 5_000 }, hooks: { authenticate: (r) => !r.clientId.startsWith('refuse') } });
    const publisher = f.connect(v5('publisher'));
    for (let i = 0; i < 100; i++) {
      const normal = f.connect(v5(`n${i}`));
      normal.send({ type: 14 });
      f.connect(v5(`d${i}`)).drop();
      f.connect(v5(`p${i}`)).send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: `p${i}` } as Packet);
      f.connect(v5(`b${i}`)).channel.receive(Buffer.from([0x00, 0x00])); // reserved packet type 0
      f.connect(v5(`t${i}`));
      f.connect(v5(`t${i}`)).send({ type: 14 }); // took the first over, then left
      f.connect(v5(`k${i}`, { keepAlive: 1 }));
      f.open(5); // never sends CONNECT
      f.connect(v5(`refuse${i}`));
      f.connect({ clientId: '', clean: false }); // 3.1.1: empty Client ID without clean session is refused
      f.connect({ clientId: 'x'.repeat(30), protocolVersion: 3, protocolName: 'MQIsdp' } as Partial<ConnectPacket>); // 3.1: too long
      // A subscriber with Receive Maximum 1: the second QoS 1 message waits in its queue and the core watches it.
      const slow = f.connect(v5(`s${i}`, { properties: { receiveMaximum: 1 } }));
      sub(slow, `slow/${i}`);
      pub(publisher, `slow/${i}`, 'a', { qos: 1, packetId: 1 });
      pub(publisher, `slow/${i}`, 'b', { qos: 1, packetId: 2 });
      assert.equal(footprint(f.core).watched, 1, 'the backlog is watched');
      slow.drop();
    }
    publisher.send({ type: 14 });
    f.advance(10_000, 100);
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('closing while an async authenticate hook is pending: the late answer (true) resurrects nothing', async () => {
    const answers: ((v: boolean) => void)[] = [];
    const f = new FakeCore({
      hooks: {
        authenticate: () => {
          const d = deferred<boolean>();
          answers.push(d.resolve);
          return d.promise;
        },
      },
    });
    for (let i = 0; i < 500; i++) {
      const c = f.connect(v5(`late${i}`, { properties: { sessionExpiryInterval: 3600 }, will: { topic: 'will', payload: Buffer.from('w'), qos: 1, retain: true } }));
      if (i % 2) c.drop();
      else c.send({ type: 14 }); // arrives in the backlog while the hook is pending, then the transport closes
      c.drop();
    }
    assert.equal(f.inspect.counts().connections, 0);
    for (const answer of answers) answer(true);
    await turn();
    await turn();
    assert.deepEqual(sizes(f.core), { ...EMPTY_CORE, channelTimers: sizes(f.core).channelTimers });
    f.advance(20_000, 1_000);
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('closing (or being taken over) while async authorizeSubscribe / authorizePublish answers are pending: no subscription, retained message or session appears later', async () => {
    const answers: ((v: boolean) => void)[] = [];
    const later = () => {
      const d = deferred<boolean>();
      answers.push(d.resolve);
      return d.promise;
    };
    const f = new FakeCore({ hooks: { authorizeSubscribe: later, authorizePublish: later } });
    for (let i = 0; i < 300; i++) {
      const id = `az${i}`;
      const c = f.connect(v5(id, { properties: { sessionExpiryInterval: 5 } }));
      sub(c, `az/${i}/#`);
      if (i % 3 === 0) c.drop();
      else if (i % 3 === 1) f.connect(v5(id, { clean: false, properties: { sessionExpiryInterval: 5 } })).send({ type: 14 }); // takeover
      else {
        answers.pop()!(true); // this SUBSCRIBE granted; then a retained PUBLISH waits on its hook
        await turn();
        pub(c, `az/${i}/r`, 'retained', { retain: true, qos: 1, packetId: 7 });
        c.drop();
      }
    }
    for (const answer of answers) answer(true);
    await turn();
    await turn();
    assert.equal(f.inspect.counts().retained, 0, 'a PUBLISH whose connection closed before its authorization is not routed');
    assert.equal(f.inspect.counts().connections, 0);
    f.advance(10_000, 1_000);
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('5.0 sessions with an expiry, with subscriptions, queued and in-flight messages, end completely when they expire', () => {
    const f = new FakeCore();
    const publisher = f.connect(v5('publisher'));
    for (let i = 0; i < 2_000; i++) {
      const c = f.connect(v5(`exp${i}`, { properties: { sessionExpiryInterval: 1 + (i % 5), receiveMaximum: 1 } }));
      sub(c, `exp/${i}`, 2);
      sub(c, `$share/g${i % 10}/exp/${i}`, 1, 2);
      for (let k = 0; k < 3; k++) pub(publisher, `exp/${i}`, `m${k}`, { qos: 1, packetId: 1 + k });
      publisher.take();
      c.drop();
    }
    publisher.send({ type: 14 });
    assert.equal(f.inspect.counts().sessions, 2_000);
    f.advance(6_000, 250);
    assert.equal(f.inspect.counts().sessions, 0, 'every session expired within its interval');
    f.advance(5_000, 1_000); // the connect timeouts' stale timer entries
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('5.0 delayed wills, pending then cancelled by a reconnect, published at their delay or at session end, leave pendingWills empty', () => {
    const f = new FakeCore();
    const will = (i: number): WillMessage => ({ topic: `will/${i}`, payload: Buffer.from('gone'), qos: 0, retain: false, properties: { willDelayInterval: 5 + (i % 3) * 10 } });
    for (let i = 0; i < 1_500; i++) f.connect(v5(`w${i}`, { will: will(i), properties: { sessionExpiryInterval: 10 } })).drop();
    assert.equal(footprint(f.core).pendingWills, 1_500);
    for (let i = 0; i < 1_500; i += 3) f.connect(v5(`w${i}`, { clean: false, properties: { sessionExpiryInterval: 0 } })).send({ type: 14 });
    assert.equal(footprint(f.core).pendingWills, 1_000, 'a reconnect cancels its will');
    f.advance(30_000, 500);
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('5,000 takeovers of one Client ID (resumed and clean, with subscriptions and queued messages) keep one channel, one session and one timer entry per live thing', () => {
    const f = new FakeCore();
    const publisher = f.connect(v5('publisher'));
    let last: MemoryConnection | undefined;
    for (let i = 0; i < 5_000; i++) {
      last = f.connect(v5('flap', { clean: i % 2 === 0, keepAlive: 60, properties: { sessionExpiryInterval: 30, receiveMaximum: 1 } }));
      sub(last, 'flap/t');
      pub(publisher, 'flap/t', 'a', { qos: 1, packetId: 1 });
      pub(publisher, 'flap/t', 'b', { qos: 1, packetId: 2 });
      if (i % 100 === 0) f.advance(1_000, 1_000);
    }
    const s = sizes(f.core);
    assert.deepEqual([s.channels, s.connected, s.sessions, s.subscriptions, s.watched, s.expiring], [2, 2, 2, 1, 1, 0]);
    assert.ok(s.channelTimers <= 1_100, `channel timer entries: ${s.channelTimers} (those of the connect timeouts of the last 10 s)`);
    last!.send({ type: 14 });
    publisher.send({ type: 14 });
    f.advance(200_000, 1_000);
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('1,000 shared groups created, used and abandoned leave no trie node or subscription', () => {
    const f = abandonSharedGroups('round-robin', 1_000);
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('shared groups that are gone leave no round-robin cursor (shareCursor)', () => {
    const f = abandonSharedGroups('round-robin', 1_000);
    assert.equal(footprint(f.core).sharedCursors, 0);
  });

  it('shared groups that are gone leave no sticky member (stickyMember)', () => {
    const f = abandonSharedGroups('sticky', 1_000);
    assert.equal(footprint(f.core).sharedSticky, 0);
  });

  it('the exact-topic route cache stays bounded with many distinct topics published to nobody, and is not filled while nothing is subscribed', () => {
    const f = new FakeCore();
    const publisher = f.connect(v5('publisher'));
    const cache = { get size() { return footprint(f.core).routeCache; } };
    for (let i = 0; i < 20_000; i++) pub(publisher, `nobody/${i}`, 'x');
    assert.equal(cache.size, 0, 'with no subscription at all no match is cached');
    const watcher = f.connect(v5('watcher'));
    sub(watcher, 'elsewhere/+');
    for (let i = 0; i < 30_000; i++) pub(publisher, `nobody/${i}`, 'x', { qos: 1, packetId: 1 });
    assert.ok(cache.size <= 10_000, `route cache: ${cache.size}`);
    watcher.send({ type: 14 });
    publisher.send({ type: 14 });
    assert.equal(cache.size, 0, 'removing the wildcard emptied it');
  });

  it('retained messages set and cleared (empty payload) through clients on 10,000 distinct topics leave no level behind', () => {
    const f = new FakeCore();
    const publisher = f.connect(v5('publisher'));
    for (let i = 0; i < 10_000; i++) pub(publisher, `site/${i % 13}/dev/${i}/temp`, '21', { retain: true, qos: 1, packetId: 1 });
    assert.equal(f.inspect.counts().retained, 10_000);
    for (let i = 0; i < 10_000; i++) pub(publisher, `site/${i % 13}/dev/${i}/temp`, '', { retain: true });
    publisher.send({ type: 14 });
    f.advance(11_000, 1_000);
    assert.deepEqual(sizes(f.core), EMPTY_CORE);
  });

  it('retained messages whose Message Expiry passed are dropped even when no subscription ever matches them again', () => {
    const f = new FakeCore();
    const publisher = f.connect(v5('publisher'));
    for (let i = 0; i < 5_000; i++) pub(publisher, `ephemeral/${i}`, 'short-lived', { retain: true, qos: 1, packetId: 1, properties: { messageExpiryInterval: 1 } });
    publisher.send({ type: 14 });
    f.advance(60_000, 1_000);
    assert.equal(f.inspect.counts().retained, 0, `expired retained messages still held: ${f.inspect.counts().retained}`);
  });

  it('closed connections leave no entry in the channel timer wheel', () => {
    const f = new FakeCore({ limits: { connectTimeout: 10_000 } });
    const clients = Array.from({ length: 1_000 }, (_, i) => f.connect(v5(`ka${i}`, { keepAlive: 3_600 })));
    f.advance(11_000, 1_000); // past the connect timeout: each is filed again at its keep-alive deadline
    for (const c of clients) c.send({ type: 14 });
    f.advance(1_000, 1_000);
    const { closedChannelsFiled: closed, channelTimers } = footprint(f.core);
    assert.equal(closed, 0, `closed channels still filed: ${closed} (wheel size ${channelTimers})`);
  });

  it('ended sessions leave no entry in the session timer wheel', () => {
    const f = new FakeCore();
    const publisher = f.connect(v5('publisher'));
    for (let i = 0; i < 1_000; i++) {
      // Clean Start with an expiry: the previous session (with the messages queued for it) ends at once.
      const c = f.connect(v5('device', { clean: true, properties: { sessionExpiryInterval: 86_400 } }));
      sub(c, 'device/cmd');
      c.drop();
      for (let k = 0; k < 5; k++) pub(publisher, 'device/cmd', `m${k}`, { qos: 1, packetId: 1 + k });
    }
    const stale = footprint(f.core).endedSessionsFiled;
    assert.equal(stale, 0, `ended sessions still filed: ${stale}`);
  });

  it('topic alias maps stay within the Topic Alias Maximum of each side', () => {
    const f = new FakeCore({ limits: { topicAliasMaximum: 10 } });
    const receiver = f.connect(v5('receiver', { properties: { topicAliasMaximum: 5 } }));
    sub(receiver, 'alias/#', 0);
    const sender = f.connect(v5('sender'));
    for (let i = 0; i < 10_000; i++) pub(sender, `alias/${i}`, 'x', { properties: { topicAlias: 1 + (i % 10) } });
    const inspect = new BrokerInspector(f.core);
    assert.equal(inspect.topicAliases('sender')?.in, 10);
    assert.equal(inspect.topicAliases('receiver')?.out, 5);
    assert.equal(receiver.take(3).length, 10_000);
  });
});

/** Members join `count` shared groups (each its own filter), get a message through them and leave. */
function abandonSharedGroups(strategy: 'round-robin' | 'sticky', count: number): FakeCore {
  const f = new FakeCore({ limits: { sharedSubscriptionStrategy: strategy } });
  const publisher = f.connect(v5('publisher'));
  for (let g = 0; g < count; g++) {
    const members = [0, 1].map((m) => f.connect(v5(`g${g}m${m}`)));
    members.forEach((m) => sub(m, `$share/group${g}/jobs/${g}/+`));
    pub(publisher, `jobs/${g}/run`, 'job', { qos: 1, packetId: 1 });
    assert.equal(members.reduce((n, m) => n + m.take(3).length, 0), 1, 'one member got the job');
    members[0]!.send({ type: 14 });
    members[1]!.drop();
  }
  publisher.send({ type: 14 });
  f.advance(20_000, 1_000);
  return f;
}

describe('auth state', () => {
  it('ban entries added and removed leave the list empty', () => {
    const bans = new BanList();
    for (let i = 0; i < 1_000; i++) bans.add({ clientIds: [`c${i}`], usernames: [`u${i}`], addresses: [`10.0.${i >> 8}.${i & 255}`] });
    assert.equal(bans.size, 3_000);
    for (let i = 0; i < 1_000; i++) bans.remove({ clientIds: [`c${i}`], usernames: [`u${i}`], addresses: [`10.0.${i >> 8}.${i & 255}`] });
    assert.equal(bans.size, 0);
    assert.equal(bans.check({ clientId: 'c1', username: 'u1', remoteAddress: '10.0.0.1:5' }), undefined);
  });

  it('banning the same address again does not grow the ban list', () => {
    const bans = new BanList();
    for (let i = 0; i < 1_000; i++) bans.add({ addresses: ['192.0.2.7'] });
    assert.equal(bans.size, 1);
  });
});

describe('TCP listener', () => {
  it('connections closed every way (DISCONNECT, reset, protocol error, refused, connect timeout, takeover, async hook pending) leave no channel, socket or session; closing the listener removes its admission entry', async () => {
    const pending: ((v: boolean) => void)[] = [];
    const { broker, port } = await startBroker({
      connectTimeout: 300,
      maxPublishRate: 1_000,
      maxBytesRate: 1_000_000,
      authenticate: (req) => {
        if (req.clientId.startsWith('bad')) return false;
        if (!req.clientId.startsWith('slow')) return true;
        const d = deferred<boolean>();
        pending.push(d.resolve);
        return d.promise;
      },
    });
    const listener = (broker as unknown as { running: { connections(): number }[] }).running[0]!;
    const admissions = (broker.security as unknown as { admissions: Map<string, unknown> }).admissions;
    try {
      const idle: RawClient[] = [];
      for (let i = 0; i < 30; i++) {
        const { client: a } = await RawClient.connect(port, { clientId: `norm${i}`, protocolVersion: 5, keepAlive: 30 });
        a.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: `t/${i}`, qos: 1 }] });
        await a.next(9);
        a.send({ type: 14 });
        const { client: b } = await RawClient.connect(port, { clientId: `reset${i}` });
        b.socket.resetAndDestroy();
        const { client: c } = await RawClient.connect(port, { clientId: `proto${i}` });
        c.sendBytes([0x00, 0x00]); // packet type 0 is reserved
        const { client: d } = await RawClient.connect(port, { clientId: `bad${i}` });
        d.destroy();
        idle.push(await RawClient.open(port)); // sends nothing: cut at connectTimeout
        const { client: e } = await RawClient.connect(port, { clientId: `take${i}`, protocolVersion: 5 });
        const { client: e2 } = await RawClient.connect(port, { clientId: `take${i}`, protocolVersion: 5 });
        await e.waitClosed();
        e2.destroy();
        const s = await RawClient.open(port, 5);
        s.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: `slow${i}`, properties: { sessionExpiryInterval: 60 } } as Packet);
        await eventually(() => pending.length === i + 1, 2_000, 'the hook to be asked');
        s.destroy();
      }
      await eventually(() => broker.inspect.counts().connections === 0 && listener.connections() === 0, 5_000, 'every channel and socket to close');
      for (const answer of pending) answer(true);
      await turn();
      await turn();
      assert.deepEqual(sizes(broker.core), { ...EMPTY_CORE, channelTimers: sizes(broker.core).channelTimers });
      assert.equal(listener.connections(), 0);
      assert.equal(admissions.size, 1);
      assert.ok(idle.every((c) => c.closed));
    } finally {
      await broker.close();
    }
    assert.equal(admissions.size, 0, 'the listener left the admission table');
  });

  it('listeners opened and closed 10 times (direct TCP with 8 accept handles, net TCP) leave no server handle, timer or admission entry', async () => {
    const resources = () => process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'FSReqCallback');
    const baseline = resources().length;
    for (let i = 0; i < 10; i++) {
      const { broker, port } = await startBroker({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }, { type: 'tcp', host: '127.0.0.1', port: 0, directSockets: false, maxConnectionRate: 100 }] });
      const { client } = await RawClient.connect(port, { clientId: `l${i}` });
      client.destroy();
      await broker.close();
      assert.equal((broker.security as unknown as { admissions: Map<string, unknown> }).admissions.size, 0);
    }
    await eventually(() => resources().length <= baseline, 3_000, `active resources back to ${baseline}: ${resources().join(', ')}`);
  });
});

describe('heap', () => {
  it('heap stays flat over 15,000 client lifecycles (subscribe, retained set/clear, wildcard, takeover, expiring sessions) with --expose-gc', async (t) => {
    const fakeCore = new URL('../helpers/fake-core.js', import.meta.url).href;
    const script = `
      import { FakeCore } from ${JSON.stringify(fakeCore)};
      const f = new FakeCore();
      const payload = Buffer.alloc(64, 120);
      const heap = () => { for (let i = 0; i < 4; i++) gc(); return process.memoryUsage().heapUsed; };
      const send = (c, p) => c.send(p);
      function round(r) {
        const pub = f.connect({ clientId: 'pub' + r, protocolVersion: 5 });
        for (let i = 0; i < 1000; i++) {
          const id = 'c' + r + '-' + i;
          const c = f.connect({ clientId: id, protocolVersion: 5, keepAlive: 30, properties: i % 4 === 0 ? { sessionExpiryInterval: 5 } : undefined });
          const subs = [{ topicFilter: 'own/' + id, qos: 1 }];
          if (i % 100 === 0) subs.push({ topicFilter: 'wild/+/x', qos: 0 });
          send(c, { type: 8, packetId: 1, subscriptions: subs });
          send(pub, { type: 3, topic: 'own/' + id, payload, qos: 1, retain: true, dup: false, packetId: 1 });
          send(pub, { type: 3, topic: 'own/' + id, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false });
          send(pub, { type: 3, topic: 'nobody/' + id, payload, qos: 0, retain: false, dup: false });
          c.take();
          if (i % 3 === 0) send(c, { type: 14 });
          else if (i % 3 === 1) c.drop();
          else send(f.connect({ clientId: id, protocolVersion: 5 }), { type: 14 });
        }
        pub.take();
        send(pub, { type: 14 });
        f.advance(20000, 1000);
      }
      for (let r = 0; r < 3; r++) round(r);
      const before = heap();
      for (let r = 3; r < 15; r++) round(r);
      const after = heap();
      console.log(JSON.stringify({ before, after, sessions: f.inspect.counts().sessions, channels: f.inspect.counts().connections }));
    `;
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
    );
    const { before, after, sessions, channels } = JSON.parse(out) as { before: number; after: number; sessions: number; channels: number };
    assert.deepEqual([sessions, channels], [0, 0]);
    const grown = after - before;
    t.diagnostic(`heap ${(before / 1048576).toFixed(1)} MiB -> ${(after / 1048576).toFixed(1)} MiB over 12,000 lifecycles`);
    assert.ok(grown < 1024 * 1024, `heap grew ${(grown / 1024).toFixed(0)} KiB over 12,000 lifecycles (${(grown / 12_000).toFixed(1)} B each)`);
  });
});
