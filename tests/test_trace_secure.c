/* trace build: under secure execution (AT_SECURE: a setuid or setgid
 * program, or one with file capabilities) the op recorder ignores
 * HAKMEM_TRACE, as hakmem ignores HAKMEM_THP.
 *
 * The recorder writes the file HAKMEM_TRACE names with the process's
 * privileges, at exit and at a crash. Until 2026-11-28 it read the variable
 * with getenv: a setuid-root program linked with the trace build's
 * libhakmem.a created or overwrote any file its caller named (a probe of
 * 2026-11-28: a program setuid to nobody wrote its trace, owned by nobody,
 * where the caller's environment said). Now secure_getenv.
 *
 * Secure execution is simulated: glibc's secure_getenv reads
 * __libc_enable_secure, which the loader sets from AT_SECURE; this test
 * sets it (its copy in the program lies in RELRO memory, made writable for
 * the store) before the process's first op, which reads HAKMEM_TRACE. */
#include "hak_test.h"

#include <sys/mman.h>

extern int __libc_enable_secure; /* glibc's (GLIBC_PRIVATE) */

int main(void) {
  if (!hak_config_is("trace"))
    hak_test_skip("the op recorder exists only in the trace build");
  char path[128];
  snprintf(path, sizeof path, "/tmp/hak-test-trace-secure.%d", (int)getpid());
  unlink(path);
  setenv("HAKMEM_TRACE", path, 1);
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t at = (uintptr_t)&__libc_enable_secure & ~(uintptr_t)(page - 1);
  REQUIRE(mprotect((void *)at, (size_t)page, PROT_READ | PROT_WRITE) == 0);
  __libc_enable_secure = 1;
  if (secure_getenv("HAKMEM_TRACE") != NULL)
    hak_test_skip("secure execution cannot be simulated here (secure_getenv ignores "
                  "__libc_enable_secure)");
  void *p = hak_malloc(40); /* the process's first op: reads HAKMEM_TRACE */
  CHECK(p != NULL);
  hak_free(p);
  hak_trace_flush();
  CHECK_MSG(access(path, F_OK) != 0,
            "the recorder wrote %s, named by HAKMEM_TRACE, under secure execution", path);
  unlink(path);
  /* not through exit: with the bug, its trace write would make PATH again */
  int rc = hak_test_done();
  fflush(NULL);
  _exit(rc);
}
