/*
 * fuzz-journal.c - libFuzzer target: recovery from arbitrary segment files,
 * through the broker's real replay (store_open(): journal_replay() with
 * the store's apply()), compaction after replay, and close.
 *
 * Input layout (byte 0 is flags, the rest is data):
 *   flags & 3 == 0   data is the whole file journal-<1>.seg
 *   flags & 3 == 1   a valid 32-byte header, then data as the record area
 *   flags & 3 >= 2   records built from data, with correct seqs and CRCs, so
 *                    the fuzzer reaches rec_decode() and apply():
 *                      u8 type | u16 len (LE) | len payload bytes  (repeat)
 *                    (a short last payload takes what is left)
 *   flags & 4        repair_journal = 1
 *   flags & 8        records: two segments; the first holds data[0]
 *                    records (then data starts at data[1])
 *   flags & 16       header modes: the first seq is 1000, not 1
 *   flags & 32       records: pad each segment with zeros to 4K, as the
 *                    preallocation does
 *   flags & 64       records: the last record's CRC is wrong (a torn tail,
 *                    or damage in the first of two segments)
 *
 * Property checked beyond "no crash, no leak": a journal that opened once
 * (after any torn-tail cut, repair and compaction, and a clean close) opens
 * again, with the same number of durable groups and live messages (not
 * topics: an empty one is not durable state, and exists after replay only
 * if a record named it).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "crc32c.h"
#include "fuzz-util.h"
#include "group.h"
#include "msg.h"
#include "options.h"
#include "store.h"
#include "topic.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The on-disk format of journal.h. */
#define SEG_HDR 32
#define REC_HDR 17
#define PAD 4096

static struct options opt;
static char top[PATH_MAX];	/* mkdtemp'd once */
static char dir[PATH_MAX];	/* top/j: the data directory, per input */
static uint8_t *buf;		/* one segment file being built */
static size_t blen, bcap;

static void
cleanup(void)
{
	options_fini(&opt);
	free(buf);
	fuzz_rm_rf(top);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	fuzz_quiet_logs();
	fuzz_mkdtemp(top, sizeof(top), "journal");
	snprintf(dir, sizeof(dir), "%s/j", top);
	if (options_init(&opt) < 0 ||
	    options_set(&opt, "data_dir", dir, err, sizeof(err)) < 0 ||
	    options_set(&opt, "fsync", "never", err, sizeof(err)) < 0 ||
	    options_set(&opt, "segment_size", "64K", err, sizeof(err)) < 0)
		exit(1);
	atexit(cleanup);
	return 0;
}

static void
put(const void *p, size_t n)
{
	if (!n)
		return;
	if (blen + n > bcap) {
		bcap = (blen + n) * 2;
		if (!(buf = realloc(buf, bcap)))
			abort();
	}
	memcpy(buf + blen, p, n);
	blen += n;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void
seg_begin(uint64_t first_seq)
{
	uint8_t h[SEG_HDR] = "FERRYJNL";

	blen = 0;
	put32(h + 8, 1);
	put32(h + 12, SEG_HDR);
	put64(h + 16, first_seq);
	put32(h + 28, crc32c(0, h, 28));
	put(h, sizeof(h));
}

static void
put_record(uint64_t seq, uint8_t type, const uint8_t *p, size_t len,
    int bad_crc)
{
	uint8_t h[REC_HDR];

	put32(h + 4, (uint32_t)len);
	put64(h + 8, seq);
	h[16] = type;
	put32(h, crc32c(crc32c(0, h + 4, REC_HDR - 4), p, len) ^
	    (bad_crc ? 1u : 0u));
	put(h, sizeof(h));
	put(p, len);
}

static void
seg_write(uint64_t first_seq, int pad)
{
	char path[PATH_MAX + 64];
	static const uint8_t zeros[PAD];
	int fd;

	if (pad && blen % PAD)
		put(zeros, PAD - blen % PAD);
	snprintf(path, sizeof(path), "%s/journal-%020" PRIu64 ".seg", dir,
	    first_seq);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (blen && write(fd, buf, blen) != (ssize_t)blen)) {
		perror(path);
		abort();
	}
	close(fd);
}

