/*
 * libferry.c - the blocking ferry client (see ferry.h for the contract).
 *
 * One non-blocking socket driven by poll(): a blocking API on a blocking fd
 * could deadlock when both sides write large buffers at once, so every wait
 * (wait_for()) writes what is pending and reads what arrives, whatever the
 * caller waits for.  Frames are appended to one fy_enc buffer and written
 * in large chunks; input is read into one growable buffer and every complete
 * frame in it is handled: MSG frames are copied into caller-owned messages
 * and queued, answers are matched to their request by rid, ERR frames
 * without rid are queued as async errors.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "frame.h"
#include "ferry.h"

#define READ_CHUNK (64 * 1024)	/* free space kept for each recv() */
#define RBUF_INIT (256 * 1024)
#define FLUSH_AT (64 * 1024)	/* buffered output that triggers a write */
#define FLUSH_MS 2		/* age of buffered output that triggers one */
#define WBUF_MAX (4 * 1024 * 1024) /* buffered output that blocks the caller */
#define MAX_FRAME_DEFAULT (16u * 1024 * 1024) /* until WELCOME says */
#define FRAME_SLACK 4096	/* room for keys around a max-size body */

/* What an outstanding request id stands for. */
enum {
	PEND_FREE = 0,		/* answered, or never used */
	PEND_PIPE,		/* pipelined publish: count and call back */
	PEND_SYNC,		/* the caller is waiting in send_sync() */
	PEND_GONE,		/* the caller gave up: drop the answer */
};

struct pend {
	uint32_t nmsgs;		/* messages in a pipelined publish */
	uint8_t kind;
};

/* A queued delivery: the message and its strings in one allocation. */
struct mnode {
	struct mnode *next;
	struct ferry_msg msg;	/* what the caller sees; freed via its node */
};

struct ferry {
	int fd;			/* -1 once closed */
	int err;		/* fatal error: sticky, 0 while usable */
	int last_code;		/* broker code of the latest broker error */
	char errstr[FERRY_ERRSTR_LEN];
	int timeout_ms;		/* I/O timeout, -1 = none */
	char name[FERRY_NAME_MAX + 1];

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
};

typedef int done_fn(struct ferry *f, void *arg);

static const char *const errtext[] = {
	[0] = "success",
	[1] = "malformed frame (client bug)",
	[2] = "frame too large",
	[3] = "handshake refused",
	[4] = "unknown frame type",
	[5] = "invalid topic or group name",
	[6] = "bad argument",
	[7] = "no such subscription",
	[8] = "stale lease",
	[9] = "message too large",
	[10] = "no such topic or group",
	[11] = "broker limit reached",
	[12] = "queue full",
	[13] = "broker cannot write to disk",
	[14] = "broker internal error",
	[15] = "subscription ended: group deleted",
	[16] = "broker shutting down",
	[17] = "not valid in this subscription mode",
};

const char *
ferry_strerror(int err)
{
	switch (err) {
	case FERRY_EBROKER:
		return "broker error";
	case FERRY_EIO:
		return "I/O error";
	case FERRY_ECLOSED:
		return "connection closed by broker";
	case FERRY_ECONNECT:
		return "cannot connect";
	case FERRY_EBADREPLY:
		return "invalid data from broker";
	case FERRY_ETIMEOUT:
		return "timed out";
	case FERRY_ENOMEM:
		return "out of memory";
	case FERRY_EINVAL:
		return "invalid argument";
	}
	if (err <= 0 && -err < (int)(sizeof(errtext) / sizeof(errtext[0])))
		return errtext[-err];
	if (FERRY_IS_BROKER_ERROR(err))
		return "broker error";
	return "unknown error";
}

int
ferry_retryable(int err)
{
	return err == FERRY_EFULL || err == FERRY_EDISK ||
	    err == FERRY_EINTERNAL || err == FERRY_ESHUTDOWN ||
	    err == FERRY_ETIMEOUT;
}

static int
code_err(uint32_t code)
{
	if (code >= 1 && code <= 98)
		return -(int)code;
	return FERRY_EBROKER;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copy a borrowed string into dst (size n), truncating, NUL-terminated. */
static void
strcopy(char *dst, size_t n, struct fy_str s)
{
	size_t len = s.len < n - 1 ? s.len : n - 1;

	if (len)
		memcpy(dst, s.p, len);
	dst[len] = '\0';
}

__attribute__((format(printf, 3, 4)))
static int
seterr(struct ferry *f, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->errstr, sizeof(f->errstr), fmt, ap);
	va_end(ap);
	return err;
}

/* Record a refusal by the broker; the connection stays usable. */
static int
broker_err(struct ferry *f, uint32_t code, struct fy_str msg)
{
	f->last_code = (int)code;
	return seterr(f, code_err(code), "%s: %.*s", fy_code_name((int)code),
	    (int)msg.len, msg.p ? msg.p : "");
}

static void
confirm(struct ferry *f, uint64_t rid, uint32_t nmsgs, int err, int code,
    const char *id, const char *errmsg)
{
	struct ferry_confirm c;

	f->pipe_pending -= nmsgs;
	if (err == 0) {
		f->c_ok += nmsgs;
	} else {
		f->c_failed += nmsgs;
		if (f->c_first_err == 0)
			f->c_first_err = err;
	}
	if (f->cb == NULL)
		return;
	c.rid = rid;
	c.err = err;
	c.code = code;
	c.nmsgs = nmsgs;
	c.id = id;
	c.errmsg = errmsg;
	f->cb(f->cb_arg, &c);
}

