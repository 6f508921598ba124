/*
 * test-queue.c - the broker's queue structures: deadline heap, lease
 * table, backoff, message ids and queue-entry history.
 */
#include <check.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "heap.h"
#include "lease.h"
#include "list.h"
#include "msg.h"

/* Something with a heap node in it, as a queue entry's side has. */
struct item {
	struct hnode dn;
};

static struct item *
mk(uint64_t key)
{
	struct item *e = calloc(1, sizeof(*e));

	ck_assert_ptr_nonnull(e);
	hnode_init(&e->dn);
	e->dn.key = key;
	return e;
}

START_TEST(heap_orders_random_keys)
{
	struct heap h;
	struct item *e[1000];
	uint64_t prev = 0;

	srand(42);
	heap_init(&h);
	for (int i = 0; i < 1000; i++) {
		e[i] = mk((uint64_t)(rand() % 500));
		ck_assert_int_eq(heap_push(&h, &e[i]->dn), 0);
	}
	ck_assert_uint_eq(h.n, 1000);
	for (int i = 0; i < 1000; i++) {
		struct hnode *t = heap_pop(&h);

		ck_assert_ptr_nonnull(t);
		ck_assert_uint_ge(t->key, prev);
		ck_assert(!hnode_queued(t));
		prev = t->key;
	}
	ck_assert_ptr_null(heap_pop(&h));
	for (int i = 0; i < 1000; i++)
		free(e[i]);
	heap_fini(&h);
}
END_TEST

START_TEST(heap_remove_any)
{
	struct heap h;
	struct item *e[200];
	uint64_t prev = 0;
	unsigned left = 0;

	heap_init(&h);
	for (int i = 0; i < 200; i++) {
		e[i] = mk((uint64_t)((i * 7919) % 211));
		ck_assert_int_eq(heap_push(&h, &e[i]->dn), 0);
	}
	/* Remove every third, from the middle of the array too. */
	for (int i = 0; i < 200; i += 3)
		heap_remove(&h, &e[i]->dn);
	for (int i = 0; i < 200; i += 3)
		ck_assert(!hnode_queued(&e[i]->dn));
	/* Removing twice is harmless. */
	heap_remove(&h, &e[0]->dn);
	for (int i = 0; i < 200; i++)
		if (i % 3)
			left++;
	ck_assert_uint_eq(h.n, left);
	for (unsigned i = 0; i < left; i++) {
		struct hnode *t = heap_pop(&h);

		ck_assert_uint_ge(t->key, prev);
		prev = t->key;
	}
	for (int i = 0; i < 200; i++)
		free(e[i]);
	heap_fini(&h);
}
END_TEST

START_TEST(lease_alloc_find_free)
{
	struct lease_table t;
	struct qent *a = (struct qent *)mk(0), *b = (struct qent *)mk(0);
	uint64_t ta, tb, ta2;

	lease_table_init(&t);
	ta = lease_alloc(&t, a);
	tb = lease_alloc(&t, b);
	ck_assert_uint_ne(ta, 0);
	ck_assert_uint_ne(tb, 0);
	ck_assert_uint_ne(ta, tb);
	ck_assert_ptr_eq(lease_find(&t, ta), a);
	ck_assert_ptr_eq(lease_find(&t, tb), b);
	ck_assert_uint_eq(t.used, 2);
	lease_free(&t, ta);
	ck_assert_ptr_null(lease_find(&t, ta));
	ck_assert_uint_eq(t.used, 1);
	/* The slot is reused with a new generation: the old token is
	 * stale for good. */
	ta2 = lease_alloc(&t, a);
	ck_assert_uint_eq(lease_idx(ta2), lease_idx(ta));
	ck_assert_uint_ne(ta2, ta);
	ck_assert_ptr_null(lease_find(&t, ta));
	ck_assert_ptr_eq(lease_find(&t, ta2), a);
	/* Freeing a stale token does not free the live one. */
	lease_free(&t, ta);
	ck_assert_ptr_eq(lease_find(&t, ta2), a);
	/* Bogus tokens. */
	ck_assert_ptr_null(lease_find(&t, 0));
	ck_assert_ptr_null(lease_find(&t, UINT64_MAX));
	ck_assert_ptr_null(lease_find(&t, (uint64_t)1 << 32 | 100000));
	/* The live token with bits above 2^53 is not that token. */
	ck_assert_ptr_null(lease_find(&t, ta2 | (uint64_t)1 << 53));
	lease_table_fini(&t);
	free(a);
	free(b);
}
END_TEST

/*
 * Tokens stay below 2^53 (a JavaScript client's exact integers) over a
 * slot's whole generation cycle, the wrap skips 0, and a token of a
 * wrapped generation is still refused until its generation comes back.
 */
