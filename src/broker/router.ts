// The local subscription index: a trie of topic filters, one level per node, each subscription with its
// subscriber (a session, for the broker), and a cache of the matches of exact topic names (most traffic
// repeats a small set of topics). Which *nodes* want a topic is another question (store/types.ts RouteTable).
import { addChild, childOf, hasChildren, removeChild, type LevelBranch } from './level-tree.js';
import type { SubscriptionEntry } from './store/types.js';

export type { SubscriptionEntry };

/** A subscription and whoever receives through it. */
interface Subscribed<S> {
  entry: SubscriptionEntry;
  subscriber: S;
}

/**
 * One level of the filters. Its collections are made when first needed: with three empty Maps per level a
 * filter cost ~600 B of heap per level, so a 64 KiB SUBSCRIBE of 32,000 levels held 19 MB.
 */
interface TrieNode<S> extends LevelBranch<TrieNode<S>> {
  /** Ordinary subscriptions ending at this node, by Client ID. */
  subscribers: Map<string, Subscribed<S>> | undefined;
  /** Shared subscriptions ending at this node: group name → members by Client ID. */
  groups: Map<string, Map<string, Subscribed<S>>> | undefined;
}

/** Topics with more levels are matched without recursion (walkDeep). */
const MAX_RECURSIVE_LEVELS = 1000;

function newNode<S>(): TrieNode<S> {
  return { onlyName: undefined, only: undefined, children: undefined, subscribers: undefined, groups: undefined };
}
const isEmpty = <S>(n: TrieNode<S>): boolean => !hasChildren(n) && !n.subscribers?.size && !n.groups?.size;

/** The members of one shared group that match, and their subscribers (same order). */
export interface GroupMatch<S> {
  key: string;
  members: SubscriptionEntry[];
  subscribers: S[];
}

export interface MatchResult<S> {
  /** Every ordinary subscription that matches (a client appears once per matching filter). */
  entries: SubscriptionEntry[];
  /** The subscriber of each entry (same index). */
  subscribers: S[];
  /** Every shared group that matches (the caller picks one member). */
  groups: GroupMatch<S>[];
  /** Some client appears in `entries` more than once (overlapping filters): its deliveries must be merged. */
  overlapping: boolean;
  /** A subscription to exactly this topic changed since: whoever kept this result must match again. */
  stale: boolean;
}

/** A match with nothing in it yet; every result has this one shape. */
function newMatchResult<S>(): MatchResult<S> {
  return { entries: [], subscribers: [], groups: [], overlapping: false, stale: false };
}

const EMPTY: MatchResult<never> = newMatchResult();

/** One publisher's last topic and its match: see TopicRouter.matchRemembered. */
export interface RouteMemo<S> {
  topic: string;
  version: number;
  result: MatchResult<S>;
}

export function newRouteMemo<S>(): RouteMemo<S> {
  return { topic: '', version: -1, result: EMPTY };
}
const CACHE_LIMIT = 10_000;

/** What add() and remove() changed: whether the filter gained its first or lost its last subscription. */
export const enum FilterChange {
  None = 0,
  Subscription = 1,
  Filter = 2,
}

export class TopicRouter<S> {
  private readonly root = newNode<S>();
  private readonly cache = new Map<string, MatchResult<S>>();
  private count = 0;
  /**
   * Changes when a subscription with a wildcard is added or removed (any topic's match may change), when the
   * cache is emptied, and with the first subscription: a match remembered under another version is stale.
   * A change to an exact filter marks only that topic's cached match stale.
   */
  private version = 0;

  /** Number of subscriptions (ordinary and shared) held. */
  get size(): number {
    return this.count;
  }

  /** Exact-topic matches held in the cache (for tests: it must stay bounded and follow removals). */
  get cacheSize(): number {
    return this.cache.size;
  }

  /** Does the filter tree hold any level? False again once every filter is removed (for tests: no level left behind). */
  get holdsLevels(): boolean {
    return hasChildren(this.root);
  }

