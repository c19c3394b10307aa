// Plain-TCP listener on libuv's TCP handles directly, without net.Socket. net.Socket wraps every
// connection in a Duplex stream: per connection a few KiB of stream state and a constructor that costs more
// than the whole MQTT CONNECT; per read and per write, stream bookkeeping, an event emission and a request
// object. Measured on one core with ../shared/bench (docs/performance.md), a server that answers CONNECT took
// 23.6k connections/s at 2.4 KiB each through net.Socket and 45.6k/s at 0.9 KiB each on the handles.
//
// The handles come from Node's internal bindings (process.binding('tcp_wrap' / 'stream_wrap'), deprecated
// but kept for compatibility). directTcp() checks their shape once; where they are missing or different,
// the listener falls back to node:net, and `directSockets: false` chooses node:net outright.
import { Buffer } from 'node:buffer';
import { getSystemErrorMap } from 'node:util';
import type { AddressInfo } from 'node:net';
import { formatAddress } from '../util/address.js';
import type { BrokerCore } from '../broker/core.js';
import { transportInfo, type Channel } from '../broker/channel.js';
import { BatchedOutput, GRACEFUL_CLOSE_MS } from './batched-output.js';
import { copyHandle } from './listen-copies.js';
import type { TransportInit } from './stream.js';

/** libuv's end-of-stream code (UV_EOF), the same on every platform. */
const UV_EOF = -4095;

interface TcpHandle {
  onread: ((this: TcpHandle) => void) | null;
  onconnection: ((this: TcpHandle, err: number, handle: TcpHandle | undefined) => void) | null;
  readStart(): number;
  readStop(): number;
  /** Reads into `buffer` from now on instead of a new ArrayBuffer per read. */
  useUserBuffer(buffer: Buffer): void;
  writeBuffer(req: WriteRequest, data: Buffer): number;
  shutdown(req: ShutdownRequest): number;
  close(callback?: () => void): void;
  setNoDelay(on: boolean): number;
  getpeername(out: Partial<AddressInfo>): number;
  getsockname(out: Partial<AddressInfo>): number;
  bind(host: string, port: number): number;
  bind6(host: string, port: number, flags: number): number;
  listen(backlog: number): number;
}

interface WriteRequest {
  handle: TcpHandle | null;
  oncomplete: ((this: WriteRequest, status: number) => void) | null;
  /** Keeps the bytes alive while libuv still writes them. */
  buffer: Buffer | null;
  output: DirectTcpOutput | null;
}

interface ShutdownRequest {
  handle: TcpHandle | null;
  oncomplete: ((this: ShutdownRequest, status: number) => void) | null;
  output: DirectTcpOutput | null;
}

interface Bindings {
  TCP: new (type: number) => TcpHandle;
  serverType: number;
  WriteWrap: new () => WriteRequest;
  ShutdownWrap: new () => ShutdownRequest;
  /** Filled by the native side after each read and write. */
  state: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

let bindings: Bindings | null | undefined;

/** The native TCP bindings, or undefined where this Node.js does not have them in the expected shape. */
export function directTcp(): Bindings | undefined {
  if (bindings === undefined) bindings = loadBindings();
  return bindings ?? undefined;
}

function loadBindings(): Bindings | null {
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const tcp = binding('tcp_wrap') as { TCP?: unknown; constants?: { SERVER?: unknown } };
    const stream = binding('stream_wrap') as Record<string, unknown>;
    const ok =
      typeof tcp.TCP === 'function' &&
      typeof tcp.constants?.SERVER === 'number' &&
      typeof stream.WriteWrap === 'function' &&
      typeof stream.ShutdownWrap === 'function' &&
      stream.streamBaseState instanceof Int32Array &&
      typeof stream.kReadBytesOrError === 'number' &&
      typeof stream.kLastWriteWasAsync === 'number' &&
      typeof (tcp.TCP as { prototype: Record<string, unknown> }).prototype.writeBuffer === 'function' &&
      typeof (tcp.TCP as { prototype: Record<string, unknown> }).prototype.useUserBuffer === 'function';
    if (!ok) return null;
    return {
      TCP: tcp.TCP as Bindings['TCP'],
      serverType: tcp.constants!.SERVER as number,
      WriteWrap: stream.WriteWrap as Bindings['WriteWrap'],
      ShutdownWrap: stream.ShutdownWrap as Bindings['ShutdownWrap'],
      state: stream.streamBaseState as Int32Array,
      kReadBytesOrError: stream.kReadBytesOrError as number,
      kLastWriteWasAsync: stream.kLastWriteWasAsync as number,
    };
  } catch {
    return null;
  }
}

