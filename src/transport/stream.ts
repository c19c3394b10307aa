// Adapter between a byte stream (TCP or TLS socket) and a broker channel. Writes are batched:
// every packet produced while handling one input chunk goes out in a single write per socket,
// right after that chunk (writing early lets peers work while the broker reads the next socket,
// which halves latency with many connections); writes from timers go out once per loop turn.
import type { Socket } from 'node:net';
import type { BrokerCore } from '../broker/core.js';
import type { Channel, TransportInfo } from '../broker/channel.js';
import { formatAddress } from '../auth/address.js';
import { BatchedOutput } from './batched-output.js';
import { flushAll, InputGate } from './input-gate.js';

class SocketOutput extends BatchedOutput {
  constructor(
    private readonly socket: Socket,
    gate: InputGate,
  ) {
    super(gate);
  }

  protected writable(): boolean {
    return !this.socket.destroyed;
  }

  protected transmit(data: Buffer): void {
    this.socket.write(data);
  }

  protected transportBuffered(): number {
    return this.socket.writableLength;
  }

  protected closeTransport(): void {
    // end() sends what is buffered, then FIN; destroy once flushed so the socket never lingers.
    this.socket.end(() => this.socket.destroy());
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}

export interface AttachOptions {
  /** Bytes already read from the socket (what followed a PROXY protocol header). */
  head?: Buffer;
  /** Bytes per second read from this client; above it reading pauses (throttling). */
  maxBytesRate?: number;
}

export type TransportInit = Omit<TransportInfo, 'remoteAddress'> & { remoteAddress?: string };

/** The peer of a socket as "ip:port". */
export function socketAddress(socket: Socket): string {
  return formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? '?');
}

/** Wires `socket` to a new channel of `core`. */
export function attachSocket(core: BrokerCore, socket: Socket, info: TransportInit, options: AttachOptions = {}): Channel {
  socket.setNoDelay(true);
  const gate = new InputGate(
    () => socket.pause(),
    () => socket.resume(),
    (chunk) => channel.receive(chunk),
    options.maxBytesRate,
  );
  const transport: TransportInfo = { ...info, remoteAddress: info.remoteAddress ?? socketAddress(socket) };
  const channel = core.openChannel(new SocketOutput(socket, gate), transport);
  const onData = (chunk: Buffer) => {
    gate.feed(chunk);
    flushAll();
  };
  socket.on('data', onData);
  socket.on('drain', () => channel.outputDrained());
  socket.on('error', (err) => channel.transportClosed(err));
  socket.on('close', () => {
    gate.close();
    channel.transportClosed();
  });
  if (options.head?.length) onData(options.head);
  return channel;
}
