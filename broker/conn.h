/*
 * conn.h - one client connection as a byte stream: frames in, staged output
 * out, and the one rule deciding when output may leave.
 *
 * Input: frames are decoded straight from the bufferevent's input and
 * handed, one by one, to the request layer through the ops registered with
 * conn_set_ops() at start-up; this file does not know what a frame means.
 *
 * Output: everything a turn produces is staged on the connection and handed
 * to the socket by conn_flush(), which the broker calls at the end of the
 * turn, after the journal's write.  conn_flush() is the only place that
 * gives bytes to the socket, and it obeys the output gate:
 *
 *   - conn_send_msg() stages a message; it may leave only once the
 *     message's publish record is written to the journal file (what a
 *     kill -9 cannot undo).  conn_gate() adds a record the staged output
 *     waits for (an at-most-once delivery waits for its settle record).
 *     Staged output is one FIFO with one gate: the newest record anything
 *     in it waits for.
 *   - conn_send_durable() stages a reply that promises durability (a
 *     publish confirm, a confirmed ack): it waits until its record is
 *     confirmable (synced under fsync=always, written otherwise), in
 *     order with other such replies, and may be overtaken by later output.
 *
 * A record that is not in the journal at all (a publish taken back because
 * it was settled before it was written) holds nothing back.  Connections
 * whose output waits are flushed again by conn_journal_progress(), which
 * the store calls when the journal's written or synced point moves.
 *
 * States: HANDSHAKE until a valid HELLO, OPEN, CLOSING (input ignored,
 * freed once the output has left), DEAD (on the broker's reap list, freed
 * at the end of the turn, never inside its own callback).
 */
#ifndef FERRY_BROKER_CONN_H
#define FERRY_BROKER_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "codec.h"
#include "list.h"

struct core;
struct bufferevent;
struct group;
struct event;
struct evbuffer;
struct msg;
struct sockaddr;
struct topic;

#define CONN_NAME_MAX 64

enum conn_state {
	CONN_HANDSHAKE,		/* until a valid HELLO */
	CONN_OPEN,
	CONN_CLOSING,		/* no input handled; freed when drained */
	CONN_DEAD,		/* on core.turn.reap, to be freed */
};

/* A reply waiting for its record to become confirmable. */
struct conn_durable {
	uint64_t seq;		/* the record it waits for */
	size_t end;		/* its bytes end here in durable.sb */
};

struct conn {
	struct core *b;
	struct bufferevent *bev;
	struct list link;	/* core.conns, then core.turn.reap */
	struct list flink;	/* core.turn.flush while output is staged */
	struct list wlink;	/* core.gated while output waits for the
				   journal */
	uint64_t id;
	enum conn_state state;
	uint8_t throttled;	/* output above max_output_buffer: input is
				   not read until the client reads */
	uint8_t paused;		/* input not read: conn_pause() */
	uint8_t tls;		/* bev is an OpenSSL filter: every byte
				   goes through it, none straight to the
				   socket */
	struct fy_dec dec;
	struct fy_enc enc;	/* staged frames */
	struct evbuffer *big;	/* staged output holding large bodies by
				   reference; enc's bytes come after it */
	uint64_t gate;		/* staged output waits for this record */
	uint8_t gate_settle;	/* ... and for the settlements buffered
				   when it was set (STORE_SEQ_SETTLE) */
	struct fy_enc durable;	/* replies waiting to be confirmable */
	size_t durable_off;	/* bytes of durable released already */
	struct conn_durable *dq;	/* ring of dq_cap, seqs increasing */
	uint32_t dq_head, dq_n, dq_cap;
	struct event *hs_timer;	/* handshake deadline, until HELLO */
	char peer[64];		/* "addr:port" */

	/* The request layer's (request.c, sub.c): */
	struct list subs;	/* struct sub.clink */
	uint64_t next_sid;
	char name[CONN_NAME_MAX];	/* client's name, or its address */
	struct list blink;	/* group.blocked while paused for it */
	struct group *blocked_on;	/* that group, or NULL */
	struct event *flow_timer;	/* re-checks it; made when needed */
	struct auth_conn *auth;	/* auth.c's: user, login, permission
				   cache; NULL before HELLO */
	uint32_t sym;		/* trace symbol of the name */
	struct topic *pub_topic;	/* of the last PUB, valid while */
	uint64_t pub_topic_gen;		/* this is core.topic_gen */
};

