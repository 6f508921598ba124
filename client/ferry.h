/*
 * ferry.h - libferry, the C client of the ferry message broker.
 *
 * Two APIs over the same code: a blocking one (struct ferry, most of this
 * file) for scripts and workers, and an asynchronous one on the caller's
 * libevent event_base (struct ferry_async, at the end).
 *
 * One handle (struct ferry) is one TCP connection to ferryd.  Every call
 * blocks until it is done or its timeout passes; nothing runs in the
 * background.  A handle must not be used by two threads at once; separate
 * handles are independent.  The library never prints and never changes
 * signal dispositions (it writes with MSG_NOSIGNAL).
 *
 * Typical producer:
 *
 *	struct ferry *f = ferry_connect("127.0.0.1", 4470, 5000, "producer");
 *	if (f == NULL || ferry_err(f))
 *		... ferry_errstr(f) says why (f == NULL only when out of memory)
 *	ferry_publish(f, "orders", body, len, NULL);	// fire-and-forget
 *	ferry_flush(f);
 *	ferry_close(f);
 *
 * Typical worker:
 *
 *	ferry_subscribe(f, "orders", NULL, &sid);
 *	for (;;) {
 *		r = ferry_next(f, -1, &m);
 *		if (r == FERRY_OK) {
 *			work(m->body, m->len);
 *			ferry_ack(f, m->sid, m->lease, 0);
 *			ferry_msg_free(m);
 *		} else if (ferry_err(f)) {
 *			break;		// connection lost: reconnect
 *		}		// else async, e.g. FERRY_ESTALE
 *	}
 *
 * ERRORS
 *
 * Functions returning int return FERRY_OK (0) or a negative FERRY_E* code.
 * There are two kinds:
 *
 *  - Fatal (connection) errors: FERRY_EIO, FERRY_ECLOSED, FERRY_ECONNECT,
 *    FERRY_EBADREPLY, and FERRY_ENOMEM while receiving.  The connection is
 *    closed, the code is stored in the handle (ferry_err() returns it) and
 *    every later call on the handle returns it at once.  Only
 *    ferry_close() is useful afterwards.  Pipelined publishes that were
 *    still unconfirmed are reported as failed with this code.  With
 *    automatic reconnection on (ferry_set_reconnect()), a lost connection
 *    is re-established instead, and only becomes fatal when that fails.
 *
 *  - Request errors: the broker refused one request (the negated broker
 *    code, e.g. FERRY_ESTALE), a bad argument (FERRY_EINVAL), a timeout
 *    (FERRY_ETIMEOUT), or FERRY_ENOMEM while encoding.  The call returns
 *    the code; the connection stays usable and ferry_err() stays 0.
 *
 * In both cases ferry_errstr() describes the most recent error, including
 * the broker's own text for broker errors, and ferry_last_code() gives the
 * broker's numeric code (enum fy_code in PROTOCOL.md) of the most recent
 * broker error, so codes this header does not name are not lost.
 *
 * Asynchronous errors: a request sent without waiting for its answer
 * (fire-and-forget publish, ack, nack, touch) is answered only if it fails,
 * by an ERR frame the broker sends later; the broker also ends a
 * subscription whose group is deleted with such a frame (FERRY_EDELETED),
 * and tells an ephemeral subscription that fell so far behind that some
 * of its messages were dropped (FERRY_ESLOW, once until it catches up).
 * These never become the return value of an unrelated call.  They are
 * queued on the handle (the FERRY_ASYNC_MAX most recent; older ones are
 * counted in ferry_async_error.dropped) and reported:
 *   - by ferry_next(), which returns the oldest queued one (one per call)
 *     before returning any message, so a worker loop sees them; and
 *   - by ferry_poll_error(), which pops the oldest one with its details,
 *     for producers that never call ferry_next().
 * Call ferry_flush() or ferry_ping() first to make sure the broker has seen
 * everything sent.
 *
 * OUTPUT BUFFERING
 *
 * Requests that do not wait (fire-and-forget and pipelined publishes, acks,
 * nacks and touches without FERRY_CONFIRM) are encoded into the handle's
 * write buffer.  It is written, without blocking, by the next ferry_* call
 * once it holds 64 KiB or its oldest byte is 2 ms old, and completely by
 * any call that waits for the broker (ferry_next() included) and by
 * ferry_flush().  A caller that publishes once and then sleeps must call
 * ferry_flush().  Only when 256 KiB are still unwritten does a call block
 * (I/O timeout) until the broker catches up; the kernel is asked to hold
 * at most 128 KiB more unsent (TCP_NOTSENT_LOWAT), so a producer that
 * ferryd slows feels it while its messages are still fresh.
 *
 * OWNERSHIP
 *
 * Every pointer argument is borrowed for the duration of the call only,
 * unless its description says otherwise; the library copies what it keeps.
 * Strings returned by the library (ferry_errstr(), ferry_server(),
 * ferry_strerror()) are owned by it.  Messages returned by ferry_next() are
 * owned by the caller and freed with ferry_msg_free().
 */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_DEFAULT_PORT 4470
#define FERRY_DEFAULT_TLS_PORT 4471	/* ferrys:// */
#define FERRY_ERRSTR_LEN 128	/* size of the handle's error text, NUL incl. */
#define FERRY_ID_MAX 64		/* message id, bytes, NUL excluded */
#define FERRY_NAME_MAX 200	/* topic and group names, bytes */
#define FERRY_ASYNC_MAX 32	/* async errors queued on a handle */

/*
 * Error codes.  -1 .. -99 are the broker's ERR codes negated (value ==
 * -(broker code)); -100 and below are the client's own.
 */
enum ferry_error {
	FERRY_OK = 0,

	/* Broker errors: the broker refused a request. */
	FERRY_EPROTO = -1,	/* our frame was malformed (a libferry bug) */
	FERRY_ETOOBIG = -2,	/* our frame was above max_frame; the
				   broker closes the connection */
	FERRY_EHANDSHAKE = -3,	/* handshake refused (protocol version) */
	FERRY_EUNKNOWN_TYPE = -4, /* the broker does not know a frame type */
	FERRY_EBADNAME = -5,	/* invalid topic or group name */
	FERRY_EBADARG = -6,	/* a field missing, wrong or out of range */
	FERRY_ENOSUB = -7,	/* unknown subscription id */
	FERRY_ESTALE = -8,	/* lease no longer valid: the delivery expired,
				   was redelivered or already settled */
	FERRY_EMSGSIZE = -9,	/* body above the broker's max_msg (also
				   detected by the client before sending) */
	FERRY_ENOTFOUND = -10,	/* no such topic or group */
	FERRY_ELIMIT = -11,	/* a configured broker limit was reached */
	FERRY_EFULL = -12,	/* queue full; retryable */
	FERRY_EDISK = -13,	/* broker cannot write its journal; retryable */
	FERRY_EINTERNAL = -14,	/* broker bug or resource failure; retryable */
	FERRY_EDELETED = -15,	/* subscription ended: its group was deleted */
	FERRY_ESHUTDOWN = -16,	/* broker shutting down; retryable */
	FERRY_EMODE = -17,	/* not valid in this subscription's mode (ack
				   on an at-most-once subscription) */
	FERRY_ENOSUBSCRIBERS = -18, /* mandatory publish (and so a request):
				   no group of the topic has a connected
				   member; nothing was stored; retryable */
	FERRY_EDENIED = -19,	/* login failed (wrong password or unknown
				   user: the broker does not say which), or
				   the user may not do this */
	FERRY_ESLOW = -21,	/* async, with the subscription's sid: the
				   broker dropped messages of its ephemeral
				   group, which passed ephemeral_max_bytes
				   (a slow consumer); the subscription goes
				   on with newer messages */
	FERRY_EBROKER = -99,	/* a broker code above 98: see
				   ferry_last_code() */

