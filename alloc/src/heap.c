/* Heaps: one per thread, reached through a TLS pointer.
 *
 * A thread starts on hak_empty_heap (every class queue points to the empty
 * page), so the malloc fast path needs no "initialised?" test: its first
 * allocation takes the slow path, which gives the thread a heap.
 * Heap structs come from mmap and are never unmapped: a finished thread's
 * heap goes to a pool and is reused by the next new thread, so a remote
 * thread holding a heap pointer always points at valid memory.
 *
 * Thread exit (pthread key destructor): the heap drains its delayed frees,
 * collects remote frees, returns empty pages, and abandons segments that
 * still hold live blocks to a global list; other heaps adopt them when they
 * need a page. Blocks that outlive their thread can be freed anywhere.
 * fork(): the global locks are taken around fork, and in the child every
 * other thread's heap is abandoned on that thread's behalf. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
#define HAK_HAVE_SINGLE_THREADED 1
#include <sys/single_threaded.h>
#endif
#include <unistd.h>

#include "internal.h"
#include "trace.h"

#define P(x) [x] = &hak_empty_page
#define P8(b) P(b), P(b + 1), P(b + 2), P(b + 3), P(b + 4), P(b + 5), P(b + 6), P(b + 7)
hak_heap_t hak_empty_heap = {
    .direct = {P8(0), P8(8), P8(16), P8(24), P8(32), P8(40), P8(48), P8(56), P8(64), P8(72)}};
_Static_assert(NCLS == 80, "update the empty heap initialiser");

__thread hak_heap_t *hak_tls_heap __attribute__((tls_model("initial-exec"))) = &hak_empty_heap;
/* Set once this thread's heap was abandoned at exit: later frees (libc's own
 * thread cleanup runs after the key destructors) must not create a heap that
 * no destructor would abandon again. */
__thread bool hak_tls_exiting __attribute__((tls_model("initial-exec")));
uintptr_t hak_cookie;
pthread_mutex_t hak_global_lock = PTHREAD_MUTEX_INITIALIZER;
hak_heap_t *hak_all_heaps;    /* guarded by hak_global_lock */
hak_heap_t *hak_active_heaps; /* guarded by hak_global_lock */
_Atomic uint64_t hak_abandon_epoch = 1;
void (*_Atomic hak_test_hook)(enum hak_hook_point where, void *arg);
static hak_heap_t *heap_pool;
static hak_heap_t *heap_chunk_next, *heap_chunk_end; /* structs not handed out yet */
static uint32_t heap_count;
/* Heaps made active (global lock): fork_prepare's re-check */
static uint64_t heap_activations;

/* On and off hak_active_heaps (global lock held), as a heap's state turns
 * HEAP_ACTIVE and back: segment_wait_marks walks the active heaps alone.
 * It walked every heap ever made until 2026-11-29 (helper-132): a process
 * that once had 16000 threads alive at once paid a walk of 16000 pooled
 * heap structs (a cache miss each) under the global lock at every later
 * exit that abandoned an adopted segment again, 194 us a thread against
 * 32 us after 16 (glibc: 35 us after 16000; tests/test_many_threads). */
static void active_push_locked(hak_heap_t *h) {
  h->act_prev = NULL;
  h->act_next = hak_active_heaps;
  if (hak_active_heaps)
    hak_active_heaps->act_prev = h;
  hak_active_heaps = h;
}

static void active_remove_locked(hak_heap_t *h) {
  if (h->act_prev)
    h->act_prev->act_next = h->act_next;
  else
    hak_active_heaps = h->act_next;
  if (h->act_next)
    h->act_next->act_prev = h->act_prev;
  h->act_next = h->act_prev = NULL;
}

_Atomic int hak_fork_active;
_Atomic(pthread_t) hak_fork_owner;
/* One fork at a time through hakmem's handlers: glibc runs the prepare
 * handlers of concurrent forks at the same time, and two forkers shared the
 * heaps' fork_locked flags and the fork window (one forked with heaps the
 * other had already unlocked, or locked by threads its child lacks: 3-4 of
 * 2000 children hung in a helper's probe, and TSan reported the flags).
 * Taken first in fork_prepare, released by fork_parent and fork_child. */
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t heap_key;
/* Whether heap_key was created: with every key taken (PTHREAD_KEYS_MAX)
 * there is none, and pthread_setspecific on the unset heap_key (0) wrote
 * the heap into another library's key, whose destructor then got it. Such
 * a process's threads keep their heaps at exit (never abandoned, blocks
 * valid and freeable anywhere). */
