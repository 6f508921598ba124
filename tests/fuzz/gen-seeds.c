/*
 * gen-seeds.c - write the fuzz targets' seed inputs, encoded by the
 * current code, so the seeds follow the protocol and record formats.
 *
 *   gen-seeds DIR    writes DIR/decode, DIR/conn, DIR/journal, DIR/config,
 *                    DIR/record
 *
 * The committed tests/fuzz/corpus/ holds this output plus the minimised
 * reproducers of fixed crashes (crash-*); CI runs both.  Built with
 * -Dfuzz=true only, never installed.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <msgpack.h>

#include "codec.h"
#include "journal.h"
#include "log.h"
#include "msg.h"
#include "record.h"

#define S(lit) ((struct fy_str){lit, sizeof(lit) - 1})
#define LEASE(n) ((1ull << 32) | (n))	/* the n-th lease of a sub */

static const char *outdir;
static struct fy_enc enc;

static void die(const char *what) __attribute__((noreturn));

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

static void
write_file(const char *target, const char *name, const void *p, size_t n)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	if (!(f = fopen(path, "w")) || fwrite(p, 1, n, f) != n ||
	    fclose(f) != 0)
		die(path);
}

/* Append f to the encoder (a session is several frames). */
static void
add(const struct fy_frame *f)
{
	if (fy_encode(&enc, f) != FY_OK) {
		fprintf(stderr, "gen-seeds: cannot encode type %d\n", f->type);
		exit(1);
	}
}

/* ---- frames ---- */

static struct fy_kv hdr[] = {
	{S("content-type"), S("text/plain")},
	{S("trace"), S("abc")},
};
static struct fy_pubmsg batch[] = {
	{.body = S("first"), .id = S("b-1")},
	{.body = S("second"), .hdr = hdr, .nhdr = 2},
	{.body = S("")},
};
static const uint64_t leases[] = {LEASE(1), LEASE(2)};
static struct fy_hist hist[] = {
	{S("nacked"), S("bad input"), S("worker-1"), 1700000000000ull},
	{S("expired"), S(""), S("worker-2"), 1700000001000ull},
};
static struct fy_str ids[] = {S("id-1"), S("id-2")};

static struct fy_frame
hello(uint64_t rid)
{
	return (struct fy_frame){.type = FY_T_HELLO, .rid = rid,
	    .hello = {.version = FY_PROTO_VERSION, .name = S("fuzz")}};
}

static struct fy_frame
pub_one(uint64_t rid, struct fy_str topic, struct fy_pubmsg *one)
{
	struct fy_frame f = {.type = FY_T_PUB, .rid = rid};

	f.pub.topic = topic;
	f.pub.msgs = one;
	f.pub.nmsgs = 1;
	return f;
}

static struct fy_frame
pub_batch(uint64_t rid, struct fy_str topic)
{
	struct fy_frame f = {.type = FY_T_PUB, .rid = rid};

	f.pub.topic = topic;
	f.pub.msgs = batch;
	f.pub.nmsgs = 3;
	return f;
}

static struct fy_frame
sub(uint64_t rid, struct fy_str topic, struct fy_str group, uint32_t mode,
    uint32_t max_attempts, int ephemeral)
{
	struct fy_frame f = {.type = FY_T_SUB, .rid = rid};

	f.sub.topic = topic;
	f.sub.group = group;
	f.sub.prefetch = 4;
	f.sub.mode = mode;
	f.sub.ack_timeout_ms = 5000;
	f.sub.max_attempts = max_attempts;
	f.sub.ephemeral = (uint8_t)ephemeral;
	return f;
}

/* Fills *f in place: a one-lease ACK points into the frame itself. */
static void
settle(struct fy_frame *f, int type, uint64_t rid, uint64_t sid,
    uint64_t lease)
{
	*f = (struct fy_frame){.type = type, .rid = rid};
	switch (type) {
	case FY_T_UNSUB:
		f->unsub.sid = sid;
		break;
	case FY_T_ACK:
		f->ack.sid = sid;
		f->ack.one = lease;
		f->ack.leases = &f->ack.one;
		f->ack.nleases = 1;
		break;
	case FY_T_NACK:
		f->nack.sid = sid;
		f->nack.lease = lease;
		f->nack.has_delay = 1;
		f->nack.delay_ms = 0;
		f->nack.error = S("cannot handle it");
		break;
	case FY_T_TOUCH:
		f->touch.sid = sid;
		f->touch.lease = lease;
		break;
	}
}

