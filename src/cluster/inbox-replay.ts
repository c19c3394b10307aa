// Replaying a node's inbox (`${p}:inbox:${node}`, forwarder.ts) from its committed read position: the
// entries whose effects never reached Redis because the node died (or stopped) before it read them, or
// read them and died before the commit that carried their queued messages. The survivor that adopts a dead
// node's sessions (adoption.ts) replays them for those sessions; a node restarted under its name replays its
// own (Forwarder.replayOwn). Each message goes to the replayed-for sessions only (RemoteDelivery.only), and
// a message asked of the node for a shared group goes to a local member of that group.
//
// Order: the first part of the inbox (up to PREFETCH_BYTES) is read *before* the sessions are put in the
// registry and delivered in the same turn as they are, so a message published after they are served here
// cannot overtake a replayed one. Beyond that part, pages are delivered as they are read (logged once).
import type { Buffer } from 'node:buffer';
import type { Message } from '../broker/message.js';
import type { RemoteDelivery } from '../broker/store/types.js';
import { decodeBatch, type MessageId } from './forward-codec.js';
import type { RedisCaller } from './forwarder.js';

/** Entries per XRANGE. */
const PAGE = 256;
/**
 * Bytes of batches read before the sessions are restored and delivered in one turn (beyond: delivered page by
 * page as read, where newer messages may overtake them). It bounds that turn and the commit after it: 1 MB is
 * about 12,000 small messages, 0.15 s to deliver and ~1.5 s to commit here (docs/cluster.md).
 */
const PREFETCH_BYTES = 1024 * 1024;

/**
 * The key of a node's committed inbox read position (every entry up to it has its effects on the node's sessions
 * in Redis): in the session store's slot (`storePrefix` carries its hash tag).
 */
export function inboxPositionKey(storePrefix: string, node: string): string {
  return `${storePrefix}:inboxpos:${node}`;
}

/**
 * The key of a node's hand-on positions (a hash, in the same slot): per session leaving the node, the entry
 * before the first whose hand-on to its new node Redis may not have (Forwarder.commitPositionWith).
 */
export function handOnPositionKey(storePrefix: string, node: string): string {
  return `${storePrefix}:inboxhandon:${node}`;
}

/** Compares two stream entry ids ("ms-seq"). */
export function compareIds(a: string, b: string): number {
  const [am, as] = splitId(a);
  const [bm, bs] = splitId(b);
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : as < bs ? -1 : 1;
}

function splitId(id: string): [bigint, bigint] {
  const dash = id.indexOf('-');
  return dash < 0 ? [BigInt(id), 0n] : [BigInt(id.slice(0, dash)), BigInt(id.slice(dash + 1))];
}

/** The smallest id after `id` (XRANGE and XTRIM MINID take inclusive bounds). */
export function nextId(id: string): string {
  const [ms, seq] = splitId(id);
  return `${ms}-${seq + 1n}`;
}

/** One inbox entry: a batch from node `origin` (its life `epoch`, its `seq`-th batch to this inbox). */
export interface InboxEntry {
  origin: string;
  epoch: string;
  seq: number;
  data: Buffer;
}

export function parseEntry(fields: Buffer[]): InboxEntry | undefined {
  let origin = '';
  let epoch = '';
  let seq = 0;
  let data: Buffer | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toString();
    const value = fields[i + 1]!;
    if (name === 'o') origin = value.toString();
    else if (name === 'e') epoch = value.toString();
    else if (name === 's') seq = Number(value.toString());
    else if (name === 'd') data = value;
  }
  return data === undefined ? undefined : { origin, epoch, seq, data };
}

export interface ReplayOptions {
  redis: RedisCaller;
  /** The inbox. */
  key: string;
  /** Entries after this id are replayed ('0-0': all). */
  after: string;
  /** ... up to this one (default: the inbox's end). */
  until?: string;
  /**
   * Puts the sessions replayed for in the registry (once, after the first part is read, before it is
   * delivered) and names them.
   */
  restore: () => Iterable<string>;
  /** `id`: the message's identity (its origin node's numbering); valid during the call only. */
  deliver: (message: Message, remote: RemoteDelivery, id: MessageId) => void;
  /** A marker in the inbox (an entry with an empty topic: forwarder.ts), from node `origin`. */
  onMarker?: (origin: string, kind: Buffer, only: ReadonlySet<string>) => void;
  warn: (message: string, context: object) => void;
}

