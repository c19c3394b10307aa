// `petrel broker --log-format pretty|json`: JSON lines by default when stdout is not a terminal (log
// shipping), readable lines on request, and a one-line error for anything else.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { defaultLogFormat } from '../../src/runtime/logger.js';
import { BIN, run } from '../cli/cli-process.js';

/** Starts the broker with `args`, waits for its "listening" line on stdout, stops it with SIGTERM; returns stdout. */
function brokerOutput(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'broker', '--port', '0', '--host', '127.0.0.1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no "listening" line: ${out}`));
    }, 15_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('listening')) child.kill('SIGTERM');
    });
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describe('--log-format', () => {
  it('defaults to JSON lines when stdout is not a terminal, pretty in one', () => {
    assert.equal(defaultLogFormat(false), 'json');
    assert.equal(defaultLogFormat(true), 'pretty');
  });

  it('piped without the flag, and with json: every line is a JSON object with level, time, msg', async () => {
    for (const args of [[], ['--log-format', 'json']]) {
      const lines = (await brokerOutput(args)).trim().split('\n');
      const parsed = lines.map((l) => JSON.parse(l) as { level: number; time: number; msg: string; port?: number });
      assert.ok(parsed.every((p) => typeof p.level === 'number' && typeof p.time === 'number' && typeof p.msg === 'string'));
      const listening = parsed.find((p) => p.msg === 'listening');
      assert.ok(listening && listening.port! > 0);
    }
  });

  it('pretty: readable lines even when piped, no JSON', async () => {
    const out = await brokerOutput(['--log-format', 'pretty']);
    const line = out.split('\n').find((l) => l.includes('listening'));
    assert.ok(line, out);
    assert.throws(() => JSON.parse(line));
    assert.match(line, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO.*listening/);
  });

  it('anything else: one line naming the flag, exit code 2', async () => {
    const r = await run(['broker', '--log-format', 'xml', '--port', '0']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'petrel: config: --log-format: must be pretty or json (got "xml")\n');
  });
});
