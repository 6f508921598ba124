/*
 * harness-extra.c - start ferryd with extra arguments and environment,
 * expect start-up failures, and read journal segment files.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness-extra.h"

void
ferryd_prepare(struct ferryd *d, ...)
{
	va_list ap;

	va_start(ap, d);
	ferryd_vprepare(d, ap);
	va_end(ap);
}

void
ferryd_data_dir(const struct ferryd *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/data", d->dir);
}

int
ferryd_read_port(const char *dir)
{
	char path[300], buf[16];
	ssize_t n;
	int fd, port;

	snprintf(path, sizeof(path), "%s/port", dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	port = atoi(buf);
	return port > 0 && port < 65536 ? port : 0;
}

int
ferryd_try_start(struct ferryd *d, char *const *extra, char *const *env)
{
	const char *ferryd = getenv("FERRYD");
	char portfile[300], datadir[300];
	char *argv[64];
	uint64_t deadline;
	int n = 0, fd, status;

	ck_assert_msg(ferryd && *ferryd, "FERRYD is not set");
	ck_assert_int_eq(d->pid, 0);
	snprintf(portfile, sizeof(portfile), "%s/port", d->dir);
	ferryd_data_dir(d, datadir, sizeof(datadir));
	unlink(portfile);
	argv[n++] = (char *)ferryd;
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = portfile;
	argv[n++] = "--data-dir";
	argv[n++] = datadir;
	/* Stop at SIGTERM without draining (ferryd_stop() waits 10 s), as
	 * tests holding deliveries expect; test-drain passes its own, and a
	 * later argument wins. */
	argv[n++] = "--drain-timeout";
	argv[n++] = "0";
	for (int i = 0; i < d->nargs; i++)
		argv[n++] = d->args[i];
	for (int i = 0; extra && extra[i] && n < 63; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		fd = open("/dev/null", O_RDWR);
		dup2(fd, 0);
		dup2(fd, 1);
		for (int i = 0; env && env[i]; i++)
			putenv(env[i]);
		execv(argv[0], argv);
		_exit(127);
	}
	deadline = now_ms() + 10000;
	while (now_ms() < deadline) {
		if ((d->port = ferryd_read_port(d->dir)) > 0)
			return 0;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			if (WIFEXITED(status))
				return WEXITSTATUS(status);
			return 1000 + WTERMSIG(status);
		}
		usleep(5000);
	}
	ferryd_kill(d);
	ck_abort_msg("ferryd neither started nor exited within 10 s (see %s)",
	    d->log);
	return -1;
}

/* ---- journal files ---- */

uint32_t
test_crc32c(uint32_t crc, const void *p, size_t len)
{
	const uint8_t *b = p;

	/* Bitwise: slow, but independent of the broker's table code. */
	crc = ~crc;
	while (len--) {
		crc ^= *b++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int
is_seg(const char *name)
{
	size_t n = strlen(name);

	return n > 12 && !strncmp(name, "journal-", 8) &&
	    !strcmp(name + n - 4, ".seg");
}

int
jseg_count(const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(dp);
	while ((de = readdir(dp)))
		n += is_seg(de->d_name);
	closedir(dp);
	return n;
}

void
jseg_read_last(const char *dir, struct jseg *s)
{
	char last[256] = "";
	DIR *dp = opendir(dir);
	struct dirent *de;
	uint8_t *m;
	size_t cap = 0;
	uint64_t off;
	struct stat st;
	int fd;

	memset(s, 0, sizeof(*s));
	ck_assert_ptr_nonnull(dp);
	/* Fixed-width names: the greatest is the newest. */
	while ((de = readdir(dp)))
		if (is_seg(de->d_name) && strcmp(de->d_name, last) > 0)
			snprintf(last, sizeof(last), "%s", de->d_name);
	closedir(dp);
	ck_assert_msg(last[0], "no segment file in %s", dir);
	snprintf(s->path, sizeof(s->path), "%s/%s", dir, last);
	fd = open(s->path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	s->size = (uint64_t)st.st_size;
	ck_assert_uint_ge(s->size, JSEG_HDR);
	m = malloc(s->size);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(pread(fd, m, s->size, 0), (ssize_t)s->size);
	close(fd);
	ck_assert_int_eq(memcmp(m, "FERRYJNL", 8), 0);
	for (off = JSEG_HDR; off + JREC_HDR <= s->size;) {
		const uint8_t *h = m + off;
		uint32_t len = le32(h + 4);
		uint64_t seq = le64(h + 8);

		if (len == 0 && seq == 0 && le32(h) == 0 && h[16] == 0)
			break;
		ck_assert_msg(off + JREC_HDR + len <= s->size,
		    "%s: record at %llu runs past the end", s->path,
		    (unsigned long long)off);
		ck_assert_msg(le32(h) == test_crc32c(0, h + 4,
		    JREC_HDR - 4 + len), "%s: bad crc at offset %llu",
		    s->path, (unsigned long long)off);
		if (s->n == cap) {
			cap = cap ? cap * 2 : 64;
			s->recs = realloc(s->recs, cap * sizeof(*s->recs));
			ck_assert_ptr_nonnull(s->recs);
		}
		s->recs[s->n++] = (struct jrec){off, len, seq, h[16]};
		off += JREC_HDR + len;
	}
	s->end = off;
	free(m);
}

void
jseg_free(struct jseg *s)
{
	free(s->recs);
	s->recs = NULL;
	s->n = 0;
}
