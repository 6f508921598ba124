/*
 * test-limits.c - abuse limits: topics and groups, idle clients, and a
 * client that writes requests but does not read the replies.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static struct ferryd d;
static struct fy_dec dec;

/*
 * No idle timeout but in the test of it: a client of another test that
 * the machine's load keeps from speaking for that long would be closed
 * (send() failing with EPIPE), whatever the limit under test.
 */
static void
setup(void)
{
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	ferryd_start(&d, "--max-topics", "3", "--max-groups", "2",
	    "--max-frame-size", "16K", "--max-message-size", "1K",
	    "--max-output-buffer", "64K", NULL);
}

static void
setup_idle(void)
{
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	ferryd_start(&d, "--idle-timeout", "1", NULL);
}

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
	fy_dec_fini(&dec);
}

/* Send f and return the reply's type; *code gets an ERR's code. */
static int
request(int fd, struct fy_frame *f, uint32_t *code)
{
	raw_send_frame(fd, f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, f, 5000), 1);
	*code = f->type == FY_T_ERR ? f->err.code : 0;
	return f->type;
}

static uint32_t
pub(int fd, const char *topic)
{
	struct fy_frame f = {.type = FY_T_PUB, .rid = 1};
	uint32_t code;

	f.pub.topic = (struct fy_str){topic, (uint32_t)strlen(topic)};
	f.pub.one.body = (struct fy_str){"x", 1};
	f.pub.msgs = &f.pub.one;
	f.pub.nmsgs = 1;
	request(fd, &f, &code);
	return code;
}

static uint32_t
sub(int fd, const char *topic, const char *group)
{
	struct fy_frame f = {.type = FY_T_SUB, .rid = 2};
	uint32_t code;

	f.sub.topic = (struct fy_str){topic, (uint32_t)strlen(topic)};
	f.sub.group = (struct fy_str){group, (uint32_t)strlen(group)};
	request(fd, &f, &code);
	return code;
}

START_TEST(topic_and_group_limits)
{
	int fd = raw_hello(d.port, &dec), pfd = raw_hello(d.port, &dec);

	/* Groups on an empty topic, so no delivery interleaves. */
	ck_assert_uint_eq(sub(fd, "t1", "g1"), 0);
	ck_assert_uint_eq(sub(fd, "t1", "g2"), 0);
	ck_assert_uint_eq(sub(fd, "t1", "g3"), FY_E_LIMIT);
	ck_assert_uint_eq(sub(fd, "t1", "g1"), 0);	/* joining is fine */
	ck_assert_uint_eq(pub(pfd, "t2"), 0);
	ck_assert_uint_eq(pub(pfd, "t3"), 0);
	ck_assert_uint_eq(pub(pfd, "t4"), FY_E_LIMIT);
	ck_assert_uint_eq(pub(pfd, "t2"), 0);	/* existing ones work */
	close(fd);
	close(pfd);
}
END_TEST

START_TEST(idle_client_closed)
{
	/* Before the idle client's HELLO: its timer cannot start earlier. */
	uint64_t t0 = now_ms(), deadline = t0 + 10000;
	int idle = raw_hello(d.port, &dec);
	int busy = raw_hello(d.port, &dec);
	struct pollfd pf = {idle, POLLIN, 0};
	struct fy_frame f;
	int pings = 0;

	/* busy pings (every 50 ms: each wait is for the idle one's close)
	 * and stays; idle says nothing and is closed after 1 s. */
	while (poll(&pf, 1, 50) == 0 && now_ms() < deadline) {
		struct fy_frame p = {.type = FY_T_PING, .rid = 5};
		uint32_t code;

		ck_assert_int_eq(request(busy, &p, &code), FY_T_OK);
		pings++;
	}
	ck_assert_int_eq(raw_recv_frame(idle, &dec, &f, 3000), 1);
	ck_assert_int_eq(f.type, FY_T_ERR);
	ck_assert_uint_eq(f.err.code, FY_E_IDLE);
	ck_assert_int_eq(raw_recv_frame(idle, &dec, &f, 3000), 0);
	/* libevent's timers run on a clock with a 4 ms tick. */
	ck_assert_uint_ge(now_ms() - t0, 990);
	ck_assert_int_gt(pings, 0);
	{
		struct fy_frame p = {.type = FY_T_PING, .rid = 6};
		uint32_t code;

		ck_assert_int_eq(request(busy, &p, &code), FY_T_OK);
	}
	close(idle);
	close(busy);
}
END_TEST

