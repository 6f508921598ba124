/*
 * auth.c - SCRAM in the handshake, login delays, and the per-connection
 * permission cache.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth.h"
#include "core.h"
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "options.h"
#include "sub.h"
#include "group.h"
#include "tls.h"
#include "topic.h"

/* Failed logins per address: a direct-mapped table, so an attacker
 * spreading over many addresses costs a fixed amount of memory (and
 * at worst resets someone else's count). */
#define FAIL_SLOTS 1024
#define FAIL_FORGET_MS (10 * 60 * 1000)	/* a quiet address starts over */
#define FAIL_DELAY_MS 1000		/* the first failure's delay */
#define FAIL_DELAY_MAX_MS 30000
/* SCRAM exchanges under way from one address, failed ones waiting out
 * their delay included: more are refused at once (E_LIMIT), so that
 * guessing in parallel cannot outrun the delay, nor one address hold
 * every connection slot.  Counted by address hash, so two addresses may
 * share a count: the limit is then reached sooner, never later. */
#define LOGINS_PER_ADDR 16
/* Permission decisions kept per connection; a client using more topics
 * than this starts over, which bounds its memory (at most about 64 KB
 * with 200-byte names, times max_connections). */
#define CACHE_MAX 256
/* E_DENIED log lines, in all, per second. */
#define DENY_LOG_PER_SEC 10

struct fail {
	char addr[48];		/* the peer without its port */
	uint32_t count;
	uint64_t last_ms;
};

struct auth {
	struct users *users;	/* NULL: no users_file, all anonymous */
	uint64_t gen;		/* bumped by every reload */
	uint8_t secret[32];	/* salts of fake verifiers */
	uint32_t fake_iter;	/* their iteration count: the users' own */
	struct fail fails[FAIL_SLOTS];
	uint16_t logins[FAIL_SLOTS];	/* exchanges under way, by address
					   hash (LOGINS_PER_ADDR) */
	uint64_t busy_logged;	/* second of the last such refusal logged */
	struct auth_stats st;
	uint64_t log_sec;	/* second of the last E_DENIED lines */
	uint32_t log_n;		/* lines logged in it */
	uint64_t log_dropped;	/* lines not logged since */
};

/* Bits of a cached decision. */
#define C_PUB_KNOWN 0x01
#define C_PUB_OK 0x02
#define C_SUB_KNOWN 0x04
#define C_SUB_OK 0x08
#define C_LOGGED 0x10		/* a denial here was logged */

struct cache_ent {
	char *topic;		/* owned; NULL = free slot */
	uint32_t len, hash;
	uint8_t bits;
};

enum ac_state {
	AC_NONE,		/* no SCRAM yet */
	AC_CHALLENGED,		/* CHALLENGE sent, waiting for AUTH */
	AC_DONE,
	AC_FAILING,		/* waiting out a failed login's delay */
};

struct auth_conn {
	enum ac_state state;
	uint8_t full;		/* no users file: everything allowed */
	char user[FY_SCRAM_USER_MAX + 1];	/* "" until known */
	struct fy_scram_server scram;
	char final[FY_SCRAM_MSG_MAX];	/* server-final, for WELCOME */
	struct event *delay_ev;
	uint64_t deny_rid;
	uint8_t counted;	/* this exchange counts in logins[slot] */
	uint16_t slot;
	/* Permissions: entry is users_find(user) as of gen. */
	uint64_t gen;
	const struct users_entry *entry;
	struct cache_ent *cache;
	uint32_t cap, n;	/* cap: 0 or a power of two */
};

/* ---- start-up and reload ---- */

