/*
 * async.c - the asynchronous driver and API of libferry (see ferry.h).
 *
 * The same non-blocking core as the blocking API (core.c), driven by an
 * event loop instead of poll().  The loop is reached only through an
 * adapter (struct lf_loop, ferry-int.h; async-libevent.c for libevent):
 * the driver tells it which of read and write to watch on the socket and
 * when its one timer is due, and the adapter calls lf_async_read(),
 * lf_async_write() and lf_async_timer() back.  Reading dispatches what
 * arrived; writing pushes what the core buffered (so every request made
 * in one loop turn leaves in one write); the timer bounds each
 * connection attempt, spaces reconnects, ends requests whose reply is
 * late, and runs the handling of a lost connection from the loop.
 * Answers to our requests reach us through the core's answer() hook,
 * with the callback and its arg stored in the request's ring entry.
 *
 * Two rules keep callbacks safe.  A user callback may free the handle:
 * every entry from the loop goes through enter()/leave(), and free only
 * marks the handle while inside one; leave() frees it once the outermost
 * returns.  A connection failure can be noticed deep inside the core
 * (lf_fatal()): the closing() hook only stops watching the socket and
 * marks the loss, which the timer, due at once, handles from the loop,
 * never from inside the code that noticed.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry-int.h"

#define CONNECT_TIMEOUT_MS 5000

/* What a PEND_ASYNC request was (pend.op). */
enum {
	OP_PUB = 1,		/* confirmed publish: fn is a confirm_fn */
	OP_SUB,			/* subscribe: fn is a done_fn, sub its n */
	OP_UNSUB,		/* unsubscribe: likewise */
	OP_DONE,		/* settle or ping: fn is a done_fn */
	OP_INBOX,		/* the request-reply inbox's subscribe */
	OP_REQPUB,		/* a request's publish: tag is its areq id */
	OP_QUERY,		/* an inspection: tag is its LF_Q_* */
};

enum {
	ST_CONNECTING,		/* socket connecting or awaiting WELCOME */
	ST_CONNECTED,
	ST_WAITING,		/* between reconnect attempts */
	ST_DEAD,		/* failed for good: f->err says why */
};

/* A request awaiting its reply. */
struct areq {
	struct areq *next;
	uint64_t id;
	char corr[37];
	int64_t deadline;	/* lf_now_ms() time; -1: none */
	ferry_async_reply_fn *fn;
	void *arg;
};

struct ferry_async {
	struct ferry *f;	/* the core; f->drv == this */
	struct lf_loop loop;	/* the event loop's adapter */
	int watching;		/* fd the adapter watches, or -1 */
	int want_write;		/* it watches for writability too */
	int tls_step;		/* the TLS handshake's last step: 1 waits to
				   read, 2 to write (lf_tls_step()) */
	int64_t t_conn;		/* attempt timeout or end of backoff, or 0 */
	int lost;		/* closing() ran: a loss to handle */
	int64_t t_armed;	/* when the adapter's timer is due, or -1 */
	int state;
	int sock_ok;		/* the connect() completed */
	int wrote;		/* bytes left on this connection attempt */
	int ever;		/* a handshake succeeded once */
	int depth;		/* nesting of our libevent callbacks */
	int freeing;		/* ferry_async_free() was called */
	int timeout_ms;		/* per connection attempt */

	ferry_async_status_fn *on_status;
	ferry_async_error_fn *on_error;
	void *arg;

	/* The outage being recovered from (reconnect on). */
	int outage;
	int64_t out_start;
	unsigned backoff;
	struct ferry_reconnect_info info;

	struct areq *reqs;	/* requests awaiting replies */
	uint64_t next_req;
};

static void attempt(struct ferry_async *a);
static void teardown(struct ferry_async *a);

static void
enter(struct ferry_async *a)
{
	a->depth++;
}

/* Last thing a callback from the loop does: a may be gone afterwards. */
static void
leave(struct ferry_async *a)
{
	if (--a->depth == 0 && a->freeing)
		teardown(a);
}

/* Tell the adapter what to watch on the socket: always reading, writing
 * while the core has output or the connect() is pending.  During a TLS
 * handshake frames wait, and writing is watched only when TLS asks:
 * while it waits for the broker, a writable socket would only spin. */
static void
watch(struct ferry_async *a)
{
	int fd = a->f->fd, w;

	if (fd < 0)
		w = 0;
	else if (!a->sock_ok)
		w = 1;		/* the connect() */
	else if (!lf_tls_ready(a->f))
		w = a->tls_step != 1;	/* the handshake's turn */
	else
		w = lf_wpending(a->f);
	if (fd == a->watching && w == a->want_write)
		return;
	a->watching = fd;
	a->want_write = w;
	a->loop.watch(a->loop.data, fd, w);
}

/* Arm the adapter's timer for the earliest of: a loss to handle (now),
 * the attempt timeout or end of backoff, a request's deadline. */
static void
arm(struct ferry_async *a)
{
	int64_t due = -1, now = lf_now_ms();
	struct areq *q;

	if (a->lost)
		due = now;
	if (a->t_conn && (due < 0 || a->t_conn < due))
		due = a->t_conn;
	for (q = a->reqs; q != NULL; q = q->next)
		if (q->deadline >= 0 && (due < 0 || q->deadline < due))
			due = q->deadline;
	if (due == a->t_armed)
		return;
	a->t_armed = due;
	a->loop.timer(a->loop.data, due < 0 ? -1 : due > now ? due - now : 0);
}

