/*
 * test-journal.c - the journal's file layer: CRC32C, segments, replay,
 * torn tails, corruption, faults, group commit and segment deletion.
 *
 * Every test works in its own directory under a base directory that main()
 * creates and removes, so a failing (exiting) test leaves nothing behind.
 * Format constants (32-byte segment header, 17-byte record header) are the
 * documented on-disk layout of journal.h.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "journal.h"
#include "log.h"

#define SEG_HDR 32
#define REC_HDR 17
#define SMALL_SEG 4096

static char base_dir[64];	/* made by main(), removed after the run */
static char tdir[128];		/* this test's directory */
static char jdir[160];		/* the journal's, created by journal_open */
static struct event_base *base;

/* ---- helpers ---- */

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void
rm_rf(const char *p)
{
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- fault injection ---- */

static struct {
	int pwrite_errno;	/* fail pwrite with it */
	int short_once;		/* first failing call writes half instead */
	int zero_ok;		/* writes of zeros still succeed */
	int fsync_errno;
	int falloc_errno;
	int fsyncs;		/* fdatasync calls seen */
	int slow_ms;		/* fallocate and unlink sleep this long */
	int fsync_ms;		/* fdatasync sleeps this long first */
	int loop_fallocs;	/* fallocate calls in the test's thread */
	int loop_unlinks;	/* unlink calls in the test's thread */
	int unlinks;
} fault;
static pthread_t test_thread;	/* runs the loop */

static void
setup(void)
{
	snprintf(tdir, sizeof(tdir), "%s/t.XXXXXX", base_dir);
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	snprintf(jdir, sizeof(jdir), "%s/j", tdir);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	log_level = LOG_ERROR;	/* the torn-tail loops would flood stderr */
	memset(&fault, 0, sizeof(fault));	/* for CK_FORK=no runs */
	test_thread = pthread_self();
}

static void
teardown(void)
{
	event_base_free(base);
	rm_rf(tdir);
}

/* Record seq's deterministic content: 10..59 bytes, none of them zero. */
static size_t
payload(uint64_t seq, uint8_t *buf)
{
	size_t len = 10 + (size_t)(seq * 13 % 50), i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)((seq * 7 + i) % 255 + 1);
	return len;
}

static size_t
rec_size(uint64_t seq)
{
	uint8_t buf[64];

	return REC_HDR + payload(seq, buf);
}

/* Offset of record seq in the segment starting with record first. */
static uint64_t
rec_off(uint64_t first, uint64_t seq)
{
	uint64_t off = SEG_HDR, s;

	for (s = first; s < seq; s++)
		off += rec_size(s);
	return off;
}

/* What replay saw. */
struct seen {
	uint64_t n;
	uint64_t first, last;
	int bad;		/* a record out of order or with wrong bytes */
	uint8_t last_type;
	int ref;		/* journal_ref() each record into j */
	struct journal *j;
	uint64_t fail_at;	/* apply returns -42 at this seq */
};

static int
apply_check(void *arg, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len)
{
	struct seen *sn = arg;
	uint8_t want[64];
	size_t wlen = payload(seq, want);

	if (sn->fail_at && seq == sn->fail_at)
		return -42;
	if (sn->n == 0)
		sn->first = seq;
	else if (seq != sn->last + 1)
		sn->bad = 1;
	if (type == (uint8_t)seq && (len != wlen || memcmp(p, want, len)))
		sn->bad = 1;
	sn->n++;
	sn->last = seq;
	sn->last_type = type;
	if (sn->ref && journal_ref(sn->j, seq) != 0)
		sn->bad = 1;
	return 0;
}

static struct journal *
jopen_io(int policy, uint64_t segsz, const struct journal_io *io)
{
	struct journal_opts o = { jdir, policy, segsz, io };
	struct journal *j = NULL;
	char err[256] = "";
	int r;

	r = journal_open(&j, base, &o, err, sizeof(err));
	ck_assert_msg(r == 0, "journal_open: %d %s", r, err);
	return j;
}

static struct journal *
jopen(int policy, uint64_t segsz)
{
	return jopen_io(policy, segsz, NULL);
}

/*
 * Open and replay, taking a ref on every record as a broker would for live
 * objects (else replay deletes all but the last segment); the seen counts
 * come back in *sn.
 */
static struct journal *
jreopen(int policy, uint64_t segsz, struct seen *sn)
{
	struct journal *j = jopen(policy, segsz);
	char err[256] = "";
	int r;

	memset(sn, 0, sizeof(*sn));
	sn->ref = 1;
	sn->j = j;
	r = journal_replay(j, apply_check, sn, 0, err, sizeof(err));
	ck_assert_msg(r == 0, "replay: %d %s", r, err);
	ck_assert_msg(!sn->bad, "replayed records out of order or damaged");
	return j;
}

static void
append_n(struct journal *j, uint64_t n)
{
	uint8_t buf[64];
	uint64_t seq, want, i;
	size_t len;

	for (i = 0; i < n; i++) {
		want = journal_next_seq(j);
		len = payload(want, buf);
		ck_assert_int_eq(journal_append(j, (uint8_t)want, buf, len,
		    &seq), 0);
		ck_assert_uint_eq(seq, want);
	}
}

static int
count_segs(void)
{
	char path[256];
	struct stat st;
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "ls %s | grep -c '^journal-.*\\.seg$'",
	    jdir);
	if (stat(jdir, &st) < 0)
		return 0;
	f = popen(path, "r");
	ck_assert_ptr_nonnull(f);
	if (fscanf(f, "%d", &n) != 1)
		n = 0;
	pclose(f);
	return n;
}

static void
seg_path(char *out, size_t outlen, uint64_t first_seq)
{
	snprintf(out, outlen, "%s/journal-%020llu.seg", jdir,
	    (unsigned long long)first_seq);
}

static void
patch(const char *path, uint64_t off, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, p, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void
flip(const char *path, uint64_t off)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static int
all_zero(const char *path, uint64_t off, size_t len)
{
	uint8_t buf[8192];
	size_t i;
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_uint_le(len, sizeof(buf));
	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
	for (i = 0; i < len; i++)
		if (buf[i] != 0)
			return 0;
	return 1;
}

/* Durable callback bookkeeping; stops the loop once a target is met. */
struct durable {
	uint64_t written, synced;
	uint64_t want_written, want_synced;
	int want_error;
	int calls, bad;
	struct journal *j;
};

static struct durable dur;

static void
durable_cb(void *arg, uint64_t written, uint64_t synced)
{
	struct durable *d = arg;

	if (written < d->written || synced < d->synced || synced > written)
		d->bad = 1;
	d->written = written;
	d->synced = synced;
	d->calls++;
	if ((d->want_written && written >= d->want_written) ||
	    (d->want_synced && synced >= d->want_synced) ||
	    (d->want_error && journal_error(d->j) != 0))
		event_base_loopbreak(base);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(base);
}

/*
 * Run the loop until the callback breaks it, at most secs seconds.  Not
 * event_base_loopexit(): its timer outlives a loop the callback broke
 * early, and would end the next run_loop() before its time.
 */
static void
run_loop(double secs)
{
	struct timeval tv = { (time_t)secs,
	    (suseconds_t)((secs - (double)(time_t)secs) * 1e6) };
	struct event *t = evtimer_new(base, stop_cb, NULL);

	ck_assert_ptr_nonnull(t);
	evtimer_add(t, &tv);
	event_base_dispatch(base);
	event_free(t);
}

static void
watch(struct journal *j)
{
	memset(&dur, 0, sizeof(dur));
	dur.j = j;
	journal_set_durable_cb(j, durable_cb, &dur);
}

static ssize_t
fault_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *b = buf;
	size_t i;

	if (__atomic_load_n(&fault.pwrite_errno, __ATOMIC_SEQ_CST) == 0)
		return pwrite(fd, buf, len, off);
	if (fault.zero_ok) {
		/* a full disk still lets preallocated blocks be rewritten */
		for (i = 0; i < len && b[i] == 0; i++)
			;
		if (i == len)
			return pwrite(fd, buf, len, off);
	}
	if (fault.short_once && len > 1) {
		fault.short_once = 0;
		return pwrite(fd, buf, len / 2, off);
	}
	errno = fault.pwrite_errno;
	return -1;
}

static int
fault_fdatasync(int fd)
{
	int e = __atomic_load_n(&fault.fsync_errno, __ATOMIC_SEQ_CST);

	int ms = __atomic_load_n(&fault.fsync_ms, __ATOMIC_SEQ_CST);

	__atomic_add_fetch(&fault.fsyncs, 1, __ATOMIC_SEQ_CST);
	if (ms > 0)
		usleep((useconds_t)ms * 1000);
	if (e) {
		errno = e;
		return -1;
	}
	return fdatasync(fd);
}

static void
slow_down(void)
{
	int ms = __atomic_load_n(&fault.slow_ms, __ATOMIC_SEQ_CST);

	if (ms > 0)
		usleep((useconds_t)ms * 1000);
}

static int
fault_unlink(int dirfd, const char *name)
{
	if (pthread_equal(pthread_self(), test_thread))
		__atomic_add_fetch(&fault.loop_unlinks, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&fault.unlinks, 1, __ATOMIC_SEQ_CST);
	slow_down();
	return unlinkat(dirfd, name, 0);
}

