// Sans-I/O pieces of the client: packet identifiers, keep alive (time is an input), reconnect
// backoff. No sockets or timers here, so they are tested directly.

/** Hands out packet identifiers 1..65535 not currently in use, round robin. */
export class PacketIdAllocator {
  private next = 1;
  private readonly used = new Set<number>();

  /** Returns a free id, or undefined when all 65535 are in use. */
  allocate(): number | undefined {
    if (this.used.size >= 65535) return undefined;
    for (;;) {
      const id = this.next;
      this.next = id === 65535 ? 1 : id + 1;
      if (!this.used.has(id)) {
        this.used.add(id);
        return id;
      }
    }
  }

  release(id: number): void {
    this.used.delete(id);
  }

  clear(): void {
    this.used.clear();
  }
}

export type KeepAliveAction = { action: 'none'; nextCheckAt: number } | { action: 'ping'; nextCheckAt: number } | { action: 'dead' };

/**
 * Keep alive of one connection. `intervalMs` is how long the client may stay silent before it
 * sends PINGREQ (the keep alive, or shorter); `timeoutMs` how long it waits for PINGRESP before
 * calling the connection dead. intervalMs 0 disables both.
 */
export class KeepAlive {
  private lastSent: number;
  private pingSentAt: number | undefined;

  constructor(
    readonly intervalMs: number,
    readonly timeoutMs: number,
    now: number,
  ) {
    this.lastSent = now;
  }

  /** Any packet written. */
  sent(now: number): void {
    this.lastSent = now;
  }

  /** PINGRESP received (any packet from the server also proves it is alive, but only PINGRESP answers the ping). */
  pingResponse(): void {
    this.pingSentAt = undefined;
  }

  /**
   * What to do now. 'ping': send PINGREQ now (the caller then calls `pingSent`). 'dead': no
   * PINGRESP within timeoutMs. `nextCheckAt` is when to call poll again.
   */
  poll(now: number): KeepAliveAction {
    if (this.intervalMs <= 0) return { action: 'none', nextCheckAt: Infinity };
    if (this.pingSentAt !== undefined) {
      const deadline = this.pingSentAt + this.timeoutMs;
      if (now >= deadline) return { action: 'dead' };
      return { action: 'none', nextCheckAt: deadline };
    }
    const due = this.lastSent + this.intervalMs;
    if (now >= due) return { action: 'ping', nextCheckAt: now + this.timeoutMs };
    return { action: 'none', nextCheckAt: due };
  }

  pingSent(now: number): void {
    this.pingSentAt = now;
    this.lastSent = now;
  }
}

export interface BackoffOptions {
  /** Delay before the first reconnect attempt, ms. Default 1000. */
  initialDelay?: number;
  /** Largest delay, ms. Default 30000. */
  maxDelay?: number;
  /** Growth per failed attempt. Default 2. */
  multiplier?: number;
  /** Fraction of the delay taken off at random (0 = none, 1 = "full jitter"). Default 0.5. */
  jitter?: number;
}

/** Delay before reconnect attempt number `attempt` (0 = the first after a loss). `random` in [0, 1). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: number = Math.random()): number {
  const initial = options.initialDelay ?? 1000;
  const max = options.maxDelay ?? 30_000;
  const multiplier = options.multiplier ?? 2;
  const jitter = Math.min(Math.max(options.jitter ?? 0.5, 0), 1);
  const base = Math.min(max, initial * Math.pow(multiplier, Math.min(attempt, 64)));
  return Math.round(base * (1 - jitter * random));
}

/** Largest delay a Node.js timer takes: 2^31 - 1 ms (about 24.8 days). Above it setTimeout fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A delay for setTimeout: negative and NaN become 0, longer than MAX_TIMER_MS is capped (no TimeoutOverflowWarning). */
export function timerDelay(ms: number): number {
  if (!(ms > 0)) return 0;
  return Math.min(ms, MAX_TIMER_MS);
}
