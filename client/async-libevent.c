/*
 * async-libevent.c - the asynchronous API on libevent: the adapter
 * (struct lf_loop, ferry-int.h) through which async.c's driver runs on
 * the caller's event_base, and ferry_async_connect().
 *
 * One read and one write event on the socket, both persistent, the write
 * one added only while the driver has output; one timer.  Events of a
 * socket that was closed are deleted at once but freed on the next change
 * or at cleanup, never inside their own callback.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "ferry-int.h"

struct lev {
	struct event_base *base;	/* the caller's */
	struct ferry_async *a;
	int fd;			/* watched, or -1 */
	struct event *rev, *wev;	/* on fd */
	struct event *old_rev, *old_wev; /* of the previous fd, deleted */
	struct event *tev;
};

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	lf_async_read(((struct lev *)arg)->a);	/* may free arg */
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
	lf_async_write(((struct lev *)arg)->a);	/* may free arg */
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	lf_async_timer(((struct lev *)arg)->a);	/* may free arg */
}

static void
bury(struct lev *l)
{
	if (l->old_rev != NULL)
		event_free(l->old_rev);
	if (l->old_wev != NULL)
		event_free(l->old_wev);
	l->old_rev = l->old_wev = NULL;
}

static void
lev_watch(void *data, int fd, int write)
{
	struct lev *l = data;

	if (fd != l->fd) {
		bury(l);
		if (l->rev != NULL)
			event_del(l->rev);
		if (l->wev != NULL)
			event_del(l->wev);
		l->old_rev = l->rev;
		l->old_wev = l->wev;
		l->rev = l->wev = NULL;
		l->fd = fd;
		if (fd >= 0) {
			l->rev = event_new(l->base, fd, EV_READ | EV_PERSIST,
			    on_read, l);
			l->wev = event_new(l->base, fd, EV_WRITE | EV_PERSIST,
			    on_write, l);
			/* Without them the attempt times out (the timer). */
			if (l->rev != NULL)
				event_add(l->rev, NULL);
		}
	}
	if (l->wev == NULL)
		return;
	if (write)
		event_add(l->wev, NULL);
	else
		event_del(l->wev);
}

static void
lev_timer(void *data, int64_t ms)
{
	struct lev *l = data;
	struct timeval tv;

	if (ms < 0) {
		evtimer_del(l->tev);
		return;
	}
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(l->tev, &tv);
}

static void
lev_cleanup(void *data)
{
	struct lev *l = data;

	bury(l);
	if (l->rev != NULL)
		event_free(l->rev);
	if (l->wev != NULL)
		event_free(l->wev);
	if (l->tev != NULL)
		event_free(l->tev);
	free(l);
}

struct ferry_async *
ferry_async_connect(struct event_base *base, const char *host, int port,
    const struct ferry_async_opts *o)
{
	struct ferry_async *a;
	struct lf_loop loop;
	struct lev *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->base = base;
	l->fd = -1;
	if ((l->tev = evtimer_new(base, on_timer, l)) == NULL) {
		free(l);
		return NULL;
	}
	loop.data = l;
	loop.watch = lev_watch;
	loop.timer = lev_timer;
	loop.cleanup = lev_cleanup;
	/* Events fire only from the loop, after l->a is set; on failure
	 * lf_async_new() has freed l. */
	a = lf_async_new(host, port, o, &loop);
	if (a != NULL)
		l->a = a;
	return a;
}
