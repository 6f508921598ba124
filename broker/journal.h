/*
 * journal.h - the broker's write-ahead journal: records, segment files,
 * group commit, replay and segment deletion.
 *
 * The broker decides what a record means (a type byte and a msgpack
 * payload) and applies records through one function; the journal only
 * stores, checks, replays and deletes them.  Sequence numbers are
 * contiguous and start at 1; seq 0 is never a record.
 *
 * On disk (integers little-endian):
 *   DIR/LOCK      flock()ed for the journal's lifetime; holds the owner's pid
 *   DIR/journal-<first seq, 20 digits>.seg, preallocated to segment_size:
 *     header, 32 bytes: "FERRYJNL", u32 version (1), u32 header size (32),
 *                       u64 first seq, u32 0, u32 crc32c of bytes 0..27
 *     records:          u32 crc32c | u32 len | u64 seq | u8 type | payload
 *                       (the crc covers len, seq, type and payload)
 *     end:              a zeroed record header; the rest of the file is
 *                       zeros (the preallocation)
 *   A record that does not fit in the current segment starts a new one.
 *   DIR/journal-<first seq, 20 digits>.idx, a sealed segment's index (see
 *   journal_set_index()):
 *     header, 64 bytes: "FERRYIDX", u32 version (1), u32 header size (64),
 *                       u64 first seq, u64 records, u64 end (offset past
 *                       the last record), u64 segment file size, u32 the
 *                       last record's crc, u32 crc32c of the entries,
 *                       u32 0, u32 crc32c of bytes 0..59
 *     entries, one per record in order: u8 type | varint payload length |
 *                       varint summary length | summary (LEB128 varints)
 *   DIR/journal.idx.tmp  an index being written (deleted at replay)
 *
 * Life cycle, every call from the thread running the event_base:
 *   journal_open(), journal_replay() once, then journal_append() freely and
 *   journal_commit() once per loop turn, and journal_close().
 *
 * Durability.  journal_append() only copies into a memory buffer.
 * journal_commit() pwrite()s the buffer (one call per segment touched) and
 * then, per fsync policy (enum fsync_policy, options.h):
 *   FSYNC_ALWAYS    a sync thread runs fdatasync, one at a time; records
 *                   written while one runs are covered by the next (group
 *                   commit).  Confirm a record once seq <= synced_seq.
 *                   The next sync starts as soon as the running one ends,
 *                   except while the waiting callback says that no one
 *                   waits for one (journal_set_waiting_cb()).
 *   FSYNC_EVERYSEC  a 1 s timer asks for one.  Confirm once written.
 *   FSYNC_NEVER     none.  Confirm once written.
 * Whatever the policy, a full segment is made durable (and new segment
 * names are fsync'd into the directory) before the next one gets its name,
 * so a crash can only tear the last segment; close syncs.
 *
 * Slow file work runs in a worker thread, never in the loop: dead segments
 * are unlinked there (in order, then the directory is fsync'd), sealed
 * segments get their index file there (journal_set_index()), and the
 * next segment is preallocated there ahead of time as DIR/journal.spare
 * (so the journal holds one segment_size more on disk than its segments).
 * When a segment starts, its records are written into the spare at once
 * (written_seq advances: no delivery waits for the barrier sync of the
 * full segment), and the spare is renamed into place once that sync is
 * done.  Replay takes a spare left by a crash in between if its header
 * continues the last segment exactly.  Only when no spare is ready (the
 * first segment of a new journal, a failed preallocation) is a segment
 * file made in the loop thread, after the barrier.
 *
 * Failures.  Errors are -errno.  A failed write (ENOSPC, EIO, a short
 * write, or no space to preallocate a segment) leaves no partial record on
 * disk: the bytes written are zeroed again.  The unwritten records stay
 * buffered with their seqs, and are retried at most once a second (by a
 * timer, or by the first journal_commit() after that); until a write
 * succeeds journal_append() and journal_commit() fail fast with the error,
 * so the broker can refuse publishes with a retryable error.  Records
 * appended before the failure are neither lost nor reordered: they are
 * written (and confirmable) when the retry succeeds.
 * A failed fdatasync is fatal for durability (the kernel may have dropped
 * the dirty pages): it is logged, synced_seq never advances again, and
 * every later append and commit returns the error; the broker should stop
 * accepting writes and restart.  journal_error() tells either state.
 */
