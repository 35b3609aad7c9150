#!/usr/bin/env bash
# make check, part 30: crash reproduction (README.md, "Crash reproduction").
#   repro/build          the trace library, replay (release debug asan tsan valgrind),
#                        tracecat, trace2fuzz, the test-only planted-bug builds
#   repro/<step>         repro/tests/steps.sh <step>:
#     record-stress, replay-stress-{release,asan,tsan,valgrind}, replay-serial:
#       a 4-thread remote_free run recorded under LD_PRELOAD of build/trace/libhakmem.so,
#       replayed in each configuration with every outcome matching
#     record-python, replay-python-{release,asan,tsan,valgrind}: the same for python3
#     tracecat, mismatch-detected (a doctored trace must be reported), trace-edges
#       (free_sized replayed with its size, realloc'd usable size, a cut-short or garbled
#       trace refused, tracecat --ids after reallocarray(p, 0, m), a call of every function:
#       replayed, its usable sizes recorded, each kind of op carried by trace2fuzz), trace2fuzz-edges (trace2fuzz
#       names a sized free whose recorded size the fuzz input cannot carry; 120 thread
#       exits do not cut the end of the trace off the input), trace-limit
#       (HAKMEM_TRACE_LIMIT_MB saturates; 1 MB truncates), trace-reentered (calls a
#       signal handler makes while the recorder runs are counted in the header),
#       trace-fork-flush (a child forked while the parent's trace is being written
#       writes its own at exit), trace-inflight (the call hakmem died in, recorded after it
#       returns, still ends the crash trace: replayed uncompared, kept by trace2fuzz),
#       trace-exec-crash (a program the traced process ran crashed: its trace stays at
#       PATH, the parent's goes to PATH.<pid>; a stale crash trace is replaced),
#       trace-crash-during-exit (a thread's hakmem error while the exit writes the trace:
#       the process dies of SIGABRT, the trace is the crash's),
#       trace-signal-survived (a fatal signal the process survives, ignored or recovered
#       from by its own handler: the exit writes its trace at once), trace-fifo (a FIFO
#       or a pipe as HAKMEM_TRACE: nothing waits on it, the reader gets the trace),
#       scripts-cwd (rr-record, rr-replay and triage run from another directory: CMD,
#       INPUT and relative RR, RR_DIR, FUZZ_LF_DIR are the caller's), rr-no-probe (no
#       compiler for the counter probe: rr's own test run decides, exit 0 or 4)
#     plant-record, plant-replay-10x, plant-replay-{asan,tsan}, plant-needs-plant,
#     plant-trace2fuzz, plant-triage: the planted crash (test-only build) is written at
#       the crash, ends at the crashing op, replays 10/10, converts to a fuzz_mt input
#       that crashes, is minimized and filed (in a temporary regressions directory)
#     rr-detect, rr-loop: make rr-record's checks on this machine; its loop with a stand-in rr
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. scripts/lib-check.sh
results_ensure
if ! command -v clang >/dev/null; then
  run_check repro build sh -c 'echo "clang missing"; exit 77'
  exit 0
fi
RUN_TIMEOUT=1200 run_check repro build sh -c \
  "make -j${JOBS:-2} repro-bins fuzz-bins build/release/stress/remote_free.libc && make -j${JOBS:-2} repro-plant-bins" ||
  exit 0
deps_failed=
for s in $(bash repro/tests/steps.sh list); do
  RUN_TIMEOUT=600 run_check repro "$s" bash repro/tests/steps.sh "$s" || deps_failed="$deps_failed $s"
done
exit 0
