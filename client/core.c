/*
 * core.c - libferry's non-blocking core (see ferry-int.h).
 *
 * Frames are appended to one fy_enc buffer and written in large chunks, as
 * much as the socket takes; input is read into one growable buffer and
 * every complete frame in it is handled: MSG frames are copied into
 * caller-owned messages and queued, answers are matched to their request
 * by rid, ERR frames without rid are queued as async errors.  Nothing here
 * waits: a driver (sync.c's poll() loop) decides when to read and write.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uuid/uuid.h>

#include "ferry-int.h"

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
	[19] = "permission denied",
	[20] = "closed: idle too long",
	[21] = "slow consumer: messages dropped",
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

int64_t
lf_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copy a borrowed string into dst (size n), truncating, NUL-terminated. */
void
lf_strcopy(char *dst, size_t n, struct fy_str s)
{
	size_t len = s.len < n - 1 ? s.len : n - 1;

	if (len)
		memcpy(dst, s.p, len);
	dst[len] = '\0';
}

int
lf_seterr(struct ferry *f, int err, const char *fmt, ...)
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
	return lf_seterr(f, code_err(code), "%s: %.*s", fy_code_name((int)code),
	    (int)msg.len, msg.p ? msg.p : "");
}

void
lf_confirm(struct ferry *f, uint64_t rid, uint32_t nmsgs, int err, int code,
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
void
lf_fail_pending(struct ferry *f, int err)
{
	uint64_t rid;

	for (rid = f->plo; rid < f->next_rid; rid++) {
		struct pend *p = &f->pend[rid & (f->pcap - 1)], q = *p;

		/* Out of the ring before any callback runs. */
		p->kind = PEND_FREE;
		free(p->frame);
		p->frame = NULL;
		if (q.kind == PEND_PIPE)
			lf_confirm(f, rid, q.nmsgs, err, 0, "", f->errstr, 0);
		else if (q.kind == PEND_ASYNC && f->answer != NULL)
			f->answer(f, rid, &q, NULL, err);
	}
	f->plo = f->next_rid;
}

/* May a reconnect undo this error?  Not when the broker closed because
 * of what we sent: sending it again would fail again. */
int
lf_recoverable(const struct ferry *f, int err)
{
	if (!f->rc_on)
		return 0;
	if (f->close_code == FY_E_TOOBIG || f->close_code == FY_E_HANDSHAKE ||
	    f->close_code == FY_E_DENIED)
		return 0;
	return err == FERRY_EIO || err == FERRY_ECLOSED ||
	    err == FERRY_EBADREPLY;
}

/*
 * The connection is unusable: close it.  Without reconnection (or for an
 * error a reconnect cannot fix) the handle is dead and pipelined publishes
 * fail; otherwise f->lost tells lf_recover() to reconnect and resend them.
 */
int
lf_fatal(struct ferry *f, int err, const char *fmt, ...)
{
	va_list ap;

	if (f->err)
		return f->err;
	va_start(ap, fmt);
	vsnprintf(f->errstr, sizeof(f->errstr), fmt, ap);
	va_end(ap);
	f->err = err;
	if (f->closing != NULL)
		f->closing(f);	/* before the fd number can be reused */
	lf_tls_drop(f);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->reconnecting)
		return err;	/* lf_recover() decides */
	if (lf_recoverable(f, err)) {
		f->lost = 1;
		return err;
	}
	lf_fail_pending(f, err);
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
uint64_t
lf_pend_new(struct ferry *f, int kind, uint32_t nmsgs)
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
	p->op = 0;
	p->fn = NULL;
	p->arg = NULL;
	p->tag = 0;
	return rid;
}

/* Take rid's entry out of the ring; NULL if it is not outstanding. */
struct pend *
lf_pend_take(struct ferry *f, uint64_t rid, struct pend *out)
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
	lf_strcopy(e->msg, sizeof(e->msg), msg);
}

struct mnode *
lf_msg_copy(const struct fy_frame *fr)
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
	n->size = size;
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

