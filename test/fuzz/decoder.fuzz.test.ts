// The decoder fuzzer, bounded for the suite (a few seconds, fixed seeds); `npm run fuzz` runs it longer,
// coverage-guided. Each failure it found is a regression test below.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { checkInput, fuzzDecoder } from './decoder-fuzz.js';
import { MUTATIONS, mutate, Rng } from './mutate.js';
import { allSeeds, vectorSeeds } from './seeds.js';

describe('decoder fuzzing', () => {
  it('reads the codec test vectors as seeds', () => {
    const seeds = vectorSeeds();
    assert.ok(seeds.length >= 40, `${seeds.length} vectors`);
    for (const s of allSeeds()) assert.equal(checkInput(s.bytes, s, new Rng(1)), undefined, `seed ${s.name} is valid and round-trips`);
  });

  it('mutations are seeded (the same seed gives the same inputs) and every kind changes its input', () => {
    const [a, b] = allSeeds();
    const run = (seed: number) => Array.from({ length: 20 }, ((rng) => () => mutate(a!.bytes, b!.bytes, rng).toString('hex'))(new Rng(seed)));
    assert.deepEqual(run(5), run(5));
    assert.notDeepEqual(run(5), run(6));
    for (const [name, m] of Object.entries(MUTATIONS)) {
      const rng = new Rng(3);
      const changed = Array.from({ length: 20 }, () => {
        const out = m({ first: a!.bytes[0]!, body: a!.bytes.subarray(2) }, rng, b!.bytes);
        return Buffer.isBuffer(out) ? out.toString('hex') : `${out.first}:${out.body.toString('hex')}`;
      }).some((x) => x !== `${a!.bytes[0]}:${a!.bytes.subarray(2).toString('hex')}` && x !== a!.bytes.toString('hex'));
      assert.ok(changed, `${name} changes something`);
    }
  });

  for (const seed of [1, 2, 3]) {
    it(`no exception but MqttProtocolError with a reason code, chunking changes nothing, decoded packets round-trip (seed ${seed}, 1 s)`, () => {
      const r = fuzzDecoder({ seed, ms: 1000 });
      assert.deepEqual(r.failures, [], `${r.runs} inputs`);
      assert.ok(r.runs > 500, `${r.runs} inputs in 1 s`);
    });
  }

  // Found by the fuzzer (seed 1): MQTT 3.1 has no Session Present (byte 1 of the CONNACK is reserved), and the
  // encoder writes 0 for 3.1, but the decoder reported the bit: a 3.1 CONNACK 20 02 01 00 decoded with
  // sessionPresent true and re-encoded to 20 02 00 00.
  it('a 3.1 CONNACK decodes with sessionPresent false (3.1 has no Session Present)', () => {
    assert.equal(checkInput(Buffer.from('20020100', 'hex'), { version: 3, role: 'client' }, new Rng(1)), undefined);
  });
});
