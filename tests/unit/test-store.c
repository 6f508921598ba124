/*
 * test-store.c - the store, groups and topics without a daemon: records in,
 * queues out, and no delivery from apply().
 *
 * A broker is set up on its own event base with a temporary data directory
 * (fsync=never), no listener and no socket.  A member is a connection made
 * without a socket (conn_new(b, -1, ...)), so what it is sent stays in its
 * staged output, where the test can see it.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "clock.h"
#include "conn.h"
#include "dedup.h"
#include "delivery.h"
#include "group.h"
#include "journal.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "record.h"
#include "store.h"
#include "sub.h"
#include "topic.h"

static struct event_base *base;
static struct options opt;
static struct broker b;
static char dir[] = "/tmp/ferry-test-store.XXXXXX";

static void
set(const char *key, const char *value)
{
	char err[256];

	ck_assert_msg(options_set(&opt, key, value, err, sizeof(err)) == 0,
	    "%s = %s: %s", key, value, err);
}

static void
open_broker(void)
{
	char err[512] = "";

	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_int_eq(broker_init(&b, base, &opt), 0);
	ck_assert_msg(store_open(&b.core, err, sizeof(err)) == 0, "%s", err);
}

static void
close_broker(void)
{
	broker_fini(&b);
	event_base_free(base);
}

static void
setup(void)
{
	char err[256];

	log_level = LOG_ERROR;
	strcpy(dir, "/tmp/ferry-test-store.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(options_init(&opt), 0);
	set("data_dir", dir);
	set("fsync", "never");
	set("retry_backoff_base", "0.001");
	set("retry_backoff_max", "0.001");
	ck_assert_msg(options_check(&opt, err, sizeof(err)) == 0, "%s", err);
	open_broker();
}

static void
teardown(void)
{
	char cmd[128];

	close_broker();
	options_fini(&opt);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct group *
durable_group(const char *topic, const char *name, uint32_t max_attempts)
{
	struct group_conf conf = {
		.ack_timeout_ms = 60000,
		.max_attempts = max_attempts,
	};
	struct topic *t = topic_get(&b.core, topic, strlen(topic));
	struct group *g;

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(store_group_get(&b.core, t, name, strlen(name), &conf,
	    &g), 0);
	return g;
}

/* Store pm on topic with id, published at ts; its journal seq. */
static uint64_t
store_pm(const char *topic, const struct fy_pubmsg *pm, const char *id,
    uint64_t ts, int confirm)
{
	struct topic *t = topic_get(&b.core, topic, strlen(topic));
	uint64_t seq = 0;

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(store_publish(&b.core, t, pm, id, MSG_ID_LEN, ts, NULL,
	    0, NULL, confirm, &seq), 0);
	return seq;
}

/* A plain message with a broker-made id, confirmed or not. */
static uint64_t
publish_body(const char *topic, const char *body, int confirm)
{
	struct fy_pubmsg pm = {.body = {body, (uint32_t)strlen(body)}};
	char id[MSG_ID_LEN + 1];

	msg_id_generate(id);
	return store_pm(topic, &pm, id, 1000, confirm);
}

static uint64_t
publish(const char *topic, const char *body)
{
	return publish_body(topic, body, 1);
}

/* A group with a member: publishing fills the queue and sends nothing;
 * the pump sends. */
START_TEST(apply_never_delivers)
{
	struct group *g = durable_group("s.t", "g", 0);
	struct conn *c = conn_new(&b.core, -1, NULL, 0);
	struct sub *s;

	ck_assert_ptr_nonnull(c);
	c->state = CONN_OPEN;
	ck_assert_ptr_nonnull(s = sub_new(c, g, 1, 16, FY_MODE_ALO, 60000));
	publish("s.t", "one");
	publish("s.t", "two");
	ck_assert_uint_eq(g->nready, 2);
	ck_assert_uint_eq(conn_outlen(c), 0);
	delivery_pump_due(&b.core);
	ck_assert_uint_eq(g->nready, 0);
	ck_assert_uint_eq(g->ninflight, 2);
	ck_assert_uint_gt(conn_outlen(c), 0);
	conn_free(c);		/* both back to the queue, with backoff */
	ck_assert_uint_eq(g->ninflight, 0);
	ck_assert_uint_eq(g->nheld, 2);
	ck_assert_uint_eq(g->st.failed[CAUSE_DISCONNECTED], 2);
}
END_TEST

