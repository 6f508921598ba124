/*
 * idempotent-consumer: at-least-once delivery acting exactly-once, with
 * libferry's blocking API.
 *
 * At-least-once means a message may be handled twice: a consumer that
 * dies after doing the work but before acking gets it redelivered to
 * another, and a producer that retries a publish without an id or a
 * producer id enqueues a second copy.  The consumer makes that harmless:
 * it records the key of every payment it applied (here in memory; in real
 * life in the same transaction as the work itself) and acks a repeat
 * without applying it again.
 *
 * FERRY_HOST and FERRY_PORT name the broker (default 127.0.0.1:4470).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry.h>

#define NPAY 5

static char topic[64];
static int applied[NPAY + 1], dups[NPAY + 1], balance, napplied, nskipped;

/* Connect as name; a consumer joins the group "ledger". */
static struct ferry *
connect_as(const char *name, int consumer)
{
	const char *port = getenv("FERRY_PORT");
	struct ferry *f = ferry_connect(getenv("FERRY_HOST"),
	    port ? atoi(port) : FERRY_DEFAULT_PORT, 5000, name);
	struct ferry_sub_opts so = { .group = "ledger", .prefetch = 1 };

	if (ferry_err(f) || (consumer &&
	    ferry_subscribe(f, topic, &so, NULL) < 0)) {
		fprintf(stderr, "%s\n", ferry_errstr(f));
		exit(1);
	}
	return f;
}

/* Apply a payment once: its key is the payment number in the body. */
static void
handle(const struct ferry_msg *m)
{
	int n = atoi((const char *)m->body + 2);	/* "p-N" */

	if (n < 1 || n > NPAY)
		return;
	if (applied[n]) {
		dups[n]++;
		nskipped++;
		return;
	}
	applied[n] = 1;
	balance += 10 * n;
	napplied++;
}

int
main(void)
{
	struct ferry *producer, *c1, *c2;
	struct ferry_msg *m;
	char body[16];

	snprintf(topic, sizeof(topic), "example.payments.%d", (int)getpid());
	c1 = connect_as("consumer-1", 1);
	producer = connect_as("producer", 0);
	for (int n = 1; n <= NPAY; n++) {
		snprintf(body, sizeof(body), "p-%d", n);
		ferry_publish_sync(producer, topic, body, strlen(body), NULL,
		    NULL);
	}
	/* A retry without an id: the broker cannot tell, a copy is made. */
	ferry_publish_sync(producer, topic, "p-3", 3, NULL, NULL);
	ferry_close(producer);

	/* Consumer 1 applies p-1, then p-2, and dies before acking p-2. */
	for (int i = 0; i < 2 && ferry_next(c1, 2000, &m) == 0; i++) {
		handle(m);
		if (i == 0)
			ferry_ack(c1, m->sid, m->lease, 0);
		ferry_msg_free(m);
	}
	ferry_close(c1);	/* p-2 goes back to the group */
	printf("consumer 1 applied p-1 and p-2, and died before acking "
	    "p-2\n");

	/* Consumer 2 gets the rest, p-2 and the copy of p-3 included. */
	c2 = connect_as("consumer-2", 1);
	while (napplied + nskipped < NPAY + 2 &&
	    ferry_next(c2, 5000, &m) == 0) {
		handle(m);
		ferry_ack(c2, m->sid, m->lease, 0);
		ferry_msg_free(m);
	}
	printf("payments applied: %d, duplicates skipped: %d\n", napplied,
	    nskipped);
	for (int n = 1; n <= NPAY; n++)
		if (dups[n])
			printf("  p-%d came %d times, applied once\n", n,
			    dups[n] + 1);
	printf("balance: %d (10 + 20 + 30 + 40 + 50 = 150)\n", balance);
	ferry_delete(c2, topic, NULL);
	ferry_close(c2);
	return balance == 150 && nskipped == 2 ? 0 : 1;
}
