#!/usr/bin/env bash
# scripts/test-preload.sh: real programs under LD_PRELOAD=build/release/libhakmem.so.
#
# Each case runs once without hakmem and once with it (every process of the
# case, the shell included, runs under the preload) and compares the results.
# One PASS/FAIL line per case in check.sh's format, appended to
# build/check-results.tsv with configuration "release-preload"; logs in
# build/logs/release-preload/. Exits non-zero if any case fails.
#
#   loaded       hakmem is really loaded: hak_config() via python3 ctypes
#   python       dict/list/str/json-heavy script (PYTHONMALLOC=malloc), checksum
#   git          init, add/commit 200 files, log/diff/gc/fsck, outputs compared
#   gcc          compile a C file with -O2, compare binaries and program output
#   sort         sort 2M deterministic random lines, compare sha256
#   compress     xz -T2 (and zstd -T2 when installed) round trip of 16 MB of the
#                sort input, compressed and decompressed sha256 (SKIP without xz)
#   python_mt    threads (ThreadPoolExecutor), a fork Pool after them, 20 forks
#                while two threads allocate, a subprocess; outputs compared
#   test_cpp_threads  the C++ 4-thread STL test (SKIP if not built / exit 77)
#   api_all      tests/preload/api_all.c (plain gcc build): whole malloc API
#   atfork_ctor  tests/preload/atfork_ctor.c: a library constructor whose
#                first allocating call is pthread_atfork, then forks while
#                threads allocate; atfork_ctor-init-first: hakmem's
#                constructor is the loader's first (-z initfirst);
#                atfork_ctor-no-initfirst: a copy without the flag, the
#                constructor before hakmem's (scripts/elf-clear-initfirst.py)
#   tsd_exit     tests/preload/tsd_exit.c: threads exiting while hakmem's
#                pthread key is at index 32 or more (a library constructor
#                creates 40 keys before hakmem's, under a copy without the
#                flag: tsd_exit-high-key); no heap may be pooled twice
#   cxx_mix      tests/preload/cxx_mix.cpp (plain g++ build) and the library
#                it dlopens: aligned new, cross-thread frees, exceptions in
#                threads, thread_local and key destructors, dlopen/dlclose,
#                fork under threads, spawn, env churn, libc functions that
#                allocate, glibc's allocator API; output compared with a run
#                without hakmem, hak_heap_check() == 0 under it
#   spawn_paths  tests/preload/spawn_paths.c (plain gcc build): posix_spawn,
#                posix_spawnp, system, popen, vfork with exec, _exit and a
#                failed exec, fork whose exec fails, a daemon's double fork,
#                while 4 threads allocate; every child's status, the exec'd
#                programs served by hakmem, hak_heap_check() == 0 and no
#                mappings gained in the parent
#   selftest-*   the comparison fails a program that crashes under the
#                preload though its output matches (tests/preload/crash_shim.c)
#
# Environment: HAK_PRELOAD_SO (preload this library instead; for testing the
# script itself), PRELOAD_TIMEOUT (per case, default 300), CHECK_APPEND=1 (keep
# existing results; default when called from check.sh).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
SO=${HAK_PRELOAD_SO:-$ROOT/build/release/libhakmem.so}
CFG=release-preload
PRE_DIR=$ROOT/build/release/preload

# ---------------------------------------------------------------------------
# Workloads. `test-preload.sh --work <name> <outdir>` runs one of them,
# writing its comparable result to <outdir>/result; the driver below runs it
# with and without LD_PRELOAD.
work_python() {
  PYTHONMALLOC=malloc python3 - >"$1/result" <<'PY'
import hashlib, json, random
rng = random.Random(12345)
d = {}
for i in range(200000):
    k = "key-%07d-%s" % (i, "abcdefghijklmnopq"[: i % 17])
    d[k] = [i, str(i * i), {"mod": i % 97, "f": i / 7.0}, "v" * (i % 40)]
for i in range(0, 200000, 3):          # churn: delete a third, re-add
    del d["key-%07d-%s" % (i, "abcdefghijklmnopq"[: i % 17])]
for i in range(0, 200000, 6):
    d["new-%d" % i] = list(range(i % 50))
keys = sorted(d, key=lambda s: s[::-1])
joined = ",".join(keys)
words = joined.replace("key", "K").split("-")
lst = [rng.random() for _ in range(200000)]
lst.sort()
js = json.dumps(d, sort_keys=True)
d2 = json.loads(js)
assert d2 == d
h = hashlib.sha256()
for part in (joined, js, repr(lst[:5000]), repr(len(words)), "".join(sorted(words[:50000]))):
    h.update(part.encode())
print(len(d2), len(keys), len(words), h.hexdigest())
PY
}

