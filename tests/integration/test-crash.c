/*
 * test-crash.c - SIGKILL ferryd at random moments while a producer (and a
 * consumer) run against it, restart it on the same data directory, and
 * check the durability promises of fsync=always:
 *   - every confirmed publish is delivered after the crashes;
 *   - a message whose confirmed ack was received is never delivered again.
 *
 * The producer and the consumer are forked children using libferry.  They
 * reconnect after each crash (reading the new port from the port file) and
 * log what the broker confirmed, one line per event, to files with
 * O_APPEND: a line is written only after its confirm arrived, so the log
 * is a lower bound of what was confirmed.  The seed of the crash schedule
 * is printed (set FERRY_CRASH_SEED to repeat one).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ferry.h"
#include "harness-extra.h"

#define TOPIC "crash.jobs"
#define GROUP "workers"
#define MAX_N 200000u		/* numbers a producer may publish */
#define WINDOW 64		/* unconfirmed publishes in flight */
#define CRASHES 12
#define CRASH_BUDGET_MS 20000	/* the crash loop stops after this */

static struct ferryd d;
static pid_t children[2];	/* killed by teardown if a check failed */

static void
setup(void)
{
	/* Small segments, so that crashes also hit segment rollover. */
	ferryd_start(&d, "--segment-size", "256K", NULL);
}

static void
teardown(void)
{
	for (int i = 0; i < 2; i++)
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	ferryd_cleanup(&d);
}

static unsigned
crash_seed(void)
{
	const char *s = getenv("FERRY_CRASH_SEED");
	unsigned seed = s && *s ? (unsigned)strtoul(s, NULL, 10) :
	    (unsigned)now_ms() ^ (unsigned)getpid();

	fprintf(stderr, "crash seed %u (FERRY_CRASH_SEED=%u repeats it)\n",
	    seed, seed);
	return seed;
}

/* ---- children: no Check calls here, only _exit ---- */

/* Connect to whichever ferryd is running now; NULL after timeout_ms. */
static struct ferry *
child_connect(const char *dir, const char *name, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	while (now_ms() < deadline) {
		int port = ferryd_read_port(dir);
		struct ferry *f;

		if (port > 0) {
			f = ferry_connect("127.0.0.1", port, 2000, name);
			if (f && ferry_err(f) == 0)
				return f;
			ferry_close(f);
		}
		usleep(20000);
	}
	return NULL;
}

static void
log_line(int fd, char tag, unsigned long n)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%c %lu\n", tag, n);

	if (write(fd, buf, (size_t)len) != len)
		_exit(3);
}

struct producer {
	int log;
	uint64_t rid[WINDOW];	/* pipelined request ids ... */
	unsigned long num[WINDOW];	/* ... and their numbers */
	int used[WINDOW];
};

static void
on_confirm(void *arg, const struct ferry_confirm *c)
{
	struct producer *p = arg;

	for (int i = 0; i < WINDOW; i++) {
		if (!p->used[i] || p->rid[i] != c->rid)
			continue;
		p->used[i] = 0;
		if (c->err == FERRY_OK)
			log_line(p->log, 'c', p->num[i]);
		return;
	}
}

/*
 * Publish "0", "1", ... pipelined, at most WINDOW unconfirmed, logging
 * "c N" per confirm.  A publish lost in a crash is not published again:
 * each number is sent once.  Runs until killed (or MAX_N, or 60 s).
 */
static void
producer_main(const char *dir, const char *logpath)
{
	struct producer p = {0};
	unsigned long next = 0;
	uint64_t end = now_ms() + 60000;
	struct ferry *f;

	p.log = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (p.log < 0)
		_exit(2);
	while (next < MAX_N && now_ms() < end) {
		if (!(f = child_connect(dir, "producer", 15000)))
			_exit(4);
		memset(p.used, 0, sizeof(p.used));
		ferry_set_confirm_cb(f, on_confirm, &p);
		while (next < MAX_N && ferry_err(f) == 0 && now_ms() < end) {
			char body[24];
			int slot = -1, len;

			for (int i = 0; i < WINDOW && slot < 0; i++)
				if (!p.used[i])
					slot = i;
			if (slot < 0) {
				ferry_wait_confirms(f, WINDOW / 2, 2000, NULL);
				continue;
			}
			/* At most ~15k/s: keeps the final drain short. */
			if (next % 32 == 31)
				usleep(2000);
			len = snprintf(body, sizeof(body), "%lu", next);
			if (ferry_publish_pipelined(f, TOPIC, body,
			    (size_t)len, NULL, &p.rid[slot]) != 0)
				break;
			p.num[slot] = next++;
			p.used[slot] = 1;
		}
		/* Unconfirmed ones were reported failed by the library. */
		ferry_close(f);
	}
	_exit(0);
}

/*
 * Consume from GROUP, logging "d N" per delivery, then the outcome of its
 * confirmed ack.  Runs until killed (or 60 s).
 */
