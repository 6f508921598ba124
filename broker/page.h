/*
 * page.h - a backlog bounded by disk, not memory: past max_memory, the
 * bodies of waiting messages are dropped from memory and read back from
 * their journal records when they are delivered, inspected, dead-lettered
 * or moved by compaction.
 *
 * What stays in memory per paged message is its header with its first
 * queue entry (72 bytes, from slabs: msg.c), its rare fields if any (then
 * malloc'd with the header), and the journal's sparse index (8 bytes per
 * 32 records).  Its record is
 * found by seq (journal_read()), so a compaction that moves it (a new seq)
 * moves nothing here.
 *
 * Which bodies go: those of waiting messages (ready, delayed, or in a
 * topic's backlog; never leased, never one a connection is still sending)
 * whose every entry is durable, so that their record is kept as long as
 * they live, and whose record is written.  Newest first: a queue's head is
 * what its consumers take next, so it stays in memory, and what is paged
 * out is read back in order, one read-ahead window after another.
 *
 * Paging runs at the end of a loop turn, after the journal's write, in
 * batches: once the bodies in memory pass max_memory, down to 7/8 of it.
 */
#ifndef FERRY_BROKER_PAGE_H
#define FERRY_BROKER_PAGE_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "journal.h"

struct core;

#define PAGE_READERS 4	/* read-ahead windows: queues read at once */

struct page {
	uint64_t max;		/* max_memory; 0 = no limit */
	struct journal_reader rd[PAGE_READERS];
	uint64_t used[PAGE_READERS];	/* when each was last used (tick) */
	uint64_t tick;
	msgpack_zone zone;	/* decoding records read back */
	int zone_ok;
	uint64_t stuck;		/* bodies in memory when a pass found nothing
				   to page out; 0 = none: passes wait for
				   max/16 more, or a second */
	uint64_t stuck_ms;	/* monotonic ms of that pass */
	uint64_t loads;		/* bodies read back */
	uint64_t errors;	/* reads that failed */
	uint64_t passes;	/* passes that paged something out */
};

/* Start paging for b (registers msg_body_load()'s hook).  0 or -ENOMEM. */
int page_init(struct core *b);
void page_fini(struct core *b);

/* End of turn, after the journal's write: page out if over max_memory. */
void page_trim(struct core *b);

/* At replay: build a message of len body bytes paged out from the start? */
int page_replay_paged(const struct core *b, size_t len);

#endif
