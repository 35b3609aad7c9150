/* bench_handoff: blocks handed to long-lived threads by threads that exit.
 *
 *   bench_handoff [rounds=200] [producers=4] [blocks=4096] [consumers=1] [mode=0] [seed=42]
 *
 * Each round starts `producers` short-lived threads (thread-per-request
 * servers, thread pools that churn); each allocates `blocks` blocks of
 * 16..512 B, writes a tag into each, and exits with all of them live. Once
 * all have exited, `consumers` long-lived threads free them: consumer c
 * frees every block whose index is c modulo `consumers`, so they free into
 * the same segments at once. mode 0: the consumers only free. mode 1: a
 * consumer also serves a request per block it frees (allocates a 16..512 B
 * block and frees the one it allocated 64 requests before). Every block's
 * tag is checked before it is freed. ops = blocks freed by the consumers.
 * Prints one line:
 *   bench_handoff: allocator=<name> rounds=N producers=N blocks=N consumers=N mode=N time=T s
 *   ops/s=R free_s=F free_cpu_s=C cpu_s=P
 * (free_s: the seconds spent in the consumers' phase, the rest is the
 * producers' threads; free_cpu_s: the consumers' CPU time in it, summed;
 * cpu_s: the process's user and system time. A busy machine's other jobs
 * disturb the CPU times less than the wall times.) Exit status: 0 ok, 1 bad
 * arguments or out of memory, 2 a block's contents lost. */
#include "bench_common.h"

#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>

#define MAXC 64
#define RING 64

static unsigned char **blk;
static uint64_t nprod, nblocks, ncons, mode, seed;
static pthread_barrier_t go, done;
static _Atomic int quit;
static double cpu_s[MAXC]; /* each consumer's CPU time in its phases */

static double thread_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned char tag_of(uint64_t i) {
  return (unsigned char)((i * 0x9E3779B97F4A7C15ull) >> 56 | 1);
}
static size_t size_of(uint64_t i) {
  return 16 + (size_t)((i * 0xD1B54A32D192ED03ull) >> 40) % 497;
}

static void *producer(void *arg) {
  uint64_t p = (uint64_t)(uintptr_t)arg;
  for (uint64_t k = 0; k < nblocks; k++) {
    uint64_t i = p * nblocks + k;
    unsigned char *q = hak_malloc(size_of(i));
    if (!q)
      exit(1);
    q[0] = tag_of(i);
    blk[i] = q;
  }
  return NULL;
}

static void *consumer(void *arg) {
  uint64_t c = (uint64_t)(uintptr_t)arg;
  unsigned char *ring[RING] = {0};
  unsigned r = 0;
  bench_rng rng;
  bench_rng_seed(&rng, seed ^ c);
  for (;;) {
    pthread_barrier_wait(&go);
    if (atomic_load(&quit))
      break;
    double c0 = thread_cpu();
    for (uint64_t i = c; i < nprod * nblocks; i += ncons) {
      unsigned char *q = blk[i];
      if (q[0] != tag_of(i)) {
        fprintf(stderr, "bench_handoff: contents lost: block %p index %llu\n", (void *)q,
                (unsigned long long)i);
        exit(2);
      }
      hak_free(q);
      if (mode == 1) {
        hak_free(ring[r]);
        ring[r] = hak_malloc(16 + bench_rng_next(&rng) % 497);
        if (!ring[r])
          exit(1);
        ring[r][0] = 1;
        r = (r + 1) % RING;
      }
    }
    cpu_s[c] += thread_cpu() - c0;
    pthread_barrier_wait(&done);
  }
  for (unsigned k = 0; k < RING; k++)
    hak_free(ring[k]);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 7 || (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))) {
    fprintf(stderr,
            "usage: %s [rounds=200] [producers=4] [blocks=4096] [consumers=1] [mode=0] [seed=42]\n",
            argv[0]);
    return argc > 7 ? 1 : 0;
  }
  uint64_t rounds = bench_arg_u64(argc, argv, 1, 200);
  nprod = bench_arg_u64(argc, argv, 2, 4);
  nblocks = bench_arg_u64(argc, argv, 3, 4096);
  ncons = bench_arg_u64(argc, argv, 4, 1);
  mode = bench_arg_u64(argc, argv, 5, 0);
  seed = bench_arg_u64(argc, argv, 6, 42);
  if (nprod < 1 || nprod > 256 || nblocks < 1 || nblocks > ((uint64_t)1 << 20) || ncons < 1 ||
      ncons > MAXC || mode > 1) {
    fprintf(
        stderr,
        "%s: need 1 <= producers <= 256, 1 <= blocks <= 2^20, 1 <= consumers <= %d, mode 0 or 1\n",
        argv[0], MAXC);
    return 1;
  }
  blk = calloc((size_t)(nprod * nblocks), sizeof *blk);
  pthread_t pt[256], ct[MAXC];
  if (!blk || pthread_barrier_init(&go, NULL, (unsigned)ncons + 1) ||
      pthread_barrier_init(&done, NULL, (unsigned)ncons + 1))
    return 1;
  for (uint64_t c = 0; c < ncons; c++)
    if (pthread_create(&ct[c], NULL, consumer, (void *)(uintptr_t)c))
      return 1;
  double free_s = 0, t0 = bench_now();
  for (uint64_t n = 0; n < rounds; n++) {
    for (uint64_t p = 0; p < nprod; p++)
      if (pthread_create(&pt[p], NULL, producer, (void *)(uintptr_t)p))
        return 1;
    for (uint64_t p = 0; p < nprod; p++)
      pthread_join(pt[p], NULL);
    double f0 = bench_now();
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&done);
    free_s += bench_now() - f0;
  }
  double secs = bench_now() - t0;
  atomic_store(&quit, 1);
  pthread_barrier_wait(&go);
  for (uint64_t c = 0; c < ncons; c++)
    pthread_join(ct[c], NULL);
  free(blk);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  double free_cpu = 0;
  for (uint64_t c = 0; c < ncons; c++)
    free_cpu += cpu_s[c];
  double ops = (double)rounds * (double)(nprod * nblocks);
  printf("bench_handoff: allocator=%s rounds=%llu producers=%llu blocks=%llu consumers=%llu "
         "mode=%llu time=%.6f s ops/s=%.1f free_s=%.6f free_cpu_s=%.6f cpu_s=%.6f\n",
         bench_allocator_name(), (unsigned long long)rounds, (unsigned long long)nprod,
         (unsigned long long)nblocks, (unsigned long long)ncons, (unsigned long long)mode, secs,
         secs > 0 ? ops / secs : 0.0, free_s, free_cpu, cpu);
  return 0;
}
