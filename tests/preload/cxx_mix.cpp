// cxx_mix: a C++ program (and a library it dlopens) using what real programs
// use around the allocator, built WITHOUT hakmem (plain g++);
// scripts/test-preload.sh runs it without and with LD_PRELOAD and compares
// the two outputs (one line per part, the same under any allocator).
//
//   cxx_mix --expect-hakmem LIB   fail unless hakmem serves the program (blocks
//                                 from operator new, strdup in a thread, the
//                                 library's constructor, asprintf, getline
//                                 and open_memstream are hakmem's; its
//                                 invariants hold, hak_heap_check() == 0;
//                                 the 200 threads' exits leave at most 32
//                                 more blocks live: without the flush of an
//                                 exiting thread's cache, mutant
//                                 tcache-not-flushed-at-exit, 19226)
//   cxx_mix --expect-libc LIB     fail if hakmem is present (baseline run)
//
// LIB is the library built from this file with -DCXX_MIX_LIB. A hang
// (mutant fork-child-keeps-large-lock) fails by test-preload.sh's timeout.
// Parts:
// over-aligned new (alignas 64, 256, 4096; align_val_t up to 1 MiB) and
// sized delete; producer and consumer threads freeing each other's
// std::string and std::vector; exceptions thrown in 16 threads (the
// unwinder allocates); thread_local objects and pthread keys (one of them
// created after 40 others, so its index is past 32, re-set by its
// destructor twice) whose destructors free and allocate at thread exit;
// dlopen/dlclose of LIB, which allocates in its constructor, frees in its
// destructor and has a thread_local (dynamic TLS, malloc'd by glibc); fork
// while 4 threads allocate, the child allocating, starting a thread and
// exiting; posix_spawn, popen, system; setenv/putenv/unsetenv/clearenv
// churn; getaddrinfo("localhost"), getpwuid, qsort, open_memstream,
// regcomp, iconv, fopen/setvbuf/getline/fclose and pthread_getattr_np in 8
// threads, newlocale, backtrace_symbols, glob, wordexp, realpath, getcwd;
// malloc_usable_size of memalign/valloc/pvalloc/aligned_alloc blocks,
// mallinfo2, mallopt, malloc_trim, malloc_stats, malloc_info and the
// __libc_* names; atexit handlers and static destructors that free, and a
// detached thread still allocating when main returns. Exit 0 ok, 1 failure.
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <glob.h>
#include <iconv.h>
#include <locale.h>
#include <malloc.h>
#include <netdb.h>
#include <pthread.h>
#include <pwd.h>
#include <regex.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wordexp.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <queue>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifdef CXX_MIX_LIB
// ---- the library: allocates in its constructor, frees in its destructor
static std::vector<std::string> *lib_strings;
static char *lib_raw;
static std::string lib_global(5000, 'q');
thread_local std::vector<int> lib_tls;
__attribute__((constructor)) static void lib_ctor() {
  lib_strings = new std::vector<std::string>;
  for (int i = 0; i < 1000; i++)
    lib_strings->push_back(std::string(i % 100 + 20, 'a'));
  lib_raw = static_cast<char *>(malloc(100000));
  memset(lib_raw, 1, 100000);
}
__attribute__((destructor)) static void lib_dtor() {
  delete lib_strings;
  free(lib_raw);
}
extern "C" char *lib_make(int n) {
  lib_tls.resize(n);
  return strdup(std::string(n, 'z').c_str());
}
extern "C" void lib_free(char *p) {
  free(p);
}
extern "C" void *lib_raw_block() {
  return lib_raw;
}
extern "C" size_t lib_sum() {
  size_t s = 0;
  for (auto &x : *lib_strings)
    s += x.size();
  return s + lib_global.size();
}
#else

