/*
 * topic.c - the topic registry (a chained hash table), fan-out, backlog,
 * and group lookup, creation and deletion.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "group.h"
#include "log.h"
#include "msg.h"
#include "store.h"
#include "sub.h"
#include "topic.h"

static uint32_t
hash_name(const char *p, size_t len)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

void
topic_registry_init(struct broker *b)
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
	free(t->name);
	free(t);
}

void
topic_registry_fini(struct broker *b)
{
	for (uint32_t i = 0; i < b->topics_cap; i++)
		while (b->topics[i])
			topic_delete(b->topics[i]);
	free(b->topics);
	topic_registry_init(b);
}

struct topic *
topic_find(struct broker *b, const char *name, size_t len)
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
registry_grow(struct broker *b)
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
topic_get(struct broker *b, const char *name, size_t len)
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
	list_init(&t->groups);
	list_init(&t->backlog);
	slot = &b->topics[t->hash & (b->topics_cap - 1)];
	t->hnext = *slot;
	*slot = t;
	b->ntopics++;
	log_debug("topic %s created", t->name);
	return t;
}

void
topic_delete(struct topic *t)
{
	struct broker *b = t->b;
	struct topic **pp;
	struct list *pos, *tmp;

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
	log_debug("topic %s deleted", t->name);
	topic_free(t);
}

int
topic_publish(struct topic *t, struct msg *m)
{
	struct list *pos;
	struct qent *e, *held = NULL;

	m->topic = t;
	/* Allocate every entry before enqueueing any, so that a failure
	 * leaves no group with the message and another without. */
	if (!t->ndurable && !(held = qent_new(m, NULL)))
		return -ENOMEM;
	list_for_each(pos, &t->groups) {
		struct group *g = list_entry(pos, struct group, tlink);

		if (!(e = qent_new(m, g)))
			goto fail;
		list_add_tail(&g->ready, &e->link);
	}
	t->published++;
	if (held) {
		list_add_tail(&t->backlog, &held->link);
		t->nbacklog++;
		store_hold(t->b, held);
	}
	list_for_each(pos, &t->groups) {
		struct group *g = list_entry(pos, struct group, tlink);

		if (!g->ephemeral)
			store_hold(t->b, list_entry(g->ready.prev,
			    struct qent, link));
		g->nready++;
		g->st.enqueued++;
		group_pump(g);
	}
	return 0;
fail:
	list_for_each(pos, &t->groups) {
		struct group *g = list_entry(pos, struct group, tlink);
		struct qent *last = list_entry(g->ready.prev, struct qent,
		    link);

		if (list_empty(&g->ready) || last->msg != m)
			break;
		list_del(&last->link);
		qent_free(last);
	}
	qent_free(held);
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
    uint32_t ack_timeout_ms, uint32_t max_attempts, int ephemeral)
{
	struct group *g = topic_group_find(t, name, len);
	struct list *pos;

	if (g)
		return g;
	if (!(g = group_new(t, name, len, ack_timeout_ms, max_attempts,
	    ephemeral)))
		return NULL;
	if (!ephemeral && !t->ndurable++) {
		/* The first durable group takes what waited for it. */
		list_for_each(pos, &t->backlog)
			list_entry(pos, struct qent, link)->group = g;
		g->nready = t->nbacklog;
		g->st.enqueued = t->nbacklog;
		list_splice_tail(&g->ready, &t->backlog);
		t->nbacklog = 0;
	}
	list_add_tail(&t->groups, &g->tlink);
	t->ngroups++;
	log_debug("group %s/%s created%s", t->name, g->name,
	    ephemeral ? " (ephemeral)" : "");
	return g;
}

void
topic_group_delete(struct group *g)
{
	struct topic *t = g->topic;
	struct list *pos, *tmp;

	if (g->deleting)
		return;
	g->deleting = 1;
	list_for_each_safe(pos, tmp, &g->members) {
		struct sub *s = list_entry(pos, struct sub, glink);

		conn_send_err(s->conn, 0, FY_E_DELETED, s->sid,
		    "group %s/%s was deleted", t->name, g->name);
		sub_free(s, -1);
	}
	store_group_forget(t->b, g);
	list_del(&g->tlink);
	t->ngroups--;
	if (!g->ephemeral)
		t->ndurable--;
	log_debug("group %s/%s deleted", t->name, g->name);
	group_free(g);
}