/*
 * The connection is unusable: close it, and fail every pipelined publish
 * still outstanding, so that counts and callbacks account for each one.
 */
__attribute__((format(printf, 3, 4)))
static int
fatal(struct ferry *f, int err, const char *fmt, ...)
{
	va_list ap;
	uint64_t rid;

	if (f->err)
		return f->err;
	va_start(ap, fmt);
	vsnprintf(f->errstr, sizeof(f->errstr), fmt, ap);
	va_end(ap);
	f->err = err;
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	for (rid = f->plo; rid < f->next_rid; rid++) {
		struct pend *p = &f->pend[rid & (f->pcap - 1)];

		if (p->kind == PEND_PIPE)
			confirm(f, rid, p->nmsgs, err, 0, "", f->errstr);
		p->kind = PEND_FREE;
	}
	f->plo = f->next_rid;
	return err;
}

/* --- Request ids ----------------------------------------------------- */

static int
pend_grow(struct ferry *f)
{
	size_t ncap = f->pcap ? f->pcap * 2 : 1024;
	struct pend *np = calloc(ncap, sizeof(*np));
	uint64_t rid;

	if (np == NULL)
		return -1;
	for (rid = f->plo; rid < f->next_rid; rid++)
		np[rid & (ncap - 1)] = f->pend[rid & (f->pcap - 1)];
	free(f->pend);
	f->pend = np;
	f->pcap = ncap;
	return 0;
}

/* A fresh rid of the given kind, or 0 when out of memory. */
static uint64_t
pend_new(struct ferry *f, int kind, uint32_t nmsgs)
{
	struct pend *p;
	uint64_t rid;

	if (f->next_rid - f->plo >= f->pcap && pend_grow(f) < 0)
		return 0;
	rid = f->next_rid++;
	p = &f->pend[rid & (f->pcap - 1)];
	p->kind = (uint8_t)kind;
	p->nmsgs = nmsgs;
	return rid;
}

/* Take rid's entry out of the ring; NULL if it is not outstanding. */
static struct pend *
pend_take(struct ferry *f, uint64_t rid, struct pend *out)
{
	struct pend *p;

	if (rid < f->plo || rid >= f->next_rid)
		return NULL;
	p = &f->pend[rid & (f->pcap - 1)];
	if (p->kind == PEND_FREE)
		return NULL;
	*out = *p;
	p->kind = PEND_FREE;
	while (f->plo < f->next_rid &&
	    f->pend[f->plo & (f->pcap - 1)].kind == PEND_FREE)
		f->plo++;
	return out;
}

/* --- Input ------------------------------------------------------------ */

static void
async_push(struct ferry *f, int code, uint64_t sid, struct fy_str msg)
{
	struct ferry_async_error *e;

	if (f->alen == FERRY_ASYNC_MAX) {
		/* Keep the newest: drop the oldest. */
		f->ahead = (f->ahead + 1) % FERRY_ASYNC_MAX;
		f->alen--;
		f->adropped++;
	}
	e = &f->aerr[(f->ahead + f->alen++) % FERRY_ASYNC_MAX];
	e->err = code_err((uint32_t)code);
	e->code = code;
	e->sid = sid;
	e->dropped = 0;
	strcopy(e->msg, sizeof(e->msg), msg);
}

static struct mnode *
msg_copy(const struct fy_frame *fr)
{
	const uint32_t nh = fr->msg.nhdr, ns = fr->msg.nhist;
	size_t size = sizeof(struct mnode), i;
	struct ferry_header *hdr;
	struct ferry_hist *hist;
	struct mnode *n;
	char *p;

	/* The arrays first (pointer-aligned after the node), then strings;
	 * every length is bounded by the frame, so the sum cannot wrap. */
	size += nh * sizeof(*hdr) + ns * sizeof(*hist);
	size += fr->msg.body.len + 1 + fr->msg.id.len + 1 +
	    fr->msg.topic.len + 1;
	for (i = 0; i < nh; i++)
		size += fr->msg.hdr[i].k.len + fr->msg.hdr[i].v.len + 2;
	for (i = 0; i < ns; i++)
		size += fr->msg.hist[i].cause.len + fr->msg.hist[i].error.len +
		    fr->msg.hist[i].consumer.len + 3;
	n = malloc(size);
	if (n == NULL)
		return NULL;
	hdr = (struct ferry_header *)(n + 1);
	hist = (struct ferry_hist *)(hdr + nh);
	p = (char *)(hist + ns);

#define PUT(dst, s) do {						\
		(dst) = p;						\
		if ((s).len)						\
			memcpy(p, (s).p, (s).len);			\
		p[(s).len] = '\0';					\
		p += (s).len + 1;					\
	} while (0)
	n->next = NULL;
	n->msg.sid = fr->msg.sid;
	n->msg.lease = fr->msg.lease;
	n->msg.attempt = fr->msg.attempt;
	n->msg.ts_ms = fr->msg.ts;
	n->msg.len = fr->msg.body.len;
	PUT(n->msg.body, fr->msg.body);
	PUT(n->msg.id, fr->msg.id);
	PUT(n->msg.topic, fr->msg.topic);
	for (i = 0; i < nh; i++) {
		PUT(hdr[i].key, fr->msg.hdr[i].k);
		PUT(hdr[i].value, fr->msg.hdr[i].v);
	}
	for (i = 0; i < ns; i++) {
		PUT(hist[i].cause, fr->msg.hist[i].cause);
		PUT(hist[i].error, fr->msg.hist[i].error);
		PUT(hist[i].consumer, fr->msg.hist[i].consumer);
		hist[i].at_ms = fr->msg.hist[i].at;
	}
