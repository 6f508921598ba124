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
#include <fcntl.h>
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

#include <uuid/uuid.h>

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
#define INBOX_PREFIX "_inbox."
#define SID_GEN_SHIFT 32	/* user sid = reconnect count << 32 | n */

/* What an outstanding request id stands for. */
enum {
	PEND_FREE = 0,		/* answered, or never used */
	PEND_PIPE,		/* pipelined publish: count and call back */
	PEND_SYNC,		/* the caller is waiting in send_sync() */
	PEND_GONE,		/* the caller gave up: drop the answer */
	PEND_RESUB,		/* a SUB sent again after a reconnect */
};

struct pend {
	uint32_t nmsgs;		/* messages in a pipelined publish */
	uint32_t sub;		/* PEND_RESUB: the subscription's n */
	uint8_t kind;
	uint8_t *frame;		/* a confirmed publish kept for re-sending
				   after a reconnect (reconnect on only);
				   owned, freed when answered */
	size_t flen;
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
};

/* A queued delivery: the message and its strings in one allocation. */
struct mnode {
	struct mnode *next;
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

	/* Request-reply: the inbox (lazily subscribed) and its replies. */
	char inbox[sizeof(INBOX_PREFIX) + 36];
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
};

typedef int done_fn(struct ferry *f, void *arg);

static int recover(struct ferry *f);

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
	[18] = "no subscribers",
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
	    err == FERRY_ENOSUBSCRIBERS || err == FERRY_ETIMEOUT;
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
    const char *id, const char *errmsg, uint32_t dups)
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
	c.dups = dups;
	f->cb(f->cb_arg, &c);
}

/* Fail every pipelined publish still outstanding, so that counts and
 * callbacks account for each one. */
static void
fail_pending(struct ferry *f, int err)
{
	uint64_t rid;

	for (rid = f->plo; rid < f->next_rid; rid++) {
		struct pend *p = &f->pend[rid & (f->pcap - 1)];

		if (p->kind == PEND_PIPE)
			confirm(f, rid, p->nmsgs, err, 0, "", f->errstr, 0);
		p->kind = PEND_FREE;
		free(p->frame);
		p->frame = NULL;
	}
	f->plo = f->next_rid;
}

/* May a reconnect undo this error?  Not when the broker closed because
 * of what we sent: sending it again would fail again. */
static int
recoverable(const struct ferry *f, int err)
{
	if (!f->rc_on)
		return 0;
	if (f->close_code == FY_E_TOOBIG || f->close_code == FY_E_HANDSHAKE)
		return 0;
	return err == FERRY_EIO || err == FERRY_ECLOSED ||
	    err == FERRY_EBADREPLY;
}

/*
 * The connection is unusable: close it.  Without reconnection (or for an
 * error a reconnect cannot fix) the handle is dead and pipelined publishes
 * fail; otherwise f->lost tells recover() to reconnect and resend them.
 */
__attribute__((format(printf, 3, 4)))
static int
fatal(struct ferry *f, int err, const char *fmt, ...)
{
	va_list ap;

	if (f->err)
		return f->err;
	va_start(ap, fmt);
	vsnprintf(f->errstr, sizeof(f->errstr), fmt, ap);
	va_end(ap);
	f->err = err;
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->reconnecting)
		return err;	/* recover() decides */
	if (recoverable(f, err)) {
		f->lost = 1;
		return err;
	}
	fail_pending(f, err);
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
	p->sub = 0;
	p->frame = NULL;
	p->flen = 0;
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
	out->frame = NULL;
	free(p->frame);
	p->frame = NULL;
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
	    fr->msg.topic.len + 1 + fr->msg.reply_to.len + 1 +
	    fr->msg.corr.len + 1;
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
	PUT(n->msg.reply_to, fr->msg.reply_to);
	PUT(n->msg.corr, fr->msg.corr);
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

/* --- Subscriptions ------------------------------------------------------ */

static uint64_t
usid(const struct ferry *f, const struct lsub *s)
{
	return (uint64_t)f->gen << SID_GEN_SHIFT | s->n;
}

static struct lsub *
sub_by_n(struct ferry *f, uint32_t n)
{
	size_t i;

	for (i = 0; i < f->nsubs; i++)
		if (f->subs[i].n == n)
			return &f->subs[i];
	return NULL;
}

static struct lsub *
sub_by_bsid(struct ferry *f, uint64_t bsid)
{
	size_t i;

	for (i = 0; i < f->nsubs; i++)
		if (f->subs[i].bsid == bsid && bsid != 0)
			return &f->subs[i];
	return NULL;
}

static void
sub_remove(struct ferry *f, struct lsub *s)
{
	free(s->topic);
	free((char *)s->o.group);
	if (s->inbox)
		f->inbox_n = 0;
	memmove(s, s + 1, (size_t)(f->subs + f->nsubs - (s + 1)) *
	    sizeof(*s));
	f->nsubs--;
}

/* Drop a list of deliveries; returns how many. */
static size_t
mlist_free(struct mnode **head, struct mnode ***tail)
{
	struct mnode *n, *next;
	size_t k = 0;

	for (n = *head; n != NULL; n = next) {
		next = n->next;
		free(n);
		k++;
	}
	*head = NULL;
	*tail = head;
	return k;
}

/* A PEND_RESUB answer: the subscription lives again, or is lost. */
static void
resub_reply(struct ferry *f, const struct fy_frame *fr, uint32_t n)
{
	struct lsub *s = sub_by_n(f, n);

	if (s == NULL)
		return;
	if (fr->type == FY_T_OK && fr->ok.sid != 0) {
		s->bsid = fr->ok.sid;
		return;
	}
	if (fr->type == FY_T_OK)
		async_push(f, FY_E_INTERNAL, usid(f, s), (struct fy_str){
		    "subscribe answered without a subscription id", 44});
	else
		async_push(f, (int)fr->err.code, usid(f, s), fr->err.msg);
	f->rc_lost_subs++;
	sub_remove(f, s);
}

