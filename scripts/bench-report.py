#!/usr/bin/env python3
"""scripts/bench-report.py: turn make bench's raw samples into the report.

    bench-report.py --meta build/bench/meta.tsv --samples build/bench/samples.tsv --out build/bench

Reads meta.tsv (written by scripts/bench.sh: run metadata, allocators,
workloads) and samples.tsv (one line per run) and writes, in --out:
  results.json   every sample, per-cell medians/min/max, hakmem's ratios to
                 each peer, the metadata (also copied to bench-<date>.json)
  results.md     the tables: ops/s median [min-max] per allocator and
                 hakmem/peer; peak RSS median per allocator and hakmem/peer
  results.dat, results.gp, results.svg, results.png
                 the chart of ops/s per workload per allocator (gnuplot;
                 skipped with a message when gnuplot is absent)
  results-ratio.{dat,gp,png}
                 hakmem's ratio to each peer per workload
Ratios: ops = median(hakmem ops/s) / median(peer ops/s), > 1 is hakmem
faster; ops_best = the same with each side's best run (less sensitive to a
loaded machine, where runs are only ever slowed down); rss = median(hakmem peak RSS) / median(peer peak RSS), < 1 is hakmem
smaller. Only successful runs count."""
import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

PEER_ORDER = ["hakmem", "glibc", "mimalloc", "jemalloc", "tcmalloc"]


def read_meta(path):
    meta = {"allocators": {}, "workloads": []}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "allocator":
                meta["allocators"][parts[1]] = parts[2]
            elif parts[0] == "workload":
                meta["workloads"].append({"name": parts[1], "command": parts[2]})
            elif len(parts) >= 2:
                meta[parts[0]] = parts[1]
    return meta


def num(s, conv=float):
    try:
        return conv(s)
    except (TypeError, ValueError):
        return None


def measured(figures):
    """For each figure (ops/s as printed), whether it is a throughput a ratio
    can be made of. Asked of no_result in scripts/lib-bench.sh, the one
    definition, which bench.sh and bench-random-mixed.sh test their runs
    with: one bash for all the figures. Every figure it takes is a finite
    number above zero."""
    if not figures:
        return []
    lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib-bench.sh")
    r = subprocess.run(["bash", "-c", '. "$1" && while IFS= read -r v; do '
                        'if no_result "$v"; then echo 0; else echo 1; fi; done', "_", lib],
                       input="".join(f + "\n" for f in figures), capture_output=True, text=True)
    got = r.stdout.split()
    if r.returncode != 0 or len(got) != len(figures):
        sys.exit("bench-report: no_result of %s failed (exit %d): %s" % (lib, r.returncode, r.stderr))
    return [g == "1" for g in got]


def read_samples(path):
    out, rows = [], []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    ok_ops = measured([row["ops_per_s"] for row in rows])
    for row, ops_ok in zip(rows, ok_ops):
        out.append({
            "workload": row["workload"], "allocator": row["allocator"],
            "rep": num(row["rep"], int), "ops_per_s": num(row["ops_per_s"]),
            "wall_s": num(row["wall_s"]), "user_s": num(row["user_s"]),
            "sys_s": num(row["sys_s"]), "maxrss_kb": num(row["maxrss_kb"], int),
            "exit": row["exit"], "reported_allocator": row["reported"],
            # a run counts when it exited 0 and reported a throughput
            # (ops/s=0: no work measured; until 2026-11-28 it counted,
            # and its ratio was left out, not failed)
            "ok": row["exit"] == "0" and ops_ok,
        })
    return out


