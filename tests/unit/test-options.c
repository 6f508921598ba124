/*
 * test-options.c - ferryd's settings (defaults, config file, command line)
 * and the log line format they feed.
 *
 * FERRY_CONF (set by meson) names the shipped conf/ferryd.conf.
 */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "options.h"

#define KIB 1024u
#define MIB (1024u * KIB)
#define GIB (1024u * MIB)

static char tmpdir[64];
static char err[512];
static char out_text[16384];
static char err_text[16384];

static void
setup_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-test-options-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown_tmpdir(void)
{
	char path[512];
	struct dirent *e;
	DIR *d = opendir(tmpdir);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(tmpdir);
}

/* Writes len bytes to tmpdir/name; returns a path valid until the next call. */
static const char *
write_bytes(const char *name, const char *text, size_t len)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

static const char *
write_file(const char *name, const char *text)
{
	return write_bytes(name, text, strlen(text));
}

/* Loads text as a config file over o; returns options_load_file()'s result. */
static int
load_text(struct options *o, const char *text)
{
	err[0] = '\0';
	return options_load_file(o, write_file("ferryd.conf", text), err,
	    sizeof(err));
}

/*
 * Redirecting a standard stream to a temporary file: the only way to see
 * what options_parse() and the logger print.
 */
struct capture {
	int fd;
	int saved;
	FILE *tmp;
};

static void
capture_start(struct capture *c, int fd)
{
	fflush(NULL);
	c->fd = fd;
	c->tmp = tmpfile();
	ck_assert_ptr_nonnull(c->tmp);
	c->saved = dup(fd);
	ck_assert_int_ge(c->saved, 0);
	ck_assert_int_ge(dup2(fileno(c->tmp), fd), 0);
}

static void
capture_end(struct capture *c, char *buf, size_t len)
{
	size_t n;

	fflush(NULL);
	ck_assert_int_ge(dup2(c->saved, c->fd), 0);
	close(c->saved);
	rewind(c->tmp);
	n = fread(buf, 1, len - 1, c->tmp);
	buf[n] = '\0';
	fclose(c->tmp);
}

/* Runs options_parse() on a NULL-terminated list after "ferryd". */
static int
parse_args(struct options *o, const char *const *args)
{
	struct capture co, ce;
	char *argv[32];
	int argc = 0, r;

	argv[argc++] = (char *)"ferryd";
	while (*args != NULL && argc < 31)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	capture_start(&co, STDOUT_FILENO);
	capture_start(&ce, STDERR_FILENO);
	r = options_parse(o, argc, argv);
	capture_end(&ce, err_text, sizeof(err_text));
	capture_end(&co, out_text, sizeof(out_text));
	return r;
}

#define ck_assert_contains(hay, needle) \
	ck_assert_msg(strstr((hay), (needle)) != NULL, \
	    "expected \"%s\" in \"%s\"", (needle), (hay))

static void
assert_defaults(const struct options *o)
{
	ck_assert_ptr_null(o->config);
	ck_assert_str_eq(o->listen, "127.0.0.1");
	ck_assert_int_eq(o->port, 4470);
	ck_assert_int_eq(o->port, FERRY_DEFAULT_PORT);
	ck_assert_ptr_null(o->port_file);
	ck_assert_str_eq(o->data_dir, "ferry-data");
	ck_assert_int_eq(o->log_level, LOG_INFO);
	ck_assert_uint_eq(o->ack_timeout_ms, 30000);
	ck_assert_uint_eq(o->max_attempts, 5);
	ck_assert_uint_eq(o->default_prefetch, 16);
	ck_assert_uint_eq(o->retry_base_ms, 1000);
	ck_assert_uint_eq(o->retry_max_ms, 60000);
	ck_assert_uint_eq(o->max_frame, 8 * MIB);
	ck_assert_uint_eq(o->max_message, 1 * MIB);
	ck_assert_uint_eq(o->max_connections, 10000);
	ck_assert_uint_eq(o->max_output, 64 * MIB);
	ck_assert_uint_eq(o->handshake_timeout_ms, 10000);
	ck_assert_int_eq(o->fsync, FSYNC_ALWAYS);
}

/* ---- defaults ---- */

START_TEST(test_defaults)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	assert_defaults(&o);
	ck_assert_int_eq(options_check(&o, err, sizeof(err)), 0);
	options_fini(&o);
	ck_assert_ptr_null(o.listen);
	options_fini(&o);		/* twice is harmless */
}
END_TEST

START_TEST(test_defaults_from_empty_command_line)
{
	const char *args[] = { NULL };
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(parse_args(&o, args), 0);
	assert_defaults(&o);
	ck_assert_str_eq(err_text, "");
	options_fini(&o);
}
END_TEST

/* ---- config file ---- */

START_TEST(test_file_every_key)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o,
	    "# a comment\n"
	    "; another\n"
	    "listen = 0.0.0.0\n"
	    "port=4471\n"
	    "port_file = /run/ferry/port ; inline comment\n"
	    "\n"
	    "[ferryd]\n"
	    "data_dir = \"/var/lib/ferry\"\n"
	    "log_level = debug\n"
	    "ack_timeout = 2.5\n"
	    "max_attempts = 9\n"
	    "    prefetch = 3\n"
	    "retry_backoff_base = 0.25\n"
	    "retry_backoff_max = 120\n"
	    "max_frame_size = 16M\n"
	    "max_message_size = 2M\n"
	    "max-connections = 77\n"
	    "max_output_buffer = 1G\n"
	    "handshake_timeout = 0.5\n"
	    "fsync = everysec\n"), 0);
	ck_assert_str_eq(o.listen, "0.0.0.0");
	ck_assert_int_eq(o.port, 4471);
	ck_assert_str_eq(o.port_file, "/run/ferry/port");
	ck_assert_str_eq(o.data_dir, "/var/lib/ferry");
	ck_assert_int_eq(o.log_level, LOG_DEBUG);
	ck_assert_uint_eq(o.ack_timeout_ms, 2500);
	ck_assert_uint_eq(o.max_attempts, 9);
	ck_assert_uint_eq(o.default_prefetch, 3);
	ck_assert_uint_eq(o.retry_base_ms, 250);
	ck_assert_uint_eq(o.retry_max_ms, 120000);
	ck_assert_uint_eq(o.max_frame, 16 * MIB);
	ck_assert_uint_eq(o.max_message, 2 * MIB);
	ck_assert_uint_eq(o.max_connections, 77);
	ck_assert_uint_eq(o.max_output, (uint64_t)GIB);
	ck_assert_uint_eq(o.handshake_timeout_ms, 500);
	ck_assert_int_eq(o.fsync, FSYNC_EVERYSEC);
	ck_assert_ptr_null(o.config);	/* only --config sets it */
	options_fini(&o);
}
END_TEST

