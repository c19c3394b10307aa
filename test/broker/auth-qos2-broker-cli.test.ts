// MQTT 5.0 enhanced authentication (4.12, 3.15), QoS 2 flows on 5.0 (4.3.3) and the `petrel broker` /
// `petrel passwd` command line (flags, PETREL_* variables, signals).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ScramClient, scramCredentials, scramSha256, type ScramCredentials } from '../../src/auth/scram.js';
import type { AuthPacket, ConnackPacket, ConnectPacket, DisconnectPacket, Packet, PubAckLikePacket, PublishPacket } from '../../src/protocol/packets.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import { packet, publishes, quietPublishes, setup } from '../helpers/harness.js';
import { RawClient } from '../helpers/raw-client.js';
import { BIN } from '../cli/cli-process.js';
import { pub } from '../helpers/packets.js';

// ---------------------------------------------------------------------------------------------------------
// 1. Enhanced authentication
// ---------------------------------------------------------------------------------------------------------

const users = new Map<string, ScramCredentials>([
  ['alice', scramCredentials('wonderland', undefined, 1000)],
  ['bob', scramCredentials('builder', undefined, 1000)],
]);
const SCRAM = 'SCRAM-SHA-256';
const scramCore = (extra: ConstructorParameters<typeof FakeCore>[0] = {}) => new FakeCore({ authMethods: [scramSha256((u) => users.get(u))], ...extra });
const take1 = <T extends Packet>(c: MemoryConnection, type: number): T | undefined => c.take(type)[0] as T | undefined;

/** CONNECT with SCRAM, answers the challenge; returns the connection (CONNACK not taken). */
function scramConnect(f: FakeCore, user: string, password: string, clientId = 'sc', extra: Partial<ConnectPacket> = {}) {
  const scram = new ScramClient(user, password);
  const c = f.connect({ clientId, protocolVersion: 5, ...extra, properties: { authenticationMethod: SCRAM, authenticationData: scram.first(), ...extra.properties } });
  const challenge = take1<AuthPacket>(c, 15)!;
  c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: SCRAM, authenticationData: scram.final(challenge.properties!.authenticationData!) } });
  return { c, scram };
}

/** Starts a re-authentication (AUTH 0x19) and answers the challenge. */
function reauth(c: MemoryConnection, user: string, password: string) {
  const scram = new ScramClient(user, password);
  c.send({ type: 15, reasonCode: 0x19, properties: { authenticationMethod: SCRAM, authenticationData: scram.first() } });
  const challenge = take1<AuthPacket>(c, 15);
  assert.equal(challenge?.reasonCode, 0x18, 're-authentication challenge in AUTH 0x18');
  c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: SCRAM, authenticationData: scram.final(challenge.properties!.authenticationData!) } });
  return scram;
}

/** DISCONNECT Reason Codes (MQTT 5.0, 3.14.2.1, Table 3-10). */
const DISCONNECT_CODES = new Set([0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2]);

/** An in-memory 5.0 connection that keeps the raw bytes of each write (the decoder may refuse them). */
function rawConnection(f: FakeCore) {
  const decoder = new PacketDecoder({ protocolVersion: 5, role: 'client' });
  const c = { writes: [] as Buffer[], packets: [] as Packet[], closed: false, decodeError: undefined as Error | undefined, send: (p: Packet) => channel.receive(encodePacket(p, 5)) };
  const channel = f.core.openChannel(
    {
      write: (data) => {
        c.writes.push(Buffer.from(data));
        try {
          decoder.feed(data, (p) => c.packets.push(p));
        } catch (err) {
          c.decodeError = err as Error;
        }
      },
      close: () => {
        c.closed = true;
      },
    },
    { remoteAddress: '127.0.0.1:1', listener: 'memory', secure: false },
  );
  return c;
}

