/*
 * test-index.c - sealed segments' index files (journal.h): a restart that
 * reads them rebuilds exactly what a restart reading every segment does;
 * a damaged, truncated or stale index is logged and the segment read in
 * full; a kill -9 at any point of sealing leaves nothing half written;
 * compaction's deletions take the indexes along.
 *
 * State is compared by copying the stopped broker's data directory: one
 * copy keeps its indexes, the other loses or damages them, each is
 * started, and its STATS rows and every delivery (ids, attempts, headers,
 * bodies byte for byte, order) are recorded and compared.
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
#include <unistd.h>

#include "ferry.h"
#include "client-helpers.h"
#include "harness.h"

#define BODY 1024
#define N 6000			/* about 6 segments of 1 MiB */
#define DLQ 5			/* nacked out of group b: dead-lettered */

static struct ferryd d;

static void
setup(void)
{
	ferryd_start(&d, "--max-memory", "1M", "--segment-size", "1M",
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

static void
fill(char *b, int i)
{
	for (int k = 0; k < BODY; k++)
		b[k] = (char)('a' + (i * 11 + k) % 26);
	snprintf(b, 16, "%d", i);
}

/* Publish from..to-1 to topic, confirmed; every seventh with a header. */
static void
publish(struct ferry *f, const char *topic, int from, int to)
{
	static char bodies[500][BODY];
	static const struct ferry_header hdr = {"k", "v"};
	struct ferry_pub_msg msgs[500];
	struct ferry_confirms c;

	while (from < to) {
		int k = to - from < 500 ? to - from : 500;

		for (int i = 0; i < k; i++) {
			fill(bodies[i], from + i);
			msgs[i] = (struct ferry_pub_msg){bodies[i], BODY,
			    NULL, (from + i) % 7 ? NULL : &hdr,
			    (from + i) % 7 ? 0 : 1};
		}
		ck_assert_int_eq(ferry_publish_batch(f, topic, msgs,
		    (size_t)k, FERRY_CONFIRM), FERRY_OK);
		ck_assert_int_eq(ferry_wait_confirms(f, 0, 30000, &c), 0);
		ck_assert_uint_eq(c.failed, 0);
		from += k;
	}
}

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

/* Take n from group: ack them, or nack them (no delay) with nack set. */
static void
settle(const char *topic, const char *group, int n, int nack)
{
	struct ferry_sub_opts so = {.group = group, .prefetch = 100,
	    .ack_timeout_ms = 600000};
	struct ferry *f = fc_connect_ms(d.port, "settler", 10000);
	uint64_t sid;

	ck_assert_int_eq(ferry_subscribe(f, topic, &so, &sid), FERRY_OK);
	for (int i = 0; i < n; i++) {
		struct ferry_msg *m = NULL;

		ck_assert_int_eq(ferry_next(f, 10000, &m), FERRY_OK);
		if (nack)
			ck_assert_int_eq(ferry_nack(f, m->sid, m->lease, 0,
			    "no", FERRY_CONFIRM), 0);
		else
			ck_assert_int_eq(ferry_ack(f, m->sid, m->lease,
			    FERRY_CONFIRM), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_unsubscribe(f, sid), FERRY_OK);
	ferry_close(f);
}

/* A growing byte record of what a broker holds. */
struct snap {
	char *p;
	size_t len, cap;
};

static void
snap_add(struct snap *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		ck_assert_ptr_nonnull(s->p = realloc(s->p, s->cap));
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
}

static void
snap_printf(struct snap *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
snap_printf(struct snap *s, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snap_add(s, buf, (size_t)n);
}

/* Every delivery of group, in order, each acked, until none comes. */
static void
drain(struct snap *s, const char *topic, const char *group)
{
	struct ferry_sub_opts so = {.group = group, .prefetch = 500,
	    .ack_timeout_ms = 600000};
	struct ferry *f = fc_connect_ms(d.port, "drainer", 10000);
	uint64_t sid, deadline = now_ms() + 120000;

	ck_assert_int_eq(ferry_subscribe(f, topic, &so, &sid), FERRY_OK);
	for (;;) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(f, 1500, &m);

		if (r == FERRY_ETIMEOUT)
			break;
		ck_assert_int_eq(r, FERRY_OK);
		ck_assert_uint_lt(now_ms(), deadline);
		snap_printf(s, "%s/%s %s att=%u nhdr=%zu", topic, group, m->id,
		    m->attempt, m->nhdr);
		for (size_t k = 0; k < m->nhdr; k++)
			snap_printf(s, " %s=%s", m->hdr[k].key,
			    m->hdr[k].value);
		snap_printf(s, " len=%zu\n", m->len);
		snap_add(s, m->body, m->len);
		ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(f), FERRY_OK);
	ferry_close(f);
}

/* STATS rows (figures a restart rebuilds), then every delivery. */
static void
snapshot(struct snap *s)
{
	struct ferry *f = fc_connect_ms(d.port, "snapshot", 10000);
	struct ferry_group_stats *rows;
	struct ferry_broker_stats bs;
	size_t n;

	memset(s, 0, sizeof(*s));
	ck_assert_int_eq(ferry_stats(f, NULL, &rows, &n), 0);
	for (size_t i = 0; i < n; i++)
		snap_printf(s, "%s/%s ready=%llu delayed=%llu bytes=%llu\n",
		    rows[i].topic, rows[i].group,
		    (unsigned long long)rows[i].ready,
		    (unsigned long long)rows[i].delayed,
		    (unsigned long long)rows[i].bytes);
	ferry_stats_free(rows);
	ck_assert_int_eq(ferry_stats_broker(f, &bs), 0);
	snap_printf(s, "broker ready=%llu bytes=%llu paged=%llu pbytes=%llu\n",
	    (unsigned long long)bs.ready, (unsigned long long)bs.bytes,
	    (unsigned long long)bs.paged, (unsigned long long)bs.paged_bytes);
	/* a restart pages out what is past max_memory, index or not */
	ck_assert_uint_gt(bs.paged, 0);
	ferry_close(f);
	drain(s, "t", "a");
	drain(s, "t", "b");
	drain(s, "t.dlq", "d");
	drain(s, "u", "c");
}

static void
sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

/* Files in the data directory whose names end in suffix. */
static int
count_files(const char *suffix)
{
	char dir[300];
	struct dirent *de;
	size_t sl = strlen(suffix);
	int n = 0;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/data", d.dir);
	ck_assert_ptr_nonnull(dp = opendir(dir));
	while ((de = readdir(dp))) {
		size_t l = strlen(de->d_name);

		if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(dp);
	return n;
}

/* Every index has its segment. */
static void
no_orphan_index(void)
{
	char dir[300], seg[600];
	struct dirent *de;
	struct stat st;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/data", d.dir);
	ck_assert_ptr_nonnull(dp = opendir(dir));
	while ((de = readdir(dp))) {
		size_t l = strlen(de->d_name);

		if (l < 4 || strcmp(de->d_name + l - 4, ".idx"))
			continue;
		snprintf(seg, sizeof(seg), "%s/%.*s.seg", dir, (int)l - 4,
		    de->d_name);
		ck_assert_msg(stat(seg, &st) == 0, "%s has no segment",
		    de->d_name);
	}
	closedir(dp);
}

/* Wait (bounded) until every sealed segment has its index, but the
 * newest sealed one if lag is 2: while ferryd runs, that one's build waits
 * for the next seal; after a restart nothing waits. */
static void
wait_indexed(int lag)
{
	uint64_t deadline = now_ms() + 20000;

	while (count_files(".idx") < count_files(".seg") - lag &&
	    now_ms() < deadline)
		usleep(20000);
	ck_assert_int_ge(count_files(".idx"), count_files(".seg") - lag);
}

/* N of "(N of M segments from their index)" in the last replay line. */
static long
from_index(void)
{
	FILE *fp = fopen(d.log, "r");
	char line[2048];
	long n = -1;

	ck_assert_ptr_nonnull(fp);
	while (fgets(line, sizeof(line), fp)) {
		char *p = strstr(line, "journal replayed:");

		if (p && (p = strstr(p, "ms (")))
			n = strtol(p + 4, NULL, 10);
	}
	fclose(fp);
	return n;
}

/* A backlog in two topics: groups a (part acked) and b (part
 * dead-lettered into t.dlq, whose group d holds them), u/c untouched. */
static void
build_backlog(void)
{
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000);

	make_group(p, "t", "a", 0);
	make_group(p, "t", "b", 1);
	make_group(p, "t.dlq", "d", 0);
	make_group(p, "u", "c", 0);
	publish(p, "t", 0, N / 2);
	publish(p, "u", 0, 200);
	publish(p, "t", N / 2, N);
	ferry_close(p);
	settle("t", "a", 700, 0);
	settle("t", "b", DLQ, 1);
	settle("t", "b", 300, 0);
	wait_indexed(2);
	/* a restart indexes the newest sealed segment too */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
	wait_indexed(1);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ck_assert_int_gt(count_files(".idx"), 3);
	sh("cp -a %s/data %s/data.copy", d.dir, d.dir);
}

/* Start on the copy (after its files were changed by change), snapshot,
 * and put it back where it was. */
static void
snapshot_copy(struct snap *s, const char *change)
{
	sh("mv %s/data %s/data.orig && mv %s/data.copy %s/data", d.dir, d.dir,
	    d.dir, d.dir);
	if (change)
		sh("cd %s/data && %s", d.dir, change);
	ferryd_restart(&d);
	snapshot(s);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	sh("rm -rf %s/data && mv %s/data.orig %s/data", d.dir, d.dir, d.dir);
}

static void
same(const struct snap *a, const struct snap *b)
{
	ck_assert_uint_gt(a->len, (size_t)N * BODY / 2);
	ck_assert_msg(a->len == b->len && memcmp(a->p, b->p, a->len) == 0,
	    "state after the restarts differs (%zu vs %zu bytes)", a->len,
	    b->len);
}

START_TEST(index_same_as_full_read)
{
	struct snap with, without;

	build_backlog();
	/* Without indexes first: they are rebuilt after its replay. */
	snapshot_copy(&without, "rm -f journal-*.idx");
	ck_assert_int_eq(from_index(), 0);
	ferryd_restart(&d);
	ck_assert_int_gt(from_index(), 3);
	snapshot(&with);
	same(&with, &without);
	free(with.p);
	free(without.p);
}
END_TEST

/* Each way an index can be wrong: the segment is read in full (logged),
 * and the state is the same as with every index. */
static const char *const damage[] = {
	/* truncated */
	"f=$(ls journal-*.idx | sed -n 2p) && truncate -s 100 $f",
	/* a byte of an entry */
	"f=$(ls journal-*.idx | sed -n 2p) && printf 'Z' | "
	    "dd of=$f bs=1 seek=200 conv=notrunc status=none",
	/* a byte of the header */
	"f=$(ls journal-*.idx | sed -n 2p) && printf 'Z' | "
	    "dd of=$f bs=1 seek=20 conv=notrunc status=none",
	/* another segment's index: stale, well-formed */
	"a=$(ls journal-*.idx | sed -n 1p) && b=$(ls journal-*.idx | "
	    "sed -n 2p) && cp $a $b",
	/* empty */
	"f=$(ls journal-*.idx | sed -n 2p) && : > $f",
};

START_TEST(damaged_index_falls_back)
{
	struct snap with, damaged;

	build_backlog();
	sh("cp -a %s/data %s/data.keep", d.dir, d.dir);
	snapshot_copy(&damaged, damage[_i]);
	ck_assert_msg(ferryd_log_has(&d, "reading the segment instead"),
	    "no warning about the index (see %s)", d.log);
	/* all but the damaged one (and the last segment) */
	ck_assert_int_eq(from_index(), count_files(".seg") - 2);
	sh("mv %s/data.keep %s/data.copy", d.dir, d.dir);
	snapshot_copy(&with, NULL);
	ck_assert_int_eq(from_index(), count_files(".seg") - 1);
	same(&with, &damaged);
	free(with.p);
	free(damaged.p);
}
END_TEST

/*
 * kill -9 while segments are sealed and indexed, again and again: every
 * restart works, every index it finds agrees with its segment, no
 * temporary index is left, and each confirmed message is there, once.
 */
START_TEST(kill_while_sealing)
{
	struct ferry *p;
	int confirmed = 0;

	p = fc_connect_ms(d.port, "producer", 10000);
	make_group(p, "k", "g", 0);
	ferry_close(p);
	for (int round = 0; round < 8; round++) {
		static char body[BODY];
		uint64_t until = now_ms() + 150 + (uint64_t)(rand() % 400);

		p = fc_connect_ms(d.port, "producer", 10000);
		/* one at a time: everything confirmed is counted */
		while (now_ms() < until && confirmed < (round + 1) * 2000) {
			snprintf(body, 16, "%d", confirmed);
			ck_assert_int_eq(ferry_publish_sync(p, "k", body, BODY,
			    NULL, NULL), FERRY_OK);
			confirmed++;
		}
		ferryd_kill(&d);
		ferry_close(p);
		ferryd_restart(&d);
		no_orphan_index();
	}
	ck_assert_int_gt(confirmed, 2000);	/* segments were sealed */
	wait_indexed(1);	/* a leftover temporary is gone by now */
	ck_assert_int_eq(count_files(".idx.tmp"), 0);
	ck_assert_msg(!ferryd_log_has(&d, "reading the segment instead"),
	    "an index was torn (see %s)", d.log);
	{
		struct ferry_sub_opts so = {.group = "g", .prefetch = 500};
		struct ferry *f = fc_connect_ms(d.port, "check", 10000);
		static char seen[20000];
		uint64_t sid;
		int got = 0;

		ck_assert_int_lt(confirmed, (int)sizeof(seen));
		ck_assert_int_eq(ferry_subscribe(f, "k", &so, &sid), FERRY_OK);
		for (;;) {
			struct ferry_msg *m = NULL;
			int r = ferry_next(f, 1500, &m), k;

			if (r == FERRY_ETIMEOUT)
				break;
			ck_assert_int_eq(r, FERRY_OK);
			k = atoi(m->body);
			ck_assert_int_ge(k, 0);
			ck_assert_int_lt(k, confirmed + 1);
			ck_assert_int_eq(seen[k]++, 0);
			got++;
			ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
			ferry_msg_free(m);
		}
		for (int k = 0; k < confirmed; k++)
			ck_assert_msg(seen[k], "confirmed message %d lost", k);
		ferry_close(f);
	}
}
END_TEST

/* Settled segments go with their indexes; what is left restarts from
 * its indexes with every message. */
START_TEST(compaction_takes_indexes)
{
	struct ferry *p = fc_connect_ms(d.port, "producer", 10000);
	struct ferry_sub_opts so = {.group = "g", .prefetch = 500,
	    .ack_timeout_ms = 600000};
	struct ferry *c;
	uint64_t sid, deadline;
	int kept = 0, got = 0;

	make_group(p, "s", "g", 0);
	publish(p, "s", 0, N);
	ferry_close(p);
	wait_indexed(2);
	ck_assert_int_gt(count_files(".idx"), 3);
	/* ack all but one in 500: compaction copies those forward and the
	 * old segments go */
	c = fc_connect_ms(d.port, "consumer", 10000);
	ck_assert_int_eq(ferry_subscribe(c, "s", &so, &sid), FERRY_OK);
	for (int i = 0; i < N; i++) {
		struct ferry_msg *m = NULL;

		ck_assert_int_eq(ferry_next(c, 10000, &m), FERRY_OK);
		if (atoi(m->body) % 500)
			ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
		else
			kept++;
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(c), FERRY_OK);
	ferry_close(c);		/* the kept ones go back */
	deadline = now_ms() + 30000;
	while (count_files(".seg") > 2 && now_ms() < deadline)
		usleep(50000);
	ck_assert_int_le(count_files(".seg"), 2);
	no_orphan_index();
	ck_assert_int_eq(ferryd_stop(&d), 0);
	no_orphan_index();
	ferryd_restart(&d);
	c = fc_connect_ms(d.port, "after", 10000);
	ck_assert_int_eq(ferry_subscribe(c, "s", &so, &sid), FERRY_OK);
	for (;;) {
		struct ferry_msg *m = NULL;
		char want[BODY];
		int r = ferry_next(c, 1500, &m);

		if (r == FERRY_ETIMEOUT)
			break;
		ck_assert_int_eq(r, FERRY_OK);
		fill(want, atoi(m->body));
		ck_assert_int_eq(atoi(m->body) % 500, 0);
		ck_assert_uint_eq(m->len, BODY);
		ck_assert(memcmp(m->body, want, BODY) == 0);
		got++;
		ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(got, kept);
	ferry_close(c);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("index");
	TCase *tc = tcase_create("index");
	SRunner *sr;
	int failed;

	srand((unsigned)getpid());
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, index_same_as_full_read);
	tcase_add_loop_test(tc, damaged_index_falls_back, 0,
	    (int)(sizeof(damage) / sizeof(damage[0])));
	tcase_add_test(tc, kill_while_sealing);
	tcase_add_test(tc, compaction_takes_indexes);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
