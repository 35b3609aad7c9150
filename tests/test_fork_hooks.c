/* fork() while another thread is parked at a test hook point, on cue.
 *
 * Each section parks one thread T inside the allocator at a HAK_HOOK_ point
 * and forks from main (or, where T holds a heap lock there, from a third
 * thread, which must wait: T is let go once that thread sleeps in fork's
 * wait for the lock, and the fork then completes). The child (a hang in it
 * or in its fork handler: a failure at 10 s) allocates, fills, checks and
 * frees blocks of every size class and large ones, starts a thread that
 * allocates and frees and frees half the blocks T owned (remote frees),
 * frees the other half itself (with the block T was freeing where T's free
 * had not taken effect yet: a large block's; a small block is marked free
 * before its remote free starts, so it stays live in the child), calls
 * hak_trim, and must find hak_heap_check() == 0 and hak_stats counting
 * exactly the blocks still live, one active heap. The parent then lets T go
 * and must find the same. Points without a lock held (fork from main while T
 * is parked):
 *   large_free       HAK_HOOK_LARGE_LOCKING, large_free before the large lock
 *   realloc_move     HAK_HOOK_LARGE_LOCKING, large_realloc's move, a new
 *                    mapping made, before the lock is taken again
 *   heap_published   HAK_HOOK_HEAP_PUBLISHED, T's heap listed active
 *   free_unowned     HAK_HOOK_FREE_UNOWNED, a free into an abandoned segment
 *   free_counted     HAK_HOOK_FREE_COUNTED, that free counted, not pushed
 *   notifying_main   HAK_HOOK_NOTIFYING, T handing a block of main's full
 *                    page over (main is the child's one thread)
 *   notifying_other  the same for a page of a third thread O (dead in the
 *                    child: its heap is abandoned there)
 *   notifying_*_stranded  the same, with another block of the page freed
 *                    (pushed onto its stack) while T is held
 *   notifying_main_unfull(_stranded)  notifying_main(_stranded), main
 *                    freeing a block of the page itself while T is held:
 *                    the page leaves the full list, its hand-over still
 *                    under way. The child's fork handler must clear the
 *                    mark and leave the page in its queue (until 2026-11-28
 *                    no test forked with a page so, make test-coverage:
 *                    mutant fork-notifying-unfull-full-remove, which takes
 *                    such a page with blocks on its stack off the full
 *                    list it is not on, survived)
 * Points with T holding its heap's lock (the fork waits for it):
 *   abandon_collected HAK_HOOK_ABANDON_COLLECTED, T's exit
 *   adopted           HAK_HOOK_ADOPTED, T adopting an abandoned segment
 * (HAK_HOOK_MARK_CHECKED: test_fork_mark; HAK_HOOK_PAGE_FULL:
 * test_rt_spin_wait.) Child exit codes: 2 pattern, 3 heap_check, 4 stats,
 * 5 allocation failed, 6 thread, 7 its own fork's child failed. */
#include "hak_test.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "hak_test_internal.h"

#if HAK_TSAN
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) {
  return "die_after_fork=0";
}
#endif

static atomic_int hold_at = -1, armed, parked, go;
static _Atomic(void *) hold_arg;
static atomic_int skip_calls; /* calls at the point (for arg) to let pass first */

static void hook(enum hak_hook_point where, void *arg) {
  if ((int)where != atomic_load(&hold_at))
    return;
  void *want = atomic_load(&hold_arg);
  if (want && arg != want)
    return;
  if (atomic_fetch_sub(&skip_calls, 1) > 0)
    return;
  if (!atomic_exchange(&armed, 0))
    return;
  atomic_store(&parked, 1);
  /* no bound of its own (nor t_owner's): the main thread lets T go on
   * every path once its own bounded wait for the fork child has ended
   * (limit_s; for a hung child, then its stacks printed, gdb: 60 s at
   * most, and the kill). With HAK_WAIT_FLAG's 30 s, T's exit(1) ended this
   * process while the child was still being diagnosed and left the child,
   * hung, holding the section's output pipe: a failure in 70 s became the
   * harness's 300 s timeout (mutant fork-child-waits-dead-handover). */
  while (!atomic_load(&go))
    sched_yield();
}

