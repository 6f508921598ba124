/*
 * conn.h - one client connection: framing, handshake, dispatch, output.
 *
 * Frames are decoded straight from the bufferevent's input and handled in
 * the read callback; every reply and delivery is encoded into the
 * connection's staging buffer and handed to libevent once per loop turn by
 * the broker's flush event (lowest priority), so one write covers everything
 * a turn produced.  A closing connection is freed later by the broker's reap
 * event, never inside its own callback.
 */
#ifndef FERRY_BROKER_CONN_H
#define FERRY_BROKER_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "codec.h"
#include "list.h"

struct broker;
struct bufferevent;
struct event;
struct msg;
struct sockaddr;

#define CONN_NAME_MAX 64

/*
 * A reply that waits for its journal record to become durable: the confirm
 * of a publish (n ids) or the OK of a confirmed ack (n == 0).
 */
struct pending {
	uint64_t rid;
	uint64_t seq;		/* sendable once seq is confirmable */
	uint32_t n;		/* message ids */
	uint32_t dups;		/* how many were duplicates */
	char *many;		/* n > 1: owned, n NUL-terminated ids */
	char one[FY_ID_MAX + 1];	/* n == 1 */
};

struct conn {
	struct broker *b;
	struct bufferevent *bev;
	struct list link;	/* broker->conns, then broker->reap */
	struct list flink;	/* broker->flush while staging is non-empty */
	struct list subs;	/* struct sub.clink */
	struct list plink;	/* store.waiting while pend_n > 0 */
	struct pending *pend;	/* ring of pend_cap, seqs increasing */
	uint32_t pend_head, pend_n, pend_cap;
	uint64_t id;
	uint64_t next_sid;
	struct fy_dec dec;
	struct fy_enc enc;	/* staging: frames not yet given to bev */
	struct event *hs_timer;	/* handshake deadline, until HELLO */
	char name[CONN_NAME_MAX];	/* client's name, or its address */
	char peer[64];		/* "addr:port" */
	uint32_t sym;		/* trace symbol of the name */
	uint8_t hello;		/* handshake done */
	uint8_t closing;	/* no more input handled; freed when drained */
	uint8_t throttled;	/* output above max_output_buffer: input is
				   not read until the client reads */
	uint8_t settles;	/* staged at-most-once deliveries of durable
				   messages: send only after the journal's
				   write of their settle records */
	uint8_t reaping;	/* on broker->reap, to be freed */
};

/* Take over an accepted socket.  NULL (socket closed) on failure. */
struct conn *conn_new(struct broker *b, evutil_socket_t fd,
    const struct sockaddr *sa, int salen);
void conn_free(struct conn *c);

/* Stop reading, release subscriptions, free once output is written. */
void conn_close(struct conn *c);

/* Queue a frame.  0, or -ENOMEM (the connection is then closed). */
int conn_send(struct conn *c, const struct fy_frame *f);
/* Queue a MSG frame whose body is m's; m is referenced, not copied, when
 * large. */
int conn_send_msg(struct conn *c, const struct fy_frame *f,
    struct msg *m);
int conn_send_err(struct conn *c, uint64_t rid, int code, uint64_t sid,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Bytes queued for this client, staged or in libevent's buffer. */
size_t conn_outlen(const struct conn *c);

/* Send every pending reply whose seq <= upto; 1 if none is left. */
int conn_confirm(struct conn *c, uint64_t upto);

/* Move staged frames to libevent (called by the broker's flush). */
void conn_flush(struct conn *c);

/* Feed bytes as if read from the socket (tests, fuzzing). */
void conn_handle_input(struct conn *c);

#endif
