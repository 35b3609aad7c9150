#!/usr/bin/env bash
# scripts/check.sh (make check): build every configuration and run every test.
#
# For each configuration (release debug asan tsan ubsan valgrind trace):
#   build       make CONFIG=<cfg> tests (a failure is one failed check; the
#               tests that did get built still run, then the next config)
#   test_*      each C test program, under `timeout 300`; 0 pass, 77 skip,
#               124 (timeout) HANG, anything else FAIL
#   build-trace, trace/test_trace_flush_race  (tsan config) the trace
#               recorder built with TSan too (build/tsan-trace), and its test
#   memcheck/*  (valgrind config) test_api, test_mt_smoke, test_sizeclass,
#               test_large_cache
#               under valgrind memcheck with a small HAK_TEST_SCALE (0.25)
#   *.cpp tests (release, debug) with LD_PRELOAD of that config's libhakmem.so
# then scripts/test-drivers.sh (check/drivers: a driver that dies part way
# is a FAIL), scripts/test-preload.sh (real programs under LD_PRELOAD),
# scripts/test-install.sh (release/install: make install and pkg-config;
# release/install-ldd-late: the same under an ldd whose last line is late) and a
# smoke run of the stress programs. test-preload.sh and check.d's stress.sh
# runs are drivers (run_driver): one that dies before its end records
# <name>/completed FAIL.
#
# Output: one line per check, `PASS|FAIL|SKIP|HANG  <config>  <check>  <s>s`;
# full logs in build/logs/<config>/<check>.log; results in
# build/check-results.tsv; last line `N passed, M failed[, K skipped]`.
#
# Environment:
#   CHECK_CONFIGS   space-separated subset of configurations (default: all)
#   CHECK_APPEND=1  append to build/check-results.tsv instead of starting anew
#   CHECK_PRELOAD=0 skip scripts/test-preload.sh;  CHECK_STRESS=0 skip the
#                   stress-bins build and bench_random_mixed smoke run (the
#                   stress runs of scripts/check.d/20-stress.sh still run)
#   HAK_TEST_SCALE  iteration multiplier passed to the tests (tests/hak_test.h,
#                   default 1); the memcheck runs use MEMCHECK_SCALE (0.25)
#   HAK_TIMEOUT     per-test timeout in seconds (default 300)
#   JOBS            make parallelism (default 2)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
# shellcheck source=lib-check.sh
. scripts/lib-check.sh

ALL_CONFIGS="release debug asan tsan ubsan valgrind trace"
CONFIGS=${CHECK_CONFIGS:-$ALL_CONFIGS}
JOBS=${JOBS:-2}
MEMCHECK_TESTS="test_api test_mt_smoke test_sizeclass test_large_cache"
MEMCHECK_SCALE=${MEMCHECK_SCALE:-0.25}
START=$(now_s)

if [ "${CHECK_APPEND:-0}" = 1 ]; then results_ensure; else results_init; fi
mkdir -p "$HAK_LOGDIR"

SYMBOLIZER=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)

