/* Two threads free the same large block at once: the second free, which
 * found the block's header through the registry before the first one
 * took the lock, reaches the header after the first free has unmapped it
 * (a block the cache does not keep: over 32 MiB, huge-aligned, or cached
 * and then unmapped by hak_trim). It must be named a double free. Until
 * 2026-11-28 large_free read the header's offset before taking the large
 * lock and without looking at the registry again: the second free read
 * unmapped memory (SIGSEGV, no report), or, had another mapping replaced
 * the range meanwhile, marked whatever that held freed.
 * The interleaving is forced on one thread: the hook at large_free's start
 * (HAK_HOOK_LARGE_LOCKING) runs the other free to its end there.
 * The same window opened earlier for realloc, malloc_usable_size and
 * free_sized: resolve() read the header (its offset and freed mark) before
 * any lock. Until 2026-11-28 each of them racing a free of a block the cache
 * does not keep got SIGSEGV; the hook at large_resolve's lock
 * (HAK_HOOK_LARGE_RESOLVING) forces that interleaving (free_sized's at
 * large_free_sized's). Since 2026-11-29 realloc makes those checks in
 * large_realloc, under the hold that resizes or frees the block: its window
 * is at HAK_HOOK_LARGE_LOCKING (realloc_* below). */
#include "hak_test.h"

#include <pthread.h>
#include <stdatomic.h>

#include "hak_test_internal.h"

#define MiB ((size_t)1 << 20)

static int trim_after; /* the hook's free is followed by hak_trim */
static void *victim;   /* what the hook frees, if not the target */

/* the hook's action: the other free, there (the nested free passes the
 * hook point too) */
static void free_there(void *arg) {
  hak_free(victim ? victim : arg);
  if (trim_after)
    hak_trim(0); /* the cached mapping unmapped */
}

/* frees p (to == SIZE_MAX) or reallocs it to `to`, with the hook's free
 * of it at large_free's start (HAK_HOOK_LARGE_LOCKING), at the
 * (hak_once.skip + 1)th call there for it */
static void race_realloc(void *p, int trim, size_t to) {
  REQUIRE(p != NULL);
  memset(p, 0x5a, 4096);
  trim_after = trim;
  hak_hook_once(HAK_HOOK_LARGE_LOCKING, p, free_there);
  if (to != (size_t)-1)
    hak_realloc(p, to);
  else
    hak_free(p);
  /* reached only by a bug (the call above must abort; the child then exits
   * 0 and EXPECT_ABORT fails): the walk of the large blocks shows what it
   * left (the old realloc's move: SIGSEGV on a stale list link) */
  hak_hook_returned("the second free or the realloc");
  hak_heap_check();
}

static void race(void *p, int trim, int realloc_zero) {
  race_realloc(p, trim, realloc_zero ? 0 : (size_t)-1);
}

static void free_big(void *arg) { /* over 32 MiB: never cached */
  (void)arg;
  race(hak_malloc(40 * MiB), 0, 0);
}

static void free_huge_aligned(void *arg) { /* header below the block, never cached */
  (void)arg;
  race(hak_aligned_alloc(4 * MiB, MiB), 0, 0);
}

static void free_cached_then_trimmed(void *arg) {
  (void)arg;
  race(hak_malloc(MiB), 1, 0);
}

static void realloc_zero_big(void *arg) {
  (void)arg;
  race(hak_malloc(40 * MiB), 0, 1);
}

/* realloc growing a block another thread freed meanwhile: cached (before,
 * realloc grew the cached mapping in place and returned it, a block the
 * cache also holds), or unmapped */
static void realloc_cached(void *arg) {
  (void)arg;
  race_realloc(hak_malloc(MiB), 0, 3 * MiB);
}

static void realloc_big(void *arg) {
  (void)arg;
  race_realloc(hak_malloc(40 * MiB), 0, 45 * MiB);
}

/* realloc to a small size: the small block is allocated before the lock,
 * the copy and the free come under the hold that finds p freed */
static void realloc_small_big(void *arg) {
  (void)arg;
  race_realloc(hak_malloc(40 * MiB), 0, 1000);
}

/* realloc's move, the block freed (cached) while the destination was
 * mapped, outside the lock: a page of the test's after the block's mapping
 * stops it growing in place (before, the cached mapping's pages were moved
 * to the destination and handed out, the cache still holding the old
 * header) */
