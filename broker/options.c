/*
 * options.c - one table drives the config file, the command line, --help
 * and the range checks, so that the four cannot drift apart.
 *
 * On error the struct may be partly updated: callers exit, so no attempt is
 * made to roll back.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "log.h"
#include "options.h"

/*
 * A frame carries a message plus its envelope (type, rid, topic, id,
 * headers, attempt...): keep this much room beside the largest body.
 */
#define FRAME_OVERHEAD 4096

enum opt_type {
	T_STRING,	/* non-empty text */
	T_OPTPATH,	/* text; empty means unset (NULL) */
	T_UINT,		/* decimal integer */
	T_SIZE,		/* integer with an optional K, M or G suffix */
	T_SECONDS,	/* seconds, to the millisecond; stored in ms */
	T_LOGLEVEL,
	T_FSYNC,
	T_BOOL,		/* yes/no, true/false, on/off, 1/0; stored 1/0 */
	T_PORT,		/* 0..65535, or -1: no such listener */
};

enum opt_width {
	W_PTR,		/* char * */
	W_INT,
	W_U32,
	W_U64,
};

struct opt_def {
	const char *key;	/* config-file key */
	const char *name;	/* long option: the key with '-' for '_' */
	int shortopt;		/* 0: long option only */
	enum opt_type type;
	size_t off;		/* the field in struct options */
	enum opt_width width;
	uint64_t min, max;	/* bounds in stored units (ms for T_SECONDS) */
	const char *arg;	/* metavariable in --help */
	const char *help;
	uint64_t (*empty)(void);	/* numbers: an empty value means the
					   default this computes */
};

#define F_PTR(m) .off = offsetof(struct options, m), .width = W_PTR
#define F_INT(m) .off = offsetof(struct options, m), .width = W_INT
#define F_U32(m) .off = offsetof(struct options, m), .width = W_U32
#define F_U64(m) .off = offsetof(struct options, m), .width = W_U64

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)

/* max_memory's default: a quarter of the machine's memory, so that a
 * backlog pages out well before it competes with everything else. */
static uint64_t
default_max_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || size <= 0)
		return 1 * GIB;
	return (uint64_t)pages * (uint64_t)size / 4;
}

