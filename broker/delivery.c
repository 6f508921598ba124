/*
 * delivery.c - getting queued messages to members, and what happens when a
 * delivery fails: the pump (round-robin among members with credit), the
 * retry policy (backoff, max_attempts), dead-lettering, TTL expiry and the
 * overflow policy.
 *
 * Every decision here becomes journal records through the store, so that
 * replay applies the outcome without deciding again; nothing below this
 * file delivers (apply() only marks groups due: group_mark_due()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core.h"
#include "clock.h"
#include "conn.h"
#include "delivery.h"
#include "group.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "store.h"
#include "sub.h"
#include "topic.h"
#include "trace.h"

/*
 * Move e's message to "<topic>.dlq": publish the copy (with its history),
 * then remove the original with an ack record.  Copy before delete, each a
 * record of its own: replay never decides to dead-letter, and a crash in
 * between leaves a duplicate rather than a loss.  If the copy cannot be
 * stored, e stays in its group (delayed) and is retried on its next
 * failure.
 */
static int
dead_letter(struct core *b, struct qent *e)
{
	struct group *g = e->group;
	struct msg *m = qent_msg(e);
	char idbuf[MSG_ID_LEN + 1];
	struct fy_str id = msg_id(m, idbuf);
	struct group_dlq d;
	struct topic *t;
	uint64_t seq;
	int r;

	if ((r = group_dlq_prepare(e, &d)) == 0) {
		if (!(t = topic_get(b, d.topic, d.topic_len)))
			r = -ENOMEM;
		else
			r = store_publish(b, t, &d.pm, id.p, id.len, m->ts,
			    d.hist, d.nhist, NULL, 1, &seq);
	}
	group_dlq_release(&d);
	if (r < 0) {
		char kv[2 * FY_NAME_MAX + 32];

		snprintf(kv, sizeof(kv), "topic=%s group=%s", g->topic->name,
		    g->name);
		log_warn_kv(kv, "cannot dead-letter message %s of %s/%s: %s; "
		    "it stays queued", id.p, g->topic->name, g->name,
		    strerror(-r));
		return r;
	}
	g->st.dead_lettered++;
	trace_add(&b->trace, clock_wall_ms(), msg_idh(m), TR_DEAD_LETTERED,
	    g->topic->sym, g->sym, 0, e->attempts);
	log_debug_kv(log_kv(g->topic->name, g->name, NULL), "message %s of "
	    "%s/%s dead-lettered after %u attempts",
	    id.p, g->topic->name, g->name, (unsigned)e->attempts);
	store_ack(b, e);
	return 0;
}

/* Remove a waiting entry with an ack record, without an ack. */
static void
drop(struct core *b, struct qent *e)
{
	e->group->st.dropped++;
	trace_add(&b->trace, clock_wall_ms(), msg_idh(qent_msg(e)), TR_DROPPED,
	    e->group->topic->sym, e->group->sym, 0, e->attempts);
	store_ack(b, e);
}

void
delivery_expire(struct core *b, struct qent *e)
{
	struct group *g = e->group;
	char idbuf[MSG_ID_LEN + 1];

	g->st.expired++;
	trace_add(&b->trace, clock_wall_ms(), msg_idh(qent_msg(e)),
	    TR_EXPIRED, g->topic->sym, g->sym, 0, e->attempts);
	/* A dead letter is never dead-lettered again: there is no
	 * "<topic>.dlq.dlq" to fill; the group's TTL says to let it go. */
	if (g->conf.ttl_drop || !(e->flags & QE_DURABLE) || g->topic->is_dlq) {
		log_debug_kv(log_kv(g->topic->name, g->name, NULL), "message "
		    "%s of %s/%s expired: dropped",
		    msg_id(qent_msg(e), idbuf).p, g->topic->name, g->name);
		drop(b, e);
		return;
	}
	qent_hist_add(e, CAUSE_EXPIRED, clock_wall_ms(), "", 0, NULL, 0);
	dead_letter(b, e);
}

/* The entry an overflowing group gives up: its oldest waiting one. */
static struct qent *
oldest_waiting(struct group *g)
{
	struct qent *e = list_first(&g->ready, struct qent, link);
	struct hnode *n;

	if (e)
		return e;
	n = heap_top(&g->delayed);
	return n ? qent_of_dn(n) : NULL;
}

