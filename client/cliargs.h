/*
 * cliargs.h - what every ferry CLI command needs to read its arguments:
 * usage errors (exit 2) and bounded numbers.  Part of the ferry program
 * only (cli.c, bench.c), not of libferry.
 */
#ifndef FERRY_CLIENT_CLIARGS_H
#define FERRY_CLIENT_CLIARGS_H

#define EXIT_USAGE 2

/* The command whose arguments are being read ("bench"), or NULL: names it
 * in usage errors and in the --help hint. */
extern const char *cli_command;

/* Print "ferry: [COMMAND: ]message" and a hint to stderr, exit 2. */
void cli_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* A whole decimal number in [min, max], or a usage error naming opt. */
unsigned long long cli_parse_num(const char *opt, const char *s,
    unsigned long long min, unsigned long long max);

#endif