START_TEST(test_file_empty_and_blank)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, ""), 0);
	ck_assert_int_eq(load_text(&o, "\n\n# only comments\n  \n"), 0);
	assert_defaults(&o);
	options_fini(&o);
}
END_TEST

START_TEST(test_file_crlf_and_last_line)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "port = 5\r\nprefetch = 6"), 0);
	ck_assert_int_eq(o.port, 5);
	ck_assert_uint_eq(o.default_prefetch, 6);
	options_fini(&o);
}
END_TEST

/* inih would read an indented line as a continuation of the last value. */
START_TEST(test_file_indented_is_not_continuation)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "listen = ::1\n\tport = 6\n"), 0);
	ck_assert_str_eq(o.listen, "::1");
	ck_assert_int_eq(o.port, 6);
	options_fini(&o);
}
END_TEST

START_TEST(test_file_later_key_wins)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "port = 1\nport = 2\n"), 0);
	ck_assert_int_eq(o.port, 2);
	options_fini(&o);
}
END_TEST

START_TEST(test_file_port_file_empty_unsets)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "port_file = /tmp/p\n"), 0);
	ck_assert_str_eq(o.port_file, "/tmp/p");
	ck_assert_int_eq(load_text(&o, "port_file =\n"), 0);
	ck_assert_ptr_null(o.port_file);
	options_fini(&o);
}
END_TEST

START_TEST(test_file_unknown_key)
{
	struct options o;
	char want[600];

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "port = 1\n\nbogus_key = 2\n"), -1);
	snprintf(want, sizeof(want), "%s/ferryd.conf:3: ", tmpdir);
	ck_assert_contains(err, want);
	ck_assert_contains(err, "unknown key 'bogus_key'");
	options_fini(&o);
}
END_TEST

START_TEST(test_file_config_key_refused)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "config = /etc/other.conf\n"), -1);
	ck_assert_contains(err, ":1: ");
	ck_assert_contains(err, "--config");
	options_fini(&o);
}
END_TEST

START_TEST(test_file_other_section)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "port = 1\n[client]\nport = 2\n"), -1);
	ck_assert_contains(err, ":3: ");
	ck_assert_contains(err, "[client]");
	ck_assert_int_eq(o.port, 1);
	options_fini(&o);
}
END_TEST

START_TEST(test_file_syntax_error)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "port = 1\nthis is not ini\n"), -1);
	ck_assert_contains(err, ":2: ");
	ck_assert_contains(err, "key = value");
	ck_assert_int_eq(load_text(&o, "[ferryd\n"), -1);
	ck_assert_contains(err, ":1: ");
	options_fini(&o);
}
END_TEST

START_TEST(test_file_first_error_reported)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "nonsense\nbogus = 1\n"), -1);
	ck_assert_contains(err, ":1: expected");
	ck_assert_int_eq(load_text(&o, "bogus = 1\nnonsense\n"), -1);
	ck_assert_contains(err, ":1: unknown key 'bogus'");
	options_fini(&o);
}
END_TEST

START_TEST(test_file_bad_value_names_key_and_line)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(load_text(&o, "\n\nport = 99999\n"), -1);
	ck_assert_contains(err, ":3: port: '99999' is out of range (0..65535)");
	ck_assert_int_eq(load_text(&o, "fsync = sometimes\n"), -1);
	ck_assert_contains(err,
	    ":1: fsync: expected always, everysec or never");
	/* "#" only starts a comment at the start of a line */
	ck_assert_int_eq(load_text(&o, "port = 80 # web\n"), -1);
	ck_assert_contains(err, "port: expected a whole number");
	options_fini(&o);
}
END_TEST

/* inih would silently cut a long line in two and parse the tail alone. */
START_TEST(test_file_long_line)
{
	char text[400];
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	snprintf(text, sizeof(text), "port = 1\ndata_dir = /%0250d\n", 0);
	ck_assert_int_eq(load_text(&o, text), -1);
	ck_assert_contains(err, ":2: line is longer than 197 characters");
	options_fini(&o);
}
END_TEST

START_TEST(test_file_longest_line)
{
	char text[400], want[200];
	struct options o;

	/* "data_dir = /" is 12 characters: 185 more make the 197 allowed */
	ck_assert_int_eq(options_init(&o), 0);
	snprintf(want, sizeof(want), "/%0184d", 0);
	snprintf(text, sizeof(text), "data_dir = %s\r\n", want);
	ck_assert_int_eq(load_text(&o, text), 0);
	ck_assert_str_eq(o.data_dir, want);
	options_fini(&o);
}
END_TEST

START_TEST(test_file_nul_byte)
{
	static const char text[] = "port = 1\nprefetch = 2\0junk\n";
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(options_load_file(&o,
	    write_bytes("nul.conf", text, sizeof(text) - 1), err,
	    sizeof(err)), -1);
	ck_assert_contains(err, ":2: ");
	ck_assert_contains(err, "NUL");
	options_fini(&o);
}
END_TEST

START_TEST(test_file_missing)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(options_load_file(&o, "/nonexistent/ferryd.conf",
	    err, sizeof(err)), -1);
	ck_assert_contains(err, "/nonexistent/ferryd.conf");
	ck_assert_contains(err, strerror(ENOENT));
	ck_assert_int_eq(options_load_file(&o, tmpdir, err, sizeof(err)), -1);
	ck_assert_contains(err, tmpdir);
	options_fini(&o);
}
END_TEST

