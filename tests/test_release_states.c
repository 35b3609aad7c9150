/* What a page or segment must still hold when it is given back (each part
 * in a child of its own, with the state it needs forced through
 * internal.h):
 *  1. a page whose blocks are all free while a remote thread is still in
 *     its hand-over of a block of it (TF_NOTIFYING: that thread will CAS
 *     the page's thread_free once more) is not released yet;
 *  2. in a fork child, a full page whose hand-over a thread that did not
 *     survive the fork left in TF_NOTIFYING gets its notification request
 *     back (TF_NOTIFY): a remote free in the child then reaches the owner
 *     through the delayed list, and the block is reused;
 *  3. a segment that is unmapped (freed past the segment cache) is no
 *     longer in the registry: a stale pointer into it must be named, not
 *     followed into unmapped memory;
 *  4. as 2, but other remote frees pushed blocks on the page's stack while
 *     the dead thread held TF_NOTIFYING: the child takes the page off the
 *     full list, and its next allocations of the class reuse those blocks
 *     before a new page (before: TF_NOTIFY came back and the blocks waited
 *     for a remote free that a single-threaded child never makes);
 *  5. as 1, for a segment given back as idle (segment_drop_if_idle: every
 *     page left is an empty one kept as its class's last) while one of
 *     those pages is in TF_NOTIFYING: the remote free's block was handed
 *     over and drained, and that thread will still CAS the page's word. The
 *     segment is adopted from an exited thread (so the heap has another)
 *     with a page each of three classes; with the mutant
 *     idle-ignores-notifying the last free released it. */
#include "hak_test.h"

#include <pthread.h>
#include <sys/wait.h>

#include "hak_test_internal.h"

/* one page of this class holds 8 blocks (the request: 65536 less the redzone, hak_test.h) */
#define SZ (65536 - hak_test_redzone())

static void set_state(hak_page_t *pg, uintptr_t st) {
  atomic_store(&pg->thread_free, (atomic_load(&pg->thread_free) & ~TF_MASK) | st);
}

static void notifying_page_kept(void *arg) {
  void *b[9];
  REQUIRE(hak_malloc(100) != NULL); /* another class: the segment stays in use */
  for (int i = 0; i < 9; i++)
    REQUIRE((b[i] = hak_malloc(SZ)) != NULL); /* page P full, a second page of the class */
  hak_page_t *P = hak_block_page(b[0]);
  set_state(P, TF_NOTIFYING); /* a remote thread mid-way through its hand-over */
  for (int i = 0; i < 8; i++)
    hak_free(b[i]);
  hak_thread_cache_flush(); /* P's blocks all back on P: it is empty */
  int kept = P->in_use;
  printf("page in use while a hand-over is in flight: %d\n", kept);
  fflush(stdout);
  _exit(kept ? 0 : 1);
}

static void *free_one(void *p) {
  hak_free(p);
  return NULL;
}

/* Parts 2 and 4: fills a page P with blk[0..7] and returns it in the full
 * list, TF_NOTIFYING, as if a thread that dies with the fork had taken it
 * for its hand-over. */
static hak_page_t *full_page_notifying(void **blk) {
  REQUIRE(hak_malloc(100) != NULL); /* another class: the segment stays in use */
  for (int i = 0; i < 8; i++)
    REQUIRE((blk[i] = hak_malloc(SZ)) != NULL);
  hak_page_t *P = hak_block_page(blk[0]);
  REQUIRE(hak_malloc(SZ) != NULL); /* P full: in the full list, TF_NOTIFY */
  REQUIRE(P->in_full && (atomic_load(&P->thread_free) & TF_MASK) == TF_NOTIFY);
  set_state(P, TF_NOTIFYING);
  return P;
}

static void fork_restores_notify(void *arg) {
  void *blk[8];
  hak_page_t *P = full_page_notifying(blk);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    uintptr_t st = atomic_load(&P->thread_free) & TF_MASK;
    pthread_t t;
    if (pthread_create(&t, NULL, free_one, blk[3]) != 0 || pthread_join(t, NULL) != 0)
      _exit(3);
    void *r = hak_malloc(SZ); /* the owner's slow path drains the delayed list */
    printf("fork child: state %lu (TF_NOTIFY is %lu), remote-freed block reused: %d\n",
           (unsigned long)st, (unsigned long)TF_NOTIFY, r == blk[3]);
    fflush(stdout);
    _exit(st == TF_NOTIFY && r == blk[3] ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 2);
}

static void *free_two(void *arg) {
  void **b = arg;
  hak_free(b[0]);
  hak_free(b[1]);
  return NULL;
}

static size_t class_pages(size_t cls) {
  struct hak_stats st;
  hak_stats(&st);
  return st.classes[cls].pages;
}

