/*
 * clock.h - the broker's only access to time.
 *
 * Deadlines use a monotonic clock; publish times use the wall clock.  Both
 * go through here so that tests can shift them (clock_shift_*) to simulate
 * jumps without sleeping.  The coarse clocks are read through the vDSO:
 * no syscall per message.
 */
#ifndef FERRY_BROKER_CLOCK_H
#define FERRY_BROKER_CLOCK_H

#include <stdint.h>

uint64_t clock_mono_ms(void);	/* monotonic, milliseconds */
uint64_t clock_wall_ms(void);	/* unix time, milliseconds */

/* Test seam: offsets added to what the clocks return. */
void clock_shift_mono(int64_t ms);
void clock_shift_wall(int64_t ms);

#endif
