// The `storage` option of a broker: which stores to use, opened and loaded, and the line saying so at start.
import type { RetainedStore, SessionStore } from '../broker/store/types.js';
import { SqliteRetainedStore } from './sqlite-retained.js';
import { SqliteSessionStore } from './sqlite-store.js';

export interface StorageOptions {
  /** 'sqlite': durable, in `dir`. 'memory': nothing outlives the process. */
  type: 'sqlite' | 'memory';
  /** The data directory (sqlite); default `./petrel-data`. */
  dir?: string;
  /** 'process' (default): nothing acknowledged is lost if the process dies (kill -9, OOM). 'power': nor if the machine loses power. */
  durability?: 'process' | 'power';
  /** The most the database file may grow to, in MB (default: no limit): beyond it, writes fail as on a full disk. */
  maxSizeMB?: number;
}

export const DEFAULT_DATA_DIR = './petrel-data';

export interface OpenedStorage {
  sessionStore: SessionStore;
  retainedStore: RetainedStore;
  file: string;
  durability: 'process' | 'power';
  retainedLoaded: number;
}

/** Checks the option: one line naming the field. */
export function storageOptionError(storage: unknown): string | undefined {
  if (storage === null || typeof storage !== 'object') return 'storage: must be an object { type, dir, durability }';
  const s = storage as Record<string, unknown>;
  for (const key of Object.keys(s)) if (key !== 'type' && key !== 'dir' && key !== 'durability' && key !== 'maxSizeMB') return `storage.${key}: unknown option (type, dir, durability, maxSizeMB)`;
  if (s.type !== 'sqlite' && s.type !== 'memory') return `storage.type: must be "sqlite" or "memory", not ${JSON.stringify(s.type)}`;
  if (s.dir !== undefined && (typeof s.dir !== 'string' || s.dir === '')) return 'storage.dir: must be a non-empty path';
  if (s.durability !== undefined && s.durability !== 'process' && s.durability !== 'power') return `storage.durability: must be "process" or "power", not ${JSON.stringify(s.durability)}`;
  if (s.maxSizeMB !== undefined && !(typeof s.maxSizeMB === 'number' && s.maxSizeMB > 0)) return 'storage.maxSizeMB: must be a positive number';
  return undefined;
}

/** Opens the SQLite stores (undefined for memory). Throws StorageError with one line naming the file or directory. */
export function openStorage(options: StorageOptions | undefined, warn: (message: string, context: Record<string, unknown>) => void, clock?: { now(): number }): OpenedStorage | undefined {
  if (options === undefined || options.type === 'memory') return undefined;
  const durability = options.durability ?? 'process';
  const sessionStore = SqliteSessionStore.open({ dir: options.dir ?? DEFAULT_DATA_DIR, durability, warn, clock, maxSizeMB: options.maxSizeMB });
  try {
    const retainedStore = new SqliteRetainedStore(sessionStore.storage);
    return { sessionStore, retainedStore, file: sessionStore.storage.file, durability, retainedLoaded: retainedStore.loaded };
  } catch (err) {
    sessionStore.close();
    throw err;
  }
}
