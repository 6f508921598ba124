/*
 * codec.h - every ferry frame as a C struct, and its msgpack encoding.
 *
 * Pure functions over byte buffers: no sockets, no libevent, no clocks, no
 * logging, no globals.  Linked by the broker and by libferry.  PROTOCOL.md is
 * the normative description of the wire format; this header mirrors it.
 *
 * Wire shape: every payload (see frame.h) is one msgpack map with short
 * string keys.  Key "t" (uint) is the frame type; "rid" (uint) is the
 * optional request id, echoed by the reply (0 or absent = none).  Unknown
 * keys are ignored.  Strings ("str") are msgpack str; bodies are msgpack bin.
 *
 * Ownership: a decoded frame BORROWS from the input bytes (every fy_str and
 * the body point into them) and from the decoder's zone (arrays).  Both stay
 * valid until the next fy_decode() on the same decoder or fy_dec_fini();
 * copy what you keep.
 *
 * Errors: the FY_* codes of frame.h.  fy_decode() never asserts on input.
 *
 * Copying: for a single PUB and a one-lease ACK the decoder points
 * pub.msgs at pub.one and ack.leases at ack.one, inside the frame itself.
 * A copy of a struct fy_frame still points into the original; re-point
 * them (or use pub.msgs[0] from the original) when copying.
 */
#ifndef FERRY_PROTOCOL_CODEC_H
#define FERRY_PROTOCOL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "frame.h"

#define FY_PROTO_VERSION 1
#define FY_NAME_MAX 200		/* topic and group names, bytes */
#define FY_NAME_DLQ_MAX (FY_NAME_MAX + 4)	/* "<name>.dlq" */
#define FY_ID_MAX 64		/* message ids, bytes */
#define FY_ERRTEXT_MAX 1024	/* nack error text kept by the broker */

/* Frame types ("t"). Client -> broker below 64, broker -> client above. */
enum fy_type {
	FY_T_HELLO = 1,
	FY_T_PUB = 2,
	FY_T_SUB = 3,
	FY_T_UNSUB = 4,
	FY_T_ACK = 5,
	FY_T_NACK = 6,
	FY_T_TOUCH = 7,
	FY_T_DELETE = 8,
	FY_T_PING = 9,
	FY_T_STATS = 10,
	FY_T_INFLIGHT = 11,
	FY_T_PEEK = 12,
	FY_T_TRACE = 13,
	FY_T_AUTH = 14,		/* SASL continuation (client-final) */

	FY_T_WELCOME = 64,
	FY_T_OK = 65,
	FY_T_ERR = 66,
	FY_T_MSG = 67,
	FY_T_CHALLENGE = 68,	/* SASL challenge (server-first) */
};

/*
 * Stable error codes carried by ERR frames ("code").  Never renumber.
 * fy_code_name() gives the symbolic name, fy_code_retryable() whether the
 * same request may succeed later unchanged.
 */
enum fy_code {
	FY_E_PROTO = 1,		/* malformed frame (framing still intact) */
	FY_E_TOOBIG = 2,	/* frame above max_frame: connection closed */
	FY_E_HANDSHAKE = 3,	/* frame before HELLO, or bad version */
	FY_E_UNKNOWN_TYPE = 4,	/* unknown "t" */
	FY_E_BADNAME = 5,	/* invalid topic or group name */
	FY_E_BADARG = 6,	/* field missing, wrong type or out of range */
	FY_E_NOSUB = 7,		/* unknown subscription id */
	FY_E_STALE = 8,		/* lease no longer valid (timed out, redelivered) */
	FY_E_MSGSIZE = 9,	/* body above max_message_size */
	FY_E_NOTFOUND = 10,	/* no such topic or group */
	FY_E_LIMIT = 11,	/* a configured limit reached (conns, topics) */
	FY_E_FULL = 12,		/* queue full (retryable) */
	FY_E_DISK = 13,		/* journal cannot write, e.g. disk full
				   (retryable) */
	FY_E_INTERNAL = 14,	/* broker bug or resource failure (retryable) */
	FY_E_DELETED = 15,	/* subscription ended: its group was deleted */
	FY_E_SHUTDOWN = 16,	/* broker is shutting down (retryable) */
	FY_E_MODE = 17,		/* request not valid for this subscription's
				   mode (e.g. ACK on at-most-once) */
	FY_E_NOSUBSCRIBERS = 18, /* mandatory publish: no group of the topic
				   has a member (retryable) */
	FY_E_DENIED = 19,	/* authentication failed (connection closed),
				   or the user may not do this (open) */
	FY_E_IDLE = 20,		/* closed after idle_timeout without a frame
				   (retryable: reconnect) */
	FY_E_SLOW = 21,		/* unsolicited, with sid: messages of the
				   subscription's ephemeral group were
				   dropped (slow consumer); stays open */
};
#define FY_E_MAX 21

