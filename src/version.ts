// The package's version, read once from package.json (one directory above dist/).
import { readFileSync } from 'node:fs';

export const PETREL_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
