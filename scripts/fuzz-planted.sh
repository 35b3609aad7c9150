#!/usr/bin/env bash
# scripts/fuzz-planted.sh [BUG...]: proves the fuzzers find real bugs. For each
# planted bug it copies the tree to a temporary directory (the real alloc/ is
# never touched), applies the bug to the copy, builds the libFuzzer driver and
# times fuzz/run.sh (the engine of `make fuzz`, committed corpus, no merge)
# until it reports a finding; gives up after PLANT_TIME (default 60) seconds.
# Prints "<bug> <driver> FOUND|LATE|MISSED <seconds>s" (seconds from the start
# of fuzz/run.sh to its report, build not counted; FOUND says whether the corpus
# replay or the fuzzing found it); exits 1 if any was missed or found after
# PLANT_TIME seconds.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
T=${PLANT_TIME:-60}
ALL="classsize realloc-copy calloc-nozero remote-wrong-page aligned-off16 double-handout failed-move-ours realloc-move-link segment-age-unpurged"
BUGS=${*:-$ALL}

# plant <bug> <dir>: edits <dir>/alloc/src; prints the driver that should find it
plant() {
  python3 - "$1" "$2" <<'PY'
import sys
bug, d = sys.argv[1], sys.argv[2] + '/alloc/src/'
P = {
 # a size class whose block is one byte smaller than its class size
 'classsize': ('sizeclass.c', 'X(576)   X(640)', 'X(576)   X(639)', 'fuzz_ops'),
 # realloc copies the new size instead of the old one
 'realloc-copy': ('api.c', 'track_copy(q, p, keep < size ? keep : size, keep);', 'track_copy(q, p, size, keep);', 'fuzz_ops'),
 # calloc hands out a recycled block without zeroing it
 'calloc-nozero': ('api.c', 'pg->free_is_zero ? (n < sizeof(hak_block_t) ? n : sizeof(hak_block_t)) : n);',
                   '(n < sizeof(hak_block_t) ? n : sizeof(hak_block_t)));', 'fuzz_ops'),
 # a remote free is pushed to the neighbouring page's list
 'remote-wrong-page': ('page.c', 'bool page_free_remote(hak_segment_t *seg, hak_page_t *pg, hak_block_t *b, uint64_t counted) {\n',
                       'bool page_free_remote(hak_segment_t *seg, hak_page_t *pg, hak_block_t *b, uint64_t counted) {\n  for (unsigned i_ = 1; i_ < SLICES_PER_SEGMENT; i_++)\n    if (&seg->pages[i_] != pg && seg->slice_head[i_] == i_ && seg->pages[i_].in_use) { pg = &seg->pages[i_]; break; }\n', 'fuzz_mt'),
 # an aligned allocation 16 bytes off its alignment
 'aligned-off16': ('api.c', 'if ((class_size(cls) & (alignment - 1)) == 0)', 'if (((class_size(cls) + 16) & (alignment - 1)) == 0)', 'fuzz_ops'),
 # a block handed out twice after a free-list corruption
 'double-handout': ('api.c', '  pg->free = block_next(b);\n', '  pg->free = pg->used == 5 ? b : block_next(b);\n', 'fuzz_ops'),
 # a failed page move's destination taken for ours without looking (FZ_FAIL_MOVE)
 'failed-move-ours': ('os.c', 'static bool failed_move_dst_kept(void *dst, size_t n) {\n  if (os_extend(dst, 0, n))',
                      'static bool failed_move_dst_kept(void *dst, size_t n) {\n  if (1)', 'fuzz_ops'),
 # a realloc that moves a large block (mremap to a new range) leaves the next
 # older block's link to it pointing at the old, unmapped range
 'realloc-move-link': ('large.c', '  if (lg->gnext)\n    lg->gnext->gprev = lg;\n  lg->map_size = need;',
                       '  lg->map_size = need;', 'fuzz_ops'),
 # an aged cached segment's free slices marked clean without the purge that
 # would have zeroed them: calloc takes pages there as zero (found only
 # where the clock moves past the purge delay: FZ_CLOCK)
 'segment-age-unpurged': ('segment.c', 'now >= q->cached_at_ms + PURGE_DELAY_MS)\n      segment_purge(q);',
                          'now >= q->cached_at_ms + PURGE_DELAY_MS)\n      q->dirty_slices &= ~q->free_slices;', 'fuzz_mt'),
}
f, old, new, drv = P[bug]
s = open(d + f).read()
if old not in s:
    sys.exit('plant: pattern for %s not found in %s' % (bug, f))
open(d + f, 'w').write(s.replace(old, new, 1))
print(drv)
PY
}

rc=0
for bug in $BUGS; do
  tmp=$(mktemp -d /tmp/hak-planted.XXXXXX)
  # the tree as it is now (tracked and untracked files, no build outputs)
  git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp" 2>/dev/null
  drv=$(plant "$bug" "$tmp") || { echo "$bug: could not plant"; rc=1; rm -rf "$tmp"; continue; }
  if ! (cd "$tmp" && make -s -j2 "build/fuzz/libfuzzer/$drv" >build.log 2>&1); then
    echo "$bug: build failed (see $tmp/build.log)"
    rc=1
    continue
  fi
  t0=$(date +%s.%N)
  (cd "$tmp" && FUZZ_TIME=$T FUZZ_MERGE=0 JOBS=${JOBS:-2} fuzz/run.sh "$drv" >run.log 2>&1)
  r=$?
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')
  if [ $r -ne 0 ] && grep -q '^FINDING' "$tmp/run.log" && [ "$secs" -gt "$T" ]; then
    echo "$bug $drv LATE ${secs}s: found, but after the ${T}s limit (tree kept in $tmp)"
    rc=1
  elif [ $r -ne 0 ] && grep -q '^FINDING' "$tmp/run.log"; then
    why=$(grep -ohE 'fuzz: check failed[^"]*|hakmem: [^"]*|ERROR: AddressSanitizer: [a-z-]*|runtime error: .*' \
      "$tmp"/build/fuzz/logs/*.log "$tmp"/fuzz-*.log 2>/dev/null | head -n 1 | cut -c1-110)
    how="by fuzzing"
    grep -q 'the corpus replay found a bug' "$tmp/run.log" && how="by the corpus replay"
    echo "$bug $drv FOUND ${secs}s $how ($why)"
    rm -rf "$tmp"
  else
    echo "$bug $drv MISSED ${secs}s (tree kept in $tmp)"
    rc=1
  fi
done
exit $rc
