// Topic ids of MQTT-SN (spec 5.3.11, 6.5-6.7): predefined ids shared by every client of a gateway,
// and the normal ids registered per client (REGISTER both ways, SUBACK to a name without wildcards).
import { Buffer } from 'node:buffer';
import { isValidTopicName } from '../protocol/topic.js';
import type { SnTopic } from './packets.js';

/** The gateway's predefined topics, by id and by name. */
export class PredefinedTopics {
  private readonly byId = new Map<number, string>();
  private readonly byName = new Map<string, number>();

  /** `table`: id (1-65534) → topic name; throws naming the entry that is wrong. */
  constructor(table: Record<string | number, string> = {}) {
    for (const [key, name] of Object.entries(table)) {
      const id = Number(key);
      if (!Number.isInteger(id) || id < 1 || id > 0xfffe) throw new Error(`predefinedTopics: ${key}: a topic id must be an integer from 1 to 65534`);
      if (typeof name !== 'string' || !isValidTopicName(name)) throw new Error(`predefinedTopics: ${key}: ${JSON.stringify(name)} is not a valid topic name (no wildcards)`);
      this.byId.set(id, name);
      if (!this.byName.has(name)) this.byName.set(name, id);
    }
  }

  name(id: number): string | undefined {
    return this.byId.get(id);
  }

  id(name: string): number | undefined {
    return this.byName.get(name);
  }
}

/** A two-character topic name that fits the 2-octet TopicId field (spec 3: "short topic names"). */
export function isShortTopicName(name: string): boolean {
  return name.length <= 2 && Buffer.byteLength(name, 'utf8') === 2;
}

/** Normal topic ids of one client connection: the gateway assigns them, from 1 upward. */
export class ClientTopics {
  private readonly byId = new Map<number, string>();
  private readonly byName = new Map<string, number>();
  private nextId = 1;

  constructor(readonly max: number) {}

  get size(): number {
    return this.byId.size;
  }

  name(id: number): string | undefined {
    return this.byId.get(id);
  }

  id(name: string): number | undefined {
    return this.byName.get(name);
  }

  /** The id of `name`, assigned now if it had none; undefined when the client has `max` ids already. */
  assign(name: string): number | undefined {
    const known = this.byName.get(name);
    if (known !== undefined) return known;
    const id = this.reserve();
    if (id !== undefined) this.set(name, id);
    return id;
  }

  /** A fresh id, not yet bound to a name (REGISTER to the client binds it on REGACK). */
  reserve(): number | undefined {
    if (this.byId.size >= this.max) return undefined;
    // 0x0000 and 0xFFFF are reserved (spec 5.3.11).
    for (let tries = 0; tries < 0xfffe; tries++) {
      const id = this.nextId;
      this.nextId = id >= 0xfffe ? 1 : id + 1;
      if (!this.byId.has(id)) return id;
    }
    return undefined;
  }

  set(name: string, id: number): void {
    const old = this.byName.get(name);
    if (old !== undefined) this.byId.delete(old);
    this.byId.set(id, name);
    this.byName.set(name, id);
  }

  delete(name: string): void {
    const id = this.byName.get(name);
    if (id === undefined) return;
    this.byName.delete(name);
    this.byId.delete(id);
  }
}

/** How the gateway names `topic` to a client without a REGISTER, if it can: its normal id, a predefined id, a short name. */
export function knownTopic(topic: string, own: ClientTopics, predefined: PredefinedTopics): SnTopic | undefined {
  const id = own.id(topic);
  if (id !== undefined) return { type: 0, id };
  const pre = predefined.id(topic);
  if (pre !== undefined) return { type: 1, id: pre };
  if (isShortTopicName(topic)) return { type: 2, name: topic };
  return undefined;
}
