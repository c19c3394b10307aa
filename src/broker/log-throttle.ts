// A budget of log lines per second for one kind of line (the per-connection "client connected" and "client
// disconnected" lines). In a connect storm a line per connection costs ~6 µs of broker CPU, about a sixth of
// the connection rate, and nobody reads 20,000 lines a second: beyond the budget lines are only counted, and
// one line per second says how many were left out. Sans-I/O: the caller passes the time.

export class LogThrottle {
  private windowStart = Number.NEGATIVE_INFINITY;
  private written = 0;
  private skipped = 0;

  /** `perSecond`: lines written per one-second window; 0 writes every line. */
  constructor(private readonly perSecond: number) {}

  /**
   * Whether a line due at `now` (ms) may be written. A window that has ended is closed first: `onSkipped` gets
   * how many lines it left out (only when there were some), so the summary comes before the next line.
   */
  admit(now: number, onSkipped: (count: number) => void): boolean {
    if (this.perSecond <= 0) return true;
    if (now - this.windowStart >= 1000) {
      this.roll(onSkipped);
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
  tick(now: number, onSkipped: (count: number) => void): void {
    if (now - this.windowStart >= 1000) this.roll(onSkipped);
  }

  private roll(onSkipped: (count: number) => void): void {
    const skipped = this.skipped;
    this.written = 0;
    this.skipped = 0;
    if (skipped > 0) onSkipped(skipped);
  }
}
