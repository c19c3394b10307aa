// Access control lists: ordered allow/deny rules for publish and subscribe, matched by username,
// Client ID, certificate CN or address, with MQTT topic patterns and the %u / %c placeholders.
// First matching rule wins; no match falls back to the default. Checks are synchronous.
import { readFileSync } from 'node:fs';
import type { ClientInfo } from '../broker/hooks.js';
import { AddressSet, checkAddressEntry, ipOf } from '../util/address.js';
import { isMosquittoAcl, parseMosquittoAcl, type MosquittoAclRule } from './mosquitto-acl.js';

export type AclPermission = 'allow' | 'deny';
export type AclAction = 'publish' | 'subscribe' | 'all';

/** One rule as written in a config file (`topic` or `topics`). */
export interface AclRule {
  permission: AclPermission;
  action: AclAction;
  /** Conditions on the client; all given ones must match; none = every client. */
  username?: string;
  clientId?: string;
  /** Common Name of the client certificate (mutual TLS). */
  certCN?: string;
  /** IP address or CIDR block ("10.0.0.0/8"), or a list of them. */
  address?: string | string[];
  /** Topic patterns: MQTT filters with + and #, and %u (username) / %c (Client ID) placeholders. */
  topic?: string;
  topics?: string[];
}

export interface AclOptions {
  rules?: AclRule[];
  /** A rule file (see docs/configuration.md); its rules come after `rules`. Re-read by `reload()`. */
  file?: string;
  /** Answer when no rule matches (default "allow", as without an ACL). */
  default?: AclPermission;
  /**
   * How a subscription with wildcards is judged. Default (false), as Mosquitto: it is refused only when the ACL
   * denies that filter itself (a deny rule covers every topic it can match, or no rule could allow any of them),
   * and each message is checked when it is delivered (canReceive), so a denied topic never reaches the client.
   * true: refused whole when any topic it could match is denied (Petrel before 0.2).
   */
  strictSubscribe?: boolean;
  /**
   * Topics whose read answer (canReceive) is remembered per client, for the per-message check (default 256;
   * 0: none). Forgotten when the rules are reloaded or the client's identity changes (src/auth/acl-cache.ts).
   */
  receiveCache?: number;
}

interface CompiledRule {
  allow: boolean;
  publish: boolean;
  subscribe: boolean;
  username?: string;
  clientId?: string;
  certCN?: string;
  addresses?: AddressSet;
  /** Only clients without a user name (Mosquitto's lines before its first `user` line). */
  anonymous: boolean;
  /** A Mosquitto `pattern` line: a client whose ID or user name has + or # gets no pattern access at all. */
  mosquittoPattern: boolean;
  /** Topic patterns split into levels; `placeholders` when a level has %u or %c. */
  patterns: { levels: string[]; placeholders: boolean }[];
  source: string;
}

type Client = Pick<ClientInfo, 'clientId' | 'username' | 'remoteAddress' | 'certificateCN'>;

export class Acl {
  private rules: CompiledRule[] = [];
  private readonly inline: CompiledRule[];
  defaultAllow = true;
  /** Counts the loads of the rules: a cache of answers made under another generation is stale. */
  generation = 0;

  constructor(readonly options: AclOptions) {
    this.inline = (options.rules ?? []).map((r, i) => compileRule(r, `rules[${i}]`));
    this.load(this.readText());
  }

  private load(text: string | undefined): void {
    const rules = [...this.inline, ...this.parse(text)];
    // A Mosquitto acl_file denies what it does not grant, as in Mosquitto, unless `default` says otherwise, and
    // so does an ACL file with no rule yet (Mosquitto's or ours: an empty ACL must not let everyone do
    // anything); decided at every load, since a reload may change the file.
    const denyByDefault = text !== undefined && (isMosquittoAcl(text) || rules.length === 0);
    this.defaultAllow = (this.options.default ?? (denyByDefault ? 'deny' : 'allow')) === 'allow';
    this.rules = rules;
    this.generation++;
  }

  get size(): number {
    return this.rules.length;
  }

  /** Re-reads the rule file; throws (keeping the current rules) when it is unreadable or malformed. */
  reload(): number {
    this.load(this.readText());
    return this.rules.length;
  }

  private readText(): string | undefined {
    const file = this.options.file;
    if (!file) return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read ACL file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }

  private parse(text: string | undefined): CompiledRule[] {
    return text === undefined ? [] : parseAclFile(text, this.options.file);
  }

