/*
 * fuzz-record.c - libFuzzer target: journal record payloads and their
 * index summaries (broker/record.h).
 *
 * Input: byte 0 is the record type (any value: unknown types included),
 * the rest its payload.  Whatever it holds, rec_decode() and
 * rec_decode_summary() must return (ASan and UBSan watch how): an index
 * file is read back from disk, where damage that its checksums miss, or
 * a bug in the worker thread that wrote it, is still possible.
 *
 * A payload that rec_decode() accepts must also summarize: replay reads a
 * record from the index exactly when its segment was indexed, so the two
 * readings must agree.  rec_summarize() succeeds within len + 8 bytes, its
 * summary decodes, and the record decoded from it is the one decoded from
 * the payload but for the body, which is {NULL, its length}.  "The same"
 * is checked by encoding both records again (bodies emptied): rec_encode()
 * is a function of the struct alone.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "record.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static msgpack_zone z1, z2;
static msgpack_sbuffer s1, s2;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	msgpack_zone_init(&z1, 4096);
	msgpack_zone_init(&z2, 4096);
	msgpack_sbuffer_init(&s1);
	msgpack_sbuffer_init(&s2);
	return 0;
}

static void
fail(const char *what, uint8_t type)
{
	fprintf(stderr, "fuzz-record: %s (type %u)\n", what, type);
	abort();
}

/* r's body, for the types that carry one; else NULL. */
static struct fy_str *
body_of(struct rec *r)
{
	if (r->type == REC_PUB)
		return &r->pub.m.body;
	if (r->type == REC_MOVE)
		return &r->move.m.body;
	return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct fy_str empty = {"", 0};
	struct rec r1, r2;
	struct fy_str *b1, *b2;
	uint8_t *sum;
	ssize_t sl;
	uint8_t type;

	if (size < 1)
		return 0;
	type = data[0];
	data++;
	size--;

	/* Arbitrary bytes as a summary: only "returns" is checked. */
	memset(&r2, 0, sizeof(r2));
	(void)rec_decode_summary(&z2, type, data, size, &r2);

	memset(&r1, 0, sizeof(r1));
	if (rec_decode(&z1, type, data, size, &r1) < 0)
		return 0;
	if (!(sum = malloc(size + 8)))
		return 0;
	sl = rec_summarize(type, data, size, sum, size + 8);
	if (sl < 0)
		fail("rec_summarize refused a payload rec_decode took", type);
	memset(&r2, 0, sizeof(r2));
	if (rec_decode_summary(&z2, type, sum, (size_t)sl, &r2) < 0)
		fail("rec_decode_summary refused a summary", type);
	if (r2.type != r1.type)
		fail("the summary decodes to another type", type);
	b1 = body_of(&r1);
	b2 = body_of(&r2);
	if (b1) {
		if (b2->p != NULL || b2->len != b1->len)
			fail("the summary's body is not {NULL, its length}",
			    type);
		*b1 = *b2 = empty;
	}
	msgpack_sbuffer_clear(&s1);
	msgpack_sbuffer_clear(&s2);
	if (rec_encode(&s1, &r1) < 0 || rec_encode(&s2, &r2) < 0)
		fail("rec_encode failed on a decoded record", type);
	if (s1.size != s2.size || memcmp(s1.data, s2.data, s1.size) != 0)
		fail("the summary decodes to another record", type);
	free(sum);
	return 0;
}