static int
fault_fallocate(int fd, off_t off, off_t len)
{
	int r;

	if (pthread_equal(pthread_self(), test_thread))
		__atomic_add_fetch(&fault.loop_fallocs, 1, __ATOMIC_SEQ_CST);
	slow_down();
	/* the worker thread preallocates: read it as the sync thread
	 * reads fsync_errno */
	if ((r = __atomic_load_n(&fault.falloc_errno, __ATOMIC_SEQ_CST))) {
		errno = r;
		return -1;
	}
	r = posix_fallocate(fd, off, len);
	errno = r;
	return r ? -1 : 0;
}

static const struct journal_io fault_io = {
	fault_pwrite, fault_fdatasync, fault_fallocate, fault_unlink
};

/* Run the loop in short slices until path is gone, at most secs. */
static int
wait_gone(const char *path, double secs)
{
	struct stat st;
	double t;

	for (t = 0; t < secs; t += 0.01) {
		if (stat(path, &st) < 0)
			return 1;
		run_loop(0.01);
	}
	return stat(path, &st) < 0;
}

/* ---- crc32c ---- */

struct crc_vec {
	const char *name;
	uint8_t data[48];
	size_t len;
	uint32_t crc;
};

static struct crc_vec vecs[6];

static void
crc_vectors_init(void)
{
	int i;

	/* RFC 3720 B.4 and the usual check value */
	vecs[0] = (struct crc_vec){ "123456789", "123456789", 9, 0xE3069283 };
	vecs[1] = (struct crc_vec){ "32 zeros", { 0 }, 32, 0x8A9136AA };
	vecs[2].name = "32 x 0xff";
	memset(vecs[2].data, 0xff, 32);
	vecs[2].len = 32;
	vecs[2].crc = 0x62A8AB43;
	vecs[3].name = "0..31";
	vecs[4].name = "31..0";
	for (i = 0; i < 32; i++) {
		vecs[3].data[i] = (uint8_t)i;
		vecs[4].data[i] = (uint8_t)(31 - i);
	}
	vecs[3].len = vecs[4].len = 32;
	vecs[3].crc = 0x46DD794E;
	vecs[4].crc = 0x113FDB5C;
	vecs[5] = (struct crc_vec){ "empty", "", 0, 0 };
}

START_TEST(test_crc_vectors)
{
	size_t i;

	crc_vectors_init();
	for (i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		ck_assert_msg(crc32c_sw(0, vecs[i].data, vecs[i].len) ==
		    vecs[i].crc, "sw %s", vecs[i].name);
		ck_assert_msg(crc32c(0, vecs[i].data, vecs[i].len) ==
		    vecs[i].crc, "dispatch %s", vecs[i].name);
		if (crc32c_hw_available())
			ck_assert_msg(crc32c_hw(0, vecs[i].data,
			    vecs[i].len) == vecs[i].crc, "hw %s",
			    vecs[i].name);
	}
}
END_TEST

START_TEST(test_crc_hw_matches_sw)
{
	uint8_t buf[1100];
	size_t off, len, i;
	uint32_t sw, hw;

	if (!crc32c_hw_available())
		return;		/* nothing to compare on this CPU */
	srand(7);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand();
	for (off = 0; off < 8; off++)
		for (len = 0; len < sizeof(buf) - 8; len += 1 + len / 8) {
			sw = crc32c_sw(0x12345678, buf + off, len);
			hw = crc32c_hw(0x12345678, buf + off, len);
			ck_assert_msg(sw == hw, "off %zu len %zu", off, len);
		}
}
END_TEST

START_TEST(test_crc_continues)
{
	const char *s = "123456789";
	size_t k;

	for (k = 0; k <= 9; k++) {
		ck_assert_uint_eq(crc32c(crc32c(0, s, k), s + k, 9 - k),
		    0xE3069283);
		ck_assert_uint_eq(crc32c_sw(crc32c_sw(0, s, k), s + k, 9 - k),
		    0xE3069283);
	}
}
END_TEST

/* ---- round trips ---- */

START_TEST(test_roundtrip_segments)
{
	struct journal_segment_info si, prev;
	struct journal *j;
	struct seen sn;
	char path[256];
	uint64_t i;
	size_t k;
	struct stat st;

	j = jreopen(FSYNC_ALWAYS, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.n, 0);
	ck_assert_uint_eq(journal_next_seq(j), 1);
	ck_assert_int_eq(stat(jdir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	/* no loop runs: the segment barriers hold writes back until close */
	for (i = 0; i < 300; i += 7) {
		append_n(j, i + 7 > 300 ? 300 - i : 7);
		ck_assert_int_eq(journal_commit(j), 0);
	}
	ck_assert_uint_lt(journal_written_seq(j), 300);
	journal_close(j);

	j = jreopen(FSYNC_ALWAYS, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.n, 300);
	ck_assert_uint_eq(sn.first, 1);
	ck_assert_uint_eq(sn.last, 300);
	ck_assert_uint_eq(journal_written_seq(j), 300);
	ck_assert_uint_eq(journal_synced_seq(j), 300);
	ck_assert_int_ge(count_segs(), 4);
	/* seq continuity across segment files, and the files are named so */
	for (k = 0; journal_segment_info(j, k, &si) == 0; k++) {
		if (k == 0)
			ck_assert_uint_eq(si.first_seq, 1);
		else
			ck_assert_uint_eq(si.first_seq, prev.last_seq + 1);
		ck_assert_uint_ge(si.last_seq, si.first_seq);
		ck_assert_uint_eq(si.records, si.last_seq - si.first_seq + 1);
		seg_path(path, sizeof(path), si.first_seq);
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_int_eq(st.st_size, SMALL_SEG);  /* preallocated */
		prev = si;
	}
	ck_assert_int_eq((int)k, count_segs());
	ck_assert_uint_eq(prev.last_seq, 300);
	ck_assert_int_eq(prev.active, 1);

	/* now with the loop running: barriers complete asynchronously */
	watch(j);
	dur.want_synced = 400;
	append_n(j, 100);
	ck_assert_int_eq(journal_commit(j), 0);
	run_loop(5);
	ck_assert_uint_eq(dur.synced, 400);
	ck_assert_uint_eq(journal_written_seq(j), 400);
	journal_close(j);

	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.n, 400);
	ck_assert_uint_eq(journal_next_seq(j), 401);
	journal_close(j);
}
END_TEST

START_TEST(test_close_writes_uncommitted)
{
	struct journal *j;
	struct seen sn;

	j = jreopen(FSYNC_NEVER, 0, &sn);
	append_n(j, 50);
	ck_assert_uint_eq(journal_written_seq(j), 0);
	journal_close(j);
	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 50);
	journal_close(j);
}
END_TEST

/* journal_read() of every record from first to last, checked. */
static void
read_range(struct journal *j, struct journal_reader *rd, uint64_t first,
    uint64_t last)
{
	uint8_t want[64], type;
	const uint8_t *p;
	size_t len, wlen;

	for (uint64_t s = first; s <= last; s++) {
		int r = journal_read(j, rd, s, &type, &p, &len);

		ck_assert_msg(r == 0, "read of %llu: %d",
		    (unsigned long long)s, r);
		wlen = payload(s, want);
		ck_assert_uint_eq(type, (uint8_t)s);
		ck_assert_uint_eq(len, wlen);
		ck_assert_msg(memcmp(p, want, len) == 0, "record %llu",
		    (unsigned long long)s);
	}
}

/*
 * Records read back by seq (paged-out bodies): from the write buffer
 * before the write, from the files after it, across segments, in any
 * order, after a replay (the index rebuilt), and never a wrong one.
 */
START_TEST(test_read_back)
{
	struct journal_reader rd = {0}, rd2 = {0};
	struct journal *j;
	struct seen sn;
	uint8_t type, bad = 0x55;
	const uint8_t *p;
	size_t len;
	char path[256];

	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	append_n(j, 300);
	for (uint64_t s = 1; s <= 300; s++)	/* live: kept */
		ck_assert_int_eq(journal_ref(j, s), 0);
	/* Unwritten: from the write buffer (several segments of it). */
	read_range(j, &rd, 1, 300);
	ck_assert_int_eq(journal_commit(j), 0);
	run_loop(0.2);
	ck_assert_uint_eq(journal_written_seq(j), 300);
	/* From the files, in order, backwards, and a record taken back. */
	read_range(j, &rd, 1, 300);
	for (uint64_t s = 300; s > 7; s -= 7)
		read_range(j, &rd2, s, s);
	append_n(j, 1);
	ck_assert_int_eq(journal_unappend(j, 301), 0);
	ck_assert_int_eq(journal_read(j, &rd, 301, &type, &p, &len),
	    -ENOENT);
	ck_assert_int_eq(journal_read(j, &rd, 0, &type, &p, &len), -ENOENT);
	ck_assert_uint_gt(rd.preads, 0);
	journal_close(j);
	journal_reader_fini(&rd2);

	/* After replay the index is rebuilt. */
	journal_reader_fini(&rd);
	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	read_range(j, &rd, 1, 300);
	journal_reader_fini(&rd);
	/* Damage under a live journal: read back refused, not served. */
	seg_path(path, sizeof(path), 1);
	patch(path, rec_off(1, 2) + REC_HDR, &bad, 1);
	ck_assert_int_eq(journal_read(j, &rd, 2, &type, &p, &len), -EBADMSG);
	read_range(j, &rd, 1, 1);
	read_range(j, &rd, 3, 300);
	journal_reader_fini(&rd);
	journal_close(j);
}
END_TEST

