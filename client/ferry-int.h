/*
 * ferry-int.h - what libferry's files share; never installed.
 *
 * One handle, struct ferry, holds a connection's whole state: the socket,
 * the output buffer of encoded frames, the input buffer and its decoder,
 * the ring of requests awaiting answers, the subscription table and the
 * queues of deliveries and async errors.  The files split its code in
 * layers; each calls only the layers below it, and a layer below reaches
 * one above only through a hook that the upper one set in the handle:
 *
 *  1. core.c: the non-blocking core.  Encodes frames into the output
 *    buffer, writes and reads only what the socket takes or has now
 *    (never waits), decodes and dispatches every complete input frame
 *    (answers matched to their request by rid, deliveries queued), keeps
 *    errors, and puts a fresh connection back in the state the handle
 *    had (lf_restore()).  Anything that must wait is left to a driver.
 *  2. tls.c: TLS; lf_tls_setup() sets f->tls, the core's byte I/O.
 *    connopts.c: URLs, passwords and SCRAM; lf_login_setup() sets
 *    f->login, what the core calls as CHALLENGE and WELCOME arrive.
 *  3. The drivers.  sync.c: the blocking driver and the blocking API of
 *    ferry.h: every wait is lf_wait_for(), a poll() loop around the core.
 *    async.c: the asynchronous driver and API, on any event loop through
 *    an adapter (struct lf_loop); async-libevent.c is the one for
 *    libevent, and ferry_async_connect().  inspect.c: the inspection
 *    requests (stats, inflight, trace, peek): their frames and the copies
 *    of their answers, for both drivers, and the blocking calls.
 *  4. reconnect.c: the blocking driver's reconnect loop (backoff,
 *    connect, restore, wait); ferry_set_reconnect() sets f->recover,
 *    which the blocking calls reach through lf_recover().
 *
 * Names shared between the files start with lf_; everything here is
 * hidden by libferry.sym (only ferry_* is exported).
 */
#ifndef FERRY_INT_H
#define FERRY_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"
#include "scram.h"
#include "frame.h"
#include "ferry.h"

#define READ_CHUNK (64 * 1024)	/* free space kept for each recv() */
#define RBUF_INIT (256 * 1024)
#define FLUSH_AT (64 * 1024)	/* buffered output that triggers a write */
#define FLUSH_MS 2		/* age of buffered output that triggers one */
#define WBUF_MAX (256 * 1024) /* buffered output that blocks the caller:
				      small, as every unsent byte is latency
				      once ferryd slows us (core.c) */
#define LF_NOTSENT_LOWAT (128 * 1024) /* unsent bytes the kernel holds (core.c) */
#define MAX_FRAME_DEFAULT (16u * 1024 * 1024) /* until WELCOME says */
#define FRAME_SLACK 4096	/* room for keys around a max-size body */
#define INBOX_PREFIX "_inbox."
#define SID_GEN_SHIFT 32	/* user sid = reconnect count << 32 | n */

/* What an outstanding request id stands for. */
enum {
	PEND_FREE = 0,		/* answered, or never used */
	PEND_PIPE,		/* pipelined publish: count and call back */
	PEND_SYNC,		/* the caller is waiting in lf_send_sync() */
	PEND_GONE,		/* the caller gave up: drop the answer */
	PEND_RESUB,		/* a SUB sent again after a reconnect */
	PEND_ASYNC,		/* a request of the async driver: its answer
				   goes to f->answer() */
};

struct pend {
	uint32_t nmsgs;		/* messages in a pipelined publish */
	uint32_t sub;		/* PEND_RESUB: the subscription's n */
	uint8_t kind;
	uint8_t *frame;		/* a confirmed publish kept for re-sending
				   after a reconnect (reconnect on only);
				   owned, freed when answered */
	size_t flen;
	/* PEND_ASYNC: what the request was and whom to tell (async.c). */
	uint8_t op;
	void (*fn)(void);
	void *arg;
	uint64_t tag;		/* a publish (PEND_PIPE, async OP_PUB): the
				   index in its batch's msgs of the frame's
				   first message, 0 for a single one; other
				   async ops: see async.c */
};

/*
 * A subscription of the handle.  The caller knows it by n: the sid it
 * sees is gen << 32 | n, gen being the handle's reconnect count when the
 * delivery (or the subscribe) happened; the broker knows it by bsid,
 * which changes with each connection.
 */
