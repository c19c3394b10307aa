// Watches files for changes (including editors that replace a file by renaming a new one over it):
// the directory is watched, events are filtered by name and debounced.
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export interface FileWatcher {
  close(): void;
}

/** Calls `onChange` (debounced by `delayMs`) when any of `files` is written, created, replaced or removed. */
export function watchFiles(files: readonly string[], onChange: () => void, delayMs = 100): FileWatcher {
  const byDir = new Map<string, Set<string>>();
  for (const f of files) {
    const abs = resolve(f);
    const dir = dirname(abs);
    if (!byDir.has(dir)) byDir.set(dir, new Set());
    byDir.get(dir)!.add(basename(abs));
  }
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      onChange();
    }, delayMs);
    timer.unref();
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        if (name === null || names.has(basename(name.toString()))) fire();
      });
      w.on('error', () => {});
      watchers.push(w);
    } catch {
      // Directory not watchable (e.g. missing): SIGHUP / reload() still work.
    }
  }
  return {
    close: () => {
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
