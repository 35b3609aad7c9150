/* fuzz/ops.h: the op-sequence interpreter shared by every fuzz driver (and by
 * stress tests and trace replayers).
 *
 *   decoder   bytes -> struct fz_op (fz_decoder_init / fz_decode_next)
 *   executor  runs one op against hakmem and checks it against a shadow model
 *             (fz_exec_init / fz_exec_op / fz_exec_verify_all / fz_exec_finish)
 *   threads   every op carries the index of the logical thread that must run
 *             it; the executor itself is thread-agnostic: the caller runs
 *             fz_exec_op on the thread it chose (and must serialise calls).
 *
 * A failed check prints "fuzz: <what> ..." on stderr and calls abort().
 * Test-only: FUZZ_ABORT_AT=<n> in the environment aborts at op n (0-based) of
 * every input, after printing the digest so far (used to test that a crash
 * reproduces from its input file alone); FUZZ_NO_REDZONES=1 turns the asan
 * and valgrind builds' redzones off (their blocks then placed as the release
 * build's, for a digest compared with it). */
#ifndef HAK_FUZZ_OPS_H
#define HAK_FUZZ_OPS_H

#include <stddef.h>
#include <stdint.h>

#define FZ_SLOTS 64
#define FZ_MAX_THREADS 8
#define FZ_MAX_OPS 4096
#define FZ_BURST_MAX 1024

enum fz_kind {
  FZ_MALLOC,
  FZ_CALLOC,       /* a = count, b = size (may overflow) */
  FZ_REALLOC,      /* a = new size (0 frees); slot may be empty (realloc(NULL)) */
  FZ_REALLOCARRAY, /* a = count, b = size */
  FZ_FREE,         /* sub: 0 free, 1 free_sized, 2 free_aligned_sized (size and alignment:
                      the slot's); replay only (never decoded): 3 free_sized(a),
                      4 free_aligned_sized(b, a), the recorded size and alignment;
                      5 free_sized, 6 free_aligned_sized with the slot's usable size
                      (decoded from subs 4 and 5) */
  FZ_ALIGNED,      /* sub: 0 posix_memalign 1 aligned_alloc 2 memalign 3 valloc 4 pvalloc;
                      a = size, b = alignment */
  FZ_USABLE,       /* usable_size(slot) >= requested, usable_size(NULL) == 0 */
  FZ_VERIFY,       /* verify the slot's pattern and rewrite it (write-and-verify) */
  FZ_VERIFY_ALL,   /* verify every live block */
  FZ_HEAP_CHECK,   /* hak_heap_check() == 0 (caller guarantees quiescence) */
  FZ_THREAD_EXIT,  /* multithreaded drivers: op.thread exits with live blocks; sub 7 (0xf8):
                      then, from a TLS destructor run after hakmem's abandoned its heap, it
                      mallocs a block into the slot if empty (kept, an orphan) and frees
                      every other orphan (fz_runner_dispatch) */
  FZ_FREE_ORPHANS, /* free every block whose allocating thread has exited */
  FZ_BURST,        /* a = size (<= 16 KiB), b = count: fills pages (tagged head/tail) */
  FZ_BURST_FREE,   /* sub 0: free every burst block, 1: every other one */
  FZ_FORK,         /* fork; the child runs action a (a clean run, a misuse that must
                      abort, or a corruption hak_heap_check must report; b = size of
                      the child's own block) and the parent asserts how it ended
                      (fuzz/ops_fork.h). Decoded from heap_check's op byte with sub 7 */
  FZ_FAIL_MOVE,    /* the b-th next page move of a large block (mremap MREMAP_FIXED) fails
                      with ENOMEM: a = 0 before unmapping its destination, 1 after, 2 after,
                      with another thread's page mapped into the hole. Decoded from
                      heap_check's op byte with sub 6, only where the decoder's fail_moves
                      is set (fuzz_ops), so that older inputs of the other drivers keep their
                      meaning; a and b come from the slot byte */
  FZ_TRIM,         /* hak_trim by op.thread, then a second one, which must find nothing left
                      to give back (the caller guarantees quiescence), then hak_heap_check().
                      Decoded from heap_check's op byte with sub 5 (an older input's heap
                      check there now trims first) */
  FZ_HOOK,         /* multithreaded drivers (fz_runner_hooked): the next b decoded ops (1 or 2,
                      "nested") run, each on its own thread, while the op after them ("outer")
                      is held at the allocator's test hook point a (hak_test_hook: 0 abandon
                      collected, 1 page full, 2 heap published, 3 free counted, 4 mark checked,
                      5 free unowned, 6 notifying) on its thread; if the outer op never gets
                      there, they run after it. Decoded from verify_all's op byte with sub 7
                      (0xf4) where nthreads > 1; a = slot % 7, b = slot / 7 % 2 + 1 */
  FZ_CLOCK,        /* hakmem's clock (os_now_ms) moves a ms ahead, then a heap check (the
                      caller guarantees quiescence): the purge delay and the segment and
                      large caches' aging come due at the next ops that look at the time,
                      deterministically, without waiting (the fuzz drivers' clock is
                      frozen: nothing else moves it). Decoded from heap_check's op
                      byte with sub 4 (an older input's heap check there now moves the
                      clock first); a = fz_clock_steps[slot % 4] */
  FZ_KIND_COUNT
};
/* FZ_CLOCK: how far the clock moves (ms): under the purge delay, the delay,
 * past the large cache's age limit, and far past everything */
