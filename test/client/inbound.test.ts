// InboundFlows: Topic Aliases from the server and QoS 2 packet ids until PUBREL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InboundFlows } from '../../src/client/inbound.js';
import type { PublishPacket } from '../../src/protocol/index.js';

const pub = (topic: string, topicAlias?: number): PublishPacket => ({
  type: 3,
  topic,
  payload: Buffer.alloc(0),
  qos: 0,
  retain: false,
  dup: false,
  ...(topicAlias !== undefined ? { properties: { topicAlias } } : {}),
});

test('Topic Aliases: set with a topic, used with an empty one, only 1..the maximum announced, per connection [MQTT-3.3.2-7]', () => {
  const f = new InboundFlows(2);
  assert.deepEqual(f.topicOf(pub('plain')), { topic: 'plain' });
  assert.deepEqual(f.topicOf(pub('a/b', 1)), { topic: 'a/b' });
  assert.deepEqual(f.topicOf(pub('', 1)), { topic: 'a/b' });
  assert.deepEqual(f.topicOf(pub('', 2)), { violation: 'an unknown Topic Alias 2', reasonCode: 0x82 });
  assert.deepEqual(f.topicOf(pub('x', 3)), { violation: 'Topic Alias 3 outside 1..2', reasonCode: 0x94 });
  assert.deepEqual(f.topicOf(pub('x', 0)), { violation: 'Topic Alias 0 outside 1..2', reasonCode: 0x94 });
  f.connected(true);
  assert.deepEqual(f.topicOf(pub('', 1)), { violation: 'an unknown Topic Alias 1', reasonCode: 0x82 }, 'aliases do not outlive the connection');
  assert.deepEqual(new InboundFlows(0).topicOf(pub('x', 1)), { violation: 'Topic Alias 1 outside 1..0', reasonCode: 0x94 }, 'none announced: none allowed');
});

test('QoS 2 ids: delivered once until PUBREL [MQTT-4.3.3-9]; kept with the session, dropped without it', () => {
  const f = new InboundFlows(0);
  assert.equal(f.firstQos2(5), true);
  assert.equal(f.firstQos2(5), false, 'a copy before PUBREL');
  f.connected(true);
  assert.equal(f.firstQos2(5), false, 'the session was kept: still waiting for PUBREL');
  assert.equal(f.release(5), true);
  assert.equal(f.release(5), false, 'unknown now');
  assert.equal(f.firstQos2(6), true);
  f.connected(false);
  assert.equal(f.firstQos2(6), true, 'a new session knows no id');
});
