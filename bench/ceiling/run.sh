#!/usr/bin/env bash
# bench/ceiling/run.sh [ROUNDS] [SCENARIOS] [CONTENDERS]
#
# How close is Petrel to what this machine allows? Runs ../shared/bench's mqttload scenarios (default
# pairs-q0,pairs-q1) against, in turn and fresh each time, pinned to CPU 0 (the generator on CPU 1):
#   c-forwarder     bench/ceiling/pairs-forwarder.c: the least any program can do (epoll, read, write)
#   node-forwarder  bench/ceiling/node-forwarder.ts: the least a Node.js program can do (libuv handles)
#   mosquitto       /usr/sbin/mosquitto with ../shared/bench/reference/mosquitto.conf (when installed)
#   petrel          this checkout's dist/ (run `npm run build` first)
# and prints the median msg/s and broker CPU per message of each, with the ratios to Mosquitto.
# Everything listens on 127.0.0.1 and stops by itself; each run lasts DURATION (5) seconds.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
ROUNDS=${1:-3}
SCENARIOS=${2:-pairs-q0,pairs-q1}
CONTENDERS=${3:-c-forwarder node-forwarder mosquitto petrel}
BUILD=${BENCH_BUILD:-/tmp/mqttload-build}
OUTDIR=$(mktemp -d /tmp/petrel-ceiling.XXXXXX)
PORT=18860

[ -x "$SHARED/run.sh" ] || { echo "run.sh: no $SHARED/run.sh (set SHARED_BENCH)" >&2; exit 2; }
[ -f "$ROOT/dist/bench/ceiling/node-forwarder.js" ] || { echo "run.sh: run npm run build first" >&2; exit 2; }
mkdir -p "$BUILD"
cc -O2 -o "$BUILD/pairs-forwarder" "$ROOT/bench/ceiling/pairs-forwarder.c" || exit 1
PIN=()
[ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null && PIN=(taskset -c 0)

start() {
	case $1 in
	c-forwarder) "${PIN[@]}" "$BUILD/pairs-forwarder" $PORT batch & ;;
	node-forwarder) "${PIN[@]}" node "$ROOT/dist/bench/ceiling/node-forwarder.js" $PORT batch & ;;
	mosquitto)
		sed "s/^listener .*/listener $PORT 127.0.0.1/" "$SHARED/reference/mosquitto.conf" > "$OUTDIR/mosquitto.conf"
		"${PIN[@]}" /usr/sbin/mosquitto -c "$OUTDIR/mosquitto.conf" 2>/dev/null & ;;
	petrel) (cd "$OUTDIR" && exec "${PIN[@]}" node "$ROOT/bin/petrel.js" broker --host 127.0.0.1 --port $PORT --log-level warn) >/dev/null 2>&1 & ;;
	*) echo "run.sh: unknown contender $1" >&2; exit 2 ;;
	esac
	BPID=$!
}

for round in $(seq 1 "$ROUNDS"); do
	for who in $CONTENDERS; do
		[ "$who" = mosquitto ] && [ ! -x /usr/sbin/mosquitto ] && { echo "mosquitto: not installed, skipped" >&2; continue; }
		start "$who"
		sleep 1.5
		kill -0 "$BPID" 2>/dev/null || { echo "run.sh: $who did not start" >&2; exit 1; }
		DURATION=${DURATION:-5} SETTLE=1 LABEL=$who OUT="$OUTDIR/results.jsonl" "$SHARED/run.sh" 127.0.0.1 $PORT "$BPID" "$SCENARIOS" | sed "s/^/$who  /"
		kill "$BPID"; wait "$BPID" 2>/dev/null
		sleep 1
	done
done

node - "$OUTDIR/results.jsonl" <<'JS'
const rows = require('fs').readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const groups = new Map();
for (const r of rows) {
  const [who, sc] = r.label.split('/');
  const key = `${sc}\t${who}`;
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(r);
}
const stat = (rs) => ({ rate: median(rs.map((r) => r.recv_rate)), cpu: median(rs.map((r) => (r.broker_cpu_pct * 10000) / r.recv_rate)), gen: median(rs.map((r) => r.gen_cpu_pct)), p99: median(rs.map((r) => r.lat_p99_us)), range: [Math.min(...rs.map((r) => r.recv_rate)), Math.max(...rs.map((r) => r.recv_rate))], lost: rs.reduce((n, r) => n + r.lost, 0) });
console.log('\n| scenario | contender | msg/s median [min-max] | x Mosquitto | broker cpu-us/msg | gen-cpu | p99 us | lost |');
console.log('|---|---|---|---|---|---|---|---|');
for (const sc of [...new Set(rows.map((r) => r.label.split('/')[1]))]) {
  const mos = groups.get(`${sc}\tmosquitto`);
  const ref = mos ? stat(mos).rate : undefined;
  for (const [key, rs] of groups) {
    if (!key.startsWith(`${sc}\t`)) continue;
    const s = stat(rs);
    console.log(`| ${sc} | ${key.split('\t')[1]} | ${Math.round(s.rate)} [${Math.round(s.range[0])}-${Math.round(s.range[1])}] | ${ref ? (s.rate / ref).toFixed(2) + 'x' : '-'} | ${s.cpu.toFixed(1)} | ${s.gen}% | ${s.p99} | ${s.lost} |`);
  }
}
JS
echo "(JSON lines: $OUTDIR/results.jsonl)"
