/*
 * group.c - a group's queues: the ready FIFO, the delayed heap, the TTL
 * heap and their timers, and the state changes of acks and failures.
 * Choosing members and sending is delivery.c's; deciding to retry or
 * dead-letter is too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core.h"
#include "clock.h"
#include "group.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "topic.h"
#include "trace.h"

static void delay_cb(evutil_socket_t fd, short what, void *arg);
static void ttl_cb(evutil_socket_t fd, short what, void *arg);

static const struct group_hooks *hooks;

void
group_set_hooks(const struct group_hooks *h)
{
	hooks = h;
}

struct group *
group_new(struct topic *t, const char *name, size_t name_len,
    const struct group_conf *conf)
{
	struct group *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->b = t->b;
	g->topic = t;
	g->name = strndup(name, name_len);
	g->delay_ev = evtimer_new(t->b->base, delay_cb, g);
	g->ttl_ev = evtimer_new(t->b->base, ttl_cb, g);
	if (!g->name || !g->delay_ev || !g->ttl_ev) {
		free(g->name);
		if (g->delay_ev)
			event_free(g->delay_ev);
		if (g->ttl_ev)
			event_free(g->ttl_ev);
		free(g);
		return NULL;
	}
	g->conf = *conf;
	g->sym = trace_sym(&t->b->trace, name, name_len);
	list_init(&g->tlink);
	list_init(&g->ready);
	list_init(&g->members);
	list_init(&g->blocked);
	list_init(&g->pumplink);
	g->rr = &g->members;
	heap_init(&g->delayed);
	heap_init(&g->ttlq);
	g->ack_timeout_ms = conf->ack_timeout_ms;
	/* Dead-letter topics never dead-letter again; ephemeral groups are
	 * not durable, so they cannot hand a message to a durable one. */
	if (t->is_dlq || conf->ephemeral)
		g->conf.max_attempts = 0;
	g->max_attempts = g->conf.max_attempts;
	g->ephemeral = conf->ephemeral;
	/* Not journaled, gone with its subscription: bounded, so that a
	 * listener that stopped reading cannot pin memory (delivery.c). */
	if (conf->ephemeral)
		g->shed_bytes = t->b->opt->ephemeral_max_bytes;
	return g;
}

void
group_free(struct group *g)
{
	struct list *pos, *tmp;
	struct hnode *n;
	struct qent *e;

	if (!g)
		return;
	list_del(&g->pumplink);
	list_for_each_safe(pos, tmp, &g->ready) {
		e = list_entry(pos, struct qent, link);
		list_del(&e->link);
		qent_free(e);
	}
	while ((n = heap_pop(&g->delayed)))
		qent_free(qent_of_dn(n));
	heap_fini(&g->delayed);
	heap_fini(&g->ttlq);	/* its entries were freed above */
	event_free(g->delay_ev);
	event_free(g->ttl_ev);
	free(g->name);
	free(g);
}

static void
arm(struct event *ev, const struct hnode *top)
{
	uint64_t now, ms;
	struct timeval tv;

	if (!top)
		return;
	now = clock_mono_ms();
	ms = top->key > now ? top->key - now : 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	/* Re-adding moves the timer: cheap, only on heap-top changes. */
	evtimer_add(ev, &tv);
}

void
group_add(struct group *g, struct qent *e)
{
	const struct msg *m = qent_msg(e);
	uint64_t delay = msg_ext(m)->delay_ms;

	group_add_at(g, e, delay ? msg_mono(m) + (int64_t)delay : 0);
}

void
group_arm_ttl(struct group *g)
{
	arm(g->ttl_ev, heap_top(&g->ttlq));
}

/* A monotonic deadline as a heap key: one in the past is due now. */
static uint64_t
key_of(int64_t deadline, uint64_t mono)
{
	return deadline > (int64_t)mono ? (uint64_t)deadline : mono;
}

void
group_add_at(struct group *g, struct qent *e, int64_t not_before)
{
	const struct msg *m = qent_msg(e);
	uint64_t ttl = msg_ext(m)->ttl_ms ? msg_ext(m)->ttl_ms :
	    g->conf.ttl_ms;
	struct qside *q = NULL;
	uint64_t mono = 0;

	if (ttl > MSG_TIME_MAX)
		ttl = MSG_TIME_MAX;

	e->group = g;
	g->nheld++;
	g->nbytes += m->body_len;
	g->st.enqueued++;
	if (ttl || not_before) {
		mono = clock_mono_ms();
		/* A not-before already past needs no side: it is ready. */
		if (ttl || not_before > (int64_t)mono)
			q = qent_side_get(e);
	}
	/* No memory for a side or a heap that cannot grow: the entry is just
	 * not timed (no TTL, no delay) rather than lost. */
	if (ttl && q) {
		q->tn.key = key_of(msg_mono(m) + (int64_t)ttl, mono);
		if (heap_push(&g->ttlq, &q->tn) == 0 &&
		    heap_top(&g->ttlq) == &q->tn)
			arm(g->ttl_ev, &q->tn);
	}
	if (not_before > (int64_t)mono && q) {
		q->dn.key = (uint64_t)not_before;
		if (heap_push(&g->delayed, &q->dn) == 0) {
			if (heap_top(&g->delayed) == &q->dn)
				arm(g->delay_ev, &q->dn);
			return;
		}
	}
	list_add_tail(&g->ready, &e->link);
	g->nready++;
}

