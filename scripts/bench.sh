#!/usr/bin/env bash
# scripts/bench.sh (make bench): hakmem against glibc, mimalloc, jemalloc and
# tcmalloc on a suite of workloads, interleaved, with a report and a chart.
#
# Every allocator runs the same plain-malloc binaries (.libc builds):
#   hakmem    LD_PRELOAD=build/release/libhakmem.so
#   glibc     no preload
#   mimalloc, jemalloc, tcmalloc
#             LD_PRELOAD of the Debian library (scripts/install-deps.sh);
#             "skipped: not installed" when absent
# Each run goes through build/release/bench/benchrun (fork + wait4: wall
# time, peak RSS; the preload is set for the measured program only). A
# program that prints its allocator (allocator=...) must name the expected
# one, or the run counts as failed.
#
# Order: for each repetition, for each workload, every allocator once (the
# allocator order rotates between repetitions), so slow drifts of a shared
# machine hit every allocator alike. Medians and min..max per cell.
#
# Workloads (names are what WORKLOADS globs match):
#   random_mixed/<size>     stress/bench_random_mixed at one fixed size, 16..8192 B
#   random_mixed/16-1040    the same over 16..1040 B (uniform)
#   larson/t<T>-c<C>        stress/larson, T in BENCH_THREADS x C = 256,1024 chunks, 16..1024 B
#   xthread/queue-t<T>      stress/remote_free --mode=queue: T producers -> T consumers,
#                           T in BENCH_THREADS
#   xthread/one2many-t<T>   stress/remote_free --mode=one2many: 1 producer -> T-1 consumers,
#                           T = 4 and every T in BENCH_THREADS above 4
#   realloc/grow            bench/bench_realloc: buffers grown by 1..64 B appends
#   large/64K-8M            bench/bench_large: log-uniform 64 KiB..8 MiB, pages touched
#   python/records          bench/py_alloc.py under PYTHONMALLOC=malloc
#
# Environment:
#   QUICK=1        short runs, REPS 3 (149 s on 2 cores shared with other jobs)
#   REPS           repetitions (default 3 with QUICK, else 5)
#   ALLOCATORS     subset of: hakmem glibc mimalloc jemalloc tcmalloc (hakmem
#                  and at least one peer are needed for ratios)
#   WORKLOADS      space-separated globs over workload names (default: all)
#   SCALE          multiplies every run length (cycles, seconds), e.g. 0.1
#   BENCH_THREADS  thread counts of the larson and xthread workloads (default
#                  "1 2 4"; make bench-scaling uses "1 2 4 8 16")
#   BENCH_NOBUILD  1: do not run make; the programs and the library must
#                  already be built (a copy of build/release on another machine)
#   HAK_PEER_DIR   a folder searched first for the peer libraries
#   BENCH_OUT      output directory (default build/bench)
#   BENCH_TIMEOUT  per-run limit in seconds (default 300)
#   HAKMEM_LIB     libhakmem.so to preload instead of build/release/libhakmem.so
#                  (then the library is not rebuilt), e.g. a build of another
#                  revision
# Outputs (BENCH_OUT): samples.tsv (every run), results.json (samples,
# medians, ratios, metadata), results.md (the tables), results.svg and
# results.png (ops/s chart) and results-ratio.png (hakmem/peer chart) when
# gnuplot is installed, bench-<UTC time>.json (a copy of results.json).
# Exit status: 0, or 1 if a hakmem run failed or the build failed (runs of
# peers that fail are reported and left out).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

QUICK=${QUICK:-}
[ "$QUICK" = 0 ] && QUICK=
if [ -n "$QUICK" ]; then REPS=${REPS:-3}; else REPS=${REPS:-5}; fi
ALLOCATORS=${ALLOCATORS:-hakmem glibc mimalloc jemalloc tcmalloc}
WORKLOADS=${WORKLOADS:-}
SCALE=${SCALE:-1}
BENCH_THREADS=${BENCH_THREADS:-1 2 4}
OUT=${BENCH_OUT:-build/bench}
TIMEOUT=${BENCH_TIMEOUT:-300}
JOBS=${JOBS:-2}
S=build/release/stress
BB=build/release/bench
PY=$(command -v /usr/bin/python3 || command -v python3)
mkdir -p "$OUT"

