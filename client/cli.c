/*
 * cli.c - the ferry command-line tool, built on ferry.h alone.
 *
 * Exit status: 0 success, 1 failure (with a message on stderr), 2 usage
 * error.  Bodies go to stdout, everything else to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"

#define EXIT_USAGE 2
#define PUB_WINDOW 1000		/* unconfirmed publishes kept in flight */
#define SLICE_MS 200		/* how often a waiting sub checks signals */

struct global {
	const char *host;
	int port;
	int timeout_ms;		/* connect and reply timeout */
};

static const char usage_main[] =
"usage: ferry [--host H] [--port P] [--timeout SECONDS] COMMAND [ARGS]\n"
"\n"
"Global options (before the command):\n"
"  --host H           broker host (default $FERRY_HOST or 127.0.0.1)\n"
"  --port P           broker port (default $FERRY_PORT or 4470)\n"
"  --timeout SECONDS  connect and reply timeout (default 5)\n"
"  --help             this text\n"
"\n"
"Commands:\n"
"  pub TOPIC [BODY...]  publish messages (confirmed)\n"
"  sub TOPIC            print delivered messages and ack them\n"
"  del TOPIC            delete a topic or one of its groups\n"
"  ping                 round trip to the broker\n"
"\n"
"'ferry COMMAND --help' describes a command.\n";

static const char usage_pub[] =
"usage: ferry pub TOPIC [BODY...] [--header K=V]... [--id ID] [--batch N]\n"
"\n"
"Publish one message per BODY argument or, with none, one per line of\n"
"standard input (the newline is not part of the body).  Every publish is\n"
"confirmed by the broker; up to 1000 are kept in flight.  Exits 0 only\n"
"if every message was confirmed.\n"
"\n"
"  --header K=V  add a header to every message (repeatable)\n"
"  --id ID       message id, for the broker's dedup (same for all)\n"
"  --batch N     send N messages per frame (default 1); the broker\n"
"                refuses a frame as a whole\n";

static const char usage_sub[] =
"usage: ferry sub TOPIC [OPTIONS]\n"
"\n"
"Print each delivered body on its own line, then ack it.  Runs until\n"
"interrupted (SIGINT, SIGTERM: exit 0) unless --count or --timeout.\n"
"Exits 1 if the broker refused an ack or nack (e.g. a stale lease).\n"
"\n"
"  --group G           join group G (default: the topic's default group)\n"
"  --ephemeral         a private group, deleted when ferry exits\n"
"  --count N           exit 0 after N messages\n"
"  --timeout SECONDS   exit 1 after SECONDS without a message\n"
"  --prefetch N        max unacked deliveries (default: min(N, 1000)\n"
"                      with --count, else 64)\n"
"  --ack-timeout SECONDS  lease length (group creation; default broker's)\n"
"  --max-attempts N    deliveries before dead-lettering (group creation)\n"
"  --no-ack            at-most-once: the broker settles on delivery\n"
"  --nack              nack each message instead of acking it\n"
"  --nack-delay MS     with --nack: redeliver after MS ms (default:\n"
"                      the broker's exponential backoff)\n"
"  --headers           before each body, print its metadata to stderr:\n"
"                        id=ID topic=T attempt=N ts=MS sid=S lease=L\n"
"                        hdr KEY=VALUE            (one line per header)\n"
"                        hist cause=C by=NAME at=MS error=TEXT\n"
"                                                 (dead letters only)\n";

static const char usage_del[] =
"usage: ferry del TOPIC [--group G]\n"
"\n"
"Delete group G of TOPIC, or without --group the topic and all its\n"
"groups, with every message they hold.\n";

static const char usage_ping[] =
"usage: ferry ping\n"
"\n"
"Measure one round trip to the broker.\n";

static volatile sig_atomic_t stop;

