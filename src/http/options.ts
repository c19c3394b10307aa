// Settings of the HTTP listener (metrics, health, JSON API, dashboard), as a config file or createBroker() gives them.

/** Endpoints that may answer without the API token. */
export type PublicEndpoint = 'metrics' | 'health' | 'ready';

export interface HttpListenerOptions {
  type: 'http';
  /** Default 127.0.0.1: the API can kick clients and publish, so it is not on every interface unless asked. */
  host?: string;
  /** Default 18083 (EMQX's dashboard port). */
  port?: number;
  /** Name in logs; default "http:<port>". */
  name?: string;
  /**
   * File holding the bearer token for /api/* (its first line, surrounding blanks ignored). Re-read when it
   * changes and on SIGHUP. Default: `<dataDir>/http-token`, created with a random token (mode 0600) if missing.
   */
  tokenFile?: string;
  /** Endpoints answered without the token (default all three: metrics, health, ready). */
  publicEndpoints?: PublicEndpoint[];
  /** Serve the dashboard at / (default true). */
  dashboard?: boolean;
  /** Connection history: events kept per Client ID (default 32), and Client IDs remembered (default 10000). */
  historySize?: number;
  historyClients?: number;
}

export const DEFAULT_HTTP_PORT = 18083;
export const DEFAULT_HTTP_HOST = '127.0.0.1';
export const DEFAULT_DATA_DIR = './petrel-data';
export const TOKEN_FILE_NAME = 'http-token';
export const PUBLIC_ENDPOINTS: readonly PublicEndpoint[] = ['metrics', 'health', 'ready'];
export const DEFAULT_HISTORY_SIZE = 32;
export const DEFAULT_HISTORY_CLIENTS = 10_000;
