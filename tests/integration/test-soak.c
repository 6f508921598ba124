/*
 * test-soak.c - 1,000 concurrent connections against one ferryd for a
 * bounded time, then: nothing confirmed was lost, and ferryd's memory and
 * file descriptors are back where they started.
 *
 * A few worker processes each drive a few hundred non-blocking raw
 * protocol connections from one poll() loop (libferry is blocking, one
 * handle per thread).  The mix, by connection:
 *   25% producers: confirmed publishes, 8 in flight each, paced so that
 *       all producers together stay near a target rate;
 *   35% ackers in each topic's durable group "work" (at-least-once);
 *    5% nackers in "work": nack a first delivery, ack the second;
 *   25% at-most-once listeners on ephemeral groups;
 *    5% at-most-once listeners that never read (output backpressure);
 *    5% members of "work" that never read (their leases run out).
 * Every 40 ms each worker closes a random connection (half of them with a
 * reset) and opens another of the same kind.
 *
 * Producers mark what ferryd confirmed, consumers what they acked, in a
 * shared map indexed by (worker, message number); each body starts with
 * those two numbers.  Afterwards a fresh consumer drains every "work"
 * group and every confirmed message must have been acked by someone.
 *
 * Scale: 1,000 connections, 40 s, 8,000 publishes/s; under
 * AddressSanitizer (built with it, or ASAN_OPTIONS set) 20 s and 3,000/s,
 * and RSS is only printed, since ASan keeps freed memory in quarantine.
 * FERRY_SOAK_SECONDS and FERRY_SOAK_CONNS override the defaults (meson
 * stops the test after 300 s).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUILT_WITH_ASAN 1
#endif
#endif
#ifndef BUILT_WITH_ASAN
#define BUILT_WITH_ASAN 0
#endif

#define NTOPICS 8
#define NWORKERS 4
#define PUB_WINDOW 8		/* confirms outstanding per producer */
#define CHURN_MS 40		/* per worker: one connection closed */
#define WINDDOWN_MS 10000	/* to collect the last confirms */
#define SUB_RID (1ULL << 62)
#define STATS_RID (1ULL << 61)
#define PREFIX_LEN 16		/* "WW:NNNNNNNNNNNN:" */
#define RSS_MARGIN_KB (64 * 1024)

enum role {
	R_PRODUCER, R_ACKER, R_NACKER, R_AMO, R_DEAF_AMO, R_DEAF_ALO,
};

/* Connection i's role, from i % 20. */
static const enum role role_of[20] = {
	R_PRODUCER, R_PRODUCER, R_PRODUCER, R_PRODUCER, R_PRODUCER,
	R_ACKER, R_ACKER, R_ACKER, R_ACKER, R_ACKER, R_ACKER, R_ACKER,
	R_AMO, R_AMO, R_AMO, R_AMO, R_DEAF_AMO, R_AMO, R_DEAF_ALO, R_NACKER,
};

/* Per worker counters, in shared memory; written by that worker only. */
struct wstat {
	uint64_t sent, confirmed, pub_refused;
	uint64_t acked, nacked, amo, stale;
	uint64_t opens, closes, connect_fail, dropped_by_broker;
	uint64_t unexpected;	/* ERR codes nobody should see */
	uint32_t first_code;
	uint64_t maxn;		/* message numbers used: 1..maxn */
	int done;
};

struct shared {
	struct wstat ws[NWORKERS];
	uint64_t nmax;		/* message numbers per worker */
	/* conf, seen: NWORKERS * nmax bytes each, indexed w * nmax + n */
	uint8_t marks[];
};

static struct ferryd d;
static struct fy_dec dec;
static struct shared *sh;
static size_t sh_len;
static pid_t workers[NWORKERS];
static int nconns = 1000, seconds = 40, rate = 8000;
static int asan;

static uint8_t *
conf_mark(int w, uint64_t n)
{
	return &sh->marks[(uint64_t)w * sh->nmax + n];
}

static uint8_t *
seen_mark(int w, uint64_t n)
{
	return &sh->marks[(uint64_t)(NWORKERS + w) * sh->nmax + n];
}

static int
count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	int n = 0;
	DIR *dp;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if (!(dp = opendir(path)))
		return -1;
	while ((de = readdir(dp)))
		n += de->d_name[0] != '.';
	closedir(dp);
	return n;
}

