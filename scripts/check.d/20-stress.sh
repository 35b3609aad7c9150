#!/usr/bin/env bash
# make check, part 20: a short run of the multithreaded stress suite.
#   tsan:    larson, remote_free, thread_churn; 4 threads x 1024 chunks, 2 s each
#   asan:    all six stress programs, 4 threads x 1024 chunks, 1 s each
#   release: all six, prefixed API and LD_PRELOAD of libhakmem.so, 1 s each
#   watchdog self-test (a thread blocks forever: exit 3 and stacks printed)
# Each program run is one check (scripts/stress.sh uses run_check); results
# go to build/check-results.tsv like the rest of make check.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. scripts/lib-check.sh
export HAK_RESULTS=${HAK_RESULTS:-build/check-results.tsv}
export THREADS=4 CHUNKS=1024

DURATION=2 scripts/stress.sh run tsan || true
DURATION=1 scripts/stress.sh run asan || true
DURATION=1 scripts/stress.sh run release prefixed preload || true
run_check release stress/watchdog-test scripts/stress.sh watchdog-test release || true
