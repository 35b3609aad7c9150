#!/usr/bin/env python3
"""fuzz/gen_seeds.py OUTDIR: writes seed inputs for every driver into
OUTDIR/<driver>/ (minimise them into corpus/<driver>/ with -merge=1, see
README.md "## Fuzzing"). The byte encoding mirrors fuzz/ops.c's decoder."""
import os, random, sys

# op byte: low 5 bits index the decoder's weight table, top 3 bits = sub
T = {'malloc': 0, 'calloc': 5, 'realloc': 7, 'reallocarray': 10, 'free': 11,
     'aligned': 15, 'usable': 18, 'verify': 19, 'verify_all': 20, 'heap_check': 21,
     'thread_exit': 24, 'free_orphans': 25, 'burst': 30, 'burst_free': 31}

def op(kind, sub=0):
    if kind == 'fork':  # heap_check's op byte with sub 7
        return bytes([T['heap_check'] | (7 << 5)])
    if kind == 'fail_move':  # heap_check's op byte with sub 6 (fuzz_ops only)
        return bytes([T['heap_check'] | (6 << 5)])
    if kind == 'trim':  # heap_check's op byte with sub 5 (FZ_TRIM)
        return bytes([T['heap_check'] | (5 << 5)])
    if kind == 'clock':  # heap_check's op byte with sub 4 (FZ_CLOCK)
        return bytes([T['heap_check'] | (4 << 5)])
    if kind == 'hook':  # verify_all's op byte with sub 7 (FZ_HOOK, multithreaded only)
        return bytes([T['verify_all'] | (7 << 5)])
    return bytes([T[kind] | (sub << 5)])

# FZ_CLOCK steps (fz_clock_steps): half the purge delay, the delay, past the
# large cache's age limit, 60 s
CLK = {'half_delay': 0, 'delay': 1, 'large_age': 2, 'far': 3}

def clock(step):  # FZ_CLOCK: no payload; the slot byte says how far
    return ('clock', 0, CLK[step], b'')

def fail_move(mode, skip):  # FZ_FAIL_MOVE: no payload; the slot byte says how
    return ('fail_move', 0, mode + 3 * skip, b'')

# FZ_FORK child actions (fuzz/ops_fork.h)
FK = {'clean': 0, 'double_free': 1, 'interior': 2, 'foreign': 3, 'realloc_freed': 4,
      'usable_freed': 5, 'sized_too_big': 6, 'not_start': 7, 'corrupt_marker': 8,
      'corrupt_self': 9, 'corrupt_link': 10, 'churn': 11}

def fork(action, size=b'\x00\x02'):  # payload: action byte, size of the child's own block
    return bytes([FK[action]]) + size

def cls_size(cls, delta):  # class boundary: n-1, n, n+1
    return bytes([(delta + 1) << 4 | 0, cls])

def small_max(delta):      # HAK_SMALL_MAX + delta, delta in -2..2
    return bytes([(delta + 2) << 4 | 7])

def tiny(n):
    return bytes([9, n])

def large(i):
    return bytes([(i << 4) | 13])

def edge(i):
    return bytes([(i << 4) | 15])

def prog(ops, threads=None):
    """ops: list of (kind, sub, slot, payload); threads: per-op thread byte or None"""
    out = b''
    for i, (k, sub, slot, payload) in enumerate(ops):
        out += op(k, sub)
        if threads is not None:
            out += bytes([threads[i]])
        out += bytes([slot]) + payload
    return out

