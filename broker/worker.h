/*
 * worker.h - one helper thread running slow file work (unlink, fallocate)
 * in order, beside the loop, so that the loop thread never waits on it.
 *
 * A job is two functions and an argument: run(arg) in the worker thread,
 * then done(arg) in the loop thread (from an event on the event_base), in
 * submission order.  run must touch nothing the loop owns except what the
 * caller hands it through arg; done may touch anything.  arg stays the
 * caller's: done is where it is freed.
 *
 * The worker wakes the loop through an eventfd watched by a libevent
 * event, as the journal's sync thread does, so no evthread locking is
 * needed on the event_base.
 */
#ifndef FERRY_BROKER_WORKER_H
#define FERRY_BROKER_WORKER_H

struct event_base;
struct worker;

/*
 * Start the thread.  base is borrowed and must outlive the worker; name
 * (copied, at most 15 bytes are used) names the thread for ps and gdb.
 * 0 or -errno (eventfd, thread creation, -ENOMEM).
 */
int worker_new(struct worker **wp, struct event_base *base,
    const char *name);

/*
 * Queue run(arg), then done(arg) (done may be NULL).  Never blocks on the
 * disk.  0, or -ENOMEM: nothing was queued and arg is still the caller's.
 */
int worker_submit(struct worker *w, void (*run)(void *arg),
    void (*done)(void *arg), void *arg);

/* Jobs submitted and not yet done (their done() has not run). */
unsigned worker_pending(const struct worker *w);

/*
 * Run every job still queued, stop the thread, then call the done() of
 * every job whose done() had not run, in order, in the caller's thread.
 * NULL is a no-op.
 */
void worker_free(struct worker *w);

#endif
