// Each Client ID's recent connection history: CONNECT seen, CONNACK (accepted or refused, with its code and
// reason), disconnections with their cause (takeover, keep-alive timeout, protocol error, ...) and whether the
// will was sent. A bounded ring per ID and a bounded number of IDs (least recently active forgotten first),
// fed by the broker's events: so "why does my device keep dropping?" has an answer.
import type { Broker, BrokerEventMap } from '../server/broker.js';
import { reasonName } from '../protocol/constants.js';
import { codeHex, disconnectCause } from './causes.js';

export type HistoryEntry =
  | { at: number; event: 'connect'; address: string; listener: string; protocolVersion: number; username?: string; clean: boolean; keepAlive: number }
  | { at: number; event: 'connack'; address: string; code: string; codeName: string; accepted: boolean; reason?: string; sessionPresent?: boolean }
  | { at: number; event: 'disconnect'; address: string; cause: string; reason: string; code?: string; codeName?: string; will: boolean };

/** A CONNECT whose outcome has not come yet, by remote address ("ip:port", one per open connection). */
interface Pending {
  entry: HistoryEntry & { event: 'connect' };
  clientId: string;
  /** The ID the connect entry was filed under, if it was (not for an empty Client ID, assigned later). */
  filedUnder?: string;
}

export class ConnectionHistory {
  private readonly byClient = new Map<string, HistoryEntry[]>();
  private readonly pending = new Map<string, Pending>();
  private detachFromBroker: (() => void) | undefined;

  constructor(
    private readonly perClient: number,
    private readonly maxClients: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The entries of `clientId`, oldest first; undefined when none is kept. */
  get(clientId: string): readonly HistoryEntry[] | undefined {
    return this.byClient.get(clientId);
  }

  /** Client IDs with history, most recently active first, each with its last entry. */
  recent(limit: number): { clientId: string; last: HistoryEntry }[] {
    const ids = [...this.byClient.keys()];
    const out: { clientId: string; last: HistoryEntry }[] = [];
    for (let i = ids.length - 1; i >= 0 && out.length < limit; i--) {
      const entries = this.byClient.get(ids[i]!)!;
      out.push({ clientId: ids[i]!, last: entries[entries.length - 1]! });
    }
    return out;
  }

  get size(): number {
    return this.byClient.size;
  }

  record(clientId: string, entry: HistoryEntry): void {
    let ring = this.byClient.get(clientId);
    if (ring === undefined) {
      ring = [];
      if (this.byClient.size >= this.maxClients) this.byClient.delete(this.byClient.keys().next().value!);
    } else {
      this.byClient.delete(clientId); // re-inserted below: the Map's order is the order of last activity
    }
    this.byClient.set(clientId, ring);
    ring.push(entry);
    if (ring.length > this.perClient) ring.shift();
  }

  /** Listens to the broker's connection events until detach(). */
  attach(broker: Broker): void {
    const on: { [K in keyof BrokerEventMap]?: (...args: BrokerEventMap[K]) => void } = {
      connectReceived: (address, c) => {
        const entry = { at: this.now(), event: 'connect' as const, address, listener: c.listener, protocolVersion: c.protocolVersion, username: c.username, clean: c.clean, keepAlive: c.keepAlive };
        const pending: Pending = { entry, clientId: c.clientId };
        if (c.clientId !== '') {
          this.record(c.clientId, entry);
          pending.filedUnder = c.clientId;
        }
        this.pending.set(address, pending);
      },
      clientConnected: (client, details) => {
        this.outcome(client.remoteAddress, client.clientId, { at: this.now(), event: 'connack', address: client.remoteAddress, code: '0x00', codeName: 'Success', accepted: true, sessionPresent: details.sessionPresent });
      },
      clientRefused: (info) => {
        const entry: HistoryEntry = { at: this.now(), event: 'connack', address: info.remoteAddress, code: codeHex(info.reasonCode), codeName: nameOf(info.reasonCode), accepted: false, reason: info.reason };
        this.outcome(info.remoteAddress, info.clientId, entry);
      },
      clientDisconnected: (client, info) => {
        const entry: HistoryEntry = {
          at: this.now(),
          event: 'disconnect',
          address: info.remoteAddress,
          cause: disconnectCause(info.reason, info.reasonCode),
          reason: info.reason,
          code: info.reasonCode !== undefined ? codeHex(info.reasonCode) : undefined,
          codeName: info.reasonCode !== undefined ? nameOf(info.reasonCode) : undefined,
          will: info.willPublished,
        };
        if (client) this.record(client.clientId, entry);
        else this.outcome(info.remoteAddress, undefined, entry); // closed before its CONNECT was answered
      },
    };
    for (const [name, fn] of Object.entries(on)) broker.on(name as keyof BrokerEventMap, fn as never);
    this.detachFromBroker = () => {
      for (const [name, fn] of Object.entries(on)) broker.off(name as keyof BrokerEventMap, fn as never);
    };
  }

  detach(): void {
    this.detachFromBroker?.();
    this.detachFromBroker = undefined;
    this.pending.clear();
  }

  /** Files what became of the CONNECT from `address` under the final Client ID (assigned or from a certificate). */
  private outcome(address: string, clientId: string | undefined, entry: HistoryEntry): void {
    const pending = this.pending.get(address);
    this.pending.delete(address);
    const id = clientId ?? pending?.clientId;
    if (id === undefined || id === '') return;
    if (pending && pending.filedUnder !== id) this.record(id, pending.entry);
    this.record(id, entry);
  }
}

const nameOf = (code: number): string => reasonName(code).replace(/^0x[0-9a-f]+ /, '');