/* Ack, fail and replay: what a restart rebuilds is what was live. */
START_TEST(replay_rebuilds_queues)
{
	struct group *g = durable_group("s.r", "g", 0);
	struct conn *c = conn_new(&b.core, -1, NULL, 0);
	struct qent *e;
	struct sub *s;
	uint64_t seq;

	ck_assert_ptr_nonnull(c);
	c->state = CONN_OPEN;
	ck_assert_ptr_nonnull(s = sub_new(c, g, 1, 16, FY_MODE_ALO, 60000));
	publish("s.r", "acked");
	publish("s.r", "failed");
	publish("s.r", "waiting");
	delivery_pump_due(&b.core);
	ck_assert_uint_eq(g->ninflight, 3);
	e = list_first(&s->leases, struct qent, link);
	store_ack(&b.core, e);
	/* Buffered, appended as the group's REC_SETTLE. */
	ck_assert_int_eq(store_settle_pending(&b.core), 1);
	seq = store_settle_flush(&b.core);
	ck_assert_uint_gt(seq, 0);
	ck_assert_uint_eq(seq, store_newest_seq(&b.core));
	ck_assert_int_eq(store_settle_pending(&b.core), 0);
	e = list_first(&s->leases, struct qent, link);
	delivery_fail(&b.core, e, CAUSE_NACKED, "boom", 4, 0);
	ck_assert_uint_eq(e->attempts, 1);
	conn_free(c);
	store_commit(&b.core);
	close_broker();

	open_broker();
	g = topic_group_find(topic_find(&b.core, "s.r", 3), "g", 1);
	ck_assert_ptr_nonnull(g);
	ck_assert_uint_eq(g->nheld, 2);
	ck_assert_uint_eq(g->ninflight, 0);
}
END_TEST

/* Past max_attempts, delivery dead-letters: the copy is a publish record
 * in <topic>.dlq and the original is settled, so replay needs no policy. */
START_TEST(dead_letter_is_records)
{
	struct group *g = durable_group("s.d", "g", 1);
	struct group *dg = durable_group("s.d.dlq", "g", 0);
	struct conn *c = conn_new(&b.core, -1, NULL, 0);
	uint64_t before;
	struct qent *e;
	struct sub *s;

	ck_assert_ptr_nonnull(c);
	c->state = CONN_OPEN;
	ck_assert_ptr_nonnull(s = sub_new(c, g, 1, 16, FY_MODE_ALO, 60000));
	publish("s.d", "poison");
	delivery_pump_due(&b.core);
	e = list_first(&s->leases, struct qent, link);
	ck_assert_ptr_nonnull(e);
	before = store_newest_seq(&b.core);
	delivery_fail(&b.core, e, CAUSE_NACKED, "bad", 3, 0);
	/* FAIL, the dead letter's PUB, then the original's settlement,
	 * buffered until its group's REC_SETTLE. */
	ck_assert_uint_eq(store_newest_seq(&b.core), before + 2);
	ck_assert_uint_eq(store_settle_flush(&b.core), before + 3);
	ck_assert_uint_eq(g->nheld, 0);
	ck_assert_uint_eq(dg->nready, 1);
	ck_assert_uint_eq(g->st.dead_lettered, 1);
	conn_free(c);
	store_commit(&b.core);
	close_broker();

	open_broker();
	g = topic_group_find(topic_find(&b.core, "s.d", 3), "g", 1);
	dg = topic_group_find(topic_find(&b.core, "s.d.dlq", 7), "g", 1);
	ck_assert_ptr_nonnull(g);
	ck_assert_ptr_nonnull(dg);
	ck_assert_uint_eq(g->nheld, 0);
	ck_assert_uint_eq(dg->nready, 1);
}
END_TEST

/* A topic without a durable group keeps a backlog; the first durable
 * group takes it, across a restart too. */
START_TEST(backlog_to_first_group)
{
	struct topic *t;
	struct group *g;

	publish("s.b", "early");
	t = topic_find(&b.core, "s.b", 3);
	ck_assert_uint_eq(t->nbacklog, 1);
	store_commit(&b.core);
	close_broker();
	open_broker();
	t = topic_find(&b.core, "s.b", 3);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->nbacklog, 1);
	g = durable_group("s.b", "g", 0);
	ck_assert_uint_eq(t->nbacklog, 0);
	ck_assert_uint_eq(g->nready, 1);
}
END_TEST

