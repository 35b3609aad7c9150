#!/usr/bin/env bash
# fuzz/cflite-check.sh: runs .clusterfuzzlite/build.sh locally with the
# variables OSS-Fuzz sets for an ASan build, then every produced fuzzer on
# its <fuzzer>_seed_corpus.zip (each input once). Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT=$PWD/build/fuzz/cflite SRC_DIR=$PWD WORK=$PWD/build/fuzz/cflite-work
export CC=${CC:-clang}
export CFLAGS="-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address -fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link"
export LIB_FUZZING_ENGINE=-fsanitize=fuzzer
rm -rf "$OUT" "$WORK"
bash .clusterfuzzlite/build.sh
for d in fuzz_ops fuzz_mt fuzz_sizes; do
  test -x "$OUT/$d" && test -s "$OUT/${d}_seed_corpus.zip"
  rm -rf "$WORK/seeds-$d" && mkdir -p "$WORK/seeds-$d"
  unzip -q "$OUT/${d}_seed_corpus.zip" -d "$WORK/seeds-$d"
  echo "==> $d on $(find "$WORK/seeds-$d" -type f | wc -l) seeds"
  dict=()
  [ ! -f "$OUT/$d.dict" ] || dict=("-dict=$OUT/$d.dict")
  "$OUT/$d" -runs=0 "${dict[@]}" "$WORK/seeds-$d"
done
echo "cflite-check: OK"