/* e is being freed (qent_free()'s hook): forget it in its group's
 * counters. */
static void
entry_gone(struct qent *e)
{
	struct group *g = e->group;
	struct qside *q = qent_side(e);

	g->nheld--;
	g->nbytes -= qent_msg(e)->body_len;
	if (q && hnode_queued(&q->tn))
		heap_remove(&g->ttlq, &q->tn);
}

int
group_has_room(const struct group *g, uint64_t n, uint64_t bytes)
{
	return (!g->conf.max_msgs || g->nheld + n <= g->conf.max_msgs) &&
	    (!g->conf.max_bytes || g->nbytes + bytes <= g->conf.max_bytes);
}

void
group_detach(struct qent *e)
{
	struct group *g = e->group;

	if (e->flags & QE_LEASED) {
		hooks->lease_end(e);
	} else if (qent_delayed(e)) {
		heap_remove(&g->delayed, &qent_side(e)->dn);
	} else {
		list_del(&e->link);
		g->nready--;
	}
}

void
group_evict(struct group *g)
{
	hooks->evict(g);
}

void
group_return(struct qent *e, int cause)
{
	hooks->returned(e, cause);
}

void
group_init(void)
{
	qent_set_gone_hook(entry_gone);
}

void
group_mark_due(struct group *g)
{
	struct core *b = g->b;

	if (!list_empty(&g->pumplink))
		return;
	/* The end-of-turn flush runs the delivery pump.  A queue that was
	 * not empty has asked for it already (it is drained only by the
	 * pump): a fan-out to many groups pays one event_active(), not one
	 * a group. */
	if (list_empty(&b->pumpq))
		turn_want_commit(&b->turn);
	list_add_tail(&b->pumpq, &g->pumplink);
}

void
group_ack(struct qent *e)
{
	struct group *g = e->group;
	/* A turn's time, like since (sub_deliver()): a histogram with
	 * buckets from 1 ms on loses nothing to it. */
	uint64_t since = hooks->lease_end(e), now = clock_turn_mono_ms();

	hist_observe(&g->st.ack_time, &hist_ack_bounds,
	    now > since ? (double)(now - since) / 1000 : 0);
	g->st.acked++;
	qent_free(e);
}

uint64_t
group_backoff_ms(uint32_t base_ms, uint32_t max_ms, uint32_t attempts,
    uint64_t rnd)
{
	uint64_t d = base_ms;

	for (uint32_t i = 1; i < attempts && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	if (d < 2)
		return d;
	return d / 2 + rnd % (d - d / 2 + 1);
}

void
group_arm_delay(struct group *g)
{
	arm(g->delay_ev, heap_top(&g->delayed));
}

/*
 * TTLs ran out.  A waiting entry expires (delivery's policy: moved to the
 * dead-letter topic, or dropped); one in flight stays with its consumer
 * and expires if it comes back (delivery_fail()).
 */
static void
ttl_cb(evutil_socket_t fd, short what, void *arg)
{
	struct group *g = arg;
	uint64_t now = clock_mono_ms();
	struct hnode *n;
	int budget = 4096;	/* bounded work per turn */

	while ((n = heap_top(&g->ttlq)) && n->key <= now && budget-- > 0) {
		struct qent *e = qent_of_tn(n);

		heap_pop(&g->ttlq);
		if (!(e->flags & QE_LEASED))
			hooks->expire(e);
	}
	if (n && n->key <= now) {
		struct timeval tv = {0, 0};

		evtimer_add(g->ttl_ev, &tv);
	} else {
		arm(g->ttl_ev, n);
	}
	group_mark_due(g);
}

static void
delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct group *g = arg;
	uint64_t now = clock_mono_ms();
	struct list due;
	struct qent *e;

	list_init(&due);
	struct hnode *n;

	while ((n = heap_top(&g->delayed)) && n->key <= now) {
		heap_pop(&g->delayed);
		e = qent_of_dn(n);
		list_add_tail(&due, &e->link);
		g->nready++;
	}
	/* Redeliveries overtake first deliveries, in due order. */
	list_splice_tail(&due, &g->ready);	/* due = due + ready */
	list_splice_tail(&g->ready, &due);	/* ready = due */
	group_arm_delay(g);
	group_mark_due(g);
}