struct lsub {
	uint32_t n;
	uint64_t bsid;		/* 0 until the broker answered */
	char *topic;		/* owned, as are the strings in o */
	struct ferry_sub_opts o;
	int closing;		/* UNSUB sent: do not subscribe it again */
	int pending;		/* SUB sent, not yet answered: likewise */
	int inbox;		/* request-reply inbox: deliveries go to the
				   reply queue, not to ferry_next() */
	ferry_async_msg_fn *fn;	/* async driver: where deliveries go */
	void *arg;
};

/* A queued delivery: the message and its strings in one allocation. */
struct mnode {
	struct mnode *next;
	size_t size;		/* of the whole block, for ferry_msg_dup() */
	struct ferry_msg msg;	/* what the caller sees; freed via its node */
};

/* Fire-and-forget acks waiting to go out as one ACK frame. */
#define ACKS_MAX 512

struct ferry {
	int fd;			/* -1 once closed */
	/* Consecutive fire-and-forget acks of one subscription: sent as one
	 * frame with "leases" before any other frame or write, so the
	 * broker decodes one frame per batch instead of one per message,
	 * and the order with later requests is kept. */
	uint64_t acks_sid;
	uint32_t nacks;
	uint64_t acks[ACKS_MAX];
	int err;		/* fatal error: sticky, 0 while usable */
	int last_code;		/* broker code of the latest broker error */
	char errstr[FERRY_ERRSTR_LEN];
	int timeout_ms;		/* I/O timeout, -1 = none */
	char name[FERRY_NAME_MAX + 1];

	/* Login (connopts.c): user NULL = anonymous; password owned and
	 * wiped when freed; scram lives from HELLO to WELCOME. */
	char *user;
	char *password;
	struct fy_scram_client *scram;
	char authuser[FERRY_NAME_MAX + 1];	/* WELCOME's "user" */
	/* While SCRAM runs, the broker takes nothing but AUTH after HELLO:
	 * output from wgate on (requests queued meanwhile) waits for
	 * WELCOME, and AUTH goes in at wgate (an offset in enc.sb). */
	int gated;
	size_t wgate;

	/* TLS (tls.c): tls_ctx kept for reconnects, ssl per connection. */
	struct ssl_ctx_st *tls_ctx;
	struct ssl_st *ssl;
	char *tls_name;		/* name the certificate must carry, or
				   NULL = the host connected to */

	/* From WELCOME. */
	int welcomed;
	char server[64];
	size_t max_frame;	/* broker's limit for our frames */
	size_t max_msg;
	size_t rmax;		/* largest frame we accept */

	/* Output: enc.sb holds encoded frames; wpos of them are written. */
	struct fy_enc enc;
	size_t wpos;
	int64_t wsince;		/* when the oldest unwritten byte came, or
				   the last write found the socket full */
	size_t wnext;		/* unwritten bytes that trigger a write */

	/* Input: bytes [rstart, rend) of rbuf are unread.  rwant is the size
	 * of the incomplete frame at rstart, so a read can make room. */
	uint8_t *rbuf;
	size_t rcap, rstart, rend, rwant;
	struct fy_dec dec;

	/* Requests awaiting answers: rids [plo, next_rid) live in the ring
	 * pend[rid & (pcap - 1)]; next_rid - plo <= pcap. */
	uint64_t next_rid;
	uint64_t plo;
	struct pend *pend;
	size_t pcap;

	/* The one synchronous request being waited for (wrid 0 = none). */
	uint64_t wrid;
	int wdone;
	int werr;
	uint64_t wsid;
	char wid[FERRY_ID_MAX + 1];

	/* Pipelined publishes, in messages. */
	size_t pipe_pending;
	uint64_t c_ok, c_failed;
	int c_first_err;
	ferry_confirm_fn *cb;
	void *cb_arg;

	/* Deliveries not yet returned by ferry_next(), oldest first. */
	struct mnode *mhead, **mtail;

	/* Subscriptions, in the order they were made. */
	struct lsub *subs;
	size_t nsubs, subcap;
	uint32_t next_sub;	/* n of the previous subscription */

	/* Set up by a request that wants more of its answer than sid and
	 * id: called with the OK (or PEEK's MSG) while it is decoded. */
	int (*wcopy)(struct ferry *, const struct fy_frame *);
	void *wout;		/* what wcopy built; the caller takes it */
	size_t wn;
	int wquery;		/* inspect.c: the query wcopy copies (LF_Q_*) */
	uint32_t wdups;		/* dups of the awaited answer */
	size_t last_dups;

