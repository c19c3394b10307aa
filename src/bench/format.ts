// A load run's summary as text for a terminal.
import type { LatencySummary } from './histogram.js';
import type { BenchSummary } from './types.js';

/** "1 client", "2 clients". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function fmtMs(v: number): string {
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`;
}

function latencyLine(l: LatencySummary): string {
  if (l.count === 0) return 'no samples';
  return `p50 ${fmtMs(l.p50)}  p95 ${fmtMs(l.p95)}  p99 ${fmtMs(l.p99)}  max ${fmtMs(l.max)}  (${plural(l.count, 'sample')})`;
}

export function formatSummary(s: BenchSummary): string {
  const head = `bench ${s.mode}: ${s.url}, MQTT ${s.protocolVersion}, ${plural(s.clients.target, 'client')}${s.mode === 'conn' ? '' : `, QoS ${s.qos}`}${s.mode === 'pub' ? `, ${s.payloadSize} B payload` : ''}, ${s.durationSeconds.toFixed(1)} s`;
  if (s.clients.connected === 0) {
    // nothing to measure: say so instead of zeros
    const lines = [head, `  connected      0/${s.clients.target}: no client connected, nothing was measured`];
    for (const e of s.errors) lines.push(`  error          ${e}`);
    return lines.join('\n');
  }
  const lines = [
    head,
    `  connected      ${s.clients.connected}/${s.clients.target}${s.clients.failed ? `, ${s.clients.failed} failed` : ''}${s.clients.disconnected ? `, ${s.clients.disconnected} dropped` : ''}`,
    `  connect time   ${latencyLine(s.connectLatency)}`,
  ];
  if (s.mode === 'pub') {
    lines.push(`  sent           ${plural(s.sent, 'message')}, ${Math.round(s.sendRate)} msg/s`);
    if (s.qos > 0) {
      lines.push(`  acknowledged   ${s.acknowledged}`);
      lines.push(`  ack latency    ${latencyLine(s.ackLatency)}`);
    }
  }
  if (s.mode === 'sub') {
    const rate = s.received >= 2 ? `, ${Math.round(s.receiveRate)} msg/s from the first to the last` : '';
    lines.push(`  received       ${plural(s.received, 'message')}${rate}`);
    lines.push(`  latency        ${latencyLine(s.latency)}`);
  }
  for (const e of s.errors) lines.push(`  error          ${e}`);
  return lines.join('\n');
}
