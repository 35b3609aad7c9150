#!/usr/bin/env bash
# scripts/nightly.sh (make nightly [BUDGET=minutes]): the long verification
# campaign, within BUDGET minutes (default 60), split across its checks:
#
#   fuzz/<driver>     make fuzz FUZZER=<driver> FUZZ_TIME=<share> JOBS=<workers>
#                     (libFuzzer -fork); every new crash is a finding, listed with
#                     its reproduce commands and passed to scripts/triage.sh
#                     (which files it under corpus/regressions/) when present
#   fuzz-release/<driver>  the same with FUZZ_BUILD=release: the libFuzzer build
#                     of the release allocator (code that runs only where
#                     HAK_DEBUG is off); a quarter of each driver's fuzzing share
#   fuzz-replay       make fuzz-replay: corpus + regressions, every build
#   valgrind-replay   the WHOLE corpus under valgrind memcheck (fuzz/replay.sh -m
#                     valgrind with no input limit)
#   tsan-stress       make tsan-stress (4 threads x 1024 chunks)
#   stress-matrix     make stress-matrix: larson threads x chunks x sizes, release
#                     and TSan; each failed cell is a finding
#   bench-check       a QUICK make bench into the report directory, then
#                     make bench-check STAT=best against bench/baseline.json
#   mutants           make mutants (scripts/mutants/run.py) with the rest of the
#                     budget; every mutant not killed is a finding
#   cross-check       make cross-check CROSS_SET=full: every C test built for
#                     aarch64, release and debug, under qemu-aarch64 (16 and 64
#                     KiB pages too); each failed test is a finding; SKIP
#                     without the cross toolchain or qemu-user
#
# A check whose make target or script is not in this tree is reported as
# "skipped: not available". Writes $NIGHTLY_OUT/report.md and report.json
# (each check: status, duration, findings with their reproduction commands)
# and exits 1 when any check failed or found something, 0 otherwise.
#
# Environment:
#   BUDGET              minutes in all (default 60; fractions allowed)
#   NIGHTLY_OUT         report directory (default build/nightly)
#   NIGHTLY_ONLY        run only these checks (names or prefixes: "fuzz valgrind-replay")
#   NIGHTLY_FUZZERS     drivers to fuzz (default: fuzz_ops fuzz_mt fuzz_sizes)
#   NIGHTLY_FUZZ_JOBS   libFuzzer -fork workers (default: nproc)
#   NIGHTLY_FUZZ_MERGE  1: merge new coverage into corpus/ (default 0)
#   NIGHTLY_MUTANTS_ARGS  more arguments for scripts/mutants/run.py (e.g. --jobs 2)
#   NIGHTLY_TRIAGE      0: do not triage new crashes (default 1)
#   NIGHTLY_TRIAGE_CMD  triage command (default scripts/triage.sh)
#   NIGHTLY_PLANT=fail|pass  test-only: adds a check "selftest/planted" that fails
#                       with a finding, or passes (scripts/check.d/50-nightly-selftest.sh)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
BUDGET=${BUDGET:-60}
OUT=${NIGHTLY_OUT:-build/nightly}
FUZZERS=${NIGHTLY_FUZZERS:-fuzz_ops fuzz_mt fuzz_sizes}
NCPU=$(nproc 2>/dev/null || echo 2)
FJOBS=${NIGHTLY_FUZZ_JOBS:-$NCPU}
TRIAGE_CMD=${NIGHTLY_TRIAGE_CMD:-scripts/triage.sh}
unset JOBS MAKEFLAGS MFLAGS # make fuzz's JOBS is set per call below

# available <make target>: the target exists in this tree. Not `make -n`'s
# status alone: a dry run still runs recursive makes, which fail in a tree
# with nothing built yet (make -n fuzz: "No rule to make target
# 'build/debug/libhakmem.a'"), and every fuzz check of a nightly on a fresh
# checkout (the GitHub nightly) was skipped as "not available".
available() {
  local out
  out=$(LC_ALL=C make -n "$1" 2>&1) && return 0
  ! grep -qF "No rule to make target '$1'" <<<"$out"
}
# scripts/nightly.sh --available <target>...: exit 0 when all exist (self-test)
if [ "${1:-}" = --available ]; then
  shift
  for t in "$@"; do available "$t" || { echo "not available: $t"; exit 1; }; done
  exit 0
fi

