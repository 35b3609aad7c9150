/* The op trace of the trace configuration (-DHAK_TRACE=1): the recorder.
 *
 * Every traced call appends one struct hak_trace_rec (trace.h) to its
 * thread's buffer. Buffers are chains of chunks from mmap (never malloc, no
 * stdio); each thread's buffer is pushed once onto a global lock-free list
 * and never freed, so the records of threads that have exited are kept. A
 * record is published by a release store of its chunk's count, so a writer
 * running concurrently (another thread crashing) sees only whole records.
 *
 * The file named by HAKMEM_TRACE (read at the first traced call; no file,
 * no recording) is written:
 *   - at process exit (a late destructor),
 *   - on SIGSEGV, SIGBUS, SIGABRT, SIGILL (hakmem's own fatal errors call
 *     abort()): the handler writes the file with open/write/close only,
 *     restores the previous action and re-raises the signal,
 *   - by hak_trace_flush() (the stress watchdog calls it before exiting).
 * A fatal signal while the exit or a flush writes the file: the crash's
 * file replaces it, and the exit waits for the signal to end the process.
 * Each write rewrites the whole file: header, then every thread's records
 * numbered before the write began (threads that go on running while a
 * crashing thread writes do not extend it).
 * A fork child writes PATH.<pid> (its file starts with the parent's records
 * up to the fork). An exec'd program starts a trace of its own at PATH
 * (HAKMEM_TRACE is inherited): give programs that exec a path per run. A
 * trace another process wrote at PATH at a fatal signal while this one
 * recorded (a program it ran crashed) is kept: this one writes PATH.<pid>.
 * HAKMEM_TRACE_LIMIT_MB (default 1024) bounds the memory the buffers take;
 * beyond it records are counted as dropped and the header says truncated.
 * A call made while its thread's recorder runs (a signal handler that
 * interrupted it) cannot be recorded: it is counted as dropped too, and the
 * header says so (HAK_TRACE_F_REENTERED), so that no op goes missing unsaid.
 *
 * Overhead: one atomic fetch-add for the sequence number, a registry lookup
 * for the usable size of a returned block, a clock read (vDSO, no syscall), a
 * 64-byte store. */
#define _GNU_SOURCE /* secure_getenv */
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if HAK_TRACE_ON

#define FIRST_CHUNK_RECS 1024u /* a thread's first chunk: 64 KiB */
#define CHUNK_RECS 16384u      /* later chunks: 1 MiB */

struct trace_chunk {
  /* The next chunk, linked by the owner when this one is full: published
   * (release) after the new chunk's header is written, and read (acquire)
   * by write_file, which reaches it from this chunk's count, whose last
   * release came before the link was written. A plain pointer until
   * 2026-11-29: a data race with a flush (ThreadSanitizer, in a tsan build
   * of the recorder: test_trace_flush_race), and on a weakly ordered CPU
   * (aarch64, POWER) a flush could follow the link to a chunk whose `cap`
   * and `next` it did not see yet. */
  struct trace_chunk *_Atomic next;
  _Atomic uint32_t n; /* records published */
  uint32_t cap;
  struct hak_trace_rec rec[];
};

struct trace_buf {
  _Atomic(struct trace_buf *) next; /* global list */
  uint32_t tid;
  struct trace_chunk *_Atomic head;
  struct trace_chunk *cur;
};

enum { ST_UNINIT = 0, ST_ON = 1, ST_OFF = 2, ST_INIT = 3 };

static _Atomic uint64_t trace_seq;
static _Atomic int trace_state;
static char trace_path[4096];
static pid_t trace_pid; /* the process that read HAKMEM_TRACE (-1: none, a fork child) */
/* The pid in the header of the trace PATH held when trace_init read it (0:
 * none): a file written before this process recorded, not to be kept. */
static uint64_t trace_stale_pid;
static _Atomic(struct trace_buf *) trace_bufs;
static _Atomic uint32_t trace_next_tid;
static _Atomic uint64_t trace_bytes, trace_dropped;
static _Atomic uint64_t trace_reentered; /* calls not recorded: the recorder was busy */
static uint64_t trace_limit;
static _Atomic int trace_writing; /* 0, or the writer's kind: 1 exit or flush, 2 a fatal signal */
/* A thread is handling a fatal signal that will end the process: exit and
 * flush writers leave the file to it, and the exit waits for it. */
