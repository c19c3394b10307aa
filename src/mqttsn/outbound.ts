// Messages from the broker on their way to one MQTT-SN client, sans I/O: a bounded queue, REGISTER
// before PUBLISH where the client has no id for the topic, one transaction at a time (spec 6.13:
// REGISTER, PUBLISH QoS 1/2, PUBREL) retransmitted every Tretry, and the acknowledgements relayed to
// the broker.
import { Buffer } from 'node:buffer';
import type { Packet, PublishPacket } from '../protocol/packets.js';
import { encodeSn } from './codec.js';
import { SnReturnCode, SnType } from './packets.js';
import { knownTopic, type ClientTopics } from './topics.js';
import type { GatewayHost, Peer } from './gateway.js';

/** A message from the broker on its way to the client. */
interface Outgoing {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** The broker's packet id (QoS 1/2), used as the MQTT-SN MsgId. */
  packetId: number;
  /** Already REGISTERed again once after the client answered "invalid topic id". */
  reregistered?: boolean;
}

/** The one transaction the gateway has open toward the client (spec 6.13: one at a time), retransmitted on Tretry. */
interface Pending {
  kind: 'register' | 'publish' | 'pubrel' | 'await-pubrel';
  msgId: number;
  /** What is resent; undefined for await-pubrel (the broker's PUBREL is awaited, nothing to resend). */
  datagram: Buffer | undefined;
  sentAt: number;
  tries: number;
  item?: Outgoing;
  /** REGISTER: the topic id offered. */
  topicId?: number;
}

/** What the queue needs from its client. */
export interface OutboundHost {
  readonly gw: GatewayHost;
  readonly peer: Peer;
  readonly topics: ClientTopics;
  /** Active or awake: messages may go out now. */
  canSend(): boolean;
  asleep(): boolean;
  /** Sends a packet to the broker on the client's virtual connection. */
  toBroker(packet: Packet, now: number): void;
  /** Nothing queued and no transaction open (an awake client then gets PINGRESP). */
  drained(now: number): void;
}

export class Outbound {
  private readonly queue: Outgoing[] = [];
  /** The open transaction, if any. */
  pending: Pending | undefined;
  private registerMsgId = 0;

  constructor(private readonly host: OutboundHost) {}

  onRegack(msgId: number, topicId: number, returnCode: number, now: number): void {
    const pending = this.pending;
    if (!pending || pending.kind !== 'register' || pending.msgId !== msgId) return;
    this.pending = undefined;
    const item = pending.item!;
    if (returnCode === SnReturnCode.Accepted) {
      this.host.topics.set(item.topic, pending.topicId ?? topicId);
    } else {
      // The client refuses the topic: the message cannot be delivered; it is acknowledged so the session moves on.
      this.queue.shift();
      this.host.gw.stats.undeliverable++;
      this.ackBroker(item, now);
    }
    this.pump(now);
  }


  push(p: PublishPacket, now: number): void {
    const item: Outgoing = { topic: p.topic, payload: Buffer.from(p.payload), qos: p.qos, retain: p.retain, packetId: p.packetId ?? 0 };
    if (item.qos === 0 && this.queue.length >= this.host.gw.options.maxBufferedMessages) {
      // Bounded: the oldest QoS 0 message makes room (QoS 1/2 wait in the broker's session queue instead).
      const oldest = this.queue.findIndex((m, i) => m.qos === 0 && (i > 0 || this.pending === undefined));
      if (oldest < 0) {
        this.host.gw.stats.bufferDropped++;
        return;
      }
      this.queue.splice(oldest, 1);
      this.host.gw.stats.bufferDropped++;
    }
    this.queue.push(item);
    this.pump(now);
  }


  onBrokerPubrel(packetId: number, now: number): void {
    const pending = this.pending;
    if (pending?.kind !== 'await-pubrel' || pending.msgId !== packetId) {
      // Not ours to relay (e.g. after a reconnection): complete it for the broker.
      this.host.toBroker({ type: 7, packetId }, now);
      return;
    }
    this.pending = { kind: 'pubrel', msgId: packetId, datagram: encodeSn({ type: SnType.PUBREL, msgId: packetId }), sentAt: now, tries: 0 };
    if (!this.host.asleep()) this.host.gw.send(this.host.peer, this.pending.datagram!);
  }


