// A copy of the repository in a temp directory (sources, scripts, package.json; node_modules linked), so the
// packaging tests can pack, build and start it without touching the dist/ the other tests run from.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/packaging). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export function hasNpm(): boolean {
  return spawnSync('npm', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * Copies what `npm pack` and `npm start` need; with `withBuild`, also the built dist/src (copied after the
 * sources, so it is newer than them and counts as current).
 */
export function copyRepo(withBuild: boolean): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-repo-'));
  for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'bin', 'scripts', 'src']) {
    cpSync(join(ROOT, entry), join(dir, entry), { recursive: true });
  }
  if (withBuild) cpSync(join(ROOT, 'dist', 'src'), join(dir, 'dist', 'src'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** npm without its update check and with no network unless a test asks. */
export function npmEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...extra };
}

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (killed after `timeoutMs`). */
export function exec(cmd: string, args: string[], cwd: string, timeoutMs = 120_000, env = npmEnv()): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The parent pid of a process (Linux /proc), or undefined when it is gone. */
export function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : Number(fields[1]);
  } catch {
    return undefined;
  }
}

/** True while the process exists (and is not a zombie). */
export const alive = (pid: number): boolean => parentOf(pid) !== undefined;

/** Waits until `check` is true, polling every 50 ms; false after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** Collects a child's output as JSON log lines (non-JSON lines kept as { text }). */
export function logLines(child: ChildProcess): { lines: Record<string, unknown>[]; text: () => string } {
  const lines: Record<string, unknown>[] = [];
  let all = '';
  let partial = '';
  const take = (d: Buffer) => {
    all += d;
    partial += d;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ text: line });
      }
    }
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  return { lines, text: () => all };
}

interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
}

/**
 * The app's lockfile: petrel from the tarball, its dependencies pinned as the repository's lockfile pins
 * them. `npm ci --offline` then takes every tarball from the npm cache (which the repository's own `npm ci`
 * filled) by its integrity; a plain `npm install --offline ./petrel.tgz` would also need the registry's
 * version lists (packuments), which `npm ci` does not fetch, so it fails offline with ENOTCACHED.
 */
export function appLockfile(tarball: string): object {
  const repoLock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  const file = `file:${tarball}`;
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { petrel: file } },
    'node_modules/petrel': {
      version: pkg.version,
      resolved: file,
      integrity: `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
    },
  };
  for (const [path, entry] of Object.entries(repoLock.packages)) if (path !== '' && !entry.dev && !entry.devOptional) packages[path] = entry;
  return { name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages };
}

/** `npm pack` of a repository copy into `destination`; returns the tarball's path and its file list. */
export async function pack(dir: string, destination: string): Promise<{ tarball: string; files: string[]; stderr: string }> {
  const packed = await exec('npm', ['pack', '--pack-destination', destination], dir, 240_000);
  if (packed.code !== 0) throw new Error(`npm pack failed: ${packed.stderr}`);
  const name = readdirSync(destination).find((f) => f.endsWith('.tgz'));
  if (!name) throw new Error(`npm pack wrote no tarball: ${packed.stderr}`);
  const tarball = join(destination, name);
  const listing = await exec('tar', ['tzf', tarball], destination);
  return { tarball, files: listing.stdout.split('\n').filter(Boolean), stderr: packed.stderr };
}
