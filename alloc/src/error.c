/* Named fatal errors. Each writes one line to stderr with write(2) (no
 * stdio, no malloc) and aborts: bad frees are never silently ignored, in
 * the release build too. Formats are documented in README.md. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void msg_str(hak_msg_t *m, const char *s) {
  while (*s && m->len < sizeof(m->buf) - 1)
    m->buf[m->len++] = *s++;
}

void msg_hex(hak_msg_t *m, uintptr_t v) {
  char tmp[2 + 16];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  msg_str(m, "0x");
  while (n > 0 && m->len < sizeof(m->buf) - 1)
    m->buf[m->len++] = tmp[--n];
}

void msg_dec(hak_msg_t *m, size_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n > 0 && m->len < sizeof(m->buf) - 1)
    m->buf[m->len++] = tmp[--n];
}

/* How long a write to a non-blocking fd 2 that takes nothing (its pipe
 * full: EAGAIN) waits for room before the line is given up; once one has
 * waited that long in vain, the reader is taken for stuck and no later
 * line waits (hak_stats_print writes dozens). */
#define MSG_WAIT_MS 2000
static _Atomic bool msg_stalled;

/* Writes the line to fd 2, whole. A write a signal interrupts (EINTR) is
 * made again; one a non-blocking fd 2 refuses (EAGAIN) waits for room
 * (poll, MSG_WAIT_MS); one to a pipe nobody reads any more fails with EPIPE
 * and raises no SIGPIPE (blocked for the write, and the one it made taken
 * back): a fatal error still ends the process by SIGABRT, as README says.
 * Until 2026-11-28 a write that failed was given up: a fatal error's line
 * was lost when fd 2 was a full non-blocking pipe, or a full pipe whose
 * write a timer signal interrupted (profilers); and with the reader gone
 * (`prog 2>&1 | head -1`) the process died by SIGPIPE instead of SIGABRT
 * (test_failure_paths, do_free_twice_hard_stderr). errno is kept.
 * Cancellation is disabled for the while: write, poll and sigtimedwait
 * are cancellation points, and hak_heap_check writes its reports under
 * the global lock. Until 2026-11-28 a thread with a cancellation request
 * pending unwound in the write: the lock stayed held, and every later
 * slow path, thread exit and fork waited for it for ever (test_cancel,
 * heap_check). (Restored to enabled, a deferred request is acted on at
 * the thread's next cancellation point, outside hakmem.) */
