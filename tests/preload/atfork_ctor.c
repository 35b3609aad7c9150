/* atfork_ctor: a library's constructor whose first allocating call of the
 * process is pthread_atfork (its 49th: glibc 2.36 keeps the first 48
 * handlers in its list's own storage), under LD_PRELOAD. Built WITHOUT hakmem (plain
 * gcc) twice: with -DATFORK_CTOR_LIB as libatfork_ctor.so, and as the
 * program, linked against it (--no-as-needed); scripts/test-preload.sh runs
 * it with and without LD_PRELOAD=build/release/libhakmem.so.
 *
 * The loader runs a preloaded library's constructors after those of the
 * program's own libraries, so this one runs before hakmem's. glibc's
 * pthread_atfork grows its handler list with malloc while it holds its
 * atfork lock; hakmem's first heap registered hakmem's own fork handlers
 * there with pthread_atfork, which waited for that lock: the process hung
 * before main (found by a probe of 2026-11-28, release and debug).
 *
 * Then the constructor starts two threads that allocate and forks 20
 * times from the constructor's thread while they do (hakmem's constructor
 * has not run yet: its fork handlers must be registered by then anyway),
 * each child allocating; main forks 20 more times the same way. The fork
 * handlers registered first allocate in each phase.
 *
 *   atfork_ctor --expect-hakmem   fail unless hakmem serves malloc
 *   atfork_ctor                   accept either
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

/* forks n times while two threads allocate; each child allocates and exits
 * with 7; returns the number of children that did not */
int atfork_ctor_forks(int n) {
  pthread_t t[2];
  int bad = 0;
  stop = 0;
  for (size_t i = 0; i < 2; i++)
    if (pthread_create(&t[i], NULL, busy, (void *)i))
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
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
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
  atfork_ctor_bad += atfork_ctor_forks(20);
  atfork_ctor_ran = 1;
}

#else
extern int atfork_ctor_ran, atfork_ctor_bad, atfork_handler_calls;
int atfork_ctor_forks(int n);

int main(int argc, char **argv) {
  int expect_hakmem = argc > 1 && !strcmp(argv[1], "--expect-hakmem");
  int hakmem = dlsym(RTLD_DEFAULT, "hak_config") != NULL;
  int bad = atfork_ctor_bad + atfork_ctor_forks(20);
  printf("constructor ran %d, failed forks %d, handler calls %d, hakmem %d\n", atfork_ctor_ran, bad,
         atfork_handler_calls, hakmem);
  /* 40 forks: prepare and parent in this process; child handlers in the children */
  if (!atfork_ctor_ran || bad || atfork_handler_calls != 80 || (expect_hakmem && !hakmem))
    return 1;
  return 0;
}
#endif
