// Extra libuv handles on one listening socket. Since libuv 1.45 (Node.js 20 ships 1.46) a listening handle
// accepts one connection per event-loop turn: under a connection storm every accept costs a loop turn
// (19,526 epoll_wait calls for 19,500 connections; Mosquitto makes 406). Each extra handle on the same socket
// accepts one more per turn. Measured with ../shared/bench (docs/performance.md).
//
// Node.js 20 cannot dup() a socket or set SO_REUSEPORT from JavaScript (Node 22.12 has `reusePort`), so the
// copies are made the way Node.js hands a server to a child process: the handle is written to a Unix-domain
// socket with SCM_RIGHTS, and the kernel gives the reading end a new descriptor for the same socket. Here
// both ends of that Unix socket are in this process. The pair is made once, in a directory only this user
// can enter, and kept (unreferenced) for the life of the process: its accepting side and the IPC handle
// opened on the same descriptor are never closed, so no descriptor is ever closed twice.
//
// Any failure (bindings of another shape, no temporary directory, a worker thread) gives no copies: the
// listener then runs on its one handle, as before.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';

/** The parts of a libuv handle (TCP or pipe) this module uses. */
interface Handle {
  fd: number;
  close(callback?: () => void): void;
  unref(): void;
}

interface PipeHandle extends Handle {
  bind(path: string): number;
  listen(backlog: number): number;
  connect(req: object, path: string): number;
  open(fd: number): number;
  readStart(): number;
  writeUtf8String(req: object, data: string, handle: object): number;
  onconnection: ((err: number, handle: PipeHandle | undefined) => void) | null;
  onread: ((this: PipeHandle, buffer: ArrayBuffer | undefined) => void) | null;
  /** Set by Node.js before onread when the read carried a descriptor. */
  pendingHandle?: Handle | null;
}

interface PipeBindings {
  Pipe: new (type: number) => PipeHandle;
  PipeConnectWrap: new () => { oncomplete: ((status: number) => void) | null };
  WriteWrap: new () => { handle: unknown; oncomplete: ((status: number) => void) | null };
  serverType: number;
  ipcType: number;
}

function loadPipeBindings(): PipeBindings | undefined {
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const pipe = binding('pipe_wrap') as { Pipe?: unknown; PipeConnectWrap?: unknown; constants?: { SERVER?: unknown; IPC?: unknown } };
    const stream = binding('stream_wrap') as { WriteWrap?: unknown };
    const proto = (pipe.Pipe as { prototype?: Record<string, unknown> } | undefined)?.prototype;
    if (
      typeof pipe.Pipe !== 'function' ||
      typeof pipe.PipeConnectWrap !== 'function' ||
      typeof stream.WriteWrap !== 'function' ||
      typeof pipe.constants?.SERVER !== 'number' ||
      typeof pipe.constants.IPC !== 'number' ||
      typeof proto?.open !== 'function' ||
      typeof proto.writeUtf8String !== 'function'
    ) {
      return undefined;
    }
    return {
      Pipe: pipe.Pipe as PipeBindings['Pipe'],
      PipeConnectWrap: pipe.PipeConnectWrap as PipeBindings['PipeConnectWrap'],
      WriteWrap: stream.WriteWrap as PipeBindings['WriteWrap'],
      serverType: pipe.constants.SERVER,
      ipcType: pipe.constants.IPC,
    };
  } catch {
    return undefined;
  }
}

/** One request for copies: filled in arrival order (the socket keeps the order of the writes). */
interface Waiter {
  wanted: number;
  got: Handle[];
  done: (copies: Handle[]) => void;
}

/** Both ends of the Unix socket, and the copies still to be received. */
interface Loopback {
  bindings: PipeBindings;
  sender: PipeHandle;
  waiting: Waiter[];
  /** A batch did not arrive in time: what comes later cannot be matched to its request, so no more copies. */
  broken: boolean;
}

/** How long the pair may take to connect, or a batch of copies to arrive, before we go on without. */
const GIVE_UP_MS = 2000;

