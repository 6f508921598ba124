/*
 * conn.c - one client's byte stream: read frames, stage output, and send
 * it when the journal allows (the output gate, conn.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core.h"
#include "conn.h"
#include "journal.h"
#include "log.h"
#include "msg.h"
#include "options.h"

/* Bodies at least this large are sent by reference instead of copied:
 * below it a memcpy is cheaper than libevent's per-reference chain. */
#define BODY_REF_MIN 4096

/* Largest frame taken before the handshake is done: a HELLO or AUTH is
 * tiny, and a stranger who has not logged in must not make the broker
 * hold max_frame_size bytes per connection. */
#define HANDSHAKE_FRAME_MAX (64 * 1024)

/*
 * Bytes read from one connection per loop turn.  libevent takes at most
 * 4 KiB per readiness event, so a flat-out producer of small messages
 * cost an epoll_wait, a journal write and a send per ~25 messages; the
 * cap keeps one producer from holding the turn (and its flush) for long.
 */
#define READ_TURN_MAX (64 * 1024)

/* Write-side low watermark: paused deliveries resume below it. */
#define OUT_LOWAT (64 * 1024)

static const struct conn_ops *ops;

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void hs_timeout_cb(evutil_socket_t fd, short what, void *arg);

void
conn_set_ops(const struct conn_ops *o)
{
	ops = o;
}

static void
format_peer(char *buf, size_t len, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "local");
	}
}

struct conn *
conn_new(struct core *b, evutil_socket_t fd, const struct sockaddr *sa,
    int salen)
{
	return conn_new_tls(b, fd, sa, salen, NULL);
}

struct conn *
conn_new_tls(struct core *b, evutil_socket_t fd, const struct sockaddr *sa,
    int salen, struct ssl_st *ssl)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct timeval hs;
	int one = 1;

	if (!c) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		return NULL;
	}
	c->b = b;
	c->id = ++b->next_conn_id;
	c->state = CONN_HANDSHAKE;
	list_init(&c->subs);
	list_init(&c->blink);
	list_init(&c->flink);
	list_init(&c->wlink);
	list_init(&c->link);
	fy_enc_init(&c->enc);
	fy_enc_init(&c->durable);
	if (fy_dec_init(&c->dec) != FY_OK)
		goto fail;
	c->dec.requests_only = 1;	/* {t:64} is a wrong type, not a
					   WELCOME missing its "v" */
	if (sa && salen > 0)
		format_peer(c->peer, sizeof(c->peer), sa);
	else
		snprintf(c->peer, sizeof(c->peer), "local");
	snprintf(c->name, sizeof(c->name), "%s", c->peer);
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Deferred callbacks, as libevent asks for its OpenSSL filter:
	 * its reads and writes may run callbacks from inside each other. */
	if (ssl) {
		c->tls = 1;
		c->bev = bufferevent_openssl_socket_new(b->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (c->bev)
			bufferevent_openssl_set_allow_dirty_shutdown(c->bev,
			    1);
		else
			SSL_free(ssl);
		ssl = NULL;	/* the bufferevent owns it, or it is gone */
	} else {
		c->bev = bufferevent_socket_new(b->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	c->hs_timer = evtimer_new(b->base, hs_timeout_cb, c);
	c->big = evbuffer_new();
	if (!c->bev || !c->hs_timer || !c->big)
		goto fail;
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOWAT, 0);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0)
		goto fail;
	hs.tv_sec = b->opt->handshake_timeout_ms / 1000;
	hs.tv_usec = (b->opt->handshake_timeout_ms % 1000) * 1000;
	evtimer_add(c->hs_timer, &hs);
	list_add_tail(&b->conns, &c->link);
	b->nconns++;
	log_debug_kv(log_kv(NULL, NULL, c->peer), "%s: connected", c->peer);
	return c;
fail:
	log_warn_kv(log_kv(NULL, NULL, c->peer), "%s: cannot set up "
	    "connection: out of memory", c->peer);
	if (c->bev)
		bufferevent_free(c->bev);
	else
		evutil_closesocket(fd);
	if (c->hs_timer)
		event_free(c->hs_timer);
	if (c->big)
		evbuffer_free(c->big);
	fy_dec_fini(&c->dec);
	fy_enc_fini(&c->enc);
	fy_enc_fini(&c->durable);
	free(c);
	return NULL;
}

