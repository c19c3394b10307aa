// A connection's PUBLISH encoder: the per-client parts of an outgoing PUBLISH (5.0 topic aliases toward the
// client, Subscription Identifiers, the remaining Message Expiry, the client's Maximum Packet Size), and the
// encodings a fan-out shares among subscribers of the same kind.
import type { ProtocolVersion, QoS } from '../protocol/constants.js';
import { encodePublish, withPacketId } from '../protocol/encoder.js';
import type { Properties } from '../protocol/packets.js';
import type { Message } from './message.js';
import type { FanOutEncodings } from './session/session.js';

export class PublishWriter {
  /** 5.0 Topic Alias Maximum of the client: aliases the broker may use toward it. */
  topicAliasMaximum = 0;
  /**
   * The client's Maximum Packet Size (5.0). Without one, 2^31 - 1, more than any MQTT packet can be (268,435,460
   * bytes): a small integer, which V8 keeps in the object, where Infinity is a number boxed apart that every
   * delivery would read.
   */
  maxPacketSize = 0x7fffffff;
  /** Aliases assigned toward the client: topic → alias. */
  private aliases: Map<string, number> | undefined;

  get aliasCount(): number {
    return this.aliases?.size ?? 0;
  }

  /** `clock`: read only for a message with an expiry (no clock read per delivered message otherwise). */
  constructor(
    public version: ProtocolVersion,
    private readonly clock: { now(): number },
  ) {}

  /**
   * The PUBLISH for this client, or undefined when it is larger than the client's Maximum Packet Size
   * ([MQTT-3.1.2-25]: dropped for this client). `encodings`: the fan-out's shared encodings, if any.
   * The common case (nothing in the PUBLISH for this subscriber alone, a fan-out's shared encoding) is kept
   * small enough for V8 to inline it into the fan-out loop; the rest are methods of their own.
   */
  encode(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, packetId: number | undefined, dup: boolean, encodings: FanOutEncodings | undefined): Buffer | undefined {
    const v5 = this.version === 5;
    let encoded: Buffer;
    if (v5 && (ids !== undefined || message.expiresAt !== undefined || this.topicAliasMaximum > 0)) {
      encoded = this.encodeOwn(message, qos, retain, ids, packetId, dup);
    } else if (encodings === undefined) {
      encoded = this.encodeAlone(message, qos, retain, packetId, dup);
    } else {
      // One encoding per (version, QoS, retain) for the whole fan-out; QoS 1/2 copies only patch the packet id.
      const shared = encodings[(v5 ? 6 : 0) + qos * 2 + (retain ? 1 : 0)] ?? this.encodeShared(message, qos, retain, encodings);
      encoded = packetId !== undefined ? withPacketId(shared, packetId, dup) : shared;
    }
    return encoded.length > this.maxPacketSize ? undefined : encoded;
  }

  /** One recipient (no shared encodings): encoded with its own packet id at once. */
  private encodeAlone(message: Message, qos: QoS, retain: boolean, packetId: number | undefined, dup: boolean): Buffer {
    const v5 = this.version === 5;
    return encodePublish({ type: 3, topic: message.topic, payload: message.payload, qos, retain, dup, packetId, properties: v5 ? message.properties : undefined }, v5 ? 5 : 4);
  }

  /** The fan-out's encoding for this subscriber's kind (version, QoS, retain), made by its first subscriber. */
  private encodeShared(message: Message, qos: QoS, retain: boolean, encodings: FanOutEncodings): Buffer {
    const v5 = this.version === 5;
    const properties = v5 ? message.properties : undefined;
    return (encodings[(v5 ? 6 : 0) + qos * 2 + (retain ? 1 : 0)] = encodePublish(
      { type: 3, topic: message.topic, payload: message.payload, qos, retain, dup: false, packetId: qos ? 1 : undefined, properties },
      v5 ? 5 : 4,
    ));
  }

  /** Something in this 5.0 PUBLISH is for this subscriber alone (identifiers, the remaining expiry, an alias): encoded for them. */
  private encodeOwn(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, packetId: number | undefined, dup: boolean): Buffer {
    const properties: Properties = { ...message.properties };
    if (ids) properties.subscriptionIdentifier = ids.length === 1 ? ids[0] : [...ids];
    if (message.expiresAt !== undefined) properties.messageExpiryInterval = Math.max(0, Math.ceil((message.expiresAt - this.clock.now()) / 1000));
    let topic = message.topic;
    let newAlias: number | undefined;
    if (this.topicAliasMaximum > 0) {
      const aliases = (this.aliases ??= new Map());
      const known = aliases.get(topic);
      if (known !== undefined) {
        properties.topicAlias = known;
        topic = '';
      } else if (aliases.size < this.topicAliasMaximum) {
        newAlias = properties.topicAlias = aliases.size + 1;
      }
    }
    const encoded = encodePublish({ type: 3, topic, payload: message.payload, qos, retain, dup, packetId, properties }, 5);
    // The alias is known to the client only once the PUBLISH that set it is really sent.
    if (newAlias !== undefined && encoded.length <= this.maxPacketSize) this.aliases!.set(message.topic, newAlias);
    return encoded;
  }
}
