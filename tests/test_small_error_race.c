/* The naming of a bad pointer or a double free of a small block while
 * another thread changes the block's page or segment. Each window is held
 * open at a test hook, so each part tests the interleaving it names every
 * run.
 *
 * unmapped_*: a bad pointer into a small segment (its header, or an
 * interior pointer) whose owner gives the segment back, and the segment
 * cache being full, unmaps it, after err_invalid read the registry
 * (HAK_HOOK_ERR_SMALL). Until 2026-11-28 err_invalid then read the page
 * descriptor without a lock: SIGSEGV, no report. Now the registry is read
 * again under the global lock, and p, in no segment any more, is "not
 * allocated by hakmem".
 *
 * locked: the release starts once err_invalid holds the global lock and
 * found the segment registered (HAK_HOOK_ERR_SMALL_LOCKED), and waits
 * there for the lock: the descriptor read after the hook is still mapped.
 * Read without the lock (mutant err-small-reads-unlocked) the segment is
 * unmapped first: SIGSEGV.
 *
 * self_locked: the freeing thread holds the global lock itself (a signal
 * handler's free): err_invalid's wait for it ends (100 ms), and the page
 * is read all the same (no other thread can unmap the segment then), so
 * an interior pointer is still named one. Waited for without end (mutant
 * err-small-lock-waits-forever) the process hangs.
 *
 * double_*: a second free (or realloc, usable_size, free_sized) of a small
 * block by a thread that does not own it, which found the free marker, while
 * the owner empties the block's page, gives it back and (double_reused)
 * takes its slice for another class (HAK_HOOK_DOUBLE_FREE). Until
 * 2026-11-28 the report named the page's block_size read after that:
 * "(large block)" for a page given back, the other class's size for one
 * taken again. Now the class the block-start check read: the size the
 * block had. */
#include "hak_test.h"

#include <pthread.h>
#include <stdatomic.h>

#include "hak_test_internal.h"

#define KiB ((size_t)1 << 10)

/* Whether [p, p + 4 KiB) is unmapped (msync: ENOMEM). */
static int unmapped(const void *p) {
  return msync((void *)((uintptr_t)p & ~(uintptr_t)4095), 4096, MS_ASYNC) != 0 && errno == ENOMEM;
}

/* ---- a segment that its owner, another thread, gives back on cue ------ */
static atomic_int owner_go, owner_ready, owner_tid;
static void *owner_block;
static void *owner_thread(void *arg) {
  (void)arg;
  atomic_store(&owner_tid, (int)gettid());
  owner_block = hak_malloc(40); /* its heap's first block: a segment of its own */
  REQUIRE(owner_block != NULL);
  atomic_store(&owner_ready, 1);
  HAK_WAIT_FLAG(&owner_go);
  hak_free(owner_block);
  return NULL; /* its exit gives the segment back: nothing is live there */
}

/* 32 KiB blocks over 10 segments, all freed by a thread that then exits:
 * its segments go back, the cache keeps SEGMENT_CACHE_MAX of them, and the
 * next segment given back is unmapped. */
static void *filler_thread(void *arg) {
  (void)arg;
  enum { N = 1300 };
  static void *b[N];
  for (int i = 0; i < N; i++)
    REQUIRE((b[i] = hak_malloc(32 * KiB)) != NULL);
  for (int i = 0; i < N; i++)
    hak_free(b[i]);
  return NULL;
}

static pthread_t owner;
/* The owner's segment made first (the cache filled after, or it would be
 * one taken from there), then the cache filled; returns the segment. */
static uint8_t *segment_to_unmap(void) {
  REQUIRE(pthread_create(&owner, NULL, owner_thread, NULL) == 0);
  HAK_WAIT_FLAG(&owner_ready);
  pthread_t f;
  REQUIRE(pthread_create(&f, NULL, filler_thread, NULL) == 0);
  REQUIRE(pthread_join(f, NULL) == 0);
  if (segment_cache_count() != SEGMENT_CACHE_MAX) { /* nothing to test, said so */
    fprintf(stderr, "the segment cache holds %zu segments, not %d\n", segment_cache_count(),
            SEGMENT_CACHE_MAX);
    _exit(3);
  }
  return ptr_segment_base(owner_block);
}

