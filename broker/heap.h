/*
 * heap.h - binary min-heap of queue entries ordered by qent->deadline.
 *
 * Each entry records its index (qent->heap_idx) so that any entry can be
 * removed in O(log n), e.g. when its group is deleted.
 */
#ifndef FERRY_BROKER_HEAP_H
#define FERRY_BROKER_HEAP_H

#include <stdint.h>

#define HEAP_NONE UINT32_MAX

struct qent;

struct heap {
	struct qent **a;
	uint32_t n, cap;
};

void heap_init(struct heap *h);
void heap_fini(struct heap *h);	/* frees the array, not the entries */
int heap_push(struct heap *h, struct qent *e);	/* 0 or -ENOMEM */
struct qent *heap_top(const struct heap *h);	/* NULL if empty */
struct qent *heap_pop(struct heap *h);		/* NULL if empty */
void heap_remove(struct heap *h, struct qent *e);

#endif
