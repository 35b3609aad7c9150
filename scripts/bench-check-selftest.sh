#!/usr/bin/env bash
# scripts/bench-check-selftest.sh: make bench-check against planted results
# and baselines (no benchmark runs, no build: about a second). Part of make
# check (scripts/check.d/40-bench.sh, bench/check-planted) and of make
# mutants (its bench/selftest stage). Each case is a results file that
# scripts/bench-report.py makes from a planted samples.tsv, and a baseline of
# ratio 1.0 for workload w/a (and w/b where said) against glibc:
#   clean        hakmem and glibc alike in w/a and w/b: PASS; w/b, absent from
#                the baseline, is listed as NEW (not compared)
#   zero         hakmem reports ops/s=0 in every run of w/a: FAIL (it was a
#                SKIP, "glibc not in the results", and the check passed)
#   unlisted     hakmem fails every run of w/b, which the baseline lacks: FAIL
#                (it was not looked at, and the check passed)
#   bad-base     a baseline ratio of NaN, 0, -1, Infinity: FAIL (every ratio
#                is above a floor of NaN, 0 or below)
#   peer-failed  every glibc run of w/b fails: SKIP, saying so, and PASS
#   nothing      hakmem's runs of w/a print ops/s 0, -1, -1.0, nan, -nan,
#                inf and nothing, each with exit status 0: none is taken for a
#                result (bench-report.py asks no_result), FAIL
#   no_result    the one test of a run's printed ops/s (scripts/lib-bench.sh;
#                bench.sh, bench-random-mixed.sh and bench-report.py use it):
#                empty, 0, 0.0, 0e+00, -1, -1.0, nan, -nan and inf are no
#                result; 0.000001, 7 and 1e+06 are
# Exit status 0 when every case behaves; prints the first that does not.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PY=$(command -v python3)
bad=0

# results <name> <sample>...: $T/<name>/results.json from samples
# "workload allocator ops_per_s exit" (the other columns are made up; an
# ops_per_s of _ is an empty one)
results() {
  local d=$T/$1 s w a o e
  shift
  mkdir -p "$d"
  printf 'date\t2026-11-28T00:00:00Z\nquick\t1\nreps\t2\nscale\t1\npage_touch_us\t1.2\npage_moved_us\t0.01\nallocator\thakmem\tlibhakmem.so\nallocator\tglibc\t(none: the C library)\nworkload\tw/a\tcmd\nworkload\tw/b\tcmd\n' >"$d/meta.tsv"
  printf 'workload\tallocator\trep\tops_per_s\twall_s\tuser_s\tsys_s\tmaxrss_kb\texit\treported\n' >"$d/samples.tsv"
  for s in "$@"; do
    read -r w a o e <<<"$s"
    [ "$o" != _ ] || o=
    printf '%s\t%s\t1\t%s\t1.0\t0.9\t0.1\t1000\t%s\t-\n' "$w" "$a" "$o" "$e" >>"$d/samples.tsv"
  done
  "$PY" scripts/bench-report.py --meta "$d/meta.tsv" --samples "$d/samples.tsv" --out "$d" >/dev/null ||
    { echo "bench-report failed on $d"; exit 1; }
}

