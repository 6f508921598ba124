/*
 * codec.c - ferry frames to and from msgpack.  See codec.h and PROTOCOL.md.
 *
 * Decoding reads the payload in place, without building msgpack-c's
 * object tree: that tree, and the walks over it, cost more than all the
 * rest of handling a message.  Pass 1 reads every byte of the root map,
 * checking its structure, and lists its pairs with a known key and a
 * non-nil value, each value's header already read (a uint is read whole,
 * a str is a span).  Pass 2 turns the list into struct fy_frame.  Two
 * passes, because "t" and "rid" decide how to read the rest and may come
 * last, and because a malformed payload must be FY_EPROTO even where a
 * field before the damage is already wrong.  Only arrays come from the
 * zone; no count is trusted beyond the bytes that could back it.
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
 * Deepest nesting of containers, empty or not (the root map is at level
 * 1), as PROTOCOL.md section 3 states it.  Frames need 4 (root map,
 * "msgs", a message map, its "hdr"); the rest leaves room for unknown
 * keys.
 */
#define MAX_DEPTH 16

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
	[FY_E_IDLE] = "E_IDLE",
	[FY_E_DENIED] = "E_DENIED",
	[FY_E_SLOW] = "E_SLOW",
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
	case FY_E_IDLE:
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

	if (p == NULL || len == 0 || len > FY_NAME_DLQ_MAX)
		return 0;
	/* Longer than FY_NAME_MAX only as the dead-letter topic of a name
	 * that is not, so that every valid topic can dead-letter. */
	if (len > FY_NAME_MAX && memcmp(p + len - 4, ".dlq", 4) != 0)
		return 0;
	for (i = 0; i < len; i++)
		if (!name_ok[(unsigned char)p[i]])
			return 0;
	return 1;
}

/* Bytes of the well-formed UTF-8 character at p[0..n), or 0 if there is
 * none (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF). */
static size_t
utf8_char(const uint8_t *p, size_t n)
{
	uint8_t lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] < 0xc2 || p[0] > 0xf4)
		return 0;
	len = p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

size_t
fy_utf8_clean(char *dst, size_t cap, const char *src, size_t len)
{
	static const char repl[] = "\xef\xbf\xbd";	/* U+FFFD */
	const uint8_t *p = (const uint8_t *)src;
	size_t i = 0, o = 0, n;

	while (i < len) {
		const char *c = src + i;

		if ((n = utf8_char(p + i, len - i)) == 0) {
			c = repl;	/* one byte that starts nothing */
			n = 3;
			i++;
		} else {
			i += n;
		}
		if (o + n > cap)
			break;		/* cut before a character, never in */
		memcpy(dst + o, c, n);
		o += n;
	}
	return o;
}

/* ------------------------------------------------------------------ */
/* Reading msgpack */

/* What a value is, as far as frames care.  Containers last: see
 * skip_val(). */
enum vtype {
	V_NIL, V_BOOL, V_UINT, V_NINT, V_FLOAT, V_STR, V_BIN, V_EXT,
	V_ARRAY, V_MAP
};

/* A value as rd_val() leaves it. */
struct val {
	uint8_t type;		/* enum vtype */
	uint64_t u;		/* V_UINT, V_BOOL: the value; V_STR, V_BIN:
				   the length; V_ARRAY: items; V_MAP: pairs */
	const uint8_t *p;	/* V_STR, V_BIN: the bytes; V_ARRAY, V_MAP:
				   the first item */
};

/* A cursor over the payload; p <= end. */
struct rd {
	const uint8_t *p, *end;
};

/* A big-endian field of n = 1, 2, 4 or 8 bytes. */
static inline uint64_t
be(const uint8_t *p, size_t n)
{
	switch (n) {
	case 1:
		return p[0];
	case 2:
		return (uint64_t)p[0] << 8 | p[1];
	case 4:
		return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 |
		    (uint64_t)p[2] << 8 | p[3];
	default:
		return be(p, 4) << 32 | be(p + 4, 4);
	}
}