/* 1 if every address name resolves to is a loopback one. */
static int
loopback_only(const char *name)
{
	struct addrinfo hints = {0}, *res = NULL, *ai;
	int ok = 1;

	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if (getaddrinfo(name, NULL, &hints, &res) != 0)
		return 0;
	for (ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			const struct sockaddr_in *in = (void *)ai->ai_addr;

			if ((ntohl(in->sin_addr.s_addr) >> 24) != 127)
				ok = 0;
		} else if (ai->ai_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (void *)ai->ai_addr;

			if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
				ok = 0;
		} else {
			ok = 0;
		}
	}
	freeaddrinfo(res);
	return ok;
}

/* The iteration count most users have, so that an unknown name's
 * challenge does not stand out by its count.  Files hold one or two
 * counts: the first 8 distinct ones are tallied. */
static uint32_t
usual_iter(const struct users *u)
{
	uint32_t iter[8], n[8], k = 0, i, j, best = FY_SCRAM_ITER_DEFAULT;
	uint32_t most = 0;

	for (i = 0; i < u->n; i++) {
		const struct users_entry *e = &u->l[i].e;

		if (!e->name || !e->has_verifier)
			continue;
		for (j = 0; j < k && iter[j] != e->v.iter; j++)
			;
		if (j == k) {
			if (k == 8)
				continue;
			iter[k] = e->v.iter;
			n[k++] = 0;
		}
		if (++n[j] > most) {
			most = n[j];
			best = iter[j];
		}
	}
	return best;
}

const char *const auth_fail_cause[AUTH_FAIL_NCAUSES] = {
	[AUTH_FAIL_CREDENTIALS] = "bad_credentials",
	[AUTH_FAIL_ANONYMOUS] = "no_credentials",
	[AUTH_FAIL_NO_USERS] = "no_users_file",
	[AUTH_FAIL_MECHANISM] = "unsupported_mechanism",
	[AUTH_FAIL_BUSY] = "too_many_logins",
	[AUTH_FAIL_MALFORMED] = "malformed",
};

/* "other" for an unsupported one: a client's string is no label value. */
const char *const auth_fail_mech[AUTH_FAIL_NCAUSES] = {
	[AUTH_FAIL_CREDENTIALS] = FY_SCRAM_MECH,
	[AUTH_FAIL_ANONYMOUS] = "none",
	[AUTH_FAIL_NO_USERS] = FY_SCRAM_MECH,
	[AUTH_FAIL_MECHANISM] = "other",
	[AUTH_FAIL_BUSY] = FY_SCRAM_MECH,
	[AUTH_FAIL_MALFORMED] = FY_SCRAM_MECH,
};

void
auth_get_stats(const struct core *b, struct auth_stats *st)
{
	if (b->auth)
		*st = b->auth->st;
	else
		memset(st, 0, sizeof(*st));
}

/* Count a refused login (a has no auth_init() in hand-built brokers). */
static void
count_fail(struct conn *c, enum auth_fail why)
{
	if (c->b->auth)
		c->b->auth->st.failures[why]++;
}

int
auth_init(struct core *b)
{
	const struct options *o = b->opt;
	struct auth *a = calloc(1, sizeof(*a));
	char err[512];
	int r;

	if (a == NULL)
		return -ENOMEM;
	b->auth = a;
	if (RAND_bytes(a->secret, sizeof(a->secret)) != 1) {
		log_error("no random bytes for the login secret");
		return -EIO;
	}
	if (o->users_file == NULL) {
		if (!o->allow_anonymous && !loopback_only(o->listen)) {
			log_error("refusing to listen on %s without "
			    "authentication: set users_file (ferry user add) "
			    "or allow_anonymous = yes", o->listen);
			return -EPERM;
		}
		if (!loopback_only(o->listen))
			log_warn("listening on %s with no users_file: anyone "
			    "who reaches it may publish, read and delete "
			    "(allow_anonymous = yes)", o->listen);
		return 0;
	}
	r = users_load(o->users_file, &a->users, err, sizeof(err));
	if (r < 0) {
		log_error("users_file: %s", err);
		return r;
	}
	a->fake_iter = usual_iter(a->users);
	log_info("users from %s; anonymous clients %s", o->users_file,
	    users_find(a->users, USERS_ANONYMOUS) ? "get the \"anonymous\" "
	    "entry's permissions" : "are refused");
	return 0;
}

