/*
 * test-scram.c - SCRAM-SHA-256 (protocol/scram.c) against the RFC 7677
 * example, both sides, and every way a peer can get it wrong: wrong
 * password, unknown user, foreign or replayed nonces, truncated and
 * malformed messages, a forged server signature.
 */
#include <string.h>

#include <check.h>

#include "scram.h"

/* RFC 7677, section 3. */
#define RFC_USER "user"
#define RFC_PASS "pencil"
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_C1 "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_S1 "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
	"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_C2 "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)" \
	"hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_S2 "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static struct fy_scram_verifier rfc_v;

static void
rfc_verifier(void)
{
	uint8_t salt[32];
	int n;

	n = fy_b64_decode(salt, sizeof(salt), RFC_SALT, strlen(RFC_SALT));
	ck_assert_int_eq(n, 16);
	ck_assert_int_eq(fy_scram_verifier_make(&rfc_v, RFC_PASS,
	    strlen(RFC_PASS), salt, (size_t)n, 4096), FY_OK);
}

/* Server up to its challenge, from a client-first. */
static int
server_to_challenge(struct fy_scram_server *s, const char *c1,
    const struct fy_scram_verifier *v, const char *snonce, char *out)
{
	int r = fy_scram_server_first(s, c1, strlen(c1));

	if (r)
		return r;
	return fy_scram_server_challenge(s, v, snonce, out);
}

START_TEST(rfc7677_client)
{
	struct fy_scram_client c;
	char out[FY_SCRAM_MSG_MAX];

	ck_assert_int_eq(fy_scram_client_first(&c, RFC_USER, RFC_CNONCE, out),
	    FY_OK);
	ck_assert_str_eq(out, RFC_C1);
	ck_assert_int_eq(fy_scram_client_final(&c, RFC_PASS, strlen(RFC_PASS),
	    RFC_S1, strlen(RFC_S1), out), FY_OK);
	ck_assert_str_eq(out, RFC_C2);
	ck_assert_int_eq(fy_scram_client_verify(&c, RFC_S2, strlen(RFC_S2)),
	    FY_OK);
	ck_assert_int_eq(c.state, FY_SCRAM_DONE);
}
END_TEST

START_TEST(rfc7677_server)
{
	struct fy_scram_server s;
	char out[FY_SCRAM_MSG_MAX];

	rfc_verifier();
	ck_assert_int_eq(server_to_challenge(&s, RFC_C1, &rfc_v, RFC_SNONCE,
	    out), FY_OK);
	ck_assert_str_eq(s.user, RFC_USER);
	ck_assert_str_eq(out, RFC_S1);
	ck_assert_int_eq(fy_scram_server_final(&s, RFC_C2, strlen(RFC_C2),
	    out), FY_OK);
	ck_assert_str_eq(out, RFC_S2);
	ck_assert_int_eq(s.state, FY_SCRAM_DONE);
}
END_TEST

/* Both sides of this module, with fresh nonces, meet. */
START_TEST(roundtrip_fresh_nonces)
{
	struct fy_scram_client c;
	struct fy_scram_server s;
	char c1[FY_SCRAM_MSG_MAX], s1[FY_SCRAM_MSG_MAX], c2[FY_SCRAM_MSG_MAX],
	    s2[FY_SCRAM_MSG_MAX], cn[25], sn[25];

	rfc_verifier();
	ck_assert_int_eq(fy_scram_nonce(cn, 24), FY_OK);
	ck_assert_int_eq(fy_scram_nonce(sn, 24), FY_OK);
	ck_assert_uint_eq(strlen(cn), 24);
	ck_assert_str_ne(cn, sn);
	ck_assert_ptr_null(strchr(cn, ','));
	ck_assert_int_eq(fy_scram_client_first(&c, RFC_USER, cn, c1), FY_OK);
	ck_assert_int_eq(server_to_challenge(&s, c1, &rfc_v, sn, s1), FY_OK);
	ck_assert_int_eq(fy_scram_client_final(&c, RFC_PASS, strlen(RFC_PASS),
	    s1, strlen(s1), c2), FY_OK);
	ck_assert_int_eq(fy_scram_server_final(&s, c2, strlen(c2), s2),
	    FY_OK);
	ck_assert_int_eq(fy_scram_client_verify(&c, s2, strlen(s2)), FY_OK);
}
END_TEST

