/*
 * backlog.c - a backlog larger than memory (bench/run --scale): publish
 * --msgs confirmed messages into a durable group nobody consumes, or
 * drain such a group, checking that every message arrives once, in the
 * order published, with its body intact.
 *
 *	build/bench/ferry-backlog-bench publish|drain [--msgs N]
 *	    [--size BYTES] [--topic T] [--group G] [--port P] [--host H]
 *	build/bench/ferry-backlog-bench evict DIR
 *
 * publish creates the group first, then publishes pipelined (batches of
 * 1000, at most 8000 unconfirmed).  drain subscribes (prefetch 1000), acks
 * each delivery, and stops after --msgs or 30 s without a message.  Each
 * prints one JSON object: counts, seconds (publish: first publish to last
 * confirm; drain: subscribe to last delivery) and the rate.  Exit status 1
 * if anything failed, was missing, repeated, out of order or damaged.
 *
 * evict drops the files of DIR (a stopped ferryd's data directory) from
 * the page cache: each is synced, then posix_fadvise(POSIX_FADV_DONTNEED),
 * so that the next start-up reads from the disk (a cold start) without
 * dropping every other process's cache as /proc/sys/vm/drop_caches would.
 */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"

#define BATCH 1000
#define WINDOW 8000
#define MAX_SIZE (1u << 20)

static const char *host = "127.0.0.1", *topic = "backlog", *group = "g";
static int port = FERRY_DEFAULT_PORT;
static uint64_t msgs = 1000000;
static size_t size = 1024;
static uint8_t *pattern;	/* pattern[i] = i: body byte k of message s
				   is pattern[k + s % 256] */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct ferry *
connect_or_die(const char *name)
{
	struct ferry *f = ferry_connect(host, port, 10000, name);

	if (f == NULL || ferry_err(f)) {
		fprintf(stderr, "backlog: connect: %s\n",
		    f ? ferry_errstr(f) : "out of memory");
		exit(1);
	}
	return f;
}

static void
fill(uint8_t *b, uint64_t seq)
{
	memcpy(b, pattern + seq % 256, size);
	memcpy(b, &seq, sizeof(seq));
}

static int
publish(void)
{
	struct ferry *f = connect_or_die("backlog-pub");
	struct ferry_sub_opts so = {.group = group};
	struct ferry_pub_msg *m = calloc(BATCH, sizeof(*m));
	uint8_t *bodies = malloc(BATCH * size);
	struct ferry_confirms c = {0};
	uint64_t sid, sent = 0, failed = 0;
	double t0;

	if (!m || !bodies)
		return 1;
	if (ferry_subscribe(f, topic, &so, &sid) != FERRY_OK ||
	    ferry_unsubscribe(f, sid) != FERRY_OK) {
		fprintf(stderr, "backlog: group: %s\n", ferry_errstr(f));
		return 1;
	}
	t0 = now_s();
	while (sent < msgs) {
		size_t k = msgs - sent < BATCH ? (size_t)(msgs - sent) : BATCH;

		for (size_t i = 0; i < k; i++) {
			fill(bodies + i * size, sent + i);
			m[i] = (struct ferry_pub_msg){bodies + i * size, size,
			    NULL, NULL, 0};
		}
		if (ferry_publish_batch(f, topic, m, k, FERRY_CONFIRM) !=
		    FERRY_OK || ferry_wait_confirms(f, WINDOW, 60000, &c) < 0)
			break;
		failed += c.failed;
		sent += k;
	}
	if (ferry_wait_confirms(f, 0, 60000, &c) < 0)
		sent = 0;
	failed += c.failed;
	printf("{\"published\":%" PRIu64 ",\"failed\":%" PRIu64
	    ",\"seconds\":%.3f,\"rate\":%.0f}\n", sent, failed, now_s() - t0,
	    (double)sent / (now_s() - t0));
	ferry_close(f);
	free(m);
	free(bodies);
	return sent == msgs && !failed ? 0 : 1;
}

static int
drain(void)
{
	struct ferry *f = connect_or_die("backlog-sub");
	struct ferry_sub_opts so = {.group = group, .prefetch = 1000};
	uint64_t sid, got = 0, disorder = 0, bad = 0, expect = 0, seq;
	double t0 = now_s(), last = t0;
	uint8_t *want = malloc(size);

	if (!want || ferry_subscribe(f, topic, &so, &sid) != FERRY_OK) {
		fprintf(stderr, "backlog: subscribe: %s\n", ferry_errstr(f));
		return 1;
	}
	while (got < msgs) {
		struct ferry_msg *m = NULL;
		int r = ferry_next(f, 30000, &m);

		if (r != FERRY_OK) {
			fprintf(stderr, "backlog: after %" PRIu64 ": %s\n", got,
			    ferry_errstr(f));
			break;
		}
		last = now_s();
		if (m->len != size) {
			bad++;
		} else {
			memcpy(&seq, m->body, sizeof(seq));
			fill(want, seq);
			if (memcmp(want, m->body, size))
				bad++;
			if (seq != expect)
				disorder++;
			expect = seq + 1;
		}
		got++;
		if (ferry_ack(f, m->sid, m->lease, 0) < 0)
			bad++;
		ferry_msg_free(m);
	}
	ferry_ping(f);		/* the acks are in */
	printf("{\"received\":%" PRIu64 ",\"out_of_order\":%" PRIu64
	    ",\"bad\":%" PRIu64 ",\"seconds\":%.3f,\"rate\":%.0f}\n", got,
	    disorder, bad, last - t0, (double)got / (last - t0));
	ferry_close(f);
	free(want);
	return got == msgs && !disorder && !bad ? 0 : 1;
}

static int
evict(const char *dir)
{
	char path[4096];
	struct dirent *de;
	DIR *d = opendir(dir);
	int fd, bad = 0;

	if (!d) {
		perror(dir);
		return 1;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		/* dirty pages are not dropped: write them first */
		if ((fd = open(path, O_RDONLY)) < 0 || fdatasync(fd) < 0 ||
		    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
			perror(path);
			bad = 1;
		}
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return bad;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"msgs", required_argument, NULL, 'n'},
		{"size", required_argument, NULL, 's'},
		{"topic", required_argument, NULL, 't'},
		{"group", required_argument, NULL, 'g'},
		{"port", required_argument, NULL, 'p'},
		{"host", required_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	int c;

	if (argc == 3 && !strcmp(argv[1], "evict"))
		return evict(argv[2]);
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'n': msgs = strtoull(optarg, NULL, 10); break;
		case 's': size = strtoul(optarg, NULL, 10); break;
		case 't': topic = optarg; break;
		case 'g': group = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'H': host = optarg; break;
		default: return 2;
		}
	}
	if (optind + 1 != argc || msgs == 0 || size < 8 || size > MAX_SIZE) {
		fprintf(stderr, "usage: ferry-backlog-bench publish|drain "
		    "[--msgs N] [--size 8..%u] [--topic T] [--group G] "
		    "[--port P] [--host H]\n"
		    "       ferry-backlog-bench evict DIR\n", MAX_SIZE);
		return 2;
	}
	if (!(pattern = malloc(size + 256)))
		return 1;
	for (size_t i = 0; i < size + 256; i++)
		pattern[i] = (uint8_t)i;
	if (!strcmp(argv[optind], "publish"))
		return publish();
	if (!strcmp(argv[optind], "drain"))
		return drain();
	fprintf(stderr, "backlog: publish or drain, not '%s'\n",
	    argv[optind]);
	return 2;
}
