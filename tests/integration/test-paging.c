/*
 * test-paging.c - a backlog bounded by disk, not memory: 100 MB of
 * messages through max_memory = 8M, with restarts in the middle, fan-out
 * to two groups, a PEEK, compaction and a dead-lettering of bodies that
 * only the journal holds.  ferryd's peak RSS stays far below the backlog.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry.h"
#include "client-helpers.h"
#include "harness.h"

#define BODY 1024
#define N 100000		/* 100 MB of bodies */
#define HALF (N / 2)
#define PEEK_AT 30000		/* where the first consumer stops */
#define DN 20000		/* messages of the dead-letter topic */
#define NACK_AT 15000		/* the one nacked there */

static struct ferryd d;

static void
setup(void)
{
	ferryd_start(&d, "--max-memory", "8M", "--segment-size", "8M",
	    "--fsync", "never", NULL);
}

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* Body of message i: its number, then bytes that depend on it. */
static void
fill(char *b, int i)
{
	for (int k = 0; k < BODY; k++)
		b[k] = (char)('a' + (i * 7 + k) % 26);
	snprintf(b, 16, "%d", i);
}

static void
check_body(const struct ferry_msg *m, int i)
{
	char want[BODY];

	fill(want, i);
	ck_assert_uint_eq(m->len, BODY);
	ck_assert_msg(memcmp(m->body, want, BODY) == 0,
	    "body of message %d is wrong", i);
}

/* Publish messages from..to-1 to topic, confirmed; every tenth carries a
 * header (a message with rare fields pages out too). */
static void
publish(struct ferry *f, const char *topic, int from, int to)
{
	static char bodies[1000][BODY];
	static const struct ferry_header hdr = {"k", "v"};
	struct ferry_pub_msg msgs[1000];
	struct ferry_confirms c;

	while (from < to) {
		int k = to - from < 1000 ? to - from : 1000;

		for (int i = 0; i < k; i++) {
			fill(bodies[i], from + i);
			msgs[i] = (struct ferry_pub_msg){bodies[i], BODY,
			    NULL, (from + i) % 10 ? NULL : &hdr,
			    (from + i) % 10 ? 0 : 1};
		}
		ck_assert_int_eq(ferry_publish_batch(f, topic, msgs,
		    (size_t)k, FERRY_CONFIRM), FERRY_OK);
		ck_assert_int_eq(ferry_wait_confirms(f, 2000, 30000, &c), 0);
		ck_assert_uint_eq(c.failed, 0);
		from += k;
	}
	ck_assert_int_eq(ferry_wait_confirms(f, 0, 30000, &c), 0);
	ck_assert_uint_eq(c.failed, 0);
}

/* Make group of topic exist (with max_attempts), so publishes go to it. */
static void
make_group(struct ferry *f, const char *topic, const char *group,
    uint32_t max_attempts)
{
	struct ferry_sub_opts so = {.group = group,
	    .max_attempts = max_attempts};
	uint64_t sid;

	ck_assert_int_eq(ferry_subscribe(f, topic, &so, &sid), FERRY_OK);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), FERRY_OK);
}

/* Take messages from..to-1 from group, in order, each once, and ack. */
static void
consume(const char *topic, const char *group, int from, int to)
{
	struct ferry_sub_opts so = {.group = group, .prefetch = 1000,
	    .ack_timeout_ms = 600000};
	struct ferry *f = fc_connect_ms(d.port, "consumer", 10000);
	uint64_t deadline = now_ms() + 180000, sid;

	ck_assert_int_eq(ferry_subscribe(f, topic, &so, &sid), FERRY_OK);
	for (int i = from; i < to; i++) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(f, 10000, &m);

		ck_assert_msg(r == FERRY_OK, "%s: message %d: %s", group, i,
		    ferry_errstr(f));
		ck_assert_uint_lt(now_ms(), deadline);
		ck_assert_msg(atoi(m->body) == i, "%s: got %d, want %d",
		    group, atoi(m->body), i);
		ck_assert_uint_eq(m->attempt, 1);
		check_body(m, i);
		if (i % 10 == 0) {
			ck_assert_uint_eq(m->nhdr, 1);
			ck_assert_str_eq(m->hdr[0].value, "v");
		}
		ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(f), FERRY_OK);	/* acks are in */
	/* Deliveries past to go back, before anything else looks. */
	ck_assert_int_eq(ferry_unsubscribe(f, sid), FERRY_OK);
	ferry_close(f);
}

/* ferryd's peak resident memory (VmHWM, kB) or was, if that is more: a
 * restart starts the count again. */
static long
peak_kb(long was)
{
	long kb = proc_status_kb(d.pid, "VmHWM");

	return kb > was ? kb : was;
}

static void
restart(void)
{
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
}

