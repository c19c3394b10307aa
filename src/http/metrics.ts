// Prometheus metrics (prom-client), names prefixed petrel_. Nothing here runs per message: gauges and
// counters are read at scrape time from the broker's plain integer counters (core stats, the same as
// $SYS) and its inspection API; only connection events (connect, refuse, disconnect) are counted as they come.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ClusterView } from '../cluster/cluster.js';
import type { Broker, BrokerEventMap } from '../server/broker.js';
import { PETREL_VERSION } from '../version.js';
import { AUTH_FAILURE_CODES, codeHex, codeLabel, disconnectCause } from './causes.js';

const VERSION_NAMES: Record<number, string> = { 3: '3.1', 4: '3.1.1', 5: '5.0' };

/** What one scrape reads from the broker, once, for every metric. */
interface Snapshot {
  connections: Map<string, { listener: string; protocol: string; count: number }>;
  bufferedBytes: number;
  slowConsumers: number;
}

export class BrokerMetrics {
  readonly registry = new Registry();
  private snapshot: Snapshot = { connections: new Map(), bufferedBytes: 0, slowConsumers: 0 };
  /** Counted from events: CONNECT packets, CONNACKs by code, disconnections by cause. */
  private connects = 0;
  private readonly connacks = new Map<number, number>();
  private readonly disconnects = new Map<string, number>();
  private authFailures = 0;
  private maxConnected = 0;
  private maxHeap = 0;
  private readonly startedAt = Date.now();
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  private detachFromBroker: (() => void) | undefined;

  constructor(private readonly broker: Broker) {
    this.loopDelay.enable();
    this.define();
  }

  /** Starts counting the broker's connection events. */
  attach(): void {
    const broker = this.broker;
    this.maxConnected = broker.inspect.counts().connected;
    const on: { [K in keyof BrokerEventMap]?: (...args: BrokerEventMap[K]) => void } = {
      connectReceived: () => this.connects++,
      clientConnected: () => {
        this.bump(this.connacks, 0);
        const connected = broker.inspect.counts().connected;
        if (connected > this.maxConnected) this.maxConnected = connected;
      },
      clientRefused: (info) => {
        this.bump(this.connacks, info.reasonCode);
        if (AUTH_FAILURE_CODES.has(info.reasonCode)) this.authFailures++;
      },
      clientDisconnected: (client, info) => {
        if (client) this.bump(this.disconnects, disconnectCause(info.reason, info.reasonCode));
      },
    };
    for (const [name, fn] of Object.entries(on)) broker.on(name as keyof BrokerEventMap, fn as never);
    this.detachFromBroker = () => {
      for (const [name, fn] of Object.entries(on)) broker.off(name as keyof BrokerEventMap, fn as never);
    };
  }

  close(): void {
    this.detachFromBroker?.();
    this.detachFromBroker = undefined;
    this.loopDelay.disable();
  }

  /** The exposition text; reads the broker once. */
  async text(): Promise<string> {
    this.snapshot = this.read();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private bump<K>(map: Map<K, number>, key: K): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }

  private read(): Snapshot {
    const connections = new Map<string, { listener: string; protocol: string; count: number }>();
    let bufferedBytes = 0;
    let slowConsumers = 0;
    const highWater = this.broker.core.limits.maxOutputBuffer;
    for (const c of this.broker.inspect.connections()) {
      const key = `${c.listener}\n${c.protocolVersion}`;
      const entry = connections.get(key);
      if (entry) entry.count++;
      else connections.set(key, { listener: c.listener, protocol: VERSION_NAMES[c.protocolVersion] ?? String(c.protocolVersion), count: 1 });
      bufferedBytes += c.bufferedBytes;
      if (c.bufferedBytes > highWater) slowConsumers++;
    }
    return { connections, bufferedBytes, slowConsumers };
  }

  private define(): void {
    const broker = this.broker;
    const registers = [this.registry];
    const stats = () => broker.inspect.stats();
    const counts = () => broker.inspect.counts();
    /** A gauge whose value(s) are read at scrape time. */
    const gauge = (name: string, help: string, read: () => number | [Record<string, string>, number][], labelNames: string[] = []) =>
      new Gauge({
        name: `petrel_${name}`,
        help,
        labelNames,
        registers,
        collect() {
          const v = read();
          if (typeof v === 'number') this.set(v);
          else {
            this.reset();
            for (const [labels, value] of v) this.set(labels, value);
          }
        },
      });
    /** A counter kept by the broker as a plain integer, copied at scrape time. */
    const counter = (name: string, help: string, read: () => number | [Record<string, string>, number][], labelNames: string[] = []) =>
      new Counter({
        name: `petrel_${name}`,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          const v = read();
          if (typeof v === 'number') this.inc(v);
          else for (const [labels, value] of v) this.inc(labels, value);
        },
      });
    const byQos = (values: readonly number[]): [Record<string, string>, number][] => values.map((v, qos) => [{ qos: String(qos) }, v]);

