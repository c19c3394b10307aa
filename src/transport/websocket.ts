// MQTT over WebSocket (ws library): binary frames carry the MQTT byte stream, so packets may be
// split across frames or share one. Writes are batched into one frame per event-loop turn.
import { Buffer } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { transportInfo, type Channel, type TransportInfo } from '../broker/channel.js';
import type { BrokerCore } from '../broker/core.js';
import { formatAddress } from '../util/address.js';
import { BatchedOutput, GRACEFUL_CLOSE_MS } from './batched-output.js';
import type { TransportInit } from './stream.js';

/** Subprotocols accepted, in order of preference ("mqttv3.1" is what 3.1 clients offer). */
export const MQTT_SUBPROTOCOLS = ['mqtt', 'mqttv3.1'];

class WebSocketOutput extends BatchedOutput {
  constructor(
    private readonly ws: WebSocket,
    private readonly core: BrokerCore,
    maxBytesRate?: number,
  ) {
    super(maxBytesRate);
  }

  pauseReading(): void {
    this.ws.pause();
  }

  resumeReading(): void {
    this.ws.resume();
  }

  protected writable(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  protected transmit(data: Buffer): void {
    this.ws.send(data, { binary: true }, this.onSent);
  }

  /** ws has no 'drain' event: a send callback tells when the bytes left, so queued messages can move. */
  private readonly onSent = (): void => {
    if (!this.closing && this.channel && this.ws.bufferedAmount === 0) this.channel.outputDrained();
  };

  protected transportBuffered(): number {
    return this.ws.bufferedAmount;
  }

  protected closeTransport(): void {
    // 1001 "going away" when the server shuts down, else 1000; the close handshake gets GRACEFUL_CLOSE_MS.
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(this.core.closing ? 1001 : 1000);
    setTimeout(() => this.ws.terminate(), GRACEFUL_CLOSE_MS).unref();
  }
}

/** Wires an open WebSocket to a new channel of `core`. */
export function attachWebSocket(core: BrokerCore, ws: WebSocket, info: TransportInfo, maxBytesRate?: number): Channel {
  const output = new WebSocketOutput(ws, core, maxBytesRate);
  const channel = core.openChannel(output, info);
  output.channel = channel;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) {
      // [MQTT-6.0.0-1] MQTT control packets travel in binary frames only.
      ws.close(1003, 'MQTT needs binary frames');
      channel.transportClosed(new Error('text frame received'));
      return;
    }
    output.feed(data);
  });
  ws.on('error', (err) => channel.transportClosed(err));
  ws.on('close', () => {
    output.endInput();
    channel.transportClosed();
  });
  return channel;
}

/** A listener `path` that accepts upgrades on any URL path (Mosquitto's behaviour). */
export const ANY_PATH = '*';

export interface WebSocketEndpointOptions {
  /** URL path of the endpoint; "*" accepts every path, as Mosquitto does. */
  path: string;
  maxPayload: number;
  /** Transport info for an upgraded request (address, listener name, certificate...). */
  info(req: IncomingMessage): TransportInit;
  maxBytesRate?: number;
}

/** The `upgrade` handler of an HTTP(S) server: path and subprotocol checks, then a channel per WebSocket. */
export function webSocketEndpoint(core: BrokerCore, options: WebSocketEndpointOptions) {
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    maxPayload: options.maxPayload,
    handleProtocols: (offered) => MQTT_SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  const reject = (socket: Duplex, status: string, text: string) => {
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  };
  return {
    wss,
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      socket.on('error', () => {});
      const path = (req.url ?? '/').split('?')[0];
      if (path !== options.path && options.path !== ANY_PATH) {
        reject(socket, '404 Not Found', `no MQTT endpoint at ${path}; use ${options.path}\n`);
        return;
      }
      const header = req.headers['sec-websocket-protocol'];
      const offered = header ? header.split(',').map((p) => p.trim()) : [];
      if (offered.length && !offered.some((p) => MQTT_SUBPROTOCOLS.includes(p))) {
        reject(socket, '400 Bad Request', `unsupported WebSocket subprotocol ${JSON.stringify(header)}; use "mqtt"\n`);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const init = options.info(req);
        const transport = transportInfo(init, init.remoteAddress ?? formatAddress(req.socket.remoteAddress ?? '?', req.socket.remotePort ?? '?'));
        attachWebSocket(core, ws, transport, options.maxBytesRate);
      });
    },
  };
}