# env_for <config>: the environment (as env(1) arguments) its tests run with.
env_for() {
  local e=()
  case $1 in
    asan) e+=("ASAN_OPTIONS=abort_on_error=0:detect_leaks=1") ;;
    tsan)
      local opts="halt_on_error=1 second_deadlock_stack=1"
      [ -f "$ROOT/tsan/tsan.supp" ] && opts="$opts suppressions=$ROOT/tsan/tsan.supp"
      e+=("TSAN_OPTIONS=$opts") ;;
    ubsan) e+=("UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1") ;;
  esac
  case $1 in
    asan | tsan | ubsan)
      [ -n "$SYMBOLIZER" ] && e+=("ASAN_SYMBOLIZER_PATH=$SYMBOLIZER" "LLVM_SYMBOLIZER_PATH=$SYMBOLIZER") ;;
  esac
  [ ${#e[@]} -eq 0 ] || printf '%s\n' "${e[@]}"
}

# TSan (clang 14) can die with "unexpected memory mapping" on kernels with
# high mmap randomisation; running without ASLR avoids that.
NOASLR=()
if setarch "$(uname -m)" -R true 2>/dev/null; then NOASLR=(setarch "$(uname -m)" -R); fi

mapfile -t C_TESTS < <(for f in tests/test_*.c; do [ -e "$f" ] && basename "$f" .c; done)
mapfile -t CXX_TESTS < <(for f in tests/test_*.cpp; do [ -e "$f" ] && basename "$f" .cpp; done)
echo "==> check: configurations: $CONFIGS"
echo "==> check: ${#C_TESTS[@]} C test(s), ${#CXX_TESTS[@]} C++ test(s); per-test timeout ${HAK_TIMEOUT}s"

# up_to_date <config> <target>: make agrees the target is built and current.
up_to_date() { [ -e "$2" ] && make -s -q CONFIG="$1" "$2" >/dev/null 2>&1; }

for cfg in $CONFIGS; do
  echo "==> check: [$cfg] build (make -j$JOBS CONFIG=$cfg tests)"
  build_ok=1
  RUN_TIMEOUT=1200 run_check "$cfg" build make -j"$JOBS" -k CONFIG="$cfg" tests || build_ok=0

  mapfile -t ENV < <(env_for "$cfg")
  wrap=()
  [ "$cfg" = tsan ] && wrap=("${NOASLR[@]}")

  echo "==> check: [$cfg] tests"
  for t in "${C_TESTS[@]}"; do
    bin=build/$cfg/tests/$t
    if [ $build_ok = 0 ] && ! up_to_date "$cfg" "$bin"; then
      echo "   ($cfg/$t not built; counted in the build failure)"
      continue
    fi
    run_check "$cfg" "$t" env "${ENV[@]}" "${wrap[@]}" "$bin"
  done

  # The trace recorder is built in the trace configuration only, which has no
  # TSan: its cross-thread tests also run with both (build/tsan-trace), where
  # TSan sees the recorder's memory-ordering bugs (test_trace_flush_race).
  if [ "$cfg" = tsan ] && [ -e tests/test_trace_flush_race.c ]; then
    echo "==> check: [$cfg] the trace recorder under TSan (build/tsan-trace)"
    tt=build/tsan-trace/tests/test_trace_flush_race
    if RUN_TIMEOUT=600 run_check "$cfg" build-trace make -j"$JOBS" CONFIG=tsan B=build/tsan-trace \
      EXTRA_CFLAGS=-DHAK_TRACE=1 "$tt"; then
      run_check "$cfg" "trace/test_trace_flush_race" env "${ENV[@]}" "${wrap[@]}" "$tt"
    fi
  fi

  if [ "$cfg" = valgrind ]; then
    echo "==> check: [$cfg] memcheck runs (HAK_TEST_SCALE=$MEMCHECK_SCALE)"
    for t in $MEMCHECK_TESTS; do
      bin=build/$cfg/tests/$t
      if [ ! -e "tests/$t.c" ]; then
        record "$cfg" "memcheck/$t" SKIP 0.0
        echo "   (tests/$t.c does not exist)"
        continue
      fi
      if [ $build_ok = 0 ] && ! up_to_date "$cfg" "$bin"; then
        echo "   ($cfg/$t not built; counted in the build failure)"
        continue
      fi
      run_check "$cfg" "memcheck/$t" env HAK_TEST_SCALE="$MEMCHECK_SCALE" \
        valgrind -q --error-exitcode=99 --leak-check=no "$bin"
    done
  fi

  if [ "$cfg" = release ] || [ "$cfg" = debug ]; then
    so=$ROOT/build/$cfg/libhakmem.so
    for t in "${CXX_TESTS[@]}"; do
      bin=build/$cfg/tests/$t
      if [ ! -e "$so" ] || { [ $build_ok = 0 ] && ! up_to_date "$cfg" "$bin"; }; then
        echo "   ($cfg/$t or libhakmem.so not built; counted in the build failure)"
        continue
      fi
      run_check "$cfg" "$t(preload)" env LD_PRELOAD="$so" "$bin"
    done
  fi
done

# run_driver's bookkeeping (below and in check.d) against planted drivers
echo "==> check: [check] scripts/test-drivers.sh"
run_check check drivers scripts/test-drivers.sh || true

if [ "${CHECK_PRELOAD:-1}" = 1 ]; then
  echo "==> check: [release-preload] scripts/test-preload.sh"
  CHECK_APPEND=1 run_driver test-preload scripts/test-preload.sh || true # its results are in the TSV
fi

# the README's make install + pkg-config flow (layout, DESTDIR, a C and a
# C++ program linked by pkg-config's flags, the static archive)
echo "==> check: [release] scripts/test-install.sh"
run_check release install scripts/test-install.sh || true
# its verdicts do not hang on when ldd's output ends: an ldd whose last line
# comes 0.2 s after the others (on a busy machine, a grep -q of a pipe from
# ldd could stop before then, and ldd died by SIGPIPE)
run_check release install-ldd-late bash -c '
  s=$(mktemp -d) && trap "rm -rf $s" EXIT && real=$(command -v ldd) || exit 1
  printf "#!/bin/sh\n\"%s\" \"\$@\" || exit\nsleep 0.2\necho \"\tlate.so => /nowhere (0x0)\"\n" "$real" >"$s/ldd"
  chmod +x "$s/ldd" && PATH=$s:$PATH scripts/test-install.sh' || true

if [ "${CHECK_STRESS:-1}" = 1 ] && compgen -G 'stress/*.c' >/dev/null; then
  echo "==> check: [release] stress programs (make stress-bins)"
  if RUN_TIMEOUT=600 run_check release stress-build make -j"$JOBS" CONFIG=release stress-bins; then
    run_check release bench_random_mixed-smoke bash -c '
      out=$(build/release/stress/bench_random_mixed 300000 8192 42 16 1040) || exit $?
      echo "$out"
      case $out in *"allocator=hakmem "*"ops/s="*) exit 0 ;; *) echo "unexpected output" >&2; exit 1 ;; esac'
  fi
fi

# Later suites plug in here: each scripts/check.d/*.sh records its own
# checks in the results file (source scripts/lib-check.sh, use run_check).
for part in scripts/check.d/*.sh; do
  [ -e "$part" ] || continue
  echo "==> check: $part"
  # its results are in the TSV; a part ends with status 0 whatever its checks
  # did, so any other status means it died part way (an unset variable under
  # set -u, say) and the checks after that point were never recorded
  CHECK_APPEND=1 bash "$part"
  prc=$?
  if [ $prc -ne 0 ]; then
    echo "check: $part exited with status $prc before its end"
    record check "$(basename "$part" .sh)/completed" FAIL 0.0
  fi
done

END=$(now_s)
echo "==> check: finished in $(elapsed "$START" "$END")s; results in $HAK_RESULTS, logs in $HAK_LOGDIR/"
totals_line
[ "${HAK_FAILED:-1}" -eq 0 ]