/* After a request or a callback: push output, re-arm the timer. */
static void
kick(struct ferry_async *a)
{
	if (a->freeing)
		return;
	watch(a);
	arm(a);
}

/* May requests be made?  0, or the error to return. */
static int
usable(struct ferry_async *a)
{
	if (a->freeing)
		return lf_seterr(a->f, FERRY_ECLOSED, "the handle is being "
		    "freed");
	if (a->state == ST_DEAD)
		return a->f->err;
	return 0;
}

static void
status(struct ferry_async *a, int st)
{
	if (a->on_status != NULL && !a->freeing)
		a->on_status(a, st, a->arg);
}

/* --- Requests awaiting replies -------------------------------------------- */

static struct areq *
areq_find(struct ferry_async *a, uint64_t id, const char *corr)
{
	struct areq *q;

	for (q = a->reqs; q != NULL; q = q->next)
		if (corr != NULL ? strcmp(q->corr, corr) == 0 : q->id == id)
			return q;
	return NULL;
}

/* Take q out of the list and tell its caller. */
static void
areq_finish(struct ferry_async *a, struct areq *q, int err,
    const struct ferry_msg *reply)
{
	struct areq **pp;

	for (pp = &a->reqs; *pp != q; pp = &(*pp)->next)
		;
	*pp = q->next;
	q->fn(a, err, reply, q->arg);
	free(q);
}

static void
areq_fail_all(struct ferry_async *a, int err)
{
	while (a->reqs != NULL)
		areq_finish(a, a->reqs, err, NULL);
}

/* End the requests that were due by now (not those their callbacks
 * make meanwhile: they have higher ids). */
static void
areq_expire(struct ferry_async *a, int64_t now)
{
	uint64_t last = a->next_req;
	struct areq *q;

	for (q = a->reqs; q != NULL && !a->freeing;) {
		if (q->id > last || q->deadline < 0 || q->deadline > now) {
			q = q->next;
			continue;
		}
		lf_seterr(a->f, FERRY_ETIMEOUT, "no reply within the "
		    "timeout");
		areq_finish(a, q, FERRY_ETIMEOUT, NULL);
		q = a->reqs;	/* the list may have changed */
	}
}

/* --- Answers and deliveries ----------------------------------------------- */

/* An inspection's answer, copied as the blocking API copies it, to its
 * callback; the copy is freed once that returns. */
static void
answer_query(struct ferry_async *a, const struct pend *p,
    const struct fy_frame *fr, int err)
{
	struct ferry *f = a->f;
	int q = (int)p->tag;
	void *out = NULL;
	size_t n = 0;

	if (err == 0 && lf_query_copy(q, fr, &out, &n) < 0)
		err = lf_seterr(f, FERRY_ENOMEM, "out of memory copying the "
		    "answer");
	if (err == 0)
		err = lf_query_check(f, q, out, n);
	if (err != 0) {
		lf_query_free(q, out);
		out = NULL;
		n = 0;
	}
	switch (q) {
	case LF_Q_STATS:
		((ferry_async_stats_fn *)p->fn)(a, err, out, n, p->arg);
		break;
	case LF_Q_BROKER:
		((ferry_async_broker_stats_fn *)p->fn)(a, err, out, p->arg);
		break;
	case LF_Q_INFLIGHT:
		((ferry_async_inflight_fn *)p->fn)(a, err, out, n, p->arg);
		break;
	case LF_Q_TRACE:
		((ferry_async_trace_fn *)p->fn)(a, err, out, n, p->arg);
		break;
	case LF_Q_PEEK:
		((ferry_async_peek_fn *)p->fn)(a, err,
		    out ? &((struct mnode *)out)->msg : NULL, p->arg);
		break;
	}
	lf_query_free(q, out);
}

/* The core's answer() hook: one of our requests was answered or failed. */
static void
on_answer(struct ferry *f, uint64_t rid, const struct pend *p,
    const struct fy_frame *fr, int err)
{
	struct ferry_async *a = f->drv;
	struct ferry_confirm c;
	char id[FERRY_ID_MAX + 1] = "";
	char msg[FERRY_ERRSTR_LEN] = "";
	ferry_async_done_fn *done = (ferry_async_done_fn *)p->fn;
	struct lsub *s;
	struct areq *q;
	int code = 0;

	if (fr != NULL && fr->type == FY_T_ERR) {
		code = (int)fr->err.code;
		lf_strcopy(msg, sizeof(msg), fr->err.msg);
		f->last_code = code;
		lf_seterr(f, err, "%s: %s", fy_code_name(code), msg);
	} else if (fr == NULL) {
		snprintf(msg, sizeof(msg), "%s", f->errstr);
	}
	if (fr != NULL && fr->type == FY_T_OK && fr->ok.nids > 0)
		lf_strcopy(id, sizeof(id), fr->ok.ids[0]);
	switch (p->op) {
	case OP_PUB:
		memset(&c, 0, sizeof(c));
		c.rid = rid;
		c.err = err;
		c.code = code;
		c.nmsgs = p->nmsgs;
		c.first = (size_t)p->tag;	/* in a batch */
		c.id = id;
		c.errmsg = msg;
		c.dups = fr != NULL && fr->type == FY_T_OK ? fr->ok.dups : 0;
		((ferry_async_confirm_fn *)p->fn)(a, &c, p->arg);
		return;
	case OP_SUB:
	case OP_INBOX:
		s = lf_sub_by_n(f, p->sub);
		if (err == 0 && (fr->type != FY_T_OK || fr->ok.sid == 0))
			err = lf_seterr(f, FERRY_EBADREPLY, "subscribe "
			    "answered without a subscription id");
		if (s != NULL && err == 0) {
			s->bsid = fr->ok.sid;
			s->pending = 0;
		} else if (s != NULL) {
			lf_sub_remove(f, s);
		}
		if (p->op == OP_INBOX) {
			if (err != 0)
				areq_fail_all(a, err);
		} else if (done != NULL) {
			done(a, err, p->arg);
		}
		return;
	case OP_UNSUB:
		s = lf_sub_by_n(f, p->sub);
		if (s != NULL && err == 0) {
			lf_purge(f, (uint64_t)f->gen << SID_GEN_SHIFT | p->sub);
			lf_sub_remove(f, s);
		} else if (s != NULL) {
			s->closing = 0;
		} else if (err == FERRY_ECLOSED) {
			err = 0;	/* reconnected meanwhile: it is gone */
		}
		if (done != NULL)
			done(a, err, p->arg);
		return;
	case OP_DONE:
		if (done != NULL)
			done(a, err, p->arg);
		return;
	case OP_QUERY:
		answer_query(a, p, fr, err);
		return;
	case OP_REQPUB:
		/* Success: the reply will tell.  The reply may even have come
		 * first (the confirm waits for the disk): then q is gone. */
		if (err != 0 && (q = areq_find(a, p->tag, NULL)) != NULL)
			areq_finish(a, q, err, NULL);
		return;
	}
}

