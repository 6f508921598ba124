/*
 * test-codec.c - unit tests for protocol/: framing and the frame codec.
 *
 * Round trips use the encoder; everything about bad input builds payloads
 * by hand with msgpack-c's packer, so the decoder is not only tested
 * against its own encoder.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <msgpack.h>

#include "codec.h"
#include "frame.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* Integer arguments of pack() and vpack_args(). */
#define U(x) ((unsigned long long)(x))
#define S(lit) ((struct fy_str){ (lit), sizeof(lit) - 1 })

/* ------------------------------------------------------------------ */
/* Helpers */

static int
str_eq(struct fy_str a, struct fy_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

#define ck_str(a, b)							\
	ck_assert_msg(str_eq(a, b), "%s: \"%.*s\" != \"%.*s\"", #a,	\
	    (int)(a).len, (a).p ? (a).p : "", (int)(b).len,		\
	    (b).p ? (b).p : "")

static void
ck_kv(const struct fy_kv *a, uint32_t na, const struct fy_kv *b,
    uint32_t nb)
{
	uint32_t i;

	ck_assert_uint_eq(na, nb);
	for (i = 0; i < na; i++) {
		ck_str(a[i].k, b[i].k);
		ck_str(a[i].v, b[i].v);
	}
}

static void
ck_pubmsg(const struct fy_pubmsg *a, const struct fy_pubmsg *b)
{
	ck_str(a->body, b->body);
	ck_str(a->id, b->id);
	ck_kv(a->hdr, a->nhdr, b->hdr, b->nhdr);
	ck_assert_uint_eq(a->delay_ms, b->delay_ms);
	ck_assert_uint_eq(a->ttl_ms, b->ttl_ms);
	ck_str(a->reply_to, b->reply_to);
	ck_str(a->corr, b->corr);
	ck_str(a->pid, b->pid);
	ck_assert_uint_eq(a->pseq, b->pseq);
}

static void
ck_gstat(const struct fy_gstat *a, const struct fy_gstat *b)
{
	ck_str(a->topic, b->topic);
	ck_str(a->group, b->group);
	ck_assert_uint_eq(a->ready, b->ready);
	ck_assert_uint_eq(a->delayed, b->delayed);
	ck_assert_uint_eq(a->inflight, b->inflight);
	ck_assert_uint_eq(a->bytes, b->bytes);
	ck_assert_uint_eq(a->members, b->members);
	ck_assert_uint_eq(a->enqueued, b->enqueued);
	ck_assert_uint_eq(a->delivered, b->delivered);
	ck_assert_uint_eq(a->acked, b->acked);
	ck_assert_uint_eq(a->timeouts, b->timeouts);
	ck_assert_uint_eq(a->nacked, b->nacked);
	ck_assert_uint_eq(a->disconnected, b->disconnected);
	ck_assert_uint_eq(a->released, b->released);
	ck_assert_uint_eq(a->expired, b->expired);
	ck_assert_uint_eq(a->dead_lettered, b->dead_lettered);
	ck_assert_uint_eq(a->amo, b->amo);
	ck_assert_uint_eq(a->overflow, b->overflow);
	ck_assert_uint_eq(a->dropped, b->dropped);
	ck_assert_uint_eq(a->slow, b->slow);
	ck_assert_uint_eq(a->age_ms, b->age_ms);
}

static void
ck_bstat(const struct fy_bstat *a, const struct fy_bstat *b)
{
	ck_assert_mem_eq(a, b, sizeof(*a));	/* integers only */
}

static void
ck_lease_info(const struct fy_lease_info *a, const struct fy_lease_info *b)
{
	ck_str(a->id, b->id);
	ck_str(a->consumer, b->consumer);
	ck_assert_uint_eq(a->age_ms, b->age_ms);
	ck_assert_uint_eq(a->attempt, b->attempt);
	ck_str(a->error, b->error);
	ck_assert_uint_eq(a->left_ms, b->left_ms);
}

static void
ck_event(const struct fy_event *a, const struct fy_event *b)
{
	ck_assert_uint_eq(a->at, b->at);
	ck_str(a->what, b->what);
	ck_str(a->topic, b->topic);
	ck_str(a->group, b->group);
	ck_str(a->consumer, b->consumer);
	ck_assert_uint_eq(a->attempt, b->attempt);
	ck_str(a->error, b->error);
}

/* Field-by-field comparison of what the encoder wrote for a type. */
static void
ck_frame(const struct fy_frame *a, const struct fy_frame *b)
{
	uint32_t i;

	ck_assert_int_eq(a->type, b->type);
	ck_assert_uint_eq(a->rid, b->rid);
	switch (a->type) {
	case FY_T_HELLO:
		ck_assert_uint_eq(a->hello.version, b->hello.version);
		ck_str(a->hello.name, b->hello.name);
		ck_str(a->hello.mech, b->hello.mech);
		ck_str(a->hello.sasl, b->hello.sasl);
		break;
	case FY_T_AUTH:
	case FY_T_CHALLENGE:
		ck_str(a->auth.sasl, b->auth.sasl);
		break;
	case FY_T_PUB:
		ck_str(a->pub.topic, b->pub.topic);
		ck_str(a->pub.group, b->pub.group);
		ck_assert_uint_eq(a->pub.mandatory, b->pub.mandatory);
		ck_assert_uint_eq(a->pub.nmsgs, b->pub.nmsgs);
		for (i = 0; i < a->pub.nmsgs; i++)
			ck_pubmsg(&a->pub.msgs[i], &b->pub.msgs[i]);
		break;
	case FY_T_SUB:
		ck_str(a->sub.topic, b->sub.topic);
		ck_str(a->sub.group, b->sub.group);
		ck_assert_uint_eq(a->sub.prefetch, b->sub.prefetch);
		ck_assert_uint_eq(a->sub.mode, b->sub.mode);
		ck_assert_uint_eq(a->sub.ack_timeout_ms, b->sub.ack_timeout_ms);
		ck_assert_uint_eq(a->sub.max_attempts, b->sub.max_attempts);
		ck_assert_uint_eq(a->sub.ephemeral, b->sub.ephemeral);
		ck_assert_uint_eq(a->sub.ttl_ms, b->sub.ttl_ms);
		ck_assert_uint_eq(a->sub.ttl_drop, b->sub.ttl_drop);
		ck_assert_uint_eq(a->sub.max_msgs, b->sub.max_msgs);
		ck_assert_uint_eq(a->sub.max_bytes, b->sub.max_bytes);
		ck_assert_uint_eq(a->sub.overflow, b->sub.overflow);
		break;
	case FY_T_UNSUB:
		ck_assert_uint_eq(a->unsub.sid, b->unsub.sid);
		break;
	case FY_T_ACK:
		ck_assert_uint_eq(a->ack.sid, b->ack.sid);
		ck_assert_uint_eq(a->ack.nleases, b->ack.nleases);
		for (i = 0; i < a->ack.nleases; i++)
			ck_assert_uint_eq(a->ack.leases[i], b->ack.leases[i]);
		break;
	case FY_T_NACK:
		ck_assert_uint_eq(a->nack.sid, b->nack.sid);
		ck_assert_uint_eq(a->nack.lease, b->nack.lease);
		ck_assert_uint_eq(a->nack.has_delay, b->nack.has_delay);
		ck_assert_uint_eq(a->nack.delay_ms, b->nack.delay_ms);
		ck_str(a->nack.error, b->nack.error);
		break;
	case FY_T_TOUCH:
		ck_assert_uint_eq(a->touch.sid, b->touch.sid);
		ck_assert_uint_eq(a->touch.lease, b->touch.lease);
		break;
	case FY_T_DELETE:
		ck_str(a->del.topic, b->del.topic);
		ck_str(a->del.group, b->del.group);
		break;
	case FY_T_PING:
		break;
	case FY_T_STATS:
	case FY_T_INFLIGHT:
	case FY_T_PEEK:
	case FY_T_TRACE:
		ck_str(a->query.topic, b->query.topic);
		ck_str(a->query.group, b->query.group);
		ck_str(a->query.id, b->query.id);
		break;
	case FY_T_WELCOME:
		ck_assert_uint_eq(a->welcome.version, b->welcome.version);
		ck_str(a->welcome.server, b->welcome.server);
		ck_str(a->welcome.session, b->welcome.session);
		ck_assert_uint_eq(a->welcome.max_frame, b->welcome.max_frame);
		ck_assert_uint_eq(a->welcome.max_msg, b->welcome.max_msg);
		ck_str(a->welcome.boot, b->welcome.boot);
		ck_assert_uint_eq(a->welcome.idle_ms, b->welcome.idle_ms);
		ck_str(a->welcome.user, b->welcome.user);
		ck_str(a->welcome.sasl, b->welcome.sasl);
		break;
	case FY_T_OK:
		ck_assert_uint_eq(a->ok.sid, b->ok.sid);
		ck_str(a->ok.group, b->ok.group);
		ck_assert_uint_eq(a->ok.dur, b->ok.dur);
		ck_assert_uint_eq(a->ok.nids, b->ok.nids);
		for (i = 0; i < a->ok.nids; i++)
			ck_str(a->ok.ids[i], b->ok.ids[i]);
		ck_assert_uint_eq(a->ok.dups, b->ok.dups);
		ck_assert_uint_eq(a->ok.nstats, b->ok.nstats);
		for (i = 0; i < a->ok.nstats; i++)
			ck_gstat(&a->ok.stats[i], &b->ok.stats[i]);
		ck_assert_uint_eq(a->ok.nbroker, b->ok.nbroker);
		for (i = 0; i < a->ok.nbroker; i++)
			ck_bstat(&a->ok.broker[i], &b->ok.broker[i]);
		ck_assert_uint_eq(a->ok.ninflight, b->ok.ninflight);
		for (i = 0; i < a->ok.ninflight; i++)
			ck_lease_info(&a->ok.inflight[i], &b->ok.inflight[i]);
		ck_assert_uint_eq(a->ok.nevents, b->ok.nevents);
		for (i = 0; i < a->ok.nevents; i++)
			ck_event(&a->ok.events[i], &b->ok.events[i]);
		break;
	case FY_T_ERR:
		ck_assert_uint_eq(a->err.code, b->err.code);
		ck_str(a->err.msg, b->err.msg);
		ck_assert_uint_eq(a->err.sid, b->err.sid);
		break;
	case FY_T_MSG:
		ck_assert_uint_eq(a->msg.sid, b->msg.sid);
		ck_str(a->msg.id, b->msg.id);
		ck_str(a->msg.topic, b->msg.topic);
		ck_assert_uint_eq(a->msg.lease, b->msg.lease);
		ck_assert_uint_eq(a->msg.attempt, b->msg.attempt);
		ck_assert_uint_eq(a->msg.ts, b->msg.ts);
		ck_kv(a->msg.hdr, a->msg.nhdr, b->msg.hdr, b->msg.nhdr);
		ck_assert_uint_eq(a->msg.nhist, b->msg.nhist);
		for (i = 0; i < a->msg.nhist; i++) {
			ck_str(a->msg.hist[i].cause, b->msg.hist[i].cause);
			ck_str(a->msg.hist[i].error, b->msg.hist[i].error);
			ck_str(a->msg.hist[i].consumer,
			    b->msg.hist[i].consumer);
			ck_assert_uint_eq(a->msg.hist[i].at, b->msg.hist[i].at);
		}
		ck_str(a->msg.reply_to, b->msg.reply_to);
		ck_str(a->msg.corr, b->msg.corr);
		ck_str(a->msg.body, b->msg.body);
		break;
	default:
		ck_abort_msg("unexpected type %d", a->type);
	}
}

/* Big buffers for the str16/str32/bin16/bin32 encodings. */
static char big[70000];
static char name200[FY_NAME_MAX];

static struct fy_kv hdr2[] = {
	{ S("content-type"), S("application/json") },
	{ S("trace"), S("") },
};
static struct fy_kv hdr20[20];
static const char *const keys20[20] = {
	"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9",
	"k10", "k11", "k12", "k13", "k14", "k15", "k16", "k17", "k18", "k19",
};

static char id64[FY_ID_MAX];
static struct fy_pubmsg batch2[2];
/* A group row with every counter set, at every width, and a topic's
 * backlog row (empty group, mostly zeros: omitted on the wire). */
static struct fy_gstat gstat2[2] = {
	{ S("orders.created"), S("billing"), 1, 2, 3, 1ULL << 40, 5,
	    UINT64_MAX, 300, 70000, 1ULL << 32, 10, 11, 12, 13, 14, 15, 16,
	    17, 18, 86400000 },
	{ S("orders.created"), S(""), 42, 0, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0,
	    0, 0, 0, 0, 0, 0, 0 },
};
/* Broker-wide figures: every field, some 0 (omitted on the wire). */
static struct fy_bstat bstat1[1] = {
	{ 7, 3, 0, 1ULL << 33, 5, 6, 1ULL << 40, UINT64_MAX, 9, 10, 11, 12,
	    1ULL << 26, 0, 10000000, 1ULL << 33, 0, 123456 },
};
static struct fy_gstat gstat17[17];
static struct fy_lease_info leases3[3] = {
	{ S("3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40"), S("worker-1"), 1500, 1,
	    S(""), 0 },
	{ S("order-42"), S("worker-2"), 0, 4, S("boom: db down"), 29000 },
	{ S("x"), S(""), 1ULL << 35, UINT32_MAX, S(""), 1ULL << 40 },
};
static struct fy_event events4[4] = {
	{ 1700000000000ULL, S("published"), S("orders.created"), S(""),
	    S("producer"), 0, S("") },
	{ 1700000000005ULL, S("delivered"), S("orders.created"),
	    S("billing"), S("worker-1"), 1, S("") },
	{ 1700000000900ULL, S("nacked"), S("orders.created"), S("billing"),
	    S("worker-1"), 1, S("boom") },
	{ 1700000030000ULL, S("dead-lettered"), S("orders.created"),
	    S("billing"), S(""), 5, S("") },
};

static void
init_data(void)
{
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + (i >> 8));	/* includes NULs */
	memset(name200, 'n', sizeof(name200));
	memset(id64, 'p', sizeof(id64));
	for (i = 0; i < ARRAY_LEN(gstat17); i++) {
		gstat17[i].topic = S("t");
		gstat17[i].group.p = keys20[i];
		gstat17[i].group.len = (uint32_t)strlen(keys20[i]);
		gstat17[i].ready = i;
		gstat17[i].dead_lettered = (uint64_t)i << 20;
	}
	for (i = 0; i < ARRAY_LEN(hdr20); i++) {
		hdr20[i].k.p = keys20[i];
		hdr20[i].k.len = (uint32_t)strlen(keys20[i]);
		hdr20[i].v.p = big;
		hdr20[i].v.len = (uint32_t)i * 20;
	}
}

