// A suite skipped for a missing system package must count in the runner's "skipped" summary, so that a run
// without Chromium (or openssl, mosquitto, paho) does not read as complete: test/helpers/skip.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const HELPER = fileURLToPath(new URL('../helpers/skip.js', import.meta.url));

function summary(code: string): string {
  const file = fileURLToPath(new URL(`./skip-count-${process.pid}.mjs`, import.meta.url));
  writeFileSync(file, code);
  try {
    // a run of its own: without NODE_TEST_CONTEXT, which would send its results to this runner instead
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    return spawnSync(process.execPath, ['--test', '--test-reporter=tap', file], { encoding: 'utf8', env }).stdout;
  } finally {
    rmSync(file, { force: true });
  }
}

test("describeOrSkip: a suite skipped for a missing package is counted as skipped (node's describe({ skip }) is not)", () => {
  const counted = summary(`import { it } from 'node:test';\nimport { describeOrSkip } from ${JSON.stringify(HELPER)};\ndescribeOrSkip('browser', 'chromium not installed', () => { it('a', () => {}); it('b', () => {}); });\ndescribeOrSkip('runs', false, () => { it('c', () => {}); });\n`);
  assert.match(counted, /# SKIP chromium not installed/);
  assert.match(counted, /^# skipped 1$/m);
  assert.match(counted, /^# pass 1$/m);
  const bare = summary(`import { describe, it } from 'node:test';\ndescribe('browser', { skip: 'chromium not installed' }, () => { it('a', () => {}); });\n`);
  assert.match(bare, /^# skipped 0$/m, 'the reason for the helper: a skipped describe() is left out of the count');
});
