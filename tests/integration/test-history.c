/*
 * test-history.c - a history checker in the spirit of Jepsen.
 *
 * One randomized run against a real ferryd: producer processes publish
 * confirmed messages, one at a time or pipelined; two of them plainly,
 * each message with its own id, and two as idempotent producers (pid and
 * a seq per message, about half of their messages without an id, so
 * that the broker derives it from pid and seq); all of them retry a
 * publish whose outcome is unknown after reconnecting, with the same id,
 * pid and seq, and deliberately publish some confirmed messages again,
 * to exercise dedup.  Worker processes ack (plainly or confirmed), nack
 * (with and without delay and error text), stall past the ack timeout,
 * leave deliveries unsettled, and are SIGKILLed at random; at-most-once
 * readers take every message once more in their own group of the topic
 * and settle nothing (and are SIGKILLed now and then too); a dead-letter
 * consumer reads <topic>.dlq; ferryd itself is SIGKILLed and restarted
 * on its data directory several times (fsync=always).  Every process
 * appends one line per operation and result to its own log (one write(2)
 * per line, so a SIGKILL loses at most a torn last line, which the
 * parser skips).  At the end a drain consumer empties both groups and
 * the dead-letter topic, and the checker merges the logs and verifies
 * the rules described above check_history().
 *
 * The seed (FERRY_HISTORY_SEED, else the time) is printed first; it fixes
 * every random decision (schedule of kills, each process's choices), not
 * the OS's interleaving, so a failing seed makes the failure likely, not
 * certain, to recur.  FERRY_HISTORY_SCALE (a factor, default 1) scales the
 * number of messages; ASan builds use 40 %.  On a violation the test prints
 * the message's merged history, keeps its directory and fails.
 *
 * Log lines are "<CLOCK_MONOTONIC us> TAG fields", texts %-encoded ("~" =
 * empty).  A message goes by its producer's name for it, key "p<i>-<n>":
 * its id, or, published without one, its header "key".  Incarnation (the
 * ferryd epoch, see epoch_write()) and the process's connection number
 * identify where a delivery came from; "id pid seq" (origin()) is the id
 * it arrived with and its pid and seq headers ("~" if none):
 *   parent:    START seed wall | UP epoch port | KILL epoch | CKILL name |
 *              CEXIT name status | END wall
 *   producers: CONN epoch conn name | PI key first|retry|dup poison pid
 *              seq idless | PC key kind dups returned-id epoch pid seq |
 *              PF key kind err text
 *   consumers: CONN ... | D key att epoch conn lease name poison id pid
 *              seq | M ... (the same, for a delivery to the at-most-once
 *              group) | AI key att epoch conn lease confirm (ack
 *              attempted, logged before it is sent) | AS (plain ack
 *              buffered) | AC (confirmed ack OK) | AR err (refused) | AU
 *              err (outcome unknown) | NS ... delay confirm text (nack
 *              attempted) | NC | NR | NU | STALL key att ms | DROP key
 *              att | DL key att epoch conn lease name id pid seq
 *              dlq-topic dlq-group dlq-attempts dlq-reason poison
 *              producer nhist (cause at by error)* | QA | QR | QU (the
 *              dead letter's confirmed ack) | BAD key why | LOST err
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"
#include "harness-extra.h"

#define TOPIC "hist.jobs"
#define DLQ_TOPIC TOPIC ".dlq"
#define GROUP "workers"
#define AMO_GROUP "amo"		/* at-most-once subscribers' group */
#define ACK_TIMEOUT_MS 500	/* --ack-timeout 0.5 */
#define MAX_ATTEMPTS 4		/* --max-attempts 4 */
#define NPROD 4		/* even: one at a time; odd: pipelined */
#define NPLAIN 2		/* producers 0..NPLAIN-1 have no pid */
#define NCONS 4
#define NAMO 2			/* at-most-once subscribers */
#define MAX_PER_PROD 5000	/* ids are p<i>-<n>, n < this */
#define RUN_MS 24000		/* producers publish for this long */
#define MAX_CHILDREN 16
#define DRAIN_IDLE_MS 3000	/* the drain ends after this long idle */
#define DRAIN_MAX_MS 60000
#define CHILD_LIFE_MS 170000	/* any child exits after this, whatever */
#define LINE_MAX_LEN 8192

static struct ferryd d;
static pid_t children[MAX_CHILDREN];	/* SIGKILLed by teardown */
static int logfd = -1;			/* this process's history log */
static uint64_t seed;

/* ---- time, randomness, logging (parent and children) ---- */

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rng_state;

static uint64_t
splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Seed this process's generator from the run seed and a role number. */
static void
rng_seed(uint64_t role)
{
	uint64_t x = seed ^ (role * 0x100000001b3ULL);

	rng_state = splitmix(&x);
}

/* Uniform in [0, n). */
static unsigned
rnd(unsigned n)
{
	return n ? (unsigned)(splitmix(&rng_state) % n) : 0;
}

static void
sleep_ms(unsigned ms)
{
	usleep((useconds_t)ms * 1000);
}

/*
 * Append "<monotonic us> <text>\n" to this process's log with one write.
 * A child that cannot log exits: its history would be incomplete.
 */
__attribute__((format(printf, 1, 2)))
static void
hlog(const char *fmt, ...)
{
	char buf[LINE_MAX_LEN];
	size_t n, off = 0;
	va_list ap;
	int r;

	r = snprintf(buf, sizeof(buf), "%llu ",
	    (unsigned long long)mono_us());
	n = (size_t)r;
	va_start(ap, fmt);
	r = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	n += r < 0 ? 0 : (size_t)r;
	if (n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	while (off < n) {
		ssize_t w = write(logfd, buf + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(3);
		off += (size_t)w;
	}
}

static void
log_open(const char *name)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/%s.log", d.dir, name);
	logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0)
		_exit(2);
}

/*
 * Text as one log token: bytes outside '!'..'~', '%' and '~' become %XX;
 * "" (or NULL) is "~".
 */
static char *
enc(const char *s, char *out, size_t cap)
{
	size_t n = 0;

	if (!s || !*s) {
		snprintf(out, cap, "~");
		return out;
	}
	for (; *s && n + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= ' ' || c > '~' || c == '%' || c == '~')
			n += (size_t)snprintf(out + n, cap - n, "%%%02X", c);
		else
			out[n++] = (char)c;
	}
	out[n] = '\0';
	return out;
}

/* Inverse of enc(), in place. */
static char *
dec(char *s)
{
	char *o = s, *p = s;

	if (!strcmp(s, "~")) {
		*s = '\0';
		return s;
	}
	while (*p) {
		unsigned v;

		if (p[0] == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &v)) {
			*o++ = (char)v;
			p += 3;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return s;
}

/*
 * The body of message key (its id, or the name of a message published
 * without one, see mkey()): "<key>:" and a filler whose length and
 * letters follow from the key, so every consumer can verify it.  Mostly
 * under 210 bytes; one in 25 or so from 3,900 to 4,499 bytes, around the
 * size from which ferryd sends a body by reference rather than copying
 * it into the connection's output.
 */
#define BODY_MAX 4608

static size_t
make_body(const char *id, char *buf, size_t cap)
{
	uint32_t h = 2166136261u;
	size_t n, len;

	for (const char *p = id; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	n = (size_t)snprintf(buf, cap, "%s:", id);
	len = (h >> 16) % 25 == 0 ? 3900 + (h >> 8) % 600 : n + h % 200;
	for (size_t i = n; i < len && i + 1 < cap; i++)
		buf[i] = (char)('a' + (h + i) % 26);
	buf[len] = '\0';
	return len;
}

static const char *
hdr_get(const struct ferry_msg *m, const char *key)
{
	for (size_t i = 0; i < m->nhdr; i++)
		if (!strcmp(m->hdr[i].key, key))
			return m->hdr[i].value;
	return NULL;
}

/*
 * The name a message goes by in the history: its id, or, for a message an
 * idempotent producer published without one (its id derived by the broker
 * from pid and seq), its header "key", "p<i>-<n>" as for the others.
 */
static const char *
mkey(const struct ferry_msg *m)
{
	const char *k = hdr_get(m, "key");

	return k && *k ? k : m->id;
}

static int
body_ok(const struct ferry_msg *m)
{
	char want[BODY_MAX];
	size_t n = make_body(mkey(m), want, sizeof(want));

	return m->len == n && !memcmp(m->body, want, n);
}

/* ---- the epoch file: which ferryd incarnation is up, on which port ---- */

/*
 * The parent writes "EPOCH PORT" once a ferryd is up, and "0 0" before it
 * kills it.  A child that read epoch N, connected to its port and then
 * still reads N knows that its connection is to incarnation N: N was alive
 * (and held the port) from before the connect until after it.
 */
static void
epoch_write(int epoch, int port)
{
	char path[400], tmp[400], buf[32];
	int fd, n;

	snprintf(path, sizeof(path), "%s/epoch", d.dir);
	snprintf(tmp, sizeof(tmp), "%s/epoch.tmp", d.dir);
	n = snprintf(buf, sizeof(buf), "%d %d\n", epoch, port);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, (size_t)n), n);
	close(fd);
	ck_assert_int_eq(rename(tmp, path), 0);
}

static int
epoch_read(int *epoch, int *port)
{
	char path[400], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/epoch", d.dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return sscanf(buf, "%d %d", epoch, port) == 2 && *epoch > 0;
}

/* ---- children: no Check calls, only _exit ---- */

static uint64_t child_end;	/* mono ms after which a child exits */
static int conn_no;		/* connections made by this process */

/* Connect to the current ferryd within timeout_ms; NULL if none. */
static struct ferry *
hconnect(const char *name, int *epoch, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	while (now_ms() < deadline && now_ms() < child_end) {
		int e, port, e2, port2;
		struct ferry *f;

		if (epoch_read(&e, &port)) {
			f = ferry_connect("127.0.0.1", port, 2000, name);
			if (f && ferry_err(f) == 0 && epoch_read(&e2, &port2) &&
			    e2 == e && port2 == port) {
				*epoch = e;
				conn_no++;
				hlog("CONN %d %d %s", e, conn_no, name);
				return f;
			}
			ferry_close(f);
		}
		sleep_ms(20 + rnd(30));
	}
	return NULL;
}

static void
child_init(const char *logname, uint64_t role)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	log_open(logname);
	rng_seed(role);
	child_end = now_ms() + CHILD_LIFE_MS;
}

#define WINDOW 16		/* pipelined publishes in flight, at most */
#define MAX_HDR 5

struct producer {
	int idx;
	int n;			/* names p<idx>-0 .. p<idx>-(n-1) */
	int next;		/* next number never published */
	int epoch;
	int *confirmed;		/* numbers confirmed, for deliberate repeats */
	int nconf;
	int *retry;		/* numbers whose outcome is unknown */
	int nretry;
	int tries;		/* failures so far (sync mode: current id) */
	char prod[16];
	/* Idempotent producer (idx >= NPLAIN; pid "" otherwise): */
	char pid[24];
	uint64_t last_seq;	/* the highest seq given out */
	uint64_t *seqs;		/* number -> seq of its latest publish */
	char *renew;		/* number -> refused: retry under a new seq */
	uint64_t seq;		/* of the publish prepare() made, 0 if none */
	char seqtxt[24];
	/* pipelined mode: */
	uint64_t rid[WINDOW], sq[WINDOW];
	int num[WINDOW], dup[WINDOW], used[WINDOW], nused;
	const char *kind[WINDOW];
};

