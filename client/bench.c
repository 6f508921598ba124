/*
 * bench.c - `ferry bench`: publishers and subscribers on threads, one
 * connection each, measuring publish and delivery rates, publish-to-receive
 * latency, and lost and duplicated messages (see bench_usage below and
 * bench/README.md).  The counting itself is in benchstat.c, so that it can
 * be unit-tested without a broker.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "benchstat.h"
#include "cliargs.h"
#include "ferry.h"

#define ERR_LEN 192
#define IO_TIMEOUT_MS 30000	/* a loaded broker may lag a full buffer */
#define SLICE_MS 50		/* how often a waiting subscriber looks up */
#define MONITOR_NS 2000000	/* how often the main thread looks around */
#define GROUP_FMT "bench-g%" PRIu32

const char bench_usage[] =
"usage: ferry bench TOPIC [OPTIONS]\n"
"\n"
"Measure the broker: --pub publisher threads publish --msgs messages in\n"
"total to TOPIC while --sub subscriber threads in each of --groups groups\n"
"(bench-g1..bench-gK; every group gets every message, subscribers of one\n"
"group compete) receive them; every thread has its own connection.\n"
"Prints publish and receive rates, publish-to-receive latency percentiles,\n"
"and per group the messages lost and received twice.  TOPIC is a scratch\n"
"topic: it is deleted, with all its groups, at the end unless --keep.\n"
"Exits 1 if a message was lost or anything failed.\n"
"\n"
"  --pub N          publisher threads (default 1)\n"
"  --sub N          subscriber threads per group (default 1; 0: publish\n"
"                   only)\n"
"  --groups K       groups, each receiving every message (default 1)\n"
"  --msgs N         messages in total, split among publishers (default\n"
"                   100000)\n"
"  --size BYTES     body size (default 128, at least 24: a send time, the\n"
"                   publisher and its sequence number)\n"
"  --no-ack         subscribe at-most-once (no acks)\n"
"  --confirm        confirmed publishes, pipelined (default:\n"
"                   fire-and-forget)\n"
"  --window N       with --confirm, most unconfirmed publishes per\n"
"                   publisher (default 1000)\n"
"  --producer       with --confirm, publish as idempotent producers\n"
"                   (a pid and sequence number on each publish; the\n"
"                   broker checks each against its duplicate window)\n"
"  --rate R         publish R messages/s in total (default: flat out)\n"
"  --prefetch N     unacked deliveries per subscriber (default 1000)\n"
"  --timeout SECONDS  subscribers give up after SECONDS without a message\n"
"                   once publishing is over (default 5)\n"
"  --keep           do not delete TOPIC at the end\n"
"  --json           print the results as one JSON object\n";

struct opts {
	const char *host;
	int port;
	int conn_ms;		/* connect and handshake timeout */
	const char *topic;
	uint32_t npub;
	uint32_t nsub;		/* per group */
	uint32_t ngroups;
	uint64_t msgs;
	size_t size;
	int no_ack, confirm, producer, json, keep;
	uint32_t window;
	uint32_t prefetch;
	double rate;		/* messages/s in total; 0 = no pacing */
	int64_t idle_ns;
};

/* State shared by every thread of one run. */
struct run {
	const struct opts *o;
	uint32_t nonce;		/* tells this run's bodies from leftovers */
	pthread_barrier_t start;
	struct benchstat_tally *tally;	/* one per group */
	int abort;		/* atomic: everyone quits (signal, failure) */
	int stop;		/* atomic: subscribers quit */
};

struct pub {
	struct run *r;
	uint32_t id;
	uint64_t n;		/* messages to publish */
	pthread_t th;
	uint64_t t0, t1;	/* first publish, all handled by the broker */
	uint64_t sent;		/* publishes handed to libferry */
	uint64_t failed;	/* refused by the broker */
	int done;		/* atomic: t1 is set */
	char err[ERR_LEN];	/* why it stopped early, or "" */
};