#undef PUT
	n->msg.hdr = nh ? hdr : NULL;
	n->msg.nhdr = nh;
	n->msg.hist = ns ? hist : NULL;
	n->msg.nhist = ns;
	return n;
}

/* Drop buffered deliveries of a subscription that ended: their leases are
 * void, the broker has put the messages back. */
static void
purge(struct ferry *f, uint64_t sid)
{
	struct mnode **pp, *n;

	for (pp = &f->mhead; (n = *pp) != NULL;) {
		if (n->msg.sid == sid) {
			*pp = n->next;
			free(n);
		} else {
			pp = &n->next;
		}
	}
	f->mtail = pp;
}

/* An OK or ERR with a rid: hand it to whoever sent the request. */
static void
handle_reply(struct ferry *f, const struct fy_frame *fr)
{
	struct pend p;
	char id[FERRY_ID_MAX + 1] = "";
	char msg[FERRY_ERRSTR_LEN] = "";
	int ok = fr->type == FY_T_OK;

	if (pend_take(f, fr->rid, &p) == NULL)
		return;		/* not ours, or answered twice: ignore */
	if (ok && fr->ok.nids > 0)
		strcopy(id, sizeof(id), fr->ok.ids[0]);
	if (!ok)
		strcopy(msg, sizeof(msg), fr->err.msg);
	switch (p.kind) {
	case PEND_PIPE:
		if (ok)
			confirm(f, fr->rid, p.nmsgs, 0, 0, id, "");
		else
			confirm(f, fr->rid, p.nmsgs, code_err(fr->err.code),
			    (int)fr->err.code, "", msg);
		break;
	case PEND_SYNC:
		if (fr->rid != f->wrid)
			break;
		f->wdone = 1;
		if (ok) {
			f->werr = 0;
			f->wsid = fr->ok.sid;
			memcpy(f->wid, id, sizeof(id));
		} else {
			f->werr = broker_err(f, fr->err.code, fr->err.msg);
		}
		break;
	default:
		break;		/* PEND_GONE: nobody waits any more */
	}
}

static int
handle_frame(struct ferry *f, const struct fy_frame *fr)
{
	struct mnode *n;

	switch (fr->type) {
	case FY_T_MSG:
		n = msg_copy(fr);
		if (n == NULL)
			return fatal(f, FERRY_ENOMEM,
			    "out of memory receiving a message");
		*f->mtail = n;
		f->mtail = &n->next;
		return 0;
	case FY_T_OK:
		if (fr->rid)
			handle_reply(f, fr);
		return 0;
	case FY_T_ERR:
		if (fr->rid) {
			handle_reply(f, fr);
			return 0;
		}
		/* These announce that the broker closes the connection. */
		if (fr->err.code == FY_E_TOOBIG ||
		    fr->err.code == FY_E_HANDSHAKE ||
		    fr->err.code == FY_E_SHUTDOWN)
			f->close_code = (int)fr->err.code;
		if (fr->err.code == FY_E_DELETED && fr->err.sid)
			purge(f, fr->err.sid);
		async_push(f, (int)fr->err.code, fr->err.sid, fr->err.msg);
		return 0;
	case FY_T_WELCOME:
		if (f->welcomed)
			return 0;
		f->welcomed = 1;
		strcopy(f->server, sizeof(f->server), fr->welcome.server);
		if (fr->welcome.max_frame)
			f->max_frame = fr->welcome.max_frame;
		if (fr->welcome.max_msg)
			f->max_msg = fr->welcome.max_msg;
		/* Deliveries carry more than a body (headers, history):
		 * be lenient, buffers only grow to what arrives. */
		f->rmax = 2 * (f->max_frame > f->max_msg ? f->max_frame :
		    f->max_msg) + FRAME_SLACK;
		return 0;
	default:
		return 0;	/* from a newer broker: not for us */
	}
}

/* Handle every complete frame in the read buffer. */
static int
process_input(struct ferry *f)
{
	struct fy_frame fr;
	const char *field;
	size_t need;
	int r;

	while (f->err == 0) {
		size_t avail = f->rend - f->rstart;

		r = fy_frame_need(f->rbuf + f->rstart, avail, &need);
		if (r == FY_AGAIN)
			break;
		if (r != FY_OK)
			return fatal(f, FERRY_EBADREPLY,
			    "broker sent a zero-length frame");
		if (need > f->rmax)
			return fatal(f, FERRY_EBADREPLY,
			    "broker sent a %zu-byte frame (limit %zu)", need,
			    f->rmax);
		if (avail < need) {
			f->rwant = need;
			break;
		}
		field = NULL;
		r = fy_decode(&f->dec, f->rbuf + f->rstart + FY_HDR_LEN,
		    need - FY_HDR_LEN, &fr, &field);
		/* fr borrows from rbuf; nothing below moves rbuf. */
		f->rstart += need;
		f->rwant = 0;
		if (r == FY_ETYPE)
			continue;	/* from a newer broker */
		if (r == FY_ENOMEM)
			return fatal(f, FERRY_ENOMEM,
			    "out of memory decoding a frame");
		if (r != FY_OK)
			return fatal(f, FERRY_EBADREPLY,
			    "cannot decode a frame from the broker%s%s",
			    field ? ": field " : "", field ? field : "");
		r = handle_frame(f, &fr);
		if (r < 0)
			return r;
	}
	if (f->rstart == f->rend)
		f->rstart = f->rend = 0;
	return f->err;
}

