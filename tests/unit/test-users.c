/*
 * test-users.c - topic patterns (broker/pattern.c) and the users file
 * (broker/users.c): what each pattern matches, how a deny wins, how a
 * bad line is reported, and that a saved file reads back the same, keeps
 * its comments and is not readable by others.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "pattern.h"
#include "users.h"

static const struct {
	const char *pat, *topic;
	int match;
} matches[] = {
	{ "orders.created", "orders.created", 1 },
	{ "orders.created", "orders.create", 0 },
	{ "orders.created", "orders.created.eu", 0 },
	{ "orders.*", "orders.created", 1 },
	{ "orders.*", "orders", 0 },
	{ "orders.*", "orders.eu.created", 0 },
	{ "orders.>", "orders.created", 1 },
	{ "orders.>", "orders.eu.created", 1 },
	{ "orders.>", "orders", 0 },
	{ "orders.>", "ordersx.a", 0 },
	{ "*.created", "orders.created", 1 },
	{ "*.created", "created", 0 },
	{ "*.*", "a.b", 1 },
	{ "*.*", "a.b.c", 0 },
	{ "*", "a", 1 },
	{ "*", "a.b", 0 },
	{ ">", "a", 1 },
	{ ">", "a.b.c", 1 },
	{ "a.*.c", "a.b.c", 1 },
	{ "a.*.c", "a.b.d", 0 },
	{ "a.*.>", "a.b.c.d", 1 },
	{ "a.*.>", "a.b", 0 },
	/* Topic names may hold empty segments; patterns never match them. */
	{ "a.*", "a.", 0 },
	{ "a.>", "a..b", 1 },
	{ "*.b", ".b", 0 },
};

START_TEST(pattern_matches)
{
	const char *t = matches[_i].topic;

	ck_assert_msg(pattern_valid(matches[_i].pat,
	    strlen(matches[_i].pat)), "%s", matches[_i].pat);
	ck_assert_msg(pattern_match(matches[_i].pat, t, strlen(t)) ==
	    matches[_i].match, "%s ~ %s", matches[_i].pat, t);
}
END_TEST

static const char *const invalid[] = {
	"", ".", "a.", ".a", "a..b", ">.a", "a.>.b", "a*", "*a", "a.b>",
	"a b", "a/b", "**", ">>",
};

START_TEST(pattern_invalid)
{
	ck_assert_msg(!pattern_valid(invalid[_i], strlen(invalid[_i])), "%s",
	    invalid[_i]);
}
END_TEST

/* The RFC 7677 user, as `ferry user add` would write it. */
#define ALICE "alice SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" \
	"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:" \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

static struct users *
parse_ok(const char *text)
{
	struct users *u = NULL;
	char err[256] = "";

	ck_assert_msg(users_parse(text, strlen(text), "users", &u, err,
	    sizeof(err)) == 0, "%s", err);
	return u;
}

START_TEST(parse_entries)
{
	struct users *u = parse_ok("# comment\n\n" ALICE
	    " pub=orders.>,!orders.secret sub=orders.* admin\n"
	    "anonymous - sub=public.>\n"
	    "svc\t-\tpub=jobs.*\n");
	const struct users_entry *e;
	struct fy_scram_verifier v;
	uint8_t salt[16];

	e = users_find(u, "alice");
	ck_assert_ptr_nonnull(e);
	ck_assert(e->has_verifier);
	ck_assert(e->admin);
	ck_assert_uint_eq(e->v.iter, 4096);
	ck_assert_uint_eq(e->npats[USERS_PUB], 2);
	ck_assert(e->pats[USERS_PUB][1].deny);
	ck_assert_str_eq(e->pats[USERS_PUB][1].pat, "orders.secret");
	/* The verifier is the one of "pencil" with the RFC's salt. */
	ck_assert_int_eq(fy_b64_decode(salt, sizeof(salt),
	    "W22ZaJ0SNY7soEsUEjb6gQ==", 24), 16);
	ck_assert_int_eq(fy_scram_verifier_make(&v, "pencil", 6, salt, 16,
	    4096), 0);
	ck_assert_mem_eq(v.stored_key, e->v.stored_key, 32);
	ck_assert_mem_eq(v.server_key, e->v.server_key, 32);

	e = users_find(u, "anonymous");
	ck_assert_ptr_nonnull(e);
	ck_assert(!e->has_verifier);
	ck_assert(users_allowed(e, USERS_SUB, "public.news", 11));
	ck_assert(!users_allowed(e, USERS_PUB, "public.news", 11));
	e = users_find(u, "svc");
	ck_assert(users_allowed(e, USERS_PUB, "jobs.resize", 11));
	ck_assert(!users_allowed(e, USERS_PUB, "jobs.resize.x", 13));
	ck_assert_ptr_null(users_find(u, "bob"));
	users_free(u);
}
END_TEST

START_TEST(deny_wins)
{
	struct users *u = parse_ok("bob - pub=!orders.secret,orders.> "
	    "sub=orders.*\n");
	const struct users_entry *e = users_find(u, "bob");

	ck_assert(users_allowed(e, USERS_PUB, "orders.created", 14));
	ck_assert(!users_allowed(e, USERS_PUB, "orders.secret", 13));
	ck_assert(!users_allowed(e, USERS_PUB, "billing.x", 9));
	/* Subscribing is its own permission. */
	ck_assert(users_allowed(e, USERS_SUB, "orders.secret", 13));
	ck_assert(!users_allowed(e, USERS_SUB, "orders.eu.x", 11));
	users_free(u);
}
END_TEST