void
auth_fini(struct core *b)
{
	struct auth *a = b->auth;

	if (a == NULL)
		return;
	users_free(a->users);
	OPENSSL_cleanse(a, sizeof(*a));
	free(a);
	b->auth = NULL;
}

int
auth_reload(struct core *b)
{
	struct auth *a = b->auth;
	struct users *u = NULL;
	char err[512];
	int r;

	if (b->opt->users_file == NULL || a == NULL)
		return 0;
	r = users_load(b->opt->users_file, &u, err, sizeof(err));
	if (r < 0) {
		log_warn("users_file not reloaded, the old one stays: %s",
		    err);
		return r;
	}
	users_free(a->users);
	a->users = u;
	a->fake_iter = usual_iter(u);
	a->gen++;	/* every connection's cache is now stale */
	log_info("users_file %s reloaded", b->opt->users_file);
	return 0;
}

/* ---- failed logins ---- */

static uint32_t
hash(const char *p, size_t len)
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

/* c's address without the port: "1.2.3.4", "[::1]". */
static size_t
peer_addr(const struct conn *c, char *buf, size_t size)
{
	const char *colon = strrchr(c->peer, ':');
	size_t n = colon ? (size_t)(colon - c->peer) : strlen(c->peer);

	if (n >= size)
		n = size - 1;
	memcpy(buf, c->peer, n);
	buf[n] = '\0';
	return n;
}

static struct fail *
fail_slot(struct auth *a, const struct conn *c, int create)
{
	char addr[sizeof(a->fails[0].addr)];
	size_t n = peer_addr(c, addr, sizeof(addr));
	struct fail *f = &a->fails[hash(addr, n) % FAIL_SLOTS];
	uint64_t now = clock_mono_ms();

	if (strcmp(f->addr, addr) != 0 ||
	    now - f->last_ms > FAIL_FORGET_MS) {
		if (!create)
			return NULL;
		memset(f, 0, sizeof(*f));
		memcpy(f->addr, addr, n + 1);
	}
	return f;
}

static void
delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	conn_send_err(c, c->auth->deny_rid, FY_E_DENIED, 0,
	    "authentication failed");
	conn_close(c);	/* frees c->auth, and this timer */
}

/* A wrong proof or an unknown user: answer later, and later still for an
 * address that keeps failing, so guessing costs the guesser time. */
static enum auth_step
fail_later(struct conn *c, uint64_t rid)
{
	struct auth *a = c->b->auth;
	struct auth_conn *ac = c->auth;
	struct fail *f = fail_slot(a, c, 1);
	uint64_t ms = FAIL_DELAY_MS;
	struct timeval tv;
	uint32_t i;

	f->count++;
	f->last_ms = clock_mono_ms();
	for (i = 1; i < f->count && ms < FAIL_DELAY_MAX_MS; i++)
		ms *= 2;
	if (ms > FAIL_DELAY_MAX_MS)
		ms = FAIL_DELAY_MAX_MS;
	log_warn_kv(log_kv(NULL, NULL, c->peer), "%s: authentication failed "
	    "for user \"%s\" (failure %u "
	    "from this address; answering in %llu ms)", c->peer,
	    ac->scram.user, f->count, (unsigned long long)ms);
	count_fail(c, AUTH_FAIL_CREDENTIALS);
	ac->state = AC_FAILING;
	ac->deny_rid = rid;
	ac->delay_ev = evtimer_new(c->b->base, delay_cb, c);
	if (ac->delay_ev == NULL) {
		conn_send_err(c, rid, FY_E_DENIED, 0, "authentication failed");
		conn_close(c);
		return AUTH_FAILED;
	}
	conn_hold(c);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(ac->delay_ev, &tv);
	return AUTH_FAILED;
}