rm -rf "$OUT"
mkdir -p "$OUT/logs"
CHECKS=$OUT/checks.tsv FINDINGS=$OUT/findings.tsv
: >"$CHECKS"
: >"$FINDINGS"
# The fuzz builds come first and are not part of the budget.
FUZZ_BUILT=1
START=$(date +%s) T_BEGIN=$(date +%s)
TOTAL_S=$(awk -v b="$BUDGET" 'BEGIN { printf "%d", b * 60 }')
DEADLINE=$((START + TOTAL_S))

# ---- the plan: check name, share of the budget (weights), runner function
PLAN=()
# (each driver's 12: 9 for the ASan build, 3 for the release one, which runs
# 2-3 times as many inputs a second)
for d in $FUZZERS; do PLAN+=("fuzz/$d 9 run_fuzz $d asan"); done
for d in $FUZZERS; do PLAN+=("fuzz-release/$d 3 run_fuzz $d release"); done
PLAN+=("fuzz-replay 5 run_fuzz_replay")
PLAN+=("valgrind-replay 7 run_valgrind_replay")
PLAN+=("tsan-stress 3 run_tsan_stress")
PLAN+=("stress-matrix 12 run_stress_matrix")
PLAN+=("bench-check 7 run_bench_check")
PLAN+=("mutants 30 run_mutants")
PLAN+=("cross-check 5 run_cross_check")
case ${NIGHTLY_PLANT:-} in fail | pass) PLAN+=("selftest/planted 1 run_planted") ;; esac

selected() { # selected <name>: NIGHTLY_ONLY empty, or a word that is the name or a prefix of it
  [ -z "${NIGHTLY_ONLY:-}" ] && return 0
  local w
  for w in $NIGHTLY_ONLY; do case $1 in "$w" | "$w"/* | "$w"-*) return 0 ;; esac; done
  [ "$1" = selftest/planted ]
}

WSUM=0 NEED_FUZZ=0
for p in "${PLAN[@]}"; do
  set -- $p
  selected "$1" || continue
  WSUM=$((WSUM + $2))
  case $1 in fuzz/* | fuzz-release/* | valgrind-replay) NEED_FUZZ=1 ;; esac
done

clean() { tr '\t\n' '  ' <<<"$*" | sed 's/ *$//'; }
# record <check> <PASS|FAIL|SKIP|STARVED> <seconds> <detail> [log]
# (STARVED: selected, but the budget was spent before it; report.py's STATUSES)
record() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(clean "$4")" "${5:-}" >>"$CHECKS"
  printf '%-7s %-22s %6ss  %s\n' "$2" "$1" "$3" "$4"
}
# finding <check> <what> <reproduce commands, ' ;; '-separated> [triage]
finding() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$(clean "$2")" "$(clean "$3")" "$(clean "${4:-}")" >>"$FINDINGS"
  echo "      FINDING: $2"
}
left_s() { echo $((DEADLINE - $(date +%s))); }

# run_logged <log> <timeout s> <command...>: runs with output in the log; sets RC
run_logged() {
  local log=$1 t=$2
  shift 2
  RC=0
  { echo "# $*"; echo "# started $(date -u +%FT%TZ), timeout ${t}s"; } >"$log"
  timeout -k 10 "$t" "$@" </dev/null >>"$log" 2>&1 || RC=$?
  echo "# exit status $RC" >>"$log"
}

triage() { # triage <crash file> <driver> [libFuzzer build dir]: prints what triage said (one line)
  local lf=()
  # (a release-only bug reproduces only on the build that found it)
  [ -n "${3:-}" ] && lf=(env FUZZ_LF_DIR="$3")
  if [ "${NIGHTLY_TRIAGE:-1}" = 0 ]; then
    echo "triage disabled (NIGHTLY_TRIAGE=0)"
  elif [ ! -x "$TRIAGE_CMD" ] && [ ! -f "$TRIAGE_CMD" ]; then
    echo "skipped: $TRIAGE_CMD not available"
  else
    local tl=$OUT/logs/triage-$(basename "$1").log rc=0
    # the driver that found it: triage's default (fuzz_mt) would run another
    # driver's input and call it not reproduced
    timeout -k 10 600 "${lf[@]}" bash "$TRIAGE_CMD" "$1" --driver "$2" </dev/null >"$tl" 2>&1 || rc=$?
    echo "$TRIAGE_CMD exit $rc: $(grep -v '^\s*$' "$tl" | tail -n 1 | cut -c1-200) (log $tl)"
  fi
}

# ---- the checks. Each sets STATUS (PASS/FAIL/SKIP) and DETAIL, may call finding.
run_fuzz() { # run_fuzz <driver> <asan|release> <share s>
  local d=$1 fb=$2 share=$3
  local check=fuzz/$d lfdir=
  [ "$fb" = release ] && check=fuzz-release/$d lfdir=build/fuzz/libfuzzer-release
  local log=$OUT/logs/${check//\//-}.log # (own local: in the one above, $d is still the global loop's)
  if ! available fuzz || [ ! -f "fuzz/$d.c" ]; then STATUS=SKIP DETAIL="skipped: not available"; return; fi
  if [ "$FUZZ_BUILT" != 0 ]; then STATUS=FAIL DETAIL="fuzz-bins does not build (log $OUT/logs/fuzz-build.log)"; return; fi
  local ft=$((share > 5 ? share : 5))
  run_logged "$log" $((ft + 600)) make fuzz FUZZER="$d" FUZZ_BUILD="$fb" FUZZ_TIME="$ft" JOBS="$FJOBS" \
    FUZZ_MERGE="${NIGHTLY_FUZZ_MERGE:-0}"
  local n=0 file="" rep="" extra=""
  [ -n "${FUZZ_ABORT_AT:-}" ] && extra="env FUZZ_ABORT_AT=$FUZZ_ABORT_AT "
  while IFS= read -r line; do
    case $line in
      "FINDING ("*)
        [ -n "$file" ] && { finding "$check" "crash input $file" "$rep" "$(triage "$file" "$d" "$lfdir")"; n=$((n + 1)); }
        file=${line#*: } rep="" ;;
      "  reproduce"*)
        local cmd=${line#*: }
        cmd=${cmd#"${cmd%%[! ]*}"}
        rep="${rep:+$rep ;; }$extra$cmd" ;;
    esac
  done <"$log"
  [ -n "$file" ] && { finding "$check" "crash input $file" "$rep" "$(triage "$file" "$d" "$lfdir")"; n=$((n + 1)); }
  local stats
  stats=$(grep -E '^ *#[0-9]+' "$log" | tail -n 1 | sed 's/^ *//' | cut -c1-120)
  if [ $RC = 0 ] && [ $n = 0 ]; then
    STATUS=PASS DETAIL="${ft}s, $FJOBS job(s), no finding; $stats"
  elif [ $n -gt 0 ]; then
    STATUS=FAIL DETAIL="$n crash input(s) in build/fuzz/crashes/$d/"
  else
    STATUS=FAIL DETAIL="make fuzz exited $RC without an artifact (log $log)"
    finding "$check" "libFuzzer failed without an artifact (exit $RC)" "make fuzz FUZZER=$d FUZZ_BUILD=$fb FUZZ_TIME=$ft"
  fi
}

