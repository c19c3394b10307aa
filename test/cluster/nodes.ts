// Nodes of a cluster in the test process: brokers (port 0) with the `cluster` option on the test's Redis,
// MQTT.js clients to them, and waits on what a node has learnt (broker.inspect.cluster()).
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { createBroker, type Broker, type BrokerOptions } from '../../src/server/broker.js';
import type { ClusterView } from '../../src/cluster/cluster.js';
import type { ClusterOptions, ClusterRedis } from '../../src/cluster/options.js';
import { eventually } from '../helpers/wait.js';

export interface Node {
  broker: Broker;
  name: string;
  port: number;
  /** The cluster's key prefix in Redis. */
  prefix: string;
  view(): ClusterView;
  mqtt(clientId: string, options?: IClientOptions): Promise<MqttClient>;
  /** Like mqtt(), with the CONNACK's Session Present and the messages received from the first one on. */
  session(clientId: string, options?: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean; got: IPublishPacket[] }>;
}

/** Where the nodes' Redis is: a RedisServer (its URL), or a Sentinel / Redis Cluster config (test/helpers/redis-ha.ts). */
export interface RedisAt {
  readonly url?: string;
  readonly config?: ClusterRedis;
}

export interface Ctx {
  after: (fn: () => unknown) => void;
}

let clusterCounter = 0;

/** `names.length` nodes on `redis`, each under a fresh key prefix per call (tests never see each other's). */
export async function startNodes(t: Ctx, redis: RedisAt, names: string[], cluster: Partial<ClusterOptions> = {}, options: BrokerOptions = {}): Promise<Node[]> {
  const prefix = cluster.prefix ?? `t${process.pid}x${clusterCounter++}`;
  const nodes: Node[] = [];
  for (const name of names) nodes.push(await startNode(t, redis, name, { ...cluster, prefix }, options));
  await eventually(() => nodes.every((n) => n.view().nodes.length === names.length), 5000, 'every node to see the others');
  return nodes;
}

export async function startNode(t: Ctx, redis: RedisAt, name: string, cluster: Partial<ClusterOptions>, options: BrokerOptions = {}): Promise<Node> {
  const broker = createBroker({ port: 0, host: '127.0.0.1', sysInterval: 0, cluster: { redis: redis.config ?? redis.url!, nodeName: name, heartbeatInterval: 100, ...cluster }, ...options });
  await broker.listen();
  let closed = false;
  const clients: MqttClient[] = [];
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    await broker.close();
  };
  t.after(close);
  const port = broker.address().port;
  return {
    broker,
    name,
    port,
    prefix: (broker.inspect.cluster() as ClusterView).cluster,
    view: () => broker.inspect.cluster() as ClusterView,
    async mqtt(clientId, opts = {}) {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0, protocolVersion: 4, ...opts });
      clients.push(c);
      return c;
    },
    session(clientId, opts = {}) {
      const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0, protocolVersion: 4, ...opts });
      clients.push(c);
      const got = inbox(c);
      return new Promise((resolve, reject) => {
        c.once('connect', (connack) => resolve({ client: c, sessionPresent: connack.sessionPresent, got }));
        c.once('error', reject);
      });
    },
  };
}

/** Every PUBLISH `client` receives from now on, in order. */
export function inbox(client: MqttClient): IPublishPacket[] {
  const got: IPublishPacket[] = [];
  client.on('message', (_topic, _payload, packet) => got.push(packet));
  return got;
}
