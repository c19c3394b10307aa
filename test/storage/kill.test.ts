// kill -9 in the middle of QoS 1 and QoS 2 floods: the broker (`petrel broker` in a child process) is killed
// at a seeded random moment while several publishers publish to persistent subscribers, one connected and
// one offline, then started again on the same data directory. Every message whose acknowledgement (PUBACK,
// PUBREC) reached its publisher reaches every persistent subscriber: at least once at QoS 1, exactly once
// at QoS 2; the retained message of each topic is the last acknowledged one (or one sent after it); the
// sessions come back; the will of a connection killed with the process arrives once.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { ProtocolVersion, QoS } from '../../src/protocol/constants.js';
import type { ConnectPacket, PublishPacket } from '../../src/protocol/packets.js';
import { dataDir } from './helpers.js';
import { Peer, Receiver, startChildBroker } from '../helpers/child-broker.js';
import { seededRandom } from '../helpers/seeded.js';

const PUBLISHERS = 3;
const WINDOW = 16;

interface PublisherRecord {
  name: string;
  qos: Map<number, QoS>;
  acked: Set<number>;
  /** Sequence numbers of the retained publishes sent, and the last one acknowledged. */
  retainedSent: Set<number>;
  lastAckedRetained: number | undefined;
}

function sessionFields(version: ProtocolVersion, clientId: string): Partial<ConnectPacket> & { clientId: string } {
  return version === 5 ? { clientId, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } } : { clientId, protocolVersion: version, clean: false };
}

/** Publishes until the connection dies (the broker was killed) or `max` messages went out. */
async function flood(port: number, version: ProtocolVersion, name: string, random: () => number, max: number): Promise<PublisherRecord> {
  const record: PublisherRecord = { name, qos: new Map(), acked: new Set(), retainedSent: new Set(), lastAckedRetained: undefined };
  const { peer } = await Peer.connect(port, { clientId: name, protocolVersion: version });
  const byId = new Map<number, number>();
  let inFlight = 0;
  let next = 0;
  let wake: (() => void) | undefined;
  const ack = (packetId: number) => {
    const n = byId.get(packetId);
    if (n === undefined) return;
    record.acked.add(n);
    if (record.retainedSent.has(n) && (record.lastAckedRetained === undefined || n > record.lastAckedRetained)) record.lastAckedRetained = n;
  };
  peer.socket.on('close', () => wake?.());
  peer.onPacket = (p) => {
    if (p.type === 4) {
      ack(p.packetId);
      byId.delete(p.packetId);
      inFlight--;
    } else if (p.type === 5) {
      ack(p.packetId); // PUBREC: the broker has taken the message over
      peer.send({ type: 6, packetId: p.packetId });
    } else if (p.type === 7) {
      byId.delete(p.packetId);
      inFlight--;
    } else return;
    wake?.();
  };
  while (!peer.closed && next < max) {
    if (inFlight >= WINDOW) {
      await new Promise<void>((r) => {
        wake = r;
        if (peer.closed) r();
      });
      wake = undefined;
      continue;
    }
    const n = next++;
    const qos: QoS = random() < 0.5 ? 1 : 2;
    const retain = n % 10 === 0;
    const packetId = (n % 60000) + 1;
    record.qos.set(n, qos);
    if (retain) record.retainedSent.add(n);
    byId.set(packetId, n);
    inFlight++;
    peer.send({ type: 3, topic: retain ? `flood/${name}/r` : `flood/${name}`, payload: Buffer.from(String(n)), qos, retain, dup: false, packetId });
    if (n % 8 === 7) await new Promise((r) => setImmediate(r));
  }
  peer.destroy();
  return record;
}

