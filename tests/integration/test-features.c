/*
 * test-features.c - the delivery features of issue 4 through libferry and
 * the CLI against a real ferryd: delay, TTL, dedup, the idempotent
 * producer, mandatory and targeted publishes, group limits (each across a
 * restart where the broker keeps state), request-reply, dlq replay, the
 * inspection requests, and the client's automatic reconnect.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness-extra.h"

static struct ferryd d;

static void
setup(void)
{
	ferryd_start(&d, NULL);
}

static void
setup_short_dedup(void)
{
	ferryd_start(&d, "--dedup-window", "1", NULL);
}

static void
setup_short_producer_ttl(void)
{
	ferryd_start(&d, "--producer-ttl", "2", NULL);
}

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* Records reach the journal in order: once this is confirmed, everything
 * confirmed before is in the files too. */
static void
barrier(void)
{
	struct ferry *f;

	usleep(100000);
	f = fc_connect(d.port, "barrier");
	fc_pub(f, "barrier", "b");
	ferry_close(f);
}

static void
clean_restart(void)
{
	barrier();
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
}

/*
 * Like fc_cli_run_err() with up to 10 arguments (NULL-terminated): stderr
 * collected through a file the child inherits.
 */
static int
run_err(int port, char **out, char **err, int timeout_ms, const char *a1,
    const char *a2, const char *a3, const char *a4, const char *a5,
    const char *a6, const char *a7, const char *a8, const char *a9,
    const char *a10)
{
	char path[] = "/tmp/ferry-test-stderr-XXXXXX";
	int fd = mkstemp(path), saved, st;
	off_t len;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	st = cli_run(port, NULL, out, timeout_ms, a1, a2, a3, a4, a5, a6, a7,
	    a8, a9, a10, NULL);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	len = lseek(fd, 0, SEEK_END);
	*err = calloc(1, (size_t)len + 1);
	ck_assert_int_eq(pread(fd, *err, (size_t)len, 0), len);
	close(fd);
	fputs(*err, stderr);
	return st;
}

/* Confirmed publish with options; returns the result. */
static int
pub_o(struct ferry *f, const char *topic, const char *body,
    const struct ferry_pub_opts *o, char *id)
{
	return ferry_publish_sync(f, topic, body, strlen(body), o, id);
}

/* Subscribe with full options; returns sid. */
static uint64_t
sub_o(struct ferry *f, const char *topic, const struct ferry_sub_opts *o)
{
	uint64_t sid = 0;
	int r = ferry_subscribe(f, topic, o, &sid);

	ck_assert_msg(r == 0, "subscribe %s: %s", topic, ferry_errstr(f));
	return sid;
}

static void
ack_free(struct ferry *f, struct ferry_msg *m)
{
	ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
}

/* The stats row of topic/group ("" = backlog), copied; fails if none. */
static struct ferry_group_stats
stats_of(struct ferry *f, const char *topic, const char *group)
{
	struct ferry_group_stats *rows, out;
	size_t n, i;
	int r = ferry_stats(f, topic, &rows, &n);

	ck_assert_msg(r == 0, "stats: %s", ferry_errstr(f));
	for (i = 0; i < n; i++)
		if (!strcmp(rows[i].topic, topic) &&
		    !strcmp(rows[i].group, group))
			break;
	ck_assert_msg(i < n, "no stats row for %s/%s", topic, group);
	out = rows[i];
	out.topic = out.group = NULL;	/* in the freed block */
	ferry_stats_free(rows);
	return out;
}

/* Members of topic/group, 0 if the broker does not know it yet. */
static uint64_t
members_of(struct ferry *f, const char *topic, const char *group)
{
	struct ferry_group_stats *rows;
	uint64_t k = 0;
	size_t n, i;

	if (ferry_stats(f, topic, &rows, &n) < 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!strcmp(rows[i].topic, topic) &&
		    !strcmp(rows[i].group, group))
			k = rows[i].members;
	ferry_stats_free(rows);
	return k;
}

/* --- delay, ttl --------------------------------------------------------- */

START_TEST(delay_not_before)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_pub_opts o = {.delay_ms = 1500};
	struct ferry_msg *m;
	uint64_t t0;

	fc_sub(f, "dl.t", NULL, 10, 0, 0);
	t0 = now_ms();
	ck_assert_int_eq(pub_o(f, "dl.t", "later", &o, NULL), 0);
	fc_pub(f, "dl.t", "now");
	m = fc_next(f, 1000);
	ck_assert_str_eq(m->body, "now");
	ack_free(f, m);
	fc_none(f, 1000);
	m = fc_next(f, 3000);
	ck_assert_str_eq(m->body, "later");
	ck_assert_uint_ge(now_ms() - t0, 1450);
	ack_free(f, m);
	ferry_close(f);
}
END_TEST

START_TEST(delay_survives_restart)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_pub_opts o = {.delay_ms = 4000};
	struct ferry_msg *m;
	uint64_t t0 = now_ms();

	fc_sub(f, "dr.t", "g", 10, 0, 0);
	ck_assert_int_eq(pub_o(f, "dr.t", "later", &o, NULL), 0);
	ferry_close(f);
	clean_restart();
	f = fc_connect(d.port, "t2");
	fc_sub(f, "dr.t", "g", 10, 0, 0);
	if (now_ms() - t0 < 3000)
		fc_none(f, (int)(3500 - (now_ms() - t0)));
	m = fc_next(f, 5000);
	ck_assert_str_eq(m->body, "later");
	ck_assert_uint_ge(now_ms() - t0, 3900);
	ack_free(f, m);
	ferry_close(f);
}
END_TEST

