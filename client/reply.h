/*
 * reply.h - `ferry reply`: answer requests with a command's output, on
 * libferry's asynchronous API (client/reply.c).
 */
#ifndef FERRY_REPLY_H
#define FERRY_REPLY_H

/* `ferry reply --help`. */
extern const char reply_usage[];

/*
 * Run the command: argv[0] is "reply", getopt is reset (optind 0).  host,
 * port and timeout_ms (connect timeout) are the CLI's global options; the
 * URL, login and TLS ones come from cli_login, as for every command.
 * Returns the exit status: 0, 1 (failure), 2 (usage error).
 */
int reply_main(const char *host, int port, int timeout_ms, int argc,
    char **argv);

#endif
