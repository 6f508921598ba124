/*
 * test-settle.c - settlements journaled one REC_SETTLE per group per turn
 * (store.c), through the real daemon: what a restart after kill -9 rebuilds
 * from them, from journals that also hold the older one-ack-per-record
 * REC_ACK, and from journals that compaction rewrote.
 *
 * The journal itself is read (and, for the mixed case, written) with the
 * broker's own journal and record code, while no ferryd holds it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <msgpack.h>

#include "ferry.h"
#include "client-helpers.h"
#include "harness.h"
#include "journal.h"
#include "record.h"

#define NTYPES 16

static struct ferryd d;

static void
teardown(void)
{
	ferryd_cleanup(&d);
}

/* Make durable group g of topic exist (subscribe, unsubscribe). */
static void
make_group(struct ferry *f, const char *topic, const char *g)
{
	struct ferry_sub_opts so = {.group = g};
	uint64_t sid;

	ck_assert_int_eq(ferry_subscribe(f, topic, &so, &sid), FERRY_OK);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), FERRY_OK);
}

/* Publish bodies "0".."n-1" (padded to len bytes), all confirmed. */
static void
publish(struct ferry *f, const char *topic, int n, size_t len)
{
	static char bodies[500][2048];
	struct ferry_pub_msg msgs[500];
	struct ferry_confirms c;

	ck_assert_uint_le(len, sizeof(bodies[0]));
	for (int sent = 0; sent < n;) {
		int k = n - sent < 500 ? n - sent : 500;

		for (int i = 0; i < k; i++) {
			memset(bodies[i], 'x', len);
			snprintf(bodies[i], 16, "%d", sent + i);
			msgs[i] = (struct ferry_pub_msg){bodies[i], len, NULL,
			    NULL, 0};
		}
		ck_assert_int_eq(ferry_publish_batch(f, topic, msgs,
		    (size_t)k, FERRY_CONFIRM), FERRY_OK);
		ck_assert_int_eq(ferry_wait_confirms(f, 0, 30000, &c), 0);
		ck_assert_uint_eq(c.failed, 0);
		sent += k;
	}
}

/*
 * Take n messages of topic/group; ack those for which keep(number) is 0,
 * fire-and-forget, then one last of them confirmed, after a ping: its
 * answer says every earlier settlement of the connection is durable too.
 * The kept ones stay leased to the returned connection.
 */
static struct ferry *
take_and_ack(const char *topic, const char *group, int n,
    int (*keep)(int), int *nacked)
{
	struct ferry_sub_opts so = {.group = group, .prefetch = 5000,
	    .ack_timeout_ms = 600000};
	struct ferry *f = fc_connect_ms(d.port, group, 10000);
	uint64_t sid, last = 0, deadline = now_ms() + 60000;

	*nacked = 0;
	ck_assert_int_eq(ferry_subscribe(f, topic, &so, &sid), FERRY_OK);
	for (int got = 0; got < n; got++) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(f, 10000, &m);

		ck_assert_msg(r == FERRY_OK, "%s: message %d of %d: %s",
		    group, got, n, ferry_errstr(f));
		ck_assert_uint_lt(now_ms(), deadline);
		if (!keep(atoi(m->body))) {
			if (last)
				ck_assert_int_eq(ferry_ack(f, sid, last, 0), 0);
			last = m->lease;
			(*nacked)++;
		}
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(f), FERRY_OK);
	if (last)
		ck_assert_int_eq(ferry_ack(f, sid, last, FERRY_CONFIRM),
		    FERRY_OK);
	return f;
}

/* What is left in topic/group: seen[number] counts deliveries (n slots). */
static int
drain(const char *topic, const char *group, unsigned char *seen, int n)
{
	struct ferry_sub_opts so = {.group = group, .prefetch = 5000};
	struct ferry *f = fc_connect_ms(d.port, "drain", 10000);
	uint64_t sid, deadline = now_ms() + 60000;
	int got = 0;

	memset(seen, 0, (size_t)n);
	ck_assert_int_eq(ferry_subscribe(f, topic, &so, &sid), FERRY_OK);
	for (;;) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(f, 1000, &m), k;

		if (r == FERRY_ETIMEOUT)
			break;
		ck_assert_int_eq(r, FERRY_OK);
		ck_assert_uint_lt(now_ms(), deadline);
		k = atoi(m->body);
		ck_assert_int_ge(k, 0);
		ck_assert_int_lt(k, n);
		seen[k]++;
		got++;
		ferry_msg_free(m);
	}
	ferry_close(f);		/* nothing acked: all stays */
	return got;
}

/* Records in the data directory, by type (ferryd must be stopped). */
struct counting {
	struct journal *j;
	unsigned long *counts;
};