extern const uint32_t fz_clock_steps[4];
/* FZ_HOOK: the allocator's test hook points it decodes (a = slot % this) */
#define FZ_HOOK_POINTS 7u

struct fz_op {
  uint8_t kind;   /* enum fz_kind */
  uint8_t sub;    /* variant (see above) */
  uint8_t thread; /* logical thread that runs it (< decoder's nthreads) */
  uint32_t slot;  /* < FZ_SLOTS (decoded inputs), < the executor's nslots (replay) */
  size_t a, b;
};

struct fz_decoder {
  const uint8_t *data;
  size_t size, pos;
  unsigned nthreads; /* 1 for single-threaded programs */
  unsigned nops;
  int fail_moves; /* decode FZ_FAIL_MOVE (0 after fz_decoder_init) */
};

void fz_decoder_init(struct fz_decoder *d, const uint8_t *data, size_t size, unsigned nthreads);
/* Returns 1 and fills *op, or 0 at the end of the input (or FZ_MAX_OPS). */
int fz_decode_next(struct fz_decoder *d, struct fz_op *op);
/* Size drawn from the input: class boundaries, HAK_SMALL_MAX, large, edges. */
size_t fz_decode_size(struct fz_decoder *d);
uint8_t fz_decode_byte(struct fz_decoder *d);

struct fz_slot {
  unsigned char *ptr;
  size_t size;   /* requested */
  size_t usable; /* hak_usable_size at allocation */
  size_t align;  /* alignment asked for (0 = none) */
  uint32_t gen;
  uint8_t thread;       /* logical thread that allocated it */
  uint32_t epoch;       /* that thread's incarnation */
  unsigned char *stale; /* the block last freed from this slot (FZ_FORK: a stale free) */
};

struct fz_exec {
  struct fz_slot *slots; /* nslots entries: slot_store, or mmap'd by fz_exec_init_cap */
  int *order;            /* live slots sorted by address */
  unsigned nslots;
  int nlive;
  size_t budget; /* live large bytes kept (LARGE_BUDGET; replay: unbounded) */
  int last_err;  /* errno (posix_memalign: return code) of the last allocation call */
  struct fz_slot slot_store[FZ_SLOTS];
  int order_store[FZ_SLOTS];
  uint32_t epoch[FZ_MAX_THREADS]; /* bumped when a logical thread exits */
  uint64_t digest;
  unsigned ops;
  long abort_at; /* FUZZ_ABORT_AT, -1 if unset */
  size_t large_live;
  size_t live_usable; /* usable bytes of the live slots and burst blocks (hak_stats' live_bytes) */
  struct fz_burst {
    unsigned char *ptr;
    size_t usable;
  } burst[FZ_BURST_MAX];
  int nburst;
  unsigned forks; /* FZ_FORK ops run so far in this input (a few per input) */
};

