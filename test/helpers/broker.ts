// Starts a broker on 127.0.0.1 with an ephemeral port for one test.
import { createBroker, type Broker, type BrokerOptions } from '../../src/server/broker.js';

export async function startBroker(options: BrokerOptions = {}): Promise<{ broker: Broker; port: number; url: string }> {
  // No $SYS topics unless a test asks: they would add retained messages to every count.
  const broker = createBroker({ host: '127.0.0.1', port: 0, tickInterval: 50, sysInterval: 0, ...options });
  await broker.listen();
  const port = broker.address().port;
  return { broker, port, url: `mqtt://127.0.0.1:${port}` };
}

export const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true (or throws after timeoutMs). */
export async function eventually(check: () => boolean, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}
