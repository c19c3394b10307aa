// $SYS topics: the broker's counters, published as retained messages every `sysInterval` seconds under the
// names Mosquitto uses (mosquitto(8), "Broker Status"), so `mosquitto_sub -t '$SYS/#' -v` and dashboards
// made for Mosquitto read Petrel too. Only values that changed are published again. Sans I/O: the core's
// tick() drives it; process figures (heap) come in through a function.
import { Buffer } from 'node:buffer';
import { createMessage, type Message } from './message.js';

/** Counters the channels and the core keep (plain fields on one object: an increment on the hot path). */
export interface BrokerStats {
  bytesReceived: number;
  bytesSent: number;
  /** MQTT packets of every type. */
  packetsReceived: number;
  packetsSent: number;
  publishReceived: number;
  publishSent: number;
  /** Sessions that ended because their expiry interval passed while offline. */
  sessionsExpired: number;
  /** Messages dropped for a subscriber (queue full, too large for it, expired, slow reader). */
  droppedMessages: number;
  /** Retained messages on new topics not kept because maxRetainedMessages topics had one. */
  retainedRefused: number;
  /** PUBLISH packets received and sent, by QoS (index 0-2), for metrics. */
  publishReceivedByQos: [number, number, number];
  publishSentByQos: [number, number, number];
  /**
   * Messages dropped for a subscriber, by reason (their sum with queue-full drops is core.droppedMessages):
   * QoS 0 while the output was over the high-water mark; larger than the client's Maximum Packet Size.
   */
  droppedOutputFull: number;
  droppedTooLarge: number;
  /** QoS 0 deliveries shed while memory was over its high-water mark (overload.ts; also in droppedMessages). */
  droppedShed: number;
  /** Messages past their expiry when their turn to be sent came (not in droppedMessages). */
  droppedExpired: number;
}

export const newStats = (): BrokerStats => ({
  bytesReceived: 0,
  bytesSent: 0,
  packetsReceived: 0,
  packetsSent: 0,
  publishReceived: 0,
  publishSent: 0,
  sessionsExpired: 0,
  droppedMessages: 0,
  retainedRefused: 0,
  publishReceivedByQos: [0, 0, 0],
  publishSentByQos: [0, 0, 0],
  droppedOutputFull: 0,
  droppedTooLarge: 0,
  droppedShed: 0,
  droppedExpired: 0,
});

export interface SysTopicsOptions {
  /** "petrel version 0.1.0" */
  version: string;
  /** Bytes of JavaScript heap in use, when the process can tell. */
  heapUsed?: () => number;
  /** More topics and values from outside the core (a cluster's $SYS/broker/cluster/...). */
  extra?: () => [string, string][];
}

/** What the $SYS topics read and where they publish (the core). */
export interface SysTopicsHost {
  readonly clock: { now(): number };
  readonly stats: BrokerStats;
  counts(): { connected: number; sessions: number; subscriptions: number; retained: number };
  /** Publishes a broker-made message whose payload it owns. */
  publishOwn(message: Message): void;
}

export class SysTopics {
  private readonly published = new Map<string, string>();
  private readonly startedAt: number;
  private clientsMaximum = 0;
  private heapMaximum = 0;
  /** When the next publication is due (broker clock, ms). */
  due: number;

  constructor(
    private readonly core: SysTopicsHost,
    private readonly intervalMs: number,
    private readonly options: SysTopicsOptions,
  ) {
    this.startedAt = core.clock.now();
    this.due = this.startedAt;
  }

  /** The topics and their values now. */
  values(now: number): [string, string][] {
    const core = this.core;
    const s = core.stats;
    const counts = core.counts();
    const connected = counts.connected;
    this.clientsMaximum = Math.max(this.clientsMaximum, connected);
    const values: [string, string][] = [
      ['$SYS/broker/version', this.options.version],
      ['$SYS/broker/uptime', `${Math.floor((now - this.startedAt) / 1000)} seconds`],
      ['$SYS/broker/clients/connected', String(connected)],
      ['$SYS/broker/clients/disconnected', String(counts.sessions - connected)],
      ['$SYS/broker/clients/total', String(counts.sessions)],
      ['$SYS/broker/clients/maximum', String(this.clientsMaximum)],
      ['$SYS/broker/clients/expired', String(s.sessionsExpired)],
      ['$SYS/broker/subscriptions/count', String(counts.subscriptions)],
      ['$SYS/broker/retained messages/count', String(counts.retained)],
      ['$SYS/broker/messages/received', String(s.packetsReceived)],
      ['$SYS/broker/messages/sent', String(s.packetsSent)],
      ['$SYS/broker/publish/messages/received', String(s.publishReceived)],
      ['$SYS/broker/publish/messages/sent', String(s.publishSent)],
      ['$SYS/broker/publish/messages/dropped', String(s.droppedMessages)],
      ['$SYS/broker/bytes/received', String(s.bytesReceived)],
      ['$SYS/broker/bytes/sent', String(s.bytesSent)],
    ];
    const heap = this.options.heapUsed?.();
    if (heap !== undefined) {
      this.heapMaximum = Math.max(this.heapMaximum, heap);
      values.push(['$SYS/broker/heap/current', String(heap)], ['$SYS/broker/heap/maximum', String(this.heapMaximum)]);
    }
    const extra = this.options.extra?.();
    if (extra !== undefined) values.push(...extra);
    return values;
  }

  /** Publishes (retained, QoS 0) every value that changed since it was last published. */
  publish(now: number): void {
    this.due = now + this.intervalMs;
    for (const [topic, value] of this.values(now)) {
      if (this.published.get(topic) === value) continue;
      this.published.set(topic, value);
      this.core.publishOwn(createMessage({ topic, payload: Buffer.from(value), qos: 0, retain: true }, undefined, now));
    }
  }
}

/** True for a topic in the broker's own `$SYS/` tree. */
export const isSysTopic = (topic: string): boolean => topic.charCodeAt(0) === 0x24 /* $ */ && topic.startsWith('$SYS/');
