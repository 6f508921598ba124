/*
 * record.c - msgpack encoding of journal record payloads.
 */
#include <errno.h>
#include <string.h>

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
pack_move(msgpack_packer *pk, const struct rec *r)
{
	int e = 0;

	e |= msgpack_pack_array(pk, 8);
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
	return e;
}

int
rec_encode(msgpack_sbuffer *sb, const struct rec *r)
{
	msgpack_packer pk;
	int e = 0;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	switch (r->type) {
	case REC_PUB:
		e |= msgpack_pack_array(&pk, r->pub.nhist ? 6 : 5);
		e |= pack_str(&pk, r->pub.topic);
		e |= pack_str(&pk, r->pub.id);
		e |= msgpack_pack_uint64(&pk, r->pub.ts);
		e |= pack_hdr(&pk, &r->pub.m);
		e |= msgpack_pack_bin(&pk, r->pub.m.body.len);
		e |= msgpack_pack_bin_body(&pk, r->pub.m.body.p,
		    r->pub.m.body.len);
		if (r->pub.nhist)
			e |= pack_hist(&pk, r->pub.hist, r->pub.nhist);
		break;
	case REC_ACK:
		e |= msgpack_pack_array(&pk, 2);
		e |= msgpack_pack_uint64(&pk, r->ack.gid);
		e |= msgpack_pack_uint64(&pk, r->ack.mseq);
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
		e |= msgpack_pack_array(&pk, 5);
		e |= msgpack_pack_uint64(&pk, r->group.gid);
		e |= pack_str(&pk, r->group.topic);
		e |= pack_str(&pk, r->group.name);
		e |= msgpack_pack_uint32(&pk, r->group.ack_timeout_ms);
		e |= msgpack_pack_uint32(&pk, r->group.max_attempts);
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
	if (a[7].type != MSGPACK_OBJECT_ARRAY)
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

int
rec_decode(msgpack_zone *zone, uint8_t type, const uint8_t *p, size_t len,
    struct rec *r)
{
	static const uint32_t arity[] = {
		[REC_PUB] = 5, [REC_ACK] = 2, [REC_FAIL] = 7,
		[REC_GROUP] = 5, [REC_GROUP_DEL] = 1, [REC_TOPIC_DEL] = 1,
		[REC_MOVE] = 8,
	};
	msgpack_object obj;
	const msgpack_object *a;
	size_t off = 0;
	int e = 0;

	memset(r, 0, sizeof(*r));
	if (type < REC_PUB || type > REC_MOVE)
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
	if (off != len || obj.type != MSGPACK_OBJECT_ARRAY ||
	    (obj.via.array.size != arity[type] &&
	    !(type == REC_PUB && obj.via.array.size == 6)))
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
		if (!e && obj.via.array.size == 6) {
			struct fy_hist *h;

			if ((e = get_hist(zone, &a[5], &h, &r->pub.nhist)))
				return e;
			r->pub.hist = h;
		}
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
		break;
	case REC_GROUP_DEL:
		e |= get_u64(&a[0], &r->group_del.gid);
		break;
	case REC_TOPIC_DEL:
		e |= get_str(&a[0], &r->topic_del.topic);
		break;
	case REC_MOVE:
		return get_move(zone, a, r);
	}
	return e ? -EBADMSG : 0;
}
