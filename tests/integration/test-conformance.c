/*
 * test-conformance.c - PROTOCOL.md against a real ferryd, in raw frames.
 *
 * Each test speaks to ferryd the way a client written from PROTOCOL.md
 * alone would: frames built byte by byte (or with msgpack-c's packer, not
 * ferry's encoder, where the frame is one ferry's encoder cannot make),
 * replies read with the codec.  Every case is a place where the document
 * and the broker once disagreed (issue #11).
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "harness.h"

static struct ferryd d;
static struct fy_dec dec;

static void
setup(void)
{
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	ferryd_start(&d, NULL);
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

/* ------------------------------------------------------------------ */
/* Raw payloads */

/*
 * Build one payload with msgpack-c's packer, one format character per
 * value:
 *   m N  map of N pairs      a N  array of N
 *   s S  str                 b S  bin
 *   S P L  str of L bytes at P (may be invalid UTF-8)
 *   u U  uint (unsigned long long)   x S  raw bytes (NUL-terminated)
 *   B    true
 * and send it as one frame.
 */
static void
send_packed(int fd, const char *fmt, ...)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint8_t hdr[FY_HDR_LEN];
	const char *s;
	va_list ap;
	size_t n;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		switch (*fmt) {
		case 'm':
			msgpack_pack_map(&pk, va_arg(ap, unsigned));
			break;
		case 'a':
			msgpack_pack_array(&pk, va_arg(ap, unsigned));
			break;
		case 's':
			s = va_arg(ap, const char *);
			msgpack_pack_str_with_body(&pk, s, strlen(s));
			break;
		case 'S':
			s = va_arg(ap, const char *);
			n = va_arg(ap, size_t);
			msgpack_pack_str_with_body(&pk, s, n);
			break;
		case 'b':
			s = va_arg(ap, const char *);
			msgpack_pack_bin_with_body(&pk, s, strlen(s));
			break;
		case 'u':
			msgpack_pack_uint64(&pk, va_arg(ap,
			    unsigned long long));
			break;
		case 'x':
			s = va_arg(ap, const char *);
			msgpack_sbuffer_write(&sb, s, strlen(s));
			break;
		case 'B':
			msgpack_pack_true(&pk);
			break;
		default:
			ck_abort_msg("bad pack format %c", *fmt);
		}
	}
	va_end(ap);
	fy_frame_put_len(hdr, (uint32_t)sb.size);
	raw_send(fd, hdr, sizeof(hdr));
	raw_send(fd, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

#define U(x) ((unsigned long long)(x))

/* The next frame that is not a delivery (MSG without rid). */
static void
recv_reply(int fd, struct fy_frame *f)
{
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(raw_recv_frame(fd, &dec, f, 5000), 1);
		if (f->type != FY_T_MSG || f->rid)
			return;
	}
	ck_abort_msg("no reply among 1000 deliveries");
}

static void
expect_ok(int fd, uint64_t rid, struct fy_frame *f)
{
	recv_reply(fd, f);
	ck_assert_msg(f->type == FY_T_OK, "rid %llu: type %d code %s: %.*s",
	    U(rid), f->type, f->type == FY_T_ERR ?
	    fy_code_name((int)f->err.code) : "-",
	    f->type == FY_T_ERR ? (int)f->err.msg.len : 0,
	    f->type == FY_T_ERR ? f->err.msg.p : "");
	ck_assert_uint_eq(f->rid, rid);
}

static void
expect_err(int fd, uint64_t rid, uint32_t code)
{
	struct fy_frame f;

	recv_reply(fd, &f);
	ck_assert_msg(f.type == FY_T_ERR, "rid %llu: type %d, expected %s",
	    U(rid), f.type, fy_code_name((int)code));
	ck_assert_msg(f.err.code == code, "rid %llu: %s (%.*s), expected %s",
	    U(rid), fy_code_name((int)f.err.code), (int)f.err.msg.len,
	    f.err.msg.p, fy_code_name((int)code));
	ck_assert_uint_eq(f.rid, rid);
}

/* The next delivery (MSG without rid) within 5 s. */
static void
recv_msg(int fd, struct fy_frame *f)
{
	ck_assert_int_eq(raw_recv_frame(fd, &dec, f, 5000), 1);
	ck_assert_msg(f->type == FY_T_MSG && !f->rid, "type %d rid %llu",
	    f->type, U(f->rid));
}

/* PUB {topic, body} confirmed with rid. */
static void
pub(int fd, uint64_t rid, const char *topic, const char *body)
{
	struct fy_frame f;

	send_packed(fd, "msususssb", 4u, "t", U(FY_T_PUB), "rid", U(rid),
	    "topic", topic, "body", body);
	expect_ok(fd, rid, &f);
}

/* SUB {topic, group, ack_timeout, max_attempts} confirmed (group NULL:
 * the default); returns sid. */
