/*
 * store.c - journal records in, broker state out: the one apply().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker.h"
#include "clock.h"
#include "conn.h"
#include "group.h"
#include "journal.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "record.h"
#include "store.h"
#include "sub.h"
#include "topic.h"

/* ---- gid -> group ---- */

static struct group **
gid_slot(struct store *s, uint64_t gid)
{
	return &s->gids[(gid * 0x9e3779b97f4a7c15ull >> 32) &
	    (s->gids_cap - 1)];
}

static struct group *
gid_find(struct store *s, uint64_t gid)
{
	struct group *g;

	if (!s->gids_cap)
		return NULL;
	for (g = *gid_slot(s, gid); g; g = g->gnext)
		if (g->gid == gid)
			return g;
	return NULL;
}

static int
gid_add(struct store *s, struct group *g)
{
	struct group **slot;

	if (s->ngids >= s->gids_cap) {
		uint32_t cap = s->gids_cap ? s->gids_cap * 2 : 64;
		struct group **old = s->gids, *h, *next;
		uint32_t oldcap = s->gids_cap;

		if (!(s->gids = calloc(cap, sizeof(*s->gids)))) {
			s->gids = old;
			return -ENOMEM;
		}
		s->gids_cap = cap;
		for (uint32_t i = 0; i < oldcap; i++)
			for (h = old[i]; h; h = next) {
				next = h->gnext;
				slot = gid_slot(s, h->gid);
				h->gnext = *slot;
				*slot = h;
			}
		free(old);
	}
	slot = gid_slot(s, g->gid);
	g->gnext = *slot;
	*slot = g;
	s->ngids++;
	return 0;
}

static void
gid_del(struct store *s, struct group *g)
{
	struct group **pp;

	if (!s->gids_cap)
		return;
	for (pp = gid_slot(s, g->gid); *pp; pp = &(*pp)->gnext)
		if (*pp == g) {
			*pp = g->gnext;
			s->ngids--;
			return;
		}
}

/* ---- replay index: (gid, mseq) -> entry ---- */

static size_t
idx_home(const struct store *s, uint64_t mseq)
{
	return (size_t)(mseq * 0x9e3779b97f4a7c15ull >> 20) &
	    (s->idx_cap - 1);
}

static uint64_t
entry_gid(const struct qent *e)
{
	return e->group ? e->group->gid : 0;
}

static int
idx_insert(struct store *s, struct qent *e)
{
	size_t i;

	if ((s->idx_n + 1) * 2 > s->idx_cap) {
		size_t cap = s->idx_cap ? s->idx_cap * 2 : 4096;
		struct store_idx *old = s->idx;
		size_t oldcap = s->idx_cap;

		if (!(s->idx = calloc(cap, sizeof(*s->idx)))) {
			s->idx = old;
			return -ENOMEM;
		}
		s->idx_cap = cap;
		for (size_t k = 0; k < oldcap; k++) {
			if (!old[k].e)
				continue;
			for (i = idx_home(s, old[k].mseq); s->idx[i].e;
			    i = (i + 1) & (cap - 1))
				;
			s->idx[i] = old[k];
		}
		free(old);
	}
	for (i = idx_home(s, e->msg->seq); s->idx[i].e;
	    i = (i + 1) & (s->idx_cap - 1))
		;
	s->idx[i] = (struct store_idx){e->msg->seq, e};
	s->idx_n++;
	return 0;
}

static struct qent *
idx_find(const struct store *s, uint64_t gid, uint64_t mseq)
{
	if (!s->idx_cap)
		return NULL;
	for (size_t i = idx_home(s, mseq); s->idx[i].e;
	    i = (i + 1) & (s->idx_cap - 1))
		if (s->idx[i].mseq == mseq && entry_gid(s->idx[i].e) == gid)
			return s->idx[i].e;
	return NULL;
}

static void
idx_remove(struct store *s, struct qent *e)
{
	size_t mask = s->idx_cap - 1, i, j;

	if (!s->idx_cap)
		return;
	for (i = idx_home(s, e->msg->seq); s->idx[i].e != e;
	    i = (i + 1) & mask)
		if (!s->idx[i].e)
			return;
	/* Backward-shift deletion keeps probe chains whole without
	 * tombstones. */
	for (j = (i + 1) & mask; s->idx[j].e; j = (j + 1) & mask) {
		size_t h = idx_home(s, s->idx[j].mseq);

		if (((j - h) & mask) >= ((j - i) & mask)) {
			s->idx[i] = s->idx[j];
			i = j;
		}
	}
	s->idx[i] = (struct store_idx){0, NULL};
	s->idx_n--;
}

