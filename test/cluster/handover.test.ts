// The hand-over of a persistent session between cluster nodes (src/cluster/handover.ts) on a fake host and a
// fake clock: what the old node captures while the new one reads the session, hands on once it serves it and
// for GRACE_MS after, drops after that or after RESTORE_TIMEOUT_MS; a client that comes back; and the new
// node's check that a handed-on message did not reach the session directly already.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import { identityKey, type MessageId } from '../../src/cluster/forward-codec.js';
import { GRACE_MS, Handover, PENDINGS_WAIT_MS, RESTORE_TIMEOUT_MS, type Captured, type HandoverHost } from '../../src/cluster/handover.js';

const msg = (n: number): Message => ({ topic: 't', payload: Buffer.from(String(n)), qos: 1, retain: false });
const id = (origin: string, no: number): MessageId => ({ origin, epoch: 'e', no });

/** Runs `test` with setTimeout on node:test's fake clock (moved by the fake host's advance()), the real one after. */
async function withClock(test: () => void | Promise<void>): Promise<void> {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    await test();
  } finally {
    mock.timers.reset();
  }
}

function fakeHost() {
  const events: string[] = [];
  let divert: ((m: Message) => void) | undefined;
  let observer: ((id: MessageId) => void) | undefined;
  let held: ((m: Message) => void) | undefined;
  let settling: (() => void)[] | undefined;
  const ids = new Map<Message, MessageId>();
  /** Sessions not here (has() says false), and what replay() gives. */
  const absent = new Set<string>();
  let replayed: Captured[] = [];
  let now = 0;
  const host: HandoverHost = {
    leave: (clientId, d) => {
      if (clientId === 'none') return false;
      divert = d;
      events.push(`leave ${clientId}`);
      return true;
    },
    drop: (clientId) => events.push(`drop ${clientId}`),
    deliverTo: (clientId, m) => events.push(`deliver ${clientId} ${m.payload}`),
    identityOf: (m) => ids.get(m) ?? id('x', 0),
    relay: (node, m, i, clientId) => (events.push(`relay ${node} ${clientId} ${m.payload} ${i.origin}/${i.no}`), true),
    relayEnd: (node, clientId) => events.push(`end ${node} ${clientId}`),
    settle: (done) => (settling ? settling.push(done) : done()),
    has: (clientId) => !absent.has(clientId),
    replay: (node, clientId) => (events.push(`replay ${node} ${clientId}`), Promise.resolve(replayed)),
    hold: (clientId, d) => {
      if (clientId === 'none') return false;
      held = d;
      events.push(d === undefined ? `release ${clientId}` : `hold ${clientId}`);
      return true;
    },
    sendRestored: (node, epoch, clientId) => events.push(`restored ${node} ${epoch} ${clientId}`),
    observe: (on) => (observer = on),
    setTimer: (fn, ms) => {
      const t = setTimeout(fn, ms);
      return () => clearTimeout(t);
    },
    now: () => now,
    warn: (m) => events.push(`warn ${m}`),
  };
  return {
    host,
    events,
    absent,
    /** What the old node's inbox holds for the session (host.replay). */
    set replayed(list: Captured[]) {
      replayed = list;
    },
    /** A message dispatched on this node to the leaving session, with its identity. */
    deliver(m: Message, i: MessageId) {
      ids.set(m, i);
      divert!(m);
    },
    observe: (i: MessageId) => observer?.(i),
    /** A message dispatched on this node to an arrived session (held back or not). */
    arrive(m: Message, i?: MessageId) {
      if (i !== undefined) ids.set(m, i);
      if (held !== undefined) held(m);
      else events.push(`deliver-direct ${m.payload}`);
    },
    get observing() {
      return observer !== undefined;
    },
    /** From now on settle() waits until settled(). */
    holdSettle() {
      settling = [];
    },
    settled() {
      const waiting = settling ?? [];
      settling = undefined;
      for (const done of waiting) done();
    },
    advance(ms: number) {
      now += ms;
      mock.timers.tick(ms);
    },
  };
}

