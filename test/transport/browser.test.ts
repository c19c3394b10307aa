// A real browser: headless Chromium runs MQTT.js's browser bundle against the broker over ws:// and wss://.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it, type TestContext } from 'node:test';
import { createBroker, type ListenerOptions } from '../../src/server/broker.js';
import { hasCommand, makeCerts } from '../helpers/certs.js';
import { describeOrSkip } from '../helpers/skip.js';

const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find(hasCommand);
const certs = chromium ? makeCerts() : undefined;
const page = readFileSync(fileURLToPath(new URL('../../../test/fixtures/browser-page.html', import.meta.url)));
const bundle = readFileSync(join(createRequire(import.meta.url).resolve('mqtt/package.json'), '..', 'dist', 'mqtt.min.js'));

/** Serves the page and the bundle, opens the page in headless Chromium and resolves with what it reports. */
async function runInBrowser(t: TestContext, brokerUrl: string, version: number): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), 'petrel-chromium-'));
  let browser: ChildProcess | undefined;
  let server: Server | undefined;
  t.after(async () => {
    if (browser?.pid !== undefined && browser.exitCode === null && browser.signalCode === null) {
      const exited = new Promise((r) => browser!.once('exit', r));
      // Chromium runs helper processes: end its whole process group.
      process.kill(-browser.pid, 'SIGKILL');
      await exited;
    }
    server?.close();
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    } catch {
      // A helper process still finishing its last write; the temporary profile is left behind.
    }
  });
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the browser reported nothing within 20 s')), 20_000);
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (url.pathname === '/result') {
        res.end('ok');
        clearTimeout(timer);
        resolve(url.searchParams.get('text') ?? '');
        return;
      }
      const js = url.pathname === '/mqtt.min.js';
      res.writeHead(200, { 'content-type': js ? 'text/javascript' : 'text/html' });
      res.end(js ? bundle : page);
    }).listen(0, '127.0.0.1', () => {
      const { port } = server!.address() as { port: number };
      const target = `http://127.0.0.1:${port}/page.html?broker=${encodeURIComponent(brokerUrl)}&version=${version}`;
      browser = spawn(
        chromium!,
        [
          '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic', '--disable-sync',
          '--disable-background-networking', '--disable-component-update', '--ignore-certificate-errors',
          `--user-data-dir=${profile}`, target,
        ],
        { stdio: 'ignore', detached: true },
      );
      browser.once('error', reject);
    });
  });
}

describeOrSkip('MQTT.js in a browser (headless Chromium)', chromium ? (certs ? false : 'openssl not installed') : 'chromium not installed', () => {
  for (const [type, version] of [['ws', 4], ['ws', 5], ['wss', 5]] as const) {
    it(`connects over ${type}:// with MQTT ${version === 5 ? '5.0' : '3.1.1'}, subscribes, publishes and receives`, async (t) => {
      const listener: ListenerOptions =
        type === 'ws' ? { type: 'ws', host: '127.0.0.1', port: 0 } : { type: 'wss', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey };
      const broker = createBroker({ listeners: [listener] });
      await broker.listen();
      t.after(() => broker.close());
      const connected: string[] = [];
      broker.on('clientConnected', (c) => connected.push(`${c.clientId} ${c.protocolVersion}`));
      const result = await runInBrowser(t, `${type}://127.0.0.1:${broker.address().port}/mqtt`, version);
      assert.equal(result, 'browser/echo hello from the browser');
      assert.deepEqual(connected, [`browser-${version} ${version}`]);
    });
  }
});
