// Feeds the overload guard (src/broker/overload.ts) with samples of the process: RSS, V8 heap use and limit,
// and the event loop's mean delay (perf_hooks.monitorEventLoopDelay), on an unref'd timer. It logs each
// change of state once: a warning on entering, an info line on leaving, never one per message.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { Logger } from 'pino';
import type { OverloadChange, ResourceGuard, ResourceSample } from '../broker/overload.js';

/** The event-loop monitor's resolution (ms): its samples are this much apart on an idle loop. */
const LOOP_RESOLUTION_MS = 10;
const MB = 1024 * 1024;

export class ResourceMonitor {
  private timer: NodeJS.Timeout | undefined;
  private histogram: IntervalHistogram | undefined;

  constructor(
    private readonly guard: ResourceGuard,
    private readonly logger: Logger,
    private readonly now: () => number,
    /** Replaces the process's figures (tests inject memory and lag through it). */
    private readonly sampler: (() => ResourceSample) | undefined = undefined,
  ) {}

  start(): void {
    if (this.timer !== undefined || !this.guard.options.enabled) return;
    if (this.sampler === undefined) {
      this.histogram = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
      this.histogram.enable();
    }
    this.timer = setInterval(() => {
      try {
        this.sampleNow();
      } catch (err) {
        this.logger.error({ error: err instanceof Error ? err.message : String(err) }, 'resource sample failed');
      }
    }, this.guard.options.sampleIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.histogram?.disable();
    this.histogram = undefined;
  }

  /** Takes a sample now, hands it to the guard, logs what changed; returns the changes. */
  sampleNow(): OverloadChange[] {
    const changes = this.guard.update(this.sampler?.() ?? this.processSample(), this.now());
    for (const change of changes) this.log(change);
    return changes;
  }

  private processSample(): ResourceSample {
    const heap = v8.getHeapStatistics();
    const h = this.histogram;
    // The monitor records the time between its ticks: an idle loop shows its resolution, not zero.
    const lag = h !== undefined && h.count > 0 ? Math.max(0, h.mean / 1e6 - LOOP_RESOLUTION_MS) : 0;
    h?.reset();
    return { heapUsed: heap.used_heap_size, heapLimit: heap.heap_size_limit, rss: process.memoryUsage.rss(), eventLoopLagMs: lag };
  }

  private log(c: OverloadChange): void {
    const o = this.guard.options;
    const s = c.sample;
    const lasted = Math.round(c.lasted / 1000);
    if (c.resource === 'memory') {
      const fields = {
        memoryUse: Math.round(c.value * 1000) / 1000,
        threshold: c.threshold,
        rssMB: Math.round(s.rss / MB),
        memoryLimitMB: Math.round(o.memoryLimit / MB),
        heapUsedMB: Math.round(s.heapUsed / MB),
        heapLimitMB: Math.round(s.heapLimit / MB),
      };
      if (c.state === 'high') {
        this.logger.warn({ ...fields, normalForSeconds: lasted }, `memory above its high-water mark (${pct(c.value)} of its limit): new connections refused with Server busy, QoS 0 messages shed, retained messages that grow the store refused`);
      } else {
        this.logger.info({ ...fields, highForSeconds: lasted }, `memory back below its low-water mark (${pct(c.value)}): connections, QoS 0 and retained messages accepted again`);
      }
    } else {
      const fields = { lagMs: Math.round(c.value), thresholdMs: c.threshold };
      if (c.state === 'high') this.logger.warn({ ...fields, normalForSeconds: lasted }, `event loop lagging (${Math.round(c.value)} ms): new connections refused with Server busy`);
      else this.logger.info({ ...fields, highForSeconds: lasted }, `event loop lag back to normal (${Math.round(c.value)} ms): new connections accepted again`);
    }
  }
}

const pct = (v: number): string => `${Math.round(v * 100)}%`;