static uint64_t
sub(int fd, uint64_t rid, const char *topic, const char *group,
    uint64_t ack_timeout, uint64_t max_attempts)
{
	struct fy_frame f;

	send_packed(fd, "msu" "su" "ss" "ss" "su" "su", 6u, "t",
	    U(FY_T_SUB), "rid", U(rid), "topic", topic,
	    "group", group ? group : "", "ack_timeout", U(ack_timeout),
	    "max_attempts", U(max_attempts));
	expect_ok(fd, rid, &f);
	ck_assert_uint_gt(f.ok.sid, 0);
	return f.ok.sid;
}

/* ------------------------------------------------------------------ */
/* Section 3: nesting */

/* A map holding 15 nested arrays is 16 levels, which section 3 allows;
 * one more is E_PROTO and the connection stays open. */
START_TEST(nesting_16_levels)
{
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f;
	char deep[32];

	memset(deep, '\x91', 15);
	strcpy(deep + 15, "\x01");
	send_packed(fd, "msusus" "x", 3u, "t", U(FY_T_PING), "rid", U(1),
	    "z", deep);
	expect_ok(fd, 1, &f);
	/* 16 arrays: 17 levels. */
	memset(deep, '\x91', 16);
	strcpy(deep + 16, "\x01");
	send_packed(fd, "msusus" "x", 3u, "t", U(FY_T_PING), "rid", U(2),
	    "z", deep);
	expect_err(fd, 0, FY_E_PROTO);
	send_packed(fd, "msusu", 2u, "t", U(FY_T_PING), "rid", U(3));
	expect_ok(fd, 3, &f);
	close(fd);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Section 9: message ids */

/* A present "id" of 0 bytes is not "no id": section 9 says 1..64. */
START_TEST(empty_id_refused)
{
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f;

	send_packed(fd, "msususssbss", 5u, "t", U(FY_T_PUB), "rid", U(1),
	    "topic", "ids", "body", "x", "id", "");
	expect_err(fd, 1, FY_E_BADARG);
	send_packed(fd, "msususs" "sam" "sbss", 4u, "t", U(FY_T_PUB),
	    "rid", U(2), "topic", "ids", "msgs", 1u, 2u, "body", "x",
	    "id", "");
	expect_err(fd, 2, FY_E_BADARG);
	/* A one-byte id is used as given, and is the first message. */
	send_packed(fd, "msususssbss", 5u, "t", U(FY_T_PUB), "rid", U(3),
	    "topic", "ids", "body", "x", "id", "a");
	expect_ok(fd, 3, &f);
	ck_assert_uint_eq(f.ok.nids, 1);
	ck_assert_uint_eq(f.ok.ids[0].len, 1);
	ck_assert_int_eq(f.ok.ids[0].p[0], 'a');
	send_packed(fd, "msususs", 3u, "t", U(FY_T_STATS), "rid", U(4),
	    "topic", "ids");
	expect_ok(fd, 4, &f);
	ck_assert_uint_eq(f.ok.nstats, 1);
	ck_assert_uint_eq(f.ok.stats[0].enqueued, 1);
	close(fd);
}
END_TEST

/* An out-of-range delay or ttl is E_BADARG whose text names the key at
 * fault, not both. */
START_TEST(range_error_names_key)
{
	static const char *const keys[] = { "ttl", "delay" };
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f;

	for (unsigned i = 0; i < 2; i++) {
		char msg[256];

		send_packed(fd, "msusu" "ss" "sb" "su", 5u, "t", U(FY_T_PUB),
		    "rid", U(1 + i), "topic", "range", "body", "x", keys[i],
		    U(1) << 41);
		recv_reply(fd, &f);
		ck_assert_int_eq(f.type, FY_T_ERR);
		ck_assert_uint_eq(f.err.code, FY_E_BADARG);
		snprintf(msg, sizeof(msg), "%.*s", (int)f.err.msg.len,
		    f.err.msg.p);
		ck_assert_msg(strstr(msg, keys[i]) && !strstr(msg,
		    keys[1 - i]), "\"%s\" for %s", msg, keys[i]);
	}
	close(fd);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Section 5: replies */

/*
 * Replies come in request order except the durable ones: a confirmed ACK
 * (with rid) is answered once the ack is synced (fsync = always, the
 * default), so a PING sent after it is answered first.
 */
START_TEST(confirmed_ack_after_later_ping)
{
	int fd = raw_hello(d.port, &dec), p = raw_hello(d.port, &dec);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint8_t hdr[FY_HDR_LEN];
	struct fy_frame f;
	uint64_t sid;

	sid = sub(fd, 1, "order", NULL, 30000, 0);
	pub(p, 2, "order", "x");
	recv_msg(fd, &f);
	/* ACK {rid 3} then PING {rid 4}, in one write. */
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4);
	msgpack_pack_str_with_body(&pk, "t", 1);
	msgpack_pack_uint64(&pk, FY_T_ACK);
	msgpack_pack_str_with_body(&pk, "rid", 3);
	msgpack_pack_uint64(&pk, 3);
	msgpack_pack_str_with_body(&pk, "sid", 3);
	msgpack_pack_uint64(&pk, sid);
	msgpack_pack_str_with_body(&pk, "lease", 5);
	msgpack_pack_uint64(&pk, f.msg.lease);
	{
		size_t first = sb.size;
		uint8_t buf[256];

		msgpack_pack_map(&pk, 2);
		msgpack_pack_str_with_body(&pk, "t", 1);
		msgpack_pack_uint64(&pk, FY_T_PING);
		msgpack_pack_str_with_body(&pk, "rid", 3);
		msgpack_pack_uint64(&pk, 4);
		ck_assert_uint_le(sb.size + 2 * FY_HDR_LEN, sizeof(buf));
		fy_frame_put_len(hdr, (uint32_t)first);
		memcpy(buf, hdr, FY_HDR_LEN);
		memcpy(buf + FY_HDR_LEN, sb.data, first);
		fy_frame_put_len(hdr, (uint32_t)(sb.size - first));
		memcpy(buf + FY_HDR_LEN + first, hdr, FY_HDR_LEN);
		memcpy(buf + 2 * FY_HDR_LEN + first, sb.data + first,
		    sb.size - first);
		raw_send(fd, buf, sb.size + 2 * FY_HDR_LEN);
	}
	msgpack_sbuffer_destroy(&sb);
	expect_ok(fd, 4, &f);
	expect_ok(fd, 3, &f);
	close(fd);
	close(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Section 6: types and inspection */

/* The types only the broker sends are refused by their type, before
 * their fields: E_UNKNOWN_TYPE with the rid, not "field v is missing". */
START_TEST(misdirected_types)
{
	static const int types[] = {
		FY_T_WELCOME, FY_T_OK, FY_T_ERR, FY_T_MSG,
	};
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f;

	for (unsigned i = 0; i < 4; i++) {
		send_packed(fd, "msusu", 2u, "t", U(types[i]), "rid",
		    U(10 + i));
		expect_err(fd, 10 + i, FY_E_UNKNOWN_TYPE);
	}
	send_packed(fd, "msusu", 2u, "t", U(FY_T_PING), "rid", U(20));
	expect_ok(fd, 20, &f);
	close(fd);
}
END_TEST

/* STATS of a topic that does not exist is an empty result (section 6),
 * not E_NOTFOUND; a bad name is still E_BADNAME. */
START_TEST(stats_unknown_topic)
{
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f;

	send_packed(fd, "msususs", 3u, "t", U(FY_T_STATS), "rid", U(1),
	    "topic", "no.such.topic");
	expect_ok(fd, 1, &f);
	ck_assert_uint_eq(f.ok.nstats, 0);
	send_packed(fd, "msususs", 3u, "t", U(FY_T_STATS), "rid", U(2),
	    "topic", "bad topic");
	expect_err(fd, 2, FY_E_BADNAME);
	close(fd);
}
END_TEST

/* INFLIGHT "age" is the time since delivery, which TOUCH does not reset;
 * "left" is the lease's remaining time, which it does. */
START_TEST(inflight_age_and_left)
{
	int fd = raw_hello(d.port, &dec), p = raw_hello(d.port, &dec);
	uint64_t sid, lease;
	struct fy_frame f;

	sid = sub(fd, 1, "age", NULL, 10000, 0);
	pub(p, 2, "age", "x");
	recv_msg(fd, &f);
	lease = f.msg.lease;
	usleep(400 * 1000);
	send_packed(fd, "msusususu", 4u, "t", U(FY_T_TOUCH), "rid", U(3),
	    "sid", U(sid), "lease", U(lease));
	expect_ok(fd, 3, &f);
	send_packed(fd, "msususs", 3u, "t", U(FY_T_INFLIGHT), "rid", U(4),
	    "topic", "age");
	expect_ok(fd, 4, &f);
	ck_assert_uint_eq(f.ok.ninflight, 1);
	ck_assert_uint_ge(f.ok.inflight[0].age_ms, 350);
	ck_assert_uint_lt(f.ok.inflight[0].age_ms, 5000);
	/* Touched about now: nearly the whole ack_timeout is left. */
	ck_assert_uint_gt(f.ok.inflight[0].left_ms, 9000);
	ck_assert_uint_le(f.ok.inflight[0].left_ms, 10000);
	close(fd);
	close(p);
}
END_TEST

/*
 * 1 if s[0..n) is well-formed UTF-8, as a strict msgpack decoder (Python's
 * default) checks a str.  Written here from RFC 3629 rather than shared
 * with the broker, so that a mistake there cannot hide here.
 */
static int
utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned c = p[i], need;
		unsigned long cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0)
			need = 1, min = 0x80, cp = c & 0x1f;
		else if ((c & 0xf0) == 0xe0)
			need = 2, min = 0x800, cp = c & 0x0f;
		else if ((c & 0xf8) == 0xf0)
			need = 3, min = 0x10000, cp = c & 0x07;
		else
			return 0;
		if (i + need >= n)
			return 0;	/* cut inside the character */
		for (unsigned k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* NACK {sid, lease, delay: 0, error} with an error of n raw bytes. */
static void
nack(int fd, uint64_t rid, uint64_t sid, uint64_t lease, const char *err,
    size_t n)
{
	struct fy_frame f;

	send_packed(fd, "m" "su" "su" "su" "su" "su" "sS", 6u,
	    "t", U(FY_T_NACK), "rid", U(rid), "sid", U(sid),
	    "lease", U(lease), "delay", U(0), "error", err, n);
	expect_ok(fd, rid, &f);
}

/*
 * A NACK's error text is kept to 1024 bytes and sent back as str in
 * INFLIGHT "e", TRACE "e" and the dead letter's "hist": cut at a
 * character boundary, and invalid UTF-8 repaired, so that a strict
 * decoder can read the dead letter at all.
 */
START_TEST(nack_error_utf8)
{
	static const char bad[] = "\xff\xfe bad";
	static const char fixed[] = "\xef\xbf\xbd\xef\xbf\xbd bad";
	int fd = raw_hello(d.port, &dec), p = raw_hello(d.port, &dec);
	char err[1025], id[FY_ID_MAX + 1];
	uint64_t sid;
	struct fy_frame f;
	uint32_t nacked = 0;

	/* 1023 ASCII bytes, then a 2-byte character across the limit. */
	memset(err, 'a', 1023);
	memcpy(err + 1023, "\xc3\xa9", 2);
	sid = sub(fd, 1, "u8", NULL, 30000, 2);
	pub(p, 2, "u8", "x");
	recv_msg(fd, &f);
	snprintf(id, sizeof(id), "%.*s", (int)f.msg.id.len, f.msg.id.p);
	nack(fd, 3, sid, f.msg.lease, err, sizeof(err));
	/* Redelivered at once: in flight again, with that error. */
	recv_msg(fd, &f);
	ck_assert_uint_eq(f.msg.attempt, 2);
	send_packed(fd, "msususs", 3u, "t", U(FY_T_INFLIGHT), "rid", U(4),
	    "topic", "u8");
	/* (The MSG frame is gone once the next one is decoded.) */
	{
		uint64_t lease = f.msg.lease;

		expect_ok(fd, 4, &f);
		ck_assert_uint_eq(f.ok.ninflight, 1);
		ck_assert_uint_eq(f.ok.inflight[0].error.len, 1023);
		ck_assert(utf8_ok(f.ok.inflight[0].error.p, 1023));
		/* Bytes that are no UTF-8 at all: repaired, not passed on;
		 * the second failure dead-letters it (max_attempts 2). */
		nack(fd, 5, sid, lease, bad, strlen(bad));
	}
	send_packed(fd, "msususs", 3u, "t", U(FY_T_TRACE), "rid", U(6),
	    "id", id);
	expect_ok(fd, 6, &f);
	for (uint32_t i = 0; i < f.ok.nevents; i++) {
		const struct fy_event *ev = &f.ok.events[i];

		ck_assert(utf8_ok(ev->error.p, ev->error.len));
		if (ev->what.len == 6 && !memcmp(ev->what.p, "nacked", 6))
			nacked++;
	}
	ck_assert_uint_eq(nacked, 2);
	/* The dead letter, as a strict client reads it. */
	sub(fd, 7, "u8.dlq", NULL, 30000, 0);
	recv_msg(fd, &f);
	ck_assert_uint_eq(f.msg.nhist, 2);
	ck_assert_uint_eq(f.msg.hist[0].error.len, 1023);
	for (uint32_t i = 0; i < f.msg.nhist; i++)
		ck_assert(utf8_ok(f.msg.hist[i].error.p,
		    f.msg.hist[i].error.len));
	ck_assert_uint_eq(f.msg.hist[1].error.len, strlen(fixed));
	ck_assert_mem_eq(f.msg.hist[1].error.p, fixed, strlen(fixed));
	close(fd);
	close(p);
}
END_TEST

/* The HELLO name comes back as str too ("by"): kept to what fits, cut
 * at a character, and valid UTF-8. */
START_TEST(hello_name_utf8)
{
	int p = raw_hello(d.port, &dec), fd = raw_connect(d.port);
	char name[65], by[128];
	struct fy_frame f;

	memset(name, 'a', 62);
	memcpy(name + 62, "\xc3\xa9", 3);	/* 64 bytes: the cut falls in */
	send_packed(fd, "msu" "su" "sS", 3u, "t", U(FY_T_HELLO), "v", U(1),
	    "name", name, (size_t)64);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_WELCOME);
	sub(fd, 1, "nm", NULL, 30000, 0);
	pub(p, 2, "nm", "x");
	recv_msg(fd, &f);
	send_packed(p, "msususs", 3u, "t", U(FY_T_INFLIGHT), "rid", U(3),
	    "topic", "nm");
	expect_ok(p, 3, &f);
	ck_assert_uint_eq(f.ok.ninflight, 1);
	ck_assert(utf8_ok(f.ok.inflight[0].consumer.p,
	    f.ok.inflight[0].consumer.len));
	ck_assert_uint_eq(f.ok.inflight[0].consumer.len, 62);
	close(fd);
	/* Bytes that are not UTF-8: repaired. */
	fd = raw_connect(d.port);
	send_packed(fd, "msu" "su" "sS", 3u, "t", U(FY_T_HELLO), "v", U(1),
	    "name", "w\xff", (size_t)2);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	sub(fd, 4, "nm2", NULL, 30000, 0);
	pub(p, 5, "nm2", "x");
	recv_msg(fd, &f);
	send_packed(p, "msususs", 3u, "t", U(FY_T_INFLIGHT), "rid", U(6),
	    "topic", "nm2");
	expect_ok(p, 6, &f);
	ck_assert_uint_eq(f.ok.ninflight, 1);
	snprintf(by, sizeof(by), "%.*s", (int)f.ok.inflight[0].consumer.len,
	    f.ok.inflight[0].consumer.p);
	ck_assert_str_eq(by, "w\xef\xbf\xbd");
	close(fd);
	close(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Section 8: dead letters */

/* A topic of the longest valid name (200 bytes) dead-letters like any
 * other, to its "<topic>.dlq" of 204 bytes, which a client can SUB to. */
START_TEST(long_topic_dead_letters)
{
	int fd = raw_hello(d.port, &dec), p = raw_hello(d.port, &dec);
	char topic[FY_NAME_MAX + 1], dlq[FY_NAME_MAX + 5];
	uint64_t sid;
	struct fy_frame f;

	memset(topic, 't', FY_NAME_MAX);
	topic[FY_NAME_MAX] = '\0';
	snprintf(dlq, sizeof(dlq), "%s.dlq", topic);
	sid = sub(fd, 1, topic, NULL, 30000, 1);
	pub(p, 2, topic, "x");
	recv_msg(fd, &f);
	nack(fd, 3, sid, f.msg.lease, "no", 2);
	/* Not redelivered: dead-lettered. */
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 500), -1);
	sub(fd, 4, dlq, NULL, 30000, 0);
	recv_msg(fd, &f);
	ck_assert_uint_eq(f.msg.topic.len, strlen(dlq));
	ck_assert_uint_eq(f.msg.nhist, 1);
	/* 204 bytes is the dead-letter name's limit, not any name's. */
	dlq[FY_NAME_MAX + 3] = 'x';
	send_packed(fd, "msususs", 3u, "t", U(FY_T_STATS), "rid", U(5),
	    "topic", dlq);
	expect_err(fd, 5, FY_E_BADNAME);
	close(fd);
	close(p);
}
END_TEST

/* The STATS row of topic/group, copied out of the reply. */
static struct fy_gstat
stats_of(int fd, uint64_t rid, const char *topic, const char *group)
{
	struct fy_gstat row;
	struct fy_frame f;

	send_packed(fd, "msususs", 3u, "t", U(FY_T_STATS), "rid", U(rid),
	    "topic", topic);
	expect_ok(fd, rid, &f);
	for (uint32_t i = 0; i < f.ok.nstats; i++) {
		row = f.ok.stats[i];
		if (row.group.len == strlen(group) &&
		    !memcmp(row.group.p, group, row.group.len))
			return row;
	}
	ck_abort_msg("no STATS row for %s/%s", topic, group);
	return row;
}

/* Number of STATS rows of a topic: 0 if it does not exist. */
static uint32_t
stats_rows(int fd, uint64_t rid, const char *topic)
{
	struct fy_frame f;

	send_packed(fd, "msususs", 3u, "t", U(FY_T_STATS), "rid", U(rid),
	    "topic", topic);
	expect_ok(fd, rid, &f);
	return f.ok.nstats;
}

/* SUB with group settings (durable group g), then UNSUB: the group
 * stays and accumulates with no member. */
static void
make_group(int fd, uint64_t rid, const char *topic, const char *g,
    uint64_t ttl, uint64_t max_msgs, uint64_t overflow)
{
	struct fy_frame f;
	uint64_t sid;

	send_packed(fd, "msu" "su" "ss" "ss" "su" "su" "su", 7u,
	    "t", U(FY_T_SUB), "rid", U(rid), "topic", topic, "group", g,
	    "ttl", U(ttl), "max_msgs", U(max_msgs), "overflow", U(overflow));
	expect_ok(fd, rid, &f);
	sid = f.ok.sid;
	send_packed(fd, "msusu" "su", 3u, "t", U(FY_T_UNSUB), "rid",
	    U(rid + 1), "sid", U(sid));
	expect_ok(fd, rid + 1, &f);
}

/*
 * STATS "ack" counts acknowledgements only: not at-most-once deliveries,
 * dead letters, TTL expiries (even of a message never delivered) or
 * overflow evictions, which have counters of their own.
 */
START_TEST(ack_counts_acks_only)
{
	int fd = raw_hello(d.port, &dec), p = raw_hello(d.port, &dec);
	struct fy_gstat st;
	struct fy_frame f;
	uint64_t sid;

	/* At-most-once: delivered, settled, not acked. */
	send_packed(fd, "msusu" "ss" "su", 4u, "t", U(FY_T_SUB), "rid",
	    U(1), "topic", "c.amo", "mode", U(1));
	expect_ok(fd, 1, &f);
	pub(p, 2, "c.amo", "x");
	recv_msg(fd, &f);
	st = stats_of(p, 3, "c.amo", "default");
	ck_assert_uint_eq(st.delivered, 1);
	ck_assert_uint_eq(st.amo, 1);
	ck_assert_uint_eq(st.acked, 0);
	/* Expired without ever being delivered: dead-lettered. */
	make_group(p, 10, "c.ttl", "g", 100, 0, 0);
	pub(p, 12, "c.ttl", "x");
	usleep(400 * 1000);
	st = stats_of(p, 13, "c.ttl", "g");
	ck_assert_uint_eq(st.expired, 1);
	ck_assert_uint_eq(st.dead_lettered, 1);
	ck_assert_uint_eq(st.acked, 0);
	ck_assert_uint_eq(stats_rows(p, 14, "c.ttl.dlq"), 1);
	/* Pushed out of a full group. */
	make_group(p, 20, "c.full", "g", 0, 1, 1);
	pub(p, 22, "c.full", "1");
	pub(p, 23, "c.full", "2");
	st = stats_of(p, 24, "c.full", "g");
	ck_assert_uint_eq(st.overflow, 1);
	ck_assert_uint_eq(st.dead_lettered, 1);
	ck_assert_uint_eq(st.acked, 0);
	/* Nacked to the dead-letter topic. */
	sid = sub(fd, 30, "c.nack", NULL, 30000, 1);
	pub(p, 31, "c.nack", "x");
	recv_msg(fd, &f);
	nack(fd, 32, sid, f.msg.lease, "no", 2);
	st = stats_of(p, 33, "c.nack", "default");
	ck_assert_uint_eq(st.nacked, 1);
	ck_assert_uint_eq(st.dead_lettered, 1);
	ck_assert_uint_eq(st.acked, 0);
	/* And an ACK is one. */
	sid = sub(fd, 40, "c.ack", NULL, 30000, 0);
	pub(p, 41, "c.ack", "x");
	recv_msg(fd, &f);
	send_packed(fd, "msusu" "su" "su", 4u, "t", U(FY_T_ACK), "rid",
	    U(42), "sid", U(sid), "lease", U(f.msg.lease));
	expect_ok(fd, 42, &f);
	st = stats_of(p, 43, "c.ack", "default");
	ck_assert_uint_eq(st.acked, 1);
	close(fd);
	close(p);
}
END_TEST

/* PUB of a batch of two bodies, confirmed; the reply is left to read. */
static void
pub2(int fd, uint64_t rid, const char *topic, const char *b1,
    const char *b2)
{
	send_packed(fd, "msusu" "ss" "sa" "msb" "msb", 4u, "t",
	    U(FY_T_PUB), "rid", U(rid), "topic", topic, "msgs", 2u,
	    1u, "body", b1, 1u, "body", b2);
}

/*
 * A batch refused with E_FULL stored nothing (section 7), even in a group
 * that dead-letters its oldest to make room: before, its first message
 * was stored and pushed to "<topic>.dlq" by the second, which then did
 * not fit, and a client's retry published it twice.  A body that can
 * never fit a group's max_bytes is E_MSGSIZE, not the retryable E_FULL.
 */
START_TEST(full_batch_stores_nothing)
{
	int fd = raw_hello(d.port, &dec), p = raw_hello(d.port, &dec);
	struct fy_gstat st;
	struct fy_frame f;

	/* 5 bytes in flight in a group of at most 10 bytes. */
	send_packed(fd, "msusu" "ss" "ss" "su" "su" "su", 7u, "t",
	    U(FY_T_SUB), "rid", U(1), "topic", "full", "group", "g",
	    "max_bytes", U(10), "overflow", U(1), "prefetch", U(1));
	expect_ok(fd, 1, &f);
	pub(p, 2, "full", "12345");
	recv_msg(fd, &f);
	/* 4 bytes would fit, 6 more only by pushing them out, and still
	 * not beside the 5 in flight. */
	pub2(p, 3, "full", "1234", "123456");
	expect_err(p, 3, FY_E_FULL);
	st = stats_of(p, 4, "full", "g");
	ck_assert_uint_eq(st.enqueued, 1);
	ck_assert_uint_eq(st.dead_lettered, 0);
	ck_assert_uint_eq(stats_rows(p, 5, "full.dlq"), 0);
	/* A body above max_bytes: never storable there. */
	pub2(p, 6, "full", "1", "12345678901");
	expect_err(p, 6, FY_E_MSGSIZE);
	ck_assert_uint_eq(stats_rows(p, 7, "full.dlq"), 0);
	/* What does fit is taken, pushing out only waiting messages. */
	pub2(p, 8, "full", "1", "2");
	expect_ok(p, 8, &f);
	st = stats_of(p, 9, "full", "g");
	ck_assert_uint_eq(st.enqueued, 3);
	close(fd);
	close(p);
}
END_TEST

/*
 * A message in a ".dlq" topic is never dead-lettered again: expired or
 * pushed out of a full group, it is dropped and counted ("drop"), and no
 * "<topic>.dlq.dlq" appears.  Failed attempts never dead-letter it either:
 * max_attempts does not apply there, it is redelivered.
 */
START_TEST(dlq_never_dead_letters)
{
	int fd = raw_hello(d.port, &dec), p = raw_hello(d.port, &dec);
	struct fy_gstat st;
	struct fy_frame f;
	uint64_t sid;

	make_group(p, 1, "x.dlq", "g", 100, 0, 0);
	pub(p, 3, "x.dlq", "x");
	usleep(400 * 1000);
	st = stats_of(p, 4, "x.dlq", "g");
	ck_assert_uint_eq(st.expired, 1);
	ck_assert_uint_eq(st.dropped, 1);
	ck_assert_uint_eq(st.dead_lettered, 0);
	ck_assert_uint_eq(stats_rows(p, 5, "x.dlq.dlq"), 0);

	make_group(p, 10, "y.dlq", "g", 0, 1, 1);
	pub(p, 12, "y.dlq", "1");
	pub(p, 13, "y.dlq", "2");
	st = stats_of(p, 14, "y.dlq", "g");
	ck_assert_uint_eq(st.overflow, 1);
	ck_assert_uint_eq(st.dropped, 1);
	ck_assert_uint_eq(st.ready, 1);
	ck_assert_uint_eq(stats_rows(p, 15, "y.dlq.dlq"), 0);

	sid = sub(fd, 20, "z.dlq", NULL, 30000, 1);
	pub(p, 21, "z.dlq", "x");
	for (uint32_t att = 1; att <= 3; att++) {
		recv_msg(fd, &f);
		ck_assert_uint_eq(f.msg.attempt, att);
		nack(fd, 21 + att, sid, f.msg.lease, "again", 5);
	}
	ck_assert_uint_eq(stats_rows(p, 30, "z.dlq.dlq"), 0);
	close(fd);
	close(p);
}
END_TEST

/* TRACE lists events oldest first: the "published" event of a dead
 * letter's copy is when the copy was stored, not the original's publish
 * time, which would sort it before the failures that caused it. */
START_TEST(trace_oldest_first)
{
	int fd = raw_hello(d.port, &dec), p = raw_hello(d.port, &dec);
	char id[FY_ID_MAX + 1];
	uint64_t sid, prev = 0;
	struct fy_frame f;
	int dlq_published = 0;

	sid = sub(fd, 1, "tr", NULL, 30000, 1);
	pub(p, 2, "tr", "x");
	recv_msg(fd, &f);
	snprintf(id, sizeof(id), "%.*s", (int)f.msg.id.len, f.msg.id.p);
	usleep(100 * 1000);
	nack(fd, 3, sid, f.msg.lease, "no", 2);
	send_packed(p, "msususs", 3u, "t", U(FY_T_TRACE), "rid", U(4),
	    "id", id);
	expect_ok(p, 4, &f);
	ck_assert_uint_ge(f.ok.nevents, 5);
	for (uint32_t i = 0; i < f.ok.nevents; i++) {
		const struct fy_event *ev = &f.ok.events[i];

		ck_assert_msg(ev->at >= prev, "event %u (%.*s) at %llu before "
		    "%llu", i, (int)ev->what.len, ev->what.p, U(ev->at),
		    U(prev));
		prev = ev->at;
		if (i > 0 && ev->what.len == 9 &&
		    !memcmp(ev->what.p, "published", 9)) {
			ck_assert_uint_eq(ev->topic.len, 6);	/* tr.dlq */
			dlq_published = 1;
		}
	}
	ck_assert(dlq_published);
	close(fd);
	close(p);
}
END_TEST

/* A durable SUB on an "_inbox." topic is refused (section 8: inboxes are
 * read by ephemeral subscriptions only), so a PUB to an inbox whose
 * requester is gone is never stored. */
START_TEST(inbox_refuses_durable_sub)
{
	int fd = raw_hello(d.port, &dec);
	struct fy_frame f;

	send_packed(fd, "msususs", 3u, "t", U(FY_T_SUB), "rid", U(1),
	    "topic", "_inbox.x");
	expect_err(fd, 1, FY_E_BADARG);
	send_packed(fd, "msususs" "ss", 4u, "t", U(FY_T_SUB), "rid", U(2),
	    "topic", "_inbox.x", "group", "keep");
	expect_err(fd, 2, FY_E_BADARG);
	send_packed(fd, "msususssb", 4u, "t", U(FY_T_PUB), "rid", U(3),
	    "topic", "_inbox.x", "body", "reply");
	expect_err(fd, 3, FY_E_NOSUBSCRIBERS);
	ck_assert_uint_eq(stats_rows(fd, 4, "_inbox.x"), 0);
	/* The ephemeral listener is what an inbox is for. */
	send_packed(fd, "msususs" "sB", 4u, "t", U(FY_T_SUB), "rid", U(5),
	    "topic", "_inbox.x", "ephemeral");
	expect_ok(fd, 5, &f);
	close(fd);
}
END_TEST

/* A PUB that would create a topic past max_topics is E_LIMIT (section 6,
 * PUB), and the connection stays open. */
START_TEST(pub_topic_limit)
{
	int fd;
	struct fy_frame f;

	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_cleanup(&d);
	ferryd_start(&d, "--max-topics", "1", NULL);
	fd = raw_hello(d.port, &dec);
	pub(fd, 1, "one", "x");
	send_packed(fd, "msususssb", 4u, "t", U(FY_T_PUB), "rid", U(2),
	    "topic", "two", "body", "x");
	expect_err(fd, 2, FY_E_LIMIT);
	pub(fd, 3, "one", "y");
	ck_assert_uint_eq(stats_rows(fd, 4, "two"), 0);
	send_packed(fd, "msusu", 2u, "t", U(FY_T_PING), "rid", U(5));
	expect_ok(fd, 5, &f);
	close(fd);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Section 4: handshake */

/* HELLO by hand; the WELCOME's boot id and idle time into boot, *idle. */
static int
hello(char boot[37], uint32_t *idle)
{
	int fd = raw_connect(d.port);
	struct fy_frame f;

	send_packed(fd, "msusu", 2u, "t", U(FY_T_HELLO), "v", U(1));
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_WELCOME);
	ck_assert_uint_eq(f.welcome.boot.len, 36);
	ck_assert(f.welcome.session.len != 36 ||
	    memcmp(f.welcome.session.p, f.welcome.boot.p, 36));
	memcpy(boot, f.welcome.boot.p, 36);
	boot[36] = '\0';
	*idle = f.welcome.idle_ms;
	return fd;
}

/* Before HELLO, framing errors keep their own codes (they are found
 * before any payload is read) and any other bad frame is E_HANDSHAKE,
 * with its rid when readable; each closes the connection. */
START_TEST(errors_before_hello)
{
	static const uint8_t oversize[] = {0x7f, 0, 0, 0};
	struct fy_frame f;
	int fd;

	fd = raw_connect(d.port);
	raw_send(fd, oversize, sizeof(oversize));
	expect_err(fd, 0, FY_E_TOOBIG);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);
	fd = raw_connect(d.port);
	raw_send(fd, "\0\0\0\0", 4);
	expect_err(fd, 0, FY_E_PROTO);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);
	fd = raw_connect(d.port);
	raw_send(fd, "\0\0\0\1\x05", 5);	/* not a map */
	expect_err(fd, 0, FY_E_HANDSHAKE);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);
	fd = raw_connect(d.port);
	send_packed(fd, "msusu", 2u, "t", U(FY_T_HELLO), "rid", U(7));
	expect_err(fd, 7, FY_E_HANDSHAKE);	/* no "v" */
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	close(fd);
}
END_TEST

