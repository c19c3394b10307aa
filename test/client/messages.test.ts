// messages(): a message that arrives before the for-await starts is not lost; with a 'message'
// listener nothing is kept back.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { connect } from '../../src/client/index.js';
import { startBroker } from '../helpers/broker.js';
import { eventually } from '../helpers/wait.js';

const unclaimed = (c: object) => (c as unknown as { unclaimed: unknown[] }).unclaimed.length;

it('messages() yields what arrived before iteration started (the README example)', async (t) => {
  const { broker, url } = await startBroker();
  t.after(() => broker.close());
  const client = await connect(url, { protocolVersion: 5 });
  t.after(() => client.destroy());
  await client.subscribe('greetings/#', { qos: 1 });
  await client.publish('greetings/world', 'hello', { qos: 1 });
  await eventually(() => unclaimed(client) === 1, 2000, 'the message to arrive before anyone iterates');
  const first = await Promise.race([
    (async () => {
      for await (const msg of client.messages()) return msg;
      return undefined;
    })(),
    new Promise<undefined>((r) => setTimeout(r, 2000)),
  ]);
  assert.ok(first, 'the message was handed to the first iterator');
  assert.equal(first.topic, 'greetings/world');
  assert.equal(first.payload.toString(), 'hello');
  await client.end();
});

it('a client consuming through on("message") keeps nothing back for messages()', async (t) => {
  const { broker, url } = await startBroker();
  t.after(() => broker.close());
  const client = await connect(url, { protocolVersion: 5 });
  t.after(() => client.destroy());
  const got: string[] = [];
  client.on('message', (m) => got.push(m.payload.toString()));
  await client.subscribe('l/#', { qos: 1 });
  for (let i = 0; i < 5; i++) await client.publish('l/x', String(i), { qos: 1 });
  await eventually(() => got.length === 5, 2000, 'five messages');
  assert.equal(unclaimed(client), 0);
  await client.end();
});
