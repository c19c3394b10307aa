// The net effect of a list of session commands, for changes kept while Redis is away (redis-sessions-writer.ts):
// once they pass a bound they are replaced by what they amount to, per key (a key deleted or not, then its final
// fields, members and count changes), so what is kept grows with the sessions' state, not with their traffic.
// Applied in one script (redis-sessions-commit.ts), the result leaves Redis as the list would.
import type { Cmd } from './redis-sessions-commit.js';

type Value = string | number | Buffer;

interface KeyPatch {
  key: Value;
  /** Deleted within the list: what it held before is gone, the fields below are all it holds. */
  deleted: boolean;
  /** Hash fields: value, or null for deleted. */
  fields: Map<string, { field: Value; value: Value | null }>;
  /** Fields known absent before the list (created by it): a delete of one just forgets it. */
  fresh: Set<string>;
  /** Set members: added (true) or removed (false). */
  members: Map<string, { member: Value; added: boolean }>;
  /** HINCRBY sums per field. */
  incr: Map<string, number>;
  /** The change of a stored message's count (`incr` / `release`, made by the commit's guard), if any. */
  refs: number | undefined;
  /** The last SET of a string key. */
  string: Cmd | undefined;
  /** A stored message's text written (`message`). */
  message: Cmd | undefined;
}

function patch(key: Value): KeyPatch {
  return { key, deleted: false, fields: new Map(), fresh: new Set(), members: new Map(), incr: new Map(), refs: undefined, string: undefined, message: undefined };
}

/**
 * `cmds` as fewer commands with the same end result. `creating` names HSETs whose fields did not exist before
 * (a new queue record): a later HDEL of such a field cancels both. Commands of other kinds are kept as they are,
 * in order, after the rest.
 */
export function compact(cmds: readonly Cmd[], creating: WeakSet<Cmd>): Cmd[] {
  const keys = new Map<string, KeyPatch>();
  const others: Cmd[] = [];
  const at = (key: Value): KeyPatch => {
    const name = String(key);
    let p = keys.get(name);
    if (p === undefined) keys.set(name, (p = patch(key)));
    return p;
  };
  for (const cmd of cmds) {
    const name = String(cmd[0]).toLowerCase();
    switch (name) {
      case 'hset': {
        const p = at(cmd[1]!);
        for (let i = 2; i + 1 < cmd.length; i += 2) {
          const f = String(cmd[i]);
          if (!p.fields.has(f) && creating.has(cmd)) p.fresh.add(f);
          p.fields.set(f, { field: cmd[i]!, value: cmd[i + 1]! });
        }
        break;
      }
      case 'hdel': {
        const p = at(cmd[1]!);
        for (let i = 2; i < cmd.length; i++) {
          const f = String(cmd[i]);
          if (p.deleted || p.fresh.has(f)) {
            p.fields.delete(f);
            p.fresh.delete(f);
          } else p.fields.set(f, { field: cmd[i]!, value: null });
        }
        break;
      }
      case 'sadd':
      case 'srem': {
        const p = at(cmd[1]!);
        for (let i = 2; i < cmd.length; i++) {
          const m = String(cmd[i]);
          if (name === 'srem' && p.deleted) p.members.delete(m);
          else p.members.set(m, { member: cmd[i]!, added: name === 'sadd' });
        }
        break;
      }
      case 'del':
        for (let i = 1; i < cmd.length; i++) keys.set(String(cmd[i]), { ...patch(cmd[i]!), deleted: true });
        break;
      case 'hincrby': {
        const p = at(cmd[1]!);
        const f = String(cmd[2]);
        p.incr.set(f, (p.incr.get(f) ?? 0) + Number(cmd[3]));
        break;
      }
      case 'incr':
      case 'release': {
        const p = at(cmd[1]!);
        p.refs = (p.refs ?? 0) + (name === 'incr' ? Number(cmd[2]) : -Number(cmd[2]));
        break;
      }
      case 'set':
        at(cmd[1]!).string = cmd;
        break;
      case 'message':
        at(cmd[1]!).message = cmd;
        break;
      default:
        others.push(cmd);
    }
  }
  const out: Cmd[] = [];
  for (const p of keys.values()) {
    // A message written and let go within the list: as if it never was.
    if (p.message !== undefined && (p.refs ?? 0) <= 0) continue;
    if (p.message !== undefined) out.push(p.message);
    if (p.deleted) out.push(['del', p.key]);
    if (p.string !== undefined) out.push(p.string);
    const hdel: Cmd = ['hdel', p.key];
    const hset: Cmd = ['hset', p.key];
    for (const { field, value } of p.fields.values()) {
      if (value === null) hdel.push(field);
      else hset.push(field, value);
    }
    if (hdel.length > 2 && !p.deleted) out.push(hdel);
    if (hset.length > 2) out.push(hset);
    const srem: Cmd = ['srem', p.key];
    const sadd: Cmd = ['sadd', p.key];
    for (const { member, added } of p.members.values()) (added ? sadd : srem).push(member);
    if (srem.length > 2 && !p.deleted) out.push(srem);
    if (sadd.length > 2) out.push(sadd);
    for (const [f, n] of p.incr) if (n !== 0) out.push(['hincrby', p.key, f, n]);
    if (p.refs !== undefined && p.refs !== 0) out.push(p.refs > 0 ? ['incr', p.key, p.refs] : ['release', p.key, -p.refs]);
  }
  for (const cmd of others) out.push(cmd);
  return out;
}
