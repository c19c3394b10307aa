// The garbage side of test/chaos/garbage-connections.test.ts, run in a child process so that the broker under
// test keeps its event loop to itself: `node garbage-peer.js --run '{"tcp":port,"ws":port,"count":N,...}'`
// prints the kinds it tried as JSON. Seeded: the same connections on every run.
import { Buffer } from 'node:buffer';
import { connect as netConnect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { encodePacket } from '../../src/protocol/encoder.js';
import { seededRandom } from '../helpers/seeded.js';

export type Kind = 'random' | 'half-connect' | 'tls-hello' | 'http-on-mqtt' | 'ws-bad-http' | 'ws-bad-upgrade' | 'ws-garbage-frames' | 'ws-half-headers';
export const TCP_KINDS: Kind[] = ['random', 'half-connect', 'tls-hello', 'http-on-mqtt'];
export const WS_KINDS: Kind[] = ['ws-bad-http', 'ws-bad-upgrade', 'ws-garbage-frames', 'ws-half-headers', 'random'];

const bytes = (random: () => number, n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
const CONNECT = Buffer.from(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 30, clientId: 'half', username: 'u', password: Buffer.from('p') }, 4));
const upgrade = (key: string, version = '13') => `GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: ${version}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`;

/** What a garbage connection sends first, and (WebSocket) after the server's answer. */
function garbage(kind: Kind, random: () => number): { first: Buffer; then?: Buffer } {
  switch (kind) {
    case 'random':
      return { first: bytes(random, 1 + Math.floor(random() * 300)) };
    case 'half-connect':
      return { first: CONNECT.subarray(0, 1 + Math.floor(random() * (CONNECT.length - 1))) };
    case 'tls-hello': {
      // A TLS record header (handshake, TLS 1.0) and a ClientHello start: 0x16 reads as a CONNECT with bad flags.
      const body = bytes(random, 40 + Math.floor(random() * 200));
      return { first: Buffer.concat([Buffer.from([0x16, 0x03, 0x01, body.length >> 8, body.length & 0xff, 0x01]), body]) };
    }
    case 'http-on-mqtt':
      return { first: Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n') };
    case 'ws-bad-http':
      return { first: Buffer.concat([Buffer.from(['GET', 'POST', 'BREW', '\x00\x01'][Math.floor(random() * 4)]!), bytes(random, Math.floor(random() * 100)), Buffer.from('\r\n\r\n')]) };
    case 'ws-bad-upgrade':
      return { first: Buffer.from(random() < 0.5 ? upgrade('not base64 at all') : upgrade('dGhlIHNhbXBsZSBub25jZQ==', '8')) };
    case 'ws-garbage-frames': {
      // A good upgrade, then frames no client may send: unmasked, reserved opcodes, lying lengths, or a masked
      // binary frame that carries garbage instead of MQTT.
      const payload = bytes(random, 1 + Math.floor(random() * 120));
      const mask = bytes(random, 4);
      const masked = Buffer.concat([Buffer.from([0x82, 0x80 | Math.min(payload.length, 125)]), mask, payload.subarray(0, 125)]);
      const frames = [bytes(random, 1 + Math.floor(random() * 60)), masked, Buffer.from([0x8b, 0x80, 1, 2, 3, 4]), Buffer.from([0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])];
      return { first: Buffer.from(upgrade('dGhlIHNhbXBsZSBub25jZQ==')), then: frames[Math.floor(random() * frames.length)] };
    }
    case 'ws-half-headers':
      return { first: Buffer.from(upgrade('dGhlIHNhbXBsZSBub25jZQ==').slice(0, 10 + Math.floor(random() * 100))) };
  }
}

/** One garbage connection: send, wait a little for the broker's close, then leave by FIN or by reset. */
function oneGarbage(port: number, kind: Kind, random: () => number): Promise<void> {
  const { first, then } = garbage(kind, random);
  const wait = Math.floor(random() * 60);
  const reset = random() < 0.5;
  return new Promise((resolve) => {
    const socket: Socket = netConnect({ port, host: '127.0.0.1' });
    let answered = false;
    const finish = () => {
      clearTimeout(timer);
      if (!socket.destroyed) {
        if (reset) socket.resetAndDestroy();
        else socket.end();
      }
      socket.destroySoon?.();
    };
    const timer = setTimeout(finish, 20 + wait);
    socket.on('connect', () => socket.write(first));
    socket.on('data', () => {
      if (then !== undefined && !answered) {
        answered = true;
        socket.write(then);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Runs `count` garbage connections, `concurrency` at a time, alternating listeners as given. */
export async function garbageRun(ports: { tcp: number; ws: number }, count: number, concurrency: number, seed: number, seen: Map<Kind, number>): Promise<void> {
  const random = seededRandom(seed);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const ws = i % 10 < 3;
        const kinds = ws ? WS_KINDS : TCP_KINDS;
        const kind = kinds[Math.floor(random() * kinds.length)]!;
        seen.set(kind, (seen.get(kind) ?? 0) + 1);
        await oneGarbage(ws ? ports.ws : ports.tcp, kind, random);
      }
    }),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--run') {
  const o = JSON.parse(process.argv[3]!) as { tcp: number; ws: number; count: number; concurrency: number; seed: number };
  const seen = new Map<Kind, number>();
  await garbageRun({ tcp: o.tcp, ws: o.ws }, o.count, o.concurrency, o.seed, seen);
  process.stdout.write(JSON.stringify(Object.fromEntries(seen)) + '\n');
}
