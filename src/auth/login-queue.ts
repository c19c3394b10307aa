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

interface Job {
  address: string;
  username: string;
  clean: boolean;
  /** At most one check of this user name runs at a time (a name under attack from many addresses). */
  serial: boolean;
  queuedAt: number;
  run: () => Promise<boolean>;
  resolve: (result: CheckResult) => void;
}

/** An address's lanes: user name → its jobs, oldest first. */
type AddressLanes = Map<string, Job[]>;
/** A priority class: address → its lanes. */
type Class = Map<string, AddressLanes>;

export class LoginQueue {
  /** Two priority classes, each address → lanes; Map order is the round-robin order over addresses. */
  private readonly clean: Class = new Map();
  private readonly suspect: Class = new Map();
  /** When each address, and each (address, user name), was last served: the least recently served goes next. */
  private readonly served = new Map<string, number>();
  private serves = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly perUsername = new Map<string, number>();
  private readonly runningSerial = new Set<string>();
  private pending = 0;
  private running = 0;

  constructor(
    private readonly options: LoginQueueOptions,
    private readonly now: () => number,
  ) {}

  get size(): { pending: number; running: number } {
    return { pending: this.pending, running: this.running };
  }

  /**
   * Queues `run` for `username` from `address`. `clean`: the address has no recent failures (served first).
   * `serial`: the user name has recent failures (one of its checks at a time).
   */
  submit(address: string, username: string, clean: boolean, serial: boolean, run: () => Promise<boolean>): Promise<CheckResult> {
    return new Promise<CheckResult>((resolve) => {
      const job: Job = { address, username, clean, serial, queuedAt: this.now(), run, resolve };
      const o = this.options;
      if ((this.perAddress.get(address) ?? 0) >= o.maxPendingPerAddress || (this.perUsername.get(username) ?? 0) >= o.maxPendingPerUsername) {
        resolve('busy');
        return;
      }
      // Full: a check from a clean address takes the place of one from an address with failures.
      if (this.pending >= o.maxPending && !(clean && this.evictSuspect())) {
        resolve('busy');
        return;
      }
      this.add(job);
      this.pump();
    });
  }

  private add(job: Job): void {
    const cls = job.clean ? this.clean : this.suspect;
    let lanes = cls.get(job.address);
    if (!lanes) cls.set(job.address, (lanes = new Map()));
    let lane = lanes.get(job.username);
    if (!lane) lanes.set(job.username, (lane = []));
    lane.push(job);
    this.count(job, 1);
  }

  private count(job: Job, delta: number): void {
    this.pending += delta;
    bump(this.perAddress, job.address, delta);
    bump(this.perUsername, job.username, delta);
  }

  /** Drops the newest check of the address with the most suspect checks waiting; false when none waits. */
  private evictSuspect(): boolean {
    let worst: AddressLanes | undefined;
    let worstCount = 0;
    for (const lanes of this.suspect.values()) {
      let n = 0;
      for (const lane of lanes.values()) n += lane.length;
      if (n > worstCount) [worst, worstCount] = [lanes, n];
    }
    if (!worst) return false;
    let longest: Job[] | undefined;
    for (const lane of worst.values()) if (!longest || lane.length > longest.length) longest = lane;
    const job = longest!.pop()!;
    this.removeIfEmpty(this.suspect, job);
    this.count(job, -1);
    job.resolve('busy');
    return true;
  }

  private removeIfEmpty(cls: Class, job: Job): void {
    const lanes = cls.get(job.address)!;
    if (lanes.get(job.username)!.length === 0) lanes.delete(job.username);
    if (lanes.size === 0) cls.delete(job.address);
  }

  /** Starts checks while there are free slots and runnable checks. */
  private pump(): void {
    while (this.running < this.options.maxConcurrent) {
      const job = this.next(this.clean) ?? this.next(this.suspect);
      if (!job) return;
      this.count(job, -1);
      if (this.now() - job.queuedAt > this.options.maxWait) {
        job.resolve('busy');
        continue;
      }
      this.start(job);
    }
  }

  /** Takes the next runnable job of a class: the least recently served address, then its least recently served user name. */
  private next(cls: Class): Job | undefined {
    let best: { lanes: AddressLanes; address: string; username: string; lane: Job[] } | undefined;
    let bestAddress = Infinity;
    let bestName = Infinity;
    for (const [address, lanes] of cls) {
      const a = this.served.get(address) ?? 0;
      if (a > bestAddress) continue;
      for (const [username, lane] of lanes) {
        if (lane[0]!.serial && this.runningSerial.has(username)) continue;
        const n = this.served.get(`${address}\0${username}`) ?? 0;
        if (a < bestAddress || n < bestName) [best, bestAddress, bestName] = [{ lanes, address, username, lane }, a, n];
      }
    }
    if (!best) return undefined;
    const job = best.lane.shift()!;
    this.removeIfEmpty(cls, job);
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
    if (job.serial) this.runningSerial.add(job.username);
    let result: CheckResult = false;
    job
      .run()
      .then(
        (ok) => (result = ok),
        () => (result = false),
      )
      .finally(() => {
        this.running--;
        if (job.serial) this.runningSerial.delete(job.username);
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
