// `npm start`: no rebuild when no source changed, and the broker gets the signals: npm's own child is the
// broker (no shell between them to die and leave it running), SIGTERM to npm stops it, SIGHUP reaches it,
// and when npm itself is killed the broker shuts down rather than running on as an orphan.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { alive, copyRepo, hasNpm, logLines, npmEnv, parentOf, waitFor } from './helpers.js';

describe('npm start', { skip: hasNpm() ? false : 'npm not found', timeout: 120_000 }, () => {
  let repo: { dir: string; cleanup(): void };
  before(() => {
    repo = copyRepo(true);
  });
  after(() => repo?.cleanup());

  /** `npm start` on a free port; resolves once the broker logs that it listens. */
  async function npmStart(t: { after(fn: () => void): void }) {
    const npm = spawn('npm', ['start', '--', '--port', '0', '--host', '127.0.0.1'], { cwd: repo.dir, env: npmEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const out = logLines(npm);
    const exited = new Promise<number | null>((resolve) => npm.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
    let brokerPid = 0;
    // Whatever an assertion left running goes (by pid) when the test ends.
    t.after(() => {
      if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
      if (brokerPid && alive(brokerPid)) process.kill(brokerPid, 'SIGKILL');
    });
    const ok = await waitFor(() => out.lines.some((l) => l.msg === 'listening'), 20_000);
    assert.ok(ok, `the broker did not start: ${out.text()}`);
    brokerPid = out.lines.find((l) => l.msg === 'listening')!.pid as number;
    return { npm, out, exited, brokerPid };
  }

  it('starts without building when no source changed; the broker is npm\'s own child', async (t) => {
    const { npm, out, exited, brokerPid } = await npmStart(t);
    assert.doesNotMatch(out.text(), /building dist/);
    assert.equal(parentOf(brokerPid), npm.pid, 'no shell between npm and the broker');
    npm.kill('SIGINT');
    await exited;
    assert.ok(await waitFor(() => !alive(brokerPid), 5000), 'the broker exits on SIGINT to npm');
    assert.ok(out.lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGINT'));
  });

  it('SIGHUP reaches the broker (reload logged); SIGTERM to npm stops it, no orphan', async (t) => {
    const { npm, out, exited, brokerPid } = await npmStart(t);
    process.kill(brokerPid, 'SIGHUP');
    assert.ok(await waitFor(() => out.lines.some((l) => String(l.msg).startsWith('SIGHUP: reloading')), 5000), out.text());
    assert.ok(alive(brokerPid), 'SIGHUP does not stop the broker');
    npm.kill('SIGTERM');
    await exited;
    assert.ok(await waitFor(() => !alive(brokerPid), 5000), 'the broker exits on SIGTERM to npm');
    assert.ok(out.lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'), out.text());
    assert.ok(out.lines.some((l) => l.msg === 'broker closed'), 'a clean shutdown');
  });

  it('npm killed outright (SIGKILL): the broker notices and shuts down', async (t) => {
    const { npm, out, exited, brokerPid } = await npmStart(t);
    npm.kill('SIGKILL');
    await exited;
    assert.ok(await waitFor(() => !alive(brokerPid), 5000), `the broker is left running as an orphan: ${out.text()}`);
  });

  it('a changed source (and only that) makes the start script rebuild', async () => {
    const build = (await import(pathToFileURL(join(repo.dir, 'scripts', 'build.js')).href)) as { staleReason(): string | undefined };
    assert.equal(build.staleReason(), undefined);
    const future = new Date(Date.now() + 60_000);
    utimesSync(join(repo.dir, 'src', 'version.ts'), future, future);
    assert.equal(build.staleReason(), 'src/version.ts changed');
  });
});
