// Password checks under attack: a wrong-password flood must not lock real users out. Composes the fair
// check queue, the failure tracker (fail2ban-style bans) and the cache of recent successes; see
// docs/security.md for the defaults and why.
import { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import { ReasonCode } from '../protocol/constants.js';
import { ipOf } from '../util/address.js';
import { LoginCache } from './login-cache.js';
import { FailureTracker, type Ban } from './login-failures.js';
import { LoginQueue } from './login-queue.js';

export interface LoginProtectionOptions {
  /** Password checks (scrypt) running at once. Default 2. */
  maxConcurrentChecks?: number;
  /** Checks waiting, in total / from one address / for one user name; beyond, CONNACK 0x89 Server busy (3.1.x: 0x03). Defaults 200, 32, 8. */
  maxPendingChecks?: number;
  maxPendingPerAddress?: number;
  maxPendingPerUsername?: number;
  /** A check that waited this long (ms) is answered busy instead of run. Default 3000. */
  maxCheckWait?: number;
  /** Failed logins of one user name from one address within failureWindow that ban the pair (CONNACK 0x8A Banned, 3.1.x: 0x05). Default 10. */
  maxFailures?: number;
  /** Failed logins from one address within failureWindow that ban the address for checks not in the cache. Default 100. */
  maxAddressFailures?: number;
  /** Seconds. Default 60. */
  failureWindow?: number;
  /** Seconds a ban lasts. Default 300. */
  banTime?: number;
  /** Seconds a successful check is remembered (a keyed hash, never the password); 0 = never. Default 600. */
  cacheTime?: number;
  /**
   * ms a refused login (wrong password, banned, busy) waits for its CONNACK, as PAM's fail delay: a flooding
   * client then retries at most once per delay per connection, instead of as fast as the broker can refuse
   * (which overflows the listen backlog and delays everyone's TCP handshake). Default 1000; below hookTimeout.
   */
  failureDelay?: number;
}

export const LOGIN_PROTECTION_DEFAULTS: Required<LoginProtectionOptions> = {
  maxConcurrentChecks: 2,
  maxPendingChecks: 200,
  maxPendingPerAddress: 32,
  maxPendingPerUsername: 8,
  maxCheckWait: 3000,
  maxFailures: 10,
  maxAddressFailures: 100,
  failureWindow: 60,
  banTime: 300,
  cacheTime: 600,
  failureDelay: 1000,
};

export interface LoginAttempt {
  clientId: string;
  username: string;
  password: Buffer | undefined;
  remoteAddress: string;
}

/** The stored hash of a user (its text) and a check of a password against it. */
export interface PasswordSource {
  hashOf(username: string): string | undefined;
  verify(username: string, password: Buffer | undefined): Promise<boolean>;
}

export class LoginGuard {
  readonly queue: LoginQueue;
  readonly failures: FailureTracker;
  readonly cache: LoginCache;
  private readonly failureDelay: number;
  private busy = 0;
  private lastBusyLog = -Infinity;

  constructor(
    options: LoginProtectionOptions | undefined,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    const o = { ...LOGIN_PROTECTION_DEFAULTS, ...options };
    this.queue = new LoginQueue(
      {
        maxConcurrent: o.maxConcurrentChecks,
        maxPending: o.maxPendingChecks,
        maxPendingPerAddress: o.maxPendingPerAddress,
        maxPendingPerUsername: o.maxPendingPerUsername,
        maxWait: o.maxCheckWait,
      },
      { clean: (address) => !this.failures.addressSuspect(address), serial: (username) => this.failures.usernameSuspect(username) },
      now,
    );
    this.failures = new FailureTracker(
      { maxFailures: o.maxFailures, maxAddressFailures: o.maxAddressFailures, window: o.failureWindow * 1000, banTime: o.banTime * 1000, maxTracked: 100_000 },
      now,
      (ban) => this.logBan(ban),
    );
    this.cache = new LoginCache(o.cacheTime * 1000, 10_000, now);
    this.failureDelay = o.failureDelay;
  }

  /** A refusal, after failureDelay. */
  private refused<T extends boolean | number>(answer: T): T | Promise<T> {
    if (this.failureDelay <= 0) return answer;
    return new Promise((resolve) => setTimeout(resolve, this.failureDelay, answer));
  }

  /** true / false (bad user name or password) / a CONNACK reason code (banned, busy). */
  check(attempt: LoginAttempt, passwords: PasswordSource): boolean | number | Promise<boolean | number> {
    const { username, password } = attempt;
    const address = ipOf(attempt.remoteAddress);
    if (this.failures.pairBanned(address, username)) return this.refused(ReasonCode.Banned);
    const hash = passwords.hashOf(username);
    if (hash !== undefined && password !== undefined && this.cache.has(username, hash, password)) {
      this.failures.succeeded(address, username);
      return true;
    }
    if (this.failures.addressBanned(address)) {
      // Counted, so that guesses against the cache from a banned address soon ban the pair too.
      this.failures.failed(address, username);
      return this.refused(ReasonCode.Banned);
    }
    return this.queue.submit(address, username, () => passwords.verify(username, password)).then((result) => {
      if (result === 'busy') {
        this.logBusy();
        return this.refused(ReasonCode.ServerBusy);
      }
      if (result) {
        this.failures.succeeded(address, username);
        // The hash checked against may have been replaced meanwhile: remember the one that is current only if unchanged.
        if (hash !== undefined && password !== undefined && passwords.hashOf(username) === hash) this.cache.add(username, hash, password);
        return true;
      }
      this.failures.failed(address, username);
      return this.refused(false);
    });
  }

  /** After a reload: users whose entry changed must prove their new password. */
  forget(usernames: Iterable<string>): void {
    this.cache.forget(usernames);
  }

  private logBan(ban: Ban): void {
    const seconds = Math.round(ban.banTime / 1000);
    this.logger.warn(
      { address: ban.address, username: ban.username, failures: ban.failures, banTime: seconds },
      ban.kind === 'address'
        ? `too many failed logins: address banned for ${seconds} s (logins already proven recently still pass)`
        : `too many failed logins: this user name banned from this address for ${seconds} s`,
    );
  }

  private logBusy(): void {
    this.busy++;
    const now = this.now();
    if (now - this.lastBusyLog < 10_000) return;
    this.logger.warn({ refused: this.busy }, 'password checks queue full: logins refused with Server busy (a wrong-password flood?)');
    this.lastBusyLog = now;
    this.busy = 0;
  }
}
