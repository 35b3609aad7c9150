# repro/repro.mk: crash reproduction tools (included by the top-level
# Makefile). See README.md "## Crash reproduction" and repro/README.md.
#
#   make repro-bins        build/repro/<cfg>/replay for release debug asan tsan valgrind,
#                          build/repro/tracecat, build/repro/trace2fuzz, build/trace/libhakmem.so
#   make repro-plant-bins  the test-only planted-bug builds (build/repro/plant/...)
#   make repro-test        the end-to-end test (scripts/check.d/30-repro.sh runs it in make check)
#   make rr-record CMD="..." [TRIES=n] [CHAOS=1]   /   make rr-replay
#   make triage INPUT=<crash input or trace> [DRIVER=fuzz_mt]

RPB := build/repro
REPRO_CONFIGS := release debug asan tsan valgrind
RP_CFLAGS := -std=gnu11 -g -pthread -Ialloc/include -Ialloc/src -Ifuzz -Irepro -Wall -Wextra \
             -Wno-unused-parameter
RP_CC_release  := gcc
RP_FL_release  := -O2
RP_CC_debug    := gcc
RP_FL_debug    := -O0
RP_CC_asan     := clang
RP_FL_asan     := -O1 -fno-omit-frame-pointer -fsanitize=address
RP_CC_tsan     := clang
RP_FL_tsan     := -O1 -fsanitize=thread
RP_CC_valgrind := gcc
RP_FL_valgrind := -O1
RP_HDRS := repro/trace_read.h alloc/src/trace.h fuzz/ops.h alloc/include/hakmem.h
RP_OPS  := fuzz/ops.c $(wildcard fuzz/ops_*.h) fuzz/fail_mmap.h

.PHONY: repro-bins repro-libs repro-plant-bins repro-test rr-record rr-replay triage

repro-libs:
	@for c in trace $(REPRO_CONFIGS); do $(MAKE) --no-print-directory CONFIG=$$c lib || exit 1; done

repro-bins: repro-libs
	@$(MAKE) --no-print-directory $(foreach c,$(REPRO_CONFIGS),$(RPB)/$(c)/replay) \
	  $(RPB)/tracecat $(RPB)/trace2fuzz $(RPB)/trace_edges

define RP_RULE
$(RPB)/$(1)/replay: repro/replay.c $(RP_OPS) $(RP_HDRS) build/$(1)/libhakmem.a
	@mkdir -p $$(@D)
	$(RP_CC_$(1)) $(RP_CFLAGS) $(RP_FL_$(1)) -DREPLAY_CONFIG='"$(1)"' repro/replay.c fuzz/ops.c \
	  -o $$@ build/$(1)/libhakmem.a
endef
$(foreach c,$(REPRO_CONFIGS),$(eval $(call RP_RULE,$(c))))

$(RPB)/tracecat: repro/tracecat.c $(RP_HDRS)
	@mkdir -p $(@D)
	gcc $(RP_CFLAGS) -O2 $< -o $@

# plain libc programs for the trace-edges step (repro/tests/steps.sh)
$(RPB)/trace_edges: repro/tests/trace_edges.c
	@mkdir -p $(@D)
	gcc -std=gnu11 -O1 -g -pthread -Wall -Wextra $< -o $@ -ldl

# trace2fuzz decodes what it wrote with the interpreter's decoder (self-check)
$(RPB)/trace2fuzz: repro/trace2fuzz.c $(RP_OPS) $(RP_HDRS) build/release/libhakmem.a
	@mkdir -p $(@D)
	gcc $(RP_CFLAGS) -O2 repro/trace2fuzz.c fuzz/ops.c -o $@ build/release/libhakmem.a

# ---- test-only planted bug (never in a normal build): the PLANT_N-th free of
# a small block owned by another live heap aborts ("hakmem: planted crash").
# Built with the trace hooks (HAK_TRACE=1, which is where the plant sits); the
# recorder stays off unless HAKMEM_TRACE is set.
PLANT_N ?= 16
RPP := $(RPB)/plant
PLANT_DEF := -DHAK_TRACE=1 -DHAK_PLANT_REMOTE_FREE=$(PLANT_N)
PLANT_BASE := -std=gnu11 -fPIC -pthread -fvisibility=hidden -Ialloc/include -Wall -Wno-unused-parameter
# <cfg> -> compiler, flags (as the real configuration) for the planted library
PL_CC_trace   := gcc
PL_FL_trace   := -O2 -g
PL_CC_release := gcc
PL_FL_release := -O2 -g -DNDEBUG
PL_CC_asan    := clang
PL_FL_asan    := -O1 -g -fno-omit-frame-pointer -fsanitize=address -DHAK_ASAN=1 -DHAK_DEBUG=1
PL_CC_tsan    := clang
PL_FL_tsan    := -O1 -g -fno-omit-frame-pointer -fsanitize=thread -DHAK_TSAN=1
PL_CC_libfuzzer := clang
PL_FL_libfuzzer := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
  -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link -DHAK_ASAN=1 -DHAK_DEBUG=1