static bool heap_key_ok;

static void heap_thread_done(void *arg);
static _Atomic int atfork_registered;
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void init_once_fn(void) {
  hak_cookie = (uintptr_t)os_random_seed();
  /* before any block exists: a thread without a heap frees through it */
  memcpy(hak_empty_heap.magic, hak_class_magic, sizeof(hak_class_magic));
  heap_key_ok = pthread_key_create(&heap_key, heap_thread_done) == 0;
}

void hak_init(void) {
  pthread_once(&init_once, init_once_fn);
}

/* Registered as early as possible, so that atfork handlers registered later
 * (which run before ours in the prepare phase and after ours in the
 * parent/child phase) may allocate: libhakmem.so is linked -z initfirst, so
 * the loader runs hak_constructor before any other object's constructor. A
 * malloc before the constructors run registers from heap_get_or_create
 * instead, once the process has a second thread. */
static void register_atfork(void) {
  if (!atomic_exchange(&atfork_registered, 1))
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* glibc's __libc_single_threaded (2.32): true until the process's first
 * pthread_create. Without it, never (registering at once, as before). */
static bool hak_single_threaded(void) {
#ifdef HAK_HAVE_SINGLE_THREADED
  return __libc_single_threaded;
#else
  return false;
#endif
}

__attribute__((constructor)) static void hak_constructor(void) {
  hak_init();
  register_atfork();
}

static void heap_reset(hak_heap_t *h) {
  memcpy(h->magic, hak_class_magic, sizeof(hak_class_magic));
  for (size_t c = 0; c < NCLS; c++) {
    h->direct[c] = &hak_empty_page;
    h->tail[c] = NULL;
  }
  tcache_reset(h);
  h->full = NULL;
  h->segments = NULL;
  h->dirty_free_bytes = 0;
  h->purge_at_ms = 0;
  h->seg_joins = h->collect_due = 0;
  /* relaxed: the heap owns no segment here, so no free pushes on it; a
   * later one finds the heap through `owner`, ordered after this */
  atomic_store_explicit(&h->delayed, 0, memory_order_relaxed);
}

/* Heap structs are carved from mmap'd chunks; metadata never comes from
 * malloc. A chunk's structs are touched one at a time, as they are first
 * handed out: initialising all 28 at once made 64 KiB resident in every
 * process, most of a one-thread program's overhead over glibc. errno is
 * kept when the chunk cannot be mapped, as by every os_* call: a malloc
 * that fails says ENOMEM itself, and a free that wanted a heap to reclaim
 * a segment with (free_not_owned) frees its block without one. Until
 * 2026-11-29 that free returned with mmap's ENOMEM in errno, which free
 * must keep (test_oom_sweep, part "no heap"). */
static hak_heap_t *heap_alloc_struct(void) {
  hak_lock(&hak_global_lock);
  hak_heap_t *h = heap_pool;
  if (h) {
    heap_pool = h->pool_next;
  } else {
    if (heap_chunk_next == heap_chunk_end) {
      size_t per = (64 * 1024) / sizeof(hak_heap_t);
      int saved = errno;
      hak_heap_t *chunk = mmap(NULL, per * sizeof(hak_heap_t), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      errno = saved;
      if (chunk == MAP_FAILED) {
        hak_unlock(&hak_global_lock);
        return NULL;
      }
      heap_chunk_next = chunk;
      heap_chunk_end = chunk + per;
    }
    h = heap_chunk_next++;
    h->id = ++heap_count;
    h->all_next = hak_all_heaps;
    hak_all_heaps = h;
  }
  active_push_locked(h); /* for segment_wait_marks: mark_seg is NULL */
  /* reset before it is marked active, under the global lock: hak_trim
   * (heap_trim_all) walks the active heaps and reads their segment lists */
  heap_reset(h);
  h->alloc_epoch = 0; /* not allocated yet (small_alloc_slow sets it) */
  __atomic_store_n(&h->state, HEAP_ACTIVE, __ATOMIC_RELAXED); /* fork_prepare reads it */
  heap_activations++;
  hak_unlock(&hak_global_lock);
  HAK_TEST_HOOK(HAK_HOOK_HEAP_PUBLISHED, h);
  return h;
}

/* How many heap structs new threads can take before one needs a new
 * mapping: the pool's and the current chunk's (tests: test_free_no_heap). */
size_t heap_structs_spare(void) {
  hak_lock(&hak_global_lock);
  size_t n = (size_t)(heap_chunk_end - heap_chunk_next);
  for (hak_heap_t *h = heap_pool; h; h = h->pool_next)
    n++;
  hak_unlock(&hak_global_lock);
  return n;
}

hak_heap_t *heap_get_or_create(void) {
  hak_heap_t *h = hak_tls_heap;
  if (h != &hak_empty_heap)
    return h;
  hak_init();
  h = heap_alloc_struct();
  if (!h)
    return NULL;
  hak_tls_heap = h;
  /* An exiting thread's (its heap abandoned at its exit): the caller
   * abandons this heap itself after its one call (abandon_if_exiting), so
   * the key is not set, nor the fork handlers registered. Either may
   * allocate, and under the preload that call is hakmem's, nested in this
   * one: with the heap key at index 32 or more (created after 32 others),
   * pthread_setspecific callocs the thread's block of keys 32-63, which
   * glibc's exit frees before this thread's last frees, and the nested
   * calloc, an exiting thread's call too, abandoned this heap to the pool
   * before its caller used it and abandoned it again: the pool held it
   * twice, and two later threads shared it (a probe of 2026-11-28,
   * tests/preload/tsd_exit.c; the calloc'd block leaked as well). */
  if (hak_tls_exiting)
    return h;
  if (heap_key_ok)
    pthread_setspecific(heap_key, h);
  /* Registered here, not in init_once: pthread_atfork may allocate, and by
   * now this thread has a heap to allocate from. Not while the process has
   * one thread (a library's constructor run before hakmem's: libhakmem.so
   * is linked -z initfirst, but a loader may ignore that, or another object
   * have it): this malloc may come from inside glibc's pthread_atfork,
   * which grows its handler list under its atfork lock, and registering
   * took that lock again, a hang before main (tests/preload/atfork_ctor.c,
   * test-preload.sh atfork_ctor-no-initfirst). With one thread no other
   * holds a hakmem lock at a fork; hakmem's constructor, or the first heap
   * of a second thread, registers. */
  if (!hak_single_threaded())
    register_atfork();
  return h;
}

/* Frees the blocks remote threads handed over for full pages. */
void heap_drain_delayed(hak_heap_t *h) {
  uintptr_t d = atomic_load_explicit(&h->delayed, memory_order_relaxed); /* a peek */
  if (!d)
    return;
  d = atomic_exchange_explicit(&h->delayed, 0, memory_order_acquire);
  for (hak_block_t *b = (hak_block_t *)d; b;) {
    hak_block_t *next = block_next(b);
    hak_segment_t *seg = ptr_segment_base(b);
    page_free_block(h, seg, ptr_page(seg, b), b);
    b = next;
  }
}

/* Gives back every page of `s`, none of them holding a block (h's lock
 * held): the last one releases the segment. A page an abandonment marked
 * (TF_ABANDONED) is unmarked first. */
static void give_back_pages(hak_heap_t *h, hak_segment_t *s) {
  hak_page_t *pg;
  FOR_EACH_PAGE(s, pg) {
    page_clear_notify(pg, true);
    if (segment_page_free(h, s, pg))
      break;
  }
}

/* Gives up every page and segment of `h` (its thread is gone or going). */
void heap_abandon(hak_heap_t *h, bool in_fork_child) {
  hak_page_t *pg;
  /* 0. cached blocks back to their pages (the caller holds h's lock) */
  tcache_flush_all(h, true, in_fork_child);
  /* 1. no remote thread may still be handing blocks to h afterwards */
  for (hak_segment_t *s = h->segments; s; s = s->next)
    FOR_EACH_PAGE(s, pg)
  page_clear_notify(pg, in_fork_child);
  /* 2. blocks already handed over go back to their pages */
  heap_drain_delayed(h);
  /* 3. collect remote frees and take the pages off h's lists. A segment
   * with live blocks is abandoned whole, its empty pages still carved, so
   * the heap that adopts it (often the next new thread) reuses their free
   * lists instead of carving new pages; a segment with none is given back. */
  for (hak_segment_t *s = h->segments, *snext; s; s = snext) {
    snext = s->next;
    bool live = false;
    FOR_EACH_PAGE(s, pg) {
      page_collect(pg);
      if (pg->in_full)
        full_remove(h, pg);
      else
        queue_remove(h, pg);
      live |= pg->used != 0;
    }
    if (!live)
      give_back_pages(h, s);
  }
  HAK_TEST_HOOK(HAK_HOOK_ABANDON_COLLECTED, h);
  /* 4. what is left holds live blocks: abandon it */
  /* no purge here: the adopter reuses these slices; the heap-level threshold
   * (segment_page_free) and the segment cache bound what stays committed */
  hak_segment_t *s = h->segments;
  heap_reset(h);
  hak_lock(&hak_global_lock);
  /* before the segments are abandoned: a heap allocating from now on has
   * allocated since their abandonment (relaxed: every increment and every
   * abandonment's read of it hold the global lock; the allocators' reads
   * are a guess, small_alloc_slow) */
  atomic_fetch_add_explicit(&hak_abandon_epoch, 1, memory_order_relaxed);
  while (s) {
    hak_segment_t *next = s->next;
    if (s->used_pages == 0) {
      hak_unlock(&hak_global_lock);
      s->next = s->prev = NULL;
      segment_release(s);
      hak_lock(&hak_global_lock);
    } else if (!segment_abandon_locked(s, false)) {
      /* its last blocks were freed since step 3: give its pages back (its
       * free dirty slices counted as h's again, so the release takes away
       * what was counted: heap_reset cleared the count) */
      hak_unlock(&hak_global_lock);
      s->next = s->prev = NULL; /* h->segments is NULL after heap_reset */
      h->dirty_free_bytes = segment_dirty_free_bytes(s);
      give_back_pages(h, s); /* the count is 0 again once the segment goes */
      hak_lock(&hak_global_lock);
    }
    s = next;
  }
  active_remove_locked(h);
  __atomic_store_n(&h->state, HEAP_FREE, __ATOMIC_RELAXED);
  h->pool_next = heap_pool;
  heap_pool = h;
  hak_unlock(&hak_global_lock);
}

static void heap_thread_done(void *arg) {
  hak_heap_t *h = arg;
  if (!h || h != hak_tls_heap)
    return;
  hak_tls_heap = &hak_empty_heap;
  hak_tls_exiting = true;
#if HAK_TRACE_ON
  hak_trace_emit(hak_trace_next_seq(), TR_THREAD_EXIT, NULL, 0, 0, NULL, 0);
#endif
  heap_lock(h);
  heap_abandon(h, false);
  HAK_TEST_HOOK(HAK_HOOK_HEAP_POOLED, h);
  heap_unlock(h);
}

/* hak_trim (malloc_trim): gives the OS back every page hakmem holds free
 * and can reach without waiting on a thread:
 *   - the caller's heap: its cached blocks back to their pages (pages that
 *     empty go back to their segments), the blocks remote frees handed
 *     over and those other threads freed to its pages (heap_collect_remote),
 *     then every free slice of its segments purged;
 *   - every other thread's heap whose lock is free at that moment (its
 *     owner is not in a slow path): the free slices of its segments, under
 *     its lock, which every change of a segment's slices holds. A heap
 *     whose lock is held is passed over, not waited for: the walk holds the
 *     global lock, which an owner's slow path may be waiting for;
 *   - the cached and abandoned segments' free slices and the large-block
 *     cache's mappings (segment_trim_unowned_locked, large_trim).
 * Not reached: other threads' cached blocks, and blocks freed by other
 * threads to another heap's pages since its owner last took them (each is
 * returned when its owner next allocates or exits). */
/* hak_trim's part of the caller's pages (h's lock held, the delayed stack
 * drained and the cache flushed): as their owner it takes the blocks other
 * threads freed to them, and a page that empties goes back as a local free
 * would take it back (page_free_slow): a formerly full page to its queue,
 * an empty one to its segment unless it is the last of its class (or a
 * hand-over is still touching it), an idle segment to the cache. Until
 * 2026-11-28 those stacks stayed for the next allocation to collect: a
 * program whose threads freed what its main thread built kept all of it
 * carved and resident through malloc_trim (24 MiB in test_trim part 1c).
 * Also segment_page_alloc's, before the heap takes a segment it does not
 * have. Returns how many segments the heap still has. */
size_t heap_collect_remote(hak_heap_t *h) {
  size_t kept = 0;
  for (hak_segment_t *s = h->segments, *next; s; s = next) {
    next = s->next;
    bool gone = false;
    hak_page_t *pg;
    FOR_EACH_PAGE(s, pg) {
      if (page_collect(pg) != 0 && (gone = page_free_slow(h, s, pg)))
        break; /* s went back: not touched again */
    }
    kept += !gone;
  }
  return kept;
}

void heap_trim_all(void) {
  hak_heap_t *self = hak_tls_heap;
  if (self != &hak_empty_heap) {
    heap_lock(self);
    heap_drain_delayed(self);
    tcache_flush_all(self, true, false);
    heap_collect_remote(self);
    segment_purge_owned(self);
    heap_unlock(self);
  }
  hak_lock(&hak_global_lock);
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next) {
    if (h == self || h->state != HEAP_ACTIVE ||
        atomic_exchange_explicit(&h->lock.held, 1, memory_order_acquire))
      continue;
    segment_purge_owned(h);
    heap_unlock_raw(&h->lock);
  }
  segment_trim_unowned_locked();
  hak_unlock(&hak_global_lock);
}

void heap_lock_wait(hak_heap_lock_t *l) {
  for (unsigned round = 0;;) {
    while (atomic_load_explicit(&l->held, memory_order_relaxed))
      spin_wait(&round);
    if (!atomic_exchange_explicit(&l->held, 1, memory_order_acquire))
      return;
  }
}

#if defined(HAK_ASAN) && HAK_ASAN
/* LeakSanitizer's root regions (track.h): the innermost lock, no other taken
 * while it is held. Through hak_lock: a malloc from an atfork handler in
 * the fork window, on the forking thread, finds it held by itself. */
static pthread_mutex_t roots_lock = PTHREAD_MUTEX_INITIALIZER;
void track_roots_add(void *p, size_t n) {
  hak_lock(&roots_lock);
  __lsan_register_root_region(p, n);
  hak_unlock(&roots_lock);
}
void track_roots_del(void *p, size_t n) {
  hak_lock(&roots_lock);
  __lsan_unregister_root_region(p, n);
  hak_unlock(&roots_lock);
}
void track_fork_lock(void) {
  pthread_mutex_lock(&roots_lock);
}
void track_fork_unlock(void) {
  pthread_mutex_unlock(&roots_lock);
}
#endif

/* fork: take every active heap's lock (each thread is then outside its
 * slow paths), then the global locks. Lock order everywhere: heap, then
 * global, then large (then, asan build, LeakSanitizer's roots above). A
 * heap created or taken from the pool while we were locking is caught by
 * the re-check. Pooled heaps are not locked: no thread uses one (the one
 * whose exit pooled it may still hold its lock, which fork_child lets go).
 * Until 2026-11-29 every heap ever made was locked, and unlocked after the
 * fork in parent and child, a copy-on-write fault for each page of heap
 * structs in both: after 16000 threads alive at once, 43 ms a fork against
 * 0.3 ms after 16 (glibc 1.8 ms; tests/test_many_threads, part fork). */
static void fork_prepare(void) {
  pthread_mutex_lock(&fork_lock);
  for (;;) {
    pthread_mutex_lock(&hak_global_lock);
    hak_heap_t *head = hak_all_heaps;
    uint64_t made = heap_activations;
    pthread_mutex_unlock(&hak_global_lock);
    for (hak_heap_t *h = head; h; h = h->all_next)
      if (!h->fork_locked && __atomic_load_n(&h->state, __ATOMIC_RELAXED) == HEAP_ACTIVE) {
        heap_lock_raw(&h->lock);
        h->fork_locked = 1;
      }
    pthread_mutex_lock(&hak_global_lock);
    if (hak_all_heaps == head && heap_activations == made)
      break;
    pthread_mutex_unlock(&hak_global_lock);
  }
  pthread_mutex_lock(&hak_large_lock);
  track_fork_lock();
  atomic_store_explicit(&hak_fork_owner, pthread_self(), memory_order_relaxed);
  atomic_store_explicit(&hak_fork_active, 1, memory_order_release);
}

/* The heap list is walked before the global lock is released: in the
 * parent another thread may push a new heap at once (TSan: a race on
 * hak_all_heaps with heap_alloc_struct; the walk could read the new
 * heap's all_next before it was written). */
static void fork_unlock_all(void) {
  atomic_store_explicit(&hak_fork_active, 0, memory_order_release);
  track_fork_unlock();
  pthread_mutex_unlock(&hak_large_lock);
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next)
    if (h->fork_locked) {
      h->fork_locked = 0;
      heap_unlock_raw(&h->lock);
    }
  pthread_mutex_unlock(&hak_global_lock);
}

