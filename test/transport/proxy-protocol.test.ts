import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Broker } from '../../src/server/broker.js';
import type { ClientInfo } from '../../src/broker/hooks.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import fc from 'fast-check';
import { validateConfig } from '../../src/config/config.js';
import type { ConnackPacket, PubackPacket } from '../../src/protocol/packets.js';
import { crc32c, parseProxyHeader, PP2, ProxyProtocolError, type ProxyTlsInfo } from '../../src/transport/proxy-protocol.js';
import { proxiedTlsFields } from '../../src/transport/proxy-tls.js';
import { RawClient } from '../helpers/raw-client.js';
import { startLogged, type LoggedBroker } from './helpers.js';

const v2 = (family: number, body: Buffer, command = 0x21) => {
  const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, command, family, 0, 0]);
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
};

describe('PROXY protocol parser', () => {
  it('v1 TCP4 / TCP6 / UNKNOWN, keeping the bytes after the header', () => {
    const h = parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n\x10rest'));
    assert.equal(h?.remoteAddress, '203.0.113.7:51000');
    assert.equal(h?.rest.toString('latin1'), '\x10rest');
    assert.equal(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 ::1 4000 1883\r\n'))?.remoteAddress, '[2001:db8::1]:4000');
    assert.equal(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))?.remoteAddress, undefined);
  });

  it('v2 IPv4, IPv6 and LOCAL', () => {
    const ipv4 = Buffer.from([198, 51, 100, 9, 10, 0, 0, 1, 0xc3, 0x50, 0x07, 0x5b]);
    assert.equal(parseProxyHeader(v2(0x11, ipv4))?.remoteAddress, '198.51.100.9:50000');
    const ipv6 = Buffer.alloc(36);
    ipv6.writeUInt16BE(0x2001, 0);
    ipv6.writeUInt16BE(0x0db8, 2);
    ipv6.writeUInt16BE(0x0005, 14);
    ipv6.writeUInt16BE(1234, 32);
    assert.equal(parseProxyHeader(v2(0x21, ipv6))?.remoteAddress, '[2001:db8::5]:1234');
    assert.equal(parseProxyHeader(v2(0x00, Buffer.alloc(0), 0x20))?.remoteAddress, undefined);
  });

  it('asks for more bytes on a partial header, rejects a non-header', () => {
    assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 1.2')), undefined);
    assert.equal(parseProxyHeader(v2(0x11, Buffer.alloc(12)).subarray(0, 20)), undefined);
    assert.throws(() => parseProxyHeader(Buffer.from([0x10, 0x0c, 0, 4])), ProxyProtocolError);
    assert.throws(() => parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4\r\n')), ProxyProtocolError);
  });
});

