/*
 * test-bench.c - `ferry bench` against a real ferryd sees what really
 * happens to messages: nothing lost on a clean run; the messages a
 * stranger in a bench group takes counted as lost (and exit 1); messages
 * published twice counted as duplicates.  The damage is done from outside
 * with libferry, so bench has no testing hooks.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "harness.h"

#define SPY_REPUBLISH 50

static struct ferryd d;

static void
setup(void)
{
	ferryd_start(&d, "--fsync", "never", NULL);
}

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* The number after "key": in bench's JSON. */
static unsigned long long
json_num(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	ck_assert_msg(p != NULL, "no %s in %s", key, json);
	return strtoull(p + strlen(pat), NULL, 10);
}

/* A consumer on another connection, in a group bench uses or not. */
struct stranger {
	const char *topic, *group;
	int republish;		/* publish the first SPY_REPUBLISH again */
	struct ferry *f;
	unsigned long long got, sent;
	pthread_t th;
};

static void *
stranger_run(void *arg)
{
	struct stranger *s = arg;
	struct ferry_msg *m;
	int r;

	/* Until bench deletes the topic (FERRY_EDELETED) or a fatal error. */
	for (;;) {
		r = ferry_next(s->f, 10000, &m);
		if (r < 0)
			break;
		s->got++;
		if (s->republish && s->sent < SPY_REPUBLISH) {
			ck_assert_int_eq(ferry_publish(s->f, s->topic, m->body,
			    m->len, NULL), 0);
			ck_assert_int_eq(ferry_flush(s->f), 0);
			s->sent++;
		}
		ferry_ack(s->f, m->sid, m->lease, 0);
		ferry_msg_free(m);
	}
	return NULL;
}

/* Subscribed when this returns, so before bench publishes. */
static void
stranger_start(struct stranger *s, const char *topic, const char *group,
    int republish)
{
	struct ferry_sub_opts so = {.group = group, .prefetch = 100};
	uint64_t sid;

	memset(s, 0, sizeof(*s));
	s->topic = topic;
	s->group = group;
	s->republish = republish;
	s->f = ferry_connect("127.0.0.1", d.port, 5000, "stranger");
	ck_assert_int_eq(ferry_err(s->f), 0);
	ck_assert_int_eq(ferry_subscribe(s->f, topic, &so, &sid), 0);
	ck_assert_int_eq(pthread_create(&s->th, NULL, stranger_run, s), 0);
}

static void
stranger_join(struct stranger *s)
{
	pthread_join(s->th, NULL);
	ferry_close(s->f);
}

START_TEST(clean_run)
{
	char *out = NULL;
	int st;

	st = cli_run(d.port, NULL, &out, 60000, "bench", "clean", "--pub",
	    "2", "--sub", "2", "--groups", "2", "--msgs", "20000", "--json",
	    NULL);
	ck_assert_msg(st == 0, "exit %d: %s", st, out);
	ck_assert_uint_eq(json_num(out, "lost"), 0);
	ck_assert_uint_eq(json_num(out, "duplicates"), 0);
	ck_assert_uint_eq(json_num(out, "deliveries"), 40000);
	ck_assert_uint_eq(json_num(out, "samples"), 40000);
	free(out);
}
END_TEST

START_TEST(stranger_takes_messages)
{
	struct stranger s;
	char *out = NULL;
	int st;

	/* It competes in bench-g1: what it takes, bench never sees. */
	stranger_start(&s, "loss", "bench-g1", 0);
	st = cli_run(d.port, NULL, &out, 60000, "bench", "loss", "--msgs",
	    "2000", "--timeout", "1", "--json", NULL);
	stranger_join(&s);
	ck_assert_msg(st == 1, "exit %d: %s", st, out);
	ck_assert_uint_gt(s.got, 0);
	ck_assert_uint_eq(json_num(out, "lost"), s.got);
	ck_assert_uint_eq(json_num(out, "deliveries"), 2000 - s.got);
	ck_assert_uint_eq(json_num(out, "duplicates"), 0);
	free(out);
}
END_TEST

