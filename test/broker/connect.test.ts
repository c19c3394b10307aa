// CONNECT / CONNACK over real TCP: first packet, second CONNECT, connect timeout, protocol
// levels, malformed CONNECT flags, session present, the 5.0 CONNACK limits, authentication and keep alive.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { ConnackPacket, DisconnectPacket, PublishPacket } from '../../src/protocol/packets.js';
import { connectBytes, delay, eventually, packet, setup, str } from '../helpers/harness.js';

describe('CONNECT / CONNACK', () => {
  it('[MQTT-3.1.0-1] a first packet other than CONNECT closes the connection without CONNACK', async (t) => {
    const h = await setup(t);
    for (const bytes of [
      [0xc0, 0x00], // PINGREQ
      [...packet(0x30, [...str('a/b'), 0x78])], // PUBLISH
      [...packet(0x82, [0x00, 0x01, ...str('a'), 0x00])], // SUBSCRIBE
    ]) {
      const c = await h.open();
      c.sendBytes(bytes);
      await c.waitClosed();
      assert.deepEqual(c.packets, [], 'nothing is sent before the connection is closed');
    }
    assert.equal(h.events.clientConnected.length, 0);
    assert.equal(h.broker.inspect.counts().connections, 0);
  });

  it('[MQTT-3.1.0-2] a second CONNECT closes the connection (3.1.1: no answer)', async (t) => {
    const h = await setup(t);
    const c = await h.connected({ clientId: 'twice' });
    c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'twice' });
    await c.waitClosed();
    assert.deepEqual(c.packets, []);
    assert.equal(h.broker.inspect.counts().connected, 0);
  });

  it('[MQTT-3.1.0-2] 5.0: a second CONNECT gets DISCONNECT 0x82 (Protocol Error), then close', async (t) => {
    const h = await setup(t);
    const c = await h.connected({ clientId: 'twice5', protocolVersion: 5 });
    c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'twice5' });
    const d = (await c.next(14)) as DisconnectPacket;
    assert.equal(d.reasonCode, 0x82);
    await c.waitClosed();
  });

  it('closes a TCP connection that sends no complete CONNECT within connectTimeout (real clock, 200 ms)', async (t) => {
    const h = await setup(t, { connectTimeout: 200 });
    const silent = await h.open();
    const partial = await h.open();
    const whole = connectBytes({ clientId: 'slow' });
    partial.sendBytes(whole.subarray(0, 8)); // a started but never finished CONNECT
    const start = Date.now();
    await delay(120);
    assert.equal(silent.closed, false, 'still open at 120 ms');
    assert.equal(partial.closed, false, 'still open at 120 ms');
    await silent.waitClosed(1000);
    await partial.waitClosed(1000);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 180 && elapsed < 800, `closed after ${elapsed} ms`);
    assert.deepEqual(silent.packets, []);
    assert.deepEqual(partial.packets, []);
    // A client that does CONNECT in time is not affected.
    const ok = await h.connected();
    await delay(300);
    assert.equal(ok.closed, false);
  });

  it('[MQTT-3.1.2-1] accepts protocol name/level MQIsdp/3, MQTT/4 and MQTT/5', async (t) => {
    const h = await setup(t);
    for (const [name, level] of [['MQIsdp', 3], ['MQTT', 4], ['MQTT', 5]] as const) {
      const c = await h.open(level);
      c.sendBytes(connectBytes({ name, level, clientId: `lvl${level}` }));
      const connack = (await c.next(2)) as ConnackPacket;
      assert.equal(connack.reasonCode, 0, `${name}/${level}`);
      await c.sync();
      assert.equal(c.closed, false);
    }
    assert.deepEqual(
      h.events.clientConnected.map(([client]) => client.protocolVersion),
      [3, 4, 5],
    );
  });

  it('[MQTT-3.1.2-2] an unsupported protocol level gets CONNACK 0x01 (3.1.1 format), then close', async (t) => {
    const h = await setup(t);
    for (const [name, level] of [['MQTT', 3], ['MQTT', 2], ['MQIsdp', 4], ['MQTT', 0]] as const) {
      const c = await h.open(4);
      c.sendBytes(connectBytes({ name, level }));
      const connack = (await c.next(2)) as ConnackPacket;
      assert.equal(connack.reasonCode, 0x01, `${name}/${level}`);
      assert.equal(connack.sessionPresent, false);
      await c.waitClosed();
    }
    assert.equal(h.events.clientRefused.length, 4);
  });

  it('a protocol level above 5 gets a 5.0 CONNACK 0x84 (Unsupported Protocol Version), then close', async (t) => {
    const h = await setup(t);
    const c = await h.open(5);
    c.sendBytes(connectBytes({ name: 'MQTT', level: 6 }));
    const connack = (await c.next(2)) as ConnackPacket;
    assert.equal(connack.reasonCode, 0x84);
    await c.waitClosed();
  });

  it('[MQTT-3.1.2-3] [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-22] malformed CONNECT flags close the connection', async (t) => {
    const h = await setup(t);
    const cases: [string, Buffer][] = [
      ['reserved flag set', connectBytes({ flags: 0x03 })],
      ['will QoS without will flag', connectBytes({ flags: 0x02 | 0x08 })],
      ['will retain without will flag', connectBytes({ flags: 0x02 | 0x20 })],
      ['will QoS 3', connectBytes({ flags: 0x02 | 0x04 | 0x18, payload: [...str('w'), ...str('x')] })],
      ['password without user name (3.1.1)', connectBytes({ flags: 0x02 | 0x40, payload: str('secret') })],
      ['bytes after the last field', connectBytes({ payload: [1, 2, 3] })],
    ];
    for (const [what, bytes] of cases) {
      const c = await h.open();
      c.sendBytes(bytes);
      await c.waitClosed();
      const acks = c.packets.filter((p) => p.type === 2) as ConnackPacket[];
      assert.ok(acks.every((a) => a.reasonCode !== 0), `${what}: never accepted`);
    }
    assert.equal(h.events.clientConnected.length, 0);
    // The broker still serves well-formed clients.
    await h.connected();
  });

  it('[MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3] session present is set exactly when a stored session is resumed', async (t) => {
    const h = await setup(t);
    const sp = async (fields: Parameters<typeof h.connect>[0], disconnect = true) => {
      const { client, connack } = await h.connect(fields);
      assert.equal(connack.reasonCode, 0);
      if (disconnect) {
        client.send({ type: 14 });
        await client.waitClosed();
      }
      return connack.sessionPresent;
    };
    // 3.1.1
    assert.equal(await sp({ clientId: 's4', clean: true }), false, 'clean, no session');
    assert.equal(await sp({ clientId: 's4', clean: false }), false, 'not clean, no stored session (clean one was dropped)');
    assert.equal(await sp({ clientId: 's4', clean: false }), true, 'not clean, stored session');
    assert.equal(await sp({ clientId: 's4', clean: true }), false, 'clean discards the stored session');
    assert.equal(await sp({ clientId: 's4', clean: false }), false, '... so there is none to resume');
    // 3.1 resumes the session too, but its CONNACK has no Session Present flag (the byte is reserved).
    assert.equal(await sp({ clientId: 's3', clean: false, protocolVersion: 3 }), false);
    assert.equal(await sp({ clientId: 's3', clean: false, protocolVersion: 3 }), false);
    // 5.0
    const exp = { sessionExpiryInterval: 60 };
    assert.equal(await sp({ clientId: 's5', clean: false, protocolVersion: 5, properties: exp }), false);
    assert.equal(await sp({ clientId: 's5', clean: false, protocolVersion: 5, properties: exp }), true);
    assert.equal(await sp({ clientId: 's5', clean: true, protocolVersion: 5, properties: exp }), false, 'Clean Start 1');
    assert.equal(await sp({ clientId: 's5', clean: false, protocolVersion: 5 }), true, 'Clean Start 1 made a new session that was kept');
    assert.equal(await sp({ clientId: 's5', clean: false, protocolVersion: 5 }), false, 'expiry 0 ended it');
  });

  it('[MQTT-3.2.2-4] a refused CONNECT has session present 0 even when a session is stored', async (t) => {
    const h = await setup(t, { authenticate: (req) => req.username !== 'bad' });
    const first = await h.connected({ clientId: 'keep', clean: false });
    first.send({ type: 14 });
    await first.waitClosed();
    const { client, connack } = await h.connect({ clientId: 'keep', clean: false, username: 'bad' });
    assert.equal(connack.reasonCode, 0x04);
    assert.equal(connack.sessionPresent, false);
    await client.waitClosed();
    assert.equal(h.broker.inspect.hasSession('keep'), true, 'the stored session is untouched');
  });

  it('5.0 CONNACK carries the broker limits', async (t) => {
    const h = await setup(t, { maxPacketSize: 4096, topicAliasMaximum: 7, receiveMaximum: 20, maxQos: 1, retainAvailable: false });
    const { connack } = await h.connect({ clientId: 'limits', protocolVersion: 5 });
    assert.equal(connack.reasonCode, 0);
    const p = connack.properties ?? {};
    assert.equal(p.maximumPacketSize, 4096);
    assert.equal(p.topicAliasMaximum, 7);
    assert.equal(p.receiveMaximum, 20);
    assert.equal(p.maximumQoS, 1);
    assert.equal(p.retainAvailable, 0);
    assert.equal(p.assignedClientIdentifier, undefined, 'not assigned when the client sent one');
    // Defaults: no receiveMaximum / maximumQoS / retainAvailable (absent means the maximum).
    const h2 = await setup(t);
    const { connack: c2 } = await h2.connect({ clientId: 'defaults', protocolVersion: 5 });
    assert.equal(c2.properties?.maximumPacketSize, 1024 * 1024);
    assert.equal(c2.properties?.maximumQoS, undefined);
    assert.equal(c2.properties?.retainAvailable, undefined);
  });
});

