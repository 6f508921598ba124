/*
 * test-slow.c - a stalled listener must not pin the broker's memory.
 *
 * The new user's scenario at a smaller scale: a topic with one healthy
 * durable group (a worker process that acks everything) and one ephemeral
 * at-most-once subscriber on a raw socket that stops reading.  With
 * ephemeral_max_bytes = 1M, publishing 50 MB keeps ferryd's peak RSS
 * (VmHWM) far below what was published, the durable group gets every
 * message in order, and the stalled subscriber, once it reads again, gets
 * the messages that were already on their way, exactly one E_SLOW naming
 * how many were dropped, then only newer messages; STATS counts the drops
 * (delivered + dropped == published).  After it caught up, a second stall
 * is told once more.  The control (ephemeral_max_bytes = 0) keeps every
 * message: its RSS grows with what was published, which shows that the
 * bound is what keeps the first run small.
 *
 * Durable groups are never dropped, whatever their members' mode: a
 * stalled member of one leaves every message in the group.
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness.h"

#define TOPIC "slow.t"
#define BODY 1000		/* bytes per message */
#define NPUB 50000		/* 50 MB */
#define NPUB2 20000		/* the second stall: 20 MB, well past what
				   socket buffers take (several MB once a
				   reader has read fast) */
#define CHUNK 1000
#define MIB_KB 1024L

static struct ferryd d;
static struct fy_dec dec;
static pid_t worker = -1;

static void
setup(void)
{
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
}

static void
teardown(void)
{
	if (worker > 0) {
		kill(worker, SIGKILL);
		waitpid(worker, NULL, 0);
		worker = -1;
	}
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
	fy_dec_fini(&dec);
}

static void
body_of(char *b, int i)
{
	memset(b, 'x', BODY);
	snprintf(b, 16, "%08d", i);
	b[8] = '.';
}

static int
index_of(const void *body, size_t len)
{
	char num[9];

	ck_assert_uint_eq(len, BODY);
	memcpy(num, body, 8);
	num[8] = '\0';
	return atoi(num);
}

/* The healthy worker: group "g", acks every message, checks the order;
 * exits 0 once it has all n.  Bounded by alarm(). */
static void
work(int port, int n)
{
	struct ferry_sub_opts o;
	struct ferry_msg *m;
	struct ferry *f;
	uint64_t sid;
	int next = 0;

	alarm(240);
	memset(&o, 0, sizeof(o));
	o.group = "g";
	o.prefetch = 256;
	f = ferry_connect("127.0.0.1", port, 5000, "worker");
	if (!f || ferry_err(f) || ferry_subscribe(f, TOPIC, &o, &sid) != 0)
		_exit(2);
	while (next < n) {
		if (ferry_next(f, 10000, &m) != 0)
			_exit(3);
		if (index_of(m->body, m->len) != next)
			_exit(4);
		next++;
		if (ferry_ack(f, m->sid, m->lease, 0) != 0)
			_exit(5);
		ferry_msg_free(m);
	}
	ferry_flush(f);
	ferry_close(f);
	_exit(0);
}

/* SUB on the raw socket; returns the sid, group name into gname. */
static uint64_t
raw_sub(int fd, const char *group, int ephemeral, uint32_t mode,
    char *gname, size_t gsize)
{
	struct fy_frame f = {.type = FY_T_SUB, .rid = 7};

	f.sub.topic = (struct fy_str){TOPIC, (uint32_t)strlen(TOPIC)};
	if (group)
		f.sub.group = (struct fy_str){group, (uint32_t)strlen(group)};
	f.sub.ephemeral = (uint8_t)ephemeral;
	f.sub.mode = mode;
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_OK);
	ck_assert_uint_eq(f.rid, 7);
	snprintf(gname, gsize, "%.*s", (int)f.ok.group.len, f.ok.group.p);
	return f.ok.sid;
}