/*
 * The shipped file must load as is, and with every "#key = value" line
 * uncommented it must give exactly the built-in defaults and name every
 * option: its documentation cannot drift from the code.
 */
START_TEST(test_file_shipped_conf)
{
	static const char *const keys[] = {
		"listen", "port", "port_file", "data_dir", "fsync",
		"ack_timeout", "max_attempts", "prefetch",
		"retry_backoff_base", "retry_backoff_max", "max_frame_size",
		"max_message_size", "max_connections", "max_output_buffer",
		"handshake_timeout", "log_level", "users_file",
		"allow_anonymous", "tls_port", "tls_cert", "tls_key", "tls_ca",
	};
	const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
	const char *conf = getenv("FERRY_CONF");
	int seen[sizeof(keys) / sizeof(keys[0])] = { 0 };
	char line[512], path[600];
	struct options o, d;
	FILE *in, *out;
	size_t i, n;

	ck_assert_msg(conf != NULL,
	    "FERRY_CONF is not set: run via meson test");
	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(options_init(&d), 0);
	ck_assert_msg(options_load_file(&o, conf, err, sizeof(err)) == 0,
	    "%s", err);
	assert_defaults(&o);

	in = fopen(conf, "r");
	ck_assert_ptr_nonnull(in);
	snprintf(path, sizeof(path), "%s/uncommented.conf", tmpdir);
	out = fopen(path, "w");
	ck_assert_ptr_nonnull(out);
	while (fgets(line, sizeof(line), in) != NULL) {
		if (line[0] != '#' || !islower((unsigned char)line[1])) {
			fputs(line, out);
			continue;
		}
		fputs(line + 1, out);
		n = strcspn(line + 1, " =");
		for (i = 0; i < nkeys; i++) {
			if (strlen(keys[i]) == n &&
			    strncmp(line + 1, keys[i], n) == 0)
				seen[i]++;
		}
	}
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
	for (i = 0; i < nkeys; i++)
		ck_assert_msg(seen[i] == 1, "conf names %s %d times", keys[i],
		    seen[i]);
	ck_assert_msg(options_load_file(&o, path, err, sizeof(err)) == 0,
	    "%s", err);
	assert_defaults(&o);
	options_fini(&o);
	options_fini(&d);
}
END_TEST

/* ---- single values (options_set) ---- */

static const struct {
	const char *key, *value, *why;
} bad_values[] = {
	{ "port", "65536", "out of range (0..65535)" },
	{ "allow_anonymous", "maybe", "expected yes or no, got 'maybe'" },
	{ "port", "-2", "expected a whole number, got '-2'" },
	{ "port", "+80", "whole number" },
	{ "port", " 80", "whole number" },
	{ "port", "80 ", "whole number" },
	{ "port", "80x", "whole number" },
	{ "port", "", "whole number, got ''" },
	{ "port", "0x50", "whole number" },
	{ "port", "99999999999999999999999", "out of range" },
	{ "max_attempts", "0", "out of range (1.." },
	{ "prefetch", "0", "out of range" },
	{ "prefetch", "4294967296", "out of range" },
	{ "max_connections", "0", "out of range" },
	{ "ack_timeout", "0", "out of range (0.001..4294967.295 seconds)" },
	{ "ack_timeout", "0.0004", "out of range" },
	{ "ack_timeout", "4294968", "out of range" },
	{ "ack_timeout", "-1", "expected seconds" },
	{ "ack_timeout", "1e3", "expected seconds" },
	{ "ack_timeout", "inf", "expected seconds" },
	{ "ack_timeout", "nan", "expected seconds" },
	{ "ack_timeout", "0x10", "expected seconds" },
	{ "ack_timeout", "30s", "expected seconds" },
	{ "ack_timeout", "", "expected seconds" },
	{ "ack_timeout", ".", "expected seconds" },
	{ "ack_timeout", "2.", "expected seconds" },
	{ "ack_timeout", "1.2.3", "expected seconds" },
	{ "handshake_timeout", "0", "out of range" },
	{ "retry_backoff_max", "-0.5", "expected seconds" },
	{ "max_frame_size", "8MB", "expected a size" },
	{ "max_frame_size", "1.5M", "expected a size" },
	{ "max_frame_size", "K", "expected a size" },
	{ "max_frame_size", "-1", "expected a size" },
	{ "max_frame_size", "", "expected a size" },
	{ "max_frame_size", "2G", "out of range (8K..1G)" },
	{ "max_frame_size", "4K", "out of range" },
	{ "max_message_size", "0", "out of range" },
	{ "max_output_buffer", "99999999999999999999", "out of range" },
	{ "max_output_buffer", "17179869184G", "out of range" },
	{ "fsync", "sometimes", "expected always, everysec or never" },
	{ "fsync", "", "expected always" },
	{ "log_level", "verbose", "expected error, warn, info or debug" },
	{ "log_level", "", "expected error" },
	{ "listen", "", "must not be empty" },
	{ "data_dir", "", "must not be empty" },
};

START_TEST(test_set_bad_value)
{
	const char *key = bad_values[_i].key;
	struct options o;
	char prefix[64];

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_msg(options_set(&o, key, bad_values[_i].value, err,
	    sizeof(err)) == -1, "%s = '%s' accepted", key,
	    bad_values[_i].value);
	snprintf(prefix, sizeof(prefix), "%s: ", key);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
	    "\"%s\" does not start with the key", err);
	ck_assert_contains(err, bad_values[_i].why);
	assert_defaults(&o);		/* a refused value changes nothing */
	options_fini(&o);
}
END_TEST

START_TEST(test_set_unknown_key)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(options_set(&o, "bogus", "1", err, sizeof(err)), -1);
	ck_assert_str_eq(err, "unknown key 'bogus'");
	ck_assert_int_eq(options_set(&o, "", "1", err, sizeof(err)), -1);
	ck_assert_int_eq(options_set(&o, "config", "x", err, sizeof(err)),
	    -1);
	ck_assert_contains(err, "command line");
	options_fini(&o);
}
END_TEST

