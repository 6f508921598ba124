/*
 * record.c - msgpack encoding of journal record payloads.
 */
#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include "record.h"

static int
pack_str(msgpack_packer *pk, struct fy_str s)
{
	return msgpack_pack_str(pk, s.len) ||
	    msgpack_pack_str_body(pk, s.p, s.len);
}

static int
pack_hdr(msgpack_packer *pk, const struct fy_pubmsg *m)
{
	int e = 0;

	if (!m->nhdr)
		return msgpack_pack_nil(pk);
	e |= msgpack_pack_map(pk, m->nhdr);
	for (uint32_t i = 0; i < m->nhdr; i++) {
		e |= pack_str(pk, m->hdr[i].k);
		e |= pack_str(pk, m->hdr[i].v);
	}
	return e;
}

static int
pack_hist(msgpack_packer *pk, const struct fy_hist *hist, uint32_t n)
{
	int e = 0;

	if (!n)
		return msgpack_pack_nil(pk);
	e |= msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		e |= msgpack_pack_array(pk, 4);
		e |= pack_str(pk, hist[i].cause);
		e |= pack_str(pk, hist[i].error);
		e |= pack_str(pk, hist[i].consumer);
		e |= msgpack_pack_uint64(pk, hist[i].at);
	}
	return e;
}

static int
pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
	size_t n = strlen(k);

	return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, k, n) ||
	    msgpack_pack_uint64(pk, v);
}

static int
pack_kv_str(msgpack_packer *pk, const char *k, struct fy_str v)
{
	size_t n = strlen(k);

	return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, k, n) ||
	    pack_str(pk, v);
}

/* The optional message fields of REC_PUB and REC_MOVE, as one map. */
static int
pack_msg_opts(msgpack_packer *pk, const struct fy_pubmsg *m, uint64_t gid)
{
	uint32_t n = !!m->delay_ms + !!m->ttl_ms + !!m->reply_to.len +
	    !!m->corr.len + 2 * !!m->pid.len + !!gid + !!m->id.len;
	int e = 0;

	if (!n)
		return msgpack_pack_nil(pk);
	e |= msgpack_pack_map(pk, n);
	if (m->delay_ms)
		e |= pack_kv_u64(pk, "delay", m->delay_ms);
	if (m->ttl_ms)
		e |= pack_kv_u64(pk, "ttl", m->ttl_ms);
	if (m->reply_to.len)
		e |= pack_kv_str(pk, "rt", m->reply_to);
	if (m->corr.len)
		e |= pack_kv_str(pk, "corr", m->corr);
	if (m->pid.len) {
		e |= pack_kv_str(pk, "pid", m->pid);
		e |= pack_kv_u64(pk, "seq", m->pseq);
	}
	if (gid)
		e |= pack_kv_u64(pk, "gid", gid);
	if (m->id.len)		/* the id is the producer's: dedup it */
		e |= pack_kv_u64(pk, "own", 1);
	return e;
}

static int
pub_has_opts(const struct fy_pubmsg *m, uint64_t gid)
{
	return m->delay_ms || m->ttl_ms || m->reply_to.len || m->corr.len ||
	    m->pid.len || gid || m->id.len;
}

static int
pack_move(msgpack_packer *pk, const struct rec *r)
{
	int e = 0;

	e |= msgpack_pack_array(pk, 9);
	e |= msgpack_pack_uint64(pk, r->move.old_mseq);
	e |= pack_str(pk, r->move.topic);
	e |= pack_str(pk, r->move.id);
	e |= msgpack_pack_uint64(pk, r->move.ts);
	e |= pack_hdr(pk, &r->move.m);
	e |= msgpack_pack_bin(pk, r->move.m.body.len);
	e |= msgpack_pack_bin_body(pk, r->move.m.body.p, r->move.m.body.len);
	e |= pack_hist(pk, r->move.hist, r->move.nhist);
	e |= msgpack_pack_array(pk, r->move.nent);
	for (uint32_t i = 0; i < r->move.nent; i++) {
		const struct rec_entry *en = &r->move.ent[i];

		e |= msgpack_pack_array(pk, 5);
		e |= msgpack_pack_uint64(pk, en->gid);
		e |= msgpack_pack_uint32(pk, en->attempts);
		e |= msgpack_pack_array(pk, REC_CAUSES);
		for (int k = 0; k < REC_CAUSES; k++)
			e |= msgpack_pack_uint32(pk, en->causes[k]);
		e |= msgpack_pack_uint64(pk, en->not_before);
		e |= msgpack_pack_array(pk, en->nhist);
		for (uint32_t k = 0; k < en->nhist; k++) {
			const struct rec_qhist *h = &en->hist[k];

			e |= msgpack_pack_array(pk, 4);
			e |= msgpack_pack_uint32(pk, h->cause);
			e |= msgpack_pack_uint64(pk, h->at);
			e |= pack_str(pk, h->consumer);
			e |= pack_str(pk, h->error);
		}
	}
	e |= pack_msg_opts(pk, &r->move.m, 0);
	return e;
}