static void realloc_move(void *arg) {
  (void)arg;
  unsigned char *b = hak_malloc(MiB);
  REQUIRE(b != NULL);
  hak_map_at(hak_test_large_end(b, MiB), hak_page_size(),
             PROT_READ); /* NULL: something else is there */
  atomic_store(&hak_once.skip, 1);
  race_realloc(b, 0, 3 * MiB);
}

/* ---- the window before resolve's checks: the hook at large_resolve */
enum { USABLE, FREE_SIZED, REALLOC, FREE };
/* usable_size (large_resolve) and free_sized (large_free_sized) */
static void resolve_race(void *p, int call, int trim) {
  REQUIRE(p != NULL);
  trim_after = trim;
  hak_hook_once(HAK_HOOK_LARGE_RESOLVING, p, free_there);
  if (call == USABLE)
    fprintf(stderr, "usable size %zu\n", hak_usable_size(p));
  else
    hak_free_sized(p, 4096);
  hak_hook_returned("the call"); /* a bug: see race_realloc */
  hak_heap_check();
}

static void usable_big(void *arg) {
  (void)arg;
  resolve_race(hak_malloc(40 * MiB), USABLE, 0);
}

static void usable_trimmed(void *arg) {
  (void)arg;
  resolve_race(hak_malloc(MiB), USABLE, 1);
}

static void free_sized_big(void *arg) {
  (void)arg;
  resolve_race(hak_malloc(40 * MiB), FREE_SIZED, 0);
}

static void free_sized_huge_aligned(void *arg) {
  (void)arg;
  resolve_race(hak_aligned_alloc(4 * MiB, MiB), FREE_SIZED, 0);
}

/* ---- the error path's window: err_invalid names a bad pointer into a
 * large block's range (not its start: large_free and large_resolve let the
 * lock go before they call it) while another thread frees the block; the
 * hook at err_invalid (HAK_HOOK_ERR_LARGE) frees it there. Until 2026-11-28
 * err_invalid read the header without the lock: unmapped, SIGSEGV and no
 * report. Now named for what the range holds once the block is gone. */
static void interior_race(unsigned char *b, intptr_t off, int call) {
  REQUIRE(b != NULL);
  victim = b;
  void *p = (void *)((uintptr_t)b + (uintptr_t)off);
  hak_hook_once(HAK_HOOK_ERR_LARGE, p, free_there);
  if (call == USABLE)
    fprintf(stderr, "usable size %zu\n", hak_usable_size(p));
  else if (call == REALLOC)
    hak_realloc(p, 45 * MiB);
  else
    hak_free(p);
  hak_hook_returned("the call"); /* a bug: see race_realloc */
}

static void interior_big(void *arg) {
  interior_race(hak_malloc(40 * MiB), (intptr_t)arg, FREE);
}

static void interior_huge_usable(void *arg) {
  interior_race(hak_aligned_alloc(4 * MiB, MiB), (intptr_t)arg, USABLE);
}

static void interior_big_realloc(void *arg) {
  interior_race(hak_malloc(40 * MiB), (intptr_t)arg, REALLOC);
}

/* ---- the error path's header read under the lock: the hook inside
 * large_place (HAK_HOOK_ERR_LARGE_LOCKED: the lock held, the registry read
 * again) starts another thread's free of the block and returns once that
 * free waits in large_free for the large lock (a futex wait on it), or has
 * ended. Under the lock that free waits, the header read after the hook is
 * the live block's, and p is named as inside it. Read without the lock,
 * the free unmaps the block first: SIGSEGV, no report (mutant
 * large-place-reads-unlocked, which the interior_* cases survive: they free
 * before large_place reads the registry). Before, the hook waited 200 ms
 * for the free's end: on a loaded machine the free might not have reached
 * the lock by then, and the part passed untested. */
static atomic_int locked_go, locked_freed, locked_tid;
static void *locked_freer(void *b) {
  atomic_store(&locked_tid, (int)gettid());
  HAK_SPIN_UNTIL(atomic_load(&locked_go), "the hook never let this free go");
  hak_free(b);
  atomic_store(&locked_freed, 1);
  return NULL;
}
static void let_locked_go(void *arg) {
  (void)arg;
  atomic_store(&locked_go, 1);
  double end = hak_now() + 10 * hak_test_slowdown();
  while (!atomic_load(&locked_freed) &&
         !hak_thread_in_futex(atomic_load(&locked_tid), &hak_large_lock))
    if (hak_now() > end) { /* nothing tested, said so */
      fprintf(stderr, "the other free neither waited for the large lock nor ended\n");
      _exit(3);
    } else
      sched_yield();
}
static void interior_locked(void *arg) {
  (void)arg;
  unsigned char *b = hak_malloc(40 * MiB); /* too big for the cache: its free unmaps it */
  REQUIRE(b != NULL);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, locked_freer, b) == 0);
  hak_hook_once(HAK_HOOK_ERR_LARGE_LOCKED, b + MiB + 1, let_locked_go);
  hak_free(b + MiB + 1);
  hak_hook_returned("the call");
}

