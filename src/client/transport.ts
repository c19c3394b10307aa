// Opens the byte stream under MQTT: TCP, TLS, WebSocket or secure WebSocket (subprotocol "mqtt").
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocket, createWebSocketStream } from 'ws';
import type { BrokerAddress } from './url.js';
import { formatBrokerUrl } from './url.js';

export interface TlsOptions {
  /** CA certificate(s) (PEM) to trust instead of the system store. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Client certificate (PEM) and its key, for brokers that require one. */
  cert?: string | Buffer;
  key?: string | Buffer;
  passphrase?: string;
  /** SNI and name to verify; default: the host (when it is not an IP address). */
  servername?: string;
  /** Verify the server certificate (default true). */
  rejectUnauthorized?: boolean;
  /** ALPN protocols to offer. */
  alpnProtocols?: string[];
}

export interface TransportOptions {
  tls?: TlsOptions;
  /** Extra HTTP headers for the WebSocket upgrade request. */
  wsHeaders?: Record<string, string>;
  /** Aborts a connection attempt in progress (the socket is destroyed). */
  signal?: AbortSignal;
  /** Called as the opening moves on: TCP is connected and the TLS handshake starts ('tls'), the WebSocket upgrade request is on its way ('websocket'). */
  onStage?: (stage: TransportStage) => void;
}

/** Where opening a transport is: connecting TCP, in the TLS handshake, waiting for the WebSocket upgrade. */
export type TransportStage = 'tcp' | 'tls' | 'websocket';

/** A connected stream plus what is known about it. */
export interface OpenedTransport {
  stream: Duplex;
  /** The TLS socket, for mqtts:// and wss:// (protocol, cipher, peer certificate). */
  tlsSocket?: tls.TLSSocket;
}

export function tlsConnectOptions(host: string, options: TlsOptions = {}): tls.ConnectionOptions {
  const o: tls.ConnectionOptions = {};
  if (options.ca !== undefined) o.ca = options.ca;
  if (options.cert !== undefined) o.cert = options.cert;
  if (options.key !== undefined) o.key = options.key;
  if (options.passphrase !== undefined) o.passphrase = options.passphrase;
  const servername = options.servername ?? (net.isIP(host) ? undefined : host);
  if (servername !== undefined) o.servername = servername;
  o.rejectUnauthorized = options.rejectUnauthorized ?? true;
  if (options.alpnProtocols) o.ALPNProtocols = options.alpnProtocols;
  return o;
}

/** Gives the ws library's code-less upgrade errors a code, so they can be explained: an HTTP status, a refused subprotocol. */
export function tagWebSocketError(err: Error): Error {
  const e = err as NodeJS.ErrnoException;
  if (e.code === undefined) {
    if (/^Unexpected server response/.test(e.message)) e.code = 'ERR_WS_UNEXPECTED_RESPONSE';
    else if (/subprotocol/i.test(e.message)) e.code = 'ERR_WS_SUBPROTOCOL';
  }
  return err;
}

function abortError(): Error {
  const err = new Error('connection attempt aborted');
  (err as NodeJS.ErrnoException).code = 'ABORT_ERR';
  return err;
}

