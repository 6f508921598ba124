/*
 * test-tls.c - the TLS listener through a real ferryd and libferry:
 * a trusted CA is accepted; an untrusted CA and a wrong host name are
 * refused by the client; a client certificate logs in as its user
 * (mutual TLS), one from another CA is refused; plain bytes on the TLS
 * port and TLS on the plain port both fail cleanly; SIGHUP reloads the
 * certificate and keeps the old one when the new files are broken.
 * Certificates are made at test time with the openssl command.
 */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "ferry.h"
#include "harness.h"

static struct ferryd d;
static struct fy_dec dec;
static char cdir[256];
static int tls_port;

/* A CA, another CA, a server certificate for ferry.test and 127.0.0.1,
 * client certificates for alice (a user) and mallory (not one), and one
 * for alice signed by the other CA. */
static const char gen[] =
    "set -e; cd '%s'\n"
    "k='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    "openssl req -x509 $k -keyout ca.key -out ca.pem -days 2 "
    "-subj '/CN=ferry test CA'\n"
    "openssl req -x509 $k -keyout other.key -out other.pem -days 2 "
    "-subj '/CN=other CA'\n"
    "sign() { openssl req $k -keyout $1.key -out $1.csr -subj \"/CN=$2\";"
    " openssl x509 -req -in $1.csr -CA $3.pem -CAkey $3.key "
    "-CAcreateserial -out $1.pem -days 2 $4; }\n"
    "printf 'subjectAltName=DNS:ferry.test,IP:127.0.0.1\\n' > san.ext\n"
    "printf 'subjectAltName=DNS:renewed.test,IP:127.0.0.1\\n' > san2.ext\n"
    "sign server ferry.test ca '-extfile san.ext'\n"
    "sign renewed renewed.test ca '-extfile san2.ext'\n"
    "sign alice alice ca ''\n"
    "sign mallory mallory ca ''\n"
    "sign forged alice other ''\n"
    "echo pencil | \"$FERRY\" user add alice --admin --file users\n"
    "echo hunter2 | \"$FERRY\" user add bob --publish 'x.>' --file users\n"
    "echo oak | \"$FERRY\" user add worker --subscribe 'jobs.*' "
    "--file users\n";

static char *
path(const char *name)
{
	static char buf[8][300];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", cdir, name);
	return buf[i];
}

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");
	char cmd[4096], line[64];
	FILE *f;

	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	snprintf(cdir, sizeof(cdir), "%s/ferry-tls-XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(cdir));
	snprintf(cmd, sizeof(cmd), gen, cdir);
	strncat(cmd, " >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	ck_assert_msg(system(cmd) == 0, "making certificates failed "
	    "(is the openssl command installed?)");
	ferryd_start(&d, "--users-file", path("users"), "--tls-port", "0",
	    "--tls-cert", path("server.pem"), "--tls-key", path("server.key"),
	    "--tls-ca", path("ca.pem"), NULL);
	/* The port file's second line is the TLS port. */
	snprintf(cmd, sizeof(cmd), "%s/port", d.dir);
	f = fopen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	tls_port = atoi(line);
	ck_assert_int_gt(tls_port, 0);
	ck_assert_int_ne(tls_port, d.port);
}

