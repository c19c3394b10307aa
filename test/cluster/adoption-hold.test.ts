// AdoptionHold (src/cluster/adoption-hold.ts): the messages of adopted sessions that arrive both from the dead
// node's inbox and directly are kept once each and released in each origin's numbering order.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import type { Message } from '../../src/broker/message.js';
import { AdoptionHold } from '../../src/cluster/adoption-hold.js';

const msg = (topic: string): Message => ({ topic, payload: Buffer.from(topic), qos: 1, retain: false });

it('a message seen from both inboxes is released once; each origin in its number order, origins in the order first seen', () => {
  const hold = new AdoptionHold(['s']);
  const m = (o: string, no: number) => [{ origin: o, epoch: 'e', no }, msg(`${o}${no}`)] as const;
  // Direct copies of p2, p3 first, then the replay of p1..p3 (p2, p3 again), then a's messages.
  for (const [id, message] of [m('p', 2), m('p', 3), m('p', 1), m('p', 2), m('p', 3), m('a', 7), m('a', 5)]) hold.add('s', id, message);
  assert.equal(hold.duplicates, 2);
  assert.equal(hold.add('other', { origin: 'p', epoch: 'e', no: 9 }, msg('x')), false, 'a session not held');
  const [[clientId, messages]] = hold.release() as [[string, Message[]]];
  assert.equal(clientId, 's');
  assert.deepEqual(
    messages.map((x) => x.topic),
    ['p1', 'p2', 'p3', 'a5', 'a7'],
  );
  assert.equal(hold.size, 0);
});

it('numbers that wrap past 2^32 keep their order', () => {
  const hold = new AdoptionHold(['s']);
  for (const no of [1, 0xfffffffe, 0, 0xffffffff]) hold.add('s', { origin: 'p', epoch: 'e', no }, msg(String(no)));
  assert.deepEqual(
    hold.release()[0]![1].map((x) => x.topic),
    ['4294967294', '4294967295', '0', '1'],
  );
});

it('property: any interleaving of two copies of a numbered stream releases the stream once, in order', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 60 }), fc.array(fc.boolean(), { maxLength: 200 }), fc.integer({ min: 0, max: 0xffffffff }), (n, picks, start) => {
      const hold = new AdoptionHold(['s']);
      const no = (i: number) => (start + i) >>> 0;
      // Two readers of the same stream (the dead inbox and the direct one), interleaved as `picks` says.
      const cursors = [0, 0];
      let k = 0;
      while (cursors[0]! < n || cursors[1]! < n) {
        const which = cursors[0]! >= n ? 1 : cursors[1]! >= n ? 0 : picks[k++ % Math.max(1, picks.length)] ? 1 : 0;
        const i = cursors[which]!++;
        hold.add('s', { origin: 'p', epoch: 'e', no: no(i) }, msg(String(i)));
      }
      const released = hold.release()[0]![1].map((x) => Number(x.topic));
      assert.deepEqual(released, Array.from({ length: n }, (_, i) => i));
    }),
  );
});
