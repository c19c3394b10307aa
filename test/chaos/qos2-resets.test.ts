// Chaos: QoS 2 flows over real sockets while the clients' connections are reset (TCP RST) or half-closed
// (FIN, nothing more read) at seeded random points of PUBLISH / PUBREC / PUBREL / PUBCOMP, on both sides.
// Publisher and subscriber keep persistent sessions, reconnect with Clean Start 0 and finish their flows
// as 4.4 asks (resend the unacknowledged PUBLISH with DUP, or the PUBREL) [MQTT-4.4.0-1]. Exactly once
// (4.3.3; the receiver acknowledges a resent PUBLISH without delivering it again [MQTT-4.3.3-9]):
// every message whose PUBCOMP reached the publisher arrives once, none twice, and the broker holds no
// connection or flow state afterwards (broker.inspect).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import type { ConnackPacket, ConnectPacket, Packet, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { startBroker, eventually } from '../helpers/broker.js';
import { pub } from '../helpers/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { seededRandom } from '../helpers/seeded.js';

const MESSAGES = 150;
/** Chance of a break at each point of a flow: about one broken connection per three messages on each side. */
const BREAK = 0.08;

/** A persistent-session connection (3.1.1 clean session 0; 5.0 Clean Start 0 and a session that outlives it). */
async function connectPersistent(port: number, clientId: string, version: ProtocolVersion): Promise<{ client: RawClient; connack: ConnackPacket }> {
  const fields: Partial<ConnectPacket> = { clientId, protocolVersion: version, clean: false };
  if (version === 5) fields.properties = { sessionExpiryInterval: 300 };
  for (let attempt = 0; ; attempt++) {
    try {
      return await RawClient.connect(port, fields);
    } catch (err) {
      // The previous connection may still be going away (a takeover closes it): try again, a few times.
      if (attempt >= 5) throw err;
    }
  }
}

/** Ends a connection as a faulty client does: a reset, or a half-close after which nothing is read. */
async function breakConnection(client: RawClient, random: () => number, counts: { resets: number; halfCloses: number }): Promise<void> {
  if (random() < 0.5) {
    counts.resets++;
    client.socket.resetAndDestroy();
    return;
  }
  counts.halfCloses++;
  client.socket.removeAllListeners('data');
  client.socket.on('data', () => {});
  client.socket.end();
  // The broker answers a FIN by closing (no half-open MQTT connection); a client would not wait forever either.
  await client.waitClosed(3000).catch(() => client.destroy());
}

interface Run {
  completed: Set<string>;
  delivered: Map<string, number>;
  breaks: { resets: number; halfCloses: number };
}

async function publisher(port: number, version: ProtocolVersion, random: () => number, run: Run): Promise<void> {
  let { client } = await connectPersistent(port, 'chaos-pub', version);
  const chaos = async (): Promise<boolean> => {
    if (random() >= BREAK) return false;
    await breakConnection(client, random, run.breaks);
    ({ client } = await connectPersistent(port, 'chaos-pub', version));
    return true;
  };
  for (let i = 0; i < MESSAGES; i++) {
    const packetId = (i % 65_535) + 1;
    const payload = `m${i}`;
    let released = false; // PUBREC seen: from then on the flow resends PUBREL, never the PUBLISH [MQTT-4.3.3-5]
    let sent = false;
    for (;;) {
      try {
        if (!released) {
          if (await chaos()) continue;
          client.send(pub('chaos/q2', payload, { qos: 2, packetId, dup: sent }));
          sent = true;
          if (await chaos()) continue;
          const rec = await client.next(5, 5000);
          assert.equal((rec as { packetId: number }).packetId, packetId);
          released = true;
        }
        if (await chaos()) continue;
        client.send({ type: 6, packetId });
        if (await chaos()) continue;
        const comp = await client.next(7, 5000);
        assert.equal((comp as { packetId: number }).packetId, packetId);
        run.completed.add(payload);
        break;
      } catch (err) {
        // The connection went away under the flow (a takeover by our own reconnection): reconnect and go on.
        if (!client.closed) throw err;
        ({ client } = await connectPersistent(port, 'chaos-pub', version));
      }
    }
  }
  client.send({ type: 14 });
  await client.waitClosed();
}