/* ---- holding records alive ---- */

void
store_hold(struct broker *b, struct qent *e)
{
	struct store *s = &b->store;
	struct msg *m = e->msg;

	e->durable = 1;
	e->mnext = m->ents;
	m->ents = e;
	if (m->dur_refs++ == 0) {
		list_add_tail(&s->live, &m->slink);
		if (m->seq && s->j)
			journal_ref(s->j, m->seq);
	}
	if (s->replaying && idx_insert(s, e) < 0)
		log_warn("out of memory indexing message %s for replay",
		    m->id);
}

/* qent_free() hook for durable entries. */
static void
release(void *arg, struct qent *e)
{
	struct broker *b = arg;
	struct store *s = &b->store;
	struct msg *m = e->msg;

	struct qent **pp;

	if (s->replaying)
		idx_remove(s, e);
	for (pp = &m->ents; *pp; pp = &(*pp)->mnext)
		if (*pp == e) {
			*pp = e->mnext;
			break;
		}
	if (--m->dur_refs == 0) {
		list_del(&m->slink);
		if (m->seq && s->j)
			journal_unref(s->j, m->seq);
	}
}

/* ---- the one apply ---- */

/* Give m a new home record: the journal keeps seq instead of m->seq. */
static void
rehome(struct store *s, struct msg *m, uint64_t seq)
{
	struct qent *e;

	if (s->replaying)
		for (e = m->ents; e; e = e->mnext)
			idx_remove(s, e);
	journal_ref(s->j, seq);
	journal_unref(s->j, m->seq);
	m->seq = seq;
	list_del(&m->slink);
	list_add_tail(&s->live, &m->slink);
	if (s->replaying)
		for (e = m->ents; e; e = e->mnext)
			idx_insert(s, e);
}

/* Recreate a moved message whose original record is gone. */
static int
recreate(struct broker *b, uint64_t seq, const struct rec *r)
{
	struct store *s = &b->store;
	uint64_t now = clock_wall_ms(), mono = clock_mono_ms();
	struct topic *t;
	struct msg *m;

	if (!(t = topic_get(b, r->move.topic.p, r->move.topic.len)))
		return -ENOMEM;
	m = msg_new(&r->move.m, r->move.id.p, r->move.id.len, r->move.ts,
	    r->move.hist, r->move.nhist);
	if (!m)
		return -ENOMEM;
	m->seq = seq;
	m->topic = t;
	for (uint32_t i = 0; i < r->move.nent; i++) {
		const struct rec_entry *re = &r->move.ent[i];
		struct group *g = re->gid ? gid_find(s, re->gid) : NULL;
		struct qent *e;

		if (re->gid && !g)
			continue;	/* its group was deleted since */
		if (!(e = qent_new(m, g)))
			goto nomem;
		e->attempts = (uint16_t)(re->attempts > UINT16_MAX ?
		    UINT16_MAX : re->attempts);
		for (int k = 0; k < CAUSE_MAX && k < REC_CAUSES; k++)
			e->causes[k] = (uint16_t)(re->causes[k] > UINT16_MAX ?
			    UINT16_MAX : re->causes[k]);
		for (uint32_t k = 0; k < re->nhist; k++)
			qent_hist_add(e, (int)re->hist[k].cause, re->hist[k].at,
			    re->hist[k].consumer.p, re->hist[k].consumer.len,
			    re->hist[k].error.p, re->hist[k].error.len);
		if (!g) {
			list_add_tail(&t->backlog, &e->link);
			t->nbacklog++;
		} else if (re->not_before > now) {
			e->deadline = mono + (re->not_before - now);
			if (heap_push(&g->delayed, e) < 0) {
				qent_free(e);
				goto nomem;
			}
			group_arm_delay(g);
		} else {
			list_add_tail(&g->ready, &e->link);
			g->nready++;
		}
		store_hold(b, e);
	}
	msg_unref(m);		/* the entries hold it, if any */
	return 0;
nomem:
	msg_unref(m);
	return -ENOMEM;
}

