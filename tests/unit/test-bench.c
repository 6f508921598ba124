/*
 * test-bench.c - the counting of `ferry bench` (client/benchstat.c): the
 * body layout, the split among publishers, lost and duplicate counts, and
 * percentiles.  A bench that cannot see loss would report every broker as
 * perfect, so the counts are checked against streams with known damage.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "benchstat.h"

#define NONCE 0xc0ffee11u

static const struct {
	uint64_t msgs;
	uint32_t npub;
} splits[] = {
	{ 1, 1 }, { 1, 3 }, { 10, 3 }, { 1000000, 7 }, { 64, 64 }, { 65, 64 },
};

START_TEST(share_splits_evenly)
{
	uint64_t msgs = splits[_i].msgs, sum = 0, n, lo = UINT64_MAX, hi = 0;
	uint32_t npub = splits[_i].npub, p;

	for (p = 0; p < npub; p++) {
		n = benchstat_share(msgs, npub, p);
		sum += n;
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
	}
	ck_assert_uint_eq(sum, msgs);
	ck_assert_uint_le(hi - lo, 1);
	ck_assert_uint_eq(benchstat_share(msgs, npub, npub), 0);
	ck_assert_uint_eq(benchstat_share(msgs, 0, 0), 0);
}
END_TEST

START_TEST(body_roundtrip)
{
	uint8_t body[128];
	uint32_t pub, seq;
	uint64_t ts;

	memset(body, 'x', sizeof(body));
	benchstat_body_put(body, NONCE, 6, 4000000000u, 0x0123456789abcdefULL);
	ck_assert_int_eq(benchstat_body_get(body, sizeof(body), NONCE, &pub,
	    &seq, &ts), 0);
	ck_assert_uint_eq(pub, 6);
	ck_assert_uint_eq(seq, 4000000000u);
	ck_assert_uint_eq(ts, 0x0123456789abcdefULL);
	/* The padding is the caller's. */
	ck_assert_int_eq(body[BENCHSTAT_BODY_MIN], 'x');
	/* Exactly the minimum fits. */
	ck_assert_int_eq(benchstat_body_get(body, BENCHSTAT_BODY_MIN, NONCE,
	    &pub, &seq, &ts), 0);
}
END_TEST

START_TEST(body_foreign_and_bad)
{
	uint8_t body[BENCHSTAT_BODY_MIN];
	uint32_t pub, seq;
	uint64_t ts;

	benchstat_body_put(body, NONCE, 0, 1, 2);
	/* Another run's body: ignored, not counted as ours. */
	ck_assert_int_eq(benchstat_body_get(body, sizeof(body), NONCE + 1,
	    &pub, &seq, &ts), BENCHSTAT_FOREIGN);
	/* Ours, cut short: corrupt. */
	ck_assert_int_eq(benchstat_body_get(body, sizeof(body) - 1, NONCE,
	    &pub, &seq, &ts), BENCHSTAT_BAD);
	/* Too short to say whose, or not a bench body at all. */
	ck_assert_int_eq(benchstat_body_get(body, 7, NONCE, &pub, &seq, &ts),
	    BENCHSTAT_FOREIGN);
	ck_assert_int_eq(benchstat_body_get("hello, world, what is this?", 27,
	    NONCE, &pub, &seq, &ts), BENCHSTAT_FOREIGN);
}
END_TEST

START_TEST(tally_clean)
{
	struct benchstat_tally t;
	struct benchstat_counts c;
	uint32_t p, s;

	ck_assert_int_eq(benchstat_tally_init(&t, 1000, 3), 0);
	for (p = 0; p < 3; p++)
		for (s = 0; s < benchstat_share(1000, 3, p); s++)
			ck_assert_int_eq(benchstat_mark(&t, p, s),
			    BENCHSTAT_NEW);
	benchstat_count(&t, &c);
	ck_assert_uint_eq(c.expected, 1000);
	ck_assert_uint_eq(c.distinct, 1000);
	ck_assert_uint_eq(c.received, 1000);
	ck_assert_uint_eq(c.lost, 0);
	ck_assert_uint_eq(c.duplicates, 0);
	ck_assert_uint_eq(c.bad, 0);
	benchstat_tally_fini(&t);
}
END_TEST

