// The least a Node.js program can do for mqttload's `pairs` and `fanin` loads: the ceiling of any broker
// written for Node.js on this machine. Not a broker: CONNECT gets a CONNACK, SUBSCRIBE (one filter) a SUBACK
// granting what was asked, PINGREQ a PINGRESP; a PUBLISH is copied unchanged to the client subscribed to its
// topic exactly (or to a filter `prefix/+` it starts with), and a QoS 1 PUBLISH gets a PUBACK; a subscriber's
// PUBACK is ignored. No sessions, no validation, no packet ids of its own.
//
// It uses what Petrel's plain-TCP listener uses (src/transport/direct-tcp.ts): libuv's TCP handles without
// net.Socket, one read buffer for every connection, one shared read callback, packets parsed in place, and
// (by default) the output of each event-loop turn written once per socket from a setImmediate.
//
// Run: node dist/bench/ceiling/node-forwarder.js PORT [batch|direct]     (127.0.0.1 only; stops after 10 min)
import { Buffer } from 'node:buffer';
import { directTcp, type TcpHandle } from '../../src/transport/direct-tcp.js';

interface Client {
  handle: TcpHandle;
  /** Bytes of a packet not complete at the end of the last read. */
  carry: Buffer | null;
  /** Output of this turn (batch mode), or null. */
  out: Buffer[] | null;
}

const bindings = directTcp();
if (!bindings) {
  console.error('node-forwarder: this Node.js has no tcp_wrap bindings in the shape Petrel expects');
  process.exit(2);
}
const b = bindings;
const port = Number(process.argv[2] ?? 18854);
const batch = process.argv[3] !== 'direct';
const readBuffer = Buffer.allocUnsafeSlow(64 * 1024);
const exact = new Map<string, Client>();
const prefixes: [string, Client][] = [];
const kClient = Symbol('client');
/** Buffer's own latin1 decoder, without toString()'s argument checks. */
const latin1 = (d: Buffer, start: number, end: number): string => (d as Buffer & { latin1Slice(s: number, e: number): string }).latin1Slice(start, end);
const CONNACK = Buffer.from([0x20, 2, 0, 0]);
const PINGRESP = Buffer.from([0xd0, 0]);
let request = newRequest();
let asyncWrites = 0;
const pending: Client[] = [];
let scheduled = false;

function newRequest() {
  const r = new b.WriteWrap();
  r.oncomplete = () => {};
  return r;
}

function transmit(client: Client, data: Buffer): void {
  request.handle = client.handle;
  client.handle.writeBuffer(request, data);
  if (b.state[b.kLastWriteWasAsync] !== 0) {
    request.buffer = data; // libuv still writes it: keep its bytes alive
    asyncWrites++;
    request = newRequest();
  }
}

function send(client: Client, data: Buffer): void {
  if (!batch) return transmit(client, data);
  if (client.out === null) {
    client.out = [data];
    pending.push(client);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  } else client.out.push(data);
}

function flush(): void {
  scheduled = false;
  for (const client of pending) {
    const out = client.out!;
    client.out = null;
    transmit(client, out.length === 1 ? out[0]! : Buffer.concat(out));
  }
  pending.length = 0;
}

function route(topic: string): Client | undefined {
  const to = exact.get(topic);
  if (to !== undefined) return to;
  for (const [prefix, client] of prefixes) if (topic.startsWith(prefix)) return client;
  return undefined;
}

function onPacket(client: Client, d: Buffer, start: number, headerLength: number, length: number): void {
  const type = d[start]! >> 4;
  const v = start + headerLength;
  if (type === 3) {
    const topicLength = (d[v]! << 8) | d[v + 1]!;
    const to = route(latin1(d, v + 2, v + 2 + topicLength));
    // A copy: the read buffer is reused by the next read, and a write may outlive it (batched, or asynchronous).
    if (to !== undefined) send(to, Buffer.from(d.subarray(start, start + length)));
    if (((d[start]! >> 1) & 3) === 1) send(client, Buffer.from([0x40, 2, d[v + 2 + topicLength]!, d[v + 3 + topicLength]!]));
  } else if (type === 1) {
    send(client, CONNACK);
  } else if (type === 8) {
    const filterLength = (d[v + 2]! << 8) | d[v + 3]!;
    const filter = latin1(d, v + 4, v + 4 + filterLength);
    if (filter.endsWith('/+')) prefixes.push([filter.slice(0, -1), client]);
    else exact.set(filter, client);
    send(client, Buffer.from([0x90, 3, d[v]!, d[v + 1]!, d[v + 4 + filterLength]! & 3]));
  } else if (type === 12) {
    send(client, PINGRESP);
  }
}

function consume(client: Client, d: Buffer, length: number): void {
  let offset = 0;
  while (offset + 2 <= length) {
    let remaining = 0;
    let i = 1;
    let shift = 0;
    let complete = false;
    while (offset + i < length && i <= 4) {
      const byte = d[offset + i++]!;
      remaining |= (byte & 127) << shift;
      shift += 7;
      if ((byte & 128) === 0) {
        complete = true;
        break;
      }
    }
    if (!complete || offset + i + remaining > length) break;
    onPacket(client, d, offset, i, i + remaining);
    offset += i + remaining;
  }
  client.carry = offset < length ? Buffer.from(d.subarray(offset, length)) : null;
}

function onRead(this: TcpHandle): void {
  const n = b.state[b.kReadBytesOrError]!;
  const client = (this as TcpHandle & { [kClient]: Client })[kClient];
  if (n > 0) {
    if (client.carry) {
      const all = Buffer.concat([client.carry, readBuffer.subarray(0, n)]);
      consume(client, all, all.length);
    } else consume(client, readBuffer, n);
  } else if (n < 0) {
    this.close();
  }
}

const server = new b.TCP(b.serverType);
const err = server.bind('127.0.0.1', port) || server.listen(4096);
if (err !== 0) {
  console.error(`node-forwarder: cannot listen on 127.0.0.1:${port} (libuv error ${err})`);
  process.exit(1);
}
server.onconnection = (status, handle) => {
  if (status !== 0 || handle === undefined) return;
  const client: Client = { handle, carry: null, out: null };
  (handle as TcpHandle & { [kClient]: Client })[kClient] = client;
  handle.setNoDelay(true);
  handle.useUserBuffer(readBuffer);
  handle.onread = onRead;
  handle.readStart();
};
const stop = (): void => {
  if (asyncWrites > 0) console.error(`node-forwarder: ${asyncWrites} writes went asynchronous`);
  process.exit(0);
};
process.on('SIGTERM', stop).on('SIGINT', stop);
setTimeout(stop, 600_000).unref();
