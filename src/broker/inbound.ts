// PUBLISH from the client and the acknowledgements of both directions' QoS flows (MQTT 3.3-3.7, 4.3): the
// checks a PUBLISH must pass, topic aliases, the authorizePublish hook, then routing and PUBACK / PUBREC.
import { Buffer, isUtf8 } from 'node:buffer';
import { PacketType, ReasonCode } from '../protocol/constants.js';
import type { PubAckLikePacket, PublishPacket } from '../protocol/packets.js';
import { hasMoreLevels } from '../protocol/topic.js';
import type { Channel } from './channel.js';
import { callHook } from './hooks.js';
import { createMessage, type Message } from './message.js';
import { newRouteMemo } from './router.js';
import { isSysTopic } from './sys-topics.js';

export function onPublish(ch: Channel, p: PublishPacket): void {
  const host = ch.host;
  const limits = host.limits;
  host.stats.publishReceived++;
  host.stats.publishReceivedByQos[p.qos]++;
  const limited = ch.transport.publishLimit?.(host.clock.now(), p.payload.length) ?? 0;
  if (limited !== 0) {
    ch.serverDisconnect(limited, 'publish rate limit exceeded');
    return;
  }
  if (p.qos > limits.maxQos) {
    ch.serverDisconnect(ReasonCode.QoSNotSupported, `QoS ${p.qos} is above the maximum QoS ${limits.maxQos}`);
    return;
  }
  if (p.retain && !limits.retainAvailable) {
    ch.serverDisconnect(ReasonCode.RetainNotSupported, 'retained messages are not supported');
    return;
  }
  // Only a 5.0 PUBLISH has properties, and so perhaps a Topic Alias (3.1.1 never calls resolveAlias, so V8
  // spends none of onPublish's inlining budget on it).
  const topic = p.properties === undefined ? p.topic : resolveAlias(ch, p);
  if (topic === undefined) return;
  if (host.sysTopics !== undefined && isSysTopic(topic)) {
    // $SYS/ is the broker's own tree (sys-topics.ts): refused as an ACL denial is, so nobody fakes its figures.
    ackPublish(ch, p, ReasonCode.NotAuthorized);
    return;
  }
  if (hasMoreLevels(topic, limits.maxTopicLevels)) {
    // 5.0 QoS 1/2 can be told in the acknowledgement; QoS 0 and 3.1.x (no negative PUBACK) are cut off, as
    // Mosquitto cuts off a topic beyond its hierarchy limit, so no publisher believes such a message went out.
    const reason = `topic has more than maxTopicLevels (${limits.maxTopicLevels}) levels`;
    if (p.qos === 0 || ch.version !== 5) ch.serverDisconnect(ReasonCode.TopicNameInvalid, reason);
    else ackPublish(ch, p, ReasonCode.TopicNameInvalid);
    return;
  }
  if (p.properties?.payloadFormatIndicator === 1 && limits.validatePayloadFormat && !isUtf8(p.payload)) {
    // The publisher said UTF-8 and it is not: refuse it (QoS 0 has no acknowledgement to carry the code).
    if (p.qos === 0) ch.serverDisconnect(ReasonCode.PayloadFormatInvalid, 'payload is not UTF-8 although Payload Format Indicator says so');
    else ackPublish(ch, p, ReasonCode.PayloadFormatInvalid);
    return;
  }
  const session = ch.session!;
  if (p.qos === 2) {
    if (session.hasIncomingQos2(p.packetId!)) {
      // [MQTT-4.3.3-9] a resent QoS 2 PUBLISH is acknowledged again but not delivered twice (durable: once
      // the first one is committed).
      const store = host.store;
      if (store.durable && session.journal !== undefined) store.afterCommit(() => ch.state !== 'closed' && ch.sendAck(PacketType.PUBREC, p.packetId!));
      else ch.sendAck(PacketType.PUBREC, p.packetId!);
      return;
    }
    if (session.incomingQos2Count >= limits.receiveMaximum) {
      ch.serverDisconnect(ReasonCode.ReceiveMaximumExceeded, `more than ${limits.receiveMaximum} QoS 2 messages unacknowledged`);
      return;
    }
  }
  // lastReceived is the clock read when this chunk arrived: no second clock read per message. A message
  // that may outlive this input chunk (QoS 1/2, retained) gets its own payload now, so publish() need not copy it.
  const payload = p.qos > 0 || p.retain ? ownCopy(p.payload) : p.payload;
  const message = createMessage({ topic, payload, qos: p.qos, retain: p.retain, properties: p.properties }, ch.info!.clientId, ch.lastReceived);
  const authorize = host.hooks.authorizePublish;
  if (!authorize) {
    route(ch, p, message);
    return;
  }
  ch.publishHookPending = p.qos !== 0;
  ch.after(
    callHook(() => authorize(ch.info!, message)),
    (ok) => {
      ch.publishHookPending = false;
      if (ok === true) route(ch, p, message);
      else ackPublish(ch, p, ch.refusal('authorizePublish', ok));
    },
    () => {
      ch.publishHookPending = false;
      ackPublish(ch, p, ReasonCode.UnspecifiedError);
    },
  );
}

