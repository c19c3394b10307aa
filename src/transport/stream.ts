// Adapter between a byte stream (TCP or TLS socket) and a broker channel. Writes are batched: every
// packet produced for a socket during one event-loop turn goes out in one write, after all the input of
// that turn was handled (see input-gate.ts: scheduleFlush).
import type { Socket } from 'node:net';
import type { BrokerCore } from '../broker/core.js';
import { transportInfo, type Channel, type TransportInfo } from '../broker/channel.js';
import { formatAddress } from '../util/address.js';
import { BatchedOutput, GRACEFUL_CLOSE_MS } from './batched-output.js';

class SocketOutput extends BatchedOutput {
  constructor(
    readonly socket: Socket,
    maxBytesRate: number | undefined,
    /** The listener's set of open sockets, left on close (one 'close' listener instead of two). */
    readonly tracker: Set<{ destroy(): void }> | undefined,
  ) {
    super(maxBytesRate);
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
    setTimeout(() => this.socket.destroy(), GRACEFUL_CLOSE_MS).unref();
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }
}

// Socket events go to shared handlers (`this` is the socket) that find the adapter through a symbol,
// instead of four closures per connection.
const kOutput = Symbol('petrel.output');
type AttachedSocket = Socket & { [kOutput]: SocketOutput };

function onSocketData(this: AttachedSocket, chunk: Buffer): void {
  this[kOutput].feed(chunk);
}

function onSocketDrain(this: AttachedSocket): void {
  this[kOutput].channel!.outputDrained();
}

function onSocketError(this: AttachedSocket, err: Error): void {
  this[kOutput].channel!.transportClosed(err);
}

function onSocketClose(this: AttachedSocket): void {
  const output = this[kOutput];
  output.tracker?.delete(this);
  output.endInput();
  output.channel!.transportClosed();
}

export interface AttachOptions {
  /** Bytes already read from the socket (what followed a PROXY protocol header). */
  head?: Buffer;
  /** Bytes per second read from this client; above it reading pauses (throttling). */
  maxBytesRate?: number;
  /** A set the socket is removed from when it closes (the listener's open sockets). */
  tracker?: Set<{ destroy(): void }>;
}

export type TransportInit = Omit<TransportInfo, 'remoteAddress'> & { remoteAddress?: string };

/** The peer of a socket as "ip:port". */
export function socketAddress(socket: Socket): string {
  return formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? '?');
}

/** Wires `socket` to a new channel of `core`. */
export function attachSocket(core: BrokerCore, socket: Socket, info: TransportInit, options: AttachOptions = {}): Channel {
  socket.setNoDelay(true);
  const output = new SocketOutput(socket, options.maxBytesRate, options.tracker);
  const channel = core.openChannel(output, transportInfo(info, info.remoteAddress ?? socketAddress(socket)));
  output.channel = channel;
  const attached = socket as AttachedSocket;
  attached[kOutput] = output;
  socket.on('data', onSocketData);
  socket.on('drain', onSocketDrain);
  socket.on('error', onSocketError);
  socket.on('close', onSocketClose);
  if (options.head?.length) onSocketData.call(attached, options.head);
  // A socket handed over paused (readProxyHeader leaves it so) reads on: a 'data' listener does not
  // restart a stream that was paused on purpose.
  if (socket.isPaused()) socket.resume();
  return channel;
}