__attribute__((format(printf, 1, 2)))
static void
warnf(const char *fmt, ...)
{
	va_list ap;

	fputs("ferry: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

__attribute__((format(printf, 1, 2), noreturn))
static void
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("ferry: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'ferry --help' or 'ferry COMMAND --help'.\n", stderr);
	exit(EXIT_USAGE);
}

static void
on_signal(int sig)
{
	stop = 1;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A whole decimal number in [min, max], or a usage error. */
static unsigned long long
parse_num(const char *opt, const char *s, unsigned long long min,
    unsigned long long max)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (*s == '-' || *s == '\0')
		usage_error("%s: invalid number '%s'", opt, s);
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		usage_error("%s: '%s' is not a number in %llu..%llu", opt, s,
		    min, max);
	return v;
}

/* Seconds, possibly fractional, as milliseconds (at least 1). */
static int
parse_seconds(const char *opt, const char *s)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !isfinite(v) || v <= 0 ||
	    v > INT_MAX / 1000)
		usage_error("%s: '%s' is not a positive number of seconds",
		    opt, s);
	return v * 1000 < 1 ? 1 : (int)(v * 1000);
}

static struct ferry *
open_conn(const struct global *g, const char *cmd)
{
	char name[64];
	struct ferry *f;

	snprintf(name, sizeof(name), "ferry-%s-%ld", cmd, (long)getpid());
	f = ferry_connect(g->host, g->port, g->timeout_ms, name);
	if (f == NULL) {
		warnf("out of memory");
		exit(1);
	}
	if (ferry_err(f)) {
		warnf("%s", ferry_errstr(f));
		ferry_close(f);
		exit(1);
	}
	return f;
}

/* Report async errors left on the handle; 1 if there were any. */
static int
drain_errors(struct ferry *f)
{
	struct ferry_async_error e;
	int any = 0;

	while (ferry_poll_error(f, &e)) {
		if (e.dropped)
			warnf("%" PRIu64 " more errors not shown", e.dropped);
		warnf("broker: %s: %s", ferry_strerror(e.err), e.msg);
		any = 1;
	}
	return any;
}

/* --- pub ------------------------------------------------------------- */

struct pubstate {
	/* rid -> index of the first message it carried, to name failures;
	 * a slot is reused after PUB_WINDOW * 4 requests. */
	struct {
		uint64_t rid;
		size_t idx;
	} map[PUB_WINDOW * 4];
	size_t reported;
};

static void
pub_record(struct pubstate *ps, uint64_t rid, size_t idx)
{
	ps->map[rid % (PUB_WINDOW * 4)].rid = rid;
	ps->map[rid % (PUB_WINDOW * 4)].idx = idx;
}

static void
pub_confirm(void *arg, const struct ferry_confirm *c)
{
	struct pubstate *ps = arg;
	size_t slot = c->rid % (PUB_WINDOW * 4);

	/* A lost connection fails all in flight: main reports it once. */
	if (c->err == 0 || c->err <= FERRY_EIO)
		return;
	if (++ps->reported > 20) {
		if (ps->reported == 21)
			warnf("(further failures not shown)");
		return;
	}
	if (ps->map[slot].rid != c->rid)
		warnf("%zu message(s) not published: %s", c->nmsgs,
		    c->errmsg[0] ? c->errmsg : ferry_strerror(c->err));
	else if (c->nmsgs == 1)
		warnf("message %zu not published: %s", ps->map[slot].idx + 1,
		    c->errmsg[0] ? c->errmsg : ferry_strerror(c->err));
	else
		warnf("messages %zu-%zu not published: %s",
		    ps->map[slot].idx + 1, ps->map[slot].idx + c->nmsgs,
		    c->errmsg[0] ? c->errmsg : ferry_strerror(c->err));
}

/* The input: BODY arguments, or lines of stdin. */
struct source {
	char **args;
	int nargs, next;
	char *line;
	size_t cap;
};