static _Atomic int trace_crashing;
static __thread int trace_in_write __attribute__((tls_model("initial-exec")));
static struct sigaction trace_old[NSIG];
static __thread struct trace_buf *trace_self __attribute__((tls_model("initial-exec")));
static __thread int trace_busy __attribute__((tls_model("initial-exec")));
/* The call this thread is in (hak_trace_begin), for the crash handler: op 0
 * when none, or when its record is being written. gen: bumped by every
 * pending_set, so that one interrupted by a signal handler's own (which
 * wrote its arguments over these) writes the call again. */
static __thread struct {
  uint64_t arg, a1, a2;
  volatile unsigned op, gen;
} trace_pending __attribute__((tls_model("initial-exec")));

static void pending_set(unsigned op, uint64_t arg, uint64_t a1, uint64_t a2) {
  unsigned g;
  do {
    g = ++trace_pending.gen;
    atomic_signal_fence(memory_order_seq_cst);
    trace_pending.op = 0; /* a signal meanwhile sees no half-written call */
    atomic_signal_fence(memory_order_seq_cst);
    trace_pending.arg = arg;
    trace_pending.a1 = a1;
    trace_pending.a2 = a2;
    atomic_signal_fence(memory_order_release); /* the handler sees the arguments with the op */
    trace_pending.op = op;
    atomic_signal_fence(memory_order_seq_cst);
    /* a handler's call since the bump: its arguments may have replaced some
     * of these (helper-82's review), write them again */
  } while (trace_pending.gen != g);
}

static const int trace_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL};

uint64_t hak_trace_next_seq(void) {
  return atomic_fetch_add_explicit(&trace_seq, 1, memory_order_relaxed);
}

static int write_file(unsigned flags, int signo, uint64_t lim, const struct hak_trace_rec *extra);

/* The recorder's system calls, made raw: glibc's open, read, write, close
 * and nanosleep are cancellation points, and a thread with a cancellation
 * request pending acted on it inside the recorder. Until 2026-11-28 it
 * unwound in trace_init's open (the recorder left initialising: every
 * later op of every thread waited for ever), in a flush's (the writer's
 * mark left taken: no trace written again, at exit or at a crash), or out
 * of the fatal-signal handler (a fault: no trace, and the thread vanished
 * where the process was to die by the signal); test_trace_cancel. Raw
 * calls are async-signal-safe, as the handler needs. */
static int sys_open(const char *path, int flags, mode_t mode) {
  return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}
static ssize_t sys_read(int fd, void *buf, size_t n) {
  return (ssize_t)syscall(SYS_read, fd, buf, n);
}
static ssize_t sys_write(int fd, const void *buf, size_t n) {
  return (ssize_t)syscall(SYS_write, fd, buf, n);
}
static void sys_close(int fd) {
  syscall(SYS_close, fd);
}

static void sleep_ms(void) {
  struct timespec ts = {0, 1000 * 1000};
  syscall(SYS_nanosleep, &ts, NULL);
}

struct hak_trace_call hak_trace_begin(unsigned op, const void *arg, size_t a1, size_t a2) {
  struct hak_trace_call outer = {trace_pending.arg, trace_pending.a1, trace_pending.a2,
                                 trace_pending.op};
  pending_set(op, (uintptr_t)arg, a1, a2);
  return outer;
}

/* After the record of a call a signal handler made inside another
 * allocation: that allocation is in flight again. Until 2026-11-28 the
 * handler's call left none, and a crash of the outer call after the
 * handler was missing from its own crash trace (test_trace_inflight_free,
 * nested). */
void hak_trace_end(struct hak_trace_call outer) {
  if (outer.op)
    pending_set(outer.op, outer.arg, outer.a1, outer.a2);
}

