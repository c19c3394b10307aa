// SUBSCRIBE and UNSUBSCRIBE (MQTT 3.8-3.11): filter checks, shared subscriptions, features turned off, the
// authorizeSubscribe hook and the per-client quota; then the registry makes the change and retained
// messages follow the SUBACK.
import { PacketType, ReasonCode, type QoS } from '../protocol/constants.js';
import type { SubscribePacket, UnsubscribePacket } from '../protocol/packets.js';
import { hasMoreLevels, isValidTopicFilter, parseSharedSubscription } from '../protocol/topic.js';
import type { Channel } from './channel.js';
import { callHook, isPromise, type MaybePromise } from './hooks.js';
import type { BrokerLimits } from './options.js';
import type { SubscriptionEntry } from './store/types.js';

interface Requested {
  entry: SubscriptionEntry;
  key: string;
  index: number;
}

export function onSubscribe(ch: Channel, p: SubscribePacket): void {
  const limits = ch.host.limits;
  const subscriptionId = p.properties?.subscriptionIdentifier;
  const id = Array.isArray(subscriptionId) ? subscriptionId[0] : subscriptionId;
  const codes: number[] = new Array(p.subscriptions.length);
  const accepted: Requested[] = [];
  const failCode = (code: number) => (ch.version === 5 ? code : 0x80);
  const authorize = ch.host.hooks.authorizeSubscribe;
  const verdicts: MaybePromise<boolean | number>[] = [];
  for (let i = 0; i < p.subscriptions.length; i++) {
    const s = p.subscriptions[i]!;
    let filter = s.topicFilter;
    let shareGroup: string | undefined;
    try {
      const shared = parseSharedSubscription(filter);
      if (shared) {
        shareGroup = shared.group;
        filter = shared.filter;
        if (s.noLocal) {
          // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
          ch.serverDisconnect(ReasonCode.ProtocolError, 'No Local set on a shared subscription');
          return;
        }
      }
    } catch {
      codes[i] = failCode(ReasonCode.TopicFilterInvalid);
      continue;
    }
    if (!isValidTopicFilter(filter) || hasMoreLevels(filter, limits.maxTopicLevels)) {
      codes[i] = failCode(ReasonCode.TopicFilterInvalid);
      continue;
    }
    // A 5.0 client was told in CONNACK which features are off: using one is a Protocol Error that ends the
    // connection with the feature's code (3.2.2.3.11-13, [MQTT-4.13.1-1]). 3.1.x clients were told
    // nothing, so they get a failure return code for that filter.
    const unavailable = unavailableFeature(limits, shareGroup !== undefined, filter, id !== undefined);
    if (unavailable !== undefined) {
      if (ch.version === 5) {
        ch.serverDisconnect(unavailable, `SUBSCRIBE uses a feature this server does not offer (${filter})`);
        return;
      }
      codes[i] = 0x80;
      continue;
    }
    const entry: SubscriptionEntry = {
      clientId: ch.info!.clientId,
      filter,
      shareGroup,
      qos: Math.min(s.qos, limits.maxQos) as QoS,
      noLocal: s.noLocal ?? false,
      retainAsPublished: s.retainAsPublished ?? false,
      retainHandling: s.retainHandling ?? 0,
      subscriptionIds: id !== undefined ? [id] : undefined,
    };
    accepted.push({ entry, key: s.topicFilter, index: i });
    if (authorize) verdicts.push(callHook(() => authorize(ch.info!, { topicFilter: s.topicFilter, qos: s.qos })));
  }
  // answers: the hook's, one per accepted filter; undefined when there is no hook (all granted).
  const apply = (answers: unknown[] | undefined) => grant(ch, p.packetId, accepted, answers, codes, failCode);
  if (!authorize) {
    apply(undefined);
    return;
  }
  if (!verdicts.some(isPromise)) {
    apply(verdicts);
    return;
  }
  // A hook that fails for one filter fails that filter only.
  const settled = verdicts.map((v) => Promise.resolve(v).catch(() => ReasonCode.UnspecifiedError));
  ch.after(Promise.all(settled), apply, () => apply(accepted.map(() => ReasonCode.UnspecifiedError)));
}

