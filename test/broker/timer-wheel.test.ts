// The timer wheel behind the core's connect timeouts, keep alives and session expiries.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NOT_DUE, TimerWheel, type Timed } from '../../src/broker/timer-wheel.js';

interface Item extends Timed {
  name: string;
}
const item = (name: string): Item => ({ name, dueSlot: NOT_DUE });

function expire(wheel: TimerWheel<Item>, now: number, also?: (i: Item) => void): string[] {
  const out: string[] = [];
  wheel.expire(now, (i) => {
    out.push(i.name);
    also?.(i);
  });
  return out;
}

describe('TimerWheel', () => {
  it('hands an item out at the first expire() at or after its time, earliest first, once', () => {
    const w = new TimerWheel<Item>(100, 0);
    const [a, b, c] = [item('a'), item('b'), item('c')];
    w.schedule(c, 1_000);
    w.schedule(a, 250);
    w.schedule(b, 300);
    assert.deepEqual(expire(w, 299), [], 'a is due at 250, filed in the slot ending at 300');
    assert.deepEqual(expire(w, 300), ['a', 'b']);
    assert.deepEqual(expire(w, 999), []);
    assert.deepEqual(expire(w, 5_000), ['c']);
    assert.deepEqual(expire(w, 6_000), []);
    assert.equal(w.size, 0);
  });

  it('an item stays filed under its earliest time (filed for later, it is handed out early); a cancelled one is never handed out', () => {
    const w = new TimerWheel<Item>(100, 0);
    const [later, earlier, gone] = [item('later'), item('earlier'), item('gone')];
    w.schedule(later, 200);
    w.schedule(later, 700); // the owner will be told at 200 and file 700 then
    w.schedule(earlier, 900);
    w.schedule(earlier, 400);
    w.schedule(gone, 300);
    w.cancel(gone);
    assert.deepEqual(expire(w, 250, (i) => w.schedule(i, 700)), ['later']);
    assert.deepEqual(expire(w, 500), ['earlier'], 'filed again for earlier: handed out then, and not at 900');
    assert.deepEqual(expire(w, 1_000), ['later']);
    assert.equal(w.size, 0);
  });

  it('a time already passed is handed out by the next expire(), also when filed from inside expire()', () => {
    const w = new TimerWheel<Item>(100, 10_000);
    const a = item('a');
    w.schedule(a, 0);
    let again = 0;
    // Filed again from its own callback, for a time that has passed: next expire(), not this one (no loop).
    assert.deepEqual(expire(w, 10_100, (i) => again++ < 1 && w.schedule(i, 0)), ['a']);
    assert.deepEqual(expire(w, 10_100), [], 'the same time again: nothing new is due');
    assert.deepEqual(expire(w, 10_200), ['a']);
  });

  it('an item cancelled by the callback of another item of the same slot is not handed out', () => {
    const w = new TimerWheel<Item>(100, 0);
    const a = item('a');
    const b = item('b');
    w.schedule(a, 150);
    w.schedule(b, 150);
    // Whichever comes first cancels the other (a channel closing another, say): one is handed out, not both.
    assert.equal(expire(w, 200, (i) => w.cancel(i === a ? b : a)).length, 1);
    assert.equal(w.size, 0);
  });

  it('a clock jump far beyond the filed slots hands out everything due, in order', () => {
    const w = new TimerWheel<Item>(100, 0);
    const names = ['d', 'b', 'a', 'c'];
    const times = [86_400_000, 3_600_000, 1_000, 50_000];
    names.forEach((n, i) => w.schedule(item(n), times[i]!));
    assert.deepEqual(expire(w, 4_000_000), ['a', 'c', 'b']);
    assert.deepEqual(expire(w, 100_000_000), ['d']);
  });

  it('matches a plain list of deadlines on random schedules, cancels and clock steps', () => {
    const slot = 100;
    const op = fc.oneof(
      fc.record({ kind: fc.constant('schedule' as const), item: fc.integer({ min: 0, max: 7 }), delay: fc.integer({ min: -500, max: 3_000 }) }),
      fc.record({ kind: fc.constant('cancel' as const), item: fc.integer({ min: 0, max: 7 }) }),
      // Steps small (slot by slot) and large (the jump), as a fake clock and a suspended machine make them.
      fc.record({ kind: fc.constant('advance' as const), by: fc.oneof(fc.integer({ min: 0, max: 250 }), fc.integer({ min: 1_000, max: 100_000 })) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000 }), fc.array(op, { maxLength: 120 }), (start, ops) => {
        let now = start;
        const w = new TimerWheel<Item>(slot, now);
        const items = Array.from({ length: 8 }, (_, i) => item(`i${i}`));
        /** The model: each item's deadline, or none. */
        const deadline = new Map<Item, number>();
        // What the wheel promises: an item is handed out by the first expire() whose slot has reached its
        // earliest pending deadline's (rounded up), and never by the expire() that was running or done when
        // it was filed.
        let lastExpired = Math.floor(now / slot);
        for (const o of ops) {
          if (o.kind === 'schedule') {
            const at = now + o.delay;
            w.schedule(items[o.item]!, at);
            // Filed for the earlier of its current time and the new one.
            const wanted = Math.max(Math.ceil(at / slot), lastExpired + 1);
            const filed = deadline.get(items[o.item]!);
            deadline.set(items[o.item]!, filed === undefined ? wanted : Math.min(filed, wanted));
          } else if (o.kind === 'cancel') {
            w.cancel(items[o.item]!);
            deadline.delete(items[o.item]!);
          } else {
            now += o.by;
            const current = Math.floor(now / slot);
            const due = [...deadline].filter(([, s]) => s <= current).sort((x, y) => x[1] - y[1]);
            const got: Item[] = [];
            w.expire(now, (i) => got.push(i));
            // Same items; in slot order (items of one slot in any order).
            assert.deepEqual(got.map((i) => i.name).sort(), due.map(([i]) => i.name).sort());
            const slots = got.map((i) => deadline.get(i)!);
            assert.deepEqual(slots, [...slots].sort((x, y) => x - y), 'earliest slot first');
            for (const [i] of due) deadline.delete(i);
            if (current > lastExpired) lastExpired = current;
          }
          // One entry per pending item: cancelled and re-filed items leave nothing behind.
          assert.equal(w.size, deadline.size, 'entries filed');
        }
      }),
      { numRuns: 500 },
    );
  });
});