static struct fy_pubmsg batch[3];
static struct fy_str ids3[3] = {
	S("3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40"), S("my-id"), S("x"),
};
static uint64_t leases5[5] = { 1, 200, 70000, 1ULL << 33, UINT64_MAX };
static struct fy_hist hist2[2] = {
	{ S("timeout"), S(""), S("worker-1"), 1700000000000ULL },
	{ S("nacked"), S("boom: db down"), S(""), 0 },
};

/* RFC 7677's SCRAM-SHA-256 exchange (user "user", password "pencil"). */
#define SCRAM_C1 "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define SCRAM_S1 "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
	"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define SCRAM_C2 "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)" \
	"hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SCRAM_S2 "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* Fill *f with sample number i; one or more per frame type. */
static void
sample(int i, struct fy_frame *f)
{
	memset(f, 0, sizeof(*f));
	switch (i) {
	case 0:
		f->type = FY_T_HELLO;
		f->hello.version = 1;
		f->hello.name = S("worker-1");
		break;
	case 1:
		f->type = FY_T_HELLO;
		f->rid = 7;
		f->hello.version = 0;	/* required: written even when 0 */
		break;
	case 2:
		f->type = FY_T_PUB;
		f->rid = 1;
		f->pub.topic = S("orders.created");
		f->pub.one.body = S("hello");
		f->pub.msgs = &f->pub.one;
		f->pub.nmsgs = 1;
		break;
	case 3:
		f->type = FY_T_PUB;
		f->pub.topic = S("t");
		f->pub.one.id = S("order-42");
		f->pub.one.hdr = hdr2;
		f->pub.one.nhdr = ARRAY_LEN(hdr2);
		f->pub.one.body.p = "";
		f->pub.one.body.len = 0;	/* empty bodies are bodies */
		f->pub.msgs = &f->pub.one;
		f->pub.nmsgs = 1;
		break;
	case 4:
		memset(batch, 0, sizeof(batch));
		batch[0].body = S("first");
		batch[0].id = S("id-1");
		batch[0].hdr = hdr2;
		batch[0].nhdr = 1;
		batch[1].body = S("second");
		batch[1].hdr = hdr2;
		batch[1].nhdr = ARRAY_LEN(hdr2);
		batch[2].id = S("z");
		batch[2].body.p = big;
		batch[2].body.len = sizeof(big);
		f->type = FY_T_PUB;
		f->rid = 300;
		f->pub.topic = S("batch.topic");
		f->pub.msgs = batch;
		f->pub.nmsgs = ARRAY_LEN(batch);
		break;
	case 5:
		f->type = FY_T_SUB;
		f->rid = 1ULL << 40;
		f->sub.topic = S("orders.created");
		f->sub.group = S("billing");
		f->sub.prefetch = 100;
		f->sub.mode = FY_MODE_AMO;
		f->sub.ack_timeout_ms = 5000;
		f->sub.max_attempts = 3;
		f->sub.ephemeral = 1;
		break;
	case 6:
		f->type = FY_T_SUB;
		f->sub.topic = S("a");
		break;
	case 7:
		f->type = FY_T_UNSUB;
		f->rid = 2;
		f->unsub.sid = 3;
		break;
	case 8:
		f->type = FY_T_ACK;
		f->ack.sid = 1;
		f->ack.one = 0xdeadbeefcafeULL;
		f->ack.leases = &f->ack.one;
		f->ack.nleases = 1;
		break;
	case 9:
		f->type = FY_T_ACK;
		f->rid = 10;
		f->ack.sid = 65536;
		f->ack.leases = leases5;
		f->ack.nleases = ARRAY_LEN(leases5);
		break;
	case 10:
		f->type = FY_T_NACK;
		f->nack.sid = 2;
		f->nack.lease = 77;
		f->nack.has_delay = 1;
		f->nack.delay_ms = 0;	/* "now", distinct from absent */
		f->nack.error = S("timeout talking to db");
		break;
	case 11:
		f->type = FY_T_NACK;
		f->rid = 5;
		f->nack.sid = 2;
		f->nack.lease = 78;
		break;
	case 12:
		f->type = FY_T_TOUCH;
		f->touch.sid = 4;
		f->touch.lease = UINT64_MAX;
		break;
	case 13:
		f->type = FY_T_DELETE;
		f->rid = 11;
		f->del.topic = S("orders.created");
		f->del.group = S("billing");
		break;
	case 14:
		f->type = FY_T_DELETE;
		f->del.topic.p = name200;
		f->del.topic.len = sizeof(name200);	/* str8 */
		break;
	case 15:
		f->type = FY_T_PING;
		f->rid = 9;
		break;
	case 16:
		f->type = FY_T_WELCOME;
		f->welcome.version = 1;
		f->welcome.server = S("ferryd 0.1.0");
		f->welcome.session = S("1b4e28ba-2fa1-11d2-883f-0016d3cca427");
		f->welcome.max_frame = 8 << 20;
		f->welcome.max_msg = 1 << 20;
		f->welcome.boot = S("6f1e0c2a-8d3b-4e5f-9a7c-1b2d3e4f5a6b");
		f->welcome.idle_ms = 300000;
		break;
	case 17:
		f->type = FY_T_OK;
		f->rid = 2;
		f->ok.sid = 1;
		f->ok.group = S("default");
		break;
	case 18:
		f->type = FY_T_OK;
		f->rid = 3;
		f->ok.ids = ids3;
		f->ok.nids = ARRAY_LEN(ids3);
		f->ok.dur = FY_DUR_SYNCED;
		break;
	case 19:
		f->type = FY_T_OK;
		f->rid = UINT64_MAX;
		break;
	case 20:
		f->type = FY_T_ERR;
		f->rid = 4;
		f->err.code = FY_E_DELETED;
		f->err.msg.p = big;
		f->err.msg.len = 300;			/* str16 */
		f->err.sid = 12;
		break;
	case 21:
		f->type = FY_T_MSG;
		f->msg.sid = 1;
		f->msg.id = S("3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40");
		f->msg.topic = S("orders.created.dlq");
		f->msg.lease = 123456789;
		f->msg.attempt = 6;
		f->msg.ts = 1700000000123ULL;
		f->msg.hdr = hdr2;
		f->msg.nhdr = ARRAY_LEN(hdr2);
		f->msg.hist = hist2;
		f->msg.nhist = ARRAY_LEN(hist2);
		f->msg.body.p = big;
		f->msg.body.len = 300;			/* bin16 */
		break;
	case 22:
		f->type = FY_T_MSG;
		f->msg.sid = 2;
		f->msg.id = S("i");
		f->msg.body = S("x");
		break;
	case 23:
		f->type = FY_T_MSG;
		f->msg.sid = 3;
		f->msg.id = S("id");
		f->msg.topic.p = name200;
		f->msg.topic.len = sizeof(name200);
		f->msg.attempt = 1;
		f->msg.lease = 1;
		f->msg.body.p = big;
		f->msg.body.len = sizeof(big);		/* bin32 */
		break;
	case 24:
		f->type = FY_T_PUB;
		f->pub.topic = S("h");
		f->pub.one.hdr = hdr20;
		f->pub.one.nhdr = ARRAY_LEN(hdr20);	/* map16 */
		f->pub.one.body.p = big;
		f->pub.one.body.len = 1000;
		f->pub.msgs = &f->pub.one;
		f->pub.nmsgs = 1;
		break;
	case 25:
		f->type = FY_T_ERR;
		f->err.code = FY_E_PROTO;
		f->err.msg.p = big;
		f->err.msg.len = sizeof(big);		/* str32 */
		break;
	case 26:	/* a request: every delivery option, single form */
		f->type = FY_T_PUB;
		f->rid = 2;
		f->pub.topic = S("rpc.echo");
		f->pub.group = S("workers");
		f->pub.mandatory = 1;
		f->pub.one.id = S("req-1");
		f->pub.one.hdr = hdr2;
		f->pub.one.nhdr = 1;
		f->pub.one.delay_ms = 1500;
		f->pub.one.ttl_ms = 1ULL << 33;
		f->pub.one.reply_to = S("_inbox.1b4e28ba");
		f->pub.one.corr = S("c-17");
		f->pub.one.pid.p = id64;
		f->pub.one.pid.len = sizeof(id64);	/* FY_ID_MAX */
		f->pub.one.pseq = UINT64_MAX;
		f->pub.one.body = S("ping");
		f->pub.msgs = &f->pub.one;
		f->pub.nmsgs = 1;
		break;
	case 27:	/* a batch whose messages differ in options */
		memset(batch2, 0, sizeof(batch2));
		batch2[0].body = S("a");
		batch2[0].pid = S("producer-7");
		batch2[0].pseq = 1;
		batch2[0].ttl_ms = 60000;
		batch2[1].body = S("b");
		batch2[1].pid = S("producer-7");
		batch2[1].pseq = 2;
		batch2[1].delay_ms = 1;
		batch2[1].reply_to = S("r");
		batch2[1].corr = S("c");
		f->type = FY_T_PUB;
		f->pub.topic = S("orders.created");
		f->pub.group = S("billing");
		f->pub.mandatory = 1;
		f->pub.msgs = batch2;
		f->pub.nmsgs = ARRAY_LEN(batch2);
		break;
	case 28:
		f->type = FY_T_SUB;
		f->rid = 3;
		f->sub.topic = S("orders.created");
		f->sub.group = S("billing");
		f->sub.ttl_ms = 86400000;
		f->sub.ttl_drop = 1;
		f->sub.max_msgs = 100000;
		f->sub.max_bytes = 1ULL << 40;
		f->sub.overflow = FY_OVERFLOW_DLQ_OLDEST;
		break;
	case 29:
		f->type = FY_T_STATS;
		f->rid = 4;
		break;
	case 30:
		f->type = FY_T_STATS;
		f->query.topic = S("orders.created");
		break;
	case 31:
		f->type = FY_T_INFLIGHT;
		f->rid = 5;
		f->query.topic = S("orders.created");
		f->query.group = S("billing");
		break;
	case 32:
		f->type = FY_T_PEEK;
		f->rid = 6;
		f->query.topic = S("orders.created");
		break;
	case 33:
		f->type = FY_T_TRACE;
		f->rid = 7;
		f->query.id = S("3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40");
		break;
	case 34:	/* a confirm where two of three were duplicates */
		f->type = FY_T_OK;
		f->rid = 8;
		f->ok.ids = ids3;
		f->ok.nids = ARRAY_LEN(ids3);
		f->ok.dur = FY_DUR_WRITTEN;
		f->ok.dups = 2;
		break;
	case 35:	/* STATS without a topic: rows and the broker */
		f->type = FY_T_OK;
		f->rid = 9;
		f->ok.stats = gstat2;
		f->ok.nstats = ARRAY_LEN(gstat2);
		f->ok.broker = bstat1;
		f->ok.nbroker = 1;
		break;
	case 36:
		f->type = FY_T_OK;
		f->rid = 10;
		f->ok.inflight = leases3;
		f->ok.ninflight = ARRAY_LEN(leases3);
		break;
	case 37:
		f->type = FY_T_OK;
		f->rid = 11;
		f->ok.events = events4;
		f->ok.nevents = ARRAY_LEN(events4);
		break;
	case 38:	/* the reply to PEEK: rid, sid 0, lease 0 */
		f->type = FY_T_MSG;
		f->rid = 6;
		f->msg.id = S("req-1");
		f->msg.topic = S("rpc.echo");
		f->msg.attempt = 1;
		f->msg.ts = 1700000000123ULL;
		f->msg.reply_to = S("_inbox.1b4e28ba");
		f->msg.corr = S("c-17");
		f->msg.body = S("ping");
		break;
	case 39:	/* array16 of rows, all three kinds at once */
		f->type = FY_T_OK;
		f->rid = 12;
		f->ok.stats = gstat17;
		f->ok.nstats = ARRAY_LEN(gstat17);
		f->ok.inflight = leases3;
		f->ok.ninflight = 1;
		f->ok.events = events4;
		f->ok.nevents = 1;
		break;
	/* The SCRAM handshake of PROTOCOL.md, from RFC 7677's example. */
	case 40:
		f->type = FY_T_HELLO;
		f->hello.version = 1;
		f->hello.mech = S("SCRAM-SHA-256");
		f->hello.sasl = S(SCRAM_C1);
		break;
	case 41:
		f->type = FY_T_CHALLENGE;
		f->auth.sasl = S(SCRAM_S1);
		break;
	case 42:
		f->type = FY_T_AUTH;
		f->auth.sasl = S(SCRAM_C2);
		break;
	case 43:
		f->type = FY_T_WELCOME;
		f->welcome.version = 1;
		f->welcome.user = S("user");
		f->welcome.sasl = S(SCRAM_S2);
		break;
	default:
		ck_abort_msg("no sample %d", i);
	}
}
#define NSAMPLES 44