static const struct {
	const char *value;
	uint32_t ms;
} seconds[] = {
	{ "30", 30000 },
	{ "0.5", 500 },
	{ ".5", 500 },
	{ "1.25", 1250 },
	{ "0.001", 1 },
	{ "0.0005", 1 },		/* rounds to nearest ms */
	{ "0.0015", 2 },
	{ "1.9996", 2000 },
	{ "007", 7000 },		/* decimal, not octal */
	{ "4294967.295", UINT32_MAX },
};

START_TEST(test_set_fractional_seconds)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_msg(options_set(&o, "ack_timeout", seconds[_i].value, err,
	    sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(o.ack_timeout_ms, seconds[_i].ms);
	options_fini(&o);
}
END_TEST

START_TEST(test_set_zero_backoff)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(options_set(&o, "retry_backoff_base", "0", err,
	    sizeof(err)), 0);
	ck_assert_uint_eq(o.retry_base_ms, 0);
	ck_assert_int_eq(options_set(&o, "retry_backoff_max", "0.000", err,
	    sizeof(err)), 0);
	ck_assert_uint_eq(o.retry_max_ms, 0);
	options_fini(&o);
}
END_TEST

static const struct {
	const char *key, *value;
	uint64_t bytes;
} sizes[] = {
	{ "max_frame_size", "65536", 65536 },
	{ "max_frame_size", "512K", 512 * KIB },
	{ "max_frame_size", "512k", 512 * KIB },
	{ "max_frame_size", "8M", 8 * MIB },
	{ "max_frame_size", "8m", 8 * MIB },
	{ "max_frame_size", "1G", GIB },
	{ "max_frame_size", "8K", 8 * KIB },
	{ "max_message_size", "1", 1 },
	{ "max_message_size", "1g", GIB },
	{ "max_output_buffer", "4G", 4ULL * GIB },
	{ "max_output_buffer", "16777216G", 16777216ULL * GIB },
};

START_TEST(test_set_size_suffix)
{
	struct options o;
	uint64_t got;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_msg(options_set(&o, sizes[_i].key, sizes[_i].value, err,
	    sizeof(err)) == 0, "%s", err);
	if (strcmp(sizes[_i].key, "max_frame_size") == 0)
		got = o.max_frame;
	else if (strcmp(sizes[_i].key, "max_message_size") == 0)
		got = o.max_message;
	else
		got = o.max_output;
	ck_assert_uint_eq(got, sizes[_i].bytes);
	options_fini(&o);
}
END_TEST

/* max_memory: a size, 0 for no limit, empty for a quarter of RAM. */
START_TEST(test_max_memory)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) *
	    (uint64_t)sysconf(_SC_PAGESIZE);
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_uint_eq(o.max_memory, ram / 4);
	ck_assert_int_eq(options_set(&o, "max_memory", "64M", err, 512), 0);
	ck_assert_uint_eq(o.max_memory, 64 * MIB);
	ck_assert_int_eq(options_set(&o, "max_memory", "0", err, 512), 0);
	ck_assert_uint_eq(o.max_memory, 0);
	ck_assert_int_eq(options_set(&o, "max_memory", "", err, 512), 0);
	ck_assert_uint_eq(o.max_memory, ram / 4);
	ck_assert_int_eq(options_set(&o, "max_memory", "1T", err, 512), -1);
	ck_assert_contains(err, "expected a size");
	options_fini(&o);
}
END_TEST

START_TEST(test_set_enums_and_bounds)
{
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(options_set(&o, "fsync", "never", err, 512), 0);
	ck_assert_int_eq(o.fsync, FSYNC_NEVER);
	ck_assert_int_eq(options_set(&o, "fsync", "everysec", err, 512), 0);
	ck_assert_int_eq(o.fsync, FSYNC_EVERYSEC);
	ck_assert_int_eq(options_set(&o, "fsync", "always", err, 512), 0);
	ck_assert_int_eq(o.fsync, FSYNC_ALWAYS);
	ck_assert_int_eq(options_set(&o, "log_level", "error", err, 512), 0);
	ck_assert_int_eq(o.log_level, LOG_ERROR);
	ck_assert_int_eq(options_set(&o, "log_level", "warn", err, 512), 0);
	ck_assert_int_eq(o.log_level, LOG_WARN);
	ck_assert_int_eq(options_set(&o, "port", "0", err, 512), 0);
	ck_assert_int_eq(o.port, 0);
	ck_assert_int_eq(options_set(&o, "port", "65535", err, 512), 0);
	ck_assert_int_eq(o.port, 65535);
	ck_assert_int_eq(options_set(&o, "max_attempts", "1", err, 512), 0);
	ck_assert_uint_eq(o.max_attempts, 1);
	ck_assert_int_eq(options_set(&o, "prefetch", "4294967295", err, 512),
	    0);
	ck_assert_uint_eq(o.default_prefetch, UINT32_MAX);
	ck_assert_int_eq(options_set(&o, "port-file", "p", err, 512), 0);
	ck_assert_str_eq(o.port_file, "p");
	ck_assert_int_eq(o.allow_anonymous, 0);
	ck_assert_int_eq(options_set(&o, "allow_anonymous", "yes", err, 512),
	    0);
	ck_assert_int_eq(o.allow_anonymous, 1);
	ck_assert_int_eq(options_set(&o, "allow-anonymous", "no", err, 512),
	    0);
	ck_assert_int_eq(o.allow_anonymous, 0);
	ck_assert_ptr_null(o.users_file);
	ck_assert_int_eq(options_set(&o, "users_file", "/etc/ferry/users",
	    err, 512), 0);
	ck_assert_str_eq(o.users_file, "/etc/ferry/users");
	ck_assert_int_eq(o.tls_port, 4471);
	ck_assert_int_eq(options_set(&o, "tls_ca", "ca.pem", err, 512), 0);
	ck_assert_int_eq(options_check(&o, err, 512), -1);
	ck_assert_ptr_nonnull(strstr(err, "tls_ca needs tls_cert"));
	ck_assert_int_eq(options_set(&o, "tls_cert", "c.pem", err, 512), 0);
	ck_assert_int_eq(options_check(&o, err, 512), -1);
	ck_assert_ptr_nonnull(strstr(err, "tls_cert and tls_key go "
	    "together"));
	ck_assert_int_eq(options_set(&o, "tls_key", "k.pem", err, 512), 0);
	ck_assert_int_eq(options_check(&o, err, 512), 0);
	ck_assert_int_eq(options_set(&o, "port", "-1", err, 512), 0);
	ck_assert_int_eq(o.port, -1);
	ck_assert_int_eq(options_check(&o, err, 512), 0);
	free(o.tls_cert);
	o.tls_cert = NULL;
	free(o.tls_key);
	o.tls_key = NULL;
	free(o.tls_ca);
	o.tls_ca = NULL;
	ck_assert_int_eq(options_check(&o, err, 512), -1);
	ck_assert_ptr_nonnull(strstr(err, "port = -1 (no plain listener) "
	    "needs the TLS listener"));
	options_fini(&o);
}
END_TEST

