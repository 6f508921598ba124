/*
 * turn.c - the end-of-turn work lists (see turn.h).
 */
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "turn.h"

int
turn_init(struct turn *t, struct event_base *base, turn_cb *flush,
    turn_cb *reap, void *arg)
{
	struct timespec ts;

	list_init(&t->flush);
	list_init(&t->reap);
	clock_gettime(CLOCK_REALTIME, &ts);
	t->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
	    ((uint64_t)getpid() << 40) ^ 0x9e3779b97f4a7c15ull;
	/*
	 * One priority for everything: the first read of a turn activates
	 * the flush behind the reads that the same epoll_wait made ready, so
	 * it still ends the turn.  libevent runs a lower priority only while
	 * no higher one is active: a flush (or reap) below the reads waited
	 * for as long as a producer kept its socket readable, holding back
	 * every delivery and confirm until the producer's window was full.
	 */
	t->flush_ev = event_new(base, -1, 0, flush, arg);
	t->reap_ev = event_new(base, -1, 0, reap, arg);
	return t->flush_ev && t->reap_ev ? 0 : -ENOMEM;
}

void
turn_fini(struct turn *t)
{
	if (t->flush_ev)
		event_free(t->flush_ev);
	if (t->reap_ev)
		event_free(t->reap_ev);
	t->flush_ev = t->reap_ev = NULL;
}

void
turn_begin(struct turn *t)
{
	if (t->start_ns)
		return;
	t->start_ns = clock_turn_begin();
	/* a partial frame asks for no flush: this one ends the turn */
	event_active(t->flush_ev, 0, 0);
}

void
turn_want_commit(struct turn *t)
{
	event_active(t->flush_ev, 0, 0);
}

void
turn_want_flush(struct turn *t, struct list *flink)
{
	if (list_empty(&t->flush))
		event_active(t->flush_ev, 0, 0);
	list_add_tail(&t->flush, flink);
}

void
turn_want_reap(struct turn *t, struct list *link)
{
	list_del(link);
	list_add_tail(&t->reap, link);
	event_active(t->reap_ev, 0, 0);
}

uint64_t
turn_rand(struct turn *t)
{
	/* xorshift64*: jitter needs speed and spread, not secrecy. */
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->rng * 2685821657736338717ull;
}