/* WELCOME "boot" is the same for every connection of one broker
 * lifetime and new after a restart. */
START_TEST(welcome_boot_id)
{
	char b1[37], b2[37], b3[37];
	uint32_t idle;
	int a = hello(b1, &idle), b = hello(b2, &idle);

	ck_assert_str_eq(b1, b2);
	ck_assert_uint_eq(idle, 0);	/* no idle_timeout by default */
	close(a);
	close(b);
	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_restart(&d);
	close(hello(b3, &idle));
	ck_assert_str_ne(b1, b3);
}
END_TEST

/* A silent client is closed with its own code, E_IDLE, not E_LIMIT
 * (which section 7 keeps for the connection limit); WELCOME announced
 * the time, so a client knows how often to PING. */
START_TEST(idle_close)
{
	char boot[37];
	uint32_t idle;
	struct fy_frame f;
	uint64_t t0;
	int fd;

	ck_assert_int_eq(ferryd_stop(&d), 0);
	ferryd_cleanup(&d);
	ferryd_start(&d, "--idle-timeout", "0.5", NULL);
	fd = hello(boot, &idle);
	t0 = now_ms();
	ck_assert_uint_eq(idle, 500);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 1);
	ck_assert_int_eq(f.type, FY_T_ERR);
	ck_assert_str_eq(fy_code_name((int)f.err.code), "E_IDLE");
	ck_assert_uint_eq(f.rid, 0);
	ck_assert_int_eq(raw_recv_frame(fd, &dec, &f, 5000), 0);
	ck_assert_uint_ge(now_ms() - t0, 400);
	close(fd);
}
END_TEST

/* ------------------------------------------------------------------ */

int
main(void)
{
	Suite *s = suite_create("conformance");
	TCase *tc = tcase_create("conformance");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, nesting_16_levels);
	tcase_add_test(tc, empty_id_refused);
	tcase_add_test(tc, range_error_names_key);
	tcase_add_test(tc, confirmed_ack_after_later_ping);
	tcase_add_test(tc, misdirected_types);
	tcase_add_test(tc, stats_unknown_topic);
	tcase_add_test(tc, inflight_age_and_left);
	tcase_add_test(tc, nack_error_utf8);
	tcase_add_test(tc, hello_name_utf8);
	tcase_add_test(tc, long_topic_dead_letters);
	tcase_add_test(tc, ack_counts_acks_only);
	tcase_add_test(tc, dlq_never_dead_letters);
	tcase_add_test(tc, full_batch_stores_nothing);
	tcase_add_test(tc, trace_oldest_first);
	tcase_add_test(tc, inbox_refuses_durable_sub);
	tcase_add_test(tc, pub_topic_limit);
	tcase_add_test(tc, errors_before_hello);
	tcase_add_test(tc, welcome_boot_id);
	tcase_add_test(tc, idle_close);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
