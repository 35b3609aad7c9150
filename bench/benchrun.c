/* benchrun: run one command, report its wall time and peak RSS.
 *
 *   benchrun [-o FILE] [-p PRELOAD] [-t SECONDS] -- command [args...]
 *
 * Forks, sets LD_PRELOAD=PRELOAD in the child only (so this wrapper never
 * runs on the allocator under test; without -p, LD_PRELOAD is removed), execs the command in its
 * own process group and waits for it with wait4(2). Appends one line to FILE (default: stderr):
 *
 *   benchrun: exit=N signal=S wall_s=W user_s=U sys_s=S maxrss_kb=K
 *
 * maxrss_kb is the child's ru_maxrss: the peak resident set of the command
 * (Linux folds in the RSS of the process that exec'd it, which is this small
 * wrapper, ~1-2 MB at most). -t kills the process group after SECONDS
 * (SIGTERM, then SIGKILL 5 s later) and exits 124. Exit status: the
 * command's, 128+N if a signal killed it, 124 on timeout, 127 if it could not
 * be started. It never allocates on the allocator under test and needs no
 * library beyond libc. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t timed_out;
static pid_t child;

static void on_alarm(int sig) {
  (void)sig;
  if (!timed_out) {
    timed_out = 1;
    kill(-child, SIGTERM);
    alarm(5);
  } else {
    kill(-child, SIGKILL);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double tv(struct timeval t) {
  return (double)t.tv_sec + (double)t.tv_usec * 1e-6;
}

int main(int argc, char **argv) {
  const char *out = NULL, *preload = NULL;
  double limit = 0;
  int c;
  while ((c = getopt(argc, argv, "+o:p:t:h")) != -1) {
    switch (c) {
    case 'o':
      out = optarg;
      break;
    case 'p':
      preload = optarg;
      break;
    case 't':
      limit = strtod(optarg, NULL);
      break;
    default:
      fprintf(stderr, "usage: benchrun [-o FILE] [-p PRELOAD] [-t SECONDS] -- command [args...]\n");
      return c == 'h' ? 0 : 127;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "benchrun: no command\n");
    return 127;
  }
  double t0 = now();
  child = fork();
  if (child < 0) {
    perror("benchrun: fork");
    return 127;
  }
  if (child == 0) {
    setpgid(0, 0);
    if (preload && *preload)
      setenv("LD_PRELOAD", preload, 1);
    else
      unsetenv("LD_PRELOAD"); /* no -p: the C library's allocator, whatever the caller had */
    execvp(argv[optind], argv + optind);
    fprintf(stderr, "benchrun: cannot run %s: %s\n", argv[optind], strerror(errno));
    _exit(127);
  }
  setpgid(child, child);
  if (limit > 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0},
                           {(time_t)limit, (suseconds_t)((limit - (double)(time_t)limit) * 1e6)}};
    setitimer(ITIMER_REAL, &it, NULL);
  }
  int st = 0;
  struct rusage ru;
  pid_t r;
  while ((r = wait4(child, &st, 0, &ru)) < 0 && errno == EINTR) {
  }
  double wall = now() - t0;
  if (r < 0) {
    perror("benchrun: wait4");
    return 127;
  }
  int code = 0, sig = 0;
  if (WIFEXITED(st))
    code = WEXITSTATUS(st);
  else if (WIFSIGNALED(st)) {
    sig = WTERMSIG(st);
    code = 128 + sig;
  }
  if (timed_out)
    code = 124;
  FILE *f = stderr;
  if (out && !(f = fopen(out, "a"))) {
    perror(out);
    f = stderr;
  }
  fprintf(f, "benchrun: exit=%d signal=%d wall_s=%.6f user_s=%.6f sys_s=%.6f maxrss_kb=%ld\n", code,
          sig, wall, tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_maxrss);
  if (f != stderr)
    fclose(f);
  return code;
}
