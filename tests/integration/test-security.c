/*
 * test-security.c - authentication and permissions through a real ferryd:
 * SCRAM-SHA-256 logins (accepted; wrong password and unknown user refused
 * alike, after a delay that grows per address), malformed and abandoned
 * exchanges, allow and deny patterns with '*' and '>', admin-only
 * operations, inboxes, reloading the users file on SIGHUP, and start-up
 * refused on a public address without authentication or with a users
 * file others can read.  Users are created with `ferry user add`, so the
 * CLI's file is what the broker reads.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ferry.h"
#include "harness.h"
#include "scram.h"

static struct ferryd d;
static struct fy_dec dec;
static char udir[256], users[300];

/* `ferry user ARGS... --file users`, password on stdin; exit status. */
static int
user_cmd(const char *pw, const char *a1, const char *a2, const char *a3,
    const char *a4, const char *a5, const char *a6)
{
	char *out = NULL;
	int st;

	/* The port is not used by `ferry user`; 1 passes the check. */
	st = cli_run(1, pw, &out, 10000, "user", a1, a2, "--file", users,
	    a3, a4, a5, a6, (char *)NULL);
	free(out);
	return st;
}

/* bob: publish under orders. but not orders.secret, subscribe one
 * segment under orders. */
static int
add_bob(const char *pub_pattern)
{
	return cli_run(1, "hunter2\n", NULL, 10000, "user", "add", "bob",
	    "--file", users, "--publish", pub_pattern, "--publish",
	    "!orders.secret", "--subscribe", "orders.*", (char *)NULL);
}

static void
make_users(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(udir, sizeof(udir), "%s/ferry-users-XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(udir));
	snprintf(users, sizeof(users), "%s/users", udir);
	ck_assert_int_eq(user_cmd("pencil\n", "add", "alice", "--admin",
	    NULL, NULL, NULL), 0);
	ck_assert_int_eq(add_bob("orders.>"), 0);
	/* A second add must not replace bob. */
	ck_assert_int_eq(user_cmd("x\n", "add", "bob", NULL, NULL, NULL,
	    NULL), 1);
}

static void
setup(void)
{
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	make_users();
	ferryd_start(&d, "--users-file", users, "--handshake-timeout", "3",
	    NULL);
}

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
	fy_dec_fini(&dec);
	unlink(users);
	rmdir(udir);
}

static struct fy_str
S(const char *s)
{
	return (struct fy_str){s, (uint32_t)strlen(s)};
}

/*
 * Log in as user with pw over a new connection.  Returns 0 and the open
 * connection in *fd once WELCOME's server signature verified, or the ERR
 * code (the connection is then closed by the broker, and by us).
 */
static int
login(const char *user, const char *pw, int *fd)
{
	struct fy_scram_client sc;
	struct fy_frame f = {.type = FY_T_HELLO};
	char c1[FY_SCRAM_MSG_MAX], c2[FY_SCRAM_MSG_MAX], nonce[25],
	    s1[FY_SCRAM_MSG_MAX];

	*fd = raw_connect(d.port);
	ck_assert_int_eq(fy_scram_nonce(nonce, 24), FY_OK);
	ck_assert_int_eq(fy_scram_client_first(&sc, user, nonce, c1), FY_OK);
	f.hello.version = FY_PROTO_VERSION;
	f.hello.mech = S(FY_SCRAM_MECH);
	f.hello.sasl = S(c1);
	f.rid = 1;
	raw_send_frame(*fd, &f);
	ck_assert_int_eq(raw_recv_frame(*fd, &dec, &f, 5000), 1);
	if (f.type == FY_T_ERR) {	/* refused before any challenge */
		close(*fd);
		*fd = -1;
		return (int)f.err.code;
	}
	ck_assert_int_eq(f.type, FY_T_CHALLENGE);
	ck_assert_uint_eq(f.rid, 1);
	ck_assert_uint_lt(f.auth.sasl.len, sizeof(s1));
	memcpy(s1, f.auth.sasl.p, f.auth.sasl.len);
	ck_assert_int_eq(fy_scram_client_final(&sc, pw, strlen(pw), s1,
	    f.auth.sasl.len, c2), FY_OK);
	memset(&f, 0, sizeof(f));
	f.type = FY_T_AUTH;
	f.rid = 2;
	f.auth.sasl = S(c2);
	raw_send_frame(*fd, &f);
	ck_assert_int_eq(raw_recv_frame(*fd, &dec, &f, 40000), 1);
	if (f.type == FY_T_ERR) {
		int code = (int)f.err.code;

		ck_assert_uint_eq(f.rid, 2);
		ck_assert_int_eq(raw_recv_frame(*fd, &dec, &f, 5000), 0);
		close(*fd);
		*fd = -1;
		return code;
	}
	ck_assert_int_eq(f.type, FY_T_WELCOME);
	ck_assert_uint_eq(f.rid, 2);
	ck_assert_uint_eq(f.welcome.user.len, strlen(user));
	ck_assert_mem_eq(f.welcome.user.p, user, strlen(user));
	/* The server proves it holds the verifier. */
	ck_assert_int_eq(fy_scram_client_verify(&sc, f.welcome.sasl.p,
	    f.welcome.sasl.len), FY_OK);
	return 0;
}

