// The buffered log output of `petrel broker`: lines are batched, nothing is lost on a full pipe (within a
// bound), and a dead output never takes the broker down.
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { BufferedLogDestination } from '../../src/runtime/log-destination.js';

const eagain = () => Object.assign(new Error('EAGAIN: resource temporarily unavailable, write'), { code: 'EAGAIN' });

describe('buffered log destination', () => {
  it('holds lines until flush (or 64 KiB), then writes them in order with one write', () => {
    const writes: string[] = [] as string[];
    const d = new BufferedLogDestination(9, { intervalMs: 0, writeSync: (_fd, data) => (writes.push(data.toString()), data.length) });
    d.write('a\n');
    d.write('b\n');
    assert.equal(writes.length, 0, 'nothing written before a flush');
    d.flush();
    assert.deepEqual(writes, ['a\nb\n']);
    d.flush();
    assert.equal(writes.length, 1, 'an empty flush writes nothing');
    const line = `${'x'.repeat(1023)}\n`;
    for (let i = 0; i < 64; i++) d.write(line);
    assert.equal(writes.length, 2, 'written at once at 64 KiB');
    assert.equal(writes[1]!.length, 64 * 1024);
  });

  it('keeps multi-byte lines whole across the 64 KiB boundary, and writes a line longer than 64 KiB on its own', () => {
    const writes: Buffer[] = [];
    const d = new BufferedLogDestination(9, { intervalMs: 0, writeSync: (_fd, data) => (writes.push(Buffer.from(data)), data.length) });
    const line = `${'é'.repeat(700)}\n`; // 1401 bytes, 701 UTF-16 units
    for (let i = 0; i < 100; i++) d.write(line);
    const big = `${'z'.repeat(100 * 1024)}\n`;
    d.write(big);
    d.write('after\n');
    d.flush();
    assert.ok(writes.every((w) => w.length <= 64 * 1024 || w.length === big.length), 'no write over 64 KiB but the long line');
    assert.equal(Buffer.concat(writes).toString(), line.repeat(100) + big + 'after\n');
    assert.ok(writes.slice(0, -2).every((w) => w.toString().endsWith('\n')), 'each write ends at a line end');
  });

  it('keeps what a full pipe did not take (EAGAIN, partial writes) and writes it first next time', () => {
    const out: string[] = [];
    const script: ('eagain' | number | 'all')[] = ['eagain', 3, 'eagain', 'all'];
    const d = new BufferedLogDestination(9, {
      intervalMs: 0,
      writeSync: (_fd, data) => {
        const step = script.shift() ?? 'all';
        if (step === 'eagain') throw eagain();
        const n = step === 'all' ? data.length : Math.min(step, data.length);
        out.push(data.subarray(0, n).toString());
        return n;
      },
    });
    d.write('one\n');
    d.flush(); // EAGAIN: kept
    d.write('two\n');
    d.flush(); // 3 bytes, then EAGAIN
    d.flush(); // the rest
    assert.equal(out.join(''), 'one\ntwo\n');
  });

  it('drops the newest output beyond 8 MiB while the pipe stays full, and says so once it flows again', () => {
    let blocked = true;
    const out: Buffer[] = [];
    const d = new BufferedLogDestination(9, {
      intervalMs: 0,
      writeSync: (_fd, data) => {
        if (blocked) throw eagain();
        out.push(Buffer.from(data));
        return data.length;
      },
    });
    const line = `${'y'.repeat(1023)}\n`;
    for (let i = 0; i < 10 * 1024; i++) d.write(line); // 10 MiB
    blocked = false;
    d.write('last\n');
    d.flush();
    const text = Buffer.concat(out).toString();
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.at(-1), 'last');
    const note = JSON.parse(lines.at(-2)!) as { level: number; msg: string };
    assert.equal(note.level, 40);
    assert.match(note.msg, /^log output was blocked: \d+ bytes of log lines dropped$/);
    assert.ok(lines.slice(0, -2).every((l) => l === 'y'.repeat(1023)), 'the lines kept are whole');
    assert.ok(text.length <= 8 * 1024 * 1024 + 64 * 1024 + 200, `about 8 MiB kept (kept ${text.length})`);
  });

  it('stops writing (without throwing) when the output is gone (EPIPE)', () => {
    let calls = 0;
    const d = new BufferedLogDestination(9, {
      intervalMs: 0,
      writeSync: () => {
        calls++;
        throw Object.assign(new Error('EPIPE: broken pipe, write'), { code: 'EPIPE' });
      },
    });
    d.write('a\n');
    d.flush();
    d.write('b\n');
    d.flush();
    assert.equal(calls, 1);
  });

  it('carries pino JSON lines to a file, every line whole, on flush and on close', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'petrel-log-')), 'log.jsonl');
    const fd = openSync(file, 'w');
    const d = new BufferedLogDestination(fd, { intervalMs: 0 });
    const log = pino({ level: 'info' }, d);
    for (let i = 0; i < 1000; i++) log.info({ clientId: `c${i}`, password: undefined }, 'client connected');
    d.close();
    closeSync(fd);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 1000);
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { clientId: string }).clientId).slice(-2),
      ['c998', 'c999'],
    );
  });
});
