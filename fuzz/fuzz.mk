# fuzz/fuzz.mk: libFuzzer drivers and their standalone replays (included by
# the top-level Makefile). See README.md "## Fuzzing".
#
#   make fuzz [FUZZER=fuzz_mt] [FUZZ_TIME=60] [JOBS=2] [FUZZ_BUILD=release]
#                            fuzz, merge new coverage into corpus/ (FUZZ_BUILD=release:
#                            the libFuzzer build of the release allocator)
#   make fuzz-replay         every corpus + regression input under ASan+UBSan (libFuzzer
#                            build), the release libFuzzer build, gcc release, debug, TSan
#                            (fuzz_mt) and valgrind memcheck
#   make fuzz-coverage       llvm-cov line/branch report of alloc/ reached by the corpus
#   make fuzz-bins           build every driver, every way
#   make CROSS=aarch64-linux-gnu- build/fuzz/release-aarch64/fuzz_sizes
#                            a standalone driver of a gcc configuration, cross-built

FUZZERS   := fuzz_ops fuzz_mt fuzz_sizes
FUZZER    ?= $(FUZZERS)
FUZZ_TIME ?= 60
JOBS      ?= 2
FUZZ_BUILD ?= asan
FZB       := build/fuzz
FZ_SRCS   := fuzz/ops.c
FZ_HDRS   := fuzz/ops.h fuzz/ops_fork.h fuzz/fail_mmap.h
FZ_CFLAGS := -std=gnu11 -g -pthread -Ialloc/include -Ialloc/src -Ifuzz -Wall -Wextra -Wno-unused-parameter

# libFuzzer + ASan + UBSan against an instrumented copy of the asan configuration
FZ_LF_FLAGS := -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined
# standalone (no libFuzzer) builds: <config> -> compiler and flags
FZ_SA_CONFIGS := release debug tsan valgrind
FZ_SA_CC_release  := gcc
FZ_SA_FL_release  := -O2
FZ_SA_CC_debug    := gcc
FZ_SA_FL_debug    := -O0
FZ_SA_CC_tsan     := clang
FZ_SA_FL_tsan     := -O1 -fsanitize=thread
FZ_SA_CC_valgrind := gcc
FZ_SA_FL_valgrind := -O1

# libFuzzer against the release allocator (build/fuzz/libfuzzer-release): alloc/src
# compiled with the release configuration's flags ($(RELEASE_FLAGS): -O2, no HAK_DEBUG,
# no sanitizer) plus libFuzzer's coverage instrumentation only, so that code that
# runs only where HAK_DEBUG is off is fuzzed too. The driver has UBSan but not ASan:
# hakmem's blocks lie in its own mmaps, which ASan sees as plain addressable memory
# (nothing poisons them without HAK_ASAN), so ASan would check only the driver's own
# bookkeeping, which the ASan build above checks already, at half the speed.
FZ_LFR_FLAGS := -O2 -fno-omit-frame-pointer -fsanitize=fuzzer,undefined \
                -fno-sanitize-recover=undefined

FZ_LF_BINS := $(addprefix $(FZB)/libfuzzer/,$(FUZZERS))
FZ_LFR_BINS := $(addprefix $(FZB)/libfuzzer-release/,$(FUZZERS))
FZ_SA_BINS := $(foreach c,$(FZ_SA_CONFIGS),$(addprefix $(FZB)/$(c)/,$(FUZZERS)))

.PHONY: fuzz fuzz-bins fuzz-libs fuzz-replay fuzz-coverage fuzz-clean fuzz-format

fuzz-libs:
	@for c in asan $(FZ_SA_CONFIGS); do $(MAKE) --no-print-directory CONFIG=$$c lib || exit 1; done

fuzz-bins: fuzz-libs
	@$(MAKE) --no-print-directory $(FZ_LF_BINS) $(FZ_LFR_BINS) $(FZ_SA_BINS)

