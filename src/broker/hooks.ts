// The broker's extension points and the events it reports. Hooks may answer synchronously
// (kept on the fast path) or with a promise (the connection waits, packets keep their order).
import type { ProtocolVersion, QoS } from '../protocol/constants.js';
import type { Message } from './message.js';

export interface ClientInfo {
  clientId: string;
  username?: string;
  protocolVersion: ProtocolVersion;
  /** "127.0.0.1:51234" */
  remoteAddress: string;
  /** Name of the listener the client came in on (e.g. "tcp:1883"). */
  listener: string;
  /** Common Name of the verified client certificate (mutual TLS), for ACL rules. */
  certificateCN?: string;
}

/** What a verified client certificate says (mutual TLS). */
export interface CertificateIdentity {
  /** Subject Common Name. */
  cn?: string;
  /** Subject Alternative Names, values only (DNS names, e-mail addresses, URIs, IP addresses), in certificate order. */
  san: string[];
  /** SHA-256 fingerprint, "AB:CD:...". */
  fingerprint256?: string;
}

export interface AuthenticateRequest extends ClientInfo {
  password?: Buffer;
  /** True when the transport is TLS (mqtts, wss). */
  secure: boolean;
  /** The verified client certificate (mutual TLS listeners). */
  certificate?: CertificateIdentity;
  /** True when `username` was taken from the client certificate (the certificate is the credential). */
  usernameFromCertificate?: boolean;
  /**
   * Set when the client authenticated with a 5.0 enhanced authentication method (e.g. SCRAM-SHA-256):
   * the hook is called after the exchange succeeded, with the user name it established and no password.
   */
  authenticationMethod?: string;
}

/** true: accepted; false: bad user name or password; a number: that 5.0 reason code (e.g. 0x87, 0x8A). */
export type AuthenticateResult = boolean | number;
/** true: allowed; false: not authorized (0x87); a number ≥ 0x80: that reason code. */
export type AuthorizePublishResult = boolean | number;
/** true: granted as requested; false: not authorized; 0-2: granted with that QoS; ≥ 0x80: that reason code. */
export type AuthorizeSubscribeResult = boolean | number;

export type MaybePromise<T> = T | Promise<T>;

export interface BrokerHooks {
  authenticate?(request: AuthenticateRequest): MaybePromise<AuthenticateResult>;
  authorizePublish?(client: ClientInfo, message: Readonly<Message>): MaybePromise<AuthorizePublishResult>;
  authorizeSubscribe?(client: ClientInfo, subscription: { topicFilter: string; qos: QoS }): MaybePromise<AuthorizeSubscribeResult>;
  /**
   * May `client` receive a message on `topic`? Asked for every message a subscription matches (retained ones
   * too), synchronously: false and the message is not sent to that client. An ACL in Mosquitto's manner grants a
   * wildcard subscription and filters here what it may read.
   */
  authorizeReceive?(client: ClientInfo, topic: string): boolean;
  /**
   * A cluster's claim of the Client ID (src/cluster/ownership.ts), after authentication and before the session
   * is taken up: true to go on (a connection holding the ID on another node is closed there), false or a
   * reason code ≥ 0x80 to refuse the CONNECT. Its deadline is hookTimeout, like any asynchronous hook.
   */
  claimClientId?(client: ClientInfo, request: ClaimRequest): MaybePromise<boolean | number>;
}

/** What the claim of a Client ID is told of the CONNECT. */
export interface ClaimRequest {
  /** Clean Start (3.1.1: Clean Session): the session does not continue wherever it was. */
  clean: boolean;
  /** The Session Expiry Interval the session will have (seconds, capped by maxSessionExpiry). */
  sessionExpiry: number;
}

export interface DisconnectInfo {
  /** Why the connection ended, in words: "client disconnected", "keep alive timeout", ... */
  reason: string;
  /** 5.0 reason code sent or received, when there was one. */
  reasonCode?: number;
  /** True when the will message was (or will be, after its delay) published. */
  willPublished: boolean;
}

/** What a CONNECT asked for, as it arrived (the Client ID may be empty, or replaced by a certificate's). */
export interface ConnectSeen {
  clientId: string;
  username?: string;
  protocolVersion: ProtocolVersion;
  listener: string;
  clean: boolean;
  keepAlive: number;
}

/** What the core reports; the Broker turns these into events and log lines. */
export interface BrokerEvents {
  /** A CONNECT arrived (before any check or authentication): what it asked for, for connection histories. */
  connectReceived?(remoteAddress: string, connect: ConnectSeen): void;
  clientConnected?(client: ClientInfo, details: { sessionPresent: boolean; clean: boolean; keepAlive: number }): void;
  clientDisconnected?(client: ClientInfo | undefined, remoteAddress: string, info: DisconnectInfo): void;
  /** A connection refused at CONNECT (CONNACK with an error code). */
  clientRefused?(remoteAddress: string, clientId: string | undefined, reasonCode: number, reason: string): void;
  subscribed?(client: ClientInfo, subscriptions: { topicFilter: string; qos: number }[]): void;
  /** An UNSUBSCRIBE, or subscriptions a reloaded ACL no longer grants (the client may be offline then). */
  unsubscribed?(client: ClientInfo, topicFilters: string[]): void;
  published?(message: Message, client: ClientInfo | undefined): void;
  /** Something an operator should know once (e.g. credentials over plain text). */
  warning?(message: string, context?: Record<string, unknown>): void;
}

/** Calls a hook; a synchronous throw becomes a rejected promise, so every failure takes the same path. */
export function callHook<T>(hook: () => MaybePromise<T>): MaybePromise<T> {
  try {
    return hook();
  } catch (err) {
    return Promise.reject(err);
  }
}

export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === 'function';
}
