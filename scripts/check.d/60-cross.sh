#!/usr/bin/env bash
# make check, part 60: hakmem for aarch64 (scripts/cross-check.sh, fast set):
#   cross/build, cross/<test>, cross/<test>@16k, @64k   release built with
#                          aarch64-linux-gnu-gcc, 17 tests under qemu-aarch64,
#                          12 with 16 and 64 KiB pages (10 of the 17,
#                          test_trim_large_tail and test_large_cache),
#                          stress/remote_free (4 threads, 2 s)
#   cross/fuzz_sizes-digests  the same outcomes on x86-64 and aarch64 for
#                          every fuzz_sizes corpus and regression input
#   cross/toolchain SKIP   the cross compiler is not installed
#   cross/run SKIP         qemu-user is not installed: built, nothing run
#   cross/planted-build-no-qemu  a cross compiler that fails, no qemu: the
#                          build FAILs, cross/run SKIP, exit 1
# About 25 s on 2 busy cores (23.3 s, load average 5.5), the build included;
# 2026-11-29 with the 11 paged tests: 17.7 s with the build up to date.
cd "$(dirname "$0")/../.." || exit 1
CROSS_SET=fast bash scripts/cross-check.sh
# a broken build is a FAIL where qemu-user is missing too (a stand-in cross
# compiler, hakplant-linux-gnu-gcc, that fails; no qemu-hakplant): until
# 2026-11-29 a missing qemu skipped the build as well. No toolchain needed.
# shellcheck source=scripts/lib-check.sh
. scripts/lib-check.sh
# shellcheck disable=SC2016  # expanded by the inner shell
run_check cross planted-build-no-qemu bash -c '
  T=build/cross-selftest
  rm -rf "$T" build/release-hakplant
  mkdir -p "$T/bin" "$T/sysroot/lib"
  for t in gcc ar; do
    printf "#!/bin/sh\necho planted cross compiler failure >&2\nexit 1\n" >"$T/bin/hakplant-linux-gnu-$t"
    chmod +x "$T/bin/hakplant-linux-gnu-$t"
  done
  PATH="$PWD/$T/bin:$PATH" CROSS=hakplant-linux-gnu- CROSS_SYSROOT="$T/sysroot" \
    HAK_RESULTS="$T/r.tsv" HAK_LOGDIR="$T/logs" bash scripts/cross-check.sh >"$T/out" 2>&1
  rc=$?
  cat "$T/out"
  rm -rf build/release-hakplant
  [ $rc = 1 ] || { echo "exit $rc, expected 1"; exit 1; }
  grep -q "^cross/build	release-hakplant	FAIL" "$T/r.tsv" || { echo "no cross/build FAIL"; exit 1; }
  grep -q "^cross/run	hakplant	SKIP" "$T/r.tsv" || { echo "no cross/run SKIP"; exit 1; }
  grep -q "^cross-check: SKIP: not installed: qemu-hakplant " "$T/out" || { echo "no message"; exit 1; }
  ! grep -q "^cross/test_" "$T/r.tsv" || { echo "a test ran without qemu"; exit 1; }'
exit 0