/* the hook: the owner frees its block and exits, giving the segment back */
static void give_back_now(void *target) {
  atomic_store(&owner_go, 1);
  REQUIRE(pthread_join(owner, NULL) == 0);
  if (!unmapped(ptr_segment_base(target))) { /* nothing tested, said so */
    fprintf(stderr, "the owner's exit did not unmap its segment\n");
    _exit(3);
  }
}

enum { FREE, REALLOC, USABLE, FREE_SIZED };
static void call(int how, void *p) {
  if (how == FREE)
    hak_free(p);
  else if (how == REALLOC)
    hak_realloc(p, 100);
  else if (how == USABLE)
    fprintf(stderr, "usable size %zu\n", hak_usable_size(p));
  else
    hak_free_sized(p, 8);
}

/* The call `how` of p with then(p) run at hook point `where` for p; the
 * call is to end the process (a report), its return is a bug. */
static void hooked_call(enum hak_hook_point where, void *p, void (*then)(void *), int how) {
  hak_hook_once(where, p, then);
  call(how, p);
  hak_hook_returned("the call");
}

/* p: 64 bytes into the owner's segment (its header), or (interior) 8
 * bytes into the owner's block, an interior pointer named so before */
static void unmapped_case(int interior, int how) {
  uint8_t *seg = segment_to_unmap();
  hooked_call(HAK_HOOK_ERR_SMALL, interior ? (uint8_t *)owner_block + 8 : seg + 64, give_back_now,
              how);
}
static void unmapped_header(void *arg) {
  (void)arg;
  unmapped_case(0, FREE);
}
static void unmapped_interior(void *arg) {
  (void)arg;
  unmapped_case(1, FREE);
}
static void unmapped_realloc(void *arg) {
  (void)arg;
  unmapped_case(0, REALLOC);
}
static void unmapped_usable(void *arg) {
  (void)arg;
  unmapped_case(0, USABLE);
}

/* ---- the release waits for the lock err_invalid holds ---------------- */
static void wait_for_release(void *target) {
  atomic_store(&owner_go, 1);
  double end = hak_now() + 10 * hak_test_slowdown();
  for (;;) {
    long nr = hak_task_syscall(atomic_load(&owner_tid));
    if (nr == -2 || unmapped(ptr_segment_base(target)))
      return; /* gone: the lock did not hold it back (a bug; what follows shows it) */
    if (hak_thread_in_futex(atomic_load(&owner_tid), &hak_global_lock))
      return;
    if (hak_now() > end) { /* nothing tested, said so */
      fprintf(stderr, "the owner's exit neither waited for the global lock nor ended\n");
      _exit(3);
    }
    sched_yield();
  }
}
static void locked(void *arg) {
  (void)arg;
  uint8_t *seg = segment_to_unmap();
  hooked_call(HAK_HOOK_ERR_SMALL_LOCKED, seg + 64, wait_for_release, FREE);
}

/* ---- the global lock held by the freeing thread itself --------------- */
static void self_locked(void *b) {
  pthread_mutex_lock(&hak_global_lock);
  hak_free((uint8_t *)b + 8);
}

/* ---- a double free racing the page's release -------------------------- */
enum { NBLK = 3000 };
static void **blk;       /* NBLK 40-byte blocks (class 48) of this thread's */
static atomic_int reuse; /* the emptied page's slice taken for 64-byte blocks */
static atomic_int page_go, page_done;

/* Owner (this process's main thread), at the other thread's hook: every
 * other block of blk[0]'s page freed, the cache flushed (the page empty:
 * given back, as it is not its class's last page), then, for reuse, the
 * slice taken again by a page of 64-byte blocks. */