/* Only the newest record, not yet written, can be taken back; its seq is
 * handed out again, and replay sees no gap. */
START_TEST(test_unappend)
{
	struct journal *j;
	struct seen sn;
	uint64_t last;

	j = jreopen(FSYNC_NEVER, 0, &sn);
	append_n(j, 10);
	last = journal_next_seq(j) - 1;
	ck_assert_int_eq(journal_unappend(j, last - 1), -EINVAL);
	ck_assert_int_eq(journal_unappend(j, last), 0);
	ck_assert_uint_eq(journal_next_seq(j), last);
	/* One level only. */
	ck_assert_int_eq(journal_unappend(j, last - 1), -EINVAL);
	append_n(j, 2);
	ck_assert_int_eq(journal_commit(j), 0);
	last = journal_next_seq(j) - 1;
	/* Written: it stays. */
	ck_assert_int_eq(journal_unappend(j, last), -EINVAL);
	journal_close(j);
	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 11);
	ck_assert_uint_eq(sn.last, last);
	journal_close(j);
}
END_TEST

/*
 * A segment whose last reference goes (its contents copied forward by
 * compaction, say) is deleted only once the records appended until then
 * are written (synced, under always): deleting it first, a crash before
 * the write lost both the original and the copy.
 */
static void
dead_segment_waits(int policy)
{
	struct journal_segment_info si;
	struct journal *j;
	struct seen sn;
	uint64_t first, last, copy;
	char path[256];
	struct stat st;

	j = jreopen(policy, SMALL_SEG, &sn);
	watch(j);
	/* Records referenced as live messages, until a second segment. */
	while (journal_segment_info(j, 1, &si) != 0) {
		append_n(j, 1);
		ck_assert_int_eq(journal_ref(j, journal_next_seq(j) - 1), 0);
	}
	ck_assert_int_eq(journal_segment_info(j, 0, &si), 0);
	first = si.first_seq;
	last = si.last_seq;
	dur.want_written = journal_next_seq(j) - 1;
	ck_assert_int_eq(journal_commit(j), 0);
	run_loop(5);
	ck_assert_uint_eq(dur.written, journal_next_seq(j) - 1);
	seg_path(path, sizeof(path), first);
	ck_assert_int_eq(stat(path, &st), 0);

	/* The copy is appended, then the originals let go: the file stays
	 * while the copy is only in memory. */
	append_n(j, 1);
	copy = journal_next_seq(j) - 1;
	for (uint64_t q = first; q <= last; q++)
		ck_assert_int_eq(journal_unref(j, q), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	dur.want_written = policy == FSYNC_ALWAYS ? 0 : copy;
	dur.want_synced = policy == FSYNC_ALWAYS ? copy : 0;
	ck_assert_int_eq(journal_commit(j), 0);
	run_loop(5);
	ck_assert_uint_ge(dur.written, copy);
	if (policy == FSYNC_ALWAYS)
		ck_assert_uint_ge(dur.synced, copy);
	ck_assert(wait_gone(path, 5));	/* by the worker thread */
	journal_close(j);
}

START_TEST(test_dead_segment_waits_for_write)
{
	dead_segment_waits(FSYNC_NEVER);
	dead_segment_waits(FSYNC_ALWAYS);
}
END_TEST

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop in short slices until n segment files are left (the
 * worker thread deletes them), at most secs; returns how many are. */
static int
wait_segs(int n, double secs)
{
	double t;

	for (t = 0; t < secs && count_segs() != n; t += 0.01)
		run_loop(0.01);
	return count_segs();
}

/* Run the loop in short slices until the spare is ready, at most secs. */
static int
wait_spare(struct journal *j, double secs)
{
	struct journal_stats st;
	double t;

	for (t = 0; t < secs; t += 0.01) {
		journal_get_stats(j, &st);
		if (st.spare_ready)
			return 1;
		run_loop(0.01);
	}
	return 0;
}

/*
 * Deleting a dead segment and preallocating the next one never hold up the
 * thread that appends and commits: with both taking 300 ms, rolling over
 * to a new segment and letting the old one die still return at once, the
 * files change behind the loop's back, and the worker, not the loop
 * thread, made those calls.
 */
START_TEST(test_file_work_off_loop)
{
	struct journal_segment_info si;
	struct journal *j;
	struct seen sn;
	char path[256], spare[200];
	uint64_t first, last, q;
	double t0, took;
	struct stat st;

	j = jopen_io(FSYNC_NEVER, SMALL_SEG, &fault_io);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	watch(j);
	ck_assert(wait_spare(j, 5));
	snprintf(spare, sizeof(spare), "%s/journal.spare", jdir);
	ck_assert_int_eq(stat(spare, &st), 0);
	ck_assert_int_eq(st.st_size, SMALL_SEG);

	__atomic_store_n(&fault.slow_ms, 300, __ATOMIC_SEQ_CST);
	/* segment 1 takes the spare; a second one needs the next spare */
	append_n(j, 1);
	ck_assert_int_eq(journal_ref(j, 1), 0);
	t0 = now_s();
	ck_assert_int_eq(journal_commit(j), 0);
	took = now_s() - t0;
	ck_assert_msg(took < 0.15, "commit took %.3f s", took);
	ck_assert_int_eq(fault.loop_fallocs, 0);
	seg_path(path, sizeof(path), 1);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, SMALL_SEG);
	ck_assert(wait_spare(j, 5));
	while (journal_segment_info(j, 1, &si) != 0) {
		append_n(j, 1);
		ck_assert_int_eq(journal_ref(j, journal_next_seq(j) - 1), 0);
	}
	dur.want_written = journal_next_seq(j) - 1;
	t0 = now_s();
	ck_assert_int_eq(journal_commit(j), 0);
	took = now_s() - t0;
	ck_assert_msg(took < 0.15, "rolling over took %.3f s", took);
	run_loop(5);			/* the barrier sync */
	ck_assert_uint_eq(dur.written, journal_next_seq(j) - 1);
	ck_assert_int_eq(fault.loop_fallocs, 0);

	/* segment 1 dies; its unlink takes 300 ms, not in this thread */
	ck_assert_int_eq(journal_segment_info(j, 0, &si), 0);
	first = si.first_seq;
	last = si.last_seq;
	append_n(j, 1);
	t0 = now_s();
	for (q = first; q <= last; q++)
		ck_assert_int_eq(journal_unref(j, q), 0);
	ck_assert_int_eq(journal_commit(j), 0);
	took = now_s() - t0;
	ck_assert_msg(took < 0.15, "letting a segment die took %.3f s", took);
	ck_assert(wait_gone(path, 5));
	ck_assert_int_ge(fault.unlinks, 1);
	ck_assert_int_eq(fault.loop_unlinks, 0);
	ck_assert_int_eq(fault.loop_fallocs, 0);
	journal_close(j);

	/* close removed the spare; everything appended is there */
	ck_assert_int_ne(stat(spare, &st), 0);
	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.first, first + (last - first + 1));
	ck_assert(!sn.bad);
	journal_close(j);
}
END_TEST

/*
 * Open with FSYNC_ALWAYS, write and sync seq 1, and wait for the spare;
 * then, with fdatasync taking ms, fill segment 1 until the next record
 * starts segment 2 and commit.  *second gets segment 2's first seq; returns
 * the last seq appended.
 */
static uint64_t
roll_with_slow_sync(struct journal **jp, int ms, uint64_t *second)
{
	struct journal_segment_info si;
	struct journal *j;

	j = *jp = jopen_io(FSYNC_ALWAYS, SMALL_SEG, &fault_io);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	watch(j);
	append_n(j, 1);
	ck_assert_int_eq(journal_commit(j), 0);
	dur.want_synced = 1;
	run_loop(5);
	ck_assert_uint_eq(dur.synced, 1);
	ck_assert(wait_spare(j, 5));
	__atomic_store_n(&fault.fsync_ms, ms, __ATOMIC_SEQ_CST);
	while (journal_segment_info(j, 1, &si) != 0)
		append_n(j, 1);
	*second = si.first_seq;
	ck_assert_int_eq(journal_commit(j), 0);
	return journal_next_seq(j) - 1;
}

/*
 * A delivery waits for its record to be written: the records of a new
 * segment are written at once, into the spare, while the barrier sync of
 * the full one (300 ms here) runs; the spare is named only after it.
 */