/* Next body; 1 if one, 0 at the end, -1 on a read error. */
static int
source_next(struct source *s, const char **body, size_t *len)
{
	ssize_t n;

	if (s->args != NULL) {
		if (s->next == s->nargs)
			return 0;
		*body = s->args[s->next];
		*len = strlen(s->args[s->next++]);
		return 1;
	}
	n = getline(&s->line, &s->cap, stdin);
	if (n < 0)
		return ferror(stdin) ? -1 : 0;
	if (n > 0 && s->line[n - 1] == '\n')
		n--;
	*body = s->line;
	*len = (size_t)n;
	return 1;
}

/* Bodies of one batch, copied because the source reuses its buffer. */
struct batch {
	struct ferry_pub_msg *msgs;
	size_t *off;
	size_t n, cap;
	char *data;
	size_t used, dcap;
};

static int
batch_add(struct batch *b, const char *body, size_t len)
{
	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 64;
		void *m = realloc(b->msgs, ncap * sizeof(*b->msgs));

		if (m == NULL)
			return -1;
		b->msgs = m;
		m = realloc(b->off, ncap * sizeof(*b->off));
		if (m == NULL)
			return -1;
		b->off = m;
		b->cap = ncap;
	}
	if (b->used + len > b->dcap) {
		size_t ncap = b->dcap ? b->dcap : 4096;
		char *d;

		while (ncap < b->used + len)
			ncap *= 2;
		d = realloc(b->data, ncap);
		if (d == NULL)
			return -1;
		b->data = d;
		b->dcap = ncap;
	}
	if (len)
		memcpy(b->data + b->used, body, len);
	b->off[b->n] = b->used;
	memset(&b->msgs[b->n], 0, sizeof(b->msgs[b->n]));
	b->msgs[b->n].len = len;
	b->used += len;
	b->n++;
	return 0;
}

static int
cmd_pub(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "header", required_argument, NULL, 'H' },
		{ "id", required_argument, NULL, 'i' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct pubstate ps;
	struct ferry_header *hdr = NULL;
	struct ferry_pub_opts po;
	struct ferry_confirms c;
	struct batch b;
	struct source src;
	const char *topic, *id = NULL, *body;
	size_t nhdr = 0, batch = 1, sent = 0, ok = 0, failed = 0, len, i;
	struct ferry *f;
	int ch, r = 0, rs, status;
	uint64_t rid;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'H': {
			char *eq = strchr(optarg, '=');
			void *nh;

			if (eq == NULL || eq == optarg)
				usage_error("--header: expected KEY=VALUE, "
				    "got '%s'", optarg);
			*eq = '\0';
			nh = realloc(hdr, (nhdr + 1) * sizeof(*hdr));
			if (nh == NULL) {
				warnf("out of memory");
				return 1;
			}
			hdr = nh;
			hdr[nhdr].key = optarg;
			hdr[nhdr++].value = eq + 1;
			break;
		}
		case 'i':
			id = optarg;
			break;
		case 'b':
			batch = parse_num("--batch", optarg, 1, 1000000);
			break;
		case 'h':
			fputs(usage_pub, stdout);
			return 0;
		default:
			usage_error("pub: bad option");
		}
	}
	if (optind >= argc)
		usage_error("pub: missing TOPIC");
	topic = argv[optind++];
	memset(&src, 0, sizeof(src));
	if (optind < argc) {
		src.args = argv + optind;
		src.nargs = argc - optind;
	}
	memset(&po, 0, sizeof(po));
	po.id = id;
	po.hdr = hdr;
	po.nhdr = nhdr;
	memset(&b, 0, sizeof(b));

	f = open_conn(g, "pub");
	ferry_set_confirm_cb(f, pub_confirm, &ps);
	for (;;) {
		rs = source_next(&src, &body, &len);
		if (rs < 0) {
			warnf("stdin: %s", strerror(errno));
			r = -1;
			break;
		}
		if (batch == 1 && rs > 0) {
			r = ferry_publish_pipelined(f, topic, body, len, &po,
			    &rid);
			if (r < 0)
				break;
			pub_record(&ps, rid, sent++);
		} else if (rs > 0) {
			if (batch_add(&b, body, len) < 0) {
				warnf("out of memory");
				r = -1;
				break;
			}
		}
		if (batch > 1 && (b.n == batch || (rs == 0 && b.n > 0))) {
			for (i = 0; i < b.n; i++) {
				b.msgs[i].body = b.data + b.off[i];
				b.msgs[i].id = id;
				b.msgs[i].hdr = hdr;
				b.msgs[i].nhdr = nhdr;
			}
			/* Failures of batches are reported by count: the
			 * API does not say how it split them into frames. */
			r = ferry_publish_batch(f, topic, b.msgs, b.n,
			    FERRY_CONFIRM);
			if (r < 0)
				break;
			sent += b.n;
			b.n = 0;
			b.used = 0;
		}
		if (rs == 0)
			break;
		if (ferry_pending(f) >= PUB_WINDOW) {
			r = ferry_wait_confirms(f, PUB_WINDOW / 2,
			    g->timeout_ms, &c);
			ok += c.ok;
			failed += c.failed;
			if (r < 0)
				break;
		}
	}
	if (r < 0 && !ferry_err(f) && r != FERRY_ETIMEOUT)
		warnf("message %zu not published: %s", sent + 1,
		    ferry_errstr(f));
	/* Collect what is in flight, even after a local error. */
	if (r != FERRY_ETIMEOUT && !ferry_err(f)) {
		rs = ferry_wait_confirms(f, 0, g->timeout_ms, &c);
		ok += c.ok;
		failed += c.failed;
		if (rs < 0 && r == 0)
			r = rs;
	}
	if (r == FERRY_ETIMEOUT || ferry_err(f))
		warnf("%s", ferry_errstr(f));
	if (drain_errors(f) && r == 0)
		r = -1;
	status = r == 0 && failed == 0 && ok == sent ? 0 : 1;
	if (status != 0 && sent > 0)
		warnf("%zu of %zu messages confirmed", ok, sent);
	ferry_close(f);
	free(hdr);
	free(b.msgs);
	free(b.off);
	free(b.data);
	free(src.line);
	return status;
}

