/*
 * store.c - journal records in, broker state out: the one apply().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core.h"
#include "clock.h"
#include "group.h"
#include "journal.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "record.h"
#include "store.h"
#include "topic.h"
#include "trace.h"

/* Names in records were checked when they were live; a damaged journal
 * can still hold anything, so replay checks them again. */
static int
name_ok(struct fy_str s)
{
	return fy_name_valid(s.p, s.len);
}

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

/*
 * Replay inserts in seq order, and the table is as large as what is
 * pending: hashed slot by slot, nearly every insert is a cache and TLB
 * miss.  So runs of IDX_RUN consecutive seqs share a block of as many
 * slots, the block picked by Fibonacci hashing (the top bits of the
 * product; bits from the middle, as this took before, step through a
 * power-of-two table by a stride with factors of two, reaching a fraction
 * of the slots: replaying 2 million pending messages spent 31% of its
 * time probing).  A message's entries in several groups share a home and
 * spill into the next slots, still in the same cache lines.
 */
#define IDX_RUN 16

static size_t
idx_home(const struct store *s, uint64_t mseq)
{
	int bits = __builtin_ctzll(s->idx_cap);

	return (size_t)((mseq / IDX_RUN * 0x9e3779b97f4a7c15ull >>
	    (64 - bits)) & ~(uint64_t)(IDX_RUN - 1)) | (mseq % IDX_RUN);
}

static uint64_t
entry_gid(const struct qent *e)
{
	return e->group ? e->group->gid : 0;
}

/*
 * The table is as large as what is pending, and every insert lands at
 * random in it: with 4 KiB pages nearly each one is a TLB miss too (the
 * larger part of replaying 2 million pending messages).  Huge pages where
 * the kernel gives them on request; mmap'd zeroed either way.
 */
static struct store_idx *
idx_alloc(size_t cap)
{
	size_t len = cap * sizeof(struct store_idx);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, len, MADV_HUGEPAGE);
	return p;
}

static void
idx_free(struct store_idx *idx, size_t cap)
{
	if (idx)
		munmap(idx, cap * sizeof(*idx));
}