/** Resolves with the stream once it is ready for MQTT bytes (TCP connected, TLS handshake done, WebSocket open). */
export function openTransport(address: BrokerAddress, options: TransportOptions = {}): Promise<OpenedTransport> {
  if (address.scheme === 'ws' || address.scheme === 'wss') return openWebSocket(address, options);
  return new Promise<OpenedTransport>((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) return reject(abortError());
    const secure = address.scheme === 'mqtts';
    const socket: net.Socket = secure
      ? tls.connect({ host: address.host, port: address.port, ...tlsConnectOptions(address.host, options.tls) })
      : net.connect({ host: address.host, port: address.port });
    const readyEvent = secure ? 'secureConnect' : 'connect';
    const onTcp = () => options.onStage?.('tls');
    if (secure) socket.once('connect', onTcp);
    const cleanup = () => {
      socket.off('connect', onTcp);
      socket.off(readyEvent, onReady);
      socket.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    const onReady = () => {
      cleanup();
      socket.setNoDelay(true);
      resolve(secure ? { stream: socket, tlsSocket: socket as tls.TLSSocket } : { stream: socket });
    };
    const onError = (err: Error) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onAbort = () => onError(abortError());
    socket.once(readyEvent, onReady);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function openWebSocket(address: BrokerAddress, options: TransportOptions): Promise<OpenedTransport> {
  return new Promise<OpenedTransport>((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) return reject(abortError());
    const secure = address.scheme === 'wss';
    const wsOptions: ConstructorParameters<typeof WebSocket>[2] = {
      headers: options.wsHeaders,
      perMessageDeflate: false,
      ...(secure ? tlsConnectOptions(address.host, options.tls) : {}),
      // follow the request's socket to tell a stalled TLS handshake from an unanswered upgrade
      finishRequest: (request) => {
        if (options.onStage) {
          request.once('socket', (socket: net.Socket) => {
            const upgrading = () => options.onStage?.('websocket');
            if (secure) {
              socket.once('connect', () => options.onStage?.('tls'));
              socket.once('secureConnect', upgrading);
            } else socket.once('connect', upgrading);
          });
        }
        request.end();
      },
    };
    let tlsSocket: tls.TLSSocket | undefined;
    const ws = new WebSocket(formatBrokerUrl(address), ['mqtt'], wsOptions);
    const cleanup = () => {
      ws.off('open', onOpen);
      ws.off('error', onError);
      ws.off('upgrade', onUpgrade);
      signal?.removeEventListener('abort', onAbort);
    };
    const onUpgrade = (res: { socket: net.Socket }) => {
      if (secure) tlsSocket = res.socket as tls.TLSSocket;
      res.socket.setNoDelay(true);
    };
    const onOpen = () => {
      cleanup();
      const stream = createWebSocketStream(ws);
      resolve(tlsSocket ? { stream, tlsSocket } : { stream });
    };
    const onError = (err: Error) => {
      cleanup();
      ws.on('error', () => {}); // a late error after terminate must not crash
      ws.terminate();
      reject(tagWebSocketError(err));
    };
    const onAbort = () => onError(abortError());
    ws.once('upgrade', onUpgrade);
    ws.once('open', onOpen);
    ws.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A stream whose writes of one tick go out together: corked on the first write, uncorked on the next tick. */
export interface CorkableOutput {
  stream: Duplex;
  corked: boolean;
}

/** Writes `buf` to `out.stream`, batching every write of the current tick into one system call. */
export function writeBatched(out: CorkableOutput, buf: Buffer): boolean {
  if (!out.corked) {
    out.corked = true;
    out.stream.cork();
    process.nextTick(() => {
      out.corked = false;
      out.stream.uncork();
    });
  }
  return out.stream.write(buf);
}

/**
 * Closes `out.stream` without losing what was written to it: writeBatched keeps the stream corked
 * until the next tick, and destroy() would discard those bytes (a DISCONNECT with its reason code,
 * section 4.13; a QoS 0 PUBLISH whose promise already resolved). Uncorks, ends, and destroys once
 * the output is flushed, or after `graceMs` when the peer does not take it.
 */
export function flushAndClose(out: CorkableOutput, graceMs = 1000): void {
  const stream = out.stream;
  if (stream.destroyed) return;
  if (out.corked) {
    out.corked = false;
    stream.uncork(); // the pending nextTick uncork then finds nothing to do
  }
  if (stream.writableEnded) {
    // already ending (end() waited for it): do not wait again
    stream.destroy();
    return;
  }
  const timer = setTimeout(() => stream.destroy(), graceMs);
  timer.unref?.();
  stream.once('finish', () => {
    clearTimeout(timer);
    stream.destroy();
  });
  stream.end();
}
