/*
 * sync.c - the blocking driver and API of libferry (see ferry.h).
 *
 * One non-blocking socket driven by poll(): a blocking API on a blocking fd
 * could deadlock when both sides write large buffers at once, so every wait
 * (lf_wait_for()) writes what is pending and reads what arrives, whatever
 * the caller waits for.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ferry-int.h"

/*
 * The one place that blocks: until done() holds, the connection fails, or
 * timeout_ms (< 0: no limit) passes.  Writes pending output and reads and
 * handles input all along, so neither side can stall the other.
 */
int
lf_wait_for(struct ferry *f, int timeout_ms, done_fn *done, void *arg)
{
	int64_t deadline = timeout_ms >= 0 ? lf_now_ms() + timeout_ms : -1;
	struct pollfd p;
	int n, wait;

	for (;;) {
		/* A lost connection comes back here (lf_recover()), and the
		 * wait goes on: resent publishes are answered anew. */
		if (f->err && lf_recover(f) < 0)
			return f->err;
		if (done(f, arg))
			return 0;
		if (lf_wpending(f) && lf_write_some(f) < 0)
			continue;
		if (done(f, arg))
			return 0;
		wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - lf_now_ms();

			wait = left > 0 ? (int)left : 0;
		}
		p.fd = f->fd;
		p.events = POLLIN | (lf_wpending(f) ? POLLOUT : 0);
		p.revents = 0;
		/* TLS may hold decrypted bytes the socket no longer shows. */
		if (lf_tls_pending(f)) {
			p.revents = POLLIN;
			n = 1;
		} else {
			n = poll(&p, 1, wait);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return lf_fatal(f, FERRY_EIO, "poll: %s",
			    strerror(errno));
		}
		if (n == 0) {
			if (deadline >= 0 && lf_now_ms() >= deadline)
				return lf_seterr(f, FERRY_ETIMEOUT,
				    "timed out after %d ms", timeout_ms);
			continue;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			if (lf_read_some(f) < 0)
				continue;
			if (lf_process_input(f) < 0)
				continue;
		}
	}
}

static int
done_flushed(struct ferry *f, void *arg)
{
	return lf_wpending(f) == 0;
}

static int
done_below(struct ferry *f, void *arg)
{
	return lf_wpending(f) < WBUF_MAX;
}

/*
 * After appending a frame: write once lf_flush_due(), and block only when
 * the broker does not keep up with a full buffer.
 */
static int
maybe_flush(struct ferry *f)
{
	if (!lf_flush_due(f))
		return 0;
	if (lf_write_some(f) < 0)
		return lf_recover(f);
	if (lf_wpending(f) < WBUF_MAX)
		return 0;
	return lf_wait_for(f, f->timeout_ms, done_below, NULL);
}

static int
done_reply(struct ferry *f, void *arg)
{
	return f->wdone;
}

/*
 * Wait (I/O timeout) for the answer to rid, a PEND_SYNC request already
 * encoded; on OK the answer's sid and first id are in f->wsid and f->wid.
 */
static int
wait_reply(struct ferry *f, uint64_t rid)
{
	int r;

	f->wrid = rid;
	f->wdone = 0;
	f->werr = 0;
	f->wsid = 0;
	f->wdups = 0;
	f->wid[0] = '\0';
	r = lf_wait_for(f, f->timeout_ms, done_reply, NULL);
	f->wrid = 0;
	if (r == FERRY_ETIMEOUT) {
		/* Its late answer must not be taken for another one's. */
		struct pend *p = &f->pend[rid & (f->pcap - 1)];

		if (p->kind != PEND_FREE) {
			p->kind = PEND_GONE;
			free(p->frame);
			p->frame = NULL;
		}
		return r;
	}
	if (r < 0)
		return r;
	return f->werr;
}

/* Send fr with a fresh rid and wait for its answer. */
int
lf_send_sync(struct ferry *f, struct fy_frame *fr)
{
	struct pend p;
	uint64_t rid;
	int r;

	rid = lf_pend_new(f, PEND_SYNC, 0);
	if (rid == 0)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	fr->rid = rid;
	r = lf_encode(f, fr);
	if (r < 0) {
		lf_pend_take(f, rid, &p);
		return r;
	}
	return wait_reply(f, rid);
}

