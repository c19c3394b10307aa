// `petrel pub` / `petrel sub` with mqttsn:// URLs, `petrel broker --mqttsn-port`, and the config schema of
// the mqttsn listener type.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig, validateConfig, formatConfig } from '../../src/config/config.js';
import { withMqttsnPort } from '../../src/mqttsn/cli.js';
import { eventually, startBroker } from '../helpers/broker.js';
import { BIN, run, start } from '../cli/cli-process.js';
import { spawn } from 'node:child_process';
import mqtt from 'mqtt';

describe('petrel pub / sub over MQTT-SN', () => {
  it('sub -L mqttsn:// prints what an MQTT client publishes; pub -L mqttsn:// (QoS 1, and QoS -1 to a short and a predefined topic) reaches MQTT', async () => {
    const { broker } = await startBroker({
      listeners: [
        { type: 'tcp', host: '127.0.0.1', port: 0 },
        { type: 'mqttsn', host: '127.0.0.1', port: 0, predefinedTopics: { 3: 'house/door' } },
      ],
    });
    try {
      const tcp = broker.address(0).port;
      const sn = `mqttsn://127.0.0.1:${broker.address(1).port}`;
      const sub = start(['sub', '-L', sn, '-t', 'cli/#', '-v', '-q', '1', '-C', '2', '-W', '10', '-i', 'sn-cli-sub']);
      await eventually(() => broker.inspect.subscribers('cli/x').length === 1, 5000, 'petrel sub subscribed over MQTT-SN');
      const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${tcp}`, { protocolVersion: 5, reconnectPeriod: 0 });
      await m.publishAsync('cli/x', 'one', { qos: 1 });
      await m.publishAsync('cli/y', 'two', { qos: 0 });
      const done = await sub.done;
      assert.equal(done.code, 0, done.stderr);
      assert.equal(done.stdout, 'cli/x one\ncli/y two\n');

      const got: string[] = [];
      m.on('message', (topic, payload) => got.push(`${topic} ${payload}`));
      await m.subscribeAsync(['sn/in', 'zz', 'house/door']);
      const pub1 = await run(['pub', '-L', sn, '-t', 'sn/in', '-m', 'q1', '-q', '1']);
      assert.equal(pub1.code, 0, pub1.stderr);
      const pub2 = await run(['pub', '-L', sn, '-t', 'zz', '-m', 'minus-one', '-q', '-1']);
      assert.equal(pub2.code, 0, pub2.stderr);
      const pub3 = await run(['pub', '-L', `${sn}?topic.3=house/door`, '-t', 'house/door', '-m', 'open', '-q', '-1']);
      assert.equal(pub3.code, 0, pub3.stderr);
      await eventually(() => got.length === 3, 3000, 'three messages');
      assert.deepEqual(got, ['sn/in q1', 'zz minus-one', 'house/door open']);
      await m.endAsync();
    } finally {
      await broker.close();
    }
  });

  it('flags MQTT-SN has no place for are refused by name (exit 2); QoS -1 to a long topic name is explained', async () => {
    const r = await run(['pub', '-L', 'mqttsn://127.0.0.1:9', '-t', 'a/b', '-m', 'x', '-u', 'alice']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /MQTT-SN 1\.2 has no username or password/);
    const q = await run(['pub', '-L', 'mqttsn://127.0.0.1:9', '-t', 'a/long/topic', '-m', 'x', '-q', '-1']);
    assert.equal(q.code, 1);
    assert.match(q.stderr, /QoS -1 needs a predefined topic id or a two-character topic name/);
  });
});

describe('config: the mqttsn listener', () => {
  it('accepts the MQTT-SN keys, and --print-config shows the listener with its default port 1884', () => {
    const config = validateConfig({ listeners: [{ type: 'mqttsn', predefinedTopics: { 1: 'sensors/temp' }, gatewayId: 4, advertiseInterval: 900, retryInterval: 10, maxRetries: 5 }] });
    assert.equal(config.listeners?.[0]?.type, 'mqttsn');
    assert.match(formatConfig(config), /type: mqttsn[\s\S]*port: 1884/);
  });

  it('a wrong value is one line naming the key', () => {
    assert.throws(() => validateConfig({ listeners: [{ type: 'mqttsn', predefinedTopics: { 0: 'a' } }] }), /listeners\[0\]\.predefinedTopics\.0: a topic id must be an integer from 1 to 65534/);
    assert.throws(() => validateConfig({ listeners: [{ type: 'mqttsn', predefinedTopics: { 1: 'a/#' } }] }), /predefinedTopics\.1: must be a topic name without wildcards/);
    assert.throws(() => validateConfig({ listeners: [{ type: 'mqttsn', gatewayId: 300 }] }), /listeners\[0\]\.gatewayId: must be an integer from 0 to 255/);
    assert.throws(() => validateConfig({ listeners: [{ type: 'mqttsn', path: '/mqtt' }] }), /listeners\[0\]\.path: unknown key/);
    assert.throws(() => validateConfig({ listeners: [{ type: 'udp' }] }), /must be one of "tcp", "tls", "ws", "wss", "http", "mqttsn"/);
  });

  it('--mqttsn-port adds a gateway to the listeners in force (the defaults, --port, or the file)', () => {
    assert.deepEqual(withMqttsnPort(resolveConfig({ file: undefined, env: {}, flags: {} }), '1884').listeners?.map((l) => `${l.type}:${l.port}`), ['tcp:1883', 'ws:8083', 'mqttsn:1884']);
    assert.deepEqual(withMqttsnPort(resolveConfig({ env: {}, flags: { port: 1999 } }), '2000').listeners?.map((l) => `${l.type}:${l.port}`), ['tcp:1999', 'mqttsn:2000']);
    assert.throws(() => withMqttsnPort({}, '0x10'), /--mqttsn-port: must be a whole number/);
  });

  it('petrel broker --mqttsn-port: the start-up log names the MQTT-SN listener', async () => {
    const child = spawn(process.execPath, [BIN, 'broker', '--port', '0', '--host', '127.0.0.1', '--mqttsn-port', '0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    try {
      await eventually(() => /"listener":"mqttsn:\d+".*"sockets":"udp".*"msg":"listening"/.test(out), 10_000, 'the listening line');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('close', r));
    }
  });
});
