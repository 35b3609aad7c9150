#!/usr/bin/env bash
# scripts/bench-fastpath.sh (make bench-fastpath): instructions executed by
# one malloc(64) + free pair, counted by callgrind.
#
# bench/fastpath.c loops N times over p = malloc(64); free(p). Each variant
# runs under `valgrind --tool=callgrind` with N1 and N2 iterations; the
# difference of the two instruction totals divided by N2 - N1 is the cost of
# one iteration, without the constant startup, first-call and exit costs. The
# same with `fastpath N empty` (the loop alone) gives the loop's own
# instructions, which are subtracted. What remains includes the two calls
# (call and ret, argument set-up; -fno-plt: no PLT jumps).
# For hakmem the count is also split into malloc's own instructions, free's
# own instructions and the calls (from the same profiles, callgrind_annotate;
# see report).
#
# Variants: hakmem through the prefixed API (hak_malloc/hak_free, static
# libhakmem.a), hakmem through LD_PRELOAD of libhakmem.so (malloc/free),
# glibc's malloc/free, and mimalloc/jemalloc/tcmalloc when installed. Each is
# measured with one other block held (the steady state: the page never
# empties) and without (each free empties the page).
#
# Environment: N1 (default 100000), N2 (default 200000); VARIANTS: the
# variants to measure, words of "static preload glibc peers" (default all:
# hak_malloc/hak_free of libhakmem.a, malloc/free preloaded, glibc, the
# installed peers); PEERS=0 skips the mimalloc/jemalloc/tcmalloc variants;
# HAKMEM_LIBDIR: a directory with libhakmem.a and libhakmem.so to use
# instead of building build/release.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
N1=${N1:-100000}
N2=${N2:-200000}
JOBS=${JOBS:-2}
BB=build/release/bench
VARIANTS=${VARIANTS:-static preload glibc peers}
[ "${PEERS:-1}" = 0 ] && VARIANTS=${VARIANTS//peers/}
for v in $VARIANTS; do
  case $v in static | preload | glibc | peers) ;;
    *) echo "bench-fastpath: VARIANTS: unknown variant '$v' (static preload glibc peers)" >&2; exit 1 ;;
  esac
done
[ -n "${VARIANTS// /}" ] || { echo "bench-fastpath: no variant to measure" >&2; exit 1; }
want() { [[ " $VARIANTS " == *" $1 "* ]]; } # want <variant>: it is measured

if ! command -v valgrind >/dev/null; then
  echo "bench-fastpath: valgrind is not installed (scripts/install-deps.sh)" >&2
  exit 1
fi
if [ -n "${HAKMEM_LIBDIR:-}" ]; then
  LIBDIR=$(realpath "$HAKMEM_LIBDIR") || exit 1
  make -s CONFIG=release "$BB/fastpath.libc" || exit 1
  FAST=$(mktemp -d)/fastpath
  if want static; then
    gcc -std=gnu11 -O2 -g -DNDEBUG -pthread -Ialloc/include -Istress bench/fastpath.c \
      -o "$FAST" "$LIBDIR/libhakmem.a" -pthread || exit 1
  fi
