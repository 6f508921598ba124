/*
 * list.h - intrusive circular doubly linked list with a sentinel head.
 *
 * O(1) insert at either end and O(1) removal of any element: what ready
 * queues, lease lists and member rings need.  An unlinked node points to
 * itself, so list_del() on it is harmless.
 */
#ifndef FERRY_BROKER_LIST_H
#define FERRY_BROKER_LIST_H

#include <stddef.h>

struct list {
	struct list *prev, *next;
};

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define list_entry(node, type, member) container_of(node, type, member)

static inline void
list_init(struct list *l)
{
	l->prev = l->next = l;
}

static inline int
list_empty(const struct list *l)
{
	return l->next == l;
}

static inline void
list_insert(struct list *prev, struct list *next, struct list *n)
{
	n->prev = prev;
	n->next = next;
	prev->next = n;
	next->prev = n;
}

static inline void
list_add_tail(struct list *head, struct list *n)
{
	list_insert(head->prev, head, n);
}

static inline void
list_add_head(struct list *head, struct list *n)
{
	list_insert(head, head->next, n);
}

static inline void
list_del(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

/* Move every node of src to the tail of dst, leaving src empty. */
static inline void
list_splice_tail(struct list *dst, struct list *src)
{
	if (list_empty(src))
		return;
	src->next->prev = dst->prev;
	dst->prev->next = src->next;
	src->prev->next = dst;
	dst->prev = src->prev;
	list_init(src);
}

#define list_first(head, type, member) \
	(list_empty(head) ? NULL : list_entry((head)->next, type, member))
#define list_last(head, type, member) \
	(list_empty(head) ? NULL : list_entry((head)->prev, type, member))

/* Safe against removal of the current node. */
#define list_for_each_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	    (pos) = (tmp), (tmp) = (pos)->next)

#define list_for_each(pos, head) \
	for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

#endif
