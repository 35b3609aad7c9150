#!/usr/bin/env bash
# scripts/triage.sh [--driver fuzz_mt|fuzz_ops|fuzz_sizes] [--no-minimize] INPUT
#   (make triage INPUT=... [DRIVER=...])
#
# INPUT is an op trace (HAKTRACE header: a crash recorded with HAKMEM_TRACE)
# or a fuzz input (a libFuzzer crash-* file). triage:
#   1. replays it: a trace with $REPLAY (build/repro/release/replay), then
#      converts it with trace2fuzz (--max-ops $TRIAGE_MAX_OPS, default 400);
#      the fuzz input runs once on the ASan+UBSan libFuzzer driver;
#   2. classifies the failure into a signature "<kind>@<top hakmem frame>":
#      kind = asan:<report kind>, tsan:<kind>, ubsan:<message>,
#      hakmem:<named error> (double-free, invalid-free, heap-corruption, ...),
#      heap-check (hak_heap_check violations), model:<fuzz shadow-model check>,
#      watchdog-hang, timeout, signal; frame = the first alloc/src function in
#      the report's stacks (error.c, the reporter, skipped);
#   3. deduplicates: a signature already in the index is reported as a
#      duplicate of the input filed for it (exit 0, nothing filed);
#   4. minimizes the fuzz input: first whole ops are removed while the fast
#      standalone driver ($FUZZ_SA_DIR/<driver>) still fails with the same
#      message (repro/opreduce.py; hakmem errors, heap-check and model
#      failures; fuzz_mt and fuzz_ops, whose op encoding it knows), then
#      libFuzzer -minimize_crash=1 -runs=$TRIAGE_RUNS -max_total_time=$TRIAGE_TIME
#      per step; a result is kept only if it
#      still fails with the same signature;
#   5. files it as $REGRESSIONS_DIR/<driver>/<signature slug>-<sha1[:8]> and
#      appends "signature<TAB>file<TAB>date<TAB>fix commit<TAB>source" to
#      $REGRESSIONS_DIR/INDEX.tsv (fix commit "-" until known: edit the line
#      when the fix lands).
# A trace whose replay fails while the fuzz input made from it does not is
# filed as the trace itself, under $REGRESSIONS_DIR/traces/.
# Exit status: 0 filed or duplicate; 1 the input does not fail (not
# reproduced); 2 usage or missing tools.
# Environment: REPLAY, TRACE2FUZZ, FUZZ_LF_DIR (libFuzzer drivers,
# build/fuzz/libfuzzer), FUZZ_SA_DIR (standalone drivers, build/fuzz/release), REGRESSIONS_DIR (corpus/regressions), TRIAGE_RUNS
# (500), TRIAGE_TIME (10), TRIAGE_MAX_OPS (400), TRIAGE_WORK (temp dir).
# INPUT, and the paths of the environment when set, are relative to the
# caller's directory; the defaults are the repository's (until 2026-11-28
# INPUT was taken from the repository root: "no input file" from elsewhere).
set -uo pipefail
. "$(dirname "$0")/lib-caller.sh" # caller_path
for v in REPLAY TRACE2FUZZ FUZZ_LF_DIR FUZZ_SA_DIR REGRESSIONS_DIR TRIAGE_WORK; do
  [ -n "${!v:-}" ] && printf -v "$v" '%s' "$(caller_path "${!v}")"
done
cd "$(dirname "$0")/.." || exit 2
REPLAY=${REPLAY:-build/repro/release/replay}
TRACE2FUZZ=${TRACE2FUZZ:-build/repro/trace2fuzz}
FUZZ_LF_DIR=${FUZZ_LF_DIR:-build/fuzz/libfuzzer}
FUZZ_SA_DIR=${FUZZ_SA_DIR:-build/fuzz/release}
REGRESSIONS_DIR=${REGRESSIONS_DIR:-corpus/regressions}
INDEX=$REGRESSIONS_DIR/INDEX.tsv
TRIAGE_RUNS=${TRIAGE_RUNS:-500}
TRIAGE_TIME=${TRIAGE_TIME:-10}
TRIAGE_MAX_OPS=${TRIAGE_MAX_OPS:-400}
driver= minimize=1 input=
while [ $# -gt 0 ]; do
  case $1 in
    --driver) driver=$2; shift ;;
    --no-minimize) minimize=0 ;;
    -*) echo "usage: scripts/triage.sh [--driver fuzz_mt|fuzz_ops|fuzz_sizes] [--no-minimize] INPUT" >&2; exit 2 ;;
    *) input=$1 ;;
  esac
  shift
