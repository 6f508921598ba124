/*
 * broker.h - the broker: one libevent loop owning all state.
 */
#ifndef FERRY_BROKER_BROKER_H
#define FERRY_BROKER_BROKER_H

#include <stdint.h>

#include "hist.h"
#include "lease.h"
#include "list.h"
#include "store.h"
#include "trace.h"

struct event_base;
struct event;
struct evconnlistener;
struct options;
struct topic;

/* Broker-wide counters, for /metrics (metrics.c). */
struct broker_stats {
	uint64_t accepted;	/* connections accepted */
	uint64_t refused_limit;	/* refused: max_connections reached */
	uint64_t accept_errors;	/* accept() failed (EMFILE, ENOMEM...) */
	uint64_t bytes_in;	/* frame bytes read from clients */
	uint64_t bytes_out;	/* bytes handed to client sockets */
	uint64_t started_ms;	/* monotonic, at broker_init() */
	struct hist turn;	/* loop turns that ran the flush: from the
				   first read of the turn (else the flush's
				   start) to the end of the flush */
	uint64_t turn_start_ns;	/* monotonic; 0 until a read this turn */
};

struct metrics;

struct broker {
	struct event_base *base;
	const struct options *opt;
	struct evconnlistener *listener;
	struct event *accept_ev;	/* resumes accepting after EMFILE */
	uint32_t accept_paused;	/* accept errors in a row (for logging) */
	int port;		/* bound port, after broker_listen() */
	struct tls *tls;	/* the TLS listener (tls.c), or NULL */
	int tls_port;		/* its bound port */
	struct topic **topics;	/* hash table, chained by topic.hnext */
	uint32_t topics_cap;	/* power of two */
	uint32_t ntopics;
	uint64_t topic_gen;	/* bumped whenever a topic is freed: a topic
				   pointer kept from before (conn.pub_topic)
				   may be stale */
	uint32_t ngroups;	/* all topics' groups, ephemeral included */
	struct list conns;	/* struct conn.link */
	uint32_t nconns;
	uint64_t next_conn_id;
	struct list flush;	/* struct conn.flink: staged output */
	struct list gated;	/* struct conn.wlink: output waiting for the
				   journal (conn.h) */
	uint64_t durable_waiting;	/* replies waiting to be durable */
	struct event *flush_ev;
	struct list pumpq;	/* struct group.pumplink: pumps due
				   (group_mark_due(), delivery.c) */
	struct list reap;	/* closing conns to free */
	struct event *reap_ev;
	struct event *sig_ev[3];	/* SIGTERM, SIGINT, SIGHUP */
	struct store store;	/* journal and durable state */
	struct trace trace;	/* recent message events, for TRACE */
	struct lease_table leases;	/* every member's deliveries */
	struct auth *auth;	/* users and login state (auth.c); NULL
				   until auth_init(): all anonymous */
	uint64_t rng;		/* xorshift64* state, for jitter */
	struct broker_stats st;
	struct metrics *metrics;	/* NULL unless metrics_listen */
	struct event *drain_ev;	/* drain_timeout, while draining */
	uint8_t draining;	/* SIGTERM came: settle, deliver nothing */
	char boot[37];		/* a random UUID per broker_init(): WELCOME
				   "boot", so clients can tell a restart */
	uint8_t stopping;
};

/* Set up state on base (all of its events share one priority). 0 or
 * -errno. */
int broker_init(struct broker *b, struct event_base *base,
    const struct options *o);
void broker_fini(struct broker *b);

/* Bind the listener (server.c).  0 or -errno, logged. */
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

uint64_t broker_rand(struct broker *b);

/* A client's bytes are being read: a loop turn with work began (for the
 * turn-duration histogram, closed by the end-of-turn flush). */
void broker_turn_begin(struct broker *b);

/* Make sure the end-of-turn flush (journal commit included) runs. */
void broker_want_commit(struct broker *b);

/* Schedule the end-of-turn flush of c / the freeing of closed conns. */
struct conn;
void broker_want_flush(struct broker *b, struct conn *c);
void broker_want_reap(struct broker *b, struct conn *c);

#endif
