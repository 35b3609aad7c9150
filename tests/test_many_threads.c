/* Many threads alive at once (earlier tests run a few at a time).
 *
 * Part "alive": 1000 threads (HAK_TEST_SCALE) on 64 KiB stacks, alive at
 * once, each allocating blocks of several classes and a large one, then
 * freeing half of its neighbour's (remote frees), then all exiting at once
 * (one round) or in reverse order (the next). hak_heap_check is 0 and the
 * counts right at each quiescent point: every heap given up and pooled (the
 * second round makes no new heap struct), every segment with a live block
 * abandoned, all of it given back once main frees the rest.
 *
 * Part "pooled": a pooled heap struct takes no part in an abandonment.
 * segment_wait_marks walked every heap struct ever made until 2026-11-29
 * (helper-132): after 16000 threads alive at once, each later thread exit
 * that abandoned an adopted segment again walked 16000 pooled structs under
 * the global lock (194 us a thread, 32 us after 16; glibc 35). Here one
 * pooled heap names the segment in its mark_seg (as no pooled heap can):
 * an abandonment that consults pooled heaps waits on it for ever. */
#include "hak_test.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "hak_test_internal.h"

#define MiB ((size_t)1 << 20)
#define K 8

static const size_t sizes[K] = {16, 100, 700, 3000, 8000, 40000, 65536, 100000};
static size_t n_threads;
static void **blocks; /* n_threads * K */
static pthread_barrier_t b_alloc, b_freed;
static sem_t *go;

static void *worker(void *arg) {
  size_t t = (size_t)(uintptr_t)arg;
  for (size_t k = 0; k < K; k++) {
    blocks[t * K + k] = hak_malloc(sizes[k]);
    if (CHECK(blocks[t * K + k] != NULL))
      hak_fill(blocks[t * K + k], sizes[k], t * K + k);
  }
  pthread_barrier_wait(&b_alloc);
  size_t o = (t + 1) % n_threads; /* the neighbour's even blocks, remotely */
  for (size_t k = 0; k < K; k += 2) {
    CHECK(hak_pattern_mismatch(blocks[o * K + k], sizes[k], o * K + k) == SIZE_MAX);
    hak_free(blocks[o * K + k]);
    blocks[o * K + k] = NULL;
  }
  pthread_barrier_wait(&b_freed);
  sem_wait(&go[t]);
  return NULL;
}

static void alive(void) {
  n_threads = hak_iters(1000);
  blocks = calloc(n_threads * K, sizeof *blocks);
  pthread_t *th = calloc(n_threads, sizeof *th);
  go = calloc(n_threads, sizeof *go);
  REQUIRE(blocks && th && go);
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 64 * 1024);
  hak_free(hak_malloc(1)); /* main's heap, made before the rounds */
  struct hak_stats st;
  size_t structs = 0;
  for (int round = 0; round < 2; round++) {
    pthread_barrier_init(&b_alloc, NULL, (unsigned)n_threads + 1);
    pthread_barrier_init(&b_freed, NULL, (unsigned)n_threads + 1);
    for (size_t t = 0; t < n_threads; t++) {
      sem_init(&go[t], 0, 0);
      REQUIRE(pthread_create(&th[t], &at, worker, (void *)(uintptr_t)t) == 0);
    }
    pthread_barrier_wait(&b_alloc);
    pthread_barrier_wait(&b_freed);
    hak_stats(&st);
    CHECK_EQ(hak_heap_check(), 0);
    CHECK_EQ(st.heaps_active, n_threads + 1);
    CHECK_EQ(st.live_blocks, n_threads * K / 2);
    CHECK_EQ(st.large_blocks, n_threads); /* 100000 B: odd k, kept */
    if (round == 0)
      structs = hak_heap_structs();
    CHECK_EQ(hak_heap_structs(), structs); /* round 1: the pooled ones again */
    for (size_t i = 0; i < n_threads; i++) {
      size_t t = round ? n_threads - 1 - i : i;
      sem_post(&go[t]);
      if (round)
        pthread_join(th[t], NULL);
    }
    if (!round)
      for (size_t t = 0; t < n_threads; t++)
        pthread_join(th[t], NULL);
    hak_stats(&st);
    CHECK_EQ(hak_heap_check(), 0);
    CHECK_EQ(st.heaps_active, 1);
    CHECK_EQ(st.live_blocks, n_threads * K / 2);
    CHECK_EQ(st.abandoned_segments, n_threads); /* each its own, its odd blocks live */
    CHECK_EQ(hak_heap_structs(), structs);
    for (size_t i = 0; i < n_threads * K; i++) {
      size_t t = i / K, k = i % K;
      if (blocks[i]) {
        CHECK(hak_pattern_mismatch(blocks[i], sizes[k], t * K + k) == SIZE_MAX);
        hak_free(blocks[i]);
        blocks[i] = NULL;
      }
    }
    hak_trim(0);
    hak_stats(&st);
    CHECK_EQ(hak_heap_check(), 0);
    CHECK_EQ(st.live_blocks, 0);
    CHECK_EQ(st.abandoned_segments, 0);
    CHECK_LE(st.segments, 16);
    CHECK_LE(st.mapped_bytes, 64 * MiB);
    for (size_t t = 0; t < n_threads; t++)
      sem_destroy(&go[t]);
    pthread_barrier_destroy(&b_alloc);
    pthread_barrier_destroy(&b_freed);
  }
  printf("alive: %zu threads at once, 2 rounds, %zu heap structs\n", n_threads, structs);
  free(blocks);
  free(th);
  free(go);
}