/* ---- the handshake ---- */

static struct auth_conn *
conn_state(struct conn *c)
{
	if (c->auth == NULL)
		c->auth = calloc(1, sizeof(*c->auth));
	return c->auth;
}

struct cert_match {
	const struct users *users;
	const char *name;	/* the entry's own copy, once found */
};

/* A certificate name that is a user (not the anonymous entry). */
static int
cert_user(void *arg, const char *name)
{
	struct cert_match *m = arg;
	const struct users_entry *e = users_find(m->users, name);

	if (e == NULL || strcmp(name, USERS_ANONYMOUS) == 0)
		return 0;
	m->name = e->name;
	return 1;
}

static enum auth_step
refuse(struct conn *c, uint64_t rid, int code, const char *why)
{
	conn_send_err(c, rid, code, 0, "%s", why);
	conn_close(c);
	return AUTH_FAILED;
}

/* A SCRAM exchange starts: count it against its address, or -EBUSY if
 * LOGINS_PER_ADDR are under way already. */
static int
count_login(struct conn *c)
{
	struct auth *a = c->b->auth;
	struct auth_conn *ac = c->auth;
	char addr[48];
	size_t n = peer_addr(c, addr, sizeof(addr));

	ac->slot = (uint16_t)(hash(addr, n) % FAIL_SLOTS);
	if (a->logins[ac->slot] >= LOGINS_PER_ADDR)
		return -EBUSY;
	a->logins[ac->slot]++;
	ac->counted = 1;
	return 0;
}

/* The exchange is over (logged in, or the connection goes). */
static void
uncount(struct conn *c)
{
	struct auth_conn *ac = c->auth;

	if (ac->counted && c->b->auth != NULL)
		c->b->auth->logins[ac->slot]--;
	ac->counted = 0;
}

static void
set_user(struct auth_conn *ac, const char *name, struct fy_str *user)
{
	snprintf(ac->user, sizeof(ac->user), "%s", name);
	ac->state = AC_DONE;
	user->p = ac->user;
	user->len = (uint32_t)strlen(ac->user);
}

enum auth_step
auth_hello(struct conn *c, const struct fy_frame *f, struct fy_str *sasl,
    struct fy_str *user)
{
	struct auth *a = c->b->auth;
	struct auth_conn *ac = conn_state(c);
	const struct users_entry *e;
	struct fy_scram_verifier v;
	char snonce[25], out[FY_SCRAM_MSG_MAX];
	struct fy_frame ch = {.type = FY_T_CHALLENGE, .rid = f->rid};
	struct cert_match cu = {.users = a ? a->users : NULL};
	static const struct fy_str mech = {FY_SCRAM_MECH,
	    sizeof(FY_SCRAM_MECH) - 1};