	/* Reconnection (see ferry_set_reconnect()). */
	char *host;		/* owned */
	int port;
	int rc_on;
	struct ferry_reconnect_opts rc;
	int lost;		/* f->err is a loss that recover() may undo */
	int reconnecting;	/* inside recover(): no nested recovery */
	uint32_t gen;		/* successful reconnects (sid high half) */
	uint64_t nreconnects;
	size_t rc_lost_subs;	/* during recover(): subscriptions refused */
	unsigned rng;		/* jitter state */

	/* Idempotent producer: pid[0] == 0 = off. */
	char pid[FY_ID_MAX + 1];
	uint64_t pseq;		/* sequence of the next confirmed publish */

	/* Request-reply: the inbox (lazily subscribed) and its replies.  A
	 * topic name's full size, as it is passed where any topic may be
	 * (and read up to that bound). */
	char inbox[FERRY_NAME_MAX + 1];
	uint32_t inbox_n;	/* 0 = not subscribed */
	struct mnode *rhead, **rtail;

	/* Async errors: ring of alen entries from ahead. */
	struct ferry_async_error aerr[FERRY_ASYNC_MAX];
	unsigned ahead, alen;
	uint64_t adropped;
	int close_code;		/* broker code announced before it closed */

	/* Scratch reused by every publish, so publishing does not allocate
	 * once these have grown to the largest header set / batch seen. */
	struct fy_kv *kv;
	size_t kvcap;
	struct fy_pubmsg *pm;
	size_t pmcap;

	/* Set by a driver that is not the blocking one (async.c), else
	 * NULL.  answer() gets each PEND_ASYNC answer (fr), or its failure
	 * (fr NULL, err): the entry is already out of the ring.  closing()
	 * runs in lf_fatal() just before the socket is closed and anything
	 * is failed. */
	void (*answer)(struct ferry *f, uint64_t rid, const struct pend *p,
	    const struct fy_frame *fr, int err);
	void (*closing)(struct ferry *f);
	void *drv;		/* the driver's own state */

	/* What the layers above the core plug into it (NULL: not in use):
	 * TLS (plain TCP without), the login (anonymous without), and the
	 * blocking driver's reconnect loop (reconnect.c). */
	const struct lf_tls_ops *tls;
	const struct lf_login_ops *login;
	int (*recover)(struct ferry *f);
};

/*
 * The byte I/O of a TLS handle (tls.c): recv() and send() that never
 * wait, -1 with errno EAGAIN when TLS needs the socket again; drop() frees
 * the session before its fd is closed, release() everything.
 */
struct lf_tls_ops {
	ssize_t (*recv)(struct ferry *f, void *buf, size_t len);
	ssize_t (*send)(struct ferry *f, const void *buf, size_t len);
	void (*drop)(struct ferry *f);
	void (*release)(struct ferry *f);
};

/*
 * A login (connopts.c): challenge() answers CHALLENGE with AUTH;
 * verify() checks WELCOME's server signature (0, or a fatal error set
 * on f: a broker that did not prove itself is not talked to); forget()
 * wipes and frees the secrets when the handle is freed.
 */
struct lf_login_ops {
	int (*challenge)(struct ferry *f, const struct fy_frame *fr);
	int (*verify)(struct ferry *f, const struct fy_frame *fr);
	void (*forget)(struct ferry *f);
};

typedef int done_fn(struct ferry *f, void *arg);

/* --- core.c ------------------------------------------------------------ */

int64_t lf_now_ms(void);
__attribute__((format(printf, 3, 4)))
int lf_seterr(struct ferry *f, int err, const char *fmt, ...);
/* Count a pipelined publish's outcome and tell the confirm callback;
 * p is its ring entry (nmsgs messages, the first being msgs[tag] of a
 * batch). */
void lf_confirm(struct ferry *f, uint64_t rid, const struct pend *p,
    int err, int code, const char *id, const char *errmsg, uint32_t dups);
