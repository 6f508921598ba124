/*
 * heap.c - binary min-heap of queue entries by deadline.
 */
#include <errno.h>
#include <stdlib.h>

#include "heap.h"
#include "msg.h"

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
less(const struct qent *x, const struct qent *y)
{
	return x->deadline < y->deadline;
}

static inline void
place(struct heap *h, uint32_t i, struct qent *e)
{
	h->a[i] = e;
	e->heap_idx = i;
}

static void
sift_up(struct heap *h, uint32_t i)
{
	struct qent *e = h->a[i];

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
	struct qent *e = h->a[i];

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
heap_push(struct heap *h, struct qent *e)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 64;
		struct qent **a = realloc(h->a, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		h->a = a;
		h->cap = cap;
	}
	h->a[h->n] = e;
	sift_up(h, h->n++);
	return 0;
}

struct qent *
heap_top(const struct heap *h)
{
	return h->n ? h->a[0] : NULL;
}

void
heap_remove(struct heap *h, struct qent *e)
{
	uint32_t i = e->heap_idx;
	struct qent *last;

	if (i >= h->n || h->a[i] != e)
		return;
	e->heap_idx = HEAP_NONE;
	last = h->a[--h->n];
	if (i == h->n)
		return;
	place(h, i, last);
	/* The moved entry may belong above or below its new place. */
	sift_up(h, i);
	sift_down(h, last->heap_idx);
}

struct qent *
heap_pop(struct heap *h)
{
	struct qent *e = heap_top(h);

	if (e)
		heap_remove(h, e);
	return e;
}
