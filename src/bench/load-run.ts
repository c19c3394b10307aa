// A load run: connect `clients` connections at a rate, then publish (batched template copies
// with a timestamp and packet id patched in), subscribe (end-to-end latency from the timestamp)
// or only connect, and sum it all up.
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { MqttClientError, explainNetworkError } from '../client/errors.js';
import type { ResolvedOptions } from '../client/options.js';
import { protocolVersionName } from '../client/options.js';
import { formatBrokerUrl } from '../client/url.js';
import { PacketType, encodePacket, encodePublish, publishPacketIdOffset } from '../protocol/index.js';
import type { Packet, PublishPacket } from '../protocol/index.js';
import { LatencyHistogram } from './histogram.js';
import { LoadConnection, openLoadConnection } from './load-connection.js';
import type { BenchOptions, BenchProgress, BenchSummary } from './types.js';

const epochNow = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function expandTopic(pattern: string, index: number, clientId: string): string {
  return pattern.replace(/%i/g, String(index)).replace(/%c/g, clientId);
}

/** Runs a load as `options` asks and resolves with its summary. */
export function runBench(options: BenchOptions): Promise<BenchSummary> {
  return new LoadRun(options).run();
}

class LoadRun {
  private readonly o: ResolvedOptions;
  private readonly connectHist = new LatencyHistogram();
  private readonly ackHist = new LatencyHistogram();
  private readonly latencyHist = new LatencyHistogram();
  private readonly errors = new Map<string, number>();
  private readonly conns: LoadConnection[] = [];
  private connected = 0;
  private failed = 0;
  private disconnected = 0;
  private sent = 0;
  private acknowledged = 0;
  private received = 0;
  private firstReceivedAt = 0;
  private lastReceivedAt = 0;
  private stopping = false;
  private readonly started = performance.now();
  private connectStarted = 0;
  /** Connection attempts in progress. */
  private pending = 0;
  private nextIndex = 1;
  private readonly pumping = new Set<LoadConnection>();
  private resolveDone!: () => void;
  private readonly done = new Promise<void>((r) => (this.resolveDone = r));

  constructor(private readonly options: BenchOptions) {
    this.o = options.connection;
  }

  async run(): Promise<BenchSummary> {
    const stop = () => this.stop();
    this.options.signal?.addEventListener('abort', stop, { once: true });
    const ticker = setInterval(() => this.tick(), 10);
    const progress = this.startProgress();
    this.connectOne();
    await this.done;
    clearInterval(ticker);
    clearInterval(progress);
    this.options.signal?.removeEventListener('abort', stop);
    await this.waitForAcknowledgements();
    const elapsed = (performance.now() - this.started) / 1000;
    await this.closeAll();
    return this.summary(elapsed);
  }

