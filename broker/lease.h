/*
 * lease.h - the broker's table of outstanding deliveries, for O(1) settle.
 *
 * A lease token is (generation << LEASE_IDX_BITS | slot).  Settling or
 * expiring a delivery frees its slot and bumps the slot's generation, so a
 * token that outlived its delivery never matches again: that is how a stale
 * ACK, NACK or TOUCH is told apart from a live one without a hash lookup.
 * Token 0 is never issued (generations start at 1).
 *
 * Tokens stay below 2^53 (PROTOCOL.md section 9), so that a client whose
 * numbers are doubles (JavaScript) can hold them without a big-integer
 * type: 24 bits of slot (16777216 leases outstanding at once, the table's
 * limit) and 29 bits of generation.  A generation wraps after 2^29 reuses
 * of one slot; a stale token then matches only if its slot was reused an
 * exact multiple of that, by the same subscription (sub_lease_find()).
 */
#ifndef FERRY_BROKER_LEASE_H
#define FERRY_BROKER_LEASE_H

#include <stdint.h>

struct qent;

struct lease_slot {
	struct qent *qe;	/* NULL when free */
	void *owner;		/* the member holding it (struct sub) */
	uint64_t deadline;	/* monotonic ms; TOUCH moves it */
	uint64_t since;		/* monotonic ms of the delivery; TOUCH does
				   not move it (INFLIGHT "age") */
	uint32_t gen;		/* current generation, 1..LEASE_GEN_MAX */
	union {
		uint32_t next_free;	/* free-list link when free */
		uint32_t order;		/* in use: the entry's place in its
					   group (struct qside.order) */
	};
};

struct lease_table {
	struct lease_slot *s;
	uint32_t cap;
	uint32_t free_head;	/* LEASE_NIL when no free slot */
	uint32_t used;
};

#define LEASE_NIL UINT32_MAX
#define LEASE_IDX_BITS 24
#define LEASE_SLOTS_MAX (UINT32_C(1) << LEASE_IDX_BITS)
#define LEASE_GEN_MAX ((UINT32_C(1) << (53 - LEASE_IDX_BITS)) - 1)

/* A token's slot index, and the token of slot idx's current delivery. */
static inline uint32_t
lease_idx(uint64_t token)
{
	return (uint32_t)(token & (LEASE_SLOTS_MAX - 1));
}

void lease_table_init(struct lease_table *t);
void lease_table_fini(struct lease_table *t);	/* entries not touched */

/* Give qe a slot; returns its token, or 0 on ENOMEM or when
 * LEASE_SLOTS_MAX leases are outstanding. */
uint64_t lease_alloc(struct lease_table *t, struct qent *qe);

/* The entry a token names, or NULL if the token is stale or bogus. */
struct qent *lease_find(const struct lease_table *t, uint64_t token);

/* The slot of a live token's index (lease_idx()). */
static inline struct lease_slot *
lease_slot(const struct lease_table *t, uint32_t idx)
{
	return &t->s[idx];
}

static inline uint64_t
lease_token(const struct lease_table *t, uint32_t idx)
{
	return (uint64_t)t->s[idx].gen << LEASE_IDX_BITS | idx;
}

/* Free the slot of a live token (no-op for a stale one). */
void lease_free(struct lease_table *t, uint64_t token);

#endif