/* An OK or ERR with a rid (or PEEK's MSG): hand it to whoever sent the
 * request. */
static void
handle_reply(struct ferry *f, const struct fy_frame *fr)
{
	struct pend p;
	char id[FERRY_ID_MAX + 1] = "";
	char msg[FERRY_ERRSTR_LEN] = "";
	int ok = fr->type != FY_T_ERR;

	if (pend_take(f, fr->rid, &p) == NULL)
		return;		/* not ours, or answered twice: ignore */
	if (fr->type == FY_T_OK && fr->ok.nids > 0)
		strcopy(id, sizeof(id), fr->ok.ids[0]);
	if (!ok)
		strcopy(msg, sizeof(msg), fr->err.msg);
	switch (p.kind) {
	case PEND_PIPE:
		if (ok)
			confirm(f, fr->rid, p.nmsgs, 0, 0, id, "",
			    fr->type == FY_T_OK ? fr->ok.dups : 0);
		else
			confirm(f, fr->rid, p.nmsgs, code_err(fr->err.code),
			    (int)fr->err.code, "", msg, 0);
		break;
	case PEND_SYNC:
		if (fr->rid != f->wrid)
			break;
		f->wdone = 1;
		if (!ok) {
			f->werr = broker_err(f, fr->err.code, fr->err.msg);
			break;
		}
		f->werr = 0;
		if (fr->type == FY_T_OK) {
			f->wsid = fr->ok.sid;
			f->wdups = fr->ok.dups;
			memcpy(f->wid, id, sizeof(id));
		}
		if (f->wcopy != NULL && f->wcopy(f, fr) < 0)
			f->werr = seterr(f, FERRY_ENOMEM,
			    "out of memory copying the answer");
		break;
	case PEND_RESUB:
		resub_reply(f, fr, p.sub);
		break;
	default:
		break;		/* PEND_GONE: nobody waits any more */
	}
}

