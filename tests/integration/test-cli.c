/*
 * test-cli.c - the ferry command-line tool against a real ferryd, the way
 * a user runs it: exit statuses, options, and several CLI workers sharing
 * a queue.
 */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness.h"

static struct ferryd d;

static void
setup(void)
{
	ferryd_start(&d, "--max-message-size", "1K", "--ack-timeout", "1",
	    "--retry-backoff-base", "0.05", "--retry-backoff-max", "0.2",
	    NULL);
}

static void
teardown(void)
{
	/* Exit status 0 on SIGTERM: no crash, and under ASan no leak. */
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* Occurrences of needle in hay. */
static int
count_str(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* Run the CLI without stdin; exit status; output must equal want (if not
 * NULL). */
#define RUN(want, st, ...) do {						\
		const char *want_ = (want);				\
		char *out_ = NULL;					\
		int st_ = cli_run(d.port, NULL, &out_, 15000,		\
		    __VA_ARGS__, NULL);					\
		ck_assert_msg(st_ == (st), "exit %d, want %d", st_,	\
		    (st));						\
		if (want_ != NULL)					\
			ck_assert_str_eq(out_, want_);			\
		free(out_);						\
	} while (0)

START_TEST(sub_timeout_without_message)
{
	char *out = NULL;
	uint64_t t0 = now_ms(), dt;

	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "sub", "quiet",
	    "--timeout", "1", NULL), 1);
	dt = now_ms() - t0;
	ck_assert_str_eq(out, "");
	free(out);
	ck_assert_msg(dt >= 950 && dt <= 4000, "exited after %llu ms",
	    (unsigned long long)dt);
	/* The timeout counts from the last message, not from the start. */
	RUN("", 0, "pub", "quiet", "m");
	t0 = now_ms();
	RUN("m\n", 1, "sub", "quiet", "--timeout", "0.5");
	ck_assert_uint_ge(now_ms() - t0, 450);
}
END_TEST

START_TEST(no_ack_settles_on_delivery)
{
	RUN("", 0, "pub", "na", "1", "2", "3", "4", "5");
	RUN("1\n2\n3\n4\n5\n", 0, "sub", "na", "--no-ack", "--count", "5");
	/* Nothing to redeliver, even after the ack timeout. */
	usleep(1200 * 1000);
	RUN("", 1, "sub", "na", "--timeout", "0.5");
}
END_TEST

START_TEST(nack_and_dead_letter)
{
	char *out = NULL, *err = NULL;

	RUN("", 0, "pub", "nt", "job");
	/* First attempt nacked, redelivered at once; the group allows 2. */
	RUN("job\n", 0, "sub", "nt", "--nack", "--nack-delay", "0",
	    "--count", "1", "--max-attempts", "2");
	ck_assert_int_eq(fc_cli_run_err(d.port, NULL, &out, &err, 10000,
	    "sub", "nt", "--nack", "--count", "1", "--headers", NULL), 0);
	ck_assert_str_eq(out, "job\n");
	ck_assert_int_eq(count_str(err, " attempt=2 "), 1);
	free(out);
	free(err);
	/* Second failure: dead-lettered, gone from the group. */
	RUN("", 1, "sub", "nt", "--timeout", "0.5");
	ck_assert_int_eq(fc_cli_run_err(d.port, NULL, &out, &err, 10000,
	    "sub", "nt.dlq", "--count", "1", "--headers", NULL, NULL), 0);
	ck_assert_str_eq(out, "job\n");
	ck_assert_int_eq(count_str(err, "topic=nt.dlq attempt=1 "), 1);
	ck_assert_int_eq(count_str(err, "hdr dlq-topic=nt\n"), 1);
	ck_assert_int_eq(count_str(err, "hdr dlq-group=default\n"), 1);
	ck_assert_int_eq(count_str(err, "hdr dlq-attempts=2\n"), 1);
	ck_assert_int_eq(count_str(err, "hdr dlq-reason=nacked\n"), 1);
	ck_assert_int_eq(count_str(err, "hist "), 2);
	ck_assert_int_eq(count_str(err, "hist cause=nacked by=ferry-sub-"),
	    2);
	ck_assert_int_eq(count_str(err, " error=nacked by ferry sub\n"), 2);
	free(out);
	free(err);
	RUN("", 1, "sub", "nt.dlq", "--timeout", "0.5");
}
END_TEST

