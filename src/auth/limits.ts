// Rate limits: a token bucket per client (publish rate, bytes per second) or per listener (connection rate).
import { TokenBucket } from '../util/token-bucket.js';

export { TokenBucket };

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