HAKMEM_LIB=${HAKMEM_LIB:-}
LIBT=lib
if [ -n "$HAKMEM_LIB" ]; then
  LIBT=
  HAKMEM_LIB=$(realpath "$HAKMEM_LIB") || exit 1
fi
if [ "${BENCH_NOBUILD:-0}" = 1 ]; then
  echo "==> bench: BENCH_NOBUILD=1: using the programs already in build/release"
  for f in "$S/bench_random_mixed.libc" "$S/larson.libc" "$S/remote_free.libc" "$BB/benchrun" \
    "${HAKMEM_LIB:-build/release/libhakmem.so}"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "bench: BENCH_NOBUILD=1 but $f is missing" >&2; exit 1; }
  done
else
  echo "==> bench: building ${LIBT:+release library and }benchmark programs"
  if ! make -s -j"$JOBS" CONFIG=release $LIBT "$S/bench_random_mixed.libc" "$S/larson.libc" \
    "$S/remote_free.libc" bench-bins; then
    echo "bench: build failed" >&2
    exit 1
  fi
fi

# sc <number>: the number times SCALE (integers stay integers, minimum 1).
sc() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = n * s; if (n == int(n)) { v = int(v); if (v < 1) v = 1 } else if (v < 0.05) v = 0.05; print v }'; }

# Run lengths: QUICK, then full.
if [ -n "$QUICK" ]; then
  RM_CYCLES=2000000 LARSON_S=0.25 XT_S=0.25 RE_CYCLES=1000000 LG_CYCLES=100 PY_ROUNDS=2 PY_ITEMS=10000
else
  RM_CYCLES=10000000 LARSON_S=1.5 XT_S=1.5 RE_CYCLES=10000000 LG_CYCLES=500 PY_ROUNDS=8 PY_ITEMS=20000
fi
RM_CYCLES=$(sc $RM_CYCLES) LARSON_S=$(sc $LARSON_S) XT_S=$(sc $XT_S)
RE_CYCLES=$(sc $RE_CYCLES) LG_CYCLES=$(sc $LG_CYCLES) PY_ROUNDS=$(sc $PY_ROUNDS)

# Workload table: name <TAB> command line (run from the repository root).
declare -a WL_NAME WL_CMD
add() { WL_NAME+=("$1"); WL_CMD+=("$2"); }
for sz in 16 32 64 128 256 512 1024 2048 4096 8192; do
  add "random_mixed/$sz" "$S/bench_random_mixed.libc $RM_CYCLES 8192 42 $sz $sz"