extern "C" {
void *__libc_malloc(size_t);
void __libc_free(void *);
void *__libc_realloc(void *, size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_memalign(size_t, size_t);
}
extern char **environ;

static std::atomic<int> failures;
static size_t (*hak_usable)(const void *);
#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "cxx_mix: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);               \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)
// under --expect-hakmem: p must be a block of hakmem's (its usable_size
// aborts, naming the pointer, on any other)
static void hakmem_block(const void *p, size_t n) {
  if (hak_usable && p)
    CHECK(hak_usable(p) >= n);
}

// hak_stats' first field, live_blocks (hakmem.h; the buffer outsizes the
// struct, which this program is built without), or 0 without hakmem
static size_t live_blocks() {
  static void (*stats)(void *) =
      reinterpret_cast<void (*)(void *)>(dlsym(RTLD_DEFAULT, "hak_stats"));
  static size_t buf[16384];
  if (!stats)
    return 0;
  stats(buf);
  return buf[0];
}
// under --expect-hakmem: the part left at most `slack` more blocks live than
// there were before it (what exiting threads had cached must have come back)
#define CHECK_LIVE(before, slack)                                                                  \
  do {                                                                                             \
    size_t after_ = live_blocks();                                                                 \
    if (hak_usable && after_ > (before) + (slack)) {                                               \
      fprintf(stderr, "cxx_mix: %s:%d: %zu blocks live, %zu before\n", __FILE__, __LINE__, after_, \
              static_cast<size_t>(before));                                                        \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

struct alignas(64) A64 {
  char c[72];
};
struct alignas(4096) A4k {
  char c[5000];
};
struct alignas(256) A256 {
  int x;
};

static void part_aligned() {
  std::vector<A64 *> a;
  std::vector<A4k *> b;
  std::vector<A256 *> c;
  for (int i = 0; i < 1500; i++) {
    a.push_back(new A64);
    b.push_back(new A4k);
    c.push_back(new A256[i % 17 + 1]);
    CHECK(reinterpret_cast<uintptr_t>(a.back()) % 64 == 0);
    CHECK(reinterpret_cast<uintptr_t>(b.back()) % 4096 == 0);
    CHECK(reinterpret_cast<uintptr_t>(c.back()) % 256 == 0);
    memset(b.back()->c, i, sizeof b.back()->c);
    if (i % 3 == 0) {
      delete a.back();
      a.pop_back();
    }
  }
  hakmem_block(b.back(), sizeof(A4k));
  for (auto p : a)
    delete p;
  for (auto p : b)
    delete p;
  for (auto p : c)
    delete[] p;
  for (size_t al = 8; al <= (1u << 20); al <<= 1) {
    void *p = ::operator new(al * 3 + 1, std::align_val_t(al));
    CHECK(reinterpret_cast<uintptr_t>(p) % al == 0);
    hakmem_block(p, al * 3 + 1);
    ::operator delete(p, al * 3 + 1, std::align_val_t(al));
    p = ::operator new[](al + 5, std::align_val_t(al), std::nothrow);
    CHECK(p && reinterpret_cast<uintptr_t>(p) % al == 0);
    ::operator delete[](p, std::align_val_t(al));
  }
  for (size_t s = 0; s < 300000; s = s * 2 + 1)
    ::operator delete(::operator new(s), s);
  bool threw = false;
  try {
    ::operator delete(::operator new(static_cast<size_t>(1) << 62));
  } catch (std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw);
  CHECK(::operator new(static_cast<size_t>(1) << 62, std::nothrow) == nullptr);
  puts("aligned new, sized delete: ok");
}

static void part_crossthread() {
  std::mutex m;
  std::condition_variable cv;
  std::queue<std::pair<std::string *, std::vector<int> *>> q;
  bool done = false;
  std::atomic<long> sum{0};
  std::vector<std::thread> cons;
  for (int c = 0; c < 3; c++)
    cons.emplace_back([&] {
      for (;;) {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return done || !q.empty(); });
        if (q.empty())
          return;
        auto it = q.front();
        q.pop();
        l.unlock();
        sum += static_cast<long>(it.first->size() + it.second->size());
        delete it.first;
        delete it.second;
      }
    });
  long want = 0;
  for (int round = 0; round < 10; round++) {
    std::vector<std::thread> prod;
    for (int p = 0; p < 3; p++)
      prod.emplace_back([&, p] {
        for (int i = 0; i < 2000; i++) {
          auto *s = new std::string((i * 31 + p) % 700, 'x');
          auto *v = new std::vector<int>((i * 17) % 3000);
          {
            std::lock_guard<std::mutex> l(m);
            q.push({s, v});
          }
          cv.notify_one();
        }
      });
    for (auto &t : prod)
      t.join();
    for (int p = 0; p < 3; p++)
      for (int i = 0; i < 2000; i++)
        want += (i * 31 + p) % 700 + (i * 17) % 3000;
  }
  {
    std::lock_guard<std::mutex> l(m);
    done = true;
  }
  cv.notify_all();
  for (auto &t : cons)
    t.join();
  CHECK(sum == want);
  puts("cross-thread frees: ok");
}

static void part_exceptions() {
  std::atomic<int> caught{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 16; t++)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 1000; i++) {
        try {
          std::vector<std::string> v(5, std::string(i % 100, 'e'));
          if (i % 2)
            throw std::runtime_error(std::string(i % 500 + 1, 'r'));
          throw std::vector<int>(i % 1000 + 1, t);
        } catch (std::runtime_error &e) {
          caught += e.what()[0] == 'r';
        } catch (std::vector<int> &v) {
          caught += v[0] == t;
        }
      }
    });
  for (auto &t : ts)
    t.join();
  CHECK(caught == 16 * 1000);
  puts("exceptions in 16 threads: ok");
}

