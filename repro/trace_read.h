/* repro/trace_read.h: loading a trace file (format: alloc/src/trace.h and
 * repro/README.md) for the repro tools. Header-only; the tools are small. */
#ifndef HAK_REPRO_TRACE_READ_H
#define HAK_REPRO_TRACE_READ_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HAK_TRACE 0 /* only the format part of trace.h */
#include "trace.h"
#undef HAK_TRACE

struct trace {
  struct hak_trace_header h;
  struct hak_trace_rec *r; /* sorted by seq */
  size_t n;
  uint32_t max_tid;
};

/* A sequence number or count from a tool's command line: decimal digits
 * only. Anything else is a usage error (exit 2). Until 2026-11-28 the tools
 * read them with strtoull's base 0: "010" was 8 and "x" was 0, so a replay
 * --to x replayed nothing and said so as a result (repro/tests/steps.sh
 * tracecat). */
static inline uint64_t trace_arg_u64(const char *tool, const char *what, const char *s) {
  uint64_t v = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9' && v <= (UINT64_MAX - (uint64_t)(*p - '0')) / 10; p++)
    v = v * 10 + (uint64_t)(*p - '0');
  if (p == s || *p) {
    fprintf(stderr, "%s: %s must be a decimal number below 2^64, not '%s'\n", tool, what, s);
    exit(2);
  }
  return v;
}

static inline const char *trace_op_name(unsigned op) {
  static const char *const names[] = {"?",
                                      "malloc",
                                      "calloc",
                                      "realloc",
                                      "reallocarray",
                                      "free",
                                      "posix_memalign",
                                      "aligned_alloc",
                                      "memalign",
                                      "valloc",
                                      "pvalloc",
                                      "usable_size",
                                      "free_sized",
                                      "free_aligned_sized",
                                      "thread_exit"};
  return op < sizeof names / sizeof names[0] ? names[op] : "?";
}

static inline int trace_cmp_seq(const void *a, const void *b) {
  uint64_t x = ((const struct hak_trace_rec *)a)->seq, y = ((const struct hak_trace_rec *)b)->seq;
  return x < y ? -1 : x > y;
}

/* Loads and sorts a trace; prints why and returns -1 if it cannot. */
static inline int trace_load(const char *path, struct trace *t) {
  memset(t, 0, sizeof *t);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t hn = fread(&t->h, 1, sizeof t->h, f);
  if (hn < 8 || memcmp(t->h.magic, HAK_TRACE_MAGIC, 8) != 0) {
    fprintf(stderr, "%s: not a hakmem trace (no HAKTRACE header)\n", path);
    fclose(f);
    return -1;
  }
  if (hn < sizeof t->h) {
    fprintf(stderr, "%s: the file is cut short: its header has %zu of its %zu bytes\n", path, hn,
            sizeof t->h);
    fclose(f);
    return -1;
  }
  if (t->h.version != HAK_TRACE_VERSION || t->h.rec_size != sizeof(struct hak_trace_rec)) {
    fprintf(stderr, "%s: trace version %u (record %u bytes); this tool reads version %u (%zu)\n",
            path, t->h.version, t->h.rec_size, HAK_TRACE_VERSION, sizeof(struct hak_trace_rec));
    fclose(f);
    return -1;
  }
  size_t cap = 1 << 16;
  t->r = malloc(cap * sizeof *t->r);
  for (;;) {
    if (!t->r) {
      fprintf(stderr, "%s: out of memory\n", path);
      fclose(f);
      return -1;
    }
    size_t got = fread(t->r + t->n, sizeof *t->r, cap - t->n, f);
    t->n += got;
    if (t->n < cap)
      break;
    cap *= 2;
    t->r = realloc(t->r, cap * sizeof *t->r);
  }
  /* the file must end at a record boundary: a partial last record means the
   * file was cut short (a full disk, a copy interrupted), and the record
   * lost may be the crashing op */
  long long end = ftello(f); /* fread moved past a partial element's bytes too */
  size_t extra = end < 0 ? 0 : (size_t)end - sizeof t->h - t->n * sizeof *t->r;
  if (ferror(f) || extra) {
    if (ferror(f))
      fprintf(stderr, "%s: read error after %zu records\n", path, t->n);
    else
      fprintf(stderr,
              "%s: the file is cut short: %zu bytes after record %zu are not a whole record "
              "(%zu bytes)\n",
              path, extra, t->n, sizeof *t->r);
    fclose(f);
    free(t->r);
    t->r = NULL;
    t->n = 0;
    return -1;
  }
  fclose(f);
  /* a garbled file (bytes overwritten, not a trace written by trace.c): an
   * op no recorder writes, thread id 0, or one past every thread the
   * header counts (ids are 1, 2, ... in the order threads first recorded)
   * would be replayed as nonsense or size tables by a garbage id */
  for (size_t i = 0; i < t->n; i++) {
    const struct hak_trace_rec *r = &t->r[i];
    if (r->op < TR_MALLOC || r->op > TR_THREAD_EXIT || r->tid == 0 ||
        r->tid > t->h.nthreads + t->n) {
      fprintf(stderr,
              "%s: record %zu is not one a recorder writes (seq %llu, op %u, thread %u; the "
              "header counts %llu threads): the file is garbled\n",
              path, i, (unsigned long long)r->seq, r->op, r->tid,
              (unsigned long long)t->h.nthreads);
      free(t->r);
      t->r = NULL;
      t->n = 0;
      return -1;
    }
  }
  qsort(t->r, t->n, sizeof *t->r, trace_cmp_seq);
  /* the handler numbers the call it died in above every record it keeps */
  if ((t->h.flags & HAK_TRACE_F_INFLIGHT) &&
      (!(t->h.flags & HAK_TRACE_F_SIGNAL) || !t->n ||
       (t->n > 1 && t->r[t->n - 2].seq == t->r[t->n - 1].seq) || t->r[t->n - 1].result)) {
    fprintf(stderr,
            "%s: the header says the trace ends with the call the process died in, and its "
            "records do not: the file is garbled\n",
            path);
    free(t->r);
    t->r = NULL;
    t->n = 0;
    return -1;
  }
  for (size_t i = 0; i < t->n; i++)
    if (t->r[i].tid > t->max_tid)
      t->max_tid = t->r[i].tid;
  return 0;
}