describe('TCP listener with proxyProtocol', () => {
  let b: LoggedBroker;
  let broker: Broker;
  before(async () => {
    b = await startLogged({
      listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0, proxyProtocol: true }],
      acl: { default: 'allow', rules: [{ permission: 'deny', action: 'publish', address: '203.0.113.0/24', topic: '#' }] },
    });
    broker = b.broker;
  });
  after(() => broker.close());

  const connectPacket = (clientId: string) => encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId }, 4);

  it('takes the client address from the header (v1 and v2), for logs and ACL rules', async () => {
    const seen: ClientInfo[] = [];
    broker.on('clientConnected', (c) => seen.push(c));
    const send = (bytes: Buffer) =>
      new Promise<Buffer>((resolve, reject) => {
        const s = netConnect(broker.address().port, '127.0.0.1', () => s.write(bytes));
        s.once('data', (d: Buffer) => {
          s.destroy();
          resolve(d);
        });
        s.once('error', reject);
      });
    const connack1 = await send(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n'), connectPacket('via-v1')]));
    assert.equal(connack1[0], 0x20);
    const ipv4 = Buffer.from([198, 51, 100, 9, 10, 0, 0, 1, 0xc3, 0x50, 0x07, 0x5b]);
    await send(Buffer.concat([v2(0x11, ipv4), connectPacket('via-v2')]));
    assert.deepEqual(
      seen.map((c) => [c.clientId, c.remoteAddress]),
      [
        ['via-v1', '203.0.113.7:51000'],
        ['via-v2', '198.51.100.9:50000'],
      ],
    );
  });

  it('ACL address rules see the address from the header', async () => {
    const acks = await new Promise<Buffer>((resolve, reject) => {
      const s = netConnect(broker.address().port, '127.0.0.1', () => {
        s.write(Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n'));
        s.write(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'acl-proxy' }, 5));
        s.write(encodePacket({ type: 3, topic: 'x', payload: Buffer.from('p'), qos: 1, packetId: 9, retain: false, dup: false }, 5));
      });
      let got = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        const puback = got.indexOf(0x40);
        if (puback >= 0 && got.length >= puback + 5) {
          s.destroy();
          resolve(got.subarray(puback));
        }
      });
      s.once('error', reject);
    });
    assert.equal(acks[4], 0x87, 'PUBACK 0x87: denied by the rule for 203.0.113.0/24');
  });

  it('closes a connection without a header, and logs it', async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const s = netConnect(broker.address().port, '127.0.0.1', () => s.write(connectPacket('no-header')));
      s.on('data', () => resolve(false));
      s.on('close', () => resolve(true));
      s.on('error', () => {});
    });
    assert.equal(closed, true);
    assert.equal(b.logged('PROXY protocol header missing').length, 1);
  });
});

// --- PROXY v2 TLVs: the client's TLS as a TLS-terminating proxy (HAProxy send-proxy-v2-ssl-cn) reports it ---

const tlv = (type: number, value: Buffer | string) => {
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  const head = Buffer.from([type, 0, 0]);
  head.writeUInt16BE(v.length, 1);
  return Buffer.concat([head, v]);
};
/** PP2_TYPE_SSL: client flags, verify result, sub-TLVs. */
const sslTlv = (client: number, verify: number, subs: Buffer[] = []) => {
  const head = Buffer.alloc(5);
  head[0] = client;
  head.writeUInt32BE(verify, 1);
  return tlv(PP2.TYPE_SSL, Buffer.concat([head, ...subs]));
};
const IPV4 = Buffer.from([198, 51, 100, 9, 10, 0, 0, 1, 0xc3, 0x50, 0x07, 0x5b]);
const CERT = PP2.CLIENT_SSL | PP2.CLIENT_CERT_CONN | PP2.CLIENT_CERT_SESS;
/** What HAProxy sends for a client with a verified certificate. */
const withCert = (cn: string, verify = 0) =>
  v2(0x11, Buffer.concat([IPV4, sslTlv(CERT, verify, [tlv(PP2.SUBTYPE_SSL_VERSION, 'TLSv1.3'), tlv(PP2.SUBTYPE_SSL_CN, cn)])]));

