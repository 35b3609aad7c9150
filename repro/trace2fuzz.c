/* repro/trace2fuzz.c: turns an op trace (or a window of it) into an input for
 * the fuzz drivers, so that libFuzzer can minimize it (-minimize_crash=1) and
 * it can join corpus/regressions/<driver>/.
 *
 *   trace2fuzz TRACE -o OUT [--from SEQ] [--to SEQ] [--driver fuzz_mt|fuzz_ops]
 *              [--max-ops N]
 *   trace2fuzz [--driver fuzz_ops] --dump INPUT    (prints a fuzz input's ops)
 *   trace2fuzz [--driver fuzz_ops] --spans INPUT   (offset and length of each op's bytes)
 *
 * The fuzz interpreter has FZ_SLOTS (64) block slots, FZ_MAX_THREADS (8)
 * threads and FZ_MAX_OPS (4096) ops per input, so the trace is mapped:
 *   - objects (a block and the blocks realloc turned it into) are given slots
 *     by interval scheduling: an object holds its slot from its allocation to
 *     its free (or the end of the window). Placed first: the objects the last
 *     thread touched (at a crash: the crashing thread), then every thread's
 *     first object (each thread that worked keeps a heap), then objects with
 *     a remote op (freed, reallocated or measured by another thread), then the
 *     rest; within each, the latest last op first (nearest a crash at the
 *     end). An object that finds no free slot, or no room in the op budget
 *     (--max-ops, default 4000), is left out with all its ops; ops on no
 *     block (free(NULL), failed allocations) only when all of them fit; the
 *     thread exits (below) are outside the budget, and where they would take
 *     the input past FZ_MAX_OPS (the decoder stops there, and the end of the
 *     window, a crash, would be lost) the budget is cut until they fit;
 *   - threads become lanes: a traced thread takes a free lane at its first op
 *     and gives it back at its exit (FZ_THREAD_EXIT: the fuzz thread exits and
 *     a later one starts afresh); with more than 8 threads alive at once some
 *     share a lane;
 *   - sizes are exact up to 64 KiB (and even sizes to 128 KiB), otherwise the
 *     nearest size the decoder can express; alignments likewise;
 *   - free_sized and free_aligned_sized become the fuzz ops that pass the
 *     slot's own size and alignment (the format has no bytes for them: a
 *     decoded op must be a valid call); one recorded with another size or
 *     alignment (a size mismatch the program died of) is reported as not
 *     carried (the trace's replay passes it).
 * The output is decoded again with the interpreter's decoder (fz_decode_next)
 * and compared op by op. Prints what was kept and left out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"
#include "ops.h"
#include "trace_read.h"

struct obj {
  size_t first, last; /* indices (into the window's records) */
  uint32_t tid;       /* allocating thread */
  int remote;         /* an op by another thread */
  int prio;           /* 4: touched by the last thread, 2: a thread's first, 1: remote */
  size_t nops;
  int slot;           /* -1: left out */
  size_t size, align; /* as the executor's slot will hold them (recorded request) */
};

struct item { /* one record of the window */
  const struct hak_trace_rec *r;
  int64_t obj;   /* -1: none (standalone op needing an empty slot), -2: dropped */
  int size_lost; /* a sized free whose recorded size/alignment is not the block's */
};

static struct obj *objs;
static size_t nobjs, objcap;
static struct item *items;
static size_t nitems;

static int64_t obj_new(size_t i, uint32_t tid) {
  if (nobjs == objcap) {
    objcap = objcap ? objcap * 2 : 1024;
    objs = realloc(objs, objcap * sizeof *objs);
    if (!objs)
      exit(2);
  }
  objs[nobjs] = (struct obj){.first = i, .last = i, .tid = tid, .slot = -1};
  return (int64_t)nobjs++;
}

/* The size and alignment the executor's slot records for the block `r`
 * returned (fuzz/ops.c: adopt_block; op_aligned keeps a valid alignment). */
