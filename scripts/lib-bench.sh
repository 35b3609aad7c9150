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
  p=$(ldconfig -p 2>/dev/null | awk -v n="$1" '$1 ~ "^" n "\\.so" && /x86-64|x86_64/ { print $NF; exit }')
  if [ -z "$p" ]; then
    for p in /usr/lib/x86_64-linux-gnu/"$1".so* /usr/lib/"$1".so* /usr/local/lib/"$1".so*; do
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
