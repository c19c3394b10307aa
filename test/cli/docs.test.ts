// Runs the `js` examples of docs/client.md against a test broker, so the documentation stays true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createBroker } from '../../src/index.js';

const DOC = fileURLToPath(new URL('../../../docs/client.md', import.meta.url));
// inside the package, so `import 'petrel/client'` resolves through package.json "exports"
const SNIPPET_DIR = fileURLToPath(new URL('./', import.meta.url));

function runNode(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** What each runnable example must print (matched by a phrase of its code). */
const EXPECTED: [codePhrase: string, output: RegExp][] = [
  ["clientId: 'docs-example'", /^docs\/greeting hello QoS 1$/m],
  ["'docs/qos2'", /acknowledged: 0x(0|10)\ndocs\/a\/\+ granted QoS 1, docs\/b\/# granted QoS 1\nevent: docs\/a\/1 1 bytes\nping round trip [\d.]+ ms/],
  ['reconnectPeriod: 2000', /^30 \{ initialDelay: 2000 \}$/m],
  ['operationTimeout: 100', /^OPERATION_TIMEOUT publish to "a\/b" timed out after 100 ms \(not connected\)$/m],
  ["'mqtt://localhost:1'", /^ECONNREFUSED\nconnection refused: nothing listens on localhost:1 \(ECONNREFUSED\)\n {2}hint: is the broker running\?.*\nfalse$/m],
];

test('docs/client.md: every runnable js example runs and prints what it says', async (t) => {
  const b = createBroker({ port: 0, host: '127.0.0.1' });
  await b.listen();
  t.after(() => b.close());
  const url = `mqtt://127.0.0.1:${b.address().port}`;
  const blocks = [...readFileSync(DOC, 'utf8').matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length >= 4, 'the page has js examples');
  let ran = 0;
  for (const [i, code] of blocks.entries()) {
    if (code.includes('broker.example')) continue; // needs a real TLS broker and certificate files
    const expected = EXPECTED.find(([phrase]) => code.includes(phrase));
    assert.ok(expected, `example ${i + 1} has an expectation in this test:\n${code}`);
    const file = `${SNIPPET_DIR}docs-example-${i + 1}.mjs`;
    writeFileSync(file, code.replaceAll('mqtt://localhost:1883', url));
    t.after(() => rmSync(file, { force: true }));
    const r = await runNode(file);
    assert.equal(r.code, 0, `example ${i + 1} failed:\n${r.stderr}`);
    assert.match(r.stdout, expected[1], `example ${i + 1} printed:\n${r.stdout}`);
    ran++;
  }
  assert.equal(ran, EXPECTED.length);
});