/* Pass on what the core queued: deliveries, replies, async errors. */
static void
dispatch(struct ferry_async *a)
{
	struct ferry *f = a->f;
	struct ferry_async_error e;
	struct mnode *n;
	struct lsub *s;
	struct areq *q;

	while (!a->freeing && (n = f->mhead) != NULL) {
		f->mhead = n->next;
		if (f->mhead == NULL)
			f->mtail = &f->mhead;
		s = lf_sub_by_n(f, (uint32_t)n->msg.sid);
		if (s != NULL && !s->closing && s->fn != NULL)
			s->fn(a, &n->msg, s->arg);
		free(n);
	}
	while (!a->freeing && (n = f->rhead) != NULL) {
		f->rhead = n->next;
		if (f->rhead == NULL)
			f->rtail = &f->rhead;
		/* Others answer requests that gave up: dropped. */
		if ((q = areq_find(a, 0, n->msg.corr)) != NULL)
			areq_finish(a, q, 0, &n->msg);
		free(n);
	}
	while (!a->freeing && ferry_poll_error(f, &e))
		if (a->on_error != NULL)
			a->on_error(a, &e, a->arg);
}

/* --- Connection ----------------------------------------------------------- */

/* The core's closing() hook: lf_fatal() is about to close the socket. */
static void
on_closing(struct ferry *f)
{
	struct ferry_async *a = f->drv;

	/* Before the fd is closed and its number can be reused. */
	if (a->watching >= 0) {
		a->watching = -1;
		a->want_write = 0;
		a->loop.watch(a->loop.data, -1, 0);
	}
	/* Without reconnection, lf_fatal() goes on to fail every request:
	 * their callbacks must already see a dead handle. */
	if (!f->reconnecting && !lf_recoverable(f, f->err))
		a->state = ST_DEAD;
	a->lost = 1;
	arm(a);
}

/* The handle is dead: every waiting callback learns it. */
static void
die(struct ferry_async *a)
{
	struct ferry *f = a->f;

	a->state = ST_DEAD;
	f->reconnecting = 0;
	a->t_conn = 0;
	lf_fail_pending(f, f->err);
	areq_fail_all(a, f->err);
	if (a->outage && f->rc.fn != NULL && !a->freeing) {
		a->info.err = f->err;
		a->info.elapsed_ms = (uint64_t)(lf_now_ms() - a->out_start);
		f->rc.fn(f->rc.arg, &a->info);
	}
	status(a, FERRY_ASYNC_FAILED);
}

/* Can this failure be retried, within the reconnect limits? */
static int
may_retry(struct ferry_async *a)
{
	struct ferry *f = a->f;
	int err = f->err;

	if (!f->rc_on || f->close_code == FY_E_TOOBIG ||
	    f->close_code == FY_E_HANDSHAKE)
		return 0;
	if (err != FERRY_EIO && err != FERRY_ECLOSED &&
	    err != FERRY_EBADREPLY && err != FERRY_ECONNECT)
		return 0;
	if (f->rc.max_attempts && a->info.attempts >= f->rc.max_attempts)
		return 0;
	if (f->rc.max_time_ms &&
	    lf_now_ms() - a->out_start >= (int64_t)f->rc.max_time_ms)
		return 0;
	return 1;
}

/* Wait a jittered backoff before the next attempt. */
static void
schedule(struct ferry_async *a)
{
	struct ferry *f = a->f;
	unsigned cap = f->rc.max_backoff_ms ? f->rc.max_backoff_ms : 5000;
	int64_t wait = lf_jitter(f, a->backoff), left;

	if (f->rc.max_time_ms) {
		left = a->out_start + f->rc.max_time_ms - lf_now_ms();
		if (left < wait)
			wait = left > 0 ? left : 0;
	}
	a->backoff = a->backoff > cap / 2 ? cap : a->backoff * 2;
	a->state = ST_WAITING;
	a->t_conn = lf_now_ms() + wait;
	if (a->t_conn == 0)
		a->t_conn = 1;	/* 0 means none */
}

