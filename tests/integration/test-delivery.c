/*
 * test-delivery.c - leases and redelivery through a real ferryd: workers
 * killed or stopped mid-batch, nack with delay, dead-lettering with its
 * history, stale leases, touch, at-most-once, and UNSUB releasing without
 * fault.
 *
 * The broker runs with a 1 s ack timeout and a fast backoff (base 50 ms,
 * cap 200 ms; equal jitter, so a first retry waits 25..50 ms) so that
 * every redelivery happens within a second or two.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness.h"

static struct ferryd d;
static struct fy_dec dec;

static void
setup(void)
{
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	ferryd_start(&d, "--ack-timeout", "1", "--retry-backoff-base", "0.05",
	    "--retry-backoff-max", "0.2", "--max-attempts", "3", NULL);
}

static void
teardown(void)
{
	/* Exit status 0 on SIGTERM: no crash, and under ASan no leak. */
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
	fy_dec_fini(&dec);
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read exactly len bytes from fd within timeout_ms; 1, or 0 on failure. */
static int
read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	char *p = buf;

	while (len) {
		struct pollfd pf = {fd, POLLIN, 0};
		uint64_t now = now_ms();
		ssize_t r;

		if (now >= deadline)
			return 0;
		if (poll(&pf, 1, (int)(deadline - now)) <= 0)
			continue;
		r = read(fd, p, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		p += r;
		len -= (size_t)r;
	}
	return 1;
}

static void
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t r = write(fd, p, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			_exit(10);
		p += r;
		len -= (size_t)r;
	}
}

/*
 * A worker in a forked child (never returns): connects as name, takes n
 * messages of topic's default group (prefetch n; max_attempts is passed
 * on, 0 = the broker's), acks the first acks of
 * them (confirmed), and reports on fd one int32 per message: its body,
 * plus 1000 if it was acked.  Then, if go >= 0, it waits for a byte on go
 * and reports the result of a confirmed ack of each unacked lease; then
 * sleeps until killed.  Exit codes say what failed (the parent sees them
 * only as a missing report).
 */
__attribute__((noreturn))
static void
child_worker(int port, const char *name, const char *topic, int n, int acks,
    uint32_t max_attempts, int fd, int go)
{
	struct ferry_sub_opts o = {.prefetch = (uint32_t)n,
	    .max_attempts = max_attempts};
	struct ferry *f = ferry_connect("127.0.0.1", port, 5000, name);
	uint64_t sid, leases[64];
	int32_t rep[64];
	char c;

	if (n > 64 || !f || ferry_err(f) || ferry_subscribe(f, topic, &o,
	    &sid) != 0)
		_exit(2);
	for (int i = 0; i < n; i++) {
		struct ferry_msg *m;

		if (ferry_next(f, 5000, &m) != 0)
			_exit(3);
		rep[i] = (int32_t)atoi(m->body);
		leases[i] = m->lease;
		if (i < acks) {
			if (ferry_ack(f, sid, m->lease, FERRY_CONFIRM) != 0)
				_exit(4);
			rep[i] += 1000;
		}
		ferry_msg_free(m);
	}
	write_all(fd, rep, (size_t)n * sizeof(rep[0]));
	if (go >= 0) {
		if (read(go, &c, 1) != 1)
			_exit(5);
		for (int i = acks; i < n; i++)
			rep[i - acks] = ferry_ack(f, sid, leases[i],
			    FERRY_CONFIRM);
		write_all(fd, rep, (size_t)(n - acks) * sizeof(rep[0]));
	}
	for (;;)
		pause();
}

static void
child_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}

