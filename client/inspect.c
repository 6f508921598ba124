/*
 * inspect.c - inspection requests (stats, inflight, trace, peek): each
 * answer is copied into one block while it is decoded.  The request, the
 * copy and what an empty answer means are shared by both drivers; the
 * blocking API is at the end, the async one in async.c.
 */
#include <stdlib.h>
#include <string.h>

#include "ferry-int.h"

/* Strings of a copied answer go after its array, in the same block. */
#define SPUT(dst, s) do {						\
		(dst) = sp;						\
		if ((s).len)						\
			memcpy(sp, (s).p, (s).len);			\
		sp[(s).len] = '\0';					\
		sp += (s).len + 1;					\
	} while (0)

static int
copy_stats(const struct fy_frame *fr, void **out, size_t *nout)
{
	const uint32_t n = fr->ok.nstats;
	struct ferry_group_stats *rows;
	size_t size = n * sizeof(*rows), i;
	char *sp;

	for (i = 0; i < n; i++)
		size += fr->ok.stats[i].topic.len + fr->ok.stats[i].group.len +
		    2;
	if ((rows = malloc(size ? size : 1)) == NULL)
		return -1;
	sp = (char *)(rows + n);
	for (i = 0; i < n; i++) {
		const struct fy_gstat *g = &fr->ok.stats[i];
		struct ferry_group_stats *r = &rows[i];

		SPUT(r->topic, g->topic);
		SPUT(r->group, g->group);
		r->ready = g->ready;
		r->delayed = g->delayed;
		r->inflight = g->inflight;
		r->bytes = g->bytes;
		r->members = g->members;
		r->enqueued = g->enqueued;
		r->delivered = g->delivered;
		r->acked = g->acked;
		r->timeouts = g->timeouts;
		r->nacked = g->nacked;
		r->disconnected = g->disconnected;
		r->released = g->released;
		r->expired = g->expired;
		r->dead_lettered = g->dead_lettered;
		r->age_ms = g->age_ms;
		r->dropped = g->dropped;
		r->slow = g->slow;
	}
	*out = rows;
	*nout = n;
	return 0;
}

static int
copy_inflight(const struct fy_frame *fr, void **out, size_t *nout)
{
	const uint32_t n = fr->ok.ninflight;
	struct ferry_lease_info *rows;
	size_t size = n * sizeof(*rows), i;
	char *sp;

	for (i = 0; i < n; i++)
		size += fr->ok.inflight[i].id.len +
		    fr->ok.inflight[i].consumer.len +
		    fr->ok.inflight[i].error.len + 3;
	if ((rows = malloc(size ? size : 1)) == NULL)
		return -1;
	sp = (char *)(rows + n);
	for (i = 0; i < n; i++) {
		const struct fy_lease_info *l = &fr->ok.inflight[i];

		SPUT(rows[i].id, l->id);
		SPUT(rows[i].consumer, l->consumer);
		SPUT(rows[i].error, l->error);
		rows[i].age_ms = l->age_ms;
		rows[i].attempt = l->attempt;
	}
	*out = rows;
	*nout = n;
	return 0;
}

static int
copy_events(const struct fy_frame *fr, void **out, size_t *nout)
{
	const uint32_t n = fr->ok.nevents;
	struct ferry_event *rows;
	size_t size = n * sizeof(*rows), i;
	char *sp;

	for (i = 0; i < n; i++) {
		const struct fy_event *e = &fr->ok.events[i];

		size += e->what.len + e->topic.len + e->group.len +
		    e->consumer.len + e->error.len + 5;
	}
	if ((rows = malloc(size ? size : 1)) == NULL)
		return -1;
	sp = (char *)(rows + n);
	for (i = 0; i < n; i++) {
		const struct fy_event *e = &fr->ok.events[i];

		rows[i].at_ms = e->at;
		SPUT(rows[i].what, e->what);
		SPUT(rows[i].topic, e->topic);
		SPUT(rows[i].group, e->group);
		SPUT(rows[i].consumer, e->consumer);
		SPUT(rows[i].error, e->error);
		rows[i].attempt = e->attempt;
	}
	*out = rows;
	*nout = n;
	return 0;
}
#undef SPUT

