// ServerLimits: what a 5.0 CONNACK allows the client to send.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ServerLimits } from '../../src/client/server-limits.js';
import type { PublishPacket } from '../../src/protocol/index.js';

const pub = (over: Partial<PublishPacket> = {}): PublishPacket => ({ type: 3, topic: 't', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, ...over });

test('no CONNACK limits: everything goes, Receive Maximum 65535', () => {
  const l = new ServerLimits();
  assert.equal(l.receiveMaximum, 65535);
  assert.equal(l.publishError(pub({ qos: 2, retain: true })), undefined);
  assert.ok(Buffer.isBuffer(l.encodePublish(pub(), 5)));
});

test('Maximum QoS [MQTT-3.2.2-11], Retain Available [MQTT-3.2.2-14], Topic Alias Maximum [MQTT-3.3.2-9], Maximum Packet Size [MQTT-3.2.2-15]', () => {
  const l = new ServerLimits();
  l.update({ maximumQoS: 1, retainAvailable: 0, topicAliasMaximum: 2, maximumPacketSize: 20, receiveMaximum: 3 });
  assert.equal(l.receiveMaximum, 3);
  assert.equal(l.publishError(pub({ qos: 2 }))?.reasonCode, 0x9b);
  assert.equal(l.publishError(pub({ retain: true }))?.reasonCode, 0x9a);
  assert.equal(l.publishError(pub({ properties: { topicAlias: 3 } }))?.message, 'publish to "t" failed: 0x94 Topic Alias invalid: Topic Alias 3: the server accepts Topic Aliases 1 to 2');
  assert.equal(l.publishError(pub({ properties: { topicAlias: 2 } })), undefined);
  const big = l.encodePublish(pub({ payload: Buffer.alloc(30) }), 5);
  assert.ok(big instanceof Error && big.reasonCode === 0x95 && /the packet has \d+ bytes, the server accepts at most 20/.test(big.message));
  l.update({});
  assert.equal(l.publishError(pub({ properties: { topicAlias: 1 } }))?.message, 'publish to "t" failed: 0x94 Topic Alias invalid: Topic Alias 1: the server accepts no Topic Alias');
});
