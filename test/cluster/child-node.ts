// A cluster node as a child process (`petrel broker -c config`), so a test can SIGSTOP and SIGKILL it, and a
// persistent session left offline on a node.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions } from 'mqtt';
import { startChildBroker, type ChildBroker } from '../helpers/child-broker.js';
import type { RedisServer } from '../helpers/redis.js';
import type { Ctx } from './nodes.js';

/** Node `name` as a child process on `redis`, with `cluster` options (and `config`) in its config file, `env` added to its environment; killed after the test. */
export async function childNode(t: Ctx, redis: RedisServer, name: string, cluster: Record<string, unknown>, config: Record<string, unknown> = {}, env: Record<string, string> = {}): Promise<ChildBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-node-'));
  const file = join(dir, 'petrel.config.json');
  writeFileSync(file, JSON.stringify({ ...config, cluster: { redis: redis.url, nodeName: name, ...cluster } }));
  const node = await startChildBroker(dir, ['-c', file, '--log-format', 'json'], env);
  t.after(async () => {
    if (node.child.signalCode === null && node.child.exitCode === null) node.child.kill('SIGCONT');
    await node.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  return node;
}

/** A persistent session subscribed to `filter` on the node at `port`, then offline (its client gone). */
export async function offlineSession(port: number, clientId: string, filter: string, options: IClientOptions): Promise<void> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0, ...options });
  await client.subscribeAsync(filter, { qos: 1 });
  await client.endAsync();
}