	/* Client errors. */
	FERRY_EIO = -101,	/* socket error (errno text in errstr); fatal */
	FERRY_ECLOSED = -102,	/* the broker closed the connection; fatal */
	FERRY_ECONNECT = -103,	/* cannot resolve or connect, or the
				   handshake failed; fatal */
	FERRY_EBADREPLY = -104,	/* the broker sent something unreadable or
				   unexpected; fatal */
	FERRY_ETIMEOUT = -105,	/* the timeout passed; the request may still
				   be carried out, its late answer is
				   ignored */
	FERRY_ENOMEM = -106,	/* out of memory */
	FERRY_EINVAL = -107,	/* invalid argument (NULL topic, name too
				   long, ...); nothing was sent */
};

/* 1 if err is a broker error (-1 .. -99), i.e. ferry_last_code() is set. */
#define FERRY_IS_BROKER_ERROR(err) ((err) <= -1 && (err) >= -99)

/* 1 if the same request may succeed later unchanged: FERRY_EFULL,
 * FERRY_EDISK, FERRY_EINTERNAL, FERRY_ESHUTDOWN, FERRY_ENOSUBSCRIBERS,
 * FERRY_ETIMEOUT (which may mean the first attempt was carried out:
 * publish with an id, or as an idempotent producer). */
int ferry_retryable(int err);

/* Static text for any FERRY_E* code ("stale lease", ...). */
const char *ferry_strerror(int err);

/* A string header: NUL-terminated key and value. */
struct ferry_header {
	const char *key;
	const char *value;
};

/*
 * Options of one published message.  NULL, or a zeroed struct, means all
 * defaults; initialise it with designated initialisers or memset(), as
 * later versions may append fields.  Strings are borrowed for the call.
 */
struct ferry_pub_opts {
	const char *id;		/* producer-supplied message id (<=
				   FERRY_ID_MAX bytes) for dedup: a repeat
				   within the broker's dedup_window is
				   confirmed but not enqueued again; NULL
				   for a broker-generated UUID */
	const struct ferry_header *hdr;	/* nhdr headers, or NULL */
	size_t nhdr;
	uint64_t delay_ms;	/* not delivered before publish time + this;
				   survives broker restarts */
	uint64_t ttl_ms;	/* expires (dead-lettered, or dropped if the
				   group says so) if not delivered within
				   this; 0 = the group's default */
	const char *reply_to;	/* topic for a reply (request-reply), or
				   NULL; carried to the consumer untouched */
	const char *corr;	/* correlation id for the reply, or NULL */
	int mandatory;		/* 1 = refuse with FERRY_ENOSUBSCRIBERS
				   unless some group of the topic has a
				   connected member */
	const char *group;	/* enqueue only in this existing group of the
				   topic (not fanned out), FERRY_ENOTFOUND if
				   it does not exist; NULL = every group */
};

/* One message of a batch (ferry_publish_batch()). */
struct ferry_pub_msg {
	const void *body;
	size_t len;
	const char *id;		/* as in ferry_pub_opts */
	const struct ferry_header *hdr;
	size_t nhdr;
};

enum ferry_mode {
	FERRY_AT_LEAST_ONCE = 0,	/* deliveries are leases: ack them */
	FERRY_AT_MOST_ONCE = 1,		/* settled once sent: never ack */
};

enum ferry_overflow {
	FERRY_OVERFLOW_REJECT = 0,	/* refuse publishes: FERRY_EFULL */
	FERRY_OVERFLOW_DLQ_OLDEST = 1,	/* dead-letter the oldest waiting
					   message to make room */
};

/*
 * Options of a subscription.  NULL, or a zeroed struct, means defaults
 * (initialise with designated initialisers or memset(): later versions may
 * append fields).  The group settings below the line apply only when this
 * subscription creates the group; they are stored durably with it and an
 * existing group keeps its own.
 */
struct ferry_sub_opts {
	const char *group;	/* group name; NULL or "" = "default" */
	uint32_t prefetch;	/* max unacked deliveries; 0 = broker's (16) */
	int mode;		/* enum ferry_mode */
	uint32_t ack_timeout_ms; /* lease length; 0 = the group's */
	uint32_t max_attempts;	/* before dead-lettering; 0 = the group's */
	int ephemeral;		/* 1 = private group, deleted with the
				   subscription; group is ignored */
	/* Group settings: */
	uint64_t ttl_ms;	/* default message TTL; 0 = none */
	int ttl_drop;		/* 1 = drop expired messages instead of
				   dead-lettering them */
	uint64_t max_msgs;	/* most messages held (ready, delayed and in
				   flight); 0 = no limit */
	uint64_t max_bytes;	/* most body bytes held; 0 = no limit */
	int overflow;		/* enum ferry_overflow: what a full group
				   does with one more message */
};

/* One entry of a dead-lettered message's history. */
struct ferry_hist {
	const char *cause;	/* "timeout" | "nacked" | "disconnected" |
				   "released" | "expired" (TTL) */
	const char *error;	/* nack error text, "" if none */
	const char *consumer;	/* client name of the consumer */
	uint64_t at_ms;		/* unix time, ms */
};

/*
 * A delivered message.  Allocated by ferry_next() as ONE block holding
 * every field: the caller owns it and frees it with ferry_msg_free(); all
 * pointers inside stay valid until then.  Strings are NUL-terminated;
 * body is followed by a NUL byte that len does not count.
 */
struct ferry_msg {
	uint64_t sid;		/* subscription it was delivered on */
	uint64_t lease;		/* token for ack/nack/touch; 0 at-most-once */
	const char *id;		/* message id */
	const char *topic;
	const void *body;
	size_t len;
	uint32_t attempt;	/* 1 on first delivery */
	uint64_t ts_ms;		/* publish time, unix ms */
	const struct ferry_header *hdr;	/* nhdr headers */
	size_t nhdr;
	const struct ferry_hist *hist;	/* dead letters only, else NULL */
	size_t nhist;
	const char *reply_to;	/* where a reply goes ("" if none): see
				   ferry_reply() */
	const char *corr;	/* correlation id of a request or reply, "" */
};

/* An asynchronous error popped by ferry_poll_error(). */
struct ferry_async_error {
	int err;		/* FERRY_E* code (negated broker code) */
	int code;		/* the broker's code */
	uint64_t sid;		/* subscription concerned (FERRY_EDELETED:
				   it ended; FERRY_ESLOW), or 0 */
	uint64_t dropped;	/* async errors lost before this one because
				   the queue was full */
	char msg[FERRY_ERRSTR_LEN];	/* the broker's text */
};

