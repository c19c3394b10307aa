// The built CLI (bin/petrel.js) as a child process, for the CLI tests: its exit code and output, and
// waiting for a line on stderr while it runs.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../../bin/petrel.js', import.meta.url));

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  done: Promise<Run>;
  /** Resolves once stderr contains `text` (or matches it). */
  waitStderr(text: string | RegExp, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  /** What it has written to stdout so far. */
  stdoutSoFar(): string;
}

/** Starts `petrel <args>` (with `input` on stdin, in `options.cwd` with `options.env`); it is killed after 20 s whatever happens. */
export function start(args: string[], input?: string | Buffer, nodeArgs: string[] = [], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Running {
  return startCommand(process.execPath, [...nodeArgs, BIN, ...args], input, options);
}

/** Any command (mosquitto_sub, ...) run the same way, for side-by-side tests. */
export function startCommand(command: string, args: string[], input?: string | Buffer, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Running {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options });
  let stdout = '';
  let stderr = '';
  const listeners: (() => void)[] = [];
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => {
    stderr += d;
    for (const l of listeners) l();
  });
  if (input !== undefined) child.stdin.end(input);
  else child.stdin.end();
  const done = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  void done.then(() => clearTimeout(timer));
  return {
    done,
    stdoutSoFar: () => stdout,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    waitStderr(text, timeoutMs = 5000) {
      const has = () => (typeof text === 'string' ? stderr.includes(text) : text.test(stderr));
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (has()) resolve();
        };
        listeners.push(check);
        check();
        setTimeout(() => reject(new Error(`no ${String(text)} on stderr within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs).unref();
        void done.then(() => setTimeout(() => (has() ? resolve() : reject(new Error(`exited without ${String(text)} on stderr: ${stderr}`))), 10));
      });
    },
  };
}

export const run = (args: string[], input?: string | Buffer, env?: NodeJS.ProcessEnv): Promise<Run> => start(args, input, [], env ? { env } : {}).done;