/* Encode sample i into e (cleared first); returns the frame length. */
static size_t
encode_sample(struct fy_enc *e, int i, struct fy_frame *f)
{
	size_t need = 0;

	sample(i, f);
	fy_enc_clear(e);
	ck_assert_int_eq(fy_encode(e, f), FY_OK);
	ck_assert_int_eq(fy_frame_need((const uint8_t *)e->sb.data,
	    e->sb.size, &need), FY_OK);
	ck_assert_uint_eq(need, e->sb.size);
	return e->sb.size;
}

/*
 * Tiny payload builder over msgpack-c's own packer, so that bad input is
 * not limited to what our encoder can produce.  One format character per
 * value:
 *   m N  map of N pairs      a N  array of N
 *   s S  str                 b S  bin
 *   u U  uint (unsigned long long)   n I  int (long long)
 *   B    true                N    nil
 *   f    float 1.5           x S  raw bytes (NUL-terminated)
 */
static void
vpack(msgpack_packer *pk, const char *fmt, va_list ap)
{
	const char *s;

	for (; *fmt; fmt++) {
		switch (*fmt) {
		case 'm':
			msgpack_pack_map(pk, va_arg(ap, unsigned));
			break;
		case 'a':
			msgpack_pack_array(pk, va_arg(ap, unsigned));
			break;
		case 's':
			s = va_arg(ap, const char *);
			msgpack_pack_str_with_body(pk, s, strlen(s));
			break;
		case 'b':
			s = va_arg(ap, const char *);
			msgpack_pack_bin_with_body(pk, s, strlen(s));
			break;
		case 'u':
			msgpack_pack_uint64(pk, va_arg(ap,
			    unsigned long long));
			break;
		case 'n':
			msgpack_pack_int64(pk, va_arg(ap, long long));
			break;
		case 'B':
			msgpack_pack_true(pk);
			break;
		case 'N':
			msgpack_pack_nil(pk);
			break;
		case 'f':
			msgpack_pack_double(pk, 1.5);
			break;
		case 'x':
			s = va_arg(ap, const char *);
			msgpack_sbuffer_write(pk->data, s, strlen(s));
			break;
		default:
			ck_abort_msg("bad pack format %c", *fmt);
		}
	}
}

static void
vpack_args(msgpack_packer *pk, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpack(pk, fmt, ap);
	va_end(ap);
}

static msgpack_sbuffer pbuf;

/* Build a payload (no length header) into pbuf. */
static void
pack(const char *fmt, ...)
{
	msgpack_packer pk;
	va_list ap;

	msgpack_sbuffer_clear(&pbuf);
	msgpack_packer_init(&pk, &pbuf, msgpack_sbuffer_write);
	va_start(ap, fmt);
	vpack(&pk, fmt, ap);
	va_end(ap);
}

static struct fy_dec dec;
static struct fy_enc enc;

static void
setup(void)
{
	ck_assert_int_eq(fy_dec_init(&dec), FY_OK);
	fy_enc_init(&enc);
	msgpack_sbuffer_init(&pbuf);
}

static void
teardown(void)
{
	fy_dec_fini(&dec);
	fy_enc_fini(&enc);
	msgpack_sbuffer_destroy(&pbuf);
}

/* Decode pbuf. */
static int
decode_pbuf(struct fy_frame *f, const char **field)
{
	return fy_decode(&dec, (const uint8_t *)pbuf.data, pbuf.size, f,
	    field);
}

/* ------------------------------------------------------------------ */
/* Framing */

START_TEST(need_short)
{
	static const uint8_t hdr[4] = { 0, 0, 0, 5 };
	size_t need = 12345;

	/* _i bytes of header available, 0..3. */
	ck_assert_int_eq(fy_frame_need(hdr, (size_t)_i, &need), FY_AGAIN);
	ck_assert_uint_eq(need, 12345);		/* untouched */
}
END_TEST

START_TEST(need_lengths)
{
	static const struct {
		uint8_t b[4];
		size_t need;
	} t[] = {
		{ { 0, 0, 0, 1 }, 5 },
		{ { 0, 0, 1, 0 }, 260 },
		{ { 0, 0x80, 0, 0 }, (8u << 20) + 4 },
		{ { 0x01, 0x02, 0x03, 0x04 }, 0x01020304u + 4 },
		{ { 0x80, 0, 0, 0 }, (size_t)0x80000000u + 4 },
		{ { 0xff, 0xff, 0xff, 0xff }, (size_t)0xffffffffu + 4 },
	};
	size_t need = 0;

	ck_assert_int_eq(fy_frame_need(t[_i].b, 4, &need), FY_OK);
	ck_assert_uint_eq(need, t[_i].need);
	/* More bytes than the header changes nothing. */
	need = 0;
	ck_assert_int_eq(fy_frame_need(t[_i].b, 1000, &need), FY_OK);
	ck_assert_uint_eq(need, t[_i].need);
}
END_TEST

START_TEST(need_zero)
{
	static const uint8_t z[8] = { 0, 0, 0, 0, 0x80, 0, 0, 0 };
	size_t need = 0;

	ck_assert_int_eq(fy_frame_need(z, sizeof(z), &need), FY_EPROTO);
	ck_assert_int_eq(fy_frame_need(NULL, 0, &need), FY_AGAIN);
}
END_TEST