/* The outcome of one pipelined publish, passed to a ferry_confirm_fn. */
struct ferry_confirm {
	uint64_t rid;		/* as returned by ferry_publish_pipelined() */
	int err;		/* FERRY_OK or the FERRY_E* code */
	int code;		/* the broker's code, 0 if none */
	size_t nmsgs;		/* messages in the request (batch size) */
	const char *id;		/* id of its first message ("" on error, and
				   "" for a duplicate the broker no longer
				   remembers) */
	const char *errmsg;	/* error text, "" when err == 0 */
	size_t dups;		/* of nmsgs, how many were duplicates (by id
				   or producer sequence): confirmed, but not
				   enqueued again */
	size_t first;		/* a batch (ferry_publish_batch() with
				   FERRY_CONFIRM, ferry_async_publish_batch()):
				   the index in its msgs of this frame's
				   first message, the frame holding msgs[first,
				   first + nmsgs); 0 for a single publish */
};

/*
 * Called once per pipelined publish when its answer arrives (or when the
 * connection fails).  It runs inside whichever ferry_* call on the handle
 * reads the answer, so it must not call ferry_* functions on that handle.
 * *c and its strings are valid until it returns.
 */
typedef void ferry_confirm_fn(void *arg, const struct ferry_confirm *c);

/* Totals collected by ferry_wait_confirms(), in messages. */
struct ferry_confirms {
	uint64_t ok;		/* confirmed since the previous collection */
	uint64_t failed;	/* refused or lost since then */
	uint64_t pending;	/* still awaiting an answer */
	int first_err;		/* FERRY_E* of the first failure, or 0 */
};

/* --- Connection ------------------------------------------------------- */

/*
 * Connect to host:port (name or address; NULL = "127.0.0.1"), and do the
 * HELLO/WELCOME handshake.  timeout_ms bounds the connect and handshake,
 * and is then the handle's I/O timeout (see ferry_set_timeout()); <= 0
 * means no limit.  name (NULL = "libferry") identifies this client to the
 * broker (it appears in dead-letter history); at most FERRY_NAME_MAX bytes.
 * Returns a handle the caller frees with ferry_close(), or NULL when out of
 * memory.  If connecting failed, ferry_err() is FERRY_ECONNECT (or the
 * broker's handshake error, e.g. FERRY_EHANDSHAKE, or FERRY_EINVAL for a
 * bad port or name) and ferry_errstr() says why.
 */
struct ferry *ferry_connect(const char *host, int port, int timeout_ms,
    const char *name);

/*
 * Connection options for ferry_connect_opts(); zero fields take their
 * defaults, so `struct ferry_opts o = {0}` then the fields you need.
 * Strings are copied; the caller may free them after the call.
 */
struct ferry_opts {
	/* "ferry://[USER@]HOST[:PORT]"; sets host, port and user unless
	 * those are given too.  NULL: $FERRY_URL if set. */
	const char *url;
	const char *host;	/* NULL = "127.0.0.1" */
	int port;		/* 0 = FERRY_DEFAULT_PORT */
	int timeout_ms;		/* as ferry_connect()'s */
	const char *name;	/* as ferry_connect()'s */
	/*
	 * Log in as user with SCRAM-SHA-256 (the password never crosses
	 * the wire, and the broker must prove it knows the user's verifier
	 * too).  NULL: anonymous.  The password comes from, in order:
	 * password, password_cb, $FERRY_PASSWORD, the first line of
	 * password_file.  It is kept (for reconnecting) and wiped when the
	 * handle is freed.
	 */
	const char *user;
	const char *password;
	/* Fill buf (size bytes) with a NUL-terminated password; 0 on
	 * success. */
	int (*password_cb)(void *arg, char *buf, size_t size);
	void *password_arg;
	const char *password_file;
	/*
	 * TLS (1.2 or 1.3): tls non-zero, or a "ferrys://" URL (whose
	 * default port is 4471).  The broker's certificate must be signed by
	 * tls_ca (NULL: the system's CAs) and name the host (or
	 * tls_server_name); a client certificate and key (PEM) may log in
	 * without a password where the broker maps it to a user.
	 */
	int tls;
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	const char *tls_server_name;
};

/*
 * ferry_connect() with options.  A login the broker refuses fails with
 * FERRY_EDENIED; a broker that cannot prove it knows the password (a
 * wrong server, or someone in between) with FERRY_ECONNECT.
 */
struct ferry *ferry_connect_opts(const struct ferry_opts *o);

/* The user the broker took this client for ("" = anonymous). */
const char *ferry_user(const struct ferry *f);

/*
 * Flush what is buffered (bounded by the I/O timeout), close the
 * connection and free the handle and every message still buffered in it.
 * Messages the caller got from ferry_next() stay valid.  NULL is a no-op.
 * Unacked deliveries are released by the broker and redelivered.
 */
void ferry_close(struct ferry *f);

/*
 * The I/O timeout: how long a call that waits for the broker without a
 * timeout argument of its own (a confirmed request, ferry_flush(), a write
 * that would block) waits before FERRY_ETIMEOUT.  <= 0 = no limit.
 */
void ferry_set_timeout(struct ferry *f, int timeout_ms);

/* The fatal error of the handle (0 while the connection is usable);
 * FERRY_ENOMEM for NULL, so ferry_err(ferry_connect(...)) is safe. */
int ferry_err(const struct ferry *f);

/* Text of the most recent error; "" if none.  Owned by the handle, valid
 * until the next call on it.  ferry_errstr(NULL) is "out of memory". */
const char *ferry_errstr(const struct ferry *f);

/* Broker code (enum fy_code) of the most recent broker error, or 0. */
int ferry_last_code(const struct ferry *f);

/* From WELCOME: server version string (owned by the handle; "" before
 * the handshake), largest frame and largest message body in bytes. */
const char *ferry_server(const struct ferry *f);
size_t ferry_max_frame(const struct ferry *f);
size_t ferry_max_msg(const struct ferry *f);

/*
 * Write everything buffered (fire-and-forget publishes, acks, ...).
 * Returns 0, FERRY_ETIMEOUT (the rest stays buffered) or a fatal error.
 * Any frames that arrive meanwhile are buffered for later calls.
 */
int ferry_flush(struct ferry *f);

/* Round trip: flush, then wait (I/O timeout) for the broker's answer.
 * Since the broker handles requests in order, a successful ping means it
 * has handled everything sent before it. */
int ferry_ping(struct ferry *f);

/*
 * Pop the oldest queued asynchronous error into *e (see ERRORS above).
 * Does no I/O.  Returns 1 if one was popped, 0 if the queue is empty.
 */
int ferry_poll_error(struct ferry *f, struct ferry_async_error *e);

/* --- Reconnecting ------------------------------------------------------ */

