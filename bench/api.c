/*
 * api.c - libferry's blocking API against its asynchronous one, on the
 * same workload: one producer publishing --msgs confirmed messages of 128
 * bytes (pipelined, at most --window unconfirmed), one consumer acking
 * each delivery (prefetch 1000), each on its own thread and connection.
 * Prints confirmed publishes per second and deliveries per second, from
 * the first publish to the last confirm and the last delivery.
 *
 *	build/bench/ferry-api-bench --api sync|async [--msgs N]
 *	    [--window N] [--port P] [--host H]
 *
 * The topic is named after the process and deleted at the end.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ferry.h"

#define SIZE 128

static const char *host = "127.0.0.1";
static int port = FERRY_DEFAULT_PORT, async_api;
static uint64_t msgs = 200000, window = 1000;
static char topic[64];
static uint64_t t_start, t_pub, t_sub;	/* ns */
static pthread_barrier_t ready;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what, const char *why)
{
	fprintf(stderr, "ferry-api-bench: %s: %s\n", what, why);
	exit(1);
}

/* --- Blocking ------------------------------------------------------------ */

static void *
sync_producer(void *arg)
{
	struct ferry *f = ferry_connect(host, port, 30000, "api-bench-pub");
	struct ferry_confirms c;
	char body[SIZE];
	uint64_t failed = 0;

	if (ferry_err(f))
		die("connect", ferry_errstr(f));
	memset(body, 'x', sizeof(body));
	pthread_barrier_wait(&ready);
	t_start = now_ns();
	for (uint64_t i = 0; i < msgs; i++) {
		if (ferry_pending(f) >= window) {
			if (ferry_wait_confirms(f, window - 1, 30000, &c) < 0)
				die("confirms", ferry_errstr(f));
			failed += c.failed;
		}
		if (ferry_publish_pipelined(f, topic, body, sizeof(body), NULL,
		    NULL) < 0)
			die("publish", ferry_errstr(f));
	}
	if (ferry_wait_confirms(f, 0, 30000, &c) < 0)
		die("confirms", ferry_errstr(f));
	t_pub = now_ns();
	if (failed + c.failed)
		die("publish", "refused");
	ferry_close(f);
	return NULL;
}

static void *
sync_consumer(void *arg)
{
	struct ferry *f = ferry_connect(host, port, 30000, "api-bench-sub");
	struct ferry_sub_opts so = { .group = "g", .prefetch = 1000 };
	struct ferry_msg *m;
	uint64_t got = 0;

	if (ferry_err(f) || ferry_subscribe(f, topic, &so, NULL) < 0)
		die("subscribe", ferry_errstr(f));
	pthread_barrier_wait(&ready);
	while (got < msgs) {
		if (ferry_next(f, 30000, &m) < 0)
			die("next", ferry_errstr(f));
		got++;
		ferry_ack(f, m->sid, m->lease, 0);
		ferry_msg_free(m);
	}
	t_sub = now_ns();
	ferry_flush(f);
	ferry_close(f);
	return NULL;
}

/* --- Asynchronous --------------------------------------------------------- */

struct apub {
	struct ferry_async *a;
	struct event_base *base;
	uint64_t sent, confirmed;
	char body[SIZE];
};

static void publish_more(struct apub *p);

static void
on_confirm(struct ferry_async *a, const struct ferry_confirm *c, void *arg)
{
	struct apub *p = arg;

	if (c->err)
		die("publish", c->errmsg);
	if (++p->confirmed == msgs) {
		t_pub = now_ns();
		event_base_loopbreak(p->base);
		return;
	}
	publish_more(p);
}

/* Keep window publishes unconfirmed: each confirm sends one more, and
 * all sent in one loop turn leave in one write. */
static void
publish_more(struct apub *p)
{
	while (p->sent < msgs && p->sent - p->confirmed < window) {
		if (ferry_async_publish(p->a, topic, p->body, sizeof(p->body),
		    NULL, on_confirm, p) < 0)
			die("publish", ferry_async_errstr(p->a));
		p->sent++;
	}
}

