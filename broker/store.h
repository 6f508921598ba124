/*
 * store.h - durable broker state: every durable change is a journal record,
 * and one function, apply(), turns records into state, live or at replay.
 *
 * Live, a request handler calls store_*(): the record is encoded, appended
 * to the journal (no syscall: the journal writes once per loop turn in
 * store_commit()), then applied.  At start-up store_open() replays the
 * journal through the same apply().  So what a restart rebuilds is what was
 * live, minus what was never journaled: leases, subscriptions and
 * ephemeral groups.  Sealed segments are replayed from their index files
 * (journal.h) where they have good ones: their records' summaries
 * (record.h) go through the same apply(), a message past max_memory
 * built paged out, one below it read whole from its segment.
 *
 * Confirms: a confirmed publish (or ack) is answered once its record is
 * durable: synced under fsync=always, written otherwise.  The connections
 * hold such replies, and every delivery, until the journal allows them
 * (conn.h); the store tells them when the journal's progress moves
 * (conn_journal_progress()).
 *
 * Segments: a message's REC_PUB (or the REC_FAIL that dead-lettered it) and
 * a group's REC_GROUP stay referenced in the journal while the object
 * lives, so fully settled segments are deleted.
 *
 * Errors are -errno.  A journal that cannot write (disk full) makes
 * store_publish() and store_group_create() fail with its error (the broker
 * answers E_DISK); acks, failures and deletions are still applied in memory
 * so that consumers can drain the queue, and their records are kept, in
 * order, and written before anything else as soon as the journal writes
 * again.  A crash before that may deliver those messages again:
 * at-least-once holds.  A confirmed ack is refused with E_DISK meanwhile,
 * since its answer would promise durability.
 */
#ifndef FERRY_BROKER_STORE_H
#define FERRY_BROKER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "codec.h"
#include "dedup.h"
#include "list.h"
#include "page.h"

struct core;
struct group_conf;
struct event;
struct conn;
struct group;
struct journal;
struct msg;
struct qent;
struct topic;

/* Replay index entry: (group, message) -> entry, for acks and failures
 * read from the journal.  Exists only during replay. */
struct store_idx {
	uint64_t mseq;
	struct qent *e;
};

struct store {
	struct journal *j;
	msgpack_sbuffer sb;	/* record encoding scratch */
	msgpack_sbuffer catsb;	/* the same for the catalog preamble */
	msgpack_zone zone;	/* record decoding */
	uint64_t next_gid;
	struct group **gids;	/* gid -> group, chained by group.gnext */
	uint32_t gids_cap;	/* power of two */
	uint32_t ngids;
	struct store_idx *idx;	/* open addressing, linear probing */
	size_t idx_cap, idx_n;
	uint8_t replaying;
	uint8_t warned;		/* logged that the journal is failing */
	uint8_t dirty;		/* appended since the last commit */
	uint64_t replayed;	/* records applied at start-up */
	uint64_t elidable;	/* the last publish record store_settle() may
				   take back (store_publish()); 0 = none */
	uint64_t elided;	/* records taken back so, ever */
	struct event *compact_ev;	/* periodic compaction check */
	uint64_t moved;		/* messages copied forward, ever */
	uint64_t moved_bytes;	/* their body bytes */
	uint64_t compactions;	/* compaction passes that moved any */
	uint64_t trimmed;	/* monotonic ms of the last trim_heap() look */
	size_t trim_floor;	/* least free heap bytes seen since the last
				   malloc_trim() (compact.c) */
	uint64_t trims;		/* malloc_trim() calls, ever */
	struct producers producers;	/* idempotent producers' marks, until
					   producer_ttl */
	struct page page;	/* bodies beyond max_memory (page.h) */
	struct journal_reader replay_rd;	/* replay: bodies kept in
				   memory, of segments replayed from their
				   index */
	struct list held;	/* struct held_rec: records the journal
				   refused, in order, written first when
				   it writes again */
	uint64_t nheld;
	struct settle_buf *settle;	/* settlements not yet journaled,
					   one buffer per group */
	uint32_t nsettle;	/* buffers in use, each holding one or more */
	uint32_t settle_cap;
	uint32_t settle_last;	/* the buffer used last: acks come in runs
				   of one group */
	uint64_t settle_seq;	/* the newest record appended holding a
				   settlement (a REC_SETTLE) */
	uint64_t settles;	/* REC_SETTLE records appended, ever */
	uint64_t settled;	/* entries they carried */
};

