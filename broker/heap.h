/*
 * heap.h - binary min-heap of nodes embedded in queue entries.
 *
 * A node records its index, so any node can be removed in O(log n) (an
 * entry acked, or its group deleted).  An entry embeds one node per heap it
 * can be in (struct qent: its delay, its TTL); container_of() gets back to
 * it.
 */
#ifndef FERRY_BROKER_HEAP_H
#define FERRY_BROKER_HEAP_H

#include <stdint.h>

#define HEAP_NONE UINT32_MAX

struct hnode {
	uint64_t key;		/* monotonic ms: smallest on top */
	uint32_t idx;		/* index in its heap, or HEAP_NONE */
};

struct heap {
	struct hnode **a;
	uint32_t n, cap;
};

static inline void
hnode_init(struct hnode *n)
{
	n->key = 0;
	n->idx = HEAP_NONE;
}

static inline int
hnode_queued(const struct hnode *n)
{
	return n->idx != HEAP_NONE;
}

void heap_init(struct heap *h);
void heap_fini(struct heap *h);	/* frees the array, not the nodes */
int heap_push(struct heap *h, struct hnode *n);	/* 0 or -ENOMEM */
struct hnode *heap_top(const struct heap *h);	/* NULL if empty */
struct hnode *heap_pop(struct heap *h);		/* NULL if empty */
void heap_remove(struct heap *h, struct hnode *n);

#endif