struct sub {
	struct run *r;
	uint32_t group, idx;	/* 0-based */
	pthread_t th;
	uint64_t *lat;		/* ns, first deliveries only; owned */
	size_t nlat, cap;
	uint64_t unsampled;	/* first deliveries not in lat (no memory) */
	uint64_t fresh;		/* atomic: first deliveries in its group */
	uint64_t last_ns;	/* atomic: time of the latest delivery */
	uint64_t foreign;	/* bodies of another run */
	uint64_t refused;	/* async errors (e.g. a stale ack) */
	char err[ERR_LEN];
};

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	interrupted = 1;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
sleep_until(uint64_t ns)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	    EINTR)
		;
}

__attribute__((format(printf, 3, 4)))
static void
seterr(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (buf[0] != '\0')
		return;		/* the first error is the cause */
	va_start(ap, fmt);
	vsnprintf(buf, n, fmt, ap);
	va_end(ap);
}

/* Connect, or NULL with the reason in err. */
static struct ferry *
bench_connect(const struct opts *o, const char *name, char *err, size_t n)
{
	struct ferry *f = cli_connect(o->host, o->port, o->conn_ms, name);

	if (f == NULL) {
		seterr(err, n, "%s: out of memory", name);
		return NULL;
	}
	if (ferry_err(f)) {
		seterr(err, n, "%s: %s", name, ferry_errstr(f));
		ferry_close(f);
		return NULL;
	}
	ferry_set_timeout(f, IO_TIMEOUT_MS);
	return f;
}

static int
aborted(struct run *r)
{
	return __atomic_load_n(&r->abort, __ATOMIC_RELAXED) || interrupted;
}

/* --- Publishers ------------------------------------------------------ */

static void
count_confirms(struct pub *p, const struct ferry_confirms *c)
{
	p->failed += c->failed;
	if (c->failed && c->first_err)
		seterr(p->err, sizeof(p->err), "publish refused: %s",
		    ferry_strerror(c->first_err));
}

static void
publish(struct pub *p, struct ferry *f, uint8_t *body)
{
	const struct opts *o = p->r->o;
	struct ferry_confirms c;
	struct ferry_async_error e;
	double interval = 0;
	uint64_t seq, due, now;
	int r = 0;

	if (o->rate > 0) {
		interval = 1e9 * o->npub / o->rate;
		/* Default slack (50 us) would dwarf a 50 us interval. */
		prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	}
	p->t0 = now_ns();
	for (seq = 0; seq < p->n && r == 0; seq++) {
		if (aborted(p->r))
			break;
		if (interval > 0) {
			/* An absolute schedule: oversleeping once is made up
			 * by the next messages, so the mean rate holds. */
			due = p->t0 + (uint64_t)(seq * interval);
			now = now_ns();
			if (now < due) {
				/* What is due leaves now, not at 64 KiB. */
				if ((r = ferry_flush(f)) < 0)
					break;
				sleep_until(due);
			}
		}
		if (o->confirm && ferry_pending(f) >= o->window) {
			r = ferry_wait_confirms(f, o->window - 1,
			    IO_TIMEOUT_MS, &c);
			count_confirms(p, &c);
			if (r < 0)
				break;
		}
		benchstat_body_put(body, p->r->nonce, p->id, (uint32_t)seq,
		    now_ns());
		if (o->confirm)
			r = ferry_publish_pipelined(f, o->topic, body, o->size,
			    NULL, NULL);
		else
			r = ferry_publish(f, o->topic, body, o->size, NULL);
		if (r == 0)
			p->sent++;
	}
	if (r < 0)
		seterr(p->err, sizeof(p->err), "publisher %" PRIu32 ": %s",
		    p->id + 1, ferry_errstr(f));
	/*
	 * Publishing is done when the broker has handled the last message:
	 * all confirms, or for fire-and-forget a PING answered after them.
	 */
	if (!ferry_err(f)) {
		if (o->confirm) {
			r = ferry_wait_confirms(f, 0, IO_TIMEOUT_MS, &c);
			count_confirms(p, &c);
		} else {
			r = ferry_ping(f);
		}
		if (r < 0)
			seterr(p->err, sizeof(p->err),
			    "publisher %" PRIu32 ": %s", p->id + 1,
			    ferry_errstr(f));
	}
	p->t1 = now_ns();
	while (ferry_poll_error(f, &e)) {
		p->failed += 1 + e.dropped;
		seterr(p->err, sizeof(p->err), "publish refused: %s: %s",
		    ferry_strerror(e.err), e.msg);
	}
	if (o->confirm && ferry_err(f))
		p->failed += ferry_pending(f);
}