/* Deliveries that arrived while waiting for a reply, and the last one's
 * topic. */
static int skipped;
static char skipped_topic[64];

/* One request, its reply's type; *code the ERR code if any. */
static int
request(int fd, struct fy_frame *f, uint32_t *code)
{
	static uint64_t rid = 100;

	f->rid = ++rid;
	raw_send_frame(fd, f);
	for (;;) {
		ck_assert_int_eq(raw_recv_frame(fd, &dec, f, 5000), 1);
		if (f->rid != 0)
			break;
		/* Unsolicited: E_DELETED of our subscription. */
		if (f->type == FY_T_ERR)
			continue;
		ck_assert_int_eq(f->type, FY_T_MSG);
		skipped++;
		snprintf(skipped_topic, sizeof(skipped_topic), "%.*s",
		    (int)f->msg.topic.len, f->msg.topic.p);
	}
	ck_assert_uint_eq(f->rid, rid);
	*code = f->type == FY_T_ERR ? f->err.code : 0;
	return f->type;
}

static uint32_t
pub(int fd, const char *topic, const char *group)
{
	struct fy_frame f = {.type = FY_T_PUB};
	uint32_t code;

	f.pub.topic = S(topic);
	f.pub.group = S(group ? group : "");
	f.pub.one.body = S("x");
	f.pub.msgs = &f.pub.one;
	f.pub.nmsgs = 1;
	request(fd, &f, &code);
	return code;
}

static uint32_t
sub(int fd, const char *topic, int ephemeral)
{
	struct fy_frame f = {.type = FY_T_SUB};
	uint32_t code;

	f.sub.topic = S(topic);
	f.sub.ephemeral = (uint8_t)ephemeral;
	f.sub.mode = ephemeral ? FY_MODE_AMO : FY_MODE_ALO;
	request(fd, &f, &code);
	return code;
}

static uint32_t
query(int fd, int type, const char *topic)
{
	struct fy_frame f = {.type = type};
	uint32_t code;

	if (type == FY_T_DELETE)
		f.del.topic = S(topic);
	else if (type == FY_T_TRACE)
		f.query.id = S(topic);
	else
		f.query.topic = S(topic);
	request(fd, &f, &code);
	return code;
}

START_TEST(scram_accepted)
{
	int fd;

	ck_assert_int_eq(login("alice", "pencil", &fd), 0);
	ck_assert_uint_eq(pub(fd, "orders.created", NULL), 0);
	close(fd);
	ck_assert(ferryd_log_has(&d, "authenticated as \"alice\""));
}
END_TEST

/*
 * A wrong password and a user that does not exist get the same answer,
 * at the same step, after the same delay; the next failure from the same
 * address waits twice as long.
 */
