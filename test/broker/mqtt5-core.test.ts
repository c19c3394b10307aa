// MQTT 5.0 features of the broker core, driven through in-memory connections (no sockets, fake clock).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScramClient, scramCredentials, scramSha256, type ScramCredentials } from '../../src/auth/scram.js';
import type { AuthPacket, ConnackPacket, DisconnectPacket, Packet, Properties, PubAckLikePacket, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';
import { pub } from '../helpers/packets.js';


function subscribe(c: MemoryConnection, topicFilter: string, opts: Record<string, unknown> = {}, properties?: Record<string, unknown>): SubackPacket {
  c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter, qos: 1, ...opts }], properties });
  return c.take(9)[0] as SubackPacket;
}

const connack = (c: MemoryConnection) => c.take(2)[0] as ConnackPacket;

describe('MQTT 5.0 enhanced authentication (SCRAM-SHA-256)', () => {
  const users = new Map<string, ScramCredentials>([['alice', scramCredentials('wonderland', undefined, 1000)]]);
  const core = () => new FakeCore({ authMethods: [scramSha256((u) => users.get(u))] });

  function scramConnect(f: FakeCore, user: string, password: string) {
    const scram = new ScramClient(user, password);
    const c = f.connect({ clientId: 'sc', protocolVersion: 5, properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: scram.first() } });
    const challenge = c.take(15)[0] as AuthPacket;
    assert.equal(challenge.reasonCode, 0x18, 'server-first comes in AUTH 0x18 Continue authentication');
    assert.equal(challenge.properties?.authenticationMethod, 'SCRAM-SHA-256');
    c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: scram.final(challenge.properties!.authenticationData!) } });
    return { c, scram };
  }

  it('a client with the right password is accepted and the CONNACK proves the server knew it too', () => {
    const f = core();
    const { c, scram } = scramConnect(f, 'alice', 'wonderland');
    const ack = connack(c);
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.properties?.authenticationMethod, 'SCRAM-SHA-256');
    assert.ok(scram.verify(ack.properties?.authenticationData), 'server signature verifies');
    assert.equal(f.inspect.connection('sc')?.username, 'alice');
  });

  it('a wrong password gets CONNACK 0x86 and the connection is closed', () => {
    const f = core();
    const { c } = scramConnect(f, 'alice', 'looking-glass');
    assert.equal(connack(c).reasonCode, 0x86);
    assert.equal(c.closed, true);
  });

  it('an unknown user goes through the same exchange and gets 0x86 (no user enumeration)', () => {
    const f = core();
    const { c } = scramConnect(f, 'mallory', 'x');
    assert.equal(connack(c).reasonCode, 0x86);
  });

  it('a client that starts SCRAM and never answers the challenge is closed after connectTimeout', () => {
    const f = new FakeCore({ authMethods: [scramSha256((u) => users.get(u))], limits: { connectTimeout: 5000 } });
    const c = f.connect({ clientId: 'slow', protocolVersion: 5, properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: new ScramClient('alice', 'x').first() } });
    assert.equal((c.take(15)[0] as AuthPacket).reasonCode, 0x18);
    f.advance(4900);
    assert.equal(c.closed, false);
    f.advance(200);
    assert.equal(c.closed, true);
    assert.equal(f.inspect.counts().connected, 0);
  });

  it('an unknown authentication method gets CONNACK 0x8C', () => {
    const f = core();
    const c = f.connect({ protocolVersion: 5, properties: { authenticationMethod: 'KERBEROS' } });
    assert.equal(connack(c).reasonCode, 0x8c);
    assert.equal(c.closed, true);
  });

  it('re-authentication on a live connection: AUTH 0x19 → 0x18 → AUTH 0x00', () => {
    const f = core();
    const { c } = scramConnect(f, 'alice', 'wonderland');
    assert.equal(connack(c).reasonCode, 0);
    const again = new ScramClient('alice', 'wonderland');
    c.send({ type: 15, reasonCode: 0x19, properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: again.first() } });
    const challenge = c.take(15)[0] as AuthPacket;
    assert.equal(challenge.reasonCode, 0x18);
    c.send({ type: 15, reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: again.final(challenge.properties!.authenticationData!) } });
    const done = c.take(15)[0] as AuthPacket;
    assert.equal(done.reasonCode ?? 0, 0);
    assert.ok(again.verify(done.properties?.authenticationData));
    assert.equal(c.closed, false);
  });

  it('[MQTT-4.12.1-1] re-authentication with another method is a protocol error (DISCONNECT 0x82)', () => {
    const f = core();
    const { c } = scramConnect(f, 'alice', 'wonderland');
    connack(c);
    c.send({ type: 15, reasonCode: 0x19, properties: { authenticationMethod: 'OTHER' } });
    assert.equal((c.take(14)[0] as DisconnectPacket).reasonCode, 0x82);
    assert.equal(c.closed, true);
  });

  it('AUTH on a connection that did not use enhanced authentication is a protocol error', () => {
    const f = core();
    const c = f.connect({ protocolVersion: 5 });
    connack(c);
    c.send({ type: 15, reasonCode: 0x19, properties: { authenticationMethod: 'SCRAM-SHA-256' } });
    assert.equal((c.take(14)[0] as DisconnectPacket).reasonCode, 0x82);
  });
});

