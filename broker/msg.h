/*
 * msg.h - a stored message and its per-group queue entries.
 *
 * struct msg is immutable once built and shared by reference count among
 * every group it was fanned out to: the body is copied once, from the
 * connection's input into the single allocation that holds the header, the
 * first queue entry, the body and the rare fields.
 *
 * struct qent is one message's state in one group (or in a topic's backlog
 * while the topic has no group).  It is in exactly one place at a time:
 *   - group->ready (link), waiting for a member with credit;
 *   - group->delayed (its side's dn), waiting for its not-before time;
 *   - a member's lease list (link), delivered and unacknowledged;
 *   - topic->backlog (link), no group yet.
 *
 * Memory is the point of this layout: a broker with a million messages
 * waiting must hold little more than their bodies.  A message waiting in
 * one group costs its 72-byte header with the entry embedded, its body,
 * and malloc's 8 bytes: 208 bytes for a 128-byte body.  What only some
 * entries need (a delay or TTL heap node, failure history, a lease while
 * one has a side) lives in a struct qside taken from a pool when first
 * needed, named by a 32-bit index.
 */
#ifndef FERRY_BROKER_MSG_H
#define FERRY_BROKER_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "heap.h"
#include "list.h"

struct group;
struct sub;
struct topic;

/* qent.flags */
#define QE_FIRST	0x0001	/* the entry embedded in its message (e0) */
#define QE_TAKEN	0x0002	/* e0 only: handed out by qent_new() */
#define QE_INUSE	0x0004	/* not yet freed */
#define QE_DURABLE	0x0008	/* held by the store (store_hold) */
#define QE_LEASED	0x0010	/* delivered, in a member's lease list */
#define QE_SIDE		0x0020	/* x names its struct qside */
/* Message-wide flags, kept in e0.flags (the message has no room of its
 * own for them). */
#define MF_EXT		0x0100	/* a struct msg_ext follows the body */
#define MF_TEXT_ID	0x0200	/* the id is ext->id, not the binary one */
#define MF_PAGED	0x0400	/* paged out: the body is not in memory but
				   in the journal record m->seq (page.h) */

struct qent {
	struct list link;	/* ready list, lease list or backlog */
	struct group *group;	/* NULL while in a topic backlog */
	uint16_t attempts;	/* failed deliveries so far (every cause but
				   released); a delivery is attempt + 1.
				   Deliveries are not journaled, failures
				   are: this way replay rebuilds it. */
	uint16_t flags;
	uint32_t x;		/* QE_SIDE: side index; else while leased:
				   the lease slot */
};

/* An entry other than e0: allocated on its own, so it names its message
 * and chains to the message's next such entry. */
struct qent_x {
	struct qent e;
	struct msg *msg;
	struct qent_x *mnext;
};

struct msg {
	uint32_t refs;		/* entries in use, plus transient holders */
	uint32_t body_len;
	uint64_t seq;		/* journal record that holds it; 0 if none */
	uint64_t ts;		/* publish time, unix ms */
	uint8_t id[16];		/* binary UUID, unless MF_TEXT_ID */
	struct qent e0;
	/* char body[body_len] unless MF_PAGED; then, 8-aligned, struct
	   msg_ext if MF_EXT */
};

/* The rare fields, after the body.  Strings point into the allocation. */
struct msg_ext {
	/*
	 * Running deadlines use the monotonic clock, so that a wall-clock
	 * step (NTP, an operator) neither releases nor holds back a delay or
	 * TTL.  mono_ts is the monotonic time of the publish: now minus the
	 * message's wall-clock age when it was built, so it is right after a
	 * restart too; signed, as a message may be older than this boot.
	 */
	int64_t mono_ts;
	uint64_t delay_ms;	/* from "delay"; 0 = none */
	uint64_t ttl_ms;	/* from "ttl"; 0 = the group's */
	struct fy_kv *hdr;
	struct fy_hist *hist;	/* dead letters only */
	uint32_t nhdr;
	uint32_t nhist;
	struct fy_str reply_to;
	struct fy_str corr;
	struct fy_str id;	/* the id, when not a canonical UUID */
};

