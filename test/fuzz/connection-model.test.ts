// Model-based fuzzing of connections on the in-memory core, bounded for the suite (fixed seeds, ~1 s each);
// `npm run fuzz` runs it longer. See connection-model.ts for the commands, the model and the invariants.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runModel } from './connection-model.js';

describe('connection model-based fuzzing', () => {
  for (const seed of [1, 2, 3]) {
    it(`model and broker agree on every packet; no exception escapes; nothing leaks after close (seed ${seed})`, () => {
      const r = runModel({ seed, ms: 1500 });
      assert.equal(r.failure, undefined);
      for (const kind of ['connect', 'subscribe', 'publish', 'close', 'advance', 'garbage', 'oversize']) assert.ok((r.executed[kind] ?? 0) > 0, `${kind} ran`);
    });
  }

  it('a wrong rule in the model is caught and shrunk to a short sequence (the check can fail)', () => {
    const r = runModel({ seed: 9, ms: 5000, wrongRule: true });
    assert.ok(r.failure, 'caught');
    assert.match(r.failure, /the model expects \[.*q0.*\], the broker sent \[.*q1/);
    // connect, subscribe at QoS ≥ 1, publish at QoS 1: shrunk to a few commands.
    assert.ok(r.failure.split('),').length <= 5, r.failure);
  });
});
