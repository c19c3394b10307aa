// V8 precise coverage (node:inspector's Profiler) of chosen scripts: which blocks an input ran, so that a
// fuzzer keeps the inputs that reach new code. Block counts are bucketed (1, 2, 3, 4-7, 8-15, ...) as AFL
// does, so that running a loop more often also counts as new.
import { Session } from 'node:inspector';

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  url: string;
  functions: { functionName: string; ranges: Range[] }[];
}

const bucket = (n: number): number => (n <= 3 ? n : 31 - Math.clz32(n) + 2);

export class Coverage {
  private readonly session = new Session();
  /** Every block (url:start-end) seen executed, over the whole run. */
  readonly blocksSeen = new Set<string>();
  /** Every block of the watched scripts, executed or not. */
  readonly blocksKnown = new Set<string>();
  private readonly features = new Set<string>();

  constructor(private readonly watch: (url: string) => boolean) {}

  private post<T>(method: string, params?: object): T {
    let out: T | undefined;
    let error: Error | null = null;
    // The in-process session answers synchronously.
    this.session.post(method, params ?? {}, (err, result) => {
      error = err;
      out = result as T;
    });
    if (error) throw error;
    if (out === undefined) throw new Error(`${method}: no synchronous answer`);
    return out;
  }

  start(): void {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
    this.hits(); // forget what ran before
  }

  stop(): void {
    this.post('Profiler.stopPreciseCoverage');
    this.post('Profiler.disable');
    this.session.disconnect();
  }

  /** The features (block and count bucket) run since the last call; taking resets the counts. */
  hits(): Set<string> {
    const { result } = this.post<{ result: ScriptCoverage[] }>('Profiler.takePreciseCoverage');
    const out = new Set<string>();
    for (const script of result) {
      if (!this.watch(script.url)) continue;
      for (const fn of script.functions) {
        for (const r of fn.ranges) {
          const block = `${script.url}:${r.startOffset}-${r.endOffset}`;
          this.blocksKnown.add(block);
          if (r.count === 0) continue;
          this.blocksSeen.add(block);
          out.add(`${block}#${bucket(r.count)}`);
        }
      }
    }
    return out;
  }

  /** The features run since the last call that were never seen before (now remembered). */
  take(): string[] {
    const fresh: string[] = [];
    for (const f of this.hits()) {
      if (this.features.has(f)) continue;
      this.features.add(f);
      fresh.push(f);
    }
    return fresh;
  }

  get featureCount(): number {
    return this.features.size;
  }
}