/*
 * Build a message from a decoded publish.  id/id_len is the message id (the
 * producer's, or one from msg_id_generate()).  Its delay and ttl count from
 * ts, so a record replayed later gives the same times.  hist may be NULL.
 * Copies everything; returns a message with refs == 1, or NULL on ENOMEM.
 */
struct msg *msg_new(const struct fy_pubmsg *pm, const char *id, size_t id_len,
    uint64_t ts, const struct fy_hist *hist, uint32_t nhist);
/* The same, paged out from the start (replay beyond max_memory): seq must
 * be set before anything reads the body. */
struct msg *msg_new_paged(const struct fy_pubmsg *pm, const char *id,
    size_t id_len, uint64_t ts, const struct fy_hist *hist, uint32_t nhist);

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

/* The body of a message in memory (not MF_PAGED). */
static inline char *
msg_body(const struct msg *m)
{
	return (char *)(m + 1);
}

static inline int
msg_paged(const struct msg *m)
{
	return (m->e0.flags & MF_PAGED) != 0;
}

/*
 * m's body wherever it is: in memory, or read back from the journal (the
 * hook page.c registers).  A body read back lives in a read buffer, valid
 * until the next msg_body_load(): copy it or use it at once.  NULL (after
 * logging) if it cannot be read.
 */
const char *msg_body_load(const struct msg *m);
void msg_set_load_hook(const char *(*fn)(void *arg, const struct msg *m),
    void *arg);

/*
 * Paging bodies out (page.c decides when).  A message may go when its
 * record is in the journal, no entry of it is leased and only its entries
 * hold it (no connection is sending its body): each entry durable, so its
 * record stays in the journal as long as the message lives.
 */
int msg_can_page(const struct msg *m);
/*
 * Move m's header (and rare fields) to an allocation of their own without
 * the body, re-pointing everything that points into it (its first entry's
 * list neighbours and side, its other entries), and free the old one.
 * Returns the message's new address, or NULL on ENOMEM (m is unchanged).
 * m must pass msg_can_page().
 */
struct msg *msg_page_out(struct msg *m);

/* Bytes and counts of message bodies, process-wide. */
struct msg_mem {
	uint64_t bytes;		/* bodies in memory */
	uint64_t paged;		/* messages paged out */
	uint64_t paged_bytes;	/* their bodies */
	uint64_t paged_ever;	/* paged out since start */
};
extern struct msg_mem msg_mem;

/* The rare fields; an empty set (all zero) for a message without them. */
const struct msg_ext *msg_ext(const struct msg *m);

/* The monotonic time of m's publish.  Kept from when it was built if it
 * has a delay or TTL; otherwise (a group's default TTL) derived from its
 * wall-clock time now. */
int64_t msg_mono(const struct msg *m);

/*
 * Message ids: canonical lowercase UUID text (36 chars + NUL).  A random
 * version-4 UUID is drawn once from libuuid; later ids add a counter to its
 * random bits, so generating one costs no syscall (uuid_generate_random()
 * calls getrandom() each time) while staying unique per broker run.
 * Messages keep such ids in 16 bytes and print them when needed.
 */
#define MSG_ID_LEN 36
void msg_id_generate(char out[MSG_ID_LEN + 1]);
/*
 * The id of an idempotent producer's message without an id of its own: a
 * UUID (version 8) hashed from (pid, seq), so that a retry after any crash,
 * power loss included, carries the id of the copy a consumer may already
 * hold, and consumers that skip repeats by id skip it.
 */
void msg_id_derive(const char *pid, size_t len, uint64_t seq,
    char out[MSG_ID_LEN + 1]);

/* m's id as text; buf holds it when it has to be printed. */
struct fy_str msg_id(const struct msg *m, char buf[MSG_ID_LEN + 1]);

/* The id's hash for TRACE: the same for the message and for its text. */
uint64_t msg_idh(const struct msg *m);
uint64_t msg_id_hash(const char *id, size_t len);

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
#define CAUSE_NFAIL 4		/* delivery failures, counted in causes */
const char *qent_cause_name(int cause);

/* One failed delivery, kept for the dead-letter history. */
struct qhist_entry {
	uint64_t at;		/* unix ms */
	uint8_t cause;		/* enum qent_cause */
	char *consumer;		/* owned */
	char *error;		/* owned, may be NULL */
};

