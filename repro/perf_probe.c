/* repro/perf_probe.c: can this machine give rr the hardware performance
 * counters it needs? Opens a hardware counter of retired branch
 * instructions (rr counts retired conditional branches) for the calling
 * thread, as rr does. Prints "usable" or "unusable: <why>" and exits 0 / 1.
 * Built and run by scripts/rr-record.sh. */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
  struct perf_event_attr a;
  memset(&a, 0, sizeof a);
  a.size = sizeof a;
  a.type = PERF_TYPE_HARDWARE;
  a.config = PERF_COUNT_HW_BRANCH_INSTRUCTIONS;
  a.exclude_kernel = 1;
  a.exclude_hv = 1;
  a.disabled = 1;
  long fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
  if (fd < 0) {
    int e = errno;
    int paranoid = -99;
    FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "r");
    if (f) {
      if (fscanf(f, "%d", &paranoid) != 1)
        paranoid = -99;
      fclose(f);
    }
    printf("unusable: perf_event_open(hardware branch counter) failed: %s (errno %d)", strerror(e),
           e);
    if (e == ENOENT || e == EOPNOTSUPP || e == ENODEV)
      printf("; the CPU exposes no hardware performance counters (typically a virtual machine "
             "or container without PMU virtualization)");
    else if (e == EACCES || e == EPERM)
      printf("; not permitted (kernel.perf_event_paranoid = %d; rr needs <= 1, or CAP_PERFMON, "
             "or a seccomp profile that allows perf_event_open)",
             paranoid);
    printf("\n");
    return 1;
  }
  close((int)fd);
  printf("usable\n");
  return 0;
}
