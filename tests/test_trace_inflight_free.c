/* trace build: a call recorded inside an allocation that then crashes (a
 * signal handler's call interrupting malloc, here a test hook inside
 * malloc's slow path, HAK_HOOK_PAGE_FULL) must not wipe the allocation off
 * the crash trace: the trace still ends with that malloc, the call the
 * process died in (HAK_TRACE_F_INFLIGHT). Two kinds of inner call:
 *  - free: until 2026-11-28 every recorded call, a free too, cleared the
 *    thread's call in flight when it recorded itself: the crash trace
 *    ended with the free, and the replay of a crash inside malloc said NOT
 *    REPRODUCED (mutant trace-free-clears-inflight);
 *  - usable_size, a call recorded after it returns, which has a call in
 *    flight of its own: until 2026-11-28 its record left none, and the
 *    trace ended with it (mutant trace-nested-call-drops-outer). */
#include "hak_test.h"

#include <signal.h>
#include <sys/wait.h>

#include "internal.h"
#include "trace.h"

#define SIZE 1024

static void *live; /* a block the nested usable_size asks about */
static int nested;

static void hook(enum hak_hook_point where, void *arg) {
  (void)arg;
  if (where != HAK_HOOK_PAGE_FULL)
    return;
  hak_test_hook = NULL;
  if (nested)
    (void)hak_usable_size(live); /* recorded after it returns, with a call in flight of its own */
  else
    hak_free(NULL); /* recorded: the "signal handler's" free */
  abort();          /* and malloc dies after it */
}

/* One child: mallocs until the hook fires in a page's slow path, which
 * makes the inner call and aborts; its trace must end with that malloc. */
static void child(void *arg) {
  (void)arg;
  live = hak_malloc(100);
  hak_test_hook = hook;
  for (int i = 0; i < 100000; i++)
    if (!hak_malloc(SIZE))
      _exit(3);
  _exit(4); /* no page filled */
}

static void one(const char *path) {
  fflush(NULL);
  pid_t pid = fork(); /* not hak_fork_wait: the child's pid names its trace file */
  REQUIRE(pid >= 0);
  if (pid == 0)
    child(NULL);
  int st = 0;
  if (!CHECK_MSG(hak_wait_child(pid, 60, &st, 1) == 1, "child hung (killed at 60 s)"))
    return;
  if (!CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
                 "child status %#x, not SIGABRT (exit 4: no page filled)", st))
    return;
  char mine[160];
  snprintf(mine, sizeof mine, "%s.%d", path, (int)pid); /* a fork child's file */
  FILE *f = fopen(mine, "rb");
  if (!CHECK_MSG(f != NULL, "no trace at %s", mine))
    return;
  struct hak_trace_header h;
  REQUIRE(fread(&h, sizeof h, 1, f) == 1);
  struct hak_trace_rec r, last = {0};
  size_t n = 0;
  while (fread(&r, sizeof r, 1, f) == 1) {
    if (!n++ || r.seq >= last.seq)
      last = r;
  }
  fclose(f);
  unlink(mine);
  const char *inner = nested ? "usable_size" : "free";
  CHECK_MSG(h.flags & HAK_TRACE_F_SIGNAL, "%s: header flags %#x: not a crash trace", inner,
            h.flags);
  CHECK_MSG(h.flags & HAK_TRACE_F_INFLIGHT,
            "%s: header flags %#x: the trace does not end with the malloc the process died in "
            "(its last record, of %zu: op %u, arg %#llx)",
            inner, h.flags, n, last.op, (unsigned long long)last.arg);
  CHECK_MSG(last.op == TR_MALLOC && last.a1 == SIZE && last.result == 0,
            "%s: the last record (of %zu) is op %u a1 %llu result %#llx, not the malloc(%d) in "
            "flight",
            inner, n, last.op, (unsigned long long)last.a1, (unsigned long long)last.result, SIZE);
}

int main(void) {
  if (!hak_config_is("trace"))
    hak_test_skip("the op recorder exists only in the trace build");
  char path[128];
  snprintf(path, sizeof path, "/tmp/hak-test-trace-inflight-free.%d", (int)getpid());
  setenv("HAKMEM_TRACE", path, 1);
  nested = 0;
  one(path);
  nested = 1;
  one(path);
  return hak_test_done();
}