#define QHIST_MAX 32		/* entries kept per message (most recent) */

/* What only some entries need.  Pooled; addresses are stable. */
struct qside {
	struct qent *e;		/* owner (heap nodes lead back to it) */
	struct hnode dn;	/* key: not-before (monotonic ms); in
				   group->delayed while delayed */
	struct hnode tn;	/* key: TTL expiry (monotonic ms); in
				   group->ttlq while queued for it */
	struct qhist_entry *hist;	/* NULL until the first failure */
	struct qent_x *more;	/* e0's side only: the message's other
				   entries */
	uint32_t lease;		/* lease slot while leased; free-list link
				   while pooled */
	uint32_t ndurable;	/* e0's side only: the message's entries
				   with QE_DURABLE */
	uint16_t causes[CAUSE_NFAIL];	/* failed deliveries by cause */
	uint16_t nhist;
	uint32_t order;		/* its place in the group, from its first
				   delivery (group.next_order); 0 = never
				   delivered, or not known */
};

static inline struct msg *
qent_msg(const struct qent *e)
{
	if (e->flags & QE_FIRST)
		return container_of(e, struct msg, e0);
	return ((const struct qent_x *)e)->msg;
}

struct qside *qside_at(uint32_t idx);

/* e's side, or NULL if it has none. */
static inline struct qside *
qent_side(const struct qent *e)
{
	return e->flags & QE_SIDE ? qside_at(e->x) : NULL;
}

/* e's side, made if needed; NULL on ENOMEM. */
struct qside *qent_side_get(struct qent *e);

/* Entry of a heap node of a side. */
#define qent_of_dn(n) (container_of(n, struct qside, dn)->e)
#define qent_of_tn(n) (container_of(n, struct qside, tn)->e)

static inline int
qent_delayed(const struct qent *e)
{
	const struct qside *q = qent_side(e);

	return q && hnode_queued(&q->dn);
}

/* The lease slot of a leased entry. */
static inline uint32_t
qent_lease_slot(const struct qent *e)
{
	return e->flags & QE_SIDE ? qside_at(e->x)->lease : e->x;
}

void qent_set_lease_slot(struct qent *e, uint32_t slot);

/* How many durable entries m has.  O(1). */
uint32_t msg_ndurable(const struct msg *m);
static inline int
msg_durable(const struct msg *m)
{
	return msg_ndurable(m) > 0;
}
/* Mark e durable or not, keeping msg_durable() right. */
void qent_set_durable(struct qent *e, int on);

/* The message's entries in use, e0 first: for (e = msg_ents(m); e; e =
 * msg_ents_next(e)). */
struct qent *msg_ents(struct msg *m);
struct qent *msg_ents_next(struct qent *e);

/* Called by qent_free() for durable entries (the store's bookkeeping). */
void qent_set_release_hook(void (*fn)(void *arg, struct qent *e),
    void *arg);
/* Called by qent_free() for an entry still in a group, first (the group's
 * counters: group_init() sets it, so this file needs no group names). */
void qent_set_gone_hook(void (*fn)(struct qent *e));

/* A new entry holding a reference to m; NULL on ENOMEM. */
struct qent *qent_new(struct msg *m, struct group *g);
/* Frees e and drops its message reference.  Must be unlinked from every
 * structure first. */
void qent_free(struct qent *e);

/* Fill *f with the MSG frame that delivers e (sid and lease left 0).  The
 * frame borrows from e's message, topic (its group's topic name) and
 * idbuf; a paged body
 * from the read buffer (msg_body_load()).  0, or -EIO if the body cannot
 * be read back. */
int qent_frame(const struct qent *e, struct fy_str topic, struct fy_frame *f,
    char idbuf[MSG_ID_LEN + 1]);

/* Record a failed delivery; keeps the most recent QHIST_MAX.  0 or
 * -ENOMEM. */
int qent_hist_add(struct qent *e, int cause, uint64_t at,
    const char *consumer, size_t consumer_len, const char *error,
    size_t error_len);
/* Count a failure by cause (saturating). */
void qent_count_cause(struct qent *e, int cause);

/* Release every pooled side no entry uses (at broker shutdown). */
void qside_pool_trim(void);

#endif