describe('PROXY v2 TLVs', () => {
  it('PP2_TYPE_SSL: client flags, verify result, version, CN, cipher, signature and key algorithms', () => {
    const h = parseProxyHeader(
      v2(
        0x11,
        Buffer.concat([
          IPV4,
          tlv(0x01, 'mqtt'), // ALPN, skipped
          sslTlv(CERT, 0, [
            tlv(PP2.SUBTYPE_SSL_VERSION, 'TLSv1.3'),
            tlv(PP2.SUBTYPE_SSL_CN, 'device-1'),
            tlv(PP2.SUBTYPE_SSL_CIPHER, 'TLS_AES_256_GCM_SHA384'),
            tlv(PP2.SUBTYPE_SSL_SIG_ALG, 'ecdsa-with-SHA256'),
            tlv(PP2.SUBTYPE_SSL_KEY_ALG, 'EC256'),
            tlv(0x2f, 'unknown sub-TLV, skipped'),
          ]),
          tlv(0x04, Buffer.alloc(3)), // NOOP
        ]),
      ),
    );
    assert.equal(h?.remoteAddress, '198.51.100.9:50000');
    assert.deepEqual(h?.tls, { ssl: true, clientCert: true, verify: 0, version: 'TLSv1.3', cn: 'device-1', cipher: 'TLS_AES_256_GCM_SHA384', sigAlg: 'ecdsa-with-SHA256', keyAlg: 'EC256' });
  });

  it('TLS without a client certificate, and an unverified one', () => {
    assert.deepEqual(parseProxyHeader(v2(0x11, Buffer.concat([IPV4, sslTlv(PP2.CLIENT_SSL, 0, [tlv(PP2.SUBTYPE_SSL_VERSION, 'TLSv1.2')])])))?.tls, { ssl: true, clientCert: false, verify: 0, version: 'TLSv1.2' });
    assert.equal(parseProxyHeader(withCert('x', 20))?.tls?.verify, 20);
    assert.equal(parseProxyHeader(v2(0x11, IPV4))?.tls, undefined, 'no SSL TLV: nothing about TLS');
  });

  it('TLVs after an IPv6 and a UNIX address block; none read for AF_UNSPEC', () => {
    assert.equal(parseProxyHeader(v2(0x21, Buffer.concat([Buffer.alloc(36), sslTlv(CERT, 0, [tlv(PP2.SUBTYPE_SSL_CN, 'six')])])))?.tls?.cn, 'six');
    assert.equal(parseProxyHeader(v2(0x31, Buffer.concat([Buffer.alloc(216), sslTlv(CERT, 0, [tlv(PP2.SUBTYPE_SSL_CN, 'unix')])])))?.tls?.cn, 'unix');
    assert.equal(parseProxyHeader(v2(0x00, sslTlv(CERT, 0, [tlv(PP2.SUBTYPE_SSL_CN, 'x')])))?.tls, undefined);
  });

  it('malformed TLVs are a ProxyProtocolError naming what is wrong', () => {
    const bad = (tlvs: Buffer, message: RegExp) => assert.throws(() => parseProxyHeader(v2(0x11, Buffer.concat([IPV4, tlvs]))), (e: Error) => e instanceof ProxyProtocolError && message.test(e.message));
    bad(Buffer.from([0x20, 0x00, 0x09, 1, 0, 0]), /TLV 0x20: length 9 overruns/);
    bad(Buffer.from([0x04, 0x00]), /2 stray bytes/);
    bad(tlv(PP2.TYPE_SSL, Buffer.from([1, 0, 0])), /shorter than its 5-byte head/);
    bad(sslTlv(CERT, 0, [Buffer.from([PP2.SUBTYPE_SSL_CN, 0x00, 0x40, 0x41])]), /SSL sub-TLV 0x22: length 64 overruns/);
    bad(sslTlv(CERT, 0, [tlv(PP2.SUBTYPE_SSL_CN, 'admin\u0000device')]), /not a printable UTF-8 string/);
    bad(sslTlv(CERT, 0, [tlv(PP2.SUBTYPE_SSL_CN, Buffer.from([0x61, 0xff, 0x62]))]), /not a printable UTF-8 string/);
    assert.throws(() => parseProxyHeader(v2(0x31, Buffer.alloc(100))), /short PROXY v2 UNIX address block/);
  });

  it('PP2_TYPE_CRC32C: a matching checksum passes, a wrong one is refused', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283); // the CRC-32C check value
    const header = v2(0x11, Buffer.concat([IPV4, sslTlv(CERT, 0, [tlv(PP2.SUBTYPE_SSL_CN, 'c')]), tlv(PP2.TYPE_CRC32C, Buffer.alloc(4))]));
    const sum = crc32c(header); // computed over the header with the checksum field zeroed
    header.writeUInt32BE(sum, header.length - 4);
    assert.equal(parseProxyHeader(header)?.tls?.cn, 'c');
    header.writeUInt32BE(sum ^ 1, header.length - 4);
    assert.throws(() => parseProxyHeader(header), /checksum \(CRC32C TLV\) does not match/);
  });

  it('fuzz: any TLV bytes, and any byte of a valid header changed, give a header or a ProxyProtocolError, never a crash', () => {
    const valid = withCert('device-1');
    const outcome = (bytes: Buffer) => {
      try {
        parseProxyHeader(bytes);
      } catch (err) {
        if (!(err instanceof ProxyProtocolError)) throw err;
      }
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (tlvs) => outcome(v2(0x11, Buffer.concat([IPV4, Buffer.from(tlvs)])))),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid.length), (at, byte, cut) => {
        const mutated = Buffer.from(valid);
        mutated[at] = byte;
        outcome(mutated.subarray(0, cut));
        outcome(mutated);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('proxiedTlsFields: what a trusted proxy says becomes the TransportInfo', () => {
  const verified: ProxyTlsInfo = { ssl: true, clientCert: true, verify: 0, cn: 'device-1', version: 'TLSv1.3' };
  it('a verified certificate gives the certificate CN, and the username / Client ID when configured', () => {
    assert.deepEqual(proxiedTlsFields(verified, {}), { secure: true, certificate: { cn: 'device-1', san: [] } });
    assert.deepEqual(proxiedTlsFields(verified, { peerCertAsUsername: 'cn', peerCertAsClientId: 'cn' }), {
      secure: true,
      certificate: { cn: 'device-1', san: [] },
      identityUsername: 'device-1',
      identityClientId: 'device-1',
    });
  });
  it('no verified certificate: no certificate, and with peerCertAsUsername the CONNECT is refused with the reason', () => {
    assert.deepEqual(proxiedTlsFields(undefined, {}), { secure: false });
    const missing = (tls: ProxyTlsInfo | undefined) => proxiedTlsFields(tls, { peerCertAsUsername: 'cn' }).identityMissing;
    assert.match(missing(undefined)!, /reported no TLS/);
    assert.match(missing({ ssl: true, clientCert: false, verify: 0 })!, /no client certificate/);
    assert.match(missing({ ...verified, verify: 20 })!, /not verified by the proxy \(verify result 20\)/);
    assert.match(missing({ ...verified, cn: undefined })!, /no certificate CN .* send-proxy-v2-ssl-cn/);
    assert.equal(proxiedTlsFields({ ...verified, verify: 20 }, {}).certificate, undefined);
  });
});

describe('TCP listener with proxyProtocol and trustedProxies', () => {
  let b: LoggedBroker;
  let broker: Broker;
  before(async () => {
    b = await startLogged({
      listeners: [
        { type: 'tcp', host: '127.0.0.1', port: 0, name: 'behind-haproxy', proxyProtocol: true, trustedProxies: ['127.0.0.0/8'], peerCertAsUsername: 'cn' },
        { type: 'tcp', host: '127.0.0.1', port: 0, name: 'untrusted', proxyProtocol: true, trustedProxies: ['192.0.2.1'] },
        { type: 'tcp', host: '127.0.0.1', port: 0, name: 'no-trust', proxyProtocol: true },
      ],
      acl: { default: 'allow', rules: [{ permission: 'deny', action: 'publish', certCN: 'device-1', topic: 'forbidden/#' }] },
    });
    broker = b.broker;
  });
  after(() => broker.close());

  const open = async (listener: number, header: Buffer, clientId: string, version: 4 | 5 = 5) => {
    const client = await RawClient.open(broker.address(listener).port, version);
    client.sendBytes(header);
    client.send({ type: 1, protocolName: 'MQTT', protocolVersion: version, clean: true, keepAlive: 0, clientId, username: 'claimed-user', password: Buffer.from('x') });
    return client;
  };

  it('the certificate CN from the header becomes the username and the ACL certCN; the client counts as TLS', async () => {
    const seen: ClientInfo[] = [];
    const onConnected = (c: ClientInfo) => seen.push(c);
    broker.on('clientConnected', onConnected);
    const client = await open(0, withCert('device-1'), 'cn-client');
    const connack = (await client.next(2)) as ConnackPacket;
    assert.equal(connack.reasonCode, 0);
    assert.equal(seen[0]?.username, 'device-1', 'the CONNECT username gives way to the certificate');
    assert.equal(seen[0]?.certificateCN, 'device-1');
    assert.equal(seen[0]?.remoteAddress, '198.51.100.9:50000');
    assert.equal(broker.inspect.connection('cn-client')?.secure, true);
    client.send({ type: 3, topic: 'forbidden/x', payload: Buffer.from('p'), qos: 1, packetId: 7, retain: false, dup: false });
    assert.equal(((await client.next(4)) as PubackPacket).reasonCode, 0x87, 'denied by the certCN rule');
    client.send({ type: 3, topic: 'allowed/x', payload: Buffer.from('p'), qos: 1, packetId: 8, retain: false, dup: false });
    assert.equal(((await client.next(4)) as PubackPacket).reasonCode, 0x10, 'accepted (0x10: no matching subscribers)');
    broker.off('clientConnected', onConnected);
    client.socket.destroy();
  });

  it('no certificate, or one the proxy could not verify: CONNACK 0x86 (5.0) / 4 (3.1.1), the CONNECT username is not taken', async () => {
    const noCert = await open(0, v2(0x11, Buffer.concat([IPV4, sslTlv(PP2.CLIENT_SSL, 0)])), 'no-cert');
    assert.equal(((await noCert.next(2)) as ConnackPacket).reasonCode, 0x86);
    const unverified = await open(0, withCert('device-1', 10), 'expired', 4);
    assert.equal(((await unverified.next(2)) as ConnackPacket).reasonCode, 4);
    const plain = await open(0, v2(0x11, IPV4), 'plain');
    assert.equal(((await plain.next(2)) as ConnackPacket).reasonCode, 0x86);
    for (const c of [noCert, unverified, plain]) c.socket.destroy();
  });

  it('a connection from outside trustedProxies is closed before any header is read, and logged', async () => {
    const client = await open(1, withCert('device-1'), 'spoofer');
    await client.waitClosed();
    assert.equal(client.packets.length, 0);
    assert.equal(b.logged('not in trustedProxies').length, 1);
  });

  it('without trustedProxies the TLS facts in a header are ignored (anyone reaching the port could write them)', async () => {
    const seen: ClientInfo[] = [];
    const onConnected = (c: ClientInfo) => seen.push(c);
    broker.on('clientConnected', onConnected);
    const client = await open(2, withCert('device-1'), 'not-trusted');
    assert.equal(((await client.next(2)) as ConnackPacket).reasonCode, 0);
    assert.equal(seen[0]?.username, 'claimed-user');
    assert.equal(seen[0]?.certificateCN, undefined);
    broker.off('clientConnected', onConnected);
    client.socket.destroy();
  });
});

describe('config: trustedProxies and peerCertAsUsername on a tcp listener', () => {
  const listener = (l: Record<string, unknown>) => () => validateConfig({ listeners: [{ type: 'tcp', port: 1883, ...l }] });
  it('each mistake is one line naming the key', () => {
    assert.doesNotThrow(listener({ proxyProtocol: true, trustedProxies: ['10.0.0.0/8', '::1'], peerCertAsUsername: 'cn' }));
    assert.throws(listener({ trustedProxies: ['10.0.0.1'] }), /listeners\[0\]\.proxyProtocol: must be true for trustedProxies to apply/);
    assert.throws(listener({ proxyProtocol: true, peerCertAsUsername: 'cn' }), /listeners\[0\]\.trustedProxies: required to take the client certificate/);
    assert.throws(listener({ proxyProtocol: true, trustedProxies: ['10.0.0.1'], peerCertAsClientId: 'san' }), /listeners\[0\]\.peerCertAsClientId: must be one of "cn"/);
    assert.throws(listener({ proxyProtocol: true, trustedProxies: ['haproxy.local'] }), /listeners\[0\]\.trustedProxies\[0\]: "haproxy.local" is not an IP address/);
  });
});
