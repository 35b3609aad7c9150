// C++ programs on hakmem through LD_PRELOAD: this program is built without
// hakmem and run as
//   LD_PRELOAD=build/release/libhakmem.so build/<config>/tests/test_cpp_threads
// It first checks that hakmem really serves the program's allocations
// (hak_usable_size found with dlsym, malloc resolved to libhakmem, and a
// pointer from operator new accepted by hak_usable_size); otherwise it exits 77.
// Then 4 std::threads use std::vector, std::string, std::map,
// std::unordered_map, std::shared_ptr (destroyed on other threads), new[] /
// delete[] and over-aligned new, and every result is checked.
#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using usable_fn = size_t (*)(const void *);
using check_fn = size_t (*)();

std::atomic<int> failures{0};
usable_fn hak_usable = nullptr;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      std::fprintf(stderr, "%s:%d: FAILED CHECK(%s)\n", __FILE__, __LINE__, #cond);                \
    }                                                                                              \
  } while (0)

struct alignas(64) Line {
  unsigned char bytes[64];
};

struct alignas(256) Wide {
  std::uint64_t v[40];
};

// Passed between threads; destroyed wherever the last reference dies.
struct Payload {
  std::string name;
  std::vector<int> data;
  explicit Payload(int id) : name("payload-" + std::to_string(id)), data(100 + id % 50, id) {}
  bool ok(int id) const {
    if (name != "payload-" + std::to_string(id))
      return false;
    if (data.size() != static_cast<size_t>(100 + id % 50))
      return false;
    for (int x : data) {
      if (x != id)
        return false;
    }
    return true;
  }
};

std::mutex box_mu;
std::vector<std::pair<int, std::shared_ptr<Payload>>> box;

void worker(int t, int iters) {
  for (int it = 0; it < iters; it++) {
    // vector growth and sum
    std::vector<std::uint64_t> v;
    for (std::uint64_t i = 0; i < 20000; i++)
      v.push_back(i * t);
    std::uint64_t sum = 0;
    for (std::uint64_t x : v)
      sum += x;
    CHECK(sum == static_cast<std::uint64_t>(t) * (20000ull * 19999ull / 2));

    // strings
    std::string s;
    for (int i = 0; i < 500; i++)
      s += std::to_string(i) + ",";
    CHECK(s.substr(0, 8) == "0,1,2,3,");
    CHECK(s.size() == 1890);

    // ordered and hashed maps
    std::map<int, std::string> m;
    std::unordered_map<std::string, int> u;
    for (int i = 0; i < 2000; i++) {
      m[i * 7 % 2003] = std::to_string(i);
      u["k" + std::to_string(i)] = i;
    }
    for (int i = 0; i < 2000; i += 2) {
      m.erase(i * 7 % 2003);
      u.erase("k" + std::to_string(i));
    }
    CHECK(m.size() == 1000);
    CHECK(u.size() == 1000);
    CHECK(m.at(7 % 2003) == "1");
    CHECK(u.at("k1999") == 1999);

    // new[] / delete[]
    for (int k = 1; k < 64; k++) {
      int *a = new int[static_cast<size_t>(k) * 37];
      for (int i = 0; i < k * 37; i++)
        a[i] = i ^ k;
      for (int i = 0; i < k * 37; i++)
        CHECK(a[i] == (i ^ k));
      delete[] a;
    }

    // over-aligned new
    std::vector<Line *> lines;
    for (int k = 0; k < 200; k++) {
      Line *l = new Line;
      CHECK(reinterpret_cast<std::uintptr_t>(l) % 64 == 0);
      std::memset(l->bytes, k, sizeof l->bytes);
      lines.push_back(l);
    }
    for (int k = 0; k < 200; k++) {
      CHECK(lines[k]->bytes[63] == static_cast<unsigned char>(k));
      delete lines[k];
    }
    Wide *w = new Wide[3];
    CHECK(reinterpret_cast<std::uintptr_t>(w) % 256 == 0);
    CHECK(hak_usable(w) >= sizeof(Wide) * 3);
    delete[] w;
    std::vector<Line> lv(300);
    CHECK(reinterpret_cast<std::uintptr_t>(lv.data()) % 64 == 0);

    // shared_ptr handed to other threads, which drop them
    for (int k = 0; k < 50; k++) {
      int id = t * 1000000 + it * 100 + k;
      auto p = std::make_shared<Payload>(id);
      std::lock_guard<std::mutex> g(box_mu);
      box.emplace_back(id, std::move(p));
    }
    std::vector<std::pair<int, std::shared_ptr<Payload>>> taken;
    {
      std::lock_guard<std::mutex> g(box_mu);
      size_t n = box.size() / 2;
      taken.assign(box.begin(), box.begin() + static_cast<long>(n));
      box.erase(box.begin(), box.begin() + static_cast<long>(n));
    }
    for (auto &e : taken)
      CHECK(e.second->ok(e.first));
  }
}

} // namespace

int main() {
  hak_usable = reinterpret_cast<usable_fn>(dlsym(RTLD_DEFAULT, "hak_usable_size"));
  if (!hak_usable) {
    std::printf("SKIP test_cpp_threads: not running under hakmem (no hak_usable_size; "
                "run with LD_PRELOAD=build/release/libhakmem.so)\n");
    return 77;
  }
  // malloc must resolve to libhakmem itself: a sanitizer runtime linked into
  // the executable would intercept it first.
  Dl_info info{};
  void *m = dlsym(RTLD_DEFAULT, "malloc");
  if (!m || !dladdr(m, &info) || !info.dli_fname || !std::strstr(info.dli_fname, "libhakmem")) {
    std::printf("SKIP test_cpp_threads: malloc resolves to %s, not libhakmem (sanitizer "
                "runtime?)\n",
                info.dli_fname ? info.dli_fname : "?");
    return 77;
  }
  using config_fn = const char *(*)();
  auto config = reinterpret_cast<config_fn>(dlsym(RTLD_DEFAULT, "hak_config"));
  std::printf("running under hakmem (%s)\n", config ? config() : "?");

  void *p = ::operator new(100);
  CHECK(hak_usable(p) >= 100);
  ::operator delete(p);
  auto *line = new Line;
  CHECK(reinterpret_cast<std::uintptr_t>(line) % 64 == 0);
  CHECK(hak_usable(line) >= sizeof(Line));
  delete line;
  void *c = std::malloc(1000);
  CHECK(c != nullptr && hak_usable(c) >= 1000);
  std::free(c);

  int iters = 100;
  if (const char *s = std::getenv("HAK_TEST_SCALE")) {
    double f = std::atof(s);
    if (f > 0)
      iters = static_cast<int>(iters * f) > 0 ? static_cast<int>(iters * f) : 1;
  }
  std::vector<std::thread> threads;
  for (int t = 1; t <= 4; t++)
    threads.emplace_back(worker, t, iters);
  for (auto &th : threads)
    th.join();
  for (auto &e : box)
    CHECK(e.second->ok(e.first));
  box.clear();

  auto check = reinterpret_cast<check_fn>(dlsym(RTLD_DEFAULT, "hak_heap_check"));
  if (check)
    CHECK(check() == 0);

  if (failures) {
    std::printf("FAIL test_cpp_threads: %d check(s) failed\n", failures.load());
    return 1;
  }
  std::printf("PASS test_cpp_threads\n");
  return 0;
}