void
conn_free(struct conn *c)
{
	if (!c)
		return;
	if (ops)
		ops->closing(c);
	c->b->durable_waiting -= c->dq_n;
	free(c->dq);
	list_del(&c->link);
	list_del(&c->flink);
	list_del(&c->wlink);
	c->b->nconns--;
	if (c->bev)
		bufferevent_free(c->bev);
	evbuffer_free(c->big);
	event_free(c->hs_timer);
	fy_dec_fini(&c->dec);
	fy_enc_fini(&c->enc);
	fy_enc_fini(&c->durable);
	free(c);
}

static void
reap(struct conn *c)
{
	if (c->state == CONN_DEAD)
		return;
	c->state = CONN_DEAD;
	turn_want_reap(&c->b->turn, &c->link);
}

static size_t
staged_len(const struct conn *c)
{
	return c->enc.sb.size + evbuffer_get_length(c->big);
}

/* Nothing left to send, now or later: a closing connection can go. */
static int
all_sent(const struct conn *c)
{
	return !staged_len(c) && !c->dq_n &&
	    !evbuffer_get_length(bufferevent_get_output(c->bev));
}

void
conn_open(struct conn *c)
{
	const struct options *o = c->b->opt;

	c->state = CONN_OPEN;
	evtimer_del(c->hs_timer);
	if (o->idle_timeout_ms) {
		struct timeval idle = {
			.tv_sec = o->idle_timeout_ms / 1000,
			.tv_usec = (o->idle_timeout_ms % 1000) * 1000,
		};

		bufferevent_set_timeouts(c->bev, &idle, NULL);
	}
}

evutil_socket_t
conn_plain_fd(const struct conn *c)
{
	return c->tls ? -1 : bufferevent_getfd(c->bev);
}

void
conn_hold(struct conn *c)
{
	evtimer_del(c->hs_timer);
	bufferevent_disable(c->bev, EV_READ);
}

void
conn_close(struct conn *c)
{
	if (conn_is_closing(c))
		return;
	c->state = CONN_CLOSING;
	bufferevent_disable(c->bev, EV_READ);
	/* Other members get this connection's messages now, not later. */
	if (ops)
		ops->closing(c);
	/* Its last frames (an error, staged deliveries) leave as the
	 * journal allows, like any output: from conn_flush(). */
	conn_flush(c);
	if (all_sent(c))
		reap(c);
	/* else write_cb reaps once the farewell frames are written */
}

/* Close from a place that may be inside a loop over shared state: defer
 * everything but the state to the reap event. */
static void
conn_abort(struct conn *c)
{
	if (!conn_is_closing(c))
		bufferevent_disable(c->bev, EV_READ);
	reap(c);
}

void
conn_pause(struct conn *c)
{
	if (c->paused)
		return;
	c->paused = 1;
	bufferevent_disable(c->bev, EV_READ);
}

void
conn_resume(struct conn *c)
{
	if (!c->paused)
		return;
	c->paused = 0;
	if (conn_is_closing(c) || c->throttled)
		return;
	bufferevent_enable(c->bev, EV_READ);
	/* Frames already read raise no event: handle them from the loop,
	 * not from inside the pump that resumed us. */
	bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS |
	    BEV_TRIG_DEFER_CALLBACKS);
}

