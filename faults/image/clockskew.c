/*
 * clockskew.so: shifts one process' wall clock by an offset the fault suite sets at run time.
 *
 * Why not libfaketime: redis-server is linked with jemalloc, whose start-up calls
 * clock_gettime() before libfaketime can resolve the real function (dlsym allocates), and
 * libfaketime gives up ("Unexpected recursive calls to clock_gettime()", libfaketime issue
 * #130, not fixable on its side). This shim needs neither dlsym nor malloc: it reads the clock
 * with raw system calls and adds the offset.
 *
 * The offset, in milliseconds (a signed decimal, e.g. "-1500"), is read from the file named by
 * RLOCK_CLOCK_OFFSET_FILE, at most every 100 ms of the monotonic clock. Only the wall clock
 * moves (CLOCK_REALTIME and its coarse variant, gettimeofday, time); monotonic clocks do not.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int64_t offset_ms;
static volatile int64_t checked_at_ms = -1000000;

static int raw_clock(clockid_t clock, struct timespec *ts) {
	return (int)syscall(SYS_clock_gettime, clock, ts);
}

static void refresh_offset(void) {
	struct timespec now;
	if (raw_clock(CLOCK_MONOTONIC, &now) != 0)
		return;
	int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	if (now_ms - checked_at_ms < 100)
		return;
	checked_at_ms = now_ms;
	const char *path = getenv("RLOCK_CLOCK_OFFSET_FILE");
	if (path == NULL)
		return;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		offset_ms = 0;
		return;
	}
	char buf[32];
	long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
	syscall(SYS_close, fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	int64_t value = 0, sign = 1;
	const char *p = buf;
	if (*p == '-' || *p == '+')
		sign = *p++ == '-' ? -1 : 1;
	while (*p >= '0' && *p <= '9')
		value = value * 10 + (*p++ - '0');
	offset_ms = sign * value;
}

static void shift(struct timespec *ts) {
	refresh_offset();
	int64_t ns = (int64_t)ts->tv_nsec + (offset_ms % 1000) * 1000000;
	ts->tv_sec += offset_ms / 1000 + (ns >= 1000000000 ? 1 : ns < 0 ? -1 : 0);
	ts->tv_nsec = ns >= 1000000000 ? ns - 1000000000 : ns < 0 ? ns + 1000000000 : ns;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
	int rc = raw_clock(clock, ts);
	if (rc == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE))
		shift(ts);
	return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
	(void)tz;
	struct timespec ts;
	int rc = clock_gettime(CLOCK_REALTIME, &ts);
	if (rc == 0) {
		tv->tv_sec = ts.tv_sec;
		tv->tv_usec = ts.tv_nsec / 1000;
	}
	return rc;
}

time_t time(time_t *out) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (out != NULL)
		*out = ts.tv_sec;
	return ts.tv_sec;
}
