// A raw MQTT connection for tests: sends exactly the packets (or bytes) a test asks for and
// collects what the broker answers, decoded. For the edge cases no client library will produce.
import { connect as netConnect, type Socket } from 'node:net';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnackPacket, ConnectPacket, Packet } from '../../src/protocol/packets.js';

export class RawClient {
  readonly packets: Packet[] = [];
  closed = false;
  private waiters: (() => void)[] = [];
  private readonly decoder: PacketDecoder;
  decodeError: Error | undefined;

  private constructor(
    readonly socket: Socket,
    public version: ProtocolVersion,
  ) {
    this.decoder = new PacketDecoder({ protocolVersion: version, role: 'client' });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.feed(chunk, (p) => this.packets.push(p));
      } catch (err) {
        this.decodeError = err as Error;
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number, version: ProtocolVersion = 4): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ port, host: '127.0.0.1' }, () => resolve(new RawClient(socket, version)));
      socket.once('error', reject);
    });
  }

  /** Opens a connection and completes CONNECT/CONNACK. */
  static async connect(port: number, connect: Partial<ConnectPacket> = {}): Promise<{ client: RawClient; connack: ConnackPacket }> {
    const version = connect.protocolVersion ?? 4;
    const client = await RawClient.open(port, version);
    client.send({
      type: 1,
      protocolName: version === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: version,
      clean: true,
      keepAlive: 0,
      clientId: '',
      ...connect,
    } as ConnectPacket);
    const connack = (await client.next(2)) as ConnackPacket;
    return { client, connack };
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(packet: Packet): void {
    this.socket.write(encodePacket(packet, this.version));
  }

  sendBytes(bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
  }

  /** Waits for (and removes) the first received packet of `type` (any type when omitted). */
  async next(type?: number, timeoutMs = 2000): Promise<Packet> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.packets.findIndex((p) => type === undefined || p.type === type);
      if (i >= 0) return this.packets.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`connection closed while waiting for packet type ${type ?? 'any'}; got ${JSON.stringify(this.packets.map((p) => p.type))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for packet type ${type ?? 'any'}; got ${JSON.stringify(this.packets.map((p) => p.type))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves when the broker has closed the connection (rejects after timeoutMs). */
  async waitClosed(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the broker to close the connection');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Collects packets for `ms` and returns those of `type` (to assert that nothing arrives). */
  async collect(ms: number, type?: number): Promise<Packet[]> {
    await new Promise((r) => setTimeout(r, ms));
    const out = this.packets.filter((p) => type === undefined || p.type === type);
    for (const p of out) this.packets.splice(this.packets.indexOf(p), 1);
    return out;
  }

  /** A round trip (PINGREQ/PINGRESP): everything the broker sent before it has arrived. */
  async sync(): Promise<void> {
    this.send({ type: 12 });
    await this.next(13);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
