// The server-to-client half of the flow state: Topic Aliases of the current connection and the
// QoS 2 packet ids received but not yet released (PUBREL), which outlive a connection with the session.
import type { PublishPacket } from '../protocol/index.js';
import { ReasonCode } from '../protocol/index.js';

export type TopicResult = { topic: string } | { violation: string; reasonCode: number };

export class InboundFlows {
  private readonly incomingQos2 = new Set<number>();
  private readonly topicAliases = new Map<number, string>();

  /** @param topicAliasMaximum the Topic Alias Maximum this client announced in CONNECT (0: none). */
  constructor(private readonly topicAliasMaximum: number) {}

  /** A new connection: aliases are per connection [MQTT-3.3.2-7]; QoS 2 ids go when the session does. */
  connected(sessionPresent: boolean): void {
    this.topicAliases.clear();
    if (!sessionPresent) this.incomingQos2.clear();
  }

  /** The topic of a PUBLISH once its Topic Alias is applied, or the protocol violation it commits. */
  topicOf(packet: PublishPacket): TopicResult {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) return { topic: packet.topic };
    // 3.3.2.3.4: an alias of 0 or above the Topic Alias Maximum we announced is 0x94 Topic Alias invalid
    const maximum = this.topicAliasMaximum;
    if (alias === 0 || alias > maximum) return { violation: `Topic Alias ${alias} outside 1..${maximum}`, reasonCode: ReasonCode.TopicAliasInvalid };
    if (packet.topic !== '') {
      this.topicAliases.set(alias, packet.topic);
      return { topic: packet.topic };
    }
    const known = this.topicAliases.get(alias);
    if (known === undefined) return { violation: `an unknown Topic Alias ${alias}`, reasonCode: ReasonCode.ProtocolError };
    return { topic: known };
  }

  /** A QoS 2 PUBLISH: true the first time its id comes, false for a copy before PUBREL (delivered once [MQTT-4.3.3-9]). */
  firstQos2(packetId: number): boolean {
    if (this.incomingQos2.has(packetId)) return false;
    this.incomingQos2.add(packetId);
    return true;
  }

  /** PUBREL: releases the id; false when it was not known. */
  release(packetId: number): boolean {
    return this.incomingQos2.delete(packetId);
  }
}
