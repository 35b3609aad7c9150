#!/usr/bin/env python3
"""scripts/nightly/report.py OUT BUDGET_MIN ELAPSED_S: turns the nightly's
OUT/checks.tsv (check, status, seconds, detail, log) and OUT/findings.tsv
(check, what, reproduce commands ' ;; '-separated, triage) into
OUT/report.json and OUT/report.md. Exit 1 when a check failed, anything
was found, no check passed (all skipped), the budget did not reach a
selected check (STARVED) or a check has a status not in STATUSES, else 0."""
import datetime
import json
import os
import subprocess
import sys


# The statuses nightly.sh records. STARVED: a selected check the budget did
# not reach (until 2026-11-28 a SKIP told by its detail text, which had to
# equal nightly.sh's word for word). Any other status fails the nightly.
STATUSES = ("PASS", "FAIL", "SKIP", "STARVED")


def rows(path, n):
    out = []
    if os.path.exists(path):
        for line in open(path, errors="replace").read().splitlines():
            if line.strip():
                f = line.split("\t")
                out.append((f + [""] * n)[:n])
    return out


def main():
    out, budget, elapsed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    checks = rows(os.path.join(out, "checks.tsv"), 5)
    finds = rows(os.path.join(out, "findings.tsv"), 4)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    J = {"format": "hakmem-nightly/1",
         "date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
         "commit": commit, "budget_min": budget, "elapsed_s": elapsed, "checks": []}
    for name, status, secs, detail, log in checks:
        fl = [{"what": w, "reproduce": [c.strip() for c in rep.split(" ;; ") if c.strip()],
               "triage": tri} for cn, w, rep, tri in finds if cn == name]
        J["checks"].append({"name": name, "status": status, "duration_s": float(secs or 0),
                            "detail": detail, "log": log, "findings": fl})
    unknown = ["%s (%s)" % (c["name"], c["status"]) for c in J["checks"] if c["status"] not in STATUSES]
    failed = [c for c in J["checks"] if c["status"] not in ("PASS", "SKIP", "STARVED") or c["findings"]]
    nfind = sum(len(c["findings"]) for c in J["checks"])
    # A nightly in which no check passed (every one skipped: not selected,
    # not available, no budget left, or none recorded) verified nothing: not
    # a PASS (until 2026-11-28 it was "PASS (0 passed, 0 failed, 7 skipped)")
    ran = any(c["status"] == "PASS" for c in J["checks"])
    # A selected check the budget did not reach was not verified: the checks
    # before it overran their shares, or the budget is too small for the
    # plan (until 2026-11-28 such a nightly was a PASS, the mutants, last,
    # silently not run)
    starved = [c["name"] for c in J["checks"] if c["status"] == "STARVED"]
    J["result"] = "FAIL" if failed or not ran or starved else "PASS"
    J["starved"] = starved
    J["counts"] = {s: sum(1 for c in J["checks"] if c["status"] == s) for s in STATUSES}
    J["findings"] = nfind
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(J, f, indent=2)
    L = ["# hakmem nightly report", "",
         "%s, commit %s, budget %g min, ran %.0f s." % (J["date"], commit or "?", budget, elapsed), "",
         "**Result: %s** (%d passed, %d failed, %d skipped%s; %d finding(s))" % (
             J["result"], J["counts"]["PASS"], J["counts"]["FAIL"], J["counts"]["SKIP"],
             ", %d not reached" % len(starved) if starved else "", nfind), "",
         "| check | result | time | detail |", "| --- | --- | --- | --- |"]
    if not ran:
        L[4:4] = ["No check passed: the nightly verified nothing.", ""]
    elif starved:
        L[4:4] = ["The budget did not reach %s: not verified." % ", ".join(starved), ""]
    if unknown:
        L[4:4] = ["Status not known to report.py (%s): %s, counted as failed." % (
            ", ".join(STATUSES), ", ".join(unknown)), ""]
    for c in J["checks"]:
        L.append("| %s | %s | %.0f s | %s |" % (c["name"], c["status"], c["duration_s"],
                                                 c["detail"].replace("|", "\\|")))
    if nfind:
        L += ["", "## Findings", ""]
        for c in J["checks"]:
            for i, fd in enumerate(c["findings"], 1):
                L.append("### %s #%d: %s" % (c["name"], i, fd["what"]))
                L.append("")
                if fd["reproduce"]:
                    L.append("Reproduce:")
                    L.append("")
                    L.append("```sh")
                    L += fd["reproduce"]
                    L.append("```")
                if fd["triage"]:
                    L.append("")
                    L.append("Triage: %s" % fd["triage"])
                L.append("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(L).rstrip("\n") + "\n")
    return 1 if J["result"] == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
