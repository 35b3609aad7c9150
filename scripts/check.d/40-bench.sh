#!/usr/bin/env bash
# make check, part 40: a smoke test of the benchmark pipeline (make bench,
# make bench-check, make bench-fastpath) at tiny sizes, in build/bench-smoke/
# (build/bench/, the real results, is left alone). 33-50 s on 2 loaded cores.
#   bench/benchrun      the wait4 wrapper: peak RSS of a program that touches
#                       64 MiB, exit status passed on, timeout -> 124
#   bench/py-alloc-check  bench/py_alloc.py exits 2 when a round's total is not
#                       the one its records make (the C programs check their
#                       blocks' contents themselves)
#   bench/random-mixed-median  make bench-random-mixed's median of an even,
#                       odd and one-value count
#   bench/random-mixed-zero  make bench-random-mixed fails a run that
#                       measured no work (CYCLES=0: ops/s=0.0), and passes
#                       a real one
#   bench/no-result     make bench and make bench-random-mixed fail a run that
#                       exits 0 but prints ops/s 0, -1, nan, inf or none (a
#                       stand-in program in a copy of the scripts), and pass
#                       one of ops/s=1234.5
#   bench/smoke-run     scripts/bench.sh: 7 workloads x hakmem, glibc x 1 rep,
#                       SCALE=0.05
#   bench/outputs       results.json (every sample, medians, ratios),
#                       results.md (the three tables, a row per workload), the
#                       chart (when gnuplot is installed) are well-formed
#   bench/check-pass    bench-check passes against a baseline below the results
#   bench/check-thp-mismatch  and refuses the same baseline made with HAKMEM_THP=1
#   bench/check-page-costs  and refuses it made on a machine whose first
#                       page touch cost 10x this one's; check-page-costs-2x:
#                       and passes at 2x
#   bench/check-run-length  and refuses it made from a full run
#   bench/check-fail    ... fails, naming the workload, against one above them
#   bench/check-hakmem-failed  ... fails when one hakmem run of a workload
#                       failed, though its other runs' ratio is above the floor;
#                       --write-baseline refuses such results
#   bench/check-tol     a drop of ~9% passes at TOL=0.15 and fails at TOL=0.05
#                       (ratios of medians, and of best runs with STAT=best);
#                       STAT=best compares the best runs' ratios, not the medians'
#   bench/baseline-roundtrip  bench-check --write-baseline, then check passes
#                       against it at TOL=0
#   bench/baseline-per-machine  writing keeps another kind of machine's entry
#                       and replaces this kind's; check uses the closest
#                       comparable entry in either order; results without
#                       page costs are not written, nor a damaged file
#   bench/scaling-options  BENCH_THREADS sets the larson and xthread thread
#                       counts (bench-scaling); BENCH_NOBUILD runs without make
#                       and names a missing program; HAK_PEER_DIR is searched
#                       before the installed peer libraries
#   bench/check-planted  bench-check against planted results and baselines
#                       (scripts/bench-check-selftest.sh): hakmem's ops/s=0, a
#                       failed hakmem workload the baseline lacks, a baseline
#                       ratio of NaN/0/-1/inf fail; a peer that failed is a SKIP
#   bench/fastpath      make bench-fastpath prints an instruction count for hakmem
#                       (prefixed and preloaded) and glibc, at least, and splits
#                       each hakmem count into malloc, free and the calls, which
#                       add up to it
#   bench/fastpath-wrong-preload  and fails, naming it, when the program it
#                       measures runs on another allocator than the line names
#                       (the preloaded variant alone: VARIANTS=preload)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. scripts/lib-check.sh
export HAK_RESULTS=${HAK_RESULTS:-build/check-results.tsv}
OUT=build/bench-smoke
rm -rf "$OUT"
mkdir -p "$OUT"
export BENCH_RESULTS=$OUT/results.json
WL="random_mixed/64 random_mixed/16-1040 larson/t2-c256 xthread/queue-t1 realloc/grow large/64K-8M python/records"

