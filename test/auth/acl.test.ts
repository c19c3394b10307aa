import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Acl, covers, intersects, parseAclFile } from '../../src/auth/acl.js';
import type { Broker } from '../../src/server/broker.js';
import type { PubAckLikePacket, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { startBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { collect, connect, end, nextMessage, startLogged, subscribe } from '../transport/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-acl-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const client = (username: string | undefined, clientId: string, extra: { remoteAddress?: string; certificateCN?: string } = {}) => ({
  username,
  clientId,
  remoteAddress: extra.remoteAddress ?? '127.0.0.1:5000',
  certificateCN: extra.certificateCN,
});
const split = (s: string) => s.split('/');

describe('ACL matching', () => {
  it('covers / intersects follow MQTT wildcard rules, $ topics included', () => {
    assert.equal(covers(split('a/#'), split('a')), true);
    assert.equal(covers(split('a/#'), split('a/+/c')), true);
    assert.equal(covers(split('a/+'), split('a/#')), false);
    assert.equal(covers(split('#'), split('$SYS/x')), false);
    assert.equal(covers(split('+/x'), split('+/x')), true);
    assert.equal(intersects(split('secret/#'), split('#')), true);
    assert.equal(intersects(split('secret/#'), split('+/open')), true);
    assert.equal(intersects(split('a/b'), split('a/c')), false);
    assert.equal(intersects(split('$SYS/#'), split('#')), false);
  });

  it('%u and %c placeholders; first match wins; default', () => {
    const acl = new Acl({
      strictSubscribe: true,
      default: 'deny',
      rules: [
        { permission: 'deny', action: 'all', username: 'eve', topic: '#' },
        { permission: 'allow', action: 'all', topic: 'users/%u/#' },
        { permission: 'allow', action: 'publish', topics: ['devices/%c/out', 'shared/%u-%c'] },
        { permission: 'allow', action: 'subscribe', topic: 'devices/+/out' },
        { permission: 'allow', action: 'all', certCN: 'device-1', topic: 'certs/#' },
        { permission: 'allow', action: 'publish', address: '10.0.0.0/8', topic: 'lan/#' },
      ],
    });
    const alice = client('alice', 'a1');
    assert.equal(acl.canPublish(alice, 'users/alice/x'), true);
    assert.equal(acl.canPublish(alice, 'users/bob/x'), false);
    assert.equal(acl.canSubscribe(alice, 'users/alice/#'), true);
    assert.equal(acl.canSubscribe(alice, 'users/+/#'), false);
    assert.equal(acl.canPublish(alice, 'devices/a1/out'), true);
    assert.equal(acl.canPublish(alice, 'devices/a2/out'), false);
    assert.equal(acl.canPublish(alice, 'shared/alice-a1'), true);
    assert.equal(acl.canSubscribe(alice, 'devices/+/out'), true);
    assert.equal(acl.canSubscribe(alice, '$share/g/devices/+/out'), true);
    assert.equal(acl.canSubscribe(alice, 'devices/#'), false);
    assert.equal(acl.canPublish(client('eve', 'e'), 'users/eve/x'), false, 'earlier deny wins');
    assert.equal(acl.canPublish(client(undefined, 'anon'), 'users//x'), false, '%u without username never matches');
    assert.equal(acl.canPublish(client('+', 'x'), 'users/+/x'), false, 'wildcard usernames are not substituted');
    assert.equal(acl.canPublish(client('d', 'x', { certificateCN: 'device-1' }), 'certs/a'), true);
    assert.equal(acl.canPublish(client('d', 'x'), 'certs/a'), false);
    assert.equal(acl.canPublish(client('d', 'x', { remoteAddress: '10.1.2.3:999' }), 'lan/a'), true);
    assert.equal(acl.canPublish(client('d', 'x', { remoteAddress: '[::ffff:10.1.2.3]:999' }), 'lan/a'), true);
    assert.equal(acl.canPublish(client('d', 'x', { remoteAddress: '192.168.0.1:999' }), 'lan/a'), false);
  });

  it('parses the file format and names the line of a mistake', () => {
    const rules = parseAclFile('# comment\nallow publish user:alice,ip:127.0.0.1 a/# b\ndeny all all #\n');
    assert.equal(rules.length, 2);
    assert.throws(() => parseAclFile('allow publish\n', 'acl.txt'), /acl.txt: line 1/);
    assert.throws(() => parseAclFile('allow pub all a\n', 'acl.txt'), /acl.txt: line 1.*action/);
    assert.throws(() => parseAclFile('\nallow all who:x a\n', 'acl.txt'), /line 2: unknown condition "who"/);
    assert.throws(() => parseAclFile('allow all all a/#/b\n'), /not a valid topic pattern/);
    assert.throws(() => parseAclFile('allow all ip:300.1.1.1 a\n'), /not an IP address/);
  });
});

