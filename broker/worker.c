/*
 * worker.c - a helper thread for slow file work (see worker.h).
 *
 * Jobs move from todo (queued) to finished (run, waiting for done()) under
 * mu; the loop takes the whole finished list at each wake-up, so one
 * eventfd write may stand for many jobs.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

struct job {
	void (*run)(void *);
	void (*done)(void *);
	void *arg;
	struct job *next;
};

struct jobq {
	struct job *head, *tail;
};

struct worker {
	struct event_base *base;	/* borrowed */
	int efd;		/* eventfd: worker -> loop */
	struct event *ev;
	unsigned pending;	/* loop side: submitted, done() not run */

	pthread_mutex_t mu;	/* guards what follows */
	pthread_cond_t cv;
	struct jobq todo;
	struct jobq finished;
	int stop;
	pthread_t thread;
	int started;
};

static void
jobq_push(struct jobq *q, struct job *jb)
{
	jb->next = NULL;
	if (q->tail)
		q->tail->next = jb;
	else
		q->head = jb;
	q->tail = jb;
}

static struct job *
jobq_pop(struct jobq *q)
{
	struct job *jb = q->head;

	if (jb) {
		q->head = jb->next;
		if (q->head == NULL)
			q->tail = NULL;
	}
	return jb;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct job *jb;
	uint64_t one = 1;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->todo.head == NULL && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		jb = jobq_pop(&w->todo);
		if (jb == NULL)
			break;		/* stopping, and the queue is empty */
		pthread_mutex_unlock(&w->mu);
		jb->run(jb->arg);
		pthread_mutex_lock(&w->mu);
		jobq_push(&w->finished, jb);
		pthread_mutex_unlock(&w->mu);
		/* Outside the lock: the loop this wakes takes it at once, and
		 * would wait in futex() for as long as this thread, preempted
		 * by its own wake-up, held it.  A full eventfd counter still
		 * wakes the loop: ignore EAGAIN. */
		if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_error("worker: eventfd write: %s",
			    strerror(errno));
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Call done() of every finished job, oldest first. */
static void
harvest(struct worker *w)
{
	struct jobq q;
	struct job *jb;

	pthread_mutex_lock(&w->mu);
	q = w->finished;
	w->finished.head = w->finished.tail = NULL;
	pthread_mutex_unlock(&w->mu);
	while ((jb = jobq_pop(&q)) != NULL) {
		w->pending--;
		if (jb->done)
			jb->done(jb->arg);
		free(jb);
	}
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_error("worker: eventfd read: %s", strerror(errno));
	harvest(w);
}

int
worker_new(struct worker **wp, struct event_base *base, const char *name)
{
	struct worker *w;
	sigset_t all, old;
	char tname[16];
	int r;

	*wp = NULL;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->base = base;
	w->efd = -1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		r = -errno;
		goto fail;
	}
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, wake_cb, w);
	if (w->ev == NULL || event_add(w->ev, NULL) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	/* the broker's signals belong to the loop thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		r = -r;
		goto fail;
	}
	w->started = 1;
	snprintf(tname, sizeof(tname), "%s", name ? name : "worker");
	pthread_setname_np(w->thread, tname);
	*wp = w;
	return 0;
fail:
	worker_free(w);
	return r;
}

int
worker_submit(struct worker *w, void (*run)(void *), void (*done)(void *),
    void *arg)
{
	struct job *jb = malloc(sizeof(*jb));

	if (jb == NULL)
		return -ENOMEM;
	jb->run = run;
	jb->done = done;
	jb->arg = arg;
	pthread_mutex_lock(&w->mu);
	jobq_push(&w->todo, jb);
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	w->pending++;
	return 0;
}

unsigned
worker_pending(const struct worker *w)
{
	return w->pending;
}

void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		w->stop = 1;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL);
	}
	harvest(w);	/* the thread ran every queued job before it ended */
	if (w->ev)
		event_free(w->ev);
	if (w->efd >= 0)
		close(w->efd);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
