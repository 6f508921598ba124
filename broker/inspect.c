/*
 * inspect.c - read-only views of queues, leases and message histories.
 */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "core.h"
#include "clock.h"
#include "codec.h"
#include "conn.h"
#include "group.h"
#include "inspect.h"
#include "journal.h"
#include "lease.h"
#include "msg.h"
#include "sub.h"
#include "topic.h"
#include "trace.h"

static struct fy_str
str(const char *s)
{
	return (struct fy_str){s, (uint32_t)strlen(s)};
}

/* ms since the message at the head of g's ready queue was published. */
static uint64_t
oldest_ready_ms(const struct group *g)
{
	const struct qent *e = list_first(&g->ready, struct qent, link);
	uint64_t now = clock_wall_ms(), ts;

	if (!e)
		return 0;
	ts = qent_msg(e)->ts;
	return now > ts ? now - ts : 0;
}

static void
group_row(struct fy_gstat *r, const struct topic *t, const struct group *g)
{
	const struct group_stats *st = &g->st;

	memset(r, 0, sizeof(*r));
	r->topic = topic_str(t);
	r->group = str(g->name);
	r->ready = g->nready;
	r->delayed = g->delayed.n;
	r->inflight = g->ninflight;
	r->bytes = g->nbytes;
	r->members = g->nmembers;
	r->enqueued = st->enqueued;
	r->delivered = st->delivered;
	r->acked = st->acked;
	r->amo = st->amo;
	r->overflow = st->overflow;
	r->dropped = st->dropped;
	r->slow = st->slow;
	r->timeouts = st->failed[CAUSE_TIMEOUT];
	r->nacked = st->failed[CAUSE_NACKED];
	r->disconnected = st->failed[CAUSE_DISCONNECTED];
	r->released = st->failed[CAUSE_RELEASED];
	r->expired = st->expired;
	r->dead_lettered = st->dead_lettered;
	r->age_ms = oldest_ready_ms(g);
}

/* A topic's own row: its backlog, and what was published to it. */
static void
topic_row(struct fy_gstat *r, const struct topic *t)
{
	memset(r, 0, sizeof(*r));
	r->topic = topic_str(t);
	r->ready = t->nbacklog;
	r->enqueued = t->published;
}

static size_t
topic_rows(struct fy_gstat *rows, const struct topic *t)
{
	const struct list *pos;
	size_t n = 0;

	topic_row(&rows[n++], t);
	list_for_each(pos, &t->groups)
		group_row(&rows[n++], t,
		    list_entry(pos, struct group, tlink));
	return n;
}

/* The broker as a whole, from the rows of every topic and group. */
static void
broker_row(struct fy_bstat *r, const struct core *b,
    const struct fy_gstat *rows, size_t n)
{
	struct journal_stats js;

	memset(r, 0, sizeof(*r));
	r->conns = b->nconns;
	r->topics = b->ntopics;
	r->groups = b->ngroups;
	for (size_t i = 0; i < n; i++) {
		r->ready += rows[i].ready;
		r->delayed += rows[i].delayed;
		r->inflight += rows[i].inflight;
		r->bytes += rows[i].bytes;
		if (rows[i].group.len) {
			r->delivered += rows[i].delivered;
			r->acked += rows[i].acked;
		} else {
			r->published += rows[i].enqueued;
		}
	}
	r->bytes_in = b->st.bytes_in;
	r->bytes_out = b->st.bytes_out;
	if (b->store.j) {
		journal_get_stats(b->store.j, &js);
		r->journal_bytes = js.disk_bytes;
	}
	r->uptime_ms = clock_mono_ms() - b->st.started_ms;
	r->paged = msg_mem.paged;
	r->paged_bytes = msg_mem.paged_bytes;
	r->paged_reads = b->store.page.loads;
	r->producers = b->store.producers.n;
}

