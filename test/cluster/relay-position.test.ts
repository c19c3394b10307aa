// A node that hands on a message it read from its own inbox (a session leaving it, handover.ts) does not commit
// its inbox read position past that entry until the hand-on is in Redis: should it die in between, the entry is
// still after its committed position, where the session's new node (handover-replay.ts) reads it. On a fake
// Redis: the reader answers one XREAD, the XADDs wait until the test lets them through.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { it } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import { encodeForward } from '../../src/cluster/forward-codec.js';
import { Forwarder, type PositionWriter, type RedisCaller } from '../../src/cluster/forwarder.js';

const msg = (text: string): Message => ({ topic: 't', payload: Buffer.from(text), qos: 1, retain: false });

/** An inbox entry from node `origin`: its `seq`-th batch, one message. */
function entry(id: string, origin: string, seq: number, m: Message): [Buffer, Buffer[]] {
  const fields = ['o', origin, 'e', 'epoch1', 's', String(seq), 'd'].map((f) => Buffer.from(f));
  return [Buffer.from(id), [...fields, encodeForward(m, seq, true, undefined, Date.now())]];
}

it('the read position committed with the sessions stays before an entry whose message was handed on, until Redis has the hand-on', async () => {
  const xadds: (() => void)[] = [];
  const redis: RedisCaller = {
    call: () => Promise.resolve(null),
    callBuffer: (command) => (command === 'XADD' ? new Promise((resolve) => xadds.push(() => resolve('1-1'))) : Promise.resolve(null)),
  };
  let forwarder: Forwarder | undefined;
  const deliver = (m: Message) => {
    // The session this message is for is leaving: what it gets is handed on at once (Handover.capture).
    if (m.payload.toString() === 'leaving') forwarder!.relay('b', m, forwarder!.identityOf(m), ['s']);
  };
  forwarder = new Forwarder('a', 'p', 1000, () => Date.now(), deliver, () => {});
  forwarder.connect(redis);
  const writer: PositionWriter = { extraCommands: undefined, add: () => {}, afterCommit: () => {} };
  forwarder.commitPositionWith(writer, 'p:inboxpos:a');
  const commit = () => writer.extraCommands!();

  let reads = 0;
  const reader: RedisCaller = {
    call: () => Promise.resolve(null),
    callBuffer: () => {
      if (reads++ > 0) return new Promise(() => {}); // blocks as XREAD BLOCK does
      return Promise.resolve([[Buffer.from('p:inbox:a'), [entry('5-0', 'c', 1, msg('other')), entry('6-0', 'c', 2, msg('leaving'))]]]);
    },
  };
  forwarder.lastId = '4-0';
  void forwarder.readLoop(reader, () => {});
  while (forwarder.lastId !== '6-0') await new Promise((r) => setImmediate(r));
  assert.deepEqual(commit(), [['set', 'p:inboxpos:a', '5-0']], 'up to the entry before the one handed on');
  await new Promise((r) => setImmediate(r)); // the flush: the XADD goes
  assert.equal(xadds.length, 1);
  assert.deepEqual(commit(), [], 'unchanged while the XADD waits');
  xadds[0]!();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(commit(), [['set', 'p:inboxpos:a', '6-0']], 'past it once Redis has the hand-on');
  forwarder.close();
});
