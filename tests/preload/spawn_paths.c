/* tests/preload/spawn_paths.c: the ways to start a process other than a
 * plain fork, from a program whose 4 threads allocate and free each other's
 * blocks meanwhile (scripts/test-preload.sh, check spawn_paths).
 *
 * posix_spawn and posix_spawnp (glibc's child shares the parent's memory,
 * clone(CLONE_VM|CLONE_VFORK), until its exec, and no atfork handler runs),
 * a spawn of a missing program, system, popen for reading and writing,
 * vfork then exec, then _exit, then a failed exec and _exit, fork whose exec
 * fails (the child goes on with the forked heap: frees the parent's and the
 * dead threads' blocks, allocates, checks, then execs), and a daemon's double
 * fork (the grandchild, after setsid, allocates, frees the parent's blocks,
 * checks and execs). Every exec'd program is this one, mode "child": under
 * the inherited LD_PRELOAD it must be served by hakmem, a fresh heap.
 *
 * Every child's status is checked. Under hakmem (--expect-hakmem) the parent
 * must find hak_heap_check() clean with its threads joined, and its count of
 * mappings after 60 rounds no higher than after 4 (plus a little slack; not
 * in the trace build, whose recorder maps more as it records).
 * --expect-libc: the same without the preload (no hakmem functions). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static size_t (*heap_check)(void);
static size_t (*usable)(const void *);
static int (*trim)(size_t);
static char self[4096];
static atomic_int stop;
#define SLOTS 2048
static _Atomic(void *) slots[SLOTS];

static void fail(const char *what, int st) {
  fprintf(stderr, "spawn_paths: FAIL %s (status 0x%x)\n", what, st);
  exit(1);
}

static unsigned rnd(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}

static void *worker(void *arg) {
  unsigned s = 1 + (unsigned)(uintptr_t)arg * 7919u;
  while (!atomic_load(&stop)) {
    unsigned i = rnd(&s) % SLOTS;
    size_t n = rnd(&s) % 8 == 0 ? rnd(&s) % 300000 + 1 : rnd(&s) % 2000 + 1;
    char *p = malloc(n);
    if (!p)
      fail("worker malloc", 0);
    memset(p, 0x5a, n < 64 ? n : 64);
    free(atomic_exchange(&slots[i], p)); /* mostly another thread's block */
  }
  return NULL;
}

static void free_slots(void) {
  for (int i = 0; i < SLOTS; i++)
    free(atomic_exchange(&slots[i], NULL));
}

static int child_mode(void) {
  if (!usable)
    return 9; /* the inherited preload did not serve the exec'd program */
  void *v[1000];
  for (int i = 0; i < 1000; i++)
    if (!(v[i] = malloc((size_t)i * 37 + 1)) || usable(v[i]) < (size_t)i * 37 + 1)
      return 8;
  for (int i = 0; i < 1000; i++)
    free(v[i]);
  return heap_check() ? 7 : 42;
}

static int wait_status(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      fail("waitpid", errno);
  return st;
}

static void expect_exit(pid_t pid, int code, const char *what) {
  int st = wait_status(pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != code)
    fail(what, st);
}

/* a forked child that went on after its exec failed, or a daemon's
 * grandchild: the parent's blocks, the dead threads' blocks, its own */
static int child_goes_on(void **mine, int n) {
  for (int i = 0; i < n; i++)
    free(mine[i]);
  free_slots();
  void *v[2000];
  for (int i = 0; i < 2000; i++)
    if (!(v[i] = malloc((size_t)(i * 977) % 200000 + 1)))
      return 0;
  for (int i = 0; i < 2000; i++)
    free(v[i]);
  return !heap_check || heap_check() == 0;
}