START_TEST(backlog_through_8m)
{
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000);
	struct ferry_msg *m = NULL;
	long rss;

	make_group(p, "t", "g1", 0);
	make_group(p, "t", "g2", 0);
	publish(p, "t", 0, HALF);
	ferry_close(p);
	rss = peak_kb(0);

	/* Replay rebuilds 50 MB of backlog within max_memory. */
	restart();
	ck_assert(ferryd_log_has(&d, "journal replayed"));
	p = fc_connect_ms(d.port, "producer", 10000);
	publish(p, "t", HALF, N);
	ferry_close(p);

	consume("t", "g1", 0, PEEK_AT);
	/* g1's head is now a body paged out long ago. */
	p = fc_connect_ms(d.port, "peek", 10000);
	ck_assert_int_eq(ferry_peek(p, "t", "g1", &m), FERRY_OK);
	ck_assert_int_eq(atoi(m->body), PEEK_AT);
	check_body(m, PEEK_AT);
	ferry_msg_free(m);
	ferry_close(p);
	rss = peak_kb(rss);

	restart();
	consume("t", "g1", PEEK_AT, N);
	consume("t", "g2", 0, N);
	rss = peak_kb(rss);
	fprintf(stderr, "peak RSS %ld kB with 100 MB through max_memory 8M\n",
	    rss);
#ifndef __SANITIZE_ADDRESS__	/* ASan keeps freed memory aside */
	/* Bodies alone would be 100 MB; without paging ferryd peaks at
	 * 150 MB here.  What remains is per turn (a publisher's frames in
	 * flight, the journal's buffer) and replay's, not the backlog's. */
	ck_assert_int_lt(rss, 80 * 1024);
#endif
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ck_assert(ferryd_log_has(&d, "bodies paged out since start"));
}
END_TEST

/*
 * A dead-lettering copies the message into the .dlq topic: from a body
 * that is only in the journal.
 */
START_TEST(dead_letter_paged)
{
	struct ferry_sub_opts so = {.group = "dq", .prefetch = 1,
	    .ack_timeout_ms = 600000};
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000), *c;
	struct ferry_msg *m = NULL;
	uint64_t sid;

	make_group(p, "d", "dq", 1);
	publish(p, "d", 0, DN);
	ferry_close(p);
	consume("d", "dq", 0, NACK_AT);

	c = fc_connect_ms(d.port, "nacker", 10000);
	ck_assert_int_eq(ferry_subscribe(c, "d", &so, &sid), FERRY_OK);
	ck_assert_int_eq(ferry_next(c, 10000, &m), FERRY_OK);
	ck_assert_int_eq(atoi(m->body), NACK_AT);
	check_body(m, NACK_AT);
	ck_assert_int_eq(ferry_nack(c, m->sid, m->lease, 0, "no",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ck_assert_int_eq(ferry_unsubscribe(c, sid), FERRY_OK);
	ferry_close(c);

	c = fc_connect_ms(d.port, "dlq", 10000);
	so = (struct ferry_sub_opts){.group = "dl"};
	ck_assert_int_eq(ferry_subscribe(c, "d.dlq", &so, &sid), FERRY_OK);
	ck_assert_int_eq(ferry_next(c, 10000, &m), FERRY_OK);
	ck_assert_int_eq(atoi(m->body), NACK_AT);
	check_body(m, NACK_AT);
	ck_assert_uint_ge(m->nhist, 1);
	ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ferry_close(c);
	consume("d", "dq", NACK_AT + 1, DN);
}
END_TEST

/* A nacked delivery of a paged body comes back with the same body. */
START_TEST(redelivery_paged)
{
	struct ferry_sub_opts so = {.group = "rq", .prefetch = 1,
	    .ack_timeout_ms = 600000};
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000), *c;
	struct ferry_msg *m = NULL;
	uint64_t sid;

	make_group(p, "r", "rq", 0);
	publish(p, "r", 0, DN);
	ferry_close(p);
	consume("r", "rq", 0, NACK_AT);
	c = fc_connect_ms(d.port, "nacker", 10000);
	ck_assert_int_eq(ferry_subscribe(c, "r", &so, &sid), FERRY_OK);
	ck_assert_int_eq(ferry_next(c, 10000, &m), FERRY_OK);
	check_body(m, NACK_AT);
	ck_assert_int_eq(ferry_nack(c, m->sid, m->lease, 0, "again",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ck_assert_int_eq(ferry_next(c, 10000, &m), FERRY_OK);
	ck_assert_int_eq(atoi(m->body), NACK_AT);
	ck_assert_uint_eq(m->attempt, 2);
	check_body(m, NACK_AT);
	ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ck_assert_int_eq(ferry_unsubscribe(c, sid), FERRY_OK);
	ferry_close(c);
	consume("r", "rq", NACK_AT + 1, DN);
}
END_TEST

/* Messages whose TTL runs out while paged are dead-lettered whole. */
START_TEST(expiry_paged)
{
	struct ferry_sub_opts so = {.group = "xq", .ttl_ms = 1000};
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000), *c;
	static char seen[DN];
	uint64_t sid;

	ck_assert_int_eq(ferry_subscribe(p, "x", &so, &sid), FERRY_OK);
	ck_assert_int_eq(ferry_unsubscribe(p, sid), FERRY_OK);
	publish(p, "x", 0, DN);
	ferry_close(p);
	c = fc_connect_ms(d.port, "dlq", 10000);
	so = (struct ferry_sub_opts){.group = "xd", .prefetch = 1000};
	ck_assert_int_eq(ferry_subscribe(c, "x.dlq", &so, &sid), FERRY_OK);
	for (int k = 0; k < DN; k++) {
		struct ferry_msg *m = NULL;
		int i;

		ck_assert_msg(ferry_next(c, 10000, &m) == FERRY_OK,
		    "dead letter %d: %s", k, ferry_errstr(c));
		i = atoi(m->body);
		ck_assert_msg(i >= 0 && i < DN && !seen[i], "got %d", i);
		seen[i] = 1;
		check_body(m, i);
		ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(c), FERRY_OK);
	ferry_close(c);
}
END_TEST

/* "paging: N bodies paged out since start", logged at exit: N. */
static long
paged_out_logged(void)
{
	char line[1024];
	const char *p;
	long n = -1;
	FILE *fp = fopen(d.log, "r");

	ck_assert_ptr_nonnull(fp);
	while (fgets(line, sizeof(line), fp))
		if ((p = strstr(line, "paging: ")))
			n = atol(p + 8);
	fclose(fp);
	return n;
}

/*
 * Bodies that could not go when memory ran over (leased) go once they
 * can (released), though nothing more arrives to push memory further.
 */
START_TEST(released_then_paged)
{
	struct ferry_sub_opts so = {.group = "lq", .prefetch = 20000,
	    .ack_timeout_ms = 600000};
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000), *c;
	uint64_t sid;

	make_group(p, "l", "lq", 0);
	c = fc_connect_ms(d.port, "holder", 10000);
	ck_assert_int_eq(ferry_subscribe(c, "l", &so, &sid), FERRY_OK);
	publish(p, "l", 0, 12000);	/* 12 MB, all leased at once */
	for (int i = 0; i < 12000; i++) {
		struct ferry_msg *m = NULL;

		ck_assert_int_eq(ferry_next(c, 10000, &m), FERRY_OK);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_unsubscribe(c, sid), FERRY_OK);
	usleep(1200 * 1000);
	publish(p, "l", 12000, 12001);	/* a turn that commits */
	ferry_close(p);
	ferry_close(c);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ck_assert_int_gt(paged_out_logged(), 1000);
}
END_TEST

