// Loaded into a child node (`NODE_OPTIONS=--import .../hold-handons.js`, see holdHandOnsEnv): on SIGUSR2 the
// node's XADDs into node `b`'s inbox stop reaching Redis, as if that Redis round trip never ended. What the
// node then hands on to b for a session leaving it (and its end marker) is never in Redis while everything
// else goes on: its session commits, its reading of its own inbox. A test SIGKILLs it in that state.
import { Redis } from 'ioredis';

/** The environment that loads this module into a child node. */
export function holdHandOnsEnv(): Record<string, string> {
  return { HOLD_HANDONS_IN_CHILD: '1', NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${import.meta.url}`.trim() };
}

let holding = false;
// Only in the child: the test process imports this module for holdHandOnsEnv() alone.
if (process.env.HOLD_HANDONS_IN_CHILD === '1') {
  process.on('SIGUSR2', () => {
    holding = true;
  });
  type Call = (this: Redis, command: string, ...args: unknown[]) => Promise<unknown>;
  const proto = Redis.prototype as unknown as { callBuffer: Call };
  const original = proto.callBuffer;
  proto.callBuffer = function (this: Redis, command: string, ...args: unknown[]): Promise<unknown> {
    if (holding && command.toUpperCase() === 'XADD' && String(args[0]).endsWith(':inbox:b')) return new Promise(() => {});
    return original.call(this, command, ...args);
  };
}