/* Order of retries: see pick(). */
static uint64_t
retry_rank(const struct producer *p, int num)
{
	if (!p->pid[0])
		return 0;
	return p->renew[num] ? UINT64_MAX : p->seqs[num];
}

/* The next publish: a retry, a deliberate repeat or a new number. */
static int
pick(struct producer *p, const char **kind, int *dup)
{
	*dup = 0;
	if (p->nretry > 0) {
		int k = p->nretry - 1, num;

		/*
		 * An idempotent producer retries in seq order, and those
		 * needing a new seq last: the broker takes any seq at or
		 * below the highest it stored for a duplicate, so a retry
		 * stored ahead of a lower seq that never was would make it
		 * drop that one.  A plain producer takes the newest first.
		 */
		for (int i = 0; i < p->nretry; i++)
			if (retry_rank(p, p->retry[i]) <
			    retry_rank(p, p->retry[k]))
				k = i;
		num = p->retry[k];
		p->retry[k] = p->retry[--p->nretry];
		*kind = "retry";
		return num;
	}
	if (p->nconf > 0 && rnd(25) == 0) {
		*kind = "dup";
		*dup = 1;
		return p->confirmed[rnd((unsigned)p->nconf)];
	}
	*kind = "first";
	return p->next < p->n ? p->next++ : -1;
}

/*
 * Name, body and options of number num; logs the intent (PI).  An
 * idempotent producer gives each number a seq when first published and
 * keeps it for retries and deliberate repeats (a new one only after a
 * refusal, as PROTOCOL.md section 8 says), and carries pid and seq in
 * headers for the consumers to log; about half of its numbers go without
 * an id, under the header key.
 */
static size_t
prepare(struct producer *p, int num, const char *kind, char *id,
    char *body, struct ferry_pub_opts *o, struct ferry_header *hdr)
{
	uint64_t x = seed ^ ((uint64_t)p->idx << 32) ^ (uint64_t)num;
	/* Poison and going without an id are properties of the number:
	 * repeats keep them. */
	uint64_t h = splitmix(&x);
	int poison = h % 100 < 3, idless = p->pid[0] && (h >> 40) % 2;
	size_t nh = 0;
	char e1[40];

	snprintf(id, FERRY_ID_MAX + 1, "p%d-%05d", p->idx, num);
	hdr[nh++] = (struct ferry_header){"producer", p->prod};
	if (poison)
		hdr[nh++] = (struct ferry_header){"poison", "1"};
	p->seq = 0;
	if (p->pid[0]) {
		if (!p->seqs[num] || p->renew[num])
			p->seqs[num] = ++p->last_seq;
		p->renew[num] = 0;
		p->seq = p->seqs[num];
		snprintf(p->seqtxt, sizeof(p->seqtxt), "%llu",
		    (unsigned long long)p->seq);
		hdr[nh++] = (struct ferry_header){"pid", p->pid};
		hdr[nh++] = (struct ferry_header){"seq", p->seqtxt};
	}
	if (idless)
		hdr[nh++] = (struct ferry_header){"key", id};
	memset(o, 0, sizeof(*o));
	o->id = idless ? NULL : id;
	o->hdr = hdr;
	o->nhdr = nh;
	hlog("PI %s %s %d %s %llu %d", id, kind, poison,
	    enc(p->pid, e1, sizeof(e1)), (unsigned long long)p->seq, idless);
	return make_body(id, body, BODY_MAX);
}

static void
pub_ok(struct producer *p, int num, int dup, const char *kind,
    size_t dups, const char *retid, uint64_t seq)
{
	char e1[200], e2[40];

	hlog("PC p%d-%05d %s %zu %s %d %s %llu", p->idx, num, kind, dups,
	    enc(retid, e1, sizeof(e1)), p->epoch,
	    enc(p->pid, e2, sizeof(e2)), (unsigned long long)seq);
	if (!dup)
		p->confirmed[p->nconf++] = num;
}

/*
 * Unknown outcome: retry the number later (dedup makes it safe; an
 * idempotent producer keeps its seq).  Refused for good (not retryable,
 * not a connection error): nothing stored.  Refused but retryable without
 * a doubt that nothing was stored (FULL, NOSUBSCRIBERS): an idempotent
 * producer retries under a new seq, since a higher one may have been
 * stored meanwhile.
 */
static void
pub_failed(struct producer *p, int num, int dup, const char *kind, int err,
    const char *text, int again)
{
	char e1[200];

	hlog("PF p%d-%05d %s %d %s", p->idx, num, kind, err,
	    enc(text, e1, sizeof(e1)));
	if (!dup && again && p->tries++ < 500) {
		p->retry[p->nretry++] = num;
		if (p->pid[0] && (err == FERRY_EFULL ||
		    err == FERRY_ENOSUBSCRIBERS))
			p->renew[num] = 1;
	}
}

static void
on_confirm(void *arg, const struct ferry_confirm *c)
{
	struct producer *p = arg;

	for (int i = 0; i < WINDOW; i++) {
		if (!p->used[i] || p->rid[i] != c->rid)
			continue;
		p->used[i] = 0;
		p->nused--;
		if (c->err == FERRY_OK)
			pub_ok(p, p->num[i], p->dup[i], p->kind[i], c->dups,
			    c->id, p->sq[i]);
		else
			pub_failed(p, p->num[i], p->dup[i], p->kind[i],
			    c->err, c->errmsg,
			    !FERRY_IS_BROKER_ERROR(c->err) ||
			    ferry_retryable(c->err));
		return;
	}
}

/* After the connection failed: what was in flight has unknown outcome. */
static void
lost_window(struct producer *p, int err)
{
	for (int i = 0; i < WINDOW; i++)
		if (p->used[i]) {
			p->used[i] = 0;
			pub_failed(p, p->num[i], p->dup[i], p->kind[i], err,
			    "lost with the connection", 1);
		}
	p->nused = 0;
}

/*
 * A producer: publishes its numbers confirmed, paced so as to spread them
 * over run_ms; one at a time (even idx) or pipelined, up to WINDOW in
 * flight (odd idx); plain (idx < NPLAIN: every message with its own id)
 * or as an idempotent producer (pid "hist-p<idx>", seq set by
 * ferry_set_producer() before each publish, about half the messages
 * without an id).  A publish whose outcome is unknown (connection lost,
 * timeout) is published again with the same id, pid and seq after
 * reconnecting (a fresh ferry_connect() to the current incarnation), and
 * every 25th publish or so repeats one already confirmed: the broker must
 * call both duplicates, not enqueue them again.
 */
__attribute__((noreturn))
static void
producer_main(int idx, int n, int run_ms)
{
	char name[32], id[FERRY_ID_MAX + 1], retid[FERRY_ID_MAX + 1];
	char body[BODY_MAX];
	struct producer p = {.idx = idx, .n = n};
	int piped = idx % 2;
	struct ferry *f = NULL;
	uint64_t end, gap_us;

	snprintf(name, sizeof(name), "prod%d", idx);
	snprintf(p.prod, sizeof(p.prod), "p%d", idx);
	if (idx >= NPLAIN)
		snprintf(p.pid, sizeof(p.pid), "hist-p%d", idx);
	child_init(name, 100 + (uint64_t)idx);
	p.confirmed = calloc((size_t)n * 2 + 1, sizeof(int));
	p.retry = calloc((size_t)n + WINDOW, sizeof(int));
	p.seqs = calloc((size_t)n, sizeof(uint64_t));
	p.renew = calloc((size_t)n, 1);
	if (!p.confirmed || !p.retry || !p.seqs || !p.renew)
		_exit(5);
	end = now_ms() + (uint64_t)run_ms;
	gap_us = (uint64_t)run_ms * 1000 / (uint64_t)n;
	while ((p.next < n || p.nretry > 0 || p.nused > 0) &&
	    now_ms() < end + 20000 && now_ms() < child_end) {
		struct ferry_header hdr[MAX_HDR];
		struct ferry_pub_opts o;
		const char *kind;
		int num, dup, r;
		size_t len;

		if (!f) {
			if (!(f = hconnect(name, &p.epoch, 20000))) {
				hlog("GIVEUP");
				_exit(4);
			}
			ferry_set_confirm_cb(f, on_confirm, &p);
		}
		if (piped && (p.nused == WINDOW ||
		    (p.next >= n && p.nretry == 0))) {
			r = ferry_wait_confirms(f, p.nused == WINDOW ?
			    WINDOW / 2 : 0, 2000, NULL);
			if (ferry_err(f)) {
				lost_window(&p, ferry_err(f));
				ferry_close(f);
				f = NULL;
			}
			continue;
		}
		if ((num = pick(&p, &kind, &dup)) < 0)
			continue;
		len = prepare(&p, num, kind, id, body, &o, hdr);
		/* The seq of this publish, which libferry would otherwise
		 * count up by itself. */
		if (p.pid[0] && ferry_set_producer(f, p.pid, p.seq) != 0) {
			hlog("BADPID %s", ferry_errstr(f));
			_exit(7);
		}
		if (piped) {
			int slot = 0;
			uint64_t rid = 0;

			while (p.used[slot])
				slot++;
			r = ferry_publish_pipelined(f, TOPIC, body, len, &o,
			    &rid);
			if (r == FERRY_OK) {
				p.rid[slot] = rid;
				p.sq[slot] = p.seq;
				p.num[slot] = num;
				p.dup[slot] = dup;
				p.kind[slot] = kind;
				p.used[slot] = 1;
				p.nused++;
			}
		} else {
			retid[0] = '\0';
			r = ferry_publish_sync(f, TOPIC, body, len, &o, retid);
			if (r == FERRY_OK)
				pub_ok(&p, num, dup, kind, ferry_last_dups(f),
				    retid, p.seq);
		}
		if (r != FERRY_OK) {
			int fatal = ferry_err(f) != 0;

			pub_failed(&p, num, dup, kind, r, ferry_errstr(f),
			    fatal || ferry_retryable(r));
			if (fatal) {
				lost_window(&p, r);
				ferry_close(f);
				f = NULL;
			}
			sleep_ms(rnd(20));
			continue;
		}
		usleep((useconds_t)rnd((unsigned)gap_us * 2));
	}
	hlog("DONE %d %d", p.next, p.nretry);
	ferry_close(f);
	_exit(0);
}

enum role { WORKER, DLQ_READER, DRAIN, AMO_READER };

struct consumer {
	enum role role;
	char name[32];
	struct ferry *f;
	int epoch;
	uint64_t amo_sid;	/* its at-most-once subscription, or 0 */
};

/* Log a settle result: TAG id att epoch conn lease [err text]. */
static void
log_settle(struct consumer *c, const char *ok, const char *refused,
    const char *unknown, const struct ferry_msg *m, int r)
{
	char e1[200];
	const char *tag = r == FERRY_OK ? ok : FERRY_IS_BROKER_ERROR(r) ?
	    refused : unknown;

	if (r == FERRY_OK)
		hlog("%s %s %u %d %d %llu", tag, mkey(m), m->attempt,
		    c->epoch, conn_no, (unsigned long long)m->lease);
	else
		hlog("%s %s %u %d %d %llu %d %s", tag, mkey(m), m->attempt,
		    c->epoch, conn_no, (unsigned long long)m->lease, r,
		    enc(ferry_errstr(c->f), e1, sizeof(e1)));
}

