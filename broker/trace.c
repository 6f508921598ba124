/*
 * trace.c - ring of recent message events and the symbol table.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

int
trace_init(struct trace *t, size_t events)
{
	memset(t, 0, sizeof(*t));
	if (!events)
		return 0;
	if (!(t->ring = calloc(events, sizeof(*t->ring))))
		return -ENOMEM;
	t->cap = events;
	t->nsyms = 1;		/* symbol 0 means none */
	return 0;
}

void
trace_fini(struct trace *t)
{
	for (uint32_t i = 1; i < t->nsyms; i++)
		free(t->syms[i]);
	free(t->syms);
	free(t->symtab);
	free(t->ring);
	memset(t, 0, sizeof(*t));
}

/* A 64-bit mix (the finaliser of MurmurHash3 / splitmix64). */
static inline uint64_t
mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

uint64_t
trace_hash(const char *id, size_t len)
{
	/*
	 * Eight bytes a step: this runs for every message stored and every
	 * symbol looked up, and byte-at-a-time FNV cost more than the rest of
	 * tracing.  Not for adversaries: a collision only mixes two messages'
	 * TRACE output.
	 */
	uint64_t h = 0x9e3779b97f4a7c15ull ^ len, w;

	for (; len >= 8; id += 8, len -= 8) {
		memcpy(&w, id, 8);
		h = mix(h ^ w);
	}
	w = 0;
	memcpy(&w, id, len);
	h = mix(h ^ w);
	return h ? h : 1;
}

static int
symtab_grow(struct trace *t)
{
	uint32_t cap = t->symtab_cap ? t->symtab_cap * 2 : 256;
	uint32_t *tab = calloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (uint32_t s = 1; s < t->nsyms; s++) {
		const char *n = t->syms[s];
		uint32_t i = (uint32_t)trace_hash(n, strlen(n)) & (cap - 1);

		while (tab[i])
			i = (i + 1) & (cap - 1);
		tab[i] = s;
	}
	free(t->symtab);
	t->symtab = tab;
	t->symtab_cap = cap;
	return 0;
}

uint32_t
trace_sym(struct trace *t, const char *name, size_t len)
{
	uint32_t i, s;

	if (!t->ring)
		return 0;
	if ((t->nsyms + 1) * 2 > t->symtab_cap && symtab_grow(t) < 0)
		return 0;
	i = (uint32_t)trace_hash(name, len) & (t->symtab_cap - 1);
	for (; (s = t->symtab[i]); i = (i + 1) & (t->symtab_cap - 1))
		if (strlen(t->syms[s]) == len && !memcmp(t->syms[s], name, len))
			return s;
	if (t->nsyms >= t->syms_cap) {
		uint32_t cap = t->syms_cap ? t->syms_cap * 2 : 64;
		char **syms = realloc(t->syms, cap * sizeof(*syms));

		if (!syms)
			return 0;
		t->syms = syms;
		t->syms_cap = cap;
	}
	if (!(t->syms[t->nsyms] = strndup(name, len)))
		return 0;
	t->symtab[i] = t->nsyms;
	return t->nsyms++;
}

void
trace_set_err(struct trace *t, const char *err, size_t len)
{
	size_t last;

	if (!t->ring || !len || t->nsyms >= TRACE_ERR_SYMS)
		return;
	last = t->next ? t->next - 1 : t->cap - 1;
	t->ring[last].err = trace_sym(t, err, len);
}

const char *
trace_sym_name(const struct trace *t, uint32_t sym)
{
	return sym && sym < t->nsyms ? t->syms[sym] : "";
}

size_t
trace_find(const struct trace *t, uint64_t idh,
    void (*fn)(void *arg, const struct trace_rec *r), void *arg)
{
	size_t n = 0, count = t->total < t->cap ? (size_t)t->total : t->cap;
	size_t start = t->total < t->cap ? 0 : t->next;

	for (size_t k = 0; k < count; k++) {
		const struct trace_rec *r = &t->ring[(start + k) % t->cap];

		if (r->idh == idh) {
			fn(arg, r);
			n++;
		}
	}
	return n;
}

const char *
trace_what_name(int what)
{
	static const char *const names[TR_MAX] = {
		[TR_PUBLISHED] = "published",
		[TR_DUPLICATE] = "duplicate",
		[TR_DELIVERED] = "delivered",
		[TR_ACKED] = "acked",
		[TR_TIMEOUT] = "timeout",
		[TR_NACKED] = "nacked",
		[TR_RELEASED] = "released",
		[TR_DISCONNECTED] = "disconnected",
		[TR_EXPIRED] = "expired",
		[TR_DEAD_LETTERED] = "dead-lettered",
		[TR_DROPPED] = "dropped",
		[TR_OVERFLOW] = "overflow",
	};

	return what >= 0 && what < TR_MAX ? names[what] : "unknown";
}
