/* HAKMEM_THP=1 makes every new segment and large-block mapping
 * madvise(MADV_HUGEPAGE)d (os.c, os_advise_huge); without it, or with any
 * other value, none is.
 * The kernel's answer to the advice is the VMA flag "hg" in
 * /proc/self/smaps, set whether or not a huge page is free to back it, so
 * the test does not depend on the machine's memory. Each case runs in a
 * forked child, since the variable is read once, at the first segment
 * mapped; the children's blocks keep their contents and the heap check
 * passes. A block of several kernel mappings grown in place by realloc
 * gets a mapping of its own past its end, advised the same way. */
#include "hak_test.h"

#include "internal.h"

#include <sys/mman.h>

#define BLOCK 4096
#define NBLK 1536 /* 6 MiB: two segments */
#define LARGE ((size_t)6 << 20)

static unsigned char *blk[NBLK];

/* Whether the kernel mapping holding `p` carries the VmFlags `flag`; -1 if
 * smaps does not list it. */
static int vma_has_flag(const void *p, const char *flag) {
  FILE *f = fopen("/proc/self/smaps", "r");
  REQUIRE(f != NULL);
  char line[512];
  int in = 0, found = -1;
  uintptr_t a = (uintptr_t)p;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = a >= lo && a < hi;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      char want[8];
      snprintf(want, sizeof want, " %s", flag);
      found = strstr(line + 8, want) != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

/* One child: HAKMEM_THP set to `value` (NULL: unset) before its first
 * allocation; `huge`: whether its segments must be advised. */
struct thp_case {
  const char *value;
  int huge;
};

static void run_case(void *arg) {
  const struct thp_case *c = arg;
  if (c->value)
    setenv("HAKMEM_THP", c->value, 1);
  else
    unsetenv("HAKMEM_THP");
  for (int i = 0; i < NBLK; i++) {
    blk[i] = hak_malloc(BLOCK);
    REQUIRE(blk[i] != NULL);
    memset(blk[i], i & 0xff, BLOCK);
  }
  int first = vma_has_flag(blk[0], "hg"), last = vma_has_flag(blk[NBLK - 1], "hg");
  CHECK_MSG(first == c->huge && last == c->huge,
            "HAKMEM_THP=%s: segments %s advised (first block: %d, last block: %d)",
            c->value ? c->value : "(unset)", c->huge ? "not" : "", first, last);
  unsigned char *big = hak_malloc(LARGE);
  REQUIRE(big != NULL);
  memset(big, 0x5a, LARGE);
  int lg = vma_has_flag(big, "hg");
  CHECK_MSG(lg == c->huge, "HAKMEM_THP=%s: a large block's mapping %s advised (%d)",
            c->value ? c->value : "(unset)", c->huge ? "not" : "", lg);
  CHECK(big[0] == 0x5a && big[LARGE - 1] == 0x5a);
  /* grown: a block of several kernel mappings (here a read-only page in
   * its middle, as a program's mprotect leaves it) that realloc grows in
   * place gets a mapping of its own after it (os_grow): advised like the
   * block (until 2026-11-28 it was not, and the grown part got no huge
   * pages) */
  uintptr_t mid = ((uintptr_t)big + LARGE / 2) & ~(uintptr_t)(hak_page_size() - 1);
  REQUIRE(mprotect((void *)mid, hak_page_size(), PROT_READ) == 0);
  unsigned char *grown = hak_realloc(big, 2 * LARGE);
  REQUIRE(grown != NULL);
  /* in place in the zone (the valgrind build moves every realloc) */
  CHECK_MSG(grown == big || hak_config_is("valgrind") || !os_zone_on(),
            "a %zu MiB block of several mappings was not grown in place (%p, now %p)", LARGE >> 20,
            (void *)big, (void *)grown);
  int past = vma_has_flag(grown + LARGE + LARGE / 2, "hg");
  CHECK_MSG(past == c->huge, "HAKMEM_THP=%s: the part realloc grew a block by %s advised (%d)",
            c->value ? c->value : "(unset)", c->huge ? "not" : "", past);
  memset(grown + LARGE, 0x5b, LARGE);
  CHECK(grown[0] == 0x5a && grown[LARGE - 1] == 0x5a && grown[2 * LARGE - 1] == 0x5b);
  if (grown == big) /* the program restores what it changed before the free (README) */
    REQUIRE(mprotect((void *)mid, hak_page_size(), PROT_READ | PROT_WRITE) == 0);
  hak_free(grown);
  for (int i = 0; i < NBLK; i++) {
    CHECK_MSG(blk[i][0] == (i & 0xff) && blk[i][BLOCK - 1] == (i & 0xff),
              "block %d lost its contents", i);
    hak_free(blk[i]);
  }
  CHECK_EQ(hak_heap_check(), 0);
}

int main(void) {
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) != 0)
    hak_test_skip("this kernel has no transparent huge pages");
  static const struct thp_case cases[] = {{"1", 1},   {NULL, 0}, {"0", 0},
                                          {"yes", 0}, {"11", 0}, {"", 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct hak_child ch;
    REQUIRE(hak_run_child(run_case, (void *)&cases[i], 60, &ch));
    if (ch.len)
      hak_test_write_(ch.out, ch.len);
    char how[128];
    CHECK_MSG(hak_child_exited(&ch, 0), "HAKMEM_THP=%s: child %s",
              cases[i].value ? cases[i].value : "(unset)",
              hak_child_describe(&ch, how, sizeof how));
    hak_child_free(&ch);
  }
  return hak_test_done();
}
