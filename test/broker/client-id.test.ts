// Client Identifier rules and Client ID takeover over real TCP.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnackPacket, ConnectPacket, DisconnectPacket, PublishPacket } from '../../src/protocol/packets.js';
import { delay, eventually, publishes, quietPublishes, setup } from '../helpers/harness.js';
import type { RawClient } from '../helpers/raw-client.js';

describe('Client Identifier', () => {
  it('[MQTT-3.1.3-5] accepts any UTF-8 Client ID of 1 to maxClientIdLength bytes', async (t) => {
    const h = await setup(t, { maxClientIdLength: 64 });
    const ids = [
      'a',
      'client/with/slashes',
      'hash#and+plus',
      'space and\ttab',
      '$dollar',
      '🐦🐦🐦', // 12 bytes
      'ünïcödé-ß-日本語',
      '🐦'.repeat(16), // exactly 64 bytes
      'x'.repeat(64),
      '\u{10FFFF}',
    ];
    // MQTT 3.1 allows 1 to 23 characters whatever maxClientIdLength says (tested in audit-v311).
    const in31 = (id: string) => [...id].length <= 23;
    for (const protocolVersion of [3, 4, 5] as const) {
      for (const clientId of protocolVersion === 3 ? ids.filter(in31) : ids) {
        const { client, connack } = await h.connect({ clientId, protocolVersion });
        assert.equal(connack.reasonCode, 0, `${JSON.stringify(clientId)} (${protocolVersion})`);
        assert.equal(connack.properties?.assignedClientIdentifier, undefined);
        client.send({ type: 14 });
        await client.waitClosed();
      }
    }
    const seen = h.events.clientConnected.map(([c]) => c.clientId);
    assert.deepEqual(seen, [...ids.filter(in31), ...ids, ...ids], 'the broker sees each ID exactly as sent');
  });

  it('a Client ID longer than maxClientIdLength bytes is refused: 0x02 (3.1/3.1.1) / 0x85 (5.0)', async (t) => {
    const h = await setup(t, { maxClientIdLength: 64 });
    for (const [protocolVersion, code] of [[3, 0x02], [4, 0x02], [5, 0x85]] as const) {
      for (const clientId of ['x'.repeat(65), '🐦'.repeat(16) + 'a' /* 65 bytes, 33 UTF-16 units */]) {
        const { client, connack } = await h.connect({ clientId, protocolVersion });
        assert.equal(connack.reasonCode, code, `${protocolVersion}: ${clientId.length} chars`);
        await client.waitClosed();
      }
    }
    assert.equal(h.events.clientConnected.length, 0);
  });

  it('[MQTT-3.1.3-6] [MQTT-3.1.3-7] 3.1.1 empty Client ID with clean session: an ID is assigned', async (t) => {
    const h = await setup(t);
    const a = await h.connect({ clientId: '', clean: true });
    const b = await h.connect({ clientId: '', clean: true });
    assert.equal(a.connack.reasonCode, 0);
    assert.equal(b.connack.reasonCode, 0);
    const [idA, idB] = h.events.clientConnected.map(([c]) => c.clientId);
    assert.ok(idA && idB && idA !== idB, `two different assigned IDs: ${idA} ${idB}`);
    assert.equal(h.broker.inspect.counts().connected, 2);
  });

  it('[MQTT-3.1.3-8] 3.1.1 empty Client ID without clean session: 0x02', async (t) => {
    const h = await setup(t);
    const { client, connack } = await h.connect({ clientId: '', clean: false });
    assert.equal(connack.reasonCode, 0x02);
    await client.waitClosed();
  });

  it('3.1 empty Client ID is refused with 0x02 (3.1 requires 1 to 23 characters), clean or not', async (t) => {
    const h = await setup(t);
    for (const clean of [true, false]) {
      const { client, connack } = await h.connect({ clientId: '', clean, protocolVersion: 3 });
      assert.equal(connack.reasonCode, 0x02);
      await client.waitClosed();
    }
  });

  it('[MQTT-3.2.2-16] 5.0 empty Client ID: assigned and returned in Assigned Client Identifier (Clean Start 0 too)', async (t) => {
    const h = await setup(t);
    for (const clean of [true, false]) {
      const { client, connack } = await h.connect({ clientId: '', clean, protocolVersion: 5 });
      assert.equal(connack.reasonCode, 0);
      const assigned = connack.properties?.assignedClientIdentifier;
      assert.ok(assigned, 'Assigned Client Identifier present');
      assert.equal(h.broker.inspect.isConnected(assigned), true);
      await client.sync();
    }
  });
});

