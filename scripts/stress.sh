#!/usr/bin/env bash
# scripts/stress.sh: the logic of the stress make targets (stress/stress.mk).
#
#   scripts/stress.sh run <config> [prefixed|preload|glibc ...]
#       build CONFIG=<config> and run the stress programs with THREADS,
#       CHUNKS, DURATION. tsan runs larson, remote_free, thread_churn and
#       realloc_storm; asan all but fork_stress; the other configurations
#       all six programs. valgrind runs them under memcheck with reduced
#       sizes. The variants (default: prefixed):
#       prefixed = linked against libhakmem.a; preload = the .libc build with
#       LD_PRELOAD=build/<config>/libhakmem.so; glibc = the .libc build alone.
#   scripts/stress.sh matrix        threads x chunks x size ranges, release and tsan
#   scripts/stress.sh larson-scaling  hakmem vs glibc Larson throughput at 1, 2, 4 threads
#   scripts/stress.sh watchdog-test   the watchdog self-test (exit 3 and stacks printed)
#   scripts/stress.sh progs <config>  the programs `run <config>` runs (one line)
#   scripts/stress.sh args <prog> <threads> <chunks> <seconds>  the arguments
#       `run` gives a program (one line; make cross-check runs them under qemu)
#
# Environment: THREADS (4) CHUNKS (1024) DURATION (seconds, 3) SEED (42)
#   STRESS_PROGS (override the program list) JOBS (2) ROUNDS (larson, 10000)
#   STRESS_ARGS (more arguments for every program of `run`, e.g. --min=64 --max=65)
#   NO_BUILD=1 (run the programs already in build/<config>; a missing one fails)
#   TRIM_MS (2: remote_free and thread_churn call hak_trim this often, realloc_storm
#   every 1 ms; 0: never)
#   CLOCK_MS (1: remote_free, thread_churn and realloc_storm move hakmem's timer
#   clock 250 ms this often, prefixed builds only; 0: never)
#   DURATION_CELL (matrix: seconds per cell, 0.3) MATRIX_CONFIGS (release tsan)
#   HAK_RESULTS (default build/stress/results.tsv) HAK_LOGDIR (build/logs)
# Each run prints `PASS|FAIL|HANG <config> <check> <s>s` (scripts/lib-check.sh)
# and, for a failure, what caught it (see classify below). Exit status:
# non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export HAK_RESULTS=${HAK_RESULTS:-build/stress/results.tsv}
# shellcheck source=lib-check.sh
. scripts/lib-check.sh

THREADS=${THREADS:-4}
CHUNKS=${CHUNKS:-1024}
DURATION=${DURATION:-3}
SEED=${SEED:-42}
JOBS=${JOBS:-2}
FAILED=0

SYMBOLIZER=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
NOASLR=()
if setarch "$(uname -m)" -R true 2>/dev/null; then NOASLR=(setarch "$(uname -m)" -R); fi

# env_for <config>: sanitizer options, one VAR=value a line.
env_for() {
  case $1 in
    tsan)
      local opts
      opts=$(grep -v '^#' "$ROOT/tsan/options" 2>/dev/null | tr '\n' ' ')
      echo "TSAN_OPTIONS=${opts:-halt_on_error=1 exitcode=66} suppressions=$ROOT/tsan/tsan.supp" ;;
    asan) echo "ASAN_OPTIONS=abort_on_error=0:detect_leaks=1:halt_on_error=1" ;;
    ubsan) echo "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1" ;;
  esac
  case $1 in
    asan | tsan | ubsan)
      [ -n "$SYMBOLIZER" ] && echo "ASAN_SYMBOLIZER_PATH=$SYMBOLIZER" && echo "LLVM_SYMBOLIZER_PATH=$SYMBOLIZER" ;;
  esac
}

