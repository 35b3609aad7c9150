#!/usr/bin/env python3
"""scripts/mutants/run.py (make mutants): mutation testing of hakmem's suite.

Each mutant in scripts/mutants/catalog.txt is a small hand-written bug in
alloc/: one or more hunks, each a file, an exact `old` snippet that must
occur exactly once in that file, and the `new` text that replaces it. For
each mutant the runner copies a pristine snapshot of the tree (with the
snapshot's build outputs) into its own directory under the work directory,
applies the hunks there, and runs a FIXED selection of the suite, cheapest
first, stopping at the first check that fails: the mutant is KILLED by that
check. If every check passes it SURVIVED (a gap in the suite). A mutant
whose snippet occurs 0 or 2+ times, or that does not build, is an ERROR
(never counted as killed or survived). A mutant whose per-mutant BUDGET
ran out before the selection finished is TIMEOUT (counted as not killed).

The working tree is never written to: the snapshot is made from the files
git knows (tracked + untracked, not ignored), every change happens inside
the work directory, and the runner fingerprints the tree before and after.

Build outputs: the snapshot is built once (every configuration the
selection uses); each mutant's copy starts from those outputs and `make`
rebuilds what the mutated file invalidates (its objects, libraries, test
and fuzz binaries). No check result is ever reused: every check of every
mutant runs in that mutant's own copy.

Usage: run.py [--list] [--check-apply] [--mutants a,b] [--jobs N]
              [--budget S] [--total-budget S] [--out DIR] [--keep]
              [--no-baseline] [--catalog FILE] [--stages a,b]
Outputs: OUT/results.json, OUT/results.md, OUT/logs/<mutant>/...
Exit status: 0 when every mutant that ran was killed (no survivor, no
error, no timeout), 1 otherwise, 2 on a usage/setup problem.
"""
import argparse
import concurrent.futures as cf
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CATALOG = os.path.join(ROOT, "scripts", "mutants", "catalog.txt")


# ---------------------------------------------------------------- catalog
class Mutant:
    def __init__(self, name):
        self.name = name
        self.meta = {}
        self.hunks = []  # (file, old, new)

    @property
    def bug_class(self):
        return self.meta.get("class", "")

    @property
    def expect(self):
        return self.meta.get("expect", "")


def parse_catalog(path):
    """The catalog format (see catalog.txt's header):
        === <name>
        class: <bug class>
        expect: <part of the suite expected to kill it>
        note: <free text, optional, repeatable>
        file: alloc/src/<file>      (applies to the hunks that follow)
        --- old
        <exact lines>
        --- new
        <replacement lines>
    Lines starting with '#' outside old/new sections are comments."""
    mutants, cur, fname, section, buf, pending_old = [], None, None, None, [], None

    def flush_section():
        nonlocal section, buf, pending_old
        if section is None:
            return
        text = "\n".join(buf)
        if section == "old":
            if pending_old is not None:
                raise SystemExit("%s: mutant %s: '--- old' without '--- new'" % (path, cur.name))
            pending_old = text
        else:
            if pending_old is None:
                raise SystemExit("%s: mutant %s: '--- new' without '--- old'" % (path, cur.name))
            if not fname:
                raise SystemExit("%s: mutant %s: hunk before any 'file:'" % (path, cur.name))
            cur.hunks.append((fname, pending_old, text))
            pending_old = None
        section, buf = None, []

    with open(path) as f:
        for raw in f.read().split("\n"):
            if raw.startswith("=== "):
                flush_section()
                if cur is not None and pending_old is not None:
                    raise SystemExit("%s: mutant %s: dangling '--- old'" % (path, cur.name))
                cur = Mutant(raw[4:].strip())
                mutants.append(cur)
                fname = None
                continue
            if raw in ("--- old", "--- new"):
                flush_section()
                section = raw[4:]
                continue
            # a 'file:' line ends a hunk's new text: the hunks after it are in
            # that file (until 2026-11-29 it was taken into the snippet, and a
            # mutant could change one file only)
            if section == "new" and re.match(r"^file: alloc/\S+$", raw):
                flush_section()
            if section is not None:
                buf.append(raw)
                continue
            if not raw.strip() or raw.startswith("#"):
                continue
            if cur is None:
                raise SystemExit("%s: text before the first '=== name': %r" % (path, raw))
            m = re.match(r"^(\w+):\s*(.*)$", raw)
            if not m:
                raise SystemExit("%s: mutant %s: cannot parse %r" % (path, cur.name, raw))
            k, v = m.group(1), m.group(2)
            if k == "file":
                fname = v
            elif k == "note":
                cur.meta["note"] = (cur.meta.get("note", "") + " " + v).strip()
            else:
                cur.meta[k] = v
    flush_section()
    # trailing blank lines and '# ' comment lines after a section belong to the
    # layout of the catalog, not to the snippet
    def trim(t):
        lines = t.split("\n")
        while lines and (not lines[-1].strip() or lines[-1] == "#" or lines[-1].startswith("# ")):
            lines.pop()
        return "\n".join(lines)

    for m in mutants:
        m.hunks = [(f, trim(o), trim(n)) for f, o, n in m.hunks]
        if not m.hunks:
            raise SystemExit("%s: mutant %s has no hunk" % (path, m.name))
        for k in ("class", "expect"):
            if k not in m.meta:
                raise SystemExit("%s: mutant %s has no '%s:'" % (path, m.name, k))
    names = [m.name for m in mutants]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SystemExit("%s: duplicate mutant names: %s" % (path, ", ".join(sorted(dup))))
    return mutants


