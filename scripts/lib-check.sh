# shellcheck shell=bash
# Shared helpers for scripts/check.sh, scripts/test-preload.sh and
# scripts/verify.sh. Source it from the repository root.
#
# Every check prints one line when it finishes:
#   PASS|FAIL|SKIP|HANG  <config>  <check>  <seconds>s
# keeps its full output in build/logs/<config>/<check>.log and appends
#   <check>\t<config>\t<result>\t<seconds>
# to build/check-results.tsv.

HAK_RESULTS=${HAK_RESULTS:-build/check-results.tsv}
HAK_LOGDIR=${HAK_LOGDIR:-build/logs}
HAK_TIMEOUT=${HAK_TIMEOUT:-300}
HAK_TAIL=${HAK_TAIL:-100}

results_init() {
  mkdir -p "$(dirname "$HAK_RESULTS")"
  printf 'check\tconfig\tresult\tseconds\n' >"$HAK_RESULTS"
}

results_ensure() {
  [ -s "$HAK_RESULTS" ] || results_init
}

now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# record <config> <check> <result> <seconds> [logfile]
record() {
  local cfg=$1 chk=$2 res=$3 secs=$4 log=${5:-}
  results_ensure
  printf '%s\t%s\t%s\t%s\n' "$chk" "$cfg" "$res" "$secs" >>"$HAK_RESULTS"
  printf '%s  %s  %s  %ss\n' "$res" "$cfg" "$chk" "$secs"
  if [ "$res" = FAIL ] || [ "$res" = HANG ]; then
    if [ -n "$log" ] && [ -f "$log" ]; then
      echo "----- last $HAK_TAIL lines of $log -----"
      tail -n "$HAK_TAIL" "$log"
      echo "----- end of $log -----"
    fi
  fi
}

# logfile <config> <check>: path of the log for a check (directory created).
logfile() {
  local d="$HAK_LOGDIR/$1"
  mkdir -p "$d"
  printf '%s/%s.log' "$d" "$(printf '%s' "$2" | tr '/ :' '___')"
}

# child_pids <pid>: the pids of pid's children (/proc/*/stat is
# "pid (comm) state ppid ..."; mawk-safe: no FILENAME, missing files skipped)
child_pids() {
  cat /proc/[0-9]*/stat 2>/dev/null |
    awk -v pp="$1" '{ pid = $1; sub(/^.*\) /, ""); if ($2 == pp) print pid }'
}