run_fuzz_replay() {
  local log=$OUT/logs/fuzz-replay.log
  if ! available fuzz-replay; then STATUS=SKIP DETAIL="skipped: not available"; return; fi
  run_logged "$log" $(($1 + 1800)) make fuzz-replay
  if [ $RC = 0 ]; then STATUS=PASS DETAIL="every corpus and regression input, every build"; return; fi
  STATUS=FAIL DETAIL="exit $RC (log $log)"
  local l
  while IFS= read -r l; do
    finding fuzz-replay "$l" "fuzz/replay.sh $(sed -n 's/^FAIL: \(fuzz_[a-z]*\).*/\1/p' <<<"$l")"
  done < <(grep '^FAIL: ' "$log" | head -n 20)
  grep -q '^FAIL: ' "$log" || finding fuzz-replay "fuzz-replay failed (exit $RC)" "make fuzz-replay"
}

run_valgrind_replay() {
  local log=$OUT/logs/valgrind-replay.log
  if [ ! -x fuzz/replay.sh ] || ! command -v valgrind >/dev/null; then
    STATUS=SKIP DETAIL="skipped: not available (fuzz/replay.sh or valgrind missing)"; return
  fi
  if [ "$FUZZ_BUILT" != 0 ]; then STATUS=FAIL DETAIL="fuzz-bins does not build (log $OUT/logs/fuzz-build.log)"; return; fi
  # (replay.sh gives valgrind 300 s per driver; the whole corpus may need more: FUZZ_VG_MAX only bounds the count)
  run_logged "$log" $(($1 + 900)) env FUZZ_VG_MAX=1000000 fuzz/replay.sh -m valgrind $FUZZERS
  if [ $RC = 0 ]; then STATUS=PASS DETAIL="whole corpus under memcheck"; return; fi
  STATUS=FAIL DETAIL="exit $RC (log $log)"
  local l
  while IFS= read -r l; do
    local d
    d=$(sed -n 's/^FAIL: \(fuzz_[a-z]*\).*/\1/p' <<<"$l")
    finding valgrind-replay "$l" "valgrind -q --error-exitcode=99 build/fuzz/valgrind/$d corpus/$d/* corpus/regressions/$d/*"
  done < <(grep '^FAIL: ' "$log" | head -n 20)
}