START_TEST(ephemeral_listener)
{
	struct proc e;
	char *buf = NULL, want[4096] = "", body[32];
	size_t len = 0;
	int probes = 0, lines = 0;

	cli_spawn(&e, d.port, "sub", "eph", "--ephemeral", NULL);
	/* Publish probes until the listener shows it is subscribed. */
	while (lines == 0 && probes < 50) {
		snprintf(body, sizeof(body), "probe-%d", probes++);
		RUN("", 0, "pub", "eph", body);
		strcat(want, body);
		strcat(want, "\n");
		lines = proc_read_lines(&e, &buf, &len, 1, 100);
	}
	ck_assert_int_ge(lines, 1);
	RUN("", 0, "pub", "eph", "a", "b");
	strcat(want, "a\nb\n");
	ck_assert_int_eq(proc_read_lines(&e, &buf, &len, lines + 2, 5000),
	    lines + 2);
	ck_assert_uint_ge(len, 4);
	ck_assert_str_eq(buf + len - 4, "a\nb\n");
	/* SIGTERM: a clean exit. */
	proc_signal(&e, SIGTERM);
	ck_assert_int_eq(proc_wait(&e, 5000), 0);
	proc_kill(&e);
	free(buf);
	/* The topic held everything for its first durable group. */
	snprintf(body, sizeof(body), "%d", probes + 2);
	RUN(want, 0, "sub", "eph", "--count", body);
	RUN("", 1, "sub", "eph", "--timeout", "0.5");
	RUN(NULL, 2, "sub", "eph", "--ephemeral", "--group", "g");
}
END_TEST

START_TEST(headers_and_id)
{
	char *out = NULL, *err = NULL;

	RUN("", 0, "pub", "hd", "--header", "k1=v1", "--header", "k2=v=2",
	    "--id", "my-id", "body");
	ck_assert_int_eq(fc_cli_run_err(d.port, NULL, &out, &err, 10000,
	    "sub", "hd", "--count", "1", "--headers", NULL, NULL), 0);
	ck_assert_str_eq(out, "body\n");
	ck_assert_int_eq(count_str(err, "id=my-id topic=hd attempt=1 "), 1);
	ck_assert_int_eq(count_str(err, "hdr k1=v1\n"), 1);
	ck_assert_int_eq(count_str(err, "hdr k2=v=2\n"), 1);
	ck_assert_int_eq(count_str(err, "hist "), 0);
	free(out);
	free(err);
	/* Bodies go to stdout only; metadata only with --headers. */
	RUN("", 0, "pub", "hd", "--header", "k=v", "plain");
	ck_assert_int_eq(fc_cli_run_err(d.port, NULL, &out, &err, 10000,
	    "sub", "hd", "--count", "1", NULL, NULL, NULL), 0);
	ck_assert_str_eq(out, "plain\n");
	ck_assert_int_eq(count_str(err, "hdr "), 0);
	free(out);
	free(err);
}
END_TEST

START_TEST(pub_exit_status)
{
	char big[1026], *out = NULL, in[1100];

	memset(big, 'x', sizeof(big));
	big[1024] = '\0';			/* exactly max_message_size */
	RUN("", 0, "pub", "big", big);
	big[1024] = 'x';
	big[1025] = '\0';			/* one byte over */
	RUN("", 1, "pub", "big", big);
	big[1024] = '\0';
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "sub", "big",
	    "--count", "1", NULL), 0);
	ck_assert_uint_eq(strlen(out), 1025);
	ck_assert(!strncmp(out, big, 1024) && out[1024] == '\n');
	free(out);
	RUN("", 1, "sub", "big", "--timeout", "0.5");

	/* stdin: an oversize line fails the run. */
	big[1024] = 'x';
	snprintf(in, sizeof(in), "ok\n%s\n", big);
	ck_assert_int_eq(cli_run(d.port, in, &out, 10000, "pub", "big2",
	    NULL), 1);
	free(out);
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "sub", "big2",
	    "--timeout", "0.5", NULL), 1);
	ck_assert(strstr(out, big) == NULL);
	free(out);

	/* A batch is refused as a whole. */
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "pub", "big3",
	    "--batch", "3", "a", "b", big, NULL), 1);
	free(out);
	RUN("", 1, "sub", "big3", "--timeout", "0.5");
	RUN("", 0, "pub", "big3", "--batch", "2", "a", "b", "c");
	RUN("a\nb\nc\n", 0, "sub", "big3", "--count", "3");

	/* Invalid topic: an error, not a usage error. */
	RUN("", 1, "pub", "bad topic", "x");
	RUN("", 1, "sub", "bad/topic", "--timeout", "0.5");

	/* No broker. */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	RUN("", 1, "pub", "t", "x");
	RUN("", 1, "sub", "t", "--timeout", "0.5");
	RUN("", 1, "del", "t");
	RUN("", 1, "ping");
}
END_TEST