/* What a reconnect did, passed to a ferry_reconnect_fn. */
struct ferry_reconnect_info {
	int err;		/* 0: reconnected; else the handle gave up and
				   this is its (fatal) error */
	int cause;		/* the connection error that started it */
	unsigned attempts;	/* connection attempts made */
	uint64_t elapsed_ms;	/* from the loss to now */
	size_t resent;		/* confirmed publish requests sent again */
	size_t resubscribed;	/* subscriptions established again */
	size_t lost_subs;	/* subscriptions the broker refused again
				   (each also queued as an async error with
				   its sid) */
	size_t dropped;		/* buffered deliveries discarded (stale) */
};

/*
 * Called after each reconnect (or when the handle gives up), inside the
 * ferry_* call that noticed the loss; it must not call ferry_* functions
 * on the handle.  *i is valid until it returns.
 */
typedef void ferry_reconnect_fn(void *arg, const struct ferry_reconnect_info *i);

struct ferry_reconnect_opts {
	unsigned max_attempts;	/* per outage; 0 = no limit (then set
				   max_time_ms) */
	unsigned max_time_ms;	/* per outage; 0 = no limit */
	unsigned base_ms;	/* first backoff; 0 = 100 */
	unsigned max_backoff_ms; /* backoff cap; 0 = 5000 */
	ferry_reconnect_fn *fn;	/* NULL = no callback */
	void *arg;		/* passed to fn; not owned */
};

/*
 * Opt in (o != NULL) or out (NULL) of automatic reconnection.  Copies *o.
 * Returns 0, or FERRY_EINVAL if both limits are 0.
 *
 * When the connection is lost (FERRY_EIO, FERRY_ECLOSED, FERRY_EBADREPLY,
 * a broker shutting down; not a frame the broker refused as too big), the
 * ferry_* call that notices it reconnects at once, to the same host and
 * port with the same client name, retrying after base_ms * 2^(n-1) (capped
 * at max_backoff_ms) with "full jitter" (a uniformly random wait in
 * [0, backoff]), until max_attempts or max_time_ms are used up.  That call
 * blocks meanwhile.  Once connected it:
 *
 *  - subscribes again, in order, with the same options, every
 *    subscription of the handle.  The sid a subscription returned stays
 *    valid for ferry_unsubscribe(), but deliveries after the reconnect
 *    carry a different m->sid value (the handle's reconnect count in its
 *    upper 32 bits).  Deliveries from before the reconnect, whether still
 *    buffered (discarded) or already returned by ferry_next(), are
 *    stale: the broker has put them back and redelivers them with a higher
 *    attempt.  Settling one returns FERRY_ESTALE at once, without reaching
 *    the broker (the broker's lease tokens restart with each connection,
 *    so an old token could otherwise settle a new delivery).  An
 *    ephemeral subscription gets a new, empty private group: what was
 *    published to the old one meanwhile is lost.
 *  - sends again every confirmed publish (ferry_publish_sync(),
 *    ferry_publish_pipelined(), confirmed batches) not yet answered, with
 *    the same request ids, message ids and producer sequence numbers, so
 *    the broker recognises those it had stored (see ferry_set_producer();
 *    without a producer id or a message id, such a publish may be enqueued
 *    twice).  Their confirms and callbacks follow as usual.
 *  - fails other requests that were waiting (subscribe, stats, ...) with
 *    FERRY_ECLOSED as a request error (ferry_err() stays 0): they may or
 *    may not have been carried out.  Fire-and-forget frames (publishes,
 *    acks, nacks, touches) buffered or in flight are lost.
 *
 * Then the reconnect callback runs and the call goes on.  If the limits
 * are used up, the handle fails as without reconnection (the callback
 * gets the error).  Keeping unanswered publishes costs one copy of each
 * frame until it is confirmed.
 */
int ferry_set_reconnect(struct ferry *f, const struct ferry_reconnect_opts *o);

/* Successful reconnects of the handle so far. */
uint64_t ferry_reconnects(const struct ferry *f);

/* --- Publishing --------------------------------------------------------- */

/*
 * Idempotent producer.  With pid set (<= 64 bytes, copied; NULL turns it
 * off), every confirmed publish of the handle (ferry_publish_sync(),
 * ferry_publish_pipelined(), each message of a confirmed batch) carries
 * pid and a sequence number one above the previous one, starting at
 * first_seq.  The broker durably keeps each producer's highest stored
 * sequence and confirms any publish at or below it as a duplicate without
 * enqueueing it, so retries after a reconnect or a broker restart never
 * enqueue twice.  first_seq 0 starts at the current time in microseconds
 * since the epoch, so a restarted process using the same pid continues
 * above its earlier numbers (if it published less than one message per
 * microsecond on average and the clock did not step back); pass the next
 * number yourself if you persist it.  Fire-and-forget publishes carry no
 * sequence.  Returns 0 or FERRY_EINVAL.
 */
int ferry_set_producer(struct ferry *f, const char *pid, uint64_t first_seq);

/* The sequence number the next confirmed publish will carry (0 if no
 * producer id is set). */
uint64_t ferry_producer_seq(const struct ferry *f);


/*
 * Fire-and-forget: encode the message into the handle's write buffer (see
 * OUTPUT BUFFERING).  No answer comes unless the broker refuses it (an
 * async error).  No allocation once the buffers have grown.  o may be
 * NULL.  Returns 0, FERRY_EINVAL, FERRY_EBADNAME (checked locally),
 * FERRY_EMSGSIZE (body above the broker's max_msg), FERRY_ENOMEM, or a
 * fatal error (from writing out a full buffer).
 */
int ferry_publish(struct ferry *f, const char *topic, const void *body,
    size_t len, const struct ferry_pub_opts *o);

/*
 * Confirmed publish: send, and wait (I/O timeout) until the broker has
 * stored the message.  If id is not NULL, the message id (the broker's
 * UUID, or o->id) is copied there as a NUL-terminated string; the caller's
 * buffer must hold FERRY_ID_MAX + 1 bytes.  Returns 0 or an error
 * (FERRY_EFULL, FERRY_EDISK, FERRY_ETIMEOUT, ...).
 */
int ferry_publish_sync(struct ferry *f, const char *topic, const void *body,
    size_t len, const struct ferry_pub_opts *o, char *id);

/*
 * Pipelined confirmed publish: buffer the message with a fresh request id
 * (stored in *rid if rid is not NULL) and return without waiting.  The
 * broker's answer is collected by any later call that reads from the
 * connection, counted for ferry_wait_confirms() and passed to the confirm
 * callback, if one is set.  Returns as ferry_publish().
 */
int ferry_publish_pipelined(struct ferry *f, const char *topic,
    const void *body, size_t len, const struct ferry_pub_opts *o,
    uint64_t *rid);

/*
 * Batch publish: n messages in as few PUB frames as fit in the broker's
 * max_frame (each frame is validated atomically by the broker: one bad
 * message refuses its whole frame).  flags 0 = fire-and-forget;
 * FERRY_CONFIRM = pipelined, each frame gets a request id counted (in
 * messages) by ferry_wait_confirms() and the callback; call
 * ferry_wait_confirms(f, 0, ...) to wait for all of them.  The confirm
 * callback runs once per frame with msgs[c->first, c->first + c->nmsgs)
 * as its messages, so a batch refused part way (a group filling up:
 * FERRY_EFULL) says which messages were stored.  Returns 0,
 * FERRY_EINVAL / FERRY_EMSGSIZE (checked for all n before anything is
 * buffered), FERRY_ENOMEM, or a fatal error.
 */