if ! RUN_TIMEOUT=600 run_check release bench/build make -s -j"${JOBS:-2}" CONFIG=release lib bench-bins \
  build/release/stress/bench_random_mixed.libc build/release/stress/larson.libc \
  build/release/stress/remote_free.libc; then
  exit 0 # recorded as a failure; the rest cannot run
fi

run_check release bench/benchrun bash -c '
  set -u
  R=build/release/bench/benchrun
  $R -o '"$OUT"'/ru -- python3 -c "b = b\"x\" * (64 << 20)" || { echo "exit $?"; exit 1; }
  cat '"$OUT"'/ru
  kb=$(sed -n "s/.*maxrss_kb=\([0-9]*\).*/\1/p" '"$OUT"'/ru)
  [ "${kb:-0}" -gt 60000 ] || { echo "maxrss_kb=$kb, expected > 60000 (64 MiB touched)"; exit 1; }
  $R -- sh -c "exit 3" 2>/dev/null; rc=$?
  [ $rc -eq 3 ] || { echo "exit status $rc, expected 3"; exit 1; }
  $R -t 0.3 -- sleep 10 2>/dev/null; rc=$?
  [ $rc -eq 124 ] || { echo "timeout: exit status $rc, expected 124"; exit 1; }
  echo ok'

# bench/py_alloc.py checks its result: a round that returns another total than
# its records make (objects damaged by the allocator) exits 2, and the
# expected totals are what the rounds return
PYALLOC_PY=$(
  cat <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("py_alloc", "bench/py_alloc.py")
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
real = m.one_round
m.one_round = lambda r, items: real(r, items) + (r == 1)  # round 1 damaged
sys.argv = ["py_alloc.py", "3", "50"]
code = "no exit"
try:
    m.main()
except SystemExit as e:
    code = e.code
assert code == 2, "a damaged round: exit status %s, expected 2" % code
for items in (1, 2, 7, 100, 1234, 7918, 7920, 20000):
    for r in (0, 9, 10, 123):
        assert real(r, items) == m.expected_total(r, items), (r, items)
print("ok")
PY
)
run_check release bench/py-alloc-check python3 -c "$PYALLOC_PY"

# make bench-random-mixed's median: the middle value of an odd count, the
# mean of the middle two of an even one, all digits kept
run_check release bench/random-mixed-median bash -c '
  eval "$(grep "^median()" scripts/bench-random-mixed.sh)"
  m=$(printf " 37742564 21226627" | median); [ "$m" = 29484595.5 ] || { echo "even: $m, expected 29484595.5"; exit 1; }
  m=$(printf " 3 10 2" | median); [ "$m" = 3 ] || { echo "odd: $m, expected 3"; exit 1; }
  m=$(printf " 48167190" | median); [ "$m" = 48167190 ] || { echo "one: $m, expected 48167190"; exit 1; }
  echo ok'

# a run that measured nothing (ops/s=0.0) is a failed run, not a result
run_check release bench/random-mixed-zero bash -c '
  out=$(CYCLES=0 REPS=1 ALLOCATORS=glibc BENCH_OUT="$1" scripts/bench-random-mixed.sh 2>&1)
  rc=$?
  [ $rc -ne 0 ] || { printf "%s\n" "$out"; echo "exit 0 for a run of ops/s=0.0"; exit 1; }
  printf "%s\n" "$out" | grep -q "glibc (rep 1): FAILED .*ops/s=0.0" ||
    { printf "%s\n" "$out"; echo "the zero run was not named"; exit 1; }
  CYCLES=20000 REPS=1 ALLOCATORS="glibc hakmem" BENCH_OUT="$1" scripts/bench-random-mixed.sh >/dev/null 2>&1 ||
    { echo "a real run failed"; exit 1; }
  echo ok' _ "$OUT"

# bench-check against planted results and baselines (scripts/bench-check-selftest.sh)
run_check release bench/check-planted scripts/bench-check-selftest.sh