static void arm(enum hak_hook_point where, void *arg, int skip) {
  atomic_store(&hold_arg, arg);
  atomic_store(&skip_calls, skip);
  atomic_store(&parked, 0);
  atomic_store(&go, 0);
  atomic_store(&hold_at, (int)where);
  atomic_store(&armed, 1);
  atomic_store(&hak_test_hook, hook);
}

/* the limit on each wait (parking, the child's round), scaled for the
 * instrumented builds (before: 10 s in every build) */
static double limit_s(void) {
  return 10 * hak_test_slowdown();
}

static void wait_parked(const char *what) {
  if (!hak_flag_within(&parked, limit_s())) {
    FAIL("never parked at %s", what);
    _exit(1);
  }
}

/* ---- the child's work ---------------------------------------------------- */
#define MAXOWN 64
static void *owned[MAXOWN]; /* blocks the child frees (T's, and others) */
static int nowned;
static size_t child_live; /* blocks the child must find live at the end */

static void *child_thread(void *arg) {
  void *p[64];
  for (int i = 0; i < 64; i++)
    if (!(p[i] = hak_malloc((size_t)16 << (i % 13))))
      return (void *)1;
  for (int i = 0; i < 64; i++)
    hak_free(p[i]);
  for (int i = 1; i < nowned; i += 2) /* remote frees (a full page's: handed over) */
    hak_free(owned[i]);
  return arg;
}

static int child_work(void) {
  atomic_store(&hak_test_hook, NULL);
  alarm((unsigned)limit_s());
  /* first as the fork left it: a page whose hand-over the fork cut short,
   * with a block on its stack, must not wait in the full list for a remote
   * free that may never come */
  if (hak_heap_check() != 0)
    return 3;
  size_t sizes[256];
  int ns = 0;
  for (size_t c = 0; c < hak_size_class_count() && ns < 240; c++)
    sizes[ns++] = hak_size_class_size(c);
  sizes[ns++] = HAK_SMALL_MAX + 1;
  sizes[ns++] = (size_t)1 << 20;
  sizes[ns++] = (size_t)40 << 20;
  enum { PER = 3 };
  for (int round = 0; round < 2; round++) {
    void *p[256][PER];
    for (int i = 0; i < ns; i++)
      for (int k = 0; k < PER; k++) {
        if (!(p[i][k] = hak_malloc(sizes[i])))
          return 5;
        size_t n = sizes[i] < 4096 ? sizes[i] : 4096;
        hak_fill(p[i][k], n, (uint64_t)(i * PER + k));
      }
    for (int i = 0; i < ns; i++)
      for (int k = 0; k < PER; k++) {
        size_t n = sizes[i] < 4096 ? sizes[i] : 4096;
        if (hak_pattern_mismatch(p[i][k], n, (uint64_t)(i * PER + k)) != (size_t)-1)
          return 2;
        hak_free(p[i][k]);
      }
  }
  pthread_t t;
  void *ret = NULL;
  if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, &ret) != 0 || ret)
    return 6;
  /* before anything else collects: a remote free that went onto the stack of
   * a page in the full list, left there, is "stranded" */
  if (hak_heap_check() != 0)
    return 3;
  for (int i = 0; i < nowned; i += 2)
    hak_free(owned[i]);
  hak_trim(0);
  if (hak_heap_check() != 0)
    return 3;
  struct hak_stats st;
  hak_stats(&st);
  /* the child's one thread: every other heap was abandoned at the fork */
  if (st.live_blocks != child_live || st.heaps_active != 1 || st.abandoned_segments > 1) {
    hak_stats_print();
    return 4;
  }
  /* and the child forks again: its fork handlers lock the heaps it
   * abandoned for the dead threads too */
  pid_t g = fork();
  if (g < 0)
    return 7;
  if (g == 0) {
    void *q = hak_malloc(100);
    hak_free(q);
    _exit(q && hak_heap_check() == 0 ? 0 : 1);
  }
  int gs = 0;
  if (waitpid(g, &gs, 0) != g || !WIFEXITED(gs) || WEXITSTATUS(gs) != 0)
    return 7;
  return 0;
}