/* Read what is available.  1 if bytes came, 0 if none, <0 fatal. */
static int
read_some(struct ferry *f)
{
	ssize_t n;

	if (f->rstart > 0 && (f->rcap - f->rend < READ_CHUNK ||
	    f->rcap - f->rstart < f->rwant)) {
		memmove(f->rbuf, f->rbuf + f->rstart, f->rend - f->rstart);
		f->rend -= f->rstart;
		f->rstart = 0;
	}
	if (f->rcap - f->rend < READ_CHUNK || f->rcap < f->rwant) {
		size_t ncap = f->rcap * 2;
		uint8_t *nb;

		if (ncap < f->rwant + READ_CHUNK)
			ncap = f->rwant + READ_CHUNK;
		nb = realloc(f->rbuf, ncap);
		if (nb == NULL)
			return fatal(f, FERRY_ENOMEM,
			    "out of memory growing the read buffer");
		f->rbuf = nb;
		f->rcap = ncap;
	}
	for (;;) {
		n = recv(f->fd, f->rbuf + f->rend, f->rcap - f->rend,
		    MSG_DONTWAIT);
		if (n > 0) {
			f->rend += (size_t)n;
			return 1;
		}
		if (n == 0) {
			if (f->close_code)
				return fatal(f, FERRY_ECLOSED,
				    "connection closed by broker (%s)",
				    fy_code_name(f->close_code));
			return fatal(f, FERRY_ECLOSED,
			    "connection closed by broker");
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == ECONNRESET)
			return fatal(f, FERRY_ECLOSED,
			    "connection reset by broker");
		return fatal(f, FERRY_EIO, "recv: %s", strerror(errno));
	}
}

/* --- Output ----------------------------------------------------------- */

static size_t
wpending(const struct ferry *f)
{
	return f->enc.sb.size - f->wpos;
}

/* Write what the socket takes now.  0 or a fatal error. */
static int
write_some(struct ferry *f)
{
	msgpack_sbuffer *sb = &f->enc.sb;
	ssize_t n;

	while (f->wpos < sb->size) {
		n = send(f->fd, sb->data + f->wpos, sb->size - f->wpos,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n >= 0) {
			f->wpos += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			/* Socket full: do not retry on every call. */
			f->wnext = sb->size - f->wpos + FLUSH_AT;
			f->wsince = now_ms();
			break;
		}
		if (errno == EPIPE || errno == ECONNRESET)
			return fatal(f, FERRY_ECLOSED,
			    "connection closed by broker (%s)",
			    strerror(errno));
		return fatal(f, FERRY_EIO, "send: %s", strerror(errno));
	}
	if (f->wpos == sb->size) {
		fy_enc_clear(&f->enc);
		f->wpos = 0;
		f->wnext = FLUSH_AT;
	} else if (f->wpos >= FLUSH_AT && f->wpos >= sb->size / 2) {
		/* Reclaim the written part so the buffer stays bounded. */
		memmove(sb->data, sb->data + f->wpos, sb->size - f->wpos);
		sb->size -= f->wpos;
		f->wpos = 0;
	}
	return 0;
}

/*
 * The one place that blocks: until done() holds, the connection fails, or
 * timeout_ms (< 0: no limit) passes.  Writes pending output and reads and
 * handles input all along, so neither side can stall the other.
 */
static int
wait_for(struct ferry *f, int timeout_ms, done_fn *done, void *arg)
{
	int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
	struct pollfd p;
	int n, wait;

	for (;;) {
		if (f->err)
			return f->err;
		if (done(f, arg))
			return 0;
		if (wpending(f) && write_some(f) < 0)
			return f->err;
		if (done(f, arg))
			return 0;
		wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			wait = left > 0 ? (int)left : 0;
		}
		p.fd = f->fd;
		p.events = POLLIN | (wpending(f) ? POLLOUT : 0);
		p.revents = 0;
		n = poll(&p, 1, wait);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fatal(f, FERRY_EIO, "poll: %s", strerror(errno));
		}
		if (n == 0) {
			if (deadline >= 0 && now_ms() >= deadline)
				return seterr(f, FERRY_ETIMEOUT,
				    "timed out after %d ms", timeout_ms);
			continue;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			if (read_some(f) < 0)
				return f->err;
			if (process_input(f) < 0)
				return f->err;
		}
	}
}

static int
done_flushed(struct ferry *f, void *arg)
{
	return wpending(f) == 0;
}

static int
done_below(struct ferry *f, void *arg)
{
	return wpending(f) < WBUF_MAX;
}

/* Is buffered output big or old enough to be worth a syscall now?  Age
 * matters so that a worker's acks do not wait behind slow work until its
 * leases expire. */
static int
flush_due(const struct ferry *f)
{
	size_t n = wpending(f);

	return n >= f->wnext || (n > 0 && now_ms() - f->wsince >= FLUSH_MS);
}

/*
 * After appending a frame: write once flush_due(), and block only when
 * the broker does not keep up with a full buffer.
 */
static int
maybe_flush(struct ferry *f)
{
	if (!flush_due(f))
		return 0;
	if (write_some(f) < 0)
		return f->err;
	if (wpending(f) < WBUF_MAX)
		return 0;
	return wait_for(f, f->timeout_ms, done_below, NULL);
}

