// Listeners: one per configured endpoint (tcp, tls, ws, wss), each turning accepted connections
// into channels, with its own admission limits and per-client rate limits.
import type { Buffer } from 'node:buffer';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, isIP, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { pino, type Logger } from 'pino';
import type { BrokerCore } from '../broker/core.js';
import { publishLimiter, type ClientRateLimits } from '../auth/limits.js';
import type { Security } from '../auth/security.js';
import { attachDirect, directTcp, DirectTcpServer, uvError, type TcpHandle } from '../transport/direct-tcp.js';
import { readProxyHeader } from '../transport/proxy-protocol.js';
import { proxiedTlsFields, type ProxiedTlsSettings } from '../transport/proxy-tls.js';
import { AddressSet, ipOf } from '../util/address.js';
import { attachSocket, socketAddress, type TransportInit } from '../transport/stream.js';
import { certificateIdentity, identityFields, plainClientOnTlsPort, refusedClient, TlsContexts, verifyClient, type TlsListenerSettings } from '../transport/tls.js';
import { ANY_PATH, webSocketEndpoint } from '../transport/websocket.js';
import { startMqttsnListener, type MqttsnListenerOptions } from '../mqttsn/listener.js';

/** Pending connections the kernel may queue per listener before accept(). */
const LISTEN_BACKLOG = 8192;
/**
 * Handles on each direct TCP listening socket: libuv accepts one connection per handle per loop turn, so
 * 8 accept up to 8 per turn (conn-19k5: +12 to +23 % connections/s against 1 handle; 16 gave no more within noise).
 */
const DEFAULT_ACCEPT_HANDLES = 8;

export type ListenerType = 'tcp' | 'tls' | 'ws' | 'wss' | 'mqttsn';

/** Port of each listener type when none is given. */
export const DEFAULT_PORTS: Record<ListenerType, number> = { tcp: 1883, tls: 8883, ws: 8083, wss: 8084, mqttsn: 1884 };
export const DEFAULT_WS_PATH = '/mqtt';

interface CommonListenerOptions extends ClientRateLimits {
  host?: string;
  port?: number;
  /** Name in logs and ClientInfo.listener; default "<type>:<port>". */
  name?: string;
  /** Overrides the broker-wide allowAnonymous for this listener. */
  allowAnonymous?: boolean;
  /** Open connections accepted; the next CONNECT gets CONNACK 0x97 (Quota exceeded). */
  maxConnections?: number;
  /** New connections per second; above it CONNACK 0x9F (Connection rate exceeded). */
  maxConnectionRate?: number;
}

export interface TcpListenerOptions extends CommonListenerOptions, ProxiedTlsSettings {
  type: 'tcp';
  /** Expect a PROXY protocol v1/v2 header on every connection (behind a load balancer). */
  proxyProtocol?: boolean;
  /**
   * With proxyProtocol: the proxies' addresses / CIDR blocks. Connections from anywhere else are closed, and
   * the client TLS facts in their PROXY v2 headers are believed (secure, client certificate CN for
   * peerCertAsUsername / peerCertAsClientId and certCN ACL rules).
   */
  trustedProxies?: string[];
  /**
   * Drive libuv's TCP handles directly instead of net.Socket (default true; 1.5-2x the connection rate
   * and about half the memory per connection). Falls back to node:net where Node.js lacks the bindings,
   * with proxyProtocol, and when host is a name rather than an IP address.
   */
  directSockets?: boolean;
  /**
   * libuv handles on the listening socket, each accepting one connection per event-loop turn (default 8;
   * 1 = one handle, as node:net). Direct sockets only; fewer where this process cannot make the copies.
   */
  acceptHandles?: number;
}
export interface TlsListenerOptions extends CommonListenerOptions, TlsListenerSettings {
  type: 'tls';
}
export interface WsListenerOptions extends CommonListenerOptions {
  type: 'ws';
  /** URL path of the MQTT endpoint (default "/mqtt"; "*": any path, as Mosquitto). */
  path?: string;
}
export interface WssListenerOptions extends CommonListenerOptions, TlsListenerSettings {
  type: 'wss';
  path?: string;
}
export type ListenerOptions = TcpListenerOptions | TlsListenerOptions | WsListenerOptions | WssListenerOptions | MqttsnListenerOptions;

