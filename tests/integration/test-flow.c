/*
 * test-flow.c - flow control: a publisher faster than its consumers is
 * slowed by TCP, not refused, and a stuck consumer does not stop it.
 *
 * A child process publishes fire-and-forget as fast as its socket takes
 * it; the test process consumes slowly (prefetch 10, one ack at a time)
 * and samples the group's ready count.  With flow_high_water = 500 the
 * group never holds much more than that while the consumer works; then
 * the consumer stops for good, and within a few seconds everything the
 * publisher sent is enqueued.  With flow_high_water = 0 (off) the same
 * run lets the backlog grow far past it: the control that shows the
 * bound comes from flow control.
 *
 * And a publisher whose socket never runs dry does not hold deliveries
 * back: ferryd reads a bounded amount per connection per loop turn, and
 * every turn ends in the flush that writes the journal and sends.
 *
 * And the publisher's own side holds little: when ferryd stops reading,
 * libferry blocks the caller after a few hundred KiB (its write buffer
 * and the kernel's unsent bytes), so back-pressure reaches the producer
 * before its messages are tens of milliseconds old.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness.h"

#define TOPIC "flow.t"
#define HIGH_WATER 500
#define TOTAL 30000
#define FLOOD_TOPIC "flood.t"
#define FLOOD_BYTES (16u << 20)	/* above loopback's socket buffers */

static struct ferryd d;
static pid_t producer = -1;