static void *
pub_thread(void *arg)
{
	struct pub *p = arg;
	struct run *r = p->r;
	const struct opts *o = r->o;
	struct ferry *f;
	uint8_t *body;
	char name[32], pid[40];
	size_t i;

	snprintf(name, sizeof(name), "bench-pub-%" PRIu32, p->id + 1);
	pthread_setname_np(pthread_self(), name);
	f = bench_connect(o, name, p->err, sizeof(p->err));
	/* The pid is unique per run and publisher; seq starts at the clock. */
	if (f != NULL && o->producer) {
		snprintf(pid, sizeof(pid), "bench-%08" PRIx32 "-%" PRIu32,
		    r->nonce, p->id + 1);
		if (ferry_set_producer(f, pid, 0) < 0) {
			seterr(p->err, sizeof(p->err), "%s", ferry_errstr(f));
			ferry_close(f);
			f = NULL;
		}
	}
	body = malloc(o->size);
	if (body == NULL)
		seterr(p->err, sizeof(p->err), "out of memory");
	else
		for (i = BENCHSTAT_BODY_MIN; i < o->size; i++)
			body[i] = (uint8_t)('a' + i % 26);
	if (f == NULL || body == NULL)
		__atomic_store_n(&r->abort, 1, __ATOMIC_RELAXED);
	pthread_barrier_wait(&r->start);
	if (f != NULL && body != NULL && !aborted(r))
		publish(p, f, body);
	else
		p->t0 = p->t1 = now_ns();
	__atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
	ferry_close(f);
	free(body);
	return NULL;
}

/* --- Subscribers ----------------------------------------------------- */

static void
sample(struct sub *s, uint64_t ns)
{
	if (s->nlat == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 4096;
		uint64_t *n = realloc(s->lat, ncap * sizeof(*n));

		if (n == NULL) {
			s->unsampled++;
			return;
		}
		s->lat = n;
		s->cap = ncap;
	}
	s->lat[s->nlat++] = ns;
}

static void
receive(struct sub *s, struct ferry *f)
{
	struct run *r = s->r;
	struct benchstat_tally *t = &r->tally[s->group];
	struct ferry_msg *m;
	uint32_t pub, seq;
	uint64_t ts, now, fresh = 0;
	int rc, k;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED) && !aborted(r)) {
		rc = ferry_next(f, SLICE_MS, &m);
		if (rc == FERRY_ETIMEOUT)
			continue;
		if (rc < 0 && ferry_err(f)) {
			seterr(s->err, sizeof(s->err), "subscriber %" PRIu32
			    " of " GROUP_FMT ": %s", s->idx + 1, s->group + 1,
			    ferry_errstr(f));
			return;
		}
		if (rc < 0) {
			s->refused++;
			seterr(s->err, sizeof(s->err), "subscriber %" PRIu32
			    " of " GROUP_FMT ": broker: %s", s->idx + 1,
			    s->group + 1, ferry_errstr(f));
			if (rc == FERRY_EDELETED)
				return;
			continue;
		}
		now = now_ns();
		k = benchstat_body_get(m->body, m->len, r->nonce, &pub, &seq,
		    &ts);
		if (k == 0 && m->len != r->o->size)
			k = BENCHSTAT_BAD;
		if (k == 0)
			k = benchstat_mark(t, pub, seq);
		else if (k == BENCHSTAT_BAD)
			__atomic_fetch_add(&t->bad, 1, __ATOMIC_RELAXED);
		if (k == BENCHSTAT_NEW) {
			sample(s, now - ts);
			__atomic_store_n(&s->fresh, ++fresh, __ATOMIC_RELAXED);
		} else if (k == BENCHSTAT_FOREIGN) {
			s->foreign++;
		}
		__atomic_store_n(&s->last_ns, now, __ATOMIC_RELAXED);
		/* Foreign and bad ones too: they would only come back. */
		if (!r->o->no_ack)
			rc = ferry_ack(f, m->sid, m->lease, 0);
		ferry_msg_free(m);
		if (rc < 0 && ferry_err(f)) {
			seterr(s->err, sizeof(s->err), "subscriber %" PRIu32
			    " of " GROUP_FMT ": %s", s->idx + 1, s->group + 1,
			    ferry_errstr(f));
			return;
		}
	}
}