static void
consumer_main(const char *dir, const char *logpath)
{
	struct ferry_sub_opts so = {.group = GROUP, .prefetch = 32};
	uint64_t end = now_ms() + 60000;
	int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0600);
	struct ferry *f;

	if (fd < 0)
		_exit(2);
	while (now_ms() < end) {
		if (!(f = child_connect(dir, "consumer", 15000)))
			_exit(4);
		if (ferry_subscribe(f, TOPIC, &so, NULL) != 0) {
			ferry_close(f);
			usleep(20000);
			continue;
		}
		while (ferry_err(f) == 0 && now_ms() < end) {
			struct ferry_msg *m;
			unsigned long n;
			int r;

			if (ferry_next(f, 500, &m) != FERRY_OK)
				continue;
			n = strtoul(m->body, NULL, 10);
			log_line(fd, 'd', n);
			r = ferry_ack(f, m->sid, m->lease, FERRY_CONFIRM);
			/* "a": acked; "x": refused, so not acked; "u": the
			 * connection failed first, the ack may be stored */
			log_line(fd, r == 0 ? 'a' : FERRY_IS_BROKER_ERROR(r) ?
			    'x' : 'u', n);
			ferry_msg_free(m);
		}
		ferry_close(f);
	}
	_exit(0);
}

static pid_t
fork_child(void (*fn)(const char *, const char *), const char *logpath)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		fn(d.dir, logpath);
	for (int i = 0; i < 2; i++)
		if (children[i] <= 0) {
			children[i] = pid;
			break;
		}
	return pid;
}

static void
kill_child(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	for (int i = 0; i < 2; i++)
		if (children[i] == pid)
			children[i] = 0;
}

/* ---- checks ---- */

/* Read a log of "X N" lines into a malloc'd, NUL-terminated string. */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/*
 * SIGKILL ferryd CRASHES times at seeded random moments (bounded by
 * CRASH_BUDGET_MS), restarting it each time.  Returns the crashes done.
 */
static int
crash_loop(unsigned seed)
{
	uint64_t t0 = now_ms();
	int i;

	srand(seed);
	for (i = 0; i < CRASHES && now_ms() - t0 < CRASH_BUDGET_MS; i++) {
		usleep((useconds_t)(50 + rand() % 350) * 1000);
		ferryd_kill(&d);
		if (rand() % 2)
			usleep((useconds_t)(rand() % 50) * 1000);
		ferryd_restart(&d);
	}
	return i;
}

/*
 * Drain GROUP: count deliveries per number into cnt (MAX_N entries),
 * acking each; stops after 1.5 s without a message (30 s at most).
 */
static unsigned long
drain(uint8_t *cnt)
{
	struct ferry_sub_opts so = {.group = GROUP, .prefetch = 1024};
	struct ferry *f = ferry_connect("127.0.0.1", d.port, 5000, "drain");
	uint64_t end = now_ms() + 30000;
	unsigned long total = 0;

	ck_assert_msg(ferry_err(f) == 0, "%s", ferry_errstr(f));
	ck_assert_int_eq(ferry_subscribe(f, TOPIC, &so, NULL), 0);
	while (now_ms() < end) {
		struct ferry_msg *m;
		char *e;
		unsigned long n;
		int r = ferry_next(f, 1500, &m);

		if (r == FERRY_ETIMEOUT)
			break;
		ck_assert_msg(r == FERRY_OK, "drain: %s", ferry_errstr(f));
		n = strtoul(m->body, &e, 10);
		ck_assert_msg(*e == '\0' && n < MAX_N, "bad body %s",
		    (char *)m->body);
		if (cnt[n] < 255)
			cnt[n]++;
		total++;
		ck_assert_int_eq(ferry_ack(f, m->sid, m->lease, 0), 0);
		ferry_msg_free(m);
	}
	ck_assert_msg(now_ms() < end, "drain did not finish in 30 s");
	ck_assert_int_eq(ferry_ping(f), 0);
	ferry_close(f);
	return total;
}