/* --- sub ------------------------------------------------------------- */

static void
print_meta(const struct ferry_msg *m)
{
	size_t i;

	fprintf(stderr, "id=%s topic=%s attempt=%" PRIu32 " ts=%" PRIu64
	    " sid=%" PRIu64 " lease=%" PRIu64 "\n", m->id, m->topic,
	    m->attempt, m->ts_ms, m->sid, m->lease);
	for (i = 0; i < m->nhdr; i++)
		fprintf(stderr, "hdr %s=%s\n", m->hdr[i].key,
		    m->hdr[i].value);
	for (i = 0; i < m->nhist; i++)
		fprintf(stderr, "hist cause=%s by=%s at=%" PRIu64
		    " error=%s\n", m->hist[i].cause, m->hist[i].consumer,
		    m->hist[i].at_ms, m->hist[i].error);
}

static int
cmd_sub(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "count", required_argument, NULL, 'c' },
		{ "prefetch", required_argument, NULL, 'p' },
		{ "ack-timeout", required_argument, NULL, 'a' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "no-ack", no_argument, NULL, 'N' },
		{ "nack", no_argument, NULL, 'n' },
		{ "nack-delay", required_argument, NULL, 'd' },
		{ "ephemeral", no_argument, NULL, 'e' },
		{ "headers", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ferry_sub_opts so;
	struct sigaction sa;
	struct ferry_msg *m;
	const char *topic;
	unsigned long long count = 0;
	int64_t nack_delay = -1, deadline = 0;
	int ch, r, no_ack = 0, nack = 0, headers = 0, timeout_ms = 0;
	int status = 0, refused = 0, have_prefetch = 0, wait;
	unsigned long long got = 0;
	struct ferry *f;
	uint64_t sid;

	memset(&so, 0, sizeof(so));
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'g':
			so.group = optarg;
			break;
		case 'c':
			count = parse_num("--count", optarg, 1, ULLONG_MAX);
			break;
		case 'p':
			so.prefetch = (uint32_t)parse_num("--prefetch", optarg,
			    1, UINT32_MAX);
			have_prefetch = 1;
			break;
		case 'a':
			so.ack_timeout_ms = (uint32_t)parse_seconds(
			    "--ack-timeout", optarg);
			break;
		case 'm':
			so.max_attempts = (uint32_t)parse_num("--max-attempts",
			    optarg, 1, UINT32_MAX);
			break;
		case 't':
			timeout_ms = parse_seconds("--timeout", optarg);
			break;
		case 'N':
			no_ack = 1;
			break;
		case 'n':
			nack = 1;
			break;
		case 'd':
			nack_delay = (int64_t)parse_num("--nack-delay", optarg,
			    0, INT64_MAX);
			break;
		case 'e':
			so.ephemeral = 1;
			break;
		case 'v':
			headers = 1;
			break;
		case 'h':
			fputs(usage_sub, stdout);
			return 0;
		default:
			usage_error("sub: bad option");
		}
	}
	if (optind >= argc)
		usage_error("sub: missing TOPIC");
	topic = argv[optind++];
	if (optind < argc)
		usage_error("sub: unexpected argument '%s'", argv[optind]);
	if (no_ack && nack)
		usage_error("sub: --no-ack and --nack exclude each other");
	if (nack_delay >= 0 && !nack)
		usage_error("sub: --nack-delay needs --nack");
	if (so.ephemeral && so.group != NULL)
		usage_error("sub: --ephemeral and --group exclude each other");
	if (!have_prefetch)
		so.prefetch = count ? (count < 1000 ? (uint32_t)count : 1000) :
		    64;
	so.mode = no_ack ? FERRY_AT_MOST_ONCE : FERRY_AT_LEAST_ONCE;

	/* No SA_RESTART needed: the library retries EINTR, and we look at
	 * stop between waits of at most SLICE_MS. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	f = open_conn(g, "sub");
	r = ferry_subscribe(f, topic, &so, &sid);
	if (r < 0) {
		warnf("subscribe to %s: %s", topic, ferry_errstr(f));
		ferry_close(f);
		return 1;
	}
	if (timeout_ms)
		deadline = now_ms() + timeout_ms;
	while (!stop && (count == 0 || got < count)) {
		wait = SLICE_MS;
		if (timeout_ms) {
			int64_t left = deadline - now_ms();

			if (left <= 0) {
				warnf("no message within %g s",
				    timeout_ms / 1000.0);
				status = 1;
				break;
			}
			if (left < wait)
				wait = (int)left;
		}
		r = ferry_next(f, wait, &m);
		if (r == FERRY_ETIMEOUT)
			continue;
		if (r < 0 && ferry_err(f)) {
			warnf("%s", ferry_errstr(f));
			ferry_close(f);
			return 1;
		}
		if (r < 0) {
			/* An async error: a refused ack/nack, or our group
			 * was deleted, which ends the subscription. */
			warnf("broker: %s", ferry_errstr(f));
			if (r == FERRY_EDELETED) {
				status = 1;
				break;
			}
			refused = 1;
			continue;
		}
		if (headers)
			print_meta(m);
		fwrite(m->body, 1, m->len, stdout);
		putchar('\n');
		if (fflush(stdout) != 0) {
			/* Not shown: leave it unacked for redelivery. */
			warnf("stdout: %s", strerror(errno));
			ferry_msg_free(m);
			status = 1;
			break;
		}
		got++;
		r = 0;
		if (nack)
			r = ferry_nack(f, m->sid, m->lease, nack_delay,
			    "nacked by ferry sub", 0);
		else if (!no_ack)
			r = ferry_ack(f, m->sid, m->lease, 0);
		ferry_msg_free(m);
		if (r < 0 && ferry_err(f)) {
			warnf("%s", ferry_errstr(f));
			ferry_close(f);
			return 1;
		}
		if (timeout_ms)
			deadline = now_ms() + timeout_ms;
	}
	/*
	 * UNSUB is a round trip that also flushes our acks, and the broker
	 * handles requests in order: once it is answered, every ack was
	 * handled, and what else we had buffered goes back to the group
	 * now rather than when the connection closes.
	 */
	r = ferry_unsubscribe(f, sid);
	if (r < 0 && !ferry_err(f) && r != FERRY_EDELETED)
		r = ferry_ping(f);
	if (r < 0 && r != FERRY_EDELETED) {
		warnf("%s", ferry_errstr(f));
		status = 1;
	}
	if (drain_errors(f))
		refused = 1;
	ferry_close(f);
	return status ? status : refused;
}

