// Conventions of the source that a compiler does not check.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/: the sources are two levels up.
const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

describe('source conventions', () => {
  it('a module that uses Buffer as a value imports it from node:buffer (the global is a getter in Node.js 20)', () => {
    const files = sources(SRC);
    assert.ok(files.length > 20, `found the sources in ${SRC}`);
    const missing = files.filter((f) => {
      const code = readFileSync(f, 'utf8')
        .split('\n')
        .filter((line) => !line.trimStart().startsWith('//') && !line.trimStart().startsWith('*'))
        .join('\n');
      const usesValue = /\bBuffer\.[a-zA-Z]|instanceof Buffer\b|new Buffer\b/.test(code);
      return usesValue && !/import \{[^}]*\bBuffer\b[^}]*\} from 'node:buffer'/.test(code);
    });
    assert.deepEqual(missing, []);
  });
});
