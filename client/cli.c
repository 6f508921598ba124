/*
 * cli.c - the ferry command-line tool, built on ferry.h alone.
 *
 * Exit status: 0 success, 1 failure (with a message on stderr), 2 usage
 * error.  Bodies go to stdout, everything else to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cliargs.h"
#include "cliuser.h"
#include "ferry.h"
#include "reply.h"

#define PUB_WINDOW 1000		/* unconfirmed publishes kept in flight */
#define SLICE_MS 200		/* how often a waiting sub checks signals */
#define REPLAY_HOLD_MAX 1000	/* dead letters of other groups held */
#define TOUCH_MS 5000		/* how often held leases are extended */

struct global {
	const char *host;
	int port;
	int timeout_ms;		/* connect and reply timeout */
};

static const char usage_main[] =
"usage: ferry [--host H] [--port P] [--timeout SECONDS] [--url URL]\n"
"             [--user USER] [--password-file FILE] [--tls] [--ca FILE]\n"
"             [--cert FILE --key FILE] COMMAND [ARGS]\n"
"\n"
"Global options (before the command):\n"
"  --host H           broker host (default $FERRY_HOST or 127.0.0.1)\n"
"  --port P           broker port (default $FERRY_PORT or 4470)\n"
"  --timeout SECONDS  connect and reply timeout (default 5)\n"
"  --url URL          ferry://[USER@]HOST[:PORT] (default $FERRY_URL);\n"
"                     --host and --port win over it\n"
"  --user USER        log in as USER (SCRAM-SHA-256)\n"
"  --password-file F  USER's password: F's first line (default:\n"
"                     $FERRY_PASSWORD)\n"
"  --tls              TLS (ferrys:// URLs too); default port 4471; the\n"
"                     broker's certificate must name HOST\n"
"  --ca FILE          CA certificates (PEM) for the broker's certificate\n"
"                     (default: the system's)\n"
"  --cert F --key F   client certificate and key (PEM), for brokers that\n"
"                     map certificates to users\n"
"  --help             this text\n"
"\n"
"Commands:\n"
"  pub TOPIC [BODY...]  publish messages (confirmed)\n"
"  sub TOPIC            print delivered messages and ack them\n"
"  del TOPIC            delete a topic or one of its groups\n"
"  ping                 round trip to the broker\n"
"  bench TOPIC          measure throughput, latency, loss\n"
"  req TOPIC [BODY]     send a request, print its reply\n"
"  reply TOPIC --exec CMD  answer requests with a command's output\n"
"  dlq replay TOPIC     republish TOPIC's dead letters, rate-limited\n"
"  stats [TOPIC]        counters of every group\n"
"  top [TOPIC]          a live view: rates, depth, oldest message\n"
"  inflight TOPIC       a group's outstanding deliveries\n"
"  peek TOPIC           a group's next message, without taking it\n"
"  trace ID             what happened to a message\n"
"  user add|passwd|del|list  edit the broker's users file\n"
"\n"
"'ferry COMMAND --help' describes a command.\n";

static const char usage_pub[] =
"usage: ferry pub TOPIC [BODY...] [--header K=V]... [--id ID] [--batch N]\n"
"                [--delay SECONDS] [--ttl SECONDS] [--group G]\n"
"                [--mandatory]\n"
"\n"
"Publish one message per BODY argument or, with none, one per line of\n"
"standard input (the newline is not part of the body).  Every publish is\n"
"confirmed by the broker; up to 1000 are kept in flight.  Exits 0 only\n"
"if every message was confirmed.\n"
"\n"
"  --header K=V       add a header to every message (repeatable)\n"
"  --id ID            message id, for the broker's dedup (same for all:\n"
"                     a repeat within the dedup window is confirmed but\n"
"                     not enqueued again)\n"
"  --batch N          send N messages per frame (default 1); the broker\n"
"                     refuses a frame as a whole\n"
"  --delay SECONDS    not delivered before SECONDS from now\n"
"  --ttl SECONDS      expires (dead-lettered) if not delivered in time\n"
"  --group G          only into the existing group G of TOPIC, not to\n"
"                     every group\n"
"  --mandatory        refuse unless some group of TOPIC has a member\n"
"\n"
"--delay, --ttl, --group and --mandatory need --batch 1.\n";

static const char usage_sub[] =
"usage: ferry sub TOPIC [OPTIONS]\n"
"\n"
"Print each delivered body on its own line, then ack it.  Runs until\n"
"interrupted (SIGINT, SIGTERM: exit 0) unless --count or --timeout.\n"
"Exits 1 if the broker refused an ack or nack (e.g. a stale lease).\n"
"With --ephemeral, a reader that falls ephemeral_max_bytes behind loses\n"
"the oldest messages: the broker says so once, printed on stderr, and\n"
"ferry sub reads on.\n"
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
"                          [reply_to=R corr=C]    (requests only)\n"
"                        hdr KEY=VALUE            (one line per header)\n"
"                        hist cause=C by=NAME at=MS error=TEXT\n"
"                                                 (dead letters only)\n"
"\n"
"Settings of a group, applied only when this creates it:\n"
"  --ttl SECONDS       messages not delivered within SECONDS expire:\n"
"                      they are dead-lettered (reason \"expired\")\n"
"  --ttl-drop          with --ttl: drop expired messages instead\n"
"  --max-msgs N        hold at most N messages (ready, delayed, in flight)\n"
"  --max-bytes SIZE    hold at most SIZE body bytes (suffix K, M, G)\n"
"  --overflow POLICY   when full: reject (publishes fail, the default)\n"
"                      or dlq-oldest (dead-letter the oldest waiting)\n";

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


/* Seconds, possibly fractional, as milliseconds (at least 1). */
static int
parse_seconds(const char *opt, const char *s)
{
	return (int)cli_parse_seconds(opt, s, 0, INT_MAX / 1000);
}

/* The same up to about 30 years: delays of days are normal. */
static uint64_t
parse_ms64(const char *opt, const char *s)
{
	return cli_parse_seconds(opt, s, 0, 1e9);
}

/* A byte count with an optional K, M or G suffix (powers of 1024). */
static uint64_t
parse_size(const char *opt, const char *s)
{
	unsigned long long v, mul = 1;
	char *end;

	errno = 0;
	if (*s == '-' || *s == '\0')
		cli_usage_error("%s: invalid size '%s'", opt, s);
	v = strtoull(s, &end, 10);
	if (end != s && end[0] != '\0' && end[1] == '\0') {
		switch (*end) {
		case 'k': case 'K': mul = 1ull << 10; end++; break;
		case 'm': case 'M': mul = 1ull << 20; end++; break;
		case 'g': case 'G': mul = 1ull << 30; end++; break;
		}
	}
	if (errno || end == s || *end != '\0' || v == 0 ||
	    v > UINT64_MAX / mul)
		cli_usage_error("%s: '%s' is not a size (N, NK, NM or NG)", opt,
		    s);
	return v * mul;
}

