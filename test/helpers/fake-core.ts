// The broker core on a fake clock with in-memory connections: timer rules tested without sleeping.
import { BrokerCore, type CoreOptions } from '../../src/broker/core.js';
import { BrokerInspector } from '../../src/broker/inspect.js';
import { PETREL_VERSION } from '../../src/version.js';
import type { Channel } from '../../src/broker/channel.js';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnectPacket, Packet } from '../../src/protocol/packets.js';

export class FakeClock {
  constructor(public time = 1_000_000) {}
  now = (): number => this.time;
}

/** One in-memory client connection: what the test sends goes into the channel; what the channel writes is decoded. */
export class MemoryConnection {
  readonly received: Packet[] = [];
  closed = false;
  readonly channel: Channel;
  private readonly decoder: PacketDecoder;

  constructor(
    private readonly fake: FakeCore,
    readonly version: ProtocolVersion,
  ) {
    this.decoder = new PacketDecoder({ protocolVersion: version, role: 'client' });
    this.channel = fake.core.openChannel(
      {
        write: (data) => this.decoder.feed(data, (p) => this.received.push(p)),
        close: () => {
          this.closed = true;
        },
      },
      { remoteAddress: '127.0.0.1:1', listener: 'memory', secure: false },
    );
  }

  send(packet: Packet): void {
    this.channel.receive(encodePacket(packet, this.version));
  }

  /** Removes and returns the received packets of `type`. */
  take(type?: number): Packet[] {
    const out = this.received.filter((p) => type === undefined || p.type === type);
    for (const p of out) this.received.splice(this.received.indexOf(p), 1);
    return out;
  }

  /** Drops the transport (as a broken socket). */
  drop(): void {
    this.channel.transportClosed();
    this.closed = true;
  }
}

export class FakeCore {
  readonly clock = new FakeClock();
  readonly core: BrokerCore;
  /** What tests observe of the broker's state (src/broker/inspect.ts), never the core's own structures. */
  readonly inspect: BrokerInspector;

  constructor(options: Omit<CoreOptions, 'clock'> = {}) {
    // No $SYS topics unless a test asks: they would add retained messages to every count.
    this.core = new BrokerCore({ sys: { version: `petrel version ${PETREL_VERSION}` }, ...options, limits: { sysInterval: 0, ...options.limits }, clock: this.clock });
    this.inspect = new BrokerInspector(this.core);
  }

  /** Advances the clock by `ms` in steps of `step`, running the timers at each step (as the adapter's interval does). */
  advance(ms: number, step = 100): void {
    const end = this.clock.time + ms;
    while (this.clock.time < end) {
      this.clock.time = Math.min(end, this.clock.time + step);
      this.core.tick();
    }
  }

  open(version: ProtocolVersion = 4): MemoryConnection {
    return new MemoryConnection(this, version);
  }

  connect(connect: Partial<ConnectPacket> = {}): MemoryConnection {
    const version = connect.protocolVersion ?? 4;
    const c = this.open(version);
    c.send({ type: 1, protocolName: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version, clean: true, keepAlive: 0, clientId: 'c', ...connect } as ConnectPacket);
    return c;
  }
}
