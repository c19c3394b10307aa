#!/usr/bin/env bash
# Start-up time of each `petrel` command (time to exit after --help / --version / a bad flag), next to
# `node -e 0` (the floor for any Node.js program) and mosquitto_pub --help when it is installed.
# Runs are interleaved so that load from other processes hits every command alike; prints the median.
#   bench/cli-startup.sh [runs] [other-tree]   (default 15 runs; build first: npx tsc -p .)
# With another built checkout (e.g. `git archive <commit> | tar -x -C /tmp/before`, linked node_modules,
# npx tsc -p .), its petrel commands run in the same rounds, for a before/after comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-15}
OTHER=${2:-}
declare -a NAMES=(
  "node -e 0"
  "petrel --version"
  "petrel --help"
  "petrel pub --help"
  "petrel sub --help"
  "petrel pub (bad flag, exits before connecting)"
  "petrel pub to a closed port (loads the client)"
  "petrel passwd --help"
  "petrel convert-config --help"
  "petrel broker --help"
)
declare -a CMDS=(
  "node -e 0"
  "node bin/petrel.js --version"
  "node bin/petrel.js --help"
  "node bin/petrel.js pub --help"
  "node bin/petrel.js sub --help"
  "node bin/petrel.js pub -t a -m b -q 7"
  "node bin/petrel.js pub -h 127.0.0.1 -p 1 -t a -m b"
  "node bin/petrel.js passwd --help"
  "node bin/petrel.js convert-config --help"
  "node bin/petrel.js broker --help"
)
if [[ -n "$OTHER" ]]; then
  n=${#CMDS[@]}
  for ((i = 1; i < n; i++)); do
    NAMES+=("${NAMES[$i]} [$(basename "$OTHER")]")
    CMDS+=("${CMDS[$i]/bin\/petrel.js/$OTHER/bin/petrel.js}")
  done
fi
if command -v mosquitto_pub >/dev/null; then
  NAMES+=("mosquitto_pub --help")
  CMDS+=("mosquitto_pub --help")
fi
declare -A samples
for ((r = 0; r < RUNS; r++)); do
  for i in "${!CMDS[@]}"; do
    start=$(date +%s%N)
    ${CMDS[$i]} >/dev/null 2>&1 || true
    end=$(date +%s%N)
    samples[$i]+="$(( (end - start) / 1000 )) "
  done
done
printf '%-48s %10s\n' command "median ms"
for i in "${!CMDS[@]}"; do
  median=$(tr ' ' '\n' <<<"${samples[$i]}" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}')
  printf '%-48s %10s\n' "${NAMES[$i]}" "$median"
done