work_git() {
  local out=$1 repo=$1/repo
  export HOME=$1 GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null LC_ALL=C TZ=UTC
  export GIT_AUTHOR_NAME=hak GIT_AUTHOR_EMAIL=hak@example.invalid GIT_COMMITTER_NAME=hak
  export GIT_COMMITTER_EMAIL=hak@example.invalid
  export GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'
  git -c init.defaultBranch=main init -q "$repo" || return 1
  cd "$repo" || return 1
  local i idx
  idx=$(seq 1 200) # (a command substitution in `for` escapes set -e; an assignment does not)
  for i in $idx; do
    mkdir -p "d$((i % 10))"
    seq "$i" $((i * 7)) | sed "s/^/line $i: /" >"d$((i % 10))/file$i.txt"
  done
  git add -A && git commit -q -m "add 200 files" || return 1
  idx=$(seq 1 4 200)
  for i in $idx; do echo "change $i" >>"d$((i % 10))/file$i.txt"; done
  git rm -q -f d3/file13.txt && git mv d4/file14.txt d4/renamed14.txt
  export GIT_COMMITTER_DATE='2024-01-02T00:00:00Z' GIT_AUTHOR_DATE='2024-01-02T00:00:00Z'
  git commit -q -a -m "modify 50 files" || return 1
  {
    git log --stat --format='%H %an %s'
    git diff HEAD~1 HEAD --stat
    git diff HEAD~1 HEAD | sha256sum
    git gc -q --aggressive 2>&1
    git fsck --full --no-progress 2>&1
    git rev-parse HEAD 'HEAD^{tree}'
    git ls-tree -r HEAD | sha256sum
    git log --format=%H -p | sha256sum
    git count-objects -v | grep -E '^(count|in-pack|packs|garbage)'
  } >"$out/result"
}

work_gcc() {
  local d=$1
  cat >"$d/prog.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *next; unsigned long v; };
static int cmp(const void *a, const void *b) {
  unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
  return x < y ? -1 : x > y;
}
int main(void) {
  unsigned long x = 88172645463325252ul, sum = 0;
  struct node *head = NULL;
  for (int i = 0; i < 100000; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    struct node *n = malloc(sizeof *n + (x % 200));
    if (!n) return 1;
    n->v = x; n->next = head; head = n;
  }
  unsigned long *a = malloc(100000 * sizeof *a);
  size_t k = 0;
  while (head) { struct node *n = head; head = n->next; a[k++] = n->v; free(n); }
  qsort(a, k, sizeof *a, cmp);
  for (size_t i = 0; i < k; i += 997) sum = sum * 31 + a[i];
  char *s = strdup("hakmem");
  printf("%zu %lu %s\n", k, sum, s);
  free(s); free(a);
  return 0;
}
C
  gcc -O2 -Wall -o "$d/prog" "$d/prog.c" 2>"$d/gcc.err" || { cat "$d/gcc.err"; return 1; }
  { "$d/prog" && sha256sum <"$d/prog"; } >"$d/result"
}

work_sort() {
  local d=$1
  LC_ALL=C sort --parallel=2 -S 64M -T "$d" "$PRE_DIR/sort-input.txt" | sha256sum >"$d/result"
  LC_ALL=C sort -t' ' -k2,2n -k1,1 -S 16M -T "$d" "$PRE_DIR/sort-input.txt" | sha256sum >>"$d/result"
}