START_TEST(sub_fails_when_broker_stops)
{
	struct proc s;
	char *buf = NULL;
	size_t len = 0;

	cli_spawn(&s, d.port, "sub", "gone", NULL);
	RUN("", 0, "pub", "gone", "x");
	ck_assert_int_eq(proc_read_lines(&s, &buf, &len, 1, 5000), 1);
	ck_assert_str_eq(buf, "x\n");
	free(buf);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	/* Not a clean end: the connection was lost. */
	ck_assert_int_eq(proc_wait(&s, 5000), 1);
	proc_kill(&s);
}
END_TEST

START_TEST(usage_errors)
{
	RUN(NULL, 2, "frobnicate");
	RUN(NULL, 2, "pub");
	RUN(NULL, 2, "pub", "t", "--header", "novalue", "x");
	RUN(NULL, 2, "pub", "t", "--header", "=v", "x");
	RUN(NULL, 2, "pub", "t", "--batch", "0", "x");
	RUN(NULL, 2, "pub", "t", "--bogus", "x");
	RUN(NULL, 2, "sub");
	RUN(NULL, 2, "sub", "t", "--count", "0");
	RUN(NULL, 2, "sub", "t", "--count", "abc");
	RUN(NULL, 2, "sub", "t", "--count", "-1");
	RUN(NULL, 2, "sub", "t", "--prefetch", "0");
	RUN(NULL, 2, "sub", "t", "--timeout", "0");
	RUN(NULL, 2, "sub", "t", "--timeout", "soon");
	RUN(NULL, 2, "sub", "t", "--no-ack", "--nack");
	RUN(NULL, 2, "sub", "t", "--nack-delay", "5");
	RUN(NULL, 2, "sub", "t", "extra");
	RUN(NULL, 2, "del");
	RUN(NULL, 2, "del", "t", "extra");
	RUN(NULL, 2, "ping", "extra");
	RUN(NULL, 2, "--timeout", "-1", "ping");
	/* Nothing was published by any of them. */
	RUN("", 1, "sub", "t", "--timeout", "0.3");
	/* Help is not an error. */
	RUN(NULL, 0, "--help");
	RUN(NULL, 0, "sub", "--help");
	RUN(NULL, 0, "help", "pub");
	RUN(NULL, 0, "ping");
}
END_TEST

START_TEST(del_exit_codes)
{
	struct proc s;
	char *buf = NULL;
	size_t len = 0;

	RUN("", 0, "pub", "dt", "x");
	/* A running subscriber of the group; its first line shows it is
	 * subscribed (the group took the topic's backlog). */
	cli_spawn(&s, d.port, "sub", "dt", "--group", "g", NULL);
	ck_assert_int_eq(proc_read_lines(&s, &buf, &len, 1, 5000), 1);
	ck_assert_str_eq(buf, "x\n");
	free(buf);
	RUN("", 0, "del", "dt", "--group", "g");
	/* It is told its group was deleted, and fails. */
	ck_assert_int_eq(proc_wait(&s, 5000), 1);
	proc_kill(&s);
	RUN("", 1, "del", "dt", "--group", "g");
	RUN("", 0, "del", "dt");
	RUN("", 1, "del", "dt");
	RUN("", 1, "del", "nosuch");
	RUN("", 1, "del", "bad name");
	/* Deleted means deleted: a new group starts empty. */
	RUN("", 1, "sub", "dt", "--group", "g", "--timeout", "0.5");
}
END_TEST