/* ---- the window after a free (or realloc's move) unregistered the block's
 * range, before it remembered the block among the recently freed: another
 * thread's free of the block reads the registry there (nothing), the ring
 * (nothing yet), and waits in err_invalid for the large lock to look at the
 * lists (nothing: the block is off them). The hook at the window
 * (HAK_HOOK_LARGE_UNREGISTERED, the lock held) lets that free go and
 * returns once it sleeps there, between its tries of the lock (err_invalid
 * tries it for 100 ms; before, the hook slept a fixed 30 ms, which on a
 * loaded machine either let the free come after the window, passing
 * untested, or left it under 70 ms of the wait's end). Until
 * 2026-11-28 it was named "not allocated by hakmem": err_invalid did not
 * look at the ring again once it had had the lock, and realloc's move
 * remembered the block only after its unlock. */
static atomic_int second_go, second_tid;
/* in memory the parent shares: when the second free was let go, and when
 * the first call let the lock go (HAK_HOOK_LARGE_GONE; 0: not yet) */
static volatile double *window_at;

/* the hook of every window_race: the unlock after the window timed */
static void window_hook(enum hak_hook_point where, void *arg) {
  if (where == HAK_HOOK_LARGE_GONE && arg == hak_once.target && window_at)
    window_at[1] = hak_now();
  hak_hook_once_fn(where, arg);
}
static void let_second_go(void *arg) {
  (void)arg;
  if (window_at)
    window_at[0] = hak_now();
  atomic_store(&second_go, 1);
  /* until the other thread sleeps: from its go it runs straight into
   * err_invalid's tries of the lock, where it sleeps 100 us between two */
  double end = hak_now() + 10 * hak_test_slowdown();
  while (!hak_thread_in_nanosleep(atomic_load(&second_tid)))
    if (hak_now() > end) { /* the second free never waited: nothing tested, said so */
      fprintf(stderr, "the second free never slept in its tries of the lock\n");
      _exit(3);
    } else
      sched_yield();
}
/* the second free: waits for its go, frees, says it returned (a bug:
 * it must end the process) */
static atomic_int second_returned;
static void *second_free(void *p) {
  atomic_store(&second_tid, (int)gettid());
  /* not asleep: the hook waits for its sleep in err_invalid */
  HAK_SPIN_UNTIL(atomic_load(&second_go), "the hook never let the second free go");
  hak_free(p);
  atomic_store(&second_returned, 1);
  return NULL;
}
/* b freed (or realloc'd to realloc_to, moving it), with then() at hook
 * point `at` for b, which lets a second thread's free of b go */
static void window_race(unsigned char *b, size_t realloc_to, enum hak_hook_point at,
                        void (*then)(void *)) {
  REQUIRE(b != NULL);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, second_free, b) == 0);
  hak_hook_once_arm(at, b, then);
  atomic_store(&hak_test_hook, window_hook);
  if (realloc_to)
    hak_realloc(b, realloc_to);
  else
    hak_free(b);
  if (!atomic_load(&hak_once.ran)) { /* the window was not reached: nothing tested */
    fprintf(stderr, "the hook never ran\n");
    _exit(3);
  }
  pthread_join(t, NULL); /* the second free aborts the process meanwhile */
  hak_hook_returned("the second free");
}
/* over 32 MiB: unmapped, not cached */
static void window_free(enum hak_hook_point at, void (*then)(void *)) {
  window_race(hak_malloc(40 * MiB), 0, at, then);
}
/* realloc's move (a page of the test's after the block stops it growing
 * in place; the trace and valgrind builds copy instead, and the free of
 * the old block, too big for the cache, takes the window) */
static void window_move(enum hak_hook_point at, void (*then)(void *)) {
  unsigned char *b = hak_malloc(40 * MiB);
  REQUIRE(b != NULL);
  hak_map_at(hak_test_large_end(b, 40 * MiB), hak_page_size(), PROT_READ);
  window_race(b, 80 * MiB, at, then);
}
static void unregistered_free(void *arg) {
  (void)arg;
  window_free(HAK_HOOK_LARGE_UNREGISTERED, let_second_go);
}
static void unregistered_move(void *arg) {
  (void)arg;
  window_move(HAK_HOOK_LARGE_UNREGISTERED, let_second_go);
}

