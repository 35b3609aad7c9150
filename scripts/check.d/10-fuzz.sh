#!/usr/bin/env bash
# scripts/check.d/10-fuzz.sh: the fuzzing checks of make check (run by
# scripts/check.sh with CHECK_APPEND=1; also runnable alone).
#   fuzz/build              every driver, libFuzzer and standalone builds
#   fuzz/replay-<mode>      corpus + regressions replayed: asan (ASan+UBSan),
#                           libfuzzer-release (the release allocator's libFuzzer
#                           build, UBSan), release, debug, tsan (fuzz_mt),
#                           valgrind (bounded), determinism (fresh state per
#                           input, crash repro)
#   fuzz/replay-no-inputs-fails  a driver with no corpus fails the replay
#   fuzz/cflite-build       .clusterfuzzlite/build.sh with OSS-Fuzz's variables,
#                           every fuzzer on its <fuzzer>_seed_corpus.zip
#   fuzz/planted            scripts/fuzz-planted.sh: each planted bug found
#   fuzz/<driver>           each libFuzzer driver for FUZZ_CHECK_TIME seconds
#                           (default 20) on a copy of its corpus; no merge
#                           into the repository; any finding fails
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. scripts/lib-check.sh
results_ensure
FUZZERS="fuzz_ops fuzz_mt fuzz_sizes"
T=${FUZZ_CHECK_TIME:-20}
if ! command -v clang >/dev/null; then
  run_check fuzz build sh -c 'echo "clang missing"; exit 77'
  exit 0
fi
RUN_TIMEOUT=1200 run_check fuzz build make -j"${JOBS:-2}" fuzz-bins || exit 0
for m in asan libfuzzer-release release debug tsan valgrind determinism; do
  RUN_TIMEOUT=600 run_check fuzz "replay-$m" fuzz/replay.sh -m "$m" $FUZZERS
done
# a driver whose corpus is gone must fail the replay, not pass it
run_check fuzz replay-no-inputs-fails bash -c '
  out=$(fuzz/replay.sh -m release fuzz_no_such_driver 2>&1); rc=$?
  echo "$out"
  [ $rc -eq 1 ] && printf "%s" "$out" | grep -q "FAIL: fuzz_no_such_driver: no inputs"'
RUN_TIMEOUT=600 run_check fuzz cflite-build fuzz/cflite-check.sh
# every planted bug of scripts/fuzz-planted.sh found (it had rotted: two of
# its patterns no longer matched the code, and nothing ran it)
RUN_TIMEOUT=900 run_check fuzz planted scripts/fuzz-planted.sh
for d in $FUZZERS; do
  RUN_TIMEOUT=$((T + 120)) run_check fuzz "$d" env FUZZ_TIME="$T" FUZZ_MERGE=0 JOBS=1 fuzz/run.sh "$d"
done
exit 0