/* --- del, ping -------------------------------------------------------- */

static int
cmd_del(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topic, *group = NULL;
	struct ferry *f;
	int ch, r;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'g':
			group = optarg;
			break;
		case 'h':
			fputs(usage_del, stdout);
			return 0;
		default:
			usage_error("del: bad option");
		}
	}
	if (optind >= argc)
		usage_error("del: missing TOPIC");
	topic = argv[optind++];
	if (optind < argc)
		usage_error("del: unexpected argument '%s'", argv[optind]);
	f = open_conn(g, "del");
	r = ferry_delete(f, topic, group);
	if (r < 0)
		warnf("delete %s%s%s: %s", topic, group ? " group " : "",
		    group ? group : "", ferry_errstr(f));
	ferry_close(f);
	return r < 0;
}

static int
cmd_ping(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct timespec t0, t1;
	struct ferry *f;
	int ch, r;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ch == 'h') {
			fputs(usage_ping, stdout);
			return 0;
		}
		usage_error("ping: bad option");
	}
	if (optind < argc)
		usage_error("ping: unexpected argument '%s'", argv[optind]);
	f = open_conn(g, "ping");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = ferry_ping(f);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r < 0)
		warnf("ping: %s", ferry_errstr(f));
	else
		printf("pong from %s: %.3f ms\n", ferry_server(f),
		    (t1.tv_sec - t0.tv_sec) * 1e3 +
		    (t1.tv_nsec - t0.tv_nsec) / 1e6);
	ferry_close(f);
	return r < 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct {
		const char *name;
		int (*fn)(const struct global *, int, char **);
		const char *usage;
	} cmds[] = {
		{ "pub", cmd_pub, usage_pub },
		{ "sub", cmd_sub, usage_sub },
		{ "del", cmd_del, usage_del },
		{ "ping", cmd_ping, usage_ping },
	};
	struct global g;
	const char *env, *cmd;
	size_t i;
	int ch;

	g.host = "127.0.0.1";
	g.port = FERRY_DEFAULT_PORT;
	g.timeout_ms = 5000;
	if ((env = getenv("FERRY_HOST")) != NULL && *env)
		g.host = env;
	if ((env = getenv("FERRY_PORT")) != NULL && *env)
		g.port = (int)parse_num("FERRY_PORT", env, 1, 65535);

	/* "+": stop at the command; its options are its own. */
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			g.host = optarg;
			break;
		case 'p':
			g.port = (int)parse_num("--port", optarg, 1, 65535);
			break;
		case 't':
			g.timeout_ms = parse_seconds("--timeout", optarg);
			break;
		case 'h':
			fputs(usage_main, stdout);
			return 0;
		default:
			usage_error("bad option");
		}
	}
	if (optind >= argc)
		usage_error("missing command");
	cmd = argv[optind];
	if (strcmp(cmd, "help") == 0) {
		for (i = 0; optind + 1 < argc &&
		    i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (strcmp(argv[optind + 1], cmds[i].name) == 0) {
				fputs(cmds[i].usage, stdout);
				return 0;
			}
		fputs(usage_main, stdout);
		return 0;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmd, cmds[i].name) == 0) {
			argc -= optind;
			argv += optind;
			optind = 0;	/* restart getopt on the command */
			return cmds[i].fn(&g, argc, argv);
		}
	}
	usage_error("unknown command '%s'", cmd);
}
