// `npm pack` in a checkout without a build: prepack compiles src/ into dist/src, and the tarball holds the
// compiled library, its types and the launcher, not sources or tests. A checkout without a build says to
// run `npm run build` in one line. (Installing the tarball: pack-install.test.ts.)
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyRepo, exec, hasNpm, pack, ROOT } from './helpers.js';

describe('npm pack without a build', { skip: hasNpm() ? false : 'npm not found' }, () => {
  let repo: { dir: string; cleanup(): void };
  let out: string;
  let files: string[];

  // A full TypeScript build of src/: about 10 s on an idle machine.
  before(async () => {
    repo = copyRepo(false);
    out = mkdtempSync(join(tmpdir(), 'petrel-pack-'));
    files = (await pack(repo.dir, out)).files;
  }, { timeout: 240_000 });
  after(() => {
    repo?.cleanup();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('prepack builds dist/src; the tarball holds the compiled library, its types and the launcher, not sources or tests', () => {
    for (const f of ['package/package.json', 'package/README.md', 'package/bin/petrel.js', 'package/dist/src/index.js', 'package/dist/src/index.d.ts', 'package/dist/src/client/index.js', 'package/dist/src/client/index.d.ts', 'package/dist/src/cli/main.js']) {
      assert.ok(files.includes(f), `${f} in the tarball`);
    }
    assert.deepEqual(
      // The dashboard's static files (src/http/dashboard: HTML, CSS, plain JS) are the one part of src/ served as is.
      files.filter((f) => (/^package\/(src|test|bench|scripts|dist\/test|dist\/bench)\//.test(f) && !f.startsWith('package/src/http/dashboard/')) || f.endsWith('.map')),
      [],
    );
  });
});

describe('a checkout without a build', () => {
  it('petrel prints one line saying to run `npm run build`, not a stack trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'petrel-nobuild-'));
    try {
      mkdirSync(join(dir, 'bin'));
      writeFileSync(join(dir, 'bin', 'petrel.js'), readFileSync(join(ROOT, 'bin', 'petrel.js')));
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
      const r = await exec(process.execPath, [join(dir, 'bin', 'petrel.js'), '--version'], dir);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, 'petrel: not built yet: run `npm run build` (or `npm start`) first\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