/* set by the parent as soon as fork() returns (fork_waiting) */
static _Atomic int forked;

static void fork_and_check(const char *name) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0)
    _exit(child_work());
  atomic_store(&forked, 1);
  int status = 0;
  if (hak_wait_child(pid, limit_s(), &status, 1) != 1) { /* 0: hung; -1: waitpid failed */
    FAIL("%s: fork child hung", name);
    return;
  }
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "%s: fork child status %#x (exit 2 pattern, 3 heap_check, 4 stats, 5 alloc, 6 "
            "thread, 7 grandchild; SIGALRM: hang)",
            name, (unsigned)status);
}

static atomic_int forker_tid;
static void *forker(void *arg) {
  atomic_store(&forker_tid, (int)gettid());
  fork_and_check((const char *)arg);
  return NULL;
}

/* fork from a third thread while T holds its heap's lock: the fork must
 * wait until T goes on. The check comes once the forker sleeps in fork's
 * prepare handler, in its wait for T's heap lock (heap_lock_wait's
 * spin_wait sleeps: the forker's one wait before fork() returns, no other
 * hakmem lock being held meanwhile), or once fork() returned (a fork that
 * did not wait). Before, it came after a fixed 100 ms, which on a loaded
 * machine the forker may not have used to reach fork(): the check then
 * passed without a fork to wait. */
static void fork_waiting(const char *name) {
  pthread_t f;
  atomic_store(&forked, 0);
  atomic_store(&forker_tid, 0);
  REQUIRE(pthread_create(&f, NULL, forker, (void *)name) == 0);
  double end = hak_now() + limit_s();
  while (!atomic_load(&forked) && !hak_thread_in_nanosleep(atomic_load(&forker_tid)))
    if (hak_now() > end) { /* nothing tested, said so */
      FAIL("%s: the forker neither waited in fork nor returned from it", name);
      _exit(3);
    } else
      sched_yield();
  /* fork() itself must not have returned */
  CHECK_MSG(!atomic_load(&forked), "%s: fork did not wait for the held heap lock", name);
  atomic_store(&go, 1);
  REQUIRE(pthread_join(f, NULL) == 0);
}

/* arms the hook and starts T (fn), which must park there: T */
static pthread_t park(enum hak_hook_point where, void *arg, int skip, void *(*fn)(void *),
                      const char *name) {
  arm(where, arg, skip);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, fn, NULL) == 0);
  wait_parked(name);
  return t;
}

/* lets T go and waits for it to end */
static void unpark(pthread_t t) {
  atomic_store(&go, 1);
  REQUIRE(pthread_join(t, NULL) == 0);
}

/* the parent, T gone and every block freed: nothing live, no segment
 * abandoned, a sound heap */
static void parent_done(const char *name) {
  atomic_store(&hak_test_hook, NULL);
  CHECK_ALL_FREED(name);
}

/* ---- large blocks -------------------------------------------------------- */
static void *lg_block, *lg_keep, *lg_small[8];
static void *t_large_free(void *arg) {
  for (int i = 0; i < 8; i++)
    REQUIRE((lg_small[i] = hak_malloc(24 + 100 * (size_t)i)) != NULL);
  REQUIRE((lg_keep = hak_malloc(300000)) != NULL);
  hak_free(lg_block);
  return arg;
}

static void sec_large_free(void) {
  REQUIRE((lg_block = hak_malloc((size_t)1 << 20)) != NULL);
  pthread_t t = park(HAK_HOOK_LARGE_LOCKING, lg_block, 0, t_large_free, "large_free");
  nowned = 0;
  for (int i = 0; i < 8; i++)
    owned[nowned++] = lg_small[i];
  owned[nowned++] = lg_keep;
  owned[nowned++] = lg_block; /* T's free has not happened in the child */
  child_live = 0;
  fork_and_check("large_free");
  unpark(t);
  for (int i = 0; i < 8; i++)
    hak_free(lg_small[i]);
  hak_free(lg_keep);
  parent_done("large_free");
}