size_t
conn_outlen(const struct conn *c)
{
	return staged_len(c) +
	    evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* ---- the output gate ---- */

/*
 * May output waiting for record seq leave?  Yes once it is written, or if
 * it is not in the journal at all: a publish settled before its write is
 * taken back (store.c), and the next record may reuse its number; so may
 * a journal that is gone (ferryd stopping: everything was written).
 */
static int
written(const struct core *b, uint64_t seq)
{
	const struct journal *j = b->store.j;

	return !j || seq <= journal_written_seq(j) ||
	    seq >= journal_next_seq(j);
}

static int
confirmable(const struct core *b, uint64_t seq)
{
	const struct journal *j = b->store.j;

	if (b->opt->fsync != FSYNC_ALWAYS)
		return written(b, seq);
	return !j || seq <= journal_synced_seq(j) ||
	    seq >= journal_next_seq(j);
}

static void
staged(struct conn *c)
{
	if (list_empty(&c->flink))
		turn_want_flush(&c->b->turn, &c->flink);
}

void
conn_gate(struct conn *c, uint64_t seq)
{
	if (seq == STORE_SEQ_SETTLE)
		c->gate_settle = 1;
	else if (seq > c->gate)
		c->gate = seq;
}

/*
 * The gate for settlements buffered in the store: their record has no seq
 * until the store appends it (at the latest in the commit before the
 * turn's flush).  Once none is buffered, the newest record holding one
 * covers them.  Settlements buffered later hold this output back too,
 * until their own commit: later, never wrong.
 */
static int
settle_gate(struct conn *c)
{
	if (store_settle_pending(c->b))
		return 0;
	conn_gate(c, c->b->store.settle_seq);
	c->gate_settle = 0;
	return 1;
}

/* Move the durable replies whose records are confirmable to the staged
 * output, in order. */
static int
release_durable(struct conn *c)
{
	size_t from = c->durable_off, to = from;

	while (c->dq_n && confirmable(c->b, c->dq[c->dq_head].seq)) {
		to = c->dq[c->dq_head].end;
		c->dq_head = (c->dq_head + 1) % c->dq_cap;
		c->dq_n--;
		c->b->durable_waiting--;
	}
	if (to == from)
		return 0;
	if (msgpack_sbuffer_write(&c->enc.sb, c->durable.sb.data + from,
	    to - from) != 0)
		return -ENOMEM;
	c->durable_off = to;
	if (!c->dq_n) {
		fy_enc_clear(&c->durable);
		c->durable_off = 0;
	}
	return 0;
}

static void drained(struct conn *c);

void
conn_flush(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t off = 0, size;
	evutil_socket_t fd;
	int r = 0;

	list_del(&c->flink);
	if (c->state == CONN_DEAD)
		return;
	if (c->dq_n && release_durable(c) < 0)
		goto nomem;
	size = c->enc.sb.size;
	if (!size && !evbuffer_get_length(c->big))
		goto done;
	if ((c->gate_settle && !settle_gate(c)) || !written(c->b, c->gate))
		goto done;	/* conn_journal_progress() comes back */
	c->b->st.bytes_out += size + evbuffer_get_length(c->big);
	if (evbuffer_get_length(c->big)) {
		/* Large bodies by reference: one chain, moved, not copied. */
		if ((size && evbuffer_add(c->big, c->enc.sb.data, size) < 0) ||
		    evbuffer_add_buffer(out, c->big) < 0)
			goto nomem;
		fy_enc_clear(&c->enc);
		goto done;
	}
	/*
	 * Nothing is waiting in libevent's buffer: write now.  Handing the
	 * bytes to the bufferevent would cost every delivery another trip
	 * round the loop before its send.  What the socket does not take,
	 * and any error, is left to libevent.
	 */
	if (!evbuffer_get_length(out) && (fd = conn_plain_fd(c)) >= 0) {
		ssize_t n = send(fd, c->enc.sb.data, size,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0)
			off = (size_t)n;
	}
	if (off < size)
		r = bufferevent_write(c->bev, c->enc.sb.data + off, size - off);
	fy_enc_clear(&c->enc);
	if (r < 0)
		goto nomem;
	/* All sent: libevent will not call write_cb for it. */
	if (off == size && !conn_is_closing(c))
		drained(c);
done:
	if ((c->dq_n || staged_len(c)) && list_empty(&c->wlink))
		list_add_tail(&c->b->gated, &c->wlink);
	else if (!c->dq_n && !staged_len(c))
		list_del(&c->wlink);
	if (conn_is_closing(c) && all_sent(c))
		reap(c);
	return;
nomem:
	log_warn_kv(log_kv(NULL, NULL, c->peer), "%s: out of memory queueing "
	    "output", c->name);
	conn_abort(c);
}

void
conn_journal_progress(struct core *b)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &b->gated)
		conn_flush(list_entry(pos, struct conn, wlink));
}