#define FERRY_CONFIRM 1
int ferry_publish_batch(struct ferry *f, const char *topic,
    const struct ferry_pub_msg *msgs, size_t n, int flags);

/*
 * Wait until at most max_pending pipelined messages remain unconfirmed
 * (0 = all answered), flushing first.  timeout_ms < 0 waits forever.
 * Fills *out (if not NULL) with the counts since the previous call, and
 * resets them.  Returns 0 when the target is reached, even if some
 * publishes failed (see out->failed), FERRY_ETIMEOUT, or a fatal error.
 */
int ferry_wait_confirms(struct ferry *f, size_t max_pending, int timeout_ms,
    struct ferry_confirms *out);

/* Of the messages of the latest ferry_publish_sync() that succeeded, how
 * many the broker reported as duplicates (not enqueued again). */
size_t ferry_last_dups(const struct ferry *f);

/* Messages published with a pipelined request still awaiting an answer. */
size_t ferry_pending(const struct ferry *f);

/* Install (fn != NULL) or remove the confirm callback.  arg is passed
 * through; the library does not own it. */
void ferry_set_confirm_cb(struct ferry *f, ferry_confirm_fn *fn, void *arg);

/* --- Consuming ---------------------------------------------------------- */

/*
 * Subscribe to topic (wait for the broker's answer, I/O timeout).  o may
 * be NULL; its strings are copied (the handle keeps the options to
 * subscribe again after a reconnect).  *sid receives the subscription id,
 * used by ack and unsubscribe and found in each message.  Sids are the
 * handle's own, never reused within it; after a reconnect, deliveries of
 * the same subscription carry a different sid (see ferry_set_reconnect()).
 * Returns 0, FERRY_EBADNAME, FERRY_EBADARG, FERRY_ELIMIT, FERRY_ETIMEOUT,
 * FERRY_EINVAL (bad mode or overflow), ...
 */
int ferry_subscribe(struct ferry *f, const char *topic,
    const struct ferry_sub_opts *o, uint64_t *sid);

/*
 * End a subscription (waits for the answer).  Its unacked deliveries,
 * including those buffered in the handle and not yet returned by
 * ferry_next() (these are discarded), go back to the group.  Returns 0,
 * FERRY_ENOSUB, ...
 */
int ferry_unsubscribe(struct ferry *f, uint64_t sid);

/*
 * Next delivered message, from any subscription of the handle, waiting up
 * to timeout_ms (-1 forever, 0 = only what has arrived).  Flushes first.
 * On success *m is a message the caller frees with ferry_msg_free().
 * Otherwise *m is NULL and the return is FERRY_ETIMEOUT, a fatal error, or
 * a queued async error (FERRY_ESTALE, FERRY_EDELETED, ...; see ERRORS),
 * which is popped: its text is in ferry_errstr(), the handle stays usable.
 */
int ferry_next(struct ferry *f, int timeout_ms, struct ferry_msg **m);

/* Free a message from ferry_next().  NULL is a no-op. */
void ferry_msg_free(struct ferry_msg *m);

/*
 * Settle a delivery: ack removes the message; nack requeues it, not before
 * delay_ms (or after the broker's exponential backoff if delay_ms < 0),
 * recording error (NULL = none; kept up to 1024 bytes) in its history;
 * touch extends the lease by the group's ack timeout.
 *
 * flags 0: buffered, fire-and-forget; a refusal (e.g. the lease went stale)
 * comes back as an async error.  flags FERRY_CONFIRM: sent at once, and the
 * call waits (I/O timeout) for the answer: 0, FERRY_ESTALE, FERRY_ENOSUB,
 * FERRY_EMODE, FERRY_ETIMEOUT, ...  A delivery made before a reconnect
 * returns FERRY_ESTALE at once, whatever the flags.
 */
int ferry_ack(struct ferry *f, uint64_t sid, uint64_t lease, int flags);
int ferry_nack(struct ferry *f, uint64_t sid, uint64_t lease,
    int64_t delay_ms, const char *error, int flags);
int ferry_touch(struct ferry *f, uint64_t sid, uint64_t lease, int flags);

/* --- Request-reply -------------------------------------------------------- */

/*
 * Send a request and wait up to timeout_ms (< 0: forever) for its reply.
 * On the first request the handle subscribes to a private inbox topic
 * "_inbox.<uuid>" (ephemeral, at-most-once; it counts among the handle's
 * subscriptions but its deliveries never reach ferry_next()).  The
 * request is published confirmed, with o's options (o may be NULL) plus
 * reply_to = the inbox, a fresh corr (o->reply_to and o->corr are
 * ignored) and mandatory.  Replies to earlier requests that arrive late
 * are discarded.
 *
 * On success *reply is the reply, owned by the caller (ferry_msg_free()).
 * Otherwise *reply is NULL and the return is FERRY_ENOSUBSCRIBERS (at once:
 * nobody subscribes to topic; nothing was stored), FERRY_ETIMEOUT (no
 * reply in time; the request may still be handled), another publish error,
 * or a fatal error.
 */
int ferry_request(struct ferry *f, const char *topic, const void *body,
    size_t len, const struct ferry_pub_opts *o, int timeout_ms,
    struct ferry_msg **reply);

/*
 * Reply to a request received with ferry_next(): publish body to
 * request->reply_to with request->corr, confirmed and mandatory.  Does not
 * settle the request: ack it afterwards.  Returns 0, FERRY_EINVAL (the
 * message has no reply_to), FERRY_ENOSUBSCRIBERS (the requester is gone:
 * nothing was stored), or a publish error.
 */
int ferry_reply(struct ferry *f, const struct ferry_msg *request,
    const void *body, size_t len);

/* --- Inspection ------------------------------------------------------------ */

/* Counters of one group, or of a topic's backlog (group ""). */
struct ferry_group_stats {
	const char *topic;
	const char *group;	/* "" = the topic's backlog, held while it
				   has no group */
	uint64_t ready;		/* waiting for a member */
	uint64_t delayed;	/* waiting for a delay or a backoff */
	uint64_t inflight;	/* delivered, not yet acked */
	uint64_t bytes;		/* body bytes held */
	uint64_t members;	/* connected subscriptions */
	uint64_t enqueued;	/* messages ever added */
	uint64_t delivered;	/* deliveries, redeliveries included */
	uint64_t acked;
	uint64_t timeouts;	/* leases that ran out */
	uint64_t nacked;
	uint64_t disconnected;	/* put back because a member left */
	uint64_t released;	/* put back without fault (unsubscribe) */
	uint64_t expired;	/* TTL ran out */
	uint64_t dead_lettered;
	uint64_t age_ms;	/* since the oldest ready message was
				   published; 0 if none is ready */
	uint64_t dropped;	/* removed undelivered, not dead-lettered */
	uint64_t slow;		/* of those, dropped because an ephemeral
				   group passed ephemeral_max_bytes */
};