done
add "random_mixed/16-1040" "$S/bench_random_mixed.libc $RM_CYCLES 8192 42 16 1040"
for t in $BENCH_THREADS; do
  [[ $t =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_THREADS='$BENCH_THREADS': not a list of thread counts" >&2; exit 1; }
  for c in 256 1024; do
    add "larson/t$t-c$c" "$S/larson.libc $LARSON_S 16 1024 $c 10000 42 $t"
  done
done
for t in $BENCH_THREADS; do
  add "xthread/queue-t$t" "$S/remote_free.libc --mode=queue --threads=$t --chunks=1024 --duration=$XT_S"
done
o2m=4
for t in $BENCH_THREADS; do ((t > 4)) && o2m="$o2m $t"; done
for t in $o2m; do
  add "xthread/one2many-t$t" "$S/remote_free.libc --mode=one2many --threads=$t --chunks=1024 --duration=$XT_S"
done
add "realloc/grow" "$BB/bench_realloc.libc $RE_CYCLES 1024 42 65536"
add "large/64K-8M" "$BB/bench_large.libc $LG_CYCLES 32 42 65536 8388608"
add "python/records" "env PYTHONMALLOC=malloc $PY -S bench/py_alloc.py $PY_ROUNDS $PY_ITEMS"

sel=()
for i in "${!WL_NAME[@]}"; do
  if [ -z "$WORKLOADS" ]; then sel+=("$i"); continue; fi
  for pat in $WORKLOADS; do
    # shellcheck disable=SC2053  # glob match intended
    if [[ ${WL_NAME[$i]} == $pat ]]; then sel+=("$i"); break; fi
  done
done
if [ ${#sel[@]} -eq 0 ]; then
  echo "bench: WORKLOADS='$WORKLOADS' matches no workload; names:" >&2
  printf '  %s\n' "${WL_NAME[@]}" >&2
  exit 1
fi

. scripts/lib-bench.sh # peer_lib, no_result

declare -A PRELOAD EXPECT
allocs=()
META_ALLOC=()
for a in $ALLOCATORS; do
  case $a in
    hakmem) PRELOAD[$a]=${HAKMEM_LIB:-$ROOT/build/release/libhakmem.so} EXPECT[$a]="hakmem(preload)" ;;
    glibc) PRELOAD[$a]="" EXPECT[$a]=libc ;;
    mimalloc | jemalloc | tcmalloc)
      lib=$(peer_lib "$a")
      if [ -z "$lib" ]; then
        echo "    $a: skipped: not installed"
        META_ALLOC+=("$a	skipped: not installed")
        continue
      fi
      PRELOAD[$a]=$lib EXPECT[$a]="$a(preload)" ;;
    *) echo "bench: unknown allocator '$a' (hakmem glibc mimalloc jemalloc tcmalloc)" >&2; exit 1 ;;
  esac
  allocs+=("$a")
  META_ALLOC+=("$a	${PRELOAD[$a]:-(none: the C library)}")
