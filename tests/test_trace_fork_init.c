/* trace build: a fork while another thread initialises the op recorder
 * leaves a child that allocates, records, and names its trace file
 * PATH.<pid>.
 *
 * The trace build's first op initialises the recorder (trace_init: reads
 * HAKMEM_TRACE, installs its signal handlers); ops of other threads that
 * arrive meanwhile wait until it is done (ST_INIT). Until 2026-11-28:
 *   - a fork in that window copied the waiting state into a child where the
 *     initialising thread does not exist: the child's first malloc waited
 *     for it for ever (now the child initialises the recorder again);
 *   - that second init took the child for the process that read
 *     HAKMEM_TRACE: with HAKMEM_TRACE inherited, the child wrote PATH, the
 *     parent's file, and whichever wrote last replaced the other's trace.
 *
 * Here HAKMEM_TRACE is set before the process's first op; that op, on a
 * thread, is held at the hook right after the recorder was marked
 * initialising; main forks; the child must malloc, free and flush within
 * the deadline: its file must be PATH.<its pid>, and PATH must not exist
 * (the parent has not initialised yet). Then the parent's recorder writes
 * PATH. */
#include "hak_test.h"

#include <pthread.h>
#include <semaphore.h>

#include "internal.h"

static sem_t at_init, forked;
static char path[128];

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

static int nonempty(const char *f) {
  struct stat st;
  return stat(f, &st) == 0 && st.st_size > 0;
}

static void child(void *arg) {
  (void)arg;
  hak_test_hook = NULL;
  void *p = hak_malloc(48);
  if (!p)
    _exit(4);
  hak_free(p);
  hak_trace_flush();
  char mine[160];
  snprintf(mine, sizeof mine, "%s.%d", path, (int)getpid());
  int own = nonempty(mine), parents = access(path, F_OK) == 0;
  unlink(mine);
  _exit(parents ? 6 : own ? 0 : 5);
}

int main(void) {
  if (!hak_config_is("trace"))
    hak_test_skip("the op recorder exists only in the trace build");
  snprintf(path, sizeof path, "/tmp/hak-test-trace-fork-init.%d", (int)getpid());
  unlink(path);
  setenv("HAKMEM_TRACE", path, 1); /* inherited by the child */
  REQUIRE(sem_init(&at_init, 0, 0) == 0 && sem_init(&forked, 0, 0) == 0);
  hak_test_hook = hook;
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, first_malloc, NULL) == 0);
  while (sem_wait(&at_init) != 0) {
  }
  int status;
  double timeout = 10 * (hak_test_slowdown() > 1 ? hak_test_slowdown() : 1);
  int ended = hak_fork_wait(child, NULL, timeout, &status);
  sem_post(&forked);
  CHECK_MSG(ended == 1,
            "the child's first malloc did not finish within %.0f s (waiting for the "
            "recorder's initialisation by a thread it does not have? stacks above)",
            timeout);
  if (ended == 1)
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %#x (exit 6: the child wrote PATH, the parent's trace file, "
              "not PATH.<pid>; exit 5: it wrote no file)",
              status);
  pthread_join(t, NULL);
  hak_test_hook = NULL;
  void *p = hak_malloc(64);
  CHECK(p != NULL);
  hak_free(p);
  hak_trace_flush();
  CHECK_MSG(nonempty(path), "the parent's recorder wrote no %s", path);
  unlink(path);
  /* not through exit: its trace write would make PATH again */
  int rc = hak_test_done();
  fflush(NULL);
  _exit(rc);
}