static void obj_shape(struct obj *o, const struct hak_trace_rec *r) {
  size_t n = r->a1, a = 0;
  switch (r->op) {
  case TR_CALLOC:
  case TR_REALLOCARRAY:
    if (__builtin_mul_overflow(r->a1, r->a2, &n))
      n = SIZE_MAX;
    break;
  case TR_POSIX_MEMALIGN:
  case TR_ALIGNED_ALLOC:
  case TR_MEMALIGN:
    a = r->a2;
    break;
  case TR_VALLOC:
  case TR_PVALLOC:
    a = 4096;
    break;
  default:
    break;
  }
  o->size = n;
  o->align = a && !(a & (a - 1)) ? a : 0;
}

/* ---- slot scheduling: per slot, a sorted list of [first, last] intervals */
struct ivl {
  size_t a, b;
};
static struct ivl *sl[FZ_SLOTS];
static size_t sln[FZ_SLOTS], slc[FZ_SLOTS];

static int slot_fits(int s, size_t a, size_t b, size_t *pos) {
  size_t lo = 0, hi = sln[s];
  while (lo < hi) { /* first interval with start > a */
    size_t mid = (lo + hi) / 2;
    if (sl[s][mid].a > a)
      hi = mid;
    else
      lo = mid + 1;
  }
  if (lo > 0 && sl[s][lo - 1].b >= a)
    return 0;
  if (lo < sln[s] && sl[s][lo].a <= b)
    return 0;
  *pos = lo;
  return 1;
}

static void slot_take(int s, size_t pos, size_t a, size_t b) {
  if (sln[s] == slc[s]) {
    slc[s] = slc[s] ? slc[s] * 2 : 64;
    sl[s] = realloc(sl[s], slc[s] * sizeof *sl[s]);
    if (!sl[s])
      exit(2);
  }
  memmove(&sl[s][pos + 1], &sl[s][pos], (sln[s] - pos) * sizeof *sl[s]);
  sl[s][pos] = (struct ivl){a, b};
  sln[s]++;
}

static int schedule(size_t a, size_t b) {
  for (int s = 0; s < FZ_SLOTS; s++) {
    size_t pos;
    if (slot_fits(s, a, b, &pos)) {
      slot_take(s, pos, a, b);
      return s;
    }
  }
  return -1;
}

static int obj_prio(const void *x, const void *y) {
  const struct obj *a = *(struct obj *const *)x, *b = *(struct obj *const *)y;
  if (a->prio != b->prio)
    return b->prio - a->prio;
  return a->last < b->last ? 1 : a->last > b->last ? -1 : 0;
}

/* ---- encoding ----------------------------------------------------------- */
static uint8_t out[1 << 20];
static size_t outn;
static void put(uint8_t b) {
  if (outn < sizeof out)
    out[outn++] = b;
}

static size_t dec_size(uint8_t b0, uint8_t b1, uint8_t b2) {
  uint8_t buf[3] = {b0, b1, b2};
  struct fz_decoder d;
  fz_decoder_init(&d, buf, 3, 1);
  return fz_decode_size(&d);
}

static void enc_size(size_t s) {
  if (s <= 0xffff) {
    put(11), put((uint8_t)s), put((uint8_t)(s >> 8));
    return;
  }
  if (s <= 0x1fffe && !(s & 1)) {
    put(27), put((uint8_t)(s / 2)), put((uint8_t)(s / 2 >> 8));
    return;
  }
  /* one-byte encodings (large and edge tables): exact, else nearest above, else largest */
  int best = -1;
  size_t bv = 0;
  for (int b = 0; b < 256; b++) {
    if ((b & 15) < 13)
      continue;
    size_t v = dec_size((uint8_t)b, 0, 0);
    if (v == s) {
      best = b;
      break;
    }
    if (v >= s && (best < 0 || bv < s || v < bv))
      best = b, bv = v;
    else if (bv < s && v > bv && v < s)
      best = b, bv = v;
  }
  put((uint8_t)best);
}

