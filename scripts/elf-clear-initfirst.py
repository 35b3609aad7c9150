#!/usr/bin/env python3
"""scripts/elf-clear-initfirst.py SRC DST: copies the ELF64 (little-endian)
shared object SRC to DST with DF_1_INITFIRST cleared in its DT_FLAGS_1, so
that the loader runs its constructor in the usual order (after those of the
program's own libraries) rather than first. libhakmem.so is linked with
-z initfirst; scripts/test-preload.sh (atfork_ctor-no-initfirst) and the
mutation runner run tests/preload/atfork_ctor.c with such a copy, as on a
loader that ignores the flag or with another object that has it (the
Makefile's rule for build/release/preload/libhakmem-no-initfirst*.so).
Exit status 0, or 1 (with a message) if SRC is not such a file or has no
DF_1_INITFIRST to clear."""
import struct
import sys

PT_DYNAMIC, DT_FLAGS_1, DF_1_INITFIRST = 2, 0x6FFFFFFB, 0x20


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: elf-clear-initfirst.py SRC DST")
    src, dst = sys.argv[1], sys.argv[2]
    b = bytearray(open(src, "rb").read())
    if b[:4] != b"\x7fELF" or b[4] != 2 or b[5] != 1:
        sys.exit("%s: not an ELF64 little-endian file" % src)
    (phoff,) = struct.unpack_from("<Q", b, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", b, 0x36)
    cleared = False
    for i in range(phnum):
        o = phoff + i * phentsize
        if struct.unpack_from("<I", b, o)[0] != PT_DYNAMIC:
            continue
        (off,) = struct.unpack_from("<Q", b, o + 8)
        (size,) = struct.unpack_from("<Q", b, o + 32)
        for e in range(off, off + size, 16):
            tag, val = struct.unpack_from("<qQ", b, e)
            if tag == DT_FLAGS_1 and val & DF_1_INITFIRST:
                struct.pack_into("<Q", b, e + 8, val & ~DF_1_INITFIRST)
                cleared = True
    if not cleared:
        sys.exit("%s: no DF_1_INITFIRST in DT_FLAGS_1" % src)
    with open(dst, "wb") as f:
        f.write(b)


if __name__ == "__main__":
    main()