def apply_mutant(m, tree, write=True):
    """Applies m's hunks in `tree`. Returns None, or the reason it does not
    apply (a snippet found 0 or 2+ times, a missing file)."""
    tree = os.path.realpath(tree)
    if write and tree == os.path.realpath(ROOT):
        raise RuntimeError("refusing to mutate the working tree")
    texts = {}
    for fname, old, new in m.hunks:
        p = os.path.join(tree, fname)
        if not os.path.realpath(p).startswith(tree + os.sep):
            return "%s: path outside the tree" % fname
        if fname not in texts:
            try:
                with open(p) as f:
                    texts[fname] = f.read()
            except OSError as e:
                return "%s: %s" % (fname, e.strerror)
        n = texts[fname].count(old)
        if n != 1:
            first = old.strip().split("\n")[0][:60]
            return "%s: snippet %r found %d times (must be exactly once)" % (fname, first, n)
        texts[fname] = texts[fname].replace(old, new, 1)
    if write:
        for fname, text in texts.items():
            p = os.path.join(tree, fname)
            with open(p, "w") as f:
                f.write(text)
            os.utime(p, None)  # newer than every build output of the snapshot
    return None


# ---------------------------------------------------------------- the selection
FUZZERS = ["fuzz_ops", "fuzz_mt", "fuzz_sizes"]
STRESS_PROGS = ["larson", "remote_free", "thread_churn", "fork_stress", "realloc_storm", "aligned_storm"]
SYMBOLIZER = shutil.which("llvm-symbolizer-14") or shutil.which("llvm-symbolizer") or ""


