/* fork() while a thread is between an abandoned page's mark check and its
 * push. Such a free names the segment in its heap's mark_seg, and an
 * abandonment of that segment waits until no heap names it
 * (segment_wait_marks). In a fork child the freeing thread is gone and will
 * never clear it: the child clears every heap's mark_seg (fork_child), or
 * the segment's next abandonment there waits forever.
 *
 * A producer thread allocates N blocks and exits (its segment abandoned); a
 * freer thread (made before, so it does not reclaim the segment) frees block 0 and is held at
 * HAK_HOOK_MARK_CHECKED; main forks. The child's new thread adopts the segment (its malloc) and
 * exits, abandoning it again; the child must exit within 10 s (SIGALRM). Then the parent lets the
 * freer go and frees the rest: nothing may stay live or abandoned. */
#include "hak_test.h"

#include <pthread.h>
#include <sys/wait.h>

#include "internal.h"

#define N 64
#define SIZE 64

#if HAK_TSAN
/* the child starts a thread after a multi-threaded fork, which TSan
 * refuses by default (the test's point: a thread of the child abandons) */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) {
  return "die_after_fork=0";
}
#endif

static unsigned char *blocks[N];
static _Thread_local int is_freer;
static atomic_int ready, cue, at_window, go, adopted;

static void *producer(void *arg) {
  for (int i = 0; i < N; i++)
    REQUIRE((blocks[i] = hak_malloc(SIZE)) != NULL);
  return arg;
}

static void *adopter(void *arg) {
  void *p = hak_malloc(SIZE);
  REQUIRE(p != NULL);
  if (ptr_segment_base(p) == ptr_segment_base(blocks[0]))
    atomic_store(&adopted, 1);
  hak_free(p);
  return arg;
}

static void hook(enum hak_hook_point where, void *arg) {
  if (where == HAK_HOOK_MARK_CHECKED && is_freer && arg == blocks[0]) {
    atomic_store(&at_window, 1);
    /* main lets it go once the fork child ended (alarm: 10 s) */
    HAK_WAIT_FLAG_MSG(&go,
                      "the freer was never let go (main's fork or its wait for the child hung)");
  }
}

static void *freer(void *arg) {
  is_freer = 1;
  /* a heap of its own, which has not allocated since the producer's exit:
   * it reclaims by neither rule 1 nor rule 2 */
  hak_free(hak_malloc(16));
  atomic_store(&ready, 1);
  HAK_WAIT_FLAG(&cue);
  hak_free(blocks[0]);
  return arg;
}

int main(void) {
  hak_free(hak_malloc(16));
  pthread_t f, t;
  REQUIRE(pthread_create(&f, NULL, freer, NULL) == 0);
  HAK_WAIT_FLAG(&ready);
  REQUIRE(pthread_create(&t, NULL, producer, NULL) == 0 && pthread_join(t, NULL) == 0);
  struct hak_stats st;
  hak_stats(&st);
  REQUIRE(st.abandoned_segments == 1);
  atomic_store(&hak_test_hook, hook);
  atomic_store(&cue, 1);
  HAK_WAIT_FLAG_MSG(&at_window, "the freer's free never reached HAK_HOOK_MARK_CHECKED");
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    atomic_store(&hak_test_hook, NULL);
    alarm(10);
    pthread_t a;
    if (pthread_create(&a, NULL, adopter, NULL) != 0 || pthread_join(a, NULL) != 0)
      _exit(2);
    _exit(atomic_load(&adopted) ? 0 : 3);
  }
  CHECK_CHILD_OK(pid, "fork child (SIGALRM: its abandonment waited for the parent's freer; "
                      "exit 3: its thread did not adopt the segment)");
  atomic_store(&go, 1);
  REQUIRE(pthread_join(f, NULL) == 0);
  atomic_store(&hak_test_hook, NULL);
  for (int i = 1; i < N; i++)
    hak_free(blocks[i]);
  CHECK_ALL_FREED("fork_mark");
  return hak_test_done();
}
