#!/usr/bin/env bash
# bench/metrics-scrape.sh [REPEATS]: does an HTTP listener scraped every second cost anything on the message path?
#
# Runs ../shared/bench (mqttload) scenarios against a broker without an HTTP listener ("plain") and against one
# with `--http-port` whose /metrics is scraped every second ("scraped"), alternately, REPEATS times each (default 2),
# in the same run; prints each pair and the median ratio scraped/plain of the received rate and of the broker's
# CPU time per delivered message (the figure that does not depend on the generator's speed). Target: within 3 %.
#
# Environment: SCENARIOS (fanin-q0,pairs-q0) DURATION (10) BENCH (../shared/bench) PORT (18850) HTTP_PORT (18851)
#              BROKER_CPU (0) GEN_CPU (1) OUT (a temporary JSON lines file). Needs `npm run build` first.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPEATS=${1:-2}
BENCH=${BENCH:-$ROOT/../shared/bench}
[ -x "$BENCH/run.sh" ] || BENCH=/work/shared/bench
SCENARIOS=${SCENARIOS:-fanin-q0,pairs-q0}
export DURATION=${DURATION:-10}
PORT=${PORT:-18850}
HTTP_PORT=${HTTP_PORT:-18851}
BROKER_CPU=${BROKER_CPU:-0}
export GEN_CPU=${GEN_CPU-1}
WORK=$(mktemp -d /tmp/petrel-metrics-bench.XXXXXX)
export OUT=${OUT:-$WORK/results.jsonl}
TOKEN_FILE=$WORK/token
head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$TOKEN_FILE"
chmod 600 "$TOKEN_FILE"
[ -f "$ROOT/dist/src/cli/main.js" ] || { echo "metrics-scrape: run npm run build first" >&2; exit 1; }

BPID=
SCRAPER=
cleanup() {
	[ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null
	[ -n "$BPID" ] && kill "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null
	BPID= SCRAPER=
}
trap 'cleanup; rm -rf "$WORK"' EXIT

wait_port() {
	for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
	echo "metrics-scrape: nothing listens on port $1" >&2
	return 1
}

run_one() { # run_one plain|scraped REPEAT
	local mode=$1 args=(--port "$PORT" --host 127.0.0.1 --log-level warn)
	[ "$mode" = scraped ] && args+=(--http-port "$HTTP_PORT" --http-token-file "$TOKEN_FILE")
	taskset -c "$BROKER_CPU" node "$ROOT/bin/petrel.js" broker "${args[@]}" > "$WORK/broker-$mode.log" 2>&1 &
	BPID=$!
	wait_port "$PORT" || return 1
	if [ "$mode" = scraped ]; then
		wait_port "$HTTP_PORT" || return 1
		# One scrape a second, as a Prometheus with scrape_interval: 1s would (the default is 15 s or more).
		(while :; do curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/metrics"; sleep 1; done) &
		SCRAPER=$!
	fi
	LABEL="$mode/$2" "$BENCH/run.sh" 127.0.0.1 "$PORT" "$BPID" "$SCENARIOS" | sed "s/^/$mode  /"
	cleanup
}

echo "metrics-scrape: $SCENARIOS, ${DURATION} s each, $REPEATS repeats, plain and scraped alternately ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq 1 "$REPEATS"); do
	if [ $((r % 2)) = 1 ]; then run_one plain "$r"; run_one scraped "$r"; else run_one scraped "$r"; run_one plain "$r"; fi
done

node - "$OUT" <<'JS'
const lines = require('fs').readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const by = {};
for (const j of lines) {
  const [mode, , scenario] = j.label.split('/');
  const cpuPerMsg = j.recv_rate > 0 ? (j.broker_cpu_pct * 10000) / j.recv_rate : NaN;
  ((by[scenario] ??= { plain: [], scraped: [] })[mode]).push({ rate: j.recv_rate, cpuPerMsg, ok: j.ok });
}
console.log('\nscenario      plain msg/s (median)  scraped msg/s  ratio   plain cpu-us/msg  scraped cpu-us/msg  ratio');
for (const [sc, m] of Object.entries(by)) {
  const pr = median(m.plain.map((x) => x.rate)), sr = median(m.scraped.map((x) => x.rate));
  const pc = median(m.plain.map((x) => x.cpuPerMsg)), scpu = median(m.scraped.map((x) => x.cpuPerMsg));
  console.log(`${sc.padEnd(13)} ${pr.toFixed(0).padStart(20)} ${sr.toFixed(0).padStart(14)} ${(sr / pr).toFixed(3).padStart(6)} ${pc.toFixed(2).padStart(17)} ${scpu.toFixed(2).padStart(19)} ${(scpu / pc).toFixed(3).padStart(6)}`);
}
JS
