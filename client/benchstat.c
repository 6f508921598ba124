/*
 * benchstat.c - bookkeeping of `ferry bench` (see benchstat.h).
 */
#include <stdlib.h>
#include <string.h>

#include "benchstat.h"

/* Field offsets in a body; memcpy because bodies come unaligned. */
#define OFF_MAGIC 0
#define OFF_NONCE 4
#define OFF_PUB 8
#define OFF_SEQ 12
#define OFF_TS 16

void
benchstat_body_put(void *buf, uint32_t nonce, uint32_t pub, uint32_t seq,
    uint64_t ts_ns)
{
	uint8_t *p = buf;
	uint32_t magic = BENCHSTAT_MAGIC;

	memcpy(p + OFF_MAGIC, &magic, 4);
	memcpy(p + OFF_NONCE, &nonce, 4);
	memcpy(p + OFF_PUB, &pub, 4);
	memcpy(p + OFF_SEQ, &seq, 4);
	memcpy(p + OFF_TS, &ts_ns, 8);
}

int
benchstat_body_get(const void *buf, size_t len, uint32_t nonce,
    uint32_t *pub, uint32_t *seq, uint64_t *ts_ns)
{
	const uint8_t *p = buf;
	uint32_t magic, n;

	if (len < 8)
		return BENCHSTAT_FOREIGN;
	memcpy(&magic, p + OFF_MAGIC, 4);
	memcpy(&n, p + OFF_NONCE, 4);
	if (magic != BENCHSTAT_MAGIC || n != nonce)
		return BENCHSTAT_FOREIGN;
	/* Ours but cut short: a broker that mangled it, not a stranger. */
	if (len < BENCHSTAT_BODY_MIN)
		return BENCHSTAT_BAD;
	memcpy(pub, p + OFF_PUB, 4);
	memcpy(seq, p + OFF_SEQ, 4);
	memcpy(ts_ns, p + OFF_TS, 8);
	return 0;
}

uint64_t
benchstat_share(uint64_t msgs, uint32_t npub, uint32_t p)
{
	if (npub == 0 || p >= npub)
		return 0;
	return msgs / npub + (p < msgs % npub);
}

int
benchstat_tally_init(struct benchstat_tally *t, uint64_t msgs, uint32_t npub)
{
	uint32_t p;

	memset(t, 0, sizeof(*t));
	if (npub == 0)
		return -1;
	t->base = calloc((size_t)npub + 1, sizeof(*t->base));
	/* One spare word, so that msgs == 0 still allocates. */
	t->bits = calloc(msgs / 64 + 1, sizeof(*t->bits));
	if (t->base == NULL || t->bits == NULL) {
		benchstat_tally_fini(t);
		return -1;
	}
	t->npub = npub;
	for (p = 0; p < npub; p++)
		t->base[p + 1] = t->base[p] + benchstat_share(msgs, npub, p);
	return 0;
}

void
benchstat_tally_fini(struct benchstat_tally *t)
{
	free(t->bits);
	free(t->base);
	t->bits = t->base = NULL;
}

int
benchstat_mark(struct benchstat_tally *t, uint32_t pub, uint32_t seq)
{
	uint64_t i, bit, old;

	if (pub >= t->npub || seq >= t->base[pub + 1] - t->base[pub]) {
		__atomic_fetch_add(&t->bad, 1, __ATOMIC_RELAXED);
		return BENCHSTAT_BAD;
	}
	i = t->base[pub] + seq;
	bit = (uint64_t)1 << (i % 64);
	/* fetch_or tells which of two competing subscribers came first. */
	old = __atomic_fetch_or(&t->bits[i / 64], bit, __ATOMIC_RELAXED);
	if (old & bit) {
		__atomic_fetch_add(&t->dups, 1, __ATOMIC_RELAXED);
		return BENCHSTAT_DUP;
	}
	return BENCHSTAT_NEW;
}

void
benchstat_count(const struct benchstat_tally *t, struct benchstat_counts *c)
{
	uint64_t i, words;

	memset(c, 0, sizeof(*c));
	if (t->base == NULL)
		return;
	c->expected = t->base[t->npub];
	/* Counting bits, rather than trusting a running count, makes the
	 * totals a function of what was marked and nothing else. */
	words = (c->expected + 63) / 64;
	for (i = 0; i < words; i++)
		c->distinct += (uint64_t)__builtin_popcountll(t->bits[i]);
	c->duplicates = t->dups;
	c->received = c->distinct + c->duplicates;
	c->lost = c->expected - c->distinct;
	c->bad = t->bad;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void
benchstat_sort(uint64_t *v, size_t n)
{
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_u64);
}

uint64_t
benchstat_percentile(const uint64_t *sorted, size_t n, uint32_t ppm)
{
	uint64_t rank;

	if (n == 0)
		return 0;
	if (ppm > 1000000)
		ppm = 1000000;
	rank = ((uint64_t)n * ppm + 999999) / 1000000;
	return sorted[rank > 0 ? rank - 1 : 0];
}