# stress logs: "FAIL  <cfg>  stress/<prog>(<variant>)[/<cell>]  <s>s" then "caught by: ..."
stress_findings() { # stress_findings <check> <log>
  local l cfg name caught
  while IFS= read -r l; do
    case $l in
      FAIL* | HANG*)
        read -r _ cfg name _ <<<"$l"
        caught=$(grep -A 60 -F "$l" "$2" | grep -m1 'caught by:' | sed 's/.*caught by: //')
        local prog=${name#stress/} cell
        prog=${prog%%(*}
        cell=${name##*/}
        local rep="THREADS=4 CHUNKS=1024 STRESS_PROGS=$prog scripts/stress.sh run $cfg"
        if [[ $cell =~ ^t([0-9]+)-c([0-9]+)-(tiny|mid|large)$ ]]; then
          local lo hi
          case ${BASH_REMATCH[3]} in tiny) lo=16 hi=64 ;; mid) lo=64 hi=1024 ;; large) lo=1024 hi=16384 ;; esac
          local pre=""
          [ "$cfg" = tsan ] && pre="setarch \$(uname -m) -R env TSAN_OPTIONS='halt_on_error=1 exitcode=66' "
          rep="make CONFIG=$cfg stress-bins && ${pre}build/$cfg/stress/larson 1 16 1024 ${BASH_REMATCH[2]} 10000 42 ${BASH_REMATCH[1]} --min=$lo --max=$hi"
        fi
        finding "$1" "$cfg $name: ${caught:-failed}" "$rep" ;;
    esac
  done <"$2"
}

run_tsan_stress() {
  local log=$OUT/logs/tsan-stress.log d
  if ! available tsan-stress; then STATUS=SKIP DETAIL="skipped: not available"; return; fi
  d=$(awk -v s="$1" 'BEGIN { d = (s - 30) / 3; if (d < 1) d = 1; if (d > 60) d = 60; printf "%d", d }')
  run_logged "$log" $(($1 + 900)) make tsan-stress THREADS=4 CHUNKS=1024 DURATION="$d"
  stress_findings tsan-stress "$log"
  if [ $RC = 0 ]; then STATUS=PASS DETAIL="4 threads x 1024 chunks, ${d}s per program"
  else STATUS=FAIL DETAIL="exit $RC (log $log)"; fi
}

run_stress_matrix() {
  local log=$OUT/logs/stress-matrix.log cell
  if ! available stress-matrix; then STATUS=SKIP DETAIL="skipped: not available"; return; fi
  # 90 cells (45 release, 45 tsan), about 1.2 s of overhead each here
  cell=$(awk -v s="$1" 'BEGIN { c = s / 90 - 1.2; if (c < 0.1) c = 0.1; if (c > 10) c = 10; printf "%.1f", c }')
  run_logged "$log" $(($1 + 1800)) env DURATION_CELL="$cell" make stress-matrix
  stress_findings stress-matrix "$log"
  local fails
  fails=$(awk -F'\t' 'NR > 1 && $5 != "PASS"' build/stress/matrix.tsv 2>/dev/null | wc -l)
  cp build/stress/matrix.tsv "$OUT/stress-matrix.tsv" 2>/dev/null || true
  if [ $RC = 0 ]; then STATUS=PASS DETAIL="90 cells x ${cell}s, all PASS"
  else STATUS=FAIL DETAIL="$fails cell(s) failed, exit $RC (log $log, $OUT/stress-matrix.tsv)"; fi
}

