/*
 * hist.h - fixed-bucket histograms for /metrics (metrics.c renders them).
 *
 * Bounds are static arrays of upper bounds in seconds, ascending; a
 * histogram counts observations per bucket (not cumulatively: the renderer
 * sums) plus one bucket for everything above the last bound.  Observing is
 * a short scan and two additions: cheap enough for every ack.  Loop thread
 * only; the journal keeps its own atomic copy for its sync thread.
 */
#ifndef FERRY_BROKER_HIST_H
#define FERRY_BROKER_HIST_H

#include <stdint.h>

#define HIST_MAX 16		/* bounds at most */

struct hist_bounds {
	const double *le;	/* seconds, ascending */
	uint32_t n;		/* <= HIST_MAX */
};

struct hist {
	uint64_t count[HIST_MAX + 1];	/* [n] is above the last bound */
	double sum;			/* seconds */
};

static inline void
hist_observe(struct hist *h, const struct hist_bounds *b, double v)
{
	uint32_t i = 0;

	while (i < b->n && v > b->le[i])
		i++;
	h->count[i]++;
	h->sum += v;
}

/* Delivery to ack, per group: workers take milliseconds to minutes. */
extern const struct hist_bounds hist_ack_bounds;
/* One loop turn: microseconds normally, a stall is milliseconds. */
extern const struct hist_bounds hist_turn_bounds;

#endif