static void *
sub_thread(void *arg)
{
	struct sub *s = arg;
	struct run *r = s->r;
	const struct opts *o = r->o;
	struct ferry_sub_opts so;
	struct ferry *f;
	char name[48], group[32];
	uint64_t sid = 0;

	snprintf(name, sizeof(name), "bench-sub-g%" PRIu32 "-%" PRIu32,
	    s->group + 1, s->idx + 1);
	snprintf(group, sizeof(group), GROUP_FMT, s->group + 1);
	pthread_setname_np(pthread_self(), "bench-sub");
	f = bench_connect(o, name, s->err, sizeof(s->err));
	if (f != NULL) {
		memset(&so, 0, sizeof(so));
		so.group = group;
		so.prefetch = o->prefetch;
		so.mode = o->no_ack ? FERRY_AT_MOST_ONCE : FERRY_AT_LEAST_ONCE;
		if (ferry_subscribe(f, o->topic, &so, &sid) < 0) {
			seterr(s->err, sizeof(s->err), "%s: subscribe: %s",
			    name, ferry_errstr(f));
			ferry_close(f);
			f = NULL;
		}
	}
	if (f == NULL)
		__atomic_store_n(&r->abort, 1, __ATOMIC_RELAXED);
	/* Subscribed (or failed) before anyone publishes. */
	pthread_barrier_wait(&r->start);
	if (f == NULL)
		return NULL;
	receive(s, f);
	/* A round trip that also pushes out the buffered acks. */
	if (!ferry_err(f))
		ferry_unsubscribe(f, sid);
	ferry_close(f);
	return NULL;
}

/* --- Results --------------------------------------------------------- */

struct result {
	uint64_t t_start, pub_end, sub_end;
	uint64_t published, pub_failed;
	uint64_t deliveries, foreign, refused, unsampled;
	uint64_t lost, dups, bad;
	double pub_s, sub_s, pub_rate, sub_rate;
	size_t nlat;
	double lat_mean;
	uint64_t p50, p90, p99, p999, pmax;
	int errors;		/* threads that failed */
	int interrupted;	/* by a signal: the figures are partial */
	int idle_stop;		/* subscribers gave up waiting */
	struct benchstat_counts *gc;	/* per group */
};

static int
collect(const struct opts *o, struct run *r, struct pub *pubs,
    struct sub *subs, struct result *res)
{
	uint32_t i, nsubs = o->nsub * o->ngroups;
	uint64_t *all = NULL, sum = 0, unsent;
	size_t n = 0, j;

	res->t_start = UINT64_MAX;
	for (i = 0; i < o->npub; i++) {
		if (pubs[i].t0 < res->t_start)
			res->t_start = pubs[i].t0;
		if (pubs[i].t1 > res->pub_end)
			res->pub_end = pubs[i].t1;
		res->published += pubs[i].sent;
		res->pub_failed += pubs[i].failed;
		if (pubs[i].err[0]) {
			fprintf(stderr, "ferry: bench: %s\n", pubs[i].err);
			res->errors++;
		}
	}
	res->sub_end = res->t_start;
	for (i = 0; i < nsubs; i++) {
		if (subs[i].last_ns > res->sub_end)
			res->sub_end = subs[i].last_ns;
		res->foreign += subs[i].foreign;
		res->refused += subs[i].refused;
		res->unsampled += subs[i].unsampled;
		n += subs[i].nlat;
		if (subs[i].err[0]) {
			fprintf(stderr, "ferry: bench: %s\n", subs[i].err);
			res->errors++;
		}
	}
	for (i = 0; o->nsub > 0 && i < o->ngroups; i++) {
		benchstat_count(&r->tally[i], &res->gc[i]);
		/* What a publisher never sent (it was interrupted or failed)
		 * was not lost by the broker. */
		unsent = o->msgs - res->published;
		if (res->gc[i].lost >= unsent) {
			res->gc[i].expected -= unsent;
			res->gc[i].lost -= unsent;
		}
		res->deliveries += res->gc[i].received;
		res->lost += res->gc[i].lost;
		res->dups += res->gc[i].duplicates;
		res->bad += res->gc[i].bad;
	}
	res->pub_s = (res->pub_end - res->t_start) / 1e9;
	res->sub_s = (res->sub_end - res->t_start) / 1e9;
	res->pub_rate = res->pub_s > 0 ? res->published / res->pub_s : 0;
	res->sub_rate = res->sub_s > 0 ? res->deliveries / res->sub_s : 0;