int
group_dlq_prepare(struct qent *e, struct group_dlq *d)
{
	struct group *g = e->group;
	struct topic *t = g->topic;
	struct msg *m = qent_msg(e);
	const struct msg_ext *x = msg_ext(m);
	const struct qside *q = qent_side(e);
	uint16_t nhist = q ? q->nhist : 0;
	const char *body;
	uint32_t n = 0;
	int len;

	memset(d, 0, sizeof(*d));
	/* First: a paged body is valid until the next load (msg.h). */
	if (!(body = msg_body_load(m)) && m->body_len)
		return -EIO;
	len = snprintf(d->topic, sizeof(d->topic), "%s" TOPIC_DLQ_SUFFIX,
	    t->name);
	if (len < 0 || (size_t)len >= sizeof(d->topic) ||
	    !fy_name_valid(d->topic, (size_t)len))
		return -ENAMETOOLONG;
	d->topic_len = (size_t)len;
	if (!(d->hdr = calloc(x->nhdr + 4, sizeof(*d->hdr))))
		return -ENOMEM;
	for (uint32_t i = 0; i < x->nhdr; i++) {
		/* Drop dlq-* headers of an earlier dead-lettering. */
		if (x->hdr[i].k.len > 4 && !memcmp(x->hdr[i].k.p, "dlq-", 4))
			continue;
		d->hdr[n++] = x->hdr[i];
	}
	snprintf(d->attempts, sizeof(d->attempts), "%u",
	    (unsigned)e->attempts);
	d->hdr[n++] = (struct fy_kv){{"dlq-topic", 9},
	    {t->name, (uint32_t)t->name_len}};
	d->hdr[n++] = (struct fy_kv){{"dlq-group", 9},
	    {g->name, (uint32_t)strlen(g->name)}};
	d->hdr[n++] = (struct fy_kv){{"dlq-attempts", 12},
	    {d->attempts, (uint32_t)strlen(d->attempts)}};
	if (nhist) {
		const char *reason = qent_cause_name(q->hist[nhist - 1].cause);

		d->hdr[n++] = (struct fy_kv){{"dlq-reason", 10},
		    {reason, (uint32_t)strlen(reason)}};
	}
	for (uint16_t i = 0; i < nhist; i++) {
		struct qhist_entry *h = &q->hist[i];
		const char *cause = qent_cause_name(h->cause);

		d->hist[i].cause = (struct fy_str){cause,
		    (uint32_t)strlen(cause)};
		d->hist[i].error = (struct fy_str){h->error,
		    h->error ? (uint32_t)strlen(h->error) : 0};
		d->hist[i].consumer = (struct fy_str){h->consumer,
		    (uint32_t)strlen(h->consumer)};
		d->hist[i].at = h->at;
	}
	d->nhist = nhist;
	/* reply_to and corr stay, so a replayed request can be answered. */
	d->pm = (struct fy_pubmsg){
		.body = {body, m->body_len},
		.hdr = d->hdr,
		.nhdr = n,
		.reply_to = x->reply_to,
		.corr = x->corr,
	};
	return 0;
}

void
group_dlq_release(struct group_dlq *d)
{
	free(d->hdr);
	d->hdr = NULL;
}

/* Is place a before place b (modulo 2^32: they are never that far
 * apart)? */
static int
place_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/*
 * A released entry goes back to its original place, as a RabbitMQ or NSQ
 * user expects of a message nobody failed on: behind the entries handed
 * out before it that went back too, ahead of those after it and of every
 * one never handed out.  Entries that went back sit at the head (released
 * ones in place order: this keeps them so), so the walk is short; released
 * from the newest, as sub_free() does, it stops at the first.  Without a
 * place (replay, or no memory for the history): the head.
 */
static void
put_back(struct group *g, struct qent *e)
{
	const struct qside *q = qent_side(e), *r;
	struct list *at = g->ready.next;

	if (q && q->order)
		for (; at != &g->ready; at = at->next) {
			r = qent_side(list_entry(at, struct qent, link));
			if (!r || !r->order || !place_before(r->order,
			    q->order))
				break;
		}
	list_insert(at->prev, at, &e->link);
}

void
group_fail(struct qent *e, int cause, const char *consumer,
    size_t consumer_len, const char *err, size_t err_len, uint64_t delay_ms)
{
	struct group *g = e->group;
	struct qside *q;
	char idbuf[MSG_ID_LEN + 1];

	/* History is best effort: losing it must not lose the message. */
	if (qent_hist_add(e, cause, clock_wall_ms(), consumer, consumer_len,
	    err, err_len) < 0)
		log_warn("out of memory recording history of %s",
		    msg_id(qent_msg(e), idbuf).p);
	if (e->flags & QE_LEASED)
		hooks->lease_end(e);
	qent_count_cause(e, cause);
	if (cause != CAUSE_RELEASED && e->attempts < UINT16_MAX)
		e->attempts++;
	g->st.failed[cause]++;
	if (delay_ms == 0 && cause == CAUSE_RELEASED) {
		put_back(g, e);
		g->nready++;
		return;
	}
	if (delay_ms == 0) {
		list_add_head(&g->ready, &e->link);
		g->nready++;
		return;
	}
	if ((q = qent_side_get(e)))
		q->dn.key = clock_mono_ms() + delay_ms;
	if (!q || heap_push(&g->delayed, &q->dn) < 0) {
		/* No room to delay it: redeliver now rather than drop. */
		list_add_head(&g->ready, &e->link);
		g->nready++;
		return;
	}
	if (heap_top(&g->delayed) == &q->dn)
		group_arm_delay(g);
}