static void trace_on_fatal(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  int saved = errno;
  /* A fault re-executes its instruction; any other signal (abort, kill,
   * raise) is raised again below. */
  int raised = sig == SIGABRT || !si || si->si_code <= 0;
  /* The previous action ends the process (the default one, or ignored for
   * a fault, which the kernel then forces) unless it is the program's own
   * handler, which may recover (a runtime that takes SIGSEGV on purpose),
   * or ignored for a raised signal, which the raise below discards (abort
   * goes on to reset it and raise it again itself; a kill -ABRT of a
   * program that inherited SIGABRT ignored does not end it: until
   * 2026-11-28 that left the mark set, and the exit waited 10 s for a
   * crash that never came, then kept the signal's trace instead of its
   * own; repro/tests/steps.sh trace-signal-survived). */
  void (*old)(int) = trace_old[sig].sa_handler;
  int fatal = old == SIG_DFL || (old == SIG_IGN && !raised);
  if (fatal)
    atomic_store(&trace_crashing, 1);
  /* The trace ends with the crashing thread's last op: the ops other threads
   * numbered after it are left out (they go on running meanwhile). */
  uint64_t lim = atomic_load(&trace_seq);
  struct trace_buf *b = trace_self;
  if (b) {
    uint32_t n = atomic_load_explicit(&b->cur->n, memory_order_relaxed);
    if (n)
      lim = b->cur->rec[n - 1].seq + 1;
  }
  /* The thread died in a call recorded after it returns (an allocation,
   * realloc, usable_size): that call, the one that crashed, ends the file,
   * numbered `lim` (every record kept is below it). */
  struct hak_trace_rec in_flight, *extra = NULL;
  unsigned op = trace_pending.op;
  if (op) {
    atomic_signal_fence(memory_order_acquire);
    memset(&in_flight, 0, sizeof in_flight);
    in_flight.seq = lim;
    in_flight.arg = trace_pending.arg;
    in_flight.a1 = trace_pending.a1;
    in_flight.a2 = trace_pending.a2;
    /* a thread that dies in its first call has no id yet */
    in_flight.tid = b ? b->tid : atomic_fetch_add(&trace_next_tid, 1) + 1;
    in_flight.op = (uint16_t)op;
    in_flight.ms = os_now_ms();
    extra = &in_flight;
  }
  unsigned flags = HAK_TRACE_F_SIGNAL | (extra ? HAK_TRACE_F_INFLIGHT : 0);
  if (!write_file(flags, sig, lim, extra) && !trace_in_write) {
    /* Another thread was writing the file at exit or a flush: the crash's
     * file replaces it once that is done (until 2026-11-28 this handler
     * waited, and the exit went on meanwhile to _exit(0): the crash, the
     * exit status and the crash's trace were all lost; repro/tests/steps.sh
     * trace-crash-during-exit). A writer that crashed too keeps its file. */
    for (int i = 0; i < 5000 && atomic_load(&trace_writing) == 1; i++)
      sleep_ms();
    write_file(flags, sig, lim, extra);
  }
  /* Another thread is writing (it crashed too): let it finish before this
   * signal ends the process (at most about 5 s). */
  for (int i = 0; i < 5000 && !trace_in_write && atomic_load(&trace_writing); i++)
    sleep_ms();
  /* Back to the previous action (the default one unless the program had its
   * own), then let the signal take it: a fault re-executes the faulting
   * instruction; a raised signal (abort, kill) is raised again. */
  sigaction(sig, &trace_old[sig], NULL);
  if (raised)
    raise(sig);
  errno = saved;
}

/* The header of the trace at `path` (0: none readable), for its pid and
 * flags. Read from a regular file only: PATH may be a FIFO or a pipe
 * (HAKMEM_TRACE=>(zstd >t.zst), /dev/stdout), whose open for reading waits
 * for a writer and whose read waits for data, or takes the reader's (until
 * 2026-11-28 the exit hung there for ever; repro/tests/steps.sh
 * trace-fifo). open/fstat/read/close only (async-signal-safe; sys_*). */
static int trace_file_header(const char *path, struct hak_trace_header *h) {
  int fd = sys_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
  if (fd < 0)
    return 0;
  struct stat st;
  int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
           sys_read(fd, h, sizeof *h) == (ssize_t)sizeof *h &&
           memcmp(h->magic, HAK_TRACE_MAGIC, 8) == 0;
  sys_close(fd);
  return ok;
}

static uint64_t trace_file_pid(const char *path) {
  struct hak_trace_header h;
  return trace_file_header(path, &h) ? h.pid : 0;
}

