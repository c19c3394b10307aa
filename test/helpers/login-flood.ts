// Wrong-password floods over real sockets (for the login-protection tests and bench/password-flood.ts):
// `clients` connections each loop CONNECT → CONNACK or close → CONNECT again, until stopped.
import { Buffer } from 'node:buffer';
import { connect as netConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnectPacket } from '../../src/protocol/packets.js';

/** A 3.1.1 CONNECT (or 5.0 with version 5), encoded once. */
export function connectBytes(clientId: string, username: string, password: string, version: 4 | 5 = 4): Buffer {
  const p: ConnectPacket = { type: 1, protocolName: 'MQTT', protocolVersion: version, clean: true, keepAlive: 0, clientId, username, password: Buffer.from(password) } as ConnectPacket;
  return Buffer.from(encodePacket(p, version));
}

/** Sends one CONNECT; resolves with the CONNACK code (null: closed without one) and the ms it took. Closes the socket. */
export function loginOnce(port: number, bytes: Buffer, timeoutMs = 10_000, host = '127.0.0.1'): Promise<{ code: number | null; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let done = false;
    let socket: Socket | undefined = undefined;
    const finish = (code: number | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve({ code, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    let got = Buffer.alloc(0);
    socket = netConnect({ port, host }, () => socket!.write(bytes));
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      // CONNACK: 0x20, remaining length, flags, code (3.1.1 return code / 5.0 reason code).
      if (got.length >= 4 && got[0] === 0x20) finish(got[3]!);
    });
    socket.on('error', () => finish(null));
    socket.on('close', () => finish(null));
  });
}

export interface Flood {
  /** Attempts answered so far, by CONNACK code ("closed" when none). */
  readonly codes: Readonly<Record<string, number>>;
  /** Stops the loops; resolves with how many attempts were answered with each CONNACK code ("closed" when none). */
  stop(): Promise<Record<string, number>>;
}

/** Starts `clients` loops of CONNECTs with a wrong password (one user name unless `usernames` varies it). */
export function startFlood(port: number, options: { clients: number; username: string | ((i: number, n: number) => string); password?: string; version?: 4 | 5 }): Flood {
  let stopped = false;
  const codes: Record<string, number> = {};
  const loops: Promise<void>[] = [];
  for (let i = 0; i < options.clients; i++) {
    loops.push(
      (async () => {
        for (let n = 0; !stopped; n++) {
          const user = typeof options.username === 'string' ? options.username : options.username(i, n);
          const { code } = await loginOnce(port, connectBytes(`flood-${i}`, user, options.password ?? 'wrong', options.version ?? 4), 10_000);
          const key = code === null ? 'closed' : `0x${code.toString(16).padStart(2, '0')}`;
          codes[key] = (codes[key] ?? 0) + 1;
          // Refused at once (banned, busy): a real attacker loops at once too, but yield so the test's own client runs.
          await new Promise((r) => setImmediate(r));
        }
      })(),
    );
  }
  return {
    codes,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
      return codes;
    },
  };
}
