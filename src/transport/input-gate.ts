// Reading control shared by the socket and WebSocket adapters: input is paused while the channel
// waits on an async hook, and while a client is over its bytes-per-second budget (throttling).
import { TokenBucket } from '../auth/limits.js';

export class InputGate {
  private hookPaused = false;
  private throttled = false;
  private paused = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly bucket: TokenBucket | undefined;

  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
    maxBytesRate?: number,
  ) {
    if (maxBytesRate) this.bucket = new TokenBucket(maxBytesRate, maxBytesRate);
  }

  /** Counts bytes read; over budget, reading stops until the budget is positive again. */
  received(bytes: number): void {
    if (!this.bucket || this.closed) return;
    const wait = this.bucket.consume(Date.now(), bytes);
    if (wait > 0 && !this.throttled) {
      this.throttled = true;
      this.update();
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.throttled = false;
        this.update();
      }, wait);
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

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private update(): void {
    if (this.closed) return;
    const want = this.hookPaused || this.throttled;
    if (want === this.paused) return;
    this.paused = want;
    if (want) this.pause();
    else this.resume();
  }
}

/** Write batching: outputs with bytes waiting are flushed once per event-loop turn. */
export interface Flushable {
  flush(): void;
}
const pendingFlush = new Set<Flushable>();
let flushScheduled = false;

function flushAll(): void {
  flushScheduled = false;
  for (const output of pendingFlush) output.flush();
  pendingFlush.clear();
}

export function scheduleFlush(output: Flushable): void {
  pendingFlush.add(output);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushAll);
  }
}

export function cancelFlush(output: Flushable): void {
  pendingFlush.delete(output);
}