const char *fy_code_name(int code);	/* "E_STALE"; "E_UNKNOWN" if unknown */
int fy_code_retryable(int code);	/* 1 or 0 */

/* Subscription delivery modes ("mode"). */
enum fy_mode {
	FY_MODE_ALO = 0,	/* at-least-once: explicit ACK (default) */
	FY_MODE_AMO = 1,	/* at-most-once: settled once written */
};

/* What a full group does with one more message ("overflow" in SUB). */
enum fy_overflow {
	FY_OVERFLOW_REJECT = 0,		/* refuse the publish: E_FULL */
	FY_OVERFLOW_DLQ_OLDEST = 1,	/* dead-letter the oldest ready one */
};

/* Durability reached by a confirmed publish ("dur" in OK). */
enum fy_durability {
	FY_DUR_MEMORY = 0,	/* held in broker memory only */
	FY_DUR_WRITTEN = 1,	/* written to the journal, not yet synced */
	FY_DUR_SYNCED = 2,	/* on disk: covered by an fdatasync */
};

/* Borrowed byte string; not NUL-terminated.  p may be NULL when len == 0. */
struct fy_str {
	const char *p;
	uint32_t len;
};

struct fy_kv {
	struct fy_str k, v;
};

/* One message inside PUB (single or batch). */
struct fy_pubmsg {
	struct fy_str body;	/* "body" bin, required */
	struct fy_str id;	/* "id" str, optional producer-supplied id:
				   deduplicated per topic (dedup_window) */
	struct fy_kv *hdr;	/* "hdr" map str->str, optional */
	uint32_t nhdr;
	uint64_t delay_ms;	/* "delay": not deliverable for this long */
	uint64_t ttl_ms;	/* "ttl": expires if not delivered in time;
				   0 = the group's default */
	struct fy_str reply_to;	/* "reply_to": topic for the reply */
	struct fy_str corr;	/* "corr": correlation id for the reply */
	struct fy_str pid;	/* "pid": producer id (idempotent producer) */
	uint64_t pseq;		/* "seq": the producer's sequence, > 0; a
				   publish with seq <= the producer's high
				   water mark is a duplicate */
};

/* One entry of a dead-letter history ("hist" in MSG). */
struct fy_hist {
	struct fy_str cause;	/* "c": "timeout" | "nacked" | "disconnected" |
				   "released" | "expired" */
	struct fy_str error;	/* "e": nack error text, may be empty */
	struct fy_str consumer;	/* "by": consumer (client) name */
	uint64_t at;		/* "at": unix time, ms */
};

/* One group's counters ("stats" in OK).  A topic's backlog is reported
 * as a row with an empty group. */
struct fy_gstat {
	struct fy_str topic;	/* "topic" */
	struct fy_str group;	/* "group" */
	uint64_t ready;		/* "ready": waiting for a member */
	uint64_t delayed;	/* "delayed": waiting for a delay or backoff */
	uint64_t inflight;	/* "inflight": delivered, not acked */
	uint64_t bytes;		/* "bytes": body bytes queued */
	uint64_t members;	/* "members" */
	uint64_t enqueued;	/* "enq": messages ever added */
	uint64_t delivered;	/* "dlv": deliveries, redeliveries too */
	uint64_t acked;		/* "ack" */
	uint64_t timeouts;	/* "timeout": leases expired */
	uint64_t nacked;	/* "nack" */
	uint64_t disconnected;	/* "disc" */
	uint64_t released;	/* "rel" */
	uint64_t expired;	/* "expired": TTL ran out */
	uint64_t dead_lettered;	/* "dlq" */
	uint64_t amo;		/* "amo": settled on delivery (mode 1) */
	uint64_t overflow;	/* "overflow": pushed out of a full group */
	uint64_t dropped;	/* "drop": removed undelivered and not
				   dead-lettered */
	uint64_t slow;		/* "slow": of those, dropped because an
				   ephemeral group was full (E_SLOW) */
	uint64_t age_ms;	/* "age": ms since the oldest ready message
				   was published; 0 if none is ready */
};

