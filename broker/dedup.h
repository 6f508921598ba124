/*
 * dedup.h - remembering what was already stored, so retries are not
 * enqueued twice.
 *
 * struct dedup: the producer-supplied message ids a topic saw during the
 * last dedup_window, oldest first (a FIFO, so expiry is O(1) per id) and
 * hashed for lookup.  Each remembered id keeps its publish record alive in
 * the journal (the caller's release callback drops it), so a restart
 * within the window still knows it.
 *
 * struct producers: each idempotent producer's high-water mark (the highest
 * sequence stored), plus the ids of its last few messages so a duplicate
 * can be confirmed with the id the original got.  Kept until the producer
 * has stored nothing for ttl (producer_ttl): clients that draw a fresh pid
 * per process would otherwise grow it by a producer each, forever.  The
 * store writes every mark into each journal segment's catalog.
 *
 * A producer past its ttl no longer exists for producer_find() (so the
 * answer does not depend on when producers_expire() last ran); the list
 * in last-activity order lets producers_expire() free them oldest first,
 * O(1) each.
 */
#ifndef FERRY_BROKER_DEDUP_H
#define FERRY_BROKER_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "list.h"

struct dedup_entry {
	struct dedup_entry *hnext;
	struct list link;	/* FIFO by time */
	int64_t at;		/* monotonic ms of the publish (msg.mono_ts) */
	uint64_t seq;		/* its record, referenced in the journal */
	uint32_t hash;
	uint8_t len;
	char id[];
};

struct dedup {
	struct dedup_entry **tab;
	uint32_t cap, n;
	struct list fifo;
};

void dedup_init(struct dedup *d);
/* Free every entry, calling release(arg, seq) for each. */
void dedup_fini(struct dedup *d, void (*release)(void *, uint64_t),
    void *arg);

/* Drop entries published before now - window (monotonic ms; release as
 * above). */
void dedup_prune(struct dedup *d, int64_t now, uint64_t window,
    void (*release)(void *, uint64_t), void *arg);

struct dedup_entry *dedup_find(const struct dedup *d, const char *id,
    size_t len);
/* Remember id (copied).  0 or -ENOMEM.  Entries must be added in time
 * order (at non-decreasing) for expiry to stay FIFO. */
int dedup_add(struct dedup *d, const char *id, size_t len, int64_t at,
    uint64_t seq);

#define PRODUCER_RECENT 16	/* ids remembered per producer */

struct producer {
	struct producer *hnext;
	struct list link;	/* producers.lru */
	int64_t at;		/* monotonic ms of its last stored publish */
	uint64_t hwm;		/* highest sequence stored */
	uint64_t rseq[PRODUCER_RECENT];	/* recent sequences ... */
	char rid[PRODUCER_RECENT][FY_ID_MAX + 1];	/* ... and their ids */
	uint32_t hash;
	uint8_t len;
	char pid[FY_ID_MAX + 1];
};

struct producers {
	struct producer **tab;
	uint32_t cap, n;
	struct producer *last;	/* found last: a producer's publishes come
				   in runs, and each is looked up twice */
	struct list lru;	/* by at, oldest first (producers_sort() after
				   a replay that touched them out of order) */
	int64_t ttl;		/* ms; 0: never forgotten */
};

void producers_init(struct producers *p, uint64_t ttl_ms);
void producers_fini(struct producers *p);
/* 1 if pr stored nothing in the ttl before now (monotonic ms). */
int producer_expired(const struct producers *p, const struct producer *pr,
    int64_t now);
/* The producer of pid, NULL if unknown or expired at now (an expired one
 * is freed). */
struct producer *producer_find(struct producers *p, const char *pid,
    size_t len, int64_t now);
/* Find or create (a new one is active at now).  NULL on ENOMEM. */
struct producer *producer_get(struct producers *p, const char *pid,
    size_t len, int64_t now);
/* pr was active at at: keep the later of that and what it had, and move it
 * to the list's tail. */
void producer_touch(struct producers *p, struct producer *pr, int64_t at);
/* Record that seq was stored at at with message id (may be NULL). */
void producer_stored(struct producers *p, struct producer *pr, uint64_t seq,
    const char *id, size_t id_len, int64_t at);
/* The id a stored seq got, if still remembered; else NULL. */
const char *producer_recent_id(const struct producer *pr, uint64_t seq);

/* Call fn for every producer (the catalog); stops at a non-zero return. */
int producers_each(struct producers *p,
    int (*fn)(void *arg, struct producer *pr), void *arg);

/* Free the producers expired at now, oldest first; how many. */
uint32_t producers_expire(struct producers *p, int64_t now);
/* Put the list in at order (after a replay).  0 or -ENOMEM (the order
 * is then left as it was: expiry comes late, never early). */
int producers_sort(struct producers *p);

#endif
