/*
 * dedup.c - recently seen message ids per topic, and producers'
 * high-water marks until they expire.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dedup.h"

static uint32_t
hash(const char *p, size_t len)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

void
dedup_init(struct dedup *d)
{
	d->tab = NULL;
	d->cap = d->n = 0;
	list_init(&d->fifo);
}

static void
unlink_entry(struct dedup *d, struct dedup_entry *e)
{
	struct dedup_entry **pp = &d->tab[e->hash & (d->cap - 1)];

	for (; *pp; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	list_del(&e->link);
	d->n--;
}

void
dedup_prune(struct dedup *d, int64_t now, uint64_t window,
    void (*release)(void *, uint64_t), void *arg)
{
	struct dedup_entry *e;

	while ((e = list_first(&d->fifo, struct dedup_entry, link)) &&
	    e->at + (int64_t)window <= now) {
		unlink_entry(d, e);
		if (release)
			release(arg, e->seq);
		free(e);
	}
}

void
dedup_fini(struct dedup *d, void (*release)(void *, uint64_t), void *arg)
{
	dedup_prune(d, INT64_MAX, 0, release, arg);
	free(d->tab);
	dedup_init(d);
}

struct dedup_entry *
dedup_find(const struct dedup *d, const char *id, size_t len)
{
	uint32_t h;
	struct dedup_entry *e;

	if (!d->cap)
		return NULL;
	h = hash(id, len);
	for (e = d->tab[h & (d->cap - 1)]; e; e = e->hnext)
		if (e->hash == h && e->len == len && !memcmp(e->id, id, len))
			return e;
	return NULL;
}

int
dedup_add(struct dedup *d, const char *id, size_t len, int64_t at,
    uint64_t seq)
{
	struct dedup_entry *e, **slot;

	if (len > FY_ID_MAX)
		return -EINVAL;
	if (d->n >= d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 256;
		struct dedup_entry **tab = calloc(cap, sizeof(*tab)), *x, *nx;

		if (!tab)
			return -ENOMEM;
		for (uint32_t i = 0; i < d->cap; i++)
			for (x = d->tab[i]; x; x = nx) {
				nx = x->hnext;
				x->hnext = tab[x->hash & (cap - 1)];
				tab[x->hash & (cap - 1)] = x;
			}
		free(d->tab);
		d->tab = tab;
		d->cap = cap;
	}
	if (!(e = malloc(sizeof(*e) + len)))
		return -ENOMEM;
	e->at = at;
	e->seq = seq;
	e->hash = hash(id, len);
	e->len = (uint8_t)len;
	memcpy(e->id, id, len);
	slot = &d->tab[e->hash & (d->cap - 1)];
	e->hnext = *slot;
	*slot = e;
	list_add_tail(&d->fifo, &e->link);
	d->n++;
	return 0;
}

void
producers_init(struct producers *p, uint64_t ttl_ms)
{
	p->tab = NULL;
	p->cap = p->n = 0;
	p->last = NULL;
	list_init(&p->lru);
	/* Keep at + ttl far from overflowing (at is within MSG_TIME_MAX,
	 * 2^40 ms, of now: msg_mono_of()). */
	p->ttl = ttl_ms > (uint64_t)INT64_MAX / 4 ? INT64_MAX / 4 :
	    (int64_t)ttl_ms;
}

void
producers_fini(struct producers *p)
{
	struct producer *x;

	while ((x = list_first(&p->lru, struct producer, link))) {
		list_del(&x->link);
		free(x);
	}
	free(p->tab);
	producers_init(p, (uint64_t)p->ttl);
}

int
producer_expired(const struct producers *p, const struct producer *pr,
    int64_t now)
{
	return p->ttl && pr->at + p->ttl <= now;
}

static void
forget(struct producers *p, struct producer *x)
{
	struct producer **pp = &p->tab[x->hash & (p->cap - 1)];

	for (; *pp; pp = &(*pp)->hnext)
		if (*pp == x) {
			*pp = x->hnext;
			break;
		}
	list_del(&x->link);
	if (p->last == x)
		p->last = NULL;
	p->n--;
	free(x);
}

