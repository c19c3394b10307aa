// `petrel broker --http-port PORT [--http-host HOST] [--http-token-file FILE]`: the HTTP listener from flags.
import { ConfigError, validateConfig, type FileConfig } from '../config/config.js';
import { DEFAULT_LISTENERS } from '../server/broker.js';
import type { HttpListenerOptions } from './options.js';

export interface HttpFlags {
  httpPort?: string;
  httpHost?: string;
  httpTokenFile?: string;
}

/**
 * Adds an http listener to the configuration (or sets the port, host and token file of the one it has). The
 * MQTT listeners stay as they were: the defaults, `--port`/`--host`, or the configured `listeners`.
 */
export function applyHttpFlags(config: FileConfig, flags: HttpFlags): FileConfig {
  if (flags.httpPort === undefined && flags.httpHost === undefined && flags.httpTokenFile === undefined) return config;
  const settings: Partial<HttpListenerOptions> = {};
  if (flags.httpPort !== undefined) {
    const text = flags.httpPort.trim();
    const port = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(port <= 65535)) throw new ConfigError(`--http-port: must be a whole number from 0 to 65535 (got "${flags.httpPort}")`);
    settings.port = port;
  }
  if (flags.httpHost !== undefined) settings.host = flags.httpHost;
  if (flags.httpTokenFile !== undefined) settings.tokenFile = flags.httpTokenFile;
  const { host, port, listeners, ...rest } = config;
  const list = listeners ?? (port !== undefined || host !== undefined ? [{ type: 'tcp' as const, host: host ?? '0.0.0.0', port: port ?? 1883 }] : DEFAULT_LISTENERS);
  const existing = list.findIndex((l) => l.type === 'http');
  const updated = existing >= 0 ? list.map((l, i) => (i === existing ? { ...l, ...settings } : l)) : [...list, { type: 'http' as const, ...settings }];
  return validateConfig({ ...rest, listeners: updated });
}
