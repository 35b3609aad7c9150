/* api_all: exercises the whole standard allocation API through the ordinary
 * libc names. Built WITHOUT hakmem (plain gcc); scripts/test-preload.sh runs
 * it with LD_PRELOAD=build/release/libhakmem.so.
 *
 *   api_all --expect-hakmem   fail unless hakmem serves the calls
 *   api_all --expect-libc     fail if hakmem is present (baseline run)
 *   api_all                   accept either
 *
 * Under hakmem it also checks hakmem's documented behaviour on bad input
 * (docs/SPEC-bad-input.md) where glibc differs. Exit 0 ok, 1 failure. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
static int checks;
static size_t (*hak_usable)(const void *);

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    checks++;                                                                                      \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "api_all: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);            \
    }                                                                                              \
  } while (0)

/* Hides constant arguments from the compiler's allocation-size warnings. */
static volatile size_t opaque_sink;
static size_t opaque(size_t x) {
  opaque_sink = x;
  return opaque_sink;
}

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
/* realloc/reallocarray failure keeps the old block: using it is correct. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

static int aligned(const void *p, size_t a) {
  return ((uintptr_t)p & (a - 1)) == 0;
}

/* Common checks on a live block of at least n bytes with alignment a. */
static void check_block(void *p, size_t n, size_t a) {
  CHECK(p != NULL);
  if (!p)
    return;
  CHECK(aligned(p, a < 16 ? 16 : a));
  size_t us = malloc_usable_size(p);
  CHECK(us >= n);
  if (hak_usable)
    CHECK(hak_usable(p) == us);
  memset(p, 0xAB, us); /* every usable byte may be written */
}

static void test_malloc_free(void) {
  static const size_t sizes[] = {0,     1,     8,     15,     16,      17,      24,
                                 100,   255,   256,   1000,   1024,    4095,    4096,
                                 10000, 65536, 65537, 100000, 1 << 20, 5 << 20, (16 << 20) + 3};
  void *ps[sizeof sizes / sizeof sizes[0]];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    ps[i] = malloc(sizes[i]);
    check_block(ps[i], sizes[i], 16);
  }
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    free(ps[i]);
  free(NULL);
  CHECK(malloc_usable_size(NULL) == 0);

  errno = 0;
  CHECK(malloc(opaque(SIZE_MAX)) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(malloc(opaque((size_t)PTRDIFF_MAX + 1)) == NULL && errno == ENOMEM);

  /* many small blocks, freed in a different order */
  enum { N = 20000 };
  void **v = malloc(N * sizeof *v);
  CHECK(v != NULL);
  if (!v)
    return;
  for (int i = 0; i < N; i++) {
    v[i] = malloc((size_t)(i % 300) + 1);
    CHECK(v[i] != NULL);
    if (v[i])
      memset(v[i], i & 0xff, (size_t)(i % 300) + 1);
  }
  for (int i = 0; i < N; i += 2)
    free(v[i]);
  for (int i = 1; i < N; i += 2) {
    unsigned char *b = v[i];
    CHECK(b == NULL || (b[0] == (i & 0xff) && b[i % 300] == (i & 0xff)));
    free(v[i]);
  }
  free(v);
}