static int
apply_move(struct broker *b, uint64_t seq, const struct rec *r,
    struct msg *live)
{
	struct store *s = &b->store;
	struct qent *e;

	if (!live && s->replaying) {
		/* Still there if any of its entries is. */
		for (uint32_t i = 0; i < r->move.nent && !live; i++)
			if ((e = idx_find(s, r->move.ent[i].gid,
			    r->move.old_mseq)))
				live = e->msg;
	}
	if (live) {
		/* Its state was rebuilt record by record: only rename. */
		rehome(s, live, seq);
		return 0;
	}
	return recreate(b, seq, r);
}

/*
 * Apply record r (seq) to the broker.  hint is the entry an ACK or FAIL is
 * about when known (live); at replay it is looked up.  For REC_PUB *mp
 * (if not NULL) gets a reference to the message; for REC_GROUP *gp gets
 * the group.
 */
static int
apply(struct broker *b, uint64_t seq, const struct rec *r, struct qent *hint,
    struct msg **mp, struct group **gp)
{
	struct store *s = &b->store;
	struct topic *t;
	struct group *g;
	struct qent *e;
	struct msg *m;
	uint64_t now, delay;

	switch (r->type) {
	case REC_PUB:
		if (!(t = topic_get(b, r->pub.topic.p, r->pub.topic.len)))
			return -ENOMEM;
		m = msg_new(&r->pub.m, r->pub.id.p, r->pub.id.len, r->pub.ts,
		    r->pub.hist, r->pub.nhist);
		if (!m)
			return -ENOMEM;
		m->seq = seq;
		if (topic_publish(t, m) < 0) {
			msg_unref(m);
			return -ENOMEM;
		}
		if (mp)
			*mp = m;
		else
			msg_unref(m);
		return 0;
	case REC_ACK:
		if (!(e = hint ? hint : idx_find(s, r->ack.gid, r->ack.mseq)))
			return 0;	/* dropped with its group */
		if (e->sub) {
			group_ack(e);
		} else {
			group_detach(e);
			e->group->st.acked++;
			qent_free(e);
		}
		return 0;
	case REC_FAIL:
		if (r->fail.cause >= CAUSE_MAX)
			return -EBADMSG;
		if (!(e = hint ? hint :
		    idx_find(s, r->fail.gid, r->fail.mseq)))
			return 0;
		if (!e->sub)
			group_detach(e);
		now = clock_wall_ms();
		delay = r->fail.not_before > now ? r->fail.not_before - now : 0;
		group_fail(e, (int)r->fail.cause, r->fail.consumer.p,
		    r->fail.consumer.len, r->fail.error.p, r->fail.error.len,
		    delay);
		return 0;
	case REC_GROUP:
		if (!(t = topic_get(b, r->group.topic.p, r->group.topic.len)))
			return -ENOMEM;
		if ((g = gid_find(s, r->group.gid))) {
			/* Compaction copied the group forward. */
			if (seq > g->home) {
				journal_ref(s->j, seq);
				journal_unref(s->j, g->home);
				g->home = seq;
			}
			goto done;
		}
		g = topic_group_get(t, r->group.name.p, r->group.name.len,
		    r->group.ack_timeout_ms, r->group.max_attempts, 0);
		if (!g)
			return -ENOMEM;
		if (g->gid) {
			log_warn("journal: group %s/%s recreated with id %llu "
			    "(had %llu)", t->name, g->name,
			    (unsigned long long)r->group.gid,
			    (unsigned long long)g->gid);
			gid_del(s, g);
			journal_unref(s->j, g->home);
		}
		g->gid = r->group.gid;
		g->home = seq;
		if (gid_add(s, g) < 0)
			return -ENOMEM;
		journal_ref(s->j, seq);
		if (s->next_gid <= g->gid)
			s->next_gid = g->gid + 1;
done:
		if (gp)
			*gp = g;
		return 0;
	case REC_GROUP_DEL:
		if ((g = gid_find(s, r->group_del.gid)))
			topic_group_delete(g);
		return 0;
	case REC_TOPIC_DEL:
		if ((t = topic_find(b, r->topic_del.topic.p,
		    r->topic_del.topic.len)))
			topic_delete(t);
		return 0;
	case REC_MOVE:
		return apply_move(b, seq, r, hint ? hint->msg : NULL);
	}
	return -EBADMSG;
}