describe('MQTT 5.0 CONNACK properties', () => {
  it('Response Information is sent only when requested, with the Client ID filled in', () => {
    const f = new FakeCore({ limits: { responseInformation: 'replies/%c' } });
    assert.equal(connack(f.connect({ clientId: 'a', protocolVersion: 5 })).properties?.responseInformation, undefined);
    const ack = connack(f.connect({ clientId: 'b', protocolVersion: 5, properties: { requestResponseInformation: 1 } }));
    assert.equal(ack.properties?.responseInformation, 'replies/b');
  });

  it('a configured redirect refuses with 0x9C and a Server Reference (0x9D when moved)', () => {
    const f = new FakeCore({ limits: { serverReference: 'other.example:1883' } });
    const ack = connack(f.connect({ protocolVersion: 5 }));
    assert.equal(ack.reasonCode, 0x9c);
    assert.equal(ack.properties?.serverReference, 'other.example:1883');
    const moved = new FakeCore({ limits: { serverReference: 'new.example', serverMoved: true } });
    assert.equal(connack(moved.connect({ protocolVersion: 5 })).reasonCode, 0x9d);
  });

  it('limits and feature flags are announced; a Reason String only when problem information is allowed', () => {
    const f = new FakeCore({ limits: { receiveMaximum: 10, maxQos: 1, retainAvailable: false, sharedSubscriptionAvailable: false, subscriptionIdentifiersAvailable: false, wildcardSubscriptionAvailable: false, connackUserProperties: [['region', 'eu']] } });
    const p = connack(f.connect({ clientId: 'x', protocolVersion: 5 })).properties!;
    assert.equal(p.receiveMaximum, 10);
    assert.equal(p.maximumQoS, 1);
    assert.equal(p.retainAvailable, 0);
    assert.equal(p.sharedSubscriptionAvailable, 0);
    assert.equal(p.subscriptionIdentifierAvailable, 0);
    assert.equal(p.wildcardSubscriptionAvailable, 0);
    assert.deepEqual(p.userProperties, [['region', 'eu']]);
    const quiet = new FakeCore({ limits: { allowAnonymous: false } });
    const refused = connack(quiet.connect({ protocolVersion: 5, properties: { requestProblemInformation: 0 } }));
    assert.equal(refused.reasonCode, 0x87);
    assert.equal(refused.properties?.reasonString, undefined, '[MQTT-3.1.2-29] no Reason String when the client said no');
  });
});