static void *lg_moved;
static void *t_realloc(void *arg) {
  lg_moved = hak_realloc(lg_block, (size_t)8 << 20);
  return arg;
}

static void realloc_move(void) {
  REQUIRE((lg_block = hak_malloc((size_t)1 << 20)) != NULL);
  /* a mapping right after the block's whole mapping (room kept past its
   * usable size included): it cannot grow in place */
  const hak_large_t *lg = registry_large(lg_block);
  REQUIRE(lg != NULL);
  uintptr_t end = (uintptr_t)lg + lg->map_size;
  void *guard =
      hak_map_at((void *)end, hak_page_size(), PROT_NONE); /* NULL: something else is there */
  hak_fill(lg_block, 4096, 7);
  if (!TRACK_REALLOC_IN_PLACE || hak_config_is("trace")) {
    /* the valgrind build copies every realloc, the trace build moves large
     * blocks by copy: no move, no relock to park at */
    atomic_store(&hak_test_hook, NULL);
    printf("realloc_move: the %s build moves by copy: skipped\n", hak_config());
    hak_free(lg_block);
    if (guard)
      munmap(guard, hak_page_size());
    return;
  }
  /* before, a realloc that never reached the relock (it grew in place, or
   * moved by copy) skipped the section in every build. Skip 1: T parks at
   * the move's relock, not at the first lock */
  pthread_t t = park(HAK_HOOK_LARGE_LOCKING, lg_block, 1, t_realloc, "realloc_move");
  nowned = 0;
  owned[nowned++] = lg_block; /* the realloc has not happened in the child */
  /* T is parked: the count is exact */
  struct hak_stats st;
  hak_stats(&st);
  child_live = st.live_blocks - 1;
  fork_and_check("realloc_move");
  unpark(t);
  REQUIRE(lg_moved != NULL);
  CHECK_EQ(hak_pattern_mismatch(lg_moved, 4096, 7), (size_t)-1);
  hak_free(lg_moved);
  if (guard)
    munmap(guard, hak_page_size());
  parent_done("realloc_move");
}

/* ---- a heap's publication ------------------------------------------------ */
static void *pub_block;
static void *t_first_malloc(void *arg) {
  pub_block = hak_malloc(48);
  return arg;
}

static void heap_published(void) {
  hak_free(hak_malloc(16));
  pthread_t t = park(HAK_HOOK_HEAP_PUBLISHED, NULL, 0, t_first_malloc, "heap_published");
  nowned = 0;
  child_live = 0;
  fork_and_check("heap_published");
  unpark(t);
  REQUIRE(pub_block != NULL);
  hak_free(pub_block);
  parent_done("heap_published");
}

/* ---- frees into an abandoned segment ------------------------------------- */
#define N 64
static void *ab[N];
static atomic_int freer_ready, freer_cue;
static void *t_producer(void *arg) {
  for (int i = 0; i < N; i++)
    REQUIRE((ab[i] = hak_malloc(64)) != NULL);
  return arg;
}
static void *t_freer(void *arg) {
  hak_free(hak_malloc(16)); /* a heap that has not allocated since the abandonment */
  atomic_store(&freer_ready, 1);
  HAK_WAIT_FLAG(&freer_cue);
  hak_free(ab[0]);
  return arg;
}

static void abandoned_free(enum hak_hook_point where, const char *name) {
  hak_free(hak_malloc(16));
  atomic_store(&freer_ready, 0);
  atomic_store(&freer_cue, 0);
  pthread_t f, p;
  REQUIRE(pthread_create(&f, NULL, t_freer, NULL) == 0);
  HAK_WAIT_FLAG(&freer_ready);
  REQUIRE(pthread_create(&p, NULL, t_producer, NULL) == 0 && pthread_join(p, NULL) == 0);
  struct hak_stats st;
  hak_stats(&st);
  REQUIRE(st.abandoned_segments == 1);
  arm(where, ab[0], 0);
  atomic_store(&freer_cue, 1);
  wait_parked(name);
  nowned = 0;
  for (int i = 1; i < N; i++)
    owned[nowned++] = ab[i];
  /* ab[0]: marked free (free_block's exchange) before free_not_owned, so
   * the child's free of it is a double free; never pushed there, it stays
   * counted live */
  child_live = 1;
  fork_and_check(name);
  unpark(f);
  for (int i = 1; i < N; i++)
    hak_free(ab[i]);
  parent_done(name);
}