describe('broker with an ACL', () => {
  let broker: Broker;
  let port: number;
  const file = join(dir, 'acl.txt');
  before(async () => {
    writeFileSync(file, ['allow all all users/%u/#', 'allow publish all devices/%c/out', 'allow subscribe all devices/+/out', 'allow all all public/#'].join('\n'));
    ({ broker } = await startLogged({
      listeners: [
        { type: 'tcp', host: '127.0.0.1', port: 0 },
        { type: 'tcp', host: '127.0.0.1', port: 0 },
      ],
      acl: { file, default: 'deny', strictSubscribe: true },
    }));
    port = broker.address().port;
  });
  after(() => broker.close());

  it('denied subscriptions get 0x80 (3.1.1) / 0x87 (5.0); allowed ones their QoS', async () => {
    for (const version of [4, 5] as const) {
      const { client } = await RawClient.connect(port, { protocolVersion: version, clientId: `s${version}`, username: 'alice' });
      client.send({
        type: 8,
        packetId: 1,
        subscriptions: [
          { topicFilter: 'users/alice/#', qos: 1 },
          { topicFilter: 'users/bob/#', qos: 1 },
          { topicFilter: 'devices/+/out', qos: 0 },
          { topicFilter: '#', qos: 0 },
        ],
      });
      const suback = (await client.next(9)) as SubackPacket;
      assert.deepEqual(suback.reasonCodes, version === 5 ? [1, 0x87, 0, 0x87] : [1, 0x80, 0, 0x80]);
      client.destroy();
    }
  });

  it('a denied publish is not delivered: PUBACK 0x87 (5.0), acknowledged and dropped (3.1.1)', async () => {
    const watcher = await connect(`mqtt://127.0.0.1:${port}`, { username: 'bob', clientId: 'watch' });
    await subscribe(watcher, 'users/bob/#');
    for (const version of [4, 5] as const) {
      const { client } = await RawClient.connect(port, { protocolVersion: version, clientId: `p${version}`, username: 'alice' });
      client.send({ type: 3, topic: 'users/bob/inbox', payload: Buffer.from('x'), qos: 1, packetId: 7, retain: false, dup: false });
      const ack = (await client.next(4)) as PubAckLikePacket;
      assert.equal(ack.packetId, 7);
      assert.equal(ack.reasonCode, version === 5 ? 0x87 : undefined);
      client.send({ type: 3, topic: 'users/bob/inbox', payload: Buffer.from('x'), qos: 2, packetId: 8, retain: false, dup: false });
      const rec = (await client.next(5)) as PubAckLikePacket;
      if (version === 5) assert.equal(rec.reasonCode, 0x87);
      client.destroy();
    }
    assert.deepEqual(await collect(watcher, 50), []);
    // %c: a device publishes on its own topic only.
    const dev = await connect(`mqtt://127.0.0.1:${port}`, { clientId: 'dev7' });
    await subscribe(watcher, 'devices/+/out');
    const got = nextMessage(watcher);
    dev.publish('devices/dev8/out', 'spoof');
    dev.publish('devices/dev7/out', 'real');
    assert.deepEqual(await got, { topic: 'devices/dev7/out', payload: 'real' });
    await end(watcher, dev);
  });

  it('wills obey the ACL', async () => {
    const watcher = await connect(`mqtt://127.0.0.1:${port}`, { username: 'w' });
    await subscribe(watcher, 'public/#');
    await subscribe(watcher, 'users/w/#');
    const allowed = await connect(`mqtt://127.0.0.1:${port}`, { clientId: 'will1', will: { topic: 'public/will', payload: Buffer.from('gone'), qos: 0, retain: false } });
    const denied = await connect(`mqtt://127.0.0.1:${port}`, { clientId: 'will2', will: { topic: 'users/w/will', payload: Buffer.from('sneaky'), qos: 0, retain: false } });
    const got = collect(watcher, 150);
    (allowed as unknown as { stream: { destroy(): void } }).stream.destroy();
    (denied as unknown as { stream: { destroy(): void } }).stream.destroy();
    assert.deepEqual(await got, ['public/will:gone']);
    await end(watcher, allowed, denied);
  });

  it('reloads the ACL file when it changes', async () => {
    const c = await connect(`mqtt://127.0.0.1:${port}`, { clientId: 'reload' });
    assert.deepEqual(await subscribe(c, 'late/topic'), [128]);
    writeFileSync(file, 'allow all all late/#\n');
    const deadline = Date.now() + 3000;
    let granted = [128];
    while (Date.now() < deadline && (granted = await subscribe(c, 'late/topic'))[0] === 128) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(granted, [0]);
    await end(c);
  });
});