describe('Handover: the node a session leaves', () => {
  it('hands on at once what it is delivered (nothing kept in memory only), sends the end marker once told and settled, goes on for GRACE_MS, then drops the session', () =>
    withClock(() => {
      const f = fakeHost();
      const h = new Handover(f.host);
      assert.equal(h.leave('s', 'b', 7), true);
      f.deliver(msg(1), id('c', 1));
      f.deliver(msg(2), id('c', 2));
      assert.deepEqual(f.events, ['leave s', 'relay b s 1 c/1', 'relay b s 2 c/2'], 'handed on in the turn they came (their PUBACKs wait for the relay), in order');
      h.restored('s', 'x', 7); // another node: it is told not to wait
      h.restored('s', 'b', 6); // an older claim: likewise
      assert.deepEqual(f.events.slice(3), ['end x s', 'end b s']);
      h.restored('s', 'b', 7);
      assert.deepEqual(f.events.slice(5), ['end b s'], 'then the end marker');
      h.restored('s', 'b', 7); // said again: the marker again (the new node need not wait), nothing else
      f.deliver(msg(3), id('a', 9)); // publishers that had not seen b's routes yet
      assert.equal(f.events.at(-1), 'relay b s 3 a/9', 'handed on at once during the grace');
      f.advance(GRACE_MS - 1);
      assert.equal(h.isLeaving('s'), true);
      f.advance(1);
      assert.equal(f.events.at(-1), 'drop s');
      assert.equal(h.isLeaving('s'), false);
      assert.deepEqual(h.stats, { left: 1, arrived: 0, handedOn: 3, lost: 0, replayed: 0 });
    }));

  it('told the new node serves it, it first reads what was sent to it before (settle) and hands that on, then the end marker', () => {
    const f = fakeHost();
    const h = new Handover(f.host);
    h.leave('s', 'b', 3);
    f.deliver(msg(1), id('c', 1));
    f.holdSettle();
    h.restored('s', 'b', 3);
    h.restored('s', 'b', 3); // said twice: settled once
    f.deliver(msg(2), id('c', 2)); // sent here before c saw b's routes, read now
    assert.deepEqual(f.events, ['leave s', 'relay b s 1 c/1', 'relay b s 2 c/2'], 'no end marker while reading');
    f.settled();
    assert.deepEqual(f.events.slice(3), ['end b s']);
    h.close();
  });

  it('a new node that never says it serves the session: dropped after RESTORE_TIMEOUT_MS with a warning (what came was handed on already)', () =>
    withClock(() => {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.leave('s', 'b', 1);
      f.deliver(msg(1), id('c', 1));
      f.advance(RESTORE_TIMEOUT_MS);
      assert.match(f.events.join('\n'), /did not say it serves it/);
      assert.equal(f.events.at(-1), 'drop s');
      assert.equal(h.stats.lost, 0);
      assert.equal(h.stats.handedOn, 1);
      h.restored('s', 'b', 1); // too late: only the marker
      assert.equal(f.events.at(-1), 'end b s');
    }));

  it('a relay the forwarder refuses (its buffer full) is counted lost', () => {
    const f = fakeHost();
    const h = new Handover({ ...f.host, relay: () => false });
    h.leave('s', 'b', 1);
    f.deliver(msg(1), id('c', 1));
    assert.deepEqual([h.stats.handedOn, h.stats.lost], [0, 1]);
    h.close();
  });

  it('no session here (a client without one): nothing to hand over', () => {
    const f = fakeHost();
    const h = new Handover(f.host);
    assert.equal(h.leave('none', 'b', 1), false);
    assert.equal(h.isLeaving('none'), false);
  });

  it('its client comes back here before it is gone: nothing more goes to the other node, what came meanwhile is delivered here once served again', () =>
    withClock(() => {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.leave('s', 'b', 1);
      h.restored('s', 'b', 1);
      assert.equal(h.comeBack('s'), true);
      f.deliver(msg(5), id('c', 5));
      f.advance(RESTORE_TIMEOUT_MS - 1);
      assert.ok(!f.events.some((e) => e.startsWith('relay') || e.startsWith('drop')), 'kept here, not handed on, not dropped');
      assert.deepEqual(h.returned('s').map((m) => m.payload.toString()), ['5'], 'what came meanwhile, for the session read back');
      assert.equal(h.isLeaving('s'), false);
      assert.equal(h.comeBack('s'), false);
      f.advance(RESTORE_TIMEOUT_MS);
      assert.notEqual(f.events.at(-1), 'drop s', 'the session read back is not dropped later');
      // A read that never ends: the copy here stops collecting after RESTORE_TIMEOUT_MS.
      h.leave('s', 'b', 2);
      h.comeBack('s');
      f.advance(RESTORE_TIMEOUT_MS);
      assert.equal(f.events.at(-1), 'drop s');
    }));

  it('its client comes back: a kept copy of a message the session read back holds already (queued by the other node, identity stored with it) is dropped', () =>
    withClock(() => {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.leave('s', 'b', 1);
      h.restored('s', 'b', 1);
      h.comeBack('s');
      f.deliver(msg(5), id('c', 5));
      f.deliver(msg(6), id('c', 6));
      // The other node queued c/5 for the session before it moved back: its record in Redis carries the identity.
      assert.deepEqual(
        h.returned('s', new Set([identityKey(id('c', 5))])).map((m) => m.payload.toString()),
        ['6'],
      );
    }));
});