def san_env(cfg, root):
    e = {}
    if cfg == "asan":
        e["ASAN_OPTIONS"] = "abort_on_error=0:detect_leaks=1"
    elif cfg == "tsan":
        opts = "halt_on_error=1 second_deadlock_stack=1 exitcode=66"
        if os.path.exists(os.path.join(root, "tsan", "tsan.supp")):
            opts += " suppressions={root}/tsan/tsan.supp"
        e["TSAN_OPTIONS"] = opts
    elif cfg == "ubsan":
        e["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    if cfg in ("asan", "tsan", "ubsan") and SYMBOLIZER:
        e["ASAN_SYMBOLIZER_PATH"] = SYMBOLIZER
        e["LLVM_SYMBOLIZER_PATH"] = SYMBOLIZER
    return e


def noaslr():
    try:
        arch = os.uname().machine
        if subprocess.run(["setarch", arch, "-R", "true"], capture_output=True).returncode == 0:
            return ["setarch", arch, "-R"]
    except OSError:
        pass
    return []


NOASLR = noaslr()


def c_tests(root):
    d = os.path.join(root, "tests")
    return sorted(f[:-2] for f in os.listdir(d) if f.startswith("test_") and f.endswith(".c"))


class Check:
    """One command of the selection. kind: 'build' (a failure makes the
    mutant an ERROR) or 'test' (a failure kills it). timeout in seconds;
    a timeout kills the mutant too (a hang is a detected failure)."""

    def __init__(self, stage, name, argv, kind="test", timeout=180, env=None):
        self.stage, self.name, self.argv, self.kind = stage, name, argv, kind
        self.timeout, self.env = timeout, env or {}

    @property
    def id(self):
        return "%s:%s" % (self.stage, self.name) if self.name else self.stage


# The tsan configuration with the trace recorder compiled in (check.sh, the
# tsan stage below, base_build).
TSAN_TRACE_MAKE = ["CONFIG=tsan", "B=build/tsan-trace", "EXTRA_CFLAGS=-DHAK_TRACE=1"]
TSAN_TRACE_TEST = "build/tsan-trace/tests/test_trace_flush_race"


def selection(root, makej, scale):
    """The fixed selection, cheapest and most likely to kill first. Each stage
    is a list of checks; the whole selection is their concatenation."""
    tests = c_tests(root)
    mk = ["make", "-s", "-j%d" % makej]
    sc = {"HAK_TEST_SCALE": str(scale)}
    S = []

    def tests_of(cfg, names, wrap=(), timeout=90, extra=None):
        for t in names:
            if t in tests:
                env = dict(sc)
                env.update(san_env(cfg, root))
                env.update(extra or {})
                S.append(Check("%s/tests" % cfg, t, list(wrap) + ["build/%s/tests/%s" % (cfg, t)],
                               timeout=timeout, env=env))

    # 1. release: build, unit tests, LD_PRELOAD of libhakmem.so
    S.append(Check("release/build", "", mk + ["CONFIG=release", "tests"], "build", 900))
    tests_of("release", tests)
    so = "{root}/build/release/libhakmem.so"  # {root}: the mutant's own tree, filled in at run time
    if os.path.exists(os.path.join(root, "tests", "test_cpp_threads.cpp")):
        S.append(Check("release/preload", "test_cpp_threads",
                       ["env", "LD_PRELOAD=" + so, "build/release/tests/test_cpp_threads"], timeout=30))
    S.append(Check("release/preload", "python3",
                   ["env", "LD_PRELOAD=" + so, "PYTHONMALLOC=malloc", "python3", "-c",
                    "import json; d = {str(i): [i] * (i % 50) for i in range(20000)}; "
                    "s = json.dumps(d); assert json.loads(s) == d; print(len(s))"], timeout=30))

    def preload_check(prog, name, cmd, make=()):
        """A release/preload check with tests/preload/<prog>.c or .cpp (left out in a
        tree without it): `make -s` of build/release/preload/<prog> and of
        `make` there (the library's copies without DF_1_INITFIRST: the
        Makefile's rules), then bash runs `cmd` with $1 the mutant's
        libhakmem.so and $P build/release/preload. A hang is a kill (60 s)."""
        if any(os.path.exists(os.path.join(root, "tests", "preload", prog + ext))
               for ext in (".c", ".cpp")):
            script = "P=build/release/preload && make -s %s && %s" % (
                " ".join("$P/" + t for t in [prog] + list(make)), cmd)
            S.append(Check("release/preload", name, ["bash", "-c", script, "_", so], timeout=60))

    # a library constructor, run before hakmem's, whose first allocating call
    # is pthread_atfork (tests/preload/atfork_ctor.c)
    preload_check("atfork_ctor", "atfork_ctor", 'env LD_PRELOAD="$1" $P/atfork_ctor --expect-hakmem')
    # hakmem's constructor first of all (libhakmem.so linked -z initfirst)
    preload_check("atfork_ctor", "atfork_ctor-init-first", 'f=$(env LD_DEBUG=libs LD_PRELOAD="$1" $P/atfork_ctor '
                  '2>&1 >/dev/null | grep -m1 "calling init:"); echo "first: ${f##* }"; [ "${f##* }" = "$1" ]')
    # the constructor before hakmem's: a copy of the library without
    # DF_1_INITFIRST, no forks in the constructor
    preload_check("atfork_ctor", "atfork_ctor-no-initfirst", 'env ATFORK_CTOR_NOFORK=1 '
                  'LD_PRELOAD="$PWD/$P/libhakmem-no-initfirst.so" $P/atfork_ctor --expect-hakmem',
                  ["libhakmem-no-initfirst.so"])
    # the whole malloc API through the libc names and glibc's __libc_* names
    # (tests/preload/api_all.c): the interposed symbols are hakmem's
    preload_check("api_all", "api_all", 'env LD_PRELOAD="$1" $P/api_all --expect-hakmem')
    # threads exiting while hakmem's key is at index 32 or more (a library's
    # constructor takes 40 keys before hakmem's, under a copy of the library
    # without DF_1_INITFIRST; tests/preload/tsd_exit.c)
    preload_check("tsd_exit", "tsd_exit-high-key",
                  'env LD_PRELOAD="$PWD/$P/libhakmem-no-initfirst-tsd.so" $P/tsd_exit --expect-high-key',
                  ["libhakmem-no-initfirst-tsd.so"])
    # a C++ program and a library it dlopens using what real programs use
    # around the allocator (tests/preload/cxx_mix.cpp): hakmem's blocks,
    # hak_heap_check, exiting threads' blocks back
    preload_check("cxx_mix", "cxx_mix",
                  'env LD_PRELOAD="$1" $P/cxx_mix --expect-hakmem "$PWD/$P/libcxx_mix.so"')
    # 2. the fuzz corpus replayed by the release standalone drivers (shadow model)
    S.append(Check("fuzz/build-release", "", mk + ["build/fuzz/release/%s" % d for d in FUZZERS], "build", 900))
    S.append(Check("fuzz/replay-release", "", ["fuzz/replay.sh", "-m", "release"] + FUZZERS, timeout=400))
    # 2b. debug: HAK_DEBUG's own checks of free blocks, which the asan build
    # leaves to ASan (test_failure_paths writes into free blocks only there)
    S.append(Check("debug/build", "", mk + ["CONFIG=debug", "build/debug/tests/test_failure_paths"],
                   "build", 900))
    tests_of("debug", ["test_failure_paths"])
    # 3. asan (with HAK_DEBUG's assertions): poisoning of free blocks and slack
    S.append(Check("asan/build", "", mk + ["CONFIG=asan", "tests"], "build", 900))
    tests_of("asan", tests)
    # 4. valgrind: the client requests
    S.append(Check("valgrind/build", "", mk + ["CONFIG=valgrind", "tests"], "build", 900))
    tests_of("valgrind", ["test_valgrind_catches"])
    # 5. tsan: the cross-thread paths (the only stage that sees memory-order bugs)
    S.append(Check("tsan/build", "", mk + ["CONFIG=tsan", "tests", "build/tsan/stress/larson",
                                           "build/tsan/stress/remote_free",
                                           "build/tsan/stress/thread_churn",
                                           "build/tsan/stress/realloc_storm", "build/fuzz/tsan/fuzz_mt"],
                   "build", 900))
    # the tests first: test_heap_publish puts its race on cue, the stress
    # runs find theirs by chance
    tests_of("tsan", ["test_heap_publish", "test_mt_smoke", "test_thread_exit",
                      "test_fork_concurrent"], wrap=NOASLR)
    # the trace recorder under TSan too (build/tsan-trace: the tsan configuration
    # with HAK_TRACE; the trace configuration has no TSan)
    if "test_trace_flush_race" in tests:
        S.append(Check("tsan/build-trace", "", mk + TSAN_TRACE_MAKE + [TSAN_TRACE_TEST], "build", 900))
        S.append(Check("tsan/trace-tests", "test_trace_flush_race", list(NOASLR) + [TSAN_TRACE_TEST],
                       timeout=90, env=dict(sc, **san_env("tsan", root))))
    S.append(Check("tsan/stress", "", ["env", "THREADS=4", "CHUNKS=1024", "DURATION=2",
                                       "HAK_RESULTS=build/mutant-stress.tsv",
                                       "scripts/stress.sh", "run", "tsan"], timeout=300))
    S.append(Check("fuzz/replay-tsan", "", ["fuzz/replay.sh", "-m", "tsan", "fuzz_mt"], timeout=400))
    # 6. release stress: all six programs, content and heap checks, watchdog
    S.append(Check("release/stress-build", "", mk + ["CONFIG=release", "stress-bins"] +
                   ["build/release/stress/%s.libc" % p for p in STRESS_PROGS], "build", 900))
    S.append(Check("release/stress", "", ["env", "THREADS=4", "CHUNKS=1024", "DURATION=1",
                                          "HAK_RESULTS=build/mutant-stress.tsv",
                                          "scripts/stress.sh", "run", "release", "prefixed", "preload"],
                   timeout=400))
    # 6b. the trace build and its replay (repro/tests/steps.sh): a program
    # recorded under the trace library must replay with every outcome the
    # same (a recorder that mislabels an op or an argument shows there)
    if os.path.exists(os.path.join(root, "repro", "tests", "trace_edges.c")):
        S.append(Check("trace/build", "", mk + ["CONFIG=trace", "lib", "tests"], "build", 900))
        tests_of("trace", ["test_trace_fork_init", "test_trace_inflight_free",
                           "test_trace_realloc_order", "test_trace_secure", "test_trace_cancel",
                           "test_trace_errno", "test_trace_flush_race"],
                 timeout=60)
        S.append(Check("trace/build-valgrind", "", mk + ["CONFIG=valgrind", "lib"], "build", 900))
        S.append(Check("trace/build-tools", "", mk + ["build/repro/release/replay",
                                                      "build/repro/asan/replay",
                                                      "build/repro/valgrind/replay",
                                                      "build/repro/tracecat", "build/repro/trace2fuzz",
                                                      "build/repro/trace_edges",
                                                      "build/release/stress/remote_free.libc",
                                                      "build/fuzz/release/fuzz_mt"],
                       "build", 900))
        # every step of repro/tests/steps.sh (its `list`, in its order, as
        # make check's 30-repro.sh runs them; a new step is in the stage
        # unless named here) but these:
        #  - plant-*: they need the planted-bug builds (make repro-plant-bins:
        #    a trace library, replay in release, asan and tsan, fuzz_mt), five
        #    more builds of alloc/ in every mutant's copy, for the crash
        #    pipeline's replay, trace2fuzz and triage of a planted crash
        #    (plant-triage alone takes minutes);
        #  - the stress and python traces replayed again: in asan, tsan (whose
        #    replay is not built here) and valgrind (what those builds see of
        #    alloc/ their own stages see; a recorder mutant shows in
        #    replay-stress-release, which compares every recorded outcome),
        #    serially, and python's in release;
        #  - trace2fuzz-edges (trace2fuzz's warnings) and rr-detect (rr-record
        #    on this machine's rr): a second or two each, and no mutant of the
        #    catalog needs them (mismatch-detected joined for
        #    replay-usable-mismatch-unreported).
        # (A step left out joins the stage when a mutant passes the stage
        # and that step kills it, as replay-clock, trace-reentered and
        # trace-fork-flush did for trace-ms-seconds,
        # trace-reentered-flag-dropped and trace-fork-child-keeps-writer-flag.)
        left_out = {"plant-record", "plant-replay-10x", "plant-replay-asan", "plant-replay-tsan",
                    "plant-needs-plant", "plant-trace2fuzz", "plant-triage",
                    "replay-stress-asan", "replay-stress-tsan", "replay-stress-valgrind", "replay-serial",
                    "replay-python-release", "replay-python-asan", "replay-python-tsan",
                    "replay-python-valgrind", "trace2fuzz-edges", "rr-detect"}
        steps = subprocess.run(["bash", "repro/tests/steps.sh", "list"], cwd=root, check=True,
                               capture_output=True, text=True).stdout.split()
        if left_out - set(steps):
            raise SystemExit("run.py: steps left out of trace/repro that repro/tests/steps.sh does not list: "
                             + ", ".join(sorted(left_out - set(steps))))
        for step in steps:
            if step not in left_out:
                S.append(Check("trace/repro", step, ["bash", "repro/tests/steps.sh", step], timeout=300))
    # 7. ASan+UBSan (libFuzzer build) replay, valgrind memcheck, short fuzz runs
    S.append(Check("fuzz/build", "", mk + ["fuzz-bins"], "build", 1200))
    S.append(Check("fuzz/replay-asan", "", ["fuzz/replay.sh", "-m", "asan"] + FUZZERS, timeout=400))
    for t in ("test_api", "test_mt_smoke", "test_sizeclass"):
        if t in tests:
            S.append(Check("valgrind/memcheck", t,
                           ["valgrind", "-q", "--error-exitcode=99", "--leak-check=no",
                            "build/valgrind/tests/%s" % t], timeout=300,
                           env={"HAK_TEST_SCALE": "0.25"}))
    S.append(Check("fuzz/replay-valgrind", "", ["fuzz/replay.sh", "-m", "valgrind"] + FUZZERS, timeout=400))
    for d in FUZZERS:
        S.append(Check("fuzz/run", d, ["env", "FUZZ_TIME=%d" % FUZZ_RUN_TIME, "FUZZ_MERGE=0", "JOBS=1",
                                       "fuzz/run.sh", d], timeout=FUZZ_RUN_TIME + 180))
    # 8. the benchmark tooling (scripts/bench-check.py, bench-report.py,
    # bench.sh): planted results and baselines, no build, about a second
    if os.path.exists(os.path.join(root, "scripts", "bench-check-selftest.sh")):
        S.append(Check("bench/selftest", "", ["scripts/bench-check-selftest.sh"], timeout=120))
    # 9. aarch64: make cross-check's fast set (its own build, tests under
    # qemu-aarch64 at 4, 16 and 64 KiB pages), where the toolchain is
    # installed: what the x86 build does not compile (the page size off x86)
    if os.path.exists(os.path.join(root, "scripts", "cross-check.sh")) and \
            shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64"):
        S.append(Check("cross/check", "", ["env", "CROSS_SET=fast", "JOBS=%d" % makej,
                                           "scripts/cross-check.sh"], timeout=600))
    return S


def expected_first(checks, m):
    """The selection with the configuration the catalog expects to kill `m`
    moved to the front (its build included), the rest in the usual order: a
    memory-order mutant that only TSan can see is then killed in the time of
    the TSan stage alone, not after every other stage has passed. A trace
    mutant (trace.c, repro/'s tools) changes nothing the other stages build:
    its stage goes first too, and so does a benchmark-tooling mutant's, and an
    aarch64 one's (code the x86 build does not compile)."""
    cfg = m.expect.split()[0].split("/")[0] if m.expect.split() else ""
    if cfg not in ("tsan", "asan", "valgrind", "trace", "debug", "bench", "cross"):
        return checks  # release is first anyway; fuzz stages need their builds in order
    first = [c for c in checks if c.stage.split("/")[0] == cfg]
    return first + [c for c in checks if c not in first]


FUZZ_RUN_TIME = int(os.environ.get("MUTANTS_FUZZ_TIME", "20"))

# What a failure log says: the first line that names the catching check.
CATCH_PATTERNS = [
    (r"WARNING: ThreadSanitizer: [^\n]*", "TSan"),
    (r"ERROR: AddressSanitizer: [\w-]+", "ASan"),
    (r"ERROR: LeakSanitizer[^\n]*", "LSan"),
    (r"runtime error: [^\n]*", "UBSan"),
    (r"tests/[\w/]+\.c:\d+: FAILED[^\n]*", "test"),
    (r"hakmem: heap check: [^\n]*", "heap check"),
    (r"hakmem: [^\n]*", "hakmem"),
    (r"fuzz: check failed[^\n]*", "fuzz model"),
    (r"CORRUPTION[^\n]*", "content check"),
    (r"HEAP CHECK[^\n]*", "heap check"),
    (r"WATCHDOG: deadline[^\n]*", "watchdog"),
    (r"==\d+== (Invalid [^\n]*|Mismatched[^\n]*|Conditional jump[^\n]*|Use of uninit[^\n]*)", "memcheck"),
    (r"caught by: [^\n]*", "stress"),
    (r"FINDING \([^\n]*", "fuzz"),
    (r"(FAIL|CHECK)[: ][^\n]*", "test"),
    (r"deadly signal|Segmentation fault|Aborted", "crash"),
]


def catch_reason(log_text, rc, timed_out):
    if timed_out:
        return "hang (timeout)"
    for pat, what in CATCH_PATTERNS:
        m = re.search(pat, log_text)
        if m:
            s = m.group(0).strip()
            return (s if what.lower() in s.lower() else "%s: %s" % (what, s))[:160]
    if rc is not None and rc < 0:
        return "killed by signal %d" % -rc
    return "exit %s" % rc


# ---------------------------------------------------------------- running
_procs_lock = threading.Lock()
_procs = set()
_stop = threading.Event()


def run_cmd(argv, cwd, env, timeout, log_path):
    """Runs argv in its own process group; returns (rc, timed_out, secs)."""
    full_env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CHECK_CONFIGS", "HAK_RESULTS", "HAK_LOGDIR"):
        full_env.pop(k, None)
    full_env.update(env)
    t0 = time.time()
    with open(log_path, "ab") as log:
        log.write(("# command: %s\n# cwd: %s\n# env: %s\n" % (" ".join(argv), cwd, env)).encode())
        log.flush()
        p = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        with _procs_lock:
            _procs.add(p)
        timed_out = False
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(p)
            p.wait()
        finally:
            with _procs_lock:
                _procs.discard(p)
        secs = time.time() - t0
        log.write(("\n# exit status: %s%s  (%.1fs)\n" % (p.returncode, " (timed out)" if timed_out else "",
                                                         secs)).encode())
    return p.returncode, timed_out, secs


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def copy_tree(src, dst):
    """cp -a src/. dst (build outputs included, mtimes kept)."""
    os.makedirs(dst, exist_ok=True)
    subprocess.run(["cp", "-a", src + "/.", dst], check=True)


def snapshot(work):
    """The working tree as git sees it (tracked + untracked, not ignored)
    copied into work/base. Files deleted in the tree are skipped."""
    base = os.path.join(work, "base")
    if os.path.exists(base):
        shutil.rmtree(base)
    os.makedirs(base)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    files = sorted({f.decode() for f in files if f and os.path.isfile(os.path.join(ROOT, f.decode()))})
    lst = os.path.join(work, "files.lst")
    with open(lst, "w") as f:
        f.write("\n".join(files) + "\n")
    subprocess.run("tar -C %s -cf - -T %s | tar -C %s -xf -" % (sh(ROOT), sh(lst), sh(base)),
                   shell=True, check=True)
    return base


def sh(s):
    return "'" + s.replace("'", "'\\''") + "'"


def fingerprint():
    """Hash of everything git would see in the working tree: status, the
    diff of tracked files, the contents of untracked ones."""
    h = hashlib.sha256()
    st = subprocess.run(["git", "status", "--porcelain", "-uall"], cwd=ROOT, capture_output=True).stdout
    h.update(st)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True).stdout.split(b"\0")
    per = {}
    for f in sorted(x.decode() for x in files if x):
        p = os.path.join(ROOT, f)
        try:
            with open(p, "rb") as fh:
                d = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            d = "missing"
        per[f] = d
        h.update(("%s %s\n" % (f, d)).encode())
    return h.hexdigest(), per