describe('user name / password', () => {
  it('anonymous connections are allowed by default', async (t) => {
    const h = await setup(t);
    for (const protocolVersion of [3, 4, 5] as const) {
      const { connack } = await h.connect({ clientId: `anon${protocolVersion}`, protocolVersion });
      assert.equal(connack.reasonCode, 0);
    }
  });

  it('allowAnonymous: false refuses a CONNECT without user name: 0x05 (3.1.1) / 0x87 (5.0)', async (t) => {
    const h = await setup(t, { allowAnonymous: false });
    const v4 = await h.connect({ clientId: 'a4' });
    assert.equal(v4.connack.reasonCode, 0x05);
    await v4.client.waitClosed();
    const v5 = await h.connect({ clientId: 'a5', protocolVersion: 5 });
    assert.equal(v5.connack.reasonCode, 0x87);
    await v5.client.waitClosed();
    const named = await h.connect({ clientId: 'a6', username: 'someone' });
    assert.equal(named.connack.reasonCode, 0);
    assert.equal(h.events.clientRefused.length, 2);
  });

  it('an authenticate hook answering false refuses: 0x04 (3.1.1) / 0x86 (5.0); true accepts; it sees the credentials', async (t) => {
    const seen: { username?: string; password?: string; clientId: string }[] = [];
    const h = await setup(t, {
      authenticate: (req) => {
        seen.push({ username: req.username, password: req.password?.toString(), clientId: req.clientId });
        return req.username === 'alice' && req.password?.toString() === 'right';
      },
    });
    const bad4 = await h.connect({ clientId: 'b4', username: 'alice', password: Buffer.from('wrong') });
    assert.equal(bad4.connack.reasonCode, 0x04);
    await bad4.client.waitClosed();
    const bad5 = await h.connect({ clientId: 'b5', protocolVersion: 5, username: 'alice', password: Buffer.from('wrong') });
    assert.equal(bad5.connack.reasonCode, 0x86);
    await bad5.client.waitClosed();
    const good = await h.connect({ clientId: 'g', username: 'alice', password: Buffer.from('right') });
    assert.equal(good.connack.reasonCode, 0);
    assert.deepEqual(seen[2], { username: 'alice', password: 'right', clientId: 'g' });
  });

  it('an async authenticate hook works (accepts and refuses), packets sent meanwhile keep their order', async (t) => {
    const h = await setup(t, {
      authenticate: async (req) => {
        await delay(30);
        return req.username === 'ok';
      },
    });
    const sub = await h.subscriber('auth/#', 0, { username: 'ok' });
    // CONNECT and a PUBLISH in one write: the PUBLISH waits for the hook, then is routed.
    const c = await h.open();
    c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'async', username: 'ok' });
    c.send({ type: 3, topic: 'auth/x', payload: Buffer.from('after-auth'), qos: 0, retain: false, dup: false });
    assert.equal(((await c.next(2)) as ConnackPacket).reasonCode, 0);
    assert.equal(((await sub.next(3)) as PublishPacket).payload.toString(), 'after-auth');
    const refused = await h.connect({ clientId: 'async2', username: 'nope' });
    assert.equal(refused.connack.reasonCode, 0x04);
  });

  it('a hook that throws or never answers (hookTimeout 100) refuses with 0x03 / 0x80; the broker keeps serving others', async (t) => {
    const h = await setup(t, {
      hookTimeout: 100,
      authenticate: (req) => {
        if (req.username === 'throw') throw new Error('boom');
        if (req.username === 'reject') return Promise.reject(new Error('async boom'));
        if (req.username === 'hang') return new Promise<boolean>(() => {});
        return true;
      },
    });
    const start = Date.now();
    let settled = false;
    const hanging = h.connect({ clientId: 'h4', username: 'hang' }).finally(() => (settled = true));
    const hanging5 = h.connect({ clientId: 'h5', username: 'hang', protocolVersion: 5 });
    // While those wait, others are served at once.
    const other = await h.connect({ clientId: 'other', username: 'fine' });
    assert.equal(other.connack.reasonCode, 0);
    assert.equal(settled, false, 'another client is not held up by a hanging hook');
    const [r4, r5] = await Promise.all([hanging, hanging5]);
    assert.equal(r4.connack.reasonCode, 0x03);
    assert.equal(r5.connack.reasonCode, 0x80);
    assert.ok(Date.now() - start >= 90, 'refused after the hook timeout');
    for (const [username, protocolVersion, code] of [['throw', 4, 0x03], ['throw', 5, 0x80], ['reject', 4, 0x03], ['reject', 5, 0x80]] as const) {
      const r = await h.connect({ clientId: `${username}${protocolVersion}`, username, protocolVersion });
      assert.equal(r.connack.reasonCode, code, `${username} ${protocolVersion}`);
      await r.client.waitClosed();
    }
    await other.client.sync();
    assert.equal(other.client.closed, false);
  });

  it('warns once when a password arrives over plain TCP (logger)', async (t) => {
    const lines: { level: number; msg: string }[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    const h = await setup(t, { logger: pino({ level: 'warn' }, stream) });
    await h.connected({ username: 'u' }); // no password: no warning
    assert.equal(lines.length, 0);
    await h.connected({ username: 'u', password: Buffer.from('p1') });
    await h.connected({ username: 'u', password: Buffer.from('p2'), protocolVersion: 5 });
    await eventually(() => lines.length > 0);
    await delay(20);
    const warnings = lines.filter((l) => l.level === 40 && /password/.test(l.msg));
    assert.equal(warnings.length, 1, JSON.stringify(lines));
  });
});