uint64_t
conn_durable_waiting(const struct core *b)
{
	return b->durable_waiting;
}

int
conn_send(struct conn *c, const struct fy_frame *f)
{
	if (fy_encode(&c->enc, f) != FY_OK) {
		log_warn_kv(log_kv(NULL, NULL, c->peer), "%s: out of memory "
		    "encoding a reply", c->name);
		conn_abort(c);
		return -ENOMEM;
	}
	staged(c);
	return 0;
}

static void
unref_cb(const void *data, size_t len, void *arg)
{
	msg_unref(arg);
}

int
conn_send_msg(struct conn *c, const struct fy_frame *f, struct msg *m)
{
	conn_gate(c, m->seq);
	/* A body read back from the journal is in a read buffer: copied. */
	if (m->body_len < BODY_REF_MIN || msg_paged(m))
		return conn_send(c, f);
	/* Large body: stage the head, then a reference to the stored
	 * bytes, behind everything staged before it. */
	if (fy_encode_nobody(&c->enc, f) != FY_OK ||
	    evbuffer_add(c->big, c->enc.sb.data, c->enc.sb.size) < 0)
		goto nomem;
	fy_enc_clear(&c->enc);
	if (evbuffer_add_reference(c->big, msg_body(m), m->body_len, unref_cb,
	    msg_ref(m)) < 0) {
		msg_unref(m);
		goto nomem;
	}
	staged(c);
	return 0;
nomem:
	log_warn_kv(log_kv(NULL, NULL, c->peer), "%s: out of memory sending "
	    "a message", c->name);
	conn_abort(c);
	return -ENOMEM;
}

int
conn_send_durable(struct conn *c, uint64_t seq, const struct fy_frame *f)
{
	/* In order: none may pass an earlier one still waiting. */
	if (c->dq_n) {
		uint64_t last = c->dq[(c->dq_head + c->dq_n - 1) %
		    c->dq_cap].seq;

		if (seq < last)
			seq = last;
	} else if (confirmable(c->b, seq)) {
		return conn_send(c, f);
	}
	if (c->dq_n == c->dq_cap) {
		uint32_t cap = c->dq_cap ? c->dq_cap * 2 : 64;
		struct conn_durable *r = malloc(cap * sizeof(*r));

		if (!r)
			goto nomem;
		for (uint32_t i = 0; i < c->dq_n; i++)
			r[i] = c->dq[(c->dq_head + i) % c->dq_cap];
		free(c->dq);
		c->dq = r;
		c->dq_cap = cap;
		c->dq_head = 0;
	}
	if (fy_encode(&c->durable, f) != FY_OK)
		goto nomem;
	c->dq[(c->dq_head + c->dq_n) % c->dq_cap] = (struct conn_durable){
		seq, c->durable.sb.size};
	c->dq_n++;
	c->b->durable_waiting++;
	if (list_empty(&c->wlink))
		list_add_tail(&c->b->gated, &c->wlink);
	/* The journal learns at its commit that a confirm waits. */
	turn_want_commit(&c->b->turn);
	return 0;
nomem:
	log_warn_kv(log_kv(NULL, NULL, c->peer), "%s: out of memory queueing "
	    "a confirm", c->name);
	conn_abort(c);
	return -ENOMEM;
}

