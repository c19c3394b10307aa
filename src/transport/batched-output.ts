// What every transport's ChannelOutput shares: writes collected and sent as one buffer per flush
// (see scheduleFlush), reading paused while the channel waits on a hook (through its InputGate), and a close
// that flushes first.
import { Buffer } from 'node:buffer';
import type { ChannelOutput } from '../broker/channel.js';
import type { Channel } from '../broker/channel.js';
import { InputGate, scheduleFlush, type GateTarget } from './input-gate.js';

/** Bytes batched for one output that are written at once rather than at the end of the event-loop turn. */
const FLUSH_AT_BYTES = 64 * 1024;

/**
 * Bytes a connection reads before its reading waits for the next event-loop turn. Without a share, a client
 * flooding QoS 0 had each poll read up to 2 MiB from it (libuv's 32 reads of 64 KiB) while the others waited.
 */
export const READ_SHARE_BYTES = 64 * 1024;

/** How long a graceful close may take (output flushed, FIN or close handshake) before the connection is cut. */
export const GRACEFUL_CLOSE_MS = 2000;

export abstract class BatchedOutput implements ChannelOutput, GateTarget {
  // The common case is one buffer per flush: kept alone, an array only from the second one on.
  private first: Buffer | undefined;
  private more: Buffer[] | undefined;
  private pendingBytes = 0;
  /** Bytes read since reading last yielded its turn (READ_SHARE_BYTES). */
  private readSinceYield = 0;
  protected closing = false;
  private inputClosed = false;
  /** Reading control, made on first need (a byte budget, or a hook the channel waits on): ~90 B less per idle connection. */
  private gate: InputGate | undefined;
  /** The channel this transport feeds (set right after the channel is opened). */
  channel: Channel | undefined;

  constructor(maxBytesRate?: number) {
    if (maxBytesRate) this.gate = new InputGate(this, maxBytesRate);
  }

  /** Bytes read from the transport. */
  feed(chunk: Buffer): void {
    if (this.gate !== undefined) this.gate.feed(chunk);
    else if (!this.inputClosed) this.deliver(chunk);
    if ((this.readSinceYield += chunk.length) >= READ_SHARE_BYTES) {
      this.readSinceYield = 0;
      if (!this.closing && !this.inputClosed) (this.gate ??= new InputGate(this)).yieldTurn();
    }
  }

  /** The transport will read no more: whatever the gate holds back is dropped. */
  endInput(): void {
    this.inputClosed = true;
    this.gate?.close();
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
    this.pendingBytes += data.length;
    if (this.first === undefined) {
      this.first = data;
      scheduleFlush(this);
    } else if (this.more === undefined) {
      this.more = [this.first, data];
    } else {
      this.more.push(data);
    }
    // Big enough to be worth a write of its own: memory per turn stays bounded, and the transport's own
    // buffer (what bufferedBytes() and the slow-consumer rules look at) sees the backlog as it builds.
    if (this.pendingBytes >= FLUSH_AT_BYTES) this.flush();
  }

  flush(): void {
    const first = this.first;
    if (first === undefined || !this.writable()) return;
    const data = this.more === undefined ? first : Buffer.concat(this.more, this.pendingBytes);
    this.first = this.more = undefined;
    this.pendingBytes = 0;
    this.transmit(data);
    // The network did not take it all: the channel watches its backlog (slow-consumer rules) until it drains.
    if (this.transportBuffered() > 0) this.channel?.watchOutput();
  }

  close(): void {
    if (this.closing) return;
    this.flush();
    this.closing = true;
    this.endInput();
    this.closeTransport();
  }

  bufferedBytes(): number {
    return this.pendingBytes + this.transportBuffered();
  }

  pauseInput(): void {
    (this.gate ??= new InputGate(this)).hookPause();
  }

  resumeInput(): void {
    if (!this.closing) this.gate?.hookResume();
  }
}