static struct ferry_group_stats
group_stats(struct ferry *f, const char *group)
{
	struct ferry_group_stats *rows, out;
	size_t n = 0;
	int found = 0;

	memset(&out, 0, sizeof(out));
	ck_assert_int_eq(ferry_stats(f, TOPIC, &rows, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(rows[i].group, group)) {
			out = rows[i];
			found = 1;
		}
	ferry_stats_free(rows);
	ck_assert_msg(found, "no group %s in STATS", group);
	return out;
}

static void
publish_range(struct ferry *p, int from, int to)
{
	char body[BODY];

	for (int i = from; i < to; i++) {
		body_of(body, i);
		ck_assert_int_eq(ferry_publish(p, TOPIC, body, BODY, NULL), 0);
	}
	ck_assert_int_eq(ferry_ping(p), 0);
}

/* What a stalled subscriber reads once it reads again. */
struct seen {
	int n;			/* messages */
	int nslow;		/* E_SLOW frames */
	int before;		/* messages before the first E_SLOW */
	int first_after;	/* index of the first message after it */
	int last;		/* index of the last message */
	int later;		/* messages missing after the E_SLOW, in
				   gaps it did not name (same episode) */
	unsigned long long told;	/* the numbers E_SLOW named, summed */
};

/*
 * Read the raw subscriber until it has message `until` (or 10 s).  Every
 * message must be newer than the one before, every E_SLOW must sit
 * exactly at a gap of the size it names, and no gap may come before the
 * first E_SLOW.  Gaps after it are drops of the same episode, not told
 * again: a stopped reader's socket buffers can take a burst after the
 * first drops, which brings the notice early.
 */
static struct seen
drain(int fd, uint64_t sid, int from, int until)
{
	struct seen s = {0, 0, 0, -1, from - 1, 0, 0};
	uint64_t deadline = now_ms() + 10000;
	unsigned long long gap = 0;
	struct fy_frame f;
	char text[256];
	int i, told = 0;

	while (s.last < until && now_ms() < deadline) {
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
		if (f.type == FY_T_ERR) {
			ck_assert_uint_eq(f.err.code, FY_E_SLOW);
			ck_assert_uint_eq(f.rid, 0);
			ck_assert_uint_eq(f.err.sid, sid);
			ck_assert(!told);
			snprintf(text, sizeof(text), "%.*s",
			    (int)f.err.msg.len, f.err.msg.p);
			ck_assert_msg(sscanf(text, "slow consumer: %llu "
			    "messages dropped", &gap) == 1, "%s", text);
			fprintf(stderr, "after message %d: %s\n", s.last, text);
			s.nslow++;
			s.told += gap;
			told = 1;
			continue;
		}
		ck_assert_int_eq(f.type, FY_T_MSG);
		ck_assert_uint_eq(f.msg.sid, sid);
		i = index_of(f.msg.body.p, f.msg.body.len);
		if (told)
			ck_assert_int_eq(i, s.last + 1 + (int)gap);
		else if (!s.nslow)
			ck_assert_int_eq(i, s.last + 1);
		else
			s.later += i - s.last - 1;
		ck_assert_int_gt(i, s.last);
		if (!s.nslow)
			s.before++;
		else if (s.first_after < 0)
			s.first_after = i;
		told = 0;
		s.last = i;
		s.n++;
	}
	ck_assert_int_eq(s.last, until);
	return s;
}

START_TEST(stalled_listener_is_bounded)
{
	int bounded = _i == 0;
	struct ferry_group_stats eg, gg, st;
	struct ferry *p;
	char gname[64];
	long base_kb, peak_kb;
	struct seen s;
	uint64_t sid;
	int fd, status = 0;

	ferryd_start(&d, "--fsync", "never", "--ephemeral-max-bytes",
	    bounded ? "1M" : "0", NULL);
	fd = raw_hello(d.port, &dec);
	sid = raw_sub(fd, NULL, 1, FY_MODE_AMO, gname, sizeof(gname));
	ck_assert_int_eq(gname[0], '~');
	p = fc_connect(d.port, "producer");
	worker = fork();
	ck_assert_int_ge(worker, 0);
	if (worker == 0)
		work(d.port, NPUB);
	/* The worker's group first: without it the topic would keep a
	 * backlog for it, which is not what this measures. */
	for (int i = 0; i < 500; i++) {
		struct ferry_group_stats *rows;
		size_t n = 0;
		int has = 0;

		ck_assert_int_eq(ferry_stats(p, TOPIC, &rows, &n), 0);
		for (size_t k = 0; k < n; k++)
			has |= !strcmp(rows[k].group, "g");
		ferry_stats_free(rows);
		if (has)
			break;
		usleep(10000);
	}
	base_kb = proc_status_kb(d.pid, "VmRSS");

	/*
	 * The listener reads nothing while 50 MB go by, 1 MB at a time,
	 * each once the worker has taken the one before: what grows is
	 * then the listener's group, not the worker's (which flow control
	 * stops waiting for when a loaded machine stalls the worker).
	 */
	for (int from = 0; from < NPUB; from += CHUNK) {
		uint64_t until = now_ms() + 20000;

		publish_range(p, from, from + CHUNK);
		while (group_stats(p, "g").acked < (uint64_t)(from + CHUNK) &&
		    now_ms() < until)
			usleep(1000);
	}
	ck_assert_int_eq(waitpid(worker, &status, 0), worker);
	worker = -1;
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "worker status %d", status);
	peak_kb = proc_status_kb(d.pid, "VmHWM");
	eg = group_stats(p, gname);
	gg = group_stats(p, "g");
	fprintf(stderr, "ephemeral_max_bytes %s: RSS %ld kB before, peak "
	    "%ld kB; ephemeral group holds %llu bytes, dropped %llu\n",
	    bounded ? "1M" : "0", base_kb, peak_kb,
	    (unsigned long long)eg.bytes, (unsigned long long)eg.slow);
	ck_assert_uint_eq(gg.enqueued, NPUB);
	ck_assert_uint_eq(gg.acked, NPUB);
	ck_assert_uint_eq(gg.dropped, 0);
	ck_assert_uint_eq(eg.enqueued, NPUB);
	if (bounded) {
		ck_assert_uint_le(eg.bytes, 1024 * 1024);
		ck_assert_uint_gt(eg.slow, NPUB / 2);
		ck_assert_uint_eq(eg.dropped, eg.slow);
		ck_assert_msg(peak_kb - base_kb < 24 * MIB_KB,
		    "RSS grew by %ld kB", peak_kb - base_kb);
	} else {
		ck_assert_uint_eq(eg.slow, 0);
		ck_assert_msg(peak_kb - base_kb > 40 * MIB_KB,
		    "RSS grew by %ld kB only", peak_kb - base_kb);
	}

	/* It reads again: what was on its way, one E_SLOW, newer ones. */
	s = drain(fd, sid, 0, NPUB - 1);
	eg = group_stats(p, gname);
	ck_assert_uint_eq(eg.delivered, (uint64_t)s.n);
	ck_assert_uint_eq(eg.delivered + eg.dropped, NPUB);
	ck_assert_uint_eq(s.told + (uint64_t)s.later, eg.slow);
	/* It read nothing: one episode, told once. */
	ck_assert_int_eq(s.nslow, bounded ? 1 : 0);
	ck_assert_int_eq(s.n, NPUB - (int)eg.slow);

	/* Caught up (nothing waiting, nothing dropped for a second): a
	 * second stall is a new episode, told again. */
	usleep(1200 * 1000);
	publish_range(p, NPUB, NPUB + NPUB2);
	s = drain(fd, sid, NPUB, NPUB + NPUB2 - 1);
	st = eg;
	eg = group_stats(p, gname);
	ck_assert_uint_eq(eg.delivered + eg.dropped, NPUB + NPUB2);
	ck_assert_uint_eq(s.told + (uint64_t)s.later, eg.slow - st.slow);
	if (bounded)
		ck_assert_uint_gt(eg.slow - st.slow, NPUB2 / 4);
	ck_assert_int_eq(s.nslow, bounded ? 1 : 0);

	/* The connection stayed open through it all. */
	{
		struct fy_frame f = {.type = FY_T_PING, .rid = 9};

		raw_send_frame(fd, &f);
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
		ck_assert_int_eq(f.type, FY_T_OK);
		ck_assert_uint_eq(f.rid, 9);
	}
	if (bounded)
		ck_assert(ferryd_log_has(&d, "slow consumer on " TOPIC "/"));
	close(fd);
	ferry_close(p);
}
END_TEST