static void
start_outage(struct ferry_async *a)
{
	struct ferry *f = a->f;

	a->outage = 1;
	memset(&a->info, 0, sizeof(a->info));
	a->info.cause = f->err;
	a->out_start = lf_now_ms();
	a->backoff = f->rc.base_ms ? f->rc.base_ms : 100;
	if (a->ever) {
		f->gen++;	/* from now on, deliveries carry new sids */
		a->info.dropped = lf_mlist_free(&f->mhead, &f->mtail) +
		    lf_mlist_free(&f->rhead, &f->rtail);
	}
}

/* A connection, or an attempt at one, failed (closing() ran). */
static void
handle_lost(struct ferry_async *a)
{
	struct ferry *f = a->f;
	char why[FERRY_ERRSTR_LEN];

	a->lost = 0;
	if (a->freeing || f->err == 0)
		return;
	if (a->state == ST_DEAD) {
		die(a);
		return;
	}
	if (a->state == ST_CONNECTED) {
		f->lost = 0;
		f->reconnecting = 1;	/* lf_fatal() leaves it to us */
		start_outage(a);
		status(a, FERRY_ASYNC_DISCONNECTED);
		if (!a->freeing)
			schedule(a);
		return;
	}
	/* A failed attempt. */
	if (!a->outage)
		start_outage(a);
	if (!may_retry(a)) {
		if (a->info.attempts > 0) {
			snprintf(why, sizeof(why), "%s", f->errstr);
			lf_seterr(f, f->err, "reconnect gave up after %u "
			    "attempts: %.80s", a->info.attempts, why);
		}
		die(a);
		return;
	}
	schedule(a);
}

static void
connected(struct ferry_async *a)
{
	struct ferry *f = a->f;

	a->t_conn = 0;
	a->state = ST_CONNECTED;
	f->reconnecting = 0;
	if (!a->ever) {
		a->ever = 1;
		a->outage = 0;
		status(a, FERRY_ASYNC_CONNECTED);
		return;
	}
	f->nreconnects++;
	a->outage = 0;
	a->info.resubscribed = f->nsubs;
	a->info.elapsed_ms = (uint64_t)(lf_now_ms() - a->out_start);
	if (f->rc.fn != NULL && !a->freeing)
		f->rc.fn(f->rc.arg, &a->info);
	status(a, FERRY_ASYNC_RECONNECTED);
}

void
lf_async_read(struct ferry_async *a)
{
	struct ferry *f = a->f;

	enter(a);
	if (!lf_tls_ready(f)) {
		/* The handshake's turn: on to the frames once it is done
		 * (watch() then asks for writability if output waits). */
		a->tls_step = lf_tls_step(f);
	} else if (lf_read_some(f) > 0) {
		lf_process_input(f);
	}
	if (a->state == ST_CONNECTING && f->err == 0 && f->welcomed)
		connected(a);
	dispatch(a);
	kick(a);
	leave(a);
}

void
lf_async_write(struct ferry_async *a)
{
	struct ferry *f = a->f;
	socklen_t sl = sizeof(int);
	int soerr = 0;

	enter(a);
	if (!a->sock_ok) {
		if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			lf_fatal(f, FERRY_ECONNECT, "connect to %s:%d: %s",
			    f->host, f->port, strerror(soerr));
			goto out;
		}
		a->sock_ok = 1;
	}
	/* TLS first: frames wait until the handshake is done, and while
	 * it waits for the broker the write event would only spin. */
	if (!lf_tls_ready(f)) {
		int r = lf_tls_step(f);

		a->tls_step = r;
		if (r != 0)
			goto out;	/* failed, or waits: see watch() */
	}
	if (lf_wpending(f)) {
		a->wrote = 1;
		lf_write_some(f);
	}
out:
	kick(a);
	leave(a);
}

void
lf_async_timer(struct ferry_async *a)
{
	struct ferry *f = a->f;
	int64_t now = lf_now_ms();

	enter(a);
	a->t_armed = -1;	/* it fired */
	if (a->lost)
		handle_lost(a);
	if (!a->freeing && a->t_conn && now >= a->t_conn) {
		a->t_conn = 0;
		if (a->state == ST_WAITING) {
			a->info.attempts++;
			attempt(a);
		} else if (a->state == ST_CONNECTING) {
			lf_fatal(f, FERRY_ECONNECT, "%s:%d: no handshake "
			    "within %d ms", f->host, f->port, a->timeout_ms);
		}
	}
	if (!a->freeing)
		areq_expire(a, now);
	kick(a);
	leave(a);
}

/* A non-blocking connect() to the first address that takes one. */
static int
open_socket(struct ferry *f, int *fdp)
{
	struct addrinfo hints, *res, *ai;
	char portstr[16];
	int fd = -1, r, last = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%d", f->port);
	r = getaddrinfo(f->host, portstr, &hints, &res);
	if (r != 0)
		return lf_fatal(f, FERRY_ECONNECT, "%s: %s", f->host,
		    gai_strerror(r));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    errno == EINPROGRESS)
			break;
		last = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return lf_fatal(f, FERRY_ECONNECT, "connect to %s:%d: %s",
		    f->host, f->port, strerror(last));
	lf_tune_socket(fd);
	*fdp = fd;
	return 0;
}