work_compress() {
  local d=$1
  head -c 16000000 "$PRE_DIR/sort-input.txt" >"$d/in"
  # -3: 12 MiB blocks, so the two threads each compress one
  xz -T2 -3 -c "$d/in" >"$d/in.xz"
  { sha256sum <"$d/in.xz"; xz -T2 -dc "$d/in.xz" | sha256sum; } >"$d/result"
  if command -v zstd >/dev/null; then
    zstd -q -T2 -5 -c "$d/in" >"$d/in.zst"
    { sha256sum <"$d/in.zst"; zstd -q -T2 -dc "$d/in.zst" | sha256sum; } >>"$d/result"
  fi
  rm -f "$d/in" "$d/in.xz" "$d/in.zst"
}

work_python_mt() {
  PYTHONMALLOC=malloc python3 - >"$1/result" <<'PY'
import concurrent.futures, hashlib, multiprocessing as mp, os, subprocess, threading
def work(i):
    d, s = {}, ""
    for j in range(20000):
        d["k%d-%d" % (i, j)] = [j, str(j) * 3, {"x": j % 97}]
        if j % 7 == 0:
            s += "abc%d" % j
    return hashlib.sha256((repr(sorted(d.items())) + s).encode()).hexdigest()
if __name__ == "__main__":
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        print(list(ex.map(work, range(8))))
    with mp.get_context("fork").Pool(2) as pool:  # forked after threads ran
        print(pool.map(work, range(4)))
    stop = threading.Event()
    def busy():
        while not stop.is_set():
            [str(k) * 3 for k in range(300)]
    ts = [threading.Thread(target=busy) for _ in range(2)]
    for t in ts:
        t.start()
    codes = []
    for k in range(20):  # fork while two threads allocate; a crash shows as -11
        pid = os.fork()
        if pid == 0:
            y = {str(n): [n] * 50 for n in range(2000 + k)}
            os._exit(len(y) % 251)
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    stop.set()
    for t in ts:
        t.join()
    print(codes)
    print(subprocess.run(["sh", "-c", "echo spawned"], capture_output=True, text=True).stdout)
PY
}

if [ "${1:-}" = --work ]; then
  # every command of a workload must succeed, not only its last: a crash
  # under the preload whose output matches anyway (git fsck prints nothing
  # when it passes; a crash at exit after the output) must fail the run
  set -e
  "work_$2" "$3"
  exit $?
fi

# `test-preload.sh --compare <name>`: baseline run, preloaded run, compare.
if [ "${1:-}" = --compare ]; then
  name=$2
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/hak-preload-$name.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/base" "$tmp/pre"
  echo "== baseline (no preload)"
  env -u LD_PRELOAD bash "$0" --work "$name" "$tmp/base" 2>&1 || { echo "baseline run failed"; exit 1; }
  echo "== under LD_PRELOAD=$SO"
  LD_PRELOAD=$SO bash "$0" --work "$name" "$tmp/pre" >"$tmp/pre.log" 2>&1
  rc=$?
  cat "$tmp/pre.log"
  if grep -q 'cannot be preloaded' "$tmp/pre.log"; then echo "hakmem was not preloaded"; exit 1; fi
  [ $rc -eq 0 ] || { echo "preloaded run failed (exit $rc)"; exit 1; }
  echo "== result (baseline)"; cat "$tmp/base/result"
  if ! cmp -s "$tmp/base/result" "$tmp/pre/result"; then
    echo "== results differ:"
    diff "$tmp/base/result" "$tmp/pre/result" | head -40
    exit 1
  fi
  echo "== same result with and without hakmem"
  exit 0
fi

# ---------------------------------------------------------------------------
# Driver.
. scripts/lib-check.sh
HAK_TIMEOUT=${PRELOAD_TIMEOUT:-300}
if [ "${CHECK_APPEND:-0}" = 1 ]; then results_ensure; else results_init; fi
fail=0

if [ -z "${HAK_PRELOAD_SO:-}" ] && { [ ! -e "$SO" ] || ! make -s -q CONFIG=release "build/release/libhakmem.so" >/dev/null 2>&1; }; then
  RUN_TIMEOUT=900 run_check "$CFG" build-lib make -j"${JOBS:-2}" CONFIG=release lib || fail=1
fi
if [ ! -e "$SO" ]; then
  record "$CFG" libhakmem.so FAIL 0.0
  echo "   ($SO does not exist; preload cases not run)"
  driver_done
  exit 1
fi
mkdir -p "$PRE_DIR"

