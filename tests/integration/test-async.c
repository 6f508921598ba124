/*
 * test-async.c - libferry's asynchronous API against a real ferryd:
 * confirmed and fire-and-forget publishes, subscribe with ack, nack and
 * touch, request-reply, reconnect after ferryd is killed with SIGKILL and
 * restarted (no confirmed publish lost, none enqueued twice), freeing the
 * handle inside its own callbacks, a first connection retried until
 * ferryd is up, giving up after the reconnect limits, asynchronous errors,
 * `ferry reply --exec` touching the lease of a request that takes longer
 * than its ack timeout, batch publishes (one refused part way by a full
 * group), the inspection calls with their errors and deleting a group
 * and a topic.
 *
 * Every test runs its own event_base, bounded by a guard timer that fails
 * the test instead of hanging.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "client-helpers.h"
#include "harness-extra.h"
#include "harness.h"

static struct ferryd d;
static struct event_base *base;

static void
setup(void)
{
	ferryd_start(&d, NULL);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
}

static void
teardown(void)
{
	event_base_free(base);
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* --- Helpers -------------------------------------------------------------- */

static int loop_done;

static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(base);
}

/* Run the loop until loop_done is set (and the loop broken) or ms pass;
 * fails the test on the latter. */
static void
run_until_done(int ms, const char *what)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *guard = evtimer_new(base, on_guard, NULL);

	loop_done = 0;
	evtimer_add(guard, &tv);
	while (!loop_done) {
		event_base_loop(base, EVLOOP_ONCE);
		if (!evtimer_pending(guard, NULL))
			break;
	}
	event_free(guard);
	ck_assert_msg(loop_done, "timed out waiting for %s", what);
}

static void
finish(void)
{
	loop_done = 1;
}

static void
on_status_connected(struct ferry_async *a, int st, void *arg)
{
	int *last = arg;

	*last = st;
	if (st == FERRY_ASYNC_CONNECTED || st == FERRY_ASYNC_FAILED)
		finish();
}

/* An async handle, connected (the loop ran until the handshake). */
static struct ferry_async *
async_connect(const char *name, int *status)
{
	struct ferry_async_opts o = { .name = name,
	    .on_status = on_status_connected, .arg = status };
	struct ferry_async *a = ferry_async_connect(base, "127.0.0.1",
	    d.port, &o);

	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(ferry_async_err(a), 0);
	run_until_done(5000, "the handshake");
	ck_assert_int_eq(*status, FERRY_ASYNC_CONNECTED);
	return a;
}

static void
on_done_store(struct ferry_async *a, int err, void *arg)
{
	*(int *)arg = err;
	finish();
}

/* Drain group of topic with a blocking client, counting each body (an
 * int below n) into seen[]; stops after a quiet 500 ms. */
static void
drain_count(const char *topic, const char *group, int *seen, int n)
{
	struct ferry *f = fc_connect(d.port, "drain");
	struct ferry_msg *m;

	fc_sub(f, topic, group, 100, 0, 0);
	while (ferry_next(f, 500, &m) == 0) {
		int v = fc_body_int(m);

		ck_assert_int_ge(v, 0);
		ck_assert_int_lt(v, n);
		seen[v]++;
		ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_err(f), 0);
	ferry_close(f);
}

/* --- Publishing ----------------------------------------------------------- */

struct confirms {
	int ok, failed, dups, calls;
	int want;
	char first_id[FERRY_ID_MAX + 1];
};

static void
on_confirm(struct ferry_async *a, const struct ferry_confirm *c, void *arg)
{
	struct confirms *s = arg;

	s->calls++;
	if (c->err == 0) {
		s->ok++;
		s->dups += (int)c->dups;
		if (s->first_id[0] == '\0')
			snprintf(s->first_id, sizeof(s->first_id), "%s", c->id);
	} else {
		s->failed++;
	}
	if (s->calls == s->want)
		finish();
}

START_TEST(publish_confirmed_and_fire_and_forget)
{
	struct confirms s = { .want = 100 };
	struct ferry_pub_opts po = { .id = "dup-1" };
	int st, ping = 1, seen[200] = {0};
	struct ferry_async *a = async_connect("pub", &st);
	char b[16];

	/* A group first, so that what follows is kept for the check. */
	{
		struct ferry *f = fc_connect(d.port, "mk");

		ck_assert_int_eq(ferry_unsubscribe(f, fc_sub(f, "ap", "g",
		    0, 0, 0)), 0);
		ferry_close(f);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(b, sizeof(b), "%d", i);
		ck_assert_int_eq(ferry_async_publish(a, "ap", b, strlen(b),
		    NULL, on_confirm, &s), 0);
	}
	run_until_done(10000, "100 confirms");
	ck_assert_int_eq(s.ok, 100);
	ck_assert_int_eq(s.failed, 0);
	ck_assert_int_eq(s.dups, 0);
	ck_assert_uint_gt(strlen(s.first_id), 0);
	for (int i = 100; i < 150; i++) {
		snprintf(b, sizeof(b), "%d", i);
		ck_assert_int_eq(ferry_async_publish(a, "ap", b, strlen(b),
		    NULL, NULL, NULL), 0);
	}
	/* Buffered until the loop runs. */
	ck_assert_uint_gt(ferry_async_buffered(a), 50 * 3);
	/* The ping is answered after the broker handled all before it. */
	ck_assert_int_eq(ferry_async_ping(a, on_done_store, &ping), 0);
	run_until_done(5000, "the ping");
	ck_assert_int_eq(ping, 0);
	ck_assert_uint_eq(ferry_async_buffered(a), 0);
	/* Dedup by id: the second is confirmed as a duplicate. */
	memset(&s, 0, sizeof(s));
	s.want = 2;
	ck_assert_int_eq(ferry_async_publish(a, "ap", "150", 3, &po,
	    on_confirm, &s), 0);
	ck_assert_int_eq(ferry_async_publish(a, "ap", "150", 3, &po,
	    on_confirm, &s), 0);
	run_until_done(5000, "2 confirms");
	ck_assert_int_eq(s.ok, 2);
	ck_assert_int_eq(s.dups, 1);
	ck_assert_str_eq(s.first_id, "dup-1");
	/* Bad arguments are refused at once, and no callback runs. */
	ck_assert_int_eq(ferry_async_publish(a, "bad topic", "x", 1, NULL,
	    on_confirm, &s), FERRY_EBADNAME);
	ck_assert_int_eq(ferry_async_publish(a, NULL, "x", 1, NULL, NULL,
	    NULL), FERRY_EINVAL);
	ferry_async_free(a);
	ck_assert_int_eq(s.calls, 2);
	drain_count("ap", "g", seen, 200);
	for (int i = 0; i < 151; i++)
		ck_assert_msg(seen[i] == 1, "message %d seen %d times", i,
		    seen[i]);
}
END_TEST

