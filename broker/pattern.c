/*
 * pattern.c - NATS-style topic patterns: "*" one segment, ">" the rest.
 */
#include <string.h>

#include "codec.h"
#include "pattern.h"

int
pattern_valid(const char *p, size_t len)
{
	size_t i, seg = 0;

	if (p == NULL || len == 0 || len > FY_NAME_MAX)
		return 0;
	for (i = 0; i <= len; i++) {
		if (i < len && p[i] != '.')
			continue;
		/* Segment p[seg..i). */
		if (i == seg)
			return 0;
		if (i - seg == 1 && p[seg] == '>') {
			if (i != len)
				return 0;	/* ">" only at the end */
		} else if (!(i - seg == 1 && p[seg] == '*') &&
		    !fy_name_valid(p + seg, i - seg)) {
			return 0;		/* "a*", "a>", bad chars */
		}
		seg = i + 1;
	}
	return 1;
}

int
pattern_match(const char *pat, const char *topic, size_t len)
{
	const char *t = topic, *end = topic + len, *pe, *te;
	size_t plen;

	for (;;) {
		pe = strchr(pat, '.');
		plen = pe ? (size_t)(pe - pat) : strlen(pat);
		if (plen == 1 && pat[0] == '>')
			return t < end;		/* at least one segment left */
		if (t >= end)
			return 0;
		te = memchr(t, '.', (size_t)(end - t));
		if (te == NULL)
			te = end;
		if (te == t)
			return 0;		/* empty topic segment */
		if (!(plen == 1 && pat[0] == '*') &&
		    (plen != (size_t)(te - t) || memcmp(pat, t, plen) != 0))
			return 0;
		if (pe == NULL)
			return te == end;
		if (te == end)
			return 0;		/* pattern has more segments */
		pat = pe + 1;
		t = te + 1;
	}
}
