// Servers a test starts (Redis, Mosquitto) die with the test process: at its exit, and when the test runner
// stops the file (a file-level timeout sends SIGTERM, which skips 'exit' handlers), so no server outlives a
// run and holds its port or loads the machine for the next one.
import type { ChildProcess } from 'node:child_process';

const running = new Set<ChildProcess>();

function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

process.once('exit', killAll);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killAll();
    // What the default action would have done, now that the servers are gone.
    process.kill(process.pid, signal);
  });
}

/** Kills `child` when this process ends, if it is still running then. */
export function killWithTest(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
}