static int
idx_insert(struct store *s, struct qent *e)
{
	size_t i;

	if ((s->idx_n + 1) * 4 > s->idx_cap * 3) {
		size_t cap = s->idx_cap ? s->idx_cap * 2 : 4096;
		struct store_idx *old = s->idx;
		size_t oldcap = s->idx_cap;

		if (!(s->idx = idx_alloc(cap))) {
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
		idx_free(old, oldcap);
	}
	for (i = idx_home(s, qent_msg(e)->seq); s->idx[i].e;
	    i = (i + 1) & (s->idx_cap - 1))
		;
	s->idx[i] = (struct store_idx){qent_msg(e)->seq, e};
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
	for (i = idx_home(s, qent_msg(e)->seq); s->idx[i].e != e;
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
store_hold(struct core *b, struct qent *e)
{
	struct store *s = &b->store;
	struct msg *m = qent_msg(e);
	char idbuf[MSG_ID_LEN + 1];

	/* A message's record stays referenced while it has a durable
	 * entry. */
	if (!msg_durable(m) && m->seq && s->j)
		journal_ref(s->j, m->seq);
	qent_set_durable(e, 1);
	if (s->replaying && idx_insert(s, e) < 0)
		log_warn("out of memory indexing message %s for replay",
		    msg_id(m, idbuf).p);
}

/* qent_free() hook for durable entries. */
static void
release(void *arg, struct qent *e)
{
	struct core *b = arg;
	struct store *s = &b->store;
	struct msg *m = qent_msg(e);

	if (s->replaying)
		idx_remove(s, e);
	qent_set_durable(e, 0);
	if (!msg_durable(m) && m->seq && s->j)
		journal_unref(s->j, m->seq);
}

/* ---- the one apply ---- */

/* Give m a new home record: the journal keeps seq instead of m->seq. */
static void
rehome(struct store *s, struct msg *m, uint64_t seq)
{
	struct qent *e;

	if (s->replaying)
		for (e = msg_ents(m); e; e = msg_ents_next(e))
			if (e->flags & QE_DURABLE)
				idx_remove(s, e);
	journal_ref(s->j, seq);
	journal_unref(s->j, m->seq);
	m->seq = seq;
	if (s->replaying)
		for (e = msg_ents(m); e; e = msg_ents_next(e))
			if (e->flags & QE_DURABLE)
				idx_insert(s, e);
}

/* A record replayed from its segment's index came without its body, its
 * length only (store_open()): the message can only be built paged out. */
static int
body_absent(const struct fy_pubmsg *pm)
{
	return pm->body.len && !pm->body.p;
}

/* Recreate a moved message whose original record is gone. */
static int
recreate(struct core *b, uint64_t seq, const struct rec *r)
{
	struct store *s = &b->store;
	struct topic *t;
	struct msg *m;

	if (!name_ok(r->move.topic))
		return -EBADMSG;
	if (!(t = topic_get(b, r->move.topic.p, r->move.topic.len)))
		return -ENOMEM;
	m = (body_absent(&r->move.m) || page_replay_paged(b,
	    r->move.m.body.len) ? msg_new_paged : msg_new)(&r->move.m, r->move.id.p, r->move.id.len, r->move.ts,
	    r->move.hist, r->move.nhist);
	if (!m)
		return -ENOMEM;
	m->seq = seq;
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
		for (int k = 0; k < CAUSE_NFAIL; k++) {
			struct qside *q;

			if (!re->causes[k] || !(q = qent_side_get(e)))
				continue;
			q->causes[k] = (uint16_t)(re->causes[k] > UINT16_MAX ?
			    UINT16_MAX : re->causes[k]);
		}
		for (uint32_t k = 0; k < re->nhist; k++)
			qent_hist_add(e, (int)re->hist[k].cause, re->hist[k].at,
			    re->hist[k].consumer.p, re->hist[k].consumer.len,
			    re->hist[k].error.p, re->hist[k].error.len);
		if (!g) {
			list_add_tail(&t->backlog, &e->link);
			t->nbacklog++;
		} else {
			group_add_at(g, e, re->not_before ?
			    msg_mono_of(re->not_before) : 0);
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
apply_move(struct core *b, uint64_t seq, const struct rec *r,
    struct msg *live)
{
	struct store *s = &b->store;
	struct qent *e;

	if (!live && s->replaying) {
		/* Still there if any of its entries is. */
		for (uint32_t i = 0; i < r->move.nent && !live; i++)
			if ((e = idx_find(s, r->move.ent[i].gid,
			    r->move.old_mseq)))
				live = qent_msg(e);
	}
	if (live) {
		/* Its state was rebuilt record by record: only rename. */
		rehome(s, live, seq);
		return 0;
	}
	return recreate(b, seq, r);
}

/* Let a remembered id's publish record go (dedup_prune's callback). */
static void
dedup_release(void *arg, uint64_t seq)
{
	struct core *b = arg;

	if (b->store.j && seq)
		journal_unref(b->store.j, seq);
}

/* t: the record's topic when known (live), else NULL (replay). */
static int
apply_pub(struct core *b, uint64_t seq, const struct rec *r,
    struct topic *t)
{
	struct store *s = &b->store;
	const struct fy_pubmsg *pm = &r->pub.m;
	struct group *only = NULL;
	struct producer *pr;
	struct msg *m;
	int64_t mono_ts;

	if (!t && !name_ok(r->pub.topic))
		return -EBADMSG;
	if (!t && !(t = topic_get(b, r->pub.topic.p, r->pub.topic.len)))
		return -ENOMEM;
	if (r->pub.gid && !(only = gid_find(s, r->pub.gid)))
		return 0;	/* its group is gone: so is the message */
	/* Replay builds what is beyond max_memory paged out: start-up does
	 * not hold every pending body first. */
	m = (s->replaying && (body_absent(pm) || page_replay_paged(b,
	    pm->body.len)) ? msg_new_paged : msg_new)(pm, r->pub.id.p, r->pub.id.len,
	    r->pub.ts, r->pub.hist, r->pub.nhist);
	if (!m)
		return -ENOMEM;
	m->seq = seq;
	/* Before the fan-out, which may already deliver it.  At the time
	 * it is stored, not its publish time: a dead letter's copy keeps
	 * the original's, and TRACE lists events in the order they
	 * happened. */
	if (!s->replaying)
		trace_add(&b->trace, clock_turn_wall_ms(), msg_idh(m),
		    TR_PUBLISHED, t->sym, only ? only->sym : 0, 0, 0);
	/* Only for dedup: two clock reads a message, at replay too. */
	mono_ts = pm->id.len ? msg_mono(m) : 0;
	if (topic_publish(t, m, only) < 0) {
		msg_unref(m);
		return -ENOMEM;
	}
	/* An at-most-once delivery may have freed it already. */
	msg_unref(m);
	/* Remember the producer's own id for dedup_window, and keep its
	 * record so that a restart within the window still knows it. */
	if (pm->id.len && r->pub.ts + b->opt->dedup_window_ms >
	    clock_wall_ms() && dedup_add(&t->dedup, pm->id.p, pm->id.len,
	    mono_ts, seq) == 0)
		journal_ref(s->j, seq);
	if (pm->pid.len) {
		/* Live, the turn's clock: store_duplicate() asks with it, and
		 * it never goes back, which keeps the producers in order.
		 * At replay, the record's own time. */
		int64_t at = s->replaying ? msg_mono_of(r->pub.ts) :
		    (int64_t)clock_turn_mono_ms();

		if ((pr = producer_get(&s->producers, pm->pid.p, pm->pid.len,
		    at)))
			producer_stored(&s->producers, pr, pm->pseq,
			    r->pub.id.p, r->pub.id.len, at);
	}
	return 0;
}

/* What a REC_ACK (or each entry of a REC_SETTLE) does to entry e. */
static void
settle_one(struct qent *e)
{
	if (!e || !e->group)
		return;		/* dropped with its group (a backlog entry
				   is never acked: damage) */
	if (e->flags & QE_LEASED) {
		group_ack(e);
	} else {
		/* Not an ack: a dead-lettering's or a drop's removal,
		 * counted where it was decided. */
		group_detach(e);
		qent_free(e);
	}
}

/*
 * Apply record r (seq) to the broker.  hint is the entry an ACK or FAIL is
 * about when known (live); at replay it is looked up.  For REC_PUB *mp
 * For REC_GROUP *gp (if not NULL) gets the group.
 */
static int
apply(struct core *b, uint64_t seq, const struct rec *r, struct qent *hint,
    struct group **gp)
{
	struct store *s = &b->store;
	struct group_conf conf;
	struct producer *pr;
	struct topic *t;
	struct group *g;
	struct qent *e;
	uint64_t now, delay;
	int64_t at;

	switch (r->type) {
	case REC_PUB:
		return apply_pub(b, seq, r, NULL);
	case REC_ACK:
		settle_one(hint ? hint : idx_find(s, r->ack.gid, r->ack.mseq));
		return 0;
	case REC_SETTLE:
		/* Replay only: live, each was applied when it was made. */
		for (uint32_t i = 0; i < r->settle.n; i++)
			settle_one(idx_find(s, r->settle.gid,
			    r->settle.mseq[i]));
		return 0;
	case REC_FAIL:
		if (r->fail.cause >= CAUSE_NFAIL)
			return -EBADMSG;
		if (!(e = hint ? hint :
		    idx_find(s, r->fail.gid, r->fail.mseq)) || !e->group)
			return 0;
		if (!(e->flags & QE_LEASED))
			group_detach(e);
		now = clock_wall_ms();
		delay = r->fail.not_before > now ? r->fail.not_before - now : 0;
		if (delay > MSG_TIME_MAX)
			delay = MSG_TIME_MAX;	/* a damaged record */
		group_fail(e, (int)r->fail.cause, r->fail.consumer.p,
		    r->fail.consumer.len, r->fail.error.p, r->fail.error.len,
		    delay);
		return 0;
	case REC_PRODUCER:
		/* A record written before it carried a time: as if active
		 * now, so that an upgrade never forgets a producer early. */
		at = r->producer.at ? msg_mono_of(r->producer.at) :
		    (int64_t)clock_turn_mono_ms();
		if (!(pr = producer_get(&s->producers, r->producer.pid.p,
		    r->producer.pid.len, at)))
			return -ENOMEM;
		if (pr->hwm < r->producer.seq)
			pr->hwm = r->producer.seq;
		producer_touch(&s->producers, pr, at);
		return 0;
	case REC_GROUP:
		if (!name_ok(r->group.topic) || !name_ok(r->group.name) ||
		    !r->group.gid)
			return -EBADMSG;
		if ((g = gid_find(s, r->group.gid))) {
			/* The same gid must name the same group. */
			if (strlen(g->name) != r->group.name.len ||
			    memcmp(g->name, r->group.name.p,
			    r->group.name.len) || g->topic->name_len !=
			    r->group.topic.len || memcmp(g->topic->name,
			    r->group.topic.p, r->group.topic.len))
				return -EBADMSG;
			/* Compaction copied the group forward. */
			if (seq > g->home) {
				journal_ref(s->j, seq);
				journal_unref(s->j, g->home);
				g->home = seq;
			}
			goto done;
		}
		if (!(t = topic_get(b, r->group.topic.p, r->group.topic.len)))
			return -ENOMEM;
		conf = (struct group_conf){
			.ack_timeout_ms = r->group.ack_timeout_ms,
			.max_attempts = r->group.max_attempts,
			.ttl_ms = r->group.ttl_ms,
			.max_msgs = r->group.max_msgs,
			.max_bytes = r->group.max_bytes,
			.ttl_drop = (uint8_t)r->group.ttl_drop,
			.overflow = (uint8_t)r->group.overflow,
		};
		g = topic_group_get(t, r->group.name.p, r->group.name.len,
		    &conf);
		if (!g)
			return -ENOMEM;
		if (g->gid) {
			log_warn_kv(log_kv(t->name, g->name, NULL), "journal: "
			    "group %s/%s recreated with id %llu "
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
		if (!name_ok(r->topic_del.topic))
			return -EBADMSG;
		if ((t = topic_find(b, r->topic_del.topic.p,
		    r->topic_del.topic.len)))
			topic_delete(t);
		return 0;
	case REC_MOVE:
		return apply_move(b, seq, r, hint ? qent_msg(hint) : NULL);
	}
	return -EBADMSG;
}

void
store_prune_dedup(struct core *b, struct dedup *d, int64_t now)
{
	dedup_prune(d, now, b->opt->dedup_window_ms, dedup_release, b);
}

void
store_forget_dedup(struct core *b, struct dedup *d)
{
	dedup_fini(d, dedup_release, b);
}

void
store_group_forget(struct core *b, struct group *g)
{
	struct store *s = &b->store;

	if (!g->gid)
		return;
	gid_del(s, g);
	if (s->j)
		journal_unref(s->j, g->home);
	g->gid = 0;
}

static const struct topic_hooks topic_hooks = {
	.hold = store_hold,
	.forget_dedup = store_forget_dedup,
	.group_forget = store_group_forget,
};

static const struct store_hooks *hooks;

void
store_init_hooks(const struct store_hooks *h)
{
	hooks = h;
	topic_set_hooks(&topic_hooks);
}

/* ---- live operations ---- */

static void
fill_group_rec(struct rec *r, uint64_t gid, const struct topic *t,
    const char *name, size_t len, const struct group_conf *c)
{
	r->type = REC_GROUP;
	r->group.gid = gid;
	r->group.topic = (struct fy_str){t->name, (uint32_t)t->name_len};
	r->group.name = (struct fy_str){name, (uint32_t)len};
	r->group.ack_timeout_ms = c->ack_timeout_ms;
	r->group.max_attempts = c->max_attempts;
	r->group.ttl_ms = c->ttl_ms;
	r->group.ttl_drop = c->ttl_drop;
	r->group.max_msgs = c->max_msgs;
	r->group.max_bytes = c->max_bytes;
	r->group.overflow = c->overflow;
}

/* A record the journal refused while it could not write. */
struct held_rec {
	struct list link;
	uint8_t type;
	size_t len;
	uint8_t data[];
};

/* Write the held records, oldest first.  0 once none is left. */
static int
flush_held(struct store *s)
{
	struct held_rec *h;
	int e;

	while ((h = list_first(&s->held, struct held_rec, link))) {
		if ((e = journal_append(s->j, h->type, h->data, h->len,
		    NULL)) < 0)
			return e;
		list_del(&h->link);
		s->nheld--;
		free(h);
	}
	return 0;
}

static void
hold(struct store *s, const struct rec *r)
{
	struct held_rec *h = malloc(sizeof(*h) + s->sb.size);

	if (!h) {
		log_warn("out of memory keeping a %u record for the journal",
		    r->type);
		return;
	}
	h->type = r->type;
	h->len = s->sb.size;
	memcpy(h->data, s->sb.data, s->sb.size);
	list_add_tail(&s->held, &h->link);
	s->nheld++;
}

/*
 * Encode and append r.  0 with *seq set, or the journal's -errno.  Records
 * held from a failure go first, so the journal keeps the order in which
 * changes were applied; an ack, failure or deletion the journal refuses is
 * held too (it is applied all the same), a publish or group creation is
 * refused.
 */
static int settle_flush(struct core *b);

static int
append(struct core *b, const struct rec *r, uint64_t *seq)
{
	struct store *s = &b->store;
	int e;

	*seq = 0;
	/*
	 * Buffered settlements go before any record but a publish: replay
	 * must meet them before a REC_MOVE renames their messages, a
	 * deletion drops their groups, or a REC_FAIL whose order against
	 * them matters.  A publish is about a message no settlement names.
	 */
	if (s->nsettle && r->type != REC_PUB && r->type != REC_SETTLE)
		settle_flush(b);
	msgpack_sbuffer_clear(&s->sb);
	if ((e = rec_encode(&s->sb, r)) < 0)
		return e;
	if ((e = flush_held(s)) == 0)
		e = journal_append(s->j, r->type, s->sb.data, s->sb.size,
		    seq);
	if (e < 0 && r->type != REC_PUB && r->type != REC_GROUP &&
	    r->type != REC_MOVE)
		hold(s, r);
	if (e == 0 && !s->dirty) {
		/* The commit runs in the end-of-turn flush. */
		s->dirty = 1;
		turn_want_commit(&b->turn);
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
store_publish(struct core *b, struct topic *t, const struct fy_pubmsg *pm,
    const char *id, size_t id_len, uint64_t ts, const struct fy_hist *hist,
    uint32_t nhist, struct group *only, int confirm, uint64_t *seq)
{
	struct store *s = &b->store;
	struct rec r = {.type = REC_PUB};
	int e;

	r.pub.topic = (struct fy_str){t->name, (uint32_t)t->name_len};
	r.pub.id = (struct fy_str){id, (uint32_t)id_len};
	r.pub.ts = ts;
	r.pub.m = *pm;
	r.pub.hist = hist;
	r.pub.nhist = nhist;
	r.pub.gid = only ? only->gid : 0;
	if (only && !only->gid)
		return -EINVAL;	/* ephemeral groups take no targeted PUB */
	s->elidable = 0;
	if ((e = append(b, &r, seq)) < 0)
		return e;
	if (!confirm && !pm->id.len && !pm->pid.len && !nhist)
		s->elidable = *seq;
	/* apply()'s REC_PUB, given the topic the record names. */
	return apply_pub(b, *seq, &r, t);
}

int
store_duplicate(struct core *b, struct topic *t,
    const struct fy_pubmsg *pm, const char **id, size_t *id_len)
{
	struct store *s = &b->store;
	struct producer *pr;

	if (pm->id.len) {
		dedup_prune(&t->dedup, (int64_t)clock_mono_ms(),
		    b->opt->dedup_window_ms, dedup_release, b);
		if (dedup_find(&t->dedup, pm->id.p, pm->id.len)) {
			*id = pm->id.p;
			*id_len = pm->id.len;
			return 1;
		}
	}
	if (pm->pid.len && (pr = producer_find(&s->producers, pm->pid.p,
	    pm->pid.len, (int64_t)clock_turn_mono_ms())) &&
	    pm->pseq <= pr->hwm) {
		const char *rid = producer_recent_id(pr, pm->pseq);

		*id = rid ? rid : pm->id.p ? pm->id.p : "";
		*id_len = rid ? strlen(rid) : pm->id.len;
		return 1;
	}
	return 0;
}

/* ---- settlements, one record per group per turn ---- */

/* One group's settlements since its last REC_SETTLE. */
struct settle_buf {
	uint64_t gid;
	uint32_t n;
	uint64_t mseq[REC_SETTLE_MAX];
};

/* More groups than this settling in one turn: flush and start over, so
 * that finding a group's buffer stays a short walk. */
#define SETTLE_GROUPS 16

/* Append buffer i's REC_SETTLE.  0 or the journal's -errno (the record
 * is then held: append()). */
static int
settle_put(struct core *b, struct settle_buf *sb)
{
	struct store *s = &b->store;
	struct rec r = {.type = REC_SETTLE};
	uint64_t seq;
	int e;

	r.settle.gid = sb->gid;
	r.settle.mseq = sb->mseq;
	r.settle.n = sb->n;
	if ((e = append(b, &r, &seq)) == 0)
		s->settle_seq = seq;
	s->settles++;
	s->settled += sb->n;
	sb->n = 0;
	return e;
}

static int
settle_flush(struct core *b)
{
	struct store *s = &b->store;
	int e = 0;

	for (uint32_t i = 0; i < s->nsettle; i++)
		if (s->settle[i].n) {
			int r = settle_put(b, &s->settle[i]);

			if (r < 0 && !e)
				e = r;
		}
	s->nsettle = 0;
	s->settle_last = 0;
	return e;
}

/* Buffer the settlement of a durable entry of group gid for message
 * mseq: what its REC_ACK would say, journaled later. */
static void
settle_add(struct core *b, uint64_t gid, uint64_t mseq)
{
	struct store *s = &b->store;
	struct settle_buf *sb = NULL;

	/* A publish that has a settlement in a buffer can no longer be
	 * taken back: the record naming it would name its reused seq. */
	if (mseq == s->elidable)
		s->elidable = 0;
	if (s->nsettle && s->settle[s->settle_last].gid == gid) {
		sb = &s->settle[s->settle_last];
	} else {
		for (uint32_t i = 0; i < s->nsettle; i++)
			if (s->settle[i].gid == gid) {
				sb = &s->settle[s->settle_last = i];
				break;
			}
	}
	if (!sb) {
		if (s->nsettle == SETTLE_GROUPS)
			settle_flush(b);
		if (s->nsettle == s->settle_cap) {
			uint32_t cap = s->settle_cap ? s->settle_cap * 2 : 4;
			struct settle_buf *n = realloc(s->settle,
			    cap * sizeof(*n));

			if (!n) {
				/* No buffer: its own REC_ACK, at once. */
				struct rec r = {.type = REC_ACK};
				uint64_t seq;

				r.ack.gid = gid;
				r.ack.mseq = mseq;
				if (append(b, &r, &seq) == 0)
					s->settle_seq = seq;
				return;
			}
			s->settle = n;
			s->settle_cap = cap;
		}
		sb = &s->settle[s->settle_last = s->nsettle++];
		sb->gid = gid;
		sb->n = 0;
	}
	sb->mseq[sb->n++] = mseq;
	if (sb->n == REC_SETTLE_MAX)
		settle_put(b, sb);
	if (!s->dirty) {
		/* Appended by the commit in the end-of-turn flush. */
		s->dirty = 1;
		turn_want_commit(&b->turn);
	}
}

uint64_t
store_settle_flush(struct core *b)
{
	if (b->store.nsettle)
		settle_flush(b);
	return b->store.settle_seq;
}

int
store_settle_pending(const struct core *b)
{
	const struct store *s = &b->store;

	for (uint32_t i = 0; i < s->nsettle; i++)
		if (s->settle[i].n)
			return 1;
	return 0;
}

void
store_ack(struct core *b, struct qent *e)
{
	struct rec r = {.type = REC_ACK};

	/* Entries of ephemeral groups are not journaled. */
	if (e->flags & QE_DURABLE)
		settle_add(b, e->group->gid, qent_msg(e)->seq);
	apply(b, 0, &r, e, NULL);
}

uint64_t
store_settle(struct core *b, struct qent *e)
{
	struct store *s = &b->store;
	struct msg *m = qent_msg(e);
	uint64_t mseq = m->seq, gid = e->group->gid;

	if (!(e->flags & QE_DURABLE)) {
		qent_free(e);
		return 0;
	}
	/*
	 * Published without a confirm and settled in the same turn, as the
	 * newest record, with no other group holding it: take the publish
	 * back instead of writing it and its settlement.  A crash could not
	 * have told the two apart: the delivery leaves only once its records
	 * are written (conn.c), and a record that is not there holds
	 * nothing.
	 */
	if (mseq && mseq == s->elidable && msg_ndurable(m) == 1) {
		qent_free(e);	/* drops its reference to the record */
		s->elidable = 0;
		if (journal_unappend(s->j, mseq) == 0) {
			s->elided++;
			return 0;
		}
	} else {
		qent_free(e);
	}
	settle_add(b, gid, mseq);
	return STORE_SEQ_SETTLE;
}

/*
 * A delivery of e failed (cause: enum qent_cause): journal it with the
 * redelivery time, then apply it.  who: the consumer; err: the nack's
 * text, or NULL.
 */
void
store_fail(struct core *b, struct qent *e, int cause, const char *who,
    const char *err, size_t err_len, uint64_t delay)
{
	struct rec r = {.type = REC_FAIL};
	uint64_t seq = 0;

	r.fail.gid = e->group->gid;
	r.fail.mseq = qent_msg(e)->seq;
	r.fail.cause = (uint32_t)cause;
	r.fail.at = clock_wall_ms();
	r.fail.not_before = delay ? r.fail.at + delay : 0;
	r.fail.consumer = (struct fy_str){who, (uint32_t)strlen(who)};
	r.fail.error = (struct fy_str){err, (uint32_t)err_len};
	if (e->flags & QE_DURABLE)
		append(b, &r, &seq);
	/* Live, the delay is exact rather than re-derived from the clock. */
	group_fail(e, cause, who, strlen(who), err, err_len, delay);
}

int
store_group_get(struct core *b, struct topic *t, const char *name,
    size_t len, const struct group_conf *conf, struct group **gp)
{
	struct rec r = {.type = REC_GROUP};
	uint64_t seq;
	int e;

	if ((*gp = topic_group_find(t, name, len)))
		return 0;
	if (conf->ephemeral) {
		*gp = topic_group_get(t, name, len, conf);
		return *gp ? 0 : -ENOMEM;
	}
	fill_group_rec(&r, b->store.next_gid, t, name, len, conf);
	if ((e = append(b, &r, &seq)) < 0)
		return e;
	return apply(b, seq, &r, NULL, gp);
}

void
store_group_delete(struct core *b, struct group *g)
{
	struct rec r = {.type = REC_GROUP_DEL};
	uint64_t seq;

	if (!g->gid) {
		topic_group_delete(g);
		return;
	}
	r.group_del.gid = g->gid;
	append(b, &r, &seq);
	apply(b, seq, &r, NULL, NULL);
}

void
store_topic_delete(struct core *b, struct topic *t)
{
	struct rec r = {.type = REC_TOPIC_DEL};
	uint64_t seq;

	r.topic_del.topic = (struct fy_str){t->name, (uint32_t)t->name_len};
	append(b, &r, &seq);
	apply(b, seq, &r, NULL, NULL);
}

/* ---- the catalog ---- */

/*
 * A new segment begins (journal_append() is placing the record that did
 * not fit): write every live group first, so that replay starting at any
 * segment knows the groups its records name, and the groups' old records
 * no longer pin old segments.  Runs inside append(): uses its own buffer.
 */
/* Append one catalog record from catsb (catalog_cb's helper). */
static int
catalog_put(struct core *b, const struct rec *r, uint64_t *seq)
{
	struct store *s = &b->store;
	int e;

	msgpack_sbuffer_clear(&s->catsb);
	if ((e = rec_encode(&s->catsb, r)) < 0)
		return e;
	return journal_append(s->j, r->type, s->catsb.data, s->catsb.size,
	    seq);
}

/* catalog_producer()'s argument: the clocks, read once per catalog. */
struct catalog_clock {
	struct core *b;
	int64_t mono, wall;
};

/* A producer's mark and last activity, unless it expired: one that
 * stored nothing for producer_ttl is not carried forward. */
static int
catalog_producer(void *arg, struct producer *pr)
{
	struct catalog_clock *cc = arg;
	struct rec r = {.type = REC_PRODUCER};
	int64_t wall = cc->wall - (cc->mono - pr->at);
	uint64_t seq;

	if (producer_expired(&cc->b->store.producers, pr, cc->mono))
		return 0;
	r.producer.pid = (struct fy_str){pr->pid, pr->len};
	r.producer.seq = pr->hwm;
	r.producer.at = wall > 0 ? (uint64_t)wall : 1;	/* 0: no time */
	return catalog_put(cc->b, &r, &seq);
}

static int
catalog_cb(void *arg)
{
	struct core *b = arg;
	struct store *s = &b->store;
	struct catalog_clock cc;
	struct rec r;
	uint64_t seq;
	int e;

	for (uint32_t i = 0; i < s->gids_cap; i++) {
		for (struct group *g = s->gids[i]; g; g = g->gnext) {
			fill_group_rec(&r, g->gid, g->topic, g->name,
			    strlen(g->name), &g->conf);
			if ((e = catalog_put(b, &r, &seq)) < 0)
				return e;
			/* Moves the group's home here; the gid table is
			 * not changed, so the walk goes on safely. */
			apply(b, seq, &r, NULL, NULL);
		}
	}
	cc = (struct catalog_clock){b, (int64_t)clock_turn_mono_ms(),
	    (int64_t)clock_turn_wall_ms()};
	return producers_each(&s->producers, catalog_producer, &cc);
}

/* ---- compaction ---- */

/* Copy m (of topic t) forward: one REC_MOVE with its state in every
 * durable group. */
int
store_move(struct core *b, struct msg *m, struct topic *t)
{
	struct rec r = {.type = REC_MOVE};
	uint64_t now = clock_wall_ms(), mono = clock_mono_ms(), seq;
	const struct msg_ext *x = msg_ext(m);
	const char *body = msg_body_load(m);
	char idbuf[MSG_ID_LEN + 1];
	struct rec_entry *ent;
	struct rec_qhist *qh = NULL, *qp;
	uint32_t n = 0, nh = 0;
	struct qent *e;
	struct qside *q;
	int err = -ENOMEM;

	if (!body && m->body_len)
		return -EIO;	/* logged by the loader */
	for (e = msg_ents(m); e; e = msg_ents_next(e)) {
		if (!(e->flags & QE_DURABLE))
			continue;
		n++;
		nh += (q = qent_side(e)) ? q->nhist : 0;
	}
	if (!(ent = calloc(n ? n : 1, sizeof(*ent))) ||
	    (nh && !(qh = calloc(nh, sizeof(*qh)))))
		goto out;
	qp = qh;
	n = 0;
	for (e = msg_ents(m); e; e = msg_ents_next(e)) {
		struct rec_entry *re;

		if (!(e->flags & QE_DURABLE))
			continue;
		re = &ent[n++];
		q = qent_side(e);
		re->gid = e->group ? e->group->gid : 0;
		re->attempts = e->attempts;
		if (!q)
			continue;
		for (int k = 0; k < CAUSE_NFAIL; k++)
			re->causes[k] = q->causes[k];
		/* A delay keeps its wall-clock end; a lease is not durable:
		 * the entry is simply ready again after a restart. */
		if (hnode_queued(&q->dn) && q->dn.key > mono)
			re->not_before = now + (q->dn.key - mono);
		re->hist = qp;
		re->nhist = q->nhist;
		for (uint16_t k = 0; k < q->nhist; k++, qp++) {
			const struct qhist_entry *h = &q->hist[k];

			qp->cause = h->cause;
			qp->at = h->at;
			qp->consumer = (struct fy_str){h->consumer,
			    (uint32_t)strlen(h->consumer)};
			qp->error = (struct fy_str){h->error,
			    h->error ? (uint32_t)strlen(h->error) : 0};
		}
	}
	r.move.old_mseq = m->seq;
	r.move.topic = (struct fy_str){t->name, (uint32_t)t->name_len};
	r.move.id = msg_id(m, idbuf);
	r.move.ts = m->ts;
	r.move.m.body = (struct fy_str){body, m->body_len};
	r.move.m.hdr = x->hdr;
	r.move.m.nhdr = x->nhdr;
	r.move.m.delay_ms = x->delay_ms;
	r.move.m.ttl_ms = x->ttl_ms;
	r.move.m.reply_to = x->reply_to;
	r.move.m.corr = x->corr;
	r.move.hist = x->hist;
	r.move.nhist = x->nhist;
	r.move.ent = ent;
	r.move.nent = n;
	if ((err = append(b, &r, &seq)) == 0)
		err = apply(b, seq, &r, msg_ents(m), NULL);
out:
	free(ent);
	free(qh);
	return err;
}

/* ---- commit and confirms ---- */

void
store_commit(struct core *b)
{
	struct store *s = &b->store;
	int e;

	s->dirty = 0;
	if (!list_empty(&s->held) && journal_error(s->j) == 0 &&
	    flush_held(s) == 0)
		log_info("journal: records held while it could not write are "
		    "written");
	if (s->nsettle)
		settle_flush(b);
	e = journal_commit(s->j);
	page_trim(b);

	if (e == 0 && s->warned) {
		s->warned = 0;
		log_info("journal writes again: accepting publishes");
	}
}

uint64_t
store_newest_seq(const struct core *b)
{
	return journal_next_seq(b->store.j) - 1;
}

int
store_error(const struct core *b)
{
	return journal_error(b->store.j);
}

int
store_error_fatal(const struct core *b)
{
	return journal_fatal(b->store.j) != 0;
}

/*
 * Under fsync=always only a confirm (of a publish or an ack) waits for an
 * fdatasync.  While none waits, records share a sync started
 * JOURNAL_SYNC_DELAY_US later: else a paced stream of unconfirmed
 * publishes and plain acks pays an fdatasync, two sync-thread wake-ups and
 * an eventfd wake-up of the loop every few messages, on CPUs it shares
 * with its clients.
 */
static int
confirms_waiting(void *arg)
{
	return hooks->waiting(arg) > 0;
}

static void
durable_cb(void *arg, uint64_t written, uint64_t synced)
{
	hooks->progress(arg);
}

/* ---- open, replay, close ---- */

static int
replay_cb(void *arg, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len)
{
	struct core *b = arg;
	struct rec r;
	int e;

	if ((e = rec_decode(&b->store.zone, type, p, len, &r)) < 0) {
		log_error("journal record %llu (type %u, %zu bytes) cannot be "
		    "decoded: %s", (unsigned long long)seq, type, len,
		    strerror(-e));
		return e;
	}
	if ((e = apply(b, seq, &r, NULL, NULL)) < 0) {
		log_error("journal record %llu (type %u) cannot be applied: "
		    "%s", (unsigned long long)seq, type, strerror(-e));
		return e;
	}
	b->store.replayed++;
	return 0;
}

/*
 * A record of a segment replayed from its index: its summary (record.h).
 * A body that replay would keep in memory (below max_memory) is read from
 * the segment after all; the rest stay there, as paging would have left
 * them.
 */
static int
replay_summary_cb(void *arg, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len)
{
	struct core *b = arg;
	struct store *s = &b->store;
	const struct fy_str *body;
	const uint8_t *full;
	struct rec r;
	int e;

	if (type != REC_PUB && type != REC_MOVE)
		return replay_cb(arg, seq, type, p, len);
	if ((e = rec_decode_summary(&s->zone, type, p, len, &r)) < 0) {
		log_error("journal record %llu (type %u) cannot be decoded "
		    "from its index: %s", (unsigned long long)seq, type,
		    strerror(-e));
		return e;
	}
	body = type == REC_PUB ? &r.pub.m.body : &r.move.m.body;
	if (body->len && !page_replay_paged(b, body->len)) {
		if ((e = journal_read(s->j, &s->replay_rd, seq, &type, &full,
		    &len)) < 0) {
			log_error("journal record %llu cannot be read: %s",
			    (unsigned long long)seq, strerror(-e));
			return e;
		}
		return replay_cb(arg, seq, type, full, len);
	}
	if ((e = apply(b, seq, &r, NULL, NULL)) < 0) {
		log_error("journal record %llu (type %u) cannot be applied: "
		    "%s", (unsigned long long)seq, type, strerror(-e));
		return e;
	}
	s->replayed++;
	return 0;
}

static const struct journal_index store_index = {
	.summarize = rec_summarize,
	.apply = replay_summary_cb,
};

int
store_open(struct core *b, char *err, size_t errlen)
{
	struct store *s = &b->store;
	struct journal_opts jo = {
		.dir = b->opt->data_dir,
		.fsync = b->opt->fsync,
		.segment_size = b->opt->segment_size,
	};
	struct journal_stats st;
	uint64_t t0 = clock_mono_ms();
	int e;

	/* Everything store_close() touches is valid before anything can
	 * fail. */
	list_init(&s->held);
	producers_init(&s->producers, b->opt->producer_ttl_ms);
	msgpack_sbuffer_init(&s->sb);
	msgpack_sbuffer_init(&s->catsb);
	if (!msgpack_zone_init(&s->zone, 4096))
		return -ENOMEM;
	s->next_gid = 1;
	qent_set_release_hook(release, b);
	if ((e = page_init(b)) < 0)
		return e;
	if ((e = journal_open(&s->j, b->base, &jo, err, errlen)) < 0)
		return e;
	journal_set_index(s->j, &store_index);
	s->replaying = 1;
	e = journal_replay(s->j, replay_cb, b, b->opt->journal_repair, err,
	    errlen);
	s->replaying = 0;
	journal_reader_fini(&s->replay_rd);
	idx_free(s->idx, s->idx_cap);
	s->idx = NULL;
	s->idx_cap = s->idx_n = 0;
	if (e < 0) {
		if (err && !*err)
			snprintf(err, errlen, "journal replay failed: %s",
			    strerror(-e));
		return e;
	}
	/* Replay touched producers in record order, catalogs in hash
	 * order: sort them for expiry, and forget the expired at once,
	 * before a client can ask. */
	if (producers_sort(&s->producers) < 0)
		log_warn("journal: no memory to sort %u producers; expired "
		    "ones are freed late", s->producers.n);
	producers_expire(&s->producers, (int64_t)clock_mono_ms());
	journal_set_durable_cb(s->j, durable_cb, b);
	journal_set_waiting_cb(s->j, confirms_waiting, b);
	journal_set_roll_cb(s->j, catalog_cb, b);
	journal_get_stats(s->j, &st);
	log_info("journal replayed: %llu records in %llu ms (%llu of %llu "
	    "segments from their index), %u topics",
	    (unsigned long long)s->replayed,
	    (unsigned long long)(clock_mono_ms() - t0),
	    (unsigned long long)st.index_replayed,
	    (unsigned long long)st.segments, b->ntopics);
	return 0;
}

void
store_close(struct core *b)
{
	struct store *s = &b->store;

	if (s->j) {
		struct journal_stats st;

		if (s->nsettle)
			settle_flush(b);
		if (journal_error(s->j) == 0)
			flush_held(s);	/* a last chance, synced by close */
		journal_get_stats(s->j, &st);
		log_info("journal: %llu records in %llu segments, %llu "
		    "fdatasyncs since start; %llu publishes settled before "
		    "they were written, not journaled; %llu settlements in "
		    "%llu records",
		    (unsigned long long)(st.next_seq - 1),
		    (unsigned long long)st.segments,
		    (unsigned long long)st.syncs,
		    (unsigned long long)s->elided,
		    (unsigned long long)s->settled,
		    (unsigned long long)s->settles);
		journal_close(s->j);
		s->j = NULL;
	}
	page_fini(b);
	msgpack_sbuffer_destroy(&s->sb);
	msgpack_sbuffer_destroy(&s->catsb);
	msgpack_zone_destroy(&s->zone);
	free(s->settle);
	s->settle = NULL;
	s->nsettle = s->settle_cap = 0;
	free(s->gids);
	s->gids = NULL;
	s->gids_cap = s->ngids = 0;
	producers_fini(&s->producers);
	if (s->nheld)
		log_warn("journal: %llu records could not be written before "
		    "stopping; their messages may be delivered again",
		    (unsigned long long)s->nheld);
	while (!list_empty(&s->held)) {
		struct held_rec *h = list_first(&s->held, struct held_rec,
		    link);

		list_del(&h->link);
		free(h);
	}
	s->nheld = 0;
}