static int
encode_hello(struct ferry *f)
{
	struct fy_frame fr;
	char cfirst[FY_SCRAM_MSG_MAX];

	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_HELLO;
	fr.hello.version = FY_PROTO_VERSION;
	fr.hello.name.p = f->name;
	fr.hello.name.len = (uint32_t)strlen(f->name);
	/* With a user, HELLO starts SCRAM; the core answers CHALLENGE. */
	if (lf_scram_hello(f, &fr, cfirst) < 0 || lf_encode(f, &fr) < 0)
		return -1;
	lf_scram_gate(f);
	return 0;
}

/*
 * One connection attempt.  The first one's buffer already holds HELLO and
 * what the caller asked for meanwhile; it is kept as long as none of it
 * went out, else the buffer starts over with HELLO and the handle's state
 * (lf_restore()), as after a loss.
 */
static void
attempt(struct ferry_async *a)
{
	struct ferry *f = a->f;
	int fd = -1;

	f->err = 0;
	f->close_code = 0;
	f->welcomed = 0;
	f->lost = 0;
	f->reconnecting = 1;
	a->state = ST_CONNECTING;
	a->sock_ok = 0;
	a->tls_step = 0;
	f->rstart = f->rend = f->rwant = 0;
	if (a->ever || a->wrote) {
		fy_enc_clear(&f->enc);
		f->wpos = 0;
		f->wnext = FLUSH_AT;
		f->nacks = 0;	/* leases of the old connection */
		f->rc_lost_subs = 0;
		a->info.resent = 0;	/* counts the last attempt's */
		if (encode_hello(f) < 0 || lf_restore(f, &a->info) < 0) {
			lf_fatal(f, FERRY_ENOMEM, "out of memory");
			return;
		}
	}
	a->wrote = 0;
	if (open_socket(f, &fd) < 0)
		return;
	f->fd = fd;
	if (f->tls_ctx != NULL && lf_tls_attach(f) < 0)
		return;
	a->t_conn = lf_now_ms() + a->timeout_ms;
	watch(a);	/* writable: the connect() is done */
}

/*
 * ferry_async_connect() for any loop: loop is copied; its cleanup() runs
 * when the handle is freed (also when this returns NULL).
 */
struct ferry_async *
lf_async_new(const char *host, int port, const struct ferry_async_opts *o,
    const struct lf_loop *loop)
{
	static const struct ferry_async_opts none;
	struct ferry_async *a;
	struct ferry *f;

	if (o == NULL)
		o = &none;
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		loop->cleanup(loop->data);
		return NULL;
	}
	a->loop = *loop;
	a->watching = -1;
	a->t_armed = -1;
	a->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms :
	    CONNECT_TIMEOUT_MS;
	a->on_status = o->on_status;
	a->on_error = o->on_error;
	a->arg = o->arg;
	a->f = f = lf_new(host, port, a->timeout_ms, o->name);
	if (f == NULL) {
		loop->cleanup(loop->data);
		free(a);
		return NULL;
	}
	f->drv = a;
	a->state = ST_DEAD;	/* until the checks pass */
	if (f->err)
		return a;	/* a bad name */
	if (o->login != NULL) {
		/* The same resolution as ferry_connect_opts(): what a CLI
		 * flag or URL says reaches both drivers alike. */
		int r = lf_opts_apply(f, o->login, o->login->url, host, port);

		if (r < 0) {
			f->err = r;
			return a;
		}
	} else if (port == 0) {
		f->port = FERRY_DEFAULT_PORT;
	}
	if (f->port <= 0 || f->port > 65535) {
		lf_fatal(f, FERRY_EINVAL, "invalid port %d", f->port);
		return a;
	}
	if (o->reconnect != NULL && lf_set_reconnect(f, o->reconnect) < 0) {
		f->err = FERRY_EINVAL;
		return a;
	}
	f->answer = on_answer;
	f->closing = on_closing;
	if (encode_hello(f) < 0) {
		lf_fatal(f, FERRY_ENOMEM, "out of memory");
		return a;
	}
	attempt(a);
	arm(a);		/* a failure is handled from the loop */
	return a;
}

static void
teardown(struct ferry_async *a)
{
	struct ferry *f = a->f;

	a->depth++;		/* callbacks below must not free again */
	f->closing = NULL;
	a->loop.cleanup(a->loop.data);	/* stops watching, before close */
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (a->state != ST_DEAD) {
		lf_seterr(f, FERRY_ECLOSED, "the handle was freed");
		lf_fail_pending(f, FERRY_ECLOSED);
		areq_fail_all(a, FERRY_ECLOSED);
	}
	lf_free(f);
	free(a);
}

void
ferry_async_free(struct ferry_async *a)
{
	if (a == NULL || a->freeing)
		return;
	a->freeing = 1;
	if (a->depth == 0)
		teardown(a);
}

int
ferry_async_err(const struct ferry_async *a)
{
	if (a == NULL)
		return FERRY_ENOMEM;
	return a->state == ST_DEAD ? a->f->err : 0;
}

const char *
ferry_async_errstr(const struct ferry_async *a)
{
	return a ? a->f->errstr : "out of memory";
}

uint64_t
ferry_async_reconnects(const struct ferry_async *a)
{
	return a->f->nreconnects;
}

size_t
ferry_async_buffered(const struct ferry_async *a)
{
	return a->f->fd >= 0 ? lf_wpending(a->f) : 0;
}

int
ferry_async_set_producer(struct ferry_async *a, const char *pid,
    uint64_t first_seq)
{
	return ferry_set_producer(a->f, pid, first_seq);
}

