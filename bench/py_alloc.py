"""py_alloc: a real program's allocation pattern, for make bench.

    PYTHONMALLOC=malloc python3 -S bench/py_alloc.py [rounds=20] [items=20000]

scripts/bench.sh runs it with PYTHONMALLOC=malloc so that every Python object
(not only those above pymalloc's 512 bytes) comes from malloc, i.e. from the
allocator under LD_PRELOAD. Each round builds a list of records (dicts of
strings, ints, lists and tuples), an index dict over them, formats and joins
them into one large string, splits and sorts it again, and drops it all.
ops = rounds x items (records processed). Prints one line:
    py_alloc: allocator=<name> rounds=N items=N time=T s ops/s=R
The total the rounds return (records, distinct fields, the joined text's
length) must be the one worked out from the records' lengths alone
(expected_total): a round over objects the allocator damaged returns
another, or raises. Exit status: 0 ok, 1 bad arguments, 2 wrong total.
"""
import ctypes
import sys
import time


def allocator_name():
    libc = ctypes.CDLL(None)
    for sym, name in (("hak_malloc", "hakmem(preload)"), ("mi_malloc", "mimalloc(preload)"),
                      ("mallocx", "jemalloc(preload)"), ("tc_malloc", "tcmalloc(preload)")):
        if hasattr(libc, sym):
            return name
    return "libc"


def one_round(r, items):
    recs = []
    for i in range(items):
        key = "k%07d-%d" % (i * 7919 % items, r)
        recs.append({"id": i, "key": key, "name": key.upper() * (1 + i % 5),
                     "tags": [key[j:j + 3] for j in range(0, 9, 3)], "pos": (i, i * 2.5)})
    index = {rec["key"]: rec for rec in recs}
    text = "\n".join("%s,%d,%s,%s" % (rec["key"], rec["id"], rec["name"], "|".join(rec["tags"]))
                     for rec in recs)
    lines = text.split("\n")
    lines.sort(key=lambda s: s[::-1])
    words = {}
    for line in lines:
        for w in line.split(","):
            words[w] = words.get(w, 0) + 1
    total = len(index) + len(words) + len(text)
    del recs, index, text, lines, words
    return total


def expected_total(r, items):
    """What one_round(r, items) returns, from the lengths of what it builds:
    items records, 4 distinct fields per record (key, id, name, tags: each
    key is distinct when items is not a multiple of 7919, a prime), and the
    joined text (per record: key, id, name = key x (1 + i % 5), tags of 11
    characters, 3 commas; a newline between records)."""
    n = len("k%07d-%d" % (0, r))
    text = sum(n + len(str(i)) + n * (1 + i % 5) + 11 + 3 for i in range(items))
    return items + 4 * items + text + max(items - 1, 0)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    items = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    if rounds < 0 or not 0 <= items < 10 ** 7 or (items and items % 7919 == 0):
        sys.exit("py_alloc: need rounds >= 0 and 0 <= items < 10^7, not a multiple of 7919")
    t0 = time.perf_counter()
    check = 0
    for r in range(rounds):
        check += one_round(r, items)
    secs = time.perf_counter() - t0
    want = sum(expected_total(r, items) for r in range(rounds))
    if check != want:
        sys.stderr.write("py_alloc: wrong total %d, expected %d: objects were damaged\n" % (
            check, want))
        sys.exit(2)
    ops = rounds * items
    print("py_alloc: allocator=%s rounds=%d items=%d check=%d time=%.6f s ops/s=%.1f"
          % (allocator_name(), rounds, items, check, secs, ops / secs if secs > 0 else 0.0))


if __name__ == "__main__":
    main()
