/* repro/tracecat.c: prints a hakmem op trace as text.
 *
 *   tracecat [--ids] [--ms] TRACE [FROM [TO]]
 *
 * One line per record, in sequence order: "<seq> T<tid> <op>(args) = result";
 * --ms adds " @<ms>", the time of the record on hakmem's timer clock since
 * the first record.
 * FROM/TO select a range of sequence numbers (inclusive). --ids prints
 * logical object ids (#n, numbered in order of allocation; a realloc keeps
 * its id) instead of addresses, so two traces of the same program diff
 * cleanly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace_read.h"

int main(int argc, char **argv) {
  int ids = 0, ms = 0, ai = 1;
  for (; ai < argc; ai++)
    if (strcmp(argv[ai], "--ids") == 0)
      ids = 1;
    else if (strcmp(argv[ai], "--ms") == 0)
      ms = 1;
    else
      break;
  if (ai >= argc || argc - ai > 3) {
    fprintf(stderr, "usage: tracecat [--ids] [--ms] TRACE [FROM [TO]]\n");
    return 2;
  }
  struct trace t;
  if (trace_load(argv[ai], &t) != 0)
    return 2;
  uint64_t from = argc - ai > 1 ? trace_arg_u64("tracecat", "FROM", argv[ai + 1]) : 0;
  uint64_t to = argc - ai > 2 ? trace_arg_u64("tracecat", "TO", argv[ai + 2]) : UINT64_MAX;
  printf("# ");
  trace_describe(stdout, argv[ai], &t);
  struct pmap m = {0};
  int64_t next_id = 1;
  char line[320];
  for (size_t i = 0; i < t.n; i++) {
    struct hak_trace_rec r = t.r[i];
    if (ids) {
      int64_t v = 0;
      int known = r.arg && pmap_get(&m, r.arg, &v);
      uint64_t res = r.result;
      if (r.op == TR_FREE || r.op == TR_FREE_SIZED || r.op == TR_FREE_ALIGNED_SIZED) {
        if (known)
          pmap_del(&m, r.arg);
      } else if (r.op != TR_USABLE_SIZE && r.op != TR_THREAD_EXIT) {
        int64_t id = known && (r.op == TR_REALLOC || r.op == TR_REALLOCARRAY) ? v : next_id++;
        if (r.arg && known && res)
          pmap_del(&m, r.arg);
        if (res)
          pmap_put(&m, res, id);
        else if (known && (r.a1 == 0 || (r.op == TR_REALLOCARRAY && r.a2 == 0)))
          pmap_del(&m, r.arg); /* realloc(p, 0), reallocarray(p, 0, m) or (p, n, 0) freed p */
        r.result = res ? (uint64_t)id : 0;
      }
      if (r.arg)
        r.arg = known ? (uint64_t)v : (uint64_t)-1;
    }
    if (r.seq < from || r.seq > to)
      continue;
    trace_format_in(line, sizeof line, &t, &r);
    if (ms) {
      size_t l = strlen(line);
      snprintf(line + l, sizeof line - l, " @%lld", (long long)(int64_t)(r.ms - t.r[0].ms));
    }
    if (ids) { /* addresses became ids: print them as #n */
      char out[400];
      size_t o = 0;
      for (const char *p = line; *p && o < sizeof out - 24; p++) {
        if (p[0] == '0' && p[1] == 'x') {
          unsigned long long v = strtoull(p, (char **)&p, 16);
          o += (size_t)snprintf(out + o, sizeof out - o,
                                v == (unsigned long long)-1 ? "#?" : "#%llu", v);
          p--;
        } else {
          out[o++] = *p;
        }
      }
      out[o] = 0;
      printf("%llu T%u %s\n", (unsigned long long)r.seq, r.tid, out);
    } else {
      printf("%llu T%u %s\n", (unsigned long long)r.seq, r.tid, line);
    }
  }
  return 0;
}
