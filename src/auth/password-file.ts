// The password file: one "username:hash" line per user, hashes are salted scrypt (node:crypto),
// never plain text. Written by `petrel passwd`, read (and re-read on change) by the broker. Files made by
// `mosquitto_passwd` are read too ($7$ PBKDF2-SHA512 of Mosquitto 2, $6$ SHA-512 of Mosquitto 1.x), so a
// Mosquitto installation moves over with its users.
import { Buffer } from 'node:buffer';
import { createHash, pbkdf2, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

/** scrypt cost parameters of new hashes (N = 2^14: ~50 ms and 16 MiB per check, as OWASP suggests). */
export const SCRYPT_PARAMS = { N: 16384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;

type ParsedHash = (
  | { kind: 'scrypt'; N: number; r: number; p: number }
  /** mosquitto_passwd 2.x: "$7$<iterations>$<salt>$<hash>", PBKDF2-HMAC-SHA512. */
  | { kind: 'pbkdf2-sha512'; iterations: number }
  /** mosquitto_passwd 1.x: "$6$<salt>$<hash>", one SHA-512 of password and salt: weak, accepted to migrate. */
  | { kind: 'sha512' }
) & { salt: Buffer; hash: Buffer; /** As written in the file (a reload compares it). */ text: string };

const B64 = '([A-Za-z0-9+/]+=*)';
const MOSQUITTO_PBKDF2 = new RegExp(`^\\$7\\$(\\d+)\\$${B64}\\$${B64}$`);
const MOSQUITTO_SHA512 = new RegExp(`^\\$6\\$${B64}\\$${B64}$`);

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

/** Parses a stored hash; throws a one-line error when it is not one of ours or Mosquitto's. */
export function parseHash(text: string): ParsedHash {
  const mosquitto = parseMosquittoHash(text);
  if (mosquitto) return mosquitto;
  const m = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$/.exec(text);
  if (!m) throw new Error('not a $scrypt$ hash, nor a mosquitto_passwd $7$ or $6$ one (plain-text passwords are not accepted; use petrel passwd)');
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N < 2 || (N & (N - 1)) !== 0 || N > 2 ** 20 || r < 1 || r > 32 || p < 1 || p > 16) throw new Error('scrypt parameters out of range');
  const hash = Buffer.from(m[5]!, 'base64');
  if (hash.length < 16) throw new Error('hash too short');
  return { kind: 'scrypt', N, r, p, salt: Buffer.from(m[4]!, 'base64'), hash, text };
}

function parseMosquittoHash(text: string): ParsedHash | undefined {
  const pbkdf2Match = MOSQUITTO_PBKDF2.exec(text);
  const sha512Match = pbkdf2Match ? undefined : MOSQUITTO_SHA512.exec(text);
  if (!pbkdf2Match && !sha512Match) return undefined;
  const iterations = pbkdf2Match ? Number(pbkdf2Match[1]) : 1;
  // Bounded so that one CONNECT cannot cost seconds of CPU (mosquitto_passwd uses 101 by default).
  if (iterations < 1 || iterations > 1_000_000) throw new Error('PBKDF2 iterations out of range (1 to 1000000)');
  const [salt, hash] = (pbkdf2Match ? [pbkdf2Match[2]!, pbkdf2Match[3]!] : [sha512Match![1]!, sha512Match![2]!]).map((b) => Buffer.from(b, 'base64')) as [Buffer, Buffer];
  if (hash.length !== 64) throw new Error('a mosquitto_passwd hash must be 64 bytes of SHA-512');
  return pbkdf2Match ? { kind: 'pbkdf2-sha512', iterations, salt, hash, text } : { kind: 'sha512', salt, hash, text };
}

/** Users whose hash is the weak single SHA-512 of Mosquitto 1.x (worth hashing again with petrel passwd). */
export const isWeakHash = (h: ParsedHash): boolean => h.kind === 'sha512';

/** Checks `password` against a stored hash (constant-time comparison). */
export async function verifyPassword(password: Buffer | string, stored: string | ParsedHash): Promise<boolean> {
  const h = typeof stored === 'string' ? parseHash(stored) : stored;
  let key: Buffer;
  if (h.kind === 'scrypt') {
    key = await scryptAsync(password, h.salt, h.hash.length, scryptOptions(h));
  } else if (h.kind === 'pbkdf2-sha512') {
    key = await new Promise<Buffer>((resolve, reject) => pbkdf2(password, h.salt, h.iterations, 64, 'sha512', (err, k) => (err ? reject(err) : resolve(k))));
  } else {
    key = createHash('sha512').update(password).update(h.salt).digest();
  }
  return timingSafeEqual(key, h.hash);
}

/** Parses the text of a password file. Throws "line N: ..." on a malformed line. */
export function parsePasswordFile(text: string): Map<string, ParsedHash> {
  const users = new Map<string, ParsedHash>();
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const colon = line.lastIndexOf(':');
    if (colon <= 0) throw new Error(`line ${i + 1}: expected "username:hash"`);
    // Blanks around the name are not part of it (Mosquitto trims them too).
    const user = line.slice(0, colon).trim();
    try {
      users.set(user, parseHash(line.slice(colon + 1).trim()));
    } catch (err) {
      throw new Error(`line ${i + 1} (user ${JSON.stringify(user)}): ${(err as Error).message}`);
    }
  });
  return users;
}

/** A hash no password matches, checked for unknown users so that they take as long as known ones. */
const DUMMY: ParsedHash = { kind: 'scrypt', ...SCRYPT_PARAMS, salt: Buffer.alloc(SALT_LENGTH, 1), hash: Buffer.alloc(KEY_LENGTH, 0), text: '' };

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
      if (now?.text !== old.text) changed.push(name);
    }
    return { users: this.users.size, changed };
  }

  get size(): number {
    return this.users.size;
  }

  /** Users whose hash is Mosquitto 1.x's single SHA-512 (fast to guess: worth `petrel passwd` again). */
  weakUsers(): string[] {
    return [...this.users].filter(([, h]) => isWeakHash(h)).map(([name]) => name);
  }

  has(username: string): boolean {
    return this.users.has(username);
  }

  /** The stored hash of `username` as written in the file (a cache of checks is keyed on it). */
  hashOf(username: string): string | undefined {
    return this.users.get(username)?.text;
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
  // "user:hash": Mosquitto cannot read such a line and mosquitto_passwd refuses the name
  if (username.includes(':')) throw new Error('a username cannot contain ":" (it separates the name from the hash in the file; mosquitto_passwd refuses it too)');
}

function userOf(line: string): string | undefined {
  if (line.trim() === '' || line.trimStart().startsWith('#')) return undefined;
  const colon = line.lastIndexOf(':');
  return colon > 0 ? line.slice(0, colon).trim() : undefined;
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
