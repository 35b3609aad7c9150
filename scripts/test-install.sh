#!/usr/bin/env bash
# scripts/test-install.sh: the README's "Installed, with pkg-config" flow,
# from `make install` to a program linked the three documented ways (make
# check: release/install; its failure lines name the parts, install/*).
# Into a temporary prefix; DESTDIR staging too.
#   install/layout    make install PREFIX=<tmp> puts lib/libhakmem.{a,so},
#                     include/hakmem.h and lib/pkgconfig/hakmem.pc there;
#                     with DESTDIR=<stage> the files land under the stage
#                     and the .pc still names PREFIX
#   install/pkgconfig pkg-config --cflags --libs hakmem: a C program (and a
#                     C++ one, the header's extern "C") links libhakmem.so
#                     and its malloc is hakmem's (hak_usable_size of a
#                     malloc'd block, which aborts on a foreign pointer)
#   install/static    -l:libhakmem.a -pthread: the hak_* API without the
#                     shared library, malloc left to the C library
# Exit 0 when all pass; each failure is one line naming its part.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
CONFIG=${CONFIG:-release}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fails=0
fail() {
  echo "FAIL $1: $2"
  fails=$((fails + 1))
}

pfx=$d/prefix
make -s CONFIG="$CONFIG" install PREFIX="$pfx" >"$d/install.log" 2>&1 ||
  { cat "$d/install.log"; echo "FAIL install/layout: make install exited non-zero"; exit 1; }
for f in lib/libhakmem.a lib/libhakmem.so include/hakmem.h lib/pkgconfig/hakmem.pc; do
  [ -s "$pfx/$f" ] || fail install/layout "$f not installed under PREFIX"
done
make -s CONFIG="$CONFIG" install PREFIX=/opt/hakmem-test DESTDIR="$d/stage" >"$d/stage.log" 2>&1 ||
  { cat "$d/stage.log"; fail install/layout "make install with DESTDIR exited non-zero"; }
[ -s "$d/stage/opt/hakmem-test/lib/libhakmem.so" ] || fail install/layout "DESTDIR: libhakmem.so not under the stage"
grep -qx 'prefix=/opt/hakmem-test' "$d/stage/opt/hakmem-test/lib/pkgconfig/hakmem.pc" 2>/dev/null ||
  fail install/layout "DESTDIR: the .pc's prefix is not PREFIX"

cat >"$d/prog.c" <<'EOF'
#include <hakmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
  char *p = (char *)malloc(100); /* hakmem's when libhakmem.so is linked */
  char *q = (char *)hak_malloc(100);
  if (!p || !q)
    return 1;
  strcpy(q, "hak");
  printf("%s %zu %zu\n", q, hak_usable_size(p), hak_usable_size(q));
  hak_free(q);
  free(p);
  return 0;
}
EOF
cp "$d/prog.c" "$d/prog.cpp"
export PKG_CONFIG_PATH=$pfx/lib/pkgconfig
if ! flags=$(pkg-config --cflags --libs hakmem 2>"$d/pc.err"); then
  fail install/pkgconfig "pkg-config does not find hakmem: $(cat "$d/pc.err")"
else
  for lang in c cpp; do
    cc=gcc
    [ $lang = cpp ] && cc=g++
    # shellcheck disable=SC2086 # flags are words
    if ! $cc -Wall -Werror "$d/prog.$lang" $flags -o "$d/prog-$lang" 2>"$d/cc.err"; then
      fail install/pkgconfig "$cc with pkg-config's flags: $(head -3 "$d/cc.err")"
      continue
    fi
    # ldd's lines read whole, then searched (here and below): piped into a
    # grep -q, which stops at its match, ldd died by SIGPIPE writing the
    # lines after it, and pipefail made that a failure (until 2026-11-28
    # about 1 run in 10 on 2 busy cores; make check's release/install-ldd-late)
    libs=$(ldd "$d/prog-$lang" 2>&1; LD_LIBRARY_PATH=$pfx/lib ldd "$d/prog-$lang" 2>&1)
    grep -qF "libhakmem.so => $pfx/lib/libhakmem.so" <<<"$libs" ||
      fail install/pkgconfig "$lang: not linked to the installed libhakmem.so"
    out=$(LD_LIBRARY_PATH=$pfx/lib "$d/prog-$lang" 2>&1)
    [ "$out" = "hak 112 112" ] ||
      fail install/pkgconfig "$lang: printed '$out', wanted 'hak 112 112' (malloc must be hakmem's)"
  done
fi

if ! gcc -Wall -Werror -I"$pfx/include" "$d/prog.c" -o "$d/prog-static" -L"$pfx/lib" -l:libhakmem.a -pthread 2>"$d/cc.err"; then
  fail install/static "-l:libhakmem.a: $(head -3 "$d/cc.err")"
else
  libs=$(ldd "$d/prog-static" 2>&1)
  grep -q libhakmem <<<"$libs" && fail install/static "-l:libhakmem.a linked a shared libhakmem"
  # malloc is the C library's there: hak_usable_size(p) of it is a named
  # error, so the program must die by SIGABRT saying so
  out=$("$d/prog-static" 2>&1)
  rc=$?
  [ $rc -eq 134 ] && echo "$out" | grep -q "^hakmem: invalid usable_size of 0x[0-9a-f]*: not allocated by hakmem$" ||
    fail install/static "exit $rc, '$out': malloc should be the C library's (hak_usable_size of it a named error)"
fi

[ $fails -eq 0 ] && echo "install: layout, pkg-config (C, C++) and the static archive all pass"
exit $((fails > 0))
