/*
 * journal-index.c - index files of sealed segments (see journal.h,
 * journal_set_index()): built by the worker thread once a segment is
 * sealed, read by replay in place of the segment when they describe it
 * exactly.
 *
 * An index file, journal-<first_seq>.idx, is a 64-byte header (magic,
 * version, header size, first seq, record count, the segment's end and
 * size, the last record's crc, the entries' crc, the header's crc), then
 * one entry per record: its type, its payload length and its summary's
 * length as LEB128 varints, and the summary (record.h, rec_summarize()).
 */
#include "journal-int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"
#include "worker.h"

#define IDX_MAGIC "FERRYIDX"	/* a sealed segment's index file */
#define IDX_VERSION 1
#define IDX_HDR 64
#define IDX_NAME_MAX 40		/* "journal-" 20 digits ".idx" NUL */
#define IDX_TMP "journal.idx.tmp"	/* being written; never an index */

static void
ix_name(char *buf, uint64_t first_seq)
{
	snprintf(buf, IDX_NAME_MAX, "journal-%020" PRIu64 ".idx", first_seq);
}

/* Delete segment first_seq's index file, if any: before the segment goes
 * or changes, so that an index never outlives what it describes.  The
 * unlink's own error is only logged: replay checks an index against its
 * segment anyway. */
void
ix_unlink(struct journal *j, uint64_t first_seq)
{
	char name[IDX_NAME_MAX];

	ix_name(name, first_seq);
	if (unlinkat(j->dirfd, name, 0) < 0 && errno != ENOENT)
		log_syswarn("journal: cannot delete %s/%s", j->dir, name);
}

