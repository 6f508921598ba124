/*
 * conn.c - one client: read frames, dispatch requests, stage output.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <uuid/uuid.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "group.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "store.h"
#include "sub.h"
#include "topic.h"
#include "trace.h"
#include "inspect.h"

/* Bodies at least this large are sent by reference instead of copied:
 * below it a memcpy is cheaper than libevent's per-reference chain. */
#define BODY_REF_MIN 4096

/* Write-side low watermark: paused deliveries resume below it. */
#define OUT_LOWAT (64 * 1024)

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void hs_timeout_cb(evutil_socket_t fd, short what, void *arg);

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
conn_new(struct broker *b, evutil_socket_t fd, const struct sockaddr *sa,
    int salen)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct timeval hs;
	int one = 1;

	if (!c) {
		evutil_closesocket(fd);
		return NULL;
	}
	c->b = b;
	c->id = ++b->next_conn_id;
	list_init(&c->subs);
	list_init(&c->plink);
	list_init(&c->flink);
	list_init(&c->link);
	fy_enc_init(&c->enc);
	if (fy_dec_init(&c->dec) != FY_OK)
		goto fail;
	if (sa && salen > 0)
		format_peer(c->peer, sizeof(c->peer), sa);
	else
		snprintf(c->peer, sizeof(c->peer), "local");
	snprintf(c->name, sizeof(c->name), "%s", c->peer);
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bufferevent_socket_new(b->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->hs_timer = evtimer_new(b->base, hs_timeout_cb, c);
	if (!c->bev || !c->hs_timer)
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
	log_debug("%s: connected", c->peer);
	return c;
fail:
	log_warn("%s: cannot set up connection: out of memory", c->peer);
	if (c->bev)
		bufferevent_free(c->bev);
	else
		evutil_closesocket(fd);
	if (c->hs_timer)
		event_free(c->hs_timer);
	fy_dec_fini(&c->dec);
	fy_enc_fini(&c->enc);
	free(c);
	return NULL;
}

/*
 * End every subscription: deliveries go back to their groups, counted as
 * a failed attempt (the consumer may have crashed on one of them), unless
 * the broker is stopping: then they stay in the journal as they are.
 */
static void
release_subs(struct conn *c)
{
	int cause = c->b->stopping ? -1 : CAUSE_DISCONNECTED;
	struct sub *s;

	while ((s = list_first(&c->subs, struct sub, clink)))
		sub_free(s, cause);
}

static void
pending_fini(struct pending *p)
{
	if (p->n > 1)
		free(p->many);
	p->many = NULL;
}

void
conn_free(struct conn *c)
{
	if (!c)
		return;
	release_subs(c);
	while (c->pend_n) {
		pending_fini(&c->pend[c->pend_head]);
		c->pend_head = (c->pend_head + 1) % c->pend_cap;
		c->pend_n--;
	}
	free(c->pend);
	list_del(&c->plink);
	list_del(&c->link);
	list_del(&c->flink);
	c->b->nconns--;
	if (c->bev)
		bufferevent_free(c->bev);
	event_free(c->hs_timer);
	fy_dec_fini(&c->dec);
	fy_enc_fini(&c->enc);
	free(c);
}

void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	/* Other members get this connection's messages now, not later. */
	release_subs(c);
	conn_flush(c);
	if (!evbuffer_get_length(bufferevent_get_output(c->bev)))
		broker_want_reap(c->b, c);
	/* else write_cb reaps once the farewell frames are written */
}

/* Close from a place that may be inside a loop over shared state: defer
 * everything but the flag to the reap event. */
static void
conn_abort(struct conn *c)
{
	if (!c->closing) {
		c->closing = 1;
		bufferevent_disable(c->bev, EV_READ);
	}
	broker_want_reap(c->b, c);
}

