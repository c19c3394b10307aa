// Topic names and topic filters: validation (spec 4.7) and matching.

/** True when `topic` is a valid topic name for PUBLISH: non-empty, no '+' or '#', at most 65535 UTF-8 bytes, no U+0000. */
export function isValidTopicName(topic: string): boolean {
  void topic;
  throw new Error('not implemented');
}

/** True when `filter` is a valid topic filter: '#' only last and alone in its level, '+' alone in its level. */
export function isValidTopicFilter(filter: string): boolean {
  void filter;
  throw new Error('not implemented');
}

/** True when topic name `topic` matches `filter`; a filter starting with a wildcard does not match '$' topics [MQTT-4.7.2-1]. */
export function topicMatches(filter: string, topic: string): boolean {
  void filter;
  void topic;
  throw new Error('not implemented');
}

/** Parses `$share/{group}/{filter}`; undefined when `filter` is not a shared subscription. Throws MqttProtocolError(0x8F) when malformed. */
export function parseSharedSubscription(filter: string): { group: string; filter: string } | undefined {
  void filter;
  throw new Error('not implemented');
}