static void fork_parent(void) {
  fork_unlock_all();
  pthread_mutex_unlock(&fork_lock);
}

/* A dead thread may have been inside a fast path at the fork: its page's
 * free list is intact (one pointer store) but `used` may be off by one.
 * Blocks in its thread cache count as used here; heap_abandon's
 * tcache_flush_all then gives them back. */
static void heap_repair_counts(hak_heap_t *h) {
  hak_page_t *pg;
  for (hak_segment_t *s = h->segments; s; s = s->next)
    FOR_EACH_PAGE(s, pg) {
      uint32_t n = 0;
      for (hak_block_t *b = pg->free; b; b = block_next(b))
        n++;
      pg->used = atomic_load_explicit(&pg->capacity, memory_order_relaxed) - n;
      pg->free_is_zero = 0;
    }
}

static void fork_child(void) {
  /* the forking thread took the locks in fork_prepare and is the one
   * thread of the child: release them as in the parent */
  fork_unlock_all();
#if HAK_TRACE_ON
  hak_trace_fork_child();
#endif
  /* A thread that died with the fork may have been handing a block to our
   * own heap (TF_NOTIFYING): nobody will finish that, so finish it here.
   * Remote frees pushed while it held TF_NOTIFYING are on the page's stack;
   * a full page with such blocks goes back to its class queue, whose walk
   * collects them (a notify request would wait for a remote free that may
   * never come, and the blocks with it). */
  hak_heap_t *self = hak_tls_heap;
  if (self != &hak_empty_heap) {
    hak_page_t *pg;
    for (hak_segment_t *s = self->segments; s; s = s->next)
      FOR_EACH_PAGE(s, pg) {
        uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
        if ((tf & TF_MASK) != TF_NOTIFYING)
          continue;
        bool stranded = pg->in_full && tf_block(tf);
        atomic_store_explicit(&pg->thread_free,
                              (tf & ~TF_MASK) | (pg->in_full && !stranded ? TF_NOTIFY : 0),
                              memory_order_relaxed);
        if (stranded) {
          full_remove(self, pg);
          queue_push_back(self, pg);
        }
      }
    heap_drain_delayed(self);
  }
  /* The other threads do not exist here: abandon their heaps for them
   * (first their frees between a mark's check and its push are forgotten:
   * an abandonment would wait for them) */
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next) {
    /* written only where set: a write to every heap struct was a
     * copy-on-write fault per page of them */
    if (atomic_load_explicit(&h->mark_seg, memory_order_relaxed))
      atomic_store_explicit(&h->mark_seg, NULL, memory_order_relaxed);
    /* a pooled heap's lock, held by the exiting thread that pooled it
     * (fork_prepare locks active heaps only): that thread is gone */
    if (h->state == HEAP_FREE && atomic_load_explicit(&h->lock.held, memory_order_relaxed))
      heap_unlock_raw(&h->lock);
  }
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next)
    if (h->state == HEAP_ACTIVE && h != hak_tls_heap) {
      heap_repair_counts(h);
      heap_abandon(h, true);
    }
  segment_fork_fixup();
  os_orphans_fork_child();
  pthread_mutex_unlock(&fork_lock); /* held by this thread, as in the parent */
}

/* Test-only: back to the state of a fresh process (see hakmem.h). */
void hak_test_reset(void) {
  hak_init();
  hak_lock(&hak_global_lock);
  segment_reset_all();
  heap_pool = NULL;
  hak_active_heaps = NULL;
  for (hak_heap_t *h = hak_all_heaps; h; h = h->all_next) {
    heap_reset(h);
    __atomic_store_n(&h->state, HEAP_FREE, __ATOMIC_RELAXED);
    h->act_next = h->act_prev = NULL;
    h->pool_next = heap_pool;
    heap_pool = h;
  }
  hak_unlock(&hak_global_lock);
  large_reset_all();
  hak_tls_heap = &hak_empty_heap;
  hak_tls_exiting = false;
}
