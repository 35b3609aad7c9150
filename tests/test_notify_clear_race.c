/* A remote free into a page whose hand-over is ending: another thread's
 * free (R) took the page's notify request (TF_NOTIFYING), put its block on
 * the owner's delayed list and read the page's word to reset the state;
 * a third thread's free (Q) of another block of the page pushes onto the
 * page's stack before R's reset. The reset is a CAS on the whole word: it
 * fails once and keeps Q's push. Written over the word it read (a store,
 * or a CAS whose failure is not retried with the new word), it drops Q's
 * block from the stack: counted live for ever, the page never empties and
 * its segment never goes back (mutant notify-reset-drops-push).
 *
 * The window is a few instructions, so Q's free is put there on cue: R is
 * held at HAK_HOOK_NOTIFY_CLEARING while Q frees its block and ends.
 *
 * Set-up: the main thread (the owner) fills a page P of 64 KiB blocks and
 * moves it to the full list (its notify request made). R frees one block,
 * Q another. Checked: the hook ran with Q's block on P's stack, after R's
 * reset P's stack still holds Q's block (count 1) and asks nothing, and once
 * every block is freed and collected nothing is live and hak_heap_check is
 * clean.
 *
 * Part "taking": the CAS before it, by which a free takes the request
 * (TF_NOTIFY to TF_NOTIFYING). R2 read the request and is held before
 * its CAS (HAK_HOOK_NOTIFY_TAKING) while R1 takes the request and is held
 * in its hand-over (HAK_HOOK_NOTIFYING). R2's CAS fails; retried with the
 * new word it finds a hand-over under way and pushes onto the page's
 * stack. Taken as won (mutant notify-take-lost-as-won), R2 hands its block
 * over too and ends TF_NOTIFYING while R1 is still in its hand-over: the
 * owner could then exit or release the page under R1, which reads the
 * owner's heap and pushes onto its delayed list after. Checked: once R2
 * is done, P is still TF_NOTIFYING (R1's) with R2's block on its stack;
 * once R1 is done the state is none; then nothing is live.
 *
 * Part "delayed": the CAS that pushes a handed-over block onto the owner
 * heap's delayed list. The owner fills two pages, P1 and P2 (both full,
 * each with its request); R1's hand-over of a block of P1 is held after it
 * read the list, before its CAS (HAK_HOOK_DELAYED_PUSHING), while R2 hands
 * a block of P2 over to the same heap. R1's CAS fails and, retried, puts
 * its block above R2's. Stored instead of swapped (mutant
 * delayed-push-stored), R2's block is dropped from the list: counted live
 * for ever. Checked: the list holds both blocks, then nothing is live.
 *
 * Until 2026-11-28 no test reached these CASes' retries (make test-coverage). */
#include "hak_test.h"

#include <pthread.h>

#include "hak_test_internal.h"

/* a page of this class holds 8 blocks (the request: 65536 less the redzone, hak_test.h) */
#define SZ (65536 - hak_test_redzone())
#define BLOCKS 8

static void *d[BLOCKS + 1];
static hak_page_t *P;
static atomic_int hook_ran, q_pushed;
static atomic_int r1_held, r1_go;
static pthread_t r1;
static hak_heap_t *main_heap; /* main's heap, read by the hook on R1 */

static void *free_one(void *arg) {
  hak_free(arg);
  return NULL;
}

static void hook(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_NOTIFY_CLEARING || arg != d[3] || atomic_load(&hook_ran))
    return;
  atomic_store(&hook_ran, 1);
  /* Q's free, ended before R's reset: the page asks nothing new (R's
   * TF_NOTIFYING), so the block goes onto its stack */
  hak_free_remotely(&d[5], 1);
  uintptr_t tf = atomic_load(&P->thread_free);
  atomic_store(&q_pushed, tf_count(tf) == 1 && (tf & TF_MASK) == TF_NOTIFYING);
}

static void hook_taking(enum hak_hook_point where, void *arg) {
  if (where == HAK_HOOK_NOTIFY_TAKING && arg == d[5] && !atomic_load(&hook_ran)) {
    atomic_store(&hook_ran, 1); /* R2, before its CAS: R1 takes the request */
    REQUIRE(pthread_create(&r1, NULL, free_one, d[3]) == 0);
    HAK_WAIT_FLAG_MSG(&r1_held, "R1's free never reached HAK_HOOK_NOTIFYING");
  } else if (where == HAK_HOOK_NOTIFYING && arg == d[3]) {
    atomic_store(&r1_held, 1); /* R1, in its hand-over */
    HAK_WAIT_FLAG_MSG(&r1_go, "R1 was never let go");
  }
}

/* The end of a part: b[0..n-1] but b[3] and b[other] (freed remotely
 * already) freed, and keep; hak_trim takes the handed-over blocks back
 * (the delayed list, the pages' stacks); then nothing is live. */
static void free_rest(void **b, int n, int other, void *keep, const char *what) {
  for (int i = 0; i < n; i++)
    if (i != 3 && i != other)
      hak_free(b[i]);
  hak_free(keep);
  hak_trim(0);
  CHECK_ALL_FREED(what);
}

static void fill(void) {
  P = hak_fill_full_page(d, BLOCKS, SZ);
  REQUIRE(hak_block_page(d[BLOCKS - 1]) == P);
  REQUIRE(tf_count(atomic_load(&P->thread_free)) == 0);
}