/* Settled entries as deltas: acks come mostly in publish order, so each
 * is a one-byte fixint instead of a 5- or 9-byte seq. */
static int
pack_settle(msgpack_packer *pk, const uint64_t *mseq, uint32_t n)
{
	uint64_t prev = 0;
	int e = msgpack_pack_array(pk, n);

	for (uint32_t i = 0; i < n; i++) {
		if (mseq[i] >= prev)
			e |= msgpack_pack_uint64(pk, mseq[i] - prev);
		else
			e |= msgpack_pack_int64(pk, -(int64_t)(prev - mseq[i]));
		prev = mseq[i];
	}
	return e;
}

int
rec_encode(msgpack_sbuffer *sb, const struct rec *r)
{
	msgpack_packer pk;
	int e = 0, opts;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	switch (r->type) {
	case REC_PUB:
		opts = pub_has_opts(&r->pub.m, r->pub.gid);
		e |= msgpack_pack_array(&pk, opts ? 7 : r->pub.nhist ? 6 : 5);
		e |= pack_str(&pk, r->pub.topic);
		e |= pack_str(&pk, r->pub.id);
		e |= msgpack_pack_uint64(&pk, r->pub.ts);
		e |= pack_hdr(&pk, &r->pub.m);
		e |= msgpack_pack_bin(&pk, r->pub.m.body.len);
		e |= msgpack_pack_bin_body(&pk, r->pub.m.body.p,
		    r->pub.m.body.len);
		if (r->pub.nhist || opts)
			e |= pack_hist(&pk, r->pub.hist, r->pub.nhist);
		if (opts)
			e |= pack_msg_opts(&pk, &r->pub.m, r->pub.gid);
		break;
	case REC_ACK:
		e |= msgpack_pack_array(&pk, 2);
		e |= msgpack_pack_uint64(&pk, r->ack.gid);
		e |= msgpack_pack_uint64(&pk, r->ack.mseq);
		break;
	case REC_SETTLE:
		if (!r->settle.n || r->settle.n > REC_SETTLE_MAX)
			return -EINVAL;
		e |= msgpack_pack_array(&pk, 2);
		e |= msgpack_pack_uint64(&pk, r->settle.gid);
		e |= pack_settle(&pk, r->settle.mseq, r->settle.n);
		break;
	case REC_FAIL:
		e |= msgpack_pack_array(&pk, 7);
		e |= msgpack_pack_uint64(&pk, r->fail.gid);
		e |= msgpack_pack_uint64(&pk, r->fail.mseq);
		e |= msgpack_pack_uint32(&pk, r->fail.cause);
		e |= msgpack_pack_uint64(&pk, r->fail.at);
		e |= msgpack_pack_uint64(&pk, r->fail.not_before);
		e |= pack_str(&pk, r->fail.consumer);
		e |= pack_str(&pk, r->fail.error);
		break;
	case REC_GROUP:
		e |= msgpack_pack_array(&pk, 6);
		e |= msgpack_pack_uint64(&pk, r->group.gid);
		e |= pack_str(&pk, r->group.topic);
		e |= pack_str(&pk, r->group.name);
		e |= msgpack_pack_uint32(&pk, r->group.ack_timeout_ms);
		e |= msgpack_pack_uint32(&pk, r->group.max_attempts);
		e |= msgpack_pack_map(&pk, 5);
		e |= pack_kv_u64(&pk, "ttl", r->group.ttl_ms);
		e |= pack_kv_u64(&pk, "ttl_drop", r->group.ttl_drop);
		e |= pack_kv_u64(&pk, "max_msgs", r->group.max_msgs);
		e |= pack_kv_u64(&pk, "max_bytes", r->group.max_bytes);
		e |= pack_kv_u64(&pk, "overflow", r->group.overflow);
		break;
	case REC_PRODUCER:
		e |= msgpack_pack_array(&pk, r->producer.at ? 3 : 2);
		e |= pack_str(&pk, r->producer.pid);
		e |= msgpack_pack_uint64(&pk, r->producer.seq);
		if (r->producer.at)
			e |= msgpack_pack_uint64(&pk, r->producer.at);
		break;
	case REC_GROUP_DEL:
		e |= msgpack_pack_array(&pk, 1);
		e |= msgpack_pack_uint64(&pk, r->group_del.gid);
		break;
	case REC_TOPIC_DEL:
		e |= msgpack_pack_array(&pk, 1);
		e |= pack_str(&pk, r->topic_del.topic);
		break;
	case REC_MOVE:
		e |= pack_move(&pk, r);
		break;
	default:
		return -EINVAL;
	}
	return e ? -ENOMEM : 0;
}