START_TEST(test_switch_writes_ahead)
{
	struct journal *j;
	struct seen sn;
	char path[256];
	uint64_t second, last;
	struct stat st;

	last = roll_with_slow_sync(&j, 300, &second);
	ck_assert_uint_eq(journal_written_seq(j), last);
	ck_assert_uint_lt(journal_synced_seq(j), second);
	seg_path(path, sizeof(path), second);
	ck_assert_int_ne(stat(path, &st), 0);	/* no name before the barrier */
	{
		/* a paged body may live there: it reads back all the same */
		struct journal_reader rd = {0};
		const uint8_t *p;
		uint8_t type, want[64];
		size_t len;

		ck_assert_int_eq(journal_read(j, &rd, second, &type, &p, &len),
		    0);
		ck_assert_uint_eq(len, payload(second, want));
		ck_assert(memcmp(p, want, len) == 0);
		journal_reader_fini(&rd);
	}
	dur.want_synced = last;
	run_loop(5);
	ck_assert_uint_eq(dur.synced, last);
	ck_assert(!dur.bad);
	ck_assert_int_eq(stat(path, &st), 0);
	journal_close(j);
	j = jreopen(FSYNC_ALWAYS, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.last, last);
	journal_close(j);
}
END_TEST

/*
 * A crash while records written ahead wait in the unnamed spare: replay
 * takes the spare when it continues segment 1 (a process crash: every
 * written record comes back), and leaves it when segment 1 lost its tail
 * (a machine crash before the barrier: nothing after the tear was
 * confirmed), without calling either corruption.
 */
START_TEST(test_written_ahead_crash)
{
	struct journal *j;
	struct seen sn;
	char path[256], spare[200];
	uint64_t v[2], second, last;
	uint8_t z[REC_HDR + 64];
	struct stat st;
	int fds[2], status;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		base = event_base_new();
		v[1] = roll_with_slow_sync(&j, 10000, &v[0]);
		if (journal_written_seq(j) != v[1])
			_exit(2);
		if (write(fds[1], v, sizeof(v)) != sizeof(v))
			_exit(3);
		_exit(0);	/* "crash", the barrier still running */
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], v, sizeof(v)), (ssize_t)sizeof(v));
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(status, 0);
	second = v[0];
	last = v[1];
	seg_path(path, sizeof(path), second);
	snprintf(spare, sizeof(spare), "%s/journal.spare", jdir);
	ck_assert_int_ne(stat(path, &st), 0);
	ck_assert_int_eq(stat(spare, &st), 0);
	if (_i == 1) {
		/* segment 1's last record never reached the disk */
		memset(z, 0, sizeof(z));
		seg_path(path, sizeof(path), 1);
		patch(path, rec_off(1, second - 1), z, rec_size(second - 1));
		seg_path(path, sizeof(path), second);
	}
	j = jreopen(FSYNC_ALWAYS, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.first, 1);
	if (_i == 0) {
		ck_assert_uint_eq(sn.last, last);
		ck_assert_int_eq(stat(path, &st), 0);
	} else {
		ck_assert_uint_eq(sn.last, second - 2);
		ck_assert_int_ne(stat(path, &st), 0);
	}
	append_n(j, 1);
	journal_close(j);
	j = jreopen(FSYNC_ALWAYS, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.last, _i == 0 ? last + 1 : second - 1);
	journal_close(j);
}
END_TEST

START_TEST(test_record_limits)
{
	struct journal *j;
	struct seen sn;
	static uint8_t big[SMALL_SEG];
	uint64_t seq;

	j = jopen(FSYNC_NEVER, SMALL_SEG);
	ck_assert_int_eq(journal_append(j, 1, "x", 1, &seq), -EINVAL);
	ck_assert_int_eq(journal_commit(j), -EINVAL);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(journal_append(j, 1, big,
	    SMALL_SEG - SEG_HDR - REC_HDR + 1, &seq), -EMSGSIZE);
	ck_assert_int_eq(journal_append(j, 1, big,
	    (size_t)JOURNAL_MAX_RECORD + 1, &seq), -EMSGSIZE);
	ck_assert_int_eq(journal_append(j, 9, NULL, 0, &seq), 0);
	ck_assert_uint_eq(seq, 1);
	memset(big, 0xab, sizeof(big));
	ck_assert_int_eq(journal_append(j, 9, big,
	    SMALL_SEG - SEG_HDR - REC_HDR, &seq), 0);	/* fills a segment */
	ck_assert_uint_eq(seq, 2);
	ck_assert_int_eq(journal_append(j, 9, NULL, 0, &seq), 0);
	journal_close(j);
	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.n, 3);
	ck_assert_int_eq(count_segs(), 3);
	journal_close(j);
}
END_TEST

START_TEST(test_bad_options)
{
	struct journal_opts o = { jdir, FSYNC_NEVER, 100, NULL };
	struct journal *j = (struct journal *)1;
	char err[128];

	ck_assert_int_eq(journal_open(&j, base, &o, err, sizeof(err)),
	    -EINVAL);
	ck_assert_ptr_null(j);
	o.segment_size = 0;
	o.fsync = 7;
	ck_assert_int_eq(journal_open(&j, base, &o, err, sizeof(err)),
	    -EINVAL);
}
END_TEST

/* ---- the lock ---- */

START_TEST(test_lock_held)
{
	struct journal_opts o = { jdir, FSYNC_NEVER, 0, NULL };
	struct journal *j1, *j2 = NULL;
	char err[256] = "", want[256], buf[32] = "", path[200];
	int fd;

	j1 = jopen(FSYNC_NEVER, 0);
	ck_assert_int_eq(journal_open(&j2, base, &o, err, sizeof(err)),
	    -EWOULDBLOCK);
	ck_assert_ptr_null(j2);
	snprintf(want, sizeof(want), "data directory %s is in use by another "
	    "ferryd (pid %ld)", jdir, (long)getpid());
	ck_assert_str_eq(err, want);
	snprintf(path, sizeof(path), "%s/LOCK", jdir);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_gt(read(fd, buf, sizeof(buf) - 1), 0);
	close(fd);
	ck_assert_int_eq(atol(buf), (long)getpid());
	journal_close(j1);
	ck_assert_int_eq(journal_open(&j2, base, &o, err, sizeof(err)), 0);
	journal_close(j2);
}
END_TEST

/* ---- torn tails ---- */

/* Five records in one segment; returns the offsets of record 5. */
static void
five_records(uint64_t *s5, uint64_t *e5)
{
	struct journal *j;
	struct seen sn;

	j = jreopen(FSYNC_NEVER, 0, &sn);
	append_n(j, 5);
	ck_assert_int_eq(journal_commit(j), 0);
	journal_close(j);
	*s5 = rec_off(1, 5);
	*e5 = *s5 + rec_size(5);
}

/* After a torn record 5: four records survive and appends go on. */
static void
check_torn_recovery(uint64_t want_segs)
{
	struct journal *j;
	struct seen sn;
	uint64_t seq;

	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 4);
	ck_assert_uint_eq(sn.last, 4);
	ck_assert_uint_eq(journal_next_seq(j), 5);
	ck_assert_int_eq(journal_append(j, 200, "again", 5, &seq), 0);
	ck_assert_uint_eq(seq, 5);
	journal_close(j);
	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 5);
	ck_assert_uint_eq(sn.last_type, 200);
	ck_assert_int_eq(count_segs(), (int)want_segs);
	journal_close(j);
}

/* A torn write: only the first _i bytes of record 5 reached the disk. */
START_TEST(test_torn_at_every_byte)
{
	uint64_t s5, e5, k = (uint64_t)_i;
	char path[256];
	static const uint8_t z[128];

	five_records(&s5, &e5);
	if (k >= e5 - s5)
		return;
	seg_path(path, sizeof(path), 1);
	patch(path, s5 + k, z, e5 - s5 - k);
	check_torn_recovery(1);
	/* the torn bytes are gone: what follows "again" is zero */
	ck_assert(all_zero(path, s5 + REC_HDR + 5, 256));
}
END_TEST

/* The file itself cut short (no preallocation left) at every byte. */
START_TEST(test_truncated_at_every_byte)
{
	uint64_t s5, e5, k = (uint64_t)_i;
	char path[256];

	five_records(&s5, &e5);
	if (k >= e5 - s5)
		return;
	seg_path(path, sizeof(path), 1);
	ck_assert_int_eq(truncate(path, (off_t)(s5 + k)), 0);
	/* record 5 no longer fits the shortened file: a new segment */
	check_torn_recovery(k >= REC_HDR + 5 ? 1 : 2);
}
END_TEST

START_TEST(test_garbage_tail)
{
	uint64_t s5, e5;
	char path[256];
	uint8_t junk[300];

	five_records(&s5, &e5);
	memset(junk, 0xa5, sizeof(junk));
	junk[0] = 0;		/* a zero crc byte must not hide it */
	seg_path(path, sizeof(path), 1);
	patch(path, e5 + 100, junk, sizeof(junk));
	/* garbage after a clean end marker */
	{
		struct journal *j;
		struct seen sn;

		j = jreopen(FSYNC_NEVER, 0, &sn);
		ck_assert_uint_eq(sn.n, 5);
		journal_close(j);
	}
	ck_assert(all_zero(path, e5, 1000));
	/* garbage straight after the last record */
	patch(path, e5, junk, sizeof(junk));
	flip(path, s5 + REC_HDR + 3);		/* and record 5 damaged */
	check_torn_recovery(1);
}
END_TEST

START_TEST(test_bad_crc_last_record)
{
	uint64_t s5, e5;
	char path[256];

	five_records(&s5, &e5);
	seg_path(path, sizeof(path), 1);
	flip(path, e5 - 1);
	check_torn_recovery(1);
}
END_TEST

