/*
 * journal.c - the write-ahead journal's file layer (see journal.h).
 *
 * Threads: everything runs in the loop thread except fdatasync, which a
 * single sync thread runs on request so the loop never blocks on the disk.
 * The two share only the request/result fields, handed over with atomic
 * flags (one request at a time, so each side owns the fields in turn); the
 * sync thread touches no other state.  No lock: a sync thread preempted
 * while holding one (2 cores, busy neighbours) left the loop waiting in
 * futex() for milliseconds.  Each side wakes the other through an eventfd:
 * the loop's is watched by a libevent event, so the broker needs no
 * evthread_use_pthreads().
 *
 * Deleting a segment and preallocating the next one are slow too (ext4
 * frees or allocates the extents of 64 MiB: tens of milliseconds for an
 * unlink), and go to a second thread, the worker (worker.c), so that they
 * never delay a sync either.  So does building a sealed segment's index
 * (journal-index.c), one at a time.  trim() still decides in the loop when a
 * segment may go; the worker only carries out the unlinks, in order.  The
 * next segment is preallocated ahead under SPARE_NAME and renamed into
 * place when a segment starts: a rename is a quick metadata change.
 *
 * Why a full segment is synced before the next one gets a name: page
 * writeback may reach the disk in any order, and a crash that lost the end
 * of segment N but kept records of N+1 would leave a hole that replay could
 * only call corruption.  With the barrier, only the last segment can tear.
 *
 * The barrier does not hold back the next segment's records, though: a
 * delivery waits for its record to be written, and waiting for an
 * fdatasync at every switch was the broker's worst delivery latency
 * (0.5-5 ms, more on a busy disk).  They are written at once into the
 * spare, which keeps its name (SPARE_NAME, no segment) until the barrier
 * is done, and is only then renamed into place.  A crash before the rename
 * leaves a complete or torn segment N and a spare: replay adopts the spare
 * if its header continues N exactly (a process crash: nothing was lost),
 * and ignores it otherwise (N tore: no record in the spare was confirmed,
 * since confirming one needs N's barrier and the spare's own sync after
 * the rename).
 */
#include "journal-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "crc32c.h"
#include "log.h"
#include "worker.h"

#define RETRY_SEC 1		/* a failing write is retried this often */
#define SPARE_NAME "journal.spare"	/* never matches a segment name */
#define IX_EVERY 32		/* records per sparse index entry */
#define READ_WINDOW (256u << 10)	/* journal_read()'s pread size */

enum spare_state {
	SPARE_NONE,		/* none; ask the worker at the next roll */
	SPARE_PENDING,		/* the worker is making one */
	SPARE_READY,		/* spare_fd: zeroed, seg_size, not yet named */
};

const uint8_t jn_zeros[65536];

const double journal_sync_le[JOURNAL_SYNC_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
	0.5, 2,
};

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sync thread: count one fdatasync of ns nanoseconds. */
static void
sync_observe(struct journal *j, uint64_t ns)
{
	double sec = (double)ns / 1e9;
	int i = 0;

	while (i < JOURNAL_SYNC_BUCKETS && sec > journal_sync_le[i])
		i++;
	__atomic_fetch_add(&j->sync_hist[i], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&j->sync_ns, ns, __ATOMIC_RELAXED);
}

void
jn_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void
jn_seg_name(char *buf, uint64_t first_seq)
{
	snprintf(buf, SEG_NAME_MAX, "journal-%020" PRIu64 ".seg", first_seq);
}

static ssize_t
real_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

static int
real_fdatasync(int fd)
{
	return fdatasync(fd);
}

static int
real_unlink(int dirfd, const char *name)
{
	return unlinkat(dirfd, name, 0);
}

static int
real_fallocate(int fd, off_t off, off_t len)
{
	int r = posix_fallocate(fd, off, len);

	if (r != 0) {
		errno = r;
		return -1;
	}
	return 0;
}

/* Write jn_zeros over [off, off + len): the bytes past the last record must
 * stay zero so that the end of the journal is unambiguous. */