/* Append one frame; on failure nothing of it stays in the buffer. */
static int
encode(struct ferry *f, const struct fy_frame *fr)
{
	size_t mark = f->enc.sb.size;
	int r;

	if (mark == f->wpos)
		f->wsince = now_ms();
	r = fy_encode(&f->enc, fr);
	if (r == FY_OK)
		return 0;
	f->enc.sb.size = mark;
	if (r == FY_ENOMEM)
		return seterr(f, FERRY_ENOMEM, "out of memory encoding");
	return seterr(f, FERRY_EINVAL, "cannot encode frame type %d",
	    fr->type);
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
	f->wid[0] = '\0';
	r = wait_for(f, f->timeout_ms, done_reply, NULL);
	f->wrid = 0;
	if (r == FERRY_ETIMEOUT) {
		/* Its late answer must not be taken for another one's. */
		f->pend[rid & (f->pcap - 1)].kind = PEND_GONE;
		return r;
	}
	if (r < 0)
		return r;
	return f->werr;
}

/* Send fr with a fresh rid and wait for its answer. */
static int
send_sync(struct ferry *f, struct fy_frame *fr)
{
	struct pend p;
	uint64_t rid;
	int r;

	rid = pend_new(f, PEND_SYNC, 0);
	if (rid == 0)
		return seterr(f, FERRY_ENOMEM, "out of memory");
	fr->rid = rid;
	r = encode(f, fr);
	if (r < 0) {
		pend_take(f, rid, &p);
		return r;
	}
	return wait_reply(f, rid);
}

/* --- Connection --------------------------------------------------------- */

static int
connect_addr(struct ferry *f, const struct addrinfo *ai, int64_t deadline)
{
	struct pollfd p;
	socklen_t sl;
	int fd, one = 1, soerr = 0, n, wait;

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
				int64_t left = deadline - now_ms();

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
	/* Requests are small and we batch them ourselves. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	f->fd = fd;
	return 0;
}

static int
done_welcome(struct ferry *f, void *arg)
{
	return f->welcomed || f->alen > 0;
}

static void
do_connect(struct ferry *f, const char *host, int port, int timeout_ms)
{
	struct addrinfo hints, *res, *ai;
	struct fy_frame fr;
	char portstr[16];
	int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
	int r, last = 0;
	int64_t left;

	if (port <= 0 || port > 65535) {
		fatal(f, FERRY_EINVAL, "invalid port %d", port);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%d", port);
	r = getaddrinfo(host, portstr, &hints, &res);
	if (r != 0) {
		fatal(f, FERRY_ECONNECT, "%s: %s", host, gai_strerror(r));
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		last = connect_addr(f, ai, deadline);
		if (last == 0)
			break;
	}
	freeaddrinfo(res);
	if (f->fd < 0) {
		fatal(f, FERRY_ECONNECT, "connect to %s:%d: %s", host, port,
		    strerror(-last));
		return;
	}

	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_HELLO;
	fr.hello.version = FY_PROTO_VERSION;
	fr.hello.name.p = f->name;
	fr.hello.name.len = (uint32_t)strlen(f->name);
	if (encode(f, &fr) < 0) {
		fatal(f, FERRY_ENOMEM, "out of memory");
		return;
	}
	left = deadline >= 0 ? deadline - now_ms() : -1;
	r = wait_for(f, deadline >= 0 ? (left > 0 ? (int)left : 0) : -1,
	    done_welcome, NULL);
	if (r == FERRY_ETIMEOUT) {
		fatal(f, FERRY_ECONNECT, "%s:%d: no handshake reply within "
		    "%d ms", host, port, timeout_ms);
		return;
	}
	if (r < 0 && f->alen == 0) {
		/* Keep the cause, but say it happened while connecting. */
		char why[FERRY_ERRSTR_LEN];

		snprintf(why, sizeof(why), "%s", f->errstr);
		f->err = 0;
		f->fd = -1;
		fatal(f, FERRY_ECONNECT, "handshake with %s:%d: %s", host,
		    port, why);
		return;
	}
	if (!f->welcomed) {
		struct ferry_async_error e;

		ferry_poll_error(f, &e);
		f->err = 0;
		f->last_code = e.code;
		fatal(f, e.err, "handshake refused: %s: %s",
		    fy_code_name(e.code), e.msg);
		return;
	}
}

struct ferry *
ferry_connect(const char *host, int port, int timeout_ms, const char *name)
{
	struct ferry *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->fd = -1;
	f->timeout_ms = timeout_ms > 0 ? timeout_ms : -1;
	f->max_frame = MAX_FRAME_DEFAULT;
	f->max_msg = MAX_FRAME_DEFAULT;
	f->rmax = MAX_FRAME_DEFAULT + FRAME_SLACK;
	f->wnext = FLUSH_AT;
	f->next_rid = 1;
	f->plo = 1;
	f->mtail = &f->mhead;
	fy_enc_init(&f->enc);
	if (fy_dec_init(&f->dec) != FY_OK) {
		fy_enc_fini(&f->enc);
		free(f);
		return NULL;
	}
	f->rbuf = malloc(RBUF_INIT);
	f->pcap = 1024;
	f->pend = calloc(f->pcap, sizeof(*f->pend));
	if (f->rbuf == NULL || f->pend == NULL) {
		ferry_close(f);
		return NULL;
	}
	f->rcap = RBUF_INIT;
	if (host == NULL)
		host = "127.0.0.1";
	if (name == NULL)
		name = "libferry";
	if (strlen(name) > FERRY_NAME_MAX) {
		fatal(f, FERRY_EINVAL, "client name longer than %d bytes",
		    FERRY_NAME_MAX);
		return f;
	}
	strcpy(f->name, name);
	do_connect(f, host, port, timeout_ms > 0 ? timeout_ms : -1);
	return f;
}