/** Uint8Array#set itself: V8's optimising compiler leaves the load of `copy.set` generic (a LoadIC call). */
const typedArraySet = Uint8Array.prototype.set;

/**
 * A payload's own copy, in Node's buffer pool as Buffer.from(buffer) makes it, without Buffer.from's probing
 * of what it was given (a call into C++ and a valueOf() per QoS 1/2 message).
 */
function ownCopy(payload: Buffer): Buffer {
  const copy = Buffer.allocUnsafe(payload.length);
  typedArraySet.call(copy, payload);
  return copy;
}

/** The topic of a PUBLISH, through its 5.0 Topic Alias; undefined when the alias is wrong (the client is cut off). */
function resolveAlias(ch: Channel, p: PublishPacket): string | undefined {
  const alias = p.properties?.topicAlias;
  if (alias === undefined) return p.topic;
  const max = ch.host.limits.topicAliasMaximum;
  if (alias === 0 || alias > max) {
    ch.serverDisconnect(ReasonCode.TopicAliasInvalid, `topic alias ${alias} is outside 1..${max}`);
    return undefined;
  }
  const aliases = (ch.topicAliases ??= new Map());
  if (p.topic !== '') {
    aliases.set(alias, p.topic);
    return p.topic;
  }
  const known = aliases.get(alias);
  if (known === undefined) ch.serverDisconnect(ReasonCode.TopicAliasInvalid, `topic alias ${alias} was never set`);
  return known;
}

function route(ch: Channel, p: PublishPacket, message: Message): void {
  // A retained message the store cannot take (maxRetainedBytes, memory high): 5.0 QoS 1/2 is refused whole
  // with 0x97 Quota exceeded, so the publisher knows; QoS 0 and 3.1.x are delivered but not kept (dispatch.ts).
  if (p.retain && p.qos !== 0 && ch.version === 5 && refuseRetained(ch, p, message)) return;
  const store = ch.host.store;
  const session = ch.session!;
  // A durable session holds a QoS 2 packet id in the same commit as the message's effects: a restart after
  // PUBREC then still knows it, and a resent PUBLISH is not delivered twice.
  if (p.qos === 2 && store.durable && session.journal !== undefined) session.holdIncomingQos2(p.packetId!);
  // The payload was copied when the message was made, if it had to be.
  const delivered = ch.host.publish(message, ch.info, true, (ch.routeMemo ??= newRouteMemo()));
  if (p.qos === 0) return; // nothing to acknowledge (no call on the QoS 0 path)
  const code = delivered === 0 ? ReasonCode.NoMatchingSubscribers : ReasonCode.Success;
  // A durable store: acknowledged only once what the message changed is committed.
  if (store.durable) store.afterCommit(() => ackPublish(ch, p, code), () => notStored(ch, p));
  else ackPublish(ch, p, code);
}

/** PUBACK/PUBREC 0x97 when the retained store cannot take `message`; false when it can. */
function refuseRetained(ch: Channel, p: PublishPacket, message: Message): boolean {
  const dispatch = ch.host.dispatch;
  const refusal = dispatch.retainRefusal(message);
  if (refusal === undefined) return false;
  dispatch.retainRefused(message, refusal);
  ackPublish(ch, p, ReasonCode.QuotaExceeded);
  return true;
}

