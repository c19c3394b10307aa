// Reading control shared by the socket and WebSocket adapters: input is paused while the channel
// waits on an async hook, while a client is over its bytes-per-second budget (throttling), and for the rest
// of an event-loop turn once a client has read its share (fairness).
import { TokenBucket } from '../util/token-bucket.js';

/** What a gate controls: the transport's reading, and where the bytes go. */
export interface GateTarget {
  pauseReading(): void;
  resumeReading(): void;
  deliver(chunk: Buffer): void;
}

/** Shared by every gate without a byte budget (it never holds anything back): no array per connection. */
const NOTHING_HELD: Buffer[] = [];

export class InputGate {
  private hookPaused = false;
  private throttled = false;
  private yielding = false;
  private paused = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly bucket: TokenBucket | undefined;
  /** Bytes read but held back because the client is over its budget. */
  private held: Buffer[] = NOTHING_HELD;

  // One target object rather than three closures: a few hundred bytes less per idle connection.
  constructor(
    private readonly target: GateTarget,
    maxBytesRate?: number,
  ) {
    if (maxBytesRate) {
      this.bucket = new TokenBucket(maxBytesRate, maxBytesRate);
      this.held = [];
    }
  }

  /** Bytes read from the client: passed on now, or held back (and reading paused) while over budget. */
  feed(chunk: Buffer): void {
    if (this.closed) return;
    if (!this.bucket) {
      this.target.deliver(chunk);
      return;
    }
    this.held.push(chunk);
    if (!this.throttled) this.release();
  }

  private release(): void {
    this.timer = undefined;
    const bucket = this.bucket!;
    let budget = bucket.available(Date.now());
    while (this.held.length && budget > 0 && !this.closed) {
      const chunk = this.held[0]!;
      const n = Math.min(budget, chunk.length);
      bucket.take(Date.now(), n);
      budget -= n;
      if (n === chunk.length) this.held.shift();
      else this.held[0] = chunk.subarray(n);
      this.target.deliver(n === chunk.length ? chunk : chunk.subarray(0, n));
    }
    if (this.closed) return;
    const throttled = this.held.length > 0;
    if (throttled) {
      // Wake when a tenth of a second's worth (or what is held, if less) has accumulated.
      const want = Math.min(this.held.reduce((a, c) => a + c.length, 0), Math.max(1, Math.ceil(bucket.rate / 10)));
      this.timer = setTimeout(() => this.release(), Math.max(1, Math.ceil((want * 1000) / bucket.rate)));
    }
    if (throttled !== this.throttled) {
      this.throttled = throttled;
      this.update();
    }
  }

  hookPause(): void {
    this.hookPaused = true;
    this.update();
  }

  hookResume(): void {
    this.hookPaused = false;
    this.update();
  }

  /**
   * Pauses reading until the next event-loop turn: a client that has read its share lets every other
   * connection's input be handled first (libuv reads up to 32 x 64 KiB from one socket per poll otherwise).
   */
  yieldTurn(): void {
    if (this.yielding || this.closed) return;
    this.yielding = true;
    this.update();
    setImmediate(() => {
      this.yielding = false;
      this.update();
    });
  }

  close(): void {
    this.closed = true;
    this.held = NOTHING_HELD;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private update(): void {
    if (this.closed) return;
    const want = this.hookPaused || this.throttled || this.yielding;
    if (want === this.paused) return;
    this.paused = want;
    if (want) this.target.pauseReading();
    else this.target.resumeReading();
  }
}

/**
 * Write batching: outputs with bytes waiting are flushed once per event-loop turn, from a setImmediate,
 * after the poll phase has handed every readable socket's input to its channel. Writing after each input
 * chunk instead costs a write() and a wake-up of the peer per chunk: measured with ../shared/bench on one
 * core, batching per turn moved pairs-q1 from 22k to 45k msg/s, pairs-q0 from 56k to 78k and fanin-q0
 * from 1.07M to 1.43M (docs/performance.md). An output with a lot waiting flushes at once (BatchedOutput).
 */
export interface Flushable {
  flush(): void;
}
/**
 * Outputs with bytes waiting, in the order they got them. An array reused turn after turn rather than a Set:
 * Set.clear() allocates a new table each turn, and a table that survives two scavenges (it lives as long as
 * the turn) is promoted, old-generation garbage that costs major GCs. An output may appear twice (after an
 * early flush); flushing it again is a no-op.
 */
const pendingFlush: Flushable[] = [];
/** A setImmediate is pending; at most one at a time, however many chunks are handled meanwhile. */
let immediatePending = false;

function flushOnImmediate(): void {
  immediatePending = false;
  // Index loop: an output written to while flushing (an error closing a channel) is flushed in this pass.
  for (let i = 0; i < pendingFlush.length; i++) pendingFlush[i]!.flush();
  pendingFlush.length = 0;
}

export function scheduleFlush(output: Flushable): void {
  pendingFlush.push(output);
  if (!immediatePending) {
    immediatePending = true;
    setImmediate(flushOnImmediate);
  }
}
