// Petrel nodes of one cluster in one process: a broker each (TCP on 127.0.0.1, port 0), with the ownership
// part (Client IDs, retained messages, wills of dead nodes) on a shared Redis, and a fake liveness that a
// test drives: kill(name) tells every other node that `name` died, as the plane's heartbeat expiry would.
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { createBroker, type Broker, type BrokerOptions } from '../../../src/server/broker.js';
import { attachOwnership, createClusterOwnership, type ClusterOwnership } from '../../../src/cluster/ownership.js';
import type { NodeLiveness } from '../../../src/cluster/types.js';
import type { RunningRedis } from './redis-server.js';

class FakeLiveness extends EventEmitter implements NodeLiveness {
  constructor(
    readonly self: string,
    private readonly dead: Set<string>,
  ) {
    super();
  }
  isAlive(name: string): boolean {
    return !this.dead.has(name);
  }
  override on(event: 'node-down', listener: (name: string) => void): this {
    return super.on(event, listener);
  }
}

export interface TestNode {
  name: string;
  broker: Broker;
  port: number;
  redis: Redis;
  ownership: ClusterOwnership;
  warnings: string[];
}

export class TestCluster {
  readonly nodes: TestNode[] = [];
  private readonly dead = new Set<string>();
  private readonly livenesses = new Map<string, FakeLiveness>();

  constructor(
    private readonly redis: RunningRedis,
    readonly prefix = `t${Math.floor(Math.random() * 1e9).toString(36)}`,
  ) {}

  async start(name: string, options: BrokerOptions = {}): Promise<TestNode> {
    const redis = this.redis.connect();
    const liveness = new FakeLiveness(name, this.dead);
    this.livenesses.set(name, liveness);
    const warnings: string[] = [];
    const ownership = createClusterOwnership({ redis, liveness, prefix: this.prefix, warn: (m) => warnings.push(m) });
    const broker = createBroker({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], sysInterval: 0, tickInterval: 50, ...ownership.brokerOptions, ...options });
    await broker.listen();
    await attachOwnership(broker, ownership);
    const node = { name, broker, port: broker.address().port, redis, ownership, warnings };
    this.nodes.push(node);
    return node;
  }

  /** `name` died: its Redis connections drop without any cleanup (close() then deletes nothing), and every other node hears 'node-down'. */
  kill(name: string): void {
    const node = this.nodes.find((n) => n.name === name)!;
    node.redis.disconnect();
    void node.ownership.close();
    this.dead.add(name);
    for (const [other, liveness] of this.livenesses) if (other !== name) liveness.emit('node-down', name);
  }

  async stop(): Promise<void> {
    for (const node of this.nodes) {
      await node.broker.close();
      await node.ownership.close();
      node.redis.disconnect();
    }
  }
}