START_TEST(sub_count_takes_exactly_one)
{
	char *out = NULL, *err = NULL;

	RUN("", 0, "pub", "one", "1", "2", "3", "4", "5");
	RUN("1\n", 0, "sub", "one", "--count", "1");
	/* The others were never handed out: all on their first attempt. */
	ck_assert_int_eq(fc_cli_run_err(d.port, NULL, &out, &err, 10000,
	    "sub", "one", "--count", "4", "--headers", NULL, NULL), 0);
	ck_assert_str_eq(out, "2\n3\n4\n5\n");
	ck_assert_int_eq(count_str(err, " attempt=1 "), 4);
	free(out);
	free(err);
	RUN("", 1, "sub", "one", "--timeout", "0.5");

	/*
	 * The same through the history: with --max-attempts 1, y's only
	 * failure is its nack.  A leaving member that was handed y (and
	 * released it) would show up there as a second entry.
	 */
	RUN("", 0, "pub", "one2", "x", "y");
	RUN("x\n", 0, "sub", "one2", "--count", "1", "--max-attempts", "1");
	RUN("y\n", 0, "sub", "one2", "--nack", "--count", "1");
	ck_assert_int_eq(fc_cli_run_err(d.port, NULL, &out, &err, 10000,
	    "sub", "one2.dlq", "--count", "1", "--headers", NULL, NULL), 0);
	ck_assert_str_eq(out, "y\n");
	ck_assert_int_eq(count_str(err, "hist "), 1);
	ck_assert_int_eq(count_str(err, "hist cause=nacked "), 1);
	free(out);
	free(err);
}
END_TEST

#define NCLI 3000

START_TEST(competing_cli_workers)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct proc w[3];
	char *buf[3] = {NULL, NULL, NULL};
	size_t len[3] = {0, 0, 0};
	int lines[3] = {0, 0, 0}, probes = 0, total = 0, per[3] = {0};
	static int seen[NCLI];
	uint64_t deadline;

	for (int k = 0; k < 3; k++)
		cli_spawn(&w[k], d.port, "sub", "comp", "--prefetch", "8",
		    NULL);
	/* Probe until each worker printed one: all three are members. */
	while ((!lines[0] || !lines[1] || !lines[2]) && probes < 200) {
		char body[32];

		snprintf(body, sizeof(body), "probe-%d", probes++);
		fc_pub(p, "comp", body);
		for (int k = 0; k < 3; k++)
			lines[k] = proc_read_lines(&w[k], &buf[k], &len[k],
			    INT_MAX, 20);
	}
	ck_assert_msg(lines[0] && lines[1] && lines[2],
	    "workers not all subscribed after %d probes", probes);
	fc_pub_n(p, "comp", NCLI);
	deadline = now_ms() + 30000;
	while (total < NCLI + probes && now_ms() < deadline) {
		total = 0;
		for (int k = 0; k < 3; k++) {
			lines[k] = proc_read_lines(&w[k], &buf[k], &len[k],
			    INT_MAX, 20);
			total += lines[k];
		}
	}
	ck_assert_int_eq(total, NCLI + probes);
	memset(seen, 0, sizeof(seen));
	for (int k = 0; k < 3; k++) {
		for (char *l = buf[k], *nl; *l; l = nl + 1) {
			char *end;
			long v;

			nl = strchr(l, '\n');
			ck_assert_ptr_nonnull(nl);
			*nl = '\0';
			if (!strncmp(l, "probe-", 6))
				continue;
			v = strtol(l, &end, 10);
			ck_assert_msg(*l && !*end && v >= 0 && v < NCLI,
			    "bad line '%s'", l);
			ck_assert_msg(seen[v]++ == 0, "%ld twice", v);
			per[k]++;
		}
		free(buf[k]);
	}
	for (int k = 0; k < 3; k++) {
		ck_assert_msg(per[k] > 0, "worker %d got nothing", k);
		proc_signal(&w[k], SIGTERM);
		ck_assert_int_eq(proc_wait(&w[k], 5000), 0);
		proc_kill(&w[k]);
	}
	/* Everything was acked. */
	RUN("", 1, "sub", "comp", "--timeout", "0.5");
	ferry_close(p);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("cli");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sub_timeout_without_message);
	tcase_add_test(tc, no_ack_settles_on_delivery);
	tcase_add_test(tc, nack_and_dead_letter);
	tcase_add_test(tc, ephemeral_listener);
	tcase_add_test(tc, headers_and_id);
	tcase_add_test(tc, pub_exit_status);
	tcase_add_test(tc, sub_fails_when_broker_stops);
	tcase_add_test(tc, usage_errors);
	tcase_add_test(tc, del_exit_codes);
	tcase_add_test(tc, sub_count_takes_exactly_one);
	tcase_add_test(tc, competing_cli_workers);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
