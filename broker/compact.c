/*
 * compact.c - keeping disk use to what is pending: live messages in mostly
 * dead journal segments are copied forward (REC_MOVE, through the store)
 * so the journal can delete those segments; producer ids past
 * dedup_window let their records go, producers idle past producer_ttl are
 * freed; freed heap goes back to the system.
 *
 * It walks every durable entry, leased ones too: those are held by members
 * (sub.h), which it reads and never changes.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "core.h"
#include "clock.h"
#include "compact.h"
#include "group.h"
#include "journal.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "store.h"
#include "sub.h"
#include "topic.h"

#define TRIM_EVERY_MS 5000	/* how often trim_heap() looks */
#define TRIM_FREED (16u << 20)	/* freed bytes worth a malloc_trim() */

/*
 * One pass over every durable entry, moving the messages whose record is in
 * first..last.  Messages keep no list of their own (it would cost every
 * waiting message 16 bytes): compaction is rare, and a pass is a walk over
 * memory.  A moved message gets a later record, so the next pass skips it.
 */
struct compact_scan {
	struct core *b;
	uint64_t first, last;
	int budget;
	int moved;
	int failed;
	uint64_t bytes;		/* body bytes moved */
};

/* 1 to stop the pass (budget spent, or a move failed). */
static int
scan_ent(struct compact_scan *cs, struct qent *e, struct topic *t)
{
	struct msg *m = qent_msg(e);

	if (!(e->flags & QE_DURABLE) || m->seq < cs->first ||
	    m->seq > cs->last)
		return 0;
	if (cs->budget <= 0)
		return 1;
	if (store_move(cs->b, m, t) < 0) {
		cs->failed = 1;
		return 1;
	}
	cs->budget--;
	cs->moved++;
	cs->bytes += m->body_len;
	return 0;
}

static int
scan_list(struct compact_scan *cs, struct list *l, struct topic *t)
{
	struct list *pos;

	list_for_each(pos, l)
		if (scan_ent(cs, list_entry(pos, struct qent, link), t))
			return 1;
	return 0;
}

static int
scan_group(struct compact_scan *cs, struct group *g)
{
	struct list *pos;

	if (g->ephemeral)
		return 0;
	if (scan_list(cs, &g->ready, g->topic))
		return 1;
	for (uint32_t k = 0; k < g->delayed.n; k++)
		if (scan_ent(cs, qent_of_dn(g->delayed.a[k]), g->topic))
			return 1;
	list_for_each(pos, &g->members)
		if (scan_list(cs, &list_entry(pos, struct sub, glink)->leases,
		    g->topic))
			return 1;
	return 0;
}

/* 1 if the pass stopped early. */
static int
compact_scan(struct compact_scan *cs)
{
	struct core *b = cs->b;
	struct list *pos;

	for (uint32_t i = 0; i < b->topics_cap; i++)
		for (struct topic *t = b->topics[i]; t; t = t->hnext) {
			if (scan_list(cs, &t->backlog, t))
				return 1;
			list_for_each(pos, &t->groups)
				if (scan_group(cs, list_entry(pos,
				    struct group, tlink)))
					return 1;
		}
	return 0;
}

/*
 * Which oldest segments are worth emptying (records *first..*last)?  Only
 * when the journal has grown past a couple of segments, and only those in
 * which almost nothing is alive:
 * acks and failures are records too, so "half dead" would also pick a
 * segment whose messages all still wait (a steady flow with a backlog),
 * and copying those forward frees nothing.
 */
static int
worth_compacting(struct store *s, uint64_t *first, uint64_t *last)
{
	struct journal_segment_info si;
	struct journal_stats st;
	uint64_t k;

	/* The oldest segments, as long as each is mostly dead: one walk
	 * over the queues empties them all. */
	journal_get_stats(s->j, &st);
	for (k = 0; k + 3 <= st.segments &&
	    journal_segment_info(s->j, (size_t)k, &si) == 0 && !si.active &&
	    si.live * 8 <= si.records; k++) {
		if (k == 0)
			*first = si.first_seq;
		*last = si.last_seq;
	}
	return k > 0;
}

/* Objects moved per loop turn: bounds the time compaction takes away
 * from clients. */
#define COMPACT_BATCH 2048

/*
 * glibc keeps what a load spike freed (a soak of 1,000 connections left
 * 130 MB held and 0.3 MB used): give it back, but only when that much
 * was freed since the last time.  malloc_trim() walks every free chunk
 * and madvise()s each, on the loop, however little it returns (0.05-0.1
 * ms every 5 s in a steady W4 run, more in a fragmented heap);
 * mallinfo2() walks the same lists without a syscall.  Free heap bytes
 * that rose TRIM_FREED above their lowest since the last trim were in use
 * and are not any more: the spike is over.
 */
static void
trim_heap(struct store *s)
{
	struct mallinfo2 mi = mallinfo2();

	if (mi.fordblks < s->trim_floor)
		s->trim_floor = mi.fordblks;
	if (mi.fordblks - s->trim_floor < TRIM_FREED)
		return;
	malloc_trim(0);
	s->trims++;
	s->trim_floor = mallinfo2().fordblks;
}

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
	struct core *b = arg;
	struct store *s = &b->store;
	struct timeval tv = {1, 0};
	uint64_t first = 0, last = 0;
	int budget = COMPACT_BATCH;
	int64_t now = (int64_t)clock_mono_ms();

	/* Ids past dedup_window let their records go; producers idle for
	 * producer_ttl are freed (already unknown to lookups). */
	for (uint32_t i = 0; i < b->topics_cap; i++)
		for (struct topic *t = b->topics[i]; t; t = t->hnext)
			store_prune_dedup(b, &t->dedup, now);
	producers_expire(&s->producers, now);
	/*
	 * Groups need no moving: every segment starts with the catalog.  A
	 * segment whose last live message moved out goes once the copies are
	 * written (journal.c), at the end of this turn.
	 */
	if (!journal_error(s->j) && worth_compacting(s, &first, &last)) {
		struct compact_scan cs = {b, first, last, budget, 0, 0, 0};
		int stopped = compact_scan(&cs);

		s->moved += (uint64_t)cs.moved;
		s->moved_bytes += cs.bytes;
		if (cs.moved)
			s->compactions++;
		budget = cs.budget;
		if (cs.failed)
			goto rearm;
		if (stopped)
			budget = 0;	/* spent mid-range */
		else if (cs.moved)
			log_debug("journal: records %llu..%llu compacted "
			    "(%d moved)", (unsigned long long)first,
			    (unsigned long long)last, cs.moved);
	}
	if (budget <= 0)
		tv.tv_sec = 0;	/* more may be due: go on next turn */
rearm:
	if (clock_mono_ms() - s->trimmed >= TRIM_EVERY_MS) {
		s->trimmed = clock_mono_ms();
		trim_heap(s);
	}
	evtimer_add(s->compact_ev, &tv);
}

int
compact_start(struct core *b)
{
	struct store *s = &b->store;

	if (!(s->compact_ev = evtimer_new(b->base, compact_cb, b)))
		return -ENOMEM;
	compact_cb(-1, 0, b);
	return 0;
}

void
compact_stop(struct core *b)
{
	struct store *s = &b->store;

	if (s->compact_ev) {
		event_free(s->compact_ev);
		s->compact_ev = NULL;
	}
}