	if (n > 0 && (all = malloc(n * sizeof(*all))) == NULL) {
		fprintf(stderr, "ferry: bench: out of memory for %zu latency "
		    "samples\n", n);
		return -1;
	}
	n = 0;
	for (i = 0; i < nsubs; i++) {
		if (subs[i].nlat)
			memcpy(all + n, subs[i].lat,
			    subs[i].nlat * sizeof(*all));
		n += subs[i].nlat;
	}
	benchstat_sort(all, n);
	for (j = 0; j < n; j++)
		sum += all[j];
	res->nlat = n;
	res->lat_mean = n ? (double)sum / n : 0;
	res->p50 = benchstat_percentile(all, n, 500000);
	res->p90 = benchstat_percentile(all, n, 900000);
	res->p99 = benchstat_percentile(all, n, 990000);
	res->p999 = benchstat_percentile(all, n, 999000);
	res->pmax = benchstat_percentile(all, n, 1000000);
	free(all);
	return 0;
}

static void
print_text(const struct opts *o, const struct result *res)
{
	uint32_t i;

	printf("ferry bench %s: %" PRIu32 " pub, %" PRIu32 " sub x %" PRIu32
	    " group(s), %" PRIu64 " msgs x %zu B, %s, %s", o->topic, o->npub,
	    o->nsub, o->ngroups, o->msgs, o->size,
	    o->confirm ? "confirmed" : "fire-and-forget",
	    o->no_ack ? "at-most-once" : "acked");
	if (o->confirm)
		printf(", window %" PRIu32 "%s", o->window,
		    o->producer ? ", idempotent producer" : "");
	if (o->rate > 0)
		printf(", rate %.0f/s", o->rate);
	if (o->nsub > 0 && !o->no_ack)
		printf(", prefetch %" PRIu32, o->prefetch);
	printf("\n");
	printf("Pub: %12.0f msgs/s %9.2f MB/s  (%" PRIu64 " msgs in %.3f s"
	    "%s)\n", res->pub_rate, res->pub_rate * o->size / 1e6,
	    res->published, res->pub_s,
	    res->pub_failed ? ", some refused" : "");
	if (o->nsub == 0)
		return;
	printf("Sub: %12.0f msgs/s %9.2f MB/s  (%" PRIu64 " deliveries in "
	    "%.3f s)\n", res->sub_rate, res->sub_rate * o->size / 1e6,
	    res->deliveries, res->sub_s);
	printf("Latency (us): p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
	    "max %.1f  (mean %.1f, %zu samples)\n", res->p50 / 1e3,
	    res->p90 / 1e3, res->p99 / 1e3, res->p999 / 1e3, res->pmax / 1e3,
	    res->lat_mean / 1e3, res->nlat);
	for (i = 0; i < o->ngroups; i++)
		printf("  " GROUP_FMT ": %" PRIu64 " received, %" PRIu64
		    " lost, %" PRIu64 " duplicates%s\n", i + 1,
		    res->gc[i].received, res->gc[i].lost,
		    res->gc[i].duplicates,
		    res->gc[i].bad ? " (and corrupt ones)" : "");
	printf("Lost %" PRIu64 ", duplicates %" PRIu64, res->lost, res->dups);
	if (res->foreign)
		printf(", %" PRIu64 " from another run", res->foreign);
	if (res->idle_stop && res->lost)
		printf(" (gave up after %.1f s without a message)",
		    o->idle_ns / 1e9);
	if (res->interrupted)
		printf(" (interrupted after %" PRIu64 " of %" PRIu64
		    " messages)", res->published, o->msgs);
	printf("\n");
}