/*
 * A durable group whose only member stalls keeps everything, past
 * ephemeral_max_bytes: at-least-once (_i 0) or at-most-once (_i 1).
 */
START_TEST(durable_group_never_dropped)
{
	enum { N = 10000 };
	struct ferry_group_stats st;
	struct ferry_msg *m;
	struct ferry *p, *c;
	static char seen[N];
	char gname[64];
	int fd, i, amo;

	memset(seen, 0, sizeof(seen));
	ferryd_start(&d, "--fsync", "never", "--ephemeral-max-bytes", "1M",
	    NULL);
	fd = raw_hello(d.port, &dec);
	raw_sub(fd, "d", 0, _i ? FY_MODE_AMO : FY_MODE_ALO, gname,
	    sizeof(gname));
	ck_assert_str_eq(gname, "d");
	p = fc_connect(d.port, "producer");
	publish_range(p, 0, N);
	st = group_stats(p, "d");
	ck_assert_uint_eq(st.enqueued, N);
	ck_assert_uint_eq(st.dropped, 0);
	ck_assert_uint_eq(st.slow, 0);
	amo = _i ? (int)st.delivered : 0;	/* settled as sent */
	ck_assert_uint_eq(st.ready + st.inflight + (uint64_t)amo, N);
	/* Past the ephemeral bound, all of it still there. */
	ck_assert_uint_eq(st.bytes, (uint64_t)(N - amo) * BODY);
	ck_assert_uint_gt(st.bytes, 2 * 1024 * 1024);

	/* The stalled member goes; a new one gets everything left once
	 * (an at-least-once member's deliveries come back after a backoff,
	 * so not in order). */
	close(fd);
	c = fc_connect(d.port, "reader");
	fc_sub(c, TOPIC, "d", 256, 0, 0);
	for (int got = 0; got < N - amo; got++) {
		m = fc_next(c, 10000);
		i = index_of(m->body, m->len);
		ck_assert_int_ge(i, amo);
		ck_assert_msg(!seen[i], "%d twice", i);
		seen[i] = 1;
		ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_ping(c), 0);
	st = group_stats(p, "d");
	ck_assert_uint_eq(st.dropped, 0);
	ck_assert_uint_eq(st.acked + (uint64_t)amo, N);
	ferry_close(c);
	ferry_close(p);
}
END_TEST

