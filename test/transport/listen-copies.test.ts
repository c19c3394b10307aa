// Extra accepting handles on a direct TCP listener (src/transport/listen-copies.ts): copies of the listening
// socket made through a Unix socket to this same process. They must accept like the original, all close
// with the listener, and their absence (a worker thread, acceptHandles: 1) must change nothing for clients.
import assert from 'node:assert/strict';
import { createServer, connect as netConnect } from 'node:net';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { directTcp } from '../../src/transport/direct-tcp.js';
import { copyHandle } from '../../src/transport/listen-copies.js';
import { RawClient } from '../helpers/raw-client.js';
import { startLogged } from './helpers.js';

/** Resolves with the error code of a plain TCP connect to the port ("connected" when it is accepted). */
function probe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message));
  });
}

describe('accepting handles on a direct TCP listener', () => {
  it('8 by default, 1 on request; 300 clients connecting at once to each get their CONNACK; every handle closes with the listener', async () => {
    const b = await startLogged({
      listeners: [
        { type: 'tcp', host: '127.0.0.1', port: 0 },
        { type: 'tcp', host: '127.0.0.1', port: 0, acceptHandles: 1 },
        { type: 'tcp', host: '127.0.0.1', port: 0, directSockets: false },
      ],
    });
    const port = b.broker.address(0).port;
    const onePort = b.broker.address(1).port;
    try {
      assert.deepEqual(
        b.logged('listening').map((l) => [l.sockets, l.acceptHandles]),
        [
          ['direct', 8],
          ['direct', 1],
          ['net', 1],
        ],
      );
      for (const target of [port, onePort]) {
        const results = await Promise.all(Array.from({ length: 300 }, (_, i) => RawClient.connect(target, { clientId: `burst-${target}-${i}` })));
        for (const { connack, client } of results) {
          assert.equal(connack.reasonCode, 0);
          client.destroy();
        }
      }
    } finally {
      await b.broker.close();
    }
    // A copy left open would keep the socket listening: the kernel would still complete the handshake.
    assert.equal(await probe(port), 'ECONNREFUSED');
    assert.equal(await probe(onePort), 'ECONNREFUSED');
  });

  it('an IPv6 listener (::1) gets its 8 handles too, and clients connect over IPv6', async (t) => {
    const available = await new Promise<boolean>((resolve) => {
      const probeServer = createServer().listen(0, '::1', () => probeServer.close(() => resolve(true)));
      probeServer.on('error', () => resolve(false));
    });
    if (!available) {
      t.skip('no IPv6 loopback (::1) on this machine');
      return;
    }
    const b = await startLogged({ listeners: [{ type: 'tcp', host: '::1', port: 0 }] });
    try {
      const [line] = b.logged('listening');
      assert.deepEqual([line!.sockets, line!.acceptHandles, line!.host], ['direct', 8, '::1']);
      const port = b.broker.address(0).port;
      const socket = netConnect({ host: '::1', port });
      const connack = await new Promise<Buffer>((resolve, reject) => {
        socket.once('error', reject);
        socket.once('data', resolve);
        // CONNECT, MQTT 3.1.1, clean session, keep alive 0, client id "v6"
        socket.write(Buffer.from([0x10, 14, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0, 0, 2, 0x76, 0x36]));
      });
      socket.destroy();
      assert.deepEqual([...connack], [0x20, 2, 0, 0]);
      const connected = b.logged('client connected').find((l) => l.clientId === 'v6');
      assert.match(String(connected?.address), /^\[::1\]:\d+$/);
    } finally {
      await b.broker.close();
    }
  });

  it('a copy accepts on the original socket after the original handle is closed', async () => {
    const b = directTcp()!;
    const original = new b.TCP(b.serverType);
    assert.equal(original.bind('127.0.0.1', 0), 0);
    assert.equal(original.listen(16), 0);
    const address: { port?: number } = {};
    original.getsockname(address);
    const [copy, ...more] = await copyHandle(original, 1);
    assert.ok(copy, 'one copy');
    assert.equal(more.length, 0);
    await new Promise<void>((resolve) => original.close(resolve));
    const accepted = new Promise<number>((resolve) => {
      copy.onconnection = (status, client) => {
        client?.close();
        resolve(status);
      };
    });
    assert.equal(copy.listen(16), 0);
    assert.equal(await probe(address.port!), 'connected');
    assert.equal(await accepted, 0);
    await new Promise<void>((resolve) => copy.close(resolve));
    assert.equal(await probe(address.port!), 'ECONNREFUSED');
  });

  it('in a worker thread no copies are made (the listener keeps its one handle)', async () => {
    const moduleUrl = new URL('../../src/transport/listen-copies.js', import.meta.url).href;
    const directUrl = new URL('../../src/transport/direct-tcp.js', import.meta.url).href;
    const code = `
      const { parentPort } = require('node:worker_threads');
      (async () => {
        const { copyHandle } = await import(${JSON.stringify(moduleUrl)});
        const { directTcp } = await import(${JSON.stringify(directUrl)});
        const b = directTcp();
        const h = new b.TCP(b.serverType);
        h.bind('127.0.0.1', 0);
        h.listen(16);
        const copies = await copyHandle(h, 3);
        h.close();
        parentPort.postMessage(copies.length);
      })();`;
    const worker = new Worker(code, { eval: true });
    const count = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.equal(count, 0);
  });
});
