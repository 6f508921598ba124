/*
 * codec.c - ferry frames to and from msgpack.  See codec.h and PROTOCOL.md.
 *
 * Decoding runs in three steps: a cheap structural scan of the raw bytes,
 * msgpack_unpack() into the decoder's zone, then a walk over the root map
 * that fills struct fy_frame.  The scan exists because msgpack-c allocates
 * a container's element array from its header count before reading the
 * elements: a 6-byte payload claiming 2^32 entries would make it ask for
 * ~100 GB.  Once the scan has seen every element actually present,
 * unpacking allocates in proportion to the payload only.
 *
 * Encoding writes straight into the encoder's sbuffer instead of going
 * through msgpack_packer, which costs an indirect call per item; this is
 * the broker's per-delivery path.
 */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/*
 * Deepest container nesting accepted.  Frames need 4 (root map, "msgs",
 * a message map, its "hdr"); the rest leaves room for unknown keys.  Must
 * stay below msgpack-c's own MSGPACK_EMBED_STACK_SIZE (32), so that a
 * NOMEM from msgpack_unpack() always means memory.
 */
#define SCAN_DEPTH 16

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Names and codes */

static const char *const code_names[FY_E_MAX + 1] = {
	[FY_E_PROTO] = "E_PROTO",
	[FY_E_TOOBIG] = "E_TOOBIG",
	[FY_E_HANDSHAKE] = "E_HANDSHAKE",
	[FY_E_UNKNOWN_TYPE] = "E_UNKNOWN_TYPE",
	[FY_E_BADNAME] = "E_BADNAME",
	[FY_E_BADARG] = "E_BADARG",
	[FY_E_NOSUB] = "E_NOSUB",
	[FY_E_STALE] = "E_STALE",
	[FY_E_MSGSIZE] = "E_MSGSIZE",
	[FY_E_NOTFOUND] = "E_NOTFOUND",
	[FY_E_LIMIT] = "E_LIMIT",
	[FY_E_FULL] = "E_FULL",
	[FY_E_DISK] = "E_DISK",
	[FY_E_INTERNAL] = "E_INTERNAL",
	[FY_E_DELETED] = "E_DELETED",
	[FY_E_SHUTDOWN] = "E_SHUTDOWN",
	[FY_E_MODE] = "E_MODE",
	[FY_E_NOSUBSCRIBERS] = "E_NOSUBSCRIBERS",
};

const char *
fy_code_name(int code)
{
	if (code < 1 || code > FY_E_MAX || code_names[code] == NULL)
		return "E_UNKNOWN";
	return code_names[code];
}

int
fy_code_retryable(int code)
{
	switch (code) {
	case FY_E_FULL:
	case FY_E_DISK:
	case FY_E_INTERNAL:
	case FY_E_SHUTDOWN:
	case FY_E_NOSUBSCRIBERS:
		return 1;
	default:
		return 0;
	}
}

/* [A-Za-z0-9._-]: a table, since names are checked on every PUB. */
#define N1(c) [c] = 1
static const uint8_t name_ok[256] = {
	N1('.'), N1('-'), N1('_'),
	N1('0'), N1('1'), N1('2'), N1('3'), N1('4'),
	N1('5'), N1('6'), N1('7'), N1('8'), N1('9'),
	N1('A'), N1('B'), N1('C'), N1('D'), N1('E'), N1('F'), N1('G'),
	N1('H'), N1('I'), N1('J'), N1('K'), N1('L'), N1('M'), N1('N'),
	N1('O'), N1('P'), N1('Q'), N1('R'), N1('S'), N1('T'), N1('U'),
	N1('V'), N1('W'), N1('X'), N1('Y'), N1('Z'),
	N1('a'), N1('b'), N1('c'), N1('d'), N1('e'), N1('f'), N1('g'),
	N1('h'), N1('i'), N1('j'), N1('k'), N1('l'), N1('m'), N1('n'),
	N1('o'), N1('p'), N1('q'), N1('r'), N1('s'), N1('t'), N1('u'),
	N1('v'), N1('w'), N1('x'), N1('y'), N1('z'),
};
#undef N1

int
fy_name_valid(const char *p, size_t len)
{
	size_t i;

	if (p == NULL || len == 0 || len > FY_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!name_ok[(unsigned char)p[i]])
			return 0;
	return 1;
}

/* ------------------------------------------------------------------ */
/* Structural scan */

static uint64_t
be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | *p++;
	return v;
}

/*
 * Check that p[0..len) is exactly one well-formed msgpack map, nested at
 * most SCAN_DEPTH deep, with every container count backed by bytes.
 * No allocation, no recursion: one counter of items left per open
 * container.
 */
static int
scan(const uint8_t *p, size_t len)
{
	uint64_t left[SCAN_DEPTH];
	int top = 0;
	size_t i = 0;

	if (len == 0 || !((p[0] & 0xf0) == 0x80 || p[0] == 0xde ||
	    p[0] == 0xdf))
		return FY_EPROTO;
	left[0] = 1;
	for (;;) {
		size_t lenb = 0;	/* bytes of a length field */
		uint64_t skip = 0;	/* payload bytes to skip */
		uint64_t n = 0;		/* items of a container */
		int cont = 0;
		uint8_t b;

		while (left[top] == 0) {
			if (top == 0)
				return i == len ? FY_OK : FY_EPROTO;
			top--;
		}
		if (i >= len)
			return FY_EPROTO;
		left[top]--;
		b = p[i++];
		if (b <= 0x7f || b >= 0xe0)
			continue;			/* fixint */
		if (b <= 0x8f) {
			n = 2 * (uint64_t)(b & 0x0f);	/* fixmap */
			cont = 1;
		} else if (b <= 0x9f) {
			n = b & 0x0f;			/* fixarray */
			cont = 1;
		} else if (b <= 0xbf) {
			skip = b & 0x1f;		/* fixstr */
		} else {
			switch (b) {
			case 0xc0: case 0xc2: case 0xc3:
				continue;		/* nil, bool */
			case 0xc4: case 0xd9: lenb = 1; break;	/* bin8 str8 */
			case 0xc5: case 0xda: lenb = 2; break;
			case 0xc6: case 0xdb: lenb = 4; break;
			case 0xc7: lenb = 1; skip = 1; break;	/* ext: +type */
			case 0xc8: lenb = 2; skip = 1; break;
			case 0xc9: lenb = 4; skip = 1; break;
			case 0xcc: case 0xd0: skip = 1; break;
			case 0xcd: case 0xd1: skip = 2; break;
			case 0xca: case 0xce: case 0xd2: skip = 4; break;
			case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
			case 0xd4: skip = 2; break;		/* fixext */
			case 0xd5: skip = 3; break;
			case 0xd6: skip = 5; break;
			case 0xd7: skip = 9; break;
			case 0xd8: skip = 17; break;
			case 0xdc: lenb = 2; cont = 1; break;	/* array */
			case 0xdd: lenb = 4; cont = 1; break;
			case 0xde: lenb = 2; cont = 2; break;	/* map */
			case 0xdf: lenb = 4; cont = 2; break;
			default:
				return FY_EPROTO;		/* 0xc1 */
			}
			if (lenb > len - i)
				return FY_EPROTO;
			if (cont)
				n = be(p + i, lenb) * (uint64_t)cont;
			else
				skip += be(p + i, lenb);
			i += lenb;
		}
		if (!cont) {
			if (skip > len - i)
				return FY_EPROTO;
			i += (size_t)skip;
			continue;
		}
		/* Every item takes at least one byte. */
		if (n > len - i)
			return FY_EPROTO;
		if (n == 0)
			continue;
		if (top + 1 >= SCAN_DEPTH)
			return FY_EPROTO;
		left[++top] = n;
	}
}

/* ------------------------------------------------------------------ */
/* Keys */