static size_t align_of_byte[256];
static void align_table(void) {
  for (int b = 0; b < 256; b++) {
    uint8_t buf[] = {15, 0, 9, 0, (uint8_t)b};
    struct fz_decoder d;
    struct fz_op op;
    fz_decoder_init(&d, buf, sizeof buf, 1);
    fz_decode_next(&d, &op);
    align_of_byte[b] = op.b;
  }
}

static void enc_align(size_t a) {
  int best = -1;
  for (int b = 0; b < 256; b++)
    if (align_of_byte[b] == a) {
      best = b;
      break;
    }
  if (best < 0) {
    int valid = a && !(a & (a - 1));
    for (int b = 0; b < 256; b++) {
      size_t v = align_of_byte[b];
      int vv = v && !(v & (v - 1));
      if (!valid && !vv) {
        best = b;
        break;
      }
      if (valid && vv && v >= a && (best < 0 || v < align_of_byte[best]))
        best = b;
    }
  }
  put((uint8_t)(best < 0 ? 0 : best));
}

static struct fz_op want[FZ_MAX_OPS + 16];
static size_t nwant;

static void emit(const struct fz_op *o, int mt) {
  static const uint8_t idx[FZ_KIND_COUNT] = {
      [FZ_MALLOC] = 0,        [FZ_CALLOC] = 5,       [FZ_REALLOC] = 7,
      [FZ_REALLOCARRAY] = 10, [FZ_FREE] = 11,        [FZ_ALIGNED] = 15,
      [FZ_USABLE] = 18,       [FZ_THREAD_EXIT] = 24, [FZ_CLOCK] = 21};
  put((uint8_t)(idx[o->kind] | o->sub << 5));
  if (mt)
    put(o->thread);
  put((uint8_t)o->slot);
  size_t before = outn;
  switch (o->kind) {
  case FZ_MALLOC:
  case FZ_REALLOC:
    enc_size(o->a);
    break;
  case FZ_CALLOC:
  case FZ_REALLOCARRAY:
    enc_size(o->a);
    enc_size(o->b);
    break;
  case FZ_ALIGNED:
    enc_size(o->a);
    enc_align(o->b);
    break;
  default:
    break;
  }
  (void)before;
  want[nwant++] = *o;
}

/* --dump: prints the ops a fuzz input decodes to (fuzz_mt: byte 0 is the
 * thread count), one per line; the last line is "<n> ops". */
static int spans_only; /* --spans: "<offset> <length>" of each op's bytes */

static int dump(const char *path, const char *driver) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 2;
  }
  size_t n = fread(out, 1, sizeof out, f);
  fclose(f);
  int mt = !driver || strcmp(driver, "fuzz_ops") != 0;
  unsigned nth = mt ? (n ? 2 + out[0] % (FZ_MAX_THREADS - 1) : 2) : 1;
  struct fz_decoder d;
  struct fz_op o;
  fz_decoder_init(&d, mt && n ? out + 1 : out, mt && n ? n - 1 : n, nth);
  unsigned k = 0;
  size_t base = mt && n ? 1 : 0, at = d.pos;
  while (fz_decode_next(&d, &o)) {
    if (spans_only)
      printf("%zu %zu\n", base + at, d.pos - at);
    else
      printf("%u T%u %s sub %u slot %u a %zu b %zu\n", k, o.thread, fz_kind_name(o.kind), o.sub,
             (unsigned)o.slot, o.a, o.b);
    k++;
    at = d.pos;
  }
  if (!spans_only)
    printf("%u ops, %u threads\n", k, nth);
  return 0;
}