void lf_fail_pending(struct ferry *f, int err);
int lf_recoverable(const struct ferry *f, int err);
__attribute__((format(printf, 3, 4)))
int lf_fatal(struct ferry *f, int err, const char *fmt, ...);
uint64_t lf_pend_new(struct ferry *f, int kind, uint32_t nmsgs);
struct pend *lf_pend_take(struct ferry *f, uint64_t rid, struct pend *out);
struct mnode *lf_msg_copy(const struct fy_frame *fr);
void lf_purge(struct ferry *f, uint64_t sid);
struct lsub *lf_sub_by_n(struct ferry *f, uint32_t n);
void lf_sub_remove(struct ferry *f, struct lsub *s);
size_t lf_mlist_free(struct mnode **head, struct mnode ***tail);
int lf_process_input(struct ferry *f);
int lf_read_some(struct ferry *f);
size_t lf_wpending(const struct ferry *f);
int lf_write_some(struct ferry *f);
void lf_tune_socket(int fd);
int lf_flush_due(const struct ferry *f);
int lf_encode_acks(struct ferry *f);
int lf_encode(struct ferry *f, const struct fy_frame *fr);
int lf_encode_sub(struct ferry *f, const struct lsub *s, uint64_t rid);
void lf_keep_frame(struct ferry *f, uint64_t rid, size_t mark);
int lf_check_name(struct ferry *f, const char *what, const char *s, size_t len);
int lf_delete_frame(struct ferry *f, const char *topic, size_t tlen,
    const char *group, struct fy_frame *fr);
int lf_check_msg(struct ferry *f, const void *body, size_t len, const char *id,
    const struct ferry_header *hdr, size_t nhdr, size_t *size);
int lf_kv_reserve(struct ferry *f, size_t used, size_t n);
void lf_fill_pubmsg(struct ferry *f, struct fy_pubmsg *pm, const void *body,
    size_t len, const char *id, const struct ferry_header *hdr, size_t nhdr,
    size_t kvpos);
void lf_set_pseq(struct ferry *f, struct fy_pubmsg *pm, uint64_t rid);
int lf_encode_pub(struct ferry *f, const char *topic, size_t tlen,
    const void *body, size_t len, const struct ferry_pub_opts *o,
    uint64_t rid);
/*
 * A batch publish cut into PUB frames that fit the broker's max_frame, for
 * either driver: lf_batch_begin() checks every message (0, or an error
 * set on f: nothing may be sent); each lf_batch_next() that returns 1
 * makes msgs[start, end) the next frame's, which lf_batch_encode() encodes
 * with rid (0: fire-and-forget; else with producer sequences, and kept for
 * re-sending) and the driver then counts or watches.
 */
struct lf_batch {
	const char *topic;
	size_t tlen;
	const struct ferry_pub_msg *msgs;
	size_t n, start, end;
	size_t budget;		/* message bytes a frame may hold */
};
int lf_batch_begin(struct ferry *f, struct lf_batch *b, const char *topic,
    size_t tlen, const struct ferry_pub_msg *msgs, size_t n);
int lf_batch_next(struct ferry *f, struct lf_batch *b);
int lf_batch_encode(struct ferry *f, const struct lf_batch *b, uint64_t rid);
struct lsub *lf_sub_add(struct ferry *f, const char *topic,
    const struct ferry_sub_opts *o, size_t glen);
int lf_sub_check(struct ferry *f, const struct ferry_sub_opts *o,
    size_t *glen);
void lf_strcopy(char *dst, size_t n, struct fy_str s);
int lf_settle_sid(struct ferry *f, uint64_t sid, uint64_t *bsid);
void lf_uuid_str(char *out);
struct ferry *lf_new(const char *host, int port, int timeout_ms,
    const char *name);
void lf_free(struct ferry *f);
int lf_set_reconnect(struct ferry *f, const struct ferry_reconnect_opts *o);
/* On a fresh connection: encode the subscriptions and the unanswered
 * confirmed publishes again, fail the other waiting requests; the
 * subscriptions' answers are the driver's to wait for.  0 or fatal. */
int lf_restore(struct ferry *f, struct ferry_reconnect_info *info);
unsigned lf_jitter(struct ferry *f, unsigned ms);

/* Re-establish a lost connection where the blocking driver's reconnect
 * loop is plugged in: 0 once the handle is usable, else its fatal
 * error. */
static inline int
lf_recover(struct ferry *f)
{
	if (f->err == 0)
		return 0;
	return f->recover != NULL ? f->recover(f) : f->err;
}

/* --- tls.c -------------------------------------------------------------- */

/*
 * lf_tls_setup(): the context from the options, and f->tls set (0, or an
 * error set, not fatal).  lf_tls_handshake(): on f->fd, verifying the
 * certificate and its name (0, or fatal).  lf_tls_pending(): decrypted
 * bytes wait that poll() cannot see.  lf_tls_drop() frees the session
 * before its fd is closed.
 */
int lf_tls_setup(struct ferry *f, const struct ferry_opts *o);
int lf_tls_handshake(struct ferry *f, const char *host, int port,
    int64_t deadline);