void msg_flush(hak_msg_t *m) {
  int saved = errno;
  int cancel_old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_old);
  sigset_t pipe_set, old, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  /* a SIGPIPE that was pending already is the program's, not to be taken */
  bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  bool masked = pthread_sigmask(SIG_BLOCK, &pipe_set, &old) == 0;
  bool broken = false;
  size_t off = 0;
  while (off < m->len) {
    ssize_t w = write(2, m->buf + off, m->len - off);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
        !atomic_load_explicit(&msg_stalled, memory_order_relaxed)) {
      struct pollfd pfd = {.fd = 2, .events = POLLOUT};
      int r;
      do
        r = poll(&pfd, 1, MSG_WAIT_MS);
      while (r < 0 && errno == EINTR);
      if (r > 0)
        continue;
      if (r == 0)
        atomic_store_explicit(&msg_stalled, true, memory_order_relaxed);
    }
    broken = w < 0 && errno == EPIPE;
    break;
  }
  if (masked) {
    if (broken && !was_pending && !sigismember(&old, SIGPIPE)) {
      struct timespec zero = {0, 0};
      sigtimedwait(&pipe_set, NULL, &zero); /* the SIGPIPE this write raised */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  pthread_setcancelstate(cancel_old, NULL);
  m->len = 0;
  errno = saved;
}

/* The thread whose fatal error ends the process: its process id in bits
 * 40-63, its mark (below) in bits 32-39 and its kernel thread id in bits
 * 0-31 (0: none yet; another process's: a fork child's inheritance, none
 * either), and how long another thread's fatal error waits for that end
 * before it reports its own. Linux ids fit in 22 bits (pid_max). */
static _Atomic uint64_t die_first;
#define DIE_WAIT_MS 10000
#define DIE_POLL_MS 10
#define DIE_PID(v) ((v) >> 40)
#define DIE_MARK(v) ((int)(((v) >> 32) & 0xff))
#define DIE_TID(v) ((uint32_t)(v))

/* A dying thread's mark: a signal it blocks on its way to abort(), so
 * that another thread can tell from outside whether it is still on that
 * way: one it did not block already, from SIGRTMAX down to SIGRTMIN + 3
 * (the low real-time signals are the ones libraries take first); 0 if
 * every one was blocked. abort() unblocks SIGABRT only; a SIGABRT handler
 * that recovers with siglongjmp restores the mask its sigsetjmp saved,
 * without the mark. Blocking it has no other effect on a thread that dies
 * (a signal sent to the process goes to another thread). */
static int die_mark(void) {
  sigset_t cur, one;
  if (pthread_sigmask(SIG_BLOCK, NULL, &cur) != 0)
    return 0;
  for (int sig = SIGRTMAX; sig >= SIGRTMIN + 3 && sig <= 0xff; sig--) {
    if (sigismember(&cur, sig))
      continue;
    sigemptyset(&one);
    sigaddset(&one, sig);
    return pthread_sigmask(SIG_BLOCK, &one, NULL) == 0 ? sig : 0;
  }
  return 0;
}

/* Whether thread `tid` of this process blocks signal `sig` (the SigBlk
 * line of /proc/self/task/<tid>/status): 1 or 0; -1 if that cannot be
 * read (the thread is gone, or there is no /proc). No stdio, no malloc,
 * and little stack (die() may run on a signal handler's small one): the
 * file is read a few hundred bytes at a time. */
static int thread_blocks(uint32_t tid, int sig) {
  static const char prefix[] = "/proc/self/task/", key[] = "\nSigBlk:";
  char path[sizeof prefix + 10 + sizeof "/status"], digits[10];
  int n = 0;
  do
    digits[n++] = (char)('0' + tid % 10);
  while ((tid /= 10) != 0);
  char *p = path;
  memcpy(p, prefix, sizeof prefix - 1);
  p += sizeof prefix - 1;
  while (n > 0)
    *p++ = digits[--n];
  memcpy(p, "/status", sizeof "/status");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  char buf[256];
  size_t len = 0;
  int found = -1;
  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
    buf[len] = 0;
    const char *at = strstr(buf, key);
    if (at && (size_t)(buf + len - at) >= sizeof key + 16) { /* the key, a tab, 16 digits */
      at += sizeof key - 1;
      while (*at == ' ' || *at == '\t')
        at++;
      uint64_t mask = 0;
      int i = 0;
      for (; i < 16; i++, at++) {
        int d = *at >= '0' && *at <= '9'   ? *at - '0'
                : *at >= 'a' && *at <= 'f' ? *at - 'a' + 10
                                           : -1;
        if (d < 0)
          break;
        mask = mask << 4 | (uint64_t)d;
      }
      if (i == 16 && sig >= 1 && sig <= 64)
        found = (int)((mask >> (sig - 1)) & 1);
      break;
    }
    /* the rest for the next read: from the key, or what may start it */
    size_t from = at ? (size_t)(at - buf) : len > sizeof key ? len - sizeof key : 0;
    memmove(buf, buf + from, len - from);
    len -= from;
  }
  close(fd);
  return found;
}

/* Whether the first thread (`first`, die_first's value) is still on its
 * way to the end: its mark still blocked. False once a SIGABRT handler
 * recovered it (siglongjmp) or it is gone; true when that cannot be told
 * (no mark, no /proc), so that the wait is the bounded one. */
static bool first_still_dying(uint64_t first, uint32_t self_tid, int self_mark) {
  int mark = DIE_MARK(first);
  if (!mark)
    return true;
  int blocks = thread_blocks(DIE_TID(first), mark);
  if (blocks >= 0)
    return blocks == 1;
  /* unreadable: gone, if this thread's own status can be read */
  return thread_blocks(self_tid, self_mark ? self_mark : SIGABRT) < 0;
}

/* One line per process: a thread whose fatal error comes while another
 * thread's is ending the process (its line written, its abort's SIGABRT
 * handler running: a crash reporter such as Python's faulthandler, which
 * pytest enables) waits for that end instead of writing a second line.
 * The wait is bounded (DIE_WAIT_MS), and ends as soon as the first thread
 * is seen off its way to the end: its SIGABRT handler recovered with
 * siglongjmp (its mark unblocked), or it is gone. Until 2026-11-28 it
 * waited the full 10 s then (test_failure_paths, do_two_errors_recovered).
 * Then this thread takes the first's place, so that a third thread's
 * fatal error waits for this one's end (its SIGABRT handler's crash report)
 * as it would have for the first's: until 2026-11-28 every waiting thread
 * wrote its line once the first was seen recovered (test_failure_paths,
 * do_three_errors_recovered). The 10 s bound all the waits together.
 * The first thread's own later errors (one its SIGABRT handler makes) are
 * reported. Until 2026-11-28 every thread wrote its line
 * (test_failure_paths, do_two_errors). */
