/*
 * lease.h - the broker's table of outstanding deliveries, for O(1) settle.
 *
 * A lease token is (generation << 32 | slot).  Settling or expiring a
 * delivery frees its slot and bumps the slot's generation, so a token that
 * outlived its delivery never matches again: that is how a stale ACK, NACK
 * or TOUCH is told apart from a live one without a hash lookup.  Token 0 is
 * never issued (generations start at 1).
 */
#ifndef FERRY_BROKER_LEASE_H
#define FERRY_BROKER_LEASE_H

#include <stdint.h>

struct qent;

struct lease_slot {
	struct qent *qe;	/* NULL when free */
	void *owner;		/* the member holding it (struct sub) */
	uint64_t deadline;	/* monotonic ms */
	uint32_t gen;		/* current generation, never 0 */
	uint32_t next_free;	/* free-list link when free */
};

struct lease_table {
	struct lease_slot *s;
	uint32_t cap;
	uint32_t free_head;	/* LEASE_NIL when no free slot */
	uint32_t used;
};

#define LEASE_NIL UINT32_MAX

void lease_table_init(struct lease_table *t);
void lease_table_fini(struct lease_table *t);	/* entries not touched */

/* Give qe a slot; returns its token, or 0 on ENOMEM. */
uint64_t lease_alloc(struct lease_table *t, struct qent *qe);

/* The entry a token names, or NULL if the token is stale or bogus. */
struct qent *lease_find(const struct lease_table *t, uint64_t token);

/* The slot of a live token's index (the token's low 32 bits). */
static inline struct lease_slot *
lease_slot(const struct lease_table *t, uint32_t idx)
{
	return &t->s[idx];
}

/* Free the slot of a live token (no-op for a stale one). */
void lease_free(struct lease_table *t, uint64_t token);

#endif