describe('keep alive', () => {
  it('[MQTT-3.1.2-24] real clock, Keep Alive 1: closed after ~1.5 s of silence, not before 1 s (5.0: DISCONNECT 0x8D, will published); pings keep another alive', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('ka/#');
    const silent = await h.connected({
      clientId: 'silent',
      protocolVersion: 5,
      keepAlive: 1,
      will: { topic: 'ka/silent', payload: Buffer.from('gone'), qos: 0, retain: false },
    });
    const silent4 = await h.connected({ clientId: 'silent4', keepAlive: 1 });
    const start = Date.now();
    const pinger = await h.connected({ clientId: 'pinger', keepAlive: 1 });
    const pinging = (async () => {
      while (!silent.closed || !silent4.closed) {
        await delay(400);
        await pinger.sync(); // PINGREQ -> PINGRESP
      }
    })();
    await delay(1000);
    assert.equal(silent.closed, false, 'open at 1 s');
    assert.equal(silent4.closed, false, 'open at 1 s');
    await silent.waitClosed(2000);
    await silent4.waitClosed(2000);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 1400 && elapsed < 2300, `closed after ${elapsed} ms`);
    const d = (await silent.next(14)) as DisconnectPacket;
    assert.equal(d.reasonCode, 0x8d);
    assert.deepEqual(silent4.packets, [], '3.1.1: closed without a packet');
    const will = (await watcher.next(3)) as PublishPacket;
    assert.equal(will.topic, 'ka/silent');
    assert.equal(will.payload.toString(), 'gone');
    await pinging;
    assert.equal(pinger.closed, false, 'a client that pings stays connected');
  });

  it('PINGREQ gets PINGRESP (3.1, 3.1.1, 5.0)', async (t) => {
    const h = await setup(t);
    for (const protocolVersion of [3, 4, 5] as const) {
      const c = await h.connected({ protocolVersion });
      c.send({ type: 12 });
      assert.equal((await c.next()).type, 13);
    }
  });

  it('maxKeepAlive: a 5.0 client asking for more (or 0) gets Server Keep Alive in CONNACK', async (t) => {
    const h = await setup(t, { maxKeepAlive: 60 });
    const more = await h.connect({ clientId: 'more', protocolVersion: 5, keepAlive: 120 });
    assert.equal(more.connack.reasonCode, 0);
    assert.equal(more.connack.properties?.serverKeepAlive, 60);
    const zero = await h.connect({ clientId: 'zero', protocolVersion: 5, keepAlive: 0 });
    assert.equal(zero.connack.properties?.serverKeepAlive, 60);
    const less = await h.connect({ clientId: 'less', protocolVersion: 5, keepAlive: 30 });
    assert.equal(less.connack.properties?.serverKeepAlive, undefined);
    assert.equal(h.events.clientConnected.find(([c]) => c.clientId === 'more')?.[1].keepAlive, 60);
  });

  it('maxKeepAlive: a 3.1.1 / 3.1 client asking for more (or 0) is refused with 0x02', async (t) => {
    const h = await setup(t, { maxKeepAlive: 60 });
    for (const [protocolVersion, keepAlive] of [[4, 120], [4, 0], [3, 61]] as const) {
      const r = await h.connect({ clientId: `k${protocolVersion}-${keepAlive}`, protocolVersion, keepAlive });
      assert.equal(r.connack.reasonCode, 0x02, `${protocolVersion} ${keepAlive}`);
      await r.client.waitClosed();
    }
    const ok = await h.connect({ clientId: 'ok', keepAlive: 60 });
    assert.equal(ok.connack.reasonCode, 0);
  });
});