static void
teardown(void)
{
	char cmd[400];

	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
	fy_dec_fini(&dec);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cdir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Connect over TLS; the handle, which may carry an error. */
static struct ferry *
tls_connect(const char *ca, const char *server_name, const char *user,
    const char *password, const char *cert)
{
	struct ferry_opts o = {0};
	char crt[300], key[300];

	o.host = "127.0.0.1";
	o.port = tls_port;
	o.timeout_ms = 10000;
	o.tls = 1;
	o.tls_ca = ca ? path(ca) : NULL;
	o.tls_server_name = server_name;
	o.user = user;
	o.password = password;
	if (cert != NULL) {
		snprintf(crt, sizeof(crt), "%s/%s.pem", cdir, cert);
		snprintf(key, sizeof(key), "%s/%s.key", cdir, cert);
		o.tls_cert = crt;
		o.tls_key = key;
	}
	return ferry_connect_opts(&o);
}

static void
assert_fails(struct ferry *f, int err, const char *text)
{
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(ferry_err(f), err);
	ck_assert_msg(strstr(ferry_errstr(f), text) != NULL, "%s",
	    ferry_errstr(f));
	ferry_close(f);
}

START_TEST(trusted_ca_accepted)
{
	struct ferry *f = tls_connect("ca.pem", NULL, "bob", "hunter2", NULL);

	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	ck_assert_str_eq(ferry_user(f), "bob");
	ck_assert_int_eq(ferry_publish_sync(f, "x.y", "over tls", 8, NULL,
	    NULL), 0);
	ck_assert_int_eq(ferry_publish_sync(f, "z", "no", 2, NULL, NULL),
	    FERRY_EDENIED);
	ferry_close(f);
	/* By the name in the certificate, too. */
	f = tls_connect("ca.pem", "ferry.test", "alice", "pencil", NULL);
	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	ck_assert_int_eq(ferry_ping(f), 0);
	ferry_close(f);
	ck_assert(ferryd_log_has(&d, "listening (TLS 1.2/1.3"));
}
END_TEST

START_TEST(untrusted_ca_refused)
{
	assert_fails(tls_connect("other.pem", NULL, "bob", "hunter2", NULL),
	    FERRY_ECONNECT, "certificate is not trusted");
}
END_TEST

START_TEST(wrong_host_name_refused)
{
	assert_fails(tls_connect("ca.pem", "broker.example", "bob", "hunter2",
	    NULL), FERRY_ECONNECT, "certificate is not for \"broker.example\"");
}
END_TEST

/* A client certificate whose CN is a user logs in as that user. */
START_TEST(mutual_tls_maps_user)
{
	struct ferry *f = tls_connect("ca.pem", NULL, NULL, NULL, "alice");

	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	ck_assert_str_eq(ferry_user(f), "alice");
	ck_assert_int_eq(ferry_publish_sync(f, "any.topic", "x", 1, NULL,
	    NULL), 0);
	ferry_close(f);
	ck_assert(ferryd_log_has(&d, "authenticated as \"alice\" by its TLS "
	    "client certificate"));
	/* A certificate whose name is no user: no anonymous entry, so no
	 * login at all. */
	assert_fails(tls_connect("ca.pem", NULL, NULL, NULL, "mallory"),
	    FERRY_EDENIED, "requires a login");
	/* "alice" signed by a CA the broker does not trust: the broker
	 * refuses the handshake. */
	f = tls_connect("ca.pem", NULL, NULL, NULL, "forged");
	ck_assert_int_ne(ferry_err(f), 0);
	ck_assert_str_ne(ferry_user(f), "alice");
	ferry_close(f);
}
END_TEST

/* A plain client on the TLS port gets no WELCOME, just a close. */
START_TEST(plaintext_on_tls_port_refused)
{
	struct fy_frame f = {.type = FY_T_HELLO};
	uint64_t deadline = now_ms() + 5000;
	char buf[4096];
	size_t got = 0;
	ssize_t n = 1;
	int fd = raw_connect(tls_port);

	f.hello.version = FY_PROTO_VERSION;
	raw_send_frame(fd, &f);
	while (n > 0 && now_ms() < deadline) {
		struct pollfd p = {fd, POLLIN, 0};

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(fd, buf + got, sizeof(buf) - got);
		if (n > 0)
			got += (size_t)n;
	}
	ck_assert_int_le(n, 0);		/* closed, not timed out */
	/* At most a TLS alert record (content type 21), never a frame. */
	ck_assert(got == 0 || (uint8_t)buf[0] == 0x15);
	close(fd);
	ck_assert(ferryd_log_has(&d, "TLS: error:"));
	/* And TLS on the plain port fails with a clear word. */
	{
		struct ferry_opts o = {0};
		struct ferry *h;

		o.host = "127.0.0.1";
		o.port = d.port;
		o.timeout_ms = 5000;
		o.tls_ca = path("ca.pem");
		h = ferry_connect_opts(&o);
		assert_fails(h, FERRY_ECONNECT, "is it a TLS port?");
	}
}
END_TEST

START_TEST(reload_certificate)
{
	char cmd[1024];
	struct ferry *f;

	/* Broken files: refused, the old certificate stays. */
	snprintf(cmd, sizeof(cmd), "cd '%s' && cp server.key keep.key && "
	    "echo junk > server.key", cdir);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	for (int i = 0; i < 500 && !ferryd_log_has(&d, "TLS certificate not "
	    "reloaded"); i++)
		usleep(10000);
	ck_assert(ferryd_log_has(&d, "TLS certificate not reloaded"));
	f = tls_connect("ca.pem", "ferry.test", "bob", "hunter2", NULL);
	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	/* A renewed certificate: new connections get it, this one stays. */
	snprintf(cmd, sizeof(cmd), "cd '%s' && cp renewed.pem server.pem && "
	    "cp renewed.key server.key", cdir);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	for (int i = 0; i < 500 && !ferryd_log_has(&d, "TLS certificate and "
	    "key reloaded"); i++)
		usleep(10000);
	ck_assert(ferryd_log_has(&d, "TLS certificate and key reloaded"));
	ck_assert_int_eq(ferry_ping(f), 0);
	ferry_close(f);
	assert_fails(tls_connect("ca.pem", "ferry.test", "bob", "hunter2",
	    NULL), FERRY_ECONNECT, "not for \"ferry.test\"");
	f = tls_connect("ca.pem", "renewed.test", "bob", "hunter2", NULL);
	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	ferry_close(f);
}
END_TEST

/* The CLI: --tls, --ca, --cert, --key, and ferrys:// URLs. */
START_TEST(cli_tls)
{
	char url[64], cert[300], key[300];

	snprintf(cert, sizeof(cert), "%s", path("alice.pem"));
	snprintf(key, sizeof(key), "%s", path("alice.key"));
	ck_assert_int_eq(cli_run(tls_port, NULL, NULL, 10000, "--ca",
	    path("ca.pem"), "--cert", cert, "--key", key, "ping",
	    (char *)NULL), 0);
	ck_assert_int_eq(cli_run(tls_port, NULL, NULL, 10000, "--ca",
	    path("other.pem"), "--cert", cert, "--key", key, "ping",
	    (char *)NULL), 1);
	setenv("FERRY_PASSWORD", "pencil", 1);
	/* cli_run passes --port; the URL's user, and TLS, remain. */
	snprintf(url, sizeof(url), "ferrys://alice@127.0.0.1:%d", tls_port);
	ck_assert_int_eq(cli_run(tls_port, NULL, NULL, 10000, "--url", url,
	    "--ca", path("ca.pem"), "ping", (char *)NULL), 0);
	unsetenv("FERRY_PASSWORD");
}
END_TEST

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

/* One request to topic through f; its reply must be want. */
static void
ask(struct ferry *f, const char *topic, const char *body, const char *want)
{
	struct ferry_msg *m;

	ck_assert_int_eq(ferry_request(f, topic, body, strlen(body), NULL,
	    10000, &m), 0);
	ck_assert_uint_eq(m->len, strlen(want));
	ck_assert_int_eq(memcmp(m->body, want, m->len), 0);
	ferry_msg_free(m);
}

/* `ferry reply` over TLS, as every command: with a password (worker may
 * only consume jobs.*), and with a client certificate. */
START_TEST(cli_reply_tls)
{
	char pw[300], cert[300], key[300];
	struct ferry *alice;
	struct proc p;
	FILE *fp;

	alice = tls_connect("ca.pem", NULL, "alice", "pencil", NULL);
	ck_assert_msg(ferry_err(alice) == 0, "%s", ferry_errstr(alice));
	snprintf(pw, sizeof(pw), "%s", path("worker.pw"));
	fp = fopen(pw, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("oak\n", fp);
	ck_assert_int_eq(fclose(fp), 0);
	cli_spawn(&p, tls_port, "--ca", path("ca.pem"), "--user", "worker",
	    "--password-file", pw, "reply", "jobs.up", "--exec",
	    "tr a-z A-Z", "--count", "1", (char *)NULL);
	wait_member(alice, "jobs.up");
	ask(alice, "jobs.up", "hello", "HELLO");
	ck_assert_int_eq(proc_wait(&p, 5000), 0);	/* --count 1 */

	snprintf(cert, sizeof(cert), "%s", path("alice.pem"));
	snprintf(key, sizeof(key), "%s", path("alice.key"));
	cli_spawn(&p, tls_port, "--tls", "--ca", path("ca.pem"), "--cert",
	    cert, "--key", key, "reply", "jobs.cert", "--exec", "tr a-z A-Z",
	    "--count", "1", (char *)NULL);
	wait_member(alice, "jobs.cert");
	ask(alice, "jobs.cert", "mtls", "MTLS");
	ck_assert_int_eq(proc_wait(&p, 5000), 0);
	ferry_close(alice);
}
END_TEST

/* port = -1: no plain listener; the port file says so, TLS still works. */
START_TEST(tls_only)
{
	char portfile[300], datadir[300], line[64], *a[] = {
	    (char *)getenv("FERRYD"), "--listen", "127.0.0.1", "--port", "-1",
	    "--port-file", portfile, "--data-dir", datadir, "--users-file",
	    path("users"), "--tls-port", "0", "--tls-cert", path("server.pem"),
	    "--tls-key", path("server.key"), NULL };
	uint64_t deadline = now_ms() + 10000;
	struct ferry_opts o = {0};
	struct ferry *f;
	int status, plain = 0, tls = 0, st, err;
	char why[FERRY_ERRSTR_LEN];
	FILE *fp;
	pid_t pid;

	snprintf(portfile, sizeof(portfile), "%s/only.port", cdir);
	snprintf(datadir, sizeof(datadir), "%s/only.data", cdir);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		freopen("/dev/null", "w", stderr);
		execv(a[0], a);
		_exit(127);
	}
	while (tls <= 0 && now_ms() < deadline &&
	    waitpid(pid, &status, WNOHANG) == 0) {
		if ((fp = fopen(portfile, "r")) != NULL) {
			if (fgets(line, sizeof(line), fp))
				plain = atoi(line);
			if (fgets(line, sizeof(line), fp))
				tls = atoi(line);
			fclose(fp);
		}
		usleep(10000);
	}
	o.host = "127.0.0.1";
	o.port = tls;
	o.timeout_ms = 10000;
	o.tls_ca = path("ca.pem");
	o.user = "bob";
	o.password = "hunter2";
	f = tls > 0 ? ferry_connect_opts(&o) : NULL;
	err = f ? ferry_err(f) : -1;
	snprintf(why, sizeof(why), "%s", f ? ferry_errstr(f) : "no port");
	ferry_close(f);
	/* Stopped before any assertion, so a failure leaves no daemon. */
	kill(pid, SIGTERM);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(plain, -1);
	ck_assert_int_gt(tls, 0);
	ck_assert_msg(err == 0, "%s", why);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
END_TEST

static int async_done, async_err = 1;

static void
async_pinged(struct ferry_async *a, int err, void *arg)
{
	async_err = err;
	async_done = 1;
	event_base_loopbreak(arg);
}

static void
async_status(struct ferry_async *a, int status, void *arg)
{
	if (status == FERRY_ASYNC_FAILED) {
		async_err = ferry_async_err(a);
		async_done = 1;
		event_base_loopbreak(arg);
	}
}

/* The asynchronous API: TLS and SCRAM in the event loop. */
static int
async_ping_url(const char *url, const char *ca, const char *password,
    char *why, size_t n)
{
	struct event_base *base = event_base_new();
	struct ferry_opts login = {0};
	struct ferry_async_opts o = {0};
	struct ferry_async *a;
	uint64_t deadline = now_ms() + 10000;

	/* A URL gives the host, port, user and TLS. */
	login.url = url;
	login.tls = url == NULL;
	login.tls_ca = path(ca);
	login.user = url ? NULL : "bob";
	login.password = password;
	o.login = &login;
	o.on_status = async_status;
	o.arg = base;
	async_done = 0;
	async_err = 1;
	a = ferry_async_connect(base, url ? NULL : "127.0.0.1",
	    url ? 0 : tls_port, &o);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(ferry_async_ping(a, async_pinged, base), 0);
	while (!async_done && now_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	snprintf(why, n, "%s", ferry_async_errstr(a));
	ferry_async_free(a);
	event_base_free(base);
	ck_assert_msg(async_done, "async ping never answered");
	return async_err;
}

static int
async_ping(const char *ca, const char *password, char *why, size_t n)
{
	return async_ping_url(NULL, ca, password, why, n);
}

START_TEST(async_tls_login)
{
	char why[256], url[64];

	ck_assert_msg(async_ping("ca.pem", "hunter2", why, sizeof(why)) == 0,
	    "%s", why);
	ck_assert_int_ne(async_ping("other.pem", "hunter2", why, sizeof(why)),
	    0);
	ck_assert_msg(strstr(why, "certificate is not trusted"), "%s", why);
	ck_assert_int_eq(async_ping("ca.pem", "wrong", why, sizeof(why)),
	    FERRY_EDENIED);
	snprintf(url, sizeof(url), "ferrys://bob@127.0.0.1:%d", tls_port);
	ck_assert_msg(async_ping_url(url, "ca.pem", "hunter2", why,
	    sizeof(why)) == 0, "%s", why);
	/* The URL's user: its password is refused. */
	snprintf(url, sizeof(url), "ferrys://alice@127.0.0.1:%d", tls_port);
	ck_assert_int_eq(async_ping_url(url, "ca.pem", "hunter2", why,
	    sizeof(why)), FERRY_EDENIED);
}
END_TEST

static Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, trusted_ca_accepted);
	tcase_add_test(tc, untrusted_ca_refused);
	tcase_add_test(tc, wrong_host_name_refused);
	tcase_add_test(tc, mutual_tls_maps_user);
	tcase_add_test(tc, plaintext_on_tls_port_refused);
	tcase_add_test(tc, reload_certificate);
	tcase_add_test(tc, cli_tls);
	tcase_add_test(tc, cli_reply_tls);
	tcase_add_test(tc, tls_only);
	tcase_add_test(tc, async_tls_login);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(tls_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
