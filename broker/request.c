/*
 * request.c - what a client's frames mean: the handshake, publishing,
 * subscriptions, settlement, deletion and inspection requests.
 *
 * The connection (conn.c) hands every decoded frame here through the ops
 * registered by request_init(); replies go back through conn_send*(), and
 * replies that promise durability through conn_send_durable(), which holds
 * them until the journal allows them out.  Deliveries are not sent here:
 * handlers change queues (through the store and delivery) and the
 * delivery pump sends after the batch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <uuid/uuid.h>

#include "auth.h"
#include "core.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "delivery.h"
#include "group.h"
#include "inspect.h"
#include "log.h"
#include "msg.h"
#include "options.h"
#include "request.h"
#include "store.h"
#include "sub.h"
#include "topic.h"
#include "trace.h"

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
	delivery_flow_forget(c);
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
	struct core *b = c->b;

	if (b->ntopics < b->opt->max_topics ||
	    topic_find(b, name.p, name.len))
		return 0;
	conn_send_err(c, rid, FY_E_LIMIT, 0,
	    "too many topics (max_topics = %u)", b->opt->max_topics);
	return 1;
}

/* The handshake is over: open the session.  rid is the frame being
 * answered (HELLO, or AUTH after a SCRAM exchange). */
static void
welcome(struct conn *c, uint64_t rid, struct fy_str sasl, struct fy_str user)
{
	struct core *b = c->b;
	struct fy_frame w = {.type = FY_T_WELCOME, .rid = rid};
	char session[37];
	uuid_t u;

	conn_open(c);
	c->sym = trace_sym(&b->trace, c->name, strlen(c->name));
	uuid_generate_random(u);
	uuid_unparse_lower(u, session);
	w.welcome.version = FY_PROTO_VERSION;
	w.welcome.server = (struct fy_str){"ferryd " FERRY_VERSION,
	    sizeof("ferryd " FERRY_VERSION) - 1};
	w.welcome.session = (struct fy_str){session, 36};
	w.welcome.max_frame = b->opt->max_frame;
	w.welcome.max_msg = b->opt->max_message;
	w.welcome.boot = (struct fy_str){b->boot, 36};
	w.welcome.idle_ms = b->opt->idle_timeout_ms;
	w.welcome.sasl = sasl;
	w.welcome.user = user;
	conn_send(c, &w);
	log_debug_kv(log_kv(NULL, NULL, c->peer), "%s: hello from %s (%s)",
	    c->peer, c->name, session);
}

