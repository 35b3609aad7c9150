# hakmem top-level Makefile.
#
#   make                      build/release/libhakmem.{so,a}
#   make CONFIG=<name>        build/<name>/...  (release debug asan tsan ubsan valgrind trace)
#   make check                every configuration, every test; ends with "N passed, M failed"
#   make cross-check          aarch64 build (CROSS=aarch64-linux-gnu-), tests under qemu-aarch64
#   make verify               the main job: build everything, run the whole suite, summary table
#   make install PREFIX=...   library, header, pkg-config file
#
# One source tree, several configurations. Every configuration builds
# libhakmem.a (prefixed hak_* API only, never interposes libc). Configurations
# that may interpose also build libhakmem.so, which exports malloc & co.

CONFIG  ?= release
CONFIGS := release debug asan tsan ubsan valgrind trace
PREFIX  ?= /usr/local
VERSION := 0.1.0

ifeq ($(filter $(CONFIG),$(CONFIGS)),)
$(error unknown CONFIG '$(CONFIG)'; one of: $(CONFIGS))
endif

# CROSS=aarch64-linux-gnu- (a GNU toolchain prefix): the gcc configurations
# built with that cross compiler, into build/<config>-<arch> (make cross-check
# runs the tests under qemu-user).
CROSS ?=
ifeq ($(CROSS),)
  B := build/$(CONFIG)
else
  B := build/$(CONFIG)-$(firstword $(subst -, ,$(CROSS)))
endif

WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
BASEFLAGS := -std=gnu11 -fPIC -pthread -fvisibility=hidden -Ialloc/include $(WARN)
CXXBASE   := -std=gnu++17 -fPIC -pthread -Ialloc/include -Wall -Wextra

# Per-configuration compiler and flags. SO=1 builds libhakmem.so.
# (the release flags are named: fuzz/fuzz.mk builds the allocator with them too)
RELEASE_FLAGS := -O2 -g -DNDEBUG -fno-plt -ftls-model=initial-exec
ifeq ($(CONFIG),release)
  CC_CFG := gcc
  CXX_CFG := g++
  CFG_FLAGS := $(RELEASE_FLAGS)
  SO := 1
endif
ifeq ($(CONFIG),debug)
  CC_CFG := gcc
  CXX_CFG := g++
  CFG_FLAGS := -O0 -g3 -DHAK_DEBUG=1
  SO := 1
endif
ifeq ($(CONFIG),asan)
  CC_CFG := clang
  CXX_CFG := clang++
  CFG_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address -DHAK_ASAN=1 -DHAK_DEBUG=1
  SO := 0
endif
ifeq ($(CONFIG),tsan)
  CC_CFG := clang
  CXX_CFG := clang++
  CFG_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread -DHAK_TSAN=1
  SO := 0
endif
ifeq ($(CONFIG),ubsan)
  CC_CFG := clang
  CXX_CFG := clang++
  CFG_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=undefined -fno-sanitize-recover=all -DHAK_DEBUG=1
  SO := 0
endif
ifeq ($(CONFIG),valgrind)
  CC_CFG := gcc
  CXX_CFG := g++
  CFG_FLAGS := -O1 -g -DHAK_VALGRIND=1
  SO := 1
endif
ifeq ($(CONFIG),trace)
  CC_CFG := gcc
  CXX_CFG := g++
  CFG_FLAGS := -O2 -g -DHAK_TRACE=1
  SO := 1
endif

ifneq ($(CROSS),)
ifeq ($(filter gcc,$(CC_CFG)),)
$(error CROSS builds the gcc configurations only (release debug valgrind trace), not '$(CONFIG)')
endif
endif
CC  := $(CROSS)$(CC_CFG)
CXX := $(CROSS)$(CXX_CFG)
AR  := $(CROSS)ar
CFLAGS_ALL   := $(BASEFLAGS) $(CFG_FLAGS) -DHAK_CONFIG_NAME='"$(CONFIG)"' $(EXTRA_CFLAGS)
CXXFLAGS_ALL := $(CXXBASE) $(filter-out -DHAK_%,$(CFG_FLAGS)) $(EXTRA_CFLAGS)
LDFLAGS_ALL  := -pthread $(filter -fsanitize=%,$(CFG_FLAGS))