/* --- Requests ------------------------------------------------------------- */

/* A fresh PEND_ASYNC request id, or 0 when out of memory. */
static uint64_t
request(struct ferry_async *a, int op, void (*fn)(void), void *arg)
{
	struct ferry *f = a->f;
	uint64_t rid = lf_pend_new(f, PEND_ASYNC, 1);
	struct pend *p;

	if (rid == 0) {
		lf_seterr(f, FERRY_ENOMEM, "out of memory");
		return 0;
	}
	p = &f->pend[rid & (f->pcap - 1)];
	p->op = (uint8_t)op;
	p->fn = fn;
	p->arg = arg;
	return rid;
}

/* Encode fr with a request id for op (fn NULL: none, fire-and-forget). */
static int
send_frame(struct ferry_async *a, struct fy_frame *fr, int op,
    void (*fn)(void), void *arg, uint32_t sub)
{
	struct ferry *f = a->f;
	struct pend p;
	int r;

	fr->rid = 0;
	if (fn != NULL) {
		if ((fr->rid = request(a, op, fn, arg)) == 0)
			return FERRY_ENOMEM;
		f->pend[fr->rid & (f->pcap - 1)].sub = sub;
	}
	r = lf_encode(f, fr);
	if (r < 0 && fr->rid)
		lf_pend_take(f, fr->rid, &p);
	if (r == 0)
		kick(a);
	return r;
}

static int
check_topic(struct ferry_async *a, const char *topic, size_t *tlen)
{
	int r;

	*tlen = 0;
	if ((r = usable(a)) < 0)
		return r;
	if (topic == NULL)
		return lf_seterr(a->f, FERRY_EINVAL, "topic is NULL");
	*tlen = strnlen(topic, FERRY_NAME_MAX + 1);
	return lf_check_name(a->f, "topic", topic, *tlen);
}

/* A publish; op OP_PUB or OP_REQPUB (then tag is the areq's id). */
static int
publish(struct ferry_async *a, const char *topic, const void *body,
    size_t len, const struct ferry_pub_opts *o, int op, void (*fn)(void),
    void *arg, uint64_t tag)
{
	struct ferry *f = a->f;
	uint64_t rid = 0;
	struct pend p;
	size_t tlen;
	int r;

	if ((r = check_topic(a, topic, &tlen)) < 0)
		return r;
	if (fn != NULL) {
		if ((rid = request(a, op, fn, arg)) == 0)
			return FERRY_ENOMEM;
		f->pend[rid & (f->pcap - 1)].tag = tag;
	}
	/* Kept for re-sending (reconnect on), pid and seq included. */
	r = lf_encode_pub(f, topic, tlen, body, len, o, rid);
	if (r < 0) {
		if (rid)
			lf_pend_take(f, rid, &p);
		return r;
	}
	kick(a);
	return 0;
}

int
ferry_async_publish(struct ferry_async *a, const char *topic,
    const void *body, size_t len, const struct ferry_pub_opts *o,
    ferry_async_confirm_fn *fn, void *arg)
{
	return publish(a, topic, body, len, o, OP_PUB, (void (*)(void))fn,
	    arg, 0);
}

int
ferry_async_publish_batch(struct ferry_async *a, const char *topic,
    const struct ferry_pub_msg *msgs, size_t n, ferry_async_confirm_fn *fn,
    void *arg)
{
	struct ferry *f = a->f;
	struct lf_batch b;
	struct pend p;
	uint64_t rid = 0;
	size_t tlen;
	int r;

	if ((r = check_topic(a, topic, &tlen)) < 0 ||
	    (r = lf_batch_begin(f, &b, topic, tlen, msgs, n)) < 0)
		return r;
	while (r == 0 && lf_batch_next(f, &b)) {
		if (fn != NULL) {
			rid = request(a, OP_PUB, (void (*)(void))fn, arg);
			if (rid == 0) {
				r = FERRY_ENOMEM;
				break;
			}
			f->pend[rid & (f->pcap - 1)].nmsgs =
			    (uint32_t)(b.end - b.start);
			f->pend[rid & (f->pcap - 1)].tag = b.start;
		}
		if ((r = lf_batch_encode(f, &b, rid)) < 0 && rid)
			lf_pend_take(f, rid, &p);
	}
	/* Frames made before a failure (out of memory) go out, and are
	 * answered. */
	kick(a);
	return r;
}

/* Subscribe; the new subscription's n goes to *n. */
static int
subscribe(struct ferry_async *a, const char *topic,
    const struct ferry_sub_opts *o, ferry_async_msg_fn *msg_fn, int op,
    ferry_async_done_fn *done, void *arg, uint32_t *n)
{
	static const struct ferry_sub_opts none;
	struct ferry *f = a->f;
	struct lsub *s;
	size_t tlen, glen;
	uint64_t rid;
	int r;

	if ((r = check_topic(a, topic, &tlen)) < 0)
		return r;
	if (o == NULL)
		o = &none;
	if ((r = lf_sub_check(f, o, &glen)) < 0)
		return r;
	if ((s = lf_sub_add(f, topic, o, glen)) == NULL)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	s->fn = msg_fn;
	s->arg = arg;
	s->inbox = op == OP_INBOX;
	*n = s->n;
	/* A done_fn is needed to learn the sid: always ask for an answer. */
	if ((rid = request(a, op, (void (*)(void))done, arg)) == 0) {
		lf_sub_remove(f, s);
		return FERRY_ENOMEM;
	}
	f->pend[rid & (f->pcap - 1)].sub = s->n;
	if ((r = lf_encode_sub(f, s, rid)) < 0) {
		struct pend p;

		lf_pend_take(f, rid, &p);
		if ((s = lf_sub_by_n(f, *n)) != NULL)
			lf_sub_remove(f, s);
		return r;
	}
	kick(a);
	return 0;
}