START_TEST(ttl_expires_to_dlq)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_pub_opts o = {.ttl_ms = 300};
	struct ferry_msg *m;
	uint64_t sid;

	/* A durable group without a member holds it until it expires. */
	sid = fc_sub(f, "tt.t", "g", 10, 0, 0);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), 0);
	ck_assert_int_eq(pub_o(f, "tt.t", "short", &o, NULL), 0);
	fc_pub(f, "tt.t", "long");
	usleep(800000);
	fc_sub(f, "tt.t", "g", 10, 0, 0);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "long");
	ack_free(f, m);
	fc_none(f, 300);
	fc_sub(f, "tt.t.dlq", NULL, 10, 0, 0);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "short");
	ck_assert(fc_has_hdr(m, "dlq-reason", "expired"));
	ck_assert(fc_has_hdr(m, "dlq-group", "g"));
	ck_assert_uint_ge(m->nhist, 1);
	ck_assert_str_eq(m->hist[m->nhist - 1].cause, "expired");
	ack_free(f, m);
	ferry_close(f);
}
END_TEST

START_TEST(group_ttl_drop)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_sub_opts so = {.group = "g", .ttl_ms = 300,
	    .ttl_drop = 1};
	struct ferry_group_stats st;
	uint64_t sid;

	sid = sub_o(f, "td.t", &so);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), 0);
	fc_pub(f, "td.t", "x");
	usleep(800000);
	st = stats_of(f, "td.t", "g");
	ck_assert_uint_eq(st.ready + st.delayed, 0);
	ck_assert_uint_eq(st.expired, 1);
	ck_assert_uint_eq(st.dead_lettered, 0);
	fc_sub(f, "td.t", "g", 10, 0, 0);
	fc_none(f, 300);
	ferry_close(f);
}
END_TEST

/* --- dedup, idempotent producer ------------------------------------------ */

START_TEST(dedup_by_id_across_restart)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_pub_opts o = {.id = "order-1"};
	char id[FERRY_ID_MAX + 1];
	struct ferry_msg *m;

	fc_sub(f, "dd.t", "g", 10, 0, 0);
	ck_assert_int_eq(pub_o(f, "dd.t", "a", &o, id), 0);
	ck_assert_str_eq(id, "order-1");
	ck_assert_uint_eq(ferry_last_dups(f), 0);
	ck_assert_int_eq(pub_o(f, "dd.t", "b", &o, id), 0);
	ck_assert_str_eq(id, "order-1");
	ck_assert_uint_eq(ferry_last_dups(f), 1);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "a");
	ack_free(f, m);
	fc_none(f, 300);
	ferry_close(f);

	clean_restart();
	f = fc_connect(d.port, "t2");
	fc_sub(f, "dd.t", "g", 10, 0, 0);
	ck_assert_int_eq(pub_o(f, "dd.t", "c", &o, id), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 1);
	fc_none(f, 300);
	ferry_close(f);
}
END_TEST