/* --- Consuming ------------------------------------------------------------ */

struct worker {
	struct ferry_async *a;
	int subscribed;
	int acked_a, nacked_b, acked_b, acked_c;
	uint32_t b_attempt, c_attempt;
	int c_touches;
	uint64_t c_sid, c_lease;
	struct event *touch;
	int settle_err;
};

static void
on_settled(struct ferry_async *a, int err, void *arg)
{
	struct worker *w = arg;

	if (err != 0)
		w->settle_err = err;
}

static void
on_c_acked(struct ferry_async *a, int err, void *arg)
{
	struct worker *w = arg;

	w->acked_c = err == 0 ? 1 : err;
	finish();
}

/* Touch "c" every 300 ms, beyond its 1 s lease, then ack it. */
static void
on_touch_timer(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { 0, 300000 };

	if (++w->c_touches <= 6) {
		ck_assert_int_eq(ferry_async_touch(w->a, w->c_sid, w->c_lease,
		    on_settled, w), 0);
		evtimer_add(w->touch, &tv);
		return;
	}
	ck_assert_int_eq(ferry_async_ack(w->a, w->c_sid, w->c_lease,
	    on_c_acked, w), 0);
}

static void
on_work(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { 0, 300000 };

	if (strcmp(m->body, "a") == 0) {
		w->acked_a++;
		ck_assert_int_eq(ferry_async_ack(a, m->sid, m->lease,
		    on_settled, w), 0);
	} else if (strcmp(m->body, "b") == 0 && m->attempt == 1) {
		w->nacked_b++;
		ck_assert_int_eq(ferry_async_nack(a, m->sid, m->lease, 0,
		    "try again", NULL, NULL), 0);
	} else if (strcmp(m->body, "b") == 0) {
		w->acked_b++;
		w->b_attempt = m->attempt;
		ck_assert_int_eq(ferry_async_ack(a, m->sid, m->lease, NULL,
		    NULL), 0);
	} else if (strcmp(m->body, "c") == 0) {
		/* A redelivery would mean a touch did not hold the lease. */
		ck_assert_uint_eq(m->attempt, 1);
		w->c_attempt = m->attempt;
		w->c_sid = m->sid;
		w->c_lease = m->lease;
		evtimer_add(w->touch, &tv);
	}
}

static void
on_subscribed(struct ferry_async *a, int err, void *arg)
{
	struct worker *w = arg;

	w->subscribed = err == 0 ? 1 : err;
}

START_TEST(subscribe_ack_nack_touch)
{
	struct ferry_sub_opts so = { .group = "w", .ack_timeout_ms = 1000 };
	struct worker w = {0};
	struct ferry *f = fc_connect(d.port, "pub");
	struct ferry_group_stats *rows;
	uint64_t sid;
	size_t n;
	int st;

	w.a = async_connect("worker", &st);
	w.touch = evtimer_new(base, on_touch_timer, &w);
	ck_assert_int_eq(ferry_async_subscribe(w.a, "as", &so, on_work,
	    on_subscribed, &w, &sid), 0);
	ck_assert_uint_gt(sid, 0);
	fc_pub(f, "as", "c");
	fc_pub(f, "as", "a");
	fc_pub(f, "as", "b");
	run_until_done(15000, "c to be acked");
	ck_assert_int_eq(w.subscribed, 1);
	ck_assert_int_eq(w.acked_c, 1);
	ck_assert_int_eq(w.acked_a, 1);
	ck_assert_int_eq(w.nacked_b, 1);
	ck_assert_int_eq(w.acked_b, 1);
	ck_assert_uint_eq(w.b_attempt, 2);
	ck_assert_int_eq(w.settle_err, 0);
	/* Nothing was left, and no lease ran out. */
	ck_assert_int_eq(ferry_stats(f, "as", &rows, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(rows[i].group, "w") != 0)
			continue;
		ck_assert_uint_eq(rows[i].acked, 3);
		ck_assert_uint_eq(rows[i].timeouts, 0);
		ck_assert_uint_eq(rows[i].nacked, 1);
		ck_assert_uint_eq(rows[i].ready + rows[i].inflight +
		    rows[i].delayed, 0);
	}
	ferry_stats_free(rows);
	/* A stale lease is refused to the confirmed settle's callback. */
	w.settle_err = 0;
	ck_assert_int_eq(ferry_async_ack(w.a, w.c_sid, w.c_lease,
	    on_done_store, &w.settle_err), 0);
	run_until_done(5000, "the stale ack");
	ck_assert_int_eq(w.settle_err, FERRY_ESTALE);
	st = 1;
	ck_assert_int_eq(ferry_async_unsubscribe(w.a, sid, on_done_store,
	    &st), 0);
	run_until_done(5000, "unsubscribe");
	ck_assert_int_eq(st, 0);
	event_free(w.touch);
	ferry_async_free(w.a);
	ferry_close(f);
}
END_TEST

/* --- Request-reply -------------------------------------------------------- */

static void
on_request(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	char up[64];
	size_t i;

	if (strcmp(m->body, "silence") == 0) {
		ck_assert_int_eq(ferry_async_ack(a, m->sid, m->lease, NULL,
		    NULL), 0);
		return;
	}
	for (i = 0; i < m->len && i < sizeof(up); i++)
		up[i] = (char)(((const char *)m->body)[i] & ~0x20);
	ck_assert_int_eq(ferry_async_reply(a, m, up, i, NULL, NULL), 0);
	ck_assert_int_eq(ferry_async_ack(a, m->sid, m->lease, NULL, NULL), 0);
}

struct reply_seen {
	int err, calls;
	char body[64];
};

static void
on_reply(struct ferry_async *a, int err, const struct ferry_msg *reply,
    void *arg)
{
	struct reply_seen *s = arg;

	s->calls++;
	s->err = err;
	if (reply != NULL)
		snprintf(s->body, sizeof(s->body), "%.*s", (int)reply->len,
		    (const char *)reply->body);
	finish();
}