/* Every pointer of a message points into its own block: move them along
 * with a copy of the block. */
#define MOVED(p, from, to) ((void *)((char *)(to) + ((const char *)(p) - \
	(const char *)(from))))

struct ferry_msg *
ferry_msg_dup(const struct ferry_msg *m)
{
	const struct mnode *o;
	struct mnode *n;
	struct ferry_header *hdr;
	struct ferry_hist *hist;
	size_t i;

	if (m == NULL)
		return NULL;
	o = (const struct mnode *)((const char *)m -
	    offsetof(struct mnode, msg));
	if ((n = malloc(o->size)) == NULL)
		return NULL;
	memcpy(n, o, o->size);
	n->next = NULL;
	n->msg.body = MOVED(m->body, o, n);
	n->msg.id = MOVED(m->id, o, n);
	n->msg.topic = MOVED(m->topic, o, n);
	n->msg.reply_to = MOVED(m->reply_to, o, n);
	n->msg.corr = MOVED(m->corr, o, n);
	if (m->nhdr) {
		hdr = MOVED(m->hdr, o, n);
		for (i = 0; i < m->nhdr; i++) {
			hdr[i].key = MOVED(m->hdr[i].key, o, n);
			hdr[i].value = MOVED(m->hdr[i].value, o, n);
		}
		n->msg.hdr = hdr;
	}
	if (m->nhist) {
		hist = MOVED(m->hist, o, n);
		for (i = 0; i < m->nhist; i++) {
			hist[i].cause = MOVED(m->hist[i].cause, o, n);
			hist[i].error = MOVED(m->hist[i].error, o, n);
			hist[i].consumer = MOVED(m->hist[i].consumer, o, n);
		}
		n->msg.hist = hist;
	}
	return &n->msg;
}
#undef MOVED

/* Drop buffered deliveries of a subscription that ended: their leases are
 * void, the broker has put the messages back. */
void
lf_purge(struct ferry *f, uint64_t sid)
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

struct lsub *
lf_sub_by_n(struct ferry *f, uint32_t n)
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