describe('enhanced authentication (4.12, 3.15)', () => {
  it('(4.12, 3.15.2.2.2) an AUTH with another method during the CONNECT exchange: CONNACK 0x82 and close', () => {
    const f = scramCore();
    const scram = new ScramClient('alice', 'wonderland');
    const c = f.connect({ clientId: 'm', protocolVersion: 5, properties: { authenticationMethod: SCRAM, authenticationData: scram.first() } });
    const challenge = take1<AuthPacket>(c, 15)!;
    c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-SHA-1', authenticationData: scram.final(challenge.properties!.authenticationData!) } });
    assert.equal(take1<ConnackPacket>(c, 2)?.reasonCode, 0x82);
    assert.equal(c.closed, true);
    assert.equal(f.inspect.counts().connected, 0);
  });

  it('[MQTT-3.1.2-30] during the exchange only AUTH (or DISCONNECT) may be sent: AUTH 0x19 or a PUBLISH before CONNACK → CONNACK 0x82', () => {
    for (const bad of [
      { type: 15, reasonCode: 0x19, properties: { authenticationMethod: SCRAM } },
      { type: 3, topic: 't', payload: Buffer.from('x'), qos: 0, retain: false, dup: false },
    ] as Packet[]) {
      const f = scramCore();
      const c = f.connect({ clientId: 'x', protocolVersion: 5, properties: { authenticationMethod: SCRAM, authenticationData: new ScramClient('alice', 'wonderland').first() } });
      assert.equal(take1<AuthPacket>(c, 15)?.reasonCode, 0x18);
      c.send(bad);
      assert.equal(take1<ConnackPacket>(c, 2)?.reasonCode, 0x82, `packet type ${bad.type}`);
      assert.equal(c.closed, true);
    }
  });

  it('AUTH 0x18 after the exchange succeeded (no re-authentication in progress): DISCONNECT 0x82', () => {
    const f = scramCore();
    const { c } = scramConnect(f, 'alice', 'wonderland');
    assert.equal(take1<ConnackPacket>(c, 2)?.reasonCode, 0);
    c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: SCRAM, authenticationData: Buffer.from('c=biws,r=x,p=AAAA') } });
    assert.equal(take1<DisconnectPacket>(c, 14)?.reasonCode, 0x82);
    assert.equal(c.closed, true);
  });

  it(
    '[MQTT-4.12.1-2] [MQTT-3.14.2-1] a failed re-authentication (wrong password): DISCONNECT with a DISCONNECT reason code (0x87), then close',
    () => {
      const f = scramCore();
      const c = rawConnection(f);
      const scram = new ScramClient('alice', 'wonderland');
      c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'ra', properties: { authenticationMethod: SCRAM, authenticationData: scram.first() } });
      const challenge = c.packets.find((p): p is AuthPacket => p.type === 15)!;
      c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: SCRAM, authenticationData: scram.final(challenge.properties!.authenticationData!) } });
      assert.equal(c.packets.find((p): p is ConnackPacket => p.type === 2)?.reasonCode, 0);
      const again = new ScramClient('alice', 'looking-glass');
      c.send({ type: 15, reasonCode: 0x19, properties: { authenticationMethod: SCRAM, authenticationData: again.first() } });
      const ch2 = c.packets.filter((p): p is AuthPacket => p.type === 15)[1]!;
      c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: SCRAM, authenticationData: again.final(ch2.properties!.authenticationData!) } });
      assert.equal(c.closed, true, 'closed');
      const last = c.writes[c.writes.length - 1]!;
      assert.equal(last[0], 0xe0, 'the last packet is a DISCONNECT');
      assert.ok(DISCONNECT_CODES.has(last[2]!), `DISCONNECT reason code 0x${last[2]!.toString(16)} is one of Table 3-10`);
      assert.equal(c.decodeError, undefined, 'a conforming decoder accepts it');
    },
  );

  it('(4.12.1) other packets keep flowing during a re-authentication; a second AUTH 0x19 in the middle is a protocol error', () => {
    const f = scramCore();
    const { c } = scramConnect(f, 'alice', 'wonderland');
    take1(c, 2);
    const again = new ScramClient('alice', 'wonderland');
    c.send({ type: 15, reasonCode: 0x19, properties: { authenticationMethod: SCRAM, authenticationData: again.first() } });
    const challenge = take1<AuthPacket>(c, 15)!;
    c.send({ type: 3, topic: 'during', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 4 });
    assert.equal(take1<PubAckLikePacket>(c, 4)?.packetId, 4, 'PUBACK while re-authenticating');
    c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: SCRAM, authenticationData: again.final(challenge.properties!.authenticationData!) } });
    assert.equal(take1<AuthPacket>(c, 15)?.reasonCode ?? 0, 0);
    // A new re-authentication, interrupted by another AUTH 0x19.
    c.send({ type: 15, reasonCode: 0x19, properties: { authenticationMethod: SCRAM, authenticationData: new ScramClient('alice', 'wonderland').first() } });
    take1(c, 15);
    c.send({ type: 15, reasonCode: 0x19, properties: { authenticationMethod: SCRAM, authenticationData: new ScramClient('alice', 'wonderland').first() } });
    assert.equal(take1<DisconnectPacket>(c, 14)?.reasonCode, 0x82);
    assert.equal(c.closed, true);
  });

  it(
    're-authentication that proves another user: the connection becomes that user\'s (and is admitted as at CONNECT) or is refused',
    () => {
      // Without hooks: identity follows the proof, or the switch is refused.
      const f = scramCore();
      const { c } = scramConnect(f, 'alice', 'wonderland');
      assert.equal(take1<ConnackPacket>(c, 2)?.reasonCode, 0);
      reauth(c, 'bob', 'builder');
      if (!c.closed) assert.equal(f.inspect.connection('sc')?.username, 'bob', 'identity follows the re-authentication');
      // With an authenticate hook that refuses bob at CONNECT, re-authenticating as bob must not succeed either.
      const g = scramCore({ hooks: { authenticate: (r) => r.username !== 'bob' } });
      const { c: d } = scramConnect(g, 'bob', 'builder', 'b0');
      assert.equal(take1<ConnackPacket>(d, 2)?.reasonCode, 0x86, 'bob is refused at CONNECT');
      const { c: e } = scramConnect(g, 'alice', 'wonderland', 'a0');
      assert.equal(take1<ConnackPacket>(e, 2)?.reasonCode, 0);
      reauth(e, 'bob', 'builder');
      assert.equal(e.closed, true, 'bob refused on re-authentication too');
    },
  );

  it('AUTH before CONNECT and AUTH on a 3.1.1 connection (reserved type 15): closed without any answer', async (t) => {
    const h = await setup(t, { authMethods: [scramSha256((u) => users.get(u))] });
    const first = await h.open(5);
    first.sendBytes(packet(0xf0, [0x18, 0x0f, 0x15, 0x00, 0x0d, ...Buffer.from(SCRAM)]));
    await first.waitClosed();
    assert.deepEqual(first.packets, [], 'no CONNACK for a connection whose first packet is AUTH');
    const v4 = await h.connected({ clientId: 'v4' });
    v4.sendBytes([0xf0, 0x00]);
    await v4.waitClosed();
    assert.deepEqual(v4.packets, []);
  });

  it('Authentication Method on a broker with no method configured: CONNACK 0x8C (3.2.2.2), also over TCP', async (t) => {
    const h = await setup(t);
    const { client, connack } = await h.connect({ protocolVersion: 5, clientId: 'am', properties: { authenticationMethod: SCRAM, authenticationData: Buffer.from('n,,n=a,r=b') } });
    assert.equal(connack.reasonCode, 0x8c);
    await client.waitClosed();
  });

  it('SCRAM over TCP with an async credential lookup, a slow client cut by connectTimeout', async (t) => {
    const h = await setup(t, {
      connectTimeout: 400,
      authMethods: [scramSha256((u) => new Promise<ScramCredentials | undefined>((r) => setTimeout(() => r(users.get(u)), 20)))],
    });
    const scram = new ScramClient('alice', 'wonderland');
    const c = await h.open(5);
    c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'tcp-scram', properties: { authenticationMethod: SCRAM, authenticationData: scram.first() } });
    const challenge = (await c.next(15)) as AuthPacket;
    c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: SCRAM, authenticationData: scram.final(challenge.properties!.authenticationData!) } });
    const ack = (await c.next(2)) as ConnackPacket;
    assert.equal(ack.reasonCode, 0);
    assert.ok(scram.verify(ack.properties?.authenticationData));
    const slow = await h.open(5);
    const started = Date.now();
    slow.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'slow', properties: { authenticationMethod: SCRAM, authenticationData: new ScramClient('alice', 'x').first() } });
    assert.equal(((await slow.next(15)) as AuthPacket).reasonCode, 0x18);
    await slow.waitClosed(2000);
    assert.ok(Date.now() - started >= 250, 'not before connectTimeout');
    assert.equal(slow.packets.filter((p) => p.type === 2).length, 0);
  });
});