START_TEST(crash_confirmed_publishes)
{
	char plog[300];
	uint8_t *cnt = calloc(MAX_N, 1), *conf = calloc(MAX_N, 1);
	unsigned long nconf = 0, total, n;
	unsigned seed = crash_seed();
	uint64_t t0 = now_ms();
	pid_t prod;
	char *text, *p;
	int crashes;

	ck_assert_ptr_nonnull(cnt);
	ck_assert_ptr_nonnull(conf);
	snprintf(plog, sizeof(plog), "%s/producer.log", d.dir);
	prod = fork_child(producer_main, plog);
	crashes = crash_loop(seed);
	usleep(300000);
	kill_child(prod);
	/* One more crash with nothing running: recovery is idempotent. */
	ferryd_kill(&d);
	ferryd_restart(&d);

	text = slurp(plog);
	for (p = text; *p; p = strchr(p, '\n') + 1) {
		ck_assert_int_eq(sscanf(p, "c %lu", &n), 1);
		ck_assert_uint_lt(n, MAX_N);
		ck_assert_msg(!conf[n], "%lu confirmed twice", n);
		conf[n] = 1;
		nconf++;
	}
	free(text);
	total = drain(cnt);
	fprintf(stderr, "crash_confirmed_publishes: %d crashes, %lu confirmed, "
	    "%lu delivered, %llu ms\n", crashes, nconf, total,
	    (unsigned long long)(now_ms() - t0));
	ck_assert_int_ge(crashes, 10);
	ck_assert_uint_gt(nconf, 1000);
	for (n = 0; n < MAX_N; n++) {
		ck_assert_msg(!conf[n] || cnt[n] >= 1,
		    "confirmed message %lu lost (seed %u)", n, seed);
		/* Nothing is ever published twice, so nothing in the
		 * journal twice: a duplicate would be invented. */
		ck_assert_msg(cnt[n] <= 1, "message %lu delivered %u times "
		    "(seed %u)", n, cnt[n], seed);
	}
	ck_assert_int_eq(ferryd_stop(&d), 0);
	free(cnt);
	free(conf);
}
END_TEST

START_TEST(crash_confirmed_acks)
{
	char plog[300], clog[300];
	uint8_t *cnt = calloc(MAX_N, 1), *conf = calloc(MAX_N, 1);
	uint8_t *acked = calloc(MAX_N, 1), *unsure = calloc(MAX_N, 1);
	unsigned long nconf = 0, nacked = 0, ndeliv = 0, nunsure = 0;
	unsigned long total, n;
	unsigned seed = crash_seed();
	uint64_t t0 = now_ms();
	pid_t prod, cons;
	char *text, *p, tag = 0;
	int crashes;

	ck_assert_ptr_nonnull(cnt);
	ck_assert_ptr_nonnull(conf);
	ck_assert_ptr_nonnull(acked);
	ck_assert_ptr_nonnull(unsure);
	snprintf(plog, sizeof(plog), "%s/producer.log", d.dir);
	snprintf(clog, sizeof(clog), "%s/consumer.log", d.dir);
	cons = fork_child(consumer_main, clog);
	prod = fork_child(producer_main, plog);
	crashes = crash_loop(seed);
	usleep(300000);
	kill_child(prod);
	kill_child(cons);
	ferryd_kill(&d);
	ferryd_restart(&d);

	text = slurp(plog);
	for (p = text; *p; p = strchr(p, '\n') + 1) {
		ck_assert_int_eq(sscanf(p, "c %lu", &n), 1);
		ck_assert_uint_lt(n, MAX_N);
		conf[n] = 1;
		nconf++;
	}
	free(text);
	/* The consumer's log is in order: a delivery after a confirmed
	 * ack of the same message is a lost ack. */
	text = slurp(clog);
	for (p = text; *p; p = strchr(p, '\n') + 1) {
		ck_assert_int_eq(sscanf(p, "%c %lu", &tag, &n), 2);
		ck_assert_uint_lt(n, MAX_N);
		if (tag == 'd') {
			ck_assert_msg(!acked[n], "message %lu delivered again "
			    "after its confirmed ack (seed %u)", n, seed);
			ndeliv++;
		} else if (tag == 'a') {
			acked[n] = 1;
			nacked++;
		} else if (tag == 'u') {
			unsure[n] = 1;
			nunsure++;
		} else {
			ck_assert_int_eq(tag, 'x');
		}
	}
	free(text);
	if (tag == 'd') {
		/* Killed between sending the ack and hearing back. */
		unsure[n] = 1;
		nunsure++;
	}
	total = drain(cnt);
	fprintf(stderr, "crash_confirmed_acks: %d crashes, %lu confirmed, "
	    "%lu delivered and %lu acked during the crashes, %lu after, "
	    "%llu ms\n", crashes, nconf, ndeliv, nacked, total,
	    (unsigned long long)(now_ms() - t0));
	ck_assert_int_ge(crashes, 10);
	ck_assert_uint_gt(nconf, 1000);
	ck_assert_uint_gt(nacked, 100);
	/* One confirmed ack at a time: each crash (and the final kill of
	 * the consumer) leaves at most one ack whose outcome is unknown. */
	ck_assert_uint_le(nunsure, (unsigned long)crashes + 2);
	for (n = 0; n < MAX_N; n++) {
		ck_assert_msg(!acked[n] || !cnt[n], "message %lu delivered "
		    "after the crashes despite its confirmed ack (seed %u)", n,
		    seed);
		ck_assert_msg(!conf[n] || acked[n] || unsure[n] || cnt[n] >= 1,
		    "confirmed message %lu, never acked, lost (seed %u)", n,
		    seed);
	}
	ck_assert_int_eq(ferryd_stop(&d), 0);
	free(cnt);
	free(conf);
	free(acked);
	free(unsure);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("crash");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, crash_confirmed_publishes);
	tcase_add_test(tc, crash_confirmed_acks);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