struct TlsHolder {
  std::vector<std::string> v;
  char *raw;
  TlsHolder() : raw(static_cast<char *>(malloc(12345))) {
    for (int i = 0; i < 100; i++)
      v.emplace_back(200, 't');
  }
  ~TlsHolder() {
    free(raw);
    v.clear();
    v.shrink_to_fit();
    char *p = static_cast<char *>(malloc(777));
    memset(p, 1, 777);
    free(p);
    std::string s(10000, 'd');
    CHECK(s[9999] == 'd');
  }
};
thread_local TlsHolder tls_holder;
static pthread_key_t key_early, key_late;
static void key_dtor(void *p) {
  free(p);
  void *q = malloc(300);
  memset(q, 2, 300);
  void *r = malloc(100000);
  memset(r, 3, 100000);
  free(r);
  static thread_local int rounds;
  if (rounds++ < 2 && !pthread_getspecific(key_late))
    pthread_setspecific(key_late, q); // another round of destructors
  else
    free(q);
}
static void part_thread_exit() {
  for (int round = 0; round < 20; round++) {
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; t++)
      ts.emplace_back([] {
        tls_holder.v.emplace_back(500, 'y');
        pthread_setspecific(key_early, malloc(64));
        pthread_setspecific(key_late, malloc(4000));
      });
    for (auto &t : ts)
      t.join();
  }
  puts("thread_local and key destructors at thread exit: ok");
}

static void part_dlopen(const char *lib) {
  size_t want = 5000;
  for (int j = 0; j < 1000; j++)
    want += j % 100 + 20;
  for (int i = 0; i < 30; i++) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      fprintf(stderr, "cxx_mix: dlopen: %s\n", dlerror());
      failures++;
      return;
    }
    auto mk = reinterpret_cast<char *(*)(int)>(dlsym(h, "lib_make"));
    auto fr = reinterpret_cast<void (*)(char *)>(dlsym(h, "lib_free"));
    auto sum = reinterpret_cast<size_t (*)()>(dlsym(h, "lib_sum"));
    auto raw = reinterpret_cast<void *(*)()>(dlsym(h, "lib_raw_block"));
    char *p = mk(100 + i);
    CHECK(strlen(p) == static_cast<size_t>(100 + i));
    hakmem_block(raw(), 100000);
    if (i % 2)
      free(p);
    else
      fr(p);
    std::thread th([&] {
      char *q = mk(50);
      hakmem_block(q, 51);
      fr(q);
    });
    th.join();
    CHECK(sum() == want);
    dlclose(h);
  }
  puts("dlopen/dlclose: ok");
}