START_TEST(tally_nothing_received)
{
	struct benchstat_tally t;
	struct benchstat_counts c;

	ck_assert_int_eq(benchstat_tally_init(&t, 130, 2), 0);
	benchstat_count(&t, &c);
	ck_assert_uint_eq(c.expected, 130);
	ck_assert_uint_eq(c.lost, 130);
	ck_assert_uint_eq(c.received, 0);
	benchstat_tally_fini(&t);
	ck_assert_int_eq(benchstat_tally_init(&t, 10, 0), -1);
}
END_TEST

/*
 * A delivery stream as a broker might produce it: 3 publishers, 1000
 * messages, some dropped (every 97th), some delivered again (every 41st,
 * and one message four times), in shuffled order, through the body codec
 * the way bench's subscriber sees them.
 */
START_TEST(tally_loss_and_dups)
{
	struct benchstat_tally t;
	struct benchstat_counts c;
	uint8_t body[64];
	uint32_t *stream, pub, seq, p, s, i, n = 0, lost = 0, dups = 0;
	uint64_t ts;
	int k;

	stream = malloc(4000 * sizeof(*stream));
	ck_assert_ptr_nonnull(stream);
	for (p = 0; p < 3; p++)
		for (s = 0; s < benchstat_share(1000, 3, p); s++) {
			uint32_t g = p * 1000 + s;

			if ((p * 334 + s) % 97 == 5) {
				lost++;
				continue;
			}
			stream[n++] = g;
			if ((p * 334 + s) % 41 == 0) {
				stream[n++] = g;
				dups++;
			}
			if (p == 2 && s == 100) {
				stream[n++] = g;
				stream[n++] = g;
				stream[n++] = g;
				dups += 3;
			}
		}
	/* Redeliveries may overtake: order must not matter. */
	srand(7);
	for (i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)rand() % (i + 1), x = stream[i];

		stream[i] = stream[j];
		stream[j] = x;
	}
	ck_assert_int_eq(benchstat_tally_init(&t, 1000, 3), 0);
	for (i = 0; i < n; i++) {
		benchstat_body_put(body, NONCE, stream[i] / 1000,
		    stream[i] % 1000, 42);
		ck_assert_int_eq(benchstat_body_get(body, sizeof(body), NONCE,
		    &pub, &seq, &ts), 0);
		k = benchstat_mark(&t, pub, seq);
		ck_assert(k == BENCHSTAT_NEW || k == BENCHSTAT_DUP);
	}
	benchstat_count(&t, &c);
	ck_assert_uint_gt(lost, 0);
	ck_assert_uint_gt(dups, 3);
	ck_assert_uint_eq(c.expected, 1000);
	ck_assert_uint_eq(c.lost, lost);
	ck_assert_uint_eq(c.duplicates, dups);
	ck_assert_uint_eq(c.distinct, 1000 - lost);
	ck_assert_uint_eq(c.received, n);
	ck_assert_uint_eq(c.bad, 0);
	benchstat_tally_fini(&t);
	free(stream);
}
END_TEST

START_TEST(tally_out_of_range)
{
	struct benchstat_tally t;
	struct benchstat_counts c;

	/* Publisher 0 sends 4, publisher 1 sends 3. */
	ck_assert_int_eq(benchstat_tally_init(&t, 7, 2), 0);
	ck_assert_int_eq(benchstat_mark(&t, 0, 3), BENCHSTAT_NEW);
	ck_assert_int_eq(benchstat_mark(&t, 1, 2), BENCHSTAT_NEW);
	ck_assert_int_eq(benchstat_mark(&t, 1, 3), BENCHSTAT_BAD);
	ck_assert_int_eq(benchstat_mark(&t, 2, 0), BENCHSTAT_BAD);
	ck_assert_int_eq(benchstat_mark(&t, 0, UINT32_MAX), BENCHSTAT_BAD);
	benchstat_count(&t, &c);
	ck_assert_uint_eq(c.distinct, 2);
	ck_assert_uint_eq(c.lost, 5);
	ck_assert_uint_eq(c.bad, 3);
	ck_assert_uint_eq(c.duplicates, 0);
	benchstat_tally_fini(&t);
}
END_TEST