static void
ack(struct consumer *c, const struct ferry_msg *m, int confirm)
{
	int r;

	/* Intent first: a kill after sending must not hide the ack. */
	hlog("AI %s %u %d %d %llu %d", mkey(m), m->attempt, c->epoch,
	    conn_no, (unsigned long long)m->lease, confirm);
	r = ferry_ack(c->f, m->sid, m->lease, confirm ? FERRY_CONFIRM : 0);
	if (!confirm && r == FERRY_OK)
		hlog("AS %s %u %d %d %llu", mkey(m), m->attempt, c->epoch,
		    conn_no, (unsigned long long)m->lease);
	else
		log_settle(c, "AC", "AR", "AU", m, r);
}

static void
nack(struct consumer *c, const struct ferry_msg *m)
{
	char text[160], e1[400];
	int64_t delay;
	int confirm = (int)rnd(2), r;
	unsigned k = rnd(3);

	delay = k == 0 ? -1 : k == 1 ? 0 : 20 + (int64_t)rnd(180);
	snprintf(text, sizeof(text), "nack %s att %u by %s: %s", mkey(m),
	    m->attempt, c->name, rnd(2) ? "boom" : "not today");
	if (rnd(5) == 0)
		text[0] = '\0';		/* no error text */
	hlog("NS %s %u %d %d %llu %lld %d %s", mkey(m), m->attempt, c->epoch,
	    conn_no, (unsigned long long)m->lease, (long long)delay, confirm,
	    enc(text, e1, sizeof(e1)));
	r = ferry_nack(c->f, m->sid, m->lease, delay, text[0] ? text : NULL,
	    confirm ? FERRY_CONFIRM : 0);
	if (confirm || r != FERRY_OK)
		log_settle(c, "NC", "NR", "NU", m, r);
}

/* A worker's choice for one delivery of the main topic. */
static void
work(struct consumer *c, const struct ferry_msg *m, int poison)
{
	unsigned x = rnd(1000), ms;

	if (c->role == DRAIN) {
		ack(c, m, 1);
		return;
	}
	if (poison)
		x = x < 850 ? 450 + 370 + rnd(120) : x < 950 ? 960 : 990;
	if (x < 450) {
		ack(c, m, 0);
	} else if (x < 820) {
		ack(c, m, 1);
	} else if (x < 940) {
		nack(c, m);
	} else if (x < 980) {
		hlog("DROP %s %u", mkey(m), m->attempt);  /* lease runs out */
	} else {
		/* Mostly past the ack timeout: the ack should be stale. */
		ms = rnd(10) < 7 ? ACK_TIMEOUT_MS + 50 + rnd(250) :
		    50 + rnd(250);
		hlog("STALL %s %u %u", mkey(m), m->attempt, ms);
		sleep_ms(ms);
		if (poison)
			nack(c, m);
		else
			ack(c, m, 1);
	}
}

/*
 * Where a delivery came from, as three log tokens "id pid seq": the id it
 * arrived with and its producer's pid and seq headers ("~" if none).
 */
static char *
origin(const struct ferry_msg *m, char *out, size_t cap)
{
	char a[200], b[200], x[200];

	snprintf(out, cap, "%s %s %s", enc(m->id, a, sizeof(a)),
	    enc(hdr_get(m, "pid"), b, sizeof(b)),
	    enc(hdr_get(m, "seq"), x, sizeof(x)));
	return out;
}

/* A dead letter: log it whole, in one line, then ack it (confirmed). */
static void
dead_letter(struct consumer *c, const struct ferry_msg *m)
{
	char line[LINE_MAX_LEN - 100], e[6][200], o[620];
	size_t n = 0;
	const char *keys[] = {"dlq-topic", "dlq-group", "dlq-attempts",
	    "dlq-reason", "poison", "producer"};

	for (int i = 0; i < 6; i++)
		enc(hdr_get(m, keys[i]), e[i], sizeof(e[i]));
	n += (size_t)snprintf(line + n, sizeof(line) - n,
	    "DL %s %u %d %d %llu %s %s %s %s %s %s %s %s %zu", mkey(m),
	    m->attempt, c->epoch, conn_no, (unsigned long long)m->lease,
	    c->name, origin(m, o, sizeof(o)), e[0], e[1], e[2], e[3], e[4],
	    e[5], m->nhist);
	for (size_t i = 0; i < m->nhist && n < sizeof(line) - 1; i++) {
		const struct ferry_hist *h = &m->hist[i];
		char a[200], b[200], x[1200];

		n += (size_t)snprintf(line + n, sizeof(line) - n,
		    " %s %llu %s %s", enc(h->cause, a, sizeof(a)),
		    (unsigned long long)h->at_ms,
		    enc(h->consumer, b, sizeof(b)),
		    enc(h->error, x, sizeof(x)));
	}
	hlog("%s", line);
	log_settle(c, "QA", "QR", "QU", m,
	    ferry_ack(c->f, m->sid, m->lease, FERRY_CONFIRM));
}

static void
handle(struct consumer *c, struct ferry_msg *m)
{
	const char *p = hdr_get(m, "poison");
	int poison = p && !strcmp(p, "1"), amo;
	char o[620];

	if (!body_ok(m))
		hlog("BAD %s body of %zu bytes does not match its id",
		    mkey(m), m->len);
	if (!strcmp(m->topic, DLQ_TOPIC)) {
		dead_letter(c, m);
		return;
	}
	if (strcmp(m->topic, TOPIC)) {
		hlog("BAD %s delivered from topic %s", mkey(m), m->topic);
		return;
	}
	amo = c->amo_sid && m->sid == c->amo_sid;
	if (amo && m->lease)
		hlog("BAD %s at-most-once delivery with lease %llu", mkey(m),
		    (unsigned long long)m->lease);
	hlog("%s %s %u %d %d %llu %s %d %s", amo ? "M" : "D", mkey(m),
	    m->attempt, c->epoch, conn_no, (unsigned long long)m->lease,
	    c->name, poison, origin(m, o, sizeof(o)));
	if (!amo)
		work(c, m, poison);
}

/* Subscribe to what the role reads; 0 or a FERRY_E* code. */
static int
subscribe(struct consumer *c, int prefetch)
{
	struct ferry_sub_opts so;
	int r = 0;

	c->amo_sid = 0;
	memset(&so, 0, sizeof(so));
	so.prefetch = (uint32_t)prefetch;
	if (c->role == WORKER || c->role == DRAIN) {
		so.group = GROUP;
		so.ack_timeout_ms = ACK_TIMEOUT_MS;
		so.max_attempts = MAX_ATTEMPTS;
		r = ferry_subscribe(c->f, TOPIC, &so, NULL);
	}
	if (r == 0 && (c->role == AMO_READER || c->role == DRAIN)) {
		memset(&so, 0, sizeof(so));
		so.prefetch = (uint32_t)prefetch;
		so.group = AMO_GROUP;
		so.mode = FERRY_AT_MOST_ONCE;
		r = ferry_subscribe(c->f, TOPIC, &so, &c->amo_sid);
	}
	if (r == 0 && (c->role == DLQ_READER || c->role == DRAIN)) {
		memset(&so, 0, sizeof(so));
		so.prefetch = (uint32_t)prefetch;
		r = ferry_subscribe(c->f, DLQ_TOPIC, &so, NULL);
	}
	return r;
}

/*
 * A consumer: a worker of GROUP, an at-most-once subscriber of AMO_GROUP
 * (logs each delivery, M, and settles nothing), the dead-letter reader,
 * or the final drain (acks everything of GROUP and the dead-letter topic,
 * confirmed, takes what is left in AMO_GROUP, and exits 0 once idle for
 * DRAIN_IDLE_MS).  Reconnects with a fresh ferry_connect() whenever the
 * connection fails.
 */
__attribute__((noreturn))
static void
consumer_main(enum role role, int idx, int gen)
{
	struct consumer c = {.role = role};
	char logname[32], e1[200];
	uint64_t idle_since = now_ms(), end;
	int prefetch;

	if (role == WORKER || role == AMO_READER)
		snprintf(c.name, sizeof(c.name), "%c%d.%d",
		    role == WORKER ? 'c' : 'a', idx, gen);
	else
		snprintf(c.name, sizeof(c.name), "%s",
		    role == DRAIN ? "drain" : "dlq");
	snprintf(logname, sizeof(logname), "%s", c.name);
	child_init(logname, 1000 + (uint64_t)role * 100 + (uint64_t)idx * 10 +
	    (uint64_t)gen * 1000);
	end = role == DRAIN ? now_ms() + DRAIN_MAX_MS : child_end;
	prefetch = role == WORKER ? 1 + (int)rnd(8) : role == AMO_READER ?
	    1 + (int)rnd(32) : 64;
	while (now_ms() < end) {
		int r;

		if (!(c.f = hconnect(c.name, &c.epoch, 20000))) {
			hlog("GIVEUP");
			_exit(4);
		}
		if ((r = subscribe(&c, prefetch)) != 0) {
			hlog("SUBFAIL %d %s", r,
			    enc(ferry_errstr(c.f), e1, sizeof(e1)));
			ferry_close(c.f);
			sleep_ms(50);
			continue;
		}
		while (ferry_err(c.f) == 0 && now_ms() < end) {
			struct ferry_msg *m = NULL;

			r = ferry_next(c.f, 200, &m);
			if (r == FERRY_OK) {
				handle(&c, m);
				ferry_msg_free(m);
				idle_since = now_ms();
			} else if (r == FERRY_ETIMEOUT) {
				if (role == DRAIN &&
				    now_ms() - idle_since >= DRAIN_IDLE_MS) {
					hlog("IDLE");
					ferry_close(c.f);
					_exit(0);
				}
			} else if (ferry_err(c.f) == 0) {
				hlog("AE %d %s", r,
				    enc(ferry_errstr(c.f), e1, sizeof(e1)));
			}
		}
		hlog("LOST %d %s", ferry_err(c.f),
		    enc(ferry_errstr(c.f), e1, sizeof(e1)));
		ferry_close(c.f);
		c.f = NULL;
	}
	_exit(role == DRAIN ? 6 : 0);
}

/* ---- the parent: processes and chaos ---- */

static pid_t
spawn(enum role role, int idx, int gen, int n, int run_ms, int producer)
{
	pid_t pid = fork();
	int i;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (producer)
			producer_main(idx, n, run_ms);
		consumer_main(role, idx, gen);
	}
	for (i = 0; i < MAX_CHILDREN && children[i] > 0; i++)
		;
	ck_assert_int_lt(i, MAX_CHILDREN);
	children[i] = pid;
	return pid;
}