static struct fy_frame
del(uint64_t rid, struct fy_str topic, struct fy_str group)
{
	return (struct fy_frame){.type = FY_T_DELETE, .rid = rid,
	    .del = {.topic = topic, .group = group}};
}

static void
emit(const char *target, const char *name)
{
	write_file(target, name, enc.sb.data, enc.sb.size);
	fy_enc_clear(&enc);
}

/* One file per frame type, for the decoder. */
static void
decode_seeds(void)
{
	struct fy_pubmsg one = {.body = S("hello"), .id = S("m-1"),
	    .hdr = hdr, .nhdr = 2};
	struct fy_frame f;

	f = hello(1);
	add(&f);
	emit("decode", "hello");
	f = pub_one(2, S("orders"), &one);
	add(&f);
	emit("decode", "pub");
	f = pub_batch(3, S("orders"));
	add(&f);
	emit("decode", "pub-batch");
	f = sub(4, S("orders"), S("billing"), FY_MODE_ALO, 3, 0);
	add(&f);
	emit("decode", "sub");
	f = sub(5, S("orders"), S(""), FY_MODE_AMO, 0, 1);
	add(&f);
	emit("decode", "sub-ephemeral");
	settle(&f, FY_T_UNSUB, 6, 1, 0);
	add(&f);
	emit("decode", "unsub");
	settle(&f, FY_T_ACK, 7, 1, LEASE(1));
	add(&f);
	emit("decode", "ack");
	settle(&f, FY_T_ACK, 8, 1, 0);
	f.ack.leases = leases;
	f.ack.nleases = 2;
	add(&f);
	emit("decode", "ack-many");
	settle(&f, FY_T_NACK, 9, 1, LEASE(2));
	add(&f);
	emit("decode", "nack");
	settle(&f, FY_T_TOUCH, 10, 1, LEASE(3));
	add(&f);
	emit("decode", "touch");
	f = del(11, S("orders"), S("billing"));
	add(&f);
	emit("decode", "delete");
	f = (struct fy_frame){.type = FY_T_PING, .rid = 12};
	add(&f);
	emit("decode", "ping");
	f = (struct fy_frame){.type = FY_T_WELCOME, .rid = 1};
	f.welcome.version = FY_PROTO_VERSION;
	f.welcome.server = S("ferryd 0.1.0");
	f.welcome.session = S("0b8e4a52-51c4-4bb0-9d0c-1d2d3c4b5a69");
	f.welcome.max_frame = 8u << 20;
	f.welcome.max_msg = 1u << 20;
	f.welcome.boot = S("6f1e0c2a-8d3b-4e5f-9a7c-1b2d3e4f5a6b");
	f.welcome.idle_ms = 300000;
	add(&f);
	emit("decode", "welcome");
	f = (struct fy_frame){.type = FY_T_OK, .rid = 3};
	f.ok.sid = 1;
	f.ok.group = S("billing");
	f.ok.ids = ids;
	f.ok.nids = 2;
	f.ok.dur = FY_DUR_SYNCED;
	add(&f);
	emit("decode", "ok");
	f = (struct fy_frame){.type = FY_T_ERR, .rid = 4};
	f.err.code = FY_E_STALE;
	f.err.msg = S("lease 4294967296 is no longer valid");
	f.err.sid = 1;
	add(&f);
	emit("decode", "err");
	f = (struct fy_frame){.type = FY_T_MSG};
	f.msg.sid = 1;
	f.msg.id = S("m-1");
	f.msg.topic = S("orders.dlq");
	f.msg.lease = LEASE(1);
	f.msg.attempt = 2;
	f.msg.ts = 1700000000000ull;
	f.msg.hdr = hdr;
	f.msg.nhdr = 2;
	f.msg.hist = hist;
	f.msg.nhist = 2;
	f.msg.body = S("payload");
	add(&f);
	emit("decode", "msg");
}

