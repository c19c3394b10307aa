// messages(): a message that arrives before the for-await starts is not lost.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { connect } from '../../src/client/index.js';
import { startBroker } from '../helpers/broker.js';

it('messages() yields what arrived before iteration started (the README example)', async (t) => {
  const { broker, url } = await startBroker();
  t.after(() => broker.close());
  const client = await connect(url, { protocolVersion: 5 });
  t.after(() => client.destroy());
  await client.subscribe('greetings/#', { qos: 1 });
  await client.publish('greetings/world', 'hello', { qos: 1 });
  await new Promise((r) => setTimeout(r, 50)); // the message is in before anyone iterates
  for await (const msg of client.messages()) {
    assert.equal(msg.topic, 'greetings/world');
    assert.equal(msg.payload.toString(), 'hello');
    break;
  }
  await client.end();
});
