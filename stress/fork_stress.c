/* fork_stress: fork while other threads allocate.
 *
 *   fork_stress [--threads=N] [--chunks=N] [--duration=S] ...
 *
 * `threads` workers swap blocks through a shared array of `chunks` slots
 * (allocate, exchange, verify and free the old block) while the main
 * thread forks repeatedly. Each child (single-threaded; the workers do not
 * exist there) verifies and frees a sample of the inherited blocks (blocks
 * whose owning threads are gone), allocates and frees a few thousand blocks
 * of its own, starts and joins one thread that does the same, runs
 * hak_heap_check and exits: 0 if all is well, else the stress exit codes. A
 * child that takes longer than 20 s ends itself with exit 3. The parent
 * checks every child's status. Not for the TSan configuration (fork with
 * running threads is outside what TSan supports). */
#include "stress_common.h"

static stress_xslot *slots;

typedef struct {
  unsigned id;
} warg;

static void *worker(void *arg) {
  warg *w = (warg *)arg;
  char name[24];
  snprintf(name, sizeof name, "worker-%u", w->id);
  stress_register(name);
  bench_rng r;
  bench_rng_seed(&r, stress_conf.seed * 5 + w->id);
  while (!stress_time_up()) {
    stress_blk b = stress_block_new(stress_size(&r, stress_conf.min_size, stress_conf.max_size));
    stress_blk old = stress_xslot_swap(&slots[bench_rng_next(&r) % stress_conf.chunks], b);
    if (old.p)
      stress_block_free(old, "fork worker");
  }
  stress_unregister();
  return NULL;
}

static void child_churn(uint64_t seed) {
  bench_rng r;
  bench_rng_seed(&r, seed);
  stress_blk keep[256] = {{0}};
  for (unsigned i = 0; i < 2048; i++) {
    unsigned k = (unsigned)(bench_rng_next(&r) % 256);
    if (keep[k].p)
      stress_block_free(keep[k], "child");
    keep[k] = stress_block_new(stress_size(&r, 16, 20000));
  }
  for (unsigned k = 0; k < 256; k++)
    if (keep[k].p)
      stress_block_free(keep[k], "child final");
}

static void *child_thread(void *arg) {
  child_churn((uint64_t)(uintptr_t)arg);
  return NULL;
}

static void child_alarm(int sig) {
  (void)sig;
  stress_puts("fork_stress: child: WATCHDOG: child hung for 20s\n");
  _exit(STRESS_EXIT_WATCHDOG);
}

static void child_main(uint64_t k) {
  signal(SIGALRM, child_alarm);
  alarm(20);
  stress_self = NULL; /* the registry belongs to the parent's threads */
  /* inherited blocks: verify them all, free every other one (a slot that
   * was being swapped at the fork is half written: its block is lost with
   * the thread that swapped it) */
  for (unsigned i = 0; i < stress_conf.chunks; i++) {
    stress_blk b = slots[i].b;
    if (atomic_load(&slots[i].busy) || !b.p)
      continue;
    stress_block_check(b, "child inherited");
    if ((i + k) & 1) {
      hak_free(b.p);
      slots[i].b = STRESS_BLK_NONE;
    }
  }
  child_churn(k * 1000003);
  pthread_t t;
  if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(k + 7)) != 0)
    stress_fail(STRESS_EXIT_FAIL, "child: pthread_create failed");
  pthread_join(t, NULL);
  /* hakmem's own (stress_live_begin looked up a preloaded one) */
  size_t bad = stress_heap_check_fn ? stress_heap_check_fn() : 0;
  if (bad) {
    fprintf(stderr, "fork_stress: child: HEAP CHECK: %zu violation(s)\n", bad);
    _exit(STRESS_EXIT_HEAPCHECK);
  }
  _exit(0);
}

int main(int argc, char **argv) {
  stress_parse(argc, argv, 2, 1024, 2, 16, 4096, "fork");
  stress_start();
  unsigned T = stress_conf.threads;
  slots = (stress_xslot *)calloc(stress_conf.chunks, sizeof *slots);
  pthread_t *th = (pthread_t *)calloc(T, sizeof *th);
  warg *wa = (warg *)calloc(T, sizeof *wa);
  for (unsigned i = 0; i < T; i++) {
    wa[i].id = i;
    th[i] = stress_spawn(worker, &wa[i]);
  }
  uint64_t forks = 0;
  if (stress_conf.hang)
    stress_maybe_hang();
  while (!stress_time_up()) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
      stress_fail(STRESS_EXIT_FAIL, "fork failed");
    if (pid == 0)
      child_main(forks);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    forks++;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      if (WIFSIGNALED(st))
        fprintf(stderr, "fork_stress: child %llu killed by signal %d\n", (unsigned long long)forks,
                WTERMSIG(st));
      else
        fprintf(stderr, "fork_stress: child %llu exited %d\n", (unsigned long long)forks,
                WEXITSTATUS(st));
      stress_fail(WIFEXITED(st) ? WEXITSTATUS(st) : STRESS_EXIT_FAIL, "a fork child failed");
    }
  }
  for (unsigned i = 0; i < T; i++)
    pthread_join(th[i], NULL);
  for (unsigned i = 0; i < stress_conf.chunks; i++)
    if (slots[i].b.p)
      stress_block_free(slots[i].b, "fork final");
  free(slots);
  free(th);
  free(wa);
  printf("fork_stress: threads=%u forks=%llu\n", T, (unsigned long long)forks);
  return stress_finish();
}