void
store_group_forget(struct broker *b, struct group *g)
{
	struct store *s = &b->store;

	if (!g->gid)
		return;
	gid_del(s, g);
	if (s->j)
		journal_unref(s->j, g->home);
	g->gid = 0;
}

/* ---- live operations ---- */

/* Encode and append r.  0 with *seq set, or the journal's -errno. */
static int
append(struct broker *b, const struct rec *r, uint64_t *seq)
{
	struct store *s = &b->store;
	int e;

	*seq = 0;
	msgpack_sbuffer_clear(&s->sb);
	if ((e = rec_encode(&s->sb, r)) < 0)
		return e;
	e = journal_append(s->j, r->type, s->sb.data, s->sb.size, seq);
	if (e == 0 && !s->dirty) {
		/* The commit runs in the end-of-turn flush. */
		s->dirty = 1;
		broker_want_commit(b);
	}
	if (e < 0 && !s->warned) {
		s->warned = 1;
		log_warn("journal cannot write (%s): refusing publishes; acks "
		    "are applied but not durable until it recovers",
		    strerror(-e));
	}
	return e;
}

int
store_publish(struct broker *b, struct topic *t, const struct fy_pubmsg *pm,
    const char *id, size_t id_len, uint64_t ts, const struct fy_hist *hist,
    uint32_t nhist, struct msg **mp, uint64_t *seq)
{
	struct rec r = {.type = REC_PUB};
	int e;

	r.pub.hist = hist;
	r.pub.nhist = nhist;
	r.pub.topic = (struct fy_str){t->name, (uint32_t)t->name_len};
	r.pub.id = (struct fy_str){id, (uint32_t)id_len};
	r.pub.ts = ts;
	r.pub.m = *pm;
	if ((e = append(b, &r, seq)) < 0)
		return e;
	return apply(b, *seq, &r, NULL, mp, NULL);
}

void
store_ack(struct broker *b, struct qent *e, uint64_t *seq)
{
	struct rec r = {.type = REC_ACK};

	r.ack.gid = e->group->gid;
	r.ack.mseq = e->msg->seq;
	/* Entries of ephemeral groups are not journaled. */
	if (e->durable)
		append(b, &r, seq);
	else
		*seq = 0;
	apply(b, *seq, &r, e, NULL, NULL);
}

/*
 * Move e's message to "<topic>.dlq": publish the copy (with its history),
 * then remove the original with an ack record.  Copy before delete, each a
 * record of its own: replay never decides to dead-letter, and a crash in
 * between leaves a duplicate rather than a loss.  If the copy cannot be
 * stored, e stays in its group (delayed) and is retried on its next
 * failure.
 */
static void
dead_letter(struct broker *b, struct qent *e)
{
	struct group *g = e->group;
	struct msg *m = e->msg, *dm;
	struct group_dlq d;
	struct topic *t;
	uint64_t seq;
	int r;

	if ((r = group_dlq_prepare(e, &d)) == 0) {
		if (!(t = topic_get(b, d.topic, d.topic_len)))
			r = -ENOMEM;
		else
			r = store_publish(b, t, &d.pm, m->id, m->id_len, m->ts,
			    d.hist, d.nhist, &dm, &seq);
	}
	group_dlq_release(&d);
	if (r < 0) {
		log_warn("cannot dead-letter message %s of %s/%s: %s; it stays "
		    "queued", m->id, g->topic->name, g->name, strerror(-r));
		return;
	}
	msg_unref(dm);
	g->st.dead_lettered++;
	log_debug("message %s of %s/%s dead-lettered after %u attempts",
	    m->id, g->topic->name, g->name, (unsigned)e->attempts);
	store_ack(b, e, &seq);
}