static int
copy_peek(const struct fy_frame *fr, void **out, size_t *nout)
{
	struct mnode *n;

	if (fr->type != FY_T_MSG)
		return 0;	/* an OK without the message: see below */
	if ((n = lf_msg_copy(fr)) == NULL)
		return -1;
	n->msg.sid = 0;
	n->msg.lease = 0;
	*out = n;
	*nout = 1;
	return 0;
}

/* The "broker" row of a STATS reply, if any (*nout = 0 if none). */
static int
copy_broker(const struct fy_frame *fr, void **out, size_t *nout)
{
	const struct fy_bstat *b = fr->ok.broker;
	struct ferry_broker_stats *bs;

	if ((bs = calloc(1, sizeof(*bs))) == NULL)
		return -1;
	if (fr->ok.nbroker > 0) {
		bs->conns = b->conns;
		bs->topics = b->topics;
		bs->groups = b->groups;
		bs->ready = b->ready;
		bs->delayed = b->delayed;
		bs->inflight = b->inflight;
		bs->bytes = b->bytes;
		bs->published = b->published;
		bs->delivered = b->delivered;
		bs->acked = b->acked;
		bs->bytes_in = b->bytes_in;
		bs->bytes_out = b->bytes_out;
		bs->journal_bytes = b->journal_bytes;
		bs->uptime_ms = b->uptime_ms;
		bs->paged = b->paged;
		bs->paged_bytes = b->paged_bytes;
		bs->paged_reads = b->paged_reads;
		bs->producers = b->producers;
	}
	*out = bs;
	*nout = fr->ok.nbroker > 0;
	return 0;
}

int
lf_query_frame(struct ferry *f, int q, const char *topic, const char *group,
    const char *id, struct fy_frame *fr)
{
	static const int type[] = { [LF_Q_STATS] = FY_T_STATS,
	    [LF_Q_BROKER] = FY_T_STATS, [LF_Q_INFLIGHT] = FY_T_INFLIGHT,
	    [LF_Q_TRACE] = FY_T_TRACE, [LF_Q_PEEK] = FY_T_PEEK };
	size_t tlen = 0, glen = 0, ilen = 0;
	int r;

	if (topic != NULL && (topic[0] != '\0' || q != LF_Q_STATS)) {
		tlen = strnlen(topic, FERRY_NAME_MAX + 1);
		if ((r = lf_check_name(f, "topic", topic, tlen)) < 0)
			return r;
	} else if (q != LF_Q_STATS && q != LF_Q_BROKER && q != LF_Q_TRACE) {
		return lf_seterr(f, FERRY_EINVAL, "topic is NULL");
	}
	if (group != NULL && group[0] != '\0') {
		glen = strnlen(group, FERRY_NAME_MAX + 1);
		if ((r = lf_check_name(f, "group", group, glen)) < 0)
			return r;
	}
	if (q == LF_Q_TRACE) {
		if (id == NULL || id[0] == '\0')
			return lf_seterr(f, FERRY_EINVAL,
			    "message id is empty");
		ilen = strnlen(id, FERRY_ID_MAX + 1);
		if (ilen > FERRY_ID_MAX)
			return lf_seterr(f, FERRY_EINVAL,
			    "message id longer than %d bytes", FERRY_ID_MAX);
	}
	memset(fr, 0, sizeof(*fr));
	fr->type = type[q];
	fr->query.topic.p = tlen ? topic : NULL;
	fr->query.topic.len = (uint32_t)tlen;
	fr->query.group.p = glen ? group : NULL;
	fr->query.group.len = (uint32_t)glen;
	fr->query.id.p = ilen ? id : NULL;
	fr->query.id.len = (uint32_t)ilen;
	return 0;
}

