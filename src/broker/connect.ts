// CONNECT (MQTT 3.1, 3.2): the checks a CONNECT must pass, authentication (a password checked by the
// authenticate hook, or a 5.0 enhanced authentication exchange, 4.12, which also re-authenticates a live
// connection), and then accept (CONNACK, the session taken up) or refuse (CONNACK with an error, then close).
import { Buffer, isUtf8 } from 'node:buffer';
import { PacketType, ReasonCode, v5ConnackToV3 } from '../protocol/constants.js';
import { ALLOWED_REASON_CODES } from '../protocol/codec-util.js';
import type { AuthPacket, ConnectPacket, Properties } from '../protocol/packets.js';
import { hasMoreLevels } from '../protocol/topic.js';
import type { Channel } from './channel.js';
import type { AuthStepResult } from './enhanced-auth.js';
import { callHook, type AuthenticateRequest, type MaybePromise } from './hooks.js';

/** A CONNECT accepted so far, waiting for authentication to finish. */
export interface PendingConnect {
  packet: ConnectPacket;
  clientId: string;
  assigned: boolean;
  keepAlive: number;
  serverKeepAlive: number | undefined;
}

export function onConnect(ch: Channel, p: ConnectPacket): void {
  ch.setVersion(p.protocolVersion);
  const host = ch.host;
  const t = ch.transport;
  host.events.connectReceived?.(t.remoteAddress, { clientId: p.clientId, username: p.username, protocolVersion: p.protocolVersion, listener: t.listener, clean: p.clean, keepAlive: p.keepAlive });
  ch.state = 'authenticating';
  const limits = host.limits;
  const props = p.properties;
  const version = ch.version;
  if (version === 5) {
    if (props?.receiveMaximum !== undefined) ch.clientReceiveMaximum = props.receiveMaximum;
    if (props?.maximumPacketSize !== undefined) ch.writer.maxPacketSize = props.maximumPacketSize;
    if (props?.requestProblemInformation === 0) ch.problemInformation = false;
    if (props?.topicAliasMaximum) ch.writer.topicAliasMaximum = props.topicAliasMaximum;
  }
  const methodName = version === 5 ? props?.authenticationMethod : undefined;
  if (t.identityMissing !== undefined) {
    // As Mosquitto's use_identity_as_username: a certificate without the identity is bad credentials.
    refuseConnect(ch, ReasonCode.BadUserNameOrPassword, t.identityMissing);
    return;
  }
  let clientId = t.identityClientId ?? p.clientId;
  let assigned = false;
  if (clientId === '') {
    // [MQTT-3.1.3-6..8] an empty ID gets one assigned when the session is clean (5.0: always).
    if (version === 5 || (version === 4 && p.clean)) {
      clientId = host.registry.assignClientId();
      assigned = true;
    } else {
      refuseConnect(ch, ReasonCode.ClientIdentifierNotValid, 'empty Client ID needs clean session');
      return;
    }
  } else if (Buffer.byteLength(clientId) > limits.maxClientIdLength) {
    refuseConnect(ch, ReasonCode.ClientIdentifierNotValid, `Client ID longer than ${limits.maxClientIdLength} bytes`);
    return;
  } else if (version === 3 && clientId.length > 23 && [...clientId].length > 23 && t.identityClientId === undefined) {
    // MQTT 3.1 (CONNECT, Client Identifier): 1 to 23 characters, else return code 2.
    refuseConnect(ch, ReasonCode.ClientIdentifierNotValid, 'MQTT 3.1 Client ID longer than 23 characters');
    return;
  }
  const refusal = willRefusal(p, limits);
  if (refusal !== undefined) {
    refuseConnect(ch, refusal[0], refusal[1]);
    return;
  }
  if (version === 5 && methodName === undefined && props?.authenticationData !== undefined) {
    // 3.1.2.11.10: Authentication Data without an Authentication Method is a Protocol Error.
    refuseConnect(ch, ReasonCode.ProtocolError, 'Authentication Data without an Authentication Method');
    return;
  }
  let keepAlive = p.keepAlive;
  let serverKeepAlive: number | undefined;
  if (limits.maxKeepAlive < 65535 && (keepAlive === 0 || keepAlive > limits.maxKeepAlive)) {
    if (version === 5) {
      serverKeepAlive = keepAlive = limits.maxKeepAlive;
    } else {
      // 3.1.x has no way to tell the client another value: refuse, as Mosquitto does.
      refuseConnect(ch, ReasonCode.ClientIdentifierNotValid, `keep alive ${keepAlive} s is outside the allowed 1..${limits.maxKeepAlive} s`);
      return;
    }
  }
  // One shape for every client (certificateCN always present, maybe undefined).
  ch.info = {
    clientId,
    username: t.identityUsername ?? p.username,
    protocolVersion: version,
    remoteAddress: t.remoteAddress,
    listener: t.listener,
    certificateCN: t.certificate?.cn,
  };
  if (p.password !== undefined && !t.secure) host.warnPlainCredentials(t);
  // With enhanced authentication the user name travels inside the exchange, not in CONNECT.
  if (methodName === undefined && !(t.allowAnonymous ?? limits.allowAnonymous) && ch.info.username === undefined) {
    refuseConnect(ch, ReasonCode.NotAuthorized, 'anonymous connections are not allowed');
    return;
  }
  if (host.closing) {
    refuseConnect(ch, ReasonCode.ServerUnavailable, 'server shutting down');
    return;
  }
  if (host.guard.refuseConnects) {
    // Memory above its high-water mark or the event loop lagging (overload.ts): 5.0 0x89 Server busy, 3.1.x
    // 0x03 Server unavailable, then the close [MQTT-3.2.2-7]; before authentication, which costs the most.
    refuseConnect(ch, ReasonCode.ServerBusy, host.guard.refusalReason);
    return;
  }
  if (limits.serverReference) {
    // A configured redirect: 5.0 clients are told where to go (0x9C temporary, 0x9D permanent).
    refuseConnect(ch, limits.serverMoved ? ReasonCode.ServerMoved : ReasonCode.UseAnotherServer, 'use another server', { serverReference: limits.serverReference });
    return;
  }
  const pending: PendingConnect = { packet: p, clientId, assigned, keepAlive, serverKeepAlive };
  if (methodName !== undefined) {
    const method = host.authMethods.get(methodName);
    if (!method) {
      refuseConnect(ch, ReasonCode.BadAuthenticationMethod, `authentication method ${JSON.stringify(methodName)} is not supported`);
      return;
    }
    ch.authMethod = methodName;
    ch.pendingConnect = pending;
    ch.exchange = method.begin({ clientId, username: ch.info.username, remoteAddress: t.remoteAddress });
    authStep(ch, props?.authenticationData);
    return;
  }
  authenticate(ch, pending, p.password);
}

