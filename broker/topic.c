/*
 * topic.c - the topic registry (a chained hash table), fan-out, backlog,
 * and group lookup, creation and deletion.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "group.h"
#include "log.h"
#include "msg.h"
#include "topic.h"
#include "trace.h"

static const struct topic_hooks *hooks;

void
topic_set_hooks(const struct topic_hooks *h)
{
	hooks = h;
}

/* Eight bytes a step: every PUB looks its topic up, and FNV-1a's byte a
 * step cost 5% of ferryd's time in a flat-out publish of 128-byte
 * messages. */
static uint32_t
hash_name(const char *p, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ len, w;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w, p, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	w = 0;
	memcpy(&w, p, len);
	h = (h ^ w) * 0xff51afd7ed558ccdull;
	h ^= h >> 29;
	return (uint32_t)h;
}

void
topic_registry_init(struct core *b)
{
	b->topics = NULL;
	b->topics_cap = 0;
	b->ntopics = 0;
}

static void
topic_free(struct topic *t)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &t->backlog) {
		struct qent *e = list_entry(pos, struct qent, link);

		list_del(&e->link);
		qent_free(e);
	}
	hooks->forget_dedup(t->b, &t->dedup);
	t->b->topic_gen++;
	free(t->name);
	free(t);
}

void
topic_registry_fini(struct core *b)
{
	for (uint32_t i = 0; i < b->topics_cap; i++)
		while (b->topics[i])
			topic_delete(b->topics[i]);
	free(b->topics);
	topic_registry_init(b);
}

struct topic *
topic_find(struct core *b, const char *name, size_t len)
{
	uint32_t h;
	struct topic *t;

	if (!b->topics_cap)
		return NULL;
	h = hash_name(name, len);
	for (t = b->topics[h & (b->topics_cap - 1)]; t; t = t->hnext)
		if (t->hash == h && t->name_len == len &&
		    !memcmp(t->name, name, len))
			return t;
	return NULL;
}

static int
registry_grow(struct core *b)
{
	uint32_t cap = b->topics_cap ? b->topics_cap * 2 : 64;
	struct topic **tab = calloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (uint32_t i = 0; i < b->topics_cap; i++) {
		struct topic *t, *next;

		for (t = b->topics[i]; t; t = next) {
			next = t->hnext;
			t->hnext = tab[t->hash & (cap - 1)];
			tab[t->hash & (cap - 1)] = t;
		}
	}
	free(b->topics);
	b->topics = tab;
	b->topics_cap = cap;
	return 0;
}

static int
has_suffix(const char *name, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len > n && !memcmp(name + len - n, suffix, n);
}

struct topic *
topic_get(struct core *b, const char *name, size_t len)
{
	struct topic *t = topic_find(b, name, len);
	struct topic **slot;

	if (t)
		return t;
	if (b->ntopics >= b->topics_cap && registry_grow(b) < 0)
		return NULL;
	if (!(t = calloc(1, sizeof(*t))) || !(t->name = strndup(name, len))) {
		free(t);
		return NULL;
	}
	t->b = b;
	t->name_len = len;
	t->hash = hash_name(name, len);
	t->is_dlq = (uint8_t)has_suffix(name, len, TOPIC_DLQ_SUFFIX);
	t->is_inbox = len > strlen(TOPIC_INBOX_PREFIX) &&
	    !memcmp(name, TOPIC_INBOX_PREFIX, strlen(TOPIC_INBOX_PREFIX));
	t->sym = trace_sym(&b->trace, name, len);
	list_init(&t->groups);
	list_init(&t->backlog);
	dedup_init(&t->dedup);
	slot = &b->topics[t->hash & (b->topics_cap - 1)];
	t->hnext = *slot;
	*slot = t;
	b->ntopics++;
	log_debug_kv(log_kv(t->name, NULL, NULL), "topic %s created", t->name);
	return t;
}

