// The password file: one "username:hash" line per user, hashes are salted scrypt (node:crypto),
// never plain text. Written by `petrel passwd`, read (and re-read on change) by the broker.
import { Buffer } from 'node:buffer';
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

/** scrypt cost parameters of new hashes (N = 2^14: ~50 ms and 16 MiB per check, as OWASP suggests). */
export const SCRYPT_PARAMS = { N: 16384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function scryptAsync(password: Buffer | string, salt: Buffer, length: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, length, options, (err, key) => (err ? reject(err) : resolve(key))));
}

const scryptOptions = (h: { N: number; r: number; p: number }): ScryptOptions => ({ N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r + 1024 * 1024 });

/** "$scrypt$N=16384,r=8,p=1$<salt base64>$<hash base64>" for `password`, with a fresh random salt. */
export async function hashPassword(password: string | Buffer): Promise<string> {
  const salt = randomBytes(SALT_LENGTH);
  const hash = await scryptAsync(password, salt, KEY_LENGTH, scryptOptions(SCRYPT_PARAMS));
  const { N, r, p } = SCRYPT_PARAMS;
  return `$scrypt$N=${N},r=${r},p=${p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Parses a stored hash; throws a one-line error when it is not one of ours. */
export function parseHash(text: string): ParsedHash {
  const m = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$/.exec(text);
  if (!m) throw new Error('not a $scrypt$ hash (plain-text passwords are not accepted; use petrel passwd)');
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N < 2 || (N & (N - 1)) !== 0 || N > 2 ** 20 || r < 1 || r > 32 || p < 1 || p > 16) throw new Error('scrypt parameters out of range');
  const hash = Buffer.from(m[5]!, 'base64');
  if (hash.length < 16) throw new Error('hash too short');
  return { N, r, p, salt: Buffer.from(m[4]!, 'base64'), hash };
}

/** Checks `password` against a stored hash (constant-time comparison). */
export async function verifyPassword(password: Buffer | string, stored: string | ParsedHash): Promise<boolean> {
  const h = typeof stored === 'string' ? parseHash(stored) : stored;
  const key = await scryptAsync(password, h.salt, h.hash.length, scryptOptions(h));
  return timingSafeEqual(key, h.hash);
}

/** Parses the text of a password file. Throws "line N: ..." on a malformed line. */
export function parsePasswordFile(text: string): Map<string, ParsedHash> {
  const users = new Map<string, ParsedHash>();
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const colon = line.lastIndexOf(':');
    if (colon <= 0) throw new Error(`line ${i + 1}: expected "username:hash"`);
    const user = line.slice(0, colon);
    try {
      users.set(user, parseHash(line.slice(colon + 1).trim()));
    } catch (err) {
      throw new Error(`line ${i + 1} (user ${JSON.stringify(user)}): ${(err as Error).message}`);
    }
  });
  return users;
}

/** A hash no password matches, checked for unknown users so that they take as long as known ones. */
const DUMMY: ParsedHash = { ...SCRYPT_PARAMS, salt: Buffer.alloc(SALT_LENGTH, 1), hash: Buffer.alloc(KEY_LENGTH, 0) };

/** A password file loaded in memory; `reload()` re-reads it (keeping the old users if the new file is broken). */
export class PasswordFile {
  private users = new Map<string, ParsedHash>();

  constructor(readonly path: string) {
    this.users = this.read();
  }

  private read(): Map<string, ParsedHash> {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      throw new Error(`cannot read password file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    try {
      return parsePasswordFile(text);
    } catch (err) {
      throw new Error(`password file ${this.path}: ${(err as Error).message}`);
    }
  }

  /**
   * Re-reads the file; throws (and keeps the previous users) when it is unreadable or malformed. Returns the
   * users whose entry was removed or changed: whoever logged in with the old one has no valid password now.
   */
  reload(): { users: number; changed: string[] } {
    const before = this.users;
    this.users = this.read();
    const changed: string[] = [];
    for (const [name, old] of before) {
      const now = this.users.get(name);
      if (!now || now.N !== old.N || now.r !== old.r || now.p !== old.p || !now.salt.equals(old.salt) || !now.hash.equals(old.hash)) changed.push(name);
    }
    return { users: this.users.size, changed };
  }

  get size(): number {
    return this.users.size;
  }

  has(username: string): boolean {
    return this.users.has(username);
  }

  /** True when `username` is in the file and `password` matches its hash. */
  async verify(username: string, password: Buffer | undefined): Promise<boolean> {
    const h = this.users.get(username);
    if (!h || password === undefined) {
      await verifyPassword(password ?? '', DUMMY);
      return false;
    }
    return verifyPassword(password, h);
  }
}

// ---- editing (petrel passwd) ----

/** Adds or replaces `username` in the file (created when missing, mode 0600), keeping other lines. */
export async function setPassword(path: string, username: string, password: string): Promise<'added' | 'updated'> {
  checkUsername(username);
  if (password === '') throw new Error('empty password');
  const hash = await hashPassword(password);
  const lines = readLines(path);
  let updated = false;
  const out = lines.map((line) => {
    if (userOf(line) === username) {
      updated = true;
      return `${username}:${hash}`;
    }
    return line;
  });
  if (!updated) out.push(`${username}:${hash}`);
  writeAtomic(path, out);
  return updated ? 'updated' : 'added';
}

/** Removes `username`; false when it was not there. */
export function deleteUser(path: string, username: string): boolean {
  if (!existsSync(path)) throw new Error(`${path} does not exist`);
  const lines = readLines(path);
  const out = lines.filter((line) => userOf(line) !== username);
  if (out.length === lines.length) return false;
  writeAtomic(path, out);
  return true;
}

export function checkUsername(username: string): void {
  if (username === '') throw new Error('empty username');
  if (/[\r\n\0]/.test(username)) throw new Error('the username contains a line break or NUL');
  if (username.trimStart().startsWith('#')) throw new Error('a username cannot start with "#"');
}

function userOf(line: string): string | undefined {
  if (line.trim() === '' || line.trimStart().startsWith('#')) return undefined;
  const colon = line.lastIndexOf(':');
  return colon > 0 ? line.slice(0, colon) : undefined;
}

function readLines(path: string): string[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, 'utf8').split(/\r?\n/);
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function writeAtomic(path: string, lines: string[]): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, lines.length ? lines.join('\n') + '\n' : '', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}
