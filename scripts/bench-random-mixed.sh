#!/usr/bin/env bash
# scripts/bench-random-mixed.sh (make bench-random-mixed): bench_random_mixed
# against hakmem and other allocators, interleaved, median of REPS runs.
#
#   hakmem          build/release/stress/bench_random_mixed (hak_* API, libhakmem.a)
#   glibc           build/release/stress/bench_random_mixed.libc (malloc/free)
#   hakmem-preload  the .libc binary with LD_PRELOAD=build/release/libhakmem.so
#   mimalloc, jemalloc, tcmalloc
#                   the .libc binary with LD_PRELOAD of the Debian library,
#                   "skipped: not installed" when absent
#
# Environment: CYCLES (default 20000000), MIN (16), MAX (1040), SLOTS (8192),
# SEED (42), REPS (3), ALLOCATORS (space-separated subset of the names above),
# BENCH_OUT (build/bench: where random_mixed.tsv goes).
# Exits non-zero if a run fails, reports the wrong allocator or measured no
# work (no_result of scripts/lib-bench.sh: ops/s 0, negative, NaN or none;
# until 2026-11-28 a run of ops/s=0 was a result, and the ratio to a glibc
# median of 0 was awk's division by zero).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

CYCLES=${CYCLES:-20000000}
MIN=${MIN:-16}
MAX=${MAX:-1040}
SLOTS=${SLOTS:-8192}
SEED=${SEED:-42}
REPS=${REPS:-3}
ALLOCATORS=${ALLOCATORS:-hakmem glibc hakmem-preload mimalloc jemalloc tcmalloc}
JOBS=${JOBS:-2}
B=build/release/stress
OUTDIR=${BENCH_OUT:-build/bench}
mkdir -p "$OUTDIR"
RAW=$OUTDIR/random_mixed.tsv

echo "==> bench-random-mixed: building release library and benchmark"
if ! make -s -j"$JOBS" CONFIG=release lib "$B/bench_random_mixed" "$B/bench_random_mixed.libc"; then
  echo "bench-random-mixed: build failed" >&2
  exit 1
fi

. scripts/lib-bench.sh # peer_lib, no_result

declare -A CMD EXPECT
run_list=()
for a in $ALLOCATORS; do
  case $a in
    hakmem) CMD[$a]="$B/bench_random_mixed"; EXPECT[$a]=hakmem ;;
    glibc) CMD[$a]="$B/bench_random_mixed.libc"; EXPECT[$a]=libc ;;
    hakmem-preload)
      CMD[$a]="env LD_PRELOAD=$ROOT/build/release/libhakmem.so $B/bench_random_mixed.libc"
      EXPECT[$a]="hakmem(preload)" ;;
    mimalloc | jemalloc | tcmalloc)
      lib=$(peer_lib "$a")
      if [ -z "$lib" ]; then
        echo "    $a: skipped: not installed"
        continue
      fi
      CMD[$a]="env LD_PRELOAD=$lib $B/bench_random_mixed.libc"
      EXPECT[$a]="$a(preload)" ;;
    *) echo "bench-random-mixed: unknown allocator '$a'" >&2; exit 1 ;;
  esac
  run_list+=("$a")
done

echo "==> bench-random-mixed: cycles=$CYCLES slots=$SLOTS seed=$SEED size=[$MIN,$MAX] reps=$REPS"
printf 'allocator\trep\tops_per_s\tseconds\n' >"$RAW"
declare -A OPS
bad=0
for ((r = 1; r <= REPS; r++)); do
  for a in "${run_list[@]}"; do
    # shellcheck disable=SC2086  # CMD holds a command line
    out=$(timeout -k 5 600 ${CMD[$a]} "$CYCLES" "$SLOTS" "$SEED" "$MIN" "$MAX" 2>&1)
    rc=$?
    line=$(printf '%s\n' "$out" | grep '^bench_random_mixed: allocator=' | tail -n 1)
    name=$(printf '%s' "$line" | sed -n 's/.*allocator=\([^ ]*\).*/\1/p')
    ops=$(printf '%s' "$line" | sed -n 's/.*ops\/s=\([^ ]*\).*/\1/p')
    secs=$(printf '%s' "$line" | sed -n 's/.*time=\([0-9.]*\) s.*/\1/p')
    if [ $rc -ne 0 ] || no_result "$ops" || [ "$name" != "${EXPECT[$a]}" ]; then
      echo "    $a (rep $r): FAILED (exit $rc, allocator=${name:-?}, expected ${EXPECT[$a]}, ops/s=${ops:-?})"
      printf '%s\n' "$out" | tail -n 20 | sed 's/^/      /'
      bad=1
      continue
    fi
    printf '    %-15s rep %d  %14.0f ops/s  %8.3f s\n' "$a" "$r" "$ops" "$secs"
    printf '%s\t%d\t%s\t%s\n' "$a" "$r" "$ops" "$secs" >>"$RAW"
    OPS[$a]="${OPS[$a]:-} $ops"
  done
done

# (an even count's mean with printf: print would round it to 6 digits, OFMT)
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else if (NR) printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
base=$(printf '%s' "${OPS[glibc]:-}" | median)

echo
printf '%-16s %16s %10s %6s\n' allocator "median ops/s" "vs glibc" runs
printf '%-16s %16s %10s %6s\n' ---------------- ---------------- ---------- ------
for a in "${run_list[@]}"; do
  vals=${OPS[$a]:-}
  n=$(printf '%s' "$vals" | wc -w)
  if [ "$n" -eq 0 ]; then
    printf '%-16s %16s %10s %6s\n' "$a" failed - 0
    continue
  fi
  m=$(printf '%s' "$vals" | median)
  if [ -n "$base" ]; then ratio=$(awk -v m="$m" -v b="$base" 'BEGIN { printf "%.2fx", m / b }'); else ratio=-; fi
  printf '%-16s %16.0f %10s %6d\n' "$a" "$m" "$ratio" "$n"
done
echo "(raw results: $RAW)"
exit $bad