# baseline <file> <ratio of w/a> [<ratio of w/b>]: a format-1 baseline (JSON numbers)
baseline() {
  local wb=${3:+, \"w/b\": {\"glibc\": $3\}}
  printf '{"format": "hakmem-bench-baseline/1", "source": {"quick": "1", "scale": "1"}, "ratios": {"w/a": {"glibc": %s}%s}, "ratios_best": {"w/a": {"glibc": %s}%s}}\n' \
    "$2" "$wb" "$2" "$wb" >"$1"
}

# expect <case> <exit status> <pattern> <results> <baseline>
expect() {
  local out rc=0
  out=$("$PY" scripts/bench-check.py check --results "$T/$4/results.json" --baseline "$5" 2>&1) || rc=$?
  if [ "$rc" != "$2" ] || ! grep -qE -- "$3" <<<"$out"; then
    echo "FAIL $1: exit $rc (expected $2), or no line matching '$3':"
    awk '{ print "  " $0 }' <<<"$out"
    bad=1
    return
  fi
  echo "ok   $1"
}

OKA=("w/a hakmem 100 0" "w/a hakmem 102 0" "w/a glibc 100 0" "w/a glibc 101 0")
OKB=("w/b hakmem 200 0" "w/b glibc 200 0")
baseline "$T/base-a.json" 1.0
baseline "$T/base-ab.json" 1.0 1.0

results clean "${OKA[@]}" "${OKB[@]}"
expect clean 0 '^  NEW  w/b: +not in the baseline' clean "$T/base-a.json"
expect clean-both 0 '^bench-check: 2 ok, 0 failed' clean "$T/base-ab.json"

results zero "w/a hakmem 0 0" "w/a hakmem 0.0 0" "w/a glibc 100 0" "w/a glibc 101 0" "${OKB[@]}"
expect zero 1 '^  FAIL w/a: hakmem/glibc +hakmem FAILED every run' zero "$T/base-ab.json"
# (the check alone, on results whose report counted the zero runs: older
# results files, or another report)
"$PY" - "$T/zero/results.json" "$T/zero/old.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["summary"]["w/a"]["hakmem"] = {"runs": 2, "failed": 0, "ops_median": 0.0, "ops_min": 0.0, "ops_max": 0.0}
d["ratios"]["w/a"] = {}
json.dump(d, open(sys.argv[2], "w"))
PY
mkdir -p "$T/zero-old" && cp "$T/zero/old.json" "$T/zero-old/results.json"
expect zero-summary 1 "^  FAIL w/a: hakmem/glibc +no ratio: hakmem's throughput 0.0" zero-old "$T/base-ab.json"

# every one of these is no result: one taken for a result would give w/a a
# hakmem median, and the FAIL would name a ratio instead
results nothing "w/a hakmem 0 0" "w/a hakmem -1 0" "w/a hakmem -1.0 0" "w/a hakmem nan 0" \
  "w/a hakmem -nan 0" "w/a hakmem inf 0" "w/a hakmem _ 0" "w/a glibc 100 0" "w/a glibc 101 0" "${OKB[@]}"
expect nothing 1 '^  FAIL w/a: hakmem/glibc +hakmem FAILED every run' nothing "$T/base-ab.json"

results unlisted "${OKA[@]}" "w/b hakmem - 139" "w/b hakmem - 0" "w/b glibc 200 0"
expect unlisted 1 '^  FAIL w/b: +hakmem failed 2 of 2 runs \(not in the baseline\)' unlisted "$T/base-a.json"

for v in NaN 0 -1 Infinity; do
  baseline "$T/base-$v.json" "$v" 1.0
  expect "bad-base $v" 1 "^  FAIL w/a: hakmem/glibc +baseline ratio [-a-z0-9.]+ is not a positive number" clean "$T/base-$v.json"
done

results peer-failed "${OKA[@]}" "w/b hakmem 200 0" "w/b glibc - 1"
expect peer-failed 0 '^  SKIP w/b: hakmem/glibc +every glibc run failed' peer-failed "$T/base-ab.json"

# shellcheck source=lib-bench.sh
. scripts/lib-bench.sh
if ! declare -F no_result >/dev/null; then
  echo "FAIL no_result: no no_result() in scripts/lib-bench.sh"
  bad=1
else
  for v in "" 0 0.0 0e+00 -1 -1.0 nan -nan inf; do
    no_result "$v" || { echo "FAIL no_result: ops/s='$v' taken for a result"; bad=1; }
  done
  for v in 0.000001 7 1e+06; do
    no_result "$v" && { echo "FAIL no_result: ops/s='$v' taken for no result"; bad=1; }
  done
  [ $bad = 1 ] || echo "ok   no_result"
fi
exit $bad
