/* repro/tests/trace_edges.c: small programs for repro/tests/steps.sh's
 * trace-edges step, run under LD_PRELOAD of the trace library (plain libc
 * names, so hakmem's exports serve them). One mode per argument:
 *   free-sized-bad     free_sized(malloc(100), 200): the recording aborts;
 *                      its replay must crash the same way (the recorded
 *                      size, not the block's, is passed on)
 *   realloc-in-place   malloc(100), realloc to 60 (in place in release,
 *                      moved under valgrind), usable_size of it, free: the
 *                      replay in every configuration must match
 *   reallocarray-zero  reallocarray(p, 0, 8) frees p; a second free of p
 *                      aborts (a double free); tracecat --ids must show
 *                      that free as one of an object no longer live
 *   every-op           each function of the API once or more, with the
 *                      failures it may return (bad alignment, overflow,
 *                      a size past PTRDIFF_MAX): the replay must match
 *                      every outcome (a recorder that swapped or dropped
 *                      an argument of any op shows there)
 *   many-threads       120 threads one after another, each 20 malloc/free pairs,
 *                      then malloc(777) and its free on the main thread: more
 *                      thread exits than trace2fuzz's op budget leaves room
 *                      for; the converted input must still end with those two
 *   limit-holes        for HAKMEM_TRACE_LIMIT_MB=1: the main thread's first
 *                      call (its first 64 KiB chunk), then a second thread's
 *                      40000 malloc/free pairs (its second chunk, 1 MiB, is
 *                      past the limit: records lost) and 3 mallocs kept,
 *                      which the main thread frees after the join (recorded
 *                      in its first chunk, after the lost records): the
 *                      trace has holes, whatever the schedule
 *   signal-mallocs     400000 malloc/free pairs while a SIGPROF handler frees
 *                      and allocates every few ms: a handler that interrupts
 *                      the recorder itself cannot be recorded, and the
 *                      trace's header must say so (no op missing unsaid)
 *   timers             an 8 MiB block freed (the large cache keeps its
 *                      mapping), 1.2 s of sleep, then malloc(70000): that
 *                      large call unmaps the mapping, cached longer than
 *                      its age; the replay, on the recorded clock, must
 *                      unmap it at the same op however fast it runs
 *   realloc-freed      malloc(100), free, realloc(p, 300): hakmem aborts in
 *                      the realloc, a call recorded after it returns; the
 *                      trace must still end with it (the call it died in)
 *   usable-new-thread  a block freed, then a new thread's first call is
 *                      malloc_usable_size of it (hakmem aborts): the trace
 *                      ends with that call, by a thread with no record yet
 *   exec-crash         prints its pid, runs `trace_edges realloc-freed` (fork
 *                      and exec: the child records to the same HAKMEM_TRACE
 *                      and dies of SIGABRT), then mallocs and exits: the
 *                      child's crash trace must stay at PATH (this process
 *                      writes PATH.<pid>)
 *   crash-during-exit  500000 malloc/free pairs, then exit, while a second
 *                      thread waits for the exit's trace file to appear and
 *                      then frees a pointer hakmem never handed out (it
 *                      aborts) while that file is being written: the trace
 *                      must be the crash's, ending with that free
 *   signal-survived    SIGABRT inherited ignored (the caller's `trap '' ABRT`):
 *                      kill(getpid(), SIGABRT), which the recorder's handler
 *                      takes and the process survives, then malloc(77) and
 *                      a normal exit; the trace must be the exit's, with the
 *                      malloc(77), and the exit must not wait for a crash
 *   handler-recovers   a SIGSEGV handler of the program's own, installed
 *                      before the recorder starts, recovers from a fault
 *                      (siglongjmp), then malloc(78) and a normal exit: the
 *                      same (exit 3 when the recorder started before main)
 *   fork-during-flush  a thread writes the trace again and again
 *                      (hak_trace_flush) while the main thread forks 40
 *                      children, each of which mallocs, frees and exits;
 *                      prints each child's pid: every child must write its
 *                      own trace (PATH.<pid>) at its exit, also one forked
 *                      while the parent's file was being written
 * free_sized (C23) and hak_trace_flush are looked up with dlsym: glibc 2.36
 * does not declare the first, the second is hakmem's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <setjmp.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void *volatile sink; /* keeps the compiler from eliding malloc/free pairs */

static void *twenty_pairs(void *arg) {
  for (int i = 0; i < 20; i++) {
    sink = malloc(32 + (size_t)i);
    free(sink);
  }
  return arg;
}

static void *kept[3];
static void *pairs_then_keep(void *arg) {
  for (int i = 0; i < 40000; i++) {
    sink = malloc(32 + (size_t)(i % 64));
    free(sink);
  }
  for (int i = 0; i < 3; i++)
    kept[i] = malloc(48);
  return arg;
}

static atomic_int_fast32_t flushing_stop;

static void *flush_again(void *flush) {
  while (!atomic_load(&flushing_stop))
    ((void (*)(void))flush)();
  return NULL;
}