static void part_fork() {
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++)
    ts.emplace_back([&, t] {
      std::vector<void *> keep;
      unsigned x = t + 1;
      while (!stop) {
        x = x * 1103515245 + 12345;
        size_t sz = (x >> 8) % ((x & 1) ? 300 : 200000);
        keep.push_back(malloc(sz));
        if (keep.size() > 100) {
          size_t k = (x >> 4) % keep.size();
          free(keep[k]);
          keep[k] = keep.back();
          keep.pop_back();
        }
      }
      for (auto p : keep)
        free(p);
    });
  int bad = 0;
  for (int i = 0; i < 40; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<std::string> v;
      for (int j = 0; j < 2000; j++)
        v.emplace_back(j % 300, 'c');
      void *big = malloc(3 << 20);
      memset(big, 1, 3 << 20);
      free(big);
      std::thread th([] {
        std::string s(100000, 'z');
        if (s[99999] != 'z')
          _exit(4);
      });
      th.join();
      _exit(v.size() == 2000 ? 0 : 3);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    bad += !WIFEXITED(st) || WEXITSTATUS(st);
  }
  stop = true;
  for (auto &t : ts)
    t.join();
  CHECK(bad == 0);
  puts("fork while 4 threads allocate: ok");
}

static void part_spawn() {
  int bad = 0;
  for (int i = 0; i < 20; i++) {
    pid_t pid;
    char a0[] = "sh", a1[] = "-c", a2[] = "exit $(( $(echo 3) + 4 ))";
    char *argv[] = {a0, a1, a2, nullptr};
    if (posix_spawnp(&pid, "sh", nullptr, nullptr, argv, environ)) {
      bad++;
      continue;
    }
    int st = 0;
    waitpid(pid, &st, 0);
    bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 7);
  }
  CHECK(bad == 0);
  FILE *f = popen("seq 1 1000 | wc -l", "r");
  char buf[64] = {0};
  CHECK(f && fgets(buf, sizeof buf, f));
  CHECK(f && pclose(f) == 0);
  CHECK(atoi(buf) == 1000);
  CHECK(system("exit 5") == 5 << 8);
  puts("posix_spawn, popen, system: ok");
}

static void part_env() {
  std::vector<char *> keep;
  for (int i = 0; i < 5000; i++) {
    char name[32];
    snprintf(name, sizeof name, "CXXMIX%d", i % 500);
    setenv(name, std::string(i % 300, 'v').c_str(), 1);
    if (i % 7 == 0)
      unsetenv(name);
    if (i % 100 == 0) {
      char *s;
      CHECK(asprintf(&s, "CXXMIXP%d=%d", i, i) > 0);
      hakmem_block(s, strlen(s) + 1);
      putenv(s);
      keep.push_back(s);
    }
  }
  CHECK(getenv("CXXMIXP4900") && strcmp(getenv("CXXMIXP4900"), "4900") == 0);
  CHECK(getenv("CXXMIX499") && strlen(getenv("CXXMIX499")) == 4999 % 300);
  for (auto s : keep) {
    *strchr(s, '=') = 0;
    unsetenv(s);
    free(s);
  }
  std::string path = getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin";
  clearenv();
  setenv("PATH", path.c_str(), 1);
  puts("setenv/putenv churn: ok");
}