describe('MQTT 5.0 messages', () => {
  it('topic aliases toward the client stay within its Topic Alias Maximum', () => {
    const f = new FakeCore();
    const sub = f.connect({ clientId: 's', protocolVersion: 5, properties: { topicAliasMaximum: 2 } });
    connack(sub);
    subscribe(sub, 't/#', { qos: 0 });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    for (const t of ['t/a', 't/b', 't/c', 't/a', 't/b', 't/c']) p.send(pub(t, t));
    const got = sub.take(3) as PublishPacket[];
    assert.deepEqual(
      got.map((g) => [g.topic, g.properties?.topicAlias]),
      [['t/a', 1], ['t/b', 2], ['t/c', undefined], ['', 1], ['', 2], ['t/c', undefined]],
    );
  });

  it('a client without Topic Alias Maximum never gets aliases', () => {
    const f = new FakeCore();
    const sub = f.connect({ clientId: 's', protocolVersion: 5 });
    subscribe(sub, 't', { qos: 0 });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('t', '1'));
    p.send(pub('t', '2'));
    const got = sub.take(3) as PublishPacket[];
    assert.equal(got.length, 2);
    assert.ok(got.every((g) => g.topic === 't' && g.properties?.topicAlias === undefined));
  });

  it('Payload Format Indicator 1 with a non-UTF-8 payload: PUBACK 0x99 (QoS 1), DISCONNECT 0x99 (QoS 0)', () => {
    const f = new FakeCore();
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send({ ...pub('t', ''), payload: Buffer.from([0xff, 0xfe]), qos: 1, packetId: 5, properties: { payloadFormatIndicator: 1 } });
    assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode, 0x99);
    p.send({ ...pub('t', ''), payload: Buffer.from([0xc3]), properties: { payloadFormatIndicator: 1 } });
    assert.equal((p.take(14)[0] as DisconnectPacket).reasonCode, 0x99);
  });

  it('(3.4.2.1) acknowledgements with reason 0 and no properties go in the short form on the wire', () => {
    const f = new FakeCore();
    const s = f.connect({ clientId: 's', protocolVersion: 5 });
    subscribe(s, 'short', { qos: 2 });
    const wire: Buffer[] = [];
    const channel = f.core.openChannel({ write: (b) => wire.push(Buffer.from(b)), close() {} }, { remoteAddress: 'x', listener: 'l', secure: false });
    channel.receive(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'raw' }, 5));
    wire.length = 0;
    channel.receive(encodePacket({ type: 3, topic: 'short', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 0x1234 }, 5));
    channel.receive(encodePacket({ type: 3, topic: 'short', payload: Buffer.from('y'), qos: 2, retain: false, dup: false, packetId: 0x0102 }, 5));
    channel.receive(encodePacket({ type: 6, packetId: 0x0102 }, 5));
    assert.deepEqual(wire.map((b) => [...b]), [
      [0x40, 0x02, 0x12, 0x34], // PUBACK
      [0x50, 0x02, 0x01, 0x02], // PUBREC
      [0x70, 0x02, 0x01, 0x02], // PUBCOMP
    ]);
  });

  it('PUBACK 0x10 when nobody is subscribed; 0x00 (short form) when somebody is', () => {
    const f = new FakeCore();
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('none', 'x', { qos: 1, packetId: 1 }));
    assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode, 0x10);
    const s = f.connect({ clientId: 's', protocolVersion: 5 });
    subscribe(s, 'some');
    p.send(pub('some', 'x', { qos: 1, packetId: 2 }));
    assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode ?? 0, 0);
  });

  it('flow control: at most the client\'s Receive Maximum unacknowledged QoS 1 messages, the rest in order after acks', () => {
    const f = new FakeCore();
    const s = f.connect({ clientId: 's', protocolVersion: 5, properties: { receiveMaximum: 3 } });
    subscribe(s, 'q');
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    for (let i = 0; i < 10; i++) p.send(pub('q', String(i), { qos: 1, packetId: i + 1 }));
    const seen: string[] = [];
    for (let round = 0; round < 10 && seen.length < 10; round++) {
      const batch = s.take(3) as PublishPacket[];
      assert.ok(batch.length <= 3, `never more than 3 in flight (got ${batch.length})`);
      if (round === 0) assert.equal(batch.length, 3, 'the window is used in full');
      for (const m of batch) {
        seen.push(m.payload.toString());
        s.send({ type: 4, packetId: m.packetId! });
      }
    }
    assert.deepEqual(seen, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  });

  it('a client exceeding the broker\'s Receive Maximum with QoS 2 is disconnected with 0x93', () => {
    const f = new FakeCore({ limits: { receiveMaximum: 2 } });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    for (let i = 1; i <= 3; i++) p.send(pub('t', 'x', { qos: 2, packetId: i }));
    assert.equal((p.take(14)[0] as DisconnectPacket).reasonCode, 0x93);
    assert.equal(p.closed, true);
  });

  it('[MQTT-3.1.2-25] a message larger than the subscriber\'s Maximum Packet Size is dropped for it and counted', () => {
    const f = new FakeCore();
    const small = f.connect({ clientId: 'small', protocolVersion: 5, properties: { maximumPacketSize: 64 } });
    const big = f.connect({ clientId: 'big', protocolVersion: 5 });
    subscribe(small, 'm', { qos: 0 });
    subscribe(big, 'm', { qos: 0 });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('m', 'x'.repeat(100)));
    p.send(pub('m', 'short'));
    assert.deepEqual((small.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['short']);
    assert.equal(big.take(3).length, 2);
    assert.equal(f.inspect.counts().droppedMessages, 1);
  });

  it('[MQTT-3.2.2-19] a DISCONNECT too large for the client\'s Maximum Packet Size goes without its Reason String', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 'tiny', protocolVersion: 5, properties: { maximumPacketSize: 16 } });
    assert.equal((c.take(2)[0] as ConnackPacket).reasonCode, 0);
    c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'tiny' });
    const d = c.take(14)[0] as DisconnectPacket;
    assert.equal(d.reasonCode, 0x82);
    assert.equal(d.properties?.reasonString, undefined, 'the Reason String was left out to fit 16 bytes');
    const roomy = f.connect({ clientId: 'roomy', protocolVersion: 5 });
    roomy.take(2);
    roomy.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'roomy' });
    assert.match((roomy.take(14)[0] as DisconnectPacket).properties?.reasonString ?? '', /second CONNECT/);
  });

  it('a retained message expires too: after its Message Expiry Interval a new subscriber does not get it', () => {
    const f = new FakeCore();
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('r/short', 'soon gone', { retain: true, properties: { messageExpiryInterval: 5 } }));
    p.send(pub('r/long', 'stays', { retain: true, properties: { messageExpiryInterval: 500 } }));
    f.advance(6_000);
    const s = f.connect({ clientId: 's', protocolVersion: 5 });
    subscribe(s, 'r/#', { qos: 0 });
    const got = s.take(3) as PublishPacket[];
    assert.deepEqual(got.map((m) => m.payload.toString()), ['stays']);
    assert.ok(got[0]!.properties!.messageExpiryInterval! <= 494, 'forwarded with the time remaining');
  });

  it('properties pass through unchanged and in order; v5-only properties are dropped toward 3.1.1', () => {
    const f = new FakeCore();
    const v5 = f.connect({ clientId: 'v5', protocolVersion: 5 });
    const v4 = f.connect({ clientId: 'v4', protocolVersion: 4 });
    subscribe(v5, 'p', { qos: 0 });
    subscribe(v4, 'p', { qos: 0 });
    const props = {
      payloadFormatIndicator: 1,
      contentType: 'text/plain',
      responseTopic: 'reply/here',
      correlationData: Buffer.from([1, 2, 3]),
      userProperties: [['b', '2'], ['a', '1'], ['b', '3']] as [string, string][],
    };
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('p', 'hello', { properties: props }));
    const got = v5.take(3)[0] as PublishPacket;
    assert.deepEqual(got.properties, props);
    const old = v4.take(3)[0] as PublishPacket;
    assert.equal(old.payload.toString(), 'hello');
    assert.equal(old.properties, undefined);
  });

  it('a 3.1.1 publisher reaches a 5.0 subscriber (no properties, defaults apply)', () => {
    const f = new FakeCore();
    const v5 = f.connect({ clientId: 'v5', protocolVersion: 5 });
    subscribe(v5, 'x', { qos: 1 });
    const v4 = f.connect({ clientId: 'v4', protocolVersion: 4 });
    v4.send(pub('x', 'from 3.1.1', { qos: 1, packetId: 9 }));
    const got = v5.take(3)[0] as PublishPacket;
    assert.equal(got.payload.toString(), 'from 3.1.1');
    assert.equal(got.qos, 1);
  });
});