static int
handle_frame(struct ferry *f, const struct fy_frame *fr)
{
	struct lsub *s;
	struct mnode *n;

	switch (fr->type) {
	case FY_T_MSG:
		if (fr->rid) {
			handle_reply(f, fr);	/* PEEK */
			return 0;
		}
		/* Unknown: unsubscribed; the broker has put it back. */
		if ((s = sub_by_bsid(f, fr->msg.sid)) == NULL)
			return 0;
		n = msg_copy(fr);
		if (n == NULL)
			return fatal(f, FERRY_ENOMEM,
			    "out of memory receiving a message");
		n->msg.sid = usid(f, s);
		if (s->inbox) {
			*f->rtail = n;
			f->rtail = &n->next;
		} else {
			*f->mtail = n;
			f->mtail = &n->next;
		}
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
		/* These announce that the broker closes the connection: the
		 * close that follows is the error (it names the code), and
		 * what reconnect acts on; no async error besides. */
		if (fr->err.code == FY_E_TOOBIG ||
		    fr->err.code == FY_E_HANDSHAKE ||
		    fr->err.code == FY_E_SHUTDOWN) {
			f->close_code = (int)fr->err.code;
			return 0;
		}
		if (fr->err.sid && (s = sub_by_bsid(f, fr->err.sid)) != NULL) {
			uint64_t sid = usid(f, s);

			/* The subscription ended (its group was deleted). */
			if (fr->err.code == FY_E_DELETED) {
				purge(f, sid);
				sub_remove(f, s);
			}
			async_push(f, (int)fr->err.code, sid, fr->err.msg);
			return 0;
		}
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

/* Bytes waiting to be written, counting acks not yet encoded (write_some()
 * encodes them first). */
static size_t
wpending(const struct ferry *f)
{
	return f->enc.sb.size - f->wpos + f->nacks * 9;
}

static int encode_acks(struct ferry *f);

/* Write what the socket takes now.  0 or a fatal error. */
static int
write_some(struct ferry *f)
{
	msgpack_sbuffer *sb = &f->enc.sb;
	ssize_t n;

	if (f->nacks && encode_acks(f) < 0)
		return -1;

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
		/* A lost connection comes back here (recover()), and the
		 * wait goes on: resent publishes are answered anew. */
		if (f->err && recover(f) < 0)
			return f->err;
		if (done(f, arg))
			return 0;
		if (wpending(f) && write_some(f) < 0)
			continue;
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
				continue;
			if (process_input(f) < 0)
				continue;
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
		return recover(f);
	if (wpending(f) < WBUF_MAX)
		return 0;
	return wait_for(f, f->timeout_ms, done_below, NULL);
}

/* Append one frame; on failure nothing of it stays in the buffer. */
static int
encode_frame(struct ferry *f, const struct fy_frame *fr)
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

/* Encode the pending acks as one ACK frame. */
static int
encode_acks(struct ferry *f)
{
	struct fy_frame fr;

	if (!f->nacks)
		return 0;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_ACK;
	fr.ack.sid = f->acks_sid;
	fr.ack.leases = f->acks;
	fr.ack.nleases = f->nacks;
	f->nacks = 0;
	return encode_frame(f, &fr);
}

/* Append one frame, after any pending acks; on failure nothing of it
 * stays in the buffer. */
static int
encode(struct ferry *f, const struct fy_frame *fr)
{
	int r;

	if ((r = encode_acks(f)) < 0)
		return r;
	return encode_frame(f, fr);
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
	r = wait_for(f, f->timeout_ms, done_reply, NULL);
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
	return f->welcomed || f->alen > *(unsigned *)arg;
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
	unsigned alen0 = f->alen;	/* errors queued before: not ours */

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
	    done_welcome, &alen0);
	if (r == FERRY_ETIMEOUT) {
		fatal(f, FERRY_ECONNECT, "%s:%d: no handshake reply within "
		    "%d ms", host, port, timeout_ms);
		return;
	}
	if (r < 0 && f->alen <= alen0) {
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
		/* The refusal is the newest queued error. */
		struct ferry_async_error e;

		e = f->aerr[(f->ahead + f->alen - 1) % FERRY_ASYNC_MAX];
		f->alen--;
		f->err = 0;
		f->last_code = e.code;
		fatal(f, e.err, "handshake refused: %s: %s",
		    fy_code_name(e.code), e.msg);
		return;
	}
}

/* --- Reconnecting -------------------------------------------------------- */

/* Encode a SUB for s (rid 0: the caller sets it). */
static int
encode_sub(struct ferry *f, const struct lsub *s, uint64_t rid)
{
	const struct ferry_sub_opts *o = &s->o;
	struct fy_frame fr;

	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_SUB;
	fr.rid = rid;
	fr.sub.topic.p = s->topic;
	fr.sub.topic.len = (uint32_t)strlen(s->topic);
	if (o->group != NULL && !o->ephemeral) {
		fr.sub.group.p = o->group;
		fr.sub.group.len = (uint32_t)strlen(o->group);
	}
	fr.sub.prefetch = o->prefetch;
	fr.sub.mode = (uint32_t)o->mode;
	fr.sub.ack_timeout_ms = o->ack_timeout_ms;
	fr.sub.max_attempts = o->max_attempts;
	fr.sub.ephemeral = o->ephemeral ? 1 : 0;
	fr.sub.ttl_ms = o->ttl_ms;
	fr.sub.ttl_drop = o->ttl_drop ? 1 : 0;
	fr.sub.max_msgs = o->max_msgs;
	fr.sub.max_bytes = o->max_bytes;
	fr.sub.overflow = (uint32_t)o->overflow;
	return encode(f, &fr);
}

/* Keep a copy of the confirmed publish rid just encoded at mark, to send
 * it again after a reconnect.  Without memory it is simply not kept: it
 * then fails with the connection, as without reconnection. */
static void
keep_frame(struct ferry *f, uint64_t rid, size_t mark)
{
	struct pend *p = &f->pend[rid & (f->pcap - 1)];
	size_t len = f->enc.sb.size - mark;

	if (!f->rc_on || rid == 0)
		return;
	p->frame = malloc(len);
	if (p->frame == NULL)
		return;
	memcpy(p->frame, f->enc.sb.data + mark, len);
	p->flen = len;
}

static int
done_resub(struct ferry *f, void *arg)
{
	uint64_t rid;

	for (rid = f->plo; rid < f->next_rid; rid++)
		if (f->pend[rid & (f->pcap - 1)].kind == PEND_RESUB)
			return 0;
	return 1;
}

/*
 * On a fresh connection: subscribe again, send unanswered confirmed
 * publishes again, fail the other requests that were waiting.  Returns 0
 * or the connection's error.
 */
static int
restore(struct ferry *f, struct ferry_reconnect_info *info)
{
	uint64_t rid, end = f->next_rid;
	size_t i;

	for (i = 0; i < f->nsubs;) {
		struct lsub *s = &f->subs[i];

		s->bsid = 0;
		if (s->closing || s->pending) {
			sub_remove(f, s);
			continue;
		}
		i++;
	}
	/* Subscriptions first, so that a resent request finds its inbox. */
	for (i = 0; i < f->nsubs; i++) {
		rid = pend_new(f, PEND_RESUB, 0);
		if (rid == 0)
			return fatal(f, FERRY_ENOMEM, "out of memory");
		f->pend[rid & (f->pcap - 1)].sub = f->subs[i].n;
		if (encode_sub(f, &f->subs[i], rid) < 0)
			return fatal(f, FERRY_ENOMEM, "out of memory");
	}
	/* Then the old requests, in their order, with their rids. */
	for (rid = f->plo; rid < end; rid++) {
		struct pend *p = &f->pend[rid & (f->pcap - 1)];

		if (p->kind == PEND_RESUB) {
			p->kind = PEND_FREE;	/* of an earlier attempt */
			continue;
		}
		if (p->frame != NULL && (p->kind == PEND_PIPE ||
		    p->kind == PEND_SYNC)) {
			if (msgpack_sbuffer_write(&f->enc.sb,
			    (const char *)p->frame, p->flen) != 0)
				return fatal(f, FERRY_ENOMEM, "out of memory");
			info->resent++;
			continue;
		}
		if (p->kind == PEND_PIPE) {
			/* Not kept (out of memory): it fails. */
			confirm(f, rid, p->nmsgs, FERRY_ECLOSED, 0, "",
			    "connection lost", 0);
		} else if (p->kind == PEND_SYNC && rid == f->wrid) {
			f->wdone = 1;
			f->werr = seterr(f, FERRY_ECLOSED, "connection lost "
			    "and re-established: the request may or may not "
			    "have been carried out");
		}
		p->kind = PEND_FREE;
		free(p->frame);
		p->frame = NULL;
	}
	while (f->plo < f->next_rid &&
	    f->pend[f->plo & (f->pcap - 1)].kind == PEND_FREE)
		f->plo++;
	f->wsince = now_ms();
	return wait_for(f, f->timeout_ms, done_resub, NULL);
}

/* A random wait in [0, ms]: "full jitter". */
static unsigned
jitter(struct ferry *f, unsigned ms)
{
	f->rng = f->rng * 1103515245u + 12345u;
	return ms ? (f->rng >> 8) % (ms + 1) : 0;
}

/*
 * If f->err is a lost connection that may be re-established, reconnect
 * (blocking, with backoff) and restore the handle's state.  Returns 0 when
 * the handle is usable again, else its fatal error.
 */
static int
recover(struct ferry *f)
{
	struct ferry_reconnect_info info;
	int64_t start = now_ms(), left;
	unsigned backoff, base, cap;
	char why[FERRY_ERRSTR_LEN];
	int r, wait;

	if (f->err == 0)
		return 0;
	if (!f->lost || f->reconnecting)
		return f->err;
	f->lost = 0;
	memset(&info, 0, sizeof(info));
	info.cause = f->err;
	snprintf(why, sizeof(why), "%s", f->errstr);
	info.dropped = mlist_free(&f->mhead, &f->mtail) +
	    mlist_free(&f->rhead, &f->rtail);
	base = f->rc.base_ms ? f->rc.base_ms : 100;
	cap = f->rc.max_backoff_ms ? f->rc.max_backoff_ms : 5000;
	backoff = base;
	f->reconnecting = 1;
	f->gen++;	/* from now on, deliveries carry new sids */
	for (;;) {
		wait = (int)jitter(f, backoff);
		if (f->rc.max_time_ms) {
			left = start + f->rc.max_time_ms - now_ms();
			if (left < wait)
				wait = left > 0 ? (int)left : 0;
		}
		if (wait > 0)
			poll(NULL, 0, wait);
		backoff = backoff > cap / 2 ? cap : backoff * 2;
		info.attempts++;
		/* Start over: nothing of the old connection is valid. */
		f->err = 0;
		f->close_code = 0;
		f->welcomed = 0;
		fy_enc_clear(&f->enc);
		f->wpos = 0;
		f->wnext = FLUSH_AT;
		f->rstart = f->rend = f->rwant = 0;
		f->rc_lost_subs = 0;
		left = f->timeout_ms;
		if (f->rc.max_time_ms) {
			int64_t l2 = start + f->rc.max_time_ms - now_ms();

			if (left < 0 || l2 < left)
				left = l2 > 1 ? l2 : 1;
		}
		do_connect(f, f->host, f->port, (int)left);
		r = f->err;
		if (r == 0)
			r = restore(f, &info);
		if (r == 0)
			break;
		if ((f->rc.max_attempts && info.attempts >= f->rc.max_attempts)
		    || (f->rc.max_time_ms && now_ms() - start >=
		    (int64_t)f->rc.max_time_ms) || r == FERRY_ENOMEM) {
			f->reconnecting = 0;
			if (f->fd >= 0)
				close(f->fd);
			f->fd = -1;
			f->err = r;
			seterr(f, r, "connection lost (%.40s); reconnect gave up "
			    "after %u attempts: %.40s", why, info.attempts,
			    f->errstr);
			fail_pending(f, r);
			info.err = r;
			info.elapsed_ms = (uint64_t)(now_ms() - start);
			if (f->rc.fn != NULL)
				f->rc.fn(f->rc.arg, &info);
			return r;
		}
	}
	f->reconnecting = 0;
	f->nreconnects++;
	info.resubscribed = f->nsubs;
	info.lost_subs = f->rc_lost_subs;
	info.elapsed_ms = (uint64_t)(now_ms() - start);
	if (f->rc.fn != NULL)
		f->rc.fn(f->rc.arg, &info);
	return 0;
}

int
ferry_set_reconnect(struct ferry *f, const struct ferry_reconnect_opts *o)
{
	if (o == NULL) {
		f->rc_on = 0;
		return 0;
	}
	if (o->max_attempts == 0 && o->max_time_ms == 0)
		return seterr(f, FERRY_EINVAL, "reconnect without a limit: "
		    "set max_attempts or max_time_ms");
	f->rc = *o;
	f->rc_on = 1;
	return 0;
}

uint64_t
ferry_reconnects(const struct ferry *f)
{
	return f->nreconnects;
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
	f->rtail = &f->rhead;
	f->rng = (unsigned)getpid() ^ (unsigned)now_ms() ^
	    (unsigned)(uintptr_t)f;
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
	f->port = port;
	if ((f->host = strdup(host)) == NULL) {
		ferry_close(f);
		return NULL;
	}
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
	uint64_t rid;

	if (f == NULL)
		return;
	f->rc_on = 0;		/* closing: do not reconnect to flush */
	if (f->err == 0 && f->fd >= 0 && wpending(f))
		wait_for(f, f->timeout_ms, done_flushed, NULL);
	if (f->fd >= 0)
		close(f->fd);
	mlist_free(&f->mhead, &f->mtail);
	mlist_free(&f->rhead, &f->rtail);
	while (f->nsubs > 0)
		sub_remove(f, &f->subs[f->nsubs - 1]);
	free(f->subs);
	if (f->pend != NULL)
		for (rid = f->plo; rid < f->next_rid; rid++)
			free(f->pend[rid & (f->pcap - 1)].frame);
	free(f->host);
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

	if (f->err && recover(f) < 0)
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
	if (f->err && recover(f) < 0)
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

/* A confirmed publish as an idempotent producer: pid and the next seq. */
static void
set_pseq(struct ferry *f, struct fy_pubmsg *pm, uint64_t rid)
{
	if (rid == 0 || f->pid[0] == '\0')
		return;
	pm->pid.p = f->pid;
	pm->pid.len = (uint32_t)strlen(f->pid);
	pm->pseq = f->pseq++;
}

/* An optional string field: NULL is absent, else at most max bytes. */
static int
check_opt(struct ferry *f, const char *what, const char *v, size_t max,
    struct fy_str *out)
{
	size_t n;

	out->p = NULL;
	out->len = 0;
	if (v == NULL)
		return 0;
	n = strnlen(v, max + 1);
	if (n > max)
		return seterr(f, FERRY_EINVAL, "%s longer than %zu bytes", what,
		    max);
	out->p = v;
	out->len = (uint32_t)n;
	return 0;
}

/* Encode a single-message PUB with rid (0 = fire-and-forget). */
static int
encode_pub(struct ferry *f, const char *topic, size_t tlen, const void *body,
    size_t len, const struct ferry_pub_opts *o, uint64_t rid)
{
	static const struct ferry_pub_opts none;
	struct fy_str reply_to, corr, group;
	struct fy_frame fr;
	size_t size, mark;
	int r;

	if (o == NULL)
		o = &none;
	r = check_msg(f, body, len, o->id, o->hdr, o->nhdr, &size);
	if (r < 0)
		return r;
	if ((r = check_opt(f, "reply_to", o->reply_to, FERRY_NAME_MAX,
	    &reply_to)) < 0 || (r = check_opt(f, "corr", o->corr,
	    FERRY_NAME_MAX, &corr)) < 0 || (r = check_opt(f, "group",
	    o->group, FERRY_NAME_MAX, &group)) < 0)
		return r;
	if (group.len && (r = check_name(f, "group", o->group,
	    group.len)) < 0)
		return r;
	if (reply_to.len && (r = check_name(f, "reply_to topic", o->reply_to,
	    reply_to.len)) < 0)
		return r;
	size += reply_to.len + corr.len + group.len + 128;
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
	fr.pub.one.delay_ms = o->delay_ms;
	fr.pub.one.ttl_ms = o->ttl_ms;
	fr.pub.one.reply_to = reply_to;
	fr.pub.one.corr = corr;
	set_pseq(f, &fr.pub.one, rid);
	fr.pub.msgs = &fr.pub.one;
	fr.pub.nmsgs = 1;
	fr.pub.mandatory = o->mandatory ? 1 : 0;
	fr.pub.group = group;
	mark = f->enc.sb.size;
	r = encode(f, &fr);
	if (r == 0)
		keep_frame(f, rid, mark);
	return r;
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
	if (r == 0)
		f->last_dups = f->wdups;
	return r;
}

size_t
ferry_last_dups(const struct ferry *f)
{
	return f->last_dups;
}

int
ferry_set_producer(struct ferry *f, const char *pid, uint64_t first_seq)
{
	struct timespec ts;
	size_t n;

	if (pid == NULL) {
		f->pid[0] = '\0';
		f->pseq = 0;
		return 0;
	}
	n = strnlen(pid, FY_ID_MAX + 1);
	if (n == 0 || n > FY_ID_MAX)
		return seterr(f, FERRY_EINVAL, "producer id must have 1 to %d "
		    "bytes", FY_ID_MAX);
	memcpy(f->pid, pid, n + 1);
	if (first_seq == 0) {
		clock_gettime(CLOCK_REALTIME, &ts);
		first_seq = (uint64_t)ts.tv_sec * 1000000 +
		    (uint64_t)ts.tv_nsec / 1000;
	}
	f->pseq = first_seq;
	return 0;
}

uint64_t
ferry_producer_seq(const struct ferry *f)
{
	return f->pid[0] ? f->pseq : 0;
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
	size_t i, nkv = 0, kvpos = 0, mark;
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
		for (i = 0; i < n; i++)
			set_pseq(f, &f->pm[i], rid);
	}
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_PUB;
	fr.rid = rid;
	fr.pub.topic.p = topic;
	fr.pub.topic.len = (uint32_t)tlen;
	fr.pub.msgs = f->pm;
	fr.pub.nmsgs = (uint32_t)n;
	mark = f->enc.sb.size;
	r = encode(f, &fr);
	if (r < 0) {
		if (rid)
			pend_take(f, rid, &p);
		return r;
	}
	keep_frame(f, rid, mark);
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

/* The SUB's OK: the broker's sid of the subscription being made. */
static int
sub_ok(struct ferry *f, const struct fy_frame *fr)
{
	struct lsub *s = sub_by_n(f, (uint32_t)(uintptr_t)f->wout);

	if (s != NULL && fr->type == FY_T_OK) {
		s->bsid = fr->ok.sid;
		s->pending = 0;
	}
	return 0;
}

/* Add a subscription to the table (copying its strings), not yet
 * answered; NULL when out of memory. */
static struct lsub *
sub_add(struct ferry *f, const char *topic, const struct ferry_sub_opts *o,
    size_t glen)
{
	struct lsub *s;

	if (f->nsubs == f->subcap) {
		size_t ncap = f->subcap ? f->subcap * 2 : 8;
		struct lsub *ns = realloc(f->subs, ncap * sizeof(*ns));

		if (ns == NULL)
			return NULL;
		f->subs = ns;
		f->subcap = ncap;
	}
	s = &f->subs[f->nsubs];
	memset(s, 0, sizeof(*s));
	s->o = *o;
	s->o.group = NULL;
	s->topic = strdup(topic);
	if (glen)
		s->o.group = strndup(o->group, glen);
	if (s->topic == NULL || (glen && s->o.group == NULL)) {
		free(s->topic);
		free((char *)s->o.group);
		return NULL;
	}
	s->n = ++f->next_sub;
	s->pending = 1;
	f->nsubs++;
	return s;
}

/* Subscribe; *n gets the subscription's n. */
static int
subscribe(struct ferry *f, const char *topic, const struct ferry_sub_opts *o,
    int inbox, uint32_t *n)
{
	static const struct ferry_sub_opts none;
	struct lsub *s;
	struct pend p;
	size_t tlen, glen = 0;
	uint64_t rid;
	uint32_t sn;
	int r;

	*n = 0;
	r = check_topic(f, topic, &tlen);
	if (r < 0)
		return r;
	if (o == NULL)
		o = &none;
	if (o->mode != FERRY_AT_LEAST_ONCE && o->mode != FERRY_AT_MOST_ONCE)
		return seterr(f, FERRY_EINVAL, "invalid mode %d", o->mode);
	if (o->overflow != FERRY_OVERFLOW_REJECT &&
	    o->overflow != FERRY_OVERFLOW_DLQ_OLDEST)
		return seterr(f, FERRY_EINVAL, "invalid overflow %d",
		    o->overflow);
	if (o->group != NULL && o->group[0] != '\0' && !o->ephemeral) {
		glen = strnlen(o->group, FERRY_NAME_MAX + 1);
		r = check_name(f, "group", o->group, glen);
		if (r < 0)
			return r;
	}
	if ((s = sub_add(f, topic, o, glen)) == NULL)
		return seterr(f, FERRY_ENOMEM, "out of memory");
	s->inbox = inbox;
	sn = s->n;
	rid = pend_new(f, PEND_SYNC, 0);
	if (rid == 0) {
		sub_remove(f, s);
		return seterr(f, FERRY_ENOMEM, "out of memory");
	}
	r = encode_sub(f, s, rid);
	if (r < 0) {
		pend_take(f, rid, &p);
		sub_remove(f, s);
		return r;
	}
	/* The table entry is in place before the OK is read: deliveries
	 * may follow it in the same read. */
	f->wcopy = sub_ok;
	f->wout = (void *)(uintptr_t)sn;
	r = wait_reply(f, rid);
	f->wcopy = NULL;
	f->wout = NULL;
	s = sub_by_n(f, sn);
	if (r == 0 && (s == NULL || s->bsid == 0))
		r = seterr(f, FERRY_EBADREPLY,
		    "subscribe answered without a subscription id");
	if (r < 0) {
		/* A late OK would subscribe us: unsubscribe then. */
		if (s != NULL)
			sub_remove(f, s);
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

	if (f->err && recover(f) < 0)
		return f->err;
	s = sub_by_n(f, n);
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_UNSUB;
	fr.unsub.sid = s ? s->bsid : 0;	/* 0: the broker says E_NOSUB */
	if (s != NULL)
		s->closing = 1;
	gen = f->gen;
	r = send_sync(f, &fr);
	s = sub_by_n(f, n);
	if (r == FERRY_ECLOSED && f->err == 0 && gen != f->gen && s == NULL)
		r = 0;		/* reconnected meanwhile: it is gone */
	if (s != NULL && r == 0)
		sub_remove(f, s);
	else if (s != NULL)
		s->closing = 0;
	if (r == 0) {
		purge(f, (uint64_t)f->gen << SID_GEN_SHIFT | n);
		if (n == f->inbox_n)
			f->inbox_n = 0;
	}
	return r;
}

/* The broker's sid for settling a delivery of sid, or an error. */
static int
settle_sid(struct ferry *f, uint64_t sid, uint64_t *bsid)
{
	struct lsub *s;

	*bsid = 0;
	if (sid >> SID_GEN_SHIFT != f->gen) {
		f->last_code = FY_E_STALE;
		return seterr(f, FERRY_ESTALE, "delivery from before a "
		    "reconnect: its lease is void");
	}
	s = sub_by_n(f, (uint32_t)sid);
	if (s != NULL)
		*bsid = s->bsid;	/* else 0: the broker says E_NOSUB */
	return 0;
}

/*
 * What ack, nack and touch do first: recover a lost connection if asked
 * to, start a frame of type, and find the broker's sid for sid.
 */
static int
settle_begin(struct ferry *f, struct fy_frame *fr, int type, uint64_t sid,
    uint64_t *bsid)
{
	if (f->err && recover(f) < 0)
		return f->err;
	memset(fr, 0, sizeof(*fr));
	fr->type = type;
	return settle_sid(f, sid, bsid);
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
	if (f->err && recover(f) < 0)
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
	uint64_t bsid;
	int r;

	if ((r = settle_begin(f, &fr, FY_T_ACK, sid, &bsid)) < 0)
		return r;
	if (!(flags & FERRY_CONFIRM) && bsid) {
		if ((f->nacks && f->acks_sid != bsid) || f->nacks == ACKS_MAX)
			if ((r = encode_acks(f)) < 0)
				return r;
		if (wpending(f) == 0)
			f->wsince = now_ms();	/* ages like buffered output */
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

/* --- Request-reply -------------------------------------------------------- */

static void
uuid_str(char *out)
{
	uuid_t u;

	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

/* Subscribe to the handle's inbox, once. */
static int
inbox_open(struct ferry *f)
{
	struct ferry_sub_opts o;
	char u[37];

	if (f->inbox_n != 0 && sub_by_n(f, f->inbox_n) != NULL)
		return 0;
	uuid_str(u);
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
	int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
	int r, saved = f->timeout_ms;
	int64_t left;

	*reply = NULL;
	if (f->err && recover(f) < 0)
		return f->err;
	if (o != NULL)
		po = *o;
	else
		memset(&po, 0, sizeof(po));
	r = inbox_open(f);
	if (r < 0)
		return r;
	uuid_str(corr);
	po.reply_to = f->inbox;
	po.corr = corr;
	po.mandatory = 1;
	/* The publish itself waits no longer than the request may. */
	if (deadline >= 0) {
		left = deadline - now_ms();
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
	left = deadline >= 0 ? deadline - now_ms() : -1;
	r = wait_for(f, deadline >= 0 ? (left > 0 ? (int)left : 0) : -1,
	    done_request, &w);
	if (w.got != NULL) {
		*reply = &w.got->msg;
		return 0;
	}
	if (r == FERRY_ETIMEOUT)
		return seterr(f, FERRY_ETIMEOUT, "no reply from %s within %d ms",
		    topic, timeout_ms);
	return r;
}

int
ferry_reply(struct ferry *f, const struct ferry_msg *request,
    const void *body, size_t len)
{
	struct ferry_pub_opts po;

	if (f->err && recover(f) < 0)
		return f->err;
	if (request == NULL || request->reply_to == NULL ||
	    request->reply_to[0] == '\0')
		return seterr(f, FERRY_EINVAL, "the message asks for no reply");
	memset(&po, 0, sizeof(po));
	po.corr = request->corr && request->corr[0] ? request->corr : NULL;
	/* A requester that is gone must not leave the reply stored in its
	 * inbox topic forever. */
	po.mandatory = 1;
	return ferry_publish_sync(f, request->reply_to, body, len, &po, NULL);
}

/* --- Inspection ------------------------------------------------------------ */

/* Strings of a copied answer go after its array, in the same block. */
#define SPUT(dst, s) do {						\
		(dst) = sp;						\
		if ((s).len)						\
			memcpy(sp, (s).p, (s).len);			\
		sp[(s).len] = '\0';					\
		sp += (s).len + 1;					\
	} while (0)

static int
copy_stats(struct ferry *f, const struct fy_frame *fr)
{
	const uint32_t n = fr->ok.nstats;
	struct ferry_group_stats *rows;
	size_t size = n * sizeof(*rows), i;
	char *sp;

	for (i = 0; i < n; i++)
		size += fr->ok.stats[i].topic.len + fr->ok.stats[i].group.len +
		    2;
	if ((rows = malloc(size ? size : 1)) == NULL)
		return -1;
	sp = (char *)(rows + n);
	for (i = 0; i < n; i++) {
		const struct fy_gstat *g = &fr->ok.stats[i];
		struct ferry_group_stats *r = &rows[i];

		SPUT(r->topic, g->topic);
		SPUT(r->group, g->group);
		r->ready = g->ready;
		r->delayed = g->delayed;
		r->inflight = g->inflight;
		r->bytes = g->bytes;
		r->members = g->members;
		r->enqueued = g->enqueued;
		r->delivered = g->delivered;
		r->acked = g->acked;
		r->timeouts = g->timeouts;
		r->nacked = g->nacked;
		r->disconnected = g->disconnected;
		r->released = g->released;
		r->expired = g->expired;
		r->dead_lettered = g->dead_lettered;
		r->age_ms = g->age_ms;
	}
	f->wout = rows;
	f->wn = n;
	return 0;
}

static int
copy_inflight(struct ferry *f, const struct fy_frame *fr)
{
	const uint32_t n = fr->ok.ninflight;
	struct ferry_lease_info *rows;
	size_t size = n * sizeof(*rows), i;
	char *sp;

	for (i = 0; i < n; i++)
		size += fr->ok.inflight[i].id.len +
		    fr->ok.inflight[i].consumer.len +
		    fr->ok.inflight[i].error.len + 3;
	if ((rows = malloc(size ? size : 1)) == NULL)
		return -1;
	sp = (char *)(rows + n);
	for (i = 0; i < n; i++) {
		const struct fy_lease_info *l = &fr->ok.inflight[i];

		SPUT(rows[i].id, l->id);
		SPUT(rows[i].consumer, l->consumer);
		SPUT(rows[i].error, l->error);
		rows[i].age_ms = l->age_ms;
		rows[i].attempt = l->attempt;
	}
	f->wout = rows;
	f->wn = n;
	return 0;
}

static int
copy_events(struct ferry *f, const struct fy_frame *fr)
{
	const uint32_t n = fr->ok.nevents;
	struct ferry_event *rows;
	size_t size = n * sizeof(*rows), i;
	char *sp;

	for (i = 0; i < n; i++) {
		const struct fy_event *e = &fr->ok.events[i];

		size += e->what.len + e->topic.len + e->group.len +
		    e->consumer.len + e->error.len + 5;
	}
	if ((rows = malloc(size ? size : 1)) == NULL)
		return -1;
	sp = (char *)(rows + n);
	for (i = 0; i < n; i++) {
		const struct fy_event *e = &fr->ok.events[i];

		rows[i].at_ms = e->at;
		SPUT(rows[i].what, e->what);
		SPUT(rows[i].topic, e->topic);
		SPUT(rows[i].group, e->group);
		SPUT(rows[i].consumer, e->consumer);
		SPUT(rows[i].error, e->error);
		rows[i].attempt = e->attempt;
	}
	f->wout = rows;
	f->wn = n;
	return 0;
}
#undef SPUT

static int
copy_peek(struct ferry *f, const struct fy_frame *fr)
{
	struct mnode *n;

	if (fr->type != FY_T_MSG)
		return 0;	/* an OK without the message: see below */
	if ((n = msg_copy(fr)) == NULL)
		return -1;
	n->msg.sid = 0;
	n->msg.lease = 0;
	f->wout = n;
	return 0;
}

/*
 * Send a query (STATS, INFLIGHT, PEEK, TRACE) and wait; on success the
 * copy built by fn is returned in *out (and its row count in *n).
 */
static int
query(struct ferry *f, int type, const char *topic, const char *group,
    const char *id, int (*fn)(struct ferry *, const struct fy_frame *),
    void **out, size_t *n)
{
	struct fy_frame fr;
	size_t tlen = 0, glen = 0, ilen = 0;
	int r;

	*out = NULL;
	*n = 0;
	if (f->err && recover(f) < 0)
		return f->err;
	if (topic != NULL && (topic[0] != '\0' || type != FY_T_STATS)) {
		r = check_topic(f, topic, &tlen);
		if (r < 0)
			return r;
	} else if (type != FY_T_STATS && type != FY_T_TRACE) {
		return seterr(f, FERRY_EINVAL, "topic is NULL");
	}
	if (group != NULL && group[0] != '\0') {
		glen = strnlen(group, FERRY_NAME_MAX + 1);
		r = check_name(f, "group", group, glen);
		if (r < 0)
			return r;
	}
	if (type == FY_T_TRACE) {
		if (id == NULL || id[0] == '\0')
			return seterr(f, FERRY_EINVAL, "message id is empty");
		ilen = strnlen(id, FERRY_ID_MAX + 1);
		if (ilen > FERRY_ID_MAX)
			return seterr(f, FERRY_EINVAL,
			    "message id longer than %d bytes", FERRY_ID_MAX);
	}
	memset(&fr, 0, sizeof(fr));
	fr.type = type;
	fr.query.topic.p = tlen ? topic : NULL;
	fr.query.topic.len = (uint32_t)tlen;
	fr.query.group.p = glen ? group : NULL;
	fr.query.group.len = (uint32_t)glen;
	fr.query.id.p = ilen ? id : NULL;
	fr.query.id.len = (uint32_t)ilen;
	f->wcopy = fn;
	f->wout = NULL;
	f->wn = 0;
	r = send_sync(f, &fr);
	f->wcopy = NULL;
	if (r < 0) {
		/* A copy made before a later failure is ours to free. */
		if (type == FY_T_PEEK)
			ferry_msg_free(f->wout ? &((struct mnode *)f->wout)->msg :
			    NULL);
		else
			free(f->wout);
		f->wout = NULL;
		return r;
	}
	*out = f->wout;
	*n = f->wn;
	f->wout = NULL;
	return 0;
}

int
ferry_stats(struct ferry *f, const char *topic,
    struct ferry_group_stats **rows, size_t *n)
{
	return query(f, FY_T_STATS, topic, NULL, NULL, copy_stats,
	    (void **)rows, n);
}

void
ferry_stats_free(struct ferry_group_stats *rows)
{
	free(rows);
}

/* The "broker" row of a STATS reply, if any (f->wn = 0 if none). */
static int
copy_broker(struct ferry *f, const struct fy_frame *fr)
{
	const struct fy_bstat *b = fr->ok.broker;
	struct ferry_broker_stats *bs;

	if ((bs = calloc(1, sizeof(*bs))) == NULL)
		return -1;
	if (fr->ok.nbroker > 0) {
		bs->conns = b->conns;
		bs->topics = b->topics;
		bs->groups = b->groups;
		bs->ready = b->ready;
		bs->delayed = b->delayed;
		bs->inflight = b->inflight;
		bs->bytes = b->bytes;
		bs->published = b->published;
		bs->delivered = b->delivered;
		bs->acked = b->acked;
		bs->bytes_in = b->bytes_in;
		bs->bytes_out = b->bytes_out;
		bs->journal_bytes = b->journal_bytes;
		bs->uptime_ms = b->uptime_ms;
	}
	f->wout = bs;
	f->wn = fr->ok.nbroker > 0;
	return 0;
}

int
ferry_stats_broker(struct ferry *f, struct ferry_broker_stats *bs)
{
	struct ferry_broker_stats *got;
	size_t n;
	int r;

	memset(bs, 0, sizeof(*bs));
	r = query(f, FY_T_STATS, NULL, NULL, NULL, copy_broker,
	    (void **)&got, &n);
	if (r < 0)
		return r;
	if (n == 0) {
		free(got);
		return seterr(f, FERRY_EBROKER, "the broker reports no "
		    "broker-wide figures");
	}
	*bs = *got;
	free(got);
	return 0;
}

int
ferry_inflight(struct ferry *f, const char *topic, const char *group,
    struct ferry_lease_info **rows, size_t *n)
{
	return query(f, FY_T_INFLIGHT, topic, group, NULL, copy_inflight,
	    (void **)rows, n);
}

void
ferry_inflight_free(struct ferry_lease_info *rows)
{
	free(rows);
}

int
ferry_trace(struct ferry *f, const char *id, struct ferry_event **rows,
    size_t *n)
{
	return query(f, FY_T_TRACE, NULL, NULL, id, copy_events,
	    (void **)rows, n);
}

void
ferry_trace_free(struct ferry_event *rows)
{
	free(rows);
}

int
ferry_peek(struct ferry *f, const char *topic, const char *group,
    struct ferry_msg **m)
{
	struct mnode *node;
	size_t n;
	int r;

	*m = NULL;
	r = query(f, FY_T_PEEK, topic, group, NULL, copy_peek,
	    (void **)&node, &n);
	if (r < 0)
		return r;
	if (node == NULL) {
		/* An OK: an older broker's way of saying "nothing". */
		f->last_code = FY_E_NOTFOUND;
		return seterr(f, FERRY_ENOTFOUND, "nothing to peek at");
	}
	*m = &node->msg;
	return 0;
}
