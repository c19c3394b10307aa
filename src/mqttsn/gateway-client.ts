// One MQTT-SN client of the gateway, sans I/O: its state (spec 6.14: active, asleep, awake, lost),
// the CONNECT and will exchanges, topic ids, and the translation between its MQTT-SN messages and
// the MQTT 5.0 packets of its virtual connection to the broker. Datagrams leave through the
// gateway; time comes in as `now`.
import { Buffer } from 'node:buffer';
import { transportInfo } from '../broker/channel.js';
import type { Packet, PubAckLikePacket, SubackPacket } from '../protocol/packets.js';
import { isValidTopicFilter, isValidTopicName } from '../protocol/topic.js';
import { encodeSn } from './codec.js';
import { SN_PROTOCOL_ID, SnReturnCode, SnType, type SnConnectPacket, type SnPacket, type SnPublishPacket, type SnSubscribeTopic, type SnTopic } from './packets.js';
import { ClientTopics } from './topics.js';
import { Outbound } from './outbound.js';
import { VirtualConnection, type GatewayCore } from './virtual-connection.js';
import type { GatewayHost, Peer } from './gateway.js';

export type ClientState = 'will-topic' | 'will-msg' | 'connecting' | 'active' | 'asleep' | 'awake' | 'gone';

interface Will {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
}

/** Session Expiry Interval of a clean-session client's virtual connection: long enough to survive a will update (a reconnection). */
const CLEAN_SESSION_GRACE_S = 60;
/** Recent QoS 1 MsgIds answered, to answer a retransmission again without publishing twice. */
const RECENT_ACKS = 8;

export class GatewayClient {
  state: ClientState;
  clientId: string;
  private cleanSession: boolean;
  /** Keep alive (s) from CONNECT; sleep duration (s) once asleep. */
  private duration: number;
  private will: Will | undefined;
  private willTopicDraft: { topic: string | undefined; qos: 0 | 1 | 2; retain: boolean } | undefined;
  private openedAt: number;
  lastHeard: number;
  private link: VirtualConnection | undefined;
  /** The broker's Server Keep Alive on the virtual connection (s), 0 for none. */
  private serverKeepAlive = 0;
  readonly topics: ClientTopics;
  private readonly out: Outbound;
  /** Client QoS 1 PUBLISHes sent to the broker, not yet acknowledged: MsgId → topic id to echo. */
  private readonly inbound = new Map<number, number>();
  private readonly recentAcks: { msgId: number; topicId: number; code: number }[] = [];
  /** SUBSCRIBEs waiting for the broker's SUBACK: MsgId → topic id to return. */
  private readonly subscribing = new Map<number, number>();
  /** A will update waiting for the new virtual connection's CONNACK: what to answer. */
  private willUpdate: 'topic' | 'msg' | undefined;

  constructor(
    private readonly gw: GatewayHost,
    readonly peer: Peer,
    readonly key: string,
    connect: SnConnectPacket,
    now: number,
  ) {
    this.clientId = connect.clientId;
    this.cleanSession = connect.cleanSession;
    this.duration = connect.duration;
    this.openedAt = now;
    this.lastHeard = now;
    this.topics = new ClientTopics(gw.options.maxTopicsPerClient);
    this.state = 'connecting';
    this.out = new Outbound({
      gw,
      peer,
      topics: this.topics,
      canSend: () => this.state === 'active' || this.state === 'awake',
      asleep: () => this.state === 'asleep',
      toBroker: (packet, now) => this.link?.send(packet, now),
      drained: (now) => {
        if (this.state !== 'awake') return;
        // Everything buffered went out: PINGRESP, and the client sleeps again ([MQTT-SN 6.14]).
        this.state = 'asleep';
        this.lastHeard = now;
        this.send({ type: SnType.PINGRESP });
      },
    });
  }

  get connected(): boolean {
    return this.state === 'active' || this.state === 'asleep' || this.state === 'awake';
  }