# a run that prints ops/s 0, a negative, NaN, inf or nothing, and exits 0, is
# a failed run of make bench and of make bench-random-mixed (no_result of
# scripts/lib-bench.sh, which bench-report.py asks too: bench/check-planted's
# "nothing"). Each script runs in a copy of the scripts whose programs are a
# stand-in that prints $FIG; a real figure passes.
cat >"$OUT/no-result.sh" <<'SH'
set -u
f=$1/fake
rm -rf "$f"
mkdir -p "$f/scripts" "$f/build/release/stress" "$f/build/release/bench"
cp scripts/bench.sh scripts/bench-random-mixed.sh scripts/lib-bench.sh scripts/bench-report.py "$f/scripts/" &&
  cp build/release/bench/benchrun "$f/build/release/bench/" || exit 1
: >"$f/build/release/libhakmem.so"       # benchrun's preload: ld.so ignores it, the stand-in sees it
printf '.PHONY: lib\nlib:\n\t@:\n' >"$f/Makefile" # bench-random-mixed.sh runs make
cat >"$f/prog" <<'PROG'
#!/bin/sh
case ${LD_PRELOAD:-} in *libhakmem.so) a="hakmem(preload)" ;; *) a=libc ;; esac
echo "bench_random_mixed: allocator=$a time=0.100000 s $FIG"
PROG
chmod +x "$f/prog"
for p in stress/bench_random_mixed stress/bench_random_mixed.libc stress/larson.libc stress/remote_free.libc; do
  cp "$f/prog" "$f/build/release/$p"
done
bad=0
# verdict <script> <rc> <out> <0|1> <FIG> <its FAILED line> <its exit
# status for a failed run>: the script took FIG for a result (0) or refused
# it, naming the run (1), as wanted
verdict() {
  if [ "$4" = 1 ]; then
    if [ "$2" -ne "$7" ] || ! grep -qF "$6" <<<"$3"; then
      echo "$1: '$5' taken for a result (exit $2)"; bad=1
    fi
  elif [ "$2" -ne 0 ]; then
    printf '%s\n' "$3"; echo "$1: '$5' not taken for a result (exit $2)"; bad=1
  fi
}
# one <FIG> <0: a result | 1: no result>
one() {
  local out
  out=$(FIG=$1 BENCH_NOBUILD=1 QUICK=1 REPS=1 ALLOCATORS="hakmem glibc" WORKLOADS=random_mixed/64 \
    BENCH_OUT="$f/out" "$f/scripts/bench.sh" 2>&1)
  verdict bench.sh $? "$out" "$2" "$1" "random_mixed/64 hakmem (rep 1): FAILED (noresult" 1
  out=$(FIG=$1 REPS=1 ALLOCATORS=glibc BENCH_OUT="$f/out" "$f/scripts/bench-random-mixed.sh" 2>&1)
  verdict bench-random-mixed.sh $? "$out" "$2" "$1" "glibc (rep 1): FAILED" 1
}
for v in ops/s=0 ops/s=0.0 ops/s=-1 ops/s=-1.0 ops/s=nan ops/s=-nan ops/s=inf ops/s= ""; do one "$v" 1; done
one "ops/s=1234.5" 0
[ $bad = 0 ] && echo ok
SH
run_check release bench/no-result bash "$OUT/no-result.sh" "$OUT"

run_check release bench/smoke-run env QUICK=1 REPS=1 SCALE=0.05 ALLOCATORS="hakmem glibc" \
  WORKLOADS="$WL" BENCH_OUT="$OUT" scripts/bench.sh

