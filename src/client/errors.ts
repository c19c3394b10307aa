// Client errors: every failure carries a stable `code` and a message that says, in words, what
// went wrong and (in `hint`) what to do about it.
import { connackReturnCodeName, reasonName, v3ConnackToV5 } from '../protocol/index.js';
import type { ProtocolVersion } from '../protocol/index.js';
import { hostPort } from './url.js';

export type ClientErrorCode =
  // network, DNS, TLS, WebSocket: the Node.js / OpenSSL code is kept (ECONNREFUSED, ENOTFOUND, ...)
  | string
  | 'CONNECT_TIMEOUT'
  | 'KEEPALIVE_TIMEOUT'
  | 'PING_TIMEOUT'
  | 'CONNACK_REFUSED'
  | 'SERVER_DISCONNECT'
  | 'CONNECTION_CLOSED'
  | 'PROTOCOL_ERROR'
  | 'REASON_CODE'
  | 'CLIENT_CLOSED'
  | 'OFFLINE'
  | 'OFFLINE_QUEUE_FULL'
  | 'OPERATION_TIMEOUT'
  | 'ABORTED'
  | 'UNSTABLE_CONNECTION'
  | 'INVALID_ARGUMENT';

/** Base class of every error the client reports. */
export class MqttClientError extends Error {
  override name = 'MqttClientError';
  /** Stable code: a Node.js system / TLS code (ECONNREFUSED, ENOTFOUND, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...) or one of ClientErrorCode. */
  readonly code: ClientErrorCode;
  /** What to try next, when there is something to suggest. */
  readonly hint?: string;
  /** MQTT reason code (5.0) or CONNACK return code (3.1.x) when the server sent one. */
  readonly reasonCode?: number;
  /** Reason String the server sent (5.0). */
  readonly reasonString?: string;

  constructor(code: ClientErrorCode, message: string, extra: { hint?: string; reasonCode?: number; reasonString?: string; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.code = code;
    if (extra.hint !== undefined) this.hint = extra.hint;
    if (extra.reasonCode !== undefined) this.reasonCode = extra.reasonCode;
    if (extra.reasonString !== undefined) this.reasonString = extra.reasonString;
  }

  /** Message and hint on one or two lines, for a terminal. */
  describe(): string {
    return this.hint === undefined ? this.message : `${this.message}\n  hint: ${this.hint}`;
  }
}

/** The network connection could not be opened: DNS, TCP, TLS or WebSocket upgrade. */
export class ConnectionError extends MqttClientError {
  override name = 'ConnectionError';
  /** The step that failed. */
  readonly step: 'dns' | 'tcp' | 'tls' | 'websocket' | 'mqtt';
  constructor(code: string, step: ConnectionError['step'], message: string, extra: { hint?: string; cause?: unknown } = {}) {
    super(code, message, extra);
    this.step = step;
  }
}

/** No CONNACK (or no PINGRESP) in time. */
export class TimeoutError extends MqttClientError {
  override name = 'TimeoutError';
}

/** The server answered CONNECT with a failure reason / return code. */
export class ConnackError extends MqttClientError {
  override name = 'ConnackError';
  declare readonly reasonCode: number;
}

/** The server sent DISCONNECT (5.0) or closed the connection. */
export class DisconnectError extends MqttClientError {
  override name = 'DisconnectError';
}

/** A PUBACK / PUBREC / PUBCOMP / SUBACK / UNSUBACK carried a failure reason code. */
export class ReasonCodeError extends MqttClientError {
  override name = 'ReasonCodeError';
  declare readonly reasonCode: number;
}

/** The operation could not complete because the client was closed (end() / destroy()) or its queue is full. */
export class ClientClosedError extends MqttClientError {
  override name = 'ClientClosedError';
}

/** Formats milliseconds for messages: 30000 → "30 s", 250 → "250 ms", 1500 → "1.5 s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  return `${Number((ms / 1000).toFixed(3))} s`;
}

interface Target {
  host: string;
  port: number;
  tls?: boolean;
  webSocket?: boolean;
  /** 'handshake' while the transport opens (before MQTT bytes flow). */
  phase?: 'handshake' | 'mqtt';
}

const UNKNOWN_CA_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
]);

/**
 * Turns an error from net / tls / dns / ws into a ConnectionError that says what happened in
 * words. Errors that already are MqttClientError are returned as they are.
 */
