/*
 * msg.c - stored messages (one allocation each) and queue entries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include <uuid/uuid.h>

#include "heap.h"
#include "clock.h"
#include "msg.h"
#include "topic.h"
#include "trace.h"

static char *
put(char **cur, const char *p, size_t len)
{
	char *dst = *cur;

	if (len)
		memcpy(dst, p, len);
	*cur += len;
	return dst;
}

static void
put_str(char **cur, struct fy_str *dst, struct fy_str src)
{
	dst->p = put(cur, src.p, src.len);
	dst->len = src.len;
}

/* Where the 16 byte pairs of canonical UUID text start. */
static const uint8_t uuid_pos[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24,
    26, 28, 30, 32, 34};

/* Value of a lowercase hex digit, or 16 or more for anything else. */
static uint8_t
hexval(unsigned char c)
{
	/* Unsigned arithmetic: what is below '0' or 'a' wraps high. */
	uint8_t d = (uint8_t)(c - '0'), l = (uint8_t)(c - 'a');

	return d < 10 ? d : l < 6 ? (uint8_t)(l + 10) : 16;
}

/* Parse canonical lowercase UUID text; 0 if id is one.  On every publish
 * and replayed record, so it is a straight line. */
static int
uuid_parse_canonical(const char *id, size_t len, uint8_t out[16])
{
	const unsigned char *p = (const unsigned char *)id;
	unsigned bad = 0;

	if (len != MSG_ID_LEN || p[8] != '-' || p[13] != '-' ||
	    p[18] != '-' || p[23] != '-')
		return -1;
	for (int i = 0; i < 16; i++) {
		uint8_t hi = hexval(p[uuid_pos[i]]);
		uint8_t lo = hexval(p[uuid_pos[i] + 1]);

		bad |= (unsigned)(hi | lo);
		out[i] = (uint8_t)(hi << 4 | (lo & 15));
	}
	return bad & 0xf0 ? -1 : 0;
}

/* "00" .. "ff": a byte's two hex digits in one copy. */
static const char hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

static void
uuid_print(const uint8_t u[16], char out[MSG_ID_LEN + 1])
{
	out[8] = out[13] = out[18] = out[23] = '-';
	for (int i = 0; i < 16; i++)
		memcpy(out + uuid_pos[i], hex_pairs + 2 * u[i], 2);
	out[MSG_ID_LEN] = '\0';
}

/*
 * The id msg_id_generate() made last, in both forms: a generated id goes
 * straight into the message being built, so most messages are built from
 * it, and a compare saves parsing the text back.
 */
static uint8_t last_bin[16];
static char last_txt[MSG_ID_LEN + 1];

/* The same for the id msg_id_derive() made last. */
static uint8_t derived_bin[16];
static char derived_txt[MSG_ID_LEN + 1];

static int
id_to_bin(const char *id, size_t len, uint8_t out[16])
{
	if (len == MSG_ID_LEN && last_txt[0] &&
	    !memcmp(id, last_txt, MSG_ID_LEN)) {
		memcpy(out, last_bin, 16);
		return 0;
	}
	if (len == MSG_ID_LEN && derived_txt[0] &&
	    !memcmp(id, derived_txt, MSG_ID_LEN)) {
		memcpy(out, derived_bin, 16);
		return 0;
	}
	return uuid_parse_canonical(id, len, out);
}

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

struct msg_mem msg_mem;

/* ---- headers of paged messages ---- */

/*
 * A paged message without rare fields is its header alone: 72 bytes, all
 * alike, from slabs rather than malloc.  Not for the 8 bytes malloc would
 * add, but for the heap: a header malloc'd where a body was just freed
 * splits that hole, and what is left of it is too small for the next body,
 * so a broker paging out as fast as it is published would grow its heap by
 * a body per message (measured: RSS 72 MB for an 8 MB max_memory).  A
 * slab is SLAB_SIZE-aligned, so a header finds its slab by masking, and
 * goes back to the system once empty: a queue drained in order empties
 * them one after another.
 */
#define SLAB_SIZE (1u << 20)

