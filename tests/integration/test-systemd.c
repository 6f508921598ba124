/*
 * test-systemd.c - ferryd under systemd's protocols, without systemd: the
 * notify datagrams (READY, WATCHDOG, STATUS, STOPPING) captured on our own
 * NOTIFY_SOCKET, the watchdog going quiet while the loop is stopped
 * (SIGSTOP), and socket activation through systemd-socket-activate
 * (Debian package "systemd").
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness-extra.h"
#include "harness.h"

static struct ferryd d;
static int nfd = -1;			/* our NOTIFY_SOCKET */
static char npath[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void
setup(void)
{
	memset(&d, 0, sizeof(d));
}

static void
teardown(void)
{
	if (d.pid > 0)
		ferryd_kill(&d);
	ferryd_cleanup(&d);
	if (nfd >= 0)
		close(nfd);
	nfd = -1;
}

/* The next datagram within ms, NUL-terminated in buf; 0 if none came. */
static int
recv_notify(char *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = nfd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return 0;
	n = recv(nfd, buf, len - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	return 1;
}

/* Wait up to ms for a datagram containing needle; 1 if one came. */
static int
wait_notify(const char *needle, char *buf, size_t len, int ms)
{
	uint64_t t0 = now_ms();

	while (now_ms() - t0 < (uint64_t)ms)
		if (recv_notify(buf, len, 50) && strstr(buf, needle))
			return 1;
	return 0;
}

/* Datagrams arriving within ms. */
static int
count_notify(int ms)
{
	uint64_t t0 = now_ms();
	char buf[512];
	int n = 0;

	while (now_ms() - t0 < (uint64_t)ms)
		n += recv_notify(buf, sizeof(buf), 20);
	return n;
}

/*
 * READY=1 once it serves; WATCHDOG=1 with a STATUS= line every half
 * WATCHDOG_USEC; none while the loop is stopped, so systemd would restart
 * it; STOPPING=1 on SIGTERM, and a clean exit.
 */
START_TEST(notify_and_watchdog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char env_sock[160 + sizeof(npath)], env_wd[64], buf[512];
	char *env[] = { env_sock, env_wd, NULL };
	struct ferry *p;
	int n;

	ferryd_prepare(&d, NULL);
	/* sun_path is short: the check makes the compiler see the bound */
	ck_assert_uint_lt(strlen(d.dir) + sizeof("/notify"), sizeof(npath));
	memcpy(npath, d.dir, strlen(d.dir));
	memcpy(npath + strlen(d.dir), "/notify", sizeof("/notify"));
	memcpy(sa.sun_path, npath, sizeof(npath));
	ck_assert_int_ge(nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0),
	    0);
	ck_assert_int_eq(bind(nfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(env_sock, sizeof(env_sock), "NOTIFY_SOCKET=%s", npath);
	snprintf(env_wd, sizeof(env_wd), "WATCHDOG_USEC=300000");
	ck_assert_int_eq(ferryd_try_start(&d, NULL, env), 0);

	ck_assert(wait_notify("READY=1", buf, sizeof(buf), 5000));
	ck_assert(wait_notify("WATCHDOG=1", buf, sizeof(buf), 1000));
	ck_assert_msg(strstr(buf, "STATUS=0 connections, 0 messages pending")
	    != NULL, "got: %s", buf);

	/* what STATUS says follows the broker */
	p = fc_connect(d.port, "producer");
	ck_assert_int_eq(ferry_unsubscribe(p, fc_sub(p, "sd.jobs", "workers",
	    1, 0, 0)), 0);
	fc_pub_n(p, "sd.jobs", 3);
	ck_assert_msg(wait_notify("STATUS=1 connections, 3 messages pending",
	    buf, sizeof(buf), 2000), "last: %s", buf);

	/* every 150 ms: some 6 a second */
	n = count_notify(1000);
	ck_assert_msg(n >= 4 && n <= 9, "%d watchdog pings in 1 s", n);

	/* a stopped loop pings no more: systemd would restart it */
	ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
	count_notify(100);	/* one may have been on its way */
	ck_assert_int_eq(count_notify(700), 0);
	ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
	ck_assert(wait_notify("WATCHDOG=1", buf, sizeof(buf), 1000));

	ferry_close(p);
	ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
	ck_assert(wait_notify("STOPPING=1", buf, sizeof(buf), 5000));
	ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

/* A free TCP port on 127.0.0.1 (free when asked: the test binds it
 * through systemd-socket-activate right after). */
static int
free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/*
 * systemd-socket-activate binds the port and execs ferryd, in the same
 * process, on the first connection: ferryd serves on the socket it was
 * given (its own --listen/--port ignored), reports that port, and stops
 * cleanly.
 */
START_TEST(socket_activation)
{
	static const char tool[] = "/usr/bin/systemd-socket-activate";
	const char *ferryd = getenv("FERRYD");
	char addr[32], data[300], portfile[300], log[300];
	struct ferry *c, *p;
	struct ferry_msg *m;
	int port = free_port(), st, got = 0;
	uint64_t t0;
	pid_t pid;

	ck_assert_msg(access(tool, X_OK) == 0, "%s is missing (Debian "
	    "package systemd)", tool);
	ck_assert_ptr_nonnull(ferryd);
	ferryd_prepare(&d, NULL);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(data, sizeof(data), "%s/data", d.dir);
	snprintf(portfile, sizeof(portfile), "%s/activated-port", d.dir);
	snprintf(log, sizeof(log), "%s/activated.log", d.dir);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execl(tool, tool, "-l", addr, ferryd, "--listen", "127.0.0.1",
		    "--port", "1", "--port-file", portfile, "--data-dir",
		    data, (char *)NULL);
		_exit(127);
	}
	/* bounded: the tool needs a moment to bind */
	for (t0 = now_ms(); now_ms() - t0 < 5000; usleep(20000)) {
		c = ferry_connect("127.0.0.1", port, 2000, "worker");
		if (c && ferry_err(c) == 0)
			break;
		if (c)
			ferry_close(c);
		c = NULL;
	}
	ck_assert_msg(c != NULL, "no broker on %s (see %s)", addr, log);
	fc_sub(c, "sa.jobs", NULL, 4, 0, 0);
	p = fc_connect(port, "producer");
	fc_pub_n(p, "sa.jobs", 3);
	for (int i = 0; i < 3; i++) {
		m = fc_next(c, 5000);
		ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
		got++;
	}
	ck_assert_int_eq(got, 3);
	{
		FILE *f = fopen(portfile, "r");
		int reported = 0;

		ck_assert_ptr_nonnull(f);
		ck_assert_int_eq(fscanf(f, "%d", &reported), 1);
		fclose(f);
		ck_assert_int_eq(reported, port);
	}
	ferry_close(c);
	ferry_close(p);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	for (t0 = now_ms(); now_ms() - t0 < 10000; usleep(20000))
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
	if (now_ms() - t0 >= 10000) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		ck_abort_msg("ferryd did not stop on SIGTERM");
	}
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d",
	    st);
}
END_TEST

/* Wait (bounded) until ferryd's log has needle. */
static int
log_waits_for(const char *needle, int ms)
{
	uint64_t t0 = now_ms();

	while (now_ms() - t0 < (uint64_t)ms) {
		if (ferryd_log_has(&d, needle))
			return 1;
		usleep(20000);
	}
	return 0;
}

/* Lines of ferryd's log that contain needle. */
static int
log_count(const char *needle)
{
	FILE *f = fopen(d.log, "r");
	char line[4096];
	int n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* `ferry user add NAME --file users` with password pw; exit status. */
static int
user_add(const char *users, const char *name, const char *pw)
{
	return cli_run(1, pw, NULL, 10000, "user", "add", name, "--file",
	    users, (char *)NULL);
}

/*
 * SIGHUP takes log_level from the config file again: debug lines appear
 * without a restart, and go again.  The lines are logfmt, with topic=,
 * group= and peer= fields where they concern one.  One handler
 * reloads everything: the same signal reloads users_file (a new user can
 * log in), with one "received SIGHUP" line.
 */
START_TEST(sighup_log_level)
{
	char conf[300], users[300], pwf[300], *out = NULL;
	struct ferry *f;
	FILE *fp;

	ferryd_prepare(&d, NULL);
	snprintf(conf, sizeof(conf), "%s/ferryd.conf", d.dir);
	snprintf(users, sizeof(users), "%s/users", d.dir);
	snprintf(pwf, sizeof(pwf), "%s/carol.pw", d.dir);
	ck_assert_ptr_nonnull(fp = fopen(conf, "w"));
	fputs("log_level = info\n", fp);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_ptr_nonnull(fp = fopen(pwf, "w"));
	fputs("s3cret\n", fp);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_int_eq(cli_run(1, NULL, NULL, 10000, "user", "add",
	    "anonymous", "--file", users, "--no-password", "--publish", ">",
	    "--subscribe", ">", (char *)NULL), 0);
	d.args[d.nargs++] = "--config";
	d.args[d.nargs++] = conf;
	d.args[d.nargs++] = "--users-file";
	d.args[d.nargs++] = users;
	ck_assert_int_eq(ferryd_try_start(&d, NULL, NULL), 0);
	ck_assert_int_ne(cli_run(d.port, NULL, &out, 10000, "--user", "carol",
	    "--password-file", pwf, "ping", (char *)NULL), 0);
	free(out);
	out = NULL;
	ck_assert_int_eq(user_add(users, "carol", "s3cret\n"), 0);
	ferry_close(fc_connect(d.port, "quiet"));
	ck_assert(ferryd_log_has(&d, " level=info msg=\"ferryd "));
	ck_assert(!ferryd_log_has(&d, "level=debug"));

	ck_assert_ptr_nonnull(fp = fopen(conf, "w"));
	fputs("log_level = debug\n", fp);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	ck_assert(log_waits_for("SIGHUP: log_level is now debug", 5000));
	ck_assert(log_waits_for("reloaded", 5000));
	ck_assert_int_eq(cli_run(d.port, NULL, &out, 10000, "--user", "carol",
	    "--password-file", pwf, "ping", (char *)NULL), 0);
	free(out);
	out = NULL;
	ck_assert_int_eq(log_count("received SIGHUP"), 1);
	ck_assert_int_eq(log_count("received SIGHUP: reloading log_level, "
	    "users_file and the TLS certificate"), 1);
	f = fc_connect(d.port, "chatty");
	ck_assert_int_eq(ferry_ping(f), 0);
	ferry_close(f);
	ck_assert(log_waits_for("level=debug msg=\"chatty: disconnected\" "
	    "peer=127.0.0.1:", 5000));
	/* lines about a topic, group or peer carry them as fields */
	f = fc_connect(d.port, "fields");
	fc_sub(f, "kv.t", "kv-g", 1, 0, 0);
	ck_assert(log_waits_for("msg=\"group kv.t/kv-g created\" topic=kv.t "
	    "group=kv-g", 5000));
	ck_assert(log_waits_for("subscribed to kv.t/kv-g as sid 1\" "
	    "topic=kv.t group=kv-g peer=127.0.0.1:", 5000));
	ferry_close(f);

	ck_assert_ptr_nonnull(fp = fopen(conf, "w"));
	fputs("log_level = info\n", fp);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	/* Not "log_level info": the first SIGHUP's "info -> debug" has
	 * that too, so the wait would not wait. */
	ck_assert(log_waits_for("SIGHUP: log_level is now info", 5000));
	ferry_close(fc_connect(d.port, "quiet-again"));
	usleep(200000);
	ck_assert(!ferryd_log_has(&d, "quiet-again"));
	ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

static Suite *
systemd_suite(void)
{
	Suite *s = suite_create("systemd");
	TCase *t = tcase_create("protocols");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 60);
	tcase_add_test(t, notify_and_watchdog);
	tcase_add_test(t, socket_activation);
	tcase_add_test(t, sighup_log_level);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(systemd_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