async function killRun(version: ProtocolVersion, seed: number, t: TestContext): Promise<void> {
  const random = seededRandom(seed);
  const dir = dataDir(t, `petrel-kill-${version}-${seed}-`);
  // The queues hold the whole flood (the default limit, 1000, would drop the oldest: a limit, not a loss).
  const env = { PETREL_MAX_QUEUED_MESSAGES: '1000000' };
  let broker = await startChildBroker(dir, [], env);
  t.after(() => broker.kill());
  const subscribe = async (id: string): Promise<Peer> => {
    const { peer } = await Peer.connect(broker.port, sessionFields(version, id));
    const suback = new Promise<void>((r) => (peer.onPacket = (p) => p.type === 9 && r()));
    peer.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'flood/#', qos: 2 }, { topicFilter: 'will/#', qos: 1 }] });
    await suback;
    return peer;
  };
  const online = new Receiver();
  const offline = new Receiver();
  online.attach(await subscribe('sub-online'));
  const off = await subscribe('sub-offline');
  off.send({ type: 14 });
  await off.waitClosed();
  // A connection with a will, alive when the broker is killed.
  const willFields = { ...sessionFields(version, 'will-client'), will: { topic: 'will/will-client', payload: Buffer.from('gone'), qos: 1 as QoS, retain: false } };
  const { peer: willPeer } = await Peer.connect(broker.port, willFields);
  // And one whose session is not kept (clean session / expiry 0).
  const cleanWill = { clientId: 'will-clean', protocolVersion: version, clean: true, will: { topic: 'will/will-clean', payload: Buffer.from('gone too'), qos: 1 as QoS, retain: false } };
  const { peer: cleanWillPeer } = await Peer.connect(broker.port, cleanWill);

  const killAfter = 150 + Math.floor(random() * 450);
  const floods = Array.from({ length: PUBLISHERS }, (_, i) => flood(broker.port, version, `pub-${i}`, seededRandom(seed * 31 + i), 20_000));
  await new Promise((r) => setTimeout(r, killAfter));
  await broker.kill('SIGKILL');
  const records = await Promise.all(floods);
  willPeer.destroy();
  cleanWillPeer.destroy();
  const ackedTotal = records.reduce((sum, r) => sum + r.acked.size, 0);
  assert.ok(ackedTotal > 0, `some messages were acknowledged before the kill at ${killAfter} ms`);

  broker = await startChildBroker(dir, [], env);
  const loaded = broker.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('storage: sqlite'));
  assert.ok(loaded !== undefined && (loaded.sessions as number) >= 3, `the start-up line says the sessions were loaded: ${JSON.stringify(loaded)}`);
  const back = await Peer.connect(broker.port, sessionFields(version, 'sub-online'));
  assert.equal(back.connack.sessionPresent, true, 'the connected subscriber session is back');
  online.attach(back.peer);
  const backOff = await Peer.connect(broker.port, sessionFields(version, 'sub-offline'));
  assert.equal(backOff.connack.sessionPresent, true, 'the offline subscriber session is back');
  offline.attach(backOff.peer);
  await Promise.all([online.quiet(), offline.quiet()]);
  // The subscriptions are back in the index: a new message reaches both.
  const { peer: late } = await Peer.connect(broker.port, { clientId: 'late-publisher', protocolVersion: version });
  late.onPacket = () => {};
  late.send({ type: 3, topic: 'flood/late', payload: Buffer.from('after'), qos: 1, retain: false, dup: false, packetId: 1 });
  const lateDeadline = Date.now() + 5000;
  while (!(online.deliveries.has('flood/late after') && offline.deliveries.has('flood/late after')) && Date.now() < lateDeadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(online.deliveries.has('flood/late after') && offline.deliveries.has('flood/late after'), 'subscriptions restored');
  late.destroy();

  t.diagnostic(`deliveries online ${online.deliveries.size}, offline ${offline.deliveries.size}, acked ${ackedTotal}`);
  for (const [who, receiver] of [['online', online], ['offline', offline]] as const) {
    for (const r of records) {
      for (const n of r.acked) {
        const topic = r.retainedSent.has(n) ? `flood/${r.name}/r` : `flood/${r.name}`;
        const count = receiver.deliveries.get(`${topic} ${n}`) ?? 0;
        const qos = r.qos.get(n);
        if (qos === 1) assert.ok(count >= 1, `${who}: acknowledged QoS 1 message ${r.name}#${n} lost (${version}, seed ${seed})`);
        else assert.equal(count, 1, `${who}: acknowledged QoS 2 message ${r.name}#${n} delivered ${count} times (${version}, seed ${seed})`);
      }
      for (const [n, qos] of r.qos) {
        const topic = r.retainedSent.has(n) ? `flood/${r.name}/r` : `flood/${r.name}`;
        if (qos === 2) assert.ok((receiver.deliveries.get(`${topic} ${n}`) ?? 0) <= 1, `${who}: QoS 2 message ${r.name}#${n} duplicated`);
      }
    }
    assert.equal(receiver.deliveries.get('will/will-client gone'), 1, `${who}: the will of the killed connection arrives once`);
    assert.equal(receiver.deliveries.get('will/will-clean gone too'), 1, `${who}: the will of the killed clean-session connection arrives once`);
  }

  // Retained: per topic, the last acknowledged retained publish, or one sent after it.
  const { peer: reader } = await Peer.connect(broker.port, { clientId: 'retained-reader', protocolVersion: version });
  const retained = new Map<string, string>();
  reader.onPacket = (p) => p.type === 3 && retained.set((p as PublishPacket).topic, (p as PublishPacket).payload.toString());
  reader.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'flood/+/r', qos: 0 }] });
  await new Promise((r) => setTimeout(r, 300));
  for (const r of records) {
    const got = retained.get(`flood/${r.name}/r`);
    if (r.lastAckedRetained === undefined) continue;
    assert.ok(got !== undefined && Number(got) >= r.lastAckedRetained && r.retainedSent.has(Number(got)), `retained of ${r.name}: ${got}, last acknowledged ${r.lastAckedRetained}`);
  }
  reader.destroy();
  back.peer.destroy();
  backOff.peer.destroy();
  t.diagnostic(`MQTT ${version === 5 ? '5.0' : '3.1.1'} seed ${seed}: killed after ${killAfter} ms, ${ackedTotal} acknowledged messages checked`);
  await broker.kill('SIGTERM');
}