/* Order is --help's order and conf/ferryd.conf's. */
static const struct opt_def opt_defs[] = {
	{ .key = "listen", .name = "listen", .shortopt = 'l',
	  .type = T_STRING, F_PTR(listen), .arg = "ADDR",
	  .help = "address to listen on" },
	{ .key = "port", .name = "port", .shortopt = 'p',
	  .type = T_PORT, F_INT(port), .min = 0, .max = 65535, .arg = "PORT",
	  .help = "TCP port; 0 picks one; -1: none (TLS only)" },
	{ .key = "port_file", .name = "port-file",
	  .type = T_OPTPATH, F_PTR(port_file), .arg = "FILE",
	  .help = "write the bound port to FILE" },
	{ .key = "data_dir", .name = "data-dir", .shortopt = 'd',
	  .type = T_STRING, F_PTR(data_dir), .arg = "DIR",
	  .help = "journal directory" },
	{ .key = "fsync", .name = "fsync",
	  .type = T_FSYNC, F_INT(fsync), .arg = "POLICY",
	  .help = "always, everysec or never" },
	{ .key = "segment_size", .name = "segment-size",
	  .type = T_SIZE, F_U64(segment_size), .min = 64 * KIB, .max = GIB,
	  .arg = "SIZE", .help = "journal segment file size" },
	{ .key = "max_memory", .name = "max-memory",
	  .type = T_SIZE, F_U64(max_memory), .min = 0, .max = UINT64_MAX,
	  .arg = "SIZE", .empty = default_max_memory,
	  .help = "bodies held in memory; 0 = no limit" },
	{ .key = "repair_journal", .name = "repair-journal",
	  .type = T_UINT, F_INT(journal_repair), .min = 0, .max = 1,
	  .arg = "0|1",
	  .help = "1: cut the journal at a bad record" },
	{ .key = "dedup_window", .name = "dedup-window",
	  .type = T_SECONDS, F_U64(dedup_window_ms), .min = 0,
	  .max = UINT32_MAX, .arg = "SECONDS",
	  .help = "how long producer ids are remembered" },
	/* Ten years: longer is "never", which 0 says. */
	{ .key = "producer_ttl", .name = "producer-ttl",
	  .type = T_SECONDS, F_U64(producer_ttl_ms), .min = 0,
	  .max = 3650ULL * 86400 * 1000, .arg = "SECONDS",
	  .help = "forget producers idle this long; 0 = never" },
	{ .key = "ack_timeout", .name = "ack-timeout",
	  .type = T_SECONDS, F_U32(ack_timeout_ms), .min = 1,
	  .max = UINT32_MAX, .arg = "SECONDS",
	  .help = "lease before redelivery" },
	{ .key = "max_attempts", .name = "max-attempts",
	  .type = T_UINT, F_U32(max_attempts), .min = 1, .max = UINT32_MAX,
	  .arg = "N", .help = "deliveries before dead-lettering" },
	{ .key = "prefetch", .name = "prefetch",
	  .type = T_UINT, F_U32(default_prefetch), .min = 1,
	  .max = UINT32_MAX, .arg = "N",
	  .help = "unacked deliveries per consumer" },
	{ .key = "retry_backoff_base", .name = "retry-backoff-base",
	  .type = T_SECONDS, F_U32(retry_base_ms), .min = 0,
	  .max = UINT32_MAX, .arg = "SECONDS",
	  .help = "first redelivery delay" },
	{ .key = "retry_backoff_max", .name = "retry-backoff-max",
	  .type = T_SECONDS, F_U32(retry_max_ms), .min = 0,
	  .max = UINT32_MAX, .arg = "SECONDS",
	  .help = "cap on redelivery delay" },
	/*
	 * A frame is held whole in memory while it is decoded: past 1 GiB
	 * that is a misconfiguration, not a workload.
	 */
	{ .key = "max_frame_size", .name = "max-frame-size",
	  .type = T_SIZE, F_U32(max_frame), .min = 8 * KIB, .max = GIB,
	  .arg = "SIZE", .help = "largest frame accepted" },
	{ .key = "max_message_size", .name = "max-message-size",
	  .type = T_SIZE, F_U32(max_message), .min = 1, .max = GIB,
	  .arg = "SIZE", .help = "largest message body" },
	{ .key = "max_connections", .name = "max-connections",
	  .type = T_UINT, F_U32(max_connections), .min = 1,
	  .max = UINT32_MAX, .arg = "N",
	  .help = "simultaneous clients" },
	{ .key = "max_output_buffer", .name = "max-output-buffer",
	  .type = T_SIZE, F_U64(max_output), .min = 8 * KIB,
	  .max = UINT64_MAX, .arg = "SIZE",
	  .help = "unsent bytes per connection" },
	{ .key = "handshake_timeout", .name = "handshake-timeout",
	  .type = T_SECONDS, F_U32(handshake_timeout_ms), .min = 1,
	  .max = UINT32_MAX, .arg = "SECONDS",
	  .help = "time allowed for HELLO" },
	{ .key = "trace_events", .name = "trace-events",
	  .type = T_UINT, F_U32(trace_events), .min = 0, .max = 100000000,
	  .arg = "N", .help = "recent message events kept for TRACE" },
	{ .key = "idle_timeout", .name = "idle-timeout",
	  .type = T_SECONDS, F_U32(idle_timeout_ms), .min = 0,
	  .max = UINT32_MAX, .arg = "SECONDS",
	  .help = "close clients silent this long; 0 = never" },
	{ .key = "max_topics", .name = "max-topics",
	  .type = T_UINT, F_U32(max_topics), .min = 1, .max = UINT32_MAX,
	  .arg = "N", .help = "topics clients may create" },
	{ .key = "max_groups", .name = "max-groups",
	  .type = T_UINT, F_U32(max_groups), .min = 1, .max = UINT32_MAX,
	  .arg = "N", .help = "groups, all topics together" },
	{ .key = "flow_high_water", .name = "flow-high-water",
	  .type = T_UINT, F_U32(flow_high_water), .min = 0,
	  .max = UINT32_MAX, .arg = "N",
	  .help = "ready messages pausing publishers" },
	{ .key = "ephemeral_max_bytes", .name = "ephemeral-max-bytes",
	  .type = T_SIZE, F_U64(ephemeral_max_bytes), .min = 0,
	  .max = UINT64_MAX, .arg = "SIZE",
	  .help = "ephemeral group bound; 0 = none" },
	{ .key = "users_file", .name = "users-file",
	  .type = T_OPTPATH, F_PTR(users_file), .arg = "FILE",
	  .help = "users and permissions; clients must log in" },
	{ .key = "allow_anonymous", .name = "allow-anonymous",
	  .type = T_BOOL, F_INT(allow_anonymous), .arg = "yes|no",
	  .help = "no users_file on a non-loopback listen" },
	{ .key = "tls_port", .name = "tls-port",
	  .type = T_UINT, F_INT(tls_port), .min = 0, .max = 65535,
	  .arg = "PORT", .help = "TLS listener's port (with tls_cert)" },
	{ .key = "tls_cert", .name = "tls-cert",
	  .type = T_OPTPATH, F_PTR(tls_cert), .arg = "FILE",
	  .help = "PEM certificate chain: turns TLS on" },
	{ .key = "tls_key", .name = "tls-key",
	  .type = T_OPTPATH, F_PTR(tls_key), .arg = "FILE",
	  .help = "PEM private key of tls_cert" },
	{ .key = "tls_ca", .name = "tls-ca",
	  .type = T_OPTPATH, F_PTR(tls_ca), .arg = "FILE",
	  .help = "CAs whose client certificates log in" },
	{ .key = "drain_timeout", .name = "drain-timeout",
	  .type = T_SECONDS, F_U32(drain_timeout_ms), .min = 0,
	  .max = UINT32_MAX, .arg = "SECONDS",
	  .help = "on SIGTERM, wait this long for acks" },
	{ .key = "metrics_listen", .name = "metrics-listen",
	  .type = T_OPTPATH, F_PTR(metrics_listen), .arg = "ADDR:PORT",
	  .help = "HTTP for /metrics, /healthz, /readyz" },
	{ .key = "metrics_max_groups", .name = "metrics-max-groups",
	  .type = T_UINT, F_U32(metrics_max_groups), .min = 0,
	  .max = UINT32_MAX, .arg = "N",
	  .help = "groups given their own series in /metrics" },
	{ .key = "log_level", .name = "log-level",
	  .type = T_LOGLEVEL, F_INT(log_level), .arg = "LEVEL",
	  .help = "error, warn, info or debug" },
};