let loopback: Promise<Loopback | undefined> | undefined;
/** The pair's accepted side and the IPC handle on its descriptor: kept referenced, never closed. */
const keep: Handle[] = [];

function openLoopback(): Promise<Loopback | undefined> {
  const bindings = isMainThread ? loadPipeBindings() : undefined;
  if (!bindings) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let dir: string | undefined;
    try {
      dir = mkdtempSync(join(tmpdir(), 'petrel-'));
      connectPair(bindings, join(dir, 's'), (link) => {
        rmSync(dir!, { recursive: true, force: true });
        resolve(link);
      });
    } catch {
      if (dir) rmSync(dir, { recursive: true, force: true });
      resolve(undefined);
    }
  });
}

/** Connects an IPC pipe to one listening on `path`; `done` is called once, with the pair or without. */
function connectPair(bindings: PipeBindings, path: string, done: (link: Loopback | undefined) => void): void {
  const server = new bindings.Pipe(bindings.serverType);
  const receiver = new bindings.Pipe(bindings.ipcType);
  let connected = false;
  let sender: PipeHandle | undefined;
  let finished = false;
  const finish = (ok: boolean): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    server.close();
    if (!ok || receiver.readStart() !== 0) {
      // Only the receiving side is closed: the accepted side, if any, stays open (see the header).
      receiver.close();
      done(undefined);
      return;
    }
    const link: Loopback = { bindings, sender: sender!, waiting: [], broken: false };
    receiver.onread = function onCopy(): void {
      const handle = this.pendingHandle;
      if (!handle) return;
      this.pendingHandle = null;
      const waiter = link.waiting[0];
      if (!waiter || link.broken) {
        handle.close();
        return;
      }
      waiter.got.push(handle);
      if (waiter.got.length === waiter.wanted) {
        link.waiting.shift();
        waiter.done(waiter.got);
      }
    };
    receiver.unref();
    done(link);
  };
  const timer = setTimeout(() => finish(false), GIVE_UP_MS);
  timer.unref();
  server.onconnection = (err, accepted) => {
    if (err !== 0 || !accepted || sender) return;
    // Node.js makes accepted pipes without IPC, and only an IPC pipe sends descriptors: a second handle
    // opens the same descriptor as IPC. Neither is ever closed (see the header).
    accepted.unref();
    keep.push(accepted);
    const ipc = new bindings.Pipe(bindings.ipcType);
    if (ipc.open(accepted.fd) !== 0) return finish(false);
    ipc.unref();
    keep.push(ipc);
    sender = ipc;
    if (connected) finish(true);
  };
  const req = new bindings.PipeConnectWrap();
  req.oncomplete = (status) => {
    if (status !== 0) return finish(false);
    connected = true;
    if (sender) finish(true);
  };
  if (server.bind(path) !== 0 || server.listen(1) !== 0 || receiver.connect(req, path) !== 0) finish(false);
}

/**
 * Up to `count` new handles on the socket of `handle` (a listening TCP handle), as Node.js TCP handles
 * that are not listening yet. Fewer (none) where this process cannot make them.
 */
export async function copyHandle<T extends object>(handle: T, count: number): Promise<T[]> {
  if (count <= 0) return [];
  const link = await (loopback ??= openLoopback());
  if (!link || link.broken) return [];
  const waiter: Waiter = { wanted: count, got: [], done: () => {} };
  const copies = new Promise<Handle[]>((resolve) => {
    waiter.done = resolve;
  });
  let sent = 0;
  for (; sent < count; sent++) {
    const req = new link.bindings.WriteWrap();
    req.handle = link.sender;
    req.oncomplete = () => {};
    if (link.sender.writeUtf8String(req, 'h', handle) !== 0) break;
  }
  if (sent === 0) return [];
  waiter.wanted = sent;
  link.waiting.push(waiter);
  const timer = setTimeout(() => {
    // Copies that never came: every request goes on with those it has; late ones are closed on arrival.
    link.broken = true;
    for (const w of link.waiting.splice(0)) w.done(w.got);
  }, GIVE_UP_MS);
  timer.unref();
  const got = await copies;
  clearTimeout(timer);
  return got as unknown as T[];
}
