/*
 * msg.h - a stored message and its per-group queue entries.
 *
 * struct msg is immutable once built and shared by reference count among
 * every group it was fanned out to: the body is copied once, from the
 * connection's input into the single allocation that holds the struct, the
 * id, the headers and the body.
 *
 * struct qent is one message's state in one group (or in a topic's backlog
 * while the topic has no group).  It is in exactly one place at a time:
 *   - group->ready (link), waiting for a member with credit;
 *   - group->delayed (dn), waiting for its not-before time;
 *   - sub->leases (link), delivered and unacknowledged;
 *   - topic->backlog (link), no group yet.
 */
#ifndef FERRY_BROKER_MSG_H
#define FERRY_BROKER_MSG_H

#include <stdint.h>

#include "codec.h"
#include "heap.h"
#include "list.h"

struct group;
struct sub;
struct topic;

struct msg {
	uint32_t refs;
	uint32_t body_len;
	uint64_t seq;		/* journal record that created it; 0 if none */
	uint32_t dur_refs;	/* durable entries holding it: while > 0 its
				   record is referenced in the journal */
	struct qent *ents;	/* durable entries, by qent.mnext */
	struct topic *topic;	/* valid while dur_refs > 0 */
	struct list slink;	/* store.live while dur_refs > 0, in seq
				   order: compaction takes from the head */
	uint64_t ts;		/* publish time, unix ms */
	uint64_t idh;		/* trace_hash() of the id, for TRACE */
	struct fy_kv *hdr;	/* points into this allocation */
	struct fy_hist *hist;	/* dead letters only; into this allocation */
	uint32_t nhdr;
	uint32_t nhist;
	uint8_t id_len;
	char *id;		/* into this allocation, NUL-terminated */
	char *body;		/* into this allocation */
	/*
	 * Running deadlines use the monotonic clock, so that a wall-clock
	 * step (NTP, an operator) neither releases nor holds back a delay,
	 * TTL or dedup entry.  mono_ts is the monotonic time of the publish:
	 * now minus the message's wall-clock age when it was built, so it is
	 * right after a restart too; signed, as a message may be older than
	 * this boot.
	 */
	int64_t mono_ts;
	uint64_t delay_ms;	/* from "delay"; 0 = none */
	uint64_t ttl_ms;	/* from "ttl"; 0 = the group's */
	struct fy_str reply_to;	/* into this allocation */
	struct fy_str corr;	/* into this allocation */
};

/*
 * Build a message from a decoded publish.  id/id_len is the message id (the
 * producer's, or one from msg_id_generate()).  Its delay and ttl count from
 * ts, so a record replayed later gives the same times.  hist may be NULL.
 * Copies everything; returns a message with refs == 1, or NULL on ENOMEM.
 */
struct msg *msg_new(const struct fy_pubmsg *pm, const char *id, size_t id_len,
    uint64_t ts, const struct fy_hist *hist, uint32_t nhist);

/* The longest delay or TTL, and the furthest a journaled time may lie from
 * now (ms, about 34 years): keeps deadline arithmetic from overflowing.
 * Clients asking for more get E_BADARG. */
#define MSG_TIME_MAX (1ULL << 40)

/* The monotonic time of a wall-clock instant (unix ms), by the clocks now:
 * how the broker turns journaled times into running deadlines. */
int64_t msg_mono_of(uint64_t wall_ms);

static inline struct msg *
msg_ref(struct msg *m)
{
	m->refs++;
	return m;
}

void msg_unref(struct msg *m);	/* msg_unref(NULL) is a no-op */

/* Bytes of memory the message accounts for (for stats and limits). */
size_t msg_size(const struct msg *m);

/*
 * Message ids: canonical lowercase UUID text (36 chars + NUL).  A random
 * version-4 UUID is drawn once from libuuid; later ids add a counter to its
 * random bits, so generating one costs no syscall (uuid_generate_random()
 * calls getrandom() each time) while staying unique per broker run.
 */
#define MSG_ID_LEN 36
void msg_id_generate(char out[MSG_ID_LEN + 1]);

/* Why a delivery ended without an ack.  Values index cause names. */
enum qent_cause {
	CAUSE_TIMEOUT = 0,	/* lease deadline missed */
	CAUSE_NACKED = 1,	/* explicit NACK */
	CAUSE_RELEASED = 2,	/* returned by UNSUB: no fault, not counted
				   toward max_attempts */
	CAUSE_DISCONNECTED = 3,	/* consumer's connection dropped */
	/* Not delivery failures: they end a message's stay in a group and
	 * appear only in its history. */
	CAUSE_EXPIRED = 4,	/* its TTL ran out while it waited */
	CAUSE_OVERFLOW = 5,	/* pushed out of a full group */
	CAUSE_MAX
};
#define CAUSE_NFAIL 4		/* delivery failures, counted in qent.causes */
const char *qent_cause_name(int cause);

/* One failed delivery, kept for the dead-letter history. */
struct qhist_entry {
	uint64_t at;		/* unix ms */
	uint8_t cause;		/* enum qent_cause */
	char *consumer;		/* owned */
	char *error;		/* owned, may be NULL */
};

#define QHIST_MAX 32		/* entries kept per message (most recent) */

struct qent {
	struct list link;	/* ready list, lease list or backlog */
	struct msg *msg;	/* a reference we hold */
	struct group *group;	/* NULL while in a topic backlog */
	struct sub *sub;	/* holder while leased, else NULL */
	struct hnode dn;	/* key: lease deadline while leased, not-before
				   while delayed (monotonic ms); in
				   group->delayed only while delayed */
	struct hnode tn;	/* key: TTL expiry (monotonic ms), 0 = none;
				   in group->ttlq while queued for it */
	uint64_t lease;		/* token while leased, else 0 */
	uint16_t attempts;	/* failed deliveries so far (every cause but
				   released); a delivery is attempt + 1.
				   Deliveries are not journaled, failures
				   are: this way replay rebuilds it. */
	uint16_t causes[CAUSE_NFAIL];	/* failed deliveries by cause */
	uint16_t nhist;
	uint8_t durable;	/* counted in msg->dur_refs (store_hold) */
	struct qent *mnext;	/* msg->ents chain while durable */
	struct qhist_entry *hist;	/* NULL until the first failure */
};

/* Called by qent_free() for durable entries (the store's bookkeeping). */
void qent_set_release_hook(void (*fn)(void *arg, struct qent *e),
    void *arg);

/* A new entry holding a reference to m; NULL on ENOMEM. */
struct qent *qent_new(struct msg *m, struct group *g);
/* Frees e and drops its message reference.  Must be unlinked from every
 * structure first. */
void qent_free(struct qent *e);

/* Fill *f with the MSG frame that delivers e (sid and lease left 0).  The
 * frame borrows from e's message and group. */
void qent_frame(const struct qent *e, struct fy_frame *f);

/* Record a failed delivery; keeps the most recent QHIST_MAX. */
int qent_hist_add(struct qent *e, int cause, uint64_t at,
    const char *consumer, size_t consumer_len, const char *error,
    size_t error_len);

#endif
