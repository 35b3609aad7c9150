/* Abandoned segments that cannot serve a request do not hide the ones that
 * can (README, Thread exit: adoption).
 *
 * A heap that needs a page adopts abandoned segments before it maps a new
 * one, at most 4 per slow path. Until 2026-11-28 it took the first 4 of the
 * list whatever they held, and a thread's exit pushed every segment it
 * owned back onto the head of the list, the adopted ones last: in a
 * process whose threads each leave a block behind (a record handed to a
 * global structure), once the first 4 segments were full every new thread
 * adopted those same 4, found no room in them, mapped a new segment for its
 * block and left it behind them, where no later adopter looked. One
 * segment per thread, for ever: a helper's probe (threads one after the
 * other, each allocating 50-200 blocks of 16-2016 B and keeping the first)
 * ran with 5 segments for 10000 threads, then mapped a new one for each
 * thread after, 78817 segments (308 GiB mapped, 16 GiB resident) for 100
 * MiB live at 100000 threads, and was killed by the OOM killer.
 *
 * Here a filler thread leaves 4 and a bit segments full of live 1 KiB
 * blocks; then workers, one after the other, each allocate 48 B blocks,
 * keep one and exit. The workers' blocks fit in one segment: the test
 * requires that they take at most 2 segments more than the filler's (the
 * old code took one per worker), frees everything and requires nothing
 * left live or abandoned and hak_heap_check clean. Part `rotate` does it
 * with the filler's segments all full but for the last, which serves
 * every worker; part `reclaimed` lets main free and reallocate between
 * workers. */
#include "hak_test.h"
#include "hak_test_internal.h"

#include <pthread.h>

#define FILL_SIZE 1024
#define WORK_SIZE 48
#define MAX_FILL 40000
#define MAX_WORKERS 4096

static void *fill[MAX_FILL];
static size_t nfill;
static void *kept[MAX_WORKERS];

static size_t segments_now(void) {
  struct hak_stats st;
  hak_stats(&st);
  return st.segments;
}

/* Allocates 1 KiB blocks until it has 4 full segments and one partly
 * used, and exits with all of them live. */
static void *filler(void *arg) {
  size_t base = *(size_t *)arg;
  nfill = 0;
  while (nfill < MAX_FILL) {
    void *p = hak_malloc(FILL_SIZE);
    REQUIRE(p != NULL);
    memset(p, 0x5a, 16);
    fill[nfill++] = p;
    if (segments_now() >= base + 5) {
      /* a few more in the fifth: it has room left for the workers */
      for (int i = 0; i < 8 && nfill < MAX_FILL; i++)
        REQUIRE((fill[nfill++] = hak_malloc(FILL_SIZE)) != NULL);
      return NULL;
    }
  }
  REQUIRE(!"the filler never reached 5 segments");
  return NULL;
}

static void *worker(void *arg) {
  size_t i = (size_t)(uintptr_t)arg;
  void *tmp[8];
  for (int k = 0; k < 8; k++) {
    REQUIRE((tmp[k] = hak_malloc(WORK_SIZE + (size_t)k * 16)) != NULL);
    memset(tmp[k], (int)(i & 0xff), WORK_SIZE);
  }
  kept[i] = tmp[0];
  for (int k = 1; k < 8; k++)
    hak_free(tmp[k]);
  return NULL;
}

static void run(int reclaimed) {
  size_t base = segments_now();
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, filler, &base) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  size_t after_fill = segments_now();
  CHECK_GE(after_fill, base + 5);

  size_t workers = hak_iters(400);
  if (workers > MAX_WORKERS)
    workers = MAX_WORKERS;
  size_t most = after_fill;
  for (size_t i = 0; i < workers; i++) {
    REQUIRE(pthread_create(&t, NULL, worker, (void *)(uintptr_t)i) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
    if (reclaimed && i % 16 == 15) {
      /* main allocates (so its frees reclaim) and frees a worker's block */
      void *q = hak_malloc(WORK_SIZE);
      REQUIRE(q != NULL);
      hak_free(kept[i - 8]);
      kept[i - 8] = q;
    }
    size_t s = segments_now();
    if (s > most)
      most = s;
  }
  /* workers * 48 B fit in one segment; a margin of one more */
  CHECK_MSG(most <= after_fill + 2,
            "%zu workers, one block each, took the segments from %zu to %zu (filler's: %zu)",
            workers, after_fill, most, after_fill - base);
  for (size_t i = 0; i < workers; i++) {
    unsigned char *p = kept[i];
    CHECK(p[0] == (unsigned char)(i & 0xff) || (reclaimed && i % 16 == 7));
    hak_free(p);
    kept[i] = NULL;
  }
  for (size_t i = 0; i < nfill; i++)
    hak_free(fill[i]);
  nfill = 0;
  hak_thread_cache_flush();
  CHECK_ALL_FREED(reclaimed ? "part reclaimed" : "part rotate");
}