int
conn_send_err(struct conn *c, uint64_t rid, int code, uint64_t sid,
    const char *fmt, ...)
{
	struct fy_frame f = {.type = FY_T_ERR, .rid = rid};
	char text[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(text))
		n = sizeof(text) - 1;
	f.err.code = (uint32_t)code;
	f.err.msg = (struct fy_str){text, (uint32_t)n};
	f.err.sid = sid;
	log_debug_kv(log_kv(NULL, NULL, c->peer), "%s: error %s: %s", c->name,
	    fy_code_name(code), text);
	return conn_send(c, &f);
}

/* ---- input ---- */

void
conn_handle_input(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	uint32_t max;

	while (!conn_is_closing(c) && !c->throttled && !c->paused) {
		uint8_t hdr[FY_HDR_LEN];
		ev_ssize_t n = evbuffer_copyout(in, hdr, sizeof(hdr));
		struct fy_frame f;
		const char *field = NULL;
		size_t need;
		uint8_t *p;
		int r;

		max = c->state == CONN_HANDSHAKE && HANDSHAKE_FRAME_MAX <
		    c->b->opt->max_frame ? HANDSHAKE_FRAME_MAX :
		    c->b->opt->max_frame;
		r = fy_frame_need(hdr, n > 0 ? (size_t)n : 0, &need);
		if (r == FY_AGAIN)
			break;
		if (r == FY_OK && need - FY_HDR_LEN > max) {
			conn_send_err(c, 0, FY_E_TOOBIG, 0,
			    "frame of %zu bytes is above %s (%u)",
			    need - FY_HDR_LEN, c->state == CONN_HANDSHAKE ?
			    "the handshake's limit" : "max_frame_size", max);
			conn_close(c);
			return;
		}
		if (r != FY_OK) {
			conn_send_err(c, 0, FY_E_PROTO, 0,
			    "zero-length frame: framing lost");
			conn_close(c);
			return;
		}
		if (evbuffer_get_length(in) < need)
			break;		/* partial: wait */
		if (!(p = evbuffer_pullup(in, (ev_ssize_t)need))) {
			conn_send_err(c, 0, FY_E_INTERNAL, 0,
			    "out of memory");
			conn_close(c);
			return;
		}
		memset(&f, 0, sizeof(f));
		r = fy_decode(&c->dec, p + FY_HDR_LEN, need - FY_HDR_LEN, &f,
		    &field);
		ops->frame(c, r, &f, field);
		/* Decoded strings point into the buffer until here. */
		evbuffer_drain(in, need);
		c->b->st.bytes_in += need;
		/*
		 * A client that sends requests but never reads the replies
		 * must not grow our memory: stop reading it until its output
		 * drains (write_cb), like TCP would stop the sender.
		 */
		if (conn_outlen(c) > c->b->opt->max_output) {
			c->throttled = 1;
			bufferevent_disable(c->bev, EV_READ);
			log_debug_kv(log_kv(NULL, NULL, c->peer), "%s: output "
			    "above max_output_buffer: not "
			    "reading it until it drains", c->name);
		}
	}
	ops->read_end(c);
}

/* One readv() into in's free space: the bytes read, 0 if none. */
static size_t
read_into(struct evbuffer *in, evutil_socket_t fd, size_t want)
{
	struct evbuffer_iovec v[2];
	struct iovec iov[2];
	size_t left;
	ssize_t n;
	int i, nv;

	if ((nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2)) <= 0)
		return 0;
	for (i = 0; i < nv; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
	}
	do
		n = readv(fd, iov, nv);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		evbuffer_commit_space(in, v, 0);
		return 0;
	}
	for (i = 0, left = (size_t)n; i < nv; i++) {
		v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
		left -= v[i].iov_len;
	}
	evbuffer_commit_space(in, v, nv);
	return (size_t)n;
}