/* The broker as a whole ("broker" in the OK of a STATS without a topic: an
 * array holding one such row). */
struct fy_bstat {
	uint64_t conns;		/* "conns": client connections open */
	uint64_t topics;	/* "topics" */
	uint64_t groups;	/* "groups", ephemeral included */
	uint64_t ready;		/* "ready": summed over groups, and topic */
	uint64_t delayed;	/* "delayed"      backlogs for ready */
	uint64_t inflight;	/* "inflight" */
	uint64_t bytes;		/* "bytes": body bytes held */
	uint64_t published;	/* "pub": messages published, all topics */
	uint64_t delivered;	/* "dlv": summed over groups */
	uint64_t acked;		/* "ack": summed over groups */
	uint64_t bytes_in;	/* "in": frame bytes received */
	uint64_t bytes_out;	/* "out": bytes sent */
	uint64_t journal_bytes;	/* "jbytes": segment files on disk */
	uint64_t uptime_ms;	/* "up" */
	uint64_t paged;		/* "paged": messages whose body is only in
				   the journal (past max_memory) */
	uint64_t paged_bytes;	/* "pbytes": their body bytes */
	uint64_t paged_reads;	/* "preads": bodies read back, ever */
	uint64_t producers;	/* "producers": idempotent producers
				   remembered (producer_ttl) */
};

/* One outstanding delivery ("inflight" in OK). */
struct fy_lease_info {
	struct fy_str id;	/* "id": message id */
	struct fy_str consumer;	/* "by": the member's client name */
	uint64_t age_ms;	/* "age": since delivered (TOUCH keeps it) */
	uint32_t attempt;	/* "att" */
	struct fy_str error;	/* "e": last nack error, may be empty */
	uint64_t left_ms;	/* "left": until the lease's deadline, which
				   TOUCH moves; 0 = due now */
};

/* One step of a message's life ("events" in OK, for TRACE). */
struct fy_event {
	uint64_t at;		/* "at": unix ms */
	struct fy_str what;	/* "ev": published, delivered, acked, nacked,
				   timeout, disconnected, released, expired,
				   dead-lettered, dropped, duplicate */
	struct fy_str topic;	/* "topic" */
	struct fy_str group;	/* "group", empty for published */
	struct fy_str consumer;	/* "by" */
	uint32_t attempt;	/* "att" */
	struct fy_str error;	/* "e" */
};

