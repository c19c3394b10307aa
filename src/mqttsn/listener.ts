// The UDP listener of the MQTT-SN gateway: a thin adapter from node:dgram (IPv4 or IPv6) to the
// sans-I/O MqttSnGateway, plus the timer that runs its tick.
import type { Buffer } from 'node:buffer';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIP, type AddressInfo } from 'node:net';
import { pino } from 'pino';
import type { BrokerCore } from '../broker/core.js';
import { publishLimiter } from '../auth/limits.js';
import type { Logger } from 'pino';
import type { ClientRateLimits } from '../auth/limits.js';
import type { ListenerAdmission } from '../auth/security.js';
import { MqttSnGateway, type GatewayOptions } from './gateway.js';

export const DEFAULT_MQTTSN_PORT = 1884;
/** How often the gateway's timers run (ms): retransmissions, keep alive, sleep, ADVERTISE. */
const TICK_MS = 100;

export interface MqttsnListenerOptions extends Omit<GatewayOptions, 'listenerName' | 'transport'> {
  type: 'mqttsn';
  host?: string;
  port?: number;
  /** Name in logs and ClientInfo.listener; default "mqttsn:<port>". */
  name?: string;
  /** Overrides the broker-wide allowAnonymous for MQTT-SN clients (MQTT-SN 1.2 has no username or password). */
  allowAnonymous?: boolean;
  /** Connected MQTT-SN clients accepted; further CONNECTs get CONNACK "rejected: congestion". */
  maxConnections?: number;
  /** New connections per second on this listener (as for TCP listeners). */
  maxConnectionRate?: number;
  maxPublishRate?: number;
  publishBurst?: number;
  maxBytesRate?: number;
  /** Where ADVERTISE goes, "address:port" (default: 255.255.255.255 on the listener's port; IPv6: ff02::1). */
  advertiseAddress?: string;
  /**
   * Receive buffer of the UDP socket (bytes, default 1 MiB; the kernel caps it at net.core.rmem_max): datagrams
   * that arrive while it is full are dropped by the kernel, so bursts from many sensors need room.
   */
  recvBufferSize?: number;
}

const DEFAULT_RECV_BUFFER = 1024 * 1024;

/** What the broker gives the listener (the shape of server/listeners.ts's ListenerContext). */
export interface MqttsnListenerContext {
  logger?: Logger;
  security?: { addListener(name: string, admission: ListenerAdmission): void; removeListener(name: string): void };
  rateLimits?: ClientRateLimits;
}

/** The running listener as the broker sees it (the shape of server/listeners.ts's RunningListener). */
export interface RunningMqttsnListener {
  readonly name: string;
  readonly type: 'mqttsn';
  readonly sockets: 'udp';
  readonly acceptHandles: number;
  /** The sans-I/O gateway behind the socket (its stats, its clients). */
  readonly gateway: MqttSnGateway;
  address(): AddressInfo;
  connections(): number;
  reload(): void;
  close(graceMs?: number): Promise<void>;
}

export async function startMqttsnListener(core: BrokerCore, options: MqttsnListenerOptions, context: MqttsnListenerContext = {}): Promise<RunningMqttsnListener> {
  const logger = context.logger ?? pino({ level: 'silent' });
  const host = options.host ?? '0.0.0.0';
  const v6 = isIP(host) === 6;
  const socket: Socket = createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port: options.port ?? DEFAULT_MQTTSN_PORT, address: host }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  try {
    socket.setRecvBufferSize(options.recvBufferSize ?? DEFAULT_RECV_BUFFER);
  } catch (err) {
    logger.warn({ error: (err as Error).message }, 'MQTT-SN listener: receive buffer size not set');
  }
  const bound = socket.address();
  const name = options.name ?? `mqttsn:${bound.port}`;
  const limit = publishLimiter({
    maxPublishRate: options.maxPublishRate ?? context.rateLimits?.maxPublishRate,
    publishBurst: options.publishBurst ?? context.rateLimits?.publishBurst,
    maxBytesRate: options.maxBytesRate ?? context.rateLimits?.maxBytesRate,
  });
  const advertise = parseAdvertiseAddress(options.advertiseAddress, v6, bound.port);
  if (advertise && !v6 && options.advertiseInterval) socket.setBroadcast(true);
  const { type: _type, host: _host, port: _port, name: _name, allowAnonymous, maxConnections, maxConnectionRate, maxPublishRate: _a, publishBurst: _b, maxBytesRate: _c, advertiseAddress: _d, recvBufferSize: _e, ...gatewayOptions } = options;
  const gateway = new MqttSnGateway(
    core,
    {
      ...gatewayOptions,
      listenerName: name,
      transport: { allowAnonymous, publishLimit: limit },
    },
    {
      send: (datagram, address, port) => {
        sending++;
        socket.send(datagram, port, address, onSent);
      },
      broadcast: advertise
        ? (datagram) => {
            sending++;
            socket.send(datagram, advertise.port, advertise.address, onSent);
          }
        : undefined,
      log: (level, fields, message) => logger[level](fields, message),
    },
  );
  /** Datagrams handed to the socket and not sent yet: close() waits for them (the DISCONNECTs of a shutdown). */
  let sending = 0;
  function onSent(err: Error | null): void {
    sending--;
    if (err) logger.debug({ listener: name, error: err.message }, 'MQTT-SN datagram not sent');
  }
  socket.on('message', (datagram: Buffer, rinfo: RemoteInfo) => {
    try {
      gateway.receive(datagram, rinfo.address, rinfo.port);
    } catch (err) {
      // A bug on one datagram must not take the broker down.
      logger.error({ listener: name, error: err instanceof Error ? err.stack : String(err) }, 'MQTT-SN datagram failed');
    }
  });
  socket.on('error', (err) => logger.error({ listener: name, error: err.message }, 'listener error'));
  const ticker = setInterval(() => {
    try {
      gateway.tick();
    } catch (err) {
      logger.error({ listener: name, error: err instanceof Error ? err.stack : String(err) }, 'MQTT-SN timer sweep failed');
    }
  }, TICK_MS);
  ticker.unref();
  context.security?.addListener(name, { connections: () => gateway.clientCount, maxConnections, maxConnectionRate });
  const running: RunningMqttsnListener = {
    name,
    type: 'mqttsn',
    sockets: 'udp',
    acceptHandles: 1,
    gateway,
    address: () => socket.address() as AddressInfo,
    connections: () => gateway.clientCount,
    reload: () => {},
    close: async () => {
      clearInterval(ticker);
      context.security?.removeListener(name);
      gateway.close();
      const deadline = Date.now() + 1000;
      while (sending > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
  return running;
}

function parseAdvertiseAddress(text: string | undefined, v6: boolean, port: number): { address: string; port: number } | undefined {
  if (text === undefined) return { address: v6 ? 'ff02::1' : '255.255.255.255', port };
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(text);
  if (!m) throw new Error(`advertiseAddress: must be "address:port" (got ${JSON.stringify(text)})`);
  return { address: m[1]!, port: Number(m[2]) };
}
