// Why a connection ended or was refused, as a short label with few values: the `reason` of metrics and the
// `cause` of connection history entries. The broker's own reason strings are free text; these are not.
import { ReasonCode, reasonName } from '../protocol/constants.js';

/** "0x86 Bad User Name or Password" → "bad_user_name_or_password". */
export function codeLabel(code: number): string {
  return reasonName(code)
    .replace(/^0x[0-9a-f]+ /, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_');
}

/** "0x86" */
export const codeHex = (code: number): string => `0x${code.toString(16).padStart(2, '0')}`;

const BY_CODE: Record<number, string> = {
  [ReasonCode.SessionTakenOver]: 'takeover',
  [ReasonCode.KeepAliveTimeout]: 'keep_alive_timeout',
  [ReasonCode.AdministrativeAction]: 'administrative_action',
  [ReasonCode.ServerShuttingDown]: 'server_shutdown',
};

/** Refusals counted as authentication failures: bad credentials, not authorized, unknown authentication method. */
export const AUTH_FAILURE_CODES: ReadonlySet<number> = new Set([ReasonCode.BadUserNameOrPassword, ReasonCode.NotAuthorized, ReasonCode.BadAuthenticationMethod]);

/** The cause of a disconnection, from what the broker reported. */
export function disconnectCause(reason: string, code: number | undefined): string {
  if (reason === 'client disconnected') return 'client_disconnect';
  if (reason.startsWith('slow consumer')) return 'slow_consumer';
  if (reason.startsWith('connection lost')) return 'connection_lost';
  if (reason.includes('connect timeout')) return 'connect_timeout';
  if (code !== undefined && code >= 0x80) return BY_CODE[code] ?? codeLabel(code);
  if (reason.startsWith('invalid CONNECT') || reason === 'first packet was not CONNECT') return 'protocol_error';
  return 'other';
}
