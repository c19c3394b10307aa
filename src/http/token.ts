// The bearer token of the HTTP API: read from a file (re-read when it changes and on reload()), or made once
// in the data directory. Compared in constant time; never logged.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { watchFiles, type FileWatcher } from '../util/watch.js';
import { TOKEN_FILE_NAME } from './options.js';

/** Shortest token accepted from a file: a guessable token is refused at start, not discovered later. */
const MIN_TOKEN_LENGTH = 16;

export class TokenFileError extends Error {}

/** The token of a file: its first non-blank line, trimmed. Throws a TokenFileError naming the file. */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TokenFileError(`tokenFile: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const token = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '') ?? '';
  if (token.length < MIN_TOKEN_LENGTH) throw new TokenFileError(`tokenFile: ${file} must hold a token of at least ${MIN_TOKEN_LENGTH} characters`);
  if (/\s/.test(token)) throw new TokenFileError(`tokenFile: ${file}: the token must not contain blanks`);
  return token;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class ApiToken {
  private expected: Buffer;
  private watcher: FileWatcher | undefined;

  private constructor(
    readonly file: string,
    token: string,
    private readonly logger: Logger,
  ) {
    this.expected = digest(token);
  }

  /**
   * The token of `tokenFile`, or of `<dataDir>/http-token`, which is created (mode 0600, in a directory made
   * with mode 0700) with a random token when missing. The file is watched unless `watch` is false.
   */
  static open(options: { tokenFile?: string; dataDir: string; logger: Logger; watch?: boolean }): ApiToken {
    const { logger } = options;
    let file = options.tokenFile;
    if (file === undefined) {
      file = resolve(join(options.dataDir, TOKEN_FILE_NAME));
      if (createIfMissing(file)) logger.info({ tokenFile: file }, 'HTTP API token created (send it as "Authorization: Bearer <token>")');
      else logger.info({ tokenFile: file }, 'HTTP API token read');
    }
    warnIfReadableByOthers(file, logger);
    const token = new ApiToken(file, readTokenFile(file), logger);
    if (options.watch !== false) token.watcher = watchFiles([file], () => token.reload());
    return token;
  }

  /** True when `authorization` is "Bearer <the token>". The comparison takes the same time whatever is sent. */
  check(authorization: string | undefined): boolean {
    const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
    // Hashes of equal length: timingSafeEqual needs them, and the token's length is not given away either.
    return timingSafeEqual(digest(match?.[1] ?? ''), this.expected) && match !== null;
  }

  /** Re-reads the file; a broken or missing file is logged and the previous token kept. */
  reload(): void {
    try {
      this.expected = digest(readTokenFile(this.file));
      this.logger.info({ tokenFile: this.file }, 'HTTP API token reloaded');
    } catch (err) {
      this.logger.error({ error: (err as Error).message }, 'HTTP API token not reloaded; keeping the previous one');
    }
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

/** Makes the token file when it does not exist; true when it was made. */
function createIfMissing(file: string): boolean {
  try {
    statSync(file);
    return false;
  } catch {
    // made below
  }
  mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
  try {
    // 'wx': never overwrite a token another process wrote meanwhile.
    writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new TokenFileError(`cannot create the HTTP API token file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function warnIfReadableByOthers(file: string, logger: Logger): void {
  try {
    if ((statSync(file).mode & 0o077) !== 0) logger.warn({ tokenFile: file }, 'HTTP API token file is readable by other users: chmod 600 it');
  } catch {
    // unreadable: readTokenFile says so
  }
}