/* rd_val() for any format. */
static int
rd_any(struct rd *r, struct val *v)
{
	const uint8_t *p = r->p;
	size_t left = (size_t)(r->end - p);
	size_t lenb;		/* bytes of a length or value field */
	uint64_t n;		/* bytes of a span, or items */
	uint8_t b;

	if (left == 0)
		return -1;
	b = *p++;
	left--;
	if (b <= 0x7f) {			/* positive fixint */
		v->type = V_UINT;
		v->u = b;
		goto done;
	}
	if (b >= 0xe0) {			/* negative fixint */
		v->type = V_NINT;
		goto done;
	}
	if (b <= 0x8f) {
		v->type = V_MAP;
		n = b & 0x0f;
		goto container;
	}
	if (b <= 0x9f) {
		v->type = V_ARRAY;
		n = b & 0x0f;
		goto container;
	}
	if (b <= 0xbf) {
		v->type = V_STR;
		n = b & 0x1f;
		goto span;
	}
	switch (b) {
	case 0xc0:
		v->type = V_NIL;
		goto done;
	case 0xc2:
	case 0xc3:
		v->type = V_BOOL;
		v->u = b & 1;
		goto done;
	case 0xcc: case 0xcd: case 0xce: case 0xcf:
		lenb = (size_t)1 << (b - 0xcc);
		if (lenb > left)
			return -1;
		v->type = V_UINT;
		v->u = be(p, lenb);
		p += lenb;
		goto done;
	case 0xd0: case 0xd1: case 0xd2: case 0xd3:
		lenb = (size_t)1 << (b - 0xd0);
		if (lenb > left)
			return -1;
		/* As msgpack-c did: a signed format holding a value >= 0
		 * is a uint, since some packers write small ints so. */
		v->type = p[0] & 0x80 ? V_NINT : V_UINT;
		v->u = be(p, lenb);
		p += lenb;
		goto done;
	case 0xca:
	case 0xcb:
		n = b == 0xca ? 4 : 8;
		v->type = V_FLOAT;
		goto span;
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
		n = 1 + ((uint64_t)1 << (b - 0xd4));	/* type, data */
		v->type = V_EXT;
		goto span;
	case 0xc4: case 0xc5: case 0xc6:
		lenb = (size_t)1 << (b - 0xc4);
		v->type = V_BIN;
		break;
	case 0xd9: case 0xda: case 0xdb:
		lenb = (size_t)1 << (b - 0xd9);
		v->type = V_STR;
		break;
	case 0xc7: case 0xc8: case 0xc9:
		lenb = (size_t)1 << (b - 0xc7);
		v->type = V_EXT;
		break;
	case 0xdc:
	case 0xdd:
		lenb = b == 0xdc ? 2 : 4;
		v->type = V_ARRAY;
		break;
	case 0xde:
	case 0xdf:
		lenb = b == 0xde ? 2 : 4;
		v->type = V_MAP;
		break;
	default:
		return -1;			/* 0xc1 */
	}
	/* The formats with a length field. */
	if (lenb > left)
		return -1;
	n = be(p, lenb);
	p += lenb;
	left -= lenb;
	if (v->type == V_EXT)
		n++;				/* its type byte */
	else if (v->type >= V_ARRAY)
		goto container;
span:
	if (n > left)
		return -1;
	v->u = n;
	v->p = p;
	p += n;
	goto done;
container:
	if (n > (v->type == V_MAP ? left / 2 : left))
		return -1;
	v->u = n;
	v->p = p;
done:
	r->p = p;
	return 0;
}

/*
 * Read one value at r->p into *v and move past it: past all of it for a
 * scalar, str, bin or ext, past the header only for an array or a map
 * (see skip_val()).  -1 if malformed: truncated, the reserved byte 0xc1,
 * or a container claiming more items than the bytes left could hold
 * (each takes one at least), which bounds every count by the payload.
 * Inline for the formats of nearly every key and number.
 */
