# shellcheck shell=bash
# Shared by the benchmark scripts (bench.sh, bench-random-mixed.sh,
# bench-fastpath.sh). Source it from the repository root.

# find_lib <soname prefix>: path of an installed shared library, or nothing.
# HAK_PEER_DIR, when set, is searched first (peer libraries copied to a
# machine that does not have them installed).
find_lib() {
  local p
  if [ -n "${HAK_PEER_DIR:-}" ]; then
    for p in "$HAK_PEER_DIR/$1".so*; do
      [ -e "$p" ] && { realpath "$p"; return; }
    done
  fi
  # this machine's libraries: ldconfig tags them "x86-64" or "AArch64"
  local tag=x86-64 arch
  arch=$(uname -m)
  [ "$arch" = aarch64 ] && tag=AArch64
  p=$(ldconfig -p 2>/dev/null | awk -v n="$1" -v t="$tag" '$1 ~ "^" n "\\.so" && index($0, t) { print $NF; exit }')
  if [ -z "$p" ]; then
    for p in /usr/lib/"$arch"-linux-gnu/"$1".so* /usr/lib/"$1".so* /usr/local/lib/"$1".so*; do
      [ -e "$p" ] && break
      p=
    done
  fi
  printf '%s' "$p"
}

# peer_lib <mimalloc|jemalloc|tcmalloc>: the installed library of that peer
# allocator (for LD_PRELOAD), or nothing when it is not installed.
peer_lib() {
  case $1 in
    mimalloc) find_lib libmimalloc ;;
    jemalloc) find_lib libjemalloc ;;
    tcmalloc) find_lib libtcmalloc_minimal ;;
  esac
}

# no_result <figure>: true when <figure>, the ops/s (or throughput) a
# benchmark run printed, is not a throughput: nothing, zero, a negative, NaN,
# inf or anything else that is not a plain number above zero. The one
# definition of "measured no throughput": bench.sh and bench-random-mixed.sh
# test each run with it, and bench-report.py each sample (one bash for all
# of them). A throughput is at most 15 digits, an optional fraction of at
# most 6 and an optional exponent of at most 2, not all zero: each such
# figure is a finite double above zero, so the report computes with what was
# taken here. (Until 2026-11-28 there were three tests: bench.sh's regex took
# -1 and nan for results, bench-random-mixed.sh's sed cut 1e+06 to 1.)
no_result() {
  [[ $1 =~ ^[0-9]{0,15}(\.[0-9]{0,6})?([eE][-+]?[0-9]{1,2})?$ ]] || return 0
  [[ ${1%%[eE]*} != *[1-9]* ]]
}
