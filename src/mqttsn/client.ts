// An MQTT-SN 1.2 client over UDP, for testing a gateway (`petrel pub/sub mqttsn://...`) and for
// Node.js programs that speak MQTT-SN:
//
//   import { connect } from 'petrel/mqttsn';
//   const client = await connect('mqttsn://127.0.0.1:1884', { clientId: 'sensor-1' });
//   await client.publish('sensors/temp', '21.5', { qos: 1 });
//   await client.end();
//
// One transaction at a time toward the gateway (spec 6.13), each retransmitted every Tretry up to
// Nretry times; topics are registered on first use, short (two-character) names and predefined ids
// need no registration.
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { decodeSn, encodeSn, SnDecodeError } from './codec.js';
import { SnReturnCode, SnType, type SnPacket, type SnQoS, type SnSubscribeTopic, type SnTopic } from './packets.js';
import { isShortTopicName } from './topics.js';

export interface SnClientOptions {
  /** Client ID (1-23 characters in the spec); default "petrel-sn-" + random hex. */
  clientId?: string;
  /** Clean Session flag (default true). */
  cleanSession?: boolean;
  /** Keep alive in seconds (Duration of CONNECT); 0 disables PINGREQ. Default 60. */
  keepAlive?: number;
  will?: { topic: string; payload: Buffer | string; qos?: 0 | 1 | 2; retain?: boolean };
  /** Tretry in ms (default 10 000; spec 7.2: 10-15 s). */
  retryInterval?: number;
  /** Nretry (default 5). */
  maxRetries?: number;
  /** Topic ids predefined on the gateway: id → topic name. */
  predefinedTopics?: Record<string | number, string>;
}

export interface SnMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
}

export interface SnAddress {
  host: string;
  port: number;
}

export class SnClientError extends Error {
  constructor(
    message: string,
    readonly returnCode?: number,
  ) {
    super(message);
    this.name = 'SnClientError';
  }
}

const RETURN_CODE_NAMES: Record<number, string> = { 0: 'accepted', 1: 'rejected: congestion', 2: 'rejected: invalid topic ID', 3: 'rejected: not supported' };
export const returnCodeName = (code: number) => RETURN_CODE_NAMES[code] ?? `return code 0x${code.toString(16)}`;

/** Parses mqttsn://host[:port] (default port 1884). */
export function parseMqttsnUrl(url: string): SnAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`invalid MQTT-SN URL "${url}"`);
  }
  if (parsed.protocol !== 'mqttsn:') throw new TypeError(`not an MQTT-SN URL: "${url}" (use mqttsn://host:port)`);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost';
  const port = parsed.port === '' ? 1884 : Number(parsed.port);
  return { host, port };
}

export function isMqttsnUrl(url: string | undefined): boolean {
  return url !== undefined && /^mqttsn:\/\//i.test(url.trim());
}

interface Transaction {
  datagram: Buffer;
  /** Does this answer close the transaction? Returns the value to resolve with, or undefined. */
  match(p: SnPacket): unknown;
  resolve(value: unknown): void;
  reject(err: Error): void;
  tries: number;
  timer?: NodeJS.Timeout;
  /** The MsgType of what we sent: PUBLISH and SUBSCRIBE get DUP on retransmission. */
  dupAt?: number;
}

export class MqttSnClient extends EventEmitter<{ message: [SnMessage]; close: [Error | undefined]; error: [Error] }> {
  readonly clientId: string;
  private readonly options: Required<Omit<SnClientOptions, 'will' | 'predefinedTopics' | 'clientId'>> & Pick<SnClientOptions, 'will'>;
  private socket: Socket | undefined;
  private address: SnAddress | undefined;
  private readonly queue: Transaction[] = [];
  private current: Transaction | undefined;
  private msgId = 0;
  /** Topic ids the gateway gave us (REGISTER, REGACK, SUBACK) and predefined ones. */
  private readonly idByName = new Map<string, number>();
  private readonly nameById = new Map<number, string>();
  private readonly predefinedById = new Map<number, string>();
  private readonly predefinedByName = new Map<string, number>();
  /** QoS 2 messages received, by MsgId, until PUBREL: a retransmitted PUBLISH is not delivered twice. */
  private readonly qos2Received = new Set<number>();
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private lastSent = 0;
  private closed = false;
  private readonly buffered: SnMessage[] = [];
  private readonly readers: ((m: SnMessage | undefined) => void)[] = [];
  /** Resolves when the gateway's PINGRESP ends a wake-up (sleeping clients). */
  private onPingresp: (() => void) | undefined;