def summarize(meta, samples):
    allocs = [a for a in PEER_ORDER if a in meta["allocators"]
              and not meta["allocators"][a].startswith("skipped")]
    summary, ratios = {}, {}
    for w in meta["workloads"]:
        name = w["name"]
        cell = {}
        for a in allocs:
            runs = [s for s in samples if s["workload"] == name and s["allocator"] == a]
            ok = [s for s in runs if s["ok"]]
            if not runs:
                continue
            c = {"runs": len(runs), "failed": len(runs) - len(ok)}
            if ok:
                ops = [s["ops_per_s"] for s in ok]
                rss = [s["maxrss_kb"] for s in ok if s["maxrss_kb"] is not None]
                c.update(ops_median=statistics.median(ops), ops_min=min(ops), ops_max=max(ops),
                         wall_s_median=statistics.median([s["wall_s"] or 0 for s in ok]))
                if rss:
                    c.update(rss_kb_median=statistics.median(rss), rss_kb_min=min(rss),
                             rss_kb_max=max(rss))
            cell[a] = c
        summary[name] = cell
        h = cell.get("hakmem", {})
        r = {}
        for p in allocs:
            if p == "hakmem" or p not in cell:
                continue
            pc = cell[p]
            e = {}
            if h.get("ops_median") and pc.get("ops_median"):
                e["ops"] = h["ops_median"] / pc["ops_median"]
                e["ops_best"] = h["ops_max"] / pc["ops_max"]
            if h.get("rss_kb_median") and pc.get("rss_kb_median"):
                e["rss"] = h["rss_kb_median"] / pc["rss_kb_median"]
            if e:
                r[p] = e
        ratios[name] = r
    return allocs, summary, ratios


def fmt_ops(v):
    if v is None:
        return "-"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if v >= div:
            return "%.*f%s" % (2 if v < 10 * div else 1, v / div, suf)
    return "%.0f" % v


def fmt_rss(kb):
    if kb is None:
        return "-"
    return "%.1f MB" % (kb / 1024.0) if kb < 1024 * 1024 else "%.2f GB" % (kb / 1048576.0)


def markdown(meta, allocs, summary, ratios):
    peers = [a for a in allocs if a != "hakmem"]
    L = []
    L.append("# make bench results")
    L.append("")
    L.append("%s, %s, %s core(s) (%s), load average %s at start, %s at end; git %s; "
             "%s; %s rep(s), scale %s; %s s." % (
                 meta.get("date", "?"), meta.get("host", "?"), meta.get("cores", "?"),
                 meta.get("cpu", "?"), meta.get("loadavg_start", "?"), meta.get("loadavg_end", "?"),
                 meta.get("git", "?"), "QUICK" if meta.get("quick", "0") not in ("", "0") else "full",
                 meta.get("reps", "?"), meta.get("scale", "1"), meta.get("seconds", "?")))
    if meta.get("page_touch_us"):
        L.append("")
        L.append("Page costs here (bench/pageprobe): %s us per 4 KiB page at its first touch, "
                 "%s us per page at the first touch after an mremap move." % (
                     meta["page_touch_us"], meta.get("page_moved_us", "?")))
    if meta.get("hakmem_thp", "") != "":
        L.append("")
        L.append("hakmem ran with HAKMEM_THP=%s (1: huge pages for its segments and large blocks)." %
                 meta["hakmem_thp"])
    skipped = [a for a, v in meta["allocators"].items() if v.startswith("skipped")]
    for a in skipped:
        L.append("")
        L.append("%s: %s" % (a, meta["allocators"][a]))
    L.append("")
    L.append("Throughput, ops/s (allocs/s for larson), median [min-max] of the runs; "
             "hakmem/peer = ratio of medians (> 1: hakmem faster).")
    L.append("")
    hdr = ["workload"] + allocs + ["hakmem/%s" % p for p in peers]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|")
    for w in meta["workloads"]:
        name = w["name"]
        row = [name]
        for a in allocs:
            c = summary[name].get(a)
            if not c:
                row.append("-")
            elif "ops_median" not in c:
                row.append("FAILED")
            else:
                s = "%s [%s-%s]" % (fmt_ops(c["ops_median"]), fmt_ops(c["ops_min"]),
                                    fmt_ops(c["ops_max"]))
                if c["failed"]:
                    s += " (%d failed)" % c["failed"]
                row.append(s)
        for p in peers:
            e = ratios[name].get(p, {})
            row.append("%.2f" % e["ops"] if "ops" in e else "-")
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("Peak RSS (ru_maxrss of the program, median); hakmem/peer < 1: hakmem smaller.")
    L.append("")
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|")
    for w in meta["workloads"]:
        name = w["name"]
        row = [name]
        for a in allocs:
            c = summary[name].get(a) or {}
            row.append(fmt_rss(c.get("rss_kb_median")))
        for p in peers:
            e = ratios[name].get(p, {})
            row.append("%.2f" % e["rss"] if "rss" in e else "-")
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.extend(against_best(meta, peers, ratios))
    return "\n".join(L)