/* Add header KEY=VALUE (optarg, modified) to *hdr; exits on bad input. */
static void
add_header(struct ferry_header **hdr, size_t *nhdr, char *arg)
{
	char *eq = strchr(arg, '=');
	void *nh;

	if (eq == NULL || eq == arg)
		cli_usage_error("--header: expected KEY=VALUE, got '%s'", arg);
	*eq = '\0';
	nh = realloc(*hdr, (*nhdr + 1) * sizeof(**hdr));
	if (nh == NULL) {
		cli_warn("out of memory");
		exit(1);
	}
	*hdr = nh;
	(*hdr)[*nhdr].key = arg;
	(*hdr)[(*nhdr)++].value = eq + 1;
}

static struct ferry *
open_conn(const struct global *g, const char *cmd)
{
	char name[64];
	struct ferry *f;

	snprintf(name, sizeof(name), "ferry-%s-%ld", cmd, (long)getpid());
	f = cli_connect(g->host, g->port, g->timeout_ms, name);
	if (f == NULL) {
		cli_warn("out of memory");
		exit(1);
	}
	if (ferry_err(f)) {
		cli_warn("%s", ferry_errstr(f));
		ferry_close(f);
		exit(1);
	}
	return f;
}

/* Report async errors left on the handle; 1 if there were any refusals
 * (a slow consumer's notice is none: see cmd_sub()). */
static int
drain_errors(struct ferry *f)
{
	struct ferry_async_error e;
	int any = 0;

	while (ferry_poll_error(f, &e)) {
		if (e.dropped)
			cli_warn("%" PRIu64 " more errors not shown", e.dropped);
		if (e.err == FERRY_ESLOW) {
			cli_warn("E_SLOW: %s", e.msg);
			continue;
		}
		cli_warn("broker: %s: %s", ferry_strerror(e.err), e.msg);
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
			cli_warn("(further failures not shown)");
		return;
	}
	if (ps->map[slot].rid != c->rid)
		cli_warn("%zu message(s) not published: %s", c->nmsgs,
		    c->errmsg[0] ? c->errmsg : ferry_strerror(c->err));
	else if (c->nmsgs == 1)
		cli_warn("message %zu not published: %s", ps->map[slot].idx + 1,
		    c->errmsg[0] ? c->errmsg : ferry_strerror(c->err));
	else
		cli_warn("messages %zu-%zu not published: %s",
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
		{ "delay", required_argument, NULL, 'd' },
		{ "ttl", required_argument, NULL, 'T' },
		{ "group", required_argument, NULL, 'g' },
		{ "mandatory", no_argument, NULL, 'M' },
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

	memset(&po, 0, sizeof(po));
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			add_header(&hdr, &nhdr, optarg);
			break;
		case 'i':
			id = optarg;
			break;
		case 'b':
			batch = cli_parse_num("--batch", optarg, 1, 1000000);
			break;
		case 'd':
			po.delay_ms = parse_ms64("--delay", optarg);
			break;
		case 'T':
			po.ttl_ms = parse_ms64("--ttl", optarg);
			break;
		case 'g':
			po.group = optarg;
			break;
		case 'M':
			po.mandatory = 1;
			break;
		case 'h':
			fputs(usage_pub, stdout);
			return 0;
		default:
			cli_usage_error("pub: bad option");
		}
	}
	if (optind >= argc)
		cli_usage_error("pub: missing TOPIC");
	topic = argv[optind++];
	if (batch > 1 && (po.delay_ms || po.ttl_ms || po.group ||
	    po.mandatory))
		cli_usage_error("pub: --delay, --ttl, --group and --mandatory need "
		    "--batch 1");
	memset(&src, 0, sizeof(src));
	if (optind < argc) {
		src.args = argv + optind;
		src.nargs = argc - optind;
	}
	po.id = id;
	po.hdr = hdr;
	po.nhdr = nhdr;
	memset(&b, 0, sizeof(b));

	f = open_conn(g, "pub");
	ferry_set_confirm_cb(f, pub_confirm, &ps);
	for (;;) {
		rs = source_next(&src, &body, &len);
		if (rs < 0) {
			cli_warn("stdin: %s", strerror(errno));
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
				cli_warn("out of memory");
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
		cli_warn("message %zu not published: %s", sent + 1,
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
		cli_warn("%s", ferry_errstr(f));
	if (drain_errors(f) && r == 0)
		r = -1;
	status = r == 0 && failed == 0 && ok == sent ? 0 : 1;
	if (status != 0 && sent > 0)
		cli_warn("%zu of %zu messages confirmed", ok, sent);
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
	    " sid=%" PRIu64 " lease=%" PRIu64, m->id, m->topic,
	    m->attempt, m->ts_ms, m->sid, m->lease);
	if (m->reply_to[0] != '\0' || m->corr[0] != '\0')
		fprintf(stderr, " reply_to=%s corr=%s", m->reply_to, m->corr);
	fputc('\n', stderr);
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
		{ "ttl", required_argument, NULL, 'T' },
		{ "ttl-drop", no_argument, NULL, 'D' },
		{ "max-msgs", required_argument, NULL, 'X' },
		{ "max-bytes", required_argument, NULL, 'B' },
		{ "overflow", required_argument, NULL, 'O' },
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
			count = cli_parse_num("--count", optarg, 1, ULLONG_MAX);
			break;
		case 'p':
			so.prefetch = (uint32_t)cli_parse_num("--prefetch", optarg,
			    1, UINT32_MAX);
			have_prefetch = 1;
			break;
		case 'a':
			so.ack_timeout_ms = (uint32_t)parse_seconds(
			    "--ack-timeout", optarg);
			break;
		case 'm':
			so.max_attempts = (uint32_t)cli_parse_num("--max-attempts",
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
			nack_delay = (int64_t)cli_parse_num("--nack-delay", optarg,
			    0, INT64_MAX);
			break;
		case 'e':
			so.ephemeral = 1;
			break;
		case 'v':
			headers = 1;
			break;
		case 'T':
			so.ttl_ms = parse_ms64("--ttl", optarg);
			break;
		case 'D':
			so.ttl_drop = 1;
			break;
		case 'X':
			so.max_msgs = cli_parse_num("--max-msgs", optarg, 1,
			    UINT64_MAX);
			break;
		case 'B':
			so.max_bytes = parse_size("--max-bytes", optarg);
			break;
		case 'O':
			if (strcmp(optarg, "reject") == 0)
				so.overflow = FERRY_OVERFLOW_REJECT;
			else if (strcmp(optarg, "dlq-oldest") == 0)
				so.overflow = FERRY_OVERFLOW_DLQ_OLDEST;
			else
				cli_usage_error("--overflow: expected reject or "
				    "dlq-oldest, got '%s'", optarg);
			break;
		case 'h':
			fputs(usage_sub, stdout);
			return 0;
		default:
			cli_usage_error("sub: bad option");
		}
	}
	if (optind >= argc)
		cli_usage_error("sub: missing TOPIC");
	topic = argv[optind++];
	if (optind < argc)
		cli_usage_error("sub: unexpected argument '%s'", argv[optind]);
	if (no_ack && nack)
		cli_usage_error("sub: --no-ack and --nack exclude each other");
	if (nack_delay >= 0 && !nack)
		cli_usage_error("sub: --nack-delay needs --nack");
	if (so.ephemeral && so.group != NULL)
		cli_usage_error("sub: --ephemeral and --group exclude each other");
	if (so.ttl_drop && so.ttl_ms == 0)
		cli_usage_error("sub: --ttl-drop needs --ttl");
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
		cli_warn("subscribe to %s: %s", topic, ferry_errstr(f));
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
				cli_warn("no message within %g s",
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
			cli_warn("%s", ferry_errstr(f));
			ferry_close(f);
			return 1;
		}
		if (r == FERRY_ESLOW) {
			/* Not a refusal: the broker dropped messages we
			 * were too slow for, and goes on with newer ones. */
			cli_warn("%s; reading on", ferry_errstr(f));
			continue;
		}
		if (r < 0) {
			/* An async error: a refused ack/nack, or our group
			 * was deleted, which ends the subscription. */
			cli_warn("broker: %s", ferry_errstr(f));
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
			cli_warn("stdout: %s", strerror(errno));
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
			cli_warn("%s", ferry_errstr(f));
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
		cli_warn("%s", ferry_errstr(f));
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
			cli_usage_error("del: bad option");
		}
	}
	if (optind >= argc)
		cli_usage_error("del: missing TOPIC");
	topic = argv[optind++];
	if (optind < argc)
		cli_usage_error("del: unexpected argument '%s'", argv[optind]);
	f = open_conn(g, "del");
	r = ferry_delete(f, topic, group);
	if (r < 0)
		cli_warn("delete %s%s%s: %s", topic, group ? " group " : "",
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
		cli_usage_error("ping: bad option");
	}
	if (optind < argc)
		cli_usage_error("ping: unexpected argument '%s'", argv[optind]);
	f = open_conn(g, "ping");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = ferry_ping(f);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r < 0)
		cli_warn("ping: %s", ferry_errstr(f));
	else
		printf("pong from %s: %.3f ms\n", ferry_server(f),
		    (t1.tv_sec - t0.tv_sec) * 1e3 +
		    (t1.tv_nsec - t0.tv_nsec) / 1e6);
	ferry_close(f);
	return r < 0;
}

