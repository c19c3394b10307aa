// The authenticate hook: exceptions and timeouts refuse the connection (0x80 / 3.1.1: 0x03), never crash.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnackPacket } from '../../src/protocol/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { connect, end, startLogged } from '../transport/helpers.js';

describe('authenticate hook failures', () => {
  it('a throwing, rejecting or slow hook refuses with 0x80 (5.0) / 3 (3.1.1), and the broker keeps serving', async () => {
    const { broker, logged } = await startLogged({
      listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }],
      hookTimeout: 100,
      authenticate: (req) => {
        if (req.username === 'throws') throw new Error('boom');
        if (req.username === 'rejects') return Promise.reject(new Error('backend down'));
        if (req.username === 'hangs') return new Promise<boolean>(() => {});
        return Promise.resolve(req.username === 'ok');
      },
    });
    try {
      const port = broker.address().port;
      const codes: number[] = [];
      for (const [username, protocolVersion] of [
        ['throws', 5],
        ['rejects', 5],
        ['hangs', 5],
        ['throws', 4],
        ['hangs', 4],
      ] as const) {
        const { client, connack } = await RawClient.connect(port, { protocolVersion, clientId: username, username });
        codes.push((connack as ConnackPacket).reasonCode);
        client.destroy();
      }
      assert.deepEqual(codes, [0x80, 0x80, 0x80, 3, 3]);
      assert.equal(logged('authentication failed').length, 5);
      const c = await connect(`mqtt://127.0.0.1:${port}`, { username: 'ok' });
      await end(c);
    } finally {
      await broker.close();
    }
  });
});