# (0) hakmem is really loaded and answers through its own API.
run_check "$CFG" loaded bash -c '
  out=$(LD_PRELOAD="$1" python3 -c "
import ctypes
lib = ctypes.CDLL(None)
lib.hak_config.restype = ctypes.c_char_p
print(lib.hak_config().decode())") || exit 1
  echo "hak_config() = $out"
  [ "$out" = release ]' _ "$SO" || fail=1

# The sort input: 2M lines from a fixed LCG, generated once.
if [ ! -s "$PRE_DIR/sort-input.txt" ] || [ "$(wc -l <"$PRE_DIR/sort-input.txt")" != 2000000 ]; then
  awk 'BEGIN { x = 12345; for (i = 0; i < 2000000; i++) {
        x = (x * 1103515245 + 12345) % 2147483648
        printf "%08x%s %d\n", x, substr("qwertyuiopasdfghjklzxcvbnm", x % 20 + 1, x % 7), x % 100003 } }' \
    >"$PRE_DIR/sort-input.txt"
fi

for c in python git gcc sort python_mt; do
  run_check "$CFG" "$c" bash "$0" --compare "$c" || fail=1
done
if command -v xz >/dev/null; then
  run_check "$CFG" compress bash "$0" --compare compress || fail=1
else
  record "$CFG" compress SKIP 0.0
  echo "   (xz not installed)"
fi

# (d2) the comparison itself: a program that crashes under the preload fails
# the case even when its output is complete and matches (crash_shim stands in
# for a broken allocator): git fsck, which prints nothing when it passes,
# crashing at its start; the first of the two sorts crashing at its exit.
shim=$PRE_DIR/crash_shim.so
if run_check "$CFG" selftest-build gcc -shared -fPIC -O1 -Wall -Wextra -Werror \
  tests/preload/crash_shim.c -o "$shim"; then
  run_check "$CFG" selftest-crash-detected env SHIM="$shim" bash -c '
    caught() { # <workload> <CRASH_WHEN> <CRASH_AT>
      out=$(CRASH_WHEN="$2" CRASH_AT=$3 HAK_PRELOAD_SO=$SHIM bash scripts/test-preload.sh --compare "$1" 2>&1)
      rc=$?
      if [ $rc -eq 1 ] && printf "%s" "$out" | grep -q "preloaded run failed (exit 139)"; then
        echo "$1: the crash of \"$2\" at $3 was reported"
        return 0
      fi
      printf "%s\n" "$out" | tail -5
      echo "$1: the crash of \"$2\" at $3 was NOT reported (exit $rc)"
      return 1
    }
    caught git fsck start && caught sort "sort --parallel" exit' || fail=1
else
  fail=1
fi

# (e) the C++ 4-thread STL program.
cpp=$ROOT/build/release/tests/test_cpp_threads
if [ -x "$cpp" ]; then
  run_check "$CFG" test_cpp_threads env LD_PRELOAD="$SO" "$cpp" || fail=1
else
  record "$CFG" test_cpp_threads SKIP 0.0
  echo "   ($cpp not built)"
fi

# (f) the whole malloc API through the libc names, built without hakmem.
api=$PRE_DIR/api_all
if run_check "$CFG" api_all-build make -s build/release/preload/api_all; then
  run_check "$CFG" api_all-nopreload env -u LD_PRELOAD "$api" --expect-libc || fail=1
  run_check "$CFG" api_all env LD_PRELOAD="$SO" "$api" --expect-hakmem || fail=1
else
  fail=1
fi

# (f2) process creation other than a plain fork, under threads
# (tests/preload/spawn_paths.c). A hang is a failure within 120 s.
spawn=$PRE_DIR/spawn_paths
if run_check "$CFG" spawn_paths-build make -s build/release/preload/spawn_paths; then
  run_check "$CFG" spawn_paths-nopreload env -u LD_PRELOAD timeout 120 "$spawn" --expect-libc || fail=1
  run_check "$CFG" spawn_paths env LD_PRELOAD="$SO" timeout 120 "$spawn" --expect-hakmem || fail=1
else
  fail=1
fi