void
inspect_stats(struct conn *c, const struct fy_frame *f)
{
	struct core *b = c->b;
	struct fy_frame ok = {.type = FY_T_OK, .rid = f->rid};
	struct fy_gstat *rows;
	struct fy_bstat brow;
	struct topic *one = NULL;
	size_t n = 0, cap = 0;

	if (f->query.topic.len) {
		if (!fy_name_valid(f->query.topic.p, f->query.topic.len)) {
			conn_send_err(c, f->rid, FY_E_BADNAME, 0,
			    "invalid topic name");
			return;
		}
		/* Those who may read a topic may see its counters. */
		if (auth_check(c, f->rid, AUTH_SUB, f->query.topic))
			return;
		/* No such topic: no rows, as PROTOCOL.md says, since a
		 * topic is created on first use and has no "missing"
		 * state a client could act on. */
		if (!(one = topic_find(b, f->query.topic.p,
		    f->query.topic.len))) {
			conn_send(c, &ok);
			return;
		}
		cap = 1 + one->ngroups;
	} else if (auth_check(c, f->rid, AUTH_ADMIN, f->query.topic)) {
		return;		/* every topic: an admin's view */
	} else {
		for (uint32_t i = 0; i < b->topics_cap; i++)
			for (struct topic *t = b->topics[i]; t; t = t->hnext)
				cap += 1 + t->ngroups;
	}
	if (!(rows = calloc(cap ? cap : 1, sizeof(*rows)))) {
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		return;
	}
	if (one) {
		n = topic_rows(rows, one);
	} else {
		for (uint32_t i = 0; i < b->topics_cap; i++)
			for (struct topic *t = b->topics[i]; t; t = t->hnext)
				n += topic_rows(rows + n, t);
	}
	ok.ok.stats = rows;
	ok.ok.nstats = (uint32_t)n;
	if (!one) {
		broker_row(&brow, b, rows, n);
		ok.ok.broker = &brow;
		ok.ok.nbroker = 1;
	}
	conn_send(c, &ok);
	free(rows);
}

/* The group a query names (group empty: "default"), or NULL after an
 * error reply. */
static struct group *
query_group(struct conn *c, const struct fy_frame *f)
{
	struct fy_str gname = f->query.group;
	struct topic *t;
	struct group *g = NULL;

	if (!gname.len)
		gname = str(GROUP_DEFAULT);
	if (!fy_name_valid(f->query.topic.p, f->query.topic.len) ||
	    !fy_name_valid(gname.p, gname.len)) {
		conn_send_err(c, f->rid, FY_E_BADNAME, 0,
		    "invalid topic or group name");
		return NULL;
	}
	if (auth_check(c, f->rid, AUTH_SUB, f->query.topic))
		return NULL;
	if ((t = topic_find(c->b, f->query.topic.p, f->query.topic.len)))
		g = topic_group_find(t, gname.p, gname.len);
	if (!g)
		conn_send_err(c, f->rid, FY_E_NOTFOUND, 0,
		    "no group %.*s on topic %.*s", (int)gname.len, gname.p,
		    (int)f->query.topic.len, f->query.topic.p);
	return g;
}

static const char *
last_error(const struct qent *e)
{
	const struct qside *q = qent_side(e);

	for (int i = q ? q->nhist - 1 : -1; i >= 0; i--)
		if (q->hist[i].error)
			return q->hist[i].error;
	return "";
}

void
inspect_inflight(struct conn *c, const struct fy_frame *f)
{
	struct fy_frame ok = {.type = FY_T_OK, .rid = f->rid};
	struct group *g = query_group(c, f);
	struct fy_lease_info *rows;
	char (*ids)[MSG_ID_LEN + 1];
	uint64_t now = clock_mono_ms();
	struct list *mpos, *lpos;
	size_t n = 0;

	if (!g)
		return;
	rows = calloc(g->ninflight ? g->ninflight : 1, sizeof(*rows));
	ids = calloc(g->ninflight ? g->ninflight : 1, sizeof(*ids));
	if (!rows || !ids) {
		free(rows);
		free(ids);
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		return;
	}
	list_for_each(mpos, &g->members) {
		struct sub *s = list_entry(mpos, struct sub, glink);

		list_for_each(lpos, &s->leases) {
			struct qent *e = list_entry(lpos, struct qent, link);
			const struct lease_slot *l = lease_slot(
			    &c->b->leases, qent_lease_slot(e));

			if (n == g->ninflight)
				break;
			rows[n] = (struct fy_lease_info){
				.id = msg_id(qent_msg(e), ids[n]),
				.consumer = str(s->conn->name),
				.age_ms = now > l->since ? now - l->since : 0,
				.attempt = (uint32_t)e->attempts + 1,
				.error = str(last_error(e)),
				.left_ms = l->deadline > now ?
				    l->deadline - now : 0,
			};
			n++;
		}
	}
	ok.ok.inflight = rows;
	ok.ok.ninflight = (uint32_t)n;
	conn_send(c, &ok);
	free(rows);
	free(ids);
}