static uint64_t
publish_unconfirmed(const char *topic, const char *body)
{
	return publish_body(topic, body, 0);
}

/*
 * A settlement buffered for a message that compaction then moves is
 * journaled before the REC_MOVE: replay meets it while the message still
 * has its old seq, which the settlement names.
 */
START_TEST(settle_before_move)
{
	struct group *g1 = durable_group("s.m", "g1", 0);
	struct group *g2 = durable_group("s.m", "g2", 0);
	struct conn *c = conn_new(&b.core, -1, NULL, 0);
	struct qent *e;
	struct sub *s;
	uint64_t newest;

	ck_assert_ptr_nonnull(c);
	c->state = CONN_OPEN;
	ck_assert_ptr_nonnull(s = sub_new(c, g1, 1, 16, FY_MODE_ALO, 60000));
	publish("s.m", "moved");
	delivery_pump_due(&b.core);
	ck_assert_ptr_nonnull(e = list_first(&s->leases, struct qent, link));
	store_ack(&b.core, e);
	ck_assert_int_eq(store_settle_pending(&b.core), 1);
	e = list_first(&g2->ready, struct qent, link);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(store_move(&b.core, qent_msg(e), g2->topic), 0);
	newest = store_newest_seq(&b.core);
	ck_assert_int_eq(store_settle_pending(&b.core), 0);
	ck_assert_uint_eq(store_settle_flush(&b.core), newest - 1);
	conn_free(c);
	store_commit(&b.core);
	close_broker();

	open_broker();
	g1 = topic_group_find(topic_find(&b.core, "s.m", 3), "g1", 2);
	g2 = topic_group_find(topic_find(&b.core, "s.m", 3), "g2", 2);
	ck_assert_uint_eq(g1->nheld, 0);
	ck_assert_uint_eq(g2->nheld, 1);
}
END_TEST

/*
 * A publish settled at-most-once in the turn it was made is taken back
 * (its seq handed out again), unless another group's settlement of it is
 * buffered: that REC_SETTLE would name the next record's seq.
 */
START_TEST(settle_blocks_take_back)
{
	struct group *g1 = durable_group("s.e", "g1", 0);
	struct group *g2 = durable_group("s.e", "g2", 0);
	struct conn *c = conn_new(&b.core, -1, NULL, 0);
	struct qent *e;
	struct sub *s;
	uint64_t m, p;

	ck_assert_ptr_nonnull(c);
	c->state = CONN_OPEN;
	ck_assert_ptr_nonnull(s = sub_new(c, g1, 1, 16, FY_MODE_ALO, 60000));
	m = publish_unconfirmed("s.e", "first");
	delivery_pump_due(&b.core);
	ck_assert_ptr_nonnull(e = list_first(&s->leases, struct qent, link));
	store_ack(&b.core, e);		/* g1's, buffered */
	ck_assert_ptr_nonnull(sub_new(c, g2, 2, 16, FY_MODE_AMO, 60000));
	delivery_pump(g2);		/* g2's, at-most-once */
	ck_assert_uint_eq(g2->nready, 0);
	ck_assert_uint_eq(b.core.store.elided, 0);
	p = publish_unconfirmed("s.e", "second");
	ck_assert_uint_eq(p, m + 1);
	store_settle_flush(&b.core);
	conn_free(c);
	store_commit(&b.core);
	close_broker();

	open_broker();
	g1 = topic_group_find(topic_find(&b.core, "s.e", 3), "g1", 2);
	g2 = topic_group_find(topic_find(&b.core, "s.e", 3), "g2", 2);
	ck_assert_uint_eq(g1->nheld, 1);	/* "second" */
	ck_assert_uint_eq(g2->nheld, 1);
}
END_TEST

