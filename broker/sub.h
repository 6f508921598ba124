/*
 * sub.h - a subscription: one member of a group, on one connection.
 *
 * It holds the member's credit (prefetch), its outstanding deliveries
 * (slots in the broker's lease table for O(1) settle, and a list ordered
 * by deadline), and one timer armed for the earliest lease deadline.  Every lease of a member
 * lasts ack_timeout_ms and TOUCH restarts it, so appending at the tail keeps
 * the list sorted: no per-message timer, O(1) deliver, ack and touch.
 */
#ifndef FERRY_BROKER_SUB_H
#define FERRY_BROKER_SUB_H

#include <stdint.h>

#include "lease.h"
#include "list.h"

struct conn;
struct group;
struct qent;
struct event;

struct sub {
	uint64_t sid;		/* unique on its connection, > 0 */
	struct conn *conn;
	struct group *group;
	struct list glink;	/* in group->members */
	struct list clink;	/* in conn->subs */
	struct list leases;	/* struct qent.link, by deadline */
	struct event *timer;	/* armed for the head of leases, lazily */
	uint32_t prefetch;	/* max outstanding (at-least-once) */
	uint32_t inflight;	/* entries in leases */
	uint32_t ack_timeout_ms;
	uint8_t mode;		/* enum fy_mode */
	uint8_t stalled;	/* a lease timed out and its connection has
				   sent nothing since: served only when no
				   other member has credit, so a stuck
				   worker is not fed its own redeliveries */
};

/* Create and link into g and c.  NULL on ENOMEM. */
struct sub *sub_new(struct conn *c, struct group *g, uint64_t sid,
    uint32_t prefetch, uint32_t mode, uint32_t ack_timeout_ms);

/*
 * End a subscription.  Its outstanding deliveries go back to the group
 * with the given cause (CAUSE_RELEASED for UNSUB, CAUSE_DISCONNECTED for a
 * lost connection) and the group is pumped; with cause < 0 (the group is
 * being deleted, or the broker stops) they are dropped from memory without
 * a journal record, so a restart delivers them again.  An ephemeral group
 * is deleted with its subscription.
 */
void sub_free(struct sub *s, int cause);

int sub_has_credit(const struct sub *s);

/* Send e to s; takes e (leases it, or frees it in at-most-once mode).
 * Returns 0, or -ENOMEM with e untouched. */
int sub_deliver(struct sub *s, struct qent *e);

struct qent *sub_lease_find(const struct sub *s, uint64_t lease);
/* The member holding a leased entry, or NULL if e is not leased. */
struct sub *sub_holding(const struct qent *e);
/* A leased entry's token and deadline (monotonic ms). */
uint64_t sub_lease_token(const struct qent *e);
uint64_t sub_lease_deadline(const struct qent *e);
/* Detach a leased entry from s (it is being acked, failed or dropped). */
void sub_lease_end(struct sub *s, struct qent *e);
/* Restart e's lease deadline. */
void sub_touch(struct sub *s, struct qent *e);

#endif
