// Tests observe the broker through its public API, MQTT, or broker.inspect (src/broker/inspect.ts), never
// through the core's Maps and stores, so that the core can change its insides without breaking them (issue 19).
// Driving the core in memory (FakeCore: core.openChannel, channel.receive, core.tick) is the transport seam and
// stays allowed; the unit test of a module builds that module itself (new TopicRouter(), new RetainedStore()).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/architecture/: the test sources are three levels up.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TESTS = join(ROOT, 'test');

/**
 * A read of the core's state: `core.sessions`, `core!.router`, `core?.retained`, `core['channels']`,
 * `(x.core as unknown as {...}).connected`.
 */
const INTERNAL = /\bcore\b[!?]?(?:\s+as\s+[^)]*\))?\s*(?:\??\.|\[['"`])(sessions|connected|channels|router|retained)\b/;

/** Files allowed to read the core's state, each with the reason. Keep this list short. */
const ALLOWED = new Map<string, string>([
  ['test/helpers/fake-core.ts', 'builds the in-memory core the tests drive (the transport seam); its `inspect` is how they observe it'],
  ['test/architecture/no-internals.test.ts', 'this test: it names what it looks for'],
]);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

const isComment = (line: string) => /^\s*(\/\/|\*|\/\*)/.test(line);

/** `file:line: text` of each line of `code` (comments aside) that reads the core's state. */
function internalReads(file: string, code: string): string[] {
  return code.split('\n').flatMap((line, i) => (!isComment(line) && INTERNAL.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : []));
}

describe('tests use the inspection API, not the core\'s internals', () => {
  it('the pattern finds the ways of reading the core\'s state, and not the inspection API or the transport seam', () => {
    for (const bad of [
      "assert.equal(h.broker.core.sessions.size, 1);",
      "const r = f.core.router as unknown as RouterInternals;",
      "await eventually(() => !broker.core.connected.has('x'));",
      "b.core.retained.get('t')",
      "f.core!.channels.size",
      "broker.core?.sessions.get('x')",
      "f.core['router'].size",
      "(h.broker.core as unknown as { sessions: Map<string, unknown> }).sessions",
    ]) assert.ok(INTERNAL.test(bad), `not caught: ${bad}`);
    for (const good of [
      "assert.equal(h.broker.inspect.counts().sessions, 1);",
      "this.channel = fake.core.openChannel(output, info);",
      "this.core.tick();",
      "const router = new TopicRouter(); router.match('a');",
      "const sessions = [...f.inspect.sessions()];",
      "const coreSessions = 1;",
    ]) assert.ok(!INTERNAL.test(good), `wrongly caught: ${good}`);
  });

  it('no test file outside the allowed ones reads core.sessions, connected, channels, router or retained', () => {
    const files = sources(TESTS);
    assert.ok(files.length > 50, `found the test sources in ${TESTS}`);
    const reads = files.flatMap((f) => {
      const file = relative(ROOT, f).split('\\').join('/');
      return ALLOWED.has(file) ? [] : internalReads(file, readFileSync(f, 'utf8'));
    });
    assert.deepEqual(reads, [], 'observe the broker through broker.inspect (FakeCore has one too), MQTT or the public API');
  });

  it('every allowed exception still exists (the list does not outlive its files)', () => {
    for (const file of ALLOWED.keys()) assert.ok(existsSync(join(ROOT, file)), `${file} is gone: take it off ALLOWED`);
  });
});