/* Part `hopeless`: a segment no request can be served from is passed
 * over, and its free slices go back to the kernel once it has been
 * abandoned PURGE_DELAY_MS (until 2026-11-28 they stayed resident until
 * hak_trim or its last free: adoption had taken it, whatever it held, and
 * the adopter's purge gave them back, until adoption began to pass over
 * segments that cannot serve). A worker fills a segment with 1 KiB blocks
 * (pages of one slice) and keeps one in every other slice: its free slices
 * are runs of one, too short for any page of two slices or more. Main
 * then allocates blocks whose pages take two slices, enough to map new
 * segments, before and after the delay (the test's clock, frozen); the
 * worker's segment must be passed over (still abandoned), its free slices
 * resident before the delay (an adopter could still reuse them) and none
 * after it. */
static void *seg_of_hopeless;
static void *hopeless_kept[SLICES_PER_SEGMENT];
static int hopeless_n;
static void *hopeless_blocks[SLICES_PER_SEGMENT * (SLICE_SIZE / 1024)]; /* not hakmem's */

static void *hopeless_worker(void *arg) {
  (void)arg;
  size_t per = SLICE_SIZE / 1024, n = (SLICES_PER_SEGMENT - 1) * per;
  void **b = hopeless_blocks;
  for (size_t i = 0; i < n; i++) {
    REQUIRE((b[i] = hak_malloc(1024)) != NULL);
    memset(b[i], 0x5a, 1024); /* resident */
  }
  uint8_t *seg = ptr_segment_base(b[0]);
  seg_of_hopeless = seg;
  for (size_t i = 0; i < n; i++) {
    uint8_t *p = b[i];
    size_t at = (size_t)(p - seg);
    if (ptr_segment_base(p) == seg && (at / SLICE_SIZE) % 2 == 1 && at % SLICE_SIZE == 0)
      hopeless_kept[hopeless_n++] = p;
    else
      hak_free(p);
  }
  return NULL;
}

static size_t resident_free_slices(const uint8_t *seg) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE), count = 0;
  for (size_t s = 2; s < SLICES_PER_SEGMENT; s += 2) /* the slices of no live block */
    for (size_t off = 0; off < SLICE_SIZE; off += pg) {
      /* one byte for the page; qemu-user emulating bigger pages than its
       * host's (make cross-check, @16k and @64k) writes one a host page */
      unsigned char v[16];
      REQUIRE(mincore((void *)(seg + s * SLICE_SIZE + off), pg, v) == 0);
      count += v[0] & 1;
    }
  return count;
}

static void part_hopeless(void) {
  size_t two = 0; /* a size whose pages take two slices */
  for (size_t s = 1024; s <= HAK_SMALL_MAX && !two; s += 16)
    if (class_slices(hak_size_to_class(s)) == 2)
      two = s;
  REQUIRE(two != 0 && class_slices(hak_size_to_class(1024)) == 1);
  os_test_freeze_clock(); /* the delay passes when the test says */
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, hopeless_worker, NULL) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  REQUIRE(hopeless_n >= (int)(SLICES_PER_SEGMENT / 2) - 1);
  size_t before = resident_free_slices(seg_of_hopeless);
  CHECK_GT(before, 0); /* the frees left them committed */
  /* main's blocks: two segments' worth before the delay, two after */
  size_t n = 2 * SEGMENT_SIZE / two, k = 0;
  void **m = hak_malloc(2 * n * sizeof *m);
  REQUIRE(m != NULL);
  for (; k < n; k++)
    REQUIRE((m[k] = hak_malloc(two)) != NULL);
  CHECK_MSG(resident_free_slices(seg_of_hopeless) == before,
            "an abandoned segment's free slices purged before the delay");
  os_test_advance_ms(PURGE_DELAY_MS + 1);
  for (; k < 2 * n; k++)
    REQUIRE((m[k] = hak_malloc(two)) != NULL);
  struct hak_stats st;
  hak_stats(&st);
  CHECK_EQ(st.abandoned_segments, 1); /* passed over, not adopted */
  size_t after = resident_free_slices(seg_of_hopeless);
  CHECK_MSG(after == 0,
            "an abandoned segment no request could use kept %zu of its free slices' pages "
            "resident (%zu before) past the purge delay",
            after, before);
  for (size_t i = 0; i < k; i++)
    hak_free(m[i]);
  hak_free(m);
  for (int i = 0; i < hopeless_n; i++)
    hak_free(hopeless_kept[i]);
  hak_thread_cache_flush();
  CHECK_ALL_FREED("part hopeless");
}

static void part_rotate(void) {
  run(0);
}

static void part_reclaimed(void) {
  run(1);
}

int main(void) {
  hak_test_no_redzones(); /* geometry of the other builds (hak_test.h) */
  RUN_SECTION(part_rotate);
  RUN_SECTION(part_reclaimed);
  RUN_SECTION(part_hopeless);
  return hak_test_done();
}