/* --- req -------------------------------------------------------- */

static const char usage_req[] =
"usage: ferry req TOPIC [BODY] [--timeout SECONDS] [--header K=V]...\n"
"\n"
"Send one request (BODY, or all of standard input) to TOPIC and print the\n"
"reply's body to stdout, followed by a newline unless it ends with one.\n"
"Exits 1 at once if nobody subscribes to TOPIC (no responders), or when\n"
"no reply comes within the timeout.\n"
"\n"
"  --timeout SECONDS  wait this long for the reply (default: the global\n"
"                     --timeout, 5 s)\n"
"  --header K=V       add a header to the request (repeatable)\n";

/* Read all of standard input into a malloc'd buffer. */
static char *
read_stdin(size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap), *nb;
	ssize_t k;

	while (buf != NULL) {
		if (n == cap) {
			nb = realloc(buf, cap * 2);
			if (nb == NULL)
				break;
			buf = nb;
			cap *= 2;
		}
		k = read(0, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		if (k == 0) {
			*len = n;
			return buf;
		}
		n += (size_t)k;
	}
	free(buf);
	return NULL;
}

static int
cmd_req(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "header", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ferry_header *hdr = NULL;
	struct ferry_pub_opts po;
	struct ferry_msg *m;
	const char *topic;
	char *body, *in = NULL;
	size_t len, nhdr = 0;
	int ch, r, timeout_ms = g->timeout_ms;
	struct ferry *f;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 't':
			timeout_ms = parse_seconds("--timeout", optarg);
			break;
		case 'H':
			add_header(&hdr, &nhdr, optarg);
			break;
		case 'h':
			fputs(usage_req, stdout);
			return 0;
		default:
			cli_usage_error("req: bad option");
		}
	}
	if (optind >= argc)
		cli_usage_error("req: missing TOPIC");
	topic = argv[optind++];
	if (optind + 1 < argc)
		cli_usage_error("req: unexpected argument '%s'", argv[optind + 1]);
	if (optind < argc) {
		body = argv[optind];
		len = strlen(body);
	} else {
		if ((in = read_stdin(&len)) == NULL) {
			cli_warn("stdin: %s", strerror(errno));
			return 1;
		}
		body = in;
	}
	memset(&po, 0, sizeof(po));
	po.hdr = hdr;
	po.nhdr = nhdr;
	f = open_conn(g, "req");
	r = ferry_request(f, topic, body, len, &po, timeout_ms, &m);
	if (r == FERRY_ENOSUBSCRIBERS)
		cli_warn("no responders on %s", topic);
	else if (r == FERRY_ETIMEOUT)
		cli_warn("no reply from %s within %g s", topic,
		    timeout_ms / 1000.0);
	else if (r < 0)
		cli_warn("request to %s: %s", topic, ferry_errstr(f));
	if (r == 0) {
		fwrite(m->body, 1, m->len, stdout);
		if (m->len == 0 || ((const char *)m->body)[m->len - 1] != '\n')
			putchar('\n');
		if (fflush(stdout) != 0) {
			cli_warn("stdout: %s", strerror(errno));
			r = -1;
		}
		ferry_msg_free(m);
	}
	ferry_close(f);
	free(hdr);
	free(in);
	return r < 0;
}