else
  LIBDIR=$ROOT/build/release
  FAST=$BB/fastpath
  make -s -j"$JOBS" CONFIG=release lib "$BB/fastpath" "$BB/fastpath.libc" || {
    echo "bench-fastpath: build failed" >&2
    exit 1
  }
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ir <preload> <prog> <n> <mode> <allocator>: total instructions (callgrind
# "Collected"); the profile stays in $tmp/cg.<mode>.<n>. The program must
# name the allocator expected (its "allocator=" line): a preload that does
# not load (a path that does not exist, a library of another architecture)
# is only a warning of ld.so, and the count would be glibc's under the
# other's name (until 2026-11-28: HAKMEM_LIBDIR without libhakmem.so gave
# glibc's 133 instructions as hakmem's preloaded count).
ir() {
  local out got
  out=$(env ${1:+LD_PRELOAD=$1} valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$4.$3" \
    "$2" "$3" "$4" 2>&1 >"$tmp/out") || { echo "bench-fastpath: valgrind failed: $out" >&2; return 1; }
  got=$(sed -n 's/^fastpath: allocator=\([^ ]*\) .*/\1/p' "$tmp/out")
  if [ "$got" != "$5" ]; then
    echo "bench-fastpath: $2${1:+ with LD_PRELOAD=$1} ran on allocator ${got:-?}, expected $5" >&2
    return 1
  fi
  printf '%s\n' "$out" | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' | tail -n 1
}

# per_iter <preload> <prog> <mode> <allocator>: instructions per iteration
# (exact rational, 2 decimals)
per_iter() {
  local a b
  a=$(ir "$1" "$2" "$N1" "$3" "$4") && b=$(ir "$1" "$2" "$N2" "$3" "$4") || return 1
  awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN { printf "%.2f", (b - a) / (n2 - n1) }'
}

# fn_ir <profile> <function>: the function's own instructions in a callgrind
# profile, summed over the files its inlined code comes from.
fn_ir() {
  callgrind_annotate --threshold=100 "$1" 2>/dev/null | awk -v f="$2" '
    # "  1,400,028 (20.36%)  file:function [object]" (the percentage may hold a space)
    match($0, /^ *[0-9,]+ +\([^)]*\) +/) {
      c = $1; gsub(",", "", c); rest = substr($0, RLENGTH + 1); sub(/ .*/, "", rest)
      n = split(rest, a, ":"); if (a[n] == f) s += c
    }
    END { print s + 0 }'
}

# fn_per_iter <mode> <function>: its instructions per iteration (as per_iter)
fn_per_iter() {
  local a b
  a=$(fn_ir "$tmp/cg.$1.$N1" "$2") && b=$(fn_ir "$tmp/cg.$1.$N2" "$2") || return 1
  awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN { printf "%.2f", (b - a) / (n2 - n1) }'
}

echo "==> bench-fastpath: callgrind, N1=$N1 N2=$N2 iterations, 64 B blocks"
status=0
# report <label> <allocator> <preload> <prog> [<malloc function> <free function>]: the
# pair's count; with the two function names (hakmem's), also the line
#   "  of which: <malloc> M, <free> F, the calls C"
# each measured on its own from the profiles: M and F are each function's
# own instructions per iteration of the steady-state loop (the fast path,
# its inlined helpers and its ret), C is what main executes per iteration
# beyond the empty loop (the argument set-up and the two call instructions;
# the build uses -fno-plt, so there are no PLT jumps). M + F + C adds up to
# the pair's count only if nothing else ran in the loop and nothing was
# missed: make check tests that.
report() {
  local label=$1 expect=$2 pair ping loop net netp m f c l
  shift 2
  if ! pair=$(per_iter "$1" "$2" pair "$expect") || ! ping=$(per_iter "$1" "$2" pingpong "$expect") ||
    ! loop=$(per_iter "$1" "$2" empty "$expect"); then
    echo "$label: measurement failed"
    status=1
    return
  fi
  net=$(awk -v p="$pair" -v l="$loop" 'BEGIN { printf "%.0f", p - l }')
  netp=$(awk -v p="$ping" -v l="$loop" 'BEGIN { printf "%.0f", p - l }')
  printf 'malloc+free 64 B: %s instructions, %s when each free empties the page  (%s)\n' \
    "$net" "$netp" "$label"
  [ $# -ge 4 ] || return 0
  if ! m=$(fn_per_iter pair "$3") || ! f=$(fn_per_iter pair "$4") ||
    ! c=$(fn_per_iter pair main) || ! l=$(fn_per_iter empty main); then
    echo "  of which: measurement failed"
    status=1
    return
  fi
  awk -v m="$m" -v f="$f" -v c="$c" -v l="$l" -v mn="$3" -v fn="$4" 'BEGIN {
    printf "  of which: %s %.0f, %s %.0f, the calls %.0f\n", mn, m, fn, f, c - l }'
}
want static && report "hakmem: hak_malloc/hak_free, static libhakmem.a" hakmem "" "$FAST" hak_malloc hak_free
want preload && report "hakmem: malloc/free, LD_PRELOAD libhakmem.so" "hakmem(preload)" \
  "$LIBDIR/libhakmem.so" "$BB/fastpath.libc" malloc free
want glibc && report "glibc $(ldd --version 2>/dev/null | head -n 1 | awk '{ print $NF }'): malloc/free" \
  libc "" "$BB/fastpath.libc"
# the peers, when installed (same library lookup as scripts/bench.sh)
want peers || exit $status
. scripts/lib-bench.sh # peer_lib
for peer in mimalloc jemalloc tcmalloc; do
  lib=$(peer_lib "$peer")
  if [ -n "$lib" ]; then
    report "$peer: malloc/free, LD_PRELOAD" "$peer(preload)" "$lib" "$BB/fastpath.libc"
  else
    echo "$peer: skipped: not installed"
  fi
done
exit $status