void
ferry_close(struct ferry *f)
{
	struct mnode *n, *next;

	if (f == NULL)
		return;
	if (f->err == 0 && f->fd >= 0 && wpending(f))
		wait_for(f, f->timeout_ms, done_flushed, NULL);
	if (f->fd >= 0)
		close(f->fd);
	for (n = f->mhead; n != NULL; n = next) {
		next = n->next;
		free(n);
	}
	fy_enc_fini(&f->enc);
	fy_dec_fini(&f->dec);
	free(f->rbuf);
	free(f->pend);
	free(f->kv);
	free(f->pm);
	free(f);
}

void
ferry_set_timeout(struct ferry *f, int timeout_ms)
{
	f->timeout_ms = timeout_ms > 0 ? timeout_ms : -1;
}

int
ferry_err(const struct ferry *f)
{
	return f ? f->err : FERRY_ENOMEM;
}

const char *
ferry_errstr(const struct ferry *f)
{
	return f ? f->errstr : "out of memory";
}

int
ferry_last_code(const struct ferry *f)
{
	return f->last_code;
}

const char *
ferry_server(const struct ferry *f)
{
	return f->server;
}

size_t
ferry_max_frame(const struct ferry *f)
{
	return f->max_frame;
}

size_t
ferry_max_msg(const struct ferry *f)
{
	return f->max_msg;
}

int
ferry_flush(struct ferry *f)
{
	return wait_for(f, f->timeout_ms, done_flushed, NULL);
}

int
ferry_ping(struct ferry *f)
{
	struct fy_frame fr;

	if (f->err)
		return f->err;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_PING;
	return send_sync(f, &fr);
}

int
ferry_poll_error(struct ferry *f, struct ferry_async_error *e)
{
	if (f->alen == 0)
		return 0;
	*e = f->aerr[f->ahead];
	e->dropped = f->adropped;
	f->adropped = 0;
	f->ahead = (f->ahead + 1) % FERRY_ASYNC_MAX;
	f->alen--;
	return 1;
}

/* --- Publishing --------------------------------------------------------- */

static int
check_name(struct ferry *f, const char *what, const char *s, size_t len)
{
	if (fy_name_valid(s, len))
		return 0;
	f->last_code = FY_E_BADNAME;
	return seterr(f, FERRY_EBADNAME, "invalid %s name \"%.*s\"", what,
	    (int)(len > 64 ? 64 : len), s);
}

static int
check_topic(struct ferry *f, const char *topic, size_t *len)
{
	*len = 0;
	if (f->err)
		return f->err;
	if (topic == NULL)
		return seterr(f, FERRY_EINVAL, "topic is NULL");
	*len = strnlen(topic, FERRY_NAME_MAX + 1);
	return check_name(f, "topic", topic, *len);
}

/* Validate one message, counting its headers and its encoded size. */
static int
check_msg(struct ferry *f, const void *body, size_t len, const char *id,
    const struct ferry_header *hdr, size_t nhdr, size_t *size)
{
	size_t i, s;

	if (body == NULL && len > 0)
		return seterr(f, FERRY_EINVAL, "body is NULL");
	if (len > f->max_msg) {
		f->last_code = FY_E_MSGSIZE;
		return seterr(f, FERRY_EMSGSIZE,
		    "body of %zu bytes above the broker's max_msg %zu", len,
		    f->max_msg);
	}
	if (nhdr > 0 && hdr == NULL)
		return seterr(f, FERRY_EINVAL, "headers are NULL");
	if (nhdr > UINT32_MAX / 2)
		return seterr(f, FERRY_EINVAL, "too many headers");
	/* Generous: bin/str/map headers are at most 5 bytes each. */
	s = 16 + len + 5;
	if (id != NULL) {
		size_t n = strnlen(id, FERRY_ID_MAX + 1);

		if (n > FERRY_ID_MAX)
			return seterr(f, FERRY_EINVAL,
			    "message id longer than %d bytes", FERRY_ID_MAX);
		s += n + 8;
	}
	s += 8;
	for (i = 0; i < nhdr; i++) {
		if (hdr[i].key == NULL || hdr[i].value == NULL)
			return seterr(f, FERRY_EINVAL, "header %zu is NULL", i);
		s += strlen(hdr[i].key) + strlen(hdr[i].value) + 10;
	}
	*size = s;
	return 0;
}

/* Room for n more header pairs in the scratch array, after used ones. */
static int
kv_reserve(struct ferry *f, size_t used, size_t n)
{
	struct fy_kv *nkv;
	size_t ncap;

	if (used + n <= f->kvcap)
		return 0;
	ncap = f->kvcap ? f->kvcap : 16;
	while (ncap < used + n)
		ncap *= 2;
	nkv = realloc(f->kv, ncap * sizeof(*nkv));
	if (nkv == NULL)
		return seterr(f, FERRY_ENOMEM, "out of memory");
	f->kv = nkv;
	f->kvcap = ncap;
	return 0;
}