START_TEST(request_reply)
{
	struct reply_seen s = {0};
	int st, st2, sub = 1;
	struct ferry_async *resp = async_connect("responder", &st);
	struct ferry_async *req = async_connect("requester", &st2);

	ck_assert_int_eq(ferry_async_subscribe(resp, "rpc", NULL, on_request,
	    on_done_store, &sub, NULL), 0);
	run_until_done(5000, "subscribe");
	ck_assert_int_eq(sub, 0);
	ck_assert_int_eq(ferry_async_request(req, "rpc", "hi", 2, NULL, 5000,
	    on_reply, &s), 0);
	run_until_done(6000, "the reply");
	ck_assert_int_eq(s.err, 0);
	ck_assert_str_eq(s.body, "HI");
	/* No responder: refused at once, not after the timeout. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(ferry_async_request(req, "nobody", "x", 1, NULL,
	    60000, on_reply, &s), 0);
	run_until_done(5000, "no responders");
	ck_assert_int_eq(s.err, FERRY_ENOSUBSCRIBERS);
	ck_assert_int_eq(s.calls, 1);
	/* A responder that stays silent: the timeout. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(ferry_async_request(req, "rpc", "silence", 7, NULL,
	    300, on_reply, &s), 0);
	run_until_done(5000, "the timeout");
	ck_assert_int_eq(s.err, FERRY_ETIMEOUT);
	ferry_async_free(req);
	ferry_async_free(resp);
	ck_assert_int_eq(s.calls, 1);
}
END_TEST

/* --- Reconnect ------------------------------------------------------------ */

#define RC_N 300

struct rc {
	struct ferry_async *a;
	struct event *tick, *kill;
	int next;		/* next body to publish */
	int failed, confirms, dups;
	size_t resent;
	int got[RC_N], distinct;
	int statuses[8];
	int killed, restarted;
	char port[16];
};

static void
rc_maybe_done(struct rc *r)
{
	if (r->confirms == RC_N && r->distinct == RC_N)
		finish();
}

static void
rc_confirm(struct ferry_async *a, const struct ferry_confirm *c, void *arg)
{
	struct rc *r = arg;

	r->confirms++;
	r->dups += (int)c->dups;
	if (c->err != 0) {
		r->failed++;
		fprintf(stderr, "confirm failed: %s\n", c->errmsg);
	}
	rc_maybe_done(r);
}

static void
rc_msg(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	struct rc *r = arg;
	int v = fc_body_int(m);

	if (r->got[v]++ == 0)
		r->distinct++;
	/* Fire-and-forget: an ack lost with the connection only means a
	 * redelivery (at-least-once); a stale one is refused locally. */
	ferry_async_ack(a, m->sid, m->lease, NULL, NULL);
	rc_maybe_done(r);
}

static void
rc_reconnected(void *arg, const struct ferry_reconnect_info *i)
{
	struct rc *r = arg;

	r->resent += i->resent;
}

static void
rc_status(struct ferry_async *a, int st, void *arg)
{
	struct rc *r = arg;

	r->statuses[st]++;
}

static void
rc_kill(evutil_socket_t fd, short what, void *arg)
{
	ferryd_kill(&d);
}

/* Publish 10 confirmed messages per tick; SIGKILL ferryd a third of the
 * way through and start it again on the same port 300 ms later. */
static void
rc_tick(evutil_socket_t fd, short what, void *arg)
{
	struct rc *r = arg;
	struct timeval tv = { 0, 10000 };
	char b[16];

	for (int k = 0; k < (r->next == RC_N / 3 ? 60 : 10) && r->next < RC_N;
	    k++, r->next++) {
		snprintf(b, sizeof(b), "%d", r->next);
		ck_assert_int_eq(ferry_async_publish(r->a, "rc", b, strlen(b),
		    NULL, rc_confirm, r), 0);
	}
	if (r->next >= RC_N / 3 && !r->killed) {
		/* Soon after this tick's publishes were written: some may be
		 * stored but not yet confirmed, and come back as duplicates
		 * once sent again. */
		struct timeval soon = { 0, 1500 };

		r->killed = 1;
		evtimer_add(r->kill, &soon);
		tv.tv_usec = 300000;
	} else if (r->killed && !r->restarted) {
		char *extra[] = { "--port", r->port, NULL };

		r->restarted = 1;
		ck_assert_int_eq(ferryd_try_start(&d, extra, NULL), 0);
	}
	if (r->next < RC_N || !r->restarted)
		evtimer_add(r->tick, &tv);
}

START_TEST(reconnect_after_kill9)
{
	struct ferry_reconnect_opts ro = { .max_time_ms = 20000,
	    .base_ms = 50, .max_backoff_ms = 500, .fn = rc_reconnected };
	struct ferry_async_opts o = { .name = "rc", .reconnect = &ro,
	    .on_status = rc_status };
	struct ferry_sub_opts so = { .group = "work", .prefetch = 50 };
	static struct rc r;
	int audit[RC_N] = {0};
	struct ferry *f;
	struct timeval now = { 0, 0 };

	memset(&r, 0, sizeof(r));
	snprintf(r.port, sizeof(r.port), "%d", d.port);
	/* A second group that nobody reads until the end: what it holds is
	 * exactly what was enqueued. */
	f = fc_connect(d.port, "mk");
	ck_assert_int_eq(ferry_unsubscribe(f, fc_sub(f, "rc", "audit", 0, 0,
	    0)), 0);
	ferry_close(f);
	o.arg = &r;
	ro.arg = &r;
	r.a = ferry_async_connect(base, "127.0.0.1", d.port, &o);
	ck_assert_ptr_nonnull(r.a);
	ck_assert_int_eq(ferry_async_set_producer(r.a, "rc-producer", 0), 0);
	ck_assert_int_eq(ferry_async_subscribe(r.a, "rc", &so, rc_msg, NULL,
	    &r, NULL), 0);
	r.tick = evtimer_new(base, rc_tick, &r);
	r.kill = evtimer_new(base, rc_kill, &r);
	evtimer_add(r.tick, &now);
	run_until_done(40000, "every publish confirmed and consumed");
	ck_assert_int_eq(r.failed, 0);
	ck_assert_int_eq(r.statuses[FERRY_ASYNC_CONNECTED], 1);
	ck_assert_int_ge(r.statuses[FERRY_ASYNC_DISCONNECTED], 1);
	ck_assert_int_ge(r.statuses[FERRY_ASYNC_RECONNECTED], 1);
	ck_assert_int_eq(r.statuses[FERRY_ASYNC_FAILED], 0);
	ck_assert_uint_ge(ferry_async_reconnects(r.a), 1);
	fprintf(stderr, "reconnect: %zu publishes sent again, %d confirmed "
	    "as duplicates\n", r.resent, r.dups);
	event_free(r.tick);
	event_free(r.kill);
	ferry_async_free(r.a);
	/* None lost, none enqueued twice. */
	drain_count("rc", "audit", audit, RC_N);
	for (int i = 0; i < RC_N; i++)
		ck_assert_msg(audit[i] == 1, "message %d enqueued %d times",
		    i, audit[i]);
}
END_TEST

/* --- Freeing inside callbacks --------------------------------------------- */

struct freer {
	struct ferry_async *a;
	int msgs, confirms, confirm_ok, confirm_closed, pings;
};

static void
free_on_msg(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	struct freer *x = arg;

	x->msgs++;
	ck_assert_ptr_eq(a, x->a);
	ferry_async_free(a);
	/* Marked, not freed: the handle still answers, refusing. */
	ck_assert_int_eq(ferry_async_publish(a, "t", "x", 1, NULL, NULL,
	    NULL), FERRY_ECLOSED);
	ferry_async_free(a);	/* twice is harmless */
}

static void
free_on_confirm(struct ferry_async *a, const struct ferry_confirm *c,
    void *arg)
{
	struct freer *x = arg;

	if (x->confirms++ == 0)
		ferry_async_free(a);
	if (c->err == 0)
		x->confirm_ok++;
	else if (c->err == FERRY_ECLOSED)
		x->confirm_closed++;
}

static void
count_ping(struct ferry_async *a, int err, void *arg)
{
	struct freer *x = arg;

	ck_assert_int_eq(err, FERRY_ECLOSED);
	x->pings++;
}

static void
on_later(evutil_socket_t fd, short what, void *arg)
{
	finish();
}

START_TEST(free_inside_callbacks)
{
	struct freer x = {0};
	struct timeval tv = { 0, 500000 };
	struct ferry *f = fc_connect(d.port, "pub");
	struct event *later = evtimer_new(base, on_later, NULL);
	int st;

	/* In a delivery callback, with more deliveries in the same read. */
	x.a = async_connect("free1", &st);
	ck_assert_int_eq(ferry_async_subscribe(x.a, "fr", NULL, free_on_msg,
	    NULL, &x, NULL), 0);
	for (int i = 0; i < 20; i++)
		fc_pub(f, "fr", "m");
	evtimer_add(later, &tv);
	run_until_done(5000, "the deliveries");
	ck_assert_int_eq(x.msgs, 1);
	/* In a confirm callback, with 49 more confirms outstanding: each
	 * callback still runs exactly once. */
	memset(&x, 0, sizeof(x));
	x.a = async_connect("free2", &st);
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(ferry_async_publish(x.a, "fr2", "m", 1, NULL,
		    free_on_confirm, &x), 0);
	evtimer_add(later, &tv);
	run_until_done(5000, "the confirms");
	ck_assert_int_eq(x.confirms, 50);
	ck_assert_int_eq(x.confirm_ok + x.confirm_closed, 50);
	ck_assert_int_ge(x.confirm_ok, 1);
	/* Freed outside any callback: waiting callbacks get ECLOSED. */
	memset(&x, 0, sizeof(x));
	x.a = async_connect("free3", &st);
	ck_assert_int_eq(ferry_async_ping(x.a, count_ping, &x), 0);
	ck_assert_int_eq(ferry_async_ping(x.a, count_ping, &x), 0);
	ferry_async_free(x.a);
	ck_assert_int_eq(x.pings, 2);
	event_free(later);
	ferry_close(f);
}
END_TEST

/* --- ferry reply --exec -------------------------------------------------- */

/* The counters of group of topic (zeros while the topic does not exist). */
static struct ferry_group_stats
group_stats(struct ferry *f, const char *topic, const char *group)
{
	struct ferry_group_stats *rows, g;
	size_t n;
	int r;

	memset(&g, 0, sizeof(g));
	r = ferry_stats(f, topic, &rows, &n);
	if (r == FERRY_ENOTFOUND)
		return g;
	ck_assert_int_eq(r, 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(rows[i].group, group) == 0)
			g = rows[i];
	g.topic = g.group = NULL;	/* they point into rows */
	ferry_stats_free(rows);
	return g;
}

START_TEST(reply_exec_slow_command)
{
	struct ferry_group_stats g;
	struct ferry *f;
	struct proc p;
	char *out = NULL;
	int st;

	/* A 1 s lease and a command taking 2.5 s: only touches keep the
	 * request from being redelivered meanwhile. */
	cli_spawn(&p, d.port, "reply", "slow", "--exec",
	    "sleep 2.5; tr a-z A-Z", "--ack-timeout", "1", "--count", "1",
	    NULL);
	f = fc_connect(d.port, "probe");
	for (int i = 0; i < 100 && group_stats(f, "slow", "default").members
	    == 0; i++)
		usleep(20000);
	st = cli_run(d.port, NULL, &out, 15000, "req", "slow", "hello",
	    "--timeout", "10", NULL);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "HELLO\n");
	free(out);
	ck_assert_int_eq(proc_wait(&p, 5000), 0);	/* --count 1 */
	g = group_stats(f, "slow", "default");
	ck_assert_uint_eq(g.delivered, 1);
	ck_assert_uint_eq(g.timeouts, 0);
	ck_assert_uint_eq(g.acked, 1);
	ck_assert_uint_eq(g.ready + g.inflight + g.delayed, 0);
	ferry_close(f);
}
END_TEST

