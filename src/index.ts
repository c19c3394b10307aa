// Library entry: `import { createBroker } from 'petrel'`.
export { createBroker, Broker } from './server/broker.js';
export type { BrokerOptions, ListenerOptions, BrokerEventMap } from './server/broker.js';
export type { BrokerHooks, ClientInfo, AuthenticateRequest, DisconnectInfo } from './broker/hooks.js';
export type { BrokerLimits } from './broker/options.js';
export { DEFAULT_LIMITS } from './broker/options.js';
export type { OverloadOptions, OverloadView, ResourceSample } from './broker/overload.js';
export { machineLimits } from './server/machine-limits.js';
export type { Message } from './broker/message.js';
export type { BrokerInspector, ConnectionView, SessionView, SubscriptionView, BrokerCounts } from './broker/inspect.js';
export type { Clock } from './broker/core.js';
export * as protocol from './protocol/index.js';
