/*
 * reconnect.c - re-establishing a lost connection (see
 * ferry_set_reconnect() in ferry.h).
 *
 * The blocking driver's loop around the core's lf_restore(): backoff
 * with full jitter, connect, restore, wait for the subscriptions'
 * answers.  It sits above sync.c: ferry_set_reconnect() plugs it into
 * the handle as f->recover, which the blocking calls reach through
 * lf_recover(), so sync.c never calls in here.  The async driver has
 * its own, non-blocking loop (async.c) around the same lf_restore().
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry-int.h"

static int
done_resub(struct ferry *f, void *arg)
{
	uint64_t rid;

	for (rid = f->plo; rid < f->next_rid; rid++)
		if (f->pend[rid & (f->pcap - 1)].kind == PEND_RESUB)
			return 0;
	return 1;
}

/*
 * f->recover of a blocking handle with reconnection on (lf_recover()):
 * if f->err is a lost connection that may be re-established, reconnect
 * (blocking, with backoff) and restore the handle's state.  Returns 0 when
 * the handle is usable again, else its fatal error.
 */
static int
recover(struct ferry *f)
{
	struct ferry_reconnect_info info;
	int64_t start = lf_now_ms(), left;
	unsigned backoff, base, cap;
	char why[FERRY_ERRSTR_LEN];
	int r, wait;

	if (f->err == 0)
		return 0;
	if (!f->lost || f->reconnecting)
		return f->err;
	f->lost = 0;
	memset(&info, 0, sizeof(info));
	info.cause = f->err;
	snprintf(why, sizeof(why), "%s", f->errstr);
	info.dropped = lf_mlist_free(&f->mhead, &f->mtail) +
	    lf_mlist_free(&f->rhead, &f->rtail);
	base = f->rc.base_ms ? f->rc.base_ms : 100;
	cap = f->rc.max_backoff_ms ? f->rc.max_backoff_ms : 5000;
	backoff = base;
	f->reconnecting = 1;
	f->gen++;	/* from now on, deliveries carry new sids */
	for (;;) {
		wait = (int)lf_jitter(f, backoff);
		if (f->rc.max_time_ms) {
			left = start + f->rc.max_time_ms - lf_now_ms();
			if (left < wait)
				wait = left > 0 ? (int)left : 0;
		}
		if (wait > 0)
			poll(NULL, 0, wait);
		backoff = backoff > cap / 2 ? cap : backoff * 2;
		info.attempts++;
		/* Start over: nothing of the old connection is valid. */
		f->err = 0;
		f->close_code = 0;
		f->welcomed = 0;
		fy_enc_clear(&f->enc);
		f->wpos = 0;
		f->wnext = FLUSH_AT;
		f->rstart = f->rend = f->rwant = 0;
		f->rc_lost_subs = 0;
		left = f->timeout_ms;
		if (f->rc.max_time_ms) {
			int64_t l2 = start + f->rc.max_time_ms - lf_now_ms();

			if (left < 0 || l2 < left)
				left = l2 > 1 ? l2 : 1;
		}
		lf_do_connect(f, f->host, f->port, (int)left);
		r = f->err;
		if (r == 0)
			r = lf_restore(f, &info);
		if (r == 0)
			r = lf_wait_for(f, f->timeout_ms, done_resub, NULL);
		if (r == 0)
			break;
		if ((f->rc.max_attempts && info.attempts >= f->rc.max_attempts)
		    || (f->rc.max_time_ms && lf_now_ms() - start >=
		    (int64_t)f->rc.max_time_ms) || r == FERRY_ENOMEM) {
			f->reconnecting = 0;
			lf_tls_drop(f);
			if (f->fd >= 0)
				close(f->fd);
			f->fd = -1;
			f->err = r;
			lf_seterr(f, r, "connection lost (%.40s); reconnect "
			    "gave up after %u attempts: %.40s", why,
			    info.attempts, f->errstr);
			lf_fail_pending(f, r);
			info.err = r;
			info.elapsed_ms = (uint64_t)(lf_now_ms() - start);
			if (f->rc.fn != NULL)
				f->rc.fn(f->rc.arg, &info);
			return r;
		}
	}
	f->reconnecting = 0;
	f->nreconnects++;
	info.resubscribed = f->nsubs;
	info.lost_subs = f->rc_lost_subs;
	info.elapsed_ms = (uint64_t)(lf_now_ms() - start);
	if (f->rc.fn != NULL)
		f->rc.fn(f->rc.arg, &info);
	return 0;
}

int
ferry_set_reconnect(struct ferry *f, const struct ferry_reconnect_opts *o)
{
	int r = lf_set_reconnect(f, o);

	if (r == 0)
		f->recover = recover;	/* the blocking driver's loop */
	return r;
}

uint64_t
ferry_reconnects(const struct ferry *f)
{
	return f->nreconnects;
}