static void empty_page(void) {
  uint8_t *b = blk[0];
  hak_segment_t *seg = ptr_segment_base(b);
  hak_page_t *pg = ptr_page(seg, b);
  for (int i = 1; i < NBLK; i++)
    if (ptr_page(seg, blk[i]) == pg)
      hak_free(blk[i]);
  hak_thread_cache_flush();
  if (slice_is_block_start(ptr_slice_entry(seg, b), b)) { /* nothing tested, said so */
    fprintf(stderr, "the page of %p was not given back\n", (void *)b);
    _exit(3);
  }
  if (atomic_load(&reuse)) {
    int hit = 0;
    for (int i = 0; i < 4000 && !hit; i++) {
      void *q = hak_malloc(64);
      REQUIRE(q != NULL);
      hit = ptr_slice(seg, q) == ptr_slice(seg, b) && ptr_segment_base(q) == seg;
    }
    /* malloc(64)'s class: 64, or 80 with redzones, where malloc(40)'s is 64 (hak_test.h) */
    if (!hit || ptr_page(seg, b)->block_size != hak_test_small_usable(64) + hak_test_redzone()) {
      fprintf(stderr, "no 64-byte block came in the slice of %p\n", (void *)b);
      _exit(3);
    }
  }
}
static void signal_owner(void *arg) { /* the hook, on the second freer's thread */
  (void)arg;
  atomic_store(&page_go, 1);
  HAK_WAIT_FLAG(&page_done);
}
static atomic_int second_how;
static void *second_free(void *arg) {
  (void)arg;
  call(atomic_load(&second_how), blk[0]);
  hak_hook_returned("the second call");
  _exit(4);
}
static void double_case(int how, int reused) {
  blk = calloc(NBLK, sizeof *blk);
  REQUIRE(blk != NULL);
  for (int i = 0; i < NBLK; i++)
    REQUIRE((blk[i] = hak_malloc(40)) != NULL);
  hak_free(blk[0]); /* freed: in this thread's cache, its page still holding it */
  atomic_store(&reuse, reused);
  atomic_store(&second_how, how);
  hak_hook_once(HAK_HOOK_DOUBLE_FREE, blk[0], signal_owner);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, second_free, NULL) == 0);
  HAK_WAIT_FLAG(&page_go);
  empty_page();
  atomic_store(&page_done, 1);
  pthread_join(t, NULL); /* the second call ends the process meanwhile */
}
static void double_released(void *arg) {
  double_case((int)(intptr_t)arg, 0);
}
static void double_reused(void *arg) {
  double_case((int)(intptr_t)arg, 1);
}

int main(void) {
  hak_free(hak_malloc(100)); /* hakmem set up before the forks */
  EXPECT_ABORT(unmapped_header, NULL, "hakmem: invalid free of 0x");
  EXPECT_ABORT(unmapped_header, NULL, ": not allocated by hakmem\n");
  EXPECT_ABORT(unmapped_interior, NULL, ": not allocated by hakmem\n");
  EXPECT_ABORT(unmapped_realloc, NULL, "hakmem: invalid realloc of 0x");
  EXPECT_ABORT(unmapped_realloc, NULL, ": not allocated by hakmem\n");
  EXPECT_ABORT(unmapped_usable, NULL, "hakmem: invalid usable_size of 0x");
  EXPECT_ABORT(unmapped_usable, NULL, ": not allocated by hakmem\n");
  EXPECT_ABORT(locked, NULL, "hakmem: invalid free of 0x");
  EXPECT_ABORT(locked, NULL, ": not the start of an allocated block\n");
  /* not a 40-byte block: its page would keep blk[0]'s from going back */
  void *b40 = hak_malloc(300);
  REQUIRE(b40 != NULL);
  char want[256];
  snprintf(want, sizeof want,
           "hakmem: invalid free of %p: interior pointer into block %p (size class %zu)\n",
           (void *)((uint8_t *)b40 + 8), b40, hak_usable_size(b40) + hak_test_redzone());
  EXPECT_ABORT(self_locked, b40, want);
  hak_free(b40);
  /* the second call names the class the block had: 48 (40 bytes asked; 64
   * with the redzone, hak_test.h) */
  char cls40[64];
  snprintf(cls40, sizeof cls40, " (size class %zu)\n",
           hak_test_small_usable(40) + hak_test_redzone());
  static const struct {
    int how;
    const char *what;
  } calls[] = {{FREE, "hakmem: double free of 0x"},
               {REALLOC, "hakmem: realloc of freed block 0x"},
               {USABLE, "hakmem: usable_size of freed block 0x"},
               {FREE_SIZED, "hakmem: double free of 0x"}};
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    void *how = (void *)(intptr_t)calls[i].how;
    EXPECT_ABORT(double_released, how, calls[i].what);
    EXPECT_ABORT(double_released, how, cls40);
    EXPECT_ABORT(double_reused, how, cls40);
  }
  return hak_test_done();
}