static int
get_u64(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -EBADMSG;
	*v = o->via.u64;
	return 0;
}

static int
get_u32(const msgpack_object *o, uint32_t *v)
{
	uint64_t u;

	if (get_u64(o, &u) || u > UINT32_MAX)
		return -EBADMSG;
	*v = (uint32_t)u;
	return 0;
}

static int
get_str(const msgpack_object *o, struct fy_str *s)
{
	if (o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN)
		return -EBADMSG;
	/* str and bin share the layout of via.str / via.bin. */
	s->p = o->via.str.ptr;
	s->len = o->via.str.size;
	return 0;
}

static int
get_hdr(msgpack_zone *zone, const msgpack_object *o, struct fy_pubmsg *m)
{
	const msgpack_object_map *map = &o->via.map;

	m->hdr = NULL;
	m->nhdr = 0;
	if (o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (o->type != MSGPACK_OBJECT_MAP)
		return -EBADMSG;
	if (!map->size)
		return 0;
	m->hdr = msgpack_zone_malloc(zone, map->size * sizeof(*m->hdr));
	if (!m->hdr)
		return -ENOMEM;
	for (uint32_t i = 0; i < map->size; i++)
		if (get_str(&map->ptr[i].key, &m->hdr[i].k) ||
		    get_str(&map->ptr[i].val, &m->hdr[i].v))
			return -EBADMSG;
	m->nhdr = map->size;
	return 0;
}

static const msgpack_object *
get_array(const msgpack_object *o, uint32_t n)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != n)
		return NULL;
	return o->via.array.ptr;
}

static int
get_hist(msgpack_zone *zone, const msgpack_object *o, struct fy_hist **hp,
    uint32_t *np)
{
	const msgpack_object *h;
	struct fy_hist *hist;
	int e = 0;

	*hp = NULL;
	*np = 0;
	if (o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return -EBADMSG;
	if (!o->via.array.size)
		return 0;
	hist = msgpack_zone_malloc(zone, o->via.array.size * sizeof(*hist));
	if (!hist)
		return -ENOMEM;
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		if (!(h = get_array(&o->via.array.ptr[i], 4)))
			return -EBADMSG;
		e |= get_str(&h[0], &hist[i].cause);
		e |= get_str(&h[1], &hist[i].error);
		e |= get_str(&h[2], &hist[i].consumer);
		e |= get_u64(&h[3], &hist[i].at);
	}
	if (e)
		return -EBADMSG;
	*hp = hist;
	*np = o->via.array.size;
	return 0;
}

static int
key_is(const msgpack_object *k, const char *s)
{
	size_t n = strlen(s);

	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	    !memcmp(k->via.str.ptr, s, n);
}

/*
 * Read an options map: each known key sets its field; unknown keys are
 * skipped, so newer brokers can add fields old ones ignore.
 */
