/*
 * fuzz-decode.c - libFuzzer target: the frame decoder.
 *
 * The input is what a peer sends: a length header and a payload.  Whatever
 * it holds, fy_frame_need() and fy_decode() must return (ASan and UBSan
 * watch how).  A frame that decodes must also round-trip: fy_encode() of it
 * succeeds, decodes again to the same type and request id, and encoding
 * that gives the same bytes again (the encoding of a decoded frame is
 * canonical).  For MSG and single PUB, fy_encode_nobody() plus the body
 * must equal fy_encode(): the broker sends stored bodies that way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "frame.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fy_dec dec;
static struct fy_enc e1, e2, e3;

static void
fail(const char *what, const struct fy_frame *f)
{
	fprintf(stderr, "fuzz-decode: %s (type %d)\n", what, f->type);
	abort();
}

static int
same(const struct fy_enc *a, const struct fy_enc *b)
{
	return a->sb.size == b->sb.size &&
	    memcmp(a->sb.data, b->sb.data, a->sb.size) == 0;
}

/* fy_encode_nobody(f) followed by the body bytes is fy_encode(f) (e1). */
static void
check_nobody(const struct fy_frame *f)
{
	const struct fy_str *body;

	if (f->type == FY_T_MSG)
		body = &f->msg.body;
	else if (f->type == FY_T_PUB && f->pub.nmsgs == 1)
		body = &f->pub.msgs[0].body;
	else
		return;
	fy_enc_clear(&e3);
	if (fy_encode_nobody(&e3, f) != FY_OK)
		fail("fy_encode_nobody failed where fy_encode worked", f);
	if (e3.sb.size + body->len != e1.sb.size ||
	    memcmp(e3.sb.data, e1.sb.data, e3.sb.size) != 0 ||
	    (body->len && memcmp(e1.sb.data + e3.sb.size, body->p,
	    body->len) != 0))
		fail("fy_encode_nobody + body differs from fy_encode", f);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (fy_dec_init(&dec) != FY_OK)
		abort();
	fy_enc_init(&e1);
	fy_enc_init(&e2);
	fy_enc_init(&e3);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fy_frame f, g;
	size_t need;
	int r, type;
	uint64_t rid;

	if (fy_frame_need(data, size, &need) != FY_OK || need > size)
		return 0;
	if (fy_decode(&dec, data + FY_HDR_LEN, need - FY_HDR_LEN, &f,
	    NULL) != FY_OK)
		return 0;

	/* Round trip: encode, decode, encode again. */
	fy_enc_clear(&e1);
	if ((r = fy_encode(&e1, &f)) == FY_ENOMEM)
		return 0;
	if (r != FY_OK)
		fail("a decoded frame does not encode", &f);
	check_nobody(&f);
	type = f.type;
	rid = f.rid;
	if (fy_frame_need((const uint8_t *)e1.sb.data, e1.sb.size, &need) !=
	    FY_OK || need != e1.sb.size)
		fail("length header does not match the encoding", &f);
	r = fy_decode(&dec, (const uint8_t *)e1.sb.data + FY_HDR_LEN,
	    e1.sb.size - FY_HDR_LEN, &g, NULL);	/* f is invalid now */
	if (r == FY_ENOMEM)
		return 0;
	if (r != FY_OK)
		fail("an encoded frame does not decode", &g);
	if (g.type != type || g.rid != rid)
		fail("type or rid changed in the round trip", &g);
	fy_enc_clear(&e2);
	if (fy_encode(&e2, &g) != FY_OK || !same(&e1, &e2))
		fail("re-encoding a decoded encoding changed it", &g);
	return 0;
}