size_t
conn_outlen(const struct conn *c)
{
	return c->enc.sb.size +
	    evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void drained(struct conn *c);

void
conn_flush(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t off = 0, size = c->enc.sb.size;
	evutil_socket_t fd;

	list_del(&c->flink);
	if (!size)
		return;
	/*
	 * Nothing is waiting in libevent's buffer: write now.  Handing the
	 * bytes to the bufferevent would cost every delivery another trip
	 * round the loop (and the journal's write) before its send.  What
	 * the socket does not take, and any error, is left to libevent.
	 */
	if (!evbuffer_get_length(out) && (fd = bufferevent_getfd(c->bev)) >= 0) {
		ssize_t n = send(fd, c->enc.sb.data, size,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0)
			off = (size_t)n;
	}
	if (off < size && bufferevent_write(c->bev, c->enc.sb.data + off,
	    size - off) < 0) {
		log_warn("%s: out of memory queueing output", c->name);
		conn_abort(c);
	}
	fy_enc_clear(&c->enc);
	/* All sent: libevent will not call write_cb for it. */
	if (off == size && !c->closing)
		drained(c);
}

static void
staged(struct conn *c)
{
	if (list_empty(&c->flink))
		broker_want_flush(c->b, c);
}

int
conn_send(struct conn *c, const struct fy_frame *f)
{
	if (fy_encode(&c->enc, f) != FY_OK) {
		log_warn("%s: out of memory encoding a reply", c->name);
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
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (m->body_len < BODY_REF_MIN)
		return conn_send(c, f);
	/* Large body: stage the head, hand libevent the stored bytes. */
	if (fy_encode_nobody(&c->enc, f) != FY_OK)
		goto nomem;
	conn_flush(c);
	if (evbuffer_add_reference(out, msg_body(m), m->body_len, unref_cb,
	    msg_ref(m)) < 0) {
		msg_unref(m);
		goto nomem;
	}
	return 0;
nomem:
	log_warn("%s: out of memory sending a message", c->name);
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
	log_debug("%s: error %s: %s", c->name, fy_code_name(code), text);
	return conn_send(c, &f);
}

static int
send_ok(struct conn *c, uint64_t rid)
{
	struct fy_frame f = {.type = FY_T_OK, .rid = rid};

	return rid ? conn_send(c, &f) : 0;
}

static struct sub *
find_sub(struct conn *c, uint64_t sid)
{
	struct list *pos;

	list_for_each(pos, &c->subs) {
		struct sub *s = list_entry(pos, struct sub, clink);

		if (s->sid == sid)
			return s;
	}
	return NULL;
}

static int
bad_name(struct conn *c, uint64_t rid, const char *what, struct fy_str s)
{
	if (fy_name_valid(s.p, s.len))
		return 0;
	conn_send_err(c, rid, FY_E_BADNAME, 0,
	    "invalid %s name: 1..%d characters of A-Z a-z 0-9 . - _",
	    what, FY_NAME_MAX);
	return 1;
}

/* Would creating this topic pass max_topics?  1 after an error reply. */
static int
topic_limit(struct conn *c, uint64_t rid, struct fy_str name)
{
	struct broker *b = c->b;

	if (b->ntopics < b->opt->max_topics ||
	    topic_find(b, name.p, name.len))
		return 0;
	conn_send_err(c, rid, FY_E_LIMIT, 0,
	    "too many topics (max_topics = %u)", b->opt->max_topics);
	return 1;
}

static void
handle_hello(struct conn *c, const struct fy_frame *f)
{
	struct broker *b = c->b;
	struct fy_frame w = {.type = FY_T_WELCOME, .rid = f->rid};
	char session[37];
	uuid_t u;

	if (c->hello) {
		conn_send_err(c, f->rid, FY_E_HANDSHAKE, 0,
		    "HELLO was already received");
		return;
	}
	if (f->hello.version != FY_PROTO_VERSION) {
		conn_send_err(c, f->rid, FY_E_HANDSHAKE, 0,
		    "protocol version %u not supported (this broker speaks "
		    "%d)", f->hello.version, FY_PROTO_VERSION);
		conn_close(c);
		return;
	}
	c->hello = 1;
	evtimer_del(c->hs_timer);
	if (b->opt->idle_timeout_ms) {
		struct timeval idle = {
			.tv_sec = b->opt->idle_timeout_ms / 1000,
			.tv_usec = (b->opt->idle_timeout_ms % 1000) * 1000,
		};

		bufferevent_set_timeouts(c->bev, &idle, NULL);
	}
	if (f->hello.name.len) {
		size_t n = f->hello.name.len;

		if (n >= sizeof(c->name))
			n = sizeof(c->name) - 1;
		memcpy(c->name, f->hello.name.p, n);
		c->name[n] = '\0';
	}
	c->sym = trace_sym(&b->trace, c->name, strlen(c->name));
	uuid_generate_random(u);
	uuid_unparse_lower(u, session);
	w.welcome.version = FY_PROTO_VERSION;
	w.welcome.server = (struct fy_str){"ferryd " FERRY_VERSION,
	    sizeof("ferryd " FERRY_VERSION) - 1};
	w.welcome.session = (struct fy_str){session, 36};
	w.welcome.max_frame = b->opt->max_frame;
	w.welcome.max_msg = b->opt->max_message;
	conn_send(c, &w);
	log_debug("%s: hello from %s (%s)", c->peer, c->name, session);
}

static int
durability(const struct conn *c)
{
	return c->b->opt->fsync == FSYNC_ALWAYS ? FY_DUR_SYNCED :
	    FY_DUR_WRITTEN;
}

static void
send_pending(struct conn *c, struct pending *p)
{
	struct fy_frame ok = {.type = FY_T_OK, .rid = p->rid};
	struct fy_str idbuf[16], *ids = idbuf;
	const char *id = p->n == 1 ? p->one : p->many;

	if (p->n > 16 && !(ids = malloc(p->n * sizeof(*ids)))) {
		conn_send_err(c, p->rid, FY_E_INTERNAL, 0,
		    "out of memory confirming %u messages", p->n);
		return;
	}
	for (uint32_t i = 0; i < p->n; i++) {
		size_t len = strlen(id);

		ids[i] = (struct fy_str){id, (uint32_t)len};
		id += len + 1;
	}
	ok.ok.ids = p->n ? ids : NULL;
	ok.ok.nids = p->n;
	ok.ok.dur = p->n ? (uint32_t)durability(c) : 0;
	ok.ok.dups = p->dups;
	conn_send(c, &ok);
	if (ids != idbuf)
		free(ids);
}

/*
 * Answer rid once seq is durable.  p holds the ids a publish confirm names
 * (its storage is taken over).
 */
static void
defer_reply(struct conn *c, struct pending *p)
{
	if (!c->pend_n && p->seq <= c->b->store.confirmable) {
		send_pending(c, p);
		pending_fini(p);
		return;
	}
	if (c->pend_n == c->pend_cap) {
		uint32_t cap = c->pend_cap ? c->pend_cap * 2 : 64;
		struct pending *r = malloc(cap * sizeof(*r));

		if (!r) {
			conn_send_err(c, p->rid, FY_E_INTERNAL, 0,
			    "out of memory queueing a confirm");
			pending_fini(p);
			return;
		}
		for (uint32_t i = 0; i < c->pend_n; i++)
			r[i] = c->pend[(c->pend_head + i) % c->pend_cap];
		free(c->pend);
		c->pend = r;
		c->pend_cap = cap;
		c->pend_head = 0;
	}
	c->pend[(c->pend_head + c->pend_n) % c->pend_cap] = *p;
	c->pend_n++;
	store_wait(c->b, c);
}

int
conn_confirm(struct conn *c, uint64_t upto)
{
	while (c->pend_n) {
		struct pending *p = &c->pend[c->pend_head];

		if (p->seq > upto)
			return 0;
		send_pending(c, p);
		pending_fini(p);
		c->pend_head = (c->pend_head + 1) % c->pend_cap;
		c->pend_n--;
	}
	return 1;
}

/* Does any group that would get this publish have a member? */
static int
has_members(const struct topic *t, const struct group *only)
{
	const struct list *pos;

	if (only)
		return only->nmembers > 0;
	list_for_each(pos, &t->groups)
		if (list_entry(pos, struct group, tlink)->nmembers)
			return 1;
	return 0;
}

/* Groups with overflow "reject" refuse the whole frame when full. */
static struct group *
full_group(struct topic *t, struct group *only, uint32_t n, uint64_t bytes)
{
	struct list *pos;

	if (only)
		return only->conf.overflow == FY_OVERFLOW_REJECT &&
		    !group_has_room(only, n, bytes) ? only : NULL;
	list_for_each(pos, &t->groups) {
		struct group *g = list_entry(pos, struct group, tlink);

		if (g->conf.overflow == FY_OVERFLOW_REJECT &&
		    !group_has_room(g, n, bytes))
			return g;
	}
	return NULL;
}

/* Room for one more message in every "dead-letter-oldest" group. */
static int
make_room(struct broker *b, struct topic *t, struct group *only,
    uint64_t bytes)
{
	struct list *pos, *tmp;
	int r;

	if (only)
		return only->conf.overflow == FY_OVERFLOW_DLQ_OLDEST ?
		    store_make_room(b, only, bytes) : 0;
	list_for_each_safe(pos, tmp, &t->groups) {
		struct group *g = list_entry(pos, struct group, tlink);

		if (g->conf.overflow == FY_OVERFLOW_DLQ_OLDEST &&
		    (r = store_make_room(b, g, bytes)) < 0)
			return r;
	}
	return 0;
}

static void
handle_pub(struct conn *c, const struct fy_frame *f)
{
	struct broker *b = c->b;
	uint32_t n = f->pub.nmsgs;
	struct pending p = {.rid = f->rid, .n = n};
	struct group *only = NULL, *full;
	char *idp = p.one;
	uint64_t ts, bytes = 0;
	struct topic *t;
	uint32_t i, done = 0, nnew = n;
	int e = 0;

	if (bad_name(c, f->rid, "topic", f->pub.topic) ||
	    (f->pub.group.len && bad_name(c, f->rid, "group", f->pub.group)))
		return;
	for (i = 0; i < n; i++) {
		const struct fy_pubmsg *pm = &f->pub.msgs[i];

		if (pm->body.len > b->opt->max_message) {
			conn_send_err(c, f->rid, FY_E_MSGSIZE, 0,
			    "message %u: body of %u bytes is above "
			    "max_message_size (%u)", i, pm->body.len,
			    b->opt->max_message);
			return;
		}
		if (pm->id.len > FY_ID_MAX) {
			conn_send_err(c, f->rid, FY_E_BADARG, 0,
			    "message %u: id longer than %d bytes", i,
			    FY_ID_MAX);
			return;
		}
		if (pm->delay_ms > MSG_TIME_MAX || pm->ttl_ms > MSG_TIME_MAX) {
			conn_send_err(c, f->rid, FY_E_BADARG, 0,
			    "message %u: delay and ttl are at most %llu ms", i,
			    (unsigned long long)MSG_TIME_MAX);
			return;
		}
		bytes += pm->body.len;
	}
	/* Refuse the whole frame up front, so a batch is never half
	 * stored when the disk is full. */
	if ((e = store_error(b)) < 0) {
		conn_send_err(c, f->rid, FY_E_DISK, 0, store_error_fatal(b) ?
		    "journal sync failed (%s): nothing is accepted until "
		    "ferryd restarts; nothing confirmed was lost" :
		    "journal cannot write: %s; retry later", strerror(-e));
		return;
	}
	if (topic_limit(c, f->rid, f->pub.topic))
		return;
	/* An inbox keeps no backlog: without its listener there is nowhere
	 * to put the message, and no topic to create. */
	if (f->pub.topic.len > strlen(TOPIC_INBOX_PREFIX) &&
	    !memcmp(f->pub.topic.p, TOPIC_INBOX_PREFIX,
	    strlen(TOPIC_INBOX_PREFIX)) && (!(t = topic_find(b,
	    f->pub.topic.p, f->pub.topic.len)) || !t->ngroups)) {
		conn_send_err(c, f->rid, FY_E_NOSUBSCRIBERS, 0,
		    "no one listens on inbox %.*s", (int)f->pub.topic.len,
		    f->pub.topic.p);
		return;
	}
	if (!(t = topic_get(b, f->pub.topic.p, f->pub.topic.len))) {
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		return;
	}
	if (f->pub.group.len && (!(only = topic_group_find(t,
	    f->pub.group.p, f->pub.group.len)) || only->ephemeral)) {
		conn_send_err(c, f->rid, FY_E_NOTFOUND, 0,
		    "no durable group %.*s on topic %s", (int)f->pub.group.len,
		    f->pub.group.p, t->name);
		return;
	}
	if (f->pub.mandatory && !has_members(t, only)) {
		conn_send_err(c, f->rid, FY_E_NOSUBSCRIBERS, 0,
		    "no subscriber on topic %s", t->name);
		return;
	}
	/* A duplicate takes no room: count only what will be stored. */
	for (i = 0; i < n; i++) {
		const char *did;
		size_t dlen;

		if (store_duplicate(b, t, &f->pub.msgs[i], &did, &dlen)) {
			nnew--;
			bytes -= f->pub.msgs[i].body.len;
		}
	}
	if (nnew && (full = full_group(t, only, nnew, bytes))) {
		conn_send_err(c, f->rid, FY_E_FULL, 0,
		    "group %s/%s is full (%llu messages, %llu bytes); retry "
		    "later", t->name, full->name,
		    (unsigned long long)full->nheld,
		    (unsigned long long)full->nbytes);
		return;
	}
	if (f->rid && n > 1 && !(idp = p.many = malloc(n * (FY_ID_MAX + 1)))) {
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		return;
	}
	ts = clock_wall_ms();
	for (i = 0; i < n; i++) {
		const struct fy_pubmsg *pm = &f->pub.msgs[i];
		char gen[MSG_ID_LEN + 1];
		const char *id = pm->id.p;
		size_t idlen = pm->id.len;

		if (store_duplicate(b, t, pm, &id, &idlen)) {
			p.dups++;
			trace_add(&b->trace, ts, msg_id_hash(id, idlen),
			    TR_DUPLICATE, t->sym, 0, c->sym, 0);
		} else {
			if (!idlen) {
				msg_id_generate(gen);
				id = gen;
				idlen = MSG_ID_LEN;
			}
			if ((e = make_room(b, t, only, pm->body.len)) < 0 ||
			    (e = store_publish(b, t, pm, id, idlen, ts, NULL,
			    0, only, f->rid != 0, &p.seq)) < 0)
				break;
		}
		if (f->rid) {
			memcpy(idp, id, idlen);
			idp[idlen] = '\0';
			idp += idlen + 1;
		}
		done++;
	}
	if (done < n) {
		conn_send_err(c, f->rid, e == -ENOSPC ? FY_E_FULL :
		    e == -ENOMEM ? FY_E_INTERNAL : FY_E_DISK, 0,
		    "%s: %u of %u messages published", e == -ENOSPC ?
		    "a group is full" : strerror(-e), done, n);
		pending_fini(&p);
	} else if (f->rid) {
		/* Only duplicates: confirmable once their originals are,
		 * which were appended before now (and may have been
		 * fire-and-forget, not yet durable). */
		if (!p.seq)
			p.seq = store_newest_seq(c->b);
		defer_reply(c, &p);
	}
}

static void
handle_sub(struct conn *c, const struct fy_frame *f)
{
	struct broker *b = c->b;
	const struct options *o = b->opt;
	struct fy_frame ok = {.type = FY_T_OK, .rid = f->rid};
	struct fy_str gname = f->sub.group;
	char eph[24];
	struct topic *t;
	struct group *g;
	struct sub *s;
	uint32_t ack_timeout, prefetch;
	struct group_conf conf;
	int r;

	if (bad_name(c, f->rid, "topic", f->sub.topic))
		return;
	if (f->sub.ephemeral) {
		/* '~' is not allowed in names, so no client can join it. */
		snprintf(eph, sizeof(eph), "~%016llx",
		    (unsigned long long)broker_rand(b));
		gname = (struct fy_str){eph, 17};
	} else if (!gname.len) {
		gname = (struct fy_str){GROUP_DEFAULT,
		    sizeof(GROUP_DEFAULT) - 1};
	} else if (bad_name(c, f->rid, "group", gname)) {
		return;
	}
	if (f->sub.mode != FY_MODE_ALO && f->sub.mode != FY_MODE_AMO) {
		conn_send_err(c, f->rid, FY_E_BADARG, 0,
		    "mode must be 0 (at-least-once) or 1 (at-most-once)");
		return;
	}
	if (f->sub.ttl_ms > MSG_TIME_MAX) {
		conn_send_err(c, f->rid, FY_E_BADARG, 0,
		    "ttl is at most %llu ms", (unsigned long long)MSG_TIME_MAX);
		return;
	}
	if (f->sub.overflow > FY_OVERFLOW_DLQ_OLDEST) {
		conn_send_err(c, f->rid, FY_E_BADARG, 0,
		    "overflow must be 0 (reject) or 1 (dead-letter oldest)");
		return;
	}
	if (topic_limit(c, f->rid, f->sub.topic))
		return;
	if (!(t = topic_get(b, f->sub.topic.p, f->sub.topic.len))) {
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		return;
	}
	if (!topic_group_find(t, gname.p, gname.len) &&
	    b->ngroups >= o->max_groups) {
		conn_send_err(c, f->rid, FY_E_LIMIT, 0,
		    "too many groups (max_groups = %u)", o->max_groups);
		return;
	}
	conf = (struct group_conf){
		.ack_timeout_ms = f->sub.ack_timeout_ms ?
		    f->sub.ack_timeout_ms : o->ack_timeout_ms,
		.max_attempts = f->sub.max_attempts ? f->sub.max_attempts :
		    o->max_attempts,
		.ttl_ms = f->sub.ttl_ms,
		.max_msgs = f->sub.max_msgs,
		.max_bytes = f->sub.max_bytes,
		.ttl_drop = f->sub.ttl_drop,
		.overflow = (uint8_t)f->sub.overflow,
		.ephemeral = f->sub.ephemeral,
	};
	r = store_group_get(b, t, gname.p, gname.len, &conf, &g);
	if (r < 0) {
		conn_send_err(c, f->rid, r == -ENOMEM ? FY_E_INTERNAL :
		    FY_E_DISK, 0, "cannot create group: %s", strerror(-r));
		return;
	}
	ack_timeout = f->sub.ack_timeout_ms ? f->sub.ack_timeout_ms :
	    g->ack_timeout_ms;
	prefetch = f->sub.prefetch ? f->sub.prefetch : o->default_prefetch;
	if (!(s = sub_new(c, g, ++c->next_sid, prefetch, f->sub.mode,
	    ack_timeout))) {
		if (g->ephemeral && !g->nmembers)
			topic_group_delete(g);
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		return;
	}
	ok.ok.sid = s->sid;
	ok.ok.group = (struct fy_str){g->name, (uint32_t)strlen(g->name)};
	if (f->rid)
		conn_send(c, &ok);
	log_debug("%s: subscribed to %s/%s as sid %llu", c->name, t->name,
	    g->name, (unsigned long long)s->sid);
	/* After the OK, so the client learns its sid before messages. */
	group_pump(g);
}

/* The subscription an ACK/NACK/TOUCH names, or NULL after replying. */
static struct sub *
lease_sub(struct conn *c, const struct fy_frame *f, uint64_t sid)
{
	struct sub *s = find_sub(c, sid);

	if (!s) {
		conn_send_err(c, f->rid, FY_E_NOSUB, 0,
		    "no subscription %llu on this connection",
		    (unsigned long long)sid);
		return NULL;
	}
	if (s->mode == FY_MODE_AMO) {
		conn_send_err(c, f->rid, FY_E_MODE, 0,
		    "subscription %llu is at-most-once: nothing to settle",
		    (unsigned long long)sid);
		return NULL;
	}
	return s;
}

static void
stale(struct conn *c, const struct fy_frame *f, uint64_t lease)
{
	conn_send_err(c, f->rid, FY_E_STALE, 0,
	    "lease %llu is no longer valid (expired, settled or redelivered)",
	    (unsigned long long)lease);
}

static void
handle_ack(struct conn *c, const struct fy_frame *f)
{
	struct sub *s = lease_sub(c, f, f->ack.sid);
	uint32_t nstale = 0;
	uint64_t first_stale = 0, seq = 0;
	struct qent *e;

	if (!s)
		return;
	if (f->rid && store_error(c->b) < 0) {
		/* Its OK would promise a durable ack: keep the leases, let
		 * the consumer retry once the disk has room again. */
		conn_send_err(c, f->rid, FY_E_DISK, 0,
		    "journal cannot write; ack not settled, retry later");
		return;
	}
	for (uint32_t i = 0; i < f->ack.nleases; i++) {
		if ((e = sub_lease_find(s, f->ack.leases[i]))) {
			trace_add(&c->b->trace, clock_wall_ms(),
			    msg_idh(qent_msg(e)),
			    TR_ACKED, s->group->topic->sym, s->group->sym,
			    c->sym, (uint32_t)e->attempts + 1);
			store_ack(c->b, e, &seq);
		} else if (!nstale++) {
			first_stale = f->ack.leases[i];
		}
	}
	if (nstale == 1 && f->ack.nleases == 1)
		stale(c, f, first_stale);
	else if (nstale)
		conn_send_err(c, f->rid, FY_E_STALE, 0,
		    "%u of %u leases no longer valid (first: %llu)", nstale,
		    f->ack.nleases, (unsigned long long)first_stale);
	else if (f->rid) {
		/* A confirmed ack: answered once the ack is durable. */
		struct pending p = {.rid = f->rid, .seq = seq};

		defer_reply(c, &p);
	}
	group_pump_later(s->group);
}

static void
handle_nack(struct conn *c, const struct fy_frame *f)
{
	struct sub *s = lease_sub(c, f, f->nack.sid);
	struct group *g;
	struct qent *e;
	size_t errlen;

	if (!s)
		return;
	if (!(e = sub_lease_find(s, f->nack.lease))) {
		stale(c, f, f->nack.lease);
		return;
	}
	g = s->group;
	errlen = f->nack.error.len;
	if (errlen > FY_ERRTEXT_MAX)
		errlen = FY_ERRTEXT_MAX;
	if (f->nack.has_delay && f->nack.delay_ms > MSG_TIME_MAX) {
		conn_send_err(c, f->rid, FY_E_BADARG, 0, "delay out of range");
		return;
	}
	store_fail(c->b, e, CAUSE_NACKED, f->nack.error.p, errlen,
	    f->nack.has_delay ? (int64_t)f->nack.delay_ms : -1);
	send_ok(c, f->rid);
	group_pump_later(g);
}

static void
handle_touch(struct conn *c, const struct fy_frame *f)
{
	struct sub *s = lease_sub(c, f, f->touch.sid);
	struct qent *e;

	if (!s)
		return;
	if (!(e = sub_lease_find(s, f->touch.lease))) {
		stale(c, f, f->touch.lease);
		return;
	}
	sub_touch(s, e);
	send_ok(c, f->rid);
}

static void
handle_unsub(struct conn *c, const struct fy_frame *f)
{
	struct sub *s = find_sub(c, f->unsub.sid);

	if (!s) {
		conn_send_err(c, f->rid, FY_E_NOSUB, 0,
		    "no subscription %llu on this connection",
		    (unsigned long long)f->unsub.sid);
		return;
	}
	sub_free(s, CAUSE_RELEASED);
	send_ok(c, f->rid);
}

static void
handle_delete(struct conn *c, const struct fy_frame *f)
{
	struct topic *t;
	struct group *g;

	if (bad_name(c, f->rid, "topic", f->del.topic))
		return;
	if (!(t = topic_find(c->b, f->del.topic.p, f->del.topic.len))) {
		conn_send_err(c, f->rid, FY_E_NOTFOUND, 0, "no topic %.*s",
		    (int)f->del.topic.len, f->del.topic.p);
		return;
	}
	if (!f->del.group.len) {
		log_info("%s: deleted topic %s", c->name, t->name);
		store_topic_delete(c->b, t);
		send_ok(c, f->rid);
		return;
	}
	if (!(g = topic_group_find(t, f->del.group.p, f->del.group.len))) {
		conn_send_err(c, f->rid, FY_E_NOTFOUND, 0,
		    "no group %.*s on topic %s", (int)f->del.group.len,
		    f->del.group.p, t->name);
		return;
	}
	log_info("%s: deleted group %s/%s", c->name, t->name, g->name);
	store_group_delete(c->b, g);
	send_ok(c, f->rid);
}

static void
dispatch(struct conn *c, const struct fy_frame *f)
{
	if (!c->hello && f->type != FY_T_HELLO) {
		conn_send_err(c, f->rid, FY_E_HANDSHAKE, 0,
		    "the first frame must be HELLO");
		conn_close(c);
		return;
	}
	switch (f->type) {
	case FY_T_HELLO:
		handle_hello(c, f);
		break;
	case FY_T_PUB:
		handle_pub(c, f);
		break;
	case FY_T_SUB:
		handle_sub(c, f);
		break;
	case FY_T_UNSUB:
		handle_unsub(c, f);
		break;
	case FY_T_ACK:
		handle_ack(c, f);
		break;
	case FY_T_NACK:
		handle_nack(c, f);
		break;
	case FY_T_TOUCH:
		handle_touch(c, f);
		break;
	case FY_T_DELETE:
		handle_delete(c, f);
		break;
	case FY_T_PING:
		send_ok(c, f->rid);
		break;
	case FY_T_STATS:
		inspect_stats(c, f);
		break;
	case FY_T_INFLIGHT:
		inspect_inflight(c, f);
		break;
	case FY_T_PEEK:
		inspect_peek(c, f);
		break;
	case FY_T_TRACE:
		inspect_trace(c, f);
		break;
	default:
		/* Broker-to-client types are as unknown here as new ones. */
		conn_send_err(c, f->rid, FY_E_UNKNOWN_TYPE, 0,
		    "frame type %d is not a request", f->type);
		break;
	}
}

/* A payload that did not decode: reply, and keep the connection unless
 * the handshake has not happened. */
static void
decode_error(struct conn *c, int r, const struct fy_frame *f,
    const char *field)
{
	if (!c->hello) {
		conn_send_err(c, f->rid, FY_E_HANDSHAKE, 0,
		    "the first frame must be a valid HELLO");
		conn_close(c);
		return;
	}
	switch (r) {
	case FY_ETYPE:
		conn_send_err(c, f->rid, FY_E_UNKNOWN_TYPE, 0,
		    "unknown frame type %d", f->type);
		break;
	case FY_EFIELD:
		conn_send_err(c, f->rid, FY_E_BADARG, 0,
		    "field \"%s\" is missing or has the wrong type",
		    field ? field : "?");
		break;
	case FY_ENOMEM:
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		break;
	default:
		conn_send_err(c, f->rid, FY_E_PROTO, 0,
		    "malformed frame: not one msgpack map");
		break;
	}
}

static void unstall(struct conn *c);

void
conn_handle_input(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	uint32_t max = c->b->opt->max_frame;

	while (!c->closing && !c->throttled) {
		uint8_t hdr[FY_HDR_LEN];
		ev_ssize_t n = evbuffer_copyout(in, hdr, sizeof(hdr));
		struct fy_frame f;
		const char *field = NULL;
		size_t need;
		uint8_t *p;
		int r;

		r = fy_frame_need(hdr, n > 0 ? (size_t)n : 0, &need);
		if (r == FY_AGAIN)
			break;
		if (r == FY_OK && need - FY_HDR_LEN > max) {
			conn_send_err(c, 0, FY_E_TOOBIG, 0,
			    "frame of %zu bytes is above max_frame_size (%u)",
			    need - FY_HDR_LEN, max);
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
		if (r == FY_OK)
			dispatch(c, &f);
		else
			decode_error(c, r, &f, field);
		/* Decoded strings point into the buffer until here. */
		evbuffer_drain(in, need);
		/*
		 * A client that sends requests but never reads the replies
		 * must not grow our memory: stop reading it until its output
		 * drains (write_cb), like TCP would stop the sender.
		 */
		if (conn_outlen(c) > c->b->opt->max_output) {
			c->throttled = 1;
			bufferevent_disable(c->bev, EV_READ);
			log_debug("%s: output above max_output_buffer: not "
			    "reading it until it drains", c->name);
		}
	}
	/* Credit freed by this batch's acks goes out once, after it. */
	broker_pump_due(c->b);
}

/* The connection spoke: a member stalled by a lease timeout is alive. */
static void
unstall(struct conn *c)
{
	struct list *pos;

	list_for_each(pos, &c->subs) {
		struct sub *s = list_entry(pos, struct sub, clink);

		if (s->stalled) {
			s->stalled = 0;
			group_pump_later(s->group);
		}
	}
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	unstall(arg);
	conn_handle_input(arg);
}

/* Output went below the low watermark: deliveries paused by its size may
 * go on, and a client throttled for not reading is read again. */
static void
drained(struct conn *c)
{
	struct list *pos;

	list_for_each(pos, &c->subs)
		group_pump_later(list_entry(pos, struct sub, clink)->group);
	if (c->throttled && conn_outlen(c) <= c->b->opt->max_output / 2) {
		c->throttled = 0;
		bufferevent_enable(c->bev, EV_READ);
		/* Frames already buffered raise no read event: handle them. */
		conn_handle_input(c);
	}
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->closing) {
		if (!conn_outlen(c))
			broker_want_reap(c->b, c);
		return;
	}
	drained(c);
	broker_pump_due(c->b);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
		log_info("%s: idle for idle_timeout; closing", c->name);
		conn_send_err(c, 0, FY_E_LIMIT, 0,
		    "idle for %u ms (idle_timeout): closing",
		    c->b->opt->idle_timeout_ms);
		conn_close(c);
		return;
	}
	if (what & BEV_EVENT_EOF)
		log_debug("%s: disconnected", c->name);
	else if (what & BEV_EVENT_ERROR)
		log_debug("%s: connection error: %s", c->name,
		    evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
	else
		return;
	/* Nothing more can be written: drop output and free soon. */
	conn_close(c);
	evbuffer_drain(bufferevent_get_output(bev),
	    evbuffer_get_length(bufferevent_get_output(bev)));
	broker_want_reap(c->b, c);
}

static void
hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	log_info("%s: no HELLO within the handshake timeout; closing",
	    c->peer);
	conn_send_err(c, 0, FY_E_HANDSHAKE, 0, "handshake timeout");
	conn_close(c);
}
