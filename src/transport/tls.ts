// TLS for the tls and wss listeners: secure contexts from PEM files (reloaded when they change,
// live connections untouched), SNI, mutual TLS with a certificate-derived identity.
import { readFileSync } from 'node:fs';
import { createSecureContext, DEFAULT_CIPHERS, type SecureContext, type SecureContextOptions, type TLSSocket, type TlsOptions as NodeTlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { CertificateIdentity } from '../broker/hooks.js';
import { watchFiles, type FileWatcher } from '../util/watch.js';

/** A PEM file path, or the PEM text itself (starting with "-----BEGIN"). */
export type PemSource = string;

export interface CertificateFiles {
  /** Server certificate chain (leaf first), PEM. */
  cert: PemSource;
  /** Private key, PEM. */
  key: PemSource;
  /** Passphrase of an encrypted key. */
  passphrase?: string;
}

export interface TlsListenerSettings extends CertificateFiles {
  /** CA certificate(s) that client certificates must chain to (mutual TLS), PEM. */
  ca?: PemSource | PemSource[];
  /**
   * Certificate revocation list(s) of those CAs (mutual TLS), PEM: a client certificate listed is refused.
   * OpenSSL then wants a current CRL from every CA in a client's chain (Mosquitto's `crlfile`).
   */
  crl?: PemSource | PemSource[];
  /** Lowest TLS version accepted (default TLSv1.2; TLS 1.0/1.1 are never offered). */
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites: `ciphersuites`). */
  ciphers?: string;
  /** TLS 1.3 cipher suites, e.g. "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256". */
  ciphersuites?: string;
  /** Other certificates chosen by the server name the client asks for (SNI). */
  sni?: Record<string, CertificateFiles>;
  /** Mutual TLS: require a client certificate signed by `ca` (refused at the handshake otherwise). */
  requestCert?: boolean;
  /** Use the client certificate's Common Name ("cn") or first Subject Alternative Name ("san") as the username. */
  peerCertAsUsername?: 'cn' | 'san';
  /** ... or as the Client ID. */
  peerCertAsClientId?: 'cn' | 'san';
}

/** A certificate, key or CRL file that cannot be read, named by its listener setting (`cert`, `key`, `ca`, `crl`, `sni.<name>.cert`). */
export class PemFileError extends Error {
  constructor(
    readonly setting: string,
    readonly file: string,
    code: string,
  ) {
    super(`${setting}: cannot read ${file} (${code})`);
  }
}

/** A certificate and a key that are not a pair (OpenSSL: "key values mismatch"), named by both settings. */
export class CertificateKeyMismatchError extends PemFileError {
  constructor(certSetting: string, cert: PemSource, keySetting: string, key: PemSource) {
    super(keySetting, isPath(key) ? key : 'inline PEM', 'mismatch');
    const name = (s: PemSource) => (isPath(s) ? s : 'the inline PEM');
    this.message = `${keySetting}: ${name(key)} is not the private key of ${certSetting} ${name(cert)} (OpenSSL: key values mismatch); give the key made with that certificate`;
  }
}

/** Builds a secure context; a certificate/key mismatch becomes an error naming both settings and files. */
function secureContext(options: SecureContextOptions, files: CertificateFiles, prefix = ''): SecureContext {
  try {
    return createSecureContext(options);
  } catch (err) {
    if (/key values mismatch/.test((err as Error).message)) throw new CertificateKeyMismatchError(`${prefix}cert`, files.cert, `${prefix}key`, files.key);
    throw err;
  }
}

/**
 * What a client that does not speak TLS did, from the handshake error of a TLS port (plain MQTT starts
 * with 0x10, which OpenSSL reads as a record of an unknown version); undefined for other failures.
 */
export function plainClientOnTlsPort(err: Error & { code?: string }): string | undefined {
  if (err.code === 'ERR_SSL_HTTP_REQUEST') return 'a client sent plain HTTP to a TLS port: it must use https:// or wss:// here';
  if (err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || err.code === 'ERR_SSL_UNKNOWN_PROTOCOL' || err.code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return 'a client connected without TLS (plain MQTT?) to a TLS port: it must use TLS here (mqtts://, --cafile), or connect to a plain MQTT listener';
  }
  return undefined;
}