export function explainNetworkError(err: unknown, target: Target): MqttClientError {
  if (err instanceof MqttClientError) return err;
  const e = err as NodeJS.ErrnoException & { reason?: string; host?: string; hostname?: string; cert?: { subjectaltname?: string; subject?: { CN?: string | string[] } } };
  const raw = e?.message ?? String(err);
  // a TLS alert met while writing (the WebSocket upgrade request) comes as EPROTO with OpenSSL's text: use the code Node.js gives it when reading
  const ssl = opensslReason(raw);
  const code = typeof e?.code === 'string' && !(e.code === 'EPROTO' && ssl) ? e.code : ssl ? `ERR_SSL_${ssl.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}` : 'ECONNECTION';
  const where = hostPort(target.host, target.port);
  // the client's own certificate, key or passphrase is wrong: no connection can help, say which option
  const local = LOCAL_TLS_ERRORS[code];
  if (local) return new MqttClientError('INVALID_ARGUMENT', `TLS: ${local[0]} (${code})`, { hint: local[1], cause: err });
  const mk = (step: ConnectionError['step'], message: string, hint?: string) =>
    new ConnectionError(code, step, `${message} (${code})`, { hint, cause: err });
  if (target.webSocket && target.phase === 'handshake') {
    const notWebSocket = 'is this a WebSocket listener? check the port and the path (usually /mqtt); for a plain MQTT port use mqtt:// (mqtts:// with TLS)';
    // with wss:// a reset before "socket hang up" is the TLS handshake failing: explained below
    const upgradeStage = !target.tls || raw === 'socket hang up';
    if ((code === 'ECONNRESET' || code === 'EPIPE') && upgradeStage) {
      // a TLS 1.3 server refuses a client certificate just after the handshake, so the close looks the same
      const hint = target.tls ? `${notWebSocket}; or the server refused the client certificate (or the lack of one: --cert / --key)` : notWebSocket;
      return mk('websocket', `WebSocket upgrade to ${where} failed: the server closed the connection without an HTTP answer`, hint);
    }
    if (code.startsWith('HPE_')) return mk('websocket', `WebSocket upgrade to ${where} failed: the server's answer is not HTTP`, notWebSocket);
    if (code === 'ERR_WS_SUBPROTOCOL') {
      return mk('websocket', `WebSocket upgrade to ${where} failed: ${raw}`, 'the server did not accept the "mqtt" subprotocol: is this an MQTT WebSocket endpoint?');
    }
    if (code === 'ECONNECTION' && !/certificate/i.test(raw)) return mk('websocket', `WebSocket upgrade to ${where} failed: ${raw}`, notWebSocket);
  }
  switch (code) {
    case 'ECONNREFUSED':
      return mk('tcp', `connection refused: nothing listens on ${where}`, 'is the broker running? check the host and port (-h / -p / --url)');
    case 'ENOTFOUND':
      return mk('dns', `DNS lookup failed: host "${target.host}" not found`, 'check the host name for typos');
    case 'EAI_AGAIN':
      return mk('dns', `DNS lookup of "${target.host}" failed temporarily`, 'is a DNS server reachable? try again or use an IP address');
    case 'ETIMEDOUT':
      return mk('tcp', `TCP connection to ${where} timed out`, 'a firewall may drop the packets; check the host and port');
    case 'EHOSTUNREACH':
      return mk('tcp', `host ${target.host} is unreachable`, 'check the network route to the broker');
    case 'ENETUNREACH':
      return mk('tcp', `network unreachable while connecting to ${where}`);
    case 'ECONNRESET':
      if (target.tls && target.phase === 'handshake') {
        return mk('tls', `connection to ${where} reset by the server during the TLS handshake`, 'is this a TLS port? for a plain port use mqtt:// (or ws://)');
      }
      return mk('tcp', `connection to ${where} reset by the server`, target.tls ? undefined : 'if this is a TLS port, use mqtts:// (or wss://)');
    case 'EPIPE':
      return mk('tcp', `connection to ${where} closed by the server while writing`);
    case 'ERR_TLS_CERT_ALTNAME_INVALID': {
      // Node.js lists only the names of the kind checked: none at all for an IP address the certificate lacks
      const cn = e.cert?.subject?.CN;
      const names = e.cert?.subjectaltname || (cn ? `CN=${Array.isArray(cn) ? cn.join(', CN=') : cn}` : undefined);
      return mk(
        'tls',
        `TLS: hostname mismatch: ${names ? `${e.host ?? target.host} is not among the certificate's names: ${names}` : (e.reason ?? raw)}`,
        'connect with the name the certificate was issued for, or pass --servername / the servername option',
      );
    }
    case 'CERT_HAS_EXPIRED':
      return mk('tls', 'TLS: the server certificate has expired', 'renew the server certificate (or --insecure for testing only)');
    case 'CERT_NOT_YET_VALID':
      return mk('tls', 'TLS: the server certificate is not valid yet', 'check the clocks of client and server');
    case 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED':
      return mk('tls', 'TLS: client certificate required by the server', 'pass --cert and --key (the cert and key options)');
    case 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE':
      return mk(
        'tls',
        'TLS: handshake failure alert from the server',
        'the server may require a client certificate (--cert / --key) or support no common protocol version / cipher',
      );
    case 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA':
    case 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE':
    case 'ERR_SSL_TLSV13_ALERT_BAD_CERTIFICATE':
      return mk('tls', 'TLS: the server rejected the client certificate', 'use a client certificate signed by a CA the server trusts');
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_PACKET_LENGTH_TOO_LONG':
      return mk('tls', `TLS: ${where} does not speak TLS`, 'this looks like a plain port: use mqtt:// (or ws://), or the TLS port');
    case 'ERR_WS_UNEXPECTED_RESPONSE':
      return mk('websocket', `WebSocket upgrade to ${where} failed: ${raw}`, httpStatusHint(Number(/\b(\d{3})\b/.exec(raw)?.[1])));
  }
  if (UNKNOWN_CA_CODES.has(code)) {
    return mk(
      'tls',
      'TLS: certificate signed by an unknown CA',
      'pass --cafile (the ca option) with the CA that signed the server certificate, or --insecure to skip verification (testing only)',
    );
  }
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || /certificate/i.test(raw)) {
    return mk('tls', `TLS error: ${ssl ?? raw.split('\n')[0]!}`);
  }
  if (code.startsWith('EAI_')) return mk('dns', `DNS lookup of "${target.host}" failed: ${raw}`);
  return mk('tcp', `connection to ${where} failed: ${raw}`);
}