	*sasl = (struct fy_str){NULL, 0};
	*user = (struct fy_str){NULL, 0};
	if (ac == NULL)
		return refuse(c, f->rid, FY_E_INTERNAL, "out of memory");
	if (f->hello.mech.len == 0) {
		/* No auth_init() (tests building a broker by hand): as
		 * without a users file. */
		if (a == NULL || a->users == NULL) {
			ac->full = 1;
			set_user(ac, "", user);
			return AUTH_DONE;
		}
		/* A client certificate verified against tls_ca whose
		 * name is a user logs in as that user (mutual TLS). */
		if (tls_peer_names(c, cert_user, &cu)) {
			set_user(ac, cu.name, user);
			log_info_kv(log_kv(NULL, NULL, c->peer), "%s: "
			    "authenticated as \"%s\" by its TLS "
			    "client certificate", c->peer, ac->user);
			return AUTH_DONE;
		}
		if (users_find(a->users, USERS_ANONYMOUS) != NULL) {
			set_user(ac, USERS_ANONYMOUS, user);
			return AUTH_DONE;
		}
		log_info_kv(log_kv(NULL, NULL, c->peer), "%s: refused: no "
		    "credentials, and the users file "
		    "has no \"anonymous\" entry", c->peer);
		count_fail(c, AUTH_FAIL_ANONYMOUS);
		return refuse(c, f->rid, FY_E_DENIED, "authentication "
		    "required: this broker has no anonymous access");
	}
	if (a == NULL || a->users == NULL) {
		count_fail(c, AUTH_FAIL_NO_USERS);
		return refuse(c, f->rid, FY_E_DENIED, "this broker has no "
		    "users (no users_file): connect without credentials");
	}
	if (f->hello.mech.len != mech.len ||
	    memcmp(f->hello.mech.p, mech.p, mech.len) != 0) {
		count_fail(c, AUTH_FAIL_MECHANISM);
		return refuse(c, f->rid, FY_E_HANDSHAKE, "unsupported "
		    "mechanism: this broker speaks " FY_SCRAM_MECH);
	}
	if (count_login(c) < 0) {
		count_fail(c, AUTH_FAIL_BUSY);
		/* One line a second at most: each refusal is cheap for
		 * whoever sends them, the log must not be. */
		if (clock_mono_ms() / 1000 != a->busy_logged) {
			a->busy_logged = clock_mono_ms() / 1000;
			log_warn_kv(log_kv(NULL, NULL, c->peer), "%s: refused: "
			    "%d logins under way from this "
			    "address", c->peer, LOGINS_PER_ADDR);
		}
		return refuse(c, f->rid, FY_E_LIMIT, "too many logins under "
		    "way from this address");
	}
	if (fy_scram_server_first(&ac->scram, f->hello.sasl.p,
	    f->hello.sasl.len) != FY_OK) {
		count_fail(c, AUTH_FAIL_MALFORMED);
		return refuse(c, f->rid, FY_E_HANDSHAKE, "malformed SCRAM "
		    "client-first message");
	}
	/* A user without a verifier (certificate-only, or the anonymous
	 * entry) or without an entry gets a fake one: same work, same
	 * answer, so names cannot be probed. */
	e = users_find(a->users, ac->scram.user);
	if (e != NULL && e->has_verifier)
		v = e->v;
	else if (fy_scram_verifier_fake(&v, ac->scram.user, a->secret,
	    sizeof(a->secret), a->fake_iter) != FY_OK)
		return refuse(c, f->rid, FY_E_INTERNAL, "no random bytes");
	if (fy_scram_nonce(snonce, 24) != FY_OK ||
	    fy_scram_server_challenge(&ac->scram, &v, snonce, out) != FY_OK) {
		OPENSSL_cleanse(&v, sizeof(v));
		return refuse(c, f->rid, FY_E_INTERNAL, "SCRAM failed");
	}
	OPENSSL_cleanse(&v, sizeof(v));
	ac->state = AC_CHALLENGED;
	ch.auth.sasl = (struct fy_str){out, (uint32_t)strlen(out)};
	conn_send(c, &ch);
	return AUTH_PENDING;
}

enum auth_step
auth_continue(struct conn *c, const struct fy_frame *f, struct fy_str *sasl,
    struct fy_str *user)
{
	struct auth_conn *ac = c->auth;
	struct fail *fl;
	int r;

	*sasl = (struct fy_str){NULL, 0};
	*user = (struct fy_str){NULL, 0};
	if (ac == NULL || ac->state != AC_CHALLENGED) {
		count_fail(c, AUTH_FAIL_MALFORMED);
		return refuse(c, f->rid, FY_E_HANDSHAKE, "AUTH without a "
		    "SCRAM exchange in progress");
	}
	r = fy_scram_server_final(&ac->scram, f->auth.sasl.p,
	    f->auth.sasl.len, ac->final);
	if (r == FY_EAUTH)
		return fail_later(c, f->rid);
	if (r != FY_OK) {
		count_fail(c, AUTH_FAIL_MALFORMED);
		return refuse(c, f->rid, FY_E_HANDSHAKE, "malformed SCRAM "
		    "client-final message, or not this session's nonce");
	}
	if ((fl = fail_slot(c->b->auth, c, 0)) != NULL)
		fl->count = 0;
	uncount(c);
	set_user(ac, ac->scram.user, user);
	*sasl = (struct fy_str){ac->final, (uint32_t)strlen(ac->final)};
	log_info_kv(log_kv(NULL, NULL, c->peer), "%s: authenticated as \"%s\"",
	    c->peer, ac->user);
	return AUTH_DONE;
}