START_TEST(sigkill_mid_batch)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w;
	int32_t rep[50];
	int state[100] = {0}, seen[100] = {0};	/* 1 held, 2 acked */
	int pfd[2], got;
	uint32_t want;
	pid_t pid;

	/* Exactly what the worker takes: acking frees credit, and what
	 * more it got would be unknown to us. */
	fc_pub_n(p, "kill", 50);
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		child_worker(d.port, "victim", "kill", 50, 20, 0, pfd[1], -1);
	}
	close(pfd[1]);
	ck_assert_msg(read_exact(pfd[0], rep, sizeof(rep), 10000),
	    "no report from the worker");
	close(pfd[0]);
	/* It holds 30 unacked deliveries: kill it without a goodbye. */
	child_reap(pid);
	fc_pub_range(p, "kill", 50, 100);
	for (int i = 0; i < 50; i++) {
		int v = rep[i] % 1000;

		ck_assert_int_eq(v, i);		/* FIFO */
		state[v] = rep[i] >= 1000 ? 2 : 1;
	}
	w = fc_connect(d.port, "survivor");
	fc_sub(w, "kill", NULL, 100, 0, 0);
	for (got = 0; got < 80; got++) {
		struct ferry_msg *m = fc_next(w, 5000);
		int v = fc_body_int(m);

		ck_assert_int_lt(v, 100);
		ck_assert_msg(state[v] != 2, "acked message %d came back", v);
		/* Held by the dead worker: its second attempt. */
		want = state[v] == 1 ? 2 : 1;
		ck_assert_uint_eq(m->attempt, want);
		seen[v]++;
		ck_assert_int_eq(ferry_ack(w, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	fc_none(w, 500);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(seen[i], state[i] != 2);
	ferry_close(w);
	ferry_close(p);
}
END_TEST

START_TEST(sigstop_redelivered_after_ack_timeout)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w;
	int32_t rep[5];
	int seen[5] = {0}, pfd[2], gfd[2], n = 0;
	uint64_t t_pub, first = 0, deadline;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(pipe(gfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		close(gfd[1]);
		/* max_attempts 20: bounced deliveries (below) stay. */
		child_worker(d.port, "sleeper", "stop", 5, 0, 20, pfd[1],
		    gfd[0]);
	}
	close(pfd[1]);
	close(gfd[0]);
	/* Every lease starts after this: deadline >= t_pub + 1000. */
	t_pub = now_ms();
	fc_pub_n(p, "stop", 5);
	ck_assert_msg(read_exact(pfd[0], rep, sizeof(rep), 10000),
	    "no report from the worker");
	/* Stopped, its connection stays open: only the lease saves us. */
	kill(pid, SIGSTOP);
	w = fc_connect(d.port, "rescuer");
	fc_sub(w, "stop", NULL, 10, 0, 0);
	/*
	 * An expired lease gives the stopped worker its credit back, so
	 * some redeliveries may go to it again and expire again: wait for
	 * all five, however many rounds that takes, within a bound.
	 */
	deadline = t_pub + 15000;
	while (n < 5 && now_ms() < deadline) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(w, 200, &m), v;
		uint64_t t = now_ms();

		if (r == FERRY_ETIMEOUT)
			continue;
		ck_assert_msg(r == 0, "%s", ferry_errstr(w));
		v = fc_body_int(m);
		ck_assert_int_lt(v, 5);
		ck_assert_int_eq(seen[v]++, 0);
		ck_assert_uint_ge(m->attempt, 2);
		ck_assert_int_eq(ferry_ack(w, m->sid, m->lease,
		    FERRY_CONFIRM), 0);
		ferry_msg_free(m);
		if (!first)
			first = t;
		n++;
	}
	ck_assert_int_eq(n, 5);
	/* Not before the ack timeout (1 s), not much after (backoff is at
	 * most 200 ms). */
	ck_assert_msg(first >= t_pub + 980, "redelivered after %llu ms",
	    (unsigned long long)(first - t_pub));
	ck_assert_msg(first <= t_pub + 3500, "redelivered after %llu ms",
	    (unsigned long long)(first - t_pub));
	/* Woken up, the stopped worker's leases are stale. */
	kill(pid, SIGCONT);
	ck_assert_int_eq(write(gfd[1], "g", 1), 1);
	ck_assert_msg(read_exact(pfd[0], rep, sizeof(rep), 10000),
	    "no ack results from the worker");
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rep[i], FERRY_ESTALE);
	child_reap(pid);
	close(pfd[0]);
	close(gfd[1]);
	fc_none(w, 300);
	ferry_close(w);
	ferry_close(p);
}
END_TEST

/*
 * A stopped worker must not take its own expired messages back: with two
 * members, one stopped, every message should reach the live one on its
 * second attempt.  (Fails today: an expired lease returns the stopped
 * member's credit and round-robin hands it about half of the
 * redeliveries, each costing another ack timeout and attempt, so with
 * max_attempts 3 some are dead-lettered without ever reaching the idle,
 * healthy worker.)
 */
