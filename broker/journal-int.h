/*
 * journal-int.h - what journal.c and journal-index.c share: the journal's
 * state and the layout of its segment files.  Only those two files
 * include it; the rest of the broker knows the journal through journal.h.
 *
 * journal.c owns the segments: appending, writing, syncing, reading back,
 * deleting and replaying them; its helpers named jn_* here are the ones
 * journal-index.c borrows.  journal-index.c owns the index files of
 * sealed segments (ix_*): building them in the worker thread, deleting
 * them with their segments, and replaying a segment from its index.
 */
#ifndef FERRY_BROKER_JOURNAL_INT_H
#define FERRY_BROKER_JOURNAL_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "journal.h"

#define SEG_MAGIC "FERRYJNL"
#define SEG_VERSION 1
#define SEG_HDR 32		/* segment header bytes */
#define REC_HDR 17		/* crc, len, seq, type */
#define SEG_NAME_MAX 40		/* "journal-" 20 digits ".seg" NUL */

struct seg {
	uint64_t first_seq;	/* from the file name and header */
	uint64_t next_seq;	/* one past its last appended record */
	uint64_t end;		/* offset past its last appended record */
	uint64_t written;	/* <= end; bytes [written, end) are in wbuf */
	uint64_t cap;		/* file size: records must end within it */
	uint64_t records;
	uint64_t live;		/* refs */
	uint64_t dead_at;	/* the newest seq when live last fell to 0:
				   the records that replaced its contents
				   (a compaction's copies) are no later */
	int fd;			/* >= 0 only from creation until its barrier
				   sync is done; never closed while a sync
				   request may use it */
	int dirsync;		/* created; name not yet fsync'd into dir */
	int unnamed;		/* fd is the spare, written ahead while the
				   segment before waits for its barrier; named
				   when it becomes the head (head_advance) */
	int rfd;		/* read-only, opened by the first
				   journal_read() of it; -1 */
	uint64_t *ix;		/* ix[k]: offset of record first_seq +
				   k * IX_EVERY (journal_read()) */
	size_t nix, ixcap;
	int from_index;		/* replay read its index file, not it */
};

struct journal {
	char *dir;
	int dirfd;
	int lockfd;
	struct event_base *base;	/* borrowed */
	struct journal_io io;		/* every member set */
	int policy;
	uint64_t seg_size;		/* for new segments */

	struct seg *segs;	/* oldest first, seq ranges contiguous; the
				   last is where appends go */
	size_t nseg, segcap;
	size_t find_hint;	/* seg_find()'s last find, if still < nseg */
	size_t head;		/* write head: segs[< head] are written,
				   synced and closed; segs[head + 1] may have
				   an unnamed file (written ahead), later ones
				   have none; < nseg unless nseg == 0 */

	uint8_t *wbuf;		/* unwritten bytes of segs[head..], in order,
				   at wbuf[wpos, wlen) */
	size_t wpos, wlen, wcap;

	uint64_t next_seq;	/* the seq the next append gets */
	uint64_t written_seq;	/* every seq <= it is pwritten */
	uint64_t synced_seq;	/* <= written_seq; every seq <= it synced */
	int replaying;		/* no deletions while replay walks segs */
	int replayed;		/* appends and commits allowed */
	uint64_t syncs;		/* fdatasyncs the sync thread ran (atomic:
				   read by journal_get_stats()) */
	uint64_t sync_hist[JOURNAL_SYNC_BUCKETS + 1];	/* atomic, too */
	uint64_t sync_ns;	/* atomic: their total duration */
	int (*roll_cb)(void *);	/* a new segment begins: write its preamble */
	void *roll_arg;
	int in_roll;		/* roll_cb is running: no nested preamble */
	size_t last_len;	/* bytes of record next_seq - 1 in wbuf, if
				   journal_unappend() may take it back */

	int werr;		/* write failing: appends refused, retried */
	struct timespec wtry;	/* last attempt of the failing write */
	int fatal;		/* fdatasync failed: sticky */

	int busy;		/* loop side: a sync request is out; its
				   result is not yet harvested */
	uint64_t req_seq;	/* written_seq when it was asked */
	int req_barrier;	/* it closes the head segment */
	int sync_wanted;	/* everysec tick came, or the lazy delay of
				   an unsynced record is over (always) */
	int dirsync_wanted;	/* segments unlinked since the last dir sync */