describe('Client ID takeover', () => {
  it('[MQTT-3.1.4-2] the new connection wins; the old is closed (3.1.1: no packet) and its will published', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('will/#');
    const old = await h.connected({ clientId: 'dup', will: { topic: 'will/dup', payload: Buffer.from('old'), qos: 1, retain: false } });
    const { client: fresh, connack } = await h.connect({ clientId: 'dup' });
    assert.equal(connack.reasonCode, 0);
    await old.waitClosed();
    assert.deepEqual(old.packets, []);
    const [will] = await publishes(watcher, 1);
    assert.equal(will!.topic, 'will/dup');
    assert.equal(will!.payload.toString(), 'old');
    await fresh.sync();
    assert.equal(fresh.closed, false);
    assert.equal(h.broker.inspect.counts().connected, 2); // watcher + fresh
    const disc = h.events.clientDisconnected.find(([c]) => c?.clientId === 'dup');
    assert.equal(disc?.[1].willPublished, true);
  });

  it('a CONNECT that is refused (authentication) does not take over: the connected client stays', async (t) => {
    const h = await setup(t, { authenticate: (r) => r.password?.toString() === 'right' });
    const old = await h.connected({ clientId: 'owned', username: 'u', password: Buffer.from('right'), clean: false });
    const { client, connack } = await h.connect({ clientId: 'owned', username: 'u', password: Buffer.from('wrong') });
    assert.equal(connack.reasonCode, 0x04);
    await client.waitClosed();
    await old.sync();
    assert.equal(old.closed, false);
    assert.equal(h.broker.inspect.counts().connected, 1);
  });

  it('5.0: the old connection gets DISCONNECT 0x8E (Session Taken Over)', async (t) => {
    const h = await setup(t);
    const old = await h.connected({ clientId: 'dup5', protocolVersion: 5 });
    await h.connected({ clientId: 'dup5', protocolVersion: 5 });
    const d = (await old.next(14)) as DisconnectPacket;
    assert.equal(d.reasonCode, 0x8e);
    await old.waitClosed();
  });

  it('the session is handed over when the new connection resumes it (clean 0: subscriptions kept, session present 1)', async (t) => {
    const h = await setup(t);
    const old = await h.subscriber(['handover/a', 'handover/b'], 1, { clientId: 'ho', clean: false });
    const { client: fresh, connack } = await h.connect({ clientId: 'ho', clean: false });
    assert.equal(connack.sessionPresent, true);
    await old.waitClosed();
    assert.equal(h.broker.inspect.counts().subscriptions, 2);
    h.broker.publish('handover/b', 'to-new', { qos: 1 });
    const [p] = await publishes(fresh, 1);
    assert.equal(p!.payload.toString(), 'to-new');
    assert.equal(p!.qos, 1);
    // Taking over with clean 1 discards the session.
    const { client: third, connack: c3 } = await h.connect({ clientId: 'ho', clean: true });
    assert.equal(c3.sessionPresent, false);
    await fresh.waitClosed();
    assert.equal(h.broker.inspect.counts().subscriptions, 0);
    h.broker.publish('handover/b', 'nobody', { qos: 1 });
    assert.deepEqual(await quietPublishes(third), []);
  });

  it('two connections with one Client ID within a millisecond: the later one wins, exactly one stays', async (t) => {
    const h = await setup(t);
    const a = await h.open();
    const b = await h.open();
    const connect: ConnectPacket = { type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: false, keepAlive: 0, clientId: 'race' };
    a.send(connect);
    b.send(connect);
    const [ra, rb] = await Promise.allSettled([a.next(2), b.next(2)]);
    await eventually(() => a.closed || b.closed);
    await delay(50);
    assert.equal([a, b].filter((c) => !c.closed).length, 1, 'exactly one socket open');
    const winner = a.closed ? b : a;
    const loser = a.closed ? a : b;
    assert.equal(h.broker.inspect.counts().connected, 1);
    assert.equal(h.broker.inspect.counts().sessions, 1);
    // The winner was accepted; the loser was accepted first, then kicked.
    assert.equal(((winner === a ? ra : rb) as PromiseFulfilledResult<ConnackPacket>).value.reasonCode, 0);
    assert.equal(loser.closed, true);
    await winner.sync();
    assert.equal(h.events.clientConnected.length, 2);
    assert.equal(h.events.clientDisconnected.length, 1);
  });

  it('100 clients fighting over one Client ID at once: exactly one connected, session neither lost nor duplicated', async (t) => {
    const h = await setup(t);
    // A stored session with two subscriptions.
    const first = await h.subscriber(['fight/#', 'fight/x'], 1, { clientId: 'fight', clean: false });
    first.send({ type: 14 });
    await first.waitClosed();
    assert.equal(h.broker.inspect.counts().subscriptions, 2);

    const clients: RawClient[] = await Promise.all(Array.from({ length: 100 }, () => h.open()));
    // Each sends CONNECT and a SUBSCRIBE (to the same filter) in one write, all at once.
    const bytes = Buffer.concat([
      encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: false, keepAlive: 0, clientId: 'fight' }, 4),
      encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'fight/#', qos: 1 }] }, 4),
    ]);
    for (const c of clients) c.sendBytes(bytes);
    await eventually(() => clients.filter((c) => !c.closed).length <= 1 && h.events.clientConnected.length >= 101, 5000, '99 closed');
    await delay(100);
    const open = clients.filter((c) => !c.closed);
    assert.equal(open.length, 1, 'exactly one socket still open');
    const winner = open[0]!;
    assert.equal(h.broker.inspect.counts().connected, 1);
    assert.equal(h.broker.inspect.counts().sessions, 1);
    assert.equal(h.broker.inspect.counts().connections, 1);
    assert.equal(h.broker.inspect.counts().subscriptions, 2, 'subscriptions neither lost nor duplicated');
    assert.equal(h.events.clientConnected.length, 101);
    assert.equal(h.events.clientDisconnected.length, 100);
    assert.ok(h.events.clientConnected.slice(1).every(([, d]) => d.sessionPresent), 'every takeover resumed the stored session');
    // The winner got its CONNACK and SUBACK, and receives one copy of a message (overlapping filters).
    assert.equal(((await winner.next(2)) as ConnackPacket).sessionPresent, true);
    await winner.next(9);
    h.broker.publish('fight/x', 'one', { qos: 1 });
    const got = (await winner.next(3)) as PublishPacket;
    assert.equal(got.payload.toString(), 'one');
    assert.deepEqual(await quietPublishes(winner, 100), []);
  });

  it('50 clients fighting over one Client ID with an async authenticate hook of random latency: one winner, consistent state', async (t) => {
    const h = await setup(t, { authenticate: () => new Promise<boolean>((r) => setTimeout(() => r(true), Math.random() * 30)) });
    const clients: RawClient[] = await Promise.all(Array.from({ length: 50 }, () => h.open(5)));
    const bytes = Buffer.concat([
      encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: false, keepAlive: 0, clientId: 'slow-fight', properties: { sessionExpiryInterval: 60 } }, 5),
      encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'sf/#', qos: 1 }] }, 5),
    ]);
    for (const c of clients) c.sendBytes(bytes);
    await eventually(() => h.events.clientConnected.length === 50 && clients.filter((c) => !c.closed).length === 1, 5000, '49 closed');
    await delay(50);
    const open = clients.filter((c) => !c.closed);
    assert.equal(open.length, 1);
    assert.equal(h.broker.inspect.counts().connected, 1);
    assert.equal(h.broker.inspect.counts().sessions, 1);
    assert.equal(h.broker.inspect.counts().subscriptions, 1);
    assert.equal(h.broker.inspect.isConnected('slow-fight'), true);
    // Every loser was told why (5.0: DISCONNECT 0x8E).
    for (const c of clients) {
      if (c === open[0]) continue;
      const d = c.packets.find((p): p is DisconnectPacket => p.type === 14);
      assert.equal(d?.reasonCode, 0x8e);
    }
    h.broker.publish('sf/x', 'one', { qos: 1 });
    await open[0]!.next(3);
    assert.deepEqual(await quietPublishes(open[0]!, 50), []);
  });
});
