/*
 * test-pubsub.c - publishing and consuming through a real ferryd: round
 * trips (CLI and libferry), backlog before the first worker, fan-out,
 * competing consumers, deletion, the confirms of a batch refused part
 * way, and what survives a restart.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness.h"

static struct ferryd d;

static void
setup(void)
{
	ferryd_start(&d, NULL);
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

START_TEST(cli_round_trip)
{
	char *out = NULL;

	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "pub", "t1",
	    "a", "b", "c", NULL), 0);
	ck_assert_str_eq(out, "");
	free(out);
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "sub", "t1",
	    "--count", "3", NULL), 0);
	ck_assert_str_eq(out, "a\nb\nc\n");
	free(out);
	/* All three were acked: nothing is left. */
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "sub", "t1",
	    "--timeout", "0.5", NULL), 1);
	ck_assert_str_eq(out, "");
	free(out);
}
END_TEST

START_TEST(cli_stdin_seq)
{
	/* Like `seq 1 2500 | ferry pub t2`: more than the CLI's window of
	 * 1000 unconfirmed publishes, so confirms are awaited midway. */
	size_t cap = 2500 * 6, len = 0;
	char *in = malloc(cap), *out = NULL;

	ck_assert_ptr_nonnull(in);
	for (int i = 1; i <= 2500; i++)
		len += (size_t)snprintf(in + len, cap - len, "%d\n", i);
	ck_assert_int_eq(cli_run(d.port, in, &out, 20000, "pub", "t2", NULL),
	    0);
	free(out);
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 20000, "sub", "t2",
	    "--count", "2500", NULL), 0);
	/* FIFO per group: exactly the input, in order. */
	ck_assert_str_eq(out, in);
	free(out);
	/* An empty line is an empty body, not the end of input. */
	ck_assert_int_eq(cli_run(d.port, "x\n\ny\n", &out, 10000, "pub",
	    "t3", NULL), 0);
	free(out);
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "sub", "t3",
	    "--count", "3", NULL), 0);
	ck_assert_str_eq(out, "x\n\ny\n");
	free(out);
	free(in);
}
END_TEST

START_TEST(binary_bodies_exact)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *c = fc_connect(d.port, "consumer");
	struct ferry *c2 = fc_connect(d.port, "consumer-2");
	size_t max = ferry_max_msg(p);
	size_t sizes[] = {256, 0, 1, 4095, 4096, 100 * 1024, 0};
	uint8_t *body;
	uint64_t t0 = (uint64_t)time(NULL) * 1000;
	int n = (int)(sizeof(sizes) / sizeof(sizes[0]));

	ck_assert_uint_eq(max, 1024 * 1024);
	sizes[n - 1] = max;	/* exactly the limit is accepted */
	body = malloc(max + 1);
	ck_assert_ptr_nonnull(body);
	srand(7);
	/* Two groups: a stored body is shared by both. */
	fc_sub(c, "bin", NULL, 0, 0, 0);
	fc_sub(c2, "bin", "second", 0, 0, 0);
	for (int i = 0; i < n; i++) {
		/* Every byte value, NULs included, then random bytes. */
		for (size_t k = 0; k < sizes[i]; k++)
			body[k] = i == 0 ? (uint8_t)k : (uint8_t)rand();
		ck_assert_msg(ferry_publish_sync(p, "bin", body, sizes[i],
		    NULL, NULL) == 0, "publish %zu: %s", sizes[i],
		    ferry_errstr(p));
	}
	/* One byte over: refused, by the client before sending. */
	ck_assert_int_eq(ferry_publish_sync(p, "bin", body, max + 1, NULL,
	    NULL), FERRY_EMSGSIZE);
	srand(7);
	for (int i = 0; i < 2 * n; i++) {
		struct ferry_msg *m = fc_next(i < n ? c : c2, 5000);

		if (i == n)
			srand(7);
		for (size_t k = 0; k < sizes[i % n]; k++)
			body[k] = i % n == 0 ? (uint8_t)k : (uint8_t)rand();
		ck_assert_uint_eq(m->len, sizes[i % n]);
		ck_assert_msg(sizes[i % n] == 0 ||
		    memcmp(m->body, body, sizes[i % n]) == 0,
		    "body %d differs", i);
		ck_assert_str_eq(m->topic, "bin");
		ck_assert_uint_eq(m->attempt, 1);
		ck_assert_uint_ne(m->lease, 0);
		ck_assert_uint_ge(m->ts_ms + 1000, t0);
		ck_assert_uint_le(m->ts_ms, t0 + 60000);
		ck_assert_int_eq(ferry_ack(i < n ? c : c2, m->sid, m->lease,
		    FERRY_CONFIRM), 0);
		ferry_msg_free(m);
	}
	fc_none(c, 200);
	fc_none(c2, 100);
	free(body);
	ferry_close(p);
	ferry_close(c);
	ferry_close(c2);
}
END_TEST