	/* shared with the sync thread: req and done are atomic flags; the
	   fields after each belong to the loop while it is 0 and to the sync
	   thread while it is 1 (req), and the other way round (done) */
	pthread_t thread;
	int thread_started;
	int req;		/* request posted, not yet taken */
	int req_fd;		/* fdatasync it if >= 0 */
	int req_dirfd;		/* then fsync it if >= 0 */
	int done;		/* result ready */
	int res_err;
	int stop;		/* atomic: journal_close() */

	int req_efd;		/* eventfd: loop -> sync thread (blocking) */
	int efd;		/* eventfd: sync thread -> loop */
	struct event *sync_ev;
	struct event *tick_ev;	/* FSYNC_EVERYSEC only */
	int lazy_fd;		/* FSYNC_ALWAYS: timerfd, armed while written
				   records wait for a deferred sync (libevent
				   timers tick with CLOCK_MONOTONIC_COARSE) */
	int lazy_armed;
	struct event *lazy_ev;
	struct event *retry_ev;	/* armed while a write is failing */

	/* slow file work beside the loop: unlinks and the spare */
	struct worker *worker;	/* NULL: everything inline, as at close */
	int spare;		/* enum spare_state */
	int spare_fd;		/* >= 0 while SPARE_READY */
	int spare_err;		/* last failure making one, logged once */
	int closing;		/* journal_close() runs: no new spare */
	int unlink_stuck;	/* worker thread only: an unlink failed, so
				   none runs again (a gap between segments
				   would read as corruption at replay) */

	/* index files of sealed segments (journal_set_index()) */
	struct journal_index ixo;	/* summarize NULL: none */
	uint64_t *ixq;		/* first_seqs of segments waiting for one,
				   built one at a time in the worker */
	size_t nixq, ixqcap;
	int ix_busy;		/* a build is in the worker */
	uint64_t ix_defer;	/* the segment sealed last in this run: its
				   build waits for the next seal, by when it
				   is dead and needs none if consumers keep
				   up (only a backlog is worth an index) */
	uint64_t ix_built;	/* index files written since open */
	uint64_t ix_replayed;	/* segments replayed from theirs */

	void (*cb)(void *, uint64_t, uint64_t);
	void *cbarg;
	int (*waiting)(void *);	/* journal_set_waiting_cb() */
	void *waitarg;
	uint64_t cb_written, cb_synced;	/* last values reported */
	int cb_err;
};

/* What journal_replay() carries from one segment to the next. */
struct replay {
	int (*apply)(void *, uint64_t, uint8_t, const uint8_t *, size_t);
	void *arg;
	int repair;
	char *err;
	size_t errlen;
	uint64_t expect;	/* seq the next record must have */
};

/* Little-endian integers of the file formats. */
static inline void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static inline void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static inline uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- journal.c, for journal-index.c ---- */

/* What lies past a segment's last record: zeros (the end marker). */
extern const uint8_t jn_zeros[65536];

void jn_seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Segment first_seq's file name, in a buffer of SEG_NAME_MAX. */
void jn_seg_name(char *buf, uint64_t first_seq);
/* 1 if m (size bytes) starts with a good header of segment first_seq. */
int jn_header_ok(const uint8_t *m, uint64_t size, uint64_t first_seq);
/* The segment holding seq, or NULL. */
struct seg *jn_seg_find(struct journal *j, uint64_t seq);
/* Note the record that starts at s->end in s's sparse in-memory index
 * (for journal_read()).  0 or -ENOMEM. */
int jn_seg_index(struct seg *s);

/* ---- journal-index.c ---- */

/* Have sealed segment first_seq indexed, if indexes are kept. */
void ix_queue(struct journal *j, uint64_t first_seq);
/* Start the next queued build, if none runs (one at a time). */
void ix_next(struct journal *j);
/* Delete segment first_seq's index file, before the segment goes. */
void ix_unlink(struct journal *j, uint64_t first_seq);
/* Delete the temporary file of a build a crash cut short. */
void ix_clean(struct journal *j);
/* Have the kernel read segment first_seq's index ahead, if it has one. */
void ix_readahead(struct journal *j, uint64_t first_seq);
/* Replay sealed segment segs[i] from its index: 1 if it did, 0 if it has
 * no usable one (the caller reads the segment), or apply's error. */
int ix_replay(struct journal *j, size_t i, struct replay *rp);

#endif
