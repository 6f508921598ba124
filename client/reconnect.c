/*
 * reconnect.c - re-establishing a lost connection (see
 * ferry_set_reconnect() in ferry.h).
 *
 * lf_restore() puts a fresh connection back in the state the handle had:
 * it encodes the subscriptions and the unanswered confirmed publishes
 * again, without waiting.  lf_recover() is the blocking driver's loop
 * around it: backoff with full jitter, connect, restore, wait for the
 * subscriptions' answers.
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
 * On a fresh connection: subscribe again, send unanswered confirmed
 * publishes again, fail the other requests that were waiting.  Only
 * encodes: the subscriptions' answers are for the driver to wait for.
 * Returns 0 or the connection's error.
 */
int
lf_restore(struct ferry *f, struct ferry_reconnect_info *info)
{
	uint64_t rid, end = f->next_rid;
	size_t i;

	for (i = 0; i < f->nsubs;) {
		struct lsub *s = &f->subs[i];

		s->bsid = 0;
		if (s->closing || s->pending) {
			lf_sub_remove(f, s);
			continue;
		}
		i++;
	}
	/* Subscriptions first, so that a resent request finds its inbox. */
	for (i = 0; i < f->nsubs; i++) {
		rid = lf_pend_new(f, PEND_RESUB, 0);
		if (rid == 0)
			return lf_fatal(f, FERRY_ENOMEM, "out of memory");
		f->pend[rid & (f->pcap - 1)].sub = f->subs[i].n;
		if (lf_encode_sub(f, &f->subs[i], rid) < 0)
			return lf_fatal(f, FERRY_ENOMEM, "out of memory");
	}
	/* Then the old requests, in their order, with their rids. */
	for (rid = f->plo; rid < end; rid++) {
		struct pend *p = &f->pend[rid & (f->pcap - 1)];

		if (p->kind == PEND_RESUB) {
			p->kind = PEND_FREE;	/* of an earlier attempt */
			continue;
		}
		if (p->frame != NULL && (p->kind == PEND_PIPE ||
		    p->kind == PEND_SYNC || p->kind == PEND_ASYNC)) {
			if (msgpack_sbuffer_write(&f->enc.sb,
			    (const char *)p->frame, p->flen) != 0)
				return lf_fatal(f, FERRY_ENOMEM,
				    "out of memory");
			info->resent++;
			continue;
		}
		if (p->kind == PEND_ASYNC) {
			/* Out of the ring before its callback runs. */
			struct pend q = *p;

			p->kind = PEND_FREE;
			lf_seterr(f, FERRY_ECLOSED, "connection lost and "
			    "re-established: the request may or may not have "
			    "been carried out");
			if (f->answer != NULL)
				f->answer(f, rid, &q, NULL, FERRY_ECLOSED);
			continue;
		}
		if (p->kind == PEND_PIPE) {
			/* Not kept (out of memory): it fails. */
			lf_confirm(f, rid, p, FERRY_ECLOSED, 0, "",
			    "connection lost", 0);
		} else if (p->kind == PEND_SYNC && rid == f->wrid) {
			f->wdone = 1;
			f->werr = lf_seterr(f, FERRY_ECLOSED, "connection lost "
			    "and re-established: the request may or may not "
			    "have been carried out");
		}
		p->kind = PEND_FREE;
		free(p->frame);
		p->frame = NULL;
	}
	while (f->plo < f->next_rid &&
	    f->pend[f->plo & (f->pcap - 1)].kind == PEND_FREE)
		f->plo++;
	f->wsince = lf_now_ms();
	return 0;
}

/* A random wait in [0, ms]: "full jitter". */
unsigned
lf_jitter(struct ferry *f, unsigned ms)
{
	f->rng = f->rng * 1103515245u + 12345u;
	return ms ? (f->rng >> 8) % (ms + 1) : 0;
}

/*
 * If f->err is a lost connection that may be re-established, reconnect
 * (blocking, with backoff) and restore the handle's state.  Returns 0 when
 * the handle is usable again, else its fatal error.
 */
int
lf_recover(struct ferry *f)
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
	if (o == NULL) {
		f->rc_on = 0;
		return 0;
	}
	if (o->max_attempts == 0 && o->max_time_ms == 0)
		return lf_seterr(f, FERRY_EINVAL, "reconnect without a limit: "
		    "set max_attempts or max_time_ms");
	f->rc = *o;
	f->rc_on = 1;
	return 0;
}

uint64_t
ferry_reconnects(const struct ferry *f)
{
	return f->nreconnects;
}