def run_selection(tree, checks, logdir, deadline, skip=frozenset(), stop_at_first=True, progress=None):
    """Runs the checks in order. Returns a dict: status (KILLED, SURVIVED,
    ERROR, TIMEOUT), by (check id), reason, secs, steps (every check run)."""
    os.makedirs(logdir, exist_ok=True)
    t0 = time.time()
    steps = []
    for c in checks:
        if _stop.is_set():
            return dict(status="TIMEOUT", by=None, reason="interrupted", secs=time.time() - t0, steps=steps)
        if c.id in skip:
            steps.append(dict(check=c.id, result="SKIP", secs=0.0))
            continue
        left = deadline - time.time()
        if left <= 1:
            return dict(status="TIMEOUT", by=None, reason="budget exhausted before %s" % c.id,
                        secs=time.time() - t0, steps=steps)
        log = os.path.join(logdir, re.sub(r"[^\w.-]", "_", c.id) + ".log")
        tmo = min(c.timeout, left)
        fill = lambda x: x.replace("{root}", tree)
        rc, timed_out, secs = run_cmd([fill(a) for a in c.argv], tree, {k: fill(v) for k, v in c.env.items()},
                                      tmo, log)
        ok = rc == 0 or (rc == 77 and c.kind == "test")
        budget_cut = timed_out and tmo < c.timeout
        res = "PASS" if ok else ("SKIP" if rc == 77 else ("HANG" if timed_out else "FAIL"))
        steps.append(dict(check=c.id, result=res, secs=round(secs, 1), log=log))
        if progress:
            progress(c.id, res, secs)
        if ok:
            continue
        with open(log, errors="replace") as f:
            text = f.read()
        if budget_cut:
            return dict(status="TIMEOUT", by=None, reason="budget exhausted during %s" % c.id,
                        secs=time.time() - t0, steps=steps)
        if c.kind == "build":
            m = re.search(r"[^\n]*\berror\b[^\n]*", text)
            why = m.group(0).strip()[:160] if m else catch_reason(text, rc, timed_out)
            return dict(status="ERROR", by=c.id, reason="does not build: " + why,
                        secs=time.time() - t0, steps=steps)
        if stop_at_first:
            return dict(status="KILLED", by=c.id, reason=catch_reason(text, rc, timed_out),
                        secs=time.time() - t0, steps=steps)
    failed = [s for s in steps if s["result"] in ("FAIL", "HANG")]
    if failed:
        return dict(status="KILLED", by=failed[0]["check"], reason="", secs=time.time() - t0, steps=steps)
    return dict(status="SURVIVED", by=None, reason="every check passed", secs=time.time() - t0, steps=steps)


