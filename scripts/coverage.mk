# scripts/coverage.mk: `make test-coverage` (included by the top-level
# Makefile; see README.md, "Coverage of the tests and the corpus"). alloc/src
# built like the release configuration (-O2, no HAK_DEBUG) with clang
# source-based coverage, the tests/test_*.c programs and the three fuzz
# drivers linked against it, in build/cov/. scripts/test-coverage.sh runs
# them and reports what alloc/src lines and branches neither the tests nor
# the corpus reach. Not part of make check (under a minute on 2 cores, the
# build included).
COVB       := build/cov
COV_FLAGS  := $(BASEFLAGS) -O2 -g -DNDEBUG -ftls-model=initial-exec -DHAK_CONFIG_NAME='"release"' \
              -fprofile-instr-generate -fcoverage-mapping
COV_OBJS   := $(patsubst alloc/src/%.c,$(COVB)/obj/%.o,$(ALLOC_SRCS))
COV_LIB    := $(COVB)/libhakmem.a
COV_WRAP   := -Wl,--wrap=_exit,--wrap=abort
COV_BINS   := $(patsubst tests/%.c,$(COVB)/tests/%,$(TEST_C))
COV_FUZZ   := $(addprefix $(COVB)/fuzz/,fuzz_ops fuzz_mt fuzz_sizes)

$(COV_OBJS): $(COVB)/obj/%.o: alloc/src/%.c $(ALLOC_HDRS)
	@mkdir -p $(@D)
	clang $(COV_FLAGS) -c $< -o $@
$(COV_LIB): $(COV_OBJS)
	rm -f $@
	ar rcs $@ $^
$(COVB)/obj/cov_shim.o: scripts/cov_shim.c
	@mkdir -p $(@D)
	clang -std=gnu11 -O1 -g -pthread -Wall -Wextra -c $< -o $@
$(COV_BINS): $(COVB)/tests/%: tests/%.c $(COV_LIB) $(COVB)/obj/cov_shim.o $(TEST_HDRS)
	@mkdir -p $(@D)
	clang $(COV_FLAGS) -fvisibility=default -Ialloc/src -Itests $< $(COVB)/obj/cov_shim.o \
	  -o $@ $(COV_LIB) -pthread $(COV_WRAP)
$(COV_FUZZ): $(COVB)/fuzz/%: fuzz/%.c $(FZ_SRCS) $(FZ_HDRS) fuzz/standalone_main.c $(COV_LIB)
	@mkdir -p $(@D)
	clang $(FZ_CFLAGS) -O1 -fprofile-instr-generate -fcoverage-mapping $< $(FZ_SRCS) \
	  fuzz/standalone_main.c -o $@ $(COV_LIB)

.PHONY: test-coverage test-coverage-bins
test-coverage-bins: $(COV_BINS) $(COV_FUZZ)
test-coverage: test-coverage-bins
	@scripts/test-coverage.sh
