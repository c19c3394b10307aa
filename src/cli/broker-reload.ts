// SIGHUP re-reads the config file of `petrel broker`: what a running broker can take is applied, the rest
// is named in the log as needing a restart (nothing is silently ignored).
//
// A TLS listener builds its secure context from its settings object each time it reloads, and that object
// is the one the CLI gave createBroker(): changed file settings (cert, key, ca, crl, ...) are written into
// it, and the reload that follows builds the new context (new connections use it; live ones are untouched).
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { FileConfig } from '../config/config.js';

/** Listener settings read again at each TLS reload (TlsContexts.build) or at each connection (identity). */
const APPLIED_ON_RELOAD = ['cert', 'key', 'passphrase', 'ca', 'crl', 'sni', 'ciphers', 'ciphersuites', 'minVersion', 'peerCertAsUsername', 'peerCertAsClientId'];
/** Top-level keys whose files are reloaded anyway, or which only name the file (its content is what reloads). */
const RELOADED_FILES = ['passwordFile', 'acl', 'listeners', 'logLevel'];

type Listener = Record<string, unknown>;

export function applyConfigChanges(running: FileConfig, reread: () => FileConfig, logger: Logger, file: string): void {
  let next: FileConfig;
  try {
    next = reread();
  } catch (err) {
    logger.error({ file, error: (err as Error).message }, 'config file not re-read (fix it and send SIGHUP again); the broker keeps its settings');
    return;
  }
  const restart: string[] = [];
  for (const key of new Set([...Object.keys(running), ...Object.keys(next)])) {
    if (RELOADED_FILES.includes(key)) continue;
    if (!isDeepStrictEqual((running as Listener)[key], (next as Listener)[key])) restart.push(key);
  }
  if (!isDeepStrictEqual(running.passwordFile, next.passwordFile)) restart.push('passwordFile');
  if (!isDeepStrictEqual(running.acl, next.acl)) restart.push('acl');
  const before = (running.listeners ?? []) as unknown as Listener[];
  const after = (next.listeners ?? []) as unknown as Listener[];
  if (before.length !== after.length) restart.push(`listeners (${before.length} → ${after.length})`);
  before.forEach((listener, i) => {
    const changed = after[i];
    if (!changed) return;
    const where = `listeners[${i}]`;
    const keys = [...new Set([...Object.keys(listener), ...Object.keys(changed)])].filter((k) => !isDeepStrictEqual(listener[k], changed[k]));
    const applied = keys.filter((k) => APPLIED_ON_RELOAD.includes(k));
    const notApplied = keys.filter((k) => !APPLIED_ON_RELOAD.includes(k));
    // requestCert is fixed when the listener opens: a crl added with it can only apply after a restart
    if (notApplied.length === 0 && applied.length > 0) {
      for (const k of applied) {
        if (changed[k] === undefined) delete listener[k];
        else listener[k] = changed[k];
      }
      logger.info({ listener: where, changed: applied, file }, 'config file: TLS settings applied; new connections use them');
    } else if (keys.length > 0) restart.push(...keys.map((k) => `${where}.${k}`));
  });
  if (restart.length > 0) logger.warn({ file, changed: restart }, 'config file: these changes need a restart of the broker (SIGHUP applies TLS files, the password file and the ACL only)');
}