static void free_unowned(void) {
  abandoned_free(HAK_HOOK_FREE_UNOWNED, "free_unowned");
}
static void free_counted(void) {
  abandoned_free(HAK_HOOK_FREE_COUNTED, "free_counted");
}

/* ---- a hand-over of a block of a full page (TF_NOTIFYING) ---------------- */
/* 8 blocks a page (the request: 65536 less the redzone, hak_test.h) */
#define SZ (65536 - hak_test_redzone())
#define BLOCKS 8
static void *fp[BLOCKS + 1];
static atomic_int o_filled, o_exit;
static void fill_page(void) {
  hak_fill_full_page(fp, BLOCKS, SZ);
}
static void *t_handover(void *arg) {
  hak_free(fp[3]);
  return arg;
}
static void *t_owner(void *arg) {
  fill_page();
  atomic_store(&o_filled, 1);
  while (!atomic_load(&o_exit)) /* no bound: see hook() */
    sched_yield();
  return arg;
}

static void notifying(bool main_owns, bool stranded, bool unfull, const char *name) {
  pthread_t o, r;
  atomic_store(&o_filled, 0);
  atomic_store(&o_exit, 0);
  if (main_owns) {
    fill_page();
  } else {
    REQUIRE(pthread_create(&o, NULL, t_owner, NULL) == 0);
    HAK_WAIT_FLAG(&o_filled);
  }
  r = park(HAK_HOOK_NOTIFYING, fp[3], 0, t_handover, name);
  if (stranded) /* TF_NOTIFYING: onto the page's stack */
    hak_free_remotely(&fp[5], 1);
  if (unfull) { /* main's own free of a block of the page: off the full list */
    hak_page_t *pg = hak_block_page(fp[0]);
    hak_free(fp[0]);
    hak_thread_cache_flush();
    REQUIRE(!pg->in_full && (atomic_load(&pg->thread_free) & TF_MASK) == TF_NOTIFYING);
  }
  nowned = 0;
  for (int i = unfull; i <= BLOCKS; i++)
    if (i != 3 && !(stranded && i == 5))
      owned[nowned++] = fp[i];
  child_live = 1; /* fp[3]: its hand-over never ends in the child */
  fork_and_check(name);
  unpark(r);
  if (!main_owns) {
    atomic_store(&o_exit, 1);
    REQUIRE(pthread_join(o, NULL) == 0);
  }
  for (int i = unfull; i <= BLOCKS; i++)
    if (i != 3 && !(stranded && i == 5))
      hak_free(fp[i]);
  parent_done(name);
}
static void notifying_main(void) {
  notifying(true, false, false, "notifying_main");
}
static void notifying_main_stranded(void) {
  notifying(true, true, false, "notifying_main_stranded");
}
static void notifying_other(void) {
  notifying(false, false, false, "notifying_other");
}
static void notifying_other_stranded(void) {
  notifying(false, true, false, "notifying_other_stranded");
}
static void notifying_main_unfull(void) {
  notifying(true, false, true, "notifying_main_unfull");
}
static void notifying_main_unfull_stranded(void) {
  notifying(true, true, true, "notifying_main_unfull_stranded");
}

/* ---- T holding its heap's lock ------------------------------------------- */
/* Under TSan and ASan, T's exit waits (a TSD destructor of the test's, run
 * after hakmem's, whose key is older) until the parent's fork() has
 * returned. Let go, T unlocks its heap and the fork goes on at once, while
 * T's exit (glibc's frees of its TLS and keys, the sanitizer's thread
 * finish) is inside the sanitizer's allocator, which LLVM 14's runtimes do
 * not lock across fork: the child then had that lock held, and its first
 * thread (child_work's, whose start reallocs in pthread_getattr_np) waited
 * for it until the alarm. TSan: 6 of 32 loaded runs of adopted or
 * abandon_collected (gdb: the child in
 * SizeClassAllocator64::GetFromAllocator); ASan: abandon_collected, 3 of 10
 * on a machine at load 10. Not a hakmem lock: the other builds let T exit
 * at once, as a program would. */
