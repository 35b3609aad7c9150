#!/usr/bin/env bash
# repro/tests/e2e.sh: the crash-reproduction test, every step in order
# (make repro-test; make check runs the same steps through
# scripts/check.d/30-repro.sh, one check each). Exit 1 if any step failed.
cd "$(dirname "$0")/../.." || exit 1
rc=0
for s in $(bash repro/tests/steps.sh list); do
  echo "==> $s"
  bash repro/tests/steps.sh "$s" || rc=1
done
exit $rc
