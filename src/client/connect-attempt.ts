// One connection attempt: open the transport, send CONNECT, wait for CONNACK, all within the
// connect timeout. Resolves once the server accepted; rejects with what went wrong, in words.
import type { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { PacketType, ReasonCode } from '../protocol/index.js';
import type { ConnackPacket, ConnectPacket, DisconnectPacket, Packet } from '../protocol/index.js';
import { buildConnectPacket, encodeConnect } from './connect-packet.js';
import { Connection } from './connection.js';
import type { ConnectionObserver } from './connection.js';
import { ClientClosedError, MqttClientError, connackError, serverDisconnectError } from './errors.js';
import { connectTimeoutError, packetName, toClientError } from './failures.js';
import type { ResolvedOptions } from './options.js';
import { timerDelay } from './session-state.js';
import type { OpenedTransport, TransportStage } from './transport.js';
import { openTransport } from './transport.js';

export interface AttemptParams<T> {
  options: ResolvedOptions;
  clientId: string;
  observer: ConnectionObserver;
  /** A 5.0 DISCONNECT came instead of CONNACK. */
  onDisconnect(packet: DisconnectPacket): void;
  /**
   * CONNACK accepted the connection. Called synchronously, so the packets that came in the same
   * read as CONNACK reach the handlers it installs on the connection.
   */
  onAccepted(connection: Connection, connack: ConnackPacket): T;
}

/** A connection attempt in progress: `done` settles once; abort() ends it (the client was closed). */
export class ConnectAttempt<T> {
  readonly done: Promise<T>;
  private readonly abortController = new AbortController();

  constructor(params: AttemptParams<T>) {
    this.done = this.run(params);
  }

  abort(): void {
    this.abortController.abort();
  }

  private run(params: AttemptParams<T>): Promise<T> {
    const { options, clientId } = params;
    const { address, connectTimeout } = options;
    // a CONNECT that cannot be encoded fails now, before a socket is opened
    let connectPacket: ConnectPacket;
    let connectBytes: Buffer;
    try {
      connectPacket = buildConnectPacket(options, clientId);
      connectBytes = encodeConnect(connectPacket, options.sessionExpiry);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const abort = this.abortController;
    return new Promise<T>((resolve, reject) => {
      let phase: TransportStage | 'connack' = 'tcp';
      let settled = false;
      let conn: Connection | undefined;
      const fail = (err: MqttClientError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        abort.abort();
        conn?.close();
        reject(err);
      };
      abort.signal.addEventListener('abort', () => fail(new ClientClosedError('CLIENT_CLOSED', 'the client was closed while connecting')), { once: true });
      const timer = setTimeout(() => fail(connectTimeoutError(phase, connectTimeout, address)), timerDelay(connectTimeout));

      const onConnack = (c: Connection, packet: ConnackPacket) => {
        if (packet.reasonCode !== 0) {
          fail(connackError(packet.reasonCode, options.protocolVersion, packet.properties?.reasonString, packet.properties?.serverReference));
          return;
        }
        if (packet.sessionPresent && options.clean) {
          // Clean Start 1 leaves no session to resume: the client must close [MQTT-3.2.2-4] (3.1.1: [MQTT-3.2.2-1])
          if (options.protocolVersion === 5) c.send({ type: PacketType.DISCONNECT, reasonCode: ReasonCode.ProtocolError });
          const flag = options.protocolVersion === 5 ? 'Clean Start' : 'Clean Session';
          fail(
            new MqttClientError('PROTOCOL_ERROR', `protocol error: the server answered ${flag} 1 with Session Present 1 (a new session cannot be present)`, {
              reasonCode: ReasonCode.ProtocolError,
            }),
          );
          return;
        }
        settled = true;
        clearTimeout(timer);
        c.connected = true;
        resolve(params.onAccepted(c, packet));
      };
      const beforeConnack = (c: Connection, packet: Packet) => {
        if (settled) return;
        if (packet.type === PacketType.CONNACK) return onConnack(c, packet);
        if (packet.type === PacketType.DISCONNECT && options.protocolVersion === 5) {
          // a DISCONNECT instead of CONNACK breaks [MQTT-3.14.0-1] but says why: report its reason code and string
          params.onDisconnect(packet);
          fail(serverDisconnectError(packet.reasonCode ?? 0, packet.properties?.reasonString, packet.properties?.serverReference, true));
          return;
        }
        // [MQTT-3.2.0-1] the first packet from the server is CONNACK (AUTH would be 5.0 enhanced authentication, which this client does not start)
        const what = packet.type === PacketType.AUTH ? 'AUTH (enhanced authentication, which this client did not ask for)' : packetName(packet.type);
        fail(new MqttClientError('PROTOCOL_ERROR', `protocol error: the server did not answer CONNECT with CONNACK: it sent ${what} first`, { reasonCode: ReasonCode.ProtocolError }));
      };

      const open: Promise<OpenedTransport> = options.createStream
        ? options.createStream(address).then((s) => ('stream' in s && !('write' in s) ? s : { stream: s as Duplex }))
        : openTransport(address, {
            tls: options.tls,
            wsHeaders: options.wsHeaders,
            signal: abort.signal,
            onStage: (stage) => {
              if (phase !== 'connack') phase = stage;
            },
          });
      open.then(
        (opened) => {
          if (settled) {
            opened.stream.destroy();
            return;
          }
          try {
            phase = 'connack';
            const settings = {
              protocolVersion: options.protocolVersion,
              address,
              ...(options.tls ? { tls: options.tls } : {}),
              ...(options.properties?.maximumPacketSize ? { maxPacketSize: options.properties.maximumPacketSize } : {}),
            };
            const c = new Connection(opened, settings, { packet: (p) => beforeConnack(c, p), lost: fail }, params.observer);
            conn = c;
            c.send(connectPacket, connectBytes);
          } catch (err) {
            fail(toClientError(err, address));
          }
        },
        (err) => fail(toClientError(err, address, 'handshake')),
      );
    });
  }
}
