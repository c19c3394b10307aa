// A node that hands on a message it read from its own inbox (a session leaving it, handover.ts) commits two
// positions with its sessions: the read position (every entry up to it has its effects on this node's sessions
// in Redis: what the survivor that adopts them replays after) and, per leaving session, the entry before the
// first whose hand-on is not yet in Redis (what the session's new node replays after, handover-replay.ts). On a
// fake Redis: the reader answers XREADs the test gives it, the XADDs wait until the test lets them through.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { it } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import { encodeForward } from '../../src/cluster/forward-codec.js';
import { Forwarder, type PositionWriter, type RedisCaller } from '../../src/cluster/forwarder.js';
import { replayForSession } from '../../src/cluster/handover-replay.js';
import { compareIds, replayInbox } from '../../src/cluster/inbox-replay.js';

type Entry = [Buffer, Buffer[]];
type Command = (string | number | Buffer)[];

const msg = (text: string): Message => ({ topic: 't', payload: Buffer.from(text), qos: 1, retain: false });
const keys = { effects: 'p:inboxpos:a', handOn: 'p:inboxhandon:a' };
const INBOX = 'p:inbox:a';

/** An inbox entry from node `origin`: its `seq`-th batch, one message (sent to this node's subscriptions). */
function entry(id: string, origin: string, seq: number, m: Message): Entry {
  const fields = ['o', origin, 'e', 'epoch1', 's', String(seq), 'd'].map((f) => Buffer.from(f));
  return [Buffer.from(id), [...fields, encodeForward(m, seq, true, undefined, Date.now())]];
}

/**
 * Node A's forwarder: the sessions in `leaving` (s1 at first) are leaving (what they are delivered is handed on
 * to node b at once), session `s2`, unless leaving, queues what it is delivered (in the next commit). Its reader
 * gets the entries read() is given.
 */
function nodeA(leaving = ['s1']) {
  const xadds: (() => void)[] = [];
  const redis: RedisCaller = {
    call: () => Promise.resolve(null),
    callBuffer: (command) => (command === 'XADD' ? new Promise((resolve) => xadds.push(() => resolve('1-1'))) : Promise.resolve(null)),
  };
  const queued: string[] = [];
  let forwarder: Forwarder | undefined;
  const deliver = (m: Message) => {
    if (!leaving.includes('s2')) queued.push(m.payload.toString());
    forwarder!.relay('b', m, forwarder!.identityOf(m), [...leaving]);
  };
  forwarder = new Forwarder('a', 'p', 1000, () => Date.now(), deliver, () => {});
  forwarder.connect(redis);
  const writer: PositionWriter = { extraCommands: undefined, add: () => {}, afterCommit: () => {} };
  forwarder.commitPositionWith(writer, keys);
  const reads: ((entries: Entry[]) => void)[] = [];
  const reader: RedisCaller = {
    call: () => Promise.resolve(null),
    // As XREAD BLOCK: answers once the test gives entries.
    callBuffer: () => new Promise((resolve) => reads.push((entries) => resolve([[Buffer.from(INBOX), entries]]))),
  };
  forwarder.lastId = '4-0';
  void forwarder.readLoop(reader, () => {});
  const turn = () => new Promise((r) => setImmediate(r));
  return {
    forwarder,
    xadds,
    /** What s2's next commit holds: its queued messages, and the position commands. */
    commit: () => ({ queued: queued.splice(0), commands: writer.extraCommands!() }),
    async read(...entries: Entry[]) {
      while (reads.length === 0) await turn();
      reads.shift()!(entries);
      const last = entries.at(-1)![0].toString();
      while (forwarder.lastId !== last) await turn();
      await turn(); // the flush: the XADDs go
    },
    async land(i: number) {
      xadds[i]!();
      await turn();
    },
  };
}

it('the read position goes on with what was read; the hand-on position of a leaving session stays before an entry handed on for it until Redis has the hand-on', async () => {
  const a = nodeA();
  await a.read(entry('5-0', 'c', 1, msg('1')), entry('6-0', 'c', 2, msg('2')));
  assert.equal(a.xadds.length, 1, 'one flush: one XADD');
  assert.deepEqual(a.commit().commands, [
    ['set', keys.effects, '6-0'],
    ['hset', keys.handOn, 's1', '4-0'],
    ['pexpire', keys.handOn, 600_000],
  ]);
  assert.deepEqual(a.commit().commands, [], 'unchanged while the XADD waits');
  await a.read(entry('7-0', 'c', 3, msg('3')));
  assert.deepEqual(a.commit().commands, [['set', keys.effects, '7-0']], 'the read position goes on; s1 stays before its first hand-on not in Redis');
  await a.land(0);
  assert.deepEqual(a.commit().commands, [['hset', keys.handOn, 's1', '6-0'], ['pexpire', keys.handOn, 600_000]], 'then before the next one');
  await a.land(1);
  assert.deepEqual(a.commit().commands, [['hdel', keys.handOn, 's1']], 'every hand-on in Redis: the session replays from the read position');
  a.forwarder.close();
});