/* Wrong password and unknown user fail the same way, at the same step. */
START_TEST(wrong_password_and_unknown_user)
{
	struct fy_scram_client c;
	struct fy_scram_server s;
	struct fy_scram_verifier fake;
	char c1[FY_SCRAM_MSG_MAX], s1[FY_SCRAM_MSG_MAX], c2[FY_SCRAM_MSG_MAX],
	    s2[FY_SCRAM_MSG_MAX];
	static const uint8_t secret[] = "server secret";
	int i;

	rfc_verifier();
	ck_assert_int_eq(fy_scram_verifier_fake(&fake, "nobody", secret,
	    sizeof(secret), 4096), FY_OK);
	for (i = 0; i < 2; i++) {
		const struct fy_scram_verifier *v = i ? &fake : &rfc_v;
		const char *pw = i ? RFC_PASS : "pencil2";

		ck_assert_int_eq(fy_scram_client_first(&c, i ? "nobody" :
		    RFC_USER, RFC_CNONCE, c1), FY_OK);
		ck_assert_int_eq(server_to_challenge(&s, c1, v, RFC_SNONCE,
		    s1), FY_OK);
		ck_assert_int_eq(fy_scram_client_final(&c, pw, strlen(pw),
		    s1, strlen(s1), c2), FY_OK);
		ck_assert_int_eq(fy_scram_server_final(&s, c2, strlen(c2),
		    s2), FY_EAUTH);
		ck_assert_int_eq(s.state, FY_SCRAM_FAILED);
	}
}
END_TEST

/* An unknown name always gets the same salt, as a real user would. */
START_TEST(fake_salt_is_stable)
{
	struct fy_scram_verifier a, b, other;
	static const uint8_t secret[] = "k";

	ck_assert_int_eq(fy_scram_verifier_fake(&a, "x", secret, 1, 4096), 0);
	ck_assert_int_eq(fy_scram_verifier_fake(&b, "x", secret, 1, 4096), 0);
	ck_assert_int_eq(fy_scram_verifier_fake(&other, "y", secret, 1, 4096),
	    0);
	ck_assert_uint_eq(a.salt_len, 16);
	ck_assert_mem_eq(a.salt, b.salt, 16);
	ck_assert_int_ne(memcmp(a.salt, other.salt, 16), 0);
}
END_TEST

/* The RFC's client-final replayed against a new session (a new server
 * nonce) is refused. */
START_TEST(replayed_proof_refused)
{
	struct fy_scram_server s;
	char out[FY_SCRAM_MSG_MAX];

	rfc_verifier();
	ck_assert_int_eq(server_to_challenge(&s, RFC_C1, &rfc_v,
	    "anotherServerNonce", out), FY_OK);
	ck_assert_int_eq(fy_scram_server_final(&s, RFC_C2, strlen(RFC_C2),
	    out), FY_EPROTO);
	/* And a finished session takes nothing more. */
	ck_assert_int_eq(fy_scram_server_final(&s, RFC_C2, strlen(RFC_C2),
	    out), FY_EPROTO);
}
END_TEST

/* A flipped proof byte: right shape, wrong key. */
START_TEST(tampered_proof_refused)
{
	struct fy_scram_server s;
	char out[FY_SCRAM_MSG_MAX], c2[] = RFC_C2;

	rfc_verifier();
	c2[strlen(c2) - 5] ^= 1;	/* 'd' -> 'e', still base64 */
	ck_assert_int_eq(server_to_challenge(&s, RFC_C1, &rfc_v, RFC_SNONCE,
	    out), FY_OK);
	ck_assert_int_eq(fy_scram_server_final(&s, c2, strlen(c2), out),
	    FY_EAUTH);
}
END_TEST

/* A server that does not know the verifier cannot fake server-final. */
START_TEST(forged_server_signature_refused)
{
	struct fy_scram_client c;
	char out[FY_SCRAM_MSG_MAX], s2[] = RFC_S2;

	s2[3] = s2[3] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(fy_scram_client_first(&c, RFC_USER, RFC_CNONCE, out),
	    FY_OK);
	ck_assert_int_eq(fy_scram_client_final(&c, RFC_PASS, strlen(RFC_PASS),
	    RFC_S1, strlen(RFC_S1), out), FY_OK);
	ck_assert_int_eq(fy_scram_client_verify(&c, s2, strlen(s2)),
	    FY_EAUTH);
	ck_assert_int_eq(c.state, FY_SCRAM_FAILED);
	/* An "e=" error from the server is a failure too. */
	ck_assert_int_eq(fy_scram_client_first(&c, RFC_USER, RFC_CNONCE, out),
	    FY_OK);
	ck_assert_int_eq(fy_scram_client_final(&c, RFC_PASS, strlen(RFC_PASS),
	    RFC_S1, strlen(RFC_S1), out), FY_OK);
	ck_assert_int_ne(fy_scram_client_verify(&c, "e=invalid-proof", 15),
	    FY_OK);
}
END_TEST

