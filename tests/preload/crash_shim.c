/* crash_shim: an LD_PRELOAD stand-in for "the allocator crashed this
 * program", for scripts/test-preload.sh's self-check. It raises SIGSEGV in
 * a process whose command line (arguments joined by spaces) contains
 * CRASH_WHEN, at its start (CRASH_AT=start) or at its exit (CRASH_AT=exit,
 * after its output). Any other process runs normally. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int wanted(const char *when) {
  const char *at = getenv("CRASH_AT"), *what = getenv("CRASH_WHEN");
  if (!at || !what || strcmp(at, when) != 0)
    return 0;
  char cmd[8192];
  int fd = open("/proc/self/cmdline", O_RDONLY);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, cmd, sizeof cmd - 1);
  close(fd);
  if (n <= 0)
    return 0;
  for (ssize_t i = 0; i < n; i++)
    if (cmd[i] == '\0')
      cmd[i] = ' ';
  cmd[n] = '\0';
  return strstr(cmd, what) != NULL;
}

__attribute__((constructor)) static void crash_at_start(void) {
  if (wanted("start"))
    raise(SIGSEGV);
}

__attribute__((destructor)) static void crash_at_exit(void) {
  if (wanted("exit"))
    raise(SIGSEGV);
}