START_TEST(put_len)
{
	uint8_t b[4];

	fy_frame_put_len(b, 0x01020304u);
	ck_assert_uint_eq(b[0], 1);
	ck_assert_uint_eq(b[1], 2);
	ck_assert_uint_eq(b[2], 3);
	ck_assert_uint_eq(b[3], 4);
	fy_frame_put_len(b, 0xffffffffu);
	ck_assert_uint_eq(b[0] & b[1] & b[2] & b[3], 0xff);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Round trips */

START_TEST(roundtrip)
{
	struct fy_frame in, out;
	const char *field = "unset";
	size_t n;

	n = encode_sample(&enc, _i, &in);
	ck_assert_int_eq(fy_decode(&dec, (const uint8_t *)enc.sb.data +
	    FY_HDR_LEN, n - FY_HDR_LEN, &out, &field), FY_OK);
	ck_assert_ptr_null(field);
	ck_frame(&in, &out);
	/* The decoder's single-message / single-lease convention. */
	if (out.type == FY_T_PUB && out.pub.nmsgs == 1)
		ck_assert_ptr_eq(out.pub.msgs, &out.pub.one);
	if (out.type == FY_T_ACK && out.ack.nleases == 1)
		ck_assert_ptr_eq(out.ack.leases, &out.ack.one);
	/* Decoded bytes borrow from the input, not copies. */
	if (out.type == FY_T_MSG)
		ck_assert(out.msg.body.p > enc.sb.data &&
		    out.msg.body.p < enc.sb.data + n);
}
END_TEST

START_TEST(roundtrip_append)
{
	struct fy_frame f[NSAMPLES], out;
	size_t off = 0, need;
	int i;

	/* Frames append back to back; a reader can walk them. */
	fy_enc_clear(&enc);
	for (i = 0; i < NSAMPLES; i++) {
		sample(i, &f[i]);
		ck_assert_int_eq(fy_encode(&enc, &f[i]), FY_OK);
	}
	for (i = 0; i < NSAMPLES; i++) {
		const uint8_t *p = (const uint8_t *)enc.sb.data + off;

		ck_assert_int_eq(fy_frame_need(p, enc.sb.size - off, &need),
		    FY_OK);
		ck_assert_uint_le(off + need, enc.sb.size);
		ck_assert_int_eq(fy_decode(&dec, p + FY_HDR_LEN,
		    need - FY_HDR_LEN, &out, NULL), FY_OK);
		ck_frame(&f[i], &out);
		off += need;
	}
	ck_assert_uint_eq(off, enc.sb.size);
}
END_TEST

/* The exact bytes PROTOCOL.md shows; changing them changes the doc. */
START_TEST(golden)
{
	static const uint8_t hello[] = {
		0x00, 0x00, 0x00, 0x15, 0x83, 0xa1, 0x74, 0x01,
		0xa1, 0x76, 0x01, 0xa4, 0x6e, 0x61, 0x6d, 0x65,
		0xa8, 0x77, 0x6f, 0x72, 0x6b, 0x65, 0x72, 0x2d,
		0x31,
	};
	static const uint8_t pub[] = {
		0x00, 0x00, 0x00, 0x2a, 0x84, 0xa1, 0x74, 0x02,
		0xa3, 0x72, 0x69, 0x64, 0x01, 0xa5, 0x74, 0x6f,
		0x70, 0x69, 0x63, 0xae, 0x6f, 0x72, 0x64, 0x65,
		0x72, 0x73, 0x2e, 0x63, 0x72, 0x65, 0x61, 0x74,
		0x65, 0x64, 0xa4, 0x62, 0x6f, 0x64, 0x79, 0xc4,
		0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
	};
	static const uint8_t request[] = {
		0x00, 0x00, 0x00, 0x46, 0x87, 0xa1, 0x74, 0x02,
		0xa3, 0x72, 0x69, 0x64, 0x02, 0xa5, 0x74, 0x6f,
		0x70, 0x69, 0x63, 0xa8, 0x72, 0x70, 0x63, 0x2e,
		0x65, 0x63, 0x68, 0x6f, 0xa9, 0x6d, 0x61, 0x6e,
		0x64, 0x61, 0x74, 0x6f, 0x72, 0x79, 0xc3, 0xa8,
		0x72, 0x65, 0x70, 0x6c, 0x79, 0x5f, 0x74, 0x6f,
		0xa8, 0x5f, 0x69, 0x6e, 0x62, 0x6f, 0x78, 0x2e,
		0x37, 0xa4, 0x63, 0x6f, 0x72, 0x72, 0xa2, 0x63,
		0x31, 0xa4, 0x62, 0x6f, 0x64, 0x79, 0xc4, 0x02,
		0x68, 0x69,
	};
	static const uint8_t scram_hello[] = {
		0x00, 0x00, 0x00, 0x41, 0x84, 0xa1, 0x74, 0x01,
		0xa1, 0x76, 0x01, 0xa4, 0x6d, 0x65, 0x63, 0x68,
		0xad, 0x53, 0x43, 0x52, 0x41, 0x4d, 0x2d, 0x53,
		0x48, 0x41, 0x2d, 0x32, 0x35, 0x36, 0xa4, 0x73,
		0x61, 0x73, 0x6c, 0xd9, 0x20, 0x6e, 0x2c, 0x2c,
		0x6e, 0x3d, 0x75, 0x73, 0x65, 0x72, 0x2c, 0x72,
		0x3d, 0x72, 0x4f, 0x70, 0x72, 0x4e, 0x47, 0x66,
		0x77, 0x45, 0x62, 0x65, 0x52, 0x57, 0x67, 0x62,
		0x4e, 0x45, 0x6b, 0x71, 0x4f,
	};
	static const uint8_t scram_challenge[] = {
		0x00, 0x00, 0x00, 0x61, 0x82, 0xa1, 0x74, 0x44,
		0xa4, 0x73, 0x61, 0x73, 0x6c, 0xd9, 0x56, 0x72,
		0x3d, 0x72, 0x4f, 0x70, 0x72, 0x4e, 0x47, 0x66,
		0x77, 0x45, 0x62, 0x65, 0x52, 0x57, 0x67, 0x62,
		0x4e, 0x45, 0x6b, 0x71, 0x4f, 0x25, 0x68, 0x76,
		0x59, 0x44, 0x70, 0x57, 0x55, 0x61, 0x32, 0x52,
		0x61, 0x54, 0x43, 0x41, 0x66, 0x75, 0x78, 0x46,
		0x49, 0x6c, 0x6a, 0x29, 0x68, 0x4e, 0x6c, 0x46,
		0x24, 0x6b, 0x30, 0x2c, 0x73, 0x3d, 0x57, 0x32,
		0x32, 0x5a, 0x61, 0x4a, 0x30, 0x53, 0x4e, 0x59,
		0x37, 0x73, 0x6f, 0x45, 0x73, 0x55, 0x45, 0x6a,
		0x62, 0x36, 0x67, 0x51, 0x3d, 0x3d, 0x2c, 0x69,
		0x3d, 0x34, 0x30, 0x39, 0x36,
	};
	static const uint8_t scram_auth[] = {
		0x00, 0x00, 0x00, 0x75, 0x82, 0xa1, 0x74, 0x0e,
		0xa4, 0x73, 0x61, 0x73, 0x6c, 0xd9, 0x6a, 0x63,
		0x3d, 0x62, 0x69, 0x77, 0x73, 0x2c, 0x72, 0x3d,
		0x72, 0x4f, 0x70, 0x72, 0x4e, 0x47, 0x66, 0x77,
		0x45, 0x62, 0x65, 0x52, 0x57, 0x67, 0x62, 0x4e,
		0x45, 0x6b, 0x71, 0x4f, 0x25, 0x68, 0x76, 0x59,
		0x44, 0x70, 0x57, 0x55, 0x61, 0x32, 0x52, 0x61,
		0x54, 0x43, 0x41, 0x66, 0x75, 0x78, 0x46, 0x49,
		0x6c, 0x6a, 0x29, 0x68, 0x4e, 0x6c, 0x46, 0x24,
		0x6b, 0x30, 0x2c, 0x70, 0x3d, 0x64, 0x48, 0x7a,
		0x62, 0x5a, 0x61, 0x70, 0x57, 0x49, 0x6b, 0x34,
		0x6a, 0x55, 0x68, 0x4e, 0x2b, 0x55, 0x74, 0x65,
		0x39, 0x79, 0x74, 0x61, 0x67, 0x39, 0x7a, 0x6a,
		0x66, 0x4d, 0x48, 0x67, 0x73, 0x71, 0x6d, 0x6d,
		0x69, 0x7a, 0x37, 0x41, 0x6e, 0x64, 0x56, 0x51,
		0x3d,
	};
	static const uint8_t scram_welcome[] = {
		0x00, 0x00, 0x00, 0x46, 0x84, 0xa1, 0x74, 0x40,
		0xa1, 0x76, 0x01, 0xa4, 0x75, 0x73, 0x65, 0x72,
		0xa4, 0x75, 0x73, 0x65, 0x72, 0xa4, 0x73, 0x61,
		0x73, 0x6c, 0xd9, 0x2e, 0x76, 0x3d, 0x36, 0x72,
		0x72, 0x69, 0x54, 0x52, 0x42, 0x69, 0x32, 0x33,
		0x57, 0x70, 0x52, 0x52, 0x2f, 0x77, 0x74, 0x75,
		0x70, 0x2b, 0x6d, 0x4d, 0x68, 0x55, 0x5a, 0x55,
		0x6e, 0x2f, 0x64, 0x42, 0x35, 0x6e, 0x4c, 0x54,
		0x4a, 0x52, 0x73, 0x6a, 0x6c, 0x39, 0x35, 0x47,
		0x34, 0x3d,
	};
	struct fy_frame f;

	encode_sample(&enc, 0, &f);
	ck_assert_uint_eq(enc.sb.size, sizeof(hello));
	ck_assert_mem_eq(enc.sb.data, hello, sizeof(hello));
	encode_sample(&enc, 2, &f);
	ck_assert_uint_eq(enc.sb.size, sizeof(pub));
	ck_assert_mem_eq(enc.sb.data, pub, sizeof(pub));

	/* The request of PROTOCOL.md's request-reply example. */
	memset(&f, 0, sizeof(f));
	f.type = FY_T_PUB;
	f.rid = 2;
	f.pub.topic = S("rpc.echo");
	f.pub.mandatory = 1;
	f.pub.one.reply_to = S("_inbox.7");
	f.pub.one.corr = S("c1");
	f.pub.one.body = S("hi");
	f.pub.msgs = &f.pub.one;
	f.pub.nmsgs = 1;
	fy_enc_clear(&enc);
	ck_assert_int_eq(fy_encode(&enc, &f), FY_OK);
	ck_assert_uint_eq(enc.sb.size, sizeof(request));
	ck_assert_mem_eq(enc.sb.data, request, sizeof(request));

	/* PROTOCOL.md's SCRAM handshake (section 10). */
	encode_sample(&enc, 40, &f);
	ck_assert_uint_eq(enc.sb.size, sizeof(scram_hello));
	ck_assert_mem_eq(enc.sb.data, scram_hello, sizeof(scram_hello));
	encode_sample(&enc, 41, &f);
	ck_assert_uint_eq(enc.sb.size, sizeof(scram_challenge));
	ck_assert_mem_eq(enc.sb.data, scram_challenge,
	    sizeof(scram_challenge));
	encode_sample(&enc, 42, &f);
	ck_assert_uint_eq(enc.sb.size, sizeof(scram_auth));
	ck_assert_mem_eq(enc.sb.data, scram_auth, sizeof(scram_auth));
	encode_sample(&enc, 43, &f);
	ck_assert_uint_eq(enc.sb.size, sizeof(scram_welcome));
	ck_assert_mem_eq(enc.sb.data, scram_welcome, sizeof(scram_welcome));
}

/* A mechanism without its first message, or the reverse, is refused. */
START_TEST(hello_sasl_pairs)
{
	struct fy_frame f;
	const char *field = NULL;

	pack("msususs", 3u, "t", U(FY_T_HELLO), "v", 1ull, "mech",
	    "SCRAM-SHA-256");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "sasl");
	pack("msususs", 3u, "t", U(FY_T_HELLO), "v", 1ull, "sasl", "n,,");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "mech");
	pack("msu", 1u, "t", U(FY_T_AUTH));
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "sasl");
}
END_TEST
END_TEST

/* Samples that fy_encode_nobody() accepts: MSG and single PUB. */
static const int nobody_ok[] = { 2, 3, 21, 22, 23, 24, 26, 38 };

START_TEST(nobody_equal)
{
	struct fy_frame f;
	const struct fy_str *body;
	size_t full_len, need;
	char *full;

	full_len = encode_sample(&enc, nobody_ok[_i], &f);
	full = malloc(full_len);
	ck_assert_ptr_nonnull(full);
	memcpy(full, enc.sb.data, full_len);

	body = f.type == FY_T_MSG ? &f.msg.body : &f.pub.msgs[0].body;
	fy_enc_clear(&enc);
	ck_assert_int_eq(fy_encode_nobody(&enc, &f), FY_OK);
	ck_assert_uint_eq(enc.sb.size + body->len, full_len);
	/* The length header already counts the body not yet written. */
	ck_assert_int_eq(fy_frame_need((const uint8_t *)enc.sb.data,
	    enc.sb.size, &need), FY_OK);
	ck_assert_uint_eq(need, full_len);
	ck_assert_mem_eq(enc.sb.data, full, enc.sb.size);
	ck_assert_mem_eq(full + enc.sb.size, body->p, body->len);
	free(full);
}
END_TEST

START_TEST(nobody_refused)
{
	struct fy_frame f;

	/* Every sample that is neither MSG nor single PUB, e.g. batch. */
	sample(_i, &f);
	if (f.type == FY_T_MSG || (f.type == FY_T_PUB && f.pub.nmsgs == 1))
		return;
	fy_enc_clear(&enc);
	ck_assert_int_eq(fy_encode_nobody(&enc, &f), FY_EPROTO);
	ck_assert_uint_eq(enc.sb.size, 0);
}
END_TEST

