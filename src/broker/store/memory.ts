// The in-memory stores: a broker without storage and without a cluster. The session state itself lives in
// the Session objects; this store only says there is nothing to record and nothing to load.
import type { RouteTable, SessionJournal, SessionStore, StoredSession } from './types.js';

export class MemorySessionStore implements SessionStore {
  readonly durable = false;

  load(): Iterable<StoredSession> {
    return [];
  }

  journal(): SessionJournal | undefined {
    return undefined;
  }

  afterCommit(done: () => void): void {
    done();
  }

  close(): void {}
}

/** A single node: no other node wants anything. */
export class SingleNodeRoutes implements RouteTable {
  readonly hasRemoteNodes = false;
  addRoute(): void {}
  deleteRoute(): void {}
  remoteNodes(): readonly string[] {
    return [];
  }
}