/** A QoS 1/2 PUBLISH whose effects could not be committed (disk full, I/O error): not acknowledged as done. */
function notStored(ch: Channel, p: PublishPacket): void {
  if (ch.state === 'closed') return;
  if (p.qos === 2) ch.session!.releaseIncomingQos2(p.packetId!);
  // 5.0 says so in the acknowledgement; 3.1.1 has no negative PUBACK: the connection is closed, so the
  // client sends it again later.
  if (ch.version === 5) ackPublish(ch, p, ReasonCode.QuotaExceeded);
  else ch.serverDisconnect(ReasonCode.UnspecifiedError, 'the message could not be stored');
}

/** PUBACK / PUBREC for an incoming PUBLISH; 3.1.x has no reason codes, so a refusal is acknowledged and dropped. */
function ackPublish(ch: Channel, p: PublishPacket, reasonCode: number): void {
  if (p.qos === 0 || ch.state === 'closed') return;
  // PUBACK kept small enough to be inlined where every QoS 1 PUBLISH is routed; QoS 2 is ackQos2.
  if (p.qos === 1) ch.sendAck(PacketType.PUBACK, p.packetId!, ch.version === 5 ? reasonCode : undefined);
  else ackQos2(ch, p, reasonCode);
}

/** PUBREC; the packet id is held until PUBREL unless the PUBLISH was refused. */
function ackQos2(ch: Channel, p: PublishPacket, reasonCode: number): void {
  const session = ch.session!;
  if (reasonCode < 0x80) {
    if (!session.hasIncomingQos2(p.packetId!)) session.holdIncomingQos2(p.packetId!);
  } else if (session.hasIncomingQos2(p.packetId!)) session.releaseIncomingQos2(p.packetId!);
  ch.sendAck(PacketType.PUBREC, p.packetId!, ch.version === 5 ? reasonCode : undefined);
}

export function onPubrel(ch: Channel, p: PubAckLikePacket): void {
  const known = ch.session!.releaseIncomingQos2(p.packetId);
  ch.sendAck(PacketType.PUBCOMP, p.packetId, known || ch.version !== 5 ? undefined : ReasonCode.PacketIdentifierNotFound);
}

const ACK_NAMES = { 4: 'PUBACK', 5: 'PUBREC', 7: 'PUBCOMP' } as const;

/** PUBACK, PUBREC or PUBCOMP for a message we sent: the session moves the flow on. */
export function onPublishAck(ch: Channel, p: PubAckLikePacket): void {
  // Small (every QoS 1/2 message's acknowledgement passes here): the answers to a wrong one are ackProblem.
  const outcome = ch.session!.acknowledge(p.type as 4 | 5 | 7, p.packetId, p.reasonCode ?? 0);
  if (outcome !== 'done') ackProblem(ch, p, outcome);
}

/** An acknowledgement of no message in flight ('unknown') or of the wrong kind for its flow ('mismatch'). */
function ackProblem(ch: Channel, p: PubAckLikePacket, outcome: 'unknown' | 'mismatch'): void {
  const type = p.type as 4 | 5 | 7;
  if (outcome === 'unknown') {
    if (type === PacketType.PUBREC && ch.version === 5) ch.sendAck(PacketType.PUBREL, p.packetId, ReasonCode.PacketIdentifierNotFound);
    return;
  }
  // 4.3.2-4.3.3: each QoS has its own sequence of acknowledgements; one of another flow (PUBCOMP for a
  // message awaiting PUBACK or PUBREC, ...) is a protocol violation, and 3.1.1 [MQTT-4.8.0-1] closes the
  // connection on one, as Mosquitto does (5.0: DISCONNECT 0x82). Ignoring it would leave both sides
  // waiting on a flow that can no longer finish.
  const m = ch.session!.inflightMessage(p.packetId)!;
  const awaiting = m.qos === 1 ? 'PUBACK' : m.state === 'publish' ? 'PUBREC' : 'PUBCOMP';
  ch.serverDisconnect(ReasonCode.ProtocolError, `${ACK_NAMES[type]} for packet ${p.packetId}, which awaits ${awaiting}`);
}