PLANT_CONFIGS := trace release asan tsan libfuzzer

define PL_LIB_RULE
$(RPP)/$(1)/obj/%.o: alloc/src/%.c $(ALLOC_HDRS)
	@mkdir -p $$(@D)
	$(PL_CC_$(1)) $(PLANT_BASE) $(PL_FL_$(1)) $(PLANT_DEF) -DHAK_CONFIG_NAME='"$(1)+plant"' -c $$< -o $$@
$(RPP)/$(1)/obj/api_interpose.o: alloc/src/api.c $(ALLOC_HDRS)
	@mkdir -p $$(@D)
	$(PL_CC_$(1)) $(PLANT_BASE) $(PL_FL_$(1)) $(PLANT_DEF) -DHAK_CONFIG_NAME='"$(1)+plant"' \
	  -DHAK_INTERPOSE=1 -c $$< -o $$@
$(RPP)/$(1)/libhakmem.a: $(patsubst alloc/src/%.c,$(RPP)/$(1)/obj/%.o,$(ALLOC_SRCS))
	rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach c,$(PLANT_CONFIGS),$(eval $(call PL_LIB_RULE,$(c))))

$(RPP)/trace/libhakmem.so: $(patsubst alloc/src/%.c,$(RPP)/trace/obj/%.o,$(filter-out alloc/src/api.c,$(ALLOC_SRCS))) $(RPP)/trace/obj/api_interpose.o
	gcc -shared -o $@ $^ -pthread -Wl,-soname,libhakmem.so -Wl,-z,nodelete -Wl,-Bsymbolic-functions

define PL_REPLAY_RULE
$(RPP)/$(1)/replay: repro/replay.c $(RP_OPS) $(RP_HDRS) $(RPP)/$(1)/libhakmem.a
	$(RP_CC_$(1)) $(RP_CFLAGS) $(RP_FL_$(1)) -DREPLAY_CONFIG='"$(1)+plant"' repro/replay.c fuzz/ops.c \
	  -o $$@ $(RPP)/$(1)/libhakmem.a
endef
$(foreach c,release asan tsan,$(eval $(call PL_REPLAY_RULE,$(c))))

$(RPP)/libfuzzer/fuzz_mt $(RPP)/libfuzzer/fuzz_ops: $(RPP)/libfuzzer/%: fuzz/%.c $(RP_OPS) fuzz/ops.h $(RPP)/libfuzzer/libhakmem.a
	clang $(FZ_CFLAGS) $(FZ_LF_FLAGS) $< fuzz/ops.c -o $@ $(RPP)/libfuzzer/libhakmem.a
$(RPP)/release/fuzz_mt $(RPP)/release/fuzz_ops: $(RPP)/release/%: fuzz/%.c $(RP_OPS) fuzz/ops.h fuzz/standalone_main.c $(RPP)/release/libhakmem.a
	gcc $(FZ_CFLAGS) -O2 $< fuzz/ops.c fuzz/standalone_main.c -o $@ $(RPP)/release/libhakmem.a

repro-plant-bins:
	@$(MAKE) --no-print-directory $(RPP)/trace/libhakmem.so $(foreach c,release asan tsan,$(RPP)/$(c)/replay) \
	  $(RPP)/libfuzzer/fuzz_mt $(RPP)/libfuzzer/fuzz_ops $(RPP)/release/fuzz_mt $(RPP)/release/fuzz_ops

repro-test: repro-bins repro-plant-bins
	@bash repro/tests/e2e.sh

# ---- rr and triage
rr-record:
	@TRIES=$(or $(TRIES),10) CHAOS=$(or $(CHAOS),0) scripts/rr-record.sh $(CMD)
rr-replay:
	@scripts/rr-replay.sh
triage:
	@scripts/triage.sh $(if $(DRIVER),--driver $(DRIVER)) $(INPUT)