START_TEST(encode_refused)
{
	struct fy_frame f;

	fy_enc_clear(&enc);
	memset(&f, 0, sizeof(f));
	f.type = 42;
	ck_assert_int_eq(fy_encode(&enc, &f), FY_EPROTO);
	ck_assert_uint_eq(enc.sb.size, 0);
	f.type = FY_T_PUB;		/* no message */
	ck_assert_int_eq(fy_encode(&enc, &f), FY_EPROTO);
	f.type = FY_T_ACK;		/* no lease */
	ck_assert_int_eq(fy_encode(&enc, &f), FY_EPROTO);
	ck_assert_uint_eq(enc.sb.size, 0);

	/* A refused frame leaves earlier ones intact. */
	sample(15, &f);
	ck_assert_int_eq(fy_encode(&enc, &f), FY_OK);
	f.type = 0;
	ck_assert_int_eq(fy_encode(&enc, &f), FY_EPROTO);
	ck_assert_uint_eq(enc.sb.size, 4 + 9);	/* {t:9, rid:9} */
}
END_TEST

/* ------------------------------------------------------------------ */
/* Truncation and corruption */

START_TEST(truncated)
{
	struct fy_frame in, out;
	const uint8_t *p;
	size_t n, k, need;

	n = encode_sample(&enc, _i, &in);
	p = (const uint8_t *)enc.sb.data;
	for (k = 0; k < n; k++) {
		int r = fy_frame_need(p, k, &need);

		if (k < FY_HDR_LEN) {
			ck_assert_int_eq(r, FY_AGAIN);
			continue;
		}
		ck_assert_int_eq(r, FY_OK);
		ck_assert_uint_gt(need, k);	/* caller would wait */
		/* A payload cut anywhere is malformed, never OK. */
		r = fy_decode(&dec, p + FY_HDR_LEN, k - FY_HDR_LEN, &out,
		    NULL);
		ck_assert_msg(r == FY_EPROTO, "cut at %zu of %zu: %d", k,
		    n, r);
	}
}
END_TEST

START_TEST(mutated)
{
	static const uint8_t vals[] = { 0x00, 0xff, 0xc1, 0xdf, 0xdd, 0x7f };
	struct fy_frame in, out;
	uint8_t *p;
	size_t n, k, v;
	int ok = 0, bad = 0;

	/* No check on the result beyond "returns": ASan/UBSan and Check's
	 * fork mode catch reads out of bounds and crashes. */
	n = encode_sample(&enc, _i, &in) - FY_HDR_LEN;
	p = malloc(n);
	ck_assert_ptr_nonnull(p);
	for (k = 0; k < n && k < 400; k++) {
		for (v = 0; v < sizeof(vals) + 1; v++) {
			memcpy(p, enc.sb.data + FY_HDR_LEN, n);
			p[k] = v < sizeof(vals) ? vals[v] : p[k] ^ 0x80;
			if (fy_decode(&dec, p, n, &out, NULL) == FY_OK)
				ok++;
			else
				bad++;
		}
	}
	free(p);
	ck_assert_int_gt(bad, 0);
	ck_assert_int_eq(ok + bad, (int)((n < 400 ? n : 400) *
	    (sizeof(vals) + 1)));
}
END_TEST

START_TEST(empty)
{
	struct fy_frame f;

	ck_assert_int_eq(fy_decode(&dec, (const uint8_t *)"", 0, &f, NULL),
	    FY_EPROTO);
	ck_assert_int_eq(fy_decode(&dec, NULL, 0, &f, NULL), FY_EPROTO);
	/* An empty map is well formed but has no "t". */
	pack("m", 0u);
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_EFIELD);
}
END_TEST

/* Payloads that are not exactly one map: FY_EPROTO. */
START_TEST(not_a_map)
{
	struct fy_frame f;

	switch (_i) {
	case 0: pack("a", 2u, "u", 1ull, "u", 2ull); break;
	case 1: pack("s", "t"); break;
	case 2: pack("u", 2ull); break;
	case 3: pack("N"); break;
	case 4: pack("b", "xx"); break;
	case 5: /* trailing garbage */
		pack("msu", 1u, "t", "u", 9ull);
		msgpack_sbuffer_write(&pbuf, "\x00", 1);
		break;
	case 6: /* two maps */
		pack("msumsu", 1u, "t", 9ull, 1u, "t", 9ull);
		break;
	case 7: /* reserved byte 0xc1 as a value */
		pack("msux", 2u, "t", 9ull, "\xa1z\xc1");
		break;
	case 8: /* map claims more pairs than there are */
		pack("msu", 2u, "t", 9ull);
		break;
	case 9: /* array32 claiming 4G elements in a 9-byte payload: must
		 * fail fast, without asking malloc for ~100 GB */
		pack("msux", 2u, "t", 9ull, "\xa1z\xdd\xff\xff\xff\xff");
		break;
	case 10: /* map32 claiming 4G pairs, at the root */
		pack("x", "\xdf\xff\xff\xff\xff");
		break;
	case 11: /* str32 claiming 4 GB */
		pack("msux", 2u, "t", 9ull, "\xa1z\xdb\xff\xff\xff\xff");
		break;
	case 12: /* nesting 20 deep inside an unknown key */
		pack("msusx", 2u, "t", 9ull, "z",
		    "\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91"
		    "\x91\x91\x91\x91\x91\x91\x91\x91\x91\x90");
		break;
	case 13: /* ext type truncated */
		pack("msux", 2u, "t", 9ull, "\xa1z\xc7\x05\x01\x01");
		break;
	default:
		ck_abort();
	}
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_EPROTO);
}
END_TEST

/* Odd but valid msgpack around a frame decodes fine. */
START_TEST(tolerated)
{
	struct fy_frame f;
	const char *field = "unset";

	/* Unknown keys of several kinds, a non-str key with an ext value,
	 * nil for optional fields, and "t" last. */
	pack("m" "su" "sf" "smsu" "sauu" "x" "ss" "sb" "sN" "sN" "sN" "su",
	    11u,
	    "zz", 1ull,
	    "float",
	    "deep", 1u, "q", 1ull,
	    "arr", 2u, 5ull, 6ull,
	    "\x01\xd4\x01\x02",		/* key 1 (not a str) -> fixext1 */
	    "topic", "orders",
	    "body", "x",
	    "id",
	    "hdr",
	    "rid",
	    "t", U(FY_T_PUB));
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_ptr_null(field);
	ck_assert_int_eq(f.type, FY_T_PUB);
	ck_assert_uint_eq(f.rid, 0);
	ck_str(f.pub.topic, S("orders"));
	ck_assert_uint_eq(f.pub.nmsgs, 1);
	ck_str(f.pub.msgs[0].body, S("x"));
	ck_assert_uint_eq(f.pub.msgs[0].id.len, 0);
	ck_assert_uint_eq(f.pub.msgs[0].nhdr, 0);

	/* "body" as str is accepted as well as bin. */
	pack("msussss", 3u, "t", U(FY_T_MSG), "sid", "1", "id", "i");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "sid");
	pack("msusussss", 4u, "t", U(FY_T_MSG), "sid", 1ull,
	    "id", "i", "body", "text body");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_str(f.msg.body, S("text body"));

	/* Each query type reads its own keys only: the others are
	 * unknown to it, whatever their type. */
	pack("msusususu", 4u, "t", U(FY_T_STATS), "group", 1ull,
	    "id", 2ull, "topic", 3ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "topic");
	pack("msusususs", 4u, "t", U(FY_T_STATS), "group", 1ull,
	    "id", 2ull, "topic", "a");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_str(f.query.topic, S("a"));
	ck_assert_uint_eq(f.query.group.len, 0);
	pack("msusususs", 4u, "t", U(FY_T_TRACE), "topic", 1ull,
	    "group", 2ull, "id", "i");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_str(f.query.id, S("i"));
	pack("msusussss", 4u, "t", U(FY_T_PEEK), "id", 1ull,
	    "group", "g", "topic", "a");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_str(f.query.group, S("g"));
	ck_assert_uint_eq(f.query.id.len, 0);

	/* Rows skip unknown keys, non-str keys and nil values; missing
	 * fields are zero. */
	pack("msusamsusNsuxsusu", 2u, "t", U(FY_T_OK), "stats", 1u, 6u,
	    "ready", 4ull, "group", "zz", 9ull, "\x07\x01",
	    "dlq", 2ull, "members", 1ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.ok.nstats, 1);
	ck_assert_uint_eq(f.ok.stats[0].ready, 4);
	ck_assert_uint_eq(f.ok.stats[0].dead_lettered, 2);
	ck_assert_uint_eq(f.ok.stats[0].members, 1);
	ck_assert_uint_eq(f.ok.stats[0].group.len, 0);
	ck_assert_uint_eq(f.ok.stats[0].enqueued, 0);
	/* Empty arrays and empty rows. */
	pack("msusasam", 3u, "t", U(FY_T_OK), "events", 0u, "inflight",
	    1u, 0u);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.ok.nevents, 0);
	ck_assert_ptr_null(f.ok.events);
	ck_assert_uint_eq(f.ok.ninflight, 1);
	ck_assert_uint_eq(f.ok.inflight[0].id.len, 0);

	/* Later duplicates win (and do not leak or crash). */
	pack("msususu", 3u, "t", U(FY_T_UNSUB), "sid", 1ull,
	    "sid", 2ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.unsub.sid, 2);
}
END_TEST

/*
 * Every msgpack format inside an unknown key, followed by the real
 * fields: the scan must skip each one by exactly its size.
 */
START_TEST(all_formats)
{
	static const uint8_t head[] = {
		0x82, 0xa1, 'z',		/* map of 2; key "z" */
		0xdc, 0x00, 0x27,		/* array16 of 39 */
		0xc0, 0xc2, 0xc3, 0x05, 0xe0,	/* nil false true 5 -32 */
		0xcc, 0xff,
		0xcd, 0xff, 0xff,
		0xce, 0xff, 0xff, 0xff, 0xff,
		0xcf, 1, 2, 3, 4, 5, 6, 7, 8,
		0xd0, 0x80,
		0xd1, 0x80, 0x00,
		0xd2, 0x80, 0, 0, 0,
		0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0,
		0xca, 0x3f, 0xc0, 0, 0,		/* float32 1.5 */
		0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
		0xa2, 'h', 'i',
		0xd9, 0x01, 'x',
		0xda, 0x00, 0x01, 'x',
		0xdb, 0, 0, 0, 0x01, 'x',
		0xc4, 0x01, 0xc1,		/* 0xc1 inside bin is data */
		0xc5, 0x00, 0x01, 0xc1,
		0xc6, 0, 0, 0, 0x01, 0xc1,
		0xd4, 0x01, 0xaa,
		0xd5, 0x01, 0xaa, 0xaa,
		0xd6, 0x01, 0xaa, 0xaa, 0xaa, 0xaa,
		0xd7, 0x01, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
		0xd8, 0x01, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
		0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
		0xc7, 0x02, 0x01, 0xaa, 0xaa,
		0xc8, 0x00, 0x02, 0x01, 0xaa, 0xaa,
		0xc9, 0, 0, 0, 0x02, 0x01, 0xaa, 0xaa,
		0x92, 0x01, 0x02,
		0xdc, 0x00, 0x01, 0x01,
		0xdd, 0, 0, 0, 0x01, 0x01,
		0x81, 0x01, 0x02,
		0xde, 0x00, 0x01, 0x01, 0x02,
		0xdf, 0, 0, 0, 0x01, 0x01, 0x02,
		0x90, 0x80,			/* empty array, empty map */
		0xd0, 0x05,			/* int8 5 */
		0xa1, 't', 0x09,		/* "t": 9 (PING) */
	};
	struct fy_frame f;
	const char *field = NULL;

	ck_assert_int_eq(fy_decode(&dec, head, sizeof(head), &f, &field),
	    FY_OK);
	ck_assert_int_eq(f.type, FY_T_PING);
	/* One byte less anywhere inside the array is malformed. */
	ck_assert_int_eq(fy_decode(&dec, head, sizeof(head) - 1, &f,
	    &field), FY_EPROTO);
}
END_TEST