START_TEST(wrong_password_and_unknown_user)
{
	uint64_t t0, wrong, unknown, again;
	int fd;

	t0 = now_ms();
	ck_assert_int_eq(login("alice", "pencil2", &fd), FY_E_DENIED);
	wrong = now_ms() - t0;
	/* A fresh broker, so the per-address count starts over. */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
	t0 = now_ms();
	ck_assert_int_eq(login("mallory", "pencil", &fd), FY_E_DENIED);
	unknown = now_ms() - t0;
	/* Both wait the first failure's delay (1 s), within noise. */
	ck_assert_uint_ge(wrong, 900);
	ck_assert_uint_ge(unknown, 900);
	ck_assert_msg(wrong < unknown + 300 && unknown < wrong + 300,
	    "wrong password %llu ms, unknown user %llu ms",
	    (unsigned long long)wrong, (unsigned long long)unknown);
	/* Slowed further: the second failure from 127.0.0.1 waits 2 s. */
	t0 = now_ms();
	ck_assert_int_eq(login("bob", "pencil", &fd), FY_E_DENIED);
	again = now_ms() - t0;
	ck_assert_uint_ge(again, 1900);
	ck_assert(ferryd_log_has(&d, "authentication failed for user "
	    "\"mallory\""));
	/* A right password still works, and resets the count. */
	ck_assert_int_eq(login("bob", "hunter2", &fd), 0);
	close(fd);
}
END_TEST

START_TEST(no_credentials_refused)
{
	struct fy_frame f = {.type = FY_T_HELLO, .rid = 3};
	int fd = raw_connect(d.port);

	f.hello.version = FY_PROTO_VERSION;
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_ERR);
	ck_assert_uint_eq(f.err.code, FY_E_DENIED);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);
}
END_TEST

/* Each bad exchange: an error and a closed connection, never a hang. */
START_TEST(malformed_exchanges)
{
	struct fy_frame f = {.type = FY_T_HELLO, .rid = 1};
	char big[12000];
	int fd;

	/* Garbage instead of client-first. */
	fd = raw_connect(d.port);
	f.hello.version = FY_PROTO_VERSION;
	f.hello.mech = S(FY_SCRAM_MECH);
	f.hello.sasl = S("hello there");
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_uint_eq(f.err.code, FY_E_HANDSHAKE);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);

	/* A huge user name. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "n,,n=", 5);
	memcpy(big + sizeof(big) - 6, ",r=abc", 6);
	fd = raw_connect(d.port);
	memset(&f, 0, sizeof(f));
	f.type = FY_T_HELLO;
	f.hello.version = FY_PROTO_VERSION;
	f.hello.mech = S(FY_SCRAM_MECH);
	f.hello.sasl = (struct fy_str){big, sizeof(big)};
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_uint_eq(f.err.code, FY_E_HANDSHAKE);
	close(fd);

	/* A frame above 64 KiB before the login: refused unread. */
	fd = raw_connect(d.port);
	raw_send(fd, "\x00\x01\x00\x01", 4);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_uint_eq(f.err.code, FY_E_TOOBIG);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);

	/* Another mechanism. */
	fd = raw_connect(d.port);
	memset(&f, 0, sizeof(f));
	f.type = FY_T_HELLO;
	f.hello.version = FY_PROTO_VERSION;
	f.hello.mech = S("PLAIN");
	f.hello.sasl = S("\x01" "alice\x01pencil");
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_uint_eq(f.err.code, FY_E_HANDSHAKE);
	close(fd);

	/* AUTH with no exchange. */
	fd = raw_connect(d.port);
	memset(&f, 0, sizeof(f));
	f.type = FY_T_AUTH;
	f.auth.sasl = S("c=biws,r=x,p=AAAA");
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_uint_eq(f.err.code, FY_E_HANDSHAKE);
	close(fd);
}
END_TEST

/* At most 16 logins under way from one address; the 17th is refused
 * at once, and a slot frees when a login ends. */
