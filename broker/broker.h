/*
 * broker.h - the broker: one libevent loop owning all state, the top of
 * broker/.
 *
 * broker.c sets every module up and tears it down, drains the turn's work
 * lists at the end of each loop turn (core.turn: the pumps, the journal
 * commit, the connections' output, closed connections), and handles
 * signals and draining.  It may include any broker header; no module
 * includes this one but main.c (and tests): the shared state the modules
 * below need is struct core (core.h), handed to them as &b->core.
 */
#ifndef FERRY_BROKER_BROKER_H
#define FERRY_BROKER_BROKER_H

#include "core.h"

struct event;
struct event_base;
struct options;

struct broker {
	struct core core;	/* what every module below shares */
	struct event *sig_ev[3];	/* SIGTERM, SIGINT, SIGHUP */
	struct event *drain_ev;	/* drain_timeout, while draining */
};

/* Set up state on base (all of its events share one priority). 0 or
 * -errno. */
int broker_init(struct broker *b, struct event_base *base,
    const struct options *o);
void broker_fini(struct broker *b);

/* Bind the listeners (server.c, tls.c).  0 or -errno, logged. */
int broker_listen(struct broker *b);
void broker_unlisten(struct broker *b);

/* Stop accepting and leave the loop after this turn. */
void broker_stop(struct broker *b);

/*
 * Stop gracefully: stop accepting, refuse new requests (E_SHUTDOWN),
 * deliver nothing more, and broker_stop() once no delivery is in flight
 * and no confirm waits for the journal, or after drain_timeout.  0 or
 * -ENOMEM (then it stops at once).
 */
int broker_drain(struct broker *b);

/* Called at the end of each turn while draining: stop if drained. */
void broker_drain_check(struct broker *b);

#endif
