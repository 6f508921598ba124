/*
 * test-drain.c - SIGTERM drains: ferryd stops accepting and delivering,
 * refuses new requests with E_SHUTDOWN, waits for the acks of what is in
 * flight (up to drain_timeout), syncs and exits 0; a restart under load
 * with libferry's reconnect loses nothing confirmed and redelivers
 * nothing whose ack was confirmed.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-helpers.h"
#include "harness-extra.h"
#include "harness.h"

static struct ferryd d;

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* Wait (bounded) for ferryd to exit by itself; its exit status. */
static int
wait_exit(int ms)
{
	uint64_t t0 = now_ms();
	int st;

	while (now_ms() - t0 < (uint64_t)ms) {
		if (waitpid(d.pid, &st, WNOHANG) == d.pid) {
			d.pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 +
			    WTERMSIG(st);
		}
		usleep(10000);
	}
	return -1;
}

/*
 * A worker holds two deliveries when SIGTERM comes: ferryd keeps running
 * until both are acked, delivers nothing more meanwhile, answers a new
 * publish and a new subscription with E_SHUTDOWN, then exits 0; after the
 * restart the two acked messages are gone and the rest are there.
 */
START_TEST(drain_waits_for_inflight)
{
	struct ferry_msg *m1, *m2, *m;
	struct ferry *w, *p;
	uint64_t sid;
	int r;

	ferryd_start(&d, "--drain-timeout", "20", NULL);
	w = fc_connect(d.port, "worker");
	p = fc_connect(d.port, "producer");
	fc_sub(w, "dr.jobs", "workers", 2, 0, 0);
	fc_pub_n(p, "dr.jobs", 5);
	m1 = fc_next(w, 5000);
	m2 = fc_next(w, 5000);

	ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
	usleep(300000);
	ck_assert_int_eq(wait_exit(0), -1);	/* still there: 2 in flight */
	r = ferry_publish_sync(p, "dr.jobs", "late", 4, NULL, NULL);
	ck_assert_int_eq(r, FERRY_ESHUTDOWN);
	ck_assert(ferry_retryable(r));
	ck_assert_int_ne(ferry_subscribe(p, "dr.other", NULL, &sid), 0);

	ck_assert_int_eq(ferry_ack(w, m1->sid, m1->lease, FERRY_CONFIRM), 0);
	usleep(300000);
	ck_assert_int_eq(wait_exit(0), -1);	/* one still in flight */
	ck_assert_int_eq(ferry_next(w, 200, &m), FERRY_ETIMEOUT);
	ck_assert_int_eq(ferry_ack(w, m2->sid, m2->lease, FERRY_CONFIRM), 0);
	ck_assert_int_eq(wait_exit(5000), 0);
	ck_assert(ferryd_log_has(&d, "drained: no delivery in flight"));
	ferry_msg_free(m1);
	ferry_msg_free(m2);
	ferry_close(w);
	ferry_close(p);

	ferryd_restart(&d);
	w = fc_connect(d.port, "worker");
	fc_sub(w, "dr.jobs", "workers", 10, 0, 0);
	for (int i = 2; i < 5; i++) {
		m = fc_next(w, 5000);
		ck_assert_int_eq(fc_body_int(m), i);
		ck_assert_int_eq(m->attempt, 1);	/* never failed */
		ck_assert_int_eq(ferry_ack(w, m->sid, m->lease,
		    FERRY_CONFIRM), 0);
		ferry_msg_free(m);
	}
	fc_none(w, 300);
	ferry_close(w);
}
END_TEST

/* drain_timeout bounds the wait: a worker that never acks does not keep
 * ferryd from stopping, and its delivery comes back after the restart. */
START_TEST(drain_timeout_bounds_the_wait)
{
	struct ferry *w, *p;
	struct ferry_msg *m;
	uint64_t t0;

	ferryd_start(&d, "--drain-timeout", "0.5", NULL);
	w = fc_connect(d.port, "sleeper");
	p = fc_connect(d.port, "producer");
	fc_sub(w, "dr.slow", NULL, 1, 0, 0);
	fc_pub_n(p, "dr.slow", 1);
	m = fc_next(w, 5000);
	t0 = now_ms();
	ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
	ck_assert_int_eq(wait_exit(5000), 0);
	ck_assert_uint_ge(now_ms() - t0, 400);
	ck_assert(ferryd_log_has(&d, "drain_timeout: 1 deliveries still "
	    "unacked"));
	ferry_msg_free(m);
	ferry_close(w);
	ferry_close(p);
	ferryd_restart(&d);
	w = fc_connect(d.port, "worker");
	fc_sub(w, "dr.slow", NULL, 1, 0, 0);
	m = fc_next(w, 5000);
	ck_assert_int_eq(fc_body_int(m), 0);
	ferry_msg_free(m);
	ferry_close(w);
}
END_TEST

#define LOAD_N 3000

struct producer {
	int port;
	int confirmed[LOAD_N];	/* 1 once its publish was confirmed */
	int retries;
	int failed;
	int err, at;		/* why it gave up, at which message */
	char errstr[160];
};

/* Publish LOAD_N numbered messages, confirmed, as an idempotent producer
 * with reconnect; retry each until it is confirmed (bounded). */