START_TEST(parallel_logins_bounded)
{
	struct fy_frame f;
	int fds[17], i, fd;

	for (i = 0; i < 17; i++) {
		fds[i] = raw_connect(d.port);
		memset(&f, 0, sizeof(f));
		f.type = FY_T_HELLO;
		f.hello.version = FY_PROTO_VERSION;
		f.hello.mech = S(FY_SCRAM_MECH);
		f.hello.sasl = S("n,,n=alice,r=abcdef");
		raw_send_frame(fds[i], &f);
		ck_assert_int_eq(raw_recv_frame(fds[i], &dec, &f, 5000), 1);
		ck_assert_int_eq(f.type, i < 16 ? FY_T_CHALLENGE : FY_T_ERR);
	}
	ck_assert_uint_eq(f.err.code, FY_E_LIMIT);
	close(fds[16]);
	for (i = 0; i < 16; i++)
		close(fds[i]);
	/* The broker frees the slots once it sees the closes: a login
	 * gets through within a bounded wait. */
	for (i = 0; i < 100; i++) {
		if (login("alice", "pencil", &fd) == 0)
			break;
		usleep(20000);
	}
	ck_assert_int_lt(i, 100);
	close(fd);
}
END_TEST

/* RFC 7677's client-final, replayed against our own challenge. */
START_TEST(replayed_proof_refused)
{
	struct fy_frame f = {.type = FY_T_HELLO, .rid = 1};
	int fd = raw_connect(d.port);

	f.hello.version = FY_PROTO_VERSION;
	f.hello.mech = S(FY_SCRAM_MECH);
	f.hello.sasl = S("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_CHALLENGE);
	memset(&f, 0, sizeof(f));
	f.type = FY_T_AUTH;
	f.auth.sasl = S("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)"
	    "hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_ERR);
	ck_assert_int_ne(f.err.code, 0);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);
}
END_TEST

/* A client that stops after the challenge meets the handshake timeout. */
START_TEST(abandoned_exchange_times_out)
{
	struct fy_frame f = {.type = FY_T_HELLO};
	int fd = raw_connect(d.port);
	uint64_t t0 = now_ms();

	f.hello.version = FY_PROTO_VERSION;
	f.hello.mech = S(FY_SCRAM_MECH);
	f.hello.sasl = S("n,,n=alice,r=abcdef");
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_CHALLENGE);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 10000), 1);
	ck_assert_int_eq(f.type, FY_T_ERR);
	ck_assert_uint_eq(f.err.code, FY_E_HANDSHAKE);
	ck_assert_uint_ge(now_ms() - t0, 2500);	/* handshake_timeout 3 */
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);
}
END_TEST

/* bob: pub orders.> but not orders.secret; sub orders.* only. */
START_TEST(acl_patterns)
{
	struct fy_frame f;
	int bob, alice;

	ck_assert_int_eq(login("bob", "hunter2", &bob), 0);
	ck_assert_int_eq(login("alice", "pencil", &alice), 0);
	ck_assert_uint_eq(pub(bob, "orders.created", NULL), 0);
	ck_assert_uint_eq(pub(bob, "orders.eu.created", NULL), 0);
	ck_assert_uint_eq(pub(bob, "orders.secret", NULL), FY_E_DENIED);
	ck_assert_uint_eq(pub(bob, "billing.paid", NULL), FY_E_DENIED);
	ck_assert_uint_eq(pub(bob, "orders", NULL), FY_E_DENIED);
	/* The same refusal again (cached) is still refused. */
	ck_assert_uint_eq(pub(bob, "orders.secret", NULL), FY_E_DENIED);
	ck_assert_uint_eq(sub(bob, "orders.created", 0), 0);
	ck_assert_uint_eq(sub(bob, "orders.eu.created", 0), FY_E_DENIED);
	ck_assert_uint_eq(sub(bob, "billing.paid", 0), FY_E_DENIED);
	/* The connection stays open and usable after a refusal. */
	ck_assert_uint_eq(pub(bob, "orders.created", NULL), 0);
	/* A refused SUB delivers nothing: alice publishes there, bob
	 * hears only what his allowed subscription gets: the two
	 * orders.created messages. */
	ck_assert_uint_eq(pub(alice, "billing.paid", NULL), 0);
	while (skipped < 2 && raw_recv_frame(bob, &dec, &f, 1000) == 1) {
		ck_assert_int_eq(f.type, FY_T_MSG);
		skipped++;
		snprintf(skipped_topic, sizeof(skipped_topic), "%.*s",
		    (int)f.msg.topic.len, f.msg.topic.p);
	}
	ck_assert_int_eq(skipped, 2);
	ck_assert_str_eq(skipped_topic, "orders.created");
	ck_assert_int_eq(raw_recv_frame(bob, &dec, &f, 300), -1);
	ck_assert(ferryd_log_has(&d, "E_DENIED: user \"bob\" may not "
	    "publish to \"orders.secret\""));
	close(bob);
	close(alice);
}
END_TEST

