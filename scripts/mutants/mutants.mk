# scripts/mutants/mutants.mk: mutation testing and the nightly campaign
# (included by the top-level Makefile). See README.md "## Mutation testing and nightly".
#
#   make mutants [BUDGET=s] [MUTANTS=a,b] [JOBS=n] [TOTAL_BUDGET=s]
#        every mutant of scripts/mutants/catalog.txt in its own copy of the tree,
#        the fixed selection of the suite until the first failure; score table in
#        build/mutants/results.{md,json}. BUDGET: seconds per mutant (900).
#   make mutants-list          the catalog
#   make mutants-check-apply   every mutant still applies to the current alloc/
#   make nightly [BUDGET=minutes]  scripts/nightly.sh: fuzz, stress matrix, valgrind
#        replay, bench-check, mutants; build/nightly/report.{md,json}

.PHONY: mutants mutants-list mutants-check-apply nightly

# JOBS here: mutants run in parallel (default: nproc/2, at least 1). Only
# passed on when given on the command line (fuzz.mk gives JOBS a default).
MUTANTS_JOBS_ARG = $(if $(filter command line environment,$(origin JOBS)),--jobs $(JOBS))

mutants:
	@python3 scripts/mutants/run.py $(MUTANTS_JOBS_ARG) $(if $(BUDGET),--budget $(BUDGET)) \
	  $(if $(TOTAL_BUDGET),--total-budget $(TOTAL_BUDGET)) $(if $(MUTANTS),--mutants $(MUTANTS))

mutants-list:
	@python3 scripts/mutants/run.py --list

mutants-check-apply:
	@python3 scripts/mutants/run.py --check-apply

nightly:
	@$(if $(BUDGET),BUDGET=$(BUDGET)) scripts/nightly.sh