/* Records from data (see the top of the file). */
static void
build_records(const uint8_t *data, size_t size, int flags, uint64_t seq)
{
	size_t first = SIZE_MAX, n = 0, len;
	uint64_t seg_seq = seq;
	int pad = flags & 32;

	if ((flags & 8) && size > 0) {
		first = data[0];
		data++;
		size--;
	}
	seg_begin(seg_seq);
	while (size >= 3) {
		len = (size_t)data[1] | (size_t)data[2] << 8;
		if (len > size - 3)
			len = size - 3;
		if (n++ == first) {
			seg_write(seg_seq, pad);
			seg_seq = seq;
			seg_begin(seg_seq);
		}
		put_record(seq++, data[0], data + 3, len,
		    (flags & 64) && size - 3 - len < 3);
		data += 3 + len;
		size -= 3 + len;
	}
	seg_write(seg_seq, pad);
}

struct outcome {
	int r;
	uint32_t ngroups;	/* durable groups */
	size_t live;		/* durable messages */
};

/* Count e's message if e is its first durable entry: each durable message
 * once, however many groups hold it. */
static size_t
first_durable(struct qent *e)
{
	struct qent *it = msg_ents(qent_msg(e));

	while (it && !(it->flags & QE_DURABLE))
		it = msg_ents_next(it);
	return it == e;
}

static size_t
count_list(struct list *l)
{
	size_t n = 0;

	for (struct list *pos = l->next; pos != l; pos = pos->next)
		n += first_durable(list_entry(pos, struct qent, link));
	return n;
}

/* Durable messages, found where they wait (no member holds leases). */
static size_t
count_live(struct core *b)
{
	size_t n = 0;

	for (uint32_t i = 0; i < b->topics_cap; i++)
		for (struct topic *t = b->topics[i]; t; t = t->hnext) {
			n += count_list(&t->backlog);
			for (struct list *pos = t->groups.next;
			    pos != &t->groups; pos = pos->next) {
				struct group *g = list_entry(pos,
				    struct group, tlink);

				n += count_list(&g->ready);
				for (uint32_t k = 0; k < g->delayed.n; k++)
					n += first_durable(
					    qent_of_dn(g->delayed.a[k]));
			}
		}
	return n;
}

/* Open the store on dir as ferryd does, let one loop turn run (commit,
 * compaction), close. */
static struct outcome
run_store(void)
{
	struct outcome o = {0};
	struct event_base *base;
	struct broker b;
	char err[512] = "";

	if (!(base = event_base_new()))
		abort();
	if (broker_init(&b, base, &opt) < 0)
		abort();
	o.r = store_open(&b.core, err, sizeof(err));
	if (o.r == 0) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		o.ngroups = b.core.store.ngids;
		o.live = count_live(&b.core);
	}
	broker_fini(&b);
	event_base_free(base);
	return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome a, b;
	int flags;
	uint64_t first_seq;

	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	first_seq = flags & 16 ? 1000 : 1;
	opt.journal_repair = !!(flags & 4);

	fuzz_rm_rf(dir);
	if (mkdir(dir, 0700) < 0)
		abort();
	switch (flags & 3) {
	case 0:
		blen = 0;
		put(data, size);
		seg_write(1, 0);
		break;
	case 1:
		seg_begin(first_seq);
		put(data, size);
		seg_write(first_seq, 0);
		break;
	default:
		build_records(data, size, flags, first_seq);
		break;
	}

	a = run_store();
	if (a.r < 0)
		return 0;
	b = run_store();
	if (b.r < 0) {
		fprintf(stderr, "fuzz-journal: the journal opened once, then "
		    "not again: %s\n", strerror(-b.r));
		abort();
	}
	if (a.ngroups != b.ngroups || a.live != b.live) {
		fprintf(stderr, "fuzz-journal: reopening changed the state: "
		    "%u -> %u groups, %zu -> %zu live messages\n",
		    a.ngroups, b.ngroups, a.live, b.live);
		abort();
	}
	return 0;
}
