// The per-second budget of connection log lines, on explicit times (sans-I/O).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LogThrottle } from '../../src/broker/log-throttle.js';

describe('connection log line budget', () => {
  it('writes the first N lines of a one-second window, counts the rest, and reports the count before the next window', () => {
    const reports: number[] = [];
    const t = new LogThrottle(3, (n) => reports.push(n));
    const admitted = [0, 10, 20, 30, 40, 999].map((now) => t.admit(now));
    assert.deepEqual(admitted, [true, true, true, false, false, false]);
    assert.deepEqual(reports, [], 'nothing reported while the window lasts');
    assert.equal(t.admit(1000), true, 'a new window starts 1000 ms after the first line');
    assert.deepEqual(reports, [3], 'the count of the closed window comes before the new line');
  });

  it('the timer closes a window that has ended, once, and a quiet window reports nothing', () => {
    const reports: number[] = [];
    const t = new LogThrottle(1, (n) => reports.push(n));
    t.admit(0);
    t.admit(1);
    t.admit(2);
    t.tick(500);
    assert.deepEqual(reports, [], 'not before the window ends');
    t.tick(1000);
    t.tick(1250);
    assert.deepEqual(reports, [2], 'reported once');
    assert.equal(t.admit(1300), true, 'the next line opens a new window');
    t.tick(2400);
    assert.deepEqual(reports, [2], 'no line was left out of the second window');
  });

  it('0 writes every line', () => {
    const reports: number[] = [];
    const t = new LogThrottle(0, (n) => reports.push(n));
    for (let i = 0; i < 1000; i++) assert.equal(t.admit(i), true);
    t.tick(5000);
    assert.deepEqual(reports, []);
  });
});
