#!/usr/bin/env bash
# make check, part 60: hakmem for aarch64 (scripts/cross-check.sh, fast set):
#   cross/build, cross/<test>, cross/<test>@16k, @64k   release built with
#                          aarch64-linux-gnu-gcc, 17 tests under qemu-aarch64,
#                          11 with 16 and 64 KiB pages (10 of the 17 and
#                          test_trim_large_tail),
#                          stress/remote_free (4 threads, 2 s)
#   cross/fuzz_sizes-digests  the same outcomes on x86-64 and aarch64 for
#                          every fuzz_sizes corpus and regression input
#   cross/toolchain SKIP   the cross compiler or qemu-user is not installed
# About 25 s on 2 busy cores (23.3 s, load average 5.5), the build included;
# 2026-11-29 with the 11 paged tests: 17.7 s with the build up to date.
cd "$(dirname "$0")/../.." || exit 1
CROSS_SET=fast bash scripts/cross-check.sh
exit 0
