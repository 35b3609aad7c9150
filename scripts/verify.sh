#!/usr/bin/env bash
# scripts/verify.sh (make verify): the main job for a new user.
#   1. builds every configuration (make CONFIG=<cfg>)
#   2. runs scripts/check.sh (all tests, every configuration, preload programs)
#   3. runs the bench_random_mixed smoke: hakmem, glibc, hakmem via LD_PRELOAD
#   4. prints a one-screen summary of build/check-results.tsv
# Exits non-zero if anything failed.
#
# VERIFY_TIME (seconds, default 300) is the budget for the parts that scale:
# it sets HAK_TEST_SCALE for the tests (unless already set) and the
# benchmark's cycle count. Builds and the fixed-size checks are not scaled.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. scripts/lib-check.sh

VERIFY_TIME=${VERIFY_TIME:-300}
case $VERIFY_TIME in '' | *[!0-9]*) echo "verify: VERIFY_TIME must be a number of seconds" >&2; exit 2 ;; esac
CONFIGS="release debug asan tsan ubsan valgrind trace"
JOBS=${JOBS:-2}
START=$(now_s)

# Scale hint: HAK_TEST_SCALE multiplies the tests' iteration counts
# (tests/hak_test.h, default 1). The default budget (300 s) keeps scale 1,
# i.e. exactly what `make check` runs; VERIFY_TIME=600 doubles the iteration
# counts, 60 cuts them to a fifth. Clamped to [0.1, 4] to stay bounded.
if [ -z "${HAK_TEST_SCALE:-}" ]; then
  HAK_TEST_SCALE=$(awk -v t="$VERIFY_TIME" 'BEGIN { s = t / 300; if (s < 0.1) s = 0.1; if (s > 4) s = 4; printf "%g", s }')
  export HAK_TEST_SCALE
fi
# bench: VERIFY_TIME*30000 cycles, clamped to 1M..20M (9M at the default:
# a second or so per allocator).
BENCH_CYCLES=$((VERIFY_TIME * 30000 / 1))
[ "$BENCH_CYCLES" -gt 20000000 ] && BENCH_CYCLES=20000000
[ "$BENCH_CYCLES" -lt 1000000 ] && BENCH_CYCLES=1000000

echo "==> verify: VERIFY_TIME=${VERIFY_TIME}s HAK_TEST_SCALE=$HAK_TEST_SCALE bench cycles=$BENCH_CYCLES"
results_init

echo "==> verify: step 1/4: build every configuration"
for cfg in $CONFIGS; do
  RUN_TIMEOUT=1200 run_check "$cfg" lib make -j"$JOBS" CONFIG="$cfg"
done

echo "==> verify: step 2/4: scripts/check.sh"
CHECK_APPEND=1 scripts/check.sh
check_rc=$?

echo "==> verify: step 3/4: bench_random_mixed smoke (hakmem, glibc, hakmem preload)"
RUN_TIMEOUT=600 run_check release bench-random-mixed env CYCLES="$BENCH_CYCLES" REPS=1 \
  ALLOCATORS="hakmem glibc hakmem-preload" scripts/bench-random-mixed.sh
benchlog=$(logfile release bench-random-mixed)
sed -n '/^allocator .*median ops\/s/,/^(raw results/p' "$benchlog" | grep -v '^(raw'

echo
echo "==> verify: step 4/4: summary (every row: build/check-results.tsv)"
# One row per check and result; the configuration column lists where it ran.
awk -F'\t' -v nconf="$(echo "$CONFIGS" | wc -w)" '
  NR == 1 { next }
  {
    key = $1 SUBSEP $3
    if (!(key in cfgs)) { order[++n] = key; cfgs[key] = $2; cnt[key] = 1 }
    else { cfgs[key] = cfgs[key] " " $2; cnt[key]++ }
    t[key] += $4
    res[$3]++; total_t += $4
  }
  END {
    fmt = "%-28s | %-34s | %-6s | %8s\n"
    printf fmt, "check", "configuration", "result", "time"
    printf "%s\n", "-----------------------------+------------------------------------+--------+---------"
    for (i = 1; i <= n; i++) {
      split(order[i], k, SUBSEP)
      c = cfgs[order[i]]
      if (cnt[order[i]] == nconf && c !~ /preload/) c = "all " nconf
      if (length(c) > 34) c = substr(c, 1, 31) "..."
      printf fmt, k[1], c, k[2], sprintf("%.1fs", t[order[i]])
    }
    printf "%s\n", "-----------------------------+------------------------------------+--------+---------"
    printf "totals: %d checks: %d PASS, %d FAIL, %d HANG, %d SKIP; %.0fs of checks\n",
      NR - 1, res["PASS"], res["FAIL"], res["HANG"], res["SKIP"], total_t
  }' "$HAK_RESULTS"

END=$(now_s)
echo "verify: wall time $(elapsed "$START" "$END")s; logs in $HAK_LOGDIR/"
totals_line
[ "$HAK_FAILED" -eq 0 ] && [ "$check_rc" -eq 0 ]