run_bench_check() {
  local log=$OUT/logs/bench-check.log
  if ! available bench-check; then STATUS=SKIP DETAIL="skipped: not available"; return; fi
  mkdir -p "$OUT/bench"
  # Ratios of best runs: on 2 cores the xthread workloads' runs fall into a
  # fast and a slow mode, so a median ratio swings with how many runs of each
  # allocator drew which mode (queue-t1 against glibc: 11.3 and 5.7 in two
  # full runs 9 minutes apart; 7.79 and 7.80 by best run). The script, not
  # make bench-check: its exit status 2 means that no baseline in
  # bench/baseline.json is like these results (machine, run length, THP).
  run_logged "$log" $(($1 + 1800)) env BENCH_RESULTS="$OUT/bench/results.json" STAT=best TOL=0.15 \
    scripts/bench-check.sh
  if [ $RC = 2 ]; then
    STATUS=SKIP DETAIL="$(grep -m1 'not comparable' "$log" | sed 's/^bench-check: FAIL: //' | cut -c1-200)"
    return
  fi
  local l
  while IFS= read -r l; do
    finding bench-check "$l" "make bench QUICK=1 && make bench-check STAT=best"
  done < <(grep -E '^ *FAIL |^bench-check: FAIL' "$log" | sed 's/^ *//' | head -n 20)
  if [ $RC = 0 ]; then STATUS=PASS DETAIL="$(grep -m1 '^bench-check: ' "$log" | cut -c1-150)"
  else STATUS=FAIL DETAIL="exit $RC (log $log)"; fi
}

run_mutants() {
  local log=$OUT/logs/mutants.log share=$1
  if [ ! -f scripts/mutants/run.py ]; then STATUS=SKIP DETAIL="skipped: not available"; return; fi
  local per=$((share < 900 ? share : 900))
  per=$((per > 60 ? per : 60))
  # shellcheck disable=SC2086
  run_logged "$log" $((share + 900)) python3 scripts/mutants/run.py --out "$OUT/mutants" \
    --total-budget "$share" --budget "$per" ${NIGHTLY_MUTANTS_ARGS:-}
  if [ -f "$OUT/mutants/results.json" ]; then
    python3 - "$OUT/mutants/results.json" >"$OUT/mutants.findings" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("SCORE\t" + d["meta"]["score_text"])
for m in d["mutants"]:
    if m["status"] != "KILLED":
        print("%s\t%s\t%s" % (m["name"], m["status"], (m.get("reason") or "").replace("\t", " ")))
PY
    local score name st why
    score=$(sed -n 's/^SCORE\t//p' "$OUT/mutants.findings")
    while IFS=$'\t' read -r name st why; do
      [ "$name" = SCORE ] && continue
      finding mutants "mutant $name $st: $why" "make mutants MUTANTS=$name"
    done <"$OUT/mutants.findings"
    if [ $RC = 0 ]; then STATUS=PASS DETAIL="score $score"
    else STATUS=FAIL DETAIL="score $score (report $OUT/mutants/results.md)"; fi
  else
    STATUS=FAIL DETAIL="no results (exit $RC, log $log)"
    finding mutants "make mutants produced no results (exit $RC)" "make mutants"
  fi
}

run_cross_check() {
  local log=$OUT/logs/cross-check.log res=$OUT/cross-check.tsv
  if ! available cross-check; then STATUS=SKIP DETAIL="skipped: not available"; return; fi
  # (its own results file and logs: not make check's; NIGHTLY_CROSS_CMD: the
  # self-test's stand-in for make cross-check)
  # shellcheck disable=SC2086  # the default is two words
  run_logged "$log" $(($1 + 1800)) env CROSS_SET=full HAK_RESULTS="$res" \
    HAK_LOGDIR="$OUT/logs/cross" ${NIGHTLY_CROSS_CMD:-make cross-check}
  # (a SKIP for want of qemu-user still builds: its build may have failed)
  if [ "$RC" = 0 ] && grep -q '^cross-check: SKIP' "$log"; then
    STATUS=SKIP DETAIL="$(grep -m1 '^cross-check: SKIP' "$log" | sed 's/^cross-check: //' | cut -c1-200)"
    return
  fi
  local chk cfg r n=0 clog cmd bin
  while IFS=$'\t' read -r chk cfg r _; do
    case $r in FAIL | HANG) ;; *) continue ;; esac
    n=$((n + 1))
    # the check's own command line, from its log (lib-check.sh's run_check
    # writes it there): a test, a stress program with its arguments, either
    # with QEMU_PAGESIZE, the build's make. Until 2026-11-29 they were
    # rebuilt here: a stress program's was build/<config>/tests/stress/<prog>
    # with no arguments, the build's make tests, which needs a C++ cross
    # compiler that scripts/install-deps.sh does not install
    clog=$OUT/logs/cross/$cfg/$(printf '%s' "$chk" | tr '/ :' '___').log
    cmd=$(sed -n 's/^# command: //p' "$clog" 2>/dev/null | head -n 1)
    bin=$(tr ' ' '\n' <<<"$cmd" | grep -m1 "^build/$cfg/")
    if [ "$chk" = cross/build ]; then # (its make: C programs only, not make tests' C++ one)
      finding cross-check "$cfg: the aarch64 build failed (log $clog)" "${cmd:-make cross-check}"
    elif [ -z "$bin" ]; then
      finding cross-check "$cfg $chk: $r (log $clog)" "make cross-check"
    else
      finding cross-check "$cfg $chk: $r (log $clog)" \
        "make CONFIG=${cfg%-*} CROSS=aarch64-linux-gnu- $bin && $cmd"
    fi
  done < <(tail -n +2 "$res" 2>/dev/null)
  if [ $RC = 0 ]; then STATUS=PASS DETAIL="$(grep -m1 '^cross-check: ' "$log" | cut -c1-150)"
  else STATUS=FAIL DETAIL="$n check(s) failed, exit $RC (log $log)"; fi
}