/* ---- the workers: no Check calls in here, they run in children ---- */

static const char *const names[NTOPICS] = {"soak.0", "soak.1", "soak.2",
    "soak.3", "soak.4", "soak.5", "soak.6", "soak.7"};

struct wconn {
	int fd;			/* -1: free slot */
	enum role role;
	int topic;
	int connecting;		/* connect() in progress */
	int ready;		/* WELCOME received */
	uint64_t sid;		/* 0 until the SUB's OK */
	int inflight;		/* producer: confirms outstanding */
	uint8_t *in;
	size_t inlen, incap;
	struct fy_enc out;
	size_t outoff;
	uint64_t *leases;	/* to ack once this read is handled */
	size_t nleases, capleases;
};

struct worker {
	int id, n;
	struct wconn *c;
	struct wstat *st;
	struct fy_dec dec;
	uint64_t rng;
	int port;
};

static uint32_t
rnd(struct worker *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return (uint32_t)(w->rng >> 11);
}

static void
wc_send(struct wconn *c, const struct fy_frame *f)
{
	if (fy_encode(&c->out, f) != FY_OK)
		abort();	/* out of memory in a test worker */
}

static void
wc_open(struct worker *w, struct wconn *c)
{
	struct sockaddr_in sa = {0};
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	c->connecting = 1;
	c->ready = 0;
	c->sid = 0;
	c->inflight = 0;
	c->inlen = 0;
	c->outoff = 0;
	c->nleases = 0;
	fy_enc_clear(&c->out);
	c->topic = (int)(rnd(w) % NTOPICS);
	if (c->fd < 0) {
		w->st->connect_fail++;
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)w->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
	    errno != EINPROGRESS) {
		w->st->connect_fail++;
		close(c->fd);
		c->fd = -1;
		return;
	}
	w->st->opens++;
}