/* The broker as a whole (ferry_stats_broker()). */
struct ferry_broker_stats {
	uint64_t conns;		/* client connections open */
	uint64_t topics;
	uint64_t groups;	/* ephemeral included */
	uint64_t ready;		/* over every group and topic backlog */
	uint64_t delayed;
	uint64_t inflight;
	uint64_t bytes;		/* body bytes held */
	uint64_t published;	/* messages published, all topics */
	uint64_t delivered;	/* over every group */
	uint64_t acked;
	uint64_t bytes_in;	/* frame bytes the broker received */
	uint64_t bytes_out;	/* bytes it sent */
	uint64_t journal_bytes;	/* its journal's files */
	uint64_t uptime_ms;
	uint64_t paged;		/* messages whose body is only in the
				   journal (past max_memory) */
	uint64_t paged_bytes;	/* their body bytes */
	uint64_t paged_reads;	/* bodies read back from the journal */
	uint64_t producers;	/* idempotent producers it remembers (each
				   until producer_ttl after its last stored
				   publish) */
};

/* One outstanding delivery of a group. */
struct ferry_lease_info {
	const char *id;		/* message id */
	const char *consumer;	/* client name of the member holding it */
	uint64_t age_ms;	/* since it was delivered */
	uint32_t attempt;
	const char *error;	/* its latest nack error, "" if none */
};

/* One step of a message's life, as the broker recorded it. */
struct ferry_event {
	uint64_t at_ms;		/* unix time, ms */
	const char *what;	/* published, duplicate, delivered, acked,
				   nacked, timeout, disconnected, released,
				   expired, dead-lettered, dropped */
	const char *topic;
	const char *group;	/* "" for published */
	const char *consumer;	/* "" if none */
	uint32_t attempt;
	const char *error;	/* "" if none */
};

/*
 * Inspection requests: each waits (I/O timeout) for the broker's answer.
 * On success *rows points to an array of *n rows allocated as ONE block
 * with every string in it, owned by the caller and freed with the
 * matching ferry_*_free() (NULL is a no-op); *rows may be NULL when *n is
 * 0.  On failure *rows is NULL and *n is 0.  Strings are NUL-terminated.
 *
 * ferry_stats(): every group of topic, and the topic's backlog as a row
 * with group "" (topic NULL or "": every topic).  Returns 0 (with no rows
 * for a topic that does not exist), FERRY_EBADNAME, ...
 *
 * ferry_inflight(): the outstanding deliveries of group (NULL or "" =
 * "default") of topic.  FERRY_ENOTFOUND if there is no such group.
 *
 * ferry_trace(): what the broker remembers about message id, oldest
 * first, from a bounded in-memory ring (not kept across restarts).
 * FERRY_ENOTFOUND if it knows nothing about it.
 */
int ferry_stats(struct ferry *f, const char *topic,
    struct ferry_group_stats **rows, size_t *n);
void ferry_stats_free(struct ferry_group_stats *rows);
/*
 * The broker-wide figures into *bs (a STATS without a topic).
 * FERRY_EBROKER if the broker does not report them (an older ferryd).
 */
int ferry_stats_broker(struct ferry *f, struct ferry_broker_stats *bs);
int ferry_inflight(struct ferry *f, const char *topic, const char *group,
    struct ferry_lease_info **rows, size_t *n);
void ferry_inflight_free(struct ferry_lease_info *rows);
int ferry_trace(struct ferry *f, const char *id, struct ferry_event **rows,
    size_t *n);
void ferry_trace_free(struct ferry_event *rows);

/*
 * The head of group (NULL or "" = "default") of topic, the message that
 * would be delivered next (first ready, else the earliest delayed),
 * without taking it: *m is a copy the caller frees with ferry_msg_free(),
 * with sid and lease 0 (it cannot be settled).  Returns 0,
 * FERRY_ENOTFOUND (no such group, or it holds nothing), ...
 */
int ferry_peek(struct ferry *f, const char *topic, const char *group,
    struct ferry_msg **m);

/* --- Administration ------------------------------------------------------ */

/*
 * Delete group (with its queue; its members' subscriptions end with
 * FERRY_EDELETED) of topic, or with group NULL or "" the whole topic and
 * all its groups.  Waits for the answer: 0, FERRY_ENOTFOUND, ...
 */
int ferry_delete(struct ferry *f, const char *topic, const char *group);

/* --- Asynchronous API (libevent) ------------------------------------------ */

/*
 * The asynchronous client: one handle (struct ferry_async) is one
 * connection driven by the caller's libevent event_base.  No call blocks
 * (except resolving a host name that is not an address, with
 * getaddrinfo()); each request that has an answer names a callback that
 * runs from the event loop when it comes.  The handle must be used from
 * the thread that runs its event_base.  Programs include
 * <event2/event.h> themselves and link with libevent too
 * (pkg-config --cflags --libs ferry libevent).
 *
 * Typical worker:
 *
 *	static void on_msg(struct ferry_async *a, const struct ferry_msg *m,
 *	    void *arg)
 *	{
 *		work(m->body, m->len);
 *		ferry_async_ack(a, m->sid, m->lease, NULL, NULL);
 *	}
 *	...
 *	a = ferry_async_connect(base, "127.0.0.1", 4470, &opts);
 *	ferry_async_subscribe(a, "orders", NULL, on_msg, NULL, NULL, &sid);
 *	event_base_dispatch(base);
 *
 * CALLBACKS
 *
 * Every callback gets the handle and the arg given with it.  It may call
 * any ferry_async_* function on the handle, ferry_async_free() included:
 * inside a callback the handle is only marked, and freed once the library
 * is back in the event loop (never inside its own callback).  Every
 * request callback runs exactly once: with the answer, or with an error
 * when the connection fails, the handle is freed (FERRY_ECLOSED) or, for
 * requests, the timeout passes.  Messages (struct ferry_msg) and other
 * structures passed to callbacks are owned by the library and valid until
 * the callback returns; ferry_msg_dup() keeps a message.
 *
 * ERRORS
 *
 * Calls return FERRY_OK or a negative FERRY_E* code, as in the blocking
 * API: a bad argument (FERRY_EINVAL, FERRY_EBADNAME, FERRY_EMSGSIZE: the
 * request was not made and its callback will not run), FERRY_ENOMEM, or
 * the handle's fatal error once it has failed (FERRY_ECLOSED once
 * ferry_async_free() was called).  The broker's answers come to the
 * callbacks as FERRY_OK or the negated broker code.  Asynchronous errors
 * (a refused fire-and-forget request, a subscription ended by
 * FERRY_EDELETED, a subscription the broker refused again after a
 * reconnect) go to the error callback of the options, if any.
 *
 * RECONNECTING
 *
 * With reconnect options, a lost connection (and a failed first one) is
 * retried with exponential backoff and full jitter, as ferry_set_reconnect()
 * describes, without blocking: the status callback is told
 * FERRY_ASYNC_DISCONNECTED, then FERRY_ASYNC_RECONNECTED once the handle is
 * back, or FERRY_ASYNC_FAILED when the limits are used up.  On reconnect
 * the subscriptions are made again (deliveries then carry new sids;
 * settling an older delivery returns FERRY_ESTALE) and every confirmed
 * publish not yet confirmed is sent again with its request id, message id
 * and producer sequence; with ferry_async_set_producer() (or message ids)
 * the broker confirms those it had already stored as duplicates without
 * enqueueing them twice.  Other requests still waiting fail with
 * FERRY_ECLOSED (they may or may not have been carried out);
 * fire-and-forget frames not yet written are lost.  Confirmed publishes
 * made while disconnected wait for the next connection; other requests
 * made then fail with FERRY_ECLOSED once it is up.
 */