START_TEST(lease_tokens_below_2_53)
{
	struct lease_table t;
	struct qent *e = (struct qent *)mk(0);
	uint64_t first, tok, prev = 0;

	lease_table_init(&t);
	first = lease_alloc(&t, e);
	ck_assert_uint_lt(first, (uint64_t)1 << 53);
	lease_free(&t, first);
	/* Walk the slot to the last generation. */
	t.s[lease_idx(first)].gen = LEASE_GEN_MAX;
	tok = lease_alloc(&t, e);
	ck_assert_uint_eq(lease_idx(tok), lease_idx(first));
	ck_assert_uint_lt(tok, (uint64_t)1 << 53);
	ck_assert_uint_ge(tok, (uint64_t)1 << 52);
	ck_assert_ptr_eq(lease_find(&t, tok), e);
	prev = tok;
	lease_free(&t, tok);
	/* Wrapped: generation 1 again, never 0 (token 0 is never issued). */
	tok = lease_alloc(&t, e);
	ck_assert_uint_eq(tok, first);
	ck_assert_ptr_null(lease_find(&t, prev));
	ck_assert_ptr_eq(lease_find(&t, tok), e);
	lease_free(&t, tok);
	/* Many slots: every token below 2^53. */
	for (int i = 0; i < 3000; i++) {
		tok = lease_alloc(&t, e);
		ck_assert_uint_ne(tok, 0);
		ck_assert_uint_lt(tok, (uint64_t)1 << 53);
	}
	lease_table_fini(&t);
	free(e);
}
END_TEST

START_TEST(lease_grows)
{
	struct lease_table t;
	static uint64_t tok[5000];
	struct qent *e = (struct qent *)mk(0);

	lease_table_init(&t);
	for (int i = 0; i < 5000; i++) {
		tok[i] = lease_alloc(&t, e);
		ck_assert_uint_ne(tok[i], 0);
	}
	ck_assert_uint_eq(t.used, 5000);
	for (int i = 0; i < 5000; i += 2)
		lease_free(&t, tok[i]);
	for (int i = 0; i < 5000; i++) {
		if (i % 2)
			ck_assert_ptr_eq(lease_find(&t, tok[i]), e);
		else
			ck_assert_ptr_null(lease_find(&t, tok[i]));
	}
	ck_assert_uint_eq(t.used, 2500);
	lease_table_fini(&t);
	free(e);
}
END_TEST

START_TEST(backoff_doubles_and_caps)
{
	/* rnd = 0 gives the lower bound, half of the nominal delay. */
	ck_assert_uint_eq(group_backoff_ms(1000, 60000, 1, 0), 500);
	ck_assert_uint_eq(group_backoff_ms(1000, 60000, 2, 0), 1000);
	ck_assert_uint_eq(group_backoff_ms(1000, 60000, 3, 0), 2000);
	ck_assert_uint_eq(group_backoff_ms(1000, 60000, 7, 0), 30000);
	ck_assert_uint_eq(group_backoff_ms(1000, 60000, 8, 0), 30000);
	ck_assert_uint_eq(group_backoff_ms(1000, 60000, 60000, 0), 30000);
	ck_assert_uint_eq(group_backoff_ms(0, 60000, 3, 12345), 0);
	for (uint64_t r = 0; r < 5000; r += 7) {
		uint64_t d = group_backoff_ms(1000, 60000, 3, r);

		ck_assert_uint_ge(d, 2000);
		ck_assert_uint_le(d, 4000);
	}
}
END_TEST

START_TEST(msg_ids_unique_uuid_text)
{
	char a[MSG_ID_LEN + 1], b[MSG_ID_LEN + 1];

	msg_id_generate(a);
	ck_assert_uint_eq(strlen(a), 36);
	ck_assert_int_eq(a[8], '-');
	ck_assert_int_eq(a[13], '-');
	ck_assert_int_eq(a[14], '4');	/* version 4 */
	ck_assert(strchr("89ab", a[19]) != NULL);	/* RFC 4122 variant */
	for (int i = 0; i < 10000; i++) {
		msg_id_generate(b);
		ck_assert_str_ne(a, b);
		ck_assert(strchr("89ab", b[19]) != NULL);
	}
}
END_TEST

/* The low 62 bits of an id's last 8 bytes, from its text. */
static uint64_t
id_low_bits(const char *id)
{
	char hex[17];
	int n = 0;

	for (int i = 19; i < 36; i++)
		if (id[i] != '-')
			hex[n++] = id[i];
	hex[n] = '\0';
	return strtoull(hex, NULL, 16) & (~0ULL >> 2);
}

/* Ids count up by one in their random low bits (printed incrementally:
 * across carries of one and two bytes here), and the binary form a
 * message keeps prints back to the same text. */