static void
install_stop_handlers(void)
{
	struct sigaction sa;

	/* No SA_RESTART needed: the library retries EINTR, and we look at
	 * stop between waits of at most SLICE_MS. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* `ferry reply` lives in reply.c: it runs on the asynchronous API. */
static int
cmd_reply(const struct global *g, int argc, char **argv)
{
	return reply_main(g->host, g->port, g->timeout_ms, argc, argv);
}

/* --- dlq replay ---------------------------------------------------------- */

static const char usage_dlq[] =
"usage: ferry dlq replay TOPIC [--group G] [--rate N] [--count N]\n"
"                       [--timeout SECONDS]\n"
"\n"
"Replay TOPIC's dead letters: consume TOPIC.dlq and republish each to the\n"
"topic and group it died in (its dlq-topic and dlq-group headers), into\n"
"that group only, with its original id, body and headers (without the\n"
"dlq-* ones), confirmed; then ack the dead letter.  Stops after --count\n"
"replays or when no dead letter came for --timeout.\n"
"\n"
"Dead letters that are not replayed stay in TOPIC.dlq unchanged: those of\n"
"other groups (with --group), those whose republish failed, and those\n"
"whose id the broker still remembers in its dedup window (republishing\n"
"them would be confirmed but not enqueued: try again later).  They are\n"
"held, unsettled, while the replay runs, so that it does not see them\n"
"twice, and released when it ends, which does not count as an attempt.\n"
"At most 1000 are held: if more precede the rest, run it again after\n"
"replaying or deleting them.\n"
"\n"
"  --group G          only dead letters of group G (dlq-group header)\n"
"  --rate N           at most N replays per second (default 100)\n"
"  --count N          stop after N replays\n"
"  --timeout SECONDS  stop when no dead letter came for SECONDS (default\n"
"                     2)\n"
"\n"
"Exits 0 if every dead letter seen was replayed or skipped by --group,\n"
"1 otherwise.\n";

struct held {
	uint64_t sid, lease;
};

/* The value of header key of m, or NULL. */
static const char *
msg_header(const struct ferry_msg *m, const char *key)
{
	size_t i;

	for (i = 0; i < m->nhdr; i++)
		if (strcmp(m->hdr[i].key, key) == 0)
			return m->hdr[i].value;
	return NULL;
}

/* Republish dead letter m; 0 done (ack it), 1 leave it, -1 connection. */
static int
replay_one(struct ferry *f, const struct ferry_msg *m, const char *topic,
    const char *group, struct ferry_header *hdr)
{
	struct ferry_pub_opts po;
	size_t i, n = 0;
	int r;

	for (i = 0; i < m->nhdr; i++)
		if (strncmp(m->hdr[i].key, "dlq-", 4) != 0)
			hdr[n++] = m->hdr[i];
	memset(&po, 0, sizeof(po));
	po.id = m->id;
	po.hdr = hdr;
	po.nhdr = n;
	po.group = group;
	r = ferry_publish_sync(f, topic, m->body, m->len, &po, NULL);
	if (r < 0) {
		cli_warn("dead letter %s: not replayed to %s/%s: %s", m->id, topic,
		    group, ferry_errstr(f));
		return ferry_err(f) ? -1 : 1;
	}
	if (ferry_last_dups(f) > 0) {
		cli_warn("dead letter %s: its id is still in the broker's dedup "
		    "window for %s, so it would not be enqueued; left in the "
		    "dlq, replay it later", m->id, topic);
		return 1;
	}
	return 0;
}

static int
cmd_dlq(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "rate", required_argument, NULL, 'r' },
		{ "count", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct held held[REPLAY_HOLD_MAX];
	struct ferry_header *hdr = NULL;
	struct ferry_sub_opts so;
	struct ferry_msg *m;
	const char *topic, *group = NULL, *dtopic, *dgroup;
	char dlq[FERRY_NAME_MAX + 8];
	unsigned long long rate = 100, count = 0, replayed = 0;
	size_t nheld = 0, skipped = 0, left = 0, i;
	int64_t start, idle_deadline, next_touch, wait;
	int ch, r, timeout_ms = 2000, status = 0;
	struct ferry *f;
	uint64_t sid;

	if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
		fputs(usage_dlq, stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "replay") != 0)
		cli_usage_error("dlq: expected 'replay'");
	argc--;
	argv++;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'g':
			group = optarg;
			break;
		case 'r':
			rate = cli_parse_num("--rate", optarg, 1, 1000000);
			break;
		case 'c':
			count = cli_parse_num("--count", optarg, 1, ULLONG_MAX);
			break;
		case 't':
			timeout_ms = parse_seconds("--timeout", optarg);
			break;
		case 'h':
			fputs(usage_dlq, stdout);
			return 0;
		default:
			cli_usage_error("dlq replay: bad option");
		}
	}
	if (optind >= argc)
		cli_usage_error("dlq replay: missing TOPIC");
	topic = argv[optind++];
	if (optind < argc)
		cli_usage_error("dlq replay: unexpected argument '%s'",
		    argv[optind]);
	if (strlen(topic) > FERRY_NAME_MAX - 4)
		cli_usage_error("dlq replay: topic name too long");
	snprintf(dlq, sizeof(dlq), "%s.dlq", topic);

	install_stop_handlers();
	f = open_conn(g, "dlq-replay");
	memset(&so, 0, sizeof(so));
	so.prefetch = REPLAY_HOLD_MAX;
	r = ferry_subscribe(f, dlq, &so, &sid);
	if (r < 0) {
		cli_warn("subscribe to %s: %s", dlq, ferry_errstr(f));
		ferry_close(f);
		return 1;
	}
	start = now_ms();
	idle_deadline = start + timeout_ms;
	next_touch = start + TOUCH_MS;
	while (!stop && (count == 0 || replayed < count)) {
		wait = idle_deadline - now_ms();
		if (wait <= 0)
			break;
		r = ferry_next(f, wait < SLICE_MS ? (int)wait : SLICE_MS, &m);
		if (now_ms() >= next_touch) {
			/* Keep held dead letters from timing out, which
			 * would count as an attempt. */
			for (i = 0; i < nheld; i++)
				ferry_touch(f, held[i].sid, held[i].lease, 0);
			next_touch = now_ms() + TOUCH_MS;
		}
		if (r == FERRY_ETIMEOUT)
			continue;
		if (r < 0 && ferry_err(f))
			break;
		if (r < 0) {
			cli_warn("broker: %s", ferry_errstr(f));
			status = 1;
			if (r == FERRY_EDELETED)
				break;
			continue;
		}
		idle_deadline = now_ms() + timeout_ms;
		dtopic = msg_header(m, "dlq-topic");
		dgroup = msg_header(m, "dlq-group");
		if (dtopic == NULL || dgroup == NULL || (group != NULL &&
		    strcmp(group, dgroup) != 0)) {
			if (dtopic == NULL || dgroup == NULL) {
				cli_warn("message %s of %s has no dlq-topic or "
				    "dlq-group header; left in the dlq",
				    m->id, dlq);
				left++;
			} else {
				skipped++;
			}
			r = 1;
		} else {
			void *nh = realloc(hdr, (m->nhdr + 1) * sizeof(*hdr));

			if (nh == NULL) {
				cli_warn("out of memory");
				ferry_msg_free(m);
				status = 1;
				break;
			}
			hdr = nh;
			/* At most rate per second, from the start. */
			wait = start + (int64_t)(replayed * 1000 / rate) -
			    now_ms();
			if (wait > 0)
				poll(NULL, 0, (int)wait);
			r = replay_one(f, m, dtopic, dgroup, hdr);
			if (r == 1)
				left++;
		}
		if (r == 0) {
			r = ferry_ack(f, m->sid, m->lease, FERRY_CONFIRM);
			if (r == 0)
				replayed++;
			else if (!ferry_err(f))
				/* Replayed, but the dead letter stays: it
				 * would be replayed twice. */
				cli_warn("dead letter %s replayed but not acked: "
				    "%s", m->id, ferry_errstr(f));
		} else if (r == 1) {
			held[nheld].sid = m->sid;
			held[nheld++].lease = m->lease;
			r = 0;
		}
		ferry_msg_free(m);
		if (r < 0 && ferry_err(f))
			break;
		if (r < 0)
			status = 1;
		if (nheld == REPLAY_HOLD_MAX) {
			cli_warn("%zu dead letters held (other groups, or not "
			    "replayable): stopping; replay or delete them, then "
			    "run again", nheld);
			break;
		}
	}
	if (ferry_err(f)) {
		cli_warn("%s", ferry_errstr(f));
		ferry_close(f);
		free(hdr);
		return 1;
	}
	/* Releases what we hold, unchanged (not an attempt). */
	r = ferry_unsubscribe(f, sid);
	if (r < 0) {
		cli_warn("%s", ferry_errstr(f));
		status = 1;
	}
	if (drain_errors(f))
		status = 1;
	fprintf(stderr, "ferry: replayed %llu dead letter%s of %s", replayed,
	    replayed == 1 ? "" : "s", dlq);
	if (skipped)
		fprintf(stderr, ", skipped %zu of other groups", skipped);
	if (left)
		fprintf(stderr, ", left %zu", left);
	fprintf(stderr, " in %.1f s\n", (now_ms() - start) / 1000.0);
	ferry_close(f);
	free(hdr);
	return status || left ? 1 : 0;
}