struct fy_frame {
	int type;		/* enum fy_type, or the unknown value read
				   (-1 if above INT_MAX); 0 if unreadable */
	uint64_t rid;		/* 0 = no reply wanted (errors still sent) */
	union {
		struct {
			uint32_t version;	/* "v" */
			struct fy_str name;	/* "name", optional */
			/* Authentication, optional: "mech" names the SASL
			 * mechanism ("SCRAM-SHA-256"), "sasl" carries its
			 * first message (client-first-message). */
			struct fy_str mech;	/* "mech" */
			struct fy_str sasl;	/* "sasl" */
		} hello;
		struct {
			struct fy_str sasl;	/* "sasl", required: the next
						   SASL message (AUTH: client-
						   final; CHALLENGE: server-
						   first) */
		} auth;
		struct {
			struct fy_str topic;	/* "topic" */
			/* Single message: fields at top level, msgs = &one.
			 * Batch: "msgs" array of message maps. nmsgs >= 1. */
			struct fy_pubmsg *msgs;
			uint32_t nmsgs;
			struct fy_pubmsg one;
			uint8_t mandatory;	/* "mandatory" bool: refuse
						   with E_NOSUBSCRIBERS when no
						   group has a member */
			struct fy_str group;	/* "group": enqueue in this
						   existing group only (e.g. a
						   dead letter replayed), not
						   fanned out; E_NOTFOUND if
						   there is no such group */
		} pub;
		struct {
			struct fy_str topic;	/* "topic" */
			struct fy_str group;	/* "group", empty = default */
			uint32_t prefetch;	/* "prefetch", 0 = default */
			uint32_t mode;		/* "mode", enum fy_mode */
			uint32_t ack_timeout_ms; /* "ack_timeout", 0 = group's */
			uint32_t max_attempts;	/* "max_attempts", 0 = group's */
			uint8_t ephemeral;	/* "ephemeral" bool */
			/* Group settings, applied when the SUB creates it: */
			uint64_t ttl_ms;	/* "ttl": default message TTL */
			uint8_t ttl_drop;	/* "ttl_drop" bool: drop expired
						   messages, don't dead-letter */
			uint64_t max_msgs;	/* "max_msgs": 0 = no limit */
			uint64_t max_bytes;	/* "max_bytes": 0 = no limit */
			uint32_t overflow;	/* "overflow", enum fy_overflow */
		} sub;
		struct {
			uint64_t sid;		/* "sid" */
		} unsub;
		struct {
			uint64_t sid;		/* "sid" */
			/* "lease" (one uint) or "leases" (array of uint). */
			const uint64_t *leases;
			uint32_t nleases;
			uint64_t one;
		} ack;
		struct {
			uint64_t sid;		/* "sid" */
			uint64_t lease;		/* "lease" */
			uint64_t delay_ms;	/* "delay", optional */
			uint8_t has_delay;
			struct fy_str error;	/* "error", optional */
		} nack;
		struct {
			uint64_t sid;		/* "sid" */
			uint64_t lease;		/* "lease" */
		} touch;
		struct {
			struct fy_str topic;	/* "topic" */
			struct fy_str group;	/* "group"; empty = whole topic */
		} del;
		/*
		 * STATS {topic?}: counters of every group of the topic (all
		 * topics if empty).  INFLIGHT {topic, group?}: outstanding
		 * deliveries.  PEEK {topic, group?}: the head of the queue.
		 * TRACE {id}: what happened to a message.  group empty =
		 * "default".
		 */
		struct {
			struct fy_str topic;	/* "topic" */
			struct fy_str group;	/* "group" */
			struct fy_str id;	/* "id" (TRACE) */
		} query;
		struct {
			uint32_t version;	/* "v" */
			struct fy_str server;	/* "server", e.g. "ferryd 0.1.0" */
			struct fy_str session;	/* "session", a UUID */
			uint32_t max_frame;	/* "max_frame" */
			uint32_t max_msg;	/* "max_msg" */
			struct fy_str boot;	/* "boot": a UUID drawn when
						   the broker started; a new
						   one means a restart */
			uint32_t idle_ms;	/* "idle": the broker closes a
						   connection silent this long
						   (E_IDLE); 0 = never */
			struct fy_str user;	/* "user": who the broker took
						   the client for; empty =
						   anonymous */
			struct fy_str sasl;	/* "sasl": server-final, which
						   the client MUST verify */
		} welcome;
		struct {
			/* SUB reply */
			uint64_t sid;		/* "sid", 0 if absent */
			struct fy_str group;	/* "group" */
			/* PUB confirm: one id per message, in order */
			struct fy_str *ids;	/* "ids" */
			uint32_t nids;
			uint32_t dur;		/* "dur", enum fy_durability */
			uint32_t dups;		/* "dups": how many of the
						   messages were duplicates,
						   not enqueued again */
			/* Inspection replies */
			struct fy_gstat *stats;	/* "stats" (STATS) */
			uint32_t nstats;
			struct fy_bstat *broker;	/* "broker" (STATS
							   without a topic) */
			uint32_t nbroker;		/* 0 or 1 */
			struct fy_lease_info *inflight;	/* "inflight" */
			uint32_t ninflight;
			struct fy_event *events;	/* "events" (TRACE) */
			uint32_t nevents;
		} ok;
		struct {
			uint32_t code;		/* "code", enum fy_code */
			struct fy_str msg;	/* "msg" */
			uint64_t sid;		/* "sid": subscription ended */
		} err;
		struct {
			uint64_t sid;		/* "sid" */
			struct fy_str id;	/* "id" */
			struct fy_str topic;	/* "topic" */
			uint64_t lease;		/* "lease", 0 for at-most-once */
			uint32_t attempt;	/* "att", 1 on first delivery */
			uint64_t ts;		/* "ts", publish time, unix ms */
			struct fy_kv *hdr;	/* "hdr" */
			uint32_t nhdr;
			struct fy_hist *hist;	/* "hist", dead letters only */
			uint32_t nhist;
			struct fy_str reply_to;	/* "reply_to" */
			struct fy_str corr;	/* "corr" */
			struct fy_str body;	/* "body", always the last key */
		} msg;	/* also the reply to PEEK: rid set, sid and lease 0 */
	};
};