START_TEST(msg_ids_count_and_round_trip)
{
	char prev[MSG_ID_LEN + 1], id[MSG_ID_LEN + 1], buf[MSG_ID_LEN + 1];
	struct fy_pubmsg pm = {.body = {"b", 1}};

	msg_id_generate(prev);
	for (int i = 0; i < 70000; i++) {
		struct msg *m;

		msg_id_generate(id);
		ck_assert_uint_eq(id_low_bits(id),
		    (id_low_bits(prev) + 1) & (~0ULL >> 2));
		ck_assert_int_eq(memcmp(id, prev, 19), 0);
		if (i % 97 == 0 || (id_low_bits(id) & 0xffff) == 0) {
			m = msg_new(&pm, id, MSG_ID_LEN, 1, NULL, 0);
			ck_assert_ptr_nonnull(m);
			ck_assert(!(m->e0.flags & MF_TEXT_ID));
			ck_assert_str_eq(msg_id(m, buf).p, id);
			msg_unref(m);
		}
		memcpy(prev, id, sizeof(id));
	}
}
END_TEST

START_TEST(msg_new_copies_everything)
{
	struct fy_kv kv[2] = {
		{{"k1", 2}, {"v1", 2}},
		{{"key2", 4}, {"", 0}},
	};
	struct fy_hist h = {{"nacked", 6}, {"boom", 4}, {"w1", 2}, 77};
	char body[] = "hello";
	struct fy_pubmsg pm = {.body = {body, 5}, .hdr = kv, .nhdr = 2};
	struct msg *m = msg_new(&pm, "id-1", 4, 123, &h, 1);

	const struct msg_ext *x;
	char idbuf[MSG_ID_LEN + 1];

	ck_assert_ptr_nonnull(m);
	x = msg_ext(m);
	body[0] = 'X';		/* the message owns a copy */
	ck_assert_int_eq(memcmp(msg_body(m), "hello", 5), 0);
	ck_assert_str_eq(msg_id(m, idbuf).p, "id-1");
	ck_assert_uint_eq(msg_id(m, idbuf).len, 4);
	ck_assert_uint_eq(x->nhdr, 2);
	ck_assert_int_eq(memcmp(x->hdr[1].k.p, "key2", 4), 0);
	ck_assert_uint_eq(x->hdr[1].v.len, 0);
	ck_assert_uint_eq(x->nhist, 1);
	ck_assert_int_eq(memcmp(x->hist[0].error.p, "boom", 4), 0);
	ck_assert_uint_eq(x->hist[0].at, 77);
	ck_assert_uint_eq(m->ts, 123);
	ck_assert_ptr_eq(msg_ref(m), m);
	ck_assert_uint_eq(m->refs, 2);
	msg_unref(m);
	msg_unref(m);
	msg_unref(NULL);
}
END_TEST

START_TEST(qent_history_keeps_latest)
{
	struct fy_pubmsg pm = {.body = {"b", 1}};
	struct msg *m = msg_new(&pm, "x", 1, 0, NULL, 0);
	struct qent *e = qent_new(m, NULL);
	char err[16];

	msg_unref(m);		/* the entry holds its own reference */
	for (int i = 0; i < QHIST_MAX + 5; i++) {
		int n = snprintf(err, sizeof(err), "e%d", i);

		ck_assert_int_eq(qent_hist_add(e, CAUSE_NACKED, (uint64_t)i,
		    "w", 1, err, (size_t)n), 0);
	}
	ck_assert_ptr_nonnull(qent_side(e));
	ck_assert_uint_eq(qent_side(e)->nhist, QHIST_MAX);
	ck_assert_str_eq(qent_side(e)->hist[0].error, "e5");
	ck_assert_uint_eq(qent_side(e)->hist[QHIST_MAX - 1].at, QHIST_MAX + 4);
	ck_assert_str_eq(qent_cause_name(CAUSE_EXPIRED), "expired");
	ck_assert_str_eq(qent_cause_name(99), "unknown");
	qent_free(e);
}
END_TEST

/*
 * The memory budget: a message waiting in one group is one allocation of
 * 72 bytes plus its body, so 1M pending 128-byte messages cost ~208 MB.
 * Generated ids are kept in binary and print back as they came in.
 */