int main(int argc, char **argv) {
  const char *path = NULL, *outp = NULL, *driver = NULL;
  uint64_t from = 0, to = UINT64_MAX;
  size_t max_ops = 4000;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-o") && i + 1 < argc)
      outp = argv[++i];
    else if (!strcmp(argv[i], "--from") && i + 1 < argc)
      from = trace_arg_u64("trace2fuzz", "--from", argv[++i]);
    else if (!strcmp(argv[i], "--to") && i + 1 < argc)
      to = trace_arg_u64("trace2fuzz", "--to", argv[++i]);
    else if (!strcmp(argv[i], "--driver") && i + 1 < argc)
      driver = argv[++i];
    else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
      return dump(argv[i + 1], driver);
    else if (!strcmp(argv[i], "--spans") && i + 1 < argc)
      return spans_only = 1, dump(argv[i + 1], driver);
    else if (!strcmp(argv[i], "--max-ops") && i + 1 < argc)
      max_ops = trace_arg_u64("trace2fuzz", "--max-ops", argv[++i]);
    else if (argv[i][0] != '-' && !path)
      path = argv[i];
    else
      path = NULL, i = argc;
  }
  if (!path || !outp) {
    fprintf(stderr, "usage: trace2fuzz TRACE -o OUT [--from SEQ] [--to SEQ] "
                    "[--driver fuzz_mt|fuzz_ops] [--max-ops N]\n"
                    "       trace2fuzz [--driver fuzz_ops] --dump INPUT\n"
                    "       trace2fuzz [--driver fuzz_ops] --spans INPUT\n");
    return 2;
  }
  if (max_ops > FZ_MAX_OPS)
    max_ops = FZ_MAX_OPS;
  align_table();
  struct trace t;
  if (trace_load(path, &t) != 0)
    return 2;
  items = calloc(t.n ? t.n : 1, sizeof *items);
  if (!items) {
    fprintf(stderr, "trace2fuzz: out of memory for %zu records\n", t.n);
    return 2;
  }
  struct pmap m = {0};
  size_t unknown = 0;
  for (size_t k = 0; k < t.n; k++) {
    const struct hak_trace_rec *r = &t.r[k];
    if (r->seq < from || r->seq > to)
      continue;
    size_t i = nitems++;
    items[i].r = r;
    items[i].obj = -1;
    int64_t v;
    int known = r->arg && pmap_get(&m, r->arg, &v);
    if (r->arg && !known && r->op != TR_THREAD_EXIT) {
      items[i].obj = -2; /* a block from before the window (or never handed out) */
      unknown++;
      continue;
    }
    switch (r->op) {
    case TR_FREE:
    case TR_FREE_SIZED:
    case TR_FREE_ALIGNED_SIZED:
    case TR_USABLE_SIZE:
      if (known) {
        items[i].obj = v;
        objs[v].last = i;
        objs[v].remote |= r->tid != objs[v].tid;
        if (r->op != TR_USABLE_SIZE)
          pmap_del(&m, r->arg);
        /* the fuzz format's sized frees pass the slot's own size and
         * alignment (no bytes for them): a recorded one that differs, e.g. a
         * size mismatch the program died of, is not carried */
        if (r->op == TR_FREE_SIZED)
          items[i].size_lost = r->a1 != objs[v].size;
        if (r->op == TR_FREE_ALIGNED_SIZED)
          items[i].size_lost = r->a1 != objs[v].size || !objs[v].align || r->a2 != objs[v].align;
      }
      break;
    case TR_THREAD_EXIT:
      break;
    case TR_REALLOC:
    case TR_REALLOCARRAY:
      if (known) {
        items[i].obj = v;
        objs[v].last = i;
        objs[v].remote |= r->tid != objs[v].tid;
        if (r->result || (r->a1 == 0 || (r->op == TR_REALLOCARRAY && r->a2 == 0)))
          pmap_del(&m, r->arg);
        if (r->result) {
          pmap_put(&m, r->result, v);
          obj_shape(&objs[v], r);
        }
        break;
      }
      /* realloc(NULL, n) allocates */
      __attribute__((fallthrough));
    default:
      if (r->result) {
        v = obj_new(i, r->tid);
        items[i].obj = v;
        pmap_put(&m, r->result, v);
        obj_shape(&objs[v], r);
      }
      break;
    }
  }
  /* objects still live at the end of the window hold their slot to the end */
  for (size_t k = 0; k < m.cap; k++)
    if (m.k[k])
      objs[m.v[k]].last = nitems;
  /* Priorities: objects the last thread touched (at a crash, the crashing
   * thread), then the first object of every thread (so each thread that
   * worked in the window has a heap in the fuzz run too), then objects with a
   * remote op, then the rest; within a priority, the latest last op first.
   * Objects are taken while they fit a slot and the op budget. */
  uint32_t last_tid = nitems ? items[nitems - 1].r->tid : 0;
  for (size_t i = 0; i < nitems; i++)
    if (items[i].obj >= 0) {
      struct obj *o = &objs[items[i].obj];
      o->nops++;
      o->prio |= (items[i].r->tid == last_tid) << 2;
    }
  int64_t *first_of = calloc((size_t)t.max_tid + 2, sizeof *first_of);
  uint32_t *lane_of = calloc((size_t)t.max_tid + 2, sizeof *lane_of); /* lane + 1, 0 = none */
  if (!first_of || !lane_of) {
    fprintf(stderr, "trace2fuzz: out of memory for %u threads\n", t.max_tid);
    return 2;
  }
  for (size_t k = 0; k < nobjs; k++) {
    uint32_t tid = objs[k].tid <= t.max_tid ? objs[k].tid : 0;
    if (!first_of[tid])
      first_of[tid] = (int64_t)k + 1;
    objs[k].prio |= objs[k].remote;
  }
  for (size_t tid = 0; tid <= t.max_tid; tid++)
    if (first_of[tid])
      objs[first_of[tid] - 1].prio |= 2;
  struct obj **order = malloc((nobjs ? nobjs : 1) * sizeof *order);
  if (!order) {
    fprintf(stderr, "trace2fuzz: out of memory for %zu objects\n", nobjs);
    return 2;
  }
  for (size_t k = 0; k < nobjs; k++)
    order[k] = &objs[k];
  qsort(order, nobjs, sizeof *order, obj_prio);
  size_t cut = 0, kept_objs, budget, standalone = 0;
  for (size_t i = 0; i < nitems; i++)
    standalone += items[i].obj == -1 && items[i].r->op != TR_THREAD_EXIT;
  /* The thread exits of the threads that got a lane are not in the budget:
   * when they take the input past FZ_MAX_OPS, where the decoder stops (and
   * the end of the trace, where a crash is, would be lost), the objects are
   * chosen again with the budget cut by the excess. */
