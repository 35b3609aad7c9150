# shellcheck shell=bash
# scripts/lib-caller.sh: sourced by rr-record.sh, rr-replay.sh and triage.sh
# before they cd to the repository root, so that the paths their caller gave
# (arguments, environment) stay the caller's (until 2026-11-28 they were
# taken from the repository root; then each script had its own copy of
# these rules).
caller=$PWD
# a file: relative to the caller's directory
caller_path() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$caller" "$1" ;; esac; }
# a command: a name without a slash is looked up in PATH, one with a slash
# is a file
caller_cmd() { case $1 in */*) caller_path "$1" ;; *) printf '%s' "$1" ;; esac; }