/** Makes the subscriptions the hook granted, within the quota; SUBACK; then the retained messages. */
function grant(ch: Channel, packetId: number, accepted: Requested[], answers: unknown[] | undefined, codes: number[], failCode: (code: number) => number): void {
  const session = ch.session!;
  const registry = ch.host.registry;
  const maxSubscriptions = ch.host.limits.maxSubscriptionsPerClient;
  const granted: { entry: SubscriptionEntry; key: string; existed: boolean }[] = [];
  accepted.forEach((a, k) => {
    const answer = answers === undefined ? true : answers[k];
    const grantedQos = answer === true ? a.entry.qos : typeof answer === 'number' && answer >= 0 && answer <= 2 ? answer : undefined;
    if (grantedQos === undefined) {
      codes[a.index] = failCode(ch.refusal('authorizeSubscribe', answer));
      return;
    }
    if (maxSubscriptions > 0 && session.subscriptionCount >= maxSubscriptions && !session.subscriptions.has(a.key)) {
      // A new filter beyond the quota; replacing one the client holds is always allowed.
      codes[a.index] = failCode(ReasonCode.QuotaExceeded);
      return;
    }
    a.entry.qos = Math.min(a.entry.qos, grantedQos) as QoS;
    // [MQTT-3.8.4-3] a subscription to the same filter replaces the old one.
    const existed = registry.subscribe(session, a.key, a.entry);
    codes[a.index] = a.entry.qos;
    granted.push({ entry: a.entry, key: a.key, existed });
  });
  const suback = () => {
    ch.send({ type: PacketType.SUBACK, packetId, reasonCodes: codes });
    if (granted.length) {
      // Filters as the client wrote them ($share/<group>/... included), as authorizeSubscribe saw them.
      ch.host.events.subscribed?.(ch.info!, granted.map((g) => ({ topicFilter: g.key, qos: g.entry.qos })));
    }
    sendRetained(ch, granted);
  };
  // A durable store: SUBACK once the subscriptions are committed.
  const store = ch.host.store;
  if (store.durable && granted.length > 0 && session.journal !== undefined) store.afterCommit(() => ch.state === 'connected' && suback());
  else suback();
}

/** Retained messages for new subscriptions, after the SUBACK ([MQTT-3.3.1-9]: with RETAIN set). */
function sendRetained(ch: Channel, granted: { entry: SubscriptionEntry; existed: boolean }[]): void {
  const retained = ch.host.retained;
  if (retained.size === 0) return;
  const now = ch.host.clock.now();
  const session = ch.session!;
  for (const { entry, existed } of granted) {
    // Shared subscriptions get no retained messages; Retain Handling 1 only for a new subscription, 2 never.
    if (entry.shareGroup !== undefined || entry.retainHandling === 2 || (entry.retainHandling === 1 && existed)) continue;
    let messages = retained.match(entry.filter, now);
    // An ACL that filters per message filters retained messages too.
    if (ch.host.hooks.authorizeReceive !== undefined) messages = messages.filter((m) => ch.host.dispatch.mayReceive(session, m.topic));
    session.sendRetained(messages, entry.qos, entry.subscriptionIds);
  }
}

/** The reason code of a feature this subscription needs that the server has turned off, if any. */
function unavailableFeature(limits: BrokerLimits, shared: boolean, filter: string, withId: boolean): number | undefined {
  if (shared && !limits.sharedSubscriptionAvailable) return ReasonCode.SharedSubscriptionsNotSupported;
  if (!limits.wildcardSubscriptionAvailable && (filter.includes('+') || filter.includes('#'))) return ReasonCode.WildcardSubscriptionsNotSupported;
  if (withId && !limits.subscriptionIdentifiersAvailable) return ReasonCode.SubscriptionIdentifiersNotSupported;
  return undefined;
}

export function onUnsubscribe(ch: Channel, p: UnsubscribePacket): void {
  const session = ch.session!;
  const registry = ch.host.registry;
  const removed: string[] = [];
  const codes = p.topicFilters.map((key) => {
    if (!registry.unsubscribe(session, key)) return ReasonCode.NoSubscriptionExisted;
    removed.push(key);
    return ReasonCode.Success;
  });
  ch.send({ type: PacketType.UNSUBACK, packetId: p.packetId, reasonCodes: ch.version === 5 ? codes : undefined });
  // Only the subscriptions that existed (the others were answered 0x11).
  if (removed.length > 0) ch.host.events.unsubscribed?.(ch.info!, removed);
}