/*
 * The nesting limit, exactly as PROTOCOL.md section 3 puts it: containers
 * nest at most 16 deep, the root map being level 1, empty ones included.
 */
START_TEST(depth_limit)
{
	struct fy_frame f;
	char deep[32];

	/* 15 arrays under "z" (levels 2 to 16), then a uint. */
	memset(deep, '\x91', 15);
	strcpy(deep + 15, "\x01");
	pack("msusx", 2u, "t", U(FY_T_PING), "z", deep);
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_OK);
	/* The same 16 levels as a key. */
	pack("msux" "u", 2u, "t", U(FY_T_PING), deep, 1ull);
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_OK);
	/* A map at level 16 holding scalars is fine too. */
	memcpy(deep + 14, "\x81\x01\x02", 4);
	pack("msusx", 2u, "t", U(FY_T_PING), "z", deep);
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_OK);
	/* A 17th level is too deep, even an empty array... */
	strcpy(deep + 15, "\x90");
	pack("msusx", 2u, "t", U(FY_T_PING), "z", deep);
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_EPROTO);
	/* ...or an empty map, and so is a non-empty one, as a key too. */
	strcpy(deep + 15, "\x80");
	pack("msusx", 2u, "t", U(FY_T_PING), "z", deep);
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_EPROTO);
	strcpy(deep + 15, "\x91\x01");
	pack("msusx", 2u, "t", U(FY_T_PING), "z", deep);
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_EPROTO);
	pack("msux" "u", 2u, "t", U(FY_T_PING), deep, 1ull);
	ck_assert_int_eq(decode_pbuf(&f, NULL), FY_EPROTO);
}
END_TEST

/* Maps with many known keys (repeated ones): the last wins, and an
 * earlier bad one is still an error. */
START_TEST(many_keys)
{
	msgpack_packer pk;
	struct fy_frame f;
	const char *field = NULL;
	char v[8];
	int i, bad;

	for (bad = 0; bad < 2; bad++) {
		msgpack_sbuffer_clear(&pbuf);
		msgpack_packer_init(&pk, &pbuf, msgpack_sbuffer_write);
		vpack_args(&pk, "msu", 43u, "t", U(FY_T_PUB));
		for (i = 0; i < 40; i++) {
			snprintf(v, sizeof(v), "a%d", i);
			if (bad && i == 3)
				vpack_args(&pk, "su", "topic", 1ull);
			else
				vpack_args(&pk, "ss", "topic", v);
		}
		vpack_args(&pk, "sbsu", "body", "x", "rid", 7ull);
		if (bad) {
			ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
			ck_assert_str_eq(field, "topic");
			ck_assert_uint_eq(f.rid, 7);
			continue;
		}
		ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
		ck_str(f.pub.topic, S("a39"));
		ck_str(f.pub.msgs[0].body, S("x"));
		ck_assert_uint_eq(f.rid, 7);
	}
	/* The same inside a batch message. */
	msgpack_sbuffer_clear(&pbuf);
	msgpack_packer_init(&pk, &pbuf, msgpack_sbuffer_write);
	vpack_args(&pk, "msusssam", 3u, "t", U(FY_T_PUB), "topic", "a",
	    "msgs", 1u, 41u);
	for (i = 0; i < 40; i++) {
		snprintf(v, sizeof(v), "i%d", i);
		vpack_args(&pk, "ss", "id", v);
	}
	vpack_args(&pk, "sb", "body", "y");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.pub.nmsgs, 1);
	ck_str(f.pub.msgs[0].id, S("i39"));
	ck_str(f.pub.msgs[0].body, S("y"));
	/* "t" and "rid": the last one wins, nil included. */
	pack("msusN", 2u, "t", U(FY_T_PING), "t");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "t");
	pack("msusNsu", 3u, "rid", 5ull, "rid", "t", U(FY_T_PING));
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.rid, 0);
	/* Signed formats holding a value >= 0 are uints; others are not. */
	pack("msusx", 2u, "t", U(FY_T_PING), "rid", "\xd1\x01\x02");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.rid, 0x102);
	pack("msusx", 2u, "t", U(FY_T_PING), "rid", "\xd0\xff");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "rid");
	/* Damage after a bad field: malformed wins. */
	pack("msusu", 3u, "t", U(FY_T_PUB), "topic", 1ull);
	msgpack_sbuffer_write(&pbuf, "\xa1z\xc1", 3);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EPROTO);
}
END_TEST

/* Combinations the decoder refuses although each key is well typed. */
START_TEST(conflicts)
{
	struct fy_frame f;
	const char *field = NULL;
	char id65[FY_ID_MAX + 2];

	/* PUB with both "body" and "msgs". */
	pack("msusssbsamsb", 4u, "t", U(FY_T_PUB), "topic", "a",
	    "body", "x", "msgs", 1u, 1u, "body", "y");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "msgs");
	/* PUB with neither. */
	pack("msuss", 2u, "t", U(FY_T_PUB), "topic", "a");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "body");
	/* ACK with both "lease" and "leases". */
	pack("msusususau", 4u, "t", U(FY_T_ACK), "sid", 1ull,
	    "lease", 1ull, "leases", 1u, 2ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "leases");
	/* A producer id longer than FY_ID_MAX. */
	memset(id65, 'i', sizeof(id65) - 1);
	id65[sizeof(id65) - 1] = '\0';
	pack("msusssssb", 4u, "t", U(FY_T_PUB), "topic", "a",
	    "id", id65, "body", "x");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "id");
	id65[FY_ID_MAX] = '\0';		/* exactly FY_ID_MAX is fine */
	pack("msusssssb", 4u, "t", U(FY_T_PUB), "topic", "a",
	    "id", id65, "body", "x");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.pub.msgs[0].id.len, FY_ID_MAX);
	/* An empty id is not "no id" (nil is): 1..64 bytes, single or in a
	 * batch. */
	pack("msusssssb", 4u, "t", U(FY_T_PUB), "topic", "a",
	    "id", "", "body", "x");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "id");
	pack("msusssamsbss", 3u, "t", U(FY_T_PUB), "topic", "a",
	    "msgs", 1u, 2u, "body", "x", "id", "");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "id");
	pack("msusssbsN", 4u, "t", U(FY_T_PUB), "topic", "a",
	    "body", "x", "id");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.pub.msgs[0].id.len, 0);
	/* The same bound for a producer id. */
	pack("msusssssbsu", 5u, "t", U(FY_T_PUB), "topic", "a",
	    "pid", id65, "body", "x", "seq", 1ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.pub.msgs[0].pid.len, FY_ID_MAX);
	ck_assert_uint_eq(f.pub.msgs[0].pseq, 1);
	id65[FY_ID_MAX] = 'i';
	pack("msusssssbsu", 5u, "t", U(FY_T_PUB), "topic", "a",
	    "pid", id65, "body", "x", "seq", 1ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "pid");
	/* An empty pid is no pid: its seq stands alone. */
	pack("msusssssbsu", 5u, "t", U(FY_T_PUB), "topic", "a",
	    "pid", "", "body", "x", "seq", 1ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "seq");
	/* seq before pid: the pair is checked once the map is read. */
	pack("msusssusssb", 5u, "t", U(FY_T_PUB), "topic", "a",
	    "seq", 9ull, "pid", "p", "body", "x");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.pub.msgs[0].pseq, 9);
	/* A message option beside "msgs" would be lost: refused. */
	pack("msusssamsbsu", 4u, "t", U(FY_T_PUB), "topic", "a",
	    "msgs", 1u, 1u, "body", "y", "delay", 5ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "msgs");
	pack("msusssamsbss", 4u, "t", U(FY_T_PUB), "topic", "a",
	    "msgs", 1u, 1u, "body", "y", "reply_to", "r");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "msgs");
	pack("msusssamsbsssu", 5u, "t", U(FY_T_PUB), "topic", "a",
	    "msgs", 1u, 1u, "body", "y", "pid", "p", "seq", 1ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "msgs");
	/* ...but "group" and "mandatory" are the frame's, not a
	 * message's: they go with either form. */
	pack("msusssamsbsssB", 5u, "t", U(FY_T_PUB), "topic", "a",
	    "msgs", 1u, 1u, "body", "y", "group", "g", "mandatory");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_str(f.pub.group, S("g"));
	ck_assert_uint_eq(f.pub.mandatory, 1);
	ck_assert_uint_eq(f.pub.nmsgs, 1);
	/* SUB overflow is an enum, like mode. */
	pack("msusssu", 3u, "t", U(FY_T_SUB), "topic", "a",
	    "overflow", 2ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "overflow");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Types, "t" and "rid" */

START_TEST(unknown_type)
{
	static const struct {
		uint64_t t;
		int type;
	} tt[] = {
		{ 0, 0 }, { 15, 15 }, { 63, 63 }, { 69, 69 }, { 1000, 1000 },
		{ 0x7fffffff, 0x7fffffff }, { 1ULL << 40, -1 },
	};
	struct fy_frame f;
	const char *field = "unset";

	pack("msususs", 3u, "rid", 55ull, "t", U(tt[_i].t), "topic", "x");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_ETYPE);
	ck_assert_int_eq(f.type, tt[_i].type);
	ck_assert_uint_eq(f.rid, 55);
	ck_assert_ptr_null(field);
}
END_TEST

/*
 * A broker decoder refuses the types only the broker sends by their type,
 * before any field: {t:64} and friends are E_UNKNOWN_TYPE, not "field v is
 * missing".  A client decoder still reads them field by field.
 */
START_TEST(misdirected)
{
	static const int types[] = {
		FY_T_WELCOME, FY_T_OK, FY_T_ERR, FY_T_MSG,
	};
	struct fy_frame f;
	const char *field = "unset";

	pack("msusu", 2u, "rid", 9ull, "t", U(types[_i]));
	ck_assert_int_ne(decode_pbuf(&f, &field), FY_ETYPE);
	dec.requests_only = 1;
	field = "unset";
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_ETYPE);
	ck_assert_int_eq(f.type, types[_i]);
	ck_assert_uint_eq(f.rid, 9);
	ck_assert_ptr_null(field);
	/* A bad "rid" is still reported as such. */
	pack("msuss", 2u, "t", U(types[_i]), "rid", "1");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "rid");
	/* Requests decode as before. */
	pack("msusu", 2u, "rid", 9ull, "t", U(FY_T_PING));
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_int_eq(f.type, FY_T_PING);
}
END_TEST

START_TEST(bad_t_rid)
{
	struct fy_frame f;
	const char *field = NULL;

	/* No "t": the rid is still echoed. */
	pack("msu", 1u, "rid", 8ull);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "t");
	ck_assert_uint_eq(f.rid, 8);
	pack("msusn", 2u, "rid", 8ull, "t", (long long)-2);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "t");
	ck_assert_uint_eq(f.rid, 8);
	pack("msusf", 2u, "rid", 8ull, "t");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "t");
	pack("msN", 1u, "t");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "t");
	/* A bad "rid": reported as such, the type still read. */
	pack("msusn", 2u, "t", U(FY_T_PING), "rid", (long long)-1);
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "rid");
	ck_assert_int_eq(f.type, FY_T_PING);
	ck_assert_uint_eq(f.rid, 0);
	pack("msuss", 2u, "t", U(FY_T_PING), "rid", "1");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_EFIELD);
	ck_assert_str_eq(field, "rid");
	/* nil and 0 both mean "no rid". */
	pack("msusN", 2u, "t", U(FY_T_PING), "rid");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.rid, 0);
	pack("msusu", 2u, "t", U(FY_T_PING), "rid", U(UINT64_MAX));
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_uint_eq(f.rid, UINT64_MAX);
	/* A t encoded as a (non-negative) signed int is still a uint. */
	pack("msx", 1u, "t", "\xd0\x09");
	ck_assert_int_eq(decode_pbuf(&f, &field), FY_OK);
	ck_assert_int_eq(f.type, FY_T_PING);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Generated field cases: every field of every type, valid, missing and
 * of each wrong type. */