    gauge('info', 'Petrel version (value 1)', () => [[{ version: PETREL_VERSION }, 1]], ['version']);
    gauge('uptime_seconds', 'Seconds since the metrics started ($SYS/broker/uptime)', () => Math.floor((Date.now() - this.startedAt) / 1000));
    // Connections and sessions
    gauge(
      'connections',
      'Connected clients (accepted CONNECT), by listener and protocol version ($SYS/broker/clients/connected)',
      () => [...this.snapshot.connections.values()].map((c) => [{ listener: c.listener, protocol: c.protocol }, c.count]),
      ['listener', 'protocol'],
    );
    gauge('connections_maximum', 'Most clients connected at once ($SYS/broker/clients/maximum)', () => Math.max(this.maxConnected, counts().connected));
    gauge(
      'sockets',
      'Open network connections per listener, including those that have not finished CONNECT',
      () => broker.runningListeners().filter((l) => l.type !== 'http').map((l) => [{ listener: l.name }, l.connections]),
      ['listener'],
    );
    counter('connects_total', 'CONNECT packets received', () => this.connects);
    counter('connacks_total', 'CONNACKs sent, by reason code (0x00: accepted)', () => [...this.connacks].map(([code, n]) => [{ code: codeHex(code), reason: codeLabel(code) }, n]), ['code', 'reason']);
    counter('auth_failures_total', 'Connections refused for bad credentials (0x86), not authorized (0x87) or a bad authentication method (0x8C)', () => this.authFailures);
    counter('disconnects_total', 'Connections of accepted clients that ended, by cause', () => [...this.disconnects].map(([reason, n]) => [{ reason }, n]), ['reason']);
    counter('slow_consumer_disconnects_total', 'Clients disconnected for reading slower than the broker writes (slowConsumerTimeout)', () => this.disconnects.get('slow_consumer') ?? 0);
    gauge('slow_consumers', 'Connections whose output buffer is over maxOutputBuffer now', () => this.snapshot.slowConsumers);
    gauge('output_buffered_bytes', 'Bytes written to connections and not yet taken by the network', () => this.snapshot.bufferedBytes);
    gauge('sessions', 'Sessions, online (connected) or offline ($SYS/broker/clients/connected, disconnected)', () => {
      const c = counts();
      return [[{ state: 'online' }, c.connected], [{ state: 'offline' }, c.sessions - c.connected]];
    }, ['state']);
    counter('sessions_expired_total', 'Offline sessions ended by their expiry interval ($SYS/broker/clients/expired)', () => stats().sessionsExpired);
    gauge('subscriptions', 'Subscriptions held, ordinary and shared ($SYS/broker/subscriptions/count)', () => counts().subscriptions);
    gauge('retained_messages', 'Topics with a retained message ($SYS/broker/retained messages/count)', () => counts().retained);
    counter('retained_refused_total', 'Retained messages not kept: maxRetainedMessages, maxRetainedBytes, or memory high', () => counts().retainedRefused);
    gauge('overload', 'Overload guard state by resource (1: high, shedding; docs/security.md)', () => {
      const o = broker.inspect.overload();
      return [[{ resource: 'memory' }, o.memory === 'high' ? 1 : 0], [{ resource: 'event_loop' }, o.eventLoop === 'high' ? 1 : 0]];
    }, ['resource']);
    // Messages
    counter('messages_received_total', 'PUBLISH packets received, by QoS ($SYS/broker/publish/messages/received)', () => byQos(stats().publishReceivedByQos), ['qos']);
    counter('messages_sent_total', 'PUBLISH packets sent, by QoS ($SYS/broker/publish/messages/sent)', () => byQos(stats().publishSentByQos), ['qos']);
    counter(
      'messages_dropped_total',
      'Messages not delivered to a subscriber, by reason (all but expired: $SYS/broker/publish/messages/dropped)',
      () => {
        const s = stats();
        const all = counts().droppedMessages;
        return [
          [{ reason: 'queue_full' }, all - s.droppedOutputFull - s.droppedTooLarge - s.droppedShed],
          [{ reason: 'output_full' }, s.droppedOutputFull],
          [{ reason: 'shed' }, s.droppedShed],
          [{ reason: 'too_large' }, s.droppedTooLarge],
          [{ reason: 'expired' }, s.droppedExpired],
        ];
      },
      ['reason'],
    );
    counter('packets_received_total', 'MQTT packets received, every type ($SYS/broker/messages/received)', () => stats().packetsReceived);
    counter('packets_sent_total', 'MQTT packets sent, every type ($SYS/broker/messages/sent)', () => stats().packetsSent);
    counter('bytes_received_total', 'Bytes received from clients ($SYS/broker/bytes/received)', () => stats().bytesReceived);
    counter('bytes_sent_total', 'Bytes sent to clients ($SYS/broker/bytes/sent)', () => stats().bytesSent);
    gauge('queued_messages', 'Messages waiting in session queues (offline sessions, or in-flight window full)', () => broker.sessionTotals().queued);
    gauge('queued_bytes', 'Payload bytes of the messages waiting in session queues', () => broker.sessionTotals().queuedBytes);
    gauge('inflight_messages', 'Outgoing QoS 1/2 messages sent and not yet acknowledged', () => broker.sessionTotals().inflight);
    // Cluster (docs/cluster.md): no sample on a broker that is not a node of one (every gauge has a label, so an
    // unset one prints nothing rather than a 0).
    const cluster = () => broker.inspect.cluster() as ClusterView | undefined;
    gauge('cluster_nodes', 'Nodes of the cluster this node sees, alive or not (alive: heartbeat within heartbeatTimeout)', () => {
      const c = cluster();
      if (c === undefined) return [];
      const alive = c.nodes.filter((n) => n.alive).length;
      return [[{ state: 'alive' }, alive], [{ state: 'down' }, c.nodes.length - alive]];
    }, ['state']);
    gauge('cluster_heartbeat_age_seconds', "Time since each node's last heartbeat, as this node sees it", () =>
      (cluster()?.nodes ?? []).filter((n) => n.heartbeatAgeMs !== undefined).map((n) => [{ node: n.name }, n.heartbeatAgeMs! / 1000]),
    ['node']);
    gauge('cluster_routes', "Routes (topic filters) of this node and of the others", () => {
      const c = cluster();
      return c === undefined ? [] : [[{ owner: 'local' }, c.localRoutes], [{ owner: 'remote' }, c.remoteRoutes]];
    }, ['owner']);
    gauge('cluster_connected', 'This node is connected to the cluster\'s Redis (1) or not (0)', () => {
      const c = cluster();
      return c === undefined ? [] : [[{ node: c.node }, c.connected ? 1 : 0]];
    }, ['node']);
    gauge('cluster_backlog_messages', 'Messages waiting for Redis on their way to other nodes', () => {
      const c = cluster();
      return c === undefined ? [] : [[{ node: c.node }, c.backlog]];
    }, ['node']);
    counter('cluster_forwarded_total', 'Messages handed between nodes, by direction; duplicates dropped; refused for a full backlog', () => {
      const f = cluster()?.forwarded;
      return f === undefined ? [] : [[{ direction: 'sent' }, f.sent], [{ direction: 'received' }, f.received], [{ direction: 'duplicate' }, f.duplicates], [{ direction: 'refused' }, f.refused]];
    }, ['direction']);
    // Process
    const memory = () => process.memoryUsage();
    gauge('heap_used_bytes', 'JavaScript heap in use ($SYS/broker/heap/current)', () => {
      const used = memory().heapUsed;
      if (used > this.maxHeap) this.maxHeap = used;
      return used;
    });
    gauge('heap_used_maximum_bytes', 'Most JavaScript heap in use at a scrape ($SYS/broker/heap/maximum)', () => this.maxHeap);
    gauge('heap_total_bytes', 'JavaScript heap allocated', () => memory().heapTotal);
    gauge('external_memory_bytes', 'Memory of Buffers and other objects outside the JavaScript heap', () => memory().external);
    gauge('resident_memory_bytes', 'Resident set size of the process', () => memory().rss);
    counter('process_cpu_seconds_total', 'CPU time of the process, by mode', () => {
      const u = process.cpuUsage();
      return [[{ mode: 'user' }, u.user / 1e6], [{ mode: 'system' }, u.system / 1e6]];
    }, ['mode']);
    // Event-loop delay since the previous scrape (a 20 ms resolution monitor): how late timers and I/O run.
    const lag = (pick: (h: IntervalHistogram) => number) => () => (this.loopDelay.count > 0 ? pick(this.loopDelay) / 1e9 : 0);
    gauge('event_loop_lag_seconds', 'Mean event-loop delay since the previous scrape', lag((h) => h.mean));
    gauge('event_loop_lag_p99_seconds', '99th percentile of the event-loop delay since the previous scrape', lag((h) => h.percentile(99)));
    gauge('event_loop_lag_max_seconds', 'Longest event-loop delay since the previous scrape', () => {
      const max = this.loopDelay.count > 0 ? this.loopDelay.max / 1e9 : 0;
      this.loopDelay.reset(); // registered last: the other two have read it
      return max;
    });
  }
}