/** Why the CONNECT's will cannot be accepted, if it cannot: [reason code, words]. */
function willRefusal(p: ConnectPacket, limits: Channel['host']['limits']): [number, string] | undefined {
  const will = p.will;
  if (will === undefined) return undefined;
  // [MQTT-3.2.2-12] a will this server could not publish at its QoS refuses the connection.
  if (will.qos > limits.maxQos) return [ReasonCode.QoSNotSupported, `Will QoS ${will.qos} is above the maximum QoS ${limits.maxQos}`];
  // [MQTT-3.2.2-13] nor can a retained will be kept where retained messages are off.
  if (will.retain && !limits.retainAvailable) return [ReasonCode.RetainNotSupported, 'retained will, but retained messages are not supported'];
  if (hasMoreLevels(will.topic, limits.maxTopicLevels)) return [ReasonCode.TopicNameInvalid, `will topic has more than maxTopicLevels (${limits.maxTopicLevels}) levels`];
  if (will.properties?.payloadFormatIndicator === 1 && limits.validatePayloadFormat && !isUtf8(will.payload)) {
    // 3.1.3.2.3: a will that says UTF-8 and is not (as a PUBLISH would be refused, see inbound.ts).
    return [ReasonCode.PayloadFormatInvalid, 'will payload is not UTF-8 although its Payload Format Indicator says so'];
  }
  return undefined;
}