run_planted() {
  if [ "$NIGHTLY_PLANT" = pass ]; then
    STATUS=PASS DETAIL="planted passing check (NIGHTLY_PLANT=pass)"
    return
  fi
  STATUS=FAIL DETAIL="planted failure (NIGHTLY_PLANT=fail)"
  finding selftest/planted "planted finding" "NIGHTLY_PLANT=fail scripts/nightly.sh"
}

# ---- run the plan
echo "==> nightly: budget ${BUDGET} min (${TOTAL_S}s), report in $OUT/"
if [ $NEED_FUZZ = 1 ] && available fuzz-bins; then
  echo "==> nightly: building the fuzzers (not counted in the budget)"
  t0=$(date +%s)
  run_logged "$OUT/logs/fuzz-build.log" 3600 make -s fuzz-bins
  FUZZ_BUILT=$RC
  [ $RC = 0 ] || record build/fuzz-bins FAIL $(($(date +%s) - t0)) "make fuzz-bins failed (log $OUT/logs/fuzz-build.log)" "$OUT/logs/fuzz-build.log"
  START=$((START + $(date +%s) - t0)) DEADLINE=$((DEADLINE + $(date +%s) - t0))
fi
for p in "${PLAN[@]}"; do
  set -- $p
  name=$1 w=$2 fn=$3
  shift 3
  if ! selected "$name"; then
    record "$name" SKIP 0 "not selected (NIGHTLY_ONLY)"
    continue
  fi
  left=$(left_s)
  share=$(awk -v t="$TOTAL_S" -v w="$w" -v s="$WSUM" 'BEGIN { printf "%d", t * w / s }')
  if [ "$left" -le 0 ] && [ "$name" != selftest/planted ]; then
    # a status of its own: report.py fails the nightly for it (not a SKIP)
    record "$name" STARVED 0 "not run: budget exhausted"
    continue
  fi
  [ "$share" -gt "$left" ] && share=$left
  [ "$name" = mutants ] && share=$left # the last real check gets whatever is left
  [ "$share" -ge 1 ] || share=1
  echo "==> nightly: $name (share ${share}s, $(left_s)s left)"
  t0=$(date +%s)
  nf0=$(wc -l <"$FINDINGS")
  STATUS=FAIL DETAIL=""
  "$fn" "$@" "$share"
  nf1=$(wc -l <"$FINDINGS")
  # a check that found something failed, whatever its exit status
  [ "$nf1" -gt "$nf0" ] && [ "$STATUS" = PASS ] && STATUS=FAIL
  record "$name" "$STATUS" $(($(date +%s) - t0)) "$DETAIL" "$(ls "$OUT"/logs/"${name//\//-}".log 2>/dev/null)"
done

python3 scripts/nightly/report.py "$OUT" "$BUDGET" "$(($(date +%s) - T_BEGIN))"
rc=$?
echo "==> nightly: $(sed -n 's/^\*\*Result: \([A-Z]*\)\*\*.*/\1/p' "$OUT/report.md") in $(($(date +%s) - T_BEGIN))s; $OUT/report.md, $OUT/report.json"
exit $rc
