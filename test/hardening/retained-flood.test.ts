// Issue 24's memory probe, bounded: one client publishes thousands of retained 100 KB messages on new topics.
// Before maxRetainedBytes the store kept every one (1.08 GB for 10,000 in the probe); now it stops at its
// cap, whatever the QoS, and the process's Buffer memory does not grow past it. The cap is small here so the
// test is fast; the default comes from the machine (server/machine-limits.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import v8 from 'node:v8';
import vm from 'node:vm';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { PubAckLikePacket } from '../../src/protocol/packets.js';
import { startBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { pub } from '../helpers/packets.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const MESSAGES = 2000;
const PAYLOAD = 100 * 1024;
const CAP = 5 * 1024 * 1024;

/**
 * Buffer memory after full collections (retained payloads are Buffers, outside the JavaScript heap). V8 frees
 * the memory of dead Buffers on a background thread after a collection: the least of a few readings counts.
 */
async function buffers(): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 25));
    least = Math.min(least, process.memoryUsage().arrayBuffers);
  }
  return least;
}

/** Writes every PUBLISH as fast as the socket takes them, then waits until the broker has read them all. */
async function flood(client: RawClient, qos: 0 | 1): Promise<void> {
  const payload = Buffer.alloc(PAYLOAD, 0x61);
  for (let i = 0; i < MESSAGES; i++) {
    const bytes = encodePacket(pub(`probe/${qos}/${i}`, '', { payload, retain: true, qos, packetId: qos ? (i % 65535) + 1 : undefined }), 5);
    if (!client.socket.write(bytes)) await new Promise((r) => client.socket.once('drain', r));
  }
  await client.sync();
}

describe('the retained-message memory probe of issue 24, bounded', () => {
  for (const qos of [0, 1] as const) {
    it(`${MESSAGES} retained messages of 100 KB at QoS ${qos} on new topics: the store stops at maxRetainedBytes and Buffer memory does not grow past it`, async (t) => {
      // Not the harness: it records every `published` event, which would hold every message.
      const { broker, port } = await startBroker({ maxRetainedBytes: CAP });
      const { client, connack } = await RawClient.connect(port, { clientId: `flood${qos}`, protocolVersion: 5 });
      t.after(async () => {
        client.destroy();
        await broker.close();
      });
      assert.equal(connack.reasonCode, 0);
      const before = await buffers();
      await flood(client, qos);
      const after = await buffers();
      const o = broker.inspect.overload();
      const kept = Math.floor(CAP / PAYLOAD);
      assert.equal(broker.inspect.counts().retained, kept, `${kept} messages fit under the cap`);
      assert.ok(o.retainedBytes! <= CAP, `retained payload bytes ${o.retainedBytes} within the cap`);
      assert.equal(o.retainedRefused, MESSAGES - kept);
      if (qos === 1) {
        const acks = client.packets.filter((p) => p.type === 4) as PubAckLikePacket[];
        assert.equal(acks.length, MESSAGES);
        assert.equal(acks.filter((a) => a.reasonCode === 0x97).length, MESSAGES - kept, 'the rest refused with 0x97 Quota exceeded');
      }
      // Without the cap this grows by MESSAGES x 100 KB (195 MB); socket and read buffers besides the cap are slack.
      const grown = after - before;
      assert.ok(grown < CAP + 16 * 1024 * 1024, `Buffer memory grew by ${(grown / 1048576).toFixed(1)} MB for a ${CAP / 1048576} MB cap`);
    });
  }
});