static void fork_collects_stranded(void *arg) {
  void *blk[8];
  size_t cls = hak_size_to_class(SZ);
  hak_page_t *P = full_page_notifying(blk);
  void *stacked[2] = {blk[3], blk[5]};
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, free_two, stacked) == 0 && pthread_join(t, NULL) == 0);
  REQUIRE(tf_count(atomic_load(&P->thread_free)) == 2); /* pushed: the state was not TF_NOTIFY */
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    size_t v = hak_heap_check(), pages = class_pages(cls), n = 0;
    int found = 0;
    /* the class's second page has at most 7 free or carvable blocks */
    while (found < 2 && class_pages(cls) == pages && n++ < 16) {
      void *r = hak_malloc(SZ);
      found += r == stacked[0] || r == stacked[1];
    }
    printf("fork child: heap check %zu; stacked blocks reused %d of 2 in %zu allocations, "
           "pages of the class %zu -> %zu\n",
           v, found, n, pages, class_pages(cls));
    fflush(stdout);
    _exit(v == 0 && found == 2 && class_pages(cls) == pages ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 2);
}

#define NBLK 4096 /* 64 MiB of 16 KiB blocks: 16+ segments, more than the cache keeps */
static void *many[NBLK];

static void unmapped_unregistered(void *arg) {
  for (int i = 0; i < NBLK; i++)
    REQUIRE((many[i] = hak_malloc(16384)) != NULL);
  for (int i = 0; i < NBLK; i++)
    hak_free(many[i]);
  hak_thread_cache_flush();
  size_t gone = 0, stale = 0;
  for (int i = 0; i < NBLK; i++) {
    hak_segment_t *s = ptr_segment_base(many[i]);
    if (i && s == ptr_segment_base(many[i - 1]))
      continue;
    bool cached = false, owned = false;
    for (hak_segment_t *q = hak_segment_cache; q; q = q->next)
      cached |= q == s;
    for (hak_segment_t *q = hak_tls_heap->segments; q; q = q->next)
      owned |= q == s;
    if (cached || owned)
      continue;
    gone++;
    stale += registry_kind(s) != REG_NONE;
  }
  printf("segments given back: %zu, still registered: %zu\n", gone, stale);
  fflush(stdout);
  _exit(gone > 0 && stale == 0 ? 0 : 1);
}

/* Part 5: three blocks of three classes, in one segment, left live by a
 * thread that exits (the segment abandoned). */
static void *exited_blk[3];
static const size_t exited_size[3] = {48, 80, 112}; /* classes no other page of the heap has */
static void *leave_three(void *arg) {
  for (int i = 0; i < 3; i++)
    REQUIRE((exited_blk[i] = hak_malloc(exited_size[i])) != NULL);
  return arg;
}

static void idle_segment_kept_while_notifying(void *arg) {
  REQUIRE(hak_malloc(1000) != NULL); /* this heap's own segment */
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, leave_three, NULL) == 0 && pthread_join(t, NULL) == 0);
  hak_segment_t *S = ptr_segment_base(exited_blk[0]);
  REQUIRE(ptr_segment_base(exited_blk[1]) == S && ptr_segment_base(exited_blk[2]) == S);
  REQUIRE(atomic_load(&S->owner) == NULL && S->abandoned);
  REQUIRE(hak_malloc(2000) != NULL); /* a slow path: this heap has allocated since the exit */
  hak_free(exited_blk[2]);           /* reclaims S (adopted: this heap has two segments) */
  REQUIRE(atomic_load(&S->owner) == hak_tls_heap && S->used_pages == 3);
  hak_page_t *A = ptr_page(S, exited_blk[0]);
  hak_free(exited_blk[0]);
  hak_thread_cache_flush(); /* A empty, kept: its class's only page */
  REQUIRE(A->in_use && A->used == 0);
  set_state(A, TF_NOTIFYING); /* a remote free's hand-over of A's last block under way */
  hak_free(exited_blk[1]);
  hak_thread_cache_flush(); /* every page of S empty: S idle but for A's hand-over */
  int kept = A->in_use && atomic_load(&S->owner) == hak_tls_heap;
  set_state(A, TF_NONE); /* the hand-over's reset */
  printf("segment kept while a hand-over of its empty page is under way: %d\n", kept);
  fflush(stdout);
  _exit(kept && hak_heap_check() == 0 ? 0 : 1);
}

static void run(void (*fn)(void *), const char *what) {
  struct hak_child c;
  REQUIRE(hak_run_child(fn, NULL, 60, &c));
  char how[128];
  CHECK_MSG(hak_child_exited(&c, 0), "%s: child %s; output: %.400s", what,
            hak_child_describe(&c, how, sizeof how), c.out ? c.out : "");
  hak_child_free(&c);
}

int main(void) {
  run(notifying_page_kept, "a page emptied during a hand-over was released");
  run(fork_restores_notify, "a fork child lost a full page's notification request");
  run(unmapped_unregistered, "an unmapped segment stayed in the registry");
  run(fork_collects_stranded, "a fork child left blocks on a full page's remote stack");
  run(idle_segment_kept_while_notifying,
      "a segment was given back as idle during a hand-over of its empty page");
  return hak_test_done();
}