START_TEST(admin_only_operations)
{
	int bob, alice;

	ck_assert_int_eq(login("bob", "hunter2", &bob), 0);
	ck_assert_int_eq(login("alice", "pencil", &alice), 0);
	ck_assert_uint_eq(sub(alice, "orders.created", 0), 0);
	ck_assert_uint_eq(query(bob, FY_T_DELETE, "orders.created"),
	    FY_E_DENIED);
	ck_assert_uint_eq(query(bob, FY_T_STATS, ""), FY_E_DENIED);
	ck_assert_uint_eq(query(bob, FY_T_TRACE, "some-id"), FY_E_DENIED);
	ck_assert_uint_eq(pub(bob, "orders.created", "default"),
	    FY_E_DENIED);
	/* Inspecting a topic bob may read is his right. */
	ck_assert_uint_eq(query(bob, FY_T_STATS, "orders.created"), 0);
	ck_assert_uint_eq(query(bob, FY_T_INFLIGHT, "orders.created"), 0);
	ck_assert_uint_eq(query(bob, FY_T_STATS, "billing.paid"),
	    FY_E_DENIED);
	/* alice is an admin. */
	ck_assert_uint_eq(pub(alice, "orders.created", "default"), 0);
	ck_assert_uint_eq(query(alice, FY_T_STATS, ""), 0);
	ck_assert_uint_eq(query(alice, FY_T_DELETE, "orders.created"), 0);
	close(bob);
	close(alice);
}
END_TEST

/* A requester's inbox is its own; anyone may reply to it. */
START_TEST(inbox_own_connection)
{
	int bob, bob2, alice;

	ck_assert_int_eq(login("bob", "hunter2", &bob), 0);
	ck_assert_int_eq(login("bob", "hunter2", &bob2), 0);
	ck_assert_int_eq(login("alice", "pencil", &alice), 0);
	ck_assert_uint_eq(sub(bob, "_inbox.5f1e", 1), 0);
	ck_assert_uint_eq(sub(bob2, "_inbox.5f1e", 1), FY_E_DENIED);
	ck_assert_uint_eq(pub(bob2, "_inbox.5f1e", NULL), 0);
	/* Not a pattern hole: bob still may not subscribe elsewhere. */
	ck_assert_uint_eq(sub(bob2, "_inboxx", 1), FY_E_DENIED);
	close(bob);
	close(bob2);
	close(alice);
}
END_TEST

static void
write_file(const char *path, const char *text, mode_t mode)
{
	char tmp[400];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(tmp, mode), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
}

static char *
read_all(const char *path)
{
	static char buf[8192];
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* Wait (bounded) until ferryd's log has needle. */
static void
wait_log(const char *needle)
{
	uint64_t deadline = now_ms() + 5000;

	while (!ferryd_log_has(&d, needle) && now_ms() < deadline)
		usleep(10000);
	ck_assert_msg(ferryd_log_has(&d, needle), "log lacks: %s", needle);
}

START_TEST(reload_valid_and_invalid)
{
	int bob, fd;

	ck_assert_int_eq(login("bob", "hunter2", &bob), 0);
	ck_assert_uint_eq(pub(bob, "billing.paid", NULL), FY_E_DENIED);
	wait_log("may not publish to \"billing.paid\"\" topic=billing.paid "
	    "peer=127.0.0.1:");
	/* Give bob billing.> instead: his open connection gets it at
	 * its next operation, and loses orders.>. */
	ck_assert_int_eq(user_cmd(NULL, "del", "bob", NULL, NULL, NULL,
	    NULL), 0);
	ck_assert_int_eq(add_bob("billing.>"), 0);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	wait_log("reloaded");
	ck_assert_uint_eq(pub(bob, "billing.paid", NULL), 0);
	ck_assert_uint_eq(pub(bob, "orders.created", NULL), FY_E_DENIED);

	/* A broken file is refused, the old one kept. */
	write_file(users, "bob SCRAM-SHA-256$oops\n", 0600);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	wait_log("users_file not reloaded");
	ck_assert(ferryd_log_has(&d, ":1: invalid verifier for \"bob\""));
	ck_assert_uint_eq(pub(bob, "billing.paid", NULL), 0);
	/* So is one that others may read. */
	write_file(users, "carol -\n", 0644);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	wait_log("are too open");
	ck_assert_int_eq(login("alice", "pencil", &fd), 0);
	close(fd);
	close(bob);
}
END_TEST

/* Run ferryd expecting it to refuse to start; its stderr into log. */
static int
start_refused(const char *log, const char *listen, const char *users_file)
{
	char datadir[300];
	uint64_t deadline = now_ms() + 10000;
	int status = -1, fd;
	pid_t pid;

	snprintf(datadir, sizeof(datadir), "%s/data", udir);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 2);
		if (users_file)
			execl(getenv("FERRYD"), "ferryd", "--listen", listen,
			    "--port", "0", "--data-dir", datadir,
			    "--users-file", users_file, (char *)NULL);
		else
			execl(getenv("FERRYD"), "ferryd", "--listen", listen,
			    "--port", "0", "--data-dir", datadir,
			    (char *)NULL);
		_exit(127);
	}
	while (now_ms() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	ck_abort_msg("ferryd started when it should have refused");
	return -1;
}

