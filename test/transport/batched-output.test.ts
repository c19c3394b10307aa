// Write batching: one write per output per event-loop turn, and at once for a big backlog.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { BatchedOutput, READ_SHARE_BYTES } from '../../src/transport/batched-output.js';

class RecordingOutput extends BatchedOutput {
  readonly sent: Buffer[] = [];
  /** pauseReading / resumeReading calls, in order. */
  readonly reading: ('pause' | 'resume')[] = [];
  readonly received: number[] = [];
  pauseReading(): void {
    this.reading.push('pause');
  }
  resumeReading(): void {
    this.reading.push('resume');
  }
  override deliver(chunk: Buffer): void {
    this.received.push(chunk.length);
  }
  protected writable(): boolean {
    return true;
  }
  protected transmit(data: Buffer): void {
    this.sent.push(data);
  }
  protected transportBuffered(): number {
    return 0;
  }
  protected closeTransport(): void {}
}

describe('BatchedOutput', () => {
  it('sends everything written during one event-loop turn as one buffer, after the turn', async () => {
    const a = new RecordingOutput();
    const b = new RecordingOutput();
    a.write(Buffer.from([1, 2]));
    b.write(Buffer.from([9]));
    a.write(Buffer.from([3]));
    assert.equal(a.sent.length, 0, 'nothing is written before the turn ends');
    assert.equal(a.bufferedBytes(), 3);
    await nextTurn();
    assert.deepEqual(a.sent, [Buffer.from([1, 2, 3])]);
    assert.deepEqual(b.sent, [Buffer.from([9])]);
    assert.equal(a.bufferedBytes(), 0);
    a.write(Buffer.from([4]));
    await nextTurn();
    assert.deepEqual(a.sent.at(-1), Buffer.from([4]), 'the next turn batches again');
  });

  it('writes at once when 64 KiB are waiting, so the transport sees the backlog', () => {
    const out = new RecordingOutput();
    out.write(Buffer.alloc(40 * 1024, 1));
    assert.equal(out.sent.length, 0);
    out.write(Buffer.alloc(30 * 1024, 2));
    assert.equal(out.sent.length, 1);
    assert.equal(out.sent[0]!.length, 70 * 1024);
    assert.equal(out.bufferedBytes(), 0);
  });

  it('close() sends what is waiting first', () => {
    const out = new RecordingOutput();
    out.write(Buffer.from('bye'));
    out.close();
    assert.deepEqual(out.sent, [Buffer.from('bye')]);
    out.write(Buffer.from('late'));
    assert.equal(out.sent.length, 1, 'nothing is written after close');
  });

  it('a connection that has read its share waits for the next turn, so a flood cannot starve the others', async () => {
    const out = new RecordingOutput();
    const chunk = Buffer.alloc(16 * 1024);
    for (let read = 0; read + chunk.length < READ_SHARE_BYTES; read += chunk.length) out.feed(chunk);
    assert.deepEqual(out.reading, [], 'below its share, reading goes on');
    out.feed(chunk);
    assert.deepEqual(out.reading, ['pause'], 'its share read: paused for the rest of the turn');
    assert.equal(out.received.reduce((a, n) => a + n, 0), READ_SHARE_BYTES, 'what was read is handled, none held back');
    await nextTurn();
    assert.deepEqual(out.reading, ['pause', 'resume'], 'reading again on the next turn');
  });

  it('a yield does not resume reading that a pending hook paused', async () => {
    const out = new RecordingOutput();
    out.pauseInput();
    assert.deepEqual(out.reading, ['pause']);
    out.feed(Buffer.alloc(READ_SHARE_BYTES));
    await nextTurn();
    assert.deepEqual(out.reading, ['pause'], 'still paused for the hook');
    out.resumeInput();
    assert.deepEqual(out.reading, ['pause', 'resume']);
  });
});