/* Fill pm from the caller's message, its headers at f->kv + kvpos. */
static void
fill_pubmsg(struct ferry *f, struct fy_pubmsg *pm, const void *body,
    size_t len, const char *id, const struct ferry_header *hdr, size_t nhdr,
    size_t kvpos)
{
	size_t i;

	memset(pm, 0, sizeof(*pm));
	pm->body.p = body;
	pm->body.len = (uint32_t)len;
	if (id != NULL) {
		pm->id.p = id;
		pm->id.len = (uint32_t)strlen(id);
	}
	if (nhdr) {
		struct fy_kv *kv = f->kv + kvpos;

		for (i = 0; i < nhdr; i++) {
			kv[i].k.p = hdr[i].key;
			kv[i].k.len = (uint32_t)strlen(hdr[i].key);
			kv[i].v.p = hdr[i].value;
			kv[i].v.len = (uint32_t)strlen(hdr[i].value);
		}
		pm->hdr = kv;
		pm->nhdr = (uint32_t)nhdr;
	}
}

/* Encode a single-message PUB with rid (0 = fire-and-forget). */
static int
encode_pub(struct ferry *f, const char *topic, size_t tlen, const void *body,
    size_t len, const struct ferry_pub_opts *o, uint64_t rid)
{
	static const struct ferry_pub_opts none;
	struct fy_frame fr;
	size_t size;
	int r;

	if (o == NULL)
		o = &none;
	r = check_msg(f, body, len, o->id, o->hdr, o->nhdr, &size);
	if (r < 0)
		return r;
	if (size + tlen + 32 > f->max_frame)
		return seterr(f, FERRY_EMSGSIZE,
		    "message of %zu bytes above the broker's max_frame", size);
	if (kv_reserve(f, 0, o->nhdr) < 0)
		return FERRY_ENOMEM;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_PUB;
	fr.rid = rid;
	fr.pub.topic.p = topic;
	fr.pub.topic.len = (uint32_t)tlen;
	fill_pubmsg(f, &fr.pub.one, body, len, o->id, o->hdr, o->nhdr, 0);
	fr.pub.msgs = &fr.pub.one;
	fr.pub.nmsgs = 1;
	return encode(f, &fr);
}

int
ferry_publish(struct ferry *f, const char *topic, const void *body,
    size_t len, const struct ferry_pub_opts *o)
{
	size_t tlen;
	int r;

	r = check_topic(f, topic, &tlen);
	if (r == 0)
		r = encode_pub(f, topic, tlen, body, len, o, 0);
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
	r = check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	rid = pend_new(f, PEND_SYNC, 0);
	if (rid == 0)
		return seterr(f, FERRY_ENOMEM, "out of memory");
	r = encode_pub(f, topic, tlen, body, len, o, rid);
	if (r < 0) {
		pend_take(f, rid, &p);
		return r;
	}
	r = wait_reply(f, rid);
	if (r == 0 && id != NULL)
		memcpy(id, f->wid, sizeof(f->wid));
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
	r = check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	r_id = pend_new(f, PEND_PIPE, 1);
	if (r_id == 0)
		return seterr(f, FERRY_ENOMEM, "out of memory");
	r = encode_pub(f, topic, tlen, body, len, o, r_id);
	if (r < 0) {
		pend_take(f, r_id, &p);
		return r;
	}
	f->pipe_pending++;
	if (rid != NULL)
		*rid = r_id;
	return maybe_flush(f);
}

/* Encode msgs[0..n) as one PUB frame. */
static int
encode_batch(struct ferry *f, const char *topic, size_t tlen,
    const struct ferry_pub_msg *msgs, size_t n, int flags)
{
	struct fy_frame fr;
	struct pend p;
	uint64_t rid = 0;
	size_t i, nkv = 0, kvpos = 0;
	int r;

	if (n > f->pmcap) {
		struct fy_pubmsg *npm = realloc(f->pm, n * sizeof(*npm));

		if (npm == NULL)
			return seterr(f, FERRY_ENOMEM, "out of memory");
		f->pm = npm;
		f->pmcap = n;
	}
	for (i = 0; i < n; i++)
		nkv += msgs[i].nhdr;
	if (kv_reserve(f, 0, nkv) < 0)
		return FERRY_ENOMEM;
	for (i = 0; i < n; i++) {
		fill_pubmsg(f, &f->pm[i], msgs[i].body, msgs[i].len,
		    msgs[i].id, msgs[i].hdr, msgs[i].nhdr, kvpos);
		kvpos += msgs[i].nhdr;
	}
	if (flags & FERRY_CONFIRM) {
		rid = pend_new(f, PEND_PIPE, (uint32_t)n);
		if (rid == 0)
			return seterr(f, FERRY_ENOMEM, "out of memory");
	}
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_PUB;
	fr.rid = rid;
	fr.pub.topic.p = topic;
	fr.pub.topic.len = (uint32_t)tlen;
	fr.pub.msgs = f->pm;
	fr.pub.nmsgs = (uint32_t)n;
	r = encode(f, &fr);
	if (r < 0) {
		if (rid)
			pend_take(f, rid, &p);
		return r;
	}
	if (rid)
		f->pipe_pending += n;
	return maybe_flush(f);
}