/* EXPECT_ABORT of an unregistered_* part, run again (3 runs at most) when
 * it named the block "not allocated by hakmem" after a window longer than
 * err_invalid's 100 ms wait for the lock: the first call, descheduled on a
 * loaded machine between the hook and its unlock, let the second free's
 * wait run out, and the run tested nothing (helper-108: 1 of 116 runs at
 * a load of 5-10). A bug names it so after a short window too, every run. */
static void expect_unregistered(void (*fn)(void *), const char *name, const char *want) {
  for (int run = 1;; run++) {
    window_at[0] = window_at[1] = 0;
    struct hak_child c;
    REQUIRE(hak_run_child(fn, NULL, 60 * (hak_test_slowdown() > 8 ? 4 : 1), &c));
    int ok = hak_child_signaled(&c, SIGABRT) && c.out && strstr(c.out, want);
    double took = window_at[1] ? window_at[1] - window_at[0] : -1;
    int too_long =
        !ok && c.out && strstr(c.out, "not allocated by hakmem") && (took < 0 || took > 0.09);
    if (too_long && run < 3) {
      printf("%s: the window lasted %s (over err_invalid's 100 ms wait): run again\n", name,
             took < 0 ? "past the process's end" : "over 90 ms");
      hak_child_free(&c);
      continue;
    }
    char how[128];
    CHECK_MSG(
        ok, "%s: wanted SIGABRT and stderr containing \"%s\"; got %s (window %.3f s), stderr:\n%s",
        name, want, hak_child_describe(&c, how, sizeof how), took, c.out ? c.out : "");
    hak_child_free(&c);
    return;
  }
}

/* ---- just after that unlock (HAK_HOOK_LARGE_GONE), the range gone from
 * the registry and the lock free: a second free started there finds the
 * block only among the recently freed, so a free or a move that
 * remembered it after its unlock would have it named "not allocated by
 * hakmem". The second free is started there (not before, as above, where
 * it waits for the lock and is let in 100 us after the unlock: late
 * enough for either order), and the first call waits there until the
 * second has ended the process. */
static void start_second(void *arg) {
  (void)arg;
  atomic_store(&second_go, 1);
  if (!hak_flag_within(&second_returned, 10 * hak_test_slowdown())) { /* a hang, said so */
    fprintf(stderr, "the second free neither ended the process nor returned\n");
    _exit(3);
  }
}
static void gone_free(void *arg) {
  (void)arg;
  window_free(HAK_HOOK_LARGE_GONE, start_second);
}
static void gone_move(void *arg) {
  (void)arg;
  window_move(HAK_HOOK_LARGE_GONE, start_second);
}

/* ---- err_invalid naming a block's start that the cache keeps, freed
 * (large_place's LARGE_PLACE_FREED): a freed block p whose cached mapping
 * aligned_alloc took at another offset is freed again: large_free finds p
 * is not the new block's start and calls err_invalid, whose hook
 * (HAK_HOOK_ERR_LARGE) frees that block and mallocs and frees p again
 * (the cache hands the mapping back at p's offset). There large_place
 * reads p as the start of a cached, freed block: a double free. Named
 * otherwise ("not the start of an allocated block", or "not allocated by
 * hakmem"), a program's double free is reported as a bad pointer (mutant
 * large-place-freed-as-inside). No other test reaches that answer. */
static void *reused_q;
static int reused_ok;
static void reuse_mapping(void *p) {
  hak_free(reused_q); /* cached again, at aligned_alloc's offset */
  void *r = hak_malloc(MiB);
  reused_ok = r == p; /* the same mapping, p's offset again */
  hak_free(r);
  if (!reused_ok) { /* nothing tested, said so */
    fprintf(stderr, "the cache did not hand p's mapping back at p (%p, not %p)\n", r, p);
    _exit(3);
  }
}
static void freed_reused(void *arg) {
  (void)arg;
  unsigned char *p = hak_malloc(MiB); /* cacheable: its free keeps the mapping */
  REQUIRE(p != NULL);
  hak_free(p);
  unsigned char *q = hak_aligned_alloc(4096, MiB); /* the same mapping, a page in */
  if (q == NULL ||
      ((uintptr_t)q & ~((uintptr_t)4 * MiB - 1)) != ((uintptr_t)p & ~((uintptr_t)4 * MiB - 1)) ||
      q == p) {
    fprintf(stderr, "aligned_alloc did not take p's cached mapping (%p, p %p)\n", (void *)q,
            (void *)p);
    _exit(3);
  }
  reused_q = q;
  hak_hook_once(HAK_HOOK_ERR_LARGE, p, reuse_mapping);
  hak_free(p); /* not q's start: err_invalid */
  hak_hook_returned("the call");
}

