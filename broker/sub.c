/*
 * sub.c - a member's credit, leases and lease deadlines.
 */
#include <errno.h>
#include <stdlib.h>

#include <event2/event.h>

#include "core.h"
#include "clock.h"
#include "conn.h"
#include "group.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "store.h"
#include "sub.h"
#include "trace.h"
#include "topic.h"

/*
 * An at-most-once member has no acks to bound it, so the size of its
 * connection's output is its credit: deliveries pause above this many
 * queued bytes and resume when the socket drains.
 */
#define AMO_WINDOW (256 * 1024)

static void lease_cb(evutil_socket_t fd, short what, void *arg);

struct sub *
sub_new(struct conn *c, struct group *g, uint64_t sid, uint32_t prefetch,
    uint32_t mode, uint32_t ack_timeout_ms)
{
	struct sub *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (!(s->timer = evtimer_new(c->b->base, lease_cb, s))) {
		free(s);
		return NULL;
	}
	s->sid = sid;
	s->conn = c;
	s->group = g;
	s->prefetch = prefetch;
	s->mode = (uint8_t)mode;
	s->ack_timeout_ms = ack_timeout_ms;
	list_init(&s->leases);
	list_add_tail(&g->members, &s->glink);
	g->nmembers++;
	list_add_tail(&c->subs, &s->clink);
	return s;
}

void
sub_free(struct sub *s, int cause)
{
	struct group *g = s->group;
	struct qent *e;

	/* Leave the member ring first so nothing is delivered back to us. */
	if (g->rr == &s->glink)
		g->rr = s->glink.next;
	list_del(&s->glink);
	g->nmembers--;
	list_del(&s->clink);
	/* From the newest: each released one goes back to its place near
	 * the head (group_return()), found at once in this order. */
	while ((e = list_last(&s->leases, struct qent, link))) {
		if (cause >= 0) {
			group_return(e, cause);
		} else {
			sub_lease_end(s, e);
			qent_free(e);
		}
	}
	event_free(s->timer);
	free(s);
	if (g->ephemeral && !g->nmembers && !g->deleting)
		topic_group_delete(g);
	else if (cause >= 0)
		group_mark_due(g);
}

int
sub_has_credit(const struct sub *s)
{
	const struct conn *c = s->conn;
	size_t out;

	if (conn_is_closing(c))
		return 0;
	out = conn_outlen(c);
	if (s->mode == FY_MODE_AMO)
		return out < AMO_WINDOW;
	return s->inflight < s->prefetch && out < c->b->opt->max_output;
}