/** The trusted proxies of a tcp listener; throws on settings that need them or a PROXY header and lack them. */
function proxyTrust(o: TcpListenerOptions): AddressSet | undefined {
  if (o.trustedProxies !== undefined && o.proxyProtocol !== true) throw new Error('trustedProxies: needs proxyProtocol: true');
  for (const key of ['peerCertAsUsername', 'peerCertAsClientId'] as const) {
    if (o[key] === undefined) continue;
    if (o[key] !== 'cn') throw new Error(`${key}: must be "cn" on a tcp listener (a PROXY header carries the certificate's CN only)`);
    if (!o.trustedProxies?.length) throw new Error(`${key}: needs proxyProtocol and trustedProxies (only a trusted proxy's word on the client certificate counts)`);
  }
  if (!o.trustedProxies?.length) return undefined;
  try {
    return new AddressSet(o.trustedProxies);
  } catch (err) {
    throw new Error(`trustedProxies: ${(err as Error).message}`);
  }
}

/** What the broker gives every listener. */
export interface ListenerContext {
  logger?: Logger;
  /** Admission limits (max connections, connection rate) are enforced through it. */
  security?: Security;
  /** Broker-wide per-client rate limits; a listener's own settings win. */
  rateLimits?: ClientRateLimits;
}

export interface RunningListener {
  readonly name: string;
  readonly type: ListenerType | 'http';
  /** What carries the connections: libuv handles driven directly, or node:net sockets (tls, ws, fallbacks), or UDP (mqttsn). */
  readonly sockets: 'direct' | 'net' | 'udp';
  /** Handles accepting on the listening socket (1 for node:net servers). */
  readonly acceptHandles: number;
  address(): AddressInfo;
  /** Open connections. */
  connections(): number;
  /** Re-reads TLS certificates (tls, wss). */
  reload(): void;
  /**
   * Stops accepting, waits up to `graceMs` for its connections to close by themselves (those the broker is
   * ending after their queued output), then destroys what is left.
   */
  close(graceMs?: number): Promise<void>;
}