static int
count_cb(void *arg, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len)
{
	struct counting *c = arg;

	c->counts[type < NTYPES ? type : 0]++;
	/* Held, or the journal would delete what nothing holds. */
	return journal_ref(c->j, seq);
}

static struct journal *
open_journal(struct event_base **base)
{
	struct journal_opts o = {.fsync = FSYNC_NEVER};
	struct journal *j;
	char dir[300], err[256] = "";

	snprintf(dir, sizeof(dir), "%s/data", d.dir);
	o.dir = dir;
	ck_assert_ptr_nonnull(*base = event_base_new());
	ck_assert_msg(journal_open(&j, *base, &o, err, sizeof(err)) == 0,
	    "journal_open: %s", err);
	return j;
}

static void
count_records(unsigned long counts[NTYPES])
{
	struct event_base *base;
	struct journal *j = open_journal(&base);
	struct counting c = {j, counts};
	char err[256] = "";

	memset(counts, 0, NTYPES * sizeof(counts[0]));
	ck_assert_msg(journal_replay(j, count_cb, &c, 0, err,
	    sizeof(err)) == 0, "journal_replay: %s", err);
	journal_close(j);
	event_base_free(base);
}

static int
keep_odd(int n)
{
	return n % 2;
}

static int
keep_non_thirds(int n)
{
	return n % 3 != 0;
}

/*
 * Two groups settle different halves of the same messages, unconfirmed
 * but for the last ack; kill -9; the restart keeps exactly the rest of
 * each group, so the settlements reached the journal as REC_SETTLE (far
 * fewer records than acks) and replay applied them.
 */