static int
zero_range(struct journal *j, int fd, uint64_t off, uint64_t len)
{
	ssize_t w;
	size_t n;

	while (len > 0) {
		n = len < sizeof(jn_zeros) ? (size_t)len : sizeof(jn_zeros);
		w = j->io.pwrite(fd, jn_zeros, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

static double
elapsed(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) +
	    (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* ---- the sync thread ---- */

static void *
sync_main(void *arg)
{
	struct journal *j = arg;
	uint64_t one = 1, v;
	int fd, dfd, err;

	for (;;) {
		if (!__atomic_load_n(&j->req, __ATOMIC_ACQUIRE)) {
			if (__atomic_load_n(&j->stop, __ATOMIC_ACQUIRE))
				break;	/* stopping, and nothing asked */
			/* the loop writes after setting req or stop */
			if (read(j->req_efd, &v, sizeof(v)) < 0 &&
			    errno != EINTR) {
				log_error("journal: eventfd read: %s",
				    strerror(errno));
				break;
			}
			continue;
		}
		fd = j->req_fd;
		dfd = j->req_dirfd;
		__atomic_store_n(&j->req, 0, __ATOMIC_RELAXED);

		err = 0;
		if (fd >= 0) {
			uint64_t t0 = mono_ns();

			if (j->io.fdatasync(fd) < 0)
				err = -errno;
			sync_observe(j, mono_ns() - t0);
		}
		if (err == 0 && dfd >= 0 && fsync(dfd) < 0)
			err = -errno;

		j->res_err = err;
		__atomic_fetch_add(&j->syncs, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
		/* a full eventfd counter still wakes the loop: ignore EAGAIN */
		if (write(j->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_error("journal: eventfd write: %s",
			    strerror(errno));
	}
	return NULL;
}

/* Wake the sync thread: a request or a stop is posted. */
static void
sync_wake(struct journal *j)
{
	uint64_t one = 1;

	if (write(j->req_efd, &one, sizeof(one)) < 0)
		log_error("journal: eventfd write: %s", strerror(errno));
}

/* Ask the sync thread to make segs[head] (and new names) durable. */
static void
sync_submit(struct journal *j, int barrier)
{
	struct seg *s = &j->segs[j->head];
	int dfd = -1;

	if (s->dirsync || j->dirsync_wanted) {
		dfd = j->dirfd;
		s->dirsync = 0;
		j->dirsync_wanted = 0;
	}
	j->busy = 1;
	/* a barrier covers its segment only, not what was written ahead */
	j->req_seq = barrier ? s->next_seq - 1 : j->written_seq;
	j->req_barrier = barrier;
	j->req_fd = s->fd;
	j->req_dirfd = dfd;
	__atomic_store_n(&j->req, 1, __ATOMIC_RELEASE);
	sync_wake(j);
}

static void trim(struct journal *j);
static int head_advance(struct journal *j);

/* Take the sync thread's result, if any.  Returns 1 if there was one. */
static int
sync_harvest(struct journal *j)
{
	struct seg *s;
	int done, err;
	char name[SEG_NAME_MAX];

	done = __atomic_load_n(&j->done, __ATOMIC_ACQUIRE);
	if (!done)
		return 0;
	err = j->res_err;
	__atomic_store_n(&j->done, 0, __ATOMIC_RELAXED);
	j->busy = 0;
	s = &j->segs[j->head];
	if (err < 0) {
		if (j->fatal == 0) {
			jn_seg_name(name, s->first_seq);
			log_error("journal: fdatasync of %s/%s failed: %s; "
			    "nothing after seq %" PRIu64 " will be confirmed",
			    j->dir, name, strerror(-err), j->synced_seq);
		}
		j->fatal = err;
		return 1;
	}
	if (j->req_seq > j->synced_seq)
		j->synced_seq = j->req_seq;
	if (j->req_barrier && (err = head_advance(j)) < 0) {
		j->fatal = err;
		return 1;
	}
	trim(j);	/* segments that waited for this sync */
	return 1;
}

/* ---- segments ---- */

static struct seg *
seg_push(struct journal *j, uint64_t first_seq, uint64_t cap)
{
	struct seg *s;
	size_t ncap;

	if (j->nseg == j->segcap) {
		ncap = j->segcap ? 2 * j->segcap : 8;
		s = realloc(j->segs, ncap * sizeof(*s));
		if (s == NULL)
			return NULL;
		j->segs = s;
		j->segcap = ncap;
	}
	s = &j->segs[j->nseg++];
	memset(s, 0, sizeof(*s));
	s->first_seq = first_seq;
	s->next_seq = first_seq;
	s->cap = cap;
	s->fd = -1;
	s->rfd = -1;
	return s;
}

/* What a segment holds besides its write fd, going with it. */
static void
seg_forget(struct seg *s)
{
	if (s->rfd >= 0)
		close(s->rfd);
	s->rfd = -1;
	free(s->ix);
	s->ix = NULL;
	s->nix = s->ixcap = 0;
}

/* Index the record that starts at s->end, if it is one of every
 * IX_EVERY.  0 or -ENOMEM. */
int
jn_seg_index(struct seg *s)
{
	uint64_t *ix;
	size_t cap;

	if ((s->next_seq - s->first_seq) % IX_EVERY)
		return 0;
	if (s->nix == s->ixcap) {
		cap = s->ixcap ? 2 * s->ixcap : 64;
		if (!(ix = realloc(s->ix, cap * sizeof(*ix))))
			return -ENOMEM;
		s->ix = ix;
		s->ixcap = cap;
	}
	s->ix[s->nix++] = s->end;
	return 0;
}

/* Drop segs[i..] from the array (files are the caller's business). */
static void
seg_cut(struct journal *j, size_t i)
{
	size_t k;

	for (k = i; k < j->nseg; k++) {
		if (j->segs[k].fd >= 0)
			close(j->segs[k].fd);
		seg_forget(&j->segs[k]);
	}
	j->nseg = i;
}

static int
seg_unlink(struct journal *j, uint64_t first_seq)
{
	char name[SEG_NAME_MAX];

	ix_unlink(j, first_seq);
	jn_seg_name(name, first_seq);
	if (j->io.unlink(j->dirfd, name) < 0 && errno != ENOENT) {
		log_syswarn("journal: cannot delete %s/%s", j->dir, name);
		return -errno;
	}
	j->dirsync_wanted = 1;
	return 0;
}

struct unlink_job {
	struct journal *j;
	size_t n;
	uint64_t first_seq[];	/* oldest first */
};

/* Worker thread: delete the segments in order, then make that durable. */
static void
unlink_run(void *arg)
{
	struct unlink_job *u = arg;
	struct journal *j = u->j;
	char name[SEG_NAME_MAX];
	size_t i;

	if (j->unlink_stuck)
		return;
	for (i = 0; i < u->n; i++) {
		ix_unlink(j, u->first_seq[i]);
		jn_seg_name(name, u->first_seq[i]);
		if (j->io.unlink(j->dirfd, name) < 0 && errno != ENOENT) {
			/* Deleting a newer one would leave a gap: keep them
			 * all.  Replay reads the old ones as it would have
			 * before they died. */
			log_syswarn("journal: cannot delete %s/%s; no segment "
			    "is deleted until ferryd restarts", j->dir, name);
			j->unlink_stuck = 1;
			break;
		}
	}
	if (i > 0 && fsync(j->dirfd) < 0)
		log_syswarn("journal: fsync of %s after deleting segments",
		    j->dir);
}

static void
unlink_done(void *arg)
{
	free(arg);
}

/* Hand the unlink of segs[0..n) to the worker.  0, or -ENOMEM. */
static int
unlink_later(struct journal *j, size_t n)
{
	struct unlink_job *u;
	size_t i;

	if (j->worker == NULL)
		return -ENOMEM;
	u = malloc(sizeof(*u) + n * sizeof(u->first_seq[0]));
	if (u == NULL)
		return -ENOMEM;
	u->j = j;
	u->n = n;
	for (i = 0; i < n; i++)
		u->first_seq[i] = j->segs[i].first_seq;
	if (worker_submit(j->worker, unlink_run, unlink_done, u) < 0) {
		free(u);
		return -ENOMEM;
	}
	return 0;
}

/*
 * Delete the oldest segments while they hold no refs.  Only segments
 * behind the write head qualify: they are complete and durable, and no
 * sync request can still name their fd.  The files go in the worker
 * (unlink_run), in the order they were handed over; without one, here.
 */
static void
trim(struct journal *j)
{
	/* As durable as a confirm: a segment goes only once whatever was
	 * appended up to its death is, or a crash between its unlink and
	 * the write (or sync) of the copies made of its contents would lose
	 * them. */
	uint64_t safe = j->policy == FSYNC_ALWAYS ? j->synced_seq :
	    j->written_seq;
	size_t n = 0;

	if (j->replaying)
		return;
	while (n < j->head && j->segs[n].live == 0 &&
	    j->segs[n].dead_at <= safe)
		n++;
	if (n == 0)
		return;
	if (unlink_later(j, n) < 0) {
		size_t k;

		for (k = 0; k < n; k++)
			if (seg_unlink(j, j->segs[k].first_seq) < 0)
				break;
		if ((n = k) == 0)
			return;
	}
	for (size_t k = 0; k < n; k++)
		seg_forget(&j->segs[k]);
	memmove(j->segs, j->segs + n, (j->nseg - n) * sizeof(*j->segs));
	j->nseg -= n;
	j->head -= n;
}

struct spare_job {
	struct journal *j;
	int fd;
	int err;
};

/* Worker thread: a zeroed, preallocated file for the next segment. */
static void
spare_run(void *arg)
{
	struct spare_job *sj = arg;
	struct journal *j = sj->j;

	sj->err = 0;
	/* O_TRUNC: a spare left by a crash may have been written to (its
	 * rename was lost); its blocks are freed here, not in the loop */
	sj->fd = openat(j->dirfd, SPARE_NAME, O_RDWR | O_CREAT | O_TRUNC |
	    O_CLOEXEC, 0600);
	if (sj->fd < 0) {
		sj->err = -errno;
		return;
	}
	if (j->io.fallocate(sj->fd, 0, (off_t)j->seg_size) < 0) {
		sj->err = -errno;
		close(sj->fd);
		sj->fd = -1;
		unlinkat(j->dirfd, SPARE_NAME, 0);
	}
}

static void
spare_done(void *arg)
{
	struct spare_job *sj = arg;
	struct journal *j = sj->j;

	if (sj->fd >= 0) {
		j->spare = SPARE_READY;
		j->spare_fd = sj->fd;
		j->spare_err = 0;
	} else {
		/* segments are then created inline, as a fallback, and
		 * that path reports the failure that matters */
		if (sj->err != j->spare_err)
			log_warn("journal: cannot preallocate %s/%s ahead: %s",
			    j->dir, SPARE_NAME, strerror(-sj->err));
		j->spare = SPARE_NONE;
		j->spare_err = sj->err;
	}
	free(sj);
}

/* Have the worker make the next segment's file, if none is on the way. */
static void
spare_request(struct journal *j)
{
	struct spare_job *sj;

	if (j->worker == NULL || j->closing || j->spare != SPARE_NONE)
		return;
	if ((sj = malloc(sizeof(*sj))) == NULL)
		return;		/* the next segment is created inline */
	sj->j = j;
	sj->fd = -1;
	if (worker_submit(j->worker, spare_run, spare_done, sj) < 0) {
		free(sj);
		return;
	}
	j->spare = SPARE_PENDING;
}

/*
 * Give segment s its file: the spare, renamed, if one is ready; else made
 * here, which stalls the loop (the first segment of an empty journal, or a
 * spare that failed), as it always did before the worker.
 */
static int
seg_create(struct journal *j, struct seg *s)
{
	char name[SEG_NAME_MAX];
	int fd, r;

	jn_seg_name(name, s->first_seq);
	if (j->spare == SPARE_READY) {
		fd = j->spare_fd;
		j->spare_fd = -1;
		j->spare = SPARE_NONE;
		/* replaces a leftover of a failed attempt, as O_TRUNC does */
		if (renameat(j->dirfd, SPARE_NAME, j->dirfd, name) == 0) {
			s->fd = fd;
			s->dirsync = 1;
			spare_request(j);
			return 0;
		}
		log_syswarn("journal: cannot rename %s/%s to %s", j->dir,
		    SPARE_NAME, name);
		close(fd);
	}
	spare_request(j);
	/* O_TRUNC: a leftover from a failed attempt holds nothing of value */
	fd = openat(j->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600);
	if (fd < 0)
		return -errno;
	if (j->io.fallocate(fd, 0, (off_t)s->cap) < 0) {
		r = -errno;
		close(fd);
		unlinkat(j->dirfd, name, 0);
		return r;
	}
	s->fd = fd;
	s->dirsync = 1;
	return 0;
}

/*
 * The head segment is synced (its barrier): close it and move on to the
 * next, naming its file if it was written ahead into the spare.  0, or the
 * -errno of the rename: then the records written ahead have no name, and
 * the journal must stop (journal_fatal): replay would not find them.
 */
static int
head_advance(struct journal *j)
{
	struct seg *s = &j->segs[j->head];
	char name[SEG_NAME_MAX];

	close(s->fd);
	s->fd = -1;
	/* Sealed: complete and durable.  Worth an index while it holds
	 * anything a restart must rebuild. */
	j->ix_defer = s->first_seq;
	if (s->live > 0)
		ix_queue(j, s->first_seq);
	else
		ix_next(j);	/* the one it held back */
	j->head++;
	s = &j->segs[j->head];
	if (!s->unnamed)
		return 0;
	jn_seg_name(name, s->first_seq);
	if (renameat(j->dirfd, SPARE_NAME, j->dirfd, name) < 0) {
		int r = -errno;

		log_error("journal: cannot rename %s/%s to %s: %s; nothing "
		    "after seq %" PRIu64 " will be confirmed", j->dir,
		    SPARE_NAME, name, strerror(-r), j->synced_seq);
		return r;
	}
	s->unnamed = 0;
	s->dirsync = 1;
	spare_request(j);	/* the name is free again */
	return 0;
}

/* ---- writing ---- */

/*
 * pwrite the buffered bytes of segment s, which every segment before it
 * has no more of: one call unless it comes back short.  On failure the
 * bytes that did land are zeroed again, so no partial record survives; the
 * buffer is kept for the retry.
 */
/*
 * Checksum the records of the n bytes about to be written from segs[head]:
 * here rather than at append, so that a record taken back before its
 * write (journal_unappend: an at-most-once delivery settled in the turn
 * of its publish) costs no crc.  Again after a failed write: the same.
 */
static void
seal(struct journal *j, const struct seg *s, size_t n)
{
	uint8_t *p = j->wbuf + j->wpos, *end = p + n;
	uint32_t len;

	if (s->written == 0)
		p += SEG_HDR;	/* checksummed when it was made */
	for (; p + REC_HDR <= end; p += REC_HDR + len) {
		len = get32(p + 4);
		put32(p, crc32c(0, p + 4, REC_HDR - 4 + len));
	}
}

static int
write_seg(struct journal *j, struct seg *s)
{
	size_t n, done = 0;
	ssize_t w;
	int r = 0;

	n = (size_t)(s->end - s->written);
	if (n == 0)
		return 0;
	if (s->fd < 0 && (r = seg_create(j, s)) < 0)
		return r;
	seal(j, s, n);
	while (done < n) {
		w = j->io.pwrite(s->fd, j->wbuf + j->wpos + done, n - done,
		    (off_t)(s->written + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			r = w < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)w;
	}
	if (done < n) {
		if (done > 0 && zero_range(j, s->fd, s->written, done) < 0)
			log_syswarn("journal: cannot zero a partial write "
			    "(replay will drop it)");
		return r;
	}
	s->written = s->end;
	j->wpos += n;
	if (j->wpos == j->wlen)
		j->wpos = j->wlen = 0;
	j->written_seq = s->next_seq - 1;
	return 0;
}

/*
 * Write the head segment, and while it waits for its barrier, the next one
 * too, into the spare if one is ready (see the top of this file).  Without
 * a spare the next one waits: a segment file made here must not get its
 * name before the barrier either.
 */
static int
write_head(struct journal *j)
{
	struct seg *s, *next;
	int r;

	if (j->nseg == 0)
		return 0;
	s = &j->segs[j->head];
	if ((r = write_seg(j, s)) < 0 || j->head + 1 == j->nseg)
		return r;
	next = s + 1;
	if (next->fd < 0) {
		if (j->spare != SPARE_READY || j->closing)
			return 0;
		next->fd = j->spare_fd;
		next->unnamed = 1;
		j->spare_fd = -1;
		j->spare = SPARE_NONE;	/* no new one until it is renamed */
	}
	return write_seg(j, next);
}

static void
write_failed(struct journal *j, int r)
{
	struct timeval tv = { RETRY_SEC, 0 };

	if (j->werr == 0)
		log_error("journal: writing to %s failed: %s; refusing "
		    "appends until a retry succeeds", j->dir, strerror(-r));
	j->werr = r;
	clock_gettime(CLOCK_MONOTONIC, &j->wtry);
	evtimer_add(j->retry_ev, &tv);
}

static void
notify(struct journal *j)
{
	int err = journal_error(j);

	if (j->cb == NULL || (j->written_seq == j->cb_written &&
	    j->synced_seq == j->cb_synced && err == j->cb_err))
		return;
	j->cb_written = j->written_seq;
	j->cb_synced = j->synced_seq;
	j->cb_err = err;
	j->cb(j->cbarg, j->written_seq, j->synced_seq);
}

/* Write what can be written, then start the sync that is due. */
static int
write_and_sync(struct journal *j)
{
	uint64_t covered;
	int r, now;

	if (j->fatal)
		return j->fatal;
	r = write_head(j);
	if (r == 0 && j->policy != FSYNC_ALWAYS)
		trim(j);	/* segments that waited for this write */
	if (r < 0) {
		write_failed(j, r);
	} else if (j->werr) {
		log_warn("journal: writing to %s works again", j->dir);
		j->werr = 0;
		evtimer_del(j->retry_ev);
	}
	/* always: sync at once if someone waits (or may: no callback) */
	now = j->policy == FSYNC_ALWAYS && (j->dirsync_wanted ||
	    j->waiting == NULL || j->waiting(j->waitarg));
	if (r == 0 && !j->busy && j->nseg > 0) {
		if (j->head + 1 < j->nseg)
			sync_submit(j, 1);
		else if (j->written_seq > j->synced_seq &&
		    (now || j->sync_wanted))
			sync_submit(j, 0);	/* covers every record: a
						   pending delay finds
						   nothing left to do */
		if (j->busy)
			j->sync_wanted = 0;
	}
	/*
	 * Else, under always, written records that no sync covers get one
	 * started JOURNAL_SYNC_DELAY_US later, shared with whatever is
	 * written meanwhile.
	 */
	covered = j->busy ? j->req_seq : j->synced_seq;
	if (r == 0 && j->lazy_ev && !now && !j->lazy_armed &&
	    !j->sync_wanted && j->written_seq > covered) {
		struct itimerspec it = { .it_value = {
			JOURNAL_SYNC_DELAY_US / 1000000,
			JOURNAL_SYNC_DELAY_US % 1000000 * 1000 } };

		if (timerfd_settime(j->lazy_fd, 0, &it, NULL) == 0)
			j->lazy_armed = 1;
		else if (!j->busy)	/* cannot wait: sync now */
			sync_submit(j, 0);
		else
			j->sync_wanted = 1;
	}
	notify(j);
	return r;
}

static void
sync_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct journal *j = arg;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_error("journal: eventfd read: %s", strerror(errno));
	if (!sync_harvest(j))
		return;
	/* a failing write is retried by its own timer, not here */
	if (j->fatal || (j->werr && elapsed(&j->wtry) < RETRY_SEC))
		notify(j);
	else
		write_and_sync(j);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct journal *j = arg;

	if (!j->replayed || j->werr)
		return;
	j->sync_wanted = 1;
	write_and_sync(j);
}

/* The lazy delay is over: sync now, or as soon as the running one ends. */
static void
lazy_cb(evutil_socket_t fd, short what, void *arg)
{
	struct journal *j = arg;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0)
		return;		/* EAGAIN: not expired */
	j->lazy_armed = 0;
	if (j->written_seq <= (j->busy ? j->req_seq : j->synced_seq))
		return;		/* a sync covered them meanwhile */
	j->sync_wanted = 1;
	/* a failing write is retried by its own timer, not here */
	if (!j->werr)
		write_and_sync(j);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct journal *j = arg;

	if (j->werr)
		write_and_sync(j);
}

/* ---- the public write path ---- */

static int
wbuf_reserve(struct journal *j, size_t need)
{
	size_t ncap;
	uint8_t *p;

	if (j->wpos > 0 && j->wlen + need > j->wcap) {
		/* only while a barrier holds back a later segment */
		memmove(j->wbuf, j->wbuf + j->wpos, j->wlen - j->wpos);
		j->wlen -= j->wpos;
		j->wpos = 0;
	}
	if (j->wlen + need <= j->wcap)
		return 0;
	ncap = j->wcap ? j->wcap : 65536;
	while (ncap < j->wlen + need)
		ncap *= 2;
	p = realloc(j->wbuf, ncap);
	if (p == NULL)
		return -ENOMEM;
	j->wbuf = p;
	j->wcap = ncap;
	return 0;
}

/* Append one record; with preamble, a new segment first gets roll_cb's
 * records. */
static int
append_rec(struct journal *j, uint8_t type, const void *p, size_t len,
    uint64_t *seq, int preamble)
{
	struct seg *s;
	uint8_t *h;
	size_t need = REC_HDR + len;
	int r;

	if (!j->replayed)
		return -EINVAL;
	if (j->fatal)
		return j->fatal;
	if (j->werr)
		return j->werr;
	if (len > JOURNAL_MAX_RECORD || need > j->seg_size - SEG_HDR)
		return -EMSGSIZE;
	s = j->nseg ? &j->segs[j->nseg - 1] : NULL;
	if (s == NULL || s->end + need > s->cap) {
		if (wbuf_reserve(j, SEG_HDR) < 0)
			return -ENOMEM;
		s = seg_push(j, j->next_seq, j->seg_size);
		if (s == NULL)
			return -ENOMEM;
		/* the header rides in the segment's first pwrite */
		h = j->wbuf + j->wlen;
		memset(h, 0, SEG_HDR);
		memcpy(h, SEG_MAGIC, 8);
		put32(h + 8, SEG_VERSION);
		put32(h + 12, SEG_HDR);
		put64(h + 16, s->first_seq);
		put32(h + 28, crc32c(0, h, 28));
		j->wlen += SEG_HDR;
		s->end = SEG_HDR;
		if (preamble && j->roll_cb && !j->in_roll) {
			j->in_roll = 1;
			r = j->roll_cb(j->roll_arg);
			j->in_roll = 0;
			if (r < 0)
				return r;
			/* A preamble that filled the segment: the record goes
			 * to the next one, without another preamble. */
			s = &j->segs[j->nseg - 1];
			if (s->end + need > s->cap)
				return append_rec(j, type, p, len, seq, 0);
		}
	}
	if (wbuf_reserve(j, need) < 0 || jn_seg_index(s) < 0)
		return -ENOMEM;
	h = j->wbuf + j->wlen;
	put32(h + 4, (uint32_t)len);
	put64(h + 8, j->next_seq);
	h[16] = type;
	if (len > 0)
		memcpy(h + REC_HDR, p, len);
	j->wlen += need;	/* its crc: seal(), at its write */
	s->end += need;
	s->next_seq++;
	s->records++;
	if (seq != NULL)
		*seq = j->next_seq;
	j->next_seq++;
	j->last_len = need;
	return 0;
}

int
journal_unappend(struct journal *j, uint64_t seq)
{
	struct seg *s = j->nseg ? &j->segs[j->nseg - 1] : NULL;

	/* Only the newest record, whole in the buffer (not even partly
	 * written), and not its segment's only one. */
	if (!s || seq + 1 != j->next_seq || !j->last_len ||
	    j->wlen - j->wpos < j->last_len || s->next_seq != j->next_seq ||
	    s->first_seq == seq)
		return -EINVAL;
	j->wlen -= j->last_len;
	s->end -= j->last_len;
	s->next_seq--;
	if (s->nix && s->ix[s->nix - 1] == s->end)
		s->nix--;	/* it was indexed */
	s->records--;
	j->next_seq--;
	j->last_len = 0;
	return 0;
}

int
journal_append(struct journal *j, uint8_t type, const void *p, size_t len,
    uint64_t *seq)
{
	return append_rec(j, type, p, len, seq, 1);
}

void
journal_set_roll_cb(struct journal *j, int (*cb)(void *arg), void *arg)
{
	j->roll_cb = cb;
	j->roll_arg = arg;
}

int
journal_commit(struct journal *j)
{
	if (!j->replayed)
		return -EINVAL;
	if (j->fatal)
		return j->fatal;
	if (j->werr && elapsed(&j->wtry) < RETRY_SEC)
		return j->werr;
	return write_and_sync(j);
}

void
journal_set_waiting_cb(struct journal *j, int (*cb)(void *arg), void *arg)
{
	j->waiting = cb;
	j->waitarg = arg;
}

void
journal_set_durable_cb(struct journal *j,
    void (*cb)(void *, uint64_t, uint64_t), void *arg)
{
	j->cb = cb;
	j->cbarg = arg;
	j->cb_written = j->written_seq;
	j->cb_synced = j->synced_seq;
	j->cb_err = journal_error(j);
}

uint64_t
journal_written_seq(const struct journal *j)
{
	return j->written_seq;
}

uint64_t
journal_synced_seq(const struct journal *j)
{
	return j->synced_seq;
}

uint64_t
journal_next_seq(const struct journal *j)
{
	return j->next_seq;
}

int
journal_error(const struct journal *j)
{
	return j->fatal ? j->fatal : j->werr;
}

int
journal_fatal(const struct journal *j)
{
	return j->fatal;
}

/* ---- reading records back ---- */

static int
reader_room(struct journal_reader *rd, size_t n)
{
	uint8_t *b;

	if (n <= rd->cap)
		return 0;
	if (!(b = realloc(rd->buf, n)))
		return -ENOMEM;
	rd->buf = b;
	rd->cap = n;
	return 0;
}

/* Fill rd with file bytes of s from off on: at least n, READ_WINDOW if the
 * segment has that much written. */
static int
reader_fill(struct journal *j, struct journal_reader *rd, struct seg *s,
    uint64_t off, size_t n)
{
	char name[SEG_NAME_MAX];
	size_t want = n > READ_WINDOW ? n : READ_WINDOW, got = 0;
	ssize_t r;

	if (want > s->written - off)
		want = (size_t)(s->written - off);
	if (want < n)
		return -EBADMSG;
	if (reader_room(rd, want) < 0)
		return -ENOMEM;
	if (s->rfd < 0 && s->unnamed) {
		/* Written ahead into the spare, not yet renamed (see the
		 * top of this file): the name would not find it. */
		if ((s->rfd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0)) < 0)
			return -errno;
	} else if (s->rfd < 0) {
		jn_seg_name(name, s->first_seq);
		if ((s->rfd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0)
			return -errno;
	}
	rd->seg = 0;		/* invalid until filled */
	while (got < want) {
		r = pread(s->rfd, rd->buf + got, want - got,
		    (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EBADMSG;
		got += (size_t)r;
	}
	rd->preads++;
	rd->seg = s->first_seq;
	rd->off = off;
	rd->len = got;
	/* Along a queue the next window is wanted next: have the kernel
	 * read it meanwhile, rather than in the next pread. */
	if (off + got < s->written)
		(void)posix_fadvise(s->rfd, (off_t)(off + got), READ_WINDOW,
		    POSIX_FADV_WILLNEED);
	return 0;
}

/* n bytes at off of segment s, from the window, the file or the write
 * buffer (copied, so that appends cannot move them); NULL with *err. */
static const uint8_t *
reader_at(struct journal *j, struct journal_reader *rd, struct seg *s,
    uint64_t off, size_t n, int *err)
{
	size_t i = (size_t)(s - j->segs), base;

	if (off + n > s->end) {
		*err = -EBADMSG;
		return NULL;
	}
	if (off >= s->written) {
		/* segs[head..] are in wbuf one after the other */
		base = j->wpos;
		for (size_t k = j->head; k < i; k++)
			base += (size_t)(j->segs[k].end - j->segs[k].written);
		if ((*err = reader_room(rd, n)) < 0)
			return NULL;
		memcpy(rd->buf, j->wbuf + base + (off - s->written), n);
		rd->seg = 0;
		return rd->buf;
	}
	if (rd->seg != s->first_seq || off < rd->off ||
	    off + n > rd->off + rd->len) {
		if ((*err = reader_fill(j, rd, s, off, n)) < 0)
			return NULL;
	}
	return rd->buf + (off - rd->off);
}

int
journal_read(struct journal *j, struct journal_reader *rd, uint64_t seq,
    uint8_t *type, const uint8_t **p, size_t *len)
{
	struct seg *s = jn_seg_find(j, seq);
	const uint8_t *h;
	uint64_t at, off, n;
	size_t k;
	int err = 0;

	if (s == NULL)
		return -ENOENT;
	k = (size_t)((seq - s->first_seq) / IX_EVERY);
	if (k >= s->nix)
		return -EBADMSG;
	at = s->first_seq + k * IX_EVERY;
	off = s->ix[k];
	if (rd->seg == s->first_seq && rd->last_seq <= seq &&
	    rd->last_seq >= at) {
		at = rd->last_seq;	/* along a queue: from the last one */
		off = rd->last_off;
	}
	for (;;) {
		if (!(h = reader_at(j, rd, s, off, REC_HDR, &err)))
			return err;
		n = get32(h + 4);
		if (get64(h + 8) != at || n > JOURNAL_MAX_RECORD)
			return -EBADMSG;
		if (at == seq)
			break;
		off += REC_HDR + n;
		at++;
	}
	if (!(h = reader_at(j, rd, s, off, REC_HDR + (size_t)n, &err)))
		return err;
	/* A record still in the write buffer has no crc yet (seal() gives
	 * it one at its write) and cannot have been damaged on disk:
	 * reader_at() left rd->seg 0 for such a copy. */
	if (rd->seg && get32(h) != crc32c(0, h + 4, REC_HDR - 4 + (size_t)n))
		return -EBADMSG;
	if (rd->seg) {
		rd->last_seq = seq;
		rd->last_off = off;
	}
	*type = h[16];
	*p = h + REC_HDR;
	*len = (size_t)n;
	return 0;
}

void
journal_reader_fini(struct journal_reader *rd)
{
	free(rd->buf);
	memset(rd, 0, sizeof(*rd));
}

/* ---- segment lifetime ---- */

struct seg *
jn_seg_find(struct journal *j, uint64_t seq)
{
	size_t lo = 0, hi, mid;

	if (j->nseg == 0 || seq < j->segs[0].first_seq || seq >= j->next_seq)
		return NULL;
	/* Replay refs records of the segment it reads, one after another:
	 * the last segment found, before a search. */
	if (j->find_hint < j->nseg &&
	    seq >= j->segs[j->find_hint].first_seq &&
	    seq < j->segs[j->find_hint].next_seq)
		return &j->segs[j->find_hint];
	hi = j->nseg;		/* segs[lo].first_seq <= seq < segs[hi]... */
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (j->segs[mid].first_seq <= seq)
			lo = mid;
		else
			hi = mid;
	}
	if (seq >= j->segs[lo].next_seq)
		return NULL;
	j->find_hint = lo;
	return &j->segs[lo];
}

int
journal_ref(struct journal *j, uint64_t seq)
{
	struct seg *s = jn_seg_find(j, seq);

	if (s == NULL)
		return -ENOENT;
	s->live++;
	return 0;
}

int
journal_unref(struct journal *j, uint64_t seq)
{
	struct seg *s = jn_seg_find(j, seq);

	if (s == NULL)
		return -ENOENT;
	if (s->live == 0)
		return -EINVAL;
	if (--s->live == 0) {
		s->dead_at = j->next_seq - 1;
		if (s == &j->segs[0])
			trim(j);
	}
	return 0;
}

uint64_t
journal_oldest_live_seq(const struct journal *j)
{
	size_t i;

	for (i = 0; i < j->nseg; i++)
		if (j->segs[i].live > 0)
			return j->segs[i].first_seq;
	return 0;
}

void
journal_get_stats(const struct journal *j, struct journal_stats *st)
{
	const struct seg *s;
	size_t i;

	memset(st, 0, sizeof(*st));
	st->segments = j->nseg;
	st->next_seq = j->next_seq;
	st->buffered_bytes = j->wlen - j->wpos;
	st->first_seq = j->nseg ? j->segs[0].first_seq : 0;
	for (i = 0; i < j->nseg; i++) {
		s = &j->segs[i];
		if (i < j->head || s->fd >= 0 || s->written > 0)
			st->disk_bytes += s->cap;	/* has a file */
		st->used_bytes += s->end;
		st->live_records += s->live;
		if (s->records > 0)
			st->live_bytes += (s->end - SEG_HDR) * s->live /
			    s->records;
	}
	if (st->first_seq == j->next_seq)
		st->first_seq = 0;
	st->syncs = __atomic_load_n(&j->syncs, __ATOMIC_RELAXED);
	for (i = 0; i <= JOURNAL_SYNC_BUCKETS; i++)
		st->sync_hist[i] = __atomic_load_n(&j->sync_hist[i],
		    __ATOMIC_RELAXED);
	st->sync_seconds = (double)__atomic_load_n(&j->sync_ns,
	    __ATOMIC_RELAXED) / 1e9;
	st->files_pending = j->worker ? worker_pending(j->worker) : 0;
	st->index_built = j->ix_built;
	st->index_replayed = j->ix_replayed;
	st->spare_ready = j->spare == SPARE_READY;
}

int
journal_segment_info(const struct journal *j, size_t i,
    struct journal_segment_info *si)
{
	const struct seg *s;

	if (i >= j->nseg)
		return -ENOENT;
	s = &j->segs[i];
	si->first_seq = s->first_seq;
	si->last_seq = s->next_seq - 1;
	si->records = s->records;
	si->live = s->live;
	si->used_bytes = s->end;
	si->active = i + 1 == j->nseg;
	return 0;
}

/* ---- open ---- */

static int
lock_dir(struct journal *j, char *err, size_t errlen)
{
	char buf[32];
	ssize_t n;
	int r;

	j->lockfd = openat(j->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC,
	    0600);
	if (j->lockfd < 0) {
		r = -errno;
		jn_seterr(err, errlen, "cannot open %s/LOCK: %s", j->dir,
		    strerror(-r));
		return r;
	}
	if (flock(j->lockfd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		if (r != -EWOULDBLOCK) {
			jn_seterr(err, errlen, "cannot lock %s/LOCK: %s", j->dir,
			    strerror(-r));
			return r;
		}
		n = pread(j->lockfd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		jn_seterr(err, errlen, "data directory %s is in use by another "
		    "ferryd (pid %ld)", j->dir, strtol(buf, NULL, 10));
		return r;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(j->lockfd, 0) < 0 ||
	    pwrite(j->lockfd, buf, (size_t)n, 0) != n)
		log_syswarn("journal: cannot write the pid into %s/LOCK",
		    j->dir);
	return 0;
}

static int
start_thread(struct journal *j)
{
	sigset_t all, old;
	int r;

	/* the broker's signals belong to the loop thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&j->thread, NULL, sync_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return -r;
	j->thread_started = 1;
	return 0;
}

int
journal_open(struct journal **jp, struct event_base *base,
    const struct journal_opts *o, char *err, size_t errlen)
{
	struct journal *j;
	struct timeval sec = { 1, 0 };
	uint64_t segsz;
	int r;

	*jp = NULL;
	segsz = o->segment_size ? o->segment_size : JOURNAL_SEGMENT_SIZE;
	if (o->dir == NULL || base == NULL || o->fsync < FSYNC_ALWAYS ||
	    o->fsync > FSYNC_NEVER || segsz < JOURNAL_SEGMENT_MIN ||
	    segsz > (uint64_t)1 << 40) {
		jn_seterr(err, errlen, "journal: invalid options");
		return -EINVAL;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->dirfd = j->lockfd = j->efd = j->req_efd = j->lazy_fd = -1;
	j->spare_fd = -1;
	j->base = base;
	j->policy = o->fsync;
	j->seg_size = segsz;
	j->next_seq = 1;
	j->io.pwrite = o->io && o->io->pwrite ? o->io->pwrite : real_pwrite;
	j->io.fdatasync = o->io && o->io->fdatasync ? o->io->fdatasync :
	    real_fdatasync;
	j->io.fallocate = o->io && o->io->fallocate ? o->io->fallocate :
	    real_fallocate;
	j->io.unlink = o->io && o->io->unlink ? o->io->unlink : real_unlink;
	j->dir = strdup(o->dir);
	if (j->dir == NULL) {
		r = -ENOMEM;
		goto fail;
	}

	if (mkdir(j->dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		jn_seterr(err, errlen, "cannot create data directory %s: %s",
		    j->dir, strerror(-r));
		goto fail;
	}
	j->dirfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dirfd < 0) {
		r = -errno;
		jn_seterr(err, errlen, "cannot open data directory %s: %s",
		    j->dir, strerror(-r));
		goto fail;
	}
	if ((r = lock_dir(j, err, errlen)) < 0)
		goto fail;

	j->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	j->req_efd = eventfd(0, EFD_CLOEXEC);
	if (j->efd < 0 || j->req_efd < 0) {
		r = -errno;
		jn_seterr(err, errlen, "journal: eventfd: %s", strerror(-r));
		goto fail;
	}
	j->sync_ev = event_new(base, j->efd, EV_READ | EV_PERSIST,
	    sync_done_cb, j);
	j->retry_ev = evtimer_new(base, retry_cb, j);
	if (o->fsync == FSYNC_EVERYSEC)
		j->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, j);
	if (o->fsync == FSYNC_ALWAYS) {
		j->lazy_fd = timerfd_create(CLOCK_MONOTONIC,
		    TFD_NONBLOCK | TFD_CLOEXEC);
		if (j->lazy_fd < 0) {
			r = -errno;
			jn_seterr(err, errlen, "journal: timerfd: %s",
			    strerror(-r));
			goto fail;
		}
		j->lazy_ev = event_new(base, j->lazy_fd, EV_READ | EV_PERSIST,
		    lazy_cb, j);
	}
	if (j->sync_ev == NULL || j->retry_ev == NULL ||
	    (o->fsync == FSYNC_EVERYSEC && j->tick_ev == NULL) ||
	    (o->fsync == FSYNC_ALWAYS && j->lazy_ev == NULL) ||
	    event_add(j->sync_ev, NULL) < 0 ||
	    (j->lazy_ev && event_add(j->lazy_ev, NULL) < 0) ||
	    (j->tick_ev && event_add(j->tick_ev, &sec) < 0)) {
		r = -ENOMEM;
		jn_seterr(err, errlen, "journal: cannot set up events");
		goto fail;
	}
	if ((r = start_thread(j)) < 0) {
		jn_seterr(err, errlen, "journal: cannot start the sync thread: "
		    "%s", strerror(-r));
		goto fail;
	}
	if ((r = worker_new(&j->worker, base, "ferryd-files")) < 0) {
		jn_seterr(err, errlen, "journal: cannot start the worker thread: "
		    "%s", strerror(-r));
		goto fail;
	}
	*jp = j;
	return 0;
fail:
	journal_close(j);
	return r;
}

/* ---- replay ---- */

static int
cmp_seq(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;

	return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* Fill segs from the directory listing, oldest first. */
static int
scan_dir(struct journal *j, char *err, size_t errlen)
{
	DIR *d;
	struct dirent *e;
	char name[SEG_NAME_MAX];
	uint64_t seq;
	int fd, r = 0;

	fd = dup(j->dirfd);
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		jn_seterr(err, errlen, "cannot list %s: %s", j->dir,
		    strerror(-r));
		return r;
	}
	rewinddir(d);
	while ((e = readdir(d)) != NULL) {
		if (strlen(e->d_name) != 8 + 20 + 4 ||
		    strncmp(e->d_name, "journal-", 8) != 0 ||
		    strspn(e->d_name + 8, "0123456789") != 20 ||
		    strcmp(e->d_name + 28, ".seg") != 0)
			continue;
		seq = strtoull(e->d_name + 8, NULL, 10);
		jn_seg_name(name, seq);
		if (seq == 0 || strcmp(name, e->d_name) != 0)
			continue;	/* not a name we would write */
		if (seg_push(j, seq, 0) == NULL) {
			r = -ENOMEM;
			break;
		}
	}
	closedir(d);
	if (r == 0 && j->nseg > 1)
		qsort(j->segs, j->nseg, sizeof(*j->segs), cmp_seq);
	return r;
}

/* Offset one past the last nonzero byte of m[from, size), or from. */
static uint64_t
written_end(const uint8_t *m, uint64_t from, uint64_t size)
{
	uint64_t e = size;

	while (e >= from + 4096 && memcmp(m + e - 4096, jn_zeros, 4096) == 0)
		e -= 4096;
	while (e > from && m[e - 1] == 0)
		e--;
	return e;
}

/*
 * Is there a valid record (right crc, a seq we have not seen yet) starting
 * anywhere in [from, wend)?  If so the bad bytes at from are not a torn
 * tail but damage in the middle.  The seq window keeps the crc work small.
 */
static int
valid_record_in(const uint8_t *m, uint64_t from, uint64_t wend,
    uint64_t size, uint64_t expect)
{
	uint64_t p, len, seq;

	for (p = from; p < wend && p + REC_HDR <= size; p++) {
		len = get32(m + p + 4);
		seq = get64(m + p + 8);
		if (seq < expect || seq - expect > size / REC_HDR ||
		    len > JOURNAL_MAX_RECORD || len > size - p - REC_HDR)
			continue;
		if (get32(m + p) == crc32c(0, m + p + 4, REC_HDR - 4 + len))
			return 1;
	}
	return 0;
}

int
jn_header_ok(const uint8_t *m, uint64_t size, uint64_t first_seq)
{
	return size >= SEG_HDR && memcmp(m, SEG_MAGIC, 8) == 0 &&
	    get32(m + 8) == SEG_VERSION && get32(m + 12) == SEG_HDR &&
	    get64(m + 16) == first_seq && get32(m + 28) == crc32c(0, m, 28);
}

/* Delete segs[i..] and their files: the journal now ends before them. */
static int
drop_from(struct journal *j, size_t i)
{
	size_t k;
	int r = 0;

	for (k = i; k < j->nseg; k++)
		if (seg_unlink(j, j->segs[k].first_seq) < 0)
			r = -EIO;
	seg_cut(j, i);
	return r;
}

/*
 * Walk segs[i]: check and apply its records.  On a bad record decide
 * between torn tail, corruption and repair.  Returns 0 (segs may have
 * shrunk), or an error.
 */
static int
replay_seg(struct journal *j, size_t i, struct replay *rp)
{
	struct seg *s = &j->segs[i];
	char name[SEG_NAME_MAX], why[96];
	const uint8_t *m = NULL, *h;
	uint64_t size, off, len, seq, wend;
	struct stat st;
	int fd, last = i + 1 == j->nseg, r = 0;

	/* Read in full: its index, if any, is of no use (the last segment
	 * grows, and a damaged one will not be indexed again) or may
	 * disagree with what the repairs below make of it. */
	ix_unlink(j, s->first_seq);
	jn_seg_name(name, s->first_seq);
	fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		jn_seterr(rp->err, rp->errlen, "cannot open %s/%s: %s", j->dir,
		    name, strerror(-r));
		goto out;
	}
	size = (uint64_t)st.st_size;
	if (size > 0) {
		m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			m = NULL;
			r = -errno;
			jn_seterr(rp->err, rp->errlen, "cannot map %s/%s: %s",
			    j->dir, name, strerror(-r));
			goto out;
		}
	}
	s->cap = size;
	if (rp->expect == 0)
		rp->expect = s->first_seq;
	off = 0;
	if (!jn_header_ok(m, size, s->first_seq)) {
		snprintf(why, sizeof(why), "bad segment header");
		goto bad;
	}
	if (s->first_seq != rp->expect) {
		/* a hole between segments cannot come from a crash */
		snprintf(why, sizeof(why), "starts at seq %" PRIu64
		    ", expected %" PRIu64, s->first_seq, rp->expect);
		goto corrupt;
	}
	for (off = SEG_HDR; off + REC_HDR <= size; off += REC_HDR + len) {
		h = m + off;
		len = get32(h + 4);
		seq = get64(h + 8);
		if (len == 0 && seq == 0 && memcmp(h, jn_zeros, REC_HDR) == 0)
			break;		/* the end marker */
		if (len > JOURNAL_MAX_RECORD || len > size - off - REC_HDR) {
			snprintf(why, sizeof(why), "record length %" PRIu64
			    " out of bounds", len);
			goto bad;
		}
		if (seq != rp->expect) {
			snprintf(why, sizeof(why), "seq %" PRIu64
			    ", expected %" PRIu64, seq, rp->expect);
			goto bad;
		}
		if (get32(h) != crc32c(0, h + 4, REC_HDR - 4 + len)) {
			snprintf(why, sizeof(why), "checksum mismatch at seq %"
			    PRIu64, seq);
			goto bad;
		}
		s->end = off;
		if (jn_seg_index(s) < 0) {
			r = -ENOMEM;
			jn_seterr(rp->err, rp->errlen, "out of memory indexing "
			    "%s/%s", j->dir, name);
			goto out;
		}
		s->next_seq = seq + 1;
		s->records++;
		j->next_seq = seq + 1;	/* so that apply may journal_ref() */
		rp->expect = seq + 1;
		if (rp->apply && (r = rp->apply(rp->arg, seq, h[16],
		    h + REC_HDR, (size_t)len)) != 0) {
			jn_seterr(rp->err, rp->errlen, "replay stopped at seq %"
			    PRIu64 " in %s/%s: apply failed (%d)", seq,
			    j->dir, name, r);
			goto out;
		}
	}
	if (off > size)
		off = size;
	/*
	 * Past the end marker the last segment must hold only jn_zeros:
	 * appends will continue here, and garbage after them would read as
	 * damage later.
	 */
	if (last && off < size && written_end(m, off, size) > off) {
		snprintf(why, sizeof(why), "garbage after the last record");
		goto bad;
	}
	s->end = s->written = off;
	goto out;

bad:
	wend = written_end(m, off, size);
	if (!last || valid_record_in(m, off, wend, size, rp->expect))
		goto corrupt;
	if (off == 0) {
		/* a segment torn while being created: no record in it */
		log_warn("journal: %s/%s: %s, nothing valid in it; deleted "
		    "(torn tail)", j->dir, name, why);
		r = drop_from(j, i);
		goto out;
	}
	log_warn("journal: torn tail in %s/%s at offset %" PRIu64 " (%s): "
	    "%" PRIu64 " bytes zeroed", j->dir, name, off, why, wend - off);
	if ((r = zero_range(j, fd, off, wend - off)) < 0 ||
	    (j->io.fdatasync(fd) < 0 && (r = -errno) < 0)) {
		jn_seterr(rp->err, rp->errlen, "cannot truncate the torn tail "
		    "of %s/%s: %s", j->dir, name, strerror(-r));
		goto out;
	}
	s->end = s->written = off;
	goto out;

corrupt:
	if (!rp->repair) {
		jn_seterr(rp->err, rp->errlen, "journal corrupt: %s/%s at offset "
		    "%" PRIu64 ": %s (repair cuts the journal there, losing "
		    "what follows)", j->dir, name, off, why);
		r = -EBADMSG;
		goto out;
	}
	log_error("journal: REPAIR: cutting the journal at %s/%s offset %"
	    PRIu64 " (%s); deleting %zu segment file(s); records from seq %"
	    PRIu64 " on are lost", j->dir, name, off, why,
	    j->nseg - i - (off > 0), rp->expect);
	if (off == 0) {
		r = drop_from(j, i);
		goto out;
	}
	wend = written_end(m, off, size);
	if ((r = zero_range(j, fd, off, wend - off)) < 0 ||
	    (j->io.fdatasync(fd) < 0 && (r = -errno) < 0)) {
		jn_seterr(rp->err, rp->errlen, "cannot cut %s/%s: %s", j->dir,
		    name, strerror(-r));
		goto out;
	}
	s->end = s->written = off;
	r = drop_from(j, i + 1);
out:
	if (m != NULL)
		munmap((void *)m, size);
	if (fd >= 0)
		close(fd);
	return r;
}

/*
 * The spare may hold records written ahead of a segment switch whose
 * rename a crash prevented (see the top of this file).  If its header
 * continues the journal exactly, it is renamed into place and replayed as
 * the last segment; otherwise it holds nothing that was confirmed, and
 * spare_run() truncates it later.  0 or -errno.
 */
static int
adopt_spare(struct journal *j, struct replay *rp)
{
	uint8_t h[SEG_HDR];
	char name[SEG_NAME_MAX];
	ssize_t n;
	int fd, r;

	fd = openat(j->dirfd, SPARE_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;	/* none (or unreadable: spare_run() says) */
	n = pread(fd, h, sizeof(h), 0);
	close(fd);
	if (n != SEG_HDR || !jn_header_ok(h, SEG_HDR, rp->expect))
		return 0;
	jn_seg_name(name, rp->expect);
	if (renameat(j->dirfd, SPARE_NAME, j->dirfd, name) < 0 ||
	    fsync(j->dirfd) < 0) {
		r = -errno;
		jn_seterr(rp->err, rp->errlen, "cannot rename %s/%s to %s: %s",
		    j->dir, SPARE_NAME, name, strerror(-r));
		return r;
	}
	log_warn("journal: %s/%s held records written ahead of a segment "
	    "switch; renamed to %s", j->dir, SPARE_NAME, name);
	if (seg_push(j, rp->expect, 0) == NULL)
		return -ENOMEM;
	return replay_seg(j, j->nseg - 1, rp);
}

int
journal_replay(struct journal *j,
    int (*apply)(void *, uint64_t, uint8_t, const uint8_t *, size_t),
    void *arg, int repair, char *err, size_t errlen)
{
	struct replay rp = { apply, arg, repair, err, errlen, 0 };
	struct seg *s;
	char name[SEG_NAME_MAX];
	size_t i;
	int r;

	if (j->replayed || j->replaying || j->nseg > 0)
		return -EINVAL;
	if ((r = scan_dir(j, err, errlen)) < 0)
		return r;
	j->replaying = 1;
	ix_clean(j);
	for (i = 0; i < j->nseg; i++) {
		/* Sealed segments from their index when they have a good
		 * one; the last one always in full: appends go on there.
		 * From a cold cache, the next index is read meanwhile. */
		if (i + 2 < j->nseg && j->ixo.apply)
			ix_readahead(j, j->segs[i + 1].first_seq);
		r = i + 1 < j->nseg && j->ixo.apply ? ix_replay(j, i, &rp) : 0;
		if (r == 0)
			r = replay_seg(j, i, &rp);
		if (r < 0)
			return r;
	}
	if (j->nseg > 0 && (r = adopt_spare(j, &rp)) < 0)
		return r;
	j->replaying = 0;
	if (rp.expect > 0)
		j->next_seq = rp.expect;
	j->written_seq = j->synced_seq = j->next_seq - 1;
	if (j->nseg > 0) {
		/* appends go on in the last segment */
		j->head = j->nseg - 1;
		s = &j->segs[j->head];
		jn_seg_name(name, s->first_seq);
		s->fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC);
		if (s->fd < 0) {
			r = -errno;
			jn_seterr(err, errlen, "cannot open %s/%s: %s", j->dir,
			    name, strerror(-r));
			return r;
		}
		/* what a crashed predecessor left in the page cache is
		 * durable before anything is built on it */
		if (j->io.fdatasync(s->fd) < 0 || fsync(j->dirfd) < 0) {
			r = -errno;
			jn_seterr(err, errlen, "cannot sync %s: %s", j->dir,
			    strerror(-r));
			return r;
		}
	}
	j->replayed = 1;
	trim(j);
	spare_request(j);
	/* Sealed segments read in full get their index now (an old data
	 * directory, a crash before the build, a damaged one), after the
	 * spare: the worker runs jobs in order. */
	for (i = 0; i + 1 < j->nseg; i++)
		if (!j->segs[i].from_index && j->segs[i].live > 0)
			ix_queue(j, j->segs[i].first_seq);
	return 0;
}

/* ---- close ---- */

/* Write and sync everything buffered, inline: the loop is gone. */
static void
flush_inline(struct journal *j)
{
	struct seg *s;
	int r;

	while (j->nseg > 0) {
		s = &j->segs[j->head];
		if ((r = write_head(j)) < 0) {
			log_error("journal: closing %s: records after seq %"
			    PRIu64 " are lost: %s", j->dir, j->written_seq,
			    strerror(-r));
			return;
		}
		if (s->fd >= 0 && j->io.fdatasync(s->fd) < 0) {
			log_error("journal: closing %s: fdatasync: %s",
			    j->dir, strerror(errno));
			return;
		}
		j->synced_seq = s->next_seq - 1;
		if (j->head + 1 == j->nseg)
			break;
		if (head_advance(j) < 0)
			return;
	}
	if (fsync(j->dirfd) < 0)
		log_syswarn("journal: closing %s: fsync", j->dir);
}

void
journal_close(struct journal *j)
{
	if (j == NULL)
		return;
	if (j->sync_ev)
		event_free(j->sync_ev);
	if (j->tick_ev)
		event_free(j->tick_ev);
	if (j->lazy_ev)
		event_free(j->lazy_ev);
	if (j->retry_ev)
		event_free(j->retry_ev);
	if (j->thread_started) {
		__atomic_store_n(&j->stop, 1, __ATOMIC_RELEASE);
		sync_wake(j);
		pthread_join(j->thread, NULL);
	}
	/* the request still out, if any, has finished by now */
	if (j->busy)
		sync_harvest(j);
	j->closing = 1;
	if (j->replayed && !j->fatal)
		flush_inline(j);
	else if (j->replayed && j->wlen > j->wpos)
		log_error("journal: closing %s: records after seq %" PRIu64
		    " are lost: %s", j->dir, j->written_seq,
		    strerror(-j->fatal));
	/* queued unlinks run before the directory is let go */
	worker_free(j->worker);
	j->worker = NULL;
	if (j->spare == SPARE_READY) {
		close(j->spare_fd);
		if (unlinkat(j->dirfd, SPARE_NAME, 0) < 0)
			log_syswarn("journal: cannot delete %s/%s", j->dir,
			    SPARE_NAME);
	}
	seg_cut(j, 0);
	free(j->segs);
	free(j->ixq);
	free(j->wbuf);
	if (j->efd >= 0)
		close(j->efd);
	if (j->req_efd >= 0)
		close(j->req_efd);
	if (j->lazy_fd >= 0)
		close(j->lazy_fd);
	if (j->lockfd >= 0)
		close(j->lockfd);	/* releases the flock */
	if (j->dirfd >= 0)
		close(j->dirfd);
	free(j->dir);
	free(j);
}
