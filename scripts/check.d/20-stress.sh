#!/usr/bin/env bash
# make check, part 20: a short run of the multithreaded stress suite.
#   tsan:    larson, remote_free, thread_churn, realloc_storm, aligned_storm; 4 threads x 1024
#            chunks, 2 s each
#   asan:    the stress programs but fork_stress, 4 threads x 1024 chunks, 1 s each
#   release: all six, prefixed API and LD_PRELOAD of libhakmem.so, 1 s each
#   watchdog self-test (a thread blocks forever: exit 3 and stacks printed)
#   planted bugs: scripts/stress-planted.sh, the TSan runs (each of its
#   planted concurrency bugs caught, and each still applies to the code)
#   and the proof runs (one 1 s release program per bug whose log must
#   show the named check: drop-on-drain preloaded, dup-handout)
#   deadline-within-limit (a run's time limit leaves its --deadline's
#   watchdog a minute to fire and report)
#   scaling-run-builds (scripts/scaling-run.sh's header builds every
#   program `stress.sh run tsan` runs: it runs them with NO_BUILD=1)
#   build-failure self-test (a failed build of the stress programs is a FAIL
#   in the results, not a configuration whose checks silently vanish)
# Each program run is one check (scripts/stress.sh uses run_check); results
# go to build/check-results.tsv like the rest of make check.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. scripts/lib-check.sh
export HAK_RESULTS=${HAK_RESULTS:-build/check-results.tsv}
export THREADS=4 CHUNKS=1024

DURATION=2 run_driver stress-run-tsan scripts/stress.sh run tsan || true
DURATION=1 run_driver stress-run-asan scripts/stress.sh run asan || true
DURATION=1 run_driver stress-run-release scripts/stress.sh run release prefixed preload || true
run_check release stress/watchdog-test scripts/stress.sh watchdog-test release || true
RUN_TIMEOUT=900 run_check tsan stress/planted env PLANT_RELEASE=0 DURATION=3 PLANT_DIR="$PWD/build/planted" \
  scripts/stress-planted.sh || true
# a run's time limit leaves its watchdog time to fire and report: the
# stress-matrix cells' --deadline=120 was past their 91 s limit, and a hung
# cell was a HANG without the watchdog's stacks, last operations and stats
# (the log's header names the limit; the program need not run: --threads=0)
run_check release stress/deadline-within-limit bash -c '
  d=$(mktemp -d); trap '\''rm -rf "$d"'\'' EXIT
  NO_BUILD=1 STRESS_PROGS=larson STRESS_ARGS="--deadline=200 --threads=0" DURATION=0.3 \
    HAK_RESULTS="$d/r.tsv" HAK_LOGDIR="$d/logs" scripts/stress.sh run release >"$d/out" 2>&1
  lim=$(sed -n "s/^# config: .* timeout: \([0-9]*\)s$/\1/p" "$d"/logs/release/stress_larson*.log)
  echo "limit of a run with --deadline=200: ${lim:-none}s"
  [ "${lim:-0}" -ge 250 ] || { echo "the watchdog cannot report before the limit"; exit 1; }' || true
# scripts/scaling-run.sh (the many-core run) runs `stress.sh run tsan` with
# NO_BUILD=1 on programs built here as its header says: every one of them
# must be in that list (realloc_storm joined the tsan runs, not the header:
# a scaling run built as told failed realloc_storm at 8 and 16 threads)
run_check release stress/scaling-run-builds bash -c '
  hdr=$(sed -n "s|^#   make CONFIG=tsan build/tsan/stress/{\([^}]*\)}.*|\1|p" scripts/scaling-run.sh | tr , " ")
  want=$(scripts/stress.sh progs tsan) || { echo "stress.sh progs tsan failed"; exit 1; }
  echo "stress.sh run tsan: $want; scaling-run.sh builds: ${hdr:-nothing}"
  for p in $want; do
    case " $hdr " in *" $p "*) ;; *) echo "scaling-run.sh header does not build build/tsan/stress/$p"; exit 1 ;; esac
  done' || true
run_check release stress/build-failure-recorded bash -c '
  d=$(mktemp -d); trap '\''rm -rf "$d"'\'' EXIT
  printf "#!/bin/sh\necho planted build failure >&2\nexit 2\n" >"$d/make"; chmod +x "$d/make"
  PATH="$d:$PATH" HAK_RESULTS="$d/r.tsv" HAK_LOGDIR="$d/logs" DURATION=1 scripts/stress.sh run release >"$d/log" 2>&1
  rc=$?
  cat "$d/log"; cat "$d/r.tsv"
  [ $rc -eq 1 ] || { echo "exit $rc, expected 1"; exit 1; }
  grep -q "^stress/build	release	FAIL" "$d/r.tsv" || { echo "no FAIL row for the build"; exit 1; }' || true