struct fspec {
	const char *key;
	char kind;		/* see put_value() */
	char req;
	const char *miss;	/* field reported when missing, NULL = key */
};

struct tspec {
	int type;
	struct fspec f[16];
};

static const struct tspec specs[] = {
	{ FY_T_HELLO, { { "v", 'w', 1, NULL }, { "name", 's', 0, NULL } } },
	/* pid and seq come together: either one alone names "seq". */
	{ FY_T_PUB, { { "topic", 's', 1, NULL }, { "id", 'i', 0, NULL },
	    { "hdr", 'H', 0, NULL }, { "delay", 'u', 0, NULL },
	    { "ttl", 'u', 0, NULL }, { "reply_to", 's', 0, NULL },
	    { "corr", 's', 0, NULL }, { "pid", 'i', 1, "seq" },
	    { "seq", 'p', 1, NULL }, { "group", 's', 0, NULL },
	    { "mandatory", 'B', 0, NULL }, { "body", 'b', 1, NULL } } },
	{ FY_T_PUB, { { "topic", 's', 1, NULL },
	    { "msgs", 'M', 1, "body" }, { "group", 's', 0, NULL },
	    { "mandatory", 'B', 0, NULL } } },
	{ FY_T_SUB, { { "topic", 's', 1, NULL }, { "group", 's', 0, NULL },
	    { "prefetch", 'w', 0, NULL }, { "mode", 'o', 0, NULL },
	    { "ack_timeout", 'w', 0, NULL },
	    { "max_attempts", 'w', 0, NULL },
	    { "ephemeral", 'B', 0, NULL }, { "ttl", 'u', 0, NULL },
	    { "ttl_drop", 'B', 0, NULL }, { "max_msgs", 'u', 0, NULL },
	    { "max_bytes", 'u', 0, NULL }, { "overflow", 'o', 0, NULL } } },
	{ FY_T_UNSUB, { { "sid", 'u', 1, NULL } } },
	{ FY_T_ACK, { { "sid", 'u', 1, NULL }, { "lease", 'u', 1, NULL } } },
	{ FY_T_ACK, { { "sid", 'u', 1, NULL },
	    { "leases", 'L', 1, "lease" } } },
	{ FY_T_NACK, { { "sid", 'u', 1, NULL }, { "lease", 'u', 1, NULL },
	    { "delay", 'u', 0, NULL }, { "error", 's', 0, NULL } } },
	{ FY_T_TOUCH, { { "sid", 'u', 1, NULL },
	    { "lease", 'u', 1, NULL } } },
	{ FY_T_DELETE, { { "topic", 's', 1, NULL },
	    { "group", 's', 0, NULL } } },
	{ FY_T_PING, { { NULL, 0, 0, NULL } } },
	{ FY_T_STATS, { { "topic", 's', 0, NULL } } },
	{ FY_T_INFLIGHT, { { "topic", 's', 1, NULL },
	    { "group", 's', 0, NULL } } },
	{ FY_T_PEEK, { { "topic", 's', 1, NULL },
	    { "group", 's', 0, NULL } } },
	{ FY_T_TRACE, { { "id", 's', 1, NULL } } },
	{ FY_T_AUTH, { { "sasl", 's', 1, NULL } } },
	{ FY_T_CHALLENGE, { { "sasl", 's', 1, NULL } } },
	{ FY_T_WELCOME, { { "v", 'w', 1, NULL }, { "server", 's', 0, NULL },
	    { "session", 's', 0, NULL }, { "max_frame", 'w', 0, NULL },
	    { "max_msg", 'w', 0, NULL }, { "user", 's', 0, NULL },
	    { "sasl", 's', 0, NULL } } },
	{ FY_T_OK, { { "sid", 'u', 0, NULL }, { "group", 's', 0, NULL },
	    { "ids", 'I', 0, NULL }, { "dur", 'w', 0, NULL },
	    { "dups", 'w', 0, NULL }, { "stats", 'S', 0, NULL },
	    { "inflight", 'F', 0, NULL }, { "events", 'E', 0, NULL } } },
	{ FY_T_ERR, { { "code", 'w', 1, NULL }, { "msg", 's', 0, NULL },
	    { "sid", 'u', 0, NULL } } },
	{ FY_T_MSG, { { "sid", 'u', 1, NULL }, { "id", 's', 1, NULL },
	    { "topic", 's', 0, NULL }, { "lease", 'u', 0, NULL },
	    { "att", 'w', 0, NULL }, { "ts", 'u', 0, NULL },
	    { "hdr", 'H', 0, NULL }, { "hist", 'h', 0, NULL },
	    { "reply_to", 's', 0, NULL }, { "corr", 's', 0, NULL },
	    { "body", 'b', 1, NULL } } },
};

static int
nfields(const struct tspec *s)
{
	int n = 0;

	while (n < (int)ARRAY_LEN(s->f) && s->f[n].key != NULL)
		n++;
	return n;
}

/* How many wrong-typed variants put_value() has for a kind. */
static int
nbad(char kind)
{
	switch (kind) {
	case 'u': return 4;
	case 'w': return 4;
	case 'o': return 3;
	case 'p': return 5;
	case 's': return 4;
	case 'i': return 5;
	case 'b': return 3;
	case 'B': return 2;
	case 'H': return 4;
	case 'L': return 4;
	case 'M': return 14;
	case 'I': return 2;
	case 'h': return 4;
	case 'S': return 5;
	case 'F': return 5;
	case 'E': return 5;
	}
	ck_abort_msg("kind %c", kind);
	return 0;
}

/*
 * Pack a value of a kind: variant 0 is valid, 1..nbad() are not.  Returns
 * the field name the decoder must report for a bad variant when it is
 * not the key itself (an error inside a nested message), else NULL.
 */
static const char *
put_value(msgpack_packer *pk, char kind, int v)
{
	static char id65[FY_ID_MAX + 2];

#define P(...) vpack_args(pk, __VA_ARGS__)
	memset(id65, 'i', FY_ID_MAX + 1);	/* one byte too long */
	switch (kind) {
	case 'u':	/* uint64 */
	case 'w':	/* uint32 */
	case 'o':	/* mode: uint32 0..1 */
		switch (v) {
		case 0: P("u", kind == 'u' ? 1ULL << 40 : 1ull); break;
		case 1: P("s", "1"); break;
		case 2: P("n", (long long)-1); break;
		case 3:
			if (kind == 'u')
				P("f");
			else if (kind == 'w')
				P("u", 1ULL << 32);
			else
				P("u", 2ull);
			break;
		case 4: P(kind == 'u' ? "B" : "f"); break;
		}
		return NULL;
	case 'p':	/* seq: uint64 > 0 */
		switch (v) {
		case 0: P("u", 1ULL << 40); break;
		case 1: P("s", "1"); break;
		case 2: P("n", (long long)-1); break;
		case 3: P("f"); break;
		case 4: P("B"); break;
		case 5: P("u", 0ull); break;
		}
		return NULL;
	case 's':
	case 'i':	/* str of at most FY_ID_MAX bytes */
		switch (v) {
		case 0: P("s", "abc"); break;
		case 1: P("u", 7ull); break;
		case 2: P("b", "abc"); break;
		case 3: P("B"); break;
		case 4: P("a", 0u); break;
		case 5: P("s", id65); break;
		}
		return NULL;
	case 'b':
		switch (v) {
		case 0: P("b", "body!"); break;
		case 1: P("u", 7ull); break;
		case 2: P("B"); break;
		case 3: P("m", 0u); break;
		}
		return NULL;
	case 'B':
		switch (v) {
		case 0: P("B"); break;
		case 1: P("u", 1ull); break;
		case 2: P("s", "true"); break;
		}
		return NULL;
	case 'H':
		switch (v) {
		case 0: P("mssss", 2u, "a", "b", "c", ""); break;
		case 1: P("a", 0u); break;
		case 2: P("msu", 1u, "k", 1ull); break;
		case 3: P("mus", 1u, 1ull, "v"); break;
		case 4: P("s", "k=v"); break;
		}
		return NULL;
	case 'L':
		switch (v) {
		case 0: P("auuu", 3u, 1ull, 2ull, U(UINT64_MAX)); break;
		case 1: P("u", 1ull); break;
		case 2: P("a", 0u); break;
		case 3: P("aus", 2u, 1ull, "2"); break;
		case 4: P("an", 1u, (long long)-5); break;
		}
		return NULL;
	case 'M':
		switch (v) {
		case 0:
			P("amsbmsbsssssususussss", 2u, 1u, "body", "x", 8u,
			    "body", "y", "id", "i2", "pid", "p", "seq", 3ull,
			    "delay", 5ull, "ttl", 6ull, "reply_to", "r",
			    "corr", "c");
			return NULL;
		case 1: P("u", 1ull); return NULL;
		case 2: P("a", 0u); return NULL;
		case 3: P("amsbu", 2u, 1u, "body", "x", 1ull); return NULL;
		case 4: P("amss", 1u, 1u, "id", "x"); return "body";
		case 5: P("amsu", 1u, 1u, "body", 5ull); return "body";
		case 6:
			P("amsbsa", 1u, 2u, "body", "x", "hdr", 0u);
			return "hdr";
		/* The per-message options, checked in the second message. */
		case 7:
			P("amsbmsbss", 2u, 1u, "body", "x", 2u, "body", "x",
			    "delay", "1");
			return "delay";
		case 8:
			P("amsbmsbsn", 2u, 1u, "body", "x", 2u, "body", "x",
			    "ttl", (long long)-1);
			return "ttl";
		case 9:
			P("amsbmsbsu", 2u, 1u, "body", "x", 2u, "body", "x",
			    "reply_to", 1ull);
			return "reply_to";
		case 10:
			P("amsbmsbsB", 2u, 1u, "body", "x", 2u, "body", "x",
			    "corr");
			return "corr";
		case 11:
			P("amsbmsbsssu", 2u, 1u, "body", "x", 3u, "body", "x",
			    "pid", id65, "seq", 1ull);
			return "pid";
		case 12:
			P("amsbmsbsu", 2u, 1u, "body", "x", 2u, "body", "x",
			    "seq", 1ull);
			return "seq";
		case 13:
			P("amsbmsbss", 2u, 1u, "body", "x", 2u, "body", "x",
			    "pid", "p");
			return "seq";
		case 14:
			P("amsbmsbsssu", 2u, 1u, "body", "x", 3u, "body", "x",
			    "pid", "p", "seq", 0ull);
			return "seq";
		}
		return NULL;
	case 'I':
		switch (v) {
		case 0: P("ass", 2u, "a", "b"); break;
		case 1: P("u", 1ull); break;
		case 2: P("asu", 2u, "a", 1ull); break;
		}
		return NULL;
	case 'h':
		switch (v) {
		case 0:
			P("amsssssssu", 1u, 4u, "c", "nacked", "e", "oops",
			    "by", "w1", "at", 1700000000000ull);
			break;
		case 1: P("u", 1ull); break;
		case 2: P("au", 1u, 1ull); break;
		case 3: P("amsu", 1u, 1u, "c", 1ull); break;
		case 4: P("amss", 1u, 1u, "at", "now"); break;
		}
		return NULL;
	case 'S':	/* rows: a bad field names the array */
		switch (v) {
		case 0:
			P("amsssssusu", 1u, 4u, "topic", "t", "group", "g",
			    "ready", 1ULL << 40, "dlq", 3ull);
			break;
		case 1: P("u", 1ull); break;
		case 2: P("au", 1u, 1ull); break;
		case 3: P("amsu", 1u, 1u, "topic", 1ull); break;
		case 4: P("amsn", 1u, 1u, "ready", (long long)-1); break;
		case 5: P("amss", 1u, 1u, "enq", "5"); break;
		}
		return NULL;
	case 'F':
		switch (v) {
		case 0:
			P("amsssssususs", 1u, 5u, "id", "i", "by", "w",
			    "age", 5ull, "att", 2ull, "e", "x");
			break;
		case 1: P("u", 1ull); break;
		case 2: P("ama", 2u, 0u, 0u); break;
		case 3: P("amsB", 1u, 1u, "by"); break;
		case 4: P("amsu", 1u, 1u, "att", 1ULL << 32); break;
		case 5: P("amss", 1u, 1u, "age", "5"); break;
		}
		return NULL;
	case 'E':
		switch (v) {
		case 0:
			P("amsusssssssssuss", 1u, 7u, "at", 1ull,
			    "ev", "acked", "topic", "t", "group", "g",
			    "by", "w", "att", 1ull, "e", "");
			break;
		case 1: P("s", "events"); break;
		case 2: P("as", 1u, "acked"); break;
		case 3: P("amsu", 1u, 1u, "ev", 1ull); break;
		case 4: P("amsn", 1u, 1u, "at", (long long)-1); break;
		case 5: P("amss", 1u, 1u, "att", "1"); break;
		}
		return NULL;
	}
#undef P
	ck_abort_msg("kind %c", kind);
	return NULL;
}

