/*
 * reply.c - `ferry reply TOPIC --exec CMD`: a responder on libferry's
 * asynchronous API.
 *
 * One request at a time (prefetch 1).  While CMD runs, the event loop
 * keeps the connection alive and TOUCHes the request's lease every third
 * of its ack timeout, so a command slower than the lease is still
 * answered once, not redelivered to another responder meanwhile.  CMD's
 * output is read from a pipe and its exit noticed with SIGCHLD, both as
 * events of the same loop: nothing blocks while it runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "cliargs.h"
#include "ferry.h"
#include "reply.h"

#define ACK_TIMEOUT_MS 30000	/* the lease asked for by default */

const char reply_usage[] =
"usage: ferry reply TOPIC --exec CMD [--group G] [--count N]\n"
"                   [--ack-timeout SECONDS]\n"
"\n"
"Answer requests sent to TOPIC: for each, run CMD with /bin/sh -c, the\n"
"request's body on its standard input; what CMD writes to its standard\n"
"output is the reply.  The request is acked once the reply is published.\n"
"If CMD fails (exit status not 0, or killed), no reply is sent and the\n"
"request is nacked with \"exit status N\" as its error, to be redelivered.\n"
"A message that asks for no reply is acked after CMD succeeds.  While CMD\n"
"runs, the request's lease is extended (TOUCH) every third of the ack\n"
"timeout, so CMD may take longer than it.  Runs until interrupted\n"
"(SIGINT, SIGTERM: exit 0 after the current request).\n"
"\n"
"  --exec CMD             the command answering each request (required)\n"
"  --group G              join group G (default: the topic's default group)\n"
"  --count N              exit after N requests\n"
"  --ack-timeout SECONDS  the lease of each request (default 30)\n";

/* The request being answered. */
struct job {
	struct ferry_msg *m;	/* owned (ferry_msg_dup()) */
	pid_t pid;		/* of CMD; 0 once reaped */
	int out;		/* read end of CMD's stdout; -1 at EOF */
	struct event *outev;
	char *buf;		/* CMD's output so far; owned */
	size_t len, cap;
	int oom;		/* output lost for want of memory */
	int status;		/* CMD's wait status, once reaped */
	int lease_lost;		/* a touch was refused */
};

struct responder {
	struct event_base *base;
	struct ferry_async *a;
	const char *topic, *cmd;
	uint64_t sid;
	unsigned long long count, got;
	struct timeval touch_every;
	struct event *touch, *sigchld, *sigint, *sigterm;
	struct job job;
	int busy;		/* a request is in hand */
	struct ferry_msg *waiting;	/* delivered while busy: owned */
	int stopping;		/* a signal came, or --count is reached */
	int status;		/* exit status */
};

static void
on_unsubscribed(struct ferry_async *a, int err, void *arg)
{
	struct responder *r = arg;

	if (err != 0 && err != FERRY_EDELETED) {
		cli_warn("unsubscribe: %s", ferry_strerror(err));
		r->status = 1;
	}
	event_base_loopbreak(r->base);
}

/* Leave: the subscription's unsettled deliveries go back at once. */
static void
shut_down(struct responder *r)
{
	r->stopping = 1;
	if (ferry_async_unsubscribe(r->a, r->sid, on_unsubscribed, r) < 0)
		event_base_loopbreak(r->base);
}

static void
job_free(struct responder *r)
{
	struct job *j = &r->job;

	if (j->outev != NULL)
		event_free(j->outev);
	if (j->out >= 0)
		close(j->out);
	ferry_msg_free(j->m);
	free(j->buf);
	memset(j, 0, sizeof(*j));
	j->out = -1;
	r->busy = 0;
}

/* The request is settled (or could not be): on to the next. */
static void job_begin(struct responder *r, struct ferry_msg *m);

static void
on_settled(struct ferry_async *a, int err, void *arg)
{
	struct responder *r = arg;
	struct ferry_msg *next = r->waiting;

	if (err != 0)
		cli_warn("request %s: not settled: %s", r->job.m->id,
		    ferry_async_errstr(a));
	job_free(r);
	r->got++;
	r->waiting = NULL;
	if (r->stopping || (r->count && r->got >= r->count)) {
		ferry_msg_free(next);	/* released by the unsubscribe */
		shut_down(r);
	} else if (next != NULL) {
		job_begin(r, next);
	}
}

