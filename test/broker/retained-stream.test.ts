// Retained messages for a new subscription (issue 24, defect 4): they go out as the in-flight window and the
// output buffer allow, through a cursor over the matches, not through the session queue, so its limit
// (maxQueuedMessages) and a full output do not drop them. [MQTT-3.3.1-9] retained messages are sent on SUBSCRIBE.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BrokerCore } from '../../src/broker/core.js';
import { BrokerInspector } from '../../src/broker/inspect.js';
import type { Channel, ChannelOutput } from '../../src/broker/channel.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { Packet, PublishPacket } from '../../src/protocol/packets.js';
import { FakeClock } from '../helpers/fake-core.js';

const RETAINED = 10_000;

/** A client behind an output that holds up to `capacity` bytes until the test lets the network take them. */
class SlowReader implements ChannelOutput {
  buffered = 0;
  closed = false;
  readonly received: Packet[] = [];
  private readonly decoder = new PacketDecoder({ protocolVersion: 4, role: 'client' });
  channel!: Channel;
  write(data: Buffer): void {
    this.buffered += data.length;
    this.decoder.feed(data, (p) => this.received.push(p));
  }
  close(): void {
    this.closed = true;
  }
  bufferedBytes(): number {
    return this.buffered;
  }
  /** The network took everything written: the transport tells the channel. */
  drained(): void {
    this.buffered = 0;
    this.channel.outputDrained();
  }
  send(packet: Packet): void {
    this.channel.receive(encodePacket(packet, 4));
  }
}

function broker(limits = {}) {
  const clock = new FakeClock();
  const core = new BrokerCore({ clock, limits: { sysInterval: 0, maxOutputBuffer: 64 * 1024, slowConsumerTimeout: 0, ...limits } });
  const connect = (clientId: string): SlowReader => {
    const out = new SlowReader();
    out.channel = core.openChannel(out, { remoteAddress: '127.0.0.1:1', listener: 'memory', secure: false });
    out.send({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId });
    return out;
  };
  return { core, clock, connect };
}

/** Lets the network take the output and acknowledges every QoS 1 PUBLISH, until nothing more comes. */
function readAll(c: SlowReader, core: BrokerCore): Set<string> {
  const got = new Set<string>();
  for (let rounds = 0; rounds < 100_000; rounds++) {
    const batch = c.received.splice(0).filter((p) => p.type === 3) as PublishPacket[];
    for (const p of batch) {
      got.add(p.topic);
      if (p.qos === 1) c.send({ type: 4, packetId: p.packetId! });
    }
    c.drained();
    core.tick();
    if (batch.length === 0 && c.received.length === 0) break;
  }
  return got;
}

describe('retained messages streamed to a new subscription', () => {
  for (const qos of [0, 1] as const) {
    it(`QoS ${qos}: all ${RETAINED} retained messages (1 KiB each, 10 MiB in all) reach a subscriber whose output holds 64 KiB, with maxQueuedMessages 1000`, () => {
      const { core, connect } = broker({ maxQueuedMessages: 1000 });
      const publisher = connect('publisher');
      for (let i = 0; i < RETAINED; i++) {
        publisher.send({ type: 3, topic: `fleet/${i}`, payload: Buffer.alloc(1024, 0x61), qos: 1, packetId: 1, retain: true, dup: false });
      }
      assert.equal(new BrokerInspector(core).counts().retained, RETAINED);
      const sub = connect('sub');
      sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'fleet/#', qos }] });
      const first = sub.received.filter((p) => p.type === 3).length;
      assert.ok(first < RETAINED, `the output filled first (${first} sent at once)`);
      const got = readAll(sub, core);
      assert.equal(got.size, RETAINED, 'every retained message arrived');
      assert.equal(sub.closed, false);
    });
  }

  it('a live message published meanwhile still arrives, and the window of a QoS 1 subscriber is respected [MQTT-4.9.0-2]', () => {
    const { core, connect } = broker({ maxInflight: 10 });
    const publisher = connect('publisher');
    for (let i = 0; i < 100; i++) publisher.send({ type: 3, topic: `r/${i}`, payload: Buffer.from('x'), qos: 1, packetId: 1, retain: true, dup: false });
    const sub = connect('sub');
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'r/#', qos: 1 }] });
    assert.equal(sub.received.filter((p) => p.type === 3).length, 10, 'no more in flight than the window');
    publisher.send({ type: 3, topic: 'r/live', payload: Buffer.from('now'), qos: 1, packetId: 2, retain: false, dup: false });
    const got = readAll(sub, core);
    assert.equal(got.size, 101);
    assert.ok(got.has('r/live'));
  });
});
