#!/usr/bin/env python3
"""scripts/bench-check.py: hakmem's ratios against a committed baseline.

    bench-check.py check    --results build/bench/results.json --baseline bench/baseline.json [--tol 0.15] [--stat median|best]
    bench-check.py baseline --results build/bench/results.json --baseline bench/baseline.json

check: for every workload and peer in the baseline, the ratio
median(hakmem ops/s) / median(peer ops/s) of the results must be at least
baseline x (1 - tol). Prints one line per comparison (OK, FAIL, SKIP when the
results lack that workload or peer or every run of the peer failed,
"improved" when it rose by more than tol), NEW for a workload of the results
the baseline lacks, and a summary; exits 1 if any comparison failed, if a
hakmem run of any workload failed (one is enough; in a workload the
baseline lacks too), if hakmem and the peer both ran and no ratio came of
it (hakmem's throughput zero), if a baseline ratio is not a positive
number (NaN, 0 or a negative one would pass everything), or if nothing
could be compared; 0 otherwise. Ratios only: absolute times differ between machines,
ratios from one interleaved run much less. --stat best compares the ratios
of each side's best run instead of the medians (on a machine shared with
other work, runs are only ever slowed down, so the best run is the least
disturbed).

baseline: writes the results' ratios as the baseline of this kind of machine
(with where they came from: HAKMEM_THP and the machine's page costs), for
`make bench-baseline`. The file keeps one baseline per kind of machine
(format 2): writing replaces the entry check would pick for these results
and keeps the others; it refuses results without page costs or with a failed hakmem run, and a file it
cannot read. check compares with the entry whose HAKMEM_THP matches and
whose page costs are close enough (first touch within 6x, moved page within
3x; the closest if several) and whose run length (QUICK or full, SCALE)
is the results', and exits 2, naming why, when no entry is like the
results."""
import argparse
import json
import math
import sys


