#!/usr/bin/env node
// `npm start`: builds dist/ when a source changed (not on every start), then runs `petrel broker` in this
// very process. package.json starts it with `exec`, so npm's own child is the broker: the SIGINT and SIGTERM
// npm forwards reach it (with a shell between them, the shell died and left the broker running). npm neither
// forwards SIGHUP nor survives it, and nothing forwards SIGKILL: when npm is gone, the broker shuts down too.
import { buildIfStale } from './build.js';

if (buildIfStale() !== 0) process.exit(1);

if (process.env.npm_lifecycle_event === 'start') {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
  }, 1000).unref();
}

const { main } = await import('../dist/src/cli/main.js');
await main(process.argv.slice(2));
