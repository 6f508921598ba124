/*
 * test-flow.c - flow control: a publisher faster than its consumers is
 * slowed by TCP, not refused, and a stuck consumer does not stop it.
 *
 * A child process publishes fire-and-forget as fast as its socket takes
 * it; the test process consumes slowly (prefetch 10, one ack at a time)
 * and samples the group's ready count.  With flow_high_water = 500 the
 * group never holds much more than that while the consumer works; then
 * the consumer stops for good, and within a few seconds everything the
 * publisher sent is enqueued.  With flow_high_water = 0 (off) the same
 * run lets the backlog grow far past it: the control that shows the
 * bound comes from flow control.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness.h"

#define TOPIC "flow.t"
#define HIGH_WATER 500
#define TOTAL 30000

static struct ferryd d;
static pid_t producer = -1;

static void
teardown(void)
{
	if (producer > 0) {
		kill(producer, SIGKILL);
		waitpid(producer, NULL, 0);
		producer = -1;
	}
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* The child: TOTAL fire-and-forget publishes, then exit 0 (bounded by
 * alarm). */
static void
publish_all(int port)
{
	struct ferry *f;
	char body[100];

	alarm(60);
	memset(body, 'p', sizeof(body));
	if (!(f = ferry_connect("127.0.0.1", port, 5000, "producer")) ||
	    ferry_err(f) != 0)
		_exit(2);
	for (int i = 0; i < TOTAL; i++)
		if (ferry_publish(f, TOPIC, body, sizeof(body), NULL) != 0)
			_exit(3);
	if (ferry_ping(f) != 0)
		_exit(4);
	ferry_close(f);
	_exit(0);
}

static struct ferry_group_stats
group_stats(struct ferry *f)
{
	struct ferry_group_stats *rows, out;
	size_t n = 0;
	int found = 0;

	memset(&out, 0, sizeof(out));
	ck_assert_int_eq(ferry_stats(f, TOPIC, &rows, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(rows[i].group, "g")) {
			out = rows[i];
			found = 1;
		}
	ferry_stats_free(rows);
	ck_assert(found);
	return out;
}

START_TEST(slow_consumer_slows_publisher)
{
	int on = _i == 0;
	struct ferry *c, *q;
	struct ferry_msg *m;
	struct ferry_group_stats st;
	uint64_t most = 0, deadline;
	char hw[16];

	snprintf(hw, sizeof(hw), "%d", on ? HIGH_WATER : 0);
	ferryd_start(&d, "--fsync", "never", "--flow-high-water", hw, NULL);
	c = fc_connect(d.port, "slow");
	q = fc_connect(d.port, "stats");
	fc_sub(c, TOPIC, "g", 10, 0, 0);
	/* A first delivery: the group's consumers are consuming. */
	fc_pub(q, TOPIC, "warm-up");
	m = fc_next(c, 5000);
	ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
	ferry_msg_free(m);

	producer = fork();
	ck_assert_int_ge(producer, 0);
	if (producer == 0)
		publish_all(d.port);

	/* Consume slowly for 2 s, sampling the backlog. */
	deadline = now_ms() + 2000;
	for (int i = 0; now_ms() < deadline && i < 100000; i++) {
		if ((m = fc_next(c, 5000))) {
			ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
			ferry_msg_free(m);
		}
		if (i % 20 == 0) {
			st = group_stats(q);
			if (st.ready > most)
				most = st.ready;
		}
		usleep(200);
	}
	st = group_stats(q);
	fprintf(stderr, "flow_high_water %s: at most %llu ready, %llu of %d "
	    "enqueued after 2 s\n", hw, (unsigned long long)most,
	    (unsigned long long)st.enqueued, TOTAL + 1);
	if (on) {
		ck_assert_msg(most <= HIGH_WATER + 16, "%llu ready",
		    (unsigned long long)most);
		ck_assert_uint_lt(st.enqueued, TOTAL);
	} else {
		ck_assert_uint_gt(most, 4 * HIGH_WATER);
	}

	/* The consumer stops: the publisher is not held for it. */
	deadline = now_ms() + 15000;
	while ((st = group_stats(q)).enqueued < TOTAL + 1 &&
	    now_ms() < deadline)
		usleep(50 * 1000);
	ck_assert_uint_eq(st.enqueued, TOTAL + 1);
	{
		int status = 0;

		ck_assert_int_eq(waitpid(producer, &status, 0), producer);
		producer = -1;
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	ferry_close(c);
	ferry_close(q);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("flow");
	TCase *tc = tcase_create("flow");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	/* _i: 0 = flow_high_water 500, 1 = off (the control) */
	tcase_add_loop_test(tc, slow_consumer_slows_publisher, 0, 2);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
