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

/*
 * The turn's clock: both clocks as they were when the current loop turn
 * began, for stamps taken per message where a reading a turn old is as
 * good as a fresh one (a turn lasts well under a millisecond to a few
 * under load; each caller says why it may be that old).  Reading the
 * precise clock per message costs more than the work it stamps.  Outside
 * a turn these read the clocks.  The loop's thread only.
 *
 * clock_turn_begin() snapshots the clocks and returns the monotonic time
 * in nanoseconds; clock_turn_end() must follow in the same loop iteration
 * (the broker's end-of-turn flush), so a snapshot never outlives its turn.
 */
uint64_t clock_turn_begin(void);
void clock_turn_end(void);
uint64_t clock_turn_mono_ms(void);
uint64_t clock_turn_wall_ms(void);

/* Test seam: offsets added to what the clocks return. */
void clock_shift_mono(int64_t ms);
void clock_shift_wall(int64_t ms);

#endif