static void
nack(struct responder *r, const char *why)
{
	struct ferry_msg *m = r->job.m;

	if (ferry_async_nack(r->a, m->sid, m->lease, -1, why, on_settled,
	    r) < 0)
		on_settled(r->a, ferry_async_err(r->a), r);
}

static void
ack(struct responder *r)
{
	struct ferry_msg *m = r->job.m;

	if (ferry_async_ack(r->a, m->sid, m->lease, on_settled, r) < 0)
		on_settled(r->a, ferry_async_err(r->a), r);
}

static void
on_replied(struct ferry_async *a, const struct ferry_confirm *c, void *arg)
{
	struct responder *r = arg;

	/* Answered, or nobody to answer: done either way; anything else:
	 * let it come back. */
	if (c->err == 0 || c->err == FERRY_ENOSUBSCRIBERS) {
		if (c->err)
			cli_warn("request %s: the requester is gone",
			    r->job.m->id);
		ack(r);
		return;
	}
	cli_warn("request %s: reply not sent: %s", r->job.m->id, c->errmsg);
	nack(r, c->errmsg);
}

/* CMD is done and its output read: answer and settle. */
static void
job_done(struct responder *r)
{
	struct job *j = &r->job;
	char why[64];
	int st = j->status;

	evtimer_del(r->touch);
	if (j->oom) {
		cli_warn("request %s: out of memory reading the output",
		    j->m->id);
		nack(r, "out of memory");
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (WIFEXITED(st))
			snprintf(why, sizeof(why), "exit status %d",
			    WEXITSTATUS(st));
		else
			snprintf(why, sizeof(why), "killed by signal %d",
			    WTERMSIG(st));
		cli_warn("request %s: command failed: %s", j->m->id, why);
		nack(r, why);
	} else if (j->m->reply_to[0] == '\0') {
		cli_warn("message %s asks for no reply", j->m->id);
		ack(r);
	} else if (ferry_async_reply(r->a, j->m, j->buf, j->len, on_replied,
	    r) < 0) {
		cli_warn("request %s: reply not sent: %s", j->m->id,
		    ferry_async_errstr(r->a));
		nack(r, ferry_async_errstr(r->a));
	}
}

static void
on_output(evutil_socket_t fd, short what, void *arg)
{
	struct responder *r = arg;
	struct job *j = &r->job;
	char sink[4096], *nb;
	ssize_t k;

	for (;;) {
		if (!j->oom && j->len == j->cap) {
			nb = realloc(j->buf, j->cap ? j->cap * 2 : 4096);
			if (nb == NULL) {
				j->oom = 1;	/* drain, report at the end */
			} else {
				j->buf = nb;
				j->cap = j->cap ? j->cap * 2 : 4096;
			}
		}
		if (j->oom)
			k = read(fd, sink, sizeof(sink));
		else
			k = read(fd, j->buf + j->len, j->cap - j->len);
		if (k > 0 && !j->oom)
			j->len += (size_t)k;
		if (k > 0)
			continue;
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		break;		/* EOF, or an error: no more output */
	}
	event_free(j->outev);
	j->outev = NULL;
	close(j->out);
	j->out = -1;
	if (j->pid == 0)
		job_done(r);
}

static void
on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	struct responder *r = arg;
	struct job *j = &r->job;
	int st;

	if (!r->busy || j->pid == 0)
		return;
	if (waitpid(j->pid, &st, WNOHANG) != j->pid)
		return;
	j->pid = 0;
	j->status = st;
	if (j->out < 0)
		job_done(r);
}

static void
on_touched(struct ferry_async *a, int err, void *arg)
{
	struct responder *r = arg;

	if (err == 0 || !r->busy || r->job.lease_lost)
		return;
	r->job.lease_lost = 1;
	cli_warn("request %s: lease not extended (%s): it may be answered "
	    "twice", r->job.m->id, ferry_strerror(err));
}

static void
on_touch_timer(evutil_socket_t fd, short what, void *arg)
{
	struct responder *r = arg;
	struct ferry_msg *m = r->job.m;

	if (r->busy && r->job.pid != 0 && ferry_async_touch(r->a, m->sid,
	    m->lease, on_touched, r) < 0)
		cli_warn("request %s: cannot extend its lease: %s", m->id,
		    ferry_async_errstr(r->a));
}

