#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/src/cli (built by `npm run build`). Node.js 22.1+ keeps compiled
// code between runs (module.enableCompileCache), which shortens every command's start-up.
import module from 'node:module';
module.enableCompileCache?.();
import('../dist/src/cli/main.js').then(
  (m) => m.main(process.argv.slice(2)),
  (err) => {
    // A checkout without a build (or without its dependencies) gets one line, not a stack trace.
    const missing = err?.code === 'ERR_MODULE_NOT_FOUND' && /dist[\\/]src[\\/]/.test(String(err.message));
    console.error(missing ? 'petrel: not built yet: run `npm run build` (or `npm start`) first' : `petrel: cannot load the CLI: ${err?.message ?? err}${err?.code === 'ERR_MODULE_NOT_FOUND' ? ' (run `npm ci`)' : ''}`);
    process.exit(1);
  },
);