/* ---- pooled ------------------------------------------------------------------------ */

static void *kept;
static hak_heap_t *kept_heap;

static void *keep_one(void *arg) {
  (void)arg;
  kept = hak_malloc(16);
  CHECK(kept != NULL);
  kept_heap = hak_tls_heap;
  return NULL;
}

static void *hold(void *arg) {
  hak_free(hak_malloc(16)); /* a heap */
  pthread_barrier_wait(arg);
  return NULL;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char m[] = "FAIL: a thread's exit waited on a pooled heap's mark_seg\n";
  (void)!write(2, m, sizeof m - 1);
  _exit(1);
}

static void pooled(void) {
  /* 64 heap structs, all pooled */
  enum { N = 64 };
  pthread_t th[N];
  pthread_barrier_t b;
  pthread_barrier_init(&b, NULL, N);
  for (int i = 0; i < N; i++)
    REQUIRE(pthread_create(&th[i], NULL, hold, &b) == 0);
  for (int i = 0; i < N; i++)
    pthread_join(th[i], NULL);
  /* a segment abandoned once, at the head of the list */
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, keep_one, NULL) == 0);
  pthread_join(t, NULL);
  void *first = kept;
  hak_segment_t *seg = ptr_segment_base(first);
  REQUIRE(seg->abandoned);
  /* a pooled heap other than the one the next thread takes names it */
  hak_heap_t *planted = NULL;
  hak_lock(&hak_global_lock);
  for (hak_heap_t *h = hak_all_heaps; h && !planted; h = h->all_next)
    if (h->state == HEAP_FREE && h != kept_heap)
      planted = h;
  hak_unlock(&hak_global_lock);
  REQUIRE(planted != NULL);
  atomic_store(&planted->mark_seg, seg);
  signal(SIGALRM, on_alarm);
  alarm(10);
  /* adopts seg (the head, with room for 16 B) and abandons it again */
  REQUIRE(pthread_create(&t, NULL, keep_one, NULL) == 0);
  pthread_join(t, NULL);
  alarm(0);
  atomic_store(&planted->mark_seg, NULL);
  CHECK(ptr_segment_base(kept) == seg); /* the second abandonment was seg's */
  CHECK(seg->abandoned);
  hak_free(first);
  hak_free(kept);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.live_blocks, 0);
  CHECK_EQ(st.abandoned_segments, 0);
  CHECK_EQ(hak_heap_check(), 0);
}

/* ---- fork ------------------------------------------------------------------------- */

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

/* A fork after many threads alive at once writes no pooled heap struct, in
 * the parent or the child: until 2026-11-29 fork_prepare locked every heap
 * ever made and both unlocked them all, a copy-on-write fault for each page
 * of structs on both sides (1000 heaps: about 800 pages). */