async function subscriber(port: number, version: ProtocolVersion, random: () => number, run: Run, done: () => boolean): Promise<void> {
  // Method B of 4.3.3: the application gets a message at its first PUBLISH; until PUBREL, a PUBLISH with the
  // same packet id is a resend, acknowledged and not delivered again. This state outlives connections.
  const awaitingRelease = new Set<number>();
  let { client, connack } = await connectPersistent(port, 'chaos-sub', version);
  assert.equal(connack.sessionPresent, false);
  client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'chaos/#', qos: 2 }] });
  assert.deepEqual(((await client.next(9)) as SubackPacket).reasonCodes, [2]);
  const reconnect = async () => {
    ({ client, connack } = await connectPersistent(port, 'chaos-sub', version));
    assert.equal(connack.sessionPresent, true, 'the session survived the break [MQTT-3.2.2-2]');
  };
  const chaos = async (): Promise<boolean> => {
    if (random() >= BREAK) return false;
    await breakConnection(client, random, run.breaks);
    await reconnect();
    return true;
  };
  while (!done()) {
    if (client.closed && client.packets.length === 0) {
      await reconnect();
      continue;
    }
    let p: Packet;
    try {
      p = await client.next(undefined, 100);
    } catch {
      continue;
    }
    if (p.type === 3) {
      const publish = p as PublishPacket;
      assert.equal(publish.qos, 2);
      const id = publish.packetId!;
      if (!awaitingRelease.has(id)) {
        const key = publish.payload.toString();
        run.delivered.set(key, (run.delivered.get(key) ?? 0) + 1);
        awaitingRelease.add(id);
      }
      if (await chaos()) continue;
      client.send({ type: 5, packetId: id });
      await chaos();
    } else if (p.type === 6) {
      const id = (p as { packetId: number }).packetId;
      if (await chaos()) continue;
      awaitingRelease.delete(id);
      client.send({ type: 7, packetId: id });
      await chaos();
    }
  }
  client.send({ type: 14 });
  await client.waitClosed();
}

describe('chaos: QoS 2 under connection resets and half-closes', () => {
  for (const [seed, version] of [
    [1, 4],
    [2, 5],
    [3, 4],
  ] as const) {
    it(`seed ${seed}, MQTT ${version === 5 ? '5.0' : '3.1.1'}: every completed message delivered exactly once; no state left`, async (t) => {
      const { broker, port } = await startBroker();
      t.after(() => broker.close());
      const run: Run = { completed: new Set(), delivered: new Map(), breaks: { resets: 0, halfCloses: 0 } };
      let published = false;
      // The subscriber stops once the publisher is done and the broker has nothing left for it.
      const settled = () => {
        if (!published) return false;
        const s = broker.inspect.session('chaos-sub');
        return s !== undefined && s.inflight === 0 && s.queued === 0 && run.delivered.size >= run.completed.size;
      };
      const sub = subscriber(port, version, seededRandom(seed * 1000 + 1), run, settled);
      await eventually(() => broker.inspect.session('chaos-sub')?.subscriptions.length === 1, 3000, 'the subscription');
      await publisher(port, version, seededRandom(seed * 1000 + 2), run);
      published = true;
      await sub;

      t.diagnostic(`breaks: ${JSON.stringify(run.breaks)}`);
      assert.equal(run.completed.size, MESSAGES, 'every flow finished');
      assert.ok(run.breaks.resets + run.breaks.halfCloses >= 20, `the run broke connections (${JSON.stringify(run.breaks)})`);
      const twice = [...run.delivered].filter(([, n]) => n !== 1);
      assert.deepEqual(twice, [], 'no message delivered twice');
      for (const m of run.completed) assert.equal(run.delivered.get(m), 1, `${m} (PUBCOMP received by the publisher) delivered once`);

      await eventually(() => broker.inspect.counts().connections === 0, 3000, 'every connection closed');
      const subSession = broker.inspect.session('chaos-sub')!;
      const pubSession = broker.inspect.session('chaos-pub')!;
      assert.deepEqual(
        { inflight: subSession.inflight, queued: subSession.queued, awaitingRelease: pubSession.awaitingRelease, pubInflight: pubSession.inflight },
        { inflight: 0, queued: 0, awaitingRelease: 0, pubInflight: 0 },
        'no flow left in either session',
      );
      const footprint = broker.inspect.footprint();
      assert.equal(footprint.channels, 0);
      assert.equal(footprint.connected, 0);
      assert.equal(footprint.closedChannelsFiled, 0, 'no timer of a closed connection left');
    });
  }
});