int
delivery_make_room(struct core *b, struct group *g, uint64_t bytes)
{
	struct qent *e;
	int r;

	while (!group_has_room(g, 1, bytes)) {
		if (g->conf.overflow != FY_OVERFLOW_DLQ_OLDEST ||
		    !(e = oldest_waiting(g)))
			return -ENOSPC;
		qent_hist_add(e, CAUSE_OVERFLOW, clock_wall_ms(), "", 0,
		    NULL, 0);
		trace_add(&b->trace, clock_wall_ms(), msg_idh(qent_msg(e)),
		    TR_OVERFLOW, g->topic->sym, g->sym, 0, e->attempts);
		g->st.overflow++;
		/* As for expiry: a dead letter pushed out is dropped. */
		if (!(e->flags & QE_DURABLE) || g->topic->is_dlq) {
			drop(b, e);
			continue;
		}
		if ((r = dead_letter(b, e)) < 0)
			return r;
	}
	return 0;
}

void
delivery_fail(struct core *b, struct qent *e, int cause, const char *err,
    size_t err_len, int64_t delay_ms)
{
	struct sub *holder = sub_holding(e);
	const char *who = holder ? holder->conn->name : "";
	uint64_t delay, at = clock_wall_ms();
	struct qside *q;

	/* The jitter is drawn here and journaled, so replay is exact. */
	if (cause == CAUSE_RELEASED)
		delay = 0;	/* no fault: no backoff */
	else if (delay_ms >= 0)
		delay = (uint64_t)delay_ms;
	else
		delay = group_backoff_ms(b->opt->retry_base_ms,
		    b->opt->retry_max_ms, (uint32_t)e->attempts + 1u,
		    turn_rand(&b->turn));
	trace_add(&b->trace, at, msg_idh(qent_msg(e)), TR_TIMEOUT + cause,
	    e->group->topic->sym, e->group->sym,
	    holder ? holder->conn->sym : 0, (uint32_t)e->attempts + 1);
	trace_set_err(&b->trace, err, err_len);
	store_fail(b, e, cause, who, err, err_len, delay);
	q = qent_side(e);
	if (e->group->max_attempts && e->attempts >= e->group->max_attempts)
		dead_letter(b, e);
	else if (q && q->tn.key && !hnode_queued(&q->tn) &&
	    q->tn.key <= clock_mono_ms())
		delivery_expire(b, e);	/* its TTL ran out while in flight */
	else if (q && q->tn.key && !hnode_queued(&q->tn) &&
	    heap_push(&e->group->ttlq, &q->tn) == 0)
		group_arm_ttl(e->group);
}

/*
 * Next member with credit in round-robin order, or NULL.  Members stalled
 * by a lease timeout come last: only when no other member can take it.
 */
static struct sub *
pick(struct group *g)
{
	struct list *pos = g->rr;
	struct sub *stalled = NULL;

	for (uint32_t i = 0; i <= g->nmembers; i++) {
		if (pos == &g->members) {
			pos = pos->next;
			continue;
		}
		struct sub *s = list_entry(pos, struct sub, glink);

		pos = pos->next;
		if (!sub_has_credit(s))
			continue;
		if (s->stalled) {
			if (!stalled)
				stalled = s;
			continue;
		}
		g->rr = pos;
		return s;
	}
	return stalled;
}

/* ---- flow control ---- */

/* Consumers that took nothing for this long are not waited for: the group
 * accumulates instead of stopping its publishers. */
#define FLOW_STALL_MS 1000
/* A paused publisher's group is checked again this often. */
#define FLOW_RECHECK_MS 100

static void
flow_release(struct conn *c)
{
	list_del(&c->blink);
	c->blocked_on = NULL;
	if (c->flow_timer)
		evtimer_del(c->flow_timer);
	conn_resume(c);
}

/*
 * The time flow control goes by: libevent's time of this loop turn, so
 * that noting a pump's progress costs no clock read per pump (a fan-out
 * pumps every group after every publish).  Milliseconds.
 */
