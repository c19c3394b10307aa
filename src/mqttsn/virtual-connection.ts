// One MQTT 5.0 connection to the broker core on behalf of an MQTT-SN client, through the transport
// seam (openChannel / receive / transportClosed): the broker sees an ordinary client, so Client ID
// rules, takeover, authentication, ACLs, sessions, wills and limits apply unchanged.
import type { Buffer } from 'node:buffer';
import type { ChannelOutput, TransportInfo } from '../broker/channel.js';
import { PacketDecoder } from '../protocol/decoder.js';
import { encodePacket } from '../protocol/encoder.js';
import type { Packet } from '../protocol/packets.js';

/** The part of the broker core the gateway uses: the transport seam and the clock. */
export interface GatewayCore {
  openChannel(output: ChannelOutput, transport: TransportInfo): { receive(chunk: Buffer): void; transportClosed(error?: Error): void };
  readonly clock: { now(): number };
  readonly limits: { readonly connectTimeout: number; readonly sessionExpiry: number; readonly maxQueuedMessages: number };
}

export interface VirtualConnectionEvents {
  /** A packet the broker sent to this client. */
  packet(packet: Packet): void;
  /** The broker closed the connection (after a DISCONNECT it may have sent, or none). */
  closed(): void;
}

/** MQTT 5.0 on the broker side: reason codes in every acknowledgement and session expiry. */
export const VIRTUAL_VERSION = 5;

export class VirtualConnection {
  private readonly decoder = new PacketDecoder({ protocolVersion: VIRTUAL_VERSION, role: 'client' });
  private readonly channel: { receive(chunk: Buffer): void; transportClosed(error?: Error): void };
  /** False once either side closed it: nothing more goes in or comes out. */
  open = true;
  /** Last time a packet went to the broker (the broker's Server Keep Alive, if any, is kept from it). */
  lastSent = 0;
  /** Set when we end it: the close that follows is ours, not news. */
  private quiet = false;

  constructor(core: GatewayCore, info: TransportInfo, private readonly events: VirtualConnectionEvents) {
    const output: ChannelOutput = {
      write: (data) => {
        if (!this.open) return;
        try {
          this.decoder.feed(data, this.onPacket, this);
        } catch {
          // The broker's own encoder wrote it: a decode failure is a bug; end this connection, not the process.
          this.transportClosed();
        }
      },
      close: () => {
        if (!this.open) return;
        this.open = false;
        if (!this.quiet) this.events.closed();
      },
    };
    this.channel = core.openChannel(output, info);
  }

  private onPacket(packet: Packet): void {
    if (this.open) this.events.packet(packet);
  }

  /** Sends a packet to the broker as the client. */
  send(packet: Packet, now: number): void {
    if (!this.open) return;
    this.lastSent = now;
    this.channel.receive(encodePacket(packet, VIRTUAL_VERSION));
  }

  /** Ends the connection from the client's side without a DISCONNECT (the will is published). */
  transportClosed(): void {
    if (!this.open) return;
    this.quiet = true;
    this.open = false;
    this.channel.transportClosed();
  }

  /** Ends it with a DISCONNECT; the broker's close that follows is not reported. */
  disconnect(reasonCode: number, sessionExpiryInterval: number | undefined, now: number): void {
    if (!this.open) return;
    this.quiet = true;
    this.send({ type: 14, reasonCode, properties: sessionExpiryInterval === undefined ? undefined : { sessionExpiryInterval } }, now);
    this.open = false;
  }
}