static inline int
rd_val(struct rd *r, struct val *v)
{
	const uint8_t *p = r->p;
	size_t left = (size_t)(r->end - p), n;
	uint8_t b;

	if (left == 0)
		return -1;
	b = *p;
	if (b <= 0x7f) {				/* positive fixint */
		v->type = V_UINT;
		v->u = b;
		r->p = p + 1;
		return 0;
	}
	if ((b & 0xe0) == 0xa0 && (n = b & 0x1f) < left) {	/* fixstr */
		v->type = V_STR;
		v->u = n;
		v->p = p + 1;
		r->p = p + 1 + n;
		return 0;
	}
	if ((b & 0xfc) == 0xcc && (n = (size_t)1 << (b & 3)) < left) {
		v->type = V_UINT;			/* uint 8 to 64 */
		v->u = be(p + 1, n);
		r->p = p + 1 + n;
		return 0;
	}
	return rd_any(r, v);
}

/*
 * Skip the items, from p on, of the non-empty container at level lvl
 * whose header rd_val() read into *v.  Returns the end of the container,
 * or NULL if malformed or nested too deep: no container may sit at a
 * level above MAX_DEPTH.  No recursion: one count of items left per open
 * container.
 */
static const uint8_t *
skip_items(const uint8_t *p, const uint8_t *end, const struct val *v,
    int lvl)
{
	struct rd r = { p, end };
	uint64_t left[MAX_DEPTH + 1];
	struct val x;
	int top = lvl;

	if (lvl > MAX_DEPTH)
		return NULL;
	left[top] = v->type == V_MAP ? 2 * v->u : v->u;
	for (;;) {
		while (left[top] == 0) {
			if (top == lvl)
				return r.p;
			top--;
		}
		left[top]--;
		if (rd_val(&r, &x))
			return NULL;
		if (x.type >= V_ARRAY && top + 1 > MAX_DEPTH)
			return NULL;	/* even an empty one */
		if (x.type >= V_ARRAY && x.u > 0) {
			top++;
			left[top] = x.type == V_MAP ? 2 * x.u : x.u;
		}
	}
}

/* Skip what is left of the value at level lvl that rd_val() read into
 * *v.  r is not passed on, so that callers can keep it in registers. */
static inline int
skip_val(struct rd *r, const struct val *v, int lvl)
{
	const uint8_t *p;

	if (v->type < V_ARRAY)
		return 0;
	if (lvl > MAX_DEPTH)
		return -1;	/* a container too deep, even an empty one */
	if (v->u == 0)
		return 0;
	if ((p = skip_items(r->p, r->end, v, lvl)) == NULL)
		return -1;
	r->p = p;
	return 0;
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
	K_OVERFLOW, K_INFLIGHT, K_MANDATORY, K_MAX_BYTES, K_BOOT, K_IDLE,
	K_MECH, K_SASL, K_USER,
	K_BROKER,
	K_COUNT		/* HAS() needs K_COUNT <= 64 */
};

#define IS(lit) (memcmp(p, lit, sizeof(lit) - 1) == 0)

