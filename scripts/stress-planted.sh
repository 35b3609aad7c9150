#!/usr/bin/env bash
# scripts/stress-planted.sh: plants concurrency bugs in a temporary copy of
# the tree and shows which stress check catches each one.
#
# For each bug: copy the tree (without build/) to $PLANT_DIR/<bug>, apply the
# change with sed (the script fails if the sed did not change the file), run
# `make tsan-stress` there for the concurrency bugs (and, with
# PLANT_RELEASE=1, the default, the same programs in the release build,
# where only the content check, the heap check, the allocator's own checks
# and the watchdog can catch it), then the bug's proof runs (always: one
# release program each, PROOF_DURATION seconds, whose log must show what
# the named check prints), and print a table: bug, run, result, what caught
# it. The real tree is never modified. Exit status 0 when every planted bug
# was caught by its TSan run and by each of its proof runs.
#
# Environment: THREADS (4) CHUNKS (1024) DURATION (3) PLANT_DIR
# (/tmp/hakmem-planted) PLANT_BUGS (subset of the names below)
# PLANT_RELEASE (1) PROOF_DURATION (1)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PLANT_DIR=${PLANT_DIR:-/tmp/hakmem-planted}
THREADS=${THREADS:-4} CHUNKS=${CHUNKS:-1024} DURATION=${DURATION:-3}
BUGS=${PLANT_BUGS:-relaxed-remote-push plain-slice-end drop-on-drain dup-handout}

# plant <bug> <dir>: applies the bug's change in <dir>.
plant() {
  local f
  case $1 in
    relaxed-remote-push) # page_free_remote's push CAS: release -> relaxed
      f=$2/alloc/src/page.c
      sed -i '/^bool page_free_remote/,/^}/{
        /TF_COUNT_ONE) | (uintptr_t)b,$/{n; s/memory_order_release, memory_order_relaxed/memory_order_relaxed, memory_order_relaxed/}
      }' "$f" ;;
    plain-slice-end) # the carved end of a page's slice entries (what a remote
      # free's block-start check reads; page->capacity itself is read by the
      # owner only since free reads the slice entries): a plain store
      f=$2/alloc/src/internal.h
      sed -i '/^static inline void page_set_capacity/,/^}/{
        s/atomic_store_explicit(&sl\[k\].end, slice_entry_end(pg, cap, k), memory_order_relaxed);/*(uint32_t *)\&sl[k].end = slice_entry_end(pg, cap, k);/
      }' "$f" ;;
    drop-on-drain) # page_collect takes the remote list with load + store, not a CAS
      # (acquire/release kept, so TSan sees no race: only the lost block shows).
      # A sched_yield between the two widens the window the way a preemption
      # does: without it the push must land in a few instructions, which
      # needs two threads truly in parallel (pinned to one CPU with taskset,
      # 0 of 3 runs caught it; in fresh-clone make check it was missed in
      # both runs of 2 of 4 CIs)
      f=$2/alloc/src/page.c
      sed -i '/^size_t page_collect/,/^}/{
        s/uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);/uintptr_t tf = atomic_load_explicit(\&pg->thread_free, memory_order_acquire);/
        s/^  do {$/  {/
        s/^  } while (!atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf, tf & TF_MASK,$/  }\n  sched_yield();\n  atomic_store_explicit(\&pg->thread_free, tf \& TF_MASK, memory_order_release);/
        /^                                                  memory_order_acquire, memory_order_relaxed));$/d
      }' "$f" ;;
    dup-handout) # malloc remembers one thread-cache pop in 2^18 and hands the
      # same block out again at the thread's next malloc of that class, while
      # its first owner still holds it (a block on a free list twice)
      f=$2/alloc/src/api.c
      sed -i '/^static inline __attribute__((always_inline)) void \*small_alloc(size_t n, size_t cls, bool zero) {$/i\
static _Atomic unsigned long planted_dup_n;\
static __thread hak_block_t *planted_dup;\
static __thread size_t planted_dup_cls;
/^static inline __attribute__((always_inline)) void \*small_alloc(size_t n, size_t cls, bool zero) {$/,/^}/{
        s/^  hak_block_t \*cached = h->tc_head\[cls\];$/  if (unlikely(planted_dup != NULL) \&\& planted_dup_cls == cls) {\n    void *d = planted_dup;\n    planted_dup = NULL;\n    return d;\n  }\n&/
        s/^    return tcache_pop(h, cached, n, cls, zero);$/  {\n    void *p = tcache_pop(h, cached, n, cls, zero);\n    if ((atomic_fetch_add_explicit(\&planted_dup_n, 1, memory_order_relaxed) \& 0x3ffff) == 0x3ffff) {\n      planted_dup = p;\n      planted_dup_cls = cls;\n    }\n    return p;\n  }/
      }' "$f"
      # all three parts, or the bug is not what it says
      if ! { grep -q '^static __thread size_t planted_dup_cls;$' "$f" && grep -q '^    return d;$' "$f" &&
        grep -q '^      planted_dup = p;$' "$f"; }; then
        echo "stress-planted: the change for dup-handout applied only in part" >&2
        return 1
      fi ;;
    *) echo "unknown bug $1" >&2; return 1 ;;
  esac
  if cmp -s "$f" "$ROOT/${f#"$2"/}"; then
    echo "stress-planted: the change for $1 did not apply (source changed?)" >&2
    return 1
  fi
  diff -u "$ROOT/${f#"$2"/}" "$f" | sed 's/^/    /' || true
}

# tsan_run <bug>: whether make tsan-stress runs for it (the concurrency bugs;
# dup-handout is no race: every build's content check sees it, and a TSan
# run would cost make check 10 s more).
tsan_run() { [ "$1" != dup-handout ]; }

# proofs <bug>: its proof runs, one a line: <variant> <program> <regex the
# program's log must match> [program arguments]. Each shows one check
# catching the bug that once missed it:
#   drop-on-drain: remote_free.libc with hakmem preloaded counts the lost
#     blocks through the preloaded hak_stats (before 2026-11-27 the .libc
#     build only ran hak_heap_check, to which a lost block looks live: 0 of 16
#     runs caught it);
#   dup-handout: the owner's copy of size and tag; one size class, so a
#     freed duplicate goes straight to the next malloc and the other owner
#     finds another owner's header, not the free-list link (16 of 16 runs
#     named the duplicate; at default sizes 9 of 10). Before 2026-11-27 the
#     check read size and tag from the block and passed 14..48 duplicates at
#     their owners' checks before a later "damaged header".
proofs() {
  case $1 in
    drop-on-drain) echo "preload remote_free still.live.after.every.block.was.freed" ;;
    dup-handout) echo "prefixed larson handed.out.twice --min=64 --max=65" ;;
  esac
}

# caught <log>: the "caught by" lines of a stress.sh run, or "not caught".
caught() {
  local c
  c=$(awk '/^(FAIL|HANG)  / { prog = $3; sub(/^stress\//, "", prog); sub(/\(prefixed\)/, "", prog) } /caught by:/ { sub(/.*caught by: /, ""); sub(/  \(log:.*/, ""); print prog ": " $0 }' "$1" | paste -sd ';' -)
  echo "${c:-not caught (all passed)}"
}