export async function startListener(core: BrokerCore, options: ListenerOptions, context: ListenerContext = {}): Promise<RunningListener> {
  if (options.type === 'mqttsn') return startMqttsnListener(core, options, context);
  const logger = context.logger ?? pino({ level: 'silent' });
  const type: ListenerType = options.type ?? 'tcp';
  /** Open connections: net sockets, or DirectTcpOutputs. */
  const sockets = new Set<{ destroy(): void }>();
  let name = options.name ?? '';
  const limits: ClientRateLimits = {
    maxPublishRate: options.maxPublishRate ?? context.rateLimits?.maxPublishRate,
    publishBurst: options.publishBurst ?? context.rateLimits?.publishBurst,
    maxBytesRate: options.maxBytesRate ?? context.rateLimits?.maxBytesRate,
  };
  const secure = type === 'tls' || type === 'wss';
  const tlsSettings = secure ? (options as TlsListenerSettings) : undefined;
  const contexts = tlsSettings ? new TlsContexts(tlsSettings, logger, () => name) : undefined;

  const baseInfo = (): TransportInit => {
    const info: TransportInit = { listener: name, secure };
    if (options.allowAnonymous !== undefined) info.allowAnonymous = options.allowAnonymous;
    const limit = publishLimiter(limits);
    if (limit) info.publishLimit = limit;
    return info;
  };
  const tlsInfo = (socket: TLSSocket): TransportInit => {
    const info = baseInfo();
    const identity = certificateIdentity(socket);
    if (identity && tlsSettings?.requestCert) {
      info.certificate = identity;
      Object.assign(info, identityFields(identity, tlsSettings));
    }
    return info;
  };
  // Sockets far beyond maxConnections are cut at once; those just above it get CONNACK 0x97.
  const hardCap = options.maxConnections !== undefined ? options.maxConnections * 2 + 16 : Infinity;
  // One handler for every socket of this listener (`this` is the socket), not a closure per connection.
  function untrack(this: Socket): void {
    sockets.delete(this);
  }
  /** Counts the socket as open; `untrackOnClose` false when attachSocket (given `tracker: sockets`) does it. */
  const track = (socket: Socket, untrackOnClose = true): boolean => {
    if (sockets.size >= hardCap) {
      socket.destroy();
      return false;
    }
    sockets.add(socket);
    if (untrackOnClose) socket.on('close', untrack);
    return true;
  };
  /** Mutual TLS: refuse (and log why) a client whose certificate is missing or not trusted. */
  const checkClient = (socket: TLSSocket): boolean => {
    const why = verifyClient(socket, tlsSettings!);
    if (!why) return true;
    logger.warn({ listener: name, address: socketAddress(socket), reason: why }, 'TLS client refused');
    socket.destroy();
    return false;
  };
  // a client without TLS on this port: said in words at info, one line per 10 s (how many more in between)
  let plainLogged = Number.NEGATIVE_INFINITY;
  let plainSince = 0;
  const logTlsError = (err: Error & { code?: string }, socket: TLSSocket) => {
    const address = socket.remoteAddress ? socketAddress(socket) : undefined;
    const why = refusedClient(err, socket, tlsSettings!);
    const plain = why ? undefined : plainClientOnTlsPort(err);
    if (why) logger.warn({ listener: name, address, reason: why }, 'TLS client refused');
    else if (plain) {
      const now = Date.now();
      if (now - plainLogged >= 10_000) {
        logger.info({ listener: name, address, error: err.code, ...(plainSince > 0 ? { moreSinceLastLine: plainSince } : {}) }, plain);
        plainLogged = now;
        plainSince = 0;
      } else plainSince++;
    } else logger.warn({ listener: name, address, error: err.code ?? err.message }, 'TLS handshake failed');
    // Node.js reports a handshake timeout here but leaves the connection open: close it.
    socket.destroy();
  };

  const host = options.host ?? '0.0.0.0';
  const port = options.port ?? DEFAULT_PORTS[type];
  const tcpOptions = options as TcpListenerOptions;
  const trusted = type === 'tcp' ? proxyTrust(tcpOptions) : undefined;
  if (type === 'tcp' && !tcpOptions.proxyProtocol && tcpOptions.directSockets !== false && isIP(host) !== 0 && directTcp()) {
    const onHandle = (handle: TcpHandle | undefined, status: number): void => {
      if (status !== 0 || !handle) {
        logger.error({ listener: name, error: uvError(status, 'accept').message }, 'listener error');
      } else if (sockets.size >= hardCap) {
        handle.close();
      } else {
        attachDirect(core, handle, baseInfo(), limits.maxBytesRate, sockets);
      }
    };
    const direct = new DirectTcpServer(host, port, isIP(host) === 6, LISTEN_BACKLOG, onHandle);
    const handles = 1 + (await direct.addAcceptHandles((tcpOptions.acceptHandles ?? DEFAULT_ACCEPT_HANDLES) - 1));
    return running('direct', handles, () => direct.address(), (done) => direct.close(done));
  }

  let server: Server;
  switch (type) {
    case 'tcp': {
      const proxy = tcpOptions.proxyProtocol === true;
      server = createServer((socket) => {
        if (!track(socket, proxy)) return;
        if (!proxy) {
          attachSocket(core, socket, baseInfo(), { maxBytesRate: limits.maxBytesRate, tracker: sockets });
          return;
        }
        socket.on('error', () => {});
        if (trusted && !trusted.has(ipOf(socket.remoteAddress ?? ''))) {
          logger.warn({ listener: name, address: socketAddress(socket) }, 'connection from an address not in trustedProxies; closed');
          socket.destroy();
          return;
        }
        readProxyHeader(socket, core.limits.connectTimeout).then(
          (header) => {
            const info = baseInfo();
            if (header.remoteAddress) info.remoteAddress = header.remoteAddress;
            if (trusted) Object.assign(info, proxiedTlsFields(header.tls, tcpOptions));
            attachSocket(core, socket, info, { head: header.rest, maxBytesRate: limits.maxBytesRate });
          },
          (err: Error) => {
            logger.warn({ listener: name, address: socketAddress(socket), error: err.message }, 'PROXY protocol header missing or invalid; connection closed');
            socket.destroy();
          },
        );
      });
      break;
    }
    case 'tls': {
      const tlsServer = createTlsServer({ ...contexts!.serverOptions(), handshakeTimeout: core.limits.connectTimeout }, (socket) => {
        if (!checkClient(socket)) return;
        attachSocket(core, socket, tlsInfo(socket), { maxBytesRate: limits.maxBytesRate });
      });
      tlsServer.on('connection', (raw: Socket) => track(raw));
      tlsServer.on('tlsClientError', logTlsError);
      contexts!.watch((o) => tlsServer.setSecureContext(o));
      server = tlsServer;
      break;
    }
    case 'ws':
    case 'wss': {
      const o = options as WsListenerOptions | WssListenerOptions;
      const http: HttpServer = type === 'wss' ? createHttpsServer({ ...contexts!.serverOptions(), handshakeTimeout: core.limits.connectTimeout }) : createHttpServer();
      const endpoint = webSocketEndpoint(core, {
        path: o.path ?? DEFAULT_WS_PATH,
        // A frame may carry several packets [MQTT-6.0.0-2]: the decoder limits each packet to maxPacketSize
        // (0x95); a frame may exceed it by a bounded 1 MiB, so memory per frame stays bounded too.
        maxPayload: Math.min(core.limits.maxPacketSize + 1024 * 1024, 2 ** 31 - 1),
        maxBytesRate: limits.maxBytesRate,
        info: (req: IncomingMessage) => (type === 'wss' ? tlsInfo(req.socket as TLSSocket) : baseInfo()),
      });
      // Until its WebSocket upgrade, a connection has connectTimeout, as on TCP: a client that sends nothing or
      // half an HTTP request is cut then, not after Node.js's own HTTP timeouts (a minute and more).
      const beforeUpgrade = new WeakMap<Duplex, NodeJS.Timeout>();
      const armConnectTimeout = (socket: Socket) => {
        const timer = setTimeout(() => socket.destroy(), core.limits.connectTimeout);
        beforeUpgrade.set(socket, timer);
        socket.once('close', () => clearTimeout(timer));
      };
      http.on('connection', (raw: Socket) => {
        track(raw);
        if (type === 'ws') armConnectTimeout(raw);
      });
      http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        clearTimeout(beforeUpgrade.get(socket));
        endpoint.upgrade(req, socket, head);
      });
      http.on('request', (_req, res) => {
        res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket', Connection: 'close' });
        res.end(`MQTT over WebSocket: connect a WebSocket client (subprotocol "mqtt") ${o.path === ANY_PATH ? 'on any path' : `to ${o.path ?? DEFAULT_WS_PATH}`}\n`);
      });
      if (type === 'wss') {
        const https = http as unknown as import('node:tls').Server;
        https.on('secureConnection', (socket: TLSSocket) => {
          // The handshake had its own timeout; the HTTP request that follows gets connectTimeout too.
          if (checkClient(socket)) armConnectTimeout(socket);
        });
        https.on('tlsClientError', logTlsError);
        contexts!.watch((c) => https.setSecureContext(c));
      }
      server = http;
      break;
    }
    default:
      throw new Error(`unknown listener type ${JSON.stringify(type)}`);
  }

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // A deep accept queue: bursts of thousands of connections must not overflow Node's default 511
      // (the kernel caps it at net.core.somaxconn).
      server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    contexts?.close();
    throw err;
  }
  server.on('error', (err) => logger.error({ listener: name, error: err.message }, 'listener error'));
  return running('net', 1, () => server.address() as AddressInfo, (done) => server.close(() => done()));

  /** The listener as the broker sees it, over either server (net or direct). */
  function running(layer: 'direct' | 'net', acceptHandles: number, address: () => AddressInfo, closeServer: (done: () => void) => void): RunningListener {
    name ||= `${type}:${address().port}`;
    context.security?.addListener(name, {
      connections: () => sockets.size,
      maxConnections: options.maxConnections,
      maxConnectionRate: options.maxConnectionRate,
    });
    return {
      name,
      type,
      sockets: layer,
      acceptHandles,
      address,
      connections: () => sockets.size,
      reload: () => {
        contexts?.reload();
      },
      close: async (graceMs = 0) => {
        contexts?.close();
        context.security?.removeListener(name);
        const closed = new Promise<void>((resolve) => closeServer(resolve));
        const deadline = Date.now() + graceMs;
        while (sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        for (const socket of sockets) socket.destroy();
        await closed;
      },
    };
  }
}