/* An idempotent producer's message gets the same id on every retry. */
START_TEST(derived_ids)
{
	char a[MSG_ID_LEN + 1], a2[MSG_ID_LEN + 1], b2[MSG_ID_LEN + 1];
	char c2[MSG_ID_LEN + 1];

	msg_id_derive("producer-1", 10, 1, a);
	msg_id_derive("producer-1", 10, 1, a2);
	msg_id_derive("producer-1", 10, 2, b2);
	msg_id_derive("producer-2", 10, 1, c2);
	ck_assert_str_eq(a, a2);
	ck_assert_str_ne(a, b2);
	ck_assert_str_ne(a, c2);
	ck_assert_int_eq(a[14], '8');	/* version 8 */
	ck_assert(strchr("89ab", a[19]) != NULL);	/* RFC variant */
	/* Pinned: a retry after an upgrade must still carry the id a
	 * consumer may hold.  Back and forth between producers, so the
	 * remembered pid state is used and replaced. */
	for (int i = 0; i < 3; i++) {
		msg_id_derive("producer-1", 10, 1, a);
		ck_assert_str_eq(a, "e43ea6b2-204d-82df-97c6-eda231be39c2");
		msg_id_derive("producer-1", 10, 2, b2);
		ck_assert_str_eq(b2, "76714a46-149c-8608-886a-763f608995c6");
		msg_id_derive("producer-2", 10, 1, c2);
		ck_assert_str_eq(c2, "4173380c-1a47-8c2a-9f7c-4f7f42185e0a");
	}
	/* The same bytes, shorter: not the remembered pid. */
	msg_id_derive("producer-", 9, 1, a2);
	ck_assert_str_ne(a2, a);
}
END_TEST

/* ---- idempotent producers: expiry (dedup.c), records, replay ---- */

/* Forgotten oldest first, O(1) each; a lookup never finds an expired
 * one, and the one found last is no longer cached once freed. */
START_TEST(producers_expire_in_order)
{
	struct producers p;
	struct producer *a, *x;

	producers_init(&p, 1000);
	ck_assert_ptr_nonnull(a = producer_get(&p, "a", 1, 0));
	ck_assert_ptr_nonnull(producer_get(&p, "b", 1, 10));
	ck_assert_ptr_nonnull(producer_get(&p, "c", 1, 20));
	producer_stored(&p, a, 5, "id-5", 4, 30);	/* a: newest now */
	ck_assert_uint_eq(a->hwm, 5);
	ck_assert_uint_eq(producers_expire(&p, 1015), 1);	/* b */
	ck_assert_uint_eq(p.n, 2);
	ck_assert_ptr_null(producer_find(&p, "b", 1, 1015));
	ck_assert_ptr_eq(producer_find(&p, "a", 1, 1029), a);
	ck_assert_ptr_eq(p.last, a);
	/* Expired for a lookup before the sweep: freed by it. */
	ck_assert_ptr_null(producer_find(&p, "c", 1, 1020));
	ck_assert_uint_eq(p.n, 1);
	ck_assert_uint_eq(producers_expire(&p, 1030), 1);	/* a */
	ck_assert_ptr_null(p.last);
	ck_assert_uint_eq(p.n, 0);
	/* A fresh one with the same pid starts over. */
	ck_assert_ptr_nonnull(x = producer_get(&p, "a", 1, 2000));
	ck_assert_uint_eq(x->hwm, 0);
	ck_assert_ptr_null(producer_recent_id(x, 5));
	/* Touched out of order (a replay): sorted, expiry is exact. */
	ck_assert_ptr_nonnull(x = producer_get(&p, "y", 1, 1500));
	ck_assert_ptr_nonnull(producer_get(&p, "z", 1, 1700));
	producer_touch(&p, x, 1600);	/* y: 1600, still before z */
	ck_assert_int_eq(producers_sort(&p), 0);
	ck_assert_ptr_eq(list_first(&p.lru, struct producer, link), x);
	ck_assert_uint_eq(producers_expire(&p, 2650), 1);	/* y only */
	ck_assert_uint_eq(producers_expire(&p, 2700), 1);	/* z */
	ck_assert_uint_eq(producers_expire(&p, 3000), 1);	/* a */
	producers_fini(&p);

	producers_init(&p, 0);		/* 0: never */
	ck_assert_ptr_nonnull(producer_get(&p, "k", 1, 0));
	ck_assert_uint_eq(producers_expire(&p, INT64_MAX / 4), 0);
	ck_assert_ptr_nonnull(producer_find(&p, "k", 1, INT64_MAX / 4));
	producers_fini(&p);
}
END_TEST

/* store_duplicate() for pid and seq, on topic "pr.t". */
static int
dup_of(const char *pid, uint64_t seq)
{
	struct fy_pubmsg pm = {.pid = {pid, (uint32_t)strlen(pid)},
	    .pseq = seq};
	struct topic *t = topic_get(&b.core, "pr.t", 4);
	const char *id;
	size_t len;

	ck_assert_ptr_nonnull(t);
	return store_duplicate(&b.core, t, &pm, &id, &len);
}