enum key {
	K_NONE, K_T, K_V, K_C, K_E, K_ID, K_BY, K_AT, K_TS, K_RID, K_SID,
	K_HDR, K_ATT, K_MSG, K_IDS, K_DUR, K_NAME, K_BODY, K_MSGS, K_MODE,
	K_CODE, K_HIST, K_TOPIC, K_GROUP, K_LEASE, K_DELAY, K_ERROR,
	K_LEASES, K_SERVER, K_SESSION, K_MAX_MSG, K_PREFETCH, K_MAX_FRAME,
	K_EPHEMERAL, K_ACK_TIMEOUT, K_MAX_ATTEMPTS, K_TTL, K_PID, K_SEQ,
	K_CORR, K_DUPS, K_STATS, K_EVENTS, K_REPLY_TO, K_TTL_DROP, K_MAX_MSGS,
	K_OVERFLOW, K_INFLIGHT, K_MANDATORY, K_MAX_BYTES,
	K_COUNT		/* HAS() needs K_COUNT <= 64 */
};

#define IS(lit) (memcmp(p, lit, sizeof(lit) - 1) == 0)

/* Map a key to its enum by length first, so most keys cost one memcmp. */
static enum key
key_id(const msgpack_object *o)
{
	const char *p;

	if (o->type != MSGPACK_OBJECT_STR)
		return K_NONE;
	p = o->via.str.ptr;
	switch (o->via.str.size) {
	case 1:
		switch (p[0]) {
		case 't': return K_T;
		case 'v': return K_V;
		case 'c': return K_C;
		case 'e': return K_E;
		}
		break;
	case 2:
		if (IS("id")) return K_ID;
		if (IS("ts")) return K_TS;
		if (IS("by")) return K_BY;
		if (IS("at")) return K_AT;
		break;
	case 3:
		if (IS("rid")) return K_RID;
		if (IS("sid")) return K_SID;
		if (IS("hdr")) return K_HDR;
		if (IS("att")) return K_ATT;
		if (IS("msg")) return K_MSG;
		if (IS("ids")) return K_IDS;
		if (IS("dur")) return K_DUR;
		if (IS("ttl")) return K_TTL;
		if (IS("pid")) return K_PID;
		if (IS("seq")) return K_SEQ;
		break;
	case 4:
		if (IS("body")) return K_BODY;
		if (IS("name")) return K_NAME;
		if (IS("msgs")) return K_MSGS;
		if (IS("mode")) return K_MODE;
		if (IS("code")) return K_CODE;
		if (IS("hist")) return K_HIST;
		if (IS("corr")) return K_CORR;
		if (IS("dups")) return K_DUPS;
		break;
	case 5:
		if (IS("topic")) return K_TOPIC;
		if (IS("lease")) return K_LEASE;
		if (IS("group")) return K_GROUP;
		if (IS("delay")) return K_DELAY;
		if (IS("error")) return K_ERROR;
		if (IS("stats")) return K_STATS;
		break;
	case 6:
		if (IS("leases")) return K_LEASES;
		if (IS("server")) return K_SERVER;
		if (IS("events")) return K_EVENTS;
		break;
	case 7:
		if (IS("session")) return K_SESSION;
		if (IS("max_msg")) return K_MAX_MSG;
		break;
	case 8:
		if (IS("reply_to")) return K_REPLY_TO;
		if (IS("prefetch")) return K_PREFETCH;
		if (IS("ttl_drop")) return K_TTL_DROP;
		if (IS("max_msgs")) return K_MAX_MSGS;
		if (IS("overflow")) return K_OVERFLOW;
		if (IS("inflight")) return K_INFLIGHT;
		break;
	case 9:
		if (IS("max_frame")) return K_MAX_FRAME;
		if (IS("ephemeral")) return K_EPHEMERAL;
		if (IS("mandatory")) return K_MANDATORY;
		if (IS("max_bytes")) return K_MAX_BYTES;
		break;
	case 11:
		if (IS("ack_timeout")) return K_ACK_TIMEOUT;
		break;
	case 12:
		if (IS("max_attempts")) return K_MAX_ATTEMPTS;
		break;
	}
	return K_NONE;
}

#undef IS

/* ------------------------------------------------------------------ */
/* Decoding */

/* Where a failing field's name goes; see fy_decode(). */
struct dctx {
	msgpack_zone *zone;
	const char *field;
};

static int
bad(struct dctx *c, const char *field)
{
	c->field = field;
	return FY_EFIELD;
}

/* Typed getters: 0, or -1 for a wrong type or range. */

static int
get_u64(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -1;
	*v = o->via.u64;
	return 0;
}

static int
get_u32(const msgpack_object *o, uint32_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
	    o->via.u64 > UINT32_MAX)
		return -1;
	*v = (uint32_t)o->via.u64;
	return 0;
}

static int
get_str(const msgpack_object *o, struct fy_str *s)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return -1;
	s->p = o->via.str.ptr;
	s->len = o->via.str.size;
	return 0;
}

/* Bodies are bin; str is accepted too, for clients that cannot tell. */
static int
get_body(const msgpack_object *o, struct fy_str *s)
{
	if (o->type == MSGPACK_OBJECT_BIN) {
		s->p = o->via.bin.ptr;
		s->len = o->via.bin.size;
		return 0;
	}
	return get_str(o, s);
}

static int
get_bool(const msgpack_object *o, uint8_t *v)
{
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return -1;
	*v = o->via.boolean ? 1 : 0;
	return 0;
}

static void *
zalloc(struct dctx *c, size_t n, size_t size)
{
	/* n is bounded by the payload length (see scan()), but a 32-bit
	 * size_t could still overflow. */
	if (n > SIZE_MAX / size)
		return NULL;
	return msgpack_zone_malloc(c->zone, n * size);
}

/* "hdr": a map of str -> str. */
static int
get_hdr(struct dctx *c, const msgpack_object *o, struct fy_kv **kv,
    uint32_t *n)
{
	const msgpack_object_map *m;
	struct fy_kv *a;
	uint32_t i;

	if (o->type != MSGPACK_OBJECT_MAP)
		return bad(c, "hdr");
	m = &o->via.map;
	*kv = NULL;
	*n = 0;
	if (m->size == 0)
		return FY_OK;
	a = zalloc(c, m->size, sizeof(*a));
	if (a == NULL)
		return FY_ENOMEM;
	for (i = 0; i < m->size; i++)
		if (get_str(&m->ptr[i].key, &a[i].k) ||
		    get_str(&m->ptr[i].val, &a[i].v))
			return bad(c, "hdr");
	*kv = a;
	*n = m->size;
	return FY_OK;
}

/*
 * One of a message's own keys (body, id, hdr, delay, ttl, reply_to, corr,
 * pid, seq), shared by single PUB and the maps in "msgs".  Returns FY_OK
 * or an error; sets *seen_body on body.  pubmsg_end() checks the message
 * once all its keys are read.
 */
static int
pubmsg_key(struct dctx *c, enum key k, const msgpack_object *v,
    struct fy_pubmsg *m, int *seen_body)
{
	switch (k) {
	case K_BODY:
		if (get_body(v, &m->body))
			return bad(c, "body");
		*seen_body = 1;
		return FY_OK;
	case K_ID:
		if (get_str(v, &m->id) || m->id.len > FY_ID_MAX)
			return bad(c, "id");
		return FY_OK;
	case K_HDR:
		return get_hdr(c, v, &m->hdr, &m->nhdr);
	case K_DELAY:
		if (get_u64(v, &m->delay_ms))
			return bad(c, "delay");
		return FY_OK;
	case K_TTL:
		if (get_u64(v, &m->ttl_ms))
			return bad(c, "ttl");
		return FY_OK;
	case K_REPLY_TO:
		if (get_str(v, &m->reply_to))
			return bad(c, "reply_to");
		return FY_OK;
	case K_CORR:
		if (get_str(v, &m->corr))
			return bad(c, "corr");
		return FY_OK;
	case K_PID:
		if (get_str(v, &m->pid) || m->pid.len > FY_ID_MAX)
			return bad(c, "pid");
		return FY_OK;
	case K_SEQ:
		/* 0 cannot be told from absent once decoded: refuse it. */
		if (get_u64(v, &m->pseq) || m->pseq == 0)
			return bad(c, "seq");
		return FY_OK;
	default:
		return FY_OK;
	}
}

