// Errors the connection and the connect attempt make from what they met: any thrown value, a
// connect timeout at a given step, bytes that are not a CONNACK, a close before CONNACK.
import type { Buffer } from 'node:buffer';
import { MqttProtocolError, PacketType } from '../protocol/index.js';
import type { ProtocolVersion } from '../protocol/index.js';
import { MqttClientError, TimeoutError, explainNetworkError, formatDuration, otherVersions } from './errors.js';
import { protocolVersionName } from './options.js';
import type { TlsOptions, TransportStage } from './transport.js';
import type { BrokerAddress } from './url.js';
import { hostPort, isSecure, isWebSocket } from './url.js';

export function toClientError(err: unknown, address: BrokerAddress, phase?: 'handshake'): MqttClientError {
  if (err instanceof MqttClientError) return err;
  if (err instanceof MqttProtocolError) return new MqttClientError('PROTOCOL_ERROR', `protocol error: ${err.message}`, { reasonCode: err.reasonCode, cause: err });
  return explainNetworkError(err, { host: address.host, port: address.port, tls: isSecure(address.scheme), webSocket: isWebSocket(address.scheme), ...(phase ? { phase } : {}) });
}

/** PUBLISH, SUBACK, ... by packet type. */
export function packetName(type: number): string {
  return Object.entries(PacketType).find(([, code]) => code === type)?.[0] ?? `a packet of type ${type}`;
}

/** "cannot encode CONNECT: ..." once, whether or not the codec's message already says so. */
export function encodeFailure(what: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.startsWith('cannot encode') ? message : `cannot encode ${what}: ${message}`;
}

/** The error for a connection attempt that did not finish in time, saying which step stalled. */
export function connectTimeoutError(phase: TransportStage | 'connack', ms: number, address: BrokerAddress): TimeoutError {
  const d = formatDuration(ms);
  const where = hostPort(address.host, address.port);
  switch (phase) {
    case 'connack':
      return new TimeoutError('CONNECT_TIMEOUT', `timed out waiting for CONNACK after ${d}`, {
        hint: 'the server accepted the connection but did not answer CONNECT: is this an MQTT port? does it speak this protocol version?',
      });
    case 'tls':
      return new TimeoutError('CONNECT_TIMEOUT', `timed out after ${d} in the TLS handshake with ${where}`, {
        hint: 'the server accepted TCP but did not complete the TLS handshake: is this a TLS port? for a plain port use mqtt:// (or ws://)',
      });
    case 'websocket':
      return new TimeoutError('CONNECT_TIMEOUT', `timed out after ${d} waiting for the WebSocket upgrade from ${where}`, {
        hint: `the server accepted the connection but did not answer the upgrade to ${address.path}: is this a WebSocket port (and path)?`,
      });
    default:
      return new TimeoutError('CONNECT_TIMEOUT', `timed out after ${d} opening the TCP connection to ${where}`, {
        hint: 'a firewall may drop the packets; check the host and port',
      });
  }
}

/** The error for bytes before CONNACK that are not MQTT: what was expected, what came, and a likely cause. */
export function notConnackError(bytes: Buffer, cause: MqttProtocolError, address: BrokerAddress): MqttClientError {
  const text = bytes.toString('latin1');
  const printable = /^[\x20-\x7e\r\n\t]{4,}/.exec(text)?.[0];
  let what: string;
  let hint: string;
  if (/^HTTP\/\d/.test(text)) {
    what = `it answered in HTTP ("${text.split(/\r?\n/)[0]!.trim()}")`;
    hint = isWebSocket(address.scheme)
      ? 'this port speaks HTTP: check the WebSocket path (usually /mqtt)'
      : `this port speaks HTTP, not MQTT: check the port, or use ws://${hostPort(address.host, address.port)}/mqtt if it serves MQTT over WebSocket`;
  } else if (bytes[0] === 0x15 || bytes[0] === 0x16) {
    what = 'it answered with TLS';
    hint = 'this looks like a TLS port: use mqtts:// (or wss://)';
  } else if (printable !== undefined) {
    what = `it sent text ("${printable.split(/\r?\n/)[0]!.trim().slice(0, 60)}")`;
    hint = 'this port does not speak MQTT: check the host and port';
  } else {
    what = `the bytes it sent are not MQTT (${cause.message})`;
    hint = 'is this an MQTT port? does it speak this protocol version?';
  }
  return new MqttClientError('PROTOCOL_ERROR', `protocol error: the server did not answer CONNECT with CONNACK: ${what}`, {
    hint,
    reasonCode: cause.reasonCode,
    cause,
  });
}

/** What a silent close before CONNACK may mean; never suggests the protocol version in use. */
export function closedBeforeConnackHint(address: BrokerAddress, version: ProtocolVersion, tls: TlsOptions | undefined): string {
  if (!isSecure(address.scheme)) {
    return `if this is a TLS port use mqtts:// (or wss://); the server may not support this protocol version (try ${otherVersions(version)})`;
  }
  // over TLS the likely cause is a client certificate the server refused after the handshake (TLS 1.3 checks it then, and may send no alert)
  return tls?.cert !== undefined
    ? `the server may not accept the client certificate (signed by a CA the server trusts? expired or revoked?), or may not support MQTT ${protocolVersionName(version)}`
    : `the server may require a client certificate (--cert / --key, the cert and key options), or may not support MQTT ${protocolVersionName(version)}`;
}