/* HAKMEM_TRACE_LIMIT_MB, in MiB: decimal digits, else (say "64M", "-1",
 * "abc") the default of 1024 and a line that says so. Until 2026-11-28 the
 * digits before the first other character counted: "abc" was a limit of 0,
 * every record dropped, and the trace said only TRUNCATED (steps.sh
 * trace-limit). Saturating: a limit past what 64 bits of bytes hold is no
 * limit (until 2026-11-28 it wrapped, and 2^44 MB dropped every record). */
static uint64_t trace_limit_env(const char *l) {
  if (!l || !*l)
    return 1024;
  uint64_t mb = 0;
  const char *d = l;
  for (; *d >= '0' && *d <= '9'; d++)
    mb = mb >= (UINT64_MAX >> 20) / 10 ? UINT64_MAX >> 20 : mb * 10 + (uint64_t)(*d - '0');
  if (*d == '\0')
    return mb;
  hak_msg_t m = {.len = 0};
  msg_str(&m, "hakmem: HAKMEM_TRACE_LIMIT_MB=");
  for (size_t i = 0; i < 64 && l[i]; i++) /* the line's end fits whatever its length */
    m.buf[m.len++] = l[i];
  msg_str(&m, " is not a decimal number of MiB: the limit is 1024\n");
  msg_flush(&m);
  return 1024;
}

static void trace_init(void) {
  int expect = ST_UNINIT;
  if (!atomic_compare_exchange_strong(&trace_state, &expect, ST_INIT)) {
    /* another thread reads the environment and installs the signal
     * handlers: a few calls long, but it may be preempted (spin_wait) */
    for (unsigned round = 0; atomic_load_explicit(&trace_state, memory_order_acquire) == ST_INIT;)
      spin_wait(&round);
    return;
  }
  HAK_TEST_HOOK(HAK_HOOK_TRACE_INIT, NULL);
  /* secure_getenv: under secure execution (setuid, setgid, capabilities)
   * the file the environment names is not written with the program's
   * privileges (until 2026-11-28 getenv: a setuid program linked with this
   * build wrote its trace wherever its caller said; test_trace_secure) */
  const char *p = secure_getenv("HAKMEM_TRACE");
  size_t n = p ? strlen(p) : 0;
  if (n == 0 || n >= sizeof trace_path - 24) {
    atomic_store_explicit(&trace_state, ST_OFF, memory_order_release);
    return;
  }
  memcpy(trace_path, p, n + 1);
  if (!trace_pid) /* a fork child's init keeps hak_trace_fork_child's -1 */
    trace_pid = getpid();
  trace_stale_pid = trace_file_pid(trace_path);
  trace_limit = trace_limit_env(secure_getenv("HAKMEM_TRACE_LIMIT_MB")) << 20;
  for (size_t i = 0; i < sizeof trace_signals / sizeof trace_signals[0]; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = trace_on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    sigaction(trace_signals[i], &sa, &old);
    /* a second init (a fork child's, hak_trace_fork_child) may find this
     * handler installed already: the program's saved one stays */
    if (old.sa_sigaction != trace_on_fatal)
      trace_old[trace_signals[i]] = old;
  }
  atomic_store_explicit(&trace_state, ST_ON, memory_order_release);
}

static struct trace_chunk *chunk_map(uint32_t cap, size_t extra, void **front) {
  size_t bytes = extra + sizeof(struct trace_chunk) + (size_t)cap * sizeof(struct hak_trace_rec);
  bytes = (bytes + OS_PAGE_SIZE - 1) & ~(OS_PAGE_SIZE - 1);
  if (atomic_fetch_add(&trace_bytes, bytes) + bytes > trace_limit) {
    atomic_fetch_sub(&trace_bytes, bytes);
    return NULL;
  }
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return NULL;
  if (front)
    *front = m;
  struct trace_chunk *c = (struct trace_chunk *)((char *)m + extra);
  atomic_store_explicit(&c->next, NULL, memory_order_relaxed); /* not published yet */
  atomic_store_explicit(&c->n, 0, memory_order_relaxed);
  c->cap = cap;
  return c;
}

