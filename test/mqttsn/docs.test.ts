// Runs the js example of docs/mqtt-sn.md against a broker with an MQTT-SN gateway, so the page stays true.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { validateConfig } from '../../src/config/config.js';
import { startBroker } from '../helpers/broker.js';

const DOC = fileURLToPath(new URL('../../../docs/mqtt-sn.md', import.meta.url));
// inside the package, so `import 'petrel/mqttsn'` resolves through package.json "exports"
const SNIPPET = fileURLToPath(new URL('./docs-example-mqttsn.mjs', import.meta.url));

test('docs/mqtt-sn.md: the js example runs against a gateway', async (t) => {
  const { broker } = await startBroker({ listeners: [{ type: 'mqttsn', host: '127.0.0.1', port: 0 }] });
  t.after(() => broker.close());
  const blocks = [...readFileSync(DOC, 'utf8').matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.equal(blocks.length, 1);
  writeFileSync(SNIPPET, blocks[0]!.replaceAll('mqttsn://127.0.0.1:1884', `mqttsn://127.0.0.1:${broker.address(0).port}`));
  t.after(() => rmSync(SNIPPET, { force: true }));
  const child = spawn(process.execPath, [SNIPPET], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await new Promise((r) => child.on('close', r));
  clearTimeout(timer);
  assert.equal(code, 0, stderr);
  assert.equal(broker.inspect.isConnected('sensor-1'), false, 'the example ended its connection');
});

test('docs/mqtt-sn.md: every yaml example is a valid broker config', () => {
  const blocks = [...readFileSync(DOC, 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length >= 1);
  for (const block of blocks) assert.doesNotThrow(() => validateConfig(parseYaml(block)), block);
});