static int
connect_addr(struct ferry *f, const struct addrinfo *ai, int64_t deadline)
{
	struct pollfd p;
	socklen_t sl;
	int fd, soerr = 0, n, wait;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS && errno != EINTR) {
			soerr = errno;
			close(fd);
			return -soerr;
		}
		for (;;) {
			wait = -1;
			if (deadline >= 0) {
				int64_t left = deadline - lf_now_ms();

				if (left <= 0) {
					close(fd);
					return -ETIMEDOUT;
				}
				wait = (int)left;
			}
			p.fd = fd;
			p.events = POLLOUT;
			n = poll(&p, 1, wait);
			if (n > 0)
				break;
			if (n < 0 && errno != EINTR) {
				soerr = errno;
				close(fd);
				return -soerr;
			}
		}
		sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			close(fd);
			return -soerr;
		}
	}
	lf_tune_socket(fd);
	f->fd = fd;
	return 0;
}

static int
done_welcome(struct ferry *f, void *arg)
{
	return f->welcomed || f->alen > *(unsigned *)arg;
}

void
lf_do_connect(struct ferry *f, const char *host, int port, int timeout_ms)
{
	struct addrinfo hints, *res, *ai;
	struct fy_frame fr;
	char portstr[16];
	int64_t deadline = timeout_ms >= 0 ? lf_now_ms() + timeout_ms : -1;
	int r, last = 0;
	int64_t left;
	unsigned alen0 = f->alen;	/* errors queued before: not ours */
	char cfirst[FY_SCRAM_MSG_MAX];

	if (port <= 0 || port > 65535) {
		lf_fatal(f, FERRY_EINVAL, "invalid port %d", port);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%d", port);
	r = getaddrinfo(host, portstr, &hints, &res);
	if (r != 0) {
		lf_fatal(f, FERRY_ECONNECT, "%s: %s", host, gai_strerror(r));
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		last = connect_addr(f, ai, deadline);
		if (last == 0)
			break;
	}
	freeaddrinfo(res);
	if (f->fd < 0) {
		lf_fatal(f, FERRY_ECONNECT, "connect to %s:%d: %s", host, port,
		    strerror(-last));
		return;
	}
	if (f->tls_ctx != NULL && lf_tls_handshake(f, host, port,
	    deadline) < 0)
		return;

	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_HELLO;
	fr.hello.version = FY_PROTO_VERSION;
	fr.hello.name.p = f->name;
	fr.hello.name.len = (uint32_t)strlen(f->name);
	if (lf_scram_hello(f, &fr, cfirst) < 0)
		return;
	if (lf_encode(f, &fr) < 0) {
		lf_fatal(f, FERRY_ENOMEM, "out of memory");
		return;
	}
	lf_scram_gate(f);
	left = deadline >= 0 ? deadline - lf_now_ms() : -1;
	r = lf_wait_for(f, deadline >= 0 ? (left > 0 ? (int)left : 0) : -1,
	    done_welcome, &alen0);
	if (r == FERRY_ETIMEOUT) {
		lf_fatal(f, FERRY_ECONNECT, "%s:%d: no handshake reply within "
		    "%d ms", host, port, timeout_ms);
		return;
	}
	if (r < 0 && f->close_code == FY_E_DENIED) {
		/* The broker does not say which of the two: neither can we. */
		f->err = 0;
		f->fd = -1;
		f->last_code = FY_E_DENIED;
		if (f->user != NULL)
			lf_fatal(f, FERRY_EDENIED, "%s:%d: login refused: wrong "
			    "password or unknown user \"%s\"", host, port,
			    f->user);
		else
			lf_fatal(f, FERRY_EDENIED, "%s:%d: the broker requires "
			    "a login (--user)", host, port);
		return;
	}
	if (r < 0 && f->alen <= alen0) {
		/* Keep the cause, but say it happened while connecting. */
		char why[FERRY_ERRSTR_LEN];

		snprintf(why, sizeof(why), "%s", f->errstr);
		f->err = 0;
		f->fd = -1;
		lf_fatal(f, FERRY_ECONNECT, "handshake with %s:%d: %s", host,
		    port, why);
		return;
	}
	if (!f->welcomed) {
		/* The refusal is the newest queued error. */
		struct ferry_async_error e;

		e = f->aerr[(f->ahead + f->alen - 1) % FERRY_ASYNC_MAX];
		f->alen--;
		f->err = 0;
		f->last_code = e.code;
		lf_fatal(f, e.err, "handshake refused: %s: %s",
		    fy_code_name(e.code), e.msg);
		return;
	}
}

struct ferry *
ferry_connect(const char *host, int port, int timeout_ms, const char *name)
{
	struct ferry *f = lf_new(host, port, timeout_ms, name);

	if (f == NULL || f->err)
		return f;
	lf_do_connect(f, f->host, port, timeout_ms > 0 ? timeout_ms : -1);
	return f;
}

void
ferry_close(struct ferry *f)
{
	if (f == NULL)
		return;
	f->rc_on = 0;		/* closing: do not reconnect to flush */
	if (f->err == 0 && f->fd >= 0 && lf_wpending(f))
		lf_wait_for(f, f->timeout_ms, done_flushed, NULL);
	lf_free(f);
}

void
ferry_set_timeout(struct ferry *f, int timeout_ms)
{
	f->timeout_ms = timeout_ms > 0 ? timeout_ms : -1;
}

int
ferry_flush(struct ferry *f)
{
	return lf_wait_for(f, f->timeout_ms, done_flushed, NULL);
}

int
ferry_ping(struct ferry *f)
{
	struct fy_frame fr;

	if (f->err && lf_recover(f) < 0)
		return f->err;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_PING;
	return lf_send_sync(f, &fr);
}

int
lf_check_topic(struct ferry *f, const char *topic, size_t *len)
{
	*len = 0;
	if (f->err && lf_recover(f) < 0)
		return f->err;
	if (topic == NULL)
		return lf_seterr(f, FERRY_EINVAL, "topic is NULL");
	*len = strnlen(topic, FERRY_NAME_MAX + 1);
	return lf_check_name(f, "topic", topic, *len);
}

int
ferry_publish(struct ferry *f, const char *topic, const void *body,
    size_t len, const struct ferry_pub_opts *o)
{
	size_t tlen;
	int r;

	r = lf_check_topic(f, topic, &tlen);
	if (r == 0)
		r = lf_encode_pub(f, topic, tlen, body, len, o, 0);
	if (r == 0)
		r = maybe_flush(f);
	return r;
}

int
ferry_publish_sync(struct ferry *f, const char *topic, const void *body,
    size_t len, const struct ferry_pub_opts *o, char *id)
{
	struct pend p;
	uint64_t rid;
	size_t tlen;
	int r;

	if (id != NULL)
		id[0] = '\0';
	r = lf_check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	rid = lf_pend_new(f, PEND_SYNC, 0);
	if (rid == 0)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	r = lf_encode_pub(f, topic, tlen, body, len, o, rid);
	if (r < 0) {
		lf_pend_take(f, rid, &p);
		return r;
	}
	r = wait_reply(f, rid);
	if (r == 0 && id != NULL)
		memcpy(id, f->wid, sizeof(f->wid));
	if (r == 0)
		f->last_dups = f->wdups;
	return r;
}

int
ferry_publish_pipelined(struct ferry *f, const char *topic,
    const void *body, size_t len, const struct ferry_pub_opts *o,
    uint64_t *rid)
{
	struct pend p;
	uint64_t r_id;
	size_t tlen;
	int r;

	if (rid != NULL)
		*rid = 0;
	r = lf_check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	r_id = lf_pend_new(f, PEND_PIPE, 1);
	if (r_id == 0)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	r = lf_encode_pub(f, topic, tlen, body, len, o, r_id);
	if (r < 0) {
		lf_pend_take(f, r_id, &p);
		return r;
	}
	f->pipe_pending++;
	if (rid != NULL)
		*rid = r_id;
	return maybe_flush(f);
}

int
ferry_publish_batch(struct ferry *f, const char *topic,
    const struct ferry_pub_msg *msgs, size_t n, int flags)
{
	struct lf_batch b;
	struct pend p;
	uint64_t rid = 0;
	size_t tlen;
	int r;

	r = lf_check_topic(f, topic, &tlen);
	if (r == 0)
		r = lf_batch_begin(f, &b, topic, tlen, msgs, n);
	while (r == 0 && lf_batch_next(f, &b)) {
		if (flags & FERRY_CONFIRM) {
			rid = lf_pend_new(f, PEND_PIPE,
			    (uint32_t)(b.end - b.start));
			if (rid == 0)
				return lf_seterr(f, FERRY_ENOMEM,
				    "out of memory");
		}
		if ((r = lf_batch_encode(f, &b, rid)) < 0) {
			if (rid)
				lf_pend_take(f, rid, &p);
			return r;
		}
		if (rid)
			f->pipe_pending += b.end - b.start;
		r = maybe_flush(f);
	}
	return r;
}

struct below {
	size_t max;
};

static int
done_confirms(struct ferry *f, void *arg)
{
	return f->pipe_pending <= ((struct below *)arg)->max;
}

int
ferry_wait_confirms(struct ferry *f, size_t max_pending, int timeout_ms,
    struct ferry_confirms *out)
{
	struct below b = { max_pending };
	int r;

	r = lf_wait_for(f, timeout_ms, done_confirms, &b);
	/* Also when there was nothing to wait for: push buffered frames. */
	if (r == 0 && lf_wpending(f))
		r = lf_write_some(f);
	if (out != NULL) {
		out->ok = f->c_ok;
		out->failed = f->c_failed;
		out->pending = f->pipe_pending;
		out->first_err = f->c_first_err;
	}
	f->c_ok = f->c_failed = 0;
	f->c_first_err = 0;
	return r;
}

/* --- Consuming ---------------------------------------------------------- */

/* The SUB's OK: the broker's sid of the subscription being made. */
static int
sub_ok(struct ferry *f, const struct fy_frame *fr)
{
	struct lsub *s = lf_sub_by_n(f, (uint32_t)(uintptr_t)f->wout);

	if (s != NULL && fr->type == FY_T_OK) {
		s->bsid = fr->ok.sid;
		s->pending = 0;
	}
	return 0;
}

/* Subscribe; *n gets the subscription's n. */
static int
subscribe(struct ferry *f, const char *topic, const struct ferry_sub_opts *o,
    int inbox, uint32_t *n)
{
	static const struct ferry_sub_opts none;
	struct lsub *s;
	struct pend p;
	size_t tlen, glen;
	uint64_t rid;
	uint32_t sn;
	int r;

	*n = 0;
	r = lf_check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	if (o == NULL)
		o = &none;
	if ((r = lf_sub_check(f, o, &glen)) < 0)
		return r;
	if ((s = lf_sub_add(f, topic, o, glen)) == NULL)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	s->inbox = inbox;
	sn = s->n;
	rid = lf_pend_new(f, PEND_SYNC, 0);
	if (rid == 0) {
		lf_sub_remove(f, s);
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	}
	r = lf_encode_sub(f, s, rid);
	if (r < 0) {
		lf_pend_take(f, rid, &p);
		lf_sub_remove(f, s);
		return r;
	}
	/* The table entry is in place before the OK is read: deliveries
	 * may follow it in the same read. */
	f->wcopy = sub_ok;
	f->wout = (void *)(uintptr_t)sn;
	r = wait_reply(f, rid);
	f->wcopy = NULL;
	f->wout = NULL;
	s = lf_sub_by_n(f, sn);
	if (r == 0 && (s == NULL || s->bsid == 0))
		r = lf_seterr(f, FERRY_EBADREPLY,
		    "subscribe answered without a subscription id");
	if (r < 0) {
		/* A late OK would subscribe us: unsubscribe then. */
		if (s != NULL)
			lf_sub_remove(f, s);
		return r;
	}
	*n = sn;
	return 0;
}

int
ferry_subscribe(struct ferry *f, const char *topic,
    const struct ferry_sub_opts *o, uint64_t *sid)
{
	uint32_t n;
	int r;

	if (sid != NULL)
		*sid = 0;
	r = subscribe(f, topic, o, 0, &n);
	if (r == 0 && sid != NULL)
		*sid = (uint64_t)f->gen << SID_GEN_SHIFT | n;
	return r;
}

int
ferry_unsubscribe(struct ferry *f, uint64_t sid)
{
	struct fy_frame fr;
	struct lsub *s;
	uint32_t n = (uint32_t)sid;
	uint64_t gen;
	int r;

	if (f->err && lf_recover(f) < 0)
		return f->err;
	s = lf_sub_by_n(f, n);
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_UNSUB;
	fr.unsub.sid = s ? s->bsid : 0;	/* 0: the broker says E_NOSUB */
	if (s != NULL)
		s->closing = 1;
	gen = f->gen;
	r = lf_send_sync(f, &fr);
	s = lf_sub_by_n(f, n);
	if (r == FERRY_ECLOSED && f->err == 0 && gen != f->gen && s == NULL)
		r = 0;		/* reconnected meanwhile: it is gone */
	if (s != NULL && r == 0)
		lf_sub_remove(f, s);
	else if (s != NULL)
		s->closing = 0;
	if (r == 0) {
		lf_purge(f, (uint64_t)f->gen << SID_GEN_SHIFT | n);
		if (n == f->inbox_n)
			f->inbox_n = 0;
	}
	return r;
}

/*
 * What ack, nack and touch do first: recover a lost connection if asked
 * to, start a frame of type, and find the broker's sid for sid.
 */
static int
settle_begin(struct ferry *f, struct fy_frame *fr, int type, uint64_t sid,
    uint64_t *bsid)
{
	if (f->err && lf_recover(f) < 0)
		return f->err;
	memset(fr, 0, sizeof(*fr));
	fr->type = type;
	return lf_settle_sid(f, sid, bsid);
}

static int
done_msg(struct ferry *f, void *arg)
{
	return f->mhead != NULL || f->alen > 0;
}

int
ferry_next(struct ferry *f, int timeout_ms, struct ferry_msg **m)
{
	struct ferry_async_error e;
	struct mnode *n;
	int r;

	*m = NULL;
	if (f->err && lf_recover(f) < 0)
		return f->err;
	if (f->mhead == NULL && f->alen == 0) {
		r = lf_wait_for(f, timeout_ms < 0 ? -1 : timeout_ms, done_msg,
		    NULL);
		if (r < 0)
			return r;
	} else if (lf_flush_due(f) && lf_write_some(f) < 0) {
		return f->err;
	}
	if (ferry_poll_error(f, &e)) {
		f->last_code = e.code;
		if (e.dropped)
			return lf_seterr(f, e.err, "%s: %s (%llu earlier async "
			    "errors dropped)", fy_code_name(e.code), e.msg,
			    (unsigned long long)e.dropped);
		return lf_seterr(f, e.err, "%s: %s", fy_code_name(e.code),
		    e.msg);
	}
	n = f->mhead;
	f->mhead = n->next;
	if (f->mhead == NULL)
		f->mtail = &f->mhead;
	n->next = NULL;
	*m = &n->msg;
	return 0;
}

/* Send a settle frame now and wait, or buffer it. */
static int
settle(struct ferry *f, struct fy_frame *fr, int flags)
{
	int r;

	if (flags & FERRY_CONFIRM)
		return lf_send_sync(f, fr);
	r = lf_encode(f, fr);
	if (r == 0)
		r = maybe_flush(f);
	return r;
}

int
ferry_ack(struct ferry *f, uint64_t sid, uint64_t lease, int flags)
{
	struct fy_frame fr;
	uint64_t bsid;
	int r;

	if ((r = settle_begin(f, &fr, FY_T_ACK, sid, &bsid)) < 0)
		return r;
	if (!(flags & FERRY_CONFIRM) && bsid) {
		if ((f->nacks && f->acks_sid != bsid) || f->nacks == ACKS_MAX)
			if ((r = lf_encode_acks(f)) < 0)
				return r;
		if (lf_wpending(f) == 0)
			/* ages like buffered output */
			f->wsince = lf_now_ms();
		f->acks_sid = bsid;
		f->acks[f->nacks++] = lease;
		return maybe_flush(f);
	}
	fr.ack.sid = bsid;
	fr.ack.one = lease;
	fr.ack.leases = &fr.ack.one;
	fr.ack.nleases = 1;
	return settle(f, &fr, flags);
}

int
ferry_nack(struct ferry *f, uint64_t sid, uint64_t lease, int64_t delay_ms,
    const char *error, int flags)
{
	struct fy_frame fr;
	uint64_t bsid;
	int r;

	if ((r = settle_begin(f, &fr, FY_T_NACK, sid, &bsid)) < 0)
		return r;
	fr.nack.sid = bsid;
	fr.nack.lease = lease;
	if (delay_ms >= 0) {
		fr.nack.delay_ms = (uint64_t)delay_ms;
		fr.nack.has_delay = 1;
	}
	if (error != NULL) {
		size_t n = strnlen(error, FY_ERRTEXT_MAX);

		fr.nack.error.p = error;
		fr.nack.error.len = (uint32_t)n;
	}
	return settle(f, &fr, flags);
}

int
ferry_touch(struct ferry *f, uint64_t sid, uint64_t lease, int flags)
{
	struct fy_frame fr;
	uint64_t bsid;
	int r;

	if ((r = settle_begin(f, &fr, FY_T_TOUCH, sid, &bsid)) < 0)
		return r;
	fr.touch.sid = bsid;
	fr.touch.lease = lease;
	return settle(f, &fr, flags);
}

/* --- Administration ------------------------------------------------------ */

int
ferry_delete(struct ferry *f, const char *topic, const char *group)
{
	struct fy_frame fr;
	size_t tlen, glen = 0;
	int r;

	r = lf_check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	if (group != NULL && group[0] != '\0') {
		glen = strnlen(group, FERRY_NAME_MAX + 1);
		r = lf_check_name(f, "group", group, glen);
		if (r < 0)
			return r;
	}
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_DELETE;
	fr.del.topic.p = topic;
	fr.del.topic.len = (uint32_t)tlen;
	if (glen) {
		fr.del.group.p = group;
		fr.del.group.len = (uint32_t)glen;
	}
	return lf_send_sync(f, &fr);
}

/* --- Request-reply -------------------------------------------------------- */

/* Subscribe to the handle's inbox, once. */
static int
inbox_open(struct ferry *f)
{
	struct ferry_sub_opts o;
	char u[37];

	if (f->inbox_n != 0 && lf_sub_by_n(f, f->inbox_n) != NULL)
		return 0;
	lf_uuid_str(u);
	snprintf(f->inbox, sizeof(f->inbox), INBOX_PREFIX "%s", u);
	memset(&o, 0, sizeof(o));
	o.ephemeral = 1;
	o.mode = FERRY_AT_MOST_ONCE;
	o.prefetch = 1024;
	return subscribe(f, f->inbox, &o, 1, &f->inbox_n);
}

struct want_reply {
	const char *corr;
	struct mnode *got;
};

/* Take the reply with our corr off the reply queue; drop others, which
 * answer requests that gave up. */
static int
done_request(struct ferry *f, void *arg)
{
	struct want_reply *w = arg;
	struct mnode *n;

	while (w->got == NULL && (n = f->rhead) != NULL) {
		f->rhead = n->next;
		if (f->rhead == NULL)
			f->rtail = &f->rhead;
		n->next = NULL;
		if (strcmp(n->msg.corr, w->corr) == 0)
			w->got = n;
		else
			free(n);
	}
	return w->got != NULL;
}

int
ferry_request(struct ferry *f, const char *topic, const void *body,
    size_t len, const struct ferry_pub_opts *o, int timeout_ms,
    struct ferry_msg **reply)
{
	struct ferry_pub_opts po;
	struct want_reply w;
	char corr[37];
	int64_t deadline = timeout_ms >= 0 ? lf_now_ms() + timeout_ms : -1;
	int r, saved = f->timeout_ms;
	int64_t left;

	*reply = NULL;
	if (f->err && lf_recover(f) < 0)
		return f->err;
	if (o != NULL)
		po = *o;
	else
		memset(&po, 0, sizeof(po));
	r = inbox_open(f);
	if (r < 0)
		return r;
	lf_uuid_str(corr);
	po.reply_to = f->inbox;
	po.corr = corr;
	po.mandatory = 1;
	/* The publish itself waits no longer than the request may. */
	if (deadline >= 0) {
		left = deadline - lf_now_ms();
		f->timeout_ms = left > 0 ? (int)left : 1;
		if (saved > 0 && saved < f->timeout_ms)
			f->timeout_ms = saved;
	}
	r = ferry_publish_sync(f, topic, body, len, &po, NULL);
	f->timeout_ms = saved;
	if (r < 0)
		return r;
	w.corr = corr;
	w.got = NULL;
	left = deadline >= 0 ? deadline - lf_now_ms() : -1;
	r = lf_wait_for(f, deadline >= 0 ? (left > 0 ? (int)left : 0) : -1,
	    done_request, &w);
	if (w.got != NULL) {
		*reply = &w.got->msg;
		return 0;
	}
	if (r == FERRY_ETIMEOUT)
		return lf_seterr(f, FERRY_ETIMEOUT,
		    "no reply from %s within %d ms", topic, timeout_ms);
	return r;
}

int
ferry_reply(struct ferry *f, const struct ferry_msg *request,
    const void *body, size_t len)
{
	struct ferry_pub_opts po;

	if (f->err && lf_recover(f) < 0)
		return f->err;
	if (request == NULL || request->reply_to == NULL ||
	    request->reply_to[0] == '\0')
		return lf_seterr(f, FERRY_EINVAL,
		    "the message asks for no reply");
	memset(&po, 0, sizeof(po));
	po.corr = request->corr && request->corr[0] ? request->corr : NULL;
	/* A requester that is gone must not leave the reply stored in its
	 * inbox topic forever. */
	po.mandatory = 1;
	return ferry_publish_sync(f, request->reply_to, body, len, &po, NULL);
}
