#!/usr/bin/env bash
# scripts/rr-record.sh CMD...   (make rr-record CMD="..." [TRIES=n] [CHAOS=1])
#
# Runs CMD under `rr record` (with --chaos when CHAOS=1) up to TRIES times
# (default 10) until a run fails; keeps that recording (build/rr/fail-<date>-<try>,
# symlink build/rr/last-fail) and prints the `rr replay` command (`make rr-replay`
# opens it). Recordings of runs that passed are deleted.
#
# Before that it checks that rr can work here and says plainly why not:
#   rr missing, or hardware performance counters unusable (rr needs a counter
#   of retired conditional branches: no PMU in a VM/container, or
#   kernel.perf_event_paranoid > 1). The alternative that works everywhere is
#   the op trace: HAKMEM_TRACE=file with build/trace/libhakmem.so, then
#   build/repro/<config>/replay (README.md, "Crash reproduction").
#
# Exit status:
#   0  TRIES runs recorded, none failed
#   1  a run failed: its recording is kept (path and `rr replay` command printed)
#   2  usage error
#   3  rr is not installed
#   4  rr cannot record on this machine (performance counters unusable, or
#      `rr record true` fails): the reason is printed
#   --probe: only the checks (exit 0, 3 or 4)
# Environment: RR (rr binary, default rr), TRIES, CHAOS, RR_DIR (default build/rr
# of the repository), HAK_RR_ASSUME_COUNTERS=1 (test-only: skip the counter checks,
# for a stand-in rr). CMD runs in the caller's directory; a relative RR or RR_DIR
# is the caller's too (until 2026-11-28 all three were taken from the repository
# root: `./prog` from elsewhere was "not found", exit 127, reported as a failing
# run and its recording kept).
set -uo pipefail
. "$(dirname "$0")/lib-caller.sh" # caller, caller_path, caller_cmd
RR=$(caller_cmd "${RR:-rr}")
[ -n "${RR_DIR:-}" ] && RR_DIR=$(caller_path "$RR_DIR")
cd "$(dirname "$0")/.." || exit 2
TRIES=${TRIES:-10}
CHAOS=${CHAOS:-0}
RR_DIR=${RR_DIR:-$PWD/build/rr}
probe_only=0
if [ "${1:-}" = --probe ]; then
  probe_only=1
  shift
fi
if [ "$probe_only" = 0 ] && [ $# -eq 0 ]; then
  echo "usage: scripts/rr-record.sh [--probe] CMD...   (make rr-record CMD=\"...\" [TRIES=n] [CHAOS=1])" >&2
  exit 2
fi
alt="Alternative: record an op trace instead (works without rr or counters):
  make CONFIG=trace && make repro-bins
  HAKMEM_TRACE=/tmp/run.trace LD_PRELOAD=\$PWD/build/trace/libhakmem.so CMD...
  build/repro/release/replay /tmp/run.trace     (or asan, tsan, valgrind, debug)
See README.md, \"Crash reproduction\"."

mkdir -p "$RR_DIR"
counters=usable
if [ "${HAK_RR_ASSUME_COUNTERS:-0}" != 1 ]; then
  probe=$RR_DIR/perf_probe
  if [ ! -x "$probe" ] || [ repro/perf_probe.c -nt "$probe" ]; then
    rm -f "$probe"
    "${CC:-cc}" -O1 -o "$probe" repro/perf_probe.c ||
      echo "rr-record: cannot build the counter probe (${CC:-cc}); 'rr record true' decides"
  fi
  # no probe (no compiler) says nothing about the counters: unknown, and
  # rr's own test run below decides (until 2026-11-28 the shell's "not
  # found" was taken for the counters' reason: exit 4 where rr works)
  if [ -x "$probe" ]; then
    counters=$("$probe" 2>&1) || counters=${counters:-unusable: the probe did not run}
  else
    counters=unknown
  fi
fi
if ! command -v "$RR" >/dev/null 2>&1; then
  echo "rr-record: rr is not installed ('$RR' not found in PATH), so nothing can be recorded with rr."
  if [ "$counters" = usable ]; then
    echo "  (Debian/Ubuntu: apt-get install rr; this machine's performance counters are usable.)"
  elif [ "$counters" = unknown ]; then
    echo "  (Debian/Ubuntu: apt-get install rr; whether this machine's performance counters are"
    echo "  usable is not known: the probe could not be built.)"
  else
    echo "  Installing it would not help on this machine: hardware performance counters are"
    echo "  $counters"
  fi
  echo "$alt"
  exit 3
fi
if [ "${HAK_RR_ASSUME_COUNTERS:-0}" != 1 ]; then
  why=$counters
  if [ "$counters" != usable ] && [ "$counters" != unknown ]; then
    echo "rr-record: rr is installed but cannot record on this machine: hardware performance"
    echo "  counters are $why"
    echo "  rr replays a run by counting retired conditional branches; without that counter it"
    echo "  cannot record at all."
    echo "$alt"
    exit 4
  fi
  rm -rf "$RR_DIR/probe-record" # left by an interrupted probe: rr record -o wants a new directory
  out=$("$RR" record -o "$RR_DIR/probe-record" true 2>&1)
  rc=$?
  rm -rf "$RR_DIR/probe-record"
  if [ $rc -ne 0 ]; then
    echo "rr-record: 'rr record true' fails on this machine, so rr cannot be used here:"
    printf '%s\n' "$out" | sed 's/^/  | /' | tail -n 15
    echo "$alt"
    exit 4
  fi
fi
if [ "$probe_only" = 1 ]; then
  echo "rr-record: rr and the performance counters are usable"
  exit 0
fi

chaos=()
[ "$CHAOS" = 1 ] && chaos=(--chaos)
# with the pid: a second run in the same second must not take (and first
# delete) the directory of the first one's kept failure (until 2026-11-28)
stamp=$(date -u +%Y%m%dT%H%M%S)-$$
for ((i = 1; i <= TRIES; i++)); do
  dir=$RR_DIR/fail-$stamp-$i
  rm -rf "$dir"
  echo "rr-record: try $i/$TRIES: $RR record ${chaos[*]} -o $dir -- $*"
  (cd "$caller" && exec "$RR" record "${chaos[@]}" -o "$dir" -- "$@")
  rc=$?
  if [ $rc -ne 0 ]; then
    ln -sfn "$(basename "$dir")" "$RR_DIR/last-fail"
    echo "rr-record: try $i FAILED (exit status $rc); recording kept in $dir"
    echo "  replay it:  $RR replay $dir     (or: make rr-replay)"
    exit 1
  fi
  rm -rf "$dir"
done
echo "rr-record: $TRIES run(s) recorded, none failed (recordings deleted)"
exit 0