def seeds_single(mt):
    rnd = random.Random(1234 + mt)
    S = []
    def th(n):
        return [rnd.randrange(8) for _ in range(n)] if mt else None
    # every class boundary, allocated then verified and freed
    for c0 in range(0, 80, 10):
        ops = []
        for c in range(c0, c0 + 10):
            for dlt in (-1, 0, 1):
                ops.append(('malloc', 0, (c * 3 + dlt) % 64, cls_size(c, dlt)))
        ops.append(('verify_all', 0, 0, b''))
        ops.append(('heap_check', 0, 0, b''))
        for s in range(0, 64, 3):
            ops.append(('free', s % 3, s, b''))
        S.append(prog(ops, th(len(ops))))
    # small/large threshold, realloc across it both ways and to 0
    ops = []
    for dlt in range(-2, 3):
        ops += [('malloc', 0, dlt + 2, small_max(dlt)), ('realloc', 0, dlt + 2, large(dlt + 2)),
                ('realloc', 0, dlt + 2, tiny(7)), ('realloc', 0, dlt + 2, small_max(-dlt)),
                ('usable', 0, dlt + 2, b''), ('realloc', 0, dlt + 2, tiny(0))]
    S.append(prog(ops, th(len(ops))))
    # realloc chains from NULL growing and shrinking
    ops = [('realloc', 0, 5, tiny(0))]
    for c in list(range(0, 80, 7)) + list(range(79, 0, -9)):
        ops.append(('realloc', 0, 5, cls_size(c, 1)))
    ops.append(('verify', 0, 5, b''))
    S.append(prog(ops, th(len(ops))))
    # calloc: normal, recycled (malloc/verify/free then calloc the same class), overflow.
    # calloc's sub 0 takes two plain bytes (count, size % 128): the same class
    # needs sub 4, two decoded sizes (class size x 1); until 2026-11-28 this
    # asked calloc(1, c), c < 80 bytes, for class index c
    ops = []
    for c in range(0, 80, 5):
        ops += [('malloc', 0, 1, cls_size(c, 0)), ('free', 0, 1, b''),
                ('calloc', 4, 2, cls_size(c, 0) + tiny(1)), ('free', 0, 2, b'')]
    for i in range(10):
        ops.append(('calloc', 4, 3, edge(i) + edge((i + 3) % 10)))
        ops.append(('reallocarray', 4, 3, edge(i) + tiny(2)))
    S.append(prog(ops, th(len(ops))))
    # aligned: every alignment class with several sizes and every function
    for sub in range(5):
        ops = []
        for ab in list(range(0, 16)) + list(range(128, 138)) + list(range(192, 202)):
            ops.append(('aligned', sub, ab % 64, cls_size(ab % 80, 0) + bytes([ab])))
            ops.append(('aligned', sub, (ab + 1) % 64, tiny(0) + bytes([ab])))
            ops.append(('aligned', sub, (ab + 2) % 64, large(ab % 12) + bytes([ab])))
        ops.append(('heap_check', 0, 0, b''))
        for s in range(64):
            ops.append(('free', 2, s, b''))
        S.append(prog(ops, th(len(ops))))
    # edges for every allocation function
    ops = []
    for i in range(10):
        ops += [('malloc', 0, i, edge(i)), ('realloc', 0, i, edge(i)), ('aligned', 0, i, edge(i) + bytes([4]))]
    S.append(prog(ops, th(len(ops))))
    # large blocks and segment-sized blocks
    ops = []
    for i in range(12):
        ops += [('malloc', 0, i, large(i)), ('verify', 0, i, b''), ('realloc', 0, i, large((i + 5) % 12))]
    S.append(prog(ops, th(len(ops))))
    # bursts that fill pages of several classes, freed wholly or every other block
    for c0 in (0, 20, 40, 60, 75):
        ops, t = [], []
        for c in range(c0, c0 + 5):
            ops.append(('burst', 1, 0, cls_size(c, 0) + bytes([63]))); t.append(c % 4)
        ops.append(('burst_free', 1, 0, b'')); t.append(1)
        ops.append(('heap_check', 0, 0, b'')); t.append(2)
        ops.append(('burst', 0, 0, cls_size(c0, 1) + bytes([200]))); t.append(3)
        ops.append(('burst_free', 0, 0, b'')); t.append(0)
        S.append(prog(ops, t if mt else None))
    if mt:
        # cross-thread frees, thread exit with live blocks, adoption, orphans
        ops, t = [], []
        for r in range(6):
            for s in range(16):
                ops.append(('malloc', 0, s, cls_size((s * 5 + r) % 80, 0))); t.append(r % 3)
            for s in range(0, 16, 2):
                ops.append(('free', 0, s, b'')); t.append((r + 1) % 3)
            ops.append(('thread_exit', 0, 0, b'')); t.append(r % 3)
            ops.append(('malloc', 0, 40 + r, tiny(24))); t.append(r % 3)
            ops.append(('heap_check', 0, 0, b'')); t.append(2)
            ops.append(('free_orphans', 0, 0, b'')); t.append((r + 2) % 3)
        S.append(prog(ops, t))
    # fork: a clean child, every misuse (must abort with its message) on small,
    # large and huge-aligned blocks and on the child's own, every corruption
    # (hak_heap_check must report it); at most 4 forks run per input
    base = [('malloc', 0, 1, cls_size(2, 0)), ('malloc', 0, 2, large(1)),
            ('aligned', 1, 3, large(2) + bytes([0xc4])), ('malloc', 0, 4, tiny(1)),
            ('calloc', 0, 5, bytes([3, 100])), ('malloc', 0, 6, cls_size(60, 0))]
    groups = [[('clean', 1), ('double_free', 1), ('interior', 2), ('foreign', 0)],
              [('realloc_freed', 2), ('usable_freed', 1), ('sized_too_big', 2), ('not_start', 1)],
              [('corrupt_marker', 1), ('corrupt_self', 6), ('corrupt_link', 4), ('not_start', 2)],
              [('double_free', 2), ('interior', 3), ('realloc_freed', 1), ('usable_freed', 9)],
              [('sized_too_big', 1), ('double_free', 3), ('interior', 9), ('churn', 0)],
              [('not_start', 3), ('double_free', 9), ('clean', 3), ('sized_too_big', 9)]]
    for gi, g in enumerate(groups):
        ops = list(base)
        if gi == 3:  # the forking thread frees and exits first in mt: abandoned heaps in the child
            ops += [('burst', 1, 0, cls_size(10, 0) + bytes([80])), ('thread_exit', 0, 0, b'')]
        for a, slot in g:
            ops.append(('fork', 0, slot, fork(a, large(3) if a == 'double_free' and slot == 9 else cls_size(7, 0))))
        ops.append(('heap_check', 0, 0, b''))
        S.append(prog(ops, [i % 3 for i in range(len(ops))] if mt else None))
    if not mt:
        # failed page moves (FZ_FAIL_MOVE, decoded by fuzz_ops): a cached
        # mapping cut, a block gathered from smaller ones (in place or into
        # a new range), a realloc that has to move; each way a move fails
        for mode in range(3):
            for skip in range(2):
                ops = [('malloc', 0, 0, large(8)), ('verify', 0, 0, b''), ('free', 0, 0, b''),
                       fail_move(mode, skip), ('malloc', 0, 1, large(9)), ('verify_all', 0, 0, b''),
                       ('heap_check', 0, 0, b''),
                       ('malloc', 0, 2, large(9)), ('malloc', 0, 3, large(9)), ('free', 0, 2, b''),
                       ('free', 0, 3, b''), fail_move(mode, skip), ('malloc', 0, 4, large(5)),
                       ('verify_all', 0, 0, b''), ('heap_check', 0, 0, b'')]
                for i in range(6):
                    ops += [('malloc', 0, 10 + i, large(2)), ('malloc', 0, 20 + i, large(0)),
                            fail_move(mode, skip), ('realloc', 0, 10 + i, large(11)),
                            ('verify', 0, 10 + i, b''), ('realloc', 0, 10 + i, large(8)),
                            ('free', 0, 20 + i, b'')]
                ops += [('verify_all', 0, 0, b''), ('heap_check', 0, 0, b'')]
                S.append(prog(ops, None))
    if not mt:
        # the same cut and gather with calloc, each way a move fails, the
        # first or the second move: a failed move's token (its destination's
        # first 8 bytes) must not stay in the calloc'd block
        # (large-gather-failed-token-clean; 2026-11-28)
        for mode in range(3):
            for skip in range(2):
                ops = [('malloc', 0, 0, large(8)), ('free', 0, 0, b''), fail_move(mode, skip),
                       ('calloc', 4, 1, large(9) + tiny(1)), ('heap_check', 0, 0, b''),
                       ('malloc', 0, 2, large(9)), ('malloc', 0, 3, large(9)), ('free', 0, 2, b''),
                       ('free', 0, 3, b''), fail_move(mode, skip),
                       ('calloc', 4, 4, large(5) + tiny(1)), ('verify_all', 0, 0, b''),
                       ('heap_check', 0, 0, b''), ('free', 0, 4, b''), ('free', 0, 1, b''),
                       ('malloc', 0, 5, large(2)), ('malloc', 0, 6, large(0)), ('free', 0, 5, b''),
                       ('free', 0, 6, b''), fail_move(mode, skip),
                       ('calloc', 4, 7, large(3) + tiny(1)), ('verify_all', 0, 0, b''),
                       ('heap_check', 0, 0, b'')]
                S.append(prog(ops, None))
    # hak_trim (FZ_TRIM): blocks of many classes and large ones, most freed
    # (in mt by other threads: remote frees, some into full pages), trimmed
    # by each thread, then the same classes allocated again (calloc reads
    # zero over purged memory) and verified; in mt a thread also exits with
    # live blocks (abandoned segments) before a trim
    for r in range(3):
        ops, t = [], []
        for s in range(48):
            kind = large(s % 12) if s % 8 == 7 else cls_size((s * 7 + r * 11) % 80, 0)
            ops.append(('malloc', 0, s, kind)); t.append(s % 3)
        ops.append(('burst', 1, 0, cls_size(20 + r * 10, 0) + bytes([255]))); t.append(0)
        for s in range(48):
            if s % 6:
                ops.append(('free', 0, s, b'')); t.append((s + 1) % 3)
        ops.append(('burst_free', r % 2, 0, b'')); t.append(1)
        if mt and r == 2:
            ops.append(('thread_exit', 0, 0, b'')); t.append(2)
        for w in range(3):
            ops.append(('trim', 0, 0, b'')); t.append(w)
        for s in range(48):  # each the class (or large size) malloc'd there before
            if s % 6:            # (until 2026-11-28 calloc(1..4, < 128): tiny classes only)
                kind = large(s % 12) if s % 8 == 7 else cls_size((s * 7 + r * 11) % 80, 0)
                ops.append(('calloc', 4, s, kind + tiny(1))); t.append(s % 3)
        ops += [('verify_all', 0, 0, b''), ('trim', 0, 0, b'')]; t += [0, 1]
        if mt:
            ops.append(('free_orphans', 0, 0, b'')); t.append(0)
        S.append(prog(ops, t if mt else None))
    # realloc that has to move a large block (large_realloc's mremap move):
    # a zone slot leaves 32 MiB of room after its block, so no size of the
    # decoder's tables (at most 8 MiB) ever outgrows it; reallocarray(SEG, 10)
    # asks 40 MiB (over OS_ZONE_MAX: a range where the kernel puts it) while
    # the next slot holds a block. The block then shrinks in place and grows
    # again (moving once more unless the kernel left room after it); in
    # fuzz_ops every way the move can fail comes first (FZ_FAIL_MOVE)
    modes = [None] + ([0, 1, 2] if not mt else [])
    for mode in modes:
        ops, t = [], []
        def add(o, th=0):
            ops.append(o); t.append(th)
        add(('malloc', 0, 3, large(0)), 1)                    # older: the moved block's gnext
        add(('malloc', 0, 0, large(1)))
        add(('malloc', 0, 1, large(0)), 1)                    # the next zone slot
        add(('calloc', 4, 2, large(4) + tiny(9)))             # 36 MiB, not in the zone
        add(('verify', 0, 2, b''), 1)
        add(('free', 0, 2, b''))                              # (64 MiB live budget)
        if mode is not None:
            add(fail_move(mode, 0))
        add(('reallocarray', 4, 0, large(4) + tiny(10)), 1)  # 40 MiB: moves
        add(('verify', 0, 0, b''))
        add(('free', 0, 3, b''), 1)                           # unlinked while the moved one lives
        add(('reallocarray', 4, 0, large(4) + tiny(10)), 1)  # again: moves if the move failed
        add(('realloc', 0, 1, large(11)))                     # the neighbour, in its slot
        add(('free', 0, 1, b''), 1)                           # the moved block is the newest now
        add(('realloc', 0, 0, large(2)))                      # shrink in place
        add(('verify', 0, 0, b''), 1)
        add(('reallocarray', 4, 0, large(4) + tiny(12)))      # 48 MiB: grows or moves
        add(('verify_all', 0, 0, b''), 1)
        add(('heap_check', 0, 0, b''))
        add(('free', 1, 0, b''), 1)
        S.append(prog(ops, t if mt else None))
    # realloc that has to move a block assembled from two cached mappings
    # (several kernel mappings: one mremap cannot move it, it is copied):
    # two 3 MiB blocks freed, SEG + 1 gathered from them, the next zone slot
    # taken, then reallocarray(p, SEG, 10) (40 MiB, past the zone slot's
    # room), and once more after a failed move (fuzz_ops only: a seed added
    # to fuzz_mt's list would renumber the later ones, whose number is their
    # thread count; 2026-11-28: large-realloc-moves-several survived every
    # corpus input)
    for mode in ([None, 0] if not mt else []):
        ops, t = [], []
        def add(o, th=0):
            ops.append(o); t.append(th)
        add(('malloc', 0, 2, large(9))); add(('malloc', 0, 3, large(9)), 1)
        add(('free', 0, 2, b'')); add(('free', 0, 3, b''), 1)
        add(('malloc', 0, 4, large(5)))                       # gathered: two mappings
        add(('verify', 0, 4, b''), 1)
        add(('malloc', 0, 5, large(0)))                       # the next zone slot
        if mode is not None:
            add(fail_move(mode, 0))
        add(('reallocarray', 4, 4, large(4) + tiny(10)), 1)  # 40 MiB: moves by copy
        add(('verify', 0, 4, b''))
        add(('realloc', 0, 4, large(8)), 1)                   # shrinks in place
        add(('verify_all', 0, 0, b'')); add(('heap_check', 0, 0, b''))
        add(('free', 0, 5, b'')); add(('free', 1, 4, b''), 1)
        S.append(prog(ops, t if mt else None))
    # the large cache full (LARGE_CACHE_N = 32 mappings): 34 large blocks of
    # a few sizes freed, the oldest evicted, then taken again from the cache
    ops = []
    for s in range(34):
        ops.append(('malloc', 0, s, large((0, 1, 10)[s % 3])))
    for s in range(34):
        ops.append(('free', s % 2, s, b''))
    for s in range(6):
        ops.append(('malloc', 0, s, large((1, 0, 10, 2)[s % 4])))
    ops += [('heap_check', 0, 0, b''), ('trim', 0, 0, b'')]
    S.append(prog(ops, [s % 2 for s in range(len(ops))] if mt else None))
    if mt:
        # hak_trim with an abandoned segment some of whose pages were emptied
        # by remote frees after the abandonment (abandoned_give_back_empty_
        # locked): thread 1 fills pages of three classes and exits; thread 0,
        # which allocated before the exit (so its frees do not reclaim), frees
        # one class's blocks, leaves the others live, and trims
        for r in range(3):
            ops, t = [], []
            def add(o, th=0):
                ops.append(o); t.append(th)
            add(('malloc', 0, 63, tiny(40)))
            for s in range(36):
                add(('malloc', 0, s, cls_size((10, 31, 52)[s // 12] + r, 0)), 1)
            add(('thread_exit', 0, 0, b''), 1)
            for s in range(12 * (r % 2), 12 * (r % 2) + 12):
                add(('free', s % 3, s, b''))
            add(('trim', 0, 0, b''))
            add(('verify_all', 0, 0, b''))
            for s in range(12 * (r % 2), 12 * (r % 2) + 12):
                add(('malloc', 0, s, cls_size((10, 31, 52)[s // 12] + r, 0)), s % 2)
            add(('trim', 0, 0, b''), 1)
            add(('free_orphans', 0, 0, b''))
            add(('trim', 0, 0, b''))
            S.append(prog(ops, t))
    # the delayed purge (FZ_CLOCK moves hakmem's clock): 16 MiB of 16 KiB
    # (r = 1: 15 KiB) blocks in four bursts, each followed by a live block
    # of a class of its own (64, 60, 56, 52 KiB: a new page in the segment
    # the burst filled, which keeps that segment owned), then every burst
    # block freed: the heap's free dirty slices pass the purge threshold and
    # the delay starts. Half the delay later a class not used before takes
    # the allocation slow path (too early: nothing purged); after the rest,
    # another one purges. calloc over the purged slices must read zero, the
    # live blocks keep their bytes. r = 1 runs on thread 1, which in mt then
    # exits with its blocks live (its segments abandoned, dirty slices and
    # all) and the clock moves 60 s before the orphans are freed
    for r in range(2):
        ops, t = [], []
        def add(o, th=0):
            ops.append(o); t.append(th)
        for k in range(4):
            add(('burst', 1, 0, cls_size(63 - r, 0) + bytes([62])), r)
            add(('malloc', 0, 10 + k, cls_size(79 - k, 0)), r)
        add(('burst_free', 0, 0, b''), r)
        add(clock('half_delay'))
        add(('malloc', 0, 20, cls_size(30 + r, 0)), r)
        add(clock('delay'))
        add(('malloc', 0, 21, cls_size(40 + r, 0)), r)
        for s in range(22, 44):
            add(('calloc', 4, s, cls_size(79 - s % 2, 0) + tiny(1)), r)
        add(('verify_all', 0, 0, b''))
        if mt and r == 1:
            add(('thread_exit', 0, 0, b''), 1)
            add(clock('far'))
            add(('free_orphans', 0, 0, b''))
        add(('heap_check', 0, 0, b''))
        S.append(prog(ops, t if mt else None))
    # the segment cache's aging (fuzz_mt): thread 0 frees 16 MiB of 16 KiB
    # blocks (three emptied segments go to the cache), the clock moves past
    # the delay, thread 1 exits with nothing live (its one segment is
    # cached too, which ages the cache: those past the newest two are
    # purged), then thread 0 takes three segments again with a burst and
    # calloc's 64 KiB blocks into what is left, the purged segments among
    # them: they must read zero (a page is taken as zero only over purged
    # slices)
    if mt:
        for r in range(2):
            ops, t = [], []
            def add(o, th=0):
                ops.append(o); t.append(th)
            for s in range(4):
                add(('malloc', 0, s, tiny(40 + s)))
            add(('malloc', 0, 4, tiny(40)), 1)
            add(('burst', 1, 0, cls_size(63, 0) + bytes([255])))
            add(('burst_free', 0, 0, b''))
            add(clock('far' if r else 'delay'))
            add(('free', 0, 4, b''), 1)
            add(('thread_exit', 0, 0, b''), 1)
            add(('burst', 1, 0, cls_size(63 - r, 0) + bytes([188])))
            for s in range(10, 60):
                add(('calloc', 4, s, cls_size(79 - s % 2, 0) + tiny(1)), s % 3 // 2 * 2)
            add(('verify_all', 0, 0, b''))
            add(('burst_free', 1, 0, b''))
            add(('heap_check', 0, 0, b''))
            S.append(prog(ops, t))
    # the large cache's aging: freed large blocks of several sizes cached,
    # the clock moved under and past the age limit, then large calls (each
    # ages the cache: evicts what waited too long) and calloc of a size
    # that a cached mapping would have served, which must read zero
    for r in range(2):
        ops, t = [], []
        def add(o, th=0):
            ops.append(o); t.append(th)
        for s in range(8):
            add(('malloc', 0, s, large((0, 1, 2, 10)[s % 4])), s % 2)
            add(('verify', 0, s, b''), s % 2)
        for s in range(0, 8, 2):
            add(('free', 0, s, b''), 1)
        add(clock('delay' if r else 'half_delay'))
        for s in range(1, 8, 2):
            add(('free', 0, s, b''))
        add(clock('large_age'), 1)
        add(('malloc', 0, 8, large(3)))
        add(('calloc', 4, 9, large(1) + tiny(1)), 1)
        add(('realloc', 0, 8, large(2)))
        add(clock('far'))
        add(('free', 0, 8, b''), 1)
        add(('free', 0, 9, b''))
        add(('heap_check', 0, 0, b''))
        S.append(prog(ops, t if mt else None))
    # a run of free slices whose first slices were purged (clean) and whose
    # later ones were not (dirty), taken by one page: calloc must clear it.
    # Class 71 (32 KiB) pages span 4 slices, class 79 (64 KiB) pages 8:
    # P1 (slices 1-4), P2 (5-8) and P3 (9-12) filled; P1 emptied and
    # trimmed (released, purged), then P2 and P3 emptied through the cache
    # (P2, the older, released dirty; P3 kept, its class's last page); then
    # 64 KiB blocks calloc'd: their page takes slices 1-8. Until 2026-11-29
    # no corpus input reached such a run and 60 s of fuzzing found none
    # (mutant take-zero-first-slice-only: the page taken as zero when its
    # first slice is clean)
    ops = [('malloc', 0, s, cls_size(71, 0)) for s in range(24)]
    ops += [('free', 0, s, b'') for s in range(8)] + [('trim', 0, 0, b'')]
    ops += [('free', 0, s, b'') for s in range(8, 24)]
    ops += [('calloc', 4, s, cls_size(79, 0) + tiny(1)) for s in range(30, 38)]
    ops.append(('verify_all', 0, 0, b''))
    S.append(prog(ops, [0] * len(ops) if mt else None))
    # FK_DOUBLE_FREE on an empty slot frees its stale pointer (fuzz/ops_fork.h):
    # two large blocks freed to the large cache, a bigger one gathered from
    # their pages, then each stale pointer freed in a fork child (until
    # 2026-11-29 no input freed a pointer after its memory moved on:
    # large-gather-keeps-registration, a gathered mapping left registered,
    # passed every replay)
    ops = [('malloc', 0, 0, large(9)), ('malloc', 0, 1, large(2)), ('free', 0, 0, b''),
           ('free', 0, 1, b''), ('malloc', 0, 2, large(11)), ('verify', 0, 2, b''),
           ('fork', 0, 0, fork('double_free')), ('fork', 0, 1, fork('double_free')),
           ('heap_check', 0, 0, b'')]
    S.append(prog(ops, [0] * len(ops) if mt else None))
    # FK_SIZED_TOO_BIG with an odd size byte on a small, a large and an
    # aligned block: free_aligned_sized with an alignment the block lacks
    ops = [('malloc', 0, 0, cls_size(5, 0)), ('malloc', 0, 1, large(2)),
           ('aligned', 0, 2, cls_size(20, 0) + bytes([6]))]
    ops += [('fork', 0, s, fork('sized_too_big', tiny(1 + 2 * s))) for s in range(3)]
    ops.append(('heap_check', 0, 0, b''))
    S.append(prog(ops, [0] * len(ops) if mt else None))
    # FK_INTERIOR with an odd size byte: realloc of an interior pointer of a
    # small block that fits (its fast path), a large one, a 4 KiB one; and
    # FK_USABLE_FREED on a large block the large cache keeps (until
    # 2026-11-29 no input's freed-block misuse met one: resolve-large-freed-unchecked)
    ops = [('malloc', 0, 0, cls_size(5, 0)), ('malloc', 0, 1, large(2)),
           ('malloc', 0, 2, cls_size(40, 0)), ('malloc', 0, 3, large(0))]
    ops += [('fork', 0, s, fork('interior', tiny(1 + 2 * s))) for s in range(3)]
    ops += [('fork', 0, 3, fork('usable_freed', tiny(5))), ('heap_check', 0, 0, b'')]
    S.append(prog(ops, [0] * len(ops) if mt else None))
    # random programs of various lengths
    for n in (8, 16, 32, 64, 128, 256, 512):
        for _ in range(3):
            S.append(bytes(rnd.randrange(256) for _ in range(n)))
    return S

# FZ_HOOK (fuzz_mt): the next n ops run while the one after them is held at
# hakmem's test hook point `point` (fuzz/ops.h); the slot byte says which
HP = {'abandon_collected': 0, 'page_full': 1, 'heap_published': 2, 'free_counted': 3,
      'mark_checked': 4, 'free_unowned': 5, 'notifying': 6}

def hook(point, n):
    return ('hook', 0, HP[point] + 7 * (n - 1), b'')

def seeds_hook():
    """fuzz_mt seeds (4 threads) for the interleavings that need two threads at
    the same instant: each puts an op (or two) inside another at a hook point."""
    S = []
    for cls in (10, 40):
        c = cls_size(cls, 0)
        # a remote free of the exiting thread's last live block between its
        # last collect and the abandonment: the segment is given back
        # (segment_abandon_locked finds nothing live)
        ops, t = [], []
        def add(o, th=0):
            ops.append(o); t.append(th)
        for s in range(4):
            add(('malloc', 0, s, c), 1)
        for s in range(3):
            add(('free', 0, s, b''))
        add(hook('abandon_collected', 1)); add(('free', 0, 3, b'')); add(('thread_exit', 0, 0, b''), 1)
        add(('verify_all', 0, 0, b'')); add(('trim', 0, 0, b''))
        S.append(prog(ops, t))
        # a free into an abandoned segment by a thread that does not reclaim
        # (it allocated before the exit), held where it read the owner NULL
        # (free unowned), where it counted itself (free counted) or where it
        # checked the page's mark (mark checked), while thread 2 adopts the
        # segment (its first malloc) and, with n = 2, exits again
        for point, n in (('free_unowned', 1), ('free_unowned', 2), ('free_counted', 1),
                         ('free_counted', 2), ('mark_checked', 1), ('mark_checked', 2)):
            ops, t = [], []
            add(('malloc', 0, 63, tiny(40)))
            for s in range(6):
                add(('malloc', 0, s, c), 1)
            add(('thread_exit', 0, 0, b''), 1)
            add(hook(point, n)); add(('malloc', 0, 10, c), 2)
            if n == 2:
                add(('thread_exit', 0, 0, b''), 2)
            add(('free', 0, 0, b''))
            # the rest freed by thread 0 (counted: the last one reclaims, or the
            # segment stays abandoned, which fz_exec_finish reports) or, for
            # free unowned, some by a new thread (which reclaims at once)
            for s in range(1, 6):
                add(('free', s % 2, s, b''), 3 if s % 2 and point == 'free_unowned' else 0)
            add(('verify_all', 0, 0, b'')); add(('trim', 0, 0, b'')); add(('free_orphans', 0, 0, b''))
            add(('trim', 0, 0, b''))
            S.append(prog(ops, t))
        # a remote free into a full page that asked to be told (notifying),
        # while the page's owner exits (its abandonment waits for the free)
        ops, t = [], []
        add(('burst', 0, 0, c + bytes([200])), 1)
        add(('malloc', 0, 5, c), 1)
        add(hook('notifying', 1)); add(('thread_exit', 0, 0, b''), 1); add(('burst_free', 0, 0, b''))
        add(('verify_all', 0, 0, b'')); add(('free_orphans', 0, 0, b'')); add(('trim', 0, 0, b''))
        S.append(prog(ops, t))
        # a remote free into a page between its move to the full list and
        # its notify request (page full): the owner finds it there
        ops, t = [], []
        for s in range(10):
            add(('malloc', 0, s, c), 1)
        add(hook('page_full', 1)); add(('free', 0, 0, b'')); add(('burst', 0, 0, c + bytes([200])), 1)
        add(hook('page_full', 2)); add(('free', 0, 1, b'')); add(('thread_exit', 0, 0, b''), 2)
        add(('burst', 0, 0, c + bytes([200])), 1)
        add(('verify_all', 0, 0, b'')); add(('heap_check', 0, 0, b''))
        # a new thread's heap just published: another thread's free and malloc
        add(hook('heap_published', 2)); add(('free', 0, 2, b''), 1); add(('malloc', 0, 2, c), 1)
        add(('malloc', 0, 20, c), 3)
        add(('trim', 0, 0, b''))
        S.append(prog(ops, t))
    # a thread exit whose TLS destructor, run after hakmem's abandoned the
    # thread's heap, mallocs (a heap for one call, abandoned at once) and
    # frees the orphans (thread_exit sub 7): pushes without a heap into its
    # own and another exited thread's abandoned segments, the last of each
    # reclaiming with a heap made for it and abandoned at once
    for cls, late_slot in ((10, 20), (40, 0)):
        c = cls_size(cls, 0)
        ops, t = [], []
        add(('malloc', 0, 63, tiny(40)))
        for s in range(6):
            add(('malloc', 0, s, c), 1)
        for s in range(10, 13):
            add(('malloc', 0, s, c), 2)
        add(('thread_exit', 0, 0, b''), 2)
        add(('thread_exit', 7, late_slot, b''), 1)
        add(('verify_all', 0, 0, b'')); add(('heap_check', 0, 0, b'')); add(('trim', 0, 0, b''))
        add(('free_orphans', 0, 0, b'')); add(('trim', 0, 0, b''))
        S.append(prog(ops, t))
    return S

def main():
    out = sys.argv[1]
    for d, mt in (('fuzz_ops', 0), ('fuzz_mt', 1), ('fuzz_sizes', 0)):
        os.makedirs(os.path.join(out, d), exist_ok=True)
        seeds = seeds_single(mt)
        if mt:
            seeds = [bytes([i % 7]) + s for i, s in enumerate(seeds)]  # byte 0: thread count
            seeds += [bytes([2]) + s for s in seeds_hook()]  # 4 threads
        if d == 'fuzz_sizes':
            rnd = random.Random(99)
            seeds = [bytes(rnd.randrange(256) for _ in range(n)) for n in (16, 32, 64, 128, 256, 512)
                     for _ in range(4)]
            # every record kind with every edge base, both signs
            for k in range(8):
                s = b''
                for b in range(0, 256, 11):
                    s += bytes([k << 3 | (b % 8), b, (b * 7) & 255, b ^ 0x80, 3])
                seeds.append(s)
        for i, s in enumerate(seeds):
            with open(os.path.join(out, d, 'seed-%03d' % i), 'wb') as f:
                f.write(s)

main()