#define N_DEFS (sizeof(opt_defs) / sizeof(opt_defs[0]))
#define OPT_CHECK 1	/* --check-config: no short form, not a setting */

const char *
options_key(size_t i)
{
	return i < N_DEFS ? opt_defs[i].key : NULL;
}

const char *
options_flag(size_t i)
{
	return i < N_DEFS ? opt_defs[i].name : NULL;
}

static const char *const fsync_names[] = {
	[FSYNC_ALWAYS] = "always",
	[FSYNC_EVERYSEC] = "everysec",
	[FSYNC_NEVER] = "never",
};

static const char *const level_names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARN] = "warn",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

int
options_init(struct options *o)
{
	memset(o, 0, sizeof(*o));
	o->listen = strdup("127.0.0.1");
	o->port = FERRY_DEFAULT_PORT;
	o->data_dir = strdup("ferry-data");
	o->log_level = LOG_INFO;
	o->ack_timeout_ms = 30000;
	o->max_attempts = 5;
	o->default_prefetch = 16;
	o->retry_base_ms = 1000;
	o->retry_max_ms = 60000;
	o->max_frame = 8 * MIB;
	o->max_message = 1 * MIB;
	o->max_connections = 10000;
	o->max_output = 64 * MIB;
	o->handshake_timeout_ms = 10000;
	o->fsync = FSYNC_ALWAYS;
	o->segment_size = 64 * MIB;
	o->max_memory = default_max_memory();
	o->journal_repair = 0;
	o->dedup_window_ms = 120000;
	o->producer_ttl_ms = 86400000;
	o->trace_events = 100000;
	o->idle_timeout_ms = 0;
	o->max_topics = 100000;
	o->max_groups = 100000;
	o->flow_high_water = 10000;
	o->ephemeral_max_bytes = 64 * MIB;
	o->tls_port = FERRY_DEFAULT_TLS_PORT;
	o->metrics_max_groups = 10000;
	o->drain_timeout_ms = 10000;
	if (o->listen == NULL || o->data_dir == NULL) {
		options_fini(o);
		return -ENOMEM;
	}
	return 0;
}