int
ferry_publish_batch(struct ferry *f, const char *topic,
    const struct ferry_pub_msg *msgs, size_t n, int flags)
{
	size_t tlen, i, start, budget, used, size;
	int r;

	r = check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	if (n > 0 && msgs == NULL)
		return seterr(f, FERRY_EINVAL, "msgs is NULL");
	budget = f->max_frame > FRAME_SLACK + tlen ?
	    f->max_frame - FRAME_SLACK / 2 - tlen : f->max_frame / 2;
	/* Validate all first: a bad message must not leave half a batch
	 * buffered. */
	for (i = 0; i < n; i++) {
		r = check_msg(f, msgs[i].body, msgs[i].len, msgs[i].id,
		    msgs[i].hdr, msgs[i].nhdr, &size);
		if (r < 0)
			return r;
		if (size > budget)
			return seterr(f, FERRY_EMSGSIZE, "message %zu of %zu "
			    "bytes above the broker's max_frame", i, size);
	}
	start = 0;
	used = 0;
	for (i = 0; i < n; i++) {
		check_msg(f, msgs[i].body, msgs[i].len, msgs[i].id,
		    msgs[i].hdr, msgs[i].nhdr, &size);
		/* The msgpack array count limits a frame to UINT32_MAX. */
		if (i > start && (used + size > budget ||
		    i - start == UINT32_MAX)) {
			r = encode_batch(f, topic, tlen, msgs + start,
			    i - start, flags);
			if (r < 0)
				return r;
			start = i;
			used = 0;
		}
		used += size;
	}
	if (n > start)
		return encode_batch(f, topic, tlen, msgs + start, n - start,
		    flags);
	return 0;
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

	r = wait_for(f, timeout_ms, done_confirms, &b);
	/* Also when there was nothing to wait for: push buffered frames. */
	if (r == 0 && wpending(f))
		r = write_some(f);
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

size_t
ferry_pending(const struct ferry *f)
{
	return f->pipe_pending;
}

void
ferry_set_confirm_cb(struct ferry *f, ferry_confirm_fn *fn, void *arg)
{
	f->cb = fn;
	f->cb_arg = fn ? arg : NULL;
}

/* --- Consuming ---------------------------------------------------------- */

int
ferry_subscribe(struct ferry *f, const char *topic,
    const struct ferry_sub_opts *o, uint64_t *sid)
{
	static const struct ferry_sub_opts none;
	struct fy_frame fr;
	size_t tlen, glen = 0;
	int r;

	if (sid != NULL)
		*sid = 0;
	r = check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	if (o == NULL)
		o = &none;
	if (o->mode != FERRY_AT_LEAST_ONCE && o->mode != FERRY_AT_MOST_ONCE)
		return seterr(f, FERRY_EINVAL, "invalid mode %d", o->mode);
	if (o->group != NULL && o->group[0] != '\0' && !o->ephemeral) {
		glen = strnlen(o->group, FERRY_NAME_MAX + 1);
		r = check_name(f, "group", o->group, glen);
		if (r < 0)
			return r;
	}
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_SUB;
	fr.sub.topic.p = topic;
	fr.sub.topic.len = (uint32_t)tlen;
	if (glen) {
		fr.sub.group.p = o->group;
		fr.sub.group.len = (uint32_t)glen;
	}
	fr.sub.prefetch = o->prefetch;
	fr.sub.mode = (uint32_t)o->mode;
	fr.sub.ack_timeout_ms = o->ack_timeout_ms;
	fr.sub.max_attempts = o->max_attempts;
	fr.sub.ephemeral = o->ephemeral ? 1 : 0;
	r = send_sync(f, &fr);
	if (r == 0 && f->wsid == 0)
		return seterr(f, FERRY_EBADREPLY,
		    "subscribe answered without a subscription id");
	if (r == 0 && sid != NULL)
		*sid = f->wsid;
	return r;
}

int
ferry_unsubscribe(struct ferry *f, uint64_t sid)
{
	struct fy_frame fr;
	int r;

	if (f->err)
		return f->err;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_UNSUB;
	fr.unsub.sid = sid;
	r = send_sync(f, &fr);
	if (r == 0)
		purge(f, sid);
	return r;
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
	if (f->err)
		return f->err;
	if (f->mhead == NULL && f->alen == 0) {
		r = wait_for(f, timeout_ms < 0 ? -1 : timeout_ms, done_msg,
		    NULL);
		if (r < 0)
			return r;
	} else if (flush_due(f) && write_some(f) < 0) {
		return f->err;
	}
	if (ferry_poll_error(f, &e)) {
		f->last_code = e.code;
		if (e.dropped)
			return seterr(f, e.err, "%s: %s (%llu earlier async "
			    "errors dropped)", fy_code_name(e.code), e.msg,
			    (unsigned long long)e.dropped);
		return seterr(f, e.err, "%s: %s", fy_code_name(e.code),
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

void
ferry_msg_free(struct ferry_msg *m)
{
	if (m != NULL)
		free((char *)m - offsetof(struct mnode, msg));
}

/* Send a settle frame now and wait, or buffer it. */
static int
settle(struct ferry *f, struct fy_frame *fr, int flags)
{
	int r;

	if (flags & FERRY_CONFIRM)
		return send_sync(f, fr);
	r = encode(f, fr);
	if (r == 0)
		r = maybe_flush(f);
	return r;
}

int
ferry_ack(struct ferry *f, uint64_t sid, uint64_t lease, int flags)
{
	struct fy_frame fr;

	if (f->err)
		return f->err;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_ACK;
	fr.ack.sid = sid;
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

	if (f->err)
		return f->err;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_NACK;
	fr.nack.sid = sid;
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

	if (f->err)
		return f->err;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_TOUCH;
	fr.touch.sid = sid;
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

	r = check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	if (group != NULL && group[0] != '\0') {
		glen = strnlen(group, FERRY_NAME_MAX + 1);
		r = check_name(f, "group", group, glen);
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
	return send_sync(f, &fr);
}