/* Also freezes hakmem's timer clock (os_test_freeze_clock), for good: from
 * the first input on, only FZ_CLOCK moves it. */
void fz_exec_init(struct fz_exec *x);
/* Same with room for `nslots` slots (tables from mmap above FZ_SLOTS) and,
 * when `unbounded`, no live-bytes budget: every request is made (replay).
 * The clock is left to the caller (repro/replay follows the recorded one). */
void fz_exec_init_cap(struct fz_exec *x, unsigned nslots, int unbounded);
/* Turns the asan and valgrind builds' redzones off (alloc/src/track.h; a
 * no-op in the others), before the first allocation: their blocks are then
 * placed, and have the usable sizes, of the release build's (a digest or a
 * recording compared with it). FUZZ_NO_REDZONES=1 does it at every
 * fz_exec_init*. */
void fz_no_redzones(void);
/* Run one op on the calling thread. FZ_THREAD_EXIT only bumps the epoch: the
 * driver makes the thread exit (and joins it) itself. */
void fz_exec_op(struct fz_exec *x, const struct fz_op *op);
void fz_exec_verify_all(struct fz_exec *x);
/* Frees every live block, requires hak_heap_check() == 0, then calls
 * hak_test_reset() (only call it when no other thread exists). Returns the
 * digest of the whole input: outcomes and block offsets in their segment. */
uint64_t fz_exec_finish(struct fz_exec *x);

/* Decode and run a single-threaded program; returns its digest. With
 * fail_moves, FZ_FAIL_MOVE is decoded. */
uint64_t fz_run_single(const uint8_t *data, size_t size);
uint64_t fz_run_single_ex(const uint8_t *data, size_t size, int fail_moves);

const char *fz_kind_name(unsigned kind);

/* ---- the baton runner: one real thread per logical thread ----------------
 * The caller (coordinator) hands each op to the worker thread it names and
 * waits until it is done, so ops run one at a time in the caller's order,
 * each on its own thread (fuzz_mt, repro/replay). A worker's thread is
 * started at its first op. fz_runner_exit makes it exit (its heap is
 * abandoned with any live blocks) and joins it; its next op starts a new
 * thread. `fn` runs each op (NULL: fz_exec_op on `x`). */
struct fz_worker;
struct fz_runner {
  struct fz_exec *x;
  struct fz_worker *w;
  unsigned n;
  void (*fn)(void *ctx, unsigned worker, const struct fz_op *op);
  void *ctx;
  void *done;        /* sem_t */
  void *nested_done; /* sem_t: a nested op (FZ_HOOK) is done */
  int join_pending;  /* a nested exit left running while the outer op finishes (+1) */
};
/* `nworkers` workers; returns 0, or -1 when out of memory. */
int fz_runner_init(struct fz_runner *r, struct fz_exec *x, unsigned nworkers);
void fz_runner_op(struct fz_runner *r, unsigned worker, const struct fz_op *op);
void fz_runner_exit(struct fz_runner *r, unsigned worker);
int fz_runner_alive(const struct fz_runner *r, unsigned worker);
/* Every live worker exits and is joined. */
void fz_runner_exit_all(struct fz_runner *r);
/* Runs op as the coordinator of a multithreaded driver would: FZ_THREAD_EXIT
 * bumps the epoch and makes the worker exit (if it is alive), FZ_HOOK is
 * ignored, anything else runs on its worker. */
void fz_runner_dispatch(struct fz_runner *r, const struct fz_op *op);
/* FZ_HOOK: `nested` (n of them) run while `outer` is held at hook point
 * hook->a of the allocator, on outer's worker; see enum fz_kind. Nested ops
 * that could wait for the held thread (or clash with the outer op's slot or
 * bursts) run after the outer op instead, as does a nested op on the outer
 * op's thread. A nested thread exit runs concurrently: the held thread waits
 * up to 100 ms for it, then goes on (it may be waiting for that thread), and
 * the coordinator joins it after the outer op; nested ops after an exit run
 * after the outer op. */
void fz_runner_hooked(struct fz_runner *r, const struct fz_op *hook, const struct fz_op *nested,
                      unsigned n, const struct fz_op *outer);

#endif