describe('ACL with disconnectOnDenied and user hooks', () => {
  it('disconnects a client whose publish is denied (5.0 DISCONNECT 0x87), and the user hook still applies', async () => {
    const { broker } = await startLogged({
      listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }],
      acl: { default: 'allow', rules: [{ permission: 'deny', action: 'publish', topic: 'forbidden/#' }], disconnectOnDenied: true },
      authorizePublish: (_c, m) => m.topic !== 'hook/denied',
    });
    try {
      const port = broker.address().port;
      const { client } = await RawClient.connect(port, { protocolVersion: 5, clientId: 'x' });
      client.send({ type: 3, topic: 'hook/denied', payload: Buffer.alloc(0), qos: 1, packetId: 1, retain: false, dup: false });
      assert.equal(((await client.next(4)) as PubAckLikePacket).reasonCode, 0x87);
      client.send({ type: 3, topic: 'forbidden/x', payload: Buffer.alloc(0), qos: 1, packetId: 2, retain: false, dup: false });
      assert.equal(((await client.next(4)) as PubAckLikePacket).reasonCode, 0x87);
      const disconnect = (await client.next(14)) as { reasonCode?: number };
      assert.equal(disconnect.reasonCode, 0x87);
      await client.waitClosed();
    } finally {
      await broker.close();
    }
  });
});

describe('ACL on wildcard subscriptions, Mosquitto semantics (the default; issue 24, defect 6)', () => {
  it('a subscription is refused only when the ACL denies that filter itself; each message is checked when delivered', () => {
    const acl = new Acl({
      default: 'deny',
      rules: [
        { permission: 'deny', action: 'subscribe', topic: 'test/nosubscribe' },
        { permission: 'deny', action: 'subscribe', topic: 'private/#' },
        { permission: 'allow', action: 'subscribe', topic: '#' },
      ],
    });
    const c = { clientId: 'c', username: 'u', remoteAddress: '127.0.0.1:1' };
    assert.equal(acl.canSubscribe(c, '#'), true, '# beside a denied test/nosubscribe');
    assert.equal(acl.canSubscribe(c, '+/+'), true);
    assert.equal(acl.canSubscribe(c, 'test/nosubscribe'), false, 'the denied filter itself');
    assert.equal(acl.canSubscribe(c, 'private/#'), false, 'a filter the deny rule covers whole');
    assert.equal(acl.canSubscribe(c, 'private/+/x'), false);
    assert.equal(acl.canReceive(c, 'test/nosubscribe'), false);
    assert.equal(acl.canReceive(c, 'private/a'), false);
    assert.equal(acl.canReceive(c, 'test/other'), true);
    const narrow = new Acl({ default: 'deny', rules: [{ permission: 'allow', action: 'subscribe', topic: 'sensors/#' }] });
    assert.equal(narrow.canSubscribe(c, '#'), true, 'some of its topics may be read');
    assert.equal(narrow.canSubscribe(c, 'other/x'), false, 'none of its topics may be read');
    assert.equal(narrow.canReceive(c, 'sensors/t'), true);
    assert.equal(narrow.canReceive(c, 'other/x'), false);
  });

  it('over MQTT: # is granted beside a denied topic, and no message of that topic ever reaches the subscriber (retained, live, shared) [MQTT-3.8.4]', async (t) => {
    const { broker, port } = await startBroker({
      acl: { default: 'allow', rules: [{ permission: 'deny', action: 'subscribe', topic: 'test/nosubscribe' }] },
    });
    t.after(() => broker.close());
    broker.publish('test/nosubscribe', 'retained secret', { retain: true });
    broker.publish('test/open', 'retained open', { retain: true });
    for (const version of [4, 5] as const) {
      const { client } = await RawClient.connect(port, { clientId: `all-${version}`, protocolVersion: version });
      t.after(() => client.destroy());
      client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '#', qos: 1 }, { topicFilter: '$share/g/test/+', qos: 1 }, { topicFilter: 'test/nosubscribe', qos: 1 }] });
      const ack = (await client.next(9)) as SubackPacket;
      assert.deepEqual(ack.reasonCodes, [1, 1, version === 5 ? 0x87 : 0x80], 'only the denied filter itself is refused');
      const retained = (await client.collect(150, 3)) as PublishPacket[];
      assert.deepEqual(retained.map((p) => p.payload.toString()), ['retained open']);
      for (const p of retained) if (p.packetId !== undefined) client.send({ type: 4, packetId: p.packetId });
      broker.publish('test/nosubscribe', 'live secret', { qos: 1 });
      broker.publish('test/open', 'live open', { qos: 1 });
      const live = (await client.collect(150, 3)) as PublishPacket[];
      assert.ok(live.length >= 1, 'the open topic arrives');
      assert.ok(live.every((p) => p.payload.toString() === 'live open'), `nothing of the denied topic: ${live.map((p) => p.payload.toString())}`);
      client.destroy();
    }
  });
});
