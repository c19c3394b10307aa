// Interoperability with Python's paho-mqtt (Debian's python3-paho-mqtt), 3.1.1 and 5.0.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startBroker } from '../helpers/broker.js';
import { describeOrSkip } from '../helpers/skip.js';

const run = promisify(execFile);
// Debian's python3 has the package; a python3 earlier on PATH (pyenv, venv) may not.
const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import paho.mqtt.client'], { stdio: 'ignore' }).status === 0);
const script = fileURLToPath(new URL('../../../test/fixtures/paho_roundtrip.py', import.meta.url));

describeOrSkip('paho-mqtt (Python)', python ? false : 'python3-paho-mqtt not installed', () => {
  for (const version of ['311', '5']) {
    it(`subscribes, publishes QoS 1 and 2 and receives its messages (MQTT ${version === '5' ? '5.0' : '3.1.1'})`, async (t) => {
      const { broker, port } = await startBroker();
      t.after(() => broker.close());
      const { stdout } = await run(python!, [script, String(port), version], { timeout: 15_000 });
      assert.deepEqual(stdout.trim().split('\n'), ['paho/one hello 1', 'paho/two world 2']);
    });
  }
});