static int
get_msg_opts(const msgpack_object *o, struct fy_pubmsg *m, uint64_t *gid)
{
	int e = 0;

	if (o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (o->type != MSGPACK_OBJECT_MAP)
		return -EBADMSG;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (key_is(k, "delay"))
			e |= get_u64(v, &m->delay_ms);
		else if (key_is(k, "ttl"))
			e |= get_u64(v, &m->ttl_ms);
		else if (key_is(k, "rt"))
			e |= get_str(v, &m->reply_to);
		else if (key_is(k, "corr"))
			e |= get_str(v, &m->corr);
		else if (key_is(k, "pid"))
			e |= get_str(v, &m->pid);
		else if (key_is(k, "seq"))
			e |= get_u64(v, &m->pseq);
		else if (key_is(k, "gid") && gid)
			e |= get_u64(v, gid);
		else if (key_is(k, "own"))
			m->id.len = 1;	/* caller points it at the id */
	}
	return e ? -EBADMSG : 0;
}

static int
get_group_opts(const msgpack_object *o, struct rec *r)
{
	uint64_t u = 0;
	int e = 0;

	if (o->type != MSGPACK_OBJECT_MAP)
		return -EBADMSG;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (key_is(k, "ttl")) {
			e |= get_u64(v, &r->group.ttl_ms);
		} else if (key_is(k, "ttl_drop")) {
			e |= get_u64(v, &u);
			r->group.ttl_drop = !!u;
		} else if (key_is(k, "max_msgs")) {
			e |= get_u64(v, &r->group.max_msgs);
		} else if (key_is(k, "max_bytes")) {
			e |= get_u64(v, &r->group.max_bytes);
		} else if (key_is(k, "overflow")) {
			e |= get_u64(v, &u);
			r->group.overflow = (uint32_t)(u > 1 ? 0 : u);
		}
	}
	return e ? -EBADMSG : 0;
}

static int
get_move(msgpack_zone *zone, const msgpack_object *a, struct rec *r)
{
	const msgpack_object *h, *en, *c;
	int e = 0;

	e |= get_u64(&a[0], &r->move.old_mseq);
	e |= get_str(&a[1], &r->move.topic);
	e |= get_str(&a[2], &r->move.id);
	e |= get_u64(&a[3], &r->move.ts);
	if (e)
		return -EBADMSG;
	if ((e = get_hdr(zone, &a[4], &r->move.m)) < 0)
		return e;
	if (a[5].type != MSGPACK_OBJECT_BIN)
		return -EBADMSG;
	get_str(&a[5], &r->move.m.body);
	if ((e = get_hist(zone, &a[6], &r->move.hist, &r->move.nhist)) < 0)
		return e;
	if (a[7].type != MSGPACK_OBJECT_ARRAY ||
	    get_msg_opts(&a[8], &r->move.m, NULL) < 0)
		return -EBADMSG;
	r->move.nent = a[7].via.array.size;
	if (r->move.nent && !(r->move.ent = msgpack_zone_malloc(zone,
	    r->move.nent * sizeof(*r->move.ent))))
		return -ENOMEM;
	for (uint32_t i = 0; i < r->move.nent; i++) {
		struct rec_entry *re = &r->move.ent[i];

		if (!(en = get_array(&a[7].via.array.ptr[i], 5)) ||
		    !(c = get_array(&en[2], REC_CAUSES)) ||
		    en[4].type != MSGPACK_OBJECT_ARRAY)
			return -EBADMSG;
		e |= get_u64(&en[0], &re->gid);
		e |= get_u32(&en[1], &re->attempts);
		for (int k = 0; k < REC_CAUSES; k++)
			e |= get_u32(&c[k], &re->causes[k]);
		e |= get_u64(&en[3], &re->not_before);
		re->nhist = en[4].via.array.size;
		re->hist = NULL;
		if (re->nhist && !(re->hist = msgpack_zone_malloc(zone,
		    re->nhist * sizeof(*re->hist))))
			return -ENOMEM;
		for (uint32_t k = 0; k < re->nhist; k++) {
			struct rec_qhist *qh = &re->hist[k];

			if (!(h = get_array(&en[4].via.array.ptr[k], 4)))
				return -EBADMSG;
			e |= get_u32(&h[0], &qh->cause);
			e |= get_u64(&h[1], &qh->at);
			e |= get_str(&h[2], &qh->consumer);
			e |= get_str(&h[3], &qh->error);
		}
	}
	return e ? -EBADMSG : 0;
}

