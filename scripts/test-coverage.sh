#!/usr/bin/env bash
# scripts/test-coverage.sh (make test-coverage): what lines and branches of
# alloc/src neither the unit tests nor the fuzz corpus execute.
# Runs every build/cov/tests/test_* (scripts/coverage.mk: alloc/src built like
# release, -O2 without HAK_DEBUG, with clang source-based coverage; forked
# children write their own profiles, scripts/cov_shim.c) with HAK_TEST_SCALE
# (default 0.5), then every corpus and regression input through the three fuzz
# drivers (as fuzz/coverage.sh does), merges the profiles and prints llvm-cov's
# report of alloc/src: tests alone, corpus alone, both. Uncovered lines with
# their source: build/cov/uncovered.txt (llvm-cov show, only the lines whose
# count is 0, grouped by file); branches one of whose ways nothing takes:
# build/cov/uncovered-branches.txt; HTML of the whole: build/cov/html/.
# Not part of make check: under a minute on 2 cores (about 30 s, and 20 s
# before it for make test-coverage-bins).
#   COV_TESTS="test_a test_b"   only these tests (default: all)
#   HAK_TIMEOUT                 per-test timeout in seconds (default 300)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PROFDATA=$(command -v llvm-profdata-14 || command -v llvm-profdata) || { echo "llvm-profdata missing (apt-get install llvm-14)"; exit 77; }
COV=$(command -v llvm-cov-14 || command -v llvm-cov) || { echo "llvm-cov missing (apt-get install llvm-14)"; exit 77; }
out=build/cov
prof=$out/prof
rm -rf "$prof" && mkdir -p "$prof/raw"
export HAK_TEST_SCALE=${HAK_TEST_SCALE:-0.5}
T=${HAK_TIMEOUT:-300}
FUZZERS="fuzz_ops fuzz_mt fuzz_sizes"
if [ -n "${COV_TESTS:-}" ]; then read -ra tests <<<"$COV_TESTS"; else
  mapfile -t tests < <(for f in tests/test_*.c; do basename "$f" .c; done)
fi
objs=()
failed=()
for t in "${tests[@]}"; do
  bin=$out/tests/$t
  [ -x "$bin" ] || { echo "missing $bin (make test-coverage-bins)"; exit 1; }
  mkdir -p "$prof/raw/$t"
  s=$(date +%s.%N)
  LLVM_PROFILE_FILE="$PWD/$prof/raw/$t/%p.profraw" timeout "$T" "$bin" >"$prof/$t.log" 2>&1
  rc=$?
  case $rc in 0) v=PASS ;; 77) v=SKIP ;; 124) v=HANG ;; *) v=FAIL ;; esac
  [ "$v" = PASS ] || [ "$v" = SKIP ] || failed+=("$t")
  n=$(find "$prof/raw/$t" -name '*.profraw' | wc -l)
  printf '%-5s %-32s %6.1fs  %d profiles\n' "$v" "$t" "$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$n"
  # one profile per test (forks can leave hundreds of raw files)
  if [ "$n" -gt 0 ]; then
    find "$prof/raw/$t" -name '*.profraw' -print0 | xargs -0 "$PROFDATA" merge -sparse -o "$prof/test-$t.profdata" ||
      echo "      (merge of $t's profiles failed)"
  fi
  rm -rf "${prof:?}/raw/$t"
  objs+=(-object "$bin")
done
for d in $FUZZERS; do
  mapfile -t f < <(find "corpus/$d" "corpus/regressions/$d" -maxdepth 1 -type f ! -name 'README*' ! -name '.*' 2>/dev/null | sort)
  mkdir -p "$prof/raw/$d"
  LLVM_PROFILE_FILE="$PWD/$prof/raw/$d/%p.profraw" "$out/fuzz/$d" "${f[@]}" >/dev/null 2>"$prof/$d.log" || { echo "FAIL  corpus of $d"; failed+=("$d"); }
  find "$prof/raw/$d" -name '*.profraw' -print0 | xargs -0 "$PROFDATA" merge -sparse -o "$prof/fuzz-$d.profdata"
  rm -rf "${prof:?}/raw/$d"
  echo "ran   corpus of $d (${#f[@]} inputs)"
  objs+=(-object "$out/fuzz/$d")
done
"$PROFDATA" merge -sparse "$prof"/test-*.profdata -o "$prof/tests.profdata"
"$PROFDATA" merge -sparse "$prof"/fuzz-*.profdata -o "$prof/corpus.profdata"
"$PROFDATA" merge -sparse "$prof/tests.profdata" "$prof/corpus.profdata" -o "$prof/all.profdata"
first=${objs[1]}
rest=("${objs[@]:2}")
srcs=(alloc/src/*.c alloc/src/*.h)
for p in tests corpus all; do
  "$COV" report "$first" "${rest[@]}" -instr-profile="$prof/$p.profdata" "${srcs[@]}" >"$out/report-$p.txt" 2>"$out/report-$p.err"
done
cat "$out/report-all.txt"
"$COV" show "$first" "${rest[@]}" -instr-profile="$prof/all.profdata" -format=html \
  -output-dir="$out/html" -show-line-counts-or-regions -show-branches=count "${srcs[@]}" >/dev/null 2>&1 || true
# uncovered lines: llvm-cov show text, keep "file:" headers and lines whose count is 0
"$COV" show "$first" "${rest[@]}" -instr-profile="$prof/all.profdata" -show-line-counts \
  "${srcs[@]}" 2>/dev/null | awk '
  /^\/.*:$/ { file = $0; next }
  /^ *[0-9]+\| *0\|/ { if (file != shown) { print "\n" file; shown = file } print }' >"$out/uncovered.txt"
# branches one of whose ways nothing takes: file:line:col, counts, the source line
"$COV" show "$first" "${rest[@]}" -instr-profile="$prof/all.profdata" -show-branches=count \
  "${srcs[@]}" 2>/dev/null | awk '
  /^\/.*:$/ { file = $0; sub(/:$/, "", file); sub(/.*\//, "", file); next }
  /^ *[0-9]+\|/ { split($0, f, "|"); n = f[1] + 0; src[n] = f[3]; next }
  /Branch \(/ && /(True|False): 0[],]/ {
    match($0, /\([0-9]+:[0-9]+\)/); lc = substr($0, RSTART + 1, RLENGTH - 2)
    split(lc, q, ":"); t = src[q[1] + 0]; gsub(/^ +/, "", t)
    match($0, /\[.*\]/); printf "%s:%s  %s  %s\n", file, lc, substr($0, RSTART, RLENGTH), t }' \
  >"$out/uncovered-branches.txt"
for p in tests corpus all; do
  awk -v p="$p" '/^TOTAL/ { printf "%-7s lines %s (%d of %d), branches %s (%d of %d)\n", p, $10, $8 - $9, $8, $13, $11 - $12, $11 }' "$out/report-$p.txt"
done
echo "uncovered lines: $out/uncovered.txt ($(grep -c '^ *[0-9]*| *0|' "$out/uncovered.txt")), branches: $out/uncovered-branches.txt ($(wc -l <"$out/uncovered-branches.txt")), HTML: $out/html/index.html"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED under coverage (logs in $prof/): ${failed[*]}"
  exit 1
fi
