// A reload of the password file or the ACL applies to clients already connected and subscribed, as in
// Mosquitto: a user removed or given a new password is disconnected, a subscription the new ACL does not
// grant stops delivering (online or offline sessions alike). Real sockets on 127.0.0.1, port 0; reloads
// called by hand (watchFiles off) so nothing waits for the file watcher.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { deleteUser, setPassword } from '../../src/auth/password-file.js';
import type { BrokerOptions } from '../../src/server/broker.js';
import type { ConnectPacket, DisconnectPacket, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { pub } from '../helpers/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { startLogged, type LoggedBroker } from '../transport/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-reload-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function start(t: { after(fn: () => unknown): void }, options: BrokerOptions): Promise<LoggedBroker & { client(fields: Partial<ConnectPacket>): Promise<RawClient> }> {
  const b = await startLogged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], watchFiles: false, ...options });
  const clients: RawClient[] = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    await b.broker.close();
  });
  const port = b.broker.address().port;
  return {
    ...b,
    async client(fields) {
      const { client, connack } = await RawClient.connect(port, fields);
      clients.push(client);
      assert.equal(connack.reasonCode, 0, `CONNACK for ${fields.clientId}`);
      return client;
    },
  };
}

async function subscribe(c: RawClient, topicFilter: string, packetId = 1): Promise<number> {
  c.send({ type: 8, packetId, subscriptions: [{ topicFilter, qos: 1 }] });
  return ((await c.next(9)) as SubackPacket).reasonCodes[0]!;
}

describe('password file reload', () => {
  it('a user whose entry was changed or removed is disconnected (5.0: DISCONNECT 0x87); other users stay; the password is never logged', async (t) => {
    const file = join(dir, 'users.passwd');
    await setPassword(file, 'alice', 'wonderland');
    await setPassword(file, 'bob', 'builder');
    await setPassword(file, 'carol', 'singer');
    const b = await start(t, { passwordFile: file, allowAnonymous: false });
    const alice5 = await b.client({ clientId: 'a5', username: 'alice', password: Buffer.from('wonderland'), protocolVersion: 5 });
    const alice4 = await b.client({ clientId: 'a4', username: 'alice', password: Buffer.from('wonderland') });
    const bob = await b.client({ clientId: 'b', username: 'bob', password: Buffer.from('builder'), protocolVersion: 5 });
    const carol = await b.client({ clientId: 'c', username: 'carol', password: Buffer.from('singer') });

    await setPassword(file, 'alice', 'looking-glass');
    b.broker.reload();
    assert.equal(((await alice5.next(14)) as DisconnectPacket).reasonCode, 0x87);
    await alice5.waitClosed();
    await alice4.waitClosed();
    assert.ok(b.logged('its password file entry was removed or changed').some((l) => l.username === 'alice'));

    deleteUser(file, 'bob');
    b.broker.reload();
    assert.equal(((await bob.next(14)) as DisconnectPacket).reasonCode, 0x87);
    await bob.waitClosed();

    // Carol's entry did not change: still connected and served.
    carol.send({ type: 12 });
    await carol.next(13);
    const again = await b.client({ clientId: 'a5', username: 'alice', password: Buffer.from('looking-glass'), protocolVersion: 5 });
    again.send({ type: 12 });
    await again.next(13);
    assert.ok(!JSON.stringify(b.logs).includes('wonderland') && !JSON.stringify(b.logs).includes('looking-glass'));
  });

  it('a reload that fails to parse keeps the users and disconnects nobody', async (t) => {
    const file = join(dir, 'broken.passwd');
    await setPassword(file, 'dave', 'pw');
    const b = await start(t, { passwordFile: file, allowAnonymous: false });
    const dave = await b.client({ clientId: 'd', username: 'dave', password: Buffer.from('pw') });
    writeFileSync(file, 'dave:not-a-hash\n');
    b.broker.reload();
    assert.equal(b.logged('password file not reloaded').length, 1);
    dave.send({ type: 12 });
    await dave.next(13);
  });
});

describe('ACL reload', () => {
  it('a subscription the new ACL does not grant stops delivering, for a live client and an offline session; allowed ones keep working', async (t) => {
    const file = join(dir, 'plant.acl');
    writeFileSync(file, 'allow all all #\n');
    const b = await start(t, { acl: { default: 'deny', file } });
    const unsubscribed: unknown[][] = [];
    b.broker.on('unsubscribed', (...args: unknown[]) => unsubscribed.push(args));
    const live = await b.client({ clientId: 'live', protocolVersion: 5 });
    assert.equal(await subscribe(live, 'secret/#'), 1);
    assert.equal(await subscribe(live, 'public/#', 2), 1);
    const offline = await b.client({ clientId: 'offline', clean: false });
    assert.equal(await subscribe(offline, 'secret/+'), 1);
    offline.destroy();
    await offline.waitClosed();

    writeFileSync(file, 'allow all all public/#\n');
    b.broker.reload();
    assert.ok(b.logged('subscriptions revoked').some((l) => l.clientId === 'live' && JSON.stringify(l.filters) === '["secret/#"]'));
    assert.deepEqual(
      unsubscribed.map(([client, filters]) => [(client as { clientId: string }).clientId, filters]).sort(),
      [['live', ['secret/#']], ['offline', ['secret/+']]],
    );

    const publisher = await b.client({ clientId: 'pub' });
    publisher.send(pub('secret/plans', 'x', { qos: 1, packetId: 1 }));
    publisher.send(pub('public/news', 'y', { qos: 1, packetId: 2 }));
    await publisher.next(4);
    await publisher.next(4);
    const got = (await live.collect(150, 3)) as PublishPacket[];
    assert.deepEqual(got.map((p) => p.topic), ['public/news'], 'the revoked subscription delivers nothing');
    assert.equal(await subscribe(live, 'secret/#', 3), 0x87, 'and cannot be made again');

    const back = await b.client({ clientId: 'offline', clean: false });
    assert.deepEqual(await back.collect(150, 3), [], 'nothing was queued for the revoked offline subscription');
  });

  it('with disconnectOnDenied the client whose subscription was revoked is also disconnected (5.0: 0x87)', async (t) => {
    const file = join(dir, 'strict.acl');
    writeFileSync(file, 'allow all all #\n');
    const b = await start(t, { acl: { default: 'deny', file, disconnectOnDenied: true } });
    const c = await b.client({ clientId: 'strict', protocolVersion: 5 });
    const other = await b.client({ clientId: 'other', protocolVersion: 5 });
    assert.equal(await subscribe(c, 'a/#'), 1);
    assert.equal(await subscribe(other, 'b/#'), 1);
    writeFileSync(file, 'allow all all b/#\n');
    b.broker.reload();
    assert.equal(((await c.next(14)) as DisconnectPacket).reasonCode, 0x87);
    await c.waitClosed();
    other.send({ type: 12 });
    await other.next(13);
  });

  it('an ACL file that fails to parse keeps the rules: no subscription is revoked', async (t) => {
    const file = join(dir, 'broken.acl');
    writeFileSync(file, 'allow all all #\n');
    const b = await start(t, { acl: { default: 'deny', file } });
    const c = await b.client({ clientId: 'keep' });
    assert.equal(await subscribe(c, 'x'), 1);
    writeFileSync(file, 'allow everything\n');
    b.broker.reload();
    assert.equal(b.logged('ACL not reloaded').length, 1);
    const p = await b.client({ clientId: 'p' });
    p.send(pub('x', 'still', { qos: 1, packetId: 1 }));
    assert.equal(((await c.next(3)) as PublishPacket).payload.toString(), 'still');
  });
});
