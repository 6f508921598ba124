/*
 * cliargs.c - usage errors and number parsing for the ferry CLI.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliargs.h"
#include "ferry.h"

const char *cli_command;
struct cli_login cli_login;

void
cli_opts(struct ferry_opts *o, const char *host, int port, int timeout_ms,
    const char *name)
{
	const char *url = cli_login.url ? cli_login.url : getenv("FERRY_URL");

	memset(o, 0, sizeof(*o));
	o->url = url;
	if (url == NULL || *url == '\0' || cli_login.addr_given) {
		o->host = host;
		o->port = port;
	}
	o->timeout_ms = timeout_ms;
	o->name = name;
	o->user = cli_login.user;
	o->password_file = cli_login.password_file;
	o->tls = cli_login.tls;
	o->tls_ca = cli_login.ca;
	o->tls_cert = cli_login.cert;
	o->tls_key = cli_login.key;
}

struct ferry *
cli_connect(const char *host, int port, int timeout_ms, const char *name)
{
	struct ferry_opts o;

	cli_opts(&o, host, port, timeout_ms, name);
	return ferry_connect_opts(&o);
}

void
cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	if (cli_command)
		fprintf(stderr, "ferry: %s: ", cli_command);
	else
		fputs("ferry: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cli_command)
		fprintf(stderr, "\nTry 'ferry %s --help'.\n", cli_command);
	else
		fputs("\nTry 'ferry --help' or 'ferry COMMAND --help'.\n",
		    stderr);
	exit(EXIT_USAGE);
}

unsigned long long
cli_parse_num(const char *opt, const char *s, unsigned long long min,
    unsigned long long max)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (*s == '-' || *s == '\0')
		cli_usage_error("%s: invalid number '%s'", opt, s);
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		cli_usage_error("%s: '%s' is not a number in %llu..%llu", opt,
		    s, min, max);
	return v;
}

/* 1 if s is a whole finite number above 0 and at most max, in *v. */
static int
positive(const char *s, double max, double *v)
{
	char *end;

	errno = 0;
	*v = strtod(s, &end);
	return !errno && end != s && *end == '\0' && isfinite(*v) && *v > 0 &&
	    *v <= max;
}

double
cli_parse_positive(const char *opt, const char *s, double max)
{
	double v;

	if (!positive(s, max, &v))
		cli_usage_error("%s: '%s' is not a positive number up to %g",
		    opt, s, max);
	return v;
}

uint64_t
cli_parse_seconds(const char *opt, const char *s, double min, double max)
{
	double v;

	if (!positive(s, max, &v) || v < min) {
		if (min > 0)
			cli_usage_error("%s: expected seconds from %g to %g, "
			    "got '%s'", opt, min, max, s);
		cli_usage_error("%s: '%s' is not a positive number of seconds",
		    opt, s);
	}
	return v * 1000 < 1 ? 1 : (uint64_t)(v * 1000);
}

void
cli_warn(const char *fmt, ...)
{
	va_list ap;

	fputs("ferry: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