  /** May `client` publish to `topic`? */
  canPublish(client: Client, topic: string): boolean {
    const levels = topic.split('/');
    for (const rule of this.rules) {
      if (!rule.publish || !appliesTo(rule, client)) continue;
      if (rule.mosquittoPattern && hasWildcardIdentity(client)) return false;
      for (const p of rule.patterns) {
        const pattern = p.placeholders ? substitute(p.levels, client) : p.levels;
        // A deny rule whose %u / %c cannot be filled in fails closed: it denies.
        if (!pattern) {
          if (!rule.allow) return false;
          continue;
        }
        if (covers(pattern, levels)) return rule.allow;
      }
    }
    return this.defaultAllow;
  }

  /** True when subscriptions are judged whole (strictSubscribe), false when messages are checked at delivery. */
  get strictSubscribe(): boolean {
    return this.options.strictSubscribe === true;
  }

  /**
   * May `client` subscribe to `filter`? Strictly (strictSubscribe): an allow rule matches when its pattern
   * covers every topic the filter can match, a deny rule when the filter can match any topic the pattern
   * denies. Otherwise (Mosquitto's way): an allow rule matches when some topic of the filter is allowed, a deny
   * rule only when it covers the whole filter; what is delivered is then checked per message (canReceive).
   * Shared subscriptions ($share/group/filter) are checked by their filter.
   */
  canSubscribe(client: Client, filter: string): boolean {
    return this.checkSubscribe(client, filter, this.strictSubscribe);
  }

  /** May `client` receive a message on `topic` (the subscribe rules, applied to one topic name)? */
  canReceive(client: Client, topic: string): boolean {
    return this.checkSubscribe(client, topic, true);
  }

  private checkSubscribe(client: Client, filter: string, strict: boolean): boolean {
    if (filter.startsWith('$share/')) {
      const slash = filter.indexOf('/', 7);
      if (slash > 0) filter = filter.slice(slash + 1);
    }
    const levels = filter.split('/');
    for (const rule of this.rules) {
      if (!rule.subscribe || !appliesTo(rule, client)) continue;
      if (rule.mosquittoPattern && hasWildcardIdentity(client)) return false;
      for (const p of rule.patterns) {
        const pattern = p.placeholders ? substitute(p.levels, client) : p.levels;
        if (!pattern) {
          if (!rule.allow) return false;
          continue;
        }
        const matches = rule.allow === strict ? covers(pattern, levels) : intersects(pattern, levels);
        if (matches) return rule.allow;
      }
    }
    return this.defaultAllow;
  }
}

function appliesTo(rule: CompiledRule, client: Client): boolean {
  if (rule.username !== undefined && rule.username !== client.username) return false;
  if (rule.anonymous && client.username !== undefined) return false;
  if (rule.clientId !== undefined && rule.clientId !== client.clientId) return false;
  if (rule.certCN !== undefined && rule.certCN !== client.certificateCN) return false;
  if (rule.addresses && !rule.addresses.has(ipOf(client.remoteAddress))) return false;
  return true;
}