static __attribute__((noreturn)) void die(hak_msg_t *m) {
  int mark = die_mark(); /* before the claim: a thread that reads it finds the mark set */
  uint64_t pid = (uint64_t)getpid();
  uint32_t tid = (uint32_t)syscall(SYS_gettid);
  uint64_t self = pid << 40 | (uint64_t)mark << 32 | tid;
  uint64_t first = atomic_load(&die_first), until = 0;
  while (DIE_PID(first) != pid || DIE_TID(first) != tid) { /* not this thread's own again */
    if (DIE_PID(first) == pid) {
      if (!until)
        until = os_real_ms() + DIE_WAIT_MS;
      while (os_real_ms() < until && first_still_dying(first, tid, mark)) {
        struct timespec ts = {0, DIE_POLL_MS * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
      if (os_real_ms() >= until)
        break; /* waited long enough: the line all the same */
    }
    /* none yet, or the first survived or is gone: this thread is the one
     * now, unless another waiting thread took its place first (then that
     * one's end is waited for, within what is left of the 10 s) */
    if (atomic_compare_exchange_weak(&die_first, &first, self))
      break;
  }
  msg_str(m, "\n");
  msg_flush(m);
  abort();
}

/* Every named error starts here: the thread is on its way to abort(), and
 * no cancellation point on that way (the report's write, die's wait for
 * another thread's abort, large_holds' and large_place's waits for the
 * large lock, err_invalid's for the global lock: nanosleep) may act on a
 * pending cancellation request. Until
 * 2026-11-28 the thread unwound there, silently: no report, no abort, and
 * the program went on after its double free (test_cancel, double_free,
 * deep_interior). Not restored: the errors never return. */
static void err_begin(void) {
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
}

/* " (size class <n>)" for a small block, " (large block)" for block_size 0. */
static void msg_block(hak_msg_t *m, size_t block_size) {
  if (!block_size) {
    msg_str(m, " (large block)");
    return;
  }
  msg_str(m, " (size class ");
  msg_dec(m, block_size);
  msg_str(m, ")");
}

/* "hakmem: invalid <op> of 0x<p>" */
static void msg_invalid(hak_msg_t *m, const char *op, const void *p) {
  msg_str(m, "hakmem: invalid ");
  msg_str(m, op);
  msg_str(m, " of ");
  msg_hex(m, (uintptr_t)p);
}

void err_double_free(const char *op, const void *p, size_t block_size) {
  err_begin();
  hak_msg_t m = {.len = 0};
  if (strcmp(op, "free") == 0 || strcmp(op, "free_sized") == 0) {
    msg_str(&m, "hakmem: double free of ");
  } else {
    msg_str(&m, "hakmem: ");
    msg_str(&m, op);
    msg_str(&m, " of freed block ");
  }
  msg_hex(&m, (uintptr_t)p);
  msg_block(&m, block_size);
  die(&m);
}

/* p in no range hakmem owns now ("not allocated by hakmem"), unless it
 * lies past the first 4 MiB of a large block's range (the registry marks
 * only the first) or is a large block's start unmapped by a free (a
 * double free: remembered among the recently freed). */
static __attribute__((noreturn)) void name_unowned(hak_msg_t *m, const char *op, const void *p) {
  if (large_recently_freed(p))
    err_double_free(op, p, 0);
  bool held = large_holds(p);
  /* Again, after large_holds had the large lock: another thread's free of
   * the block, which unregisters its range and remembers it (note_gone)
   * under that lock, may have done the first before this thread read the
   * registry and the second only after the look above. Until 2026-11-28
   * such a double free was "not allocated by hakmem"
   * (test_large_double_free_race, unregistered; hook
   * HAK_HOOK_LARGE_UNREGISTERED). */
  if (large_recently_freed(p))
    err_double_free(op, p, 0);
  if (held) { /* past the first 4 MiB of a large block's range */
    msg_str(m, ": not the start of an allocated block");
    die(m);
  }
  msg_str(m, ": not allocated by hakmem");
  die(m);
}

/* Classifies a pointer that failed the fast checks and reports it. */
void err_invalid(const char *op, const void *p) {
  err_begin();
  hak_msg_t m = {.len = 0};
  msg_invalid(&m, op, p);
  unsigned kind = registry_kind(p);
  if (kind == REG_LARGE || kind == REG_HUGE) {
    /* a large block's range: its header is read under the large lock,
     * where the registry still names it (large_place): another thread may
     * be freeing the block, and its mapping gone, since the caller looked */
    HAK_TEST_HOOK(HAK_HOOK_ERR_LARGE, (void *)p);
    switch (large_place(p)) {
    case LARGE_PLACE_FREED:
      err_double_free(op, p, 0);
    case LARGE_PLACE_OUTSIDE:
      /* other memory in the same 4 MiB range: another block's mapping that
       * started in the range below (the header page of a block aligned to
       * 4 MiB, when a block is there too: two aligned_alloc(4 MiB) in a
       * row), or not hakmem's. Until 2026-11-28 it was all "not allocated
       * by hakmem" (test_failure_paths, a header between two such blocks) */
      kind = REG_NONE;
      break;
    case LARGE_PLACE_GONE: /* freed meanwhile: named for what the range holds now */
      kind = registry_kind(p) == REG_SMALL ? REG_SMALL : REG_NONE;
      break;
    default: /* INSIDE; UNKNOWN: in a large block's range, at best */
      msg_str(&m, ": not the start of an allocated block");
      die(&m);
    }
  }
  if (kind == REG_NONE)
    name_unowned(&m, op, p);
  /* A small segment's range: its page descriptor is read under the global
   * lock, where the registry still names the segment. A segment leaves the
   * registry under that lock before it is unmapped (segment_release, with
   * the segment cache full; segment_cache_drop), and its header (slice 0)
   * is never purged, so it stays mapped until the unlock. Until 2026-11-28
   * the descriptor was read without the lock: a bad pointer into a segment
   * that another thread gave back meanwhile (its owner's last free or its
   * exit) read unmapped memory (SIGSEGV, no report; test_small_error_race,
   * unmapped_*, hook HAK_HOOK_ERR_SMALL; locked, hook
   * HAK_HOOK_ERR_SMALL_LOCKED). The page's owner changes it without that
   * lock: each field is read once, and the report made from those reads
   * (block_size read again after the check could be a page given back
   * since: 0, "(large block)"). The lock not had in time, the registry
   * is read again and the page read all the same, as before: the holder
   * is this thread (a signal handler's free), and no other can unmap the
   * segment meanwhile (test_small_error_race, self_locked), or a thread
   * that holds it for long (hak_heap_check's walk) and unmaps no segment
   * under it. */
  HAK_TEST_HOOK(HAK_HOOK_ERR_SMALL, (void *)p);
  int locked = err_lock_wait(&hak_global_lock);
  if (registry_kind(p) != REG_SMALL) {
    err_unlock_held(&hak_global_lock, locked); /* given back: what holds p now */
    name_unowned(&m, op, p);
  }
  HAK_TEST_HOOK(HAK_HOOK_ERR_SMALL_LOCKED, (void *)p);
  hak_page_t *pg = ptr_page(ptr_segment_base(p), p);
  uint8_t *start = page_start(pg);
  size_t bs = 0, cap = 0;
  if (__atomic_load_n(&pg->in_use, __ATOMIC_RELAXED)) {
    bs = __atomic_load_n(&pg->block_size, __ATOMIC_RELAXED);
    cap = atomic_load_explicit(&pg->capacity, memory_order_relaxed);
  }
  err_unlock_held(&hak_global_lock, locked);
  if (bs && (uint8_t *)p >= start) {
    size_t off = (size_t)((uint8_t *)p - start);
    size_t idx = off / bs;
    if (idx < cap && off % bs != 0) {
      msg_str(&m, ": interior pointer into block ");
      msg_hex(&m, (uintptr_t)(start + idx * bs));
      msg_block(&m, bs);
      die(&m);
    }
  }
  msg_str(&m, ": not the start of an allocated block");
  die(&m);
}

void err_size_mismatch(const char *op, const void *p, size_t size, size_t block_size) {
  err_begin();
  hak_msg_t m = {.len = 0};
  msg_invalid(&m, op, p);
  msg_str(&m, ": size ");
  msg_dec(&m, size);
  msg_str(&m, " larger than block");
  msg_block(&m, block_size);
  die(&m);
}

void err_align_mismatch(const char *op, const void *p, size_t alignment, size_t block_size) {
  err_begin();
  hak_msg_t m = {.len = 0};
  msg_invalid(&m, op, p);
  if (!alignment || (alignment & (alignment - 1))) {
    msg_str(&m, ": alignment ");
    msg_dec(&m, alignment);
    msg_str(&m, " is not a power of two");
  } else {
    msg_str(&m, ": block not aligned to ");
    msg_dec(&m, alignment);
  }
  msg_block(&m, block_size);
  die(&m);
}

void err_corruption(const void *p, const char *what) {
  err_begin();
  hak_msg_t m = {.len = 0};
  msg_str(&m, "hakmem: heap corruption at ");
  msg_hex(&m, (uintptr_t)p);
  msg_str(&m, ": ");
  msg_str(&m, what);
  die(&m);
}

void err_assert(const char *expr, const char *file, int line) {
  err_begin();
  hak_msg_t m = {.len = 0};
  msg_str(&m, "hakmem: assertion failed: ");
  msg_str(&m, expr);
  msg_str(&m, " at ");
  msg_str(&m, file);
  msg_str(&m, ":");
  msg_dec(&m, (size_t)line);
  die(&m);
}