/**
 * The `authenticate` hook decides on every connection (bans and limits live there too); after an enhanced
 * authentication exchange it is told the method instead of given a password.
 */
export function authenticate(ch: Channel, pending: PendingConnect, password: Buffer | undefined, authProperties?: Properties): void {
  const hook = ch.host.hooks.authenticate;
  const t = ch.transport;
  const info = ch.info!;
  // Every field written out, in one order: a spread of `info` plus extra fields costs ~3 µs per CONNECT.
  const request: AuthenticateRequest = {
    clientId: info.clientId,
    username: info.username,
    protocolVersion: info.protocolVersion,
    remoteAddress: info.remoteAddress,
    listener: info.listener,
    certificateCN: info.certificateCN,
    password,
    secure: t.secure,
    certificate: t.certificate,
    usernameFromCertificate: t.identityUsername !== undefined,
    authenticationMethod: authProperties?.authenticationMethod,
  };
  const verdict: MaybePromise<boolean | number> = hook ? callHook(() => hook(request)) : true;
  ch.after(
    verdict,
    (ok) => {
      if (ok === true) claim(ch, pending, authProperties);
      else refuseConnect(ch, ok === false ? ReasonCode.BadUserNameOrPassword : ch.refusal('authenticate', ok), 'refused by authentication');
    },
    (err) => {
      ch.host.events.warning?.('authentication failed', { clientId: pending.clientId, error: String(err) });
      refuseConnect(ch, ReasonCode.UnspecifiedError, 'authentication failed with an error');
    },
    'authentication',
  );
}

/**
 * A cluster claims the Client ID (the claimClientId hook) before the session is taken up; without a cluster
 * the CONNECT goes straight on. A claim that fails with an error refuses with 0x88 Server unavailable.
 */
function claim(ch: Channel, pending: PendingConnect, authProperties?: Properties): void {
  const hook = ch.host.hooks.claimClientId;
  if (hook === undefined) {
    accept(ch, pending, authProperties);
    return;
  }
  const request = { clean: pending.packet.clean, sessionExpiry: sessionExpiryOf(ch, pending.packet) };
  ch.after(
    callHook(() => hook(ch.info!, request)),
    (ok) => {
      if (ok === true) accept(ch, pending, authProperties);
      else refuseConnect(ch, ok === false ? ReasonCode.ServerUnavailable : ch.refusal('claimClientId', ok), 'Client ID claim refused by the cluster');
    },
    (err) => {
      ch.host.events.warning?.('Client ID claim failed', { clientId: pending.clientId, error: String(err) });
      refuseConnect(ch, ReasonCode.ServerUnavailable, 'Client ID claim failed with an error');
    },
    'Client ID claim',
  );
}

/** The Session Expiry Interval a CONNECT gets (5.0: asked for, capped; 3.1.x: Clean Session says). */
function sessionExpiryOf(ch: Channel, p: ConnectPacket): number {
  if (ch.version !== 5) return p.clean ? 0 : ch.host.limits.sessionExpiry;
  return Math.min(p.properties?.sessionExpiryInterval ?? 0, ch.host.limits.maxSessionExpiry);
}