def against_best(meta, peers, ratios):
    """The third table: hakmem against the best peer of each workload, the
    issue's targets (throughput at or above the fastest peer, peak RSS within
    10% of the smallest). The lowest ratio is the one to the best peer. Best
    runs: each allocator's fastest run, steadier on a shared machine and
    where a workload's runs fall into two modes (xthread on 2 cores)."""
    def worst(name, key):
        e = [(ratios[name][p][key], p) for p in peers if key in ratios[name].get(p, {})]
        return (min if key != "rss" else max)(e) if e else None

    L = ["hakmem against the best peer of each workload: ops/s ratio to the fastest peer (of "
         "medians, and of each allocator's best run), peak RSS ratio to the smallest.",
         "",
         "| workload | fastest peer | hakmem/fastest | fastest by best run | hakmem/fastest, best runs "
         "| smallest peer | hakmem/smallest RSS |",
         "|---|---|---:|---|---:|---|---:|"]
    for w in meta["workloads"]:
        name = w["name"]
        row = [name]
        for key in ("ops", "ops_best", "rss"):
            r = worst(name, key)
            row += [r[1], "%.2f" % r[0]] if r else ["-", "-"]
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    return L


def chart(meta, allocs, summary, out):
    dat = os.path.join(out, "results.dat")
    gp = os.path.join(out, "results.gp")
    svg = os.path.join(out, "results.svg")
    for stale in ("results.svg", "results.png", "results-ratio.png"):
        if os.path.exists(os.path.join(out, stale)):
            os.unlink(os.path.join(out, stale))
    with open(dat, "w") as f:
        f.write("workload " + " ".join(allocs) + "\n")
        for w in meta["workloads"]:
            c = summary[w["name"]]
            vals = []
            for a in allocs:
                v = (c.get(a) or {}).get("ops_median")
                vals.append("%.1f" % v if v else "NaN")
            f.write('"%s" %s\n' % (w["name"], " ".join(vals)))
    n = len(meta["workloads"])
    vals = [c.get("ops_median") for w in meta["workloads"] for c in summary[w["name"]].values()]
    vals = [v for v in vals if v]
    ylo = 10 ** math.floor(math.log10(min(vals))) if vals else 1
    png = os.path.join(out, "results.png")
    with open(gp, "w") as f:
        f.write("""# gnuplot script written by scripts/bench-report.py
#   gnuplot results.gp                 -> results.svg
#   gnuplot -e "fmt='png'" results.gp  -> results.png (pngcairo)
if (!exists("fmt")) fmt = "svg"
if (fmt eq "png") {
  set terminal pngcairo size %d,700 font "sans,10" background rgb "white"
  set output "%s"
} else {
  set terminal svg size %d,700 dynamic font "sans,11" background rgb "white"
  set output "%s"
}
set title "make bench: ops/s per workload and allocator (median; log scale; %s)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [%g:*]
set format y "10^{%%T}"
set ylabel "ops/s (allocs/s for larson)"
set grid ytics
set xtics rotate by -45 scale 0 font ",10" noenhanced
set key outside right top noenhanced
set bmargin 9
set datafile missing "NaN"
plot for [i=2:%d] "%s" using i:xtic(1) title columnheader(i)
""" % (max(900, 60 * n + 300), png, max(900, 60 * n + 300), svg, meta.get("date", ""),
       ylo, len(allocs) + 1, dat))
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("bench-report: chart skipped: gnuplot is not installed (apt-get install gnuplot-nox; "
              "data and script: %s, %s)" % (dat, gp))
        return []
    made = []
    for fmt, path in (("svg", svg), ("png", png)):
        if os.path.exists(path):
            os.unlink(path)
        r = subprocess.run([gnuplot, "-e", "fmt='%s'" % fmt, gp], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(path) or os.path.getsize(path) == 0:
            print("bench-report: gnuplot (%s) failed:\n%s" % (fmt, r.stderr), file=sys.stderr)
            continue
        made.append(path)
    made += ratio_chart(meta, allocs, out, gnuplot)
    return made


def ratio_chart(meta, allocs, out, gnuplot):
    """results-ratio.png: hakmem's throughput relative to each peer (median/median)."""
    peers = [a for a in allocs if a != "hakmem"]
    if "hakmem" not in allocs or not peers:
        return []
    res = json.load(open(os.path.join(out, "results.json")))
    dat = os.path.join(out, "results-ratio.dat")
    gp = os.path.join(out, "results-ratio.gp")
    png = os.path.join(out, "results-ratio.png")
    with open(dat, "w") as f:
        f.write("workload " + " ".join(peers) + "\n")
        for w in meta["workloads"]:
            r = res["ratios"].get(w["name"], {})
            f.write('"%s" %s\n' % (w["name"], " ".join(
                "%.4f" % r[p]["ops"] if "ops" in r.get(p, {}) else "NaN" for p in peers)))
    if not any("ops" in e for r in res["ratios"].values() for e in r.values()):
        print("bench-report: ratio chart skipped: no hakmem/peer ratio (did hakmem fail?)")
        return []
    n = len(meta["workloads"])
    with open(gp, "w") as f:
        f.write("""# gnuplot script written by scripts/bench-report.py
set terminal pngcairo size %d,700 font "sans,10" background rgb "white"
set output "%s"
set title "make bench: hakmem ops/s / peer ops/s (medians; > 1: hakmem faster; log scale; %s)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 2
set ylabel "hakmem / peer"
set grid ytics
set xtics rotate by -45 scale 0 font ",10" noenhanced
set key outside right top noenhanced
set bmargin 9
set datafile missing "NaN"
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb "black"
plot for [i=2:%d] "%s" using i:xtic(1) title "hakmem/".columnheader(i)
""" % (max(900, 50 * n + 300), png, meta.get("date", ""), len(peers) + 1, dat))
    r = subprocess.run([gnuplot, gp], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(png) or os.path.getsize(png) == 0:
        print("bench-report: gnuplot (ratio chart) failed:\n%s" % r.stderr, file=sys.stderr)
        return []
    return [png]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    meta = read_meta(args.meta)
    samples = read_samples(args.samples)
    allocs, summary, ratios = summarize(meta, samples)
    doc = {
        "format": "hakmem-bench/1",
        "meta": {k: v for k, v in meta.items() if k not in ("allocators", "workloads")},
        "allocators": meta["allocators"],
        "workloads": meta["workloads"],
        "samples": samples,
        "summary": summary,
        "ratios": ratios,
    }
    os.makedirs(args.out, exist_ok=True)
    js = os.path.join(args.out, "results.json")
    with open(js, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    stamp = meta.get("date", "unknown").replace(":", "").replace("-", "")
    shutil.copyfile(js, os.path.join(args.out, "bench-%s.json" % stamp))
    md = markdown(meta, allocs, summary, ratios)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    print()
    print(md)
    charts = chart(meta, allocs, summary, args.out)
    print("bench-report: " + ", ".join([js, os.path.join(args.out, "results.md")] + charts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