static void round_once(void) {
  char *av[] = {self, "child", NULL};
  pid_t pid;
  int st;
  if (posix_spawn(&pid, self, NULL, NULL, av, environ))
    fail("posix_spawn", 0);
  expect_exit(pid, 42, "posix_spawn child");
  char *sh[] = {"sh", "-c", "exit 3", NULL};
  if (posix_spawnp(&pid, "sh", NULL, NULL, sh, environ))
    fail("posix_spawnp", 0);
  expect_exit(pid, 3, "posix_spawnp child");
  char *missing[] = {"hakmem-spawn-paths-missing", NULL};
  int rc = posix_spawnp(&pid, missing[0], NULL, NULL, missing, environ);
  if (rc == 0)
    expect_exit(pid, 127, "posix_spawnp of a missing program");
  else if (rc != ENOENT)
    fail("posix_spawnp of a missing program", rc);

  st = system("exit 5");
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 5)
    fail("system", st);
  char cmd[4200], line[64] = {0};
  snprintf(cmd, sizeof cmd, "'%s' child; echo $?", self);
  FILE *f = popen(cmd, "r");
  if (!f || !fgets(line, sizeof line, f) || strcmp(line, "42\n"))
    fail("popen read", 0);
  if ((st = pclose(f)) != 0)
    fail("pclose read", st);
  if (!(f = popen("cat >/dev/null", "w")) || fputs("hello\n", f) < 0 || (st = pclose(f)) != 0)
    fail("popen write", 0);

  if ((pid = vfork()) == 0) {
    execv(self, av);
    _exit(99);
  }
  expect_exit(pid, 42, "vfork exec");
  if ((pid = vfork()) == 0)
    _exit(7);
  expect_exit(pid, 7, "vfork _exit");
  if ((pid = vfork()) == 0) {
    execl("/nonexistent/hakmem-spawn-paths", "x", (char *)NULL);
    _exit(11);
  }
  expect_exit(pid, 11, "vfork failed exec");

  void *mine[64];
  for (int i = 0; i < 64; i++)
    if (!(mine[i] = malloc((size_t)i * 1000 + 1)))
      fail("malloc", 0);
  if ((pid = fork()) == 0) {
    execl("/nonexistent/hakmem-spawn-paths", "x", (char *)NULL);
    if (errno != ENOENT)
      _exit(90);
    if (!child_goes_on(mine, 64))
      _exit(91);
    execv(self, av);
    _exit(92);
  }
  if (pid < 0)
    fail("fork", errno);
  expect_exit(pid, 42, "fork, failed exec, then exec");

  int pfd[2];
  if (pipe(pfd))
    fail("pipe", errno);
  if ((pid = fork()) == 0) {
    close(pfd[0]);
    if (setsid() < 0)
      _exit(80);
    pid_t g = fork();
    if (g)
      _exit(g < 0 ? 81 : 0);
    char ok = child_goes_on(mine, 64) ? 'Y' : 'N';
    if (write(pfd[1], &ok, 1) != 1)
      _exit(82);
    close(pfd[1]);
    execv(self, av); /* its exit is nobody's to see */
    _exit(83);
  }
  close(pfd[1]);
  expect_exit(pid, 0, "daemon's first child");
  char c = 0;
  if (read(pfd[0], &c, 1) != 1 || c != 'Y')
    fail("daemon's grandchild", c);
  close(pfd[0]);
  for (int i = 0; i < 64; i++)
    free(mine[i]);
}

static int count_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char b[512];
  int n = 0;
  if (!f)
    fail("open /proc/self/maps", errno);
  while (fgets(b, sizeof b, f))
    n++;
  fclose(f);
  return n;
}

/* `rounds` rounds while the threads churn; then join them, free every
 * block, check the heap and count the mappings */
static int phase(int rounds, int hak) {
  pthread_t th[4];
  atomic_store(&stop, 0);
  for (int i = 0; i < 4; i++)
    if (pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i))
      fail("pthread_create", 0);
  for (int r = 0; r < rounds; r++)
    round_once();
  atomic_store(&stop, 1);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  free_slots();
  if (!hak)
    return 0;
  if (heap_check())
    fail("hak_heap_check in the parent", 0);
  trim(0);
  return count_maps();
}

int main(int argc, char **argv) {
  heap_check = (size_t(*)(void))dlsym(RTLD_DEFAULT, "hak_heap_check");
  usable = (size_t(*)(const void *))dlsym(RTLD_DEFAULT, "hak_usable_size");
  trim = (int (*)(size_t))dlsym(RTLD_DEFAULT, "hak_trim");
  if (argc > 1 && !strcmp(argv[1], "child"))
    return usable ? child_mode() : 42; /* without hakmem nothing to check */
  int hak = argc > 1 && !strcmp(argv[1], "--expect-hakmem");
  if (hak != !!(heap_check && usable && trim))
    fail(hak ? "hakmem not loaded" : "hakmem loaded", 0);
  if (readlink("/proc/self/exe", self, sizeof self - 1) < 0)
    fail("readlink /proc/self/exe", errno);
  int before = phase(4, hak);
  int after = phase(60, hak);
  const char *(*config)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "hak_config");
  /* the trace build's recorder maps more of its chunks as it records */
  if (hak && after > before + 8 && strcmp(config(), "trace"))
    fail("mappings grew over the rounds", after - before);
  printf("spawn_paths: ok (mappings %d -> %d)\n", before, after);
  return 0;
}
