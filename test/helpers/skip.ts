// A suite that needs a system package (openssl, mosquitto, chromium, python3-paho-mqtt). node:test reports a
// skipped describe() as "# SKIP" but leaves it out of the summary's "skipped" count, so a run without the
// package looked complete: here the suite then holds one test that calls t.skip(reason), which is counted.
import { describe, it } from 'node:test';

/** describe(name, fn), or, when `skip` is a reason, a suite of one skipped test saying it. */
export function describeOrSkip(name: string, skip: string | false | undefined, fn: () => void): void {
  if (!skip) describe(name, fn);
  else describe(name, () => it(`skipped: ${skip}`, (t) => t.skip(skip)));
}