/* Competing subscribers mark one tally at once: each message is new to
 * exactly one of them. */
#define RACE_MSGS 200000
#define RACE_THREADS 4

struct racer {
	struct benchstat_tally *t;
	uint64_t fresh;
};

static void *
race(void *arg)
{
	struct racer *r = arg;
	uint32_t s;

	for (s = 0; s < RACE_MSGS; s++)
		if (benchstat_mark(r->t, 0, s) == BENCHSTAT_NEW)
			r->fresh++;
	return NULL;
}

START_TEST(tally_threads)
{
	struct benchstat_tally t;
	struct benchstat_counts c;
	struct racer r[RACE_THREADS];
	pthread_t th[RACE_THREADS];
	uint64_t fresh = 0;
	int i;

	ck_assert_int_eq(benchstat_tally_init(&t, RACE_MSGS, 1), 0);
	for (i = 0; i < RACE_THREADS; i++) {
		r[i].t = &t;
		r[i].fresh = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (i = 0; i < RACE_THREADS; i++) {
		pthread_join(th[i], NULL);
		fresh += r[i].fresh;
	}
	benchstat_count(&t, &c);
	ck_assert_uint_eq(fresh, RACE_MSGS);
	ck_assert_uint_eq(c.distinct, RACE_MSGS);
	ck_assert_uint_eq(c.duplicates, (uint64_t)RACE_MSGS *
	    (RACE_THREADS - 1));
	ck_assert_uint_eq(c.lost, 0);
	benchstat_tally_fini(&t);
}
END_TEST

START_TEST(percentiles)
{
	uint64_t v[1000];
	int i;

	/* 1000 .. 1 descending: sorting is part of the job. */
	for (i = 0; i < 1000; i++)
		v[i] = 1000 - (uint64_t)i;
	benchstat_sort(v, 1000);
	for (i = 0; i < 1000; i++)
		ck_assert_uint_eq(v[i], (uint64_t)i + 1);
	ck_assert_uint_eq(benchstat_percentile(v, 1000, 500000), 500);
	ck_assert_uint_eq(benchstat_percentile(v, 1000, 900000), 900);
	ck_assert_uint_eq(benchstat_percentile(v, 1000, 990000), 990);
	ck_assert_uint_eq(benchstat_percentile(v, 1000, 999000), 999);
	ck_assert_uint_eq(benchstat_percentile(v, 1000, 1000000), 1000);
	ck_assert_uint_eq(benchstat_percentile(v, 1000, 1), 1);
	/* Few samples: p99.9 of 10 is the largest. */
	ck_assert_uint_eq(benchstat_percentile(v, 10, 999000), 10);
	ck_assert_uint_eq(benchstat_percentile(v, 10, 500000), 5);
	ck_assert_uint_eq(benchstat_percentile(v, 1, 500000), 1);
	ck_assert_uint_eq(benchstat_percentile(v, 0, 500000), 0);
}
END_TEST

static Suite *
bench_suite(void)
{
	Suite *s = suite_create("bench");
	TCase *tc;

	tc = tcase_create("layout");
	tcase_add_loop_test(tc, share_splits_evenly, 0,
	    sizeof(splits) / sizeof(splits[0]));
	tcase_add_test(tc, body_roundtrip);
	tcase_add_test(tc, body_foreign_and_bad);
	suite_add_tcase(s, tc);

	tc = tcase_create("tally");
	tcase_add_test(tc, tally_clean);
	tcase_add_test(tc, tally_nothing_received);
	tcase_add_test(tc, tally_loss_and_dups);
	tcase_add_test(tc, tally_out_of_range);
	tcase_add_test(tc, tally_threads);
	suite_add_tcase(s, tc);

	tc = tcase_create("latency");
	tcase_add_test(tc, percentiles);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	sr = srunner_create(bench_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
