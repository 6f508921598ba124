/*
 * publish: fire-and-forget vs confirmed publishing, with libferry's
 * blocking API.
 *
 * Fire-and-forget (ferry_publish) returns once the message is in the
 * client's buffer: fastest, but nothing says it arrived; ferry_flush()
 * only says it was written to the socket.  A confirmed publish
 * (ferry_publish_sync) returns once the broker has stored the message (on
 * disk, with ferryd's default fsync = always) and gives its id.
 *
 * FERRY_HOST and FERRY_PORT name the broker (default 127.0.0.1:4470).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry.h>

int
main(void)
{
	const char *host = getenv("FERRY_HOST");
	const char *port = getenv("FERRY_PORT");
	struct ferry_sub_opts so = { .group = "audit" };
	char topic[64], body[32], id[FERRY_ID_MAX + 1];
	struct ferry_msg *m;
	struct ferry *f;
	int got = 0;

	f = ferry_connect(host, port ? atoi(port) : FERRY_DEFAULT_PORT, 5000,
	    "example-publish");
	if (ferry_err(f)) {
		fprintf(stderr, "connect: %s\n", ferry_errstr(f));
		return 1;
	}
	snprintf(topic, sizeof(topic), "example.publish.%d", (int)getpid());
	/* A group that keeps what is published, to count it at the end. */
	if (ferry_subscribe(f, topic, &so, NULL) < 0)
		goto fail;

	for (int i = 1; i <= 3; i++) {
		snprintf(body, sizeof(body), "fire-and-forget %d", i);
		if (ferry_publish(f, topic, body, strlen(body), NULL) < 0)
			goto fail;
	}
	if (ferry_flush(f) < 0)
		goto fail;
	printf("fire-and-forget: 3 sent, no answer awaited\n");

	for (int i = 1; i <= 3; i++) {
		snprintf(body, sizeof(body), "confirmed %d", i);
		if (ferry_publish_sync(f, topic, body, strlen(body), NULL,
		    id) < 0)
			goto fail;
		/* id is the broker's UUID for it, e.g. for ferry trace. */
		printf("confirmed %d: stored, id of %zu characters\n", i,
		    strlen(id));
	}

	while (got < 6 && ferry_next(f, 2000, &m) == 0) {
		got++;
		ferry_ack(f, m->sid, m->lease, 0);
		ferry_msg_free(m);
	}
	printf("the audit group received %d messages\n", got);
	ferry_delete(f, topic, NULL);
	ferry_close(f);
	return got == 6 ? 0 : 1;
fail:
	fprintf(stderr, "%s\n", ferry_errstr(f));
	ferry_close(f);
	return 1;
}
