/*
 * topic.h - named streams, created on first use, and their groups.
 *
 * While a topic has no durable group it keeps what is published in a
 * backlog; the first durable group created on it takes the backlog, so
 * nothing published before the first worker arrives is lost.  Ephemeral
 * groups (pub/sub listeners, reply inboxes) get every message too, but do
 * not take the backlog: a listener that comes and goes must not make the
 * topic forget what it holds for its workers.
 */
#ifndef FERRY_BROKER_TOPIC_H
#define FERRY_BROKER_TOPIC_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "dedup.h"
#include "list.h"

struct core;
struct group;
struct group_conf;
struct msg;
struct qent;

struct topic {
	struct core *b;
	struct topic *hnext;	/* broker's hash chain */
	uint32_t hash;
	char *name;		/* owned, NUL-terminated */
	size_t name_len;
	struct list groups;	/* struct group.tlink */
	uint32_t ngroups;
	uint32_t ndurable;	/* groups that are not ephemeral */
	struct list backlog;	/* struct qent.link, group == NULL; only
				   while ndurable == 0 */
	uint64_t nbacklog;
	uint8_t is_dlq;		/* name ends in ".dlq": never dead-letter */
	uint32_t sym;		/* trace symbol of the name */
	uint8_t is_inbox;	/* name starts with "_inbox.": no backlog, and
				   deleted with its last group */
	uint8_t deleting;	/* topic_delete() in progress */
	struct dedup dedup;	/* producers' own ids, dedup_window */
	uint64_t published;
};

/* t's name as the codec's string (borrowed from t). */
static inline struct fy_str
topic_str(const struct topic *t)
{
	return (struct fy_str){t->name, (uint32_t)t->name_len};
}

#define TOPIC_DLQ_SUFFIX ".dlq"
/* Request-reply inboxes: only ever read by ephemeral subscriptions, so a
 * reply no one waits for is not kept in a backlog. */
#define TOPIC_INBOX_PREFIX "_inbox."
#define GROUP_DEFAULT "default"

/*
 * What topics need from the store above them, registered once at start-up
 * (store_init_hooks()): keep a durable entry's journal record alive, and
 * let a deleted topic's remembered ids and a deleted group's record go.
 */
struct topic_hooks {
	void (*hold)(struct core *b, struct qent *e);
	void (*forget_dedup)(struct core *b, struct dedup *d);
	void (*group_forget)(struct core *b, struct group *g);
};

void topic_set_hooks(const struct topic_hooks *h);

void topic_registry_init(struct core *b);
void topic_registry_fini(struct core *b);	/* frees every topic */

struct topic *topic_find(struct core *b, const char *name, size_t len);
/* Find or create.  NULL on ENOMEM. */
struct topic *topic_get(struct core *b, const char *name, size_t len);
/* Delete t, its groups (members are told E_DELETED) and its backlog. */
void topic_delete(struct topic *t);

/* Fan m out to every group, and to the backlog if no group is durable;
 * or, with only != NULL, enqueue it in that group alone.  0 or -ENOMEM. */
int topic_publish(struct topic *t, struct msg *m, struct group *only);

struct group *topic_group_find(struct topic *t, const char *name,
    size_t len);
/*
 * Find or create a group.  A new durable group takes the backlog if it is
 * the topic's first durable one.  conf applies only on creation.
 */
struct group *topic_group_get(struct topic *t, const char *name, size_t len,
    const struct group_conf *conf);
/* Delete a group: members are told E_DELETED, entries dropped. */
void topic_group_delete(struct group *g);

#endif
