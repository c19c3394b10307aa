// Publishers that count what was acknowledged, and the check of what a session's connections received:
// none twice but as a DUP resend [MQTT-4.3.3-2], each publisher's messages in its order [MQTT-4.6.0-5].
// Messages are `who:n` (publisher `who`, its n-th).
import type { IPublishPacket, MqttClient } from 'mqtt';
import { delay } from '../helpers/wait.js';

/** Publishes `who:0`, `who:1`, ... to `topic` at QoS `qos` until stop(), one every 2 ms or so; `acked`: those answered. */
export function publishing(client: MqttClient, who: string, qos: 1 | 2, topic = 'mk/x'): { acked: number[]; stop: () => Promise<void> } {
  const acked: number[] = [];
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      void client.publishAsync(topic, `${who}:${i}`, { qos }).then(
        () => acked.push(i),
        () => {},
      );
      await delay(2);
    }
  })();
  return {
    acked,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/**
 * What went wrong in what one session's connections received (in order, connection after connection): messages
 * that came again without DUP, and first copies that came after a later message of their publisher.
 */
export function deliveryFaults(inboxes: IPublishPacket[][]): { withoutDup: string[]; late: string[] } {
  const copies = new Map<string, number>();
  const withoutDup: string[] = [];
  const late: string[] = [];
  const highest = new Map<string, number>();
  for (const list of inboxes) {
    for (const p of list) {
      const m = p.payload.toString();
      const k = (copies.get(m) ?? 0) + 1;
      copies.set(m, k);
      if (k > 1) {
        if (!p.dup) withoutDup.push(m);
        continue;
      }
      if (p.dup) continue; // a resend of one in flight at the move
      const colon = m.indexOf(':');
      const [who, n] = [m.slice(0, colon), Number(m.slice(colon + 1))];
      if (n < (highest.get(who) ?? -1)) late.push(m);
      else highest.set(who, n);
    }
  }
  return { withoutDup, late };
}
