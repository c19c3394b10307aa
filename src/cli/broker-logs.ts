// Log lines of `petrel broker` that say in words what a client did wrong, where the protocol error alone
// would not tell an operator: a TLS client on a plain MQTT port.
import type { Logger } from 'pino';
import type { Broker } from '../server/broker.js';

/** One line per kind of mistake every `intervalMs`, with how many more there were since the last one. */
export class MistakeThrottle {
  private last = Number.NEGATIVE_INFINITY;
  private since = 0;

  constructor(private readonly intervalMs = 10_000) {}

  /** The count of the mistakes left out since the last line, when this one may be logged; undefined when not. */
  admit(now: number): number | undefined {
    if (now - this.last < this.intervalMs) {
      this.since++;
      return undefined;
    }
    const skipped = this.since;
    this.last = now;
    this.since = 0;
    return skipped;
  }
}

/**
 * A TLS ClientHello starts with 0x16: read as MQTT, a CONNECT (type 1) with flags 0b0110, refused as
 * "CONNECT fixed header flags must be 0b0000". Before CONNECT, only bytes like these give that reason.
 */
const TLS_ON_PLAIN = /CONNECT fixed header flags must be 0b0000/;

export function watchPlainPortMistakes(broker: Broker, logger: Logger, now: () => number = Date.now): void {
  // a listener makes the broker build an event per disconnect: none when the line would not be written
  // (the benchmarks run at --log-level warn)
  if (!logger.isLevelEnabled('info')) return;
  const throttle = new MistakeThrottle();
  broker.on('clientDisconnected', (client, info) => {
    if (client !== undefined || !TLS_ON_PLAIN.test(info.reason)) return;
    const skipped = throttle.admit(now());
    if (skipped === undefined) return;
    logger.info(
      { address: info.remoteAddress, ...(skipped > 0 ? { moreSinceLastLine: skipped } : {}) },
      'a client started a TLS handshake on a plain MQTT port: it must connect without TLS (mqtt://, no --cafile) here, or to a TLS listener (mqtts://)',
    );
  });
}