static void
wc_close(struct worker *w, struct wconn *c, int reset)
{
	if (c->fd < 0)
		return;
	if (reset) {
		struct linger l = {1, 0};

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	close(c->fd);
	c->fd = -1;
	w->st->closes++;
}

/* Once connected: HELLO, and right behind it the SUB if any. */
static void
wc_start(struct wconn *c)
{
	struct fy_frame f = {.type = FY_T_HELLO};

	f.hello.version = FY_PROTO_VERSION;
	f.hello.name = (struct fy_str){"soak", 4};
	wc_send(c, &f);
	if (c->role == R_PRODUCER)
		return;
	f = (struct fy_frame){.type = FY_T_SUB, .rid = SUB_RID};
	f.sub.topic = (struct fy_str){names[c->topic], 6};
	switch (c->role) {
	case R_ACKER:
	case R_NACKER:
		f.sub.group = (struct fy_str){"work", 4};
		f.sub.prefetch = 32;
		break;
	case R_DEAF_ALO:
		f.sub.group = (struct fy_str){"work", 4};
		f.sub.prefetch = 8;
		break;
	default:
		f.sub.ephemeral = 1;
		f.sub.mode = FY_MODE_AMO;
		break;
	}
	wc_send(c, &f);
}

static void
publish(struct worker *w, struct wconn *c)
{
	static char body[PREFIX_LEN + 512];
	uint64_t n = ++w->st->maxn;
	struct fy_frame f = {.type = FY_T_PUB, .rid = n};
	size_t len = PREFIX_LEN + (size_t)(n * 7919 % 496);
	char prefix[48];

	memset(body, 'x', sizeof(body));
	/* n < nmax, far below 10^12: the prefix is PREFIX_LEN bytes. */
	snprintf(prefix, sizeof(prefix), "%02d:%012llu:", w->id,
	    (unsigned long long)n);
	memcpy(body, prefix, PREFIX_LEN);
	f.pub.topic = (struct fy_str){names[n % NTOPICS], 6};
	f.pub.one.body = (struct fy_str){body, (uint32_t)len};
	f.pub.msgs = &f.pub.one;
	f.pub.nmsgs = 1;
	wc_send(c, &f);
	c->inflight++;
	w->st->sent++;
}

/* (worker, number) from a body; 0 if it is not one of ours. */
static int
parse_body(struct fy_str b, int *wid, uint64_t *n)
{
	char tmp[PREFIX_LEN + 1];
	unsigned long long nn;

	if (b.len < PREFIX_LEN)
		return 0;
	memcpy(tmp, b.p, PREFIX_LEN);
	tmp[PREFIX_LEN] = '\0';
	if (sscanf(tmp, "%d:%llu:", wid, &nn) != 2 || *wid < 0 ||
	    *wid >= NWORKERS || nn == 0 || nn >= sh->nmax)
		return 0;
	*n = nn;
	return 1;
}

static void
unexpected(struct worker *w, uint32_t code)
{
	if (!w->st->unexpected++)
		w->st->first_code = code;
}

static void
handle(struct worker *w, struct wconn *c, const struct fy_frame *f)
{
	struct fy_frame r;
	uint64_t n;
	int wid;

	switch (f->type) {
	case FY_T_WELCOME:
		c->ready = 1;
		break;
	case FY_T_OK:
		if (f->rid == SUB_RID) {
			c->sid = f->ok.sid;
		} else if (c->role == R_PRODUCER && f->rid &&
		    f->rid < sh->nmax) {
			*conf_mark(w->id, f->rid) = 1;
			w->st->confirmed++;
			c->inflight--;
		}
		break;
	case FY_T_ERR:
		if (c->role == R_PRODUCER && f->rid && f->rid < sh->nmax) {
			c->inflight--;
			w->st->pub_refused++;
			unexpected(w, f->err.code);
		} else if (f->err.code == FY_E_STALE) {
			/* an ack after the lease ran out */
			w->st->stale++;
		} else {
			unexpected(w, f->err.code);
		}
		break;
	case FY_T_MSG:
		if (c->role == R_AMO) {
			w->st->amo++;
			break;
		}
		if (!parse_body(f->msg.body, &wid, &n)) {
			unexpected(w, 0);
			break;
		}
		if (c->role == R_NACKER && f->msg.attempt == 1) {
			r = (struct fy_frame){.type = FY_T_NACK};
			r.nack.sid = f->msg.sid;
			r.nack.lease = f->msg.lease;
			r.nack.has_delay = 1;
			wc_send(c, &r);
			w->st->nacked++;
			break;
		}
		if (c->nleases == c->capleases) {
			c->capleases = c->capleases ? 2 * c->capleases : 64;
			c->leases = realloc(c->leases,
			    c->capleases * sizeof(*c->leases));
			if (!c->leases)
				abort();
		}
		c->leases[c->nleases++] = f->msg.lease;
		c->sid = f->msg.sid;
		/* Marked when the ack is written: if the connection dies
		 * first, ferryd redelivers and someone marks it again.
		 * Counts saturate well below 255. */
		if (__atomic_load_n(seen_mark(wid, n), __ATOMIC_RELAXED) < 200)
			__atomic_fetch_add(seen_mark(wid, n), 1,
			    __ATOMIC_RELAXED);
		w->st->acked++;
		break;
	default:
		unexpected(w, 0);
		break;
	}
}

/* Read what is there and handle every complete frame.  -1: closed. */
static int
wc_read(struct worker *w, struct wconn *c)
{
	size_t off = 0, need;
	struct fy_frame f;
	ssize_t r;

	if (c->incap - c->inlen < 65536) {
		c->incap = c->inlen + 65536;
		if (!(c->in = realloc(c->in, c->incap)))
			abort();
	}
	r = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
		return -1;
	if (r < 0)
		return 0;
	c->inlen += (size_t)r;
	while (fy_frame_need(c->in + off, c->inlen - off, &need) == FY_OK &&
	    c->inlen - off >= need) {
		memset(&f, 0, sizeof(f));
		if (fy_decode(&w->dec, c->in + off + FY_HDR_LEN,
		    need - FY_HDR_LEN, &f, NULL) != FY_OK)
			unexpected(w, 0);
		else
			handle(w, c, &f);
		off += need;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	if (c->nleases) {
		f = (struct fy_frame){.type = FY_T_ACK};
		f.ack.sid = c->sid;
		f.ack.leases = c->leases;
		f.ack.nleases = (uint32_t)c->nleases;
		wc_send(c, &f);
		c->nleases = 0;
	}
	return 0;
}

static int
wc_write(struct wconn *c)
{
	while (c->outoff < c->out.sb.size) {
		ssize_t r = send(c->fd, c->out.sb.data + c->outoff,
		    c->out.sb.size - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return 0;
		if (r <= 0)
			return -1;
		c->outoff += (size_t)r;
	}
	fy_enc_clear(&c->out);
	c->outoff = 0;
	return 0;
}

/* A connection that never reads: once its SUB is out, leave it be. */
static int
deaf(const struct wconn *c)
{
	return (c->role == R_DEAF_AMO || c->role == R_DEAF_ALO) &&
	    !c->connecting && c->outoff == 0 && c->out.sb.size == 0;
}

/* One turn of the loop: poll up to 2 ms, then do what is due. */
static void
turn(struct worker *w, struct pollfd *pf, int *map)
{
	int np = 0;

	for (int i = 0; i < w->n; i++) {
		struct wconn *c = &w->c[i];
		short ev = 0;

		if (c->fd < 0 || deaf(c))
			continue;
		if (c->connecting || c->out.sb.size > c->outoff)
			ev |= POLLOUT;
		if (!c->connecting)
			ev |= POLLIN;
		pf[np] = (struct pollfd){c->fd, ev, 0};
		map[np++] = i;
	}
	if (poll(pf, (nfds_t)np, 2) <= 0)
		return;
	for (int k = 0; k < np; k++) {
		struct wconn *c = &w->c[map[k]];
		int err = 0;
		socklen_t elen = sizeof(err);

		if (!pf[k].revents)
			continue;
		if (c->connecting) {
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
			if (err) {
				w->st->connect_fail++;
				wc_close(w, c, 0);
				wc_open(w, c);
				continue;
			}
			c->connecting = 0;
			wc_start(c);
		}
		if ((pf[k].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    wc_read(w, c) < 0) {
			/* ferryd closed it: it must not, in this test */
			w->st->dropped_by_broker++;
			wc_close(w, c, 0);
			wc_open(w, c);
			continue;
		}
		if (wc_write(c) < 0) {
			w->st->dropped_by_broker++;
			wc_close(w, c, 0);
			wc_open(w, c);
		}
	}
}

static void
worker_run(int id, int n, int port, uint64_t load_ms, int wrate)
{
	struct worker w = {.id = id, .n = n, .port = port};
	struct pollfd *pf = calloc((size_t)n, sizeof(*pf));
	int *map = calloc((size_t)n, sizeof(*map));
	uint64_t start = now_ms(), end = start + load_ms, last = start;
	uint64_t next_churn = start + CHURN_MS, stop;
	double tokens = 0;
	int rr = 0, pending;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	w.st = &sh->ws[id];
	w.rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)id << 32) ^ start;
	w.c = calloc((size_t)n, sizeof(*w.c));
	if (!pf || !map || !w.c || fy_dec_init(&w.dec) != FY_OK)
		_exit(3);
	for (int i = 0; i < n; i++) {
		w.c[i].role = role_of[(i + id * 7) % 20];
		fy_enc_init(&w.c[i].out);
		wc_open(&w, &w.c[i]);
	}
	while (now_ms() < end) {
		uint64_t now = now_ms();

		tokens += (double)(now - last) * wrate / 1000.0;
		if (tokens > wrate / 10.0)
			tokens = wrate / 10.0;
		last = now;
		for (int k = 0; k < n && tokens >= 1; k++) {
			struct wconn *c = &w.c[(rr + k) % n];

			if (c->fd < 0 || c->role != R_PRODUCER || !c->ready ||
			    c->inflight >= PUB_WINDOW ||
			    w.st->maxn + 1 >= sh->nmax)
				continue;
			publish(&w, c);
			tokens--;
		}
		rr = (rr + 1) % n;
		if (now >= next_churn) {
			struct wconn *c = &w.c[rnd(&w) % (uint32_t)n];

			wc_close(&w, c, (int)(rnd(&w) & 1));
			wc_open(&w, c);
			next_churn += CHURN_MS;
		}
		for (int i = 0; i < n; i++)
			if (w.c[i].fd < 0)
				wc_open(&w, &w.c[i]);
		turn(&w, pf, map);
	}
	/* Collect the last confirms; consumers keep consuming meanwhile. */
	stop = now_ms() + WINDDOWN_MS;
	do {
		pending = 0;
		for (int i = 0; i < n; i++)
			if (w.c[i].fd >= 0 && w.c[i].role == R_PRODUCER)
				pending += w.c[i].inflight;
		if (pending)
			turn(&w, pf, map);
	} while (pending && now_ms() < stop);
	for (int i = 0; i < n; i++) {
		if (w.c[i].fd >= 0)
			close(w.c[i].fd);	/* not churn: not counted */
		fy_enc_fini(&w.c[i].out);
		free(w.c[i].in);
		free(w.c[i].leases);
	}
	fy_dec_fini(&w.dec);
	free(w.c);
	free(pf);
	free(map);
	w.st->done = 1;
	_exit(0);
}

/* ---- the test ---- */

static int
env_int(const char *name, int def)
{
	const char *v = getenv(name);

	return v && atoi(v) > 0 ? atoi(v) : def;
}

static void
setup(void)
{
	struct rlimit rl;
	rlim_t want;

	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	/* ferryd inherits the limit: its connections, ours per worker. */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	want = 4096;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		want = rl.rlim_max;
	rl.rlim_cur = want;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	if ((rlim_t)nconns + 200 > want)
		nconns = (int)want - 200;
	ck_assert_int_ge(nconns, 100);

	ferryd_start(&d, "--ack-timeout", "2", "--max-attempts", "1000",
	    "--retry-backoff-base", "0.05", "--retry-backoff-max", "0.5",
	    "--max-frame-size", "64K", "--max-message-size", "16K",
	    "--max-output-buffer", "256K",
	    "--segment-size", "8M", "--max-connections", "4000", NULL);
}

static void
teardown(void)
{
	/* On a failed assertion Check kills the whole process group
	 * (workers and ferryd); this is the normal path. */
	for (int i = 0; i < NWORKERS; i++)
		if (workers[i] > 0) {
			kill(workers[i], SIGKILL);
			waitpid(workers[i], NULL, 0);
			workers[i] = 0;
		}
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
	if (sh)
		munmap(sh, sh_len);
	sh = NULL;
	fy_dec_fini(&dec);
}

static void
sub_work(int fd, int topic, uint32_t prefetch)
{
	struct fy_frame f = {.type = FY_T_SUB, .rid = 100 + (uint64_t)topic};

	f.sub.topic = (struct fy_str){names[topic], 6};
	f.sub.group = (struct fy_str){"work", 4};
	f.sub.prefetch = prefetch;
	raw_send_frame(fd, &f);
}

/* What ferryd holds, from a STATS of every topic. */
struct held {
	uint64_t msgs;		/* ready + delayed + in flight, any row */
	uint64_t ephemeral;	/* ephemeral groups still there */
	uint64_t dead;		/* dead-lettered, any group */
	uint64_t acked;		/* acks in the "work" groups */
};

static void
read_stats(const struct fy_frame *f, struct held *h)
{
	memset(h, 0, sizeof(*h));
	for (uint32_t i = 0; i < f->ok.nstats; i++) {
		const struct fy_gstat *g = &f->ok.stats[i];

		h->msgs += g->ready + g->delayed + g->inflight;
		h->dead += g->dead_lettered;
		if (g->group.len && g->group.p[0] == '~')
			h->ephemeral++;
		if (g->group.len == 4 && !memcmp(g->group.p, "work", 4))
			h->acked += g->acked;
	}
}

/*
 * Subscribe to every "work" group on one connection, ack all that comes,
 * until STATS says ferryd holds nothing (redeliveries after the workers
 * left wait out a backoff of up to 0.5 s).  Returns the messages drained.
 */
static uint64_t
drain(struct held *h)
{
	int fd = raw_hello(d.port, &dec), subs = 0, asked = 0;
	uint64_t deadline = now_ms() + 30000, got = 0;
	struct fy_frame f;

	for (int t = 0; t < NTOPICS; t++)
		sub_work(fd, t, 1000);
	memset(h, 0, sizeof(*h));
	h->msgs = 1;
	while (now_ms() < deadline) {
		int r = raw_recv_frame(fd, &dec, &f, 300);
		uint64_t n;
		int wid;

		ck_assert_int_ne(r, 0);
		if (r < 0 && subs == NTOPICS && !asked) {
			struct fy_frame s = {.type = FY_T_STATS,
			    .rid = STATS_RID};

			raw_send_frame(fd, &s);
			asked = 1;
			continue;
		}
		if (r < 0)
			continue;
		if (f.type == FY_T_OK && f.rid == STATS_RID) {
			read_stats(&f, h);
			asked = 0;
			if (h->msgs == 0)
				break;
			continue;
		}
		if (f.type == FY_T_OK && f.rid >= 100 &&
		    f.rid < 100 + NTOPICS) {
			subs++;
			continue;
		}
		ck_assert_msg(f.type == FY_T_MSG, "drain: frame type %d (code "
		    "%u)", f.type, f.type == FY_T_ERR ? f.err.code : 0);
		ck_assert_msg(parse_body(f.msg.body, &wid, &n), "drain: a "
		    "body that is not ours");
		if (*seen_mark(wid, n) < 200)
			(*seen_mark(wid, n))++;
		got++;
		f = (struct fy_frame){.type = FY_T_ACK, .ack.sid = f.msg.sid,
		    .ack.one = f.msg.lease};
		f.ack.leases = &f.ack.one;
		f.ack.nleases = 1;
		raw_send_frame(fd, &f);
	}
	ck_assert_msg(h->msgs == 0, "ferryd still holds %llu messages after "
	    "30 s of draining", (unsigned long long)h->msgs);
	close(fd);
	return got;
}

START_TEST(soak)
{
	uint64_t nmax, t0, load_ms = (uint64_t)seconds * 1000, drained;
	long rss0, rss = 0, peak_rss = 0;
	int fds0, fds = 0, peak_fds = 0, per = nconns / NWORKERS;
	struct wstat tot = {0};
	uint64_t lost = 0, confirmed = 0, dup = 0;
	struct held h;
	int fd;

	/* Create the groups first, so none of the load goes to a topic's
	 * backlog; then the baseline. */
	fd = raw_hello(d.port, &dec);
	for (int t = 0; t < NTOPICS; t++) {
		struct fy_frame f;

		sub_work(fd, t, 1);
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
		ck_assert_int_eq(f.type, FY_T_OK);
	}
	close(fd);
	usleep(300000);
	rss0 = proc_status_kb(d.pid, "VmRSS");
	fds0 = count_fds(d.pid);
	ck_assert_int_gt(rss0, 0);
	ck_assert_int_gt(fds0, 0);

	nmax = (uint64_t)rate * (uint64_t)seconds / NWORKERS * 2 + 1000;
	sh_len = sizeof(*sh) + 2 * NWORKERS * nmax;
	sh = mmap(NULL, sh_len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(sh, MAP_FAILED);
	sh->nmax = nmax;

	fprintf(stderr, "soak: %d connections in %d workers for %d s, "
	    "target %d msgs/s%s; ferryd baseline RSS %ld kB, %d fds\n",
	    per * NWORKERS, NWORKERS, seconds, rate,
	    asan ? " (sanitizer build: scaled down)" : "", rss0, fds0);
	t0 = now_ms();
	for (int i = 0; i < NWORKERS; i++) {
		workers[i] = fork();
		ck_assert_int_ge(workers[i], 0);
		if (workers[i] == 0)
			worker_run(i, per, d.port, load_ms, rate / NWORKERS);
	}
	/* Watch ferryd while they work; it must stay up. */
	for (int left = NWORKERS; left > 0;) {
		int st;

		ck_assert_msg(now_ms() - t0 < load_ms + WINDDOWN_MS + 20000,
		    "workers did not finish");
		for (int i = 0; i < NWORKERS; i++) {
			if (workers[i] <= 0 ||
			    waitpid(workers[i], &st, WNOHANG) != workers[i])
				continue;
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			    "worker %d failed: status %d", i, st);
			workers[i] = 0;
			left--;
		}
		ck_assert_msg(waitpid(d.pid, NULL, WNOHANG) == 0,
		    "ferryd died under load (see %s)", d.log);
		rss = proc_status_kb(d.pid, "VmRSS");
		fds = count_fds(d.pid);
		if (rss > peak_rss)
			peak_rss = rss;
		if (fds > peak_fds)
			peak_fds = fds;
		usleep(200000);
	}
	for (int i = 0; i < NWORKERS; i++) {
		struct wstat *s = &sh->ws[i];

		ck_assert(s->done);
		tot.sent += s->sent;
		tot.confirmed += s->confirmed;
		tot.pub_refused += s->pub_refused;
		tot.acked += s->acked;
		tot.nacked += s->nacked;
		tot.amo += s->amo;
		tot.stale += s->stale;
		tot.opens += s->opens;
		tot.closes += s->closes;
		tot.connect_fail += s->connect_fail;
		tot.dropped_by_broker += s->dropped_by_broker;
		tot.unexpected += s->unexpected;
		if (s->unexpected && !tot.first_code)
			tot.first_code = s->first_code;
	}
	fprintf(stderr, "soak: published %llu (%.0f/s), confirmed %llu, "
	    "refused %llu; acked %llu, nacked %llu, at-most-once received "
	    "%llu, stale acks %llu\n", (unsigned long long)tot.sent,
	    tot.sent * 1000.0 / (double)load_ms,
	    (unsigned long long)tot.confirmed,
	    (unsigned long long)tot.pub_refused,
	    (unsigned long long)tot.acked, (unsigned long long)tot.nacked,
	    (unsigned long long)tot.amo, (unsigned long long)tot.stale);
	fprintf(stderr, "soak: connections opened %llu, closed %llu (%.0f/s), "
	    "failed to connect %llu, dropped by ferryd %llu; ferryd peak "
	    "RSS %ld kB, peak fds %d\n", (unsigned long long)tot.opens,
	    (unsigned long long)tot.closes,
	    tot.closes * 1000.0 / (double)load_ms,
	    (unsigned long long)tot.connect_fail,
	    (unsigned long long)tot.dropped_by_broker, peak_rss, peak_fds);
	ck_assert_msg(tot.unexpected == 0, "%llu unexpected frames or errors "
	    "(first code %u)", (unsigned long long)tot.unexpected,
	    tot.first_code);
	ck_assert_uint_eq(tot.connect_fail, 0);
	ck_assert_uint_eq(tot.dropped_by_broker, 0);
	ck_assert_uint_gt(tot.confirmed, 0);
	ck_assert_int_ge(peak_fds, fds0 + per * NWORKERS * 9 / 10);

	drained = drain(&h);
	for (int w = 0; w < NWORKERS; w++)
		for (uint64_t n = 1; n <= sh->ws[w].maxn; n++) {
			uint8_t s = *seen_mark(w, n);

			if (!*conf_mark(w, n))
				continue;
			confirmed++;
			dup += s > 1;
			if (s)
				continue;
			if (lost++ < 5)
				fprintf(stderr, "soak: LOST %02d:%012llu "
				    "(topic soak.%llu)\n", w,
				    (unsigned long long)n,
				    (unsigned long long)(n % NTOPICS));
		}
	fprintf(stderr, "soak: drained %llu; of %llu confirmed messages %llu "
	    "lost, %llu delivered more than once; %llu dead letters\n",
	    (unsigned long long)drained, (unsigned long long)confirmed,
	    (unsigned long long)lost, (unsigned long long)dup,
	    (unsigned long long)h.dead);
	ck_assert_uint_eq(lost, 0);
	ck_assert_uint_eq(h.dead, 0);
	ck_assert_uint_eq(h.ephemeral, 0);
	ck_assert_uint_ge(h.acked, confirmed);

	/* Every connection is closed: ferryd's fds and memory come back. */
	for (uint64_t until = now_ms() + 15000; now_ms() < until;) {
		rss = proc_status_kb(d.pid, "VmRSS");
		fds = count_fds(d.pid);
		if (fds == fds0 && (asan || rss <= rss0 + RSS_MARGIN_KB))
			break;
		usleep(200000);
	}
	fprintf(stderr, "soak: after: RSS %ld kB (baseline %ld, peak %ld), "
	    "fds %d (baseline %d, peak %d)%s\n", rss, rss0, peak_rss, fds,
	    fds0, peak_fds, asan ? "; RSS not checked under ASan" : "");
	ck_assert_int_eq(fds, fds0);
	if (!asan)
		ck_assert_int_le(rss, rss0 + RSS_MARGIN_KB);
	ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)", d.log);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("soak");
	TCase *tc = tcase_create("soak");
	SRunner *sr;
	int failed;

	asan = BUILT_WITH_ASAN || getenv("ASAN_OPTIONS") != NULL;
	nconns = env_int("FERRY_SOAK_CONNS", 1000);
	seconds = env_int("FERRY_SOAK_SECONDS", asan ? 20 : 40);
	rate = asan ? 3000 : 8000;
	tcase_add_checked_fixture(tc, setup, teardown);
	/* The load, the wind-down, then draining and settling (up to 30 s
	 * and 15 s); meson's own timeout for the test is 300 s. */
	tcase_set_timeout(tc, seconds + WINDDOWN_MS / 1000 + 100);
	tcase_add_test(tc, soak);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