static uint64_t
flow_now(const struct core *b)
{
	struct timeval tv;

	if (event_base_gettimeofday_cached(b->base, &tv) < 0)
		return clock_mono_ms();
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* Should publishers of g wait?  Past the high-water mark, while members
 * are consuming. */
static int
flow_over(const struct group *g, uint64_t now)
{
	uint32_t hw = g->b->opt->flow_high_water;

	return hw && g->nready >= hw && g->nmembers && !g->ephemeral &&
	    now - g->last_delivery < FLOW_STALL_MS;
}

static int
flow_under(const struct group *g)
{
	return g->nready <= g->b->opt->flow_high_water / 2;
}

static void
flow_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct group *g = c->blocked_on;
	struct timeval tv = {0, FLOW_RECHECK_MS * 1000};

	if (!g)
		return;
	if (flow_under(g) || !flow_over(g, flow_now(g->b)))
		flow_release(c);
	else
		evtimer_add(c->flow_timer, &tv);
}

void
delivery_flow_check(struct conn *c, struct topic *t, struct group *only)
{
	uint32_t hw = c->b->opt->flow_high_water;
	struct timeval tv = {0, FLOW_RECHECK_MS * 1000};
	struct group *g = NULL;
	struct list *pos;
	uint64_t now;

	if (!hw || c->blocked_on || conn_is_closing(c))
		return;
	/* The group furthest behind: released once it is down to half, the
	 * others (faster) are lower by then, so the publisher is not
	 * paused again at once for the next one. */
	if (only) {
		g = only->nready >= hw ? only : NULL;
	} else {
		list_for_each(pos, &t->groups) {
			struct group *x = list_entry(pos, struct group, tlink);

			if (x->nready >= hw && !x->ephemeral &&
			    (!g || x->nready > g->nready))
				g = x;
		}
	}
	if (!g || !flow_over(g, (now = flow_now(c->b))))
		return;
	if (!c->flow_timer &&
	    !(c->flow_timer = evtimer_new(c->b->base, flow_timer_cb, c)))
		return;		/* out of memory: just do not pause */
	list_add_tail(&g->blocked, &c->blink);
	c->blocked_on = g;
	evtimer_add(c->flow_timer, &tv);
	conn_pause(c);
}

void
delivery_flow_forget(struct conn *c)
{
	if (c->blocked_on) {
		list_del(&c->blink);
		c->blocked_on = NULL;
	}
	if (c->flow_timer) {
		event_free(c->flow_timer);
		c->flow_timer = NULL;
	}
}

/* g delivered: publishers it paused go on once half the backlog went. */
static void
flow_progress(struct group *g)
{
	struct conn *c;

	if (!g->b->opt->flow_high_water)
		return;
	g->last_delivery = flow_now(g->b);
	if (list_empty(&g->blocked) || !flow_under(g))
		return;
	while ((c = list_first(&g->blocked, struct conn, blink)))
		flow_release(c);
}

/* ---- slow consumers ---- */

/*
 * A member has caught up, ending its slow-consumer episode, when nothing
 * waits for it and nothing was dropped for it for this long: the kernel's
 * socket buffers take bursts from a listener that is stopped, which empty
 * the group for a moment without the listener reading anything.
 */
#define SLOW_QUIET_MS 1000

/*
 * An ephemeral group holds at most ephemeral_max_bytes: nothing in it is
 * journaled and it ends with its subscription, so past the bound its
 * oldest waiting messages are dropped rather than kept for a listener
 * that stopped reading (at most once allows it; NATS drops for a slow
 * consumer too).  Deliveries in flight stay: an at-least-once member
 * holds at most its prefetch.  Durable groups never come here: their
 * publishers are slowed (flow control) or refused (group limits).
 * Checked once a pump, after a publish has marked the group due: g->nbytes
 * is kept as entries come and go, so this costs nothing per message until
 * the group is over.
 */
static void
shed(struct group *g)
{
	struct sub *s = list_first(&g->members, struct sub, glink);
	struct qent *e;
	int n = 0;

	while (g->nbytes > g->shed_bytes && (e = oldest_waiting(g))) {
		if (g->slow == SLOW_NONE) {
			log_info_kv(log_kv(g->topic->name, g->name,
			    s ? s->conn->peer : NULL), "%s: slow consumer on "
			    "%s/%s: dropping its oldest messages above "
			    "ephemeral_max_bytes (%llu)",
			    s ? s->conn->name : "-", g->topic->name, g->name,
			    (unsigned long long)g->shed_bytes);
			g->slow = SLOW_UNTOLD;
		}
		if (g->slow == SLOW_UNTOLD)
			g->slow_n++;
		g->st.slow++;
		drop(g->b, e);
		n++;
	}
	if (n)
		g->slow_at = flow_now(g->b);
}

