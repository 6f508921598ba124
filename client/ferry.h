/*
 * ferry.h - libferry, the blocking C client of the ferry message broker.
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
 *    still unconfirmed are reported as failed with this code.
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
 * subscription whose group is deleted with such a frame (FERRY_EDELETED).
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
 * ferry_flush().  Only when 4 MiB are still unwritten does a call block
 * (I/O timeout) until the broker catches up.
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
 * FERRY_EDISK, FERRY_EINTERNAL, FERRY_ESHUTDOWN, FERRY_ETIMEOUT (which
 * may mean the first attempt was carried out: publish with an id). */
int ferry_retryable(int err);

/* Static text for any FERRY_E* code ("stale lease", ...). */
const char *ferry_strerror(int err);

/* A string header: NUL-terminated key and value. */
struct ferry_header {
	const char *key;
	const char *value;
};

/* Options of one published message.  NULL means all defaults. */
struct ferry_pub_opts {
	const char *id;		/* producer-supplied message id (<=
				   FERRY_ID_MAX bytes) for dedup, or NULL
				   for a broker-generated UUID */
	const struct ferry_header *hdr;	/* nhdr headers, or NULL */
	size_t nhdr;
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

/* Options of a subscription.  NULL, or a zeroed struct, means defaults. */
struct ferry_sub_opts {
	const char *group;	/* group name; NULL or "" = "default" */
	uint32_t prefetch;	/* max unacked deliveries; 0 = broker's (16) */
	int mode;		/* enum ferry_mode */
	uint32_t ack_timeout_ms; /* lease length; 0 = the group's */
	uint32_t max_attempts;	/* before dead-lettering; 0 = the group's */
	int ephemeral;		/* 1 = private group, deleted with the
				   subscription; group is ignored */
};

/* One entry of a dead-lettered message's history. */
struct ferry_hist {
	const char *cause;	/* "expired" | "nacked" | "released" */
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
};

/* An asynchronous error popped by ferry_poll_error(). */
struct ferry_async_error {
	int err;		/* FERRY_E* code (negated broker code) */
	int code;		/* the broker's code */
	uint64_t sid;		/* subscription ended (FERRY_EDELETED), or 0 */
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
	const char *id;		/* id of its first message ("" on error) */
	const char *errmsg;	/* error text, "" when err == 0 */
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

/* --- Publishing --------------------------------------------------------- */

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
 * ferry_wait_confirms(f, 0, ...) to wait for all of them.  Returns 0,
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

/* Messages published with a pipelined request still awaiting an answer. */
size_t ferry_pending(const struct ferry *f);

/* Install (fn != NULL) or remove the confirm callback.  arg is passed
 * through; the library does not own it. */
void ferry_set_confirm_cb(struct ferry *f, ferry_confirm_fn *fn, void *arg);

/* --- Consuming ---------------------------------------------------------- */

/*
 * Subscribe to topic (wait for the broker's answer, I/O timeout).  o may
 * be NULL.  *sid receives the subscription id, used by ack and unsubscribe
 * and found in each message.  Returns 0, FERRY_EBADNAME, FERRY_EBADARG,
 * FERRY_ELIMIT, FERRY_ETIMEOUT, ...
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
 * FERRY_EMODE, FERRY_ETIMEOUT, ...
 */
int ferry_ack(struct ferry *f, uint64_t sid, uint64_t lease, int flags);
int ferry_nack(struct ferry *f, uint64_t sid, uint64_t lease,
    int64_t delay_ms, const char *error, int flags);
int ferry_touch(struct ferry *f, uint64_t sid, uint64_t lease, int flags);

/* --- Administration ------------------------------------------------------ */

/*
 * Delete group (with its queue; its members' subscriptions end with
 * FERRY_EDELETED) of topic, or with group NULL or "" the whole topic and
 * all its groups.  Waits for the answer: 0, FERRY_ENOTFOUND, ...
 */
int ferry_delete(struct ferry *f, const char *topic, const char *group);

#ifdef __cplusplus
}
#endif

#endif