START_TEST(headers_and_ids)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *c = fc_connect(d.port, "consumer");
	const struct ferry_header hdr[] = {
		{"content-type", "application/json"},
		{"empty", ""},
		{"k=v", "x=y z"},
	};
	struct ferry_pub_opts o = {.id = "order-42", .hdr = hdr, .nhdr = 3};
	char id[FERRY_ID_MAX + 1], genid[FERRY_ID_MAX + 1];
	char longid[FERRY_ID_MAX + 2];
	struct ferry_msg *m;

	ck_assert_int_eq(ferry_publish_sync(p, "h", "{}", 2, &o, id), 0);
	ck_assert_str_eq(id, "order-42");
	/* No id given: a lowercase UUID. */
	ck_assert_int_eq(ferry_publish_sync(p, "h", "x", 1, NULL, genid), 0);
	ck_assert_uint_eq(strlen(genid), 36);
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			ck_assert_int_eq(genid[i], '-');
		else
			ck_assert_ptr_nonnull(strchr("0123456789abcdef",
			    genid[i]));
	}
	/* 64 bytes is the longest id; 65 is refused. */
	memset(longid, 'i', FERRY_ID_MAX);
	longid[FERRY_ID_MAX] = '\0';
	o = (struct ferry_pub_opts){.id = longid};
	ck_assert_int_eq(ferry_publish_sync(p, "h", "y", 1, &o, id), 0);
	ck_assert_str_eq(id, longid);
	longid[FERRY_ID_MAX] = 'i';
	longid[FERRY_ID_MAX + 1] = '\0';
	ck_assert_int_eq(ferry_publish_sync(p, "h", "z", 1, &o, id),
	    FERRY_EINVAL);

	fc_sub(c, "h", NULL, 0, 0, 0);
	m = fc_next(c, 5000);
	ck_assert_str_eq(m->id, "order-42");
	ck_assert_str_eq(m->body, "{}");
	ck_assert_uint_eq(m->nhdr, 3);
	ck_assert(fc_has_hdr(m, "content-type", "application/json"));
	ck_assert(fc_has_hdr(m, "empty", ""));
	ck_assert(fc_has_hdr(m, "k=v", "x=y z"));
	ck_assert_uint_eq(m->nhist, 0);
	ck_assert_ptr_null(m->hist);
	ferry_msg_free(m);
	m = fc_next(c, 5000);
	ck_assert_str_eq(m->id, genid);
	ck_assert_uint_eq(m->nhdr, 0);
	ferry_msg_free(m);
	m = fc_next(c, 5000);
	longid[FERRY_ID_MAX] = '\0';
	ck_assert_str_eq(m->id, longid);
	ck_assert_str_eq(m->body, "y");
	ferry_msg_free(m);
	fc_none(c, 200);
	ferry_close(p);
	ferry_close(c);
}
END_TEST