static void part_libc() {
  struct addrinfo hints = {}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  for (int i = 0; i < 20; i++) {
    int r = getaddrinfo("localhost", "80", &hints, &res);
    CHECK(r == 0);
    if (!r)
      freeaddrinfo(res);
  }
  for (int i = 0; i < 20; i++) {
    struct passwd *pw = getpwuid(0);
    CHECK(pw && pw->pw_name[0]);
  }
  std::vector<int> v(100000);
  unsigned x = 5;
  for (auto &e : v) {
    x = x * 1664525 + 1013904223;
    e = static_cast<int>(x >> 3);
  }
  qsort(v.data(), v.size(), sizeof(int), [](const void *a, const void *b) {
    int p = *static_cast<const int *>(a), q = *static_cast<const int *>(b);
    return (p > q) - (p < q);
  });
  bool sorted = true;
  for (size_t i = 1; i < v.size(); i++)
    sorted &= v[i - 1] <= v[i];
  CHECK(sorted);
  char *buf;
  size_t len;
  FILE *ms = open_memstream(&buf, &len);
  for (int i = 0; i < 100000; i++)
    fprintf(ms, "%d,", i);
  fclose(ms);
  CHECK(len == strlen(buf) && len == 588890);
  hakmem_block(buf, len + 1);
  free(buf);
  regex_t re;
  regmatch_t mt[3];
  CHECK(regcomp(&re, "^([a-z]+)-([0-9]{2,})$", REG_EXTENDED) == 0);
  CHECK(regexec(&re, "abc-123", 3, mt, 0) == 0 && mt[2].rm_so == 4);
  regfree(&re);
  for (int i = 0; i < 200; i++) {
    CHECK(regcomp(&re, "(a|b)*c[0-9]+", REG_EXTENDED) == 0);
    regfree(&re);
  }
  iconv_t cd = iconv_open("UTF-16LE", "UTF-8");
  CHECK(cd != reinterpret_cast<iconv_t>(-1));
  char in[] = "h\xc3\xa9llo w\xc3\xb6rld", out[64];
  char *ip = in, *op = out;
  size_t il = strlen(in), ol = sizeof out;
  CHECK(iconv(cd, &ip, &il, &op, &ol) != static_cast<size_t>(-1) && sizeof out - ol == 22);
  iconv_close(cd);
  std::string dir = "/tmp/cxx_mix." + std::to_string(getpid());
  CHECK(mkdir(dir.c_str(), 0700) == 0);
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; t++)
    ts.emplace_back([t, &dir] {
      std::string path = dir + "/f" + std::to_string(t);
      for (int i = 0; i < 200; i++) {
        FILE *f = fopen(path.c_str(), "w");
        CHECK(f);
        if (!f)
          return;
        setvbuf(f, nullptr, _IOFBF, 1 + i * 37);
        fprintf(f, "%d %s\n", i, std::string(i, 'w').c_str());
        fclose(f);
        f = fopen(path.c_str(), "r");
        char *line = nullptr;
        size_t n = 0;
        CHECK(getline(&line, &n, f) == static_cast<ssize_t>(i + 2 + std::to_string(i).size()));
        hakmem_block(line, n);
        free(line);
        fclose(f);
        pthread_attr_t at;
        CHECK(pthread_getattr_np(pthread_self(), &at) == 0);
        pthread_attr_destroy(&at);
        char *d = strdup(path.c_str()), *a;
        hakmem_block(d, path.size() + 1);
        CHECK(asprintf(&a, "%s-%d", d, i) > 0);
        free(d);
        free(a);
        locale_t l = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(nullptr));
        freelocale(l);
      }
      unlink(path.c_str());
    });
  for (auto &t : ts)
    t.join();
  rmdir(dir.c_str());
  void *bt[32];
  int n = backtrace(bt, 32);
  char **sy = backtrace_symbols(bt, n);
  CHECK(sy);
  free(sy);
  glob_t g;
  CHECK(glob("/usr/include/*.h", 0, nullptr, &g) == 0 && g.gl_pathc > 10);
  globfree(&g);
  wordexp_t we;
  CHECK(wordexp("a b $((1+2))", &we, 0) == 0 && we.we_wordc == 3 && !strcmp(we.we_wordv[2], "3"));
  wordfree(&we);
  char *rp = realpath("/usr/../usr/bin", nullptr);
  CHECK(rp && !strcmp(rp, "/usr/bin"));
  free(rp);
  free(getcwd(nullptr, 0));
  puts("libc functions that allocate, in 8 threads: ok");
}