/* --- stats, inflight, peek, trace ---------------------------------------- */

/* "850ms", "12s", "5m03s", "2h04m", "3d05h": an age at a glance. */
static void
fmt_age(char *buf, size_t len, uint64_t ms)
{
	uint64_t s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, len, "%" PRIu64 "ms", ms);
	else if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
		    s / 60 % 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400,
		    s / 3600 % 24);
}

/* The broker-wide lines of "ferry stats" without a topic.  Only a
 * warning if the broker does not report them. */
static void
print_broker(struct ferry *f)
{
	struct ferry_broker_stats bs;
	char up[32];

	if (ferry_stats_broker(f, &bs) < 0) {
		cli_warn("stats: no broker-wide figures: %s", ferry_errstr(f));
		return;
	}
	fmt_age(up, sizeof(up), bs.uptime_ms);
	printf("broker: up %s, %" PRIu64 " connections, %" PRIu64
	    " topics, %" PRIu64 " groups, journal %" PRIu64 " bytes\n"
	    "messages: %" PRIu64 " ready, %" PRIu64 " delayed, %" PRIu64
	    " in flight, %" PRIu64 " bytes held; %" PRIu64 " published, %"
	    PRIu64 " delivered, %" PRIu64 " acked\n"
	    "paging: %" PRIu64 " messages (%" PRIu64 " bytes) only on disk, %"
	    PRIu64 " read back\n"
	    "producers: %" PRIu64 " idempotent producers remembered\n"
	    "traffic: %" PRIu64 " bytes in, %" PRIu64 " bytes out\n\n",
	    up, bs.conns, bs.topics, bs.groups, bs.journal_bytes, bs.ready,
	    bs.delayed, bs.inflight, bs.bytes, bs.published, bs.delivered,
	    bs.acked, bs.paged, bs.paged_bytes, bs.paged_reads, bs.producers,
	    bs.bytes_in, bs.bytes_out);
}

/* The broker-wide object of "ferry stats --json" without a topic, and
 * the comma after it if more follow; 0, or -1 (warned) without them. */
static int
json_broker(struct ferry *f, int more)
{
	struct ferry_broker_stats bs;

	if (ferry_stats_broker(f, &bs) < 0) {
		cli_warn("stats: no broker-wide figures: %s", ferry_errstr(f));
		return -1;
	}
	printf("\n{\"broker\":true,\"uptime_ms\":%" PRIu64 ",\"connections\":%"
	    PRIu64 ",\"topics\":%" PRIu64 ",\"groups\":%" PRIu64
	    ",\"journal_bytes\":%" PRIu64 ",\"ready\":%" PRIu64
	    ",\"delayed\":%" PRIu64 ",\"inflight\":%" PRIu64 ",\"bytes\":%"
	    PRIu64 ",\"published\":%" PRIu64 ",\"delivered\":%" PRIu64
	    ",\"acked\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%"
	    PRIu64 ",\"paged\":%" PRIu64 ",\"paged_bytes\":%" PRIu64
	    ",\"paged_reads\":%" PRIu64 ",\"producers\":%" PRIu64 "}%s",
	    bs.uptime_ms, bs.conns, bs.topics, bs.groups, bs.journal_bytes,
	    bs.ready, bs.delayed, bs.inflight, bs.bytes, bs.published,
	    bs.delivered, bs.acked, bs.bytes_in, bs.bytes_out, bs.paged,
	    bs.paged_bytes, bs.paged_reads, bs.producers, more ? "," : "");
	return 0;
}

static const char usage_stats[] =
"usage: ferry stats [TOPIC] [--json]\n"
"\n"
"Counters of every group of TOPIC (of every topic without it), one row\n"
"each; a topic's backlog, held while it has no group, shows as group\n"
"'-'.  READY/DELAYED/INFLIGHT/BYTES/MEMBERS are current; the others count\n"
"since the broker started: ENQ enqueued, DLV delivered (redeliveries\n"
"too), ACK, NACK, TMOUT leases timed out, DISC put back on disconnect,\n"
"REL released, EXP expired (TTL), DLQ dead-lettered, DROP removed\n"
"undelivered (expired with --ttl-drop, or dropped from an ephemeral group\n"
"past ephemeral_max_bytes: \"slow\" in --json counts those).\n"
"\n"
"  --json  one JSON array of objects instead of the table\n"
"\n"
"Without TOPIC the broker-wide figures come first: connections, topics,\n"
"groups, messages held and counted, bytes moved; with --json, as the\n"
"array's first object, the only one with \"broker\":true (uptime_ms,\n"
"connections, topics, groups, journal_bytes, ready, delayed, inflight,\n"
"bytes, published, delivered, acked, bytes_in, bytes_out, and paged,\n"
"paged_bytes, paged_reads: messages whose body is only on disk past\n"
"max_memory, their bytes, and bodies read back; producers: idempotent\n"
"producers remembered, each until producer_ttl after its last publish).\n";

static const char usage_inflight[] =
"usage: ferry inflight TOPIC [--group G] [--json]\n"
"\n"
"The outstanding deliveries of group G (default: the default group) of\n"
"TOPIC: message id, consumer, lease age, attempt, last nack error.\n"
"\n"
"  --json  one JSON array of objects instead of the table\n";

static const char usage_peek[] =
"usage: ferry peek TOPIC [--group G] [--headers]\n"
"\n"
"Print the body of the message group G (default: the default group) of\n"
"TOPIC delivers next (the first ready one, else the earliest delayed),\n"
"without taking it.  Exits 1 if the group is empty or does not exist.\n"
"\n"
"  --headers  print its metadata to stderr first, as 'ferry sub' does\n";

static const char usage_trace[] =
"usage: ferry trace ID [--json]\n"
"\n"
"What the broker remembers about message ID, oldest first: published,\n"
"delivered, acked, nacked, timeout, dead-lettered, ...  The broker keeps\n"
"recent events in memory only.  Exits 1 if it knows nothing about ID.\n"
"\n"
"  --json  one JSON array of objects instead of the table\n";

/* A table printed with aligned columns; cells are copied. */
#define TABLE_COLS 24	/* the widest table: ferry stats, 17 */

struct table {
	size_t ncols;		/* at most TABLE_COLS */
	const char *const *head;
	unsigned right;		/* bit i: column i is numeric */
	char **cells;		/* row by row */
	size_t ncells, cap;
};

__attribute__((format(printf, 2, 3)))
static void
table_cell(struct table *t, const char *fmt, ...)
{
	size_t used = t->ncells;
	va_list ap;
	char *c;
	int n;

	if (used == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 64;
		char **nc = realloc(t->cells, ncap * sizeof(*nc));

		if (nc == NULL) {
			cli_warn("out of memory");
			exit(1);
		}
		t->cells = nc;
		t->cap = ncap;
	}
	va_start(ap, fmt);
	n = vasprintf(&c, fmt, ap);
	va_end(ap);
	if (n < 0) {
		cli_warn("out of memory");
		exit(1);
	}
	t->cells[t->ncells++] = c;
}

