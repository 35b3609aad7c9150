#!/usr/bin/env bash
# fuzz/run.sh DRIVER...  (make fuzz): runs each libFuzzer driver for FUZZ_TIME
# seconds in all, starting from corpus/<driver>/ and corpus/regressions/<driver>/.
# JOBS=1: one in-process fuzzer (it runs every corpus input before it mutates).
# JOBS>1: first the corpora are replayed in one process (-runs=0), because
# libFuzzer's -fork mode loads its starting corpus with a crash-resistant merge
# that silently drops every input that crashes (a corpus or regression input
# that finds a bug would never be reported, and each one restarts the merge);
# a finding there ends the driver's run. Then JOBS workers (-fork) fuzz for the
# rest of FUZZ_TIME. New inputs go to build/fuzz/work/<driver>/;
# with FUZZ_MERGE=1 (default) those that add coverage are merged into
# corpus/<driver>/ (-merge=1). Findings land in build/fuzz/crashes/<driver>/
# and are listed with the command that reproduces each. Exit 1 on a finding.
# FUZZ_BUILD=asan (default): build/fuzz/libfuzzer (debug allocator, ASan+UBSan);
# FUZZ_BUILD=release: build/fuzz/libfuzzer-release (the release allocator, whose
# HAK_DEBUG-off code the other build never runs); log <driver>-release.log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
FUZZ_TIME=${FUZZ_TIME:-60}
JOBS=${JOBS:-2}
FUZZ_MERGE=${FUZZ_MERGE:-1}
MAX_LEN=${FUZZ_MAX_LEN:-2048}
case ${FUZZ_BUILD:-asan} in
  asan) LF_DIR=build/fuzz/libfuzzer LOG_SUFFIX= ;;
  release) LF_DIR=build/fuzz/libfuzzer-release LOG_SUFFIX=-release ;;
  *)
    echo "fuzz/run.sh: FUZZ_BUILD must be asan or release, not '$FUZZ_BUILD'" >&2
    exit 2
    ;;
esac
rc=0
for d in "$@"; do
  bin=$LF_DIR/$d
  work=build/fuzz/work/$d
  crashes=build/fuzz/crashes/$d
  log=build/fuzz/logs/$d$LOG_SUFFIX.log
  mkdir -p "$work" "$crashes" "corpus/$d" "corpus/regressions/$d" build/fuzz/logs
  stamp=$(mktemp)
  dict=()
  [ -f "fuzz/$d.dict" ] && dict=("-dict=fuzz/$d.dict")
  echo "==> fuzz: $d ($bin) for ${FUZZ_TIME}s with $JOBS job(s); log $log"
  t0=$(date +%s)
  replay_found=0
  if [ "$JOBS" -le 1 ]; then
    # one in-process fuzzer: it runs every corpus input first (a crash there
    # is reported, nothing is skipped), then fuzzes for the rest of the time
    "$bin" -max_total_time="$FUZZ_TIME" -max_len="$MAX_LEN" -timeout=20 -rss_limit_mb=4096 \
      -artifact_prefix="$crashes/" "${dict[@]}" "$work" "corpus/$d" "corpus/regressions/$d" \
      >"$log" 2>&1
    frc=$?
    if [ "$frc" != 0 ] && ! grep -q 'INITED' "$log"; then
      replay_found=1
      echo "    the corpus replay found a bug (status $frc)"
    fi
  else
    # the corpus as committed, in-process (no -max_len: inputs are not truncated)
    "$bin" -runs=0 -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$crashes/" \
      "corpus/$d" "corpus/regressions/$d" >"$log" 2>&1
    frc=$?
    left=$((FUZZ_TIME - ($(date +%s) - t0)))
    if [ "$frc" != 0 ]; then
      replay_found=1
      echo "    the corpus replay found a bug (status $frc)"
    else
      echo "    corpus replayed in $((FUZZ_TIME - left))s; fuzzing for ${left}s"
      [ "$left" -ge 1 ] || left=1
      "$bin" -fork="$JOBS" -max_total_time="$left" -max_len="$MAX_LEN" -timeout=20 \
        -rss_limit_mb=4096 -artifact_prefix="$crashes/" "${dict[@]}" \
        "$work" "corpus/$d" "corpus/regressions/$d" >>"$log" 2>&1
      frc=$?
    fi
  fi
  grep -E '^#[0-9]+.*(DONE|pulse|NEW)' "$log" | tail -n 1 | sed 's/^/    /'
  grep -E 'execs|exec/s' "$log" | tail -n 1 | sed 's/^/    /'
  if [ "$FUZZ_MERGE" = 1 ] && [ "$replay_found" = 0 ]; then
    "$bin" -merge=1 -max_len="$MAX_LEN" -timeout=20 "corpus/$d" "$work" >>"$log" 2>&1 ||
      echo "    (merge failed, see $log)"
    echo "    corpus/$d: $(find "corpus/$d" -type f | wc -l) inputs"
  fi
  found=0
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    found=1
    echo "FINDING ($d): $f"
    echo "  reproduce (libFuzzer):  $bin $f"
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