/* Append a REC_PRODUCER as a journal from before "at" held them
 * (at 0: the 2-element form) or as this one writes them. */
static void
append_producer(const char *pid, uint64_t seq, uint64_t at)
{
	struct rec r = {.type = REC_PRODUCER};
	msgpack_sbuffer sb;
	uint64_t jseq;

	r.producer.pid = (struct fy_str){pid, (uint32_t)strlen(pid)};
	r.producer.seq = seq;
	r.producer.at = at;
	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(rec_encode(&sb, &r), 0);
	ck_assert_uint_eq((uint8_t)sb.data[0], at ? 0x93 : 0x92);
	ck_assert_int_eq(journal_append(b.core.store.j, REC_PRODUCER, sb.data,
	    sb.size, &jseq), 0);
	msgpack_sbuffer_destroy(&sb);
}

/*
 * Both forms of REC_PRODUCER replay: the old one as active at the replay
 * (however old the journal), the new one at its time, so an expired
 * producer is not brought back by a restart.
 */
START_TEST(producer_records_replay)
{
	uint64_t now = clock_wall_ms(), day = 86400000;

	append_producer("old-format", 7, 0);
	append_producer("recent", 8, now - day / 2);
	append_producer("expired", 9, now - 2 * day);
	store_commit(&b.core);
	close_broker();
	open_broker();
	ck_assert_uint_eq(b.core.store.producers.n, 2);
	ck_assert_int_eq(dup_of("old-format", 7), 1);
	ck_assert_int_eq(dup_of("old-format", 8), 0);
	ck_assert_int_eq(dup_of("recent", 8), 1);
	ck_assert_int_eq(dup_of("expired", 9), 0);
	ck_assert_int_eq(dup_of("expired", 1), 0);
}
END_TEST

/* An idempotent publish as pid, seq, stored now. */
static void
publish_as(const char *pid, uint64_t seq)
{
	struct fy_pubmsg pm = {.body = {"x", 1},
	    .pid = {pid, (uint32_t)strlen(pid)}, .pseq = seq};
	char id[MSG_ID_LEN + 1];

	msg_id_derive(pid, strlen(pid), seq, id);
	store_pm("pr.t", &pm, id, clock_wall_ms(), 1);
}

/* Close and reopen after both clocks moved on by ms (as if stopped that
 * long), with producer_ttl ttl. */
static void
reopen_later(int64_t ms, const char *ttl)
{
	char err[256];

	store_commit(&b.core);
	close_broker();
	clock_shift_mono(ms);
	clock_shift_wall(ms);
	set("producer_ttl", ttl);
	ck_assert_msg(options_check(&opt, err, sizeof(err)) == 0, "%s", err);
	open_broker();
}

/*
 * A producer's activity is its publishes' time: live, past the ttl it is
 * forgotten; across restarts (replaying its REC_PUBs) the same, the time
 * the broker was stopped counting; producer_ttl 0 keeps it.
 */
START_TEST(producer_expiry_live_and_replayed)
{
	int64_t hour = 3600000;

	set("producer_ttl", "3600");
	close_broker();
	open_broker();
	publish_as("p1", 3);
	ck_assert_int_eq(dup_of("p1", 3), 1);
	/* A second short of the ttl: the clocks also move on their own,
	 * by milliseconds under a sanitizer, between these calls. */
	clock_shift_mono(hour - 1000);
	ck_assert_int_eq(dup_of("p1", 2), 1);
	publish_as("p2", 1);
	clock_shift_mono(1000);
	ck_assert_int_eq(dup_of("p1", 2), 0);	/* an hour idle */
	ck_assert_uint_eq(b.core.store.producers.n, 1);	/* freed by it */
	ck_assert_int_eq(dup_of("p2", 1), 1);
	publish_as("p1", 4);			/* back, a new mark */
	reopen_later(hour / 2, "3600");
	ck_assert_int_eq(dup_of("p1", 4), 1);
	ck_assert_int_eq(dup_of("p1", 5), 0);
	ck_assert_int_eq(dup_of("p2", 1), 1);
	ck_assert_uint_eq(b.core.store.producers.n, 2);
	publish_as("p1", 5);
	reopen_later(hour / 2 + 10, "3600");	/* p2 idle past the ttl */
	ck_assert_uint_eq(b.core.store.producers.n, 1);
	ck_assert_int_eq(dup_of("p2", 1), 0);
	ck_assert_int_eq(dup_of("p1", 5), 1);
	reopen_later(365 * 24 * hour, "0");	/* never: both back */
	ck_assert_uint_eq(b.core.store.producers.n, 2);
	ck_assert_int_eq(dup_of("p1", 5), 1);
	ck_assert_int_eq(dup_of("p2", 1), 1);
	clock_shift_mono(-(365 * 24 * hour + 2 * hour + 10));
	clock_shift_wall(-(365 * 24 * hour + hour + 10));
}
END_TEST