/* ---- command line ---- */

START_TEST(test_cli_over_file)
{
	const char *path;
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	path = write_file("f.conf", "port = 1111\nprefetch = 7\n"
	    "listen = 10.0.0.1\nfsync = never\n");
	{
		/* --config comes last: the file still loses */
		const char *args[] = { "--port", "2222", "-l", "::1",
		    "--config", path, NULL };

		ck_assert_int_eq(parse_args(&o, args), 0);
	}
	ck_assert_str_eq(err_text, "");
	ck_assert_str_eq(o.config, path);
	ck_assert_int_eq(o.port, 2222);
	ck_assert_str_eq(o.listen, "::1");
	ck_assert_uint_eq(o.default_prefetch, 7);	/* from the file */
	ck_assert_int_eq(o.fsync, FSYNC_NEVER);
	ck_assert_uint_eq(o.ack_timeout_ms, 30000);	/* default */
	options_fini(&o);
}
END_TEST

START_TEST(test_cli_forms)
{
	const char *args[] = { "--port=5", "-d", "dd", "--data-dir=/d2",
	    "--ack-timeout", "0.25", "--max-frame-size=2M",
	    "--max-message-size", "1M", "--log-level=debug",
	    "--port-file=/run/p", "--retry-backoff-base=2",
	    "--retry-backoff-max=2", "--max-output-buffer=2M",
	    "--handshake-timeout=1", "--max-connections=3",
	    "--max-attempts=4", "--prefetch=1", "--fsync=never",
	    "--listen=::", "-p6", NULL };
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(parse_args(&o, args), 0);
	ck_assert_str_eq(err_text, "");
	ck_assert_int_eq(o.port, 6);		/* last one wins */
	ck_assert_str_eq(o.data_dir, "/d2");
	ck_assert_uint_eq(o.ack_timeout_ms, 250);
	ck_assert_uint_eq(o.max_frame, 2 * MIB);
	ck_assert_uint_eq(o.max_message, MIB);
	ck_assert_int_eq(o.log_level, LOG_DEBUG);
	ck_assert_str_eq(o.port_file, "/run/p");
	ck_assert_uint_eq(o.retry_base_ms, 2000);
	ck_assert_uint_eq(o.retry_max_ms, 2000);
	ck_assert_uint_eq(o.max_output, 2 * MIB);
	ck_assert_uint_eq(o.handshake_timeout_ms, 1000);
	ck_assert_uint_eq(o.max_connections, 3);
	ck_assert_uint_eq(o.max_attempts, 4);
	ck_assert_uint_eq(o.default_prefetch, 1);
	ck_assert_int_eq(o.fsync, FSYNC_NEVER);
	ck_assert_str_eq(o.listen, "::");
	ck_assert_ptr_null(o.config);
	options_fini(&o);
}
END_TEST

static const struct {
	const char *arg, *why;
} bad_args[] = {
	{ "--port=70000", "--port: '70000' is out of range (0..65535)" },
	{ "--port=", "--port: expected a whole number" },
	{ "-p-2", "--port: expected a whole number, got '-2'" },
	{ "-p-1", "port = -1 (no plain listener) needs the TLS listener" },
	{ "--ack-timeout=0", "--ack-timeout: '0' is out of range" },
	{ "--ack-timeout=abc", "--ack-timeout: expected seconds" },
	{ "--max-frame-size=8Q", "--max-frame-size: expected a size" },
	{ "--fsync=sometimes", "--fsync: expected always, everysec or never" },
	{ "--log-level=loud", "--log-level: expected error, warn" },
	{ "--listen=", "--listen: must not be empty" },
	{ "--data-dir=", "--data-dir: must not be empty" },
	{ "--max-attempts=0", "--max-attempts: '0' is out of range" },
	{ "--bogus", "invalid option '--bogus'" },
	{ "-z", "invalid option '-z'" },
	{ "--help=yes", "invalid option '--help=yes'" },
	{ "--port", "missing value for '--port'" },
	{ "-p", "missing value for '-p'" },
	{ "stray", "unexpected argument 'stray'" },
	{ "--config=/nonexistent/x.conf", "/nonexistent/x.conf: " },
	{ "--max-message-size=8M", "max_message_size (8388608) must be less "
	    "than max_frame_size (8388608) minus 4096" },
	{ "--max-output-buffer=1M", "max_output_buffer (1048576) must be at "
	    "least max_frame_size" },
	{ "--retry-backoff-base=61", "retry_backoff_base (61000 ms) must not "
	    "exceed retry_backoff_max (60000 ms)" },
};

START_TEST(test_cli_bad_argument)
{
	const char *args[] = { "--port=9", bad_args[_i].arg, NULL };
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_msg(parse_args(&o, args) == -1, "%s accepted",
	    bad_args[_i].arg);
	ck_assert_contains(err_text, "ferryd: ");
	ck_assert_contains(err_text, bad_args[_i].why);
	ck_assert_str_eq(out_text, "");
	options_fini(&o);
}
END_TEST