/** OpenSSL's reason in an error message ("sslv3 alert handshake failure"), without its file and line. */
function opensslReason(message: string): string | undefined {
  return /SSL routines:[^:]*:([^:\n]+)/.exec(message)?.[1]?.trim();
}

/** Codes of a client certificate / key that cannot be used, with what to say and what to do. */
const LOCAL_TLS_ERRORS: Record<string, [message: string, hint: string]> = {
  ERR_OSSL_BAD_DECRYPT: ['the client key cannot be decrypted: wrong or missing passphrase', 'check the passphrase option (--key-passphrase)'],
  ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED: ['the client key is encrypted and no passphrase was given', 'pass the passphrase option (--key-passphrase)'],
  // A wrong passphrase sometimes gets past the decryption's padding check (about 1 time in 256) and then fails
  // as a key OpenSSL cannot decode.
  ERR_OSSL_UNSUPPORTED: ['the client key cannot be decoded: a wrong passphrase, or a key format OpenSSL does not read', 'check the key (--key) and its passphrase (--key-passphrase)'],
  ERR_OSSL_X509_KEY_VALUES_MISMATCH: ['the client certificate and key do not match', 'pass the key of this certificate (--cert / --key)'],
  ERR_OSSL_PEM_NO_START_LINE: ['a certificate or key option holds no PEM data', 'pass PEM text ("-----BEGIN ...") in the cert, key and ca options (--cert, --key, --cafile)'],
};

/** What to try after an HTTP status instead of the WebSocket upgrade. */
function httpStatusHint(status: number): string {
  if (status === 401 || status === 407) {
    return 'the server wants HTTP authentication for the upgrade: send the credentials it expects as a header (--ws-header "Authorization: ...", the wsHeaders option)';
  }
  if (status === 403) return 'the server refused the upgrade: check the credentials or headers it expects (--ws-header) and the Origin it allows';
  if (status >= 300 && status < 400) return 'the server redirects elsewhere: use the URL it points to (check ws:// against wss:// and the path)';
  if (status >= 500) return 'the server (or a proxy in front of it) failed: try again later, or check the proxy forwards WebSocket upgrades';
  return 'check the path (usually /mqtt) and that this port serves MQTT over WebSocket';
}

