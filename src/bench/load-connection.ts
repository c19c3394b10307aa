// One connection of the load generator: a raw MQTT client cheaper than MqttClient (no session,
// no promises). Its CONNECT comes from the client's builder, its acknowledgements from the codec.
import type { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { buildConnectPacket, encodeConnect } from '../client/connect-packet.js';
import { MqttClientError, TimeoutError, connackError, explainNetworkError, formatDuration } from '../client/errors.js';
import type { ResolvedOptions } from '../client/options.js';
import { openTransport, writeBatched } from '../client/transport.js';
import { isSecure } from '../client/url.js';
import { PacketDecoder, PacketType, encodeAck, encodePacket } from '../protocol/index.js';
import type { ConnackPacket, ProtocolVersion, PubAckLikePacket } from '../protocol/index.js';

export class LoadConnection {
  readonly decoder: PacketDecoder;
  lastWrite = performance.now();
  outstanding = 0;
  nextId = 1;
  sent = 0;
  /** When publishing started (rate control). */
  publishStart = 0;
  receiveMaximum = 65535;
  closed = false;
  corked = false;
  template: Buffer | undefined;
  payloadOffset = -1;
  idOffset = -1;
  readonly sendTimes: Float64Array | undefined;

  constructor(
    readonly index: number,
    readonly clientId: string,
    readonly stream: Duplex,
    readonly version: ProtocolVersion,
    withAckTimes: boolean,
  ) {
    this.decoder = new PacketDecoder({ protocolVersion: version, role: 'client' });
    this.sendTimes = withAckTimes ? new Float64Array(65536) : undefined;
  }

  write(buf: Buffer): boolean {
    if (this.closed) return false;
    this.lastWrite = performance.now();
    return writeBatched(this, buf);
  }

  /** PUBACK / PUBREC / PUBREL / PUBCOMP for `packetId`, as the codec encodes it. */
  ack(type: PubAckLikePacket['type'], packetId: number): void {
    this.write(encodeAck(type, packetId, undefined, this.version));
  }

  ping(): void {
    this.write(encodePacket({ type: PacketType.PINGREQ }, this.version));
  }

  /** DISCONNECT and the end of the stream. */
  disconnect(): void {
    this.closed = true;
    this.stream.end(encodePacket({ type: PacketType.DISCONNECT }, this.version));
  }
}

/** Opens connection number `index` (Client ID prefix_index) and waits for its CONNACK within the connect timeout. */
export async function openLoadConnection(index: number, o: ResolvedOptions, withAckTimes: boolean): Promise<{ conn: LoadConnection; connack: ConnackPacket; latency: number }> {
  const started = performance.now();
  const clientId = `${o.clientId}_${index}`;
  const connectBytes = encodeConnect(buildConnectPacket(o, clientId), o.sessionExpiry);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), o.connectTimeout);
  let stream: Duplex | undefined;
  try {
    const opened = await openTransport(o.address, { tls: o.tls, wsHeaders: o.wsHeaders, signal: abort.signal }).catch((err) => {
      throw abort.signal.aborted
        ? new TimeoutError('CONNECT_TIMEOUT', `timed out after ${formatDuration(o.connectTimeout)} opening the connection`)
        : explainNetworkError(err, { host: o.address.host, port: o.address.port, tls: isSecure(o.address.scheme), phase: 'handshake' });
    });
    stream = opened.stream;
    const conn = new LoadConnection(index, clientId, stream, o.protocolVersion, withAckTimes);
    const s = stream;
    const connack = await new Promise<ConnackPacket>((resolve, reject) => {
      const onAbort = () => reject(new TimeoutError('CONNECT_TIMEOUT', `timed out waiting for CONNACK after ${formatDuration(o.connectTimeout)}`));
      abort.signal.addEventListener('abort', onAbort, { once: true });
      const onData = (chunk: Buffer) => {
        try {
          conn.decoder.feed(chunk, (p) => {
            if (p.type === PacketType.CONNACK) {
              s.off('data', onData);
              s.pause();
              resolve(p);
            }
          });
        } catch (err) {
          reject(err);
        }
      };
      s.on('data', onData);
      s.once('error', (err) => reject(explainNetworkError(err, { host: o.address.host, port: o.address.port })));
      s.once('close', () => reject(new MqttClientError('CONNECTION_CLOSED', 'connection closed by the server before CONNACK')));
      s.write(connectBytes);
    });
    if (connack.reasonCode !== 0) throw connackError(connack.reasonCode, o.protocolVersion, connack.properties?.reasonString);
    conn.receiveMaximum = connack.properties?.receiveMaximum ?? 65535;
    return { conn, connack, latency: performance.now() - started };
  } catch (err) {
    stream?.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