/* Cross-option checks run once everything is read, in any order. */
START_TEST(test_cli_checks_after_everything)
{
	const char *path;
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	path = write_file("big.conf", "max_message_size = 16M\n");
	{
		const char *args[] = { "--config", path,
		    "--max-frame-size=32M", NULL };

		ck_assert_int_eq(parse_args(&o, args), 0);
	}
	ck_assert_uint_eq(o.max_message, 16 * MIB);
	ck_assert_uint_eq(o.max_frame, 32 * MIB);
	{
		const char *args[] = { "--max-frame-size=1M",
		    "--max-message-size=1044479", NULL };

		ck_assert_int_eq(parse_args(&o, args), 0);
	}
	{
		const char *args[] = { "--max-frame-size=1M",
		    "--max-message-size=1044480", NULL };

		ck_assert_int_eq(parse_args(&o, args), -1);
	}
	options_fini(&o);
}
END_TEST

START_TEST(test_cli_file_error)
{
	const char *path;
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	path = write_file("bad.conf", "port = 1\nnope = 2\n");
	{
		const char *args[] = { "-c", path, NULL };

		ck_assert_int_eq(parse_args(&o, args), -1);
	}
	ck_assert_contains(err_text, path);
	ck_assert_contains(err_text, ":2: unknown key 'nope'");
	options_fini(&o);
}
END_TEST

START_TEST(test_cli_help)
{
	const char *args[] = { "--port=1", "--help", "--bogus", NULL };
	const char *names[] = { "--config=FILE", "--listen=ADDR", "--port=PORT",
	    "--port-file=FILE", "--data-dir=DIR", "--log-level=LEVEL",
	    "--ack-timeout=SECONDS", "--max-attempts=N", "--prefetch=N",
	    "--retry-backoff-base=SECONDS", "--retry-backoff-max=SECONDS",
	    "--max-frame-size=SIZE", "--max-message-size=SIZE",
	    "--max-connections=N", "--max-output-buffer=SIZE",
	    "--handshake-timeout=SECONDS", "--fsync=POLICY", "--help",
	    "--version", "(4470)", "(8M)", "(30)", "(always)", NULL };
	struct options o;
	char *line, *next;
	size_t i;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(parse_args(&o, args), 1);
	ck_assert_str_eq(err_text, "");
	ck_assert_int_eq(strncmp(out_text, "Usage: ferryd ", 14), 0);
	for (i = 0; names[i] != NULL; i++)
		ck_assert_contains(out_text, names[i]);
	for (line = out_text; *line != '\0'; line = next + 1) {
		next = strchr(line, '\n');
		ck_assert_ptr_nonnull(next);
		ck_assert_msg(next - line <= 79, "help line too wide: %.*s",
		    (int)(next - line), line);
	}
	args[1] = "-h";
	ck_assert_int_eq(parse_args(&o, args), 1);
	ck_assert_contains(out_text, "Usage:");
	options_fini(&o);
}
END_TEST

/*
 * Every setting of the options table, not a list kept by hand: --help
 * names its flag and the shipped conf/ferryd.conf its key, once.
 */
START_TEST(test_every_option_documented)
{
	const char *args[] = { "--help", NULL };
	const char *conf = getenv("FERRY_CONF");
	char flag[64], line[512], *text = NULL;
	const char *key;
	struct options o;
	size_t i, n, len = 0;
	FILE *f;
	int seen;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(parse_args(&o, args), 1);
	ck_assert_ptr_nonnull(conf);
	ck_assert_ptr_nonnull(f = fopen(conf, "r"));
	while (fgets(line, sizeof(line), f)) {
		n = strlen(line);
		text = realloc(text, len + n + 1);
		ck_assert_ptr_nonnull(text);
		memcpy(text + len, line, n + 1);
		len += n;
	}
	fclose(f);
	for (i = 0; (key = options_key(i)) != NULL; i++) {
		snprintf(flag, sizeof(flag), "--%s=", options_flag(i));
		ck_assert_msg(strstr(out_text, flag) != NULL,
		    "--help does not list %s", flag);
		/* "#key = default" at the start of a line, exactly once */
		snprintf(flag, sizeof(flag), "\n#%s = ", key);
		seen = 0;
		for (char *p = text; (p = strstr(p, flag)); p++)
			seen++;
		snprintf(line, sizeof(line), "\n#%s =\n", key);
		for (char *p = text; (p = strstr(p, line)); p++)
			seen++;	/* an empty default */
		ck_assert_msg(seen == 1, "%s lists %s %d times", conf, key,
		    seen);
	}
	ck_assert_uint_ge(i, 25);
	ck_assert_ptr_null(options_flag(i));
	ck_assert_contains(out_text, "--check-config");
	free(text);
	options_fini(&o);
}
END_TEST

/* --check-config is a request, not a setting: parsed, then main() exits
 * after the checks every start makes (a bad value still fails). */
START_TEST(test_cli_check_config)
{
	const char *good[] = { "--check-config", "--port=5", NULL };
	const char *bad[] = { "--check-config", "--prefetch=0", NULL };
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(o.check_config, 0);
	ck_assert_int_eq(parse_args(&o, good), 0);
	ck_assert_int_eq(o.check_config, 1);
	ck_assert_int_eq(o.port, 5);
	options_fini(&o);
	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(parse_args(&o, bad), -1);
	ck_assert_contains(err_text, "prefetch");
	options_fini(&o);
}
END_TEST

START_TEST(test_cli_version)
{
	const char *args[] = { "-V", NULL };
	struct options o;

	ck_assert_int_eq(options_init(&o), 0);
	ck_assert_int_eq(parse_args(&o, args), 1);
	ck_assert_str_eq(out_text, "ferryd " FERRY_VERSION "\n");
	args[0] = "--version";
	ck_assert_int_eq(parse_args(&o, args), 1);
	ck_assert_str_eq(out_text, "ferryd " FERRY_VERSION "\n");
	options_fini(&o);
}
END_TEST