/* Print and free the table.  Text cells are printed as they are; they
 * come from names the broker validated, or are shown last (free text). */
static void
table_print(struct table *t)
{
	size_t w[TABLE_COLS] = {0}, r, c, len;
	size_t nrows = t->ncells / t->ncols, total = nrows * t->ncols;

	for (c = 0; c < t->ncols; c++)
		w[c] = strlen(t->head[c]);
	for (r = 0; r < total; r++) {
		len = strlen(t->cells[r]);
		if (len > w[r % t->ncols])
			w[r % t->ncols] = len;
	}
	for (r = 0; r <= nrows; r++) {
		for (c = 0; c < t->ncols; c++) {
			const char *s = r == 0 ? t->head[c] :
			    t->cells[(r - 1) * t->ncols + c];
			int last = c + 1 == t->ncols;

			if (t->right & (1u << c))
				printf("%*s%s", (int)w[c], s, last ? "" : "  ");
			else if (last)
				printf("%s", s);
			else
				printf("%-*s  ", (int)w[c], s);
		}
		putchar('\n');
	}
	for (r = 0; r < t->ncells; r++)
		free(t->cells[r]);
	free(t->cells);
}

/* A JSON string literal. */
static void
json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", stdout);
		else if (ch == '\t')
			fputs("\\t", stdout);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* Parse [--group G] [--json] [--headers] for the inspection commands;
 * returns the index of the first operand. */
static int
inspect_opts(int argc, char **argv, const char *usage, const char *name,
    const char **group, int *json, int *headers)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "json", no_argument, NULL, 'j' },
		{ "headers", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'g':
			if (group == NULL)
				cli_usage_error("%s: no --group here", name);
			*group = optarg;
			break;
		case 'j':
			if (json == NULL)
				cli_usage_error("%s: no --json here", name);
			*json = 1;
			break;
		case 'v':
			if (headers == NULL)
				cli_usage_error("%s: no --headers here", name);
			*headers = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			cli_usage_error("%s: bad option", name);
		}
	}
	return optind;
}

/* --- top ------------------------------------------------------------------ */

static const char usage_top[] =
"usage: ferry top [TOPIC] [--interval SECONDS] [--count N] [--limit N]\n"
"\n"
"A live view of the broker: a line of totals, then one line per group\n"
"(of TOPIC, or of every topic), deepest first: READY, INFLIGHT, MEMBERS,\n"
"OLDEST (age of the oldest ready message), and per second over the last\n"
"interval: IN (enqueued), OUT (delivered), ACK.  Rates show from the\n"
"second refresh on.  On a terminal the screen is redrawn; otherwise each\n"
"refresh is printed after a blank line.  Interrupt it to stop.\n"
"\n"
"  --interval SECONDS  between refreshes (default 1)\n"
"  --count N           stop after N refreshes (default: never)\n"
"  --limit N           groups shown (default 40)\n";

/* One refresh: the rows, sorted by (topic, group) for lookups. */
struct top_snap {
	struct ferry_group_stats *rows;
	size_t n;
	struct ferry_broker_stats bs;
	int64_t at_ms;
};

static int
row_name_cmp(const void *a, const void *b)
{
	const struct ferry_group_stats *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);

	return c ? c : strcmp(x->group, y->group);
}

static int
row_depth_cmp(const void *a, const void *b)
{
	const struct ferry_group_stats *x = *(const void *const *)a;
	const struct ferry_group_stats *y = *(const void *const *)b;

	if (x->ready != y->ready)
		return x->ready < y->ready ? 1 : -1;
	if (x->inflight != y->inflight)
		return x->inflight < y->inflight ? 1 : -1;
	return row_name_cmp(x, y);
}

/* (now - before) / seconds, 0 without a before or on a counter reset. */
static double
rate(uint64_t now, uint64_t before, int have, double secs)
{
	return have && now >= before && secs > 0 ? (double)(now - before) /
	    secs : 0;
}

static void
top_print(const struct global *g, const struct top_snap *cur,
    const struct top_snap *prev, size_t limit)
{
	const struct ferry_group_stats **order;
	double secs = prev ? (double)(cur->at_ms - prev->at_ms) / 1000 : 0;
	char up[32], age[32];
	size_t i, shown = 0;

	fmt_age(up, sizeof(up), cur->bs.uptime_ms);
	printf("ferry top  %s:%d  up %s  %" PRIu64 " conns  %" PRIu64
	    " topics  %" PRIu64 " groups\n"
	    "ready %" PRIu64 "  delayed %" PRIu64 "  inflight %" PRIu64
	    "  in %.0f/s  out %.0f/s  ack %.0f/s\n\n", g->host, g->port, up,
	    cur->bs.conns, cur->bs.topics, cur->bs.groups, cur->bs.ready,
	    cur->bs.delayed, cur->bs.inflight,
	    rate(cur->bs.published, prev ? prev->bs.published : 0, !!prev,
	    secs), rate(cur->bs.delivered, prev ? prev->bs.delivered : 0,
	    !!prev, secs), rate(cur->bs.acked, prev ? prev->bs.acked : 0,
	    !!prev, secs));
	printf("%-24s %-16s %9s %8s %7s %8s %9s %9s %9s\n", "TOPIC", "GROUP",
	    "READY", "INFLIGHT", "MEMBERS", "OLDEST", "IN/s", "OUT/s",
	    "ACK/s");
	if (!(order = malloc((cur->n ? cur->n : 1) * sizeof(*order))))
		return;
	for (i = 0; i < cur->n; i++)
		if (cur->rows[i].group[0])	/* groups, not backlogs */
			order[shown++] = &cur->rows[i];
	qsort(order, shown, sizeof(*order), row_depth_cmp);
	for (i = 0; i < shown && i < limit; i++) {
		const struct ferry_group_stats *r = order[i], *p = NULL;

		if (prev)
			p = bsearch(r, prev->rows, prev->n, sizeof(*r),
			    row_name_cmp);
		fmt_age(age, sizeof(age), r->age_ms);
		printf("%-24.24s %-16.16s %9" PRIu64 " %8" PRIu64 " %7" PRIu64
		    " %8s %9.0f %9.0f %9.0f\n", r->topic, r->group, r->ready,
		    r->inflight, r->members, r->ready ? age : "-",
		    rate(r->enqueued, p ? p->enqueued : 0, !!p, secs),
		    rate(r->delivered, p ? p->delivered : 0, !!p, secs),
		    rate(r->acked, p ? p->acked : 0, !!p, secs));
	}
	if (shown > limit)
		printf("... %zu more groups (--limit)\n", shown - limit);
	free(order);
}