/* Whole sessions, for the connection. */
static void
conn_seeds(void)
{
	struct fy_pubmsg one = {.body = S("hello"), .hdr = hdr, .nhdr = 1};
	struct fy_pubmsg idm = {.body = S("with id"), .id = S("mine-1")};
	struct fy_frame f;

	/* At-least-once: publish, consume, settle every way, tear down. */
	f = hello(1);
	add(&f);
	f = sub(2, S("jobs"), S("workers"), FY_MODE_ALO, 0, 0);
	add(&f);
	f = pub_one(3, S("jobs"), &one);
	add(&f);
	f = pub_batch(4, S("jobs"));
	add(&f);
	f = pub_one(0, S("jobs"), &idm);
	add(&f);
	settle(&f, FY_T_ACK, 5, 1, LEASE(0));
	add(&f);
	settle(&f, FY_T_NACK, 6, 1, LEASE(1));
	add(&f);
	settle(&f, FY_T_TOUCH, 7, 1, LEASE(2));
	add(&f);
	settle(&f, FY_T_ACK, 8, 1, 0);
	f.ack.leases = leases;
	f.ack.nleases = 2;
	add(&f);
	f = (struct fy_frame){.type = FY_T_PING, .rid = 9};
	add(&f);
	settle(&f, FY_T_UNSUB, 10, 1, 0);
	add(&f);
	f = del(11, S("jobs"), S("workers"));
	add(&f);
	f = del(12, S("jobs"), S(""));
	add(&f);
	emit("conn", "session-alo");

	/* Dead letters: one attempt, NACK it, read the .dlq topic. */
	f = hello(1);
	add(&f);
	f = sub(2, S("mail"), S("senders"), FY_MODE_ALO, 1, 0);
	add(&f);
	f = sub(3, S("mail.dlq"), S("ops"), FY_MODE_ALO, 0, 0);
	add(&f);
	f = pub_one(4, S("mail"), &one);
	add(&f);
	settle(&f, FY_T_NACK, 5, 1, LEASE(0));
	add(&f);
	settle(&f, FY_T_ACK, 6, 2, LEASE(0));
	add(&f);
	emit("conn", "session-dlq");

	/* At-most-once and an ephemeral listener beside a worker group. */
	f = hello(0);
	add(&f);
	f = pub_batch(1, S("events"));
	add(&f);
	f = sub(2, S("events"), S(""), FY_MODE_AMO, 0, 1);
	add(&f);
	f = sub(3, S("events"), S("store"), FY_MODE_ALO, 0, 0);
	add(&f);
	f = pub_one(4, S("events"), &one);
	add(&f);
	settle(&f, FY_T_ACK, 5, 1, LEASE(0));	/* E_MODE */
	add(&f);
	settle(&f, FY_T_UNSUB, 6, 2, 0);
	add(&f);
	f = del(7, S("events"), S("store"));
	add(&f);
	emit("conn", "session-amo");

	/* Only the handshake, and a request before it. */
	f = hello(1);
	add(&f);
	emit("conn", "hello");
	f = (struct fy_frame){.type = FY_T_PING, .rid = 1};
	add(&f);
	emit("conn", "no-hello");

	/* A SCRAM login (RFC 7677's messages; the proof cannot match the
	 * broker's random nonce, so the AUTH is refused), then requests. */
	f = hello(1);
	f.hello.mech = S("SCRAM-SHA-256");
	f.hello.sasl = S("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
	add(&f);
	f = (struct fy_frame){.type = FY_T_AUTH, .rid = 2};
	f.auth.sasl = S("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)"
	    "hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
	add(&f);
	f = pub_one(3, S("jobs.a"), &one);
	add(&f);
	emit("conn", "scram");
	/* An unknown user, and an AUTH out of turn. */
	f = hello(1);
	f.hello.mech = S("SCRAM-SHA-256");
	f.hello.sasl = S("n,,n=nobody,r=abc");
	add(&f);
	f = (struct fy_frame){.type = FY_T_AUTH, .rid = 2};
	f.auth.sasl = S("c=biws,r=abc,p=AAAA");
	add(&f);
	emit("conn", "scram-unknown");
	f = (struct fy_frame){.type = FY_T_AUTH, .rid = 1};
	f.auth.sasl = S("c=biws,r=abc,p=AAAA");
	add(&f);
	emit("conn", "auth-first");
	/* Anonymous (the admin entry), then permissions on every request. */
	f = hello(1);
	add(&f);
	f = sub(2, S("_inbox.x"), S(""), FY_MODE_AMO, 0, 1);
	add(&f);
	f = pub_one(3, S("_inbox.x"), &one);
	add(&f);
	f = del(4, S("_inbox.x"), S(""));
	add(&f);
	emit("conn", "anonymous-admin");
}

/* ---- journal ---- */

static msgpack_sbuffer rsb;
static uint8_t jbuf[8192];
static size_t jlen;

/* While seed_records is set, each record encoded is also a seed of
 * fuzz-record: u8 type | payload (nrec counts them). */
static int seed_records, nrec;

static void
record_seed(const struct rec *r)
{
	uint8_t buf[4096];
	char name[32];

	if (!seed_records || rsb.size + 1 > sizeof(buf))
		return;
	buf[0] = r->type;
	memcpy(buf + 1, rsb.data, rsb.size);
	snprintf(name, sizeof(name), "rec-%02d-type-%u", nrec++, r->type);
	write_file("record", name, buf, rsb.size + 1);
}

/* Structured input for fuzz-journal: u8 type | u16 len | payload. */
static void
rec(const struct rec *r)
{
	msgpack_sbuffer_clear(&rsb);
	if (rec_encode(&rsb, r) < 0 || jlen + 3 + rsb.size > sizeof(jbuf)) {
		fprintf(stderr, "gen-seeds: cannot encode record %d\n",
		    r->type);
		exit(1);
	}
	record_seed(r);
	jbuf[jlen++] = r->type;
	jbuf[jlen++] = (uint8_t)rsb.size;
	jbuf[jlen++] = (uint8_t)(rsb.size >> 8);
	memcpy(jbuf + jlen, rsb.data, rsb.size);
	jlen += rsb.size;
}

static void
jstart(uint8_t flags)
{
	jlen = 0;
	jbuf[jlen++] = flags;
}

/* The records of a small history: seqs 1..n from 1. */
static void
history(int moved)
{
	struct rec r;
	struct rec_entry ent = {.gid = 1, .attempts = 1,
	    .causes = {[CAUSE_NACKED] = 1}};

	memset(&r, 0, sizeof(r));
	r.type = REC_GROUP;			/* seq 1 */
	r.group.gid = 1;
	r.group.topic = S("jobs");
	r.group.name = S("workers");
	r.group.ack_timeout_ms = 30000;
	r.group.max_attempts = 2;
	rec(&r);
	for (int i = 0; i < 3; i++) {		/* seqs 2, 3, 4 */
		memset(&r, 0, sizeof(r));
		r.type = REC_PUB;
		r.pub.topic = S("jobs");
		r.pub.id = i == 0 ? S("m-1") : i == 1 ? S("m-2") : S("m-3");
		r.pub.ts = 1700000000000ull + (uint64_t)i;
		r.pub.m.body = S("body");
		if (i == 1) {
			r.pub.m.hdr = hdr;
			r.pub.m.nhdr = 2;
		}
		rec(&r);
	}
	memset(&r, 0, sizeof(r));
	r.type = REC_ACK;			/* seq 5 */
	r.ack.gid = 1;
	r.ack.mseq = 2;
	rec(&r);
	memset(&r, 0, sizeof(r));
	r.type = REC_FAIL;			/* seq 6 */
	r.fail.gid = 1;
	r.fail.mseq = 3;
	r.fail.cause = CAUSE_NACKED;
	r.fail.at = 1700000002000ull;
	r.fail.not_before = 1700000003000ull;
	r.fail.consumer = S("worker-1");
	r.fail.error = S("bad input");
	rec(&r);
	memset(&r, 0, sizeof(r));
	r.type = REC_PUB;			/* seq 7: a dead letter */
	r.pub.topic = S("jobs.dlq");
	r.pub.id = S("m-0");
	r.pub.ts = 1699999999000ull;
	r.pub.m.body = S("dead");
	r.pub.hist = hist;
	r.pub.nhist = 2;
	rec(&r);
	if (moved) {
		memset(&r, 0, sizeof(r));
		r.type = REC_MOVE;		/* seq 8 */
		r.move.old_mseq = 3;
		r.move.topic = S("jobs");
		r.move.id = S("m-2");
		r.move.ts = 1700000000001ull;
		r.move.m.body = S("body");
		r.move.ent = &ent;
		r.move.nent = 1;
		rec(&r);
	}
}

/* A segment written by the journal itself, for the raw modes. */
static void
real_segment(void)
{
	char dir[] = "/tmp/ferry-gen-seeds.XXXXXX", path[PATH_MAX];
	struct journal_opts o = {.dir = dir, .fsync = FSYNC_NEVER,
	    .segment_size = JOURNAL_SEGMENT_MIN};
	struct event_base *base;
	struct journal *j;
	struct rec r = {.type = REC_PUB};
	static uint8_t seg[JOURNAL_SEGMENT_MIN + 1];
	char err[256];
	ssize_t n;
	size_t end;
	int fd;

	if (!mkdtemp(dir) || !(base = event_base_new()))
		die("real_segment");
	if (journal_open(&j, base, &o, err, sizeof(err)) < 0 ||
	    journal_replay(j, NULL, NULL, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "gen-seeds: %s\n", err);
		exit(1);
	}
	r.pub.topic = S("jobs");
	r.pub.id = S("m-1");
	r.pub.ts = 1700000000000ull;
	r.pub.m.body = S("body");
	msgpack_sbuffer_clear(&rsb);
	rec_encode(&rsb, &r);
	for (int i = 0; i < 3; i++)
		journal_append(j, REC_PUB, rsb.data, rsb.size, NULL);
	journal_commit(j);
	journal_close(j);
	event_base_free(base);

	snprintf(path, sizeof(path), "%s/journal-%020d.seg", dir, 1);
	seg[0] = 0;				/* raw mode */
	if ((fd = open(path, O_RDONLY)) < 0 ||
	    (n = read(fd, seg + 1, sizeof(seg) - 1)) < 0)
		die(path);
	close(fd);
	/* Of the zeros after the records keep one record header's worth:
	 * the end marker. */
	end = (size_t)n;
	while (end > 0 && seg[end] == 0)
		end--;
	n = end + 17 < (size_t)n ? (ssize_t)(end + 17) : n;
	write_file("journal", "raw-segment", seg, (size_t)n + 1);
	/* Mode 1: the same records after a generated header. */
	seg[32] = 1;
	write_file("journal", "header-records", seg + 32, (size_t)n + 1 - 32);
	unlink(path);
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	unlink(path);
	rmdir(dir);
}

/* The types history() does not write, for fuzz-record (and for
 * fuzz-journal, which replays them too). */
static void
more_records(void)
{
	static const uint64_t mseq[3] = {2, 1, 5};
	struct rec r;

	memset(&r, 0, sizeof(r));
	r.type = REC_SETTLE;
	r.settle.gid = 1;
	r.settle.mseq = mseq;
	r.settle.n = 3;
	rec(&r);
	memset(&r, 0, sizeof(r));
	r.type = REC_PRODUCER;
	r.producer.pid = S("producer-1");
	r.producer.seq = 1700000000000001ull;
	rec(&r);
	memset(&r, 0, sizeof(r));
	r.type = REC_GROUP_DEL;
	r.group_del.gid = 1;
	rec(&r);
	memset(&r, 0, sizeof(r));
	r.type = REC_TOPIC_DEL;
	r.topic_del.topic = S("jobs.dlq");
	rec(&r);
	/* Last, so the seeds above keep their names: the producer record
	 * with its last activity (the one above is the older 2-element
	 * form). */
	memset(&r, 0, sizeof(r));
	r.type = REC_PRODUCER;
	r.producer.pid = S("producer-2");
	r.producer.seq = 7;
	r.producer.at = 1700000000000ull;
	rec(&r);
}

static void
journal_seeds(void)
{
	jstart(2);
	history(0);
	write_file("journal", "records", jbuf, jlen);
	jstart(2 | 32);
	history(1);
	write_file("journal", "records-moved-padded", jbuf, jlen);
	/* Two segments: records 1-4, then 5-7. */
	jstart(2 | 8);
	jbuf[jlen++] = 4;
	history(0);
	write_file("journal", "records-two-segments", jbuf, jlen);
	/* A torn last record. */
	jstart(2 | 64);
	history(0);
	write_file("journal", "records-torn", jbuf, jlen);
	jstart(2);
	seed_records = 1;
	history(1);
	more_records();
	seed_records = 0;
	write_file("journal", "records-every-type", jbuf, jlen);
	real_segment();
}

/* ---- config ---- */

static void
config_seeds(void)
{
	static const char ini[] =
	    "[ferryd]\n"
	    "listen = 0.0.0.0\n"
	    "port = 0\n"
	    "fsync = everysec\n"
	    "segment_size = 1M\n"
	    "ack_timeout = 0.5\n"
	    "max_frame_size = 64K\n"
	    "max_message_size = 16K\n"
	    "log_level = debug\n";
	static const char args[] =
	    "-p 0 --fsync never --segment-size 64K --ack-timeout 1.5 "
	    "--max-message-size 1M --max-frame-size 2M -d data";
	static const char nul_args[] =
	    "--config\0@\0--port=4471\0--log-level\0warn";
	static const char bad[] = "port = 70000\nfsync = sometimes\n";

	write_file("config", "ini", ini, sizeof(ini) - 1);
	write_file("config", "args", args, sizeof(args) - 1);
	write_file("config", "args-config", nul_args, sizeof(nul_args) - 1);
	write_file("config", "ini-bad", bad, sizeof(bad) - 1);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) < 0 && errno != EEXIST)
		die(outdir);
	log_level = LOG_ERROR;
	fy_enc_init(&enc);
	msgpack_sbuffer_init(&rsb);
	decode_seeds();
	conn_seeds();
	journal_seeds();
	config_seeds();
	fy_enc_fini(&enc);
	msgpack_sbuffer_destroy(&rsb);
	return 0;
}