static struct trace_buf *buf_new(void) {
  void *front = NULL;
  struct trace_chunk *c = chunk_map(FIRST_CHUNK_RECS, 64, &front);
  if (!c)
    return NULL;
  struct trace_buf *b = front;
  b->tid = atomic_fetch_add(&trace_next_tid, 1) + 1;
  atomic_store_explicit(&b->head, c, memory_order_relaxed);
  b->cur = c;
  struct trace_buf *old = atomic_load(&trace_bufs);
  do
    atomic_store_explicit(&b->next, old, memory_order_relaxed);
  while (!atomic_compare_exchange_weak(&trace_bufs, &old, b));
  trace_self = b;
  return b;
}

/* Usable size of a block hakmem just handed out (no tracing, no checks). */
static size_t block_usable(const void *p) {
  hak_segment_t *seg = ptr_segment_base(p);
  if (registry_kind(seg) == REG_SMALL)
    return ptr_page(seg, p)->block_size;
  hak_large_t *lg = registry_large(p);
  return lg ? large_usable(lg) : 0;
}

#if defined(HAK_PLANT_REMOTE_FREE)
/* Test-only planted bug, see trace.h. */
/* Counted per thread, so that the crash depends only on the thread's own
 * sequence of ops (and on which heap owns each block), not on how the
 * threads interleave: a replay in the same order crashes at the same op. */
static __thread unsigned plant_count __attribute__((tls_model("initial-exec")));

void hak_trace_plant_reset(void) {
  plant_count = 0;
}

static void plant_check(unsigned op, const void *p) {
  if ((op != TR_FREE && op != TR_FREE_SIZED && op != TR_FREE_ALIGNED_SIZED) || !p)
    return;
  hak_segment_t *seg = ptr_segment_base(p);
  if (registry_kind(seg) != REG_SMALL)
    return;
  hak_heap_t *o = atomic_load_explicit(&seg->owner, memory_order_relaxed);
  if (!o || o == hak_tls_heap)
    return;
  if (++plant_count < (unsigned)(HAK_PLANT_REMOTE_FREE))
    return;
  /* one crash per process: when two threads reach their count at once, the
   * second goes on (the process is dying anyway), so the message, the
   * signal and the end of the trace all name the same op */
  static _Atomic int fired;
  if (atomic_exchange_explicit(&fired, 1, memory_order_acq_rel))
    return;
  hak_msg_t m = {.len = 0};
  msg_str(&m, "hakmem: planted crash of ");
  msg_hex(&m, (uintptr_t)p);
  msg_str(&m, ": this thread's remote free number ");
  msg_dec(&m, plant_count);
  msg_str(&m, "\n");
  msg_flush(&m);
  abort();
}
#endif

void hak_trace_emit(uint64_t seq, unsigned op, const void *arg, size_t a1, size_t a2,
                    const void *result, int err) {
  /* The call returned: its record follows. A call recorded before it runs
   * (a free, a thread's exit) has no call in flight of its own: one made in
   * a signal handler that interrupted an allocation leaves that allocation
   * in flight (until 2026-11-28 it cleared it, and a crash of the
   * allocation after the handler was missing from its own crash trace;
   * test_trace_inflight_free). */
  if (op != TR_FREE && op != TR_FREE_SIZED && op != TR_FREE_ALIGNED_SIZED && op != TR_THREAD_EXIT)
    trace_pending.op = 0;
  int st = atomic_load_explicit(&trace_state, memory_order_acquire);
  if (st != ST_ON && !trace_busy) {
    if (st == ST_UNINIT || st == ST_INIT) {
      trace_busy = 1; /* getenv/sigaction must not re-enter */
      /* errno kept: the open of PATH, to read a stale trace's header, fails
       * with ENOENT where there is none yet (until 2026-11-28 the process's
       * first op left that in errno, a malloc that succeeded included;
       * test_trace_errno) */
      int saved = errno;
      trace_init();
      errno = saved;
      trace_busy = 0;
    }
    st = atomic_load_explicit(&trace_state, memory_order_acquire);
  }
  if (st == ST_ON && !trace_busy) {
    trace_busy = 1;
    int saved = errno;
    struct trace_buf *b = trace_self ? trace_self : buf_new();
    struct trace_chunk *c = b ? b->cur : NULL;
    uint32_t n = c ? atomic_load_explicit(&c->n, memory_order_relaxed) : 0;
    if (c && n == c->cap) {
      struct trace_chunk *nc = chunk_map(CHUNK_RECS, 0, NULL);
      if (nc) {
        atomic_store_explicit(&c->next, nc, memory_order_release);
        b->cur = nc;
        n = 0;
        HAK_TEST_HOOK(HAK_HOOK_TRACE_LINKED, nc);
      }
      c = nc;
    }
    if (c) {
      struct hak_trace_rec *r = &c->rec[n];
      r->seq = seq;
      r->arg = (uintptr_t)arg;
      r->a1 = a1;
      r->a2 = a2;
      r->result = (uintptr_t)result;
      r->usable = result && op != TR_USABLE_SIZE ? block_usable(result) : 0;
      r->tid = b->tid;
      r->op = (uint16_t)op;
      r->err = (int16_t)err;
      r->ms = os_now_ms();
      atomic_store_explicit(&c->n, n + 1, memory_order_release);
    } else {
      atomic_fetch_add_explicit(&trace_dropped, 1, memory_order_relaxed);
    }
    errno = saved;
    trace_busy = 0;
  } else if (st == ST_ON) {
    /* a signal handler's call interrupted this thread's recorder: its
     * record cannot be written, but the header says that one is missing */
    atomic_fetch_add_explicit(&trace_reentered, 1, memory_order_relaxed);
  }
#if defined(HAK_PLANT_REMOTE_FREE)
  plant_check(op, arg);
#endif
}