static inline void trace_describe(FILE *o, const char *path, const struct trace *t) {
  fprintf(o, "%s: %zu records, %u threads, recorded by hakmem '%.16s', pid %llu, written %s%s%s",
          path, t->n, t->max_tid, t->h.config, (unsigned long long)t->h.pid,
          t->h.flags & HAK_TRACE_F_SIGNAL  ? "at a fatal signal"
          : t->h.flags & HAK_TRACE_F_FLUSH ? "by hak_trace_flush (watchdog)"
                                           : "at exit",
          t->h.flags & HAK_TRACE_F_TRUNCATED ? ", TRUNCATED" : "", t->n ? "" : " (empty)");
  if (t->h.signo)
    fprintf(o, " (signal %d)", t->h.signo);
  if (t->n)
    fprintf(o, ", seq %llu..%llu", (unsigned long long)t->r[0].seq,
            (unsigned long long)t->r[t->n - 1].seq);
  if (t->h.flags & HAK_TRACE_F_INFLIGHT)
    fprintf(o, ", died in the call of seq %llu (the last record: no result)",
            (unsigned long long)t->r[t->n - 1].seq);
  if (t->h.flags & HAK_TRACE_F_REENTERED)
    fprintf(o,
            ", CALLS NOT RECORDED: made in a signal handler that interrupted the recorder "
            "(%llu records not kept in all)",
            (unsigned long long)t->h.dropped);
  fprintf(o, "\n");
}

/* One record as a line of text. */
static inline void trace_format(char *buf, size_t len, const struct hak_trace_rec *r) {
  const char *op = trace_op_name(r->op);
  unsigned long long a1 = r->a1, a2 = r->a2, arg = r->arg, res = r->result, u = r->usable;
  switch (r->op) {
  case TR_MALLOC:
  case TR_VALLOC:
  case TR_PVALLOC:
    snprintf(buf, len, "%s(%llu) = %#llx usable %llu err %d", op, a1, res, u, r->err);
    break;
  case TR_CALLOC:
    snprintf(buf, len, "%s(%llu, %llu) = %#llx usable %llu err %d", op, a1, a2, res, u, r->err);
    break;
  case TR_REALLOC:
    snprintf(buf, len, "%s(%#llx, %llu) = %#llx usable %llu err %d", op, arg, a1, res, u, r->err);
    break;
  case TR_REALLOCARRAY:
    snprintf(buf, len, "%s(%#llx, %llu, %llu) = %#llx usable %llu err %d", op, arg, a1, a2, res, u,
             r->err);
    break;
  case TR_FREE:
    snprintf(buf, len, "%s(%#llx)", op, arg);
    break;
  case TR_FREE_SIZED:
    snprintf(buf, len, "%s(%#llx, %llu)", op, arg, a1);
    break;
  case TR_FREE_ALIGNED_SIZED:
    snprintf(buf, len, "%s(%#llx, align %llu, %llu)", op, arg, a2, a1);
    break;
  case TR_POSIX_MEMALIGN:
    snprintf(buf, len, "%s(align %llu, %llu) = %#llx usable %llu rc %d", op, a2, a1, res, u,
             r->err);
    break;
  case TR_ALIGNED_ALLOC:
  case TR_MEMALIGN:
    snprintf(buf, len, "%s(align %llu, %llu) = %#llx usable %llu err %d", op, a2, a1, res, u,
             r->err);
    break;
  case TR_USABLE_SIZE:
    snprintf(buf, len, "%s(%#llx) = %llu", op, arg, res);
    break;
  default:
    snprintf(buf, len, "%s", op);
    break;
  }
}