void
lf_sub_remove(struct ferry *f, struct lsub *s)
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
size_t
lf_mlist_free(struct mnode **head, struct mnode ***tail)
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
	struct lsub *s = lf_sub_by_n(f, n);

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
	lf_sub_remove(f, s);
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

	if (lf_pend_take(f, fr->rid, &p) == NULL)
		return;		/* not ours, or answered twice: ignore */
	if (fr->type == FY_T_OK && fr->ok.nids > 0)
		lf_strcopy(id, sizeof(id), fr->ok.ids[0]);
	if (!ok)
		lf_strcopy(msg, sizeof(msg), fr->err.msg);
	switch (p.kind) {
	case PEND_PIPE:
		if (ok)
			lf_confirm(f, fr->rid, p.nmsgs, 0, 0, id, "",
			    fr->type == FY_T_OK ? fr->ok.dups : 0);
		else
			lf_confirm(f, fr->rid, p.nmsgs, code_err(fr->err.code),
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
			f->werr = lf_seterr(f, FERRY_ENOMEM,
			    "out of memory copying the answer");
		break;
	case PEND_RESUB:
		resub_reply(f, fr, p.sub);
		break;
	case PEND_ASYNC:
		if (f->answer != NULL)
			f->answer(f, fr->rid, &p, fr, ok ? 0 :
			    code_err(fr->err.code));
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
		n = lf_msg_copy(fr);
		if (n == NULL)
			return lf_fatal(f, FERRY_ENOMEM,
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
		    fr->err.code == FY_E_SHUTDOWN ||
		    (fr->err.code == FY_E_DENIED && !f->welcomed)) {
			f->close_code = (int)fr->err.code;
			return 0;
		}
		if (fr->err.sid && (s = sub_by_bsid(f, fr->err.sid)) != NULL) {
			uint64_t sid = usid(f, s);

			/* The subscription ended (its group was deleted). */
			if (fr->err.code == FY_E_DELETED) {
				lf_purge(f, sid);
				lf_sub_remove(f, s);
			}
			async_push(f, (int)fr->err.code, sid, fr->err.msg);
			return 0;
		}
		async_push(f, (int)fr->err.code, fr->err.sid, fr->err.msg);
		return 0;
	case FY_T_CHALLENGE:
		return lf_scram_challenge(f, fr);
	case FY_T_WELCOME:
		if (f->welcomed)
			return 0;
		if (lf_scram_verify(f, fr) < 0)
			return f->err;
		f->welcomed = 1;
		lf_strcopy(f->server, sizeof(f->server), fr->welcome.server);
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
int
lf_process_input(struct ferry *f)
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
			return lf_fatal(f, FERRY_EBADREPLY,
			    "broker sent a zero-length frame");
		if (need > f->rmax)
			return lf_fatal(f, FERRY_EBADREPLY,
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
			return lf_fatal(f, FERRY_ENOMEM,
			    "out of memory decoding a frame");
		if (r != FY_OK)
			return lf_fatal(f, FERRY_EBADREPLY,
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
int
lf_read_some(struct ferry *f)
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
			return lf_fatal(f, FERRY_ENOMEM,
			    "out of memory growing the read buffer");
		f->rbuf = nb;
		f->rcap = ncap;
	}
	for (;;) {
		n = lf_tls_recv(f, f->rbuf + f->rend, f->rcap - f->rend);
		if (n > 0) {
			f->rend += (size_t)n;
			return 1;
		}
		if (n == 0) {
			if (f->close_code == FY_E_DENIED)
				return lf_fatal(f, FERRY_EDENIED, "login "
				    "refused (E_DENIED): wrong password, "
				    "unknown user, or a login required");
			if (f->close_code)
				return lf_fatal(f, FERRY_ECLOSED,
				    "connection closed by broker (%s)",
				    fy_code_name(f->close_code));
			return lf_fatal(f, FERRY_ECLOSED,
			    "connection closed by broker");
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == ECONNRESET)
			return lf_fatal(f, FERRY_ECLOSED,
			    "connection reset by broker");
		return lf_fatal(f, FERRY_EIO, "recv: %s", strerror(errno));
	}
}

/* --- Output ----------------------------------------------------------- */

/* Bytes waiting to be written, counting acks not yet encoded (lf_write_some()
 * encodes them first). */
size_t
lf_wpending(const struct ferry *f)
{
	if (f->gated)
		return f->wgate - f->wpos;
	return f->enc.sb.size - f->wpos + f->nacks * 9;
}

/*
 * Options for a freshly connected socket, the same for every driver.
 * TCP_NODELAY: requests are small and we batch them ourselves.
 * TCP_NOTSENT_LOWAT: without it the kernel takes up to tcp_wmem's maximum
 * (4 MB) of a producer's frames before a send() would block, so when
 * ferryd slows a producer (flow control stops reading it) that much sits
 * unsent on this host: ~30,000 small publishes stamped but not yet
 * delivered, tens of milliseconds of latency.  Bounding the unsent part to
 * LF_NOTSENT_LOWAT passes the back-pressure to the caller within a few
 * frames.  It limits only bytes not yet sent, never those in flight, so a
 * long fat network still fills its window.  Best effort: older kernels
 * lack it.
 */
void
lf_tune_socket(int fd)
{
	int one = 1, lowat = LF_NOTSENT_LOWAT;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef TCP_NOTSENT_LOWAT
	setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
#else
	(void)lowat;
#endif
}

/* Write what the socket takes now.  0 or a fatal error. */
int
lf_write_some(struct ferry *f)
{
	msgpack_sbuffer *sb = &f->enc.sb;
	ssize_t n;

	if (f->nacks && lf_encode_acks(f) < 0)
		return -1;

	while (f->wpos < (f->gated ? f->wgate : sb->size)) {
		n = lf_tls_send(f, sb->data + f->wpos,
		    (f->gated ? f->wgate : sb->size) - f->wpos);
		if (n >= 0) {
			f->wpos += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			/* Socket full: do not retry on every call. */
			f->wnext = sb->size - f->wpos + FLUSH_AT;
			f->wsince = lf_now_ms();
			break;
		}
		if (errno == EPIPE || errno == ECONNRESET)
			return lf_fatal(f, FERRY_ECLOSED,
			    "connection closed by broker (%s)",
			    strerror(errno));
		return lf_fatal(f, FERRY_EIO, "send: %s", strerror(errno));
	}
	if (f->wpos == sb->size) {
		fy_enc_clear(&f->enc);
		f->wpos = 0;
		f->wgate = 0;
		f->wnext = FLUSH_AT;
	} else if (f->wpos >= FLUSH_AT && f->wpos >= sb->size / 2) {
		/* Reclaim the written part so the buffer stays bounded. */
		memmove(sb->data, sb->data + f->wpos, sb->size - f->wpos);
		sb->size -= f->wpos;
		f->wgate -= f->gated ? f->wpos : 0;
		f->wpos = 0;
	}
	return 0;
}

/* Is buffered output big or old enough to be worth a syscall now?  Age
 * matters so that a worker's acks do not wait behind slow work until its
 * leases expire. */
int
lf_flush_due(const struct ferry *f)
{
	size_t n = lf_wpending(f);

	return n >= f->wnext || (n > 0 && lf_now_ms() - f->wsince >= FLUSH_MS);
}

/* Append one frame; on failure nothing of it stays in the buffer. */
static int
encode_frame(struct ferry *f, const struct fy_frame *fr)
{
	size_t mark = f->enc.sb.size;
	int r;

	if (mark == f->wpos)
		f->wsince = lf_now_ms();
	r = fy_encode(&f->enc, fr);
	if (r == FY_OK)
		return 0;
	f->enc.sb.size = mark;
	if (r == FY_ENOMEM)
		return lf_seterr(f, FERRY_ENOMEM, "out of memory encoding");
	return lf_seterr(f, FERRY_EINVAL, "cannot encode frame type %d",
	    fr->type);
}

/* Encode the pending acks as one ACK frame. */
int
lf_encode_acks(struct ferry *f)
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
int
lf_encode(struct ferry *f, const struct fy_frame *fr)
{
	int r;

	if ((r = lf_encode_acks(f)) < 0)
		return r;
	return encode_frame(f, fr);
}

/* Encode a SUB for s (rid 0: the caller sets it). */
int
lf_encode_sub(struct ferry *f, const struct lsub *s, uint64_t rid)
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
	return lf_encode(f, &fr);
}

/* Keep a copy of the confirmed publish rid just encoded at mark, to send
 * it again after a reconnect.  Without memory it is simply not kept: it
 * then fails with the connection, as without reconnection. */
void
lf_keep_frame(struct ferry *f, uint64_t rid, size_t mark)
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

int
lf_check_name(struct ferry *f, const char *what, const char *s, size_t len)
{
	if (fy_name_valid(s, len))
		return 0;
	f->last_code = FY_E_BADNAME;
	return lf_seterr(f, FERRY_EBADNAME, "invalid %s name \"%.*s\"", what,
	    (int)(len > 64 ? 64 : len), s);
}

/* Validate one message, counting its headers and its encoded size. */
int
lf_check_msg(struct ferry *f, const void *body, size_t len, const char *id,
    const struct ferry_header *hdr, size_t nhdr, size_t *size)
{
	size_t i, s;

	if (body == NULL && len > 0)
		return lf_seterr(f, FERRY_EINVAL, "body is NULL");
	if (len > f->max_msg) {
		f->last_code = FY_E_MSGSIZE;
		return lf_seterr(f, FERRY_EMSGSIZE,
		    "body of %zu bytes above the broker's max_msg %zu", len,
		    f->max_msg);
	}
	if (nhdr > 0 && hdr == NULL)
		return lf_seterr(f, FERRY_EINVAL, "headers are NULL");
	if (nhdr > UINT32_MAX / 2)
		return lf_seterr(f, FERRY_EINVAL, "too many headers");
	/* Generous: bin/str/map headers are at most 5 bytes each. */
	s = 16 + len + 5;
	if (id != NULL) {
		size_t n = strnlen(id, FERRY_ID_MAX + 1);

		if (n > FERRY_ID_MAX)
			return lf_seterr(f, FERRY_EINVAL,
			    "message id longer than %d bytes", FERRY_ID_MAX);
		s += n + 8;
	}
	s += 8;
	for (i = 0; i < nhdr; i++) {
		if (hdr[i].key == NULL || hdr[i].value == NULL)
			return lf_seterr(f, FERRY_EINVAL,
				    "header %zu is NULL", i);
		s += strlen(hdr[i].key) + strlen(hdr[i].value) + 10;
	}
	*size = s;
	return 0;
}

/* Room for n more header pairs in the scratch array, after used ones. */
int
lf_kv_reserve(struct ferry *f, size_t used, size_t n)
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
		return lf_seterr(f, FERRY_ENOMEM, "out of memory");
	f->kv = nkv;
	f->kvcap = ncap;
	return 0;
}

