/*
 * metrics.c - /metrics, /healthz and /readyz over evhttp (metrics.h).
 *
 * Rendering reads broker state on the loop thread, so it needs no locks.
 * A scrape first copies what it shows (struct gsnap per group, under the
 * cap; struct tsnap per topic) in one pass: one consistent instant, and
 * cheap (a few dozen numbers per group).  The text, one pass per series
 * family over that copy since the format wants each family's samples
 * together, is then made SLICE_LINES at a time, one slice per loop turn
 * (a zero timer), and sent when complete: with 10,000 groups it is some
 * 300,000 lines, 30-40 ms of CPU that would otherwise stall every client
 * at once.  Each slice's text is a chunk of its own, handed to the reply's
 * evbuffer as it is: a single buffer for the whole text (20-30 MB) cost
 * some 16 ms of CPU just to allocate.  Numbers are formatted by hand:
 * snprintf() per line would cost several times more.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>

#include "auth.h"
#include "core.h"
#include "clock.h"
#include "config.h"
#include "group.h"
#include "journal.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "sub.h"
#include "topic.h"

#define CAP_LOG_EVERY_MS 60000	/* the cardinality cap's log line */
#define SLICE_LINES 4096	/* lines per loop turn: well under 1 ms */
#define SLICE_ROOM (512u << 10)	/* bytes: a slice's text, most of the time */

struct scrape;

struct metrics {
	struct evhttp *http;
	int port;
	uint64_t cap_logged;	/* monotonic ms of the last cap log line */
	double render_s;	/* loop time the last /metrics took */
	double render_cpu_s;	/* of it, on the CPU (the rest: other
				   processes had it) */
	double render_slice_cpu_s;	/* CPU time of its longest slice */
	struct scrape *scrapes;	/* being rendered */
	struct gsnap *gs_kept;	/* a finished scrape's array, for the next:
				   its first touch of megabytes of fresh
				   pages doubled the snapshot's time */
	size_t gs_kept_n;	/* its length, in groups */
};

/* ---- a growing text buffer ---- */

struct out {
	char *p;
	size_t len, cap;
	int oom;
};

static int
out_room(struct out *o, size_t n)
{
	size_t cap;
	char *p;

	if (o->oom)
		return -1;
	if (o->len + n <= o->cap)
		return 0;
	cap = o->cap ? o->cap : 65536;
	while (cap < o->len + n)
		cap *= 2;
	if (!(p = realloc(o->p, cap))) {
		o->oom = 1;
		return -1;
	}
	o->p = p;
	o->cap = cap;
	return 0;
}

static void
out_free(const void *data, size_t len, void *arg)
{
	free((void *)data);
}

static void
out_mem(struct out *o, const char *s, size_t n)
{
	if (out_room(o, n) == 0) {
		memcpy(o->p + o->len, s, n);
		o->len += n;
	}
}