START_TEST(producer_seq_hwm_across_restart)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_msg *m;

	fc_sub(f, "ps.t", "g", 10, 0, 0);
	ck_assert_int_eq(ferry_set_producer(f, "prod-1", 10), 0);
	ck_assert_uint_eq(ferry_producer_seq(f), 10);
	ck_assert_int_eq(pub_o(f, "ps.t", "s10", NULL, NULL), 0);
	ck_assert_int_eq(pub_o(f, "ps.t", "s11", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_producer_seq(f), 12);
	/* A retry of seq 11 (e.g. after a lost confirm): not enqueued. */
	ck_assert_int_eq(ferry_set_producer(f, "prod-1", 11), 0);
	ck_assert_int_eq(pub_o(f, "ps.t", "s11-again", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 1);
	for (int i = 10; i < 12; i++) {
		char want[8];

		snprintf(want, sizeof(want), "s%d", i);
		m = fc_next(f, 2000);
		ck_assert_str_eq(m->body, want);
		ack_free(f, m);
	}
	fc_none(f, 300);
	ferry_close(f);

	/* The high-water mark is durable, and per producer across topics. */
	clean_restart();
	f = fc_connect(d.port, "t2");
	fc_sub(f, "ps.t", "g", 10, 0, 0);
	ck_assert_int_eq(ferry_set_producer(f, "prod-1", 11), 0);
	ck_assert_int_eq(pub_o(f, "ps.t", "s11-after", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 1);
	ck_assert_int_eq(pub_o(f, "ps.other", "s12-other", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 0);
	ck_assert_int_eq(ferry_set_producer(f, "prod-1", 12), 0);
	ck_assert_int_eq(pub_o(f, "ps.t", "s12", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 1);
	ck_assert_int_eq(pub_o(f, "ps.t", "s13", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 0);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "s13");
	ack_free(f, m);
	fc_none(f, 300);
	/* Another producer has its own sequence. */
	ck_assert_int_eq(ferry_set_producer(f, "prod-2", 1), 0);
	ck_assert_int_eq(pub_o(f, "ps.t", "p2", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 0);
	/* Bad ids are refused locally. */
	ck_assert_int_eq(ferry_set_producer(f, "", 1), FERRY_EINVAL);
	ferry_close(f);
}
END_TEST

START_TEST(producer_pipelined_dups_counted)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_confirms c;

	fc_sub(f, "pp.t", "g", 100, 0, 0);
	ck_assert_int_eq(ferry_set_producer(f, "prod-p", 100), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(ferry_publish_pipelined(f, "pp.t", "x", 1,
		    NULL, NULL), 0);
	ck_assert_int_eq(ferry_set_producer(f, "prod-p", 102), 0);
	for (int i = 0; i < 5; i++)	/* 102..104 dups, 105, 106 new */
		ck_assert_int_eq(ferry_publish_pipelined(f, "pp.t", "y", 1,
		    NULL, NULL), 0);
	ck_assert_int_eq(ferry_wait_confirms(f, 0, 5000, &c), 0);
	ck_assert_uint_eq(c.ok, 10);
	ck_assert_uint_eq(stats_of(f, "pp.t", "g").enqueued, 7);
	ferry_close(f);
}
END_TEST

/* STATS' count of idempotent producers. */
static uint64_t
producers_now(struct ferry *f)
{
	struct ferry_broker_stats bs;

	ck_assert_int_eq(ferry_stats_broker(f, &bs), 0);
	return bs.producers;
}

/*
 * producer_ttl 2 s: a producer that stored nothing for 2 s is forgotten
 * (its retry is enqueued again, STATS counts one producer fewer), while
 * one that keeps storing stays known; then the last one goes too.
 */
START_TEST(idle_producer_forgotten)
{
	struct ferry *f = fc_connect(d.port, "idle");
	struct ferry *busy = fc_connect(d.port, "busy");
	struct ferry_msg *m;
	uint64_t t_idle, deadline, seq = 1;

	fc_sub(f, "pt.t", "g", 10, 0, 0);
	ck_assert_int_eq(ferry_set_producer(f, "idle", 1), 0);
	t_idle = now_ms();
	ck_assert_int_eq(pub_o(f, "pt.t", "first", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 0);
	ck_assert_int_eq(ferry_set_producer(busy, "busy", seq), 0);
	ck_assert_int_eq(pub_o(busy, "pt.busy", "b", NULL, NULL), 0);
	/* Within the ttl: a duplicate. */
	ck_assert_int_eq(ferry_set_producer(f, "idle", 1), 0);
	ck_assert_int_eq(pub_o(f, "pt.t", "retry", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 1);
	ck_assert_uint_eq(producers_now(f), 2);
	/* busy stores every 200 ms; idle is forgotten, no sooner than 2 s
	 * after it stored. */
	deadline = now_ms() + 15000;
	while (producers_now(f) != 1) {
		ck_assert_msg(now_ms() < deadline, "idle producer kept");
		ck_assert_int_eq(pub_o(busy, "pt.busy", "b", NULL, NULL), 0);
		ck_assert_uint_eq(ferry_last_dups(busy), 0);
		seq++;
		usleep(200000);
	}
	ck_assert_uint_ge(now_ms() - t_idle, 2000);
	ck_assert_int_eq(ferry_set_producer(busy, "busy", seq), 0);
	ck_assert_int_eq(pub_o(busy, "pt.busy", "b", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(busy), 1);
	/* Forgotten: the same pid and seq is a new message. */
	ck_assert_int_eq(ferry_set_producer(f, "idle", 1), 0);
	ck_assert_int_eq(pub_o(f, "pt.t", "late", NULL, NULL), 0);
	ck_assert_uint_eq(ferry_last_dups(f), 0);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "first");
	ack_free(f, m);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "late");
	ack_free(f, m);
	fc_none(f, 300);
	/* Nobody stores any more: both go. */
	deadline = now_ms() + 15000;
	while (producers_now(f) != 0) {
		ck_assert_msg(now_ms() < deadline, "producers kept");
		usleep(100000);
	}
	ferry_close(busy);
	ferry_close(f);
}
END_TEST

/* --- mandatory, targeted ---------------------------------------------------- */

START_TEST(mandatory_and_targeted)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry *w = fc_connect(d.port, "w");
	struct ferry_pub_opts mo = {.mandatory = 1};
	struct ferry_pub_opts g1 = {.group = "g1"};
	struct ferry_pub_opts gx = {.group = "nope"};
	struct ferry_msg *m;
	uint64_t sid;

	ck_assert_int_eq(pub_o(f, "mt.t", "x", &mo, NULL),
	    FERRY_ENOSUBSCRIBERS);
	ck_assert_int_eq(ferry_last_code(f), 18);
	ck_assert(ferry_retryable(FERRY_ENOSUBSCRIBERS));
	/* A group without a connected member is no subscriber either. */
	sid = fc_sub(w, "mt.t", "g2", 10, 0, 0);
	ck_assert_int_eq(ferry_unsubscribe(w, sid), 0);
	ck_assert_int_eq(pub_o(f, "mt.t", "x", &mo, NULL),
	    FERRY_ENOSUBSCRIBERS);
	/* Nothing was stored. */
	ck_assert_uint_eq(stats_of(f, "mt.t", "g2").ready, 0);
	fc_sub(w, "mt.t", "g1", 10, 0, 0);
	ck_assert_int_eq(pub_o(f, "mt.t", "m", &mo, NULL), 0);
	m = fc_next(w, 2000);
	ck_assert_str_eq(m->body, "m");
	ack_free(w, m);
	/* Targeted: only g1 gets it; an unknown group is refused. */
	ck_assert_int_eq(pub_o(f, "mt.t", "only-g1", &g1, NULL), 0);
	m = fc_next(w, 2000);
	ck_assert_str_eq(m->body, "only-g1");
	ack_free(w, m);
	ck_assert_uint_eq(stats_of(f, "mt.t", "g2").ready, 1);	/* "m" */
	ck_assert_int_eq(pub_o(f, "mt.t", "x", &gx, NULL), FERRY_ENOTFOUND);
	ferry_close(w);
	ferry_close(f);
}
END_TEST

/* --- group limits -------------------------------------------------------- */

START_TEST(limit_reject_across_restart)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_sub_opts so = {.group = "g", .max_msgs = 2};
	struct ferry_msg *m;
	uint64_t sid;

	sid = sub_o(f, "lr.t", &so);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), 0);
	fc_pub(f, "lr.t", "1");
	fc_pub(f, "lr.t", "2");
	ck_assert_int_eq(pub_o(f, "lr.t", "3", NULL, NULL), FERRY_EFULL);
	ck_assert(ferry_retryable(FERRY_EFULL));
	ferry_close(f);
	clean_restart();
	f = fc_connect(d.port, "t2");
	ck_assert_int_eq(pub_o(f, "lr.t", "3", NULL, NULL), FERRY_EFULL);
	/* Room again once one is acked. */
	fc_sub(f, "lr.t", "g", 1, 0, 0);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "1");
	ack_free(f, m);
	ck_assert_int_eq(pub_o(f, "lr.t", "3", NULL, NULL), 0);
	ferry_close(f);
}
END_TEST

START_TEST(limit_bytes_dlq_oldest)
{
	struct ferry *f = fc_connect(d.port, "t");
	struct ferry_sub_opts so = {.group = "g", .max_bytes = 10,
	    .overflow = FERRY_OVERFLOW_DLQ_OLDEST};
	struct ferry_msg *m;
	uint64_t sid;

	sid = sub_o(f, "lb.t", &so);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), 0);
	fc_pub(f, "lb.t", "aaaa");
	fc_pub(f, "lb.t", "bbbb");
	fc_pub(f, "lb.t", "cccc");	/* 12 > 10: "aaaa" goes */
	ferry_close(f);
	clean_restart();
	f = fc_connect(d.port, "t2");
	fc_pub(f, "lb.t", "dddd");	/* settings survived: "bbbb" goes */
	fc_sub(f, "lb.t", "g", 10, 0, 0);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "cccc");
	ack_free(f, m);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "dddd");
	ack_free(f, m);
	fc_sub(f, "lb.t.dlq", NULL, 10, 0, 0);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "aaaa");
	ck_assert(fc_has_hdr(m, "dlq-reason", "overflow"));
	ack_free(f, m);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "bbbb");
	ack_free(f, m);
	ferry_close(f);
}
END_TEST