static void
teardown(void)
{
	if (producer > 0) {
		kill(producer, SIGKILL);
		waitpid(producer, NULL, 0);
		producer = -1;
	}
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* The child: TOTAL fire-and-forget publishes, then exit 0 (bounded by
 * alarm). */
static void
publish_all(int port)
{
	struct ferry *f;
	char body[100];

	alarm(60);
	memset(body, 'p', sizeof(body));
	if (!(f = ferry_connect("127.0.0.1", port, 5000, "producer")) ||
	    ferry_err(f) != 0)
		_exit(2);
	for (int i = 0; i < TOTAL; i++)
		if (ferry_publish(f, TOPIC, body, sizeof(body), NULL) != 0)
			_exit(3);
	if (ferry_ping(f) != 0)
		_exit(4);
	ferry_close(f);
	_exit(0);
}

static struct ferry_group_stats
group_stats(struct ferry *f)
{
	struct ferry_group_stats *rows, out;
	size_t n = 0;
	int found = 0;

	memset(&out, 0, sizeof(out));
	ck_assert_int_eq(ferry_stats(f, TOPIC, &rows, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(rows[i].group, "g")) {
			out = rows[i];
			found = 1;
		}
	ferry_stats_free(rows);
	ck_assert(found);
	return out;
}

START_TEST(slow_consumer_slows_publisher)
{
	int on = _i == 0;
	struct ferry *c, *q;
	struct ferry_msg *m;
	struct ferry_group_stats st;
	uint64_t most = 0, deadline;
	char hw[16];

	snprintf(hw, sizeof(hw), "%d", on ? HIGH_WATER : 0);
	ferryd_start(&d, "--fsync", "never", "--flow-high-water", hw, NULL);
	c = fc_connect(d.port, "slow");
	q = fc_connect(d.port, "stats");
	fc_sub(c, TOPIC, "g", 10, 0, 0);
	/* A first delivery: the group's consumers are consuming. */
	fc_pub(q, TOPIC, "warm-up");
	m = fc_next(c, 5000);
	ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
	ferry_msg_free(m);

	producer = fork();
	ck_assert_int_ge(producer, 0);
	if (producer == 0)
		publish_all(d.port);

	/* Consume slowly for 2 s, sampling the backlog. */
	deadline = now_ms() + 2000;
	for (int i = 0; now_ms() < deadline && i < 100000; i++) {
		if ((m = fc_next(c, 5000))) {
			ck_assert_int_eq(ferry_ack(c, m->sid, m->lease, 0), 0);
			ferry_msg_free(m);
		}
		if (i % 20 == 0) {
			st = group_stats(q);
			if (st.ready > most)
				most = st.ready;
		}
		usleep(200);
	}
	st = group_stats(q);
	fprintf(stderr, "flow_high_water %s: at most %llu ready, %llu of %d "
	    "enqueued after 2 s\n", hw, (unsigned long long)most,
	    (unsigned long long)st.enqueued, TOTAL + 1);
	if (on) {
		ck_assert_msg(most <= HIGH_WATER + 16, "%llu ready",
		    (unsigned long long)most);
		ck_assert_uint_lt(st.enqueued, TOTAL);
	} else {
		ck_assert_uint_gt(most, 4 * HIGH_WATER);
	}

	/* The consumer stops: the publisher is not held for it. */
	deadline = now_ms() + 15000;
	while ((st = group_stats(q)).enqueued < TOTAL + 1 &&
	    now_ms() < deadline)
		usleep(50 * 1000);
	ck_assert_uint_eq(st.enqueued, TOTAL + 1);
	{
		int status = 0;

		ck_assert_int_eq(waitpid(producer, &status, 0), producer);
		producer = -1;
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	ferry_close(c);
	ferry_close(q);
}
END_TEST

/*
 * With flow control off, only the shape of the loop turn can let a
 * delivery out while the publisher is still writing.  Before, the flush
 * ran below the reads' priority and waited for the publisher's socket to
 * be empty: the first delivery came after the last publish was read.
 */
START_TEST(deliveries_flow_while_a_publisher_floods)
{
	struct fy_frame f = {.type = FY_T_PUB};
	struct fy_dec dec;
	struct fy_enc e;
	struct ferry *c;
	struct ferry_msg *m;
	char body[100];
	size_t off = 0, unsent = 0;
	uint64_t deadline;
	int fd, got = 0;

	ferryd_start(&d, "--fsync", "never", "--flow-high-water", "0", NULL);
	c = fc_connect(d.port, "consumer");
	fc_sub(c, FLOOD_TOPIC, "g", 1000, 0, 0);
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	fd = raw_hello(d.port, &dec);
	memset(body, 'f', sizeof(body));
	f.pub.topic = (struct fy_str){FLOOD_TOPIC, strlen(FLOOD_TOPIC)};
	f.pub.one.body = (struct fy_str){body, sizeof(body)};
	f.pub.msgs = &f.pub.one;
	f.pub.nmsgs = 1;
	fy_enc_init(&e);
	while (e.sb.size < FLOOD_BYTES)
		ck_assert_int_eq(fy_encode(&e, &f), FY_OK);

	/* Keep the publisher's socket full; look for a delivery between
	 * sends. */
	deadline = now_ms() + 30000;
	while (off < e.sb.size && now_ms() < deadline) {
		struct pollfd pf = {fd, POLLOUT, 0};
		ssize_t n;

		poll(&pf, 1, 100);
		n = send(fd, e.sb.data + off, e.sb.size - off,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else
			ck_assert_msg(errno == EAGAIN, "send: %s",
			    strerror(errno));
		if (!got && ferry_next(c, 0, &m) == 0) {
			got = 1;
			unsent = e.sb.size - off;
			ferry_msg_free(m);
		}
	}
	ck_assert_uint_eq(off, e.sb.size);
	fprintf(stderr, "flood: first delivery with %zu of %zu bytes of "
	    "publishes still unsent\n", unsent, (size_t)e.sb.size);
	ck_assert_msg(got, "no delivery while %zu bytes of publishes were "
	    "sent", (size_t)e.sb.size);
	fy_enc_fini(&e);
	fy_dec_fini(&dec);
	close(fd);
	ferry_close(c);
}
END_TEST

/*
 * ferryd stopped (SIGSTOP): how much does a fire-and-forget producer get
 * rid of before a publish blocks?  Its write buffer once held 4 MiB and
 * the kernel up to 4 MB more, all stamped and waiting: at 800k msgs/s a
 * flat-out publisher's messages were ~60 ms old on delivery (bench-peers
 * W2 median).  Now the caller blocks at 256 KiB plus the kernel's 128 KiB
 * of unsent bytes plus what ferryd's socket had taken.
 */
#define STALL_BOUND (1536u << 10)

START_TEST(stalled_broker_blocks_publisher_soon)
{
	struct ferry *f;
	char body[100];
	size_t sent = 0;
	int r = 0;

	ferryd_start(&d, "--fsync", "never", NULL);
	ck_assert_ptr_nonnull(f = ferry_connect("127.0.0.1", d.port, 300,
	    "producer"));
	ck_assert_int_eq(ferry_err(f), 0);
	memset(body, 's', sizeof(body));
	ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
	/* Bounded: 16 MB of publishes, or the first that blocks 300 ms. */
	while (sent < (16u << 20) &&
	    (r = ferry_publish(f, TOPIC, body, sizeof(body), NULL)) == 0)
		sent += sizeof(body);
	ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
	fprintf(stderr, "stalled: %zu bytes of bodies taken before a publish "
	    "blocked (%s)\n", sent, ferry_strerror(r));
	ck_assert_int_eq(r, FERRY_ETIMEOUT);
	ck_assert_msg(sent < STALL_BOUND, "%zu bytes taken while ferryd read "
	    "nothing", sent);
	ferry_close(f);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("flow");
	TCase *tc = tcase_create("flow");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	/* _i: 0 = flow_high_water 500, 1 = off (the control) */
	tcase_add_loop_test(tc, slow_consumer_slows_publisher, 0, 2);
	tcase_add_test(tc, deliveries_flow_while_a_publisher_floods);
	tcase_add_test(tc, stalled_broker_blocks_publisher_soon);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
