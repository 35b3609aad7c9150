# Stress suite rules (included by the top-level Makefile). The logic is in
# scripts/stress.sh; these targets pass THREADS, CHUNKS and DURATION on.
#
#   make tsan-stress THREADS=4 CHUNKS=1024 [DURATION=s]   TSan, prefixed API
#   make asan-stress | ubsan-stress | valgrind-stress      (valgrind: reduced sizes)
#   make stress                 release: prefixed API and LD_PRELOAD of libhakmem.so
#   make stress-matrix          larson: threads x chunks x size ranges, release and tsan
#   make larson-scaling         hakmem vs glibc Larson throughput at 1, 2, 4 threads
#   make stress-watchdog-test   the watchdog must fire (exit 3) and print stacks

THREADS  ?= 4
CHUNKS   ?= 1024
DURATION ?= 3
STRESS_ENV = THREADS=$(THREADS) CHUNKS=$(CHUNKS) DURATION=$(DURATION)

.PHONY: tsan-stress asan-stress ubsan-stress valgrind-stress stress stress-matrix \
	larson-scaling stress-watchdog-test

tsan-stress:
	@$(STRESS_ENV) scripts/stress.sh run tsan
asan-stress:
	@$(STRESS_ENV) scripts/stress.sh run asan
ubsan-stress:
	@$(STRESS_ENV) scripts/stress.sh run ubsan
valgrind-stress:
	@$(STRESS_ENV) scripts/stress.sh run valgrind
stress:
	@$(STRESS_ENV) scripts/stress.sh run release prefixed preload
stress-matrix:
	@scripts/stress.sh matrix
larson-scaling:
	@$(STRESS_ENV) scripts/stress.sh larson-scaling
stress-watchdog-test:
	@scripts/stress.sh watchdog-test