/* Segment files in the data directory. */
static int
segments(void)
{
	char dir[300];
	struct dirent *de;
	DIR *dp;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/data", d.dir);
	ck_assert_ptr_nonnull(dp = opendir(dir));
	while ((de = readdir(dp)))
		n += strncmp(de->d_name, "journal-", 8) == 0;
	closedir(dp);
	return n;
}

/*
 * Compaction copies paged-out messages forward from the journal itself,
 * and a restart finds them at their new records.
 */
START_TEST(compaction_moves_paged)
{
	struct ferry_sub_opts so = {.group = "c", .prefetch = 1000,
	    .ack_timeout_ms = 600000};
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000), *c;
	uint64_t sid, deadline;
	static char seen[400];
	int before;

	make_group(p, "s", "c", 0);
	publish(p, "s", 0, 40000);
	ferry_close(p);
	before = segments();
	/* Ack all but every hundredth, which go back to the queue. */
	c = fc_connect_ms(d.port, "consumer", 10000);
	ck_assert_int_eq(ferry_subscribe(c, "s", &so, &sid), FERRY_OK);
	for (int i = 0; i < 40000; i++) {
		struct ferry_msg *m = NULL;

		ck_assert_int_eq(ferry_next(c, 10000, &m), FERRY_OK);
		ck_assert_int_eq(atoi(m->body), i);
		if (i % 100)
			ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(c), FERRY_OK);
	ck_assert_int_eq(ferry_unsubscribe(c, sid), FERRY_OK);
	ferry_close(c);
	deadline = now_ms() + 30000;
	while (segments() > 3 && now_ms() < deadline)
		usleep(100000);
	ck_assert_msg(segments() <= 3, "%d segments, %d before",
	    segments(), before);

	/* Each once (released deliveries return to the head of the queue,
	 * not in their first order). */
	restart();
	c = fc_connect_ms(d.port, "after", 10000);
	ck_assert_int_eq(ferry_subscribe(c, "s", &so, &sid), FERRY_OK);
	for (int k = 0; k < 400; k++) {
		struct ferry_msg *m = NULL;
		int i;

		ck_assert_int_eq(ferry_next(c, 10000, &m), FERRY_OK);
		i = atoi(m->body);
		ck_assert_msg(i % 100 == 0 && !seen[i / 100], "got %d", i);
		seen[i / 100] = 1;
		check_body(m, i);
		ck_assert_uint_eq(m->nhdr, 1);
		ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(c), FERRY_OK);
	ferry_close(c);
}
END_TEST

static Suite *
paging_suite(void)
{
	Suite *s = suite_create("paging");
	TCase *tc = tcase_create("paging");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 280);
	tcase_add_test(tc, backlog_through_8m);
	tcase_add_test(tc, dead_letter_paged);
	tcase_add_test(tc, compaction_moves_paged);
	tcase_add_test(tc, redelivery_paged);
	tcase_add_test(tc, expiry_paged);
	tcase_add_test(tc, released_then_paged);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(paging_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
