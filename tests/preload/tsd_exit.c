/* tsd_exit: a thread's exit under LD_PRELOAD when hakmem's pthread key (its
 * heap's destructor) has an index of 32 or more. Built WITHOUT hakmem
 * (plain gcc) twice: with -DTSD_EXIT_LIB as libtsd_exit.so, whose
 * constructor creates 40 keys, and as the program, linked against it;
 * scripts/test-preload.sh runs it under a copy of libhakmem.so without
 * DF_1_INITFIRST (scripts/elf-clear-initfirst.py), so that the loader runs
 * that constructor before hakmem's, as on a loader that ignores the flag or
 * with another object that has it, and hakmem's key is the 41st.
 *
 * glibc keeps keys 32 and up in blocks of 32 that pthread_setspecific
 * callocs, and at a thread's exit, after the destructor rounds (hakmem's
 * abandons the thread's heap), frees those blocks one by one. Each worker
 * here leaves two such blocks live at its exit (keys 32-63, among them
 * hakmem's, and 64-95): the free of the second is the last of its
 * abandoned segment and reclaims it with a heap made for that call. Until
 * 2026-11-28 hakmem set its key to that heap: pthread_setspecific callocked
 * the first block again, a call of hakmem's nested in the heap's making,
 * which as an exiting thread's call abandoned the heap to the pool; its
 * caller then used it and abandoned it a second time. The pool held it
 * twice, and two threads alive at once shared it (its cache and queues,
 * with no lock): `hak_heap_check` found segments owned by a finished heap
 * and the debug build free blocks written after their free (a probe of
 * 2026-11-28: 59 of 100 runs of 4 threads setting 40 keys each).
 *
 *   tsd_exit --expect-high-key   fail unless hakmem serves malloc and its
 *                                key is at index 32 or more
 *   tsd_exit                     accept either (without the preload: no checks)
 * Exit 0 ok, 1 failure. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIB_KEYS 40

#ifdef TSD_EXIT_LIB
pthread_key_t tsd_exit_keys[LIB_KEYS];
int tsd_exit_bad;

__attribute__((constructor)) static void tsd_exit_ctor(void) {
  for (int i = 0; i < LIB_KEYS; i++)
    tsd_exit_bad += pthread_key_create(&tsd_exit_keys[i], NULL) != 0;
}

#else
extern pthread_key_t tsd_exit_keys[LIB_KEYS];
extern int tsd_exit_bad;

/* hakmem.h's, which this program is built without */
struct hak_class_stats {
  size_t block_size, live_blocks, free_blocks, pages;
};
struct hak_stats {
  size_t live_blocks, live_bytes, mapped_bytes, segments, abandoned_segments, large_blocks,
      large_bytes, heaps_active;
  struct hak_class_stats classes[80];
};

static int failures;
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "tsd_exit: check failed: %s: ", #cond);                                      \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
    }                                                                                              \
  } while (0)

static pthread_key_t high;    /* an index of 64 or more: the thread's second block of keys */
void *volatile tsd_exit_sink; /* keeps the compiler from eliding malloc+free pairs */

/* a heap (malloc), then a value in the block of keys 64-95, freed at exit */
static void *worker(void *arg) {
  tsd_exit_sink = malloc(100);
  free(tsd_exit_sink);
  pthread_setspecific(high, (void *)1);
  return arg;
}

static _Atomic int holders_alive, holders_go;
static void *holder(void *arg) {
  void *p = malloc(100);
  tsd_exit_sink = p;
  holders_alive++;
  while (!holders_go)
    sched_yield();
  free(p);
  return arg;
}

static void run_worker(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) || pthread_join(t, NULL)) {
    fprintf(stderr, "tsd_exit: pthread_create failed\n");
    exit(1);
  }
}

int main(int argc, char **argv) {
  int expect_high = argc > 1 && !strcmp(argv[1], "--expect-high-key");
  void (*stats)(struct hak_stats *) =
      (void (*)(struct hak_stats *))dlsym(RTLD_DEFAULT, "hak_stats");
  size_t (*check)(void) = (size_t(*)(void))dlsym(RTLD_DEFAULT, "hak_heap_check");
  do
    CHECK(pthread_key_create(&high, NULL) == 0, "out of keys");
  while (!failures && high < 64);
  /* the library's keys, created before hakmem's, are 0-39 when its
   * constructor ran first: hakmem's key is then at 40 or more */
  int key_high = tsd_exit_keys[0] == 0 && tsd_exit_keys[LIB_KEYS - 1] == LIB_KEYS - 1;
  printf("tsd_exit: library keys %u..%u, %s\n", tsd_exit_keys[0], tsd_exit_keys[LIB_KEYS - 1],
         !stats     ? "hakmem absent"
         : key_high ? "hakmem's key 40 or more"
                    : "hakmem's key below 32");
  CHECK(!tsd_exit_bad, "the library's pthread_key_create failed");
  if (expect_high)
    CHECK(stats && check && key_high, "hakmem's key below 32, or hakmem not loaded");
  if (!stats || !check)
    return failures ? 1 : 0;

  run_worker(); /* the first thread's exit allocates what glibc keeps */
  struct hak_stats before, after;
  stats(&before);
  for (int i = 0; i < 20; i++)
    run_worker();
  stats(&after);
  CHECK(after.heaps_active == before.heaps_active, "%zu heaps active after 20 exits (%zu before)",
        after.heaps_active, before.heaps_active);
  CHECK(after.live_blocks == before.live_blocks, "%zu blocks live after 20 exits (%zu before)",
        after.live_blocks, before.live_blocks);

  /* two threads alive at once: a heap each (a heap pooled twice is shared) */
  stats(&before);
  pthread_t h1, h2;
  if (pthread_create(&h1, NULL, holder, NULL) || pthread_create(&h2, NULL, holder, NULL))
    return 1;
  while (holders_alive < 2)
    sched_yield();
  stats(&after);
  CHECK(after.heaps_active == before.heaps_active + 2,
        "two threads alive at once have %zu heaps between them (a heap pooled twice?)",
        after.heaps_active - before.heaps_active);
  holders_go = 1;
  pthread_join(h1, NULL);
  pthread_join(h2, NULL);
  size_t violations = check();
  CHECK(violations == 0, "hak_heap_check: %zu violations", violations);
  printf("tsd_exit: %s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
#endif
