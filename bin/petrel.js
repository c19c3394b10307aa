#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/src/cli (built by `npm run build`). Node.js 22.1+ keeps compiled
// code between runs (module.enableCompileCache), which shortens every command's start-up.
import module from 'node:module';
module.enableCompileCache?.();
import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2)));
