#!/usr/bin/env bash
# scripts/scaling-run.sh <outdir>: the many-core run, on a machine that has
# the cores (a lent 16-core machine) but may lack compilers and the peer
# libraries. Everything is built here first and copied along:
#
#   make CONFIG=release lib bench-bins build/release/bench/pageprobe \
#        build/release/stress/{<prog>,<prog>.libc,bench_random_mixed.libc}
#   make CONFIG=tsan build/tsan/stress/{larson,remote_free,thread_churn,realloc_storm,aligned_storm} \
#        build/tsan/tests/<each of MT_TESTS below> (and release's)
#   (the tsan programs: those of `scripts/stress.sh progs tsan`, which step 3
#   runs with NO_BUILD=1: a missing one is a FAIL)
#   mkdir .peers && cp /lib/x86_64-linux-gnu/lib{mimalloc,jemalloc,tcmalloc_minimal}.so.* .peers/
#
# Then, there, with build/release, build/tsan and .peers copied into the
# tree: scripts/scaling-run.sh OUT. It runs, without building anything:
#   1. bench/pageprobe (the machine's page costs, into OUT/pageprobe.txt)
#   2. what make bench-scaling runs (larson and xthread at SCALING_THREADS, default
#      1 2 4 8 16; REPS 5, SCALE 0.25, i.e. 0.375 s runs): OUT/results.json
#      and OUT/results.md
#   3. scripts/stress.sh run tsan at TSAN_THREADS (8 16), TSAN_S (5) seconds
#      a program, and run release prefixed + preload at REL_THREADS (16),
#      REL_S (3) seconds a program:
#      OUT/stress.tsv (one PASS/FAIL/HANG line a run) and the logs of
#      failed runs
#   4. the multithreaded tests (MT_TESTS) in a loop, MT_TSAN_S (100) seconds
#      from MT_TSAN_DIR (build/tsan/tests) and MT_REL_S (50) seconds from
#      build/release/tests, HAK_TEST_SCALE=2: OUT/mt-tests.txt (rounds, and
#      one line per failed run; exit 77, a test skipped in that build, is
#      not a failure) and the logs of failed runs. The whole tsan tests
#      folder is too large to copy along; build the list, copy those to a
#      folder of its own and name it in MT_TSAN_DIR.
# SCALING_REV names the revision built (the copied tree's git may be stale).
# SCALING_BENCH=0 leaves out steps 1 and 2 (a correctness run: no peers needed).
# Exit status: non-zero when a peer library is missing from .peers, or a
# hakmem bench run or any stress run failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${1:?usage: scripts/scaling-run.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
rc=0
{
  nproc
  grep -m1 'model name' /proc/cpuinfo
  uname -r
  ldd --version 2>&1 | head -1
  echo "revision: ${SCALING_REV:-unknown}"
} >"$OUT/machine.txt"

if [ "${SCALING_BENCH:-1}" = 1 ]; then
  build/release/bench/pageprobe >"$OUT/pageprobe.txt" 2>&1 || rc=1

  # the run is worth little without the peers: each must have been copied along
  for l in libmimalloc libjemalloc libtcmalloc_minimal; do
    ls .peers/"$l".so* >/dev/null 2>&1 || { echo "scaling-run: .peers/$l.so* missing (see the header)" >&2; rc=1; }
  done

  # bench.sh itself rather than make bench-scaling: the machine may have no make
  BENCH_NOBUILD=1 HAK_PEER_DIR=$PWD/.peers REPS=${REPS:-5} SCALE=${SCALE:-0.25} \
    BENCH_THREADS="${SCALING_THREADS:-1 2 4 8 16}" BENCH_OUT=build/bench-scaling \
    WORKLOADS='larson/* xthread/*' scripts/bench.sh || rc=1
  cp build/bench-scaling/results.json build/bench-scaling/results.md "$OUT/" || rc=1
fi

export HAK_RESULTS=$OUT/stress.tsv HAK_LOGDIR=build/logs
: >"$HAK_RESULTS"
# CELL names each run after its thread count: runs of one program at two
# counts would otherwise share a name, a results line that does not say
# which, and a log that the second run overwrites
for t in ${TSAN_THREADS:-8 16}; do
  CELL=t$t THREADS=$t DURATION=${TSAN_S:-5} NO_BUILD=1 JOBS=1 scripts/stress.sh run tsan || rc=1
done
CELL=t${REL_THREADS:-16} THREADS=${REL_THREADS:-16} DURATION=${REL_S:-3} NO_BUILD=1 JOBS=1 scripts/stress.sh run release prefixed preload || rc=1

MT_TESTS=${MT_TESTS:-test_abandon_handover test_abandon_race test_abandon_stale_live test_stats_concurrent test_exit_free test_exit_malloc test_failure_paths test_fork test_fork_concurrent test_fork_mark test_heap_publish test_mt_smoke test_notify_race test_page_reuse test_purge_delay test_reclaim_on_free test_release_states test_segment_cache test_stats_check test_thread_exit test_trim test_trim_after_exit test_large_double_free_race test_fork_hooks test_free_no_heap test_cancel}
# mt_loop NAME DIR SECONDS: every test of MT_TESTS, round after round
mt_loop() {
  local end=$((SECONDS + $3)) r=0 t st tests=
  for t in $MT_TESTS; do
    if [ -x "$2/$t" ]; then tests="$tests $t"; else
      echo "$1 $t: $2/$t missing" >>"$OUT/mt-tests.txt"
      rc=1
    fi
  done
  [ -n "$tests" ] || return
  while [ $SECONDS -lt $end ]; do
    r=$((r + 1))
    for t in $tests; do
      HAK_TEST_SCALE=2 timeout 90 "$2/$t" >"$OUT/mt.log" 2>&1
      st=$?
      if [ $st != 0 ] && [ $st != 77 ]; then
        echo "$1 $t round $r: exit $st" >>"$OUT/mt-tests.txt"
        # the first failed run's log of each test
        [ -e "$OUT/mt-fail-$1-$t.log" ] || mv "$OUT/mt.log" "$OUT/mt-fail-$1-$t.log"
        rc=1
      fi
    done
  done
  echo "$1: $r rounds" >>"$OUT/mt-tests.txt"
}
: >"$OUT/mt-tests.txt"
TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$PWD/tsan/tsan.supp" \
  mt_loop tsan "${MT_TSAN_DIR:-build/tsan/tests}" "${MT_TSAN_S:-100}"
mt_loop release build/release/tests "${MT_REL_S:-50}"
rm -f "$OUT/mt.log"

# the logs of failed runs (the results name them)
if awk -F'\t' 'NR > 1 && $3 != "PASS" { bad = 1 } END { exit !bad }' "$HAK_RESULTS"; then
  tar czf "$OUT/failed-logs.tgz" build/logs 2>/dev/null
fi
exit $rc
