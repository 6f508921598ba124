/*
 * test-restart.c - what a restart (clean or SIGKILL) must rebuild from the
 * journal: durable groups that accumulate while no member is connected,
 * dead-letter topics with their messages' history, and attempt counts.
 *
 * Records reach the journal in order, so a confirmed publish made after a
 * change (a "barrier") proves the change is in the files too: the tests
 * use one before each SIGKILL so that their expectations are exact.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness-extra.h"

static struct ferryd d;

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

static uint64_t
wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Everything journaled before is in the files once this is confirmed. */
static void
barrier(void)
{
	struct ferry *f;

	/* Let ferryd see connections closed just before (their releases
	 * are journaled when it does). */
	usleep(100000);
	f = fc_connect(d.port, "barrier");

	fc_pub(f, "barrier", "b");
	ferry_close(f);
}

static void
crash_restart(void)
{
	barrier();
	ferryd_kill(&d);
	ferryd_restart(&d);
}

static void
clean_restart(void)
{
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
}

/* Receive n messages "0".."n-1" in order on f, acking each. */
static void
expect_seq(struct ferry *f, int n)
{
	for (int i = 0; i < n; i++) {
		struct ferry_msg *m = fc_next(f, 5000);

		ck_assert_int_eq(fc_body_int(m), i);
		ck_assert_uint_eq(m->attempt, 1);
		ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	fc_none(f, 300);
}

/*
 * Groups made by subscribers survive restarts; messages published while
 * none of their members is connected accumulate in each (fan-out), and a
 * group created afterwards gets none of them.
 */
START_TEST(durable_groups)
{
	struct ferry *f, *g;

	ferryd_start(&d, NULL);
	f = fc_connect(d.port, "sub");
	fc_sub(f, "dur.t", "g1", 0, 0, 0);
	fc_sub(f, "dur.t", "g2", 0, 0, 0);
	ferry_close(f);
	if (_i == 0)
		clean_restart();
	else
		crash_restart();

	/* Nobody connected: both groups accumulate. */
	f = fc_connect(d.port, "pub");
	fc_pub_n(f, "dur.t", 10);
	ferry_close(f);
	crash_restart();
	clean_restart();

	f = fc_connect(d.port, "c1");
	g = fc_connect(d.port, "c2");
	fc_sub(f, "dur.t", "g1", 0, 0, 0);
	fc_sub(g, "dur.t", "g2", 0, 0, 0);
	expect_seq(f, 10);
	expect_seq(g, 10);
	/* A group created now starts empty. */
	fc_sub(f, "dur.t", "g3", 0, 0, 0);
	fc_none(f, 300);
	ferry_close(f);
	ferry_close(g);

	/* The acks were journaled too: nothing comes back. */
	crash_restart();
	f = fc_connect(d.port, "c3");
	fc_sub(f, "dur.t", "g1", 0, 0, 0);
	fc_sub(f, "dur.t", "g2", 0, 0, 0);
	fc_sub(f, "dur.t", "g3", 0, 0, 0);
	fc_none(f, 500);
	ferry_close(f);
}
END_TEST

/*
 * A message nacked max_attempts times moves to <topic>.dlq with its
 * history; after restarts the dead letter is still there, with the same
 * history (causes, errors, consumer, times) and headers.
 */
START_TEST(dead_letters)
{
	struct ferry *f, *q;
	struct ferry_msg *m;
	char id[FERRY_ID_MAX + 1];
	uint64_t w0, w1;

	ferryd_start(&d, "--max-attempts", "2", NULL);
	f = fc_connect(d.port, "worker-A");
	fc_sub(f, "dl.t", NULL, 1, 0, 0);
	ck_assert_int_eq(ferry_publish_sync(f, "dl.t", "poison", 6, NULL, id),
	    0);
	w0 = wall();
	for (int i = 1; i <= 2; i++) {
		char err[16];

		m = fc_next(f, 5000);
		ck_assert_str_eq(m->body, "poison");
		ck_assert_uint_eq(m->attempt, (unsigned)i);
		snprintf(err, sizeof(err), "boom %d", i);
		ck_assert_int_eq(ferry_nack(f, m->sid, m->lease, 0, err,
		    FERRY_CONFIRM), 0);
		ferry_msg_free(m);
		usleep(20000);		/* distinct history times */
	}
	w1 = wall();
	fc_none(f, 300);	/* dead-lettered, not redelivered */
	ferry_close(f);
	/* History times must be the failures', not the replay's. */
	usleep(1200000);
	crash_restart();
	clean_restart();

	q = fc_connect(d.port, "dlq-reader");
	fc_sub(q, "dl.t.dlq", NULL, 0, 0, 0);
	m = fc_next(q, 5000);
	ck_assert_str_eq(m->body, "poison");
	ck_assert_str_eq(m->id, id);
	ck_assert_str_eq(m->topic, "dl.t.dlq");
	ck_assert_uint_eq(m->attempt, 1);
	ck_assert(fc_has_hdr(m, "dlq-topic", "dl.t"));
	ck_assert(fc_has_hdr(m, "dlq-group", "default"));
	ck_assert(fc_has_hdr(m, "dlq-attempts", "2"));
	ck_assert_uint_eq(m->nhist, 2);
	for (size_t i = 0; i < 2; i++) {
		char err[16];

		snprintf(err, sizeof(err), "boom %zu", i + 1);
		ck_assert_str_eq(m->hist[i].cause, "nacked");
		ck_assert_str_eq(m->hist[i].error, err);
		ck_assert_str_eq(m->hist[i].consumer, "worker-A");
		/* 20 ms slack: ferryd reads a coarse wall clock. */
		ck_assert_msg(m->hist[i].at_ms + 20 >= w0 &&
		    m->hist[i].at_ms <= w1 + 20, "history time %llu is not "
		    "the failure's, in [%llu, %llu]",
		    (unsigned long long)m->hist[i].at_ms,
		    (unsigned long long)w0, (unsigned long long)w1);
	}
	ck_assert_int_eq(ferry_ack(q, m->sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ferry_close(q);

	/* Settled: neither the topic nor its dead-letter topic has it. */
	crash_restart();
	q = fc_connect(d.port, "check");
	fc_sub(q, "dl.t.dlq", NULL, 0, 0, 0);
	fc_sub(q, "dl.t", NULL, 0, 0, 0);
	fc_none(q, 500);
	ferry_close(q);
}
END_TEST

/* Next message on f: body must be "job", attempt must be attempt. */
static struct ferry_msg *
expect_attempt(struct ferry *f, unsigned attempt)
{
	struct ferry_msg *m = fc_next(f, 5000);

	ck_assert_str_eq(m->body, "job");
	ck_assert_msg(m->attempt == attempt, "attempt %u, expected %u",
	    m->attempt, attempt);
	return m;
}

/*
 * attempt = failed deliveries (expired, nacked, disconnected) + 1, and the
 * count survives restarts; a broker restart is not a failed delivery.
 */
START_TEST(attempts_survive_restart)
{
	struct ferry *f;
	struct ferry_msg *m;

	/* No backoff: redeliveries are immediate. */
	ferryd_start(&d, "--retry-backoff-base", "0",
	    "--retry-backoff-max", "0", NULL);
	f = fc_connect(d.port, "w1");
	fc_sub(f, "att.t", NULL, 1, 400, 0);
	fc_pub(f, "att.t", "job");
	m = expect_attempt(f, 1);
	ck_assert_int_eq(ferry_nack(f, m->sid, m->lease, 0, "no",
	    FERRY_CONFIRM), 0);			/* 1 failure: nacked */
	ferry_msg_free(m);
	m = expect_attempt(f, 2);
	ferry_msg_free(m);			/* let the lease expire */
	m = expect_attempt(f, 3);		/* 2: expired */
	ferry_msg_free(m);
	ferry_close(f);				/* 3: disconnected */
	crash_restart();

	f = fc_connect(d.port, "w2");
	fc_sub(f, "att.t", NULL, 1, 0, 0);
	m = expect_attempt(f, 4);
	ferry_msg_free(m);
	/* The broker goes away while the lease is out: no failure. */
	clean_restart();
	ferry_close(f);
	f = fc_connect(d.port, "w3");
	fc_sub(f, "att.t", NULL, 1, 0, 0);
	m = expect_attempt(f, 4);
	ferry_msg_free(m);
	crash_restart();
	ferry_close(f);
	f = fc_connect(d.port, "w4");
	fc_sub(f, "att.t", NULL, 1, 0, 0);
	m = expect_attempt(f, 4);
	ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ferry_close(f);

	crash_restart();
	f = fc_connect(d.port, "w5");
	fc_sub(f, "att.t", NULL, 1, 0, 0);
	fc_none(f, 500);
	ferry_close(f);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("restart");
	TCase *tc = tcase_create("restart");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	/* _i: 0 = clean restart after creating the groups, 1 = SIGKILL */
	tcase_add_loop_test(tc, durable_groups, 0, 2);
	tcase_add_test(tc, dead_letters);
	tcase_add_test(tc, attempts_survive_restart);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