// ---------------------------------------------------------------------------------------------------------
// 2. QoS 2 on 5.0
// ---------------------------------------------------------------------------------------------------------


describe('QoS 2 on MQTT 5.0', () => {
  it('[MQTT-4.3.3] PUBREC ≥ 0x80 from a subscriber ends the flow: no PUBREL, the window slot is free, nothing resent on resume', () => {
    const f = new FakeCore();
    const s = f.connect({ clientId: 's', protocolVersion: 5, clean: true, properties: { receiveMaximum: 1, sessionExpiryInterval: 300 } });
    s.take(2);
    s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'q', qos: 2 }] });
    s.take(9);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('q', 'one', { qos: 2, packetId: 1 }));
    p.send(pub('q', 'two', { qos: 2, packetId: 2 }));
    const [m1, ...rest] = s.take(3) as PublishPacket[];
    assert.equal(rest.length, 0, 'Receive Maximum 1');
    s.send({ type: 5, packetId: m1!.packetId!, reasonCode: 0x80 });
    assert.deepEqual(s.take(6), [], 'no PUBREL after a failing PUBREC');
    const m2 = s.take(3) as PublishPacket[];
    assert.deepEqual(m2.map((m) => m.payload.toString()), ['two'], 'the slot was released');
    s.send({ type: 5, packetId: m2[0]!.packetId! });
    assert.equal(take1<PubAckLikePacket>(s, 6)?.packetId, m2[0]!.packetId);
    s.send({ type: 7, packetId: m2[0]!.packetId! });
    s.drop();
    const again = f.connect({ clientId: 's', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(take1<ConnackPacket>(again, 2)?.sessionPresent, true);
    assert.deepEqual(again.received, [], 'neither "one" nor a PUBREL is resent');
  });

  it('PUBREC for an unknown packet id: PUBREL 0x92; PUBREL for an unknown id: PUBCOMP 0x92; the connection stays', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 'u', protocolVersion: 5 });
    c.take(2);
    c.send({ type: 5, packetId: 77 });
    const rel = take1<PubAckLikePacket>(c, 6);
    assert.equal(rel?.packetId, 77);
    assert.equal(rel?.reasonCode, 0x92);
    c.send({ type: 6, packetId: 78 });
    assert.equal(take1<PubAckLikePacket>(c, 7)?.reasonCode, 0x92);
    assert.equal(c.closed, false);
  });

  it('[MQTT-4.4.0-1] a subscriber that sent PUBREC and reconnects gets PUBREL (not the PUBLISH); an unanswered one comes again with DUP, in order', () => {
    const f = new FakeCore();
    const s = f.connect({ clientId: 'rs', protocolVersion: 5, properties: { sessionExpiryInterval: 300 } });
    s.take(2);
    s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'r', qos: 2 }] });
    s.take(9);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('r', 'a', { qos: 2, packetId: 1 }));
    p.send(pub('r', 'b', { qos: 2, packetId: 2 }));
    const [a, b] = s.take(3) as PublishPacket[];
    s.send({ type: 5, packetId: a!.packetId! });
    assert.equal(take1<PubAckLikePacket>(s, 6)?.packetId, a!.packetId);
    s.drop();
    const s2 = f.connect({ clientId: 'rs', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    s2.take(2);
    const resent = s2.take();
    assert.deepEqual(
      resent.map((x) => [x.type, (x as PubAckLikePacket).packetId, (x as PublishPacket).dup ?? null]),
      [
        [6, a!.packetId, null],
        [3, b!.packetId, true],
      ],
    );
    s2.send({ type: 7, packetId: a!.packetId! });
    s2.send({ type: 5, packetId: b!.packetId! });
    assert.equal(take1<PubAckLikePacket>(s2, 6)?.packetId, b!.packetId);
    s2.send({ type: 7, packetId: b!.packetId! });
    s2.drop();
    const s3 = f.connect({ clientId: 'rs', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    s3.take(2);
    assert.deepEqual(s3.received, [], 'both flows completed: nothing more');
  });

  it('[MQTT-4.3.3-9] incoming DUP: a resent QoS 2 PUBLISH gets PUBREC again and is delivered once; after PUBCOMP the id is a new message', () => {
    const f = new FakeCore();
    const s = f.connect({ clientId: 's', protocolVersion: 5 });
    s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'd', qos: 0 }] });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.take(2);
    p.send(pub('d', 'first', { qos: 2, packetId: 7 }));
    p.send(pub('d', 'first', { qos: 2, packetId: 7, dup: true }));
    assert.deepEqual(p.take(5).map((x) => (x as PubAckLikePacket).packetId), [7, 7]);
    assert.deepEqual((s.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['first']);
    p.send({ type: 6, packetId: 7 });
    assert.equal(take1<PubAckLikePacket>(p, 7)?.reasonCode ?? 0, 0);
    p.send(pub('d', 'second', { qos: 2, packetId: 7 }));
    assert.equal(p.take(5).length, 1);
    assert.deepEqual((s.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['second']);
  });

  it('(3.3.4) the broker\'s Receive Maximum counts QoS 2 messages until PUBREL: a refused one or a duplicate does not count, the next new one is 0x93', () => {
    const f = new FakeCore({ limits: { receiveMaximum: 2 }, hooks: { authorizePublish: (_c, m) => m.topic !== 'deny' } });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.take(2);
    p.send(pub('deny', 'x', { qos: 2, packetId: 9 }));
    p.send(pub('t', '1', { qos: 2, packetId: 1 }));
    p.send(pub('t', '2', { qos: 2, packetId: 2 }));
    p.send(pub('t', '1', { qos: 2, packetId: 1, dup: true }));
    assert.deepEqual(p.take(5).map((x) => [(x as PubAckLikePacket).packetId, (x as PubAckLikePacket).reasonCode ?? 0]), [
      [9, 0x87],
      [1, 0x10],
      [2, 0x10],
      [1, 0],
    ]);
    assert.equal(p.closed, false, 'PUBREC 0x87 ended that flow [MQTT-3.3.4-7]');
    p.send({ type: 6, packetId: 1 });
    assert.equal(p.take(7).length, 1);
    p.send(pub('t', '3', { qos: 2, packetId: 3 }));
    assert.equal(p.take(5).length, 1, 'room again after PUBREL');
    assert.equal(p.closed, false);
    p.send(pub('t', '4', { qos: 2, packetId: 4 }));
    assert.equal(take1<DisconnectPacket>(p, 14)?.reasonCode, 0x93);
    assert.equal(p.closed, true);
  });

  it('QoS 2 refused by an async authorizePublish: PUBREC 0x87, nothing delivered, a later PUBREL gets PUBCOMP 0x92', async (t) => {
    const h = await setup(t, { authorizePublish: (_c, m) => new Promise<boolean>((r) => setTimeout(() => r(m.topic !== 'secret'), 30)) });
    const sub = await h.subscriber('#', 2, { clientId: 'sub', protocolVersion: 5 });
    const p = await h.connected({ clientId: 'pub', protocolVersion: 5 });
    p.send(pub('secret', 'x', { qos: 2, packetId: 5 }));
    const rec = (await p.next(5)) as PubAckLikePacket;
    assert.equal(rec.packetId, 5);
    assert.equal(rec.reasonCode, 0x87);
    p.send({ type: 6, packetId: 5 });
    assert.equal(((await p.next(7)) as PubAckLikePacket).reasonCode, 0x92);
    p.send(pub('open', 'y', { qos: 2, packetId: 5 }));
    assert.equal(((await p.next(5)) as PubAckLikePacket).reasonCode ?? 0, 0, 'the same id, allowed this time');
    const got = await publishes(sub, 1);
    assert.equal(got[0]!.topic, 'open');
    assert.deepEqual(await quietPublishes(sub, 100), [], '"secret" never delivered');
  });
});