static void
forget(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

static void
kill_child(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	forget(pid);
}

static void
setup(void)
{
	/* Small segments: restarts also meet rollover and compaction. */
	ferryd_start(&d, "--ack-timeout", "0.5", "--retry-backoff-base",
	    "0.05", "--retry-backoff-max", "0.2", "--max-attempts", "4",
	    "--segment-size", "512K", "--fsync", "always", NULL);
}

static void
teardown(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		kill_child(children[i]);
	ferryd_cleanup(&d);
	if (logfd >= 0)
		close(logfd);
	logfd = -1;
}

static uint64_t
history_seed(void)
{
	const char *s = getenv("FERRY_HISTORY_SEED");
	uint64_t v = s && *s ? strtoull(s, NULL, 10) :
	    (wall_ms() * 1000003ULL) ^ (uint64_t)getpid();

	v %= 1000000000000ULL;
	fprintf(stderr, "history seed %llu (FERRY_HISTORY_SEED=%llu repeats "
	    "it)\n", (unsigned long long)v, (unsigned long long)v);
	return v;
}

static int
sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return 1;
#endif
#endif
	const char *a = getenv("ASAN_OPTIONS");

	return a && *a;
}

/* Fail at once if ferryd died on its own (a crash of the broker). */
static void
ferryd_alive(void)
{
	int st;

	if (waitpid(d.pid, &st, WNOHANG) != d.pid)
		return;
	d.pid = 0;
	hlog("FERRYD-DIED %d", st);
	ck_abort_msg("ferryd died by itself: wait status %d (seed %llu; see "
	    "%s)", st, (unsigned long long)seed, d.log);
}

/* SIGKILL ferryd and start it again on its data directory. */
static void
crash_restart(int *epoch)
{
	ferryd_alive();
	hlog("KILL %d", *epoch);
	epoch_write(0, 0);
	ferryd_kill(&d);
	if (rnd(2))
		sleep_ms(rnd(300));
	ferryd_restart(&d);
	++*epoch;
	epoch_write(*epoch, d.port);
	hlog("UP %d %d", *epoch, d.port);
}

struct run {
	int per_prod;		/* messages per producer */
	int restarts;
	int ckills;
};

/*
 * Create both groups of TOPIC before anything is published: the first
 * durable group of a topic takes its backlog, and each must get every
 * message.
 */
static void
make_groups(void)
{
	struct ferry *f = ferry_connect("127.0.0.1", d.port, 5000, "setup");
	struct ferry_sub_opts so = {.group = GROUP, .prefetch = 1,
	    .ack_timeout_ms = ACK_TIMEOUT_MS, .max_attempts = MAX_ATTEMPTS};

	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	ck_assert_int_eq(ferry_subscribe(f, TOPIC, &so, NULL), 0);
	so = (struct ferry_sub_opts){.group = AMO_GROUP, .prefetch = 1,
	    .mode = FERRY_AT_MOST_ONCE};
	ck_assert_int_eq(ferry_subscribe(f, TOPIC, &so, NULL), 0);
	ferry_close(f);
}

/* Consumer i of the chaos: workers first, then at-most-once readers. */
static pid_t
spawn_consumer(int i, int gen)
{
	return i < NCONS ? spawn(WORKER, i, gen, 0, 0, 0) :
	    spawn(AMO_READER, i - NCONS, gen, 0, 0, 0);
}

static const char *
consumer_name(int i, int gen, char *buf, size_t cap)
{
	snprintf(buf, cap, "%c%d.%d", i < NCONS ? 'c' : 'a',
	    i < NCONS ? i : i - NCONS, gen);
	return buf;
}

static void
run_chaos(struct run *run)
{
	pid_t prod[NPROD], cons[NCONS + NAMO], dlq;
	int gen[NCONS + NAMO] = {0}, epoch = 1, left = NPROD, st;
	uint64_t t0 = now_ms(), next_crash, next_ckill;
	char cn[32];

	make_groups();
	epoch_write(epoch, d.port);
	hlog("UP %d %d", epoch, d.port);
	dlq = spawn(DLQ_READER, 0, 0, 0, 0, 0);
	for (int i = 0; i < NCONS + NAMO; i++)
		cons[i] = spawn_consumer(i, 0);
	for (int i = 0; i < NPROD; i++)
		prod[i] = spawn(WORKER, i, 0, run->per_prod, RUN_MS, 1);
	next_crash = t0 + 1500 + rnd(2500);
	next_ckill = t0 + 500 + rnd(2000);
	while (left > 0 && now_ms() - t0 < RUN_MS + 40000) {
		ferryd_alive();
		for (int i = 0; i < NPROD; i++) {
			if (prod[i] <= 0 ||
			    waitpid(prod[i], &st, WNOHANG) != prod[i])
				continue;
			forget(prod[i]);
			prod[i] = 0;
			left--;
			hlog("PEXIT %d %d", i, st);
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			    "producer %d failed: status %d (seed %llu)", i,
			    st, (unsigned long long)seed);
		}
		/* A consumer exits only if it cannot log or reconnect. */
		for (int i = 0; i < NCONS + NAMO; i++)
			if (waitpid(cons[i], &st, WNOHANG) == cons[i]) {
				forget(cons[i]);
				hlog("CEXIT %s %d", consumer_name(i, gen[i],
				    cn, sizeof(cn)), st);
				cons[i] = spawn_consumer(i, ++gen[i]);
			}
		if (waitpid(dlq, &st, WNOHANG) == dlq) {
			forget(dlq);
			hlog("CEXIT dlq %d", st);
			dlq = spawn(DLQ_READER, 0, 0, 0, 0, 0);
		}
		if (now_ms() >= next_crash && now_ms() - t0 < RUN_MS) {
			crash_restart(&epoch);
			run->restarts++;
			/* Now and then right after start-up (replay,
			 * compaction), else a few seconds later. */
			next_crash = now_ms() + (rnd(5) == 0 ? 50 + rnd(250) :
			    800 + rnd(3000));
		}
		if (now_ms() >= next_ckill && now_ms() - t0 < RUN_MS) {
			/* Now and then an at-most-once reader, whose
			 * connection dies with deliveries under way. */
			int i = rnd(4) ? (int)rnd(NCONS) :
			    NCONS + (int)rnd(NAMO);

			hlog("CKILL %s", consumer_name(i, gen[i], cn,
			    sizeof(cn)));
			kill_child(cons[i]);
			sleep_ms(rnd(200));
			cons[i] = spawn_consumer(i, ++gen[i]);
			run->ckills++;
			next_ckill = now_ms() + 400 + rnd(1600);
		}
		sleep_ms(10);
	}
	ck_assert_msg(left == 0, "producers did not finish (seed %llu)",
	    (unsigned long long)seed);
	/* Workers take what is left for a moment, then die as well. */
	sleep_ms(1500);
	for (int i = 0; i < NCONS + NAMO; i++) {
		hlog("CKILL %s", consumer_name(i, gen[i], cn, sizeof(cn)));
		kill_child(cons[i]);
	}
	hlog("CKILL dlq");
	kill_child(dlq);
}

/* Run the drain consumer to its end; fails the test if it does not. */
static void
run_drain(void)
{
	pid_t pid = spawn(DRAIN, 0, 0, 0, 0, 0);
	uint64_t end = now_ms() + DRAIN_MAX_MS + 5000;
	int st = -1;

	while (now_ms() < end && waitpid(pid, &st, WNOHANG) == 0)
		sleep_ms(20);
	if (now_ms() >= end) {
		kill_child(pid);
		ck_abort_msg("the drain did not finish (seed %llu)",
		    (unsigned long long)seed);
	}
	forget(pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "the drain failed: status %d (seed %llu)", st,
	    (unsigned long long)seed);
}

/* ---- the checker ---- */

enum ev_kind {
	E_PI, E_PC, E_PF, E_D, E_AI, E_AS, E_AC, E_AR, E_AU, E_NS, E_NC, E_NR,
	E_NU, E_STALL, E_DROP, E_DL, E_QA, E_QR, E_QU, E_BAD, E_M,
	E_OTHER,		/* lines with no message: CONN, LOST, ... */
};

static const char *const ev_tags[] = {
	"PI", "PC", "PF", "D", "AI", "AS", "AC", "AR", "AU", "NS", "NC", "NR",
	"NU", "STALL", "DROP", "DL", "QA", "QR", "QU", "BAD", "M",
};

/* One parsed log line. */
struct hev {
	uint64_t t;		/* monotonic us */
	int kind;		/* enum ev_kind */
	int msg;		/* index into msgs, -1 if none */
	int src;		/* index into srcs */
	unsigned att;
	int epoch;
	int conn;		/* the process's connection number */
	uint64_t lease;
	long v;			/* PC: dups; NS: delay; PI: poison */
	int idless;		/* PI: published without an id */
	char *kindstr;		/* PI/PC/PF: first, retry or dup */
	char *text;		/* NS: error text; PC: returned id */
	/* D, M, DL: the id it arrived with; PC: the returned id (NULL if
	 * none); pid and seq of an idempotent producer's message (pid
	 * NULL and seq 0 if none).  See rule 5. */
	char *mid, *pid;
	uint64_t pseq;
	char *line;		/* the whole line, for histories */
};

struct hmsg {
	char id[FERRY_ID_MAX + 1];
	size_t first, n;	/* its events in the sorted array */
	int nviol;
};

struct hist_state {
	struct hev *ev;
	size_t nev, cap;
	struct hmsg *msgs;
	size_t nmsgs, mcap;
	int *slots;		/* hash table of msg indices + 1 */
	size_t nslots;
	char **srcs;		/* log file names */
	int nsrcs;
	char **names;		/* consumer names seen in CONN lines */
	int nnames;
	int torn;		/* lines skipped as torn or malformed */
	uint64_t t0;		/* START */
	uint64_t wall0, wall1;	/* wall clock bounds of the run, ms */
	int nviol;
	char **viol;		/* violation texts, by message */
	int *viol_msg;
};

static int
msg_find(struct hist_state *h, const char *id, int create)
{
	uint32_t k = 2166136261u;
	size_t i;

	for (const char *p = id; *p; p++)
		k = (k ^ (unsigned char)*p) * 16777619u;
	for (i = k & (h->nslots - 1); h->slots[i];
	    i = (i + 1) & (h->nslots - 1))
		if (!strcmp(h->msgs[h->slots[i] - 1].id, id))
			return h->slots[i] - 1;
	if (!create)
		return -1;
	ck_assert_uint_lt(h->nmsgs * 2, h->nslots);
	if (h->nmsgs == h->mcap) {
		h->mcap = h->mcap ? h->mcap * 2 : 1024;
		h->msgs = realloc(h->msgs, h->mcap * sizeof(*h->msgs));
		ck_assert_ptr_nonnull(h->msgs);
	}
	memset(&h->msgs[h->nmsgs], 0, sizeof(h->msgs[0]));
	snprintf(h->msgs[h->nmsgs].id, sizeof(h->msgs[0].id), "%s", id);
	h->slots[i] = (int)++h->nmsgs;
	return (int)h->nmsgs - 1;
}

/* Split s on spaces into at most max tokens; returns the count. */
static int
split(char *s, char **tok, int max)
{
	int n = 0;
	char *save = NULL;

	for (char *p = strtok_r(s, " ", &save); p && n < max;
	    p = strtok_r(NULL, " ", &save))
		tok[n++] = p;
	return n;
}

static void
add_name(struct hist_state *h, const char *name)
{
	for (int i = 0; i < h->nnames; i++)
		if (!strcmp(h->names[i], name))
			return;
	h->names = realloc(h->names, (size_t)(h->nnames + 1) *
	    sizeof(*h->names));
	ck_assert_ptr_nonnull(h->names);
	h->names[h->nnames++] = strdup(name);
}