# classify <rc> <log>: which check caught a failure.
classify() {
  local rc=$1 log=$2
  if grep -q 'WARNING: ThreadSanitizer\|ERROR: ThreadSanitizer' "$log"; then echo "TSan report"
  elif grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer' "$log"; then echo "ASan report"
  elif grep -q 'runtime error:' "$log"; then echo "UBSan report"
  elif grep -q 'HEAP CHECK' "$log" || [ "$rc" = 4 ]; then echo "heap check"
  elif grep -q 'CORRUPTION' "$log" || [ "$rc" = 2 ]; then echo "content check"
  elif grep -q 'WATCHDOG' "$log" || [ "$rc" = 3 ]; then echo "watchdog (hang)"
  elif grep -qi 'hakmem.*\(fatal\|corrupt\)' "$log"; then echo "allocator's own check"
  elif [ "$rc" = 99 ]; then echo "memcheck error"
  elif [ "$rc" -gt 128 ] 2>/dev/null; then echo "crash (SIG$(kill -l $((rc - 128)) 2>/dev/null))"
  else echo "exit $rc"; fi
}

# prog_args <program> <threads> <chunks> <duration>: its command line.
# remote_free, thread_churn and realloc_storm also run a thread that calls
# hak_trim every TRIM_MS milliseconds (default 2, realloc_storm 1; 0: none):
# it purges the free slices of heaps whose owners are freeing remotely,
# exiting and being adopted, and gives back large blocks' kept tails; and
# one that moves hakmem's timer clock 250 ms every CLOCK_MS milliseconds
# (default 1; 0: none; the prefixed builds only), so that the workers' own
# slow paths purge and age the segment and large caches all the time.
prog_args() {
  local p=$1 t=$2 c=$3 d=$4
  case $p in
    larson) echo "$d 16 1024 $c ${ROUNDS:-10000} $SEED $t" ;;
    remote_free | thread_churn)
      echo "--threads=$t --chunks=$c --duration=$d --seed=$SEED --trim=${TRIM_MS:-2} --clock=${CLOCK_MS:-1}" ;;
    realloc_storm) # every 1 ms: hak_trim gives back the tails shrunk large blocks
      # keep while their reallocs move them (large-move-stale-map: at 2 ms
      # 3 of 5 runs, at 1 ms 6 of 6)
      echo "--threads=$t --chunks=$c --duration=$d --seed=$SEED --trim=${TRIM_MS:-1} --clock=${CLOCK_MS:-1}" ;;
    *) echo "--threads=$t --chunks=$c --duration=$d --seed=$SEED" ;;
  esac
}

# one <config> <variant> <program> <threads> <chunks> <duration> [extra args]
one() {
  local cfg=$1 var=$2 p=$3 t=$4 c=$5 d=$6
  shift 6
  local bin=build/$cfg/stress/$p pre=() wrap=() envs=()
  mapfile -t envs < <(env_for "$cfg")
  case $var in
    preload) bin=$bin.libc pre=(LD_PRELOAD="$ROOT/build/$cfg/libhakmem.so") ;;
    glibc) bin=$bin.libc ;;
  esac
  [ "$cfg" = tsan ] && wrap=("${NOASLR[@]}")
  [ "$cfg" = valgrind ] && wrap=(valgrind -q --error-exitcode=99 --leak-check=no --fair-sched=yes)
  local name="stress/$p($var)${CELL:+/$CELL}" log rc=0 a dl=0
  # the limit leaves the watchdog (its deadline: --deadline or 4 x duration
  # + 30 s) a minute for its report (alarm(20) bounds it) and gdb's: the
  # matrix's --deadline=120 was past the 91 s limit of its cells, whose hangs
  # were HANGs without the watchdog's stacks, last operations and stats
  for a in "$@"; do case $a in --deadline=*) dl=${a#--deadline=} ;; esac; done
  # shellcheck disable=SC2046
  RUN_TIMEOUT=$(awk -v d="$d" -v w="$dl" 'BEGIN { t = d * 6 + 90; if (w + 60 > t) t = w + 60; printf "%d", t }') \
    run_check "$cfg" "$name" env "${envs[@]}" "${pre[@]}" "${wrap[@]}" "$bin" $(prog_args "$p" "$t" "$c" "$d") "$@" || rc=1
  log=$(logfile "$cfg" "$name")
  if [ $rc != 0 ]; then
    local prc
    prc=$(sed -n 's/^# exit status: \([0-9]*\).*/\1/p' "$log" | tail -1)
    echo "   caught by: $(classify "${prc:-1}" "$log")  (log: $log)"
    FAILED=$((FAILED + 1))
  fi
  LAST_LOG=$log
  return $rc
}

