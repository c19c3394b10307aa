// MQTT 5.0 enhanced authentication (4.12): a pluggable challenge/response exchange carried by
// CONNECT, AUTH and CONNACK packets. A method is a factory of per-connection exchanges.
import type { MaybePromise } from './hooks.js';

export type AuthStepResult =
  /** Send this data in AUTH 0x18 and wait for the client's next AUTH. */
  | { result: 'continue'; data: Buffer }
  /** Authenticated; `data` (if any) goes in the CONNACK (or the AUTH 0x00 of a re-authentication). */
  | { result: 'success'; data?: Buffer; username?: string }
  /** Refused: CONNACK (or DISCONNECT on re-authentication) with `reasonCode` (default 0x87 Not authorized). */
  | { result: 'failure'; reasonCode?: number; reason?: string };

export interface AuthExchange {
  /** Called with the Authentication Data of CONNECT (or of the AUTH 0x19 that starts a re-authentication), then of each AUTH 0x18. */
  step(data: Buffer | undefined): MaybePromise<AuthStepResult>;
}

export interface AuthMethod {
  /** The Authentication Method name, e.g. "SCRAM-SHA-256". */
  readonly name: string;
  /** A new exchange for one client (on CONNECT or re-authentication). */
  begin(client: { clientId: string; username?: string; remoteAddress: string }): AuthExchange;
}