/* LEB128: at most 5 bytes for 32 bits. */
static size_t
put_varint(uint8_t *p, uint32_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Read one at *pp (below end); 0, or -1 if it runs past end or 32 bits. */
static int
get_varint(const uint8_t **pp, const uint8_t *end, uint32_t *v)
{
	const uint8_t *p = *pp;
	uint32_t r = 0;

	for (int shift = 0; shift < 35; shift += 7) {
		if (p >= end || (shift == 28 && *p > 0x0f))
			return -1;
		r |= (uint32_t)(*p & 0x7f) << shift;
		if (!(*p++ & 0x80)) {
			*v = r;
			*pp = p;
			return 0;
		}
	}
	return -1;
}

struct ix_job {
	struct journal *j;
	uint64_t first_seq;
	int built;
};

/* Buffer growth for ix_run(): 0 or -ENOMEM. */
static int
grow(uint8_t **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 65536;
	uint8_t *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	if (!(p = realloc(*buf, n)))
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

/* Write buf to DIR/IDX_TMP, make it durable, rename it to name and make
 * that durable: a crash leaves no index or this one, never part of it. */
static int
ix_write(struct journal *j, const char *name, const uint8_t *buf,
    size_t len)
{
	size_t done = 0;
	ssize_t w;
	int fd, r = 0;

	fd = openat(j->dirfd, IDX_TMP, O_WRONLY | O_CREAT | O_TRUNC |
	    O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (done < len) {
		w = write(fd, buf + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			r = w < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)w;
	}
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && renameat(j->dirfd, IDX_TMP, j->dirfd, name) < 0)
		r = -errno;
	if (r == 0 && fsync(j->dirfd) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(j->dirfd, IDX_TMP, 0);
	return r;
}

/*
 * Worker thread: build the index of a sealed segment from its file (in the
 * page cache, usually: it was just written).  Nothing the loop owns is
 * touched: the segment is sealed, and only this thread deletes segments,
 * after the jobs queued before.
 */
static void
ix_run(void *arg)
{
	struct ix_job *x = arg;
	struct journal *j = x->j;
	char name[SEG_NAME_MAX], iname[IDX_NAME_MAX];
	const uint8_t *m = NULL, *h;
	uint8_t *out = NULL, *sum = NULL, *o;
	size_t ocap = 0, scap = 0, olen = IDX_HDR;
	uint64_t size = 0, off, len, seq = x->first_seq, n = 0;
	uint32_t last_crc = 0;
	ssize_t sl;
	struct stat st;
	int fd, r = 0;

	jn_seg_name(name, x->first_seq);
	ix_name(iname, x->first_seq);
	if ((fd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0)
		return;		/* deleted meanwhile: nothing to index */
	if (fstat(fd, &st) < 0 || (size = (uint64_t)st.st_size) < SEG_HDR ||
	    (m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0)) ==
	    MAP_FAILED) {
		r = -errno;
		m = NULL;
		goto out;
	}
	if (!jn_header_ok(m, size, x->first_seq) || grow(&out, &ocap, olen)) {
		r = -EBADMSG;
		goto out;
	}
	(void)madvise((void *)m, size, MADV_SEQUENTIAL);
	for (off = SEG_HDR; off + REC_HDR <= size; off += REC_HDR + len) {
		h = m + off;
		len = get32(h + 4);
		if (len == 0 && get64(h + 8) == 0 &&
		    memcmp(h, jn_zeros, REC_HDR) == 0)
			break;		/* the end */
		if (len > JOURNAL_MAX_RECORD || len > size - off - REC_HDR ||
		    get64(h + 8) != seq) {
			r = -EBADMSG;	/* not as it was written */
			goto out;
		}
		if (grow(&sum, &scap, (size_t)len + 16) < 0 ||
		    grow(&out, &ocap, olen + 11 + (size_t)len + 16) < 0) {
			r = -ENOMEM;
			goto out;
		}
		sl = j->ixo.summarize(h[16], h + REC_HDR, (size_t)len, sum,
		    scap);
		if (sl < 0) {
			r = (int)sl;
			goto out;
		}
		o = out + olen;
		*o++ = h[16];
		o += put_varint(o, (uint32_t)len);
		o += put_varint(o, (uint32_t)sl);
		memcpy(o, sum, (size_t)sl);
		olen = (size_t)(o - out) + (size_t)sl;
		last_crc = get32(h);
		seq++;
		n++;
	}
	/* Worth it only if replay reads much less: small messages' records
	 * are mostly what the summary keeps anyway. */
	if (n == 0 || olen - IDX_HDR > (off - SEG_HDR) / 2)
		goto out;
	memset(out, 0, IDX_HDR);
	memcpy(out, IDX_MAGIC, 8);
	put32(out + 8, IDX_VERSION);
	put32(out + 12, IDX_HDR);
	put64(out + 16, x->first_seq);
	put64(out + 24, n);
	put64(out + 32, off);
	put64(out + 40, size);
	put32(out + 48, last_crc);
	put32(out + 52, crc32c(0, out + IDX_HDR, olen - IDX_HDR));
	put32(out + 60, crc32c(0, out, 60));
	if ((r = ix_write(j, iname, out, olen)) == 0)
		x->built = 1;
out:
	if (r < 0)
		log_warn("journal: cannot write the index %s/%s: %s (replay "
		    "reads the segment instead)", j->dir, iname,
		    strerror(-r));
	if (m)
		munmap((void *)m, size);
	close(fd);
	free(out);
	free(sum);
}

static void
ix_done(void *arg)
{
	struct ix_job *x = arg;
	struct journal *j = x->j;

	j->ix_built += x->built;
	j->ix_busy = 0;
	free(x);
	ix_next(j);
}

/* Start the next build, one at a time so that the worker's other jobs (a
 * spare segment, unlinks) never wait behind many of them. */
void
ix_next(struct journal *j)
{
	struct ix_job *x;
	struct seg *s;
	uint64_t seq;

	while (!j->ix_busy && j->nixq > 0 && j->worker && !j->closing) {
		seq = j->ixq[0];
		if (seq == j->ix_defer)
			return;		/* the newest: see ix_defer */
		memmove(j->ixq, j->ixq + 1, --j->nixq * sizeof(*j->ixq));
		if (!(s = jn_seg_find(j, seq)) || s->live == 0)
			continue;	/* deleted or dead meanwhile */
		if (!(x = malloc(sizeof(*x))))
			return;
		*x = (struct ix_job){j, seq, 0};
		if (worker_submit(j->worker, ix_run, ix_done, x) < 0) {
			free(x);
			return;
		}
		j->ix_busy = 1;
	}
}

/* Have segment first_seq (sealed) indexed, if indexes are kept. */
void
ix_queue(struct journal *j, uint64_t first_seq)
{
	uint64_t *q;
	size_t cap;

	if (!j->ixo.summarize)
		return;
	if (j->nixq == j->ixqcap) {
		cap = j->ixqcap ? 2 * j->ixqcap : 16;
		if (!(q = realloc(j->ixq, cap * sizeof(*q))))
			return;	/* replay reads it in full */
		j->ixq = q;
		j->ixqcap = cap;
	}
	j->ixq[j->nixq++] = first_seq;
	ix_next(j);
}

void
journal_set_index(struct journal *j, const struct journal_index *ix)
{
	j->ixo = ix ? *ix : (struct journal_index){0};
}

/* A build a crash cut short leaves its temporary file: delete it. */
void
ix_clean(struct journal *j)
{
	if (unlinkat(j->dirfd, IDX_TMP, 0) == 0)
		log_info("journal: deleted %s/%s, an unfinished index", j->dir,
		    IDX_TMP);
}

/* Have the kernel read segment first_seq's index, if any, ahead. */
void
ix_readahead(struct journal *j, uint64_t first_seq)
{
	char iname[IDX_NAME_MAX];
	int fd;

	ix_name(iname, first_seq);
	if ((fd = openat(j->dirfd, iname, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
	close(fd);
}

/*
 * Replay sealed segment segs[i] from its index file, without reading its
 * records: 1 if it did, 0 if there is no usable index (missing, damaged,
 * or not describing the segment as it is: then the caller reads the
 * segment), or apply's error.  Before anything is applied the whole index
 * is checked: its checksums, that its entries add up to the segment's end,
 * and that the segment agrees: its size, its header, the header of its
 * last record (position, seq, length, type and checksum) and the end
 * marker after it.
 */
int
ix_replay(struct journal *j, size_t i, struct replay *rp)
{
	struct seg *s = &j->segs[i];
	char iname[IDX_NAME_MAX], name[SEG_NAME_MAX];
	const char *why = NULL;
	uint8_t *buf = NULL, h[SEG_HDR];
	const uint8_t *p, *end;
	uint64_t n, segend, segsize, off, last_off = 0, seq;
	uint32_t plen, slen, last_len = 0;
	uint8_t last_type = 0;
	struct stat st;
	ssize_t got;
	int fd, sfd = -1, r = 0;

	ix_name(iname, s->first_seq);
	jn_seg_name(name, s->first_seq);
	if ((fd = openat(j->dirfd, iname, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno != ENOENT)
			log_syswarn("journal: cannot open %s/%s", j->dir,
			    iname);
		return 0;
	}
	if (fstat(fd, &st) < 0 || st.st_size < IDX_HDR ||
	    (uint64_t)st.st_size > (uint64_t)1 << 40 ||
	    !(buf = malloc((size_t)st.st_size))) {
		why = "unreadable or too short";
		goto bad;
	}
	for (off = 0; off < (uint64_t)st.st_size; off += (uint64_t)got) {
		got = pread(fd, buf + off, (size_t)st.st_size - off,
		    (off_t)off);
		if (got < 0 && errno == EINTR)
			got = 0;
		else if (got <= 0)
			break;
	}
	if (off < (uint64_t)st.st_size) {
		why = "short read";
		goto bad;
	}
	if (memcmp(buf, IDX_MAGIC, 8) || get32(buf + 60) != crc32c(0, buf,
	    60)) {
		why = "bad header";
		goto bad;
	}
	if (get32(buf + 8) != IDX_VERSION || get32(buf + 12) != IDX_HDR) {
		why = "unknown version";
		goto bad;
	}
	n = get64(buf + 24);
	segend = get64(buf + 32);
	segsize = get64(buf + 40);
	p = buf + IDX_HDR;
	end = buf + st.st_size;
	if (get64(buf + 16) != s->first_seq || get32(buf + 52) !=
	    crc32c(0, p, (size_t)(end - p))) {
		why = "checksum mismatch";
		goto bad;
	}
	/* Its entries must account for the segment's records exactly. */
	for (off = SEG_HDR, seq = 0; p < end; seq++) {
		last_type = *p++;
		if (get_varint(&p, end, &plen) < 0 ||
		    get_varint(&p, end, &slen) < 0 || slen > end - p ||
		    plen > JOURNAL_MAX_RECORD) {
			why = "malformed entry";
			goto bad;
		}
		p += slen;
		last_off = off;
		last_len = plen;
		off += REC_HDR + plen;
	}
	if (seq == 0 || seq != n || off != segend || segend > segsize) {
		why = "entries do not add up";
		goto bad;
	}
	if (rp->expect && s->first_seq != rp->expect)
		goto skip;	/* replay_seg() says what is wrong */

	/* Does the segment agree? */
	sfd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (sfd < 0 || fstat(sfd, &st) < 0 ||
	    (uint64_t)st.st_size != segsize ||
	    pread(sfd, h, SEG_HDR, 0) != SEG_HDR ||
	    !jn_header_ok(h, SEG_HDR, s->first_seq) ||
	    pread(sfd, h, REC_HDR, (off_t)last_off) != REC_HDR ||
	    get32(h) != get32(buf + 48) || get32(h + 4) != last_len ||
	    get64(h + 8) != s->first_seq + n - 1 || h[16] != last_type) {
		why = "it does not match the segment";
		goto bad;
	}
	if (segend + REC_HDR <= segsize &&
	    (pread(sfd, h, REC_HDR, (off_t)segend) != REC_HDR ||
	    memcmp(h, jn_zeros, REC_HDR) != 0)) {
		why = "the segment holds more records";
		goto bad;
	}
	close(sfd);
	sfd = -1;

	/* The segment's state first, as if read: journal_read() works for
	 * every record while apply runs. */
	s->cap = segsize;
	for (p = buf + IDX_HDR, off = SEG_HDR; p < end; ) {
		p++;
		get_varint(&p, end, &plen);
		get_varint(&p, end, &slen);
		p += slen;
		s->end = off;
		if (jn_seg_index(s) < 0) {
			r = -ENOMEM;
			jn_seterr(rp->err, rp->errlen, "out of memory indexing "
			    "%s/%s", j->dir, name);
			goto out;
		}
		s->next_seq++;
		s->records++;
		off += REC_HDR + plen;
	}
	s->end = s->written = segend;
	j->next_seq = s->next_seq;
	s->from_index = 1;
	j->ix_replayed++;
	for (p = buf + IDX_HDR, seq = s->first_seq; p < end; seq++) {
		uint8_t type = *p++;

		get_varint(&p, end, &plen);
		get_varint(&p, end, &slen);
		if ((r = j->ixo.apply(rp->arg, seq, type, p, slen)) != 0) {
			jn_seterr(rp->err, rp->errlen, "replay stopped at seq %"
			    PRIu64 " in %s/%s (from its index): apply failed "
			    "(%d)", seq, j->dir, name, r);
			goto out;
		}
		p += slen;
	}
	rp->expect = s->next_seq;
	r = 1;
	goto out;
bad:
	log_warn("journal: index %s/%s: %s; reading the segment instead",
	    j->dir, iname, why);
skip:
	r = 0;
out:
	if (sfd >= 0)
		close(sfd);
	close(fd);
	free(buf);
	return r;
}