# hang_stacks <pid> <log>: every thread's stack (gdb -batch) of each process
# below pid, up to 6, leaving out shells, make, timeout and sleep, appended
# to the log. A check that hangs in CI is then diagnosed from its log, not
# by reproducing it (until 2026-11-28 a HANG left only the output so far).
hang_stacks() {
  local root=$1 log=$2 queue p c n=0
  if ! command -v gdb >/dev/null; then
    echo "# (no gdb: no stacks of the hung processes)" >>"$log"
    return
  fi
  queue=("$root")
  while [ ${#queue[@]} -gt 0 ] && [ $n -lt 6 ]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    for c in $(child_pids "$p"); do
      queue+=("$c")
      case $(cat "/proc/$c/comm" 2>/dev/null) in
        bash | sh | dash | make | timeout | sleep | "") continue ;;
      esac
      [ $n -lt 6 ] || break
      n=$((n + 1))
      {
        echo "# ----- stacks of hung process $c ($(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | cut -c1-200)) -----"
        timeout 30 gdb -batch -nx -q -ex "thread apply all bt 30" -p "$c" 2>&1 | grep -v '^\[\|^Using host\|^$'
      } >>"$log"
    done
  done
}

# hang_watch <pid> <seconds> <log>: hang_stacks of pid's processes if pid
# still runs after that many seconds. run_check ends it (SIGTERM) when the
# command has ended: a gdb already running finishes (its target is dying)
# and the watcher exits before run_check writes the result, so nothing is
# appended to the log after it (until 2026-11-28 the watcher died at once
# and its gdb went on writing stacks below the result:
# harness/hang-stacks-ends). The sleep is waited for with `wait`, which a
# trapped signal interrupts: no check waits for the end of a second. The
# time is read from the clock, not counted in sleeps: on a loaded machine
# each round took more than its second, and the stacks came late (up to
# 1.3 s late of 6 s under four busy loops, with a limit 2 s after them).
hang_watch() {
  local pid=$1 secs=$2 log=$3 start
  start=$(date +%s)
  trap 'exit 0' TERM
  while [ $(($(date +%s) - start)) -lt "$secs" ]; do
    sleep 1 &
    wait $!
    kill -0 "$pid" 2>/dev/null || return 0
  done
  echo "# still running after ${secs}s: stacks follow" >>"$log"
  hang_stacks "$pid" "$log"
}

# run_check <config> <check> <command...>
# Runs the command under `timeout $HAK_TIMEOUT` with stdin from /dev/null and
# all output in the log. Exit 0 = PASS, 77 = SKIP, timeout = HANG, else FAIL.
# Set RUN_TIMEOUT for a different limit. Returns 0 unless the check failed.
# Shortly before the limit the stacks of the command's processes go into the
# log (hang_watch: 30 s before, or at four fifths of a shorter limit).
run_check() {
  local cfg=$1 chk=$2
  shift 2
  local log t0 t1 rc=0 res secs lim=${RUN_TIMEOUT:-$HAK_TIMEOUT}
  log=$(logfile "$cfg" "$chk")
  {
    echo "# config: $cfg  check: $chk  timeout: ${lim}s"
    echo "# cwd: $PWD"
    echo "# command: $*"
    echo "# started: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  } >"$log"
  t0=$(now_s)
  # (the outer redirection catches the shell's own "Segmentation fault" notice)
  { timeout -k 10 "$lim" "$@" </dev/null >>"$log" 2>&1; } 2>>"$log" &
  local job=$! watch at
  at=$((${lim%.*} > 150 ? ${lim%.*} - 30 : ${lim%.*} * 4 / 5))
  [ "$at" -ge 1 ] || at=1
  hang_watch "$job" "$at" "$log" </dev/null >/dev/null 2>&1 &
  watch=$!
  # Ctrl-C (SIGINT) while we wait: the command runs in the background, in
  # timeout's own process group, which the terminal's SIGINT does not reach;
  # timeout is told to end it (TERM, which it passes on), then this shell
  # dies of the SIGINT as it would have (until 2026-11-28 the command ran on
  # to its time limit after the driver had gone: harness/interrupt)
  trap 'kill -TERM $(child_pids "$job") "$watch" 2>/dev/null; trap - INT; kill -INT $BASHPID' INT
  wait "$job" || rc=$?
  trap - INT
  kill "$watch" 2>/dev/null || true
  wait "$watch" 2>/dev/null || true
  t1=$(now_s)
  secs=$(elapsed "$t0" "$t1")
  if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then
    echo "# exit status: $rc (killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo "?"))" >>"$log"
  else
    echo "# exit status: $rc" >>"$log"
  fi
  case $rc in
    0) res=PASS ;;
    77) res=SKIP ;;
    124) res=HANG ;;
    137) # SIGKILL: from timeout's -k (a hang that ignored SIGTERM) or from elsewhere
      if awk -v s="$secs" -v l="$lim" 'BEGIN { exit !(s + 0 >= l + 0) }'; then res=HANG; else res=FAIL; fi ;;
    *) res=FAIL ;;
  esac
  if [ "$res" = HANG ]; then echo "# timed out after ${lim}s" >>"$log"; fi
  record "$cfg" "$chk" "$res" "$secs" "$log"
  [ "$res" != FAIL ] && [ "$res" != HANG ]
}

# totals_line: "N passed, M failed[, K skipped]" over the whole results file;
# sets HAK_FAILED to M.
totals_line() {
  local p f s
  read -r p f s < <(awk -F'\t' 'NR > 1 {
      if ($3 == "PASS") p++; else if ($3 == "SKIP") s++; else f++ }
      END { printf "%d %d %d\n", p, f, s }' "$HAK_RESULTS")
  HAK_FAILED=$f # read by the caller
  export HAK_FAILED
  if [ "$s" -gt 0 ]; then
    printf '%d passed, %d failed, %d skipped\n' "$p" "$f" "$s"
  else
    printf '%d passed, %d failed\n' "$p" "$f"
  fi
}

# Drivers: scripts that run and record many checks of their own
# (test-preload.sh, stress.sh run ...) and exit non-zero when one of them
# failed. One that dies part way (an unset variable under set -u, a missing
# tool) exits non-zero too, and the checks after that point are never
# recorded: a run that looks like "6 passed, 0 failed". So a driver's last
# step is driver_done, and run_driver records <name>/completed FAIL for a
# run that never got there.
#
# The mark file is this process's alone: sourcing this file takes it out of
# the environment, so a driver started by this one does not mark for it.
_hak_driver_mark=${HAK_DRIVER_MARK:-}
unset HAK_DRIVER_MARK

# driver_done: this driver got to its end (whatever its checks found).
driver_done() {
  [ -z "$_hak_driver_mark" ] || echo done >"$_hak_driver_mark"
}

# run_driver <name> <command...>: runs a driver; returns its status, or 1
# (with the FAIL row) when it did not reach driver_done.
run_driver() {
  local name=$1 mark rc=0
  shift
  mark=$(mktemp)
  HAK_DRIVER_MARK=$mark "$@" || rc=$?
  if [ ! -s "$mark" ]; then
    echo "check: $name exited with status $rc before its end"
    record check "$name/completed" FAIL 0.0
    rc=1
  fi
  rm -f "$mark"
  return $rc
}
