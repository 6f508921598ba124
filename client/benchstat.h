/*
 * benchstat.h - the bookkeeping of `ferry bench`, as pure functions: the
 * body layout, which publisher sends how many messages, the per-group
 * tally of (publisher, sequence) pairs that finds lost and duplicated
 * messages, and latency percentiles.  No I/O, no clocks, no libferry, so
 * tests/unit/test-bench.c can check the counts bench reports.
 */
#ifndef FERRY_BENCHSTAT_H
#define FERRY_BENCHSTAT_H

#include <stddef.h>
#include <stdint.h>

/*
 * A bench body, in host byte order (publisher and subscribers run in one
 * process): magic, run nonce, publisher, sequence, send time; then
 * padding up to the requested size.
 */
#define BENCHSTAT_MAGIC 0x31425946u	/* "FYB1" read little-endian */
#define BENCHSTAT_BODY_MIN 24		/* bytes of the fields above */

/* Results of benchstat_body_get() and benchstat_mark(). */
enum {
	BENCHSTAT_NEW = 0,	/* first sight of this message in its group */
	BENCHSTAT_DUP = 1,	/* seen before in the same group */
	BENCHSTAT_FOREIGN = 2,	/* not a body of this run (other nonce or
				   magic, e.g. left by an earlier --keep) */
	BENCHSTAT_BAD = -1,	/* ours, but short, or publisher/sequence
				   out of range: corrupt */
};

/* Write the fields into buf, which holds at least BENCHSTAT_BODY_MIN
 * bytes; the padding is left as it is. */
void benchstat_body_put(void *buf, uint32_t nonce, uint32_t pub,
    uint32_t seq, uint64_t ts_ns);

/*
 * Read a body of len bytes.  0 with *pub, *seq, *ts_ns set if it is one of
 * this run's (nonce), else BENCHSTAT_FOREIGN or BENCHSTAT_BAD (shorter
 * than BENCHSTAT_BODY_MIN).
 */
int benchstat_body_get(const void *buf, size_t len, uint32_t nonce,
    uint32_t *pub, uint32_t *seq, uint64_t *ts_ns);

/* Messages publisher p (0-based) of npub sends out of msgs in total: an
 * even split, the first msgs % npub publishers sending one more. */
uint64_t benchstat_share(uint64_t msgs, uint32_t npub, uint32_t p);

/*
 * What one group has received: one bit per message expected.  Marking is
 * safe from several threads at once (subscribers of one group compete);
 * reading the totals is not, so do it after they stopped.
 */
struct benchstat_tally {
	uint64_t *bits;		/* expected bits, owned */
	uint64_t *base;		/* npub + 1 bit offsets of each publisher's
				   first message, owned; base[npub] is the
				   total */
	uint32_t npub;
	uint64_t dups;		/* updated atomically */
	uint64_t bad;		/* updated atomically */
};

/* Zeroed tally for msgs messages from npub publishers.  0, or -1 when out
 * of memory or npub is 0.  benchstat_tally_fini() frees it. */
int benchstat_tally_init(struct benchstat_tally *t, uint64_t msgs,
    uint32_t npub);
void benchstat_tally_fini(struct benchstat_tally *t);

/* Record message (pub, seq): BENCHSTAT_NEW, BENCHSTAT_DUP, or
 * BENCHSTAT_BAD (out of range; counted in bad). */
int benchstat_mark(struct benchstat_tally *t, uint32_t pub, uint32_t seq);

/* Totals of one group.  received counts every valid delivery, so
 * received == distinct + duplicates; lost == expected - distinct. */
struct benchstat_counts {
	uint64_t expected;
	uint64_t received;
	uint64_t distinct;
	uint64_t duplicates;
	uint64_t lost;
	uint64_t bad;
};

void benchstat_count(const struct benchstat_tally *t,
    struct benchstat_counts *c);

/* Sort n samples ascending, in place. */
void benchstat_sort(uint64_t *v, size_t n);

/*
 * A quantile of n sorted samples by nearest rank: the smallest sample with
 * at least ppm / 1e6 of the samples <= it (500000 = median, 999000 =
 * p99.9, 1000000 = max).  Integer arithmetic, so p99.9 of 1000 samples is
 * exactly the 999th.  0 if n is 0.
 */
uint64_t benchstat_percentile(const uint64_t *sorted, size_t n,
    uint32_t ppm);

#endif
