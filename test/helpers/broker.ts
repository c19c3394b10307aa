// Starts a broker on 127.0.0.1 with an ephemeral port for one test.
import { createBroker, type Broker, type BrokerOptions } from '../../src/server/broker.js';

export async function startBroker(options: BrokerOptions = {}): Promise<{ broker: Broker; port: number; url: string }> {
  // No $SYS topics unless a test asks: they would add retained messages to every count.
  const broker = createBroker({ host: '127.0.0.1', port: 0, tickInterval: 50, sysInterval: 0, ...options });
  await broker.listen();
  const port = broker.address().port;
  return { broker, port, url: `mqtt://127.0.0.1:${port}` };
}

// Re-exported for the tests that import them from here.
export { delay, eventually } from './wait.js';