/** "-V 3.1.1 or -V 3.1": the protocol versions other than the one in use, to try. */
export function otherVersions(version: ProtocolVersion): string {
  const names: [ProtocolVersion, string][] = [
    [5, '5'],
    [4, '3.1.1'],
    [3, '3.1'],
  ];
  return names
    .filter(([v]) => v !== version)
    .map(([, name]) => `-V ${name}`)
    .join(' or ');
}

const CONNACK_HINTS: Record<number, string> = {
  0x85: 'the server rejected the Client ID: pass another one with -i',
  0x86: 'check the user name and password (-u / -P)',
  0x87: 'this user / client is not allowed to connect',
  0x88: 'the server is unavailable: try again later',
  0x89: 'the server is busy: try again later',
  0x8a: 'this client is banned by the server',
  0x8c: 'the server does not accept this authentication method',
  0x9f: 'connecting too often: slow down',
};

/**
 * The message for a refused CONNACK: "connection refused by the server: 0x86 Bad User Name or Password";
 * `serverReference` (0x9c / 0x9d) is named in the hint.
 */
export function connackError(reasonCode: number, version: ProtocolVersion, reasonString?: string, serverReference?: string): ConnackError {
  const name = version === 5 ? reasonName(reasonCode) : connackReturnCodeName(reasonCode);
  const v5 = version === 5 ? reasonCode : v3ConnackToV5(reasonCode);
  const detail = reasonString ? `: ${reasonString}` : '';
  let hint = CONNACK_HINTS[v5];
  // never suggest the version already in use
  if (v5 === 0x84) hint = `the server does not support this protocol version: try ${otherVersions(version)}`;
  else if (v5 === 0x9c) hint = serverReference ? `the server asks to use another server: ${serverReference}` : 'the server asks to use another server (it named none)';
  else if (v5 === 0x9d) hint = serverReference ? `the server has moved to ${serverReference}` : 'the server has moved (it did not say where)';
  return new ConnackError('CONNACK_REFUSED', `connection refused by the server: ${name}${detail}`, {
    reasonCode,
    reasonString,
    hint,
  });
}

/** True for a server DISCONNECT after which reconnecting is pointless: Session taken over, Banned, Use another server, Server moved. */
export function isFinalDisconnect(err: MqttClientError): boolean {
  return err.code === 'SERVER_DISCONNECT' && [0x8a, 0x8e, 0x9c, 0x9d].includes(err.reasonCode ?? 0);
}

/** True when retrying the same CONNECT cannot succeed (bad credentials, banned, unsupported version, ...). */
export function isPermanentConnackFailure(reasonCode: number, version: ProtocolVersion): boolean {
  const v5 = version === 5 ? reasonCode : v3ConnackToV5(reasonCode);
  return [0x81, 0x82, 0x84, 0x85, 0x86, 0x87, 0x8a, 0x8c, 0x9c, 0x9d].includes(v5);
}

/** The error for a DISCONNECT the server sent. */
export function serverDisconnectError(reasonCode: number, reasonString?: string, serverReference?: string, beforeConnack = false): DisconnectError {
  let message = `the server closed the connection${beforeConnack ? ' before CONNACK' : ''}: ${reasonName(reasonCode)}`;
  if (reasonString) message += `: ${reasonString}`;
  let hint: string | undefined;
  if (reasonCode === 0x8e) hint = 'another client connected with the same Client ID';
  else if (reasonCode === 0x8d) hint = 'the server saw no packet within the keep alive: check the network';
  else if (reasonCode === 0x95) hint = 'a packet was larger than the server accepts';
  else if (reasonCode === 0x9c || reasonCode === 0x9d) hint = serverReference ? `use server ${serverReference}` : undefined;
  return new DisconnectError('SERVER_DISCONNECT', message, { reasonCode, reasonString, hint });
}

/** The error for a failure reason code in an acknowledgement. */
export function ackError(what: string, reasonCode: number, reasonString?: string): ReasonCodeError {
  const detail = reasonString ? `: ${reasonString}` : '';
  return new ReasonCodeError('REASON_CODE', `${what} failed: ${reasonName(reasonCode)}${detail}`, { reasonCode, reasonString });
}