/* A new segment whose creation was cut short: it holds nothing valid. */
START_TEST(test_torn_new_segment)
{
	struct journal *j;
	struct seen sn;
	char path[256];
	uint64_t seq;
	int fd;

	five_records(&seq, &seq);
	seg_path(path, sizeof(path), 6);
	ck_assert_int_eq(close(open(path, O_WRONLY | O_CREAT, 0600)), 0);
	ck_assert_int_eq(count_segs(), 2);
	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 5);
	ck_assert_int_eq(count_segs(), 1);
	append_n(j, 1);
	journal_close(j);
	/* same with a zeroed, preallocated header */
	seg_path(path, sizeof(path), 7);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, SMALL_SEG), 0);
	close(fd);
	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 6);
	ck_assert_int_eq(count_segs(), 1);
	journal_close(j);
}
END_TEST

/* ---- corruption ---- */

/* Three or more full segments of records 1..n; returns their boundaries. */
static int
several_segments(uint64_t n, uint64_t *firsts, int max)
{
	struct journal_segment_info si;
	struct journal *j;
	struct seen sn;
	int k;

	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	append_n(j, n);
	journal_close(j);
	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.n, n);
	for (k = 0; k < max && journal_segment_info(j, (size_t)k, &si) == 0;
	    k++)
		firsts[k] = si.first_seq;
	journal_close(j);
	ck_assert_int_ge(k, 3);
	return k;
}

START_TEST(test_bitflip_middle_segment)
{
	struct journal *j;
	struct seen sn;
	uint64_t firsts[16], off;
	char path[256], err[512] = "", want[128];
	int nseg;

	nseg = several_segments(200, firsts, 16);
	seg_path(path, sizeof(path), 1);
	off = rec_off(1, 6);
	flip(path, off + REC_HDR + 4);		/* payload of seq 6 */

	j = jopen(FSYNC_NEVER, SMALL_SEG);
	memset(&sn, 0, sizeof(sn));
	ck_assert_int_eq(journal_replay(j, apply_check, &sn, 0, err,
	    sizeof(err)), -EBADMSG);
	snprintf(want, sizeof(want), "journal-00000000000000000001.seg at "
	    "offset %llu:", (unsigned long long)off);
	ck_assert_msg(strstr(err, want) != NULL, "err: %s", err);
	ck_assert_uint_eq(sn.n, 5);
	ck_assert_uint_eq(sn.last, 5);
	journal_close(j);
	ck_assert_int_eq(count_segs(), nseg);	/* nothing touched */
}
END_TEST

START_TEST(test_bitflip_repair)
{
	struct journal *j;
	struct seen sn;
	uint64_t firsts[16], seq;
	char path[256], err[512] = "";

	several_segments(200, firsts, 16);
	seg_path(path, sizeof(path), firsts[1]);
	flip(path, rec_off(firsts[1], firsts[1] + 2) + 5);	/* its len */

	j = jopen(FSYNC_NEVER, SMALL_SEG);
	memset(&sn, 0, sizeof(sn));
	sn.ref = 1;
	sn.j = j;
	ck_assert_int_eq(journal_replay(j, apply_check, &sn, 1, err,
	    sizeof(err)), 0);
	ck_assert(!sn.bad);
	ck_assert_uint_eq(sn.last, firsts[1] + 1);
	ck_assert_int_eq(count_segs(), 2);
	ck_assert_int_eq(journal_append(j, 1, "x", 1, &seq), 0);
	ck_assert_uint_eq(seq, firsts[1] + 2);
	journal_close(j);

	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.n, firsts[1] + 2);
	journal_close(j);
}
END_TEST

/* In the last segment too, a bad record with a good one after it. */
START_TEST(test_bitflip_before_valid_record)
{
	struct journal *j;
	struct seen sn;
	uint64_t s5, e5;
	char path[256], err[512] = "";

	five_records(&s5, &e5);
	seg_path(path, sizeof(path), 1);
	flip(path, rec_off(1, 3) + REC_HDR);

	j = jopen(FSYNC_NEVER, 0);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, err, sizeof(err)),
	    -EBADMSG);
	ck_assert_msg(strstr(err, "journal-00000000000000000001.seg") &&
	    strstr(err, "checksum"), "err: %s", err);
	journal_close(j);

	j = jopen(FSYNC_NEVER, 0);
	memset(&sn, 0, sizeof(sn));
	ck_assert_int_eq(journal_replay(j, apply_check, &sn, 1, err,
	    sizeof(err)), 0);
	ck_assert_uint_eq(sn.n, 2);
	ck_assert_uint_eq(journal_next_seq(j), 3);
	journal_close(j);
	ck_assert(all_zero(path, rec_off(1, 3), 512));
}
END_TEST

START_TEST(test_missing_segment)
{
	struct journal *j;
	uint64_t firsts[16];
	char path[256], err[512] = "";

	several_segments(200, firsts, 16);
	seg_path(path, sizeof(path), firsts[1]);
	ck_assert_int_eq(unlink(path), 0);
	j = jopen(FSYNC_NEVER, SMALL_SEG);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, err, sizeof(err)),
	    -EBADMSG);
	ck_assert_msg(strstr(err, "offset 0") && strstr(err, "expected"),
	    "err: %s", err);
	journal_close(j);
	j = jopen(FSYNC_NEVER, SMALL_SEG);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 1, err, sizeof(err)),
	    0);
	ck_assert_uint_eq(journal_next_seq(j), firsts[1]);
	ck_assert_int_eq(count_segs(), 1);
	journal_close(j);
}
END_TEST

START_TEST(test_apply_error_stops)
{
	struct journal *j;
	struct seen sn;
	char err[256];

	five_records(&sn.first, &sn.last);
	j = jopen(FSYNC_NEVER, 0);
	memset(&sn, 0, sizeof(sn));
	sn.fail_at = 3;
	ck_assert_int_eq(journal_replay(j, apply_check, &sn, 0, err,
	    sizeof(err)), -42);
	ck_assert_uint_eq(sn.n, 2);
	ck_assert_int_eq(journal_append(j, 1, "x", 1, NULL), -EINVAL);
	journal_close(j);
}
END_TEST

/* ---- faults ---- */

START_TEST(test_enospc_then_recovery)
{
	struct journal *j;
	struct seen sn;
	char path[256];
	uint64_t seq;

	j = jopen_io(FSYNC_NEVER, 0, &fault_io);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	watch(j);
	append_n(j, 10);
	ck_assert_int_eq(journal_commit(j), 0);
	ck_assert_uint_eq(dur.written, 10);

	fault.pwrite_errno = ENOSPC;
	fault.short_once = 1;		/* half the batch lands first */
	fault.zero_ok = 1;
	append_n(j, 5);
	ck_assert_int_eq(journal_commit(j), -ENOSPC);
	ck_assert_int_eq(journal_error(j), -ENOSPC);
	ck_assert_int_eq(journal_append(j, 1, "x", 1, &seq), -ENOSPC);
	ck_assert_uint_eq(journal_written_seq(j), 10);
	ck_assert_int_ge(dur.calls, 2);		/* told about the error */
	seg_path(path, sizeof(path), 1);
	ck_assert(all_zero(path, rec_off(1, 11), 4096));  /* no partial */

	/* space returns; retried within a second without any traffic */
	fault.pwrite_errno = 0;
	ck_assert_int_eq(journal_commit(j), -ENOSPC);	/* not yet due */
	dur.want_written = 15;
	run_loop(3);
	ck_assert_uint_eq(dur.written, 15);
	ck_assert_int_eq(journal_error(j), 0);
	ck_assert_int_eq(journal_append(j, 0, "x", 1, &seq), 0);
	ck_assert_uint_eq(seq, 16);
	ck_assert_int_eq(journal_commit(j), 0);
	ck_assert(!dur.bad);
	journal_close(j);

	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 16);
	journal_close(j);
}
END_TEST

START_TEST(test_enospc_retry_on_commit)
{
	struct journal *j;
	struct seen sn;

	j = jopen_io(FSYNC_NEVER, SMALL_SEG, &fault_io);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	/* no room to preallocate the first segment */
	__atomic_store_n(&fault.falloc_errno, ENOSPC, __ATOMIC_SEQ_CST);
	append_n(j, 3);
	ck_assert_int_eq(journal_commit(j), -ENOSPC);
	ck_assert_int_eq(count_segs(), 0);
	ck_assert_int_eq(journal_append(j, 1, "x", 1, NULL), -ENOSPC);
	__atomic_store_n(&fault.falloc_errno, 0, __ATOMIC_SEQ_CST);
	usleep(1100 * 1000);
	ck_assert_int_eq(journal_commit(j), 0);		/* due: retried */
	ck_assert_uint_eq(journal_written_seq(j), 3);
	append_n(j, 1);
	journal_close(j);
	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.n, 4);
	journal_close(j);
}
END_TEST

/*
 * A crash right after a failed write that could not even be zeroed: the
 * partial record is on disk, and replay must drop it as a torn tail.
 */