static const char *const bad_server_first[] = {
	/* nonce does not start with ours */
	"r=XXprNGfwEbeRWgbNEkqO%hvYD,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	/* nonce is only ours: the server added nothing */
	"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	/* too few iterations (downgrade) */
	"r=rOprNGfwEbeRWgbNEkqOab,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
	/* too many: a hostile server making us spin */
	"r=rOprNGfwEbeRWgbNEkqOab,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999",
	"r=rOprNGfwEbeRWgbNEkqOab,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=04096",
	"r=rOprNGfwEbeRWgbNEkqOab,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x",
	/* salt not base64 */
	"r=rOprNGfwEbeRWgbNEkqOab,s=W22ZaJ0SNY7so sUEjb6gQ==,i=4096",
	"r=rOprNGfwEbeRWgbNEkqOab,s=,i=4096",
	/* attributes missing, out of order, trailing */
	"r=rOprNGfwEbeRWgbNEkqOab,i=4096",
	"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOab,i=4096",
	"r=rOprNGfwEbeRWgbNEkqOab,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=1",
	"m=ext,r=rOprNGfwEbeRWgbNEkqOab,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	"e=other-error",
	"",
};

START_TEST(bad_server_first_refused)
{
	struct fy_scram_client c;
	char out[FY_SCRAM_MSG_MAX];
	const char *m = bad_server_first[_i];

	ck_assert_int_eq(fy_scram_client_first(&c, RFC_USER, RFC_CNONCE, out),
	    FY_OK);
	ck_assert_int_eq(fy_scram_client_final(&c, RFC_PASS, strlen(RFC_PASS),
	    m, strlen(m), out), FY_EPROTO);
	ck_assert_int_eq(c.state, FY_SCRAM_FAILED);
}
END_TEST