/* Whether `r` (a record of t, or a copy) is the call the process died in:
 * written by the crash handler, it has no outcome to compare. */
static inline int trace_rec_inflight(const struct trace *t, const struct hak_trace_rec *r) {
  return (t->h.flags & HAK_TRACE_F_INFLIGHT) && t->n && r->seq == t->r[t->n - 1].seq;
}

/* trace_format, and for the call the process died in no result but that. */
static inline void trace_format_in(char *buf, size_t len, const struct trace *t,
                                   const struct hak_trace_rec *r) {
  trace_format(buf, len, r);
  if (!trace_rec_inflight(t, r))
    return;
  char *eq = strstr(buf, " = ");
  if (eq)
    *eq = 0;
  size_t l = strlen(buf);
  snprintf(buf + l, len - l, ": died in this call (no result)");
}

/* ---- pointer -> int map (open addressing, linear probing, backward-shift
 * deletion); keys are nonzero addresses. */
struct pmap {
  uint64_t *k;
  int64_t *v;
  size_t cap, n;
};

static inline size_t pmap_h(uint64_t k, size_t cap) {
  k ^= k >> 29;
  k *= 0xbf58476d1ce4e5b9ull;
  k ^= k >> 32;
  return (size_t)k & (cap - 1);
}

static inline void pmap_put(struct pmap *m, uint64_t k, int64_t v);

static inline void pmap_grow(struct pmap *m) {
  struct pmap o = *m;
  m->cap = o.cap ? o.cap * 2 : 1024;
  m->n = 0;
  m->k = calloc(m->cap, sizeof *m->k);
  m->v = calloc(m->cap, sizeof *m->v);
  if (!m->k || !m->v) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  for (size_t i = 0; i < o.cap; i++)
    if (o.k[i])
      pmap_put(m, o.k[i], o.v[i]);
  free(o.k);
  free(o.v);
}

static inline void pmap_put(struct pmap *m, uint64_t k, int64_t v) {
  if ((m->n + 1) * 2 > m->cap)
    pmap_grow(m);
  size_t i = pmap_h(k, m->cap);
  while (m->k[i] && m->k[i] != k)
    i = (i + 1) & (m->cap - 1);
  if (!m->k[i])
    m->n++;
  m->k[i] = k;
  m->v[i] = v;
}

static inline int pmap_get(const struct pmap *m, uint64_t k, int64_t *v) {
  if (!m->cap)
    return 0;
  size_t i = pmap_h(k, m->cap);
  while (m->k[i]) {
    if (m->k[i] == k) {
      *v = m->v[i];
      return 1;
    }
    i = (i + 1) & (m->cap - 1);
  }
  return 0;
}

static inline void pmap_del(struct pmap *m, uint64_t k) {
  if (!m->cap)
    return;
  size_t mask = m->cap - 1, i = pmap_h(k, m->cap);
  while (m->k[i] && m->k[i] != k)
    i = (i + 1) & mask;
  if (!m->k[i])
    return;
  m->n--;
  size_t j = i;
  for (;;) {
    m->k[i] = 0;
    for (;;) {
      j = (j + 1) & mask;
      if (!m->k[j])
        return;
      size_t h = pmap_h(m->k[j], m->cap);
      /* move k[j] to i unless its home lies cyclically in (i, j] */
      if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
        continue;
      break;
    }
    m->k[i] = m->k[j];
    m->v[i] = m->v[j];
    i = j;
  }
}

#endif