/** A Client ID or user name with + or #: Mosquitto gives such a client no `pattern` access ("dangerous client id"). */
const hasWildcardIdentity = (client: Client): boolean => /[+#]/.test(client.clientId) || (client.username !== undefined && /[+#]/.test(client.username));

/** Pattern levels with %u / %c replaced; undefined when a value is missing or would act as a wildcard (an allow rule is then skipped, a deny rule denies). */
function substitute(levels: string[], client: Client): string[] | undefined {
  const out: string[] = [];
  for (const level of levels) {
    if (!level.includes('%')) {
      out.push(level);
      continue;
    }
    let bad = false;
    const value = level.replace(/%([uc])/g, (_, k: string) => {
      const v = k === 'u' ? client.username : client.clientId;
      if (v === undefined || v === '' || /[/+#]/.test(v)) {
        bad = true;
        return '';
      }
      return v;
    });
    if (bad) return undefined;
    out.push(value);
  }
  return out;
}

/** True when `pattern` matches every topic `filter` matches (for a topic name: pattern matches the topic). */
export function covers(pattern: readonly string[], filter: readonly string[]): boolean {
  for (let k = 0; ; k++) {
    const p = pattern[k];
    const f = filter[k];
    if (p === undefined) return f === undefined;
    if (p === '#') return !(k === 0 && f !== undefined && f.startsWith('$'));
    if (f === undefined) return false;
    if (p === '+') {
      if (f === '#' || (k === 0 && f.startsWith('$'))) return false;
      continue;
    }
    if (f === '+' || f === '#' || p !== f) return false;
  }
}

/** True when some topic matches both `pattern` and `filter`. */
export function intersects(pattern: readonly string[], filter: readonly string[]): boolean {
  for (let k = 0; ; k++) {
    const p = pattern[k];
    const f = filter[k];
    if (p === undefined && f === undefined) return true;
    if (p === '#' || f === '#') {
      const other = p === '#' ? f : p;
      return !(k === 0 && other !== undefined && other !== '#' && other !== '+' && other.startsWith('$'));
    }
    if (p === undefined || f === undefined) return false;
    if (p === '+' || f === '+') {
      const other = p === '+' ? f : p;
      if (k === 0 && other !== '+' && other.startsWith('$')) return false;
      continue;
    }
    if (p !== f) return false;
  }
}

const ACTIONS = new Set(['publish', 'subscribe', 'all']);

/** Validates and compiles one rule; throws "where: what" on a mistake. */
export function compileRule(rule: AclRule, where: string): CompiledRule {
  if (rule.permission !== 'allow' && rule.permission !== 'deny') throw new Error(`${where}.permission: must be "allow" or "deny"`);
  if (!ACTIONS.has(rule.action)) throw new Error(`${where}.action: must be "publish", "subscribe" or "all"`);
  const topics = [...(rule.topic !== undefined ? [rule.topic] : []), ...(rule.topics ?? [])];
  if (topics.length === 0) throw new Error(`${where}: needs "topic" or "topics"`);
  const patterns = topics.map((t, i) => {
    if (typeof t !== 'string' || t === '' || !validPattern(t)) throw new Error(`${where}.topic${topics.length > 1 ? `s[${i}]` : ''}: ${JSON.stringify(t)} is not a valid topic pattern`);
    return { levels: t.split('/'), placeholders: /%[uc]/.test(t) };
  });
  let addresses: AddressSet | undefined;
  if (rule.address !== undefined) {
    const list = Array.isArray(rule.address) ? rule.address : [rule.address];
    try {
      list.forEach(checkAddressEntry);
    } catch (err) {
      throw new Error(`${where}.address: ${(err as Error).message}`);
    }
    addresses = new AddressSet(list);
  }
  return {
    allow: rule.permission === 'allow',
    publish: rule.action !== 'subscribe',
    subscribe: rule.action !== 'publish',
    username: rule.username,
    clientId: rule.clientId,
    certCN: rule.certCN,
    addresses,
    anonymous: false,
    mosquittoPattern: false,
    patterns,
    source: where,
  };
}

function validPattern(t: string): boolean {
  const levels = t.split('/');
  return levels.every((l, i) => (l.includes('#') ? l === '#' && i === levels.length - 1 : !l.includes('+') || l === '+'));
}

/**
 * The ACL file format, one rule per line ("#" starts a comment line):
 *
 *   allow|deny  publish|subscribe|all  WHO  TOPIC [TOPIC...]
 *
 * WHO is `all`, or comma-separated conditions that must all match: `user:NAME`, `client:ID`,
 * `cn:NAME`, `ip:ADDRESS[/BITS]`. Example: `allow publish user:alice sensors/%u/#`.
 */
export function parseAclFile(text: string, name = 'ACL file'): CompiledRule[] {
  if (isMosquittoAcl(text)) {
    let rules: MosquittoAclRule[];
    try {
      rules = parseMosquittoAcl(text);
    } catch (err) {
      throw new Error(`${name}: ${(err as Error).message}`);
    }
    return rules.map(({ rule, anonymous, pattern, line }) => {
      const compiled = { ...compileRule(rule, `${name}: line ${line}`), anonymous, mosquittoPattern: pattern };
      // In a `topic` line %u and %c are text (Mosquitto substitutes them in `pattern` lines only).
      if (!pattern) for (const p of compiled.patterns) p.placeholders = false;
      return compiled;
    });
  }
  const rules: CompiledRule[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${name}: line ${i + 1}`;
    const [permission, action, who, ...topics] = line.split(/\s+/);
    if (!who || topics.length === 0) throw new Error(`${where}: expected "allow|deny publish|subscribe|all WHO TOPIC..."`);
    const rule: AclRule = { permission: permission as AclPermission, action: action as AclAction, topics };
    if (who !== 'all' && who !== '*') {
      const addresses: string[] = [];
      for (const cond of who.split(',')) {
        const colon = cond.indexOf(':');
        const key = cond.slice(0, colon);
        const value = cond.slice(colon + 1);
        if (colon <= 0 || value === '') throw new Error(`${where}: ${JSON.stringify(cond)} should be user:NAME, client:ID, cn:NAME or ip:ADDRESS`);
        if (key === 'user') rule.username = value;
        else if (key === 'client') rule.clientId = value;
        else if (key === 'cn') rule.certCN = value;
        else if (key === 'ip') addresses.push(value);
        else throw new Error(`${where}: unknown condition ${JSON.stringify(key)} (user, client, cn, ip)`);
      }
      if (addresses.length) rule.address = addresses;
    }
    rules.push(compileRule(rule, where));
  });
  return rules;
}