  /** Sends what can go now: one transaction at a time, QoS 0 messages between them, REGISTER first where needed. */
  pump(now: number): void {
    while (this.pending === undefined && this.queue.length > 0 && this.host.canSend()) {
      const item = this.queue[0]!;
      const topic = knownTopic(item.topic, this.host.topics, this.host.gw.predefined);
      if (topic === undefined) {
        // [MQTT-SN 6.7] a topic the client has no id for (a wildcard subscription): REGISTER it first.
        const topicId = this.host.topics.reserve();
        if (topicId === undefined) {
          this.queue.shift();
          this.host.gw.stats.undeliverable++;
          this.ackBroker(item, now);
          continue;
        }
        const msgId = this.nextRegisterMsgId();
        const datagram = encodeSn({ type: SnType.REGISTER, topicId, msgId, topicName: item.topic });
        this.pending = { kind: 'register', msgId, datagram, sentAt: now, tries: 0, item, topicId };
        this.host.gw.send(this.host.peer, datagram);
        return;
      }
      this.queue.shift();
      let datagram: Buffer;
      try {
        datagram = encodeSn({ type: SnType.PUBLISH, dup: false, qos: item.qos, retain: item.retain, topic, msgId: item.qos > 0 ? item.packetId : 0, payload: item.payload });
      } catch {
        datagram = Buffer.alloc(0xffff + 1);
      }
      if (datagram.length > this.host.gw.options.maxMessageSize) {
        this.host.gw.stats.undeliverable++;
        this.ackBroker(item, now);
        continue;
      }
      this.host.gw.send(this.host.peer, datagram);
      this.host.gw.stats.delivered++;
      if (item.qos > 0) this.pending = { kind: 'publish', msgId: item.packetId, datagram, sentAt: now, tries: 0, item };
    }
    if (this.pending === undefined && this.queue.length === 0) this.host.drained(now);
  }

  private nextRegisterMsgId(): number {
    this.registerMsgId = this.registerMsgId >= 0xffff ? 1 : this.registerMsgId + 1;
    return this.registerMsgId;
  }

  /** Acknowledges to the broker a message the client will not get (too large, topic refused). */
  private ackBroker(item: Outgoing, now: number): void {
    if (item.qos === 1) this.host.toBroker({ type: 4, packetId: item.packetId, reasonCode: 0x80 }, now);
    // A PUBREC with a failure code ends a QoS 2 flow in 5.0: no PUBREL follows.
    else if (item.qos === 2) this.host.toBroker({ type: 5, packetId: item.packetId, reasonCode: 0x80 }, now);
  }

  onPuback(msgId: number, returnCode: number, now: number): void {
    const pending = this.pending;
    if (!pending || pending.kind !== 'publish' || pending.msgId !== msgId) return;
    this.pending = undefined;
    const item = pending.item!;
    if (returnCode === SnReturnCode.InvalidTopicId && !item.reregistered) {
      // The client lost the registration (spec 6.7): register the topic again and resend.
      this.host.topics.delete(item.topic);
      item.reregistered = true;
      this.queue.unshift(item);
      this.pump(now);
      return;
    }
    if (item.qos === 2) {
      // A QoS 2 message answered with PUBACK is refused by the client.
      this.ackBroker(item, now);
    } else {
      this.host.toBroker({ type: 4, packetId: msgId, reasonCode: returnCode === SnReturnCode.Accepted ? 0 : 0x80 }, now);
    }
    this.pump(now);
  }

  onPubrec(msgId: number, now: number): void {
    const pending = this.pending;
    if (pending?.kind === 'pubrel' && pending.msgId === msgId) {
      // Our PUBREL crossed a retransmitted PUBREC: send it again.
      this.host.gw.send(this.host.peer, pending.datagram!);
      return;
    }
    if (!pending || pending.kind !== 'publish' || pending.msgId !== msgId || pending.item!.qos !== 2) return;
    this.pending = { kind: 'await-pubrel', msgId, datagram: undefined, sentAt: now, tries: 0 };
    this.host.toBroker({ type: 5, packetId: msgId }, now);
  }

  onPubcomp(msgId: number, now: number): void {
    const pending = this.pending;
    if (!pending || pending.kind !== 'pubrel' || pending.msgId !== msgId) return;
    this.pending = undefined;
    this.host.toBroker({ type: 7, packetId: msgId }, now);
    this.pump(now);
  }


  resend(now: number): void {
    const pending = this.pending!;
    pending.tries++;
    pending.sentAt = now;
    if (pending.kind === 'publish') setDup(pending.datagram!);
    this.host.gw.stats.retransmissions++;
    this.host.gw.send(this.host.peer, pending.datagram!);
  }

  /** Messages in flight from the broker are resent by it on a new virtual connection: forget our copies. */
  reset(keepQos0: boolean): void {
    this.pending = undefined;
    for (let i = this.queue.length - 1; i >= 0; i--) if (!keepQos0 || this.queue[i]!.qos > 0) this.queue.splice(i, 1);
  }

  /** Retransmits the open transaction when Tretry has passed; false when Nretry is used up (the client is lost). */
  retransmit(now: number): boolean {
    const pending = this.pending;
    const o = this.host.gw.options;
    if (!pending?.datagram || now - pending.sentAt < o.retryInterval * 1000) return true;
    if (pending.tries >= o.maxRetries) return false;
    this.resend(now);
    return true;
  }
}

/** Sets the DUP flag of an encoded PUBLISH (spec 5.3.4) for its retransmission. */
function setDup(datagram: Buffer): void {
  const flagsAt = datagram[0] === 0x01 ? 4 : 2;
  datagram[flagsAt] = datagram[flagsAt]! | 0x80;
}