describe('MQTT 5.0 Receive Maximum on resume', () => {
  it('[MQTT-4.9.0-2] [MQTT-4.4.0-1] in-flight messages are resent within the new Receive Maximum, in order; one the client acknowledges meanwhile is not resent; new ones wait behind', () => {
    const f = new FakeCore();
    let s = f.connect({ clientId: 's', protocolVersion: 5, properties: { sessionExpiryInterval: 60, receiveMaximum: 10 } });
    subscribe(s, 't');
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    for (let i = 1; i <= 5; i++) p.send(pub('t', String(i), { qos: 1, packetId: i }));
    const before = s.take(3) as PublishPacket[];
    assert.equal(before.length, 5);
    s.drop();
    s = f.connect({ clientId: 's', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 60, receiveMaximum: 2 } });
    assert.equal(connack(s).sessionPresent, true);
    const text = (ps: Packet[]) => (ps as PublishPacket[]).map((m) => `${m.payload}${m.dup ? '*' : ''}`);
    assert.deepEqual(text(s.take(3)), ['1*', '2*'], 'two resent (DUP), three held back');
    // The client had '4' already and acknowledges it now: it is not resent later.
    s.send({ type: 4, packetId: before[3]!.packetId! });
    p.send(pub('t', '6', { qos: 1, packetId: 6 }));
    assert.deepEqual(s.take(3), [], 'the window is still full');
    s.send({ type: 4, packetId: before[0]!.packetId! });
    assert.deepEqual(text(s.take(3)), ['3*']);
    s.send({ type: 4, packetId: before[1]!.packetId! });
    assert.deepEqual(text(s.take(3)), ['5*'], "'4' was acknowledged: skipped");
    s.send({ type: 4, packetId: before[2]!.packetId! });
    const six = s.take(3) as PublishPacket[];
    assert.deepEqual(text(six), ['6'], 'the new message once the held ones are out');
    s.send({ type: 4, packetId: before[4]!.packetId! });
    s.send({ type: 4, packetId: six[0]!.packetId! });
    assert.deepEqual(s.take(3), []);
    assert.equal(s.closed, false);
  });
});

