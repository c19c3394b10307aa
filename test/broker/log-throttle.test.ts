// The per-second budget of connection log lines, on explicit times (sans-I/O).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LogThrottle } from '../../src/broker/log-throttle.js';

describe('connection log line budget', () => {
  it('writes the first N lines of a one-second window, counts the rest, and reports the count before the next window', () => {
    const t = new LogThrottle(3);
    const reports: number[] = [];
    const report = (n: number) => reports.push(n);
    const admitted = [0, 10, 20, 30, 40, 999].map((now) => t.admit(now, report));
    assert.deepEqual(admitted, [true, true, true, false, false, false]);
    assert.deepEqual(reports, [], 'nothing reported while the window lasts');
    assert.equal(t.admit(1000, report), true, 'a new window starts 1000 ms after the first line');
    assert.deepEqual(reports, [3], 'the count of the closed window comes before the new line');
  });

  it('the timer closes a window that has ended, once, and a quiet window reports nothing', () => {
    const t = new LogThrottle(1);
    const reports: number[] = [];
    const report = (n: number) => reports.push(n);
    t.admit(0, report);
    t.admit(1, report);
    t.admit(2, report);
    t.tick(500, report);
    assert.deepEqual(reports, [], 'not before the window ends');
    t.tick(1000, report);
    t.tick(1250, report);
    assert.deepEqual(reports, [2], 'reported once');
    assert.equal(t.admit(1300, report), true, 'the next line opens a new window');
    t.tick(2400, report);
    assert.deepEqual(reports, [2], 'no line was left out of the second window');
  });

  it('0 writes every line', () => {
    const t = new LogThrottle(0);
    const reports: number[] = [];
    for (let i = 0; i < 1000; i++) assert.equal(t.admit(i, (n) => reports.push(n)), true);
    t.tick(5000, (n) => reports.push(n));
    assert.deepEqual(reports, []);
  });
});
