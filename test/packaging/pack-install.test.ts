// A packed tarball installs into an empty project without the network, with a working `npx petrel`,
// `import { connect } from 'petrel/client'` and `import { createBroker } from 'petrel'`, and their types.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { appLockfile, copyRepo, exec, hasNpm, pack, ROOT } from './helpers.js';

describe('npm pack → install into an empty project, offline', { skip: hasNpm() ? false : 'npm not found' }, () => {
  let repo: { dir: string; cleanup(): void };
  let app: string;
  let tarball: string;
  let files: string[];
  let prepackLog: string;

  before(async () => {
    // Built already (the copy's dist/src is current), with a compiled module whose source is gone.
    repo = copyRepo(true);
    writeFileSync(join(repo.dir, 'dist', 'src', 'renamed-module.js'), 'export {};\n');
    app = mkdtempSync(join(tmpdir(), 'petrel-app-'));
    const packed = await pack(repo.dir, app);
    tarball = packed.tarball;
    files = packed.files;
    prepackLog = packed.stderr;
  }, { timeout: 120_000 });
  after(() => {
    repo?.cleanup();
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it('prepack does not rebuild a current dist/, and leaves out compiled files without a source', () => {
    assert.doesNotMatch(prepackLog, /building dist/);
    assert.match(prepackLog, /removed dist\/src\/renamed-module\.js \(no source for it\)/);
    assert.ok(files.includes('package/dist/src/index.js'));
    assert.ok(!files.includes('package/dist/src/renamed-module.js'));
  });

  it('installs offline; npx petrel --version and the two entry points work', async (t) => {
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module', dependencies: { petrel: `file:${tarball}` } }));
    writeFileSync(join(app, 'package-lock.json'), JSON.stringify(appLockfile(tarball)));
    // --ignore-scripts: better-sqlite3 would compile SQLite from source here (about two minutes, no prebuilt binary
    // can be fetched); its native part loads only when a SQLite store opens, which this in-memory check never does
    // (test/storage covers it, built by the repository's own install).
    const install = await exec('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], app);
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