describe('QoS 2 acknowledgements out of order', () => {
  it('[MQTT-4.3.3] a PUBCOMP before PUBREC is ignored: the message stays in flight and is resent on resume', () => {
    for (const protocolVersion of [4, 5] as const) {
      const f = new FakeCore();
      const props = protocolVersion === 5 ? { sessionExpiryInterval: 60 } : undefined;
      let s = f.connect({ clientId: 's', protocolVersion, clean: protocolVersion === 4 ? false : true, properties: props });
      s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 2 }] });
      s.take(9);
      const p = f.connect({ clientId: 'p', protocolVersion: 5 });
      p.send(pub('t', 'two', { qos: 2, packetId: 1 }));
      const [m] = s.take(3) as PublishPacket[];
      s.send({ type: 7, packetId: m!.packetId! });
      s.drop();
      s = f.connect({ clientId: 's', protocolVersion, clean: false, properties: props });
      const again = s.take(3) as PublishPacket[];
      assert.deepEqual(again.map((x) => [x.payload.toString(), x.dup, x.packetId]), [['two', true, m!.packetId]], `v${protocolVersion}`);
      // The flow then completes normally.
      s.send({ type: 5, packetId: m!.packetId! });
      assert.equal(s.take(6).length, 1, 'PUBREL');
      s.send({ type: 7, packetId: m!.packetId! });
      s.drop();
      s = f.connect({ clientId: 's', protocolVersion, clean: false, properties: props });
      assert.deepEqual([...s.take(3), ...s.take(6)], [], 'nothing left in flight');
    }
  });
});

