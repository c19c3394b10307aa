// What the client session tracks for each request of the application: the request on its way
// from the queue to the wire, and the in-flight entry until its acknowledgement.
import type { Properties, PublishPacket, Subscription } from '../protocol/index.js';
import type { PublishResult, SubscribeResult, UnsubscribeResult } from './types.js';

export interface Deferred<T> {
  resolve: (value: T) => void;
  reject: (error: Error) => void;
}

/** A request of the application (or a resubscription), from the queue to its acknowledgement. */
export type Request =
  | { kind: 'publish'; packet: PublishPacket; deferred: Deferred<PublishResult>; offline: boolean; cancelled?: boolean }
  | { kind: 'subscribe'; subscriptions: Subscription[]; properties?: Properties; deferred: Deferred<SubscribeResult[]>; internal?: boolean; cancelled?: boolean }
  | { kind: 'unsubscribe'; topicFilters: string[]; properties?: Properties; deferred: Deferred<UnsubscribeResult[]>; cancelled?: boolean };

export type PublishRequest = Extract<Request, { kind: 'publish' }>;
export type SubscriptionRequest = Exclude<Request, { kind: 'publish' }>;

export type Inflight =
  | {
      kind: 'publish';
      request: PublishRequest;
      stage: 'ack' | 'rec' | 'comp';
      result?: PublishResult;
      /** Sent on an earlier connection of the kept session, not yet again on this one (holds no Receive Maximum slot). */
      resend?: boolean;
      /** Order in which its PUBREC came: PUBRELs are resent in that order [MQTT-4.6.0-3]. */
      pubrecOrder?: number;
    }
  | { kind: 'subscribe' | 'unsubscribe'; request: SubscriptionRequest };