/* A block the cache keeps: its header stays mapped, freed (passed before
 * the fix too; the same report). */
static void free_cached(void *arg) {
  (void)arg;
  race(hak_malloc(MiB), 0, 0);
}

int main(void) {
  hak_free(hak_malloc(100)); /* hakmem set up before the forks */
  EXPECT_ABORT(free_big, NULL, "hakmem: double free of 0x");
  EXPECT_ABORT(free_big, NULL, "(large block)");
  EXPECT_ABORT(free_huge_aligned, NULL, "hakmem: double free of 0x");
  EXPECT_ABORT(free_cached_then_trimmed, NULL, "hakmem: double free of 0x");
  /* the trace build frees the block of a realloc that moves it after
   * recording the call (trace.h): named by free. A realloc to 0 is named
   * by realloc there too: since 2026-11-29 large_realloc checks the block
   * before it leaves the free to the trace build's caller. */
  const char *released = strcmp(hak_config(), "trace") == 0 ? "hakmem: double free of 0x"
                                                            : "hakmem: realloc of freed block 0x";
  EXPECT_ABORT(realloc_zero_big, NULL, "hakmem: realloc of freed block 0x");
  EXPECT_ABORT(free_cached, NULL, "hakmem: double free of 0x");
  EXPECT_ABORT(realloc_cached, NULL, "hakmem: realloc of freed block 0x");
  EXPECT_ABORT(realloc_big, NULL, "hakmem: realloc of freed block 0x");
  EXPECT_ABORT(realloc_small_big, NULL, "hakmem: realloc of freed block 0x");
  if (TRACK_REALLOC_IN_PLACE) /* else (valgrind build) every realloc copies: no move */
    EXPECT_ABORT(realloc_move, NULL, released);
  EXPECT_ABORT(usable_big, NULL, "hakmem: usable_size of freed block 0x");
  EXPECT_ABORT(usable_trimmed, NULL, "hakmem: usable_size of freed block 0x");
  EXPECT_ABORT(free_sized_big, NULL, "hakmem: double free of 0x");
  EXPECT_ABORT(free_sized_huge_aligned, NULL, "hakmem: double free of 0x");
  void *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(shared != MAP_FAILED);
  window_at = shared;
  expect_unregistered(unregistered_free, "unregistered_free", "hakmem: double free of 0x");
  expect_unregistered(unregistered_free, "unregistered_free", "(large block)");
  expect_unregistered(unregistered_move, "unregistered_move", "hakmem: double free of 0x");
  expect_unregistered(unregistered_move, "unregistered_move", "(large block)");
  EXPECT_ABORT(gone_free, NULL, "hakmem: double free of 0x");
  EXPECT_ABORT(gone_move, NULL, "hakmem: double free of 0x");
  /* the error path's own window: the pointer is not allocated by hakmem once
   * the block is unmapped (its first bytes, its header: 16 below the block) */
  EXPECT_ABORT(interior_big, (void *)(uintptr_t)16, ": not allocated by hakmem\n");
  EXPECT_ABORT(interior_big, (void *)(uintptr_t)(MiB + 1), "hakmem: invalid free of 0x");
  EXPECT_ABORT(interior_big, (void *)(uintptr_t)(MiB + 1), ": not allocated by hakmem\n");
  EXPECT_ABORT(interior_big, (void *)(intptr_t)-16, ": not allocated by hakmem\n");
  EXPECT_ABORT(interior_huge_usable, (void *)(uintptr_t)4096, "hakmem: invalid usable_size of 0x");
  EXPECT_ABORT(interior_huge_usable, (void *)(uintptr_t)4096, ": not allocated by hakmem\n");
  EXPECT_ABORT(interior_big_realloc, (void *)(uintptr_t)64, "hakmem: invalid realloc of 0x");
  EXPECT_ABORT(interior_big_realloc, (void *)(uintptr_t)64, ": not allocated by hakmem\n");
  EXPECT_ABORT(interior_locked, NULL, "hakmem: invalid free of 0x");
  EXPECT_ABORT(interior_locked, NULL, ": not the start of an allocated block\n");
  /* the start of a block the cache keeps, freed, when err_invalid looks */
  EXPECT_ABORT(freed_reused, NULL, "hakmem: double free of 0x");
  return hak_test_done();
}