describe('MQTT 5.0 subscriptions', () => {
  it('No Local: a client does not get its own messages back', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 'c', protocolVersion: 5 });
    subscribe(c, 'echo', { noLocal: true, qos: 0 });
    c.send(pub('echo', 'me'));
    const other = f.connect({ clientId: 'o', protocolVersion: 5 });
    other.send(pub('echo', 'them'));
    assert.deepEqual((c.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['them']);
  });

  it('Retain As Published keeps the RETAIN flag on forwarded messages; without it the flag is cleared', () => {
    const f = new FakeCore();
    const rap = f.connect({ clientId: 'rap', protocolVersion: 5 });
    const plain = f.connect({ clientId: 'plain', protocolVersion: 5 });
    subscribe(rap, 'r', { retainAsPublished: true, qos: 0 });
    subscribe(plain, 'r', { qos: 0 });
    f.connect({ clientId: 'p', protocolVersion: 5 }).send(pub('r', 'x', { retain: true }));
    assert.equal((rap.take(3)[0] as PublishPacket).retain, true);
    assert.equal((plain.take(3)[0] as PublishPacket).retain, false, '[MQTT-3.3.1-12]');
  });

  it('Retain Handling 0 sends retained messages on every subscribe, 1 only on a new subscription, 2 never', () => {
    const f = new FakeCore();
    f.connect({ clientId: 'p', protocolVersion: 5 }).send(pub('rh', 'kept', { retain: true }));
    const c = f.connect({ clientId: 'c', protocolVersion: 5 });
    const count = (rh: 0 | 1 | 2) => {
      subscribe(c, 'rh', { retainHandling: rh, qos: 0 });
      return c.take(3).length;
    };
    assert.equal(count(0), 1);
    assert.equal(count(0), 1, 'again on a repeated subscribe');
    assert.equal(count(1), 0, 'the subscription exists already');
    c.send({ type: 10, packetId: 2, topicFilters: ['rh'] });
    assert.equal(count(1), 1, 'new again after unsubscribe');
    assert.equal(count(2), 0);
  });

  it('Subscription Identifiers are sent with each matching PUBLISH, several when several subscriptions match', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 'c', protocolVersion: 5 });
    c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'a/+', qos: 0 }], properties: { subscriptionIdentifier: 7 } });
    c.send({ type: 8, packetId: 2, subscriptions: [{ topicFilter: 'a/#', qos: 0 }], properties: { subscriptionIdentifier: 9 } });
    c.send({ type: 8, packetId: 3, subscriptions: [{ topicFilter: 'b', qos: 0 }] });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('a/x', '1'));
    p.send(pub('b', '2'));
    const [a, b] = c.take(3) as PublishPacket[];
    const ids = a!.properties?.subscriptionIdentifier;
    assert.deepEqual(Array.isArray(ids) ? [...ids].sort() : ids, [7, 9]);
    assert.equal(b!.properties?.subscriptionIdentifier, undefined);
  });

  it('[MQTT-4.13.1-1] feature flags off: a 5.0 SUBSCRIBE using one is DISCONNECT 0x9E (shared), 0xA2 (wildcard), 0xA1 (subscription identifier); 3.1.1 gets 0x80', () => {
    const limits = { sharedSubscriptionAvailable: false, wildcardSubscriptionAvailable: false, subscriptionIdentifiersAvailable: false };
    const cases: [string, Properties | undefined, number][] = [
      ['$share/g/t', undefined, 0x9e],
      ['a/+', undefined, 0xa2],
      ['plain', { subscriptionIdentifier: 3 }, 0xa1],
    ];
    for (const [filter, properties, code] of cases) {
      const f = new FakeCore({ limits });
      const c = f.connect({ clientId: 'c', protocolVersion: 5 });
      assert.deepEqual(subscribe(c, 'plain').reasonCodes, [1]);
      c.send({ type: 8, packetId: 2, subscriptions: [{ topicFilter: filter, qos: 1 }], properties });
      assert.equal(c.take(9).length, 0, filter);
      assert.equal((c.take(14)[0] as DisconnectPacket).reasonCode, code, filter);
      assert.equal(c.closed, true, filter);
    }
    const f = new FakeCore({ limits });
    const old = f.connect({ clientId: 'o', protocolVersion: 4 });
    assert.deepEqual(subscribe(old, '$share/g/t').reasonCodes, [0x80]);
    assert.deepEqual(subscribe(old, 'a/+').reasonCodes, [0x80]);
    assert.deepEqual(subscribe(old, 'plain').reasonCodes, [1]);
    assert.equal(old.closed, false);
  });

  it('malformed share names and invalid filters get SUBACK 0x8F', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 'c', protocolVersion: 5 });
    for (const bad of ['$share/g+/t', '$share//t', '$share/g', 'a/#/b', 'a+']) {
      assert.deepEqual(subscribe(c, bad).reasonCodes, [0x8f], bad);
    }
  });

  it('[MQTT-3.8.3-4] No Local on a shared subscription is a protocol error', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 'c', protocolVersion: 5 });
    c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '$share/g/t', qos: 0, noLocal: true }] });
    assert.equal((c.take(14)[0] as DisconnectPacket).reasonCode, 0x82);
  });
});

