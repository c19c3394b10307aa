// V8 settings for a process that runs the broker (the `petrel broker` command; an application that
// embeds the broker keeps its own). Measured with ../shared/bench, see docs/performance.md.
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';

/**
 * compact: V8's young generation keeps its initial 1 MiB semispaces instead of growing them to 16 MiB
 * under load. Idle connections are long-lived objects, so a grown young generation is RSS that idle
 * connections pay for (4.5 KiB per connection instead of 2.4 KiB); it also keeps scavenges short
 * after a burst, which is what the p99 latency sees.
 * throughput: V8's defaults (the young generation grows with the allocation rate).
 */
export type MemoryProfile = 'compact' | 'throughput';

/** Applies the memory profile, and single-threaded scavenges when the process may use one CPU only. */
export function tuneV8(profile: MemoryProfile, cpus = availableParallelism()): void {
  // Both flags are read at every scavenge / young-generation resize, so they can be set after start-up
  // (unlike --max-semi-space-size or --single-threaded-gc, which V8 reads once when the heap is created).
  setFlagsFromString(`--semi-space-growth-factor=${profile === 'compact' ? 1 : 2}`);
  // On one CPU (taskset, a container's cpuset) helper threads cannot run beside the broker: a parallel
  // scavenge only adds thread switches to the pause (fanin-q1-10k p99 0.49-1.6 ms with, 0.44 ms without).
  if (cpus === 1) setFlagsFromString('--no-parallel-scavenge');
}