/*
 * The end of the msgpack value at p[off..len) (an offset into p), or 0 if
 * it is not one whose every count is backed by bytes, nested at most 16
 * deep.  msgpack_unpack() allocates what a count claims before reading the
 * elements, so a damaged record claiming 2^32 entries would ask for
 * gigabytes: checked first, without allocating.
 */
static size_t
value_end(const uint8_t *p, size_t len, size_t off)
{
	uint64_t left[17];	/* values still to read, per nesting level */
	int depth = 0;

	left[0] = 1;
	while (depth >= 0) {
		uint64_t n = 0, skip = 0, kids = 0;
		uint8_t b;

		if (!left[depth]) {
			depth--;
			continue;
		}
		left[depth]--;
		if (off >= len)
			return 0;
		b = p[off++];
		if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3 &&
		    b != 0xc1)) {
			continue;
		} else if (b >= 0x80 && b <= 0x8f) {
			kids = 2 * (uint64_t)(b & 0x0f);
		} else if (b >= 0x90 && b <= 0x9f) {
			kids = b & 0x0f;
		} else if (b >= 0xa0 && b <= 0xbf) {
			skip = b & 0x1f;
		} else {
			/* Sized types: width of the size field, or the fixed
			 * payload width. */
			static const uint8_t w[32] = {
				[0x04] = 1, [0x05] = 2, [0x06] = 4,	/* bin */
				[0x07] = 1, [0x08] = 2, [0x09] = 4,	/* ext */
				[0x19] = 1, [0x1a] = 2, [0x1b] = 4,	/* str */
				[0x1c] = 2, [0x1d] = 4,		/* array */
				[0x1e] = 2, [0x1f] = 4,		/* map */
			};
			static const uint8_t fixed[32] = {
				[0x0a] = 4, [0x0b] = 8,		/* float */
				[0x0c] = 1, [0x0d] = 2, [0x0e] = 4, [0x0f] = 8,
				[0x10] = 1, [0x11] = 2, [0x12] = 4, [0x13] = 8,
				[0x14] = 2, [0x15] = 3, [0x16] = 5, [0x17] = 9,
				[0x18] = 17,			/* fixext */
			};
			uint8_t k = b - 0xc0;

			if (b == 0xc1)
				return 0;
			if (fixed[k]) {
				skip = fixed[k];
			} else {
				if (len - off < w[k])
					return 0;
				for (uint8_t i = 0; i < w[k]; i++)
					n = n << 8 | p[off++];
				if (k >= 0x1c && k <= 0x1d)
					kids = n;
				else if (k >= 0x1e)
					kids = 2 * n;
				else
					skip = n + (k >= 0x07 && k <= 0x09);
			}
		}
		if (skip > len - off)
			return 0;
		off += skip;
		if (kids) {
			/* Each element takes at least one byte. */
			if (kids > len - off || depth == 16)
				return 0;
			left[++depth] = kids;
		}
	}
	return off;
}

static int
bounded(const uint8_t *p, size_t len)
{
	return len > 0 && value_end(p, len, 0) == len;
}

/* ---- index summaries (record.h) ---- */

/* Element of the top-level array that holds the body, per type. */
static int
body_elem(uint8_t type)
{
	return type == REC_PUB ? 4 : type == REC_MOVE ? 5 : -1;
}

/* Append v to out as a msgpack uint; the bytes written. */
static size_t
put_uint(uint8_t *out, uint64_t v)
{
	if (v <= 0x7f) {
		out[0] = (uint8_t)v;
		return 1;
	}
	if (v <= 0xffff) {
		out[0] = 0xcd;
		out[1] = (uint8_t)(v >> 8);
		out[2] = (uint8_t)v;
		return 3;
	}
	out[0] = 0xce;		/* a body is below 4 GiB */
	for (int i = 0; i < 4; i++)
		out[1 + i] = (uint8_t)(v >> (24 - 8 * i));
	return 5;
}