void
options_fini(struct options *o)
{
	free(o->config);
	free(o->listen);
	free(o->port_file);
	free(o->data_dir);
	free(o->metrics_listen);
	free(o->users_file);
	free(o->tls_cert);
	free(o->tls_key);
	free(o->tls_ca);
	o->config = o->listen = o->port_file = o->data_dir = NULL;
	o->users_file = o->tls_cert = o->tls_key = o->tls_ca = NULL;
	o->metrics_listen = NULL;
}

static const struct opt_def *
find_def(const char *key)
{
	size_t i;

	for (i = 0; i < N_DEFS; i++) {
		if (strcmp(opt_defs[i].key, key) == 0)
			return &opt_defs[i];
	}
	return NULL;
}

static char **
field_str(struct options *o, const struct opt_def *d)
{
	return (char **)((char *)o + d->off);
}

static void
field_put(struct options *o, const struct opt_def *d, uint64_t v)
{
	char *p = (char *)o + d->off;

	/* Bounds were checked against the table, which fits each width. */
	switch (d->width) {
	case W_INT:
		*(int *)p = (int)v;
		break;
	case W_U32:
		*(uint32_t *)p = (uint32_t)v;
		break;
	case W_U64:
		*(uint64_t *)p = v;
		break;
	case W_PTR:
		break;
	}
}

static uint64_t
field_get(const struct options *o, const struct opt_def *d)
{
	const char *p = (const char *)o + d->off;

	switch (d->width) {
	case W_INT:
		return (uint64_t)*(const int *)p;
	case W_U32:
		return *(const uint32_t *)p;
	case W_U64:
		return *(const uint64_t *)p;
	case W_PTR:
		break;
	}
	return 0;
}

/* Text for a stored value, in the syntax the parser accepts back. */
static void
format_value(const struct opt_def *d, uint64_t v, char *buf, size_t len)
{
	unsigned long long u = v;
	size_t n;

	switch (d->type) {
	case T_SIZE:
		if (u != 0 && u % GIB == 0)
			snprintf(buf, len, "%lluG", u / GIB);
		else if (u != 0 && u % MIB == 0)
			snprintf(buf, len, "%lluM", u / MIB);
		else if (u != 0 && u % KIB == 0)
			snprintf(buf, len, "%lluK", u / KIB);
		else
			snprintf(buf, len, "%llu", u);
		break;
	case T_SECONDS:
		snprintf(buf, len, "%llu.%03llu", u / 1000, u % 1000);
		n = strlen(buf);
		while (buf[n - 1] == '0')
			buf[--n] = '\0';
		if (buf[n - 1] == '.')
			buf[n - 1] = '\0';
		break;
	case T_LOGLEVEL:
		snprintf(buf, len, "%s", u <= LOG_DEBUG ? level_names[u] : "?");
		break;
	case T_BOOL:
		snprintf(buf, len, "%s", u ? "yes" : "no");
		break;
	case T_PORT:
		snprintf(buf, len, "%d", (int)u);
		break;
	case T_FSYNC:
		snprintf(buf, len, "%s",
		    u <= FSYNC_NEVER ? fsync_names[u] : "?");
		break;
	default:
		snprintf(buf, len, "%llu", u);
		break;
	}
}

/*
 * Decimal digits only: strtoull() alone would take leading blanks, a sign
 * (wrapping "-1" to 2^64-1) and an empty string.  Stops at the first
 * non-digit; *end says where.
 */
static int
parse_digits(const char *s, uint64_t *v, const char **end)
{
	char *e;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &e, 10);
	if (errno == ERANGE)
		return -ERANGE;
	*end = e;
	return 0;
}

static int
parse_uint(const char *s, uint64_t *v)
{
	const char *end;
	int r = parse_digits(s, v, &end);

	if (r == 0 && *end != '\0')
		r = -EINVAL;
	return r;
}