ALLOC_SRCS := $(sort $(wildcard alloc/src/*.c))
ALLOC_HDRS := $(wildcard alloc/src/*.h) alloc/include/hakmem.h
ALLOC_OBJS := $(patsubst alloc/src/%.c,$(B)/obj/%.o,$(ALLOC_SRCS))
# The interposing build of the API file exports malloc & co as aliases.
INTERPOSE_OBJ := $(B)/obj/api_interpose.o

LIB_A  := $(B)/libhakmem.a
LIB_SO := $(B)/libhakmem.so

TARGETS := $(LIB_A)
ifeq ($(SO),1)
  TARGETS += $(LIB_SO)
endif

.PHONY: all lib tests check verify cross-check install clean format tidy bench-random-mixed stress-bins
all: lib
lib: $(TARGETS)

$(B)/obj/%.o: alloc/src/%.c $(ALLOC_HDRS) | $(B)/obj
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(INTERPOSE_OBJ): alloc/src/api.c $(ALLOC_HDRS) | $(B)/obj
	$(CC) $(CFLAGS_ALL) -DHAK_INTERPOSE=1 -c $< -o $@

$(LIB_A): $(ALLOC_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

# (relinked when this file changes: its link flags are part of the library)
$(LIB_SO): $(filter-out $(B)/obj/api.o,$(ALLOC_OBJS)) $(INTERPOSE_OBJ) Makefile
	$(CC) -shared -o $@ $(filter %.o,$^) $(LDFLAGS_ALL) -Wl,-soname,libhakmem.so -Wl,-z,nodelete -Wl,-z,initfirst -Wl,-Bsymbolic-functions

$(B)/obj $(B)/tests $(B)/stress:
	mkdir -p $@

# ---- tests: every tests/test_*.c (and .cpp) is one program per behaviour,
# linked statically against the configuration's libhakmem.a.
TEST_C   := $(sort $(wildcard tests/test_*.c))
TEST_CXX := $(sort $(wildcard tests/test_*.cpp))
TEST_BINS := $(patsubst tests/%.c,$(B)/tests/%,$(TEST_C)) $(patsubst tests/%.cpp,$(B)/tests/%,$(TEST_CXX))
TEST_HDRS := $(wildcard tests/*.h) fuzz/fail_mmap.h

$(B)/tests/%: tests/%.c $(LIB_A) $(TEST_HDRS) | $(B)/tests
	$(CC) $(CFLAGS_ALL) -fvisibility=default -Ialloc/src -Itests $< -o $@ $(LIB_A) $(LDFLAGS_ALL)

$(B)/tests/%: tests/%.cpp $(TEST_HDRS) | $(B)/tests
	$(CXX) $(CXXFLAGS_ALL) -Itests $< -o $@ $(LDFLAGS_ALL)

tests: lib $(TEST_BINS)

# ---- stress programs (prefixed API; also runnable with LD_PRELOAD).
STRESS_C := $(sort $(wildcard stress/*.c))
STRESS_BINS := $(patsubst stress/%.c,$(B)/stress/%,$(STRESS_C))
STRESS_HDRS := $(wildcard stress/*.h)
$(B)/stress/%: stress/%.c $(LIB_A) $(STRESS_HDRS) | $(B)/stress
	$(CC) $(CFLAGS_ALL) -fvisibility=default -Istress $< -o $@ $(LIB_A) $(LDFLAGS_ALL)
# The same program against the system allocator (hak_* mapped to libc).
$(B)/stress/%.libc: stress/%.c $(STRESS_HDRS) | $(B)/stress
	$(CC) $(CFLAGS_ALL) -fvisibility=default -Istress -DHAK_BENCH_LIBC=1 $< -o $@ $(LDFLAGS_ALL)
stress-bins: lib $(STRESS_BINS)

# ---- the suites
check:
	@scripts/check.sh

verify:
	@scripts/verify.sh

# aarch64: built with CROSS=aarch64-linux-gnu-, tests run under qemu-aarch64
# (CROSS_SET=full: every C test, release and debug; skipped, said so, without
# the cross toolchain or qemu)
cross-check:
	@scripts/cross-check.sh

bench-random-mixed:
	@scripts/bench-random-mixed.sh

install: lib
	@test -f $(LIB_SO) || { echo "make install needs a configuration that builds libhakmem.so (release, debug, valgrind, trace)"; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/libhakmem.a
	install -m 0755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libhakmem.so
	install -m 0644 alloc/include/hakmem.h $(DESTDIR)$(PREFIX)/include/hakmem.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' alloc/hakmem.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hakmem.pc

# The programs of tests/preload/, for scripts/test-preload.sh and the
# mutants' preload checks (one build, one set of flags; plain gcc, the
# preloaded library is the allocator). atfork_ctor and tsd_exit are linked
# to a library built from their own source with -D<NAME>_LIB.
PRELOAD_B := build/release/preload
PRELOAD_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror -pthread
$(PRELOAD_B)/api_all $(PRELOAD_B)/spawn_paths: $(PRELOAD_B)/%: tests/preload/%.c
	@mkdir -p $(@D)
	gcc $(PRELOAD_CFLAGS) $< -o $@ -ldl
$(PRELOAD_B)/lib%.so: tests/preload/%.c
	@mkdir -p $(@D)
	gcc $(PRELOAD_CFLAGS) -shared -fPIC -D$(shell echo '$*' | tr a-z A-Z)_LIB $< -o $@
$(PRELOAD_B)/atfork_ctor $(PRELOAD_B)/tsd_exit: $(PRELOAD_B)/%: tests/preload/%.c $(PRELOAD_B)/lib%.so
	gcc $(PRELOAD_CFLAGS) $< -o $@ -Wl,--no-as-needed -L$(@D) -l$* \
	  -Wl,-rpath,$(abspath $(@D)) -ldl
# cxx_mix (C++) and the library it dlopens, built from the same file with
# -DCXX_MIX_LIB (not linked: its path is an argument).
PRELOAD_CXXFLAGS := -std=gnu++17 -O1 -g -Wall -Wextra -Werror -pthread
$(PRELOAD_B)/libcxx_mix.so: tests/preload/cxx_mix.cpp
	@mkdir -p $(@D)
	g++ $(PRELOAD_CXXFLAGS) -shared -fPIC -DCXX_MIX_LIB $< -o $@
$(PRELOAD_B)/cxx_mix: tests/preload/cxx_mix.cpp $(PRELOAD_B)/libcxx_mix.so
	g++ $(PRELOAD_CXXFLAGS) $< -o $@ -ldl
# Copies of the library with DF_1_INITFIRST cleared
# (scripts/elf-clear-initfirst.py), so that the loader runs hakmem's
# constructor after the programs' own libraries' (atfork_ctor-no-initfirst;
# tsd_exit-high-key has its own copy). NO_INITFIRST_FROM=FILE copies another library
# (test-preload.sh's HAK_PRELOAD_SO); made at every make of them, as the
# file copied may be another than last time (a copy takes milliseconds).
NO_INITFIRST_FROM := build/release/libhakmem.so
.PHONY: FORCE
$(PRELOAD_B)/libhakmem-no-initfirst.so $(PRELOAD_B)/libhakmem-no-initfirst-tsd.so: $(NO_INITFIRST_FROM) FORCE
	@mkdir -p $(@D)
	python3 scripts/elf-clear-initfirst.py $< $@

format:
	clang-format -i alloc/src/*.c alloc/src/*.h alloc/include/*.h tests/*.c tests/*.h tests/*.cpp \
	  tests/preload/*.c tests/preload/*.cpp stress/*.c stress/*.h

tidy:
	clang-tidy alloc/src/*.c -- $(BASEFLAGS) -Ialloc/src
	cppcheck --quiet --enable=warning,performance,portability --inline-suppr --error-exitcode=1 \
	  -Ialloc/include -Ialloc/src alloc/src

clean:
	rm -rf build

# Suites of later issues keep their rules next to their sources.
-include $(wildcard fuzz/fuzz.mk stress/stress.mk repro/repro.mk bench/bench.mk scripts/mutants/mutants.mk scripts/coverage.mk)