START_TEST(stopped_worker_gets_no_redeliveries)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w, *q;
	int32_t rep[5];
	int seen[5] = {0}, pfd[2], n = 0;
	uint32_t maxatt = 0;
	uint64_t deadline;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		child_worker(d.port, "stuck", "stuck", 5, 0, 0, pfd[1], -1);
	}
	close(pfd[1]);
	fc_pub_n(p, "stuck", 5);
	ck_assert_msg(read_exact(pfd[0], rep, sizeof(rep), 10000),
	    "no report from the worker");
	close(pfd[0]);
	kill(pid, SIGSTOP);
	w = fc_connect(d.port, "healthy");
	fc_sub(w, "stuck", NULL, 10, 0, 0);
	deadline = now_ms() + 6000;
	while (n < 5 && now_ms() < deadline) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(w, 200, &m), v;

		if (r == FERRY_ETIMEOUT)
			continue;
		ck_assert_msg(r == 0, "%s", ferry_errstr(w));
		v = fc_body_int(m);
		ck_assert_int_lt(v, 5);
		ck_assert_int_eq(seen[v]++, 0);
		if (m->attempt > maxatt)
			maxatt = m->attempt;
		ck_assert_int_eq(ferry_ack(w, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
		n++;
	}
	kill(pid, SIGCONT);
	child_reap(pid);
	q = fc_connect(d.port, "inspector");
	fc_sub(q, "stuck.dlq", NULL, 0, 0, 0);
	ck_assert_msg(n == 5 && maxatt == 2,
	    "the healthy worker got %d of 5 (highest attempt %u); the "
	    "stopped one was handed its expired messages again", n, maxatt);
	fc_none(q, 300);
	ferry_close(q);
	ferry_close(w);
	ferry_close(p);
}
END_TEST

