#!/usr/bin/env bash
# scripts/scaling-run.sh <outdir>: the many-core run, on a machine that has
# the cores (a lent 16-core machine) but may lack compilers and the peer
# libraries. Everything is built here first and copied along:
#
#   make CONFIG=release lib bench-bins build/release/bench/pageprobe \
#        build/release/stress/{<prog>,<prog>.libc,bench_random_mixed.libc}
#   make CONFIG=tsan build/tsan/stress/{larson,remote_free,thread_churn}
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
# SCALING_REV names the revision built (the copied tree's git may be stale).
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

export HAK_RESULTS=$OUT/stress.tsv HAK_LOGDIR=build/logs
: >"$HAK_RESULTS"
# CELL names each run after its thread count: runs of one program at two
# counts would otherwise share a name, a results line that does not say
# which, and a log that the second run overwrites
for t in ${TSAN_THREADS:-8 16}; do
  CELL=t$t THREADS=$t DURATION=${TSAN_S:-5} NO_BUILD=1 JOBS=1 scripts/stress.sh run tsan || rc=1
done
CELL=t${REL_THREADS:-16} THREADS=${REL_THREADS:-16} DURATION=${REL_S:-3} NO_BUILD=1 JOBS=1 scripts/stress.sh run release prefixed preload || rc=1
# the logs of failed runs (the results name them)
if awk -F'\t' 'NR > 1 && $3 != "PASS" { bad = 1 } END { exit !bad }' "$HAK_RESULTS"; then
  tar czf "$OUT/failed-logs.tgz" build/logs 2>/dev/null
fi
exit $rc