# (run_check gives the command /dev/null as stdin: the program goes in -c)
OUTPUTS_PY=$(
  cat <<'PY'
import json, os, shutil, sys
out, wl = sys.argv[1], sys.argv[2].split()
d = json.load(open(os.path.join(out, "results.json")))
assert d["format"] == "hakmem-bench/1", d.get("format")
names = [w["name"] for w in d["workloads"]]
assert names == wl, (names, wl)
assert len(d["samples"]) == len(wl) * 2, len(d["samples"])
for s in d["samples"]:
    assert s["ok"] and s["ops_per_s"] > 0 and s["maxrss_kb"] > 0 and s["wall_s"] > 0, s
    assert s["allocator"] in ("hakmem", "glibc"), s
for w in wl:
    for a in ("hakmem", "glibc"):
        c = d["summary"][w][a]
        assert c["ops_min"] <= c["ops_median"] <= c["ops_max"], (w, a, c)
    r = d["ratios"][w]["glibc"]
    want = d["summary"][w]["hakmem"]["ops_median"] / d["summary"][w]["glibc"]["ops_median"]
    assert abs(r["ops"] - want) < 1e-9 and r["rss"] > 0, (w, r)
md = open(os.path.join(out, "results.md")).read().splitlines()
hdr = "| workload | hakmem | glibc | hakmem/glibc |"
assert md.count(hdr) == 2, "table header missing (ops/s and RSS tables)"
for w in wl:
    rows = [l for l in md if l.startswith("| %s |" % w)]
    # ops/s and RSS tables (2 allocators: 5 bars), then against the best peer (8)
    assert [l.count("|") for l in rows] == [5, 5, 8], (w, rows)
    want = "| %s | glibc | %.2f | glibc | %.2f | glibc | %.2f |" % (
        w, d["ratios"][w]["glibc"]["ops"], d["ratios"][w]["glibc"]["ops_best"], d["ratios"][w]["glibc"]["rss"])
    assert rows[2] == want, (rows[2], want)
# the best peer is the one with the lowest ops/s ratio and the highest RSS ratio
import importlib.util
spec = importlib.util.spec_from_file_location("report", "scripts/bench-report.py")
rep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rep)
syn = {"w": {"a": {"ops": 1.5, "ops_best": 0.9, "rss": 0.8}, "b": {"ops": 0.7, "ops_best": 1.2, "rss": 1.3}}}
got = rep.against_best({"workloads": [{"name": "w"}]}, ["a", "b"], syn)
assert "| w | b | 0.70 | a | 0.90 | b | 1.30 |" in got, got
if shutil.which("gnuplot"):
    for f in ("results.svg", "results.png", "results-ratio.png"):
        p = os.path.join(out, f)
        assert os.path.getsize(p) > 1000, p
    assert "<svg" in open(os.path.join(out, "results.svg")).read(4096)
    for f in ("results.png", "results-ratio.png"):
        assert open(os.path.join(out, f), "rb").read(8) == b"\x89PNG\r\n\x1a\n", f
else:
    print("gnuplot not installed: chart not checked")
m = d["meta"]  # bench/pageprobe's figures
assert float(m["page_touch_us"]) > 0 and float(m["page_moved_us"]) >= 0, m
assert any(l.startswith("Page costs here (bench/pageprobe): %s us" % m["page_touch_us"]) for l in md), md[:6]
print("outputs ok:", len(d["samples"]), "samples,", len(wl), "workloads")
PY
)
run_check release bench/outputs python3 -c "$OUTPUTS_PY" "$OUT" "$WL"

# synth <factor> <workload or ""> <file> [best-run factor]: a baseline with the
# results' ratios (medians and best runs) times factor (every workload, or
# only the one named); the best-run ratios times their own factor if given.
synth() {
  python3 - "$BENCH_RESULTS" "$1" "$2" "$3" "${4:-$1}" <<'PY'
import json, sys
res, only, path = json.load(open(sys.argv[1])), sys.argv[3], sys.argv[4]
def scaled(key, f):
    return {w: {p: e[key] * (f if (not only or w == only) else 1.0) for p, e in peers.items()}
            for w, peers in res["ratios"].items()}
json.dump({"format": "hakmem-bench-baseline/1", "source": {"date": "synthetic"},
           "ratios": scaled("ops", float(sys.argv[2])),
           "ratios_best": scaled("ops_best", float(sys.argv[5]))}, open(path, "w"))
PY
}
synth 0.5 "" "$OUT/base-low.json"
synth 2.0 "larson/t2-c256" "$OUT/base-high.json"
synth 1.1 "" "$OUT/base-10.json"
# medians 10% above the results, best runs 10% below: STAT picks which is compared
synth 1.1 "" "$OUT/base-split.json" 0.9