static void write_all(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n) {
    ssize_t w = sys_write(fd, s, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    s += w;
    n -= (size_t)w;
  }
}

void hak_trace_write(unsigned flags, int signo) {
  write_file(flags, signo, atomic_load(&trace_seq), NULL);
}

/* Whether PATH holds a trace another process wrote at a fatal signal while
 * this one recorded: a program this one started (fork and exec: it reads
 * the same HAKMEM_TRACE) that crashed. That file is the one to keep: this
 * process writes PATH.<pid> instead. (Until 2026-11-28 a shell or test
 * runner that exited after the program it ran had crashed replaced the
 * crash trace with its own; repro/tests/steps.sh trace-exec-crash.) The
 * file PATH held when this process began recording is a stale one,
 * replaced: told by its writer's pid, not by its time (until 2026-11-28 a
 * crash trace stamped in the same tick of the coarse clock as this
 * process's start counted as written while it recorded: a program that
 * crashed again right after an earlier run's crash wrote PATH.<pid> and
 * left the earlier trace at PATH, 38 of 59 runs in a row; trace-exec-crash). */
static int crash_trace_of_another(const char *path) {
  struct hak_trace_header h;
  return trace_file_header(path, &h) && (h.flags & HAK_TRACE_F_SIGNAL) &&
         h.pid != (uint64_t)getpid() && h.pid != trace_stale_pid;
}

/* 1 when it wrote the file; 0 when another writer (or this thread,
 * interrupted while writing) holds it, or, for an exit or a flush, a thread
 * is writing a crash's file. */
