// Streaming MQTT decoder: bytes in (any chunking), typed packets out.
import type { ProtocolVersion } from './constants.js';
import type { Packet } from './packets.js';

export interface DecoderOptions {
  /**
   * Protocol version of the stream. A server-side decoder starts without one and takes it from
   * the CONNECT it decodes (every later packet is decoded for that version). A client sets it.
   */
  protocolVersion?: ProtocolVersion;
  /** Largest whole packet (fixed header included) accepted; larger ones fail with 0x95 from the fixed header alone. */
  maxPacketSize?: number;
  /** 'server' decodes packets a client sends (CONNECT, PUBLISH, SUBSCRIBE, ...); 'client' those a server sends. Default 'server'. */
  role?: 'server' | 'client';
}

export class PacketDecoder {
  protocolVersion: ProtocolVersion | undefined;
  maxPacketSize: number;
  constructor(options: DecoderOptions = {}) {
    this.protocolVersion = options.protocolVersion;
    this.maxPacketSize = options.maxPacketSize ?? 268_435_460;
    throw new Error('not implemented');
  }

  /**
   * Feeds bytes; calls `onPacket` synchronously for each complete packet, in order.
   * Throws MqttProtocolError at the first invalid packet (after delivering the valid ones before it);
   * the decoder is then unusable.
   */
  feed(chunk: Buffer, onPacket: (packet: Packet) => void): void {
    void chunk;
    void onPacket;
    throw new Error('not implemented');
  }

  /** Bytes received but not yet part of a complete packet. */
  get bufferedBytes(): number {
    throw new Error('not implemented');
  }
}