START_TEST(msg_compact_layout)
{
	char body[128], id[MSG_ID_LEN + 1], idbuf[MSG_ID_LEN + 1];
	struct fy_pubmsg pm = {.body = {body, sizeof(body)}};
	struct msg *m;
	struct fy_str s;

	memset(body, 'b', sizeof(body));
	ck_assert_uint_eq(sizeof(struct msg), 72);
	ck_assert_uint_eq(sizeof(struct qent), 32);
	msg_id_generate(id);
	m = msg_new(&pm, id, MSG_ID_LEN, 1, NULL, 0);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_le(malloc_usable_size(m) + 8, 208);
	ck_assert(!(m->e0.flags & MF_EXT));
	s = msg_id(m, idbuf);
	ck_assert_uint_eq(s.len, MSG_ID_LEN);
	ck_assert_str_eq(s.p, id);
	ck_assert_uint_eq(msg_idh(m), msg_id_hash(id, MSG_ID_LEN));
	ck_assert_uint_eq(msg_ext(m)->delay_ms, 0);
	msg_unref(m);

	/* Not canonical (upper case): kept as text, byte for byte. */
	for (char *p = id; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	m = msg_new(&pm, id, MSG_ID_LEN, 1, NULL, 0);
	ck_assert_ptr_nonnull(m);
	ck_assert(m->e0.flags & MF_TEXT_ID);
	ck_assert_str_eq(msg_id(m, idbuf).p, id);
	ck_assert_uint_eq(msg_idh(m), msg_id_hash(id, MSG_ID_LEN));
	msg_unref(m);
}
END_TEST

/* Fan-out: e0 is embedded, the others chain from e0's side; any order of
 * freeing leaves nothing behind (ASan/LSan check that). */
START_TEST(msg_entries_any_order)
{
	struct fy_pubmsg pm = {.body = {"b", 1}, .delay_ms = 5};
	int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0},
	    {2, 0, 1}, {2, 1, 0}};

	for (int o = 0; o < 6; o++) {
		struct msg *m = msg_new(&pm, "x", 1, 0, NULL, 0);
		struct qent *e[3], *it;
		int n = 0;

		ck_assert_ptr_nonnull(m);
		ck_assert_uint_eq(msg_ext(m)->delay_ms, 5);
		for (int i = 0; i < 3; i++) {
			ck_assert_ptr_nonnull(e[i] = qent_new(m, NULL));
			ck_assert_ptr_eq(qent_msg(e[i]), m);
		}
		ck_assert_ptr_eq(e[0], &m->e0);
		ck_assert_int_eq(qent_hist_add(e[2], CAUSE_TIMEOUT, 1, "w", 1,
		    NULL, 0), 0);
		qent_count_cause(e[1], CAUSE_NACKED);
		ck_assert_uint_eq(qent_side(e[1])->causes[CAUSE_NACKED], 1);
		for (it = msg_ents(m); it; it = msg_ents_next(it))
			n++;
		ck_assert_int_eq(n, 3);
		ck_assert_uint_eq(m->refs, 4);
		msg_unref(m);
		for (int i = 0; i < 3; i++) {
			int k = orders[o][i];

			qent_free(e[k]);
			n = 0;
			if (i < 2) {
				for (it = msg_ents(m); it;
				    it = msg_ents_next(it)) {
					ck_assert_ptr_ne(it, e[k]);
					n++;
				}
				ck_assert_int_eq(n, 2 - i);
			}
		}
	}
	qside_pool_trim();
}
END_TEST

START_TEST(list_splice)
{
	struct list a, b, n[4];

	list_init(&a);
	list_init(&b);
	list_add_tail(&a, &n[0]);
	list_add_tail(&a, &n[1]);
	list_add_tail(&b, &n[2]);
	list_add_head(&b, &n[3]);
	list_splice_tail(&a, &b);
	ck_assert(list_empty(&b));
	ck_assert_ptr_eq(a.next, &n[0]);
	ck_assert_ptr_eq(a.next->next, &n[1]);
	ck_assert_ptr_eq(a.next->next->next, &n[3]);
	ck_assert_ptr_eq(a.prev, &n[2]);
	list_del(&n[3]);
	list_del(&n[3]);	/* unlinked nodes are harmless */
	ck_assert_ptr_eq(n[1].next, &n[2]);
}
END_TEST

static Suite *
queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc;

	tc = tcase_create("heap");
	tcase_add_test(tc, heap_orders_random_keys);
	tcase_add_test(tc, heap_remove_any);
	suite_add_tcase(s, tc);
	tc = tcase_create("lease");
	tcase_add_test(tc, lease_alloc_find_free);
	tcase_add_test(tc, lease_grows);
	tcase_add_test(tc, lease_tokens_below_2_53);
	suite_add_tcase(s, tc);
	tc = tcase_create("backoff");
	tcase_add_test(tc, backoff_doubles_and_caps);
	suite_add_tcase(s, tc);
	tc = tcase_create("msg");
	tcase_add_test(tc, msg_ids_unique_uuid_text);
	tcase_add_test(tc, msg_ids_count_and_round_trip);
	tcase_add_test(tc, msg_new_copies_everything);
	tcase_add_test(tc, qent_history_keeps_latest);
	suite_add_tcase(s, tc);
	tc = tcase_create("list");
	tcase_add_test(tc, list_splice);
	tcase_add_test(tc, msg_compact_layout);
	tcase_add_test(tc, msg_entries_any_order);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(queue_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