/* --- request-reply ---------------------------------------------------------- */

struct responder {
	int port;
	const char *topic;
	int n;			/* requests to answer */
	int ready;
	pthread_mutex_t mu;
};

/* Answer n requests with "re:" + body, then leave. */
static void *
respond(void *arg)
{
	struct responder *r = arg;
	struct ferry *f = ferry_connect("127.0.0.1", r->port, 5000, "resp");
	struct ferry_msg *m;
	uint64_t sid;
	char out[256];

	if (f == NULL || ferry_err(f) ||
	    ferry_subscribe(f, r->topic, NULL, &sid) < 0)
		return NULL;
	pthread_mutex_lock(&r->mu);
	r->ready = 1;
	pthread_mutex_unlock(&r->mu);
	for (int i = 0; i < r->n; i++) {
		if (ferry_next(f, 5000, &m) < 0)
			break;
		snprintf(out, sizeof(out), "re:%s", (const char *)m->body);
		ferry_reply(f, m, out, strlen(out));
		ferry_ack(f, m->sid, m->lease, 0);
		ferry_msg_free(m);
	}
	ferry_close(f);
	return NULL;
}

static void
wait_ready(struct responder *r)
{
	for (int i = 0; i < 500; i++) {
		int ok;

		pthread_mutex_lock(&r->mu);
		ok = r->ready;
		pthread_mutex_unlock(&r->mu);
		if (ok)
			return;
		usleep(10000);
	}
	ck_abort_msg("responder did not start");
}

START_TEST(request_reply)
{
	struct responder rs = {d.port, "svc.echo", 3, 0,
	    PTHREAD_MUTEX_INITIALIZER};
	struct ferry *f = fc_connect(d.port, "client");
	struct ferry_msg *rep;
	char body[32];
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, respond, &rs), 0);
	wait_ready(&rs);
	for (int i = 0; i < 3; i++) {
		snprintf(body, sizeof(body), "q%d", i);
		ck_assert_int_eq(ferry_request(f, "svc.echo", body,
		    strlen(body), NULL, 3000, &rep), 0);
		snprintf(body, sizeof(body), "re:q%d", i);
		ck_assert_str_eq(rep->body, body);
		ck_assert_str_ne(rep->corr, "");
		ferry_msg_free(rep);
	}
	pthread_join(th, NULL);
	/* The inbox is not a subscription ferry_next() reports. */
	fc_none(f, 100);
	ferry_close(f);
}
END_TEST

START_TEST(request_no_responders_and_timeout)
{
	struct ferry *f = fc_connect(d.port, "client");
	struct ferry *mute = fc_connect(d.port, "mute");
	struct ferry_msg *rep;
	uint64_t t0;

	t0 = now_ms();
	ck_assert_int_eq(ferry_request(f, "svc.none", "q", 1, NULL, 5000,
	    &rep), FERRY_ENOSUBSCRIBERS);
	ck_assert_ptr_null(rep);
	ck_assert_uint_lt(now_ms() - t0, 1000);
	{
		/* Nothing was stored: no topic, or an empty one. */
		struct ferry_group_stats *rows;
		size_t n;
		int r = ferry_stats(f, "svc.none", &rows, &n);

		ck_assert(r == FERRY_ENOTFOUND || (r == 0 && (n == 0 ||
		    rows[0].ready == 0)));
		ferry_stats_free(rows);
	}
	/* Someone listens but never answers. */
	fc_sub(mute, "svc.mute", NULL, 10, 0, 0);
	t0 = now_ms();
	ck_assert_int_eq(ferry_request(f, "svc.mute", "q", 1, NULL, 500,
	    &rep), FERRY_ETIMEOUT);
	ck_assert_uint_ge(now_ms() - t0, 450);
	ck_assert_uint_lt(now_ms() - t0, 2000);
	/* The request arrived, with where to reply. */
	rep = fc_next(mute, 1000);
	ck_assert_str_ne(rep->reply_to, "");
	ck_assert_int_eq(strncmp(rep->reply_to, "_inbox.", 7), 0);
	ck_assert_str_ne(rep->corr, "");
	/* A late reply is dropped, not taken for the next request's. */
	ck_assert_int_eq(ferry_reply(mute, rep, "late", 4), 0);
	ferry_msg_free(rep);
	ck_assert_int_eq(ferry_request(f, "svc.mute", "q2", 2, NULL, 300,
	    &rep), FERRY_ETIMEOUT);
	/* Replying to a plain message is refused locally. */
	fc_pub(f, "svc.mute", "plain");
	rep = fc_next(mute, 1000);
	if (strcmp(rep->body, "q2") == 0) {
		ferry_msg_free(rep);
		rep = fc_next(mute, 1000);
	}
	ck_assert_str_eq(rep->body, "plain");
	ck_assert_int_eq(ferry_reply(mute, rep, "x", 1), FERRY_EINVAL);
	ferry_msg_free(rep);
	ferry_close(mute);
	ferry_close(f);
}
END_TEST