int
ferry_async_subscribe(struct ferry_async *a, const char *topic,
    const struct ferry_sub_opts *o, ferry_async_msg_fn *msg_fn,
    ferry_async_done_fn *done, void *arg, uint64_t *sid)
{
	uint32_t n = 0;
	int r;

	if (sid != NULL)
		*sid = 0;
	if (msg_fn == NULL)
		return lf_seterr(a->f, FERRY_EINVAL, "no message callback");
	r = subscribe(a, topic, o, msg_fn, OP_SUB, done, arg, &n);
	if (r == 0 && sid != NULL)
		*sid = (uint64_t)a->f->gen << SID_GEN_SHIFT | n;
	return r;
}

/* A done_fn that does nothing, for requests whose answer only matters to
 * the library. */
static void
ignore_done(struct ferry_async *a, int err, void *arg)
{
}

int
ferry_async_unsubscribe(struct ferry_async *a, uint64_t sid,
    ferry_async_done_fn *done, void *arg)
{
	struct ferry *f = a->f;
	struct fy_frame fr;
	struct lsub *s;
	int r;

	if ((r = usable(a)) < 0)
		return r;
	s = lf_sub_by_n(f, (uint32_t)sid);
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_UNSUB;
	fr.unsub.sid = s ? s->bsid : 0;	/* 0: the broker says E_NOSUB */
	r = send_frame(a, &fr, OP_UNSUB, (void (*)(void))(done ? done :
	    ignore_done), arg, (uint32_t)sid);
	if (r == 0 && s != NULL)
		s->closing = 1;
	return r;
}

/* Start a settle frame of type for the delivery of sid. */
static int
settle_begin(struct ferry_async *a, struct fy_frame *fr, int type,
    uint64_t sid, uint64_t *bsid)
{
	int r;

	if ((r = usable(a)) < 0)
		return r;
	memset(fr, 0, sizeof(*fr));
	fr->type = type;
	return lf_settle_sid(a->f, sid, bsid);
}

int
ferry_async_ack(struct ferry_async *a, uint64_t sid, uint64_t lease,
    ferry_async_done_fn *done, void *arg)
{
	struct ferry *f = a->f;
	struct fy_frame fr;
	uint64_t bsid;
	int r;

	if ((r = settle_begin(a, &fr, FY_T_ACK, sid, &bsid)) < 0)
		return r;
	if (done == NULL && bsid) {
		/* Batched into one ACK frame per subscription and write. */
		if ((f->nacks && f->acks_sid != bsid) || f->nacks == ACKS_MAX)
			if ((r = lf_encode_acks(f)) < 0)
				return r;
		f->acks_sid = bsid;
		f->acks[f->nacks++] = lease;
		kick(a);
		return 0;
	}
	fr.ack.sid = bsid;
	fr.ack.one = lease;
	fr.ack.leases = &fr.ack.one;
	fr.ack.nleases = 1;
	return send_frame(a, &fr, OP_DONE, (void (*)(void))done, arg, 0);
}

int
ferry_async_nack(struct ferry_async *a, uint64_t sid, uint64_t lease,
    int64_t delay_ms, const char *error, ferry_async_done_fn *done,
    void *arg)
{
	struct fy_frame fr;
	uint64_t bsid;
	int r;

	if ((r = settle_begin(a, &fr, FY_T_NACK, sid, &bsid)) < 0)
		return r;
	fr.nack.sid = bsid;
	fr.nack.lease = lease;
	if (delay_ms >= 0) {
		fr.nack.delay_ms = (uint64_t)delay_ms;
		fr.nack.has_delay = 1;
	}
	if (error != NULL) {
		fr.nack.error.p = error;
		fr.nack.error.len = (uint32_t)strnlen(error, FY_ERRTEXT_MAX);
	}
	return send_frame(a, &fr, OP_DONE, (void (*)(void))done, arg, 0);
}

int
ferry_async_touch(struct ferry_async *a, uint64_t sid, uint64_t lease,
    ferry_async_done_fn *done, void *arg)
{
	struct fy_frame fr;
	uint64_t bsid;
	int r;

	if ((r = settle_begin(a, &fr, FY_T_TOUCH, sid, &bsid)) < 0)
		return r;
	fr.touch.sid = bsid;
	fr.touch.lease = lease;
	return send_frame(a, &fr, OP_DONE, (void (*)(void))done, arg, 0);
}

int
ferry_async_ping(struct ferry_async *a, ferry_async_done_fn *done,
    void *arg)
{
	struct fy_frame fr;
	int r;

	if ((r = usable(a)) < 0)
		return r;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_PING;
	return send_frame(a, &fr, OP_DONE, (void (*)(void))(done ? done :
	    ignore_done), arg, 0);
}

/* --- Administration ------------------------------------------------------ */

int
ferry_async_delete(struct ferry_async *a, const char *topic,
    const char *group, ferry_async_done_fn *done, void *arg)
{
	struct fy_frame fr;
	size_t tlen;
	int r;

	if ((r = check_topic(a, topic, &tlen)) < 0 ||
	    (r = lf_delete_frame(a->f, topic, tlen, group, &fr)) < 0)
		return r;
	return send_frame(a, &fr, OP_DONE, (void (*)(void))(done ? done :
	    ignore_done), arg, 0);
}