/** An Error like node:net's for a libuv error code: message "<syscall> ECODE: text", `code` set. */
export function uvError(code: number, syscall: string, detail?: string): Error & { code: string; errno: number; syscall: string } {
  const [name, text] = getSystemErrorMap().get(code) ?? [`E${-code}`, 'unknown error'];
  const err = new Error(`${syscall} ${name}: ${text}${detail ? ` ${detail}` : ''}`) as Error & { code: string; errno: number; syscall: string };
  err.code = name;
  err.errno = code;
  err.syscall = syscall;
  return err;
}

/**
 * A listening TCP handle, and any extra handles on the same socket (addAcceptHandles). Each accepted
 * connection is passed to `onConnection` as a raw handle; wrap it with DirectTcpOutput.
 */
export class DirectTcpServer {
  private readonly handle: TcpHandle;
  private readonly copies: TcpHandle[] = [];
  private closed = false;

  /** Binds and listens; throws an Error with `code` (EADDRINUSE, EACCES, ...) like net.Server would emit. */
  constructor(host: string, port: number, ipv6: boolean, private readonly backlog: number, onConnection: (handle: TcpHandle | undefined, err: number) => void) {
    const b = directTcp()!;
    this.handle = new b.TCP(b.serverType);
    const where = `${ipv6 ? `[${host}]` : host}:${port}`;
    let err = ipv6 ? this.handle.bind6(host, port, 0) : this.handle.bind(host, port);
    if (err === 0) {
      this.handle.onconnection = (status, client) => onConnection(client, status);
      err = this.handle.listen(backlog);
    }
    if (err !== 0) {
      this.handle.close();
      throw uvError(err, 'listen', where);
    }
  }

  /**
   * Adds up to `count` handles on the listening socket: libuv accepts one connection per handle per
   * event-loop turn (see listen-copies.ts). Returns how many were added (0 where copies cannot be made).
   */
  async addAcceptHandles(count: number): Promise<number> {
    for (const copy of await copyHandle(this.handle, count)) {
      if (this.closed || copy.listen(this.backlog) !== 0) {
        copy.close();
        continue;
      }
      copy.onconnection = this.handle.onconnection;
      this.copies.push(copy);
    }
    return this.copies.length;
  }

  address(): AddressInfo {
    const out: Partial<AddressInfo> = {};
    this.handle.getsockname(out);
    return out as AddressInfo;
  }

  close(callback: () => void): void {
    this.closed = true;
    let open = this.copies.length + 1;
    const closed = (): void => {
      if (--open === 0) callback();
    };
    for (const copy of this.copies.splice(0)) copy.close(closed);
    this.handle.close(closed);
  }
}

// Requests for writes that finish at once are never kept by the native side, so one serves them all; it is
// replaced only when a write goes asynchronous (libuv holds it until the write completes).
let spareWrite: WriteRequest | undefined;

function onWriteDone(this: WriteRequest, status: number): void {
  const output = this.output!;
  const bytes = this.buffer!.length;
  this.buffer = this.output = this.handle = null;
  output.writeDone(bytes, status);
}

function onShutdownDone(this: ShutdownRequest): void {
  const output = this.output!;
  this.output = this.handle = null;
  output.destroy();
}

const kOutput = Symbol('petrel.output');
type OwnedHandle = TcpHandle & { [kOutput]: DirectTcpOutput };

/**
 * Every connection reads into this one buffer (useUserBuffer), and each read is copied out at once. By
 * default Node.js gives every read a new ArrayBuffer: a 64 KiB allocation, shrunk to the bytes read, whose
 * backing store V8 frees on a helper thread after each scavenge. On a broker pinned to one CPU that helper
 * runs in ~0.3 ms slices between the broker's turns (seen with perf sched tracing at 10k msg/s), which is
 * latency the next messages wait out. A copy of a small read comes from Node's Buffer pool instead.
 */
const readBuffer = Buffer.allocUnsafeSlow(64 * 1024);
/**
 * Views of the first n bytes of readBuffer, made once per size up to SMALL_READ: copying a small read
 * from one of them is a plain TypedArray set(), where Buffer#copy makes a new view (and reads its
 * ArrayBuffer) on every call. Most reads are one or a few small packets.
 */
const SMALL_READ = 512;
const readViews: (Buffer | undefined)[] = new Array<Buffer | undefined>(SMALL_READ + 1).fill(undefined);

/** Shared read callback (`this` is the handle): no closure per connection. */
function onHandleRead(this: TcpHandle): void {
  const n = bindings!.state[bindings!.kReadBytesOrError]!;
  const output = (this as OwnedHandle)[kOutput];
  if (n > 0) {
    const chunk = Buffer.allocUnsafe(n);
    if (n <= SMALL_READ) chunk.set((readViews[n] ??= readBuffer.subarray(0, n)));
    else readBuffer.copy(chunk, 0, 0, n);
    output.feed(chunk);
  } else if (n < 0) {
    output.readEnded(n);
  }
}

