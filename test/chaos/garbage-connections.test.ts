// Chaos: 10,000 garbage connections, 200 at a time, on a TCP and a WebSocket listener (seeded): random bytes,
// CONNECTs cut short, TLS handshakes and HTTP on the MQTT port, WebSocket upgrades that are malformed or
// followed by garbage frames; each ends with the broker's close, the client's FIN or a reset. A wrong-password
// flood (test/helpers/login-flood.ts) runs beside them. The garbage comes from a child process (garbage-peer.ts),
// so that its 200 sockets do not take the broker's event loop. A legitimate user connects, subscribes and gets
// its QoS 1 message all along and afterwards; no connection is left (inspect, listeners), and the heap returns
// near where it started.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { setPassword } from '../../src/auth/password-file.js';
import type { ConnackPacket, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { delay, eventually, startBroker } from '../helpers/broker.js';
import { startFlood } from '../helpers/login-flood.js';
import { pub } from '../helpers/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { TCP_KINDS, WS_KINDS, type Kind } from './garbage-peer.js';

const TOTAL = 10_000;
const CONCURRENCY = 200;

const dir = mkdtempSync(join(tmpdir(), 'petrel-garbage-'));
after(() => rmSync(dir, { recursive: true, force: true }));

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

const PEER = fileURLToPath(new URL('./garbage-peer.js', import.meta.url));

/** Runs `count` garbage connections from a child process; resolves with how many of each kind it made. */
function garbageFromChild(ports: { tcp: number; ws: number }, count: number, seed: number): Promise<Record<Kind, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PEER, '--run', JSON.stringify({ ...ports, count, concurrency: CONCURRENCY, seed })], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Record<Kind, number>) : reject(new Error(`garbage peer exited with ${code}`))));
  });
}

/**
 * A CONNECT answered within 10 s: under 200 connections at a time the listen backlog may overflow, and a dropped
 * SYN is retried by the kernel after 1 s, then 3 s (Mosquitto's listener shows the same, docs/security.md).
 */
async function connectAlice(port: number): Promise<RawClient> {
  const client = await RawClient.open(port);
  client.send({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'alice-device', username: 'alice', password: Buffer.from('alice-pw') });
  try {
    assert.equal(((await client.next(2, 10_000)) as ConnackPacket).reasonCode, 0, 'CONNACK');
  } catch (err) {
    client.destroy();
    throw err;
  }
  return client;
}

/** The legitimate user's round: CONNECT, SUBSCRIBE, PUBLISH QoS 1, the message back, DISCONNECT. */
async function legitimateRound(port: number, n: number): Promise<void> {
  const client = await connectAlice(port);
  try {
    client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'alice/#', qos: 1 }] });
    assert.deepEqual(((await client.next(9, 10_000)) as SubackPacket).reasonCodes, [1]);
    client.send(pub('alice/t', `round ${n}`, { qos: 1, packetId: 2 }));
    await client.next(4, 10_000);
    const p = (await client.next(3, 10_000)) as PublishPacket;
    assert.equal(p.payload.toString(), `round ${n}`);
    client.send({ type: 4, packetId: p.packetId! });
    client.send({ type: 14 });
    await client.waitClosed(5000);
  } finally {
    client.destroy();
  }
}

describe('chaos: 10,000 garbage connections', () => {
  it('the broker stays up, a legitimate user works during and after, nothing leaks', async (t) => {
    const passwordFile = join(dir, 'passwd');
    await setPassword(passwordFile, 'alice', 'alice-pw');
    await setPassword(passwordFile, 'bob', 'bob-pw');
    const { broker, port } = await startBroker({
      listeners: [
        { type: 'tcp', host: '127.0.0.1', port: 0 },
        { type: 'ws', host: '127.0.0.1', port: 0 },
      ],
      passwordFile,
      watchFiles: false,
    });
    t.after(() => broker.close());
    const ports = { tcp: port, ws: broker.address(1).port };

    // Warm up (code paths compiled, pools allocated) before the baseline: the first login, a few garbage connections.
    await legitimateRound(ports.tcp, 0);
    await garbageFromChild(ports, 400, 1);
    await eventually(() => broker.inspect.counts().connections === 0, 10_000, 'the warm-up connections to close');
    const baseline = heapAfterGc();

    const flood = startFlood(ports.tcp, { clients: 20, username: 'bob' });
    let garbageDone = false;
    const rounds = { ok: 0, failed: [] as string[] };
    const legitimate = (async () => {
      for (let n = 1; !garbageDone; n++) {
        await legitimateRound(ports.tcp, n).then(
          () => rounds.ok++,
          (err: Error) => rounds.failed.push(err.message),
        );
        await delay(50);
      }
    })();
    const started = Date.now();
    const seen = await garbageFromChild(ports, TOTAL, 24);
    garbageDone = true;
    await legitimate;
    const floodCodes = await flood.stop();
    t.diagnostic(`${TOTAL} garbage connections in ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(seen)}`);
    t.diagnostic(`legitimate rounds during: ${rounds.ok} ok, ${rounds.failed.length} failed; wrong-password flood answers: ${JSON.stringify(floodCodes)}`);

    assert.deepEqual(rounds.failed, [], 'no legitimate round failed during the garbage');
    assert.ok(rounds.ok >= 3, `the legitimate user worked during the garbage (${rounds.ok} rounds)`);
    assert.equal(floodCodes['0x00'], undefined, 'no wrong password got in');
    for (const kind of [...TCP_KINDS, ...WS_KINDS]) assert.ok((seen[kind] ?? 0) > 0, `${kind} was tried`);

    await legitimateRound(ports.tcp, -1);
    await eventually(() => broker.inspect.counts().connections === 0, 15_000, 'every MQTT connection to close');
    await eventually(() => broker.runningListeners().every((l) => l.connections === 0), 15_000, 'every socket to close');
    await eventually(() => broker.inspect.footprint().closedChannelsFiled === 0, 5000, 'no timer of a closed connection left');
    assert.equal(broker.inspect.counts().sessions, 0, 'clean sessions only: none left');
    const grown = heapAfterGc() - baseline;
    t.diagnostic(`heap after / before: ${(grown / 1e6).toFixed(1)} MB more than the baseline`);
    assert.ok(grown < 16 * 1024 * 1024, `the heap returned near its baseline (${(grown / 1e6).toFixed(1)} MB more)`);
  });
});
