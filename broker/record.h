/*
 * record.h - payloads of the journal's records (msgpack arrays).
 *
 * Pure: bytes in, struct out, no I/O.  A decoded record borrows from the
 * payload and from the decoder's zone, like protocol/codec.h.
 *
 *   REC_PUB        [topic, id, ts, hdr map|nil, body bin
 *                   (, hist [[cause, error, consumer, at]...]|nil
 *                   (, opts map|nil))]
 *                  hist only on dead letters; opts: "delay", "ttl" (ms
 *                  from ts), "rt" (reply_to), "corr", "pid", "seq" (an
 *                  idempotent producer's), "gid" (targeted publish),
 *                  "own" (1: the id is the producer's, remembered for
 *                  dedup)
 *   REC_ACK        [gid, mseq]
 *   REC_FAIL       [gid, mseq, cause, at, not_before, consumer, error]
 *   REC_GROUP      [gid, topic, name, ack_timeout_ms, max_attempts
 *                   (, opts map: "ttl", "ttl_drop", "max_msgs",
 *                   "max_bytes", "overflow")]
 *   REC_GROUP_DEL  [gid]
 *   REC_TOPIC_DEL  [topic]
 *   REC_MOVE       [old_mseq, topic, id, ts, hdr map|nil, body bin,
 *                   hist [[cause, error, consumer, at]...]|nil,
 *                   entries [[gid, attempts, [causes...], not_before,
 *                             [[cause, at, consumer, error]...]]...]
 *                  (, opts map: "delay", "ttl", "rt", "corr")]
 *   REC_PRODUCER   [pid, seq, at]  an idempotent producer's high-water
 *                  mark and the time of its last stored publish, in every
 *                  segment's catalog while it has not expired
 *                  (producer_ttl).  Journals written before "at" hold
 *                  [pid, seq]: decoded with at 0, "unknown"
 *   REC_SETTLE     [gid, [mseq delta...]]  REC_ACK of several entries of
 *                  one group, in the order they were settled: the first
 *                  delta is the first mseq, each next one the difference
 *                  to the previous mseq (negative when it is older); at
 *                  most REC_SETTLE_MAX.  Means exactly what as many
 *                  REC_ACKs would.  Journals written before it
 *                  hold REC_ACK only; both kinds replay
 *
 * REC_MOVE is compaction's copy of a live message out of an old segment: it
 * carries the message and its state in every durable group (gid 0: the
 * topic's backlog), so that the old segment can be deleted.  At replay it
 * renames the message to its new seq if the original is still there, and
 * recreates it from the record otherwise.
 * mseq is the seq of the record that created the message: its REC_PUB, or
 * for a dead letter the REC_FAIL that moved it.  Times are unix ms;
 * not_before 0 means "redeliver at once".  Never renumber: old journals
 * must keep replaying.
 */
#ifndef FERRY_BROKER_RECORD_H
#define FERRY_BROKER_RECORD_H

#include <stdint.h>
#include <sys/types.h>

#include <msgpack.h>

#include "codec.h"

enum rec_type {
	REC_PUB = 1,
	REC_ACK = 2,
	REC_FAIL = 3,
	REC_GROUP = 4,
	REC_GROUP_DEL = 5,
	REC_TOPIC_DEL = 6,
	REC_MOVE = 7,
	REC_PRODUCER = 8,
	REC_SETTLE = 9,
};

/* Entries per REC_SETTLE: at most 9 bytes each, so that a full one fits
 * in the smallest segment (JOURNAL_SEGMENT_MIN). */
#define REC_SETTLE_MAX 256

#define REC_CAUSES 4		/* enum qent_cause values in a REC_MOVE */

struct rec_qhist {
	uint32_t cause;
	uint64_t at;
	struct fy_str consumer, error;
};

struct rec_entry {
	uint64_t gid;		/* 0: the topic's backlog */
	uint32_t attempts;
	uint32_t causes[REC_CAUSES];
	uint64_t not_before;	/* unix ms; 0: ready */
	struct rec_qhist *hist;
	uint32_t nhist;
};

struct rec {
	uint8_t type;		/* enum rec_type */
	union {
		struct {
			struct fy_str topic;
			struct fy_str id;
			uint64_t ts;
			struct fy_pubmsg m;	/* body, hdr, delay, ttl,
						   reply_to, corr, pid, pseq;
						   m.id unused */
			const struct fy_hist *hist;	/* dead letters */
			uint32_t nhist;
			uint64_t gid;		/* targeted publish, else 0 */
		} pub;
		struct {
			uint64_t gid, mseq;
		} ack;
		struct {
			uint64_t gid, mseq;
			uint32_t cause;		/* enum qent_cause */
			uint64_t at, not_before;
			struct fy_str consumer, error;
		} fail;
		struct {
			uint64_t gid;
			struct fy_str topic, name;
			uint32_t ack_timeout_ms, max_attempts;
			uint64_t ttl_ms, max_msgs, max_bytes;
			uint32_t ttl_drop, overflow;
		} group;
		struct {
			uint64_t gid;
		} group_del;
		struct {
			struct fy_str topic;
		} topic_del;
		struct {
			uint64_t old_mseq;
			struct fy_str topic, id;
			uint64_t ts;
			struct fy_pubmsg m;	/* body, hdr, delay, ttl,
						   reply_to, corr */
			struct fy_hist *hist;	/* dead letters' history */
			uint32_t nhist;
			struct rec_entry *ent;
			uint32_t nent;
		} move;
		struct {
			struct fy_str pid;
			uint64_t seq;
			uint64_t at;	/* 0: unknown (a 2-element record) */
		} producer;
		struct {
			uint64_t gid;
			const uint64_t *mseq;	/* decoded: in the zone */
			uint32_t n;		/* 1..REC_SETTLE_MAX */
		} settle;
	};
};

/* Append r's payload to sb (the caller clears it).  0 or -ENOMEM. */
int rec_encode(msgpack_sbuffer *sb, const struct rec *r);

/*
 * Decode a payload of the given type.  zone is cleared first and holds
 * arrays afterwards.  0, -EBADMSG (malformed or unknown type), -ENOMEM.
 */
int rec_decode(msgpack_zone *zone, uint8_t type, const uint8_t *p,
    size_t len, struct rec *r);

/*
 * A record's summary, what a segment's index keeps of it (journal.h) so
 * that replay need not read message bodies: for REC_PUB and REC_MOVE a
 * msgpack uint (the body's length) followed by the payload with its body
 * emptied (bin 0); for every other type the payload itself.
 * rec_summarize() writes it to out (cap bytes; len + 8 always suffice) and
 * returns its length, or -EBADMSG (not a well-formed payload of that type's
 * shape), -ENOSPC.  Pure and thread-safe: the journal's worker thread runs
 * it.  rec_decode_summary() decodes one as rec_decode() does a payload,
 * except that the body is {NULL, its length}: not there.
 */
ssize_t rec_summarize(uint8_t type, const uint8_t *p, size_t len,
    uint8_t *out, size_t cap);
int rec_decode_summary(msgpack_zone *zone, uint8_t type, const uint8_t *p,
    size_t len, struct rec *r);

#endif
