/*
 * fuzz-util.h - what the broker-level fuzz targets share: a scratch
 * directory and quiet logging.
 *
 * Scratch directories go under $TMPDIR if set, else /dev/shm (the journal
 * syncs, which tmpfs makes free), else /tmp.  A target that crashes leaves
 * its directory behind: CI points TMPDIR at a directory it removes.
 */
#ifndef FERRY_TESTS_FUZZ_UTIL_H
#define FERRY_TESTS_FUZZ_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static inline const char *
fuzz_tmpdir(void)
{
	const char *t = getenv("TMPDIR");

	if (t && *t)
		return t;
	if (access("/dev/shm", W_OK) == 0)
		return "/dev/shm";
	return "/tmp";
}

/* mkdtemp() "<tmpdir>/ferry-fuzz-<name>.XXXXXX" into buf; exits on error. */
static inline void
fuzz_mkdtemp(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/ferry-fuzz-%s.XXXXXX", fuzz_tmpdir(), name);
	if (!mkdtemp(buf)) {
		perror(buf);
		exit(1);
	}
}

static inline int
fuzz_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

/* Remove p and everything below it. */
static inline void
fuzz_rm_rf(const char *p)
{
	nftw(p, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * The broker logs every rejected frame and torn journal at warn level or
 * above; millions of iterations would drown the fuzzer's own output.
 * FERRY_FUZZ_LOG=debug (or any level) turns logging back on to debug a
 * reproducer.
 */
static inline void
fuzz_quiet_logs(void)
{
	const char *l = getenv("FERRY_FUZZ_LOG");

	log_level = l ? log_level_parse(l) : LOG_ERROR - 1;
	if (l && log_level < 0)
		log_level = LOG_DEBUG;
}

#endif
