// What a load run is asked to do and what it reports.
import type { ResolvedOptions } from '../client/options.js';
import type { QoS } from '../protocol/index.js';
import type { LatencySummary } from './histogram.js';

export type BenchMode = 'pub' | 'sub' | 'conn';

export interface BenchOptions {
  mode: BenchMode;
  /** Connection settings (URL, version, credentials, TLS, keep alive). clientId is the prefix. */
  connection: ResolvedOptions;
  clients: number;
  /** New connections per second. */
  connectRate: number;
  /** Messages per second per client (pub); 0 = as fast as the socket takes them. */
  rate: number;
  qos: QoS;
  /** Payload bytes (at least 8 carry the timestamp). */
  size: number;
  /** Topic pattern: %i client index (1-based), %c Client ID. */
  topic: string;
  /** Stop after this many messages in total (sent for pub, received for sub). */
  count?: number;
  /** Stop after this many seconds (from the first connection attempt). */
  duration?: number;
  /** QoS 1/2 messages in flight per client. */
  inflight: number;
  retain: boolean;
  /** Called every second with a progress line. */
  onProgress?: (line: string, snapshot: BenchProgress) => void;
  /** Stops the run early (SIGINT). */
  signal?: AbortSignal;
}

export interface BenchProgress {
  elapsed: number;
  connected: number;
  sentPerSecond: number;
  receivedPerSecond: number;
  sent: number;
  received: number;
}

export interface BenchSummary {
  mode: BenchMode;
  url: string;
  protocolVersion: string;
  qos: QoS;
  payloadSize: number;
  clients: { target: number; connected: number; failed: number; disconnected: number };
  connectLatency: LatencySummary;
  durationSeconds: number;
  sent: number;
  acknowledged: number;
  received: number;
  /** Messages sent per second, from the first connection attempt to the end. */
  sendRate: number;
  /** Messages received per second, from the first message received to the last (0 with fewer than two). */
  receiveRate: number;
  /** pub QoS 1/2: publish → PUBACK / PUBCOMP. */
  ackLatency: LatencySummary;
  /** sub: end-to-end, from the timestamp in the payload. */
  latency: LatencySummary;
  errors: string[];
}
