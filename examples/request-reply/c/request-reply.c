/*
 * request-reply: a request, its reply matched by correlation id, and a
 * timeout, with libferry's asynchronous API on one libevent loop.
 *
 * The requester listens on a private inbox (an ephemeral subscription to
 * a topic named "_inbox.<something unique>") and sends each request with
 * reply_to = its inbox and a correlation id; the responder publishes its
 * reply to reply_to with the same correlation id; the requester matches
 * replies to requests by that id, and gives a request up after 1 s.
 * (ferry_async_request() does all of this in one call; here it is spelled
 * out.)  The responder ignores "sleep", to show the timeout.
 *
 * FERRY_HOST and FERRY_PORT name the broker (default 127.0.0.1:4470).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <ferry.h>

#define NREQ 4

struct request {
	char corr[16];		/* the correlation id: "req-1" ... */
	const char *body;
	struct event *timeout;
	int answered;
};

static struct event_base *base;
static struct ferry_async *responder, *requester;
static char service[64], inbox[64];
static struct request reqs[NREQ] = {
	{ .body = "hello" }, { .body = "ferry" }, { .body = "world" },
	{ .body = "sleep" },
};
static int pending = NREQ, subscribed;

static void
resolved(void)
{
	if (--pending == 0)
		event_base_loopexit(base, NULL);
}

/* The service: upper-case the body, reply to reply_to with its corr. */
static void
on_request(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	char out[64];
	size_t i;

	for (i = 0; i < m->len && i < sizeof(out); i++)
		out[i] = (char)toupper(((const unsigned char *)m->body)[i]);
	if (strcmp(m->body, "sleep") != 0)
		ferry_async_reply(a, m, out, i, NULL, NULL);
	ferry_async_ack(a, m->sid, m->lease, NULL, NULL);
}

/* The requester's inbox: which request does this reply answer? */
static void
on_reply(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	for (int i = 0; i < NREQ; i++) {
		if (strcmp(reqs[i].corr, m->corr) != 0 || reqs[i].answered)
			continue;
		reqs[i].answered = 1;
		evtimer_del(reqs[i].timeout);
		printf("%s: %s -> %.*s\n", reqs[i].corr, reqs[i].body,
		    (int)m->len, (const char *)m->body);
		resolved();
		return;
	}
	/* No match: a late reply to a request we gave up on. */
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct request *r = arg;

	printf("%s: %s -> no reply within 1 s\n", r->corr, r->body);
	resolved();
}

/* Both subscriptions are in place: send the requests. */
static void
on_subscribed(struct ferry_async *a, int err, void *arg)
{
	struct timeval timeout = { 1, 0 };

	if (err != 0) {
		fprintf(stderr, "subscribe: %s\n", ferry_strerror(err));
		exit(1);
	}
	if (++subscribed < 2)
		return;
	for (int i = 0; i < NREQ; i++) {
		struct ferry_pub_opts po = { .reply_to = inbox,
		    .corr = reqs[i].corr };

		snprintf(reqs[i].corr, sizeof(reqs[i].corr), "req-%d", i + 1);
		reqs[i].timeout = evtimer_new(base, on_timeout, &reqs[i]);
		evtimer_add(reqs[i].timeout, &timeout);
		ferry_async_publish(requester, service, reqs[i].body,
		    strlen(reqs[i].body), &po, NULL, NULL);
	}
}

int
main(void)
{
	const char *host = getenv("FERRY_HOST"), *port = getenv("FERRY_PORT");
	int p = port ? atoi(port) : FERRY_DEFAULT_PORT;
	struct ferry_sub_opts inbox_opts = { .ephemeral = 1,
	    .mode = FERRY_AT_MOST_ONCE };
	struct timeval limit = { 10, 0 };
	struct ferry *f;

	base = event_base_new();
	snprintf(service, sizeof(service), "example.upper.%d", (int)getpid());
	snprintf(inbox, sizeof(inbox), "_inbox.example-%d", (int)getpid());
	responder = ferry_async_connect(base, host, p, NULL);
	requester = ferry_async_connect(base, host, p, NULL);
	if (ferry_async_err(responder) || ferry_async_err(requester)) {
		fprintf(stderr, "cannot connect\n");
		return 1;
	}
	ferry_async_subscribe(responder, service, NULL, on_request,
	    on_subscribed, NULL, NULL);
	ferry_async_subscribe(requester, inbox, &inbox_opts, on_reply,
	    on_subscribed, NULL, NULL);
	event_base_loopexit(base, &limit);	/* never hang */
	event_base_dispatch(base);

	for (int i = 0; i < NREQ; i++)
		if (reqs[i].timeout != NULL)
			event_free(reqs[i].timeout);
	ferry_async_free(requester);
	ferry_async_free(responder);
	event_base_free(base);
	/* Clean up the service's queue with one blocking call. */
	f = ferry_connect(host, p, 5000, "cleanup");
	ferry_delete(f, service, NULL);
	ferry_close(f);
	return pending == 0 ? 0 : 1;
}
