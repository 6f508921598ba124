/*
 * faultfs.c - an LD_PRELOAD shim that makes a full disk on demand.
 *
 * While the file named by FERRY_FAULT_FILE exists, pwrite, pwrite64,
 * fallocate, fallocate64, posix_fallocate and posix_fallocate64 on files
 * under the directory FERRY_FAULT_DIR fail with ENOSPC; otherwise they are
 * the real calls (dlsym(RTLD_NEXT)).  The control file is checked with
 * access() on every call, so a test turns the fault on and off by creating
 * and removing it.  A file is "under" the directory if /proc/self/fd/N
 * resolves to a path starting with FERRY_FAULT_DIR/.
 *
 * While the file named by FERRY_SLOW_FILE exists, fdatasync on such files
 * first sleeps 300 ms: a slow disk, to see what waits for a sync.
 *
 * While the file named by FERRY_CRASH_FILE exists, the first pwrite to
 * such a file kills the process with SIGKILL before writing anything: a
 * crash at the worst moment, just before the journal's write of a turn.
 */
/* Define pwrite and pwrite64 each under its own name, whatever the build
 * asks for. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Exported to take the place of libc's: the prototypes come from the
 * system headers; these only keep -Wmissing-prototypes quiet where the
 * headers redirect a name. */
ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off);
int fallocate64(int fd, int mode, off64_t off, off64_t len);
int posix_fallocate64(int fd, off64_t off, off64_t len);

/* 1 if the control file ctl exists and fd is a file under
 * FERRY_FAULT_DIR. */
static int
controlled(int fd, const char *ctl)
{
	const char *dir = getenv("FERRY_FAULT_DIR");
	char link[64], path[4096];
	size_t dlen;
	ssize_t n;

	if (!ctl || !dir || !*dir || access(ctl, F_OK) != 0)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) <= 0)
		return 0;
	path[n] = '\0';
	dlen = strlen(dir);
	return strncmp(path, dir, dlen) == 0 && path[dlen] == '/';
}

static int
faulty(int fd)
{
	return controlled(fd, getenv("FERRY_FAULT_FILE"));
}

/* A write, not a preallocation: crash here if asked to. */
static int
faulty_write(int fd)
{
	if (controlled(fd, getenv("FERRY_CRASH_FILE")))
		raise(SIGKILL);
	return faulty(fd);
}

#define REAL(name) \
	static __typeof__(name) *real; \
	if (!real) \
		*(void **)&real = dlsym(RTLD_NEXT, #name)

ssize_t
pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite);
	if (faulty_write(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, len, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	REAL(pwrite64);
	if (faulty_write(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, len, off);
}

int
fallocate(int fd, int mode, off_t off, off_t len)
{
	REAL(fallocate);
	if (faulty(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, mode, off, len);
}

int
fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	REAL(fallocate64);
	if (faulty(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, mode, off, len);
}

/* posix_fallocate reports its error as the return value. */
int
posix_fallocate(int fd, off_t off, off_t len)
{
	REAL(posix_fallocate);
	if (faulty(fd))
		return ENOSPC;
	return real(fd, off, len);
}

int
posix_fallocate64(int fd, off64_t off, off64_t len)
{
	REAL(posix_fallocate64);
	if (faulty(fd))
		return ENOSPC;
	return real(fd, off, len);
}

int
fdatasync(int fd)
{
	REAL(fdatasync);
	if (controlled(fd, getenv("FERRY_SLOW_FILE")))
		usleep(300 * 1000);
	return real(fd);
}
