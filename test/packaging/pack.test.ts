// `npm pack` makes a package that installs into an empty project without the network, with a working
// `npx petrel`, `import { connect } from 'petrel/client'` and `import { createBroker } from 'petrel'`;
// a checkout without a build says to run `npm run build` in one line.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyRepo, exec, hasNpm, ROOT } from './helpers.js';

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
function appLockfile(tarball: string): object {
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

describe('npm pack → install into an empty project, offline', { skip: hasNpm() ? false : 'npm not found' }, () => {
  let repo: { dir: string; cleanup(): void };
  let app: string;
  let tarball: string;
  let files: string[];

  before(async () => {
    // No dist/ in the copy: prepack must build it.
    repo = copyRepo(false);
    app = mkdtempSync(join(tmpdir(), 'petrel-app-'));
    const packed = await exec('npm', ['pack', '--pack-destination', app], repo.dir, 180_000);
    assert.equal(packed.code, 0, packed.stderr);
    const name = readdirSync(app).find((f) => f.endsWith('.tgz'));
    assert.ok(name, 'a tarball');
    tarball = join(app, name);
    const listing = await exec('tar', ['tzf', tarball], app);
    files = listing.stdout.split('\n').filter(Boolean);
  });
  after(() => {
    repo?.cleanup();
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it('the tarball holds the compiled library, its types and the launcher, not sources or tests', () => {
    for (const f of ['package/package.json', 'package/bin/petrel.js', 'package/dist/src/index.js', 'package/dist/src/index.d.ts', 'package/dist/src/client/index.js', 'package/dist/src/client/index.d.ts', 'package/dist/src/cli/main.js']) {
      assert.ok(files.includes(f), `${f} in the tarball`);
    }
    assert.deepEqual(
      files.filter((f) => /^package\/(src|test|bench|scripts|dist\/test|dist\/bench)\//.test(f) || f.endsWith('.map')),
      [],
    );
  });

  it('installs offline; npx petrel --version and the two entry points work', async (t) => {
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module', dependencies: { petrel: `file:${tarball}` } }));
    writeFileSync(join(app, 'package-lock.json'), JSON.stringify(appLockfile(tarball)));
    const install = await exec('npm', ['ci', '--offline', '--no-audit', '--no-fund'], app);
    if (install.code !== 0 && install.stderr.includes('ENOTCACHED')) {
      t.skip(`a dependency is not in the npm cache (run npm ci in the repository with the network first): ${install.stderr.split('\n')[0]}`);
      return;
    }
    assert.equal(install.code, 0, install.stderr);

    const version = await exec('npx', ['--no-install', 'petrel', '--version'], app);
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);

    // A broker and a client from the installed package, one message between them.
    writeFileSync(
      join(app, 'roundtrip.mjs'),
      `import { connect } from 'petrel/client';
import { createBroker } from 'petrel';
const broker = createBroker({ port: 0, host: '127.0.0.1' });
await broker.listen();
const client = await connect('mqtt://127.0.0.1:' + broker.address().port, { clientId: 'app' });
const got = new Promise((resolve) => client.on('message', (m) => resolve(m.topic + ' ' + Buffer.from(m.payload).toString())));
await client.subscribe('t/1');
await client.publish('t/1', 'hello');
console.log(await got);
await client.end();
await broker.close();
`,
    );
    const roundtrip = await exec(process.execPath, ['roundtrip.mjs'], app, 20_000);
    assert.equal(roundtrip.code, 0, roundtrip.stderr);
    assert.equal(roundtrip.stdout.trim(), 't/1 hello');

    // The types resolve through the package's exports map.
    mkdirSync(join(app, 'ts'));
    writeFileSync(join(app, 'ts', 'use.ts'), `import { connect, type ClientOptions } from 'petrel/client';\nimport { createBroker, type Broker } from 'petrel';\nconst b: Broker = createBroker({ port: 0 });\nconst o: ClientOptions = { clientId: 'x' };\nvoid connect; void b; void o;\n`);
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const typed = await exec(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'), 'ts/use.ts'], app);
    assert.equal(typed.code, 0, typed.stdout + typed.stderr);
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
