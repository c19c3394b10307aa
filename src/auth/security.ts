// Built-in security composed with the user's hooks: listener admission (max connections,
// connection rate), the ban list, the password file and the ACL, in that order.
import type { Logger } from 'pino';
import type { AuthenticateRequest, BrokerHooks, ClientInfo, MaybePromise } from '../broker/hooks.js';
import { Acl, type AclOptions } from './acl.js';
import { AclReceiveCache, DEFAULT_RECEIVE_CACHE } from './acl-cache.js';
import { BanList, type BanOptions } from './bans.js';
import { TokenBucket } from './limits.js';
import { LoginGuard, type LoginProtectionOptions } from './login-guard.js';
import { PasswordFile } from './password-file.js';
import { watchFiles, type FileWatcher } from '../util/watch.js';

export interface SecurityOptions {
  /** Password file written by `petrel passwd` (salted scrypt hashes). Re-read when it changes. */
  passwordFile?: string;
  /** Access control rules (inline and/or a file, re-read when it changes). */
  acl?: AclOptions & {
    /** Disconnect a client whose publish or subscription is denied (5.0: DISCONNECT 0x87). Default false. */
    disconnectOnDenied?: boolean;
  };
  /** Clients refused at CONNECT with 0x8A (Banned). */
  bans?: BanOptions;
  /** Re-read the password and ACL files when they change (default true). */
  watchFiles?: boolean;
  /** How password-file checks are queued, rate-limited and cached against wrong-password floods (docs/security.md). */
  loginProtection?: LoginProtectionOptions;
}

/** What a listener tells the security layer about itself. */
export interface ListenerAdmission {
  /** Open connections on the listener, the one being admitted included. */
  connections(): number;
  maxConnections?: number;
  /** New connections per second accepted (CONNACK 0x9F above it). */
  maxConnectionRate?: number;
}

/** What a reload changed, for the broker to apply to the clients already connected and subscribed. */
export interface SecurityChanges {
  /** Users whose password file entry was removed or changed. */
  users: string[];
  /** The ACL as the reload left it, when its file was read anew; undefined otherwise. */
  acl: Acl | undefined;
}

export interface SecurityEnv {
  logger: Logger;
  /** Disconnects the live connection of `client` (if it is still that connection). */
  disconnect(client: ClientInfo, reasonCode: number, reason: string): void;
  /** Called after a reload that read new content (not after one that kept the previous). */
  reloaded?(changes: SecurityChanges): void;
  /** The broker's clock (ms), for the connection-rate buckets. */
  now?(): number;
}

export class Security {
  readonly passwords: PasswordFile | undefined;
  readonly acl: Acl | undefined;
  /** The ACL's read answers per (client, topic), for the check of every delivered message; undefined when off. */
  readonly receiveCache: AclReceiveCache | undefined;
  readonly bans: BanList;
  readonly hooks: BrokerHooks;
  /** Admission, bans and cache of password-file checks. */
  readonly logins: LoginGuard | undefined;
  private readonly admissions = new Map<string, { admission: ListenerAdmission; rate?: TokenBucket }>();
  private watcher: FileWatcher | undefined;

  constructor(
    private readonly options: SecurityOptions,
    private readonly user: BrokerHooks,
    private readonly env: SecurityEnv,
  ) {
    this.passwords = options.passwordFile ? new PasswordFile(options.passwordFile) : undefined;
    this.warnWeakHashes();
    this.logins = this.passwords ? new LoginGuard(options.loginProtection, env.logger) : undefined;
    this.acl = options.acl && (options.acl.rules?.length || options.acl.file || options.acl.default === 'deny') ? new Acl(options.acl) : undefined;
    const cacheSize = options.acl?.receiveCache ?? DEFAULT_RECEIVE_CACHE;
    this.receiveCache = this.acl && cacheSize > 0 ? new AclReceiveCache(this.acl, cacheSize) : undefined;
    this.bans = new BanList(options.bans);
    this.hooks = {
      authenticate: this.authenticate,
      authorizePublish: this.acl ? this.authorizePublish : user.authorizePublish,
      authorizeSubscribe: this.acl ? this.authorizeSubscribe : user.authorizeSubscribe,
      authorizeReceive: this.acl && !this.acl.strictSubscribe ? this.authorizeReceive : user.authorizeReceive,
    };
    const files = [options.passwordFile, options.acl?.file].filter((f): f is string => !!f);
    if (files.length && options.watchFiles !== false) this.watcher = watchFiles(files, () => this.reload());
  }

  /** Registers a listener's admission limits under its name. */
  addListener(name: string, admission: ListenerAdmission): void {
    const rate = admission.maxConnectionRate ? new TokenBucket(admission.maxConnectionRate, Math.max(1, admission.maxConnectionRate)) : undefined;
    this.admissions.set(name, { admission, rate });
  }

