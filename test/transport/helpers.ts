// Shared by the transport, auth and config tests: a broker with a captured log, MQTT.js connections.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Broker, type BrokerOptions } from '../../src/server/broker.js';

export interface LoggedBroker {
  broker: Broker;
  logs: Record<string, unknown>[];
  /** Log lines whose msg contains `text`. */
  logged(text: string): Record<string, unknown>[];
}

/** A broker whose pino log is collected in memory; call `await broker.listen()` yourself or use start(). */
export async function startLogged(options: BrokerOptions): Promise<LoggedBroker> {
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const broker = createBroker({ tickInterval: 50, logger, sysInterval: 0, ...options });
  await broker.listen();
  return { broker, logs, logged: (text) => logs.filter((l) => String(l.msg).includes(text)) };
}

/** Connects with MQTT.js (no reconnect); rejects with the error (or "closed") when the connection fails. */
export function connect(url: string, options: IClientOptions = {}, timeoutMs = 3000): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: timeoutMs, ...options });
    const timer = setTimeout(() => {
      client.end(true);
      reject(new Error('timeout'));
    }, timeoutMs + 500);
    const fail = (err: Error) => {
      clearTimeout(timer);
      client.end(true);
      reject(err);
    };
    client.once('connect', () => {
      clearTimeout(timer);
      client.removeAllListeners('error');
      client.on('error', () => {});
      resolve(client);
    });
    client.once('error', fail);
    client.once('close', () => fail(new Error('closed')));
  });
}

/** Subscribes and waits for the SUBACK; returns the granted QoS / codes. */
export async function subscribe(client: MqttClient, topic: string, qos: 0 | 1 | 2 = 0): Promise<number[]> {
  try {
    const granted = await client.subscribeAsync(topic, { qos });
    return granted.map((g) => g.qos);
  } catch (err) {
    // MQTT.js rejects a SUBACK with a failure code; the codes are on the packet.
    const codes = (err as { packet?: { granted?: (number | { qos: number })[] } }).packet?.granted;
    if (!codes) throw err;
    return codes.map((g) => (typeof g === 'number' ? g : g.qos));
  }
}

/** The next message on `client` (for `topic` when given), or rejects after timeoutMs. */
export function nextMessage(client: MqttClient, topic?: string, timeoutMs = 2000): Promise<{ topic: string; payload: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error(`no message${topic ? ` on ${topic}` : ''} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (t: string, payload: Buffer) => {
      if (topic !== undefined && t !== topic) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve({ topic: t, payload: payload.toString() });
    };
    client.on('message', onMessage);
  });
}

/** Resolves with the messages received on `client` during `ms`. */
export async function collect(client: MqttClient, ms: number): Promise<string[]> {
  const got: string[] = [];
  const on = (t: string, p: Buffer) => got.push(`${t}:${p.toString()}`);
  client.on('message', on);
  await new Promise((r) => setTimeout(r, ms));
  client.off('message', on);
  return got;
}

export async function end(...clients: (MqttClient | undefined)[]): Promise<void> {
  await Promise.all(clients.map((c) => c?.endAsync(true).catch(() => {})));
}
