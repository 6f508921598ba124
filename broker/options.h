/*
 * options.h - ferryd's settings: built-in defaults, the config file (libinih)
 * and the command line, in increasing precedence.
 *
 * Strings are owned by struct options (freed by options_fini).  Durations
 * are kept in milliseconds; the file and the command line give seconds,
 * fractions allowed ("0.5").  Sizes accept a K, M or G suffix (powers of
 * 1024).
 */
#ifndef FERRY_BROKER_OPTIONS_H
#define FERRY_BROKER_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#define FERRY_DEFAULT_PORT 4470
#define FERRY_DEFAULT_TLS_PORT 4471

enum fsync_policy {
	FSYNC_ALWAYS = 0,
	FSYNC_EVERYSEC = 1,
	FSYNC_NEVER = 2,
};

struct options {
	char *config;			/* --config: file read, or NULL */
	char *listen;			/* listen: "127.0.0.1" */
	int port;			/* port: 4470; 0 = ephemeral */
	char *port_file;		/* port_file: write bound port, or NULL */
	char *data_dir;			/* data_dir: "ferry-data" */
	int log_level;			/* log_level: LOG_INFO */
	uint32_t ack_timeout_ms;	/* ack_timeout: 30 s (group default) */
	uint32_t max_attempts;		/* max_attempts: 5 (group default) */
	uint32_t default_prefetch;	/* prefetch: 16 */
	uint32_t retry_base_ms;		/* retry_backoff_base: 1 s */
	uint32_t retry_max_ms;		/* retry_backoff_max: 60 s */
	uint32_t max_frame;		/* max_frame_size: 8M */
	uint32_t max_message;		/* max_message_size: 1M */
	uint32_t max_connections;	/* max_connections: 10000 */
	uint64_t max_output;		/* max_output_buffer: 64M per conn */
	uint32_t handshake_timeout_ms;	/* handshake_timeout: 10 s */
	uint32_t idle_timeout_ms;	/* idle_timeout: 0 = off */
	uint32_t max_topics;		/* max_topics: 100000 */
	uint32_t max_groups;		/* max_groups: 100000 */
	uint32_t flow_high_water;	/* flow_high_water: 10000; 0 = off */
	uint64_t ephemeral_max_bytes;	/* ephemeral_max_bytes: 64M; 0 = off */
	int fsync;			/* fsync: FSYNC_ALWAYS */
	uint64_t segment_size;		/* segment_size: 64M */
	uint64_t max_memory;		/* max_memory: message bodies kept in
					   memory (page.h); a quarter of
					   RAM; 0 = no limit */
	int journal_repair;		/* repair_journal: 0 */
	uint64_t dedup_window_ms;	/* dedup_window: 120 s */
	uint64_t producer_ttl_ms;	/* producer_ttl: 1 day; 0 = never */
	uint32_t trace_events;		/* trace_events: 100000 */
	char *users_file;		/* users_file: NULL = no auth */
	int allow_anonymous;		/* allow_anonymous: no; yes lets a
					   non-loopback listen run without
					   users_file */
	int tls_port;			/* tls_port: 4471; 0 = ephemeral */
	char *tls_cert;			/* tls_cert: NULL = no TLS listener */
	char *tls_key;			/* tls_key: with tls_cert */
	char *tls_ca;			/* tls_ca: verify client certificates
					   against it; NULL = none asked */
	char *metrics_listen;		/* metrics_listen: "ADDR:PORT", or
					   NULL (off) */
	uint32_t metrics_max_groups;	/* metrics_max_groups: 10000 */
	uint32_t drain_timeout_ms;	/* drain_timeout: 10 s; 0 = none */
	int check_config;		/* --check-config: validate, exit */
};

/* The config-file key and the long option of setting i of the options
 * table, in --help's order; NULL past the last.  For tests. */
const char *options_key(size_t i);
const char *options_flag(size_t i);

/* Fill in the built-in defaults.  Returns 0 or -ENOMEM. */
int options_init(struct options *o);
void options_fini(struct options *o);

/*
 * Apply the command line over the defaults and over the config file named by
 * --config (the file is read first, then every other argument wins).
 * Returns 0, 1 when --help or --version was handled (caller exits 0), or -1
 * after printing a clear error to stderr (caller exits 2).
 */
int options_parse(struct options *o, int argc, char **argv);

/*
 * Read an ini file (no sections needed; "[ferryd]" is accepted) into o.
 * Returns 0, or -1 with a message naming the file and line in err.
 */
int options_load_file(struct options *o, const char *path,
    char *err, size_t errlen);

/* Set one option by its config-file key from its text value.
 * Returns 0, or -1 with a reason in err. */
int options_set(struct options *o, const char *key, const char *value,
    char *err, size_t errlen);

/*
 * Checks between options (max_message_size leaves room in max_frame_size,
 * retry_backoff_base <= retry_backoff_max, max_output_buffer holds a
 * frame).  options_parse() runs it last; call it after building options
 * another way.  Returns 0, or -1 with a reason in err.
 */
int options_check(const struct options *o, char *err, size_t errlen);

/* Human-readable "--help" text to f. */
void options_usage(void *f, const char *argv0);

#endif
