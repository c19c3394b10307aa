// PROXY protocol v1 (text) and v2 (binary) as sent by HAProxy, AWS NLB, nginx stream and others
// in front of a TCP listener: the header carries the real client address.
import { Buffer } from 'node:buffer';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import { formatAddress } from '../util/address.js';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

export interface ProxyHeader {
  /** Real client "ip:port"; undefined for LOCAL / UNKNOWN (health checks): use the socket's own. */
  remoteAddress?: string;
  /** Bytes after the header (the start of the MQTT stream). */
  rest: Buffer;
}

export class ProxyProtocolError extends Error {
  override readonly name = 'ProxyProtocolError';
}

/**
 * Parses a PROXY header at the start of `data`: the header, undefined when more bytes are needed,
 * or throws ProxyProtocolError when the data is not a PROXY header.
 */
export function parseProxyHeader(data: Buffer): ProxyHeader | undefined {
  if (data.length === 0) return undefined;
  if (data[0] === 0x0d) {
    const n = Math.min(data.length, V2_SIGNATURE.length);
    if (!data.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) throw new ProxyProtocolError('not a PROXY protocol header');
    if (data.length < 16) return undefined;
    return parseV2(data);
  }
  if (data[0] === 0x50) {
    const n = Math.min(data.length, 6);
    if (data.toString('latin1', 0, n) !== 'PROXY '.slice(0, n)) throw new ProxyProtocolError('not a PROXY protocol header');
    const end = data.indexOf('\r\n');
    if (end < 0) {
      if (data.length >= V1_MAX) throw new ProxyProtocolError('PROXY v1 header longer than 107 bytes');
      return undefined;
    }
    return parseV1(data.toString('latin1', 0, end), data.subarray(end + 2));
  }
  throw new ProxyProtocolError('not a PROXY protocol header');
}

function parseV1(line: string, rest: Buffer): ProxyHeader {
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { rest };
  if ((parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || parts.length !== 6) throw new ProxyProtocolError(`bad PROXY v1 header ${JSON.stringify(line)}`);
  // The address becomes the client's identity for ACL address rules and bans: it must really be one.
  if (isIP(parts[2]!) !== (parts[1] === 'TCP4' ? 4 : 6)) throw new ProxyProtocolError(`bad source address in PROXY v1 header ${JSON.stringify(line)}`);
  const port = Number(parts[4]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ProxyProtocolError('bad source port in PROXY v1 header');
  return { remoteAddress: formatAddress(parts[2]!, port), rest };
}

function parseV2(data: Buffer): ProxyHeader | undefined {
  const verCmd = data[12]!;
  if (verCmd >> 4 !== 2) throw new ProxyProtocolError('unsupported PROXY protocol version');
  const command = verCmd & 0x0f;
  const family = data[13]!;
  const length = data.readUInt16BE(14);
  if (data.length < 16 + length) return undefined;
  const body = data.subarray(16, 16 + length);
  const rest = data.subarray(16 + length);
  if (command === 0x0) return { rest }; // LOCAL: the proxy's own connection (health check)
  if (command !== 0x1) throw new ProxyProtocolError('unknown PROXY v2 command');
  switch (family >> 4) {
    case 0x1: {
      if (body.length < 12) throw new ProxyProtocolError('short PROXY v2 IPv4 address block');
      const ip = `${body[0]}.${body[1]}.${body[2]}.${body[3]}`;
      return { remoteAddress: formatAddress(ip, body.readUInt16BE(8)), rest };
    }
    case 0x2: {
      if (body.length < 36) throw new ProxyProtocolError('short PROXY v2 IPv6 address block');
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
      return { remoteAddress: formatAddress(compressIPv6(groups), body.readUInt16BE(32)), rest };
    }
    default:
      return { rest }; // AF_UNSPEC / AF_UNIX: keep the socket's address
  }
}

function compressIPv6(groups: string[]): string {
  // Longest run of zero groups becomes "::".
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Reads the PROXY header from a new socket (within `timeoutMs`); the socket is left paused. */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const done = (err: Error | undefined, header?: ProxyHeader) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.pause();
      if (err) reject(err);
      else resolve(header!);
    };
    const onData = (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      try {
        const header = parseProxyHeader(buffered);
        if (header) done(undefined, header);
        else if (buffered.length > 16 + 65535) done(new ProxyProtocolError('PROXY header too long'));
      } catch (err) {
        done(err as Error);
      }
    };
    const onError = (err: Error) => done(err);
    const onClose = () => done(new Error('connection closed before the PROXY header'));
    const timer = setTimeout(() => done(new ProxyProtocolError(`no PROXY header within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}
