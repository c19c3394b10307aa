// The load generator behind `petrel bench` and bench/run.ts.
export { LatencyHistogram } from './histogram.js';
export type { LatencySummary } from './histogram.js';
export { LoadConnection, openLoadConnection } from './load-connection.js';
export { runBench, expandTopic } from './load-run.js';
export { formatSummary, plural } from './format.js';
export type { BenchMode, BenchOptions, BenchProgress, BenchSummary } from './types.js';