void
store_fail(struct broker *b, struct qent *e, int cause, const char *err,
    size_t err_len, int64_t delay_ms)
{
	struct rec r = {.type = REC_FAIL};
	const char *who = e->sub ? e->sub->conn->name : "";
	uint64_t delay, seq = 0;

	/* The jitter is drawn here and journaled, so replay is exact. */
	if (cause == CAUSE_RELEASED)
		delay = 0;	/* no fault: no backoff */
	else if (delay_ms >= 0)
		delay = (uint64_t)delay_ms;
	else
		delay = group_backoff_ms(b->opt->retry_base_ms,
		    b->opt->retry_max_ms, (uint32_t)e->attempts + 1u,
		    broker_rand(b));
	r.fail.gid = e->group->gid;
	r.fail.mseq = e->msg->seq;
	r.fail.cause = (uint32_t)cause;
	r.fail.at = clock_wall_ms();
	r.fail.not_before = delay ? r.fail.at + delay : 0;
	r.fail.consumer = (struct fy_str){who, (uint32_t)strlen(who)};
	r.fail.error = (struct fy_str){err, (uint32_t)err_len};
	if (e->durable)
		append(b, &r, &seq);
	/* Live, the delay is exact rather than re-derived from the clock. */
	group_fail(e, cause, who, strlen(who), err, err_len, delay);
	if (e->group->max_attempts && e->attempts >= e->group->max_attempts)
		dead_letter(b, e);
}

int
store_group_get(struct broker *b, struct topic *t, const char *name,
    size_t len, uint32_t ack_timeout_ms, uint32_t max_attempts,
    int ephemeral, struct group **gp)
{
	struct rec r = {.type = REC_GROUP};
	uint64_t seq;
	int e;

	if ((*gp = topic_group_find(t, name, len)))
		return 0;
	if (ephemeral) {
		*gp = topic_group_get(t, name, len, ack_timeout_ms,
		    max_attempts, 1);
		return *gp ? 0 : -ENOMEM;
	}
	r.group.gid = b->store.next_gid;
	r.group.topic = (struct fy_str){t->name, (uint32_t)t->name_len};
	r.group.name = (struct fy_str){name, (uint32_t)len};
	r.group.ack_timeout_ms = ack_timeout_ms;
	r.group.max_attempts = max_attempts;
	if ((e = append(b, &r, &seq)) < 0)
		return e;
	return apply(b, seq, &r, NULL, NULL, gp);
}

void
store_group_delete(struct broker *b, struct group *g)
{
	struct rec r = {.type = REC_GROUP_DEL};
	uint64_t seq;

	if (!g->gid) {
		topic_group_delete(g);
		return;
	}
	r.group_del.gid = g->gid;
	append(b, &r, &seq);
	apply(b, seq, &r, NULL, NULL, NULL);
}

void
store_topic_delete(struct broker *b, struct topic *t)
{
	struct rec r = {.type = REC_TOPIC_DEL};
	uint64_t seq;

	r.topic_del.topic = (struct fy_str){t->name, (uint32_t)t->name_len};
	append(b, &r, &seq);
	apply(b, seq, &r, NULL, NULL, NULL);
}

/* ---- the catalog ---- */

/*
 * A new segment begins (journal_append() is placing the record that did
 * not fit): write every live group first, so that replay starting at any
 * segment knows the groups its records name, and the groups' old records
 * no longer pin old segments.  Runs inside append(): uses its own buffer.
 */
static int
catalog_cb(void *arg)
{
	struct broker *b = arg;
	struct store *s = &b->store;
	struct rec r = {.type = REC_GROUP};
	uint64_t seq;
	int e;

	for (uint32_t i = 0; i < s->gids_cap; i++) {
		for (struct group *g = s->gids[i]; g; g = g->gnext) {
			r.group.gid = g->gid;
			r.group.topic = (struct fy_str){g->topic->name,
			    (uint32_t)g->topic->name_len};
			r.group.name = (struct fy_str){g->name,
			    (uint32_t)strlen(g->name)};
			r.group.ack_timeout_ms = g->ack_timeout_ms;
			r.group.max_attempts = g->max_attempts;
			msgpack_sbuffer_clear(&s->catsb);
			if ((e = rec_encode(&s->catsb, &r)) < 0 ||
			    (e = journal_append(s->j, REC_GROUP, s->catsb.data,
			    s->catsb.size, &seq)) < 0)
				return e;
			/* Moves the group's home here; the gid table is
			 * not changed, so the walk goes on safely. */
			apply(b, seq, &r, NULL, NULL, NULL);
		}
	}
	return 0;
}

/* ---- compaction ---- */