int
auth_failing(const struct conn *c)
{
	return c->auth != NULL && c->auth->state == AC_FAILING;
}

static void
cache_clear(struct auth_conn *ac)
{
	uint32_t i;

	for (i = 0; i < ac->cap; i++)
		free(ac->cache[i].topic);
	if (ac->cap)
		memset(ac->cache, 0, ac->cap * sizeof(ac->cache[0]));
	ac->n = 0;
}

void
auth_conn_free(struct conn *c)
{
	struct auth_conn *ac = c->auth;

	if (ac == NULL)
		return;
	if (ac->delay_ev)
		event_free(ac->delay_ev);
	uncount(c);
	cache_clear(ac);
	free(ac->cache);
	OPENSSL_cleanse(ac, sizeof(*ac));
	free(ac);
	c->auth = NULL;
}

/* ---- authorization ---- */

/* The slot of topic in the cache, found or free; NULL if the cache
 * cannot grow (out of memory). */
static struct cache_ent *
cache_slot(struct auth_conn *ac, const char *p, uint32_t len, uint32_t h)
{
	struct cache_ent *ce, *old;
	uint32_t i, ocap = ac->cap;

	if (ac->n + 1 > ac->cap / 4 * 3) {
		if (ac->cap >= CACHE_MAX) {
			cache_clear(ac);
		} else {
			ce = calloc(ocap ? 2 * ocap : 16, sizeof(*ce));
			if (ce == NULL)
				return NULL;
			old = ac->cache;
			ac->cache = ce;
			ac->cap = ocap ? 2 * ocap : 16;
			ac->n = 0;
			for (i = 0; i < ocap; i++) {
				if (old[i].topic == NULL)
					continue;
				ce = cache_slot(ac, old[i].topic, old[i].len,
				    old[i].hash);
				*ce = old[i];
				ac->n++;
			}
			free(old);
		}
	}
	for (i = h & (ac->cap - 1); ; i = (i + 1) & (ac->cap - 1)) {
		ce = &ac->cache[i];
		if (ce->topic == NULL || (ce->hash == h && ce->len == len &&
		    memcmp(ce->topic, p, len) == 0))
			return ce;
	}
}

/* 1 if another connection subscribes to the inbox topic. */
static int
inbox_taken(struct conn *c, struct fy_str topic)
{
	struct topic *t = topic_find(c->b, topic.p, topic.len);
	struct list *gp, *mp;

	if (t == NULL)
		return 0;
	list_for_each(gp, &t->groups) {
		struct group *g = list_entry(gp, struct group, tlink);

		list_for_each(mp, &g->members) {
			if (list_entry(mp, struct sub, glink)->conn != c)
				return 1;
		}
	}
	return 0;
}

static void
log_denied(struct conn *c, enum auth_op op, struct fy_str topic)
{
	struct auth *a = c->b->auth;
	uint64_t sec = clock_mono_ms() / 1000;
	static const char *const what[] = {"publish to", "subscribe to",
	    "do an admin operation on"};
	char name[FY_NAME_DLQ_MAX + 1];

	a->st.denied++;
	if (sec != a->log_sec) {
		if (a->log_dropped)
			log_warn("%llu more E_DENIED not logged",
			    (unsigned long long)a->log_dropped);
		a->log_sec = sec;
		a->log_n = 0;
		a->log_dropped = 0;
	}
	if (a->log_n++ >= DENY_LOG_PER_SEC) {
		a->log_dropped++;
		return;
	}
	snprintf(name, sizeof(name), "%.*s", (int)topic.len,
	    topic.p ? topic.p : "");
	log_warn_kv(log_kv(name, NULL, c->peer), "%s: E_DENIED: user \"%s\" "
	    "may not %s \"%s\"", c->peer, c->auth->user, what[op], name);
}

