#!/usr/bin/env bash
# scripts/rr-replay.sh [rr replay options]   (make rr-replay)
# Opens the last failing recording kept by scripts/rr-record.sh
# (build/rr/last-fail) in `rr replay`. Exit 2 when there is none.
# RR and RR_DIR as scripts/rr-record.sh takes them (relative: the caller's).
set -uo pipefail
. "$(dirname "$0")/lib-caller.sh" # caller_path, caller_cmd
RR=$(caller_cmd "${RR:-rr}")
[ -n "${RR_DIR:-}" ] && RR_DIR=$(caller_path "$RR_DIR")
cd "$(dirname "$0")/.." || exit 2
RR_DIR=${RR_DIR:-$PWD/build/rr}
if [ ! -e "$RR_DIR/last-fail" ]; then
  echo "rr-replay: no failing recording in $RR_DIR (run make rr-record CMD=... first)" >&2
  exit 2
fi
dir=$RR_DIR/$(readlink "$RR_DIR/last-fail")
echo "rr-replay: $RR replay $dir"
exec "$RR" replay "$dir" "$@"