static int
has_name(const struct hist_state *h, const char *name)
{
	for (int i = 0; i < h->nnames; i++)
		if (!strcmp(h->names[i], name))
			return 1;
	return 0;
}

/* The origin fields of e: id (decoded), pid and seq tokens. */
static void
set_origin(struct hev *e, const char *id, char *pid, const char *seq)
{
	if (*id)
		e->mid = strdup(id);
	dec(pid);
	if (*pid && strcmp(seq, "~")) {
		e->pid = strdup(pid);
		e->pseq = strtoull(seq, NULL, 10);
	}
}

/* Parse one complete line of log src; malformed lines count as torn. */
static void
parse_line(struct hist_state *h, int src, const char *text)
{
	char *copy = strdup(text), *tok[128];
	struct hev e;
	int n, k;

	ck_assert_ptr_nonnull(copy);
	memset(&e, 0, sizeof(e));
	e.msg = -1;
	e.src = src;
	e.kind = E_OTHER;
	n = split(copy, tok, 128);
	if (n < 2 || sscanf(tok[0], "%llu", (unsigned long long *)&e.t) != 1)
		goto torn;
	if (!strcmp(tok[1], "START") && n >= 4) {
		h->t0 = e.t;
		h->wall0 = strtoull(tok[3], NULL, 10);
	} else if (!strcmp(tok[1], "END") && n >= 3) {
		h->wall1 = strtoull(tok[2], NULL, 10);
	} else if (!strcmp(tok[1], "CONN") && n >= 5) {
		add_name(h, tok[4]);
	}
	for (k = 0; k < E_OTHER && strcmp(tok[1], ev_tags[k]); k++)
		;
	e.kind = k;
	if (k != E_OTHER) {
		if (n < 3)
			goto torn;
		e.msg = msg_find(h, tok[2], 1);
	}
	switch (k) {
	case E_PI:
	case E_PF:
		if (n < 5)
			goto torn;
		e.kindstr = strdup(tok[3]);
		e.v = strtol(tok[4], NULL, 10);
		if (k == E_PI && n >= 8) {
			set_origin(&e, "", tok[5], tok[6]);
			e.idless = atoi(tok[7]);
		}
		break;
	case E_PC:
		if (n < 7)
			goto torn;
		e.kindstr = strdup(tok[3]);
		e.v = strtol(tok[4], NULL, 10);
		e.text = strdup(dec(tok[5]));
		e.epoch = atoi(tok[6]);
		if (n >= 9)
			set_origin(&e, e.text, tok[7], tok[8]);
		break;
	case E_D: case E_AI: case E_AS: case E_AC: case E_AR: case E_AU:
	case E_NS: case E_NC: case E_NR: case E_NU: case E_M:
	case E_DL: case E_QA: case E_QR: case E_QU:
		if (n < 7)
			goto torn;
		e.att = (unsigned)strtoul(tok[3], NULL, 10);
		e.epoch = atoi(tok[4]);
		e.conn = atoi(tok[5]);
		e.lease = strtoull(tok[6], NULL, 10);
		if (k == E_AR || k == E_NR || k == E_QR) {
			if (n < 8)
				goto torn;
			e.v = strtol(tok[7], NULL, 10);
		}
		if (k == E_NS) {
			if (n < 10)
				goto torn;
			e.v = strtol(tok[7], NULL, 10);
			e.text = strdup(dec(tok[9]));
		}
		if (k == E_DL && n < 18)
			goto torn;
		if ((k == E_D || k == E_M) && n >= 12)
			set_origin(&e, dec(tok[9]), tok[10], tok[11]);
		if (k == E_DL)
			set_origin(&e, dec(tok[8]), tok[9], tok[10]);
		break;
	default:
		break;
	}
	if (h->nev == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 65536;
		h->ev = realloc(h->ev, h->cap * sizeof(*h->ev));
		ck_assert_ptr_nonnull(h->ev);
	}
	e.line = strdup(text);
	h->ev[h->nev++] = e;
	free(copy);
	return;
torn:
	h->torn++;
	free(copy);
}

/* Parse every complete line of DIR/name.log (a torn tail is skipped). */
static void
parse_log(struct hist_state *h, const char *name)
{
	char path[400];
	char *buf = NULL, *p, *nl;
	size_t len = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", d.dir, name);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "open %s", path);
	{
		char tmp[65536];
		size_t r;

		while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0) {
			buf = realloc(buf, len + r + 1);
			ck_assert_ptr_nonnull(buf);
			memcpy(buf + len, tmp, r);
			len += r;
		}
	}
	fclose(f);
	h->srcs = realloc(h->srcs, (size_t)(h->nsrcs + 1) * sizeof(char *));
	ck_assert_ptr_nonnull(h->srcs);
	h->srcs[h->nsrcs] = strdup(name);
	*strrchr(h->srcs[h->nsrcs], '.') = '\0';
	if (!buf)
		goto out;
	buf[len] = '\0';
	for (p = buf; (nl = memchr(p, '\n', len - (size_t)(p - buf)));
	    p = nl + 1) {
		*nl = '\0';
		if (memchr(p, '\0', (size_t)(nl - p)))
			h->torn++;	/* NULs from a torn write */
		else
			parse_line(h, h->nsrcs, p);
	}
	if (p < buf + len)
		h->torn++;		/* no newline: torn by a SIGKILL */
out:
	h->nsrcs++;
	free(buf);
}

static int
ev_cmp(const void *a, const void *b)
{
	const struct hev *x = a, *y = b;

	if (x->msg != y->msg)
		return x->msg < y->msg ? -1 : 1;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return x->src - y->src;
}

__attribute__((format(printf, 3, 4)))
static void
violation(struct hist_state *h, int msg, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	h->viol = realloc(h->viol, (size_t)(h->nviol + 1) * sizeof(char *));
	h->viol_msg = realloc(h->viol_msg, (size_t)(h->nviol + 1) *
	    sizeof(int));
	ck_assert_ptr_nonnull(h->viol);
	ck_assert_ptr_nonnull(h->viol_msg);
	h->viol[h->nviol] = strdup(buf);
	h->viol_msg[h->nviol++] = msg;
	if (msg >= 0)
		h->msgs[msg].nviol++;
}

static const char *
src_name(const struct hist_state *h, const struct hev *e)
{
	return h->srcs[e->src];
}

/* Same delivery: same process, connection and lease. */
static int
same_delivery(const struct hev *a, const struct hev *b)
{
	return a->src == b->src && a->conn == b->conn && a->lease == b->lease;
}

/* Delivery x began before delivery y was made (see rule 2). */
static int
began_before(const struct hev *x, const struct hev *y)
{
	return x->epoch < y->epoch ||
	    (x->epoch == y->epoch && x->att < y->att);
}

/*
 * Rules 2 and 3 over the deliveries (kind dk) and confirmed acks (kind
 * ak) of one message in one queue (the group, or the dead-letter topic).
 */
static void
check_queue(struct hist_state *h, int mi, int dk, int ak, const char *q)
{
	const struct hmsg *m = &h->msgs[mi];
	struct hev *ev = h->ev + m->first;

	for (size_t i = 0; i < m->n; i++) {
		const struct hev *a = &ev[i], *acked = NULL;

		/* Rule 3: one delivery per (incarnation, attempt). */
		if (a->kind == dk)
			for (size_t j = i + 1; j < m->n; j++)
				if (ev[j].kind == dk &&
				    ev[j].epoch == a->epoch &&
				    ev[j].att == a->att)
					violation(h, mi, "rule 3 (enqueued "
					    "once): %s: two deliveries with "
					    "attempt %u in ferryd incarnation "
					    "%d (%s and %s): the id was "
					    "enqueued twice, or one attempt "
					    "was delivered twice", q, a->att,
					    a->epoch, src_name(h, a),
					    src_name(h, &ev[j]));
		if (a->kind != ak)
			continue;
		for (size_t j = 0; j < m->n && !acked; j++)
			if (ev[j].kind == dk && same_delivery(&ev[j], a))
				acked = &ev[j];
		if (!acked) {
			violation(h, mi, "%s: confirmed ack by %s of a "
			    "delivery it never logged (lease %llu)", q,
			    src_name(h, a), (unsigned long long)a->lease);
			continue;
		}
		/* Rule 2: nothing delivered after a confirmed ack. */
		for (size_t j = 0; j < m->n; j++) {
			const struct hev *x = &ev[j];

			if (x->kind != dk || x == acked)
				continue;
			if (x->t > a->t && !began_before(x, acked))
				violation(h, mi, "rule 2 (no delivery after "
				    "a confirmed ack): %s: delivered to %s "
				    "(incarnation %d, attempt %u) at +%.1f "
				    "ms, after %s's ack of incarnation %d "
				    "attempt %u was confirmed at +%.1f ms",
				    q, src_name(h, x), x->epoch, x->att,
				    (double)(x->t - h->t0) / 1000,
				    src_name(h, a), acked->epoch, acked->att,
				    (double)(a->t - h->t0) / 1000);
			else if (x->epoch == acked->epoch &&
			    x->att > acked->att)
				violation(h, mi, "rule 2 (no delivery after "
				    "a confirmed ack): %s: %s's ack of "
				    "attempt %u was confirmed although "
				    "attempt %u (to %s) had superseded its "
				    "lease in the same incarnation %d", q,
				    src_name(h, a), acked->att, x->att,
				    src_name(h, x), x->epoch);
		}
	}
}

