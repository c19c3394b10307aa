// The hand-over of a persistent session between cluster nodes (src/cluster/handover.ts) on a fake host and a
// fake clock: what the old node captures while the new one reads the session, hands on once it serves it and
// for GRACE_MS after, drops after that or after RESTORE_TIMEOUT_MS; a client that comes back; and the new
// node's check that a handed-on message did not reach the session directly already.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import type { MessageId } from '../../src/cluster/forward-codec.js';
import { GRACE_MS, Handover, RESTORE_TIMEOUT_MS, type HandoverHost } from '../../src/cluster/handover.js';

const msg = (n: number): Message => ({ topic: 't', payload: Buffer.from(String(n)), qos: 1, retain: false });
const id = (origin: string, no: number): MessageId => ({ origin, epoch: 'e', no });

function fakeHost() {
  const events: string[] = [];
  let divert: ((m: Message) => void) | undefined;
  let observer: ((id: MessageId) => void) | undefined;
  const ids = new Map<Message, MessageId>();
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
    /** A message dispatched on this node to the leaving session, with its identity. */
    deliver(m: Message, i: MessageId) {
      ids.set(m, i);
      divert!(m);
    },
    observe: (i: MessageId) => observer?.(i),
    get observing() {
      return observer !== undefined;
    },
    advance(ms: number) {
      now += ms;
      mock.timers.tick(ms);
    },
  };
}

describe('Handover: the node a session leaves', () => {
  it('captures while the new node reads the session, hands it on in order once told, then for GRACE_MS, then drops the session', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const f = fakeHost();
      const h = new Handover(f.host);
      assert.equal(h.leave('s', 'b', 7), true);
      f.deliver(msg(1), id('c', 1));
      f.deliver(msg(2), id('c', 2));
      assert.deepEqual(f.events, ['leave s'], 'nothing handed on before the new node serves it');
      h.restored('s', 'x', 7); // another node: ignored
      h.restored('s', 'b', 6); // an older claim: ignored
      assert.equal(f.events.length, 1);
      h.restored('s', 'b', 7);
      assert.deepEqual(f.events.slice(1), ['relay b s 1 c/1', 'relay b s 2 c/2']);
      f.deliver(msg(3), id('a', 9)); // publishers that had not seen b's routes yet
      assert.equal(f.events.at(-1), 'relay b s 3 a/9', 'handed on at once during the grace');
      f.advance(GRACE_MS - 1);
      assert.equal(h.isLeaving('s'), true);
      f.advance(1);
      assert.equal(f.events.at(-1), 'drop s');
      assert.equal(h.isLeaving('s'), false);
      assert.deepEqual(h.stats, { left: 1, arrived: 0, handedOn: 3, lost: 0 });
    } finally {
      mock.timers.reset();
    }
  });

  it('a new node that never says it serves the session: dropped after RESTORE_TIMEOUT_MS, with a warning and the loss counted', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.leave('s', 'b', 1);
      f.deliver(msg(1), id('c', 1));
      f.advance(RESTORE_TIMEOUT_MS);
      assert.match(f.events.join('\n'), /did not say it serves it/);
      assert.equal(f.events.at(-1), 'drop s');
      assert.equal(h.stats.lost, 1);
      h.restored('s', 'b', 1); // too late: nothing happens
      assert.equal(f.events.at(-1), 'drop s');
    } finally {
      mock.timers.reset();
    }
  });

  it('no session here (a client without one): nothing to hand over', () => {
    const f = fakeHost();
    const h = new Handover(f.host);
    assert.equal(h.leave('none', 'b', 1), false);
    assert.equal(h.isLeaving('none'), false);
  });

  it('its client comes back here before it is gone: nothing more goes to the other node, what came meanwhile is delivered here once served again', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.leave('s', 'b', 1);
      h.restored('s', 'b', 1);
      assert.equal(h.comeBack('s'), true);
      f.deliver(msg(5), id('c', 5));
      f.advance(RESTORE_TIMEOUT_MS - 1);
      assert.ok(!f.events.some((e) => e.startsWith('relay') || e.startsWith('drop')), 'kept here, not handed on, not dropped');
      h.returned('s', true);
      assert.equal(f.events.at(-1), 'deliver s 5');
      assert.equal(h.isLeaving('s'), false);
      assert.equal(h.comeBack('s'), false);
      f.advance(RESTORE_TIMEOUT_MS);
      assert.notEqual(f.events.at(-1), 'drop s', 'the session read back is not dropped later');
      // A read that never ends: the copy here stops collecting after RESTORE_TIMEOUT_MS.
      h.leave('s', 'b', 2);
      h.comeBack('s');
      f.advance(RESTORE_TIMEOUT_MS);
      assert.equal(f.events.at(-1), 'drop s');
    } finally {
      mock.timers.reset();
    }
  });
});

describe('Handover: the node a session arrives at', () => {
  it('tells the old node, watches the identities it delivers itself, and drops a handed-on copy of one the session had already', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
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
      assert.deepEqual(h.state, { leaving: 0, arrived: 0, seen: 0 });
    } finally {
      mock.timers.reset();
    }
  });

  it('a session that came back: what was kept for it is remembered as delivered after its arrival (the other node\'s copies are dropped)', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const f = fakeHost();
      const h = new Handover(f.host);
      h.leave('s', 'b', 1);
      h.comeBack('s');
      f.deliver(msg(8), id('c', 8));
      h.arrivedHere('s', 'b', 2);
      h.returned('s', true);
      assert.equal(h.accept(id('c', 8), new Set(['s'])), false);
    } finally {
      mock.timers.reset();
    }
  });
});