START_TEST(startup_refused_without_auth)
{
	char log[300], users644[300];

	snprintf(log, sizeof(log), "%s/refused.log", udir);
	/* Never binds: the check comes before the listener. */
	ck_assert_int_ne(start_refused(log, "0.0.0.0", NULL), 0);
	ck_assert_ptr_nonnull(strstr(read_all(log), "refusing to listen on "
	    "0.0.0.0 without authentication"));
	snprintf(users644, sizeof(users644), "%s/users644", udir);
	write_file(users644, "carol -\n", 0644);
	ck_assert_int_ne(start_refused(log, "127.0.0.1", users644), 0);
	ck_assert_ptr_nonnull(strstr(read_all(log), "permissions 0644 are "
	    "too open"));
	unlink(users644);
	unlink(log);
}
END_TEST

/* The "anonymous" entry: clients without credentials get its rights. */
START_TEST(anonymous_entry)
{
	struct fy_frame f = {.type = FY_T_HELLO, .rid = 1};
	int fd;

	ck_assert_int_eq(user_cmd(NULL, "add", "anonymous", "--no-password",
	    "--subscribe", "public.>", NULL), 0);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	wait_log("reloaded");
	fd = raw_connect(d.port);
	f.hello.version = FY_PROTO_VERSION;
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_WELCOME);
	ck_assert_mem_eq(f.welcome.user.p, "anonymous", 9);
	ck_assert_uint_eq(sub(fd, "public.news", 0), 0);
	ck_assert_uint_eq(pub(fd, "public.news", NULL), FY_E_DENIED);
	close(fd);
	/* No password login as "anonymous": a fake verifier answers. */
	ck_assert_int_eq(login("anonymous", "", &fd), FY_E_DENIED);
}
END_TEST

