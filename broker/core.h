/*
 * core.h - the state the broker's modules share: options, the event loop,
 * the store, the topic registry, the connections, the trace, the leases,
 * counters, and the turn's work lists (turn.h).
 *
 * One struct core lives inside struct broker (broker.h); the modules below
 * broker.c get a pointer to it (held as `b`) and never see struct broker,
 * so none of them can call up into the loop: what they want done at the
 * end of a turn they register in core.turn.  Each field's owner is the
 * module named beside it; others read it.  This is a header only: it
 * includes the headers of the structs it embeds, nothing else.
 */
#ifndef FERRY_BROKER_CORE_H
#define FERRY_BROKER_CORE_H

#include <stdint.h>

#include "hist.h"
#include "lease.h"
#include "list.h"
#include "store.h"
#include "trace.h"
#include "turn.h"

struct auth;
struct event;
struct event_base;
struct evconnlistener;
struct metrics;
struct options;
struct tls;
struct topic;

/* Broker-wide counters, for /metrics (metrics.c). */
struct core_stats {
	uint64_t accepted;	/* connections accepted */
	uint64_t refused_limit;	/* refused: max_connections reached */
	uint64_t accept_errors;	/* accept() failed (EMFILE, ENOMEM...) */
	uint64_t bytes_in;	/* frame bytes read from clients */
	uint64_t bytes_out;	/* bytes handed to client sockets */
	uint64_t started_ms;	/* monotonic, at broker_init() */
	struct hist turn;	/* loop turns that ran the flush: from the
				   first read of the turn (else the flush's
				   start) to the end of the flush */
};

struct core {
	struct event_base *base;
	const struct options *opt;
	struct turn turn;	/* end-of-turn work (turn.c; broker.c
				   drains it) */
	/* server.c */
	struct evconnlistener *listener;
	struct event *accept_ev;	/* resumes accepting after EMFILE */
	uint32_t accept_paused;	/* accept errors in a row (for logging) */
	int port;		/* bound port, after server_listen() */
	struct tls *tls;	/* the TLS listener (tls.c), or NULL */
	int tls_port;		/* its bound port */
	/* topic.c */
	struct topic **topics;	/* hash table, chained by topic.hnext */
	uint32_t topics_cap;	/* power of two */
	uint32_t ntopics;
	uint64_t topic_gen;	/* bumped whenever a topic is freed: a topic
				   pointer kept from before (conn.pub_topic)
				   may be stale */
	uint32_t ngroups;	/* all topics' groups, ephemeral included */
	/* conn.c */
	struct list conns;	/* struct conn.link */
	uint32_t nconns;
	uint64_t next_conn_id;
	struct list gated;	/* struct conn.wlink: output waiting for the
				   journal (conn.h) */
	uint64_t durable_waiting;	/* replies waiting to be durable */
	/* group.c stages, delivery.c runs */
	struct list pumpq;	/* struct group.pumplink: pumps due
				   (group_mark_due(), delivery.c) */
	struct store store;	/* journal and durable state (store.c) */
	struct trace trace;	/* recent message events, for TRACE */
	struct lease_table leases;	/* every member's deliveries (sub.c) */
	struct auth *auth;	/* users and login state (auth.c); NULL
				   until auth_init(): all anonymous */
	struct core_stats st;
	struct metrics *metrics;	/* NULL unless metrics_listen */
	/* broker.c */
	uint8_t draining;	/* SIGTERM came: settle, deliver nothing */
	uint8_t stopping;
	char boot[37];		/* a random UUID per broker_init(): WELCOME
				   "boot", so clients can tell a restart */
};

#endif