def load(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        sys.exit("bench-check: cannot read %s %s: %s" % (what, path, e.strerror))
    except ValueError as e:
        sys.exit("bench-check: %s %s is not valid JSON: %s" % (what, path, e))


# How far apart two machines' page costs may be and still compare. A moved
# page is what tells the kinds apart (0.01 us where page tables move with
# the mapping, 6 us on a paravirtualized guest where each page faults again)
# and it holds still under load; a first touch costs more on a loaded
# machine (1.2 us here alone, up to 4.9 us beside four memory-hungry jobs),
# so it gets more room.
PAGE_COST_SPREAD = {"page_touch_us": 6.0, "page_moved_us": 3.0}
PAGE_COST_FLOOR = 0.1  # costs below this count as this: such machines compare equal
NOT_COMPARABLE = 2  # check's exit status when no baseline is like the results


def cost(d, key):
    """d[key] as a number of microseconds (at least the floor), or None."""
    try:
        return max(float(d[key]), PAGE_COST_FLOOR)
    except (KeyError, TypeError, ValueError):
        return None


def page_costs_apart(m, src):
    """Why the results' machine and the baseline's are not comparable by
    their page costs (bench/pageprobe: first touch and moved page, us per
    page), or None. A cost missing on either side (older files) is not
    compared."""
    for key, what in (("page_touch_us", "a first page touch"), ("page_moved_us", "a moved page")):
        a, b = cost(m, key), cost(src, key)
        if a is None or b is None:
            continue
        if max(a, b) > min(a, b) * PAGE_COST_SPREAD[key]:
            return "%s costs %s us here and %s us on the baseline's machine (more than %gx apart)" % (
                what, m[key], src[key], PAGE_COST_SPREAD[key])
    return None


def entries(doc):
    """The baselines of a baseline file: format 2 holds one per kind of
    machine ("baselines"), format 1 (before 2026-11-27) is one."""
    if "baselines" in doc:
        return [e for e in doc.get("baselines") or [] if isinstance(e, dict)]
    return [{k: doc[k] for k in ("source", "ratios", "ratios_best") if k in doc}]


def positive(v):
    """v is a finite number above zero (a ratio that can be compared)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def source(e):
    return e.get("source") or {}


def run_length(d):
    """The run length d records: QUICK or full, with the SCALE if not 1;
    None if d does not say."""
    if d.get("quick") is None:
        return None
    r = "QUICK" if str(d["quick"]) not in ("", "0") else "full"
    try:
        scale = float(d.get("scale") or 1)
    except ValueError:
        scale = 1.0
    return r if scale == 1 else "%s (SCALE=%g)" % (r, scale)


def unlike(m, src):
    """Why results with metadata m cannot be compared with a baseline made
    where src says, or None. HAKMEM_THP=1 changes hakmem's ratios by up to
    60% (absent in older files: unset); so do the machine's page costs, and
    the run lengths: a QUICK run's large-block ratio against jemalloc was
    2.28 where the full run's is 5.81 (100 cycles against 500), and the rows
    that fault in fresh pages weigh their first touches more in short runs."""
    thp_res, thp_base = m.get("hakmem_thp") or "", src.get("hakmem_thp") or ""
    if thp_res != thp_base:
        return "the results ran hakmem with HAKMEM_THP=%s, the baseline with HAKMEM_THP=%s" % (
            thp_res or "(unset)", thp_base or "(unset)")
    lr, lb = run_length(m), run_length(src)
    if lr and lb and lr != lb:
        return "the results are a %s run, the baseline a %s run" % (lr, lb)
    return page_costs_apart(m, src)


def distance(m, src):
    """How far apart two machines' page costs are (the larger log ratio of
    the two costs); infinite when the entry's are unknown, so that an entry
    with known, matching costs is preferred to one without."""
    d = 0.0
    for key in PAGE_COST_SPREAD:
        a, b = cost(m, key), cost(src, key)
        if b is None:
            return math.inf
        if a is not None:
            d = max(d, abs(math.log(a / b)))
    return d


def pick(m, es):
    """(the index in es of the baseline to compare results with metadata m
    against, None), or (None, why not): the comparable entry of the closest
    machine; results without page costs (pageprobe missing) only against a
    file of one entry."""
    if not es:
        return None, ["the file holds no baseline"]
    cands = [(distance(m, source(e)), i) for i, e in enumerate(es) if not unlike(m, source(e))]
    if not cands:
        return None, [unlike(m, source(e)) for e in es]
    if cost(m, "page_touch_us") is None and cost(m, "page_moved_us") is None and len(es) > 1:
        return None, ["the results have no page costs (bench/pageprobe did not run), and the file "
                      "holds baselines of %d kinds of machine" % len(es)]
    return min(cands)[1], None


def check(res, doc, tol, stat, res_path, base_path):
    m = res.get("meta") or {}
    es = entries(doc)
    i, why = pick(m, es)
    if i is None:
        for w in why:
            print("bench-check: FAIL: %s: not comparable with %s; make a baseline like these "
                  "results (make bench with the same QUICK and SCALE on a machine like this one, "
                  "then make bench-baseline, which keeps the others)" % (w, base_path))
        return NOT_COMPARABLE
    base = es[i]
    src = source(base)
    key = "ops" if stat == "median" else "ops_best"
    bratios = base.get("ratios_best" if stat == "best" else "ratios") or {}
    ratios = res.get("ratios", {})
    summary = res.get("summary", {})
    print("bench-check: %s (%s, %s, %s rep(s)) vs %s (%s, %s), ratios of %s, tolerance %.0f%%" % (
        res_path, m.get("date", "?"), run_length(m) or "?", m.get("reps", "?"), base_path,
        src.get("date", "?"),
        "page touch %s us, moved %s us" % (src.get("page_touch_us"), src.get("page_moved_us"))
        if src.get("page_touch_us") else "page costs unknown",
        "medians" if stat == "median" else "best runs", tol * 100))
    if not bratios:
        print("bench-check: FAIL: the baseline has no %s ratios" % stat)
        return 1
    fails, oks, skips, better = [], 0, 0, 0
    for w in sorted(bratios):
        for peer, b in sorted(bratios[w].items()):
            label = "%s: hakmem/%s" % (w, peer)
            if not positive(b):
                # (NaN, 0 or a negative floor passes every ratio: a damaged
                # baseline must not pass for one that compares)
                msg = "%-40s baseline ratio %r is not a positive number" % (label, b)
                print("  FAIL " + msg)
                fails.append(msg)
                continue
            if w not in summary:
                print("  SKIP %-40s workload not in the results" % label)
                skips += 1
                continue
            h = summary[w].get("hakmem")
            # one failed run (a content check, a crash) fails, whatever the
            # ratio of the others
            why = ("did not run" if not h else "FAILED every run" if "ops_median" not in h
                   else "failed %d of %d runs" % (h["failed"], h["runs"]) if h.get("failed")
                   else None)
            if why:
                msg = "%-40s hakmem %s" % (label, why)
                print("  FAIL " + msg)
                fails.append(msg)
                continue
            cur = ratios.get(w, {}).get(peer, {}).get(key)
            p = summary[w].get(peer)
            if cur is None and p and "ops_median" in p:
                # both sides have runs, yet no ratio: hakmem's throughput
                # was zero (until 2026-11-28 a SKIP, "not in the results")
                msg = "%-40s no ratio: hakmem's throughput %s" % (label, h.get("ops_median"))
                print("  FAIL " + msg)
                fails.append(msg)
                continue
            if cur is None:
                print("  SKIP %-40s %s" % (label, "every %s run failed (%d)" % (peer, p["runs"]) if p
                                         else "%s not in the results (%s)" % (
                                             peer, res.get("allocators", {}).get(peer, "not run"))))
                skips += 1
                continue
            if not positive(cur):
                msg = "%-40s ratio %r is not a positive number" % (label, cur)
                print("  FAIL " + msg)
                fails.append(msg)
                continue
            floor = b * (1 - tol)
            change = cur / b - 1  # b > 0: positive(b) above
            if round(cur, 6) < round(floor, 6):  # (the baseline keeps 6 decimals)
                msg = "%-40s %.3f, baseline %.3f: dropped %.1f%% (more than %.0f%%; floor %.3f)" % (
                    label, cur, b, -change * 100, tol * 100, floor)
                print("  FAIL " + msg)
                fails.append(msg)
            else:
                note = ""
                if change > tol and change > 0.001:
                    note = "  improved %.1f%% (make bench-baseline to keep it)" % (change * 100)
                    better += 1
                print("  OK   %-40s %.3f, baseline %.3f (%+.1f%%)%s" % (label, cur, b, change * 100, note))
                oks += 1
    # The results' workloads the baseline lacks: not compared, but said; and
    # a hakmem run of one that failed fails the check as one of the
    # baseline's does (until 2026-11-28 such a workload went unmentioned,
    # and bench-check passed with hakmem crashing in it)
    for w in sorted(set(summary) - set(bratios)):
        h = summary[w].get("hakmem") or {}
        if h.get("failed") or (h and "ops_median" not in h):
            msg = "%-40s hakmem failed %d of %d runs (not in the baseline)" % (
                w + ":", h.get("failed", 0), h.get("runs", 0))
            print("  FAIL " + msg)
            fails.append(msg)
        else:
            print("  NEW  %-40s not in the baseline: not compared" % (w + ":"))
    if not fails and oks == 0:
        print("bench-check: FAIL: nothing to compare (no workload/peer of the baseline in the results)")
        return 1
    print("bench-check: %d ok, %d failed, %d skipped, %d improved beyond tolerance" % (
        oks, len(fails), skips, better))
    if fails:
        print("bench-check: FAIL: hakmem's ratio dropped by more than %.0f%%, or hakmem failed:" % (
            tol * 100))
        for f in fails:
            print("  " + f)
        return 1
    print("bench-check: PASS")
    return 0


def baseline(res, res_path, base_path):
    failed = sorted(w for w, s in res.get("summary", {}).items()
                    if (s.get("hakmem") or {}).get("failed"))
    if failed:
        sys.exit("bench-check: hakmem failed runs of %s in %s: no baseline is written from a run "
                 "where hakmem failed" % (", ".join(failed), res_path))
    out, best = {}, {}
    for w, peers in res.get("ratios", {}).items():
        r = {p: round(e["ops"], 6) for p, e in peers.items() if "ops" in e}
        if r:
            out[w] = r
        r = {p: round(e["ops_best"], 6) for p, e in peers.items() if "ops_best" in e}
        if r:
            best[w] = r
    if not out:
        sys.exit("bench-check: %s has no hakmem/peer ratio; nothing to write" % res_path)
    m = res.get("meta") or {}
    if cost(m, "page_touch_us") is None or cost(m, "page_moved_us") is None:
        sys.exit("bench-check: %s has no page costs (bench/pageprobe did not run): which kind of "
                 "machine's baseline it is cannot be told; nothing written" % res_path)
    entry = {
        "source": {k: m.get(k) for k in ("date", "host", "cpu", "cores", "git", "quick", "reps",
                                          "scale", "loadavg_start", "loadavg_end", "hakmem_thp",
                                          "page_touch_us", "page_moved_us")},
        "ratios": out,
        "ratios_best": best,
    }
    # The entry check would compare these results with is replaced; every
    # other stays (entries of other kinds of machine, and of this kind made
    # with other costs). No file yet: a new one. One that cannot be read:
    # nothing written (rewriting it would drop the other machines' entries).
    try:
        with open(base_path) as f:
            kept = entries(json.load(f))
    except FileNotFoundError:
        kept = []
    except (OSError, ValueError) as e:
        sys.exit("bench-check: cannot read the existing %s (%s); nothing written" % (base_path, e))
    replaced, _ = pick(m, kept)
    if replaced is not None:
        del kept[replaced]
    doc = {
        "format": "hakmem-bench-baseline/2",
        "comment": "hakmem's throughput ratios (median hakmem ops/s / median peer ops/s, and of "
                   "best runs) from one make bench run per kind of machine and run length; make "
                   "bench-check compares with the one whose HAKMEM_THP, run length and page costs "
                   "match, and fails when a ratio drops by more than TOL. Regenerate: make bench, "
                   "then make bench-baseline (it replaces that entry and keeps the others).",
        "baselines": [entry] + kept,
    }
    with open(base_path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print("bench-check: wrote %s: %d workload(s), %d ratio(s) from %s (%s); kept %d other "
          "baseline(s)" % (base_path, len(out), sum(len(v) for v in out.values()), res_path,
                           m.get("date", "?"), len(kept)))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["check", "baseline"])
    ap.add_argument("--results", default="build/bench/results.json")
    ap.add_argument("--baseline", default="bench/baseline.json")
    ap.add_argument("--tol", type=float, default=0.15)
    ap.add_argument("--stat", choices=["median", "best"], default="median")
    a = ap.parse_args()
    if not 0 <= a.tol < 1:
        sys.exit("bench-check: TOL must be in [0, 1): %s" % a.tol)
    res = load(a.results, "results")
    if a.mode == "baseline":
        return baseline(res, a.results, a.baseline)
    return check(res, load(a.baseline, "baseline"), a.tol, a.stat, a.results, a.baseline)


if __name__ == "__main__":
    sys.exit(main())
