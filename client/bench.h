/*
 * bench.h - `ferry bench`: throughput, latency, loss and duplication of a
 * broker, measured the way `nats bench` does (client/bench.c).
 */
#ifndef FERRY_BENCH_H
#define FERRY_BENCH_H

/* `ferry bench --help`. */
extern const char bench_usage[];

/*
 * Run the command: argv[0] is "bench", getopt is reset (optind 0).
 * host, port and timeout_ms (connect and reply timeout) are the CLI's
 * global options.  Returns the exit status: 0, 1 (failure or a message
 * lost), 2 (usage error).
 */
int bench_main(const char *host, int port, int timeout_ms, int argc,
    char **argv);

#endif