describe('storage: kill -9 during QoS 1/2 floods', () => {
  for (const [version, seed] of [[4, 1], [5, 2], [4, 3], [5, 4]] as const) {
    it(`MQTT ${version === 5 ? '5.0' : '3.1.1'}, seed ${seed}: nothing acknowledged is lost, QoS 2 exactly once, wills once`, async (t) => {
      await killRun(version, seed, t);
    });
  }
});

describe('storage: wills of connections killed with the process', () => {
  it('a will with a Will Delay is published once after the restart, after its delay; the will of a client that comes back first is not', async (t) => {
    const dir = dataDir(t, 'petrel-will-');
    let broker = await startChildBroker(dir);
    t.after(() => broker.kill());
    const withWill = (id: string) => ({
      clientId: id,
      protocolVersion: 5 as const,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
      will: { topic: `will/${id}`, payload: Buffer.from(`${id} gone`), qos: 1 as QoS, retain: false, properties: { willDelayInterval: 5 } },
    });
    const a = await Peer.connect(broker.port, withWill('comes-back'));
    const b = await Peer.connect(broker.port, withWill('stays-away'));
    await broker.kill('SIGKILL');
    a.peer.destroy();
    b.peer.destroy();

    broker = await startChildBroker(dir);
    const watcher = new Receiver();
    const { peer } = await Peer.connect(broker.port, { clientId: 'watcher', protocolVersion: 5 });
    watcher.attach(peer);
    peer.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 1 }] });
    // [MQTT-3.1.3-9] the client that returns within the delay cancels its will.
    const back = await Peer.connect(broker.port, { ...withWill('comes-back'), will: undefined });
    assert.equal(back.connack.sessionPresent, true);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(watcher.deliveries.size, 0, 'nothing before the Will Delay');
    const deadline = Date.now() + 10_000;
    while (!watcher.deliveries.has('will/stays-away stays-away gone') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual([...watcher.deliveries], [['will/stays-away stays-away gone', 1]]);
    peer.destroy();
    back.peer.destroy();
    await broker.kill('SIGTERM');
  });
});
