/* repro/replay.c: re-executes an op trace (alloc/src/trace.h) against the
 * hakmem configuration this binary is linked with, through the shared op
 * interpreter (fuzz/ops.c: its executor, shadow model and block patterns,
 * and its baton runner).
 *
 *   replay TRACE [--serial] [--to SEQ] [--no-finish] [-v] [-q]
 *
 * Pointers become logical objects: each block the trace hands out gets an
 * executor slot (a realloc keeps its slot), freed slots are reused, so the
 * replay never depends on addresses. Every traced thread is one real thread
 * (fz_runner); the coordinator hands each run of one thread's consecutive
 * ops, in sequence order, to its thread and waits until it is done, so the
 * same blocks are freed by the same threads in the same order. --serial runs
 * every op on the main thread.
 *
 * After each op the outcome is compared with the recording: NULL or not,
 * errno (posix_memalign: return code), usable size of small blocks (not
 * after realloc, which may move or keep a block depending on the
 * configuration, nor of large blocks, whose layout differs); the executor itself
 * checks alignment, the documented bad-input behaviour and every live block's
 * contents (patterns written at allocation, verified before free/realloc).
 * The first op that differs is reported ("MISMATCH at seq N"); an op that
 * crashes is named by the signal handler or sanitizer death callback
 * ("CRASH at seq N"), since the op about to run is kept in a global first.
 *
 * Exit status: 0 every outcome matched (and, with the end-of-trace check,
 * hak_heap_check() was clean after freeing everything); 1 mismatch;
 * 2 usage or unreadable trace; 3 the recording crashed (trace written at a
 * fatal signal) but the replay did not; a crash dies by its signal (or the
 * sanitizer's exit code). */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem.h"
#include "ops.h"
#include "trace_read.h"

#include "internal.h" /* os_test_freeze_clock, os_test_advance_ms: the recorded clock */

#ifndef REPLAY_CONFIG
#define REPLAY_CONFIG "?"
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define REPLAY_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define REPLAY_SANITIZER 1
#endif

struct rop {
  struct fz_op op;
  uint32_t worker;      /* traced tid - 1 */
  uint8_t skip;         /* 1: refers to a block the trace never handed out */
  uint8_t exit;         /* TR_THREAD_EXIT */
  uint8_t cmp_err;      /* compare errno / rc */
  uint8_t expect_block; /* the recording returned a block */
  uint8_t any_usable;   /* usable_size of a block realloc returned: not compared */
  uint8_t inflight;     /* the call the recording died in: no outcome to compare */
  size_t rec;           /* index in the trace */
};

static struct trace T;
static struct rop *ops;
static size_t nops;
static struct fz_exec X;
static _Atomic long cur = -1; /* index of the op running (crash attribution) */
static int verbose, quiet;
static _Atomic int mismatch;
static char mismatch_msg[1024];

static void put(const char *s) {
  ssize_t w = write(2, s, strlen(s));
  (void)w;
}

static void putu(uint64_t v) {
  char b[24];
  int i = 23;
  b[i] = 0;
  do
    b[--i] = (char)('0' + v % 10);
  while ((v /= 10) && i > 0);
  put(b + i);
}

/* Async-signal-safe: names the op that was running. */
static void report_crash(const char *why) {
  long i = atomic_load(&cur);
  if (i < 0) {
    put("replay: CRASH (");
    put(why);
    put(") outside any op\n");
    return;
  }
  const struct hak_trace_rec *r = &T.r[ops[i].rec];
  put("replay: CRASH (");
  put(why);
  put(") at seq ");
  putu(r->seq);
  put(" (op ");
  putu((uint64_t)i + 1);
  put(" of ");
  putu(nops);
  put(", thread ");
  putu(r->tid);
  put("): ");
  put(trace_op_name(r->op));
  put("\n");
}

