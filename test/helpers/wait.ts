// Waiting in tests: a plain delay, and polling until something the test cannot await has happened.
export const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` every 5 ms until it returns true; throws `timed out waiting for <what>` after timeoutMs. */
export async function eventually(check: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** `promise`, or `timed out waiting for <what>` after timeoutMs (a PUBACK that never comes fails the test, not the file). */
export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