int
lf_query_copy(int q, const struct fy_frame *fr, void **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	/* Only PEEK's answer is a MSG; any other shape is not read. */
	if (fr->type != (q == LF_Q_PEEK ? FY_T_MSG : FY_T_OK))
		return 0;
	switch (q) {
	case LF_Q_STATS:
		return copy_stats(fr, out, n);
	case LF_Q_BROKER:
		return copy_broker(fr, out, n);
	case LF_Q_INFLIGHT:
		return copy_inflight(fr, out, n);
	case LF_Q_TRACE:
		return copy_events(fr, out, n);
	default:
		return copy_peek(fr, out, n);
	}
}

void
lf_query_free(int q, void *out)
{
	if (q == LF_Q_PEEK)
		ferry_msg_free(out ? &((struct mnode *)out)->msg : NULL);
	else
		free(out);
}

int
lf_query_check(struct ferry *f, int q, const void *out, size_t n)
{
	if (q == LF_Q_PEEK && out == NULL) {
		/* An OK: an older broker's way of saying "nothing". */
		f->last_code = FY_E_NOTFOUND;
		return lf_seterr(f, FERRY_ENOTFOUND, "nothing to peek at");
	}
	if (q == LF_Q_BROKER && n == 0)
		return lf_seterr(f, FERRY_EBROKER, "the broker reports no "
		    "broker-wide figures");
	return 0;
}

/* The blocking driver's wcopy: the answer of the query being waited for. */
static int
sync_copy(struct ferry *f, const struct fy_frame *fr)
{
	return lf_query_copy(f->wquery, fr, &f->wout, &f->wn);
}

/* Send query q and wait; on success its copy is returned in *out (and its
 * row count in *n). */
static int
query(struct ferry *f, int q, const char *topic, const char *group,
    const char *id, void **out, size_t *n)
{
	struct fy_frame fr;
	int r;

	*out = NULL;
	*n = 0;
	if (f->err && lf_recover(f) < 0)
		return f->err;
	if ((r = lf_query_frame(f, q, topic, group, id, &fr)) < 0)
		return r;
	f->wcopy = sync_copy;
	f->wquery = q;
	f->wout = NULL;
	f->wn = 0;
	r = lf_send_sync(f, &fr);
	f->wcopy = NULL;
	if (r == 0)
		r = lf_query_check(f, q, f->wout, f->wn);
	if (r < 0) {
		/* A copy made before a later failure is ours to free. */
		lf_query_free(q, f->wout);
		f->wout = NULL;
		return r;
	}
	*out = f->wout;
	*n = f->wn;
	f->wout = NULL;
	return 0;
}

int
ferry_stats(struct ferry *f, const char *topic,
    struct ferry_group_stats **rows, size_t *n)
{
	return query(f, LF_Q_STATS, topic, NULL, NULL, (void **)rows, n);
}

void
ferry_stats_free(struct ferry_group_stats *rows)
{
	free(rows);
}

int
ferry_stats_broker(struct ferry *f, struct ferry_broker_stats *bs)
{
	struct ferry_broker_stats *got;
	size_t n;
	int r;

	memset(bs, 0, sizeof(*bs));
	r = query(f, LF_Q_BROKER, NULL, NULL, NULL, (void **)&got, &n);
	if (r < 0)
		return r;
	*bs = *got;
	free(got);
	return 0;
}

int
ferry_inflight(struct ferry *f, const char *topic, const char *group,
    struct ferry_lease_info **rows, size_t *n)
{
	return query(f, LF_Q_INFLIGHT, topic, group, NULL, (void **)rows, n);
}

void
ferry_inflight_free(struct ferry_lease_info *rows)
{
	free(rows);
}

int
ferry_trace(struct ferry *f, const char *id, struct ferry_event **rows,
    size_t *n)
{
	return query(f, LF_Q_TRACE, NULL, NULL, id, (void **)rows, n);
}

void
ferry_trace_free(struct ferry_event *rows)
{
	free(rows);
}

int
ferry_peek(struct ferry *f, const char *topic, const char *group,
    struct ferry_msg **m)
{
	struct mnode *node;
	size_t n;
	int r;

	*m = NULL;
	r = query(f, LF_Q_PEEK, topic, group, NULL, (void **)&node, &n);
	if (r == 0)
		*m = &node->msg;
	return r;
}