/* ---- log ---- */

static void
log_capture(struct capture *c)
{
	unsetenv("JOURNAL_STREAM");
	capture_start(c, STDERR_FILENO);
}

START_TEST(test_log_level_parse)
{
	ck_assert_int_eq(log_level_parse("error"), LOG_ERROR);
	ck_assert_int_eq(log_level_parse("warn"), LOG_WARN);
	ck_assert_int_eq(log_level_parse("warning"), LOG_WARN);
	ck_assert_int_eq(log_level_parse("info"), LOG_INFO);
	ck_assert_int_eq(log_level_parse("debug"), LOG_DEBUG);
	ck_assert_int_eq(log_level_parse("DEBUG"), LOG_DEBUG);
	ck_assert_int_eq(log_level_parse(""), -1);
	ck_assert_int_eq(log_level_parse("trace"), -1);
	ck_assert_int_eq(log_level_parse("info "), -1);
	ck_assert_int_eq(log_level_parse(NULL), -1);
}
END_TEST

START_TEST(test_log_format)
{
	char want[512], *p;
	struct capture c;
	int line;

	log_level = LOG_DEBUG;
	log_capture(&c);
	errno = EAGAIN;
	log_info("listening on %s:%d", "127.0.0.1", 4470);
	ck_assert_int_eq(errno, EAGAIN);	/* logging keeps errno */
	log_warn("slow consumer %d", 7); line = __LINE__;
	log_debug("debug");
	log_error("broken");
	log_info_kv("topic=orders group=billing peer=127.0.0.1:5", "deleted");
	capture_end(&c, err_text, sizeof(err_text));
	/* logfmt: ts= (UTC, ms), level=, msg= (quoted if it must be),
	 * fields, and src= for warnings and errors */
	for (p = err_text; *p; p = strchr(p, '\n') + 1) {
		ck_assert_msg(strncmp(p, "ts=20", 5) == 0 && p[13] == 'T' &&
		    p[26] == 'Z' && p[27] == ' ', "bad ts in %s", p);
		memmove(p, p + 28, strlen(p + 28) + 1);	/* drop the ts */
	}
	snprintf(want, sizeof(want),
	    "level=info msg=\"listening on 127.0.0.1:4470\"\n"
	    "level=warn msg=\"slow consumer 7\" src=test-options.c:%d\n"
	    "level=debug msg=debug\n"
	    "level=error msg=broken src=test-options.c:%d\n"
	    "level=info msg=deleted topic=orders group=billing "
	    "peer=127.0.0.1:5\n", line, line + 2);
	ck_assert_str_eq(err_text, want);
}
END_TEST

START_TEST(test_log_sysmsg_keeps_errno)
{
	char want[512];
	struct capture c;
	int line;

	log_level = LOG_INFO;
	log_capture(&c);
	errno = ENOENT;
	log_syswarn("open %s", "journal"); line = __LINE__;
	ck_assert_int_eq(errno, ENOENT);
	capture_end(&c, err_text, sizeof(err_text));
	snprintf(want, sizeof(want), " level=warn msg=\"open journal\" "
	    "err=\"%s\" src=test-options.c:%d\n", strerror(ENOENT), line);
	ck_assert_str_eq(err_text + 27, want);	/* after the ts */
}
END_TEST

/* Even a failed write must not change errno under the caller. */
START_TEST(test_log_keeps_errno_on_failed_write)
{
	int saved = dup(STDERR_FILENO);

	ck_assert_int_ge(saved, 0);
	close(STDERR_FILENO);
	log_level = LOG_INFO;
	errno = EAGAIN;
	log_warn("nowhere to go");
	ck_assert_int_eq(errno, EAGAIN);
	errno = ENOSPC;
	log_syswarn("nowhere either");
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);
}
END_TEST

START_TEST(test_log_level_filters)
{
	struct capture c;

	log_level = LOG_WARN;
	log_capture(&c);
	log_info("hidden");
	log_debug("hidden");
	log_msg(LOG_INFO, __FILE__, __LINE__, "hidden too");
	log_warn("shown");
	capture_end(&c, err_text, sizeof(err_text));
	ck_assert_ptr_null(strstr(err_text, "hidden"));
	ck_assert_contains(err_text, "level=warn msg=shown");

	log_level = LOG_ERROR;
	log_capture(&c);
	log_warn("hidden");
	log_error("shown");
	capture_end(&c, err_text, sizeof(err_text));
	ck_assert_ptr_null(strstr(err_text, "hidden"));
	ck_assert_contains(err_text, "level=error msg=shown");
}
END_TEST

START_TEST(test_log_sanitizes_and_truncates)
{
	static char big[5000];
	struct capture c;
	size_t n;

	log_level = LOG_INFO;
	log_capture(&c);
	log_info("client %s", "evil\nferryd[1]: ERROR: forged\x1b[31m");
	capture_end(&c, err_text, sizeof(err_text));
	ck_assert_contains(err_text,
	    " msg=\"client evil?ferryd[1]: ERROR: forged?[31m\"\n");
	/* one line: the only newline is the last byte */
	ck_assert_ptr_eq(strchr(err_text, '\n'),
	    err_text + strlen(err_text) - 1);

	/* a quote cannot end the value and forge a field */
	log_capture(&c);
	log_info("name %s", "x\" level=error");
	capture_end(&c, err_text, sizeof(err_text));
	ck_assert_contains(err_text, " level=info msg=\"name x\\\" "
	    "level=error\"\n");

	memset(big, 'a', sizeof(big) - 1);
	log_capture(&c);
	log_info("%s", big);
	capture_end(&c, err_text, sizeof(err_text));
	n = strlen(err_text);
	ck_assert_uint_lt(n, 2100);
	ck_assert_str_eq(err_text + n - 4, "...\n");
}
END_TEST

/* Under journald the priority replaces the level word and the pid. */
static char jfields[2048];

