/*
 * heap.c - binary min-heap of embedded nodes by key.
 */
#include <errno.h>
#include <stdlib.h>

#include "heap.h"

void
heap_init(struct heap *h)
{
	h->a = NULL;
	h->n = h->cap = 0;
}

void
heap_fini(struct heap *h)
{
	free(h->a);
	heap_init(h);
}

static inline int
less(const struct hnode *x, const struct hnode *y)
{
	return x->key < y->key;
}

static inline void
place(struct heap *h, uint32_t i, struct hnode *e)
{
	h->a[i] = e;
	e->idx = i;
}

static void
sift_up(struct heap *h, uint32_t i)
{
	struct hnode *e = h->a[i];

	while (i > 0) {
		uint32_t p = (i - 1) / 2;

		if (!less(e, h->a[p]))
			break;
		place(h, i, h->a[p]);
		i = p;
	}
	place(h, i, e);
}

static void
sift_down(struct heap *h, uint32_t i)
{
	struct hnode *e = h->a[i];

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && less(h->a[c + 1], h->a[c]))
			c++;
		if (!less(h->a[c], e))
			break;
		place(h, i, h->a[c]);
		i = c;
	}
	place(h, i, e);
}

int
heap_push(struct heap *h, struct hnode *e)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 64;
		struct hnode **a = realloc(h->a, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		h->a = a;
		h->cap = cap;
	}
	h->a[h->n] = e;
	sift_up(h, h->n++);
	return 0;
}

struct hnode *
heap_top(const struct heap *h)
{
	return h->n ? h->a[0] : NULL;
}

void
heap_remove(struct heap *h, struct hnode *e)
{
	uint32_t i = e->idx;
	struct hnode *last;

	if (i >= h->n || h->a[i] != e)
		return;
	e->idx = HEAP_NONE;
	last = h->a[--h->n];
	if (i == h->n)
		return;
	place(h, i, last);
	/* The moved entry may belong above or below its new place. */
	sift_up(h, i);
	sift_down(h, last->idx);
}

struct hnode *
heap_pop(struct heap *h)
{
	struct hnode *e = heap_top(h);

	if (e)
		heap_remove(h, e);
	return e;
}