/*
 * Read what the socket holds beyond libevent's read, at most want bytes.
 * Returns the bytes read; 0 if there are none, and at EOF or an error,
 * which libevent's next read sees and reports (event_cb).
 */
static size_t
read_more(struct conn *c, size_t want)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evutil_socket_t fd = conn_plain_fd(c);
	size_t n;
	int avail = 0;

	/* Only what is there: an idle connection keeps no empty chain. */
	if (fd < 0 || ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
		return 0;
	if ((size_t)avail < want)
		want = (size_t)avail;
	/* The bufferevent keeps its input's end frozen but while it reads
	 * itself; so do we. */
	evbuffer_unfreeze(in, 0);
	n = read_into(in, fd, want);
	evbuffer_freeze(in, 0);
	return n;
}

/* Not before the handshake: HANDSHAKE_FRAME_MAX bounds what a stranger
 * makes us hold, frame by frame. */
static int
reading(const struct conn *c)
{
	return c->state == CONN_OPEN && !c->throttled && !c->paused;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	size_t budget = READ_TURN_MAX, n;

	turn_begin(&c->b->turn);
	ops->read_begin(arg);
	conn_handle_input(c);
	while (reading(c) && budget > 0 && (n = read_more(c, budget)) > 0) {
		budget -= n < budget ? n : budget;
		conn_handle_input(c);
	}
}

/* Output went below the low watermark: deliveries paused by its size may
 * go on, and a client throttled for not reading is read again. */
static void
drained(struct conn *c)
{
	ops->drained(c);
	if (c->throttled && conn_outlen(c) <= c->b->opt->max_output / 2) {
		c->throttled = 0;
		if (!c->paused)
			bufferevent_enable(c->bev, EV_READ);
		/* Frames already buffered raise no read event: handle them. */
		conn_handle_input(c);
	}
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (conn_is_closing(c)) {
		if (all_sent(c))
			reap(c);
		return;
	}
	drained(c);
	ops->read_end(c);
}

/* Why a TLS connection failed, e.g. a plain client on the TLS port. */
static void
log_tls_error(struct conn *c, struct bufferevent *bev)
{
	unsigned long e = bufferevent_get_openssl_error(bev);
	char why[256] = "connection error";

	if (e)
		ERR_error_string_n(e, why, sizeof(why));
	while (bufferevent_get_openssl_error(bev))
		;	/* one line per failure is enough */
	log_info_kv(log_kv(NULL, NULL, c->peer), "%s: TLS: %s", c->name, why);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
		char kv[96];

		snprintf(kv, sizeof(kv), "peer=%s", c->peer);
		log_info_kv(kv, "%s: idle for idle_timeout; closing",
		    c->name);
		conn_send_err(c, 0, FY_E_IDLE, 0,
		    "idle for %u ms (idle_timeout): closing",
		    c->b->opt->idle_timeout_ms);
		conn_close(c);
		return;
	}
	if (what & BEV_EVENT_EOF)
		log_debug_kv(log_kv(NULL, NULL, c->peer), "%s: disconnected",
		    c->name);
	else if ((what & BEV_EVENT_ERROR) && c->tls)
		log_tls_error(c, bev);
	else if (what & BEV_EVENT_ERROR)
		log_debug_kv(log_kv(NULL, NULL, c->peer), "%s: connection "
		    "error: %s", c->name,
		    evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
	else
		return;
	/* Nothing more can be written: drop output and free soon. */
	conn_close(c);
	evbuffer_drain(bufferevent_get_output(bev),
	    evbuffer_get_length(bufferevent_get_output(bev)));
	reap(c);
}

static void
hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	log_info_kv(log_kv(NULL, NULL, c->peer), "%s: no HELLO within the "
	    "handshake timeout; closing", c->peer);
	conn_send_err(c, 0, FY_E_HANDSHAKE, 0, "handshake timeout");
	conn_close(c);
}
