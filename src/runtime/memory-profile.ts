// V8 settings for a process that runs the broker (the `petrel broker` command; an application that
// embeds the broker keeps its own). Measured with ../shared/bench, see docs/performance.md.
import { setFlagsFromString } from 'node:v8';

/**
 * compact: V8's young generation keeps its initial 1 MiB semispaces instead of growing them to 16 MiB
 * under load. Idle connections are long-lived objects, so a grown young generation is RSS that idle
 * connections pay for (4.5 KiB per connection instead of 2.4 KiB); it also keeps scavenges short
 * after a burst, which is what the p99 latency sees.
 * throughput: V8's defaults (the young generation grows with the allocation rate).
 */
export type MemoryProfile = 'compact' | 'throughput';

export function applyMemoryProfile(profile: MemoryProfile): void {
  // A growth factor of 1 is read at every young-generation resize, so it can be set after start-up
  // (unlike --max-semi-space-size, which V8 reads once when the heap is created).
  setFlagsFromString(`--semi-space-growth-factor=${profile === 'compact' ? 1 : 2}`);
}
