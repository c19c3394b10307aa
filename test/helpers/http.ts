// A broker with an MQTT listener and the HTTP listener on 127.0.0.1 (ports 0), a token file in a temporary
// directory, and a fetch wrapper that sends the token: for the tests of src/http.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { createBroker, type Broker, type BrokerOptions, type HttpListenerOptions } from '../../src/server/broker.js';

export interface HttpBroker {
  broker: Broker;
  mqttPort: number;
  /** "http://127.0.0.1:PORT" */
  base: string;
  token: string;
  tokenFile: string;
  dir: string;
  /** A request with the token; JSON body in and out. */
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; json: any; text: string; headers: Headers }>;
}

export const TEST_TOKEN = 'test-token-0123456789abcdef';

export async function startHttpBroker(t: TestContext, options: BrokerOptions = {}, http: Partial<HttpListenerOptions> = {}): Promise<HttpBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-http-'));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TEST_TOKEN + '\n', { mode: 0o600 });
  const broker = createBroker({
    tickInterval: 50,
    sysInterval: 0,
    ...options,
    listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }, { type: 'http', port: 0, tokenFile, ...http }],
  });
  t.after(async () => {
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await broker.listen();
  const base = `http://127.0.0.1:${broker.address(1).port}`;
  return {
    broker,
    mqttPort: broker.address(0).port,
    base,
    token: TEST_TOKEN,
    tokenFile,
    dir,
    api: (method, path, body, headers = {}) => request(base, method, path, body, { authorization: `Bearer ${TEST_TOKEN}`, ...headers }),
  };
}

export async function request(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

/** The value of one sample of a Prometheus text exposition: `metric(text, 'petrel_connections', { protocol: '5.0' })`. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}