static void
out_str(struct out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

static void
out_u64(struct out *o, uint64_t v)
{
	char buf[24];
	size_t i = sizeof(buf);

	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	out_mem(o, buf + i, sizeof(buf) - i);
}

/* Seconds and the like: to the microsecond is all any of them needs,
 * and integer formatting is several times cheaper than "%g". */
static void
out_dbl(struct out *o, double v)
{
	uint64_t us, frac;
	char buf[8];
	int i;

	if (!(v >= 0) || v >= 1e12) {	/* negative, NaN, absurd: rare */
		char big[32];
		int n = snprintf(big, sizeof(big), "%.9g", v);

		if (n > 0 && (size_t)n < sizeof(big))
			out_mem(o, big, (size_t)n);
		return;
	}
	us = (uint64_t)(v * 1e6 + 0.5);
	out_u64(o, us / 1000000);
	if ((frac = us % 1000000) == 0)
		return;
	buf[0] = '.';
	for (i = 6; i >= 1; i--, frac /= 10)
		buf[i] = (char)('0' + frac % 10);
	for (i = 6; buf[i] == '0'; i--)
		;
	out_mem(o, buf, (size_t)i + 1);
}

static void
family(struct out *o, const char *name, const char *type, const char *help)
{
	out_str(o, "# HELP ");
	out_str(o, name);
	out_mem(o, " ", 1);
	out_str(o, help);
	out_str(o, "\n# TYPE ");
	out_str(o, name);
	out_mem(o, " ", 1);
	out_str(o, type);
	out_mem(o, "\n", 1);
}

/* A sample without labels. */
static void
sample_u64(struct out *o, const char *name, uint64_t v)
{
	out_str(o, name);
	out_mem(o, " ", 1);
	out_u64(o, v);
	out_mem(o, "\n", 1);
}

static void
sample_dbl(struct out *o, const char *name, double v)
{
	out_str(o, name);
	out_mem(o, " ", 1);
	out_dbl(o, v);
	out_mem(o, "\n", 1);
}

static void
gauge(struct out *o, const char *name, const char *help, uint64_t v)
{
	family(o, name, "gauge", help);
	sample_u64(o, name, v);
}

static void
counter(struct out *o, const char *name, const char *help, uint64_t v)
{
	family(o, name, "counter", help);
	sample_u64(o, name, v);
}

/*
 * "name{labels,le="x"} n" lines, cumulative, then _sum and _count.
 * labels is "" or 'k="v",...' without braces; counts are per bucket.
 */
static void
histogram(struct out *o, const char *name, const char *labels, size_t llen,
    const double *le, uint32_t nle, const uint64_t *counts, double sum)
{
	uint64_t cum = 0;
	uint32_t i;

	for (i = 0; i <= nle; i++) {
		cum += counts[i];
		out_str(o, name);
		out_str(o, "_bucket{");
		out_mem(o, labels, llen);
		out_str(o, llen ? ",le=\"" : "le=\"");
		if (i < nle)
			out_dbl(o, le[i]);
		else
			out_str(o, "+Inf");
		out_str(o, "\"} ");
		out_u64(o, cum);
		out_mem(o, "\n", 1);
	}
	out_str(o, name);
	out_str(o, "_sum");
	if (llen) {
		out_mem(o, "{", 1);
		out_mem(o, labels, llen);
		out_mem(o, "}", 1);
	}
	out_mem(o, " ", 1);
	out_dbl(o, sum);
	out_mem(o, "\n", 1);
	out_str(o, name);
	out_str(o, "_count");
	if (llen) {
		out_mem(o, "{", 1);
		out_mem(o, labels, llen);
		out_mem(o, "}", 1);
	}
	out_mem(o, " ", 1);
	out_u64(o, cum);
	out_mem(o, "\n", 1);
}

/* ---- per group ---- */

/* 'name{labels extra} ', reserved and copied at once. */
static void
gline(struct out *o, const char *name, size_t nlen, const char *lab,
    size_t llen, const char *extra, size_t elen)
{
	char *p;

	if (out_room(o, nlen + llen + elen + 3) < 0)
		return;
	p = o->p + o->len;
	memcpy(p, name, nlen);
	p += nlen;
	*p++ = '{';
	memcpy(p, lab, llen);
	p += llen;
	memcpy(p, extra, elen);
	p += elen;
	*p++ = '}';
	*p++ = ' ';
	o->len = (size_t)(p - o->p);
}

enum gval {
	GV_READY, GV_DELAYED, GV_INFLIGHT, GV_BYTES, GV_MEMBERS,
	GV_ENQUEUED, GV_DELIVERED, GV_ACKED, GV_NACKED, GV_DEAD, GV_EXPIRED,
	GV_AMO, GV_OVERFLOW, GV_DROPPED, GV_SLOW, GV_COUNT
};

static const struct {
	const char *name, *type, *help;
} gfam[] = {
	[GV_READY] = { "ferry_group_ready_messages", "gauge",
	    "Messages deliverable now, waiting for a member with credit." },
	[GV_DELAYED] = { "ferry_group_delayed_messages", "gauge",
	    "Messages waiting for their delay or a redelivery backoff." },
	[GV_INFLIGHT] = { "ferry_group_inflight_messages", "gauge",
	    "Messages delivered and not yet acknowledged." },
	[GV_BYTES] = { "ferry_group_bytes", "gauge",
	    "Body bytes of the messages the group holds." },
	[GV_MEMBERS] = { "ferry_group_members", "gauge",
	    "Subscriptions in the group." },
	[GV_ENQUEUED] = { "ferry_group_enqueued_messages_total", "counter",
	    "Messages added to the group." },
	[GV_DELIVERED] = { "ferry_group_delivered_messages_total", "counter",
	    "Deliveries, redeliveries included." },
	[GV_ACKED] = { "ferry_group_acked_messages_total", "counter",
	    "Deliveries acknowledged." },
	[GV_NACKED] = { "ferry_group_nacked_messages_total", "counter",
	    "Deliveries negatively acknowledged (NACK)." },
	[GV_DEAD] = { "ferry_group_dead_lettered_messages_total", "counter",
	    "Messages moved to the dead-letter topic." },
	[GV_EXPIRED] = { "ferry_group_expired_messages_total", "counter",
	    "Messages whose TTL ran out while they waited." },
	[GV_AMO] = { "ferry_group_settled_on_delivery_messages_total",
	    "counter", "At-most-once deliveries, settled when sent." },
	[GV_OVERFLOW] = { "ferry_group_overflowed_messages_total", "counter",
	    "Messages pushed out of the full group (overflow dlq-oldest)." },
	[GV_DROPPED] = { "ferry_group_dropped_messages_total", "counter",
	    "Messages removed undelivered and not dead-lettered." },
	[GV_SLOW] = { "ferry_group_slow_dropped_messages_total", "counter",
	    "Of those, dropped past ephemeral_max_bytes (slow consumer)." },
};

static uint64_t
gvalue(const struct group *g, enum gval k)
{
	switch (k) {
	case GV_READY:
		return g->nready;
	case GV_DELAYED:
		return g->delayed.n;
	case GV_INFLIGHT:
		return g->ninflight;
	case GV_BYTES:
		return g->nbytes;
	case GV_MEMBERS:
		return g->nmembers;
	case GV_ENQUEUED:
		return g->st.enqueued;
	case GV_DELIVERED:
		return g->st.delivered;
	case GV_ACKED:
		return g->st.acked;
	case GV_NACKED:
		return g->st.failed[CAUSE_NACKED];
	case GV_DEAD:
		return g->st.dead_lettered;
	case GV_EXPIRED:
		return g->st.expired;
	case GV_AMO:
		return g->st.amo;
	case GV_OVERFLOW:
		return g->st.overflow;
	case GV_DROPPED:
		return g->st.dropped;
	case GV_SLOW:
		return g->st.slow;
	case GV_COUNT:
		break;
	}
	return 0;
}

/* Age (s) of the message at the head of the ready queue: the oldest, but
 * for a redelivery put back in front of an older first delivery. */
static double
oldest_ready_s(const struct group *g, uint64_t wall_ms)
{
	const struct qent *e = list_first(&g->ready, struct qent, link);
	uint64_t ts;

	if (!e)
		return 0;
	ts = qent_msg(e)->ts;
	return wall_ms > ts ? (double)(wall_ms - ts) / 1000 : 0;
}

/* Age (s) of the oldest delivery not yet acked: each member's leases are
 * in deadline order, all of one length, so its first is its oldest. */
static double
oldest_unacked_s(const struct group *g, uint64_t mono_ms)
{
	const struct list *pos;
	uint64_t oldest = mono_ms, since;

	list_for_each(pos, &g->members) {
		const struct sub *s = list_entry(pos, struct sub, glink);
		const struct qent *e = list_first(&s->leases, struct qent,
		    link);

		if (!e)
			continue;
		since = sub_lease_deadline(e) - s->ack_timeout_ms;
		if (since < oldest)
			oldest = since;
	}
	return (double)(mono_ms - oldest) / 1000;
}

static const char *const cause_label[CAUSE_NFAIL] = {
	[CAUSE_TIMEOUT] = ",cause=\"timeout\"",
	[CAUSE_NACKED] = ",cause=\"nack\"",
	[CAUSE_RELEASED] = ",cause=\"release\"",
	[CAUSE_DISCONNECTED] = ",cause=\"disconnect\"",
};

/* ---- the snapshot ---- */

/*
 * What a scrape shows of one group, copied in the first slice so that the
 * text can be made over many loop turns from one instant (and from no
 * pointer into the broker: a group may go away meanwhile).  Labels,
 * 'topic="T",group="G"', are in the scrape's arena at off, len.  Topic and
 * group names are letters, digits, '.', '-' and '_' (checked at creation
 * and at replay), so they need no escaping in a label value.
 */
_Static_assert(sizeof(((struct group *)0)->st.failed) ==
    CAUSE_NFAIL * sizeof(uint64_t), "gsnap copies failed[] whole");

struct gsnap {
	size_t off, len;
	uint64_t v[GV_COUNT];		/* gvalue() */
	uint64_t failed[CAUSE_NFAIL];
	double ready_age, unacked_age;
	struct hist ack;
};

/* A topic's: 'topic="T"' at off, len. */
struct tsnap {
	size_t off, len;
	uint64_t published, backlog;
};

/*
 * The sections of the text after the broker-wide head, in order; one item
 * (a topic's or a group's lines) at a time, so a slice can stop anywhere.
 */
enum stage {
	ST_PUBLISHED, ST_BACKLOG,
	ST_GVAL,			/* + enum gval */
	ST_REDELIV = ST_GVAL + GV_COUNT, /* + cause */
	ST_READY_AGE = ST_REDELIV + CAUSE_NFAIL,
	ST_UNACKED_AGE, ST_ACK_HIST, ST_TAIL, ST_DONE,
};

struct scrape {
	struct core *b;
	struct evhttp_request *req;	/* NULL: rendered for a caller */
	struct event *ev;		/* the next slice */
	struct evbuffer *body;		/* the text of the slices so far */
	struct out o;			/* the text of this slice */
	struct out lab;			/* label arena */
	struct tsnap *ts;
	struct gsnap *gs;
	size_t gs_n;			/* gs has room for that many */
	size_t nt, ng, omitted;
	int stage;
	size_t i;			/* next item of stage */
	double wall_s, cpu_s;		/* loop time spent on it */
	double slice_cpu_s;		/* of its longest slice, on the CPU */
	struct scrape *next;		/* in metrics.scrapes */
};

static void
label_make(struct out *a, size_t *off, size_t *len, const struct topic *t,
    const char *group)
{
	*off = a->len;
	out_str(a, "topic=\"");
	out_mem(a, t->name, t->name_len);
	if (group) {
		out_str(a, "\",group=\"");
		out_str(a, group);
	}
	out_mem(a, "\"", 1);
	*len = a->len - *off;
}

/* Room for n groups in sc->gs, the kept array if it is large enough. */
static struct gsnap *
gsnap_array(struct scrape *sc, size_t n)
{
	struct metrics *m = sc->b->metrics;

	if (m && m->gs_kept && m->gs_kept_n >= n) {
		sc->gs = m->gs_kept;
		sc->gs_n = m->gs_kept_n;
		m->gs_kept = NULL;
		m->gs_kept_n = 0;
	} else if ((sc->gs = malloc(n * sizeof(*sc->gs))) != NULL) {
		sc->gs_n = n;
	}
	return sc->gs;
}

static void
gsnap_make(struct scrape *sc, struct gsnap *s, const struct group *g,
    uint64_t wall, uint64_t mono)
{
	int k;

	label_make(&sc->lab, &s->off, &s->len, g->topic, g->name);
	for (k = 0; k < GV_COUNT; k++)
		s->v[k] = gvalue(g, (enum gval)k);
	memcpy(s->failed, g->st.failed, sizeof(s->failed));
	s->ready_age = oldest_ready_s(g, wall);
	s->unacked_age = oldest_unacked_s(g, mono);
	s->ack = g->st.ack_time;
}

/* ---- the text, a slice at a time ---- */

static const char redeliv[] = "ferry_group_redelivered_messages_total";
static const char ready_age[] = "ferry_group_oldest_ready_age_seconds";
static const char unacked_age[] = "ferry_group_oldest_unacked_age_seconds";
static const char ack_hist[] = "ferry_group_ack_duration_seconds";

static void
stage_header(struct out *o, int st)
{
	if (st == ST_PUBLISHED)
		family(o, "ferry_topic_published_messages_total", "counter",
		    "Messages published to the topic.");
	else if (st == ST_BACKLOG)
		family(o, "ferry_topic_backlog_messages", "gauge", "Messages "
		    "the topic keeps while it has no durable group.");
	else if (st < ST_REDELIV)
		family(o, gfam[st - ST_GVAL].name, gfam[st - ST_GVAL].type,
		    gfam[st - ST_GVAL].help);
	else if (st == ST_REDELIV)
		family(o, redeliv, "counter", "Deliveries that ended without "
		    "an ack, by cause; the message went back to the group (or "
		    "to the dead-letter topic).");
	else if (st == ST_READY_AGE)
		family(o, ready_age, "gauge", "Age of the oldest message "
		    "ready for delivery (0: none).");
	else if (st == ST_UNACKED_AGE)
		family(o, unacked_age, "gauge", "Time since the oldest "
		    "outstanding delivery was made or touched (0: none).");
	else if (st == ST_ACK_HIST)
		family(o, ack_hist, "histogram", "Time from delivery (or the "
		    "last TOUCH) to ack.");
}

/* Item i of stage st; returns the lines written. */
static size_t
stage_item(struct scrape *sc, int st, size_t i)
{
	struct out *o = &sc->o;
	const char *lab = sc->lab.p;
	const struct tsnap *t;
	const struct gsnap *g;
	const char *name;
	int c;

	if (st == ST_PUBLISHED || st == ST_BACKLOG) {
		t = &sc->ts[i];
		name = st == ST_PUBLISHED ?
		    "ferry_topic_published_messages_total" :
		    "ferry_topic_backlog_messages";
		gline(o, name, strlen(name), lab + t->off, t->len, "", 0);
		out_u64(o, st == ST_PUBLISHED ? t->published : t->backlog);
		out_mem(o, "\n", 1);
		return 1;
	}
	g = &sc->gs[i];
	if (st < ST_REDELIV) {
		name = gfam[st - ST_GVAL].name;
		gline(o, name, strlen(name), lab + g->off, g->len, "", 0);
		out_u64(o, g->v[st - ST_GVAL]);
	} else if (st < ST_READY_AGE) {
		c = st - ST_REDELIV;
		gline(o, redeliv, sizeof(redeliv) - 1, lab + g->off, g->len,
		    cause_label[c], strlen(cause_label[c]));
		out_u64(o, g->failed[c]);
	} else if (st == ST_READY_AGE || st == ST_UNACKED_AGE) {
		name = st == ST_READY_AGE ? ready_age : unacked_age;
		gline(o, name, strlen(name), lab + g->off, g->len, "", 0);
		out_dbl(o, st == ST_READY_AGE ? g->ready_age :
		    g->unacked_age);
	} else {
		histogram(o, ack_hist, lab + g->off, g->len,
		    hist_ack_bounds.le, hist_ack_bounds.n, g->ack.count,
		    g->ack.sum);
		return hist_ack_bounds.n + 3;
	}
	out_mem(o, "\n", 1);
	return 1;
}

static void
render_tail(struct scrape *sc)
{
	struct metrics *m = sc->b->metrics;
	struct out *o = &sc->o;

	gauge(o, "ferry_metrics_omitted_groups", "Groups left out of this "
	    "scrape by metrics_max_groups.", sc->omitted);
	if (!m)
		return;
	family(o, "ferry_metrics_render_seconds", "gauge", "Loop time the "
	    "previous scrape took to render, all its slices together.");
	sample_dbl(o, "ferry_metrics_render_seconds", m->render_s);
	family(o, "ferry_metrics_render_cpu_seconds", "gauge",
	    "CPU time of the previous scrape's rendering.");
	sample_dbl(o, "ferry_metrics_render_cpu_seconds", m->render_cpu_s);
	family(o, "ferry_metrics_render_slice_max_cpu_seconds", "gauge",
	    "CPU time of the previous scrape's longest slice: the longest it "
	    "kept the loop busy at once (it renders some thousand lines per "
	    "loop turn).");
	sample_dbl(o, "ferry_metrics_render_slice_max_cpu_seconds",
	    m->render_slice_cpu_s);
}

/* Render up to about lines lines.  1 when the text is complete. */
static int
scrape_step(struct scrape *sc, size_t lines)
{
	size_t done = 0, n;

	while (sc->stage < ST_TAIL) {
		n = sc->stage < ST_GVAL ? sc->nt : sc->ng;
		if (sc->i == 0)
			stage_header(&sc->o, sc->stage);
		while (sc->i < n && done < lines)
			done += stage_item(sc, sc->stage, sc->i++);
		if (sc->i < n)
			return 0;
		sc->stage++;
		sc->i = 0;
	}
	if (sc->stage == ST_TAIL) {
		render_tail(sc);
		sc->stage = ST_DONE;
	}
	return 1;
}

/* ---- broker-wide ---- */

static uint64_t
rss_bytes(void)
{
	unsigned long long size, rss;
	FILE *f = fopen("/proc/self/statm", "r");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "%llu %llu", &size, &rss);
	fclose(f);
	return n == 2 ? rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* The broker-wide series: a few dozen lines, written with the snapshot. */
static void
render_head(struct out *o, struct core *b, uint64_t pending)
{
	struct journal_stats js;
	struct auth_stats as;
	int i;

	family(o, "ferry_build_info", "gauge", "Version of ferryd.");
	out_str(o, "ferry_build_info{version=\"" FERRY_VERSION "\"} 1\n");
	gauge(o, "ferry_connections", "Client connections open.",
	    b->nconns);
	counter(o, "ferry_connections_accepted_total",
	    "Client connections accepted.", b->st.accepted);
	family(o, "ferry_connections_refused_total", "counter",
	    "Client connections refused, by cause.");
	out_str(o, "ferry_connections_refused_total{cause=\"max_connections\"} ");
	out_u64(o, b->st.refused_limit);
	out_str(o, "\nferry_connections_refused_total{cause=\"accept_error\"} ");
	out_u64(o, b->st.accept_errors);
	out_mem(o, "\n", 1);
	counter(o, "ferry_received_bytes_total",
	    "Frame bytes received from clients.", b->st.bytes_in);
	counter(o, "ferry_sent_bytes_total",
	    "Bytes handed to client sockets.", b->st.bytes_out);
	gauge(o, "ferry_topics", "Topics.", b->ntopics);
	gauge(o, "ferry_groups", "Groups, ephemeral included.", b->ngroups);
	gauge(o, "ferry_pending_bytes",
	    "Body bytes of the messages all groups hold.", pending);
	gauge(o, "ferry_resident_memory_bytes",
	    "Resident set size of ferryd.", rss_bytes());
	counter(o, "ferry_memory_trims_total", "Times freed heap was given "
	    "back to the system (malloc_trim), each after 16 MiB or more were "
	    "freed.", b->store.trims);

	if (b->store.j) {
		journal_get_stats(b->store.j, &js);
		gauge(o, "ferry_journal_disk_bytes", "Size of the journal's "
		    "segment files (preallocated).", js.disk_bytes);
		gauge(o, "ferry_journal_used_bytes", "Bytes of records and "
		    "headers in the segment files.", js.used_bytes);
		gauge(o, "ferry_journal_live_bytes", "Estimated bytes of "
		    "records still needed.", js.live_bytes);
		gauge(o, "ferry_journal_segments", "Segment files.",
		    js.segments);
		gauge(o, "ferry_journal_live_records", "Records still "
		    "needed.", js.live_records);
		counter(o, "ferry_journal_records_total", "Records ever "
		    "appended to this journal (its next sequence number - 1).",
		    js.next_seq ? js.next_seq - 1 : 0);
		gauge(o, "ferry_journal_buffered_bytes", "Appended, not yet "
		    "written.", js.buffered_bytes);
		gauge(o, "ferry_journal_file_jobs", "Segment deletions and "
		    "preallocations queued for the worker thread.",
		    js.files_pending);
		gauge(o, "ferry_journal_error", "1 while journal writes fail "
		    "(publishes are refused).", journal_error(b->store.j) != 0);
		family(o, "ferry_journal_fdatasync_duration_seconds",
		    "histogram", "fdatasync calls on journal segments.");
		histogram(o, "ferry_journal_fdatasync_duration_seconds", "", 0,
		    journal_sync_le, JOURNAL_SYNC_BUCKETS, js.sync_hist,
		    js.sync_seconds);
	}
	auth_get_stats(b, &as);
	family(o, "ferry_auth_failures_total", "counter", "Logins refused, "
	    "by cause and by the mechanism the client tried.");
	for (i = 0; i < AUTH_FAIL_NCAUSES; i++) {
		out_str(o, "ferry_auth_failures_total{cause=\"");
		out_str(o, auth_fail_cause[i]);
		out_str(o, "\",mechanism=\"");
		out_str(o, auth_fail_mech[i]);
		out_str(o, "\"} ");
		out_u64(o, as.failures[i]);
		out_mem(o, "\n", 1);
	}
	counter(o, "ferry_auth_denied_total", "Operations refused E_DENIED "
	    "by a user's permissions.", as.denied);
	counter(o, "ferry_compaction_runs_total", "Compaction passes that "
	    "copied live messages forward.", b->store.compactions);
	counter(o, "ferry_compaction_moved_messages_total", "Messages "
	    "copied forward by compaction.", b->store.moved);
	counter(o, "ferry_compaction_moved_bytes_total", "Body bytes "
	    "copied forward by compaction.", b->store.moved_bytes);
	gauge(o, "ferry_memory_body_bytes", "Message body bytes held in "
	    "memory (bounded by max_memory).", msg_mem.bytes);
	gauge(o, "ferry_paged_messages", "Waiting messages whose body is "
	    "only in the journal (past max_memory).", msg_mem.paged);
	gauge(o, "ferry_paged_bytes", "Their body bytes.",
	    msg_mem.paged_bytes);
	counter(o, "ferry_paged_reads_total", "Bodies read back from the "
	    "journal.", b->store.page.loads);
	gauge(o, "ferry_producers", "Idempotent producers remembered (each "
	    "until producer_ttl after its last stored publish).",
	    b->store.producers.n);
	family(o, "ferry_loop_turn_duration_seconds", "histogram",
	    "Loop turns that read from clients: from the first read to the "
	    "end of the flush that ends the turn.");
	histogram(o, "ferry_loop_turn_duration_seconds", "", 0,
	    hist_turn_bounds.le, hist_turn_bounds.n, b->st.turn.count,
	    b->st.turn.sum);
}

static void
scrape_free(struct scrape *sc)
{
	struct metrics *m;

	if (!sc)
		return;
	m = sc->b->metrics;
	if (m && sc->gs && sc->gs_n > m->gs_kept_n) {
		free(m->gs_kept);
		m->gs_kept = sc->gs;
		m->gs_kept_n = sc->gs_n;
		sc->gs = NULL;
	}
	if (sc->ev)
		event_free(sc->ev);
	if (sc->body)
		evbuffer_free(sc->body);
	free(sc->o.p);
	free(sc->lab.p);
	free(sc->ts);
	free(sc->gs);
	free(sc);
}

/*
 * The first slice: copy what the scrape shows (every topic, the groups
 * under the cap) and write the broker-wide head.  NULL on -ENOMEM.
 */
static struct scrape *
scrape_new(struct core *b)
{
	struct metrics *m = b->metrics;
	uint64_t pending = 0, cap = b->opt->metrics_max_groups;
	uint64_t wall = clock_wall_ms(), mono = clock_mono_ms();
	struct scrape *sc = calloc(1, sizeof(*sc));
	struct topic *t;
	struct list *pos;
	uint32_t i;

	if (!sc)
		return NULL;
	sc->b = b;
	if (!(sc->body = evbuffer_new()) ||
	    (b->ntopics && !(sc->ts = malloc(b->ntopics * sizeof(*sc->ts)))) ||
	    (b->ngroups && !gsnap_array(sc, b->ngroups)))
		goto fail;
	for (i = 0; i < b->topics_cap; i++)
		for (t = b->topics[i]; t; t = t->hnext) {
			if (sc->nt < b->ntopics) {
				struct tsnap *ts = &sc->ts[sc->nt++];

				label_make(&sc->lab, &ts->off, &ts->len, t,
				    NULL);
				ts->published = t->published;
				ts->backlog = t->nbacklog;
			}
			list_for_each(pos, &t->groups) {
				struct group *g = list_entry(pos,
				    struct group, tlink);

				pending += g->nbytes;
				if (sc->ng < cap && sc->ng < b->ngroups)
					gsnap_make(sc, &sc->gs[sc->ng++], g,
					    wall, mono);
				else
					sc->omitted++;
			}
		}
	if (sc->omitted && m &&
	    clock_mono_ms() - m->cap_logged >= CAP_LOG_EVERY_MS) {
		m->cap_logged = clock_mono_ms();
		log_warn("metrics: %u groups, only %zu get series of their own "
		    "(metrics_max_groups); %zu left out, counted in "
		    "ferry_metrics_omitted_groups", b->ngroups, sc->ng,
		    sc->omitted);
	}
	render_head(&sc->o, b, pending);
	if (sc->o.oom || sc->lab.oom)
		goto fail;
	return sc;
fail:
	scrape_free(sc);
	return NULL;
}

static double
ts_diff(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	    (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/*
 * Run one slice (the snapshot when sc is NULL) and count the loop time it
 * took.  Returns the scrape, NULL on -ENOMEM (sc is freed then); *done is
 * set once the text is complete.
 */
static struct scrape *
scrape_slice(struct core *b, struct scrape *sc, int *done)
{
	struct metrics *m = b->metrics;
	struct timespec t0, t1, c0, c1;
	double cpu;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	*done = 0;
	if (!sc)
		sc = scrape_new(b);
	else if (out_room(&sc->o, SLICE_ROOM) == 0)
		*done = scrape_step(sc, SLICE_LINES);
	/* the chunk moves into body: evbuffer frees it once sent */
	if (sc && !sc->o.oom && sc->o.len &&
	    evbuffer_add_reference(sc->body, sc->o.p, sc->o.len, out_free,
	    NULL) == 0)
		memset(&sc->o, 0, sizeof(sc->o));
	if (!sc || sc->o.oom || sc->o.len) {
		scrape_free(sc);
		return NULL;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	cpu = ts_diff(&c0, &c1);
	sc->wall_s += ts_diff(&t0, &t1);
	sc->cpu_s += cpu;
	if (cpu > sc->slice_cpu_s)
		sc->slice_cpu_s = cpu;
	if (*done && m) {
		m->render_s = sc->wall_s;
		m->render_cpu_s = sc->cpu_s;
		m->render_slice_cpu_s = sc->slice_cpu_s;
	}
	return sc;
}

/* ---- health ---- */

const char *
metrics_not_ready(struct core *b, char *why, size_t len)
{
	struct statvfs vfs;
	int err;

	if (b->stopping)
		return "shutting down";
	if (b->draining)
		return "draining: waiting for in-flight deliveries before "
		    "stopping";
	if (!b->listener)
		return "not listening for clients";
	if (!b->store.j)
		return "journal not replayed";
	if ((err = journal_error(b->store.j)) != 0) {
		snprintf(why, len, "journal %s: %s", journal_fatal(b->store.j) ?
		    "sync failed (restart needed)" : "writes failing",
		    strerror(-err));
		return why;
	}
	if (statvfs(b->opt->data_dir, &vfs) == 0) {
		if (vfs.f_flag & ST_RDONLY)
			return "data directory is on a read-only file system";
		/* a new segment could not be preallocated */
		if ((uint64_t)vfs.f_bavail * vfs.f_frsize <
		    b->opt->segment_size) {
			snprintf(why, len, "disk nearly full: %llu bytes free "
			    "in %s, less than one segment (%llu)",
			    (unsigned long long)vfs.f_bavail * vfs.f_frsize,
			    b->opt->data_dir,
			    (unsigned long long)b->opt->segment_size);
			return why;
		}
	}
	return NULL;
}

/* ---- HTTP ---- */

static void
reply_text(struct evhttp_request *req, int code, const char *reason,
    const char *text)
{
	struct evbuffer *body = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; charset=utf-8");
	if (body)
		evbuffer_add_printf(body, "%s\n", text);
	evhttp_send_reply(req, code, reason, body);
	if (body)
		evbuffer_free(body);
}

static void
scrape_unlink(struct metrics *m, struct scrape *sc)
{
	struct scrape **pp;

	for (pp = &m->scrapes; *pp; pp = &(*pp)->next)
		if (*pp == sc) {
			*pp = sc->next;
			return;
		}
}

/* Send the complete text and free sc. */
static void
scrape_send(struct scrape *sc)
{
	evhttp_add_header(evhttp_request_get_output_headers(sc->req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	/* a scraper gone meanwhile: evhttp frees the request here */
	evhttp_send_reply(sc->req, 200, "OK", sc->body);
	scrape_free(sc);
}

/* Run the next slice, then come back after the loop served the rest. */
static void
slice_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval now = { 0, 0 };
	struct scrape *sc = arg;
	struct core *b = sc->b;
	struct evhttp_request *req = sc->req;
	int done;

	scrape_unlink(b->metrics, sc);
	if (!(sc = scrape_slice(b, sc, &done))) {
		reply_text(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (done) {
		scrape_send(sc);
		return;
	}
	sc->next = b->metrics->scrapes;
	b->metrics->scrapes = sc;
	evtimer_add(sc->ev, &now);
}

static void
metrics_cb(struct evhttp_request *req, void *arg)
{
	static const struct timeval now = { 0, 0 };
	struct core *b = arg;
	struct scrape *sc;
	int done;

	if (!(sc = scrape_slice(b, NULL, &done)) ||
	    !(sc->ev = evtimer_new(b->base, slice_cb, sc))) {
		scrape_free(sc);
		reply_text(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	sc->req = req;
	sc->next = b->metrics->scrapes;
	b->metrics->scrapes = sc;
	evtimer_add(sc->ev, &now);
}

static void
healthz_cb(struct evhttp_request *req, void *arg)
{
	/* answering at all is the news: the loop turns */
	reply_text(req, 200, "OK", "ok");
}

static void
readyz_cb(struct evhttp_request *req, void *arg)
{
	struct core *b = arg;
	char why[256];
	const char *not = metrics_not_ready(b, why, sizeof(why));

	if (not)
		reply_text(req, 503, "Service Unavailable", not);
	else
		reply_text(req, 200, "OK", "ready");
}

static void
other_cb(struct evhttp_request *req, void *arg)
{
	reply_text(req, 404, "Not Found",
	    "not found: try /metrics, /healthz or /readyz");
}

int
metrics_addr_parse(const char *s, char *host, size_t hlen, int *port)
{
	const char *colon = strrchr(s, ':');
	const char *h = s, *he = colon;
	char *end;
	long p;

	if (!colon || colon == s)
		return -EINVAL;
	if (*s == '[') {
		if (colon[-1] != ']')
			return -EINVAL;
		h = s + 1;
		he = colon - 1;
	}
	if ((size_t)(he - h) >= hlen || he == h)
		return -EINVAL;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p < 0 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

int
metrics_start(struct core *b)
{
	const char *addr = b->opt->metrics_listen;
	struct evhttp_bound_socket *bs;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct metrics *m;
	char host[256];
	int port;

	if (!addr)
		return 0;
	if (metrics_addr_parse(addr, host, sizeof(host), &port) < 0) {
		log_error("metrics_listen: expected ADDR:PORT (e.g. "
		    "127.0.0.1:9470), got '%s'", addr);
		return -EINVAL;
	}
	if (!(m = calloc(1, sizeof(*m))) || !(m->http = evhttp_new(b->base))) {
		free(m);
		log_error("metrics: out of memory");
		return -ENOMEM;
	}
	b->metrics = m;
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	/* a scraper that stalls mid-request must not hold a socket open */
	evhttp_set_timeout(m->http, 10);
	evhttp_set_max_headers_size(m->http, 8192);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_cb(m->http, "/metrics", metrics_cb, b);
	evhttp_set_cb(m->http, "/healthz", healthz_cb, b);
	evhttp_set_cb(m->http, "/readyz", readyz_cb, b);
	evhttp_set_gencb(m->http, other_cb, b);
	if (!(bs = evhttp_bind_socket_with_handle(m->http, host,
	    (ev_uint16_t)port))) {
		int r = errno ? -errno : -EADDRINUSE;

		log_error("metrics: cannot listen on %s: %s", addr,
		    strerror(-r));
		metrics_stop(b);
		return r;
	}
	if (getsockname(evhttp_bound_socket_get_fd(bs),
	    (struct sockaddr *)&ss, &sslen) == 0) {
		if (ss.ss_family == AF_INET)
			m->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			m->port = ntohs(
			    ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	log_info("metrics: listening on http://%s%s%s:%d/metrics",
	    strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
	    m->port);
	return 0;
}

void
metrics_stop(struct core *b)
{
	struct metrics *m = b->metrics;

	if (!m)
		return;
	while (m->scrapes) {
		struct scrape *sc = m->scrapes;

		m->scrapes = sc->next;
		scrape_free(sc);	/* evhttp_free() frees its request */
	}
	free(m->gs_kept);
	if (m->http)
		evhttp_free(m->http);
	free(m);
	b->metrics = NULL;
}