/* Rule 4 for one DL line: headers and history of a dead letter. */
static void
check_dead_letter(struct hist_state *h, int mi, const struct hev *e,
    int poison)
{
	const struct hmsg *m = &h->msgs[mi];
	char *copy = strdup(e->line), *tok[128], **tk = tok + 3;
	int n = split(copy, tok, 128) - 3, nh, counted = 0;
	uint64_t prev_at = 0;
	const char *last = "";

	/* t DL key att epoch conn lease name id pid seq, then (from tk[8])
	 * topic group attempts reason poison producer nhist (cause at by
	 * e)* */
	nh = n >= 15 ? atoi(tk[14]) : -1;
	if (nh < 0 || n != 15 + 4 * nh) {
		violation(h, mi, "rule 4 (dead letters): %s: history of %d "
		    "entries does not parse (%d tokens)", src_name(h, e), nh,
		    n + 3);
		goto out;
	}
	for (int i = 8; i < n; i++)
		dec(tk[i]);
	if (strcmp(tk[8], TOPIC) || strcmp(tk[9], GROUP))
		violation(h, mi, "rule 4 (dead letters): dlq-topic '%s' "
		    "dlq-group '%s', expected %s and %s", tk[8], tk[9],
		    TOPIC, GROUP);
	if (strcmp(tk[12], poison ? "1" : ""))
		violation(h, mi, "rule 4 (dead letters): header poison='%s' "
		    "was not kept (expected '%s')", tk[12],
		    poison ? "1" : "");
	if (strncmp(m->id, tk[13], strlen(tk[13])) || tk[13][0] != 'p' ||
	    m->id[strlen(tk[13])] != '-')
		violation(h, mi, "rule 4 (dead letters): header producer="
		    "'%s' was not kept", tk[13]);
	for (int i = 0; i < nh; i++) {
		const char *cause = tk[15 + 4 * i], *by = tk[17 + 4 * i];
		const char *err = tk[18 + 4 * i];
		uint64_t at = strtoull(tk[16 + 4 * i], NULL, 10);
		int found = 0;

		last = cause;
		if (!strcmp(cause, "timeout") ||
		    !strcmp(cause, "disconnected")) {
			counted++;
			if (*err)
				violation(h, mi, "rule 4 (dead letters): "
				    "history entry %d (%s) has error text "
				    "'%s'", i, cause, err);
		} else if (!strcmp(cause, "nacked")) {
			counted++;
			for (size_t j = 0; j < m->n && !found; j++) {
				const struct hev *x = &h->ev[m->first + j];

				found = x->kind == E_NS &&
				    !strcmp(src_name(h, x), by) &&
				    !strcmp(x->text, err);
			}
			if (!found)
				violation(h, mi, "rule 4 (dead letters): "
				    "history entry %d: nacked by %s with "
				    "error '%s', but %s sent no such nack",
				    i, by, err, by);
		} else {
			/* No TTL, no UNSUB: nothing else can happen. */
			violation(h, mi, "rule 4 (dead letters): history "
			    "entry %d has unexpected cause '%s'", i, cause);
		}
		if (!has_name(h, by))
			violation(h, mi, "rule 4 (dead letters): history "
			    "entry %d names consumer '%s', which never "
			    "connected", i, by);
		if (at + 2000 < h->wall0 || at > h->wall1 + 2000 ||
		    at < prev_at)
			violation(h, mi, "rule 4 (dead letters): history "
			    "entry %d time %llu is outside the run [%llu, "
			    "%llu] or before the previous entry", i,
			    (unsigned long long)at,
			    (unsigned long long)h->wall0,
			    (unsigned long long)h->wall1);
		prev_at = at;
	}
	if (counted < MAX_ATTEMPTS)
		violation(h, mi, "rule 4 (dead letters): %d counted failures "
		    "in its history, fewer than max_attempts %d", counted,
		    MAX_ATTEMPTS);
	if (atoi(tk[10]) != counted || !*tk[10])
		violation(h, mi, "rule 4 (dead letters): dlq-attempts '%s', "
		    "but its history counts %d failures", tk[10], counted);
	if (strcmp(tk[11], last))
		violation(h, mi, "rule 4 (dead letters): dlq-reason '%s', "
		    "but the last failure in its history is '%s'", tk[11],
		    last);
out:
	free(copy);
}

static int
origin_cmp(const void *a, const void *b)
{
	const struct hev *x = *(const struct hev *const *)a;
	const struct hev *y = *(const struct hev *const *)b;
	int r;

	if ((r = strcmp(x->pid, y->pid)))
		return r;
	if (x->pseq != y->pseq)
		return x->pseq < y->pseq ? -1 : 1;
	if ((r = strcmp(x->mid, y->mid)))
		return r;
	return x->t < y->t ? -1 : x->t > y->t;
}

static const char *
origin_what(const struct hev *e)
{
	return e->kind == E_PC ? "confirmed to" : e->kind == E_DL ?
	    "dead-lettered to" : e->kind == E_M ? "delivered at most once to" :
	    "delivered to";
}

/*
 * Rule 5 over the whole history: every delivery (D, M, DL) and confirm
 * (PC) that names an id and carries (pid, seq) names the same id for the
 * same (pid, seq).  One violation per (pid, seq), with the first evidence
 * of two of its ids.  Returns how many (pid, seq) it saw.
 */
static long
check_origins(struct hist_state *h)
{
	const struct hev **o = calloc(h->nev + 1, sizeof(*o));
	size_t n = 0;
	long seen = 0;

	ck_assert_ptr_nonnull(o);
	for (size_t i = 0; i < h->nev; i++) {
		const struct hev *e = &h->ev[i];

		if (e->pid && e->mid && (e->kind == E_D || e->kind == E_M ||
		    e->kind == E_DL || e->kind == E_PC))
			o[n++] = e;
	}
	qsort(o, n, sizeof(*o), origin_cmp);
	for (size_t i = 0, j; i < n; i = j) {
		const struct hev *a = o[i];

		for (j = i + 1; j < n && !strcmp(o[j]->pid, a->pid) &&
		    o[j]->pseq == a->pseq; j++)
			;
		seen++;
		for (size_t k = i + 1; k < j; k++) {
			const struct hev *b = o[k];

			if (!strcmp(b->mid, a->mid))
				continue;
			violation(h, b->msg, "rule 5 (one id per (pid, "
			    "seq)): pid %s seq %llu %s %s as id %s "
			    "(incarnation %d, +%.1f ms), but %s %s as id %s "
			    "(incarnation %d, +%.1f ms)", a->pid,
			    (unsigned long long)a->pseq, origin_what(a),
			    src_name(h, a), a->mid, a->epoch,
			    (double)(a->t - h->t0) / 1000, origin_what(b),
			    src_name(h, b), b->mid, b->epoch,
			    (double)(b->t - h->t0) / 1000);
			break;
		}
	}
	free(o);
	return seen;
}

struct counts {
	long published, confirmed, pub_attempts, pub_failed, dup_retries;
	long delivered, redelivered, acked, acks_confirmed, acks_refused;
	long nacks, stalls, drops, dead_letters, dlq_deliveries, restarts;
	long ckills, torn, retries, retry_dups;
	long amo_delivered, amo_missed, amo_kills, idem, idless;
	long idem_retries, idem_retry_dups, origins;
};

/*
 * The checker.  Per message id, over the merged history:
 *  1. a confirmed publish was delivered at least once (to a worker, the
 *     drain, or it is in the dead-letter topic), and ended settled: an
 *     ack of it was attempted (logged before it is sent, so a consumer
 *     killed in between still counts) or it was dead-lettered; and after
 *     the drain the group and the dead-letter topic hold nothing;
 *  2. no delivery after a confirmed ack.  Window: a delivery x of the id
 *     logged after the consumer that acked delivery y received the OK is
 *     a violation unless x provably began before y was made: x came from
 *     an earlier ferryd incarnation than y, or from the same one with a
 *     lower attempt (within an incarnation attempts only grow, except by
 *     UNSUB, which no one sends here).  Such a late x is a delivery
 *     buffered in a stalled or slow consumer.  Regardless of time, a
 *     delivery of the same incarnation with a higher attempt than y means
 *     y's lease was superseded, so its ack must have been refused.  And a
 *     message with a confirmed ack is never dead-lettered;
 *  3. the id was enqueued once: no two deliveries share (incarnation,
 *     attempt) (a crash puts in-flight messages back without counting an
 *     attempt, so an attempt may repeat only across a restart), no
 *     delivery has an attempt above max_attempts, a deliberate repeat of
 *     a confirmed id is confirmed as a duplicate of that id, and no id is
 *     delivered that no one published;
 *  4. a dead letter carries dlq-topic, dlq-group, dlq-attempts (= the
 *     counted failures in its history, >= max_attempts), dlq-reason (=
 *     the last cause), the original headers, and a history whose entries
 *     have a known cause, a consumer that connected, a time within the
 *     run, and for nacks the exact error text that consumer sent;
 *  5. one id per (pid, seq): every delivery of an idempotent producer's
 *     message (any group, the dead-letter topic, any incarnation) and
 *     every id a confirm returned for it, map its (pid, seq) to one id.
 *     A message published without an id must keep the id the broker
 *     derived for it when its producer retries after a crash; two ids
 *     mean the broker enqueued one publish twice, and a consumer that
 *     skips repeats by id would process it twice (checked over the
 *     whole history by check_origins(), not per message);
 *  6. at most once: no message is delivered twice to the at-most-once
 *     group AMO_GROUP (to its readers or the drain), across every kill
 *     of ferryd or of a reader: a delivery there is settled once sent,
 *     journaled before it leaves, and may be lost but never repeated.
 * A "message" is the producer's name for it, "p<i>-<n>": its id, or its
 * header key for one published without an id (mkey()).
 * Plus: every body matches its name, and every consumer's log is
 * complete.
 */
static void
check_history(struct hist_state *h, struct counts *c)
{
	for (size_t i = 0, j; i < h->nev; i = j) {
		int mi = h->ev[i].msg;

		for (j = i; j < h->nev && h->ev[j].msg == mi; j++)
			;
		if (mi >= 0) {
			h->msgs[mi].first = i;
			h->msgs[mi].n = j - i;
		}
	}
	for (size_t mi = 0; mi < h->nmsgs; mi++) {
		const struct hmsg *m = &h->msgs[mi];
		const struct hev *ev = h->ev + m->first;
		int pi = 0, pc = 0, dl = 0, dlv = 0, ac = 0, ai = 0, amo = 0;
		int poison = 0, idless = 0, idem = 0;
		const struct hev *m1 = NULL;

		for (size_t k = 0; k < m->n; k++) {
			idless |= ev[k].kind == E_PI && ev[k].idless;
			idem |= ev[k].kind == E_PI && ev[k].pid;
		}
		for (size_t k = 0; k < m->n; k++) {
			const struct hev *e = &ev[k];

			switch (e->kind) {
			case E_PI:
				pi++;
				c->pub_attempts++;
				poison |= e->v == 1;
				break;
			case E_PC:
				pc++;
				/* Without an id: the broker's, which a
				 * duplicate it no longer knows lacks. */
				if (idless && !*e->text && !e->v)
					violation(h, (int)mi, "rule 3: "
					    "stored, but confirmed without "
					    "an id");
				else if (!idless && strcmp(e->text, m->id))
					violation(h, (int)mi, "rule 3: "
					    "publish confirmed with id '%s'",
					    e->text);
				if (e->pid && !strcmp(e->kindstr, "retry")) {
					c->idem_retries++;
					c->idem_retry_dups += e->v == 1;
				}
				if (!strcmp(e->kindstr, "first") && e->v != 0)
					violation(h, (int)mi, "rule 1 (no "
					    "loss): the first publish of the "
					    "id was taken for a duplicate "
					    "(dups %ld): it is not enqueued",
					    e->v);
				if (!strcmp(e->kindstr, "retry")) {
					c->retries++;
					c->retry_dups += e->v == 1;
				}
				if (!strcmp(e->kindstr, "dup")) {
					c->dup_retries++;
					if (e->v != 1)
						violation(h, (int)mi, "rule "
						    "3 (dedup): a repeat of "
						    "a confirmed id was "
						    "confirmed with dups %ld,"
						    " not as a duplicate",
						    e->v);
				}
				break;
			case E_PF:
				c->pub_failed++;
				if (FERRY_IS_BROKER_ERROR(e->v) &&
				    !ferry_retryable((int)e->v))
					violation(h, (int)mi, "publish "
					    "refused: %s", e->line);
				break;
			case E_D:
				dlv++;
				c->delivered++;
				if (e->att > 1)
					c->redelivered++;
				if (e->att < 1 || e->att > MAX_ATTEMPTS)
					violation(h, (int)mi, "rule 3: "
					    "delivered with attempt %u "
					    "(max_attempts %d)", e->att,
					    MAX_ATTEMPTS);
				break;
			case E_AI:
				ai++;
				c->acked++;
				break;
			case E_AC:
				ac++;
				c->acks_confirmed++;
				break;
			case E_AR:
				c->acks_refused++;
				/* fall through */
			case E_NR:
			case E_QR:
				if (e->v != FERRY_ESTALE)
					violation(h, (int)mi, "settle refused "
					    "other than as stale: %s",
					    e->line);
				break;
			case E_NS:
				c->nacks++;
				break;
			case E_STALL:
				c->stalls++;
				break;
			case E_DROP:
				c->drops++;
				break;
			case E_DL:
				dl++;
				c->dlq_deliveries++;
				break;
			case E_BAD:
				violation(h, (int)mi, "bad delivery: %s",
				    e->line);
				break;
			case E_M:
				c->amo_delivered++;
				/* Rule 6: at most once. */
				if (++amo == 1)
					m1 = e;
				else
					violation(h, (int)mi, "rule 6 (at "
					    "most once): delivered again to "
					    "group " AMO_GROUP ": to %s in "
					    "incarnation %d as id %s at +%.1f "
					    "ms, after %s had it in "
					    "incarnation %d as id %s at +%.1f "
					    "ms", src_name(h, e), e->epoch,
					    e->mid ? e->mid : "?",
					    (double)(e->t - h->t0) / 1000,
					    src_name(h, m1), m1->epoch,
					    m1->mid ? m1->mid : "?",
					    (double)(m1->t - h->t0) / 1000);
				break;
			}
		}
		if (pi)
			c->published++;
		if (pi && idem)
			c->idem++;
		if (pi && idless)
			c->idless++;
		if (pc && !amo)
			c->amo_missed++;
		if (pc)
			c->confirmed++;
		if (dl)
			c->dead_letters++;
		if (!pi && (dlv || dl || amo))
			violation(h, (int)mi, "rule 3: delivered, but never "
			    "published");
		if (pc && !dlv && !dl)
			violation(h, (int)mi, "rule 1 (no loss): confirmed, "
			    "never delivered nor dead-lettered");
		else if (pc && !ai && !dl)
			violation(h, (int)mi, "rule 1 (no loss): confirmed "
			    "and delivered %d times, but no ack was ever sent "
			    "and it was not dead-lettered", dlv);
		if (ac && dl)
			violation(h, (int)mi, "rule 2 (no delivery after a "
			    "confirmed ack): dead-lettered although an ack "
			    "of it was confirmed");
		check_queue(h, (int)mi, E_D, E_AC, "group " GROUP);
		check_queue(h, (int)mi, E_DL, E_QA, DLQ_TOPIC);
		for (size_t k = 0; k < m->n; k++)
			if (ev[k].kind == E_DL)
				check_dead_letter(h, (int)mi, &ev[k], poison);
	}
	for (size_t i = 0; i < h->nev; i++) {
		const char *l = strchr(h->ev[i].line, ' ');

		if (h->ev[i].msg >= 0 || !l)
			continue;
		if (!strncmp(l, " UP ", 4))
			c->restarts++;
		else if (!strncmp(l, " CKILL c", 8))
			c->ckills++;
		else if (!strncmp(l, " CKILL a", 8))
			c->amo_kills++;
		else if (!strncmp(l, " GIVEUP", 7) ||
		    !strncmp(l, " CEXIT", 6))
			violation(h, -1, "a process gave up or died on its "
			    "own: %s: %s", src_name(h, &h->ev[i]), l + 1);
	}
	c->origins = check_origins(h);
	c->restarts--;		/* the first UP is the start */
	c->torn = h->torn;
}