/* ---- index summaries of records (record.h) ---- */

static struct fy_kv sum_hdr[2] = {
	{{"k", 1}, {"v", 1}}, {{"trace", 5}, {"abc", 3}},
};
static const struct fy_hist sum_hist[1] = {
	{{"nack", 4}, {"boom", 4}, {"worker", 6}, 1700000000000ULL},
};
static char sum_body[70000];

/* Records of every shape, bodies of every bin width. */
static void
sum_rec(int i, struct rec *r)
{
	static struct rec_qhist qh = {1, 42, {"w", 1}, {"e", 1}};
	static struct rec_entry ent[2] = {
		{0, 1, {0, 0, 0, 0}, 0, NULL, 0},
		{7, 3, {1, 0, 2, 0}, 1700000000001ULL, &qh, 1},
	};

	memset(r, 0, sizeof(*r));
	for (size_t k = 0; k < sizeof(sum_body); k++)
		sum_body[k] = (char)(k * 7 + 3);
	switch (i) {
	case 0:		/* the plainest publish: five elements */
	case 1:		/* a 300-byte body (bin 16) */
	case 2:		/* a 70000-byte body (bin 32) */
	case 3:		/* an empty body */
		r->type = REC_PUB;
		r->pub.topic = (struct fy_str){"orders", 6};
		r->pub.id = (struct fy_str){"0f6b2c1e-1111-4222-8333-444455556666",
		    36};
		r->pub.ts = 1700000000000ULL;
		r->pub.m.body = (struct fy_str){sum_body,
		    i == 0 ? 100 : i == 1 ? 300 : i == 2 ? 70000 : 0};
		break;
	case 4:		/* everything optional: headers, history, options */
		r->type = REC_PUB;
		r->pub.topic = (struct fy_str){"orders.dlq", 10};
		r->pub.id = (struct fy_str){"mine", 4};
		r->pub.ts = 5;
		r->pub.m.body = (struct fy_str){sum_body, 1024};
		r->pub.m.hdr = sum_hdr;
		r->pub.m.nhdr = 2;
		r->pub.m.delay_ms = 1000;
		r->pub.m.ttl_ms = 60000;
		r->pub.m.reply_to = (struct fy_str){"replies", 7};
		r->pub.m.corr = (struct fy_str){"c-1", 3};
		r->pub.m.pid = (struct fy_str){"prod", 4};
		r->pub.m.pseq = 99;
		r->pub.m.id = (struct fy_str){"mine", 4};
		r->pub.hist = sum_hist;
		r->pub.nhist = 1;
		r->pub.gid = 3;
		break;
	case 5:		/* compaction's copy */
		r->type = REC_MOVE;
		r->move.old_mseq = 12345;
		r->move.topic = (struct fy_str){"orders", 6};
		r->move.id = (struct fy_str){"x", 1};
		r->move.ts = 77;
		r->move.m.body = (struct fy_str){sum_body, 2000};
		r->move.m.hdr = sum_hdr;
		r->move.m.nhdr = 1;
		r->move.hist = (struct fy_hist *)sum_hist;
		r->move.nhist = 1;
		r->move.ent = ent;
		r->move.nent = 2;
		break;
	case 6:
		r->type = REC_ACK;
		r->ack.gid = 4;
		r->ack.mseq = 1ULL << 40;
		break;
	case 7:
		r->type = REC_GROUP;
		r->group.gid = 2;
		r->group.topic = (struct fy_str){"orders", 6};
		r->group.name = (struct fy_str){"billing", 7};
		r->group.ack_timeout_ms = 30000;
		r->group.max_attempts = 5;
		break;
	case 8:		/* with its last activity (3 elements) */
		r->type = REC_PRODUCER;
		r->producer.pid = (struct fy_str){"prod", 4};
		r->producer.seq = 1ULL << 35;
		r->producer.at = 1700000000002ULL;
		break;
	}
}

/* A summary decodes to the record without its body: put the body back
 * and it encodes to the very same payload. */
