#!/usr/bin/env python3
"""scripts/bench-check.py: hakmem's ratios against a committed baseline.

    bench-check.py check    --results build/bench/results.json --baseline bench/baseline.json [--tol 0.15] [--stat median|best]
    bench-check.py baseline --results build/bench/results.json --baseline bench/baseline.json

check: for every workload and peer in the baseline, the ratio
median(hakmem ops/s) / median(peer ops/s) of the results must be at least
baseline x (1 - tol). Prints one line per comparison (OK, FAIL, SKIP when the
results lack that workload or peer, "improved" when it rose by more than tol)
and a summary; exits 1 if any comparison failed, if hakmem failed a workload
of the baseline, or if nothing could be compared; 0 otherwise. Ratios only:
absolute times differ between machines, ratios from one interleaved run much
less. --stat best compares the ratios of each side's best run instead of the
medians (on a machine shared with other work, runs are only ever slowed
down, so the best run is the least disturbed).

baseline: writes the results' ratios as the new baseline (with where they
came from, HAKMEM_THP included: check refuses results run with another
setting; and the machine's page costs: check refuses results from a machine
whose costs are more than 3x apart), for `make bench-baseline`."""
import argparse
import json
import sys


def load(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        sys.exit("bench-check: cannot read %s %s: %s" % (what, path, e.strerror))
    except ValueError as e:
        sys.exit("bench-check: %s %s is not valid JSON: %s" % (what, path, e))


PAGE_COST_SPREAD = 3.0  # page costs further apart than this: machines not comparable


def page_costs_apart(m, src):
    """Why the results' machine and the baseline's are not comparable by
    their page costs (bench/pageprobe: first touch and moved page, us per
    page), or None. Costs missing on either side (older files): None. A
    moved page costs a few ns where page tables move with the mapping and
    microseconds where each takes a fault again; costs below 0.1 us count
    as 0.1 so that two such machines compare equal."""
    for key, what in (("page_touch_us", "a first page touch"), ("page_moved_us", "a moved page")):
        try:
            a, b = float(m[key]), float(src[key])
        except (KeyError, TypeError, ValueError):
            continue
        lo, hi = sorted((max(a, 0.1), max(b, 0.1)))
        if hi > lo * PAGE_COST_SPREAD:
            return "%s costs %s us here and %s us on the baseline's machine (more than %gx apart)" % (
                what, m[key], src[key], PAGE_COST_SPREAD)
    return None


def check(res, base, tol, stat, res_path, base_path):
    key = "ops" if stat == "median" else "ops_best"
    bratios = base.get("ratios_best" if stat == "best" else "ratios", {})
    ratios = res.get("ratios", {})
    summary = res.get("summary", {})
    m = res.get("meta", {})
    print("bench-check: %s (%s, %s, %s rep(s)) vs %s (%s), ratios of %s, tolerance %.0f%%" % (
        res_path, m.get("date", "?"), "QUICK" if m.get("quick", "0") not in ("", "0") else "full",
        m.get("reps", "?"), base_path, base.get("source", {}).get("date", "?"),
        "medians" if stat == "median" else "best runs", tol * 100))
    if not bratios:
        print("bench-check: FAIL: the baseline has no %s ratios" % stat)
        return 1
    # HAKMEM_THP=1 changes hakmem's ratios by up to 60%: runs with and
    # without it are not comparable (absent in older files: unset)
    thp_res, thp_base = m.get("hakmem_thp") or "", base.get("source", {}).get("hakmem_thp") or ""
    if thp_res != thp_base:
        print("bench-check: FAIL: the results ran hakmem with HAKMEM_THP=%s, the baseline with "
              "HAKMEM_THP=%s: not comparable" % (thp_res or "(unset)", thp_base or "(unset)"))
        return 1
    why = page_costs_apart(m, base.get("source", {}))
    if why:
        print("bench-check: FAIL: %s: the ratios of the workloads that fault or move pages are "
              "not comparable; make a baseline on a machine like this one (make bench, then "
              "make bench-baseline)" % why)
        return 1
    fails, oks, skips, better = [], 0, 0, 0
    for w in sorted(bratios):
        for peer, b in sorted(bratios[w].items()):
            label = "%s: hakmem/%s" % (w, peer)
            if w not in summary:
                print("  SKIP %-40s workload not in the results" % label)
                skips += 1
                continue
            h = summary[w].get("hakmem")
            if not h or "ops_median" not in h:
                msg = "%-40s hakmem %s" % (label, "did not run" if not h else "FAILED every run")
                print("  FAIL " + msg)
                fails.append(msg)
                continue
            cur = ratios.get(w, {}).get(peer, {}).get(key)
            if cur is None:
                print("  SKIP %-40s %s not in the results (%s)" % (
                    label, peer, res.get("allocators", {}).get(peer, "not run")))
                skips += 1
                continue
            floor = b * (1 - tol)
            change = cur / b - 1 if b else 0.0
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
    if not fails and oks == 0:
        print("bench-check: FAIL: nothing to compare (no workload/peer of the baseline in the results)")
        return 1
    print("bench-check: %d ok, %d failed, %d skipped, %d improved beyond tolerance" % (
        oks, len(fails), skips, better))
    if fails:
        print("bench-check: FAIL: hakmem's ratio dropped by more than %.0f%%:" % (tol * 100))
        for f in fails:
            print("  " + f)
        return 1
    print("bench-check: PASS")
    return 0


def baseline(res, res_path, base_path):
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
    m = res.get("meta", {})
    doc = {
        "format": "hakmem-bench-baseline/1",
        "comment": "hakmem's throughput ratios (median hakmem ops/s / median peer ops/s) from one "
                   "make bench run; make bench-check fails when a ratio drops by more than TOL. "
                   "Regenerate: make bench, then make bench-baseline.",
        "source": {k: m.get(k) for k in ("date", "host", "cpu", "cores", "git", "quick", "reps",
                                          "scale", "loadavg_start", "loadavg_end", "hakmem_thp",
                                          "page_touch_us", "page_moved_us")},
        "ratios": out,
        "ratios_best": best,
    }
    with open(base_path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print("bench-check: wrote %s: %d workload(s), %d ratio(s) from %s (%s)" % (
        base_path, len(out), sum(len(v) for v in out.values()), res_path, m.get("date", "?")))
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