def base_build(base, makej, logdir, deadline):
    """Builds every output the selection needs in the snapshot."""
    # the stress programs of each configuration: scripts/stress.sh's one list
    # (before, a copy kept here by hand)
    def progs(cfg):
        out = subprocess.check_output(["bash", "scripts/stress.sh", "progs", cfg], cwd=base, text=True)
        return out.split()
    targets = [
        ["CONFIG=release", "tests", "stress-bins"],
        ["CONFIG=debug", "build/debug/tests/test_failure_paths"],
        ["CONFIG=asan", "tests"],
        ["CONFIG=valgrind", "tests"],
        ["CONFIG=tsan", "tests"] + ["build/tsan/stress/%s" % p for p in progs("tsan")],
        TSAN_TRACE_MAKE + [TSAN_TRACE_TEST],
        ["CONFIG=release"] + ["build/release/stress/%s.libc" % p for p in progs("release")],
        ["fuzz-bins"],
    ]
    os.makedirs(logdir, exist_ok=True)
    log = os.path.join(logdir, "base-build.log")
    bad = []
    for t in targets:
        rc, to, secs = run_cmd(["make", "-s", "-j%d" % makej] + t, base, {}, max(60, deadline - time.time()), log)
        print("  base build: make %s: %s (%.0fs)" % (" ".join(t), "ok" if rc == 0 else "FAILED", secs), flush=True)
        if rc != 0:
            bad.append(" ".join(t))
    return bad


