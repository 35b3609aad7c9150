#!/usr/bin/env bash
# fuzz/run.sh DRIVER...  (make fuzz): runs each libFuzzer driver for FUZZ_TIME
# seconds with JOBS workers (-fork), starting from corpus/<driver>/ and
# corpus/regressions/<driver>/. New inputs go to build/fuzz/work/<driver>/;
# with FUZZ_MERGE=1 (default) those that add coverage are merged into
# corpus/<driver>/ (-merge=1). Findings land in build/fuzz/crashes/<driver>/
# and are listed with the command that reproduces each. Exit 1 on a finding.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
FUZZ_TIME=${FUZZ_TIME:-60}
JOBS=${JOBS:-2}
FUZZ_MERGE=${FUZZ_MERGE:-1}
MAX_LEN=${FUZZ_MAX_LEN:-2048}
rc=0
for d in "$@"; do
  bin=build/fuzz/libfuzzer/$d
  work=build/fuzz/work/$d
  crashes=build/fuzz/crashes/$d
  log=build/fuzz/logs/$d.log
  mkdir -p "$work" "$crashes" "corpus/$d" "corpus/regressions/$d" build/fuzz/logs
  stamp=$(mktemp)
  dict=()
  [ -f "fuzz/$d.dict" ] && dict=("-dict=fuzz/$d.dict")
  echo "==> fuzz: $d for ${FUZZ_TIME}s with $JOBS job(s); log $log"
  "$bin" -fork="$JOBS" -max_total_time="$FUZZ_TIME" -max_len="$MAX_LEN" -timeout=20 \
    -rss_limit_mb=4096 -artifact_prefix="$crashes/" "${dict[@]}" \
    "$work" "corpus/$d" "corpus/regressions/$d" >"$log" 2>&1
  frc=$?
  grep -E '^#[0-9]+.*(DONE|pulse|NEW)' "$log" | tail -n 1 | sed 's/^/    /'
  grep -E 'execs|exec/s' "$log" | tail -n 1 | sed 's/^/    /'
  if [ "$FUZZ_MERGE" = 1 ]; then
    "$bin" -merge=1 -max_len="$MAX_LEN" -timeout=20 "corpus/$d" "$work" >>"$log" 2>&1 ||
      echo "    (merge failed, see $log)"
    echo "    corpus/$d: $(find "corpus/$d" -type f | wc -l) inputs"
  fi
  found=0
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    found=1
    echo "FINDING ($d): $f"
    echo "  reproduce (ASan+UBSan): $bin $f"
    echo "  reproduce (release):    build/fuzz/release/$d $f"
  done < <(find "$crashes" -type f -newer "$stamp" | sort)
  rm -f "$stamp"
  if [ "$found" = 1 ]; then
    rc=1
  elif [ "$frc" != 0 ]; then
    echo "FAIL ($d): libFuzzer exited with status $frc without an artifact; see $log"
    tail -n 20 "$log"
    rc=1
  fi
done
exit $rc