  /**
   * Adds or replaces the subscription of `entry.clientId` to `entry.filter` (in `entry.shareGroup`). Returns
   * None when it replaced one, Subscription when it is new, Filter when it is the filter's first.
   */
  add(entry: SubscriptionEntry, subscriber: S): FilterChange {
    let node = this.root;
    for (const level of entry.filter.split('/')) node = childOf(node, level) ?? addChild(node, level, newNode<S>());
    const firstOnFilter = !node.subscribers?.size && !node.groups?.size;
    let map: Map<string, Subscribed<S>>;
    if (entry.shareGroup === undefined) {
      map = node.subscribers ??= new Map();
    } else {
      const groups = (node.groups ??= new Map());
      let group = groups.get(entry.shareGroup);
      if (!group) {
        group = new Map();
        groups.set(entry.shareGroup, group);
      }
      map = group;
    }
    const existed = map.has(entry.clientId);
    map.set(entry.clientId, { entry, subscriber });
    // Matches made while there was no subscription at all (EMPTY) are in no cache: they go by the version.
    if (!existed && this.count++ === 0) this.version++;
    this.invalidate(entry.filter);
    return existed ? FilterChange.None : firstOnFilter ? FilterChange.Filter : FilterChange.Subscription;
  }

  /** Removes a subscription: None when there was none, Filter when it was the filter's last. */
  remove(clientId: string, filter: string, shareGroup?: string): FilterChange {
    const path: TrieNode<S>[] = [this.root];
    const levels = filter.split('/');
    let node = this.root;
    for (const level of levels) {
      const child = childOf(node, level);
      if (!child) return FilterChange.None;
      node = child;
      path.push(node);
    }
    let removed: boolean;
    if (shareGroup === undefined) {
      removed = node.subscribers?.delete(clientId) ?? false;
      if (node.subscribers?.size === 0) node.subscribers = undefined;
    } else {
      const group = node.groups?.get(shareGroup);
      removed = group?.delete(clientId) ?? false;
      if (group && group.size === 0) node.groups!.delete(shareGroup);
      if (node.groups?.size === 0) node.groups = undefined;
    }
    if (!removed) return FilterChange.None;
    this.count--;
    this.invalidate(filter);
    const lastOnFilter = !node.subscribers?.size && !node.groups?.size;
    // Prune empty nodes bottom-up so the trie does not grow with churn.
    for (let i = levels.length; i > 0; i--) {
      if (!isEmpty(path[i]!)) break;
      removeChild(path[i - 1]!, levels[i - 1]!);
    }
    return lastOnFilter ? FilterChange.Filter : FilterChange.Subscription;
  }

  /** Members of shared group `group` on exactly `filter`, with their subscribers. */
  groupMembers(group: string, filter: string): { members: SubscriptionEntry[]; subscribers: S[] } {
    let node: TrieNode<S> | undefined = this.root;
    for (const level of filter.split('/')) {
      node = childOf(node, level);
      if (!node) return { members: [], subscribers: [] };
    }
    const members: SubscriptionEntry[] = [];
    const subscribers: S[] = [];
    for (const m of node.groups?.get(group)?.values() ?? []) {
      members.push(m.entry);
      subscribers.push(m.subscriber);
    }
    return { members, subscribers };
  }

  /**
   * A subscription to `filter` was added, replaced or removed. An exact filter matches one topic name, the
   * same string: only that topic's cached match changes, so a client subscribing to its own topic does not
   * empty the cache every publisher relies on (with one such SUBSCRIBE and UNSUBSCRIBE per 1000 messages,
   * 1000 pairs cost ~1100 ns per message in the core when they did, ~440 now). A wildcard may match any
   * cached topic.
   */
  private invalidate(filter: string): void {
    if (filter.includes('+') || filter.includes('#')) {
      this.cache.clear();
      this.version++;
      return;
    }
    const cached = this.cache.get(filter);
    if (cached !== undefined) {
      cached.stale = true;
      this.cache.delete(filter);
    }
  }