/* Requests queued behind one another: each next one is delivered as soon
 * as the broker has the previous one's ack, before that confirmed ack is
 * answered; the responder must take it then, not drop it. */
START_TEST(reply_exec_back_to_back)
{
	struct proc p, req[4];
	struct ferry *f;
	char *out;
	size_t len;

	cli_spawn(&p, d.port, "reply", "fast", "--exec", "tr a-z A-Z",
	    "--count", "4", NULL);
	f = fc_connect(d.port, "probe");
	for (int i = 0; i < 100 && group_stats(f, "fast", "default").members
	    == 0; i++)
		usleep(20000);
	for (int i = 0; i < 4; i++)
		cli_spawn(&req[i], d.port, "req", "fast", "abc", "--timeout",
		    "10", NULL);
	for (int i = 0; i < 4; i++) {
		out = NULL;
		len = 0;
		ck_assert_int_eq(proc_read_lines(&req[i], &out, &len, 1,
		    10000), 1);
		ck_assert_str_eq(out, "ABC\n");
		free(out);
		ck_assert_int_eq(proc_wait(&req[i], 5000), 0);
	}
	ck_assert_int_eq(proc_wait(&p, 5000), 0);	/* --count 4 */
	ck_assert_uint_eq(group_stats(f, "fast", "default").acked, 4);
	ferry_close(f);
}
END_TEST

/* --- Batch publish ------------------------------------------------------- */

/* What the frames of one batch said, by message index. */
struct batch {
	int calls, want;		/* frames answered; finish at want */
	int err[16];			/* each message's frame's outcome */
	int covered[16];		/* times a frame named the message */
	size_t dups;
};

static void
on_batch(struct ferry_async *a, const struct ferry_confirm *c, void *arg)
{
	struct batch *b = arg;

	ck_assert_uint_le(c->first + c->nmsgs, 16);
	for (size_t i = c->first; i < c->first + c->nmsgs; i++) {
		b->err[i] = c->err;
		b->covered[i]++;
	}
	b->dups += c->dups;
	if (++b->calls == b->want)
		finish();
}

/* A group g of topic, created and left, that keeps what is published;
 * max_msgs 0 = no limit. */