done
if [ ${#allocs[@]} -eq 0 ]; then
  echo "bench: no allocator to run" >&2
  exit 1
fi

SAMPLES=$OUT/samples.tsv
META=$OUT/meta.tsv
{
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  printf 'host\t%s\n' "$(uname -n)"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  printf 'cores\t%s\n' "$(nproc)"
  printf 'loadavg_start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  # what a page costs here (bench/pageprobe.c): the ratios of the workloads
  # that fault or move many pages depend on it, and bench-check compares
  # them only with a baseline from a machine of like costs
  probe=
  if [ -x "$BB/pageprobe" ]; then probe=$("$BB/pageprobe" 2>&1) || probe=; fi
  if [[ $probe =~ touch_us=([0-9.]+)\ moved_us=([0-9.]+) ]]; then
    printf 'page_touch_us\t%s\npage_moved_us\t%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
  else
    echo "bench: page costs not measured (${probe:-$BB/pageprobe missing})" >&2
  fi
  g=$(git rev-parse --short HEAD 2>/dev/null) || g=unknown
  # the measured code: the library and the benchmark programs
  [ "$g" = unknown ] || git diff --quiet HEAD -- alloc stress bench 2>/dev/null ||
    g="$g+dirty($(git diff --name-only HEAD -- alloc stress bench 2>/dev/null | paste -sd, -))"
  printf 'git\t%s\n' "$g"
  printf 'hakmem_lib\t%s\n' "${HAKMEM_LIB:-build/release/libhakmem.so}"
  printf 'hakmem_thp\t%s\n' "${HAKMEM_THP-}" # HAKMEM_THP=1: huge pages (README, Using hakmem)
  printf 'quick\t%s\n' "${QUICK:-0}"
  printf 'reps\t%s\n' "$REPS"
  printf 'scale\t%s\n' "$SCALE"
  for m in "${META_ALLOC[@]}"; do printf 'allocator\t%s\n' "$m"; done
  for i in "${sel[@]}"; do printf 'workload\t%s\t%s\n' "${WL_NAME[$i]}" "${WL_CMD[$i]}"; done
} >"$META"
printf 'workload\tallocator\trep\tops_per_s\twall_s\tuser_s\tsys_s\tmaxrss_kb\texit\treported\n' >"$SAMPLES"

n_runs=$((REPS * ${#sel[@]} * ${#allocs[@]}))
echo "==> bench: ${#sel[@]} workload(s) x ${#allocs[@]} allocator(s) (${allocs[*]}) x $REPS rep(s) = $n_runs runs${QUICK:+ (QUICK)}"
T0=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hak_bad=0
for ((r = 1; r <= REPS; r++)); do
  for i in "${sel[@]}"; do
    w=${WL_NAME[$i]}
    line="    rep $r  $(printf '%-22s' "$w")"
    na=${#allocs[@]}
    for ((j = 0; j < na; j++)); do
      a=${allocs[$(((j + r - 1) % na))]}
      : >"$tmp/ru"
      # (no command substitutions or pipelines per run: forks are slow on a loaded machine)
      # shellcheck disable=SC2086  # WL_CMD holds a command line
      "$BB/benchrun" -o "$tmp/ru" -t "$TIMEOUT" -p "${PRELOAD[$a]}" -- ${WL_CMD[$i]} >"$tmp/out" 2>"$tmp/err"
      rc=$?
      out='' ru=''
      read -r -d '' out <"$tmp/out"
      read -r ru <"$tmp/ru"
      ops='' rep_alloc='' wall='' user='' sys='' rss=''
      # the figure as printed, sign and all: no_result (scripts/lib-bench.sh) judges it
      [[ $out =~ (ops/s|throughput)=([^[:space:]]*) ]] && ops=${BASH_REMATCH[2]}
      [[ $out =~ allocator=([^ ]+) ]] && rep_alloc=${BASH_REMATCH[1]}
      [[ $ru =~ wall_s=([0-9.]+).*user_s=([0-9.]+).*sys_s=([0-9.]+).*maxrss_kb=([0-9]+) ]] &&
        wall=${BASH_REMATCH[1]} user=${BASH_REMATCH[2]} sys=${BASH_REMATCH[3]} rss=${BASH_REMATCH[4]}
      status=$rc
      # (no throughput: no ratio can be made of it; until 2026-11-28 ops/s=0
      # was a result, and bench.sh exited 0)
      if [ $rc -eq 0 ] && no_result "$ops"; then status=noresult; fi
      if [ $rc -eq 0 ] && [ -n "$rep_alloc" ] && [ "$rep_alloc" != "${EXPECT[$a]}" ]; then
        status="wrong-allocator"
      fi
      if [ "$status" != 0 ]; then
        echo
        echo "    $w $a (rep $r): FAILED ($status; reported allocator ${rep_alloc:-?}, expected ${EXPECT[$a]})"
        { printf '%s\n' "$out"; cat "$tmp/err"; } | tail -n 15 | sed 's/^/      /'
        [ "$a" = hakmem ] && hak_bad=1
        ops=
      fi
      printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$a" "$r" "$ops" "$wall" \
        "$user" "$sys" "$rss" "$status" "${rep_alloc:--}" >>"$SAMPLES"
      x=${ops%%.*}
      x=${x:-0}
      if [ -z "$ops" ]; then x=FAILED
      elif ((x >= 1000000)); then x="$((x / 1000000)).$((x / 100000 % 10))M"
      elif ((x >= 1000)); then x="$((x / 1000)).$((x / 100 % 10))K"; fi
      line="$line  $a=$x"
    done
    echo "$line"
  done
done
T1=$(date +%s)
printf 'seconds\t%s\n' "$((T1 - T0))" >>"$META"
printf 'loadavg_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"
echo "==> bench: $n_runs runs in $((T1 - T0)) s"

"$PY" scripts/bench-report.py --meta "$META" --samples "$SAMPLES" --out "$OUT" || exit 1
exit $hak_bad