  get halfOpen(): boolean {
    return this.state === 'will-topic' || this.state === 'will-msg' || (this.state === 'connecting' && this.willUpdate === undefined);
  }

  private get core(): GatewayCore {
    return this.gw.core;
  }

  private send(packet: SnPacket): void {
    this.gw.send(this.peer, encodeSn(packet));
  }

  // ---- CONNECT (spec 6.2) ----

  /** A CONNECT: the first (the gateway calls it once the client is in its map), or a repeated one. */
  startConnect(p: SnConnectPacket, now: number): void {
    if (p.protocolId !== SN_PROTOCOL_ID) {
      this.send({ type: SnType.CONNACK, returnCode: SnReturnCode.NotSupported });
      this.end(now, 'refused', 'unknown protocol id');
      return;
    }
    this.clientId = p.clientId;
    this.cleanSession = p.cleanSession;
    this.duration = p.duration;
    this.openedAt = now;
    if (p.will) {
      // [MQTT-SN 6.3] the gateway asks for the will topic, then the will message.
      this.state = 'will-topic';
      this.send({ type: SnType.WILLTOPICREQ });
    } else {
      this.will = undefined;
      this.openLink(this.cleanSession, now);
    }
  }

  /** Opens the virtual connection and sends its CONNECT; the CONNACK comes back through onBrokerPacket. */
  private openLink(cleanStart: boolean, now: number): void {
    this.state = 'connecting';
    this.serverKeepAlive = 0;
    const info = transportInfo(this.gw.transport, this.gw.remoteAddress(this.peer));
    const link: VirtualConnection = new VirtualConnection(this.core, info, {
      packet: (packet) => {
        if (this.link === link) this.onBrokerPacket(packet);
      },
      closed: () => {
        if (this.link === link) this.onBrokerClosed();
      },
    });
    this.link = link;
    const expiry = this.cleanSession ? CLEAN_SESSION_GRACE_S : this.gw.options.sessionExpiry;
    link.send(
      {
        type: 1,
        protocolName: 'MQTT',
        protocolVersion: 5,
        clean: cleanStart,
        // The gateway keeps MQTT-SN keep alive and sleep itself ([MQTT-SN 6.14]); the broker sees no keep alive.
        keepAlive: 0,
        clientId: this.clientId,
        will: this.will ? { topic: this.will.topic, payload: this.will.payload, qos: this.will.qos, retain: this.will.retain } : undefined,
        // One message in flight toward the client at a time (spec 6.13); the rest wait in the broker's session queue.
        properties: { sessionExpiryInterval: expiry, receiveMaximum: 1 },
      },
      now,
    );
  }

  // ---- datagrams from the client ----

