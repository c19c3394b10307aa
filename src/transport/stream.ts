// Adapter between a byte stream (TCP or TLS socket) and a broker channel. Writes are batched:
// every packet produced while handling one input chunk goes out in a single write per socket,
// flushed right after that chunk (not at the end of the event-loop turn: writing early lets the
// peers work while the broker reads the next socket, which halves latency with many connections).
import type { Socket } from 'node:net';
import type { BrokerCore } from '../broker/core.js';
import type { Channel, ChannelOutput } from '../broker/channel.js';

/** Adapters with bytes waiting, flushed once per event-loop turn. */
const pendingFlush = new Set<SocketOutput>();
let flushScheduled = false;

export function flushAll(): void {
  flushScheduled = false;
  for (const output of pendingFlush) output.flush();
  pendingFlush.clear();
}

class SocketOutput implements ChannelOutput {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private closing = false;

  constructor(private readonly socket: Socket) {}

  write(data: Buffer): void {
    if (this.closing || this.socket.destroyed) return;
    this.pending.push(data);
    this.pendingBytes += data.length;
    if (this.pending.length === 1) {
      pendingFlush.add(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAll);
      }
    }
  }

  flush(): void {
    const n = this.pending.length;
    if (n === 0 || this.socket.destroyed) return;
    const data = n === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.socket.write(data);
  }

  close(): void {
    if (this.closing) return;
    this.flush();
    this.closing = true;
    pendingFlush.delete(this);
    // end() sends what is buffered, then FIN; destroy once flushed so the socket never lingers.
    this.socket.end(() => this.socket.destroy());
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  pauseInput(): void {
    this.socket.pause();
  }

  resumeInput(): void {
    if (!this.closing) this.socket.resume();
  }
}

/** Wires `socket` to a new channel of `core`. */
export function attachSocket(core: BrokerCore, socket: Socket, listener: string, secure: boolean): Channel {
  socket.setNoDelay(true);
  const remoteAddress = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  const channel = core.openChannel(new SocketOutput(socket), { remoteAddress, listener, secure });
  socket.on('data', (chunk: Buffer) => {
    channel.receive(chunk);
    if (pendingFlush.size > 0) flushAll();
  });
  socket.on('error', (err) => channel.transportClosed(err));
  socket.on('close', () => channel.transportClosed());
  return channel;
}
