#!/usr/bin/env bash
# fuzz/replay.sh [-m MODE] DRIVER...  (make fuzz-replay): replays every input in
# corpus/<driver>/ and corpus/regressions/<driver>/; fails on any finding.
# MODE (default all): asan (libFuzzer build, ASan+UBSan), libfuzzer-release
# (libFuzzer build of the release allocator, UBSan), release (gcc -O2
# standalone), debug (HAK_DEBUG standalone), tsan (fuzz_mt only), valgrind
# (memcheck on build/valgrind, first FUZZ_VG_MAX inputs per driver),
# determinism (fresh state per input + crash reproduction; every input, or the
# first FUZZ_DET_MAX per driver when set).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
MODE=all
if [ "${1:-}" = -m ]; then
  MODE=$2
  shift 2
fi
VG_MAX=${FUZZ_VG_MAX:-25}
rc=0
inputs() { find "corpus/$1" "corpus/regressions/$1" -maxdepth 1 -type f ! -name 'README*' ! -name '.*' 2>/dev/null | sort; }
step() { echo "==> fuzz-replay: $*"; }
fail() {
  echo "FAIL: $*"
  rc=1
}
# A driver with no inputs is a failure, not a pass: a corpus moved or
# deleted would otherwise turn every replay of it into "OK".
have_inputs() {
  [ ${#f[@]} -gt 0 ] && return 0
  fail "$1: no inputs in corpus/$1/ or corpus/regressions/$1/"
  return 1
}

run_lf() { # run_lf <mode> <build dir under build/fuzz> <what> <driver>
  local m=$1 dir=$2 what=$3 d=$4
  step "$d under $what"
  mapfile -t f < <(inputs "$d")
  have_inputs "$d" || return 0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} build/fuzz/"$dir"/"$d" -runs=1 -timeout=60 "${f[@]}" \
    >"build/fuzz/logs/replay-$m-$d.log" 2>&1 || {
    tail -n 30 "build/fuzz/logs/replay-$m-$d.log"
    fail "$d under $what"
  }
}

run_sa() { # run_sa <config> <driver> [wrapper...]
  local cfg=$1 d=$2
  shift 2
  step "$d standalone ($cfg)"
  mapfile -t f < <(inputs "$d")
  have_inputs "$d" || return 0
  "$@" build/fuzz/"$cfg"/"$d" "${f[@]}" >"build/fuzz/logs/replay-$cfg-$d.log" 2>&1 || {
    tail -n 30 "build/fuzz/logs/replay-$cfg-$d.log"
    fail "$d standalone ($cfg)"
  }
}

run_valgrind() {
  local d=$1
  step "$d under valgrind memcheck (first $VG_MAX inputs)"
  mapfile -t f < <(inputs "$d" | head -n "$VG_MAX")
  have_inputs "$d" || return 0
  timeout 300 valgrind -q --error-exitcode=99 --exit-on-first-error=yes \
    build/fuzz/valgrind/"$d" "${f[@]}" >"build/fuzz/logs/replay-valgrind-$d.log" 2>&1 || {
    tail -n 30 "build/fuzz/logs/replay-valgrind-$d.log"
    fail "$d under valgrind"
  }
}

# Fresh state per input: every input gives the same digest (outcomes and
# block offsets in their 4 MiB segment) when run alone, after the whole corpus
# in the same process, and twice in a row in the same process. Then a crash
# (FUZZ_ABORT_AT) in one input reproduces from its file alone, after other
# inputs or not, with the same digest at the crash. Every input of the corpus:
# until 2026-11-29 only the first 60 per driver (sorted by name, so always the
# same 60 of 265/268/143), which took 5 s for the three drivers on the shared
# 2-core machine; all of them take 17 s.
run_determinism() {
  local d=$1 bin=build/fuzz/release/$1 tmp
  step "$d determinism (fresh state per input, crash reproduction)"
  mapfile -t f < <(inputs "$d" | head -n "${FUZZ_DET_MAX:-1000000}")
  have_inputs "$d" || return 0
  tmp=$(mktemp -d)
  "$bin" "${f[@]}" "${f[@]}" >"$tmp/twice" 2>&1 || fail "$d: corpus run failed"
  : >"$tmp/alone"
  for x in "${f[@]}"; do "$bin" "$x" >>"$tmp/alone" 2>&1 || fail "$d: $x failed alone"; done
  local n=${#f[@]}
  head -n "$n" "$tmp/twice" >"$tmp/first"
  tail -n "$n" "$tmp/twice" >"$tmp/second"
  if ! cmp -s "$tmp/first" "$tmp/second" || ! cmp -s "$tmp/first" "$tmp/alone"; then
    fail "$d: digests differ between runs (state leaks between inputs)"
    diff "$tmp/first" "$tmp/second" | head
    diff "$tmp/first" "$tmp/alone" | head
  fi
  # the largest input crashes at op 3; run after every other input and alone
  local big
  big=$(ls -S "${f[@]}" | head -n 1)
  local r1=0
  { FUZZ_ABORT_AT=3 "$bin" "$big" >"$tmp/crash-alone" 2>&1; } 2>/dev/null || r1=$?
  FUZZ_ABORT_AT=1000000 "$bin" "${f[@]}" >/dev/null 2>&1 || fail "$d: run with a far FUZZ_ABORT_AT failed"
  local cfile=build/fuzz/crashes/selftest-$d
  mkdir -p "$(dirname "$cfile")"
  cp "$big" "$cfile"
  if [ "$r1" -ne 134 ] || ! grep -q 'FUZZ_ABORT_AT=3 reached' "$tmp/crash-alone"; then
    fail "$d: FUZZ_ABORT_AT=3 did not abort (status $r1)"
  else
    # the same crash reached through the libFuzzer binary, from the file alone
    local r2=0
    # (its redzones off: they move blocks to bigger classes, and the digest
    # holds their offsets and usable sizes; alloc/src/track.h)
    { FUZZ_ABORT_AT=3 FUZZ_NO_REDZONES=1 build/fuzz/libfuzzer/"$d" "$cfile" >"$tmp/crash-lf" 2>&1; } 2>/dev/null || r2=$?
    local a b
    a=$(grep -o 'FUZZ_ABORT_AT=3 reached, digest [0-9a-f]*' "$tmp/crash-alone")
    b=$(grep -o 'FUZZ_ABORT_AT=3 reached, digest [0-9a-f]*' "$tmp/crash-lf")
    [ "$r2" -ne 0 ] || fail "$d: libFuzzer build did not crash on $cfile"
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "$d: crash digest differs ('$a' vs '$b')"
  fi
  rm -rf "$tmp"
}

mkdir -p build/fuzz/logs
SETARCH=()
if setarch "$(uname -m)" -R true 2>/dev/null; then SETARCH=(setarch "$(uname -m)" -R); fi
for d in "$@"; do
  case $MODE in all | asan) run_lf asan libfuzzer "ASan+UBSan (libFuzzer build)" "$d" ;; esac
  case $MODE in all | libfuzzer-release) run_lf libfuzzer-release libfuzzer-release "UBSan (libFuzzer build, release allocator)" "$d" ;; esac
  case $MODE in all | release) run_sa release "$d" ;; esac
  case $MODE in all | debug) run_sa debug "$d" ;; esac
  if [ "$d" = fuzz_mt ]; then
    case $MODE in all | tsan) TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" run_sa tsan "$d" "${SETARCH[@]}" ;; esac
  fi
  case $MODE in all | valgrind) run_valgrind "$d" ;; esac
  case $MODE in all | determinism) run_determinism "$d" ;; esac
done
[ $rc = 0 ] && echo "fuzz-replay: OK ($MODE)"
exit $rc