# (g) a library's constructor, run before hakmem's, whose first allocating
# call is pthread_atfork; forks in it and in main while threads allocate
# (tests/preload/atfork_ctor.c). A hang is a failure within 60 s.
actor=$PRE_DIR/atfork_ctor
if run_check "$CFG" atfork_ctor-build make -s build/release/preload/atfork_ctor; then
  run_check "$CFG" atfork_ctor-nopreload env -u LD_PRELOAD timeout 60 "$actor" || fail=1
  run_check "$CFG" atfork_ctor env LD_PRELOAD="$SO" timeout 60 "$actor" --expect-hakmem || fail=1
  # the loader runs hakmem's constructor (which registers its fork handlers)
  # before every other object's: libhakmem.so is linked with -z initfirst
  # (without it: ld.so, libc, libatfork_ctor.so, then hakmem)
  run_check "$CFG" atfork_ctor-init-first bash -c '
    first=$(env LD_DEBUG=libs LD_PRELOAD="$1" timeout 60 "$2" --expect-hakmem 2>&1 >/dev/null |
      grep -m1 "calling init:")
    echo "first constructor: ${first##* }"
    [ "${first##* }" = "$1" ]' _ "$SO" "$actor" || fail=1
  # the same constructor before hakmem's (a copy of the library without
  # DF_1_INITFIRST, as on a loader that ignores it: the Makefile's rule),
  # not forking there: the first heap, made inside glibc's pthread_atfork,
  # must not register hakmem's handlers from there (it waited for glibc's
  # atfork lock: a hang)
  run_check "$CFG" atfork_ctor-no-initfirst bash -c '
    make -s NO_INITFIRST_FROM="$1" build/release/preload/libhakmem-no-initfirst.so &&
      env ATFORK_CTOR_NOFORK=1 LD_PRELOAD="$3/libhakmem-no-initfirst.so" timeout 60 "$2" \
        --expect-hakmem' _ "$SO" "$actor" "$PRE_DIR" || fail=1
else
  fail=1
fi

# (h) threads exiting while hakmem's pthread key is at index 32 or more
# (tests/preload/tsd_exit.c): a library's constructor creates 40 keys
# before hakmem's constructor runs (a copy of the library without
# DF_1_INITFIRST); each exit must leave no heap pooled twice.
tsd=$PRE_DIR/tsd_exit
if run_check "$CFG" tsd_exit-build make -s NO_INITFIRST_FROM="$SO" build/release/preload/tsd_exit \
  build/release/preload/libhakmem-no-initfirst-tsd.so; then
  run_check "$CFG" tsd_exit-nopreload env -u LD_PRELOAD timeout 60 "$tsd" || fail=1
  run_check "$CFG" tsd_exit env LD_PRELOAD="$SO" timeout 60 "$tsd" || fail=1
  run_check "$CFG" tsd_exit-high-key env LD_PRELOAD="$PRE_DIR/libhakmem-no-initfirst-tsd.so" \
    timeout 60 "$tsd" --expect-high-key || fail=1
else
  fail=1
fi

# (i) a C++ program and a library it dlopens, using what real programs use
# around the allocator (tests/preload/cxx_mix.cpp); one line per part, the
# same output with hakmem as without, and under it the blocks of each part
# hakmem's and hak_heap_check() clean. A hang is a failure within 60 s.
mix=$PRE_DIR/cxx_mix
if run_check "$CFG" cxx_mix-build make -s build/release/preload/cxx_mix; then
  run_check "$CFG" cxx_mix bash -c '
    base=$(env -u LD_PRELOAD timeout 60 "$1" --expect-libc "$2/libcxx_mix.so") ||
      { printf "%s\n" "$base"; echo "baseline run failed"; exit 1; }
    pre=$(env LD_PRELOAD="$3" timeout 60 "$1" --expect-hakmem "$2/libcxx_mix.so")
    rc=$?
    printf "%s\n" "$pre"
    [ $rc -eq 0 ] || { echo "preloaded run failed (exit $rc)"; exit 1; }
    [ "$base" = "$pre" ] || { echo "outputs differ; baseline:"; printf "%s\n" "$base"; exit 1; }
    echo "== same output with and without hakmem"' _ "$mix" "$PRE_DIR" "$SO" || fail=1
else
  fail=1
fi

driver_done
exit $fail