START_TEST(settle_survives_kill9)
{
	enum { N = 3000 };
	static unsigned char seen[N];
	unsigned long counts[NTYPES];
	struct ferry *p, *c1, *c2;
	int a1, a2, left;

	ferryd_start(&d, "--fsync", "always", NULL);
	p = fc_connect_ms(d.port, "producer", 10000);
	make_group(p, "st.k", "g1");
	make_group(p, "st.k", "g2");
	publish(p, "st.k", N, 100);
	c1 = take_and_ack("st.k", "g1", N, keep_odd, &a1);
	c2 = take_and_ack("st.k", "g2", N, keep_non_thirds, &a2);
	ck_assert_int_eq(a1, N / 2);
	ck_assert_int_eq(a2, N / 3);
	ferryd_kill(&d);
	ferry_close(c1);
	ferry_close(c2);
	ferry_close(p);

	count_records(counts);
	fprintf(stderr, "settle_survives_kill9: %d acks in %lu REC_SETTLE, "
	    "%lu REC_ACK\n", a1 + a2, counts[REC_SETTLE], counts[REC_ACK]);
	ck_assert_uint_gt(counts[REC_SETTLE], 0);
	ck_assert_uint_eq(counts[REC_ACK], 0);
	/* one record for many settlements (at most REC_SETTLE_MAX each) */
	ck_assert_uint_le(counts[REC_SETTLE], (unsigned long)(a1 + a2) / 8);

	ferryd_restart(&d);
	left = drain("st.k", "g1", seen, N);
	ck_assert_int_eq(left, N - a1);
	for (int i = 0; i < N; i++)
		ck_assert_msg(seen[i] == (keep_odd(i) ? 1 : 0),
		    "g1: message %d delivered %u times after restart", i,
		    seen[i]);
	left = drain("st.k", "g2", seen, N);
	ck_assert_int_eq(left, N - a2);
	for (int i = 0; i < N; i++)
		ck_assert_msg(seen[i] == (keep_non_thirds(i) ? 1 : 0),
		    "g2: message %d delivered %u times after restart", i,
		    seen[i]);
	ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* Append record r to j (the legacy writer of mixed_journal). */
static void
put(struct journal *j, msgpack_sbuffer *sb, const struct rec *r)
{
	uint64_t seq;

	msgpack_sbuffer_clear(sb);
	ck_assert_int_eq(rec_encode(sb, r), 0);
	ck_assert_int_eq(journal_append(j, r->type, sb->data, sb->size,
	    &seq), 0);
}

static int
keep_mod4_3(int n)
{
	return n % 4 == 3;
}

/*
 * A journal as ferryd wrote it before REC_SETTLE: one REC_ACK per
 * settlement.  The new ferryd replays it, adds REC_SETTLEs to it, and
 * after kill -9 replays both kinds.
 */
START_TEST(mixed_journal)
{
	enum { N = 40 };
	static unsigned char seen[N];
	unsigned long counts[NTYPES];
	struct event_base *base;
	struct journal *j;
	msgpack_sbuffer sb;
	struct rec r;
	char body[16], id[16];
	struct ferry *c;
	int left, acked;

	ferryd_start(&d, "--fsync", "always", NULL);	/* makes data/ */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	j = open_journal(&base);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	msgpack_sbuffer_init(&sb);
	memset(&r, 0, sizeof(r));
	r.type = REC_GROUP;
	r.group.gid = 1000;	/* past anything the first start made */
	r.group.topic = (struct fy_str){"st.mixed", 8};
	r.group.name = (struct fy_str){"g", 1};
	r.group.ack_timeout_ms = 600000;
	r.group.max_attempts = 10;
	put(j, &sb, &r);
	uint64_t first = journal_next_seq(j);
	for (int i = 0; i < N; i++) {
		memset(&r, 0, sizeof(r));
		r.type = REC_PUB;
		snprintf(body, sizeof(body), "%d", i);
		snprintf(id, sizeof(id), "m-%d", i);
		r.pub.topic = (struct fy_str){"st.mixed", 8};
		r.pub.id = (struct fy_str){id, (uint32_t)strlen(id)};
		r.pub.ts = 1700000000000ull + (uint64_t)i;
		r.pub.m.body = (struct fy_str){body, (uint32_t)strlen(body)};
		put(j, &sb, &r);
	}
	for (int i = 0; i < N; i += 4) {	/* the old kind */
		memset(&r, 0, sizeof(r));
		r.type = REC_ACK;
		r.ack.gid = 1000;
		r.ack.mseq = first + (uint64_t)i;
		put(j, &sb, &r);
	}
	ck_assert_int_eq(journal_commit(j), 0);
	journal_close(j);
	event_base_free(base);
	msgpack_sbuffer_destroy(&sb);

	ferryd_restart(&d);
	left = drain("st.mixed", "g", seen, N);
	ck_assert_int_eq(left, N - N / 4);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(seen[i], i % 4 ? 1 : 0);
	/* The new kind on top: all but the n % 4 == 3 ones. */
	c = take_and_ack("st.mixed", "g", N - N / 4, keep_mod4_3, &acked);
	ck_assert_int_eq(acked, N / 2);
	ferryd_kill(&d);
	ferry_close(c);

	count_records(counts);
	ck_assert_uint_eq(counts[REC_ACK], N / 4);
	ck_assert_uint_gt(counts[REC_SETTLE], 0);
	ferryd_restart(&d);
	left = drain("st.mixed", "g", seen, N);
	ck_assert_int_eq(left, N / 4);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(seen[i], keep_mod4_3(i) ? 1 : 0);
	ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

static int
keep_hundredths(int n)
{
	return n % 100 == 0;
}

/*
 * Small segments, nearly everything settled: compaction copies the few
 * pending messages forward (REC_MOVE) and the old segments, with their
 * publishes and REC_SETTLEs, go.  kill -9 then restores exactly the
 * pending ones, each once.
 */
START_TEST(compaction_and_kill9)
{
	enum { N = 20000 };
	static unsigned char seen[N];
	unsigned long counts[NTYPES];
	struct ferry *p, *c;
	struct ferry_broker_stats bs;
	uint64_t deadline;
	int acked, left;

	ferryd_start(&d, "--segment-size", "64K", "--fsync", "never", NULL);
	p = fc_connect_ms(d.port, "producer", 10000);
	make_group(p, "st.c", "g");
	publish(p, "st.c", N, 1000);
	c = take_and_ack("st.c", "g", N, keep_hundredths, &acked);
	ck_assert_int_eq(acked, N - N / 100);
	/* The journal shrinks to a few segments (20 MB were written). */
	deadline = now_ms() + 30000;
	do {
		usleep(100000);
		ck_assert_int_eq(ferry_stats_broker(p, &bs), FERRY_OK);
	} while (bs.journal_bytes > (1u << 20) && now_ms() < deadline);
	ck_assert_uint_le(bs.journal_bytes, 1u << 20);
	ferryd_kill(&d);
	ferry_close(c);
	ferry_close(p);

	count_records(counts);
	fprintf(stderr, "compaction_and_kill9: %lu REC_MOVE, %lu REC_SETTLE, "
	    "%lu REC_PUB left\n", counts[REC_MOVE], counts[REC_SETTLE],
	    counts[REC_PUB]);
	ck_assert_uint_gt(counts[REC_MOVE], 0);
	ferryd_restart(&d);
	left = drain("st.c", "g", seen, N);
	ck_assert_int_eq(left, N / 100);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(seen[i], keep_hundredths(i) ? 1 : 0);
	ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("settle");
	TCase *tc = tcase_create("settle");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, settle_survives_kill9);
	tcase_add_test(tc, mixed_journal);
	tcase_add_test(tc, compaction_and_kill9);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
