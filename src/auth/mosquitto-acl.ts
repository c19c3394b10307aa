// Mosquitto's acl_file format (mosquitto.conf(5)), read as it is so that a Mosquitto installation moves
// over with its ACL:
//
//   topic read $SYS/#            lines before the first `user` line: clients without a user name
//   user alice                   the `topic` lines after it: that user
//   topic readwrite alice/#      read (receive: subscribe here), write (publish), readwrite (default), deny
//   pattern write sensors/%c/#   every client, with %u / %c
//
// Checked in Mosquitto's order: the client's own lines (its `user` section, or the anonymous one), denials
// first, then the `pattern` lines, denials first; nothing matching is denied (as with Mosquitto once an
// acl_file is set). %u / %c are placeholders in `pattern` lines only: in a `topic` line they are text.
import type { AclAction, AclPermission, AclRule } from './acl.js';

const ACCESS: Record<string, { permission: AclPermission; action: AclAction }> = {
  read: { permission: 'allow', action: 'subscribe' },
  write: { permission: 'allow', action: 'publish' },
  readwrite: { permission: 'allow', action: 'all' },
  deny: { permission: 'deny', action: 'all' },
};

/** True when the first rule line of `text` is a Mosquitto one (`topic`, `user` or `pattern`). */
export function isMosquittoAcl(text: string): boolean {
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    return /^(topic|user|pattern)(\s|$)/.test(line);
  }
  return false;
}

export interface MosquittoAclRule {
  rule: AclRule;
  /** Only for clients without a user name (a `topic` line before the first `user` line). */
  anonymous: boolean;
  /** A `pattern` line: %u / %c are placeholders, and a client whose ID or user name has + or # gets none. */
  pattern: boolean;
  line: number;
}

/** The rules of a Mosquitto acl_file in the order Mosquitto checks them; throws "line N: ..." on a line it cannot read. */
export function parseMosquittoAcl(text: string): MosquittoAclRule[] {
  const ownDenials: MosquittoAclRule[] = [];
  const ownGrants: MosquittoAclRule[] = [];
  const patternDenials: MosquittoAclRule[] = [];
  const patternGrants: MosquittoAclRule[] = [];
  let user: string | undefined;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `line ${i + 1}`;
    const [keyword] = line.split(/\s/, 1);
    // The rest of the line is one value: Mosquitto allows spaces in user names and topics.
    let rest = line.slice(keyword!.length).trim();
    if (keyword === 'user') {
      if (rest === '') throw new Error(`${where}: "user" needs a user name`);
      user = rest;
      return;
    }
    if (keyword !== 'topic' && keyword !== 'pattern') throw new Error(`${where}: expected "topic", "pattern" or "user" (Mosquitto acl_file format)`);
    const [first] = rest.split(/\s/, 1);
    let access = ACCESS.readwrite!;
    if (first !== undefined && Object.hasOwn(ACCESS, first) && rest.length > first.length) {
      access = ACCESS[first]!;
      rest = rest.slice(first.length).trim();
    }
    if (rest === '') throw new Error(`${where}: "${keyword}" needs a topic`);
    const rule: AclRule = { ...access, topic: rest };
    const pattern = keyword === 'pattern';
    const anonymous = !pattern && user === undefined;
    if (!pattern && user !== undefined) rule.username = user;
    const deny = access.permission === 'deny';
    (pattern ? (deny ? patternDenials : patternGrants) : deny ? ownDenials : ownGrants).push({ rule, anonymous, pattern, line: i + 1 });
  });
  return [...ownDenials, ...ownGrants, ...patternDenials, ...patternGrants];
}