  removeListener(name: string): void {
    this.admissions.delete(name);
  }

  /** Re-reads the password file and the ACL file; a broken file is logged and the previous content kept. */
  reload(): void {
    const log = this.env.logger;
    const changes: SecurityChanges = { users: [], acl: undefined };
    if (this.passwords) {
      try {
        const { users, changed } = this.passwords.reload();
        changes.users = changed;
        this.logins?.forget(changed);
        log.info({ file: this.passwords.path, users, changed: changed.length }, 'password file reloaded');
        this.warnWeakHashes();
      } catch (err) {
        log.error({ error: (err as Error).message }, 'password file not reloaded; keeping the previous users');
      }
    }
    if (this.acl && this.options.acl?.file) {
      try {
        const rules = this.acl.reload();
        changes.acl = this.acl;
        log.info({ file: this.options.acl.file, rules }, 'ACL reloaded');
      } catch (err) {
        log.error({ error: (err as Error).message }, 'ACL not reloaded; keeping the previous rules');
      }
    }
    if (changes.users.length > 0 || changes.acl !== undefined) this.env.reloaded?.(changes);
  }

  private warnWeakHashes(): void {
    const weak = this.passwords?.weakUsers() ?? [];
    if (weak.length === 0) return;
    this.env.logger.warn(
      { file: this.passwords!.path, users: weak },
      'password file has Mosquitto 1.x $6$ hashes (one SHA-512, fast to guess): set those passwords again with petrel passwd',
    );
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private readonly authenticate = (req: AuthenticateRequest): MaybePromise<boolean | number> => {
    const gate = this.admissions.get(req.listener);
    if (gate) {
      const max = gate.admission.maxConnections;
      if (max !== undefined && gate.admission.connections() > max) {
        this.env.logger.warn({ listener: req.listener, maxConnections: max, address: req.remoteAddress }, 'connection refused: listener at maxConnections');
        return 0x97;
      }
      if (gate.rate && !gate.rate.take(this.env.now?.() ?? Date.now())) return 0x9f;
    }
    const banned = this.bans.check(req);
    if (banned) {
      this.env.logger.info({ clientId: req.clientId, username: req.username, address: req.remoteAddress, by: banned }, 'banned client refused');
      return 0x8a;
    }
    const passwords = this.passwords;
    // A certificate or an enhanced authentication exchange already proved who the client is.
    const proven = req.usernameFromCertificate || req.authenticationMethod !== undefined;
    if (passwords && req.username !== undefined && !proven && (passwords.has(req.username) || !this.user.authenticate)) {
      const username = req.username;
      const answer = this.logins!.check({ clientId: req.clientId, username, password: req.password, remoteAddress: req.remoteAddress }, passwords);
      const logged = (ok: boolean | number): boolean | number => {
        if (ok === false) this.env.logger.info({ clientId: req.clientId, username, address: req.remoteAddress }, 'bad username or password');
        return ok;
      };
      return typeof answer === 'object' ? answer.then(logged) : logged(answer);
    }
    return this.user.authenticate ? this.user.authenticate(req) : true;
  };

  private denied(client: ClientInfo, what: string, topic: string): void {
    this.env.logger.info({ clientId: client.clientId, username: client.username, topic }, `${what} denied by ACL`);
    if (this.options.acl?.disconnectOnDenied) {
      // After the PUBACK / SUBACK that the core is about to send.
      setImmediate(() => this.env.disconnect(client, 0x87, `${what} to ${topic} not authorized`));
    }
  }

  private readonly authorizeReceive: NonNullable<BrokerHooks['authorizeReceive']> = (client, topic) =>
    (this.receiveCache ? this.receiveCache.canReceive(client, topic) : this.acl!.canReceive(client, topic)) && (this.user.authorizeReceive === undefined || this.user.authorizeReceive(client, topic));

  private readonly authorizePublish: NonNullable<BrokerHooks['authorizePublish']> = (client, message) => {
    if (!this.acl!.canPublish(client, message.topic)) {
      this.denied(client, 'publish', message.topic);
      return false;
    }
    return this.user.authorizePublish ? this.user.authorizePublish(client, message) : true;
  };

  private readonly authorizeSubscribe: NonNullable<BrokerHooks['authorizeSubscribe']> = (client, subscription) => {
    if (!this.acl!.canSubscribe(client, subscription.topicFilter)) {
      this.denied(client, 'subscription', subscription.topicFilter);
      return false;
    }
    return this.user.authorizeSubscribe ? this.user.authorizeSubscribe(client, subscription) : true;
  };
}