rows=()
status=0
for bug in $BUGS; do
  d=$PLANT_DIR/$bug
  echo "==> planted: $bug (copy in $d)"
  rm -rf "$d"
  mkdir -p "$d"
  tar -C "$ROOT" --exclude=./build --exclude=./.git --exclude=./fuzz --exclude=./corpus -cf - . | tar -C "$d" -xf -
  plant "$bug" "$d" || { status=1; continue; }
  log=$d/tsan-stress.out
  # the copy's runs record and log in the copy (their FAILs are the point,
  # and must not land in the results or logs of a make check running this)
  export HAK_RESULTS=$d/build/planted-results.tsv HAK_LOGDIR=$d/build/logs
  for try in 1 2; do
    tsan_run "$bug" || break
    # the programs that catch the plants (not realloc_storm: 3 s more a plant)
    (cd "$d" && STRESS_PROGS=${STRESS_PROGS:-larson remote_free thread_churn} make tsan-stress \
      THREADS="$THREADS" CHUNKS="$CHUNKS" DURATION="$DURATION") >"$log" 2>&1
    grep -E '^(PASS|FAIL|HANG)|caught by' "$log" | sed 's/^/    /'
    c=$(caught "$log")
    # a plant that loses a block in a race window can miss it in one 3 s
    # run (drop-on-drain did before its window was widened): one more run,
    # and the table says which caught it
    case $c in not*) [ $try = 1 ] && echo "    not caught: a second run" && continue ;; esac
    [ $try = 2 ] && c="$c (second run)"
    break
  done
  if tsan_run "$bug"; then
    rows+=("$bug|tsan-stress|$c")
    case $c in not*) status=1 ;; esac
  fi
  if [ "${PLANT_RELEASE:-1}" = 1 ]; then
    log=$d/release-stress.out
    (cd "$d" && STRESS_PROGS="larson remote_free thread_churn" THREADS="$THREADS" CHUNKS="$CHUNKS" \
      DURATION="$DURATION" scripts/stress.sh run release prefixed) >"$log" 2>&1
    grep -E '^(PASS|FAIL|HANG)|caught by' "$log" | sed 's/^/    /'
    rows+=("$bug|release (no TSan)|$(caught "$log")")
  fi
  while read -r var prog re args; do
    [ -n "$var" ] || continue
    log=$d/proof-$prog-$var.out
    for try in 1 2; do
      (cd "$d" && STRESS_PROGS=$prog STRESS_ARGS="$args" THREADS="$THREADS" CHUNKS="$CHUNKS" \
        DURATION="${PROOF_DURATION:-1}" scripts/stress.sh run release "$var") >"$log" 2>&1
      grep -E '^(PASS|FAIL|HANG)|caught by' "$log" | sed 's/^/    /'
      plog=$(sed -n 's/.*caught by: .*(log: \(.*\))$/\1/p' "$log" | tail -1)
      if [ -n "$plog" ] && grep -qE "$re" "$plog"; then
        c="$(caught "$log"): /$re/"
      else
        c="not caught: no /$re/ in the log ($(caught "$log"))"
      fi
      case $c in not*) [ $try = 1 ] && echo "    $c: a second run" && continue ;; esac
      [ $try = 2 ] && c="$c (second run)"
      break
    done
    rows+=("$bug|release $var|$c")
    case $c in not*) status=1 ;; esac
  done < <(proofs "$bug")
done
echo
echo "==> planted bugs: which check caught each (THREADS=$THREADS CHUNKS=$CHUNKS DURATION=$DURATION)"
printf '%-22s %-18s %s\n' bug run "caught by"
for r in "${rows[@]}"; do
  IFS='|' read -r a b c <<<"$r"
  printf '%-22s %-18s %s\n' "$a" "$b" "$c"
done
exit $status
