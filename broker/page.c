/*
 * page.c - paging message bodies out to the journal and back (page.h).
 */
#include <errno.h>
#include <string.h>

#include "core.h"
#include "clock.h"
#include "group.h"
#include "heap.h"
#include "journal.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "page.h"
#include "record.h"
#include "store.h"
#include "topic.h"

/*
 * The reader for a read of seq: the one whose last read is the nearest
 * before it (a queue walking its FIFO continues in its window), else the
 * least recently used.
 */
static struct journal_reader *
pick(struct page *pg, uint64_t seq)
{
	int best = -1, lru = 0;

	for (int i = 0; i < PAGE_READERS; i++) {
		const struct journal_reader *rd = &pg->rd[i];

		if (rd->seg && rd->last_seq <= seq && (best < 0 ||
		    rd->last_seq > pg->rd[best].last_seq))
			best = i;
		if (pg->used[i] < pg->used[lru])
			lru = i;
	}
	/* Far behind: another queue's window, better left alone. */
	if (best >= 0 && seq - pg->rd[best].last_seq > 4096)
		best = -1;
	if (best < 0)
		best = lru;
	pg->used[best] = ++pg->tick;
	return &pg->rd[best];
}

/* msg_body_load()'s hook: read m's body back from its record. */
static const char *
load(void *arg, const struct msg *m)
{
	struct core *b = arg;
	struct page *pg = &b->store.page;
	struct journal_reader *rd = pick(pg, m->seq);
	const uint8_t *p;
	struct fy_str body = {NULL, 0};
	struct rec r;
	uint8_t type;
	size_t len;
	int e;

	if ((e = journal_read(b->store.j, rd, m->seq, &type, &p, &len)) == 0 &&
	    (e = rec_decode(&pg->zone, type, p, len, &r)) == 0) {
		if (type == REC_PUB)
			body = r.pub.m.body;
		else if (type == REC_MOVE)
			body = r.move.m.body;
		else
			e = -EBADMSG;
	}
	if (e == 0 && body.len != m->body_len)
		e = -EBADMSG;
	if (e < 0) {
		char idbuf[MSG_ID_LEN + 1];

		if (!pg->errors++ || (pg->errors & (pg->errors - 1)) == 0)
			log_error("journal: cannot read back the body of "
			    "message %s (record %llu): %s; %llu such "
			    "failures", msg_id(m, idbuf).p,
			    (unsigned long long)m->seq, strerror(-e),
			    (unsigned long long)pg->errors);
		return NULL;
	}
	pg->loads++;
	/* A zero-length string may point nowhere: the caller wants bytes. */
	return body.p ? body.p : "";
}

int
page_init(struct core *b)
{
	struct page *pg = &b->store.page;

	memset(pg, 0, sizeof(*pg));
	pg->max = b->opt->max_memory;
	if (!msgpack_zone_init(&pg->zone, 4096))
		return -ENOMEM;
	pg->zone_ok = 1;
	msg_set_load_hook(load, b);
	return 0;
}

void
page_fini(struct core *b)
{
	struct page *pg = &b->store.page;

	if (msg_mem.paged_ever)
		log_info("paging: %llu bodies paged out since start, %llu read "
		    "back, %llu reads failed",
		    (unsigned long long)msg_mem.paged_ever,
		    (unsigned long long)pg->loads,
		    (unsigned long long)pg->errors);
	msg_set_load_hook(NULL, NULL);
	for (int i = 0; i < PAGE_READERS; i++)
		journal_reader_fini(&pg->rd[i]);
	if (pg->zone_ok)
		msgpack_zone_destroy(&pg->zone);
	pg->zone_ok = 0;
}

int
page_replay_paged(const struct core *b, size_t len)
{
	const struct page *pg = &b->store.page;

	return pg->max && len && msg_mem.bytes + len > pg->max;
}

/* ---- paging out ---- */

struct pass {
	uint64_t target;	/* stop once bodies in memory are below */
	uint64_t written;	/* records up to it are in the files */
	uint64_t paged;
	int nomem;
};

static int
done(const struct pass *ps)
{
	return ps->nomem || msg_mem.bytes <= ps->target;
}

/* Page out e's message if it may go.  -1 if it is paged already. */
static int
page_ent(struct pass *ps, struct qent *e)
{
	struct msg *m = qent_msg(e);

	if (msg_paged(m))
		return -1;
	if (m->seq > ps->written || !msg_can_page(m))
		return 0;
	if (!msg_page_out(m)) {
		ps->nomem = 1;
		return 0;
	}
	ps->paged++;
	return 0;
}

/*
 * Phases of a pass, each over every queue, until enough has gone:
 * PH_TAIL walks each FIFO from its tail back to the first body already
 * paged out (what came since the last pass); PH_HEAD from its head on, up
 * to the same (what stayed because it could not go then, or because the
 * tails were not enough: consumers will read those first); PH_DELAYED
 * takes delayed entries, which wait in a heap of sides (a move of the
 * message leaves it be).
 */
enum { PH_TAIL, PH_HEAD, PH_DELAYED, PH_N };

/* Each entry may be moved (msg_page_out()): the walk takes its neighbour
 * first. */
static void
page_list(struct pass *ps, struct list *l, int phase)
{
	struct list *pos, *next;

	for (pos = phase == PH_TAIL ? l->prev : l->next;
	    pos != l && !done(ps); pos = next) {
		next = phase == PH_TAIL ? pos->prev : pos->next;
		if (page_ent(ps, list_entry(pos, struct qent, link)) < 0)
			break;
	}
}

static void
page_group(struct pass *ps, struct group *g, int phase)
{
	if (g->ephemeral)	/* nothing there is journaled */
		return;
	if (phase != PH_DELAYED) {
		page_list(ps, &g->ready, phase);
		return;
	}
	for (uint32_t k = 0; k < g->delayed.n && !done(ps); k++)
		page_ent(ps, qent_of_dn(g->delayed.a[k]));
}

static void
page_topics(struct core *b, struct pass *ps, int phase)
{
	struct list *pos;

	for (uint32_t i = 0; i < b->topics_cap && !done(ps); i++)
		for (struct topic *t = b->topics[i]; t && !done(ps);
		    t = t->hnext) {
			if (phase != PH_DELAYED)
				page_list(ps, &t->backlog, phase);
			list_for_each(pos, &t->groups) {
				if (done(ps))
					break;
				page_group(ps, list_entry(pos, struct group,
				    tlink), phase);
			}
		}
}

void
page_trim(struct core *b)
{
	struct page *pg = &b->store.page;
	struct pass ps;

	/* What could not go may go later (its lease ends, its record is
	 * written): after more came, or a second. */
	if (!pg->max || msg_mem.bytes <= pg->max ||
	    (pg->stuck && msg_mem.bytes < pg->stuck + pg->max / 16 &&
	    clock_mono_ms() - pg->stuck_ms < 1000))
		return;
	ps = (struct pass){
		.target = pg->max - pg->max / 8,
		.written = journal_written_seq(b->store.j),
	};
	for (int phase = 0; phase < PH_N && !done(&ps); phase++)
		page_topics(b, &ps, phase);
	if (ps.nomem)
		log_warn("out of memory paging message bodies out");
	pg->stuck = ps.paged ? 0 : msg_mem.bytes;
	pg->stuck_ms = clock_mono_ms();
	if (ps.paged)
		pg->passes++;
}