START_TEST(test_crash_after_partial_write)
{
	struct journal *j;
	struct seen sn;
	char path[256];
	uint8_t big[200];
	pid_t pid;
	int st;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		base = event_base_new();
		j = jopen_io(FSYNC_NEVER, 0, &fault_io);
		if (journal_replay(j, NULL, NULL, 0, NULL, 0) != 0)
			_exit(1);
		append_n(j, 3);
		if (journal_commit(j) != 0)
			_exit(2);
		fault.pwrite_errno = EIO;
		fault.short_once = 1;
		/* one record, so that half of the write is half a record */
		memset(big, 0x5a, sizeof(big));
		if (journal_append(j, 0, big, sizeof(big), NULL) != 0)
			_exit(4);
		_exit(journal_commit(j) == -EIO ? 0 : 3);	/* "crash" */
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(st, 0);
	seg_path(path, sizeof(path), 1);
	ck_assert(!all_zero(path, rec_off(1, 4), 64));	/* partial is there */
	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 3);
	append_n(j, 1);
	journal_close(j);
	j = jreopen(FSYNC_NEVER, 0, &sn);
	ck_assert_uint_eq(sn.n, 4);
	journal_close(j);
}
END_TEST

START_TEST(test_fdatasync_eio_is_fatal)
{
	struct journal *j;

	j = jopen_io(FSYNC_ALWAYS, 0, &fault_io);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	watch(j);
	append_n(j, 3);
	ck_assert_int_eq(journal_commit(j), 0);
	dur.want_synced = 3;
	run_loop(3);
	ck_assert_uint_eq(dur.synced, 3);

	fault.fsync_errno = EIO;
	append_n(j, 2);
	ck_assert_int_eq(journal_commit(j), 0);		/* the write is fine */
	dur.want_synced = 0;
	dur.want_error = 1;
	run_loop(3);
	ck_assert_int_eq(journal_error(j), -EIO);
	ck_assert_uint_eq(journal_synced_seq(j), 3);	/* never past it */
	ck_assert_uint_eq(dur.synced, 3);
	ck_assert_uint_eq(dur.written, 5);
	ck_assert_int_eq(journal_append(j, 1, "x", 1, NULL), -EIO);
	ck_assert_int_eq(journal_commit(j), -EIO);
	fault.fsync_errno = 0;
	run_loop(0.2);
	ck_assert_uint_eq(journal_synced_seq(j), 3);	/* sticky */
	journal_close(j);
}
END_TEST

/* ---- segment lifetime ---- */

START_TEST(test_ref_unref_prefix)
{
	struct journal_segment_info si[8];
	struct journal_stats st;
	struct journal *j;
	struct seen sn;
	uint64_t seq, n = 0;
	int k, nseg;

	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	watch(j);
	while (journal_segment_info(j, 4, &si[4]) != 0) {
		append_n(j, 1);
		ck_assert_int_eq(journal_ref(j, ++n), 0);
	}
	ck_assert_int_eq(journal_commit(j), 0);
	dur.want_written = n;
	run_loop(5);			/* the segment barriers complete */
	ck_assert_uint_eq(dur.written, n);
	for (k = 0; journal_segment_info(j, (size_t)k, &si[k]) == 0; k++)
		ck_assert_uint_eq(si[k].live, si[k].records);
	nseg = k;
	ck_assert_int_eq(nseg, 5);
	/* fsync never, yet full segments were made durable before the next */
	ck_assert_uint_eq(journal_synced_seq(j), si[3].last_seq);
	ck_assert_int_eq(count_segs(), 5);
	ck_assert_uint_eq(journal_oldest_live_seq(j), 1);
	journal_get_stats(j, &st);
	ck_assert_uint_eq(st.segments, 5);
	ck_assert_uint_eq(st.disk_bytes, 5 * SMALL_SEG);
	ck_assert_uint_eq(st.live_records, n);
	ck_assert_uint_eq(st.live_bytes, st.used_bytes - 5 * SEG_HDR);

	/* segment 1 dies, but segment 0 still lives: nothing goes */
	for (seq = si[1].first_seq; seq <= si[1].last_seq; seq++)
		ck_assert_int_eq(journal_unref(j, seq), 0);
	ck_assert_int_eq(count_segs(), 5);
	ck_assert_uint_eq(journal_oldest_live_seq(j), 1);
	for (seq = 1; seq < si[0].last_seq; seq++)
		ck_assert_int_eq(journal_unref(j, seq), 0);
	ck_assert_int_eq(count_segs(), 5);
	/* the last ref of the oldest: it and the dead one after it go */
	ck_assert_int_eq(journal_unref(j, si[0].last_seq), 0);
	ck_assert_int_eq(wait_segs(3, 5), 3);
	ck_assert_uint_eq(journal_oldest_live_seq(j), si[2].first_seq);
	journal_get_stats(j, &st);
	ck_assert_uint_eq(st.segments, 3);
	ck_assert_uint_eq(st.first_seq, si[2].first_seq);
	ck_assert_int_eq(journal_ref(j, 1), -ENOENT);
	ck_assert_int_eq(journal_unref(j, si[1].first_seq), -ENOENT);
	ck_assert_int_eq(journal_ref(j, n + 1), -ENOENT);

	/* everything dies: the active segment stays */
	for (seq = si[2].first_seq; seq <= n; seq++)
		ck_assert_int_eq(journal_unref(j, seq), 0);
	ck_assert_int_eq(journal_unref(j, n), -EINVAL);
	ck_assert_int_eq(wait_segs(1, 5), 1);
	ck_assert_uint_eq(journal_oldest_live_seq(j), 0);
	journal_close(j);

	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);
	ck_assert_uint_eq(sn.first, si[4].first_seq);
	ck_assert_uint_eq(sn.last, n);
	ck_assert_uint_eq(journal_next_seq(j), n + 1);
	journal_close(j);
}
END_TEST

/* Refs taken by apply during replay keep segments; unreferenced go. */
START_TEST(test_replay_refs)
{
	struct journal *j;
	struct seen sn;
	uint64_t firsts[16];
	char err[256];
	int nseg;

	nseg = several_segments(250, firsts, 16);
	j = jreopen(FSYNC_NEVER, SMALL_SEG, &sn);	/* refs all */
	ck_assert_int_eq(count_segs(), nseg);
	journal_close(j);

	j = jopen(FSYNC_NEVER, SMALL_SEG);
	memset(&sn, 0, sizeof(sn));			/* refs none */
	ck_assert_int_eq(journal_replay(j, apply_check, &sn, 0, err,
	    sizeof(err)), 0);
	ck_assert(!sn.bad);
	ck_assert_uint_eq(sn.n, 250);
	ck_assert_int_eq(wait_segs(1, 5), 1);
	ck_assert_uint_eq(journal_next_seq(j), 251);
	journal_close(j);
}
END_TEST

/* ---- index files of sealed segments ---- */

/* The test's summary of a record: its first 4 bytes (payloads have 10 at
 * least), so that an index is a fraction of its segment. */
static ssize_t
sum4(uint8_t type, const uint8_t *p, size_t len, uint8_t *out, size_t cap)
{
	ck_assert_uint_ge(cap, len);
	memcpy(out, p, 4);
	return 4;
}

/* What replay saw from indexes: summaries checked, and every one's full
 * record read back meanwhile (as the broker does for bodies it keeps). */
struct ixseen {
	struct seen full;	/* records read in full (apply_check) */
	uint64_t nsum;		/* summaries */
	uint64_t last;		/* the last seq of either kind */
	int bad;
	struct journal *j;
	struct journal_reader rd;
};

static int
apply_full(void *arg, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len)
{
	struct ixseen *x = arg;

	if (seq != x->last + 1)
		x->bad = 1;
	x->last = seq;
	if (x->full.n)		/* summaries came between: order is ours */
		x->full.last = seq - 1;
	return apply_check(&x->full, seq, type, p, len);
}

static int
apply_sum(void *arg, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len)
{
	struct ixseen *x = arg;
	uint8_t want[64], t;
	const uint8_t *fp;
	size_t wlen = payload(seq, want), flen;

	if (seq != x->last + 1 || type != (uint8_t)seq || len != 4 ||
	    memcmp(p, want, 4))
		x->bad = 1;
	if (journal_read(x->j, &x->rd, seq, &t, &fp, &flen) != 0 ||
	    flen != wlen || memcmp(fp, want, wlen))
		x->bad = 1;
	if (x->full.ref && journal_ref(x->j, seq) != 0)
		x->bad = 1;
	x->last = seq;
	x->nsum++;
	return 0;
}

static const struct journal_index ix4 = { sum4, apply_sum };

static void
idx_path(char *out, size_t outlen, uint64_t first_seq)
{
	snprintf(out, outlen, "%s/journal-%020llu.idx", jdir,
	    (unsigned long long)first_seq);
}

/* Open with indexes, replay into *x (reffing every record), and check the
 * order of what came. */
static struct journal *
ixreopen(struct ixseen *x)
{
	struct journal *j = jopen(FSYNC_NEVER, SMALL_SEG);
	char err[256] = "";
	int r;

	journal_reader_fini(&x->rd);
	memset(x, 0, sizeof(*x));
	x->j = j;
	x->full.ref = 1;
	x->full.j = j;
	journal_set_index(j, &ix4);
	r = journal_replay(j, apply_full, x, 0, err, sizeof(err));
	ck_assert_msg(r == 0, "replay: %d %s", r, err);
	ck_assert_msg(!x->bad && !x->full.bad, "replayed records out of "
	    "order or damaged");
	return j;
}