static void
handle_hello(struct conn *c, const struct fy_frame *f)
{
	struct fy_str sasl, user;

	if (conn_is_open(c) || c->auth != NULL) {
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
	if (f->hello.name.len) {
		/* Sent back as str ("by" in hist, INFLIGHT, TRACE): cut at
		 * a character and made valid UTF-8, like a NACK's error. */
		size_t n = fy_utf8_clean(c->name, sizeof(c->name) - 1,
		    f->hello.name.p, f->hello.name.len);

		c->name[n] = '\0';
	}
	if (auth_hello(c, f, &sasl, &user) == AUTH_DONE)
		welcome(c, f->rid, sasl, user);
}

static void
handle_auth(struct conn *c, const struct fy_frame *f)
{
	struct fy_str sasl, user;

	if (conn_is_open(c)) {
		conn_send_err(c, f->rid, FY_E_HANDSHAKE, 0,
		    "AUTH after the handshake");
		return;
	}
	if (auth_continue(c, f, &sasl, &user) == AUTH_DONE)
		welcome(c, f->rid, sasl, user);
}

static int
durability(const struct conn *c)
{
	return c->b->opt->fsync == FSYNC_ALWAYS ? FY_DUR_SYNCED :
	    FY_DUR_WRITTEN;
}

/*
 * Confirm a publish of n messages (ids: n NUL-terminated strings, one
 * after the other) once record seq is durable.
 */
static void
confirm_pub(struct conn *c, uint64_t rid, uint64_t seq, const char *id,
    uint32_t n, uint32_t dups)
{
	struct fy_frame ok = {.type = FY_T_OK, .rid = rid};
	struct fy_str idbuf[16], *ids = idbuf;

	if (n > 16 && !(ids = malloc(n * sizeof(*ids)))) {
		conn_send_err(c, rid, FY_E_INTERNAL, 0,
		    "out of memory confirming %u messages", n);
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		size_t len = strlen(id);

		ids[i] = (struct fy_str){id, (uint32_t)len};
		id += len + 1;
	}
	ok.ok.ids = ids;
	ok.ok.nids = n;
	ok.ok.dur = (uint32_t)durability(c);
	ok.ok.dups = dups;
	conn_send_durable(c, seq, &ok);
	if (ids != idbuf)
		free(ids);
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

/* Body bytes of g's messages in flight: the ones overflow cannot push
 * out.  O(in flight), only asked of a group that has to make room. */
static uint64_t
inflight_bytes(const struct group *g)
{
	const struct list *mpos, *lpos;
	uint64_t n = 0;

	list_for_each(mpos, &g->members) {
		const struct sub *s = list_entry(mpos, struct sub, glink);

		list_for_each(lpos, &s->leases)
			n += qent_msg(list_entry(lpos, struct qent,
			    link))->body_len;
	}
	return n;
}

/*
 * Can g take every new message of f?  A body above its max_bytes never
 * fits: -EMSGSIZE.  A group with overflow 1 that must make room can push
 * out only waiting messages (earlier ones of the same batch included), so
 * each body must fit beside what is in flight: else -ENOSPC, retryable
 * once consumers settle.  Checked before anything is stored, so that a
 * refused batch has not dead-lettered anything (PROTOCOL.md section 7).
 */
static int
group_can_take(struct core *b, struct topic *t, struct group *g,
    const struct fy_frame *f, uint32_t nnew, uint64_t bytes)
{
	uint64_t fixed_bytes = 0, ninflight = g->ninflight;
	int evicting = g->conf.overflow == FY_OVERFLOW_DLQ_OLDEST &&
	    !group_has_room(g, nnew, bytes);

	if (evicting)
		fixed_bytes = inflight_bytes(g);
	for (uint32_t i = 0; i < f->pub.nmsgs; i++) {
		const struct fy_pubmsg *pm = &f->pub.msgs[i];
		uint64_t len = pm->body.len;
		const char *did;
		size_t dlen;

		if (store_duplicate(b, t, pm, &did, &dlen))
			continue;
		if (g->conf.max_bytes && len > g->conf.max_bytes)
			return -EMSGSIZE;
		if (evicting && ((g->conf.max_msgs &&
		    ninflight + 1 > g->conf.max_msgs) || (g->conf.max_bytes &&
		    fixed_bytes + len > g->conf.max_bytes)))
			return -ENOSPC;
	}
	return 0;
}

/* group_can_take() for every group the publish goes to; 1 after an
 * error reply. */
static int
refuse_no_room(struct conn *c, const struct fy_frame *f, struct topic *t,
    struct group *only, uint32_t nnew, uint64_t bytes)
{
	struct list *pos;
	struct group *g = only;
	int r = 0;

	if (only) {
		r = group_can_take(c->b, t, only, f, nnew, bytes);
	} else {
		list_for_each(pos, &t->groups) {
			g = list_entry(pos, struct group, tlink);
			if ((r = group_can_take(c->b, t, g, f, nnew,
			    bytes)) < 0)
				break;
		}
	}
	if (r == -EMSGSIZE)
		conn_send_err(c, f->rid, FY_E_MSGSIZE, 0,
		    "a body is above the max_bytes (%llu) of group %s/%s: it "
		    "can never be stored there",
		    (unsigned long long)g->conf.max_bytes, t->name, g->name);
	else if (r < 0)
		conn_send_err(c, f->rid, FY_E_FULL, 0,
		    "group %s/%s is full of messages in flight (%llu); "
		    "retry later", t->name, g->name,
		    (unsigned long long)g->ninflight);
	return r < 0;
}

/* Room for one more message in every "dead-letter-oldest" group. */
static int
make_room(struct core *b, struct topic *t, struct group *only,
    uint64_t bytes)
{
	struct list *pos, *tmp;
	int r;

	if (only)
		return only->conf.overflow == FY_OVERFLOW_DLQ_OLDEST ?
		    delivery_make_room(b, only, bytes) : 0;
	list_for_each_safe(pos, tmp, &t->groups) {
		struct group *g = list_entry(pos, struct group, tlink);

		if (g->conf.overflow == FY_OVERFLOW_DLQ_OLDEST &&
		    (r = delivery_make_room(b, g, bytes)) < 0)
			return r;
	}
	return 0;
}

/*
 * The topic of the connection's last PUB, if this one names it too: a
 * producer mostly publishes to one topic, whose name was checked and
 * looked up then.  NULL otherwise, or once any topic was freed since.
 */
static struct topic *
cached_topic(const struct conn *c, struct fy_str name)
{
	const struct topic *t = c->pub_topic;

	if (t && c->pub_topic_gen == c->b->topic_gen &&
	    t->name_len == name.len && !memcmp(t->name, name.p, name.len))
		return c->pub_topic;
	return NULL;
}

static void
handle_pub(struct conn *c, const struct fy_frame *f)
{
	struct core *b = c->b;
	uint32_t n = f->pub.nmsgs;
	struct group *only = NULL, *full;
	char one[FY_ID_MAX + 1], *many = NULL, *idp = one;
	uint64_t ts, bytes = 0, seq = 0;
	struct topic *t = cached_topic(c, f->pub.topic);
	uint32_t i, done = 0, nnew = n, dups = 0;
	int e = 0;

	if ((!t && bad_name(c, f->rid, "topic", f->pub.topic)) ||
	    (f->pub.group.len && bad_name(c, f->rid, "group", f->pub.group)))
		return;
	/* A targeted publish (dead-letter replay) bypasses fan-out: an
	 * admin's. */
	if ((f->pub.group.len &&
	    auth_check(c, f->rid, AUTH_ADMIN, f->pub.topic)) ||
	    auth_check(c, f->rid, AUTH_PUB, f->pub.topic))
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
			    "message %u: %s is at most %llu ms", i,
			    pm->delay_ms > MSG_TIME_MAX ? "delay" : "ttl",
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
	if (!t && topic_limit(c, f->rid, f->pub.topic))
		return;
	/* An inbox keeps no backlog: without its listener there is nowhere
	 * to put the message, and no topic to create. */
	if (t ? t->is_inbox && !t->ngroups :
	    f->pub.topic.len > strlen(TOPIC_INBOX_PREFIX) &&
	    !memcmp(f->pub.topic.p, TOPIC_INBOX_PREFIX,
	    strlen(TOPIC_INBOX_PREFIX)) && (!(t = topic_find(b,
	    f->pub.topic.p, f->pub.topic.len)) || !t->ngroups)) {
		conn_send_err(c, f->rid, FY_E_NOSUBSCRIBERS, 0,
		    "no one listens on inbox %.*s", (int)f->pub.topic.len,
		    f->pub.topic.p);
		return;
	}
	if (!t && !(t = topic_get(b, f->pub.topic.p, f->pub.topic.len))) {
		conn_send_err(c, f->rid, FY_E_INTERNAL, 0, "out of memory");
		return;
	}
	c->pub_topic = t;
	c->pub_topic_gen = b->topic_gen;
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
	if (nnew && refuse_no_room(c, f, t, only, nnew, bytes))
		return;
	if (nnew && (full = full_group(t, only, nnew, bytes))) {
		conn_send_err(c, f->rid, FY_E_FULL, 0,
		    "group %s/%s is full (%llu messages, %llu bytes); retry "
		    "later", t->name, full->name,
		    (unsigned long long)full->nheld,
		    (unsigned long long)full->nbytes);
		return;
	}
	if (f->rid && n > 1 && !(idp = many = malloc(n * (FY_ID_MAX + 1)))) {
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
			dups++;
			trace_add(&b->trace, ts, msg_id_hash(id, idlen),
			    TR_DUPLICATE, t->sym, 0, c->sym, 0);
		} else {
			if (!idlen && pm->pid.len) {
				msg_id_derive(pm->pid.p, pm->pid.len,
				    pm->pseq, gen);
				id = gen;
				idlen = MSG_ID_LEN;
			} else if (!idlen) {
				msg_id_generate(gen);
				id = gen;
				idlen = MSG_ID_LEN;
			}
			if ((e = make_room(b, t, only, pm->body.len)) < 0 ||
			    (e = store_publish(b, t, pm, id, idlen, ts, NULL,
			    0, only, f->rid != 0, &seq)) < 0)
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
	} else if (f->rid) {
		/* Only duplicates: confirmable once their originals are,
		 * which were appended before now (and may have been
		 * fire-and-forget, not yet durable). */
		if (!seq)
			seq = store_newest_seq(c->b);
		confirm_pub(c, f->rid, seq, many ? many : one, n, dups);
	}
	free(many);
	/*
	 * Deliver now that the request is handled, not at the end of the
	 * read: an at-most-once member then settles a fire-and-forget
	 * message while its publish is still the newest record, which the
	 * store takes back instead of writing both (store_settle()).
	 */
	delivery_pump_due(b);
	/* Then, if consumers fall behind, read this publisher no further. */
	delivery_flow_check(c, t, only);
}

static void
handle_sub(struct conn *c, const struct fy_frame *f)
{
	struct core *b = c->b;
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

	if (bad_name(c, f->rid, "topic", f->sub.topic) ||
	    auth_check(c, f->rid, AUTH_SUB, f->sub.topic))
		return;
	if (f->sub.ephemeral) {
		/* '~' is not allowed in names, so no client can join it. */
		snprintf(eph, sizeof(eph), "~%016llx",
		    (unsigned long long)turn_rand(&b->turn));
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
	/* An inbox is read by its requester's ephemeral subscription only:
	 * a durable group there would store replies nobody waits for, and
	 * PUBs to the inbox once its requester is gone. */
	if (!f->sub.ephemeral &&
	    f->sub.topic.len > strlen(TOPIC_INBOX_PREFIX) &&
	    !memcmp(f->sub.topic.p, TOPIC_INBOX_PREFIX,
	    strlen(TOPIC_INBOX_PREFIX))) {
		conn_send_err(c, f->rid, FY_E_BADARG, 0,
		    "%s topics take ephemeral subscriptions only",
		    TOPIC_INBOX_PREFIX "*");
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
	log_debug_kv(log_kv(t->name, g->name, c->peer), "%s: subscribed to "
	    "%s/%s as sid %llu", c->name, t->name,
	    g->name, (unsigned long long)s->sid);
	/* After the OK, so the client learns its sid before messages. */
	delivery_pump(g);
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
	uint64_t first_stale = 0;
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
			trace_add(&c->b->trace, clock_turn_wall_ms(),
			    msg_idh(qent_msg(e)),
			    TR_ACKED, s->group->topic->sym, s->group->sym,
			    c->sym, (uint32_t)e->attempts + 1);
			store_ack(c->b, e);
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
		/* A confirmed ack: answered once the ack is durable.  Its
		 * settlements are journaled now, to have a seq. */
		struct fy_frame ok = {.type = FY_T_OK, .rid = f->rid};

		conn_send_durable(c, store_settle_flush(c->b), &ok);
	}
	group_mark_due(s->group);
}

static void
handle_nack(struct conn *c, const struct fy_frame *f)
{
	struct sub *s = lease_sub(c, f, f->nack.sid);
	struct group *g;
	struct qent *e;
	char err[FY_ERRTEXT_MAX];
	size_t errlen;

	if (!s)
		return;
	if (!(e = sub_lease_find(s, f->nack.lease))) {
		stale(c, f, f->nack.lease);
		return;
	}
	g = s->group;
	/* Kept and sent back as str (hist, INFLIGHT, TRACE): a cut inside
	 * a character, or bytes that are not UTF-8, would make the dead
	 * letter unreadable to a strict msgpack decoder. */
	errlen = fy_utf8_clean(err, sizeof(err), f->nack.error.p,
	    f->nack.error.len);
	if (f->nack.has_delay && f->nack.delay_ms > MSG_TIME_MAX) {
		conn_send_err(c, f->rid, FY_E_BADARG, 0, "delay out of range");
		return;
	}
	delivery_fail(c->b, e, CAUSE_NACKED, err, errlen,
	    f->nack.has_delay ? (int64_t)f->nack.delay_ms : -1);
	send_ok(c, f->rid);
	group_mark_due(g);
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
	char kv[2 * FY_NAME_MAX + 96];
	struct topic *t;
	struct group *g;

	if (bad_name(c, f->rid, "topic", f->del.topic) ||
	    auth_check(c, f->rid, AUTH_ADMIN, f->del.topic))
		return;
	if (!(t = topic_find(c->b, f->del.topic.p, f->del.topic.len))) {
		conn_send_err(c, f->rid, FY_E_NOTFOUND, 0, "no topic %.*s",
		    (int)f->del.topic.len, f->del.topic.p);
		return;
	}
	if (!f->del.group.len) {
		snprintf(kv, sizeof(kv), "topic=%s peer=%s", t->name,
		    c->peer);
		log_info_kv(kv, "%s: deleted topic %s", c->name, t->name);
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
	snprintf(kv, sizeof(kv), "topic=%s group=%s peer=%s", t->name, g->name,
	    c->peer);
	log_info_kv(kv, "%s: deleted group %s/%s", c->name, t->name, g->name);
	store_group_delete(c->b, g);
	send_ok(c, f->rid);
}

static void
dispatch(struct conn *c, const struct fy_frame *f)
{
	if (c->state == CONN_HANDSHAKE && f->type != FY_T_HELLO &&
	    f->type != FY_T_AUTH) {
		conn_send_err(c, f->rid, FY_E_HANDSHAKE, 0,
		    "the first frame must be HELLO");
		conn_close(c);
		return;
	}
	/* Draining: only what settles deliveries (and PING) is served; the
	 * rest is retryable elsewhere or after the restart. */
	if (c->b->draining && f->type != FY_T_ACK && f->type != FY_T_NACK &&
	    f->type != FY_T_TOUCH && f->type != FY_T_UNSUB &&
	    f->type != FY_T_PING) {
		conn_send_err(c, f->rid, FY_E_SHUTDOWN, 0, "broker shutting "
		    "down: retry after it restarts");
		return;
	}
	switch (f->type) {
	case FY_T_HELLO:
		handle_hello(c, f);
		break;
	case FY_T_AUTH:
		handle_auth(c, f);
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
	if (c->state == CONN_HANDSHAKE) {
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

/* The connection spoke: a member stalled by a lease timeout is alive. */
static void
unstall(struct conn *c)
{
	struct list *pos;

	list_for_each(pos, &c->subs) {
		struct sub *s = list_entry(pos, struct sub, clink);

		if (s->stalled) {
			s->stalled = 0;
			group_mark_due(s->group);
		}
	}
}

static void
on_frame(struct conn *c, int r, const struct fy_frame *f, const char *field)
{
	/* A failed login waits out its delay: nothing it sends counts. */
	if (auth_failing(c))
		return;
	if (r == FY_OK)
		dispatch(c, f);
	else
		decode_error(c, r, f, field);
}

/* Credit freed by a batch of acks goes out once, after the batch. */
static void
on_read_end(struct conn *c)
{
	delivery_pump_due(c->b);
}

/* Deliveries paused by the size of the output may go on. */
static void
on_drained(struct conn *c)
{
	struct list *pos;

	list_for_each(pos, &c->subs)
		group_mark_due(list_entry(pos, struct sub, clink)->group);
}

static void
on_closing(struct conn *c)
{
	release_subs(c);
	auth_conn_free(c);
}

static const struct conn_ops request_ops = {
	.frame = on_frame,
	.read_begin = unstall,
	.read_end = on_read_end,
	.drained = on_drained,
	.closing = on_closing,
};

void
request_init(void)
{
	conn_set_ops(&request_ops);
}
