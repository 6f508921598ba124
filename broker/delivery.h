/*
 * delivery.h - from queues to members: the pump, retries with backoff,
 * dead-lettering, TTL expiry and the overflow policy.
 *
 * Layering: request handling calls here; this calls the store (which
 * journals and applies every outcome), the groups, the members (sub.h)
 * and the connection's output.  The groups below call back through the
 * hooks delivery_init() registers (group.h).
 */
#ifndef FERRY_BROKER_DELIVERY_H
#define FERRY_BROKER_DELIVERY_H

#include <stdint.h>
#include <stddef.h>

struct core;
struct group;
struct qent;

/* Register the hooks the groups call (once, at start-up). */
void delivery_init(void);

/* Deliver g's ready entries to members with credit.  Safe to call often;
 * a no-op while it is on the stack. */
void delivery_pump(struct group *g);

/* Run the pumps group_mark_due() asked for. */
void delivery_pump_due(struct core *b);

/*
 * A delivery of e ended without an ack (cause: enum qent_cause): requeue it
 * after delay_ms (< 0: the backoff for its attempt; none for
 * CAUSE_RELEASED), or dead-letter it past its group's max_attempts, or
 * expire it if its TTL ran out meanwhile.  err: a nack's text, or NULL.
 */
void delivery_fail(struct core *b, struct qent *e, int cause,
    const char *err, size_t err_len, int64_t delay_ms);

/* e's TTL ran out while it waited: dead-letter it (or drop it). */
void delivery_expire(struct core *b, struct qent *e);

/* Make room in g for one more message of bytes: dead-letter its oldest
 * waiting messages if it overflows that way.  0, or -ENOSPC when g refuses
 * (overflow reject, or nothing waiting to push out). */
int delivery_make_room(struct core *b, struct group *g, uint64_t bytes);

/*
 * Flow control: c just published to t (only: to that group alone).  If a
 * group of it whose members are consuming has flow_high_water messages
 * ready, stop reading c until they have taken half of them (or stopped
 * consuming for a second).  TCP then slows the publisher; nothing is
 * refused.
 */
struct conn;
struct topic;
void delivery_flow_check(struct conn *c, struct topic *t,
    struct group *only);
/* c is going away: forget its pause. */
void delivery_flow_forget(struct conn *c);

#endif
