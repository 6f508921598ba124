/*
 * harness.c - process control and raw protocol helpers for integration
 * tests.  Everything is bounded in time; every child is killed by PID.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *
env_path(const char *name)
{
	const char *p = getenv(name);

	if (!p || !*p)
		ck_abort_msg("%s is not set (run the tests with meson test)",
		    name);
	return p;
}

static void
spawn_ferryd(struct ferryd *d)
{
	char portfile[300], datadir[300];
	char *argv[48];
	int n = 0, fd;
	uint64_t deadline;
	FILE *f;

	snprintf(portfile, sizeof(portfile), "%s/port", d->dir);
	snprintf(datadir, sizeof(datadir), "%s/data", d->dir);
	unlink(portfile);
	argv[n++] = (char *)env_path("FERRYD");
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = portfile;
	argv[n++] = "--data-dir";
	argv[n++] = datadir;
	/* Stop at SIGTERM without draining (ferryd_stop() waits 10 s), as
	 * tests holding deliveries expect; test-drain passes its own, and a
	 * later argument wins. */
	argv[n++] = "--drain-timeout";
	argv[n++] = "0";
	for (int i = 0; i < d->nargs; i++)
		argv[n++] = d->args[i];
	argv[n] = NULL;

	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		fd = open("/dev/null", O_RDWR);
		dup2(fd, 0);
		dup2(fd, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	deadline = now_ms() + 10000;
	d->port = 0;
	while (now_ms() < deadline) {
		int status;

		if ((f = fopen(portfile, "r"))) {
			if (fscanf(f, "%d", &d->port) != 1)
				d->port = 0;
			fclose(f);
			if (d->port > 0)
				return;
		}
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			ck_abort_msg("ferryd exited at start-up (see %s)",
			    d->log);
		}
		usleep(5000);
	}
	ferryd_kill(d);
	ck_abort_msg("ferryd did not report its port within 10 s");
}

void
ferryd_vprepare(struct ferryd *d, va_list ap)
{
	const char *tmp = getenv("TMPDIR");
	char *a;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "%s/ferry-test-XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	snprintf(d->log, sizeof(d->log), "%s/ferryd.log", d->dir);
	while ((a = va_arg(ap, char *)) && d->nargs < 30)
		d->args[d->nargs++] = a;
}

void
ferryd_start(struct ferryd *d, ...)
{
	va_list ap;

	va_start(ap, d);
	ferryd_vprepare(d, ap);
	va_end(ap);
	spawn_ferryd(d);
}

void
ferryd_restart(struct ferryd *d)
{
	ck_assert_int_eq(d->pid, 0);
	spawn_ferryd(d);
}

static int
wait_exit(pid_t pid, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	int status;

	while (now_ms() < deadline) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) :
			    -WTERMSIG(status) - 1000;
		if (r < 0)
			return -1;
		usleep(2000);
	}
	return -2;
}

int
ferryd_stop(struct ferryd *d)
{
	int st;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	st = wait_exit(d->pid, 10000);
	if (st == -2) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		st = -1;
	}
	d->pid = 0;
	return st;
}

void
ferryd_kill(struct ferryd *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
}

