/* hakmem sets its heap up when the process has no pthread key left
 * (PTHREAD_KEYS_MAX taken before hakmem's constructor, or before a
 * dlopen of libhakmem.so): its own key cannot be created. Found by a
 * helper's probe: the failure was ignored and the heap pointer stored with
 * pthread_setspecific under key 0, which belongs to somebody else: it
 * replaced that key's value for the thread, and at the thread's exit that
 * key's destructor was called with hakmem's heap. Now hakmem stores nothing
 * under a key it does not own; such threads' heaps are not abandoned at
 * their exit (there is no destructor to do it), their blocks stay valid and
 * freeable anywhere.
 *
 * The keys are taken by a constructor that runs before hakmem's (priority
 * 101; hakmem's is linked into this program with the default priority). */
#include "hak_test.h"

#include <pthread.h>
#include <stdbool.h>

static pthread_key_t first; /* key 0 in a fresh process: the one hakmem wrote to */
static _Atomic int foreign_values;
static bool exhausted;

static void first_destructor(void *v) {
  if (v != (void *)&first)
    atomic_fetch_add(&foreign_values, 1);
}

__attribute__((constructor(101))) static void take_every_key(void) {
  if (pthread_key_create(&first, first_destructor) != 0)
    return;
  pthread_key_t k;
  while (pthread_key_create(&k, NULL) == 0) {
  }
  exhausted = true;
}

#define THREADS 8
static unsigned char *left[THREADS];

static void *thread_fn(void *arg) {
  int id = (int)(uintptr_t)arg;
  pthread_setspecific(first, &first); /* the key's own value, set before hakmem's heap */
  void *v[100];
  for (int i = 0; i < 100; i++) {
    REQUIRE((v[i] = hak_malloc(16 + (size_t)i * 40)) != NULL);
    memset(v[i], id, 16);
  }
  CHECK_MSG(pthread_getspecific(first) == &first,
            "thread %d: key %u holds %p after hakmem set up its heap, not its own value", id,
            (unsigned)first, pthread_getspecific(first));
  for (int i = 1; i < 100; i++)
    hak_free(v[i]);
  left[id] = v[0];
  return NULL;
}

int main(void) {
  if (!exhausted)
    hak_test_skip("could not create the first key");
  for (int i = 0; i < THREADS; i++) {
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, thread_fn, (void *)(uintptr_t)i) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
  }
  CHECK_MSG(atomic_load(&foreign_values) == 0,
            "key %u's destructor was called %d times with a value its owner never set",
            (unsigned)first, atomic_load(&foreign_values));
  for (int i = 0; i < THREADS; i++) {
    CHECK(left[i] != NULL && left[i][0] == i && left[i][15] == i);
    hak_free(left[i]);
  }
  void *p = hak_malloc(100);
  CHECK(p != NULL);
  hak_free(p);
  CHECK_EQ(hak_heap_check(), 0);
  return hak_test_done();
}