static void
arm(struct sub *s)
{
	struct qent *head = list_first(&s->leases, struct qent, link);
	uint64_t now, due, ms;
	struct timeval tv;

	if (!head || evtimer_pending(s->timer, NULL))
		return;
	now = clock_mono_ms();
	due = sub_lease_deadline(head);
	ms = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

/* The place of e in g (struct qside.order): kept from its first delivery
 * if it was out before, else the next one. */
static uint32_t
first_place(struct group *g, const struct qent *e)
{
	const struct qside *q = qent_side(e);

	if (q && q->order)
		return q->order;
	if (++g->next_order == 0)
		g->next_order = 1;
	return g->next_order;
}

int
sub_deliver(struct sub *s, struct qent *e)
{
	struct group *g = s->group;
	struct lease_table *lt = &g->b->leases;
	struct msg *m = qent_msg(e);
	char idbuf[MSG_ID_LEN + 1];
	struct lease_slot *slot;
	struct fy_frame f;
	uint64_t token;
	int r;

	if ((r = qent_frame(e, topic_str(g->topic), &f, idbuf)) < 0)
		return r;	/* logged; stays at the head of the queue */
	f.msg.sid = s->sid;

	trace_add(&g->b->trace, clock_turn_wall_ms(), msg_idh(m),
	    TR_DELIVERED, g->topic->sym, g->sym, s->conn->sym, f.msg.attempt);
	if (s->mode == FY_MODE_AMO) {
		/* Settled on delivery: its settle record must be written
		 * before the delivery leaves, or a restart would deliver it
		 * again; a journal that cannot write would hold the record
		 * back, so nothing is settled meanwhile. */
		if ((e->flags & QE_DURABLE) && store_error(g->b) < 0)
			return -EAGAIN;
		if ((r = conn_send_msg(s->conn, &f, m)) < 0)
			return r;
		g->st.delivered++;
		g->st.amo++;
		conn_gate(s->conn, store_settle(g->b, e));
		return 0;
	}
	if (!(token = lease_alloc(lt, e)))
		return -ENOMEM;
	f.msg.lease = token;
	if ((r = conn_send_msg(s->conn, &f, m)) < 0) {
		lease_free(lt, token);
		return r;
	}
	slot = lease_slot(lt, lease_idx(token));
	slot->owner = s;
	slot->order = first_place(g, e);
	/* The turn's time: the delivery leaves at the end of this turn, so
	 * even a fresh reading starts the lease before the consumer has it.
	 * Starting it when the turn began makes it at most a turn shorter
	 * (typically well under the clock's 1 ms granularity); lease_cb()
	 * reads the precise clock, so it never fires earlier than that. */
	slot->since = clock_turn_mono_ms();
	slot->deadline = slot->since + s->ack_timeout_ms;
	qent_set_lease_slot(e, lease_idx(token));
	e->flags |= QE_LEASED;
	list_add_tail(&s->leases, &e->link);
	s->inflight++;
	g->ninflight++;
	g->st.delivered++;
	arm(s);
	return 0;
}

struct qent *
sub_lease_find(const struct sub *s, uint64_t lease)
{
	const struct lease_table *lt = &s->group->b->leases;
	struct qent *e = lease_find(lt, lease);

	return e && lease_slot(lt, lease_idx(lease))->owner == s ? e : NULL;
}

struct sub *
sub_holding(const struct qent *e)
{
	if (!(e->flags & QE_LEASED))
		return NULL;
	return lease_slot(&e->group->b->leases, qent_lease_slot(e))->owner;
}

uint64_t
sub_lease_token(const struct qent *e)
{
	return lease_token(&e->group->b->leases, qent_lease_slot(e));
}

uint64_t
sub_lease_deadline(const struct qent *e)
{
	return lease_slot(&e->group->b->leases,
	    qent_lease_slot(e))->deadline;
}

void
sub_lease_end(struct sub *s, struct qent *e)
{
	struct qside *q = qent_side(e);

	/* An entry that goes back keeps its place (it has a side by now:
	 * its failure is in its history). */
	if (q)
		q->order = lease_slot(&s->group->b->leases,
		    qent_lease_slot(e))->order;
	list_del(&e->link);
	lease_free(&s->group->b->leases, sub_lease_token(e));
	qent_set_lease_slot(e, 0);
	e->flags &= (uint16_t)~QE_LEASED;
	s->inflight--;
	s->group->ninflight--;
	/* The timer stays armed; it re-arms for the new head when it fires. */
}

void
sub_touch(struct sub *s, struct qent *e)
{
	list_del(&e->link);
	lease_slot(&s->group->b->leases, qent_lease_slot(e))->deadline =
	    clock_mono_ms() + s->ack_timeout_ms;
	list_add_tail(&s->leases, &e->link);
	arm(s);
}

static void
lease_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sub *s = arg;
	struct group *g = s->group;
	uint64_t now = clock_mono_ms();
	struct qent *e;
	int n = 0;

	while ((e = list_first(&s->leases, struct qent, link)) &&
	    sub_lease_deadline(e) <= now) {
		group_return(e, CAUSE_TIMEOUT);
		n++;
	}
	if (n) {
		s->stalled = 1;
		log_debug_kv(log_kv(g->topic->name, g->name, s->conn->peer),
		    "%s: %d lease(s) expired on %s/%s", s->conn->name,
		    n, g->topic->name, g->name);
	}
	arm(s);
	if (n)
		group_mark_due(g);
}