describe('Handover: the node a session arrives at', () => {
  it('tells the old node, watches the identities it delivers itself, and drops a handed-on copy of one the session had already', () =>
    withClock(() => {
      const f = fakeHost();
      const h = new Handover(f.host);
      f.observe(id('c', 1)); // not watched yet: no session arrived
      assert.equal(f.observing, false);
      h.arrivedHere('s', 'a', 4);
      assert.deepEqual(f.events, ['restored a 4 s']);
      assert.equal(f.observing, true);
      f.observe(id('c', 2)); // reached this node directly after the session arrived
      const only = new Set(['s']);
      assert.equal(h.accept(id('c', 2), only), false, 'the session had it: the copy handed on is dropped');
      assert.equal(h.accept(id('c', 1), only), true, 'before it arrived: delivered');
      assert.equal(h.accept(id('c', 3), only), true, 'never seen here: delivered');
      assert.equal(h.accept(id('c', 2), new Set(['other'])), true, 'for a session that did not arrive here lately');
      // Watched until GRACE_MS + RESTORE_TIMEOUT_MS after the arrival, then forgotten.
      f.advance(GRACE_MS + RESTORE_TIMEOUT_MS + GRACE_MS);
      assert.equal(f.observing, false);
      assert.deepEqual(h.state, { leaving: 0, arrived: 0, seen: 0, kept: 0 });
    }));

  it('holds back what reaches the session directly until the old node\'s end marker: its handed-on messages go first, then the held ones, in order', () =>
    withClock(async () => {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.arrivedHere('s', 'a', 1);
      let done = false;
      const waiting = h.pendingsFrom('s', 'a').then(() => (done = true));
      f.arrive(msg(10)); // direct, newer
      const relayed = msg(3);
      assert.equal(h.accept(id('c', 3), new Set(['s']), relayed), true);
      f.arrive(relayed); // delivered now, as the forwarder does after accept()
      f.arrive(msg(11));
      h.relayEnd('x', new Set(['s'])); // not from the old node
      await Promise.resolve();
      assert.equal(done, false);
      h.relayEnd('a', new Set(['s']));
      await waiting;
      assert.deepEqual(f.events.filter((e) => e.startsWith('deliver') || e.startsWith('hold') || e.startsWith('release')), ['hold s', 'release s', 'deliver s 3', 'deliver s 10', 'deliver s 11']);
      // Without an end marker: released after PENDINGS_WAIT_MS.
      const again = h.pendingsFrom('s', 'a');
      f.arrive(msg(12));
      f.advance(PENDINGS_WAIT_MS);
      await again;
      assert.equal(f.events.at(-1), 'deliver s 12');
      assert.equal(await h.pendingsFrom('none', 'a'), undefined, 'no session: nothing to wait for');
    }));

  it('a direct copy that overtakes its handed-on copy (both nodes have the routes of a session moving back and forth) is delivered where the handed-on one comes, not after the newer handed-on ones [MQTT-4.6.0-5]', () =>
    withClock(async () => {
      const f = fakeHost();
      const h = new Handover(f.host);
      const only = new Set(['s']);
      h.arrivedHere('s', 'a', 1);
      const waiting = h.pendingsFrom('s', 'a');
      const handOn = (n: number) => {
        const m = msg(n);
        assert.equal(h.accept(id('c', n), only, m, 'a'), true, `${n} handed on`);
        f.arrive(m); // delivered now, as the forwarder does after accept()
      };
      handOn(1);
      f.observe(id('c', 3));
      f.arrive(msg(3), id('c', 3)); // direct, ahead of its handed-on copy and of 2's
      f.observe(id('c', 5));
      f.arrive(msg(5), id('c', 5)); // direct; its handed-on copy never comes before the end marker
      handOn(2);
      assert.equal(h.accept(id('c', 3), only, msg(3), 'a'), false, 'the handed-on copy of 3: the direct one takes its place');
      handOn(4);
      h.relayEnd('a', only);
      await waiting;
      assert.deepEqual(f.events.filter((e) => e.startsWith('deliver')), ['deliver s 1', 'deliver s 2', 'deliver s 3', 'deliver s 4', 'deliver s 5']);
    }));

  it('a session that came back: what was kept for it goes after what the other node hands back (older) and before what comes here meanwhile; the other node\'s copies of it are dropped', () =>
    withClock(async () => {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.leave('s', 'b', 1);
      h.comeBack('s');
      f.deliver(msg(8), id('c', 8));
      h.arrivedHere('s', 'b', 2);
      const kept = h.returned('s');
      const waiting = h.pendingsFrom('s', 'b', kept);
      assert.equal(h.accept(id('c', 8), new Set(['s'])), false, 'handed back by b too: dropped');
      const older = msg(2);
      assert.equal(h.accept(id('c', 2), new Set(['s']), older), true);
      f.arrive(older);
      f.arrive(msg(9));
      h.relayEnd('b', new Set(['s']));
      await waiting;
      assert.deepEqual(f.events.filter((e) => e.startsWith('deliver')), ['deliver s 2', 'deliver s 8', 'deliver s 9']);
    }));

  it('claimed here: what the old node hands on before the session is served here is kept and goes first, then what it hands on later, then the held direct ones (a direct copy of a kept one dropped)', () =>
    withClock(async () => {
      const f = fakeHost();
      const h = new Handover(f.host);
      const only = new Set(['s']);
      h.claiming('s', 'a');
      assert.equal(h.accept(id('c', 1), only, msg(1), 'a'), 'kept');
      assert.equal(h.accept(id('c', 2), only, msg(2), 'a'), 'kept');
      assert.equal(h.state.kept, 1);
      assert.equal(f.events.length, 0, 'nothing delivered before the session is served here');
      h.arrivedHere('s', 'a', 5);
      const waiting = h.pendingsFrom('s', 'a');
      assert.equal(h.state.kept, 0);
      f.arrive(msg(10), id('c', 10)); // direct, newer
      f.arrive(msg(2), id('c', 2)); // a direct copy of one handed on: the session gets it once
      const later = msg(3);
      assert.equal(h.accept(id('c', 3), only, later, 'a'), true);
      f.arrive(later);
      h.relayEnd('a', only);
      await waiting;
      assert.deepEqual(f.events.filter((e) => e.startsWith('deliver')), ['deliver s 1', 'deliver s 2', 'deliver s 3', 'deliver s 10']);
      h.close();
    }));

  it('handed-on messages for a session not here whose claim is not known yet are kept too; never served: dropped after RESTORE_TIMEOUT_MS with a warning', () =>
    withClock(() => {
      const f = fakeHost();
      const h = new Handover(f.host);
      const only = new Set(['s']);
      assert.equal(h.accept(id('c', 1), only, msg(1), 'a'), true, 'a session here: delivered now');
      f.absent.add('s');
      assert.equal(h.accept(id('c', 2), only, msg(2), 'a'), 'kept');
      h.claiming('s', 'a'); // the claim's answer read after the relay: the same buffer
      assert.equal(h.state.kept, 1);
      f.advance(RESTORE_TIMEOUT_MS);
      assert.match(f.events.join('\n'), /never served here are dropped/);
      assert.equal(h.stats.lost, 1);
      assert.equal(h.state.kept, 0);
    }));

  it('no end marker within PENDINGS_WAIT_MS (the old node stopped or died): what its inbox holds for the session is replayed after what it handed on, skipping what the session had, then the held ones', () =>
    withClock(async () => {
      const f = fakeHost();
      const h = new Handover(f.host);
      const only = new Set(['s']);
      h.claiming('s', 'a');
      h.accept(id('c', 1), only, msg(1), 'a');
      h.arrivedHere('s', 'a', 2);
      let done = false;
      const waiting = h.pendingsFrom('s', 'a').then(() => (done = true));
      f.observe(id('c', 5)); // reached this node directly (the forwarder's observer), held
      f.arrive(msg(5), id('c', 5));
      f.replayed = [
        { message: msg(1), id: id('c', 1) }, // handed on already
        { message: msg(4), id: id('c', 4) }, // acknowledged to its publisher, never read by a
        { message: msg(5), id: id('c', 5) }, // the session had it directly
      ];
      f.advance(PENDINGS_WAIT_MS - 1);
      await Promise.resolve();
      assert.equal(done, false);
      f.advance(1);
      await waiting;
      assert.ok(f.events.includes('replay a s'));
      assert.deepEqual(f.events.filter((e) => e.startsWith('deliver')), ['deliver s 1', 'deliver s 4', 'deliver s 5']);
      assert.equal(h.stats.replayed, 1);
      assert.equal(h.accept(id('c', 4), only, msg(4), 'a'), false, 'handed on late by the old node after all: dropped');
      // The old node known dead: no wait.
      h.arrivedHere('t', 'a', 3);
      f.replayed = [{ message: msg(7), id: id('c', 7) }];
      const dead = h.pendingsFrom('t', 'a', [], 0);
      f.advance(0);
      await dead;
      assert.equal(f.events.at(-1), 'deliver t 7');
      h.close();
    }));

  it('the session leaves again while it arrives: what was kept and held for it is handed on to the next node first, in order', () =>
    withClock(async () => {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.claiming('s', 'a');
      h.accept(id('c', 1), new Set(['s']), msg(1), 'a');
      h.arrivedHere('s', 'a', 2);
      const waiting = h.pendingsFrom('s', 'a');
      f.arrive(msg(10), id('c', 10));
      assert.equal(h.leave('s', 'c', 9), true);
      await waiting;
      f.deliver(msg(11), id('c', 11));
      assert.deepEqual(f.events.filter((e) => e.startsWith('relay') || e.startsWith('deliver')), ['relay c s 1 c/1', 'relay c s 10 c/10', 'relay c s 11 c/11']);
      h.close();
    }));

  it('claimed back by this node while it leaves: what the other node hands on meanwhile is kept for the session read back, not given to the leaving copy (which would hand it back)', () => {
    const f = fakeHost();
    const h = new Handover(f.host);
    h.leave('s', 'b', 1);
    f.deliver(msg(1), id('c', 1));
    h.claiming('s', 'b');
    assert.equal(h.accept(id('c', 2), new Set(['s']), msg(2), 'b'), 'kept');
    assert.deepEqual(f.events.filter((e) => e.startsWith('relay')), ['relay b s 1 c/1']);
    h.close();
});
});