  receive(p: SnPacket, now: number): void {
    this.lastHeard = now;
    switch (p.type) {
      case SnType.CONNECT:
        this.onConnect(p, now);
        return;
      case SnType.WILLTOPIC:
        if (this.state !== 'will-topic') return;
        if (p.topic !== undefined && !isValidTopicName(p.topic)) {
          this.send({ type: SnType.CONNACK, returnCode: SnReturnCode.NotSupported });
          this.end(now, 'refused', 'invalid will topic');
          return;
        }
        if (p.topic === undefined) {
          // An empty WILLTOPIC: no will after all (spec 5.4.7).
          this.will = undefined;
          this.openLink(this.cleanSession, now);
          return;
        }
        this.willTopicDraft = { topic: p.topic, qos: p.qos, retain: p.retain };
        this.state = 'will-msg';
        this.send({ type: SnType.WILLMSGREQ });
        return;
      case SnType.WILLMSG:
        if (this.state !== 'will-msg' || !this.willTopicDraft?.topic) return;
        this.will = { topic: this.willTopicDraft.topic, qos: this.willTopicDraft.qos, retain: this.willTopicDraft.retain, payload: Buffer.from(p.payload) };
        this.willTopicDraft = undefined;
        this.openLink(this.cleanSession, now);
        return;
      case SnType.DISCONNECT:
        this.onDisconnect(p.duration, now);
        return;
      case SnType.PINGREQ:
        this.onPingreq(p.clientId, now);
        return;
    }
    if (!this.connected) return; // the rest needs a connection; a half-open client's retransmissions are ignored
    switch (p.type) {
      case SnType.REGISTER:
        this.onRegister(p.topicName, p.msgId);
        return;
      case SnType.REGACK:
        this.out.onRegack(p.msgId, p.topicId, p.returnCode, now);
        return;
      case SnType.PUBLISH:
        this.onPublish(p, now);
        return;
      case SnType.PUBACK:
        this.out.onPuback(p.msgId, p.returnCode, now);
        return;
      case SnType.PUBREC:
        this.out.onPubrec(p.msgId, now);
        return;
      case SnType.PUBREL:
        this.link?.send({ type: 6, packetId: p.msgId }, now);
        return;
      case SnType.PUBCOMP:
        this.out.onPubcomp(p.msgId, now);
        return;
      case SnType.SUBSCRIBE:
        this.onSubscribe(p.topic, p.qos, p.msgId, now);
        return;
      case SnType.UNSUBSCRIBE:
        this.onUnsubscribe(p.topic, p.msgId, now);
        return;
      case SnType.WILLTOPICUPD:
        this.onWillTopicUpdate(p.topic, p.qos, p.retain, now);
        return;
      case SnType.WILLMSGUPD:
        this.onWillMsgUpdate(p.payload, now);
        return;
    }
    // Anything else (a gateway's or client's answer type sent to us) is ignored.
  }

  private onConnect(p: SnConnectPacket, now: number): void {
    if (!this.connected) {
      // A retransmitted CONNECT during the handshake: start it again (the answer was lost).
      if (this.state === 'connecting' && this.link?.open) return; // the broker has not answered yet
      this.startConnect(p, now);
      return;
    }
    // A client reconnecting (from sleep, or after a reboot): the old virtual connection ends without its
    // will and a new one starts, resuming the session unless Clean Session is set ([MQTT-SN 6.14]).
    this.link?.disconnect(0, p.cleanSession ? 0 : undefined, now);
    this.link = undefined;
    this.resetOutbound(false);
    this.startConnect(p, now);
  }

  private onDisconnect(duration: number | undefined, now: number): void {
    if (!this.connected) {
      this.send({ type: SnType.DISCONNECT });
      this.end(now, 'disconnected');
      return;
    }
    if (duration !== undefined && duration > 0) {
      // [MQTT-SN 6.14] asleep: messages for the client are buffered until it wakes.
      this.state = 'asleep';
      this.duration = duration;
      this.send({ type: SnType.DISCONNECT });
      return;
    }
    this.send({ type: SnType.DISCONNECT });
    // A normal DISCONNECT: the will is not published; a clean session ends now.
    this.link?.disconnect(0, this.cleanSession ? 0 : undefined, now);
    this.end(now, 'disconnected');
  }

  private onPingreq(clientId: string | undefined, now: number): void {
    if (this.state === 'asleep' || this.state === 'awake') {
      if (clientId === undefined || clientId !== this.clientId) return;
      // [MQTT-SN 6.14] awake: buffered messages first, then PINGRESP sends it back to sleep.
      this.state = 'awake';
      if (this.out.pending?.datagram) this.out.resend(now);
      this.out.pump(now);
      return;
    }
    if (this.state === 'active') this.send({ type: SnType.PINGRESP });
  }

  // ---- topics ----

  private onRegister(topicName: string, msgId: number): void {
    // [MQTT-SN 6.5] the gateway assigns the id; a name with wildcards cannot be published to.
    if (!isValidTopicName(topicName)) {
      this.send({ type: SnType.REGACK, topicId: 0, msgId, returnCode: SnReturnCode.NotSupported });
      return;
    }
    const id = this.topics.assign(topicName);
    if (id === undefined) this.send({ type: SnType.REGACK, topicId: 0, msgId, returnCode: SnReturnCode.Congestion });
    else this.send({ type: SnType.REGACK, topicId: id, msgId, returnCode: SnReturnCode.Accepted });
  }