describe('shared subscriptions', () => {
  function group(f: FakeCore, n: number, version: 4 | 5 = 5) {
    const members = Array.from({ length: n }, (_, i) => f.connect({ clientId: `m${i}`, protocolVersion: version }));
    for (const m of members) {
      m.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '$share/g/jobs/#', qos: 1 }] });
      m.take(9);
    }
    return members;
  }

  it('each message goes to exactly one member, round robin', () => {
    const f = new FakeCore();
    const members = group(f, 3);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    for (let i = 0; i < 9; i++) p.send(pub('jobs/x', String(i)));
    const counts = members.map((m) => m.take(3).length);
    assert.deepEqual(counts, [3, 3, 3]);
  });

  it('works for 3.1.1 clients too', () => {
    const f = new FakeCore();
    const members = group(f, 2, 4);
    const p = f.connect({ clientId: 'p' });
    for (let i = 0; i < 4; i++) p.send(pub('jobs/y', String(i)));
    assert.deepEqual(members.map((m) => m.take(3).length), [2, 2]);
  });

  it('sticky strategy keeps one member while it is connected', () => {
    const f = new FakeCore({ limits: { sharedSubscriptionStrategy: 'sticky' } });
    const members = group(f, 3);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    for (let i = 0; i < 6; i++) p.send(pub('jobs/x', String(i)));
    const counts = members.map((m) => m.take(3).length).sort();
    assert.deepEqual(counts, [0, 0, 6]);
  });

  it('random strategy spreads messages over every member', () => {
    const f = new FakeCore({ limits: { sharedSubscriptionStrategy: 'random' } });
    const members = group(f, 3);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    for (let i = 0; i < 300; i++) p.send(pub('jobs/x', String(i)));
    const counts = members.map((m) => m.take(3).length);
    assert.equal(counts.reduce((a, b) => a + b), 300);
    assert.ok(counts.every((c) => c > 50), `every member gets a share: ${counts}`);
  });

  it('a member that leaves has its unacknowledged QoS 1 messages sent to another member', () => {
    const f = new FakeCore();
    const [a, b] = group(f, 2);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.send(pub('jobs/1', 'one', { qos: 1, packetId: 1 }));
    p.send(pub('jobs/2', 'two', { qos: 1, packetId: 2 }));
    const toA = (a!.take(3) as PublishPacket[]).map((m) => m.payload.toString());
    const toB = (b!.take(3) as PublishPacket[]).map((m) => m.payload.toString());
    assert.equal(toA.length, 1);
    assert.equal(toB.length, 1);
    a!.drop(); // leaves without acknowledging
    assert.deepEqual((b!.take(3) as PublishPacket[]).map((m) => m.payload.toString()), toA);
  });

  it('a member that leaves with messages still queued (its Receive Maximum reached) has them sent to another member, in order', () => {
    const f = new FakeCore();
    const a = f.connect({ clientId: 'a', protocolVersion: 5, properties: { receiveMaximum: 1 } });
    const b = f.connect({ clientId: 'b', protocolVersion: 5 });
    for (const m of [a, b]) {
      m.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '$share/g/jobs/#', qos: 1 }] });
      m.take(9);
    }
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    for (let i = 1; i <= 8; i++) p.send(pub('jobs/x', String(i), { qos: 1, packetId: i }));
    // Round robin: a is given 1, 3, 5, 7 but has room for one in flight; the rest wait in its session queue.
    assert.deepEqual((a.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['1']);
    assert.deepEqual((b.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['2', '4', '6', '8']);
    a.drop(); // leaves without acknowledging: in flight and queued go to b
    assert.deepEqual((b.take(3) as PublishPacket[]).map((m) => m.payload.toString()), ['1', '3', '5', '7']);
  });

  it('retained messages are not sent on a shared subscribe', () => {
    const f = new FakeCore();
    f.connect({ clientId: 'p', protocolVersion: 5 }).send(pub('jobs/r', 'kept', { retain: true }));
    const [m] = group(f, 1);
    assert.equal(m!.take(3).length, 0);
  });
});