static pthread_key_t exit_gate;
static int exit_gate_ok;
/* Set in T only: the child's thread may be started on T's cached stack and
 * descriptor (glibc's fork keeps the stacks of the threads it drops), its
 * key values T's, and its exit then waited here for a fork that never
 * returns in the child (the alarm again: 1 of 60 loaded runs). */
static _Thread_local int exit_gated;
static void exit_gate_wait(void *v) {
  (void)v;
  if (!exit_gated)
    return;
  (void)hak_flag_within(&forked, limit_s()); /* a fork that never came: fork_waiting says so */
}
static void hold_exit_until_forked(void) {
  if (!hak_config_is("tsan") && !hak_config_is("asan"))
    return;
  exit_gated = 1;
  if (exit_gate_ok)
    pthread_setspecific(exit_gate, (void *)1);
}

static void *ex[16];
static void *t_exits(void *arg) {
  hold_exit_until_forked();
  for (int i = 0; i < 16; i++)
    REQUIRE((ex[i] = hak_malloc(32 + 64 * (size_t)i)) != NULL);
  return arg; /* its exit abandons the heap: parked after the collect */
}

static void abandon_collected(void) {
  hak_free(hak_malloc(16));
  pthread_t t = park(HAK_HOOK_ABANDON_COLLECTED, NULL, 0, t_exits, "abandon_collected");
  nowned = 0;
  for (int i = 0; i < 16; i++)
    owned[nowned++] = ex[i];
  child_live = 0;
  fork_waiting("abandon_collected");
  REQUIRE(pthread_join(t, NULL) == 0);
  for (int i = 0; i < 16; i++)
    hak_free(ex[i]);
  parent_done("abandon_collected");
}

static void *ad_block;
static void *t_adopter(void *arg) {
  hold_exit_until_forked();
  ad_block = hak_malloc(64); /* a new heap: it adopts the abandoned segment */
  return arg;
}

static void adopted(void) {
  hak_free(hak_malloc(16));
  pthread_t p;
  REQUIRE(pthread_create(&p, NULL, t_producer, NULL) == 0 && pthread_join(p, NULL) == 0);
  struct hak_stats st;
  hak_stats(&st);
  REQUIRE(st.abandoned_segments == 1);
  pthread_t t = park(HAK_HOOK_ADOPTED, ptr_segment_base(ab[0]), 0, t_adopter, "adopted");
  nowned = 0;
  for (int i = 0; i < N; i++)
    owned[nowned++] = ab[i];
  child_live = 1; /* the adopter's block, taken after the fork: its malloc returns in the child */
  fork_waiting("adopted");
  REQUIRE(pthread_join(t, NULL) == 0);
  for (int i = 0; i < N; i++)
    hak_free(ab[i]);
  hak_free(ad_block);
  parent_done("adopted");
}

int main(void) {
  /* a section that hangs takes limit_s() and its stacks; the others still run */
  alarm((unsigned)(30 * limit_s()));
  hak_free(hak_malloc(16)); /* hakmem's heap key first: its destructor runs before exit_gate's */
  exit_gate_ok = pthread_key_create(&exit_gate, exit_gate_wait) == 0;
  RUN_SECTION(sec_large_free);
  RUN_SECTION(realloc_move);
  RUN_SECTION(heap_published);
  RUN_SECTION(free_unowned);
  RUN_SECTION(free_counted);
  RUN_SECTION(notifying_main);
  RUN_SECTION(notifying_main_stranded);
  RUN_SECTION(notifying_other);
  RUN_SECTION(notifying_other_stranded);
  RUN_SECTION(notifying_main_unfull);
  RUN_SECTION(notifying_main_unfull_stranded);
  RUN_SECTION(abandon_collected);
  RUN_SECTION(adopted);
  return hak_test_done();
}