static void *usable_of(void *p) {
  printf("%zu\n", malloc_usable_size(p)); /* aborts: p was freed */
  return NULL;
}

static void *crash_when_written(void *path) {
  struct stat st;
  while (stat(path, &st) != 0 || st.st_size == 0) {
    struct timespec ts = {0, 50 * 1000};
    nanosleep(&ts, NULL);
  }
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic ignored "-Wfree-nonheap-object" /* the invalid free is the point */
#endif
  free((void *)(uintptr_t)0x1234560); /* never handed out: hakmem aborts */
  return NULL;
}

static void *volatile held[16];
static volatile sig_atomic_t hits;

/* The handler's blocks are of a class (2 KiB) the interrupted loop never
 * uses (16-115 B): what the step tests is the recorder's handling of a
 * call made while it was interrupted, and a malloc or free interrupted in
 * its own class's thread cache by one of the same class is not async-
 * signal-safe (no allocator's is): with 24-39 B blocks, 1 run in a few
 * dozen aborted "double free" (a pop interrupted between its read of the
 * list's head and its write). */
static void on_prof(int sig) {
  (void)sig;
  int i = hits++ % 16;
  free(held[i]);
  held[i] = malloc(2048 + (size_t)i);
}

static sigjmp_buf recover_to;

static void on_segv(int sig) {
  (void)sig;
  siglongjmp(recover_to, 1);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "signal-survived") || !strcmp(mode, "handler-recovers")) {
    int abrt = mode[0] == 's';
    struct sigaction sa, cur;
    if (abrt) {
      /* ignored before the recorder starts (inherited through exec) */
      if (sigaction(SIGABRT, NULL, &cur) != 0 || cur.sa_handler == SIG_DFL) {
        fprintf(stderr, "trace_edges: SIGABRT is not ignored (run under trap '' ABRT)\n");
        return 3;
      }
    } else {
      memset(&sa, 0, sizeof sa);
      sa.sa_handler = on_segv;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_NODEFER;
      if (sigaction(SIGSEGV, &sa, NULL) != 0)
        return 1;
    }
    sink = malloc(40); /* the recorder starts: it takes the fatal signals over */
    free(sink);
    if (sigaction(abrt ? SIGABRT : SIGSEGV, NULL, &cur) != 0 || !(cur.sa_flags & SA_SIGINFO)) {
      fprintf(stderr, "trace_edges: the recorder did not take the signal over (started "
                      "before main, or not under LD_PRELOAD of the trace build)\n");
      return 3;
    }
    if (abrt) {
      kill(getpid(), SIGABRT); /* the recorder's handler, then ignored */
    } else {
      volatile char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (page == MAP_FAILED)
        return 1;
      if (!sigsetjmp(recover_to, 1))
        page[0] = 1; /* the recorder's handler, then the program's, which recovers */
    }
    sink = malloc(abrt ? 77 : 78);
    free(sink);
    return 0;
  }
  if (!strcmp(mode, "free-sized-bad")) {
    void (*free_sized_fn)(void *, size_t) =
        (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    if (!free_sized_fn) {
      fprintf(stderr, "trace_edges: no free_sized (not under LD_PRELOAD of hakmem?)\n");
      return 2;
    }
    char *p = malloc(100);
    memset(p, 1, 100);
    free_sized_fn(p, 200);
    return 0; /* not reached: hakmem aborts */
  }
  if (!strcmp(mode, "realloc-in-place")) {
    char *p = malloc(100);
    memset(p, 2, 100);
    p = realloc(p, 60);
    if (!p)
      return 1;
    printf("usable %zu\n", malloc_usable_size(p));
    free(p);
    return 0;
  }
  if (!strcmp(mode, "reallocarray-zero")) {
    char *p = malloc(32);
    memset(p, 3, 32);
    char *q = reallocarray(p, 0, 8); /* frees p, returns NULL */
    printf("reallocarray(p, 0, 8) = %p\n", (void *)q);
    fflush(stdout);
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free" /* the double free is the point */
#endif
    free(p); /* a double free: aborts */
    return 0;
  }
  if (!strcmp(mode, "every-op")) {
    void (*free_sized_fn)(void *, size_t) =
        (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*free_aligned_sized_fn)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    if (!free_sized_fn || !free_aligned_sized_fn)
      return 2;
    void *pm = NULL, *bad = NULL;
    int rc = posix_memalign(&pm, 256, 1000);
    int rc_bad = posix_memalign(&bad, 24, 100); /* EINVAL */
    char *aa = aligned_alloc(4096, 5000);
    char *ma = memalign(64, 300);
    char *va = valloc(100);
    char *pv = pvalloc(5000);
    char *ca = calloc(10, 30);
    volatile size_t huge = (size_t)1 << 40, past = (size_t)PTRDIFF_MAX + 1; /* no -Walloc-size */
    char *co = calloc(huge, huge);                                          /* overflow: NULL */
    char *big = malloc(past);                                               /* ENOMEM */
    char *ra = reallocarray(NULL, 7, 9);
    ra = reallocarray(ra, 70, 90);
    char *r = realloc(NULL, 40);
    r = realloc(r, 4000);
    r = realloc(r, 200000);
    r = realloc(r, 100);
    char *fs = malloc(100), *fas = aligned_alloc(128, 256);
    size_t u = malloc_usable_size(ca) + malloc_usable_size(r) + malloc_usable_size(NULL);
    printf("rc %d %d, %p %p %p %p %p, usable %zu\n", rc, rc_bad, (void *)aa, (void *)ma, (void *)va,
           (void *)pv, (void *)co, u);
    if (rc || !rc_bad || !aa || !ma || !va || !pv || !ca || co || big || !ra || !r || !fs || !fas)
      return 1;
    free_sized_fn(fs, 100);
    free_aligned_sized_fn(fas, 128, 256);
    free(pm);
    free(aa);
    free(ma);
    free(va);
    free(pv);
    free(ca);
    free(ra);
    free(r);
    return 0;
  }
  if (!strcmp(mode, "many-threads")) {
    for (int i = 0; i < 120; i++) {
      pthread_t t;
      if (pthread_create(&t, NULL, twenty_pairs, NULL) != 0 || pthread_join(t, NULL) != 0)
        return 1;
    }
    sink = malloc(777);
    free(sink);
    return 0;
  }
  if (!strcmp(mode, "limit-holes")) {
    sink = malloc(16);
    free(sink);
    pthread_t t;
    if (pthread_create(&t, NULL, pairs_then_keep, NULL) != 0 || pthread_join(t, NULL) != 0)
      return 1;
    for (int i = 0; i < 3; i++)
      free(kept[i]);
    return 0;
  }
  if (!strcmp(mode, "signal-mallocs")) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval it = {{0, 100}, {0, 100}}, off;
    memset(&off, 0, sizeof off);
    setitimer(ITIMER_PROF, &it, NULL);
    for (int i = 0; i < 400000; i++) {
      sink = malloc(16 + (size_t)(i % 100));
      free(sink);
    }
    setitimer(ITIMER_PROF, &off, NULL);
    for (int i = 0; i < 16; i++)
      free(held[i]);
    printf("signal-mallocs: %d handler runs\n", (int)hits);
    return 0;
  }
  if (!strcmp(mode, "fork-during-flush")) {
    void *flush = dlsym(RTLD_DEFAULT, "hak_trace_flush");
    if (!flush)
      return 1;
    for (int i = 0; i < 100000; i++) { /* a trace that takes a while to write */
      sink = malloc(16 + (size_t)(i % 200));
      free(sink);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, flush_again, flush) != 0)
      return 1;
    int bad = 0;
    for (int i = 0; i < 40; i++) {
      fflush(stdout); /* or each child prints the pids before it again */
      pid_t pid = fork();
      if (pid == 0) {
        sink = malloc(4242);
        free(sink);
        exit(0); /* the trace is written by a destructor */
      }
      int st;
      if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bad = 1;
      else
        printf("%d\n", (int)pid);
    }
    atomic_store(&flushing_stop, 1);
    pthread_join(t, NULL);
    return bad;
  }
  if (!strcmp(mode, "realloc-freed") || !strcmp(mode, "usable-new-thread")) {
    char *p = malloc(100);
    memset(p, 7, 100);
    free(p);
    sink = p;
    if (mode[0] == 'r') {
      p = realloc(sink, 300); /* realloc of a freed block: aborts */
      return p != NULL;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, usable_of, sink) != 0 || pthread_join(t, NULL) != 0)
      return 1;
    return 0; /* not reached */
  }
  if (!strcmp(mode, "exec-crash")) {
    sink = malloc(55);
    free(sink);
    printf("%d\n", (int)getpid());
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      execl("/proc/self/exe", argv[0], "realloc-freed", (char *)NULL);
      _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
      return 1;
    sink = malloc(66);
    free(sink);
    return 0;
  }
  if (!strcmp(mode, "crash-during-exit")) {
    const char *path = getenv("HAKMEM_TRACE");
    if (!path)
      return 2;
    unlink(path);
    for (int i = 0; i < 500000; i++) { /* a file of 64 MB: it takes a while */
      sink = malloc(16 + (size_t)(i % 100));
      free(sink);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, crash_when_written, (void *)path) != 0)
      return 1;
    return 0; /* exit: the trace is written while the thread runs */
  }
  if (!strcmp(mode, "timers")) {
    char *big = malloc((size_t)8 << 20);
    if (!big)
      return 1;
    memset(big, 5, 4096);
    free(big); /* cached */
    struct timespec ts = {1, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    char *p = malloc(70000); /* ages the large cache: the 8 MiB mapping goes */
    if (!p)
      return 1;
    memset(p, 6, 70000);
    free(p);
    return 0;
  }
  fprintf(
      stderr,
      "usage: %s free-sized-bad | realloc-in-place | reallocarray-zero | every-op | "
      "many-threads | signal-mallocs | timers | fork-during-flush | realloc-freed | "
      "usable-new-thread | exec-crash | crash-during-exit | signal-survived | handler-recovers\n",
      argv[0]);
  return 2;
}