static const char *const bad_client_first[] = {
	"y,,n=user,r=abc",		/* channel binding claimed */
	"p=tls-unique,,n=user,r=abc",
	"n,a=admin,n=user,r=abc",	/* authzid */
	"n,,m=ext,n=user,r=abc",	/* reserved mandatory extension */
	"n,,n=,r=abc",
	"n,,n=us=2Cer,r=abc",		/* escaped names: not ours */
	"n,,n=user",
	"n,,n=user,r=",
	"n,,n=user,r=a b",
	"n,,r=abc,n=user",
	"n,n=user,r=abc",
	("n,,n=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    ",r=abc"),			/* 65-byte user name */
	"",
};

START_TEST(bad_client_first_refused)
{
	struct fy_scram_server s;
	const char *m = bad_client_first[_i];

	ck_assert_int_eq(fy_scram_server_first(&s, m, strlen(m)), FY_EPROTO);
	ck_assert_int_eq(s.state, FY_SCRAM_FAILED);
}
END_TEST

/* Every prefix of the RFC's client-final is refused, none crashes. */
START_TEST(truncated_client_final_refused)
{
	struct fy_scram_server s;
	char out[FY_SCRAM_MSG_MAX];
	size_t n;

	rfc_verifier();
	for (n = 0; n < strlen(RFC_C2); n++) {
		ck_assert_int_eq(server_to_challenge(&s, RFC_C1, &rfc_v,
		    RFC_SNONCE, out), FY_OK);
		ck_assert_int_ne(fy_scram_server_final(&s, RFC_C2, n, out),
		    FY_OK);
	}
}
END_TEST

/* Every prefix of the RFC's server-first and server-final too. */
START_TEST(truncated_server_messages_refused)
{
	struct fy_scram_client c;
	char out[FY_SCRAM_MSG_MAX];
	size_t n;

	for (n = 0; n < strlen(RFC_S1); n++) {
		ck_assert_int_eq(fy_scram_client_first(&c, RFC_USER,
		    RFC_CNONCE, out), FY_OK);
		/* "...,i=409" is a valid but different count: below the
		 * minimum, so refused all the same. */
		ck_assert_int_ne(fy_scram_client_final(&c, RFC_PASS,
		    strlen(RFC_PASS), RFC_S1, n, out), FY_OK);
	}
	for (n = 0; n < strlen(RFC_S2); n++) {
		ck_assert_int_eq(fy_scram_client_first(&c, RFC_USER,
		    RFC_CNONCE, out), FY_OK);
		ck_assert_int_eq(fy_scram_client_final(&c, RFC_PASS,
		    strlen(RFC_PASS), RFC_S1, strlen(RFC_S1), out), FY_OK);
		ck_assert_int_ne(fy_scram_client_verify(&c, RFC_S2, n), FY_OK);
	}
}
END_TEST

/* Out-of-order calls refuse instead of reading stale state. */
START_TEST(out_of_order_refused)
{
	struct fy_scram_server s;
	struct fy_scram_client c;
	char out[FY_SCRAM_MSG_MAX];

	memset(&s, 0, sizeof(s));
	memset(&c, 0, sizeof(c));
	rfc_verifier();
	ck_assert_int_eq(fy_scram_server_challenge(&s, &rfc_v, RFC_SNONCE,
	    out), FY_EPROTO);
	ck_assert_int_eq(fy_scram_server_final(&s, RFC_C2, strlen(RFC_C2),
	    out), FY_EPROTO);
	ck_assert_int_eq(fy_scram_client_final(&c, RFC_PASS, 6, RFC_S1,
	    strlen(RFC_S1), out), FY_EPROTO);
	ck_assert_int_eq(fy_scram_client_verify(&c, RFC_S2, strlen(RFC_S2)),
	    FY_EPROTO);
}
END_TEST

START_TEST(base64_strict)
{
	uint8_t b[8];
	char e[16];

	ck_assert_int_eq(fy_b64_encode(e, sizeof(e), (const uint8_t *)"ab",
	    2), 4);
	ck_assert_str_eq(e, "YWI=");
	ck_assert_int_eq(fy_b64_decode(b, sizeof(b), "YWI=", 4), 2);
	ck_assert_mem_eq(b, "ab", 2);
	ck_assert_int_eq(fy_b64_decode(b, sizeof(b), "YWJj", 4), 3);
	ck_assert_int_eq(fy_b64_decode(b, 2, "YWJj", 4), -1);
	ck_assert_int_eq(fy_b64_decode(b, sizeof(b), "YW=j", 4), -1);
	ck_assert_int_eq(fy_b64_decode(b, sizeof(b), "YWI", 3), -1);
	ck_assert_int_eq(fy_b64_decode(b, sizeof(b), " YWI", 4), -1);
	ck_assert_int_eq(fy_b64_encode(e, 4, (const uint8_t *)"ab", 2), -1);
}
END_TEST

START_TEST(user_names)
{
	ck_assert(fy_scram_user_valid("alice", 5));
	ck_assert(fy_scram_user_valid("svc-1.app_x@corp", 16));
	ck_assert(!fy_scram_user_valid("", 0));
	ck_assert(!fy_scram_user_valid("a,b", 3));
	ck_assert(!fy_scram_user_valid("a=b", 3));
	ck_assert(!fy_scram_user_valid("a b", 3));
}
END_TEST

static Suite *
scram_suite(void)
{
	Suite *s = suite_create("scram");
	TCase *tc;

	tc = tcase_create("rfc7677");
	tcase_add_test(tc, rfc7677_client);
	tcase_add_test(tc, rfc7677_server);
	tcase_add_test(tc, roundtrip_fresh_nonces);
	suite_add_tcase(s, tc);

	tc = tcase_create("refusals");
	tcase_add_test(tc, wrong_password_and_unknown_user);
	tcase_add_test(tc, fake_salt_is_stable);
	tcase_add_test(tc, replayed_proof_refused);
	tcase_add_test(tc, tampered_proof_refused);
	tcase_add_test(tc, forged_server_signature_refused);
	tcase_add_test(tc, out_of_order_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_loop_test(tc, bad_server_first_refused, 0,
	    sizeof(bad_server_first) / sizeof(bad_server_first[0]));
	tcase_add_loop_test(tc, bad_client_first_refused, 0,
	    sizeof(bad_client_first) / sizeof(bad_client_first[0]));
	tcase_add_test(tc, truncated_client_final_refused);
	tcase_add_test(tc, truncated_server_messages_refused);
	tcase_add_test(tc, base64_strict);
	tcase_add_test(tc, user_names);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(scram_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