  private stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.resolveDone();
  }

  private noteError(err: unknown): void {
    const msg = err instanceof Error ? err.message : String(err);
    this.errors.set(msg, (this.errors.get(msg) ?? 0) + 1);
  }

  private countReached(): boolean {
    const { count, mode } = this.options;
    return count !== undefined && (mode === 'pub' ? this.sent >= count : mode === 'sub' ? this.received >= count : false);
  }

  // ---------------------------------------------------------------- connections

  private connectOne(): void {
    const { mode, qos } = this.options;
    const index = this.nextIndex++;
    this.pending++;
    if (this.connectStarted === 0) this.connectStarted = performance.now();
    openLoadConnection(index, this.o, mode === 'pub' && qos > 0).then(
      ({ conn, latency }) => {
        this.pending--;
        if (this.stopping) {
          conn.stream.destroy();
          return;
        }
        this.connectHist.record(latency);
        this.connected++;
        this.conns.push(conn);
        this.attach(conn);
        if (mode === 'sub') this.subscribe(conn);
        if (mode === 'pub') {
          this.preparePublisher(conn);
          if (this.options.rate === 0) this.schedulePump(conn);
        }
        this.checkConnectionsDone();
      },
      (err) => {
        this.pending--;
        this.failed++;
        this.noteError(err);
        this.checkConnectionsDone();
      },
    );
  }

  private checkConnectionsDone(): void {
    if (this.connected + this.failed < this.options.clients) return;
    if (this.options.mode === 'conn' && this.options.duration === undefined) this.stop();
    if (this.connected === 0) this.stop();
  }

  private attach(conn: LoadConnection): void {
    const s = conn.stream;
    const handler = (p: Packet) => this.onPacket(conn, p);
    s.on('data', (chunk: Buffer) => {
      try {
        conn.decoder.feed(chunk, handler);
      } catch (err) {
        this.noteError(err);
        s.destroy();
      }
    });
    s.on('error', (err) => this.noteError(explainNetworkError(err, { host: this.o.address.host, port: this.o.address.port })));
    s.on('close', () => {
      if (!conn.closed) {
        conn.closed = true;
        if (!this.stopping) this.disconnected++;
      }
      // every client tried and none left: nothing more will happen
      if (this.connected + this.failed >= this.options.clients && this.conns.every((c) => c.closed)) this.stop();
    });
    s.resume();
  }

  private onPacket(conn: LoadConnection, p: Packet): void {
    switch (p.type) {
      case PacketType.PUBLISH:
        return this.onPublish(conn, p);
      case PacketType.PUBREL:
        conn.ack(PacketType.PUBCOMP, p.packetId);
        return;
      case PacketType.PUBACK:
      case PacketType.PUBCOMP:
        conn.outstanding--;
        this.acknowledged++;
        if (conn.sendTimes) this.ackHist.record(performance.now() - conn.sendTimes[p.packetId]!);
        if (this.options.mode === 'pub' && this.options.rate === 0) this.schedulePump(conn);
        return;
      case PacketType.PUBREC:
        conn.ack(PacketType.PUBREL, p.packetId);
        return;
      case PacketType.DISCONNECT: {
        const code = p.reasonCode ?? 0;
        this.noteError(new MqttClientError('SERVER_DISCONNECT', `server sent DISCONNECT 0x${code.toString(16).padStart(2, '0')}`));
        return;
      }
    }
  }

  private onPublish(conn: LoadConnection, pub: PublishPacket): void {
    const now = performance.now();
    if (this.received === 0) this.firstReceivedAt = now;
    this.lastReceivedAt = now;
    this.received++;
    if (pub.payload.length >= 8) {
      const lat = epochNow() - pub.payload.readDoubleLE(0);
      if (lat >= 0 && lat < 1e7) this.latencyHist.record(lat);
    }
    if (pub.qos === 1) conn.ack(PacketType.PUBACK, pub.packetId!);
    else if (pub.qos === 2) conn.ack(PacketType.PUBREC, pub.packetId!);
    if (this.countReached()) this.stop();
  }

  private subscribe(conn: LoadConnection): void {
    const topicFilter = expandTopic(this.options.topic, conn.index, conn.clientId);
    conn.write(encodePacket({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter, qos: this.options.qos }] }, this.o.protocolVersion));
  }

  // ---------------------------------------------------------------- publishing

  private preparePublisher(conn: LoadConnection): void {
    const { qos, size, retain } = this.options;
    const topic = expandTopic(this.options.topic, conn.index, conn.clientId);
    const packet: PublishPacket = { type: PacketType.PUBLISH, topic, payload: Buffer.alloc(size), qos, retain, dup: false };
    if (qos > 0) packet.packetId = 1;
    const template = encodePublish(packet, this.o.protocolVersion);
    conn.template = Buffer.from(template);
    conn.payloadOffset = template.length - size;
    conn.idOffset = qos > 0 ? publishPacketIdOffset(template) : -1;
    conn.publishStart = performance.now();
  }

  private window(conn: LoadConnection): number {
    return Math.min(this.options.inflight, conn.receiveMaximum);
  }

  /** Writes up to `wanted` messages for conn as one buffer; returns how many. */
  private publishBatch(conn: LoadConnection, wanted: number): number {
    const { qos, size, count } = this.options;
    let n = wanted;
    if (count !== undefined) n = Math.min(n, count - this.sent);
    if (qos > 0) n = Math.min(n, this.window(conn) - conn.outstanding);
    if (n <= 0 || conn.closed || !conn.template) return 0;
    const t = conn.template;
    const len = t.length;
    const buf = Buffer.allocUnsafe(n * len);
    const ts = epochNow();
    const now = performance.now();
    for (let k = 0; k < n; k++) {
      const off = k * len;
      t.copy(buf, off);
      if (size >= 8) buf.writeDoubleLE(ts, off + conn.payloadOffset);
      if (qos > 0) {
        const id = conn.nextId;
        conn.nextId = id === 65535 ? 1 : id + 1;
        buf.writeUInt16BE(id, off + conn.idOffset);
        if (conn.sendTimes) conn.sendTimes[id] = now;
      }
    }
    conn.outstanding += qos > 0 ? n : 0;
    conn.sent += n;
    this.sent += n;
    conn.write(buf);
    if (this.countReached()) this.stop();
    return n;
  }

  /** As fast as possible: fill the socket until it pushes back, then wait for 'drain'. */
  private schedulePump(conn: LoadConnection): void {
    if (this.pumping.has(conn) || this.stopping) return;
    this.pumping.add(conn);
    setImmediate(() => {
      this.pumping.delete(conn);
      if (this.stopping || conn.closed) return;
      let total = 0;
      while (!conn.stream.writableNeedDrain && total < 4096) {
        const n = this.publishBatch(conn, 64);
        if (n === 0) break;
        total += n;
      }
      if (conn.stream.writableNeedDrain) conn.stream.once('drain', () => this.schedulePump(conn));
      else if (total > 0 && (this.options.qos === 0 || conn.outstanding < this.window(conn))) this.schedulePump(conn);
    });
  }

  // ---------------------------------------------------------------- pacing and progress

  /** Every 10 ms: connections at connectRate, messages at rate, the duration. */
  private tick(): void {
    const { clients, connectRate, mode, rate, duration } = this.options;
    const now = performance.now();
    const dueConnections = Math.min(clients, Math.floor(((now - this.started) / 1000) * connectRate) + 1);
    while (this.nextIndex <= dueConnections) this.connectOne();
    // publish at the rate: the first message at once, then `rate` per second
    if (mode === 'pub' && rate > 0) {
      for (const conn of this.conns) {
        const due = Math.floor(((now - conn.publishStart) / 1000) * rate) + 1 - conn.sent;
        if (due > 0) this.publishBatch(conn, due);
      }
    }
    if (duration !== undefined && now - this.started >= duration * 1000) this.stop();
  }

  /** Every second: a progress line, and PINGREQ on connections quiet for half the keep alive. */
  private startProgress(): NodeJS.Timeout {
    let lastSent = 0;
    let lastReceived = 0;
    let lastProgress = performance.now();
    return setInterval(() => {
      const now = performance.now();
      const dt = (now - lastProgress) / 1000;
      const snap: BenchProgress = {
        elapsed: (now - this.started) / 1000,
        connected: this.connected - this.disconnected,
        sentPerSecond: (this.sent - lastSent) / dt,
        receivedPerSecond: (this.received - lastReceived) / dt,
        sent: this.sent,
        received: this.received,
      };
      lastSent = this.sent;
      lastReceived = this.received;
      lastProgress = now;
      if (this.o.keepAlive > 0) {
        const idle = (this.o.keepAlive * 1000) / 2;
        for (const conn of this.conns) if (now - conn.lastWrite > idle) conn.ping();
      }
      const failed = this.failed ? ` (${this.failed} failed)` : '';
      const parts = [
        `${snap.elapsed.toFixed(0).padStart(4)} s`,
        `connected ${snap.connected}/${this.options.clients}${failed}`,
        `sent ${Math.round(snap.sentPerSecond)} msg/s`,
        `received ${Math.round(snap.receivedPerSecond)} msg/s`,
        `total sent ${this.sent} received ${this.received}`,
      ];
      this.options.onProgress?.(parts.join(' | '), snap);
    }, 1000);
  }

  // ---------------------------------------------------------------- the end

  /** A QoS 1/2 publisher gives outstanding acknowledgements a moment. */
  private async waitForAcknowledgements(): Promise<void> {
    if (this.options.mode !== 'pub' || this.options.qos === 0) return;
    const deadline = performance.now() + 2000;
    while (this.acknowledged < this.sent && performance.now() < deadline && this.conns.some((c) => !c.closed)) await sleep(10);
  }

  private async closeAll(): Promise<void> {
    for (const conn of this.conns) if (!conn.closed) conn.disconnect();
    // let DISCONNECTs go out, then drop what is left
    await sleep(50);
    for (const conn of this.conns) conn.stream.destroy();
    while (this.pending > 0) await sleep(10);
  }

  private summary(elapsed: number): BenchSummary {
    const { mode, qos, size, clients } = this.options;
    const activeSeconds = Math.max(elapsed - (this.connectStarted ? (this.connectStarted - this.started) / 1000 : 0), 1e-3);
    // a subscriber's rate counts from the first message it got, not from when it connected
    const receiveSpan = (this.lastReceivedAt - this.firstReceivedAt) / 1000;
    const receiveRate = this.received >= 2 && receiveSpan > 0 ? (this.received - 1) / receiveSpan : 0;
    return {
      mode,
      url: formatBrokerUrl(this.o.address),
      protocolVersion: protocolVersionName(this.o.protocolVersion),
      qos,
      payloadSize: size,
      clients: { target: clients, connected: this.connected, failed: this.failed, disconnected: this.disconnected },
      connectLatency: this.connectHist.summary(),
      durationSeconds: elapsed,
      sent: this.sent,
      acknowledged: this.acknowledged,
      received: this.received,
      sendRate: this.sent / activeSeconds,
      receiveRate,
      ackLatency: this.ackHist.summary(),
      latency: this.latencyHist.summary(),
      errors: [...this.errors].map(([m, n]) => (n > 1 ? `${m} (×${n})` : m)),
    };
  }
}


