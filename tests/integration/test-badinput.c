/*
 * test-badinput.c - malformed and hostile input against a real ferryd:
 * each gets an error frame or a closed connection, never a crash, and
 * other clients keep being served.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct ferryd d;
static struct fy_dec dec;

static void
setup(void)
{
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	ferryd_start(&d, "--handshake-timeout", "0.5",
	    "--max-message-size", "1K", "--max-frame-size", "64K",
	    "--max-connections", "20", NULL);
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

/* A handshaken client is still served: the daemon is alive and well. */
static void
assert_served(void)
{
	struct fy_frame f = {.type = FY_T_PING, .rid = 77};
	int fd = raw_hello(d.port, &dec);

	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_OK);
	ck_assert_uint_eq(f.rid, 77);
	close(fd);
}

/* Expect an ERR with code, then (if closes) the connection closed. */
static void
expect_err(int fd, uint32_t code, uint64_t rid, int closes)
{
	struct fy_frame f;

	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_ERR);
	ck_assert_uint_eq(f.err.code, code);
	ck_assert_uint_eq(f.rid, rid);
	ck_assert_uint_gt(f.err.msg.len, 0);
	if (closes)
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
}

START_TEST(garbage_bytes)
{
	int keep = raw_hello(d.port, &dec);
	int fd = raw_connect(d.port);
	struct fy_frame f = {.type = FY_T_PING, .rid = 5};

	/* An HTTP request: its first four bytes read as a huge length. */
	raw_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	expect_err(fd, FY_E_TOOBIG, 0, 1);
	close(fd);
	/* The connection opened before is unaffected. */
	raw_send_frame(keep, &f);
	ck_assert_int_eq(raw_recv_frame(keep, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_OK);
	close(keep);
	assert_served();
}
END_TEST

START_TEST(oversize_length)
{
	int fd = raw_hello(d.port, &dec);
	uint8_t hdr[4] = {0x00, 0x01, 0x00, 0x01};	/* 64 KiB + 1 */

	raw_send(fd, hdr, sizeof(hdr));
	expect_err(fd, FY_E_TOOBIG, 0, 1);
	close(fd);
	assert_served();
}
END_TEST

START_TEST(zero_length)
{
	int fd = raw_hello(d.port, &dec);

	raw_send(fd, "\0\0\0\0", 4);
	expect_err(fd, FY_E_PROTO, 0, 1);
	close(fd);
	assert_served();
}
END_TEST

START_TEST(frame_before_handshake)
{
	int fd = raw_connect(d.port);
	struct fy_frame f = {.type = FY_T_PING, .rid = 3};

	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_HANDSHAKE, 3, 1);
	close(fd);
	assert_served();
}
END_TEST

START_TEST(bad_version)
{
	int fd = raw_connect(d.port);
	struct fy_frame f = {.type = FY_T_HELLO, .rid = 1};

	f.hello.version = 99;
	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_HANDSHAKE, 1, 1);
	close(fd);
}
END_TEST

START_TEST(unknown_type_keeps_connection)
{
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f;
	/* {"t": 42, "rid": 9} */
	static const uint8_t frame[] = {0, 0, 0, 9, 0x82, 0xa1, 't', 42,
	    0xa3, 'r', 'i', 'd', 9};

	raw_send(fd, frame, sizeof(frame));
	expect_err(fd, FY_E_UNKNOWN_TYPE, 9, 0);
	/* A broker-to-client type sent to the broker is no request. */
	f = (struct fy_frame){.type = FY_T_WELCOME, .rid = 10};
	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_UNKNOWN_TYPE, 10, 0);
	f = (struct fy_frame){.type = FY_T_PING, .rid = 11};
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_OK);
	ck_assert_uint_eq(f.rid, 11);
	close(fd);
}
END_TEST

START_TEST(malformed_payload_keeps_connection)
{
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f = {.type = FY_T_PING, .rid = 12};
	/* Valid framing; payloads: a bare integer, a truncated map, junk
	 * after the map. */
	static const uint8_t notmap[] = {0, 0, 0, 1, 0x05};
	static const uint8_t trunc[] = {0, 0, 0, 2, 0x82, 0xa1};
	static const uint8_t trailing[] = {0, 0, 0, 5, 0x81, 0xa1, 't', 9,
	    0xc0};

	raw_send(fd, notmap, sizeof(notmap));
	expect_err(fd, FY_E_PROTO, 0, 0);
	raw_send(fd, trunc, sizeof(trunc));
	expect_err(fd, FY_E_PROTO, 0, 0);
	raw_send(fd, trailing, sizeof(trailing));
	expect_err(fd, FY_E_PROTO, 0, 0);
	raw_send_frame(fd, &f);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_OK);
	close(fd);
}
END_TEST

