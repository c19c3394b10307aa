// The children of one level in a tree of topic levels (the router's filters, the retained store's topics).
// Most levels have a single child (`device/17/temp`): it is kept in `onlyName`/`only`, and a Map (~170 B
// empty) is made from the second child on. A filter or topic is at most maxTopicLevels deep, but its
// levels are one node each, so a node's size is what a client can make the broker hold per level.

export interface LevelBranch<N> {
  onlyName: string | undefined;
  only: N | undefined;
  children: Map<string, N> | undefined;
}

const DOLLAR = 0x24;

export function childOf<N extends LevelBranch<N>>(node: N, name: string): N | undefined {
  if (node.children !== undefined) return node.children.get(name);
  return node.onlyName === name ? node.only : undefined;
}

/** Adds `child` under `name` (which must not be there yet) and returns it. */
export function addChild<N extends LevelBranch<N>>(node: N, name: string, child: N): N {
  if (node.children !== undefined) {
    node.children.set(name, child);
  } else if (node.only === undefined) {
    node.onlyName = name;
    node.only = child;
  } else {
    node.children = new Map([[node.onlyName!, node.only]]);
    node.children.set(name, child);
    node.onlyName = node.only = undefined;
  }
  return child;
}

export function removeChild<N extends LevelBranch<N>>(node: N, name: string): void {
  if (node.children === undefined) {
    if (node.onlyName === name) node.onlyName = node.only = undefined;
    return;
  }
  node.children.delete(name);
  if (node.children.size === 1) {
    const [onlyName, only] = node.children.entries().next().value!;
    node.onlyName = onlyName;
    node.only = only;
    node.children = undefined;
  }
}

export const hasChildren = <N extends LevelBranch<N>>(node: N): boolean => node.only !== undefined || node.children !== undefined;

/** Calls `fn` with each child of `node` in the order they were added (skipping top-level '$' names when `skipDollar`). */
export function eachChild<N extends LevelBranch<N>>(node: N, skipDollar: boolean, fn: (child: N) => void): void {
  if (node.children !== undefined) {
    for (const [name, child] of node.children) if (!(skipDollar && name.charCodeAt(0) === DOLLAR)) fn(child);
  } else if (node.only !== undefined && !(skipDollar && node.onlyName!.charCodeAt(0) === DOLLAR)) {
    fn(node.only);
  }
}
