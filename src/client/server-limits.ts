// What the server's CONNACK allows this client to send (5.0): QoS, retain, Topic Aliases, packet
// size and Receive Maximum. Checked when a packet is sent, so queued messages meet the limits
// of the connection that carries them.
import type { Buffer } from 'node:buffer';
import { ReasonCode, encodePacket } from '../protocol/index.js';
import type { Properties, ProtocolVersion, PublishPacket, QoS } from '../protocol/index.js';
import { MqttClientError, ackError } from './errors.js';
import { encodeFailure } from './failures.js';

export class ServerLimits {
  receiveMaximum = 65535;
  maximumPacketSize = Infinity;
  private maximumQoS: QoS = 2;
  private retainAvailable = true;
  private topicAliasMaximum = 0;

  /** The limits of a new CONNACK; absent properties mean no limit (Topic Alias Maximum: 0, none). */
  update(props: Properties): void {
    this.receiveMaximum = props.receiveMaximum ?? 65535;
    this.maximumPacketSize = props.maximumPacketSize ?? Infinity;
    this.maximumQoS = (props.maximumQoS ?? 2) as QoS;
    this.retainAvailable = props.retainAvailable !== 0;
    this.topicAliasMaximum = props.topicAliasMaximum ?? 0;
  }

  /** The limits a PUBLISH breaks, as an error; undefined when it may go. */
  publishError(packet: PublishPacket): MqttClientError | undefined {
    const what = `publish to "${packet.topic}"`;
    // [MQTT-3.2.2-11]
    if (packet.qos > this.maximumQoS) return ackError(what, ReasonCode.QoSNotSupported, `the server supports QoS up to ${this.maximumQoS}`);
    // [MQTT-3.2.2-14]
    if (packet.retain && !this.retainAvailable) return ackError(what, ReasonCode.RetainNotSupported, 'the server does not support retained messages');
    // [MQTT-3.3.2-9]: 1..Topic Alias Maximum of the CONNACK (absent: 0, no aliases)
    const alias = packet.properties?.topicAlias;
    if (alias !== undefined && alias > this.topicAliasMaximum) {
      const allowed = this.topicAliasMaximum === 0 ? 'the server accepts no Topic Alias' : `the server accepts Topic Aliases 1 to ${this.topicAliasMaximum}`;
      return ackError(what, ReasonCode.TopicAliasInvalid, `Topic Alias ${alias}: ${allowed}`);
    }
    return undefined;
  }

  /** Encodes a PUBLISH for this connection, or the error saying why the connection must not carry it. */
  encodePublish(packet: PublishPacket, version: ProtocolVersion): Buffer | MqttClientError {
    const refused = this.publishError(packet);
    if (refused) return refused;
    let buf: Buffer;
    try {
      buf = encodePacket(packet, version);
    } catch (err) {
      return new MqttClientError('INVALID_ARGUMENT', encodeFailure('PUBLISH', err), { cause: err });
    }
    return this.sizeError(buf, `publish to "${packet.topic}"`) ?? buf;
  }

  /** A packet larger than the server accepts [MQTT-3.2.2-15], as the error for `what`. */
  sizeError(buf: Buffer, what: string): MqttClientError | undefined {
    if (buf.length <= this.maximumPacketSize) return undefined;
    return ackError(what, ReasonCode.PacketTooLarge, `the packet has ${buf.length} bytes, the server accepts at most ${this.maximumPacketSize}`);
  }
}