START_TEST(backlog_waits_for_first_worker)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *e = fc_connect(d.port, "listener");
	struct ferry *w;
	struct ferry_sub_opts eo = {.ephemeral = 1};
	uint64_t sid;
	int live[5] = {0}, got;

	/* Published before any worker: held by the topic. */
	fc_pub_n(p, "bk", 10);
	/* An ephemeral listener sees what is published while it listens. */
	ck_assert_int_eq(ferry_subscribe(e, "bk", &eo, &sid), 0);
	for (int i = 10; i < 15; i++) {
		char b[8];

		snprintf(b, sizeof(b), "%d", i);
		fc_pub(p, "bk", b);
	}
	for (got = 0; got < 15; got++) {
		struct ferry_msg *m = NULL;
		int v;

		if (ferry_next(e, got < 5 ? 5000 : 300, &m) == FERRY_ETIMEOUT)
			break;
		ck_assert_ptr_nonnull(m);
		v = fc_body_int(m);
		if (v >= 10)
			live[v - 10]++;
		ck_assert_int_eq(ferry_ack(e, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(live[i], 1);
	/* The listener goes away, acks and all: its private group with it. */
	ferry_close(e);

	/* The first durable group still gets everything, in order. */
	w = fc_connect(d.port, "worker");
	fc_sub(w, "bk", "jobs", 0, 0, 0);
	for (int i = 0; i < 15; i++) {
		struct ferry_msg *m = fc_next(w, 5000);

		ck_assert_int_eq(fc_body_int(m), i);
		ck_assert_uint_eq(m->attempt, 1);
		ck_assert_int_eq(ferry_ack(w, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	fc_none(w, 300);
	ferry_close(w);
	/* A second durable group only gets what comes after it exists. */
	w = fc_connect(d.port, "late");
	fc_sub(w, "bk", "late", 0, 0, 0);
	fc_none(w, 300);
	fc_pub(p, "bk", "15");
	{
		struct ferry_msg *m = fc_next(w, 5000);

		ck_assert_int_eq(fc_body_int(m), 15);
		ferry_msg_free(m);
	}
	ferry_close(w);
	ferry_close(p);
}
END_TEST

START_TEST(fanout_to_groups)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *g[3];
	int seen[3][110];

	memset(seen, 0, sizeof(seen));
	g[0] = fc_connect(d.port, "g1");
	g[1] = fc_connect(d.port, "g2");
	g[2] = fc_connect(d.port, "g3");
	fc_sub(g[0], "fan", "g1", 0, 0, 0);
	fc_sub(g[1], "fan", "g2", 0, 0, 0);
	fc_pub_n(p, "fan", 100);
	/* g3 joins later: it gets only what follows. */
	fc_sub(g[2], "fan", "g3", 0, 0, 0);
	for (int i = 100; i < 110; i++) {
		char b[8];

		snprintf(b, sizeof(b), "%d", i);
		fc_pub(p, "fan", b);
	}
	for (int k = 0; k < 3; k++) {
		int want = k < 2 ? 110 : 10;

		for (int i = 0; i < want; i++) {
			struct ferry_msg *m = fc_next(g[k], 5000);
			int v = fc_body_int(m);

			ck_assert_int_ge(v, k < 2 ? 0 : 100);
			ck_assert_int_lt(v, 110);
			/* FIFO within each group. */
			ck_assert_int_eq(v, (k < 2 ? 0 : 100) + i);
			seen[k][v]++;
			ck_assert_int_eq(ferry_ack(g[k], m->sid, m->lease, 0),
			    0);
			ferry_msg_free(m);
		}
		fc_none(g[k], 200);
	}
	for (int k = 0; k < 3; k++) {
		ferry_close(g[k]);
		for (int i = 0; i < 110; i++)
			ck_assert_int_eq(seen[k][i], k < 2 || i >= 100);
	}
	ferry_close(p);
}
END_TEST

#define NCOMP 3000

START_TEST(competing_consumers)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w[3];
	static int seen[NCOMP];
	int per[3] = {0}, total = 0;
	uint64_t deadline;

	memset(seen, 0, sizeof(seen));
	for (int k = 0; k < 3; k++) {
		char name[16];

		snprintf(name, sizeof(name), "worker-%d", k);
		w[k] = fc_connect(d.port, name);
		fc_sub(w[k], "comp", NULL, 16, 0, 0);
	}
	fc_pub_n(p, "comp", NCOMP);
	deadline = now_ms() + 30000;
	while (total < NCOMP && now_ms() < deadline) {
		for (int k = 0; k < 3; k++) {
			struct ferry_msg *m = NULL;
			int r = ferry_next(w[k], 2, &m), v;

			if (r == FERRY_ETIMEOUT)
				continue;
			ck_assert_msg(r == 0, "%s", ferry_errstr(w[k]));
			v = fc_body_int(m);
			ck_assert_int_ge(v, 0);
			ck_assert_int_lt(v, NCOMP);
			ck_assert_msg(seen[v] == 0, "%d delivered twice", v);
			seen[v]++;
			per[k]++;
			total++;
			ck_assert_uint_eq(m->attempt, 1);
			ck_assert_int_eq(ferry_ack(w[k], m->sid, m->lease, 0),
			    0);
			ferry_msg_free(m);
		}
	}
	ck_assert_int_eq(total, NCOMP);
	for (int i = 0; i < NCOMP; i++)
		ck_assert_int_eq(seen[i], 1);
	for (int k = 0; k < 3; k++) {
		ck_assert_msg(per[k] > 0, "worker %d got nothing", k);
		fc_none(w[k], 100);
		ferry_close(w[k]);
	}
	ferry_close(p);
}
END_TEST

START_TEST(delete_group)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *a = fc_connect(d.port, "member-a");
	struct ferry *b = fc_connect(d.port, "member-b");
	struct ferry_msg *m = NULL;
	struct ferry_async_error ae;
	uint64_t sid;

	sid = fc_sub(a, "del", "gx", 4, 0, 0);
	fc_sub(b, "del", "gy", 0, 0, 0);
	fc_pub_n(p, "del", 10);
	m = fc_next(a, 5000);
	ck_assert_int_eq(fc_body_int(m), 0);
	ferry_msg_free(m);
	ck_assert_int_eq(ferry_delete(p, "del", "gx"), 0);
	/*
	 * The member is told; deliveries it had buffered are void.  The
	 * ping makes sure the notice was read: until then, messages
	 * already buffered in the handle are still handed out.
	 */
	ck_assert_int_eq(ferry_ping(a), 0);
	ck_assert_int_eq(ferry_next(a, 5000, &m), FERRY_EDELETED);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(ferry_last_code(a), 15);
	ck_assert_int_eq(ferry_err(a), 0);
	fc_none(a, 200);
	ck_assert_int_eq(ferry_poll_error(a, &ae), 0);
	/* The subscription is gone. */
	ck_assert_int_eq(ferry_ack(a, sid, 1, FERRY_CONFIRM), FERRY_ENOSUB);
	ck_assert_int_eq(ferry_unsubscribe(a, sid), FERRY_ENOSUB);
	ck_assert_int_eq(ferry_delete(p, "del", "gx"), FERRY_ENOTFOUND);
	ck_assert_int_eq(ferry_delete(p, "del", "nosuch"), FERRY_ENOTFOUND);
	ck_assert_int_eq(ferry_delete(p, "nosuch", NULL), FERRY_ENOTFOUND);
	/* The other group is untouched. */
	for (int i = 0; i < 10; i++) {
		struct ferry_msg *n = fc_next(b, 5000);

		ck_assert_int_eq(fc_body_int(n), i);
		ferry_msg_free(n);
	}
	/* Joining gx again makes a new, empty group. */
	fc_sub(a, "del", "gx", 0, 0, 0);
	fc_none(a, 300);
	fc_pub(p, "del", "10");
	m = fc_next(a, 5000);
	ck_assert_int_eq(fc_body_int(m), 10);
	ck_assert_uint_eq(m->attempt, 1);
	ferry_msg_free(m);
	ferry_close(a);
	ferry_close(b);
	ferry_close(p);
}
END_TEST

START_TEST(delete_topic)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *a = fc_connect(d.port, "member-a");
	struct ferry *b = fc_connect(d.port, "member-b");
	struct ferry_sub_opts eo = {.ephemeral = 1};
	struct ferry_msg *m = NULL;
	uint64_t sid;

	fc_sub(a, "deltopic", "g1", 0, 0, 0);
	ck_assert_int_eq(ferry_subscribe(b, "deltopic", &eo, &sid), 0);
	fc_pub_n(p, "deltopic", 3);
	ck_assert_int_eq(ferry_delete(p, "deltopic", NULL), 0);
	ck_assert_int_eq(ferry_ping(a), 0);
	ck_assert_int_eq(ferry_ping(b), 0);
	ck_assert_int_eq(ferry_next(a, 5000, &m), FERRY_EDELETED);
	ck_assert_int_eq(ferry_next(b, 5000, &m), FERRY_EDELETED);
	fc_none(a, 100);
	fc_none(b, 100);
	ck_assert_int_eq(ferry_delete(p, "deltopic", NULL), FERRY_ENOTFOUND);
	/* Used again, the topic starts afresh: no old message. */
	fc_pub(p, "deltopic", "new");
	fc_sub(a, "deltopic", "g1", 0, 0, 0);
	m = fc_next(a, 5000);
	ck_assert_str_eq(m->body, "new");
	ferry_msg_free(m);
	fc_none(a, 300);
	ferry_close(a);
	ferry_close(b);
	ferry_close(p);
}
END_TEST

/*
 * A connection remembers the topic of its last publish.  Deleted by
 * another client (and its memory maybe taken by a topic made meanwhile),
 * it is looked up afresh: the next publish makes the topic again, into the
 * new group, not into the freed one.  (Under ASan a stale pointer fails.)
 */
START_TEST(delete_topic_under_producer)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *admin = fc_connect(d.port, "admin");
	struct ferry *a = fc_connect(d.port, "member");
	struct ferry_msg *m = NULL;
	uint64_t sid;

	sid = fc_sub(a, "cached", "g", 0, 0, 0);
	fc_pub(p, "cached", "old");
	m = fc_next(a, 5000);
	ck_assert_str_eq(m->body, "old");
	ck_assert_int_eq(ferry_ack(a, sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ck_assert_int_eq(ferry_delete(admin, "cached", NULL), 0);
	ck_assert_int_eq(ferry_next(a, 5000, &m), FERRY_EDELETED);
	for (int i = 0; i < 20; i++) {
		char name[32];

		snprintf(name, sizeof(name), "other-%d", i);
		fc_pub(admin, name, "x");
	}
	/* Fire-and-forget first: made again with no group, it waits in the
	 * new topic's backlog for the first group. */
	ck_assert_int_eq(ferry_publish(p, "cached", "new", 3, NULL), 0);
	ck_assert_int_eq(ferry_ping(p), 0);
	sid = fc_sub(a, "cached", "g", 0, 0, 0);
	m = fc_next(a, 5000);
	ck_assert_str_eq(m->body, "new");
	ck_assert_int_eq(ferry_ack(a, sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	fc_pub(p, "cached", "newer");
	m = fc_next(a, 5000);
	ck_assert_str_eq(m->body, "newer");
	ferry_msg_free(m);
	fc_none(a, 200);
	/* One topic of that name, deleted once. */
	ck_assert_int_eq(ferry_delete(admin, "cached", NULL), 0);
	ck_assert_int_eq(ferry_delete(admin, "cached", NULL),
	    FERRY_ENOTFOUND);
	ferry_close(a);
	ferry_close(admin);
	ferry_close(p);
}
END_TEST

/* Subscribe to topic/group and take exactly n messages, acking them
 * (confirmed); records their int bodies in seen[]. */
static void
drain_exact(struct ferry *f, const char *topic, const char *group, int n,
    int *seen, int nseen, uint32_t want_attempt)
{
	fc_sub(f, topic, group, 0, 0, 0);
	for (int i = 0; i < n; i++) {
		struct ferry_msg *m = fc_next(f, 5000);
		int v = fc_body_int(m);

		ck_assert_int_ge(v, 0);
		ck_assert_int_lt(v, nseen);
		seen[v]++;
		if (want_attempt)
			ck_assert_uint_eq(m->attempt, want_attempt);
		ck_assert_int_eq(ferry_ack(f, m->sid, m->lease,
		    FERRY_CONFIRM), 0);
		ferry_msg_free(m);
	}
	fc_none(f, 300);
}

/* What the confirm callback said of each message of a batch. */
struct batch_seen {
	int calls;
	int err[8];		/* each message's frame's outcome */
	int covered[8];		/* times a frame named the message */
};

static void
on_batch_confirm(void *arg, const struct ferry_confirm *c)
{
	struct batch_seen *b = arg;

	b->calls++;
	ck_assert_uint_le(c->first + c->nmsgs, 8);
	for (size_t i = c->first; i < c->first + c->nmsgs; i++) {
		b->err[i] = c->err;
		b->covered[i]++;
	}
}

/* A confirmed batch larger than a frame, into a group that fills up:
 * the callback says, by c->first and c->nmsgs, which messages the stored
 * frame held and which the refused one did. */
START_TEST(batch_confirms_say_which_messages)
{
	static char body[8][3000];
	struct ferry_pub_msg m[8];
	struct ferry_sub_opts o = { .group = "g", .max_msgs = 6 };
	struct batch_seen b;
	struct ferry_confirms c;
	struct ferry_msg *peek;
	struct ferry *f;
	uint64_t sid;
	size_t i, split;

	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_cleanup(&d);
	ferryd_start(&d, "--max-frame-size", "16384", "--max-message-size",
	    "4096", NULL);
	f = fc_connect(d.port, "batch");
	ck_assert_int_eq(ferry_subscribe(f, "full", &o, &sid), 0);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), 0);
	memset(m, 0, sizeof(m));
	for (i = 0; i < 8; i++) {
		memset(body[i], 'a' + (int)i, sizeof(body[i]));
		m[i].body = body[i];
		m[i].len = sizeof(body[i]);
	}
	memset(&b, 0, sizeof(b));
	ferry_set_confirm_cb(f, on_batch_confirm, &b);
	ck_assert_int_eq(ferry_publish_batch(f, "full", m, 8, FERRY_CONFIRM),
	    0);
	ck_assert_int_eq(ferry_wait_confirms(f, 0, 5000, &c), 0);
	ck_assert_int_eq(b.calls, 2);
	ck_assert_uint_eq(c.ok + c.failed, 8);
	/* A stored head, then the refused rest, each message named once. */
	for (split = 0; split < 8 && b.err[split] == 0; split++)
		;
	ck_assert_uint_gt(split, 0);
	ck_assert_uint_le(split, 6);
	ck_assert_uint_eq(c.ok, split);
	for (i = 0; i < 8; i++) {
		ck_assert_int_eq(b.covered[i], 1);
		ck_assert_int_eq(b.err[i], i < split ? 0 : FERRY_EFULL);
	}
	/* The head of the group is the batch's first message. */
	ck_assert_int_eq(ferry_peek(f, "full", "g", &peek), 0);
	ck_assert_uint_eq(peek->len, sizeof(body[0]));
	ck_assert_int_eq(((const char *)peek->body)[0], 'a');
	ferry_msg_free(peek);
	/* A single pipelined publish: first is 0 (one message). */
	memset(&b, 0, sizeof(b));
	ck_assert_int_eq(ferry_delete(f, "full", "g"), 0);
	ck_assert_int_eq(ferry_publish_pipelined(f, "full", "x", 1, NULL,
	    NULL), 0);
	ck_assert_int_eq(ferry_wait_confirms(f, 0, 5000, &c), 0);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_int_eq(b.covered[0], 1);
	ferry_close(f);
}
END_TEST

START_TEST(restart_keeps_messages)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w = fc_connect(d.port, "worker");
	int seen[100];
	uint64_t sid;

	/* r0: published to a topic without any group. */
	fc_pub_n(p, "r0", 50);
	/* r1: 100 delivered, 30 acked (confirmed), 70 still leased when
	 * the broker stops. */
	fc_pub_n(p, "r1", 100);
	sid = fc_sub(w, "r1", NULL, 100, 0, 0);
	for (int i = 0; i < 100; i++) {
		struct ferry_msg *m = fc_next(w, 5000);

		ck_assert_int_eq(fc_body_int(m), i);
		if (i < 30)
			ck_assert_int_eq(ferry_ack(w, sid, m->lease,
			    FERRY_CONFIRM), 0);
		ferry_msg_free(m);
	}
	/* r2: a durable group without members keeps accumulating. */
	fc_sub(w, "r2", "keep", 0, 0, 0);
	ferry_close(p);
	/* w still holds its leases when the broker stops. */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferry_close(w);
	ferryd_restart(&d);

	p = fc_connect(d.port, "producer");
	fc_pub_n(p, "r2", 40);
	/* A second group, created after the restart, gets only later
	 * messages; "keep" keeps the 40. */
	w = fc_connect(d.port, "other");
	fc_sub(w, "r2", "other", 0, 0, 0);
	fc_none(w, 300);
	ferry_close(w);

	memset(seen, 0, sizeof(seen));
	w = fc_connect(d.port, "worker");
	drain_exact(w, "r0", NULL, 50, seen, 100, 1);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(seen[i], i < 50);
	ferry_close(w);

	memset(seen, 0, sizeof(seen));
	w = fc_connect(d.port, "worker");
	drain_exact(w, "r1", NULL, 70, seen, 100, 0);
	for (int i = 0; i < 100; i++)
		ck_assert_msg(seen[i] == (i >= 30), "r1 %d seen %d times", i,
		    seen[i]);
	ferry_close(w);

	memset(seen, 0, sizeof(seen));
	w = fc_connect(d.port, "worker");
	drain_exact(w, "r2", "keep", 40, seen, 100, 1);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(seen[i], i < 40);
	ferry_close(w);

	/* Acks are durable too: a second restart brings nothing back. */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
	w = fc_connect(d.port, "worker");
	fc_sub(w, "r0", NULL, 0, 0, 0);
	fc_sub(w, "r1", NULL, 0, 0, 0);
	fc_sub(w, "r2", "keep", 0, 0, 0);
	fc_none(w, 500);
	ferry_close(w);
	ferry_close(p);
}
END_TEST

START_TEST(restart_keeps_attempts_and_delay)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w = fc_connect(d.port, "before");
	struct ferry *q;
	struct ferry_msg *m = NULL;
	uint64_t sid, t0;
	int r;

	/* The group allows two attempts; that survives the restart too. */
	sid = fc_sub(w, "ra", NULL, 0, 0, 2);
	fc_pub(p, "ra", "job");
	m = fc_next(w, 5000);
	ck_assert_uint_eq(m->attempt, 1);
	t0 = now_ms();
	ck_assert_int_eq(ferry_nack(w, sid, m->lease, 2000, "first",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ferry_close(p);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	/* A connected client is told, then sees the connection end. */
	r = ferry_next(w, 5000, &m);
	ck_assert_msg(r == FERRY_ESHUTDOWN || r == FERRY_ECLOSED ||
	    r == FERRY_EIO, "ferry_next after shutdown: %d", r);
	ck_assert_ptr_null(m);
	ferry_close(w);
	ferryd_restart(&d);

	/* The nack's delay still holds after the restart. */
	w = fc_connect(d.port, "after");
	sid = fc_sub(w, "ra", NULL, 0, 0, 0);
	m = fc_next(w, 10000);
	ck_assert_msg(now_ms() - t0 >= 1900, "redelivered after %llu ms",
	    (unsigned long long)(now_ms() - t0));
	ck_assert_uint_eq(m->attempt, 2);
	ck_assert_int_eq(ferry_nack(w, sid, m->lease, 0, "second",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	fc_none(w, 300);
	/* A group's lease length survives too. */
	p = fc_connect(d.port, "producer");
	fc_sub(w, "rt", NULL, 0, 400, 0);
	ferry_close(w);
	fc_pub(p, "rt", "short");
	ferry_close(p);

	/* So does the dead letter, with its history. */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
	w = fc_connect(d.port, "after");
	sid = fc_sub(w, "rt", NULL, 0, 0, 0);
	m = fc_next(w, 5000);
	ck_assert_str_eq(m->body, "short");
	usleep(700 * 1000);
	ck_assert_int_eq(ferry_ack(w, sid, m->lease, FERRY_CONFIRM),
	    FERRY_ESTALE);
	ferry_msg_free(m);
	q = fc_connect(d.port, "inspector");
	fc_sub(q, "ra.dlq", NULL, 0, 0, 0);
	m = fc_next(q, 5000);
	ck_assert_str_eq(m->body, "job");
	ck_assert(fc_has_hdr(m, "dlq-attempts", "2"));
	ck_assert_uint_eq(m->nhist, 2);
	ck_assert_str_eq(m->hist[0].cause, "nacked");
	ck_assert_str_eq(m->hist[0].error, "first");
	ck_assert_str_eq(m->hist[0].consumer, "before");
	ck_assert_str_eq(m->hist[1].cause, "nacked");
	ck_assert_str_eq(m->hist[1].error, "second");
	ck_assert_str_eq(m->hist[1].consumer, "after");
	ferry_msg_free(m);
	ferry_close(q);
	ferry_close(w);
}
END_TEST

START_TEST(crash_keeps_confirmed)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w;
	int seen[200];

	/* fsync=always (the default): a confirm means on disk, so even
	 * SIGKILL right after loses nothing. */
	fc_pub_n(p, "crash", 200);
	ferry_close(p);
	ferryd_kill(&d);
	ferryd_restart(&d);
	memset(seen, 0, sizeof(seen));
	w = fc_connect(d.port, "worker");
	drain_exact(w, "crash", NULL, 200, seen, 200, 1);
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(seen[i], 1);
	ferry_close(w);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pubsub");
	TCase *tc = tcase_create("pubsub");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, cli_round_trip);
	tcase_add_test(tc, cli_stdin_seq);
	tcase_add_test(tc, binary_bodies_exact);
	tcase_add_test(tc, headers_and_ids);
	tcase_add_test(tc, backlog_waits_for_first_worker);
	tcase_add_test(tc, fanout_to_groups);
	tcase_add_test(tc, competing_consumers);
	tcase_add_test(tc, delete_group);
	tcase_add_test(tc, delete_topic);
	tcase_add_test(tc, batch_confirms_say_which_messages);
	tcase_add_test(tc, delete_topic_under_producer);
	tcase_add_test(tc, restart_keeps_messages);
	tcase_add_test(tc, restart_keeps_attempts_and_delay);
	tcase_add_test(tc, crash_keeps_confirmed);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