/* A whole message: body present; pid and seq only together, since a
 * sequence means nothing without its producer, nor a producer without
 * a sequence.  Both are reported as "seq". */
static int
pubmsg_end(struct dctx *c, const struct fy_pubmsg *m, int seen_body)
{
	if (!seen_body)
		return bad(c, "body");
	if ((m->pseq != 0) != (m->pid.len != 0))
		return bad(c, "seq");
	return FY_OK;
}

/* Iterate a map's entries whose key is known and whose value is not nil:
 * nil is how many msgpack libraries spell "absent". */
#define FOR_KEYS(m, e, k, v)						\
	for (e = (m)->ptr; e < (m)->ptr + (m)->size; e++)		\
		if ((v = &e->val)->type != MSGPACK_OBJECT_NIL &&	\
		    (k = key_id(&e->key)) != K_NONE)

/* Bits for required keys seen. */
#define HAS(k) ((uint64_t)1 << (k))
_Static_assert(K_COUNT <= 64, "enum key must fit HAS()'s bits");

/* The keys of struct fy_pubmsg: at the top level of a single PUB only. */
#define PUBMSG_KEYS (HAS(K_BODY) | HAS(K_ID) | HAS(K_HDR) | HAS(K_DELAY) | \
	HAS(K_TTL) | HAS(K_REPLY_TO) | HAS(K_CORR) | HAS(K_PID) | HAS(K_SEQ))

static int
dec_hello(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	enum key k;
	uint64_t seen = 0;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_V:
			if (get_u32(v, &f->hello.version))
				return bad(c, "v");
			seen |= HAS(K_V);
			break;
		case K_NAME:
			if (get_str(v, &f->hello.name))
				return bad(c, "name");
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_V)))
		return bad(c, "v");
	return FY_OK;
}

static int
dec_pub(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v, *msgs = NULL;
	enum key k;
	uint64_t seen = 0;
	int body = 0, r;
	uint32_t i;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_TOPIC:
			if (get_str(v, &f->pub.topic))
				return bad(c, "topic");
			seen |= HAS(K_TOPIC);
			break;
		case K_MSGS:
			msgs = v;
			break;
		case K_GROUP:
			if (get_str(v, &f->pub.group))
				return bad(c, "group");
			break;
		case K_MANDATORY:
			if (get_bool(v, &f->pub.mandatory))
				return bad(c, "mandatory");
			break;
		case K_BODY:
		case K_ID:
		case K_HDR:
		case K_DELAY:
		case K_TTL:
		case K_REPLY_TO:
		case K_CORR:
		case K_PID:
		case K_SEQ:
			seen |= HAS(k);
			r = pubmsg_key(c, k, v, &f->pub.one, &body);
			if (r != FY_OK)
				return r;
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_TOPIC)))
		return bad(c, "topic");
	if (msgs == NULL) {
		r = pubmsg_end(c, &f->pub.one, body);
		if (r != FY_OK)
			return r;
		f->pub.msgs = &f->pub.one;
		f->pub.nmsgs = 1;
		return FY_OK;
	}
	/* A batch carries everything in "msgs"; top-level message keys
	 * beside it would be silently lost, so refuse them. */
	if (seen & PUBMSG_KEYS)
		return bad(c, "msgs");
	if (msgs->type != MSGPACK_OBJECT_ARRAY || msgs->via.array.size == 0)
		return bad(c, "msgs");
	f->pub.nmsgs = msgs->via.array.size;
	f->pub.msgs = zalloc(c, f->pub.nmsgs, sizeof(*f->pub.msgs));
	if (f->pub.msgs == NULL)
		return FY_ENOMEM;
	memset(f->pub.msgs, 0, f->pub.nmsgs * sizeof(*f->pub.msgs));
	for (i = 0; i < f->pub.nmsgs; i++) {
		const msgpack_object *o = &msgs->via.array.ptr[i];

		if (o->type != MSGPACK_OBJECT_MAP)
			return bad(c, "msgs");
		body = 0;
		FOR_KEYS(&o->via.map, e, k, v) {
			r = pubmsg_key(c, k, v, &f->pub.msgs[i], &body);
			if (r != FY_OK)
				return r;
		}
		r = pubmsg_end(c, &f->pub.msgs[i], body);
		if (r != FY_OK)
			return r;
	}
	return FY_OK;
}

static int
dec_sub(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	enum key k;
	uint64_t seen = 0;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_TOPIC:
			if (get_str(v, &f->sub.topic))
				return bad(c, "topic");
			seen |= HAS(K_TOPIC);
			break;
		case K_GROUP:
			if (get_str(v, &f->sub.group))
				return bad(c, "group");
			break;
		case K_PREFETCH:
			if (get_u32(v, &f->sub.prefetch))
				return bad(c, "prefetch");
			break;
		case K_MODE:
			if (get_u32(v, &f->sub.mode) ||
			    f->sub.mode > FY_MODE_AMO)
				return bad(c, "mode");
			break;
		case K_ACK_TIMEOUT:
			if (get_u32(v, &f->sub.ack_timeout_ms))
				return bad(c, "ack_timeout");
			break;
		case K_MAX_ATTEMPTS:
			if (get_u32(v, &f->sub.max_attempts))
				return bad(c, "max_attempts");
			break;
		case K_EPHEMERAL:
			if (get_bool(v, &f->sub.ephemeral))
				return bad(c, "ephemeral");
			break;
		case K_TTL:
			if (get_u64(v, &f->sub.ttl_ms))
				return bad(c, "ttl");
			break;
		case K_TTL_DROP:
			if (get_bool(v, &f->sub.ttl_drop))
				return bad(c, "ttl_drop");
			break;
		case K_MAX_MSGS:
			if (get_u64(v, &f->sub.max_msgs))
				return bad(c, "max_msgs");
			break;
		case K_MAX_BYTES:
			if (get_u64(v, &f->sub.max_bytes))
				return bad(c, "max_bytes");
			break;
		case K_OVERFLOW:
			if (get_u32(v, &f->sub.overflow) ||
			    f->sub.overflow > FY_OVERFLOW_DLQ_OLDEST)
				return bad(c, "overflow");
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_TOPIC)))
		return bad(c, "topic");
	return FY_OK;
}