/* libferry and the CLI log in, and say clearly when they cannot. */
START_TEST(client_login)
{
	struct ferry_opts o = {0};
	struct ferry *f;
	char url[64], pwfile[300], *out = NULL;
	FILE *fp;

	o.host = "127.0.0.1";
	o.port = d.port;
	o.timeout_ms = 10000;
	o.user = "bob";
	o.password = "hunter2";
	f = ferry_connect_opts(&o);
	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	ck_assert_str_eq(ferry_user(f), "bob");
	ck_assert_int_eq(ferry_publish_sync(f, "orders.created", "x", 1, NULL,
	    NULL), 0);
	ck_assert_int_eq(ferry_publish_sync(f, "billing.paid", "x", 1, NULL,
	    NULL),
	    FERRY_EDENIED);
	ck_assert_int_eq(ferry_err(f), 0);	/* still connected */
	ferry_close(f);

	o.password = "hunter3";
	f = ferry_connect_opts(&o);
	ck_assert_int_eq(ferry_err(f), FERRY_EDENIED);
	ck_assert_ptr_nonnull(strstr(ferry_errstr(f), "login refused: wrong "
	    "password or unknown user \"bob\""));
	ferry_close(f);

	/* The URL names user, host and port. */
	snprintf(url, sizeof(url), "ferry://alice@127.0.0.1:%d", d.port);
	memset(&o, 0, sizeof(o));
	o.url = url;
	o.password = "pencil";
	o.timeout_ms = 10000;
	f = ferry_connect_opts(&o);
	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	ck_assert_str_eq(ferry_user(f), "alice");
	ferry_close(f);
	o.url = "ferry://alice:pencil@127.0.0.1";
	f = ferry_connect_opts(&o);
	ck_assert_int_eq(ferry_err(f), FERRY_EINVAL);
	ferry_close(f);

	/* The CLI, with a password file. */
	snprintf(pwfile, sizeof(pwfile), "%s/pw", udir);
	fp = fopen(pwfile, "w");
	fputs("pencil\n", fp);
	fclose(fp);
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "--user",
	    "alice", "--password-file", pwfile, "ping", (char *)NULL), 0);
	free(out);
	ck_assert_int_eq(cli_run(d.port, NULL, NULL, 10000, "ping",
	    (char *)NULL), 1);
	ck_assert_int_eq(cli_run(d.port, NULL, NULL, 10000, "--user", "bob",
	    "--password-file", pwfile, "ping", (char *)NULL), 1);
	unlink(pwfile);
}
END_TEST

/* A file holding pw; its path in a static buffer (one at a time). */
static const char *
pw_file(const char *pw)
{
	static char path[300];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/pw", udir);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(pw, fp);
	ck_assert_int_eq(fclose(fp), 0);
	return path;
}

/* Wait (bounded) until the default group of topic has a member. */
static void
wait_member(struct ferry *admin, const char *topic)
{
	struct ferry_group_stats *rows;
	uint64_t deadline = now_ms() + 10000;
	size_t n, i;
	int members = 0;

	while (!members && now_ms() < deadline) {
		if (ferry_stats(admin, topic, &rows, &n) == 0) {
			for (i = 0; i < n; i++)
				if (strcmp(rows[i].group, "default") == 0)
					members = (int)rows[i].members;
			ferry_stats_free(rows);
		}
		if (!members)
			usleep(20000);
	}
	ck_assert_msg(members, "no responder joined %s", topic);
}

/*
 * `ferry reply` logs in like every other command: --user with
 * --password-file, and a URL's user with $FERRY_PASSWORD.  bob may
 * consume orders.* and reply to anyone's inbox; alice (admin) asks.
 */
START_TEST(reply_exec_logs_in)
{
	struct ferry_opts o = {0};
	struct ferry *alice;
	struct ferry_msg *m;
	struct proc p;
	char url[64], *out = NULL;
	int st;

	o.host = "127.0.0.1";
	o.port = d.port;
	o.timeout_ms = 10000;
	o.user = "alice";
	o.password = "pencil";
	alice = ferry_connect_opts(&o);
	ck_assert_msg(ferry_err(alice) == 0, "%s", ferry_errstr(alice));

	cli_spawn(&p, d.port, "--user", "bob", "--password-file",
	    pw_file("hunter2\n"), "reply", "orders.jobs", "--exec",
	    "tr a-z A-Z", "--count", "1", (char *)NULL);
	wait_member(alice, "orders.jobs");
	st = cli_run(d.port, NULL, &out, 15000, "--user", "alice",
	    "--password-file", pw_file("pencil\n"), "req", "orders.jobs",
	    "hello", "--timeout", "10", (char *)NULL);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "HELLO\n");
	free(out);
	ck_assert_int_eq(proc_wait(&p, 5000), 0);	/* --count 1 */

	/* The URL names the user; the environment gives the password. */
	snprintf(url, sizeof(url), "ferry://bob@127.0.0.1:%d", d.port);
	setenv("FERRY_PASSWORD", "hunter2", 1);
	cli_spawn(&p, d.port, "--url", url, "reply", "orders.jobs2",
	    "--exec", "tr a-z A-Z", "--count", "1", (char *)NULL);
	unsetenv("FERRY_PASSWORD");
	wait_member(alice, "orders.jobs2");
	ck_assert_int_eq(ferry_request(alice, "orders.jobs2", "abc", 3, NULL,
	    10000, &m), 0);
	ck_assert_uint_eq(m->len, 3);
	ck_assert_int_eq(memcmp(m->body, "ABC", 3), 0);
	ferry_msg_free(m);
	ck_assert_int_eq(proc_wait(&p, 5000), 0);

	/* A refused login is an error, not a hang. */
	cli_spawn(&p, d.port, "--user", "bob", "--password-file",
	    pw_file("wrong\n"), "reply", "orders.jobs", "--exec", "cat",
	    (char *)NULL);
	ck_assert_int_eq(proc_wait(&p, 20000), 1);
	unlink(pw_file(""));
	ferry_close(alice);
}
END_TEST

