/*
 * hist.c - the bucket bounds of the broker's histograms (hist.h).
 */
#include "hist.h"

static const double ack_le[] = {
	0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120,
};
const struct hist_bounds hist_ack_bounds = {
	ack_le, sizeof(ack_le) / sizeof(ack_le[0])
};

/* The stall target is 1 ms at p99.9 and 5 ms at most (bench/README). */
static const double turn_le[] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
	0.25,
};
const struct hist_bounds hist_turn_bounds = {
	turn_le, sizeof(turn_le) / sizeof(turn_le[0])
};