struct gcase {
	int spec;
	int field;		/* -1: all fields valid */
	int variant;		/* -1: field omitted; 0: valid; >0: bad */
};

static struct gcase *gcases;
static int ngcases;

static void
gcase_add(int spec, int field, int variant)
{
	struct gcase *g = realloc(gcases, (ngcases + 1) * sizeof(*g));

	if (g == NULL)
		abort();
	gcases = g;
	gcases[ngcases++] = (struct gcase){ spec, field, variant };
}

static void
gcases_build(void)
{
	int s, j, v;

	for (s = 0; s < (int)ARRAY_LEN(specs); s++) {
		gcase_add(s, -1, 0);
		for (j = 0; j < nfields(&specs[s]); j++) {
			gcase_add(s, j, -1);
			for (v = 1; v <= nbad(specs[s].f[j].kind); v++)
				gcase_add(s, j, v);
		}
	}
}

START_TEST(fields)
{
	const struct gcase *g = &gcases[_i];
	const struct tspec *s = &specs[g->spec];
	const struct fspec *fs = g->field >= 0 ? &s->f[g->field] : NULL;
	const char *want = NULL, *inner, *field = "unset";
	msgpack_packer pk;
	struct fy_frame f;
	int j, n = nfields(s), r, expect = FY_OK;

	msgpack_sbuffer_clear(&pbuf);
	msgpack_packer_init(&pk, &pbuf, msgpack_sbuffer_write);
	/* rid first, an unknown key, the fields, t last: "t" and "rid"
	 * are found wherever they are, unknown keys are skipped. */
	msgpack_pack_map(&pk, 3 + n - (g->variant < 0));
	vpack_args(&pk, "susmsau", "rid", 77ull, "zz", 1u, "n", 1u, 1ull);
	for (j = 0; j < n; j++) {
		if (j == g->field && g->variant < 0)
			continue;
		vpack_args(&pk, "s", s->f[j].key);
		inner = put_value(&pk, s->f[j].kind,
		    j == g->field ? g->variant : 0);
		if (j == g->field && g->variant > 0) {
			expect = FY_EFIELD;
			want = inner != NULL ? inner : s->f[j].key;
		}
	}
	vpack_args(&pk, "su", "t", U(s->type));
	if (fs != NULL && g->variant < 0 && fs->req) {
		expect = FY_EFIELD;
		want = fs->miss != NULL ? fs->miss : fs->key;
	}

	r = decode_pbuf(&f, &field);
	ck_assert_msg(r == expect, "type %d field %s variant %d: %d != %d"
	    " (%s)", s->type, fs ? fs->key : "-", g->variant, r, expect,
	    r == FY_EFIELD ? field : "");
	ck_assert_int_eq(f.type, s->type);
	ck_assert_uint_eq(f.rid, 77);	/* echoed on errors too */
	if (expect == FY_EFIELD)
		ck_assert_str_eq(field, want);
	else
		ck_assert_ptr_null(field);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Names and codes */

START_TEST(names)
{
	static const struct {
		const char *p;
		size_t len;		/* 0: strlen */
		int ok;
	} t[] = {
		{ "a", 0, 1 },
		{ "orders.created", 0, 1 },
		{ "AZaz09._-", 0, 1 },
		{ "orders.created.dlq", 0, 1 },
		{ "-", 0, 1 },
		{ "", 0, 0 },
		{ "a b", 0, 0 },
		{ "a/b", 0, 0 },
		{ "~inbox", 0, 0 },	/* reserved for ephemeral groups */
		{ "caf\xc3\xa9", 0, 0 },
		{ "a\0b", 3, 0 },
		{ "a*", 0, 0 },
		{ "a>", 0, 0 },
		{ "tab\t", 0, 0 },
		{ "x\x7f", 0, 0 },
	};
	const char *p = t[_i].p;

	ck_assert_int_eq(fy_name_valid(p, t[_i].len ? t[_i].len :
	    strlen(p)), t[_i].ok);
}
END_TEST

/* NACK error texts: well-formed UTF-8 in, unchanged; anything else
 * repaired; a cut never splits a character. */
START_TEST(utf8_clean)
{
	static const struct {
		const char *in;
		size_t cap;
		const char *out;
	} tt[] = {
		{ "plain", 64, "plain" },
		{ "caf\xc3\xa9", 64, "caf\xc3\xa9" },
		{ "caf\xc3\xa9", 4, "caf" },	/* not half an e-acute */
		{ "\xe2\x82\xac\xf0\x9f\x98\x80", 64,
		    "\xe2\x82\xac\xf0\x9f\x98\x80" },
		{ "\xe2\x82\xac\xf0\x9f\x98\x80", 6, "\xe2\x82\xac" },
		{ "a\xff" "b", 64, "a\xef\xbf\xbd" "b" },
		{ "\xc0\x80", 64, "\xef\xbf\xbd\xef\xbf\xbd" },	/* overlong */
		{ "\xed\xa0\x80", 64,				/* surrogate */
		    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "\xf4\x90\x80\x80", 64,			/* > U+10FFFF */
		    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "ok\xe2\x82", 64, "ok\xef\xbf\xbd\xef\xbf\xbd" }, /* cut */
		{ "\xff", 2, "" },		/* U+FFFD does not fit */
		{ "", 64, "" },
	};
	char out[64];
	size_t n;

	memset(out, 0, sizeof(out));
	n = fy_utf8_clean(out, tt[_i].cap, tt[_i].in, strlen(tt[_i].in));
	ck_assert_uint_eq(n, strlen(tt[_i].out));
	ck_assert_mem_eq(out, tt[_i].out, n);
}
END_TEST

START_TEST(name_lengths)
{
	char buf[FY_NAME_MAX + 8];

	memset(buf, 'a', sizeof(buf));
	ck_assert_int_eq(fy_name_valid(buf, FY_NAME_MAX), 1);
	ck_assert_int_eq(fy_name_valid(buf, FY_NAME_MAX + 1), 0);
	ck_assert_int_eq(fy_name_valid(buf, 0), 0);
	ck_assert_int_eq(fy_name_valid(NULL, 0), 0);
	/* The dead-letter topic of a longest name: 4 bytes more. */
	memcpy(buf + FY_NAME_MAX, ".dlq", 4);
	ck_assert_int_eq(fy_name_valid(buf, FY_NAME_MAX + 4), 1);
	memcpy(buf + FY_NAME_MAX - 4, ".dlq.dlq", 8);
	ck_assert_int_eq(fy_name_valid(buf, FY_NAME_MAX + 4), 1);
	ck_assert_int_eq(fy_name_valid(buf, FY_NAME_MAX + 3), 0);
	memcpy(buf + FY_NAME_MAX, ".dlx", 4);
	ck_assert_int_eq(fy_name_valid(buf, FY_NAME_MAX + 4), 0);
	memcpy(buf + FY_NAME_MAX + 1, ".dlq", 4);
	ck_assert_int_eq(fy_name_valid(buf, FY_NAME_MAX + 5), 0);
}
END_TEST

START_TEST(codes)
{
	static const struct {
		int code;
		const char *name;
		int retry;
	} t[] = {
		{ 1, "E_PROTO", 0 }, { 2, "E_TOOBIG", 0 },
		{ 3, "E_HANDSHAKE", 0 }, { 4, "E_UNKNOWN_TYPE", 0 },
		{ 5, "E_BADNAME", 0 }, { 6, "E_BADARG", 0 },
		{ 7, "E_NOSUB", 0 }, { 8, "E_STALE", 0 },
		{ 9, "E_MSGSIZE", 0 }, { 10, "E_NOTFOUND", 0 },
		{ 11, "E_LIMIT", 0 }, { 12, "E_FULL", 1 },
		{ 13, "E_DISK", 1 }, { 14, "E_INTERNAL", 1 },
		{ 15, "E_DELETED", 0 }, { 16, "E_SHUTDOWN", 1 },
		{ 17, "E_MODE", 0 }, { 18, "E_NOSUBSCRIBERS", 1 },
		{ 19, "E_DENIED", 0 },
		{ 0, "E_UNKNOWN", 0 },
		{ -1, "E_UNKNOWN", 0 }, { 1000, "E_UNKNOWN", 0 },
		{ 20, "E_IDLE", 1 }, { 21, "E_SLOW", 0 },
		{ 22, "E_UNKNOWN", 0 },
	};

	ck_assert_str_eq(fy_code_name(t[_i].code), t[_i].name);
	ck_assert_int_eq(fy_code_retryable(t[_i].code), t[_i].retry);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc;

	tc = tcase_create("frame_need");
	tcase_add_loop_test(tc, need_short, 0, FY_HDR_LEN);
	tcase_add_loop_test(tc, need_lengths, 0, 6);
	tcase_add_test(tc, need_zero);
	tcase_add_test(tc, put_len);
	suite_add_tcase(s, tc);

	tc = tcase_create("roundtrip");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, roundtrip, 0, NSAMPLES);
	tcase_add_test(tc, roundtrip_append);
	tcase_add_test(tc, golden);
	suite_add_tcase(s, tc);

	tc = tcase_create("nobody");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, nobody_equal, 0, ARRAY_LEN(nobody_ok));
	tcase_add_loop_test(tc, nobody_refused, 0, NSAMPLES);
	tcase_add_test(tc, encode_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("truncated");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, truncated, 0, NSAMPLES);
	tcase_add_loop_test(tc, mutated, 0, NSAMPLES);
	tcase_add_test(tc, empty);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, not_a_map, 0, 14);
	suite_add_tcase(s, tc);

	tc = tcase_create("tolerated");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, tolerated);
	tcase_add_test(tc, all_formats);
	tcase_add_test(tc, depth_limit);
	tcase_add_test(tc, many_keys);
	suite_add_tcase(s, tc);

	tc = tcase_create("type");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, unknown_type, 0, 7);
	tcase_add_test(tc, bad_t_rid);
	tcase_add_loop_test(tc, misdirected, 0, 4);
	suite_add_tcase(s, tc);

	tc = tcase_create("fields");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, fields, 0, ngcases);
	tcase_add_test(tc, conflicts);
	tcase_add_test(tc, hello_sasl_pairs);
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_add_loop_test(tc, names, 0, 15);
	tcase_add_test(tc, name_lengths);
	tcase_add_loop_test(tc, utf8_clean, 0, 12);
	tcase_add_loop_test(tc, codes, 0, 24);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	init_data();
	gcases_build();
	sr = srunner_create(codec_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	free(gcases);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
