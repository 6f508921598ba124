/*
 * clock.c - monotonic and wall-clock milliseconds, with a test offset.
 */
#include <time.h>

#include "clock.h"

static int64_t mono_shift;
static int64_t wall_shift;

/* The current turn's snapshot, raw (shifts are added when read, so a shift
 * takes effect at once); valid while turn_on. */
static int turn_on;
static uint64_t turn_mono, turn_wall;

static uint64_t
read_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
clock_turn_begin(void)
{
	struct timespec ts;
	uint64_t ns;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	turn_mono = ns / 1000000;
	turn_wall = read_ms(CLOCK_REALTIME_COARSE);
	turn_on = 1;
	return ns;
}

void
clock_turn_end(void)
{
	turn_on = 0;
}

uint64_t
clock_turn_mono_ms(void)
{
	return turn_on ? turn_mono + (uint64_t)mono_shift : clock_mono_ms();
}

uint64_t
clock_turn_wall_ms(void)
{
	return turn_on ? turn_wall + (uint64_t)wall_shift : clock_wall_ms();
}

uint64_t
clock_mono_ms(void)
{
	/* Not COARSE: its 4 ms tick would let a lease expire up to a tick
	 * early relative to the libevent timer that checks it. */
	return read_ms(CLOCK_MONOTONIC) + (uint64_t)mono_shift;
}

uint64_t
clock_wall_ms(void)
{
	return read_ms(CLOCK_REALTIME_COARSE) + (uint64_t)wall_shift;
}

void
clock_shift_mono(int64_t ms)
{
	mono_shift += ms;
}

void
clock_shift_wall(int64_t ms)
{
	wall_shift += ms;
}
