/*
 * retry-dlq: retries with exponential backoff, then a dead-letter queue,
 * with libferry's blocking API.
 *
 * A failed job is nacked with a delay that doubles with each attempt (100
 * ms, 200 ms, ...).  The group allows 3 attempts: after the third failure
 * the broker moves the message to the dead-letter topic "<topic>.dlq",
 * with its history (each attempt's cause and error), where it can be
 * inspected and replayed (ferry dlq replay).  A nack without a delay
 * (delay_ms -1) uses the broker's own backoff instead: 1 s, 2 s, ...
 * with jitter.  "flaky" fails once then succeeds; "poison" always fails.
 *
 * FERRY_HOST and FERRY_PORT name the broker (default 127.0.0.1:4470).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry.h>

#define MAX_ATTEMPTS 3
#define BASE_MS 100

int
main(void)
{
	const char *port = getenv("FERRY_PORT");
	struct ferry_sub_opts work = { .group = "work", .prefetch = 10,
	    .max_attempts = MAX_ATTEMPTS };
	struct ferry_sub_opts dlq = { .group = "inspect" };
	char topic[64], dlq_topic[80], why[64];
	char log[2][512] = { "", "" };	/* per job, printed at the end */
	struct ferry_msg *m;
	struct ferry *f;
	int finished = 0;

	f = ferry_connect(getenv("FERRY_HOST"), port ? atoi(port) :
	    FERRY_DEFAULT_PORT, 5000, "example-retry");
	if (ferry_err(f)) {
		fprintf(stderr, "connect: %s\n", ferry_errstr(f));
		return 1;
	}
	snprintf(topic, sizeof(topic), "example.retry.%d", (int)getpid());
	snprintf(dlq_topic, sizeof(dlq_topic), "%s.dlq", topic);
	if (ferry_subscribe(f, topic, &work, NULL) < 0 ||
	    ferry_subscribe(f, dlq_topic, &dlq, NULL) < 0 ||
	    ferry_publish_sync(f, topic, "flaky", 5, NULL, NULL) < 0 ||
	    ferry_publish_sync(f, topic, "poison", 6, NULL, NULL) < 0) {
		fprintf(stderr, "%s\n", ferry_errstr(f));
		return 1;
	}
	/* Both jobs settled: flaky succeeded, poison dead-lettered. */
	while (finished < 2 && ferry_next(f, 5000, &m) == 0) {
		const char *body = m->body;
		char *out = log[strcmp(body, "flaky") == 0 ? 0 : 1];
		size_t used = strlen(out), room = sizeof(log[0]) - used;

		if (strcmp(m->topic, dlq_topic) == 0) {
			/* A dead letter: its history tells what happened. */
			snprintf(out + used, room, "%s: dead-lettered after "
			    "%zu attempts, last error \"%s\"\n", body,
			    m->nhist, m->nhist ?
			    m->hist[m->nhist - 1].error : "");
			finished++;
		} else if (strcmp(body, "poison") == 0 ||
		    m->attempt == 1) {
			long long delay = (long long)BASE_MS <<
			    (m->attempt - 1);

			snprintf(why, sizeof(why), "attempt %u failed",
			    m->attempt);
			if (m->attempt < MAX_ATTEMPTS)
				snprintf(out + used, room, "%s: %s, retry in "
				    "%lld ms\n", body, why, delay);
			else
				snprintf(out + used, room, "%s: %s, no "
				    "attempts left\n", body, why);
			ferry_nack(f, m->sid, m->lease, delay, why, 0);
			ferry_msg_free(m);
			continue;
		} else {
			snprintf(out + used, room, "%s: attempt %u "
			    "succeeded\n", body, m->attempt);
			finished++;
		}
		ferry_ack(f, m->sid, m->lease, 0);
		ferry_msg_free(m);
	}
	fputs(log[0], stdout);
	fputs(log[1], stdout);
	ferry_delete(f, topic, NULL);
	ferry_delete(f, dlq_topic, NULL);
	ferry_close(f);
	return finished == 2 ? 0 : 1;
}
