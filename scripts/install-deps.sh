#!/usr/bin/env bash
# Installs (idempotently) every Debian package hakmem's build, tests,
# sanitizer configurations and benchmarks need. Safe to run repeatedly:
# packages already installed are skipped without touching apt.
set -euo pipefail

PKGS=(
  gcc g++ make
  clang clang-14 libclang-rt-14-dev
  llvm-14          # llvm-symbolizer for sanitizer stack traces
  valgrind gdb git python3 pkg-config
  clang-format clang-tidy cppcheck
  hyperfine
  gnuplot-nox      # make bench: the chart (build/bench/results.svg, .png)
  rr               # make rr-record (needs hardware perf counters; says so when absent)
  libmimalloc-dev libjemalloc-dev libtcmalloc-minimal4   # comparison allocators
  procps coreutils
  zip unzip        # .clusterfuzzlite/build.sh seed corpus archives
  xz-utils         # scripts/test-preload.sh: xz -T2 under the preload
  # make cross-check (aarch64 build, tests under qemu-user): 56 MB to
  # download, 15 s to install here, 250 MiB on disk
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for p in "${PKGS[@]}"; do
  installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -qq -o=Dpkg::Use-Pty=0 --no-install-recommends)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "install-deps: installing ${missing[*]}"
# Try without refreshing the package lists first (fast, offline-friendly);
# refresh once and retry if that fails (stale or empty lists).
if ! $SUDO apt-get install "${APT_OPTS[@]}" "${missing[@]}" >"$log" 2>&1; then
  echo "install-deps: install failed with current package lists; running apt-get update"
  if ! $SUDO apt-get update -qq >>"$log" 2>&1; then
    echo "install-deps: apt-get update failed" >&2
    tail -n 20 "$log" >&2
  fi
  # Install one by one so that one unavailable package does not block the rest.
  for p in "${missing[@]}"; do
    installed "$p" && continue
    $SUDO apt-get install "${APT_OPTS[@]}" "$p" >>"$log" 2>&1 || true
  done
fi

still=()
for p in "${missing[@]}"; do
  installed "$p" || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
  echo "install-deps: could not install: ${still[*]}" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
echo "install-deps: done"