static void part_glibc_api() {
  for (size_t s = 0; s < 3000000; s = s * 3 + 1) {
    void *p = memalign(64, s);
    CHECK(p && malloc_usable_size(p) >= s);
    memset(p, 1, malloc_usable_size(p));
    free(p);
    p = valloc(s);
    CHECK(reinterpret_cast<uintptr_t>(p) % 4096 == 0 && malloc_usable_size(p) >= s);
    memset(p, 1, malloc_usable_size(p));
    free(p);
    p = pvalloc(s);
    CHECK(reinterpret_cast<uintptr_t>(p) % 4096 == 0 && malloc_usable_size(p) >= s);
    memset(p, 1, malloc_usable_size(p));
    free(p);
    p = aligned_alloc(4096, s);
    CHECK(reinterpret_cast<uintptr_t>(p) % 4096 == 0 && malloc_usable_size(p) >= s);
    free(p);
  }
  struct mallinfo2 mi = mallinfo2();
  (void)mi;
  CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 20) == 1);
  CHECK(mallopt(M_MMAP_THRESHOLD, 4096) == 1);
  void *p = malloc(100000);
  memset(p, 1, 100000);
  free(p);
  int r = malloc_trim(0);
  CHECK(r == 0 || r == 1);
  int saved = dup(2), devnull = open("/dev/null", O_WRONLY); // malloc_stats writes to stderr
  dup2(devnull, 2);
  malloc_stats();
  dup2(saved, 2);
  close(saved);
  close(devnull);
  FILE *f = fopen("/dev/null", "w");
  CHECK(malloc_info(0, f) == 0);
  fclose(f);
  void *a = __libc_malloc(100), *b = malloc(200), *c = __libc_calloc(10, 10);
  void *d = __libc_memalign(256, 1000);
  CHECK(reinterpret_cast<uintptr_t>(d) % 256 == 0);
  hakmem_block(a, 100);
  hakmem_block(d, 1000);
  a = __libc_realloc(a, 5000);
  b = __libc_realloc(b, 10);
  CHECK(a && b && c);
  free(a);
  __libc_free(b);
  free(c);
  __libc_free(d);
  puts("glibc allocator API: ok");
}

static std::vector<char *> atexit_list;
static std::atomic<bool> started; // static: the thread outlives main's frame
static std::string *global_str = new std::string(1000, 'g');
struct GlobalDtor {
  std::vector<std::string> v{100, std::string(300, 'G')};
  ~GlobalDtor() {
    v.clear();
    delete global_str;
  }
} global_dtor;

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: cxx_mix --expect-hakmem|--expect-libc LIB\n");
    return 2;
  }
  bool want_hakmem = !strcmp(argv[1], "--expect-hakmem");
  hak_usable = reinterpret_cast<size_t (*)(const void *)>(dlsym(RTLD_DEFAULT, "hak_usable_size"));
  if (want_hakmem != (hak_usable != nullptr)) {
    fprintf(stderr, "cxx_mix: hakmem %s, expected %s\n", hak_usable ? "present" : "absent",
            want_hakmem ? "present" : "absent");
    return 1;
  }
  pthread_key_create(&key_early, key_dtor);
  pthread_key_t others[40]; // key_late's index past 32 (past hakmem's own key too)
  for (auto &k : others)
    pthread_key_create(&k, nullptr);
  pthread_key_create(&key_late, key_dtor);
  part_aligned();
  size_t live0 = live_blocks();
  part_crossthread();
  part_exceptions();
  part_thread_exit();
  CHECK_LIVE(live0, 32);
  part_dlopen(argv[2]);
  part_fork();
  part_spawn();
  part_env();
  part_libc();
  part_glibc_api();
  if (hak_usable) { // quiescent: hakmem's invariants over everything it owns
    auto check = reinterpret_cast<size_t (*)()>(dlsym(RTLD_DEFAULT, "hak_heap_check"));
    CHECK(check && check() == 0);
  }
  for (int i = 0; i < 100; i++)
    atexit_list.push_back(strdup("atexit"));
  atexit([] {
    for (auto p : atexit_list)
      free(p);
    atexit_list.clear();
    atexit_list.shrink_to_fit();
  });
  std::thread([] {
    for (;;) {
      std::string s(1000, 'd');
      std::vector<int> v(100);
      started = true;
    }
  }).detach(); // still allocating when main returns
  while (!started)
    std::this_thread::yield();
  printf("failures %d\n", failures.load());
  fflush(stdout);
  return failures != 0;
}
#endif