START_TEST(nack_delay_and_history)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w = fc_connect(d.port, "nacker");
	struct ferry *q;
	struct ferry_msg *m, *dl;
	char id[FERRY_ID_MAX + 1];
	uint64_t t0, wall0 = wall_ms();
	uint64_t sid, lease;

	sid = fc_sub(w, "nk", NULL, 0, 0, 0);
	ck_assert_int_eq(ferry_publish_sync(p, "nk", "job", 3, NULL, id), 0);
	m = fc_next(w, 5000);
	ck_assert_uint_eq(m->attempt, 1);
	t0 = now_ms();
	ck_assert_int_eq(ferry_nack(w, sid, m->lease, 600, "boom-1",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	/* Not before the delay. */
	m = fc_next(w, 5000);
	ck_assert_msg(now_ms() - t0 >= 590, "redelivered after %llu ms",
	    (unsigned long long)(now_ms() - t0));
	ck_assert_uint_le(now_ms() - t0, 3000);
	ck_assert_uint_eq(m->attempt, 2);
	ck_assert_str_eq(m->id, id);
	/* Delay 0: at once. */
	t0 = now_ms();
	ck_assert_int_eq(ferry_nack(w, sid, m->lease, 0, "boom-2",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	m = fc_next(w, 5000);
	ck_assert_uint_le(now_ms() - t0, 500);
	ck_assert_uint_eq(m->attempt, 3);
	/* Third failure with max_attempts 3: dead-lettered. */
	lease = m->lease;
	ck_assert_int_eq(ferry_nack(w, sid, lease, -1, "boom-3",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	ck_assert_int_eq(ferry_ack(w, sid, lease, FERRY_CONFIRM),
	    FERRY_ESTALE);
	fc_none(w, 600);

	q = fc_connect(d.port, "inspector");
	fc_sub(q, "nk.dlq", NULL, 0, 0, 0);
	dl = fc_next(q, 5000);
	ck_assert_str_eq(dl->id, id);
	ck_assert_str_eq(dl->topic, "nk.dlq");
	ck_assert_str_eq(dl->body, "job");
	ck_assert_uint_eq(dl->attempt, 1);
	ck_assert(fc_has_hdr(dl, "dlq-topic", "nk"));
	ck_assert(fc_has_hdr(dl, "dlq-group", "default"));
	ck_assert(fc_has_hdr(dl, "dlq-attempts", "3"));
	ck_assert(fc_has_hdr(dl, "dlq-reason", "nacked"));
	ck_assert_uint_eq(dl->nhdr, 4);
	ck_assert_uint_eq(dl->nhist, 3);
	for (int i = 0; i < 3; i++) {
		char e[16];

		snprintf(e, sizeof(e), "boom-%d", i + 1);
		ck_assert_str_eq(dl->hist[i].cause, "nacked");
		ck_assert_str_eq(dl->hist[i].error, e);
		ck_assert_str_eq(dl->hist[i].consumer, "nacker");
		ck_assert_uint_ge(dl->hist[i].at_ms + 20, wall0);
		ck_assert_uint_le(dl->hist[i].at_ms, wall_ms() + 20);
		if (i)
			ck_assert_uint_ge(dl->hist[i].at_ms,
			    dl->hist[i - 1].at_ms);
	}
	/* boom-1 waited its 600 ms delay before the second attempt. */
	ck_assert_uint_ge(dl->hist[1].at_ms - dl->hist[0].at_ms, 580);
	ck_assert_int_eq(ferry_ack(q, dl->sid, dl->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(dl);
	fc_none(q, 200);
	ferry_close(q);
	ferry_close(w);
	ferry_close(p);
}
END_TEST

START_TEST(max_attempts_mixed_causes)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w = fc_connect(d.port, "worker-a");
	struct ferry *b, *q;
	const struct ferry_header hdr[] = {{"trace", "t-1"}};
	struct ferry_pub_opts o = {.id = "poison-1", .hdr = hdr, .nhdr = 1};
	struct ferry_msg *m, *dl;
	uint64_t sid, t0;

	sid = fc_sub(w, "poison", NULL, 0, 300, 0);
	ck_assert_int_eq(ferry_publish_sync(p, "poison", "bad", 3, &o, NULL),
	    0);
	/* Attempt 1: the lease (300 ms) expires. */
	m = fc_next(w, 5000);
	t0 = now_ms();
	ck_assert_uint_eq(m->attempt, 1);
	ferry_msg_free(m);
	m = fc_next(w, 5000);
	ck_assert_uint_ge(now_ms() - t0, 280);
	ck_assert_uint_eq(m->attempt, 2);
	ck_assert_str_eq(m->id, "poison-1");
	/* Attempt 2: nacked. */
	ck_assert_int_eq(ferry_nack(w, sid, m->lease, 0, "bad input",
	    FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	/* Attempt 3: the worker disconnects holding it. */
	m = fc_next(w, 5000);
	ck_assert_uint_eq(m->attempt, 3);
	ferry_msg_free(m);
	ferry_close(w);

	/* Not redelivered to its group. */
	b = fc_connect(d.port, "worker-b");
	fc_sub(b, "poison", NULL, 0, 0, 0);
	fc_none(b, 700);

	q = fc_connect(d.port, "inspector");
	sid = fc_sub(q, "poison.dlq", NULL, 0, 0, 0);
	dl = fc_next(q, 5000);
	ck_assert_str_eq(dl->id, "poison-1");
	ck_assert_uint_eq(dl->len, 3);
	ck_assert_str_eq(dl->body, "bad");
	ck_assert(fc_has_hdr(dl, "trace", "t-1"));
	ck_assert(fc_has_hdr(dl, "dlq-topic", "poison"));
	ck_assert(fc_has_hdr(dl, "dlq-group", "default"));
	ck_assert(fc_has_hdr(dl, "dlq-attempts", "3"));
	ck_assert(fc_has_hdr(dl, "dlq-reason", "disconnected"));
	ck_assert_uint_eq(dl->nhdr, 5);
	ck_assert_uint_eq(dl->nhist, 3);
	ck_assert_str_eq(dl->hist[0].cause, "timeout");
	ck_assert_str_eq(dl->hist[0].error, "");
	ck_assert_str_eq(dl->hist[1].cause, "nacked");
	ck_assert_str_eq(dl->hist[1].error, "bad input");
	ck_assert_str_eq(dl->hist[2].cause, "disconnected");
	ck_assert_str_eq(dl->hist[2].error, "");
	for (int i = 0; i < 3; i++)
		ck_assert_str_eq(dl->hist[i].consumer, "worker-a");
	/* A dead-letter topic never dead-letters again: 5 more failures
	 * and it is still there. */
	for (uint32_t att = 1; att <= 5; att++) {
		ck_assert_uint_eq(dl->attempt, att);
		ck_assert_int_eq(ferry_nack(q, sid, dl->lease, 0, "again",
		    FERRY_CONFIRM), 0);
		ferry_msg_free(dl);
		dl = fc_next(q, 5000);
		ck_assert_str_eq(dl->id, "poison-1");
	}
	ck_assert_uint_eq(dl->attempt, 6);
	ck_assert_int_eq(ferry_ack(q, sid, dl->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(dl);
	fc_none(q, 200);
	fc_none(b, 100);
	ferry_close(q);
	ferry_close(b);
	ferry_close(p);
}
END_TEST

START_TEST(stale_leases)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w = fc_connect(d.port, "slowpoke");
	struct ferry_msg *m1, *m2, *m = NULL;
	uint64_t sid;

	/* A lease long enough that m2 below is acked inside its own on a
	 * loaded machine (300 ms was not, once). */
	sid = fc_sub(w, "st", NULL, 0, 1000, 0);
	fc_pub(p, "st", "x");
	m1 = fc_next(w, 5000);
	/* Past the 1 s lease and its 25..50 ms backoff. */
	usleep(1300 * 1000);
	ck_assert_int_eq(ferry_ack(w, sid, m1->lease, FERRY_CONFIRM),
	    FERRY_ESTALE);
	ck_assert_int_eq(ferry_last_code(w), 8);
	ck_assert_int_eq(ferry_err(w), 0);
	ck_assert_int_eq(ferry_nack(w, sid, m1->lease, 0, NULL,
	    FERRY_CONFIRM), FERRY_ESTALE);
	ck_assert_int_eq(ferry_touch(w, sid, m1->lease, FERRY_CONFIRM),
	    FERRY_ESTALE);
	/* It was redelivered, with a new lease. */
	m2 = fc_next(w, 5000);
	ck_assert_str_eq(m2->id, m1->id);
	ck_assert_uint_eq(m2->attempt, 2);
	ck_assert_uint_ne(m2->lease, m1->lease);
	ck_assert_int_eq(ferry_ack(w, sid, m2->lease, FERRY_CONFIRM), 0);
	/* Acking twice. */
	ck_assert_int_eq(ferry_ack(w, sid, m2->lease, FERRY_CONFIRM),
	    FERRY_ESTALE);
	/* Fire-and-forget: the refusal comes back asynchronously. */
	ck_assert_int_eq(ferry_ack(w, sid, m2->lease, 0), 0);
	ck_assert_int_eq(ferry_ping(w), 0);
	ck_assert_int_eq(ferry_next(w, 1000, &m), FERRY_ESTALE);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(ferry_err(w), 0);
	/* Unknown subscription. */
	ck_assert_int_eq(ferry_ack(w, sid + 100, m2->lease, FERRY_CONFIRM),
	    FERRY_ENOSUB);
	ferry_msg_free(m1);
	ferry_msg_free(m2);
	fc_none(w, 300);
	ferry_close(w);
	ferry_close(p);
}
END_TEST

START_TEST(touch_extends_lease)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *a = fc_connect(d.port, "toucher");
	struct ferry *b;
	struct ferry_msg *m;
	uint64_t sid, t0;

	sid = fc_sub(a, "tc", NULL, 0, 400, 0);
	fc_pub(p, "tc", "long job");
	m = fc_next(a, 5000);
	t0 = now_ms();
	b = fc_connect(d.port, "other");
	fc_sub(b, "tc", NULL, 0, 0, 0);
	/* 1.5 s of work, three times the lease, touching every 200 ms. */
	for (int i = 0; i < 7; i++) {
		usleep(200 * 1000);
		ck_assert_int_eq(ferry_touch(a, sid, m->lease,
		    FERRY_CONFIRM), 0);
	}
	ck_assert_uint_ge(now_ms() - t0, 1400);
	fc_none(b, 100);
	fc_none(a, 100);
	ck_assert_int_eq(ferry_ack(a, sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	/* Without touches the same lease does expire. */
	fc_pub(p, "tc", "short");
	m = fc_next(a, 5000);
	ck_assert_uint_eq(m->attempt, 1);
	usleep(600 * 1000);
	ck_assert_int_eq(ferry_touch(a, sid, m->lease, FERRY_CONFIRM),
	    FERRY_ESTALE);
	ferry_msg_free(m);
	ferry_close(b);
	ferry_close(a);
	ferry_close(p);
}
END_TEST

START_TEST(at_most_once)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *a = fc_connect(d.port, "fast-and-loose");
	struct ferry *w;
	struct ferry_sub_opts o = {.mode = FERRY_AT_MOST_ONCE};
	struct ferry_msg *m = NULL;
	uint64_t sid;

	ck_assert_int_eq(ferry_subscribe(a, "amo", &o, &sid), 0);
	fc_pub_n(p, "amo", 20);
	for (int i = 0; i < 20; i++) {
		m = fc_next(a, 5000);
		ck_assert_int_eq(fc_body_int(m), i);
		ck_assert_uint_eq(m->lease, 0);
		ck_assert_uint_eq(m->attempt, 1);
		if (i < 19)
			ferry_msg_free(m);
	}
	/* No lease to settle. */
	ck_assert_int_eq(ferry_ack(a, sid, m->lease, FERRY_CONFIRM),
	    FERRY_EMODE);
	ck_assert_int_eq(ferry_nack(a, sid, m->lease, 0, NULL,
	    FERRY_CONFIRM), FERRY_EMODE);
	ck_assert_int_eq(ferry_touch(a, sid, m->lease, FERRY_CONFIRM),
	    FERRY_EMODE);
	ck_assert_int_eq(ferry_ack(a, sid, 1, 0), 0);
	ck_assert_int_eq(ferry_ping(a), 0);
	ferry_msg_free(m);
	ck_assert_int_eq(ferry_next(a, 1000, &m), FERRY_EMODE);
	fc_none(a, 300);
	/* Delivered but never read: gone with the connection. */
	fc_pub_n(p, "amo", 20);
	ck_assert_int_eq(ferry_ping(a), 0);
	ferry_close(a);
	w = fc_connect(d.port, "careful");
	fc_sub(w, "amo", NULL, 0, 0, 0);
	fc_none(w, 700);
	fc_pub(p, "amo", "40");
	m = fc_next(w, 5000);
	ck_assert_int_eq(fc_body_int(m), 40);
	ck_assert_uint_eq(m->attempt, 1);
	ferry_msg_free(m);
	ferry_close(w);
	ferry_close(p);

	/* Settled at-most-once deliveries stay settled across a restart
	 * (they used to come back: no settle record was journaled). */
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
	w = fc_connect(d.port, "after-restart");
	sid = fc_sub(w, "amo", NULL, 0, 0, 0);
	/* Only "40", never acked by "careful", comes back. */
	m = fc_next(w, 5000);
	ck_assert_int_eq(fc_body_int(m), 40);
	ck_assert_uint_eq(m->attempt, 2);
	ck_assert_int_eq(ferry_ack(w, sid, m->lease, FERRY_CONFIRM), 0);
	ferry_msg_free(m);
	fc_none(w, 700);
	ferry_close(w);
}
END_TEST

/*
 * A fire-and-forget publish that an at-most-once member takes in the same
 * turn is never journaled: its record is taken back with its settlement.
 * Confirmed publishes, and those that wait in a group, are journaled as
 * before, and nothing settled comes back after a restart.
 */
START_TEST(amo_same_turn_leaves_no_record)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *a = fc_connect(d.port, "amo-reader");
	struct ferry_sub_opts o = {.mode = FERRY_AT_MOST_ONCE};
	struct ferry_msg *m;
	char body[16];
	uint64_t sid;

	ck_assert_int_eq(ferry_subscribe(a, "ff", &o, &sid), 0);
	/* One at a time, each taken at once: all 30 leave no record. */
	for (int i = 0; i < 30; i++) {
		int n = snprintf(body, sizeof(body), "%d", i);

		ck_assert_int_eq(ferry_publish(p, "ff", body, (size_t)n, NULL),
		    0);
		ck_assert_int_eq(ferry_flush(p), 0);
		m = fc_next(a, 5000);
		ck_assert_int_eq(fc_body_int(m), i);
		ferry_msg_free(m);
	}
	/* Confirmed: journaled (and settled) as before. */
	fc_pub(p, "ff", "30");
	m = fc_next(a, 5000);
	ck_assert_int_eq(fc_body_int(m), 30);
	ferry_msg_free(m);
	ferry_close(a);
	/* No member: this one waits in the group, journaled. */
	ck_assert_int_eq(ferry_publish(p, "ff", "31", 2, NULL), 0);
	ck_assert_int_eq(ferry_ping(p), 0);
	ferry_close(p);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ck_assert_msg(ferryd_log_has(&d, "; 30 publishes settled before they "
	    "were written"), "expected 30 publishes taken back");
	ferryd_restart(&d);
	a = fc_connect(d.port, "after-restart");
	fc_sub(a, "ff", NULL, 0, 0, 0);
	m = fc_next(a, 5000);
	ck_assert_int_eq(fc_body_int(m), 31);
	ferry_msg_free(m);
	fc_none(a, 500);
	ferry_close(a);
}
END_TEST

START_TEST(unsub_releases_without_fault)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *a = fc_connect(d.port, "leaver");
	struct ferry *b, *q;
	uint64_t sid, t0;
	int seen[10] = {0};

	/* max_attempts 1: a counted release would dead-letter at once. */
	sid = fc_sub(a, "uns", NULL, 10, 0, 1);
	fc_pub_n(p, "uns", 10);
	for (int i = 0; i < 10; i++) {
		struct ferry_msg *m = fc_next(a, 5000);

		ck_assert_int_eq(fc_body_int(m), i);
		if (i < 3)
			ck_assert_int_eq(ferry_ack(a, sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_int_eq(ferry_unsubscribe(a, sid), 0);
	t0 = now_ms();
	ck_assert_int_eq(ferry_unsubscribe(a, sid), FERRY_ENOSUB);
	b = fc_connect(d.port, "stayer");
	fc_sub(b, "uns", NULL, 0, 0, 0);
	for (int i = 3; i < 10; i++) {
		struct ferry_msg *m = fc_next(b, 5000);
		int v = fc_body_int(m);

		/* Redeliveries may come in any order. */
		ck_assert_int_ge(v, 3);
		ck_assert_int_lt(v, 10);
		ck_assert_int_eq(seen[v]++, 0);
		/* Same attempt number: releasing is no fault. */
		ck_assert_uint_eq(m->attempt, 1);
		ck_assert_int_eq(ferry_ack(b, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	/* No backoff either. */
	ck_assert_uint_le(now_ms() - t0, 1000);
	fc_none(b, 300);
	q = fc_connect(d.port, "inspector");
	fc_sub(q, "uns.dlq", NULL, 0, 0, 0);
	fc_none(q, 300);
	/* a gets nothing more on the ended subscription. */
	fc_none(a, 100);
	ferry_close(q);
	ferry_close(b);
	ferry_close(a);
	ferry_close(p);
}
END_TEST

/*
 * Regression: with ACK and UNSUB in one packet, the broker used to pump
 * the group after the ACK, handing the leaving member one more message,
 * which the UNSUB then released (a spurious history entry).
 */
START_TEST(ack_and_unsub_in_one_packet)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *c, *q;
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f = {.type = FY_T_SUB, .rid = 1};
	struct fy_enc enc;
	struct ferry_msg *m;
	uint64_t sid, lease, deadline;
	int r;

	f.sub.topic = (struct fy_str){"au", 2};
	f.sub.prefetch = 1;
	f.sub.max_attempts = 1;
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_OK);
	sid = f.ok.sid;
	fc_pub_n(p, "au", 3);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_MSG);
	ck_assert_uint_eq(f.msg.body.len, 1);
	ck_assert_int_eq(f.msg.body.p[0], '0');
	lease = f.msg.lease;

	fy_enc_init(&enc);
	f = (struct fy_frame){.type = FY_T_ACK};
	f.ack.sid = sid;
	f.ack.one = lease;
	f.ack.leases = &f.ack.one;
	f.ack.nleases = 1;
	ck_assert_int_eq(fy_encode(&enc, &f), FY_OK);
	f = (struct fy_frame){.type = FY_T_UNSUB, .rid = 2};
	f.unsub.sid = sid;
	ck_assert_int_eq(fy_encode(&enc, &f), FY_OK);
	raw_send(fd, enc.sb.data, enc.sb.size);	/* one write */
	fy_enc_fini(&enc);
	/* Only the UNSUB's OK comes back: no MSG. */
	deadline = now_ms() + 5000;
	for (;;) {
		r = raw_recv_frame(fd, &dec, &f, 5000);
		ck_assert_int_eq(r, 1);
		ck_assert_msg(f.type != FY_T_MSG,
		    "the leaving member got message '%.*s'",
		    (int)f.msg.body.len, f.msg.body.p);
		ck_assert_int_eq(f.type, FY_T_OK);
		if (f.rid == 2)
			break;
		ck_assert_uint_lt(now_ms(), deadline);
	}
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 300), -1);

	c = fc_connect(d.port, "next");
	sid = fc_sub(c, "au", NULL, 0, 0, 0);
	for (int i = 1; i < 3; i++) {
		m = fc_next(c, 5000);
		ck_assert_int_eq(fc_body_int(m), i);
		ck_assert_uint_eq(m->attempt, 1);
		if (i == 1)
			ck_assert_int_eq(ferry_nack(c, sid, m->lease, 0,
			    "fail", FERRY_CONFIRM), 0);
		else
			ck_assert_int_eq(ferry_ack(c, sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	fc_none(c, 300);
	/* Message 1's history holds its one real failure, nothing else. */
	q = fc_connect(d.port, "inspector");
	fc_sub(q, "au.dlq", NULL, 0, 0, 0);
	m = fc_next(q, 5000);
	ck_assert_str_eq(m->body, "1");
	ck_assert_uint_eq(m->nhist, 1);
	ck_assert_str_eq(m->hist[0].cause, "nacked");
	ck_assert_str_eq(m->hist[0].consumer, "next");
	ferry_msg_free(m);
	fc_none(q, 200);
	close(fd);
	ferry_close(q);
	ferry_close(c);
	ferry_close(p);
}
END_TEST

START_TEST(prefetch_limits_inflight)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *w = fc_connect(d.port, "limited");
	struct ferry_msg *m[5];
	struct ferry_msg *x;
	uint64_t sid;

	/* A long lease of its own, so nothing expires meanwhile. */
	sid = fc_sub(w, "pf", NULL, 5, 10000, 0);
	fc_pub_n(p, "pf", 20);
	/* Whatever was sent before the ping's answer has been read. */
	ck_assert_int_eq(ferry_ping(w), 0);
	for (int i = 0; i < 5; i++) {
		m[i] = fc_next(w, 0);
		ck_assert_int_eq(fc_body_int(m[i]), i);
	}
	fc_none(w, 300);
	/* One ack, one more delivery. */
	ck_assert_int_eq(ferry_ack(w, sid, m[0]->lease, 0), 0);
	x = fc_next(w, 5000);
	ck_assert_int_eq(fc_body_int(x), 5);
	fc_none(w, 300);
	/* A nack gives credit back too; the nacked one comes first. */
	ck_assert_int_eq(ferry_nack(w, sid, m[1]->lease, 0, NULL, 0), 0);
	ferry_msg_free(x);
	x = fc_next(w, 5000);
	ck_assert_int_eq(fc_body_int(x), 1);
	ck_assert_uint_eq(x->attempt, 2);
	fc_none(w, 300);
	for (int i = 0; i < 5; i++)
		ferry_msg_free(m[i]);
	ferry_msg_free(x);
	ferry_close(w);
	ferry_close(p);
}
END_TEST

/* ACK with several leases, one of them stale: the others are settled. */
START_TEST(ack_many_partly_stale)
{
	struct ferry *p = fc_connect(d.port, "producer");
	struct ferry *c;
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f = {.type = FY_T_SUB, .rid = 1};
	uint64_t sid, l[3], many[3];

	f.sub.topic = (struct fy_str){"am", 2};
	f.sub.prefetch = 3;
	f.sub.ack_timeout_ms = 10000;
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_OK);
	sid = f.ok.sid;
	fc_pub_n(p, "am", 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
		ck_assert_int_eq(f.type, FY_T_MSG);
		ck_assert_uint_eq(f.msg.attempt, 1);
		l[i] = f.msg.lease;
	}
	many[0] = l[0];
	many[1] = l[0] + l[1] + l[2] + 1000;	/* no such lease */
	many[2] = l[2];
	f = (struct fy_frame){.type = FY_T_ACK, .rid = 2};
	f.ack.sid = sid;
	f.ack.leases = many;
	f.ack.nleases = 3;
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_ERR);
	ck_assert_uint_eq(f.rid, 2);
	ck_assert_uint_eq(f.err.code, FY_E_STALE);
	/* l[0] and l[2] were settled by it, l[1] was not. */
	for (int i = 0; i < 3; i++) {
		f = (struct fy_frame){.type = FY_T_ACK, .rid = 3 + (uint64_t)i};
		f.ack.sid = sid;
		f.ack.one = l[i];
		f.ack.leases = &f.ack.one;
		f.ack.nleases = 1;
		raw_send_frame(fd, &f);
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
		ck_assert_uint_eq(f.rid, 3 + (uint64_t)i);
		if (i == 1) {
			ck_assert_int_eq(f.type, FY_T_OK);
		} else {
			ck_assert_int_eq(f.type, FY_T_ERR);
			ck_assert_uint_eq(f.err.code, FY_E_STALE);
		}
	}
	close(fd);
	/* All three are gone for good. */
	c = fc_connect(d.port, "after");
	fc_sub(c, "am", NULL, 0, 0, 0);
	fc_none(c, 500);
	ferry_close(c);
	ferry_close(p);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("delivery");
	TCase *tc = tcase_create("delivery");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sigkill_mid_batch);
	tcase_add_test(tc, sigstop_redelivered_after_ack_timeout);
	tcase_add_test(tc, stopped_worker_gets_no_redeliveries);
	tcase_add_test(tc, nack_delay_and_history);
	tcase_add_test(tc, max_attempts_mixed_causes);
	tcase_add_test(tc, stale_leases);
	tcase_add_test(tc, touch_extends_lease);
	tcase_add_test(tc, at_most_once);
	tcase_add_test(tc, amo_same_turn_leaves_no_record);
	tcase_add_test(tc, unsub_releases_without_fault);
	tcase_add_test(tc, ack_and_unsub_in_one_packet);
	tcase_add_test(tc, prefetch_limits_inflight);
	tcase_add_test(tc, ack_many_partly_stale);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
