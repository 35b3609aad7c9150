# Benchmark suite rules (included by the top-level Makefile). The logic is in
# scripts/bench.sh, scripts/bench-report.py, scripts/bench-check.sh and
# scripts/bench-fastpath.sh; see README.md, "Benchmarks".
#
#   make bench [QUICK=1] [REPS=n] [ALLOCATORS="hakmem glibc ..."] [WORKLOADS="glob ..."]
#              every workload x allocator, interleaved; build/bench/results.{md,json,svg}
#   make bench-check [TOL=0.15] [STAT=median|best]
#                                 hakmem's ratios vs bench/baseline.json (QUICK run if no results)
#   make bench-baseline           this kind of machine's entry of bench/baseline.json
#                                 from build/bench/results.json
#   make bench-fastpath           callgrind instructions of a 64 B malloc+free pair
#   make bench-scaling [BENCH_THREADS="1 2 4 8 16"]
#                                 larson and xthread only, at more thread counts;
#                                 build/bench-scaling/results.{md,json}
#
# Programs: bench/<name>.c on the prefixed API as build/<cfg>/bench/<name>
# (libhakmem.a) and on plain malloc as build/<cfg>/bench/<name>.libc (for
# LD_PRELOAD of any allocator); bench/benchrun.c is the wait4() wrapper that
# measures wall time and peak RSS; bench/pageprobe.c measures what a page
# fault and a moved page cost on this machine (recorded with each run).

TOL ?= 0.15
STAT ?= median
BENCH_ENV = QUICK='$(QUICK)' REPS='$(REPS)' ALLOCATORS='$(ALLOCATORS)' WORKLOADS='$(WORKLOADS)'

BENCH_C    := $(filter-out bench/benchrun.c bench/pageprobe.c,$(sort $(wildcard bench/*.c)))
BENCH_BINS := $(patsubst bench/%.c,$(B)/bench/%.libc,$(BENCH_C)) $(B)/bench/benchrun \
              $(B)/bench/pageprobe

$(B)/bench:
	mkdir -p $@
$(B)/bench/benchrun: bench/benchrun.c | $(B)/bench
	$(CC) -std=gnu11 -O2 -Wall -Wextra $< -o $@
$(B)/bench/pageprobe: bench/pageprobe.c | $(B)/bench
	$(CC) -std=gnu11 -O2 -Wall -Wextra $< -o $@
$(B)/bench/%.libc: bench/%.c $(STRESS_HDRS) | $(B)/bench
	$(CC) $(CFLAGS_ALL) -fvisibility=default -Istress -DHAK_BENCH_LIBC=1 $< -o $@ $(LDFLAGS_ALL)
$(B)/bench/%: bench/%.c $(LIB_A) $(STRESS_HDRS) | $(B)/bench
	$(CC) $(CFLAGS_ALL) -fvisibility=default -Istress $< -o $@ $(LIB_A) $(LDFLAGS_ALL)

BENCH_THREADS ?= 1 2 4 8 16

.PHONY: bench bench-bins bench-check bench-baseline bench-fastpath bench-scaling
bench-bins: $(BENCH_BINS)

bench:
	@$(BENCH_ENV) scripts/bench.sh
bench-check:
	@TOL='$(TOL)' STAT='$(STAT)' scripts/bench-check.sh
bench-baseline:
	@scripts/bench-check.sh --write-baseline
bench-fastpath:
	@scripts/bench-fastpath.sh
bench-scaling:
	@$(BENCH_ENV) BENCH_THREADS='$(BENCH_THREADS)' BENCH_OUT='$(or $(BENCH_OUT),build/bench-scaling)' \
	  WORKLOADS='$(or $(WORKLOADS),larson/* xthread/*)' scripts/bench.sh