START_TEST(bad_fields)
{
	int fd = raw_hello(d.port, &dec);
	static char big[2048];
	struct fy_frame f;

	/* PUB with no topic. */
	static const uint8_t notopic[] = {0, 0, 0, 16, 0x83, 0xa1, 't', 2,
	    0xa3, 'r', 'i', 'd', 1, 0xa4, 'b', 'o', 'd', 'y', 0xc4, 0};
	raw_send(fd, notopic, sizeof(notopic));
	expect_err(fd, FY_E_BADARG, 1, 0);

	f = (struct fy_frame){.type = FY_T_PUB, .rid = 2};
	f.pub.topic = (struct fy_str){"bad topic!", 10};
	f.pub.one.body = (struct fy_str){"x", 1};
	f.pub.msgs = &f.pub.one;
	f.pub.nmsgs = 1;
	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_BADNAME, 2, 0);

	/* A delay that would overflow deadline arithmetic ("forever" used
	 * to become "now"). */
	f.rid = 7;
	f.pub.topic = (struct fy_str){"ok", 2};
	f.pub.one.delay_ms = UINT64_MAX;
	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_BADARG, 7, 0);
	f.pub.one.delay_ms = 0;

	memset(big, 'b', sizeof(big));
	f.rid = 3;
	f.pub.topic = (struct fy_str){"ok", 2};
	f.pub.one.body = (struct fy_str){big, sizeof(big)};
	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_MSGSIZE, 3, 0);

	f = (struct fy_frame){.type = FY_T_ACK, .rid = 4};
	f.ack.sid = 12345;
	f.ack.one = 1;
	f.ack.leases = &f.ack.one;
	f.ack.nleases = 1;
	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_NOSUB, 4, 0);

	f = (struct fy_frame){.type = FY_T_SUB, .rid = 5};
	f.sub.topic = (struct fy_str){"ok", 2};
	f.sub.mode = 7;
	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_BADARG, 5, 0);

	f = (struct fy_frame){.type = FY_T_DELETE, .rid = 6};
	f.del.topic = (struct fy_str){"nosuchtopic", 11};
	raw_send_frame(fd, &f);
	expect_err(fd, FY_E_NOTFOUND, 6, 0);
	close(fd);
	assert_served();
}
END_TEST

START_TEST(handshake_timeout)
{
	int fd = raw_connect(d.port);
	uint64_t t0 = now_ms();

	/* Say nothing: closed after --handshake-timeout 0.5. */
	expect_err(fd, FY_E_HANDSHAKE, 0, 1);
	ck_assert_uint_ge(now_ms() - t0, 400);
	close(fd);
}
END_TEST

START_TEST(max_connections)
{
	int fds[20], extra;
	struct fy_frame f;

	for (int i = 0; i < 20; i++)
		fds[i] = raw_hello(d.port, &dec);
	extra = raw_connect(d.port);
	ck_assert_int_eq(raw_recv_frame(extra, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_ERR);
	ck_assert_uint_eq(f.err.code, FY_E_LIMIT);
	ck_assert_int_eq(raw_recv_frame(extra, &dec, &f, 5000), 0);
	close(extra);
	close(fds[0]);
	/* A slot freed: a new client gets in (retry while the close is
	 * being noticed). */
	for (int i = 0; i < 100; i++) {
		int fd = raw_connect(d.port);
		struct fy_frame h = {.type = FY_T_HELLO};

		h.hello.version = 1;
		raw_send_frame(fd, &h);
		ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
		close(fd);
		if (f.type == FY_T_WELCOME)
			break;
		ck_assert_int_lt(i, 99);
		usleep(20000);
	}
	for (int i = 1; i < 20; i++)
		close(fds[i]);
}
END_TEST

START_TEST(random_garbage_many_clients)
{
	unsigned seed = (unsigned)now_ms();

	fprintf(stderr, "random_garbage seed %u\n", seed);
	srand(seed);
	for (int i = 0; i < 200; i++) {
		uint8_t buf[512];
		size_t n = (size_t)(rand() % (int)sizeof(buf)) + 1;
		int fd = i % 2 ? raw_hello(d.port, &dec) : raw_connect(d.port);

		for (size_t k = 0; k < n; k++)
			buf[k] = (uint8_t)rand();
		if (i % 4 == 1 && n > 4) {
			/* A plausible length, random payload. */
			buf[0] = buf[1] = 0;
			buf[2] = 0;
			buf[3] = (uint8_t)(n - 4);
		}
		raw_send(fd, buf, n);
		close(fd);
	}
	assert_served();
	ck_assert_int_eq(ferryd_stop(&d), 0);
}
END_TEST

START_TEST(sigterm_exits_zero)
{
	assert_served();
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ck_assert(ferryd_log_has(&d, "shutting down"));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("badinput");
	TCase *tc = tcase_create("badinput");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, garbage_bytes);
	tcase_add_test(tc, oversize_length);
	tcase_add_test(tc, zero_length);
	tcase_add_test(tc, frame_before_handshake);
	tcase_add_test(tc, bad_version);
	tcase_add_test(tc, unknown_type_keeps_connection);
	tcase_add_test(tc, malformed_payload_keeps_connection);
	tcase_add_test(tc, bad_fields);
	tcase_add_test(tc, handshake_timeout);
	tcase_add_test(tc, max_connections);
	tcase_add_test(tc, random_garbage_many_clients);
	tcase_add_test(tc, sigterm_exits_zero);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