  constructor(options: SnClientOptions = {}) {
    super();
    this.clientId = options.clientId ?? `petrel-sn-${randomBytes(4).toString('hex')}`;
    this.options = {
      cleanSession: options.cleanSession ?? true,
      keepAlive: options.keepAlive ?? 60,
      retryInterval: options.retryInterval ?? 10_000,
      maxRetries: options.maxRetries ?? 5,
      will: options.will,
    };
    for (const [id, name] of Object.entries(options.predefinedTopics ?? {})) {
      this.predefinedById.set(Number(id), name);
      this.predefinedByName.set(name, Number(id));
    }
    // EventEmitter throws on an 'error' without listeners; errors also reject the calls they concern.
    this.on('error', () => {});
  }

  /** Opens the UDP socket and connects (CONNECT, the will exchange, CONNACK). */
  async connect(url: string): Promise<void> {
    await this.open(url);
    const o = this.options;
    const will = o.will;
    const connack = await this.transact(
      { type: SnType.CONNECT, will: will !== undefined, cleanSession: o.cleanSession, protocolId: 1, duration: o.keepAlive, clientId: this.clientId },
      (p) => {
        if (p.type === SnType.WILLTOPICREQ && will) {
          this.sendNow({ type: SnType.WILLTOPIC, qos: will.qos ?? 0, retain: will.retain ?? false, topic: will.topic });
          this.restartTimer();
        } else if (p.type === SnType.WILLMSGREQ && will) {
          this.sendNow({ type: SnType.WILLMSG, payload: Buffer.from(will.payload) });
          this.restartTimer();
        } else if (p.type === SnType.CONNACK) return p;
        return undefined;
      },
    );
    const code = (connack as { returnCode: number }).returnCode;
    if (code !== SnReturnCode.Accepted) {
      this.close(undefined);
      throw new SnClientError(`connection refused by the gateway: ${returnCodeName(code)}`, code);
    }
    this.startKeepAlive();
  }