  /** The topic name a PUBLISH from the client names, or undefined (answered with "invalid topic id"). */
  private resolve(topic: SnTopic): string | undefined {
    if (topic.type === 0) return this.topics.name(topic.id);
    if (topic.type === 1) return this.gw.predefined.name(topic.id);
    return isValidTopicName(topic.name) ? topic.name : undefined;
  }

  // ---- PUBLISH from the client (spec 6.8, 6.10) ----

  private onPublish(p: SnPublishPacket, now: number): void {
    const topicId = p.topic.type === 2 ? 0 : p.topic.id;
    const name = this.resolve(p.topic);
    if (name === undefined) {
      // [MQTT-SN 6.10] unknown topic id: PUBACK "rejected: invalid topic ID", whatever the QoS.
      this.send({ type: SnType.PUBACK, topicId, msgId: p.msgId, returnCode: SnReturnCode.InvalidTopicId });
      return;
    }
    const qos = p.qos === -1 ? 0 : p.qos;
    if (qos === 1) {
      if (this.inbound.has(p.msgId)) return; // a retransmission while the broker is still on it
      const recent = this.recentAcks.find((a) => a.msgId === p.msgId);
      if (recent && p.dup) {
        // A retransmission whose PUBACK was lost: answer it again, do not publish twice.
        this.send({ type: SnType.PUBACK, topicId: recent.topicId, msgId: p.msgId, returnCode: recent.code });
        return;
      }
      this.inbound.set(p.msgId, topicId);
    } else if (qos === 2) {
      this.inbound.set(p.msgId, topicId);
    }
    this.link?.send({ type: 3, topic: name, payload: p.payload, qos, retain: p.retain, dup: p.dup && qos > 0, packetId: qos > 0 ? p.msgId : undefined }, now);
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE (spec 6.9) ----

  /** The filter a SUBSCRIBE / UNSUBSCRIBE names and the topic id SUBACK returns, or a return code. */
  private filterOf(topic: SnSubscribeTopic): { filter: string; topicId: number } | number {
    if (topic.type === 1) {
      const name = this.gw.predefined.name(topic.id);
      return name === undefined ? SnReturnCode.InvalidTopicId : { filter: name, topicId: topic.id };
    }
    if (!isValidTopicFilter(topic.name)) return SnReturnCode.NotSupported;
    if (topic.type === 2) return { filter: topic.name, topicId: 0 };
    const wildcard = topic.name.includes('+') || topic.name.includes('#');
    if (wildcard) return { filter: topic.name, topicId: 0 };
    // A name without wildcards gets its topic id in SUBACK: the gateway publishes with it, no REGISTER.
    const id = this.topics.assign(topic.name);
    return id === undefined ? SnReturnCode.Congestion : { filter: topic.name, topicId: id };
  }

  private onSubscribe(topic: SnSubscribeTopic, qos: 0 | 1 | 2, msgId: number, now: number): void {
    const target = this.filterOf(topic);
    if (typeof target === 'number') {
      this.send({ type: SnType.SUBACK, qos: 0, topicId: 0, msgId, returnCode: target });
      return;
    }
    if (this.subscribing.has(msgId)) return; // retransmitted while the broker answers
    this.subscribing.set(msgId, target.topicId);
    this.link?.send({ type: 8, packetId: msgId, subscriptions: [{ topicFilter: target.filter, qos }] }, now);
  }

  private onUnsubscribe(topic: SnSubscribeTopic, msgId: number, now: number): void {
    const target = this.filterOf(topic);
    if (typeof target === 'number') {
      // Nothing to unsubscribe from: MQTT-SN's UNSUBACK has no return code.
      this.send({ type: SnType.UNSUBACK, msgId });
      return;
    }
    this.link?.send({ type: 10, packetId: msgId, topicFilters: [target.filter] }, now);
  }

  // ---- will updates (spec 6.4) ----

  private onWillTopicUpdate(topic: string | undefined, qos: 0 | 1 | 2, retain: boolean, now: number): void {
    if (topic !== undefined && !isValidTopicName(topic)) {
      this.send({ type: SnType.WILLTOPICRESP, returnCode: SnReturnCode.NotSupported });
      return;
    }
    if (topic === undefined) this.will = undefined;
    else this.will = { topic, qos, retain, payload: this.will?.payload ?? Buffer.alloc(0) };
    this.relink('topic', now);
  }

  private onWillMsgUpdate(payload: Buffer, now: number): void {
    if (!this.will) {
      this.send({ type: SnType.WILLMSGRESP, returnCode: SnReturnCode.NotSupported });
      return;
    }
    this.will = { ...this.will, payload: Buffer.from(payload) };
    this.relink('msg', now);
  }

  /**
   * MQTT has no will update: the virtual connection is replaced by one carrying the new will, resuming the
   * same session (the old one ends with a normal DISCONNECT, so the old will is not published).
   */
  private relink(what: 'topic' | 'msg', now: number): void {
    this.link?.disconnect(0, undefined, now);
    this.link = undefined;
    this.resetOutbound(true);
    this.willUpdate = what;
    this.openLink(false, now);
  }

  /** Messages in flight from the broker are resent by it on the new connection: forget our copies. */
  private resetOutbound(keepQos0: boolean): void {
    this.out.reset(keepQos0);
    this.inbound.clear();
    this.subscribing.clear();
  }

  // ---- packets from the broker ----

  private onBrokerPacket(p: Packet): void {
    const now = this.core.clock.now();
    switch (p.type) {
      case 2:
        this.onConnack(p.reasonCode, p.properties?.serverKeepAlive, now);
        return;
      case 3:
        this.out.push(p, now);
        return;
      case 4:
      case 5:
        this.onBrokerPubackOrPubrec(p as PubAckLikePacket);
        return;
      case 6:
        this.out.onBrokerPubrel(p.packetId, now);
        return;
      case 7:
        this.inbound.delete(p.packetId);
        this.send({ type: SnType.PUBCOMP, msgId: p.packetId });
        return;
      case 9:
        this.onSuback(p);
        return;
      case 11:
        this.send({ type: SnType.UNSUBACK, msgId: p.packetId });
        return;
      case 14:
        // The broker ends the connection (takeover, administrative action, ...): the client learns it.
        this.send({ type: SnType.DISCONNECT });
        this.end(now, 'disconnected by the broker');
        return;
    }
  }

  private onBrokerClosed(): void {
    const now = this.core.clock.now();
    if (this.state === 'gone') return;
    if (this.connected) this.send({ type: SnType.DISCONNECT });
    this.end(now, 'connection closed by the broker');
  }

  private onConnack(reasonCode: number, serverKeepAlive: number | undefined, now: number): void {
    const update = this.willUpdate;
    this.willUpdate = undefined;
    if (reasonCode !== 0) {
      if (update) this.send({ type: update === 'topic' ? SnType.WILLTOPICRESP : SnType.WILLMSGRESP, returnCode: connackCode(reasonCode) });
      else this.send({ type: SnType.CONNACK, returnCode: connackCode(reasonCode) });
      this.end(now, 'refused', `CONNACK 0x${reasonCode.toString(16)}`);
      return;
    }
    this.serverKeepAlive = serverKeepAlive ?? 0;
    this.state = 'active';
    if (update) this.send({ type: update === 'topic' ? SnType.WILLTOPICRESP : SnType.WILLMSGRESP, returnCode: SnReturnCode.Accepted });
    else this.send({ type: SnType.CONNACK, returnCode: SnReturnCode.Accepted });
    this.out.pump(now);
  }

  private onBrokerPubackOrPubrec(p: PubAckLikePacket): void {
    const topicId = this.inbound.get(p.packetId) ?? 0;
    const code = p.reasonCode ?? 0;
    if (p.type === 4 || code >= 0x80) {
      this.inbound.delete(p.packetId);
      const returnCode = code < 0x80 ? SnReturnCode.Accepted : publishCode(code);
      this.recentAcks.push({ msgId: p.packetId, topicId, code: returnCode });
      if (this.recentAcks.length > RECENT_ACKS) this.recentAcks.shift();
      this.send({ type: SnType.PUBACK, topicId, msgId: p.packetId, returnCode });
      return;
    }
    this.send({ type: SnType.PUBREC, msgId: p.packetId });
  }

  private onSuback(p: SubackPacket): void {
    const topicId = this.subscribing.get(p.packetId) ?? 0;
    this.subscribing.delete(p.packetId);
    const code = p.reasonCodes[0] ?? 0x80;
    if (code <= 2) this.send({ type: SnType.SUBACK, qos: code as 0 | 1 | 2, topicId, msgId: p.packetId, returnCode: SnReturnCode.Accepted });
    else this.send({ type: SnType.SUBACK, qos: 0, topicId: 0, msgId: p.packetId, returnCode: code === 0x97 ? SnReturnCode.Congestion : SnReturnCode.NotSupported });
  }

  // ---- timers ----

  /** Retransmission (Tretry / Nretry), keep alive (1.5 x), sleep duration, connect timeout. */
  tick(now: number): void {
    if (this.state === 'gone') return;
    if (!this.connected) {
      if (this.halfOpen && now - this.openedAt > this.core.limits.connectTimeout) this.end(now, 'timeout', 'CONNECT not completed within the connect timeout');
      return;
    }
    const o = this.gw.options;
    // [MQTT-SN 6.14] keep alive and sleep duration, each with the 1.5 x tolerance of MQTT.
    if (this.state !== 'awake' && this.duration > 0 && now - this.lastHeard > this.duration * 1500) {
      this.lost(now, this.state === 'asleep' ? 'sleep duration passed without waking' : 'keep alive timeout');
      return;
    }
    // [MQTT-SN 6.13] Nretry retransmissions without an answer: the client is lost.
    if (this.state !== 'asleep' && !this.out.retransmit(now)) {
      this.lost(now, `no answer after ${o.maxRetries} retransmissions`);
      return;
    }
    if (this.serverKeepAlive > 0 && this.link && now - this.link.lastSent >= this.serverKeepAlive * 500) this.link.send({ type: 12 }, now);
  }

  /** The client stopped answering: as a lost TCP connection, the will is published. */
  lost(now: number, why: string): void {
    this.gw.stats.lost++;
    // DISCONNECT 0x04 (with will) ends the session of a clean-session client too (expiry 0).
    this.link?.disconnect(0x04, this.cleanSession ? 0 : undefined, now);
    this.end(now, 'lost', why);
  }

  /** The gateway closes: the client's connection ends as a lost one (its will is published). */
  shutdown(now: number): void {
    if (this.state === 'gone') return;
    this.link?.transportClosed();
    this.end(now, 'gateway closed');
  }

  private end(now: number, event: string, detail?: string): void {
    if (this.state === 'gone') return;
    this.state = 'gone';
    const link = this.link;
    this.link = undefined;
    if (link?.open) link.transportClosed();
    this.gw.removed(this, event, detail, now);
  }
}

/** A 5.0 CONNACK reason code as an MQTT-SN return code (spec 5.3.10 has only four). */
function connackCode(reasonCode: number): number {
  if (reasonCode === 0x89 || reasonCode === 0x97 || reasonCode === 0x9f) return SnReturnCode.Congestion; // busy, quota, rate
  return SnReturnCode.NotSupported;
}

/** A 5.0 PUBACK reason code as an MQTT-SN return code. */
function publishCode(reasonCode: number): number {
  if (reasonCode === 0x97 || reasonCode === 0x96) return SnReturnCode.Congestion;
  if (reasonCode === 0x90) return SnReturnCode.InvalidTopicId;
  return SnReturnCode.NotSupported;
}
