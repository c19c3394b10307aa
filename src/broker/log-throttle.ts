// A budget of log lines per second for one kind of line (the per-connection "client connected" and "client
// disconnected" lines). In a connect storm a line per connection costs ~6 µs of broker CPU, about a sixth of
// the connection rate, and nobody reads 20,000 lines a second: beyond the budget lines are only counted, and
// one line per second says how many were left out. Sans-I/O: the caller passes the time.

export class LogThrottle {
  private windowStart = Number.NEGATIVE_INFINITY;
  private written = 0;
  private skipped = 0;

  /**
   * `perSecond`: lines written per one-second window; 0 writes every line. `onSkipped` gets how many lines a
   * window left out, when it closes (only when there were some).
   */
  constructor(
    private readonly perSecond: number,
    private readonly onSkipped: (count: number) => void,
  ) {}

  /** Whether a line due at `now` (ms) may be written. A window that has ended is closed first, so its count comes before the next line. */
  admit(now: number): boolean {
    if (this.perSecond <= 0) return true;
    if (now - this.windowStart >= 1000) {
      this.roll();
      this.windowStart = now;
    }
    if (this.written < this.perSecond) {
      this.written++;
      return true;
    }
    this.skipped++;
    return false;
  }

  /** From the broker's timer: closes a window that has ended, so a storm's summary does not wait for the next line. */
  tick(now: number): void {
    if (now - this.windowStart >= 1000) this.roll();
  }

  private roll(): void {
    const skipped = this.skipped;
    this.written = 0;
    this.skipped = 0;
    if (skipped > 0) this.onSkipped(skipped);
  }
}