static void test_calloc(void) {
  for (int round = 0; round < 2; round++) { /* second round gets recycled memory */
    unsigned char *p = calloc(1000, 3);
    CHECK(p != NULL);
    if (p) {
      size_t bad = 0;
      for (size_t i = 0; i < 3000; i++)
        bad += p[i] != 0;
      CHECK(bad == 0);
      memset(p, 0xFF, 3000);
      free(p);
    }
  }
  unsigned char *big = calloc(1, 3 << 20);
  CHECK(big != NULL && big[0] == 0 && big[(3 << 20) - 1] == 0);
  free(big);
  errno = 0;
  CHECK(calloc(opaque(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM);
  void *z = calloc(0, 0);
  CHECK(z != NULL);
  free(z);
}

static void test_realloc(void) {
  char *p = realloc(NULL, 10);
  CHECK(p != NULL);
  if (!p)
    return;
  memcpy(p, "0123456789", 10);
  static const size_t steps[] = {20, 100, 1000, 70000, 3 << 20, 500, 5};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    char *q = realloc(p, steps[i]);
    CHECK(q != NULL);
    if (!q)
      break;
    p = q;
    CHECK(memcmp(p, "01234", 5) == 0);
    CHECK(malloc_usable_size(p) >= steps[i]);
  }
  errno = 0;
  char *q = realloc(p, opaque(SIZE_MAX));
  CHECK(q == NULL && errno == ENOMEM);
  CHECK(memcmp(p, "01234", 5) == 0); /* p untouched */
  CHECK(realloc(p, 0) == NULL);      /* frees p (glibc behaviour) */

  int *a = reallocarray(NULL, 100, sizeof(int));
  CHECK(a != NULL);
  if (a) {
    for (int i = 0; i < 100; i++)
      a[i] = i;
    errno = 0;
    CHECK(reallocarray(a, opaque(SIZE_MAX / 2), 4) == NULL && errno == ENOMEM);
    CHECK(a[99] == 99); /* a kept */
    int *b = reallocarray(a, 1000, sizeof(int));
    CHECK(b != NULL && b[0] == 0 && b[99] == 99);
    free(b ? b : a);
  }
}

static void test_aligned(int is_hakmem) {
  for (size_t a = sizeof(void *); a <= ((size_t)4 << 20); a <<= 1) {
    void *p = (void *)0x1;
    CHECK(posix_memalign(&p, a, 100) == 0);
    check_block(p, 100, a);
    free(p);
    void *q = aligned_alloc(a, a * 2 + 1);
    check_block(q, a * 2 + 1, a);
    void *r = memalign(a, 33);
    check_block(r, 33, a);
    if (r) {
      void *r2 = realloc(r, 5000); /* realloc of an aligned block */
      CHECK(r2 != NULL);
      free(r2 ? r2 : r);
    }
    free(q);
  }
  void *sentinel = (void *)0x1234, *p = sentinel;
  CHECK(posix_memalign(&p, opaque(24), 100) == EINVAL && p == sentinel);
  CHECK(posix_memalign(&p, sizeof(void *) / 2, 100) == EINVAL && p == sentinel);
  CHECK(posix_memalign(&p, 64, opaque(SIZE_MAX - 100)) == ENOMEM && p == sentinel);

  long page = sysconf(_SC_PAGESIZE);
  void *v = valloc(100);
  check_block(v, 100, (size_t)page);
  free(v);
  void *pv = pvalloc(100);
  check_block(pv, (size_t)page, (size_t)page);
  free(pv);

  if (is_hakmem) { /* documented hakmem behaviour; glibc < 2.38 differs */
    errno = 0;
    CHECK(aligned_alloc(opaque(0), 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(aligned_alloc(opaque(48), 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(opaque(3), 10) == NULL && errno == EINVAL);
    void *m0 = malloc(0);
    CHECK(m0 != NULL && malloc_usable_size(m0) == 16);
    free(m0);
    void *x = aligned_alloc(1, 10); /* a < 16 behaves like 16 */
    check_block(x, 10, 16);
    free(x);
  }
}

/* libc-internal allocations must be freeable with free() and vice versa. */
/* malloc_trim is hakmem's under the preload: memory freed comes back to
 * the OS (1), and a second call finds nothing left to give (0). glibc's
 * answer depends on its heap's top, so the baseline run only calls it. */
static void test_trim(int is_hakmem) {
  enum { N = 1024, SZ = 16384 }; /* 16 MiB */
  static char *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = malloc(SZ);
    CHECK(p[i] != NULL);
    if (p[i])
      memset(p[i], 1, SZ);
  }
  for (int i = 0; i < N; i++)
    free(p[i]);
  int first = malloc_trim(0), second = malloc_trim(0);
  if (is_hakmem) {
    CHECK(dlsym(RTLD_DEFAULT, "malloc_trim") == dlsym(RTLD_DEFAULT, "hak_trim"));
    CHECK(first == 1);
    CHECK(second == 0);
  }
}

static void test_libc_interplay(void) {
  char *s = strdup("hakmem preload");
  CHECK(s != NULL && strcmp(s, "hakmem preload") == 0);
  free(s);
  char *line = NULL;
  size_t cap = 0;
  FILE *f = fmemopen((void *)"one\ntwo\nthree\n", 14, "r");
  CHECK(f != NULL);
  if (f) {
    int n = 0;
    while (getline(&line, &cap, f) > 0)
      n++;
    CHECK(n == 3);
    fclose(f);
  }
  free(line);
  char *out = NULL;
  CHECK(asprintf(&out, "%d-%s", 42, "x") == 4 && strcmp(out, "42-x") == 0);
  free(out);
}

/* Blocks allocated in one thread, freed in another. */
enum { XT_N = 5000 };
static void *xt_alloc(void *arg) {
  void **v = arg;
  for (int i = 0; i < XT_N; i++) {
    v[i] = malloc((size_t)(i % 500) + 8);
    if (v[i])
      memset(v[i], 0x5C, 8);
  }
  return NULL;
}

static void test_threads(void) {
  for (int round = 0; round < 4; round++) {
    void **v = calloc(XT_N, sizeof *v);
    pthread_t t;
    CHECK(v != NULL && pthread_create(&t, NULL, xt_alloc, v) == 0);
    if (!v)
      return;
    pthread_join(t, NULL);
    int bad = 0;
    for (int i = 0; i < XT_N; i++) {
      bad += v[i] == NULL || ((unsigned char *)v[i])[7] != 0x5C;
      free(v[i]);
    }
    CHECK(bad == 0);
    free(v);
  }
}

/* glibc's __libc_* names of its allocator (and cfree, its old free), which
 * libc.so.6 exports: a block from one family must be freeable by the other,
 * and under hakmem both are hakmem's. Looked up with dlsym, the way a
 * program linked against them finds them (first definition wins). */
static void test_libc_names(int is_hakmem) {
  void *(*l_malloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
  void *(*l_calloc)(size_t, size_t) =
      (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "__libc_calloc");
  void *(*l_realloc)(void *, size_t) =
      (void *(*)(void *, size_t))dlsym(RTLD_DEFAULT, "__libc_realloc");
  void (*l_free)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "__libc_free");
  void *(*l_memalign)(size_t, size_t) =
      (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "__libc_memalign");
  void *(*l_valloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_valloc");
  void *(*l_pvalloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_pvalloc");
  /* cfree is a compatibility symbol of glibc's (cfree@GLIBC_2.2.5, not a
   * default version), which old binaries bind to and dlsym does not find:
   * so only hakmem's, unversioned, is looked for */
  void (*l_cfree)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
  CHECK(l_malloc && l_calloc && l_realloc && l_free && l_memalign && l_valloc && l_pvalloc &&
        (l_cfree || !is_hakmem));
  if (!(l_malloc && l_calloc && l_realloc && l_free && l_memalign && l_valloc && l_pvalloc))
    return;
  if (!l_cfree)
    l_cfree = free;
  void *ours[7] = {l_malloc(100), l_calloc(10, 10), l_realloc(NULL, 100), l_memalign(64, 100),
                   l_valloc(100), l_pvalloc(100),   l_malloc(200000)};
  for (int i = 0; i < 7; i++) {
    CHECK(ours[i] != NULL);
    if (!ours[i])
      continue;
    if (is_hakmem) /* hakmem's block: hak_usable_size knows it */
      CHECK(hak_usable(ours[i]) >= 100);
    memset(ours[i], 0x5a, 100);
  }
  CHECK(((unsigned char *)ours[1])[0] == 0x5a && aligned(ours[3], 64) && aligned(ours[4], 4096));
  ours[0] = l_realloc(ours[0], 5000);
  CHECK(ours[0] != NULL && ((unsigned char *)ours[0])[99] == 0x5a);
  free(ours[0]); /* __libc_* blocks freed by free, cfree and __libc_free */
  l_cfree(ours[1]);
  for (int i = 2; i < 7; i++)
    (i % 2 ? free : l_free)(ours[i]);
  void *p = malloc(300), *q = calloc(3, 100);
  CHECK(p && q);
  p = l_realloc(p, 9000); /* malloc's blocks through the __libc_* names */
  CHECK(p != NULL);
  l_free(p);
  l_cfree(q);
}

/* Runs fn(a, b, c) in a child whose stderr is a pipe: whether it died of
 * SIGABRT with `expect` in what it wrote. */
static int aborts_with(void (*fn)(void *, size_t, size_t), void *a, size_t b, size_t c,
                       const char *expect) {
  int fd[2];
  if (pipe(fd))
    return 0;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    fn(a, b, c);
    _exit(0);
  }
  close(fd[1]);
  char out[512];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof out - 1 && (r = read(fd[0], out + n, sizeof out - 1 - n)) > 0)
    n += (size_t)r;
  out[n] = 0;
  close(fd[0]);
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid)
    return 0;
  int ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(out, expect) != NULL;
  if (!ok)
    fprintf(stderr, "api_all: child status 0x%x, stderr \"%s\", expected \"%s\"\n", st, out,
            expect);
  return ok;
}

static void (*x_free_sized)(void *, size_t);
static void (*x_free_aligned_sized)(void *, size_t, size_t);
static void call_free_sized(void *p, size_t size, size_t unused) {
  (void)unused;
  x_free_sized(p, size);
}
static void call_free_aligned_sized(void *p, size_t alignment, size_t size) {
  x_free_aligned_sized(p, alignment, size);
}

/* C23's free_sized and free_aligned_sized, which libhakmem.so exports
 * (glibc 2.36 has neither, so the baseline run has none to call): under
 * hakmem they are hakmem's, free blocks of the sizes and alignments they
 * were allocated with, and abort with the documented line for a size
 * larger than the block or a block not aligned as said (Bad input). Until
 * 2026-11-28 nothing called the interposed names. */
static void test_free_sized(int is_hakmem) {
  x_free_sized = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
  x_free_aligned_sized =
      (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
  if (is_hakmem) {
    CHECK(x_free_sized && (void *)x_free_sized == dlsym(RTLD_DEFAULT, "hak_free_sized"));
    CHECK(x_free_aligned_sized &&
          (void *)x_free_aligned_sized == dlsym(RTLD_DEFAULT, "hak_free_aligned_sized"));
  }
  if (!x_free_sized || !x_free_aligned_sized)
    return;
  static const size_t sizes[] = {0, 1, 100, 4096, 65536, 100000, 3 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = malloc(sizes[i]);
    CHECK(p != NULL);
    x_free_sized(p, sizes[i]);
    for (size_t a = 1; a <= ((size_t)1 << 22); a <<= 3) {
      void *q = aligned_alloc(a, sizes[i]);
      CHECK(q != NULL && aligned(q, a));
      x_free_aligned_sized(q, a, sizes[i]);
    }
  }
  x_free_sized(NULL, 10);
  x_free_aligned_sized(NULL, 64, 10);
  if (!is_hakmem)
    return;
  /* two blocks 112 bytes apart: at most one of them starts a 4 KiB page */
  char *b1 = malloc(100), *b2 = malloc(100);
  CHECK(b1 && b2);
  if (!b1 || !b2)
    return;
  char *mis = aligned(b1, 4096) ? b2 : b1;
  CHECK(aborts_with(call_free_sized, b1, 4096, 0, "invalid free_sized of ") &&
        aborts_with(call_free_sized, b1, 4096, 0, ": size 4096 larger than block"));
  CHECK(aborts_with(call_free_aligned_sized, mis, 4096, 100, ": block not aligned to 4096"));
  CHECK(aborts_with(call_free_aligned_sized, mis, 48, 100, ": alignment 48 is not a power of two"));
  free(b1);
  free(b2);
}

int main(int argc, char **argv) {
  int expect = 0; /* 1 hakmem, -1 libc, 0 either */
  if (argc > 1 && !strcmp(argv[1], "--expect-hakmem"))
    expect = 1;
  else if (argc > 1 && !strcmp(argv[1], "--expect-libc"))
    expect = -1;

  hak_usable = (size_t(*)(const void *))dlsym(RTLD_DEFAULT, "hak_usable_size");
  const char *(*hak_config)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "hak_config");
  int is_hakmem = hak_usable != NULL;
  if (expect == 1 && !is_hakmem) {
    fprintf(stderr, "api_all: hakmem is not loaded (dlsym(hak_usable_size) == NULL)\n");
    return 1;
  }
  if (expect == -1 && is_hakmem) {
    fprintf(stderr, "api_all: hakmem is loaded but was not expected\n");
    return 1;
  }
  if (is_hakmem) {
    void *p = malloc(100);
    CHECK(p != NULL && hak_usable(p) == malloc_usable_size(p) && hak_usable(p) >= 100);
    free(p);
  }

  test_malloc_free();
  test_calloc();
  test_realloc();
  test_aligned(is_hakmem);
  test_libc_interplay();
  test_threads();
  test_trim(is_hakmem);
  test_libc_names(is_hakmem);
  test_free_sized(is_hakmem);

  printf("api_all: allocator=%s%s%s checks=%d failures=%d\n", is_hakmem ? "hakmem" : "libc",
         is_hakmem && hak_config ? " config=" : "", is_hakmem && hak_config ? hak_config() : "",
         checks, failures);
  return failures ? 1 : 0;
}
