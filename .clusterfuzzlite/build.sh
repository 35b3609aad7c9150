#!/bin/bash -eu
# .clusterfuzzlite/build.sh: OSS-Fuzz / ClusterFuzzLite build contract.
# Uses $CC $CFLAGS (sanitizer + coverage flags chosen by the infrastructure),
# $LIB_FUZZING_ENGINE (e.g. -fsanitize=fuzzer) and writes to $OUT:
# <fuzzer> binaries, <fuzzer>_seed_corpus.zip and <fuzzer>.dict.
# make check runs it locally (scripts/check.d/10-fuzz.sh, check fuzz/cflite-build).
SRC_DIR=${SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$SRC_DIR"
W=${WORK:-$OUT/work}
mkdir -p "$W/obj" "$OUT"
for f in alloc/src/*.c; do
  $CC $CFLAGS -std=gnu11 -fPIC -pthread -fvisibility=hidden -Ialloc/include -DHAK_DEBUG=1 \
    -c "$f" -o "$W/obj/$(basename "$f" .c).o"
done
rm -f "$W/libhakmem.a"
ar rcs "$W/libhakmem.a" "$W"/obj/*.o
for d in fuzz_ops fuzz_mt fuzz_sizes; do
  $CC $CFLAGS -std=gnu11 -pthread -Ialloc/include -Ialloc/src -Ifuzz "fuzz/$d.c" fuzz/ops.c \
    -o "$OUT/$d" $LIB_FUZZING_ENGINE "$W/libhakmem.a" -pthread
  rm -f "$OUT/${d}_seed_corpus.zip"
  (cd corpus && zip -q -r -j "$OUT/${d}_seed_corpus.zip" "$d" "regressions/$d" -x '*README*' -x '*/.*')
  [ ! -f "fuzz/$d.dict" ] || cp "fuzz/$d.dict" "$OUT/$d.dict"
done