/* Run the loop until every sealed segment of j has its index built. */
static void
wait_built(struct journal *j, uint64_t want)
{
	struct journal_stats st;

	for (int i = 0; i < 500; i++) {
		journal_get_stats(j, &st);
		if (st.index_built >= want)
			return;
		run_loop(0.01);
	}
	journal_get_stats(j, &st);
	ck_assert_uint_ge(st.index_built, want);
}

/* n records in small segments, each reffed (live), every sealed segment
 * indexed; returns how many segments. */
static int
indexed_segments(uint64_t n)
{
	struct journal *j = jopen(FSYNC_NEVER, SMALL_SEG);
	struct journal_stats st;
	struct ixseen x = {0};
	int nseg;

	journal_set_index(j, &ix4);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	for (uint64_t i = 0; i < n; i++) {
		append_n(j, 1);
		ck_assert_int_eq(journal_ref(j, i + 1), 0);
		if (i % 50 == 49)
			ck_assert_int_eq(journal_commit(j), 0);
	}
	ck_assert_int_eq(journal_commit(j), 0);
	journal_get_stats(j, &st);
	nseg = (int)st.segments;
	ck_assert_int_gt(nseg, 4);
	/* the newest sealed one waits for another seal (ix_defer) */
	wait_built(j, (uint64_t)nseg - 2);
	journal_close(j);
	ck_assert_int_eq(count_segs(), nseg);
	/* a restart reads it in full and builds its index at once */
	j = ixreopen(&x);
	journal_get_stats(j, &st);
	ck_assert_uint_eq(st.index_replayed, (uint64_t)nseg - 2);
	wait_built(j, 1);
	journal_reader_fini(&x.rd);
	journal_close(j);
	return nseg;
}

START_TEST(test_index_replay)
{
	struct journal_stats st;
	struct journal *j;
	struct ixseen x = {0};
	int nseg = indexed_segments(600);

	j = ixreopen(&x);
	journal_get_stats(j, &st);
	ck_assert_uint_eq(st.index_replayed, (uint64_t)nseg - 1);
	ck_assert_uint_eq(x.last, 600);
	ck_assert_uint_gt(x.nsum, 400);		/* the sealed ones */
	ck_assert_uint_eq(x.nsum + x.full.n, 600);
	ck_assert_uint_eq(x.full.last, 600);	/* the last: in full */
	/* appends go on after a replay from indexes */
	append_n(j, 10);
	ck_assert_uint_eq(journal_next_seq(j), 611);
	journal_reader_fini(&x.rd);
	journal_close(j);
	/* and without indexes (no journal_set_index) every record is read */
	j = jreopen(FSYNC_NEVER, SMALL_SEG, &x.full);
	ck_assert_uint_eq(x.full.n, 610);
	journal_close(j);
}
END_TEST

/*
 * An index that is missing, damaged or does not describe its segment as
 * it is: that segment is read in full, the others from theirs, and after
 * replay a good index is written again.  _i picks the damage.
 */
START_TEST(test_index_mismatch)
{
	struct journal_stats st;
	struct journal *j;
	struct ixseen x = {0};
	char path[256], seg[256];
	uint8_t b[64], h[REC_HDR];
	uint64_t second, n, end;
	int nseg = indexed_segments(600), fd;

	/* the second segment's first seq, from the third's name */
	for (second = 2; second < 600; second++) {
		seg_path(seg, sizeof(seg), second);
		if (access(seg, F_OK) == 0)
			break;
	}
	idx_path(path, sizeof(path), second);
	ck_assert_int_eq(access(path, F_OK), 0);
	switch (_i) {
	case 0:		/* missing */
		ck_assert_int_eq(unlink(path), 0);
		break;
	case 1:		/* truncated */
		ck_assert_int_eq(truncate(path, 70), 0);
		break;
	case 2:		/* an entry's byte */
		flip(path, 64 + 5);
		break;
	case 3:		/* the header's version, checksum made right */
		fd = open(path, O_RDWR);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(pread(fd, b, 64, 0), 64);
		b[8] = 2;
		{
			uint32_t c = crc32c(0, b, 60);

			memcpy(b + 60, &c, 4);	/* little-endian host */
		}
		ck_assert_int_eq(pwrite(fd, b, 64, 0), 64);
		close(fd);
		break;
	case 4:		/* another segment's index under this name */
		idx_path(seg, sizeof(seg), 1);
		{
			char cmd[600];

			snprintf(cmd, sizeof(cmd), "cp %s %s", seg, path);
			ck_assert_int_eq(system(cmd), 0);
		}
		break;
	case 5:
		/* The segment's last record changed (its crc no longer what
		 * the index says): the index must not be trusted. */
		fd = open(path, O_RDONLY);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(pread(fd, b, 64, 0), 64);
		close(fd);
		memcpy(&n, b + 24, 8);
		memcpy(&end, b + 32, 8);
		seg_path(seg, sizeof(seg), second);
		fd = open(seg, O_RDWR);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(pread(fd, h, REC_HDR, (off_t)rec_off(second,
		    second + n - 1)), REC_HDR);
		h[0] ^= 1;	/* then replay reads it: corrupt */
		ck_assert_int_eq(pwrite(fd, h, REC_HDR, (off_t)rec_off(second,
		    second + n - 1)), REC_HDR);
		close(fd);
		break;
	}
	if (_i == 5) {
		/* not trusted: the full read finds the damage */
		char err[256] = "";

		j = jopen(FSYNC_NEVER, SMALL_SEG);
		memset(&x, 0, sizeof(x));
		x.j = j;
		x.full.ref = 1;
		x.full.j = j;
		journal_set_index(j, &ix4);
		ck_assert_int_eq(journal_replay(j, apply_full, &x, 0, err,
		    sizeof(err)), -EBADMSG);
		journal_reader_fini(&x.rd);
		journal_close(j);
		return;
	}
	j = ixreopen(&x);
	journal_get_stats(j, &st);
	ck_assert_uint_eq(st.index_replayed, (uint64_t)nseg - 2);
	ck_assert_uint_eq(x.last, 600);
	ck_assert_uint_eq(x.nsum + x.full.n, 600);
	ck_assert_uint_eq(x.full.first, second);	/* read in full */
	/* a good one is written again after replay */
	wait_built(j, 1);
	journal_reader_fini(&x.rd);
	journal_close(j);
	j = ixreopen(&x);
	journal_get_stats(j, &st);
	ck_assert_uint_eq(st.index_replayed, (uint64_t)nseg - 1);
	journal_reader_fini(&x.rd);
	journal_close(j);
}
END_TEST

/* A segment with more records than its index says (an index of an
 * earlier state): caught by the end marker, not trusted. */
START_TEST(test_index_stale_end)
{
	struct journal *j;
	struct journal_stats st;
	struct ixseen x = {0};
	char path[256], seg[256];
	uint8_t b[64];
	uint64_t n, end, last_off, v;
	uint32_t c, plen;
	const uint8_t *p;
	uint8_t *buf;
	int fd, nseg = indexed_segments(600);
	struct stat sst;
	size_t len;

	/* Rewrite segment 1's index without its last entry, every checksum
	 * right and the last record's crc that of the one before. */
	idx_path(path, sizeof(path), 1);
	seg_path(seg, sizeof(seg), 1);
	ck_assert_int_eq(stat(path, &sst), 0);
	len = (size_t)sst.st_size;
	ck_assert_ptr_nonnull(buf = malloc(len));
	fd = open(path, O_RDWR);
	ck_assert_int_eq(pread(fd, buf, len, 0), (ssize_t)len);
	memcpy(&n, buf + 24, 8);
	/* entries are 1 + 1 + 1 + 4 bytes (short lengths) */
	for (p = buf + 64, v = 0; v + 1 < n; v++)
		p += 7;
	ck_assert_uint_eq((size_t)(p + 7 - buf), len);
	plen = p[1];
	memcpy(&end, buf + 32, 8);
	end -= REC_HDR + plen;
	last_off = rec_off(1, n - 1);
	ck_assert_uint_eq(last_off + REC_HDR + payload(n - 1, b), end);
	n--;
	memcpy(buf + 24, &n, 8);
	memcpy(buf + 32, &end, 8);
	{
		int sfd = open(seg, O_RDONLY);

		ck_assert_int_eq(pread(sfd, &c, 4, (off_t)last_off), 4);
		close(sfd);
	}
	memcpy(buf + 48, &c, 4);
	c = crc32c(0, buf + 64, len - 7 - 64);
	memcpy(buf + 52, &c, 4);
	c = crc32c(0, buf, 60);
	memcpy(buf + 60, &c, 4);
	ck_assert_int_eq(ftruncate(fd, (off_t)(len - 7)), 0);
	ck_assert_int_eq(pwrite(fd, buf, len - 7, 0), (ssize_t)(len - 7));
	close(fd);
	free(buf);

	j = ixreopen(&x);
	journal_get_stats(j, &st);
	ck_assert_uint_eq(st.index_replayed, (uint64_t)nseg - 2);
	ck_assert_uint_eq(x.full.first, 1);
	ck_assert_uint_eq(x.last, 600);
	journal_reader_fini(&x.rd);
	journal_close(j);
}
END_TEST