#ifndef FERRY_BROKER_JOURNAL_H
#define FERRY_BROKER_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "options.h"		/* enum fsync_policy */

struct event_base;
struct journal;

#define JOURNAL_SEGMENT_SIZE (64u << 20)	/* default */
#define JOURNAL_SEGMENT_MIN 4096u
#define JOURNAL_MAX_RECORD (16u << 20)		/* payload bytes */
#define JOURNAL_SYNC_DELAY_US 1000	/* journal_set_waiting_cb() */

/*
 * The journal's only contact with the disk after open, so tests can inject
 * faults.  Each behaves like the syscall: 0 (or a byte count), or -1 with
 * errno set; fallocate(fd, off, len) like posix_fallocate() but reporting
 * through errno.  A NULL member (or io == NULL) means the real call.
 * pwrite runs in the loop thread; fdatasync mostly in the sync thread;
 * fallocate (of the spare segment) and unlink (of dead segments,
 * unlinkat(dirfd, name, 0)) mostly in the worker thread: they must be
 * thread-safe.
 */
struct journal_io {
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
	int (*fdatasync)(int fd);
	int (*fallocate)(int fd, off_t off, off_t len);
	int (*unlink)(int dirfd, const char *name);
};

struct journal_opts {
	const char *dir;	/* created (one level, mode 0700) if missing */
	int fsync;		/* enum fsync_policy */
	uint64_t segment_size;	/* 0 = JOURNAL_SEGMENT_SIZE; >= SEGMENT_MIN */
	const struct journal_io *io;	/* NULL = real syscalls; copied */
};

/*
 * Open (and lock) the journal in o->dir.  Nothing is read yet: call
 * journal_replay() next.  base is borrowed and must outlive the journal.
 * On success *jp is the caller's, freed by journal_close().  Errors:
 * -EINVAL (bad options), -EWOULDBLOCK (another process holds the
 * directory: err says "data directory DIR is in use by another ferryd
 * (pid N)"), or the -errno of mkdir/open/flock/thread creation; err (may be
 * NULL) gets a sentence naming the path.
 */
int journal_open(struct journal **jp, struct event_base *base,
    const struct journal_opts *o, char *err, size_t errlen);

/*
 * Replay every record, oldest first: apply(arg, seq, type, p, len) with p
 * borrowed (valid only during the call); apply may be NULL (check only).
 * apply may call journal_ref()/journal_unref(); nothing is deleted before
 * replay has finished.  A non-zero return from apply stops replay and is
 * returned.
 * A torn tail (in the last segment: a partial record, a bad checksum, or
 * garbage, with no valid record after it) is zeroed back to the last good
 * record and logged.  Any other bad record is corruption: -EBADMSG with err
 * naming the file and byte offset; with repair != 0 the journal is cut
 * there instead (the rest of that segment zeroed, later segments deleted,
 * logged as an error).  Other errors: -errno of reading or repairing.
 * Must be called exactly once, before any append (else -EINVAL); after an
 * error only journal_close() is useful.
 */
int journal_replay(struct journal *j,
    int (*apply)(void *arg, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len), void *arg, int repair, char *err, size_t errlen);

/*
 * Indexes of sealed segments, so that a restart need not read every byte
 * of the journal (message bodies, mostly).  Once a segment is full and
 * durable (sealed) and still holds a referenced record once the next one
 * is sealed too (so that where consumers keep up, no index is built for
 * segments about to die), the worker thread reads it back and writes
 * DIR/journal-<first seq>.idx: for each record its
 * type, its length and summarize()'s summary of it (the broker keeps what
 * replay needs and leaves bodies out).  summarize(type, p, len, out, cap)
 * returns the summary's length (at most len + 8, cap is more), or < 0 if
 * the record cannot be summarized (then that segment gets no index); it
 * runs in the worker thread, so it must be pure.  An index that would be
 * more than half its segment's records is not worth reading instead of
 * them, and is not written.
 *
 * Crash safety: the index is written to DIR/journal.idx.tmp, fdatasync'd,
 * renamed into place, and the directory fsync'd: a crash leaves no index,
 * or a whole one.  It is deleted before its segment (a crash in between
 * leaves a segment without an index, which replay reads in full).
 *
 * At replay every segment but the last (appends go on there) is replayed
 * from its index when that is valid (version, checksums, its entries adding
 * up to its end offset) and agrees with the segment: the file's size, the
 * segment header, the last record's header (offset, seq, length, type and
 * crc) and the end marker after it.  Then apply(arg, seq, type, summary,
 * len) runs for each record instead of journal_replay()'s apply, with the
 * same arg; it may journal_read() any record of that segment (a body it
 * wants in memory).  The records' own checksums are not read then: damage
 * inside a segment so replayed shows when a record is read back
 * (journal_read(): -EBADMSG), not at start-up.  Any other index (missing,
 * torn, damaged, stale, of an unknown version) is logged as a warning and
 * ignored: the segment is read in full, as without indexes, its index
 * deleted, and a new one is built after replay.  Sealed segments without
 * an index (a data directory from before indexes, a crash before the
 * build) get one then too.
 *
 * Call before journal_replay(); ix is copied.  NULL (the default): no index
 * is read or written.
 */
