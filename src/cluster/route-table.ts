// The cluster's route table (EMQX's emqx_router on Redis): which nodes want which topics. This node's routes
// are counted here from the core's subscription changes and announced (cluster.ts writes them to Redis);
// the other nodes' routes are kept in a local index, the same topic trie the core matches subscriptions
// with (router.ts, with its per-topic cache), so choosing the nodes for a message is a local lookup.
//
// A route is a filter (some ordinary subscription on that node) or `$share/group/filter` (some member of that
// shared group on that node). A message goes to every node with a matching filter, and for each matching
// shared group to one node holding members, round robin over the nodes (this node included when it has
// members): that node then picks one of its own members, so each message reaches one member per group.
import { TopicRouter } from '../broker/router.js';
import type { Message } from '../broker/message.js';
import type { RouteTable, SubscriptionEntry } from '../broker/store/types.js';
import { isSysTopic } from '../broker/sys-topics.js';

/** Where the table hands messages for other nodes (the forwarder). */
export interface MessageSink {
  send(node: string, message: Message, plain: boolean, groups: readonly string[] | undefined): void;
}

/** The key of a route: the filter, or `$share/group/filter`. */
export function routeKey(filter: string, shareGroup: string | undefined): string {
  return shareGroup === undefined ? filter : `$share/${shareGroup}/${filter}`;
}

function routeEntry(node: string, key: string): SubscriptionEntry {
  let filter = key;
  let shareGroup: string | undefined;
  if (key.startsWith('$share/')) {
    const slash = key.indexOf('/', 7);
    shareGroup = key.slice(7, slash);
    filter = key.slice(slash + 1);
  }
  return { clientId: node, filter, shareGroup, qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 };
}

interface Target {
  plain: boolean;
  groups: string[] | undefined;
}

export interface RouteTableView {
  node: string;
  localRoutes: number;
  remoteRoutes: number;
  remoteRoutesByNode: Record<string, number>;
}

export class ClusterRouteTable implements RouteTable {
  /** This node's routes: key → local subscriptions behind it. */
  private readonly local = new Map<string, number>();
  /** The other nodes' routes, matched like subscriptions (the "client" of each entry is a node name). */
  private readonly remote = new TopicRouter<string>();
  private readonly remoteKeys = new Map<string, Set<string>>();
  /** Round-robin turn per shared group (group/filter) across the nodes holding members. */
  private readonly cursor = new Map<string, number>();
  /** Called when this node gains its first or loses its last subscription behind a route key. */
  onLocalChange: ((key: string, added: boolean) => void) | undefined;
  sink: MessageSink | undefined;
  /** The whole cluster's view (cluster.ts), given by describe() once the node is connected. */
  viewer: (() => unknown) | undefined;

  constructor(readonly self: string) {}

  get hasRemoteNodes(): boolean {
    return this.remote.size > 0;
  }

  // Filter-level changes come through subscriptionChanged, which also says the share group.
  addRoute(): void {}
  deleteRoute(): void {}

  subscriptionChanged(entry: SubscriptionEntry, added: boolean): void {
    const key = routeKey(entry.filter, entry.shareGroup);
    const n = (this.local.get(key) ?? 0) + (added ? 1 : -1);
    if (n > 0) this.local.set(key, n);
    else this.local.delete(key);
    if ((added && n === 1) || (!added && n === 0)) this.onLocalChange?.(key, added);
  }

  /** This node's route keys (announced again after a reconnect). */
  localRoutes(): string[] {
    return [...this.local.keys()];
  }

  // ---- the other nodes' routes ----

  addRemote(node: string, key: string): void {
    if (node === this.self) return;
    let keys = this.remoteKeys.get(node);
    if (keys === undefined) this.remoteKeys.set(node, (keys = new Set()));
    if (keys.has(key)) return;
    keys.add(key);
    this.remote.add(routeEntry(node, key), node);
  }

  deleteRemote(node: string, key: string): void {
    const keys = this.remoteKeys.get(node);
    if (keys === undefined || !keys.delete(key)) return;
    const e = routeEntry(node, key);
    this.remote.remove(node, e.filter, e.shareGroup);
    if (keys.size === 0) this.remoteKeys.delete(node);
    if (e.shareGroup !== undefined) this.cursor.delete(`${e.shareGroup}/${e.filter}`);
  }

  /** Replaces everything known of `node` (a full re-read); an empty list forgets the node. */
  setRemote(node: string, keys: Iterable<string>): void {
    const next = new Set(keys);
    for (const key of [...(this.remoteKeys.get(node) ?? [])]) if (!next.has(key)) this.deleteRemote(node, key);
    for (const key of next) this.addRemote(node, key);
  }

  dropNode(node: string): void {
    this.setRemote(node, []);
  }

  remoteNodesKnown(): string[] {
    return [...this.remoteKeys.keys()];
  }

  remoteRouteCount(node?: string): number {
    if (node !== undefined) return this.remoteKeys.get(node)?.size ?? 0;
    let n = 0;
    for (const keys of this.remoteKeys.values()) n += keys.size;
    return n;
  }

  get localRouteCount(): number {
    return this.local.size;
  }

  remoteNodes(topic: string): readonly string[] {
    const m = this.remote.match(topic);
    const nodes = new Set<string>(m.subscribers);
    for (const g of m.groups) for (const n of g.subscribers) nodes.add(n);
    return [...nodes];
  }

  /** See RouteTable.forward. The broker's own $SYS topics stay on their node. */
  forward(message: Message, localGroups: readonly { key: string }[], skip: Set<string>): number {
    if (isSysTopic(message.topic) || this.sink === undefined) return 0;
    const m = this.remote.match(message.topic);
    const nodes = m.subscribers;
    if (m.groups.length === 0) {
      // The common case: ordinary subscriptions only; a node appears once per matching filter.
      if (nodes.length === 1) {
        this.sink.send(nodes[0]!, message, true, undefined);
        return 1;
      }
      if (nodes.length === 0) return 0;
    }
    const targets = new Map<string, Target>();
    for (const node of nodes) if (!targets.has(node)) targets.set(node, { plain: true, groups: undefined });
    for (const g of m.groups) {
      const local = localGroups.some((l) => l.key === g.key);
      // Nodes holding members (each once, in a stable order), this node last when it has some.
      const holders = [...new Set(g.subscribers)];
      if (local) holders.push(this.self);
      const turn = this.cursor.get(g.key) ?? 0;
      const chosen = holders[turn % holders.length]!;
      this.cursor.set(g.key, (turn + 1) % holders.length);
      if (chosen === this.self) continue;
      if (local) skip.add(g.key);
      let t = targets.get(chosen);
      if (t === undefined) targets.set(chosen, (t = { plain: false, groups: undefined }));
      (t.groups ??= []).push(g.key);
    }
    for (const [node, t] of targets) this.sink.send(node, message, t.plain, t.groups);
    return targets.size;
  }

  describe(): unknown {
    if (this.viewer !== undefined) return this.viewer();
    const byNode: Record<string, number> = {};
    for (const [node, keys] of this.remoteKeys) byNode[node] = keys.size;
    const view: RouteTableView = { node: this.self, localRoutes: this.local.size, remoteRoutes: this.remoteRouteCount(), remoteRoutesByNode: byNode };
    return view;
  }
}