void
ferryd_cleanup(struct ferryd *d)
{
	char cmd[300];

	ferryd_kill(d);
	if (!d->dir[0])
		return;
	/* Keep the directory of a failed test for its log. */
	if (getenv("FERRY_KEEP_TEST_DIRS"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", d->dir);
	d->dir[0] = '\0';
}

int
ferryd_log_has(const struct ferryd *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	char line[4096], *p, *q;
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		if ((found = strstr(line, needle) != NULL))
			break;
		/* logfmt quotes a message with '"' and '\\' escaped:
		 * needles are message text, so compare unescaped too */
		for (p = q = line; *p; p++, q++) {
			if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
				p++;
			*q = *p;
		}
		*q = '\0';
		found = strstr(line, needle) != NULL;
	}
	fclose(f);
	return found;
}

static pid_t
spawn_cli(int port, int in_fd, int out_fd, va_list ap)
{
	char portstr[16], *argv[64];
	int n = 0;
	char *a;
	pid_t pid;

	snprintf(portstr, sizeof(portstr), "%d", port);
	argv[n++] = (char *)env_path("FERRY");
	argv[n++] = "--port";
	argv[n++] = portstr;
	while ((a = va_arg(ap, char *)) && n < 62)
		argv[n++] = a;
	argv[n] = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(in_fd, 0);
		dup2(out_fd, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static void
append(char **buf, size_t *len, const char *p, size_t n)
{
	*buf = realloc(*buf, *len + n + 1);
	ck_assert_ptr_nonnull(*buf);
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
}

int
cli_run(int port, const char *stdin_data, char **out, int timeout_ms, ...)
{
	int inp[2], outp[2], st;
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	size_t off = 0, inlen = stdin_data ? strlen(stdin_data) : 0;
	char *buf = NULL;
	size_t len = 0;
	va_list ap;
	pid_t pid;

	ck_assert_int_eq(pipe2(inp, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(outp, O_CLOEXEC), 0);
	va_start(ap, timeout_ms);
	pid = spawn_cli(port, inp[0], outp[1], ap);
	va_end(ap);
	close(inp[0]);
	close(outp[1]);
	fcntl(inp[1], F_SETFL, O_NONBLOCK);
	if (!inlen) {
		close(inp[1]);
		inp[1] = -1;
	}
	append(&buf, &len, "", 0);
	for (;;) {
		struct pollfd pf[2] = {{outp[0], POLLIN, 0},
		    {inp[1], POLLOUT, 0}};
		int wait = (int)(deadline > now_ms() ? deadline - now_ms() : 0);
		char tmp[65536];
		ssize_t r;

		if (wait == 0)
			break;
		if (poll(pf, inp[1] >= 0 ? 2 : 1, wait) < 0 && errno != EINTR)
			break;
		if (inp[1] >= 0 && (pf[1].revents & (POLLOUT | POLLERR))) {
			r = write(inp[1], stdin_data + off, inlen - off);
			if (r > 0)
				off += (size_t)r;
			if (r < 0 || off == inlen) {
				close(inp[1]);
				inp[1] = -1;
			}
		}
		if (pf[0].revents & (POLLIN | POLLHUP)) {
			r = read(outp[0], tmp, sizeof(tmp));
			if (r <= 0)
				break;
			append(&buf, &len, tmp, (size_t)r);
		}
	}
	if (inp[1] >= 0)
		close(inp[1]);
	close(outp[0]);
	st = wait_exit(pid, (int)(deadline > now_ms() ?
	    deadline - now_ms() : 0) + 100);
	if (st == -2) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		st = -1;
	} else if (st < -1) {
		st = -1;
	}
	if (out)
		*out = buf;
	else
		free(buf);
	return st;
}

void
cli_spawn(struct proc *p, int port, ...)
{
	int outp[2], nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	va_list ap;

	ck_assert_int_ge(nul, 0);
	ck_assert_int_eq(pipe2(outp, O_CLOEXEC), 0);
	va_start(ap, port);
	p->pid = spawn_cli(port, nul, outp[1], ap);
	va_end(ap);
	close(nul);
	close(outp[1]);
	p->out = outp[0];
}

int
proc_read_lines(struct proc *p, char **buf, size_t *len, int n,
    int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	int lines = 0;

	if (!*buf)
		append(buf, len, "", 0);
	for (size_t i = 0; i < *len; i++)
		lines += (*buf)[i] == '\n';
	while (lines < n && p->out >= 0 && now_ms() < deadline) {
		struct pollfd pf = {p->out, POLLIN, 0};
		char tmp[4096];
		ssize_t r;

		if (poll(&pf, 1, (int)(deadline - now_ms())) <= 0)
			continue;
		r = read(p->out, tmp, sizeof(tmp));
		if (r <= 0) {
			close(p->out);
			p->out = -1;
			break;
		}
		append(buf, len, tmp, (size_t)r);
		for (ssize_t i = 0; i < r; i++)
			lines += tmp[i] == '\n';
	}
	return lines;
}

void
proc_signal(struct proc *p, int sig)
{
	if (p->pid > 0)
		kill(p->pid, sig);
}

int
proc_kill(struct proc *p)
{
	int status = 0;

	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, &status, 0);
		p->pid = 0;
	}
	if (p->out >= 0) {
		close(p->out);
		p->out = -1;
	}
	return status;
}

int
proc_wait(struct proc *p, int timeout_ms)
{
	int st;

	if (p->pid <= 0)
		return -1;
	st = wait_exit(p->pid, timeout_ms);
	if (st == -2) {
		proc_kill(p);
		return -1;
	}
	p->pid = 0;
	return st < -1 ? -1 : st;
}

int
raw_connect(int port)
{
	struct sockaddr_in sa = {0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	ck_assert_int_ge(fd, 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	    "connect to port %d: %s", port, strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

void
raw_send(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len) {
		ssize_t r = send(fd, c, len, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;	/* peer closed: the test reads the result */
		c += r;
		len -= (size_t)r;
	}
}

void
raw_send_frame(int fd, const struct fy_frame *f)
{
	struct fy_enc e;

	fy_enc_init(&e);
	ck_assert_int_eq(fy_encode(&e, f), FY_OK);
	raw_send(fd, e.sb.data, e.sb.size);
	fy_enc_fini(&e);
}

/* Read exactly len bytes by the deadline: 1, 0 on EOF, -1 on timeout. */
static int
read_full(int fd, uint8_t *p, size_t len, uint64_t deadline)
{
	while (len) {
		struct pollfd pf = {fd, POLLIN, 0};
		uint64_t now = now_ms();
		ssize_t r;

		if (now >= deadline)
			return -1;
		if (poll(&pf, 1, (int)(deadline - now)) <= 0)
			continue;
		r = recv(fd, p, len, 0);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return 0;
		if (r < 0)
			continue;
		p += r;
		len -= (size_t)r;
	}
	return 1;
}

int
raw_recv_frame(int fd, struct fy_dec *dec, struct fy_frame *f,
    int timeout_ms)
{
	static uint8_t *buf;
	static size_t cap;
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	uint8_t hdr[FY_HDR_LEN];
	size_t need;
	int r;

	if ((r = read_full(fd, hdr, sizeof(hdr), deadline)) != 1)
		return r;
	ck_assert_int_eq(fy_frame_need(hdr, sizeof(hdr), &need), FY_OK);
	need -= FY_HDR_LEN;
	if (need > cap) {
		buf = realloc(buf, need);
		ck_assert_ptr_nonnull(buf);
		cap = need;
	}
	if ((r = read_full(fd, buf, need, deadline)) != 1)
		return r;
	memset(f, 0, sizeof(*f));
	ck_assert_int_eq(fy_decode(dec, buf, need, f, NULL), FY_OK);
	return 1;
}

int
raw_hello(int port, struct fy_dec *dec)
{
	struct fy_frame f = {.type = FY_T_HELLO};
	int fd = raw_connect(port);

	f.hello.version = FY_PROTO_VERSION;
	f.hello.name = (struct fy_str){"raw", 3};
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_WELCOME);
	return fd;
}

int
count_lines(const char *text, const char *line)
{
	size_t n = strlen(line);
	int count = 0;

	for (const char *p = text; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len == n && !memcmp(p, line, n))
			count++;
		p = nl ? nl + 1 : p + len;
	}
	return count;
}

long
proc_status_kb(pid_t pid, const char *field)
{
	size_t flen = strlen(field);
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	ck_assert_msg((f = fopen(path, "r")) != NULL, "%s: %s", path,
	    strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, flen) && line[flen] == ':' &&
		    sscanf(line + flen + 1, "%ld", &kb) == 1)
			break;
	fclose(f);
	ck_assert_msg(kb >= 0, "no %s in %s", field, path);
	return kb;
}
