// One broker per data directory: a lock file holding the owner's pid. A second broker refuses to start and
// names the first; a lock left by a process that is gone (kill -9) is taken over.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { StorageError } from './schema.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Lock files held by this process: a second broker in the same process is refused too. */
const held = new Set<string>();

export class DirectoryLock {
  /** A process that exits without closing the broker (a start-up that failed) leaves no lock behind. */
  private readonly onExit = (): void => this.release();

  private constructor(readonly file: string) {
    process.once('exit', this.onExit);
  }

  static acquire(file: string, dir: string): DirectoryLock {
    for (let attempt = 0; attempt < 2; attempt++) {
      let fd: number;
      try {
        fd = openSync(file, 'wx');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST') throw new StorageError(`data directory ${dir} is not writable (${code ?? (err as Error).message}): choose another --data-dir or fix its permissions`);
        let owner: { pid?: number; host?: string } = {};
        try {
          owner = JSON.parse(readFileSync(file, 'utf8')) as typeof owner;
        } catch {
          // Half-written by a process that died while taking it: stale.
        }
        const mine = owner.pid === process.pid && held.has(file);
        if (mine || (typeof owner.pid === 'number' && owner.pid !== process.pid && (owner.host !== undefined && owner.host !== hostname() ? true : alive(owner.pid)))) {
          throw new StorageError(`data directory ${dir} is in use by another broker (pid ${owner.pid}${owner.host ? ` on ${owner.host}` : ''}, lock file ${file}); stop it or choose another --data-dir`);
        }
        unlinkSync(file); // stale: its owner is gone
        continue;
      }
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
      closeSync(fd);
      held.add(file);
      return new DirectoryLock(file);
    }
    throw new StorageError(`data directory ${dir}: could not take the lock file ${file}`);
  }

  release(): void {
    process.off('exit', this.onExit);
    held.delete(this.file);
    try {
      unlinkSync(this.file);
    } catch {
      // already gone
    }
  }
}