struct slab {
	struct list link;	/* in slabs_partial while it has room */
	void *free;		/* freed slots, chained through them */
	uint32_t used;
	uint32_t fresh;		/* slots never handed out start here */
};

#define SLAB_FIRST ALIGN8(sizeof(struct slab))
#define SLAB_SLOTS ((SLAB_SIZE - SLAB_FIRST) / sizeof(struct msg))

static struct list slabs_partial = {&slabs_partial, &slabs_partial};

/* Under ASan, malloc: it then sees every header's lifetime. */
#ifdef __SANITIZE_ADDRESS__
static struct msg *
hdr_alloc(void)
{
	return malloc(sizeof(struct msg));
}

static void
hdr_free(struct msg *m)
{
	free(m);
}
#else
static struct slab *
slab_new(void)
{
	/* Twice the size, then trimmed to an aligned SLAB_SIZE. */
	char *p = mmap(NULL, 2 * SLAB_SIZE, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t a;
	struct slab *s;

	if (p == MAP_FAILED)
		return NULL;
	a = ((uintptr_t)p + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	if ((char *)a + SLAB_SIZE < p + 2 * SLAB_SIZE)
		munmap((char *)a + SLAB_SIZE, (size_t)(p + 2 * SLAB_SIZE -
		    ((char *)a + SLAB_SIZE)));
	s = (struct slab *)a;
	s->free = NULL;
	s->used = 0;
	s->fresh = 0;
	list_add_head(&slabs_partial, &s->link);
	return s;
}

static struct msg *
hdr_alloc(void)
{
	struct slab *s = list_first(&slabs_partial, struct slab, link);
	void *p;

	if (!s && !(s = slab_new()))
		return NULL;
	if ((p = s->free)) {
		memcpy(&s->free, p, sizeof(void *));
	} else {
		p = (char *)s + SLAB_FIRST + s->fresh++ * sizeof(struct msg);
	}
	if (++s->used == SLAB_SLOTS)
		list_del(&s->link);	/* full */
	return p;
}

static void
hdr_free(struct msg *m)
{
	struct slab *s = (struct slab *)((uintptr_t)m &
	    ~(uintptr_t)(SLAB_SIZE - 1));

	if (s->used-- == SLAB_SLOTS)
		list_add_head(&slabs_partial, &s->link);
	/* The last partial slab stays, lest one message paged out and freed
	 * over and over map and unmap it each time. */
	if (s->used == 0 && (slabs_partial.next != &s->link ||
	    slabs_partial.prev != &s->link)) {
		list_del(&s->link);
		munmap(s, SLAB_SIZE);
		return;
	}
	memcpy(m, &s->free, sizeof(void *));
	s->free = m;
}
#endif

/* Where a message's memory comes from, and goes back to. */
static int
in_slab(const struct msg *m)
{
	return (m->e0.flags & (MF_PAGED | MF_EXT)) == MF_PAGED;
}

static struct msg_ext *
ext_of(const struct msg *m)
{
	return (struct msg_ext *)((char *)m + ALIGN8(sizeof(*m) +
	    (m->e0.flags & MF_PAGED ? 0 : m->body_len)));
}

static struct msg *
build(const struct fy_pubmsg *pm, const char *id, size_t id_len,
    uint64_t ts, const struct fy_hist *hist, uint32_t nhist, int paged)
{
	size_t size = sizeof(struct msg) + (paged ? 0 : pm->body.len);
	uint8_t bin[16];
	int text_id = id_to_bin(id, id_len, bin) < 0;
	int has_ext = text_id || pm->nhdr || nhist || pm->reply_to.len ||
	    pm->corr.len || pm->delay_ms || pm->ttl_ms;
	struct msg_ext *x;
	struct msg *m;
	char *cur;

	if (id_len > FY_ID_MAX)
		return NULL;
	if (has_ext) {
		size = ALIGN8(size) + sizeof(*x) +
		    pm->nhdr * sizeof(struct fy_kv) +
		    nhist * sizeof(struct fy_hist) + pm->reply_to.len +
		    pm->corr.len + (text_id ? id_len + 1 : 0);
		for (uint32_t i = 0; i < pm->nhdr; i++)
			size += pm->hdr[i].k.len + pm->hdr[i].v.len;
		for (uint32_t i = 0; i < nhist; i++)
			size += hist[i].cause.len + hist[i].error.len +
			    hist[i].consumer.len;
	}
	if (!(m = paged && !has_ext ? hdr_alloc() : malloc(size)))
		return NULL;
	m->refs = 1;
	m->body_len = pm->body.len;
	m->seq = 0;
	m->ts = ts;
	list_init(&m->e0.link);
	m->e0.group = NULL;
	m->e0.attempts = 0;
	m->e0.flags = QE_FIRST;
	m->e0.x = 0;
	if (!text_id)
		memcpy(m->id, bin, sizeof(bin));
	if (paged) {
		m->e0.flags |= MF_PAGED;
		msg_mem.paged++;
		msg_mem.paged_bytes += pm->body.len;
	} else {
		if (pm->body.len)
			memcpy(msg_body(m), pm->body.p, pm->body.len);
		msg_mem.bytes += pm->body.len;
	}
	if (!has_ext)
		return m;

	m->e0.flags |= MF_EXT | (text_id ? MF_TEXT_ID : 0);
	x = ext_of(m);
	x->mono_ts = msg_mono_of(ts);
	x->delay_ms = pm->delay_ms < MSG_TIME_MAX ? pm->delay_ms :
	    MSG_TIME_MAX;
	x->ttl_ms = pm->ttl_ms < MSG_TIME_MAX ? pm->ttl_ms : MSG_TIME_MAX;
	x->nhdr = pm->nhdr;
	x->nhist = nhist;
	x->hdr = pm->nhdr ? (struct fy_kv *)(x + 1) : NULL;
	x->hist = nhist ? (struct fy_hist *)((struct fy_kv *)(x + 1) +
	    pm->nhdr) : NULL;
	cur = (char *)((struct fy_hist *)((struct fy_kv *)(x + 1) +
	    pm->nhdr) + nhist);
	for (uint32_t i = 0; i < pm->nhdr; i++) {
		put_str(&cur, &x->hdr[i].k, pm->hdr[i].k);
		put_str(&cur, &x->hdr[i].v, pm->hdr[i].v);
	}
	for (uint32_t i = 0; i < nhist; i++) {
		put_str(&cur, &x->hist[i].cause, hist[i].cause);
		put_str(&cur, &x->hist[i].error, hist[i].error);
		put_str(&cur, &x->hist[i].consumer, hist[i].consumer);
		x->hist[i].at = hist[i].at;
	}
	put_str(&cur, &x->reply_to, pm->reply_to);
	put_str(&cur, &x->corr, pm->corr);
	x->id = (struct fy_str){NULL, 0};
	if (text_id) {	/* NUL-terminated, for logs */
		put_str(&cur, &x->id, (struct fy_str){id, (uint32_t)id_len});
		*cur = '\0';
	}
	return m;
}

struct msg *
msg_new(const struct fy_pubmsg *pm, const char *id, size_t id_len,
    uint64_t ts, const struct fy_hist *hist, uint32_t nhist)
{
	return build(pm, id, id_len, ts, hist, nhist, 0);
}

struct msg *
msg_new_paged(const struct fy_pubmsg *pm, const char *id, size_t id_len,
    uint64_t ts, const struct fy_hist *hist, uint32_t nhist)
{
	return build(pm, id, id_len, ts, hist, nhist, 1);
}

/* ---- paging bodies out ---- */

static const char *(*load_hook)(void *, const struct msg *);
static void *load_arg;

void
msg_set_load_hook(const char *(*fn)(void *arg, const struct msg *m),
    void *arg)
{
	load_hook = fn;
	load_arg = arg;
}

const char *
msg_body_load(const struct msg *m)
{
	if (!msg_paged(m))
		return msg_body(m);
	return load_hook ? load_hook(load_arg, m) : NULL;
}

/* Bytes of the rare fields, as build() laid them out. */
static size_t
ext_size(const struct msg_ext *x)
{
	size_t n = sizeof(*x) + x->nhdr * sizeof(struct fy_kv) +
	    x->nhist * sizeof(struct fy_hist) + x->reply_to.len +
	    x->corr.len + (x->id.p ? x->id.len + 1 : 0);

	for (uint32_t i = 0; i < x->nhdr; i++)
		n += x->hdr[i].k.len + x->hdr[i].v.len;
	for (uint32_t i = 0; i < x->nhist; i++)
		n += x->hist[i].cause.len + x->hist[i].error.len +
		    x->hist[i].consumer.len;
	return n;
}

/* Point p, which pointed into [from, from + size], into the copy at to. */
static void
rebase(const char **p, const char *from, size_t size, const char *to)
{
	uintptr_t v = (uintptr_t)*p, f = (uintptr_t)from;

	if (v >= f && v <= f + size)
		*p = to + (v - f);
}

/* The rare fields were copied from ox to x (size bytes): their pointers
 * into the old allocation follow. */
static void
ext_rebase(struct msg_ext *x, const struct msg_ext *ox, size_t size)
{
	const char *from = (const char *)ox, *to = (const char *)x;

	rebase((const char **)&x->hdr, from, size, to);
	rebase((const char **)&x->hist, from, size, to);
	for (uint32_t i = 0; i < x->nhdr; i++) {
		rebase(&x->hdr[i].k.p, from, size, to);
		rebase(&x->hdr[i].v.p, from, size, to);
	}
	for (uint32_t i = 0; i < x->nhist; i++) {
		rebase(&x->hist[i].cause.p, from, size, to);
		rebase(&x->hist[i].error.p, from, size, to);
		rebase(&x->hist[i].consumer.p, from, size, to);
	}
	rebase(&x->reply_to.p, from, size, to);
	rebase(&x->corr.p, from, size, to);
	rebase(&x->id.p, from, size, to);
}

int
msg_can_page(const struct msg *m)
{
	uint32_t n = 0;

	if (msg_paged(m) || !m->seq || !m->body_len)
		return 0;
	for (struct qent *e = msg_ents((struct msg *)m); e;
	    e = msg_ents_next(e), n++)
		if ((e->flags & (QE_LEASED | QE_DURABLE)) != QE_DURABLE)
			return 0;
	return n > 0 && n == m->refs;
}

struct msg *
msg_page_out(struct msg *m)
{
	size_t xsize = m->e0.flags & MF_EXT ? ext_size(ext_of(m)) : 0;
	struct msg *n;
	struct qside *q;

	if (!(n = xsize ? malloc(ALIGN8(sizeof(*n)) + xsize) : hdr_alloc()))
		return NULL;
	*n = *m;
	n->e0.flags |= MF_PAGED;
	if (xsize) {
		memcpy(ext_of(n), ext_of(m), xsize);
		ext_rebase(ext_of(n), ext_of(m), xsize);
	}
	/* Whatever pointed at the old e0 or message points here now. */
	if (!(m->e0.flags & QE_INUSE) || list_empty(&m->e0.link)) {
		list_init(&n->e0.link);
	} else {
		n->e0.link.prev->next = &n->e0.link;
		n->e0.link.next->prev = &n->e0.link;
	}
	if ((q = qent_side(&n->e0))) {
		q->e = &n->e0;
		for (struct qent_x *x = q->more; x; x = x->mnext)
			x->msg = n;
	}
	msg_mem.bytes -= m->body_len;
	msg_mem.paged++;
	msg_mem.paged_bytes += m->body_len;
	msg_mem.paged_ever++;
	free(m);
	return n;
}

const struct msg_ext *
msg_ext(const struct msg *m)
{
	static const struct msg_ext none;

	return m->e0.flags & MF_EXT ? ext_of(m) : &none;
}

int64_t
msg_mono(const struct msg *m)
{
	return m->e0.flags & MF_EXT ? ext_of(m)->mono_ts : msg_mono_of(m->ts);
}

struct fy_str
msg_id(const struct msg *m, char buf[MSG_ID_LEN + 1])
{
	if (m->e0.flags & MF_TEXT_ID)
		return ext_of(m)->id;
	uuid_print(m->id, buf);
	return (struct fy_str){buf, MSG_ID_LEN};
}

static uint64_t
hash16(const uint8_t u[16])
{
	uint64_t a, b;

	memcpy(&a, u, 8);
	memcpy(&b, u + 8, 8);
	a ^= b * 0x9e3779b97f4a7c15ULL;
	a ^= a >> 29;
	a *= 0xbf58476d1ce4e5b9ULL;
	return a ^ (a >> 32);
}

uint64_t
msg_idh(const struct msg *m)
{
	if (m->e0.flags & MF_TEXT_ID)
		return trace_hash(ext_of(m)->id.p, ext_of(m)->id.len);
	return hash16(m->id);
}

uint64_t
msg_id_hash(const char *id, size_t len)
{
	uint8_t bin[16];

	if (uuid_parse_canonical(id, len, bin) == 0)
		return hash16(bin);
	return trace_hash(id, len);
}

/*
 * The turn's clocks are as good as fresh ones here: both are read at the
 * same instant, and only their difference matters, so the result is the
 * same monotonic time whenever in the turn it is asked for.
 */
int64_t
msg_mono_of(uint64_t wall_ms)
{
	int64_t now = (int64_t)clock_turn_wall_ms();
	int64_t mono = (int64_t)clock_turn_mono_ms();

	/* A damaged record may hold any time: keep the arithmetic in range
	 * (MSG_TIME_MAX either way is further than any real deadline). */
	if (wall_ms > (uint64_t)now + MSG_TIME_MAX)
		wall_ms = (uint64_t)now + MSG_TIME_MAX;
	if ((int64_t)wall_ms < now - (int64_t)MSG_TIME_MAX)
		return mono - (int64_t)MSG_TIME_MAX;
	return mono - (now - (int64_t)wall_ms);
}

static void side_release(struct qent *e);

void
msg_unref(struct msg *m)
{
	if (m && --m->refs == 0) {
		if (m->e0.flags & QE_SIDE)
			side_release(&m->e0);
		if (msg_paged(m)) {
			msg_mem.paged--;
			msg_mem.paged_bytes -= m->body_len;
		} else {
			msg_mem.bytes -= m->body_len;
		}
		if (in_slab(m))
			hdr_free(m);
		else
			free(m);
	}
}

static uint64_t id_base_lo;	/* the random bytes 8..15, big-endian */
static uint64_t id_lo;		/* bytes 8..15 of the last id (before the
				   variant bits) */
static uint64_t id_counter;

/* Print bytes from..15 of last_bin into last_txt. */
static void
print_tail(int from)
{
	for (int i = from; i < 16; i++)
		memcpy(last_txt + uuid_pos[i], hex_pairs + 2 * last_bin[i], 2);
}

void
msg_id_generate(char out[MSG_ID_LEN + 1])
{
	uint64_t lo;
	int from;

	if (id_counter == 0) {
		uuid_generate_random(last_bin);
		for (int i = 8; i < 16; i++)
			id_base_lo = id_base_lo << 8 | last_bin[i];
		uuid_print(last_bin, last_txt);
	}
	/*
	 * Add the counter to the low 64 random bits, read big-endian so the
	 * carry runs away from byte 8, whose top two bits are the RFC 4122
	 * variant (restored below).  Consecutive ids differ in their last
	 * byte or two: only those are printed again.
	 */
	lo = id_base_lo + ++id_counter;
	from = id_counter == 1 || lo == id_lo ? 8 :
	    15 - (63 - __builtin_clzll(lo ^ id_lo)) / 8;
	id_lo = lo;
	for (int i = 15; i >= from; i--)
		last_bin[i] = (uint8_t)(lo >> (8 * (15 - i)));
	if (from == 8)
		last_bin[8] = (last_bin[8] & 0x3f) | 0x80;
	print_tail(from);
	memcpy(out, last_txt, MSG_ID_LEN + 1);
}

/* SplitMix64's finaliser: every input bit reaches every output bit. */
static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * The pid msg_id_derive() hashed last and the state after it.  A
 * producer's publishes come in runs, and hashing its pid a byte at a
 * time is most of the cost of an id.
 */
static struct {
	size_t len;
	uint64_t h1, h2;
	char pid[FY_ID_MAX];
} derive_pid;

void
msg_id_derive(const char *pid, size_t len, uint64_t seq,
    char out[MSG_ID_LEN + 1])
{
	uint64_t h1 = 0x6a09e667f3bcc908ull ^ len, h2 = 0xbb67ae8584caa73bull;
	uint8_t *u = derived_bin;

	if (len && len == derive_pid.len && !memcmp(pid, derive_pid.pid, len)) {
		h1 = derive_pid.h1;
		h2 = derive_pid.h2;
	} else {
		for (size_t i = 0; i < len; i++) {
			h1 = mix64(h1 ^ (uint8_t)pid[i]);
			h2 = mix64(h2 + (uint8_t)pid[i] + h1);
		}
		if (len <= sizeof(derive_pid.pid)) {
			memcpy(derive_pid.pid, pid, len);
			derive_pid.len = len;
			derive_pid.h1 = h1;
			derive_pid.h2 = h2;
		}
	}
	h1 = mix64(h1 ^ seq);
	h2 = mix64(h2 ^ mix64(seq + h1));
	for (int i = 0; i < 8; i++) {
		u[i] = (uint8_t)(h1 >> (56 - 8 * i));
		u[8 + i] = (uint8_t)(h2 >> (56 - 8 * i));
	}
	u[6] = (u[6] & 0x0f) | 0x80;	/* version 8: custom (RFC 9562) */
	u[8] = (u[8] & 0x3f) | 0x80;	/* the RFC variant */
	uuid_print(u, derived_txt);
	memcpy(out, derived_txt, MSG_ID_LEN + 1);
}

const char *
qent_cause_name(int cause)
{
	static const char *const names[CAUSE_MAX] = {
		[CAUSE_TIMEOUT] = "timeout",
		[CAUSE_NACKED] = "nacked",
		[CAUSE_RELEASED] = "released",
		[CAUSE_DISCONNECTED] = "disconnected",
		[CAUSE_EXPIRED] = "expired",
		[CAUSE_OVERFLOW] = "overflow",
	};

	return cause >= 0 && cause < CAUSE_MAX ? names[cause] : "unknown";
}

/* ---- the side pool ---- */

/*
 * Sides live in chunks that never move, so heap nodes inside them stay
 * valid, and are named by index so that an entry spends 4 bytes on one.
 * Freed sides go on a free list; the chunks go when none is in use.
 */
#define SIDE_CHUNK 1024
#define SIDE_NIL UINT32_MAX

static struct qside **side_chunks;
static uint32_t side_nchunks, side_free = SIDE_NIL, side_used;

struct qside *
qside_at(uint32_t idx)
{
	return &side_chunks[idx / SIDE_CHUNK][idx % SIDE_CHUNK];
}

static int
side_grow(void)
{
	struct qside **c, *chunk;

	if (side_nchunks >= SIDE_NIL / SIDE_CHUNK - 1)
		return -ENOMEM;
	if (!(c = realloc(side_chunks, (side_nchunks + 1) * sizeof(*c))))
		return -ENOMEM;
	side_chunks = c;
	if (!(chunk = malloc(SIDE_CHUNK * sizeof(*chunk))))
		return -ENOMEM;
	side_chunks[side_nchunks] = chunk;
	for (uint32_t i = SIDE_CHUNK; i-- > 0;) {
		chunk[i].lease = side_free;
		side_free = side_nchunks * SIDE_CHUNK + i;
	}
	side_nchunks++;
	return 0;
}

struct qside *
qent_side_get(struct qent *e)
{
	struct qside *q;
	uint32_t idx;

	if (e->flags & QE_SIDE)
		return qside_at(e->x);
	if (side_free == SIDE_NIL && side_grow() < 0)
		return NULL;
	idx = side_free;
	q = qside_at(idx);
	side_free = q->lease;
	side_used++;
	q->e = e;
	hnode_init(&q->dn);
	hnode_init(&q->tn);
	q->hist = NULL;
	q->more = NULL;
	q->lease = e->flags & QE_LEASED ? e->x : 0;
	/* Counted here from e0 on: only e0 can be durable without a side. */
	q->ndurable = (e->flags & (QE_FIRST | QE_DURABLE)) ==
	    (QE_FIRST | QE_DURABLE);
	memset(q->causes, 0, sizeof(q->causes));
	q->nhist = 0;
	q->order = 0;
	e->x = idx;
	e->flags |= QE_SIDE;
	return q;
}

void
qent_set_lease_slot(struct qent *e, uint32_t slot)
{
	if (e->flags & QE_SIDE)
		qside_at(e->x)->lease = slot;
	else
		e->x = slot;
}

static void
hist_entry_fini(struct qhist_entry *h)
{
	free(h->consumer);
	free(h->error);
}

/* Forget e's own state in its side (not the message's chain). */
static void
side_clear(struct qside *q)
{
	for (uint16_t i = 0; i < q->nhist; i++)
		hist_entry_fini(&q->hist[i]);
	free(q->hist);
	q->hist = NULL;
	q->nhist = 0;
	memset(q->causes, 0, sizeof(q->causes));
	q->order = 0;
	hnode_init(&q->dn);
	hnode_init(&q->tn);
}

static void
side_release(struct qent *e)
{
	uint32_t idx = e->x;
	struct qside *q = qside_at(idx);

	side_clear(q);
	e->x = e->flags & QE_LEASED ? q->lease : 0;
	e->flags &= (uint16_t)~QE_SIDE;
	q->lease = side_free;
	side_free = idx;
	side_used--;
}

void
qside_pool_trim(void)
{
	if (side_used)
		return;
	for (uint32_t i = 0; i < side_nchunks; i++)
		free(side_chunks[i]);
	free(side_chunks);
	side_chunks = NULL;
	side_nchunks = 0;
	side_free = SIDE_NIL;
}

/* ---- entries ---- */

uint32_t
msg_ndurable(const struct msg *m)
{
	const struct qside *q0 = qent_side(&m->e0);

	return q0 ? q0->ndurable : (m->e0.flags & QE_DURABLE) != 0;
}

void
qent_set_durable(struct qent *e, int on)
{
	struct qside *q0 = qent_side(&qent_msg(e)->e0);

	if (!on == !(e->flags & QE_DURABLE))
		return;
	if (on)
		e->flags |= QE_DURABLE;
	else
		e->flags &= (uint16_t)~QE_DURABLE;
	if (q0)
		q0->ndurable += on ? 1 : (uint32_t)-1;
}

struct qent *
msg_ents(struct msg *m)
{
	struct qside *q;

	if (m->e0.flags & QE_INUSE)
		return &m->e0;
	q = qent_side(&m->e0);
	return q && q->more ? &q->more->e : NULL;
}

struct qent *
msg_ents_next(struct qent *e)
{
	struct qside *q;

	if (!(e->flags & QE_FIRST))
		return ((struct qent_x *)e)->mnext ?
		    &((struct qent_x *)e)->mnext->e : NULL;
	q = qent_side(e);
	return q && q->more ? &q->more->e : NULL;
}

struct qent *
qent_new(struct msg *m, struct group *g)
{
	struct qent *e;

	if (!(m->e0.flags & QE_TAKEN)) {
		e = &m->e0;
		e->flags |= QE_TAKEN | QE_INUSE;
	} else {
		struct qside *q0 = qent_side_get(&m->e0);
		struct qent_x *x;

		if (!q0 || !(x = malloc(sizeof(*x))))
			return NULL;
		x->msg = m;
		x->mnext = q0->more;
		q0->more = x;
		e = &x->e;
		e->flags = QE_INUSE;
		e->x = 0;
	}
	list_init(&e->link);
	e->group = g;
	e->attempts = 0;
	msg_ref(m);
	return e;
}

static void (*release_hook)(void *, struct qent *);
static void *release_arg;
static void (*gone_hook)(struct qent *);

void
qent_set_gone_hook(void (*fn)(struct qent *e))
{
	gone_hook = fn;
}

void
qent_set_release_hook(void (*fn)(void *arg, struct qent *e), void *arg)
{
	release_hook = fn;
	release_arg = arg;
}

void
qent_free(struct qent *e)
{
	struct msg *m;

	if (!e)
		return;
	m = qent_msg(e);
	if (e->group && gone_hook)
		gone_hook(e);
	if ((e->flags & QE_DURABLE) && release_hook)
		release_hook(release_arg, e);
	qent_set_durable(e, 0);
	e->flags &= (uint16_t)~(QE_INUSE | QE_LEASED);
	if (e->flags & QE_FIRST) {
		struct qside *q = qent_side(e);

		/* e0's side also holds the message's other entries. */
		if (q && q->more)
			side_clear(q);
		else if (q)
			side_release(e);
		e->group = NULL;
	} else {
		struct qent_x *x = (struct qent_x *)e, **pp;
		struct qside *q0 = qent_side(&m->e0);

		if (e->flags & QE_SIDE)
			side_release(e);
		for (pp = &q0->more; *pp; pp = &(*pp)->mnext)
			if (*pp == x) {
				*pp = x->mnext;
				break;
			}
		if (!q0->more && !(m->e0.flags & QE_INUSE))
			side_release(&m->e0);
		free(x);
	}
	msg_unref(m);
}

int
qent_frame(const struct qent *e, struct fy_str topic, struct fy_frame *f,
    char idbuf[MSG_ID_LEN + 1])
{
	const struct msg *m = qent_msg(e);
	const struct msg_ext *x = msg_ext(m);
	const char *body = msg_body_load(m);

	memset(f, 0, sizeof(*f));
	f->type = FY_T_MSG;
	f->msg.id = msg_id(m, idbuf);
	f->msg.topic = topic;
	f->msg.attempt = (uint32_t)e->attempts + 1;
	f->msg.ts = m->ts;
	f->msg.hdr = x->hdr;
	f->msg.nhdr = x->nhdr;
	f->msg.hist = x->hist;
	f->msg.nhist = x->nhist;
	f->msg.reply_to = x->reply_to;
	f->msg.corr = x->corr;
	f->msg.body = (struct fy_str){body, m->body_len};
	return body || !m->body_len ? 0 : -EIO;
}

void
qent_count_cause(struct qent *e, int cause)
{
	struct qside *q;

	if (cause < 0 || cause >= CAUSE_NFAIL || !(q = qent_side_get(e)))
		return;
	if (q->causes[cause] < UINT16_MAX)
		q->causes[cause]++;
}

int
qent_hist_add(struct qent *e, int cause, uint64_t at, const char *consumer,
    size_t consumer_len, const char *error, size_t error_len)
{
	struct qside *q = qent_side_get(e);
	struct qhist_entry *h;

	if (!q)
		return -ENOMEM;
	if (!q->hist && !(q->hist = calloc(QHIST_MAX, sizeof(*q->hist))))
		return -ENOMEM;
	if (q->nhist == QHIST_MAX) {
		/* Keep the most recent: drop the oldest. */
		hist_entry_fini(&q->hist[0]);
		memmove(q->hist, q->hist + 1,
		    (QHIST_MAX - 1) * sizeof(*q->hist));
		q->nhist--;
	}
	h = &q->hist[q->nhist];
	h->at = at;
	h->cause = (uint8_t)cause;
	h->consumer = strndup(consumer ? consumer : "", consumer_len);
	h->error = error_len ? strndup(error, error_len) : NULL;
	if (!h->consumer || (error_len && !h->error)) {
		hist_entry_fini(h);
		return -ENOMEM;
	}
	q->nhist++;
	return 0;
}