/* Print the merged history of message mi, with ferryd kills and starts. */
static void
print_history(const struct hist_state *h, int mi)
{
	const struct hmsg *m = &h->msgs[mi];
	uint64_t lo, hi;

	if (m->n == 0)
		return;
	lo = h->ev[m->first].t;
	hi = h->ev[m->first + m->n - 1].t;
	fprintf(stderr, "--- history of %s (times in ms since the start; "
	    "restarts and consumer kills in between) ---\n", m->id);
	for (size_t i = 0; i < h->nev; i++) {
		const struct hev *e = &h->ev[i];
		const char *rest = strchr(e->line, ' ');

		if (e->msg != mi && !(e->msg < 0 && e->t >= lo &&
		    e->t <= hi && rest && (!strncmp(rest, " UP ", 4) ||
		    !strncmp(rest, " KILL ", 6) ||
		    !strncmp(rest, " CKILL ", 7))))
			continue;
		fprintf(stderr, "  %10.1f %-7s%s\n",
		    (double)(e->t - h->t0) / 1000, h->srcs[e->src],
		    rest ? rest : "");
	}
}

/* The broker's own trace of id (what its ring still holds). */
static void
print_trace(struct ferry *f, const char *id)
{
	struct ferry_event *ev;
	size_t n;

	if (ferry_trace(f, id, &ev, &n) != 0) {
		fprintf(stderr, "  (ferryd has no trace of %s: %s)\n", id,
		    ferry_errstr(f));
		return;
	}
	fprintf(stderr, "--- ferryd's trace of %s (since its last start) "
	    "---\n", id);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "  %llu %s %s/%s by %s att %u %s\n",
		    (unsigned long long)ev[i].at_ms, ev[i].what, ev[i].topic,
		    ev[i].group, ev[i].consumer, ev[i].attempt, ev[i].error);
	ferry_trace_free(ev);
}

/* Group and dead-letter topic hold nothing after the drain. */
static void
check_empty(struct hist_state *h, struct ferry *f)
{
	const char *topics[] = {TOPIC, DLQ_TOPIC};

	for (int t = 0; t < 2; t++) {
		struct ferry_group_stats *rows;
		size_t n;

		ck_assert_int_eq(ferry_stats(f, topics[t], &rows, &n), 0);
		for (size_t i = 0; i < n; i++)
			if (rows[i].ready || rows[i].delayed ||
			    rows[i].inflight)
				violation(h, -1, "rule 1: after the drain, "
				    "%s group '%s' still holds %llu ready, "
				    "%llu delayed, %llu in flight",
				    rows[i].topic, rows[i].group,
				    (unsigned long long)rows[i].ready,
				    (unsigned long long)rows[i].delayed,
				    (unsigned long long)rows[i].inflight);
		ferry_stats_free(rows);
	}
}

static void
hist_free(struct hist_state *h)
{
	for (size_t i = 0; i < h->nev; i++) {
		free(h->ev[i].kindstr);
		free(h->ev[i].text);
		free(h->ev[i].mid);
		free(h->ev[i].pid);
		free(h->ev[i].line);
	}
	for (int i = 0; i < h->nsrcs; i++)
		free(h->srcs[i]);
	for (int i = 0; i < h->nnames; i++)
		free(h->names[i]);
	for (int i = 0; i < h->nviol; i++)
		free(h->viol[i]);
	free(h->ev);
	free(h->msgs);
	free(h->slots);
	free(h->srcs);
	free(h->names);
	free(h->viol);
	free(h->viol_msg);
}

static int
log_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Parse every *.log of the run's directory. */
static void
parse_all(struct hist_state *h)
{
	char cmd[400], line[256], *names[256];
	int n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "cd '%s' && ls -1 *.log", d.dir);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (n < 256 && fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line, "ferryd.log"))
			names[n++] = strdup(line);
	}
	pclose(p);
	qsort(names, (size_t)n, sizeof(char *), log_name_cmp);
	for (int i = 0; i < n; i++) {
		parse_log(h, names[i]);
		free(names[i]);
	}
	qsort(h->ev, h->nev, sizeof(*h->ev), ev_cmp);
}

/* Parse the logs of d.dir and check them. */
static void
check_dir(struct hist_state *h, struct counts *c)
{
	memset(h, 0, sizeof(*h));
	memset(c, 0, sizeof(*c));
	h->nslots = 1 << 16;
	h->slots = calloc(h->nslots, sizeof(int));
	ck_assert_ptr_nonnull(h->slots);
	parse_all(h);
	check_history(h, c);
}

START_TEST(history_random)
{
	struct hist_state h;
	struct counts c;
	struct run run = {0};
	double scale = 1;
	const char *s = getenv("FERRY_HISTORY_SCALE");
	struct ferry *f;
	uint64_t t0 = now_ms();
	int shown = 0, keep;

	seed = history_seed();
	rng_seed(1);
	/* Keep the directory unless the run passes (teardown removes it
	 * then), so that a failure anywhere leaves its logs behind. */
	keep = getenv("FERRY_KEEP_TEST_DIRS") != NULL;
	setenv("FERRY_KEEP_TEST_DIRS", "1", 1);
	if (sanitized())
		scale = 0.4;
	if (s && *s)
		scale = strtod(s, NULL);
	run.per_prod = (int)(4500 * scale / NPROD);
	if (run.per_prod < 20)
		run.per_prod = 20;
	if (run.per_prod > MAX_PER_PROD)
		run.per_prod = MAX_PER_PROD;
	log_open("parent");
	hlog("START %llu %llu", (unsigned long long)seed,
	    (unsigned long long)wall_ms());
	fprintf(stderr, "history: %d producers x %d messages (%d of them "
	    "idempotent), %d workers, %d at-most-once readers, %s, logs in "
	    "%s\n", NPROD, run.per_prod, NPROD - NPLAIN, NCONS, NAMO,
	    sanitized() ? "sanitized build" : "plain build", d.dir);

	run_chaos(&run);
	run_drain();
	ferryd_alive();
	hlog("END %llu", (unsigned long long)wall_ms());

	check_dir(&h, &c);
	f = ferry_connect("127.0.0.1", d.port, 5000, "checker");
	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	check_empty(&h, f);

	fprintf(stderr, "history summary (seed %llu, %llu ms): published %ld "
	    "ids (%ld publish calls, %ld failed, %ld confirmed retries of "
	    "which %ld were duplicates, %ld deliberate repeats), "
	    "confirmed %ld, delivered %ld (redelivered %ld), acked %ld "
	    "(confirmed acks %ld, refused %ld), nacks %ld, stalls %ld, "
	    "unsettled %ld, dead letters %ld (%ld dlq deliveries), ferryd "
	    "restarts %ld, worker kills %ld, torn log lines %ld; "
	    "idempotent: %ld ids (%ld without an id, %ld (pid, seq) "
	    "delivered or confirmed), %ld confirmed retries of which %ld "
	    "were duplicates; at most once: %ld deliveries, %ld confirmed "
	    "ids never delivered there, %ld reader kills\n",
	    (unsigned long long)seed, (unsigned long long)(now_ms() - t0),
	    c.published, c.pub_attempts, c.pub_failed, c.retries,
	    c.retry_dups, c.dup_retries,
	    c.confirmed, c.delivered, c.redelivered, c.acked,
	    c.acks_confirmed, c.acks_refused, c.nacks, c.stalls, c.drops,
	    c.dead_letters, c.dlq_deliveries, c.restarts, c.ckills, c.torn,
	    c.idem, c.idless, c.origins, c.idem_retries, c.idem_retry_dups,
	    c.amo_delivered, c.amo_missed, c.amo_kills);
	for (int i = 0; i < h.nviol; i++) {
		int mi = h.viol_msg[i];

		if (i == 40) {
			fprintf(stderr, "... and %d more violations\n",
			    h.nviol - i);
			break;
		}
		fprintf(stderr, "VIOLATION%s%s: %s (seed %llu)\n",
		    mi >= 0 ? " for message " : "", mi >= 0 ?
		    h.msgs[mi].id : "", h.viol[i], (unsigned long long)seed);
		if (mi >= 0 && shown < 5 && (i == 0 || h.viol_msg[i - 1] !=
		    mi)) {
			print_history(&h, mi);
			print_trace(f, h.msgs[mi].id);
			shown++;
		}
	}
	ferry_close(f);
	if (h.nviol)
		fprintf(stderr, "history logs kept in %s\n", d.dir);
	ck_assert_msg(h.nviol == 0, "%d history violations (seed %llu; "
	    "FERRY_HISTORY_SEED=%llu repeats the schedule)", h.nviol,
	    (unsigned long long)seed, (unsigned long long)seed);
	/* The run must have tested something. */
	ck_assert_int_ge(c.restarts, 3);
	ck_assert_int_ge(c.confirmed, NPROD * run.per_prod * 9 / 10);
	ck_assert_int_gt(c.idless, 0);
	ck_assert_int_ge(c.origins, c.idem / 2);
	ck_assert_int_ge(c.amo_delivered, c.confirmed / 2);
	if (run.per_prod >= 300) {
		ck_assert_int_gt(c.dead_letters, 0);
		ck_assert_int_gt(c.acks_refused, 0);
		ck_assert_int_gt(c.retry_dups, 0);
	}
	ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)", d.log);
	hist_free(&h);
	if (!keep)
		unsetenv("FERRY_KEEP_TEST_DIRS");
}
END_TEST