// ---------------------------------------------------------------------------------------------------------
// 3. The command line
// ---------------------------------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'petrel-broker-cli-'));
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** The environment without any PETREL_* variable of the test runner. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PETREL_')) env[k] = v;
  return { ...env, ...extra };
}

function cli(args: string[], opts: { env?: Record<string, string>; input?: string } = {}) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: dir, env: cleanEnv(opts.env), input: opts.input ?? '', timeout: 10_000 });
}

interface BrokerProcess {
  child: ChildProcess;
  port: number;
  /** stdout lines (JSON log lines) so far. */
  lines(): Record<string, unknown>[];
  waitLog(msg: string, timeoutMs?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startBrokerCli(args: string[], env: Record<string, string> = {}): Promise<BrokerProcess> {
  const child = spawn(process.execPath, [BIN, 'broker', '--host', '127.0.0.1', '--port', '0', ...args], { cwd: dir, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  const wake: (() => void)[] = [];
  child.stdout!.on('data', (d) => {
    out += d;
    for (const w of wake.splice(0)) w();
  });
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  void exited.then(() => {
    for (const w of wake.splice(0)) w();
  });
  const lines = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const waitLog = async (msg: string, timeoutMs = 4000) => {
    const deadline = Date.now() + timeoutMs;
    while (!lines().some((l) => l.msg === msg)) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`broker exited before "${msg}": ${err}${out}`);
      if (Date.now() > deadline) throw new Error(`no "${msg}" log line: ${err}${out}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        wake.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  };
  await waitLog('listening');
  const port = Number(lines().find((l) => l.msg === 'listening')!.port);
  return { child, port, lines, waitLog, exited };
}

const oneLine = (stderr: string) => stderr.trim().split('\n').length === 1;

describe('petrel broker: flags, PETREL_* variables, signals', () => {
  it('--help names every documented flag and the SIGHUP reload; every flag reaches --print-config', () => {
    const help = cli(['broker', '--help']);
    assert.equal(help.status, 0);
    for (const flag of ['-p, --port', '-H, --host', '-c, --config', '--log-level', '--password-file', '--acl-file', '--no-anonymous', '--print-config']) {
      assert.ok(help.stdout.includes(flag), `--help mentions ${flag}`);
    }
    assert.match(help.stdout, /SIGHUP reloads the password file, the ACL file and TLS certificates/);
    const r = cli(['broker', '-p', '1999', '-H', '127.0.0.2', '--log-level', 'warn', '--password-file', 'pw', '--acl-file', 'acl', '--no-anonymous', '--print-config', 'json']);
    assert.equal(r.status, 0, r.stderr);
    const c = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(c.listeners, [{ type: 'tcp', host: '127.0.0.2', port: 1999 }]);
    assert.equal(c.logLevel, 'warn');
    assert.equal(c.passwordFile, 'pw');
    assert.deepEqual(c.acl, { file: 'acl' });
    assert.equal(c.allowAnonymous, false);
    // Its output is itself a valid config file (docs/configuration.md).
    writeFileSync(join(dir, 'printed.json'), r.stdout);
    const again = cli(['broker', '-c', 'printed.json', '--print-config', 'json']);
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout), c);
  });

  it('bad flag values: exit 2 with one line naming the setting', () => {
    for (const [args, re] of [
      [['--port', 'abc'], /port/],
      [['--port', '65536'], /port/],
      [['--log-level', 'loud'], /logLevel|log-level/],
      [['--print-config', 'xml'], /--print-config/],
      [['--bogus'], /--bogus/],
      [['-c', 'missing.yaml'], /cannot read config file missing\.yaml: ENOENT/],
    ] as [string[], RegExp][]) {
      const r = cli(['broker', ...args, ...(args[0] === '--print-config' ? [] : ['--print-config'])]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(oneLine(r.stderr), `${args.join(' ')}: one line: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
  });

  it(
    '--port takes a plain decimal port: "", "0x10", "1e3" are refused (exit 2), not read as 0, 16, 1000',
    () => {
      for (const bad of ['', '0x10', '1e3']) {
        const r = cli(['broker', '--port', bad, '--print-config', 'json']);
        assert.equal(r.status, 2, `--port ${JSON.stringify(bad)} accepted: ${r.stdout.slice(-80)}`);
        assert.match(r.stderr, /port/);
      }
    },
  );

  it('PETREL_* variables: documented names and JSON types; precedence file < environment < flags; a bad one exits 2 naming it', () => {
    const file = join(dir, 'prec.yaml');
    writeFileSync(file, 'logLevel: warn\nmaxQos: 2\nmaxInflight: 10\nacl:\n  default: allow\n  file: from-file\n');
    const env = { PETREL_LOG_LEVEL: 'debug', PETREL_MAX_QOS: '1', PETREL_ACL__DEFAULT: 'deny', PETREL_ALLOW_ANONYMOUS: 'false', PETREL_BANS__CLIENT_IDS: '["evil"]', PETREL_PORT: '1111' };
    const r = cli(['broker', '-c', file, '--log-level', 'error', '--port', '2222', '--acl-file', 'from-flag', '--print-config', 'json'], { env });
    assert.equal(r.status, 0, r.stderr);
    const c = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(c.logLevel, 'error', 'flag over environment over file');
    assert.equal(c.maxQos, 1, 'environment over file');
    assert.equal(c.maxInflight, 10, 'file');
    assert.equal(c.allowAnonymous, false, 'PETREL_ALLOW_ANONYMOUS=false is a boolean');
    assert.deepEqual(c.acl, { default: 'deny', file: 'from-flag' }, 'sections merge key by key');
    assert.deepEqual(c.bans, { clientIds: ['evil'] });
    assert.deepEqual(c.listeners, [{ type: 'tcp', host: '0.0.0.0', port: 2222 }]);
    const list = cli(['broker', '--print-config', 'json'], { env: { PETREL_LISTENERS: '[{"type":"ws","port":9001,"path":"/x"}]' } });
    assert.deepEqual((JSON.parse(list.stdout) as { listeners: unknown }).listeners, [{ type: 'ws', host: '0.0.0.0', port: 9001, path: '/x' }]);
    for (const [name, value] of [
      ['PETREL_MAX_QOS', '3'],
      ['PETREL_ALLOW_ANONYMOUS', 'yes'],
      ['PETREL_NO_SUCH_KEY', '1'],
      ['PETREL_MAX_PACKET_SIZE', '-5'],
    ]) {
      const bad = cli(['broker', '--print-config'], { env: { [name!]: value! } });
      assert.equal(bad.status, 2, `${name}=${value}`);
      assert.ok(oneLine(bad.stderr), bad.stderr);
      assert.ok(bad.stderr.includes(`${name}:`), `names ${name}: ${bad.stderr}`);
    }
  });

  it(
    'a bad PETREL_ value is reported under the variable that was set (PETREL_ACL__DEFAULT, PETREL_MAXQOS)',
    () => {
      for (const [name, value] of [
        ['PETREL_ACL__DEFAULT', 'maybe'],
        ['PETREL_ACL__NO_SUCH', '1'],
        ['PETREL_MAXQOS', '7'],
      ]) {
        const bad = cli(['broker', '--print-config'], { env: { [name!]: value! } });
        assert.equal(bad.status, 2);
        assert.ok(bad.stderr.includes(`${name}:`), `names ${name}: ${bad.stderr.trim()}`);
      }
    },
  );

  it(
    'PETREL_PORT with listeners from the file overrides them or is refused, as --port is; it is not silently ignored',
    () => {
      const file = join(dir, 'listeners.yaml');
      writeFileSync(file, 'listeners:\n  - { type: tcp, port: 1999 }\n');
      const r = cli(['broker', '-c', file, '--print-config', 'json'], { env: { PETREL_PORT: '1884' } });
      if (r.status === 0) {
        assert.deepEqual((JSON.parse(r.stdout) as { listeners: { port: number }[] }).listeners.map((l) => l.port), [1884]);
      } else {
        assert.equal(r.status, 2);
        assert.match(r.stderr, /PETREL_PORT/);
      }
    },
  );

  it('SIGHUP re-reads the password file and the ACL file (file watching off)', async () => {
    const pw = join(dir, 'hup-passwd');
    const acl = join(dir, 'hup-acl');
    assert.equal(cli(['passwd', '--password', 'a-pass', pw, 'alice']).status, 0);
    writeFileSync(acl, 'allow all all open/#\n');
    const b = await startBrokerCli(['--password-file', pw, '--acl-file', acl, '--no-anonymous', '--log-level', 'info'], { PETREL_WATCH_FILES: 'false', PETREL_ACL__DEFAULT: 'deny' });
    const clients: RawClient[] = [];
    try {
      const bob1 = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'bob1', username: 'bob', password: Buffer.from('b-pass') });
      clients.push(bob1.client);
      assert.equal(bob1.connack.reasonCode, 0x86, 'bob unknown');
      const a1 = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'a1', username: 'alice', password: Buffer.from('a-pass') });
      clients.push(a1.client);
      assert.equal(a1.connack.reasonCode, 0);
      a1.client.send(pub('closed/x', 'm', { qos: 1, packetId: 1 }));
      assert.equal(((await a1.client.next(4)) as PubAckLikePacket).reasonCode, 0x87, 'denied by the first ACL');
      assert.equal(cli(['passwd', '--password', 'b-pass', pw, 'bob']).status, 0);
      writeFileSync(acl, 'allow all all open/#\nallow all all closed/#\n');
      const bob2 = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'bob2', username: 'bob', password: Buffer.from('b-pass') });
      clients.push(bob2.client);
      assert.equal(bob2.connack.reasonCode, 0x86, 'no reload without SIGHUP (watchFiles false)');
      b.child.kill('SIGHUP');
      await b.waitLog('password file reloaded');
      const bob3 = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'bob3', username: 'bob', password: Buffer.from('b-pass') });
      clients.push(bob3.client);
      assert.equal(bob3.connack.reasonCode, 0, 'bob known after SIGHUP');
      bob3.client.send(pub('closed/x', 'm', { qos: 1, packetId: 1 }));
      assert.notEqual(((await bob3.client.next(4)) as PubAckLikePacket).reasonCode, 0x87, 'the new ACL is in force');
      // A broken file on SIGHUP: logged, the previous users kept, the broker keeps running.
      writeFileSync(pw, readFileSync(pw, 'utf8') + 'not a valid line\n');
      b.child.kill('SIGHUP');
      await b.waitLog('password file not reloaded; keeping the previous users');
      const bob4 = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'bob4', username: 'bob', password: Buffer.from('b-pass') });
      clients.push(bob4.client);
      assert.equal(bob4.connack.reasonCode, 0);
    } finally {
      for (const c of clients) c.destroy();
      b.child.kill('SIGKILL');
      await b.exited;
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: connected clients get DISCONNECT 0x8B (5.0) or a close (3.1.1), the process exits 0`, async () => {
      const b = await startBrokerCli(['--log-level', 'info']);
      try {
        const v5 = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'v5' });
        const v4 = await RawClient.connect(b.port, { protocolVersion: 4, clientId: 'v4' });
        assert.equal(v5.connack.reasonCode, 0);
        b.child.kill(signal);
        const d = (await v5.client.next(14, 3000)) as DisconnectPacket;
        assert.equal(d.reasonCode, 0x8b);
        await v5.client.waitClosed(3000);
        await v4.client.waitClosed(3000);
        assert.deepEqual(v4.client.packets, []);
        assert.deepEqual(await b.exited, { code: 0, signal: null });
        assert.ok(b.lines().some((l) => l.msg === 'shutting down' && l.signal === signal));
      } finally {
        b.child.kill('SIGKILL');
      }
    });
  }
});

describe('petrel passwd', () => {
  it('creates (mode 0600), updates (new salt) and deletes users; other lines and comments are kept', () => {
    const file = join(dir, 'pw-edit');
    writeFileSync(file, '# users\n', { mode: 0o644 });
    const add = cli(['passwd', file, 'alice'], { input: 'one\n' });
    assert.equal(add.status, 0, add.stderr);
    assert.match(add.stderr, /^added alice$/m);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(cli(['passwd', '--password', 'two', file, 'bob']).status, 0);
    const before = readFileSync(file, 'utf8');
    const upd = cli(['passwd', '--stdin', file, 'alice'], { input: 'three\r\nignored\n' });
    assert.equal(upd.status, 0, upd.stderr);
    assert.match(upd.stderr, /^updated alice$/m);
    const text = readFileSync(file, 'utf8');
    assert.equal(text.split('\n').filter((l) => l.startsWith('alice:')).length, 1, 'alice once');
    assert.notEqual(text.match(/^alice:.*$/m)![0], before.match(/^alice:.*$/m)![0]);
    assert.equal(text.match(/^bob:.*$/m)![0], before.match(/^bob:.*$/m)![0], 'bob untouched');
    assert.ok(text.startsWith('# users\n'), 'comment kept');
    assert.ok(!/one|two|three/.test(text.replace(/\$[^\n]*/g, '')), 'no plain text');
    const del = cli(['passwd', '-D', file, 'alice']);
    assert.equal(del.status, 0);
    assert.ok(!readFileSync(file, 'utf8').includes('alice:'));
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  it('bad input: empty password or username, a line break or leading "#" in the name, a missing file on delete, missing arguments', () => {
    const file = join(dir, 'pw-bad');
    for (const [args, input, code, re] of [
      [['passwd', file, 'alice'], '', 1, /empty password/],
      [['passwd', file, 'alice'], '\n', 1, /empty password/],
      [['passwd', '--password', '', file, 'alice'], '', 1, /empty password/],
      [['passwd', '--password', 'x', file, ''], '', 1, /empty username/],
      [['passwd', '--password', 'x', file, 'a\nb'], '', 1, /line break/],
      [['passwd', '--password', 'x', file, '#root'], '', 1, /"#"/],
      [['passwd', '-D', join(dir, 'nope'), 'alice'], '', 1, /does not exist/],
      [['passwd', file], '', 2, /username/],
    ] as [string[], string, number, RegExp][]) {
      const r = cli(args, { input });
      assert.equal(r.status, code, `${JSON.stringify(args)}: ${r.stderr}`);
      assert.ok(oneLine(r.stderr), r.stderr);
      assert.match(r.stderr, re);
    }
    assert.throws(() => statSync(file), 'no file was created by a refused edit');
    assert.equal(cli(['passwd', '--password', 'x', file, 'ok']).status, 0);
    const r = cli(['passwd', '-D', file, 'ghost']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no user "ghost"/);
  });
});

