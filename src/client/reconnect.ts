// When to reconnect, sans I/O: exponential backoff that starts over only once a connection has
// proven stable, and the count of connections the server closed soon after accepting them.
import type { BackoffOptions } from './session-state.js';
import { backoffDelay } from './session-state.js';

/** Short-lived connections in a row after which the client warns (once) that something keeps closing them. */
export const UNSTABLE_AFTER = 3;

export class ReconnectBackoff {
  /** Attempts since the last stable connection: the exponent of the next delay. */
  private attempts = 0;
  private connectedAt: number | undefined;
  private keepAliveMs = Infinity;
  /** Connections in a row that were lost before they were stable. */
  private shortLived = 0;

  constructor(
    private readonly options: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  /** CONNACK accepted a connection at `now`; `keepAlive` in force, seconds (0: none). */
  connected(now: number, keepAlive: number): void {
    this.connectedAt = now;
    this.keepAliveMs = keepAlive > 0 ? keepAlive * 1000 : Infinity;
  }

  /**
   * The connection was lost at `now`. A connection that stayed up longer than the delay the next
   * attempt would wait, or than one keep-alive period, was stable: the backoff starts over. A
   * shorter one (a server or proxy that drops every connection at once, two clients taking one
   * Client ID from each other) keeps the delay growing. Returns the short-lived connections in a row.
   */
  lost(now: number): number {
    if (this.connectedAt === undefined) return this.shortLived;
    const uptime = now - this.connectedAt;
    this.connectedAt = undefined;
    if (uptime >= Math.min(this.baseDelay(), this.keepAliveMs)) {
      this.attempts = 0;
      this.shortLived = 0;
    } else this.shortLived++;
    return this.shortLived;
  }

  /** The next attempt: its number since the last stable connection (1, 2, ...) and the delay before it, ms. */
  next(): { attempt: number; delay: number } {
    const delay = backoffDelay(this.attempts, this.options, this.random());
    this.attempts++;
    return { attempt: this.attempts, delay };
  }

  /** The next delay without jitter. */
  private baseDelay(): number {
    return backoffDelay(this.attempts, this.options, 0);
  }
}