struct producer *
producer_find(struct producers *p, const char *pid, size_t len, int64_t now)
{
	uint32_t h;
	struct producer *x = p->last;

	if (!x || x->len != len || memcmp(x->pid, pid, len)) {
		if (!p->cap)
			return NULL;
		h = hash(pid, len);
		for (x = p->tab[h & (p->cap - 1)]; x; x = x->hnext)
			if (x->hash == h && x->len == len &&
			    !memcmp(x->pid, pid, len))
				break;
		if (!x)
			return NULL;
		p->last = x;
	}
	if (producer_expired(p, x, now)) {
		forget(p, x);
		return NULL;
	}
	return x;
}

struct producer *
producer_get(struct producers *p, const char *pid, size_t len, int64_t now)
{
	struct producer *x = producer_find(p, pid, len, now), **slot;

	if (x)
		return x;
	if (len > FY_ID_MAX)
		return NULL;
	if (p->n >= p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 64;
		struct producer **tab = calloc(cap, sizeof(*tab)), *y, *ny;

		if (!tab)
			return NULL;
		for (uint32_t i = 0; i < p->cap; i++)
			for (y = p->tab[i]; y; y = ny) {
				ny = y->hnext;
				y->hnext = tab[y->hash & (cap - 1)];
				tab[y->hash & (cap - 1)] = y;
			}
		free(p->tab);
		p->tab = tab;
		p->cap = cap;
	}
	if (!(x = calloc(1, sizeof(*x))))
		return NULL;
	x->hash = hash(pid, len);
	x->len = (uint8_t)len;
	memcpy(x->pid, pid, len);
	x->at = now;
	slot = &p->tab[x->hash & (p->cap - 1)];
	x->hnext = *slot;
	*slot = x;
	list_add_tail(&p->lru, &x->link);
	p->n++;
	return p->last = x;
}

void
producer_touch(struct producers *p, struct producer *pr, int64_t at)
{
	if (at <= pr->at)
		return;
	pr->at = at;
	if (pr->link.next != &p->lru) {	/* a run: already the newest */
		list_del(&pr->link);
		list_add_tail(&p->lru, &pr->link);
	}
}

void
producer_stored(struct producers *p, struct producer *pr, uint64_t seq,
    const char *id, size_t id_len, int64_t at)
{
	uint32_t i = (uint32_t)(seq % PRODUCER_RECENT);

	producer_touch(p, pr, at);
	if (seq > pr->hwm)
		pr->hwm = seq;
	if (id_len > FY_ID_MAX)
		id_len = 0;
	pr->rseq[i] = seq;
	memcpy(pr->rid[i], id ? id : "", id ? id_len : 0);
	pr->rid[i][id ? id_len : 0] = '\0';
}

const char *
producer_recent_id(const struct producer *pr, uint64_t seq)
{
	uint32_t i = (uint32_t)(seq % PRODUCER_RECENT);

	return pr->rseq[i] == seq && pr->rid[i][0] ? pr->rid[i] : NULL;
}

int
producers_each(struct producers *p,
    int (*fn)(void *arg, struct producer *pr), void *arg)
{
	int r;

	for (uint32_t i = 0; i < p->cap; i++)
		for (struct producer *x = p->tab[i]; x; x = x->hnext)
			if ((r = fn(arg, x)) != 0)
				return r;
	return 0;
}

uint32_t
producers_expire(struct producers *p, int64_t now)
{
	struct producer *x;
	uint32_t n = 0;

	while ((x = list_first(&p->lru, struct producer, link)) &&
	    producer_expired(p, x, now)) {
		forget(p, x);
		n++;
	}
	return n;
}

static int
cmp_at(const void *a, const void *b)
{
	int64_t x = (*(struct producer *const *)a)->at;
	int64_t y = (*(struct producer *const *)b)->at;

	return x < y ? -1 : x > y;
}

int
producers_sort(struct producers *p)
{
	struct producer **v, *x;
	uint32_t n = 0;

	if (p->n < 2)
		return 0;
	if (!(v = malloc(p->n * sizeof(*v))))
		return -ENOMEM;
	while ((x = list_first(&p->lru, struct producer, link))) {
		list_del(&x->link);
		v[n++] = x;
	}
	qsort(v, n, sizeof(*v), cmp_at);
	for (uint32_t i = 0; i < n; i++)
		list_add_tail(&p->lru, &v[i]->link);
	free(v);
	return 0;
}
