/*
 * turn.h - the work a loop turn leaves for its end: connections with staged
 * output, closed connections to free, a journal commit, and the turn's
 * random source.
 *
 * Lower modules register into these lists; broker.c, the top, drains them
 * at the end of the turn (the flush and reap callbacks it gives turn_init()).
 * This file knows nothing about what it lists: only list nodes and two
 * libevent events.  It may touch list.h, clock.h and libevent, nothing else.
 */
#ifndef FERRY_BROKER_TURN_H
#define FERRY_BROKER_TURN_H

#include <stdint.h>

#include <event2/util.h>

#include "list.h"

struct event;
struct event_base;

struct turn {
	struct list flush;	/* struct conn.flink: staged output */
	struct list reap;	/* struct conn.link: closing conns to free */
	struct event *flush_ev;	/* the end-of-turn flush */
	struct event *reap_ev;	/* frees the reap list */
	uint64_t start_ns;	/* monotonic; 0 until a read this turn */
	uint64_t rng;		/* xorshift64* state, for jitter */
};

typedef void turn_cb(evutil_socket_t, short, void *);

/* Set up t on base; flush and reap run at the end of a turn with arg.  0
 * or -ENOMEM. */
int turn_init(struct turn *t, struct event_base *base, turn_cb *flush,
    turn_cb *reap, void *arg);
void turn_fini(struct turn *t);

/* A client's bytes are being read: a loop turn with work began (for the
 * turn-duration histogram, closed by the end-of-turn flush). */
void turn_begin(struct turn *t);

/* Make sure the end-of-turn flush (journal commit included) runs. */
void turn_want_commit(struct turn *t);

/* Flush the connection whose flink this is at the end of the turn. */
void turn_want_flush(struct turn *t, struct list *flink);

/* Free the connection whose link this is (unlinked from wherever it is)
 * at the end of the turn. */
void turn_want_reap(struct turn *t, struct list *link);

uint64_t turn_rand(struct turn *t);

#endif
