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
 * can be confirmed with the id the original got.  Kept forever; the store
 * writes every mark into each journal segment's catalog.
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
};

void producers_init(struct producers *p);
void producers_fini(struct producers *p);
struct producer *producer_find(struct producers *p, const char *pid,
    size_t len);
/* Find or create.  NULL on ENOMEM. */
struct producer *producer_get(struct producers *p, const char *pid,
    size_t len);
/* Record that seq was stored with message id (may be NULL). */
void producer_stored(struct producer *pr, uint64_t seq, const char *id,
    size_t id_len);
/* The id a stored seq got, if still remembered; else NULL. */
const char *producer_recent_id(const struct producer *pr, uint64_t seq);

/* Call fn for every producer (the catalog); stops at a non-zero return. */
int producers_each(struct producers *p,
    int (*fn)(void *arg, struct producer *pr), void *arg);

#endif
