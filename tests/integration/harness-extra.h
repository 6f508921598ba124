/*
 * harness-extra.h - more ways to run ferryd for the crash and fault tests:
 * start it with extra arguments or environment variables, expect it to
 * fail at start-up, reconnect from a child process after a restart, and
 * read the journal's segment files.
 *
 * Builds on harness.h: the same struct ferryd, the same directories, and
 * every process is still stopped by its PID (ferryd_stop/ferryd_kill).
 */
#ifndef FERRY_TESTS_HARNESS_EXTRA_H
#define FERRY_TESTS_HARNESS_EXTRA_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/*
 * Like ferryd_start() (a fresh temporary directory, the NULL-terminated
 * extra arguments kept for restarts) but without starting ferryd.
 */
void ferryd_prepare(struct ferryd *d, ...);

/*
 * Start d, which must not be running, on its data directory with its
 * arguments, then extra (a NULL-terminated array, may be NULL; not kept
 * for restarts), with env (NULL-terminated "NAME=value" strings, may be
 * NULL) added to the environment.  Returns 0 once ferryd reported its
 * port (d->pid and d->port are set), or, if it exited first, its exit
 * status (> 0; 1000 + the signal number if a signal killed it).  Fails
 * the test if neither happens within 10 s.
 */
int ferryd_try_start(struct ferryd *d, char *const *extra, char *const *env);

/*
 * The port ferryd reported in DIR/port (dir is struct ferryd.dir), or 0 if
 * there is none yet.  Async-signal-safe enough for a forked child: no
 * Check calls.
 */
int ferryd_read_port(const char *dir);

/* DIR/data of d (the data directory), into buf. */
void ferryd_data_dir(const struct ferryd *d, char *buf, size_t len);

/* One record of a segment file (struct journal layout, journal.h). */
struct jrec {
	uint64_t off;		/* of its header in the file */
	uint32_t len;		/* payload bytes */
	uint64_t seq;
	uint8_t type;
};

/* A parsed segment: every well-formed record up to the end marker. */
struct jseg {
	char path[512];
	uint64_t size;		/* file size */
	uint64_t end;		/* offset one past the last record */
	struct jrec *recs;	/* malloc'd; freed by jseg_free() */
	size_t n;
};

#define JSEG_HDR 32		/* segment header bytes */
#define JREC_HDR 17		/* crc, len, seq, type */

/*
 * Read the newest segment file of data directory dir (fails the test if
 * there is none) and walk its records, checking their CRC32C; a record
 * that does not check fails the test.
 */
void jseg_read_last(const char *dir, struct jseg *s);
void jseg_free(struct jseg *s);

/* Number of journal-*.seg files in dir. */
int jseg_count(const char *dir);

/* CRC32C (Castagnoli) as the journal computes it. */
uint32_t test_crc32c(uint32_t crc, const void *p, size_t len);

#endif