/* Fill pm from the caller's message, its headers at f->kv + kvpos. */
void
lf_fill_pubmsg(struct ferry *f, struct fy_pubmsg *pm, const void *body,
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
void
lf_set_pseq(struct ferry *f, struct fy_pubmsg *pm, uint64_t rid)
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
		return lf_seterr(f, FERRY_EINVAL, "%s longer than %zu bytes",
		    what, max);
	out->p = v;
	out->len = (uint32_t)n;
	return 0;
}

/* Encode a single-message PUB with rid (0 = fire-and-forget). */
int
lf_encode_pub(struct ferry *f, const char *topic, size_t tlen, const void *body,
    size_t len, const struct ferry_pub_opts *o, uint64_t rid)
{
	static const struct ferry_pub_opts none;
	struct fy_str reply_to, corr, group;
	struct fy_frame fr;
	size_t size, mark;
	int r;

	if (o == NULL)
		o = &none;
	r = lf_check_msg(f, body, len, o->id, o->hdr, o->nhdr, &size);
	if (r < 0)
		return r;
	if ((r = check_opt(f, "reply_to", o->reply_to, FERRY_NAME_MAX,
	    &reply_to)) < 0 || (r = check_opt(f, "corr", o->corr,
	    FERRY_NAME_MAX, &corr)) < 0 || (r = check_opt(f, "group",
	    o->group, FERRY_NAME_MAX, &group)) < 0)
		return r;
	if (group.len && (r = lf_check_name(f, "group", o->group,
	    group.len)) < 0)
		return r;
	if (reply_to.len && (r = lf_check_name(f, "reply_to topic", o->reply_to,
	    reply_to.len)) < 0)
		return r;
	size += reply_to.len + corr.len + group.len + 128;
	if (size + tlen + 32 > f->max_frame)
		return lf_seterr(f, FERRY_EMSGSIZE,
		    "message of %zu bytes above the broker's max_frame", size);
	if (lf_kv_reserve(f, 0, o->nhdr) < 0)
		return FERRY_ENOMEM;
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_PUB;
	fr.rid = rid;
	fr.pub.topic.p = topic;
	fr.pub.topic.len = (uint32_t)tlen;
	lf_fill_pubmsg(f, &fr.pub.one, body, len, o->id, o->hdr, o->nhdr, 0);
	fr.pub.one.delay_ms = o->delay_ms;
	fr.pub.one.ttl_ms = o->ttl_ms;
	fr.pub.one.reply_to = reply_to;
	fr.pub.one.corr = corr;
	lf_set_pseq(f, &fr.pub.one, rid);
	fr.pub.msgs = &fr.pub.one;
	fr.pub.nmsgs = 1;
	fr.pub.mandatory = o->mandatory ? 1 : 0;
	fr.pub.group = group;
	mark = f->enc.sb.size;
	r = lf_encode(f, &fr);
	if (r == 0)
		lf_keep_frame(f, rid, mark);
	return r;
}