function readPem(source: PemSource, setting: string): string {
  if (source.trimStart().startsWith('-----BEGIN')) return source;
  try {
    return readFileSync(source, 'utf8');
  } catch (err) {
    throw new PemFileError(setting, source, (err as NodeJS.ErrnoException).code ?? String(err));
  }
}

const isPath = (s: PemSource | undefined): s is string => typeof s === 'string' && !s.trimStart().startsWith('-----BEGIN');
const list = (s: PemSource | PemSource[] | undefined): PemSource[] => (s === undefined ? [] : Array.isArray(s) ? s : [s]);
/** One source as `<setting>`, several as `<setting>[i]`: the name a PemFileError gives. */
const readPems = (s: PemSource | PemSource[], setting: string): string[] => (Array.isArray(s) ? s.map((c, i) => readPem(c, `${setting}[${i}]`)) : [readPem(s, setting)]);

function contextOptions(s: TlsListenerSettings | CertificateFiles, prefix = ''): SecureContextOptions {
  const o: SecureContextOptions = { cert: readPem(s.cert, `${prefix}cert`), key: readPem(s.key, `${prefix}key`), passphrase: s.passphrase };
  const t = s as TlsListenerSettings;
  if (t.ca !== undefined) o.ca = readPems(t.ca, 'ca');
  if (t.crl !== undefined) o.crl = readPems(t.crl, 'crl');
  if (t.ciphers !== undefined) o.ciphers = t.ciphers;
  if (t.ciphersuites !== undefined) {
    // Node.js takes TLS 1.3 suites in `ciphers` (names starting TLS_); it has no `ciphersuites` option. Keep
    // the TLS 1.2 part of the list (the default, or `ciphers`) and put the configured 1.3 suites in place
    // of the default ones.
    const tls12 = (t.ciphers ?? DEFAULT_CIPHERS).split(':').filter((c) => !c.startsWith('TLS_'));
    o.ciphers = [...t.ciphersuites.split(':'), ...tls12].join(':');
  }
  o.minVersion = t.minVersion ?? 'TLSv1.2';
  o.maxVersion = 'TLSv1.3';
  return o;
}

/** Builds and rebuilds the secure contexts of one listener. */
export class TlsContexts {
  private sniContexts = new Map<string, SecureContext>();
  private watcher: FileWatcher | undefined;
  private applyTo: ((options: SecureContextOptions) => void) | undefined;

  constructor(
    readonly settings: TlsListenerSettings,
    private readonly logger: Logger,
    private readonly name: () => string,
  ) {
    // Fails fast (at listen) on unreadable files or a key that does not match.
    this.build();
  }

  /** Options for tls.createServer / https.createServer. */
  serverOptions(): NodeTlsOptions {
    const base = this.build();
    const requestCert = this.settings.requestCert ?? false;
    const options: NodeTlsOptions = {
      ...base.main,
      requestCert,
      // With a certificate required, OpenSSL refuses a client without one in the handshake, with the alert
      // that tells the client why (certificate required / handshake failure); an untrusted one is refused by
      // Node.js right after the handshake. Either way 'tlsClientError' follows, where refusedClient() names
      // the reason for the log; verifyClient() stays as the check on the sockets let through.
      rejectUnauthorized: requestCert,
    };
    if (this.settings.sni && Object.keys(this.settings.sni).length) {
      this.sniContexts = base.sni;
      options.SNICallback = (servername, cb) => cb(null, this.sniContexts.get(servername.toLowerCase()));
    }
    return options;
  }

  private build(): { main: SecureContextOptions; sni: Map<string, SecureContext> } {
    const main = contextOptions(this.settings);
    secureContext(main, this.settings); // validates
    const sni = new Map<string, SecureContext>();
    for (const [servername, files] of Object.entries(this.settings.sni ?? {})) {
      sni.set(servername.toLowerCase(), secureContext({ ...main, ...contextOptions({ ...this.settings, ...files }, `sni.${servername}.`) }, files, `sni.${servername}.`));
    }
    return { main, sni };
  }

  /** Starts watching the PEM files; `apply` is server.setSecureContext. */
  watch(apply: (options: SecureContextOptions) => void): void {
    this.applyTo = apply;
    this.watchFiles();
  }

  private watched = '';