function accept(ch: Channel, pending: PendingConnect, authProperties?: Properties): void {
  const { packet: p, clientId, assigned, keepAlive, serverKeepAlive } = pending;
  const host = ch.host;
  const limits = host.limits;
  const expiry = sessionExpiryOf(ch, p);
  let expiryCapped = false;
  if (ch.version === 5) {
    const requested = p.properties?.sessionExpiryInterval ?? 0;
    expiryCapped = expiry !== requested;
    ch.connectExpiryWasZero = requested === 0;
  }
  const { session, present } = host.registry.attach(ch, clientId, p.clean, expiry, ch.info!);
  ch.session = session;
  if (present && ch.version !== 5 && session.subscriptionCount > 0) {
    // A session made over 5.0, resumed over 3.1.x: that protocol has no Retain As Published, and "MUST set
    // the RETAIN flag to 0" on messages through an established subscription [MQTT-3.3.1-9].
    for (const [key, entry] of session.subscriptions) {
      if (entry.retainAsPublished) host.registry.subscribe(session, key, { ...entry, retainAsPublished: false });
    }
  }
  ch.state = 'connected';
  ch.keepAliveMs = keepAlive * 1000;
  ch.will = p.will;
  // A kept session records the live connection's will: published after a restart if the process died.
  if (session.journal !== undefined) session.journal.will(p.will !== undefined ? { will: p.will, client: ch.info!, publishAt: undefined } : undefined);
  else if (p.will !== undefined) host.store.liveWill?.(clientId, { will: p.will, client: ch.info!, publishAt: undefined });
  ch.lastReceived = host.clock.now();
  ch.tick(ch.lastReceived); // the keep-alive deadline (filed at the connect timeout's slot if that comes first)

  let properties: Properties | undefined;
  if (ch.version === 5) {
    properties = { ...authProperties };
    if (p.properties?.requestResponseInformation === 1 && limits.responseInformation) {
      properties.responseInformation = limits.responseInformation.replace(/%c/g, clientId);
    }
    if (!limits.wildcardSubscriptionAvailable) properties.wildcardSubscriptionAvailable = 0;
    if (!limits.subscriptionIdentifiersAvailable) properties.subscriptionIdentifierAvailable = 0;
    if (!limits.sharedSubscriptionAvailable) properties.sharedSubscriptionAvailable = 0;
    if (limits.connackUserProperties.length) properties.userProperties = limits.connackUserProperties;
    if (assigned) properties.assignedClientIdentifier = clientId;
    if (serverKeepAlive !== undefined) properties.serverKeepAlive = serverKeepAlive;
    if (expiryCapped) properties.sessionExpiryInterval = expiry;
    if (limits.receiveMaximum < 65535) properties.receiveMaximum = limits.receiveMaximum;
    if (limits.maxQos < 2) properties.maximumQoS = limits.maxQos;
    if (!limits.retainAvailable) properties.retainAvailable = 0;
    properties.maximumPacketSize = limits.maxPacketSize;
    if (limits.topicAliasMaximum > 0) properties.topicAliasMaximum = limits.topicAliasMaximum;
  }
  // [MQTT-3.2.2-2] session present only when a stored session was resumed (never with clean start).
  if (!ch.send({ type: PacketType.CONNACK, sessionPresent: present, reasonCode: 0, properties })) {
    // [MQTT-3.2.0-1] nothing may come before CONNACK: a client whose Maximum Packet Size cannot take it
    // cannot be served at all.
    ch.close({ reason: `CONNACK larger than the client's Maximum Packet Size (${ch.writer.maxPacketSize} bytes)`, reasonCode: ReasonCode.PacketTooLarge, will: false });
    return;
  }
  host.events.clientConnected?.(ch.info!, { sessionPresent: present, clean: p.clean, keepAlive });
  // In-flight messages resent, the queue drained: the session delivers through this connection from now on.
  session.resume(ch);
}

/** CONNACK with an error, then close (no will: the connection was never accepted). */
export function refuseConnect(ch: Channel, reasonCode: number, reason: string, extra?: Properties): void {
  const code = ch.version === 5 ? reasonCode : v5ConnackToV3(reasonCode);
  let properties: Properties | undefined;
  if (ch.version === 5) {
    properties = { ...extra };
    if (ch.problemInformation) properties.reasonString = reason;
  }
  ch.send({ type: PacketType.CONNACK, sessionPresent: false, reasonCode: code, properties });
  ch.host.events.clientRefused?.(ch.transport.remoteAddress, ch.info?.clientId, reasonCode, reason);
  ch.close({ reason, reasonCode, will: false, refused: true });
}

