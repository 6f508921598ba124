/*
 * msg.c - stored messages (one allocation each) and queue entries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uuid/uuid.h>

#include "group.h"
#include "heap.h"
#include "clock.h"
#include "msg.h"
#include "topic.h"
#include "trace.h"

static char *
put(char **cur, const char *p, size_t len)
{
	char *dst = *cur;

	if (len)
		memcpy(dst, p, len);
	*cur += len;
	return dst;
}

static void
put_str(char **cur, struct fy_str *dst, struct fy_str src)
{
	dst->p = put(cur, src.p, src.len);
	dst->len = src.len;
}

struct msg *
msg_new(const struct fy_pubmsg *pm, const char *id, size_t id_len,
    uint64_t ts, const struct fy_hist *hist, uint32_t nhist)
{
	size_t size = sizeof(struct msg) + pm->nhdr * sizeof(struct fy_kv) +
	    nhist * sizeof(struct fy_hist) + id_len + 1 + pm->body.len +
	    pm->reply_to.len + pm->corr.len;
	struct msg *m;
	char *cur;

	for (uint32_t i = 0; i < pm->nhdr; i++)
		size += pm->hdr[i].k.len + pm->hdr[i].v.len;
	for (uint32_t i = 0; i < nhist; i++)
		size += hist[i].cause.len + hist[i].error.len +
		    hist[i].consumer.len;
	if (id_len > FY_ID_MAX || !(m = malloc(size)))
		return NULL;

	m->refs = 1;
	m->seq = 0;
	m->dur_refs = 0;
	m->ents = NULL;
	m->topic = NULL;
	list_init(&m->slink);
	m->body_len = pm->body.len;
	m->ts = ts;
	m->nhdr = pm->nhdr;
	m->nhist = nhist;
	m->id_len = (uint8_t)id_len;
	m->hdr = (struct fy_kv *)(m + 1);
	m->hist = (struct fy_hist *)(m->hdr + m->nhdr);
	cur = (char *)(m->hist + nhist);
	m->id = put(&cur, id, id_len);
	*cur++ = '\0';
	for (uint32_t i = 0; i < pm->nhdr; i++) {
		put_str(&cur, &m->hdr[i].k, pm->hdr[i].k);
		put_str(&cur, &m->hdr[i].v, pm->hdr[i].v);
	}
	for (uint32_t i = 0; i < nhist; i++) {
		put_str(&cur, &m->hist[i].cause, hist[i].cause);
		put_str(&cur, &m->hist[i].error, hist[i].error);
		put_str(&cur, &m->hist[i].consumer, hist[i].consumer);
		m->hist[i].at = hist[i].at;
	}
	put_str(&cur, &m->reply_to, pm->reply_to);
	put_str(&cur, &m->corr, pm->corr);
	m->delay_ms = pm->delay_ms < MSG_TIME_MAX ? pm->delay_ms : MSG_TIME_MAX;
	m->ttl_ms = pm->ttl_ms < MSG_TIME_MAX ? pm->ttl_ms : MSG_TIME_MAX;
	m->mono_ts = msg_mono_of(ts);
	if (!m->nhdr)
		m->hdr = NULL;
	if (!nhist)
		m->hist = NULL;
	m->body = put(&cur, pm->body.p, pm->body.len);
	m->idh = trace_hash(id, id_len);
	return m;
}

int64_t
msg_mono_of(uint64_t wall_ms)
{
	int64_t now = (int64_t)clock_wall_ms();

	/* A damaged record may hold any time: keep the arithmetic in range
	 * (MSG_TIME_MAX either way is further than any real deadline). */
	if (wall_ms > (uint64_t)now + MSG_TIME_MAX)
		wall_ms = (uint64_t)now + MSG_TIME_MAX;
	if ((int64_t)wall_ms < now - (int64_t)MSG_TIME_MAX)
		return (int64_t)clock_mono_ms() - (int64_t)MSG_TIME_MAX;
	return (int64_t)clock_mono_ms() - (now - (int64_t)wall_ms);
}

void
msg_unref(struct msg *m)
{
	if (m && --m->refs == 0)
		free(m);
}

size_t
msg_size(const struct msg *m)
{
	return sizeof(*m) + m->body_len + m->id_len;
}

static uint8_t id_base[16];
static uint64_t id_counter;

