// Latency histogram for load runs: log buckets of 1 %, constant memory, O(1) record.

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Log-bucketed latency histogram (1 % resolution from 1 µs to ~100 s): constant memory, O(1) record. */
export class LatencyHistogram {
  private static readonly BASE = Math.log(1.01);
  private readonly buckets = new Float64Array(2000);
  count = 0;
  sum = 0;
  max = 0;

  /** Records a latency in ms. */
  record(ms: number): void {
    if (!(ms >= 0)) return;
    const us = ms * 1000;
    const i = us < 1 ? 0 : Math.min(1999, 1 + Math.floor(Math.log(us) / LatencyHistogram.BASE));
    this.buckets[i]!++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** The latency (ms) below which `p` percent of the samples fall (bucket upper bound, capped at max). */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return Math.min(this.max, i === 0 ? 0.001 : Math.pow(1.01, i) / 1000);
    }
    return this.max;
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      mean: this.count ? this.sum / this.count : 0,
      p50: this.percentile(50),
      p95: this.percentile(95),
      p99: this.percentile(99),
      max: this.max,
    };
  }
}