static const struct {
	const char *text, *err;
} bad_files[] = {
	{ "alice\n", "users:1: user \"alice\" has no verifier" },
	{ "# ok\nal - x\n", "users:2: unknown field \"x\"" },
	{ "a,b -\n", "users:1: invalid user name \"a,b\"" },
	{ "a - pub=orders.>.x\n", "users:1: invalid topic pattern "
	    "\"orders.>.x\"" },
	{ "a - sub=ok,\n", "users:1: invalid topic pattern \"\"" },
	{ "a -\nb -\na -\n", "users:3: user \"a\" appears twice" },
	{ "a SCRAM-SHA-256$4096:abc$def:ghi\n", "users:1: invalid verifier "
	    "for \"a\"" },
	{ "a SCRAM-SHA-256$1:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7Bk"
	    "eZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU"
	    "=\n", "users:1: invalid verifier" },
	{ "anonymous SCRAM-SHA-256$4096:x\n", "users:1: the \"anonymous\" "
	    "entry cannot have a password" },
	{ "a - admin\nb - pub=\n", "users:2: invalid topic pattern" },
};

START_TEST(parse_errors_name_the_line)
{
	struct users *u = NULL;
	char err[256] = "";
	const char *t = bad_files[_i].text;

	ck_assert_int_eq(users_parse(t, strlen(t), "users", &u, err,
	    sizeof(err)), -EINVAL);
	ck_assert_ptr_null(u);
	ck_assert_msg(strncmp(err, bad_files[_i].err,
	    strlen(bad_files[_i].err)) == 0, "got: %s", err);
}
END_TEST

static char tmpdir[64];

static void
mkdir_tmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-users.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
rm_tmp(const char *path)
{
	unlink(path);
	rmdir(tmpdir);
}

START_TEST(save_roundtrip_keeps_comments)
{
	struct users *u = parse_ok("# who may use ferry\n" ALICE
	    " sub=orders.*\n\n# services\nsvc - pub=jobs.>\n"), *u2 = NULL;
	const char *pub[] = { "a.>", "!a.b" }, *sub[] = { "x.*" };
	char path[128], err[256] = "", buf[512];
	struct stat st;
	FILE *f;
	size_t n;

	mkdir_tmp();
	snprintf(path, sizeof(path), "%s/users", tmpdir);
	ck_assert_int_eq(users_add(u, "carol", NULL, pub, 2, sub, 1, 1, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(users_add(u, "carol", NULL, NULL, 0, NULL, 0, 0, err,
	    sizeof(err)), -EEXIST);
	ck_assert_int_eq(users_del(u, "svc"), 0);
	ck_assert_int_eq(users_del(u, "svc"), -ENOENT);
	ck_assert_int_eq(users_save(u, path, err, sizeof(err)), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);

	f = fopen(path, "r");
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	ck_assert_str_eq(buf, "# who may use ferry\n" ALICE " sub=orders.*\n"
	    "\n# services\ncarol - pub=a.>,!a.b sub=x.* admin\n");

	ck_assert_msg(users_load(path, &u2, err, sizeof(err)) == 0, "%s", err);
	ck_assert(users_allowed(users_find(u2, "carol"), USERS_PUB, "a.c",
	    3));
	ck_assert_mem_eq(users_find(u2, "alice")->v.stored_key,
	    users_find(u, "alice")->v.stored_key, 32);
	users_free(u2);
	users_free(u);
	rm_tmp(path);
}
END_TEST

START_TEST(world_readable_refused)
{
	struct users *u = NULL;
	char path[128], err[256] = "";
	FILE *f;

	mkdir_tmp();
	snprintf(path, sizeof(path), "%s/users", tmpdir);
	f = fopen(path, "w");
	fputs("a -\n", f);
	fclose(f);
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_int_eq(users_load(path, &u, err, sizeof(err)), -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "0644 are too open"));
	ck_assert_int_eq(chmod(path, 0640), 0);
	ck_assert_int_eq(users_load(path, &u, err, sizeof(err)), 0);
	users_free(u);
	u = NULL;
	unlink(path);
	ck_assert_int_eq(users_load(path, &u, err, sizeof(err)), -ENOENT);
	rm_tmp(path);
}
END_TEST

static Suite *
users_suite(void)
{
	Suite *s = suite_create("users");
	TCase *tc;

	tc = tcase_create("pattern");
	tcase_add_loop_test(tc, pattern_matches, 0,
	    sizeof(matches) / sizeof(matches[0]));
	tcase_add_loop_test(tc, pattern_invalid, 0,
	    sizeof(invalid) / sizeof(invalid[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("file");
	tcase_add_test(tc, parse_entries);
	tcase_add_test(tc, deny_wins);
	tcase_add_loop_test(tc, parse_errors_name_the_line, 0,
	    sizeof(bad_files) / sizeof(bad_files[0]));
	tcase_add_test(tc, save_roundtrip_keeps_comments);
	tcase_add_test(tc, world_readable_refused);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(users_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