  /** Opens the socket toward the gateway without connecting (enough for QoS -1 publishes and SEARCHGW). */
  async open(url: string): Promise<void> {
    const address = parseMqttsnUrl(url);
    const ip = isIP(address.host) ? address.host : (await lookup(address.host)).address;
    this.address = { host: ip, port: address.port };
    const socket = createSocket(isIP(ip) === 6 ? 'udp6' : 'udp4');
    this.socket = socket;
    socket.on('message', (datagram, rinfo) => {
      if (rinfo.port !== this.address?.port) return;
      let p: SnPacket;
      try {
        p = decodeSn(datagram);
      } catch (err) {
        if (err instanceof SnDecodeError) return; // not ours to answer
        throw err;
      }
      this.onPacket(p);
    });
    socket.on('error', (err) => this.close(err));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, () => {
        socket.off('error', reject);
        resolve();
      });
    });
  }

  // ---- the API ----

  /** Publishes; resolves when the gateway acknowledged it (QoS 1/2) or when sent (QoS 0, -1). */
  async publish(topic: string, payload: Buffer | string, options: { qos?: SnQoS; retain?: boolean } = {}): Promise<void> {
    const qos = options.qos ?? 0;
    const data = Buffer.from(payload);
    let snTopic = this.topicFor(topic);
    if (qos === -1 && (snTopic === undefined || snTopic.type === 0)) {
      throw new SnClientError(`QoS -1 needs a predefined topic id or a two-character topic name ("${topic}" is neither)`);
    }
    if (snTopic === undefined) {
      const regack = (await this.transact({ type: SnType.REGISTER, topicId: 0, msgId: this.nextMsgId(), topicName: topic }, (p, sent) =>
        p.type === SnType.REGACK && p.msgId === (sent as { msgId: number }).msgId ? p : undefined,
      )) as { topicId: number; returnCode: number };
      if (regack.returnCode !== 0) throw new SnClientError(`REGISTER "${topic}" refused: ${returnCodeName(regack.returnCode)}`, regack.returnCode);
      this.remember(topic, regack.topicId);
      snTopic = { type: 0, id: regack.topicId };
    }
    const msgId = qos > 0 ? this.nextMsgId() : 0;
    const packet: SnPacket = { type: SnType.PUBLISH, dup: false, qos, retain: options.retain ?? false, topic: snTopic, msgId, payload: data };
    if (qos <= 0) {
      await this.idle();
      await this.sendAndFlush(packet);
      return;
    }
    const answer = (await this.transact(packet, (p) => {
      if (p.type === SnType.PUBACK && p.msgId === msgId) return p;
      if (qos === 2 && p.type === SnType.PUBREC && p.msgId === msgId) return p;
      return undefined;
    })) as SnPacket;
    if (answer.type === SnType.PUBACK) {
      if (answer.returnCode !== 0) throw new SnClientError(`PUBLISH to "${topic}" refused: ${returnCodeName(answer.returnCode)}`, answer.returnCode);
      return;
    }
    await this.transact({ type: SnType.PUBREL, msgId }, (p) => (p.type === SnType.PUBCOMP && p.msgId === msgId ? p : undefined));
  }

  /** Subscribes to a topic filter (wildcards allowed), a predefined topic name or a short name; resolves with the QoS granted. */
  async subscribe(filter: string, options: { qos?: 0 | 1 | 2 } = {}): Promise<{ qos: number; topicId: number }> {
    const msgId = this.nextMsgId();
    const topic = this.subscribeTopic(filter);
    const suback = (await this.transact({ type: SnType.SUBSCRIBE, dup: false, qos: options.qos ?? 0, msgId, topic }, (p) =>
      p.type === SnType.SUBACK && p.msgId === msgId ? p : undefined,
    )) as { qos: number; topicId: number; returnCode: number };
    if (suback.returnCode !== 0) throw new SnClientError(`SUBSCRIBE "${filter}" refused: ${returnCodeName(suback.returnCode)}`, suback.returnCode);
    if (topic.type === 0 && suback.topicId !== 0 && !/[+#]/.test(filter)) this.remember(filter, suback.topicId);
    return { qos: suback.qos, topicId: suback.topicId };
  }

  async unsubscribe(filter: string): Promise<void> {
    const msgId = this.nextMsgId();
    await this.transact({ type: SnType.UNSUBSCRIBE, msgId, topic: this.subscribeTopic(filter) }, (p) => (p.type === SnType.UNSUBACK && p.msgId === msgId ? p : undefined));
  }

  /** Changes the will topic (undefined: no will) or message while connected (spec 6.4). */
  async updateWill(update: { topic?: string | null; payload?: Buffer | string; qos?: 0 | 1 | 2; retain?: boolean }): Promise<void> {
    if (update.topic !== undefined) {
      const p = (await this.transact({ type: SnType.WILLTOPICUPD, qos: update.qos ?? 0, retain: update.retain ?? false, topic: update.topic ?? undefined }, (a) =>
        a.type === SnType.WILLTOPICRESP ? a : undefined,
      )) as { returnCode: number };
      if (p.returnCode !== 0) throw new SnClientError(`will topic update refused: ${returnCodeName(p.returnCode)}`, p.returnCode);
    }
    if (update.payload !== undefined) {
      const p = (await this.transact({ type: SnType.WILLMSGUPD, payload: Buffer.from(update.payload) }, (a) => (a.type === SnType.WILLMSGRESP ? a : undefined))) as { returnCode: number };
      if (p.returnCode !== 0) throw new SnClientError(`will message update refused: ${returnCodeName(p.returnCode)}`, p.returnCode);
    }
  }

  /** Goes to sleep for `seconds` (DISCONNECT with a duration, spec 6.14): the gateway buffers messages meanwhile. */
  async sleep(seconds: number): Promise<void> {
    this.stopKeepAlive();
    await this.transact({ type: SnType.DISCONNECT, duration: seconds }, (p) => (p.type === SnType.DISCONNECT ? p : undefined));
  }

  /** Wakes up briefly: the gateway sends what it buffered (as 'message' events), then PINGRESP; resolves then. */
  async wake(timeoutMs = 30_000): Promise<void> {
    await this.idle();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.onPingresp = undefined;
        reject(new SnClientError(`no PINGRESP from the gateway within ${timeoutMs} ms`));
      }, timeoutMs);
      this.onPingresp = () => {
        clearTimeout(timer);
        resolve();
      };
      this.sendNow({ type: SnType.PINGREQ, clientId: this.clientId });
    });
  }

  /** Messages as they arrive; ends when the client closes. */
  async *messages(): AsyncGenerator<SnMessage> {
    for (;;) {
      const m = this.buffered.shift() ?? (this.closed ? undefined : await new Promise<SnMessage | undefined>((r) => this.readers.push(r)));
      if (m === undefined) return;
      yield m;
    }
  }

  /** DISCONNECT (waits briefly for the gateway's DISCONNECT) and closes the socket. */
  async end(): Promise<void> {
    if (this.closed) return;
    this.stopKeepAlive();
    try {
      await Promise.race([
        this.transact({ type: SnType.DISCONNECT }, (p) => (p.type === SnType.DISCONNECT ? p : undefined)),
        new Promise((r) => setTimeout(r, Math.min(this.options.retryInterval, 2000)).unref()),
      ]);
    } catch {
      // closing anyway
    }
    this.close(undefined);
  }

  /** Closes the socket at once, without DISCONNECT (the gateway will take the client as lost). */
  destroy(): void {
    this.close(undefined);
  }

  // ---- internals ----

  private topicFor(topic: string): SnTopic | undefined {
    const id = this.idByName.get(topic);
    if (id !== undefined) return { type: 0, id };
    const pre = this.predefinedByName.get(topic);
    if (pre !== undefined) return { type: 1, id: pre };
    if (isShortTopicName(topic)) return { type: 2, name: topic };
    return undefined;
  }

  private subscribeTopic(filter: string): SnSubscribeTopic {
    const pre = this.predefinedByName.get(filter);
    if (pre !== undefined) return { type: 1, id: pre };
    if (isShortTopicName(filter) && !/[+#]/.test(filter)) return { type: 2, name: filter };
    return { type: 0, name: filter };
  }

  private remember(name: string, id: number): void {
    this.idByName.set(name, id);
    this.nameById.set(id, name);
  }

  private nextMsgId(): number {
    this.msgId = this.msgId >= 0xffff ? 1 : this.msgId + 1;
    return this.msgId;
  }

  private sendNow(p: SnPacket): void {
    if (this.closed || !this.socket || !this.address) return;
    this.lastSent = Date.now();
    this.socket.send(encodeSn(p), this.address.port, this.address.host);
  }

  /** Sends without expecting an answer; resolves once the datagram left (a socket closed at once would drop it). */
  private sendAndFlush(p: SnPacket): Promise<void> {
    if (this.closed || !this.socket || !this.address) return Promise.reject(new SnClientError('the client is closed'));
    this.lastSent = Date.now();
    return new Promise((resolve, reject) => this.socket!.send(encodeSn(p), this.address!.port, this.address!.host, (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves when no transaction is open (QoS 0 goes out between transactions, in order). */
  private async idle(): Promise<void> {
    while (this.current || this.queue.length > 0) {
      await new Promise<void>((resolve) => {
        const t = this.current ?? this.queue.at(-1)!;
        const { resolve: res, reject: rej } = t;
        t.resolve = (v) => {
          res(v);
          resolve();
        };
        t.reject = (e) => {
          rej(e);
          resolve();
        };
      });
    }
  }

  /** Sends `packet` as a transaction: one at a time, retransmitted every Tretry, failed after Nretry. */
  private transact(packet: SnPacket, match: (p: SnPacket, sent: SnPacket) => unknown): Promise<unknown> {
    if (this.closed) return Promise.reject(new SnClientError('the client is closed'));
    return new Promise((resolve, reject) => {
      const datagram = encodeSn(packet);
      const dupAt = packet.type === SnType.PUBLISH || packet.type === SnType.SUBSCRIBE ? (datagram[0] === 0x01 ? 4 : 2) : undefined;
      this.queue.push({ datagram, match: (p) => match(p, packet), resolve, reject, tries: 0, dupAt });
      this.next();
    });
  }

  private next(): void {
    if (this.current || this.closed) return;
    const t = this.queue.shift();
    if (!t) return;
    this.current = t;
    this.transmit(t);
  }

  private transmit(t: Transaction): void {
    if (!this.socket || !this.address) return;
    this.lastSent = Date.now();
    this.socket.send(t.datagram, this.address.port, this.address.host);
    this.restartTimer();
  }

  private restartTimer(): void {
    const t = this.current;
    if (!t) return;
    clearTimeout(t.timer);
    t.timer = setTimeout(() => {
      if (this.current !== t) return;
      if (t.tries >= this.options.maxRetries) {
        this.current = undefined;
        const err = new SnClientError(`no answer from the gateway after ${this.options.maxRetries} retransmissions`);
        t.reject(err);
        this.close(err);
        return;
      }
      t.tries++;
      if (t.dupAt !== undefined) t.datagram[t.dupAt] = t.datagram[t.dupAt]! | 0x80;
      this.transmit(t);
    }, this.options.retryInterval);
    t.timer.unref?.();
  }

  private onPacket(p: SnPacket): void {
    const t = this.current;
    if (t) {
      const value = t.match(p);
      if (value !== undefined) {
        clearTimeout(t.timer);
        this.current = undefined;
        t.resolve(value);
        this.next();
        return;
      }
    }
    switch (p.type) {
      case SnType.REGISTER:
        this.remember(p.topicName, p.topicId);
        this.sendNow({ type: SnType.REGACK, topicId: p.topicId, msgId: p.msgId, returnCode: 0 });
        return;
      case SnType.PUBLISH:
        this.onPublish(p);
        return;
      case SnType.PUBREL:
        this.qos2Received.delete(p.msgId);
        this.sendNow({ type: SnType.PUBCOMP, msgId: p.msgId });
        return;
      case SnType.PINGRESP: {
        const done = this.onPingresp;
        this.onPingresp = undefined;
        done?.();
        return;
      }
      case SnType.DISCONNECT:
        this.close(new SnClientError('disconnected by the gateway'));
        return;
    }
  }

  private onPublish(p: SnPacket & { type: 0x0c }): void {
    const topicId = p.topic.type === 2 ? 0 : p.topic.id;
    const name = p.topic.type === 2 ? p.topic.name : p.topic.type === 1 ? this.predefinedById.get(p.topic.id) : this.nameById.get(p.topic.id);
    if (name === undefined) {
      this.sendNow({ type: SnType.PUBACK, topicId, msgId: p.msgId, returnCode: SnReturnCode.InvalidTopicId });
      return;
    }
    const qos = p.qos === -1 ? 0 : p.qos;
    if (qos === 1) this.sendNow({ type: SnType.PUBACK, topicId, msgId: p.msgId, returnCode: 0 });
    if (qos === 2) {
      this.sendNow({ type: SnType.PUBREC, msgId: p.msgId });
      if (this.qos2Received.has(p.msgId)) return;
      this.qos2Received.add(p.msgId);
    }
    const message: SnMessage = { topic: name, payload: Buffer.from(p.payload), qos, retain: p.retain };
    this.emit('message', message);
    const reader = this.readers.shift();
    if (reader) reader(message);
    else this.buffered.push(message);
  }

  private startKeepAlive(): void {
    const seconds = this.options.keepAlive;
    if (seconds <= 0) return;
    this.keepAliveTimer = setInterval(() => {
      if (Date.now() - this.lastSent >= seconds * 1000 * 0.9 && !this.current) this.sendNow({ type: SnType.PINGREQ });
    }, Math.max(250, (seconds * 1000) / 4));
    this.keepAliveTimer.unref();
  }

  private stopKeepAlive(): void {
    clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
  }

  private close(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.stopKeepAlive();
    const failure = err ?? new SnClientError('the client is closed');
    if (this.current) {
      clearTimeout(this.current.timer);
      this.current.reject(failure);
      this.current = undefined;
    }
    for (const t of this.queue.splice(0)) t.reject(failure);
    for (const r of this.readers.splice(0)) r(undefined);
    try {
      this.socket?.close();
    } catch {
      // already closed
    }
    if (err) this.emit('error', err);
    this.emit('close', err);
  }
}

/** Connects to an MQTT-SN gateway: `connect('mqttsn://host:1884', { clientId })`. */
export async function connect(url: string, options: SnClientOptions = {}): Promise<MqttSnClient> {
  const client = new MqttSnClient(options);
  try {
    await client.connect(url);
  } catch (err) {
    client.destroy();
    throw err;
  }
  return client;
}
