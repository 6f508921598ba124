/*
 * faultclock.c - an LD_PRELOAD shim that jumps the clocks on demand.
 *
 * clock_gettime() and time() return the real time plus an offset read
 * from the file named by FERRY_FAULT_CLOCK, which holds two decimal
 * integers: "WALL_MS MONO_MS".  WALL_MS is added to the wall
 * clocks (CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_TAI, time()),
 * MONO_MS to the others (CLOCK_MONOTONIC, _COARSE, _RAW,
 * CLOCK_BOOTTIME); CPU-time clocks are left alone.  libevent reads the
 * monotonic clock for its timers, so the monotonic offset moves ferryd's
 * timers too, as a real jump (a paused VM, a stopped process) would.
 *
 * A monotonic clock never goes back: the shim keeps the largest MONO_MS
 * it has seen, so lowering it has no effect.  The wall offset may go
 * either way.  A missing or unreadable file leaves the offsets as they
 * were.  The file is read at most every 10 ms (of real monotonic time),
 * so a test writes it (atomically: write a temporary file, rename it) and
 * waits a little longer than that before counting on the new offsets.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define REREAD_NS (10 * 1000000LL)

static int64_t wall_off;	/* ms; read and written atomically */
static int64_t mono_off;	/* ms; never decreases */
static int64_t next_read;	/* real monotonic ns of the next re-read */

static int
real_gettime(clockid_t id, struct timespec *ts)
{
	static __typeof__(clock_gettime) *real;

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "clock_gettime");
	if (real)
		return real(id, ts);
	return (int)syscall(SYS_clock_gettime, id, ts);
}

static int
parse_i64(const char **p, int64_t *v)
{
	const char *s = *p;
	int neg = 0;
	int64_t n = 0;

	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (*s < '0' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9' && n < INT64_MAX / 10 - 10)
		n = n * 10 + (*s++ - '0');
	*v = neg ? -n : n;
	*p = s;
	return 0;
}

/* Re-read the control file if it is due.  Threads may race here: each
 * then reads the same file, which is harmless. */
static void
refresh(void)
{
	const char *path = getenv("FERRY_FAULT_CLOCK");
	struct timespec now;
	int64_t ns, w, m, old;
	char buf[96];
	const char *p = buf;
	ssize_t n;
	int fd;

	if (!path || !*path)
		return;
	if (real_gettime(CLOCK_MONOTONIC_COARSE, &now) != 0)
		return;
	ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
	if (ns < __atomic_load_n(&next_read, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&next_read, ns + REREAD_NS, __ATOMIC_RELAXED);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (parse_i64(&p, &w) < 0 || parse_i64(&p, &m) < 0)
		return;
	__atomic_store_n(&wall_off, w, __ATOMIC_RELAXED);
	old = __atomic_load_n(&mono_off, __ATOMIC_RELAXED);
	while (m > old && !__atomic_compare_exchange_n(&mono_off, &old, m, 0,
	    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static void
shift(struct timespec *ts, int64_t ms)
{
	int64_t ns = (int64_t)ts->tv_nsec + (ms % 1000) * 1000000;

	ts->tv_sec += (time_t)(ms / 1000);
	if (ns < 0) {
		ns += 1000000000;
		ts->tv_sec--;
	} else if (ns >= 1000000000) {
		ns -= 1000000000;
		ts->tv_sec++;
	}
	ts->tv_nsec = (long)ns;
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
	int r = real_gettime(id, ts);

	if (r != 0)
		return r;
	switch (id) {
	case CLOCK_REALTIME:
	case CLOCK_REALTIME_COARSE:
	case CLOCK_TAI:
		refresh();
		shift(ts, __atomic_load_n(&wall_off, __ATOMIC_RELAXED));
		break;
	case CLOCK_MONOTONIC:
	case CLOCK_MONOTONIC_COARSE:
	case CLOCK_MONOTONIC_RAW:
	case CLOCK_BOOTTIME:
		refresh();
		shift(ts, __atomic_load_n(&mono_off, __ATOMIC_RELAXED));
		break;
	default:
		break;
	}
	return 0;
}

time_t
time(time_t *t)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return (time_t)-1;
	if (t)
		*t = ts.tv_sec;
	return ts.tv_sec;
}
