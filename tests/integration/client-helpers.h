/*
 * client-helpers.h - libferry and CLI helpers shared by the integration
 * tests that talk to ferryd through the client library.
 *
 * Header-only (static inline) because meson builds each integration test
 * from its one source file plus the harness.  Every helper fails the test
 * (ck_assert) rather than returning an error, unless it says otherwise;
 * every wait is bounded.
 */
#ifndef FERRY_TESTS_CLIENT_HELPERS_H
#define FERRY_TESTS_CLIENT_HELPERS_H

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry.h"
#include "harness.h"

/* Connect to 127.0.0.1:port as name, with an I/O timeout of timeout_ms;
 * fails the test on error.  The caller ferry_close()s it. */
static inline struct ferry *
fc_connect_ms(int port, const char *name, int timeout_ms)
{
	struct ferry *f = ferry_connect("127.0.0.1", port, timeout_ms, name);

	ck_assert_ptr_nonnull(f);
	ck_assert_msg(ferry_err(f) == 0, "connect %s: %s", name,
	    ferry_errstr(f));
	return f;
}

static inline struct ferry *
fc_connect(int port, const char *name)
{
	return fc_connect_ms(port, name, 5000);
}

/* Subscribe with the given options (group NULL = default); returns sid. */
static inline uint64_t
fc_sub(struct ferry *f, const char *topic, const char *group,
    uint32_t prefetch, uint32_t ack_timeout_ms, uint32_t max_attempts)
{
	struct ferry_sub_opts o;
	uint64_t sid = 0;
	int r;

	memset(&o, 0, sizeof(o));
	o.group = group;
	o.prefetch = prefetch;
	o.ack_timeout_ms = ack_timeout_ms;
	o.max_attempts = max_attempts;
	r = ferry_subscribe(f, topic, &o, &sid);
	ck_assert_msg(r == 0, "subscribe %s: %s", topic, ferry_errstr(f));
	ck_assert_uint_gt(sid, 0);
	return sid;
}

/* The next message within timeout_ms; fails the test otherwise. */
static inline struct ferry_msg *
fc_next(struct ferry *f, int timeout_ms)
{
	struct ferry_msg *m = NULL;
	int r = ferry_next(f, timeout_ms, &m);

	ck_assert_msg(r == 0, "ferry_next: %d %s", r, ferry_errstr(f));
	ck_assert_ptr_nonnull(m);
	return m;
}

/* Assert that nothing (no message, no async error) arrives in ms. */
static inline void
fc_none(struct ferry *f, int ms)
{
	struct ferry_msg *m = NULL;
	int r = ferry_next(f, ms, &m);

	ck_assert_msg(r == FERRY_ETIMEOUT,
	    "expected nothing, got %d (%s) body '%.*s' attempt %u", r,
	    r == 0 ? "a message" : ferry_errstr(f),
	    m ? (int)(m->len > 40 ? 40 : m->len) : 0,
	    m ? (const char *)m->body : "", m ? m->attempt : 0);
}

/* Publish a NUL-terminated body, confirmed. */
static inline void
fc_pub(struct ferry *f, const char *topic, const char *body)
{
	int r = ferry_publish_sync(f, topic, body, strlen(body), NULL, NULL);

	ck_assert_msg(r == 0, "publish: %s", ferry_errstr(f));
}

/*
 * Publish messages with bodies "from" .. "to - 1" (decimal), pipelined and
 * all confirmed before returning.
 */
static inline void
fc_pub_range(struct ferry *f, const char *topic, int from, int to)
{
	struct ferry_confirms c;
	char body[16];

	for (int i = from; i < to; i++) {
		int len = snprintf(body, sizeof(body), "%d", i);

		ck_assert_int_eq(ferry_publish_pipelined(f, topic, body,
		    (size_t)len, NULL, NULL), 0);
	}
	ck_assert_int_eq(ferry_wait_confirms(f, 0, 10000, &c), 0);
	ck_assert_uint_eq(c.ok, (uint64_t)(to - from));
	ck_assert_uint_eq(c.failed, 0);
}

/* Publish n messages with bodies "0" .. "n - 1", all confirmed. */
static inline void
fc_pub_n(struct ferry *f, const char *topic, int n)
{
	fc_pub_range(f, topic, 0, n);
}

/* The body of m as an int (bodies made by fc_pub_range()). */
static inline int
fc_body_int(const struct ferry_msg *m)
{
	char *end;
	long v = strtol(m->body, &end, 10);

	ck_assert_msg(end != m->body && *end == '\0', "body '%s'",
	    (const char *)m->body);
	return (int)v;
}

/* 1 if m has header key=value. */
static inline int
fc_has_hdr(const struct ferry_msg *m, const char *key, const char *value)
{
	for (size_t i = 0; i < m->nhdr; i++)
		if (!strcmp(m->hdr[i].key, key) &&
		    !strcmp(m->hdr[i].value, value))
			return 1;
	return 0;
}

/*
 * Run the CLI like cli_run() but also collect its stderr into *err
 * (malloc'd, NUL-terminated).  The test process's stderr is redirected to
 * a file for the duration, which the child inherits.
 */
static inline int
fc_cli_run_err(int port, const char *in, char **out, char **err,
    int timeout_ms, const char *a1, const char *a2, const char *a3,
    const char *a4, const char *a5, const char *a6, const char *a7)
{
	char path[] = "/tmp/ferry-test-stderr-XXXXXX";
	int fd = mkstemp(path), saved, st;
	long len;
	FILE *f;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	fflush(stderr);
	saved = dup(2);
	ck_assert_int_ge(saved, 0);
	dup2(fd, 2);
	st = cli_run(port, in, out, timeout_ms, a1, a2, a3, a4, a5, a6, a7,
	    NULL);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	len = lseek(fd, 0, SEEK_END);
	ck_assert_int_ge(len, 0);
	*err = calloc(1, (size_t)len + 1);
	ck_assert_ptr_nonnull(*err);
	f = fdopen(fd, "r");
	ck_assert_ptr_nonnull(f);
	rewind(f);
	ck_assert_uint_eq(fread(*err, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	/* Show it too, for the test log. */
	fputs(*err, stderr);
	return st;
}

#endif
