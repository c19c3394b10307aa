#!/usr/bin/env node
// Compiles src/ into dist/src with tsc, only when a source is newer than its output.
//   node scripts/build.js          build if stale (`prepare`: npm ci and git installs leave a working CLI)
//   node scripts/build.js --prune  also delete outputs whose source is gone (`prepack`: the tarball holds
//                                  exactly what src/ compiles to, not what a renamed module left behind)
//   node scripts/build.js --clean  delete dist/src, then build
// `npm start` calls buildIfStale() itself; `npm run build` still compiles everything (src, test, bench).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(root, 'src');
const OUT = join(root, 'dist', 'src');
/** Left by a build that failed (tsc emits despite type errors): the next run builds again. */
const FAILED = join(root, 'dist', '.build-failed');
/** Settings whose change makes every output stale. */
const SETTINGS = ['tsconfig.json', 'tsconfig.build.json'].map((f) => join(root, f));

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

const mtime = (path) => statSync(path, { throwIfNoEntry: false })?.mtimeMs;

/** Why dist/src must be rebuilt ("src/cli/main.ts changed", ...), or undefined when it is current. */
export function staleReason() {
  if (existsSync(FAILED)) return 'the last build failed';
  let oldestOutput = Infinity;
  for (const source of sources(SRC)) {
    const output = join(OUT, relative(SRC, source)).replace(/\.ts$/, '.js');
    const built = mtime(output);
    if (built === undefined) return `${relative(root, output)} is missing`;
    if (mtime(source) > built) return `${relative(root, source)} changed`;
    oldestOutput = Math.min(oldestOutput, built);
  }
  for (const file of SETTINGS) if ((mtime(file) ?? 0) > oldestOutput) return `${relative(root, file)} changed`;
  return undefined;
}

/** Runs tsc on src/; returns its exit status (0 when built). */
export function build({ clean = false } = {}) {
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    console.error('petrel: cannot build: TypeScript is not installed (run `npm ci` with dev dependencies, or install a packed tarball, which ships dist/)');
    return 1;
  }
  if (clean) rmSync(OUT, { recursive: true, force: true });
  const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
  const status = result.status ?? 1;
  if (status === 0) rmSync(FAILED, { force: true });
  else writeFileSync(FAILED, '');
  return status;
}

/**
 * Deletes compiled files (.js, .d.ts, maps) in dist/src that no source in src/ compiles to (a module moved or
 * deleted since the last build). Other files (assets a build step copies there) are left alone.
 */
export function prune() {
  if (!existsSync(OUT)) return [];
  const expected = new Set(sources(SRC).flatMap((source) => {
    const base = join(OUT, relative(SRC, source)).replace(/\.ts$/, '');
    return [`${base}.js`, `${base}.js.map`, `${base}.d.ts`, `${base}.d.ts.map`];
  }));
  const stray = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (/\.(js|d\.ts)(\.map)?$/.test(e.name) && !expected.has(path)) stray.push(path);
    }
  };
  walk(OUT);
  for (const path of stray) rmSync(path);
  return stray.map((path) => relative(root, path));
}

/** Builds when a source changed; returns 0 when dist/src is current. */
export function buildIfStale({ quiet = false } = {}) {
  const why = staleReason();
  if (why === undefined) return 0;
  if (!quiet) console.error(`petrel: building dist/ (${why})`);
  return build();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes('--clean')) process.exitCode = build({ clean: true });
  else {
    if (process.argv.includes('--prune')) for (const file of prune()) console.error(`petrel: removed ${file} (no source for it)`);
    process.exitCode = buildIfStale();
  }
}
