/*
 * lease.c - generation-checked slot table for lease tokens.
 */
#include <stdlib.h>

#include "lease.h"

void
lease_table_init(struct lease_table *t)
{
	t->s = NULL;
	t->cap = 0;
	t->free_head = LEASE_NIL;
	t->used = 0;
}

void
lease_table_fini(struct lease_table *t)
{
	free(t->s);
	lease_table_init(t);
}

static int
grow(struct lease_table *t)
{
	uint32_t cap = t->cap ? t->cap * 2 : 16;
	struct lease_slot *s;

	if (cap <= t->cap || cap > LEASE_SLOTS_MAX)
		return -1;
	s = realloc(t->s, cap * sizeof(*s));
	if (!s)
		return -1;
	/* New slots go on the free list lowest index first. */
	for (uint32_t i = cap; i-- > t->cap;) {
		s[i].qe = NULL;
		s[i].gen = 1;
		s[i].next_free = t->free_head;
		t->free_head = i;
	}
	t->s = s;
	t->cap = cap;
	return 0;
}

uint64_t
lease_alloc(struct lease_table *t, struct qent *qe)
{
	struct lease_slot *s;
	uint32_t i;

	if (t->free_head == LEASE_NIL && grow(t) < 0)
		return 0;
	i = t->free_head;
	s = &t->s[i];
	t->free_head = s->next_free;
	s->qe = qe;
	s->owner = NULL;
	s->deadline = 0;
	s->since = 0;
	t->used++;
	return lease_token(t, i);
}

struct qent *
lease_find(const struct lease_table *t, uint64_t token)
{
	uint32_t i = lease_idx(token);

	/* A token at or above 2^53 has a generation no slot has. */
	if (i >= t->cap || t->s[i].gen != token >> LEASE_IDX_BITS)
		return NULL;
	return t->s[i].qe;
}

void
lease_free(struct lease_table *t, uint64_t token)
{
	uint32_t i = lease_idx(token);
	struct lease_slot *s;

	if (!lease_find(t, token))
		return;
	s = &t->s[i];
	s->qe = NULL;
	if (++s->gen > LEASE_GEN_MAX)
		s->gen = 1;
	s->next_free = t->free_head;
	t->free_head = i;
	t->used--;
}