static void taking(void) {
  void *keep = hak_malloc(100); /* as main's */
  REQUIRE(keep != NULL);
  fill();
  atomic_store(&hook_ran, 0);
  atomic_store(&hak_test_hook, hook_taking);
  hak_free_remotely(&d[5], 1);
  if (!atomic_load(&hook_ran)) { /* nothing tested, said so */
    FAIL("R2's free never reached HAK_HOOK_NOTIFY_TAKING (no notify request?)");
    exit(hak_test_done());
  }
  uintptr_t tf = atomic_load(&P->thread_free);
  CHECK_MSG((tf & TF_MASK) == TF_NOTIFYING,
            "R2's free, which lost the request to R1, ended R1's hand-over (state %lu, want "
            "NOTIFYING)",
            (unsigned long)(tf & TF_MASK));
  CHECK_MSG(tf_count(tf) == 1 && tf_block(tf) == (hak_block_t *)d[5],
            "R2's free, which lost the request, is not on P's stack (%u blocks)",
            (unsigned)tf_count(tf));
  atomic_store(&r1_go, 1);
  REQUIRE(pthread_join(r1, NULL) == 0);
  atomic_store(&hak_test_hook, NULL);
  tf = atomic_load(&P->thread_free);
  CHECK_MSG((tf & TF_MASK) == TF_NONE, "R1's hand-over left state %lu",
            (unsigned long)(tf & TF_MASK));
  free_rest(d, BLOCKS + 1, 5, keep, "part taking: a free that lost the notify request to another");
}

static void *e[2 * BLOCKS + 1];
static void hook_delayed(enum hak_hook_point where, void *arg) {
  if (where != HAK_HOOK_DELAYED_PUSHING || arg != e[3] || atomic_load(&hook_ran))
    return;
  atomic_store(&hook_ran, 1); /* R1, the list read: R2 hands a block of P2 over */
  hak_free_remotely(&e[BLOCKS + 5], 1);
  atomic_store(&q_pushed, atomic_load(&main_heap->delayed) == (uintptr_t)e[BLOCKS + 5]);
}

static void delayed(void) {
  void *keep = hak_malloc(100);
  REQUIRE(keep != NULL);
  for (int i = 0; i <= 2 * BLOCKS; i++)
    REQUIRE((e[i] = hak_malloc(SZ)) != NULL);
  hak_page_t *p1 = hak_block_page(e[0]);
  hak_page_t *p2 = hak_block_page(e[BLOCKS]);
  REQUIRE(p1 != p2 && hak_block_page(e[BLOCKS - 1]) == p1 &&
          hak_block_page(e[2 * BLOCKS - 1]) == p2);
  REQUIRE(p1->in_full && (atomic_load(&p1->thread_free) & TF_MASK) == TF_NOTIFY);
  REQUIRE(p2->in_full && (atomic_load(&p2->thread_free) & TF_MASK) == TF_NOTIFY);
  REQUIRE(atomic_load(&hak_tls_heap->delayed) == 0);
  main_heap = hak_tls_heap;
  atomic_store(&hook_ran, 0);
  atomic_store(&q_pushed, 0);
  atomic_store(&hak_test_hook, hook_delayed);
  hak_free_remotely(&e[3], 1);
  atomic_store(&hak_test_hook, NULL);
  if (!atomic_load(&hook_ran)) { /* nothing tested, said so */
    FAIL("R1's hand-over never reached HAK_HOOK_DELAYED_PUSHING");
    exit(hak_test_done());
  }
  CHECK_MSG(atomic_load(&q_pushed), "R2's hand-over in the window is not on the delayed list");
  hak_block_t *top = (hak_block_t *)atomic_load(&hak_tls_heap->delayed);
  CHECK_MSG(top == e[3] && block_next(top) == (hak_block_t *)e[BLOCKS + 5] &&
                block_next(block_next(top)) == NULL,
            "the delayed list after both hand-overs is not R1's block on R2's (R2's dropped?)");
  free_rest(e, 2 * BLOCKS + 1, BLOCKS + 5, keep,
            "part delayed: two hand-overs to one heap at once");
}

int main(void) {
  void *keep = hak_malloc(100); /* another class: the segment stays in use */
  REQUIRE(keep != NULL);
  fill();
  atomic_store(&hak_test_hook, hook);
  hak_free_remotely(&d[3], 1);
  atomic_store(&hak_test_hook, NULL);
  if (!atomic_load(&hook_ran)) { /* nothing tested, said so */
    FAIL("R's free never reached HAK_HOOK_NOTIFY_CLEARING (no hand-over?)");
    return hak_test_done();
  }
  CHECK_MSG(atomic_load(&q_pushed), "Q's free in the window did not push onto P's stack");
  uintptr_t tf = atomic_load(&P->thread_free);
  CHECK_MSG(tf_count(tf) == 1 && tf_block(tf) == (hak_block_t *)d[5],
            "after the hand-over's reset P's stack holds %u blocks (want Q's, 1): the reset "
            "dropped a push",
            (unsigned)tf_count(tf));
  CHECK_MSG((tf & TF_MASK) == TF_NONE, "the hand-over's reset left state %lu",
            (unsigned long)(tf & TF_MASK));
  /* the delayed block (R's) and P's stack (Q's) taken back */
  free_rest(d, BLOCKS + 1, 5, keep, "a remote free into a page whose hand-over was ending");
  taking();
  delayed();
  return hak_test_done();
}