static int
deny(struct conn *c, uint64_t rid, enum auth_op op, struct fy_str topic,
    int log)
{
	static const char *const what[] = {"publish to", "subscribe to",
	    "inspect or change"};

	if (log)
		log_denied(c, op, topic);
	if (topic.len == 0)
		conn_send_err(c, rid, FY_E_DENIED, 0, "user \"%s\" may not "
		    "do this: it needs admin rights", c->auth->user);
	else
		conn_send_err(c, rid, FY_E_DENIED, 0, "user \"%s\" may not %s "
		    "\"%.*s\"", c->auth->user, what[op], (int)topic.len,
		    topic.p);
	return 1;
}

int
auth_check(struct conn *c, uint64_t rid, enum auth_op op,
    struct fy_str topic)
{
	struct auth *a = c->b->auth;
	struct auth_conn *ac = c->auth;
	struct cache_ent *ce;
	uint8_t known, ok;
	uint32_t h;

	if (ac == NULL || ac->full)
		return 0;
	if (ac->gen != a->gen || ac->entry == NULL) {
		/* After a reload the entry may be gone or changed: look
		 * again, forget what was decided with the old one. */
		ac->entry = users_find(a->users, ac->user);
		ac->gen = a->gen;
		cache_clear(ac);
	}
	if (op == AUTH_ADMIN) {
		if (ac->entry != NULL && ac->entry->admin)
			return 0;
		return deny(c, rid, op, topic, 1);
	}
	/*
	 * Request-reply inboxes: their names are random, so knowing one is
	 * the right to reply to it; subscribing is allowed while no other
	 * connection does, so a requester always gets its own inbox.
	 */
	if (topic.len > sizeof(TOPIC_INBOX_PREFIX) - 1 &&
	    memcmp(topic.p, TOPIC_INBOX_PREFIX,
	    sizeof(TOPIC_INBOX_PREFIX) - 1) == 0) {
		if (op == AUTH_PUB || !inbox_taken(c, topic))
			return 0;
		return deny(c, rid, op, topic, 1);
	}
	known = op == AUTH_PUB ? C_PUB_KNOWN : C_SUB_KNOWN;
	ok = op == AUTH_PUB ? C_PUB_OK : C_SUB_OK;
	h = hash(topic.p, topic.len);
	ce = cache_slot(ac, topic.p, topic.len, h);
	if (ce != NULL && ce->topic != NULL && (ce->bits & known))
		return (ce->bits & ok) ? 0 : deny(c, rid, op, topic, 0);
	if (ce != NULL && ce->topic == NULL) {
		ce->topic = malloc(topic.len ? topic.len : 1);
		if (ce->topic == NULL) {
			ce = NULL;
		} else {
			memcpy(ce->topic, topic.p, topic.len);
			ce->len = topic.len;
			ce->hash = h;
			ce->bits = 0;
			ac->n++;
		}
	}
	if (ac->entry != NULL && users_allowed(ac->entry, (enum users_op)op,
	    topic.p, topic.len)) {
		if (ce)
			ce->bits |= known | ok;
		return 0;
	}
	if (ce)
		ce->bits |= known;
	/* Logged once per connection and topic; later refusals of the
	 * same thing only get their ERR. */
	if (ce == NULL || !(ce->bits & C_LOGGED)) {
		if (ce)
			ce->bits |= C_LOGGED;
		return deny(c, rid, op, topic, 1);
	}
	return deny(c, rid, op, topic, 0);
}