static void
print_json(const struct opts *o, const struct result *res)
{
	uint32_t i;

	/* Topic names are [A-Za-z0-9._-] (checked): no escaping needed. */
	printf("{\"topic\":\"%s\",\"pubs\":%" PRIu32 ",\"subs\":%" PRIu32
	    ",\"groups\":%" PRIu32 ",\"msgs\":%" PRIu64 ",\"size\":%zu,"
	    "\"ack\":%s,\"confirm\":%s,\"window\":%" PRIu32 ",\"rate\":%.0f,"
	    "\"prefetch\":%" PRIu32 ",\"producer\":%s,", o->topic, o->npub,
	    o->nsub, o->ngroups, o->msgs, o->size,
	    o->no_ack ? "false" : "true", o->confirm ? "true" : "false",
	    o->window, o->rate, o->prefetch, o->producer ? "true" : "false");
	printf("\"published\":%" PRIu64 ",\"pub_failed\":%" PRIu64
	    ",\"pub_elapsed_s\":%.6f,\"pub_rate\":%.1f,\"pub_mb_s\":%.3f,",
	    res->published, res->pub_failed, res->pub_s, res->pub_rate,
	    res->pub_rate * o->size / 1e6);
	printf("\"deliveries\":%" PRIu64 ",\"expected_deliveries\":%" PRIu64
	    ",\"sub_elapsed_s\":%.6f,\"sub_rate\":%.1f,\"sub_mb_s\":%.3f,",
	    res->deliveries, o->nsub ? o->msgs * o->ngroups : 0,
	    res->sub_s, res->sub_rate, res->sub_rate * o->size / 1e6);
	printf("\"latency_us\":{\"samples\":%zu,\"mean\":%.3f,\"p50\":%.3f,"
	    "\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},",
	    res->nlat, res->lat_mean / 1e3, res->p50 / 1e3, res->p90 / 1e3,
	    res->p99 / 1e3, res->p999 / 1e3, res->pmax / 1e3);
	printf("\"lost\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"corrupt\":%"
	    PRIu64 ",\"foreign\":%" PRIu64 ",\"refused\":%" PRIu64
	    ",\"errors\":%d,\"idle_stop\":%s,\"interrupted\":%s,"
	    "\"per_group\":[", res->lost, res->dups, res->bad, res->foreign,
	    res->refused, res->errors, res->idle_stop ? "true" : "false",
	    res->interrupted ? "true" : "false");
	for (i = 0; o->nsub > 0 && i < o->ngroups; i++)
		printf("%s{\"group\":\"" GROUP_FMT "\",\"received\":%" PRIu64
		    ",\"distinct\":%" PRIu64 ",\"lost\":%" PRIu64
		    ",\"duplicates\":%" PRIu64 "}", i ? "," : "", i + 1,
		    res->gc[i].received, res->gc[i].distinct, res->gc[i].lost,
		    res->gc[i].duplicates);
	printf("]}\n");
}

/* --- Driver ---------------------------------------------------------- */

/* Has every group had every message? */
static int
all_received(const struct opts *o, struct sub *subs)
{
	uint32_t g, i;
	uint64_t n;

	for (g = 0; g < o->ngroups; g++) {
		n = 0;
		for (i = 0; i < o->nsub; i++)
			n += __atomic_load_n(&subs[g * o->nsub + i].fresh,
			    __ATOMIC_RELAXED);
		if (n < o->msgs)
			return 0;
	}
	return 1;
}

/*
 * Watch until the subscribers should stop: every group complete, or,
 * once every publisher is done, nothing received for o->idle_ns.
 * Returns 1 in the second case.
 */
static int
monitor(const struct opts *o, struct run *r, struct pub *pubs,
    struct sub *subs)
{
	uint32_t i, nsubs = o->nsub * o->ngroups;
	uint64_t last, t;
	int done;

	for (;;) {
		sleep_until(now_ns() + MONITOR_NS);
		if (aborted(r))
			return 0;
		if (nsubs > 0 && all_received(o, subs))
			return 0;
		done = 1;
		last = 0;
		for (i = 0; i < o->npub; i++) {
			if (!__atomic_load_n(&pubs[i].done, __ATOMIC_ACQUIRE))
				done = 0;
			else if (pubs[i].t1 > last)
				last = pubs[i].t1;
		}
		if (!done)
			continue;
		if (nsubs == 0)
			return 0;
		for (i = 0; i < nsubs; i++) {
			t = __atomic_load_n(&subs[i].last_ns,
			    __ATOMIC_RELAXED);
			if (t > last)
				last = t;
		}
		if (now_ns() - last >= (uint64_t)o->idle_ns)
			return 1;
	}
}