struct event_base;
struct ferry_async;

enum ferry_async_status {
	FERRY_ASYNC_CONNECTED = 1,	/* first handshake done */
	FERRY_ASYNC_DISCONNECTED = 2,	/* connection lost: reconnecting */
	FERRY_ASYNC_RECONNECTED = 3,	/* back: subscriptions and
					   unconfirmed publishes sent again
					   (a subscription refused again
					   comes to the error callback) */
	FERRY_ASYNC_FAILED = 4,		/* dead (ferry_async_err() says
					   why): only ferry_async_free() is
					   useful; every waiting callback has
					   been called with the error */
};

/* A delivery of a subscription: m->sid and m->lease settle it. */
typedef void ferry_async_msg_fn(struct ferry_async *a,
    const struct ferry_msg *m, void *arg);
/* The answer to a confirmed publish: c->err is 0 once it is stored. */
typedef void ferry_async_confirm_fn(struct ferry_async *a,
    const struct ferry_confirm *c, void *arg);
/* The answer to any other request: 0 or a FERRY_E* code. */
typedef void ferry_async_done_fn(struct ferry_async *a, int err, void *arg);
/* A request's reply (err 0, reply set) or its failure (reply NULL). */
typedef void ferry_async_reply_fn(struct ferry_async *a, int err,
    const struct ferry_msg *reply, void *arg);
/* A change of the connection (enum ferry_async_status). */
typedef void ferry_async_status_fn(struct ferry_async *a, int status,
    void *arg);
/* An asynchronous error (see ERRORS above); *e is valid until return. */
typedef void ferry_async_error_fn(struct ferry_async *a,
    const struct ferry_async_error *e, void *arg);

/*
 * Options of an async handle.  NULL, or a zeroed struct, means defaults.
 */
struct ferry_async_opts {
	const char *name;	/* client name; NULL = "libferry" */
	int timeout_ms;		/* bound on each connect and handshake;
				   0 = 5000 */
	const struct ferry_reconnect_opts *reconnect; /* copied; NULL = a
				   lost connection is fatal.  Its fn, if set,
				   is called as for ferry_set_reconnect() */
	ferry_async_status_fn *on_status;	/* or NULL */
	ferry_async_error_fn *on_error;		/* or NULL */
	void *arg;		/* passed to on_status and on_error */
	/* Login and TLS as for ferry_connect_opts(): user, the password's
	 * source, tls and its files, and url (but not $FERRY_URL), which
	 * gives the host, port, user and TLS that ferry_async_connect()'s
	 * arguments and user leave unset (host NULL, port 0).  Its host,
	 * port, timeout_ms and name are not read.  NULL: anonymous, plain
	 * TCP. */
	const struct ferry_opts *login;
};

/*
 * Start connecting to host:port on base (borrowed: it must outlive the
 * handle).  host NULL: login->url's, else "127.0.0.1"; port 0:
 * login->url's, else 4470 (4471 with TLS).  Returns at once: the
 * handshake completes in the event loop (FERRY_ASYNC_CONNECTED); requests
 * made before are sent after it.  Returns NULL when out of memory; on a
 * bad argument (port, name, login) a handle whose ferry_async_err() says
 * why (FERRY_EINVAL), to be freed.
 * The caller frees the handle with ferry_async_free().
 */
struct ferry_async *ferry_async_connect(struct event_base *base,
    const char *host, int port, const struct ferry_async_opts *o);

/*
 * Free the handle: close the connection and call every waiting callback
 * with FERRY_ECLOSED (unwritten output is dropped: wait for a ping's
 * answer first to be sure the broker has everything).  Inside a callback
 * of the handle, it is only marked: no delivery, status or error callback
 * runs any more, and it is freed when that callback returns.  NULL is a
 * no-op.
 */
void ferry_async_free(struct ferry_async *a);

/* The fatal error of the handle, 0 while it is usable (also while
 * reconnecting).  ferry_async_errstr() describes the most recent error;
 * owned by the handle. */
int ferry_async_err(const struct ferry_async *a);
const char *ferry_async_errstr(const struct ferry_async *a);

/* Successful reconnects so far. */
uint64_t ferry_async_reconnects(const struct ferry_async *a);

/*
 * Bytes of requests not yet written to the socket.  Nothing bounds them
 * but memory: the loop writes them as fast as the broker reads, so a
 * producer publishing fire-and-forget faster than that should publish in
 * batches and wait (let the loop run) while this is above a limit of its
 * choosing.  Confirmed publishes are bounded by keeping a window of them
 * unconfirmed instead.
 */
size_t ferry_async_buffered(const struct ferry_async *a);

/* Idempotent producer, as ferry_set_producer(): every confirmed publish
 * of the handle carries pid and the next sequence number. */
int ferry_async_set_producer(struct ferry_async *a, const char *pid,
    uint64_t first_seq);

/*
 * Publish.  fn NULL: fire-and-forget (refusals come to the error
 * callback).  fn set: confirmed; fn runs once with the broker's answer
 * (c->err 0 and c->id set once stored, c->dups 1 for a duplicate), or
 * with the error that ended the wait.  o as for ferry_publish().  Returns
 * 0, FERRY_EINVAL, FERRY_EBADNAME, FERRY_EMSGSIZE, FERRY_ENOMEM, or the
 * handle's fatal error (then fn will not run).
 *
 * Retrying: a publish whose connection was lost is sent again by the
 * library (see RECONNECTING).  One the broker refused is the caller's to
 * retry; calling this again gives it a new producer sequence.  That is
 * right after FERRY_EFULL or FERRY_ENOSUBSCRIBERS (nothing was stored).
 * After FERRY_EDISK or FERRY_EINTERNAL the first attempt may have been
 * stored: give such messages their own id (o->id), so that the broker
 * recognises the retry within its dedup window (PROTOCOL.md, section 8,
 * Duplicates).
 */
int ferry_async_publish(struct ferry_async *a, const char *topic,
    const void *body, size_t len, const struct ferry_pub_opts *o,
    ferry_async_confirm_fn *fn, void *arg);

/*
 * Subscribe: deliveries go to msg_fn (not NULL) with arg; done (or NULL)
 * runs with arg once the broker has answered (0, FERRY_EBADNAME,
 * FERRY_ELIMIT, ...); deliveries follow a successful answer.  *sid (if
 * not NULL) gets the subscription id, for ferry_async_unsubscribe().  o as
 * for ferry_subscribe().  Returns 0 or an error (no callback will run).
 */