/* Tell s, before its next delivery, how many were dropped ahead of it. */
static void
slow_notice(struct group *g, struct sub *s)
{
	conn_send_err(s->conn, 0, FY_E_SLOW, s->sid, "slow consumer: %llu "
	    "messages dropped from %s/%s (ephemeral_max_bytes %llu)",
	    (unsigned long long)g->slow_n, g->topic->name, g->name,
	    (unsigned long long)g->shed_bytes);
	g->slow = SLOW_TOLD;
	g->slow_n = 0;
}

/* After a pump: drop what is over the bound; see if the member caught
 * up. */
static void
slow_check(struct group *g)
{
	struct sub *s;

	if (g->nbytes > g->shed_bytes)
		shed(g);
	if (g->slow == SLOW_NONE || !list_empty(&g->ready) ||
	    heap_top(&g->delayed))
		return;
	/* Everything waiting went (a bound below one message): the notice
	 * cannot wait for a next delivery. */
	if (g->slow == SLOW_UNTOLD && (s = pick(g)))
		slow_notice(g, s);
	else if (g->slow == SLOW_TOLD &&
	    flow_now(g->b) - g->slow_at >= SLOW_QUIET_MS)
		g->slow = SLOW_NONE;
}

void
delivery_pump(struct group *g)
{
	struct qent *e;
	struct sub *s;
	uint64_t before = g->nready;

	/* Delivering can close a connection, whose release pumps again.
	 * A draining broker hands out nothing new: it waits for acks. */
	if (g->pumping || g->b->draining)
		return;
	g->pumping = 1;
	while ((e = list_first(&g->ready, struct qent, link)) &&
	    (s = pick(g))) {
		/*
		 * Already failed max_attempts times: a crash tore the journal
		 * between its last failure and its dead-letter copy (three
		 * records written in one turn).  Finish that instead of
		 * delivering it once more.
		 */
		if (g->max_attempts && e->attempts >= g->max_attempts &&
		    (e->flags & QE_DURABLE) &&
		    dead_letter(g->b, e) == 0)
			continue;
		if (g->slow == SLOW_UNTOLD)
			slow_notice(g, s);
		list_del(&e->link);
		g->nready--;
		if (sub_deliver(s, e) < 0) {
			list_add_head(&g->ready, &e->link);
			g->nready++;
			break;
		}
	}
	if (g->shed_bytes)
		slow_check(g);
	g->pumping = 0;
	if (g->nready < before)
		flow_progress(g);
}

void
delivery_pump_due(struct core *b)
{
	struct group *g;

	while ((g = list_first(&b->pumpq, struct group, pumplink))) {
		list_del(&g->pumplink);
		delivery_pump(g);
	}
}

/* ---- what the groups below call back ---- */

static uint64_t
hook_lease_end(struct qent *e)
{
	struct sub *s = sub_holding(e);
	/* every lease of a member lasts its ack_timeout (sub.h) */
	uint64_t since = sub_lease_deadline(e) - s->ack_timeout_ms;

	sub_lease_end(s, e);
	return since;
}

static void
hook_expire(struct qent *e)
{
	delivery_expire(e->group->b, e);
}

/* A group is being deleted: its members are told, and end. */
static void
hook_evict(struct group *g)
{
	struct list *pos, *tmp;
	struct conn *c;

	while ((c = list_first(&g->blocked, struct conn, blink)))
		flow_release(c);

	list_for_each_safe(pos, tmp, &g->members) {
		struct sub *s = list_entry(pos, struct sub, glink);

		conn_send_err(s->conn, 0, FY_E_DELETED, s->sid,
		    "group %s/%s was deleted", g->topic->name, g->name);
		sub_free(s, -1);
	}
}

static void
hook_returned(struct qent *e, int cause)
{
	delivery_fail(e->group->b, e, cause, NULL, 0, -1);
}

static const struct group_hooks hooks = {
	.lease_end = hook_lease_end,
	.expire = hook_expire,
	.evict = hook_evict,
	.returned = hook_returned,
};

void
delivery_init(void)
{
	group_set_hooks(&hooks);
}
