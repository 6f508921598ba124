/*
 * work-queue: several workers sharing one queue (competing consumers),
 * with libferry's asynchronous API on one libevent loop.
 *
 * Three workers join the same group "workers": each job goes to one of
 * them.  With prefetch 1 a worker holds one job at a time, so a busy
 * worker is skipped and the jobs spread over all three.  A job is acked
 * when its (simulated, 20 ms) work is done; a worker that died before
 * acking would have its job redelivered to another.
 *
 * FERRY_HOST and FERRY_PORT name the broker (default 127.0.0.1:4470).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <ferry.h>

#define JOBS 30
#define WORKERS 3

struct worker {
	struct ferry_async *a;
	struct event *work;	/* the job's "work": a 20 ms timer */
	uint64_t sid, lease;	/* the job in hand */
	int done;
};

static struct event_base *base;
static char topic[64];
static int done, seen[JOBS], ready;
static struct ferry_async *producer;

static void
work_finished(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	ferry_async_ack(w->a, w->sid, w->lease, NULL, NULL);
	w->done++;
	if (++done == JOBS)
		event_base_loopexit(base, NULL);
}

static void
on_job(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	struct worker *w = arg;
	struct timeval t = { 0, 20000 };

	seen[atoi(m->body)]++;
	w->sid = m->sid;
	w->lease = m->lease;
	evtimer_add(w->work, &t);
}

/* Once every worker is in the group, queue the jobs. */
static void
on_joined(struct ferry_async *a, int err, void *arg)
{
	char job[16];

	if (err != 0) {
		fprintf(stderr, "subscribe: %s\n", ferry_strerror(err));
		exit(1);
	}
	if (++ready < WORKERS)
		return;
	for (int i = 0; i < JOBS; i++) {
		snprintf(job, sizeof(job), "%d", i);
		ferry_async_publish(producer, topic, job, strlen(job), NULL,
		    NULL, NULL);
	}
}

static struct ferry_async *
connect_as(const char *name)
{
	const char *port = getenv("FERRY_PORT");
	struct ferry_async_opts o = { .name = name };
	struct ferry_async *a = ferry_async_connect(base, getenv("FERRY_HOST"),
	    port ? atoi(port) : FERRY_DEFAULT_PORT, &o);

	if (ferry_async_err(a)) {
		fprintf(stderr, "%s\n", ferry_async_errstr(a));
		exit(1);
	}
	return a;
}

int
main(void)
{
	struct ferry_sub_opts so = { .group = "workers", .prefetch = 1 };
	struct timeval limit = { 10, 0 };
	struct worker w[WORKERS];
	int busy = 0, once = 1;
	const char *port;
	struct ferry *f;
	char name[16];

	base = event_base_new();
	snprintf(topic, sizeof(topic), "example.jobs.%d", (int)getpid());
	producer = connect_as("producer");
	for (int i = 0; i < WORKERS; i++) {
		snprintf(name, sizeof(name), "worker-%d", i + 1);
		w[i].a = connect_as(name);
		w[i].work = evtimer_new(base, work_finished, &w[i]);
		w[i].done = 0;
		ferry_async_subscribe(w[i].a, topic, &so, on_job, on_joined,
		    &w[i], NULL);
	}
	event_base_loopexit(base, &limit);	/* never hang */
	event_base_dispatch(base);

	for (int i = 0; i < JOBS; i++)
		once &= seen[i] == 1;
	for (int i = 0; i < WORKERS; i++) {
		busy += w[i].done > 0;
		event_free(w[i].work);
		ferry_async_free(w[i].a);
	}
	ferry_async_free(producer);
	printf("%d jobs done, %s, shared by %d workers\n", done,
	    once ? "each exactly once" : "SOME NOT EXACTLY ONCE", busy);
	/* Clean up with one blocking call. */
	port = getenv("FERRY_PORT");
	f = ferry_connect(getenv("FERRY_HOST"), port ? atoi(port) :
	    FERRY_DEFAULT_PORT, 5000, "cleanup");
	ferry_delete(f, topic, NULL);
	ferry_close(f);
	event_base_free(base);
	return done == JOBS && once ? 0 : 1;
}