/*
 * Start CMD with the request's body on its stdin (through a file, so that
 * a command that does not read its stdin cannot block us while we read
 * its stdout).  0, or -1 with errno.
 */
static int
job_start(struct responder *r)
{
	struct job *j = &r->job;
	int pfd[2], saved;
	FILE *tf;
	pid_t pid;

	if ((tf = tmpfile()) == NULL)
		return -1;
	if ((j->m->len && fwrite(j->m->body, 1, j->m->len, tf) !=
	    j->m->len) || fflush(tf) != 0 || fseek(tf, 0, SEEK_SET) != 0 ||
	    pipe2(pfd, O_CLOEXEC) < 0) {
		saved = errno;
		fclose(tf);
		errno = saved;
		return -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		saved = errno;
		fclose(tf);
		close(pfd[0]);
		close(pfd[1]);
		errno = saved;
		return -1;
	}
	if (pid == 0) {
		if (dup2(fileno(tf), 0) < 0 || dup2(pfd[1], 1) < 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", r->cmd, (char *)NULL);
		_exit(127);
	}
	fclose(tf);
	close(pfd[1]);
	fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
	j->pid = pid;
	j->out = pfd[0];
	j->outev = event_new(r->base, pfd[0], EV_READ | EV_PERSIST,
	    on_output, r);
	if (j->outev == NULL || event_add(j->outev, NULL) < 0) {
		/* The loop cannot watch it: let it finish, then fail. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		j->pid = 0;
		errno = ENOMEM;
		return -1;
	}
	/* It may have exited before SIGCHLD was ours to see: ask now. */
	on_sigchld(SIGCHLD, EV_SIGNAL, r);
	return 0;
}

/* Answer m (owned from now on). */
static void
job_begin(struct responder *r, struct ferry_msg *m)
{
	char why[96];

	r->job.m = m;
	r->busy = 1;
	if (job_start(r) < 0) {
		snprintf(why, sizeof(why), "cannot run command: %s",
		    strerror(errno));
		cli_warn("%s", why);
		nack(r, why);
		return;
	}
	evtimer_add(r->touch, &r->touch_every);
}

static void
on_request(struct ferry_async *a, const struct ferry_msg *m, void *arg)
{
	struct responder *r = arg;
	struct ferry_msg *c;

	if (r->stopping)
		return;	/* unsettled: released by the unsubscribe */
	if ((c = ferry_msg_dup(m)) == NULL) {
		cli_warn("out of memory");
		ferry_async_nack(a, m->sid, m->lease, -1, "out of memory",
		    NULL, NULL);
		return;
	}
	/*
	 * The broker gives the credit back when it gets our ack, but
	 * answers a confirmed ack only once it is durable: the next request
	 * can come first.  It waits for the ack's answer.  With prefetch 1
	 * there is never a third.
	 */
	if (r->busy && r->waiting == NULL) {
		r->waiting = c;
		return;
	}
	if (r->busy) {
		ferry_async_nack(a, c->sid, c->lease, 0, "busy", NULL, NULL);
		ferry_msg_free(c);
		return;
	}
	job_begin(r, c);
}

static void
on_subscribed(struct ferry_async *a, int err, void *arg)
{
	struct responder *r = arg;

	/* A dead connection is on_status()'s to report. */
	if (err == 0 || ferry_async_err(a))
		return;
	cli_warn("subscribe to %s: %s", r->topic, ferry_async_errstr(a));
	r->status = 1;
	event_base_loopbreak(r->base);
}

static void
on_status(struct ferry_async *a, int st, void *arg)
{
	struct responder *r = arg;

	if (st != FERRY_ASYNC_FAILED)
		return;
	cli_warn("%s", ferry_async_errstr(a));
	r->status = 1;
	event_base_loopbreak(r->base);
}

static void
on_error(struct ferry_async *a, const struct ferry_async_error *e,
    void *arg)
{
	struct responder *r = arg;

	cli_warn("broker: %s: %s", ferry_strerror(e->err), e->msg);
	if (e->err == FERRY_EDELETED) {
		r->status = 1;
		event_base_loopbreak(r->base);
	}
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct responder *r = arg;

	if (r->stopping)
		return;
	r->stopping = 1;
	if (!r->busy)
		shut_down(r);	/* else after the current request */
}

int
reply_main(const char *host, int port, int timeout_ms, int argc,
    char **argv)
{
	static const struct option opts[] = {
		{ "exec", required_argument, NULL, 'e' },
		{ "group", required_argument, NULL, 'g' },
		{ "count", required_argument, NULL, 'c' },
		{ "ack-timeout", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ferry_async_opts ao;
	struct ferry_opts login;
	struct ferry_sub_opts so;
	struct responder r;
	char name[64];
	int ch, touch_ms;

	cli_command = "reply";
	memset(&r, 0, sizeof(r));
	memset(&so, 0, sizeof(so));
	r.job.out = -1;
	so.ack_timeout_ms = ACK_TIMEOUT_MS;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'e':
			r.cmd = optarg;
			break;
		case 'g':
			so.group = optarg;
			break;
		case 'c':
			r.count = cli_parse_num("--count", optarg, 1,
			    ULLONG_MAX);
			break;
		case 'a':
			so.ack_timeout_ms = (uint32_t)cli_parse_seconds(
			    "--ack-timeout", optarg, 0.03, 86400);
			break;
		case 'h':
			fputs(reply_usage, stdout);
			return 0;
		default:
			cli_usage_error("bad option");
		}
	}
	if (optind >= argc)
		cli_usage_error("missing TOPIC");
	r.topic = argv[optind++];
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (r.cmd == NULL)
		cli_usage_error("missing --exec CMD");
	/* One at a time: the others stay with the group for other
	 * responders. */
	so.prefetch = 1;
	touch_ms = (int)so.ack_timeout_ms / 3;
	r.touch_every.tv_sec = touch_ms / 1000;
	r.touch_every.tv_usec = (touch_ms % 1000) * 1000;

	if ((r.base = event_base_new()) == NULL) {
		cli_warn("cannot create an event loop");
		return 1;
	}
	r.touch = event_new(r.base, -1, EV_PERSIST, on_touch_timer, &r);
	r.sigchld = evsignal_new(r.base, SIGCHLD, on_sigchld, &r);
	r.sigint = evsignal_new(r.base, SIGINT, on_stop_signal, &r);
	r.sigterm = evsignal_new(r.base, SIGTERM, on_stop_signal, &r);
	if (r.touch == NULL || r.sigchld == NULL || r.sigint == NULL ||
	    r.sigterm == NULL || event_add(r.sigchld, NULL) < 0 ||
	    event_add(r.sigint, NULL) < 0 || event_add(r.sigterm, NULL) < 0) {
		cli_warn("cannot set up the event loop");
		r.status = 1;
		goto out;
	}
	memset(&ao, 0, sizeof(ao));
	snprintf(name, sizeof(name), "ferry-reply-%ld", (long)getpid());
	/* The URL, login and TLS every other command honours. */
	cli_opts(&login, host, port, timeout_ms, name);
	ao.login = &login;
	ao.name = name;
	ao.timeout_ms = timeout_ms;
	ao.on_status = on_status;
	ao.on_error = on_error;
	ao.arg = &r;
	r.a = ferry_async_connect(r.base, login.host, login.port, &ao);
	if (r.a == NULL || ferry_async_err(r.a)) {
		cli_warn("%s", ferry_async_errstr(r.a));
		r.status = 1;
		goto out;
	}
	if (ferry_async_subscribe(r.a, r.topic, &so, on_request,
	    on_subscribed, &r, &r.sid) < 0) {
		cli_warn("subscribe to %s: %s", r.topic, ferry_async_errstr(r.a));
		r.status = 1;
		goto out;
	}
	event_base_dispatch(r.base);
out:
	if (r.busy) {
		if (r.job.pid > 0) {
			kill(r.job.pid, SIGTERM);
			waitpid(r.job.pid, NULL, 0);
		}
		job_free(&r);
	}
	ferry_msg_free(r.waiting);
	ferry_async_free(r.a);
	if (r.touch != NULL)
		event_free(r.touch);
	if (r.sigchld != NULL)
		event_free(r.sigchld);
	if (r.sigint != NULL)
		event_free(r.sigint);
	if (r.sigterm != NULL)
		event_free(r.sigterm);
	event_base_free(r.base);
	return r.status;
}