run_check release bench/check-pass bash -c '
  out=$(BENCH_BASELINE='"$OUT"'/base-low.json TOL=0.15 scripts/bench-check.sh); rc=$?
  echo "$out"
  [ $rc -eq 0 ] && printf "%s" "$out" | grep -q "^bench-check: PASS"'

# variant <file> <json object>: the low baseline with its source updated by it
variant() {
  python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); b["source"].update(json.loads(sys.argv[2])); json.dump(b, open(sys.argv[3], "w"))' \
    "$OUT/base-low.json" "$2" "$1"
}
# refused <check> <baseline> <message>: bench-check refuses the results against
# the baseline as not comparable (exit status 2), saying why
refused() {
  run_check release "$1" bash -c '
    out=$(BENCH_BASELINE="$1" TOL=0.15 scripts/bench-check.sh); rc=$?
    echo "$out"
    [ $rc -eq 2 ] || { echo "exit $rc, expected 2 (not comparable)"; exit 1; }
    printf "%s" "$out" | grep -q -- "$2"' _ "$2" "$3"
}
# the low baseline, made with HAKMEM_THP=1; on a machine whose first page touch
# costs 10x this one's (2x: comparable); from a full run (the smoke run is
# QUICK, SCALE=0.05)
touch_us=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["meta"]["page_touch_us"])' "$BENCH_RESULTS")
moved_us=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["meta"]["page_moved_us"])' "$BENCH_RESULTS")
variant "$OUT/base-thp.json" '{"hakmem_thp": "1"}'
for f in 10 2; do
  variant "$OUT/base-page$f.json" "{\"page_touch_us\": \"$(awk -v t="$touch_us" -v f=$f 'BEGIN { printf "%.3f", t * f }')\", \"page_moved_us\": \"$moved_us\"}"
done
variant "$OUT/base-full.json" '{"quick": "0", "scale": "1"}'
refused bench/check-thp-mismatch "$OUT/base-thp.json" \
  "HAKMEM_THP=(unset), the baseline with HAKMEM_THP=1: not comparable"
refused bench/check-page-costs "$OUT/base-page10.json" "FAIL: a first page touch costs .* (more than 6x apart)"
run_check release bench/check-page-costs-2x env BENCH_BASELINE="$OUT/base-page2.json" TOL=0.15 \
  scripts/bench-check.sh
refused bench/check-run-length "$OUT/base-full.json" \
  "the results are a QUICK (SCALE=0.05) run, the baseline a full run"

run_check release bench/check-fail bash -c '
  out=$(BENCH_BASELINE='"$OUT"'/base-high.json TOL=0.15 scripts/bench-check.sh); rc=$?
  echo "$out"
  [ $rc -eq 1 ] || { echo "exit $rc, expected 1"; exit 1; }
  printf "%s" "$out" | grep -q "FAIL larson/t2-c256: hakmem/glibc .*dropped 50.0%" || exit 1
  [ "$(printf "%s" "$out" | grep -c "^  FAIL")" -eq 1 ] || { echo "expected exactly one FAIL"; exit 1; }
  # nor is a baseline written from such results
  rm -f '"$OUT"'/from-failed.json
  if BENCH_RESULTS='"$OUT"'/hak-failed.json BENCH_BASELINE='"$OUT"'/from-failed.json scripts/bench-check.sh --write-baseline; then
    echo "a baseline was written from results where a hakmem run failed"; exit 1; fi
  [ ! -e '"$OUT"'/from-failed.json ] || { echo "the refused baseline file exists"; exit 1; }'