ssize_t
rec_summarize(uint8_t type, const uint8_t *p, size_t len, uint8_t *out,
    size_t cap)
{
	int want = body_elem(type);
	size_t off = 0, n, at, hdr, blen;

	if (!bounded(p, len))
		return -EBADMSG;
	if (want < 0) {
		if (cap < len)
			return -ENOSPC;
		memcpy(out, p, len);
		return (ssize_t)len;
	}
	/* The array's header: fixarray, or array16/32. */
	if (p[0] >= 0x90 && p[0] <= 0x9f)
		n = p[0] & 0x0f, off = 1;
	else if (p[0] == 0xdc && len >= 3)
		n = (size_t)p[1] << 8 | p[2], off = 3;
	else
		return -EBADMSG;
	if (n <= (size_t)want)
		return -EBADMSG;
	for (int i = 0; i < want; i++)
		if (!(off = value_end(p, len, off)))
			return -EBADMSG;
	at = off;		/* the body's bin header */
	switch (p[at]) {
	case 0xc4:
		hdr = 2;
		blen = p[at + 1];
		break;
	case 0xc5:
		hdr = 3;
		blen = (size_t)p[at + 1] << 8 | p[at + 2];
		break;
	case 0xc6:
		hdr = 5;
		blen = (size_t)p[at + 1] << 24 | (size_t)p[at + 2] << 16 |
		    (size_t)p[at + 3] << 8 | p[at + 4];
		break;
	default:
		return -EBADMSG;
	}
	off = at + hdr + blen;	/* bounded(): within len */
	if (cap < 5 + at + 2 + (len - off))
		return -ENOSPC;
	n = put_uint(out, blen);
	memcpy(out + n, p, at);
	n += at;
	out[n++] = 0xc4;	/* the body, emptied */
	out[n++] = 0;
	memcpy(out + n, p + off, len - off);
	return (ssize_t)(n + len - off);
}

int
rec_decode_summary(msgpack_zone *zone, uint8_t type, const uint8_t *p,
    size_t len, struct rec *r)
{
	uint64_t blen = 0;
	size_t off;
	int e;

	if (body_elem(type) < 0)
		return rec_decode(zone, type, p, len, r);
	if (len == 0)
		return -EBADMSG;
	if (p[0] <= 0x7f) {
		blen = p[0];
		off = 1;
	} else if (p[0] == 0xcd && len >= 3) {
		blen = (uint64_t)p[1] << 8 | p[2];
		off = 3;
	} else if (p[0] == 0xce && len >= 5) {
		blen = (uint64_t)p[1] << 24 | (uint64_t)p[2] << 16 |
		    (uint64_t)p[3] << 8 | p[4];
		off = 5;
	} else {
		return -EBADMSG;
	}
	if ((e = rec_decode(zone, type, p + off, len - off, r)) < 0)
		return e;
	if (type == REC_PUB) {
		if (r->pub.m.body.len)
			return -EBADMSG;
		r->pub.m.body = (struct fy_str){NULL, (uint32_t)blen};
	} else {
		if (r->move.m.body.len)
			return -EBADMSG;
		r->move.m.body = (struct fy_str){NULL, (uint32_t)blen};
	}
	return 0;
}

/* The deltas of a REC_SETTLE back to seqs, each one >= 1. */
static int
get_settle(msgpack_zone *zone, const msgpack_object *o, struct rec *r)
{
	const msgpack_object *d;
	uint64_t *mseq, prev = 0;
	uint32_t n;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return -EBADMSG;
	d = o->via.array.ptr;
	if (!(n = o->via.array.size) || n > REC_SETTLE_MAX)
		return -EBADMSG;
	if (!(mseq = msgpack_zone_malloc(zone, n * sizeof(*mseq))))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		if (d[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
			if (d[i].via.u64 > UINT64_MAX - prev)
				return -EBADMSG;
			prev += d[i].via.u64;
		} else if (d[i].type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
			/* INT64_MIN has no positive: no seq is that old */
			if (d[i].via.i64 == INT64_MIN ||
			    (uint64_t)-d[i].via.i64 >= prev)
				return -EBADMSG;
			prev -= (uint64_t)-d[i].via.i64;
		} else {
			return -EBADMSG;
		}
		if (!prev)
			return -EBADMSG;
		mseq[i] = prev;
	}
	r->settle.mseq = mseq;
	r->settle.n = n;
	return 0;
}