static void
make_group(const char *topic, uint64_t max_msgs)
{
	struct ferry *f = fc_connect(d.port, "mk");
	struct ferry_sub_opts o = { .group = "g", .max_msgs = max_msgs };
	uint64_t sid;

	ck_assert_int_eq(ferry_subscribe(f, topic, &o, &sid), 0);
	ck_assert_int_eq(ferry_unsubscribe(f, sid), 0);
	ferry_close(f);
}

START_TEST(publish_batch)
{
	struct ferry_pub_msg m[8];
	struct batch b = { .want = 1 };
	char body[8][8], *big;
	int st, ping = 1, seen[8] = {0};
	struct ferry_async *a = async_connect("batch", &st);

	make_group("ab", 0);
	memset(m, 0, sizeof(m));
	for (int i = 0; i < 8; i++) {
		snprintf(body[i], sizeof(body[i]), "%d", i);
		m[i].body = body[i];
		m[i].len = strlen(body[i]);
	}
	m[0].id = "ab-0";
	/* Confirmed: one frame, one answer for all five. */
	ck_assert_int_eq(ferry_async_publish_batch(a, "ab", m, 5, on_batch,
	    &b), 0);
	run_until_done(5000, "the batch's confirm");
	ck_assert_int_eq(b.calls, 1);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(b.covered[i], 1);
		ck_assert_int_eq(b.err[i], 0);
	}
	/* Fire-and-forget; m[0]'s id again: a duplicate, not stored twice. */
	ck_assert_int_eq(ferry_async_publish_batch(a, "ab", m + 5, 3, NULL,
	    NULL), 0);
	memset(&b, 0, sizeof(b));
	b.want = 1;
	ck_assert_int_eq(ferry_async_publish_batch(a, "ab", m, 1, on_batch,
	    &b), 0);
	run_until_done(5000, "the duplicate's confirm");
	ck_assert_uint_eq(b.dups, 1);
	ck_assert_int_eq(ferry_async_ping(a, on_done_store, &ping), 0);
	run_until_done(5000, "the ping");
	drain_count("ab", "g", seen, 8);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(seen[i], 1);

	/* A body above the broker's max_msg: refused before anything is
	 * sent, for the whole batch, and no callback runs. */
	big = calloc(1, 2 * 1024 * 1024);
	ck_assert_ptr_nonnull(big);
	m[3].body = big;
	m[3].len = 2 * 1024 * 1024;
	ck_assert_int_eq(ferry_async_publish_batch(a, "ab", m, 5, on_batch,
	    &b), FERRY_EMSGSIZE);
	free(big);
	m[3].body = body[3];
	m[3].len = 1;
	ck_assert_int_eq(ferry_async_publish_batch(a, "bad topic", m, 5,
	    on_batch, &b), FERRY_EBADNAME);
	ck_assert_int_eq(ferry_async_publish_batch(a, "ab", NULL, 5,
	    on_batch, &b), FERRY_EINVAL);
	ping = 1;
	ck_assert_int_eq(ferry_async_ping(a, on_done_store, &ping), 0);
	run_until_done(5000, "the ping");
	ck_assert_int_eq(b.calls, 1);	/* still the duplicate's only */
	memset(seen, 0, sizeof(seen));
	drain_count("ab", "g", seen, 8);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(seen[i], 0);
	ferry_async_free(a);
}
END_TEST

/* A batch larger than a frame, into a group that fills up: the first
 * frame is stored, the second refused as a whole (E_FULL), and the
 * callbacks say which messages are which. */
START_TEST(publish_batch_refused_part_way)
{
	struct ferry_pub_msg m[8];
	struct batch b = { .want = 2 };
	struct ferry_group_stats *rows;
	static char body[8][3000];
	struct ferry_async *a;
	size_t n, i, split;
	int st;

	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_cleanup(&d);
	ferryd_start(&d, "--max-frame-size", "16384", "--max-message-size",
	    "4096", NULL);
	a = async_connect("batch", &st);
	make_group("full", 6);
	memset(m, 0, sizeof(m));
	for (i = 0; i < 8; i++) {
		memset(body[i], 'a' + (int)i, sizeof(body[i]));
		m[i].body = body[i];
		m[i].len = sizeof(body[i]);
	}
	ck_assert_int_eq(ferry_async_publish_batch(a, "full", m, 8, on_batch,
	    &b), 0);
	run_until_done(5000, "both frames' confirms");
	ck_assert_int_eq(b.calls, 2);
	/* Every message in exactly one frame; a stored head, then the
	 * refused rest. */
	for (split = 0; split < 8 && b.err[split] == 0; split++)
		;
	ck_assert_uint_gt(split, 0);
	ck_assert_uint_le(split, 6);
	for (i = 0; i < 8; i++) {
		ck_assert_int_eq(b.covered[i], 1);
		ck_assert_int_eq(b.err[i], i < split ? 0 : FERRY_EFULL);
	}
	/* What the callbacks said is what the group holds. */
	{
		struct ferry *f = fc_connect(d.port, "probe");

		ck_assert_int_eq(ferry_stats(f, "full", &rows, &n), 0);
		for (i = 0; i < n; i++)
			if (strcmp(rows[i].group, "g") == 0)
				ck_assert_uint_eq(rows[i].ready, split);
		ferry_stats_free(rows);
		ferry_close(f);
	}
	ferry_async_free(a);
}
END_TEST

/* --- Administration ------------------------------------------------------ */

/* What a deletion and the subscription it ends said. */
struct deleted {
	int subscribed, sub_err;	/* the subscribe's callback */
	int calls, err;			/* the delete's callback */
	int errors, e_err;		/* the error callback */
	uint64_t e_sid;
	int msgs;
};

static void
del_done(struct ferry_async *a, int err, void *arg)
{
	struct deleted *x = arg;

	x->calls++;
	x->err = err;
	if (x->errors > 0)
		finish();
}

static void
del_error(struct ferry_async *a, const struct ferry_async_error *e,
    void *arg)
{
	struct deleted *x = arg;

	x->errors++;
	x->e_err = e->err;
	x->e_sid = e->sid;
	if (x->calls > 0)
		finish();
}

static void
del_msg(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	((struct deleted *)arg)->msgs++;
}

/* The subscribe's answer; its arg is its deliveries' too. */
static void
del_subscribed(struct ferry_async *a, int err, void *arg)
{
	struct deleted *x = arg;

	x->subscribed++;
	x->sub_err = err;
	finish();
}

/* The groups of topic that ferry_stats() lists (its backlog row not
 * counted). */
static int
topic_groups(struct ferry *f, const char *topic)
{
	struct ferry_group_stats *rows;
	size_t i, n = 0;
	int r = ferry_stats(f, topic, &rows, &n), groups = 0;

	if (r == FERRY_ENOTFOUND)
		return 0;
	ck_assert_int_eq(r, 0);
	for (i = 0; i < n; i++)
		groups += rows[i].group[0] != '\0';
	ferry_stats_free(rows);
	return groups;
}