/* Stands in for sd_journal_sendv(): the fields, one a line. */
static int
capture_journal(const struct iovec *iov, int n)
{
	size_t len = strlen(jfields);

	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(jfields + len, sizeof(jfields) - len,
		    "%.*s\n", (int)iov[i].iov_len,
		    (const char *)iov[i].iov_base);
	return 0;
}

static int
refuse_journal(const struct iovec *iov, int n)
{
	return -ENOENT;		/* no journal socket */
}

/*
 * Under systemd every line is a journal entry with fields: MESSAGE,
 * PRIORITY, CODE_FILE/LINE for warnings, FERRY_ERROR, and the kv fields
 * as FERRY_KEY.  Without the journal socket the stream still carries
 * "<N>" priorities; a stale JOURNAL_STREAM (stderr redirected since) is
 * ignored.
 */
START_TEST(test_log_journald)
{
	struct capture c;
	struct stat st;
	char env[64];

	log_level = LOG_DEBUG;
	log_capture(&c);
	ck_assert_int_eq(fstat(STDERR_FILENO, &st), 0);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);

	jfields[0] = '\0';
	log_set_journal_sender(capture_journal);
	log_warn_kv("topic=orders group=billing", "cannot %s", "go");
	errno = ENOSPC;
	log_syswarn("write");
	log_info("i");
	ck_assert_contains(jfields, "MESSAGE=cannot go\nPRIORITY=4\n"
	    "CODE_FILE=test-options.c\nCODE_LINE=");
	ck_assert_contains(jfields, "\nFERRY_TOPIC=orders\n"
	    "FERRY_GROUP=billing\n");
	ck_assert_contains(jfields, "MESSAGE=write: No space left on device"
	    "\nPRIORITY=4\n");
	ck_assert_contains(jfields, "\nFERRY_ERROR=No space left on device\n");
	ck_assert_contains(jfields, "MESSAGE=i\nPRIORITY=6\n");

	log_set_journal_sender(refuse_journal);
	log_error("e");
	log_warn("w");
	log_info("i");
	log_debug("d");
	setenv("JOURNAL_STREAM", "1:2", 1);
	log_info("plain");
	log_set_journal_sender(NULL);
	capture_end(&c, err_text, sizeof(err_text));
	unsetenv("JOURNAL_STREAM");
	ck_assert_int_eq(strncmp(err_text, "<3>e (test-options.c:", 21), 0);
	ck_assert_contains(err_text, "\n<4>w (test-options.c:");
	ck_assert_contains(err_text, "\n<6>i\n<7>d\n");
	ck_assert_contains(err_text, " level=info msg=plain\n");
}
END_TEST

static Suite *
options_suite(void)
{
	Suite *s = suite_create("options");
	TCase *tc;

	tc = tcase_create("defaults");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_defaults_from_empty_command_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("file");
	tcase_add_checked_fixture(tc, setup_tmpdir, teardown_tmpdir);
	tcase_add_test(tc, test_file_every_key);
	tcase_add_test(tc, test_file_empty_and_blank);
	tcase_add_test(tc, test_file_crlf_and_last_line);
	tcase_add_test(tc, test_file_indented_is_not_continuation);
	tcase_add_test(tc, test_file_later_key_wins);
	tcase_add_test(tc, test_file_port_file_empty_unsets);
	tcase_add_test(tc, test_file_missing);
	tcase_add_test(tc, test_file_shipped_conf);
	suite_add_tcase(s, tc);

	tc = tcase_create("file errors");
	tcase_add_checked_fixture(tc, setup_tmpdir, teardown_tmpdir);
	tcase_add_test(tc, test_file_unknown_key);
	tcase_add_test(tc, test_file_config_key_refused);
	tcase_add_test(tc, test_file_other_section);
	tcase_add_test(tc, test_file_syntax_error);
	tcase_add_test(tc, test_file_first_error_reported);
	tcase_add_test(tc, test_file_bad_value_names_key_and_line);
	tcase_add_test(tc, test_file_long_line);
	tcase_add_test(tc, test_file_longest_line);
	tcase_add_test(tc, test_file_nul_byte);
	suite_add_tcase(s, tc);

	tc = tcase_create("values");
	tcase_add_loop_test(tc, test_set_bad_value, 0,
	    sizeof(bad_values) / sizeof(bad_values[0]));
	tcase_add_test(tc, test_set_unknown_key);
	tcase_add_loop_test(tc, test_set_fractional_seconds, 0,
	    sizeof(seconds) / sizeof(seconds[0]));
	tcase_add_test(tc, test_set_zero_backoff);
	tcase_add_loop_test(tc, test_set_size_suffix, 0,
	    sizeof(sizes) / sizeof(sizes[0]));
	tcase_add_test(tc, test_max_memory);
	tcase_add_test(tc, test_set_enums_and_bounds);
	suite_add_tcase(s, tc);

	tc = tcase_create("command line");
	tcase_add_checked_fixture(tc, setup_tmpdir, teardown_tmpdir);
	tcase_add_test(tc, test_cli_over_file);
	tcase_add_test(tc, test_cli_forms);
	tcase_add_loop_test(tc, test_cli_bad_argument, 0,
	    sizeof(bad_args) / sizeof(bad_args[0]));
	tcase_add_test(tc, test_cli_checks_after_everything);
	tcase_add_test(tc, test_cli_file_error);
	tcase_add_test(tc, test_cli_help);
	tcase_add_test(tc, test_cli_version);
	tcase_add_test(tc, test_every_option_documented);
	tcase_add_test(tc, test_cli_check_config);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("format");

	tcase_add_test(tc, test_log_level_parse);
	tcase_add_test(tc, test_log_format);
	tcase_add_test(tc, test_log_sysmsg_keeps_errno);
	tcase_add_test(tc, test_log_keeps_errno_on_failed_write);
	tcase_add_test(tc, test_log_level_filters);
	tcase_add_test(tc, test_log_sanitizes_and_truncates);
	tcase_add_test(tc, test_log_journald);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(options_suite());
	int failed;

	srunner_add_suite(sr, log_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