/* Copy m forward: one REC_MOVE with its state in every durable group. */
static int
move_msg(struct broker *b, struct msg *m)
{
	struct rec r = {.type = REC_MOVE};
	uint64_t now = clock_wall_ms(), mono = clock_mono_ms(), seq;
	struct rec_entry *ent;
	struct rec_qhist *qh = NULL, *q;
	uint32_t n = 0, nh = 0;
	struct qent *e;
	int err = -ENOMEM;

	for (e = m->ents; e; e = e->mnext) {
		n++;
		nh += e->nhist;
	}
	if (!(ent = calloc(n ? n : 1, sizeof(*ent))) ||
	    (nh && !(qh = calloc(nh, sizeof(*qh)))))
		goto out;
	q = qh;
	n = 0;
	for (e = m->ents; e; e = e->mnext) {
		struct rec_entry *re = &ent[n++];

		re->gid = e->group ? e->group->gid : 0;
		re->attempts = e->attempts;
		for (int k = 0; k < CAUSE_MAX && k < REC_CAUSES; k++)
			re->causes[k] = e->causes[k];
		/* A delay keeps its wall-clock end; a lease is not durable:
		 * the entry is simply ready again after a restart. */
		if (e->heap_idx != HEAP_NONE && e->deadline > mono)
			re->not_before = now + (e->deadline - mono);
		re->hist = q;
		re->nhist = e->nhist;
		for (uint16_t k = 0; k < e->nhist; k++, q++) {
			const struct qhist_entry *h = &e->hist[k];

			q->cause = h->cause;
			q->at = h->at;
			q->consumer = (struct fy_str){h->consumer,
			    (uint32_t)strlen(h->consumer)};
			q->error = (struct fy_str){h->error,
			    h->error ? (uint32_t)strlen(h->error) : 0};
		}
	}
	r.move.old_mseq = m->seq;
	r.move.topic = (struct fy_str){m->topic->name,
	    (uint32_t)m->topic->name_len};
	r.move.id = (struct fy_str){m->id, m->id_len};
	r.move.ts = m->ts;
	r.move.m.body = (struct fy_str){m->body, m->body_len};
	r.move.m.hdr = m->hdr;
	r.move.m.nhdr = m->nhdr;
	r.move.hist = m->hist;
	r.move.nhist = m->nhist;
	r.move.ent = ent;
	r.move.nent = n;
	if ((err = append(b, &r, &seq)) == 0)
		err = apply(b, seq, &r, m->ents, NULL, NULL);
out:
	free(ent);
	free(qh);
	return err;
}

/* Objects moved per loop turn: bounds the time compaction takes away
 * from clients. */
#define COMPACT_BATCH 2048

/*
 * The journal deletes segments oldest first, once nothing lives in them.
 * When the oldest segment is mostly dead, its live messages and groups are
 * appended again, so that it and the dead segments after it can go: disk
 * use then follows what is pending even if one old message is never acked.
 * A mostly live segment is left alone: copying it would free nothing.
 */
static void
compact_cb(evutil_socket_t fd, short what, void *arg)
{
	struct broker *b = arg;
	struct store *s = &b->store;
	struct journal_segment_info si;
	struct timeval tv = {1, 0};
	struct msg *m;
	int budget = COMPACT_BATCH;

	/*
	 * Groups need no moving: every segment starts with the catalog.
	 * Moving the last live message out of the oldest segment deletes it,
	 * so segment 0 is the next candidate each time round.
	 */
	while (budget > 0 && !journal_error(s->j) &&
	    journal_segment_info(s->j, 0, &si) == 0 && !si.active &&
	    si.live * 2 <= si.records) {
		int moved = 0;

		while ((m = list_first(&s->live, struct msg, slink)) &&
		    m->seq <= si.last_seq && budget-- > 0) {
			if (move_msg(b, m) < 0)
				goto rearm;
			s->moved++;
			moved++;
		}
		if (m && m->seq <= si.last_seq)
			break;		/* budget spent mid-segment */
		log_debug("journal: segment %llu..%llu compacted (%d moved)",
		    (unsigned long long)si.first_seq,
		    (unsigned long long)si.last_seq, moved);
		/* Nothing of ours lives there, yet it stays: wait for the
		 * journal rather than spin. */
		if (!moved)
			break;
	}
	if (budget <= 0)
		tv.tv_sec = 0;	/* more may be due: go on next turn */
rearm:
	evtimer_add(s->compact_ev, &tv);
}