done
[ -n "$input" ] && input=$(caller_path "$input")
[ -n "$input" ] && [ -f "$input" ] || { echo "triage: no input file (usage: scripts/triage.sh INPUT)" >&2; exit 2; }
driver=${driver:-fuzz_mt}
case $driver in
  fuzz_mt | fuzz_ops) ops=1 ;; # trace2fuzz and opreduce know their op encoding
  fuzz_sizes) ops=0 ;;         # records of edge requests: libFuzzer's minimizer only
  *) echo "triage: unknown driver '$driver' (fuzz_mt, fuzz_ops or fuzz_sizes)" >&2; exit 2 ;;
esac
work=${TRIAGE_WORK:-$(mktemp -d /tmp/hakmem-triage.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
say() { echo "triage: $*"; }

# classify LOG...: prints "<kind>@<frame>" for the first failure in the logs
classify() {
  local kind="" frame l
  if grep -q "WATCHDOG" "$@"; then
    kind=watchdog-hang
  elif l=$(grep -h -m1 -oE "ERROR: AddressSanitizer: [A-Za-z-]+" "$@"); then
    kind="asan:${l##*: }"
  elif l=$(grep -h -m1 -oE "WARNING: ThreadSanitizer: [a-z -]+[a-z]" "$@"); then
    kind="tsan:$(printf '%s' "${l##*: }" | tr ' ' '-')"
  elif l=$(grep -h -m1 -oE "runtime error: [a-z ]+" "$@"); then
    kind="ubsan:$(printf '%s' "${l#runtime error: }" | sed 's/ *$//' | tr ' ' '-')"
  elif l=$(grep -h -m1 -oE "^hakmem: [a-z_ ]+( of| at|:)" "$@"); then
    kind="hakmem:$(printf '%s' "$l" | sed -E 's/^hakmem: //; s/( of| at|:)$//; s/ /-/g')"
  elif grep -q "hak_heap_check() found" "$@"; then
    kind=heap-check
  elif l=$(grep -h -m1 -oE "fuzz: check failed at op [0-9]+: [^0-9]*" "$@"); then
    kind="model:$(printf '%s' "${l#*: }" | sed -E 's/^check failed at op : //; s/[^a-z]+/-/g; s/-+$//' | cut -c1-40)"
  elif grep -q "ALARM: working on the last Unit" "$@"; then
    kind=timeout
  elif grep -qE "deadly signal|CRASH \(|Segmentation fault|Aborted" "$@"; then
    kind=signal
  fi
  [ -n "$kind" ] || return 1
  frame=$(grep -h -oE "#[0-9]+ 0x[0-9a-f]+ in [A-Za-z_0-9]+ [^ ]*alloc/src/[a-z_]+\.c" "$@" |
    grep -v "/error\.c" | head -n1 | sed -E 's/.* in ([A-Za-z_0-9]+) .*/\1/')
  echo "$kind@${frame:-?}"
}

is_trace() { [ "$(head -c 8 "$1" 2>/dev/null)" = HAKTRACE ]; }

source_desc=${input#"$PWD"/} # the index names a file of the repository as before
fz=$work/input
if is_trace "$input"; then
  [ "$ops" = 1 ] || { echo "triage: a trace converts to a fuzz_mt or fuzz_ops input, not $driver" >&2; exit 2; }
  [ -x "$REPLAY" ] && [ -x "$TRACE2FUZZ" ] || { echo "triage: build the repro tools first (make repro-bins)" >&2; exit 2; }
  say "replaying trace $input with $REPLAY"
  { "$REPLAY" -q "$input"; } >"$work/replay.log" 2>&1
  rrc=$?
  grep -E "^replay: (CRASH|MISMATCH|NOT REPRODUCED)" "$work/replay.log" | sed 's/^/  /'
  nthreads=$(awk '/ threads/ {print}' "$work/replay.log" | head -n1)
  "$TRACE2FUZZ" "$input" -o "$fz" --driver "$driver" --max-ops "$TRIAGE_MAX_OPS" 2>"$work/t2f.log" ||
    { cat "$work/t2f.log"; exit 2; }
  sed 's/^/  /' "$work/t2f.log"
  : "$rrc" "$nthreads"
else
  cp "$input" "$fz"
fi
bin=$FUZZ_LF_DIR/$driver # made absolute: it runs in $work (an absolute FUZZ_LF_DIR was taken
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac # as "$OLDPWD//abs/..." until 2026-11-28)
[ -x "$bin" ] || { echo "triage: $bin missing (make fuzz-bins)" >&2; exit 2; }
run_once() { # run_once FILE LOG
  (cd "$work" && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} timeout 120 "$bin" -runs=1 -timeout=60 "$1") >"$2" 2>&1
}
case $fz in /*) ;; *) fz=$PWD/$fz ;; esac
run_once "$fz" "$work/run.log"
if [ $? -eq 0 ]; then
  if is_trace "$input" && rsig=$(classify "$work/replay.log"); then
    # the replay fails but the fuzz input does not (the failure needs more
    # than the interpreter's 64 slots / 8 threads / 4096 ops, or a sized
    # free's recorded size, which trace2fuzz cannot carry): file the trace
    sig=$rsig
    say "signature: $sig (from the replay; the $driver input converted from it passes)"
    mkdir -p "$REGRESSIONS_DIR/traces"
    touch "$INDEX"
    if dup=$(awk -F'\t' -v s="$sig" '$1 == s { print $2; exit }' "$INDEX") && [ -n "$dup" ]; then
      say "DUPLICATE of $dup (signature already in $INDEX); nothing filed"
      exit 0
    fi
    slug=$(printf '%s' "$sig" | tr -c 'A-Za-z0-9_.-' '-' | sed -E 's/-+/-/g; s/-$//' | cut -c1-60)
    dest=$REGRESSIONS_DIR/traces/$slug-$(sha1sum "$input" | cut -c1-8).trace
    cp "$input" "$dest"
    printf '%s\t%s\t%s\t%s\t%s\n' "$sig" "traces/$(basename "$dest")" "$(date -u +%Y-%m-%d)" "-" "$source_desc" >>"$INDEX"
    say "FILED $dest (a trace: replay it with build/repro/<config>/replay)"
    exit 0
  fi
  say "NOT REPRODUCED: $driver runs $input without a failure (see $work)"
  exit 1
fi
sig=$(classify "$work/run.log") || sig="unknown@?"
say "signature: $sig"
mkdir -p "$REGRESSIONS_DIR/$driver"
touch "$INDEX"
if dup=$(awk -F'\t' -v s="$sig" '$1 == s { print $2; exit }' "$INDEX") && [ -n "$dup" ]; then
  say "DUPLICATE of $dup (signature already in $INDEX); nothing filed"
  exit 0
fi
final=$fz
# op-level pre-pass (whole ops removed, fast standalone driver) when the
# failure has a plain-text key the standalone build also prints
sa=$FUZZ_SA_DIR/$driver
key=
case $sig in
  hakmem:*) key="hakmem: $(printf '%s' "${sig%%@*}" | sed 's/^hakmem://; s/-/ /g')" ;;
  heap-check*) key="hak_heap_check() found" ;;
  model:*) key="fuzz: check failed" ;;
esac
if [ "$minimize" = 1 ] && [ "$ops" = 1 ] && [ -n "$key" ] && [ -x "$sa" ] && [ -x "$TRACE2FUZZ" ] &&
  command -v python3 >/dev/null; then
  say "op-level reduction with $sa (key '$key')"
  if python3 repro/opreduce.py --spans "$TRACE2FUZZ" --run "$sa" --key "$key" --driver "$driver" \
    "$fz" "$work/reduced" 2>"$work/opreduce.log"; then
    sed 's/^/  /' "$work/opreduce.log"
    run_once "$work/reduced" "$work/reduced-run.log"
    if [ "$(classify "$work/reduced-run.log")" = "$sig" ]; then
      fz=$work/reduced
      final=$fz
    fi
  fi
fi
if [ "$minimize" = 1 ]; then
  say "minimizing with $bin -minimize_crash=1 -runs=$TRIAGE_RUNS -max_total_time=$TRIAGE_TIME"
  (cd "$work" && timeout 600 "$bin" -minimize_crash=1 -runs="$TRIAGE_RUNS" \
    -max_total_time="$TRIAGE_TIME" -exact_artifact_path="$work/min" "$fz") >"$work/min.log" 2>&1
  if [ -s "$work/min" ]; then
    run_once "$work/min" "$work/min-run.log"
    msig=$(classify "$work/min-run.log") || msig="none"
    if [ "$msig" = "$sig" ]; then
      final=$work/min
      say "minimized: $(wc -c <"$fz") -> $(wc -c <"$work/min") bytes"
    else
      say "the minimized input fails differently ($msig); keeping the unminimized one"
    fi
  else
    say "minimization produced nothing; keeping the unminimized input"
  fi
fi
slug=$(printf '%s' "$sig" | tr -c 'A-Za-z0-9_.-' '-' | sed -E 's/-+/-/g; s/-$//' | cut -c1-60)
sum=$(sha1sum "$final" | cut -c1-8)
dest=$REGRESSIONS_DIR/$driver/$slug-$sum
cp "$final" "$dest"
printf '%s\t%s\t%s\t%s\t%s\n' "$sig" "$driver/$(basename "$dest")" "$(date -u +%Y-%m-%d)" "-" "$source_desc" >>"$INDEX"
say "FILED $dest"
say "index: $INDEX (signature, file, date, fix commit '-' until known, source)"
if [ "$ops" = 1 ] && [ -x "$TRACE2FUZZ" ]; then
  say "ops: $("$TRACE2FUZZ" --driver "$driver" --dump "$dest" | tail -n1)"
fi
exit 0