/*
 * What the request layer does with a connection's input and events.  Set
 * once, before the first connection (request_init()).
 */
struct conn_ops {
	/* One decoded frame (r == FY_OK), or one that did not decode (r <
	 * 0, field names the bad key if known).  f borrows the input. */
	void (*frame)(struct conn *c, int r, const struct fy_frame *f,
	    const char *field);
	/* The client sent bytes (before its frames are handled) / all of
	 * a read's frames are handled. */
	void (*read_begin)(struct conn *c);
	void (*read_end)(struct conn *c);
	/* Output went below the low watermark. */
	void (*drained)(struct conn *c);
	/* The connection stops: end its subscriptions. */
	void (*closing)(struct conn *c);
};

void conn_set_ops(const struct conn_ops *ops);

/* Take over an accepted socket (fd -1: no socket, for tests and fuzzing).
 * NULL (socket closed) on failure. */
struct conn *conn_new(struct core *b, evutil_socket_t fd,
    const struct sockaddr *sa, int salen);
/* The same over TLS: ssl (owned from here on, freed with the conn) is
 * a fresh server session for fd; the handshake runs as bytes arrive. */
struct ssl_st;
struct conn *conn_new_tls(struct core *b, evutil_socket_t fd,
    const struct sockaddr *sa, int salen, struct ssl_st *ssl);
void conn_free(struct conn *c);

/* The handshake succeeded: stop its timer, start the idle timeout. */
void conn_open(struct conn *c);

/* The request layer answers the handshake later (a failed login waits
 * out its delay): stop the handshake deadline and reading.  It ends with
 * conn_close(). */
void conn_hold(struct conn *c);

/* Stop reading, end subscriptions, free once the output has left. */
void conn_close(struct conn *c);

static inline int
conn_is_open(const struct conn *c)
{
	return c->state == CONN_OPEN;
}

static inline int
conn_is_closing(const struct conn *c)
{
	return c->state >= CONN_CLOSING;
}

/* Stage a frame.  0, or -ENOMEM (the connection is then closed). */
int conn_send(struct conn *c, const struct fy_frame *f);
/* Stage a MSG frame whose body is m's (referenced, not copied, when
 * large); it leaves once m's publish record is written. */
int conn_send_msg(struct conn *c, const struct fy_frame *f,
    struct msg *m);
int conn_send_err(struct conn *c, uint64_t rid, int code, uint64_t sid,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Stage a reply that may leave once record seq is confirmable. */
int conn_send_durable(struct conn *c, uint64_t seq,
    const struct fy_frame *f);

/* The staged output leaves only once record seq is written too;
 * STORE_SEQ_SETTLE: once the settlements buffered now are. */
void conn_gate(struct conn *c, uint64_t seq);

/* The socket, for writing around libevent (the direct send of a flush,
 * the farewell at shutdown); -1 over TLS, where that would put plain
 * bytes in the encrypted stream. */
evutil_socket_t conn_plain_fd(const struct conn *c);

/* Stop reading c's input / read it again (flow control); frames already
 * read wait in the input buffer, and TCP slows the sender. */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);

/* Bytes queued for this client: staged, or in libevent's buffer. */
size_t conn_outlen(const struct conn *c);

/* Hand what the journal allows to the socket (the broker's end-of-turn
 * flush; the only place output leaves). */
void conn_flush(struct conn *c);

/* The journal's written or synced point moved: flush waiting output. */
void conn_journal_progress(struct core *b);

/* Replies waiting for durability, on every connection (the journal syncs
 * at once under fsync=always while there are any). */
uint64_t conn_durable_waiting(const struct core *b);

/* Handle the frames in the input (tests, fuzzing: as if read). */
void conn_handle_input(struct conn *c);

#endif