void
topic_delete(struct topic *t)
{
	struct core *b = t->b;
	struct topic **pp;
	struct list *pos, *tmp;

	if (t->deleting)
		return;
	t->deleting = 1;
	list_for_each_safe(pos, tmp, &t->groups)
		topic_group_delete(list_entry(pos, struct group, tlink));
	for (pp = &b->topics[t->hash & (b->topics_cap - 1)]; *pp;
	    pp = &(*pp)->hnext) {
		if (*pp == t) {
			*pp = t->hnext;
			break;
		}
	}
	b->ntopics--;
	log_debug_kv(log_kv(t->name, NULL, NULL), "topic %s deleted", t->name);
	topic_free(t);
}

int
topic_publish(struct topic *t, struct msg *m, struct group *only)
{
	struct qent *stack[16], **ents = stack, *held = NULL;
	uint32_t n = only ? 1 : t->ngroups, i = 0;
	struct list *pos;

	/* Allocate every entry before placing any, so that a failure leaves
	 * no group with the message and another without. */
	if (n > 16 && !(ents = malloc(n * sizeof(*ents))))
		return -ENOMEM;
	if (!only && !t->ndurable && !t->is_inbox &&
	    !(held = qent_new(m, NULL)))
		goto fail;
	if (only) {
		if (!(ents[i++] = qent_new(m, only)))
			goto fail;
	} else {
		list_for_each(pos, &t->groups) {
			struct group *g = list_entry(pos, struct group, tlink);

			if (!(ents[i++] = qent_new(m, g)))
				goto fail;
		}
	}
	t->published++;
	if (held) {
		list_add_tail(&t->backlog, &held->link);
		t->nbacklog++;
		hooks->hold(t->b, held);
	}
	for (i = 0; i < n; i++) {
		struct group *g = ents[i]->group;

		group_add(g, ents[i]);
		if (!g->ephemeral)
			hooks->hold(t->b, ents[i]);
	}
	/* Delivery comes later, from the pump (delivery.c): applying a
	 * record never sends anything. */
	for (i = 0; i < n; i++)
		group_mark_due(ents[i]->group);
	if (ents != stack)
		free(ents);
	return 0;
fail:
	while (i-- > 0)
		if (ents[i]) {
			ents[i]->group = NULL;	/* not counted anywhere yet */
			qent_free(ents[i]);
		}
	qent_free(held);
	if (ents != stack)
		free(ents);
	return -ENOMEM;
}

struct group *
topic_group_find(struct topic *t, const char *name, size_t len)
{
	struct list *pos;

	list_for_each(pos, &t->groups) {
		struct group *g = list_entry(pos, struct group, tlink);

		if (strlen(g->name) == len && !memcmp(g->name, name, len))
			return g;
	}
	return NULL;
}

struct group *
topic_group_get(struct topic *t, const char *name, size_t len,
    const struct group_conf *conf)
{
	struct group *g = topic_group_find(t, name, len);
	struct qent *e;

	if (g)
		return g;
	if (!(g = group_new(t, name, len, conf)))
		return NULL;
	if (!conf->ephemeral && !t->ndurable++) {
		/* The first durable group takes what waited for it, delays
		 * and TTLs included. */
		while ((e = list_first(&t->backlog, struct qent, link))) {
			list_del(&e->link);
			group_add(g, e);
		}
		t->nbacklog = 0;
	}
	list_add_tail(&t->groups, &g->tlink);
	t->ngroups++;
	t->b->ngroups++;
	log_debug_kv(log_kv(t->name, g->name, NULL), "group %s/%s created%s",
	    t->name, g->name,
	    conf->ephemeral ? " (ephemeral)" : "");
	return g;
}

void
topic_group_delete(struct group *g)
{
	struct topic *t = g->topic;

	if (g->deleting)
		return;
	g->deleting = 1;
	/* Members are told and end, through the layer above (delivery.c);
	 * at replay there are none. */
	if (g->nmembers || !list_empty(&g->blocked))
		group_evict(g);
	hooks->group_forget(t->b, g);
	list_del(&g->tlink);
	t->ngroups--;
	t->b->ngroups--;
	if (!g->ephemeral)
		t->ndurable--;
	log_debug_kv(log_kv(t->name, g->name, NULL), "group %s/%s deleted",
	    t->name, g->name);
	group_free(g);
	/* A reply inbox lives as long as its listener. */
	if (t->is_inbox && !t->ngroups && !t->deleting)
		topic_delete(t);
}