/* UNSUB, ACK, NACK and TOUCH: "sid" plus lease fields. */
static int
dec_settle(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v, *leases = NULL;
	enum key k;
	uint64_t seen = 0;
	uint64_t sid = 0, lease = 0;
	uint64_t *a;
	uint32_t i;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_SID:
			if (get_u64(v, &sid))
				return bad(c, "sid");
			seen |= HAS(K_SID);
			break;
		case K_LEASE:
			if (f->type == FY_T_UNSUB)
				break;
			if (get_u64(v, &lease))
				return bad(c, "lease");
			seen |= HAS(K_LEASE);
			break;
		case K_LEASES:
			if (f->type == FY_T_ACK)
				leases = v;
			break;
		case K_DELAY:
			if (f->type != FY_T_NACK)
				break;
			if (get_u64(v, &f->nack.delay_ms))
				return bad(c, "delay");
			f->nack.has_delay = 1;
			break;
		case K_ERROR:
			if (f->type != FY_T_NACK)
				break;
			if (get_str(v, &f->nack.error))
				return bad(c, "error");
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_SID)))
		return bad(c, "sid");
	switch (f->type) {
	case FY_T_UNSUB:
		f->unsub.sid = sid;
		return FY_OK;
	case FY_T_NACK:
		f->nack.sid = sid;
		f->nack.lease = lease;
		break;
	case FY_T_TOUCH:
		f->touch.sid = sid;
		f->touch.lease = lease;
		break;
	default:
		f->ack.sid = sid;
		if (leases == NULL)
			break;
		/* "lease" and "leases" together is ambiguous: refuse. */
		if ((seen & HAS(K_LEASE)) ||
		    leases->type != MSGPACK_OBJECT_ARRAY ||
		    leases->via.array.size == 0)
			return bad(c, "leases");
		f->ack.nleases = leases->via.array.size;
		a = zalloc(c, f->ack.nleases, sizeof(*a));
		if (a == NULL)
			return FY_ENOMEM;
		for (i = 0; i < f->ack.nleases; i++)
			if (get_u64(&leases->via.array.ptr[i], &a[i]))
				return bad(c, "leases");
		f->ack.leases = a;
		return FY_OK;
	}
	if (!(seen & HAS(K_LEASE)))
		return bad(c, "lease");
	if (f->type == FY_T_ACK) {
		f->ack.one = lease;
		f->ack.leases = &f->ack.one;
		f->ack.nleases = 1;
	}
	return FY_OK;
}

static int
dec_delete(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	enum key k;
	uint64_t seen = 0;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_TOPIC:
			if (get_str(v, &f->del.topic))
				return bad(c, "topic");
			seen |= HAS(K_TOPIC);
			break;
		case K_GROUP:
			if (get_str(v, &f->del.group))
				return bad(c, "group");
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_TOPIC)))
		return bad(c, "topic");
	return FY_OK;
}

/*
 * STATS, INFLIGHT, PEEK and TRACE.  Only the keys of the type are read,
 * as dec_settle() does: the others are unknown to it.
 */
static int
dec_query(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	enum key k;
	uint64_t seen = 0;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_TOPIC:
			if (f->type == FY_T_TRACE)
				break;
			if (get_str(v, &f->query.topic))
				return bad(c, "topic");
			seen |= HAS(K_TOPIC);
			break;
		case K_GROUP:
			if (f->type != FY_T_INFLIGHT && f->type != FY_T_PEEK)
				break;
			if (get_str(v, &f->query.group))
				return bad(c, "group");
			break;
		case K_ID:
			if (f->type != FY_T_TRACE)
				break;
			if (get_str(v, &f->query.id))
				return bad(c, "id");
			seen |= HAS(K_ID);
			break;
		default:
			break;
		}
	}
	switch (f->type) {
	case FY_T_INFLIGHT:
	case FY_T_PEEK:
		if (!(seen & HAS(K_TOPIC)))
			return bad(c, "topic");
		break;
	case FY_T_TRACE:
		if (!(seen & HAS(K_ID)))
			return bad(c, "id");
		break;
	default:
		break;
	}
	return FY_OK;
}

static int
dec_welcome(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	enum key k;
	uint64_t seen = 0;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_V:
			if (get_u32(v, &f->welcome.version))
				return bad(c, "v");
			seen |= HAS(K_V);
			break;
		case K_SERVER:
			if (get_str(v, &f->welcome.server))
				return bad(c, "server");
			break;
		case K_SESSION:
			if (get_str(v, &f->welcome.session))
				return bad(c, "session");
			break;
		case K_MAX_FRAME:
			if (get_u32(v, &f->welcome.max_frame))
				return bad(c, "max_frame");
			break;
		case K_MAX_MSG:
			if (get_u32(v, &f->welcome.max_msg))
				return bad(c, "max_msg");
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_V)))
		return bad(c, "v");
	return FY_OK;
}

/*
 * The rows of the inspection replies ("stats", "inflight", "events"):
 * flat maps of str and uint fields, described by tables that the decoder
 * and the encoder share.  Their keys stay out of key_id(), whose buckets
 * every PUB and MSG key goes through.
 */
enum { F_STR, F_U64, F_U32 };

struct rowfield {
	const char *key;
	uint8_t klen;
	uint8_t kind;		/* F_* */
	uint16_t off;		/* in the row struct */
};

#define RF(lit, kind, type, member)					\
	{ lit, sizeof(lit) - 1, kind, offsetof(type, member) }

static const struct rowfield gstat_fields[] = {
	RF("topic", F_STR, struct fy_gstat, topic),
	RF("group", F_STR, struct fy_gstat, group),
	RF("ready", F_U64, struct fy_gstat, ready),
	RF("delayed", F_U64, struct fy_gstat, delayed),
	RF("inflight", F_U64, struct fy_gstat, inflight),
	RF("bytes", F_U64, struct fy_gstat, bytes),
	RF("members", F_U64, struct fy_gstat, members),
	RF("enq", F_U64, struct fy_gstat, enqueued),
	RF("dlv", F_U64, struct fy_gstat, delivered),
	RF("ack", F_U64, struct fy_gstat, acked),
	RF("timeout", F_U64, struct fy_gstat, timeouts),
	RF("nack", F_U64, struct fy_gstat, nacked),
	RF("disc", F_U64, struct fy_gstat, disconnected),
	RF("rel", F_U64, struct fy_gstat, released),
	RF("expired", F_U64, struct fy_gstat, expired),
	RF("dlq", F_U64, struct fy_gstat, dead_lettered),
};

static const struct rowfield lease_fields[] = {
	RF("id", F_STR, struct fy_lease_info, id),
	RF("by", F_STR, struct fy_lease_info, consumer),
	RF("age", F_U64, struct fy_lease_info, age_ms),
	RF("att", F_U32, struct fy_lease_info, attempt),
	RF("e", F_STR, struct fy_lease_info, error),
};

static const struct rowfield event_fields[] = {
	RF("at", F_U64, struct fy_event, at),
	RF("ev", F_STR, struct fy_event, what),
	RF("topic", F_STR, struct fy_event, topic),
	RF("group", F_STR, struct fy_event, group),
	RF("by", F_STR, struct fy_event, consumer),
	RF("att", F_U32, struct fy_event, attempt),
	RF("e", F_STR, struct fy_event, error),
};

#undef RF

static const struct rowfield *
row_field(const struct rowfield *fd, size_t nfd, const msgpack_object *k)
{
	size_t i;

	if (k->type != MSGPACK_OBJECT_STR)
		return NULL;
	for (i = 0; i < nfd; i++)
		if (fd[i].klen == k->via.str.size &&
		    memcmp(fd[i].key, k->via.str.ptr, fd[i].klen) == 0)
			return &fd[i];
	return NULL;
}

/* An array of row maps into a zeroed zone array; any error names the
 * array's key.  An empty array gives NULL, 0. */
static int
get_rows(struct dctx *c, const msgpack_object *o, const char *name,
    const struct rowfield *fd, size_t nfd, size_t size, void **rows,
    uint32_t *nrows)
{
	const msgpack_object_kv *e;
	const struct rowfield *rf;
	uint32_t i, n;
	char *a, *p;
	int r;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return bad(c, name);
	n = o->via.array.size;
	*rows = NULL;
	*nrows = 0;
	if (n == 0)
		return FY_OK;
	a = zalloc(c, n, size);
	if (a == NULL)
		return FY_ENOMEM;
	memset(a, 0, (size_t)n * size);
	for (i = 0; i < n; i++) {
		const msgpack_object *ent = &o->via.array.ptr[i];

		if (ent->type != MSGPACK_OBJECT_MAP)
			return bad(c, name);
		for (e = ent->via.map.ptr;
		    e < ent->via.map.ptr + ent->via.map.size; e++) {
			if (e->val.type == MSGPACK_OBJECT_NIL ||
			    (rf = row_field(fd, nfd, &e->key)) == NULL)
				continue;
			p = a + (size_t)i * size + rf->off;
			switch (rf->kind) {
			case F_STR:
				r = get_str(&e->val, (struct fy_str *)p);
				break;
			case F_U64:
				r = get_u64(&e->val, (uint64_t *)p);
				break;
			default:
				r = get_u32(&e->val, (uint32_t *)p);
				break;
			}
			if (r)
				return bad(c, name);
		}
	}
	*rows = a;
	*nrows = n;
	return FY_OK;
}

