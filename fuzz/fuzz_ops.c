/* fuzz/fuzz_ops.c: single-threaded op programs (see ops.h), including
 * FZ_FAIL_MOVE: a large block's page move that fails. */
#include <stddef.h>
#include <stdint.h>

#include "ops.h"

uint64_t fuzz_one(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

uint64_t fuzz_one(const uint8_t *data, size_t size) {
  return fz_run_single_ex(data, size, 1); /* with injected page-move failures */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_one(data, size);
  return 0;
}