void
inspect_peek(struct conn *c, const struct fy_frame *f)
{
	struct group *g = query_group(c, f);
	char idbuf[MSG_ID_LEN + 1];
	struct fy_frame mf;
	struct hnode *n;
	struct qent *e;

	if (!g)
		return;
	if (!(e = list_first(&g->ready, struct qent, link)) &&
	    (n = heap_top(&g->delayed)))
		e = qent_of_dn(n);
	if (!e) {
		conn_send_err(c, f->rid, FY_E_NOTFOUND, 0,
		    "group %s/%s has no waiting message", g->topic->name,
		    g->name);
		return;
	}
	/* A PEEK is answered with the MSG it would be delivered as, minus
	 * the subscription and the lease. */
	if (qent_frame(e, topic_str(g->topic), &mf, idbuf) < 0) {
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0,
		    "the body of the message cannot be read from the journal");
		return;
	}
	mf.rid = f->rid;
	conn_send_msg(c, &mf, qent_msg(e));
}

struct trace_reply {
	const struct trace *t;
	struct fy_event *ev;
	size_t n, cap;
};

static void
collect(void *arg, const struct trace_rec *r)
{
	struct trace_reply *tr = arg;

	if (tr->n == tr->cap)
		return;
	tr->ev[tr->n++] = (struct fy_event){
		.at = r->at,
		.what = str(trace_what_name(r->what)),
		.topic = str(trace_sym_name(tr->t, r->topic)),
		.group = str(trace_sym_name(tr->t, r->group)),
		.consumer = str(trace_sym_name(tr->t, r->who)),
		.attempt = r->attempt,
		.error = str(trace_sym_name(tr->t, r->err)),
	};
}

static void
count(void *arg, const struct trace_rec *r)
{
	(void)r;
	(*(size_t *)arg)++;
}

void
inspect_trace(struct conn *c, const struct fy_frame *f)
{
	struct core *b = c->b;
	struct fy_frame ok = {.type = FY_T_OK, .rid = f->rid};
	uint64_t idh = msg_id_hash(f->query.id.p, f->query.id.len);
	struct trace_reply tr = {.t = &b->trace};
	size_t n = 0;

	/* A message id says nothing of its topic before the lookup, and
	 * its trace may cross topics: an admin's. */
	if (auth_check(c, f->rid, AUTH_ADMIN, f->query.topic))
		return;
	if (!b->trace.ring) {
		conn_send_err(c, f->rid, FY_E_NOTFOUND, 0,
		    "tracing is off (trace_events = 0)");
		return;
	}
	trace_find(&b->trace, idh, count, &n);
	if (!n) {
		conn_send_err(c, f->rid, FY_E_NOTFOUND, 0,
		    "nothing known about message %.*s (the last %zu events "
		    "are kept)", (int)f->query.id.len, f->query.id.p,
		    b->trace.cap);
		return;
	}
	if (!(tr.ev = calloc(n, sizeof(*tr.ev)))) {
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		return;
	}
	tr.cap = n;
	trace_find(&b->trace, idh, collect, &tr);
	ok.ok.events = tr.ev;
	ok.ok.nevents = (uint32_t)tr.n;
	conn_send(c, &ok);
	free(tr.ev);
}
