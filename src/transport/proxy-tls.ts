// Behind a proxy that terminates TLS (HAProxy with send-proxy-v2-ssl-cn): the client's TLS facts from the
// PROXY v2 header become what a tls listener would have found itself (secure, certificate, identity), so
// peerCertAsUsername and certCN ACL rules work the same. Only for a header from a trusted proxy.
import type { CertificateIdentity } from '../broker/hooks.js';
import type { ProxyTlsInfo } from './proxy-protocol.js';

export interface ProxiedTlsSettings {
  /** Use the client certificate's Common Name as the username (the PROXY header carries the CN, not the SANs). */
  peerCertAsUsername?: 'cn';
  /** ... or as the Client ID. */
  peerCertAsClientId?: 'cn';
}

export interface ProxiedTlsFields {
  secure: boolean;
  certificate?: CertificateIdentity;
  identityUsername?: string;
  identityClientId?: string;
  identityMissing?: string;
}

/**
 * The TransportInfo fields for a connection whose proxy reported `tls` (undefined: no PP2_TYPE_SSL TLV).
 * A certificate counts only when the proxy says the client presented one and it verified it (verify 0:
 * HAProxy reports 0 too when no certificate was presented, hence both).
 */
export function proxiedTlsFields(tls: ProxyTlsInfo | undefined, settings: ProxiedTlsSettings): ProxiedTlsFields {
  const out: ProxiedTlsFields = { secure: tls?.ssl === true };
  const verified = tls !== undefined && tls.ssl && tls.clientCert && tls.verify === 0;
  if (verified) out.certificate = { cn: tls.cn, san: [] };
  const cn = verified ? tls.cn || undefined : undefined;
  if (settings.peerCertAsUsername === 'cn' && cn !== undefined) out.identityUsername = cn;
  if (settings.peerCertAsClientId === 'cn' && cn !== undefined) out.identityClientId = cn;
  if ((settings.peerCertAsUsername || settings.peerCertAsClientId) && cn === undefined) {
    // The CONNECT's own username / Client ID must not stand in for a certificate the proxy did not vouch for.
    out.identityMissing = !tls?.ssl
      ? 'the proxy reported no TLS for this client (PROXY v2 header without an SSL TLV)'
      : !tls.clientCert
        ? 'no client certificate (reported by the proxy)'
        : tls.verify !== 0
          ? `client certificate not verified by the proxy (verify result ${tls.verify})`
          : `the proxy sent no certificate CN to use as ${settings.peerCertAsUsername ? 'username' : 'Client ID'} (HAProxy: send-proxy-v2-ssl-cn)`;
  }
  return out;
}