/* --- Request-reply -------------------------------------------------------- */

/* Subscribe to the handle's inbox, once per connection.  Its SUB goes out
 * before the request's PUB, and the broker handles a connection's frames
 * in order, so the inbox exists before anyone can reply. */
static int
inbox_open(struct ferry_async *a)
{
	struct ferry *f = a->f;
	struct ferry_sub_opts o;
	uint32_t n = 0;
	char u[37];
	int r;

	if (f->inbox_n != 0 && lf_sub_by_n(f, f->inbox_n) != NULL)
		return 0;
	lf_uuid_str(u);
	snprintf(f->inbox, sizeof(f->inbox), INBOX_PREFIX "%s", u);
	memset(&o, 0, sizeof(o));
	o.ephemeral = 1;
	o.mode = FERRY_AT_MOST_ONCE;
	o.prefetch = 1024;
	r = subscribe(a, f->inbox, &o, NULL, OP_INBOX, ignore_done, NULL, &n);
	if (r == 0)
		f->inbox_n = n;
	return r;
}

int
ferry_async_request(struct ferry_async *a, const char *topic,
    const void *body, size_t len, const struct ferry_pub_opts *o,
    int timeout_ms, ferry_async_reply_fn *fn, void *arg)
{
	struct ferry *f = a->f;
	struct ferry_pub_opts po;
	struct areq *q;
	int r;

	if ((r = usable(a)) < 0)
		return r;
	if (fn == NULL)
		return lf_seterr(f, FERRY_EINVAL, "no reply callback");
	if ((r = inbox_open(a)) < 0)
		return r;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	q->id = ++a->next_req;
	q->deadline = timeout_ms >= 0 ? lf_now_ms() + timeout_ms : -1;
	q->fn = fn;
	q->arg = arg;
	lf_uuid_str(q->corr);
	if (o != NULL)
		po = *o;
	else
		memset(&po, 0, sizeof(po));
	po.reply_to = f->inbox;
	po.corr = q->corr;
	po.mandatory = 1;
	r = publish(a, topic, body, len, &po, OP_REQPUB,
	    (void (*)(void))ignore_done, NULL, q->id);
	if (r < 0) {
		free(q);
		return r;
	}
	q->next = a->reqs;
	a->reqs = q;
	kick(a);	/* its deadline */
	return 0;
}

int
ferry_async_reply(struct ferry_async *a, const struct ferry_msg *request,
    const void *body, size_t len, ferry_async_confirm_fn *fn, void *arg)
{
	struct ferry_pub_opts po;

	if (request == NULL || request->reply_to == NULL ||
	    request->reply_to[0] == '\0')
		return lf_seterr(a->f, FERRY_EINVAL,
		    "the message asks for no reply");
	memset(&po, 0, sizeof(po));
	po.corr = request->corr && request->corr[0] ? request->corr : NULL;
	/* A requester that is gone must not leave the reply stored. */
	po.mandatory = 1;
	return ferry_async_publish(a, request->reply_to, body, len, &po, fn,
	    arg);
}

/* --- Inspection ----------------------------------------------------------- */

/* Send query q; its answer goes to fn (by answer_query()). */
static int
query(struct ferry_async *a, int q, const char *topic, const char *group,
    const char *id, void (*fn)(void), void *arg)
{
	struct ferry *f = a->f;
	struct fy_frame fr;
	struct pend p;
	int r;

	if ((r = usable(a)) < 0)
		return r;
	if (fn == NULL)
		return lf_seterr(f, FERRY_EINVAL, "no callback");
	if ((r = lf_query_frame(f, q, topic, group, id, &fr)) < 0)
		return r;
	if ((fr.rid = request(a, OP_QUERY, fn, arg)) == 0)
		return FERRY_ENOMEM;
	f->pend[fr.rid & (f->pcap - 1)].tag = (uint64_t)q;
	if ((r = lf_encode(f, &fr)) < 0) {
		lf_pend_take(f, fr.rid, &p);
		return r;
	}
	kick(a);
	return 0;
}

int
ferry_async_stats(struct ferry_async *a, const char *topic,
    ferry_async_stats_fn *fn, void *arg)
{
	return query(a, LF_Q_STATS, topic, NULL, NULL, (void (*)(void))fn,
	    arg);
}

int
ferry_async_stats_broker(struct ferry_async *a,
    ferry_async_broker_stats_fn *fn, void *arg)
{
	return query(a, LF_Q_BROKER, NULL, NULL, NULL, (void (*)(void))fn,
	    arg);
}

int
ferry_async_inflight(struct ferry_async *a, const char *topic,
    const char *group, ferry_async_inflight_fn *fn, void *arg)
{
	return query(a, LF_Q_INFLIGHT, topic, group, NULL,
	    (void (*)(void))fn, arg);
}

int
ferry_async_trace(struct ferry_async *a, const char *id,
    ferry_async_trace_fn *fn, void *arg)
{
	return query(a, LF_Q_TRACE, NULL, NULL, id, (void (*)(void))fn, arg);
}

int
ferry_async_peek(struct ferry_async *a, const char *topic, const char *group,
    ferry_async_peek_fn *fn, void *arg)
{
	return query(a, LF_Q_PEEK, topic, group, NULL, (void (*)(void))fn,
	    arg);
}
