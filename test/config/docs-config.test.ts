// Checks the configuration examples of docs/configuration.md and README.md, so the documentation
// stays true: every ```yaml / ```json block that is a broker config (a whole file or a fragment of
// one) must parse and pass validateConfig(), and the ACL file example must parse as an ACL file.
// Files the examples name (server.crt, /etc/petrel/passwd, ...) are not opened: validation does not
// read them, so a fragment only has to be a valid config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { validateConfig } from '../../src/config/config.js';
import { Acl, parseAclFile } from '../../src/auth/acl.js';

const DOCS = {
  'docs/configuration.md': fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url)),
  'README.md': fileURLToPath(new URL('../../../README.md', import.meta.url)),
  'docs/migrating-from-mosquitto.md': fileURLToPath(new URL('../../../docs/migrating-from-mosquitto.md', import.meta.url)),
};

interface Block {
  doc: string;
  /** Language of the fence ('' for a plain ```). */
  lang: string;
  /** The block's text, with the fence's indentation (list items) removed. */
  text: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The nearest heading above the block. */
  heading: string;
  /** The last non-blank line of prose before the block. */
  intro: string;
}

/** Fenced blocks of a Markdown file, each with the heading above it (headings inside fences are not headings). */
function fencedBlocks(doc: string, markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  let heading = '(top of file)';
  let intro = '';
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(`{3,})(\S*)\s*$/.exec(lines[i]!);
    if (!open) {
      const h = /^#{1,6}\s+(.*?)\s*$/.exec(lines[i]!);
      if (h) heading = h[1]!;
      if (lines[i]!.trim() !== '') intro = lines[i]!.trim();
      continue;
    }
    const [, indent, fence, lang] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !new RegExp(`^ *${fence}\\s*$`).test(lines[j]!); j++) {
      body.push(lines[j]!.startsWith(indent!) ? lines[j]!.slice(indent!.length) : lines[j]!);
    }
    assert.ok(j < lines.length, `${doc}:${i + 1}: unclosed code fence`);
    blocks.push({ doc, lang: lang!, text: body.join('\n') + '\n', line: i + 1, heading, intro });
    intro = '';
    i = j;
  }
  return blocks;
}

const all = Object.entries(DOCS).flatMap(([doc, file]) => fencedBlocks(doc, readFileSync(file, 'utf8')));
const nameOf = (b: Block) => `${b.doc} › ${b.heading} (${b.lang || 'plain'} block, line ${b.line})`;

/**
 * yaml/json blocks that are not broker configs, found by a phrase of their text, with the reason.
 * Everything else in a yaml/json fence is checked, so a new example is checked by default.
 */
const NOT_CONFIG: [phrase: string, why: string][] = [
  // A pino log line (what the broker writes when connectionLogRate drops lines), shown as JSON: output, not input.
  ['"client connected\\" lines over connectionLogRate', 'a log line the broker writes, not a config'],
];

test('docs config examples: every yaml/json broker config validates', async (t) => {
  const candidates = all.filter((b) => b.lang === 'yaml' || b.lang === 'yml' || b.lang === 'json');
  assert.ok(candidates.length >= 10, `found only ${candidates.length} yaml/json blocks`);
  let checked = 0;
  const skipped = new Set<string>();
  for (const b of candidates) {
    const skip = NOT_CONFIG.find(([phrase]) => b.text.includes(phrase));
    if (skip) {
      skipped.add(skip[0]);
      continue;
    }
    checked++;
    await t.test(nameOf(b), () => {
      const raw: unknown = b.lang === 'json' ? JSON.parse(b.text) : parseYaml(b.text);
      assert.ok(
        typeof raw === 'object' && raw !== null && !Array.isArray(raw) && Object.keys(raw).length > 0,
        `not a mapping of settings:\n${b.text}`,
      );
      // Throws a ConfigError naming the bad key, which is the message a reader of the failure needs.
      const config = validateConfig(raw);
      assert.deepEqual(Object.keys(config).sort(), Object.keys(raw).sort());
    });
  }
  // Every skip rule still finds its block (else the docs changed and the rule is stale).
  assert.deepEqual([...skipped].sort(), NOT_CONFIG.map(([p]) => p).sort(), 'a NOT_CONFIG entry matched no block');
  assert.ok(checked >= 10, `checked only ${checked} config blocks`);
  // The README's config file example is among them.
  assert.ok(candidates.some((b) => b.doc === 'README.md'), 'README.md has a yaml config example');
});

test('docs config examples: the ACL file example parses as an ACL file', async (t) => {
  const blocks = all.filter((b) => b.doc === 'docs/configuration.md' && b.intro.includes('`all` or comma-separated') && b.heading.startsWith('Authorization'));
  // The block after "The ACL file has one rule per line: ... WHO is `all` or comma-separated ...:"
  assert.equal(blocks.length, 1, 'found the ACL file example after "The ACL file has one rule per line"');
  const b = blocks[0]!;
  const rulesInText = b.text.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#')).length;
  await t.test(nameOf(b), () => {
    assert.equal(parseAclFile(b.text, 'docs ACL example').length, rulesInText);
    // As the broker reads it: from a file, through new Acl({ file }).
    const dir = mkdtempSync(join(tmpdir(), 'petrel-docs-acl-'));
    try {
      const file = join(dir, 'acl');
      writeFileSync(file, b.text);
      const acl = new Acl({ file, default: 'deny' });
      assert.equal(acl.size, rulesInText);
      // The rules mean what the page says they mean.
      const alice = { clientId: 'c1', username: 'alice', remoteAddress: '192.0.2.1', certificateCN: undefined };
      assert.equal(acl.canPublish(alice, 'users/alice/x'), true);
      assert.equal(acl.canPublish(alice, 'users/bob/x'), false);
      assert.equal(acl.canPublish(alice, 'devices/c1/telemetry'), true);
      assert.equal(acl.canSubscribe({ ...alice, username: 'dashboard' }, 'devices/+/telemetry'), true);
      assert.equal(acl.canSubscribe({ ...alice, username: 'dashboard' }, '$SYS/#'), true);
      assert.equal(acl.canPublish({ ...alice, username: undefined, remoteAddress: '10.9.1.2' }, 'anything'), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('docs config examples: the Mosquitto ACL file example parses and means what the page says', () => {
  const blocks = all.filter((b) => b.doc === 'docs/configuration.md' && b.text.startsWith('topic read $SYS/#'));
  assert.equal(blocks.length, 1, 'found the Mosquitto acl_file example');
  const dir = mkdtempSync(join(tmpdir(), 'petrel-docs-acl-'));
  try {
    const file = join(dir, 'acl');
    writeFileSync(file, blocks[0]!.text);
    const acl = new Acl({ file });
    const who = (username: string | undefined, clientId = 'c1') => ({ clientId, username, remoteAddress: '192.0.2.1', certificateCN: undefined });
    assert.equal(acl.canSubscribe(who(undefined), '$SYS/#'), true);
    assert.equal(acl.canSubscribe(who('alice'), '$SYS/#'), false);
    assert.equal(acl.canPublish(who('alice'), 'alice/notes'), true);
    assert.equal(acl.canPublish(who('alice'), 'alice/secret/x'), false);
    assert.equal(acl.canSubscribe(who('alice'), 'alice/+'), true, 'the page says alice/+ is granted');
    assert.equal(acl.canReceive(who('alice'), 'alice/secret'), false, '... and nothing on alice/secret is sent through it');
    const strict = new Acl({ file, strictSubscribe: true });
    assert.equal(strict.canSubscribe(who('alice'), 'alice/+'), false, 'with strictSubscribe it is refused');
    assert.equal(acl.canPublish(who('bob', 'dev-1'), 'devices/dev-1/telemetry'), true);
    assert.equal(acl.canPublish(who('bob', 'dev-1'), 'elsewhere'), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
