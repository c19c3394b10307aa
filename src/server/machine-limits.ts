// Default limits derived from the machine (issue 24, defect 3): with every memory limit at "unlimited", one
// client filled 1.08 GB with 10,000 retained messages of 100 KB. createBroker() applies these where the
// user set nothing; an explicit value (0 included: "no limit") always wins.
import os from 'node:os';
import v8 from 'node:v8';

/** What the defaults are derived from (bytes). */
export interface MachineFacts {
  /** Physical memory (os.totalmem()). */
  totalMemory: number;
  /** A container's (cgroup's) memory limit, when there is one (process.constrainedMemory()). */
  constrainedMemory: number | undefined;
  /** V8's heap limit (heap_size_limit: --max-old-space-size, or what V8 chose for this machine). */
  heapLimit: number;
}

export interface MachineLimits {
  /** The memory the process can count on: the container's limit, else the machine's (bytes). */
  memory: number;
  heapLimit: number;
  maxRetainedBytes: number;
  maxQueuedBytes: number;
  maxSubscriptionsPerClient: number;
  /** The overload guard's memory limit (OverloadOptions.memoryLimit). */
  memoryLimit: number;
}

const MiB = 1024 * 1024;
const clamp = (v: number, min: number, max: number): number => Math.min(max, Math.max(min, v));

export function readMachineFacts(): MachineFacts {
  // Node 20 answers 2^64-1 (or 0) when no limit is set: only a limit below the physical memory counts.
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
  return { totalMemory: os.totalmem(), constrainedMemory: constrained, heapLimit: v8.getHeapStatistics().heap_size_limit };
}

/**
 * The defaults for this machine:
 * - maxRetainedBytes: a sixteenth of memory, from 16 MiB to 512 MiB. Retained payloads live outside V8's
 *   heap (Buffers) and never go away by themselves; the rest is left to connections, queues and the heap.
 *   The probe of issue 24 (10,000 retained messages of 100 KB, 1 GB) stops at about half of it on any
 *   machine; a deployment that needs more says so (maxRetainedBytes).
 * - maxQueuedBytes (per session): memory / 256, from 16 MiB to 64 MiB: room for maxQueuedMessages (1000) of
 *   16-64 KB each, while 100 offline sessions with full queues still take at most 6.4 GB. (Mosquitto's
 *   max_queued_bytes has no default; EMQX bounds its queue by count only.)
 * - maxSubscriptionsPerClient: the V8 heap limit / 64 KiB, from 10,000 to 100,000 (a subscription costs
 *   ~0.5-1 KB of heap in the session and the index; a client at the limit holds under 2% of the heap).
 * - memoryLimit: all of the memory above; the guard's high-water mark (85%) keeps a margin below it.
 */
export function machineLimits(facts: MachineFacts = readMachineFacts()): MachineLimits {
  const c = facts.constrainedMemory;
  const memory = c !== undefined && c > 0 && c < facts.totalMemory ? c : facts.totalMemory;
  return {
    memory,
    heapLimit: facts.heapLimit,
    maxRetainedBytes: Math.floor(clamp(memory / 16, 16 * MiB, 512 * MiB)),
    maxQueuedBytes: Math.floor(clamp(memory / 256, 16 * MiB, 64 * MiB)),
    maxSubscriptionsPerClient: Math.round(clamp(facts.heapLimit / (64 * 1024), 10_000, 100_000) / 1000) * 1000,
    memoryLimit: memory,
  };
}
