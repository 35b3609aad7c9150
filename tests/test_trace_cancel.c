/* trace build: a thread with a cancellation request pending (pthread_cancel,
 * deferred) in the op recorder. The recorder's system calls (open, read,
 * write, close of the trace file, its sleeps) were glibc's wrappers, which
 * are cancellation points: the thread unwound in the middle of the
 * recorder. Until 2026-11-28:
 *   - init: the process's first op, on such a thread, unwound in trace_init
 *     (the open of the file PATH held), the recorder left marked
 *     initialising: every later op of every thread waited for it for ever;
 *   - flush: hak_trace_flush on such a thread unwound with the file's
 *     writer mark taken: no trace was ever written again (not at later
 *     flushes, not at exit, and a crash's handler waited 5 s for it, then
 *     wrote none);
 *   - segv: a fault on such a thread unwound out of the recorder's SIGSEGV
 *     handler: the thread vanished, no trace was written, and the process
 *     went on where without the recorder it died by SIGSEGV;
 *   - segv_waiting: the same, at the handler's sleep while another
 *     thread's flush held the file.
 * Each case runs in a child forked before the parent made any op (its
 * recorder not initialised); the parent reads the trace file, the child's
 * PATH.<pid> (a fork child's name for it). */
#include "hak_test.h"

#include <pthread.h>

#include "internal.h"
#include "trace.h"

static char path[128];
static _Atomic int *child_pid; /* shared with the children: the last one's pid */

static void cancel_self(void) {
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  pthread_cancel(pthread_self());
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
}

static void *run_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, fn, arg) == 0);
  void *res = NULL;
  REQUIRE(pthread_join(t, &res) == 0);
  return res;
}

/* The last child's trace file (removed): its header, and whether it holds
 * a record of op `op`. 0 when there is no trace. */
static int trace_has(struct hak_trace_header *h, unsigned op) {
  char file[160];
  snprintf(file, sizeof file, "%s.%d", path, atomic_load(child_pid));
  /* non-blocking: segv_waiting's FIFO is left behind by a child that
   * failed before it removed it */
  int fd = open(file, O_RDONLY | O_NONBLOCK);
  unlink(file);
  if (fd < 0)
    return 0;
  int found = 0;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && read(fd, h, sizeof *h) == (ssize_t)sizeof *h &&
      memcmp(h->magic, HAK_TRACE_MAGIC, 8) == 0) {
    struct hak_trace_rec r;
    while (!found && read(fd, &r, sizeof r) == (ssize_t)sizeof r)
      found = r.op == op;
  }
  close(fd);
  return found;
}

/* The child's outcome: exited 0 (want_sig 0) or killed by want_sig. */
static int run_case(void (*fn)(void *), const char *name, int want_sig) {
  atomic_store(child_pid, 0);
  struct hak_child c;
  REQUIRE(hak_run_child(fn, NULL, 10 * hak_test_slowdown(), &c));
  int ok = want_sig ? hak_child_signaled(&c, want_sig) : hak_child_exited(&c, 0);
  if (!ok) {
    char how[128];
    FAIL("%s: child %s; stderr:\n---\n%s---", name, hak_child_describe(&c, how, sizeof how),
         c.out ? c.out : "");
  }
  hak_child_free(&c);
  return ok;
}

/* ---- init */
static void *init_thread(void *arg) {
  (void)arg;
  cancel_self();
  void *p = hak_malloc(32); /* the process's first op: initialises the recorder */
  hak_free(p);
  pthread_testcancel();
  return NULL;
}

static void init_case(void *arg) {
  (void)arg;
  atomic_store(child_pid, (int)getpid());
  CHECK(run_thread(init_thread, NULL) == PTHREAD_CANCELED);
  void *p = hak_malloc(48); /* waited for ever on the recorder's init */
  hak_free(p);
  hak_trace_flush();
}

/* ---- flush */
static void *flush_thread(void *arg) {
  (void)arg;
  cancel_self();
  hak_trace_flush();
  pthread_testcancel();
  return NULL;
}

static void flush_case(void *arg) {
  (void)arg;
  atomic_store(child_pid, (int)getpid());
  void *p = hak_malloc(48);
  CHECK(run_thread(flush_thread, NULL) == PTHREAD_CANCELED);
  hak_free(p);
  hak_trace_flush(); /* wrote nothing: the cancelled flush kept the writer's mark */
}

/* ---- segv */
static volatile int *volatile nowhere;
static void *segv_thread(void *arg) {
  (void)arg;
  cancel_self();
  *nowhere = 1; /* SIGSEGV */
  return NULL;
}

