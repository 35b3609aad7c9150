#!/usr/bin/env bash
# fuzz/coverage.sh DRIVER...  (make fuzz-coverage): runs every corpus and
# regression input through the source-coverage builds (build/fuzz/cov/) and
# prints llvm-cov's line/branch report of alloc/src; HTML in
# build/fuzz/cov/html/. Needs llvm-14 (llvm-profdata-14, llvm-cov-14).
# The children of FZ_FORK ops write their own profiles (fuzz/ops_fork.h) into
# the same folder, so the fork handlers' child side and the fatal-error and
# heap-check reporting that only run in those children are counted.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PROFDATA=$(command -v llvm-profdata-14 || command -v llvm-profdata) || { echo "llvm-profdata missing (apt-get install llvm-14)"; exit 77; }
COV=$(command -v llvm-cov-14 || command -v llvm-cov) || { echo "llvm-cov missing (apt-get install llvm-14)"; exit 77; }
out=build/fuzz/cov
rm -rf "$out/profraw" && mkdir -p "$out/profraw"
objs=()
for d in "$@"; do
  mapfile -t f < <(find "corpus/$d" "corpus/regressions/$d" -maxdepth 1 -type f ! -name 'README*' ! -name '.*' 2>/dev/null | sort)
  LLVM_PROFILE_FILE="$out/profraw/$d-%p.profraw" "$out/$d" "${f[@]}" >/dev/null || { echo "FAIL: $d"; exit 1; }
  objs+=(-object "$out/$d")
done
"$PROFDATA" merge -sparse "$out"/profraw/*.profraw -o "$out/fuzz.profdata"
# the first -object is positional for llvm-cov
first=${objs[1]}
rest=("${objs[@]:2}")
"$COV" report "$first" "${rest[@]}" -instr-profile="$out/fuzz.profdata" alloc/src/*.c alloc/src/*.h | tee "$out/report.txt"
"$COV" show "$first" "${rest[@]}" -instr-profile="$out/fuzz.profdata" -format=html \
  -output-dir="$out/html" alloc/src/*.c alloc/src/*.h >/dev/null 2>&1 || true
echo "line coverage of alloc/src: $(awk '/^TOTAL/ { print $10 }' "$out/report.txt"), branch coverage: $(awk '/^TOTAL/ { print $13 }' "$out/report.txt")  (HTML: $out/html/index.html)"
# error.c only formats fatal errors (each one aborts the process): excluded
awk '$1 ~ /\.[ch]$/ && $1 != "error.c" { l += $8; m += $9 }
  END { printf "line coverage of alloc/src without error.c (fatal-error reporting): %.2f%% (%d of %d lines)\n", 100 * (l - m) / l, l - m, l }' "$out/report.txt"