// ---- enhanced authentication (5.0, 4.12) ----

/** Feeds the client's authentication data to the exchange in progress. */
export function authStep(ch: Channel, data: Buffer | undefined): void {
  const exchange = ch.exchange!;
  ch.after(
    callHook(() => exchange.step(data)),
    (r) => onAuthResult(ch, r),
    (err) => {
      ch.host.events.warning?.('authentication method failed', { method: ch.authMethod, error: String(err) });
      authFailed(ch, ReasonCode.UnspecifiedError, 'authentication failed with an error');
    },
  );
}

function onAuthResult(ch: Channel, r: AuthStepResult): void {
  const authenticationMethod = ch.authMethod!;
  if (r.result === 'continue') {
    ch.send({ type: PacketType.AUTH, reasonCode: ReasonCode.ContinueAuthentication, properties: { authenticationMethod, authenticationData: r.data } });
    return;
  }
  ch.exchange = undefined;
  if (r.result === 'failure') {
    authFailed(ch, r.reasonCode ?? ReasonCode.NotAuthorized, r.reason ?? 'authentication failed');
    return;
  }
  const properties: Properties = { authenticationMethod };
  if (r.data) properties.authenticationData = r.data;
  if (ch.state === 'authenticating') {
    const pending = ch.pendingConnect!;
    ch.pendingConnect = undefined;
    // The identity is what the exchange proved; a user name merely claimed in CONNECT does not count.
    ch.info!.username = r.username;
    authenticate(ch, pending, undefined, properties);
  } else if (r.username !== undefined && r.username !== ch.info!.username) {
    // A connection belongs to the user its CONNECT proved: re-authentication may renew that proof, not
    // swap the user (who would then bypass the authenticate hook, bans included).
    authFailed(ch, ReasonCode.NotAuthorized, 're-authentication proved another user');
  } else {
    // Re-authentication succeeded (4.12.1): AUTH 0x00.
    ch.send({ type: PacketType.AUTH, reasonCode: 0, properties });
  }
}

function authFailed(ch: Channel, reasonCode: number, reason: string): void {
  if (ch.state === 'authenticating') refuseConnect(ch, reasonCode, reason);
  // A failed re-authentication ends the connection [MQTT-4.12.1-2] with a DISCONNECT code: CONNACK-only
  // codes of the method (0x86 Bad user name or password, 0x8C Bad authentication method) become 0x87.
  else ch.serverDisconnect(ALLOWED_REASON_CODES[PacketType.DISCONNECT]![reasonCode] ? reasonCode : ReasonCode.NotAuthorized, reason);
}

export function onAuth(ch: Channel, p: AuthPacket): void {
  const code = p.reasonCode ?? 0;
  const method = p.properties?.authenticationMethod;
  if (ch.authMethod === undefined) {
    // [MQTT-4.12.0-6]/[MQTT-4.12.1-1] AUTH only where CONNECT chose a method, and with that method.
    authFailed(ch, ReasonCode.ProtocolError, 'AUTH without an authentication method in CONNECT');
    return;
  }
  if (method !== ch.authMethod) {
    authFailed(ch, ReasonCode.ProtocolError, 'AUTH with another authentication method than CONNECT');
    return;
  }
  if (code === ReasonCode.ContinueAuthentication && ch.exchange) {
    authStep(ch, p.properties?.authenticationData);
  } else if (code === ReasonCode.ReAuthenticate && ch.state === 'connected' && !ch.exchange) {
    const info = ch.info!;
    ch.exchange = ch.host.authMethods.get(method)!.begin({ clientId: info.clientId, username: info.username, remoteAddress: ch.transport.remoteAddress });
    authStep(ch, p.properties?.authenticationData);
  } else {
    authFailed(ch, ReasonCode.ProtocolError, `unexpected AUTH reason code 0x${code.toString(16)}`);
  }
}
