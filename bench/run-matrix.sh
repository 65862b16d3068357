#!/usr/bin/env bash
# Runs the DESIGN §12 matrix as short invocations of loft-bench (one scenario each, under a minute), RUNS
# times each, then prints and writes the medians (bench/results/median.json).
#
#   cargo build --release --bin loft && cargo build --release -p loft-bench
#   bench/run-matrix.sh                       # RUNS=3 DURATION=10s BACKENDS="sqlite postgres"
#
# Waits while a rustc/cargo process runs: on 2 cores a build in the background halves every figure.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=${LOFT_BENCH:-target/release/loft-bench}
LOFT=${LOFT_BIN:-target/release/loft}
OUT=${OUT:-bench/results}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
BACKENDS=${BACKENDS:-sqlite postgres}
GROUPS_=${GROUPS_:-ingest e2e publish unary latency latency-publish}
EXTRA=${EXTRA:-}

wait_idle() {
  local waited=0
  while pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; do
    if [ "$waited" = 0 ]; then echo "run-matrix: waiting for rustc/cargo to finish…" >&2; fi
    sleep 5
    waited=$((waited + 5))
    if [ "$waited" -ge 1800 ]; then echo "run-matrix: still building after 30 min; giving up" >&2; exit 1; fi
  done
  return 0
}

mkdir -p "$OUT"
files=()
for run in $(seq 1 "$RUNS"); do
  for backend in $BACKENDS; do
    for group in $GROUPS_; do
      f="$OUT/$backend-${group//,/+}-$run.json"
      for attempt in 1 2 3 4 5; do
        wait_idle
        echo "run-matrix: run $run, $backend, $group" >&2
        # shellcheck disable=SC2086
        "$BENCH" --backend "$backend" --scenario "$group" --duration "$DURATION" --loft-bin "$LOFT" --json "$f" $EXTRA >/dev/null
        # A build or test run meanwhile skews the figures (the report says "quiet": false): measure again.
        if grep -q '"quiet": true' "$f"; then break; fi
        echo "run-matrix: a build ran during the measurement; again" >&2
      done
      files+=("$f")
    done
  done
done
"$BENCH" --merge "${files[@]}" --json "$OUT/median.json"
