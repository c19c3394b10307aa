// PROXY protocol v1 (text) and v2 (binary) as sent by HAProxy, AWS NLB, nginx stream and others
// in front of a TCP listener: the header carries the real client address, and in v2 TLVs what a proxy
// that terminated TLS knows of the client's TLS (HAProxy's send-proxy-v2-ssl / send-proxy-v2-ssl-cn).
// Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt, section 2.2.
import { Buffer } from 'node:buffer';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import { formatAddress } from '../util/address.js';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

/** Type codes of the v2 TLVs read here (others are checked for shape and skipped). */
export const PP2 = {
  TYPE_CRC32C: 0x03,
  TYPE_SSL: 0x20,
  SUBTYPE_SSL_VERSION: 0x21,
  SUBTYPE_SSL_CN: 0x22,
  SUBTYPE_SSL_CIPHER: 0x23,
  SUBTYPE_SSL_SIG_ALG: 0x24,
  SUBTYPE_SSL_KEY_ALG: 0x25,
  /** Bits of PP2_TYPE_SSL's client field. */
  CLIENT_SSL: 0x01,
  CLIENT_CERT_CONN: 0x02,
  CLIENT_CERT_SESS: 0x04,
} as const;

/** The client's TLS as the proxy that terminated it reports it (PP2_TYPE_SSL and its sub-TLVs). */
export interface ProxyTlsInfo {
  /** PP2_CLIENT_SSL: the client spoke TLS to the proxy. */
  ssl: boolean;
  /** PP2_CLIENT_CERT_CONN / _SESS: the client presented a certificate (on this connection or in its TLS session). */
  clientCert: boolean;
  /** The proxy's verification of that certificate: 0 when verified (OpenSSL's X509_V_OK), else the error number. */
  verify: number;
  /** "TLSv1.3" (PP2_SUBTYPE_SSL_VERSION) */
  version?: string;
  /** Subject Common Name of the client certificate (PP2_SUBTYPE_SSL_CN). */
  cn?: string;
  cipher?: string;
  sigAlg?: string;
  keyAlg?: string;
}

export interface ProxyHeader {
  /** Real client "ip:port"; undefined for LOCAL / UNKNOWN (health checks): use the socket's own. */
  remoteAddress?: string;
  /** v2 with a PP2_TYPE_SSL TLV. Trust it only from a trusted proxy: anyone who reaches the port can write one. */
  tls?: ProxyTlsInfo;
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
  let header: ProxyHeader;
  let tlvStart: number;
  switch (family >> 4) {
    case 0x1: {
      if (body.length < 12) throw new ProxyProtocolError('short PROXY v2 IPv4 address block');
      const ip = `${body[0]}.${body[1]}.${body[2]}.${body[3]}`;
      header = { remoteAddress: formatAddress(ip, body.readUInt16BE(8)), rest };
      tlvStart = 12;
      break;
    }
    case 0x2: {
      if (body.length < 36) throw new ProxyProtocolError('short PROXY v2 IPv6 address block');
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
      header = { remoteAddress: formatAddress(compressIPv6(groups), body.readUInt16BE(32)), rest };
      tlvStart = 36;
      break;
    }
    case 0x3:
      // AF_UNIX: two 108-byte paths; keep the socket's address
      if (body.length < 216) throw new ProxyProtocolError('short PROXY v2 UNIX address block');
      header = { rest };
      tlvStart = 216;
      break;
    default:
      return { rest }; // AF_UNSPEC: the receiver discards the block (spec 2.2)
  }
  const tlvs = body.subarray(tlvStart);
  for (const [type, value, offset] of readTlvs(tlvs, 'TLV')) {
    if (type === PP2.TYPE_SSL) header.tls = parseSslTlv(value);
    else if (type === PP2.TYPE_CRC32C) checkCrc32c(data.subarray(0, 16 + length), 16 + tlvStart + offset + 3, value);
  }
  return header;
}

/** The TLVs of a block as [type, value, offset of the TLV]; throws on one that overruns the block. */
function* readTlvs(block: Buffer, what: string): Generator<[number, Buffer, number]> {
  let i = 0;
  while (i < block.length) {
    if (block.length - i < 3) throw new ProxyProtocolError(`malformed PROXY v2 ${what}: ${block.length - i} stray bytes at the end`);
    const type = block[i]!;
    const length = block.readUInt16BE(i + 1);
    if (i + 3 + length > block.length) throw new ProxyProtocolError(`malformed PROXY v2 ${what} 0x${type.toString(16)}: length ${length} overruns the header`);
    yield [type, block.subarray(i + 3, i + 3 + length), i];
    i += 3 + length;
  }
}

function parseSslTlv(value: Buffer): ProxyTlsInfo {
  // struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; }
  if (value.length < 5) throw new ProxyProtocolError('malformed PROXY v2 SSL TLV: shorter than its 5-byte head');
  const client = value[0]!;
  const tls: ProxyTlsInfo = {
    ssl: (client & PP2.CLIENT_SSL) !== 0,
    clientCert: (client & (PP2.CLIENT_CERT_CONN | PP2.CLIENT_CERT_SESS)) !== 0,
    verify: value.readUInt32BE(1),
  };
  for (const [type, sub] of readTlvs(value.subarray(5), 'SSL sub-TLV')) {
    // US-ASCII / UTF-8 strings by the spec; a CN with a NUL or control character is no name to log in with.
    const text = () => {
      const s = sub.toString('utf8');
      if (/[\u0000-\u001f\u007f\ufffd]/.test(s)) throw new ProxyProtocolError(`malformed PROXY v2 SSL sub-TLV 0x${type.toString(16)}: not a printable UTF-8 string`);
      return s;
    };
    if (type === PP2.SUBTYPE_SSL_VERSION) tls.version = text();
    else if (type === PP2.SUBTYPE_SSL_CN) tls.cn = text();
    else if (type === PP2.SUBTYPE_SSL_CIPHER) tls.cipher = text();
    else if (type === PP2.SUBTYPE_SSL_SIG_ALG) tls.sigAlg = text();
    else if (type === PP2.SUBTYPE_SSL_KEY_ALG) tls.keyAlg = text();
  }
  return tls;
}

/** PP2_TYPE_CRC32C: the header's CRC32c, computed with the checksum's own 4 bytes as zeros (spec 2.2.5). */
function checkCrc32c(header: Buffer, valueOffset: number, value: Buffer): void {
  if (value.length !== 4) throw new ProxyProtocolError('malformed PROXY v2 CRC32C TLV: its value must be 4 bytes');
  const copy = Buffer.from(header);
  copy.fill(0, valueOffset, valueOffset + 4);
  if (crc32c(copy) !== value.readUInt32BE(0)) throw new ProxyProtocolError('PROXY v2 header checksum (CRC32C TLV) does not match');
}

let crcTable: Uint32Array | undefined;

/** CRC-32C (Castagnoli), reflected polynomial 0x82F63B78. */
export function crc32c(data: Buffer): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
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