/*
 * Decoder: holds the zone that decoded arrays live in.  requests_only is
 * 0 after fy_dec_init(); the broker sets it to 1, so that a frame whose
 * type only the broker sends (WELCOME, OK, ERR, MSG) is FY_ETYPE before
 * any of its fields is read, as PROTOCOL.md section 6 says.
 */
struct fy_dec {
	msgpack_zone zone;
	int requests_only;
};

int fy_dec_init(struct fy_dec *d);	/* FY_OK or FY_ENOMEM */
void fy_dec_fini(struct fy_dec *d);

/*
 * Decode one payload (the bytes after the length header) into *f.
 * Invalidates the previous frame decoded with d.  On FY_ETYPE and
 * FY_EFIELD, f->type and f->rid are filled in when they could be read, so
 * the error reply can echo the request id.  On FY_EFIELD, *field (if not
 * NULL) names the offending key: a static string, e.g. "topic", "t",
 * "rid", or "body" for a batch message without one.
 *
 * FY_EPROTO: not exactly one msgpack map, or nested deeper than 16.
 * FY_ENOMEM: the zone could not grow (arrays are bounded by len).
 * A nil value counts as absent; unknown and non-str keys are skipped.
 * Besides types, FY_EFIELD also covers: SUB mode or overflow > 1, a PUB
 * id or pid longer than FY_ID_MAX, a PUB message with seq 0, or with
 * only one of pid and seq (names "seq"), PUB with both msgs and any
 * top-level message key (names "msgs"), ACK with both lease and leases
 * (names "leases"), and empty msgs or leases arrays.  An error inside a
 * row of OK's stats, inflight or events names the array.
 * Names are not checked here: see fy_name_valid().
 */
int fy_decode(struct fy_dec *d, const uint8_t *payload, size_t len,
    struct fy_frame *f, const char **field);

/* Encoder: frames are appended to sb; clear it once written out. */
struct fy_enc {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

void fy_enc_init(struct fy_enc *e);
void fy_enc_fini(struct fy_enc *e);
void fy_enc_clear(struct fy_enc *e);	/* keeps the allocation */

/*
 * Append one complete frame (length header + map) for *f.  Only the fields
 * meaningful for f->type are written; optional ones only when set
 * (non-zero, non-empty; NACK delay when has_delay).  PUB with nmsgs == 1
 * is written in the single form from msgs[0]; nmsgs > 1 as "msgs".  ACK
 * with nleases == 1 is written as "lease", else "leases".
 * Returns FY_OK, FY_ENOMEM, FY_EPROTO for an unknown type or a PUB/ACK
 * without messages/leases (msgs/leases NULL or count 0), or FY_ETOOBIG
 * for a payload above 4 GiB.  On error nothing is appended.
 */
int fy_encode(struct fy_enc *e, const struct fy_frame *f);

/*
 * Like fy_encode() for FY_T_MSG, or FY_T_PUB with a single message, but the
 * body bytes are not copied: the frame's length header counts them and the
 * encoding ends with the bin header of the body, so the caller must send
 * exactly body.len body bytes right after what was appended.  This is how
 * the broker sends a stored body without copying it again.
 */
int fy_encode_nobody(struct fy_enc *e, const struct fy_frame *f);

/* 1 if p[0..len) is a valid topic or group name: 1..FY_NAME_MAX bytes of
 * [A-Za-z0-9._-], or up to FY_NAME_DLQ_MAX if it ends in ".dlq" (the
 * dead-letter topic of a FY_NAME_MAX one). */
int fy_name_valid(const char *p, size_t len);

/*
 * Copy src[0..len) into dst as well-formed UTF-8 of at most cap bytes:
 * each byte that does not belong to a well-formed character becomes
 * U+FFFD, and the copy stops before the first character that would not
 * fit whole.  Returns the bytes written.  For text a client hands the
 * broker to be sent back as str (a NACK's error), which a strict msgpack
 * decoder would refuse to read if it were not UTF-8.
 */
size_t fy_utf8_clean(char *dst, size_t cap, const char *src, size_t len);

#endif