int ferry_async_subscribe(struct ferry_async *a, const char *topic,
    const struct ferry_sub_opts *o, ferry_async_msg_fn *msg_fn,
    ferry_async_done_fn *done, void *arg, uint64_t *sid);

/* End a subscription; done (or NULL) gets the answer.  Deliveries still
 * queued for it are not passed on. */
int ferry_async_unsubscribe(struct ferry_async *a, uint64_t sid,
    ferry_async_done_fn *done, void *arg);

/*
 * Settle a delivery, as ferry_ack(), ferry_nack() and ferry_touch().
 * done NULL: fire-and-forget (acks are batched); a refusal comes to the
 * error callback.  done set: confirmed, done gets the answer (0,
 * FERRY_ESTALE, ...).  A delivery from before a reconnect returns
 * FERRY_ESTALE at once (done does not run).
 */
int ferry_async_ack(struct ferry_async *a, uint64_t sid, uint64_t lease,
    ferry_async_done_fn *done, void *arg);
int ferry_async_nack(struct ferry_async *a, uint64_t sid, uint64_t lease,
    int64_t delay_ms, const char *error, ferry_async_done_fn *done,
    void *arg);
int ferry_async_touch(struct ferry_async *a, uint64_t sid, uint64_t lease,
    ferry_async_done_fn *done, void *arg);

/*
 * Request-reply, as ferry_request(): the first request subscribes to the
 * handle's inbox; the request is published confirmed and mandatory with a
 * fresh correlation id.  fn runs once: with the reply (err 0), or with
 * FERRY_ENOSUBSCRIBERS (nobody subscribes to topic), FERRY_ETIMEOUT (no
 * reply within timeout_ms; < 0 = no limit), another publish error, or the
 * connection's error.  Returns 0 or an error (fn will not run).
 */
int ferry_async_request(struct ferry_async *a, const char *topic,
    const void *body, size_t len, const struct ferry_pub_opts *o,
    int timeout_ms, ferry_async_reply_fn *fn, void *arg);

/* Reply to a request delivery, as ferry_reply(): a confirmed, mandatory
 * publish to request->reply_to with its corr; fn gets the confirm
 * (FERRY_ENOSUBSCRIBERS: the requester is gone).  Does not settle it. */
int ferry_async_reply(struct ferry_async *a, const struct ferry_msg *request,
    const void *body, size_t len, ferry_async_confirm_fn *fn, void *arg);

/*
 * Batch publish, as ferry_publish_batch(): msgs[0..n) in as few PUB frames
 * as fit the broker's max_frame (learnt at the handshake: connect first),
 * each stored or refused as a whole by the broker.  fn NULL:
 * fire-and-forget (refusals come to the error callback).  fn set:
 * confirmed; fn runs once per frame, with msgs[c->first, c->first +
 * c->nmsgs) as that frame's messages and c->err its outcome, so a batch
 * the broker refuses part way (a group filling up: FERRY_EFULL) says
 * which messages were stored; the frames' callbacks together cover all
 * n.  Returns 0; FERRY_EINVAL, FERRY_EBADNAME or FERRY_EMSGSIZE (a body
 * above max_msg: checked for all n before anything is sent, and fn will
 * not run); or FERRY_ENOMEM part way, when fn runs only for the frames
 * made before.  Retrying is as for ferry_async_publish().
 */
int ferry_async_publish_batch(struct ferry_async *a, const char *topic,
    const struct ferry_pub_msg *msgs, size_t n, ferry_async_confirm_fn *fn,
    void *arg);

/*
 * Inspection, as the blocking calls of the same names: fn (not NULL) runs
 * once with arg, with err 0 and the answer, or with the broker's refusal
 * (FERRY_ENOTFOUND: no such group, nothing to peek at, an unknown
 * message; FERRY_EDENIED; ...; and FERRY_EBROKER for broker figures an
 * older ferryd does not report) or the connection's error, the answer
 * then NULL and 0 rows.  The
 * answer is the library's, valid until fn returns: copy what you keep
 * (ferry_msg_dup() for peek's message, which has sid and lease 0).
 * Returns 0, FERRY_EINVAL (fn NULL, a bad id), FERRY_EBADNAME,
 * FERRY_ENOMEM, or the handle's fatal error (then fn will not run).
 */
typedef void ferry_async_stats_fn(struct ferry_async *a, int err,
    const struct ferry_group_stats *rows, size_t n, void *arg);
typedef void ferry_async_broker_stats_fn(struct ferry_async *a, int err,
    const struct ferry_broker_stats *bs, void *arg);
typedef void ferry_async_inflight_fn(struct ferry_async *a, int err,
    const struct ferry_lease_info *rows, size_t n, void *arg);
typedef void ferry_async_trace_fn(struct ferry_async *a, int err,
    const struct ferry_event *rows, size_t n, void *arg);
typedef void ferry_async_peek_fn(struct ferry_async *a, int err,
    const struct ferry_msg *m, void *arg);

/* Every group of topic and its backlog row (topic NULL or "": every
 * topic), as ferry_stats(). */
int ferry_async_stats(struct ferry_async *a, const char *topic,
    ferry_async_stats_fn *fn, void *arg);
/* The broker-wide figures, as ferry_stats_broker(). */
int ferry_async_stats_broker(struct ferry_async *a,
    ferry_async_broker_stats_fn *fn, void *arg);
/* The outstanding deliveries of group (NULL or "" = "default") of topic,
 * as ferry_inflight(). */
int ferry_async_inflight(struct ferry_async *a, const char *topic,
    const char *group, ferry_async_inflight_fn *fn, void *arg);
/* What the broker remembers of message id, as ferry_trace(). */
int ferry_async_trace(struct ferry_async *a, const char *id,
    ferry_async_trace_fn *fn, void *arg);
/* The next message of group (NULL or "" = "default") of topic, without
 * taking it, as ferry_peek(). */
int ferry_async_peek(struct ferry_async *a, const char *topic,
    const char *group, ferry_async_peek_fn *fn, void *arg);

/*
 * Delete group (NULL or "" = the whole topic and all its groups) of topic,
 * as ferry_delete(): the group's queue goes with it, and its members'
 * subscriptions end with FERRY_EDELETED (to the error callback, for this
 * handle's own).  done (or NULL) runs once with the answer: 0,
 * FERRY_ENOTFOUND (no such topic or group), FERRY_EDENIED, ..., or the
 * connection's error.  Returns 0, FERRY_EINVAL (topic NULL),
 * FERRY_EBADNAME, FERRY_ENOMEM, or the handle's fatal error (then done
 * will not run).
 */
int ferry_async_delete(struct ferry_async *a, const char *topic,
    const char *group, ferry_async_done_fn *done, void *arg);

/* Round trip: done runs once the broker has handled everything sent
 * before (0), or with the connection's error. */
int ferry_async_ping(struct ferry_async *a, ferry_async_done_fn *done,
    void *arg);

/* A copy of m that the caller owns and frees with ferry_msg_free(), or
 * NULL when out of memory.  Works on any message, from either API. */
struct ferry_msg *ferry_msg_dup(const struct ferry_msg *m);

#ifdef __cplusplus
}
#endif

#endif
