// The overload guard (issue 24, defect 3), sans I/O: samples of the process's memory and event-loop lag go
// in (src/server/resource-monitor.ts takes them on a timer), a state per resource comes out, and the hot
// path reads three booleans. Memory high: new CONNECTs get 0x89 Server busy, QoS 0 deliveries are shed,
// retained sets that would grow the store are refused; QoS 1/2 keep flowing. Event loop lagging: new
// CONNECTs get 0x89. Each state has hysteresis (a high and a low mark), so a value hovering around one
// threshold does not flap, and each change is reported once, never per message.

/** The guard's settings (config key `overload`). */
export interface OverloadOptions {
  /** false: never shed (the limits still apply). */
  enabled: boolean;
  /**
   * Bytes of resident memory the process may use (0: the machine's, or its container's, memory; the facade
   * fills it in). Memory use is the larger of RSS / memoryLimit and V8 heap used / V8 heap limit.
   */
  memoryLimit: number;
  /** Memory use (a fraction of the limits above) at which the state becomes high. */
  memoryHighWater: number;
  /** Memory use at which a high state is left (below memoryHighWater). */
  memoryLowWater: number;
  /** Mean event-loop lag (ms, over one sample interval) at which new connections are refused; 0 = never. Left below half of it. */
  eventLoopLagMs: number;
  /** How often memory and lag are sampled (ms). */
  sampleIntervalMs: number;
}

export const DEFAULT_OVERLOAD: OverloadOptions = {
  enabled: true,
  memoryLimit: 0,
  memoryHighWater: 0.85,
  memoryLowWater: 0.7,
  eventLoopLagMs: 500,
  sampleIntervalMs: 1000,
};

/** One reading of the process. */
export interface ResourceSample {
  /** V8 heap in use and its limit (bytes). */
  heapUsed: number;
  heapLimit: number;
  /** Resident set size (bytes): the heap plus Buffers and everything else. */
  rss: number;
  /** Mean event-loop lag since the previous sample (ms). */
  eventLoopLagMs: number;
}

export type ResourceState = 'normal' | 'high';

/** A change of state, for the one log line it deserves. */
export interface OverloadChange {
  resource: 'memory' | 'eventLoop';
  state: ResourceState;
  /** Memory: use as a fraction of its limit; event loop: lag in ms. */
  value: number;
  /** The mark crossed. */
  threshold: number;
  sample: ResourceSample;
  /** How long the previous state lasted (ms). */
  lasted: number;
}

export class ResourceGuard {
  // The hot path reads these (a field read each; no call while normal).
  /** New CONNECTs are refused with 0x89 Server busy (3.1.x: 0x03 Server unavailable). */
  refuseConnects = false;
  /** QoS 0 deliveries are dropped (counted in stats.droppedShed). */
  shedQos0 = false;
  /** Retained sets that would grow the store (a new topic, a larger replacement) are refused. */
  refuseRetainedGrowth = false;

  memory: ResourceState = 'normal';
  eventLoop: ResourceState = 'normal';
  /** Last memory use (fraction) and lag (ms) seen. */
  memoryUse = 0;
  lastSample: ResourceSample | undefined;
  private memorySince: number;
  private eventLoopSince: number;
  readonly options: OverloadOptions;

  constructor(options: Partial<OverloadOptions> = {}, now = 0) {
    this.options = { ...DEFAULT_OVERLOAD, ...options };
    this.memorySince = this.eventLoopSince = now;
  }

  /** Memory use of a sample: the larger of RSS against memoryLimit and heap against the V8 heap limit. */
  memoryUseOf(s: ResourceSample): number {
    const limit = this.options.memoryLimit;
    const rss = limit > 0 ? s.rss / limit : 0;
    const heap = s.heapLimit > 0 ? s.heapUsed / s.heapLimit : 0;
    return rss > heap ? rss : heap;
  }

  /** Takes a sample in; returns the changes of state it caused (none most of the time). */
  update(s: ResourceSample, now: number): OverloadChange[] {
    const o = this.options;
    this.lastSample = s;
    const changes: OverloadChange[] = [];
    if (!o.enabled) return changes;
    const use = (this.memoryUse = this.memoryUseOf(s));
    if (this.memory === 'normal' ? use >= o.memoryHighWater : use <= o.memoryLowWater) {
      const state: ResourceState = this.memory === 'normal' ? 'high' : 'normal';
      changes.push({ resource: 'memory', state, value: use, threshold: state === 'high' ? o.memoryHighWater : o.memoryLowWater, sample: s, lasted: now - this.memorySince });
      this.memory = state;
      this.memorySince = now;
    }
    if (o.eventLoopLagMs > 0) {
      const lag = s.eventLoopLagMs;
      if (this.eventLoop === 'normal' ? lag >= o.eventLoopLagMs : lag < o.eventLoopLagMs / 2) {
        const state: ResourceState = this.eventLoop === 'normal' ? 'high' : 'normal';
        changes.push({ resource: 'eventLoop', state, value: lag, threshold: state === 'high' ? o.eventLoopLagMs : o.eventLoopLagMs / 2, sample: s, lasted: now - this.eventLoopSince });
        this.eventLoop = state;
        this.eventLoopSince = now;
      }
    } else if (this.eventLoop === 'high') {
      this.eventLoop = 'normal';
    }
    const memoryHigh = this.memory === 'high';
    this.refuseConnects = memoryHigh || this.eventLoop === 'high';
    this.shedQos0 = memoryHigh;
    this.refuseRetainedGrowth = memoryHigh;
    return changes;
  }

  /** Why a CONNECT is refused now (the 5.0 reason string). */
  get refusalReason(): string {
    return this.memory === 'high' ? 'server busy: memory above its high-water mark' : 'server busy: event loop lagging';
  }

  /** The state for operators: broker.inspect.overload(). */
  view(now: number): OverloadView {
    return {
      enabled: this.options.enabled,
      memory: this.memory,
      memorySince: this.memorySince,
      memoryUse: this.memoryUse,
      eventLoop: this.eventLoop,
      eventLoopSince: this.eventLoopSince,
      eventLoopLagMs: this.lastSample?.eventLoopLagMs ?? 0,
      refusingConnects: this.refuseConnects,
      sheddingQos0: this.shedQos0,
      refusingRetainedGrowth: this.refuseRetainedGrowth,
      sample: this.lastSample === undefined ? undefined : { ...this.lastSample },
      options: { ...this.options },
      at: now,
    };
  }
}

export interface OverloadView {
  enabled: boolean;
  memory: ResourceState;
  /** When the memory state last changed (ms, broker clock; the start when it never did). */
  memorySince: number;
  /** Memory use at the last sample, as a fraction of its limit. */
  memoryUse: number;
  eventLoop: ResourceState;
  eventLoopSince: number;
  eventLoopLagMs: number;
  refusingConnects: boolean;
  sheddingQos0: boolean;
  refusingRetainedGrowth: boolean;
  sample: ResourceSample | undefined;
  options: OverloadOptions;
  at: number;
}
