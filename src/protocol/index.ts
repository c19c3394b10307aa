export * from './constants.js';
export * from './packets.js';
export * from './properties.js';
export * from './errors.js';
export * from './decoder.js';
export * from './encoder.js';
export * from './topic.js';