static int
cmd_top(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "limit", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct top_snap snap[2] = { { 0 } };
	int interval_ms = 1000, tty = isatty(STDOUT_FILENO), ch, cur = 0;
	uint64_t count = 0, k;
	const char *topic = NULL;
	size_t limit = 40;
	struct ferry *f;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'i':
			interval_ms = parse_seconds("--interval", optarg);
			break;
		case 'n':
			count = cli_parse_num("--count", optarg, 1,
			    UINT32_MAX);
			break;
		case 'l':
			limit = (size_t)cli_parse_num("--limit", optarg, 1,
			    1000000);
			break;
		case 'h':
			fputs(usage_top, stdout);
			return 0;
		default:
			cli_usage_error("top: bad option");
		}
	}
	if (optind < argc)
		topic = argv[optind++];
	if (optind < argc)
		cli_usage_error("top: unexpected argument '%s'", argv[optind]);
	f = open_conn(g, "top");
	for (k = 0; count == 0 || k < count; k++) {
		struct top_snap *s = &snap[cur], *prev = &snap[!cur];

		ferry_stats_free(s->rows);
		s->rows = NULL;
		if (ferry_stats_broker(f, &s->bs) < 0 ||
		    ferry_stats(f, topic, &s->rows, &s->n) < 0) {
			cli_warn("top: %s", ferry_errstr(f));
			break;
		}
		s->at_ms = now_ms();
		qsort(s->rows, s->n, sizeof(*s->rows), row_name_cmp);
		if (tty)
			fputs("\033[H\033[2J", stdout);
		else if (k > 0)
			putchar('\n');
		top_print(g, s, k > 0 ? prev : NULL, limit);
		if (fflush(stdout) != 0)
			break;
		cur = !cur;
		if (count == 0 || k + 1 < count)
			poll(NULL, 0, interval_ms);
	}
	ferry_stats_free(snap[0].rows);
	ferry_stats_free(snap[1].rows);
	ferry_close(f);
	return count && k < count;
}

static int
cmd_stats(const struct global *g, int argc, char **argv)
{
	static const char *const head[] = { "TOPIC", "GROUP", "READY",
	    "DELAYED", "INFLIGHT", "BYTES", "MEMBERS", "ENQ", "DLV", "ACK",
	    "NACK", "TMOUT", "DISC", "REL", "EXP", "DLQ", "DROP" };
	struct ferry_group_stats *rows;
	struct table t = { 17, head, 0x1fffc, NULL, 0, 0 };
	_Static_assert(sizeof(head) / sizeof(head[0]) == 17 &&
	    17 <= TABLE_COLS, "ferry stats: columns");
	const char *topic = NULL;
	int i, json = 0, r, brow = 0;
	struct ferry *f;
	size_t n, k;

	i = inspect_opts(argc, argv, usage_stats, "stats", NULL, &json, NULL);
	if (i < argc)
		topic = argv[i++];
	if (i < argc)
		cli_usage_error("stats: unexpected argument '%s'", argv[i]);
	f = open_conn(g, "stats");
	r = ferry_stats(f, topic, &rows, &n);
	if (r < 0) {
		cli_warn("stats: %s", ferry_errstr(f));
		ferry_close(f);
		return 1;
	}
	if (json)
		putchar('[');
	if (topic == NULL && json && json_broker(f, n > 0) == 0)
		brow = 1;	/* the broker's row is out */
	else if (topic == NULL && !json)
		print_broker(f);
	ferry_close(f);
	for (k = 0; k < n; k++) {
		const struct ferry_group_stats *s = &rows[k];

		if (json) {
			printf("%s\n{\"broker\":false,\"topic\":",
			    k ? "," : "");
			json_str(s->topic);
			printf(",\"group\":");
			json_str(s->group);
			printf(",\"ready\":%" PRIu64 ",\"delayed\":%" PRIu64
			    ",\"inflight\":%" PRIu64 ",\"bytes\":%" PRIu64
			    ",\"members\":%" PRIu64 ",\"enqueued\":%" PRIu64
			    ",\"delivered\":%" PRIu64 ",\"acked\":%" PRIu64
			    ",\"nacked\":%" PRIu64 ",\"timeouts\":%" PRIu64
			    ",\"disconnected\":%" PRIu64 ",\"released\":%"
			    PRIu64 ",\"expired\":%" PRIu64
			    ",\"dead_lettered\":%" PRIu64 ",\"dropped\":%"
			    PRIu64 ",\"slow\":%" PRIu64 "}", s->ready,
			    s->delayed, s->inflight, s->bytes, s->members,
			    s->enqueued, s->delivered, s->acked, s->nacked,
			    s->timeouts, s->disconnected, s->released,
			    s->expired, s->dead_lettered, s->dropped, s->slow);
			continue;
		}
		table_cell(&t, "%s", s->topic);
		table_cell(&t, "%s", s->group[0] ? s->group : "-");
		table_cell(&t, "%" PRIu64, s->ready);
		table_cell(&t, "%" PRIu64, s->delayed);
		table_cell(&t, "%" PRIu64, s->inflight);
		table_cell(&t, "%" PRIu64, s->bytes);
		table_cell(&t, "%" PRIu64, s->members);
		table_cell(&t, "%" PRIu64, s->enqueued);
		table_cell(&t, "%" PRIu64, s->delivered);
		table_cell(&t, "%" PRIu64, s->acked);
		table_cell(&t, "%" PRIu64, s->nacked);
		table_cell(&t, "%" PRIu64, s->timeouts);
		table_cell(&t, "%" PRIu64, s->disconnected);
		table_cell(&t, "%" PRIu64, s->released);
		table_cell(&t, "%" PRIu64, s->expired);
		table_cell(&t, "%" PRIu64, s->dead_lettered);
		table_cell(&t, "%" PRIu64, s->dropped);
	}
	if (json)
		printf("%s]\n", n || brow ? "\n" : "");
	else
		table_print(&t);
	ferry_stats_free(rows);
	return fflush(stdout) != 0;
}

static int
cmd_inflight(const struct global *g, int argc, char **argv)
{
	static const char *const head[] = { "ID", "CONSUMER", "AGE",
	    "ATTEMPT", "ERROR" };
	struct ferry_lease_info *rows;
	struct table t = { 5, head, 0x0c, NULL, 0, 0 };
	const char *topic, *group = NULL;
	int i, json = 0, r;
	struct ferry *f;
	size_t n, k;

	i = inspect_opts(argc, argv, usage_inflight, "inflight", &group, &json,
	    NULL);
	if (i >= argc)
		cli_usage_error("inflight: missing TOPIC");
	topic = argv[i++];
	if (i < argc)
		cli_usage_error("inflight: unexpected argument '%s'", argv[i]);
	f = open_conn(g, "inflight");
	r = ferry_inflight(f, topic, group, &rows, &n);
	if (r < 0) {
		cli_warn("inflight %s%s%s: %s", topic, group ? "/" : "",
		    group ? group : "", ferry_errstr(f));
		ferry_close(f);
		return 1;
	}
	ferry_close(f);
	if (json)
		putchar('[');
	for (k = 0; k < n; k++) {
		const struct ferry_lease_info *l = &rows[k];

		if (json) {
			printf("%s\n{\"id\":", k ? "," : "");
			json_str(l->id);
			printf(",\"consumer\":");
			json_str(l->consumer);
			printf(",\"age_ms\":%" PRIu64 ",\"attempt\":%" PRIu32
			    ",\"error\":", l->age_ms, l->attempt);
			json_str(l->error);
			putchar('}');
			continue;
		}
		table_cell(&t, "%s", l->id);
		table_cell(&t, "%s", l->consumer);
		table_cell(&t, "%.1fs", l->age_ms / 1000.0);
		table_cell(&t, "%" PRIu32, l->attempt);
		table_cell(&t, "%s", l->error);
	}
	if (json)
		printf("%s]\n", n ? "\n" : "");
	else
		table_print(&t);
	ferry_inflight_free(rows);
	return fflush(stdout) != 0;
}

