/* trace build: a fork while another thread initialises the op recorder
 * leaves the child able to allocate.
 *
 * The trace build's first op initialises the recorder (trace_init: reads
 * HAKMEM_TRACE, installs its signal handlers); ops of other threads that
 * arrive meanwhile wait until it is done (ST_INIT). A fork in that window
 * copied the waiting state into a child where the initialising thread does
 * not exist: until 2026-11-28 the child's first malloc waited for it for
 * ever. Now the child's fork handler lets its next op initialise again.
 *
 * Here a thread's first malloc is held at the hook right after the
 * recorder was marked initialising (HAKMEM_TRACE unset: it will find the
 * recorder off); main forks; the child sets HAKMEM_TRACE, must malloc and
 * free within the deadline, and its recorder must be on (hak_trace_flush
 * writes its file, PATH.<pid> as any fork child's). Nothing in this process calls hakmem before
 * that malloc. */
#include "hak_test.h"

#include <pthread.h>
#include <semaphore.h>

#include "internal.h"

static sem_t at_init, forked;

static void hook(enum hak_hook_point where, void *arg) {
  (void)arg;
  if (where != HAK_HOOK_TRACE_INIT)
    return;
  sem_post(&at_init);
  while (sem_wait(&forked) != 0) {
  }
}

static void *first_malloc(void *arg) {
  (void)arg;
  void *p = hak_malloc(32); /* the process's first op: initialises the recorder */
  hak_free(p);
  return NULL;
}

/* The child's first op initialises the recorder again, with the child's
 * environment: it records, and hak_trace_flush writes its file. */
static void child(void) {
  hak_test_hook = NULL;
  char path[64], file[96];
  snprintf(path, sizeof path, "/tmp/hak-test-trace-fork-init.%d", (int)getpid());
  setenv("HAKMEM_TRACE", path, 1);
  void *p = hak_malloc(48);
  if (!p)
    _exit(4);
  hak_free(p);
  hak_trace_flush();
  /* a fork child's file: PATH.<pid> (test_trace_fork_path) */
  snprintf(file, sizeof file, "%s.%d", path, (int)getpid());
  struct stat st;
  int written = stat(file, &st) == 0 && st.st_size > 0;
  unlink(file);
  unlink(path);
  _exit(written ? 0 : 5);
}

int main(void) {
  if (!hak_config_is("trace"))
    hak_test_skip("the op recorder exists only in the trace build");
  unsetenv("HAKMEM_TRACE"); /* the child would write a file of its own */
  REQUIRE(sem_init(&at_init, 0, 0) == 0 && sem_init(&forked, 0, 0) == 0);
  hak_test_hook = hook;
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, first_malloc, NULL) == 0);
  while (sem_wait(&at_init) != 0) {
  }
  fflush(NULL);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0)
    child();
  sem_post(&forked);
  int status = 0;
  double timeout = 10 * (hak_test_slowdown() > 1 ? hak_test_slowdown() : 1);
  int ended = hak_wait_child(pid, timeout, &status, 1);
  CHECK_MSG(ended == 1,
            "the child's first malloc did not finish within %.0f s (waiting for the "
            "recorder's initialisation by a thread it does not have? stacks above)",
            timeout);
  if (ended == 1)
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %#x (exit 5: the recorder, initialised again, wrote no trace)", status);
  pthread_join(t, NULL);
  hak_test_hook = NULL;
  /* the recorder works on in the parent */
  void *p = hak_malloc(64);
  CHECK(p != NULL);
  hak_free(p);
  return hak_test_done();
}