static int
valid_topic(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > FERRY_NAME_MAX)
		return 0;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789._-") == n;
}

static void
parse(struct opts *o, int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "pub", required_argument, NULL, 'P' },
		{ "sub", required_argument, NULL, 'S' },
		{ "groups", required_argument, NULL, 'G' },
		{ "msgs", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "no-ack", no_argument, NULL, 'N' },
		{ "confirm", no_argument, NULL, 'c' },
		{ "window", required_argument, NULL, 'w' },
		{ "producer", no_argument, NULL, 'I' },
		{ "rate", required_argument, NULL, 'r' },
		{ "prefetch", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 't' },
		{ "keep", no_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (ch) {
		case 'P':
			o->npub = (uint32_t)cli_parse_num("--pub", optarg, 1, 1000);
			break;
		case 'S':
			o->nsub = (uint32_t)cli_parse_num("--sub", optarg, 0, 1000);
			break;
		case 'G':
			o->ngroups = (uint32_t)cli_parse_num("--groups", optarg, 1,
			    1000);
			break;
		case 'n':
			o->msgs = cli_parse_num("--msgs", optarg, 1,
			    (unsigned long long)UINT32_MAX * 1000);
			break;
		case 's':
			o->size = (size_t)cli_parse_num("--size", optarg,
			    BENCHSTAT_BODY_MIN, 1024ULL * 1024 * 1024);
			break;
		case 'N':
			o->no_ack = 1;
			break;
		case 'c':
			o->confirm = 1;
			break;
		case 'I':
			o->producer = 1;
			break;
		case 'w':
			o->window = (uint32_t)cli_parse_num("--window", optarg, 1,
			    10000000);
			break;
		case 'r':
			o->rate = cli_parse_positive("--rate", optarg, 1e9);
			break;
		case 'p':
			o->prefetch = (uint32_t)cli_parse_num("--prefetch", optarg,
			    1, UINT32_MAX);
			break;
		case 't':
			o->idle_ns = (int64_t)(cli_parse_positive("--timeout",
			    optarg, 86400) * 1e9);
			break;
		case 'k':
			o->keep = 1;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'h':
			fputs(bench_usage, stdout);
			exit(0);
		default:
			cli_usage_error("bad option");
		}
	}
	if (o->producer && !o->confirm)
		cli_usage_error("--producer needs --confirm (a fire-and-forget "
		    "publish carries no pid)");
	if (optind >= argc)
		cli_usage_error("missing TOPIC");
	o->topic = argv[optind++];
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!valid_topic(o->topic))
		cli_usage_error("'%s' is not a topic name (1..%d of A-Z a-z 0-9 "
		    ". - _)", o->topic, FERRY_NAME_MAX);
	/* Sequence numbers travel as 32 bits. */
	if (o->msgs / o->npub >= UINT32_MAX)
		cli_usage_error("--msgs: at most %" PRIu32 " per publisher",
		    UINT32_MAX - 1);
}

/* Delete the scratch topic with its groups; 0 or -1. */
static int
cleanup(const struct opts *o)
{
	char err[ERR_LEN] = "";
	struct ferry *f = bench_connect(o, "bench-cleanup", err, sizeof(err));
	int r;

	if (f == NULL) {
		fprintf(stderr, "ferry: bench: cleanup: %s\n", err);
		return -1;
	}
	r = ferry_delete(f, o->topic, NULL);
	if (r < 0 && r != FERRY_ENOTFOUND)
		fprintf(stderr, "ferry: bench: delete %s: %s\n", o->topic,
		    ferry_errstr(f));
	ferry_close(f);
	return r < 0 && r != FERRY_ENOTFOUND ? -1 : 0;
}

