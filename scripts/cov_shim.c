/* scripts/cov_shim.c: linked into the test programs of `make test-coverage`
 * (scripts/test-coverage.sh) only. The tests' forked children end with
 * _exit() or die by SIGABRT (EXPECT_ABORT, the allocator's fatal errors), so
 * the profile runtime's atexit hook never writes their counters; and a child
 * inherits its parent's profile file name, %p already expanded. This file
 * (the programs are linked with -Wl,--wrap=_exit,--wrap=abort):
 *   - gives every forked child a profile file of its own (LLVM_PROFILE_FILE's
 *     %p replaced by the child's pid),
 *   - writes the profile before _exit() and before abort(),
 *   - and from a SIGABRT handler (raise(SIGABRT) without abort()), then
 *     dies by the signal as before.
 * A child inherits its parent's counters, so its profile counts them again:
 * the counts are not exact, what is or is not reached is. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

void __llvm_profile_set_filename(const char *);
int __llvm_profile_write_file(void);
void __real__exit(int) __attribute__((noreturn));
void __real_abort(void) __attribute__((noreturn));
void __wrap__exit(int) __attribute__((noreturn));
void __wrap_abort(void) __attribute__((noreturn));

static void cov_dump(void) {
  int saved = errno;
  __llvm_profile_write_file();
  errno = saved;
}

void __wrap__exit(int code) {
  cov_dump();
  __real__exit(code);
}

void __wrap_abort(void) {
  cov_dump();
  __real_abort();
}

static void cov_on_abrt(int sig) {
  cov_dump();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* A child that keeps its parent's name appends its profile to the parent's
 * file (the runtime truncates a file once, when the name is set): children
 * running at the same time would interleave their writes. So each child
 * sets a name of its own: the pattern with every %p replaced by its pid
 * (setting the pattern itself again does nothing: %p was expanded once, in
 * the parent). */
static void cov_child(void) {
  const char *f = getenv("LLVM_PROFILE_FILE");
  static char name[4096];
  char pid[24];
  size_t n = 0;
  if (!f || !*f)
    return;
  int pl = snprintf(pid, sizeof pid, "%ld", (long)getpid());
  for (; *f && n + (size_t)pl + 1 < sizeof name; f++) {
    if (f[0] == '%' && f[1] == 'p') {
      memcpy(name + n, pid, (size_t)pl);
      n += (size_t)pl;
      f++;
    } else {
      name[n++] = *f;
    }
  }
  name[n] = 0;
  __llvm_profile_set_filename(name);
}

__attribute__((constructor)) static void cov_init(void) {
  pthread_atfork(NULL, NULL, cov_child);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = cov_on_abrt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGABRT, &sa, NULL);
}
