// A bounded cache of the ACL's read answer per (client, topic): with Mosquitto's semantics every delivered
// message is checked for read access (Acl.canReceive walks every rule), while a subscriber mostly receives on
// the same few topics. The answer depends only on the rules and the client's identity, so an entry is kept
// until the ACL is reloaded (its generation changes) or the client's identity changes.
import type { ClientInfo } from '../broker/hooks.js';
import type { Acl } from './acl.js';

/** Topics remembered per client by default: a subscriber to many distinct topics still pays for its misses only. */
export const DEFAULT_RECEIVE_CACHE = 256;

type Client = Pick<ClientInfo, 'clientId' | 'username' | 'remoteAddress' | 'certificateCN'>;

/**
 * One client's answers. Two generations approximate an LRU at the cost of one Map lookup per hit: new answers go
 * to `hot`; when it is full it becomes `cold` (the previous cold is dropped) and a cold answer used again moves
 * back to hot. At most `2 × half` topics are held.
 */
interface Entry {
  generation: number;
  // The identity the answers were computed for (the fields the ACL's rules read).
  clientId: string;
  username: string | undefined;
  remoteAddress: string;
  certificateCN: string | undefined;
  hot: Map<string, boolean>;
  cold: Map<string, boolean> | undefined;
}

export class AclReceiveCache {
  // Keyed by the ClientInfo object: a new connection brings a new one, and an entry goes with its client.
  private entries = new WeakMap<Client, Entry>();
  private readonly half: number;
  /** Answers given from the cache, and computed by the ACL (for tests and metrics). */
  hits = 0;
  misses = 0;

  /** `perClient`: topics remembered per client (at least 2). */
  constructor(
    private readonly acl: Acl,
    perClient = DEFAULT_RECEIVE_CACHE,
  ) {
    this.half = Math.max(1, Math.floor(perClient / 2));
  }

  /** Acl.canReceive(client, topic), remembered. */
  canReceive(client: Client, topic: string): boolean {
    const entry = this.entryOf(client);
    let answer = entry.hot.get(topic);
    if (answer !== undefined) {
      this.hits++;
      return answer;
    }
    answer = entry.cold?.get(topic);
    if (answer !== undefined) this.hits++;
    else {
      this.misses++;
      answer = this.acl.canReceive(client, topic);
    }
    if (entry.hot.size >= this.half) {
      entry.cold = entry.hot;
      entry.hot = new Map();
    }
    entry.hot.set(topic, answer);
    return answer;
  }

  /** Topics remembered for `client` now. */
  sizeOf(client: Client): number {
    const entry = this.entries.get(client);
    return entry === undefined ? 0 : entry.hot.size + (entry.cold?.size ?? 0);
  }

  /** Forgets every answer (the ACL's generation does this by itself on reload). */
  clear(): void {
    this.entries = new WeakMap();
  }

  private entryOf(client: Client): Entry {
    const entry = this.entries.get(client);
    const generation = this.acl.generation;
    if (
      entry !== undefined &&
      entry.generation === generation &&
      entry.clientId === client.clientId &&
      entry.username === client.username &&
      entry.remoteAddress === client.remoteAddress &&
      entry.certificateCN === client.certificateCN
    ) {
      return entry;
    }
    const fresh: Entry = {
      generation,
      clientId: client.clientId,
      username: client.username,
      remoteAddress: client.remoteAddress,
      certificateCN: client.certificateCN,
      hot: new Map(),
      cold: undefined,
    };
    this.entries.set(client, fresh);
    return fresh;
  }
}
