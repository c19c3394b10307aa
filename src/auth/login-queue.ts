// Fair, bounded admission of password checks: each check costs ~50 ms of scrypt on libuv's thread pool, so
// a flood of logins must not be able to take every slot. Checks wait in lanes (one per source address and
// user name), served round-robin over addresses and, within an address, over user names; addresses with no
// recent failures go first. The queue is bounded in total, per address and per user name; beyond a bound
// (or after waiting too long) a check is answered "busy" without running.

export type CheckResult = boolean | 'busy';

export interface LoginQueueOptions {
  /** Checks running at once (libuv's pool has 4 threads by default; leave some for files and DNS). */
  maxConcurrent: number;
  /** Checks waiting, in total. */
  maxPending: number;
  maxPendingPerAddress: number;
  maxPendingPerUsername: number;
  /** A check that waited longer than this (ms) is answered busy instead of run: its client has given up or soon will. */
  maxWait: number;
}

/**
 * What the failures say, asked when a check is picked (not when it is queued: checks queued at the start of a
 * flood must lose their priority as soon as their address starts failing).
 */
export interface LoginJudge {
  /** The address has no recent failures: its checks go first. */
  clean(address: string): boolean;
  /** The user name has recent failures: one of its checks runs at a time. */
  serial(username: string): boolean;
}

interface Job {
  address: string;
  username: string;
  queuedAt: number;
  run: () => Promise<boolean>;
  resolve: (result: CheckResult) => void;
}

/** An address's lanes: user name → its jobs, oldest first. */
type AddressLanes = Map<string, Job[]>;

export class LoginQueue {
  /** address → its lanes. */
  private readonly waiting = new Map<string, AddressLanes>();
  /** When each address, and each (address, user name), was last served: the least recently served goes next. */
  private readonly served = new Map<string, number>();
  private serves = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly perUsername = new Map<string, number>();
  private readonly runningPerUsername = new Map<string, number>();
  private pending = 0;
  private running = 0;

  constructor(
    private readonly options: LoginQueueOptions,
    private readonly judge: LoginJudge,
    private readonly now: () => number,
  ) {}

  get size(): { pending: number; running: number } {
    return { pending: this.pending, running: this.running };
  }

  /** Queues `run` for `username` from `address`; resolves with its answer, or 'busy' when it was not run. */
  submit(address: string, username: string, run: () => Promise<boolean>): Promise<CheckResult> {
    return new Promise<CheckResult>((resolve) => {
      const job: Job = { address, username, queuedAt: this.now(), run, resolve };
      const o = this.options;
      if ((this.perAddress.get(address) ?? 0) >= o.maxPendingPerAddress || (this.perUsername.get(username) ?? 0) >= o.maxPendingPerUsername) {
        resolve('busy');
        return;
      }
      // Full: a check from a clean address takes the place of one from an address with failures.
      if (this.pending >= o.maxPending && !(this.judge.clean(address) && this.evictSuspect())) {
        resolve('busy');
        return;
      }
      let lanes = this.waiting.get(address);
      if (!lanes) this.waiting.set(address, (lanes = new Map()));
      let lane = lanes.get(username);
      if (!lane) lanes.set(username, (lane = []));
      lane.push(job);
      this.count(job, 1);
      this.pump();
    });
  }

  private count(job: Job, delta: number): void {
    this.pending += delta;
    bump(this.perAddress, job.address, delta);
    bump(this.perUsername, job.username, delta);
  }

  /** Drops the newest check of the suspect address with the most checks waiting; false when none waits. */
  private evictSuspect(): boolean {
    let worst: AddressLanes | undefined;
    let worstCount = 0;
    for (const [address, lanes] of this.waiting) {
      if (this.judge.clean(address)) continue;
      const n = this.perAddress.get(address) ?? 0;
      if (n > worstCount) [worst, worstCount] = [lanes, n];
    }
    if (!worst) return false;
    let longest: Job[] | undefined;
    for (const lane of worst.values()) if (!longest || lane.length > longest.length) longest = lane;
    const job = longest!.pop()!;
    this.removeIfEmpty(job);
    this.count(job, -1);
    job.resolve('busy');
    return true;
  }

  private removeIfEmpty(job: Job): void {
    const lanes = this.waiting.get(job.address)!;
    if (lanes.get(job.username)!.length === 0) lanes.delete(job.username);
    if (lanes.size === 0) this.waiting.delete(job.address);
  }

  /** Starts checks while there are free slots and runnable checks. */
  private pump(): void {
    while (this.running < this.options.maxConcurrent) {
      const job = this.next();
      if (!job) return;
      this.count(job, -1);
      if (this.now() - job.queuedAt > this.options.maxWait) {
        job.resolve('busy');
        continue;
      }
      this.start(job);
    }
  }

  /**
   * Takes the next runnable job: from a clean address if there is one, then the least recently served
   * address, then its least recently served user name (skipping user names whose one check runs).
   */
  private next(): Job | undefined {
    let best: { address: string; username: string; lane: Job[] } | undefined;
    let bestRank = [Infinity, Infinity, Infinity];
    for (const [address, lanes] of this.waiting) {
      const rank0 = this.judge.clean(address) ? 0 : 1;
      const rank1 = this.served.get(address) ?? 0;
      if (rank0 > bestRank[0]! || (rank0 === bestRank[0] && rank1 > bestRank[1]!)) continue;
      for (const [username, lane] of lanes) {
        if (this.runningPerUsername.has(username) && this.judge.serial(username)) continue;
        const rank = [rank0, rank1, this.served.get(`${address}\0${username}`) ?? 0];
        if (rank[0]! < bestRank[0]! || (rank[0] === bestRank[0] && (rank[1]! < bestRank[1]! || (rank[1] === bestRank[1] && rank[2]! < bestRank[2]!)))) {
          best = { address, username, lane };
          bestRank = rank;
        }
      }
    }
    if (!best) return undefined;
    const job = best.lane.shift()!;
    this.removeIfEmpty(job);
    this.serves++;
    this.remember(best.address);
    this.remember(`${best.address}\0${best.username}`);
    return job;
  }

  private remember(key: string): void {
    this.served.delete(key);
    this.served.set(key, this.serves);
    // Bounded: the least recently served are forgotten first (they would count as never served: first in line).
    if (this.served.size > 10_000) this.served.delete(this.served.keys().next().value!);
  }

  private start(job: Job): void {
    this.running++;
    // Every running check is counted per user name: one that turns serial meanwhile waits for them all.
    bump(this.runningPerUsername, job.username, 1);
    let result: CheckResult = false;
    job
      .run()
      .then(
        (ok) => (result = ok),
        () => (result = false),
      )
      .finally(() => {
        this.running--;
        bump(this.runningPerUsername, job.username, -1);
        job.resolve(result);
        this.pump();
      });
  }
}

function bump(map: Map<string, number>, key: string, delta: number): void {
  const n = (map.get(key) ?? 0) + delta;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