START_TEST(summary_roundtrip)
{
	msgpack_sbuffer sb, sb2;
	msgpack_zone zone;
	struct rec r, d;
	uint8_t *sum;
	ssize_t n;
	struct fy_str *body, want;

	sum_rec(_i, &r);
	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&sb2);
	ck_assert(msgpack_zone_init(&zone, 4096));
	ck_assert_int_eq(rec_encode(&sb, &r), 0);
	ck_assert_ptr_nonnull(sum = malloc(sb.size + 8));
	n = rec_summarize(r.type, (const uint8_t *)sb.data, sb.size, sum,
	    sb.size + 8);
	ck_assert_int_gt(n, 0);
	if (r.type != REC_PUB && r.type != REC_MOVE) {
		ck_assert_uint_eq((size_t)n, sb.size);
		ck_assert(memcmp(sum, sb.data, sb.size) == 0);
	} else {
		want = r.type == REC_PUB ? r.pub.m.body : r.move.m.body;
		/* the body's bytes are gone */
		ck_assert_uint_le((size_t)n + want.len, sb.size + 8);
	}
	ck_assert_int_eq(rec_decode_summary(&zone, r.type, sum, (size_t)n,
	    &d), 0);
	if (r.type == REC_PUB || r.type == REC_MOVE) {
		body = d.type == REC_PUB ? &d.pub.m.body : &d.move.m.body;
		ck_assert_uint_eq(body->len, want.len);
		ck_assert_ptr_null(body->p);
		*body = want;
	}
	ck_assert_int_eq(rec_encode(&sb2, &d), 0);
	ck_assert_uint_eq(sb2.size, sb.size);
	ck_assert(memcmp(sb2.data, sb.data, sb.size) == 0);
	free(sum);
	msgpack_zone_destroy(&zone);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sb2);
}
END_TEST

/* Cut short anywhere, a payload has no summary and a summary does not
 * decode; too small an output is -ENOSPC. */
START_TEST(summary_truncated)
{
	msgpack_sbuffer sb;
	msgpack_zone zone;
	struct rec r, d;
	uint8_t sum[2200];
	ssize_t n;

	sum_rec(_i, &r);
	msgpack_sbuffer_init(&sb);
	ck_assert(msgpack_zone_init(&zone, 4096));
	ck_assert_int_eq(rec_encode(&sb, &r), 0);
	ck_assert_uint_le(sb.size, sizeof(sum) - 8);
	for (size_t k = 0; k < sb.size; k++)
		ck_assert_int_eq(rec_summarize(r.type,
		    (const uint8_t *)sb.data, k, sum, sizeof(sum)), -EBADMSG);
	n = rec_summarize(r.type, (const uint8_t *)sb.data, sb.size, sum,
	    sizeof(sum));
	ck_assert_int_gt(n, 0);
	for (size_t k = 0; k < (size_t)n; k++)
		ck_assert_int_lt(rec_decode_summary(&zone, r.type, sum, k, &d),
		    0);
	ck_assert_int_eq(rec_summarize(r.type, (const uint8_t *)sb.data,
	    sb.size, sum, (size_t)n - 1), -ENOSPC);
	/* a full payload is no summary of a record with a body */
	if (r.type == REC_PUB)
		ck_assert_int_lt(rec_decode_summary(&zone, r.type,
		    (const uint8_t *)sb.data, sb.size, &d), 0);
	msgpack_zone_destroy(&zone);
	msgpack_sbuffer_destroy(&sb);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("records");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, apply_never_delivers);
	tcase_add_test(tc, replay_rebuilds_queues);
	tcase_add_test(tc, dead_letter_is_records);
	tcase_add_test(tc, backlog_to_first_group);
	tcase_add_test(tc, derived_ids);
	tcase_add_test(tc, settle_before_move);
	tcase_add_test(tc, settle_blocks_take_back);
	tcase_add_test(tc, producers_expire_in_order);
	tcase_add_test(tc, producer_records_replay);
	tcase_add_test(tc, producer_expiry_live_and_replayed);
	suite_add_tcase(s, tc);
	tc = tcase_create("summaries");
	tcase_add_loop_test(tc, summary_roundtrip, 0, 9);
	/* the body-less shapes, and one with everything (small enough to
	 * cut at every byte) */
	tcase_add_loop_test(tc, summary_truncated, 4, 9);
	tcase_add_loop_test(tc, summary_truncated, 0, 1);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