static int
parse_size(const char *s, uint64_t *v)
{
	const char *end;
	unsigned shift = 0;
	int r = parse_digits(s, v, &end);

	if (r < 0)
		return r;
	switch (*end) {
	case '\0':
		return 0;
	case 'K': case 'k':
		shift = 10;
		break;
	case 'M': case 'm':
		shift = 20;
		break;
	case 'G': case 'g':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (end[1] != '\0')
		return -EINVAL;
	if (*v > (UINT64_MAX >> shift))
		return -ERANGE;
	*v <<= shift;
	return 0;
}

/*
 * Seconds to milliseconds, by hand rather than strtod(): exact, immune to
 * the locale's decimal point, and no "inf", "1e3" or hex floats.  Digits
 * past the millisecond round to nearest.
 */
static int
parse_seconds(const char *s, uint64_t *ms)
{
	uint64_t whole = 0, frac = 0;
	const char *p = s;
	int r, i;

	if (*p != '.') {
		r = parse_digits(p, &whole, &p);
		if (r < 0)
			return r;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;		/* "", "." and "2." */
		for (i = 0; *p >= '0' && *p <= '9'; i++, p++) {
			if (i < 3)
				frac = frac * 10 + (uint64_t)(*p - '0');
			else if (i == 3 && *p >= '5')
				frac++;		/* may carry into whole */
		}
		for (; i < 3; i++)
			frac *= 10;
	}
	if (*p != '\0')
		return -EINVAL;
	if (whole > (UINT64_MAX - 1000) / 1000)
		return -ERANGE;
	*ms = whole * 1000 + frac;
	if (*ms == 0 && strspn(s, "0.") != strlen(s))
		return -ERANGE;		/* nonzero but under 0.5 ms */
	return 0;
}

static const char *
type_hint(enum opt_type t)
{
	switch (t) {
	case T_SIZE:
		return "a size such as 65536, 512K, 8M or 1G";
	case T_SECONDS:
		return "seconds such as 30 or 0.5";
	default:
		return "a whole number";
	}
}

static int
set_number(struct options *o, const struct opt_def *d, const char *value,
    char *err, size_t errlen)
{
	char lo[32], hi[32];
	uint64_t v = 0;
	int r;

	if (d->empty && *value == '\0') {
		field_put(o, d, d->empty());
		return 0;
	}
	if (d->type == T_PORT && strcmp(value, "-1") == 0) {
		field_put(o, d, (uint64_t)-1);	/* W_INT: -1 */
		return 0;
	}
	if (d->type == T_SIZE)
		r = parse_size(value, &v);
	else if (d->type == T_SECONDS)
		r = parse_seconds(value, &v);
	else
		r = parse_uint(value, &v);
	if (r == -EINVAL) {
		snprintf(err, errlen, "expected %s, got '%.64s'",
		    type_hint(d->type), value);
		return -1;
	}
	if (r < 0 || v < d->min || v > d->max) {
		format_value(d, d->min, lo, sizeof(lo));
		format_value(d, d->max, hi, sizeof(hi));
		snprintf(err, errlen, "'%.64s' is out of range (%s..%s%s)",
		    value, lo, hi, d->type == T_SECONDS ? " seconds" : "");
		return -1;
	}
	field_put(o, d, v);
	return 0;
}

static int
set_def(struct options *o, const struct opt_def *d, const char *value,
    char *err, size_t errlen)
{
	char **sp;
	char *copy;
	int v;

	switch (d->type) {
	case T_STRING:
	case T_OPTPATH:
		if (*value == '\0' && d->type == T_STRING) {
			snprintf(err, errlen, "must not be empty");
			return -1;
		}
		copy = NULL;
		if (*value != '\0' && (copy = strdup(value)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		sp = field_str(o, d);
		free(*sp);
		*sp = copy;
		return 0;
	case T_LOGLEVEL:
		v = log_level_parse(value);
		if (v < 0) {
			snprintf(err, errlen, "expected error, warn, info or "
			    "debug, got '%.64s'", value);
			return -1;
		}
		field_put(o, d, (uint64_t)v);
		return 0;
	case T_FSYNC:
		for (v = FSYNC_ALWAYS; v <= FSYNC_NEVER; v++) {
			if (strcmp(value, fsync_names[v]) == 0) {
				field_put(o, d, (uint64_t)v);
				return 0;
			}
		}
		snprintf(err, errlen, "expected always, everysec or never, "
		    "got '%.64s'", value);
		return -1;
	case T_BOOL:
		if (!strcmp(value, "yes") || !strcmp(value, "true") ||
		    !strcmp(value, "on") || !strcmp(value, "1"))
			v = 1;
		else if (!strcmp(value, "no") || !strcmp(value, "false") ||
		    !strcmp(value, "off") || !strcmp(value, "0"))
			v = 0;
		else {
			snprintf(err, errlen, "expected yes or no, got "
			    "'%.64s'", value);
			return -1;
		}
		field_put(o, d, (uint64_t)v);
		return 0;
	default:
		return set_number(o, d, value, err, errlen);
	}
}

/* Keys may be written with '-' as on the command line. */
static const struct opt_def *
lookup_key(const char *key, char *err, size_t errlen)
{
	const struct opt_def *d = NULL;
	char norm[64];
	size_t i, n = strlen(key);

	if (n < sizeof(norm)) {
		for (i = 0; i <= n; i++)
			norm[i] = key[i] == '-' ? '_' : key[i];
		d = find_def(norm);
		if (d == NULL && strcmp(norm, "config") == 0) {
			snprintf(err, errlen, "'config' can only be given on "
			    "the command line (--config)");
			return NULL;
		}
	}
	if (d == NULL)
		snprintf(err, errlen, "unknown key '%.64s'", key);
	return d;
}

int
options_set(struct options *o, const char *key, const char *value,
    char *err, size_t errlen)
{
	const struct opt_def *d = lookup_key(key, err, errlen);
	char why[200];

	if (d == NULL)
		return -1;
	if (set_def(o, d, value, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", d->key, why);
		return -1;
	}
	return 0;
}

int
options_check(const struct options *o, char *err, size_t errlen)
{
	if ((uint64_t)o->max_message + FRAME_OVERHEAD >= o->max_frame) {
		snprintf(err, errlen, "max_message_size (%u) must be less "
		    "than max_frame_size (%u) minus %d bytes for the "
		    "frame's envelope", o->max_message, o->max_frame,
		    FRAME_OVERHEAD);
		return -1;
	}
	if (o->retry_base_ms > o->retry_max_ms) {
		snprintf(err, errlen, "retry_backoff_base (%u ms) must not "
		    "exceed retry_backoff_max (%u ms)", o->retry_base_ms,
		    o->retry_max_ms);
		return -1;
	}
	if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
		snprintf(err, errlen, "tls_cert and tls_key go together");
		return -1;
	}
	if (o->port < 0 && o->tls_cert == NULL) {
		snprintf(err, errlen, "port = -1 (no plain listener) needs the "
		    "TLS listener: set tls_cert and tls_key");
		return -1;
	}
	if (o->tls_ca != NULL && o->tls_cert == NULL) {
		snprintf(err, errlen, "tls_ca needs tls_cert and tls_key (the "
		    "TLS listener)");
		return -1;
	}
	/* Otherwise one large delivery could never be queued for output. */
	if (o->max_output < o->max_frame) {
		snprintf(err, errlen, "max_output_buffer (%llu) must be at "
		    "least max_frame_size (%u)",
		    (unsigned long long)o->max_output, o->max_frame);
		return -1;
	}
	return 0;
}

/* State of one options_load_file() call, shared by reader and handler. */
struct load_ctx {
	struct options *o;
	FILE *f;
	char *line;		/* getline() buffer */
	size_t cap;
	int lineno;		/* of the line last handed to inih */
	int err_line;		/* first error found here, 0 = none */
	char err[256];
};

static void __attribute__((format(printf, 2, 3)))
load_fail(struct load_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err_line != 0)
		return;		/* the first error is the one to fix */
	c->err_line = c->lineno;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

/*
 * inih reads with a fixed buffer and silently splits a longer line in two,
 * so an overlong data_dir would be cut and its tail parsed as a line of
 * its own.  Reading the lines ourselves turns that into an error, and lets
 * the handler know the line number.  Leading blanks are dropped: inih
 * would take an indented line as the continuation of the previous value
 * ("  port = 1" after "listen = x" would set listen to "port = 1").
 */
static char *
load_reader(char *str, int num, void *stream)
{
	struct load_ctx *c = stream;
	ssize_t n;
	char *p;

	if (c->err_line != 0)
		return NULL;
	n = getline(&c->line, &c->cap, c->f);
	if (n < 0)
		return NULL;	/* EOF or error: ferror() tells later */
	c->lineno++;
	while (n > 0 && (c->line[n - 1] == '\n' || c->line[n - 1] == '\r'))
		c->line[--n] = '\0';
	if (strlen(c->line) != (size_t)n) {
		load_fail(c, "line contains a NUL byte");
		return NULL;
	}
	/* inih needs room for "\r\n\0" beyond the text. */
	if (n > num - 3) {
		load_fail(c, "line is longer than %d characters", num - 3);
		return NULL;
	}
	for (p = c->line; *p == ' ' || *p == '\t'; p++)
		;
	memcpy(str, p, strlen(p) + 1);
	return str;
}

static int
load_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct load_ctx *c = user;
	const struct opt_def *d;
	char why[200], buf[256];
	size_t n;

	if (*section != '\0' && strcmp(section, "ferryd") != 0) {
		load_fail(c, "key '%.64s' is in section [%.64s]; only [ferryd] "
		    "or no section is read", name, section);
		return 0;
	}
	d = lookup_key(name, why, sizeof(why));
	if (d == NULL) {
		load_fail(c, "%s", why);
		return 0;
	}
	/* Accept key = "value", as most ini dialects do. */
	n = strlen(value);
	if (n >= 2 && value[0] == '"' && value[n - 1] == '"' &&
	    n - 2 < sizeof(buf)) {
		memcpy(buf, value + 1, n - 2);
		buf[n - 2] = '\0';
		value = buf;
	}
	if (set_def(c->o, d, value, why, sizeof(why)) < 0) {
		load_fail(c, "%s: %s", d->key, why);
		return 0;
	}
	return 1;
}

int
options_load_file(struct options *o, const char *path,
    char *err, size_t errlen)
{
	struct load_ctx c = { .o = o };
	int r, io;

	c.f = fopen(path, "re");
	if (c.f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	r = ini_parse_stream(load_reader, &c, load_handler, &c);
	io = ferror(c.f) ? errno : 0;
	fclose(c.f);
	free(c.line);

	/* inih's own errors are syntax; report whichever came first. */
	if (r > 0 && (c.err_line == 0 || r < c.err_line)) {
		snprintf(err, errlen, "%s:%d: expected 'key = value' or a "
		    "[section] header", path, r);
		return -1;
	}
	if (c.err_line != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, c.err_line, c.err);
		return -1;
	}
	if (r == -2) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if (io != 0 || r != 0) {
		snprintf(err, errlen, "%s: read error: %s", path,
		    strerror(io != 0 ? io : EIO));
		return -1;
	}
	return 0;
}

/* One --help entry; the default goes on its own line past column 79. */
static void
usage_line(FILE *out, int shortopt, const char *name, const char *arg,
    const char *help, const char *val)
{
	char left[64];
	int n;

	snprintf(left, sizeof(left), "%c%c%c --%s%s%s",
	    shortopt ? '-' : ' ', shortopt ? shortopt : ' ',
	    shortopt ? ',' : ' ', name, arg ? "=" : "", arg ? arg : "");
	n = fprintf(out, "  %-33s %s", left, help);
	if (val == NULL || *val == '\0')
		fprintf(out, "\n");
	else if (n + (int)strlen(val) + 3 > 79)
		fprintf(out, "\n%36s(%s)\n", "", val);
	else
		fprintf(out, " (%s)\n", val);
}

void
options_usage(void *f, const char *argv0)
{
	FILE *out = f;
	struct options def;
	bool have_def = options_init(&def) == 0;
	const struct opt_def *d;
	char val[32];
	size_t i;

	fprintf(out, "Usage: %s [OPTION]...\n"
	    "Run the ferry message broker.\n\n", argv0 ? argv0 : "ferryd");
	usage_line(out, 'c', "config", "FILE", "read FILE; options win", NULL);
	for (i = 0; i < N_DEFS; i++) {
		d = &opt_defs[i];
		val[0] = '\0';
		if (have_def && d->width == W_PTR && *field_str(&def, d))
			snprintf(val, sizeof(val), "%s", *field_str(&def, d));
		else if (have_def && d->width != W_PTR)
			format_value(d, field_get(&def, d), val, sizeof(val));
		usage_line(out, d->shortopt, d->name, d->arg, d->help, val);
	}
	usage_line(out, 0, "check-config", NULL,
	    "check the configuration and exit", NULL);
	usage_line(out, 'h', "help", NULL, "show this help and exit", NULL);
	usage_line(out, 'V', "version", NULL, "show the version and exit",
	    NULL);
	fprintf(out, "\nDurations are in seconds (0.5 = 500 ms).  Sizes take "
	    "a K, M or G suffix\n(powers of 1024).  Defaults are in "
	    "parentheses; the command line overrides\nthe config file.\n");
	if (have_def)
		options_fini(&def);
}

static void __attribute__((format(printf, 2, 3)))
usage_error(const char *argv0, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ferryd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n",
	    argv0);
}

/*
 * The argument getopt_long() just stumbled on.  argv[optind - 1] is only
 * right once getopt has moved past it: not for "-z" inside a "-zh" cluster,
 * hence optopt for short options.
 */
static void
bad_option(const char *argv0, char **argv, const char *why)
{
	const char *a = argv[optind - 1];

	if (optopt != 0 && optopt < 256 && strncmp(a, "--", 2) != 0)
		usage_error(argv0, "%s '-%c'", why, optopt);
	else
		usage_error(argv0, "%s '%s'", why, a);
}

int
options_parse(struct options *o, int argc, char **argv)
{
	struct option longopts[N_DEFS + 5];
	char shortopts[3 * N_DEFS + 8] = ":c:hV";
	const char *argv0 = argc > 0 ? argv[0] : "ferryd";
	const struct opt_def *d;
	char err[512], why[200];
	size_t i, k = 0, sn = strlen(shortopts);
	bool config_given = false;
	int c, pass;

	for (i = 0; i < N_DEFS; i++) {
		d = &opt_defs[i];
		longopts[k++] = (struct option){ d->name, required_argument,
		    NULL, d->shortopt != 0 ? d->shortopt : 256 + (int)i };
		if (d->shortopt != 0) {
			shortopts[sn++] = (char)d->shortopt;
			shortopts[sn++] = ':';
		}
	}
	shortopts[sn] = '\0';
	longopts[k++] = (struct option){ "config", required_argument, NULL,
	    'c' };
	longopts[k++] = (struct option){ "check-config", no_argument, NULL,
	    OPT_CHECK };
	longopts[k++] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[k++] = (struct option){ "version", no_argument, NULL, 'V' };
	longopts[k] = (struct option){ NULL, 0, NULL, 0 };

	/*
	 * Pass 0 finds --config, --help and --version and rejects malformed
	 * arguments; the file is then read; pass 1 applies the rest over it.
	 * optind = 0 makes glibc reinitialise getopt fully.
	 */
	opterr = 0;
	for (pass = 0; pass < 2; pass++) {
		optind = 0;
		while ((c = getopt_long(argc, argv, shortopts, longopts,
		    NULL)) != -1) {
			if (c == '?' || c == ':') {
				bad_option(argv0, argv, c == '?' ?
				    "invalid option" : "missing value for");
				return -1;
			}
			if (c == OPT_CHECK) {
				o->check_config = 1;
				continue;
			}
			if (c == 'h' || c == 'V' || c == 'c') {
				if (pass == 1)
					continue;
				if (c == 'h') {
					options_usage(stdout, argv0);
					return 1;
				}
				if (c == 'V') {
					printf("ferryd %s\n", FERRY_VERSION);
					return 1;
				}
				free(o->config);
				config_given = true;
				if ((o->config = strdup(optarg)) == NULL) {
					fprintf(stderr, "ferryd: out of "
					    "memory\n");
					return -1;
				}
				continue;
			}
			if (pass == 0)
				continue;
			d = NULL;
			for (i = 0; i < N_DEFS && d == NULL; i++) {
				if (c == (opt_defs[i].shortopt != 0 ?
				    opt_defs[i].shortopt : 256 + (int)i))
					d = &opt_defs[i];
			}
			if (d != NULL &&
			    set_def(o, d, optarg, why, sizeof(why)) < 0) {
				fprintf(stderr, "ferryd: --%s: %s\n", d->name,
				    why);
				return -1;
			}
		}
		if (pass == 0 && optind < argc) {
			usage_error(argv0, "unexpected argument '%s'",
			    argv[optind]);
			return -1;
		}
		if (pass == 0 && config_given &&
		    options_load_file(o, o->config, err, sizeof(err)) < 0) {
			fprintf(stderr, "ferryd: %s\n", err);
			return -1;
		}
	}
	if (options_check(o, err, sizeof(err)) < 0) {
		fprintf(stderr, "ferryd: %s\n", err);
		return -1;
	}
	return 0;
}