static void *
produce(void *arg)
{
	struct ferry_reconnect_opts ro = { .max_time_ms = 20000,
	    .base_ms = 50, .max_backoff_ms = 200 };
	struct producer *pr = arg;
	struct ferry *p = ferry_connect("127.0.0.1", pr->port, 5000,
	    "producer");
	char body[16];

	if (!p || ferry_err(p) || ferry_set_reconnect(p, &ro) ||
	    ferry_set_producer(p, "drain-test", 1)) {
		pr->failed = 1;
		return NULL;
	}
	for (int i = 0; i < LOAD_N; i++) {
		int n = snprintf(body, sizeof(body), "%d", i), r = -1;
		uint64_t t0 = now_ms();

		while (now_ms() - t0 < 20000) {
			r = ferry_publish_sync(p, "dr.load", body, (size_t)n,
			    NULL, NULL);
			if (r == 0 || !ferry_retryable(r))
				break;
			pr->retries++;
			usleep(20000);
		}
		if (r != 0) {
			pr->failed = 1;
			pr->err = r;
			pr->at = i;
			snprintf(pr->errstr, sizeof(pr->errstr), "%s",
			    ferry_errstr(p));
			break;
		}
		pr->confirmed[i] = 1;
		if (i % 8 == 0)
			usleep(1000);	/* about 5k/s: the restart lands
					   mid-stream */
	}
	ferry_close(p);
	return NULL;
}

/* Once the worker has a third of the messages: SIGTERM, wait for
 * a clean exit, start again.  A thread of its own: the worker's ferry
 * calls block while they reconnect. */
static volatile int got_shared;
static int restart_status = -2;

static void *
restarter(void *arg)
{
	uint64_t t0 = now_ms();
	char port[16];
	char *extra[] = { "--port", port, NULL };

	snprintf(port, sizeof(port), "%d", d.port);	/* clients come back
							   to it */
	while (__atomic_load_n(&got_shared, __ATOMIC_SEQ_CST) < LOAD_N / 3 &&
	    now_ms() - t0 < 30000)
		usleep(5000);
	kill(d.pid, SIGTERM);
	restart_status = wait_exit(20000);
	if (restart_status == 0 && ferryd_try_start(&d, extra, NULL) != 0)
		restart_status = -3;
	return NULL;
}

/*
 * A producer and a worker run through a SIGTERM and restart.  Every
 * confirmed publish is delivered; the producer id keeps retried publishes
 * from being enqueued twice; a message whose ack was confirmed never comes
 * back; and since the drain let every delivery in flight be acked, no
 * message comes twice at all.
 */
START_TEST(restart_under_load)
{
	struct ferry_reconnect_opts ro = { .max_time_ms = 20000,
	    .base_ms = 50, .max_backoff_ms = 200 };
	static struct producer pr;
	static int seen[LOAD_N], acked[LOAD_N];
	struct ferry_msg *m;
	struct ferry *w;
	pthread_t th, rth;
	int got = 0, dups = 0, bad_redelivery = 0;
	uint64_t t0;

	ferryd_start(&d, "--drain-timeout", "10", NULL);
	memset(&pr, 0, sizeof(pr));
	pr.port = d.port;
	w = fc_connect(d.port, "worker");
	ck_assert_int_eq(ferry_set_reconnect(w, &ro), 0);
	fc_sub(w, "dr.load", "workers", 50, 0, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, produce, &pr), 0);
	ck_assert_int_eq(pthread_create(&rth, NULL, restarter, NULL), 0);

	t0 = now_ms();
	while (got < LOAD_N && now_ms() - t0 < 60000) {
		int r = ferry_next(w, 200, &m), i;

		if (r != 0)
			continue;
		i = fc_body_int(m);
		ck_assert(i >= 0 && i < LOAD_N);
		if (seen[i]++) {
			dups++;
			if (acked[i])
				bad_redelivery++;
		} else {
			__atomic_store_n(&got_shared, ++got, __ATOMIC_SEQ_CST);
		}
		if (ferry_ack(w, m->sid, m->lease, FERRY_CONFIRM) == 0)
			acked[i] = 1;
		ferry_msg_free(m);
	}
	pthread_join(th, NULL);
	pthread_join(rth, NULL);
	ck_assert_msg(!pr.failed, "the producer gave up at message %d: %d "
	    "(%s)", pr.at, pr.err, pr.errstr);
	ck_assert_msg(restart_status == 0, "ferryd exit status %d on SIGTERM",
	    restart_status);
	ck_assert(ferryd_log_has(&d, "drained: no delivery in flight"));
	for (int i = 0; i < LOAD_N; i++) {
		ck_assert_msg(pr.confirmed[i], "message %d never confirmed", i);
		ck_assert_msg(seen[i], "confirmed message %d lost", i);
	}
	ck_assert_int_eq(bad_redelivery, 0);
	ck_assert_msg(dups == 0, "%d messages delivered twice", dups);
	fc_none(w, 300);
	fprintf(stderr, "restart under load: %d messages, %d publish "
	    "retries, %llu worker reconnects, 0 lost, 0 twice\n", LOAD_N,
	    pr.retries, (unsigned long long)ferry_reconnects(w));
	ferry_close(w);
}
END_TEST

static Suite *
drain_suite(void)
{
	Suite *s = suite_create("drain");
	TCase *t = tcase_create("sigterm");

	tcase_add_checked_fixture(t, NULL, teardown);
	tcase_set_timeout(t, 120);
	tcase_add_test(t, drain_waits_for_inflight);
	tcase_add_test(t, drain_timeout_bounds_the_wait);
	tcase_add_test(t, restart_under_load);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(drain_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