static int write_file(unsigned flags, int signo, uint64_t lim, const struct hak_trace_rec *extra) {
  if (atomic_load_explicit(&trace_state, memory_order_acquire) != ST_ON)
    return 0;
  int signal_writer = (flags & HAK_TRACE_F_SIGNAL) != 0;
  if (!signal_writer && atomic_load(&trace_crashing))
    return 0;
  int expect = 0;
  if (!atomic_compare_exchange_strong(&trace_writing, &expect, signal_writer ? 2 : 1))
    return 0;
  trace_in_write = 1;
  int saved = errno;
  /* The file holds the ops numbered before `lim`: at exit or a flush, those
   * numbered before the write began; at a fatal signal, those up to the
   * crashing thread's last op (its record is written before the call
   * touches memory). */
  /* a fork child (it inherits the parent's records) writes PATH.<its pid> */
  char path[sizeof trace_path];
  size_t pl = strlen(trace_path);
  memcpy(path, trace_path, pl + 1);
  pid_t me = getpid();
  if (me != trace_pid || crash_trace_of_another(path)) {
    char digits[24];
    int nd = 0;
    for (unsigned long v = (unsigned long)me; v || !nd; v /= 10)
      digits[nd++] = (char)('0' + v % 10);
    path[pl++] = '.';
    while (nd)
      path[pl++] = digits[--nd];
    path[pl] = 0;
  }
  int fd = sys_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    struct hak_trace_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, HAK_TRACE_MAGIC, 8);
    h.version = HAK_TRACE_VERSION;
    h.rec_size = sizeof(struct hak_trace_rec);
    uint64_t reentered = atomic_load(&trace_reentered);
    h.dropped = atomic_load(&trace_dropped);
    h.flags =
        flags | (h.dropped ? HAK_TRACE_F_TRUNCATED : 0) | (reentered ? HAK_TRACE_F_REENTERED : 0);
    h.dropped += reentered;
    h.signo = signo;
    h.pid = (uint64_t)getpid();
    for (struct trace_buf *b = atomic_load(&trace_bufs); b; b = atomic_load(&b->next))
      h.nthreads++;
    if (extra && extra->tid > h.nthreads)
      h.nthreads = extra->tid; /* a thread that died in its first call */
    const char *cfg = HAK_CONFIG_NAME;
    for (size_t i = 0; i < sizeof h.config - 1 && cfg[i]; i++)
      h.config[i] = cfg[i];
    write_all(fd, &h, sizeof h);
    for (struct trace_buf *b = atomic_load(&trace_bufs); b; b = atomic_load(&b->next))
      for (struct trace_chunk *c = atomic_load(&b->head); c;
           c = atomic_load_explicit(&c->next, memory_order_acquire)) {
        uint32_t n = atomic_load_explicit(&c->n, memory_order_acquire);
        /* a thread's records are in sequence order: keep those before the
         * snapshot (other threads go on running while the file is written) */
        uint32_t k = n;
        if (n && c->rec[n - 1].seq >= lim) {
          uint32_t lo = 0, hi = n;
          while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (c->rec[mid].seq >= lim)
              hi = mid;
            else
              lo = mid + 1;
          }
          k = lo;
        }
        write_all(fd, c->rec, (size_t)k * sizeof c->rec[0]);
        if (k < c->cap)
          break; /* the thread's current chunk, or the snapshot's end */
      }
    if (extra)
      write_all(fd, extra, sizeof *extra);
    sys_close(fd);
  }
  errno = saved;
  trace_in_write = 0;
  atomic_store(&trace_writing, 0);
  return 1;
}

void hak_trace_fork_child(void) {
  /* the fork was made while another thread wrote the file: that thread is
   * gone, and its flag would keep the child from ever writing its own file
   * (PATH.<pid>); the records are the child's copy, consistent (each count
   * is published after its record) */
  atomic_store(&trace_writing, 0);
  atomic_store(&trace_crashing, 0); /* (a thread of the parent's that was crashing) */
  /* The fork was made while another thread initialised the recorder: every
   * op of the child waited for that thread (ST_INIT) for ever (until
   * 2026-11-28; test_trace_fork_init). The child initialises it again. */
  int init = ST_INIT;
  atomic_compare_exchange_strong(&trace_state, &init, ST_UNINIT);
  /* An init in the child (that one, or the first op's of a child forked
   * before the parent had one) must not take the child for the process
   * that read HAKMEM_TRACE: its file stays PATH.<pid>, not the parent's
   * PATH, which the parent writes too (until 2026-11-28 the child wrote
   * PATH and the last writer's trace replaced the other's;
   * test_trace_fork_init). */
  if (!trace_pid)
    trace_pid = -1;
}

__attribute__((destructor(101))) static void trace_at_exit(void) {
  hak_trace_write(HAK_TRACE_F_EXIT, 0);
  /* Another thread took a fatal signal meanwhile: its handler writes the
   * crash's file, then the signal ends the process, as it would have
   * without the recorder. The exit must not end it first, with status 0,
   * killing that writer (at most about 10 s). */
  for (int i = 0; i < 10000 && atomic_load(&trace_crashing); i++)
    sleep_ms();
}

_Static_assert(sizeof(struct hak_trace_rec) == 64, "trace record layout");
_Static_assert(sizeof(struct hak_trace_header) == 64, "trace header layout");
#endif

void hak_trace_flush(void) {
#if HAK_TRACE_ON
  hak_trace_write(HAK_TRACE_F_FLUSH, 0);
#endif
}