static void on_signal(int sig) {
  const char *name = sig == SIGABRT   ? "SIGABRT"
                     : sig == SIGSEGV ? "SIGSEGV"
                     : sig == SIGBUS  ? "SIGBUS"
                     : sig == SIGILL  ? "SIGILL"
                                      : "SIGFPE";
  report_crash(name);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void on_sanitizer_death(void) {
  report_crash("sanitizer report");
}
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

/* ---- trace -> ops ------------------------------------------------------- */

static uint32_t *free_slots;
static size_t nfree, free_cap;
static uint32_t next_slot = 1; /* slot 0 stays empty: free(NULL), usable_size(NULL) */

static uint32_t slot_new(void) {
  if (nfree)
    return free_slots[--nfree];
  return next_slot++;
}

static void slot_release(uint32_t s) {
  if (nfree == free_cap) {
    free_cap = free_cap ? free_cap * 2 : 1024;
    free_slots = realloc(free_slots, free_cap * sizeof *free_slots);
    if (!free_slots)
      exit(2);
  }
  free_slots[nfree++] = s;
}

static size_t unknown;

/* Addresses the trace had freed (or realloc moved away from), with the seq
 * of that op, so that a skipped op can be told apart: a double free, or a
 * pointer the trace never showed handed out. The first few are named. */
static struct pmap gone;
#define NAMED_MAX 3
static struct {
  size_t op;       /* index in ops */
  int64_t gone_at; /* seq of the op that freed the block, or -1 */
} named[NAMED_MAX];
static size_t nnamed;

/* Per slot: whether its block came from a realloc. Where realloc keeps a
 * block in place or moves it, and so its usable size, depends on the
 * configuration (valgrind's always moves; an aligned large block moved
 * loses its header offset), so a later usable_size is not compared either. */
static uint8_t *from_realloc;
static size_t from_realloc_cap;

static void set_from_realloc(uint32_t s, uint8_t v) {
  if (s >= from_realloc_cap) {
    size_t cap = from_realloc_cap ? from_realloc_cap : 1024;
    while (cap <= s)
      cap *= 2;
    from_realloc = realloc(from_realloc, cap);
    if (!from_realloc)
      exit(2);
    memset(from_realloc + from_realloc_cap, 0, cap - from_realloc_cap);
    from_realloc_cap = cap;
  }
  from_realloc[s] = v;
}

/* The logical object the trace's pointer `arg` refers to; false (and the op
 * is skipped) when the trace never showed that pointer handed out. */
static bool object_of(struct pmap *m, uint64_t arg, struct rop *o, uint32_t *s) {
  int64_t v;
  if (!pmap_get(m, arg, &v)) {
    o->skip = 1;
    unknown++;
    if (nnamed < NAMED_MAX) {
      named[nnamed].op = (size_t)(o - ops);
      if (!pmap_get(&gone, arg, &named[nnamed].gone_at))
        named[nnamed].gone_at = -1;
      nnamed++;
    }
    return false;
  }
  *s = (uint32_t)v;
  return true;
}

static void translate(uint64_t to) {
  struct pmap m = {0};
  ops = calloc(T.n ? T.n : 1, sizeof *ops);
  if (!ops)
    exit(2);
  for (size_t i = 0; i < T.n; i++) {
    const struct hak_trace_rec *r = &T.r[i];
    if (r->seq > to)
      break;
    struct rop *o = &ops[nops++];
    memset(o, 0, sizeof *o);
    o->rec = i;
    o->worker = r->tid ? r->tid - 1 : 0;
    o->op.thread = (uint8_t)(o->worker % FZ_MAX_THREADS);
    o->expect_block = r->result != 0 && r->op != TR_USABLE_SIZE;
    o->inflight = (uint8_t)trace_rec_inflight(&T, r);
    int64_t v;
    uint32_t s = 0;
    switch (r->op) {
    case TR_MALLOC:
    case TR_CALLOC:
    case TR_POSIX_MEMALIGN:
    case TR_ALIGNED_ALLOC:
    case TR_MEMALIGN:
    case TR_VALLOC:
    case TR_PVALLOC: {
      static const uint8_t kind[] = {
          [TR_MALLOC] = FZ_MALLOC,          [TR_CALLOC] = FZ_CALLOC,
          [TR_POSIX_MEMALIGN] = FZ_ALIGNED, [TR_ALIGNED_ALLOC] = FZ_ALIGNED,
          [TR_MEMALIGN] = FZ_ALIGNED,       [TR_VALLOC] = FZ_ALIGNED,
          [TR_PVALLOC] = FZ_ALIGNED};
      static const uint8_t sub[] = {[TR_POSIX_MEMALIGN] = 0,
                                    [TR_ALIGNED_ALLOC] = 1,
                                    [TR_MEMALIGN] = 2,
                                    [TR_VALLOC] = 3,
                                    [TR_PVALLOC] = 4};
      o->op.kind = kind[r->op];
      o->op.sub = r->op == TR_MALLOC || r->op == TR_CALLOC ? 0 : sub[r->op];
      o->op.a = r->a1;
      o->op.b = r->a2;
      s = slot_new();
      if (r->result) {
        if (pmap_get(&m, r->result, &v)) {
          fprintf(stderr,
                  "replay: the trace shows block %#llx handed out at seq %llu while it was "
                  "still live (handed out twice by the recording allocator)\n",
                  (unsigned long long)r->result, (unsigned long long)r->seq);
        }
        pmap_put(&m, r->result, s);
        pmap_del(&gone, r->result);
        set_from_realloc(s, 0);
      } else {
        slot_release(s); /* reused by a later op only; this one runs first */
      }
      o->cmp_err = !r->result || r->op == TR_POSIX_MEMALIGN;
      break;
    }
    case TR_REALLOC:
    case TR_REALLOCARRAY: {
      size_t n = r->a1;
      int ovf = r->op == TR_REALLOCARRAY && __builtin_mul_overflow(r->a1, r->a2, &n);
      /* reallocarray with a zero product runs as itself: the executor runs
       * it since 2026-11-28 (before, the replay made it realloc(p, 0), and a
       * bug in reallocarray's own zero path replayed on realloc's) */
      o->op.kind = r->op == TR_REALLOC ? FZ_REALLOC : FZ_REALLOCARRAY;
      o->op.a = r->a1;
      o->op.b = r->a2;
      if (r->arg) {
        if (!object_of(&m, r->arg, o, &s))
          break;
      } else {
        s = slot_new();
      }
      int to_zero = !ovf && n == 0 && r->arg;
      o->cmp_err = !r->result && !to_zero;
      if (r->result) {
        if (r->arg) {
          pmap_del(&m, r->arg);
          pmap_put(&gone, r->arg, (int64_t)r->seq);
        }
        pmap_put(&m, r->result, s);
        pmap_del(&gone, r->result);
        set_from_realloc(s, r->arg != 0); /* realloc(NULL, n) is malloc(n) */
      } else if (to_zero) {
        pmap_del(&m, r->arg);
        pmap_put(&gone, r->arg, (int64_t)r->seq);
        slot_release(s);
      } else if (!r->arg) {
        slot_release(s);
      }
      break;
    }
    case TR_FREE:
    case TR_FREE_SIZED:
    case TR_FREE_ALIGNED_SIZED:
      /* the recorded size and alignment, not the slot's: a program's
       * free_sized with a wrong size must fail in the replay too */
      o->op.kind = FZ_FREE;
      o->op.sub = r->op == TR_FREE ? 0 : r->op == TR_FREE_SIZED ? 3 : 4;
      o->op.a = r->a1;
      o->op.b = r->a2;
      if (r->arg) {
        if (!object_of(&m, r->arg, o, &s))
          break;
        pmap_del(&m, r->arg);
        pmap_put(&gone, r->arg, (int64_t)r->seq);
        slot_release(s);
      }
      break;
    case TR_USABLE_SIZE:
      o->op.kind = FZ_USABLE;
      if (r->arg) {
        if (!object_of(&m, r->arg, o, &s))
          break;
        o->any_usable = s < from_realloc_cap && from_realloc[s];
      }
      break;
    case TR_THREAD_EXIT:
      o->exit = 1;
      o->op.kind = FZ_THREAD_EXIT;
      break;
    default:
      o->skip = 1;
      break;
    }
    o->op.slot = s;
  }
  free(m.k);
  free(m.v);
  free(gone.k);
  free(gone.v);
}

/* Names the first skipped ops: the block's earlier free (a double free in
 * the recorded program) or none in the trace. */
static void describe_skipped(void) {
  for (size_t i = 0; i < nnamed; i++) {
    char rec[256];
    const struct hak_trace_rec *r = &T.r[ops[named[i].op].rec];
    trace_format_in(rec, sizeof rec, &T, r);
    fprintf(stderr, "replay:   seq %llu (thread %u) %s: ", (unsigned long long)r->seq, r->tid, rec);
    if (named[i].gone_at >= 0)
      fprintf(stderr,
              "the trace freed that block at seq %lld (a double free, or a use after free, in "
              "the recorded program)\n",
              (long long)named[i].gone_at);
    else
      fprintf(stderr, "the trace never handed out that pointer (an invalid free in the recorded "
                      "program, a block from before the recording began, or records lost)\n");
  }
  if (unknown > nnamed)
    fprintf(stderr, "replay:   (and %zu more)\n", unknown - nnamed);
}

/* The recording's crash was at an op the replay skipped: the program's
 * own error (hakmem named it), nothing of the allocator's to reproduce. */
static bool crash_at_skipped(void) {
  return nops && ops[nops - 1].skip && ops[nops - 1].rec == T.n - 1;
}

/* ---- running ------------------------------------------------------------ */

static void describe_op(char *buf, size_t len, long i) {
  char rec[256];
  trace_format_in(rec, sizeof rec, &T, &T.r[ops[i].rec]);
  snprintf(buf, len, "seq %llu (op %ld of %zu, thread %u): %s",
           (unsigned long long)T.r[ops[i].rec].seq, i + 1, nops, T.r[ops[i].rec].tid, rec);
}

/* hakmem's timer clock (the purge delay, the caches' aging) follows the
 * recording: frozen at the start, moved before each op to where the
 * recorded program's clock stood when it made it (records in seq order;
 * another thread's earlier op may have been written a moment later, so
 * the clock only moves forward). The replay purges and ages at the same
 * ops as the recording, however fast or slow it runs. --real-clock: off. */
static int follow_clock = 1;
static uint64_t clock_ms; /* the recorded time the clock stands at */

static void clock_follow(const struct hak_trace_rec *r) {
  if (follow_clock && r->ms > clock_ms) {
    os_test_advance_ms(r->ms - clock_ms);
    clock_ms = r->ms;
  }
}

static void run_op(void *ctx, unsigned worker, const struct fz_op *op) {
  (void)ctx, (void)worker;
  long i = atomic_load(&cur);
  const struct rop *o = &ops[i];
  const struct hak_trace_rec *r = &T.r[o->rec];
  clock_follow(r);
  if (verbose) {
    char b[400];
    describe_op(b, sizeof b, i);
    fprintf(stderr, "replay: %s\n", b);
  }
  uint32_t gen = X.slots[op->slot].gen;
  fz_exec_op(&X, op);
  if (op->kind == FZ_FREE || op->kind == FZ_THREAD_EXIT || o->inflight)
    return;
  const struct fz_slot *s = &X.slots[op->slot];
  char what[300] = "";
  if (op->kind == FZ_USABLE) {
    size_t got = s->ptr ? s->usable : 0;
    if (got != r->result && !o->any_usable)
      snprintf(what, sizeof what, "usable size %zu, recorded %llu", got,
               (unsigned long long)r->result);
  } else {
    /* a new block bumps the slot's generation; a failed realloc leaves the
     * old block (and generation) in place; realloc(p, 0) empties the slot */
    int got_block = s->ptr != NULL && s->gen != gen;
    if (got_block != o->expect_block)
      snprintf(what, sizeof what, "%s, recorded %s (errno/rc %d)",
               got_block ? "returned a block" : "returned NULL",
               o->expect_block ? "a block" : "NULL", r->err);
    else if (o->cmp_err && X.last_err != r->err)
      snprintf(what, sizeof what, "errno/rc %d, recorded %d", X.last_err, r->err);
    /* (realloc may keep a block in place or move it depending on the
     * configuration, e.g. valgrind's: its usable size is not compared) */
    /* (nor for large blocks, whose mapping layout differs between
     * configurations: valgrind's pads them) */
    else if (got_block && r->usable && s->usable != r->usable && op->kind != FZ_REALLOC &&
             op->kind != FZ_REALLOCARRAY && r->usable <= HAK_SMALL_MAX)
      snprintf(what, sizeof what, "usable size %zu, recorded %llu", s->usable,
               (unsigned long long)r->usable);
  }
  if (what[0]) {
    char b[400];
    describe_op(b, sizeof b, i);
    snprintf(mismatch_msg, sizeof mismatch_msg, "%s: replayed %s", b, what);
    atomic_store(&mismatch, 1);
  }
}

/* A worker runs a batch: the op at `cur` and every later one of its own
 * thread up to the next op of another thread, a thread exit or a mismatch;
 * batch_end is the first op it did not run. One hand-off per batch, not
 * per op: the same ops run on the same threads in the same order, and a
 * one-thread trace is handed over once (506675 ops of python3: 12.4 s ->
 * 5.0 s, as fast as --serial; nearly all of it was semaphore hand-offs). */
static size_t batch_end;

static void run_batch(void *ctx, unsigned worker, const struct fz_op *op) {
  (void)op;
  size_t i = (size_t)atomic_load(&cur);
  const uint32_t w = ops[i].worker;
  for (;;) {
    run_op(ctx, worker, &ops[i].op);
    for (i++; i < nops && ops[i].skip; i++) {
    }
    if (i == nops || ops[i].exit || ops[i].worker != w || atomic_load(&mismatch))
      break;
    atomic_store(&cur, (long)i);
  }
  batch_end = i;
}

static void usage(void) {
  fprintf(stderr,
          "usage: replay TRACE [--serial] [--to SEQ] [--no-finish] [--real-clock] [-v] [-q]\n");
  exit(2);
}

int main(int argc, char **argv) {
  /* the recording's usable sizes, compared below, are a build's without
   * redzones: the asan and valgrind builds' are off here (they catch a
   * program's overflows, and a replay makes none) */
  fz_no_redzones();
  const char *path = NULL;
  int serial = 0, finish = 1;
  uint64_t to = UINT64_MAX;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--serial") == 0)
      serial = 1;
    else if (strcmp(argv[i], "--no-finish") == 0)
      finish = 0;
    else if (strcmp(argv[i], "--real-clock") == 0)
      follow_clock = 0;
    else if (strcmp(argv[i], "-v") == 0)
      verbose = 1;
    else if (strcmp(argv[i], "-q") == 0)
      quiet = 1;
    else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
      to = trace_arg_u64("replay", "--to", argv[++i]);
    else if (argv[i][0] == '-' || path)
      usage();
    else
      path = argv[i];
  }
  if (!path)
    usage();
  if (trace_load(path, &T) != 0)
    return 2;
  if (!quiet)
    trace_describe(stderr, path, &T);
  /* A truncated trace lost every record made after the limit was reached,
   * in every thread, while records numbered later but made earlier were
   * kept: past its first missing number the trace is holes (a free lost, the
   * block then "handed out twice by the recording allocator"). Only the
   * records before that hole are replayed, and that is said, with -q too
   * (until 2026-11-28 the whole file was, and its holes were named as the
   * program's or the allocator's errors; steps.sh trace-limit). */
  if ((T.h.flags & HAK_TRACE_F_TRUNCATED) && T.n) {
    size_t i = 1;
    while (i < T.n && T.r[i].seq == T.r[i - 1].seq + 1)
      i++;
    if (T.r[i - 1].seq < to)
      to = T.r[i - 1].seq;
    fprintf(stderr,
            "replay: the trace is TRUNCATED (HAKMEM_TRACE_LIMIT_MB reached): replaying seq "
            "%llu..%llu, the records before the first one lost\n",
            (unsigned long long)T.r[0].seq, (unsigned long long)to);
  }
  translate(to);
  if (!quiet)
    fprintf(stderr, "replay: %zu ops, %u slots, %u threads%s, against hakmem '%s' (%s)\n", nops,
            next_slot, T.max_tid, serial ? " (serial)" : "", hak_config(), REPLAY_CONFIG);
  if (unknown)
    fprintf(stderr,
            "replay: %zu op(s) name a block the trace never handed out (an invalid or double "
            "free in the recorded program, or records lost): not replayed\n",
            unknown);
  if (unknown)
    describe_skipped();
  signal(SIGABRT, on_signal);
#ifndef REPLAY_SANITIZER
  signal(SIGSEGV, on_signal);
  signal(SIGBUS, on_signal);
  signal(SIGILL, on_signal);
  signal(SIGFPE, on_signal);
#endif
  if (__sanitizer_set_death_callback)
    __sanitizer_set_death_callback(on_sanitizer_death);
  fz_exec_init_cap(&X, next_slot, 1);
  if (follow_clock && T.n) {
    os_test_freeze_clock();
    clock_ms = T.r[0].ms;
  }
  static struct fz_runner runner;
  if (!serial && fz_runner_init(&runner, &X, T.max_tid ? T.max_tid : 1) != 0) {
    fprintf(stderr, "replay: out of memory for %u threads\n", T.max_tid);
    return 2;
  }
  runner.fn = run_batch;
  for (size_t i = 0; i < nops;) {
    const struct rop *o = &ops[i];
    if (o->skip) {
      i++;
      continue;
    }
    atomic_store(&cur, (long)i);
    if (o->exit) {
      if (!serial)
        fz_runner_exit(&runner, o->worker);
      i++;
      continue;
    }
    if (serial) {
      run_op(NULL, 0, &o->op);
      i++;
    } else {
      fz_runner_op(&runner, o->worker, &o->op);
      i = batch_end;
    }
    if (atomic_load(&mismatch)) {
      fprintf(stderr, "replay: MISMATCH at %s\n", mismatch_msg);
      return 1;
    }
  }
  if (!serial)
    fz_runner_exit_all(&runner);
  if (verbose) {
    struct hak_stats st;
    hak_stats(&st);
    fprintf(stderr, "replay: after the last op hakmem maps %zu KiB (%s clock, %llu ms recorded)\n",
            st.mapped_bytes >> 10, follow_clock ? "the recorded" : "the real",
            T.n ? (unsigned long long)(clock_ms - T.r[0].ms) : 0ull);
  }
  if (finish) {
    atomic_store(&cur, -1);
    fz_exec_finish(&X); /* frees what is left; hak_heap_check must be clean */
  }
  if (T.h.flags & HAK_TRACE_F_SIGNAL) {
    fprintf(stderr,
            "replay: NOT REPRODUCED: the recording died of signal %d %s seq %llu; the "
            "replay of %zu ops did not crash\n",
            T.h.signo, T.h.flags & HAK_TRACE_F_INFLIGHT ? "in the call of" : "after",
            T.n ? (unsigned long long)T.r[T.n - 1].seq : 0ull, nops);
    if (T.h.flags & HAK_TRACE_F_TRUNCATED)
      fprintf(stderr,
              "replay: the trace is truncated: the ops before the crash were not all "
              "recorded, so it cannot be replayed up to it (raise HAKMEM_TRACE_LIMIT_MB)\n");
    if (crash_at_skipped())
      fprintf(stderr,
              "replay: the recording's last op (seq %llu) is one the replay skipped (named "
              "above): the recorded program's own error, which hakmem reported; there is no "
              "allocator failure to reproduce\n",
              (unsigned long long)T.r[T.n - 1].seq);
    return 3;
  }
  if (!quiet && unknown)
    fprintf(stderr,
            "replay: OK: %zu of %zu ops replayed, every outcome matches the recording (%zu not "
            "replayed, see above)\n",
            nops - unknown, nops, unknown);
  else if (!quiet)
    fprintf(stderr, "replay: OK: %zu ops, every outcome matches the recording\n", nops);
  return 0;
}