reschedule:
  kept_objs = 0;
  budget = max_ops;
  memset(sln, 0, sizeof sln);
  for (size_t k = 0; k < nobjs; k++) {
    order[k]->slot = -1;
    if (order[k]->nops <= budget) {
      order[k]->slot = schedule(order[k]->first, order[k]->last);
      if (order[k]->slot >= 0) {
        budget -= order[k]->nops;
        kept_objs++;
      }
    }
  }
  int keep_standalone = standalone <= budget;
  /* lanes */
  int lane_busy[FZ_MAX_THREADS] = {0};
  unsigned nlanes = 1;
  int mt = !driver || strcmp(driver, "fuzz_ops") != 0;
  size_t lost = 0, lost_at = 0; /* sized frees whose size/alignment is not carried */
  size_t total = 0;             /* ops pass 0 would write, past FZ_MAX_OPS too */
  /* first pass decides the number of lanes; second pass emits */
  for (int pass = 0; pass < 2; pass++) {
    int clock_set = 0;
    uint64_t clock_t0 = 0, clock_done = 0; /* the first op's time, FZ_CLOCK's steps so far */
    if (pass == 1 && total > FZ_MAX_OPS && max_ops > 0) {
      max_ops -= total - FZ_MAX_OPS < max_ops ? total - FZ_MAX_OPS : max_ops;
      goto reschedule;
    }
    memset(lane_of, 0, ((size_t)t.max_tid + 2) * sizeof *lane_of);
    memset(lane_busy, 0, sizeof lane_busy);
    outn = 0;
    nwant = 0;
    if (mt && pass == 1)
      put((uint8_t)(nlanes < 2 ? 0 : nlanes - 2));
    for (size_t i = cut; i < nitems; i++) {
      const struct item *it = &items[i];
      const struct hak_trace_rec *r = it->r;
      int slot;
      if (it->obj >= 0) {
        slot = objs[it->obj].slot;
        if (slot < 0)
          continue;
      } else if (it->obj == -1 && r->op != TR_THREAD_EXIT) {
        size_t pos;
        /* the call the recording died in (a malloc that crashed) is the
         * crash itself: kept past the budget */
        if (!keep_standalone && !trace_rec_inflight(&t, r))
          continue;
        slot = -1;
        for (int s = 0; s < FZ_SLOTS && slot < 0; s++)
          if (slot_fits(s, i, i, &pos))
            slot = s;
        if (slot < 0)
          continue;
      } else if (r->op == TR_THREAD_EXIT) {
        slot = 0;
      } else {
        continue;
      }
      uint32_t tid = r->tid <= t.max_tid ? r->tid : 0;
      if (!lane_of[tid]) {
        if (r->op == TR_THREAD_EXIT)
          continue;
        int l = -1;
        for (int k = 0; k < FZ_MAX_THREADS && l < 0; k++)
          if (!lane_busy[k])
            l = k;
        if (l < 0)
          l = (int)(tid % FZ_MAX_THREADS);
        lane_busy[l] = 1;
        lane_of[tid] = (uint32_t)l + 1;
        if ((unsigned)l + 1 > nlanes)
          nlanes = (unsigned)l + 1;
      }
      struct fz_op o;
      memset(&o, 0, sizeof o);
      o.thread = (uint8_t)(mt ? lane_of[tid] - 1 : 0);
      o.slot = (uint32_t)slot;
      switch (r->op) {
      case TR_MALLOC:
        o.kind = FZ_MALLOC, o.a = r->a1;
        break;
      case TR_CALLOC:
        o.kind = FZ_CALLOC, o.sub = 4, o.a = r->a1, o.b = r->a2;
        break;
      case TR_REALLOC:
        o.kind = FZ_REALLOC, o.a = r->a1;
        break;
      case TR_REALLOCARRAY:
        o.kind = FZ_REALLOCARRAY, o.sub = 4, o.a = r->a1, o.b = r->a2;
        break;
      case TR_FREE:
      case TR_FREE_SIZED:
      case TR_FREE_ALIGNED_SIZED:
        o.kind = FZ_FREE, o.sub = r->op == TR_FREE ? 0 : r->op == TR_FREE_SIZED ? 1 : 2;
        break;
      case TR_POSIX_MEMALIGN:
      case TR_ALIGNED_ALLOC:
      case TR_MEMALIGN:
      case TR_VALLOC:
      case TR_PVALLOC:
        o.kind = FZ_ALIGNED, o.sub = (uint8_t)(r->op == TR_POSIX_MEMALIGN  ? 0
                                               : r->op == TR_ALIGNED_ALLOC ? 1
                                               : r->op == TR_MEMALIGN      ? 2
                                               : r->op == TR_VALLOC        ? 3
                                                                           : 4);
        o.a = r->a1, o.b = r->a2;
        break;
      case TR_USABLE_SIZE:
        o.kind = FZ_USABLE;
        break;
      case TR_THREAD_EXIT:
        o.kind = FZ_THREAD_EXIT;
        lane_busy[lane_of[tid] - 1] = 0;
        lane_of[tid] = 0;
        break;
      default:
        continue;
      }
      if (!mt && o.kind == FZ_THREAD_EXIT)
        continue;
      /* hakmem's timer clock (the fuzz drivers freeze it): FZ_CLOCK steps,
       * largest first, while the recorded time since the first op is a
       * step or more ahead of them, so the purges and cache evictions by
       * age come due where they did in the recording (to within a step) */
      if (!clock_set)
        clock_set = 1, clock_t0 = r->ms;
      uint64_t due = r->ms > clock_t0 ? r->ms - clock_t0 : 0;
      while (due >= clock_done + fz_clock_steps[0]) {
        unsigned st = 3;
        while (clock_done + fz_clock_steps[st] > due)
          st--;
        struct fz_op c;
        memset(&c, 0, sizeof c);
        c.kind = FZ_CLOCK, c.sub = 4, c.thread = o.thread, c.slot = st, c.a = fz_clock_steps[st];
        clock_done += fz_clock_steps[st];
        total += pass == 0;
        if (nwant < FZ_MAX_OPS)
          emit(&c, mt);
      }
      total += pass == 0;
      if (nwant >= FZ_MAX_OPS)
        continue;
      if (pass == 1 && it->size_lost && !lost++)
        lost_at = i;
      emit(&o, mt);
    }
  }
  if (mt && nlanes < 2)
    nlanes = 2;
  /* self-check: the decoder must give back the ops written (sizes and
   * alignments may have been rounded to what the decoder can express) */
  struct fz_decoder d;
  fz_decoder_init(&d, mt ? out + 1 : out, mt ? outn - 1 : outn, mt ? nlanes : 1);
  struct fz_op o;
  size_t k = 0, approx = 0;
  while (fz_decode_next(&d, &o)) {
    if (k >= nwant || o.kind != want[k].kind || o.thread != want[k].thread ||
        o.slot != want[k].slot || (o.kind != FZ_FREE && o.sub != want[k].sub)) {
      fprintf(stderr, "trace2fuzz: internal error: op %zu decodes as %s, wrote %s\n", k,
              fz_kind_name(o.kind), k < nwant ? fz_kind_name(want[k].kind) : "nothing");
      return 1;
    }
    approx += o.a != want[k].a || o.b != want[k].b;
    k++;
  }
  if (k != nwant) {
    fprintf(stderr, "trace2fuzz: internal error: %zu ops decoded, %zu written\n", k, nwant);
    return 1;
  }
  FILE *f = fopen(outp, "wb");
  if (!f || fwrite(out, 1, outn, f) != outn || fclose(f) != 0) {
    perror(outp);
    return 2;
  }
  fprintf(stderr,
          "trace2fuzz: %s: %zu ops (%s, %u thread%s, %zu of %zu objects on %d slots), %zu bytes; "
          "window seq %llu..%llu%s, %zu ops on blocks from outside the window, %zu with rounded "
          "sizes/alignments\n",
          outp, nwant, mt ? "fuzz_mt" : "fuzz_ops", mt ? nlanes : 1, mt && nlanes > 1 ? "s" : "",
          kept_objs, nobjs, FZ_SLOTS, outn, nitems ? (unsigned long long)items[0].r->seq : 0ull,
          nitems ? (unsigned long long)items[nitems - 1].r->seq : 0ull,
          keep_standalone ? "" : " (ops on no block left out)", unknown, approx);
  if (lost) {
    char rec[256];
    trace_format(rec, sizeof rec, items[lost_at].r);
    fprintf(stderr,
            "trace2fuzz: %zu sized free(s) pass a size or alignment other than their block's "
            "(first: seq %llu %s, block of %zu bytes, alignment %zu): the fuzz input's "
            "free_sized/free_aligned_sized take the block's own, so a size mismatch does not "
            "reproduce from it; the trace's replay passes the recorded ones\n",
            lost, (unsigned long long)items[lost_at].r->seq, rec, objs[items[lost_at].obj].size,
            objs[items[lost_at].obj].align);
  }
  return 0;
}