void
msg_id_generate(char out[MSG_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	static const uint8_t dash[16] = {[4] = 1, [6] = 1, [8] = 1, [10] = 1};
	uint8_t u[16];
	uint64_t lo;
	char *o = out;

	if (id_counter == 0)
		uuid_generate_random(id_base);
	memcpy(u, id_base, sizeof(u));
	/* Add the counter to the low 64 random bits, read big-endian so the
	 * carry runs away from byte 8, whose top two bits are the RFC 4122
	 * variant (restored below). */
	lo = 0;
	for (int i = 8; i < 16; i++)
		lo = lo << 8 | u[i];
	lo += ++id_counter;
	for (int i = 15; i >= 8; i--, lo >>= 8)
		u[i] = (uint8_t)lo;
	u[8] = (u[8] & 0x3f) | 0x80;
	for (int i = 0; i < 16; i++) {
		if (dash[i])
			*o++ = '-';
		*o++ = hex[u[i] >> 4];
		*o++ = hex[u[i] & 15];
	}
	*o = '\0';
}

const char *
qent_cause_name(int cause)
{
	static const char *const names[CAUSE_MAX] = {
		[CAUSE_TIMEOUT] = "timeout",
		[CAUSE_NACKED] = "nacked",
		[CAUSE_RELEASED] = "released",
		[CAUSE_DISCONNECTED] = "disconnected",
		[CAUSE_EXPIRED] = "expired",
		[CAUSE_OVERFLOW] = "overflow",
	};

	return cause >= 0 && cause < CAUSE_MAX ? names[cause] : "unknown";
}

struct qent *
qent_new(struct msg *m, struct group *g)
{
	struct qent *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	list_init(&e->link);
	e->msg = msg_ref(m);
	e->group = g;
	hnode_init(&e->dn);
	hnode_init(&e->tn);
	return e;
}

static void
hist_entry_fini(struct qhist_entry *h)
{
	free(h->consumer);
	free(h->error);
}

static void (*release_hook)(void *, struct qent *);
static void *release_arg;

void
qent_set_release_hook(void (*fn)(void *arg, struct qent *e), void *arg)
{
	release_hook = fn;
	release_arg = arg;
}

void
qent_free(struct qent *e)
{
	if (!e)
		return;
	if (e->group)
		group_entry_gone(e);
	if (e->durable && release_hook)
		release_hook(release_arg, e);
	for (uint16_t i = 0; i < e->nhist; i++)
		hist_entry_fini(&e->hist[i]);
	free(e->hist);
	msg_unref(e->msg);
	free(e);
}

void
qent_frame(const struct qent *e, struct fy_frame *f)
{
	const struct msg *m = e->msg;
	const struct topic *t = e->group->topic;

	memset(f, 0, sizeof(*f));
	f->type = FY_T_MSG;
	f->msg.id = (struct fy_str){m->id, m->id_len};
	f->msg.topic = (struct fy_str){t->name, (uint32_t)t->name_len};
	f->msg.attempt = (uint32_t)e->attempts + 1;
	f->msg.ts = m->ts;
	f->msg.hdr = m->hdr;
	f->msg.nhdr = m->nhdr;
	f->msg.hist = m->hist;
	f->msg.nhist = m->nhist;
	f->msg.reply_to = m->reply_to;
	f->msg.corr = m->corr;
	f->msg.body = (struct fy_str){m->body, m->body_len};
}

int
qent_hist_add(struct qent *e, int cause, uint64_t at, const char *consumer,
    size_t consumer_len, const char *error, size_t error_len)
{
	struct qhist_entry *h;

	if (!e->hist && !(e->hist = calloc(QHIST_MAX, sizeof(*e->hist))))
		return -ENOMEM;
	if (e->nhist == QHIST_MAX) {
		/* Keep the most recent: drop the oldest. */
		hist_entry_fini(&e->hist[0]);
		memmove(e->hist, e->hist + 1,
		    (QHIST_MAX - 1) * sizeof(*e->hist));
		e->nhist--;
	}
	h = &e->hist[e->nhist];
	h->at = at;
	h->cause = (uint8_t)cause;
	h->consumer = strndup(consumer ? consumer : "", consumer_len);
	h->error = error_len ? strndup(error, error_len) : NULL;
	if (!h->consumer || (error_len && !h->error)) {
		hist_entry_fini(h);
		return -ENOMEM;
	}
	e->nhist++;
	return 0;
}
