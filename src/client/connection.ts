// Connection: one network connection of the client, bytes in both directions. Incoming bytes go
// through the decoder to `handlers.packet`; packets go out encoded, batched per tick. Whatever
// ends it (the stream closing or failing, bytes that are not MQTT, the client) is reported once
// to `handlers.lost`, in words.
import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { MqttProtocolError, PacketDecoder, PacketType, encodePacket } from '../protocol/index.js';
import type { Packet, ProtocolVersion } from '../protocol/index.js';
import { DisconnectError, MqttClientError } from './errors.js';
import { closedBeforeConnackHint, notConnackError, toClientError } from './failures.js';
import type { OpenedTransport, TlsOptions } from './transport.js';
import { flushAndClose, writeBatched } from './transport.js';
import type { BrokerAddress } from './url.js';
import { hostPort } from './url.js';

export interface ConnectionHandlers {
  packet(packet: Packet): void;
  lost(error: MqttClientError): void;
}

/** Sees every packet sent and received (the client's packetsend / packetreceive events). */
export interface ConnectionObserver {
  sent(packet: Packet): void;
  received(packet: Packet): void;
}

export interface ConnectionSettings {
  protocolVersion: ProtocolVersion;
  address: BrokerAddress;
  tls?: TlsOptions;
  /** The Maximum Packet Size this client announced (5.0). */
  maxPacketSize?: number;
}

export class Connection {
  readonly stream: Duplex;
  readonly tlsSocket?: tls.TLSSocket;
  /** writeBatched's flag: the stream is corked until the next tick. */
  corked = false;
  /** Closed, or closing: nothing more is sent or handled. */
  lost = false;
  /** CONNACK accepted the connection. */
  connected = false;
  private readonly decoder: PacketDecoder;
  /** The first bytes received before CONNACK, to say what answered when it is not MQTT. */
  private firstBytes: Buffer | undefined;

  constructor(
    opened: OpenedTransport,
    private readonly settings: ConnectionSettings,
    public handlers: ConnectionHandlers,
    private readonly observer: ConnectionObserver,
  ) {
    this.stream = opened.stream;
    if (opened.tlsSocket) this.tlsSocket = opened.tlsSocket;
    this.decoder = new PacketDecoder({
      protocolVersion: settings.protocolVersion,
      role: 'client',
      ...(settings.maxPacketSize ? { maxPacketSize: settings.maxPacketSize } : {}),
    });
    const onPacket = (packet: Packet) => {
      if (this.lost) return;
      this.observer.received(packet);
      this.handlers.packet(packet);
    };
    const stream = this.stream;
    stream.on('data', (chunk: Buffer) => {
      if (this.lost) return;
      if (!this.connected && this.firstBytes === undefined) this.firstBytes = Buffer.from(chunk.subarray(0, 64));
      try {
        this.decoder.feed(chunk, onPacket);
      } catch (err) {
        this.decodeFailed(err, chunk);
      }
    });
    stream.on('error', (err) => this.lose(toClientError(err, settings.address)));
    stream.on('close', () => {
      const where = hostPort(settings.address.host, settings.address.port);
      this.lose(
        this.connected
          ? new DisconnectError('CONNECTION_CLOSED', `connection to ${where} closed by the server`)
          : new DisconnectError('CONNECTION_CLOSED', `connection to ${where} closed by the server before CONNACK`, {
              hint: closedBeforeConnackHint(settings.address, settings.protocolVersion, settings.tls),
            }),
      );
    });
    // the server half-closed: finish our side so 'close' follows
    stream.on('end', () => stream.end());
  }

  /** Writes a packet (`encoded` when the caller has its bytes already). */
  send(packet: Packet, encoded?: Buffer): void {
    if (this.lost) return;
    writeBatched(this, encoded ?? encodePacket(packet, this.settings.protocolVersion));
    this.observer.sent(packet);
  }

  /** Ends the connection and reports `error` to handlers.lost, once; what was already written still goes out. */
  lose(error: MqttClientError): void {
    if (this.lost) return;
    this.close();
    this.handlers.lost(error);
  }

  /** Ends the connection without reporting it. Bytes already written (a DISCONNECT with its reason code, 4.13) still go out. */
  close(): void {
    this.lost = true;
    flushAndClose(this);
  }

  /** After a DISCONNECT: ends the stream and waits for the server to close it, at most `ms`. */
  async closeGracefully(ms: number): Promise<void> {
    this.lost = true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.stream.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.stream.end();
    });
  }

  private decodeFailed(err: unknown, chunk: Buffer): void {
    if (!(err instanceof MqttProtocolError)) {
      this.lose(toClientError(err, this.settings.address));
      return;
    }
    if (!this.connected) {
      // not MQTT at all (an HTTP server, a TLS port, ...): say what was expected and what came
      this.lose(notConnackError(this.firstBytes ?? chunk, err, this.settings.address));
      return;
    }
    if (this.settings.protocolVersion === 5) this.send({ type: PacketType.DISCONNECT, reasonCode: err.reasonCode });
    this.lose(new MqttClientError('PROTOCOL_ERROR', `protocol error from the server: ${err.message}`, { reasonCode: err.reasonCode, cause: err }));
  }
}
