/* hakmem: a thread-caching malloc replacement.
 *
 * The prefixed API below works in every build configuration without
 * interposing libc. libhakmem.so additionally exports the standard names
 * (malloc, free, ...) so that it can be used with LD_PRELOAD.
 *
 * Behaviour on bad input is documented in README.md ("Bad input"). */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HAK_API __attribute__((visibility("default")))
#define HAK_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#else
#define HAK_API
#define HAK_MALLOC_ATTR
#endif

/* Number of small size classes; blocks above HAK_SMALL_MAX come from mmap. */
#define HAK_NUM_CLASSES 80
#define HAK_SMALL_MAX ((size_t)64 * 1024)

HAK_API HAK_MALLOC_ATTR void *hak_malloc(size_t size);
HAK_API void hak_free(void *ptr);
HAK_API HAK_MALLOC_ATTR void *hak_calloc(size_t count, size_t size);
HAK_API void *hak_realloc(void *ptr, size_t size);
HAK_API void *hak_reallocarray(void *ptr, size_t count, size_t size);
HAK_API int hak_posix_memalign(void **out, size_t alignment, size_t size);
HAK_API HAK_MALLOC_ATTR void *hak_aligned_alloc(size_t alignment, size_t size);
HAK_API HAK_MALLOC_ATTR void *hak_memalign(size_t alignment, size_t size);
HAK_API HAK_MALLOC_ATTR void *hak_valloc(size_t size);
HAK_API HAK_MALLOC_ATTR void *hak_pvalloc(size_t size);
HAK_API size_t hak_usable_size(const void *ptr);
/* free with a size hint (C23 free_sized / free_aligned_sized). A size larger
 * than the block's usable size, a block not aligned to `alignment`, or an
 * alignment that is not a power of two aborts like any other invalid free;
 * a smaller size is accepted. */
HAK_API void hak_free_sized(void *ptr, size_t size);
HAK_API void hak_free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* Returns the calling thread's cache of freed blocks (about 64 KiB per size
 * class, at least 4 blocks, which its next allocations reuse) to the
 * blocks' pages now, so pages it emptied are released. A thread's cache is
 * flushed at its exit; call this from a thread that stops allocating but
 * lives on. */
HAK_API void hak_thread_cache_flush(void);

/* Gives the OS back the memory hakmem holds free (malloc_trim in the
 * LD_PRELOAD build): the calling thread's cached blocks go back to their
 * pages, then every free page hakmem can reach at once is purged
 * (madvise MADV_DONTNEED): the calling thread's, those of other threads
 * not in an allocator slow path at that moment, the cached and abandoned
 * segments', and the large-block cache is unmapped. Other threads' cached
 * blocks stay (hak_thread_cache_flush in each). `pad` is ignored. Returns 1
 * if any memory was given back, 0 if there was none to give. Safe to call
 * from any thread while others allocate (not from a signal handler, like
 * the rest of the API); it costs a system call per free run. */
HAK_API int hak_trim(size_t pad);

/* Walks every segment, page, free list and large block hakmem owns and
 * verifies the allocator's invariants. Returns the number of violations and
 * names each one on stderr. Call it while no other thread is allocating or
 * freeing (it reads other threads' heaps without locks). */
HAK_API size_t hak_heap_check(void);

struct hak_class_stats {
  size_t block_size;  /* size of a block of this class */
  size_t live_blocks; /* blocks handed out and not yet freed */
  size_t free_blocks; /* blocks carved in pages but free */
  size_t pages;       /* pages currently holding this class */
};

struct hak_stats {
  size_t live_blocks;  /* small + large blocks handed out */
  size_t live_bytes;   /* their usable bytes */
  size_t mapped_bytes; /* bytes hakmem has mapped from the OS now (large cache too) */
  size_t segments;     /* small-block segments mapped */
  size_t abandoned_segments;
  size_t large_blocks; /* live blocks above HAK_SMALL_MAX */
  size_t large_bytes;
  size_t heaps_active; /* threads with a heap */
  struct hak_class_stats classes[HAK_NUM_CLASSES];
};

/* Fills *out with a snapshot. Safe while other threads allocate and free:
 * the figures are then counts in motion, exact once the others are still
 * (README.md). Takes the global lock for a walk of every segment. */
HAK_API void hak_stats(struct hak_stats *out);
/* Prints hak_stats() to stderr in a readable form (no malloc). */
HAK_API void hak_stats_print(void);

/* Size-class introspection, for tests and tools. */
HAK_API size_t hak_size_class_count(void);
/* The block size of class `cls` (0 .. count - 1), 0 for any other `cls`. */
HAK_API size_t hak_size_class_size(size_t cls);
/* Class index for a request of `size` bytes, or (size_t)-1 if large. */
HAK_API size_t hak_size_to_class(size_t size);

/* Test-only: unmaps everything hakmem has mapped and returns it to the state
 * of a fresh process, so that a fuzz input or test case starts from the same
 * allocator state every time. Every block ever allocated becomes invalid.
 * Call it only while no other thread exists (or ever touches hakmem again);
 * the calling thread gets a new heap on its next allocation. */
HAK_API void hak_test_reset(void);

/* The configuration this library was built as ("release", "debug", ...). */
HAK_API const char *hak_config(void);
/* Writes the op trace now (the `trace` build with HAKMEM_TRACE=path set;
 * a no-op otherwise). Async-signal-safe; the stress watchdog calls it. */
HAK_API void hak_trace_flush(void);

#ifdef __cplusplus
}
#endif
#endif /* HAKMEM_H */
