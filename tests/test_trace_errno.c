/* trace build: the recorder's start, at the process's first op (it reads
 * HAKMEM_TRACE and HAKMEM_TRACE_LIMIT_MB, and the header of a trace PATH may
 * hold already, to tell a stale one), leaves errno as it was, as every
 * successful call of hakmem does (README, Fuzzing: "errno as it was after
 * every call that succeeds"). Until 2026-11-28 the open of PATH where no
 * trace was yet (the usual case) left ENOENT: a malloc that succeeded changed errno in the
 * trace build alone, and a program that looked at errno after it behaved
 * otherwise when recorded (no_file).
 *   no_file    PATH does not exist
 *   stale      PATH holds a file that is no trace
 *   bad_limit  PATH does not exist, and HAKMEM_TRACE_LIMIT_MB is not a
 *              number (the recorder says so on stderr)
 * Each case runs in a child forked before the parent made any op (its
 * recorder not initialised), whose first op is a malloc with errno set to
 * ERANGE beforehand. */
#include "hak_test.h"

static char path[128];

static void first_malloc(void *arg) {
  (void)arg;
  errno = ERANGE;
  void *p = hak_malloc(48); /* the process's first op: starts the recorder */
  int e = errno;
  CHECK(p != NULL);
  CHECK_MSG(e == ERANGE, "the first malloc (the recorder's start) left errno %d (%s), not ERANGE",
            e, strerror(e));
  hak_free(p);
}

static void run_case(const char *name, const char *limit) {
  if (limit)
    setenv("HAKMEM_TRACE_LIMIT_MB", limit, 1);
  else
    unsetenv("HAKMEM_TRACE_LIMIT_MB");
  struct hak_child c;
  REQUIRE(hak_run_child(first_malloc, NULL, 30 * hak_test_slowdown(), &c));
  char how[128];
  CHECK_MSG(hak_child_exited(&c, 0), "%s: child %s; output:\n---\n%s---", name,
            hak_child_describe(&c, how, sizeof how), c.out ? c.out : "");
  hak_child_free(&c);
}

int main(void) {
  if (!hak_config_is("trace"))
    hak_test_skip("the op recorder exists only in the trace build");
  snprintf(path, sizeof path, "/tmp/hak-test-trace-errno.%d", (int)getpid());
  unlink(path);
  setenv("HAKMEM_TRACE", path, 1);

  run_case("no_file", NULL);

  FILE *f = fopen(path, "w");
  REQUIRE(f != NULL);
  fputs("not a trace\n", f);
  fclose(f);
  run_case("stale", NULL);
  unlink(path);

  run_case("bad_limit", "abc");
  unlink(path);
  return hak_test_done();
}