struct journal_index {
	ssize_t (*summarize)(uint8_t type, const uint8_t *p, size_t len,
	    uint8_t *out, size_t cap);
	int (*apply)(void *arg, uint64_t seq, uint8_t type,
	    const uint8_t *summary, size_t len);
};
void journal_set_index(struct journal *j, const struct journal_index *ix);

/*
 * Buffer one record; *seq (may be NULL) gets its sequence number.  p is
 * copied.  No syscall.  Errors: -EMSGSIZE (len > JOURNAL_MAX_RECORD or too
 * big for a segment), -ENOMEM, -EINVAL (before replay), or the journal's
 * failure (journal_error()).
 */
int journal_append(struct journal *j, uint8_t type, const void *p,
    size_t len, uint64_t *seq);

/*
 * Take back record seq, if it is the newest, still wholly in the buffer,
 * and not the first of its segment.  The caller must hold no reference to
 * it (journal_ref).  Its seq is handed out again.  0, or -EINVAL if it
 * cannot be taken back (then it stays).  For a record made pointless
 * before it was written: a message both published and settled in one turn.
 */
int journal_unappend(struct journal *j, uint64_t seq);

/*
 * Write what was appended and start a sync if the policy wants one.  Call
 * once per loop turn.  Returns 0 or the journal's failure (see above); may
 * call the durable callback before returning.
 */
int journal_commit(struct journal *j);

/*
 * Under FSYNC_ALWAYS, cb(arg) tells whether anyone waits for a record to
 * be synced (a confirm).  While it returns 0, a sync starts
 * JOURNAL_SYNC_DELAY_US after the first record it covers was written (or
 * when the running one ends, if later) and covers whatever was written
 * meanwhile, so that a steady stream that no one waits for costs at most
 * one fdatasync per delay instead of one per loop turn or two.  While it
 * returns non-zero, or without a callback (cb NULL, the default), syncs run
 * back to back.  A full segment and a segment deletion are synced at once
 * regardless.  cb runs in the loop thread, from journal_commit() and the
 * journal's events, and must not call the journal.  No effect under the
 * other policies.
 */
void journal_set_waiting_cb(struct journal *j, int (*cb)(void *arg),
    void *arg);

/*
 * cb(arg, written_seq, synced_seq) runs in the loop thread whenever either
 * advances or journal_error() changes, from journal_commit() or from the
 * journal's own events; never from journal_close().  Every seq <= written
 * is in the files; every seq <= synced is on stable storage.  cb may call
 * journal_append(), not journal_commit() or journal_close().
 */
void journal_set_durable_cb(struct journal *j,
    void (*cb)(void *arg, uint64_t written_seq, uint64_t synced_seq),
    void *arg);

/*
 * cb(arg) runs inside journal_append() when a record starts a new segment,
 * before that record is placed: the records cb appends come first in the
 * segment.  The broker writes its catalog (every live group) there, so that
 * whatever segment replay starts from defines the groups its records
 * name.  A non-zero return fails the append that rolled.  cb must not
 * append through anything but journal_append(), must not commit, and its
 * own appends never trigger a nested preamble.
 */
void journal_set_roll_cb(struct journal *j, int (*cb)(void *arg),
    void *arg);

uint64_t journal_written_seq(const struct journal *j);
uint64_t journal_synced_seq(const struct journal *j);
/* The seq the next append will get. */
uint64_t journal_next_seq(const struct journal *j);
/* 0, a retryable write error (cleared when a write succeeds), or a fatal
 * fdatasync error (sticky). */
int journal_error(const struct journal *j);
/* The fatal part of journal_error(): a failed fdatasync, cleared only by a
 * restart; 0 otherwise. */