static void segv_case(void *arg) {
  (void)arg;
  atomic_store(child_pid, (int)getpid());
  void *p = hak_malloc(48);
  hak_free(p);
  void *res = run_thread(segv_thread, NULL);
  fprintf(stderr, "the faulting thread %s; the process goes on\n",
          res == PTHREAD_CANCELED ? "was cancelled" : "returned");
}

/* ---- segv_waiting: the handler waits (sleep_ms) for another writer
 * A flush holds the file: it waits in the open of PATH.<pid>, a FIFO no
 * one reads yet. The faulting thread's handler waits for that writer to be
 * done; once it is seen sleeping, the FIFO is renamed and read: the flush
 * ends, the handler writes the crash's trace to PATH.<pid>, a file now,
 * and the signal ends the process. Until 2026-11-28 the thread unwound at the handler's first
 * sleep: it vanished, the process went on. */
static _Atomic int flush_tid;

static void *flush_blocked_thread(void *arg) {
  (void)arg;
  atomic_store(&flush_tid, (int)syscall(SYS_gettid));
  hak_trace_flush();
  return NULL;
}

static _Atomic int segv_tid;

static void *segv_waiting_thread(void *arg) {
  (void)arg;
  atomic_store(&segv_tid, (int)syscall(SYS_gettid));
  cancel_self();
  *nowhere = 1; /* SIGSEGV */
  return NULL;
}

static void segv_waiting_case(void *arg) {
  (void)arg;
  atomic_store(child_pid, (int)getpid());
  char fifo[160];
  snprintf(fifo, sizeof fifo, "%s.%d", path, (int)getpid());
  REQUIRE(mkfifo(fifo, 0600) == 0);
  void *p = hak_malloc(48);
  hak_free(p);
  pthread_t a, b;
  REQUIRE(pthread_create(&a, NULL, flush_blocked_thread, NULL) == 0);
  double deadline = hak_now() + 10 * hak_test_slowdown();
  while (!atomic_load(&flush_tid) || hak_task_syscall(atomic_load(&flush_tid)) != SYS_openat)
    REQUIRE(hak_now() < deadline);
  REQUIRE(pthread_create(&b, NULL, segv_waiting_thread, NULL) == 0);
  void *res = NULL;
  for (;;) {
    int tid = atomic_load(&segv_tid);
    if (tid && hak_thread_in_nanosleep(tid))
      break;
    if (pthread_tryjoin_np(b, &res) == 0) {
      fprintf(stderr, "the faulting thread %s; the process goes on\n",
              res == PTHREAD_CANCELED ? "was cancelled" : "returned");
      unlink(fifo);
      _exit(0);
    }
    REQUIRE(hak_now() < deadline);
  }
  /* the FIFO renamed first, so that the handler's open, which comes after
   * the flush's, finds its name free and writes a file there */
  char moved[180];
  snprintf(moved, sizeof moved, "%s.fifo", fifo);
  REQUIRE(rename(fifo, moved) == 0);
  int fd = open(moved, O_RDONLY | O_NONBLOCK); /* the flush's open returns */
  REQUIRE(fd >= 0);
  unlink(moved);
  char buf[4096];
  while (hak_now() < deadline) /* until the signal ends the process */
    if (read(fd, buf, sizeof buf) <= 0)
      hak_sleep_ms(1);
  FAIL("the process did not die by SIGSEGV");
}

int main(void) {
  if (!hak_config_is("trace"))
    hak_test_skip("the op recorder exists only in the trace build");
  snprintf(path, sizeof path, "/tmp/hak-test-trace-cancel.%d", (int)getpid());
  setenv("HAKMEM_TRACE", path, 1);
  child_pid = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(child_pid != MAP_FAILED);
  struct hak_trace_header h;

  if (run_case(init_case, "init", 0))
    CHECK_MSG(trace_has(&h, TR_MALLOC) && (h.flags & HAK_TRACE_F_FLUSH) && h.nthreads == 2,
              "init: no flushed trace of both threads' ops at %s.<pid>", path);
  if (run_case(flush_case, "flush", 0))
    CHECK_MSG(trace_has(&h, TR_FREE) && (h.flags & HAK_TRACE_F_FLUSH),
              "flush: the last flush wrote no trace holding the free at %s.<pid>", path);
  if (run_case(segv_case, "segv", SIGSEGV))
    CHECK_MSG(trace_has(&h, TR_FREE) && (h.flags & HAK_TRACE_F_SIGNAL) && h.signo == SIGSEGV,
              "segv: no trace of the crash at %s.<pid>", path);
  if (run_case(segv_waiting_case, "segv_waiting", SIGSEGV))
    CHECK_MSG(trace_has(&h, TR_FREE) && (h.flags & HAK_TRACE_F_SIGNAL) && h.signo == SIGSEGV,
              "segv_waiting: no trace of the crash at %s.<pid>", path);
  return hak_test_done();
}