int
lf_batch_begin(struct ferry *f, struct lf_batch *b, const char *topic,
    size_t tlen, const struct ferry_pub_msg *msgs, size_t n)
{
	size_t i, size;
	int r;

	memset(b, 0, sizeof(*b));
	if (n > 0 && msgs == NULL)
		return lf_seterr(f, FERRY_EINVAL, "msgs is NULL");
	b->topic = topic;
	b->tlen = tlen;
	b->msgs = msgs;
	b->n = n;
	b->budget = f->max_frame > FRAME_SLACK + tlen ?
	    f->max_frame - FRAME_SLACK / 2 - tlen : f->max_frame / 2;
	/* Validate all first: a bad message must not leave half a batch
	 * buffered. */
	for (i = 0; i < n; i++) {
		r = lf_check_msg(f, msgs[i].body, msgs[i].len, msgs[i].id,
		    msgs[i].hdr, msgs[i].nhdr, &size);
		if (r < 0)
			return r;
		if (size > b->budget)
			return lf_seterr(f, FERRY_EMSGSIZE,
			    "message %zu of %zu bytes above the broker's "
			    "max_frame", i, size);
	}
	return 0;
}

int
lf_batch_next(struct ferry *f, struct lf_batch *b)
{
	const struct ferry_pub_msg *m;
	size_t i, used = 0, size;

	b->start = b->end;
	if (b->start >= b->n)
		return 0;
	for (i = b->start; i < b->n; i++) {
		m = &b->msgs[i];
		lf_check_msg(f, m->body, m->len, m->id, m->hdr, m->nhdr, &size);
		/* The msgpack array count limits a frame to UINT32_MAX. */
		if (i > b->start && (used + size > b->budget ||
		    i - b->start == UINT32_MAX))
			break;
		used += size;
	}
	b->end = i;
	return 1;
}