int journal_fatal(const struct journal *j);

/*
 * Segment lifetime.  Call journal_ref(seq) when a live object's home record
 * is seq and journal_unref(seq) when it dies or moves to a newer record.
 * The oldest segments are deleted as soon as they and every older segment
 * have no refs and they are not the segment being written: a broker that
 * does not ref every record it still needs loses it at the next restart.
 * Errors: -ENOENT (seq not in the journal), -EINVAL (unref below zero).
 */
int journal_ref(struct journal *j, uint64_t seq);
int journal_unref(struct journal *j, uint64_t seq);

/* First seq of the oldest segment holding a ref, 0 if none: copying the
 * objects living there forward is what lets the journal shrink. */
uint64_t journal_oldest_live_seq(const struct journal *j);

/*
 * Reading a record back (the broker pages message bodies out to the
 * journal).  A reader is the caller's read-ahead window: one pread()
 * fetches READ_WINDOW bytes (256 KiB) of a segment and serves the records
 * in it, so a walk along records appended in order costs one syscall per
 * window, and the kernel is asked to fetch the next window meanwhile
 * (posix_fadvise WILLNEED).  The journal finds a record from a sparse
 * index (the offset of every 32nd record of each segment, built by appends
 * and replay: 8 bytes per 32 records) and a walk over the record headers
 * after it.  A record not yet written is copied from the write buffer.
 * Zero-initialise a reader; journal_reader_fini() frees its buffer.
 */
struct journal_reader {
	uint8_t *buf;
	size_t cap;
	size_t len;		/* buf holds [off, off + len) of segment */
	uint64_t seg;		/* first_seq of that segment; 0 = none */
	uint64_t off;
	uint64_t last_seq;	/* the last record read, at last_off of */
	uint64_t last_off;	/* segment seg: walks continue from it */
	uint64_t preads;	/* windows read */
};

/*
 * Read record seq: *type, and its payload *p (*len bytes), valid until the next
 * read with rd.  Errors: -ENOENT (no such record kept), -EBADMSG (the file
 * does not hold it where the index says, or its checksum is wrong), -ENOMEM,
 * or the -errno of open/pread.
 */
int journal_read(struct journal *j, struct journal_reader *rd, uint64_t seq,
    uint8_t *type, const uint8_t **p, size_t *len);
void journal_reader_fini(struct journal_reader *rd);

/* Upper bounds (seconds) of the fdatasync latency buckets. */
#define JOURNAL_SYNC_BUCKETS 11
extern const double journal_sync_le[JOURNAL_SYNC_BUCKETS];

struct journal_stats {
	uint64_t segments;
	uint64_t disk_bytes;	/* size of the segment files (preallocated) */
	uint64_t used_bytes;	/* headers and records in them */
	uint64_t live_records;	/* sum of refs */
	uint64_t live_bytes;	/* estimate: per segment, used * live/records */
	uint64_t first_seq;	/* oldest record kept, 0 if none */
	uint64_t next_seq;
	uint64_t buffered_bytes;	/* appended, not yet written */
	uint64_t syncs;		/* fdatasyncs run by the sync thread */
	/* how long they took: per bucket of journal_sync_le (not
	   cumulative), [JOURNAL_SYNC_BUCKETS] above the last; total */
	uint64_t sync_hist[JOURNAL_SYNC_BUCKETS + 1];
	double sync_seconds;
	uint64_t files_pending;	/* unlinks, preallocations and index
				   builds queued */
	uint64_t index_built;	/* index files written since open */
	uint64_t index_replayed;	/* segments replayed from theirs */
	int spare_ready;	/* the next segment's file is preallocated */
};
void journal_get_stats(const struct journal *j, struct journal_stats *st);

/* Segment i, 0 = oldest.  Returns 0, or -ENOENT when i is past the end. */
struct journal_segment_info {
	uint64_t first_seq;
	uint64_t last_seq;	/* first_seq - 1 while empty */
	uint64_t records;	/* counted since open (replay + appends) */
	uint64_t live;		/* refs */
	uint64_t used_bytes;
	int active;		/* the segment appends go to: never deleted */
};
int journal_segment_info(const struct journal *j, size_t i,
    struct journal_segment_info *si);

/*
 * Write what is buffered, sync it, stop the sync thread and release the
 * lock.  Failures are logged (there is no one left to tell).  NULL is a
 * no-op.
 */
void journal_close(struct journal *j);

#endif
