/*
 * trace.h - a bounded ring of recent message events, for TRACE.
 *
 * Every event is 40 bytes: the message is named by a 64-bit hash of its id
 * (cached in struct msg), topics, groups and consumers by interned symbol
 * numbers (cached in their structs), so recording one costs a few stores
 * and no allocation.  Nack error texts are interned too, up to
 * TRACE_ERR_SYMS distinct ones (then recorded as "" rather than letting
 * clients grow the table without bound).  The ring keeps the last trace_events events of this
 * run; a TRACE scans it.  Nothing here is journaled.
 */
#ifndef FERRY_BROKER_TRACE_H
#define FERRY_BROKER_TRACE_H

#include <stddef.h>
#include <stdint.h>

enum trace_what {
	TR_PUBLISHED,
	TR_DUPLICATE,
	TR_DELIVERED,
	TR_ACKED,
	TR_TIMEOUT,		/* the order of enum qent_cause */
	TR_NACKED,
	TR_RELEASED,
	TR_DISCONNECTED,
	TR_EXPIRED,
	TR_DEAD_LETTERED,
	TR_DROPPED,
	TR_OVERFLOW,
	TR_MAX
};

struct trace_rec {
	uint64_t at;		/* unix ms */
	uint64_t idh;		/* trace_hash() of the message id */
	uint32_t topic, group, who;	/* symbols; 0 = none */
	uint32_t err;		/* symbol of a nack's error text, or 0 */
	uint16_t attempt;
	uint8_t what;		/* enum trace_what */
};

#define TRACE_ERR_SYMS 65536	/* distinct symbols before texts are
				   no longer interned */

struct trace {
	struct trace_rec *ring;	/* NULL: tracing off */
	size_t cap, next;	/* next slot to write */
	uint64_t total;		/* events ever recorded */
	char **syms;		/* symbol -> name; [0] unused */
	uint32_t nsyms, syms_cap;
	uint32_t *symtab;	/* open-addressing hash of symbols */
	uint32_t symtab_cap;
};

int trace_init(struct trace *t, size_t events);	/* 0 or -ENOMEM */
void trace_fini(struct trace *t);

uint64_t trace_hash(const char *id, size_t len);

/* The symbol of name (interned on first use); 0 if out of memory. */
uint32_t trace_sym(struct trace *t, const char *name, size_t len);
const char *trace_sym_name(const struct trace *t, uint32_t sym);

static inline void
trace_add(struct trace *t, uint64_t at, uint64_t idh, uint8_t what,
    uint32_t topic, uint32_t group, uint32_t who, uint32_t attempt)
{
	struct trace_rec *r;

	if (!t->ring)
		return;
	r = &t->ring[t->next];
	r->err = 0;
	r->at = at;
	r->idh = idh;
	r->what = what;
	r->topic = topic;
	r->group = group;
	r->who = who;
	r->attempt = (uint16_t)(attempt > UINT16_MAX ? UINT16_MAX : attempt);
	if (++t->next == t->cap)
		t->next = 0;
	t->total++;
}

/* Attach an error text to the event just added. */
void trace_set_err(struct trace *t, const char *err, size_t len);

/*
 * Call fn for each recorded event of the message whose id hashes to idh,
 * oldest first.  Returns how many matched.
 */
size_t trace_find(const struct trace *t, uint64_t idh,
    void (*fn)(void *arg, const struct trace_rec *r), void *arg);

const char *trace_what_name(int what);

#endif
