/* atfork_ctor: a library's constructor whose first allocating call of the
 * process is pthread_atfork (its 49th: glibc 2.36 keeps the first 48
 * handlers in its list's own storage), under LD_PRELOAD. Built WITHOUT hakmem (plain
 * gcc) twice: with -DATFORK_CTOR_LIB as libatfork_ctor.so, and as the
 * program, linked against it (--no-as-needed); scripts/test-preload.sh runs
 * it with and without LD_PRELOAD=build/release/libhakmem.so.
 *
 * Without -z initfirst the loader runs a preloaded library's constructors
 * after those of the program's own libraries, so this one ran before
 * hakmem's. glibc's
 * pthread_atfork grows its handler list with malloc while it holds its
 * atfork lock; hakmem's first heap registered hakmem's own fork handlers
 * there with pthread_atfork, which waited for that lock: the process hung
 * before main (found by a probe of 2026-11-28, release and debug).
 *
 * Then the constructor forks 20 times while a thread allocates large blocks
 * only (no thread makes a heap), then 20 times while two more allocate
 * blocks of all sizes, each child allocating; main forks 20 more times the
 * same way. Without hakmem's fork handlers a child forked while the large
 * thread held hakmem's large lock waited for it for ever: libhakmem.so is
 * linked with -z initfirst, so that the loader runs hakmem's constructor,
 * which registers them, before every other (before that, a heap made while
 * the process had one thread skipped registering, and no thread here makes
 * another). The fork handlers registered first allocate in each phase.
 *
 *   atfork_ctor --expect-hakmem   fail unless hakmem serves malloc
 *   atfork_ctor                   accept either
 * With ATFORK_CTOR_NOFORK set the constructor does not fork: the run with a
 * copy of libhakmem.so whose DF_1_INITFIRST is cleared (test-preload.sh),
 * where the constructor runs before hakmem's, as on a loader that ignores
 * the flag; hakmem's one-thread rule alone must keep it from hanging.
 * Exit 0 ok, 1 failure. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef ATFORK_CTOR_LIB
int atfork_ctor_ran, atfork_ctor_bad, atfork_handler_calls;
static void *handler_block;

static void handler(void) {
  free(handler_block); /* allocates in the fork window (prepare, parent, child) */
  handler_block = malloc(40);
  if (handler_block)
    memset(handler_block, 0x33, 40);
  atfork_handler_calls++;
}

static void nop(void) {}

static _Atomic int stop;
static void *busy(void *arg) {
  void *v[256] = {0};
  unsigned x = (unsigned)(size_t)arg * 2654435761u + 1;
  while (!stop) {
    x = x * 1103515245 + 12345;
    unsigned i = (x >> 8) & 255;
    free(v[i]);
    v[i] = malloc((x >> 16) % ((x & 1) ? 300 : 90000) + 1);
    if (v[i])
      memset(v[i], 1, 8);
  }
  for (int i = 0; i < 256; i++)
    free(v[i]);
  return NULL;
}

/* Large blocks only: hakmem serves them without a heap of this thread's
 * (hak_large_lock), so this thread never makes one, and hakmem's first-heap
 * registration of its fork handlers never comes from it. */
static void *busy_large(void *arg) {
  (void)arg;
  char *v[4] = {0};
  for (unsigned x = 1; !stop; x = x * 1103515245 + 12345) {
    unsigned i = (x >> 8) & 3;
    free(v[i]); /* sizes that make the cache cut and assemble (mremap) */
    v[i] = malloc(70000 + (x >> 12) % 3000000);
    if (v[i])
      v[i][0] = 1;
  }
  for (int i = 0; i < 4; i++)
    free(v[i]);
  return NULL;
}

/* forks n times while `small` threads allocate blocks of all sizes and one
 * allocates large blocks only; each child allocates (large blocks among
 * them) and exits with 7; returns the number of children that did not */
int atfork_ctor_forks(int n, int small) {
  pthread_t t[3];
  int bad = 0;
  stop = 0;
  if (pthread_create(&t[2], NULL, busy_large, NULL))
    return n;
  for (int i = 0; i < small; i++)
    if (pthread_create(&t[i], NULL, busy, (void *)(size_t)i))
      return n;
  for (int k = 0; k < n; k++) {
    pid_t p = fork();
    if (p == 0) {
      for (int i = 0; i < 2000; i++)
        free(malloc((size_t)i * 37 % 70000 + 1));
      _exit(7);
    }
    int st = 0;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
      fprintf(stderr, "atfork_ctor: fork %d: child status 0x%x\n", k, st);
      bad++;
    }
  }
  stop = 1;
  for (int i = 0; i < small; i++)
    pthread_join(t[i], NULL);
  pthread_join(t[2], NULL);
  return bad;
}

__attribute__((constructor)) static void atfork_ctor(void) {
  /* the first allocating call of the process: the list grows past its
   * inline storage */
  if (pthread_atfork(handler, handler, handler))
    atfork_ctor_bad++;
  for (int i = 0; i < 63; i++)
    if (pthread_atfork(nop, nop, nop))
      atfork_ctor_bad++;
  /* first with the large-only thread alone: no thread makes a heap, so only
   * hakmem's constructor, run first (libhakmem.so is linked -z initfirst),
   * has registered its fork handlers; without them a child forked while
   * that thread held hakmem's large lock waited for it for ever */
  if (!getenv("ATFORK_CTOR_NOFORK")) {
    atfork_ctor_bad += atfork_ctor_forks(20, 0);
    atfork_ctor_bad += atfork_ctor_forks(20, 2);
  }
  atfork_ctor_ran = 1;
}

#else
extern int atfork_ctor_ran, atfork_ctor_bad, atfork_handler_calls;
int atfork_ctor_forks(int n, int small);

int main(int argc, char **argv) {
  int expect_hakmem = argc > 1 && !strcmp(argv[1], "--expect-hakmem");
  int hakmem = dlsym(RTLD_DEFAULT, "hak_config") != NULL;
  int bad = atfork_ctor_bad + atfork_ctor_forks(20, 2);
  printf("constructor ran %d, failed forks %d, handler calls %d, hakmem %d\n", atfork_ctor_ran, bad,
         atfork_handler_calls, hakmem);
  /* 60 forks (20 with ATFORK_CTOR_NOFORK): prepare and parent in this
   * process; child handlers in the children */
  int calls = getenv("ATFORK_CTOR_NOFORK") ? 40 : 120;
  if (!atfork_ctor_ran || bad || atfork_handler_calls != calls || (expect_hakmem && !hakmem))
    return 1;
  return 0;
}
#endif