START_TEST(cli_req_reply_exec)
{
	char port[16], *out = NULL, *err = NULL;
	struct proc p;
	struct ferry *f;
	int st;

	snprintf(port, sizeof(port), "%d", d.port);
	cli_spawn(&p, d.port, "reply", "svc.up", "--exec", "tr a-z A-Z",
	    "--count", "2", NULL);
	f = fc_connect(d.port, "probe");
	for (int i = 0; i < 100 && members_of(f, "svc.up", "default") == 0;
	    i++)
		usleep(20000);
	st = cli_run(d.port, NULL, &out, 5000, "req", "svc.up", "hello",
	    NULL);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "HELLO\n");
	free(out);
	st = cli_run(d.port, "from stdin", &out, 5000, "req", "svc.up", NULL);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "FROM STDIN\n");
	free(out);
	ck_assert_int_eq(proc_wait(&p, 5000), 0);	/* --count 2 */

	/* No responders: exit 1 at once, saying so. */
	st = fc_cli_run_err(d.port, NULL, &out, &err, 5000, "req", "svc.up",
	    "x", NULL, NULL, NULL, NULL);
	ck_assert_int_eq(st, 1);
	ck_assert_ptr_nonnull(strstr(err, "no responders"));
	free(out);
	free(err);

	/* A failing command: nacked with its exit status, no reply. */
	cli_spawn(&p, d.port, "reply", "svc.fail", "--exec", "exit 3",
	    "--count", "1", NULL);
	for (int i = 0; i < 100 && members_of(f, "svc.fail", "default") == 0;
	    i++)
		usleep(20000);
	st = fc_cli_run_err(d.port, NULL, &out, &err, 5000, "req",
	    "svc.fail", "x", "--timeout", "0.7", NULL, NULL);
	ck_assert_int_eq(st, 1);
	ck_assert_ptr_nonnull(strstr(err, "no reply"));
	free(out);
	free(err);
	ck_assert_int_eq(proc_wait(&p, 5000), 0);
	ck_assert_uint_eq(stats_of(f, "svc.fail", "default").nacked, 1);
	{
		struct ferry_msg *m;

		ck_assert_int_eq(ferry_peek(f, "svc.fail", NULL, &m), 0);
		ck_assert_str_eq(m->body, "x");
		ferry_msg_free(m);
	}
	ferry_close(f);

	/* SIGTERM ends a waiting responder with 0. */
	cli_spawn(&p, d.port, "reply", "svc.sig", "--exec", "cat", NULL);
	usleep(300000);
	proc_signal(&p, SIGTERM);
	ck_assert_int_eq(proc_wait(&p, 3000), 0);
}
END_TEST

/* --- dlq replay ---------------------------------------------------------- */

