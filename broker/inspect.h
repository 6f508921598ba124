/*
 * inspect.h - STATS, INFLIGHT, PEEK and TRACE: nothing is hidden.
 *
 * Each answers one request on c from broker state, without changing it.
 */
#ifndef FERRY_BROKER_INSPECT_H
#define FERRY_BROKER_INSPECT_H

struct conn;
struct fy_frame;

void inspect_stats(struct conn *c, const struct fy_frame *f);
void inspect_inflight(struct conn *c, const struct fy_frame *f);
void inspect_peek(struct conn *c, const struct fy_frame *f);
void inspect_trace(struct conn *c, const struct fy_frame *f);

#endif