static void
on_pub_status(struct ferry_async *a, int st, void *arg)
{
	if (st == FERRY_ASYNC_FAILED)
		die("producer", ferry_async_errstr(a));
}

static void *
async_producer(void *arg)
{
	struct ferry_async_opts o = { .name = "api-bench-pub",
	    .on_status = on_pub_status };
	struct apub p;

	memset(&p, 0, sizeof(p));
	memset(p.body, 'x', sizeof(p.body));
	p.base = event_base_new();
	p.a = ferry_async_connect(p.base, host, port, &o);
	if (ferry_async_err(p.a))
		die("connect", ferry_async_errstr(p.a));
	pthread_barrier_wait(&ready);
	t_start = now_ns();
	publish_more(&p);
	event_base_dispatch(p.base);
	ferry_async_free(p.a);
	event_base_free(p.base);
	return NULL;
}

struct asub {
	struct event_base *base;
	uint64_t got;
	int subscribed;
};

static void
on_msg(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	struct asub *s = arg;

	ferry_async_ack(a, m->sid, m->lease, NULL, NULL);
	if (++s->got == msgs) {
		t_sub = now_ns();
		event_base_loopbreak(s->base);
	}
}

static void
on_subscribed(struct ferry_async *a, int err, void *arg)
{
	struct asub *s = arg;

	if (err)
		die("subscribe", ferry_strerror(err));
	s->subscribed = 1;
	event_base_loopbreak(s->base);
}

static void *
async_consumer(void *arg)
{
	struct ferry_async_opts o = { .name = "api-bench-sub",
	    .on_status = on_pub_status };
	struct ferry_sub_opts so = { .group = "g", .prefetch = 1000 };
	struct asub s;
	struct ferry_async *a;

	memset(&s, 0, sizeof(s));
	s.base = event_base_new();
	a = ferry_async_connect(s.base, host, port, &o);
	if (ferry_async_err(a) || ferry_async_subscribe(a, topic, &so, on_msg,
	    on_subscribed, &s, NULL) < 0)
		die("subscribe", ferry_async_errstr(a));
	event_base_dispatch(s.base);	/* until subscribed */
	pthread_barrier_wait(&ready);
	event_base_dispatch(s.base);	/* until every message came */
	ferry_async_free(a);		/* the topic is deleted anyway */
	event_base_free(s.base);
	return NULL;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api", required_argument, NULL, 'a' },
		{ "msgs", required_argument, NULL, 'n' },
		{ "window", required_argument, NULL, 'w' },
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	pthread_t pub, sub;
	struct ferry *f;
	double ps, ss;
	int ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (strcmp(optarg, "sync") && strcmp(optarg, "async"))
				die("--api", "sync or async");
			async_api = strcmp(optarg, "async") == 0;
			break;
		case 'n':
			msgs = strtoull(optarg, NULL, 10);
			break;
		case 'w':
			window = strtoull(optarg, NULL, 10);
			break;
		case 'H':
			host = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (msgs == 0 || window == 0)
		die("usage", "--msgs and --window must be above 0");
	snprintf(topic, sizeof(topic), "api-bench-%d", (int)getpid());
	pthread_barrier_init(&ready, NULL, 2);
	/* The consumer subscribes before the producer starts. */
	pthread_create(&sub, NULL, async_api ? async_consumer : sync_consumer,
	    NULL);
	pthread_create(&pub, NULL, async_api ? async_producer : sync_producer,
	    NULL);
	pthread_join(pub, NULL);
	pthread_join(sub, NULL);
	ps = (double)(t_pub - t_start) / 1e9;
	ss = (double)(t_sub - t_start) / 1e9;
	printf("%s: %" PRIu64 " messages of %d bytes, window %" PRIu64
	    ": %.0f confirmed publishes/s, %.0f deliveries/s (acked)\n",
	    async_api ? "async" : "sync", msgs, SIZE, window, msgs / ps,
	    msgs / ss);
	f = ferry_connect(host, port, 5000, "api-bench-cleanup");
	ferry_delete(f, topic, NULL);
	ferry_close(f);
	return 0;
}
