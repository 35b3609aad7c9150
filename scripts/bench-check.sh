#!/usr/bin/env bash
# scripts/bench-check.sh (make bench-check [TOL=0.15]; make bench-baseline):
# hakmem's throughput ratios to its peers against bench/baseline.json.
#
#   bench-check.sh                  compare BENCH_RESULTS (default
#                                   build/bench/results.json, the latest
#                                   make bench) with BENCH_BASELINE (default
#                                   bench/baseline.json); when there are no
#                                   results yet, run `make bench QUICK=1` first
#   bench-check.sh --write-baseline write this kind of machine's entry of
#                                   BENCH_BASELINE from BENCH_RESULTS (the
#                                   entries of other kinds are kept)
#
# TOL (default 0.15): a ratio may drop to baseline x (1 - TOL). Exit 1 with
# one FAIL line per workload/peer below that (details: scripts/bench-check.py).
# STAT=median (default) compares ratios of medians, STAT=best ratios of each
# side's best run (steadier on a machine shared with other work).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
RESULTS=${BENCH_RESULTS:-build/bench/results.json}
BASELINE=${BENCH_BASELINE:-bench/baseline.json}
TOL=${TOL:-0.15}
STAT=${STAT:-median}
PY=$(command -v python3 || command -v /usr/bin/python3)

if [ "${1:-}" = --write-baseline ]; then
  if [ ! -f "$RESULTS" ]; then
    echo "bench-baseline: no results ($RESULTS): run make bench first" >&2
    exit 1
  fi
  exec "$PY" scripts/bench-check.py baseline --results "$RESULTS" --baseline "$BASELINE"
fi

if [ ! -f "$RESULTS" ]; then
  echo "==> bench-check: no results ($RESULTS); running a QUICK bench first"
  QUICK=1 BENCH_OUT=$(dirname "$RESULTS") scripts/bench.sh || echo "bench-check: the bench run reported failures"
fi
exec "$PY" scripts/bench-check.py check --results "$RESULTS" --baseline "$BASELINE" --tol "$TOL" --stat "$STAT"