/* ---- the checker on made-up histories ---- */

/*
 * Each case is "file|line" entries (a line starting with '!' is written
 * without its newline, as a SIGKILL would leave it) and the number of
 * violations the checker must find.  START and END come first and last.
 */
#define OK1 \
	"prod0|2000 CONN 1 1 prod0", \
	"prod0|2001 PI p0-00001 first 0", \
	"prod0|2002 PC p0-00001 first 0 p0-00001 1", \
	"c0.0|2003 CONN 1 1 c0.0", \
	"c1.0|2004 CONN 1 1 c1.0"
#define ACKED1 \
	"c0.0|2010 D p0-00001 1 1 1 7 c0.0 0", \
	"c0.0|2011 AI p0-00001 1 1 1 7 1", \
	"c0.0|2012 AC p0-00001 1 1 1 7"
#define RESTART \
	"parent|2500 KILL 1", "parent|2600 UP 2 2", \
	"c1.0|2700 CONN 2 2 c1.0"
#define DEAD(hist) \
	"dlq|2005 CONN 1 1 dlq", \
	"c0.0|2010 D p0-00001 4 1 1 7 c0.0 0", \
	"dlq|5000 DL p0-00001 1 1 1 3 dlq p0-00001 ~ ~ hist.jobs workers " \
	    hist, \
	"dlq|5001 QA p0-00001 1 1 1 3"
#define T1 " 1700000001000 c0.0 ~"
/* An idempotent producer's message without an id: the broker's is u-1. */
#define IDLESS \
	"prod2|2000 CONN 1 1 prod2", \
	"prod2|2001 PI p2-00001 first 0 hist-p2 1 1", \
	"c0.0|2003 CONN 1 1 c0.0", \
	"c1.0|2004 CONN 1 1 c1.0"
#define IDLESS_PC(kind, dups, id, epoch) \
	"prod2|2002 PC p2-00001 " kind " " dups " " id " " epoch " hist-p2 1"
#define IDLESS_D(id) \
	"c0.0|2010 D p2-00001 1 1 1 7 c0.0 0 " id " hist-p2 1", \
	"c0.0|2011 AI p2-00001 1 1 1 7 0"
#define RETRY(dups, id) \
	"prod2|2800 PI p2-00001 retry 0 hist-p2 1 1", \
	"prod2|2801 PC p2-00001 retry " dups " " id " 2 hist-p2 1"
/* At-most-once deliveries of p0-00001 to a0.0 in incarnations 1 and 2. */
#define AMO1 \
	"a0.0|2005 CONN 1 1 a0.0", \
	"a0.0|2020 M p0-00001 1 1 1 0 a0.0 0 p0-00001 ~ ~"
#define AMO2 \
	"a0.0|2700 CONN 2 2 a0.0", \
	"a0.0|2800 M p0-00001 1 2 2 0 a0.0 0 p0-00001 ~ ~"

static const struct {
	const char *lines[16];
	int violations;
} cases[] = {
	{{OK1, ACKED1}, 0},
	/* rule 1: confirmed, never delivered; delivered, never acked */
	{{OK1}, 1},
	{{OK1, "c0.0|2010 D p0-00001 1 1 1 7 c0.0 0"}, 1},
	/* rule 2: delivered again by the next incarnation */
	{{OK1, ACKED1, RESTART, "c1.0|2800 D p0-00001 1 2 2 3 c1.0 0",
	    "c1.0|2801 AI p0-00001 1 2 2 3 0"}, 1},
	/* ... but a late delivery begun earlier (lower attempt) is fine */
	{{OK1, "c0.0|2010 D p0-00001 2 1 1 7 c0.0 0",
	    "c0.0|2011 AI p0-00001 2 1 1 7 1",
	    "c0.0|2012 AC p0-00001 2 1 1 7",
	    "c1.0|2900 D p0-00001 1 1 1 3 c1.0 0"}, 0},
	/* rule 2: an ack confirmed although a later attempt existed */
	{{OK1, "c1.0|2005 D p0-00001 2 1 1 3 c1.0 0",
	    "c1.0|2006 AI p0-00001 2 1 1 3 1", ACKED1}, 1},
	/* rule 3: attempt 1 twice in one incarnation; fine across one */
	{{OK1, ACKED1, "c1.0|2005 D p0-00001 1 1 1 3 c1.0 0",
	    "c1.0|2006 AI p0-00001 1 1 1 3 0"}, 1},
	{{OK1, "c0.0|2010 D p0-00001 1 1 1 7 c0.0 0", RESTART,
	    "c1.0|2800 D p0-00001 1 2 2 3 c1.0 0",
	    "c1.0|2801 AI p0-00001 1 2 2 3 0"}, 0},
	/* rule 3: a repeat not recognised; a fresh id taken for one */
	{{OK1, ACKED1, "prod0|3000 PI p0-00001 dup 0",
	    "prod0|3001 PC p0-00001 dup 0 p0-00001 1"}, 1},
	{{OK1, ACKED1, "prod0|3000 PI p0-00002 first 0",
	    "prod0|3001 PC p0-00002 first 1 p0-00002 1",
	    "c0.0|3010 D p0-00002 1 1 1 8 c0.0 0",
	    "c0.0|3011 AI p0-00002 1 1 1 8 0"}, 1},
	/* rule 4: a good dead letter, a short history, a forged nack */
	{{OK1, DEAD("4 timeout ~ p0 4 timeout" T1 " timeout" T1
	    " disconnected" T1 " timeout" T1)}, 0},
	{{OK1, DEAD("4 timeout ~ p0 3 timeout" T1 " timeout" T1
	    " timeout" T1)}, 2},
	{{OK1, DEAD("4 nacked ~ p0 4 timeout" T1 " timeout" T1
	    " disconnected" T1 " nacked 1700000001000 c0.0 boom")}, 1},
	/* a line torn by a SIGKILL is skipped */
	{{OK1, ACKED1, "!c0.0|2013 AC p0-000"}, 0},
	/* rule 6: at most once, across a restart; once is fine, and a
	 * message the at-most-once group never got is no violation */
	{{OK1, ACKED1, AMO1, RESTART, AMO2}, 1},
	{{OK1, ACKED1, RESTART, AMO2}, 0},
	{{OK1, ACKED1}, 0},
	/* rule 3: an at-most-once delivery of an id never published */
	{{OK1, ACKED1, "a0.0|2005 CONN 1 1 a0.0",
	    "a0.0|2020 M p0-00009 1 1 1 0 a0.0 0 p0-00009 ~ ~"}, 1},
	/* rule 5: without an id, the derived id kept by a retry after a
	 * restart; the phantom: stored again under a new id */
	{{IDLESS, IDLESS_PC("first", "0", "u-1", "1"), IDLESS_D("u-1"),
	    RESTART, RETRY("1", "u-1")}, 0},
	{{IDLESS, IDLESS_PC("first", "0", "u-1", "1"), IDLESS_D("u-1"),
	    RESTART, RETRY("0", "u-2"),
	    "c1.0|2810 D p2-00001 1 2 2 3 c1.0 0 u-2 hist-p2 1",
	    "c1.0|2811 AI p2-00001 1 2 2 3 0"}, 1},
	/* rule 5: confirmed under one id, delivered under another; a
	 * dead letter under another; a duplicate whose id is forgotten */
	{{IDLESS, IDLESS_PC("first", "0", "u-1", "1"), IDLESS_D("u-2")}, 1},
	{{IDLESS, IDLESS_PC("first", "0", "u-1", "1"), "dlq|2005 CONN 1 1 dlq",
	    "c0.0|2010 D p2-00001 4 1 1 7 c0.0 0 u-1 hist-p2 1",
	    "dlq|5000 DL p2-00001 1 1 1 3 dlq u-3 hist-p2 1 hist.jobs "
	    "workers 4 timeout ~ p2 4 timeout" T1 " timeout" T1
	    " disconnected" T1 " timeout" T1,
	    "dlq|5001 QA p2-00001 1 1 1 3"}, 1},
	{{IDLESS, IDLESS_PC("first", "0", "u-1", "1"), IDLESS_D("u-1"),
	    RESTART, RETRY("1", "~")}, 0},
	/* rule 3: stored (not a duplicate), but no id confirmed */
	{{IDLESS, IDLESS_PC("first", "0", "~", "1"), IDLESS_D("u-1")}, 1},
};

static void
selftest_setup(void)
{
	const char *tmp = getenv("TMPDIR");

	memset(&d, 0, sizeof(d));
	snprintf(d.dir, sizeof(d.dir), "%s/ferry-test-XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(d.dir));
}

START_TEST(checker_cases)
{
	const char *head = "parent|1000 START 1 1700000000000";
	const char *tail = "parent|9000 END 1700000100000";
	struct hist_state h;
	struct counts c;

	for (int i = -1; i < 17; i++) {
		const char *l = i < 0 ? head : i == 16 ||
		    !cases[_i].lines[i] ? tail : cases[_i].lines[i];
		const char *bar = strchr(l, '|');
		char path[400];
		FILE *f;

		snprintf(path, sizeof(path), "%s/%.*s.log", d.dir,
		    (int)(bar - l), l);
		f = fopen(path, "a");
		ck_assert_ptr_nonnull(f);
		if (bar[1] == '!')
			fputs(bar + 2, f);
		else
			fprintf(f, "%s\n", bar + 1);
		fclose(f);
		if (l == tail)
			break;
	}
	check_dir(&h, &c);
	for (int i = 0; i < h.nviol; i++)
		fprintf(stderr, "case %d: %s\n", _i, h.viol[i]);
	ck_assert_msg(h.nviol == cases[_i].violations, "case %d: %d "
	    "violations, expected %d", _i, h.nviol, cases[_i].violations);
	hist_free(&h);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("history");
	TCase *tc = tcase_create("history");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, history_random);
	suite_add_tcase(s, tc);
	tc = tcase_create("checker");
	tcase_add_checked_fixture(tc, selftest_setup, teardown);
	tcase_add_loop_test(tc, checker_cases, 0,
	    (int)(sizeof(cases) / sizeof(cases[0])));
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
