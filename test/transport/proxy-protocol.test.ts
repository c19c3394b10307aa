import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Broker } from '../../src/server/broker.js';
import type { ClientInfo } from '../../src/broker/hooks.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import { parseProxyHeader, ProxyProtocolError } from '../../src/transport/proxy-protocol.js';
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