static int
dec_ok(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	enum key k;
	uint32_t i, n;
	void *rows;
	int r;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_SID:
			if (get_u64(v, &f->ok.sid))
				return bad(c, "sid");
			break;
		case K_GROUP:
			if (get_str(v, &f->ok.group))
				return bad(c, "group");
			break;
		case K_DUR:
			if (get_u32(v, &f->ok.dur))
				return bad(c, "dur");
			break;
		case K_IDS:
			if (v->type != MSGPACK_OBJECT_ARRAY)
				return bad(c, "ids");
			n = v->via.array.size;
			f->ok.ids = NULL;
			f->ok.nids = 0;
			if (n == 0)
				break;
			f->ok.ids = zalloc(c, n, sizeof(*f->ok.ids));
			if (f->ok.ids == NULL)
				return FY_ENOMEM;
			for (i = 0; i < n; i++)
				if (get_str(&v->via.array.ptr[i],
				    &f->ok.ids[i]))
					return bad(c, "ids");
			f->ok.nids = n;
			break;
		case K_DUPS:
			if (get_u32(v, &f->ok.dups))
				return bad(c, "dups");
			break;
		case K_STATS:
			r = get_rows(c, v, "stats", gstat_fields,
			    ARRAY_LEN(gstat_fields), sizeof(*f->ok.stats),
			    &rows, &f->ok.nstats);
			if (r != FY_OK)
				return r;
			f->ok.stats = rows;
			break;
		case K_INFLIGHT:
			r = get_rows(c, v, "inflight", lease_fields,
			    ARRAY_LEN(lease_fields), sizeof(*f->ok.inflight),
			    &rows, &f->ok.ninflight);
			if (r != FY_OK)
				return r;
			f->ok.inflight = rows;
			break;
		case K_EVENTS:
			r = get_rows(c, v, "events", event_fields,
			    ARRAY_LEN(event_fields), sizeof(*f->ok.events),
			    &rows, &f->ok.nevents);
			if (r != FY_OK)
				return r;
			f->ok.events = rows;
			break;
		default:
			break;
		}
	}
	return FY_OK;
}

static int
dec_err(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	enum key k;
	uint64_t seen = 0;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_CODE:
			if (get_u32(v, &f->err.code))
				return bad(c, "code");
			seen |= HAS(K_CODE);
			break;
		case K_MSG:
			if (get_str(v, &f->err.msg))
				return bad(c, "msg");
			break;
		case K_SID:
			if (get_u64(v, &f->err.sid))
				return bad(c, "sid");
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_CODE)))
		return bad(c, "code");
	return FY_OK;
}

/* "hist": an array of {c, e, by, at} maps. */
static int
get_hist(struct dctx *c, const msgpack_object *o, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	struct fy_hist *h;
	enum key k;
	uint32_t i, n;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return bad(c, "hist");
	n = o->via.array.size;
	f->msg.hist = NULL;
	f->msg.nhist = 0;
	if (n == 0)
		return FY_OK;
	h = zalloc(c, n, sizeof(*h));
	if (h == NULL)
		return FY_ENOMEM;
	memset(h, 0, n * sizeof(*h));
	for (i = 0; i < n; i++) {
		const msgpack_object *ent = &o->via.array.ptr[i];

		if (ent->type != MSGPACK_OBJECT_MAP)
			return bad(c, "hist");
		FOR_KEYS(&ent->via.map, e, k, v) {
			int r = 0;

			switch (k) {
			case K_C:
				r = get_str(v, &h[i].cause);
				break;
			case K_E:
				r = get_str(v, &h[i].error);
				break;
			case K_BY:
				r = get_str(v, &h[i].consumer);
				break;
			case K_AT:
				r = get_u64(v, &h[i].at);
				break;
			default:
				break;
			}
			if (r)
				return bad(c, "hist");
		}
	}
	f->msg.hist = h;
	f->msg.nhist = n;
	return FY_OK;
}

static int
dec_msg(struct dctx *c, const msgpack_object_map *m, struct fy_frame *f)
{
	const msgpack_object_kv *e;
	const msgpack_object *v;
	enum key k;
	uint64_t seen = 0;
	int r;

	FOR_KEYS(m, e, k, v) {
		switch (k) {
		case K_SID:
			if (get_u64(v, &f->msg.sid))
				return bad(c, "sid");
			seen |= HAS(K_SID);
			break;
		case K_ID:
			if (get_str(v, &f->msg.id))
				return bad(c, "id");
			seen |= HAS(K_ID);
			break;
		case K_TOPIC:
			if (get_str(v, &f->msg.topic))
				return bad(c, "topic");
			break;
		case K_LEASE:
			if (get_u64(v, &f->msg.lease))
				return bad(c, "lease");
			break;
		case K_ATT:
			if (get_u32(v, &f->msg.attempt))
				return bad(c, "att");
			break;
		case K_TS:
			if (get_u64(v, &f->msg.ts))
				return bad(c, "ts");
			break;
		case K_HDR:
			r = get_hdr(c, v, &f->msg.hdr, &f->msg.nhdr);
			if (r != FY_OK)
				return r;
			break;
		case K_HIST:
			r = get_hist(c, v, f);
			if (r != FY_OK)
				return r;
			break;
		case K_REPLY_TO:
			if (get_str(v, &f->msg.reply_to))
				return bad(c, "reply_to");
			break;
		case K_CORR:
			if (get_str(v, &f->msg.corr))
				return bad(c, "corr");
			break;
		case K_BODY:
			if (get_body(v, &f->msg.body))
				return bad(c, "body");
			seen |= HAS(K_BODY);
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_SID)))
		return bad(c, "sid");
	if (!(seen & HAS(K_ID)))
		return bad(c, "id");
	if (!(seen & HAS(K_BODY)))
		return bad(c, "body");
	return FY_OK;
}

int
fy_dec_init(struct fy_dec *d)
{
	return msgpack_zone_init(&d->zone, MSGPACK_ZONE_CHUNK_SIZE) ?
	    FY_OK : FY_ENOMEM;
}

void
fy_dec_fini(struct fy_dec *d)
{
	msgpack_zone_destroy(&d->zone);
}

int
fy_decode(struct fy_dec *d, const uint8_t *payload, size_t len,
    struct fy_frame *f, const char **field)
{
	struct dctx c = { &d->zone, NULL };
	const msgpack_object_map *m;
	const msgpack_object *t = NULL, *rid = NULL;
	msgpack_object root;
	size_t off = 0;
	uint32_t i;
	int r;

	memset(f, 0, sizeof(*f));
	if (field != NULL)
		*field = NULL;
	/* Frees what the previous frame used, keeping the first chunk. */
	msgpack_zone_clear(&d->zone);
	if (payload == NULL)
		return FY_EPROTO;
	r = scan(payload, len);
	if (r != FY_OK)
		return r;
	switch (msgpack_unpack((const char *)payload, len, &off, &d->zone,
	    &root)) {
	case MSGPACK_UNPACK_SUCCESS:
		break;
	case MSGPACK_UNPACK_NOMEM_ERROR:
		return FY_ENOMEM;
	default:
		return FY_EPROTO;	/* scan() should have caught it */
	}
	if (root.type != MSGPACK_OBJECT_MAP)
		return FY_EPROTO;
	m = &root.via.map;