static void fork_pooled(void) {
  size_t n = hak_iters(1000);
  pthread_t *th = calloc(n, sizeof *th);
  REQUIRE(th != NULL);
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 64 * 1024);
  pthread_barrier_t b;
  pthread_barrier_init(&b, NULL, (unsigned)n);
  for (size_t i = 0; i < n; i++)
    REQUIRE(pthread_create(&th[i], &at, hold, &b) == 0);
  for (size_t i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  free(th);
  void *p = hak_malloc(100); /* main's heap, active */
  REQUIRE(p != NULL);
  long struct_pages = (long)(n * sizeof(hak_heap_t) / 4096);
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  long before = minor_faults();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    long f = minor_faults(); /* the child's since the fork: its handlers' */
    hak_free(hak_malloc(16));
    (void)!write(fds[1], &f, sizeof f);
    _exit(hak_heap_check() == 0 ? 0 : 3);
  }
  long parent = minor_faults() - before, child = -1;
  CHECK(read(fds[0], &child, sizeof child) == sizeof child);
  CHECK_CHILD_OK(pid, "fork child of the pooled heaps");
  close(fds[0]);
  close(fds[1]);
  printf("fork: %zu pooled heaps (%ld pages): minor faults parent %ld, child %ld\n", n,
         struct_pages, parent, child);
  /* the sanitizers' shadow memory and valgrind fault on their own */
  if (hak_config_is("tsan") || hak_config_is("asan") || hak_test_under_valgrind())
    return hak_free(p);
  CHECK_MSG(parent < struct_pages / 4, "the parent's fork wrote the pooled heaps: %ld faults",
            parent);
  CHECK_MSG(child < struct_pages / 4, "the child's fork wrote the pooled heaps: %ld faults", child);
  hak_free(p);
}

/* A fork while an exiting thread holds its heap's lock after pooling it
 * (held at HAK_HOOK_HEAP_POOLED): fork_prepare does not wait for it, and
 * the child's next thread takes that heap from the pool (the head) and
 * must not wait for the lock of a thread the child lacks. */
static sem_t at_pooled, pooled_go;
static hak_heap_t *exiting_heap;

static void pooled_hold(void *arg) {
  (void)arg;
  sem_post(&at_pooled);
  sem_wait(&pooled_go);
}

static void *exiting(void *arg) {
  (void)arg;
  hak_free(hak_malloc(16));
  exiting_heap = hak_tls_heap;
  hak_hook_once(HAK_HOOK_HEAP_POOLED, exiting_heap, pooled_hold);
  return NULL;
}

static void *child_thread(void *arg) {
  void *p = hak_malloc(16);
  *(hak_heap_t **)arg = hak_tls_heap;
  hak_free(p);
  return NULL;
}

static void fork_exiting(void) {
  sem_init(&at_pooled, 0, 0);
  sem_init(&pooled_go, 0, 0);
  hak_free(hak_malloc(16)); /* main's heap */
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, exiting, NULL) == 0);
  sem_wait(&at_pooled);
  pid_t pid = fork(); /* the old fork_prepare waited here for ever */
  REQUIRE(pid >= 0);
  if (pid == 0) {
    atomic_store(&hak_test_hook, NULL);
    if (atomic_load(&exiting_heap->lock.held))
      _exit(6);
    if (hak_config_is("tsan")) /* no thread starts after a fork there */
      _exit(hak_heap_check() == 0 ? 0 : 3);
    alarm(10); /* a thread waiting for that lock: killed, the check fails */
    hak_heap_t *took = NULL;
    pthread_t c;
    if (pthread_create(&c, NULL, child_thread, &took) != 0)
      _exit(4);
    pthread_join(c, NULL);
    _exit(took != exiting_heap ? 5 : hak_heap_check() == 0 ? 0 : 3);
  }
  sem_post(&pooled_go);
  pthread_join(t, NULL);
  atomic_store(&hak_test_hook, NULL);
  CHECK_CHILD_OK(pid, "the child's thread on the exiting thread's pooled heap");
}

int main(void) {
  RUN_SECTION(alive);
  RUN_SECTION(pooled);
  RUN_SECTION(fork_pooled);
  RUN_SECTION(fork_exiting);
  return hak_test_done();
}
