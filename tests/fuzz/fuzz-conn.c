/*
 * fuzz-conn.c - libFuzzer target: one client connection's byte stream
 * through the real broker, without sockets.
 *
 * One broker (journal in a scratch directory, fsync=never, 64K segments,
 * small frame and message limits) lives for the whole run.  Each input is
 * what one client sends: a connection made with no socket
 * (conn_new(b, -1, ...)) gets it in up to three chunks, cut at points
 * derived from the input's hash so partial frames are exercised
 * reproducibly; after each chunk the loop runs (flush, commit, pumps, due
 * timers) and the "client" reads everything written to it, which runs the
 * write callback as a drained socket would.  Then the connection is closed
 * and reaped the broker's own way, and every topic is deleted, so that
 * each input starts from an empty broker and the journal's segments are
 * deleted as they fill (the journal itself keeps growing its seqs only).
 *
 * A connection that is never reaped after close is reported as a crash.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth.h"
#include "broker.h"
#include "conn.h"
#include "fuzz-util.h"
#include "options.h"
#include "store.h"
#include "topic.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *base;
static struct options opt;
static struct broker b;
static char dir[PATH_MAX];

#define USERS "user SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" \
	"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:" \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU= pub=jobs.> " \
	"sub=jobs.*\nanonymous - admin\n"

static void
set(const char *key, const char *value)
{
	char err[256];

	if (options_set(&opt, key, value, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz-conn: %s = %s: %s\n", key, value, err);
		exit(1);
	}
}

static void
cleanup(void)
{
	broker_fini(&b);
	event_base_free(base);
	options_fini(&opt);
	fuzz_rm_rf(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[512] = "", users[PATH_MAX + 8];
	FILE *fp;
	int r;

	fuzz_quiet_logs();
	fuzz_mkdtemp(dir, sizeof(dir), "conn");
	if (options_init(&opt) < 0)
		exit(1);
	set("data_dir", dir);
	set("fsync", "never");
	set("segment_size", "64K");
	set("max_frame_size", "64K");
	set("max_message_size", "16K");
	set("max_output_buffer", "256K");
	set("retry_backoff_base", "0.001");
	set("retry_backoff_max", "0.01");
	/* Users, so that the SCRAM exchange is reachable: RFC 7677's
	 * "user", and an anonymous admin for every other session. */
	snprintf(users, sizeof(users), "%s/users", dir);
	fp = fopen(users, "w");
	if (fp == NULL || fputs(USERS, fp) < 0 || fclose(fp) != 0 ||
	    chmod(users, 0600) != 0) {
		fprintf(stderr, "fuzz-conn: cannot write %s\n", users);
		exit(1);
	}
	set("users_file", users);
	if (options_check(&opt, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz-conn: %s\n", err);
		exit(1);
	}
	if (!(base = event_base_new()) || broker_init(&b, base, &opt) < 0) {
		fprintf(stderr, "fuzz-conn: cannot set up the broker\n");
		exit(1);
	}
	if (auth_init(&b.core) < 0) {
		fprintf(stderr, "fuzz-conn: auth_init failed\n");
		exit(1);
	}
	if ((r = store_open(&b.core, err, sizeof(err))) < 0) {
		fprintf(stderr, "fuzz-conn: store_open: %s\n", err);
		exit(1);
	}
	atexit(cleanup);
	return 0;
}

/* The input's only connection is alive until the reap event frees it. */
static int
alive(void)
{
	return b.core.nconns > 0;
}

/* One loop turn, then the client reads all it was sent: like a socket
 * that drained, this runs the write callback (resume deliveries, or reap
 * a closing connection). */
static void
turn(struct conn *c)
{
	struct evbuffer *out;

	event_base_loop(base, EVLOOP_NONBLOCK);
	if (!alive())
		return;
	out = bufferevent_get_output(c->bev);
	evbuffer_unfreeze(out, 1);	/* as feed() does for input */
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_freeze(out, 1);
	bufferevent_trigger(c->bev, EV_WRITE, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* What a read from the socket would add.  A socket bufferevent keeps its
 * input frozen at the end except while it reads itself. */
static void
feed(struct conn *c, const uint8_t *p, size_t n)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	evbuffer_unfreeze(in, 0);
	if (evbuffer_add(in, p, n) < 0)
		abort();
	evbuffer_freeze(in, 0);
}

static uint64_t
hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;	/* FNV-1a */

	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t h = hash(data, size);
	size_t cut[3], at = 0, t;
	struct conn *c;
	int i;

	if (!(c = conn_new(&b.core, -1, NULL, 0)))
		return 0;
	cut[0] = size ? (size_t)(h % (size + 1)) : 0;
	cut[1] = size ? (size_t)((h >> 32) % (size + 1)) : 0;
	cut[2] = size;
	if (cut[0] > cut[1]) {
		t = cut[0];
		cut[0] = cut[1];
		cut[1] = t;
	}
	for (i = 0; i < 3; i++) {
		if (cut[i] > at && alive() && !conn_is_closing(c)) {
			feed(c, data + at, cut[i] - at);
			conn_handle_input(c);
			turn(c);
		}
		at = cut[i];
	}

	/* Hang up: close, let the output drain, and let the reap event
	 * free the connection.  A closing connection still owes the
	 * confirms its journal records are not yet durable for; when a
	 * segment switch makes them wait for the sync thread, the loop has
	 * to wait for its wake-up too: up to 2 s, 50 ms at a time. */
	for (i = 0; alive() && i < 48; i++) {
		if (!conn_is_closing(c))
			conn_close(c);
		if (i >= 8) {
			struct timeval tv = {0, 50 * 1000};

			event_base_loopexit(base, &tv);
			event_base_dispatch(base);
		}
		turn(c);
	}
	if (alive()) {
		fprintf(stderr, "fuzz-conn: closed connection not reaped\n");
		abort();
	}

	/* Back to an empty broker: what the next input sees must not
	 * depend on what came before it. */
	for (uint32_t k = 0; k < b.core.topics_cap; k++)
		while (b.core.topics[k])
			store_topic_delete(&b.core, b.core.topics[k]);
	event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}