build() {
  local cfg=$1 targets
  if [ "${NO_BUILD:-0}" = 1 ]; then # programs copied from another machine
    echo "==> stress: NO_BUILD=1: using the programs already in build/$cfg"
    return
  fi
  targets="lib"
  for p in $PROGS; do
    targets="$targets build/$cfg/stress/$p"
    case $VARIANTS in *preload* | *glibc*) targets="$targets build/$cfg/stress/$p.libc" ;; esac
  done
  echo "==> stress: make CONFIG=$cfg $targets"
  # through run_check, so that a failed build is a FAIL in the results (a
  # caller that goes on, as check.d/20-stress.sh does, would otherwise lose
  # every check of this configuration without a trace)
  # shellcheck disable=SC2086
  RUN_TIMEOUT=900 run_check "$cfg" stress/build make -s -j"$JOBS" CONFIG="$cfg" $targets || { driver_done; exit 1; } # the FAIL row says why
}

# default_progs <config>: the programs `run <config>` runs (STRESS_PROGS
# overrides them; `scripts/stress.sh progs <config>` prints them: whoever
# builds them elsewhere, as scripts/scaling-run.sh's header does, checks
# its list against it, check.d/20-stress.sh stress/scaling-run-builds)
default_progs() {
  case $1 in
    # realloc_storm: the only program whose large blocks mremap moves
    # (large-realloc-relink-unlocked passed every TSan test and the other three);
    # aligned_storm: the only one whose threads allocate blocks aligned to 4 MiB
    # or more beside other threads' large calls (huge-alloc-skips-large-lock
    # passed every TSan test and the other four)
    tsan) echo larson remote_free thread_churn realloc_storm aligned_storm ;;
    # Not fork_stress under ASan: clang-14's ASan runtime does not hold its own
    # allocator lock across fork(), so a child can block for ever inside ASan's
    # calloc (seen: a fork child's new thread stuck in
    # SizeClassAllocator64::GetFromAllocator while main waits in pthread_join).
    # The release, ubsan and valgrind runs and test_fork cover hakmem's fork path.
    asan) echo larson remote_free thread_churn realloc_storm aligned_storm ;;
    *) echo larson remote_free thread_churn fork_stress realloc_storm aligned_storm ;;
  esac
}

cmd_run() {
  local cfg=${1:?config} t=$THREADS c=$CHUNKS d=$DURATION
  shift
  VARIANTS=${*:-prefixed}
  PROGS=${STRESS_PROGS:-$(default_progs "$cfg")}
  if [ "$cfg" = valgrind ]; then # memcheck is ~50x slower: reduced sizes
    t=$((t > 2 ? 2 : t)) c=$((c / 4 > 16 ? c / 4 : 16)) d=$(awk -v d="$d" 'BEGIN { print (d > 1 ? 1 : d) }')
  fi
  build "$cfg"
  echo "==> stress: [$cfg] threads=$t chunks=$c duration=${d}s variants: $VARIANTS"
  for var in $VARIANTS; do
    for p in $PROGS; do
      # shellcheck disable=SC2086
      one "$cfg" "$var" "$p" "$t" "$c" "$d" ${STRESS_ARGS:-} || true
    done
  done
}

# throughput from a larson log
tput() { sed -n 's/.*throughput=\([0-9]*\) allocs\/s.*/\1/p' "$1" | tail -1; }

cmd_matrix() {
  local d=${DURATION_CELL:-0.3} cfgs=${MATRIX_CONFIGS:-release tsan}
  PROGS=larson VARIANTS=prefixed
  local out=build/stress/matrix.tsv
  mkdir -p build/stress
  printf 'config\tthreads\tchunks\tsizes\tresult\tallocs_per_s\n' >"$out"
  for cfg in $cfgs; do build "$cfg"; done
  for cfg in $cfgs; do
    for t in 1 2 4 8 16; do
      for c in 256 1024 4096; do
        for s in tiny mid large xl; do
          local lo hi cc=$c
          # xl crosses HAK_SMALL_MAX into mmap'd large blocks (and the large
          # cache) with a sixteenth of the chunks: 16 threads x 4096 chunks of
          # 128 KiB would be 8 GiB
          case $s in
          tiny) lo=16 hi=64 ;;
          mid) lo=64 hi=1024 ;;
          large) lo=1024 hi=16384 ;;
          xl) lo=32768 hi=262144 cc=$((c / 16)) ;;
          esac
          local res=PASS
          if ! CELL=t$t-c$c-$s one "$cfg" prefixed larson "$t" "$cc" "$d" --min=$lo --max=$hi \
            --deadline=120 --quiet >/dev/null; then res=FAIL; fi
          printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$t" "$c" "$s" "$res" "$(tput "$LAST_LOG")" >>"$out"
        done
      done
    done
  done
  echo "==> stress matrix (larson, ${d}s per cell; $out)"
  column -t -s $'\t' "$out"
}

