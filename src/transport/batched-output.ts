// What every transport's ChannelOutput shares: writes collected and sent as one buffer per flush
// (see flushAll), reading paused while the channel waits on a hook (through its InputGate), and a close
// that flushes first.
import type { ChannelOutput } from '../broker/channel.js';
import type { Channel } from '../broker/channel.js';
import { cancelFlush, InputGate, scheduleFlush, type GateTarget } from './input-gate.js';

export abstract class BatchedOutput implements ChannelOutput, GateTarget {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  protected closing = false;
  readonly gate: InputGate;
  /** The channel this transport feeds (set right after the channel is opened). */
  channel: Channel | undefined;

  constructor(maxBytesRate?: number) {
    this.gate = new InputGate(this, maxBytesRate);
  }

  abstract pauseReading(): void;
  abstract resumeReading(): void;

  deliver(chunk: Buffer): void {
    this.channel!.receive(chunk);
  }

  /** The transport can take bytes. */
  protected abstract writable(): boolean;
  /** Sends one buffer (everything batched since the last flush). */
  protected abstract transmit(data: Buffer): void;
  /** Bytes the transport holds that the network has not taken yet. */
  protected abstract transportBuffered(): number;
  /** Ends the transport after what was transmitted is sent. */
  protected abstract closeTransport(): void;

  write(data: Buffer): void {
    if (this.closing || !this.writable()) return;
    this.pending.push(data);
    this.pendingBytes += data.length;
    if (this.pending.length === 1) scheduleFlush(this);
  }

  flush(): void {
    const n = this.pending.length;
    if (n === 0 || !this.writable()) return;
    const data = n === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.transmit(data);
  }

  close(): void {
    if (this.closing) return;
    this.flush();
    this.closing = true;
    cancelFlush(this);
    this.gate.close();
    this.closeTransport();
  }

  bufferedBytes(): number {
    return this.pendingBytes + this.transportBuffered();
  }

  pauseInput(): void {
    this.gate.hookPause();
  }

  resumeInput(): void {
    if (!this.closing) this.gate.hookResume();
  }
}