/* For a driver that runs the handshake itself: lf_tls_attach() makes
 * the session on f->fd (0, or fatal); lf_tls_step() advances it: 0 done,
 * 1 wants to read, 2 wants to write, < 0 failed (fatal); lf_tls_ready()
 * is 1 once there is nothing to do (or no TLS). */
int lf_tls_attach(struct ferry *f);
int lf_tls_step(struct ferry *f);
int lf_tls_ready(const struct ferry *f);
int lf_tls_pending(const struct ferry *f);
void lf_tls_drop(struct ferry *f);

/* --- connopts.c ----------------------------------------------------------- */

/* SCRAM, for the drivers' handshakes.  lf_scram_hello() fills HELLO's
 * mech and sasl (a no-op without a user): 0, or a fatal error set on f. */
int lf_scram_hello(struct ferry *f, struct fy_frame *hello, char *buf);
/* Just after HELLO is encoded: gate what follows it if SCRAM runs. */
void lf_scram_gate(struct ferry *f);
/* Take o's password source and TLS settings for user (NULL: anonymous)
 * and tls (non-zero: TLS even without a CA or certificate), and set
 * f->login for a user.  0, or an error set on f (not fatal). */
int lf_login_setup(struct ferry *f, const struct ferry_opts *o,
    const char *user, int tls);
/* Where and how to connect, for either driver: host (NULL: the URL's, or
 * what f has) and port (0: the URL's, or the default for TLS or not) win
 * over url's (NULL: none), as o->user over its user; then the login and
 * TLS of o.  0, or an error set on f (not fatal). */
int lf_opts_apply(struct ferry *f, const struct ferry_opts *o,
    const char *url, const char *host, int port);

/* --- sync.c ------------------------------------------------------------ */

int lf_wait_for(struct ferry *f, int timeout_ms, done_fn *done, void *arg);
int lf_send_sync(struct ferry *f, struct fy_frame *fr);
void lf_do_connect(struct ferry *f, const char *host, int port, int timeout_ms);
int lf_check_topic(struct ferry *f, const char *topic, size_t *len);

/* --- inspect.c ---------------------------------------------------------- */

/* An inspection query (pend.tag of an async one). */
enum {
	LF_Q_STATS = 1,		/* struct ferry_group_stats rows */
	LF_Q_BROKER,		/* one struct ferry_broker_stats */
	LF_Q_INFLIGHT,		/* struct ferry_lease_info rows */
	LF_Q_TRACE,		/* struct ferry_event rows */
	LF_Q_PEEK,		/* a struct mnode */
};

/* Check the arguments of query q and build its frame into *fr (borrowing
 * them); 0, or an error set on f (nothing to send). */
int lf_query_frame(struct ferry *f, int q, const char *topic,
    const char *group, const char *id, struct fy_frame *fr);
/* Copy the answer fr (OK, or PEEK's MSG) into one malloc'd block *out
 * with *n rows; 0, or -1 when out of memory. */
int lf_query_copy(int q, const struct fy_frame *fr, void **out, size_t *n);
/* Free such a copy; NULL is a no-op. */
void lf_query_free(int q, void *out);
/* A successful answer that says nothing (PEEK without a message, STATS
 * without the broker's row): its error, set on f; else 0. */
int lf_query_check(struct ferry *f, int q, const void *out, size_t n);

/* --- async.c ------------------------------------------------------------ */

/*
 * What the asynchronous driver needs from an event loop: an adapter
 * (async-libevent.c) fills this in and calls lf_async_read(),
 * lf_async_write() and lf_async_timer() when what it was asked to watch
 * happens.  Each hook gets data.
 *
 *  watch(fd, write): from now on watch fd (-1: none) for reading, and for
 *	writing too if write.  Called with -1 before the fd is closed.
 *  timer(ms): call lf_async_timer() in ms milliseconds (0: from the loop
 *	as soon as it can, never inside this call), replacing any earlier
 *	request; ms < 0 cancels it.
 *  cleanup(): the handle is being freed: stop everything, free data.
 */
struct lf_loop {
	void *data;
	void (*watch)(void *data, int fd, int write);
	void (*timer)(void *data, int64_t ms);
	void (*cleanup)(void *data);
};

struct ferry_async *lf_async_new(const char *host, int port,
    const struct ferry_async_opts *o, const struct lf_loop *loop);
void lf_async_read(struct ferry_async *a);
void lf_async_write(struct ferry_async *a);
void lf_async_timer(struct ferry_async *a);

#endif
