// The dashboard end to end in headless Chromium (Debian's chromium driven by playwright-core): it loads with
// no console errors, its client count follows MQTT clients connecting, a client's timeline shows a refused
// login with its reason, and kicking a client closes its connection.
// PETREL_SCREENSHOTS=docs/images also saves screenshots of the main pages there (for the documentation).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { setPassword } from '../../src/auth/password-file.js';
import { startHttpBroker, type HttpBroker } from '../helpers/http.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = process.env.PETREL_SCREENSHOTS;

async function client(t: TestContext, h: HttpBroker, options: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${h.mqttPort}`, { reconnectPeriod: 0, connectTimeout: 3000, ...options });
  t.after(() => c.end(true));
  return c;
}

async function openBrowser(t: TestContext): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const profile = mkdtempSync(join(tmpdir(), 'petrel-dashboard-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 860 } });
  t.after(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('dialog', (d) => void d.accept());
  return { context, page, problems };
}

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SHOTS, `dashboard-${name}.png`), fullPage: true });
}

describe('dashboard in headless Chromium', { skip: CHROMIUM ? false : 'chromium not installed' }, () => {
  it('signs in, follows connections, shows a refused login with its reason, kicks a client', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'petrel-dashboard-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const passwordFile = join(dir, 'passwd');
    await setPassword(passwordFile, 'meter', 'right-password');
    const h = await startHttpBroker(t, { passwordFile, allowAnonymous: true });
    const { page, problems } = await openBrowser(t);

    await page.goto(h.base + '/');
    await page.locator('#token-input').waitFor();
    // A wrong token is refused; the right one signs in.
    await page.fill('#token-input', 'not-the-token-0123456789');
    await page.click('#token-submit');
    await page.locator('#login-error', { hasText: 'refused' }).waitFor();
    // Chromium reports the refused request (401) on the console: that one is expected, nothing else.
    assert.deepEqual(problems.splice(0), ['console.error: Failed to load resource: the server responded with a status of 401 (Unauthorized)']);
    await page.fill('#token-input', h.token);
    await page.click('#token-submit');
    await page.locator('#stat-connected', { hasText: '0' }).waitFor();

    // The count follows an MQTT client connecting.
    const sensor = await client(t, h, { clientId: 'sensor-17', username: 'meter', password: 'right-password', protocolVersion: 5 });
    await sensor.subscribeAsync('plant/+/temperature', { qos: 1 });
    await page.locator('#stat-connected', { hasText: /^1$/ }).waitFor({ timeout: 5000 });
    await client(t, h, { clientId: 'gateway-2' });
    await page.locator('#stat-connected', { hasText: /^2$/ }).waitFor({ timeout: 5000 });

    if (SHOTS) await makeTraffic(t, h);
    await shot(page, 'overview');

    // A refused login: the timeline of its Client ID says so, with the code and the reason.
    await assert.rejects(client(t, h, { clientId: 'meter-9', username: 'meter', password: 'wrong-password', protocolVersion: 5 }));
    await page.goto(`${h.base}/#/clients/meter-9`);
    const refused = page.locator('#timeline .ev.refused').first();
    await refused.waitFor({ timeout: 5000 });
    assert.match(await refused.innerText(), /Refused: CONNACK 0x86 Bad User Name or Password[\s\S]*refused by authentication/);
    assert.equal(await page.locator('#client-status').innerText(), 'not connected');
    if (SHOTS) {
      // A richer timeline for the picture: the right password next, then a second connection taking over.
      await client(t, h, { clientId: 'meter-9', username: 'meter', password: 'right-password', protocolVersion: 5, will: { topic: 'plant/meter-9/status', payload: Buffer.from('offline'), qos: 1, retain: true } });
      await client(t, h, { clientId: 'meter-9', username: 'meter', password: 'right-password', protocolVersion: 5 });
      await page.locator('#timeline .ev.dropped', { hasText: 'takeover' }).waitFor({ timeout: 5000 });
      await page.locator('#client-status', { hasText: /^connected$/ }).waitFor({ timeout: 5000 });
    }
    await shot(page, 'timeline');

    // The clients page: search, then kick; the MQTT connection closes.
    await page.goto(`${h.base}/#/clients`);
    await page.locator('#clients tr[data-client-id="sensor-17"]').waitFor();
    await page.fill('#client-search', 'sensor');
    await page.locator('#clients tr[data-client-id="gateway-2"]').waitFor({ state: 'detached' });
    await shot(page, 'clients');
    const closed = new Promise<void>((r) => sensor.once('close', () => r()));
    let reason: number | undefined;
    sensor.on('disconnect', (p) => (reason = p.reasonCode));
    await page.click('#clients button[data-kick="sensor-17"]');
    await closed;
    assert.equal(reason, 0x98);
    await page.locator('#clients tr[data-client-id="sensor-17"]').waitFor({ state: 'detached', timeout: 5000 });
    await page.goto(`${h.base}/#/clients/sensor-17`);
    await page.locator('#timeline .ev.dropped', { hasText: 'administrative action' }).waitFor({ timeout: 5000 });

    for (const name of ['subscriptions', 'retained', 'bans']) {
      await page.goto(`${h.base}/#/${name}`);
      await page.locator(`#${name} ${name === 'bans' ? '.panel' : 'tbody tr'}`).first().waitFor();
      await shot(page, name);
    }
    assert.deepEqual(problems, []);
  });
});

/** Clients, subscriptions, retained messages, bans and a minute's worth of message rates, for the screenshots. */
async function makeTraffic(t: TestContext, h: HttpBroker): Promise<void> {
  const devices: MqttClient[] = [];
  for (const [i, site] of ['north', 'south', 'east'].entries()) {
    const c = await client(t, h, { clientId: `plc-${site}-0${i + 1}`, protocolVersion: i === 2 ? 4 : 5, keepalive: 30 });
    await c.subscribeAsync([`plant/${site}/commands`, 'plant/+/alarms'], { qos: 1 });
    devices.push(c);
  }
  const pub = devices[0]!;
  for (const site of ['north', 'south', 'east']) {
    await pub.publishAsync(`plant/${site}/temperature`, JSON.stringify({ celsius: 21.5, at: '2026-12-07T08:00:00Z' }), { retain: true, qos: 1 });
    await pub.publishAsync(`plant/${site}/status`, 'online', { retain: true });
  }
  await h.api('POST', '/api/v1/bans', { type: 'address', value: '203.0.113.0/24' });
  await h.api('POST', '/api/v1/bans', { type: 'clientId', value: 'old-firmware-7' });
  await h.api('POST', '/api/v1/bans', { type: 'username', value: 'mallory' });
  // A few seconds of varying load for the charts.
  const until = Date.now() + 30_000;
  let n = 0;
  while (Date.now() < until) {
    const burst = 20 + Math.round(15 * Math.sin(n++ / 3));
    for (let i = 0; i < burst; i++) pub.publish('plant/north/alarms', 'x');
    await new Promise((r) => setTimeout(r, 100));
  }
}
