// SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5.0 enhanced authentication method:
// CONNECT carries client-first, AUTH 0x18 server-first / client-final, CONNACK server-final.
// The broker stores only salted keys (StoredKey, ServerKey), never the password.
import { Buffer } from 'node:buffer';
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuthExchange, AuthMethod, AuthStepResult } from '../broker/enhanced-auth.js';
import type { MaybePromise } from '../broker/hooks.js';

export interface ScramCredentials {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

const hmac = (key: Buffer, text: string | Buffer) => createHmac('sha256', key).update(text).digest();
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();

/** Derives what the broker keeps for a user from a password (done once, e.g. when a password file is written). */
export function scramCredentials(password: string, salt: Buffer = randomBytes(16), iterations = 4096): ScramCredentials {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  return { salt, iterations, storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') };
}

/** Parses "a=1,b=2" attribute lists (values may contain '='). */
function attributes(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    if (part.length < 2 || part[1] !== '=') continue;
    out.set(part[0]!, part.slice(2));
  }
  return out;
}

/** RFC 5802 saslname: "=2C" is ',' and "=3D" is '='. */
const unescapeName = (name: string) => name.replace(/=2C/g, ',').replace(/=3D/g, '=');

class ScramExchange implements AuthExchange {
  private stage: 'first' | 'final' | 'done' = 'first';
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  private username = '';
  private credentials: ScramCredentials | undefined;

  constructor(
    private readonly lookup: (username: string) => MaybePromise<ScramCredentials | undefined>,
    private readonly fakeSaltKey: Buffer,
  ) {}

  step(data: Buffer | undefined): MaybePromise<AuthStepResult> {
    if (this.stage === 'first') return this.first(data);
    if (this.stage === 'final') return this.final(data);
    return { result: 'failure', reasonCode: 0x82, reason: 'SCRAM exchange already finished' };
  }

  private first(data: Buffer | undefined): MaybePromise<AuthStepResult> {
    const text = data?.toString('utf8') ?? '';
    // gs2-header: no channel binding ("n,," or "y,,"), no authzid.
    const m = /^([ny]),,(.*)$/s.exec(text);
    if (!m) return { result: 'failure', reasonCode: 0x87, reason: 'SCRAM client-first message malformed or asks for channel binding' };
    this.clientFirstBare = m[2]!;
    const attrs = attributes(this.clientFirstBare);
    const user = attrs.get('n');
    const clientNonce = attrs.get('r');
    if (!user || !clientNonce) return { result: 'failure', reasonCode: 0x87, reason: 'SCRAM client-first message lacks n= or r=' };
    this.username = unescapeName(user);
    this.nonce = clientNonce + randomBytes(18).toString('base64');
    const found = this.lookup(this.username);
    const proceed = (creds: ScramCredentials | undefined): AuthStepResult => {
      this.credentials = creds;
      // An unknown user gets a plausible, stable salt so the exchange does not reveal which users exist.
      const salt = creds?.salt ?? hmac(this.fakeSaltKey, this.username).subarray(0, 16);
      const iterations = creds?.iterations ?? 4096;
      this.serverFirst = `r=${this.nonce},s=${salt.toString('base64')},i=${iterations}`;
      this.stage = 'final';
      return { result: 'continue', data: Buffer.from(this.serverFirst) };
    };
    return found instanceof Promise ? found.then(proceed) : proceed(found);
  }

  private final(data: Buffer | undefined): AuthStepResult {
    this.stage = 'done';
    const text = data?.toString('utf8') ?? '';
    const proofAt = text.lastIndexOf(',p=');
    if (proofAt < 0) return { result: 'failure', reasonCode: 0x87, reason: 'SCRAM client-final message lacks a proof' };
    const withoutProof = text.slice(0, proofAt);
    const attrs = attributes(text);
    if (attrs.get('r') !== this.nonce) return { result: 'failure', reasonCode: 0x87, reason: 'SCRAM nonce mismatch' };
    const creds = this.credentials;
    if (!creds) return { result: 'failure', reasonCode: 0x86, reason: 'bad user name or password' };
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const proof = Buffer.from(attrs.get('p') ?? '', 'base64');
    const signature = hmac(creds.storedKey, authMessage);
    if (proof.length !== signature.length) return { result: 'failure', reasonCode: 0x86, reason: 'bad user name or password' };
    const clientKey = Buffer.alloc(proof.length);
    for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i]! ^ signature[i]!;
    if (!timingSafeEqual(sha256(clientKey), creds.storedKey)) return { result: 'failure', reasonCode: 0x86, reason: 'bad user name or password' };
    const serverSignature = hmac(creds.serverKey, authMessage).toString('base64');
    return { result: 'success', data: Buffer.from(`v=${serverSignature}`), username: this.username };
  }
}

/**
 * The SCRAM-SHA-256 method. `lookup` returns a user's stored credentials (see `scramCredentials`),
 * or undefined for an unknown user.
 */
export function scramSha256(lookup: (username: string) => MaybePromise<ScramCredentials | undefined>): AuthMethod {
  const fakeSaltKey = randomBytes(32);
  return { name: 'SCRAM-SHA-256', begin: () => new ScramExchange(lookup, fakeSaltKey) };
}

/** Client side of SCRAM-SHA-256, for the client library and tests. */
export class ScramClient {
  private readonly clientNonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private expectedServerSignature = '';

  constructor(
    private readonly username: string,
    private readonly password: string,
  ) {}

  /** The Authentication Data of CONNECT. */
  first(): Buffer {
    const name = this.username.replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.clientFirstBare = `n=${name},r=${this.clientNonce}`;
    return Buffer.from(`n,,${this.clientFirstBare}`);
  }

  /** The Authentication Data of the AUTH answering the server-first message. */
  final(serverFirst: Buffer): Buffer {
    const text = serverFirst.toString('utf8');
    const attrs = attributes(text);
    const nonce = attrs.get('r') ?? '';
    if (!nonce.startsWith(this.clientNonce)) throw new Error('SCRAM server nonce does not extend the client nonce');
    const salted = pbkdf2Sync(this.password.normalize('NFKC'), Buffer.from(attrs.get('s') ?? '', 'base64'), Number(attrs.get('i')), 32, 'sha256');
    const clientKey = hmac(salted, 'Client Key');
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${text},${withoutProof}`;
    const signature = hmac(sha256(clientKey), authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ signature[i]!;
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage).toString('base64');
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }

  /** True when the server-final message proves the server knew the password too. */
  verify(serverFinal: Buffer | undefined): boolean {
    return serverFinal?.toString('utf8') === `v=${this.expectedServerSignature}`;
  }
}
