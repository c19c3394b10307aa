// Chaos: one publisher pushing QoS 0 as fast as its socket drains (to two readers), beside three normal
// clients doing request/response at QoS 1 through a responder. Every QoS 1 request and response is
// delivered, the broker stays up and takes a new client afterwards, and nothing is left behind. Latency is
// not asserted here (a benchmark measures it: npm run bench:overload, docs/performance.md).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventually, startBroker } from '../helpers/broker.js';
import { latencySummary, runOverload } from '../helpers/overload.js';
import { RawClient } from '../helpers/raw-client.js';

describe('chaos: overload beside normal clients', () => {
  it('a QoS 0 flood does not cost the normal clients a QoS 1 message; the broker stays up', async (t) => {
    const { broker, port } = await startBroker();
    t.after(() => broker.close());
    const r = await runOverload(port, { requesters: 3, requests: 150, seconds: 30, requestTimeout: 15_000 });
    const l = latencySummary(r.latencies);
    t.diagnostic(
      `flood: ${r.floodSent} sent, ${Math.round(r.floodDeliveredBytes / r.floodPacketBytes)} delivered to 2 readers; ` +
        `normal: ${r.responses}/${r.requests} in ${r.seconds.toFixed(1)} s, p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(1)} ms`,
    );

    assert.ok(r.floodSent >= 1000, `the flood ran (${r.floodSent} messages)`);
    assert.equal(r.requests, 450, 'every request was sent');
    assert.equal(r.lost, 0, 'no request or response lost');
    assert.equal(r.responses, 450);
    assert.ok(broker.inspect.stats().packetsReceived > r.floodSent / 2, 'the broker read the flood');

    const { client, connack } = await RawClient.connect(port, { clientId: 'after-overload' });
    assert.equal(connack.reasonCode, 0, 'a new client is accepted after the flood');
    await client.sync();
    client.destroy();
    await eventually(() => broker.inspect.counts().connections === 0, 5000, 'every connection closed');
    assert.equal(broker.inspect.sessionTotals().inflight, 0);
  });
});