# The allocator is built like build/asan (same flags) plus UBSan and libFuzzer's
# coverage instrumentation, so that the fuzzer is guided by alloc/ coverage.
FZ_LF_LIB  := $(FZB)/libfuzzer/libhakmem.a
FZ_LF_OBJS := $(patsubst alloc/src/%.c,$(FZB)/libfuzzer/obj/%.o,$(ALLOC_SRCS))
$(FZ_LF_OBJS): $(FZB)/libfuzzer/obj/%.o: alloc/src/%.c $(ALLOC_HDRS)
	@mkdir -p $(@D)
	clang $(BASEFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link -DHAK_ASAN=1 -DHAK_DEBUG=1 \
	  -DHAK_CONFIG_NAME='"asan"' -c $< -o $@
$(FZ_LF_LIB): $(FZ_LF_OBJS)
	rm -f $@
	ar rcs $@ $^

$(FZ_LF_BINS): $(FZB)/libfuzzer/%: fuzz/%.c $(FZ_SRCS) $(FZ_HDRS) $(FZ_LF_LIB)
	@mkdir -p $(@D)
	clang $(FZ_CFLAGS) $(FZ_LF_FLAGS) $< $(FZ_SRCS) -o $@ $(FZ_LF_LIB)

FZ_LFR_LIB  := $(FZB)/libfuzzer-release/libhakmem.a
FZ_LFR_OBJS := $(patsubst alloc/src/%.c,$(FZB)/libfuzzer-release/obj/%.o,$(ALLOC_SRCS))
$(FZ_LFR_OBJS): $(FZB)/libfuzzer-release/obj/%.o: alloc/src/%.c $(ALLOC_HDRS) Makefile
	@mkdir -p $(@D)
	clang $(BASEFLAGS) $(RELEASE_FLAGS) -fsanitize=fuzzer-no-link -DHAK_CONFIG_NAME='"release"' \
	  -c $< -o $@
$(FZ_LFR_LIB): $(FZ_LFR_OBJS)
	rm -f $@
	ar rcs $@ $^

$(FZ_LFR_BINS): $(FZB)/libfuzzer-release/%: fuzz/%.c $(FZ_SRCS) $(FZ_HDRS) $(FZ_LFR_LIB)
	@mkdir -p $(@D)
	clang $(FZ_CFLAGS) $(FZ_LFR_FLAGS) $< $(FZ_SRCS) -o $@ $(FZ_LFR_LIB)

# $(1): the configuration; $(2): the directory's suffix and $(3) the compiler's prefix
# of a cross build (below)
define FZ_SA_RULE
$(addprefix $(FZB)/$(1)$(2)/,$(FUZZERS)): $(FZB)/$(1)$(2)/%: fuzz/%.c $(FZ_SRCS) $(FZ_HDRS) fuzz/standalone_main.c build/$(1)$(2)/libhakmem.a
	@mkdir -p $$(@D)
	$(3)$(FZ_SA_CC_$(1)) $(FZ_CFLAGS) $(FZ_SA_FL_$(1)) $$< $(FZ_SRCS) fuzz/standalone_main.c -o $$@ build/$(1)$(2)/libhakmem.a
endef
$(foreach c,$(FZ_SA_CONFIGS),$(eval $(call FZ_SA_RULE,$(c),,)))
# With CROSS=aarch64-linux-gnu- (as the Makefile takes it): the gcc configurations'
# standalone drivers built with the cross compiler, into build/fuzz/<config>-<arch>,
# against build/<config>-<arch>/libhakmem.a, e.g. make CROSS=aarch64-linux-gnu-
# build/fuzz/release-aarch64/fuzz_sizes (make cross-check's fuzz_sizes digests: the same
# rule as the host's build/fuzz/release/fuzz_sizes).
ifneq ($(CROSS),)
$(foreach c,$(FZ_SA_CONFIGS),$(if $(filter gcc,$(FZ_SA_CC_$(c))),$(eval $(call FZ_SA_RULE,$(c),-$(firstword $(subst -, ,$(CROSS))),$(CROSS)))))
endif

fuzz: fuzz-bins
	@FUZZ_TIME=$(FUZZ_TIME) JOBS=$(JOBS) FUZZ_BUILD=$(FUZZ_BUILD) fuzz/run.sh $(FUZZER)

fuzz-replay: fuzz-bins
	@fuzz/replay.sh $(FUZZERS)

# ---- coverage: alloc/src built with clang source-based coverage
FZ_COV_OBJS := $(patsubst alloc/src/%.c,$(FZB)/cov/obj/%.o,$(ALLOC_SRCS))
$(FZ_COV_OBJS): $(FZB)/cov/obj/%.o: alloc/src/%.c $(ALLOC_HDRS)
	@mkdir -p $(@D)
	clang $(BASEFLAGS) -O0 -g -fprofile-instr-generate -fcoverage-mapping -c $< -o $@
$(addprefix $(FZB)/cov/,$(FUZZERS)): $(FZB)/cov/%: fuzz/%.c $(FZ_SRCS) $(FZ_HDRS) fuzz/standalone_main.c $(FZ_COV_OBJS)
	clang $(FZ_CFLAGS) -O0 -fprofile-instr-generate -fcoverage-mapping $< $(FZ_SRCS) \
	  fuzz/standalone_main.c $(FZ_COV_OBJS) -o $@

fuzz-coverage: $(addprefix $(FZB)/cov/,$(FUZZERS))
	@fuzz/coverage.sh $(FUZZERS)

fuzz-format:
	clang-format -i fuzz/*.c fuzz/*.h

fuzz-clean:
	rm -rf $(FZB)
