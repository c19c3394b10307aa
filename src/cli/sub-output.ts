// Where `petrel sub` puts what it prints: stdout, a file it appends to (--file-write), or one file per
// payload (--file-save: name.ext, name-1.ext, name-2.ext, ...; the raw bytes, for images and firmware).
import { Buffer } from 'node:buffer';
import { createWriteStream, existsSync, openSync, writeFileSync, type WriteStream } from 'node:fs';
import { extname } from 'node:path';
import type { Message } from '../client/index.js';
import { UsageError } from './common-client.js';

export interface Sink {
  /** Writes one message's output (and the end of line), waiting when the destination is full. */
  write(message: Message, out: Buffer | string, eol: Buffer | undefined): Promise<void>;
  close(): Promise<void>;
}

function streamSink(stream: NodeJS.WritableStream, ownsStream: boolean): Sink {
  let failure: Error | undefined;
  stream.on('error', (err: Error) => (failure = err));
  return {
    async write(_message, out, eol) {
      if (failure) throw failure;
      // the line and its end before waiting: skipping the newline under backpressure ran lines together
      const flushed = stream.write(out);
      if (!(eol ? stream.write(eol) && flushed : flushed)) await new Promise((r) => stream.once('drain', r));
    },
    close: () => (ownsStream ? new Promise<void>((resolve) => (stream as WriteStream).end(() => resolve())) : Promise.resolve()),
  };
}

/** name.ext, then name-1.ext, name-2.ext ... whichever does not exist yet. */
function nextFreeName(file: string, start: number): { name: string; next: number } {
  const ext = extname(file);
  const stem = ext ? file.slice(0, -ext.length) : file;
  for (let i = start; ; i++) {
    const name = i === 0 ? file : `${stem}-${i}${ext}`;
    if (!existsSync(name)) return { name, next: i + 1 };
  }
}

export function openSink(options: { fileWrite?: string; fileSave?: string }): Sink {
  if (options.fileWrite !== undefined && options.fileSave !== undefined) throw new UsageError('use --file-write (one file for all messages) or --file-save (a file per message), not both');
  if (options.fileSave !== undefined) {
    const base = options.fileSave;
    let next = 0;
    return {
      async write(message) {
        const free = nextFreeName(base, next);
        next = free.next;
        writeFileSync(free.name, message.payload);
        process.stderr.write(`petrel sub: ${message.topic}: ${message.payload.length} bytes saved in ${free.name}\n`);
      },
      close: () => Promise.resolve(),
    };
  }
  if (options.fileWrite !== undefined) {
    let fd: number;
    try {
      fd = openSync(options.fileWrite, 'a');
    } catch (err) {
      throw new UsageError(`--file-write "${options.fileWrite}": cannot open it: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const stream = createWriteStream(options.fileWrite, { fd });
    return streamSink(stream, true);
  }
  return streamSink(process.stdout, false);
}