int
bench_main(const char *host, int port, int timeout_ms, int argc,
    char **argv)
{
	struct opts o = {
		.host = host, .port = port, .conn_ms = timeout_ms,
		.npub = 1, .nsub = 1, .ngroups = 1, .msgs = 100000,
		.size = 128, .window = 1000, .prefetch = 1000,
		.idle_ns = 5000000000LL,
	};
	struct run r;
	struct result res;
	struct pub *pubs;
	struct sub *subs;
	struct sigaction sa;
	uint32_t i, nsubs;
	uint64_t share;
	int status = 0, e, setup_failed;

	cli_command = "bench";	/* names it in usage errors */
	parse(&o, argc, argv);
	nsubs = o.nsub * o.ngroups;

	memset(&r, 0, sizeof(r));
	memset(&res, 0, sizeof(res));
	r.o = &o;
	/* Only needs to differ from a leftover run's; not a secret. */
	r.nonce = (uint32_t)(now_ns() ^ ((uint64_t)getpid() << 16));
	pubs = calloc(o.npub, sizeof(*pubs));
	subs = calloc(nsubs ? nsubs : 1, sizeof(*subs));
	r.tally = calloc(o.ngroups, sizeof(*r.tally));
	res.gc = calloc(o.ngroups, sizeof(*res.gc));
	if (pubs == NULL || subs == NULL || r.tally == NULL ||
	    res.gc == NULL) {
		fprintf(stderr, "ferry: bench: out of memory\n");
		return 1;
	}
	for (i = 0; i < o.ngroups; i++)
		if (benchstat_tally_init(&r.tally[i], o.msgs, o.npub) < 0) {
			fprintf(stderr, "ferry: bench: out of memory\n");
			return 1;
		}
	/* Room for a fair share and some imbalance, grown if need be. */
	share = o.nsub ? o.msgs / o.nsub : 0;
	share += share / 4 + 1024;
	for (i = 0; i < nsubs; i++) {
		subs[i].r = &r;
		subs[i].group = i / o.nsub;
		subs[i].idx = i % o.nsub;
		subs[i].cap = share < o.msgs ? share : o.msgs;
		subs[i].lat = malloc(subs[i].cap * sizeof(uint64_t));
		if (subs[i].lat == NULL)
			subs[i].cap = 0;
	}
	for (i = 0; i < o.npub; i++) {
		pubs[i].r = &r;
		pubs[i].id = i;
		pubs[i].n = benchstat_share(o.msgs, o.npub, i);
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* Everyone, and this thread, meet once subscribed and connected. */
	e = pthread_barrier_init(&r.start, NULL, o.npub + nsubs + 1);
	for (i = 0; e == 0 && i < nsubs; i++)
		e = pthread_create(&subs[i].th, NULL, sub_thread, &subs[i]);
	for (i = 0; e == 0 && i < o.npub; i++)
		e = pthread_create(&pubs[i].th, NULL, pub_thread, &pubs[i]);
	if (e != 0) {
		/* A barrier cannot shrink: threads already waiting at it
		 * would wait forever, so give up on the spot. */
		fprintf(stderr, "ferry: bench: cannot start threads: %s\n",
		    strerror(e));
		exit(1);
	}
	pthread_barrier_wait(&r.start);
	/* A thread that could not connect or subscribe said so already. */
	setup_failed = __atomic_load_n(&r.abort, __ATOMIC_RELAXED);
	res.idle_stop = monitor(&o, &r, pubs, subs);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < nsubs; i++)
		pthread_join(subs[i].th, NULL);
	for (i = 0; i < o.npub; i++)
		pthread_join(pubs[i].th, NULL);
	pthread_barrier_destroy(&r.start);

	res.interrupted = interrupted;
	if (collect(&o, &r, pubs, subs, &res) < 0 || setup_failed)
		status = 1;
	else if (o.json)
		print_json(&o, &res);
	else
		print_text(&o, &res);
	fflush(stdout);
	if (res.lost || res.bad || res.errors || res.pub_failed ||
	    interrupted)
		status = 1;
	if (!o.keep && cleanup(&o) < 0)
		status = 1;

	for (i = 0; i < nsubs; i++)
		free(subs[i].lat);
	for (i = 0; i < o.ngroups; i++)
		benchstat_tally_fini(&r.tally[i]);
	free(r.tally);
	free(res.gc);
	free(pubs);
	free(subs);
	return status;
}
