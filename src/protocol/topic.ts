// Topic names and topic filters: validation (spec 4.7) and matching.
import { Buffer } from 'node:buffer';
import { MqttProtocolError } from './errors.js';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Non-empty, at most 65535 UTF-8 bytes, no U+0000, no unpaired surrogate. */
function isValidTopicString(s: string): boolean {
  if (s.length === 0 || s.includes('\u0000')) return false;
  // byteLength ≤ 3 × length, so only long strings need measuring.
  if (s.length > 21845 && Buffer.byteLength(s, 'utf8') > 65535) return false;
  return !LONE_SURROGATE.test(s);
}

/** True when `topic` is a valid topic name for PUBLISH: non-empty, no '+' or '#', at most 65535 UTF-8 bytes, no U+0000. */
export function isValidTopicName(topic: string): boolean {
  return isValidTopicString(topic) && !topic.includes('+') && !topic.includes('#');
}

/** True when `filter` is a valid topic filter: '#' only last and alone in its level, '+' alone in its level. */
export function isValidTopicFilter(filter: string): boolean {
  if (!isValidTopicString(filter)) return false;
  const n = filter.length;
  for (let i = 0; i < n; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0x23 /* # */) {
      // Alone in the last level [MQTT-4.7.1-1].
      if (i !== n - 1 || (i > 0 && filter.charCodeAt(i - 1) !== 0x2f)) return false;
    } else if (c === 0x2b /* + */) {
      // Alone in its level [MQTT-4.7.1-2].
      if ((i > 0 && filter.charCodeAt(i - 1) !== 0x2f) || (i < n - 1 && filter.charCodeAt(i + 1) !== 0x2f)) return false;
    }
  }
  return true;
}

/** True when `topic` (a name or a filter) has more than `max` levels. Short topics cost one comparison: n levels take at least n - 1 characters. */
export function hasMoreLevels(topic: string, max: number): boolean {
  if (topic.length < max) return false;
  let separators = 0;
  for (let i = 0; i < topic.length; i++) {
    if (topic.charCodeAt(i) === 0x2f /* / */ && ++separators >= max) return true;
  }
  return false;
}

/** True when topic name `topic` matches `filter`; a filter starting with a wildcard does not match '$' topics [MQTT-4.7.2-1]. */
export function topicMatches(filter: string, topic: string): boolean {
  const fl = filter.length;
  const tl = topic.length;
  if (fl === 0 || tl === 0) return false;
  const f0 = filter.charCodeAt(0);
  if (topic.charCodeAt(0) === 0x24 /* $ */ && (f0 === 0x23 || f0 === 0x2b)) return false;
  let fi = 0;
  let ti = 0;
  for (;;) {
    // fi and ti are at the start of a level.
    const c = fi < fl ? filter.charCodeAt(fi) : -1;
    if (c === 0x23 /* # */) return true;
    if (c === 0x2b /* + */ && (fi + 1 === fl || filter.charCodeAt(fi + 1) === 0x2f)) {
      while (ti < tl && topic.charCodeAt(ti) !== 0x2f) ti++;
      fi++;
    } else {
      while (fi < fl) {
        const fc = filter.charCodeAt(fi);
        if (fc === 0x2f) break;
        if (ti >= tl || topic.charCodeAt(ti) !== fc) return false;
        fi++;
        ti++;
      }
      if (ti < tl && topic.charCodeAt(ti) !== 0x2f) return false;
    }
    // Both at a '/' or at their end.
    if (fi >= fl) return ti >= tl;
    if (ti >= tl) {
      // The topic ended; only a trailing "/#" still matches (it matches the parent level too).
      return fi + 2 === fl && filter.charCodeAt(fi + 1) === 0x23;
    }
    fi++;
    ti++;
  }
}

/** Parses `$share/{group}/{filter}`; undefined when `filter` is not a shared subscription. Throws MqttProtocolError(0x8F) when malformed. */
export function parseSharedSubscription(filter: string): { group: string; filter: string } | undefined {
  if (!filter.startsWith('$share/')) return undefined;
  const slash = filter.indexOf('/', 7);
  if (slash < 0) throw new MqttProtocolError(0x8f, `shared subscription "${filter}" has no topic filter`);
  const group = filter.slice(7, slash);
  if (group.length === 0 || group.includes('+') || group.includes('#')) {
    throw new MqttProtocolError(0x8f, `shared subscription "${filter}" has an invalid share name [MQTT-4.8.2-2]`);
  }
  const rest = filter.slice(slash + 1);
  if (!isValidTopicFilter(rest)) {
    throw new MqttProtocolError(0x8f, `shared subscription "${filter}" has an invalid or missing topic filter`);
  }
  return { group, filter: rest };
}
