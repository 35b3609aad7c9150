/* fuzz/fuzz_sizes.c: size and alignment arithmetic at the edges.
 *
 * Each input is a list of records; every record is a request whose size,
 * count or alignment is an edge value plus or minus a small delta taken from
 * the input: near SIZE_MAX and PTRDIFF_MAX, page, segment (4 MiB) and class
 * sizes, calloc/reallocarray products that overflow or land just below or
 * above PTRDIFF_MAX, and every alignment (valid powers of two, 0, non powers
 * of two). The request runs through the same executor as fuzz_ops, so the
 * shadow model checks errno, alignment, usable size and contents. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hakmem.h"
#include "ops.h"

uint64_t fuzz_one(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t edge(struct fz_decoder *d) {
  uint8_t b = fz_decode_byte(d);
  size_t delta = fz_decode_byte(d);
  size_t base;
  switch (b % 12) {
  case 0:
    base = SIZE_MAX - delta;
    return base;
  case 1:
    base = (size_t)PTRDIFF_MAX;
    break;
  case 2:
    base = (size_t)4096 << (b / 12 % 8);
    break; /* pages */
  case 3:
    base = (size_t)4 << 20 << (b / 12 % 4);
    break; /* segments */
  case 4:
    base = hak_size_class_size(fz_decode_byte(d) % hak_size_class_count());
    break;
  case 5:
    base = HAK_SMALL_MAX;
    break;
  case 6:
    base = (size_t)1 << (b / 12 % 64);
    break; /* any power of two */
  case 7:
    return delta; /* small */
  case 8:
    base = SIZE_MAX / (delta | 1);
    return base + (b & 1); /* divisions (calloc counts) */
  case 9:
    base = (size_t)PTRDIFF_MAX / (delta | 1);
    return base + (b & 1);
  case 10:
    base = (size_t)1 << 31;
    break;
  default:
    return fz_decode_size(d);
  }
  return (b & 128) ? base - delta : base + delta;
}

uint64_t fuzz_one(const uint8_t *data, size_t size) {
  static struct fz_exec x;
  struct fz_decoder d;
  fz_exec_init(&x);
  fz_decoder_init(&d, data, size, 1);
  unsigned n = 0;
  while (d.pos < d.size && n++ < 256) {
    struct fz_op op;
    memset(&op, 0, sizeof op);
    uint8_t k = fz_decode_byte(&d);
    op.slot = (uint8_t)(k % 8);
    switch (k >> 3 & 7) {
    case 0:
      op.kind = FZ_MALLOC;
      op.a = edge(&d);
      break;
    case 1:
      op.kind = FZ_CALLOC;
      op.a = edge(&d);
      op.b = edge(&d);
      break;
    case 2:
      op.kind = FZ_REALLOC;
      op.a = edge(&d);
      break;
    case 3:
      op.kind = FZ_REALLOCARRAY;
      op.a = edge(&d);
      op.b = edge(&d);
      break;
    case 4:
    case 5:
      op.kind = FZ_ALIGNED;
      op.sub = (uint8_t)((k >> 6) + ((k >> 3) & 1) * 2) % 5;
      op.a = edge(&d);
      op.b = edge(&d);
      break;
    case 6:
      op.kind = FZ_FREE;
      op.sub = (uint8_t)(k >> 6) % 3;
      break;
    default:
      op.kind = (k & 64) ? FZ_USABLE : FZ_VERIFY_ALL;
      break;
    }
    fz_exec_op(&x, &op);
  }
  return fz_exec_finish(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_one(data, size);
  return 0;
}