#define NPEEK 50000

START_TEST(unread_replies_do_not_grow_memory)
{
	int fd = raw_hello(d.port, &dec), got = 0;
	long before, during;
	struct fy_enc e;
	uint64_t deadline = now_ms() + 40000, idle_since = 0;
	static char body[1000];
	struct fy_frame f;
	size_t off = 0;

	/* One 1000-byte message held in group g of topic "big". */
	ck_assert_uint_eq(sub(fd, "big", "g"), 0);
	f = (struct fy_frame){.type = FY_T_UNSUB, .rid = 3};
	f.unsub.sid = 1;
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	memset(body, 'b', sizeof(body));
	f = (struct fy_frame){.type = FY_T_PUB, .rid = 4};
	f.pub.topic = (struct fy_str){"big", 3};
	f.pub.one.body = (struct fy_str){body, sizeof(body)};
	f.pub.msgs = &f.pub.one;
	f.pub.nmsgs = 1;
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_OK);

	/* 50,000 PEEKs, each answered with that message, ~55 MB nobody
	 * reads: far more than max_output_buffer and the socket buffers. */
	fy_enc_init(&e);
	for (int i = 0; i < NPEEK; i++) {
		struct fy_frame p = {.type = FY_T_PEEK, .rid = (uint64_t)i + 1};

		p.query.topic = (struct fy_str){"big", 3};
		p.query.group = (struct fy_str){"g", 1};
		ck_assert_int_eq(fy_encode(&e, &p), FY_OK);
	}
	before = proc_status_kb(d.pid, "VmRSS");
	fcntl(fd, F_SETFL, O_NONBLOCK);
	while (off < e.sb.size && now_ms() < deadline) {
		ssize_t r = send(fd, e.sb.data + off, e.sb.size - off,
		    MSG_NOSIGNAL);

		if (r > 0) {
			off += (size_t)r;
			idle_since = 0;
			continue;
		}
		ck_assert_int_eq(errno, EAGAIN);
		if (!idle_since)
			idle_since = now_ms();
		else if (now_ms() - idle_since > 500)
			break;	/* ferryd stopped reading us: good */
		usleep(10000);
	}
	/* The requests may all fit in ferryd's socket buffer; what matters
	 * is that it does not turn them into 55 MB of replies in memory.
	 * Give it time to do whatever it would. */
	usleep(700000);
	during = proc_status_kb(d.pid, "VmRSS");
	fprintf(stderr, "unread replies: sent %zu of %zu bytes, RSS %ld -> "
	    "%ld kB\n", off, e.sb.size, before, during);
	ck_assert_int_lt(during - before, 16 * 1024);
	/* Now read: every reply comes, in order, and the rest of the
	 * requests go through. */
	while (got < NPEEK && now_ms() < deadline) {
		struct pollfd pf = {fd, POLLIN, 0};

		if (off < e.sb.size) {
			ssize_t r = send(fd, e.sb.data + off,
			    e.sb.size - off, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (r > 0)
				off += (size_t)r;
		}
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
		ck_assert_int_eq(f.type, FY_T_MSG);
		ck_assert_uint_eq(f.rid, (uint64_t)got + 1);
		ck_assert_uint_eq(f.msg.body.len, sizeof(body));
		got++;
	}
	ck_assert_int_eq(got, NPEEK);
	ck_assert_uint_eq(off, e.sb.size);
	fy_enc_fini(&e);
	close(fd);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("limits");
	TCase *tc = tcase_create("limits");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, topic_and_group_limits);
	tcase_add_test(tc, unread_replies_do_not_grow_memory);
	suite_add_tcase(s, tc);
	tc = tcase_create("idle");
	tcase_add_checked_fixture(tc, setup_idle, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, idle_client_closed);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