/* A leftover temporary index is deleted; a crash mid-build leaves only
 * that, never a named index that is not whole. */
START_TEST(test_index_tmp_leftover)
{
	struct journal *j;
	struct ixseen x = {0};
	char path[256];
	int fd;

	indexed_segments(600);
	snprintf(path, sizeof(path), "%s/journal.idx.tmp", jdir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "FERRYIDX", 8), 8);
	close(fd);
	j = ixreopen(&x);
	ck_assert_int_ne(access(path, F_OK), 0);
	ck_assert_uint_eq(x.last, 600);
	journal_reader_fini(&x.rd);
	journal_close(j);
}
END_TEST

/* Dead segments go with their indexes. */
START_TEST(test_index_deleted_with_segment)
{
	struct journal *j;
	struct ixseen x = {0};
	char path[256];
	int nseg = indexed_segments(600);

	idx_path(path, sizeof(path), 1);
	ck_assert_int_eq(access(path, F_OK), 0);
	/* replay without refs: every sealed segment is dead */
	j = jopen(FSYNC_NEVER, SMALL_SEG);
	journal_set_index(j, &ix4);
	memset(&x, 0, sizeof(x));
	x.j = j;
	x.full.j = j;
	ck_assert_int_eq(journal_replay(j, apply_full, &x, 0, NULL, 0), 0);
	ck_assert_int_eq(wait_segs(1, 5), 1);
	journal_reader_fini(&x.rd);
	journal_close(j);
	ck_assert_int_ne(access(path, F_OK), 0);
	ck_assert_int_gt(nseg, 1);
	{
		char cmd[300];
		FILE *f;
		int n = -1;

		snprintf(cmd, sizeof(cmd), "ls %s | grep -c 'idx' || true",
		    jdir);
		f = popen(cmd, "r");
		ck_assert_int_eq(fscanf(f, "%d", &n), 1);
		pclose(f);
		ck_assert_int_eq(n, 0);
	}
}
END_TEST

/* ---- confirms ---- */

START_TEST(test_durable_always_group_commit)
{
	struct journal *j;
	int i;

	j = jopen_io(FSYNC_ALWAYS, 0, &fault_io);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	watch(j);
	for (i = 0; i < 50; i++) {
		append_n(j, 20);
		ck_assert_int_eq(journal_commit(j), 0);
		ck_assert_uint_eq(dur.written, (uint64_t)(i + 1) * 20);
	}
	ck_assert_uint_le(dur.synced, 20);	/* the loop has not run */
	dur.want_synced = 1000;
	run_loop(3);
	ck_assert_uint_eq(dur.synced, 1000);
	ck_assert_uint_eq(journal_synced_seq(j), 1000);
	ck_assert(!dur.bad);
	/* one sync was out while 49 commits came: the next covered all */
	ck_assert_int_eq(__atomic_load_n(&fault.fsyncs, __ATOMIC_SEQ_CST), 2);
	journal_close(j);
}
END_TEST

static int
waiting_cb(void *arg)
{
	return *(int *)arg;
}

START_TEST(test_durable_always_deferred)
{
	int waiting = 0;
	struct journal *j;
	struct timespec t0, t1;
	double ms;
	int i;

	j = jopen_io(FSYNC_ALWAYS, 0, &fault_io);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	watch(j);
	/* While no one waits, commits write at once but start no sync. */
	journal_set_waiting_cb(j, waiting_cb, &waiting);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 10; i++) {
		append_n(j, 5);
		ck_assert_int_eq(journal_commit(j), 0);
		ck_assert_uint_eq(dur.written, (uint64_t)(i + 1) * 5);
	}
	usleep(20000);
	ck_assert_int_eq(__atomic_load_n(&fault.fsyncs, __ATOMIC_SEQ_CST), 0);
	/* The delay starts one sync for all of them, from the loop. */
	dur.want_synced = 50;
	run_loop(3);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	ck_assert_uint_eq(dur.synced, 50);
	ck_assert_int_eq(__atomic_load_n(&fault.fsyncs, __ATOMIC_SEQ_CST), 1);
	ck_assert(ms >= JOURNAL_SYNC_DELAY_US / 1000.0);

	/* Once someone waits, a commit syncs at once, the deferred records
	 * too, without the loop running. */
	append_n(j, 5);
	ck_assert_int_eq(journal_commit(j), 0);
	waiting = 1;
	append_n(j, 5);
	ck_assert_int_eq(journal_commit(j), 0);
	for (i = 0; i < 3000 &&
	    __atomic_load_n(&fault.fsyncs, __ATOMIC_SEQ_CST) < 2; i++)
		usleep(1000);
	ck_assert_int_eq(__atomic_load_n(&fault.fsyncs, __ATOMIC_SEQ_CST), 2);
	dur.want_synced = 60;
	run_loop(3);
	ck_assert_uint_eq(dur.synced, 60);
	ck_assert_int_eq(__atomic_load_n(&fault.fsyncs, __ATOMIC_SEQ_CST), 2);
	ck_assert(!dur.bad);
	journal_close(j);
}
END_TEST

START_TEST(test_durable_everysec)
{
	struct journal *j;

	j = jopen(FSYNC_EVERYSEC, 0);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	watch(j);
	append_n(j, 10);
	ck_assert_int_eq(journal_commit(j), 0);
	ck_assert_uint_eq(dur.written, 10);
	ck_assert_uint_eq(dur.synced, 0);
	dur.want_synced = 10;
	run_loop(3);
	ck_assert_uint_eq(dur.synced, 10);
	journal_close(j);
}
END_TEST

START_TEST(test_durable_never)
{
	struct journal *j;

	j = jopen(FSYNC_NEVER, 0);
	ck_assert_int_eq(journal_replay(j, NULL, NULL, 0, NULL, 0), 0);
	watch(j);
	append_n(j, 10);
	ck_assert_int_eq(journal_commit(j), 0);
	ck_assert_uint_eq(dur.written, 10);
	run_loop(0.3);
	ck_assert_uint_eq(journal_synced_seq(j), 0);
	ck_assert_int_eq(dur.calls, 1);
	journal_close(j);
}
END_TEST

/* ---- main ---- */

static TCase *
tc(Suite *s, const char *name)
{
	TCase *t = tcase_create(name);

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 30);
	suite_add_tcase(s, t);
	return t;
}

static Suite *
journal_suite(void)
{
	Suite *s = suite_create("journal");
	TCase *t;
	int reclen = (int)rec_size(5);

	t = tc(s, "crc32c");
	tcase_add_test(t, test_crc_vectors);
	tcase_add_test(t, test_crc_hw_matches_sw);
	tcase_add_test(t, test_crc_continues);

	t = tc(s, "roundtrip");
	tcase_add_test(t, test_roundtrip_segments);
	tcase_add_test(t, test_close_writes_uncommitted);
	tcase_add_test(t, test_read_back);
	tcase_add_test(t, test_unappend);
	tcase_add_test(t, test_dead_segment_waits_for_write);
	tcase_add_test(t, test_file_work_off_loop);
	tcase_add_test(t, test_switch_writes_ahead);
	tcase_add_loop_test(t, test_written_ahead_crash, 0, 2);
	tcase_add_test(t, test_record_limits);
	tcase_add_test(t, test_bad_options);

	t = tc(s, "lock");
	tcase_add_test(t, test_lock_held);

	t = tc(s, "torn");
	tcase_add_loop_test(t, test_torn_at_every_byte, 0, reclen);
	tcase_add_loop_test(t, test_truncated_at_every_byte, 0, reclen);
	tcase_add_test(t, test_garbage_tail);
	tcase_add_test(t, test_bad_crc_last_record);
	tcase_add_test(t, test_torn_new_segment);

	t = tc(s, "corrupt");
	tcase_add_test(t, test_bitflip_middle_segment);
	tcase_add_test(t, test_bitflip_repair);
	tcase_add_test(t, test_bitflip_before_valid_record);
	tcase_add_test(t, test_missing_segment);
	tcase_add_test(t, test_apply_error_stops);

	t = tc(s, "faults");
	tcase_add_test(t, test_enospc_then_recovery);
	tcase_add_test(t, test_enospc_retry_on_commit);
	tcase_add_test(t, test_crash_after_partial_write);
	tcase_add_test(t, test_fdatasync_eio_is_fatal);

	t = tc(s, "refs");
	tcase_add_test(t, test_ref_unref_prefix);
	tcase_add_test(t, test_replay_refs);

	t = tc(s, "index");
	tcase_add_test(t, test_index_replay);
	tcase_add_loop_test(t, test_index_mismatch, 0, 6);
	tcase_add_test(t, test_index_stale_end);
	tcase_add_test(t, test_index_tmp_leftover);
	tcase_add_test(t, test_index_deleted_with_segment);

	t = tc(s, "durable");
	tcase_add_test(t, test_durable_always_group_commit);
	tcase_add_test(t, test_durable_always_deferred);
	tcase_add_test(t, test_durable_everysec);
	tcase_add_test(t, test_durable_never);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	snprintf(base_dir, sizeof(base_dir), "/tmp/test-journal.XXXXXX");
	if (mkdtemp(base_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	sr = srunner_create(journal_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	rm_rf(base_dir);
	return failed ? 1 : 0;
}
