/*
 * test-examples.c - every C example in examples/<pattern>/c/ against a
 * real ferryd: it must exit 0 by itself and print exactly what its
 * pattern promises.
 *
 * The examples' paths come from the environment (EXAMPLE_<PATTERN>, set
 * by meson); each runs with FERRY_HOST and FERRY_PORT naming the test's
 * ferryd, and is killed (by its PID) if it has not exited in 30 s.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct ferryd d;

static void
setup(void)
{
	ferryd_start(&d, NULL);
}

static void
teardown(void)
{
	if (d.pid > 0)
		ck_assert_msg(ferryd_stop(&d) == 0, "ferryd exit (see %s)",
		    d.log);
	ferryd_cleanup(&d);
}

/* Run the example named by env var, return its stdout (malloc'd) and
 * exit status in *status (-1 if it was killed or crashed). */
static char *
run_example(const char *env, int *status)
{
	const char *path = getenv(env);
	uint64_t deadline = now_ms() + 30000;
	size_t len = 0, cap = 4096;
	char *out = malloc(cap), port[16];
	int pfd[2], st;
	pid_t pid;

	ck_assert_msg(path != NULL, "%s is not set", env);
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	snprintf(port, sizeof(port), "%d", d.port);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		setenv("FERRY_HOST", "127.0.0.1", 1);
		setenv("FERRY_PORT", port, 1);
		execl(path, path, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int64_t left = (int64_t)(deadline - now_ms());
		ssize_t k;

		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (len + 1 >= cap) {
			cap *= 2;
			out = realloc(out, cap);
			ck_assert_ptr_nonnull(out);
		}
		k = read(pfd[0], out + len, cap - len - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	out[len] = '\0';
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return out;
}

static void
check_example(const char *env, const char *want)
{
	int status;
	char *out = run_example(env, &status);

	ck_assert_msg(status == 0, "%s exited with %d, printing:\n%s", env,
	    status, out);
	ck_assert_str_eq(out, want);
	free(out);
}

START_TEST(publish)
{
	check_example("EXAMPLE_PUBLISH",
	    "fire-and-forget: 3 sent, no answer awaited\n"
	    "confirmed 1: stored, id of 36 characters\n"
	    "confirmed 2: stored, id of 36 characters\n"
	    "confirmed 3: stored, id of 36 characters\n"
	    "the audit group received 6 messages\n");
}
END_TEST

START_TEST(work_queue)
{
	check_example("EXAMPLE_WORK_QUEUE",
	    "30 jobs done, each exactly once, shared by 3 workers\n");
}
END_TEST

START_TEST(fan_out)
{
	check_example("EXAMPLE_FAN_OUT",
	    "billing got order-1\n"
	    "billing got order-2\n"
	    "billing got order-3\n"
	    "shipping got order-1\n"
	    "shipping got order-2\n"
	    "shipping got order-3\n");
}
END_TEST

START_TEST(request_reply)
{
	check_example("EXAMPLE_REQUEST_REPLY",
	    "req-1: hello -> HELLO\n"
	    "req-2: ferry -> FERRY\n"
	    "req-3: world -> WORLD\n"
	    "req-4: sleep -> no reply within 1 s\n");
}
END_TEST

START_TEST(retry_dlq)
{
	check_example("EXAMPLE_RETRY_DLQ",
	    "flaky: attempt 1 failed, retry in 100 ms\n"
	    "flaky: attempt 2 succeeded\n"
	    "poison: attempt 1 failed, retry in 100 ms\n"
	    "poison: attempt 2 failed, retry in 200 ms\n"
	    "poison: attempt 3 failed, no attempts left\n"
	    "poison: dead-lettered after 3 attempts, last error "
	    "\"attempt 3 failed\"\n");
}
END_TEST

START_TEST(idempotent_consumer)
{
	check_example("EXAMPLE_IDEMPOTENT_CONSUMER",
	    "consumer 1 applied p-1 and p-2, and died before acking p-2\n"
	    "payments applied: 5, duplicates skipped: 2\n"
	    "  p-2 came 2 times, applied once\n"
	    "  p-3 came 2 times, applied once\n"
	    "balance: 150 (10 + 20 + 30 + 40 + 50 = 150)\n");
}
END_TEST

/* Run twice on one broker: nothing of the first run leaks into the
 * second (each uses its own topics and deletes them). */
START_TEST(examples_rerun)
{
	const char *envs[] = { "EXAMPLE_PUBLISH", "EXAMPLE_WORK_QUEUE",
	    "EXAMPLE_FAN_OUT", "EXAMPLE_REQUEST_REPLY", "EXAMPLE_RETRY_DLQ",
	    "EXAMPLE_IDEMPOTENT_CONSUMER" };
	char *first, *second;
	int st;

	for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
		first = run_example(envs[i], &st);
		ck_assert_int_eq(st, 0);
		second = run_example(envs[i], &st);
		ck_assert_int_eq(st, 0);
		ck_assert_str_eq(first, second);
		free(first);
		free(second);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("examples");
	TCase *tc = tcase_create("examples");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, publish);
	tcase_add_test(tc, work_queue);
	tcase_add_test(tc, fan_out);
	tcase_add_test(tc, request_reply);
	tcase_add_test(tc, retry_dlq);
	tcase_add_test(tc, idempotent_consumer);
	tcase_add_test(tc, examples_rerun);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