/* ferry_async_delete(): a group with its queue and its member, then a
 * whole topic; refusals to the callback, bad names returned at once. */
START_TEST(delete_group_and_topic)
{
	struct ferry_async_opts o = { .name = "admin",
	    .on_error = del_error };
	struct ferry_sub_opts so = { .group = "g", .prefetch = 1 };
	struct ferry *f = fc_connect(d.port, "pub");
	struct ferry_async *a;
	struct deleted x;
	uint64_t sid;
	int st = 0;

	memset(&x, 0, sizeof(x));
	o.arg = &x;
	a = ferry_async_connect(base, "127.0.0.1", d.port, &o);
	ck_assert_ptr_nonnull(a);
	make_group("adel", 0);
	ck_assert_int_eq(ferry_async_subscribe(a, "adel", &so, del_msg,
	    del_subscribed, &x, &sid), 0);
	run_until_done(5000, "the subscribe");
	ck_assert_int_eq(x.subscribed, 1);
	ck_assert_int_eq(x.sub_err, 0);
	fc_pub(f, "adel", "one");
	fc_pub(f, "adel", "two");
	fc_sub(f, "adel", "other", 1, 0, 0);
	ck_assert_int_eq(topic_groups(f, "adel"), 2);

	/* The group goes, with what it held; its member is told. */
	ck_assert_int_eq(ferry_async_delete(a, "adel", "g", del_done, &x), 0);
	run_until_done(5000, "the delete and E_DELETED");
	ck_assert_int_eq(x.calls, 1);
	ck_assert_int_eq(x.err, 0);
	ck_assert_int_eq(x.errors, 1);
	ck_assert_int_eq(x.e_err, FERRY_EDELETED);
	ck_assert_uint_eq(x.e_sid, sid);
	ck_assert_int_eq(topic_groups(f, "adel"), 1);
	{
		struct ferry_msg *m;

		ck_assert_int_eq(ferry_peek(f, "adel", "g", &m),
		    FERRY_ENOTFOUND);
	}

	/* Deleting it again: the broker's refusal, to the callback. */
	memset(&x, 0, sizeof(x));
	x.errors = 1;		/* no E_DELETED to wait for */
	ck_assert_int_eq(ferry_async_delete(a, "adel", "g", del_done, &x), 0);
	run_until_done(5000, "the second delete");
	ck_assert_int_eq(x.calls, 1);
	ck_assert_int_eq(x.err, FERRY_ENOTFOUND);

	/* Bad arguments: nothing sent, no callback. */
	ck_assert_int_eq(ferry_async_delete(a, NULL, "g", del_done, &x),
	    FERRY_EINVAL);
	ck_assert_int_eq(ferry_async_delete(a, "bad topic", NULL, del_done,
	    &x), FERRY_EBADNAME);
	ck_assert_int_eq(ferry_async_delete(a, "adel", "bad group", del_done,
	    &x), FERRY_EBADNAME);

	/* The whole topic, without a callback; a ping after it is answered
	 * after it is done. */
	ck_assert_int_eq(ferry_async_delete(a, "adel", "", NULL, NULL), 0);
	st = 1;
	ck_assert_int_eq(ferry_async_ping(a, on_done_store, &st), 0);
	run_until_done(5000, "the ping");
	ck_assert_int_eq(st, 0);
	ck_assert_int_eq(x.calls, 1);	/* the bad ones never ran */
	ck_assert_int_eq(topic_groups(f, "adel"), 0);
	ck_assert_int_eq(ferry_delete(f, "adel", NULL), FERRY_ENOTFOUND);
	ferry_async_free(a);
	ferry_close(f);
}
END_TEST

/* --- Inspection ----------------------------------------------------------- */

/* The answers of the inspection callbacks, copied. */
struct seen {
	int err, calls;
	size_t n;
	uint64_t ready, inflight, members;	/* group g's stats row */
	uint64_t conns, topics;			/* broker */
	char id[FERRY_ID_MAX + 1], consumer[64], what[8][16];
	char body[16];
	uint64_t sid, lease;
};

static void
seen_stats(struct ferry_async *a, int err,
    const struct ferry_group_stats *rows, size_t n, void *arg)
{
	struct seen *s = arg;

	s->err = err;
	s->n = n;
	s->calls++;
	ck_assert(err == 0 || (rows == NULL && n == 0));
	for (size_t i = 0; i < n; i++)
		if (strcmp(rows[i].group, "g") == 0) {
			s->ready = rows[i].ready;
			s->inflight = rows[i].inflight;
			s->members = rows[i].members;
		}
	finish();
}

static void
seen_broker(struct ferry_async *a, int err,
    const struct ferry_broker_stats *bs, void *arg)
{
	struct seen *s = arg;

	s->err = err;
	s->calls++;
	if (bs != NULL) {
		s->conns = bs->conns;
		s->topics = bs->topics;
	}
	finish();
}

static void
seen_inflight(struct ferry_async *a, int err,
    const struct ferry_lease_info *rows, size_t n, void *arg)
{
	struct seen *s = arg;

	s->err = err;
	s->n = n;
	s->calls++;
	ck_assert(err == 0 || (rows == NULL && n == 0));
	if (n > 0) {
		snprintf(s->id, sizeof(s->id), "%s", rows[0].id);
		snprintf(s->consumer, sizeof(s->consumer), "%s",
		    rows[0].consumer);
	}
	finish();
}

static void
seen_trace(struct ferry_async *a, int err, const struct ferry_event *rows,
    size_t n, void *arg)
{
	struct seen *s = arg;

	s->err = err;
	s->n = n;
	s->calls++;
	ck_assert(err == 0 || (rows == NULL && n == 0));
	for (size_t i = 0; i < n && i < 8; i++)
		snprintf(s->what[i], sizeof(s->what[i]), "%s", rows[i].what);
	finish();
}

static void
seen_peek(struct ferry_async *a, int err, const struct ferry_msg *m,
    void *arg)
{
	struct seen *s = arg;

	s->err = err;
	s->calls++;
	ck_assert(err == 0 || m == NULL);
	if (m != NULL) {
		snprintf(s->id, sizeof(s->id), "%s", m->id);
		snprintf(s->body, sizeof(s->body), "%.*s", (int)m->len,
		    (const char *)m->body);
		s->sid = m->sid;
		s->lease = m->lease;
	}
	finish();
}

/* Run one inspection request (made by the caller) to its answer. */
static struct seen *
answered(struct seen *s, int r)
{
	ck_assert_int_eq(r, 0);
	run_until_done(5000, "an inspection's answer");
	ck_assert_int_eq(s->calls, 1);
	return s;
}