  /** Watches the files the settings name now (again after a reload whose settings name others, e.g. a crl added). */
  private watchFiles(): void {
    const s = this.settings;
    const files = [s.cert, s.key, ...list(s.ca), ...list(s.crl), ...Object.values(s.sni ?? {}).flatMap((f) => [f.cert, f.key])].filter(isPath);
    const key = files.join('\n');
    if (key === this.watched) return;
    this.watcher?.close();
    this.watcher = files.length ? watchFiles(files, () => this.reload()) : undefined;
    this.watched = key;
  }

  /** Re-reads the certificates; new connections use them, live ones are untouched. A broken set is logged and ignored. */
  reload(): boolean {
    if (!this.applyTo) return false;
    try {
      const { main, sni } = this.build();
      this.applyTo(main);
      this.sniContexts = sni;
      this.watchFiles();
      const crl = list(this.settings.crl).length;
      this.logger.info({ listener: this.name(), ...(crl ? { crl } : {}) }, 'TLS certificates reloaded');
      return true;
    } catch (err) {
      this.logger.error({ listener: this.name(), error: (err as Error).message }, 'TLS certificates not reloaded; keeping the previous ones');
      return false;
    }
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

/** Identity fields of a peer certificate. */
export function certificateIdentity(socket: TLSSocket): CertificateIdentity | undefined {
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const cn = cert.subject?.CN;
  const san = (cert.subjectaltname ?? '')
    .split(/,\s*/)
    .map((entry) => entry.slice(entry.indexOf(':') + 1))
    .filter((v) => v !== '');
  return { cn: Array.isArray(cn) ? cn[0] : cn, san, fingerprint256: cert.fingerprint256 };
}

/**
 * Mutual TLS check after the handshake: undefined when the client is verified (or no certificate
 * is required), else why it is refused ("no client certificate", "CERT_HAS_EXPIRED", ...).
 */
export function verifyClient(socket: TLSSocket, settings: TlsListenerSettings): string | undefined {
  if (!settings.requestCert) return undefined;
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return 'no client certificate';
  if (!socket.authorized) return untrusted(socket.authorizationError);
  return undefined;
}

/**
 * Why a mutual TLS handshake failed because of the client's certificate, for the log ("no client
 * certificate", "client certificate not trusted: CERT_HAS_EXPIRED"); undefined for other failures.
 */
export function refusedClient(err: Error & { code?: string }, socket: TLSSocket, settings: TlsListenerSettings): string | undefined {
  if (!settings.requestCert) return undefined;
  if (err.code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'no client certificate';
  // set by Node.js when it verified the certificate, just before it destroyed the socket
  if (socket.authorizationError) return untrusted(socket.authorizationError);
  return undefined;
}

/** Why OpenSSL did not accept a client certificate, in words (the CRL cases name the setting to look at). */
function untrusted(error: Error | string): string {
  const code = typeof error === 'string' ? error : ((error as Error & { code?: string }).code ?? '');
  if (code === 'CERT_REVOKED') return 'client certificate revoked (listed in the listener\'s crl)';
  if (code === 'UNABLE_TO_GET_CRL') return "client certificate not trusted: no CRL from its CA in the listener's crl (with crl set, every CA needs one)";
  if (code === 'CRL_HAS_EXPIRED') return "client certificate not trusted: the listener's CRL from its CA has expired (its nextUpdate has passed)";
  return `client certificate not trusted: ${String(error)}`;
}

/** The username / Client ID the certificate provides, per the listener settings. */
export function identityFields(
  identity: CertificateIdentity | undefined,
  settings: TlsListenerSettings,
): { identityUsername?: string; identityClientId?: string; identityMissing?: string } {
  if (!identity) return {};
  const pick = (what: 'cn' | 'san' | undefined) => (what === 'cn' ? identity.cn : what === 'san' ? identity.san[0] : undefined) || undefined;
  const out: { identityUsername?: string; identityClientId?: string; identityMissing?: string } = {};
  const u = pick(settings.peerCertAsUsername);
  const c = pick(settings.peerCertAsClientId);
  if (u !== undefined) out.identityUsername = u;
  if (c !== undefined) out.identityClientId = c;
  // A certificate without the configured field must not let the CONNECT's own username / Client ID through.
  if (settings.peerCertAsUsername !== undefined && u === undefined) out.identityMissing = `client certificate has no ${settings.peerCertAsUsername.toUpperCase()} to use as username`;
  else if (settings.peerCertAsClientId !== undefined && c === undefined) out.identityMissing = `client certificate has no ${settings.peerCertAsClientId.toUpperCase()} to use as Client ID`;
  return out;
}