/* An unknown user's challenge looks like a real one: a 16-byte salt,
 * the same each time for the same name, and the iteration count most
 * users have (here, after adding three at 8192, 8192). */
START_TEST(unknown_user_challenge_looks_real)
{
	static const char *const who[] = {"alice", "carol", "mallory",
	    "mallory"};
	static const char *const more[] = {"carol", "dave", "erin"};
	char s1[4][FY_SCRAM_MSG_MAX], msg[FY_SCRAM_MSG_MAX];
	struct fy_frame f;
	int i, fd;

	for (i = 0; i < 3; i++)
		ck_assert_int_eq(cli_run(1, "pw\n", NULL, 10000, "user", "add",
		    more[i], "--iterations", "8192", "--file", users,
		    (char *)NULL), 0);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	wait_log("reloaded");
	for (i = 0; i < 4; i++) {
		fd = raw_connect(d.port);
		memset(&f, 0, sizeof(f));
		f.type = FY_T_HELLO;
		f.hello.version = FY_PROTO_VERSION;
		f.hello.mech = S(FY_SCRAM_MECH);
		snprintf(msg, sizeof(msg), "n,,n=%s,r=abcdef", who[i]);
		f.hello.sasl = S(msg);
		raw_send_frame(fd, &f);
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
		ck_assert_int_eq(f.type, FY_T_CHALLENGE);
		/* Keep ",s=SALT,i=ITER": the nonce differs every time. */
		snprintf(msg, sizeof(msg), "%.*s", (int)f.auth.sasl.len,
		    f.auth.sasl.p);
		ck_assert_ptr_nonnull(strstr(msg, ",s="));
		snprintf(s1[i], sizeof(s1[i]), "%s", strstr(msg, ",s="));
		close(fd);
	}
	for (i = 0; i < 4; i++)
		ck_assert_uint_eq(strlen(s1[i]), 3 + 24 + 7);
	ck_assert_str_eq(s1[0] + 27, ",i=4096");
	ck_assert_str_eq(s1[1] + 27, ",i=8192");
	ck_assert_str_eq(s1[2] + 27, ",i=8192");
	ck_assert_str_eq(s1[2], s1[3]);
	ck_assert_str_ne(s1[1], s1[2]);
}
END_TEST

static Suite *
security_suite(void)
{
	Suite *s = suite_create("security");
	TCase *tc;

	tc = tcase_create("login");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, scram_accepted);
	tcase_add_test(tc, wrong_password_and_unknown_user);
	tcase_add_test(tc, no_credentials_refused);
	tcase_add_test(tc, malformed_exchanges);
	tcase_add_test(tc, replayed_proof_refused);
	tcase_add_test(tc, parallel_logins_bounded);
	tcase_add_test(tc, abandoned_exchange_times_out);
	tcase_add_test(tc, client_login);
	suite_add_tcase(s, tc);

	tc = tcase_create("permissions");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, acl_patterns);
	tcase_add_test(tc, admin_only_operations);
	tcase_add_test(tc, inbox_own_connection);
	tcase_add_test(tc, reply_exec_logs_in);
	tcase_add_test(tc, anonymous_entry);
	tcase_add_test(tc, reload_valid_and_invalid);
	tcase_add_test(tc, unknown_user_challenge_looks_real);
	tcase_add_test(tc, startup_refused_without_auth);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(security_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
