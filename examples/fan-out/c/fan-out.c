/*
 * fan-out: publish/subscribe to two groups, with libferry's blocking API.
 *
 * Every group of a topic gets every message published to it (fan-out);
 * inside a group, each message goes to one member (see work-queue).  Here
 * "billing" and "shipping" each see all three orders.  The groups exist
 * before the orders are published: a group only receives what is
 * published after it was created.
 *
 * FERRY_HOST and FERRY_PORT name the broker (default 127.0.0.1:4470).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry.h>

static struct ferry *
connect_as(const char *name)
{
	const char *port = getenv("FERRY_PORT");
	struct ferry *f = ferry_connect(getenv("FERRY_HOST"),
	    port ? atoi(port) : FERRY_DEFAULT_PORT, 5000, name);

	if (ferry_err(f)) {
		fprintf(stderr, "connect: %s\n", ferry_errstr(f));
		exit(1);
	}
	return f;
}

int
main(void)
{
	const char *groups[2] = { "billing", "shipping" };
	struct ferry *sub[2], *pub = connect_as("shop");
	char topic[64], order[32];
	struct ferry_msg *m;
	int got = 0;

	snprintf(topic, sizeof(topic), "example.orders.%d", (int)getpid());
	for (int g = 0; g < 2; g++) {
		struct ferry_sub_opts so = { .group = groups[g] };

		sub[g] = connect_as(groups[g]);
		if (ferry_subscribe(sub[g], topic, &so, NULL) < 0) {
			fprintf(stderr, "%s\n", ferry_errstr(sub[g]));
			return 1;
		}
	}
	for (int i = 1; i <= 3; i++) {
		snprintf(order, sizeof(order), "order-%d", i);
		if (ferry_publish_sync(pub, topic, order, strlen(order), NULL,
		    NULL) < 0) {
			fprintf(stderr, "%s\n", ferry_errstr(pub));
			return 1;
		}
	}
	/* Each group in turn; in a group, first deliveries are in order. */
	for (int g = 0; g < 2; g++) {
		for (int i = 0; i < 3 && ferry_next(sub[g], 2000, &m) == 0;
		    i++) {
			printf("%s got %s\n", groups[g], (const char *)m->body);
			ferry_ack(sub[g], m->sid, m->lease, 0);
			ferry_msg_free(m);
			got++;
		}
		ferry_close(sub[g]);
	}
	ferry_delete(pub, topic, NULL);
	ferry_close(pub);
	return got == 6 ? 0 : 1;
}