int
lf_batch_encode(struct ferry *f, const struct lf_batch *b, uint64_t rid)
{
	const struct ferry_pub_msg *msgs = b->msgs + b->start;
	size_t n = b->end - b->start, i, nkv = 0, kvpos = 0, mark;
	struct fy_frame fr;
	int r;

	if (n > f->pmcap) {
		struct fy_pubmsg *npm = realloc(f->pm, n * sizeof(*npm));

		if (npm == NULL)
			return lf_seterr(f, FERRY_ENOMEM, "out of memory");
		f->pm = npm;
		f->pmcap = n;
	}
	for (i = 0; i < n; i++)
		nkv += msgs[i].nhdr;
	if (lf_kv_reserve(f, 0, nkv) < 0)
		return FERRY_ENOMEM;
	for (i = 0; i < n; i++) {
		lf_fill_pubmsg(f, &f->pm[i], msgs[i].body, msgs[i].len,
		    msgs[i].id, msgs[i].hdr, msgs[i].nhdr, kvpos);
		lf_set_pseq(f, &f->pm[i], rid);
		kvpos += msgs[i].nhdr;
	}
	memset(&fr, 0, sizeof(fr));
	fr.type = FY_T_PUB;
	fr.rid = rid;
	fr.pub.topic.p = b->topic;
	fr.pub.topic.len = (uint32_t)b->tlen;
	fr.pub.msgs = f->pm;
	fr.pub.nmsgs = (uint32_t)n;
	mark = f->enc.sb.size;
	r = lf_encode(f, &fr);
	if (r == 0)
		lf_keep_frame(f, rid, mark);
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
		return lf_seterr(f, FERRY_EINVAL,
		    "producer id must have 1 to %d bytes", FY_ID_MAX);
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

/* Check a subscription's options (not its topic); *glen gets the length
 * of its group name, 0 for the default group or an ephemeral one. */
int
lf_sub_check(struct ferry *f, const struct ferry_sub_opts *o, size_t *glen)
{
	*glen = 0;
	if (o->mode != FERRY_AT_LEAST_ONCE && o->mode != FERRY_AT_MOST_ONCE)
		return lf_seterr(f, FERRY_EINVAL, "invalid mode %d", o->mode);
	if (o->overflow != FERRY_OVERFLOW_REJECT &&
	    o->overflow != FERRY_OVERFLOW_DLQ_OLDEST)
		return lf_seterr(f, FERRY_EINVAL, "invalid overflow %d",
		    o->overflow);
	if (o->group != NULL && o->group[0] != '\0' && !o->ephemeral) {
		*glen = strnlen(o->group, FERRY_NAME_MAX + 1);
		return lf_check_name(f, "group", o->group, *glen);
	}
	return 0;
}

/* Add a subscription to the table (copying its strings), not yet
 * answered; NULL when out of memory. */
struct lsub *
lf_sub_add(struct ferry *f, const char *topic, const struct ferry_sub_opts *o,
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

/* The broker's sid for settling a delivery of sid, or an error. */
int
lf_settle_sid(struct ferry *f, uint64_t sid, uint64_t *bsid)
{
	struct lsub *s;

	*bsid = 0;
	if (sid >> SID_GEN_SHIFT != f->gen) {
		f->last_code = FY_E_STALE;
		return lf_seterr(f, FERRY_ESTALE, "delivery from before a "
		    "reconnect: its lease is void");
	}
	s = lf_sub_by_n(f, (uint32_t)sid);
	if (s != NULL)
		*bsid = s->bsid;	/* else 0: the broker says E_NOSUB */
	return 0;
}

void
ferry_msg_free(struct ferry_msg *m)
{
	if (m != NULL)
		free((char *)m - offsetof(struct mnode, msg));
}

void
lf_uuid_str(char *out)
{
	uuid_t u;

	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

/* --- The handle ---------------------------------------------------------- */

/*
 * A handle for host:port (NULL = 127.0.0.1) named name (NULL = libferry),
 * not connected yet.  NULL when out of memory; with a bad name, f->err is
 * FERRY_EINVAL.  timeout_ms <= 0: no I/O timeout.
 */
struct ferry *
lf_new(const char *host, int port, int timeout_ms, const char *name)
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
	f->rng = (unsigned)getpid() ^ (unsigned)lf_now_ms() ^
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
		lf_free(f);
		return NULL;
	}
	f->rcap = RBUF_INIT;
	if (host == NULL)
		host = "127.0.0.1";
	if (name == NULL)
		name = "libferry";
	f->port = port;
	if ((f->host = strdup(host)) == NULL) {
		lf_free(f);
		return NULL;
	}
	if (strlen(name) > FERRY_NAME_MAX) {
		lf_fatal(f, FERRY_EINVAL, "client name longer than %d bytes",
		    FERRY_NAME_MAX);
		return f;
	}
	strcpy(f->name, name);
	return f;
}

/* Close the socket and free the handle and everything it still holds. */
void
lf_free(struct ferry *f)
{
	uint64_t rid;

	lf_tls_free(f);
	if (f->fd >= 0)
		close(f->fd);
	lf_mlist_free(&f->mhead, &f->mtail);
	lf_mlist_free(&f->rhead, &f->rtail);
	while (f->nsubs > 0)
		lf_sub_remove(f, &f->subs[f->nsubs - 1]);
	free(f->subs);
	if (f->pend != NULL)
		for (rid = f->plo; rid < f->next_rid; rid++)
			free(f->pend[rid & (f->pcap - 1)].frame);
	free(f->host);
	lf_forget_login(f);
	fy_enc_fini(&f->enc);
	fy_dec_fini(&f->dec);
	free(f->rbuf);
	free(f->pend);
	free(f->kv);
	free(f->pm);
	free(f);
}