	/* "t" and "rid" first, wherever they are, so that any later error
	 * can be answered with the request id. */
	for (i = 0; i < m->size; i++) {
		enum key k = key_id(&m->ptr[i].key);

		if (k == K_T)
			t = &m->ptr[i].val;
		else if (k == K_RID)
			rid = &m->ptr[i].val;
	}
	if (t != NULL && t->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		f->type = t->via.u64 <= INT_MAX ? (int)t->via.u64 : -1;
	if (rid != NULL && rid->type != MSGPACK_OBJECT_NIL &&
	    get_u64(rid, &f->rid))
		c.field = "rid";
	else if (t == NULL || t->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		c.field = "t";
	if (c.field != NULL) {
		r = FY_EFIELD;
		goto out;
	}

	switch (f->type) {
	case FY_T_HELLO:
		r = dec_hello(&c, m, f);
		break;
	case FY_T_PUB:
		r = dec_pub(&c, m, f);
		break;
	case FY_T_SUB:
		r = dec_sub(&c, m, f);
		break;
	case FY_T_UNSUB:
	case FY_T_ACK:
	case FY_T_NACK:
	case FY_T_TOUCH:
		r = dec_settle(&c, m, f);
		break;
	case FY_T_DELETE:
		r = dec_delete(&c, m, f);
		break;
	case FY_T_PING:
		r = FY_OK;
		break;
	case FY_T_STATS:
	case FY_T_INFLIGHT:
	case FY_T_PEEK:
	case FY_T_TRACE:
		r = dec_query(&c, m, f);
		break;
	case FY_T_WELCOME:
		r = dec_welcome(&c, m, f);
		break;
	case FY_T_OK:
		r = dec_ok(&c, m, f);
		break;
	case FY_T_ERR:
		r = dec_err(&c, m, f);
		break;
	case FY_T_MSG:
		r = dec_msg(&c, m, f);
		break;
	default:
		r = FY_ETYPE;
		break;
	}
out:
	if (r == FY_EFIELD && field != NULL)
		*field = c.field;
	return r;
}

/* ------------------------------------------------------------------ */
/* Encoding */

/* Writer over the encoder's sbuffer; the first failure sticks, so the
 * frame code reads straight through and checks once at the end. */
struct w {
	msgpack_sbuffer *sb;
	int err;
};

static int
grow(struct w *w, size_t n)
{
	msgpack_sbuffer *sb = w->sb;
	size_t want = sb->alloc ? sb->alloc : MSGPACK_SBUFFER_INIT_SIZE;
	char *p;

	if (n > SIZE_MAX - sb->size)
		goto fail;
	while (want < sb->size + n) {
		if (want > SIZE_MAX / 2)
			goto fail;
		want *= 2;
	}
	/* realloc: msgpack_sbuffer_destroy() frees with free(). */
	p = realloc(sb->data, want);
	if (p == NULL)
		goto fail;
	sb->data = p;
	sb->alloc = want;
	return 0;
fail:
	w->err = FY_ENOMEM;
	return -1;
}

/* Room for n more bytes, or NULL (error recorded). */
static inline uint8_t *
room(struct w *w, size_t n)
{
	if (w->err)
		return NULL;
	if (w->sb->alloc - w->sb->size < n && grow(w, n))
		return NULL;
	return (uint8_t *)w->sb->data + w->sb->size;
}

static inline void
put_be(uint8_t *q, uint64_t v, int n)
{
	while (n--) {
		q[n] = (uint8_t)v;
		v >>= 8;
	}
}

/* A tag byte followed by an n-byte big-endian value (n may be 0). */
static void
put_tag(struct w *w, uint8_t tag, uint64_t v, int n)
{
	uint8_t *q = room(w, 1 + (size_t)n);

	if (q == NULL)
		return;
	q[0] = tag;
	put_be(q + 1, v, n);
	w->sb->size += 1 + (size_t)n;
}

static void
put_uint(struct w *w, uint64_t v)
{
	if (v < 0x80)
		put_tag(w, (uint8_t)v, 0, 0);
	else if (v <= UINT8_MAX)
		put_tag(w, 0xcc, v, 1);
	else if (v <= UINT16_MAX)
		put_tag(w, 0xcd, v, 2);
	else if (v <= UINT32_MAX)
		put_tag(w, 0xce, v, 4);
	else
		put_tag(w, 0xcf, v, 8);
}

static void
put_map(struct w *w, uint32_t n)
{
	if (n < 16)
		put_tag(w, (uint8_t)(0x80 | n), 0, 0);
	else if (n <= UINT16_MAX)
		put_tag(w, 0xde, n, 2);
	else
		put_tag(w, 0xdf, n, 4);
}

static void
put_array(struct w *w, uint32_t n)
{
	if (n < 16)
		put_tag(w, (uint8_t)(0x90 | n), 0, 0);
	else if (n <= UINT16_MAX)
		put_tag(w, 0xdc, n, 2);
	else
		put_tag(w, 0xdd, n, 4);
}

static void
put_raw(struct w *w, const void *p, size_t n)
{
	uint8_t *q = room(w, n);

	if (q == NULL || n == 0)
		return;
	memcpy(q, p, n);
	w->sb->size += n;
}

static void
put_str(struct w *w, const char *p, uint32_t n)
{
	if (n < 32)
		put_tag(w, (uint8_t)(0xa0 | n), 0, 0);
	else if (n <= UINT8_MAX)
		put_tag(w, 0xd9, n, 1);
	else if (n <= UINT16_MAX)
		put_tag(w, 0xda, n, 2);
	else
		put_tag(w, 0xdb, n, 4);
	put_raw(w, p, n);
}

static void
put_fstr(struct w *w, const struct fy_str *s)
{
	put_str(w, s->p, s->len);
}

static void
put_bin_hdr(struct w *w, uint32_t n)
{
	if (n <= UINT8_MAX)
		put_tag(w, 0xc4, n, 1);
	else if (n <= UINT16_MAX)
		put_tag(w, 0xc5, n, 2);
	else
		put_tag(w, 0xc6, n, 4);
}

/* Keys are literals shorter than 32 bytes: a fixstr, one reservation. */
static void
put_key(struct w *w, const char *p, size_t n)
{
	uint8_t *q = room(w, 1 + n);

	if (q == NULL)
		return;
	q[0] = (uint8_t)(0xa0 | n);
	memcpy(q + 1, p, n);
	w->sb->size += 1 + n;
}

#define KEY(w, lit) put_key(w, lit, sizeof(lit) - 1)

/* Optional keys: written only when set. */
#define OPT_STR(w, lit, s)						\
	do {								\
		if ((s).len > 0) {					\
			KEY(w, lit);					\
			put_fstr(w, &(s));				\
		}							\
	} while (0)
#define OPT_UINT(w, lit, v)						\
	do {								\
		if ((v) != 0) {						\
			KEY(w, lit);					\
			put_uint(w, v);					\
		}							\
	} while (0)

static void
put_hdr(struct w *w, const struct fy_kv *kv, uint32_t n)
{
	uint32_t i;

	KEY(w, "hdr");
	put_map(w, n);
	for (i = 0; i < n; i++) {
		put_fstr(w, &kv[i].k);
		put_fstr(w, &kv[i].v);
	}
}

/* Any of the delivery options set?  One test for the common message
 * that has none. */
static inline int
pubmsg_opts(const struct fy_pubmsg *m)
{
	return (m->delay_ms | m->ttl_ms | m->pseq | m->reply_to.len |
	    m->corr.len | m->pid.len) != 0;
}

/*
 * The message keys of a PUB (single, at top level, or one map of "msgs"),
 * body last.  The map header is the caller's; returns the key count so it
 * can be computed before writing.
 */
static uint32_t
pubmsg_nkeys(const struct fy_pubmsg *m)
{
	uint32_t n = 1 + (m->id.len > 0) + (m->nhdr > 0);

	if (pubmsg_opts(m))
		n += (m->delay_ms != 0) + (m->ttl_ms != 0) +
		    (m->reply_to.len > 0) + (m->corr.len > 0) +
		    (m->pid.len > 0) + (m->pseq != 0);
	return n;
}

static void
put_pubmsg(struct w *w, const struct fy_pubmsg *m, int nobody)
{
	if (m->id.len > 0) {
		KEY(w, "id");
		put_fstr(w, &m->id);
	}
	if (m->nhdr > 0)
		put_hdr(w, m->hdr, m->nhdr);
	if (pubmsg_opts(m)) {
		OPT_UINT(w, "delay", m->delay_ms);
		OPT_UINT(w, "ttl", m->ttl_ms);
		OPT_STR(w, "reply_to", m->reply_to);
		OPT_STR(w, "corr", m->corr);
		OPT_STR(w, "pid", m->pid);
		OPT_UINT(w, "seq", m->pseq);
	}
	KEY(w, "body");
	put_bin_hdr(w, m->body.len);
	if (!nobody)
		put_raw(w, m->body.p, m->body.len);
}

static void
put_hist(struct w *w, const struct fy_hist *h, uint32_t n)
{
	uint32_t i;

	KEY(w, "hist");
	put_array(w, n);
	for (i = 0; i < n; i++) {
		put_map(w, 2 + (h[i].error.len > 0) + (h[i].consumer.len > 0));
		KEY(w, "c");
		put_fstr(w, &h[i].cause);
		if (h[i].error.len > 0) {
			KEY(w, "e");
			put_fstr(w, &h[i].error);
		}
		if (h[i].consumer.len > 0) {
			KEY(w, "by");
			put_fstr(w, &h[i].consumer);
		}
		KEY(w, "at");
		put_uint(w, h[i].at);
	}
}

/* "key": [rows...], each row a map of its set fields (see get_rows()). */
static void
put_rows(struct w *w, const char *key, size_t klen, const void *rows,
    uint32_t n, size_t size, const struct rowfield *fd, size_t nfd)
{
	const char *row, *p;
	uint32_t i, nk;
	size_t j;

	put_key(w, key, klen);
	put_array(w, n);
	for (i = 0; i < n; i++) {
		row = (const char *)rows + (size_t)i * size;
		nk = 0;
		for (j = 0; j < nfd; j++) {
			p = row + fd[j].off;
			switch (fd[j].kind) {
			case F_STR:
				nk += ((const struct fy_str *)p)->len > 0;
				break;
			case F_U64:
				nk += *(const uint64_t *)p != 0;
				break;
			default:
				nk += *(const uint32_t *)p != 0;
				break;
			}
		}
		put_map(w, nk);
		for (j = 0; j < nfd; j++) {
			p = row + fd[j].off;
			switch (fd[j].kind) {
			case F_STR:
				if (((const struct fy_str *)p)->len == 0)
					continue;
				put_key(w, fd[j].key, fd[j].klen);
				put_fstr(w, (const struct fy_str *)p);
				break;
			case F_U64:
				if (*(const uint64_t *)p == 0)
					continue;
				put_key(w, fd[j].key, fd[j].klen);
				put_uint(w, *(const uint64_t *)p);
				break;
			default:
				if (*(const uint32_t *)p == 0)
					continue;
				put_key(w, fd[j].key, fd[j].klen);
				put_uint(w, *(const uint32_t *)p);
				break;
			}
		}
	}
}

#define ROWS(w, lit, rows, n, fd)					\
	put_rows(w, lit, sizeof(lit) - 1, rows, n, sizeof(*(rows)), fd,	\
	    ARRAY_LEN(fd))

/* Map header plus "t" and "rid", common to every frame. */
static void
put_head(struct w *w, const struct fy_frame *f, uint32_t nkeys)
{
	put_map(w, nkeys + 1 + (f->rid != 0));
	KEY(w, "t");
	put_uint(w, (uint64_t)f->type);
	if (f->rid != 0) {
		KEY(w, "rid");
		put_uint(w, f->rid);
	}
}

/* The frame-wide keys of a PUB, before its message keys. */
static void
put_pub_head(struct w *w, const struct fy_frame *f)
{
	KEY(w, "topic");
	put_fstr(w, &f->pub.topic);
	OPT_STR(w, "group", f->pub.group);
	if (f->pub.mandatory) {
		KEY(w, "mandatory");
		put_tag(w, 0xc3, 0, 0);
	}
}

static int
encode(struct fy_enc *e, const struct fy_frame *f, int nobody)
{
	struct w w = { &e->sb, 0 };
	size_t start = e->sb.size;
	uint64_t plen;
	uint32_t bodylen = 0, i, n;
	const struct fy_pubmsg *pm;

	if (nobody && !(f->type == FY_T_MSG ||
	    (f->type == FY_T_PUB && f->pub.nmsgs == 1)))
		return FY_EPROTO;
	/* Frames the struct cannot describe: refuse before writing. */
	if (f->type == FY_T_PUB && (f->pub.msgs == NULL || f->pub.nmsgs == 0))
		return FY_EPROTO;
	if (f->type == FY_T_ACK && (f->ack.leases == NULL ||
	    f->ack.nleases == 0))
		return FY_EPROTO;
	/* Reserve the length header; patched once the size is known. */
	if (room(&w, FY_HDR_LEN) == NULL)
		return w.err;
	e->sb.size += FY_HDR_LEN;

	switch (f->type) {
	case FY_T_HELLO:
		put_head(&w, f, 1 + (f->hello.name.len > 0));
		KEY(&w, "v");
		put_uint(&w, f->hello.version);
		OPT_STR(&w, "name", f->hello.name);
		break;
	case FY_T_PUB:
		pm = f->pub.msgs;
		n = 1 + (f->pub.group.len > 0) + (f->pub.mandatory != 0);
		if (f->pub.nmsgs == 1) {
			put_head(&w, f, n + pubmsg_nkeys(pm));
			put_pub_head(&w, f);
			put_pubmsg(&w, pm, nobody);
			bodylen = pm->body.len;
			break;
		}
		put_head(&w, f, n + 1);
		put_pub_head(&w, f);
		KEY(&w, "msgs");
		put_array(&w, f->pub.nmsgs);
		for (i = 0; i < f->pub.nmsgs; i++) {
			put_map(&w, pubmsg_nkeys(&pm[i]));
			put_pubmsg(&w, &pm[i], 0);
		}
		break;
	case FY_T_SUB:
		put_head(&w, f, 1 + (f->sub.group.len > 0) +
		    (f->sub.prefetch != 0) + (f->sub.mode != 0) +
		    (f->sub.ack_timeout_ms != 0) +
		    (f->sub.max_attempts != 0) + (f->sub.ephemeral != 0) +
		    (f->sub.ttl_ms != 0) + (f->sub.ttl_drop != 0) +
		    (f->sub.max_msgs != 0) + (f->sub.max_bytes != 0) +
		    (f->sub.overflow != 0));
		KEY(&w, "topic");
		put_fstr(&w, &f->sub.topic);
		OPT_STR(&w, "group", f->sub.group);
		OPT_UINT(&w, "prefetch", f->sub.prefetch);
		OPT_UINT(&w, "mode", f->sub.mode);
		OPT_UINT(&w, "ack_timeout", f->sub.ack_timeout_ms);
		OPT_UINT(&w, "max_attempts", f->sub.max_attempts);
		if (f->sub.ephemeral) {
			KEY(&w, "ephemeral");
			put_tag(&w, 0xc3, 0, 0);
		}
		OPT_UINT(&w, "ttl", f->sub.ttl_ms);
		if (f->sub.ttl_drop) {
			KEY(&w, "ttl_drop");
			put_tag(&w, 0xc3, 0, 0);
		}
		OPT_UINT(&w, "max_msgs", f->sub.max_msgs);
		OPT_UINT(&w, "max_bytes", f->sub.max_bytes);
		OPT_UINT(&w, "overflow", f->sub.overflow);
		break;
	case FY_T_UNSUB:
		put_head(&w, f, 1);
		KEY(&w, "sid");
		put_uint(&w, f->unsub.sid);
		break;
	case FY_T_ACK:
		put_head(&w, f, 2);
		KEY(&w, "sid");
		put_uint(&w, f->ack.sid);
		if (f->ack.nleases == 1) {
			KEY(&w, "lease");
			put_uint(&w, f->ack.leases[0]);
			break;
		}
		KEY(&w, "leases");
		put_array(&w, f->ack.nleases);
		for (i = 0; i < f->ack.nleases; i++)
			put_uint(&w, f->ack.leases[i]);
		break;
	case FY_T_NACK:
		put_head(&w, f, 2 + (f->nack.has_delay != 0) +
		    (f->nack.error.len > 0));
		KEY(&w, "sid");
		put_uint(&w, f->nack.sid);
		KEY(&w, "lease");
		put_uint(&w, f->nack.lease);
		/* delay 0 (redeliver now) differs from no delay (backoff). */
		if (f->nack.has_delay) {
			KEY(&w, "delay");
			put_uint(&w, f->nack.delay_ms);
		}
		OPT_STR(&w, "error", f->nack.error);
		break;
	case FY_T_TOUCH:
		put_head(&w, f, 2);
		KEY(&w, "sid");
		put_uint(&w, f->touch.sid);
		KEY(&w, "lease");
		put_uint(&w, f->touch.lease);
		break;
	case FY_T_DELETE:
		put_head(&w, f, 1 + (f->del.group.len > 0));
		KEY(&w, "topic");
		put_fstr(&w, &f->del.topic);
		OPT_STR(&w, "group", f->del.group);
		break;
	case FY_T_PING:
		put_head(&w, f, 0);
		break;
	case FY_T_STATS:
		put_head(&w, f, f->query.topic.len > 0);
		OPT_STR(&w, "topic", f->query.topic);
		break;
	case FY_T_INFLIGHT:
	case FY_T_PEEK:
		put_head(&w, f, 1 + (f->query.group.len > 0));
		KEY(&w, "topic");
		put_fstr(&w, &f->query.topic);
		OPT_STR(&w, "group", f->query.group);
		break;
	case FY_T_TRACE:
		put_head(&w, f, 1);
		KEY(&w, "id");
		put_fstr(&w, &f->query.id);
		break;
	case FY_T_WELCOME:
		put_head(&w, f, 1 + (f->welcome.server.len > 0) +
		    (f->welcome.session.len > 0) +
		    (f->welcome.max_frame != 0) + (f->welcome.max_msg != 0));
		KEY(&w, "v");
		put_uint(&w, f->welcome.version);
		OPT_STR(&w, "server", f->welcome.server);
		OPT_STR(&w, "session", f->welcome.session);
		OPT_UINT(&w, "max_frame", f->welcome.max_frame);
		OPT_UINT(&w, "max_msg", f->welcome.max_msg);
		break;
	case FY_T_OK:
		put_head(&w, f, (f->ok.sid != 0) + (f->ok.group.len > 0) +
		    (f->ok.nids > 0) + (f->ok.dur != 0) + (f->ok.dups != 0) +
		    (f->ok.nstats > 0) + (f->ok.ninflight > 0) +
		    (f->ok.nevents > 0));
		OPT_UINT(&w, "sid", f->ok.sid);
		OPT_STR(&w, "group", f->ok.group);
		if (f->ok.nids > 0) {
			KEY(&w, "ids");
			put_array(&w, f->ok.nids);
			for (i = 0; i < f->ok.nids; i++)
				put_fstr(&w, &f->ok.ids[i]);
		}
		OPT_UINT(&w, "dur", f->ok.dur);
		OPT_UINT(&w, "dups", f->ok.dups);
		if (f->ok.nstats > 0)
			ROWS(&w, "stats", f->ok.stats, f->ok.nstats,
			    gstat_fields);
		if (f->ok.ninflight > 0)
			ROWS(&w, "inflight", f->ok.inflight, f->ok.ninflight,
			    lease_fields);
		if (f->ok.nevents > 0)
			ROWS(&w, "events", f->ok.events, f->ok.nevents,
			    event_fields);
		break;
	case FY_T_ERR:
		put_head(&w, f, 1 + (f->err.msg.len > 0) + (f->err.sid != 0));
		KEY(&w, "code");
		put_uint(&w, f->err.code);
		OPT_STR(&w, "msg", f->err.msg);
		OPT_UINT(&w, "sid", f->err.sid);
		break;
	case FY_T_MSG:
		put_head(&w, f, 3 + (f->msg.topic.len > 0) +
		    (f->msg.lease != 0) + (f->msg.attempt != 0) +
		    (f->msg.ts != 0) + (f->msg.nhdr > 0) +
		    (f->msg.nhist > 0) + (f->msg.reply_to.len > 0) +
		    (f->msg.corr.len > 0));
		KEY(&w, "sid");
		put_uint(&w, f->msg.sid);
		KEY(&w, "id");
		put_fstr(&w, &f->msg.id);
		OPT_STR(&w, "topic", f->msg.topic);
		OPT_UINT(&w, "lease", f->msg.lease);
		OPT_UINT(&w, "att", f->msg.attempt);
		OPT_UINT(&w, "ts", f->msg.ts);
		if (f->msg.nhdr > 0)
			put_hdr(&w, f->msg.hdr, f->msg.nhdr);
		if (f->msg.nhist > 0)
			put_hist(&w, f->msg.hist, f->msg.nhist);
		OPT_STR(&w, "reply_to", f->msg.reply_to);
		OPT_STR(&w, "corr", f->msg.corr);
		/* Last, so that fy_encode_nobody() can stop at its header. */
		KEY(&w, "body");
		put_bin_hdr(&w, f->msg.body.len);
		if (!nobody)
			put_raw(&w, f->msg.body.p, f->msg.body.len);
		bodylen = f->msg.body.len;
		break;
	default:
		e->sb.size = start;
		return FY_EPROTO;
	}

	plen = e->sb.size - start - FY_HDR_LEN;
	if (nobody)
		plen += bodylen;
	if (w.err == 0 && plen > UINT32_MAX)
		w.err = FY_ETOOBIG;
	if (w.err != 0) {
		e->sb.size = start;	/* no partial frame left behind */
		return w.err;
	}
	fy_frame_put_len((uint8_t *)e->sb.data + start, (uint32_t)plen);
	return FY_OK;
}

void
fy_enc_init(struct fy_enc *e)
{
	msgpack_sbuffer_init(&e->sb);
	msgpack_packer_init(&e->pk, &e->sb, msgpack_sbuffer_write);
}

void
fy_enc_fini(struct fy_enc *e)
{
	msgpack_sbuffer_destroy(&e->sb);
	msgpack_sbuffer_init(&e->sb);
}

void
fy_enc_clear(struct fy_enc *e)
{
	msgpack_sbuffer_clear(&e->sb);
}

int
fy_encode(struct fy_enc *e, const struct fy_frame *f)
{
	return encode(e, f, 0);
}

int
fy_encode_nobody(struct fy_enc *e, const struct fy_frame *f)
{
	return encode(e, f, 1);
}
