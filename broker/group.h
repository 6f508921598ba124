/*
 * group.h - a queue attached to a topic: ready FIFO, delayed heap, members.
 *
 * Every message published to a topic gets one queue entry in each of its
 * groups (fan-out).  Inside a group an entry goes to one member at a time,
 * round-robin among members with credit (competing consumers).
 */
#ifndef FERRY_BROKER_GROUP_H
#define FERRY_BROKER_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "heap.h"
#include "hist.h"
#include "msg.h"
#include "list.h"

struct core;
struct topic;
struct qent;
struct event;

struct group_stats {
	uint64_t enqueued;	/* entries added (publishes fanned out here) */
	uint64_t delivered;	/* deliveries, redeliveries included */
	uint64_t acked;		/* by a consumer's ACK, nothing else */
	uint64_t amo;		/* settled on delivery (at-most-once) */
	uint64_t failed[4];	/* by enum qent_cause < CAUSE_NFAIL */
	uint64_t expired;	/* TTL ran out */
	uint64_t overflow;	/* pushed out of a full group (overflow 1) */
	uint64_t dead_lettered;
	struct hist ack_time;	/* delivery (or last TOUCH) to ack,
				   hist_ack_bounds */
	uint64_t dropped;	/* removed undelivered, not dead-lettered */
	uint64_t slow;		/* of those, shed past the ephemeral bound */
};

/* A group's settings, fixed when it is created (and journaled). */
struct group_conf {
	uint32_t ack_timeout_ms;
	uint32_t max_attempts;	/* 0 = never dead-letter */
	uint64_t ttl_ms;	/* default message TTL; 0 = none */
	uint64_t max_msgs;	/* messages held (any state); 0 = no limit */
	uint64_t max_bytes;	/* their body bytes; 0 = no limit */
	uint8_t ttl_drop;	/* expired: drop instead of dead-letter */
	uint8_t overflow;	/* enum fy_overflow */
	uint8_t ephemeral;
};

struct group {
	struct core *b;
	uint64_t gid;		/* journal id; 0 for ephemeral groups */
	uint64_t home;		/* seq of its REC_GROUP, referenced */
	struct group *gnext;	/* store's gid hash chain */
	struct topic *topic;
	char *name;		/* owned, NUL-terminated */
	struct list tlink;	/* in topic->groups */
	struct list ready;	/* qent.link; first deliveries FIFO,
				   redeliveries go to the head, released
				   ones to their place (group_fail()) */
	struct heap delayed;	/* qent.dn: not-before times */
	struct event *delay_ev;	/* armed for heap top, lazily */
	struct heap ttlq;	/* qent.tn: TTL expiries */
	struct event *ttl_ev;	/* armed for its top */
	uint64_t nheld;		/* entries held, any state (limits) */
	uint64_t nbytes;	/* their body bytes */
	struct list members;	/* struct sub.glink, round-robin order */
	struct list *rr;	/* member to try next; &members = first */
	uint32_t nmembers;
	/* The place of the next first delivery: entries are handed out
	 * from the head of ready, so this numbers them in queue order, and
	 * a released one goes back where its number says (group_fail()).
	 * Compared modulo 2^32; 0 is skipped. */
	uint32_t next_order;
	uint64_t nready;
	uint64_t ninflight;
	uint32_t ack_timeout_ms;
	uint32_t max_attempts;	/* 0 = never dead-letter */
	uint8_t ephemeral;
	uint32_t sym;		/* trace symbol of the name */
	struct group_conf conf;	/* as created (the fields above copy it) */
	uint8_t pumping;	/* delivery_pump() is on the stack */
	uint8_t deleting;	/* topic_group_delete() in progress */
	struct list pumplink;	/* core.pumpq while a pump is due */
	struct list blocked;	/* struct conn.blink: publishers paused
				   past flow_high_water (delivery.c) */
	uint64_t last_delivery;	/* monotonic ms of a pump that delivered */
	uint64_t shed_bytes;	/* ephemeral groups: past this many body
				   bytes the oldest waiting are dropped
				   (ephemeral_max_bytes); 0 = never */
	uint64_t slow_n;	/* dropped this episode, not yet told */
	uint64_t slow_at;	/* loop time (ms) of the latest drop */
	uint8_t slow;		/* enum group_slow (delivery.c) */
	struct group_stats st;
};

/*
 * A slow-consumer episode of a shedding group: it begins with the first
 * drop, its member is told once (E_SLOW, before its next delivery), and it
 * ends when the member has caught up (nothing waiting, and nothing
 * dropped for a second).
 */
enum group_slow {
	SLOW_NONE,
	SLOW_UNTOLD,		/* dropping; slow_n not yet told */
	SLOW_TOLD,
};