START_TEST(republished_are_duplicates)
{
	struct stranger s;
	char *out = NULL;
	int st;

	/* In its own group it sees every message, and publishes the first
	 * ones again: bench-g1 gets those twice.  The rate keeps bench
	 * running well after the copies arrive. */
	stranger_start(&s, "dup", "spy", 1);
	st = cli_run(d.port, NULL, &out, 60000, "bench", "dup", "--msgs",
	    "2000", "--rate", "2000", "--json", NULL);
	stranger_join(&s);
	ck_assert_msg(st == 0, "exit %d: %s", st, out);
	ck_assert_uint_eq(s.sent, SPY_REPUBLISH);
	ck_assert_uint_eq(json_num(out, "duplicates"), SPY_REPUBLISH);
	ck_assert_uint_eq(json_num(out, "lost"), 0);
	ck_assert_uint_eq(json_num(out, "deliveries"), 2000 + SPY_REPUBLISH);
	free(out);
}
END_TEST

START_TEST(publish_only_keeps_topic)
{
	char *out = NULL;
	int st;

	/* --sub 0 --keep: the messages wait for a consumer. */
	st = cli_run(d.port, NULL, &out, 60000, "bench", "keep", "--sub", "0",
	    "--confirm", "--msgs", "500", "--keep", "--json", NULL);
	ck_assert_msg(st == 0, "exit %d: %s", st, out);
	ck_assert_uint_eq(json_num(out, "published"), 500);
	free(out);
	st = cli_run(d.port, NULL, &out, 30000, "sub", "keep", "--count",
	    "500", "--timeout", "5", NULL);
	ck_assert_int_eq(st, 0);
	free(out);
}
END_TEST

/*
 * --producer: every message was published by an idempotent producer, so
 * its id is the one the broker derives from pid and seq (a version 8
 * UUID), never one it draws (version 4).
 */
START_TEST(idempotent_producers)
{
	struct ferry_sub_opts so = {.prefetch = 100};
	struct ferry_msg *m;
	struct ferry *f;
	char *out = NULL;
	uint64_t sid;
	int st, i;

	st = cli_run(d.port, NULL, &out, 60000, "bench", "idem", "--pub", "2",
	    "--sub", "0", "--confirm", "--producer", "--msgs", "300", "--keep",
	    "--json", NULL);
	ck_assert_msg(st == 0, "exit %d: %s", st, out);
	ck_assert_uint_eq(json_num(out, "published"), 300);
	ck_assert_msg(strstr(out, "\"producer\":true") != NULL, "%s", out);
	free(out);
	f = ferry_connect("127.0.0.1", d.port, 5000, "reader");
	ck_assert_int_eq(ferry_err(f), 0);
	ck_assert_int_eq(ferry_subscribe(f, "idem", &so, &sid), 0);
	for (i = 0; i < 300; i++) {
		ck_assert_int_eq(ferry_next(f, 5000, &m), 0);
		ck_assert_msg(strlen(m->id) == 36 && m->id[14] == '8',
		    "message %d: id %s is not derived", i, m->id);
		ferry_ack(f, m->sid, m->lease, 0);
		ferry_msg_free(m);
	}
	ferry_close(f);

	/* Without --confirm a publish carries no pid: refused up front. */
	st = cli_run(d.port, NULL, &out, 10000, "bench", "idem", "--producer",
	    NULL);
	ck_assert_int_eq(st, 2);
	free(out);
}
END_TEST

static Suite *
bench_suite(void)
{
	Suite *s = suite_create("bench");
	TCase *tc = tcase_create("accounting");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, clean_run);
	tcase_add_test(tc, stranger_takes_messages);
	tcase_add_test(tc, republished_are_duplicates);
	tcase_add_test(tc, publish_only_keeps_topic);
	tcase_add_test(tc, idempotent_producers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(bench_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