# a failed hakmem run (a content check, a crash) fails the check though the
# workload's other runs give a ratio above the floor
run_check release bench/check-hakmem-failed bash -c '
  python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
s = dict([x for x in d[\"samples\"] if x[\"workload\"] == \"realloc/grow\" and x[\"allocator\"] == \"hakmem\"][0])
s.update(rep=2, exit=\"2\", ok=False, ops_per_s=None)
d[\"samples\"].append(s)
c = d[\"summary\"][\"realloc/grow\"][\"hakmem\"]
c[\"runs\"] += 1
c[\"failed\"] += 1
json.dump(d, open(sys.argv[2], \"w\"))" "$BENCH_RESULTS" '"$OUT"'/hak-failed.json || exit 1
  out=$(BENCH_RESULTS='"$OUT"'/hak-failed.json BENCH_BASELINE='"$OUT"'/base-low.json TOL=0.15 scripts/bench-check.sh); rc=$?
  echo "$out"
  [ $rc -eq 1 ] || { echo "exit $rc, expected 1"; exit 1; }
  printf "%s" "$out" | grep -q "FAIL realloc/grow: hakmem/glibc .*hakmem failed 1 of 2 runs" || exit 1
  [ "$(printf "%s" "$out" | grep -c "^  FAIL")" -eq 1 ] || { echo "expected exactly one FAIL"; exit 1; }'

run_check release bench/check-tol bash -c '
  BENCH_BASELINE='"$OUT"'/base-10.json TOL=0.15 scripts/bench-check.sh || { echo "TOL=0.15 should pass"; exit 1; }
  if BENCH_BASELINE='"$OUT"'/base-10.json TOL=0.05 scripts/bench-check.sh; then echo "TOL=0.05 should fail"; exit 1; fi
  if BENCH_BASELINE='"$OUT"'/base-10.json TOL=0.05 STAT=best scripts/bench-check.sh; then
    echo "TOL=0.05 STAT=best should fail"; exit 1; fi
  if BENCH_BASELINE='"$OUT"'/base-split.json TOL=0.05 scripts/bench-check.sh; then
    echo "split baseline, medians: should fail"; exit 1; fi
  BENCH_BASELINE='"$OUT"'/base-split.json TOL=0.05 STAT=best scripts/bench-check.sh ||
    { echo "split baseline, STAT=best: should pass (best runs are compared)"; exit 1; }
  echo ok'

run_check release bench/baseline-roundtrip bash -c '
  BENCH_BASELINE='"$OUT"'/written.json scripts/bench-check.sh --write-baseline || exit 1
  python3 -c "import json, sys; d = json.load(open(sys.argv[1]))[\"baselines\"]; assert len(d) == 1 and len(d[0][\"ratios\"]) == 7 and len(d[0][\"ratios_best\"]) == 7 and float(d[0][\"source\"][\"page_touch_us\"]) > 0, d" '"$OUT"'/written.json || exit 1
  BENCH_BASELINE='"$OUT"'/written.json TOL=0 scripts/bench-check.sh && BENCH_BASELINE='"$OUT"'/written.json TOL=0 STAT=best scripts/bench-check.sh'

# One baseline per kind of machine: writing keeps another kind's entry and
# replaces this kind's; check takes the entry made on a machine like this
# one, in either order, though the other one would fail.
run_check release bench/baseline-per-machine bash -c '
  set -e
  o='"$OUT"'
  cp "$o/base-page10.json" "$o/multi.json"  # another kind: 10x the page costs
  BENCH_BASELINE="$o/multi.json" scripts/bench-check.sh --write-baseline
  BENCH_BASELINE="$o/multi.json" scripts/bench-check.sh --write-baseline | grep "kept 1 other"
  python3 -c "import json, sys; assert len(json.load(open(sys.argv[1]))[\"baselines\"]) == 2" "$o/multi.json"
  BENCH_BASELINE="$o/multi.json" TOL=0 scripts/bench-check.sh | grep "^bench-check: PASS"
  # two comparable entries: the closer one (these costs) is used, in either
  # order, though the farther one (first touch 4x, within 6x) would fail
  python3 -c "import json, sys
d = json.load(open(sys.argv[1])); near = [e for e in d[\"baselines\"] if e[\"source\"][\"date\"] != \"synthetic\"][0]
far = json.loads(json.dumps(near)); far[\"source\"][\"page_touch_us\"] = str(float(near[\"source\"][\"page_touch_us\"]) * 4)
far[\"ratios\"] = {w: {p: 2 * v for p, v in r.items()} for w, r in far[\"ratios\"].items()}
json.dump({\"format\": \"hakmem-bench-baseline/2\", \"baselines\": [near, far]}, open(sys.argv[2], \"w\"))
json.dump({\"format\": \"hakmem-bench-baseline/2\", \"baselines\": [far, near]}, open(sys.argv[3], \"w\"))" \
    "$o/multi.json" "$o/multi-a.json" "$o/multi-b.json"
  BENCH_BASELINE="$o/multi-a.json" TOL=0 scripts/bench-check.sh | grep "^bench-check: PASS"
  BENCH_BASELINE="$o/multi-b.json" TOL=0 scripts/bench-check.sh | grep "^bench-check: PASS"
  # writing replaces only the entry check would use: the far one stays
  cp "$o/multi-b.json" "$o/multi-c.json"
  BENCH_BASELINE="$o/multi-c.json" scripts/bench-check.sh --write-baseline | grep "kept 1 other"
  # a format-1 file (one baseline, not in a list) made on a machine like this one: replaced
  cp "$o/base-page2.json" "$o/format1.json"
  BENCH_BASELINE="$o/format1.json" scripts/bench-check.sh --write-baseline | grep "kept 0 other"
  python3 -c "import json, sys; assert len(json.load(open(sys.argv[1]))[\"baselines\"]) == 1" "$o/format1.json"
  # results without page costs: not written; compared only with a file of one baseline
  python3 -c "import json, sys; d = json.load(open(sys.argv[1])); del d[\"meta\"][\"page_touch_us\"], d[\"meta\"][\"page_moved_us\"]; json.dump(d, open(sys.argv[2], \"w\"))" \
    "$BENCH_RESULTS" "$o/nocost.json"
  cp "$o/multi-a.json" "$o/multi-d.json"
  if BENCH_RESULTS="$o/nocost.json" BENCH_BASELINE="$o/multi-d.json" scripts/bench-check.sh --write-baseline; then
    echo "results without page costs were written"; exit 1; fi
  cmp "$o/multi-a.json" "$o/multi-d.json"
  rc=0; BENCH_RESULTS="$o/nocost.json" BENCH_BASELINE="$o/multi-a.json" scripts/bench-check.sh || rc=$?
  [ $rc -eq 2 ] || { echo "no page costs, two baselines: exit $rc, expected 2"; exit 1; }
  # a file that cannot be read is not rewritten
  printf "{ damaged" >"$o/damaged.json"
  if BENCH_BASELINE="$o/damaged.json" scripts/bench-check.sh --write-baseline; then
    echo "a damaged baseline file was overwritten"; exit 1; fi
  [ "$(cat "$o/damaged.json")" = "{ damaged" ]
  echo ok'

run_check release bench/scaling-options bash -c '
  set -u
  o='"$OUT"'/scaling
  BENCH_NOBUILD=1 QUICK=1 REPS=1 SCALE=0.02 ALLOCATORS="hakmem glibc" BENCH_THREADS="1 6" \
    WORKLOADS="larson/t6-* xthread/*" BENCH_OUT=$o scripts/bench.sh >$o.log 2>&1 || { cat $o.log; exit 1; }
  python3 -c "import json, sys; n = [w[\"name\"] for w in json.load(open(sys.argv[1]))[\"workloads\"]]; \
assert n == [\"larson/t6-c256\", \"larson/t6-c1024\", \"xthread/queue-t1\", \"xthread/queue-t6\", \
\"xthread/one2many-t4\", \"xthread/one2many-t6\"], n" $o/results.json || exit 1
  if out=$(BENCH_THREADS="2 x" BENCH_NOBUILD=1 BENCH_OUT=$o scripts/bench.sh 2>&1); then echo "BENCH_THREADS=\"2 x\" accepted"; exit 1; fi
  printf "%s" "$out" | grep -q "not a list of thread counts" || { echo "$out"; exit 1; }
  if out=$(HAKMEM_LIB=$o/none.so BENCH_NOBUILD=1 BENCH_OUT=$o scripts/bench.sh 2>&1); then echo "missing library accepted"; exit 1; fi
  printf "%s" "$out" | grep -q "BENCH_NOBUILD=1 but .*/none.so is missing" || { echo "$out"; exit 1; }
  mkdir -p $o/peers && : >$o/peers/libmimalloc.so.2
  p=$(. scripts/lib-bench.sh; HAK_PEER_DIR=$o/peers peer_lib mimalloc)
  [ "$p" = "$(realpath $o/peers/libmimalloc.so.2)" ] || { echo "peer_lib with HAK_PEER_DIR: \"$p\""; exit 1; }
  echo ok'

run_check release bench/fastpath bash -c '
  out=$(PEERS=0 N1=2000 N2=4000 scripts/bench-fastpath.sh); rc=$?
  echo "$out"
  [ $rc -eq 0 ] && [ "$(printf "%s\n" "$out" | grep -cE "^malloc\+free 64 B: [0-9]+ instructions, [0-9]+ when .*(hakmem|glibc)")" -eq 3 ] || exit 1
  # hakmem'"'"'s two lines are split into malloc, free and the calls, each
  # measured on its own (bench-fastpath.sh, report): each part a count, and
  # the parts add up to the pair (within rounding), which they do only if
  # the split missed nothing and counted nothing twice
  printf "%s\n" "$out" | awk "
    /^malloc\\+free 64 B: .*hakmem/ { total = \$4; want = 1; next }
    want && /^  of which: / { want = 0; n++
      if (\$4 !~ /^[0-9]+,\$/ || \$6 !~ /^[0-9]+,\$/ || \$9 !~ /^[0-9]+\$/) { bad = 1; next }
      m = \$4 + 0; f = \$6 + 0; c = \$9 + 0
      if (m < 5 || f < 5 || c < 1 || m + f + c < total - 1 || m + f + c > total + 1) bad = 1 }
    END { exit !(n == 2 && !bad) }" || { echo "bench/fastpath: the split of a hakmem line is missing or does not add up"; exit 1; }'

# a preload that does not load (HAKMEM_LIBDIR without libhakmem.so: ld.so
# only warns) is a failed measurement, not glibc's count under hakmem's name
# (only that variant is measured: VARIANTS=preload)
run_check release bench/fastpath-wrong-preload bash -c '
  d='"$OUT"'/libdir-static-only
  mkdir -p "$d" && cp build/release/libhakmem.a "$d/" || exit 1
  out=$(VARIANTS=preload N1=2000 N2=4000 HAKMEM_LIBDIR="$d" scripts/bench-fastpath.sh 2>&1); rc=$?
  echo "$out"
  [ $rc -ne 0 ] || { echo "exit 0 with no libhakmem.so to preload"; exit 1; }
  printf "%s\n" "$out" | grep -q "ran on allocator libc, expected hakmem(preload)" || exit 1
  printf "%s\n" "$out" | grep -q "^hakmem: malloc/free, LD_PRELOAD libhakmem.so: measurement failed" || exit 1
  ! printf "%s\n" "$out" | grep -q "^malloc+free 64 B: .*LD_PRELOAD libhakmem.so"'
exit 0
