/*
 * cliargs.h - what every ferry CLI command needs to read its arguments:
 * usage errors (exit 2) and bounded numbers.  Part of the ferry program
 * only (cli.c, bench.c), not of libferry.
 */
#ifndef FERRY_CLIENT_CLIARGS_H
#define FERRY_CLIENT_CLIARGS_H

#include <stdint.h>

#define EXIT_USAGE 2

struct ferry;

/*
 * How every command logs in (the global --url, --user, --password-file;
 * FERRY_URL and FERRY_PASSWORD are read by libferry).  addr_given: --host,
 * --port, FERRY_HOST or FERRY_PORT was given, and wins over the URL's.
 */
struct cli_login {
	const char *url;
	const char *user;
	const char *password_file;
	int addr_given;
	int tls;		/* --tls; also implied by --ca, --cert */
	const char *ca, *cert, *key;
};
extern struct cli_login cli_login;

/* The connection options cli_login and the global --host, --port and
 * --timeout make, for either API (strings borrowed from them). */
struct ferry_opts;
void cli_opts(struct ferry_opts *o, const char *host, int port,
    int timeout_ms, const char *name);

/* Connect as cli_opts() says; the handle carries any error (NULL: out of
 * memory), as ferry_connect()'s does. */
struct ferry *cli_connect(const char *host, int port, int timeout_ms,
    const char *name);

/* The command whose arguments are being read ("bench"), or NULL: names it
 * in usage errors and in the --help hint. */
extern const char *cli_command;

/* Print "ferry: [COMMAND: ]message" and a hint to stderr, exit 2. */
void cli_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* A whole decimal number in [min, max], or a usage error naming opt. */
unsigned long long cli_parse_num(const char *opt, const char *s,
    unsigned long long min, unsigned long long max);

/* A finite number above 0 and at most max (a rate, fractional seconds), or
 * a usage error naming opt. */
double cli_parse_positive(const char *opt, const char *s, double max);

/*
 * Seconds, possibly fractional, above 0 and in [min, max], as milliseconds
 * (at least 1), or a usage error naming opt (and the range, if min > 0).
 */
uint64_t cli_parse_seconds(const char *opt, const char *s, double min,
    double max);

/* Print "ferry: message" and a newline to stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