/** ChannelOutput over a raw TCP handle; also what the listener counts and destroys. */
export class DirectTcpOutput extends BatchedOutput {
  /** Bytes handed to libuv that the kernel has not taken yet (asynchronous writes still pending). */
  private writing = 0;
  private handleClosed = false;
  private shutdownSent = false;
  private closedCalled = false;

  constructor(
    private readonly handle: TcpHandle,
    maxBytesRate: number | undefined,
    /** The listener's set of open connections, left on close. */
    private readonly tracker: Set<{ destroy(): void }>,
  ) {
    super(maxBytesRate);
    (handle as OwnedHandle)[kOutput] = this;
    handle.useUserBuffer(readBuffer);
    handle.onread = onHandleRead;
    handle.setNoDelay(true);
  }

  /** The peer as "ip:port" ("?" when the socket has no peer any more). */
  remoteAddress(): string {
    const out: Partial<AddressInfo> = {};
    return this.handle.getpeername(out) === 0 ? formatAddress(out.address ?? '?', out.port ?? '?') : '?';
  }

  /** Starts reading (after the channel is attached). */
  start(): void {
    const err = this.handle.readStart();
    if (err !== 0) this.fail(err, 'read');
  }

  protected writable(): boolean {
    return !this.handleClosed;
  }

  protected transmit(data: Buffer): void {
    const b = bindings!;
    const req = (spareWrite ??= new b.WriteWrap());
    req.handle = this.handle;
    const err = this.handle.writeBuffer(req, data);
    if (err !== 0) {
      req.handle = null;
      this.fail(err, 'write');
      return;
    }
    if (b.state[b.kLastWriteWasAsync] === 0) {
      req.handle = null; // the shared request must not keep a closed connection alive
      return;
    }
    spareWrite = undefined;
    req.oncomplete = onWriteDone;
    req.buffer = data;
    req.output = this;
    this.writing += data.length;
  }

  /** An asynchronous write finished. */
  writeDone(bytes: number, status: number): void {
    this.writing -= bytes;
    if (status < 0) this.fail(status, 'write');
    else if (this.writing === 0 && !this.handleClosed) this.channel?.outputDrained();
  }

  protected transportBuffered(): number {
    return this.writing;
  }

  /** Graceful close: FIN after the pending writes (libuv orders the shutdown after them), then close. */
  protected closeTransport(): void {
    if (this.handleClosed || this.shutdownSent) return;
    this.shutdownSent = true;
    const req = new bindings!.ShutdownWrap();
    req.handle = this.handle;
    req.oncomplete = onShutdownDone;
    req.output = this;
    const err = this.handle.shutdown(req);
    // 1: done synchronously; an error (ENOTCONN after a reset): nothing left to send.
    if (err !== 0) this.destroy();
    else setTimeout(() => this.destroy(), GRACEFUL_CLOSE_MS).unref();
  }

  pauseReading(): void {
    if (!this.handleClosed) this.handle.readStop();
  }

  resumeReading(): void {
    if (!this.handleClosed) this.handle.readStart();
  }

  /** The peer ended (EOF) or the read failed. */
  readEnded(code: number): void {
    this.endInput();
    if (code === UV_EOF) {
      // No half-open MQTT connections: the channel ends (a will is due) and closes us.
      this.channel!.transportClosed();
      this.closeTransport();
    } else {
      this.fail(code, 'read');
    }
  }

  private fail(code: number, syscall: string): void {
    if (this.handleClosed) return;
    // Closed first, so nothing the channel writes while it closes reaches the failed handle.
    this.destroy();
    this.channel?.transportClosed(uvError(code, syscall));
  }

  /** Closes the handle now (unsent bytes are dropped). */
  destroy(): void {
    if (this.handleClosed) return;
    this.handleClosed = true;
    this.endInput();
    this.handle.close(() => this.closedNow());
  }

  closedNow(): void {
    if (this.closedCalled) return;
    this.closedCalled = true;
    this.tracker.delete(this);
    this.channel?.transportClosed();
  }
}

/** Wires an accepted handle to a new channel of `core`, and counts it in `tracker` until it closes. */
export function attachDirect(core: BrokerCore, handle: TcpHandle, info: TransportInit, maxBytesRate: number | undefined, tracker: Set<{ destroy(): void }>): Channel {
  const output = new DirectTcpOutput(handle, maxBytesRate, tracker);
  tracker.add(output);
  const channel = core.openChannel(output, transportInfo(info, output.remoteAddress()));
  output.channel = channel;
  output.start();
  return channel;
}

export type { TcpHandle };