START_TEST(inspection)
{
	struct ferry_pub_opts po[3] = { { .id = "in-0" }, { .id = "in-1" },
	    { .id = "in-2" } };
	struct ferry *f = fc_connect(d.port, "holder");
	struct ferry_msg *m;
	struct seen s;
	int st;
	struct ferry_async *a = async_connect("inspect", &st);

	/* Three messages in group g; the first in flight with "holder". */
	fc_sub(f, "insp", "g", 1, 0, 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ferry_publish_sync(f, "insp", "body", 4,
		    &po[i], NULL), 0);
	m = fc_next(f, 5000);
	ck_assert_str_eq(m->id, "in-0");

	memset(&s, 0, sizeof(s));
	answered(&s, ferry_async_stats(a, "insp", seen_stats, &s));
	ck_assert_int_eq(s.err, 0);
	ck_assert_uint_eq(s.ready, 2);
	ck_assert_uint_eq(s.inflight, 1);
	ck_assert_uint_eq(s.members, 1);

	memset(&s, 0, sizeof(s));
	answered(&s, ferry_async_stats_broker(a, seen_broker, &s));
	ck_assert_int_eq(s.err, 0);
	ck_assert_uint_ge(s.conns, 2);
	ck_assert_uint_ge(s.topics, 1);

	memset(&s, 0, sizeof(s));
	answered(&s, ferry_async_inflight(a, "insp", "g", seen_inflight, &s));
	ck_assert_int_eq(s.err, 0);
	ck_assert_uint_eq(s.n, 1);
	ck_assert_str_eq(s.id, "in-0");
	ck_assert_str_eq(s.consumer, "holder");

	memset(&s, 0, sizeof(s));
	answered(&s, ferry_async_trace(a, "in-0", seen_trace, &s));
	ck_assert_int_eq(s.err, 0);
	ck_assert_uint_ge(s.n, 2);
	ck_assert_str_eq(s.what[0], "published");
	ck_assert_str_eq(s.what[1], "delivered");

	memset(&s, 0, sizeof(s));
	answered(&s, ferry_async_peek(a, "insp", "g", seen_peek, &s));
	ck_assert_int_eq(s.err, 0);
	ck_assert_str_eq(s.id, "in-1");
	ck_assert_str_eq(s.body, "body");
	ck_assert_uint_eq(s.sid, 0);
	ck_assert_uint_eq(s.lease, 0);

	/* A topic that does not exist has no rows: not an error
	 * (PROTOCOL.md, STATS). */
	memset(&s, 0, sizeof(s));
	s.n = 99;
	answered(&s, ferry_async_stats(a, "nosuch", seen_stats, &s));
	ck_assert_int_eq(s.err, 0);
	ck_assert_uint_eq(s.n, 0);
	/* What else is not there: the broker's refusal, no rows. */
	memset(&s, 0, sizeof(s));
	answered(&s, ferry_async_inflight(a, "insp", "nosuch", seen_inflight,
	    &s));
	ck_assert_int_eq(s.err, FERRY_ENOTFOUND);
	memset(&s, 0, sizeof(s));
	answered(&s, ferry_async_trace(a, "never-published", seen_trace, &s));
	ck_assert_int_eq(s.err, FERRY_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(ferry_async_errstr(a), "NOTFOUND"));
	memset(&s, 0, sizeof(s));
	answered(&s, ferry_async_peek(a, "nosuch", NULL, seen_peek, &s));
	ck_assert_int_eq(s.err, FERRY_ENOTFOUND);
	ck_assert_int_eq(ferry_async_err(a), 0);	/* still usable */

	/* Bad arguments: refused at once, no callback. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(ferry_async_stats(a, "insp", NULL, &s),
	    FERRY_EINVAL);
	ck_assert_int_eq(ferry_async_peek(a, NULL, NULL, seen_peek, &s),
	    FERRY_EINVAL);
	ck_assert_int_eq(ferry_async_inflight(a, "bad topic", NULL,
	    seen_inflight, &s), FERRY_EBADNAME);
	ck_assert_int_eq(ferry_async_trace(a, "", seen_trace, &s),
	    FERRY_EINVAL);
	st = 1;
	ck_assert_int_eq(ferry_async_ping(a, on_done_store, &st), 0);
	run_until_done(5000, "the ping");
	ck_assert_int_eq(s.calls, 0);

	/* A query waiting when the handle is freed is told so. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(ferry_async_stats(a, NULL, seen_stats, &s), 0);
	ferry_async_free(a);
	ck_assert_int_eq(s.calls, 1);
	ck_assert_int_eq(s.err, FERRY_ECLOSED);
	ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
	ferry_msg_free(m);
	ferry_close(f);
}
END_TEST

/* --- Connection failures and async errors ----------------------------- */

struct life {
	int statuses[8];
	int sub_err, confirm_err, confirms, msgs;
	struct ferry_async_error e;
	int errors;
	char port[16];
};

static void
life_status(struct ferry_async *a, int st, void *arg)
{
	struct life *l = arg;

	l->statuses[st]++;
	if (st == FERRY_ASYNC_FAILED)
		finish();
}

static void
life_error(struct ferry_async *a, const struct ferry_async_error *e,
    void *arg)
{
	struct life *l = arg;

	l->e = *e;
	l->errors++;
	finish();
}

static void
life_subscribed(struct ferry_async *a, int err, void *arg)
{
	((struct life *)arg)->sub_err = err;
}

static void
life_confirm(struct ferry_async *a, const struct ferry_confirm *c,
    void *arg)
{
	struct life *l = arg;

	l->confirms++;
	l->confirm_err = c->err;
	finish();
}

static void
life_msg(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	struct life *l = arg;

	l->msgs++;
	ck_assert_str_eq(m->body, "early");
	/* Twice: the second ack's lease is settled already, refused by the
	 * broker without a request id: an asynchronous error. */
	ck_assert_int_eq(ferry_async_ack(a, m->sid, m->lease, NULL, NULL), 0);
	ck_assert_int_eq(ferry_async_ack(a, m->sid, m->lease + 1000, NULL,
	    NULL), 0);
}

static void
start_ferryd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct life *l = arg;
	char *extra[] = { "--port", l->port, NULL };

	ck_assert_int_eq(ferryd_try_start(&d, extra, NULL), 0);
}

