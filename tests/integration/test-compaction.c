/*
 * test-compaction.c - disk use follows what is pending: settled journal
 * segments are deleted, and live messages in mostly dead segments are
 * copied forward, across restarts.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry.h"
#include "client-helpers.h"
#include "harness.h"

#define BODY 1024
#define SEG "4M"
#define SEG_BYTES (4u << 20)

static struct ferryd d;

static void
setup(void)
{
	ferryd_start(&d, "--segment-size", SEG, "--fsync", "never", NULL);
}

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* Bytes the data directory occupies on disk (allocated blocks). */
static uint64_t
disk_use(void)
{
	char dir[300], path[600];
	uint64_t total = 0;
	struct dirent *de;
	struct stat st;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/data", d.dir);
	ck_assert_ptr_nonnull(dp = opendir(dir));
	while ((de = readdir(dp))) {
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (de->d_name[0] != '.' && stat(path, &st) == 0)
			total += (uint64_t)st.st_blocks * 512;
	}
	closedir(dp);
	return total;
}

/* Publish n numbered 1 KiB bodies to topic, all confirmed. */
static void
publish(struct ferry *f, const char *topic, int n)
{
	static char bodies[1000][BODY];
	struct ferry_pub_msg msgs[1000];
	struct ferry_confirms c;
	int sent = 0;

	while (sent < n) {
		int k = n - sent < 1000 ? n - sent : 1000;

		for (int i = 0; i < k; i++) {
			memset(bodies[i], 'x', BODY);
			snprintf(bodies[i], 16, "%d", sent + i);
			msgs[i] = (struct ferry_pub_msg){bodies[i], BODY,
			    NULL, NULL, 0};
		}
		ck_assert_int_eq(ferry_publish_batch(f, topic, msgs,
		    (size_t)k, FERRY_CONFIRM), FERRY_OK);
		/* Keep a few frames in flight, not all 200 MB. */
		ck_assert_int_eq(ferry_wait_confirms(f, 8000, 30000, &c), 0);
		ck_assert_uint_eq(c.failed, 0);
		sent += k;
	}
	ck_assert_int_eq(ferry_wait_confirms(f, 0, 30000, &c), 0);
	ck_assert_uint_eq(c.failed, 0);
}

/*
 * Receive n messages of topic; ack those whose number is not a multiple of
 * keep_every (0: ack all).  Returns the subscription's handle, still
 * holding the unacked ones.
 */
static struct ferry *
consume(const char *topic, int n, int keep_every, int *kept)
{
	struct ferry_sub_opts so = {.group = "g", .prefetch = 2000,
	    .ack_timeout_ms = 600000};
	struct ferry *f = fc_connect_ms(d.port, "consumer", 10000);
	uint64_t sid;
	uint64_t deadline = now_ms() + 120000;

	*kept = 0;
	ck_assert_int_eq(ferry_subscribe(f, topic, &so, &sid), FERRY_OK);
	for (int got = 0; got < n; got++) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(f, 10000, &m);

		ck_assert_msg(r == FERRY_OK, "message %d of %d: %s", got, n,
		    ferry_errstr(f));
		ck_assert_uint_lt(now_ms(), deadline);
		if (keep_every && atoi(m->body) % keep_every == 0)
			(*kept)++;
		else
			ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(f), FERRY_OK);	/* acks are in */
	return f;
}

/* Wait (bounded) until the data directory is at most limit bytes. */
static uint64_t
wait_disk_below(uint64_t limit, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms, use;

	while ((use = disk_use()) > limit && now_ms() < deadline)
		usleep(100000);
	return use;
}

START_TEST(all_acked_shrinks)
{
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000);
	struct ferry *c;
	struct ferry_sub_opts so = {.group = "g"};
	uint64_t sid, before, after;
	int kept;

	/* The group exists before publishing: the messages go to it. */
	ck_assert_int_eq(ferry_subscribe(p, "big", &so, &sid), FERRY_OK);
	ck_assert_int_eq(ferry_unsubscribe(p, sid), FERRY_OK);
	publish(p, "big", 200 * 1000);
	before = disk_use();
	ck_assert_uint_gt(before, 200u << 20);
	c = consume("big", 200 * 1000, 0, &kept);
	after = wait_disk_below(3 * SEG_BYTES, 20000);
	fprintf(stderr, "all acked: %llu MB -> %llu MB\n",
	    (unsigned long long)(before >> 20),
	    (unsigned long long)(after >> 20));
	ck_assert_uint_le(after, 3 * SEG_BYTES);
	ferry_close(c);
	ferry_close(p);
}
END_TEST

START_TEST(one_in_a_thousand_pending)
{
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000);
	struct ferry *c;
	struct ferry_sub_opts so = {.group = "g"};
	uint64_t sid, before, after;
	int kept, got = 0;
	static char seen[200];

	ck_assert_int_eq(ferry_subscribe(p, "sparse", &so, &sid), FERRY_OK);
	ck_assert_int_eq(ferry_unsubscribe(p, sid), FERRY_OK);
	publish(p, "sparse", 200 * 1000);
	before = disk_use();
	c = consume("sparse", 200 * 1000, 1000, &kept);
	ck_assert_int_eq(kept, 200);
	/* 200 KiB pending: a few segments at most, not 200 MB. */
	after = wait_disk_below(4 * SEG_BYTES, 30000);
	fprintf(stderr, "1 in 1000 pending: %llu MB -> %llu MB\n",
	    (unsigned long long)(before >> 20),
	    (unsigned long long)(after >> 20));
	ck_assert_uint_le(after, 4 * SEG_BYTES);
	ferry_close(c);		/* the 200 go back to the group */
	ferry_close(p);

	/* They survive a restart, each exactly once. */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
	c = fc_connect_ms(d.port, "after-restart", 10000);
	ck_assert_int_eq(ferry_subscribe(c, "sparse", &so, &sid), FERRY_OK);
	for (;;) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(c, 1000, &m), k;

		if (r == FERRY_ETIMEOUT)
			break;
		ck_assert_int_eq(r, FERRY_OK);
		k = atoi(m->body);
		ck_assert_int_eq(k % 1000, 0);
		ck_assert_int_eq(seen[k / 1000]++, 0);
		got++;
		ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
		ck_assert_int_le(got, 200);
	}
	ck_assert_int_eq(got, 200);
	ferry_close(c);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("compaction");
	TCase *tc = tcase_create("compaction");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, all_acked_shrinks);
	tcase_add_test(tc, one_in_a_thousand_pending);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