/* Dead-letter n messages "<prefix><i>" of topic/group (max_attempts 1). */
static void
make_dead(struct ferry *f, const char *topic, const char *group,
    const char *prefix, int n)
{
	struct ferry_header h = {"k", "v"};
	char body[32], id[32];
	struct ferry_msg *m;
	uint64_t sid;

	sid = fc_sub(f, topic, group, (uint32_t)n, 0, 1);
	for (int i = 0; i < n; i++) {
		struct ferry_pub_opts o = {.id = id, .hdr = &h, .nhdr = 1};

		snprintf(body, sizeof(body), "%s%d", prefix, i);
		snprintf(id, sizeof(id), "id-%s%d", prefix, i);
		ck_assert_int_eq(pub_o(f, topic, body, &o, NULL), 0);
	}
	for (int i = 0; i < n; i++) {
		m = fc_next(f, 2000);
		ck_assert_int_eq(ferry_nack(f, m->sid, m->lease, 0, "boom",
		    FERRY_CONFIRM), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_unsubscribe(f, sid), 0);
}

START_TEST(dlq_replay_rate_and_group)
{
	struct ferry *f = fc_connect(d.port, "t");
	char *out = NULL, *err = NULL;
	struct ferry_msg *m;
	uint64_t t0, took;
	int st, seen = 0;

	/* Replayed ids would be in the dedup window: use a short one. */
	make_dead(f, "rp.t", "g1", "a", 20);
	make_dead(f, "rp.t", "g2", "b", 3);
	ck_assert_uint_eq(stats_of(f, "rp.t.dlq", "").ready +
	    stats_of(f, "rp.t.dlq", "").delayed, 23);
	sleep(2);	/* past the dedup window given to ferryd */
	t0 = now_ms();
	st = run_err(d.port, &out, &err, 20000, "dlq", "replay", "rp.t",
	    "--group", "g1", "--rate", "10", "--timeout", "1", NULL);
	took = now_ms() - t0;
	ck_assert_msg(st == 0, "dlq replay exit %d", st);
	ck_assert_ptr_nonnull(strstr(err, "replayed 20 dead letters"));
	ck_assert_ptr_nonnull(strstr(err, "skipped 3"));
	/* 20 at 10/s: the last one at 1.9 s, then 1 s idle. */
	ck_assert_msg(took >= 2800 && took < 6000, "took %llu ms",
	    (unsigned long long)took);
	free(out);
	free(err);
	/* g1 has them back, ids and headers as published, no dlq-*. */
	fc_sub(f, "rp.t", "g1", 100, 0, 0);
	for (int i = 0; i < 23; i++) {
		m = fc_next(f, 2000);
		if (strncmp(m->id, "id-b", 4) == 0) {
			/* Published to rp.t for g2, so g1 got them too. */
			ck_assert_uint_eq(m->attempt, 1);
			ack_free(f, m);
			continue;
		}
		ck_assert_msg(strncmp(m->id, "id-a", 4) == 0,
		    "replayed id %s body %s", m->id, (const char *)m->body);
		ck_assert(fc_has_hdr(m, "k", "v"));
		for (size_t k = 0; k < m->nhdr; k++)
			ck_assert_int_ne(strncmp(m->hdr[k].key, "dlq-", 4), 0);
		ack_free(f, m);
		seen++;
	}
	fc_none(f, 200);
	ck_assert_int_eq(seen, 20);
	/* g2 got nothing; its dead letters are still in the dlq, with
	 * their attempt count untouched by the replay. */
	ck_assert_uint_eq(stats_of(f, "rp.t", "g2").ready, 0);
	fc_sub(f, "rp.t.dlq", NULL, 100, 0, 0);
	for (int i = 0; i < 3; i++) {
		m = fc_next(f, 2000);
		ck_assert(fc_has_hdr(m, "dlq-group", "g2"));
		ck_assert_uint_eq(m->attempt, 1);
		ferry_msg_free(m);
	}
	fc_none(f, 200);
	ferry_close(f);
}
END_TEST

START_TEST(dlq_replay_within_dedup_window_keeps_dead_letter)
{
	struct ferry *f = fc_connect(d.port, "t");
	char *out = NULL, *err = NULL;
	int st;

	make_dead(f, "rw.t", "g", "c", 1);
	/* The default dedup window (120 s) still remembers "id-c0". */
	st = run_err(d.port, &out, &err, 10000, "dlq", "replay", "rw.t",
	    "--timeout", "0.5", NULL, NULL, NULL, NULL, NULL);
	ck_assert_int_eq(st, 1);
	ck_assert_ptr_nonnull(strstr(err, "dedup window"));
	free(out);
	free(err);
	ck_assert_uint_eq(stats_of(f, "rw.t.dlq", "default").ready, 1);
	ferry_close(f);
}
END_TEST

/* --- inspection ------------------------------------------------------------ */

START_TEST(inspect_api)
{
	struct ferry *f = fc_connect(d.port, "inspector");
	struct ferry *w = fc_connect(d.port, "worker-7");
	struct ferry_lease_info *li;
	struct ferry_event *ev, *ev2;
	struct ferry_msg *m, *pk;
	char id[FERRY_ID_MAX + 1];
	struct ferry_group_stats st;
	size_t n, i;

	fc_sub(w, "in.t", "g", 1, 0, 0);
	ck_assert_int_eq(pub_o(f, "in.t", "first", NULL, id), 0);
	fc_pub(f, "in.t", "second");
	m = fc_next(w, 2000);
	ck_assert_str_eq(m->body, "first");
	ck_assert_int_eq(ferry_ping(w), 0);

	st = stats_of(f, "in.t", "g");
	ck_assert_uint_eq(st.inflight, 1);
	ck_assert_uint_eq(st.ready, 1);
	ck_assert_uint_eq(st.members, 1);
	ck_assert_uint_eq(st.enqueued, 2);
	ck_assert_uint_eq(st.bytes, 11);

	ck_assert_int_eq(ferry_inflight(f, "in.t", "g", &li, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(li[0].id, id);
	ck_assert_str_eq(li[0].consumer, "worker-7");
	ck_assert_uint_eq(li[0].attempt, 1);
	ferry_inflight_free(li);
	ck_assert_int_eq(ferry_inflight(f, "in.t", "nope", &li, &n),
	    FERRY_ENOTFOUND);
	ck_assert_ptr_null(li);

	ck_assert_int_eq(ferry_peek(f, "in.t", "g", &pk), 0);
	ck_assert_str_eq(pk->body, "second");
	ck_assert_uint_eq(pk->lease, 0);
	ferry_msg_free(pk);
	ck_assert_int_eq(ferry_peek(f, "in.empty", NULL, &pk),
	    FERRY_ENOTFOUND);

	ck_assert_int_eq(ferry_nack(w, m->sid, m->lease, 0, "bad input",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	m = fc_next(w, 2000);
	ck_assert_str_eq(m->body, "first");
	ack_free(w, m);
	ck_assert_int_eq(ferry_trace(f, id, &ev, &n), 0);
	for (i = 0; i < n; i++)
		fprintf(stderr, "trace %s %s/%s by=%s att=%u e=%s\n",
		    ev[i].what, ev[i].topic, ev[i].group, ev[i].consumer,
		    ev[i].attempt, ev[i].error);
	ck_assert_uint_ge(n, 5);
	ck_assert_str_eq(ev[0].what, "published");
	ck_assert_str_eq(ev[1].what, "delivered");
	ck_assert_str_eq(ev[2].what, "nacked");
	ck_assert_str_eq(ev[2].consumer, "worker-7");
	ck_assert_str_eq(ev[n - 1].what, "acked");
	for (i = 1; i < n; i++)
		ck_assert_uint_ge(ev[i].at_ms, ev[i - 1].at_ms);
	ck_assert_int_eq(ferry_trace(f, "no-such-id", &ev2, &n), FERRY_ENOTFOUND);
	ferry_close(w);
	ferry_close(f);
	/* Last: the nack's error text belongs in the event (fy_event.e). */
	ck_assert_str_eq(ev[2].error, "bad input");
	ferry_trace_free(ev);
}
END_TEST

START_TEST(inspect_cli)
{
	struct ferry *f = fc_connect(d.port, "inspector");
	struct ferry *w = fc_connect(d.port, "worker-9");
	struct ferry_pub_opts o = {.id = "msg-one"};
	char *out = NULL, *err = NULL, *line;
	struct ferry_msg *m;
	int st;

	fc_sub(w, "ic.t", "grp", 1, 0, 0);
	ck_assert_int_eq(pub_o(f, "ic.t", "one", &o, NULL), 0);
	fc_pub(f, "ic.t", "two");
	m = fc_next(w, 2000);
	ck_assert_int_eq(ferry_ping(w), 0);

	st = cli_run(d.port, NULL, &out, 5000, "stats", "ic.t", NULL);
	ck_assert_int_eq(st, 0);
	fputs(out, stderr);
	ck_assert_int_eq(strncmp(out, "TOPIC", 5), 0);
	line = strstr(out, " grp ");
	ck_assert_ptr_nonnull(line);
	while (line[-1] != '\n')
		line--;
	line--;
	/* Aligned: GROUP starts at the same column in every line. */
	ck_assert_int_eq((int)(strstr(out, "GROUP") - out),
	    (int)(strstr(line + 1, "grp") - (line + 1)));
	free(out);
	st = cli_run(d.port, NULL, &out, 5000, "stats", "ic.t", "--json",
	    NULL);
	ck_assert_int_eq(st, 0);
	ck_assert_ptr_nonnull(strstr(out, "\"group\":\"grp\""));
	ck_assert_ptr_nonnull(strstr(out, "\"inflight\":1"));
	ck_assert_ptr_nonnull(strstr(out, "\"ready\":1"));
	free(out);

	st = cli_run(d.port, NULL, &out, 5000, "inflight", "ic.t", "--group",
	    "grp", NULL);
	ck_assert_int_eq(st, 0);
	fputs(out, stderr);
	ck_assert_ptr_nonnull(strstr(out, "msg-one"));
	ck_assert_ptr_nonnull(strstr(out, "worker-9"));
	free(out);
	st = cli_run(d.port, NULL, &out, 5000, "inflight", "ic.t", "--group",
	    "grp", "--json", NULL);
	ck_assert_int_eq(st, 0);
	ck_assert_ptr_nonnull(strstr(out, "\"id\":\"msg-one\""));
	free(out);

	st = fc_cli_run_err(d.port, NULL, &out, &err, 5000, "peek", "ic.t",
	    "--group", "grp", "--headers", NULL, NULL);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "two\n");
	ck_assert_ptr_nonnull(strstr(err, "topic=ic.t"));
	free(out);
	free(err);
	st = cli_run(d.port, NULL, &out, 5000, "peek", "ic.none", NULL);
	ck_assert_int_eq(st, 1);
	free(out);

	ack_free(w, m);
	st = cli_run(d.port, NULL, &out, 5000, "trace", "msg-one", NULL);
	ck_assert_int_eq(st, 0);
	fputs(out, stderr);
	ck_assert_int_eq(strncmp(out, "TIME", 4), 0);
	ck_assert_ptr_nonnull(strstr(out, "published"));
	ck_assert_ptr_nonnull(strstr(out, "delivered"));
	ck_assert_ptr_nonnull(strstr(out, "acked"));
	free(out);
	st = cli_run(d.port, NULL, &out, 5000, "trace", "msg-one", "--json",
	    NULL);
	ck_assert_int_eq(st, 0);
	ck_assert_ptr_nonnull(strstr(out, "\"event\":\"acked\""));
	free(out);
	st = cli_run(d.port, NULL, &out, 5000, "trace", "nope", NULL);
	ck_assert_int_eq(st, 1);
	free(out);
	ferry_close(w);
	ferry_close(f);
}
END_TEST

START_TEST(cli_pub_sub_options)
{
	struct ferry *f = fc_connect(d.port, "t");
	char *out = NULL;
	struct ferry_msg *m;
	int st;

	/* Group settings on creation. */
	st = cli_run(d.port, NULL, &out, 5000, "sub", "co.t", "--group", "g",
	    "--max-msgs", "1", "--overflow", "reject", "--timeout", "0.2",
	    NULL);
	ck_assert_int_eq(st, 1);	/* nothing came */
	free(out);
	st = cli_run(d.port, NULL, &out, 5000, "pub", "co.t", "a", NULL);
	ck_assert_int_eq(st, 0);
	free(out);
	st = cli_run(d.port, NULL, &out, 5000, "pub", "co.t", "b", NULL);
	ck_assert_int_eq(st, 1);	/* E_FULL */
	free(out);
	st = cli_run(d.port, NULL, &out, 5000, "sub", "co.t", "--max-bytes",
	    "12Q", NULL);
	ck_assert_int_eq(st, 2);
	free(out);

	/* --delay, --id, --header, --group on publish. */
	fc_sub(f, "co.u", "g1", 10, 0, 0);
	fc_sub(f, "co.u", "g2", 10, 0, 0);
	st = cli_run(d.port, NULL, &out, 5000, "pub", "co.u", "late",
	    "--delay", "1", "--id", "the-id", "--header", "a=b", "--group",
	    "g2", "--ttl", "60", NULL);
	ck_assert_int_eq(st, 0);
	free(out);
	fc_none(f, 700);
	m = fc_next(f, 2000);
	ck_assert_str_eq(m->body, "late");
	ck_assert_str_eq(m->id, "the-id");
	ck_assert(fc_has_hdr(m, "a", "b"));
	ack_free(f, m);
	fc_none(f, 200);	/* g1 got nothing */
	ferry_close(f);
}
END_TEST

/* --- reconnect ---------------------------------------------------------- */

struct rc_seen {
	int calls, err;
	size_t resent, resubscribed;
};

static void
on_reconnect(void *arg, const struct ferry_reconnect_info *i)
{
	struct rc_seen *s = arg;

	s->calls++;
	s->err = i->err;
	s->resent += i->resent;
	s->resubscribed = i->resubscribed;
}

/* Stop ferryd and start it again on the same port. */
static void
restart_same_port(void)
{
	char port[16];
	char *extra[] = {"--port", port, NULL};

	snprintf(port, sizeof(port), "%d", d.port);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ck_assert_int_eq(ferryd_try_start(&d, extra, NULL), 0);
	ck_assert_int_eq(d.port, atoi(port));
}

START_TEST(reconnect_resends_and_resubscribes)
{
	struct ferry_reconnect_opts ro = {.max_time_ms = 10000,
	    .base_ms = 50, .fn = on_reconnect};
	struct rc_seen seen = {0};
	struct ferry *f = fc_connect(d.port, "rc");
	struct ferry *p = fc_connect(d.port, "rcp");
	struct ferry_confirms c;
	struct ferry_msg *m, *old;
	uint64_t sid;
	int got[20] = {0};

	ro.arg = &seen;
	ck_assert_int_eq(ferry_set_reconnect(f, &ro), 0);
	ck_assert_int_eq(ferry_set_producer(f, "rc-prod", 1), 0);
	sid = fc_sub(f, "rc.t", "g", 10, 0, 0);
	fc_pub(p, "rc.t", "before");
	ferry_close(p);
	old = fc_next(f, 2000);
	ck_assert_str_eq(old->body, "before");
	restart_same_port();
	/* Pipelined publishes on the dead connection: sent again. */
	for (int i = 0; i < 10; i++) {
		char b[8];

		snprintf(b, sizeof(b), "%d", i);
		ck_assert_int_eq(ferry_publish_pipelined(f, "rc.t", b,
		    strlen(b), NULL, NULL), 0);
	}
	ck_assert_int_eq(ferry_wait_confirms(f, 0, 10000, &c), 0);
	ck_assert_uint_eq(c.ok, 10);
	ck_assert_uint_eq(c.failed, 0);
	ck_assert_int_eq(ferry_err(f), 0);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_int_eq(seen.err, 0);
	ck_assert_uint_eq(seen.resubscribed, 1);
	ck_assert_uint_eq(ferry_reconnects(f), 1);
	/* The old delivery's lease is void, refused locally. */
	ck_assert_int_eq(ferry_ack(f, old->sid, old->lease, 0), FERRY_ESTALE);
	ferry_msg_free(old);
	/* The subscription lives on: "before" comes back, then 0..9 once. */
	for (int i = 0; i < 11; i++) {
		m = fc_next(f, 3000);
		ck_assert_uint_ne(m->sid, sid);
		ck_assert_uint_eq(m->sid & 0xffffffffu, sid);
		if (strcmp(m->body, "before") != 0)
			got[fc_body_int(m)]++;
		ack_free(f, m);
	}
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(got[i], 1);
	fc_none(f, 300);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), 0);
	ferry_close(f);
}
END_TEST

START_TEST(reconnect_gives_up)
{
	struct ferry_reconnect_opts ro = {.max_attempts = 3, .base_ms = 20,
	    .fn = on_reconnect};
	struct rc_seen seen = {0};
	struct ferry *f = fc_connect(d.port, "rc");
	struct ferry_confirms c;
	int r;

	ro.arg = &seen;
	ck_assert_int_eq(ferry_set_reconnect(f, &ro), 0);
	ck_assert_int_eq(ferry_publish_pipelined(f, "rg.t", "x", 1, NULL,
	    NULL), 0);
	ck_assert_int_eq(ferry_wait_confirms(f, 0, 5000, &c), 0);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ck_assert_int_eq(ferry_publish_pipelined(f, "rg.t", "y", 1, NULL,
	    NULL), 0);
	r = ferry_wait_confirms(f, 0, 5000, &c);
	ck_assert_int_lt(r, 0);
	ck_assert_int_ne(ferry_err(f), 0);
	ck_assert_uint_eq(c.failed, 1);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_int_ne(seen.err, 0);
	fprintf(stderr, "gave up: %s\n", ferry_errstr(f));
	ferry_close(f);
	ferryd_restart(&d);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("features");
	TCase *tc = tcase_create("features");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, delay_not_before);
	tcase_add_test(tc, delay_survives_restart);
	tcase_add_test(tc, ttl_expires_to_dlq);
	tcase_add_test(tc, group_ttl_drop);
	tcase_add_test(tc, dedup_by_id_across_restart);
	tcase_add_test(tc, producer_seq_hwm_across_restart);
	tcase_add_test(tc, producer_pipelined_dups_counted);
	tcase_add_test(tc, mandatory_and_targeted);
	tcase_add_test(tc, limit_reject_across_restart);
	tcase_add_test(tc, limit_bytes_dlq_oldest);
	tcase_add_test(tc, request_reply);
	tcase_add_test(tc, request_no_responders_and_timeout);
	tcase_add_test(tc, cli_req_reply_exec);
	tcase_add_test(tc, dlq_replay_within_dedup_window_keeps_dead_letter);
	tcase_add_test(tc, inspect_api);
	tcase_add_test(tc, inspect_cli);
	tcase_add_test(tc, cli_pub_sub_options);
	tcase_add_test(tc, reconnect_resends_and_resubscribes);
	tcase_add_test(tc, reconnect_gives_up);
	suite_add_tcase(s, tc);

	/* Replay needs ids out of the dedup window: a short one. */
	tc = tcase_create("replay");
	tcase_add_checked_fixture(tc, setup_short_dedup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, dlq_replay_rate_and_group);
	suite_add_tcase(s, tc);

	tc = tcase_create("producer_ttl");
	tcase_add_checked_fixture(tc, setup_short_producer_ttl, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, idle_producer_forgotten);
	suite_add_tcase(s, tc);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