/*
 * What the store tells the layer that holds output back (conn.c): the
 * journal's written or synced point moved, and how many replies wait to
 * be durable (under fsync=always the journal syncs at once while any
 * do).  Registered once, at start-up (broker_init()), with what topics
 * call back into the store.
 */
struct store_hooks {
	void (*progress)(struct core *b);
	uint64_t (*waiting)(const struct core *b);
};

void store_init_hooks(const struct store_hooks *h);

/*
 * Open the journal in the data directory, replay it, and start serving.
 * Returns 0 or -errno with a sentence in err.
 */
int store_open(struct core *b, char *err, size_t errlen);
void store_close(struct core *b);

/* Write what this loop turn appended (called by the end-of-turn flush). */
void store_commit(struct core *b);

/* The newest record appended (0 if none). */
uint64_t store_newest_seq(const struct core *b);

/* Current journal error (0 if writing works). */
int store_error(const struct core *b);
/* 1 if that error lasts until ferryd restarts (a failed fdatasync). */
int store_error_fatal(const struct core *b);

/*
 * Publish one message to t (only: to that durable group alone).
 * hist/nhist: a dead letter's history (else NULL, 0).  *seq gets its
 * record's seq.  -errno if the journal refuses it (nothing changed then).
 * confirm: someone waits for the record to be durable.  Without a confirm,
 * a message with no id or producer sequence of its own that is delivered
 * at-most-once and settled before its record is written leaves no record
 * at all: nothing of it is left to keep, and writing it would be wasted.
 */
int store_publish(struct core *b, struct topic *t,
    const struct fy_pubmsg *pm, const char *id, size_t id_len, uint64_t ts,
    const struct fy_hist *hist, uint32_t nhist, struct group *only,
    int confirm, uint64_t *seq);

/*
 * Was pm stored already?  Its own id within dedup_window on this topic, or
 * its producer's sequence at or below the high-water mark.  If so, *id is
 * the id to confirm it with (valid until the next call) and 1 is returned.
 */
int store_duplicate(struct core *b, struct topic *t,
    const struct fy_pubmsg *pm, const char **id, size_t *id_len);

/*
 * Settlements are journaled per group and per turn: store_ack() and
 * store_settle() apply at once and buffer (group, message); the turn's
 * commit (or the next record that is not a publish, or a full buffer)
 * appends one REC_SETTLE per group for them.  Output that must wait for a
 * settlement's record waits for STORE_SEQ_SETTLE (conn_gate()): the
 * settlements buffered now, whose record has no seq yet.
 */
#define STORE_SEQ_SETTLE UINT64_MAX

/* Settle a leased entry, or remove a waiting one (dead-lettered, dropped):
 * applied at once, journaled with the turn's settlements. */
void store_ack(struct core *b, struct qent *e);

/* Append the buffered settlements now.  Returns the newest REC_SETTLE
 * (0 if none ever was), which holds every settlement made so far: what
 * a confirmed ack waits for. */
uint64_t store_settle_flush(struct core *b);

/* Settlements buffered and not yet appended? */
int store_settle_pending(const struct core *b);

/* Settle an entry taken from its group and delivered at-most-once (not
 * leased, in no list): free it, journaled with the turn's settlements.
 * Returns what the delivery must wait for: 0 (nothing) or
 * STORE_SEQ_SETTLE. */
uint64_t store_settle(struct core *b, struct qent *e);

/* A delivery of e failed (cause: enum qent_cause): journal and apply
 * group_fail(), requeued delay ms from now.  who: the consumer's name; err:
 * a nack's text (may be NULL).  The policy (backoff, dead letters) is
 * delivery's (delivery.h). */
void store_fail(struct core *b, struct qent *e, int cause, const char *who,
    const char *err, size_t err_len, uint64_t delay);

/* Find or create a group (durable groups are journaled). */
int store_group_get(struct core *b, struct topic *t, const char *name,
    size_t len, const struct group_conf *conf, struct group **gp);
void store_group_delete(struct core *b, struct group *g);
void store_topic_delete(struct core *b, struct topic *t);

/* Copy m (of topic t) forward into the newest segment (compaction).
 * 0 or -errno. */
int store_move(struct core *b, struct msg *m, struct topic *t);

/* Forget d's ids older than dedup_window (now: monotonic ms). */
void store_prune_dedup(struct core *b, struct dedup *d, int64_t now);

/* A topic is going away: forget its remembered ids and their records. */
void store_forget_dedup(struct core *b, struct dedup *d);

/* A group is going away (topic.c): stop keeping its record. */
void store_group_forget(struct core *b, struct group *g);

/* A durable entry was created (topic.c): keep its record alive. */
void store_hold(struct core *b, struct qent *e);


#endif
