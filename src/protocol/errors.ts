// The one error type of the protocol layer: every decode or validation failure carries the
// reason code a server must answer with, so callers never map generic exceptions.
import { reasonName } from './constants.js';

export class MqttProtocolError extends Error {
  override readonly name = 'MqttProtocolError';
  /**
   * 5.0 reason code that describes the failure: 0x81 Malformed Packet, 0x82 Protocol Error,
   * 0x84 Unsupported Protocol Version, 0x95 Packet Too Large, 0x8F / 0x90 invalid topic, ...
   */
  readonly reasonCode: number;
  /** Packet type being decoded when it failed, when known. */
  readonly packetType?: number;
  /**
   * For a CONNECT whose protocol name/level is not supported: the level byte it carried,
   * so the server can answer in the format the client is most likely to understand.
   */
  readonly requestedProtocolLevel?: number;

  constructor(reasonCode: number, message: string, extra?: { packetType?: number; requestedProtocolLevel?: number }) {
    super(`${message} (${reasonName(reasonCode)})`);
    this.reasonCode = reasonCode;
    this.packetType = extra?.packetType;
    this.requestedProtocolLevel = extra?.requestedProtocolLevel;
  }
}

export const malformed = (message: string, packetType?: number) => new MqttProtocolError(0x81, message, { packetType });
export const protocolError = (message: string, packetType?: number) => new MqttProtocolError(0x82, message, { packetType });