/*
 * Create a group on t (not linked into t: topic_group_get() does that).
 * name is copied.  Returns NULL on ENOMEM.
 */
struct group *group_new(struct topic *t, const char *name, size_t name_len,
    const struct group_conf *conf);

/* Free g and every entry it holds.  Members must have been removed. */
void group_free(struct group *g);

/*
 * Put a new entry in g (g takes e): delayed until the message's not-before
 * time, else at the tail of the ready FIFO; and in the TTL heap if the
 * message (or the group's default) gives it an expiry.
 */
void group_add(struct group *g, struct qent *e);
/* The same with an entry's own not-before time (monotonic ms, may be in
 * the past; 0 = ready). */
void group_add_at(struct group *g, struct qent *e, int64_t not_before);
/* (Re)arm the TTL timer for the earliest expiry. */
void group_arm_ttl(struct group *g);

/* Would n more messages of bytes body bytes pass g's limits? */
int group_has_room(const struct group *g, uint64_t n, uint64_t bytes);

/*
 * g may have something to deliver: the delivery pump runs it once the
 * current batch of requests is handled (delivery_pump_due()), so that an
 * ACK followed by an UNSUB in one packet does not hand the leaving member
 * one more message.  A state change only: nothing is sent from here, so
 * replay may call it.
 */
void group_mark_due(struct group *g);

/*
 * What a group needs from the layer above it, registered once at start-up
 * (delivery_init()): ending a delivery's lease when an ack or a failure
 * settles it, expiring an entry whose TTL ran out while it waited,
 * evicting a deleted group's members, and deciding what becomes of a
 * delivery that comes back unacknowledged.
 */
struct group_hooks {
	/* ends e's lease; returns when it began (monotonic ms: the
	 * delivery, or the last TOUCH) */
	uint64_t (*lease_end)(struct qent *e);
	void (*expire)(struct qent *e);
	void (*evict)(struct group *g);
	/* a delivery of e came back without an ack (enum qent_cause):
	 * requeue it, back off or dead-letter it */
	void (*returned)(struct qent *e, int cause);
};

void group_set_hooks(const struct group_hooks *h);

/* Once, at start-up: have qent_free() keep the groups' counters. */
void group_init(void);

/* A delivery of e comes back without an ack, live: its member left or its
 * lease ran out (cause: enum qent_cause).  The layer above decides what
 * becomes of it (hooks->returned: delivery_fail(), which journals the
 * outcome and then calls group_fail()). */
void group_return(struct qent *e, int cause);

/* g is being deleted with members: end them (hooks->evict). */
void group_evict(struct group *g);

/* A leased entry was acknowledged: forget it. */
void group_ack(struct qent *e);

/*
 * A delivery of e ended without an ack (cause: enum qent_cause), as told
 * by a journal record (store.c applies it; call store_fail() instead).
 * e must be leased or detached.  Its history and attempts are updated and
 * it is requeued after delay_ms.  consumer, err: who failed it and the
 * nack's error text (err may be NULL).  Dead-lettering is delivery's
 * decision, made live and journaled as records of its own.  Does not pump;
 * callers pump once after a batch of failures.
 */
void group_fail(struct qent *e, int cause, const char *consumer,
    size_t consumer_len, const char *err, size_t err_len, uint64_t delay_ms);

/* The dead-letter copy of an entry's message, ready to publish. */
struct group_dlq {
	char topic[FY_NAME_MAX + 8];	/* "<topic>.dlq" */
	size_t topic_len;
	struct fy_pubmsg pm;		/* body and headers, borrowed */
	struct fy_kv *hdr;		/* owned */
	struct fy_hist hist[QHIST_MAX];	/* borrowed strings */
	uint32_t nhist;
	char attempts[16];
};

/* Fill d for e (with dlq-topic, dlq-group, dlq-attempts and dlq-reason
 * headers and e's history).  0, -ENAMETOOLONG, -ENOMEM. */
int group_dlq_prepare(struct qent *e, struct group_dlq *d);
void group_dlq_release(struct group_dlq *d);

/* (Re)arm the delay timer for the earliest delayed entry. */
void group_arm_delay(struct group *g);

/* Take e out of wherever it waits in its group (lease, ready or delayed). */
void group_detach(struct qent *e);

/*
 * Redelivery delay after the given number of failed attempts (>= 1):
 * base * 2^(attempts-1), capped at max, with "equal jitter": half fixed,
 * half drawn from rnd.  Pure, for tests.
 */
uint64_t group_backoff_ms(uint32_t base_ms, uint32_t max_ms,
    uint32_t attempts, uint64_t rnd);

#endif
