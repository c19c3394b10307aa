// Rate limits: a token bucket per client (publish rate, bytes per second) or per listener (connection rate).

/** A token bucket: `rate` tokens per second, holding at most `burst`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst: number = rate,
    now = Date.now(),
  ) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
    }
  }

  /** Whole tokens available now. */
  available(now: number): number {
    this.refill(now);
    return Math.max(0, Math.floor(this.tokens));
  }

  /** Takes `n` tokens; false (and nothing taken) when there are not enough. */
  take(now: number, n = 1): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Takes `n` tokens even when that goes into debt; returns the ms until the balance is positive again (0: none). */
  consume(now: number, n: number): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate);
  }
}

/** Per-client limits of a listener. */
export interface ClientRateLimits {
  /** PUBLISH packets per second a client may send (DISCONNECT 0x96 above it). */
  maxPublishRate?: number;
  /** Burst of PUBLISH packets allowed above the rate (default: one second's worth). */
  publishBurst?: number;
  /** Bytes per second read from a client; above it the broker stops reading (throttles) until the budget refills. */
  maxBytesRate?: number;
}

/** The `publishLimit` check of one connection: 0, or 0x96 when the client publishes too fast. */
export function publishLimiter(limits: ClientRateLimits): ((now: number) => number) | undefined {
  const rate = limits.maxPublishRate;
  if (!rate) return undefined;
  const bucket = new TokenBucket(rate, limits.publishBurst ?? Math.max(1, rate));
  return (now) => (bucket.take(now) ? 0 : 0x96);
}