/* Map a key to its enum by length first, so most keys cost one memcmp. */
static enum key
key_id(const struct val *k)
{
	const char *p;

	if (k->type != V_STR)
		return K_NONE;
	p = (const char *)k->p;
	switch (k->u) {
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
		if (IS("boot")) return K_BOOT;
		if (IS("idle")) return K_IDLE;
		if (IS("mech")) return K_MECH;
		if (IS("sasl")) return K_SASL;
		if (IS("user")) return K_USER;
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
		if (IS("broker")) return K_BROKER;
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

/* One decode: the zone for arrays, the payload's end, and where a
 * failing field's name goes (see fy_decode()). */
struct dctx {
	msgpack_zone *zone;
	const uint8_t *end;	/* of the payload */
	const char *field;
};

static int
bad(struct dctx *c, const char *field)
{
	c->field = field;
	return FY_EFIELD;
}

/* A cursor at the first item of a container value. */
static struct rd
items(struct dctx *c, const struct val *v)
{
	struct rd r = { v->p, c->end };

	return r;
}

/* Typed getters: 0, or -1 for a wrong type or range. */

static int
get_u64(const struct val *v, uint64_t *u)
{
	if (v->type != V_UINT)
		return -1;
	*u = v->u;
	return 0;
}

static int
get_u32(const struct val *v, uint32_t *u)
{
	if (v->type != V_UINT || v->u > UINT32_MAX)
		return -1;
	*u = (uint32_t)v->u;
	return 0;
}

/* str32 bounds the length, so it fits len. */
static int
get_str(const struct val *v, struct fy_str *s)
{
	if (v->type != V_STR)
		return -1;
	s->p = (const char *)v->p;
	s->len = (uint32_t)v->u;
	return 0;
}

/* Bodies are bin; str is accepted too, for clients that cannot tell. */
static int
get_body(const struct val *v, struct fy_str *s)
{
	if (v->type != V_BIN && v->type != V_STR)
		return -1;
	s->p = (const char *)v->p;
	s->len = (uint32_t)v->u;
	return 0;
}

static int
get_bool(const struct val *v, uint8_t *b)
{
	if (v->type != V_BOOL)
		return -1;
	*b = (uint8_t)v->u;
	return 0;
}

static void *
zalloc(struct dctx *c, size_t n, size_t size)
{
	/* n is bounded by the payload length (see rd_val()), but a 32-bit
	 * size_t could still overflow. */
	if (n > SIZE_MAX / size)
		return NULL;
	return msgpack_zone_malloc(c->zone, n * size);
}

/* A listed pair: a known key with a non-nil value. */
struct ent {
	struct val v;
	enum key k;
};

/* Listed pairs kept on the stack: more than any frame type's own keys
 * (13 for PUB); only repeated keys, or those of other types, need more. */
#define NENT 32

/* A map's listed pairs, in order. */
struct map {
	const struct ent *ent;
	uint32_t n;
};

/*
 * Read the pairs (at level lvl) of the map whose header rd_val() just
 * read into *mv, and list those with a known key and a non-nil value (nil
 * is how many msgpack libraries spell "absent").  buf holds NENT; a map
 * with more gets room for all its pairs from the zone.  With t and rid
 * (the root map), those two keys are set aside instead, the last one
 * winning, nil or not.
 */
static int
list_map(struct dctx *c, struct rd *r, const struct val *mv, int lvl,
    struct ent *buf, struct map *m, struct val *t, struct val *rid)
{
	struct ent *a = buf;
	struct rd cur = *r;	/* a copy the compiler can keep in registers */
	struct val k, v;
	uint64_t i, pairs = mv->u;
	uint32_t n = 0;
	enum key id;

	for (i = 0; i < pairs; i++) {
		if (rd_val(&cur, &k) || skip_val(&cur, &k, lvl) ||
		    rd_val(&cur, &v) || skip_val(&cur, &v, lvl))
			return FY_EPROTO;
		if ((id = key_id(&k)) == K_NONE)
			continue;
		if (t != NULL && id == K_T) {
			*t = v;
			continue;
		}
		if (t != NULL && id == K_RID) {
			*rid = v;
			continue;
		}
		if (v.type == V_NIL)
			continue;
		if (n == NENT && a == buf) {
			a = zalloc(c, (size_t)pairs, sizeof(*a));
			if (a == NULL)
				return FY_ENOMEM;
			memcpy(a, buf, NENT * sizeof(*a));
		}
		a[n].v = v;
		a[n].k = id;
		n++;
	}
	r->p = cur.p;
	m->ent = a;
	m->n = n;
	return FY_OK;
}

/* Go through a map's listed pairs. */
#define FOR_KEYS(m, e, k, v)						\
	for (e = (m)->ent; e < (m)->ent + (m)->n &&			\
	    (k = e->k, v = &e->v, 1); e++)

/* List the map at r, an item of the array name whose maps have their
 * pairs at level lvl.  FY_EFIELD (name) if the item is not a map. */
static int
next_map(struct dctx *c, struct rd *r, int lvl, const char *name,
    struct ent *buf, struct map *m)
{
	struct val mv;

	if (rd_val(r, &mv))
		return FY_EPROTO;
	if (mv.type != V_MAP)
		return bad(c, name);
	return list_map(c, r, &mv, lvl, buf, m, NULL, NULL);
}

/* "hdr": a map of str -> str. */
static int
get_hdr(struct dctx *c, const struct val *o, struct fy_kv **kv,
    uint32_t *n)
{
	struct fy_kv *a;
	struct val k, v;
	struct rd r;
	uint32_t i;

	if (o->type != V_MAP)
		return bad(c, "hdr");
	*kv = NULL;
	*n = 0;
	if (o->u == 0)
		return FY_OK;
	a = zalloc(c, (size_t)o->u, sizeof(*a));
	if (a == NULL)
		return FY_ENOMEM;
	r = items(c, o);
	for (i = 0; i < o->u; i++) {
		if (rd_val(&r, &k))
			return FY_EPROTO;
		if (get_str(&k, &a[i].k))
			return bad(c, "hdr");
		if (rd_val(&r, &v))
			return FY_EPROTO;
		if (get_str(&v, &a[i].v))
			return bad(c, "hdr");
	}
	*kv = a;
	*n = (uint32_t)o->u;
	return FY_OK;
}

/*
 * One of a message's own keys (body, id, hdr, delay, ttl, reply_to, corr,
 * pid, seq), shared by single PUB and the maps in "msgs".  Returns FY_OK
 * or an error; sets *seen_body on body.  pubmsg_end() checks the message
 * once all its keys are read.
 */
static int
pubmsg_key(struct dctx *c, enum key k, const struct val *v,
    struct fy_pubmsg *m, int *seen_body)
{
	switch (k) {
	case K_BODY:
		if (get_body(v, &m->body))
			return bad(c, "body");
		*seen_body = 1;
		return FY_OK;
	case K_ID:
		/* Present means given: "" is not "absent" (nil is). */
		if (get_str(v, &m->id) || m->id.len == 0 ||
		    m->id.len > FY_ID_MAX)
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

/* Bits for required keys seen. */
#define HAS(k) ((uint64_t)1 << (k))
_Static_assert(K_COUNT <= 64, "enum key must fit HAS()'s bits");

/* The keys of struct fy_pubmsg: at the top level of a single PUB only. */
#define PUBMSG_KEYS (HAS(K_BODY) | HAS(K_ID) | HAS(K_HDR) | HAS(K_DELAY) | \
	HAS(K_TTL) | HAS(K_REPLY_TO) | HAS(K_CORR) | HAS(K_PID) | HAS(K_SEQ))

static int
dec_hello(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
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
		case K_MECH:
			if (get_str(v, &f->hello.mech))
				return bad(c, "mech");
			break;
		case K_SASL:
			if (get_str(v, &f->hello.sasl))
				return bad(c, "sasl");
			break;
		default:
			break;
		}
	}
	if (!(seen & HAS(K_V)))
		return bad(c, "v");
	/* A mechanism and its first message come together. */
	if ((f->hello.mech.len > 0) != (f->hello.sasl.len > 0))
		return bad(c, f->hello.mech.len ? "sasl" : "mech");
	return FY_OK;
}

/* AUTH and CHALLENGE: one required "sasl" str. */
static int
dec_auth(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
	enum key k;

	FOR_KEYS(m, e, k, v) {
		if (k == K_SASL && get_str(v, &f->auth.sasl))
			return bad(c, "sasl");
	}
	if (f->auth.sasl.len == 0)
		return bad(c, "sasl");
	return FY_OK;
}

static int
dec_pub(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v, *msgs = NULL;
	struct ent buf[NENT];
	struct map mm;
	struct rd r2;
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
	if (msgs->type != V_ARRAY || msgs->u == 0)
		return bad(c, "msgs");
	f->pub.nmsgs = (uint32_t)msgs->u;
	f->pub.msgs = zalloc(c, f->pub.nmsgs, sizeof(*f->pub.msgs));
	if (f->pub.msgs == NULL)
		return FY_ENOMEM;
	memset(f->pub.msgs, 0, f->pub.nmsgs * sizeof(*f->pub.msgs));
	r2 = items(c, msgs);
	for (i = 0; i < f->pub.nmsgs; i++) {
		/* Root map, "msgs", this map: its pairs are at level 4. */
		r = next_map(c, &r2, 4, "msgs", buf, &mm);
		if (r != FY_OK)
			return r;
		body = 0;
		FOR_KEYS(&mm, e, k, v) {
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
dec_sub(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
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
dec_settle(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v, *leases = NULL;
	enum key k;
	uint64_t seen = 0;
	uint64_t sid = 0, lease = 0;
	uint64_t *a;
	struct val x;
	struct rd r;
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
		if ((seen & HAS(K_LEASE)) || leases->type != V_ARRAY ||
		    leases->u == 0)
			return bad(c, "leases");
		f->ack.nleases = (uint32_t)leases->u;
		a = zalloc(c, f->ack.nleases, sizeof(*a));
		if (a == NULL)
			return FY_ENOMEM;
		r = items(c, leases);
		for (i = 0; i < f->ack.nleases; i++) {
			if (rd_val(&r, &x))
				return FY_EPROTO;
			if (get_u64(&x, &a[i]))
				return bad(c, "leases");
		}
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
dec_delete(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
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
dec_query(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
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
dec_welcome(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
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
		case K_BOOT:
			if (get_str(v, &f->welcome.boot))
				return bad(c, "boot");
			break;
		case K_IDLE:
			if (get_u32(v, &f->welcome.idle_ms))
				return bad(c, "idle");
			break;
		case K_USER:
			if (get_str(v, &f->welcome.user))
				return bad(c, "user");
			break;
		case K_SASL:
			if (get_str(v, &f->welcome.sasl))
				return bad(c, "sasl");
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
	RF("amo", F_U64, struct fy_gstat, amo),
	RF("overflow", F_U64, struct fy_gstat, overflow),
	RF("drop", F_U64, struct fy_gstat, dropped),
	RF("slow", F_U64, struct fy_gstat, slow),
	RF("age", F_U64, struct fy_gstat, age_ms),
};

static const struct rowfield bstat_fields[] = {
	RF("conns", F_U64, struct fy_bstat, conns),
	RF("topics", F_U64, struct fy_bstat, topics),
	RF("groups", F_U64, struct fy_bstat, groups),
	RF("ready", F_U64, struct fy_bstat, ready),
	RF("delayed", F_U64, struct fy_bstat, delayed),
	RF("inflight", F_U64, struct fy_bstat, inflight),
	RF("bytes", F_U64, struct fy_bstat, bytes),
	RF("pub", F_U64, struct fy_bstat, published),
	RF("dlv", F_U64, struct fy_bstat, delivered),
	RF("ack", F_U64, struct fy_bstat, acked),
	RF("in", F_U64, struct fy_bstat, bytes_in),
	RF("out", F_U64, struct fy_bstat, bytes_out),
	RF("jbytes", F_U64, struct fy_bstat, journal_bytes),
	RF("up", F_U64, struct fy_bstat, uptime_ms),
	RF("paged", F_U64, struct fy_bstat, paged),
	RF("pbytes", F_U64, struct fy_bstat, paged_bytes),
	RF("preads", F_U64, struct fy_bstat, paged_reads),
	RF("producers", F_U64, struct fy_bstat, producers),
};

static const struct rowfield lease_fields[] = {
	RF("id", F_STR, struct fy_lease_info, id),
	RF("by", F_STR, struct fy_lease_info, consumer),
	RF("age", F_U64, struct fy_lease_info, age_ms),
	RF("att", F_U32, struct fy_lease_info, attempt),
	RF("e", F_STR, struct fy_lease_info, error),
	RF("left", F_U64, struct fy_lease_info, left_ms),
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
row_field(const struct rowfield *fd, size_t nfd, const struct val *k)
{
	size_t i;

	if (k->type != V_STR)
		return NULL;
	for (i = 0; i < nfd; i++)
		if (fd[i].klen == k->u &&
		    memcmp(fd[i].key, k->p, fd[i].klen) == 0)
			return &fd[i];
	return NULL;
}

/* An array of row maps into a zeroed zone array; any error names the
 * array's key.  An empty array gives NULL, 0. */
static int
get_rows(struct dctx *c, const struct val *o, const char *name,
    const struct rowfield *fd, size_t nfd, size_t size, void **rows,
    uint32_t *nrows)
{
	const struct rowfield *rf;
	struct val row, k, v;
	struct rd rd;
	uint64_t j;
	uint32_t i, n;
	char *a, *p;
	int r;

	if (o->type != V_ARRAY)
		return bad(c, name);
	n = (uint32_t)o->u;
	*rows = NULL;
	*nrows = 0;
	if (n == 0)
		return FY_OK;
	a = zalloc(c, n, size);
	if (a == NULL)
		return FY_ENOMEM;
	memset(a, 0, (size_t)n * size);
	rd = items(c, o);
	for (i = 0; i < n; i++) {
		if (rd_val(&rd, &row))
			return FY_EPROTO;
		if (row.type != V_MAP)
			return bad(c, name);
		/* Root map, the array, the row: its pairs are at level 4. */
		for (j = 0; j < row.u; j++) {
			if (rd_val(&rd, &k) || skip_val(&rd, &k, 4) ||
			    rd_val(&rd, &v) || skip_val(&rd, &v, 4))
				return FY_EPROTO;
			if (v.type == V_NIL ||
			    (rf = row_field(fd, nfd, &k)) == NULL)
				continue;
			p = a + (size_t)i * size + rf->off;
			switch (rf->kind) {
			case F_STR:
				r = get_str(&v, (struct fy_str *)p);
				break;
			case F_U64:
				r = get_u64(&v, (uint64_t *)p);
				break;
			default:
				r = get_u32(&v, (uint32_t *)p);
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
dec_ok(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
	struct val x;
	struct rd rd;
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
			if (v->type != V_ARRAY)
				return bad(c, "ids");
			n = (uint32_t)v->u;
			f->ok.ids = NULL;
			f->ok.nids = 0;
			if (n == 0)
				break;
			f->ok.ids = zalloc(c, n, sizeof(*f->ok.ids));
			if (f->ok.ids == NULL)
				return FY_ENOMEM;
			rd = items(c, v);
			for (i = 0; i < n; i++) {
				if (rd_val(&rd, &x))
					return FY_EPROTO;
				if (get_str(&x, &f->ok.ids[i]))
					return bad(c, "ids");
			}
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
		case K_BROKER:
			r = get_rows(c, v, "broker", bstat_fields,
			    ARRAY_LEN(bstat_fields), sizeof(*f->ok.broker),
			    &rows, &f->ok.nbroker);
			if (r != FY_OK)
				return r;
			f->ok.broker = rows;
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
dec_err(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
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
get_hist(struct dctx *c, const struct val *o, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
	struct ent buf[NENT];
	struct fy_hist *h;
	struct map m;
	struct rd rd;
	enum key k;
	uint32_t i, n;
	int r;

	if (o->type != V_ARRAY)
		return bad(c, "hist");
	n = (uint32_t)o->u;
	f->msg.hist = NULL;
	f->msg.nhist = 0;
	if (n == 0)
		return FY_OK;
	h = zalloc(c, n, sizeof(*h));
	if (h == NULL)
		return FY_ENOMEM;
	memset(h, 0, n * sizeof(*h));
	rd = items(c, o);
	for (i = 0; i < n; i++) {
		/* Root map, "hist", this entry: its pairs are at level 4. */
		r = next_map(c, &rd, 4, "hist", buf, &m);
		if (r != FY_OK)
			return r;
		FOR_KEYS(&m, e, k, v) {
			r = 0;
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
dec_msg(struct dctx *c, const struct map *m, struct fy_frame *f)
{
	const struct ent *e;
	const struct val *v;
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
	d->requests_only = 0;
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
	struct dctx c = { &d->zone, NULL, NULL };
	struct ent buf[NENT];
	struct map m;
	struct val root, t, rid;
	struct rd rd;
	int r;

	memset(f, 0, sizeof(*f));
	if (field != NULL)
		*field = NULL;
	/* Frees what the previous frame used, keeping the first chunk. */
	msgpack_zone_clear(&d->zone);
	if (payload == NULL)
		return FY_EPROTO;
	c.end = payload + len;
	rd.p = payload;
	rd.end = c.end;

	/* Pass 1: all of it, exactly one map; its pairs at level 2. */
	if (rd_val(&rd, &root) || root.type != V_MAP)
		return FY_EPROTO;
	t.type = V_NIL;		/* absent and nil are alike */
	rid.type = V_NIL;
	r = list_map(&c, &rd, &root, 2, buf, &m, &t, &rid);
	if (r != FY_OK)
		return r;
	if (rd.p != rd.end)
		return FY_EPROTO;

	/* Pass 2.  "t" and "rid" first, wherever they were, so that any
	 * later error can be answered with the request id. */
	if (t.type == V_UINT)
		f->type = t.u <= INT_MAX ? (int)t.u : -1;
	if (rid.type != V_NIL && get_u64(&rid, &f->rid))
		c.field = "rid";
	else if (t.type != V_UINT)
		c.field = "t";
	if (c.field != NULL) {
		r = FY_EFIELD;
		goto out;
	}
	/* Misdirected: the type is the error, whatever its fields. */
	if (d->requests_only && f->type >= FY_T_WELCOME)
		return FY_ETYPE;

	switch (f->type) {
	case FY_T_HELLO:
		r = dec_hello(&c, &m, f);
		break;
	case FY_T_PUB:
		r = dec_pub(&c, &m, f);
		break;
	case FY_T_SUB:
		r = dec_sub(&c, &m, f);
		break;
	case FY_T_UNSUB:
	case FY_T_ACK:
	case FY_T_NACK:
	case FY_T_TOUCH:
		r = dec_settle(&c, &m, f);
		break;
	case FY_T_DELETE:
		r = dec_delete(&c, &m, f);
		break;
	case FY_T_PING:
		r = FY_OK;
		break;
	case FY_T_STATS:
	case FY_T_INFLIGHT:
	case FY_T_PEEK:
	case FY_T_TRACE:
		r = dec_query(&c, &m, f);
		break;
	case FY_T_WELCOME:
		r = dec_welcome(&c, &m, f);
		break;
	case FY_T_AUTH:
	case FY_T_CHALLENGE:
		r = dec_auth(&c, &m, f);
		break;
	case FY_T_OK:
		r = dec_ok(&c, &m, f);
		break;
	case FY_T_ERR:
		r = dec_err(&c, &m, f);
		break;
	case FY_T_MSG:
		r = dec_msg(&c, &m, f);
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

/* A tag byte followed by an n-byte big-endian value (n may be 0).
 * Inline, so that n is a constant and put_be() unrolls. */
static inline void
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

/* Keys are literals shorter than 32 bytes: a fixstr, one reservation.
 * Inline, so that each memcpy() has a constant size. */
static inline void
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
		put_head(&w, f, 1 + (f->hello.name.len > 0) +
		    (f->hello.mech.len > 0) + (f->hello.sasl.len > 0));
		KEY(&w, "v");
		put_uint(&w, f->hello.version);
		OPT_STR(&w, "name", f->hello.name);
		OPT_STR(&w, "mech", f->hello.mech);
		OPT_STR(&w, "sasl", f->hello.sasl);
		break;
	case FY_T_AUTH:
	case FY_T_CHALLENGE:
		put_head(&w, f, 1);
		KEY(&w, "sasl");
		put_fstr(&w, &f->auth.sasl);
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
		    (f->welcome.max_frame != 0) + (f->welcome.max_msg != 0) +
		    (f->welcome.boot.len > 0) + (f->welcome.idle_ms != 0) +
		    (f->welcome.user.len > 0) + (f->welcome.sasl.len > 0));
		KEY(&w, "v");
		put_uint(&w, f->welcome.version);
		OPT_STR(&w, "server", f->welcome.server);
		OPT_STR(&w, "session", f->welcome.session);
		OPT_UINT(&w, "max_frame", f->welcome.max_frame);
		OPT_UINT(&w, "max_msg", f->welcome.max_msg);
		OPT_STR(&w, "boot", f->welcome.boot);
		OPT_UINT(&w, "idle", f->welcome.idle_ms);
		OPT_STR(&w, "user", f->welcome.user);
		OPT_STR(&w, "sasl", f->welcome.sasl);
		break;
	case FY_T_OK:
		put_head(&w, f, (f->ok.sid != 0) + (f->ok.group.len > 0) +
		    (f->ok.nids > 0) + (f->ok.dur != 0) + (f->ok.dups != 0) +
		    (f->ok.nstats > 0) + (f->ok.ninflight > 0) +
		    (f->ok.nevents > 0) + (f->ok.nbroker > 0));
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
		if (f->ok.nbroker > 0)
			ROWS(&w, "broker", f->ok.broker, f->ok.nbroker,
			    bstat_fields);
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