  /** All subscriptions matching topic name `topic`. The result is shared: do not mutate it. */
  match(topic: string): MatchResult<S> {
    const cached = this.cache.get(topic);
    if (cached) return cached;
    if (this.count === 0) return EMPTY;
    const result = newMatchResult<S>();
    const levels = topic.split('/');
    // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic starting with '$'.
    const dollar = topic.charCodeAt(0) === 0x24; /* $ */
    if (levels.length <= MAX_RECURSIVE_LEVELS) this.walk(this.root, levels, 0, result, dollar);
    else this.walkDeep(levels, result, dollar);
    // Worked out once per cached topic, so a fan-out to distinct clients needs no merging per message.
    if (result.entries.length > 1) result.overlapping = new Set(result.entries.map((e) => e.clientId)).size < result.entries.length;
    if (this.cache.size >= CACHE_LIMIT) {
      // Matches remembered outside the cache (RouteMemo) can no longer be marked stale: retire them all.
      this.cache.clear();
      this.version++;
    }
    this.cache.set(topic, result);
    return result;
  }

  /**
   * match(), remembered per publisher: a client that publishes to its last topic again (the same string,
   * see the decoder's topic memo) skips the lookup by topic name, as long as no subscription changed.
   */
  matchRemembered(topic: string, memo: RouteMemo<S>): MatchResult<S> {
    if (memo.topic === topic && memo.version === this.version && !memo.result.stale) return memo.result;
    const result = this.match(topic);
    memo.topic = topic;
    memo.version = this.version;
    memo.result = result;
    return result;
  }

  /** Depth first, the exact level before '+'. Recursive: each level of the topic is one call deep. */
  private walk(node: TrieNode<S>, levels: string[], depth: number, out: MatchResult<S>, dollar: boolean): void {
    const wildOk = !(dollar && depth === 0);
    if (wildOk) {
      const hash = childOf(node, '#');
      // 'a/#' also matches 'a' itself.
      if (hash) collect(hash, out);
    }
    if (depth === levels.length) {
      collect(node, out);
      return;
    }
    const exact = childOf(node, levels[depth]!);
    if (exact) this.walk(exact, levels, depth + 1, out, dollar);
    if (wildOk) {
      const plus = childOf(node, '+');
      if (plus) this.walk(plus, levels, depth + 1, out, dollar);
    }
  }

  /**
   * walk() with a stack of its own, for topics deeper than the call stack could follow (MQTT allows tens of
   * thousands of levels). The same visits in the same order, written twice on purpose: one walk with an
   * explicit stack for every topic cost 9-15 % more per uncached match (docs/performance.md), and
   * test/broker/router.test.ts checks both against topicMatches.
   */
  private walkDeep(levels: string[], out: MatchResult<S>, dollar: boolean): void {
    const nodes: TrieNode<S>[] = [this.root];
    const depths: number[] = [0];
    while (nodes.length > 0) {
      const node = nodes.pop()!;
      const depth = depths.pop()!;
      const wildOk = !(dollar && depth === 0);
      if (wildOk) {
        const hash = childOf(node, '#');
        if (hash) collect(hash, out);
      }
      if (depth === levels.length) {
        collect(node, out);
        continue;
      }
      // Pushed first, visited last.
      const plus = wildOk ? childOf(node, '+') : undefined;
      if (plus) {
        nodes.push(plus);
        depths.push(depth + 1);
      }
      const exact = childOf(node, levels[depth]!);
      if (exact) {
        nodes.push(exact);
        depths.push(depth + 1);
      }
    }
  }
}

function collect<S>(node: TrieNode<S>, out: MatchResult<S>): void {
  if (node.subscribers !== undefined) {
    for (const s of node.subscribers.values()) {
      out.entries.push(s.entry);
      out.subscribers.push(s.subscriber);
    }
  }
  if (node.groups === undefined) return;
  for (const [name, group] of node.groups) {
    if (group.size === 0) continue;
    const members: SubscriptionEntry[] = [];
    const subscribers: S[] = [];
    for (const m of group.values()) {
      members.push(m.entry);
      subscribers.push(m.subscriber);
    }
    out.groups.push({ key: `${name}/${members[0]!.filter}`, members, subscribers });
  }
}