START_TEST(first_connect_retried_and_async_errors)
{
	struct ferry_reconnect_opts ro = { .max_time_ms = 10000,
	    .base_ms = 50 };
	struct ferry_async_opts o = { .name = "early", .reconnect = &ro,
	    .on_status = life_status, .on_error = life_error };
	struct timeval later = { 0, 300000 };
	struct event *start;
	struct ferry_async *a;
	struct life l;

	memset(&l, 0, sizeof(l));
	l.sub_err = 1;
	snprintf(l.port, sizeof(l.port), "%d", d.port);
	o.arg = &l;
	ck_assert_int_eq(ferryd_stop(&d), 0);
	/* Nothing listens yet: the handle keeps trying, and what was asked
	 * meanwhile goes out once it is connected. */
	a = ferry_async_connect(base, "127.0.0.1", d.port, &o);
	ck_assert_int_eq(ferry_async_err(a), 0);
	ck_assert_int_eq(ferry_async_subscribe(a, "early", NULL, life_msg,
	    life_subscribed, &l, NULL), 0);
	ck_assert_int_eq(ferry_async_publish(a, "early", "early", 5, NULL,
	    life_confirm, &l), 0);
	start = evtimer_new(base, start_ferryd_cb, &l);
	evtimer_add(start, &later);
	/* The confirm (once durable) and the stale ack's error, in either
	 * order. */
	run_until_done(10000, "the confirm or the stale ack's error");
	if (l.confirms == 0 || l.errors == 0)
		run_until_done(10000, "the confirm and the error");
	ck_assert_int_eq(l.statuses[FERRY_ASYNC_CONNECTED], 1);
	ck_assert_int_eq(l.statuses[FERRY_ASYNC_FAILED], 0);
	ck_assert_int_eq(l.sub_err, 0);
	ck_assert_int_eq(l.confirms, 1);
	ck_assert_int_eq(l.confirm_err, 0);
	ck_assert_int_eq(l.msgs, 1);
	ck_assert_int_eq(l.errors, 1);
	ck_assert_int_eq(l.e.err, FERRY_ESTALE);
	event_free(start);
	ferry_async_free(a);
}
END_TEST

START_TEST(reconnect_gives_up)
{
	struct ferry_reconnect_opts ro = { .max_attempts = 3, .base_ms = 20 };
	struct ferry_async_opts o = { .name = "giveup", .reconnect = &ro,
	    .on_status = life_status };
	struct ferry_async *a;
	struct life l;
	int st = 1;

	memset(&l, 0, sizeof(l));
	o.arg = &l;
	a = ferry_async_connect(base, "127.0.0.1", d.port, &o);
	ck_assert_int_eq(ferry_async_ping(a, on_done_store, &st), 0);
	run_until_done(5000, "the ping");
	ck_assert_int_eq(st, 0);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ck_assert_int_eq(ferry_async_publish(a, "gone", "x", 1, NULL,
	    life_confirm, &l), 0);
	run_until_done(10000, "giving up");
	ck_assert_int_eq(l.statuses[FERRY_ASYNC_DISCONNECTED], 1);
	ck_assert_int_eq(l.statuses[FERRY_ASYNC_FAILED], 1);
	ck_assert_int_eq(l.confirms, 1);
	ck_assert_int_ne(l.confirm_err, 0);
	ck_assert_int_ne(ferry_async_err(a), 0);
	ck_assert_ptr_nonnull(strstr(ferry_async_errstr(a), "gave up"));
	/* Dead: requests are refused at once with its error. */
	ck_assert_int_eq(ferry_async_ping(a, on_done_store, &st),
	    ferry_async_err(a));
	ferry_async_free(a);
	ferryd_restart(&d);
}
END_TEST

/* --- ferry_msg_dup ----------------------------------------------------- */

START_TEST(msg_dup_keeps_everything)
{
	struct ferry_header h[2] = { { "k1", "v1" }, { "key-2", "" } };
	struct ferry_pub_opts po = { .id = "dup-me", .hdr = h, .nhdr = 2,
	    .reply_to = "answers", .corr = "c-42" };
	struct ferry *f = fc_connect(d.port, "dup");
	struct ferry_msg *m, *c;
	char copy[4096], again[4096];

	/* A dead letter: headers and a history, every field in use. */
	fc_sub(f, "dupt", "g", 1, 0, 1);
	ck_assert_int_eq(ferry_publish_sync(f, "dupt", "body\0bin", 8, &po,
	    NULL), 0);
	m = fc_next(f, 2000);
	ck_assert_int_eq(ferry_nack(f, m->sid, m->lease, 0, "boom",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	fc_sub(f, "dupt.dlq", NULL, 1, 0, 0);
	m = fc_next(f, 5000);
	ck_assert_uint_ge(m->nhdr, 2);
	ck_assert_uint_eq(m->nhist, 1);
	c = ferry_msg_dup(m);
	ck_assert_ptr_nonnull(c);
	/* Scribble over the original before freeing it: the copy must not
	 * point into it. */
	snprintf(copy, sizeof(copy), "%s|%s|%s|%s|%s|%s|%s", m->id, m->topic,
	    m->reply_to, m->corr, m->hdr[0].key, m->hist[0].cause,
	    m->hist[0].error);
	ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
	memset((char *)m->body, 'X', m->len);
	memset((char *)m->id, 'X', strlen(m->id));
	ferry_msg_free(m);
	ck_assert_uint_eq(c->len, 8);
	ck_assert_int_eq(memcmp(c->body, "body\0bin", 8), 0);
	ck_assert_str_eq(c->id, "dup-me");
	ck_assert_str_eq(c->topic, "dupt.dlq");
	ck_assert_str_eq(c->reply_to, "answers");
	ck_assert_str_eq(c->corr, "c-42");
	ck_assert(fc_has_hdr(c, "k1", "v1"));
	ck_assert(fc_has_hdr(c, "key-2", ""));
	ck_assert_str_eq(c->hist[0].cause, "nacked");
	ck_assert_str_eq(c->hist[0].error, "boom");
	snprintf(again, sizeof(again), "%s|%s|%s|%s|%s|%s|%s", c->id,
	    c->topic, c->reply_to, c->corr, c->hdr[0].key, c->hist[0].cause,
	    c->hist[0].error);
	ck_assert_str_eq(again, copy);
	ferry_msg_free(c);
	ck_assert_ptr_null(ferry_msg_dup(NULL));
	ferry_close(f);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("async");
	TCase *tc = tcase_create("async");
	SRunner *sr;
	int failed;

	signal(SIGPIPE, SIG_IGN);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, publish_confirmed_and_fire_and_forget);
	tcase_add_test(tc, subscribe_ack_nack_touch);
	tcase_add_test(tc, request_reply);
	tcase_add_test(tc, reconnect_after_kill9);
	tcase_add_test(tc, free_inside_callbacks);
	tcase_add_test(tc, reply_exec_slow_command);
	tcase_add_test(tc, reply_exec_back_to_back);
	tcase_add_test(tc, first_connect_retried_and_async_errors);
	tcase_add_test(tc, reconnect_gives_up);
	tcase_add_test(tc, msg_dup_keeps_everything);
	tcase_add_test(tc, publish_batch);
	tcase_add_test(tc, publish_batch_refused_part_way);
	tcase_add_test(tc, inspection);
	tcase_add_test(tc, delete_group_and_topic);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