export interface ReplayResult {
  /** Messages read from the replayed batches (each delivered to the sessions' matching subscriptions, or its shared group), batches, the last entry read. */
  messages: number;
  batches: number;
  last: string;
}

type Page = [Buffer, Buffer[]][];

/** A batch read from an inbox: its entry id, when Redis took it (its id's time, ms), the batch. */
export interface ReadBatch {
  id: string;
  sentAt: number;
  entry: InboxEntry;
}

/**
 * Reads an inbox page by page after a position (up to `until`, else its end), each batch once: a batch
 * written twice (an XADD resent after a reconnect) is dropped by its (origin, epoch, seq).
 */
export class InboxReader {
  /** The last entry read. */
  last: string;
  /** Nothing more to read. */
  done = false;
  private readonly seen = new Map<string, { epoch: string; seq: number }>();

  constructor(
    private readonly redis: RedisCaller,
    private readonly key: string,
    after: string,
    private readonly until?: string,
  ) {
    this.last = after;
  }

  /** The next page of entries ([] once done). */
  async page(): Promise<Page> {
    if (this.done) return [];
    const page = (await this.redis.callBuffer('XRANGE', this.key, nextId(this.last), this.until ?? '+', 'COUNT', PAGE)) as Page;
    if (page.length < PAGE) this.done = true;
    if (page.length > 0) this.last = page[page.length - 1]![0].toString();
    if (this.until !== undefined && compareIds(this.last, this.until) >= 0) this.done = true;
    return page;
  }

  /** The batches of `page` not read before, in order. */
  batches(page: Page): ReadBatch[] {
    const out: ReadBatch[] = [];
    for (const [rawId, fields] of page) {
      const entry = parseEntry(fields);
      if (entry === undefined) continue;
      const prev = this.seen.get(entry.origin);
      if (prev !== undefined && prev.epoch === entry.epoch && entry.seq <= prev.seq) continue;
      this.seen.set(entry.origin, { epoch: entry.epoch, seq: entry.seq });
      const id = rawId.toString();
      out.push({ id, sentAt: Number(splitId(id)[0]), entry });
    }
    return out;
  }
}

/** Replays the inbox from `after` (module comment). */
export async function replayInbox(options: ReplayOptions): Promise<ReplayResult> {
  const { key } = options;
  const result: ReplayResult = { messages: 0, batches: 0, last: options.after };
  const reader = new InboxReader(options.redis, key, options.after, options.until);
  const first: Page[] = [];
  let bytes = 0;
  while (!reader.done && bytes < PREFETCH_BYTES) {
    const page = await reader.page();
    for (const [, fields] of page) for (const f of fields) bytes += f.length;
    first.push(page);
  }
  const only = new Set(options.restore());
  const deliverPage = (page: Page): void => {
    for (const { id, sentAt, entry } of reader.batches(page)) {
      result.batches++;
      // Expiry counts from when Redis took the entry, not from now.
      try {
        decodeBatch(entry.data, sentAt, entry.origin, entry.epoch, (message, remote, mid) => {
          if (message.topic === '') {
            // A marker: a session hand-over's end, a barrier, a node's switch away from a dead node.
            if (remote.only !== undefined) options.onMarker?.(entry.origin, message.payload, remote.only);
            return;
          }
          result.messages++;
          if (remote.only !== undefined) {
            // Handed on for sessions that moved to the dead node: to those of them taken over here.
            const to = new Set([...remote.only].filter((clientId) => only.has(clientId)));
            if (to.size > 0) options.deliver(message, { plain: true, groups: undefined, only: to }, mid);
            return;
          }
          if (remote.plain && only.size > 0) options.deliver(message, { plain: true, groups: undefined, only }, mid);
          if (remote.groups !== undefined && remote.groups.size > 0) options.deliver(message, { plain: false, groups: remote.groups }, mid);
        });
      } catch (err) {
        options.warn('cluster: a batch of a replayed inbox could not be read; skipped', { key, id, error: String(err) });
      }
    }
  };
  for (const page of first) deliverPage(page);
  if (!reader.done) {
    options.warn('cluster: a large inbox is replayed in parts; messages published meanwhile may reach its sessions before older ones', { key, bytes });
    while (!reader.done) deliverPage(await reader.page());
  }
  result.last = reader.last;
  return result;
}