# ---------------------------------------------------------------- reports
def write_reports(out, meta, results, catalog_by_name):
    os.makedirs(out, exist_ok=True)
    killed = sum(1 for r in results if r["status"] == "KILLED")
    counted = sum(1 for r in results if r["status"] in ("KILLED", "SURVIVED", "TIMEOUT"))
    meta = dict(meta)
    meta["counts"] = {s: sum(1 for r in results if r["status"] == s)
                      for s in ("KILLED", "SURVIVED", "TIMEOUT", "ERROR", "NOT RUN")}
    meta["score"] = round(killed / counted, 4) if counted else None
    meta["score_text"] = "%d/%d killed (%s)" % (killed, counted,
                                                "%.0f%%" % (100.0 * killed / counted) if counted else "n/a")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(dict(format="hakmem-mutants/1", meta=meta, mutants=results), f, indent=2)
    L = []
    L.append("Mutation score: **%s**; %s. %s, %s." % (
        meta["score_text"], ", ".join("%d %s" % (v, k.lower()) for k, v in meta["counts"].items() if v),
        meta["date"], meta["how"]))
    L.append("")
    L.append("| mutant | bug class | expected killer | result | killed by | time |")
    L.append("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        by = r.get("by") or ""
        why = r.get("reason") or ""
        cell = ("`%s`: %s" % (by, why)) if by else why
        cell = cell.replace("|", "\\|")
        t = "%.0f s" % r["secs"] if r.get("secs") is not None and r["status"] != "NOT RUN" else ""
        L.append("| `%s` | %s | %s | %s | %s | %s |" % (
            r["name"], r["class"].replace("|", "\\|"), r["expect"].replace("|", "\\|"), r["status"], cell, t))
    if "baseline_s" in meta:
        L.append("")
        L.append("Baseline: the selection (%d checks) on the unmutated tree took %.0f s: %s." % (
            len(meta.get("selection", [])), meta["baseline_s"],
            "every check passed" if not meta.get("baseline_failures") else "some failed (below)"))
    if meta.get("baseline_failures"):
        L.append("")
        L.append("Checks that failed on the unmutated tree (left out of the selection): %s" %
                 ", ".join("`%s`" % c for c in meta["baseline_failures"]))
    if meta.get("tree_note"):
        L.append("")
        L.append(meta["tree_note"])
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(L) + "\n")


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", default=CATALOG)
    ap.add_argument("--mutants", default=os.environ.get("MUTANTS", ""), help="comma-separated names")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("MUTANTS_JOBS", "0") or 0))
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds per mutant (default 900)")
    ap.add_argument("--total-budget", type=float, default=0,
                    help="seconds for the whole run; mutants not started by then are NOT RUN")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "mutants"))
    ap.add_argument("--work", default=os.environ.get("MUTANTS_WORK", ""))
    ap.add_argument("--keep", action="store_true", help="keep each mutant's copy")
    ap.add_argument("--reuse-base", action="store_true",
                    help="with --work: reuse the snapshot and its build from an earlier run (development)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--baseline-only", action="store_true",
                    help="only run the selection on the unmutated tree (is every check green?)")
    ap.add_argument("--stages", default=os.environ.get("MUTANTS_STAGES", ""),
                    help="only checks whose id starts with one of these (comma-separated)")
    ap.add_argument("--scale", default=os.environ.get("MUTANTS_TEST_SCALE", "0.5"))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--merge", nargs="+", metavar="RESULTS_JSON",
                    help="combine earlier runs' results.json (later files win for the mutants they ran) "
                         "into --out's reports, in catalog order")
    ap.add_argument("--check-apply", action="store_true",
                    help="only check that every mutant applies to the current tree")
    args = ap.parse_args()

    catalog = parse_catalog(args.catalog)
    if args.merge:
        merged, metas = {}, []
        for path in args.merge:
            d = json.load(open(path))
            metas.append(d["meta"])
            for r in d["mutants"]:
                if r["status"] != "NOT RUN" or r["name"] not in merged:
                    merged[r["name"]] = r
        ordered = [merged[m.name] for m in catalog if m.name in merged]
        for r in ordered:  # the reasons again, with today's patterns
            st = [x for x in r.get("steps", []) if x["check"] == r.get("by")]
            if r["status"] == "KILLED" and st and st[-1].get("log") and os.path.exists(st[-1]["log"]):
                text = open(st[-1]["log"], errors="replace").read()
                rcm = re.findall(r"# exit status: (-?\d+)", text)
                r["reason"] = catch_reason(text, int(rcm[-1]) if rcm else None, st[-1]["result"] == "HANG")
        meta = dict(metas[-1])
        meta["date"] = " + ".join(sorted({x["date"] for x in metas}))
        meta["how"] = "; ".join(dict.fromkeys(x["how"] for x in metas)) + " (%d runs merged)" % len(metas)
        meta["tree_note"] = " ".join(dict.fromkeys(x.get("tree_note", "") for x in metas))
        write_reports(args.out, meta, ordered, {})
        print(open(os.path.join(args.out, "results.md")).read())
        return 0
    if args.list:
        for m in catalog:
            print("%-28s %-52s %s" % (m.name, m.bug_class[:52], m.expect))
        return 0
    if args.check_apply:
        bad = 0
        for m in catalog:
            why = apply_mutant(m, ROOT, write=False)
            if why:
                bad += 1
                print("ERROR  %s: does not apply: %s" % (m.name, why))
        print("mutants: %d in the catalog, %d apply, %d do not" % (len(catalog), len(catalog) - bad, bad))
        return 1 if bad else 0

    chosen = catalog
    if args.mutants:
        want = [w.strip() for w in args.mutants.split(",") if w.strip()]
        names = {m.name for m in catalog}
        unknown = [w for w in want if w not in names]
        if unknown:
            print("mutants: unknown mutant(s): %s" % ", ".join(unknown), file=sys.stderr)
            return 2
        chosen = [m for m in catalog if m.name in want]
    ncpu = os.cpu_count() or 1
    jobs = args.jobs or max(1, ncpu // 2)
    makej = max(1, ncpu // jobs)
    budget = args.budget or 900.0
    start = time.time()
    total_deadline = start + args.total_budget if args.total_budget else float("inf")
    out = args.out
    work = args.work or tempfile.mkdtemp(prefix="hakmem-mutants-")
    os.makedirs(work, exist_ok=True)
    logroot = os.path.join(out, "logs")
    if os.path.isdir(logroot):
        shutil.rmtree(logroot)
    os.makedirs(logroot, exist_ok=True)

    def on_signal(sig, frm):
        _stop.set()
        with _procs_lock:
            for p in list(_procs):
                kill_group(p)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    fp0, files0 = fingerprint()
    print("==> mutants: %d mutant(s), %d job(s), make -j%d, %ds per mutant, work dir %s" %
          (len(chosen), jobs, makej, budget, work), flush=True)
    results = {}
    # mutants that cannot apply are errors before anything is built
    for m in chosen:
        why = apply_mutant(m, ROOT, write=False)
        if why:
            results[m.name] = dict(status="ERROR", by=None, reason="does not apply: " + why, secs=0.0, steps=[])
            print("ERROR     %-28s does not apply: %s" % (m.name, why), flush=True)
    todo = [m for m in chosen if m.name not in results]
    if args.baseline_only:
        todo, chosen, results = [], [], {}

    meta = dict(date=datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
                how="`make mutants` (scripts/mutants/run.py), %d job(s) on %d CPU(s), %ds per mutant, "
                    "HAK_TEST_SCALE=%s, fuzz runs %ds" % (jobs, ncpu, budget, args.scale, FUZZ_RUN_TIME),
                commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                      capture_output=True, text=True).stdout.strip(),
                tree_dirty=bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                                               capture_output=True).stdout),
                jobs=jobs, budget_s=budget)
    baseline_fail = []
    rc = 0
    try:
        if todo or args.baseline_only:
            t = time.time()
            print("==> mutants: snapshot of the working tree", flush=True)
            if args.reuse_base and args.work and os.path.isdir(os.path.join(work, "base", "build")):
                base = os.path.join(work, "base")
                print("==> mutants: reusing the snapshot in %s (--reuse-base)" % base, flush=True)
            else:
                base = snapshot(work)
            bad = base_build(base, ncpu, logroot, min(total_deadline, time.time() + 3600))
            meta["base_build_s"] = round(time.time() - t, 1)
            if bad:
                print("==> mutants: the unmutated tree does not build (%s); see %s/base-build.log" %
                      ("; ".join(bad), logroot), flush=True)
                meta["base_build_failures"] = bad
                for m in todo:
                    results[m.name] = dict(status="ERROR", by=None, secs=0.0, steps=[],
                                           reason="the unmutated tree does not build: " + "; ".join(bad))
                todo = []
                rc = 1
            checks = selection(base, makej, args.scale)
            if args.stages:
                pre = [s.strip() for s in args.stages.split(",") if s.strip()]
                checks = [c for c in checks if any(c.id.startswith(p) for p in pre)]
            meta["selection"] = [c.id for c in checks]
            if not bad and (args.baseline_only or not args.no_baseline):
                print("==> mutants: baseline (the selection on the unmutated tree)", flush=True)
                bdir = os.path.join(work, "baseline")
                copy_tree(base, bdir)
                r = run_selection(bdir, checks, os.path.join(logroot, "_baseline"),
                                  min(total_deadline, time.time() + budget * 2), stop_at_first=False,
                                  progress=lambda c, res, s: res != "PASS" and print(
                                      "  baseline %s: %s (%.0fs)" % (c, res, s), flush=True))
                baseline_fail = [s["check"] for s in r["steps"] if s["result"] in ("FAIL", "HANG")]
                meta["baseline_s"] = round(r["secs"], 1)
                meta["baseline_failures"] = baseline_fail
                if r["status"] == "TIMEOUT":
                    meta["baseline_note"] = r["reason"]
                shutil.rmtree(bdir, ignore_errors=True)
                print("==> mutants: baseline %s in %.0fs%s" % (
                    "clean" if not baseline_fail else "FAILED " + ", ".join(baseline_fail), r["secs"],
                    "" if r["status"] != "TIMEOUT" else " (" + r["reason"] + ")"), flush=True)
            skip = frozenset(baseline_fail)

            def one(m):
                if _stop.is_set() or time.time() >= total_deadline:
                    return m.name, dict(status="NOT RUN", by=None, reason="total budget exhausted",
                                        secs=None, steps=[])
                d = os.path.join(work, m.name)
                if os.path.exists(d):
                    shutil.rmtree(d)
                copy_tree(base, d)
                why = apply_mutant(m, d)
                if why:
                    return m.name, dict(status="ERROR", by=None, reason="does not apply: " + why, secs=0.0,
                                        steps=[])
                r = run_selection(d, expected_first(checks, m), os.path.join(logroot, m.name),
                                  min(total_deadline, time.time() + budget), skip=skip)
                if not args.keep:
                    shutil.rmtree(d, ignore_errors=True)
                return m.name, r

            with cf.ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as ex:
                futs = [ex.submit(one, m) for m in todo]
                for fu in cf.as_completed(futs):
                    name, r = fu.result()
                    results[name] = r
                    print("%-9s %-28s %s%s" % (
                        r["status"], name,
                        ("%s: %s" % (r["by"], r["reason"])) if r.get("by") else r.get("reason", ""),
                        "  (%.0fs)" % r["secs"] if r.get("secs") else ""), flush=True)
    except KeyboardInterrupt:
        print("==> mutants: interrupted", flush=True)
        rc = 1
    finally:
        fp1, files1 = fingerprint()
        changed = sorted(f for f in set(files0) | set(files1) if files0.get(f) != files1.get(f))
        leaked = []
        for f in changed:
            p = os.path.join(ROOT, f)
            if not os.path.isfile(p):
                continue
            with open(p, errors="replace") as fh:
                text = fh.read()
            for m in catalog:
                if any(fn == f and new and new not in old and new in text for fn, old, new in m.hunks):
                    leaked.append("%s (%s)" % (f, m.name))
        if fp0 == fp1:
            meta["tree_note"] = "Working tree unchanged by the run (fingerprint %s)." % fp0[:12]
        elif leaked:
            meta["tree_note"] = "WORKING TREE MODIFIED BY A MUTANT: %s" % ", ".join(leaked)
            rc = 1
        else:
            meta["tree_note"] = ("Working tree changed during the run, not by a mutant (another process "
                                 "edited: %s)." % ", ".join(changed[:10]))
        meta["tree_unchanged"] = fp0 == fp1
        meta["total_s"] = round(time.time() - start, 1)
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
        ordered = []
        by = {m.name: m for m in catalog}
        for m in chosen:
            r = results.get(m.name) or dict(status="NOT RUN", by=None, reason="", secs=None, steps=[])
            ordered.append(dict(name=m.name, **{"class": m.bug_class}, expect=m.expect,
                                note=m.meta.get("note", ""),
                                hunks=[dict(file=f, old=o, new=n) for f, o, n in m.hunks], **r))
        write_reports(out, meta, ordered, by)
        print("==> mutants: %s" % meta["tree_note"])
    with open(os.path.join(out, "results.md")) as f:
        print(f.read())
    print("==> mutants: %s; reports %s/results.{md,json} (%.0fs)" % (
        "score " + json.load(open(os.path.join(out, "results.json")))["meta"]["score_text"], out,
        time.time() - start))
    if rc:
        return rc
    if args.baseline_only:
        return 1 if baseline_fail or meta.get("baseline_note") else 0
    bad = [r for r in ordered if r["status"] not in ("KILLED",)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