/** What A's commits hold goes to `redis`, and the messages queued for s2 to `s2`. */
function commitTo(a: ReturnType<typeof nodeA>, redis: ReturnType<typeof fakeRedis>, s2: string[]): () => void {
  return () => {
    const { queued, commands } = a.commit();
    s2.push(...queued);
    commands.forEach(redis.apply);
  };
}

/** A Redis with strings, hashes and one stream, as much as the replays and the position commands use. */
function fakeRedis(stream: Entry[]) {
  const strings = new Map<string, string>();
  const hashes = new Map<string, Map<string, string>>();
  const apply = (command: Command) => {
    const [name, key, ...args] = command.map(String) as [string, string, ...string[]];
    const hash = hashes.get(key) ?? new Map<string, string>();
    if (name === 'set') strings.set(key, args[0]!);
    else if (name === 'del') hashes.delete(key);
    else if (name === 'hdel') for (const field of args) hash.delete(field);
    else if (name === 'hset') for (let i = 0; i < args.length; i += 2) hashes.set(key, hash.set(args[i]!, args[i + 1]!));
  };
  const range = (start: string, end: string, count: number) =>
    stream.filter(([id]) => compareIds(id.toString(), start) >= 0 && (end === '+' || compareIds(id.toString(), end) <= 0)).slice(0, count);
  const redis: RedisCaller = {
    call: (command, ...args) => {
      const [key, field] = args.map(String) as [string, string];
      if (command === 'GET') return Promise.resolve(strings.get(key) ?? null);
      if (command === 'HGET') return Promise.resolve(hashes.get(key)?.get(field) ?? null);
      if (command === 'XREVRANGE') return Promise.resolve(stream.slice(-1).map(([id, fields]) => [id.toString(), fields]));
      throw new Error(`fake redis: ${command}`);
    },
    callBuffer: (command, _key, start, end, _count, count) => {
      if (command !== 'XRANGE') throw new Error(`fake redis: ${command}`);
      return Promise.resolve(range(String(start), String(end), Number(count)));
    },
  };
  return { redis, apply };
}

it('node A SIGKILLed after a commit and before a hand-on reached Redis: the adopter replays nothing its sessions have committed, the leaving session\'s new node replays what was not handed on [MQTT-4.3.3-2]', async () => {
  const stream = [entry('5-0', 'c', 1, msg('1')), entry('6-0', 'c', 2, msg('2'))];
  const a = nodeA();
  const redis = fakeRedis(stream);
  const s2: string[] = [];
  const commit = commitTo(a, redis, s2);
  await a.read(stream[0]!);
  await a.land(0); // message 1 handed on to b for s1
  commit();
  await a.read(stream[1]!);
  commit(); // message 2 queued for s2 in Redis; its hand-on to b is not
  a.forwarder.close(); // A dies here

  // The survivor that adopts s2 (adoption.ts) replays A's inbox after its committed read position.
  const replayedForS2: string[] = [];
  const after = ((await redis.redis.call('GET', keys.effects)) as string | null) ?? '0-0';
  await replayInbox({ redis: redis.redis, key: INBOX, after, restore: () => ['s2'], deliver: (m) => replayedForS2.push(m.payload.toString()), warn: () => {} });
  assert.deepEqual([...s2, ...replayedForS2], ['1', '2'], 's2 gets each message once: none replayed that its queue holds');

  // Node b, where s1 went, replays A's inbox for s1 (handover-replay.ts): message 2 never reached it.
  const forS1 = await replayForSession({ redis: redis.redis, inboxKey: INBOX, positionKey: keys.effects, handOnKey: keys.handOn, clientId: 's1', settle: () => Promise.resolve(), warn: () => {} });
  assert.deepEqual(
    forS1.map((c) => c.message.payload.toString()),
    ['2'],
    's1 gets what was not handed on (what was, b drops by identity)',
  );
});

it('two sessions leave one after the other and A dies before handing on: the new node replays for each from its own hand-on position, not from the other\'s older one [MQTT-4.3.3-2]', async () => {
  const stream = [entry('5-0', 'c', 1, msg('1')), entry('6-0', 'c', 2, msg('2'))];
  const leaving = ['s1'];
  const a = nodeA(leaving);
  const redis = fakeRedis(stream);
  const s2: string[] = [];
  const commit = commitTo(a, redis, s2);
  await a.read(stream[0]!); // message 1: handed on for s1 (not in Redis), queued for s2
  commit();
  leaving.push('s2'); // s2 leaves too
  await a.read(stream[1]!); // message 2: handed on for both (not in Redis)
  commit();
  a.forwarder.close(); // A dies here
  const replay = async (clientId: string) =>
    (await replayForSession({ redis: redis.redis, inboxKey: INBOX, positionKey: keys.effects, handOnKey: keys.handOn, clientId, settle: () => Promise.resolve(), warn: () => {} })).map((c) => c.message.payload.toString());
  assert.deepEqual(await replay('s1'), ['1', '2'], 's1: both were only handed on');
  assert.deepEqual([...s2, ...(await replay('s2'))], ['1', '2'], 's2: message 1 is in its queue (maybe delivered since), only message 2 is replayed');
});
