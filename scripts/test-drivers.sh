#!/usr/bin/env bash
# scripts/test-drivers.sh: make check's bookkeeping of drivers (run_driver
# and driver_done in scripts/lib-check.sh), against small drivers written
# here. A driver that dies part way must leave a "<name>/completed" FAIL
# row; one that reaches its end, whatever its checks found, must not; a
# driver that runs another must not be marked done by that one.
# Exit 0 when all hold; prints what did not.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. scripts/lib-check.sh
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export HAK_RESULTS=$d/r.tsv HAK_LOGDIR=$d/logs
results_init
bad=0

# drv <file> <body>: a driver script that records checks with lib-check.sh
drv() {
  printf '#!/usr/bin/env bash\nset -uo pipefail\ncd %q || exit 1\n. scripts/lib-check.sh\n%s\n' \
    "$PWD" "$2" >"$d/$1"
  chmod +x "$d/$1"
}
drv died 'record x died/one PASS 0.0; echo "$planted_unset_variable"; record x died/two PASS 0.0; driver_done'
drv failed 'record x failed/one FAIL 0.0; driver_done; exit 1'
drv passed 'record x passed/one PASS 0.0; driver_done; exit 0'
drv outer "$d/passed; record x outer/one PASS 0.0; exit 1"

# expect <name> <status wanted> <completed row wanted: 0 or 1>
expect() {
  local rc=0 rows
  run_driver "$1" "$d/$1" >>"$d/out" 2>&1 || rc=$?
  rows=$(grep -c "^$1/completed	check	FAIL" "$HAK_RESULTS")
  if [ "$rc" != "$2" ] || [ "$rows" != "$3" ]; then
    echo "driver $1: status $rc, $rows completed-FAIL row(s); wanted $2 and $3"
    bad=1
  else
    echo "driver $1: status $rc, $rows completed-FAIL row(s): as wanted"
  fi
}
expect died 1 1
expect failed 1 0
expect passed 0 0
expect outer 1 1
if grep -q "died/two" "$HAK_RESULTS"; then
  echo "the planted unset variable did not stop the driver"
  bad=1
fi
[ $bad = 0 ] || { cat "$d/out" "$HAK_RESULTS"; }
exit $bad