/* Wait until ferry's STATS show an ephemeral group of TOPIC with a
 * member; its name into gname. */
static void
wait_ephemeral(struct ferry *f, char *gname, size_t gsize)
{
	for (int i = 0; i < 500; i++) {
		struct ferry_group_stats *rows;
		size_t n = 0;
		int has = 0;

		ck_assert_int_eq(ferry_stats(f, TOPIC, &rows, &n), 0);
		for (size_t k = 0; k < n && !has; k++)
			if (rows[k].group[0] == '~' && rows[k].members) {
				snprintf(gname, gsize, "%s", rows[k].group);
				has = 1;
			}
		ferry_stats_free(rows);
		if (has)
			return;
		usleep(10000);
	}
	ck_abort_msg("no ephemeral group on %s", TOPIC);
}

/*
 * The clients: libferry returns E_SLOW once from ferry_next() (an async
 * error: the connection stays usable, ferry_err() is 0) and goes on with
 * messages; ferry sub, stopped with SIGSTOP as the new user did, says so
 * on stderr and reads on.
 */
START_TEST(clients_tell_slow_consumer)
{
	enum { N = 20000 };
	struct ferry_group_stats st;
	struct ferry_sub_opts o;
	struct ferry_msg *m;
	struct ferry *p, *l;
	char gname[64], errpath[300], port[16], text[4096];
	int nslow = 0, n = 0, last = -1, r, status;
	uint64_t sid, deadline;
	const char *q;
	pid_t cli;
	FILE *ef;

	ferryd_start(&d, "--fsync", "never", "--ephemeral-max-bytes", "1M",
	    NULL);
	p = fc_connect(d.port, "producer");

	/* libferry: subscribed, then not reading while N go by. */
	l = fc_connect(d.port, "listener");
	memset(&o, 0, sizeof(o));
	o.ephemeral = 1;
	o.mode = FERRY_AT_MOST_ONCE;
	ck_assert_int_eq(ferry_subscribe(l, TOPIC, &o, &sid), 0);
	publish_range(p, 0, N);
	deadline = now_ms() + 20000;
	while (last < N - 1 && now_ms() < deadline) {
		r = ferry_next(l, 5000, &m);
		if (r == FERRY_ESLOW) {
			ck_assert_int_eq(ferry_err(l), 0);
			ck_assert_ptr_nonnull(strstr(ferry_errstr(l),
			    "slow consumer"));
			nslow++;
			continue;
		}
		ck_assert_msg(r == 0, "ferry_next: %d %s", r,
		    ferry_errstr(l));
		ck_assert_uint_eq(m->sid, sid);
		ck_assert_int_gt(index_of(m->body, m->len), last);
		last = index_of(m->body, m->len);
		n++;
		ferry_msg_free(m);
	}
	ck_assert_int_eq(last, N - 1);
	ck_assert_int_eq(nslow, 1);
	ck_assert_int_lt(n, N);
	ck_assert_int_eq(ferry_ping(l), 0);
	ferry_close(l);

	/* ferry sub --ephemeral --no-ack, stopped, then continued. */
	snprintf(errpath, sizeof(errpath), "%s/sub.err", d.dir);
	snprintf(port, sizeof(port), "%d", d.port);
	cli = fork();
	ck_assert_int_ge(cli, 0);
	if (cli == 0) {
		int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int z = open("/dev/null", O_RDWR);

		if (e < 0 || z < 0)
			_exit(126);
		dup2(z, 0);
		dup2(z, 1);
		dup2(e, 2);
		execl(getenv("FERRY"), "ferry", "--port", port, "sub", TOPIC,
		    "--ephemeral", "--no-ack", (char *)NULL);
		_exit(127);
	}
	wait_ephemeral(p, gname, sizeof(gname));
	kill(cli, SIGSTOP);
	publish_range(p, N, 2 * N);
	kill(cli, SIGCONT);
	for (int i = 0; i < 1000; i++) {
		st = group_stats(p, gname);
		if (st.delivered + st.dropped >= N && !st.ready)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.delivered + st.dropped, N);
	ck_assert_uint_gt(st.slow, 0);
	kill(cli, SIGTERM);
	ck_assert_int_eq(waitpid(cli, &status, 0), cli);
	ef = fopen(errpath, "r");
	ck_assert_ptr_nonnull(ef);
	text[fread(text, 1, sizeof(text) - 1, ef)] = '\0';
	fclose(ef);
	fprintf(stderr, "ferry sub said: %s", text);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "ferry sub status %d", status);
	/* One line, once: "ferry: slow consumer, messages lost: ..." */
	ck_assert_ptr_nonnull(q = strstr(text, "slow consumer"));
	ck_assert_ptr_nonnull(strstr(text, "messages dropped"));
	ck_assert_ptr_null(strstr(q + 1, "slow consumer"));
	ferry_close(p);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("slow");
	TCase *tc = tcase_create("slow");
	SRunner *sr;
	int failed;

#if defined(__SANITIZE_ADDRESS__)
	/* ASan keeps freed blocks in a quarantine (256 MB by default),
	 * which would count as ferryd's RSS here. */
	{
		const char *a = getenv("ASAN_OPTIONS");
		char opts[512];

		snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4",
		    a ? a : "", a && *a ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
	}
#endif
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	/* _i: 0 = ephemeral_max_bytes 1M, 1 = 0 (off: the control) */
	tcase_add_loop_test(tc, stalled_listener_is_bounded, 0, 2);
	tcase_add_loop_test(tc, durable_group_never_dropped, 0, 2);
	tcase_add_test(tc, clients_tell_slow_consumer);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
