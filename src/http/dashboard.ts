// The dashboard's files (plain HTML, CSS and JavaScript, no build step), served at /.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };

/** Where the files are: next to this module when copied there, else in the sources (dist/src/http → src/http/dashboard). */
export function dashboardDir(): string {
  const candidates = [fileURLToPath(new URL('./dashboard/', import.meta.url)), fileURLToPath(new URL('../../../src/http/dashboard/', import.meta.url))];
  const found = candidates.find((d) => existsSync(join(d, 'index.html')));
  if (!found) throw new Error(`dashboard files not found (looked in ${candidates.join(', ')})`);
  return found;
}

export function registerDashboard(app: FastifyInstance): void {
  const dir = dashboardDir();
  // Read once: a handful of small files, and no path from a request ever reaches the file system.
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type) files.set(`/${name}`, { type, body: readFileSync(join(dir, name)) });
  }
  const headers = {
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
  };
  app.get('/', { schema: { hide: true } }, async (_request, reply) => reply.headers(headers).type(files.get('/index.html')!.type).send(files.get('/index.html')!.body));
  for (const [path, file] of files) {
    if (path === '/index.html') continue;
    app.get(path, { schema: { hide: true } }, async (_request, reply) => reply.headers(headers).type(file.type).send(file.body));
  }
}