cmd_larson_scaling() {
  local d=${DURATION:-3} reps=${REPS:-3}
  PROGS=larson VARIANTS="prefixed glibc"
  build release
  echo "==> larson scaling: ${d}s per run, chunks=$CHUNKS, 16..1024 bytes, median of $reps runs, hakmem and glibc interleaved"
  printf '%-8s %16s %16s %8s\n' threads hakmem glibc ratio
  for t in 1 2 4; do
    local h=() g=() i
    for ((i = 0; i < reps; i++)); do
      one release prefixed larson "$t" "$CHUNKS" "$d" --quiet >/dev/null && h+=("$(tput "$LAST_LOG")")
      one release glibc larson "$t" "$CHUNKS" "$d" --quiet >/dev/null && g+=("$(tput "$LAST_LOG")")
    done
    local hm gm
    hm=$(printf '%s\n' "${h[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] + 0 }')
    gm=$(printf '%s\n' "${g[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] + 0 }')
    printf '%-8s %16s %16s %8s\n' "$t" "$hm" "$gm" "$(awk -v a="$hm" -v b="$gm" 'BEGIN { if (b > 0) printf "%.2f", a / b }')"
  done
}

# The watchdog must fire on a hung thread: exit 3, a stack per thread, the
# last operations and (prefixed build) hak_stats.
cmd_watchdog_test() {
  local cfg=${1:-release} p
  PROGS="larson thread_churn" VARIANTS=prefixed
  build "$cfg"
  for p in $PROGS; do
    local log=build/logs/$cfg/watchdog-$p.raw rc=0 why=""
    mkdir -p "$(dirname "$log")"
    timeout -k 5 60 "build/$cfg/stress/$p" --threads=2 --chunks=64 --duration=1 --deadline=3 --hang \
      >"$log" 2>&1 </dev/null || rc=$?
    [ "$rc" = 3 ] || why="exit status $rc, expected 3"
    grep -q 'WATCHDOG: deadline' "$log" || why="$why; no WATCHDOG line"
    # every registered thread answers with its stack (thread_churn may have only the hung one left)
    local acks
    acks=$(sed -n 's/.*WATCHDOG: \([0-9]*\) of \([0-9]*\) thread(s) printed.*/\1 \2/p' "$log")
    set -- $acks
    { [ "${1:-0}" -ge 1 ] && [ "${1:-0}" = "${2:-x}" ] &&
      [ "$(grep -o -- '---- stack of thread' "$log" | wc -l)" -ge "${1:-1}" ]; } ||
      why="$why; not every thread printed its stack (${acks:-no count})"
    grep -q 'stress_maybe_hang\|sem_wait\|libc.so' "$log" || why="$why; no backtrace frames"
    grep -q 'last operations per thread' "$log" || why="$why; no last operations"
    grep -q 'hakmem stats' "$log" || why="$why; no hak_stats_print output"
    if [ -z "$why" ]; then
      echo "watchdog-test $p: OK (exit 3, $(grep -c -- '---- stack of thread' "$log") stacks printed)"
    else
      echo "watchdog-test $p: FAILED: $why (log: $log)"
      FAILED=$((FAILED + 1))
    fi
  done
}

case ${1:-} in
  run) shift; cmd_run "$@" ;;
  matrix) cmd_matrix ;;
  larson-scaling) cmd_larson_scaling ;;
  watchdog-test) shift; cmd_watchdog_test "$@" ;;
  progs) default_progs "${2:?config}"; exit 0 ;;
  args) prog_args "${2:?program}" "${3:?threads}" "${4:?chunks}" "${5:?seconds}"; exit 0 ;;
  *) sed -n '2,23p' "$0"; exit 1 ;;
esac
driver_done
if [ "$FAILED" -gt 0 ]; then
  echo "==> stress: $FAILED failure(s)"
  exit 1
fi
echo "==> stress: all passed"
