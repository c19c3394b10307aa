// The one CONNECT builder, shared by the client and `petrel bench`, and the layers of src/client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildConnectPacket, encodeConnect } from '../../src/client/connect-packet.js';
import { resolveOptions } from '../../src/client/options.js';
import { PacketDecoder } from '../../src/protocol/index.js';
import type { ConnectPacket, Packet } from '../../src/protocol/index.js';

test('CONNECT from the options: protocol name per version, credentials, will, 5.0 properties and Session Expiry', () => {
  const o = resolveOptions('mqtt://u:pw@h', {
    protocolVersion: 5,
    clean: false,
    keepAlive: 15,
    sessionExpiry: 300,
    properties: { receiveMaximum: 10 },
    will: { topic: 'w', payload: 'bye', qos: 1, retain: true, properties: { willDelayInterval: 5 } },
  });
  const p = buildConnectPacket(o, 'id-1');
  assert.deepEqual(p, {
    type: 1,
    protocolName: 'MQTT',
    protocolVersion: 5,
    clean: false,
    keepAlive: 15,
    clientId: 'id-1',
    username: 'u',
    password: Buffer.from('pw'),
    will: { topic: 'w', payload: Buffer.from('bye'), qos: 1, retain: true, properties: { willDelayInterval: 5 } },
    properties: { receiveMaximum: 10, sessionExpiryInterval: 300 },
  });
  // it goes on the wire and comes back the same
  const decoded: Packet[] = [];
  new PacketDecoder({ role: 'server' }).feed(encodeConnect(p, o.sessionExpiry), (x) => decoded.push(x));
  assert.equal((decoded[0] as ConnectPacket).clientId, 'id-1');
  assert.equal((decoded[0] as ConnectPacket).properties?.sessionExpiryInterval, 300);
  // 3.1: MQIsdp; 3.1.x: no properties, no will properties
  const v3 = buildConnectPacket(resolveOptions('mqtt://h', { protocolVersion: '3.1', sessionExpiry: 5, will: { topic: 'w', properties: { willDelayInterval: 1 } } }), 'x');
  assert.equal(v3.protocolName, 'MQIsdp');
  assert.equal(v3.properties, undefined);
  assert.equal(v3.will?.properties, undefined);
});

test('a CONNECT that cannot go on the wire is INVALID_ARGUMENT naming why', () => {
  const o = resolveOptions('mqtt://h', { will: { topic: 'a/+' } });
  assert.throws(() => encodeConnect(buildConnectPacket(o, 'x'), undefined), /invalid will topic "a\/\+"/);
  assert.throws(() => encodeConnect(buildConnectPacket(resolveOptions('mqtt://h'), 'x'), 2 ** 33), /sessionExpiry must be a whole number of seconds/);
  assert.throws(() => encodeConnect(buildConnectPacket(resolveOptions('mqtt://h'), 'x'.repeat(70_000)), undefined), /^MqttClientError: cannot encode CONNECT: /);
});

test('layers: src/client imports only itself and src/protocol; CONNECT is built in one place', () => {
  const dir = fileURLToPath(new URL('../../../src/client/', import.meta.url));
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(dir + file, 'utf8');
    for (const [, from] of text.matchAll(/from '(\.[^']+)'/g)) {
      assert.ok(from!.startsWith('./') || from!.startsWith('../protocol/'), `src/client/${file} imports ${from}`);
    }
    assert.ok(text.split('\n').length <= 600, `src/client/${file} has more than 600 lines`);
  }
  const src = fileURLToPath(new URL('../../../src/', import.meta.url));
  for (const file of ['cli/bench.ts', 'bench/load-connection.ts', 'bench/load-run.ts', 'client/client.ts', 'client/connect-attempt.ts']) {
    assert.doesNotMatch(readFileSync(src + file, 'utf8'), /protocolName:/, `${file} builds no CONNECT of its own`);
  }
});
