#!/usr/bin/env bash
# repro/tests/e2e.sh: the crash-reproduction test, every step in order
# (make repro-test; make check runs the same steps through
# scripts/check.d/30-repro.sh, one check each). Exit 1 if any step failed.
cd "$(dirname "$0")/../.." || exit 1
rc=0
for s in record-stress replay-stress-release \
  replay-stress-asan replay-stress-tsan replay-stress-valgrind replay-serial record-python \
  replay-python-release replay-python-asan replay-python-tsan replay-python-valgrind tracecat \
  mismatch-detected trace-edges replay-clock trace2fuzz-edges trace-limit trace-reentered trace-fork-flush trace-inflight trace-exec-crash trace-crash-during-exit trace-signal-survived trace-fifo scripts-cwd rr-no-probe plant-record plant-replay-10x \
  plant-replay-asan plant-replay-tsan plant-needs-plant plant-trace2fuzz plant-triage rr-detect rr-loop; do
  echo "==> $s"
  bash repro/tests/steps.sh "$s" || rc=1
done
exit $rc