/* ---- commit and confirms ---- */

void
store_commit(struct broker *b)
{
	struct store *s = &b->store;
	int e;

	s->dirty = 0;
	e = journal_commit(s->j);

	if (e == 0 && s->warned) {
		s->warned = 0;
		log_info("journal writes again: accepting publishes");
	}
}

int
store_error(const struct broker *b)
{
	return journal_error(b->store.j);
}

void
store_wait(struct broker *b, struct conn *c)
{
	if (list_empty(&c->plink))
		list_add_tail(&b->store.waiting, &c->plink);
}

static void
durable_cb(void *arg, uint64_t written, uint64_t synced)
{
	struct broker *b = arg;
	struct store *s = &b->store;
	struct list *pos, *tmp;

	s->confirmable = b->opt->fsync == FSYNC_ALWAYS ? synced : written;
	list_for_each_safe(pos, tmp, &s->waiting) {
		struct conn *c = list_entry(pos, struct conn, plink);

		if (conn_confirm(c, s->confirmable))
			list_del(&c->plink);
	}
}

/* ---- open, replay, close ---- */

static int
replay_cb(void *arg, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len)
{
	struct broker *b = arg;
	struct rec r;
	int e;

	if ((e = rec_decode(&b->store.zone, type, p, len, &r)) < 0) {
		log_error("journal record %llu (type %u, %zu bytes) cannot be "
		    "decoded: %s", (unsigned long long)seq, type, len,
		    strerror(-e));
		return e;
	}
	if ((e = apply(b, seq, &r, NULL, NULL, NULL)) < 0) {
		log_error("journal record %llu (type %u) cannot be applied: "
		    "%s", (unsigned long long)seq, type, strerror(-e));
		return e;
	}
	b->store.replayed++;
	return 0;
}

int
store_open(struct broker *b, char *err, size_t errlen)
{
	struct store *s = &b->store;
	struct journal_opts jo = {
		.dir = b->opt->data_dir,
		.fsync = b->opt->fsync,
		.segment_size = b->opt->segment_size,
	};
	uint64_t t0 = clock_mono_ms();
	int e;

	msgpack_sbuffer_init(&s->sb);
	msgpack_sbuffer_init(&s->catsb);
	if (!msgpack_zone_init(&s->zone, 4096))
		return -ENOMEM;
	list_init(&s->waiting);
	list_init(&s->live);
	s->next_gid = 1;
	qent_set_release_hook(release, b);
	if ((e = journal_open(&s->j, b->base, &jo, err, errlen)) < 0)
		return e;
	s->replaying = 1;
	e = journal_replay(s->j, replay_cb, b, b->opt->journal_repair, err,
	    errlen);
	s->replaying = 0;
	free(s->idx);
	s->idx = NULL;
	s->idx_cap = s->idx_n = 0;
	if (e < 0) {
		if (err && !*err)
			snprintf(err, errlen, "journal replay failed: %s",
			    strerror(-e));
		return e;
	}
	s->confirmable = journal_written_seq(s->j);
	journal_set_durable_cb(s->j, durable_cb, b);
	journal_set_roll_cb(s->j, catalog_cb, b);
	if (!(s->compact_ev = evtimer_new(b->base, compact_cb, b)))
		return -ENOMEM;
	compact_cb(-1, 0, b);
	log_info("journal replayed: %llu records in %llu ms, %u topics",
	    (unsigned long long)s->replayed,
	    (unsigned long long)(clock_mono_ms() - t0), b->ntopics);
	return 0;
}

void
store_close(struct broker *b)
{
	struct store *s = &b->store;

	if (s->compact_ev) {
		event_free(s->compact_ev);
		s->compact_ev = NULL;
	}
	if (s->j) {
		journal_close(s->j);
		s->j = NULL;
	}
	msgpack_sbuffer_destroy(&s->sb);
	msgpack_sbuffer_destroy(&s->catsb);
	msgpack_zone_destroy(&s->zone);
	free(s->gids);
	s->gids = NULL;
	s->gids_cap = s->ngids = 0;
}