static int
cmd_peek(const struct global *g, int argc, char **argv)
{
	const char *topic, *group = NULL;
	struct ferry_msg *m;
	int i, headers = 0, r;
	struct ferry *f;

	i = inspect_opts(argc, argv, usage_peek, "peek", &group, NULL,
	    &headers);
	if (i >= argc)
		cli_usage_error("peek: missing TOPIC");
	topic = argv[i++];
	if (i < argc)
		cli_usage_error("peek: unexpected argument '%s'", argv[i]);
	f = open_conn(g, "peek");
	r = ferry_peek(f, topic, group, &m);
	if (r == FERRY_ENOTFOUND)
		cli_warn("%s/%s: empty, or no such group", topic,
		    group ? group : "default");
	else if (r < 0)
		cli_warn("peek %s: %s", topic, ferry_errstr(f));
	ferry_close(f);
	if (r < 0)
		return 1;
	if (headers)
		print_meta(m);
	fwrite(m->body, 1, m->len, stdout);
	putchar('\n');
	ferry_msg_free(m);
	return fflush(stdout) != 0;
}

/* Unix ms as UTC ISO 8601, into buf (at least 32 bytes). */
static void
fmt_time(char *buf, size_t len, uint64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03uZ", (unsigned)(ms % 1000));
}

static int
cmd_trace(const struct global *g, int argc, char **argv)
{
	static const char *const head[] = { "TIME", "EVENT", "TOPIC", "GROUP",
	    "CONSUMER", "ATTEMPT", "ERROR" };
	struct ferry_event *rows;
	struct table t = { 7, head, 0x20, NULL, 0, 0 };
	const char *id;
	char when[40];
	int i, json = 0, r;
	struct ferry *f;
	size_t n, k;

	i = inspect_opts(argc, argv, usage_trace, "trace", NULL, &json, NULL);
	if (i >= argc)
		cli_usage_error("trace: missing ID");
	id = argv[i++];
	if (i < argc)
		cli_usage_error("trace: unexpected argument '%s'", argv[i]);
	f = open_conn(g, "trace");
	r = ferry_trace(f, id, &rows, &n);
	if (r == FERRY_ENOTFOUND)
		cli_warn("nothing known about message %s", id);
	else if (r < 0)
		cli_warn("trace %s: %s", id, ferry_errstr(f));
	ferry_close(f);
	if (r < 0)
		return 1;
	if (json)
		putchar('[');
	for (k = 0; k < n; k++) {
		const struct ferry_event *e = &rows[k];

		if (json) {
			printf("%s\n{\"at_ms\":%" PRIu64 ",\"event\":",
			    k ? "," : "", e->at_ms);
			json_str(e->what);
			printf(",\"topic\":");
			json_str(e->topic);
			printf(",\"group\":");
			json_str(e->group);
			printf(",\"consumer\":");
			json_str(e->consumer);
			printf(",\"attempt\":%" PRIu32 ",\"error\":",
			    e->attempt);
			json_str(e->error);
			putchar('}');
			continue;
		}
		fmt_time(when, sizeof(when), e->at_ms);
		table_cell(&t, "%s", when);
		table_cell(&t, "%s", e->what);
		table_cell(&t, "%s", e->topic);
		table_cell(&t, "%s", e->group[0] ? e->group : "-");
		table_cell(&t, "%s", e->consumer[0] ? e->consumer : "-");
		table_cell(&t, "%" PRIu32, e->attempt);
		table_cell(&t, "%s", e->error);
	}
	if (json)
		printf("%s]\n", n ? "\n" : "");
	else
		table_print(&t);
	ferry_trace_free(rows);
	return fflush(stdout) != 0;
}

static int
cmd_bench(const struct global *g, int argc, char **argv)
{
	return bench_main(g->host, g->port, g->timeout_ms, argc, argv);
}

static int
cmd_user(const struct global *g, int argc, char **argv)
{
	return cliuser_main(argc, argv);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 't' },
		{ "url", required_argument, NULL, 'U' },
		{ "user", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "tls", no_argument, NULL, 'T' },
		{ "ca", required_argument, NULL, 'C' },
		{ "cert", required_argument, NULL, 'E' },
		{ "key", required_argument, NULL, 'K' },
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
		{ "bench", cmd_bench, bench_usage },
		{ "req", cmd_req, usage_req },
		{ "reply", cmd_reply, reply_usage },
		{ "dlq", cmd_dlq, usage_dlq },
		{ "stats", cmd_stats, usage_stats },
		{ "top", cmd_top, usage_top },
		{ "inflight", cmd_inflight, usage_inflight },
		{ "peek", cmd_peek, usage_peek },
		{ "trace", cmd_trace, usage_trace },
		{ "user", cmd_user, cliuser_usage },
	};
	struct global g;
	const char *env, *cmd;
	size_t i;
	int ch, port_given = 0;

	g.host = "127.0.0.1";
	g.port = FERRY_DEFAULT_PORT;
	g.timeout_ms = 5000;
	if ((env = getenv("FERRY_HOST")) != NULL && *env) {
		g.host = env;
		cli_login.addr_given = 1;
	}
	if ((env = getenv("FERRY_PORT")) != NULL && *env) {
		g.port = (int)cli_parse_num("FERRY_PORT", env, 1, 65535);
		cli_login.addr_given = 1;
		port_given = 1;
	}

	/* "+": stop at the command; its options are its own. */
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			g.host = optarg;
			cli_login.addr_given = 1;
			break;
		case 'p':
			g.port = (int)cli_parse_num("--port", optarg, 1, 65535);
			cli_login.addr_given = 1;
			port_given = 1;
			break;
		case 'U':
			cli_login.url = optarg;
			break;
		case 'u':
			cli_login.user = optarg;
			break;
		case 'P':
			cli_login.password_file = optarg;
			break;
		case 'T':
			cli_login.tls = 1;
			break;
		case 'C':
			cli_login.ca = optarg;
			cli_login.tls = 1;
			break;
		case 'E':
			cli_login.cert = optarg;
			cli_login.tls = 1;
			break;
		case 'K':
			cli_login.key = optarg;
			cli_login.tls = 1;
			break;
		case 't':
			g.timeout_ms = parse_seconds("--timeout", optarg);
			break;
		case 'h':
			fputs(usage_main, stdout);
			return 0;
		default:
			cli_usage_error("bad option");
		}
	}
	/* TLS has its own default port, unless one was named. */
	if (cli_login.tls && !port_given)
		g.port = FERRY_DEFAULT_TLS_PORT;
	if (optind >= argc)
		cli_usage_error("missing command");
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
	cli_usage_error("unknown command '%s'", cmd);
}