int
rec_decode(msgpack_zone *zone, uint8_t type, const uint8_t *p, size_t len,
    struct rec *r)
{
	static const uint32_t arity[] = {
		[REC_PUB] = 5, [REC_ACK] = 2, [REC_FAIL] = 7,
		[REC_GROUP] = 5, [REC_GROUP_DEL] = 1, [REC_TOPIC_DEL] = 1,
		[REC_MOVE] = 9, [REC_PRODUCER] = 2, [REC_SETTLE] = 2,
	};
	msgpack_object obj;
	const msgpack_object *a;
	size_t off = 0;
	int e = 0;

	memset(r, 0, sizeof(*r));
	if (type < REC_PUB || type > REC_SETTLE)
		return -EBADMSG;
	if (!bounded(p, len))
		return -EBADMSG;
	msgpack_zone_clear(zone);
	switch (msgpack_unpack((const char *)p, len, &off, zone, &obj)) {
	case MSGPACK_UNPACK_SUCCESS:
		break;
	case MSGPACK_UNPACK_NOMEM_ERROR:
		return -ENOMEM;
	default:
		return -EBADMSG;
	}
	/* REC_PUB, REC_GROUP and REC_PRODUCER may omit their trailing
	 * optional parts. */
	if (off != len || obj.type != MSGPACK_OBJECT_ARRAY ||
	    (obj.via.array.size != arity[type] &&
	    !(type == REC_PUB && obj.via.array.size >= 5 &&
	    obj.via.array.size <= 7) &&
	    !(type == REC_GROUP && obj.via.array.size == 6) &&
	    !(type == REC_PRODUCER && obj.via.array.size == 3)))
		return -EBADMSG;
	a = obj.via.array.ptr;
	r->type = type;
	switch (type) {
	case REC_PUB:
		e |= get_str(&a[0], &r->pub.topic);
		e |= get_str(&a[1], &r->pub.id);
		e |= get_u64(&a[2], &r->pub.ts);
		if (!e && (e = get_hdr(zone, &a[3], &r->pub.m)) == -ENOMEM)
			return e;
		e |= a[4].type == MSGPACK_OBJECT_BIN ? 0 : -EBADMSG;
		if (!e)
			get_str(&a[4], &r->pub.m.body);
		if (!e && obj.via.array.size >= 6) {
			struct fy_hist *h;

			if ((e = get_hist(zone, &a[5], &h, &r->pub.nhist)))
				return e;
			r->pub.hist = h;
		}
		if (!e && obj.via.array.size == 7)
			e = get_msg_opts(&a[6], &r->pub.m, &r->pub.gid);
		if (r->pub.m.id.len)
			r->pub.m.id = r->pub.id;
		break;
	case REC_ACK:
		e |= get_u64(&a[0], &r->ack.gid);
		e |= get_u64(&a[1], &r->ack.mseq);
		break;
	case REC_FAIL:
		e |= get_u64(&a[0], &r->fail.gid);
		e |= get_u64(&a[1], &r->fail.mseq);
		e |= get_u32(&a[2], &r->fail.cause);
		e |= get_u64(&a[3], &r->fail.at);
		e |= get_u64(&a[4], &r->fail.not_before);
		e |= get_str(&a[5], &r->fail.consumer);
		e |= get_str(&a[6], &r->fail.error);
		break;
	case REC_GROUP:
		e |= get_u64(&a[0], &r->group.gid);
		e |= get_str(&a[1], &r->group.topic);
		e |= get_str(&a[2], &r->group.name);
		e |= get_u32(&a[3], &r->group.ack_timeout_ms);
		e |= get_u32(&a[4], &r->group.max_attempts);
		if (!e && obj.via.array.size == 6)
			e = get_group_opts(&a[5], r);
		break;
	case REC_GROUP_DEL:
		e |= get_u64(&a[0], &r->group_del.gid);
		break;
	case REC_TOPIC_DEL:
		e |= get_str(&a[0], &r->topic_del.topic);
		break;
	case REC_MOVE:
		return get_move(zone, a, r);
	case REC_PRODUCER:
		e |= get_str(&a[0], &r->producer.pid);
		e |= get_u64(&a[1], &r->producer.seq);
		if (obj.via.array.size == 3)
			e |= get_u64(&a[2], &r->producer.at);
		break;
	case REC_SETTLE:
		if ((e = get_u64(&a[0], &r->settle.gid)))
			return e;
		return get_settle(zone, &a[1], r);
	}
	return e ? -EBADMSG : 0;
}
